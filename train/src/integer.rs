//! The integer network: the trainer's quantized evaluation with the array's exact semantics.
//!
//! The integer parameters of every layer (weight code values, and per output channel the bias, clip,
//! multiplier and shift of `qmac_arith::pipeline::ChannelParams`) are derived once, by qmac's
//! reference (`qmac net`, from the trained network exported into the network format), and handed
//! here as an [`IntNet`]. Evaluating it needs no float: the network input's PACT codes
//! (`arith::quant::pact`), exact integer dot products (a convolution with zero padding, whose code 0
//! is worth 0), the output stage of `arith::pipeline` ([`output_code_frac`]: `acc * 2^frac + bias`,
//! clip, requantize, saturate; [`bases_code`]: the residual signs of binary activations; the logits
//! `acc * 2^frac + bias`), max-pool on codes and flatten. With binary inputs the accumulator is
//! `sum_p m[o][p] D_p` over the basis pairs `p = i * a_bases + j`, `D_p` the sum of the products of
//! the basis signs over the `k` elements and the tile's padded elements (codes 0, every basis -1). So the predictions of [`IntNet::predict`]
//! are those of the reference and of the array, sample for sample.

use qmac_arith::pool::max_pool;
use qmac_arith::pipeline::{bases_code, biased, output_code_frac, ChannelParams};
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

/// What a compute stage's output stage sends.
#[derive(Debug, Clone, PartialEq)]
pub enum IntOutput {
    /// PACT codes of `out_bits` bits.
    Pact,
    /// Binary-basis codes with `bases` bases (the next layer's binary activations).
    Bases {
        /// 1 or 2.
        bases: u32,
    },
    /// The logits `t = acc * 2^frac + bias` (two's complement in the codes); `units[o]` is the real
    /// value of one unit of channel `o`. The class is the argmax of `t` when every channel has the
    /// same positive unit, else of the `f64` products `t * units[o]` (the first on ties).
    Logits {
        /// Real value of one unit per channel.
        units: Vec<f64>,
    },
}

/// Binary (basis-coded) inputs of a compute stage.
#[derive(Debug, Clone, PartialEq)]
pub struct IntBasesIn {
    /// Weight bases.
    pub w_bases: u32,
    /// Activation bases.
    pub a_bases: u32,
    /// Basis-pair scales `[out][w_bases * a_bases]`, pair `p = i * a_bases + j`.
    pub pairs: Vec<i64>,
    /// Padded elements per output (the tile's depth minus `k`), each adding `+1` to every `D_p`.
    pub padded: usize,
    /// The code of the value 0 (a convolution's zero padding).
    pub pad_code: u64,
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
    /// Weight code values `[out][k]` (`k` in im2col order for a convolution: channel, row, column);
    /// with binary inputs the weights' basis codes.
    pub values: Vec<i64>,
    /// Binary inputs, if the inputs are basis codes.
    pub bases_in: Option<IntBasesIn>,
    /// The output stage.
    pub output: IntOutput,
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
    /// Max-pool of codes over `size` windows with `stride`; `input` is `[c, h, w]`. Basis codes
    /// (`bases`: their scales) are pooled by value, the larger code on equal values.
    MaxPool {
        /// The basis scales of basis codes.
        bases: Option<Vec<f64>>,
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
                    let pairs_ok = c.bases_in.as_ref().is_none_or(|b| b.pairs.len() == c.out * (b.w_bases * b.a_bases) as usize && (1..=4).contains(&b.w_bases) && (1..=4).contains(&b.a_bases));
                    let out_ok = match &c.output {
                        IntOutput::Pact => (1..=63).contains(&c.out_bits),
                        IntOutput::Bases { bases } => (1..=2).contains(bases),
                        IntOutput::Logits { units } => units.len() == c.out,
                    };
                    if c.input.iter().product::<usize>() != len || c.values.len() != c.out * k || c.params.len() != c.out || !pairs_ok || !out_ok {
                        return bad(i, "its sizes do not fit");
                    }
                    c.out * out_pixels(c)
                }
                IntStage::MaxPool { input, size, stride, .. } => {
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
                IntStage::MaxPool { input, size, stride, bases } => {
                    let len: usize = input.iter().product();
                    // basis codes by value: pool their ranks, the larger code on equal values
                    let order = bases.as_ref().map(|v| {
                        let value = |c: u64| -> f64 { v.iter().enumerate().map(|(j, &s)| if c >> j & 1 == 1 { s } else { -s }).sum() };
                        let mut order: Vec<u64> = (0..1u64 << v.len()).collect();
                        order.sort_by(|&a, &b| value(a).total_cmp(&value(b)).then(a.cmp(&b)));
                        order
                    });
                    let keys: Vec<u64> = match &order {
                        Some(o) => cur.iter().map(|&c| o.iter().position(|&x| x == c).unwrap_or(0) as u64).collect(),
                        None => cur,
                    };
                    let pooled = (0..n).flat_map(|i| max_pool(&keys[i * len..(i + 1) * len], *input, *size, *stride));
                    match &order {
                        Some(o) => pooled.map(|r| o[r as usize]).collect(),
                        None => pooled.collect(),
                    }
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
        let none = || TrainError::ModelShape("integer network without a compute stage".into());
        let last = codes.last().ok_or_else(none)?;
        let stage = self.stages.iter().rev().find_map(|s| if let IntStage::Compute(c) = s { Some(c) } else { None }).ok_or_else(none)?;
        let classes = (last.len() / n.max(1)).max(1);
        let per = classes / stage.out.max(1);
        Ok(match &stage.output {
            IntOutput::Logits { units } if !(units.iter().all(|&u| u == units[0]) && units[0] > 0.0) => {
                let real: Vec<f64> = last.iter().enumerate().map(|(i, &t)| t as i64 as f64 * units[(i % classes) / per.max(1)]).collect();
                real.chunks(classes).map(argmax).collect()
            }
            IntOutput::Logits { .. } => last.iter().map(|&t| t as i64).collect::<Vec<i64>>().chunks(classes).map(argmax).collect(),
            _ => last.chunks(classes).map(argmax).collect(),
        })
    }
}

/// The index of the largest value, the first on ties.
fn argmax<T: PartialOrd + Copy>(row: &[T]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

fn out_pixels(c: &IntCompute) -> usize {
    match (c.conv, c.input.as_slice()) {
        (Some(p), &[_, h, w]) => ((h + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1) * ((w + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1),
        _ => 1,
    }
}

/// The sign (+1 or -1) of basis `i` of a basis code.
fn sign(code: u64, i: u32) -> i64 {
    if code >> i & 1 == 1 {
        1
    } else {
        -1
    }
}

/// One sample through a compute stage: `[out][pixels]` codes (logits as two's complement).
fn compute(c: &IntCompute, x: &[u64], rounding: Rounding) -> Vec<u64> {
    let k = c.values.len() / c.out;
    let code = |o: usize, acc: i64| -> u64 {
        match &c.output {
            IntOutput::Pact => output_code_frac(acc, &c.params[o], rounding, c.out_bits, c.frac),
            IntOutput::Bases { bases } => bases_code(acc, &c.params[o], c.frac, *bases),
            IntOutput::Logits { .. } => biased(acc, c.params[o].bias, c.frac) as i64 as u64,
        }
    };
    // the accumulator of output `o` over the elements (weight index, input code)
    let acc_of = |o: usize, elems: &mut dyn Iterator<Item = (usize, u64)>| -> i64 {
        let wo = &c.values[o * k..(o + 1) * k];
        match &c.bases_in {
            None => elems.map(|(kk, a)| wo[kk] * a as i64).sum(),
            Some(b) => {
                let np = (b.w_bases * b.a_bases) as usize;
                let mut d = vec![b.padded as i64; np];
                for (kk, a) in elems {
                    for i in 0..b.w_bases {
                        for j in 0..b.a_bases {
                            d[(i * b.a_bases + j) as usize] += sign(wo[kk] as u64, i) * sign(a, j);
                        }
                    }
                }
                b.pairs[o * np..(o + 1) * np].iter().zip(&d).map(|(m, d)| m * d).sum()
            }
        }
    };
    let pad = c.bases_in.as_ref().map_or(0, |b| b.pad_code);
    match (c.conv, c.input.as_slice()) {
        (Some(p), &[ch, h, w]) => {
            let oh = (h + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1;
            let ow = (w + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1;
            let mut y = Vec::with_capacity(c.out * oh * ow);
            for o in 0..c.out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut elems = (0..ch).flat_map(|ci| (0..p.kernel[0]).flat_map(move |ky| (0..p.kernel[1]).map(move |kx| (ci, ky, kx)))).map(|(ci, ky, kx)| {
                            let iy = (oy * p.stride[0] + ky).wrapping_sub(p.padding[0]);
                            let ix = (ox * p.stride[1] + kx).wrapping_sub(p.padding[1]);
                            let a = if iy < h && ix < w { x[(ci * h + iy) * w + ix] } else { pad };
                            ((ci * p.kernel[0] + ky) * p.kernel[1] + kx, a)
                        });
                        y.push(code(o, acc_of(o, &mut elems)));
                    }
                }
            }
            y
        }
        _ => (0..c.out).map(|o| code(o, acc_of(o, &mut x.iter().copied().enumerate()))).collect(),
    }
}

