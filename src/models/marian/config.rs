//! A Marian model's `config.json` (missing keys take `MarianConfig`'s defaults) and the
//! activation it names.

use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::generate::TokenIds;

/// `config.json` of a Marian model; missing keys take `MarianConfig`'s defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub vocab_size: usize,
    /// Target vocabulary size when the vocabularies are separate; `None` means `vocab_size`.
    pub decoder_vocab_size: Option<usize>,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub decoder_ffn_dim: usize,
    pub activation_function: String,
    pub max_position_embeddings: usize,
    pub scale_embedding: bool,
    pub share_encoder_decoder_embeddings: bool,
    pub tie_word_embeddings: bool,
    pub pad_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
    pub bos_token_id: Option<u32>,
    pub decoder_start_token_id: Option<u32>,
    pub forced_eos_token_id: Option<TokenIds>,
    /// Legacy keys that transformers ignores (see the module doc); read only to warn.
    pub normalize_before: bool,
    pub add_final_layer_norm: bool,
    pub normalize_embedding: bool,
}

impl Default for Config {
    /// transformers' `MarianConfig()` defaults.
    fn default() -> Config {
        Config {
            vocab_size: 58101,
            decoder_vocab_size: None,
            d_model: 1024,
            encoder_layers: 12,
            decoder_layers: 12,
            encoder_attention_heads: 16,
            decoder_attention_heads: 16,
            encoder_ffn_dim: 4096,
            decoder_ffn_dim: 4096,
            activation_function: "gelu".into(),
            max_position_embeddings: 1024,
            scale_embedding: false,
            share_encoder_decoder_embeddings: true,
            tie_word_embeddings: true,
            pad_token_id: Some(58100),
            eos_token_id: Some(TokenIds::One(0)),
            bos_token_id: None,
            decoder_start_token_id: Some(58100),
            forced_eos_token_id: Some(TokenIds::One(0)),
            normalize_before: false,
            add_final_layer_norm: false,
            normalize_embedding: false,
        }
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let config: Config = serde_json::from_str(&text).map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            what: "not a valid Marian config.json".into(),
            source: Some(Box::new(e)),
        })?;
        config.check().map_err(|what| Error::ModelFile {
            path: path.to_path_buf(),
            what,
            source: None,
        })?;
        Ok(config)
    }

    fn check(&self) -> std::result::Result<(), String> {
        for (heads, side) in [
            (self.encoder_attention_heads, "encoder"),
            (self.decoder_attention_heads, "decoder"),
        ] {
            if heads == 0 || !self.d_model.is_multiple_of(heads) {
                return Err(format!(
                    "d_model {} is not divisible by {side}_attention_heads {heads}",
                    self.d_model
                ));
            }
        }
        Activation::from_name(&self.activation_function)?;
        for (set, key) in [
            (self.normalize_before, "normalize_before"),
            (self.add_final_layer_norm, "add_final_layer_norm"),
            (self.normalize_embedding, "normalize_embedding"),
        ] {
            if set {
                tracing::warn!(
                    "config.json sets {key}: transformers ignores it for Marian, and so does precis"
                );
            }
        }
        Ok(())
    }

    /// Size of the output vocabulary (the logits' last dimension).
    pub fn target_vocab_size(&self) -> usize {
        if self.share_encoder_decoder_embeddings {
            self.vocab_size
        } else {
            self.decoder_vocab_size.unwrap_or(self.vocab_size)
        }
    }
}

/// The activations transformers' `ACT2FN` maps Marian's `activation_function` names to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Activation {
    /// `gelu`: the exact erf form.
    Gelu,
    /// `gelu_new` and friends: the tanh approximation.
    GeluTanh,
    Relu,
    /// `swish` and `silu`.
    Silu,
    Tanh,
    Sigmoid,
}

impl Activation {
    pub(super) fn from_name(name: &str) -> std::result::Result<Activation, String> {
        Ok(match name {
            "gelu" | "gelu_python" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_python_tanh" | "gelu_fast" => {
                Activation::GeluTanh
            }
            "relu" => Activation::Relu,
            "swish" | "silu" => Activation::Silu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            other => {
                return Err(format!(
                    "activation_function '{other}' is not supported (precis runs gelu, gelu_new, \
                     relu, swish/silu, tanh, sigmoid)"
                ))
            }
        })
    }

    pub(super) fn forward(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => xs.gelu_erf(),
            Activation::GeluTanh => xs.gelu(),
            Activation::Relu => xs.relu(),
            Activation::Silu => xs.silu(),
            Activation::Tanh => xs.tanh(),
            Activation::Sigmoid => candle_nn::ops::sigmoid(xs),
        }
    }
}
