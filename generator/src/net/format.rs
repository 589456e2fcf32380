//! The network description (`net.toml`): parsed strictly (serde `deny_unknown_fields`, every layer on
//! its own so that an error names the layer), then validated once into a [`Network`] with every
//! layer's input and output shape derived.
//!
//! ```toml
//! name = "mlp"                     # optional
//!
//! [input]
//! shape = [64]                     # one sample: [features] or [channels, height, width]
//! bits = 8                         # optional: PACT bits of the network input (default quant.act_bits)
//!
//! [quant]                          # network-wide; every field optional
//! weights = "sawb"                 # sawb | uniform | ls1 | gf | levels (weight scheme)
//! weight_bits = 4
//! act = "pact"                     # hidden activations: pact | ls1 | ls2 | lsT | gf (binary bases)
//! act_bits = 4                     # PACT bits of every hidden activation (binary: the number of bases)
//! granularity = "per_channel"      # weight scales: per_tensor | per_channel
//! act_granularity = "per_channel"  # PACT clips: per_tensor | per_channel
//! # bias_frac_bits = 3             # fractional bits of the loaded bias (default: derived per layer)
//! rounding = "half_even"           # half_even | half_up
//!
//! [calibration]                    # how the PACT clips are chosen; every field optional
//! rule = "percentile"              # max | percentile | mse (least quantization error)
//! percentile = 99.99
//!
//! [array]                          # the array every layer runs on (as in a qmac quantize spec)
//! rows = 8
//! cols = 8
//! lanes = 8
//! output_units = "per_column"      # default "shared"
//!
//! [[layer]]
//! type = "dense"                   # dense | conv2d | batch_norm | max_pool | flatten | activation
//! name = "fc1"                     # optional; default "<type><index>"
//! weight = "fc1.weight"            # tensor name: [units][in] (dense), [channels][in][kh][kw] (conv2d)
//! bias = "fc1.bias"                # optional
//! units = 64                       # dense: output features; conv2d: channels, kernel, stride, padding
//! quant = { weight_bits = 8 }      # optional per-layer overrides of [quant], and `output`
//! ```

use super::NetError;
use crate::config::RoundingName;
use crate::config::MAX_BIAS_FRAC_BITS;
use crate::quantize::{ArraySpec, GranularityName, InputScheme, QuantizeError, WeightScheme};
use qmac_arith::pipeline::MAX_OUT_BASES;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A tensor shape of one sample (the batch dimension is implicit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// A feature vector.
    Flat(usize),
    /// Channels, height, width.
    Image([usize; 3]),
}

impl Shape {
    /// Elements per sample.
    pub fn len(&self) -> usize {
        match self {
            Shape::Flat(n) => *n,
            Shape::Image([c, h, w]) => c * h * w,
        }
    }

    /// True if the shape holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels: features of a flat shape, `C` of an image.
    pub fn channels(&self) -> usize {
        match self {
            Shape::Flat(n) => *n,
            Shape::Image([c, _, _]) => *c,
        }
    }

    /// Elements per channel (1 for a flat shape, `H * W` for an image).
    pub fn per_channel(&self) -> usize {
        match self {
            Shape::Flat(_) => 1,
            Shape::Image([_, h, w]) => h * w,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Flat(n) => write!(f, "[{n}]"),
            Shape::Image([c, h, w]) => write!(f, "[{c}, {h}, {w}]"),
        }
    }
}

/// What a compute layer's output stage produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// PACT codes (`act_bits`, unsigned), per-channel clips: the next layer's input codes. Needs a ReLU
    /// after the layer (PACT clips at 0).
    Pact,
    /// The last layer's logits: the array's `out_mode = "logits"`, the signed biased accumulator
    /// `acc * 2^F + bias`, unclipped; one logit unit of channel `o` is worth `s_acc[o] / 2^F`.
    Logits,
    /// Binary-basis codes of the next layer's activations (`quant.act` = ls1, ls2, lsT or gf): the
    /// array's `out_mode = "bases"`, the greedy residual signs of the pre-activation (no ReLU) with
    /// the calibrated basis scales.
    Bases,
}

impl OutputMode {
    /// The name in `net.toml`.
    pub fn name(self) -> &'static str {
        match self {
            OutputMode::Pact => "pact",
            OutputMode::Logits => "logits",
            OutputMode::Bases => "bases",
        }
    }
}

/// How the PACT clips are chosen from the calibration activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CalibRule {
    /// The largest value: nothing clipped.
    Max,
    /// The nearest-rank percentile `calibration.percentile`.
    #[default]
    Percentile,
    /// The clip with the least squared quantization error (clipping plus rounding) over a grid.
    Mse,
}

impl CalibRule {
    /// The name in `net.toml`.
    pub fn name(self) -> &'static str {
        match self {
            CalibRule::Max => "max",
            CalibRule::Percentile => "percentile",
            CalibRule::Mse => "mse",
        }
    }
}

/// `[calibration]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// The rule.
    #[serde(default)]
    pub rule: CalibRule,
    /// The percentile of rule `percentile`, in `(0, 100]`.
    #[serde(default = "default_percentile")]
    pub percentile: f64,
}

fn default_percentile() -> f64 {
    99.99
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            rule: CalibRule::Percentile,
            percentile: default_percentile(),
        }
    }
}

/// `[quant]` and a layer's `quant = { ... }`: every field optional; a layer's fields override the
/// network's.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuant {
    /// Weight scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightScheme>,
    /// Weight bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_bits: Option<u32>,
    /// The scheme of the layer's output activations: `pact` (PACT codes after a ReLU) or binary bases
    /// (`ls1`, `ls2`, `lsT`, `gf`: the next layer's binary activations, from the pre-activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<InputScheme>,
    /// PACT bits of the layer's output (hidden layers); with binary `act` the number of bases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_bits: Option<u32>,
    /// Weight scale granularity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<GranularityName>,
    /// Clip granularity of the PACT outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_granularity: Option<GranularityName>,
    /// Fractional bits of the loaded bias (the array's `bias_frac_bits`, 0..=16); default: the fewest
    /// that keep the bias's rounding error under 1/8 of the layer's output step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_frac_bits: Option<u32>,
    /// Output mode (layers only; default `pact` with a ReLU after the layer, `logits` for the last
    /// layer without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputMode>,
    /// Rounding (network-wide only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounding: Option<RoundingName>,
    /// Given output quantizer parameters instead of calibrated ones (layers only): a PACT output's clips
    /// (one, or one per output channel), or a binary output's basis scales `[v1, v2]` (`qmac train`
    /// writes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clips: Option<Vec<f64>>,
    /// A trained level table (layers only, `weights = "levels"`): `2^weight_bits` levels in code order,
    /// instead of levels fitted to the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<f64>>,
}

/// The quantization of one compute layer, every field resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerQuant {
    /// Weight scheme.
    pub weights: WeightScheme,
    /// Weight bits.
    pub weight_bits: u32,
    /// Output code bits: PACT `act_bits`, basis codes the number of bases; `None` for logits (their
    /// width is the array's, `acc_bits + bias_frac_bits + 1`).
    pub out_bits: Option<u32>,
    /// The scheme of the output activations (`pact` for PACT and logits outputs).
    pub act: InputScheme,
    /// Weight scale granularity.
    pub granularity: GranularityName,
    /// Clip granularity of a PACT output.
    pub act_granularity: GranularityName,
    /// Output mode.
    pub output: OutputMode,
    /// Given quantizer parameters instead of calibrated ones: PACT clips (one per output channel), or
    /// the basis scales `[v1, v2]` of binary activations; `None` for logits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clips: Option<Vec<f64>>,
    /// A given level table (`levels` weights), else fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<f64>>,
    /// Fractional bias bits given (`None`: derived, [`crate::quantize::bias_frac_bits_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_frac_bits: Option<u32>,
}

/// `[input]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// One sample's shape: `[features]` or `[channels, height, width]`.
    pub shape: Vec<usize>,
    /// PACT bits of the network input (default `quant.act_bits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
    /// The network input's PACT clip, instead of a calibrated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
}

/// The activation function of an `activation` layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActFn {
    /// `max(x, 0)`.
    Relu,
}

fn one_one() -> [usize; 2] {
    [1, 1]
}
fn default_eps() -> f64 {
    1e-5
}

/// One `[[layer]]` table as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawLayer {
    /// Fully connected: `y = W x + b`, weights `[units][in]`.
    Dense {
        /// Layer name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bias: Option<String>,
        /// Output features.
        units: usize,
        /// Overrides of `[quant]`.
        #[serde(default)]
        quant: RawQuant,
    },
    /// 2-D convolution, weights `[channels][in][kh][kw]`, zero padding.
    Conv2d {
        /// Layer name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bias: Option<String>,
        /// Output channels.
        channels: usize,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sy, sx]`.
        #[serde(default = "one_one")]
        stride: [usize; 2],
        /// Zero padding on each side, `[py, px]`.
        #[serde(default)]
        padding: [usize; 2],
        /// Overrides of `[quant]`.
        #[serde(default)]
        quant: RawQuant,
    },
    /// Batch norm `gamma (x - mean) / sqrt(var + eps) + beta`, folded into the preceding dense or conv2d.
    BatchNorm {
        /// Layer name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Scale tensor.
        gamma: String,
        /// Shift tensor.
        beta: String,
        /// Running mean tensor.
        mean: String,
        /// Running variance tensor.
        var: String,
        /// Epsilon.
        #[serde(default = "default_eps")]
        eps: f64,
    },
    /// Max pooling over `size` windows with `stride` (default `size`), no padding.
    MaxPool {
        /// Layer name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// `[ph, pw]`.
        size: [usize; 2],
        /// `[sy, sx]`, default `size`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<[usize; 2]>,
    },
    /// `[C, H, W]` to `[C * H * W]`, channel-major (as NCHW frameworks flatten).
    Flatten {
        /// Layer name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// An element-wise activation.
    Activation {
        /// Layer name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The function.
        function: ActFn,
    },
}

/// The whole file as written (layers parsed one by one, see [`Network::from_toml`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    name: Option<String>,
    input: RawInput,
    #[serde(default)]
    quant: RawQuant,
    #[serde(default)]
    calibration: Calibration,
    #[serde(default)]
    array: ArraySpec,
    #[serde(default)]
    layer: Vec<toml::Value>,
}

/// A validated layer with its derived shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Position in the file, from 0.
    pub index: usize,
    /// Name (given, or `<type><index>`).
    pub name: String,
    /// What it is.
    pub kind: LayerKind,
    /// Input shape of one sample.
    pub input: Shape,
    /// Output shape of one sample.
    pub output: Shape,
}

/// A validated layer's kind and parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// Fully connected.
    Dense {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name.
        bias: Option<String>,
        /// Resolved quantization.
        quant: LayerQuant,
    },
    /// Convolution.
    Conv2d {
        /// Weight tensor name.
        weight: String,
        /// Bias tensor name.
        bias: Option<String>,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sy, sx]`.
        stride: [usize; 2],
        /// `[py, px]`.
        padding: [usize; 2],
        /// Resolved quantization.
        quant: LayerQuant,
    },
    /// Batch norm, folded into the preceding compute layer.
    BatchNorm {
        /// Tensor names `[gamma, beta, mean, var]`.
        tensors: [String; 4],
        /// Epsilon.
        eps: f64,
    },
    /// Max pooling.
    MaxPool {
        /// `[ph, pw]`.
        size: [usize; 2],
        /// `[sy, sx]`.
        stride: [usize; 2],
    },
    /// Flatten.
    Flatten,
    /// ReLU.
    Relu,
}

impl LayerKind {
    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerKind::Dense { .. } => "dense",
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::BatchNorm { .. } => "batch_norm",
            LayerKind::MaxPool { .. } => "max_pool",
            LayerKind::Flatten => "flatten",
            LayerKind::Relu => "activation",
        }
    }

    /// True for dense and conv2d (the layers the array computes).
    pub fn is_compute(&self) -> bool {
        matches!(self, LayerKind::Dense { .. } | LayerKind::Conv2d { .. })
    }
}

/// A validated network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Name.
    pub name: String,
    /// Input shape of one sample.
    pub input: Shape,
    /// PACT bits of the network input.
    pub input_bits: u32,
    /// The network input's given clip (else calibrated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_alpha: Option<f64>,
    /// Calibration rule.
    pub calibration: Calibration,
    /// Rounding everywhere.
    pub rounding: RoundingName,
    /// The array.
    pub array: ArraySpec,
    /// Layers in order.
    pub layers: Vec<Layer>,
}

const TYPES: &str = "dense, conv2d, batch_norm, max_pool, flatten, activation";

fn bad(
    layer: Option<(usize, &str)>,
    field: &str,
    value: impl fmt::Display,
    allowed: impl Into<String>,
) -> NetError {
    NetError::Field {
        layer: layer
            .map(|(i, n)| format!("layer {i} `{n}`: "))
            .unwrap_or_default(),
        field: field.into(),
        value: cap(&value.to_string()),
        allowed: allowed.into(),
    }
}

/// A value as shown in an error, at most 80 characters.
pub(crate) fn cap(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(77).collect::<String>())
    }
}

fn bits_in(
    at: Option<(usize, &str)>,
    field: &str,
    v: u32,
    lo: u32,
    hi: u32,
) -> Result<(), NetError> {
    if v < lo || v > hi {
        return Err(bad(at, field, v, format!("allowed {lo}..={hi}")));
    }
    Ok(())
}

impl Network {
    /// Parse and validate `net.toml` text; `origin` names it in parse errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Network, NetError> {
        let raw: RawNetwork = toml::from_str(text).map_err(|e| NetError::Parse {
            origin: origin.into(),
            message: e.to_string().trim().to_string(),
        })?;
        let mut layers = Vec::with_capacity(raw.layer.len());
        for (i, v) in raw.layer.into_iter().enumerate() {
            let name = v.get("name").and_then(|n| n.as_str()).map(String::from);
            let ty = v.get("type").and_then(|n| n.as_str()).map(String::from);
            let l: RawLayer = v.try_into().map_err(|e: toml::de::Error| {
                let msg = e.to_string().trim().to_string();
                let what = match (&name, &ty) {
                    (Some(n), _) => format!("layer {i} `{n}`"),
                    (None, Some(t)) => format!("layer {i} (type {t:?})"),
                    (None, None) => format!("layer {i}"),
                };
                let msg = if ty.is_none() {
                    format!("missing field `type` (allowed: {TYPES})")
                } else if ty.as_ref().is_some_and(|t| msg.contains(&format!("unknown variant `{t}`"))) {
                    format!(
                        "field `type` = {:?} is not a layer type; allowed: {TYPES}",
                        ty.unwrap_or_default()
                    )
                } else {
                    msg
                };
                NetError::Parse {
                    origin: format!("{origin}, {what}"),
                    message: msg,
                }
            })?;
            layers.push(l);
        }
        Network::validate(
            raw.name,
            raw.input,
            raw.quant,
            raw.calibration,
            raw.array,
            layers,
        )
    }

    /// Read, parse and validate a `net.toml` file.
    pub fn from_file(path: &std::path::Path) -> Result<Network, NetError> {
        let text = crate::limits::read_text(path, crate::limits::MAX_TOML_BYTES).map_err(|source| NetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Network::from_toml(&text, &path.display().to_string())
    }

    /// Validate the parsed parts: values in range, layer order, every shape derived, and the
    /// activations between layers (each layer's output mode, the weights its inputs allow).
    pub fn validate(
        name: Option<String>,
        input: RawInput,
        quant: RawQuant,
        calibration: Calibration,
        array: ArraySpec,
        raw: Vec<RawLayer>,
    ) -> Result<Network, NetError> {
        let shape = match input.shape.as_slice() {
            [n] if *n > 0 => Shape::Flat(*n),
            [c, h, w] if c * h * w > 0 => Shape::Image([*c, *h, *w]),
            s => {
                return Err(bad(
                    None,
                    "input.shape",
                    format!("{s:?}"),
                    "allowed: [features] or [channels, height, width], every dimension > 0",
                ))
            }
        };
        if quant.output.is_some() {
            return Err(bad(
                None,
                "quant.output",
                quant.output.map_or("", |o| o.name()),
                "allowed only in a layer's quant table (the output mode of that layer)",
            ));
        }
        if quant.clips.is_some() || quant.levels.is_some() {
            let field = if quant.clips.is_some() { "quant.clips" } else { "quant.levels" };
            return Err(bad(None, field, "given", "allowed only in a layer's quant table (they belong to one layer)"));
        }
        if let Some(a) = input.alpha.filter(|a| !(a.is_finite() && *a > 0.0)) {
            return Err(bad(None, "input.alpha", a, "allowed: a finite number > 0"));
        }
        if !(calibration.percentile > 0.0 && calibration.percentile <= 100.0) {
            return Err(bad(
                None,
                "calibration.percentile",
                calibration.percentile,
                "allowed: a number in (0, 100]",
            ));
        }
        let act_bits = quant.act_bits.unwrap_or(4);
        if quant.act.unwrap_or_default() == InputScheme::Pact {
            bits_in(None, "quant.act_bits", act_bits, 1, 8)?;
        }
        let input_bits = input.bits.unwrap_or(if quant.act.unwrap_or_default() == InputScheme::Pact { act_bits } else { 8 });
        bits_in(None, "input.bits", input_bits, 1, 8)?;
        if let Some(f) = quant.bias_frac_bits {
            bits_in(None, "quant.bias_frac_bits", f, 0, MAX_BIAS_FRAC_BITS)?;
        }
        if let Some(f) = array.bias_frac_bits {
            return Err(bad(None, "array.bias_frac_bits", f, "allowed only as quant.bias_frac_bits (network-wide, or in a layer's quant table)"));
        }
        array.validate().map_err(|e| match e {
            QuantizeError::Spec { field, value, allowed } => NetError::Field { layer: String::new(), field, value: cap(&value), allowed },
            e => NetError::Read(e),
        })?;
        let n = raw.len();
        let last_compute = raw
            .iter()
            .rposition(|l| matches!(l, RawLayer::Dense { .. } | RawLayer::Conv2d { .. }));
        let Some(last_compute) = last_compute else {
            return Err(bad(
                None,
                "layer",
                format!("{n} layers"),
                "at least one dense or conv2d layer",
            ));
        };
        let mut layers: Vec<Layer> = Vec::with_capacity(n);
        let mut cur = shape;
        for (i, l) in raw.into_iter().enumerate() {
            let (lname, kind, out) = Self::layer(i, l, cur, &quant, act_bits, i == last_compute)?;
            let at = Some((i, lname.as_str()));
            // order rules
            let prev = layers.last().map(|p| &p.kind);
            match &kind {
                LayerKind::BatchNorm { .. } if !prev.is_some_and(LayerKind::is_compute) => {
                    return Err(bad(at, "type", "batch_norm", "a batch_norm must directly follow a dense or conv2d layer (it is folded into it)"));
                }
                LayerKind::Relu if !matches!(prev, Some(k) if k.is_compute() || matches!(k, LayerKind::BatchNorm { .. })) =>
                {
                    return Err(bad(at, "function", "relu", "a relu must directly follow a dense or conv2d layer (or its batch_norm): it is the PACT clip of that layer's output stage"));
                }
                _ => {}
            }
            if i > last_compute && !matches!(kind, LayerKind::Relu | LayerKind::BatchNorm { .. }) {
                return Err(bad(at, "type", kind.type_name(), "only batch_norm or activation after the last dense or conv2d layer (the logits come from its output stage)"));
            }
            layers.push(Layer {
                index: i,
                name: lname,
                kind,
                input: cur,
                output: out,
            });
            cur = out;
        }
        // output modes, and the weights each layer's input activations allow
        let mut input_act: Option<(usize, String, InputScheme)> = None;
        for i in 0..layers.len() {
            let relu = layers[i + 1..]
                .iter()
                .take_while(|x| matches!(x.kind, LayerKind::BatchNorm { .. } | LayerKind::Relu))
                .any(|x| x.kind == LayerKind::Relu);
            let l = &mut layers[i];
            let at = Some((l.index, l.name.as_str()));
            let (LayerKind::Dense { quant: q, .. } | LayerKind::Conv2d { quant: q, .. }) = &mut l.kind
            else {
                continue;
            };
            let last = i == last_compute;
            let output = q.output;
            let act = q.act;
            let binary_act = act != InputScheme::Pact;
            match output {
                OutputMode::Pact if binary_act => {
                    return Err(bad(at, "quant.output", "pact", format!("bases with quant.act = \"{}\" (binary activations are basis codes)", act.name())));
                }
                OutputMode::Pact if !relu => {
                    let allowed = if last {
                        "a relu after the layer (PACT clips at 0), or output = \"logits\""
                    } else {
                        "a relu after the layer (PACT clips at 0), or binary activations from the pre-activation (quant.act = \"ls1\", \"ls2\", \"lsT\" or \"gf\"): the array has no signed PACT outputs"
                    };
                    return Err(bad(at, "quant.output", "pact", allowed));
                }
                OutputMode::Logits if !last => {
                    return Err(bad(at, "quant.output", "logits", "only on the last dense or conv2d layer"))
                }
                OutputMode::Logits if relu => {
                    return Err(bad(at, "quant.output", "logits", "a layer without a relu after it (logits are signed)"))
                }
                OutputMode::Bases if last => {
                    return Err(bad(at, "quant.output", "bases", "a layer with a dense or conv2d layer after it (the last layer gives the logits)"));
                }
                OutputMode::Bases if !binary_act => {
                    return Err(bad(at, "quant.act", "pact", "ls1, ls2, lsT or gf with output = \"bases\" (the next layer's binary activations)"));
                }
                OutputMode::Bases if relu => {
                    return Err(bad(at, "quant.output", "bases", format!("no relu after the layer: binary activations (quant.act = \"{}\") are the signs of the pre-activation, which a relu would make all positive", act.name())));
                }
                _ => {}
            }
            let binary_w = q.weights.binary(q.weight_bits).is_some();
            match &input_act {
                Some((pi, pname, pact)) if !binary_w => {
                    return Err(bad(at, "quant.weights", format!("{} with weight_bits = {}", q.weights.name(), q.weight_bits), format!("ls1, ls2, lsT or gf: this layer's inputs are binary activations (quant.act = \"{}\" on layer {pi} `{pname}`), which the array multiplies only with binary weights", pact.name())));
                }
                None if binary_w && q.weight_bits > 1 => {
                    return Err(bad(at, "quant.weights", format!("{} with weight_bits = {}", q.weights.name(), q.weight_bits), "sawb, uniform, levels, or ls1/gf with 1 bit: multi-basis weights need binary activations (quant.act = \"ls1\", \"ls2\", \"lsT\" or \"gf\" on the layer before), and this layer's inputs are PACT codes"));
                }
                _ => {}
            }
            input_act = (output == OutputMode::Bases).then(|| (l.index, l.name.clone(), act));
            Self::check_given(at, q, l.output.channels())?;
        }
        Ok(Network {
            name: name.unwrap_or_else(|| "net".into()),
            input: shape,
            input_bits,
            input_alpha: input.alpha,
            calibration,
            rounding: quant.rounding.unwrap_or(RoundingName::HalfEven),
            array,
            layers,
        })
    }

    /// Given clips, basis scales and levels: counts and values.
    fn check_given(at: Option<(usize, &str)>, q: &LayerQuant, channels: usize) -> Result<(), NetError> {
        let show = |v: &[f64]| format!("{v:?}");
        if let Some(c) = &q.clips {
            let positive = c.iter().all(|v| v.is_finite() && *v > 0.0);
            match q.output {
                OutputMode::Logits => {
                    return Err(bad(at, "quant.clips", show(c), "none with a logits output: the array's logits are the unclipped biased accumulator"));
                }
                OutputMode::Bases => {
                    let bases = q.out_bits.unwrap_or(0) as usize;
                    if c.len() != bases || !positive || (q.act == InputScheme::LsT && c[0] != c[1]) {
                        let tern = if q.act == InputScheme::LsT { ", equal (ternary)" } else { "" };
                        return Err(bad(at, "quant.clips", show(c), format!("with act = \"{}\": the {bases} basis scales [v1{}], each finite and > 0{tern}", q.act.name(), if bases == 2 { ", v2" } else { "" })));
                    }
                }
                OutputMode::Pact if !(c.len() == 1 || c.len() == channels) || !positive => {
                    return Err(bad(at, "quant.clips", show(c), format!("1 clip or {channels} (one per output channel), each finite and > 0")));
                }
                OutputMode::Pact => {}
            }
        }
        if let Some(l) = &q.levels {
            let n = 1usize << q.weight_bits;
            if q.weights != WeightScheme::Levels || l.len() != n || !l.iter().all(|v| v.is_finite()) {
                return Err(bad(at, "quant.levels", show(l), format!("with weights = \"levels\" only: {n} finite levels (2^weight_bits), in code order")));
            }
        }
        Ok(())
    }

    fn resolve_quant(
        at: Option<(usize, &str)>,
        net: &RawQuant,
        own: &RawQuant,
        act_bits: u32,
        last: bool,
    ) -> Result<LayerQuant, NetError> {
        if own.rounding.is_some() {
            return Err(bad(
                at,
                "quant.rounding",
                "given",
                "allowed only network-wide ([quant] rounding)",
            ));
        }
        let weights = own.weights.or(net.weights).unwrap_or(WeightScheme::Sawb);
        let weight_bits = own.weight_bits.or(net.weight_bits).unwrap_or(4);
        let (lo, hi) = weights.bits_range();
        if weight_bits < lo || weight_bits > hi {
            return Err(bad(
                at,
                "quant.weight_bits",
                weight_bits,
                format!("allowed {lo}..={hi} for weights = \"{}\"", weights.name()),
            ));
        }
        // the output activations: the last layer's are its logits, whatever the network's act
        if let (true, Some(a)) = (last, own.act.filter(|a| a.is_binary())) {
            return Err(bad(at, "quant.act", a.name(), "pact (or leave it out) on the last dense or conv2d layer: its output is the logits; binary activations only on a layer with a next layer"));
        }
        let act = if last && own.act.is_none() {
            InputScheme::Pact
        } else {
            own.act.or(net.act).unwrap_or_default()
        };
        let bits = if act.is_binary() {
            // the number of bases: given where the scheme is, else the scheme's own
            let given = if own.act.is_some() { own.act_bits } else { own.act_bits.or(net.act_bits) };
            let b = given.unwrap_or(match act {
                InputScheme::Ls1 => 1,
                _ => 2,
            });
            let (lo, hi) = act.bits_range();
            let hi = hi.min(MAX_OUT_BASES);
            if b < lo || b > hi {
                return Err(bad(at, "quant.act_bits", b, format!("allowed {lo}..={hi} for act = \"{}\" (the number of bases the output stage computes)", act.name())));
            }
            b
        } else {
            let b = own.act_bits.unwrap_or(act_bits);
            bits_in(at, "quant.act_bits", b, 1, 8)?;
            b
        };
        let bias_frac_bits = own.bias_frac_bits.or(net.bias_frac_bits);
        if let Some(f) = bias_frac_bits {
            bits_in(at, "quant.bias_frac_bits", f, 0, MAX_BIAS_FRAC_BITS)?;
        }
        let output = own.output.unwrap_or(if last {
            OutputMode::Logits
        } else if act.is_binary() {
            OutputMode::Bases
        } else {
            OutputMode::Pact
        });
        let granularity = own
            .granularity
            .or(net.granularity)
            .unwrap_or(GranularityName::PerChannel);
        if weights == WeightScheme::Levels
            && granularity == GranularityName::PerChannel
            && (own.granularity.is_some() || net.granularity.is_some())
        {
            return Err(bad(
                at,
                "quant.granularity",
                "per_channel",
                "per_tensor with weights = \"levels\" (one level table per layer)",
            ));
        }
        let granularity = if weights == WeightScheme::Levels {
            GranularityName::PerTensor
        } else {
            granularity
        };
        Ok(LayerQuant {
            weights,
            weight_bits,
            out_bits: (output != OutputMode::Logits).then_some(bits),
            act,
            granularity,
            act_granularity: own
                .act_granularity
                .or(net.act_granularity)
                .unwrap_or(GranularityName::PerChannel),
            output,
            clips: own.clips.clone(),
            levels: own.levels.clone(),
            bias_frac_bits,
        })
    }

    /// One layer: name, kind and output shape from the input shape `cur`.
    fn layer(
        i: usize,
        l: RawLayer,
        cur: Shape,
        net: &RawQuant,
        act_bits: u32,
        last: bool,
    ) -> Result<(String, LayerKind, Shape), NetError> {
        let default_name = |t: &str| format!("{t}{i}");
        match l {
            RawLayer::Dense {
                name,
                weight,
                bias,
                units,
                quant,
            } => {
                let name = name.unwrap_or_else(|| default_name("dense"));
                let at = Some((i, name.as_str()));
                if let Shape::Image(_) = cur {
                    return Err(bad(at, "type", "dense", format!("a flat input; this layer's input is the image {cur}: add a flatten layer before it")));
                }
                if units == 0 {
                    return Err(bad(at, "units", 0, "allowed: >= 1"));
                }
                let quant = Self::resolve_quant(at, net, &quant, act_bits, last)?;
                Ok((
                    name,
                    LayerKind::Dense {
                        weight,
                        bias,
                        quant,
                    },
                    Shape::Flat(units),
                ))
            }
            RawLayer::Conv2d {
                name,
                weight,
                bias,
                channels,
                kernel,
                stride,
                padding,
                quant,
            } => {
                let name = name.unwrap_or_else(|| default_name("conv2d"));
                let at = Some((i, name.as_str()));
                let Shape::Image([_, h, w]) = cur else {
                    return Err(bad(
                        at,
                        "type",
                        "conv2d",
                        format!(
                            "an image input [channels, height, width]; this layer's input is {cur}"
                        ),
                    ));
                };
                if channels == 0 {
                    return Err(bad(at, "channels", 0, "allowed: >= 1"));
                }
                if kernel.contains(&0) || stride.contains(&0) {
                    return Err(bad(
                        at,
                        if kernel.contains(&0) {
                            "kernel"
                        } else {
                            "stride"
                        },
                        format!("{:?}", if kernel.contains(&0) { kernel } else { stride }),
                        "allowed: every value >= 1",
                    ));
                }
                let (ph, pw) = (h + 2 * padding[0], w + 2 * padding[1]);
                if kernel[0] > ph || kernel[1] > pw {
                    return Err(bad(
                        at,
                        "kernel",
                        format!("{kernel:?}"),
                        format!(
                            "at most the padded input {ph}x{pw} (input {cur}, padding {padding:?})"
                        ),
                    ));
                }
                let out = Shape::Image([
                    channels,
                    (ph - kernel[0]) / stride[0] + 1,
                    (pw - kernel[1]) / stride[1] + 1,
                ]);
                let quant = Self::resolve_quant(at, net, &quant, act_bits, last)?;
                Ok((
                    name,
                    LayerKind::Conv2d {
                        weight,
                        bias,
                        kernel,
                        stride,
                        padding,
                        quant,
                    },
                    out,
                ))
            }
            RawLayer::BatchNorm {
                name,
                gamma,
                beta,
                mean,
                var,
                eps,
            } => {
                let name = name.unwrap_or_else(|| default_name("batch_norm"));
                if !(eps.is_finite() && eps >= 0.0) {
                    return Err(bad(
                        Some((i, &name)),
                        "eps",
                        eps,
                        "allowed: a finite number >= 0",
                    ));
                }
                Ok((
                    name,
                    LayerKind::BatchNorm {
                        tensors: [gamma, beta, mean, var],
                        eps,
                    },
                    cur,
                ))
            }
            RawLayer::MaxPool { name, size, stride } => {
                let name = name.unwrap_or_else(|| default_name("max_pool"));
                let at = Some((i, name.as_str()));
                let stride = stride.unwrap_or(size);
                let Shape::Image([c, h, w]) = cur else {
                    return Err(bad(
                        at,
                        "type",
                        "max_pool",
                        format!(
                            "an image input [channels, height, width]; this layer's input is {cur}"
                        ),
                    ));
                };
                if size.contains(&0) || stride.contains(&0) {
                    return Err(bad(
                        at,
                        "size",
                        format!("{size:?} stride {stride:?}"),
                        "allowed: every value >= 1",
                    ));
                }
                if size[0] > h || size[1] > w {
                    return Err(bad(
                        at,
                        "size",
                        format!("{size:?}"),
                        format!("at most the input {h}x{w}"),
                    ));
                }
                Ok((
                    name,
                    LayerKind::MaxPool { size, stride },
                    Shape::Image([
                        c,
                        (h - size[0]) / stride[0] + 1,
                        (w - size[1]) / stride[1] + 1,
                    ]),
                ))
            }
            RawLayer::Flatten { name } => Ok((
                name.unwrap_or_else(|| default_name("flatten")),
                LayerKind::Flatten,
                Shape::Flat(cur.len()),
            )),
            RawLayer::Activation {
                name,
                function: ActFn::Relu,
            } => Ok((
                name.unwrap_or_else(|| default_name("activation")),
                LayerKind::Relu,
                cur,
            )),
        }
    }
}
