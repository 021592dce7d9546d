//! Tokenizers: text to token ids and back, and chat templates for instruct models.

pub mod chat;
