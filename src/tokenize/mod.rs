//! Tokenizers: text to model ids and back, matching the reference implementation id for id.
//! `spm` reads SentencePiece model files and reproduces the sentencepiece library. No
//! tensors here: ids in, ids out.

pub mod spm;
