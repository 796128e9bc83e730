//! The q8_0 few-row product of decoding (`--quantize q8_0`), with GGML's arithmetic on our own
//! kernel and threads.
//!
//! A weight `(n, k)` is quantized by candle (GGML's q8_0: per block of 32 elements of a row, the
//! f16 scale `d = amax / 127` and the 32 values `round(x / d)` as i8). The rows of `a` are
//! quantized the same way at each call, as GGML's `vec_dot_q8_0_q8_0` (and candle's `QMatMul`)
//! does, and each block's dot product is an exact integer sum, scaled by `d_w · d_a` and added
//! into f32 accumulators. So the result is candle's to f32 summation order.
//!
//! Why not candle's `QMatMul`: its CPU products run on its own thread pool, whose workers spin at
//! a barrier between the calls; in a decode step that interleaves the quantized products with
//! attention and norms on rayon, the spinning took a fifth of the samples and a 3.6k-token decode
//! fell from 33 to 21 tokens/s. Here the product runs on rayon like every other kernel, and each
//! thread reads its weight rows start to end, one row at a time.
//!
//! Storage: the i8 values row-major (`n · k` bytes) and the f16 scales per row, padded to a
//! multiple of 8 so that the AVX2 kernel widens eight at a time (`vcvtph2ps`): 1.0625 bytes per
//! weight, as GGML's 34-byte blocks. Kernels: AVX2 (`vpmaddubsw` on the sign-folded operands, as
//! GGML's AVX2 path) at the AVX2 and AVX-512 levels, portable integer loops at the reference
//! level.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Tensor};
use half::f16;
use rayon::prelude::*;

use crate::cpu::{self, KernelLevel};
use crate::gemm_nt::{column_chunk, SendPtr};

/// Elements per block.
pub const BLOCK: usize = 32;
/// GGML's q8_0 block: the f16 scale, then 32 i8.
const GGML_BLOCK_BYTES: usize = 2 + BLOCK;
/// Rows of `a` per pass over a weight row.
const ROWS: usize = 4;

/// A weight `(n, k)` in q8_0 blocks, for [`Q8Weight::product`].
#[derive(Debug)]
pub struct Q8Weight {
    n: usize,
    k: usize,
    /// Scales per row, padded to [`Self::scale_stride`] with zeros.
    scales: Vec<f16>,
    quants: Vec<i8>,
}

impl Q8Weight {
    /// Quantizes `w` (n, k), any float dtype, with candle's q8_0. `k` must be a multiple of
    /// [`BLOCK`].
    pub fn quantize(w: &Tensor) -> candle_core::Result<Self> {
        let (n, k) = w.dims2()?;
        if k % BLOCK != 0 {
            candle_core::bail!("q8_0: the input width {k} is not a multiple of {BLOCK}");
        }
        let qt = QTensor::quantize(&w.to_dtype(DType::F32)?, GgmlDType::Q8_0)?;
        let bytes = qt.data()?;
        let nb = k / BLOCK;
        if bytes.len() != n * nb * GGML_BLOCK_BYTES {
            candle_core::bail!(
                "q8_0: candle gave {} bytes for ({n}, {k}), expected {}",
                bytes.len(),
                n * nb * GGML_BLOCK_BYTES
            );
        }
        let stride = nb.next_multiple_of(8);
        let mut scales = vec![f16::ZERO; n * stride];
        let mut quants = vec![0i8; n * k];
        for (i, blk) in bytes.chunks_exact(GGML_BLOCK_BYTES).enumerate() {
            let (row, b) = (i / nb, i % nb);
            scales[row * stride + b] = f16::from_bits(u16::from_le_bytes([blk[0], blk[1]]));
            for (q, &byte) in quants[i * BLOCK..(i + 1) * BLOCK].iter_mut().zip(&blk[2..]) {
                *q = byte as i8;
            }
        }
        Ok(Self {
            n,
            k,
            scales,
            quants,
        })
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    fn scale_stride(&self) -> usize {
        (self.k / BLOCK).next_multiple_of(8)
    }

    /// `c = a·wᵀ (+ bias)` for the `m` rows of `a` (m, k) into `c` (m, n), split over the
    /// columns between rayon's threads.
    pub fn product(&self, m: usize, a: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert!(
            a.len() >= m * k && c.len() >= m * n,
            "q8_0 product: operands too short"
        );
        let qa = QuantizedRows::new(m, k, a, self.scale_stride());
        let chunk = column_chunk(n);
        let cp = SendPtr(c.as_mut_ptr());
        let avx2 = cpu::level() >= KernelLevel::Avx2;
        (0..n.div_ceil(chunk)).into_par_iter().for_each(|ci| {
            let j0 = ci * chunk;
            let mut sums = [0f32; ROWS];
            for j in j0..(j0 + chunk).min(n) {
                for r0 in (0..m).step_by(ROWS) {
                    let rows = ROWS.min(m - r0);
                    self.column(j, &qa, r0, rows, avx2, &mut sums);
                    for (r, s) in sums[..rows].iter().enumerate() {
                        let v = s + bias.map_or(0.0, |b| b[j]);
                        // Each (row, column) element is written by the one task that owns `j`.
                        unsafe { *cp.get().add((r0 + r) * n + j) = v };
                    }
                }
            }
        });
    }

    /// The dot products of weight row `j` with rows `r0..r0 + rows` of `qa`, into `sums`.
    fn column(
        &self,
        j: usize,
        qa: &QuantizedRows,
        r0: usize,
        rows: usize,
        avx2: bool,
        sums: &mut [f32; ROWS],
    ) {
        let (k, stride) = (self.k, self.scale_stride());
        let w = Operand {
            quants: &self.quants[j * k..(j + 1) * k],
            scales: &self.scales[j * stride..(j + 1) * stride],
        };
        let a = |r: usize| qa.row(r0 + r);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the AVX2 level (or above) was checked by `cpu::level`; the operands hold
            // whole blocks and scale rows padded to 8.
            unsafe {
                match rows {
                    1 => *sums = pad(x86::dots::<1>(w, [a(0)])),
                    2 => *sums = pad(x86::dots::<2>(w, [a(0), a(1)])),
                    3 => *sums = pad(x86::dots::<3>(w, [a(0), a(1), a(2)])),
                    _ => *sums = x86::dots::<4>(w, [a(0), a(1), a(2), a(3)]),
                }
            }
            return;
        }
        let _ = avx2;
        for (r, s) in sums[..rows].iter_mut().enumerate() {
            *s = portable_dot(w, a(r));
        }
    }
}

fn pad<const R: usize>(s: [f32; R]) -> [f32; ROWS] {
    let mut out = [0f32; ROWS];
    out[..R].copy_from_slice(&s);
    out
}

/// One row of q8_0 blocks: `k` values and their scales (padded to a multiple of 8).
#[derive(Clone, Copy)]
struct Operand<'a> {
    quants: &'a [i8],
    scales: &'a [f16],
}

/// The rows of `a` in q8_0 blocks, quantized as GGML's `quantize_row_q8_0` (and candle's
/// `BlockQ8_0::from_float`) does.
struct QuantizedRows {
    k: usize,
    stride: usize,
    scales: Vec<f16>,
    quants: Vec<i8>,
}

impl QuantizedRows {
    fn new(m: usize, k: usize, a: &[f32], stride: usize) -> Self {
        let mut scales = vec![f16::ZERO; m * stride];
        let mut quants = vec![0i8; m * k];
        for r in 0..m {
            for b in 0..k / BLOCK {
                let x = &a[r * k + b * BLOCK..r * k + (b + 1) * BLOCK];
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                scales[r * stride + b] = f16::from_f32(d);
                let q = &mut quants[r * k + b * BLOCK..r * k + (b + 1) * BLOCK];
                for (q, v) in q.iter_mut().zip(x) {
                    *q = (v * id).round() as i8;
                }
            }
        }
        Self {
            k,
            stride,
            scales,
            quants,
        }
    }

    fn row(&self, r: usize) -> Operand<'_> {
        Operand {
            quants: &self.quants[r * self.k..(r + 1) * self.k],
            scales: &self.scales[r * self.stride..(r + 1) * self.stride],
        }
    }
}

/// GGML's scalar `vec_dot_q8_0_q8_0`: per block the integer sum, times both scales, into one f32.
fn portable_dot(w: Operand, a: Operand) -> f32 {
    let mut sum = 0f32;
    for (b, (qw, qa)) in w
        .quants
        .chunks_exact(BLOCK)
        .zip(a.quants.chunks_exact(BLOCK))
        .enumerate()
    {
        let s: i32 = qw.iter().zip(qa).map(|(&x, &y)| x as i32 * y as i32).sum();
        sum += s as f32 * (w.scales[b].to_f32() * a.scales[b].to_f32());
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Operand, BLOCK};

    /// Bytes ahead of the group being read that each group prefetches (measured: 512, 1024,
    /// 2048, 4096 on a 2-core AVX2 EPYC; 2048 read fastest with 2 threads).
    const PREFETCH: usize = 2048;

    /// The dot products of `w` with each of the `R` rows `a`: per block, `|a|·sign(w, a)` in
    /// unsigned-by-signed byte pairs (`vpmaddubsw`, exact: |a|, |w| <= 127), summed into i32
    /// lanes, converted, and multiplied-added with `d_w · d_a` into f32 vectors (two per row,
    /// even and odd blocks, so that consecutive blocks do not wait on one accumulator). The
    /// scales are widened and multiplied eight blocks at a time (rows are padded to 8).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots<const R: usize>(w: Operand, a: [Operand; R]) -> [f32; R] {
        let nb = w.quants.len() / BLOCK;
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let mut d = [[0f32; 8]; R];
        let aq = a.map(|a| a.quants.as_ptr());
        let widen = |p: *const half::f16| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
        for g in (0..nb).step_by(8) {
            let wd = widen(w.scales.as_ptr().add(g));
            for r in 0..R {
                let ad = widen(a[r].scales.as_ptr().add(g));
                _mm256_storeu_ps(d[r].as_mut_ptr(), _mm256_mul_ps(wd, ad));
            }
            let wq = w.quants.as_ptr().add(g * BLOCK);
            for l in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(wq.wrapping_add(PREFETCH + 64 * l));
            }
            let aq = aq.map(|p| p.add(g * BLOCK));
            if nb - g >= 8 {
                for i in 0..8 {
                    block(wq, &aq, i, &d, &mut acc);
                }
            } else {
                for i in 0..nb - g {
                    block(wq, &aq, i, &d, &mut acc);
                }
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            let v = _mm256_add_ps(acc[r][0], acc[r][1]);
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            out[r] = _mm_cvtss_f32(s);
        }
        out
    }

    /// Block `i` of a group: its integer dot products with each row, scaled by `d[r][i]`, into
    /// accumulator `i % 2` of each row.
    #[inline(always)]
    unsafe fn block<const R: usize>(
        wq: *const i8,
        aq: &[*const i8; R],
        i: usize,
        d: &[[f32; 8]; R],
        acc: &mut [[__m256; 2]; R],
    ) {
        let ones = _mm256_set1_epi16(1);
        let wv = _mm256_loadu_si256(wq.add(i * BLOCK) as *const __m256i);
        for r in 0..R {
            let x = _mm256_loadu_si256(aq[r].add(i * BLOCK) as *const __m256i);
            let ax = _mm256_sign_epi8(x, x);
            let sw = _mm256_sign_epi8(wv, x);
            let pairs = _mm256_maddubs_epi16(ax, sw);
            let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
            let a = &mut acc[r][i % 2];
            *a = _mm256_fmadd_ps(_mm256_set1_ps(d[r][i]), sums, *a);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module};

    use super::*;
    use crate::test_util::max_abs;

    /// At every level, the product equals candle's `QMatMul` (the same quantization and integer
    /// sums; f32 summation order only) for 1-7 rows, with and without a bias, across column
    /// chunks and row groups of 4 + tail.
    #[test]
    fn product_matches_candle_qmatmul() {
        crate::cpu::for_each_level(|level| {
            let dev = Device::Cpu;
            for (m, n, k) in [(1, 300, 64), (3, 37, 96), (5, 1000, 896), (7, 9, 32)] {
                let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
                let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
                let bias = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
                let qt = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
                let want = QMatMul::from_qtensor(qt)
                    .unwrap()
                    .forward(&a)
                    .unwrap()
                    .broadcast_add(&bias)
                    .unwrap();
                let q = Q8Weight::quantize(&w).unwrap();
                assert_eq!((q.n(), q.k()), (n, k));
                let mut got = vec![f32::NAN; m * n];
                let av = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let bv = bias.to_vec1::<f32>().unwrap();
                q.product(m, &av, Some(&bv), &mut got);
                let got = Tensor::from_vec(got, (m, n), &dev).unwrap();
                let diff = (&got - &want)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let scale = max_abs(&want);
                assert!(
                    diff <= 1e-5 * scale,
                    "{level}, ({m}, {n}, {k}): differs from candle by {diff} (scale {scale})"
                );
            }
        });
    }

    /// A width that is not whole blocks is refused with what was expected.
    #[test]
    fn a_partial_block_is_refused() {
        let w = Tensor::zeros((4, 40), DType::F32, &Device::Cpu).unwrap();
        let e = Q8Weight::quantize(&w).unwrap_err().to_string();
        assert!(e.contains("40") && e.contains("multiple of 32"), "{e}");
    }
}
