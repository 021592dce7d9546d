//! Attention for a decoding step on the CPU: a few queries per (batch, head) against cached
//! keys and values, one (batch, head) pair per task on candle's thread pool.
//!
//! Written by hand because candle's CPU matmul runs a batched product as one gemm call per
//! batch entry: a decoding step of 16 rows × 8 heads is 128 calls of a 1 × 64 by 64 × L product
//! per matmul, two matmuls per attention, and the calls' overhead outweighs the work (measured:
//! 4 of the 20 seconds of a greedy run on the opus-mt benchmark).

use candle_core::{DType, Device, Layout, Result, Storage, Tensor};

use crate::models::gemv::{dot_lanes, Out};

/// Most queries per (batch, head) taken here; more (the encoder) go to candle's matmul.
const MAX_QUERIES: usize = 16;

/// softmax(q·kᵀ·scale + bias)·v, as candle computes it (scores scaled after the product, the
/// bias added, the softmax's maximum subtracted before the exponentials), for q [b, h, m, d],
/// k and v [b, h, l, d] (any strides with a contiguous last dimension, such as a view of a
/// preallocated cache) and bias [b, 1, 1, l]. None when this path does not apply (not the CPU,
/// not f32, more than a few queries), for the caller to use candle's ops.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f32,
) -> Result<Option<Tensor>> {
    let cpu_f32 = |t: &Tensor| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32;
    if ![q, k, v].into_iter().chain(bias).all(cpu_f32) {
        return Ok(None);
    }
    let (b, h, m, d) = q.dims4()?;
    let (_, _, l, _) = k.dims4()?;
    let fits = m <= MAX_QUERIES
        && k.dims() == [b, h, l, d]
        && v.dims() == [b, h, l, d]
        && k.stride()[3] == 1
        && v.stride()[3] == 1
        && bias.is_none_or(|t| t.dims() == [b, 1, 1, l]);
    if !fits {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let bias = bias.map(Tensor::contiguous).transpose()?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let bias_storage = bias.as_ref().map(|t| t.storage_and_layout());
    let parts = Parts {
        q: slice(&qs, ql)?,
        k: slice(&ks, kl)?,
        v: slice(&vs, vl)?,
        bias: match &bias_storage {
            Some((s, layout)) => Some(slice(s, layout)?),
            None => None,
        },
        k_stride: [kl.stride()[0], kl.stride()[1], kl.stride()[2]],
        v_stride: [vl.stride()[0], vl.stride()[1], vl.stride()[2]],
        heads: h,
        queries: m,
        keys: l,
        dim: d,
        scale,
        #[cfg(target_arch = "x86_64")]
        avx2: std::arch::is_x86_feature_detected!("avx2"),
    };
    let mut out = vec![0f32; b * h * m * d];
    let ptr = Out(out.as_mut_ptr());
    candle_core::utils::barrier_pool().execute_chunked(b * h, |range| {
        let mut scores = vec![0f32; l];
        for unit in range {
            // SAFETY: each unit writes only its own m × d block of `out`, which outlives the
            // pool's call.
            let block = unsafe { std::slice::from_raw_parts_mut(ptr.at(unit * m * d), m * d) };
            parts.unit(unit, &mut scores, block);
        }
    });
    Tensor::from_vec(out, (b, h, m, d), q.device()).map(Some)
}

/// The f32 data of a CPU tensor from its first element.
fn slice<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    match storage {
        Storage::Cpu(cpu) => Ok(&cpu.as_slice::<f32>()?[layout.start_offset()..]),
        _ => candle_core::bail!("attention: not a CPU tensor"),
    }
}

/// The operands, for one (batch, head) unit at a time.
struct Parts<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    bias: Option<&'a [f32]>,
    k_stride: [usize; 3],
    v_stride: [usize; 3],
    heads: usize,
    queries: usize,
    keys: usize,
    dim: usize,
    scale: f32,
    /// The CPU has AVX2 (checked once per call, not per unit).
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
}

impl Parts<'_> {
    fn unit(&self, unit: usize, scores: &mut [f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is set only when the CPU has AVX2 (checked in `attend`).
            return unsafe { self.unit_avx2(unit, scores, out) };
        }
        self.unit_generic(unit, scores, out)
    }

    /// The same code, vectorized for AVX2 by the compiler.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn unit_avx2(&self, unit: usize, scores: &mut [f32], out: &mut [f32]) {
        self.unit_generic(unit, scores, out)
    }

    #[inline(always)]
    fn unit_generic(&self, unit: usize, scores: &mut [f32], out: &mut [f32]) {
        let (batch, head) = (unit / self.heads, unit % self.heads);
        let (d, l) = (self.dim, self.keys);
        let key = |j: usize| {
            let s = self.k_stride;
            &self.k[batch * s[0] + head * s[1] + j * s[2]..][..d]
        };
        let value = |j: usize| {
            let s = self.v_stride;
            &self.v[batch * s[0] + head * s[1] + j * s[2]..][..d]
        };
        let bias = self.bias.map(|b| &b[batch * l..][..l]);
        // Keys masked at either end (slots from before a row's sentence, a short source's
        // padding) would get weights of exactly 0 after the softmax: skip them. Adding those
        // zeros changes no sum, so the result is the same.
        let (lo, hi) = match bias {
            Some(b) => match b.iter().position(|&x| x != f32::MIN) {
                Some(lo) => (
                    lo,
                    l - b.iter().rev().position(|&x| x != f32::MIN).unwrap_or(0),
                ),
                None => (0, l),
            },
            None => (0, l),
        };
        let scores = &mut scores[lo..hi];
        for (i, out) in out.chunks_exact_mut(d).enumerate() {
            let query = &self.q[(unit * self.queries + i) * d..][..d];
            for (j, score) in (lo..hi).zip(scores.iter_mut()) {
                *score = dot_lanes::<16>(query, key(j)) * self.scale + bias.map_or(0.0, |b| b[j]);
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            out.fill(0.0);
            for (j, &s) in (lo..hi).zip(scores.iter()) {
                let w = s / sum;
                for (o, &x) in out.iter_mut().zip(value(j)) {
                    *o += w * x;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// candle's ops, as the Marian layers use them without this path.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f64) -> Tensor {
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let scores = match bias {
            Some(b) => scores.broadcast_add(b).unwrap(),
            None => scores,
        };
        candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(v)
            .unwrap()
    }

    #[test]
    fn matches_candle_on_cache_views_with_masks() -> Result<()> {
        let dev = Device::Cpu;
        // Keys and values as a view of a bigger cache (slots 0..37 of 50), keys masked in
        // front (a row that joined late) and at the end (a short source's padding); 1 and 4 queries per head; a head size with a tail.
        for (m, d) in [(1, 64), (4, 20)] {
            let (b, h, l, cap) = (3, 2, 37, 50);
            let q = Tensor::randn(0f32, 1.0, (b, h, m, d), &dev)?;
            let k = Tensor::randn(0f32, 1.0, (b, h, cap, d), &dev)?.narrow(2, 0, l)?;
            let v = Tensor::randn(0f32, 1.0, (b, h, cap, d), &dev)?.narrow(2, 0, l)?;
            let mut mask = vec![0f32; b * l];
            mask[l..l + 5].fill(f32::MIN);
            mask[3 * l - 4..].fill(f32::MIN);
            let bias = Tensor::from_vec(mask, (b, 1, 1, l), &dev)?;
            for bias in [None, Some(&bias)] {
                let got = attend(&q, &k, &v, bias, 0.125)?.expect("the CPU path applies");
                let want = reference(&q, &k, &v, bias, 0.125);
                let diff = (got - want)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                assert!(diff < 1e-5, "m {m}, d {d}: max difference {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn many_queries_and_other_dtypes_are_left_to_candle() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 1, MAX_QUERIES + 1, 8), DType::F32, &dev)?;
        let k = Tensor::zeros((1, 1, 4, 8), DType::F32, &dev)?;
        assert!(attend(&q, &k, &k, None, 1.0)?.is_none());
        let q = Tensor::zeros((1, 1, 1, 8), DType::F16, &dev)?;
        let k = k.to_dtype(DType::F16)?;
        assert!(attend(&q, &k, &k, None, 1.0)?.is_none());
        Ok(())
    }
}
