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

use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, Generated, StepDecoder};
use crate::models::gemv::Linear;
use crate::models::ResolvedModel;

mod config;
mod state;

use config::Activation;
pub use config::Config;
pub use state::DecoderState;
use state::{Kv, LayerState, StepPlan};

/// A projection `{vb}.weight` [out, in] and `{vb}.bias`.
fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb).map(Linear::from)
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
        if let Some(out) = crate::models::attention::attend(q, k, v, bias, self.scaling as f32)? {
            return Ok(out);
        }
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

    /// Decoder self-attention for one new token per row: its keys and values go into `slot` of
    /// the cache, and it attends to slots `0..=slot` (less those `bias` hides). One token per
    /// step sees every earlier one, so no causal mask is needed.
    fn forward_cached(
        &self,
        xs: &Tensor,
        cache: &Kv,
        slot: usize,
        bias: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let q = self.split_heads(&self.q_proj.forward(xs)?)?;
        let (k, v) = self.key_values(xs)?;
        cache.k.slice_set(&k, 2, slot)?;
        cache.v.slice_set(&v, 2, slot)?;
        let k = cache.k.narrow(2, 0, slot + 1)?;
        let v = cache.v.narrow(2, 0, slot + 1)?;
        self.merge_heads(&self.attend(&q, &k, &v, bias)?)
    }

    /// Cross-attention of `xs` [rows, 1, d] to precomputed encoder keys/values
    /// [sources, heads, s, head_dim], where each source serves `group` consecutive rows (the
    /// beams of one sentence): the group's queries attend together, as extra query positions,
    /// so the encoder keys and values are never copied per beam.
    fn forward_cross(
        &self,
        xs: &Tensor,
        cross: &Kv,
        bias: &Tensor,
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
        let out = self.attend(&q, &cross.k, &cross.v, Some(bias))?;
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
        layer: &LayerState,
        plan: &StepPlan,
        cross_bias: &Tensor,
        group: usize,
    ) -> candle_core::Result<Tensor> {
        let bias = plan.self_bias.as_ref();
        let attn = self
            .self_attn
            .forward_cached(xs, &layer.self_kv, plan.slot, bias)?;
        let xs = self.self_attn_layer_norm.forward(&(xs + attn)?)?;
        let cross = self
            .encoder_attn
            .forward_cross(&xs, &layer.cross, cross_bias, group)?;
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

    /// One id per row, [rows, 1], each at its own position → [rows, 1, d]
    fn forward_rows(&self, ids: &Tensor, positions: &[u32]) -> candle_core::Result<Tensor> {
        match positions {
            [first, rest @ ..] if rest.iter().all(|p| p == first) => {
                self.forward(ids, *first as usize)
            }
            _ => {
                let max = self.positions.dim(0)?;
                if let Some(p) = positions.iter().find(|&&p| p as usize >= max) {
                    candle_core::bail!(
                        "position {p} is past the model's max_position_embeddings ({max})"
                    );
                }
                let index = Tensor::new(positions, ids.device())?;
                let table = self.positions.index_select(&index, 0)?.unsqueeze(1)?;
                (self.tokens.forward(ids)? * self.scale)? + table
            }
        }
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
    /// Tokens of each source (its unpadded length).
    lens: Vec<usize>,
}

impl Encoded {
    /// The encoder's last hidden states, [batch, source length, d_model].
    pub fn hidden(&self) -> &Tensor {
        &self.hidden
    }
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
            let lens = mask.sum(1)?.to_vec1::<u32>()?;
            Ok(Encoded {
                hidden: self.encoder.forward(ids, &bias)?,
                bias,
                lens: lens.into_iter().map(|n| n as usize).collect(),
            })
        };
        run().map_err(|e| inference("encoder failed", e))
    }

    /// A fresh decoder state for an encoded batch, one row per sentence: the cross-attention
    /// keys and values of every layer, computed here once.
    pub fn decoder_state(&self, enc: &Encoded) -> Result<DecoderState> {
        let run = || -> candle_core::Result<DecoderState> {
            DecoderState::new(
                self.cross_kv(&enc.hidden)?,
                enc.bias.clone(),
                enc.lens.clone(),
                self.config.decoder_attention_heads,
                self.config.d_model / self.config.decoder_attention_heads,
            )
        };
        run().map_err(|e| inference("cannot start the decoder", e))
    }

    /// Every decoder layer's cross-attention keys and values of encoder states [b, s, d].
    fn cross_kv(&self, hidden: &Tensor) -> candle_core::Result<Vec<Kv>> {
        self.decoder
            .layers
            .iter()
            .map(|layer| {
                let (k, v) = layer.encoder_attn.key_values(hidden)?;
                Ok(Kv { k, v })
            })
            .collect()
    }

    /// One step: tokens [rows, 1] (u32) → logits [rows, target vocab] (f32), with
    /// `final_logits_bias` added.
    pub fn decode_step(&self, state: &mut DecoderState, tokens: &Tensor) -> Result<Tensor> {
        self.step(state, tokens)
            .map_err(|e| inference("decoder step failed", e))
    }

    fn step(&self, state: &mut DecoderState, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (rows, t) = tokens.dims2()?;
        if rows != state.rows() || t != 1 {
            candle_core::bail!(
                "the decoder takes one token per row a step: got [{rows}, {t}] for {} rows",
                state.rows()
            );
        }
        let plan = state.plan_step()?;
        let mut xs = self.decoder.embed.forward_rows(tokens, &plan.positions)?;
        for (layer, cache) in self.decoder.layers.iter().zip(&state.layers) {
            xs = layer.forward(&xs, cache, &plan, &state.cross_bias, state.group())?;
        }
        state.advance();
        let logits = self
            .lm_head
            .forward(&xs.squeeze(1)?)?
            .to_dtype(DType::F32)?;
        logits.broadcast_add(&self.final_logits_bias)
    }

    /// The token every target sentence starts from.
    fn start_token(&self, options: &GenerateOptions) -> Result<u32> {
        options
            .decoder_start_token_id
            .or(self.config.decoder_start_token_id)
            .or(self.config.bos_token_id)
            .ok_or_else(|| Error::Unsupported {
                what: "Marian: neither generation_config.json nor config.json names a \
                       decoder_start_token_id"
                    .into(),
            })
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
        let start = self.start_token(options)?;
        let (ids, mask) = self.pad_batch(sources)?;
        let encoded = self.encode(&ids, &mask)?;
        let mut decoder = MarianDecoder::new(self, &encoded)?;
        let prefixes = vec![vec![start]; sources.len()];
        crate::generate::generate(&mut decoder, &prefixes, options)
    }

    /// Translate sources with continuous batching: `width` rows decode at once, and when a
    /// sentence ends the next source starts in its row, so rows stay busy until the sources run
    /// out. Greedy search or sampling (beam search runs batch by batch, in `generate`); each
    /// sentence stops at its own `max_lengths` entry (the start token counted). Sources are
    /// taken in order (longest first keeps the cross-attention padding low); outputs come back
    /// in that order.
    pub fn generate_stream(
        &self,
        sources: &[Vec<u32>],
        width: usize,
        options: &GenerateOptions,
        max_lengths: &[usize],
    ) -> Result<Vec<Generated>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let start = self.start_token(options)?;
        let width = width.clamp(1, sources.len());
        // Encode every source up front, `width` at a time; the first batch starts the rows.
        let mut hidden = Vec::with_capacity(sources.len());
        let mut state = None;
        for chunk in sources.chunks(width) {
            let (ids, mask) = self.pad_batch(chunk)?;
            let encoded = self.encode(&ids, &mask)?;
            for (i, src) in chunk.iter().enumerate() {
                let h = encoded.hidden.narrow(0, i, 1);
                let h = h.and_then(|h| h.narrow(1, 0, src.len()));
                hidden.push(h.map_err(|e| inference("cannot split the encoder output", e))?);
            }
            if state.is_none() {
                state = Some(self.decoder_state(&encoded)?);
            }
        }
        let mut decoder = MarianStream {
            model: self,
            state: state.expect("at least one source"),
            hidden,
        };
        let prefixes = vec![vec![start]; sources.len()];
        crate::generate::stream(&mut decoder, &prefixes, width, max_lengths, options)
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

/// The Marian decoder with every source encoded, for continuous batching: a row whose
/// sentence finished gets the cross-attention keys and values of the next source.
struct MarianStream<'m> {
    model: &'m MarianModel,
    state: DecoderState,
    /// Encoder states of every source, [1, source length, d_model], in stream order.
    hidden: Vec<Tensor>,
}

impl StepDecoder for MarianStream<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let ids = Tensor::from_slice(tokens, (tokens.len(), 1), &self.model.device)
            .map_err(|e| inference("cannot build the decoder input", e))?;
        self.model.decode_step(&mut self.state, &ids)
    }

    fn select(&mut self, rows: &[u32]) -> Result<()> {
        self.state.select(rows)
    }

    fn restart(&mut self, restarts: &[(usize, usize)]) -> Result<()> {
        for &(row, sentence) in restarts {
            let hidden = &self.hidden[sentence];
            let mut run = || {
                let cross = self.model.cross_kv(hidden)?;
                self.state.restart(row, cross, hidden.dim(1)?)
            };
            run().map_err(|e| inference("cannot start a sentence in a running row", e))?;
        }
        Ok(())
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

    /// Logits of `source` decoded alone, fed `start` and then `tokens`.
    fn alone(model: &MarianModel, source: &[u32], start: u32, tokens: &[u32]) -> Vec<Vec<f32>> {
        let (ids, mask) = model.pad_batch(&[source.to_vec()]).unwrap();
        let mut state = model
            .decoder_state(&model.encode(&ids, &mask).unwrap())
            .unwrap();
        std::iter::once(start)
            .chain(tokens.iter().copied())
            .map(|t| step(model, &mut state, &[t]).remove(0))
            .collect()
    }

    #[test]
    fn a_restarted_row_decodes_as_its_sentence_alone() {
        // Row 1 takes a new sentence (longer than any before) at step 5, row 0 another at step
        // 20; the cache fills at slot 32 and drops the 5 slots no row sees any more. Each new
        // sentence must come out as it does alone.
        let model = tiny(DType::F32);
        let start = model.config().decoder_start_token_id.unwrap();
        let third = [12u32, 13, 14, 15, 16, 17, 18, 0];
        let fourth = [21u32, 22, 0];
        let feed: Vec<u32> = (0..45).map(|i| 20 + i % 7).collect();
        let want_third = alone(&model, &third, start, &feed);
        let want_fourth = alone(&model, &fourth, start, &feed);
        let hidden = |src: &[u32]| {
            let (ids, mask) = model.pad_batch(&[src.to_vec()]).unwrap();
            model.encode(&ids, &mask).unwrap().hidden
        };
        let mut state = two_sentences(&model);
        let (mut since1, mut since0) = (None, None);
        for i in 0..45usize {
            if i == 5 {
                let cross = model.cross_kv(&hidden(&third)).unwrap();
                state.restart(1, cross, third.len()).unwrap();
                since1 = Some(i);
            }
            if i == 20 {
                let cross = model.cross_kv(&hidden(&fourth)).unwrap();
                state.restart(0, cross, fourth.len()).unwrap();
                since0 = Some(i);
            }
            let token = |since: Option<usize>| match since {
                Some(s) if s == i => start,
                Some(s) => feed[i - s - 1],
                None => feed[i],
            };
            let got = step(&model, &mut state, &[token(since0), token(since1)]);
            if let Some(s) = since1 {
                assert!(close(&got[1], &want_third[i - s], 1e-5), "row 1, step {i}");
            }
            if let Some(s) = since0 {
                assert!(close(&got[0], &want_fourth[i - s], 1e-5), "row 0, step {i}");
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
    fn activations_follow_transformers_names() {
        assert_eq!(Activation::from_name("swish"), Ok(Activation::Silu));
        assert_eq!(Activation::from_name("gelu"), Ok(Activation::Gelu));
        assert_eq!(Activation::from_name("gelu_new"), Ok(Activation::GeluTanh));
        assert_eq!(Activation::from_name("relu"), Ok(Activation::Relu));
        assert!(Activation::from_name("quick_gelu").is_err());
    }
}
