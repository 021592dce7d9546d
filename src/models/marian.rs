//! Marian (opus-mt) encoder-decoder on candle, computing what transformers' `MarianMTModel`
//! computes: post-norm layers, sinusoidal positions (sines in the first half of each vector,
//! cosines in the second), embeddings scaled by sqrt(d_model) when `scale_embedding`, and
//! `final_logits_bias` added to the tied output projection.
//!
//! Its job ends at logits: the encoder runs once per batch of right-padded sources (padded keys
//! masked), the cross-attention keys and values are computed once from its output, and the
//! decoder then steps one token per row against a per-layer self-attention cache. Searching
//! (greedy, beam) lives in `crate::generate`, which drives the decoder through [`MarianDecoder`].
//!
//! Deliberately not here: transformers' `MarianMTModel` has no pre-norm path (it never reads
//! `normalize_before`, `add_final_layer_norm` or `normalize_embedding`, and its converter refuses
//! pre-norm Marian models), so neither does this file; a config that sets them gets a warning
//! and the same computation as transformers.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, Generated, StepDecoder, TokenIds};
use crate::models::gemv::Linear;
use crate::models::ResolvedModel;

/// A projection `{vb}.weight` [out, in] and `{vb}.bias`.
fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb).map(Linear::from)
}

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
enum Activation {
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
    fn from_name(name: &str) -> std::result::Result<Activation, String> {
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

    fn forward(self, xs: &Tensor) -> candle_core::Result<Tensor> {
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

/// transformers' `LayerNorm` default epsilon, which Marian keeps.
const LAYER_NORM_EPS: f64 = 1e-5;

fn layer_norm(dim: usize, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    let weight = vb.get(dim, "weight")?;
    let bias = vb.get(dim, "bias")?;
    Ok(LayerNorm::new(weight, bias, LAYER_NORM_EPS))
}

/// The table of `MarianSinusoidalPositionalEmbedding`, computed in f64 and rounded to f32 as
/// transformers does: for pair index k, angle = pos / 10000^(2k/dim); sines fill the first
/// ceil(dim/2) columns, cosines the rest (not interleaved).
pub fn sinusoidal_positions(n_pos: usize, dim: usize) -> Vec<f32> {
    let sentinel = dim.div_ceil(2);
    let mut out = vec![0f32; n_pos * dim];
    // position_enc[pos, j] = pos / 10000^(2 * (j // 2) / dim)
    let angle =
        |pos: usize, j: usize| pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
    for (pos, row) in out.chunks_mut(dim.max(1)).enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = if j < sentinel {
                angle(pos, 2 * j).sin() as f32
            } else {
                angle(pos, 2 * (j - sentinel) + 1).cos() as f32
            };
        }
    }
    out
}

/// Static positions: the checkpoint's table when it has one (old conversions saved it),
/// otherwise computed.
fn positions(cfg: &Config, vb: &VarBuilder, name: &str) -> candle_core::Result<Tensor> {
    let shape = (cfg.max_position_embeddings, cfg.d_model);
    if vb.contains_tensor(name) {
        return vb.get(shape, name);
    }
    let table = sinusoidal_positions(cfg.max_position_embeddings, cfg.d_model);
    Tensor::from_vec(table, shape, vb.device())?.to_dtype(vb.dtype())
}

/// The first of `names` that the checkpoint holds, with the given shape.
fn first_of(vb: &VarBuilder, shape: (usize, usize), names: &[&str]) -> candle_core::Result<Tensor> {
    match names.iter().find(|n| vb.contains_tensor(n)) {
        Some(name) => vb.get(shape, name),
        None => candle_core::bail!("the checkpoint has none of {}", names.join(", ")),
    }
}

/// The encoder's and decoder's token tables: `model.shared` when the vocabularies are shared
/// (older checkpoints may hold only the per-side copies), else each side's own.
fn token_tables(cfg: &Config, vb: &VarBuilder) -> candle_core::Result<(Tensor, Tensor)> {
    const SHARED: &str = "model.shared.weight";
    const ENC: &str = "model.encoder.embed_tokens.weight";
    const DEC: &str = "model.decoder.embed_tokens.weight";
    let (d, vocab) = (cfg.d_model, cfg.vocab_size);
    if cfg.share_encoder_decoder_embeddings {
        let enc = first_of(vb, (vocab, d), &[SHARED, ENC])?;
        let dec = first_of(vb, (vocab, d), &[SHARED, DEC])?;
        Ok((enc, dec))
    } else {
        let enc = first_of(vb, (vocab, d), &[ENC, SHARED])?;
        let dec = first_of(vb, (cfg.target_vocab_size(), d), &[DEC])?;
        Ok((enc, dec))
    }
}

/// Additive attention bias from a 0/1 key mask [b, s]: 0 where kept, f32::MIN where padded
/// (what transformers' eager attention adds), shaped [b, 1, 1, s] to broadcast over heads
/// and queries.
fn key_bias(mask: &Tensor) -> candle_core::Result<Tensor> {
    let (b, s) = mask.dims2()?;
    mask.to_dtype(DType::F32)?
        .affine(f32::MAX as f64, -(f32::MAX as f64))?
        .reshape((b, 1, 1, s))
}

/// Multi-head attention (`MarianAttention`), used as encoder self-attention, cached decoder
/// self-attention, and cross-attention.
#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
    scaling: f64,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> candle_core::Result<Attention> {
        let head_dim = dim / num_heads;
        Ok(Attention {
            q_proj: linear(dim, dim, vb.pp("q_proj"))?,
            k_proj: linear(dim, dim, vb.pp("k_proj"))?,
            v_proj: linear(dim, dim, vb.pp("v_proj"))?,
            out_proj: linear(dim, dim, vb.pp("out_proj"))?,
            num_heads,
            head_dim,
            scaling: (head_dim as f64).powf(-0.5),
        })
    }

    /// [b, t, d] → [b, heads, t, head_dim]
    fn split_heads(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        xs.reshape((b, t, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// [b, heads, t, head_dim] → [b, t, d], then the output projection.
    fn merge_heads(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _, t, _) = xs.dims4()?;
        let xs = xs
            .transpose(1, 2)?
            .reshape((b, t, self.num_heads * self.head_dim))?;
        self.out_proj.forward(&xs)
    }

    /// Keys and values of `xs`, split into heads.
    fn key_values(&self, xs: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let k = self.split_heads(&self.k_proj.forward(xs)?)?;
        let v = self.split_heads(&self.v_proj.forward(xs)?)?;
        Ok((k, v))
    }

    /// softmax(q·kᵀ·scaling + bias)·v; the softmax runs in f32 whatever the model dtype.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let scores = (q.matmul(&k.t()?)? * self.scaling)?.to_dtype(DType::F32)?;
        let scores = match bias {
            Some(bias) => scores.broadcast_add(bias)?,
            None => scores,
        };
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        weights.matmul(v)
    }

    /// Encoder self-attention over the whole (padded) sequence.
    fn forward(&self, xs: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let q = self.split_heads(&self.q_proj.forward(xs)?)?;
        let (k, v) = self.key_values(xs)?;
        self.merge_heads(&self.attend(&q, &k, &v, Some(bias))?)
    }

    /// Decoder self-attention for new positions, appending their keys and values to `cache`.
    /// One token per step sees every earlier one, so no causal mask is needed.
    fn forward_cached(
        &self,
        xs: &Tensor,
        cache: &mut Option<(Tensor, Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let q = self.split_heads(&self.q_proj.forward(xs)?)?;
        let (k, v) = self.key_values(xs)?;
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        let out = self.attend(&q, &k, &v, None)?;
        *cache = Some((k, v));
        self.merge_heads(&out)
    }

    /// Cross-attention of `xs` [rows, 1, d] to precomputed encoder keys/values
    /// [sources, heads, s, head_dim], where each source serves `group` consecutive rows (the
    /// beams of one sentence): the group's queries attend together, as extra query positions,
    /// so the encoder keys and values are never copied per beam.
    fn forward_cross(
        &self,
        xs: &Tensor,
        cross: &CrossKv,
        group: usize,
    ) -> candle_core::Result<Tensor> {
        let (rows, t, d) = xs.dims3()?;
        let sources = rows / group;
        let q = self
            .q_proj
            .forward(xs)?
            .reshape((sources, group * t, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let out = self.attend(&q, &cross.k, &cross.v, Some(&cross.bias))?;
        let out = out.transpose(1, 2)?.reshape((rows, t, d))?;
        self.out_proj.forward(&out)
    }
}

/// `MarianEncoderLayer`: post-norm self-attention and feed-forward.
#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_layer_norm: LayerNorm,
    activation: Activation,
}

impl EncoderLayer {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<EncoderLayer> {
        let d = cfg.d_model;
        Ok(EncoderLayer {
            self_attn: Attention::new(d, cfg.encoder_attention_heads, vb.pp("self_attn"))?,
            self_attn_layer_norm: layer_norm(d, vb.pp("self_attn_layer_norm"))?,
            fc1: linear(d, cfg.encoder_ffn_dim, vb.pp("fc1"))?,
            fc2: linear(cfg.encoder_ffn_dim, d, vb.pp("fc2"))?,
            final_layer_norm: layer_norm(d, vb.pp("final_layer_norm"))?,
            activation: activation(cfg),
        })
    }

    fn forward(&self, xs: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let xs = (xs + self.self_attn.forward(xs, bias)?)?;
        let xs = self.self_attn_layer_norm.forward(&xs)?;
        let ff = feed_forward(&xs, &self.fc1, &self.fc2, self.activation)?;
        self.final_layer_norm.forward(&(xs + ff)?)
    }
}

fn activation(cfg: &Config) -> Activation {
    // Checked when the config was read.
    Activation::from_name(&cfg.activation_function).unwrap_or(Activation::Gelu)
}

fn feed_forward(
    xs: &Tensor,
    fc1: &Linear,
    fc2: &Linear,
    act: Activation,
) -> candle_core::Result<Tensor> {
    fc2.forward(&act.forward(&fc1.forward(xs)?)?)
}

/// `MarianDecoderLayer`: post-norm self-attention, cross-attention and feed-forward.
#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    encoder_attn: Attention,
    encoder_attn_layer_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_layer_norm: LayerNorm,
    activation: Activation,
}

impl DecoderLayer {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<DecoderLayer> {
        let d = cfg.d_model;
        let heads = cfg.decoder_attention_heads;
        Ok(DecoderLayer {
            self_attn: Attention::new(d, heads, vb.pp("self_attn"))?,
            self_attn_layer_norm: layer_norm(d, vb.pp("self_attn_layer_norm"))?,
            encoder_attn: Attention::new(d, heads, vb.pp("encoder_attn"))?,
            encoder_attn_layer_norm: layer_norm(d, vb.pp("encoder_attn_layer_norm"))?,
            fc1: linear(d, cfg.decoder_ffn_dim, vb.pp("fc1"))?,
            fc2: linear(cfg.decoder_ffn_dim, d, vb.pp("fc2"))?,
            final_layer_norm: layer_norm(d, vb.pp("final_layer_norm"))?,
            activation: activation(cfg),
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        layer: &mut LayerState,
        group: usize,
    ) -> candle_core::Result<Tensor> {
        let attn = self.self_attn.forward_cached(xs, &mut layer.self_kv)?;
        let xs = self.self_attn_layer_norm.forward(&(xs + attn)?)?;
        let cross = self.encoder_attn.forward_cross(&xs, &layer.cross, group)?;
        let xs = self.encoder_attn_layer_norm.forward(&(xs + cross)?)?;
        let ff = feed_forward(&xs, &self.fc1, &self.fc2, self.activation)?;
        self.final_layer_norm.forward(&(xs + ff)?)
    }
}

/// Token embeddings times `embed_scale`, plus static positions.
#[derive(Debug, Clone)]
struct Embeddings {
    tokens: Embedding,
    positions: Tensor,
    scale: f64,
}

impl Embeddings {
    /// `side`: "encoder" or "decoder", for the name of a stored position table.
    fn new(cfg: &Config, tokens: Tensor, vb: &VarBuilder, side: &str) -> candle_core::Result<Self> {
        let name = format!("model.{side}.embed_positions.weight");
        Ok(Embeddings {
            tokens: Embedding::new(tokens, cfg.d_model),
            positions: positions(cfg, vb, &name)?,
            scale: if cfg.scale_embedding {
                (cfg.d_model as f64).sqrt()
            } else {
                1.0
            },
        })
    }

    /// ids [b, t] at positions offset..offset+t → [b, t, d]
    fn forward(&self, ids: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let max = self.positions.dim(0)?;
        if offset + t > max {
            candle_core::bail!(
                "position {} is past the model's max_position_embeddings ({max})",
                offset + t - 1
            );
        }
        let xs = (self.tokens.forward(ids)? * self.scale)?;
        xs.broadcast_add(&self.positions.narrow(0, offset, t)?)
    }
}

#[derive(Debug, Clone)]
struct Encoder {
    embed: Embeddings,
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    fn new(cfg: &Config, tokens: Tensor, vb: &VarBuilder) -> candle_core::Result<Encoder> {
        let layers = vb.pp("model.encoder.layers");
        Ok(Encoder {
            embed: Embeddings::new(cfg, tokens, vb, "encoder")?,
            layers: (0..cfg.encoder_layers)
                .map(|i| EncoderLayer::new(cfg, layers.pp(i)))
                .collect::<candle_core::Result<_>>()?,
        })
    }

    fn forward(&self, ids: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = self.embed.forward(ids, 0)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, bias)?;
        }
        Ok(xs)
    }
}

#[derive(Debug, Clone)]
struct Decoder {
    embed: Embeddings,
    layers: Vec<DecoderLayer>,
}

impl Decoder {
    fn new(cfg: &Config, tokens: Tensor, vb: &VarBuilder) -> candle_core::Result<Decoder> {
        let layers = vb.pp("model.decoder.layers");
        Ok(Decoder {
            embed: Embeddings::new(cfg, tokens, vb, "decoder")?,
            layers: (0..cfg.decoder_layers)
                .map(|i| DecoderLayer::new(cfg, layers.pp(i)))
                .collect::<candle_core::Result<_>>()?,
        })
    }
}

/// What the encoder made of a batch: hidden states [b, s, d] and the padding bias.
#[derive(Debug, Clone)]
pub struct Encoded {
    hidden: Tensor,
    bias: Tensor,
}

impl Encoded {
    /// The encoder's last hidden states, [batch, source length, d_model].
    pub fn hidden(&self) -> &Tensor {
        &self.hidden
    }
}

/// One decoder layer's cross-attention keys/values and the padding bias of their sources.
#[derive(Debug, Clone)]
struct CrossKv {
    k: Tensor,
    v: Tensor,
    bias: Tensor,
}

#[derive(Debug, Clone)]
struct LayerState {
    self_kv: Option<(Tensor, Tensor)>,
    cross: CrossKv,
}

/// Everything the decoder carries between steps, for `rows` rows: each layer's self-attention
/// cache (one entry per row) and cross-attention keys/values (one entry per source sentence,
/// shared by `group` consecutive rows).
#[derive(Debug, Clone)]
pub struct DecoderState {
    layers: Vec<LayerState>,
    rows: usize,
    group: usize,
    /// Positions already decoded (all rows advance together).
    offset: usize,
}

impl DecoderState {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Tokens decoded so far in every row.
    pub fn position(&self) -> usize {
        self.offset
    }

    /// Keep `rows` (indices into the current rows, in the new order; repeats allowed): beam
    /// reordering and expansion, and dropping rows whose sentence is finished. The self-attention
    /// caches are gathered; the cross-attention keys/values only when the set of sentences
    /// changes, and never duplicated while each sentence's rows stay together.
    pub fn select(&mut self, rows: &[u32]) -> Result<()> {
        self.select_rows(rows)
            .map_err(|e| inference("cannot reorder the decoder rows", e))
    }

    fn select_rows(&mut self, rows: &[u32]) -> candle_core::Result<()> {
        if rows.is_empty() {
            candle_core::bail!("no rows left to select");
        }
        if let Some(bad) = rows.iter().find(|&&r| r as usize >= self.rows) {
            candle_core::bail!("row {bad} out of range ({} rows)", self.rows);
        }
        let identity =
            rows.len() == self.rows && rows.iter().enumerate().all(|(i, &r)| r as usize == i);
        if identity {
            return Ok(());
        }
        let device = self.layers[0].cross.k.device().clone();
        let index = Tensor::new(rows, &device)?;
        for layer in &mut self.layers {
            if let Some((k, v)) = layer.self_kv.take() {
                layer.self_kv = Some((k.index_select(&index, 0)?, v.index_select(&index, 0)?));
            }
        }
        let sources: Vec<u32> = rows.iter().map(|&r| r / self.group as u32).collect();
        let (group, picked) = group_sources(&sources);
        let n_sources = self.rows / self.group;
        let same =
            picked.len() == n_sources && picked.iter().enumerate().all(|(i, &s)| s as usize == i);
        if !same {
            let index = Tensor::new(picked.as_slice(), &device)?;
            for layer in &mut self.layers {
                let c = &layer.cross;
                layer.cross = CrossKv {
                    k: c.k.index_select(&index, 0)?,
                    v: c.v.index_select(&index, 0)?,
                    bias: c.bias.index_select(&index, 0)?,
                };
            }
        }
        self.rows = rows.len();
        self.group = group;
        Ok(())
    }
}

/// Split per-row sources into equal runs: (run length, source of each run). Rows whose sources
/// do not form equal runs get a run length of 1 (every row its own copy).
fn group_sources(sources: &[u32]) -> (usize, Vec<u32>) {
    let first_run = sources.iter().take_while(|&&s| s == sources[0]).count();
    let uniform = sources.len().is_multiple_of(first_run)
        && sources
            .chunks(first_run)
            .all(|c| c.iter().all(|&s| s == c[0]));
    let group = if uniform { first_run } else { 1 };
    (group, sources.chunks(group).map(|c| c[0]).collect())
}

fn inference(what: &str, source: candle_core::Error) -> Error {
    Error::Inference {
        what: format!("Marian: {what}"),
        source,
    }
}

/// A loaded Marian model.
#[derive(Debug, Clone)]
pub struct MarianModel {
    config: Config,
    encoder: Encoder,
    decoder: Decoder,
    lm_head: Linear,
    final_logits_bias: Tensor,
    device: Device,
}

impl MarianModel {
    /// Load a resolved model folder: `config.json` and `model.safetensors` (memory-mapped) or
    /// `pytorch_model.bin` (candle's pickle reader, which runs no code).
    pub fn load(model: &ResolvedModel, device: &Device, dtype: DType) -> Result<MarianModel> {
        let config = model
            .file("config.json")
            .ok_or_else(|| Error::ModelFolder {
                path: model.name.clone().into(),
                problem: "no config.json".into(),
            })?;
        let weights = ["model.safetensors", "pytorch_model.bin"]
            .iter()
            .find_map(|f| model.file(f))
            .ok_or_else(|| Error::ModelFolder {
                path: model.name.clone().into(),
                problem: "no weights: expected model.safetensors or pytorch_model.bin".into(),
            })?;
        MarianModel::from_files(config, weights, device, dtype)
    }

    pub fn from_files(
        config: &Path,
        weights: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<MarianModel> {
        let config = Config::from_file(config)?;
        let file_err = |what: &str, e: candle_core::Error| Error::ModelFile {
            path: weights.to_path_buf(),
            what: what.into(),
            source: Some(Box::new(e)),
        };
        let vb = if weights.extension().is_some_and(|e| e == "safetensors") {
            // SAFETY: the file is mapped read-only; candle validates the header and the tensor
            // bounds. Changing the file while precis runs is outside what any reader can guard.
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, device) }
        } else {
            VarBuilder::from_pth(weights, dtype, device)
        }
        .map_err(|e| file_err("cannot read the weights", e))?;
        MarianModel::new(config, vb, device)
            .map_err(|e| file_err("not the weights of a Marian model with this config.json", e))
    }

    /// Build from a config and weights with transformers' names (`model.encoder.layers.0...`).
    pub fn new(
        config: Config,
        vb: VarBuilder,
        device: &Device,
    ) -> candle_core::Result<MarianModel> {
        let (enc_tokens, dec_tokens) = token_tables(&config, &vb)?;
        let encoder = Encoder::new(&config, enc_tokens, &vb)?;
        let decoder = Decoder::new(&config, dec_tokens.clone(), &vb)?;
        let target = config.target_vocab_size();
        let head = if config.tie_word_embeddings {
            dec_tokens
        } else {
            vb.get((target, config.d_model), "lm_head.weight")?
        };
        // Absent from some checkpoints; transformers then starts it at zero.
        let final_logits_bias = if vb.contains_tensor("final_logits_bias") {
            vb.get((1, target), "final_logits_bias")?
        } else {
            Tensor::zeros((1, target), vb.dtype(), device)?
        };
        Ok(MarianModel {
            config,
            encoder,
            decoder,
            lm_head: Linear::new(head, None),
            final_logits_bias: final_logits_bias.to_dtype(DType::F32)?,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Right-pad source id sequences with `pad_token_id` into ids [b, s] and a 0/1 mask [b, s].
    pub fn pad_batch(&self, sources: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let pad = self.config.pad_token_id.unwrap_or(0);
        let len = sources.iter().map(Vec::len).max().unwrap_or(0);
        if len == 0 || sources.iter().any(Vec::is_empty) {
            return Err(inference(
                "cannot encode an empty source (a tokenized sentence has at least its </s>)",
                candle_core::Error::Msg("empty source".into()),
            ));
        }
        let mut ids = Vec::with_capacity(sources.len() * len);
        let mut mask = Vec::with_capacity(sources.len() * len);
        for src in sources {
            ids.extend(src.iter().copied().chain(std::iter::repeat(pad)).take(len));
            mask.extend((0..len).map(|i| u32::from(i < src.len())));
        }
        let shape = (sources.len(), len);
        let make = |v: Vec<u32>| Tensor::from_vec(v, shape, &self.device);
        let tensors = make(ids).and_then(|ids| Ok((ids, make(mask)?)));
        tensors.map_err(|e| inference("cannot build the source batch", e))
    }

    /// Batched encoder: ids [b, s] (u32), mask [b, s] (1 for tokens, 0 for padding).
    pub fn encode(&self, ids: &Tensor, mask: &Tensor) -> Result<Encoded> {
        let run = || -> candle_core::Result<Encoded> {
            let (_, s) = ids.dims2()?;
            if s > self.config.max_position_embeddings {
                candle_core::bail!(
                    "the source has {s} tokens; this model reads at most {} (max_position_embeddings): split the sentence",
                    self.config.max_position_embeddings
                );
            }
            let bias = key_bias(mask)?;
            Ok(Encoded {
                hidden: self.encoder.forward(ids, &bias)?,
                bias,
            })
        };
        run().map_err(|e| inference("encoder failed", e))
    }

    /// A fresh decoder state for an encoded batch, one row per sentence: the cross-attention
    /// keys and values of every layer, computed here once.
    pub fn decoder_state(&self, enc: &Encoded) -> Result<DecoderState> {
        let run = || -> candle_core::Result<DecoderState> {
            let layers = self
                .decoder
                .layers
                .iter()
                .map(|layer| {
                    let (k, v) = layer.encoder_attn.key_values(&enc.hidden)?;
                    let cross = CrossKv {
                        k,
                        v,
                        bias: enc.bias.clone(),
                    };
                    Ok(LayerState {
                        self_kv: None,
                        cross,
                    })
                })
                .collect::<candle_core::Result<_>>()?;
            Ok(DecoderState {
                layers,
                rows: enc.hidden.dim(0)?,
                group: 1,
                offset: 0,
            })
        };
        run().map_err(|e| inference("cannot start the decoder", e))
    }

    /// One step: tokens [rows, 1] (u32) → logits [rows, target vocab] (f32), with
    /// `final_logits_bias` added.
    pub fn decode_step(&self, state: &mut DecoderState, tokens: &Tensor) -> Result<Tensor> {
        self.step(state, tokens)
            .map_err(|e| inference("decoder step failed", e))
    }

    fn step(&self, state: &mut DecoderState, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (rows, t) = tokens.dims2()?;
        if rows != state.rows {
            candle_core::bail!("{rows} tokens for {} decoder rows", state.rows);
        }
        let mut xs = self.decoder.embed.forward(tokens, state.offset)?;
        for (layer, cache) in self.decoder.layers.iter().zip(&mut state.layers) {
            xs = layer.forward(&xs, cache, state.group)?;
        }
        state.offset += t;
        let last = xs.narrow(1, t - 1, 1)?.squeeze(1)?;
        let logits = self.lm_head.forward(&last)?.to_dtype(DType::F32)?;
        logits.broadcast_add(&self.final_logits_bias)
    }

    /// Translate a batch of source id sequences (each ending with `</s>`): pad, encode once,
    /// then search as `options` say. Outputs are in input order.
    pub fn generate(
        &self,
        sources: &[Vec<u32>],
        options: &GenerateOptions,
    ) -> Result<Vec<Generated>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let start = options
            .decoder_start_token_id
            .or(self.config.decoder_start_token_id)
            .or(self.config.bos_token_id)
            .ok_or_else(|| Error::Unsupported {
                what: "Marian: neither generation_config.json nor config.json names a \
                       decoder_start_token_id"
                    .into(),
            })?;
        let (ids, mask) = self.pad_batch(sources)?;
        let encoded = self.encode(&ids, &mask)?;
        let mut decoder = MarianDecoder::new(self, &encoded)?;
        let prefixes = vec![vec![start]; sources.len()];
        crate::generate::generate(&mut decoder, &prefixes, options)
    }
}

/// The Marian decoder as the search drives it.
pub struct MarianDecoder<'m> {
    pub model: &'m MarianModel,
    pub state: DecoderState,
}

impl<'m> MarianDecoder<'m> {
    /// A decoder over an encoded batch, one row per sentence.
    pub fn new(model: &'m MarianModel, encoded: &Encoded) -> Result<MarianDecoder<'m>> {
        Ok(MarianDecoder {
            model,
            state: model.decoder_state(encoded)?,
        })
    }
}

impl StepDecoder for MarianDecoder<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let ids = Tensor::from_slice(tokens, (tokens.len(), 1), &self.model.device)
            .map_err(|e| inference("cannot build the decoder input", e))?;
        self.model.decode_step(&mut self.state, &ids)
    }

    fn select(&mut self, rows: &[u32]) -> Result<()> {
        self.state.select(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(dtype: DType) -> MarianModel {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian/tiny-shared");
        MarianModel::from_files(
            &dir.join("config.json"),
            &dir.join("model.safetensors"),
            &Device::Cpu,
            dtype,
        )
        .unwrap()
    }

    /// Two sentences of different lengths, encoded as one padded batch.
    fn two_sentences(model: &MarianModel) -> DecoderState {
        let (ids, mask) = model
            .pad_batch(&[vec![5, 6, 7, 8, 9, 0], vec![10, 11, 0]])
            .unwrap();
        model
            .decoder_state(&model.encode(&ids, &mask).unwrap())
            .unwrap()
    }

    fn step(model: &MarianModel, state: &mut DecoderState, tokens: &[u32]) -> Vec<Vec<f32>> {
        let t = Tensor::from_slice(tokens, (tokens.len(), 1), &Device::Cpu).unwrap();
        let logits = model.decode_step(state, &t).unwrap();
        logits.to_vec2().unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn selected_rows_decode_as_their_sentence_alone() {
        let model = tiny(DType::F32);
        let start = model.config().decoder_start_token_id.unwrap();
        let mut reference = two_sentences(&model);
        step(&model, &mut reference, &[start, start]);
        let want = step(&model, &mut reference, &[20, 30]);
        // Grouped rows (beams of one sentence together) and rows in no grouping at all.
        for rows in [vec![0u32, 0, 1, 1], vec![1, 0, 1], vec![1]] {
            let mut state = two_sentences(&model);
            step(&model, &mut state, &[start, start]);
            state.select(&rows).unwrap();
            assert_eq!(state.rows(), rows.len());
            let tokens: Vec<u32> = rows.iter().map(|&r| [20, 30][r as usize]).collect();
            let got = step(&model, &mut state, &tokens);
            for (g, &r) in got.iter().zip(&rows) {
                assert!(close(g, &want[r as usize], 1e-5), "rows {rows:?}");
            }
        }
    }

    #[test]
    fn half_precision_stays_close_to_f32() {
        let model = tiny(DType::F32);
        let start = model.config().decoder_start_token_id.unwrap();
        let want = step(&model, &mut two_sentences(&model), &[start, start]);
        // transformers itself moves these logits (|max| about 6) by 0.04 in f16, 0.32 in bf16.
        for (dtype, tolerance) in [(DType::F16, 0.1), (DType::BF16, 1.0)] {
            let model = tiny(dtype);
            let got = step(&model, &mut two_sentences(&model), &[start, start]);
            let diff = got
                .iter()
                .flatten()
                .zip(want.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < tolerance, "{dtype:?}: max |Δ| {diff}");
        }
    }

    #[test]
    fn positions_past_the_table_are_an_error() {
        let model = tiny(DType::F32);
        let long = vec![5u32; model.config().max_position_embeddings + 1];
        let (ids, mask) = model.pad_batch(&[long]).unwrap();
        let err = model.encode(&ids, &mask).unwrap_err();
        assert_eq!(err.exit_code(), 10);
        assert!(
            crate::error_chain(&err).contains("split the sentence"),
            "{err}"
        );
    }

    #[test]
    fn positions_put_sines_first_then_cosines() {
        let table = sinusoidal_positions(3, 4);
        // pos 0: sin(0)=0 for the first half, cos(0)=1 for the second
        assert_eq!(&table[0..4], &[0.0, 0.0, 1.0, 1.0]);
        // pos 2: angles 2/10000^0 and 2/10000^(2/4)
        let row = &table[8..12];
        let a = [2f64, 2.0 / 100.0];
        let want = [a[0].sin(), a[1].sin(), a[0].cos(), a[1].cos()].map(|x| x as f32);
        assert_eq!(row, &want);
    }

    #[test]
    fn sources_group_into_equal_runs() {
        assert_eq!(group_sources(&[0, 0, 1, 1]), (2, vec![0, 1]));
        assert_eq!(group_sources(&[2, 2, 2]), (3, vec![2]));
        assert_eq!(group_sources(&[0, 1, 3]), (1, vec![0, 1, 3]));
        assert_eq!(group_sources(&[0, 0, 1]), (1, vec![0, 0, 1]));
        assert_eq!(group_sources(&[0, 0, 1, 2]), (1, vec![0, 0, 1, 2]));
    }

    #[test]
    fn activations_follow_transformers_names() {
        assert_eq!(Activation::from_name("swish"), Ok(Activation::Silu));
        assert_eq!(Activation::from_name("gelu"), Ok(Activation::Gelu));
        assert_eq!(Activation::from_name("gelu_new"), Ok(Activation::GeluTanh));
        assert_eq!(Activation::from_name("relu"), Ok(Activation::Relu));
        assert!(Activation::from_name("quick_gelu").is_err());
    }
}
