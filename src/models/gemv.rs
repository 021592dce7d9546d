//! A linear layer for a few rows at a time on the CPU: the decoding step of a few sentences.
//!
//! Written by hand because the general matrix product candle uses (the `gemm` crate) packs its
//! operands for matrix-sized work: with a handful of rows it repacks the whole weight matrix on
//! every call and reaches about half the memory bandwidth, where reading the weights once is
//! the whole cost (Marian's output projection is 59514 × 512 f32, 122 MB per decoding step).
//! Here weight rows are read in small groups and dotted with every input row (a few dozen at
//! most, which stay in L1), groups split across the cores: AVX-512 tiles of 4 weight rows × 4
//! input rows, AVX2/FMA one weight row at a time (both checked at run time), plain Rust
//! elsewhere. More rows go to candle's matmul.

use candle_core::{DType, Device, Module, Result, Tensor};

/// Most input rows the kernel takes: 64 with AVX-512 tiles, 8 with AVX2's one accumulator per
/// input row in 16 registers (measured on the opus-mt shapes, 2 cores: beyond that, candle's
/// matmul is as fast or faster; see BENCHMARKS.md).
pub fn max_rows() -> usize {
    Kernel::best().max_rows
}
/// Up to this many rows, `W · xᵀ` (then transposed back) beats `x · Wᵀ`: gemm packs the
/// few input rows instead of the whole weight matrix.
pub const MAX_ROWS_SWAPPED: usize = 16;

/// Weight rows per task: large enough to amortize scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 256;
/// Most input rows a one-weight-row kernel (`RowDots`) takes.
const GROUP: usize = 8;
/// Most input rows for the AVX-512 tiles.
#[cfg(target_arch = "x86_64")]
const MAX_ROWS_512: usize = 64;

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

/// A raw pointer to an output buffer that parallel tasks write through, each to its own
/// elements (here a weight group's columns; in `attention`, a head's block).
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
// SAFETY: users write disjoint elements from each task, and the buffer outlives the parallel
// call.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The element at `index` (a method, so that closures capture the whole `Out`).
    pub(crate) fn at(self, index: usize) -> *mut f32 {
        self.0.wrapping_add(index)
    }
}

/// `x` [rows, k] times `weights`ᵀ ([out, k] row-major): [rows, out] row-major.
fn matmul_t(x: &[f32], weights: &[f32], k: usize, kernel: Kernel) -> Vec<f32> {
    let rows = x.len() / k.max(1);
    let out_dim = weights.len() / k.max(1);
    let mut out = vec![0f32; rows * out_dim];
    let ptr = Out(out.as_mut_ptr());
    let tasks = out_dim.div_ceil(ROWS_PER_TASK);
    // candle's own pool, not rayon's: candle's ops run on it just before and after, and two
    // pools of spinning threads on the same cores slow each other down.
    candle_core::utils::barrier_pool().execute_chunked(tasks, |range| {
        for task in range {
            let first = task * ROWS_PER_TASK;
            let n = ROWS_PER_TASK.min(out_dim - first);
            let chunk = &weights[first * k..(first + n) * k];
            let mut tile = vec![0f32; rows * n];
            (kernel.tile)(chunk, x, k, &mut tile);
            for (r, part) in tile.chunks_exact(n).enumerate() {
                // SAFETY: r < rows and first + n <= out_dim; this task alone writes columns
                // first..first + n.
                unsafe {
                    std::ptr::copy_nonoverlapping(part.as_ptr(), ptr.at(r * out_dim + first), n)
                };
            }
        }
    });
    out
}

/// `out[r * n + j]` = `w[j] · xs[r]` for the n weight rows of `w` and every input row of `xs`
/// (rows of k floats).
type Tile = fn(w: &[f32], xs: &[f32], k: usize, out: &mut [f32]);

/// `dots[i]` = w · xs[i*k..(i+1)*k] for the first `dots.len()` rows of `xs`.
type RowDots = fn(w: &[f32], xs: &[f32], k: usize, dots: &mut [f32]);

/// A tile from a kernel that takes one weight row at a time, [`GROUP`] input rows at most.
fn tile_by_rows(row_dots: RowDots, w: &[f32], xs: &[f32], k: usize, out: &mut [f32]) {
    let group = GROUP;
    let n = w.len() / k;
    let mut dots = [0f32; GROUP];
    for (j, w) in w.chunks_exact(k).enumerate() {
        for (g, xs) in xs.chunks(group * k).enumerate() {
            let m = xs.len() / k;
            row_dots(w, xs, k, &mut dots[..m]);
            for (i, &d) in dots[..m].iter().enumerate() {
                out[(g * group + i) * n + j] = d;
            }
        }
    }
}

/// One way to compute tiles, and how many input rows it is the fastest way for.
#[derive(Clone, Copy)]
struct Kernel {
    tile: Tile,
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
                    tile: x86::tile_512_here,
                    max_rows: MAX_ROWS_512,
                });
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(Kernel {
                    tile: |w, xs, k, out| tile_by_rows(x86::row_dots_here, w, xs, k, out),
                    max_rows: GROUP,
                });
            }
        }
        kernels.push(Kernel {
            tile: |w, xs, k, out| tile_by_rows(row_dots_portable, w, xs, k, out),
            max_rows: GROUP,
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
    dot_lanes::<8>(a, b)
}

/// Dot product in `N` independent lanes summed at the end: with no reassociation allowed, the
/// lanes are what lets the compiler vectorize it (for whatever SIMD the caller's target
/// features give).
#[inline(always)]
pub(crate) fn dot_lanes<const N: usize>(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; N];
    let (ca, cb) = (a.chunks_exact(N), b.chunks_exact(N));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..N {
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
    pub(super) fn tile_512_here(w: &[f32], xs: &[f32], k: usize, out: &mut [f32]) {
        // SAFETY: only reachable through `Kernel::available`'s avx512f check.
        unsafe { tile_512(w, xs, k, out) }
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

    /// AVX-512 tiles: blocks of 4 weight rows × 4 input rows, 16 accumulators in registers;
    /// each step loads 4 weight and 4 input vectors for 16 fused multiply-adds, and each block
    /// of 4 × 4 sums is reduced together and stored as 4 contiguous outputs per input row.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_512(w: &[f32], xs: &[f32], k: usize, out: &mut [f32]) {
        let (n, rows) = (w.len() / k, xs.len() / k);
        assert!(out.len() >= n * rows);
        let (pw, px, po) = (w.as_ptr(), xs.as_ptr(), out.as_mut_ptr());
        let mut j = 0;
        while j < n {
            let wr = (n - j).min(4);
            let mut r = 0;
            while r < rows {
                let xr = (rows - r).min(4);
                let (w, x, o) = (pw.add(j * k), px.add(r * k), po.add(r * n + j));
                macro_rules! blocks {
                    ($($a:literal $b:literal),*) => {
                        match (wr, xr) {
                            $(($a, $b) => block_512::<$a, $b>(w, x, k, o, n),)*
                            _ => unreachable!(),
                        }
                    };
                }
                blocks!(4 4, 4 3, 4 2, 4 1, 3 4, 3 3, 3 2, 3 1, 2 4, 2 3, 2 2, 2 1, 1 4, 1 3, 1 2, 1 1);
                r += xr;
            }
            j += wr;
        }
    }

    /// `WR` weight rows (from `w`, k apart) dotted with `XR` input rows (from `x`); the dot of
    /// weight row a and input row b goes to `out[b * stride + a]`.
    #[target_feature(enable = "avx512f")]
    // Index loops over the const block sizes: the compiler unrolls them and keeps every
    // accumulator in a register.
    #[allow(clippy::needless_range_loop)]
    unsafe fn block_512<const WR: usize, const XR: usize>(
        w: *const f32,
        x: *const f32,
        k: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); XR]; WR];
        let mut step = |c: usize, mask: __mmask16| {
            let mut wv = [_mm512_setzero_ps(); WR];
            for (a, v) in wv.iter_mut().enumerate() {
                *v = _mm512_maskz_loadu_ps(mask, w.add(a * k + c));
            }
            for b in 0..XR {
                let xv = _mm512_maskz_loadu_ps(mask, x.add(b * k + c));
                for a in 0..WR {
                    acc[a][b] = _mm512_fmadd_ps(wv[a], xv, acc[a][b]);
                }
            }
        };
        let full = k - k % 16;
        let mut c = 0;
        while c < full {
            step(c, !0);
            c += 16;
        }
        if c < k {
            // Masked loads read nothing past the end.
            step(c, ((1u32 << (k - c)) - 1) as __mmask16);
        }
        for b in 0..XR {
            if WR == 4 {
                let sums = reduce4(acc[0][b], acc[1][b], acc[2][b], acc[3][b]);
                _mm_storeu_ps(out.add(b * stride), sums);
            } else {
                for (a, acc) in acc.iter().enumerate() {
                    *out.add(b * stride + a) = _mm512_reduce_add_ps(acc[b]);
                }
            }
        }
    }

    /// The sums of four vectors, as one 4-float vector: pairs interleaved and added, then the
    /// four 128-bit lanes folded.
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce4(a: __m512, b: __m512, c: __m512, d: __m512) -> __m128 {
        // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3], and the same for c, d.
        let ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        let cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
        // Per lane: [a, b, c, d], each that lane's share.
        let (ab, cd) = (_mm512_castps_pd(ab), _mm512_castps_pd(cd));
        let abcd = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(ab, cd)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(ab, cd)),
        );
        // Lanes (2, 3, 0, 1), then (1, 0, 3, 2): lane 0 ends with the total.
        let s = _mm512_add_ps(abcd, _mm512_shuffle_f32x4::<0b01_00_11_10>(abcd, abcd));
        let s = _mm512_add_ps(s, _mm512_shuffle_f32x4::<0b10_11_00_01>(s, s));
        _mm512_castps512_ps128(s)
    }

    /// One weight row against up to 8 input rows: each 8-float slice of the weight row is
    /// loaded once and fused-multiplied into one accumulator per input row.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_dots(w: &[f32], xs: &[f32], k: usize, dots: &mut [f32]) {
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

    /// Sizes that leave remainders in every loop of every kernel, one row to sixty-four.
    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1027, 77),
        (2, 20000, 77),
        (3, 3, 512),
        (4, 300, 1000),
        (8, 2050, 40),
        (9, 600, 64),
        (16, 600, 64),
        (37, 70, 33),
        (64, 9, 531),
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
