//! Decoding: article bytes → text. UTF-8 (with or without BOM), UTF-16 with a BOM, and legacy
//! single-byte files (Windows-1252/Latin-1 and kin) detected with chardetng; binary data and
//! empty files are refused with the reason.

use encoding_rs::{Encoding, UTF_8};

/// Text decoded from an input, and the encoding it was read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static str,
}

/// Why bytes could not be taken as an article's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the file is empty")]
    Empty,
    #[error("the file holds only whitespace")]
    Blank,
    #[error("{0}")]
    Binary(String),
}

/// Share of control characters above which decoded text is taken for binary data: real
/// articles have none besides tabs and line breaks, while a binary file read as
/// Windows-1252 (where every byte decodes) is full of them.
const MAX_CONTROL_SHARE: f64 = 0.01;

/// Decode an article's bytes.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let decoded = if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        decode_strict(encoding, &bytes[bom_len..])?
    } else if bytes.contains(&0) {
        // UTF-16 without a BOM is not guessed: NUL bytes mean binary data here.
        return Err(DecodeError::Binary("it contains NUL bytes".into()));
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        Decoded {
            text: text.to_owned(),
            encoding: UTF_8.name(),
        }
    } else {
        decode_strict(guess_legacy(bytes), bytes)?
    };
    check_text(&decoded.text)?;
    Ok(decoded)
}

/// Decode with `encoding`, refusing malformed sequences rather than inventing U+FFFD.
fn decode_strict(encoding: &'static Encoding, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    if had_errors {
        return Err(DecodeError::Binary(format!(
            "it is not valid {} text",
            encoding.name()
        )));
    }
    Ok(Decoded {
        text: text.into_owned(),
        encoding: encoding.name(),
    })
}

/// The most likely legacy encoding for bytes that are not UTF-8, with a French-language hint.
fn guess_legacy(bytes: &[u8]) -> &'static Encoding {
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    detector.guess(Some(b"fr"), chardetng::Utf8Detection::Deny)
}

fn check_text(text: &str) -> Result<(), DecodeError> {
    if text.trim().is_empty() {
        return Err(DecodeError::Blank);
    }
    let total = text.chars().count();
    let controls = text
        .chars()
        .filter(|&c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
        .count();
    if controls as f64 > MAX_CONTROL_SHARE * total as f64 {
        return Err(DecodeError::Binary(format!(
            "{controls} of its {total} characters are control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRENCH: &str = "L’été à Noël : « Très bien », dit-il. Ça coûte 3,5 €.";

    #[test]
    fn utf8_with_and_without_bom() {
        let plain = decode(FRENCH.as_bytes()).unwrap();
        assert_eq!(plain.text, FRENCH);
        assert_eq!(plain.encoding, "UTF-8");
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(FRENCH.as_bytes());
        assert_eq!(decode(&bom).unwrap().text, FRENCH);
    }

    #[test]
    fn utf16_with_bom_both_endians() {
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        for unit in FRENCH.encode_utf16() {
            le.extend_from_slice(&unit.to_le_bytes());
            be.extend_from_slice(&unit.to_be_bytes());
        }
        assert_eq!(decode(&le).unwrap().text, FRENCH);
        assert_eq!(decode(&le).unwrap().encoding, "UTF-16LE");
        assert_eq!(decode(&be).unwrap().text, FRENCH);
    }

    #[test]
    fn latin1_and_windows_1252_are_detected() {
        let text = "Le président a déclaré à la presse qu’il était très ému. Économie, société : « déjà » vu.";
        let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
        assert!(!unmappable);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.text, text);
        assert_eq!(decoded.encoding, "windows-1252");
    }

    #[test]
    fn empty_and_blank_are_refused() {
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b" \n\t\r\n "), Err(DecodeError::Blank));
    }

    #[test]
    fn binary_is_refused() {
        assert!(matches!(
            decode(b"PK\x03\x04\x00\x00abc"),
            Err(DecodeError::Binary(_))
        ));
        let noise: Vec<u8> = (0..=255u8)
            .cycle()
            .skip(1)
            .take(4096)
            .filter(|&b| b != 0)
            .collect();
        assert!(matches!(decode(&noise), Err(DecodeError::Binary(_))));
    }

    #[test]
    fn malformed_utf16_is_refused() {
        // A lone high surrogate after the BOM.
        assert!(matches!(
            decode(&[0xFF, 0xFE, 0x00, 0xD8]),
            Err(DecodeError::Binary(_))
        ));
    }
}
