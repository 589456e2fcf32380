//! The integer network: the trainer's quantized evaluation with the array's exact semantics.
//!
//! The integer parameters of every layer (weight code values, and per output channel the bias, clip,
//! multiplier and shift of `qmac_arith::pipeline::ChannelParams`) are derived once, by qmac's
//! reference (`qmac net`, from the trained network exported into the network format), and handed
//! here as an [`IntNet`]. Evaluating it needs no float: the network input's PACT codes
//! (`arith::quant::pact`), exact integer dot products (a convolution with zero padding, whose code 0
//! is worth 0), the output stage of `arith::pipeline` ([`output_code_frac`]: `acc * 2^frac + bias`,
//! clip, requantize, saturate), max-pool on codes and flatten. So the predictions of [`IntNet::predict`]
//! are those of the reference and of the array, sample for sample.

use qmac_arith::pipeline::{output_code_frac, ChannelParams};
use qmac_arith::quant::{pact, Granularity, Rounding};

use crate::error::TrainError;

/// A convolution's geometry (zero padding; no dilation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntConv {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sy, sx]`.
    pub stride: [usize; 2],
    /// `[py, px]`.
    pub padding: [usize; 2],
}

/// A dense or conv2d layer in integers.
#[derive(Debug, Clone, PartialEq)]
pub struct IntCompute {
    /// Input shape of one sample: `[features]` or `[channels, h, w]`.
    pub input: Vec<usize>,
    /// The convolution, if it is one.
    pub conv: Option<IntConv>,
    /// Output channels.
    pub out: usize,
    /// Weight code values `[out][k]` (`k` in im2col order for a convolution: channel, row, column).
    pub values: Vec<i64>,
    /// Every output channel's parameters.
    pub params: Vec<ChannelParams>,
    /// Output code bits.
    pub out_bits: u32,
    /// Fractional bits of the bias (`bias_frac_bits`).
    pub frac: u32,
}

/// One stage of an [`IntNet`].
#[derive(Debug, Clone, PartialEq)]
pub enum IntStage {
    /// On the array.
    Compute(IntCompute),
    /// Max-pool of codes over `size` windows with `stride`; `input` is `[c, h, w]`.
    MaxPool {
        /// Input shape.
        input: [usize; 3],
        /// `[ph, pw]`.
        size: [usize; 2],
        /// `[sy, sx]`.
        stride: [usize; 2],
    },
    /// `[c, h, w]` to `[c h w]` (channel-major: nothing moves).
    Flatten,
}

/// An integer network: the network input's PACT quantizer and the stages.
#[derive(Debug, Clone, PartialEq)]
pub struct IntNet {
    /// The network input's clip.
    pub input_alpha: f64,
    /// The network input's code bits.
    pub input_bits: u32,
    /// Rounding of the input quantizer and of every requantization.
    pub rounding: Rounding,
    /// The stages in order; the last compute stage's codes are the class scores.
    pub stages: Vec<IntStage>,
}

impl IntNet {
    /// Checks that the stages fit together (sizes of weights and parameters, shapes), so that
    /// [`IntNet::codes`] cannot index out of range.
    pub fn check(&self, input_len: usize) -> Result<(), TrainError> {
        let bad = |i: usize, what: &str| Err(TrainError::ModelShape(format!("integer network stage {i}: {what}")));
        let mut len = input_len;
        if !(1..=8).contains(&self.input_bits) || !(self.input_alpha.is_finite() && self.input_alpha > 0.0) {
            return bad(0, "the input quantizer is malformed");
        }
        for (i, s) in self.stages.iter().enumerate() {
            len = match s {
                IntStage::Compute(c) => {
                    let k = match (c.conv, c.input.as_slice()) {
                        (None, &[f]) => f,
                        (Some(p), &[ch, h, w]) if p.kernel[0] <= h + 2 * p.padding[0] && p.kernel[1] <= w + 2 * p.padding[1] && p.stride.iter().all(|&v| v > 0) => ch * p.kernel[0] * p.kernel[1],
                        _ => return bad(i, "the convolution does not fit its input"),
                    };
                    if c.input.iter().product::<usize>() != len || c.values.len() != c.out * k || c.params.len() != c.out || !(1..=63).contains(&c.out_bits) {
                        return bad(i, "its sizes do not fit");
                    }
                    c.out * out_pixels(c)
                }
                IntStage::MaxPool { input, size, stride } => {
                    let [ch, h, w] = *input;
                    if ch * h * w != len || size.contains(&0) || stride.contains(&0) || size[0] > h || size[1] > w {
                        return bad(i, "the pooling does not fit its input");
                    }
                    ch * ((h - size[0]) / stride[0] + 1) * ((w - size[1]) / stride[1] + 1)
                }
                IntStage::Flatten => len,
            };
        }
        Ok(())
    }

    /// The network input's codes of `x` (`n` samples).
    pub fn input_codes(&self, x: &[f32]) -> Result<Vec<u64>, TrainError> {
        Ok(pact::quantize(x, Granularity::PerTensor, &[self.input_alpha], self.input_bits, self.rounding)?
            .codes()
            .iter()
            .map(|&c| u64::from(c))
            .collect())
    }

    /// The output codes of every compute stage for `n` samples `x` (channel-major per sample).
    pub fn codes(&self, x: &[f32], n: usize) -> Result<Vec<Vec<u64>>, TrainError> {
        let mut cur = self.input_codes(x)?;
        let mut outs = Vec::new();
        for s in &self.stages {
            cur = match s {
                IntStage::Compute(c) => {
                    let len: usize = c.input.iter().product();
                    let y: Vec<u64> = (0..n).flat_map(|i| compute(c, &cur[i * len..(i + 1) * len], self.rounding)).collect();
                    outs.push(y.clone());
                    y
                }
                IntStage::MaxPool { input, size, stride } => {
                    let len: usize = input.iter().product();
                    (0..n).flat_map(|i| max_pool(&cur[i * len..(i + 1) * len], *input, *size, *stride)).collect()
                }
                IntStage::Flatten => cur,
            };
        }
        Ok(outs)
    }

    /// The predicted class of each of `n` samples `x`: the argmax of the last compute stage's codes
    /// (the first channel on ties).
    pub fn predict(&self, x: &[f32], n: usize) -> Result<Vec<u32>, TrainError> {
        let codes = self.codes(x, n)?;
        let last = codes.last().ok_or_else(|| TrainError::ModelShape("integer network without a compute stage".into()))?;
        let classes = last.len() / n.max(1);
        Ok(last
            .chunks(classes.max(1))
            .map(|row| row.iter().enumerate().fold((0usize, 0u64), |(bi, bv), (i, &v)| if i == 0 || v > bv { (i, v) } else { (bi, bv) }).0 as u32)
            .collect())
    }
}

fn out_pixels(c: &IntCompute) -> usize {
    match (c.conv, c.input.as_slice()) {
        (Some(p), &[_, h, w]) => ((h + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1) * ((w + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1),
        _ => 1,
    }
}

/// One sample through a compute stage: `[out][pixels]` codes.
fn compute(c: &IntCompute, x: &[u64], rounding: Rounding) -> Vec<u64> {
    let k = c.values.len() / c.out;
    let code = |o: usize, acc: i64| output_code_frac(acc, &c.params[o], rounding, c.out_bits, c.frac);
    match (c.conv, c.input.as_slice()) {
        (Some(p), &[ch, h, w]) => {
            let oh = (h + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1;
            let ow = (w + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1;
            let mut y = Vec::with_capacity(c.out * oh * ow);
            for o in 0..c.out {
                let wo = &c.values[o * k..(o + 1) * k];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0i64;
                        for ci in 0..ch {
                            for ky in 0..p.kernel[0] {
                                for kx in 0..p.kernel[1] {
                                    let iy = (oy * p.stride[0] + ky).wrapping_sub(p.padding[0]);
                                    let ix = (ox * p.stride[1] + kx).wrapping_sub(p.padding[1]);
                                    if iy < h && ix < w {
                                        acc += wo[(ci * p.kernel[0] + ky) * p.kernel[1] + kx] * x[(ci * h + iy) * w + ix] as i64;
                                    }
                                }
                            }
                        }
                        y.push(code(o, acc));
                    }
                }
            }
            y
        }
        _ => (0..c.out)
            .map(|o| {
                let acc = c.values[o * k..(o + 1) * k].iter().zip(x).map(|(&v, &a)| v * a as i64).sum();
                code(o, acc)
            })
            .collect(),
    }
}

fn max_pool(x: &[u64], [c, h, w]: [usize; 3], size: [usize; 2], stride: [usize; 2]) -> Vec<u64> {
    let oh = (h - size[0]) / stride[0] + 1;
    let ow = (w - size[1]) / stride[1] + 1;
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = 0;
                for dy in 0..size[0] {
                    for dx in 0..size[1] {
                        m = m.max(x[(ch * h + oy * stride[0] + dy) * w + ox * stride[1] + dx]);
                    }
                }
                out.push(m);
            }
        }
    }
    out
}
