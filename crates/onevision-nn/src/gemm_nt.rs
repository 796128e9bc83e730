//! `C = A·Bᵀ` on the CPU with register-tile micro-kernels: the fast path beside candle's matmul
//! for the products that dominate the model (every `Linear` with more than a few rows).
//!
//! Both operands are row-major along the reduction axis (`A`: (m, k) activations, `B`: (n, k)
//! weights in PyTorch's `[out, in]` layout), which is how a linear layer stores them. The loop
//! nest is the usual BLIS one: `B` is packed once per call into `NR`-column panels, `A` into
//! `MR`-row panels per `(MC, KC)` block, and each `MR × NR` tile of f32 accumulators is computed
//! in register sub-tiles of `GEMM_ROWS` rows × two vectors (AVX-512: one 12 × 32 sub-tile; AVX2:
//! four 6 × 16), one broadcast of `A` times two vectors of `B` per reduction step. The kernels
//! are written once over the vector width ([`crate::vector`]) and run at the level
//! [`crate::cpu::level`] picks.
//!
//! - f32: one fused multiply-add per element pair.
//! - bf16: operands are packed in pairs of adjacent reduction elements. With AVX512-BF16,
//!   `vdpbf16ps` multiplies a pair per f32 lane and adds both products to the accumulator;
//!   elsewhere each half of a pair is widened to f32 in registers (a shift or a mask: bf16 is the
//!   top half of an f32) and multiplied-added as f32. The result is rounded to bf16 once, at the
//!   end (as oneDNN's bf16 matmul does for torch).
//!
//! Summation order differs from candle's `gemm` (and from torch's): results agree to f32
//! rounding, which the parity tests' tolerances are chosen for. At the reference level the
//! entry points return `false` and the caller uses candle's matmul.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::cpu::{self, KernelLevel};
use crate::vector::{self, F32s, Kernel};

/// Rows of the register tile.
const MR: usize = 12;
/// Columns of the register tile: two 16-lane f32 vectors.
const NR: usize = 32;
/// Reduction depth per packed block: a `KC × NR` panel of `B` (16 KiB in f32) stays in L1.
const KC: usize = 128;
/// Rows of `A` per packed block (`MC × KC` in L2).
const MC: usize = 240;
/// Rows of the register tile, for callers sizing accumulators.
pub const TILE_ROWS: usize = MR;
/// Columns of the register tile, for callers sizing accumulators.
pub const TILE_COLS: usize = NR;
/// Columns of C per accumulator block (`MC × NC` f32 in L2).
const NC: usize = 512;
/// Below this many rows the dot-product kernel runs (each weight row read once from memory for
/// all rows, no packing), above it the packed GEMM, whose packing of the whole weight costs a
/// fixed ~12 ms on a (4864, 896) f32 weight. gemm_bench's rows sweep on a 2-core AVX2 EPYC
/// (2026-12-07): dots 2.6 ms at 15 rows, packed 13.8 ms at 16, 30.8 ms at 128 (dots there:
/// about 22 ms), 38.8 ms at 256; so 128. A batched decode step of up to 127 sequences also
/// keeps each row's bits equal to the sequence's own step.
pub const MIN_ROWS_PACKED: usize = 128;

/// Whether the f32 kernels run (the AVX2 level or above).
pub fn has_f32() -> bool {
    cpu::level() >= KernelLevel::Avx2
}

/// Whether the bf16 kernels run (the AVX2 level or above; `vdpbf16ps` at the AVX-512 level where
/// the CPU has AVX512-BF16, widening to f32 otherwise).
pub fn has_bf16() -> bool {
    cpu::level() >= KernelLevel::Avx2
}

/// Whether the bf16 products use `vdpbf16ps` now.
fn dpbf16() -> bool {
    cpu::level() == KernelLevel::Avx512 && cpu::detected_avx512_bf16()
}

/// An element type with a micro-kernel.
pub trait Element: Copy + Send + Sync + 'static {
    /// Reduction elements per packed step (1 for f32, 2 for bf16 pairs).
    const STEP: usize;
    /// Whether the many-row product packs the operands widened to f32 now: for a half type
    /// where the CPU has no dot-product instruction for it (`vdpbf16ps`), so that the f32
    /// micro-kernel runs as it does for f32 instead of widening every load in registers, at
    /// the cost of packing buffers twice the size. Exact: the widening is, and the summation
    /// order is the same.
    fn pack_as_f32() -> bool;
    fn zero() -> Self;
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn available() -> bool;
    /// `c[i][j] (+)= Σ_p a(i, p)·b[p][j]` over `steps` steps; `c` is an `MR × NR` f32 tile with
    /// row stride `ldc`. `a` is a packed panel (`lda == 0`: element `(p, i, e)` at
    /// `(p·MR + i)·STEP + e`) or `MR` row-major rows `lda` apart.
    ///
    /// # Safety
    /// `a` holds the `MR` rows of `steps·STEP` elements, `b` `steps·NR·STEP` elements; `c` the
    /// tile; the CPU has the features [`Element::available`] checks.
    unsafe fn kernel(
        steps: usize,
        a: *const Self,
        lda: usize,
        b: *const Self,
        c: *mut f32,
        ldc: usize,
        add: bool,
    );
    /// `out[i][j] = Σ_k a[i][k]·b[j][k]` for few rows of `a`, straight from the row-major
    /// operands.
    ///
    /// # Safety
    /// As for `kernel`; `a` is (rows, k), `b` is (cols, k), `out` is (rows, ldo).
    unsafe fn dots(
        rows: usize,
        cols: usize,
        k: usize,
        a: &[Self],
        b: &[Self],
        out: &mut [f32],
        ldo: usize,
    );
}

impl Element for f32 {
    const STEP: usize = 1;
    fn pack_as_f32() -> bool {
        false
    }
    fn zero() -> Self {
        0.0
    }
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn available() -> bool {
        has_f32()
    }
    unsafe fn kernel(
        steps: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        widened_tile(steps, a, lda, b, c, ldc, add);
    }
    unsafe fn dots(
        rows: usize,
        cols: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
        out: &mut [f32],
        ldo: usize,
    ) {
        widened_dots(rows, cols, k, a, b, out, ldo);
    }
}

impl Element for bf16 {
    const STEP: usize = 2;
    fn pack_as_f32() -> bool {
        !dpbf16()
    }
    fn zero() -> Self {
        bf16::ZERO
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn available() -> bool {
        has_bf16()
    }
    unsafe fn kernel(
        steps: usize,
        a: *const bf16,
        lda: usize,
        b: *const bf16,
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        if dpbf16() {
            x86::kernel_bf16(steps, a, lda, b, c, ldc, add);
            return;
        }
        widened_tile(steps, a, lda, b, c, ldc, add);
    }
    unsafe fn dots(
        rows: usize,
        cols: usize,
        k: usize,
        a: &[bf16],
        b: &[bf16],
        out: &mut [f32],
        ldo: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if dpbf16() {
            x86::dots_bf16(rows, cols, k, a, b, out, ldo);
            return;
        }
        widened_dots(rows, cols, k, a, b, out, ldo);
    }
}

/// f16 operands, widened to f32 in registers (F16C), accumulated in f32.
impl Element for f16 {
    const STEP: usize = 1;
    fn pack_as_f32() -> bool {
        true
    }
    fn zero() -> Self {
        f16::ZERO
    }
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn available() -> bool {
        has_f32()
    }
    unsafe fn kernel(
        steps: usize,
        a: *const f16,
        lda: usize,
        b: *const f16,
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        widened_tile(steps, a, lda, b, c, ldc, add);
    }
    unsafe fn dots(
        rows: usize,
        cols: usize,
        k: usize,
        a: &[f16],
        b: &[f16],
        out: &mut [f32],
        ldo: usize,
    ) {
        widened_dots(rows, cols, k, a, b, out, ldo);
    }
}

/// A raw pointer that may cross into the thread pool; every task writes disjoint rows.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// Through a method, so closures capture the wrapper (which is `Send`), not its field.
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// `c = a·bᵀ` with f32 accumulation, rounded to `T` once. Returns `false` (and leaves `c`
/// untouched) when the CPU lacks the kernel's instructions.
///
/// # Shapes
/// `a`: (m, k), `b`: (n, k), `c`: (m, n); all row-major and contiguous.
pub fn gemm_nt<T: Element + StoreF32>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
) -> bool {
    gemm_nt_bias(m, n, k, a, b, None, c)
}

/// [`gemm_nt`] plus a bias per column, added to the f32 accumulators before the one rounding
/// (what a fused linear layer does).
///
/// # Shapes
/// `a`: (m, k), `b`: (n, k), `bias`: (n), `c`: (m, n)
pub fn gemm_nt_bias<T: Element + StoreF32>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    b: &[T],
    bias: Option<&[f32]>,
    c: &mut [T],
) -> bool {
    assert_eq!(a.len(), m * k, "a is not (m, k)");
    assert!(bias.is_none_or(|b| b.len() == n), "bias is not (n)");
    assert_eq!(b.len(), n * k, "b is not (n, k)");
    assert_eq!(c.len(), m * n, "c is not (m, n)");
    if !T::available() {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    if m < MIN_ROWS_PACKED {
        dots_parallel(m, n, k, a, b, bias, c);
        return true;
    }
    if T::pack_as_f32() {
        packed_product(m, n, k, a, b, bias, c, |x: T| x.to_f32());
    } else {
        packed_product(m, n, k, a, b, bias, c, |x: T| x);
    }
    true
}

/// The packed many-row product with the operands packed as `P`, converted by `conv`, and the
/// f32 accumulators stored as `T`.
#[allow(clippy::too_many_arguments)]
fn packed_product<T: Element + StoreF32, P: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    b: &[T],
    bias: Option<&[f32]>,
    c: &mut [T],
    conv: impl Fn(T) -> P + Sync,
) {
    let bp = PackedB::new(n, k, true, |j, kk| conv(b[j * k + kk]));
    let cp = SendPtr(c.as_mut_ptr());
    (0..m.div_ceil(MC)).into_par_iter().for_each(|blk| {
        let i0 = blk * MC;
        let mc = MC.min(m - i0);
        let mut acc = vec![0f32; mc.next_multiple_of(MR) * NC];
        let mut ap = Vec::new();
        pack_a(
            mc,
            k,
            |i| &a[(i0 + i) * k..(i0 + i + 1) * k],
            &conv,
            &mut ap,
        );
        for j0 in (0..n).step_by(NC) {
            let nc = NC.min(n - j0);
            product(ALayout::Packed(&ap), mc, k, &bp, j0, nc, &mut acc, NC);
            for i in 0..mc {
                let row =
                    unsafe { std::slice::from_raw_parts_mut(cp.get().add((i0 + i) * n + j0), nc) };
                let sums = &mut acc[i * NC..i * NC + nc];
                add_bias(sums, bias.map(|b| &b[j0..j0 + nc]));
                T::store(sums, row);
            }
        }
    });
}

/// A `B` operand (n, k) packed into blocks of `KC` reduction elements, each block a run of
/// `NR`-column panels laid out step-major: within block `bi` (steps `s0..s0+steps`), panel `jp`
/// element `(p, j, e)` is `b[jp·NR + j][(s0 + p)·STEP + e]`. Columns past `n` and elements past
/// `k` are zero. Any prefix of the reduction (`k_used <= k`) can be multiplied with it.
pub struct PackedB<T> {
    n: usize,
    k: usize,
    data: Vec<T>,
}

impl<T: Element> PackedB<T> {
    /// Packs the matrix whose element `(j, kk)` is `get(j, kk)`, on the thread pool when
    /// `parallel`.
    pub fn new(n: usize, k: usize, parallel: bool, get: impl Fn(usize, usize) -> T + Sync) -> Self {
        let steps_total = k.div_ceil(T::STEP);
        let npanels = n.div_ceil(NR);
        let w = NR * T::STEP;
        let mut data = vec![T::zero(); steps_total * npanels * w];
        let block_len = (KC / T::STEP) * npanels * w;
        let fill = |(bi, dst): (usize, &mut [T])| {
            let s0 = bi * (KC / T::STEP);
            let steps = (KC / T::STEP).min(steps_total - s0);
            for jp in 0..npanels {
                let panel = &mut dst[jp * steps * w..(jp + 1) * steps * w];
                for j in 0..NR.min(n - jp * NR) {
                    for p in 0..steps {
                        for e in 0..T::STEP {
                            let kk = (s0 + p) * T::STEP + e;
                            if kk < k {
                                panel[(p * NR + j) * T::STEP + e] = get(jp * NR + j, kk);
                            }
                        }
                    }
                }
            }
        };
        if parallel {
            data.par_chunks_mut(block_len).enumerate().for_each(fill);
        } else {
            data.chunks_mut(block_len).enumerate().for_each(fill);
        }
        Self { n, k, data }
    }

    /// The panel of columns `jp·NR..` in the block that starts at step `s0`.
    fn panel(&self, s0: usize, jp: usize) -> *const T {
        let steps_total = self.k.div_ceil(T::STEP);
        let steps = (KC / T::STEP).min(steps_total - s0);
        let npanels = self.n.div_ceil(NR);
        let w = NR * T::STEP;
        self.data[s0 * npanels * w + jp * steps * w..].as_ptr()
    }
}

/// How the `A` operand of [`product`] is laid out.
#[derive(Clone, Copy)]
pub enum ALayout<'a, T> {
    /// Packed by [`pack_a`] with the same `mc` and `k`.
    Packed(&'a [T]),
    /// Row-major rows `ld` apart, at least `mc.next_multiple_of(MR)` of them (the rows past `mc`
    /// zero), each zero past `k` up to a whole `STEP`: the kernel reads them in place. Suits an
    /// operand that is already in L2 (attention probabilities).
    Rows { data: &'a [T], ld: usize },
}

/// `acc[i][j] = Σ_{kk < k} a[i][kk]·b[j0 + j][kk]` for rows `0..mc` and columns `0..nc`
/// (`j0` a multiple of `NR`), on the calling thread. `acc` has row stride
/// `ldacc >= nc.next_multiple_of(NR)` and at least `mc.next_multiple_of(MR)` rows.
#[allow(clippy::too_many_arguments)]
pub fn product<T: Element>(
    a: ALayout<'_, T>,
    mc: usize,
    k: usize,
    b: &PackedB<T>,
    j0: usize,
    nc: usize,
    acc: &mut [f32],
    ldacc: usize,
) {
    assert!(
        k <= b.k && j0.is_multiple_of(NR) && j0 + nc <= b.n,
        "product outside the packed operand"
    );
    assert!(ldacc >= nc.next_multiple_of(NR) && acc.len() >= mc.next_multiple_of(MR) * ldacc);
    let mpanels = mc.div_ceil(MR);
    let steps_total = k.div_ceil(T::STEP);
    match a {
        ALayout::Packed(a) => assert!(
            a.len() >= steps_total * mpanels * MR * T::STEP,
            "a is not packed for (mc, k)"
        ),
        ALayout::Rows { data, ld } => assert!(
            ld >= steps_total * T::STEP
                && data.len() >= (mpanels * MR - 1) * ld + steps_total * T::STEP,
            "a does not hold whole register tiles of rows"
        ),
    }
    if k == 0 {
        acc.iter_mut().for_each(|x| *x = 0.0);
        return;
    }
    let mut s0 = 0;
    while s0 < steps_total {
        let steps = (KC / T::STEP).min(steps_total - s0);
        for jp in 0..nc.div_ceil(NR) {
            let bpanel = b.panel(s0, j0 / NR + jp);
            for ip in 0..mpanels {
                let (ap, lda) = match a {
                    ALayout::Packed(a) => (
                        a[s0 * mpanels * MR * T::STEP + ip * steps * MR * T::STEP..].as_ptr(),
                        0,
                    ),
                    ALayout::Rows { data, ld } => {
                        (data[ip * MR * ld + s0 * T::STEP..].as_ptr(), ld)
                    }
                };
                // SAFETY: both operands hold `steps` steps for the tile (sizes asserted above),
                // the tile lies in `acc`, and the caller checked `T::available()`.
                unsafe {
                    T::kernel(
                        steps,
                        ap,
                        lda,
                        bpanel,
                        acc.as_mut_ptr().add(ip * MR * ldacc + jp * NR),
                        ldacc,
                        s0 > 0,
                    );
                }
            }
        }
        s0 += steps;
    }
}

/// Writing an f32 accumulator row into the output type.
pub trait StoreF32: Sized {
    fn store(src: &[f32], dst: &mut [Self]);
}

impl StoreF32 for f32 {
    fn store(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl StoreF32 for f16 {
    fn store(src: &[f32], dst: &mut [f16]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f16::from_f32(*s);
        }
    }
}

impl StoreF32 for bf16 {
    /// Round to nearest even, 16 at a time with `vcvtneps2bf16` where the CPU has it.
    fn store(src: &[f32], dst: &mut [bf16]) {
        let n = src.len().min(dst.len());
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if dpbf16() {
            // SAFETY: AVX512-BF16 is present; both slices hold `n` elements.
            unsafe { x86::to_bf16(&src[..n], &mut dst[..n]) };
            done = n;
        }
        for (d, s) in dst[done..n].iter_mut().zip(&src[done..n]) {
            *d = bf16::from_f32(*s);
        }
    }
}

/// The few-rows product, split over the columns between threads.
fn dots_parallel<T: Element + StoreF32>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    b: &[T],
    bias: Option<&[f32]>,
    c: &mut [T],
) {
    let chunk = column_chunk(n);
    let chunks = n.div_ceil(chunk);
    let cp = SendPtr(c.as_mut_ptr());
    (0..chunks).into_par_iter().for_each(|ci| {
        let j0 = ci * chunk;
        let cols = chunk.min(n - j0);
        let mut out = vec![0f32; m * cols];
        unsafe { T::dots(m, cols, k, a, &b[j0 * k..(j0 + cols) * k], &mut out, cols) };
        for i in 0..m {
            let row = unsafe { std::slice::from_raw_parts_mut(cp.get().add(i * n + j0), cols) };
            let sums = &mut out[i * cols..(i + 1) * cols];
            add_bias(sums, bias.map(|b| &b[j0..j0 + cols]));
            T::store(sums, row);
        }
    });
}

/// Columns per task of a few-row product over `n` columns: about 256 rows of the weight (a few
/// hundred KiB) per task, in a number of equal chunks that divides evenly among rayon's threads
/// (these products are memory bound: a thread left with one extra chunk is the whole product's
/// tail).
pub(crate) fn column_chunk(n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let tasks = n.div_ceil(256).next_multiple_of(threads);
    n.div_ceil(tasks).max(1)
}

fn add_bias(sums: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        sums.iter_mut().zip(b).for_each(|(s, b)| *s += b);
    }
}

/// Packs rows `0..mc` (`row(i)`, at least `k` long, converted by `conv`) as the `A` operand
/// of [`product`]: for each block of `KC` reduction elements (steps `s0..s0+steps`), `MR`-row
/// panels whose element `(p, i, e)` is `row(ip·MR + i)[(s0 + p)·STEP + e]`; rows past `mc` and
/// elements past `k` are zero.
pub fn pack_a<'a, S: Copy + 'a, T: Element>(
    mc: usize,
    k: usize,
    row: impl Fn(usize) -> &'a [S],
    conv: impl Fn(S) -> T,
    out: &mut Vec<T>,
) {
    let mpanels = mc.div_ceil(MR);
    let steps_total = k.div_ceil(T::STEP);
    out.clear();
    out.resize(steps_total * mpanels * MR * T::STEP, T::zero());
    let mut s0 = 0;
    while s0 < steps_total {
        let steps = (KC / T::STEP).min(steps_total - s0);
        let block = &mut out[s0 * mpanels * MR * T::STEP..];
        for ip in 0..mpanels {
            let panel = &mut block[ip * steps * MR * T::STEP..(ip + 1) * steps * MR * T::STEP];
            for i in 0..MR.min(mc - ip * MR) {
                let src = &row(ip * MR + i)[..k];
                let first = s0 * T::STEP;
                let last = ((s0 + steps) * T::STEP).min(k);
                for (q, &x) in src[first..last].iter().enumerate() {
                    let (p, e) = (q / T::STEP, q % T::STEP);
                    panel[(p * MR + i) * T::STEP + e] = conv(x);
                }
            }
        }
        s0 += steps;
    }
}

/// An element type the generic kernels read as f32.
pub(crate) trait Widen: Element {
    /// Element `e` of the packed step at `a` widened, in every lane (`e = 1` when `ODD`, else 0).
    unsafe fn splat<S: F32s, const ODD: bool>(a: *const Self) -> S::V;
    /// From `LANES` packed steps at `b`, element `e` of each, widened.
    unsafe fn vector<S: F32s, const ODD: bool>(b: *const Self) -> S::V;
    /// `LANES` consecutive elements widened (the dot products' rows).
    unsafe fn load<S: F32s>(p: *const Self) -> S::V;
    /// The first `n < LANES` consecutive elements widened, the rest zero.
    unsafe fn load_n<S: F32s>(p: *const Self, n: usize) -> S::V;
    /// `2·LANES` consecutive elements widened into two vectors, in an order that is the same for
    /// every pointer (so that lane-wise products of two such loads pair equal indices).
    #[inline(always)]
    unsafe fn load2<S: F32s>(p: *const Self) -> (S::V, S::V) {
        (Self::load::<S>(p), Self::load::<S>(p.add(S::LANES)))
    }
}

impl Widen for f32 {
    #[inline(always)]
    unsafe fn splat<S: F32s, const ODD: bool>(a: *const f32) -> S::V {
        S::splat(*a)
    }
    #[inline(always)]
    unsafe fn vector<S: F32s, const ODD: bool>(b: *const f32) -> S::V {
        S::load(b)
    }
    #[inline(always)]
    unsafe fn load<S: F32s>(p: *const f32) -> S::V {
        S::load(p)
    }
    #[inline(always)]
    unsafe fn load_n<S: F32s>(p: *const f32, n: usize) -> S::V {
        S::load_n(p, n)
    }
}

impl Widen for bf16 {
    #[inline(always)]
    unsafe fn splat<S: F32s, const ODD: bool>(a: *const bf16) -> S::V {
        S::splat_bf16_half::<ODD>(a)
    }
    #[inline(always)]
    unsafe fn vector<S: F32s, const ODD: bool>(b: *const bf16) -> S::V {
        S::load_bf16_half::<ODD>(b)
    }
    #[inline(always)]
    unsafe fn load<S: F32s>(p: *const bf16) -> S::V {
        S::load_bf16(p)
    }
    #[inline(always)]
    unsafe fn load_n<S: F32s>(p: *const bf16, n: usize) -> S::V {
        S::load_bf16_n(p, n)
    }
    /// The even and the odd elements: one load and a shift or a mask each (widening with
    /// `vpmovzxwd` costs a shuffle per 8 elements, the bottleneck of bf16 decoding at AVX2).
    #[inline(always)]
    unsafe fn load2<S: F32s>(p: *const bf16) -> (S::V, S::V) {
        (S::load_bf16_half::<false>(p), S::load_bf16_half::<true>(p))
    }
}

impl Widen for f16 {
    #[inline(always)]
    unsafe fn splat<S: F32s, const ODD: bool>(a: *const f16) -> S::V {
        S::splat_f16(a)
    }
    #[inline(always)]
    unsafe fn vector<S: F32s, const ODD: bool>(b: *const f16) -> S::V {
        S::load_f16(b)
    }
    #[inline(always)]
    unsafe fn load<S: F32s>(p: *const f16) -> S::V {
        S::load_f16(p)
    }
    #[inline(always)]
    unsafe fn load_n<S: F32s>(p: *const f16, n: usize) -> S::V {
        S::load_f16_n(p, n)
    }
}

/// [`Element::kernel`] on the generic kernels (widening to f32), at the current level.
///
/// # Safety
/// As for [`Element::kernel`].
unsafe fn widened_tile<T: Widen>(
    steps: usize,
    a: *const T,
    lda: usize,
    b: *const T,
    c: *mut f32,
    ldc: usize,
    add: bool,
) {
    let t = Tile {
        steps,
        a,
        lda,
        b,
        c,
        ldc,
        add,
    };
    vector::run(cpu::level(), t).expect("tile kernel at a vector level");
}

/// [`Element::dots`] on the generic kernels, at the current level.
///
/// # Safety
/// As for [`Element::dots`].
unsafe fn widened_dots<T: Widen>(
    rows: usize,
    cols: usize,
    k: usize,
    a: &[T],
    b: &[T],
    out: &mut [f32],
    ldo: usize,
) {
    let d = Dots {
        rows,
        cols,
        k,
        a,
        b,
        out,
        ldo,
    };
    vector::run(cpu::level(), d).expect("dot kernel at a vector level");
}

/// One `MR × NR` tile: `c (+)= Σ_p a(p)·b(p)` (the arguments of [`Element::kernel`]).
struct Tile<T> {
    steps: usize,
    a: *const T,
    lda: usize,
    b: *const T,
    c: *mut f32,
    ldc: usize,
    add: bool,
}

impl<T: Widen> Kernel for Tile<T> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: F32s>(self) {
        let mut r0 = 0;
        while r0 < MR {
            let mut c0 = 0;
            while c0 < NR {
                sub_tile::<S, T>(&self, r0, c0);
                c0 += 2 * S::LANES;
            }
            r0 += S::GEMM_ROWS;
        }
    }
}

/// Rows `r0..r0 + GEMM_ROWS`, columns `c0..c0 + 2·LANES` of a tile, in registers.
#[inline(always)]
unsafe fn sub_tile<S: F32s, T: Widen>(t: &Tile<T>, r0: usize, c0: usize) {
    // Only the first GEMM_ROWS rows are used; the loops over them are unrolled, so the array
    // lives in registers.
    let mut acc = [[S::zero(); 2]; MR];
    let w = T::STEP;
    for p in 0..t.steps {
        let bp = t.b.add((p * NR + c0) * w);
        step::<S, T, false>(t, p, r0, bp, &mut acc);
        if w == 2 {
            step::<S, T, true>(t, p, r0, bp, &mut acc);
        }
    }
    for (i, row) in acc.iter().enumerate().take(S::GEMM_ROWS) {
        let p = t.c.add((r0 + i) * t.ldc + c0);
        let q = p.add(S::LANES);
        if t.add {
            S::store(p, S::add(S::load(p), row[0]));
            S::store(q, S::add(S::load(q), row[1]));
        } else {
            S::store(p, row[0]);
            S::store(q, row[1]);
        }
    }
}

/// Element `e` (1 when `ODD`, else 0) of reduction step `p`, for every row of the sub-tile.
#[inline(always)]
unsafe fn step<S: F32s, T: Widen, const ODD: bool>(
    t: &Tile<T>,
    p: usize,
    r0: usize,
    bp: *const T,
    acc: &mut [[S::V; 2]; MR],
) {
    let w = T::STEP;
    let b0 = T::vector::<S, ODD>(bp);
    let b1 = T::vector::<S, ODD>(bp.add(S::LANES * w));
    for (i, row) in acc.iter_mut().enumerate().take(S::GEMM_ROWS) {
        let ap = if t.lda == 0 {
            t.a.add((p * MR + r0 + i) * w)
        } else {
            t.a.add((r0 + i) * t.lda + p * w)
        };
        let ai = T::splat::<S, ODD>(ap);
        row[0] = S::fmadd(ai, b0, row[0]);
        row[1] = S::fmadd(ai, b1, row[1]);
    }
}

/// Columns of `b` per register tile of the dot-product kernel: two weight rows are read side by
/// side, so that each load of a widened row of `a` feeds two multiply-adds.
const DC: usize = 2;

/// Bytes ahead of the weights being read that the dot-product loops prefetch.
const PREFETCH: usize = 2048;

/// `out[i][j] = Σ_k a[i][k]·b[j][k]` (the arguments of [`Element::dots`]).
struct Dots<'a, T> {
    rows: usize,
    cols: usize,
    k: usize,
    a: &'a [T],
    b: &'a [T],
    out: &'a mut [f32],
    ldo: usize,
}

impl<T: Widen> Kernel for Dots<'_, T> {
    type Output = ();
    /// Register tiles of up to [`DC`] columns × `GEMM_ROWS / 2` rows (AVX-512: 2 × 6, AVX2:
    /// 2 × 3): per `2·LANES` elements, one widened load of `b` per column and one load of `a`
    /// per row feed `DC·R` pairs of multiply-adds (the kernel with one column at a time was
    /// bound by the loads of `a`, one per multiply-add). Every (row, column) pair has the same
    /// two accumulators and the same order whatever tile it falls in, so that a row's result
    /// does not depend on the rows it was computed with: what makes a batched decode step equal
    /// to one sequence's, bit for bit. The rows of `a` are widened once, into f32 in
    /// [`Widen::load2`]'s order, so that only `b` is widened in the loop.
    #[inline(always)]
    unsafe fn run<S: F32s>(self) {
        let (k, l) = (self.k, S::LANES);
        let body = k / (2 * l) * (2 * l);
        let mut wide = vec![0f32; self.rows * body];
        for i in 0..self.rows {
            let (src, dst) = (self.a.as_ptr().add(i * k), wide.as_mut_ptr().add(i * body));
            let mut kk = 0;
            while kk < body {
                let (even, odd) = T::load2::<S>(src.add(kk));
                S::store(dst.add(kk), even);
                S::store(dst.add(kk + l), odd);
                kk += 2 * l;
            }
        }
        let rows_per_tile = S::GEMM_ROWS / 2;
        let t = TileArgs {
            k,
            body,
            w: wide.as_ptr(),
            a: self.a.as_ptr(),
            b: self.b.as_ptr(),
        };
        let mut j = 0;
        while j < self.cols {
            let nc = DC.min(self.cols - j);
            let mut i = 0;
            while i < self.rows {
                let nr = rows_per_tile.min(self.rows - i);
                let out = self.out.as_mut_ptr().add(i * self.ldo + j);
                macro_rules! tile {
                    ($c:literal, $($r:literal)+) => {
                        match nr {
                            $($r => dot_tile::<S, T, $c, $r>(&t, i, j, out, self.ldo),)+
                            _ => unreachable!("at most GEMM_ROWS / 2 rows"),
                        }
                    };
                }
                if nc == DC {
                    tile!(2, 1 2 3 4 5 6);
                } else {
                    tile!(1, 1 2 3 4 5 6);
                }
                i += nr;
            }
            j += nc;
        }
    }
}

/// The operands of [`dot_tile`]: `w` holds the rows of `a` widened over `body` elements,
/// `body` apart; `a` the rows themselves (for the tail) and `b` the columns, `k` apart.
struct TileArgs<T> {
    k: usize,
    body: usize,
    w: *const f32,
    a: *const T,
    b: *const T,
}

/// Elements `from..k` of one row of `a` and one of `b`, widened straight from the operands
/// (fewer than `2·LANES`), added into `s`.
#[inline(always)]
unsafe fn dot_tail<S: F32s, T: Widen>(
    from: usize,
    k: usize,
    a: *const T,
    b: *const T,
    mut s: S::V,
) -> S::V {
    let l = S::LANES;
    let mut kk = from;
    while kk + l <= k {
        s = S::fmadd(T::load::<S>(a.add(kk)), T::load::<S>(b.add(kk)), s);
        kk += l;
    }
    if kk < k {
        let n = k - kk;
        s = S::fmadd(
            T::load_n::<S>(a.add(kk), n),
            T::load_n::<S>(b.add(kk), n),
            s,
        );
    }
    s
}

/// Rows `i0..i0 + R` times columns `j0..j0 + C`, stored at `out` (row stride `ldo`). Each pair
/// has two accumulators, one for each half of a `2·LANES` block (so that a single pair's
/// multiply-adds overlap their latency), then the tail on the second, then the sum of the two:
/// the same for every `C` and `R`.
#[inline(always)]
unsafe fn dot_tile<S: F32s, T: Widen, const C: usize, const R: usize>(
    t: &TileArgs<T>,
    i0: usize,
    j0: usize,
    out: *mut f32,
    ldo: usize,
) {
    let (l, k, body) = (S::LANES, t.k, t.body);
    let cols: [*const T; C] = std::array::from_fn(|c| t.b.add((j0 + c) * k));
    let w: [*const f32; R] = std::array::from_fn(|r| t.w.add((i0 + r) * body));
    let mut s = [[[S::zero(); 2]; C]; R];
    let mut kk = 0;
    while kk < body {
        for col in cols {
            for line in (0..2 * l * size_of::<T>()).step_by(64) {
                vector::prefetch(col.add(kk), PREFETCH + line);
            }
        }
        let bv: [(S::V, S::V); C] = std::array::from_fn(|c| T::load2::<S>(cols[c].add(kk)));
        for (r, acc) in s.iter_mut().enumerate() {
            let (w0, w1) = (S::load(w[r].add(kk)), S::load(w[r].add(kk + l)));
            for (c, pair) in acc.iter_mut().enumerate() {
                pair[0] = S::fmadd(w0, bv[c].0, pair[0]);
                pair[1] = S::fmadd(w1, bv[c].1, pair[1]);
            }
        }
        kk += 2 * l;
    }
    for (r, acc) in s.iter().enumerate() {
        let ar = t.a.add((i0 + r) * k);
        for (c, pair) in acc.iter().enumerate() {
            let tail = dot_tail::<S, T>(body, k, ar, cols[c], pair[1]);
            *out.add(r * ldo + c) = S::sum(S::add(pair[0], tail));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX512-BF16 kernels (`vdpbf16ps` has no counterpart at the other levels).
    use std::arch::x86_64::*;

    use half::bf16;

    use super::{MR, NR};

    /// Rows at once in the AVX512-BF16 dot-product kernel.
    const DC: usize = 4;

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn kernel_bf16(
        steps: usize,
        a: *const bf16,
        lda: usize,
        b: *const bf16,
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let mut b = b as *const u32;
        if lda == 0 {
            let mut a = a as *const u32;
            for _ in 0..steps {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b as *const _));
                let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(16) as *const _));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(i) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
        } else {
            let rows: [*const u32; MR] = std::array::from_fn(|i| a.add(i * lda) as *const u32);
            for p in 0..steps {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b as *const _));
                let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(16) as *const _));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*rows[i].add(p) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
                }
                b = b.add(NR);
            }
        }
        store_tile(&acc, c, ldc, add);
    }

    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    pub unsafe fn to_bf16(src: &[f32], dst: &mut [bf16]) {
        let n = src.len().min(dst.len());
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut i16);
        let mut i = 0;
        while i + 16 <= n {
            let v: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(s.add(i))));
            _mm256_storeu_si256(d.add(i) as *mut __m256i, v);
            i += 16;
        }
        if i < n {
            let m: __mmask16 = ((1u32 << (n - i)) - 1) as u16;
            let v: __m256i =
                std::mem::transmute(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s.add(i))));
            _mm256_mask_storeu_epi16(d.add(i), m, v);
        }
    }

    #[inline(always)]
    unsafe fn store_tile(acc: &[[__m512; 2]; MR], c: *mut f32, ldc: usize, add: bool) {
        for (i, row) in acc.iter().enumerate() {
            let p = c.add(i * ldc);
            if add {
                _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), row[0]));
                _mm512_storeu_ps(p.add(16), _mm512_add_ps(_mm512_loadu_ps(p.add(16)), row[1]));
            } else {
                _mm512_storeu_ps(p, row[0]);
                _mm512_storeu_ps(p.add(16), row[1]);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn dots_bf16(
        rows: usize,
        cols: usize,
        k: usize,
        a: &[bf16],
        b: &[bf16],
        out: &mut [f32],
        ldo: usize,
    ) {
        let full = k / 32 * 32;
        let rem = k % 32;
        // Whole 16-bit pairs of the tail, then an odd last element through a zero-padded pair.
        let mask: __mmask32 = if rem == 0 {
            0
        } else {
            ((1u64 << rem) - 1) as u32
        };
        // One column at a time, start to end (one sequential stream of weights, as in the
        // generic kernel); four accumulators per row, up to four rows, each row's arithmetic
        // the same whatever the number of rows (a batched decode step equals one sequence's).
        let load = |p: *const i16, kk: usize| -> __m512bh {
            std::mem::transmute(_mm512_loadu_si512(p.add(kk) as *const _))
        };
        let load_tail = |p: *const i16, kk: usize| -> __m512bh {
            std::mem::transmute(_mm512_maskz_loadu_epi16(mask, p.add(kk)))
        };
        let a = a.as_ptr() as *const i16;
        for j in 0..cols {
            let bj = b.as_ptr().add(j * k) as *const i16;
            let mut i = 0;
            while i < rows {
                let nr = DC.min(rows - i);
                let ai = a.add(i * k);
                let mut acc = [[_mm512_setzero_ps(); 4]; DC];
                let mut kk = 0;
                while kk + 128 <= full {
                    for u in 0..4 {
                        let o = kk + 32 * u;
                        let bv = load(bj, o);
                        for (r, s) in acc.iter_mut().enumerate().take(nr) {
                            s[u] = _mm512_dpbf16_ps(s[u], load(ai.add(r * k), o), bv);
                        }
                    }
                    kk += 128;
                }
                while kk < full {
                    let bv = load(bj, kk);
                    for (r, s) in acc.iter_mut().enumerate().take(nr) {
                        s[0] = _mm512_dpbf16_ps(s[0], load(ai.add(r * k), kk), bv);
                    }
                    kk += 32;
                }
                if mask != 0 {
                    let bv = load_tail(bj, kk);
                    for (r, s) in acc.iter_mut().enumerate().take(nr) {
                        s[0] = _mm512_dpbf16_ps(s[0], load_tail(ai.add(r * k), kk), bv);
                    }
                }
                for (r, s) in acc.iter().enumerate().take(nr) {
                    let v = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
                    out[(i + r) * ldo + j] = _mm512_reduce_add_ps(v);
                }
                i += nr;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[j * k + p] as f64)
                    .sum();
            }
        }
        c
    }

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Shapes that hit every edge: partial register tiles in both directions, a reduction that
    /// is not a multiple of the block or of the bf16 pair, the dot-product path (fewer than
    /// `MIN_ROWS_PACKED` rows: one row with the dot kernels' unrolled body and every tail, k =
    /// 300 and 97, and row and column tiles with remainders), and more than one row block.
    const SHAPES: [(usize, usize, usize); 12] = [
        (1, 1, 1),
        (1, 19, 300),
        (5, 21, 200),
        (2, 9, 97),
        (3, 37, 45),
        (7, 130, 33),
        (8, 32, 128),
        (13, 33, 129),
        (17, 33, 129),
        (250, 70, 300),
        (241, 5, 7),
        (500, 96, 257),
    ];

    /// A row of a few-row product (fewer than [`MIN_ROWS_PACKED`] rows) has the same bits as
    /// the same row alone, whatever rows share the pass: what lets a batched decode step equal
    /// each sequence's own step.
    #[test]
    fn few_row_products_do_not_depend_on_the_other_rows() {
        cpu::for_each_level(|level| {
            for (n, k) in [(19, 300), (9, 97), (40, 896), (3, 32)] {
                let b = data(n * k, 5);
                for m in [2, 3, 5, 7, 8, 11, MIN_ROWS_PACKED - 1] {
                    let a = data(m * k, 6 + m as u64);
                    rows_alone_agree::<f32>(level, m, n, k, &a, &b, |x| x);
                    rows_alone_agree::<bf16>(level, m, n, k, &a, &b, bf16::from_f32);
                    rows_alone_agree::<f16>(level, m, n, k, &a, &b, f16::from_f32);
                }
            }
        });
    }

    fn rows_alone_agree<T: Element + StoreF32>(
        level: KernelLevel,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
        conv: fn(f32) -> T,
    ) {
        let a: Vec<T> = a.iter().map(|&x| conv(x)).collect();
        let b: Vec<T> = b.iter().map(|&x| conv(x)).collect();
        let mut all = vec![T::zero(); m * n];
        if !gemm_nt(m, n, k, &a, &b, &mut all) {
            assert_eq!(level, KernelLevel::Reference);
            return;
        }
        for i in 0..m {
            let mut one = vec![T::zero(); n];
            assert!(gemm_nt(1, n, k, &a[i * k..(i + 1) * k], &b, &mut one));
            for j in 0..n {
                let (x, y) = (all[i * n + j].to_f32(), one[j].to_f32());
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "{level} {} ({m},{n},{k}) row {i} col {j}: {x} with the others, {y} alone",
                    std::any::type_name::<T>()
                );
            }
        }
    }

    /// At every level this CPU has (at the reference level the product declines).
    #[test]
    fn f32_matches_f64_reference() {
        cpu::for_each_level(f32_matches_f64_reference_at);
    }

    fn f32_matches_f64_reference_at(level: KernelLevel) {
        for (m, n, k) in SHAPES {
            let (a, b) = (data(m * k, 1), data(n * k, 2));
            let mut c = vec![f32::NAN; m * n];
            if !gemm_nt(m, n, k, &a, &b, &mut c) {
                assert_eq!(level, KernelLevel::Reference);
                return;
            }
            let want = reference(m, n, k, &a, &b);
            for (idx, (got, want)) in c.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (k as f64).sqrt() + 1e-6;
                assert!(
                    (*got as f64 - want).abs() <= tol,
                    "{level} ({m},{n},{k})[{idx}]: {got} vs {want}"
                );
            }
        }
    }

    /// f16 at every level: widened to f32 in registers.
    #[test]
    fn f16_matches_f64_reference_of_the_rounded_inputs() {
        cpu::for_each_level(|level| {
            for (m, n, k) in SHAPES {
                let a: Vec<f16> = data(m * k, 5).into_iter().map(f16::from_f32).collect();
                let b: Vec<f16> = data(n * k, 6).into_iter().map(f16::from_f32).collect();
                let mut c = vec![f16::NAN; m * n];
                if !gemm_nt(m, n, k, &a, &b, &mut c) {
                    assert_eq!(level, KernelLevel::Reference);
                    return;
                }
                let af: Vec<f32> = a.iter().map(|x| x.to_f32()).collect();
                let bf: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
                let want = reference(m, n, k, &af, &bf);
                for (idx, (got, want)) in c.iter().zip(&want).enumerate() {
                    // One f16 rounding of the result (2^-11 relative) plus f32 accumulation.
                    let tol = want.abs() / 2048.0 + 1e-5 * (k as f64).sqrt() + 1e-6;
                    let got = got.to_f32() as f64;
                    assert!(
                        (got - want).abs() <= tol,
                        "{level} ({m},{n},{k})[{idx}]: {got} vs {want}"
                    );
                }
            }
        });
    }

    /// The widening bf16 kernels, at every vector level, also where `vdpbf16ps` would be used.
    #[test]
    fn widened_bf16_kernels_match_f64_reference() {
        for level in cpu::available() {
            for (m, n, k) in [(13, 33, 129), (3, 37, 45), (12, 64, 7)] {
                let a: Vec<bf16> = data(m * k, 7).into_iter().map(bf16::from_f32).collect();
                let b: Vec<bf16> = data(n * k, 8).into_iter().map(bf16::from_f32).collect();
                let af: Vec<f32> = a.iter().map(|x| x.to_f32()).collect();
                let bf: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
                let want = reference(m, n, k, &af, &bf);
                // The dot products straight from the rows.
                let mut out = vec![f32::NAN; m * n];
                let d = Dots {
                    rows: m,
                    cols: n,
                    k,
                    a: &a,
                    b: &b,
                    out: &mut out,
                    ldo: n,
                };
                // SAFETY: an available level; the operands are (m, k), (n, k), (m, n).
                if unsafe { vector::run(level, d) }.is_none() {
                    continue;
                }
                // One tile of the packed product.
                let bp = PackedB::new(n, k, false, |j, kk| b[j * k + kk]);
                let mut ap = Vec::new();
                pack_a(m, k, |i| &a[i * k..(i + 1) * k], |x| x, &mut ap);
                let mut acc = vec![f32::NAN; m.next_multiple_of(MR) * NR];
                let steps = k.div_ceil(2).min(KC / 2);
                let t = Tile {
                    steps,
                    a: ap.as_ptr(),
                    lda: 0,
                    b: bp.panel(0, 0),
                    c: acc.as_mut_ptr(),
                    ldc: NR,
                    add: false,
                };
                // SAFETY: the packed panels hold `steps` steps of one tile; acc holds the tile.
                unsafe { vector::run(level, t) };
                let kk = (steps * 2).min(k);
                let partial = reference(m, n, kk, &trim(&af, m, k, kk), &trim(&bf, n, k, kk));
                for i in 0..m.min(MR) {
                    for j in 0..n.min(NR) {
                        let tol = 1e-5 * (k as f64).sqrt() + 1e-6;
                        let (g, w) = (out[i * n + j] as f64, want[i * n + j]);
                        assert!((g - w).abs() <= tol, "{level} dots ({m},{n},{k}) {i},{j}");
                        let (g, w) = (acc[i * NR + j] as f64, partial[i * n + j]);
                        assert!((g - w).abs() <= tol, "{level} tile ({m},{n},{k}) {i},{j}");
                    }
                }
            }
        }
    }

    /// The first `kk` columns of each row of a (rows, k) matrix.
    fn trim(x: &[f32], rows: usize, k: usize, kk: usize) -> Vec<f32> {
        (0..rows)
            .flat_map(|i| x[i * k..i * k + kk].to_vec())
            .collect()
    }

    /// At every level (AVX-512: `vdpbf16ps` where the CPU has it; AVX2: widened to f32).
    #[test]
    fn bf16_matches_f64_reference_of_the_rounded_inputs() {
        cpu::for_each_level(bf16_matches_f64_reference_at);
    }

    fn bf16_matches_f64_reference_at(level: KernelLevel) {
        for (m, n, k) in SHAPES {
            let a: Vec<bf16> = data(m * k, 3).into_iter().map(bf16::from_f32).collect();
            let b: Vec<bf16> = data(n * k, 4).into_iter().map(bf16::from_f32).collect();
            let mut c = vec![bf16::NAN; m * n];
            if !gemm_nt(m, n, k, &a, &b, &mut c) {
                assert_eq!(level, KernelLevel::Reference);
                return;
            }
            let af: Vec<f32> = a.iter().map(|x| x.to_f32()).collect();
            let bf: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
            let want = reference(m, n, k, &af, &bf);
            for (idx, (got, want)) in c.iter().zip(&want).enumerate() {
                // One bf16 rounding of the result (2^-8 relative) plus f32 accumulation.
                let tol = want.abs() / 256.0 + 1e-5 * (k as f64).sqrt() + 1e-6;
                let got = got.to_f32() as f64;
                assert!(
                    (got - want).abs() <= tol,
                    "{level} ({m},{n},{k})[{idx}]: {got} vs {want}"
                );
            }
        }
    }
}
