//! `C = A·Bᵀ` on the CPU with AVX-512 micro-kernels: the fast path beside candle's matmul for
//! the products that dominate the model (every `Linear` with more than a few rows).
//!
//! Both operands are row-major along the reduction axis (`A`: (m, k) activations, `B`: (n, k)
//! weights in PyTorch's `[out, in]` layout), which is how a linear layer stores them. The loop
//! nest is the usual BLIS one: `B` is packed once per call into `NR`-column panels, `A` into
//! `MR`-row panels per `(MC, KC)` block, and an `MR × NR` register tile of f32 accumulators is
//! updated with one broadcast of `A` times two `NR/2`-wide vectors of `B` per reduction step.
//!
//! - f32: `vfmadd231ps`, one multiply-add per element pair.
//! - bf16: `vdpbf16ps`, which multiplies two adjacent reduction elements per f32 lane and adds
//!   both products to the accumulator in f32; operands are packed in such pairs. The result is
//!   rounded to bf16 once, at the end (as oneDNN's bf16 matmul does for torch).
//!
//! Summation order differs from candle's `gemm` (and from torch's): results agree to f32
//! rounding, which the parity tests' tolerances are chosen for. Machines without AVX-512 (or
//! without AVX512-BF16 for bf16) get `false` back and the caller uses candle's matmul.

use half::bf16;
use rayon::prelude::*;

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
/// Below this many rows, packing `B` costs as much as the product: the dot-product kernel runs.
pub const MIN_ROWS_PACKED: usize = 8;

/// Whether this CPU runs the f32 kernels (AVX-512 F and BW: every AVX-512 CPU since Skylake-X).
pub fn has_f32() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs the bf16 kernels.
pub fn has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_f32() && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// An element type with a micro-kernel.
pub trait Element: Copy + Send + Sync + 'static {
    /// Reduction elements per packed step (1 for f32, 2 for bf16 pairs).
    const STEP: usize;
    fn zero() -> Self;
    fn from_f32(x: f32) -> Self;
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
    fn zero() -> Self {
        0.0
    }
    fn from_f32(x: f32) -> Self {
        x
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
        #[cfg(target_arch = "x86_64")]
        x86::kernel_f32(steps, a, lda, b, c, ldc, add);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no f32 kernel here {steps} {a:?} {lda} {b:?} {c:?} {ldc} {add}");
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
        #[cfg(target_arch = "x86_64")]
        x86::dots_f32(rows, cols, k, a, b, out, ldo);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "no f32 kernel {rows} {cols} {k} {} {} {} {ldo}",
            a.len(),
            b.len(),
            out.len()
        );
    }
}

impl Element for bf16 {
    const STEP: usize = 2;
    fn zero() -> Self {
        bf16::ZERO
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
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
        x86::kernel_bf16(steps, a, lda, b, c, ldc, add);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no bf16 kernel here {steps} {a:?} {lda} {b:?} {c:?} {ldc} {add}");
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
        x86::dots_bf16(rows, cols, k, a, b, out, ldo);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "no bf16 kernel {rows} {cols} {k} {} {} {} {ldo}",
            a.len(),
            b.len(),
            out.len()
        );
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
    let bp = PackedB::new(n, k, true, |j, kk| b[j * k + kk]);
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
            |x| x,
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
    true
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

impl StoreF32 for bf16 {
    /// Round to nearest even, 16 at a time with `vcvtneps2bf16` where the CPU has it.
    fn store(src: &[f32], dst: &mut [bf16]) {
        let n = src.len().min(dst.len());
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if has_bf16() {
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
    // Column chunks of about 256 rows of b (a few hundred KiB) per task, in a number of equal
    // chunks that divides evenly among the threads (these products are memory bound: a thread
    // left with one extra chunk is the whole product's tail).
    let threads = rayon::current_num_threads().max(1);
    let tasks = n.div_ceil(256).next_multiple_of(threads);
    let chunk = n.div_ceil(tasks).max(1);
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::{MR, NR};

    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel_f32(
        steps: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let mut b = b;
        if lda == 0 {
            let mut a = a;
            for _ in 0..steps {
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(16));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i));
                    row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
        } else {
            let rows: [*const f32; MR] = std::array::from_fn(|i| a.add(i * lda));
            for p in 0..steps {
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(16));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*rows[i].add(p));
                    row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                }
                b = b.add(NR);
            }
        }
        store_tile(&acc, c, ldc, add);
    }

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

    /// Columns at once in the dot-product kernel.
    const DC: usize = 4;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots_f32(
        rows: usize,
        cols: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
        out: &mut [f32],
        ldo: usize,
    ) {
        let full = k / 16 * 16;
        let mask: __mmask16 = if k.is_multiple_of(16) {
            0
        } else {
            (1u32 << (k % 16)) as u16 - 1
        };
        for i in 0..rows {
            let ar = a.as_ptr().add(i * k);
            let mut j = 0;
            while j < cols {
                let nc = DC.min(cols - j);
                let mut acc = [_mm512_setzero_ps(); DC];
                let mut kk = 0;
                while kk < full {
                    let av = _mm512_loadu_ps(ar.add(kk));
                    for (c, s) in acc.iter_mut().enumerate().take(nc) {
                        let bv = _mm512_loadu_ps(b.as_ptr().add((j + c) * k + kk));
                        *s = _mm512_fmadd_ps(av, bv, *s);
                    }
                    kk += 16;
                }
                if mask != 0 {
                    let av = _mm512_maskz_loadu_ps(mask, ar.add(kk));
                    for (c, s) in acc.iter_mut().enumerate().take(nc) {
                        let bv = _mm512_maskz_loadu_ps(mask, b.as_ptr().add((j + c) * k + kk));
                        *s = _mm512_fmadd_ps(av, bv, *s);
                    }
                }
                for (c, s) in acc.iter().enumerate().take(nc) {
                    out[i * ldo + j + c] = _mm512_reduce_add_ps(*s);
                }
                j += nc;
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
        for i in 0..rows {
            let ar = a.as_ptr().add(i * k) as *const i16;
            let mut j = 0;
            while j < cols {
                let nc = DC.min(cols - j);
                let mut acc = [_mm512_setzero_ps(); DC];
                let mut kk = 0;
                while kk < full {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(ar.add(kk) as *const _));
                    for (c, s) in acc.iter_mut().enumerate().take(nc) {
                        let bp = b.as_ptr().add((j + c) * k + kk) as *const _;
                        let bv: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp));
                        *s = _mm512_dpbf16_ps(*s, av, bv);
                    }
                    kk += 32;
                }
                if mask != 0 {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_maskz_loadu_epi16(mask, ar.add(kk)));
                    for (c, s) in acc.iter_mut().enumerate().take(nc) {
                        let bp = b.as_ptr().add((j + c) * k + kk) as *const i16;
                        let bv: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi16(mask, bp));
                        *s = _mm512_dpbf16_ps(*s, av, bv);
                    }
                }
                for (c, s) in acc.iter().enumerate().take(nc) {
                    out[i * ldo + j + c] = _mm512_reduce_add_ps(*s);
                }
                j += nc;
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
    /// is not a multiple of the block or of the bf16 pair, the dot-product path (m < 8), and
    /// more than one row block.
    const SHAPES: [(usize, usize, usize); 8] = [
        (1, 1, 1),
        (3, 37, 45),
        (7, 130, 33),
        (8, 32, 128),
        (13, 33, 129),
        (250, 70, 300),
        (241, 5, 7),
        (500, 96, 257),
    ];

    #[test]
    fn f32_matches_f64_reference() {
        if !has_f32() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        for (m, n, k) in SHAPES {
            let (a, b) = (data(m * k, 1), data(n * k, 2));
            let mut c = vec![f32::NAN; m * n];
            assert!(gemm_nt(m, n, k, &a, &b, &mut c));
            let want = reference(m, n, k, &a, &b);
            for (idx, (got, want)) in c.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (k as f64).sqrt() + 1e-6;
                assert!(
                    (*got as f64 - want).abs() <= tol,
                    "({m},{n},{k})[{idx}]: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn bf16_matches_f64_reference_of_the_rounded_inputs() {
        if !has_bf16() {
            eprintln!("skipped: no AVX512-BF16 on this CPU");
            return;
        }
        for (m, n, k) in SHAPES {
            let a: Vec<bf16> = data(m * k, 3).into_iter().map(bf16::from_f32).collect();
            let b: Vec<bf16> = data(n * k, 4).into_iter().map(bf16::from_f32).collect();
            let mut c = vec![bf16::NAN; m * n];
            assert!(gemm_nt(m, n, k, &a, &b, &mut c));
            let af: Vec<f32> = a.iter().map(|x| x.to_f32()).collect();
            let bf: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
            let want = reference(m, n, k, &af, &bf);
            for (idx, (got, want)) in c.iter().zip(&want).enumerate() {
                // One bf16 rounding of the result (2^-8 relative) plus f32 accumulation.
                let tol = want.abs() / 256.0 + 1e-5 * (k as f64).sqrt() + 1e-6;
                let got = got.to_f32() as f64;
                assert!(
                    (got - want).abs() <= tol,
                    "({m},{n},{k})[{idx}]: {got} vs {want}"
                );
            }
        }
    }
}
