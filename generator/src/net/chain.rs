//! Integer chaining: every compute stage quantized with [`crate::quantize::quantize_layer`], taking the
//! previous stage's output codes as its input codes, exactly as the hardware passes them.
//!
//! A tensor of codes carries one real scale per channel: `x = s[c] * code`. The network input gets
//! PACT codes with one clip (`input.bits`, `s = alpha_in / (2^bits - 1)`). A compute stage's output
//! codes have the scales of its PACT clips, `s[o] = alpha[o] / (2^out_bits - 1)`; max-pool keeps them
//! (max commutes with the monotone code map of a channel); flatten repeats a channel's scale for each
//! of its `H * W` features. The next compute stage takes the codes as they are: its input scale is 1
//! (`input.alpha = 2^in_bits - 1` in its spec) and the scales are folded into its float weights,
//! `W'[o][k] = W[o][k] * s[c(k)]` with `c(k)` the input channel of GEMM column `k` (`k / (kh * kw)` for a
//! convolution, `k` for a dense layer), before the weight quantizer sees them. So one accumulator unit
//! of output channel `o` is worth `s_w'[o]`, and bias, clip, multiplier and shift follow from it as for
//! any layer (docs/quantize.md, "Integer parameters"); no float passes between layers.
//!
//! A logits output (the last layer) shifts every channel's bias by the calibrated `-lo` and clips all
//! channels at `hi - lo` with one scale `s = (hi - lo) / (2^logits_bits - 1)`: the codes are PACT of
//! `y - lo`, so `y ~ lo + s * code` and the argmax of the codes is the argmax of the clipped logits
//! (ties: the first channel).

use super::calibrate::{by_channel, clips, logit_range};
use super::float::{argmax, forward};
use super::format::{Network, OutputMode, Shape};
use super::lower::{gemm_rows, max_pool_batch, to_channel_major, Compute, ConvParams, Stage};
use super::NetError;
use crate::config::{Config, RawConfig};
use crate::quantize::{
    gemm_layers, quantize_layer, AlphaSpec, ConvSpec, InputScheme, InputSpec, LayerTensors,
    LayoutName, OutputSpec, QuantizedLayer, Source, Spec, WeightSpec,
};
use crate::vectors;
use qmac_arith::quant::{pact, Granularity, Rounding};
use serde::{Deserialize, Serialize};

/// Format tag of `network.json`.
pub const FORMAT: &str = "qmac-net 1";

/// The network input's PACT quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputQuant {
    /// Code bits.
    pub bits: u32,
    /// Clip.
    pub alpha: f64,
    /// `alpha / (2^bits - 1)`.
    pub scale: f64,
}

/// A quantized compute stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QCompute {
    /// Index of the layer in `net.toml`.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Input shape of one sample.
    pub input: Shape,
    /// Output shape of one sample.
    pub output: Shape,
    /// Convolution geometry.
    pub conv: Option<ConvParams>,
    /// Output mode.
    pub mode: OutputMode,
    /// Real scale of each input channel's codes, folded into the weights.
    pub in_scales: Vec<f64>,
    /// The calibrated clips: one per output channel (PACT), or `[lo, hi]` (logits).
    pub clips: Vec<f64>,
    /// Logits: the offset `lo` (a code `c` is worth `lo + scale * c`); 0 for PACT.
    pub offset: f64,
    /// The quantized layer (weights folded with `in_scales`, input scale 1).
    pub layer: QuantizedLayer,
}

impl QCompute {
    /// Real value of each output channel's code step.
    pub fn out_scales(&self) -> &[f64] {
        &self.layer.output.scales
    }

    /// Steps per tile: the layer's own `max_depth / lanes`.
    pub fn steps(&self) -> usize {
        (self.layer.config.max_depth / self.layer.config.lanes) as usize
    }

    /// The layer's array configuration with the depth and accumulator left open: layers with the
    /// same key run on one array.
    pub fn hardware_key(&self) -> RawConfig {
        RawConfig {
            max_depth: 0,
            acc_bits: None,
            ..self.layer.config.clone()
        }
    }
}

/// A quantized stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QStage {
    /// On the array.
    Compute(Box<QCompute>),
    /// Host max-pool on codes.
    MaxPool {
        /// Layer name.
        name: String,
        /// `[ph, pw]`.
        size: [usize; 2],
        /// `[sy, sx]`.
        stride: [usize; 2],
        /// Input shape.
        input: Shape,
        /// Output shape.
        output: Shape,
    },
    /// Host flatten.
    Flatten {
        /// Layer name.
        name: String,
        /// Input shape.
        input: Shape,
        /// Output shape.
        output: Shape,
    },
}

/// The calibration as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// The rule used.
    pub rule: String,
    /// Its percentile (rule `percentile`).
    pub percentile: Option<f64>,
    /// Samples calibrated on.
    pub samples: usize,
    /// The calibration file.
    pub file: String,
}

/// One array configuration and the compute stages it serves.
#[derive(Clone, Debug)]
pub struct Hardware {
    /// The configuration: the deepest layer's depth and the widest accumulator of its layers.
    pub config: Config,
    /// Indices into the compute stages (in network order) that run on it.
    pub layers: Vec<usize>,
}

/// A quantized network: what `network.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedNet {
    /// [`FORMAT`].
    pub format: String,
    /// The validated description.
    pub network: Network,
    /// The weights file.
    pub weights_file: String,
    /// How the clips were chosen.
    pub calibration: CalibrationRecord,
    /// The network input's quantizer.
    pub input: InputQuant,
    /// The float network (batch norm folded), for the float accuracy.
    pub float: Vec<Stage>,
    /// The quantized stages.
    pub stages: Vec<QStage>,
}

fn layer_err(c: &Compute) -> impl FnOnce(crate::quantize::QuantizeError) -> NetError + '_ {
    move |e| NetError::Layer {
        index: c.index,
        name: c.name.clone(),
        source: Box::new(e),
    }
}

/// Quantize the lowered network: calibrate every clip on the float network's activations of `calib`
/// (`n` samples), then each compute stage with the scales of its input codes folded into its weights.
pub fn quantize(
    net: &Network,
    stages: Vec<Stage>,
    calib: &[f32],
    n: usize,
    weights_file: &str,
    calib_file: &str,
) -> Result<QuantizedNet, NetError> {
    let rounding: Rounding = net.rounding.into();
    let cal = &net.calibration;
    let run = forward(&stages, calib, n);
    let xin: Vec<f64> = calib.iter().map(|&v| f64::from(v)).collect();
    let a_in = match net.input_alpha {
        Some(a) => a,
        None => clips(&by_channel(&xin, n, 1, false), cal, net.input_bits, rounding)[0],
    };
    let in_n = f64::from((1u32 << net.input_bits) - 1);
    let input = InputQuant {
        bits: net.input_bits,
        alpha: a_in,
        scale: a_in / in_n,
    };
    let mut scales = vec![input.scale; net.input.channels()];
    let mut bits = net.input_bits;
    let mut out = Vec::with_capacity(stages.len());
    let mut ci = 0;
    for s in &stages {
        match s {
            Stage::Compute(c) => {
                let q = quantize_compute(net, c, &scales, bits, &run.pre[ci], n, weights_file)?;
                scales = q.out_scales().to_vec();
                bits = q.layer.output.bits;
                out.push(QStage::Compute(Box::new(q)));
                ci += 1;
            }
            Stage::MaxPool {
                name,
                size,
                stride,
                input,
                output,
            } => out.push(QStage::MaxPool {
                name: name.clone(),
                size: *size,
                stride: *stride,
                input: *input,
                output: *output,
            }),
            Stage::Flatten {
                name,
                input,
                output,
            } => {
                scales = scales
                    .iter()
                    .flat_map(|&s| std::iter::repeat_n(s, input.per_channel()))
                    .collect();
                out.push(QStage::Flatten {
                    name: name.clone(),
                    input: *input,
                    output: *output,
                });
            }
        }
    }
    let calibration = CalibrationRecord {
        rule: cal.rule.name().into(),
        percentile: (cal.rule == super::CalibRule::Percentile).then_some(cal.percentile),
        samples: n,
        file: calib_file.into(),
    };
    Ok(QuantizedNet {
        format: FORMAT.into(),
        network: net.clone(),
        weights_file: weights_file.into(),
        calibration,
        input,
        float: stages,
        stages: out,
    })
}

fn quantize_compute(
    net: &Network,
    c: &Compute,
    in_scales: &[f64],
    in_bits: u32,
    pre: &[f64],
    n: usize,
    weights_file: &str,
) -> Result<QCompute, NetError> {
    let rounding: Rounding = net.rounding.into();
    let q = &c.quant;
    let (out, k) = (c.out_channels(), c.k());
    let per_k = c.conv.map_or(1, |p| p.kernel[0] * p.kernel[1]);
    let mut w = c.weight.clone();
    for o in 0..out {
        for kk in 0..k {
            w[o * k + kk] = (f64::from(w[o * k + kk]) * in_scales[kk / per_k]) as f32;
        }
    }
    let mut bias = c.bias.clone();
    let (alphas, clip_record, offset) = match q.output {
        OutputMode::Pact => {
            let per_channel = q.act_granularity == crate::quantize::GranularityName::PerChannel;
            let a = match &q.clips {
                Some(given) => given.clone(),
                None => clips(&by_channel(pre, n, out, per_channel), &net.calibration, q.out_bits, rounding),
            };
            let a = if a.len() == 1 { vec![a[0]; out] } else { a };
            (a.clone(), a, 0.0)
        }
        OutputMode::Logits => {
            let (lo, hi) = match q.clips.as_deref() {
                Some(&[lo, hi]) => (lo, hi),
                _ => logit_range(pre, &net.calibration),
            };
            for b in &mut bias {
                *b = (f64::from(*b) - lo) as f32;
            }
            (vec![hi - lo; out], vec![lo, hi], lo)
        }
        OutputMode::Bases => unreachable!("validated: bases outputs are refused"),
    };
    let mut array = net.array.clone();
    array.cols = Some(array.cols.unwrap_or(8));
    let spec = Spec {
        rounding: net.rounding,
        weights: WeightSpec {
            tensor: c.tensor.clone(),
            bias: None,
            scheme: q.weights,
            bits: q.weight_bits,
            granularity: q.granularity,
            layout: if c.conv.is_some() {
                LayoutName::Conv
            } else {
                LayoutName::Fc
            },
            levels: q.levels.clone(),
        },
        conv: c.conv.map(|p| ConvSpec {
            stride: [p.stride[0] as u32, p.stride[1] as u32],
            padding: [p.padding[0] as u32, p.padding[1] as u32],
            dilation: [1, 1],
        }),
        input: InputSpec {
            scheme: InputScheme::Pact,
            bits: in_bits,
            alpha: Some(AlphaSpec::Value(f64::from((1u32 << in_bits) - 1))),
            scale: None,
            scales: None,
        },
        output: OutputSpec {
            scheme: crate::quantize::ActScheme::Pact,
            bits: q.out_bits,
            alpha: AlphaSpec::PerChannel(alphas),
        },
        array,
    };
    let t =
        LayerTensors::new(&spec, w, c.weight_shape.clone(), Some(bias)).map_err(layer_err(c))?;
    let source = Source {
        weights_file: weights_file.into(),
        tensor: c.tensor.clone(),
        bias: None,
    };
    let layer = quantize_layer(&spec, &t, source).map_err(layer_err(c))?;
    Ok(QCompute {
        index: c.index,
        name: c.name.clone(),
        input: c.input,
        output: c.output,
        conv: c.conv,
        mode: q.output,
        in_scales: in_scales.to_vec(),
        clips: clip_record,
        offset,
        layer,
    })
}

/// One compute stage run on data by the integer reference.
#[derive(Clone, Debug)]
pub struct StageRun {
    /// Index into the compute stages.
    pub compute: usize,
    /// The array's parameter loads and tiles ([`vectors::render`] them for the testbench).
    pub layers: Vec<vectors::Layer>,
    /// Output codes, channel-major per sample `[n][out][P]`.
    pub codes: Vec<u64>,
}

/// The integer network run on data.
#[derive(Clone, Debug)]
pub struct NetRun {
    /// Samples.
    pub n: usize,
    /// The network input's codes.
    pub input_codes: Vec<u64>,
    /// One per compute stage.
    pub stages: Vec<StageRun>,
    /// The last compute stage's output codes, `[n][classes]` (the logits codes).
    pub logits: Vec<u64>,
}

impl QuantizedNet {
    /// The compute stages in order.
    pub fn computes(&self) -> Vec<&QCompute> {
        self.stages
            .iter()
            .filter_map(|s| {
                if let QStage::Compute(c) = s {
                    Some(&**c)
                } else {
                    None
                }
            })
            .collect()
    }

    /// The arrays the network runs on: compute stages with the same [`QCompute::hardware_key`] share one,
    /// whose depth is their largest and whose accumulator is their widest (every layer's parameters
    /// still pass `check_params` on it; a layer's tiles have its own number of steps).
    pub fn hardware(&self) -> Result<Vec<Hardware>, NetError> {
        let mut hw: Vec<(RawConfig, u32, u32, Vec<usize>)> = Vec::new();
        for (i, c) in self.computes().into_iter().enumerate() {
            let key = c.hardware_key();
            let acc = c.layer.config()?.acc_bits();
            match hw.iter_mut().find(|h| h.0 == key) {
                Some(h) => {
                    h.1 = h.1.max(c.layer.config.max_depth);
                    h.2 = h.2.max(acc);
                    h.3.push(i);
                }
                None => hw.push((key, c.layer.config.max_depth, acc, vec![i])),
            }
        }
        hw.into_iter()
            .map(|(key, depth, acc, layers)| {
                let exact = Config::new(RawConfig {
                    max_depth: depth,
                    ..key.clone()
                })?
                .exact_acc_bits();
                let config = Config::new(RawConfig {
                    max_depth: depth,
                    acc_bits: (acc > exact).then_some(acc),
                    ..key
                })?;
                Ok(Hardware { config, layers })
            })
            .collect()
    }

    /// The network input's PACT codes.
    pub fn input_codes(&self, x: &[f32]) -> Vec<u64> {
        let r = self.network.rounding.into();
        pact::quantize(
            x,
            Granularity::PerTensor,
            &[self.input.alpha],
            self.input.bits,
            r,
        )
        .expect("validated clip and bits")
        .codes()
        .iter()
        .map(|&c| u64::from(c))
        .collect()
    }

    /// Run `n` samples `x` through the integer network: the reference model of the array for every
    /// compute stage (on the shared configurations of [`QuantizedNet::hardware`]), max-pool and flatten
    /// on codes in the host. `on_stage` sees each compute stage's run as it is done (for the RTL
    /// comparison); it may replace the codes handed on (it gets them mutably).
    pub fn run(
        &self,
        x: &[f32],
        n: usize,
        mut on_stage: impl FnMut(&QCompute, &Config, &mut StageRun) -> Result<(), NetError>,
    ) -> Result<NetRun, NetError> {
        let hw = self.hardware()?;
        let cfg_of = |i: usize| {
            &hw.iter()
                .find(|h| h.layers.contains(&i))
                .expect("every layer has hardware")
                .config
        };
        let input_codes = self.input_codes(x);
        let mut cur = input_codes.clone();
        let mut runs = Vec::new();
        let mut ci = 0;
        for s in &self.stages {
            cur = match s {
                QStage::Compute(c) => {
                    let cfg = cfg_of(ci);
                    let rows = gemm_rows(c.conv.as_ref(), c.input, &cur, n, 0);
                    let patches = rows.len() / c.layer.geometry.k;
                    let (layers, codes) = gemm_layers(&c.layer, cfg, &rows, patches, c.steps());
                    let mut run = StageRun {
                        compute: ci,
                        layers,
                        codes: to_channel_major(&codes, n, c.layer.geometry.out_channels),
                    };
                    on_stage(c, cfg, &mut run)?;
                    let next = run.codes.clone();
                    runs.push(run);
                    ci += 1;
                    next
                }
                QStage::MaxPool { size, stride, input, output, .. } => max_pool_batch(&cur, n, *input, *size, *stride, *output),
                QStage::Flatten { .. } => cur,
            };
        }
        Ok(NetRun {
            n,
            input_codes,
            stages: runs,
            logits: cur,
        })
    }

    /// The float network's outputs on `n` samples `x`.
    pub fn float_output(&self, x: &[f32], n: usize) -> Vec<f64> {
        forward(&self.float, x, n).output
    }

    /// Classes of the last layer.
    pub fn classes(&self) -> usize {
        self.computes().last().map_or(0, |c| c.output.len())
    }

    /// Predicted classes from the last stage's codes (ties: the first).
    pub fn predict(&self, logits: &[u64]) -> Vec<usize> {
        argmax(logits, self.classes())
    }

    /// Check that the stages fit together (a `network.json` edited by hand must not make the run
    /// panic): shapes chain from the input, every compute stage's geometry, weights, parameters, scales
    /// and clips have the sizes its shapes imply, and the float network matches.
    pub fn check(&self) -> Result<(), String> {
        let mut cur = self.network.input;
        if self.stages.is_empty() || self.stages.len() != self.float.len() || self.input.bits == 0 || self.input.bits > 8 || !(self.input.alpha > 0.0 && self.input.scale > 0.0) {
            return Err("the stages or the input quantizer are malformed".into());
        }
        for (i, (s, f)) in self.stages.iter().zip(&self.float).enumerate() {
            let (input, output) = match s {
                QStage::Compute(c) => (c.input, c.output),
                QStage::MaxPool { input, output, .. } | QStage::Flatten { input, output, .. } => (*input, *output),
            };
            let fail = |what: &str| Err(format!("stage {i}: {what}"));
            if input != cur || f.output() != output {
                return fail("its shapes do not chain with the stage before or the float network");
            }
            match (s, f) {
                (QStage::Compute(c), Stage::Compute(fc)) => {
                    let l = &c.layer;
                    l.config().map_err(|e| format!("stage {i}: {e}"))?;
                    let k = match (c.conv, input, output) {
                        (None, Shape::Flat(n), Shape::Flat(_)) => n,
                        (Some(p), Shape::Image([ch, h, w]), Shape::Image([_, oh, ow])) if p.kernel[0] <= h + 2 * p.padding[0] && p.kernel[1] <= w + 2 * p.padding[1] && p.stride[0] > 0 && p.stride[1] > 0 && (h + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1 == oh && (w + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1 == ow => ch * p.kernel[0] * p.kernel[1],
                        _ => return fail("its convolution geometry does not fit its shapes"),
                    };
                    let out = output.channels();
                    let sizes_ok = l.geometry.k == k
                        && l.geometry.out_channels == out
                        && l.weights.codes.len() == out
                        && l.weights.codes.iter().all(|r| r.len() == k && r.iter().all(|&v| v < 1 << l.config.weight_bits.min(63)))
                        && l.channels.len() == out
                        && l.output.scales.len() == out
                        && c.in_scales.len() == input.channels()
                        && (l.weights.scales.len() == 1 || l.weights.scales.len() == out)
                        && fc.weight.len() == out * k
                        && fc.bias.len() == out
                        && fc.out_channels() == out
                        && l.config.max_depth as usize >= k
                        && l.config.lanes > 0
                        && l.config.max_depth % l.config.lanes == 0;
                    if !sizes_ok {
                        return fail("its weights, parameters or scales do not have the sizes its shapes imply");
                    }
                    match c.mode {
                        OutputMode::Pact if c.clips.len() == out => {}
                        OutputMode::Logits if c.clips.len() == 2 && i + 1 == self.stages.len() => {}
                        _ => return fail("its output mode or clips are malformed"),
                    }
                    if l.is_bases() {
                        return fail("binary activations are not supported between network layers");
                    }
                }
                (QStage::MaxPool { size, stride, .. }, Stage::MaxPool { .. }) => match (input, output) {
                    (Shape::Image([c, h, w]), Shape::Image([c2, oh, ow])) if c == c2 && size.iter().chain(stride).all(|&v| v > 0) && size[0] <= h && size[1] <= w && (h - size[0]) / stride[0] + 1 == oh && (w - size[1]) / stride[1] + 1 == ow => {}
                    _ => return fail("its pooling geometry does not fit its shapes"),
                },
                (QStage::Flatten { .. }, Stage::Flatten { .. }) if input.len() == output.len() && matches!(output, Shape::Flat(_)) => {}
                _ => return fail("it differs from the float network's stage"),
            }
            cur = output;
        }
        Ok(())
    }

    /// `network.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("network serialises") + "\n"
    }

    /// Read `network.json` from a `qmac net quantize` directory.
    pub fn load(dir: &std::path::Path) -> Result<QuantizedNet, NetError> {
        let file = dir.join("network.json");
        let bad = |message: String| NetError::NotANetDir {
            path: dir.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(&file).map_err(|e| bad(format!("network.json: {e}")))?;
        let q: QuantizedNet = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "network.json: {}",
                super::format::cap(&e.to_string())
            ))
        })?;
        if q.format != FORMAT {
            return Err(bad(format!(
                "network.json has format {:?}, expected {FORMAT:?}",
                super::format::cap(&q.format)
            )));
        }
        q.check().map_err(bad)?;
        q.hardware()?;
        Ok(q)
    }
}
