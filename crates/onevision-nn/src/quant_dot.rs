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

use candle_core::quantized::QTensor;
use candle_core::{DType, Tensor};
use half::f16;
use rayon::prelude::*;

use crate::cpu::{self, KernelLevel};
use crate::gemm_nt::{column_chunk, SendPtr};
use crate::Quantization;

/// Elements per block.
pub const BLOCK: usize = 32;
/// Rows of `a` per pass over a weight row.
const ROWS: usize = 4;

impl Quantization {
    /// Bytes of one block's codes (without its scale).
    fn code_bytes(self) -> usize {
        match self {
            Self::Q8_0 => BLOCK,
            Self::Q4_0 => BLOCK / 2,
        }
    }
}

/// A weight `(n, k)` in q8_0 or q4_0 blocks, for [`QuantizedWeight::product`].
#[derive(Debug)]
pub struct QuantizedWeight {
    format: Quantization,
    n: usize,
    k: usize,
    /// Scales per row, padded to [`Self::scale_stride`] with zeros.
    scales: Vec<f16>,
    /// Each row's blocks' codes, [`Quantization::code_bytes`] per block.
    codes: Vec<u8>,
}

impl QuantizedWeight {
    /// Quantizes `w` (n, k), any float dtype, with candle's GGML blocks. `k` must be a multiple
    /// of [`BLOCK`].
    pub fn quantize(w: &Tensor, format: Quantization) -> candle_core::Result<Self> {
        let (n, k) = w.dims2()?;
        if k % BLOCK != 0 {
            candle_core::bail!("{format}: the input width {k} is not a multiple of {BLOCK}");
        }
        let qt = QTensor::quantize(&w.to_dtype(DType::F32)?, format.ggml())?;
        let bytes = qt.data()?;
        let (nb, cb) = (k / BLOCK, format.code_bytes());
        // GGML's block: the f16 scale, then the codes.
        let block_bytes = 2 + cb;
        if bytes.len() != n * nb * block_bytes {
            candle_core::bail!(
                "{format}: candle gave {} bytes for ({n}, {k}), expected {}",
                bytes.len(),
                n * nb * block_bytes
            );
        }
        let stride = nb.next_multiple_of(8);
        let mut scales = vec![f16::ZERO; n * stride];
        let mut codes = vec![0u8; n * nb * cb];
        for (i, blk) in bytes.chunks_exact(block_bytes).enumerate() {
            let (row, b) = (i / nb, i % nb);
            scales[row * stride + b] = f16::from_bits(u16::from_le_bytes([blk[0], blk[1]]));
            codes[i * cb..(i + 1) * cb].copy_from_slice(&blk[2..]);
        }
        Ok(Self {
            format,
            n,
            k,
            scales,
            codes,
        })
    }

    pub fn format(&self) -> Quantization {
        self.format
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
    /// columns between rayon's threads. Each row's result is the same whatever rows it shares
    /// the call with.
    pub fn product(&self, m: usize, a: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let what = self.format;
        assert!(
            a.len() >= m * k && c.len() >= m * n,
            "{what} product: operands too short"
        );
        assert!(
            bias.is_none_or(|b| b.len() >= n),
            "{what} product: bias too short"
        );
        let qa = QuantizedRows::new(m, k, a, self.scale_stride());
        let chunk = column_chunk(n);
        let cp = SendPtr(c.as_mut_ptr());
        let avx2 = cpu::level() >= KernelLevel::Avx2;
        (0..n.div_ceil(chunk)).into_par_iter().for_each(|ci| {
            let j0 = ci * chunk;
            for j in j0..(j0 + chunk).min(n) {
                for r0 in (0..m).step_by(ROWS) {
                    let rows = ROWS.min(m - r0);
                    let sums = self.column(j, &qa, r0, rows, avx2);
                    for (r, s) in sums[..rows].iter().enumerate() {
                        let v = s + bias.map_or(0.0, |b| b[j]);
                        // SAFETY: element (r0 + r, j) lies in `c` (asserted above) and is
                        // written by the one task that owns column `j`.
                        unsafe { *cp.get().add((r0 + r) * n + j) = v };
                    }
                }
            }
        });
    }

    /// The dot products of weight row `j` with rows `r0..r0 + rows` of `qa` (the first `rows`
    /// of the result).
    fn column(
        &self,
        j: usize,
        qa: &QuantizedRows,
        r0: usize,
        rows: usize,
        avx2: bool,
    ) -> [f32; ROWS] {
        let stride = self.scale_stride();
        let row_bytes = self.k / BLOCK * self.format.code_bytes();
        let w = Codes {
            codes: &self.codes[j * row_bytes..(j + 1) * row_bytes],
            scales: &self.scales[j * stride..(j + 1) * stride],
        };
        let a = |r: usize| qa.row(r0 + r);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the AVX2 level (or above) was checked by `cpu::level`; the operands hold
            // whole blocks and scale rows padded to 8.
            return unsafe {
                match self.format {
                    Quantization::Q8_0 => x86::dots_rows::<x86::Q8>(w, rows, a),
                    Quantization::Q4_0 => x86::dots_rows::<x86::Q4>(w, rows, a),
                }
            };
        }
        let _ = avx2;
        let mut sums = [0f32; ROWS];
        for (r, s) in sums[..rows].iter_mut().enumerate() {
            *s = portable_dot(self.format, w, a(r));
        }
        sums
    }
}

/// One weight row: its blocks' codes and scales (padded to a multiple of 8).
#[derive(Clone, Copy)]
struct Codes<'a> {
    codes: &'a [u8],
    scales: &'a [f16],
}

/// One row of `a` in q8_0 blocks: `k` values and their scales (padded to a multiple of 8).
#[derive(Clone, Copy)]
struct Acts<'a> {
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

    fn row(&self, r: usize) -> Acts<'_> {
        Acts {
            quants: &self.quants[r * self.k..(r + 1) * self.k],
            scales: &self.scales[r * self.stride..(r + 1) * self.stride],
        }
    }
}

/// GGML's scalar `vec_dot_q8_0_q8_0` / `vec_dot_q4_0_q8_0`: per block the integer sum, times
/// both scales, into one f32.
fn portable_dot(format: Quantization, w: Codes, a: Acts) -> f32 {
    let cb = format.code_bytes();
    let mut sum = 0f32;
    for (b, qa) in a.quants.chunks_exact(BLOCK).enumerate() {
        let codes = &w.codes[b * cb..(b + 1) * cb];
        let s: i32 = match format {
            Quantization::Q8_0 => codes
                .iter()
                .zip(qa)
                .map(|(&c, &y)| c as i8 as i32 * y as i32)
                .sum(),
            Quantization::Q4_0 => codes
                .iter()
                .enumerate()
                .map(|(j, &c)| {
                    let (lo, hi) = ((c & 0x0F) as i32 - 8, (c >> 4) as i32 - 8);
                    lo * qa[j] as i32 + hi * qa[j + BLOCK / 2] as i32
                })
                .sum(),
        };
        sum += s as f32 * (w.scales[b].to_f32() * a.scales[b].to_f32());
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Acts, Codes, BLOCK, ROWS};

    /// Bytes ahead of the group being read that each group prefetches (measured for q8_0:
    /// 512, 1024, 2048, 4096 on a 2-core AVX2 EPYC; 2048 read fastest with 2 threads).
    const PREFETCH: usize = 2048;

    /// A block format's codes as 32 signed bytes.
    pub(super) trait Format {
        const CODE_BYTES: usize;
        /// The block's 32 weights (as integers) from its codes at `p`.
        unsafe fn load(p: *const u8) -> __m256i;
    }

    pub(super) struct Q8;
    pub(super) struct Q4;

    impl Format for Q8 {
        const CODE_BYTES: usize = BLOCK;
        #[inline(always)]
        unsafe fn load(p: *const u8) -> __m256i {
            _mm256_loadu_si256(p as *const __m256i)
        }
    }

    impl Format for Q4 {
        const CODE_BYTES: usize = BLOCK / 2;
        /// Low nibbles are elements 0..16, high nibbles 16..32 (GGML's order), minus 8.
        #[inline(always)]
        unsafe fn load(p: *const u8) -> __m256i {
            let x = _mm_loadu_si128(p as *const __m128i);
            let nibble = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(x, nibble);
            let hi = _mm_and_si128(_mm_srli_epi16(x, 4), nibble);
            _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8))
        }
    }

    /// [`dots`] for `rows` (1 to [`ROWS`]) rows `a(0..rows)`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots_rows<'a, F: Format>(
        w: Codes,
        rows: usize,
        a: impl Fn(usize) -> Acts<'a>,
    ) -> [f32; ROWS] {
        let mut out = [0f32; ROWS];
        match rows {
            1 => out[..1].copy_from_slice(&dots::<F, 1>(w, [a(0)])),
            2 => out[..2].copy_from_slice(&dots::<F, 2>(w, [a(0), a(1)])),
            3 => out[..3].copy_from_slice(&dots::<F, 3>(w, [a(0), a(1), a(2)])),
            _ => out = dots::<F, 4>(w, [a(0), a(1), a(2), a(3)]),
        }
        out
    }

    /// The dot products of `w` with each of the `R` rows `a`: per block, `|a|·sign(w, a)` in
    /// unsigned-by-signed byte pairs (`vpmaddubsw`, exact: |a| <= 127, |w| <= 128), summed into
    /// i32 lanes, converted, and multiplied-added with `d_w · d_a` into f32 vectors (two per
    /// row, even and odd blocks, so that consecutive blocks do not wait on one accumulator).
    /// The scales are widened and multiplied eight blocks at a time (rows are padded to 8).
    /// A row's arithmetic does not depend on `R`.
    #[inline(always)]
    unsafe fn dots<F: Format, const R: usize>(w: Codes, a: [Acts; R]) -> [f32; R] {
        let nb = a[0].quants.len() / BLOCK;
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let mut d = [[0f32; 8]; R];
        let aq = a.map(|a| a.quants.as_ptr());
        for g in (0..nb).step_by(8) {
            let wd = widen8(w.scales.as_ptr().add(g));
            for r in 0..R {
                let ad = widen8(a[r].scales.as_ptr().add(g));
                _mm256_storeu_ps(d[r].as_mut_ptr(), _mm256_mul_ps(wd, ad));
            }
            let wc = w.codes.as_ptr().add(g * F::CODE_BYTES);
            for line in (0..8 * F::CODE_BYTES).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(wc.wrapping_add(PREFETCH + line) as *const i8);
            }
            let aq = aq.map(|p| p.add(g * BLOCK));
            if nb - g >= 8 {
                for i in 0..8 {
                    block::<F, R>(wc, &aq, i, &d, &mut acc);
                }
            } else {
                for i in 0..nb - g {
                    block::<F, R>(wc, &aq, i, &d, &mut acc);
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

    /// Eight f16 at `p`, widened.
    #[inline(always)]
    unsafe fn widen8(p: *const half::f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    /// Block `i` of a group: its integer dot products with each row, scaled by `d[r][i]`, into
    /// accumulator `i % 2` of each row.
    #[inline(always)]
    unsafe fn block<F: Format, const R: usize>(
        wc: *const u8,
        aq: &[*const i8; R],
        i: usize,
        d: &[[f32; 8]; R],
        acc: &mut [[__m256; 2]; R],
    ) {
        let ones = _mm256_set1_epi16(1);
        let wv = F::load(wc.add(i * F::CODE_BYTES));
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

    /// At every level and in both formats, the product equals candle's `QMatMul` (the same
    /// quantization and integer sums; f32 summation order only) for 1-7 rows, with a bias,
    /// across column chunks and row groups of 4 + tail; each row equals that row alone.
    #[test]
    fn product_matches_candle_qmatmul() {
        crate::cpu::for_each_level(|level| {
            let dev = Device::Cpu;
            for format in [Quantization::Q8_0, Quantization::Q4_0] {
                for (m, n, k) in [(1, 300, 64), (3, 37, 96), (5, 1000, 896), (7, 9, 32)] {
                    let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
                    let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
                    let bias = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
                    let qt = QTensor::quantize(&w, format.ggml()).unwrap();
                    let want = QMatMul::from_qtensor(qt)
                        .unwrap()
                        .forward(&a)
                        .unwrap()
                        .broadcast_add(&bias)
                        .unwrap();
                    let q = QuantizedWeight::quantize(&w, format).unwrap();
                    assert_eq!((q.n(), q.k(), q.format()), (n, k, format));
                    let mut got = vec![f32::NAN; m * n];
                    let av = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let bv = bias.to_vec1::<f32>().unwrap();
                    q.product(m, &av, Some(&bv), &mut got);
                    let what = format!("{level} {format} ({m}, {n}, {k})");
                    for i in 0..m {
                        let mut one = vec![f32::NAN; n];
                        q.product(1, &av[i * k..(i + 1) * k], Some(&bv), &mut one);
                        let same = one
                            .iter()
                            .zip(&got[i * n..(i + 1) * n])
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{what}: row {i} differs from the row alone");
                    }
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
                        "{what}: differs from candle by {diff} (scale {scale})"
                    );
                }
            }
        });
    }

    /// A width that is not whole blocks is refused with what was expected.
    #[test]
    fn a_partial_block_is_refused() {
        let w = Tensor::zeros((4, 40), DType::F32, &Device::Cpu).unwrap();
        for format in [Quantization::Q8_0, Quantization::Q4_0] {
            let e = QuantizedWeight::quantize(&w, format)
                .unwrap_err()
                .to_string();
            assert!(e.contains("40") && e.contains("multiple of 32"), "{e}");
        }
    }
}
