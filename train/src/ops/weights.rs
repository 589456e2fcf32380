//! Weight quantizers computed from the weights at every step (SAWB, plain uniform, least-squares
//! binary bases), with the straight-through estimator as their backward rule.
//!
//! Each output channel (row of `[out][fan_in]`, or of `[out][cin][kh][kw]` flattened) gets its own
//! parameters: SAWB's clip `c1 sqrt(E[w^2]) - c2 E|w|` with the per-bit coefficients, the uniform
//! scale `max |w| / (2^(bits-1) - 1)`, or the basis scales of ls-1 / ls-2 / ls-T / gf-k. All of
//! them are `arith::quant`'s; nothing is re-derived here.

use candle_core::{Result, Tensor};
use qmac_arith::quant::{lsq, sawb, uniform, Granularity, QuantError, Rounding};

use super::{host, straight_through};
use crate::scheme::WeightQuant;

/// The dequantized weights of `w` under `q`, per output channel (dim 0). `q` must not be
/// [`WeightQuant::Levels`] (see [`super::levels`]).
pub fn quantized_values(
    w: &[f32],
    out_channels: usize,
    q: WeightQuant,
    rounding: Rounding,
) -> std::result::Result<Vec<f32>, QuantError> {
    let g = Granularity::PerChannel {
        axis0_len: out_channels,
    };
    Ok(match q {
        WeightQuant::Sawb { bits } => sawb::quantize(w, g, bits)?.dequantize(),
        WeightQuant::Uniform { bits } => uniform::signed(w, g, bits, rounding)?.dequantize(),
        WeightQuant::Binary(scheme) => lsq::quantize(w, g, scheme)?.dequantize(),
        WeightQuant::Levels { .. } => {
            return Err(QuantError::InvalidParameter {
                what: "weight quantizer (levels need their table)",
                index: 0,
                value: 0.0,
                requirement: "not levels",
            })
        }
    })
}

/// Quantized weights in the forward pass, the identity gradient in the backward pass.
pub fn quantize(w: &Tensor, q: WeightQuant, rounding: Rounding) -> Result<Tensor> {
    let values =
        quantized_values(&host(w)?, w.dim(0)?, q, rounding).map_err(candle_core::Error::wrap)?;
    let qt = Tensor::from_vec(values, w.shape(), w.device())?;
    straight_through(w, &qt)
}
