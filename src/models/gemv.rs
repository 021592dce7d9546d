//! A linear layer for a few rows at a time on the CPU: the decoding step of a few sentences.
//!
//! Written by hand because the general matrix product candle uses (the `gemm` crate) packs its
//! operands for matrix-sized work: with a handful of rows it repacks the whole weight matrix on
//! every call and reaches about half the memory bandwidth, where reading the weights once is
//! the whole cost (Marian's output projection is 59514 × 512 f32, 122 MB per decoding step).
//! Here each weight row is read once and dotted with every input row (at most
//! [`MAX_ROWS`], which stay in L1), weight rows split across the cores; AVX2/FMA when the CPU
//! has it (checked at run time), plain Rust elsewhere. More rows go to candle's matmul.

use candle_core::{DType, Device, Module, Result, Tensor};
use rayon::prelude::*;

/// Most input rows the kernel takes: one vector accumulator per input row, 8 with AVX2's 16
/// registers, 16 with AVX-512's 32 (measured on the opus-mt shapes, 2 cores: beyond that,
/// candle's matmul is faster; see BENCHMARKS.md).
pub fn max_rows() -> usize {
    Kernel::best().max_rows
}
/// Up to this many rows, `W · xᵀ` (then transposed back) beats `x · Wᵀ`: gemm packs the
/// few input rows instead of the whole weight matrix.
pub const MAX_ROWS_SWAPPED: usize = 16;

/// Weight rows per task: large enough to amortize scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 256;
/// Most input rows dotted together with one weight row.
const GROUP: usize = 16;

/// `x · Wᵀ + b` like `candle_nn::Linear`, with a fast path for up to [`MAX_ROWS`] f32 rows
/// on the CPU.
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Linear {
        Linear {
            inner: candle_nn::Linear::new(weight, bias),
        }
    }

    pub fn from(inner: candle_nn::Linear) -> Linear {
        Linear { inner }
    }

    fn path(&self, xs: &Tensor) -> Path {
        let w = self.inner.weight();
        let rows = xs.dims().iter().rev().skip(1).product::<usize>();
        let eligible = matches!(xs.device(), Device::Cpu)
            && xs.dtype() == DType::F32
            && w.dtype() == DType::F32
            && w.is_contiguous()
            && w.rank() == 2;
        match rows {
            _ if !eligible => Path::Candle,
            r if (1..=max_rows()).contains(&r) => Path::Kernel(rows),
            ..=MAX_ROWS_SWAPPED => Path::Swapped(rows),
            _ => Path::Candle,
        }
    }
}

enum Path {
    Kernel(usize),
    Swapped(usize),
    Candle,
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = match self.path(xs) {
            Path::Candle => return self.inner.forward(xs),
            Path::Swapped(rows) => self.swapped(xs, rows)?,
            Path::Kernel(rows) => self.kernel(xs, rows, Kernel::best())?,
        };
        // [rows, out] back to the input's leading dimensions.
        let mut shape = xs.dims().to_vec();
        *shape.last_mut().expect("rank ≥ 1") = self.inner.weight().dim(0)?;
        let ys = ys.reshape(shape)?;
        match self.inner.bias() {
            Some(b) => ys.broadcast_add(b),
            None => Ok(ys),
        }
    }
}

impl Linear {
    /// `W · xᵀ`, transposed back: [rows, out], no bias.
    fn swapped(&self, xs: &Tensor, rows: usize) -> Result<Tensor> {
        let w = self.inner.weight();
        let x = xs.reshape((rows, w.dim(1)?))?;
        w.matmul(&x.t()?)?.t()?.contiguous()
    }

    /// `x · Wᵀ` by `kernel`: [rows, out], no bias.
    fn kernel(&self, xs: &Tensor, rows: usize, kernel: Kernel) -> Result<Tensor> {
        let w = self.inner.weight();
        let (out_dim, in_dim) = w.dims2()?;
        let x = xs.flatten_all()?.to_vec1::<f32>()?;
        if x.len() != rows * in_dim {
            candle_core::bail!(
                "linear: input has {} values, weight {in_dim} features",
                x.len()
            );
        }
        let out = {
            let (storage, layout) = w.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("linear: weight is not on the CPU");
            };
            let weights = &cpu.as_slice::<f32>()?[layout.start_offset()..][..out_dim * in_dim];
            matmul_t(&x, weights, in_dim, kernel)
        };
        Tensor::from_vec(out, (rows, out_dim), xs.device())
    }
}

/// A raw pointer to the output that tasks write through, each its own columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements (their own weight rows' columns) and the buffer
// outlives the parallel loop.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The element at `index` (a method, so that closures capture the whole `Out`).
    fn at(self, index: usize) -> *mut f32 {
        self.0.wrapping_add(index)
    }
}

/// `x` [rows, k] times `weights`ᵀ ([out, k] row-major): [rows, out] row-major.
fn matmul_t(x: &[f32], weights: &[f32], k: usize, kernel: Kernel) -> Vec<f32> {
    let rows = x.len() / k.max(1);
    let out_dim = weights.len() / k.max(1);
    let mut out = vec![0f32; rows * out_dim];
    let ptr = Out(out.as_mut_ptr());
    let group = kernel.max_rows;
    weights
        .par_chunks(ROWS_PER_TASK * k)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first = task * ROWS_PER_TASK;
            let mut dots = [0f32; GROUP];
            for (j, w) in chunk.chunks_exact(k).enumerate() {
                for (g, xs) in x.chunks(group * k).enumerate() {
                    let n = xs.len() / k;
                    (kernel.row_dots)(w, xs, k, &mut dots[..n]);
                    for (i, &d) in dots[..n].iter().enumerate() {
                        // SAFETY: (g*group + i) < rows and first + j < out_dim; this task
                        // alone writes column first + j.
                        unsafe { *ptr.at((g * group + i) * out_dim + first + j) = d };
                    }
                }
            }
        });
    out
}

/// `dots[i]` = w · xs[i*k..(i+1)*k] for the first `dots.len()` rows of `xs`.
type RowDots = fn(w: &[f32], xs: &[f32], k: usize, dots: &mut [f32]);

/// One way to dot a weight row with several input rows, and how many rows it takes at once.
#[derive(Clone, Copy)]
struct Kernel {
    row_dots: RowDots,
    max_rows: usize,
}

impl Kernel {
    /// The kernels this CPU runs, best first; the portable one always comes last.
    fn available() -> Vec<Kernel> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel {
                    row_dots: x86::row_dots_512_here,
                    max_rows: GROUP,
                });
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(Kernel {
                    row_dots: x86::row_dots_here,
                    max_rows: 8,
                });
            }
        }
        kernels.push(Kernel {
            row_dots: row_dots_portable,
            max_rows: 8,
        });
        kernels
    }

    /// The best kernel, chosen once per process (not in the loop over weight rows).
    fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Kernel::available()[0])
    }
}

fn row_dots_portable(w: &[f32], xs: &[f32], k: usize, dots: &mut [f32]) {
    for (d, x) in dots.iter_mut().zip(xs.chunks_exact(k)) {
        *d = dot_portable(w, x);
    }
}

/// Eight independent lanes, which the compiler vectorizes for the target's baseline SIMD.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::GROUP;
    use std::arch::x86_64::*;

    // Safe entry points for `Kernel::available`, which hands them out only after checking
    // that the CPU has the features (and nothing else can reach them).
    pub(super) fn row_dots_512_here(w: &[f32], xs: &[f32], k: usize, dots: &mut [f32]) {
        // SAFETY: only reachable through `Kernel::available`'s avx512f check.
        unsafe { row_dots_512(w, xs, k, dots) }
    }

    pub(super) fn row_dots_here(w: &[f32], xs: &[f32], k: usize, dots: &mut [f32]) {
        // SAFETY: only reachable through `Kernel::available`'s avx2 + fma check.
        unsafe { row_dots(w, xs, k, dots) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// `row_dots` with 16-float registers: up to 16 input rows.
    #[target_feature(enable = "avx512f")]
    unsafe fn row_dots_512(w: &[f32], xs: &[f32], k: usize, dots: &mut [f32]) {
        let n = dots.len().min(GROUP);
        let (pw, px) = (w.as_ptr(), xs.as_ptr());
        let mut acc = [_mm512_setzero_ps(); GROUP];
        let mut c = 0;
        if n <= GROUP / 2 {
            let mut odd = [_mm512_setzero_ps(); GROUP / 2];
            while c + 32 <= k {
                let w0 = _mm512_loadu_ps(pw.add(c));
                let w1 = _mm512_loadu_ps(pw.add(c + 16));
                for r in 0..n {
                    acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(px.add(r * k + c)), w0, acc[r]);
                    odd[r] = _mm512_fmadd_ps(_mm512_loadu_ps(px.add(r * k + c + 16)), w1, odd[r]);
                }
                c += 32;
            }
            for r in 0..n {
                acc[r] = _mm512_add_ps(acc[r], odd[r]);
            }
        }
        let full = k - k % 16;
        while c < full {
            let wv = _mm512_loadu_ps(pw.add(c));
            for (r, acc) in acc.iter_mut().enumerate().take(n) {
                *acc = _mm512_fmadd_ps(_mm512_loadu_ps(px.add(r * k + c)), wv, *acc);
            }
            c += 16;
        }
        for r in 0..n {
            let mut total = _mm512_reduce_add_ps(acc[r]);
            for i in full..k {
                total += w[i] * xs[r * k + i];
            }
            dots[r] = total;
        }
    }

    /// One weight row against up to 8 input rows: each 8-float slice of the weight row is
    /// loaded once and fused-multiplied into one accumulator per input row.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_dots(w: &[f32], xs: &[f32], k: usize, dots: &mut [f32]) {
        const GROUP: usize = 8;
        let n = dots.len().min(GROUP);
        let (pw, px) = (w.as_ptr(), xs.as_ptr());
        let mut acc = [_mm256_setzero_ps(); GROUP];
        let mut c = 0;
        if n <= GROUP / 2 {
            // Few rows: two interleaved chains per row, so that the FMA latency (4 cycles)
            // does not bound the stream of weights.
            let mut odd = [_mm256_setzero_ps(); GROUP / 2];
            while c + 16 <= k {
                let w0 = _mm256_loadu_ps(pw.add(c));
                let w1 = _mm256_loadu_ps(pw.add(c + 8));
                for r in 0..n {
                    acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(px.add(r * k + c)), w0, acc[r]);
                    odd[r] = _mm256_fmadd_ps(_mm256_loadu_ps(px.add(r * k + c + 8)), w1, odd[r]);
                }
                c += 16;
            }
            for r in 0..n {
                acc[r] = _mm256_add_ps(acc[r], odd[r]);
            }
        }
        let full = k - k % 8;
        while c < full {
            let wv = _mm256_loadu_ps(pw.add(c));
            for (r, acc) in acc.iter_mut().enumerate().take(n) {
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(px.add(r * k + c)), wv, *acc);
            }
            c += 8;
        }
        for r in 0..n {
            let mut total = hsum(acc[r]);
            for i in full..k {
                total += w[i] * xs[r * k + i];
            }
            dots[r] = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Largest |a - b| and largest |b|: kernels sum in another order than candle, so they
    /// agree to f32 rounding relative to the outputs' size.
    fn gap(a: &Tensor, b: &Tensor) -> Result<(f32, f32)> {
        let max_abs = |t: Tensor| t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>();
        Ok((max_abs((a - b)?)?, max_abs(b.clone())?))
    }

    /// Sizes that leave remainders in every loop of every kernel, one row to sixteen.
    const SHAPES: [(usize, usize, usize); 7] = [
        (1, 1027, 77),
        (2, 20000, 77),
        (3, 3, 512),
        (4, 300, 1000),
        (8, 2050, 40),
        (9, 600, 64),
        (16, 600, 64),
    ];

    #[test]
    fn every_kernel_and_the_swapped_product_match_candle() -> Result<()> {
        let device = Device::Cpu;
        let kernels = Kernel::available();
        // The portable kernel is always there; on x86-64 the SIMD ones too (CI runs them).
        assert!(!kernels.is_empty());
        for (rows, out_dim, in_dim) in SHAPES {
            let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &device)?;
            let x = Tensor::randn(0f32, 1.0, (rows, 1, in_dim), &device)?;
            let linear = Linear::new(w.clone(), None);
            let want = x.reshape((rows, in_dim))?.matmul(&w.t()?)?;
            let mut got = vec![("swapped", linear.swapped(&x, rows)?)];
            for kernel in kernels.iter().filter(|k| rows <= k.max_rows) {
                got.push(("kernel", linear.kernel(&x, rows, *kernel)?));
            }
            for (what, got) in got {
                assert_eq!(got.dims(), want.dims());
                let (diff, scale) = gap(&got, &want)?;
                assert!(
                    diff <= 1e-5 * scale,
                    "{what} {rows}x{out_dim}x{in_dim}: max difference {diff}, outputs up to {scale}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn forward_matches_candle_whichever_path_it_takes() -> Result<()> {
        let device = Device::Cpu;
        let more = (MAX_ROWS_SWAPPED + 1, 64, 32);
        for (rows, out_dim, in_dim) in SHAPES.into_iter().chain([more]) {
            let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &device)?;
            let b = Tensor::randn(0f32, 1.0, out_dim, &device)?;
            let x = Tensor::randn(0f32, 1.0, (rows, 1, in_dim), &device)?;
            let got = Linear::new(w.clone(), Some(b.clone())).forward(&x)?;
            let want = candle_nn::Linear::new(w, Some(b)).forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            let (diff, scale) = gap(&got, &want)?;
            assert!(diff <= 1e-5 * scale, "{rows}x{out_dim}x{in_dim}: {diff}");
        }
        Ok(())
    }
}
