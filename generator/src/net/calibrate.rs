//! PACT clips from calibration activations, by a selectable rule ([`CalibRule`]):
//!
//! - `max`: the largest value (nothing is clipped);
//! - `percentile`: the nearest-rank percentile `p` of the values (`qmac_arith::quant::levels::channel_alphas`);
//! - `mse`: the least quantization error: among the 128 clips `max * i / 128` (`i = 1..=128`), the one
//!   whose PACT codes (`bits`, the network's rounding) dequantized are nearest to `max(v, 0)` in squared
//!   error over the values (at most 16384 of a channel's values, evenly strided, take part; ties go to
//!   the larger clip).
//!
//! With per-channel clips each output channel gets its own; per tensor, all values decide one clip.
//! The fallbacks of `channel_alphas` apply to every rule: a channel without a positive value borrows
//! the largest clip of the others (its codes are 0 whatever the clip).
//!
//! Binary activations (`output = "bases"`) get one set of basis scales for the tensor, fitted to all of
//! the layer's float pre-activations by the scheme's own least-squares quantizer
//! (`qmac_arith::quant::lsq::quantize`: ls-1, ls-2 with the exact optimal `v1`, ls-T, gf-k), each scale
//! rounded to 9 significant digits (so that `network.json` holds exactly the scales used); the float
//! network then goes on with the binary quantizer's values, so the later layers are calibrated on what
//! they will see. A logits output has nothing to calibrate.
//!
//! Clips and basis scales given in the description (`[input] alpha`, a layer's `quant.clips`) are
//! taken as they are. [`calibrate`] returns a [`Calibrated`]: everything the chaining
//! ([`super::chain::chain`]) needs from data.

use super::format::{CalibRule, Calibration, Network, OutputMode};
use super::lower::Stage;
use super::NetError;
use crate::quantize::{GranularityName, InputScheme};
use qmac_arith::quant::levels::{channel_alphas, AlphaRule};
use qmac_arith::quant::{lsq, round_f64, Granularity, Rounding};
use serde::{Deserialize, Serialize};

/// The quantizer of one compute stage's output activations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActQuant {
    /// PACT clips, one per output channel (equal with `act_granularity = "per_tensor"`).
    Pact(Vec<f64>),
    /// Binary-basis activations: the scheme and its basis scales `[v1, v2]` (1 or 2), one set for the
    /// tensor.
    Bases {
        /// `ls1`, `ls2`, `lsT` or `gf`.
        scheme: InputScheme,
        /// The basis scales.
        scales: Vec<f64>,
    },
    /// The last layer's logits (nothing to calibrate).
    Logits,
}

/// Everything the integer chaining takes from calibration data: the network input's PACT clip and
/// every compute stage's output quantizer, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibrated {
    /// PACT clip of the network input (one for the tensor).
    pub input_alpha: f64,
    /// One per compute stage.
    pub acts: Vec<ActQuant>,
}

/// The basis scales of `scheme` with `bases` bases fitted to `values` (one set for all of them), each
/// rounded to 9 significant digits.
pub fn basis_scales(values: &[f64], scheme: InputScheme, bases: u32) -> Vec<f64> {
    let binary = scheme.binary(bases).expect("a binary scheme");
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    let q = lsq::quantize(&v, Granularity::PerTensor, binary).expect("finite calibration values");
    q.bases().iter().map(|b| {
        let s = b.scales()[0];
        format!("{s:.8e}").parse::<f64>().unwrap_or(s)
    }).collect()
}

/// `values` replaced by the binary quantizer's values with fixed basis scales `v`
/// (`lsq::quantize_with_scales`, in `f32`: the residual signs times the scales): what the next layer
/// computes with.
pub fn binarize(values: &mut [f64], v: &[f64]) {
    let x: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    let q = lsq::quantize_with_scales(&x, v).expect("finite values and scales");
    values.copy_from_slice(&q.dequantize_f64());
}

/// Calibrate the network input's clip and every compute stage's output quantizer on `n` samples `x`
/// (see the module docs).
pub fn calibrate(net: &Network, stages: &[Stage], x: &[f32], n: usize) -> Result<Calibrated, NetError> {
    let rounding: Rounding = net.rounding.into();
    let cal = &net.calibration;
    let xin: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let input_alpha = match net.input_alpha {
        Some(a) => a,
        None => clips(&by_channel(&xin, n, 1, false), cal, net.input_bits, rounding)[0],
    };
    let computes: Vec<_> = stages.iter().filter_map(|s| if let Stage::Compute(c) = s { Some(c) } else { None }).collect();
    let mut acts = Vec::with_capacity(computes.len());
    super::float::forward_with(stages, x, n, |i, y| {
        let c = computes[i];
        let q = &c.quant;
        let act = match q.output {
            OutputMode::Pact => {
                let out = c.out_channels();
                let per_channel = q.act_granularity == GranularityName::PerChannel;
                let bits = q.out_bits.expect("PACT outputs have bits");
                let a = match &q.clips {
                    Some(given) => given.clone(),
                    None => clips(&by_channel(y, n, out, per_channel), cal, bits, rounding),
                };
                ActQuant::Pact(if a.len() == 1 { vec![a[0]; out] } else { a })
            }
            OutputMode::Bases => {
                let scales = match &q.clips {
                    Some(given) => given.clone(),
                    None => basis_scales(y, q.act, q.out_bits.expect("basis outputs have bits")),
                };
                binarize(y, &scales);
                ActQuant::Bases { scheme: q.act, scales }
            }
            OutputMode::Logits => ActQuant::Logits,
        };
        acts.push(act);
    });
    Ok(Calibrated { input_alpha, acts })
}

/// Values of `channels` channels from channel-major samples `[n][channels][per]`, one vector per
/// channel (or one for all with `per_channel = false`).
pub fn by_channel(x: &[f64], n: usize, channels: usize, per_channel: bool) -> Vec<Vec<f64>> {
    let per = x.len() / (n * channels).max(1);
    if !per_channel {
        return vec![x.to_vec()];
    }
    let mut r = vec![Vec::with_capacity(n * per); channels];
    for s in 0..n {
        for (c, v) in r.iter_mut().enumerate() {
            v.extend_from_slice(&x[(s * channels + c) * per..(s * channels + c + 1) * per]);
        }
    }
    r
}

const GRID: usize = 128;
const MSE_SAMPLES: usize = 16384;

fn mse_clip(v: &[f64], max: f64, bits: u32, rounding: Rounding) -> f64 {
    let stride = v.len().div_ceil(MSE_SAMPLES).max(1);
    let n = f64::from((1u32 << bits) - 1);
    let mut best = (f64::INFINITY, max);
    for i in 1..=GRID {
        let alpha = max * i as f64 / GRID as f64;
        let s = alpha / n;
        let err: f64 = v
            .iter()
            .step_by(stride)
            .map(|&x| {
                let r = x.max(0.0);
                let q = round_f64(r.min(alpha) / s, rounding).clamp(0.0, n) * s;
                (r - q) * (r - q)
            })
            .sum();
        if err <= best.0 {
            best = (err, alpha);
        }
    }
    best.1
}

/// One PACT clip per group of values (`groups`, from [`by_channel`]) for `bits`-bit codes.
pub fn clips(groups: &[Vec<f64>], cal: &Calibration, bits: u32, rounding: Rounding) -> Vec<f64> {
    let rule = match cal.rule {
        CalibRule::Percentile => AlphaRule::Percentile(cal.percentile),
        CalibRule::Max | CalibRule::Mse => AlphaRule::Max,
    };
    let len = groups.first().map_or(0, Vec::len);
    let flat: Vec<f32> = if groups.iter().all(|g| g.len() == len) && len > 0 {
        groups.iter().flatten().map(|&v| v as f32).collect()
    } else {
        return vec![1.0; groups.len()];
    };
    let alphas = channel_alphas(&flat, groups.len(), rule)
        .expect("validated percentile and nonempty channels");
    if cal.rule != CalibRule::Mse {
        return alphas;
    }
    groups
        .iter()
        .zip(&alphas)
        .map(|(g, &a)| {
            let max = g.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            if max > 0.0 {
                mse_clip(g, max, bits, rounding)
            } else {
                a
            }
        })
        .collect()
}
