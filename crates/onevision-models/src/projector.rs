//! The two-layer MLP projector from vision width to language width
//! (transformers `LlavaOnevisionMultiModalProjector`; original `mlp2x_gelu`).

use candle_core::{Module, Tensor};
use onevision_nn::{Activation, Linear, Weights};

use crate::Result;

#[derive(Debug, Clone)]
pub struct Projector {
    linear_1: Linear,
    act: Activation,
    linear_2: Linear,
}

impl Projector {
    pub fn new(
        vision: usize,
        text: usize,
        act: Activation,
        bias: bool,
        w: &Weights,
    ) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::new(vision, text, bias, &w.pp("linear_1"))?,
            act,
            linear_2: Linear::new(text, text, bias, &w.pp("linear_2"))?,
        })
    }

    /// Applied per token.
    ///
    /// # Shapes
    /// `x`: (..., dv) -> (..., H)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.act.forward(&self.linear_1.forward(x)?)?;
        Ok(self.linear_2.forward(&h)?)
    }
}
