//! One article of an archive run: its bytes read, decoded and checked (empty, binary, too
//! long, not French), and, once the engines have run, its digest rendered as JSON and
//! Markdown.
//!
//! The digest files hold only what the article and the options determine, never timings, so
//! that a resumed run writes byte for byte what an uninterrupted one does; timings go to the
//! manifest.

use std::io::Read;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::engine::ModelIds;
use super::inputs::{Kind, Payload, MAX_INPUT_BYTES};
use crate::cli::{Engine, LangChoice, SummaryLang};
use crate::error::Error;
use crate::input::language::{self, Detected};
use crate::input::{self, Loaded};
use crate::models::registry::Registry;
use crate::report::{Stop, SummaryReport, Timings};

/// Article text longer than this (in characters, once extracted) is not a news article.
pub const MAX_TEXT_CHARS: usize = 500_000;

/// An input's bytes, read whole (and hashed), or why they could not be.
pub struct RawInput {
    pub sha256: String,
    pub bytes: std::result::Result<(Kind, Vec<u8>), Error>,
}

/// Read an entry's payload, refusing to read oversized files.
pub fn read(name: &str, payload: Payload) -> RawInput {
    match payload {
        Payload::File { path, kind } => read_file(name, &path, kind),
        Payload::Record { line, body } => RawInput {
            sha256: sha256_hex(&line),
            bytes: body
                .map(|(kind, text)| (kind, text.into_bytes()))
                .map_err(|reason| Error::InputUnreadable {
                    name: name.to_string(),
                    source: std::io::Error::other(reason),
                }),
        },
        Payload::Broken(reason) => RawInput {
            sha256: sha256_hex(b""),
            bytes: Err(Error::InputUnreadable {
                name: name.to_string(),
                source: std::io::Error::other(reason),
            }),
        },
    }
}

fn read_file(name: &str, path: &std::path::Path, kind: Kind) -> RawInput {
    let unreadable = |source| Error::InputUnreadable {
        name: name.to_string(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(source) => {
            return RawInput {
                sha256: sha256_hex(b""),
                bytes: Err(unreadable(source)),
            }
        }
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > MAX_INPUT_BYTES {
        let mut hasher = Sha256::new();
        let hashed = std::io::copy(&mut std::io::BufReader::new(file), &mut hasher);
        return RawInput {
            sha256: hex(&hasher.finalize()),
            bytes: match hashed {
                Ok(_) => Err(too_long(name, format!("the file has {size} bytes"))),
                Err(source) => Err(unreadable(source)),
            },
        };
    }
    let mut bytes = Vec::with_capacity(size as usize);
    match std::io::BufReader::new(file).read_to_end(&mut bytes) {
        Ok(_) => RawInput {
            sha256: sha256_hex(&bytes),
            bytes: Ok((kind, bytes)),
        },
        Err(source) => RawInput {
            sha256: sha256_hex(b""),
            bytes: Err(unreadable(source)),
        },
    }
}

fn too_long(name: &str, what: String) -> Error {
    Error::InputTooLong {
        name: name.to_string(),
        what,
        max: format!(
            "{} MiB of input and {MAX_TEXT_CHARS} characters of text",
            MAX_INPUT_BYTES >> 20
        ),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An article ready for the engines.
pub struct Ready {
    pub loaded: Loaded,
    pub language: Option<Detected>,
    pub timings: Timings,
}

impl Ready {
    pub fn sentences(&self) -> impl Iterator<Item = &str> {
        self.loaded
            .document
            .paragraphs
            .iter()
            .flat_map(|p| p.sentences.iter().map(String::as_str))
    }
}

/// What the input stage made of an article.
pub enum Prepared {
    Ready(Box<Ready>),
    /// Readable, but not for this pipeline (another language); the reason.
    Skipped(String, usize),
    Failed(Error),
}

/// Decode, extract, clean, structure and segment; then check length and language.
pub fn prepare(
    name: &str,
    kind: Kind,
    bytes: &[u8],
    keep_boilerplate: bool,
    lang: LangChoice,
) -> Prepared {
    let start = Instant::now();
    let loaded = match kind {
        Kind::Text => input::load_bytes(name, bytes, keep_boilerplate),
        Kind::Html => input::load_html_bytes(name, bytes, keep_boilerplate),
    };
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(err) => return Prepared::Failed(err),
    };
    let doc = &loaded.document;
    let chars: usize = doc
        .paragraphs
        .iter()
        .flat_map(|p| &p.sentences)
        .map(|s| s.chars().count())
        .sum();
    if chars > MAX_TEXT_CHARS {
        return Prepared::Failed(too_long(
            name,
            format!("the article has {chars} characters"),
        ));
    }
    let mut timings = Timings::default();
    timings.record("input", start);
    let language = language::detect_document(doc);
    let sentences = doc.paragraphs.iter().map(|p| p.sentences.len()).sum();
    if let Some(detected) = language.as_ref().filter(|d| d.rules_out_french()) {
        if lang == LangChoice::Auto {
            return Prepared::Skipped(not_french(detected), sentences);
        }
    }
    Prepared::Ready(Box::new(Ready {
        loaded,
        language,
        timings,
    }))
}

/// Why an article in another language is set aside, and how to force it.
fn not_french(detected: &Detected) -> String {
    let model = format!("opus-mt-{}-en", detected.opus_code());
    let has_model = Registry::builtin().is_ok_and(|r| r.get(&model).is_some());
    let why = match (detected.code, has_model) {
        ("eng", _) => "precis reads French articles".to_string(),
        (_, false) => format!("no {model} model in the registry"),
        (_, true) => "archive runs read French articles only".to_string(),
    };
    format!(
        "detected {} ({}); {why}; pass --lang fr to process it as French anyway",
        detected.name, detected.code
    )
}

/// A summary as the digest files show it (timings live in the manifest).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub bullets: Vec<String>,
    pub language: SummaryLang,
    pub engine: Engine,
    pub model: Option<String>,
    pub raw: String,
    pub stop: Stop,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
}

impl From<SummaryReport> for Summary {
    fn from(r: SummaryReport) -> Summary {
        Summary {
            bullets: r.bullets,
            language: r.language,
            engine: r.engine,
            model: r.model,
            raw: r.raw,
            stop: r.stop,
            prompt_tokens: r.prompt_tokens,
            generated_tokens: r.generated_tokens,
        }
    }
}

/// One translated sentence.
#[derive(Debug, Clone, Serialize)]
pub struct Sentence {
    /// Index of its paragraph in the article.
    pub paragraph: usize,
    pub source: String,
    pub target: String,
    pub stop: Stop,
}

/// An article's digest: `OUT/<name>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ArticleDigest {
    pub input: String,
    pub title: Option<String>,
    pub encoding: &'static str,
    pub language: Option<Detected>,
    pub summary: Option<Summary>,
    pub translation: Option<Vec<Sentence>>,
    pub removed: Vec<String>,
    pub models: ModelIds,
}

impl ArticleDigest {
    pub fn new(
        name: &str,
        ready: &Ready,
        summary: Option<SummaryReport>,
        translation: Option<Vec<(String, Stop)>>,
        models: ModelIds,
    ) -> ArticleDigest {
        let doc = &ready.loaded.document;
        let translation = translation.map(|targets| {
            let sources = doc
                .paragraphs
                .iter()
                .enumerate()
                .flat_map(|(i, p)| p.sentences.iter().map(move |s| (i, s)));
            sources
                .zip(targets)
                .map(|((paragraph, source), (target, stop))| Sentence {
                    paragraph,
                    source: source.clone(),
                    target,
                    stop,
                })
                .collect()
        });
        ArticleDigest {
            input: name.to_string(),
            title: doc.title.clone(),
            encoding: ready.loaded.encoding,
            language: ready.language.clone(),
            summary: summary.map(Summary::from),
            translation,
            removed: doc.removed.clone(),
            models,
        }
    }

    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("digests serialize");
        text.push('\n');
        text
    }

    /// Markdown: title, bullets, translation by paragraph; cut sentences are marked.
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n\n", self.title.as_deref().unwrap_or(&self.input));
        out.push_str(&format!("Source: `{}`\n", self.input));
        if let Some(summary) = &self.summary {
            out.push_str("\n## Summary\n\n");
            for bullet in &summary.bullets {
                out.push_str(&format!("- {bullet}\n"));
            }
            if summary.stop == Stop::Length {
                out.push_str("\n*(the summary was cut by the length limit)*\n");
            }
        }
        if let Some(sentences) = &self.translation {
            out.push_str("\n## Translation\n");
            let mut paragraph = None;
            for s in sentences {
                out.push_str(if paragraph == Some(s.paragraph) {
                    " "
                } else {
                    "\n"
                });
                paragraph = Some(s.paragraph);
                out.push_str(&s.target);
                if s.stop == Stop::Length {
                    out.push_str(" […]");
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRENCH: &str = "Poutine en visite à Pyongyang\n\n\
        Le président russe est arrivé mercredi à Pyongyang pour une visite de deux jours.\n\
        Il doit signer un accord de partenariat stratégique avec la Corée du Nord.";
    const GERMAN: &str = "Putin in Pjöngjang\n\n\
        Der russische Präsident ist am Mittwoch zu einem zweitägigen Besuch eingetroffen.\n\
        Er will ein Abkommen über eine strategische Partnerschaft unterzeichnen.";

    fn ready(p: Prepared) -> Box<Ready> {
        match p {
            Prepared::Ready(r) => r,
            Prepared::Skipped(why, _) => panic!("skipped: {why}"),
            Prepared::Failed(e) => panic!("failed: {e}"),
        }
    }

    #[test]
    fn other_languages_are_skipped_with_the_reason_unless_forced() {
        let p = prepare(
            "de.txt",
            Kind::Text,
            GERMAN.as_bytes(),
            false,
            LangChoice::Auto,
        );
        let Prepared::Skipped(why, sentences) = p else {
            panic!("not skipped")
        };
        assert_eq!(sentences, 2);
        assert_eq!(
            why,
            "detected German (deu); no opus-mt-de-en model in the registry; \
             pass --lang fr to process it as French anyway"
        );
        let forced = ready(prepare(
            "de.txt",
            Kind::Text,
            GERMAN.as_bytes(),
            false,
            LangChoice::Fr,
        ));
        assert_eq!(forced.language.as_ref().unwrap().code, "deu");
        let fr = ready(prepare(
            "fr.txt",
            Kind::Text,
            FRENCH.as_bytes(),
            false,
            LangChoice::Auto,
        ));
        assert!(fr.language.as_ref().unwrap().is_french());
    }

    #[test]
    fn empty_and_too_long_articles_fail_with_their_reason() {
        let p = prepare("e.txt", Kind::Text, b"", false, LangChoice::Auto);
        assert!(matches!(p, Prepared::Failed(Error::InputEmpty { .. })));
        let long = "Une phrase française assez longue pour compter. ".repeat(11_000);
        let p = prepare(
            "l.txt",
            Kind::Text,
            long.as_bytes(),
            false,
            LangChoice::Auto,
        );
        let Prepared::Failed(err) = p else {
            panic!("not failed")
        };
        assert!(err.to_string().contains("the article has 5"), "{err}");
        assert_eq!(err.exit_code(), 13);
    }

    #[test]
    fn digest_pairs_sentences_with_translations_and_renders() {
        let r = ready(prepare(
            "fr.txt",
            Kind::Text,
            FRENCH.as_bytes(),
            false,
            LangChoice::Auto,
        ));
        let targets = vec![
            ("The Russian president arrived.".to_string(), Stop::Eos),
            ("He is to sign an".to_string(), Stop::Length),
        ];
        let digest = ArticleDigest::new("fr.txt", &r, None, Some(targets), ModelIds::default());
        let sentences = digest.translation.as_ref().unwrap();
        assert_eq!(sentences[1].paragraph, 1);
        assert!(sentences[1].source.starts_with("Il doit signer"));
        let md = digest.markdown();
        assert!(md.starts_with("# Poutine en visite à Pyongyang\n"), "{md}");
        assert!(
            md.contains("\nThe Russian president arrived.\nHe is to sign an […]\n"),
            "{md}"
        );
        assert!(!digest.json().contains("_ms"), "no timings in the digest");
    }
}
