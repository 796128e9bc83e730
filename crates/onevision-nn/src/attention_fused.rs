//! The fast CPU path of [`crate::attention::attention`]: scores, softmax and the weighted sum
//! of values for a block of query rows at a time, on [`crate::gemm_nt`]'s kernels.
//!
//! The reference path materializes the f32 score matrix of up to 1024 queries × all keys per
//! layer (hundreds of MiB on a long prompt: fresh pages the kernel has to zero), converts it,
//! masks it with a separate tensor and runs a scalar `exp`. Here one task takes `QB` query rows
//! of one head: `S = q·kᵀ` over the keys they may see (L2-sized), `softmax(S·scale)` in place
//! with a vectorized `exp`, then `S·v`. Keys and values are packed once per key/value head and
//! shared by the `h / kvh` query heads of the group. The arithmetic is transformers' eager
//! attention (scores scaled after the product, softmax in f32, probabilities rounded to the
//! compute dtype before the product with the values); only the summation order and `exp`'s last
//! bit differ.

use candle_core::{DType, Tensor};
use half::bf16;
use rayon::prelude::*;

use crate::attention::{rows_in_place, Mask};
use crate::cpu;
use crate::gemm_nt::{
    self, pack_a, product, ALayout, Element, PackedB, SendPtr, StoreF32, Widen, TILE_COLS,
    TILE_ROWS,
};
use crate::simd::exp;
use crate::vector::{self, F32s, Kernel};

/// Query rows per task (a multiple of the register tile's rows).
const QB: usize = 4 * TILE_ROWS;
/// Fewer query rows than this (decoding) take the unpacked path: packing the keys would cost
/// as much as the product, so scores are dot products straight from the cache's rows.
pub const MIN_QUERIES: usize = 16;

/// Element types with a fused path.
pub(crate) trait FusedElement: Element + Widen + StoreF32 + candle_core::WithDType {
    /// `out = Σ_j p[j]·v[j·d..(j + 1)·d]`.
    ///
    /// # Safety
    /// The CPU has [`Element::available`]'s features; `v` holds `p.len()` rows of `d`.
    unsafe fn weighted_rows(p: &[f32], v: &[Self], d: usize, out: &mut [f32]) {
        let k = WeightedRows { p, v, d, out };
        vector::run(cpu::level(), k).expect("weighted rows at a vector level");
    }
}

impl FusedElement for f32 {}

impl FusedElement for bf16 {}

/// The fused attention, or `None` where it does not apply: not on the CPU, a dtype or CPU
/// without kernels, or inputs that take part in a gradient (the reference path is the
/// differentiable one).
///
/// # Shapes
/// `q`: (b, h, t, d); `k`, `v`: (b, kvh, s, d), any strides with `d` contiguous -> (b, h, t, d)
/// (for many queries a transposed view of a contiguous (b, t, h, d) tensor)
pub fn attention_fused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Mask,
) -> candle_core::Result<Option<Tensor>> {
    let (_, _, t, _) = q.dims4()?;
    let applies = q.device().is_cpu()
        && q.dtype() == k.dtype()
        && q.dtype() == v.dtype()
        && !(q.track_op() || k.track_op() || v.track_op())
        && match q.dtype() {
            DType::F32 => gemm_nt::has_f32(),
            DType::BF16 => gemm_nt::has_bf16(),
            _ => false,
        };
    if !applies {
        return Ok(None);
    }
    match q.dtype() {
        DType::F32 if t >= MIN_QUERIES => run::<f32>(q, k, v, scale, mask).map(Some),
        DType::BF16 if t >= MIN_QUERIES => run::<bf16>(q, k, v, scale, mask).map(Some),
        DType::F32 => {
            run_few::<f32>(q, &rows_in_place(k)?, &rows_in_place(v)?, scale, mask).map(Some)
        }
        DType::BF16 => {
            run_few::<bf16>(q, &rows_in_place(k)?, &rows_in_place(v)?, scale, mask).map(Some)
        }
        _ => Ok(None),
    }
}

/// Where element `(b, h, s, 0)` of a 4-d view lies and its strides, the last axis contiguous.
pub(crate) struct View<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) start: usize,
    pub(crate) stride: [usize; 3],
}

impl<'a, T> View<'a, T> {
    pub(crate) fn row(&self, b: usize, h: usize, s: usize) -> usize {
        self.start + b * self.stride[0] + h * self.stride[1] + s * self.stride[2]
    }
}

impl<'a, T: candle_core::WithDType> View<'a, T> {
    /// The view of a 4-d CPU storage with its last axis contiguous.
    pub(crate) fn from_parts(
        storage: &'a candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<Self> {
        let st = layout.stride();
        if st.len() != 4 || st[3] != 1 {
            candle_core::bail!(
                "fused attention: the head axis of {:?} is not contiguous",
                layout.shape()
            );
        }
        Ok(View {
            data: T::cpu_storage_as_slice(storage)?,
            start: layout.start_offset(),
            stride: [st[0], st[1], st[2]],
        })
    }
}

/// The sizes of one attention call: `q` (b, h, t, d) against `k`, `v` (b, kvh, s, d).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub b: usize,
    pub h: usize,
    pub kvh: usize,
    pub t: usize,
    pub s: usize,
    pub d: usize,
}

fn with_view<T: FusedElement, R>(
    x: &Tensor,
    f: impl FnOnce(View<'_, T>) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = x.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => f(View::from_parts(cpu, layout)?),
        _ => candle_core::bail!("fused attention: not a CPU tensor"),
    }
}

fn run<T: FusedElement>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Mask,
) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (_, kvh, s, _) = k.dims4()?;
    let dims = Dims { b, h, kvh, t, s, d };
    let out = with_view::<T, _>(q, |qv| {
        with_view::<T, _>(k, |kv| {
            with_view::<T, _>(v, |vv| {
                Ok(run_views(&qv, &kv, &vv, dims, scale, mask, None))
            })
        })
    })?;
    // Written as (b, t, h, d): the caller's transpose back to (b, t, h·d) is then free.
    Tensor::from_vec(out, (b, t, h, d), q.device())?.transpose(1, 2)
}

/// The many-query attention on views; returns the output laid out (b, t, h, d). With `lse`
/// ((b, h, t) f32), each row's log-sum-exp of its scaled scores is written there too (what a
/// backward needs to recompute the probabilities).
pub(crate) fn run_views<T: FusedElement>(
    qv: &View<'_, T>,
    kv: &View<'_, T>,
    vv: &View<'_, T>,
    dims: Dims,
    scale: f64,
    mask: Mask,
    lse: Option<&mut [f32]>,
) -> Vec<T> {
    if T::pack_as_f32() {
        // The probabilities are rounded to `T` and kept as f32 (exact), as the reference
        // rounds them before the product with the values.
        let round = |src: &[f32], dst: &mut [f32]| {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = <T as Element>::from_f32(x).to_f32();
            }
        };
        run_packed(qv, kv, vv, dims, scale, mask, lse, |x: T| x.to_f32(), round)
    } else {
        run_packed(qv, kv, vv, dims, scale, mask, lse, |x: T| x, T::store)
    }
}

/// [`run_views`] with the operands of both products packed as `P` (converted by `conv`) and
/// the probabilities written as `P` by `probs`.
#[allow(clippy::too_many_arguments)]
fn run_packed<T: FusedElement, P: Element>(
    qv: &View<'_, T>,
    kv: &View<'_, T>,
    vv: &View<'_, T>,
    dims: Dims,
    scale: f64,
    mask: Mask,
    lse: Option<&mut [f32]>,
    conv: impl Fn(T) -> P + Sync,
    probs: impl Fn(&[f32], &mut [P]) + Sync,
) -> Vec<T> {
    let Dims { b, h, kvh, t, s, d } = dims;
    let rep = h / kvh;
    let visible = |pos: usize| mask.visible_keys(pos, s);
    let s_max = visible(t - 1);
    let scale = scale as f32;
    let mut out = vec![<T as Element>::zero(); b * h * t * d];
    let lsep = lse.map(|l| {
        assert_eq!(l.len(), b * h * t, "log-sum-exp buffer");
        SendPtr(l.as_mut_ptr())
    });
    // Keys as the (s, d) operand of q·kᵀ, values transposed as the (d, s) operand
    // of p·v, once per key/value head.
    let packed: Vec<(PackedB<P>, PackedB<P>)> = (0..b * kvh)
        .into_par_iter()
        .map(|bg| {
            let (bi, g) = (bg / kvh, bg % kvh);
            let keys = PackedB::new(s_max, d, false, |j, kk| {
                conv(kv.data[kv.row(bi, g, j) + kk])
            });
            let values = PackedB::new(d, s_max, false, |j, kk| {
                conv(vv.data[vv.row(bi, g, kk) + j])
            });
            (keys, values)
        })
        .collect();
    let blocks = t.div_ceil(QB);
    let outp = SendPtr(out.as_mut_ptr());
    (0..b * h * blocks)
        .into_par_iter()
        .for_each_init(Scratch::default, |scr, task| {
            let (bh, blk) = (task / blocks, task % blocks);
            let (bi, hq) = (bh / h, bh % h);
            let (keys, values) = &packed[bi * kvh + hq / rep];
            let q0 = blk * QB;
            let qb = QB.min(t - q0);
            let s_blk = visible(q0 + qb - 1);
            let ld = s_blk.next_multiple_of(TILE_COLS);
            scr.scores.resize(qb.next_multiple_of(TILE_ROWS) * ld, 0.0);
            let qrow = |i: usize| {
                let at = qv.row(bi, hq, q0 + i);
                &qv.data[at..at + d]
            };
            pack_a(qb, d, qrow, &conv, &mut scr.packed);
            let packed_q = ALayout::Packed(&scr.packed);
            product(packed_q, qb, d, keys, 0, s_blk, &mut scr.scores, ld);
            // Probabilities in the compute dtype, row-major, zero past each row's
            // visible keys and in the padding rows: the A operand of p·v in place.
            let rows = qb.next_multiple_of(TILE_ROWS);
            scr.probs.clear();
            scr.probs.resize(rows * ld, P::zero());
            for i in 0..qb {
                let row = &mut scr.scores[i * ld..i * ld + s_blk];
                let vis = visible(q0 + i);
                let l = softmax_scaled(&mut row[..vis], scale);
                if let Some(p) = &lsep {
                    // SAFETY: each task owns rows q0..q0+qb of head (bi, hq) of `lse`.
                    unsafe { *p.get().add(bh * t + q0 + i) = l };
                }
                probs(&row[..vis], &mut scr.probs[i * ld..i * ld + vis]);
            }
            let ldo = d.next_multiple_of(TILE_COLS);
            scr.out.resize(rows * ldo, 0.0);
            let probs = ALayout::Rows {
                data: &scr.probs,
                ld,
            };
            product(probs, qb, s_blk, values, 0, d, &mut scr.out, ldo);
            for i in 0..qb {
                let at = ((bi * t + q0 + i) * h + hq) * d;
                // SAFETY: each task owns rows q0..q0+qb of head (bi, hq) of `out`, laid out
                // (b, t, h, d).
                let dst = unsafe { std::slice::from_raw_parts_mut(outp.get().add(at), d) };
                T::store(&scr.out[i * ldo..i * ldo + d], dst);
            }
        });
    out
}

/// Attention for a few queries (decoding): per key/value head, the `h / kvh · t` query rows'
/// scores are dot products with the keys where they lie, and the output rows weighted sums of
/// the value rows.
fn run_few<T: FusedElement>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Mask,
) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (_, kvh, s, _) = k.dims4()?;
    let rep = h / kvh;
    let visible = |pos: usize| mask.visible_keys(pos, s);
    let scale = scale as f32;
    let rows = rep * t;
    let mut out = vec![<T as Element>::zero(); b * h * t * d];
    with_view::<T, _>(q, |qv| {
        with_view::<T, _>(k, |kv| {
            with_view::<T, _>(v, |vv| {
                if kv.stride[2] != d || vv.stride[2] != d {
                    candle_core::bail!("fused attention: key or value rows are not contiguous");
                }
                out.par_chunks_mut(rows * d)
                    .enumerate()
                    .for_each(|(bg, dst)| {
                        let (bi, g) = (bg / kvh, bg % kvh);
                        // The group's query rows (heads g·rep.., then positions), gathered.
                        let mut a = Vec::with_capacity(rows * d);
                        for r in 0..rows {
                            let at = qv.row(bi, g * rep + r / t, r % t);
                            a.extend_from_slice(&qv.data[at..at + d]);
                        }
                        let k0 = kv.row(bi, g, 0);
                        let keys = &kv.data[k0..k0 + s * d];
                        let v0 = vv.row(bi, g, 0);
                        let values = &vv.data[v0..v0 + s * d];
                        let mut scores = vec![0f32; rows * s];
                        let mut acc = vec![0f32; d];
                        // SAFETY: `attention_fused` checked the CPU; sizes are as sliced above.
                        unsafe { T::dots(rows, s, d, &a, keys, &mut scores, s) };
                        for r in 0..rows {
                            let vis = visible(r % t);
                            let p = &mut scores[r * s..r * s + vis];
                            softmax_scaled(p, scale);
                            // Probabilities are rounded to the compute dtype, as in the reference.
                            p.iter_mut()
                                .for_each(|x| *x = <T as Element>::from_f32(*x).to_f64() as f32);
                            unsafe { T::weighted_rows(p, values, d, &mut acc) };
                            T::store(&acc, &mut dst[r * d..(r + 1) * d]);
                        }
                    });
                Ok(())
            })
        })
    })?;
    Tensor::from_vec(out, (b, h, t, d), q.device())
}

/// Per-thread buffers, reused across tasks.
struct Scratch<T> {
    scores: Vec<f32>,
    probs: Vec<T>,
    out: Vec<f32>,
    packed: Vec<T>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            scores: Vec::new(),
            probs: Vec::new(),
            out: Vec::new(),
            packed: Vec::new(),
        }
    }
}

/// `x = softmax(x·scale)` over one row; returns the row's log-sum-exp `ln Σ e^(x·scale)`.
fn softmax_scaled(x: &mut [f32], scale: f32) -> f32 {
    // SAFETY: no requirement beyond the level's.
    if let Some((max, sum)) = unsafe { vector::run(cpu::level(), SoftmaxScaled { x, scale }) } {
        return max + sum.ln();
    }
    for v in x.iter_mut() {
        *v *= scale;
    }
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
    max + sum.ln()
}

/// `out = Σ_j p[j]·row_j` over rows of `d` elements at `v` (`p.len()` of them), widened to f32.
struct WeightedRows<'a, T> {
    p: &'a [f32],
    v: &'a [T],
    d: usize,
    out: &'a mut [f32],
}

impl<T: Widen> Kernel for WeightedRows<'_, T> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: F32s>(self) {
        let (d, l) = (self.d, S::LANES);
        let v = self.v.as_ptr();
        // Four accumulators per pass over the rows (64 columns at AVX-512: a whole Qwen2 head).
        let width = 4 * l;
        let mut c0 = 0;
        while c0 < d {
            let mut acc = [S::zero(); 4];
            let lanes: [usize; 4] = std::array::from_fn(|c| d.saturating_sub(c0 + l * c).min(l));
            for (j, &pj) in self.p.iter().enumerate() {
                let w = S::splat(pj);
                let row = v.add(j * d + c0);
                for c in 0..4 {
                    if lanes[c] == l {
                        acc[c] = S::fmadd(w, T::load::<S>(row.add(l * c)), acc[c]);
                    } else if lanes[c] > 0 {
                        acc[c] = S::fmadd(w, T::load_n::<S>(row.add(l * c), lanes[c]), acc[c]);
                    }
                }
            }
            for c in 0..4 {
                let o = self.out.as_mut_ptr().add(c0 + l * c);
                if lanes[c] == l {
                    S::store(o, acc[c]);
                } else if lanes[c] > 0 {
                    S::store_n(o, acc[c], lanes[c]);
                }
            }
            c0 += width;
        }
    }
}

/// Softmax of `x·scale` in place; returns the row's maximum and the sum of `e^(x - max)`.
struct SoftmaxScaled<'a> {
    x: &'a mut [f32],
    scale: f32,
}

impl Kernel for SoftmaxScaled<'_> {
    type Output = (f32, f32);
    #[inline(always)]
    unsafe fn run<S: F32s>(self) -> (f32, f32) {
        let (n, l) = (self.x.len(), S::LANES);
        let full = n / l * l;
        let tail = n - full;
        let p = self.x.as_mut_ptr();
        let sc = S::splat(self.scale);
        let mut vmax = S::splat(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            let v = S::mul(S::load(p.add(i)), sc);
            S::store(p.add(i), v);
            vmax = S::max(vmax, v);
            i += l;
        }
        let mut max = S::max_lane(vmax);
        if tail != 0 {
            for x in std::slice::from_raw_parts_mut(p.add(full), tail) {
                *x *= self.scale;
                max = max.max(*x);
            }
        }
        let vm = S::splat(max);
        let mut vsum = S::zero();
        i = 0;
        while i < full {
            let e = exp::<S>(S::sub(S::load(p.add(i)), vm));
            S::store(p.add(i), e);
            vsum = S::add(vsum, e);
            i += l;
        }
        let mut total = S::sum(vsum);
        if tail != 0 {
            // Zero lanes past the row would add e^(0 - max): masked out by the count.
            let e = exp::<S>(S::sub(S::load_n(p.add(full), tail), vm));
            S::store_n(p.add(full), e, tail);
            let mut b = [0f32; crate::vector::MAX_LANES];
            S::store(b.as_mut_ptr(), e);
            total += b[..tail].iter().sum::<f32>();
        }
        let inv = S::splat(1.0 / total);
        i = 0;
        while i < full {
            S::store(p.add(i), S::mul(S::load(p.add(i)), inv));
            i += l;
        }
        if tail != 0 {
            S::store_n(p.add(full), S::mul(S::load_n(p.add(full), tail), inv), tail);
        }
        (max, total)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::attention::attention_reference;
    use crate::test_util::max_abs_diff;

    /// Every mask, GQA grouping, a key/value view with spare capacity (a KV cache), query
    /// counts that leave partial blocks or take the few-queries path, and both dtypes: the fused path equals the reference.
    #[test]
    fn fused_matches_reference() {
        cpu::for_each_level(|level| {
            if level > cpu::KernelLevel::Reference {
                fused_matches_reference_at(level);
            }
        });
    }

    fn fused_matches_reference_at(level: cpu::KernelLevel) {
        let dev = Device::Cpu;
        for (t, offset, mask_causal) in [
            (70, 0, true),
            (17, 9, true),
            (53, 0, false),
            (1, 40, true),
            (5, 12, true),
            (2, 0, false),
        ] {
            let (b, h, kvh, d) = (2, 6, 2, 40);
            let s = offset + t;
            // Queries as a transposed projection hands them over: (b, t, h, d) viewed as (b, h, t, d).
            let q = Tensor::randn(0f32, 1.0, (b, t, h, d), &dev)
                .unwrap()
                .transpose(1, 2)
                .unwrap();
            // Keys and values inside a larger buffer, as a KV cache hands them out.
            let kbuf = Tensor::randn(0f32, 1.0, (b, kvh, s + 11, d), &dev).unwrap();
            let vbuf = Tensor::randn(0f32, 1.0, (b, kvh, s + 11, d), &dev).unwrap();
            let mask = if mask_causal {
                Mask::Causal { offset }
            } else {
                Mask::None
            };
            let fused = |q: &Tensor, k: &Tensor, v: &Tensor| {
                attention_fused(q, k, v, 0.3, mask)
                    .unwrap()
                    .expect("applies")
            };
            let reference = |q: &Tensor, k: &Tensor, v: &Tensor| {
                attention_reference(q, k, v, 0.3, mask).unwrap()
            };
            let (k, v) = (kbuf.narrow(2, 0, s).unwrap(), vbuf.narrow(2, 0, s).unwrap());
            let d32 = max_abs_diff(&fused(&q, &k, &v), &reference(&q, &k, &v));
            assert!(
                d32 <= 1e-5,
                "{level} t {t} offset {offset} f32: max diff {d32}"
            );
            // bf16: against f32 arithmetic on the same bf16-rounded inputs, the fused path is
            // no further off than the reference path in bf16 (which rounds the scores too).
            let half = |x: &Tensor| x.to_dtype(DType::BF16).unwrap();
            let (qh, kh, vh) = (
                half(&q),
                half(&kbuf).narrow(2, 0, s).unwrap(),
                half(&vbuf).narrow(2, 0, s).unwrap(),
            );
            let up = |x: &Tensor| x.to_dtype(DType::F32).unwrap();
            let exact = reference(&up(&qh), &up(&kh), &up(&vh));
            let fused_err = max_abs_diff(&fused(&qh, &kh, &vh), &exact);
            let reference_err = max_abs_diff(&reference(&qh, &kh, &vh), &exact);
            assert!(
                fused_err <= reference_err.max(1.0 / 64.0),
                "{level} t {t} offset {offset} bf16: fused off by {fused_err}, reference by {reference_err}"
            );
            println!("{level} t {t} offset {offset}: f32 diff {d32:e}; bf16 error fused {fused_err}, reference {reference_err}");
        }
    }
}
