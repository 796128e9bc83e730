//! Scaled dot-product attention, computed like transformers' "eager" attention.

use candle_core::{DType, Tensor, D};

/// Rows of queries processed at once: bounds the score matrix to `h × QUERY_CHUNK × s` while
/// leaving each row's arithmetic unchanged (softmax is per row).
const QUERY_CHUNK: usize = 1024;

/// Which keys a query may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Every key (vision encoder).
    None,
    /// Keys at positions `<=` the query's; query `i` sits at absolute position `offset + i`,
    /// where `offset` is the number of cached keys before the new ones.
    Causal { offset: usize },
}

impl Mask {
    /// How many of the `s` keys the query at `pos` (counted from the first new query) sees.
    pub fn visible_keys(self, pos: usize, s: usize) -> usize {
        match self {
            Mask::None => s,
            Mask::Causal { offset } => (offset + pos + 1).min(s),
        }
    }
}

/// `softmax(q·kᵀ·scale + mask)·v`, the scores made in the compute dtype, the softmax in f32 and
/// cast back (transformers `eager_attention_forward`). Grouped-query attention: the `h / kvh`
/// query heads that share a key/value head are stacked as extra query rows against it, which is
/// the same arithmetic as transformers' `repeat_kv` without copying the keys and values (a
/// decode step used to copy the whole cache `h / kvh` times per layer).
///
/// Runs [`attention_fused`](crate::attention_fused::attention_fused) where it applies (CPU,
/// f32/bf16 with AVX-512, prefill-sized, no gradient), its differentiable form
/// [`attention_train`](crate::attention_grad::attention_train) for f32 under a gradient, else
/// [`attention_reference`].
///
/// # Shapes
/// `q`: (b, h, t, d); `k`, `v`: (b, kvh, s, d) -> (b, h, t, d)
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Mask,
) -> candle_core::Result<Tensor> {
    // The fused path reads any layout whose head axis is contiguous (a transposed projection
    // included), so nothing is copied before it.
    if let Some(y) = crate::attention_fused::attention_fused(q, k, v, scale, mask)? {
        return Ok(y);
    }
    // Taking part in a gradient (training): the same kernel as one differentiable op whose
    // backward recomputes the probabilities, instead of the reference's kept score matrices.
    if q.track_op() || k.track_op() || v.track_op() {
        if let Some(y) = crate::attention_grad::attention_train(q, k, v, scale, mask)? {
            return Ok(y);
        }
    }
    let (k, v) = (rows_in_place(k)?, rows_in_place(v)?);
    attention_reference(q, &k, &v, scale, mask)
}

/// The readable, differentiable attention on candle ops; the fused path is tested against it.
///
/// # Shapes
/// `q`: (b, h, t, d); `k`, `v`: (b, kvh, s, d) -> (b, h, t, d)
pub fn attention_reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Mask,
) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (_, kvh, s, _) = k.dims4()?;
    let rep = h / kvh;
    let (k, v) = (rows_in_place(k)?, rows_in_place(v)?);
    let mut outs = Vec::with_capacity(t.div_ceil(QUERY_CHUNK));
    let mut start = 0;
    while start < t {
        let n = QUERY_CHUNK.min(t - start);
        // Heads are grouped by key/value head (head j uses kv head j / rep), so the query heads
        // of one group are adjacent: (b, kvh·rep, n, d) -> (b, kvh, rep·n, d).
        let qc = q
            .narrow(2, start, n)?
            .contiguous()?
            .reshape((b, kvh, rep * n, d))?;
        // Under a causal mask, keys after the chunk's last query are invisible to all of its
        // rows: leaving them out only drops exp(-inf) = 0 terms, so every value is unchanged
        // and a long prompt's attention does about half the work.
        let s = mask.visible_keys(start + n - 1, s);
        let (kc, vc) = (k.narrow(2, 0, s)?, v.narrow(2, 0, s)?);
        let scores = (qc.matmul(&kc.t()?)? * scale)?; // (b, kvh, rep·n, s)
        let scores = scores.to_dtype(DType::F32)?;
        let scores = match mask {
            Mask::None => scores,
            // Masking adds 0 or -inf, so doing it after the upcast changes no value.
            // The mask is the same for the `rep` stacked heads: broadcast it over them rather
            // than tiling it (which allocated rep·n·s floats per chunk and layer).
            Mask::Causal { offset } => {
                let m = causal_mask(offset + start, n, s, scores.device())?; // (n, s)
                scores
                    .reshape((b, kvh, rep, n, s))?
                    .broadcast_add(&m)?
                    .reshape((b, kvh, rep * n, s))?
            }
        };
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(q.dtype())?;
        outs.push(probs.matmul(&vc)?.reshape((b, h, n, d))?); // (b, h, n, d)
        start += n;
    }
    let out = if outs.len() == 1 {
        outs.pop().expect("one chunk")
    } else {
        Tensor::cat(&outs, 2)?
    };
    debug_assert_eq!(out.dims(), &[b, h, t, d]);
    Ok(out)
}

/// `x` itself when each (s, d) matrix is row-major and the batch axes collapse (a contiguous
/// tensor, or a KV-cache view with spare capacity), a contiguous copy otherwise (keys straight
/// from a transposed projection), so that the matmuls take it without striding errors.
///
/// # Shapes
/// `x`: (b, kvh, s, d)
pub(crate) fn rows_in_place(x: &Tensor) -> candle_core::Result<Tensor> {
    let (_, kvh, _, d) = x.dims4()?;
    let st = x.stride();
    if st[3] == 1 && st[2] == d && st[0] == st[1] * kvh {
        Ok(x.clone())
    } else {
        x.contiguous()
    }
}

/// Additive mask: 0 where key `j <= first + i`, -inf elsewhere.
///
/// # Shapes
/// returns (n, s), f32
fn causal_mask(
    first: usize,
    n: usize,
    s: usize,
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    let mut m = vec![0f32; n * s];
    for i in 0..n {
        for j in (first + i + 1).min(s)..s {
            m[i * s + j] = f32::NEG_INFINITY;
        }
    }
    Tensor::from_vec(m, (n, s), device)
}
