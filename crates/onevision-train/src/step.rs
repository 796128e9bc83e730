//! One micro-batch forward and backward: the loss and the gradient of every trainable
//! parameter, optionally with gradient checkpointing.
//!
//! The model is run as a chain of segments, each taking one tensor to the next:
//!
//! ```text
//! pixels -> [vision embed] -> [vision layer 0..Lv) -> [bridge] -> [decoder layer 0..L) -> [head] -> loss
//! ```
//!
//! The bridge projects the vision features, packs each medium (AnyRes unpad, shrink and
//! newlines; video pooling), splices them into the token embeddings, truncates each sample and
//! right-pads the batch with zero rows (LLaVA-NeXT's `prepare_inputs_labels_for_multimodal`).
//! The head applies the final norm to the positions whose next token is supervised, the LM head,
//! and the cross entropy (in f32, as transformers' `ForCausalLMLoss` upcasts the logits), summed
//! and divided by the number of supervised tokens of the whole optimizer step (see
//! [`crate::trainer`] for why that count).
//!
//! Both modes differentiate the chain segment by segment, from the last: segment `k`'s input is
//! a `Var`, `sum(y_k · g_{k+1})` is differentiated, which yields the parameter gradients of `k`
//! and `g_k` for the segment before, and segment `k`'s graph is dropped. Without checkpointing
//! the forward keeps every segment's graph (so activations are freed during the backward, as
//! PyTorch frees its saved tensors, rather than all at its end); with it, the forward keeps only
//! each segment's input (detached) and the backward recomputes the segment. Both modes run the
//! same segment code. Segments before the first one with trainable parameters are never
//! differentiated (a frozen vision tower runs without a graph).
//!
//! Right padding needs no attention mask: a real position never attends to a later one, so a
//! pad only ever influences pad positions, whose outputs carry no label.

use candle_core::{DType, Tensor, Var, D};
use onevision_models::{LlavaOnevision, Media};

use crate::example::Example;
use crate::labels::IGNORE_INDEX;
use crate::optim::{Grads, Group, Param};
use crate::Result;

/// A piece of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    VisionEmbed,
    VisionLayer(usize),
    Bridge,
    Decoder(usize),
    Head,
}

/// What the micro-batch's backward produced.
#[derive(Debug, Clone, Copy)]
pub struct MicroResult {
    /// This micro-batch's share of the step's loss (its CE sum / the step's token count).
    pub loss: f64,
    /// Supervised tokens in this micro-batch.
    pub supervised: usize,
}

/// The inputs of a micro-batch as the segments need them.
struct Ctx<'a> {
    model: &'a LlavaOnevision,
    examples: &'a [&'a Example],
    /// (P, 3, s, s) tiles and frames of every medium, in sample then media order.
    pixels: Option<Tensor>,
    /// Tiles (or frames) per medium, same order.
    tiles: Vec<usize>,
    /// Padded length.
    t: usize,
    cos: Tensor,
    sin: Tensor,
    /// Flat (b·t) indices of the positions whose next token is supervised, and those tokens.
    rows: Tensor,
    targets: Tensor,
    /// Supervised tokens of the whole optimizer step (the loss divisor).
    step_tokens: usize,
}

fn media_pixels(m: &Media) -> &Tensor {
    match m {
        Media::Image { pixels, .. } => pixels,
        Media::Video { frames } => frames,
    }
}

impl<'a> Ctx<'a> {
    fn new(
        model: &'a LlavaOnevision,
        examples: &'a [&'a Example],
        step_tokens: usize,
    ) -> Result<Self> {
        let dev = model.device();
        let dtype = model.dtype();
        let media: Vec<&Media> = examples.iter().flat_map(|e| &e.media).collect();
        let tiles = media
            .iter()
            .map(|m| media_pixels(m).dim(0))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pixels = if media.is_empty() {
            None
        } else {
            let all: Vec<&Tensor> = media.iter().map(|m| media_pixels(m)).collect();
            Some(Tensor::cat(&all, 0)?.to_device(dev)?.to_dtype(dtype)?)
        };
        let t = examples.iter().map(|e| e.len).max().unwrap_or(0);
        let (cos, sin) = model.lm().rope_tables(t, dtype, dev)?;
        let (mut rows, mut targets) = (vec![], vec![]);
        for (b, e) in examples.iter().enumerate() {
            for p in 0..e.len.saturating_sub(1) {
                let l = e.labels[p + 1];
                if l != IGNORE_INDEX {
                    rows.push((b * t + p) as u32);
                    targets.push(l as u32);
                }
            }
        }
        let n = rows.len();
        Ok(Self {
            model,
            examples,
            pixels,
            tiles,
            t,
            cos,
            sin,
            rows: Tensor::from_vec(rows, n, dev)?,
            targets: Tensor::from_vec(targets, n, dev)?,
            step_tokens,
        })
    }

    fn segments(&self) -> Vec<Seg> {
        let mut segs = vec![];
        if self.pixels.is_some() {
            segs.push(Seg::VisionEmbed);
            segs.extend((0..self.model.vision().num_layers()).map(Seg::VisionLayer));
        }
        segs.push(Seg::Bridge);
        segs.extend((0..self.model.lm().num_layers()).map(Seg::Decoder));
        segs.push(Seg::Head);
        segs
    }

    /// Runs one segment. `x` is the previous segment's output (none for the first).
    fn run(&self, seg: Seg, x: Option<&Tensor>) -> Result<Tensor> {
        let input =
            || x.ok_or_else(|| crate::Error::Config(format!("segment {seg:?} needs an input")));
        Ok(match seg {
            Seg::VisionEmbed => {
                let px = self
                    .pixels
                    .as_ref()
                    .ok_or_else(|| crate::Error::Config("vision segment without pixels".into()))?;
                self.model.vision().embed(px)?
            }
            Seg::VisionLayer(i) => self.model.vision().layer_forward(i, input()?)?,
            Seg::Bridge => self.bridge(x)?,
            Seg::Decoder(i) => self
                .model
                .lm()
                .layer_forward(i, input()?, &self.cos, &self.sin)?,
            Seg::Head => self.head(input()?)?,
        })
    }

    /// Projector, packing, splicing, truncation, right padding.
    ///
    /// # Shapes
    /// `features`: (P, g·g, dv) or none -> (b, t, H)
    fn bridge(&self, features: Option<&Tensor>) -> Result<Tensor> {
        let projected = match features {
            Some(f) => Some(self.model.project(f)?),
            None => None,
        };
        let mut next = 0; // medium index
        let mut offset = 0; // tile index
        let mut seqs = Vec::with_capacity(self.examples.len());
        for e in self.examples {
            let mut rows = Vec::with_capacity(e.media.len());
            for m in &e.media {
                let p = self.tiles[next];
                let proj = projected
                    .as_ref()
                    .ok_or_else(|| crate::Error::Config("media without features".into()))?
                    .narrow(0, offset, p)?;
                rows.push(self.model.pack_media(m, &proj)?);
                next += 1;
                offset += p;
            }
            let emb = self.model.splice(&e.input_ids, &e.media, rows)?; // (t_full, H)
            let emb = emb.narrow(0, 0, e.len)?;
            let emb = if e.len < self.t {
                let h = emb.dim(1)?;
                let pad = Tensor::zeros((self.t - e.len, h), emb.dtype(), emb.device())?;
                Tensor::cat(&[&emb, &pad], 0)?
            } else {
                emb
            };
            seqs.push(emb);
        }
        Ok(Tensor::stack(&seqs, 0)?)
    }

    /// Final norm, LM head and cross entropy at the supervised positions.
    ///
    /// # Shapes
    /// `x`: (b, t, H) -> scalar
    fn head(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let picked = x.reshape((b * t, h))?.index_select(&self.rows, 0)?; // (n, H)
        let hidden = self.model.lm().final_norm(&picked)?;
        let logits = self.model.logits(&hidden)?.to_dtype(DType::F32)?; // (n, V)
        let ce = cross_entropy_sum(&logits, &self.targets)?;
        Ok((ce / self.step_tokens as f64)?)
    }
}

/// `Σ -log softmax(logits)[target]` over rows, in f32, with the row maximum held constant (as
/// ATen's `log_softmax` kernel subtracts it; its gradient is zero in exact arithmetic).
///
/// # Shapes
/// `logits`: (n, V), `targets`: n -> scalar
pub fn cross_entropy_sum(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?;
    Ok(picked.sum_all()?.neg()?)
}

/// Which groups have trainable parameters.
fn trained(params: &[Param], group: Group) -> bool {
    params.iter().any(|p| p.group == group)
}

fn seg_trains(seg: Seg, params: &[Param]) -> bool {
    match seg {
        Seg::VisionEmbed | Seg::VisionLayer(_) => trained(params, Group::Vision),
        Seg::Bridge => trained(params, Group::Projector) || trained(params, Group::Language),
        Seg::Decoder(_) | Seg::Head => trained(params, Group::Language),
    }
}

/// Adds the gradients `store` holds for `params` into `grads`.
fn collect(
    store: &candle_core::backprop::GradStore,
    params: &[Param],
    grads: &mut Grads,
) -> Result<()> {
    for p in params {
        if let Some(g) = store.get(p.var.as_tensor()) {
            let g = g.to_dtype(DType::F32)?;
            match grads.get_mut(&p.name) {
                Some(acc) => *acc = (&*acc + &g)?,
                None => {
                    grads.insert(p.name.clone(), g);
                }
            }
        }
    }
    Ok(())
}

/// Supervised tokens of a micro-batch (the positions the head scores).
pub fn supervised_tokens(examples: &[&Example]) -> usize {
    examples.iter().map(|e| e.supervised()).sum()
}

/// Forward and backward of one micro-batch. Adds the parameter gradients into `grads` and
/// returns this micro-batch's loss share (CE sum / `step_tokens`).
pub fn forward_backward(
    model: &LlavaOnevision,
    params: &[Param],
    examples: &[&Example],
    step_tokens: usize,
    checkpointing: bool,
    grads: &mut Grads,
) -> Result<MicroResult> {
    let ctx = Ctx::new(model, examples, step_tokens)?;
    let supervised = ctx.rows.dim(0)?;
    let segs = ctx.segments();
    // Segments before the first trainable one need no backward.
    let first = segs
        .iter()
        .position(|&s| seg_trains(s, params))
        .unwrap_or(segs.len());
    let loss = if checkpointing {
        run_checkpointed(&ctx, &segs, first, params, grads)?
    } else {
        run_kept(&ctx, &segs, first, params, grads)?
    };
    Ok(MicroResult {
        loss: loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        supervised,
    })
}

/// Without checkpointing: every segment's graph is kept from the forward (nothing is
/// recomputed), but the backward still goes segment by segment, last first, so that each
/// segment's activations are freed as soon as its gradients are out (as PyTorch frees saved
/// tensors during `backward`); one graph for the whole chain would hold all of them until the
/// end. The numbers are those of one graph: the gradient handed to segment `k` is the sum its
/// input received in segment `k + 1`, and `sum(y_k · g)` passes `g` on exactly.
fn run_kept(
    ctx: &Ctx,
    segs: &[Seg],
    first: usize,
    params: &[Param],
    grads: &mut Grads,
) -> Result<Tensor> {
    // A frozen prefix runs without a graph.
    let mut x: Option<Tensor> = None;
    for &seg in &segs[..first] {
        x = Some(ctx.run(seg, x.as_ref())?.detach());
    }
    // From the first trained segment on: each segment's input is a fresh `Var` (the root of
    // its own graph), its output is kept with the graph.
    let mut kept: Vec<(Option<Var>, Tensor)> = Vec::with_capacity(segs.len() - first);
    for (k, &seg) in segs.iter().enumerate().skip(first) {
        let input = match (&x, k > first) {
            (Some(t), true) => Some(Var::from_tensor(t)?),
            _ => None,
        };
        let x_in = match &input {
            Some(v) => Some(v.as_tensor().clone()),
            None => x.clone(),
        };
        let y = ctx.run(seg, x_in.as_ref())?;
        x = Some(y.detach());
        kept.push((input, y));
    }
    let loss = x.expect("the chain ends with the head");
    let mut g: Option<Tensor> = None;
    while let Some((input, y)) = kept.pop() {
        let objective = match &g {
            None => y,
            Some(g) => (&y * g)?.sum_all()?,
        };
        let store = objective.backward()?;
        drop(objective); // this segment's graph
        collect(&store, params, grads)?;
        g = match input {
            Some(v) => Some(
                store
                    .get(v.as_tensor())
                    .cloned()
                    .map_or_else(|| v.as_tensor().zeros_like(), Ok)?,
            ),
            None => None,
        };
    }
    Ok(loss)
}

fn run_checkpointed(
    ctx: &Ctx,
    segs: &[Seg],
    first: usize,
    params: &[Param],
    grads: &mut Grads,
) -> Result<Tensor> {
    let head = segs.len() - 1;
    // Forward: keep each segment's (detached) input; the graph of each segment is dropped.
    let mut inputs: Vec<Option<Tensor>> = Vec::with_capacity(segs.len());
    let mut x: Option<Tensor> = None;
    for &seg in &segs[..head] {
        inputs.push(x.clone());
        x = Some(ctx.run(seg, x.as_ref())?.detach());
    }
    inputs.push(x);
    // Backward, last segment first.
    let mut g: Option<Tensor> = None;
    let mut loss = None;
    for k in (first..segs.len()).rev() {
        let need_input_grad = k > first;
        let input = match (&inputs[k], need_input_grad) {
            (Some(t), true) => Some(Var::from_tensor(t)?),
            _ => None,
        };
        let x_in = match (&input, &inputs[k]) {
            (Some(v), _) => Some(v.as_tensor().clone()),
            (None, t) => t.clone(),
        };
        let y = ctx.run(segs[k], x_in.as_ref())?;
        let objective = match &g {
            None => y.clone(),
            Some(g) => (&y * g)?.sum_all()?,
        };
        if k == head {
            loss = Some(y.detach());
        }
        let store = objective.backward()?;
        collect(&store, params, grads)?;
        g = match input {
            Some(v) => Some(
                store
                    .get(v.as_tensor())
                    .cloned()
                    .map_or_else(|| v.as_tensor().zeros_like(), Ok)?,
            ),
            None => None,
        };
    }
    match loss {
        Some(l) => Ok(l),
        // Nothing trains: still report the loss.
        None => Ok(ctx.run(segs[head], inputs[head].as_ref())?),
    }
}
