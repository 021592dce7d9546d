//! Tokenizers: text to model ids and back, matching the reference implementation id for id.
//! `spm` reads SentencePiece model files and reproduces the sentencepiece library; `marian`
//! builds transformers' `MarianTokenizer` on top of it (vocab.json ids, special tokens,
//! language tags); `chat` loads a tokenizer.json and renders an instruct model's chat
//! template. No tensors here: ids in, ids out.

pub mod chat;
pub mod marian;
pub mod spm;

pub use marian::MarianTokenizer;
