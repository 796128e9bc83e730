//! Activation functions, named as checkpoints name them.

use candle_core::Tensor;

use crate::simd::{activation_fused, activation_train, silu_mul_train, FusedActivation};

/// An activation function. Parsed from config strings at load; see [`Activation::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x·Φ(x)` with the error function (PyTorch `gelu`, config `"gelu"`).
    GeluErf,
    /// Tanh-approximated GELU (config `"gelu_pytorch_tanh"`, `"gelu_new"`, `"gelu_fast"`).
    GeluTanh,
    /// `x·sigmoid(x)` (config `"silu"`, `"swish"`).
    Silu,
}

impl Activation {
    /// The config spellings this parser accepts.
    pub const ACCEPTED: &'static str = "gelu, gelu_pytorch_tanh, gelu_new, silu, swish";

    /// Parses a config value; `None` if the name is not one we implement.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::GeluErf),
            "gelu_pytorch_tanh" | "gelu_new" => Some(Self::GeluTanh),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }

    /// The vectorized kernel of this function, if it has one.
    pub fn fused(self) -> Option<FusedActivation> {
        match self {
            Self::GeluErf => None,
            Self::GeluTanh => Some(FusedActivation::GeluTanh),
            Self::Silu => Some(FusedActivation::Silu),
        }
    }

    /// The vectorized path ([`activation_fused`]) where it applies, else candle's op.
    pub fn forward(self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(act) = self.fused() {
            if let Some(y) = activation_fused(x, act)? {
                return Ok(y);
            }
            if let Some(y) = activation_train(x, act)? {
                return Ok(y);
            }
        }
        self.forward_reference(x)
    }

    /// `act(gate)·up` (a gated MLP's middle). Under a gradient, SiLU runs as one fused
    /// differentiable op; otherwise this is `forward(gate) * up`.
    ///
    /// # Shapes
    /// `gate`, `up`: the same shape -> that shape
    pub fn gated(self, gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
        if self == Self::Silu {
            if let Some(y) = silu_mul_train(gate, up)? {
                return Ok(y);
            }
        }
        self.forward(gate)? * up
    }

    /// candle's ops: the differentiable reference.
    pub fn forward_reference(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::GeluErf => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Silu => x.silu(),
        }
    }
}
