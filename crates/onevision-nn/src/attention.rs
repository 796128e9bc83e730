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

/// `softmax(q·kᵀ·scale + mask)·v`, the scores made in the compute dtype, the softmax in f32 and
/// cast back (transformers `eager_attention_forward`). Grouped-query attention repeats each key
/// and value head `h / kvh` times.
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
    let (b, h, t, d) = q.dims4()?;
    let (_, kvh, s, _) = k.dims4()?;
    let k = repeat_kv(k, h / kvh)?.contiguous()?; // (b, h, s, d)
    let v = repeat_kv(v, h / kvh)?.contiguous()?; // (b, h, s, d)
    let kt = k.t()?; // (b, h, d, s)
    let mut outs = Vec::with_capacity(t.div_ceil(QUERY_CHUNK));
    let mut start = 0;
    while start < t {
        let n = QUERY_CHUNK.min(t - start);
        let qc = q.narrow(2, start, n)?.contiguous()?; // (b, h, n, d)
        let scores = (qc.matmul(&kt)? * scale)?; // (b, h, n, s)
                                                 // Masking adds 0 or -inf, so doing it after the upcast changes no value.
        let scores = scores.to_dtype(DType::F32)?;
        let scores = match mask {
            Mask::None => scores,
            Mask::Causal { offset } => {
                scores.broadcast_add(&causal_mask(offset + start, n, s, scores.device())?)?
            }
        };
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(q.dtype())?;
        outs.push(probs.matmul(&v)?); // (b, h, n, d)
        start += n;
    }
    let out = Tensor::cat(&outs, 2)?;
    debug_assert_eq!(out.dims(), &[b, h, t, d]);
    Ok(out)
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

/// # Shapes
/// `x`: (b, kvh, s, d) -> (b, kvh·n_rep, s, d)
fn repeat_kv(x: &Tensor, n_rep: usize) -> candle_core::Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, s, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kvh, n_rep, s, d))?
        .reshape((b, kvh * n_rep, s, d))
}
