//! The float network: the lowered stages on float inputs, in `f64`. It gives the float accuracy and the
//! activations the PACT clips and basis scales are calibrated on.
//!
//! A layer's activation is its ReLU, or, for a layer with binary activations (`output = "bases"`), the
//! binary quantizer with its basis scales (the residual signs scaled, `lsq::quantize_with_scales`):
//! that is the layer's activation function, not an approximation of one. A network's PACT clips are
//! not applied in float.

use super::lower::{gemm_rows, to_channel_major, Stage};

/// What [`forward`] computes for `n` samples.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatRun {
    /// Per compute stage: its output before the ReLU (`y = W x + b`), channel-major per sample,
    /// `[n][out][P]`.
    pub pre: Vec<Vec<f64>>,
    /// The last stage's output: the logits `[n][classes]` for a dense last layer.
    pub output: Vec<f64>,
}

/// Run the float network on `n` samples `x` (`[n][input elements]`, channel-major per sample), with
/// ReLUs only (no binary activation quantizers: see [`forward_with`]).
pub fn forward(stages: &[Stage], x: &[f32], n: usize) -> FloatRun {
    forward_with(stages, x, n, |_, _| {})
}

/// [`forward`], with `act(i, y)` called on compute stage `i`'s pre-activation `y` (channel-major, after
/// it is recorded in [`FloatRun::pre`] and before the ReLU): it may replace the values with the
/// layer's activation (the binary quantizer of a `bases` layer), which is what the next stage sees.
pub fn forward_with(stages: &[Stage], x: &[f32], n: usize, mut act: impl FnMut(usize, &mut Vec<f64>)) -> FloatRun {
    let mut cur: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let mut pre = Vec::new();
    for s in stages {
        cur = match s {
            Stage::Compute(c) => {
                let (out, k) = (c.out_channels(), c.k());
                let rows = gemm_rows(c.conv.as_ref(), c.input, &cur, n, 0.0);
                let patches = rows.len() / k;
                let mut y = vec![0.0f64; patches * out];
                for p in 0..patches {
                    let r = &rows[p * k..(p + 1) * k];
                    for o in 0..out {
                        let w = &c.weight[o * k..(o + 1) * k];
                        y[p * out + o] = w
                            .iter()
                            .zip(r)
                            .map(|(&w, &v)| f64::from(w) * v)
                            .sum::<f64>()
                            + f64::from(c.bias[o]);
                    }
                }
                let mut y = to_channel_major(&y, n, out);
                pre.push(y.clone());
                act(pre.len() - 1, &mut y);
                if c.relu {
                    y.into_iter().map(|v| v.max(0.0)).collect()
                } else {
                    y
                }
            }
            Stage::Host(h) => h.run(cur, n),
        };
    }
    FloatRun { pre, output: cur }
}

/// The index of the largest value of each row of `classes` values (the first on ties).
pub fn argmax<T: Copy + PartialOrd>(y: &[T], classes: usize) -> Vec<usize> {
    y.chunks(classes.max(1))
        .map(|r| {
            r.iter()
                .enumerate()
                .fold(0, |b, (i, v)| if *v > r[b] { i } else { b })
        })
        .collect()
}

/// Fraction of `pred` equal to `labels`.
pub fn accuracy(pred: &[usize], labels: &[i64]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    pred.iter()
        .zip(labels)
        .filter(|(p, l)| **p as i64 == **l)
        .count() as f64
        / labels.len() as f64
}
