//! Greedy decoding over the KV cache (transformers `generate(do_sample=False)`). Sampling,
//! stop strings and streaming belong to the engine; this is the reference loop the tests and
//! the first CLI use.

use candle_core::{DType, Tensor};

use crate::llava_ov::{LlavaOnevision, MultimodalInput};
use crate::Result;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token was produced (it is included in the tokens).
    Eos,
    /// `max_new_tokens` were produced.
    Length,
}

#[derive(Debug, Clone)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
}

/// Index of the largest logit; the first one wins ties, as `torch.argmax` does.
///
/// # Shapes
/// `logits`: V
pub fn argmax(logits: &Tensor) -> Result<u32> {
    let v = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    Ok(best as u32)
}

/// Prefills the prompt, then appends the arg-max token until an id in `eos` or
/// `max_new_tokens` tokens. `on_token` sees each token as it is chosen.
pub fn greedy(
    model: &LlavaOnevision,
    input: &MultimodalInput,
    max_new_tokens: usize,
    eos: &[u32],
    on_token: impl FnMut(u32),
) -> Result<Generated> {
    greedy_from_embeds(model, &model.embed(input)?, max_new_tokens, eos, on_token)
}

/// [`greedy`] from prompt embeddings already computed by [`LlavaOnevision::embed`].
///
/// # Shapes
/// `embeds`: (t, H)
pub fn greedy_from_embeds(
    model: &LlavaOnevision,
    embeds: &Tensor,
    max_new_tokens: usize,
    eos: &[u32],
    mut on_token: impl FnMut(u32),
) -> Result<Generated> {
    let mut cache = model.new_cache();
    let mut tokens = Vec::with_capacity(max_new_tokens);
    if max_new_tokens == 0 {
        return Ok(Generated {
            tokens,
            finish: FinishReason::Length,
        });
    }
    let hidden = model.forward_embeds(embeds, &mut cache)?; // (1, t, H)
    let mut last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
    loop {
        let logits = model.logits(&last)?.squeeze(0)?.squeeze(0)?; // (V,)
        let next = argmax(&logits)?;
        tokens.push(next);
        on_token(next);
        if eos.contains(&next) {
            return Ok(Generated {
                tokens,
                finish: FinishReason::Eos,
            });
        }
        if tokens.len() >= max_new_tokens {
            return Ok(Generated {
                tokens,
                finish: FinishReason::Length,
            });
        }
        last = model.forward_tokens(&[next], &mut cache)?;
    }
}

/// Logits of every position of a hidden-state sequence, in f32.
///
/// # Shapes
/// `hidden`: (1, t, H) -> (t, V)
pub fn all_logits(model: &LlavaOnevision, hidden: &Tensor) -> Result<Tensor> {
    Ok(model.logits(hidden)?.squeeze(0)?.to_dtype(DType::F32)?)
}
