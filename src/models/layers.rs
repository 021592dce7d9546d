//! Building blocks shared by the decoder-only language models: projections that are dense
//! (safetensors) or quantized (GGUF), embeddings, RMS norm, rotary position embeddings and
//! causal attention with grouped-query heads over a KV cache.
//!
//! A model file (`qwen2.rs`, …) composes these; where its weights come from is the business of
//! a [`Weights`] source, so one forward pass serves both file formats.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::kv_cache::KvCache;

/// Where a model's tensors come from. Names are Hugging Face's (`model.layers.0.self_attn.q_proj`);
/// a GGUF source maps them to llama.cpp's (`blk.0.attn_q`).
pub trait Weights {
    fn device(&self) -> &Device;
    /// The dtype activations run in (the weights' dtype for dense models, f32 for GGUF).
    fn dtype(&self) -> DType;
    /// A `[out, in]` matrix `{name}.weight`, and `{name}.bias` when `bias` is set.
    fn linear(&mut self, name: &str, out_dim: usize, in_dim: usize, bias: bool) -> Result<Proj>;
    /// A vector `{name}.weight` (norm weights), in the activation dtype.
    fn vector(&mut self, name: &str, dim: usize) -> Result<Tensor>;
    /// A `[vocab, hidden]` embedding table `{name}.weight`.
    fn embedding(&mut self, name: &str, vocab: usize, hidden: usize) -> Result<Embed>;
}

/// A linear layer, dense or quantized.
#[derive(Debug, Clone)]
pub enum Proj {
    Dense(candle_nn::Linear),
    Quantized {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl Proj {
    /// The output projection tied to the input embedding (Qwen2.5 ties them).
    pub fn tied(embed: &Embed) -> Result<Proj> {
        match embed {
            Embed::Dense(table) => Ok(Proj::Dense(candle_nn::Linear::new(table.clone(), None))),
            Embed::Quantized(table) => Ok(Proj::Quantized {
                weight: QMatMul::from_arc(table.clone())?,
                bias: None,
            }),
        }
    }
}

impl Module for Proj {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Proj::Dense(linear) => linear.forward(xs),
            Proj::Quantized { weight, bias } => {
                let ys = weight.forward(xs)?;
                match bias {
                    Some(b) => ys.broadcast_add(b),
                    None => Ok(ys),
                }
            }
        }
    }
}

/// Token embeddings. A quantized table stays quantized: rows are dequantized on lookup, so a
/// q4 model does not carry a 900 MB f32 copy of its vocabulary.
#[derive(Debug, Clone)]
pub enum Embed {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

impl Embed {
    /// `ids` of any shape → embeddings of shape `ids.dims() + [hidden]`, in `dtype`.
    pub fn forward(&self, ids: &Tensor, dtype: DType) -> Result<Tensor> {
        let xs = match self {
            Embed::Dense(table) => {
                let mut dims = ids.dims().to_vec();
                dims.push(table.dim(1)?);
                table.index_select(&ids.flatten_all()?, 0)?.reshape(dims)?
            }
            Embed::Quantized(table) => table.embedding(ids)?,
        };
        xs.to_dtype(dtype)
    }
}

/// Root-mean-square layer norm (Hugging Face's `Qwen2RMSNorm`/`LlamaRMSNorm`).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> RmsNorm {
        RmsNorm {
            weight,
            eps: eps as f32,
        }
    }
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&xs.contiguous()?, &self.weight, self.eps)
    }
}

/// Rotary position embeddings, NeoX style (the two halves of each head rotate together, as
/// `rotate_half` in transformers). Angles are computed for the positions asked, in f32 as
/// transformers computes them, rather than read from a table sized for the whole context.
#[derive(Debug, Clone)]
pub struct Rotary {
    inv_freq: Vec<f32>,
    device: Device,
    dtype: DType,
}

impl Rotary {
    pub fn new(head_dim: usize, theta: f64, device: &Device, dtype: DType) -> Rotary {
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / (theta as f32).powf(i as f32 / head_dim as f32))
            .collect();
        Rotary {
            inv_freq,
            device: device.clone(),
            dtype,
        }
    }

    /// cos and sin for positions `offset..offset + len`, each `[len, head_dim / 2]`.
    pub fn at(&self, offset: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for pos in offset..offset + len {
            for f in &self.inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (len, half), &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, (len, half), &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    pub fn apply(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope(&xs.contiguous()?, cos, sin)
    }
}

/// The additive causal mask for `len` new positions after `offset` cached ones, `[rep × len,
/// offset + len]`: 0 where a query may look, -inf where it may not. Its rows repeat `rep`
/// times, once per query head sharing a key/value head (see [`Attention::forward`]).
pub fn causal_mask(
    offset: usize,
    len: usize,
    rep: usize,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let total = offset + len;
    let mask: Vec<f32> = (0..rep * len)
        .flat_map(|row| {
            let i = row % len;
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (rep * len, total), device)?.to_dtype(dtype)
}

/// Initial KV cache capacity in positions; it grows by as much again when full.
const KV_CACHE_CHUNK: usize = 512;

/// Self-attention with biases on q/k/v (Qwen2) or not, grouped-query heads, rotary
/// positions and a KV cache.
#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Proj,
    pub k_proj: Proj,
    pub v_proj: Proj,
    pub o_proj: Proj,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    cache: KvCache,
}

impl Attention {
    pub fn new(
        [q_proj, k_proj, v_proj, o_proj]: [Proj; 4],
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
    ) -> Attention {
        Attention {
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            n_heads,
            n_kv_heads,
            head_dim,
            cache: KvCache::new(2, KV_CACHE_CHUNK),
        }
    }

    pub fn cached_len(&self) -> usize {
        self.cache.current_seq_len()
    }

    pub fn reset(&mut self) {
        self.cache.reset();
    }

    /// `xs`: `[batch, len, hidden]` at positions following the cached ones; `mask` from
    /// [`causal_mask`] with `rep = n_heads / n_kv_heads` (none for a single position).
    pub fn forward(
        &mut self,
        xs: &Tensor,
        rotary: &Rotary,
        cos_sin: &(Tensor, Tensor),
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, len, _) = xs.dims3()?;
        let (h, kv, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let heads = |proj: &Proj, n: usize| -> Result<Tensor> {
            proj.forward(xs)?
                .reshape((b, len, n, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (cos, sin) = cos_sin;
        let q = rotary.apply(&heads(&self.q_proj, h)?, cos, sin)?;
        let k = rotary.apply(&heads(&self.k_proj, kv)?, cos, sin)?;
        let v = heads(&self.v_proj, kv)?;
        let (k, v) = self.cache.append(&k, &v)?;
        // Grouped-query attention without copying keys and values: the `h / kv` query heads
        // that share a kv head become extra rows of one matrix product.
        let rep = h / kv;
        let q = q.reshape((b, kv, rep * len, d))?;
        let mut att = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        if let Some(mask) = mask {
            att = att.broadcast_add(mask)?;
        }
        // Softmax in f32 whatever the activation dtype, as transformers does.
        let att =
            candle_nn::ops::softmax_last_dim(&att.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?;
        let ys = att
            .matmul(&v)?
            .reshape((b, h, len, d))?
            .transpose(1, 2)?
            .reshape((b, len, h * d))?;
        self.o_proj.forward(&ys)
    }
}

/// The gated MLP of Llama-family models: `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    pub gate_proj: Proj,
    pub up_proj: Proj,
    pub down_proj: Proj,
}

impl Module for GatedMlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(xs)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(xs)?)?)
    }
}

/// The last position of `[batch, len, hidden]`: `[batch, hidden]`.
pub fn last_position(xs: &Tensor) -> Result<Tensor> {
    let len = xs.dim(1)?;
    xs.narrow(1, len - 1, 1)?.squeeze(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_hides_the_future_only() {
        let m = causal_mask(2, 2, 2, &Device::Cpu, DType::F32).unwrap();
        let rows: Vec<Vec<f32>> = m.to_vec2().unwrap();
        let inf = f32::NEG_INFINITY;
        let first = vec![0.0, 0.0, 0.0, inf];
        let second = vec![0.0, 0.0, 0.0, 0.0];
        assert_eq!(rows, vec![first.clone(), second.clone(), first, second]);
    }

    #[test]
    fn rotary_angles_match_positions() {
        let r = Rotary::new(4, 10000.0, &Device::Cpu, DType::F32);
        let (cos, sin) = r.at(3, 1).unwrap();
        let cos: Vec<Vec<f32>> = cos.to_vec2().unwrap();
        let sin: Vec<Vec<f32>> = sin.to_vec2().unwrap();
        assert!((cos[0][0] - 3f32.cos()).abs() < 1e-6);
        assert!((sin[0][1] - (3.0f32 * 0.01).sin()).abs() < 1e-6);
    }
}
