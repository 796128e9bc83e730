//! Qwen2 decoder (transformers `models/qwen2/modeling_qwen2.py`): GQA attention with q/k/v
//! biases, rotate-half RoPE, RMSNorm, SwiGLU MLP, optional tied LM head. The KV cache is
//! passed in explicitly.

use candle_core::{Module, Tensor};
use onevision_nn::attention::{attention, Mask};
use onevision_nn::rope::{apply_rotary, RotaryEmbedding};
use onevision_nn::{Activation, KvCache, Linear, Quantization, RmsNorm, Weights};

use crate::config::Qwen2Config;
use crate::Result;

/// Which layer runs, and how many positions were cached before this forward call (read once:
/// the cache grows layer by layer during the call).
#[derive(Debug, Clone, Copy)]
struct LayerPos {
    layer: usize,
    offset: usize,
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Qwen2Config, w: &Weights) -> Result<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let (h, kvh) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        Ok(Self {
            q: Linear::new(d, h * hd, true, &w.pp("q_proj"))?,
            k: Linear::new(d, kvh * hd, true, &w.pp("k_proj"))?,
            v: Linear::new(d, kvh * hd, true, &w.pp("v_proj"))?,
            o: Linear::new(h * hd, d, false, &w.pp("o_proj"))?,
            heads: h,
            kv_heads: kvh,
            head_dim: hd,
        })
    }

    /// # Shapes
    /// `x`: (b, t, d); `cos`, `sin`: (t, hd) -> (b, t, d)
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        pos: LayerPos,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let LayerPos { layer, offset } = pos;
        let q = self
            .q
            .forward(x)?
            .reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?; // (b, h, t, hd)
        let k = self
            .k
            .forward(x)?
            .reshape((b, t, self.kv_heads, self.head_dim))?
            .transpose(1, 2)?; // (b, kvh, t, hd)
        let v = self
            .v
            .forward(x)?
            .reshape((b, t, self.kv_heads, self.head_dim))?
            .transpose(1, 2)?; // (b, kvh, t, hd)
        let q = apply_rotary(&q.contiguous()?, cos, sin)?;
        let k = apply_rotary(&k.contiguous()?, cos, sin)?;
        let (k, v) = match cache {
            Some(cache) => cache.append(layer, &k, &v.contiguous()?)?, // (b, kvh, offset + t, hd)
            None => (k, v.contiguous()?),
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let y = attention(&q, &k, &v, scale, Mask::Causal { offset })?; // (b, h, t, hd)
        let y = y
            .transpose(1, 2)?
            .reshape((b, t, self.heads * self.head_dim))?;
        Ok(self.o.forward(&y)?)
    }
}

impl Attention {
    /// One decode step of several sequences: row `i` of `x` is the next position of the
    /// sequence cached in `caches[i]` (at `offsets[i]`, with the rotary tables `rope[i]`). The
    /// projections run on all rows at once; rotary, the cache and attention per sequence, with
    /// the shapes [`Self::forward`] gives them for one sequence, so each row's arithmetic is
    /// that of its sequence alone.
    ///
    /// # Shapes
    /// `x`: (n, 1, d); `rope[i]`: (1, hd) each -> (n, 1, d)
    fn forward_batch(
        &self,
        x: &Tensor,
        rope: &[(Tensor, Tensor)],
        offsets: &[usize],
        layer: usize,
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor> {
        let n = x.dim(0)?;
        let (q, k, v) = (self.q.forward(x)?, self.k.forward(x)?, self.v.forward(x)?);
        let scale = (self.head_dim as f64).powf(-0.5);
        let mut ys = Vec::with_capacity(n);
        for (i, cache) in caches.iter_mut().enumerate() {
            let heads = |t: &Tensor, h: usize| -> Result<Tensor> {
                Ok(t.narrow(0, i, 1)?
                    .reshape((1, 1, h, self.head_dim))?
                    .transpose(1, 2)?)
            };
            let (cos, sin) = &rope[i];
            let qi = apply_rotary(&heads(&q, self.heads)?.contiguous()?, cos, sin)?;
            let ki = apply_rotary(&heads(&k, self.kv_heads)?.contiguous()?, cos, sin)?;
            let vi = heads(&v, self.kv_heads)?.contiguous()?;
            let (ki, vi) = cache.append(layer, &ki, &vi)?;
            let mask = Mask::Causal { offset: offsets[i] };
            let y = attention(&qi, &ki, &vi, scale, mask)?; // (1, h, 1, hd)
            ys.push(
                y.transpose(1, 2)?
                    .reshape((1, 1, self.heads * self.head_dim))?,
            );
        }
        Ok(self.o.forward(&Tensor::cat(&ys, 0)?)?)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    act: Activation,
}

impl Mlp {
    fn new(cfg: &Qwen2Config, w: &Weights) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate: Linear::new(d, i, false, &w.pp("gate_proj"))?,
            up: Linear::new(d, i, false, &w.pp("up_proj"))?,
            down: Linear::new(i, d, false, &w.pp("down_proj"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (g, u) = (self.gate.forward(x)?, self.up.forward(x)?);
        Ok(self.down.forward_gated(self.act, &g, &u)?)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_norm: RmsNorm,
    attn: Attention,
    post_norm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn new(cfg: &Qwen2Config, w: &Weights) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_norm: RmsNorm::new(d, eps, &w.pp("input_layernorm"))?,
            attn: Attention::new(cfg, &w.pp("self_attn"))?,
            post_norm: RmsNorm::new(d, eps, &w.pp("post_attention_layernorm"))?,
            mlp: Mlp::new(cfg, &w.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        pos: LayerPos,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let a = self
            .attn
            .forward(&self.input_norm.forward(x)?, cos, sin, pos, cache)?;
        let x = (x + a)?;
        let m = self.mlp.forward(&self.post_norm.forward(&x)?)?;
        Ok((x + m)?)
    }
}

impl DecoderLayer {
    /// [`Self::forward`] for one decode step of several sequences (see
    /// [`Attention::forward_batch`]).
    fn forward_batch(
        &self,
        x: &Tensor,
        rope: &[(Tensor, Tensor)],
        offsets: &[usize],
        layer: usize,
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor> {
        let h = self.input_norm.forward(x)?;
        let a = self.attn.forward_batch(&h, rope, offsets, layer, caches)?;
        let x = (x + a)?;
        let m = self.mlp.forward(&self.post_norm.forward(&x)?)?;
        Ok((x + m)?)
    }
}

/// The language model with its head.
#[derive(Debug, Clone)]
pub struct Qwen2 {
    embed_tokens: Tensor, // (V, d)
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RotaryEmbedding,
    cfg: Qwen2Config,
}

impl Qwen2 {
    /// `w` holds `embed_tokens`, `layers.*`, `norm`; `head` holds `weight` of an untied head.
    pub fn new(
        cfg: &Qwen2Config,
        tie_word_embeddings: bool,
        w: &Weights,
        head: &Weights,
    ) -> Result<Self> {
        let embed_tokens = w.get((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, &w.pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        let lm_head = if tie_word_embeddings {
            Linear::from_tensors(embed_tokens.clone(), None)?
        } else {
            Linear::new(cfg.hidden_size, cfg.vocab_size, false, head)?
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, &w.pp("norm"))?,
            lm_head,
            rope: RotaryEmbedding::new(cfg.head_dim, cfg.rope_theta),
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Qwen2Config {
        &self.cfg
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Token embeddings.
    ///
    /// # Shapes
    /// `ids`: t -> (t, d)
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.cfg.vocab_size) {
            return Err(crate::Error::Input(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.cfg.vocab_size
            )));
        }
        let ids = Tensor::new(ids, self.embed_tokens.device())?;
        Ok(self.embed_tokens.index_select(&ids, 0)?)
    }

    /// Runs the decoder over new positions that follow the cached ones; returns the final-norm
    /// hidden states.
    ///
    /// # Shapes
    /// `x`: (b, t, d) -> (b, t, d)
    pub fn forward_embeds(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (_, t, _) = x.dims3()?;
        let start = cache.len();
        if start + t > self.cfg.max_position_embeddings {
            return Err(crate::Error::Input(format!(
                "{} positions exceed the model's context of {} tokens",
                start + t,
                self.cfg.max_position_embeddings
            )));
        }
        let (cos, sin) = self.rope.cos_sin(start, t, x.dtype(), x.device())?;
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(
                &x,
                &cos,
                &sin,
                LayerPos {
                    layer: i,
                    offset: start,
                },
                Some(&mut *cache),
            )?;
        }
        Ok(self.norm.forward(&x)?)
    }

    /// One decode step for several sequences at once: `tokens[i]` follows the positions cached
    /// in `caches[i]` (any lengths). Every weight is read once for the whole step (the linear
    /// layers run on all rows together); rotary and attention run per sequence on its own
    /// cache. Returns the final-norm hidden states, row `i` for sequence `i`.
    ///
    /// Each row equals what [`Self::forward_embeds`] gives that sequence alone, bit for bit,
    /// when fewer than [`onevision_nn::gemm_nt::MIN_ROWS_PACKED`] sequences share the step (the
    /// few-row products' rows do not depend on each other); with more, the products run on the
    /// packed kernel and agree to f32 rounding.
    ///
    /// # Shapes
    /// returns (n, 1, d)
    pub fn forward_decode_batch(
        &self,
        tokens: &[u32],
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor> {
        if tokens.len() != caches.len() || tokens.is_empty() {
            return Err(crate::Error::Input(format!(
                "a batched decode step needs one cache per token and at least one token: {} \
                 tokens, {} caches",
                tokens.len(),
                caches.len()
            )));
        }
        let offsets: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        if let Some(&o) = offsets
            .iter()
            .find(|&&o| o + 1 > self.cfg.max_position_embeddings)
        {
            return Err(crate::Error::Input(format!(
                "{} positions exceed the model's context of {} tokens",
                o + 1,
                self.cfg.max_position_embeddings
            )));
        }
        let mut x = self.embed(tokens)?.unsqueeze(1)?; // (n, 1, d)
        let rope = offsets
            .iter()
            .map(|&o| Ok(self.rope.cos_sin(o, 1, x.dtype(), x.device())?))
            .collect::<Result<Vec<_>>>()?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward_batch(&x, &rope, &offsets, i, caches)?;
        }
        Ok(self.norm.forward(&x)?)
    }

    /// Decoder layers, for a trainer that runs (and recomputes) them one at a time.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The rotary tables for positions `0..t` (a training sequence, no cache).
    ///
    /// # Shapes
    /// returns `(cos, sin)`, each (t, hd)
    pub fn rope_tables(
        &self,
        t: usize,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> Result<(Tensor, Tensor)> {
        if t > self.cfg.max_position_embeddings {
            return Err(crate::Error::Input(format!(
                "{t} positions exceed the model's context of {} tokens",
                self.cfg.max_position_embeddings
            )));
        }
        Ok(self.rope.cos_sin(0, t, dtype, device)?)
    }

    /// One decoder layer over whole sequences from position 0, causal, without a cache
    /// (training). Right-padded rows are fine: a real position never sees a later pad.
    ///
    /// # Shapes
    /// `x`: (b, t, d); `cos`, `sin`: (t, hd) from [`Self::rope_tables`] -> (b, t, d)
    pub fn layer_forward(
        &self,
        i: usize,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        self.layers[i].forward(
            x,
            cos,
            sin,
            LayerPos {
                layer: i,
                offset: 0,
            },
            None,
        )
    }

    /// The final RMSNorm.
    ///
    /// # Shapes
    /// `x`: (..., d) -> (..., d)
    pub fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.norm.forward(x)?)
    }

    /// # Shapes
    /// `hidden`: (..., d) -> (..., V)
    /// Keeps a `q` copy of every decoder and LM-head weight for decoding (few-row products);
    /// the prefill keeps the weights as loaded. Returns how many matrices were quantized and
    /// how many could not be (input width not a multiple of 32; never in released Qwen2 sizes).
    pub fn quantize_decode(&mut self, q: Quantization) -> Result<(usize, usize)> {
        let mut all: Vec<&mut Linear> = Vec::new();
        for l in &mut self.layers {
            all.extend([&mut l.attn.q, &mut l.attn.k, &mut l.attn.v, &mut l.attn.o]);
            all.extend([&mut l.mlp.gate, &mut l.mlp.up, &mut l.mlp.down]);
        }
        all.push(&mut self.lm_head);
        let (mut done, mut skipped) = (0, 0);
        for lin in all {
            if lin.quantize_for_decode(q)? {
                done += 1;
            } else {
                skipped += 1;
            }
        }
        Ok((done, skipped))
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?)
    }
}
