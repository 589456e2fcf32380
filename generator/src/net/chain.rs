//! Integer chaining: every compute stage quantized with [`crate::quantize::quantize_layer_to`], taking
//! the previous stage's output codes as its input codes, exactly as the hardware passes them.
//!
//! A tensor of PACT codes carries one real scale per channel: `x = s[c] * code`. The network input gets
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
//! Binary activations (`output = "bases"`): the layer's output stage computes the next layer's basis
//! codes from its pre-activation with the calibrated basis scales `v` (one set for the tensor); the
//! next layer is quantized with binary inputs of those scales (`input.scheme = "ls2"`,
//! `input.scales = v`), which go into its basis-pair scales `m[p] ~ u[i] v[j] / s_acc`; its weights are
//! not folded. Max-pool on basis codes compares their values (the code of the largest value, the
//! larger code on equal values): the greedy residual signs are monotone in the pre-activation for
//! `v1 >= v2`, so that is the code of the pooled pre-activation. A convolution pads basis codes with
//! the code of 0.
//!
//! A logits output (the last layer) is the array's biased accumulator `t = acc * 2^F + bias`; one unit
//! of channel `o` is worth `s_acc[o] / 2^F`, so the real logit is `s_acc[o] * t / 2^F`. The prediction
//! ([`QuantizedNet::predict`]) is the argmax of the integers `t` when every class has the same unit
//! (per-tensor weight scales), else of the real logits, computed from the same `t` in the same way for
//! the reference and the RTL; ties go to the first class.

use super::calibrate::{calibrate, ActQuant, Calibrated};
use super::float::{argmax, forward_with};
use super::format::{Network, OutputMode, Shape};
use super::lower::{gemm_rows, to_channel_major, Compute, ConvParams, HostStage, Stage};
use super::NetError;
use crate::config::{Config, RawConfig};
use crate::quantize::{
    encode_bases, gemm_layers, quantize_layer_to, AlphaSpec, ConvSpec, InputScheme, InputSpec, LayerTensors,
    LayoutName, OutputSpec, OutputStage, QuantizedLayer, Source, Spec, WeightSpec,
};
use crate::reference::logit_of_bits;
use crate::vectors;
use qmac_arith::quant::{pact, Granularity};
use serde::{Deserialize, Serialize};

/// Format tag of `network.json`.
pub const FORMAT: &str = "qmac-net 2";

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
    /// PACT inputs: the real scale of each input channel's codes, folded into the weights; empty with
    /// binary inputs (their basis scales are the layer's `input.basis_scales`).
    pub in_scales: Vec<f64>,
    /// The output quantizer: PACT clips (one per output channel), basis scales (the next layer's), or
    /// nothing (logits).
    pub act: ActQuant,
    /// The quantized layer (PACT inputs: weights folded with `in_scales`, input scale 1).
    pub layer: QuantizedLayer,
}

impl QCompute {
    /// Real value of one output unit of each channel: a PACT code step `alpha / n`, a logit unit
    /// `s_acc / 2^F` of the layer's own `F`, or `v1` for basis codes.
    pub fn out_scales(&self) -> &[f64] {
        &self.layer.output.scales
    }

    /// Steps per tile: the layer's own `max_depth / lanes`.
    pub fn steps(&self) -> usize {
        (self.layer.config.max_depth / self.layer.config.lanes) as usize
    }

    /// The layer's array configuration with the depth, the accumulator and the bias's fractional bits
    /// left open: layers with the same key run on one array.
    pub fn hardware_key(&self) -> RawConfig {
        RawConfig {
            max_depth: 0,
            acc_bits: None,
            bias_frac_bits: 0,
            ..self.layer.config.clone()
        }
    }

    /// The basis scales of binary outputs (empty otherwise).
    pub fn basis_scales(&self) -> &[f64] {
        match &self.act {
            ActQuant::Bases { scales, .. } => scales,
            _ => &[],
        }
    }
}

/// A quantized stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QStage {
    /// On the array.
    Compute(Box<QCompute>),
    /// Max-pool or flatten on codes, in the host.
    Host(HostStage),
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
    /// The configuration: the deepest layer's depth, the widest accumulator and the most fractional
    /// bias bits of its layers.
    pub config: Config,
    /// Indices into the compute stages (in network order) that run on it.
    pub layers: Vec<usize>,
}

/// The name of an array in reports: [`Config::short_name`], then the output stage when it is not PACT
/// codes (`-logits`, `-bases2` for 2 output bases), the fractional bias bits (`-f3`) and a per-column
/// output unit (`-pc`).
pub fn array_name(cfg: &Config) -> String {
    use crate::config::{OutModeName, OutputUnitsName};
    let mut s = cfg.short_name();
    match cfg.out_mode {
        OutModeName::Pact => {}
        OutModeName::Logits => s.push_str("-logits"),
        OutModeName::Bases => s.push_str(&format!("-bases{}", cfg.out_bits())),
    }
    if cfg.bias_frac_bits > 0 {
        s.push_str(&format!("-f{}", cfg.bias_frac_bits));
    }
    if cfg.output_units == OutputUnitsName::PerColumn {
        s.push_str("-pc");
    }
    s
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

/// Quantize the lowered network: calibrate on `n` samples `calib` ([`calibrate`]), then [`chain`].
pub fn quantize(
    net: &Network,
    stages: Vec<Stage>,
    calib: &[f32],
    n: usize,
    weights_file: &str,
    calib_file: &str,
) -> Result<QuantizedNet, NetError> {
    let cal = calibrate(net, &stages, calib, n)?;
    let record = CalibrationRecord {
        rule: net.calibration.rule.name().into(),
        percentile: (net.calibration.rule == super::CalibRule::Percentile).then_some(net.calibration.percentile),
        samples: n,
        file: calib_file.into(),
    };
    chain(net, stages, &cal, record, weights_file)
}

/// What a compute stage's input codes are.
enum InCodes {
    /// PACT codes with one real scale per channel and `bits` bits.
    Pact { scales: Vec<f64>, bits: u32 },
    /// Binary-basis codes of `scheme` with basis scales `scales`.
    Bases { scheme: InputScheme, scales: Vec<f64> },
}

/// Quantize every compute stage with the clips and basis scales of `cal` (from [`calibrate`], or given
/// by training), each stage taking the previous stage's output codes as its input codes.
pub fn chain(
    net: &Network,
    stages: Vec<Stage>,
    cal: &Calibrated,
    calibration: CalibrationRecord,
    weights_file: &str,
) -> Result<QuantizedNet, NetError> {
    let computes = stages.iter().filter(|s| matches!(s, Stage::Compute(_))).count();
    if cal.acts.len() != computes || !(cal.input_alpha.is_finite() && cal.input_alpha > 0.0) {
        return Err(NetError::Field { layer: String::new(), field: "calibration".into(), value: format!("{} output quantizers, input clip {}", cal.acts.len(), cal.input_alpha), allowed: format!("{computes} (one per dense or conv2d layer) and an input clip > 0") });
    }
    let in_n = f64::from((1u32 << net.input_bits) - 1);
    let input = InputQuant {
        bits: net.input_bits,
        alpha: cal.input_alpha,
        scale: cal.input_alpha / in_n,
    };
    let mut cur = InCodes::Pact { scales: vec![input.scale; net.input.channels()], bits: net.input_bits };
    let mut out = Vec::with_capacity(stages.len());
    let mut ci = 0;
    for s in &stages {
        match s {
            Stage::Compute(c) => {
                let q = quantize_compute(net, c, &cur, &cal.acts[ci], weights_file)?;
                cur = match &q.act {
                    ActQuant::Bases { scheme, scales } => InCodes::Bases { scheme: *scheme, scales: scales.clone() },
                    _ => InCodes::Pact { scales: q.out_scales().to_vec(), bits: q.layer.output.bits },
                };
                out.push(QStage::Compute(Box::new(q)));
                ci += 1;
            }
            Stage::Host(h) => {
                if let (HostStage::Flatten { input, .. }, InCodes::Pact { scales, .. }) = (h, &mut cur) {
                    *scales = scales.iter().flat_map(|&s| std::iter::repeat_n(s, input.per_channel())).collect();
                }
                out.push(QStage::Host(h.clone()));
            }
        }
    }
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
    input: &InCodes,
    act: &ActQuant,
    weights_file: &str,
) -> Result<QCompute, NetError> {
    let q = &c.quant;
    let (out, k) = (c.out_channels(), c.k());
    let per_k = c.conv.map_or(1, |p| p.kernel[0] * p.kernel[1]);
    let mut w = c.weight.clone();
    let (input_spec, in_scales) = match input {
        InCodes::Pact { scales, bits } => {
            for o in 0..out {
                for kk in 0..k {
                    w[o * k + kk] = (f64::from(w[o * k + kk]) * scales[kk / per_k]) as f32;
                }
            }
            let spec = InputSpec { scheme: InputScheme::Pact, bits: *bits, alpha: Some(AlphaSpec::Value(f64::from((1u32 << bits) - 1))), scale: None, scales: None };
            (spec, scales.clone())
        }
        InCodes::Bases { scheme, scales } => {
            let spec = InputSpec { scheme: *scheme, bits: scales.len() as u32, alpha: None, scale: None, scales: Some(scales.clone()) };
            (spec, Vec::new())
        }
    };
    let bad_act = |what: &str| NetError::Field { layer: format!("layer {} `{}`: ", c.index, c.name), field: "calibration".into(), value: what.into(), allowed: format!("the quantizer of its output = \"{}\"", q.output.name()) };
    // the output stage; the spec's output clips are used by PACT outputs only
    let (stage, output) = match (q.output, act) {
        (OutputMode::Pact, ActQuant::Pact(a)) if a.len() == out => (OutputStage::Pact, OutputSpec { scheme: crate::quantize::ActScheme::Pact, bits: q.out_bits.unwrap_or(8), alpha: AlphaSpec::PerChannel(a.clone()) }),
        (OutputMode::Bases, ActQuant::Bases { scheme, scales }) if *scheme == q.act && Some(scales.len() as u32) == q.out_bits => {
            (OutputStage::Bases(scales.clone()), OutputSpec { scheme: crate::quantize::ActScheme::Pact, bits: 1, alpha: AlphaSpec::Value(1.0) })
        }
        (OutputMode::Logits, ActQuant::Logits) => (OutputStage::Logits, OutputSpec { scheme: crate::quantize::ActScheme::Pact, bits: 1, alpha: AlphaSpec::Value(1.0) }),
        (_, a) => return Err(bad_act(&format!("{a:?}"))),
    };
    let mut array = net.array.clone();
    array.cols = Some(array.cols.unwrap_or(8));
    array.bias_frac_bits = q.bias_frac_bits;
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
        input: input_spec,
        output,
        array,
    };
    let t = LayerTensors::new(&spec, w, c.weight_shape.clone(), Some(c.bias.clone())).map_err(layer_err(c))?;
    let source = Source {
        weights_file: weights_file.into(),
        tensor: c.tensor.clone(),
        bias: None,
    };
    let layer = quantize_layer_to(&spec, &t, source, &stage).map_err(layer_err(c))?;
    Ok(QCompute {
        index: c.index,
        name: c.name.clone(),
        input: c.input,
        output: c.output,
        conv: c.conv,
        mode: q.output,
        in_scales,
        act: act.clone(),
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
    /// The last compute stage's outputs as integers, `[n][classes]`: the logits `t` (sign-extended
    /// from the array's `logit_bits`), or PACT codes.
    pub logits: Vec<i64>,
    /// Their real values: `t * unit[o]`, with the logit unit `s_acc[o] / 2^F` of the array the layer
    /// ran on (or a PACT code step).
    pub real: Vec<f64>,
}

/// The predicted class of each sample from its integer outputs `ints` and their real values `real`
/// (`[n][classes]`), with `units` the real value of one unit of each output channel: the argmax of the
/// integers when every channel has the same positive unit (exact, whatever the size of the integers),
/// else the argmax of the real values; the first class on ties.
pub fn predict_classes(units: &[f64], ints: &[i64], real: &[f64], classes: usize) -> Vec<usize> {
    if !units.is_empty() && units.iter().all(|&x| x == units[0]) && units[0] > 0.0 {
        argmax(ints, classes)
    } else {
        argmax(real, classes)
    }
}

/// Max-pool of binary-basis codes (scales `v`): by value, the larger code on equal values.
fn max_pool_bases(h: &HostStage, codes: Vec<u64>, n: usize, v: &[f64]) -> Vec<u64> {
    let bases = v.len() as u32;
    let value = |c: u64| -> f64 { v.iter().enumerate().map(|(j, &s)| if c >> j & 1 == 1 { s } else { -s }).sum() };
    // every code's rank among the values (codes tie only on equal values)
    let mut order: Vec<u64> = (0..1u64 << bases).collect();
    order.sort_by(|&a, &b| value(a).total_cmp(&value(b)).then(a.cmp(&b)));
    let mut rank = vec![0u64; order.len()];
    for (r, &c) in order.iter().enumerate() {
        rank[c as usize] = r as u64;
    }
    let keys: Vec<u64> = codes.iter().map(|&c| rank[c as usize]).collect();
    h.run(keys, n).into_iter().map(|r| order[r as usize]).collect()
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
    /// whose depth is their largest, whose accumulator is their widest and whose `bias_frac_bits` is
    /// their largest (every layer's parameters, as [`QuantizedLayer::params_on`] loads them, still pass
    /// `check_params` on it; a layer's tiles have its own number of steps).
    pub fn hardware(&self) -> Result<Vec<Hardware>, NetError> {
        let mut hw: Vec<(RawConfig, u32, u32, u32, Vec<usize>)> = Vec::new();
        for (i, c) in self.computes().into_iter().enumerate() {
            let key = c.hardware_key();
            let acc = c.layer.config()?.acc_bits();
            let (depth, frac) = (c.layer.config.max_depth, c.layer.config.bias_frac_bits);
            match hw.iter_mut().find(|h| h.0 == key) {
                Some(h) => {
                    h.1 = h.1.max(depth);
                    h.2 = h.2.max(acc);
                    h.3 = h.3.max(frac);
                    h.4.push(i);
                }
                None => hw.push((key, depth, acc, frac, vec![i])),
            }
        }
        hw.into_iter()
            .map(|(key, depth, acc, frac, layers)| {
                let exact = Config::new(RawConfig {
                    max_depth: depth,
                    bias_frac_bits: frac,
                    ..key.clone()
                })?
                .exact_acc_bits();
                let config = Config::new(RawConfig {
                    max_depth: depth,
                    acc_bits: (acc > exact).then_some(acc),
                    bias_frac_bits: frac,
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
        // the basis scales of the current codes, if they are binary
        let mut bases: Option<&[f64]> = None;
        let mut runs = Vec::new();
        let mut last: Option<(&QCompute, &Config)> = None;
        for s in &self.stages {
            cur = match s {
                QStage::Compute(c) => {
                    let ci = runs.len();
                    let cfg = cfg_of(ci);
                    let pad = match bases {
                        Some(v) => encode_bases(&[0.0], v).map_err(NetError::Read)?[0],
                        None => 0,
                    };
                    let rows = gemm_rows(c.conv.as_ref(), c.input, &cur, n, pad);
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
                    bases = (c.mode == OutputMode::Bases).then(|| c.basis_scales());
                    last = Some((c, cfg));
                    next
                }
                QStage::Host(h @ HostStage::MaxPool { .. }) if bases.is_some() => max_pool_bases(h, cur, n, bases.expect("binary codes")),
                QStage::Host(h) => h.run(cur, n),
            };
        }
        let (c, cfg) = last.expect("a network has a compute stage");
        // the last stage's integers: logits sign-extended from the array's width, or codes
        let logits: Vec<i64> = cur.iter().map(|&b| if c.mode == OutputMode::Logits { logit_of_bits(cfg, b) } else { b as i64 }).collect();
        let real = self.real_values(c, cfg, &logits);
        Ok(NetRun {
            n,
            input_codes,
            stages: runs,
            logits,
            real,
        })
    }

    /// The last stage's output values as integers (logits sign-extended from the array's width), and
    /// the real value of one unit of each output channel on the array `cfg` it ran on.
    /// The real values of the last stage `c`'s integer outputs `ints` on the array `cfg` it ran on:
    /// `t * unit[o]`, a logit unit being `s_acc[o] / 2^F'` with the array's `F'` (or a PACT code step).
    fn real_values(&self, c: &QCompute, cfg: &Config, ints: &[i64]) -> Vec<f64> {
        let d = if c.mode == OutputMode::Logits { cfg.bias_frac_bits - c.layer.config.bias_frac_bits } else { 0 };
        let units: Vec<f64> = c.out_scales().iter().map(|u| u / 2f64.powi(d as i32)).collect();
        let (classes, per) = (self.classes().max(1), c.output.per_channel());
        ints.iter().enumerate().map(|(k, &t)| t as f64 * units[(k % classes) / per]).collect()
    }

    /// The float network's outputs on `n` samples `x`: ReLUs, and binary activations with their
    /// recorded basis scales ([`super::float`]).
    pub fn float_output(&self, x: &[f32], n: usize) -> Vec<f64> {
        let computes = self.computes();
        forward_with(&self.float, x, n, |i, y| {
            if let ActQuant::Bases { scales, .. } = &computes[i].act {
                super::calibrate::binarize(y, scales);
            }
        })
        .output
    }

    /// Classes of the last layer.
    pub fn classes(&self) -> usize {
        self.computes().last().map_or(0, |c| c.output.len())
    }

    /// Predicted classes of a run: the argmax of the integer outputs when every class has the same
    /// unit (exact), else of the real values (computed from the integers in the same way for the
    /// reference and the RTL); ties go to the first class.
    pub fn predict(&self, run: &NetRun) -> Vec<usize> {
        let c = self.computes().into_iter().last().expect("a network has a compute stage");
        predict_classes(c.out_scales(), &run.logits, &run.real, self.classes())
    }

    /// [`QuantizedNet::predict`] from the last layer's integer outputs alone (`sim/logits-int.npy`):
    /// the same prediction, the real values computed from them as [`QuantizedNet::run`] does.
    pub fn predict_ints(&self, ints: &[i64]) -> Result<Vec<usize>, NetError> {
        let hw = self.hardware()?;
        let computes = self.computes();
        let i = computes.len() - 1;
        let c = computes[i];
        let cfg = &hw.iter().find(|h| h.layers.contains(&i)).expect("every layer has hardware").config;
        Ok(predict_classes(c.out_scales(), ints, &self.real_values(c, cfg, ints), self.classes()))
    }

    /// Check that the stages fit together (a `network.json` edited by hand must not make the run
    /// panic): shapes chain from the input, every compute stage's geometry, weights, parameters, scales
    /// and clips have the sizes its shapes imply, each stage's input codes are what the stage before
    /// sends (PACT codes, or basis codes with the same scales), and the float network matches.
    pub fn check(&self) -> Result<(), String> {
        let mut cur = self.network.input;
        if self.stages.is_empty() || self.stages.len() != self.float.len() || self.input.bits == 0 || self.input.bits > 8 || !(self.input.alpha > 0.0 && self.input.scale > 0.0) {
            return Err("the stages or the input quantizer are malformed".into());
        }
        let last = self.stages.iter().rposition(|s| matches!(s, QStage::Compute(_)));
        // the basis scales of the codes entering the next compute stage, if binary
        let mut bases: Option<Vec<f64>> = None;
        for (i, (s, f)) in self.stages.iter().zip(&self.float).enumerate() {
            let (input, output) = match s {
                QStage::Compute(c) => (c.input, c.output),
                QStage::Host(h) => (h.input(), h.output()),
            };
            let fail = |what: &str| Err(format!("stage {i}: {what}"));
            if input != cur || f.output() != output {
                return fail("its shapes do not chain with the stage before or the float network");
            }
            match (s, f) {
                (QStage::Compute(c), Stage::Compute(fc)) => {
                    let l = &c.layer;
                    let cfg = l.config().map_err(|e| format!("stage {i}: {e}"))?;
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
                        && l.channels.iter().all(|ch| ch.pair_scales.len() == if l.is_bases() { l.basis_pairs() } else { 0 })
                        && l.output.scales.len() == out
                        && (l.weights.scales.len() == 1 || l.weights.scales.len() == out)
                        && (l.weights.basis_scales.is_empty() || l.weights.basis_scales.iter().all(|b| b.len() == l.weights.bits as usize))
                        && fc.weight.len() == out * k
                        && fc.bias.len() == out
                        && fc.out_channels() == out
                        && l.config.max_depth as usize >= k
                        && l.config.lanes > 0
                        && l.config.max_depth % l.config.lanes == 0;
                    if !sizes_ok {
                        return fail("its weights, parameters or scales do not have the sizes its shapes imply");
                    }
                    // its inputs: what the stage before sends
                    let inputs_ok = match &bases {
                        Some(v) => l.is_bases() && l.input.basis_scales == *v && c.in_scales.is_empty(),
                        None => !l.is_bases() && c.in_scales.len() == input.channels(),
                    };
                    if !inputs_ok {
                        return fail("its input codes are not what the stage before sends (PACT codes, or basis codes with the same scales)");
                    }
                    use crate::config::OutModeName as M;
                    let mode_ok = match (&c.act, c.mode, cfg.out_mode) {
                        (ActQuant::Pact(a), OutputMode::Pact, M::Pact) => a.len() == out && a.iter().all(|x| x.is_finite() && *x > 0.0),
                        (ActQuant::Bases { scheme, scales }, OutputMode::Bases, M::Bases) => {
                            Some(i) != last && scheme.is_binary() && scales.len() as u32 == cfg.out_bits() && scheme.bits_range().0 <= cfg.out_bits() && cfg.out_bits() <= scheme.bits_range().1 && scales.iter().all(|x| x.is_finite() && *x > 0.0)
                        }
                        (ActQuant::Logits, OutputMode::Logits, M::Logits) => Some(i) == last,
                        _ => false,
                    };
                    if !mode_ok {
                        return fail("its output mode or clips are malformed");
                    }
                    bases = (c.mode == OutputMode::Bases).then(|| c.basis_scales().to_vec());
                }
                (QStage::Host(h), Stage::Host(fh)) if h == fh && h.fits() => {}
                (QStage::Host(_), Stage::Host(_)) => return fail("its pooling geometry does not fit its shapes, or it differs from the float network's stage"),
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
        let text = crate::limits::read_text(&file, crate::limits::MAX_QUANTIZED_BYTES).map_err(|e| bad(format!("network.json: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ties go to the first class; with one unit for every class the integers decide, even where their
    /// real values are equal in `f64`; with per-channel units the real values decide.
    #[test]
    fn prediction_is_the_argmax_with_ties_to_the_first_class() {
        // ties: [3, 5, 5] -> 1; [7, 7, 7] -> 0
        assert_eq!(predict_classes(&[0.5; 3], &[3, 5, 5, 7, 7, 7], &[1.5, 2.5, 2.5, 3.5, 3.5, 3.5], 3), [1, 0]);
        // 2^60 and 2^60 + 1 are one f64: the integers still tell them apart
        let big = 1i64 << 60;
        let real = [big as f64, (big + 1) as f64];
        assert_eq!(real[0], real[1]);
        assert_eq!(predict_classes(&[1.0, 1.0], &[big, big + 1], &real, 2), [1]);
        // per-channel units: t = [10, 6] with units [0.1, 0.2] are the logits [1.0, 1.2]
        assert_eq!(predict_classes(&[0.1, 0.2], &[10, 6], &[1.0, 1.2], 2), [1]);
        assert_eq!(predict_classes(&[0.1, 0.2], &[10, 5], &[1.0, 1.0], 2), [0]);
    }
}
