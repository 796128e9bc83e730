//! SigLIP vision tower (transformers `models/siglip/modeling_siglip.py`, `SiglipVisionModel`),
//! without the attention-pooling head and without `post_layernorm`: LLaVA-OneVision takes the
//! hidden states of a chosen layer (the last of the 26 kept ones), before the final norm.

use candle_core::{Module, Tensor};
use onevision_nn::attention::{attention, Mask};
use onevision_nn::{LayerNorm, Linear, Weights};

use crate::config::SiglipConfig;
use crate::Result;

/// Patch embedding (a stride = kernel convolution, done as unfold + matmul) plus learned
/// position embeddings, no CLS token.
#[derive(Debug, Clone)]
struct Embeddings {
    patch: Linear,    // (d, c·p·p)
    position: Tensor, // (n, d)
    channels: usize,
    patch_size: usize,
    grid: usize,
}

impl Embeddings {
    fn new(cfg: &SiglipConfig, w: &Weights) -> Result<Self> {
        let (d, c, p) = (cfg.hidden_size, cfg.num_channels, cfg.patch_size);
        let conv = w.get((d, c, p, p), "patch_embedding.weight")?;
        let bias = w.get(d, "patch_embedding.bias")?;
        let position = w.get((cfg.tokens_per_tile(), d), "position_embedding.weight")?;
        Ok(Self {
            patch: Linear::from_tensors(conv.reshape((d, c * p * p))?, Some(bias))?,
            position,
            channels: c,
            patch_size: p,
            grid: cfg.grid(),
        })
    }

    /// # Shapes
    /// `pixels`: (n, c, s, s) -> (n, g·g, d)
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (n, _, _, _) = pixels.dims4()?;
        let (c, p, g) = (self.channels, self.patch_size, self.grid);
        // "valid" convolution: the last s - g·p rows and columns are never seen.
        let x = pixels.narrow(2, 0, g * p)?.narrow(3, 0, g * p)?;
        let x = x
            .reshape((n, c, g, p, g, p))? // (n, c, gy, py, gx, px)
            .permute((0, 2, 4, 1, 3, 5))? // (n, gy, gx, c, py, px)
            .reshape((n, g * g, c * p * p))?;
        let x = self.patch.forward(&x)?; // (n, g·g, d)
        Ok(x.broadcast_add(&self.position)?)
    }
}

#[derive(Debug, Clone)]
struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn new(cfg: &SiglipConfig, w: &Weights) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            q: Linear::new(d, d, true, &w.pp("q_proj"))?,
            k: Linear::new(d, d, true, &w.pp("k_proj"))?,
            v: Linear::new(d, d, true, &w.pp("v_proj"))?,
            out: Linear::new(d, d, true, &w.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
            head_dim: d / cfg.num_attention_heads,
        })
    }

    /// # Shapes
    /// `x`: (n, t, d) -> (n, t, d)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, t, d) = x.dims3()?;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((n, t, self.heads, self.head_dim))?
                .transpose(1, 2) // (n, h, t, hd)
        };
        let q = split(self.q.forward(x)?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let y = attention(&q, &k, &v, scale, Mask::None)?; // (n, h, t, hd)
        let y = y.transpose(1, 2)?.reshape((n, t, d))?;
        Ok(self.out.forward(&y)?)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: onevision_nn::Activation,
}

impl Mlp {
    fn new(cfg: &SiglipConfig, w: &Weights) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(cfg.hidden_size, cfg.intermediate_size, true, &w.pp("fc1"))?,
            fc2: Linear::new(cfg.intermediate_size, cfg.hidden_size, true, &w.pp("fc2"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.fc2.forward_after(self.act, &self.fc1.forward(x)?)?)
    }
}

/// Pre-norm transformer block.
#[derive(Debug, Clone)]
struct EncoderLayer {
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    fn new(cfg: &SiglipConfig, w: &Weights) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(Self {
            norm1: LayerNorm::new(d, eps, &w.pp("layer_norm1"))?,
            attn: SelfAttention::new(cfg, &w.pp("self_attn"))?,
            norm2: LayerNorm::new(d, eps, &w.pp("layer_norm2"))?,
            mlp: Mlp::new(cfg, &w.pp("mlp"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
        let y = self.mlp.forward(&self.norm2.forward(&x)?)?;
        Ok((x + y)?)
    }
}

/// The vision tower, truncated to the layers whose output is used.
#[derive(Debug, Clone)]
pub struct SiglipVision {
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    image_size: usize,
}

impl SiglipVision {
    /// Loads the embeddings and the first `layers_used` encoder layers; the hidden state after
    /// the last of them is the output (`hidden_states[layers_used]` in transformers).
    pub fn new(cfg: &SiglipConfig, layers_used: usize, w: &Weights) -> Result<Self> {
        let embeddings = Embeddings::new(cfg, &w.pp("embeddings"))?;
        let layers = (0..layers_used)
            .map(|i| EncoderLayer::new(cfg, &w.pp("encoder.layers").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings,
            layers,
            image_size: cfg.image_size,
        })
    }

    /// # Shapes
    /// `pixels`: (n, c, s, s) in the compute dtype -> (n, g·g, d)
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let mut x = self.embed(pixels)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    /// The patch and position embeddings alone (a trainer runs the layers one at a time).
    ///
    /// # Shapes
    /// `pixels`: (n, c, s, s) in the compute dtype -> (n, g·g, d)
    pub fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = pixels.dims4()?;
        if h != self.image_size || w != self.image_size {
            return Err(crate::Error::Input(format!(
                "vision tiles are {h}x{w} pixels; expected {0}x{0}",
                self.image_size
            )));
        }
        self.embeddings.forward(pixels)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Encoder layer `i`.
    ///
    /// # Shapes
    /// `x`: (n, t, d) -> (n, t, d)
    pub fn layer_forward(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        self.layers[i].forward(x)
    }
}
