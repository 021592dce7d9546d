//! Language detection: which language an article is written in, so that archive runs can set
//! aside what the French pipeline (cleaner, segmenter, fr→en model) cannot handle.
//!
//! Detection is statistical (trigrams, via `whatlang`) and only trusted when the detector says
//! it is reliable: a short or mixed text that cannot be told apart is given the benefit of the
//! doubt and read as French. Only the opening of the article is looked at; that is enough for
//! the detector and keeps the cost flat on long articles.

use serde::Serialize;

use super::Document;

/// How many characters of the article the detector reads.
const SAMPLE_CHARS: usize = 2000;

/// The detector's verdict on one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detected {
    /// ISO 639-3 code, e.g. `fra`, `deu`.
    pub code: &'static str,
    /// English name, e.g. `German`.
    pub name: &'static str,
    /// Between 0 and 1.
    pub confidence: f64,
    /// Whether the detector trusts its verdict (long enough text, clear margin).
    pub reliable: bool,
}

impl Detected {
    pub fn is_french(&self) -> bool {
        self.code == "fra"
    }

    /// Whether this verdict is good grounds to set the article aside as not French.
    pub fn rules_out_french(&self) -> bool {
        self.reliable && !self.is_french()
    }

    /// The two-letter code used in OPUS-MT model names (`de` in `opus-mt-de-en`), where one
    /// exists; the three-letter code otherwise.
    pub fn opus_code(&self) -> &'static str {
        ISO_639_1
            .iter()
            .find(|(three, _)| *three == self.code)
            .map_or(self.code, |(_, two)| two)
    }
}

/// Three-letter → two-letter codes of the languages whatlang detects that have one.
const ISO_639_1: &[(&str, &str)] = &[
    ("afr", "af"),
    ("ara", "ar"),
    ("bel", "be"),
    ("ben", "bn"),
    ("bul", "bg"),
    ("cat", "ca"),
    ("ces", "cs"),
    ("cmn", "zh"),
    ("dan", "da"),
    ("deu", "de"),
    ("ell", "el"),
    ("eng", "en"),
    ("epo", "eo"),
    ("est", "et"),
    ("fin", "fi"),
    ("fra", "fr"),
    ("heb", "he"),
    ("hin", "hi"),
    ("hrv", "hr"),
    ("hun", "hu"),
    ("ind", "id"),
    ("ita", "it"),
    ("jpn", "ja"),
    ("kor", "ko"),
    ("lat", "la"),
    ("lav", "lv"),
    ("lit", "lt"),
    ("nld", "nl"),
    ("nob", "nb"),
    ("pol", "pl"),
    ("por", "pt"),
    ("ron", "ro"),
    ("rus", "ru"),
    ("slk", "sk"),
    ("slv", "sl"),
    ("spa", "es"),
    ("srp", "sr"),
    ("swe", "sv"),
    ("tur", "tr"),
    ("ukr", "uk"),
    ("vie", "vi"),
];

/// Detect the language of a text; `None` when there is nothing to go on (no letters).
pub fn detect(text: &str) -> Option<Detected> {
    let sample: String = text.chars().take(SAMPLE_CHARS).collect();
    let info = whatlang::detect(&sample)?;
    Some(Detected {
        code: info.lang().code(),
        name: info.lang().eng_name(),
        confidence: (info.confidence() * 1000.0).round() / 1000.0,
        reliable: info.is_reliable(),
    })
}

/// Detect the language of an article from its title and opening sentences.
pub fn detect_document(doc: &Document) -> Option<Detected> {
    let mut text = doc.title.clone().unwrap_or_default();
    for sentence in doc.paragraphs.iter().flat_map(|p| &p.sentences) {
        if text.len() >= SAMPLE_CHARS {
            break;
        }
        text.push('\n');
        text.push_str(sentence);
    }
    detect(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_german_and_english_news_are_told_apart() {
        let fr = detect(
            "Le président russe est arrivé mercredi à Pyongyang pour une visite de deux jours. \
             Il doit signer un accord de partenariat stratégique avec la Corée du Nord.",
        )
        .unwrap();
        assert!(fr.is_french() && fr.reliable, "{fr:?}");
        assert!(!fr.rules_out_french());
        let de = detect(
            "Der russische Präsident ist am Mittwoch zu einem zweitägigen Besuch in Pjöngjang \
             eingetroffen. Er will ein Abkommen über eine strategische Partnerschaft unterzeichnen.",
        )
        .unwrap();
        assert_eq!((de.code, de.name, de.opus_code()), ("deu", "German", "de"));
        assert!(de.rules_out_french());
        let en = detect(
            "The Russian president arrived in Pyongyang on Wednesday for a two-day visit. \
             He is expected to sign a strategic partnership agreement with North Korea.",
        )
        .unwrap();
        assert_eq!(en.opus_code(), "en");
        assert!(en.rules_out_french());
    }

    #[test]
    fn no_letters_means_no_verdict() {
        assert_eq!(detect("12 345 — 678"), None);
        assert_eq!(detect(""), None);
    }

    #[test]
    fn code_table_is_sorted_and_unique() {
        assert!(ISO_639_1.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
