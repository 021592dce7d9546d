//! Tokenizers: text to model ids and back, matching the reference implementation id for id.
//! `spm` reads SentencePiece model files and reproduces the sentencepiece library; `marian`
//! builds transformers' `MarianTokenizer` on top of it (vocab.json ids, special tokens,
//! language tags). No tensors here: ids in, ids out.

pub mod marian;
pub mod spm;

pub use marian::MarianTokenizer;
