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
//! the largest clip of the others (its codes are 0 whatever the clip). A logits output takes the range
//! `[lo, hi]` of all its values: `max` and `mse` the smallest and largest value, `percentile` the
//! percentiles `100 - p` and `p`.

use super::format::{CalibRule, Calibration};
use qmac_arith::quant::levels::{channel_alphas, AlphaRule};
use qmac_arith::quant::{round_f64, Rounding};

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

/// The range `[lo, hi]` (with `hi > lo`) of a logits output.
pub fn logit_range(values: &[f64], cal: &Calibration) -> (f64, f64) {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return (0.0, 1.0);
    }
    let (lo, hi) = match cal.rule {
        CalibRule::Percentile => {
            let rank =
                |p: f64| ((p / 100.0 * n as f64 - 1e-9).ceil().clamp(1.0, n as f64) as usize) - 1;
            (
                v[rank(100.0 - cal.percentile).min(n - 1)],
                v[rank(cal.percentile)],
            )
        }
        CalibRule::Max | CalibRule::Mse => (v[0], v[n - 1]),
    };
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + 1.0)
    }
}
