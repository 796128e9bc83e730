//! A small SIMD trait over the vector width, so that each kernel is written once and compiled per
//! instruction set: [`Avx512`] (16 f32 lanes) and [`Avx2`] (8 lanes, with FMA and F16C).
//!
//! A kernel is an `#[inline(always)]` function generic over `S: F32s`; its entry points are one
//! `#[target_feature]` function per level that calls it with the level's type, so the whole body,
//! these methods and the intrinsics inside them are compiled with that level's instructions (the
//! pattern of `pulp`'s `WithSimd`).
//!
//! # Safety
//! Every method is `unsafe`: it must only run on a CPU with the type's features (checked by
//! [`crate::cpu`] before an entry point is called), and pointers must be valid for `LANES`
//! elements (or `n` for the `_n` variants).

#![allow(clippy::missing_safety_doc)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::{bf16, f16};

/// The most lanes of any level: the size of the tail buffers.
pub(crate) const MAX_LANES: usize = 16;

/// f32 vectors of one instruction set.
pub(crate) trait F32s: Copy + 'static {
    /// One vector of `LANES` f32.
    type V: Copy;
    const LANES: usize;
    /// Rows of a GEMM register sub-tile of two vectors per row: its accumulators, two vectors of
    /// `B` and one broadcast fit the register file (32 zmm: 24 + 3; 16 ymm: 12 + 3).
    const GEMM_ROWS: usize;

    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `LANES` bf16 widened to f32 (exact).
    unsafe fn load_bf16(p: *const bf16) -> Self::V;
    /// `LANES` f16 widened to f32 (exact).
    unsafe fn load_f16(p: *const f16) -> Self::V;
    /// From `LANES` adjacent bf16 pairs (`2·LANES` elements), the first (`ODD == false`) or the
    /// second element of each pair, widened to f32.
    unsafe fn load_bf16_half<const ODD: bool>(p: *const bf16) -> Self::V;
    /// One element of the bf16 pair at `p` (the second when `ODD`), widened, in every lane.
    unsafe fn splat_bf16_half<const ODD: bool>(p: *const bf16) -> Self::V;
    /// The f16 at `p`, widened, in every lane.
    unsafe fn splat_f16(p: *const f16) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c`, rounded once.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c - a·b`, rounded once.
    unsafe fn fnmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Rounded to the nearest integer (ties to even).
    unsafe fn round(a: Self::V) -> Self::V;
    /// `a·2^n` for integral `n` in [-150, 128] (exact where the result is normal).
    unsafe fn scale_pow2(a: Self::V, n: Self::V) -> Self::V;
    /// The sum of the lanes.
    unsafe fn sum(a: Self::V) -> f32;
    /// The largest lane.
    unsafe fn max_lane(a: Self::V) -> f32;

    /// The first `n < LANES` elements, the other lanes zero.
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V {
        let mut buf = [0f32; MAX_LANES];
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        Self::load(buf.as_ptr())
    }
    /// Stores the first `n < LANES` lanes.
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: Self::V, n: usize) {
        let mut buf = [0f32; MAX_LANES];
        Self::store(buf.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
    }
    /// The first `n < LANES` bf16 widened, the other lanes zero.
    #[inline(always)]
    unsafe fn load_bf16_n(p: *const bf16, n: usize) -> Self::V {
        let mut buf = [bf16::ZERO; MAX_LANES];
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        Self::load_bf16(buf.as_ptr())
    }
    /// The first `n < LANES` f16 widened, the other lanes zero.
    #[inline(always)]
    unsafe fn load_f16_n(p: *const f16, n: usize) -> Self::V {
        let mut buf = [f16::ZERO; MAX_LANES];
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        Self::load_f16(buf.as_ptr())
    }
}

/// Asks for the cache line `bytes` past `p` (a hint: never faults, whatever the address).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory architecturally; SSE is x86-64's baseline.
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>((p as *const i8).wrapping_add(bytes))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

/// AVX-512 F (+ BW): 16 lanes.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl F32s for Avx512 {
    type V = __m512;
    const LANES: usize = 16;
    const GEMM_ROWS: usize = 12;

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> __m512 {
        let h = _mm256_loadu_si256(p as *const __m256i);
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    #[inline(always)]
    unsafe fn load_bf16_half<const ODD: bool>(p: *const bf16) -> __m512 {
        let w = _mm512_loadu_si512(p as *const _);
        _mm512_castsi512_ps(if ODD {
            _mm512_and_si512(w, _mm512_set1_epi32(0xffff_0000u32 as i32))
        } else {
            _mm512_slli_epi32::<16>(w)
        })
    }
    #[inline(always)]
    unsafe fn splat_bf16_half<const ODD: bool>(p: *const bf16) -> __m512 {
        let w = _mm512_set1_epi32((p as *const i32).read_unaligned());
        _mm512_castsi512_ps(if ODD {
            _mm512_and_si512(w, _mm512_set1_epi32(0xffff_0000u32 as i32))
        } else {
            _mm512_slli_epi32::<16>(w)
        })
    }
    #[inline(always)]
    unsafe fn splat_f16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_set1_epi16((p as *const i16).read_unaligned()))
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        _mm512_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn min(a: __m512, b: __m512) -> __m512 {
        _mm512_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn fnmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fnmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn round(a: __m512) -> __m512 {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
    }
    #[inline(always)]
    unsafe fn scale_pow2(a: __m512, n: __m512) -> __m512 {
        _mm512_scalef_ps(a, n)
    }
    #[inline(always)]
    unsafe fn sum(a: __m512) -> f32 {
        _mm512_reduce_add_ps(a)
    }
    #[inline(always)]
    unsafe fn max_lane(a: __m512) -> f32 {
        _mm512_reduce_max_ps(a)
    }
}

/// AVX2 + FMA + F16C: 8 lanes.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl F32s for Avx2 {
    type V = __m256;
    const LANES: usize = 8;
    const GEMM_ROWS: usize = 6;

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn load_bf16_half<const ODD: bool>(p: *const bf16) -> __m256 {
        let w = _mm256_loadu_si256(p as *const __m256i);
        _mm256_castsi256_ps(if ODD {
            _mm256_and_si256(w, _mm256_set1_epi32(0xffff_0000u32 as i32))
        } else {
            _mm256_slli_epi32::<16>(w)
        })
    }
    #[inline(always)]
    unsafe fn splat_bf16_half<const ODD: bool>(p: *const bf16) -> __m256 {
        let w = _mm256_set1_epi32((p as *const i32).read_unaligned());
        _mm256_castsi256_ps(if ODD {
            _mm256_and_si256(w, _mm256_set1_epi32(0xffff_0000u32 as i32))
        } else {
            _mm256_slli_epi32::<16>(w)
        })
    }
    #[inline(always)]
    unsafe fn splat_f16(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_set1_epi16((p as *const i16).read_unaligned()))
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        _mm256_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn min(a: __m256, b: __m256) -> __m256 {
        _mm256_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn fnmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fnmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn round(a: __m256) -> __m256 {
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
    }
    /// Two exponent-field multiplies, `2^⌊n/2⌋·2^(n-⌊n/2⌋)`, so that both factors are normal over
    /// the whole range (a subnormal result is rounded once more than by `vscalefps`).
    #[inline(always)]
    unsafe fn scale_pow2(a: __m256, n: __m256) -> __m256 {
        let n = _mm256_cvtps_epi32(n);
        let h = _mm256_srai_epi32::<1>(n);
        let pow2 = |e: __m256i| {
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                e,
                _mm256_set1_epi32(127),
            )))
        };
        _mm256_mul_ps(_mm256_mul_ps(a, pow2(h)), pow2(_mm256_sub_epi32(n, h)))
    }
    #[inline(always)]
    unsafe fn sum(a: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn max_lane(a: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// A kernel written once over the vector width: its arguments, and `run` generic over `S`.
///
/// `run` must be `#[inline(always)]`, and so must every function it reaches that uses `S` (no
/// closures in kernel bodies: a closure cannot be forced inline, and one left out of line is
/// compiled without the level's features, its intrinsics becoming calls). [`run`] then compiles
/// the whole body inside one `#[target_feature]` entry point per level.
pub(crate) trait Kernel {
    type Output;
    /// # Safety
    /// Only called through [`run`], on a CPU with `S`'s features; the kernel's own
    /// requirements on its arguments hold.
    unsafe fn run<S: F32s>(self) -> Self::Output;
}

/// Runs `k` at `level`'s vector width, or returns `None` at the reference level (the caller then
/// takes its portable path).
///
/// # Safety
/// The kernel's own requirements on its arguments hold; `level` is at most [`cpu::detected`]
/// (as [`cpu::level`] always is).
///
/// [`cpu::detected`]: crate::cpu::detected
/// [`cpu::level`]: crate::cpu::level
#[inline]
pub(crate) unsafe fn run<K: Kernel>(level: crate::cpu::KernelLevel, k: K) -> Option<K::Output> {
    use crate::cpu::KernelLevel;
    debug_assert!(level <= crate::cpu::detected());
    match level {
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx512 => Some(run_avx512(k)),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx2 => Some(run_avx2(k)),
        _ => {
            drop(k);
            None
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn run_avx512<K: Kernel>(k: K) -> K::Output {
    k.run::<Avx512>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_avx2<K: Kernel>(k: K) -> K::Output {
    k.run::<Avx2>()
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::cpu::{self, KernelLevel};

    #[inline(always)]
    unsafe fn ops<S: F32s>() -> Vec<f32> {
        let xs: Vec<f32> = (0..S::LANES).map(|i| i as f32 * 0.75 - 3.1).collect();
        let hs: Vec<bf16> = xs.iter().map(|&x| bf16::from_f32(x)).collect();
        let fs: Vec<f16> = xs.iter().map(|&x| f16::from_f32(x)).collect();
        let x = S::load(xs.as_ptr());
        let mut out = Vec::new();
        let mut put = |v: S::V| {
            let mut b = [0f32; MAX_LANES];
            S::store(b.as_mut_ptr(), v);
            out.extend_from_slice(&b[..S::LANES]);
        };
        put(S::fmadd(x, x, S::splat(1.0)));
        put(S::fnmadd(x, x, S::splat(1.0)));
        put(S::round(x));
        put(S::scale_pow2(x, S::round(x)));
        put(S::sub(S::load_bf16(hs.as_ptr()), S::load_f16(fs.as_ptr())));
        put(S::load_n(xs.as_ptr(), 3));
        let pairs: Vec<bf16> = (0..2 * S::LANES)
            .map(|i| bf16::from_f32(i as f32))
            .collect();
        put(S::sub(
            S::load_bf16_half::<true>(pairs.as_ptr()),
            S::load_bf16_half::<false>(pairs.as_ptr()),
        ));
        put(S::add(
            S::splat_bf16_half::<true>(pairs.as_ptr().add(4)),
            S::splat_bf16_half::<false>(pairs.as_ptr().add(4)),
        ));
        put(S::splat_f16(fs.as_ptr().add(1)));
        put(S::div(S::max(x, S::splat(-1.0)), S::min(x, S::splat(9.0))));
        out.push(S::sum(x));
        out.push(S::max_lane(x));
        out
    }

    struct Ops;
    impl Kernel for Ops {
        type Output = (usize, Vec<f32>);
        #[inline(always)]
        unsafe fn run<S: F32s>(self) -> (usize, Vec<f32>) {
            (S::LANES, ops::<S>())
        }
    }

    /// Every level's methods agree with the scalar formulas, lane by lane.
    #[test]
    fn every_level_computes_the_scalar_formulas() {
        for level in cpu::available() {
            // SAFETY: an available level; the kernel has no arguments.
            let Some((lanes, got)) = (unsafe { run(level, Ops) }) else {
                assert_eq!(level, KernelLevel::Reference);
                continue;
            };
            let xs: Vec<f32> = (0..lanes).map(|i| i as f32 * 0.75 - 3.1).collect();
            let mut want = Vec::new();
            want.extend(xs.iter().map(|&x| x.mul_add(x, 1.0)));
            want.extend(xs.iter().map(|&x| (-x).mul_add(x, 1.0)));
            want.extend(xs.iter().map(|&x| x.round_ties_even()));
            want.extend(
                xs.iter()
                    .map(|&x| x * 2f32.powi(x.round_ties_even() as i32)),
            );
            want.extend(
                xs.iter()
                    .map(|&x| bf16::from_f32(x).to_f32() - f16::from_f32(x).to_f32()),
            );
            want.extend((0..lanes).map(|i| if i < 3 { xs[i] } else { 0.0 }));
            want.extend((0..lanes).map(|_| 1.0));
            want.extend((0..lanes).map(|_| 9.0));
            want.extend((0..lanes).map(|_| f16::from_f32(xs[1]).to_f32()));
            want.extend(xs.iter().map(|&x| x.max(-1.0) / x.min(9.0)));
            want.push(xs.iter().sum());
            want.push(xs.iter().cloned().fold(f32::MIN, f32::max));
            assert_eq!(got.len(), want.len(), "{level}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g == w || (g - w).abs() <= 1e-6 * w.abs(),
                    "{level} #{i}: {g} vs {w}"
                );
            }
        }
    }

    /// The two-step scaling reaches the subnormals and the top of the range.
    #[test]
    fn avx2_scale_pow2_covers_the_range() {
        if cpu::detected() < KernelLevel::Avx2 {
            return;
        }
        struct Pow2(f32);
        impl Kernel for Pow2 {
            type Output = f32;
            #[inline(always)]
            unsafe fn run<S: F32s>(self) -> f32 {
                let mut b = [0f32; MAX_LANES];
                S::store(
                    b.as_mut_ptr(),
                    S::scale_pow2(S::splat(1.0), S::splat(self.0)),
                );
                b[0]
            }
        }
        for n in [-150i32, -149, -140, -127, -126, -1, 0, 1, 64, 127, 128] {
            // SAFETY: AVX2 was detected.
            let got = unsafe { run(KernelLevel::Avx2, Pow2(n as f32)) };
            assert_eq!(got, Some(2f64.powi(n) as f32), "2^{n}");
        }
    }
}
