//! The Marian (opus-mt) tokenizer: text to model ids and back, giving exactly what
//! transformers' `MarianTokenizer` gives.
//!
//! What `MarianTokenizer` does, and this module reproduces:
//! - the text is cut around the special tokens (`</s>`, `<unk>`, `<pad>`), which become
//!   their own ids wherever they appear;
//! - each remaining chunk that starts with `>>` keeps everything up to the first `<<` as one
//!   token (a language tag such as `>>fra<<`, or any other text in that shape);
//! - the rest of the chunk goes through the SentencePiece model ([`super::spm`]), and each
//!   piece *string* is looked up in `vocab.json` (the model's ids, unrelated to the
//!   SentencePiece ids); a piece missing from the vocabulary becomes `<unk>`;
//! - `</s>` is appended.
//!
//! Target-side text (forced prefixes, tests) uses `target.spm` and, when the model has
//! separate vocabularies, `target_vocab.json`. Decoding maps ids through the target
//! vocabulary, drops the special tokens when asked, and joins each run of pieces as
//! sentencepiece's `decode_pieces` does, with the SentencePiece model `MarianTokenizer`
//! picks: the *source* model when the vocabulary is shared, the target model otherwise.
//!
//! Special-token ids are those of the source vocabulary on both sides, as in
//! `MarianTokenizer` (its added tokens take precedence over the target vocabulary).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::spm::{SentencePiece, SPACE_SYMBOL};
use crate::error::{Error, Result};
use crate::models::ResolvedModel;

/// One side's SentencePiece model and vocabulary.
#[derive(Debug, Clone)]
struct Side {
    spm: SentencePiece,
    /// Shared by both sides when the vocabulary is.
    vocab: Arc<HashMap<String, u32>>,
    /// `vocab[unk_token]`: what a piece missing from this vocabulary becomes.
    unk_id: u32,
}

/// A special token: its text and its (source-vocabulary) id.
#[derive(Debug, Clone)]
struct Special {
    content: String,
    id: u32,
}

/// The Marian tokenizer of one model folder.
#[derive(Debug, Clone)]
pub struct MarianTokenizer {
    source: Side,
    target: Side,
    separate_vocabs: bool,
    /// id → token for decoding: the target vocabulary, or the shared one.
    decoder: HashMap<u32, String>,
    /// The file that decoding reads pieces from when an id is missing from the vocabulary.
    decoder_spm_path: PathBuf,
    eos: Special,
    unk: Special,
    pad: Special,
    /// `split_special_tokens` in tokenizer_config.json: special tokens in the text are then
    /// plain text.
    split_special_tokens: bool,
    language_codes: Vec<String>,
    source_vocab_size: usize,
    target_vocab_size: usize,
}

/// The settings tokenizer_config.json can carry.
#[derive(Debug, Clone)]
struct TokenizerConfig {
    separate_vocabs: bool,
    eos_token: String,
    unk_token: String,
    pad_token: String,
    split_special_tokens: bool,
    /// `added_tokens_decoder`: id → token text.
    added_tokens: Vec<(u32, String)>,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            separate_vocabs: false,
            eos_token: "</s>".into(),
            unk_token: "<unk>".into(),
            pad_token: "<pad>".into(),
            split_special_tokens: false,
            added_tokens: Vec::new(),
        }
    }
}

fn file_error(path: &Path, what: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        what: what.into(),
        source: None,
    }
}

impl TokenizerConfig {
    fn read(path: &Path) -> Result<TokenizerConfig> {
        let bytes = std::fs::read(path).map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            what: "cannot read the tokenizer configuration".into(),
            source: Some(Box::new(e)),
        })?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::ModelFile {
                path: path.to_path_buf(),
                what: "the tokenizer configuration is not valid JSON".into(),
                source: Some(Box::new(e)),
            })?;
        let mut config = TokenizerConfig::default();
        let token = |key: &str| -> Option<String> {
            match json.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                other => other.get("content")?.as_str().map(String::from),
            }
        };
        if let Some(t) = token("eos_token") {
            config.eos_token = t;
        }
        if let Some(t) = token("unk_token") {
            config.unk_token = t;
        }
        if let Some(t) = token("pad_token") {
            config.pad_token = t;
        }
        let flag = |key: &str| json.get(key).and_then(serde_json::Value::as_bool);
        config.separate_vocabs = flag("separate_vocabs").unwrap_or(false);
        config.split_special_tokens = flag("split_special_tokens").unwrap_or(false);
        if let Some(added) = json.get("added_tokens_decoder").and_then(|v| v.as_object()) {
            for (id, token) in added {
                let id: u32 = id.parse().map_err(|_| {
                    file_error(path, format!("added_tokens_decoder has a bad id {id:?}"))
                })?;
                let content = token
                    .get("content")
                    .and_then(|c| c.as_str())
                    .ok_or_else(|| {
                        file_error(path, format!("added token {id} has no \"content\""))
                    })?;
                for option in ["lstrip", "rstrip", "single_word"] {
                    if token.get(option).and_then(|v| v.as_bool()) == Some(true) {
                        return Err(file_error(
                            path,
                            format!("added token {content:?} sets {option}, which precis does not support for Marian models"),
                        ));
                    }
                }
                config.added_tokens.push((id, content.to_string()));
            }
        }
        Ok(config)
    }
}

/// A vocabulary file's entries in file order (as Python's `json.load` keeps them).
struct OrderedVocab(Vec<(String, u64)>);

impl<'de> Deserialize<'de> for OrderedVocab {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = OrderedVocab;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping tokens to ids")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedVocab, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, u64>()? {
                    entries.push(entry);
                }
                Ok(OrderedVocab(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// A vocabulary: token → id, and the tokens in Python dict order (first occurrence of each
/// key, last value wins).
struct Vocab {
    ids: HashMap<String, u32>,
    order: Vec<String>,
}

impl Vocab {
    fn read(path: &Path) -> Result<Vocab> {
        let bytes = std::fs::read(path).map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            what: "cannot read the vocabulary".into(),
            source: Some(Box::new(e)),
        })?;
        let OrderedVocab(entries) =
            serde_json::from_slice(&bytes).map_err(|e| Error::ModelFile {
                path: path.to_path_buf(),
                what: "not a vocabulary: expected a JSON object of token → id".into(),
                source: Some(Box::new(e)),
            })?;
        let mut ids = HashMap::with_capacity(entries.len());
        let mut order = Vec::with_capacity(entries.len());
        for (token, id) in entries {
            let id = u32::try_from(id)
                .map_err(|_| file_error(path, format!("id {id} of {token:?} is too large")))?;
            if ids.insert(token.clone(), id).is_none() {
                order.push(token);
            }
        }
        Ok(Vocab { ids, order })
    }

    /// id → token as `{v: k for k, v in vocab.items()}`.
    fn inverse(&self) -> HashMap<u32, String> {
        let mut decoder = HashMap::with_capacity(self.order.len());
        for token in &self.order {
            decoder.insert(self.ids[token], token.clone());
        }
        decoder
    }
}

/// The paths a tokenizer is built from.
struct Files<'a> {
    source_spm: &'a Path,
    target_spm: &'a Path,
    vocab: &'a Path,
    target_vocab: Option<&'a Path>,
}

impl MarianTokenizer {
    /// From a resolved model folder (source.spm, target.spm, vocab.json, optional
    /// target_vocab.json, tokenizer_config.json).
    pub fn from_model(model: &ResolvedModel) -> Result<Self> {
        let need = |name: &str| {
            model.file(name).ok_or_else(|| Error::ModelFolder {
                path: PathBuf::from(&model.name),
                problem: format!("missing {name}: a Marian tokenizer needs source.spm, target.spm and vocab.json"),
            })
        };
        let config = match model.file("tokenizer_config.json") {
            Some(path) => TokenizerConfig::read(path)?,
            None => TokenizerConfig::default(),
        };
        let target_vocab = if config.separate_vocabs {
            Some(need("target_vocab.json")?)
        } else {
            None
        };
        let files = Files {
            source_spm: need("source.spm")?,
            target_spm: need("target.spm")?,
            vocab: need("vocab.json")?,
            target_vocab,
        };
        Self::load(&files, config)
    }

    /// From the files themselves, with tokenizer_config.json's defaults; the vocabularies
    /// are separate when `target_vocab` is given.
    pub fn from_files(
        source_spm: &Path,
        target_spm: &Path,
        vocab: &Path,
        target_vocab: Option<&Path>,
    ) -> Result<Self> {
        let config = TokenizerConfig {
            separate_vocabs: target_vocab.is_some(),
            ..TokenizerConfig::default()
        };
        let files = Files {
            source_spm,
            target_spm,
            vocab,
            target_vocab,
        };
        Self::load(&files, config)
    }

    fn load(files: &Files, config: TokenizerConfig) -> Result<Self> {
        let source_vocab = Vocab::read(files.vocab)?;
        let target_vocab = match files.target_vocab {
            Some(path) if config.separate_vocabs => Some((path, Vocab::read(path)?)),
            _ => None,
        };
        let separate_vocabs = target_vocab.is_some();

        let special = |content: &str| -> Result<Special> {
            let id = config
                .added_tokens
                .iter()
                .find(|(_, c)| c == content)
                .map(|(id, _)| *id)
                .or_else(|| source_vocab.ids.get(content).copied())
                .ok_or_else(|| {
                    file_error(
                        files.vocab,
                        format!("the vocabulary has no {content:?} token"),
                    )
                })?;
            Ok(Special {
                content: content.to_string(),
                id,
            })
        };
        let eos = special(&config.eos_token)?;
        let unk = special(&config.unk_token)?;
        let pad = special(&config.pad_token)?;
        if let Some((id, content)) = config
            .added_tokens
            .iter()
            .find(|(_, c)| ![&eos.content, &unk.content, &pad.content].contains(&c))
        {
            return Err(Error::Unsupported {
                what: format!(
                    "tokenizer_config.json adds the token {content:?} (id {id}); precis knows only the end, unknown and padding tokens of Marian models"
                ),
            });
        }
        let side_unk = |vocab: &Vocab, path: &Path| {
            vocab.ids.get(&unk.content).copied().ok_or_else(|| {
                file_error(
                    path,
                    format!("the vocabulary has no {:?} token", unk.content),
                )
            })
        };

        let source_spm = SentencePiece::load(files.source_spm)?;
        let target_spm = SentencePiece::load(files.target_spm)?;
        let source_vocab_size = source_vocab.ids.len();
        let source_ids = Arc::new(source_vocab.ids.clone());
        let (decoder, target, target_vocab_size, language_codes) = match target_vocab {
            Some((path, vocab)) => {
                let side = Side {
                    spm: target_spm,
                    unk_id: side_unk(&vocab, path)?,
                    vocab: Arc::new(vocab.ids.clone()),
                };
                (vocab.inverse(), side, vocab.ids.len(), Vec::new())
            }
            None => {
                let side = Side {
                    spm: target_spm,
                    unk_id: side_unk(&source_vocab, files.vocab)?,
                    vocab: Arc::clone(&source_ids),
                };
                let codes = source_vocab
                    .order
                    .iter()
                    .filter(|t| t.starts_with(">>") && t.ends_with("<<"))
                    .cloned()
                    .collect();
                (source_vocab.inverse(), side, source_vocab_size, codes)
            }
        };
        let source = Side {
            spm: source_spm,
            unk_id: side_unk(&source_vocab, files.vocab)?,
            vocab: source_ids,
        };
        let decoder_spm_path = if separate_vocabs {
            files.target_spm
        } else {
            files.source_spm
        };
        Ok(MarianTokenizer {
            source,
            target,
            separate_vocabs,
            decoder,
            decoder_spm_path: decoder_spm_path.to_path_buf(),
            eos,
            unk,
            pad,
            split_special_tokens: config.split_special_tokens,
            language_codes,
            source_vocab_size,
            target_vocab_size,
        })
    }

    /// Source-side ids with `</s>` appended, as `MarianTokenizer(text)["input_ids"]`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_side(&self.source, text))
    }

    /// [`encode`](Self::encode) for each text, in order.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        Ok(texts
            .iter()
            .map(|t| self.encode_side(&self.source, t))
            .collect())
    }

    /// Target-side ids (`text_target=`), with `</s>` appended: for tests and forced prefixes.
    pub fn encode_target(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_side(&self.target, text))
    }

    /// The source-side tokens before the vocabulary lookup, as `tokenizer.tokenize(text)`.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let mut tokens = Vec::new();
        self.tokenize_with(&self.source, text, |t| tokens.push(t.to_string()));
        tokens
    }

    /// Text of target ids, as `tokenizer.decode(ids, skip_special_tokens=...)`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let spm = if self.separate_vocabs {
            &self.target.spm
        } else {
            &self.source.spm
        };
        let mut text = String::new();
        let mut run: Vec<&str> = Vec::new();
        for &id in ids {
            if skip_special_tokens && self.specials().any(|s| s.id == id) {
                continue;
            }
            let token = self.id_to_token(spm, id)?;
            // `convert_tokens_to_string`: special tokens (by text) are not SentencePiece
            // pieces; each is written as is, followed by a space.
            if self.specials().any(|s| s.content == token) {
                text.push_str(&spm.decode_pieces(&run));
                text.push_str(token);
                text.push(' ');
                run.clear();
            } else {
                run.push(token);
            }
        }
        text.push_str(&spm.decode_pieces(&run));
        let text = text.replace(SPACE_SYMBOL, " ");
        Ok(text.trim_matches(is_python_space).to_string())
    }

    pub fn eos_id(&self) -> u32 {
        self.eos.id
    }

    pub fn pad_id(&self) -> u32 {
        self.pad.id
    }

    pub fn unk_id(&self) -> u32 {
        self.unk.id
    }

    /// Entries in vocab.json.
    pub fn source_vocab_size(&self) -> usize {
        self.source_vocab_size
    }

    /// Entries in the target vocabulary (target_vocab.json, or the shared vocab.json).
    pub fn target_vocab_size(&self) -> usize {
        self.target_vocab_size
    }

    /// Whether source and target have their own vocabularies.
    pub fn separate_vocabs(&self) -> bool {
        self.separate_vocabs
    }

    /// The language tags (`>>xxx<<`) of a shared vocabulary, in vocabulary order: the target
    /// languages of a multilingual model. Empty for separate vocabularies, as in
    /// `MarianTokenizer.supported_language_codes`.
    pub fn language_codes(&self) -> &[String] {
        &self.language_codes
    }

    fn specials(&self) -> impl Iterator<Item = &Special> {
        [&self.eos, &self.unk, &self.pad].into_iter()
    }

    fn id_to_token<'a>(&'a self, spm: &'a SentencePiece, id: u32) -> Result<&'a str> {
        if let Some(special) = self.specials().find(|s| s.id == id) {
            return Ok(&special.content);
        }
        if let Some(token) = self.decoder.get(&id) {
            return Ok(token);
        }
        // Like `MarianTokenizer._convert_id_to_token`: an id outside the vocabulary falls
        // back to the SentencePiece piece with that number.
        match spm.id_to_piece(id) {
            Some("") => Ok(&self.unk.content),
            Some(piece) => Ok(piece),
            None => Err(file_error(
                &self.decoder_spm_path,
                format!(
                    "token id {id} is in neither the target vocabulary ({} entries) nor this SentencePiece model ({} pieces)",
                    self.target_vocab_size,
                    spm.len()
                ),
            )),
        }
    }

    fn encode_side(&self, side: &Side, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        self.tokenize_with(side, text, |token| ids.push(self.token_id(side, token)));
        ids.push(self.eos.id);
        ids
    }

    /// `_convert_token_to_id_with_added_voc`: special tokens first, then the vocabulary,
    /// else the vocabulary's `<unk>`.
    fn token_id(&self, side: &Side, token: &str) -> u32 {
        if let Some(special) = self.specials().find(|s| s.content == token) {
            return special.id;
        }
        side.vocab.get(token).copied().unwrap_or(side.unk_id)
    }

    /// `PreTrainedTokenizer.tokenize` with `MarianTokenizer._tokenize`.
    fn tokenize_with(&self, side: &Side, text: &str, mut emit: impl FnMut(&str)) {
        let mut rest = text;
        loop {
            let found = if self.split_special_tokens {
                None
            } else {
                self.find_special(rest)
            };
            let (chunk, special) = match found {
                Some((at, len)) => (&rest[..at], Some(&rest[at..at + len])),
                None => (rest, None),
            };
            if !chunk.is_empty() {
                let (code, body) = split_language_code(chunk);
                if let Some(code) = code {
                    emit(code);
                }
                side.spm.encode_with(body, &mut emit);
            }
            match (special, found) {
                (Some(token), Some((at, len))) => {
                    emit(token);
                    rest = &rest[at + len..];
                }
                _ => break,
            }
        }
    }

    /// The first special token in `text` (leftmost, then longest): (byte offset, length).
    fn find_special(&self, text: &str) -> Option<(usize, usize)> {
        let bytes = text.as_bytes();
        let may_start = |b: u8| {
            self.specials()
                .any(|s| s.content.as_bytes().first() == Some(&b))
        };
        (0..bytes.len())
            .filter(|&i| may_start(bytes[i]) && text.is_char_boundary(i))
            .find_map(|i| {
                self.specials()
                    .filter(|s| !s.content.is_empty() && text[i..].starts_with(&s.content))
                    .map(|s| s.content.len())
                    .max()
                    .map(|len| (i, len))
            })
    }
}

/// `MarianTokenizer.remove_language_code`: a chunk that starts with `>>` keeps everything up
/// to the first `<<` as one token.
fn split_language_code(text: &str) -> (Option<&str>, &str) {
    if text.starts_with(">>") {
        if let Some(end) = text.find("<<") {
            return (Some(&text[..end + 2]), &text[end + 2..]);
        }
    }
    (None, text)
}

/// Python's `str.isspace`, which `str.strip()` uses: Unicode White_Space plus the
/// information separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_code_is_split_only_at_the_start() {
        assert_eq!(
            split_language_code(">>fra<< Bonjour"),
            (Some(">>fra<<"), " Bonjour")
        );
        assert_eq!(split_language_code(">>fra<<"), (Some(">>fra<<"), ""));
        assert_eq!(
            split_language_code(">> pas un code << suite"),
            (Some(">> pas un code <<"), " suite")
        );
        assert_eq!(split_language_code(" >>fra<< x"), (None, " >>fra<< x"));
        assert_eq!(split_language_code(">>fra x"), (None, ">>fra x"));
        assert_eq!(split_language_code(""), (None, ""));
    }

    #[test]
    fn python_strip_whitespace() {
        assert_eq!("\u{1c} a\u{a0}\u{3000}".trim_matches(is_python_space), "a");
        assert_eq!("\u{200b}a".trim_matches(is_python_space), "\u{200b}a");
    }

    #[test]
    fn ordered_vocab_keeps_file_order_and_last_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocab.json");
        std::fs::write(
            &path,
            r#"{"</s>": 0, ">>b<<": 3, "<unk>": 1, ">>a<<": 2, ">>b<<": 4}"#,
        )
        .unwrap();
        let vocab = Vocab::read(&path).unwrap();
        assert_eq!(vocab.order, ["</s>", ">>b<<", "<unk>", ">>a<<"]);
        assert_eq!(vocab.ids[">>b<<"], 4);
        assert_eq!(vocab.inverse()[&4], ">>b<<");
        std::fs::write(&path, r#"["</s>"]"#).unwrap();
        assert!(matches!(Vocab::read(&path), Err(Error::ModelFile { .. })));
    }

    /// A tokenizer over a hand-made SentencePiece model: pieces ▁ a b ▁ab ab ▁a c, where
    /// `c` is missing from vocab.json.
    fn tiny() -> (tempfile::TempDir, MarianTokenizer) {
        use crate::tokenize::spm::tests::model_bytes;
        let dir = tempfile::tempdir().unwrap();
        let spm = model_bytes(
            &[
                ("\u{2581}", -2.0),
                ("a", -3.0),
                ("b", -3.5),
                ("\u{2581}ab", -4.0),
                ("ab", -5.0),
                ("\u{2581}a", -3.2),
                ("c", -3.0),
            ],
            &[],
        );
        let spm_path = dir.path().join("source.spm");
        std::fs::write(&spm_path, spm).unwrap();
        let vocab = dir.path().join("vocab.json");
        std::fs::write(
            &vocab,
            r#"{"</s>": 0, "<unk>": 1, "\u2581ab": 2, "\u2581": 3, "a": 4, "b": 5, "\u2581a": 6, ">>fr<<": 7, "<pad>": 8}"#,
        )
        .unwrap();
        let tok = MarianTokenizer::from_files(&spm_path, &spm_path, &vocab, None).unwrap();
        (dir, tok)
    }

    #[test]
    fn empty_text_is_just_eos() {
        let (_dir, tok) = tiny();
        assert_eq!(tok.encode("").unwrap(), [0]);
        assert_eq!(tok.encode("   ").unwrap(), [0]);
        assert_eq!(tok.encode_target("").unwrap(), [0]);
        assert_eq!((tok.eos_id(), tok.unk_id(), tok.pad_id()), (0, 1, 8));
        assert_eq!(tok.source_vocab_size(), 9);
        assert_eq!(tok.target_vocab_size(), 9);
    }

    #[test]
    fn pieces_missing_from_the_vocabulary_become_unk() {
        let (_dir, tok) = tiny();
        assert_eq!(tok.encode("ab a").unwrap(), [2, 6, 0]);
        // `c` is a SentencePiece piece but not in vocab.json; `z` is in neither.
        assert_eq!(tok.tokenize("c zz"), ["\u{2581}", "c", "\u{2581}", "zz"]);
        assert_eq!(tok.encode("c zz").unwrap(), [3, 1, 3, 1, 0]);
    }

    #[test]
    fn language_tags_and_special_tokens_stay_whole() {
        let (_dir, tok) = tiny();
        assert_eq!(tok.encode(">>fr<< ab").unwrap(), [7, 2, 0]);
        assert_eq!(tok.encode(">>fr<<ab").unwrap(), [7, 2, 0]);
        // A tag that is not in the vocabulary is still one token: <unk>.
        assert_eq!(tok.encode(">>xx<< ab").unwrap(), [1, 2, 0]);
        // Only at the start of the text (or right after a special token).
        assert_eq!(tok.tokenize("ab >>fr<<")[0], "\u{2581}ab");
        assert_eq!(tok.encode("ab</s>>>fr<<ab").unwrap(), [2, 0, 7, 2, 0]);
        assert_eq!(tok.encode("<pad><unk>").unwrap(), [8, 1, 0]);
    }

    #[test]
    fn decode_joins_pieces_and_skips_specials() {
        let (_dir, tok) = tiny();
        assert_eq!(tok.decode(&[8, 2, 6, 0], false).unwrap(), "<pad> ab a</s>");
        assert_eq!(tok.decode(&[8, 2, 6, 0], true).unwrap(), "ab a");
        assert_eq!(tok.decode(&[2, 1, 4], false).unwrap(), "ab<unk> a");
        assert_eq!(tok.decode(&[2, 1, 4], true).unwrap(), "aba");
        assert_eq!(tok.decode(&[], true).unwrap(), "");
        // Outside the vocabulary: the SentencePiece piece with that id (`c` is piece 9)...
        assert_eq!(tok.decode(&[2, 9], true).unwrap(), "abc");
        // ... and beyond the model too: an error.
        assert!(matches!(
            tok.decode(&[2, 99], true),
            Err(Error::ModelFile { .. })
        ));
    }
}
