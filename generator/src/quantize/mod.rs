//! `qmac quantize`: import the float tensors of a trained layer and turn them into the integer
//! parameters the array loads, with a quantization-error report (docs/quantize.md).
//!
//! The flow, with the function that does each step:
//!
//! 1. [`Spec::from_file`]: the layer spec (TOML): tensor names, weight scheme (`sawb`, `uniform`,
//!    `ls1`, `ls2`, `lsT`, `gf`, `levels`), bits, granularity, layout (fully connected or
//!    convolution), input activations (PACT clip, or binary bases `ls1`, `ls2`, `lsT`, `gf` with
//!    fixed basis scales, [`calibrate_input_scales`] if the spec has none), output PACT clips,
//!    rounding, array shape.
//! 2. [`LayerTensors::load`]: the float tensors from `.safetensors`, `.npy` or `.npz`
//!    ([`read_tensor`]).
//! 3. [`quantize_layer`]: weight codes in the array's encoding (`odd`, `int`, `codebook`, `bases`),
//!    per-channel [`ChannelParams`] (`bias`, `alpha`, `mult`, `shift` in the accumulator domain), the
//!    run-time table (codebook levels, [`codebook`]; or basis-pair scales, [`pair_scales`]) and the
//!    derived [`Config`]: a [`QuantizedLayer`], written as `quantized.json`.
//! 4. [`report::weight_report`]: weight quantization error of the chosen scheme (per tensor and per
//!    output channel) and of every other scheme on the same tensor.
//! 5. [`layer_vectors`]: float input activations in, PACT input codes, GEMM tiles
//!    ([`crate::reference::Step`]s) and [`crate::vectors::Layer`]s for [`crate::vectors::render`] out,
//!    with the float reference and its error.
//!
//! # Integer parameters (the accumulator domain)
//!
//! With weight scale `s_w[o]` (per output channel `o`, or one per tensor), input scale
//! `s_a = alpha_in / (2^in_bits - 1)`, float bias `b[o]`, output clip `alpha[o]` and
//! `n = 2^out_bits - 1`, one accumulator unit is worth `s_acc[o] = s_w[o] * s_a`, and:
//!
//! ```text
//! bias  = round(b[o] / s_acc[o])
//! alpha = max(round(alpha[o] / s_acc[o]), 1)
//! mult / 2^shift ~= s_acc[o] * n / alpha[o]       largest shift with mult <= 2^mult_bits - 1
//! ```
//!
//! so the array's `min(round(clamp(acc + bias, 0, alpha) * mult / 2^shift), n)` is PACT's
//! `clamp(round(clip(y, 0, alpha[o]) * n / alpha[o]), 0, n)` of the layer output
//! `y = s_acc[o] * acc + b[o]`, up to the rounding of `bias`, `alpha` and `mult`. `bias` and `alpha`
//! are then reduced without changing any output to the channel's reachable accumulator range
//! `[lo, hi]` (from its own weight codes and any input codes): a clip above `hi + bias` is lowered to
//! it. A channel whose output is the same for every input gets `alpha = 1`, `bias = 1 - lo` (so
//! `acc + bias >= 1` always) and `mult / 2^shift` = that code (or all four 0 for code 0): a channel
//! with all-zero weights (scale 0, output PACT of `b[o]`), or one whose bias keeps `acc + bias <= 0`
//! or `>= alpha` for every input. The accumulator of the derived [`Config`] is the exact no-overflow
//! width, widened only if a `bias` or `alpha` still needs more bits.
//!
//! Codebook weights (`levels`): `s_w = 2^-e` for integer levels `round(level * 2^e)` ([`fixed_levels`]).
//! Binary activations (`bases`): the array computes `acc = sum_p m[p] D_p` from per-pair counts, with
//! `s_acc[o] = max_ij |u[o][i] v[j]| / (2^(level_bits - 1) - 1)` and `m[p] = round(u[o][i] v[j] /
//! s_acc[o])` ([`pair_scales`]); the padded elements of a tile (codes 0, every basis -1) add
//! `(max_depth - K) * sum_p m[p]`, which is taken off the bias ([`ChannelQuant::acc_offset`]).

pub mod cli;
pub mod import;
pub mod layer;
pub mod report;
pub mod spec;

pub use import::{im2col, read_tensor, tensor_names, ConvGeometry};
pub use layer::{layer_vectors, CodeAgreement, LayerVectors, OutputError};
pub use spec::{ActScheme, AlphaSpec, ArraySpec, ConvSpec, GranularityName, InputScheme, InputSpec, LayoutName, OutputSpec, Spec, WeightScheme, WeightSpec};

use crate::config::{Config, ConfigError, EncodingName, RawConfig};
use crate::reference::{check_params, check_table, ParamError};
use qmac_arith::code::Encoding;
use qmac_arith::pipeline::ChannelParams;
use qmac_arith::quant::levels::LevelTable;
use qmac_arith::quant::{lsq, round_f64, sawb, uniform, Granularity, QuantError, Rounding};
use qmac_arith::width::{signed_bits, unsigned_bits};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format tag of `quantized.json`.
pub const FORMAT: &str = "qmac-quantized 1";

/// Everything that can go wrong in `qmac quantize`.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// A spec field has a value outside what is allowed.
    #[error("spec field `{field}` = {value} is invalid: {allowed}")]
    Spec {
        /// The field, as a dotted path (`weights.bits`).
        field: String,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The spec could not be parsed (TOML syntax, unknown field, wrong type, missing field).
    #[error("cannot parse spec {path}: {message}")]
    SpecParse {
        /// The spec file.
        path: String,
        /// The parser's message (names the field and position).
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A tensor file is malformed or of an unknown kind.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A named tensor is not in the file.
    #[error("tensor `{name}` not found in {}; the file has: {available}", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The tensors in the file.
        available: String,
    },
    /// No tensor name was given and the file has several.
    #[error("{} holds several tensors ({available}); name the one to use", path.display())]
    AmbiguousTensor {
        /// The file.
        path: PathBuf,
        /// The tensors in the file.
        available: String,
    },
    /// A tensor's element type cannot be converted to `f32`.
    #[error("{}: tensor `{name}` has dtype {dtype}, which is not supported; allowed: {allowed}", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
        /// The supported dtypes.
        allowed: &'static str,
    },
    /// A tensor's shape does not fit the spec.
    #[error("{what}")]
    Shape {
        /// What does not fit, with the shapes.
        what: String,
    },
    /// A quantizer rejected its input.
    #[error("{what}: {source}")]
    Quant {
        /// Which tensor was being quantized.
        what: String,
        /// The quantizer's error.
        source: QuantError,
    },
    /// The derived hardware configuration is invalid.
    #[error("derived array configuration: {0}")]
    Config(#[from] ConfigError),
    /// Derived parameters do not fit the configuration (a bug if it ever happens).
    #[error("derived channel parameters: {0}")]
    Params(#[from] ParamError),
    /// A channel's parameters cannot be represented.
    #[error("output channel {channel}: {message}")]
    Requant {
        /// The output channel.
        channel: usize,
        /// Why.
        message: String,
    },
    /// The output directory exists and is not one `qmac quantize` wrote.
    #[error("output directory {} exists and is not a qmac quantize directory (no quantized.json) and not empty; refusing to replace it", .0.display())]
    NotAQuantizeDir(PathBuf),
    /// `quantized.json` has another format.
    #[error("{}: not a {FORMAT} file: {message}", path.display())]
    BadQuantized {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn shape_err(what: impl Into<String>) -> QuantizeError {
    QuantizeError::Shape { what: what.into() }
}

fn quant_err(what: impl Into<String>) -> impl FnOnce(QuantError) -> QuantizeError {
    let what = what.into();
    move |source| QuantizeError::Quant { what, source }
}

/// The float tensors of one layer, resolved from the spec (tensor names read, numbers taken as given).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTensors {
    /// Weight values, C order.
    pub weight: Vec<f32>,
    /// Weight shape: `[out, in]` (fc) or `[out, in, kh, kw]` (conv).
    pub weight_shape: Vec<usize>,
    /// Float bias, one per output channel, if the layer has one.
    pub bias: Option<Vec<f32>>,
    /// PACT clip of the input activations (0 for binary input schemes, which have basis scales instead).
    pub input_alpha: f64,
    /// PACT clip(s) of the output: one value, or one per output channel.
    pub output_alpha: Vec<f64>,
}

impl LayerTensors {
    /// Read the spec's tensors from `path` (`.safetensors`, `.npy`, `.npz`).
    pub fn load(spec: &Spec, path: &Path) -> Result<LayerTensors, QuantizeError> {
        let (weight, weight_shape) = read_tensor(path, Some(&spec.weights.tensor))?;
        let bias = match &spec.weights.bias {
            Some(name) => Some(read_tensor(path, Some(name))?.0),
            None => None,
        };
        let read = |name: &str| -> Result<Vec<f64>, QuantizeError> { Ok(read_tensor(path, Some(name))?.0.into_iter().map(f64::from).collect()) };
        let input_alpha = match (&spec.input.alpha, spec.input.scale) {
            _ if spec.input.scheme.is_binary() => 0.0,
            (Some(AlphaSpec::Tensor(name)), _) => {
                let v = read(name)?;
                if v.len() != 1 {
                    return Err(shape_err(format!("spec field `input.alpha` names tensor `{name}` with {} elements; allowed: 1 element (one clip for the input tensor)", v.len())));
                }
                v[0]
            }
            _ => resolve_input_alpha(spec)?,
        };
        let output_alpha = match &spec.output.alpha {
            AlphaSpec::Tensor(name) => read(name)?,
            a => numeric_alpha(a),
        };
        Ok(LayerTensors { weight, weight_shape, bias, input_alpha, output_alpha })
    }

    /// Tensors given directly; the spec's clips must be numbers (not tensor names).
    pub fn new(spec: &Spec, weight: Vec<f32>, weight_shape: Vec<usize>, bias: Option<Vec<f32>>) -> Result<LayerTensors, QuantizeError> {
        let input_alpha = if spec.input.scheme.is_binary() { 0.0 } else { resolve_input_alpha(spec)? };
        if let AlphaSpec::Tensor(t) = &spec.output.alpha {
            return Err(QuantizeError::Spec { field: "output.alpha".into(), value: format!("{t:?}"), allowed: "a number or a list here (no weights file to read a tensor from)".into() });
        }
        Ok(LayerTensors { weight, weight_shape, bias, input_alpha, output_alpha: numeric_alpha(&spec.output.alpha) })
    }
}

fn numeric_alpha(a: &AlphaSpec) -> Vec<f64> {
    match a {
        AlphaSpec::Value(v) => vec![*v],
        AlphaSpec::PerChannel(v) => v.clone(),
        AlphaSpec::Tensor(_) => Vec::new(),
    }
}

fn resolve_input_alpha(spec: &Spec) -> Result<f64, QuantizeError> {
    let n = f64::from((1u32 << spec.input.bits) - 1);
    match (&spec.input.alpha, spec.input.scale) {
        (Some(AlphaSpec::Value(v)), _) => Ok(*v),
        (None, Some(s)) => Ok(s * n),
        (Some(a), _) => Err(QuantizeError::Spec { field: "input.alpha".into(), value: a.to_string(), allowed: "a number here (no weights file to read a tensor from)".into() }),
        (None, None) => Err(QuantizeError::Spec { field: "input".into(), value: "no alpha and no scale".into(), allowed: "input.alpha or input.scale".into() }),
    }
}

/// Where the layer came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The weights file, as given.
    pub weights_file: String,
    /// The weight tensor's name.
    pub tensor: String,
    /// The bias tensor's name.
    pub bias: Option<String>,
}

/// Shape of the layer as a GEMM `[P][K] x [K][out]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    /// `fc` or `conv`.
    pub layout: LayoutName,
    /// Output channels (GEMM columns).
    pub out_channels: usize,
    /// Reduction depth K: `in` (fc) or `in * kh * kw` (conv).
    pub k: usize,
    /// The weight tensor's shape.
    pub weight_shape: Vec<usize>,
    /// Convolution geometry (conv only).
    pub conv: Option<ConvGeometry>,
    /// How K is ordered.
    pub k_order: String,
}

/// A codebook (`levels` weights): the float level table and the integer levels the array loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodebookLevels {
    /// The `2^bits` float levels in code order: the trained table of `weights.levels`, or the fitted one.
    pub levels: Vec<f64>,
    /// True if the levels were fitted to the weights (no `weights.levels` in the spec).
    pub fitted: bool,
    /// The integer levels the array loads (`level_bits` signed bits): `round(level * 2^exponent)`.
    pub ints: Vec<i64>,
    /// The largest `exponent` with every integer level within `level_bits`; one integer step is worth
    /// `2^-exponent` (the weights' scale).
    pub exponent: i32,
}

/// The quantized weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedWeights {
    /// Scheme.
    pub scheme: WeightScheme,
    /// Code width (the array's `weight_bits`; binary bases: their number).
    pub bits: u32,
    /// How the array decodes a code (`odd`: `2c - (2^bits - 1)`; `int`: two's complement; `codebook`:
    /// index into the level table; `bases`: bit `i` is the sign of basis `i`, 1 meaning +1).
    pub encoding: EncodingName,
    /// One scale per tensor or per output channel.
    pub granularity: GranularityName,
    /// Real value of one integer step: one entry, or one per output channel (`codebook`: `2^-exponent`;
    /// `bases`: the scale of basis 0, all bases in `basis_scales`).
    pub scales: Vec<f64>,
    /// `bases` only: the basis scales `u[c][i]`, one row per output channel (or one row per tensor),
    /// one entry per basis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basis_scales: Vec<Vec<f64>>,
    /// `codebook` only: the level table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<CodebookLevels>,
    /// The hardware's weight codes (unsigned bit patterns), `[out][K]`.
    pub codes: Vec<Vec<u64>>,
    /// The float weights, `[out][K]` (kept for the float reference of [`layer_vectors`]).
    pub float: Vec<Vec<f32>>,
}

impl QuantizedWeights {
    /// Scale of output channel `o`.
    pub fn scale(&self, o: usize) -> f64 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[o]
        }
    }

    /// Basis scales of output channel `o` (`bases` only; empty otherwise).
    pub fn basis_scales_of(&self, o: usize) -> &[f64] {
        match self.basis_scales.len() {
            0 => &[],
            1 => &self.basis_scales[0],
            _ => &self.basis_scales[o],
        }
    }

    /// The array's encoding.
    pub fn enc(&self) -> Encoding {
        self.encoding.into()
    }

    /// Integer value of the code of channel `o`, element `k`: the decoded code (`int`, `odd`), or the
    /// integer level (`codebook`). For `bases` it is the raw code; use [`QuantizedWeights::dequantized`].
    pub fn value(&self, o: usize, k: usize) -> i64 {
        let code = self.codes[o][k];
        match &self.levels {
            Some(l) => l.ints[code as usize],
            None => self.enc().value(self.bits, code),
        }
    }

    /// Real value of the code of channel `o`, element `k`, as the array computes with it: `scale *
    /// value`, or with bases `sum_i u[o][i] * sign_i`.
    pub fn real(&self, o: usize, k: usize) -> f64 {
        if self.encoding == EncodingName::Bases {
            let code = self.codes[o][k];
            self.basis_scales_of(o).iter().enumerate().map(|(i, &u)| if code >> i & 1 == 1 { u } else { -u }).sum()
        } else {
            self.scale(o) * self.value(o, k) as f64
        }
    }

    /// Dequantized weights ([`QuantizedWeights::real`]), `[out][K]` flattened.
    pub fn dequantized(&self) -> Vec<f64> {
        (0..self.codes.len()).flat_map(|o| (0..self.codes[o].len()).map(move |k| (o, k))).map(|(o, k)| self.real(o, k)).collect()
    }

    /// Float weights `[out][K]` flattened.
    pub fn float_flat(&self) -> Vec<f32> {
        self.float.iter().flatten().copied().collect()
    }
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}
fn is_zero_i64(x: &i64) -> bool {
    *x == 0
}
fn is_false(x: &bool) -> bool {
    !*x
}

/// Input activation quantizer: PACT with one clip, or binary bases with one set of basis scales.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputQuant {
    /// `pact` or a binary scheme.
    #[serde(default)]
    pub scheme: InputScheme,
    /// Code width (the array's `act_bits`; binary schemes: the number of bases).
    pub bits: u32,
    /// PACT clip (PACT only).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub alpha: f64,
    /// `alpha / (2^bits - 1)` (PACT only).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub scale: f64,
    /// Binary schemes: the fixed basis scales `v[j]` every input is encoded with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basis_scales: Vec<f64>,
    /// True if `basis_scales` were calibrated on the `--inputs` of `qmac quantize` (else from the spec).
    #[serde(default, skip_serializing_if = "is_false")]
    pub calibrated: bool,
}

/// Output activation quantizer: PACT, per output channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputQuant {
    /// Code width (the array's `out_bits`).
    pub bits: u32,
    /// PACT clip of each output channel.
    pub alphas: Vec<f64>,
    /// `alpha / (2^bits - 1)` of each output channel.
    pub scales: Vec<f64>,
}

/// One output channel's integer parameters and the real values they approximate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelQuant {
    /// Real value of one accumulator unit: `s_w * s_a`; with binary activations
    /// `max_ij |u[i] v[j]| / (2^(level_bits - 1) - 1)`.
    pub acc_scale: f64,
    /// Reachable accumulator range `[lo, hi]` of this channel for any input codes (including
    /// `acc_offset`).
    pub acc_range: [i64; 2],
    /// `b / acc_scale`.
    pub bias_real: f64,
    /// `alpha_out / acc_scale`.
    pub alpha_real: f64,
    /// `acc_scale * (2^out_bits - 1) / alpha_out`; for a constant channel, the constant code.
    pub mult_real: f64,
    /// Loaded bias.
    pub bias: i64,
    /// Loaded clip.
    pub alpha: u64,
    /// Loaded multiplier.
    pub mult: u64,
    /// Loaded shift.
    pub shift: u32,
    /// `|mult / 2^shift - mult_real| / mult_real`.
    pub mult_rel_error: f64,
    /// Binary activations: the channel's basis-pair scales `m[p]` (pair `p = i * act_bases + j`),
    /// the run-time table's entries for this channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pair_scales: Vec<i64>,
    /// What the padded elements of every tile (K rounded up to `lanes`, codes 0) add to the
    /// accumulator: with binary activations `(max_depth - K) * sum_p m[p]` (codes 0 are -1 bases, not
    /// zeros), 0 otherwise. It is already subtracted from `bias`, and included in `acc_range`.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub acc_offset: i64,
    /// Special handling, if any (constant channel, reduced bias or clip, saturated multiplier).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl ChannelQuant {
    /// The parameters the array loads.
    pub fn params(&self) -> ChannelParams {
        ChannelParams { bias: self.bias, alpha: self.alpha, mult: self.mult, shift: self.shift }
    }
}

/// A quantized layer: what `quantized.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedLayer {
    /// [`FORMAT`].
    pub format: String,
    /// Where the tensors came from.
    pub source: Source,
    /// The spec used.
    pub spec: Spec,
    /// GEMM shape.
    pub geometry: Geometry,
    /// Weights.
    pub weights: QuantizedWeights,
    /// Float bias per output channel (zeros if the layer has none).
    pub bias: Vec<f32>,
    /// Input activation quantizer.
    pub input: InputQuant,
    /// Output activation quantizer.
    pub output: OutputQuant,
    /// Per output channel parameters.
    pub channels: Vec<ChannelQuant>,
    /// The array configuration (every field written out; `config.toml` is the same as TOML).
    pub config: RawConfig,
}

impl QuantizedLayer {
    /// The validated array configuration.
    pub fn config(&self) -> Result<Config, QuantizeError> {
        Ok(Config::new(self.config.clone())?)
    }

    /// The parameters the array loads, one per output channel.
    pub fn params(&self) -> Vec<ChannelParams> {
        self.channels.iter().map(ChannelQuant::params).collect()
    }

    /// True when the array computes with basis pairs (binary activations).
    pub fn is_bases(&self) -> bool {
        self.config.act_encoding == EncodingName::Bases
    }

    /// Basis pairs per channel (weight bases x activation bases) with binary activations, else 1.
    pub fn basis_pairs(&self) -> usize {
        if self.is_bases() {
            (self.weights.bits * self.input.bits) as usize
        } else {
            1
        }
    }

    /// The run-time table of column group `group` (output channels `group * cols ..`): a codebook's
    /// integer levels (the same for every group), or the basis-pair scales of the group's channels,
    /// channel `c` pair `p` at `c * basis_pairs + p`, zeros for columns past the last channel; empty for
    /// other encodings.
    pub fn table(&self, group: usize) -> Vec<i64> {
        if let Some(l) = &self.weights.levels {
            return l.ints.clone();
        }
        if !self.is_bases() {
            return Vec::new();
        }
        let (cols, np) = (self.config.cols as usize, self.basis_pairs());
        (0..cols).flat_map(|c| match self.channels.get(group * cols + c) {
            Some(ch) => ch.pair_scales.clone(),
            None => vec![0; np],
        }).collect()
    }

    /// The rounding rule.
    pub fn rounding(&self) -> Rounding {
        self.spec.rounding.into()
    }

    /// Read `quantized.json` (`path` is the file or the directory holding it).
    pub fn load(path: &Path) -> Result<QuantizedLayer, QuantizeError> {
        let file = if path.is_dir() { path.join("quantized.json") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|source| QuantizeError::Io { path: file.clone(), source })?;
        let q: QuantizedLayer = serde_json::from_str(&text).map_err(|e| QuantizeError::BadQuantized { path: file.clone(), message: e.to_string() })?;
        if q.format != FORMAT {
            return Err(QuantizeError::BadQuantized { path: file, message: format!("format is {:?}", q.format) });
        }
        q.config()?;
        Ok(q)
    }

    /// `quantized.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("quantized layer serialises") + "\n"
    }
}

/// How K is ordered, for the docs and `quantized.json`.
pub const FC_K_ORDER: &str = "k = input feature (weights [out][in])";
/// im2col order of K.
pub const CONV_K_ORDER: &str = "k = (ci * kh + ky) * kw + kx (row-major flattening of weights [out][in][kh][kw]); GEMM row p = (n * OH + oy) * OW + ox";

fn geometry(spec: &Spec, shape: &[usize]) -> Result<Geometry, QuantizeError> {
    let name = &spec.weights.tensor;
    let (out, k, conv, order) = match spec.weights.layout {
        LayoutName::Fc => {
            if shape.len() != 2 {
                return Err(shape_err(format!("weight tensor `{name}` has shape {shape:?}; weights.layout = \"fc\" needs 2 dimensions [out][in]")));
            }
            (shape[0], shape[1], None, FC_K_ORDER)
        }
        LayoutName::Conv => {
            if shape.len() != 4 {
                return Err(shape_err(format!("weight tensor `{name}` has shape {shape:?}; weights.layout = \"conv\" needs 4 dimensions [out][in][kh][kw]")));
            }
            let g = ConvGeometry::new(shape[1], [shape[2], shape[3]], &spec.conv_geometry());
            (shape[0], g.k(), Some(g), CONV_K_ORDER)
        }
    };
    if out == 0 || k == 0 {
        return Err(shape_err(format!("weight tensor `{name}` has shape {shape:?}: no elements")));
    }
    Ok(Geometry { layout: spec.weights.layout, out_channels: out, k, weight_shape: shape.to_vec(), conv, k_order: order.into() })
}

/// What [`quantize_weights`] produces.
struct WeightsOut {
    codes: Vec<u64>,
    scales: Vec<f64>,
    encoding: EncodingName,
    basis_scales: Vec<Vec<f64>>,
    levels: Option<CodebookLevels>,
}

/// The integer levels of a codebook: `round(level * 2^e)` (the spec's rounding) with the largest `e`
/// (at most 62) for which every level fits `level_bits` signed bits; `e` may be negative for levels of
/// `2^(level_bits - 1)` or more. An all-zero table gets `e = 0`. Returns `(ints, e)`.
pub fn fixed_levels(table: &LevelTable, level_bits: u32, rounding: Rounding) -> Result<(Vec<i64>, i32), QuantizeError> {
    if table.levels().iter().all(|&l| l == 0.0) {
        return Ok((vec![0; table.levels().len()], 0));
    }
    let q = |e: QuantError| QuantizeError::Quant { what: "weight level table".into(), source: e };
    for e in (-1000..=62i32).rev() {
        let fixed = if e >= 0 {
            table.to_fixed_with(e as u32, level_bits, rounding)
        } else {
            // 2^e is exact, so pre-scaling the levels changes nothing but the exponent
            let scaled: Vec<f64> = table.levels().iter().map(|&l| l * 2f64.powi(e)).collect();
            LevelTable::new(table.bits(), scaled).map_err(q)?.to_fixed_with(0, level_bits, rounding)
        };
        match fixed {
            Ok(f) => return Ok((f.levels().iter().map(|&v| i64::from(v)).collect(), e)),
            Err(QuantError::LevelOverflow { .. }) => continue,
            Err(other) => return Err(q(other)),
        }
    }
    Err(QuantizeError::Spec { field: "weights.levels".into(), value: "levels beyond 2^1000".into(), allowed: "finite levels of a sane magnitude".into() })
}

/// The codebook of `levels` weights: the trained table if given, else [`LevelTable::fit`]; codes are the
/// nearest levels of the float table ([`LevelTable::quantize`], ties to the lower index).
pub fn codebook(w: &[f32], bits: u32, trained: Option<&[f64]>, level_bits: u32, rounding: Rounding) -> Result<(Vec<u64>, CodebookLevels), QuantizeError> {
    let q = |e: QuantError| QuantizeError::Quant { what: "weight level table".into(), source: e };
    let table = match trained {
        Some(l) => LevelTable::new(bits, l.to_vec()).map_err(q)?,
        None => LevelTable::fit(bits, w).map_err(q)?,
    };
    let codes = table.quantize(w).map_err(q)?.codes().iter().map(|&c| u64::from(c)).collect();
    let (ints, exponent) = fixed_levels(&table, level_bits, rounding)?;
    Ok((codes, CodebookLevels { levels: table.levels().to_vec(), fitted: trained.is_none(), ints, exponent }))
}

/// Quantize the weights by the spec: codes `[out][K]` (flattened), scales, encoding, and the basis scales
/// or level table. Binary schemes load as `bases` codes when the activations are binary too, else (ls-1,
/// gf-1) as 1-bit `odd` codes.
fn quantize_weights(spec: &Spec, w: &[f32], out: usize) -> Result<WeightsOut, QuantizeError> {
    let bits = spec.weights.bits;
    let g = match spec.weights.granularity {
        GranularityName::PerTensor => Granularity::PerTensor,
        GranularityName::PerChannel => Granularity::PerChannel { axis0_len: out },
    };
    let what = format!("weight tensor `{}`", spec.weights.tensor);
    let plain = |codes: Vec<u64>, scales: Vec<f64>, encoding| WeightsOut { codes, scales, encoding, basis_scales: Vec::new(), levels: None };
    if let Some(scheme) = spec.weights.scheme.binary(bits) {
        let q = lsq::quantize(w, g, scheme).map_err(quant_err(what))?;
        let mut codes = vec![0u64; w.len()];
        for (i, b) in q.bases().iter().enumerate() {
            for (c, &s) in codes.iter_mut().zip(b.signs()) {
                *c |= u64::from(s) << i;
            }
        }
        let scales = q.bases()[0].scales().to_vec();
        if !spec.input.scheme.is_binary() {
            // one basis (validated): the sign bit is the 1-bit odd code, +-scale
            return Ok(plain(codes, scales, EncodingName::Odd));
        }
        let basis_scales = (0..g.channels()).map(|c| q.bases().iter().map(|b| b.scales()[c]).collect()).collect();
        return Ok(WeightsOut { codes, scales, encoding: EncodingName::Bases, basis_scales, levels: None });
    }
    match spec.weights.scheme {
        WeightScheme::Sawb => {
            let q = sawb::quantize(w, g, bits).map_err(quant_err(what))?;
            let scales = q.map().scales().expect("linear map").to_vec();
            Ok(plain(q.codes().iter().map(|&c| u64::from(c)).collect(), scales, EncodingName::Odd))
        }
        WeightScheme::Uniform => {
            let q = uniform::signed(w, g, bits, spec.rounding.into()).map_err(quant_err(what))?;
            let scales = q.map().scales().expect("linear map").to_vec();
            Ok(plain(q.codes().iter().map(|&c| u64::from(c)).collect(), scales, EncodingName::Int))
        }
        WeightScheme::Levels => {
            let (codes, levels) = codebook(w, bits, spec.weights.levels.as_deref(), spec.array.level_bits, spec.rounding.into())?;
            let scales = vec![2f64.powi(-levels.exponent)];
            Ok(WeightsOut { codes, scales, encoding: EncodingName::Codebook, basis_scales: Vec::new(), levels: Some(levels) })
        }
        WeightScheme::Ls1 | WeightScheme::Ls2 | WeightScheme::LsT | WeightScheme::Gf => unreachable!("binary schemes are handled above"),
    }
}

/// Basis-pair scales of one output channel: with weight basis scales `u[i]` and activation basis scales
/// `v[j]`, the accumulator unit `s_acc = max_ij |u[i] v[j]| / (2^(level_bits - 1) - 1)` and the integer
/// pair scales `m[i * v.len() + j] = round(u[i] v[j] / s_acc)` (the spec's rounding), each within
/// `level_bits` signed bits. Then for any per-pair counts `D_ij`,
/// `|s_acc * sum_p m[p] D_p - sum_ij u[i] v[j] D_ij| <= s_acc / 2 * sum_p |D_p|`. All-zero products give
/// `s_acc = 0` and all-zero `m` (a channel with constant output).
pub fn pair_scales(u: &[f64], v: &[f64], level_bits: u32, rounding: Rounding) -> (f64, Vec<i64>) {
    let prods: Vec<f64> = u.iter().flat_map(|&ui| v.iter().map(move |&vj| ui * vj)).collect();
    let top = prods.iter().fold(0.0f64, |m, p| m.max(p.abs()));
    if top == 0.0 || !top.is_finite() {
        return (0.0, vec![0; prods.len()]);
    }
    let lmax = ((1i64 << (level_bits - 1)) - 1) as f64;
    let s_acc = top / lmax;
    (s_acc, prods.iter().map(|&p| round_f64(p / s_acc, rounding).clamp(-lmax, lmax) as i64).collect())
}

/// Encode real activations as binary-basis codes with fixed basis scales `v`: the residual signs
/// (`lsq::quantize_with_scales`: `s_1 = sign(x)`, `s_(j+1) = sign(x - v_1 s_1 - ... - v_j s_j)`,
/// `sign(0) = +1`), bit `j` of a code is the sign of basis `j` (1 meaning +1).
pub fn encode_bases(x: &[f32], v: &[f64]) -> Result<Vec<u64>, QuantizeError> {
    let q = lsq::quantize_with_scales(x, v).map_err(quant_err("input activations"))?;
    let mut codes = vec![0u64; x.len()];
    for (j, b) in q.bases().iter().enumerate() {
        for (c, &s) in codes.iter_mut().zip(b.signs()) {
            *c |= u64::from(s) << j;
        }
    }
    Ok(codes)
}

/// Calibrate the basis scales of a binary input scheme on real input activations: the scheme's own fit
/// (`lsq::quantize` per tensor) over every value of `x`, as given (before any im2col or padding), each
/// scale rounded to 9 significant digits (a relative change below `5e-9`) so that `spec.toml` and
/// `quantized.json` hold exactly the scales the inputs are encoded with (JSON floats of more digits
/// read back only to within one ulp).
pub fn calibrate_input_scales(spec: &Spec, x: &[f32]) -> Result<Vec<f64>, QuantizeError> {
    let Some(scheme) = spec.input.scheme.binary(spec.input.bits) else {
        return Err(QuantizeError::Spec { field: "input.scheme".into(), value: format!("\"{}\"", spec.input.scheme.name()), allowed: "a binary scheme (ls1, ls2, lsT, gf) to calibrate basis scales for".into() });
    };
    let q = lsq::quantize(x, Granularity::PerTensor, scheme).map_err(quant_err("input activations (calibration)"))?;
    Ok(q.bases().iter().map(|b| format!("{:.8e}", b.scales()[0]).parse().unwrap_or(b.scales()[0])).collect())
}

/// With binary activations: the largest accumulator `sum_p m[p] D_p` any input codes can give, for a
/// channel with weight codes `codes` (`wb` bases) and pair scales `m` (`ab` activation bases). Each
/// element's activation signs are free, so element `k` adds at most `sum_j |sum_i m[i ab + j] s_i(w_k)|`;
/// the smallest accumulator is the negative of the largest.
fn bases_reach(codes: &[u64], m: &[i64], wb: u32, ab: u32) -> i128 {
    codes
        .iter()
        .map(|&c| (0..ab).map(|j| (0..wb).map(|i| i128::from(m[(i * ab + j) as usize]) * i128::from(crate::reference::basis_sign(c, i))).sum::<i128>().abs()).sum::<i128>())
        .sum()
}

/// PACT code of a real value: `clamp(round(clip(y, 0, alpha) * n / alpha), 0, n)`.
pub fn pact_code(y: f64, alpha: f64, bits: u32, rounding: Rounding) -> u64 {
    let n = f64::from((1u32 << bits) - 1);
    let c = y.clamp(0.0, alpha);
    round_f64(c * n / alpha, rounding).clamp(0.0, n) as u64
}

/// `(mult, shift, saturated)`: the largest `shift <= max_shift` with `round(m * 2^shift)` within
/// `mult_bits`; if even shift 0 overflows, the largest multiplier and shift 0 (`saturated`).
pub fn mult_shift(m: f64, mult_bits: u32, max_shift: u32, rounding: Rounding) -> (u64, u32, bool) {
    let mmax = ((1u128 << mult_bits) - 1) as f64;
    for s in (0..=max_shift).rev() {
        let v = round_f64(m * 2f64.powi(s as i32), rounding);
        if v <= mmax {
            return (v as u64, s, false);
        }
    }
    (mmax as u64, 0, true)
}

fn to_i128(x: f64) -> i128 {
    // values beyond +-2^100 are reduced to the accumulator range below anyway
    x.clamp(-1e30, 1e30) as i128
}

/// Quantize a layer: weight codes, per-channel integer parameters and the array configuration.
pub fn quantize_layer(spec: &Spec, t: &LayerTensors, source: Source) -> Result<QuantizedLayer, QuantizeError> {
    spec.validate()?;
    let geo = geometry(spec, &t.weight_shape)?;
    let (out, k) = (geo.out_channels, geo.k);
    if t.weight.len() != out * k {
        return Err(shape_err(format!("weight tensor `{}` has {} values but shape {:?}", spec.weights.tensor, t.weight.len(), t.weight_shape)));
    }
    let rounding: Rounding = spec.rounding.into();
    let bias: Vec<f32> = match &t.bias {
        Some(b) if b.len() == out => b.clone(),
        Some(b) => return Err(shape_err(format!("bias tensor `{}` has {} values; the weight tensor has {out} output channels", spec.weights.bias.as_deref().unwrap_or(""), b.len()))),
        None => vec![0.0; out],
    };
    if let Some(i) = bias.iter().position(|v| !v.is_finite()) {
        return Err(shape_err(format!("bias tensor value {i} is {}, not finite", bias[i])));
    }
    // activation quantizers
    let binary_in = spec.input.scheme.is_binary();
    let (a_in, s_a, in_scales) = if binary_in {
        let Some(v) = spec.input.scales.clone() else {
            let n = spec.input.bits;
            let names: Vec<String> = (1..=n).map(|j| format!("v{j}")).collect();
            return Err(QuantizeError::Spec {
                field: "input.scales".into(),
                value: "(not given)".into(),
                allowed: format!(
                    "the {n} basis scales [{}] of the \"{}\" input activations: the array's basis-pair scales are fixed, so give input.scales in the spec, or --inputs to calibrate them on real inputs",
                    names.join(", "),
                    spec.input.scheme.name()
                ),
            });
        };
        (0.0, 0.0, v)
    } else {
        let in_n = f64::from((1u32 << spec.input.bits) - 1);
        let a_in = t.input_alpha;
        if !(a_in.is_finite() && a_in > 0.0) {
            return Err(QuantizeError::Spec { field: "input.alpha".into(), value: a_in.to_string(), allowed: "a finite number > 0".into() });
        }
        (a_in, a_in / in_n, Vec::new())
    };
    let out_alphas: Vec<f64> = match t.output_alpha.len() {
        1 => vec![t.output_alpha[0]; out],
        n if n == out => t.output_alpha.clone(),
        n => {
            return Err(QuantizeError::Spec {
                field: "output.alpha".into(),
                value: format!("{n} values"),
                allowed: format!("1 value (per tensor) or {out} values (one per output channel of `{}`)", spec.weights.tensor),
            })
        }
    };
    for (i, &a) in out_alphas.iter().enumerate() {
        if !(a.is_finite() && a > 0.0) {
            return Err(QuantizeError::Spec { field: format!("output.alpha[{i}]"), value: a.to_string(), allowed: "a finite number > 0".into() });
        }
    }
    let out_n = (1u64 << spec.output.bits) - 1;
    let out_scales: Vec<f64> = out_alphas.iter().map(|a| a / out_n as f64).collect();

    // weights
    let wq = quantize_weights(spec, &t.weight, out)?;
    let encoding = wq.encoding;
    let weights = QuantizedWeights {
        scheme: spec.weights.scheme,
        bits: spec.weights.bits,
        encoding,
        granularity: spec.weights.granularity,
        scales: wq.scales,
        basis_scales: wq.basis_scales,
        levels: wq.levels,
        codes: wq.codes.chunks(k).map(<[u64]>::to_vec).collect(),
        float: t.weight.chunks(k).map(<[f32]>::to_vec).collect(),
    };
    let lanes = spec.array.lanes;
    let max_depth = k.div_ceil(lanes as usize) * lanes as usize;
    let padded = (max_depth - k) as i128;

    // per channel: bias and clip in the accumulator domain, reduced to the reachable range
    let amax = (1i128 << spec.input.bits) - 1;
    struct Pre {
        s_acc: f64,
        pair_scales: Vec<i64>,
        offset: i128,
        lo: i128,
        hi: i128,
        bias_real: f64,
        alpha_real: f64,
        m: f64,
        bias: i128,
        alpha: i128,
        notes: Vec<String>,
    }
    let mut pre = Vec::with_capacity(out);
    for o in 0..out {
        let (s_acc, pair_m, lo, hi, offset) = if binary_in {
            // acc = sum_p m[p] D_p; padded elements (codes 0: every basis -1) add sum_p m[p] each
            let (s_acc, m) = pair_scales(weights.basis_scales_of(o), &in_scales, spec.array.level_bits, rounding);
            let reach = bases_reach(&weights.codes[o], &m, spec.weights.bits, spec.input.bits);
            let offset = padded * m.iter().map(|&v| i128::from(v)).sum::<i128>();
            (s_acc, m, -reach + offset, reach + offset, offset)
        } else {
            let (mut lo, mut hi) = (0i128, 0i128);
            for kk in 0..k {
                let v = i128::from(weights.value(o, kk));
                if v < 0 {
                    lo += v * amax;
                } else {
                    hi += v * amax;
                }
            }
            (weights.scale(o) * s_a, Vec::new(), lo, hi, 0)
        };
        let b = f64::from(bias[o]);
        let mut notes = Vec::new();
        let (bias_real, alpha_real, m) = if s_acc == 0.0 { (0.0, 0.0, 0.0) } else { (b / s_acc, out_alphas[o] / s_acc, s_acc * out_n as f64 / out_alphas[o]) };
        // the bias is loaded in the array's accumulator domain, which includes the padded elements
        let mut bias_i = to_i128(round_f64(bias_real, rounding)) - offset;
        let mut alpha_i = to_i128(round_f64(alpha_real, rounding)).max(1);
        // a constant output code, if the channel has one
        let constant = if s_acc == 0.0 {
            let c0 = pact_code(b, out_alphas[o], spec.output.bits, rounding);
            let what = if binary_in { "all-zero basis-pair scales" } else { "all-zero weights" };
            notes.push(format!("{what}: constant output code {c0} (PACT of the bias)"));
            Some(c0)
        } else if hi + bias_i <= 0 {
            notes.push(format!("acc + bias <= 0 for every input (bias {bias_real:.4}): constant output code 0"));
            Some(0)
        } else if lo + bias_i >= alpha_i {
            let c = round_f64(alpha_i as f64 * m, rounding).clamp(0.0, out_n as f64) as u64;
            notes.push(format!("acc + bias >= clip {alpha_i} for every input (bias {bias_real:.4}): constant output code {c}"));
            Some(c)
        } else {
            if offset != 0 {
                notes.push(format!("bias lowered by {offset}: the {padded} padded elements of every tile (codes 0, every basis -1) add sum_p m[p] = {} each", offset / padded));
            }
            if alpha_i > hi + bias_i {
                alpha_i = hi + bias_i;
                notes.push(format!("clip {alpha_real:.4} reduced to {alpha_i}, the largest reachable acc + bias"));
            }
            None
        };
        let m = match constant {
            // alpha = 1 and acc + bias >= 1 always: the output is round(mult / 2^shift) = c
            Some(c) if c > 0 => {
                (bias_i, alpha_i) = (1 - lo, 1);
                c as f64
            }
            Some(_) => {
                (bias_i, alpha_i) = (0, 0);
                0.0
            }
            None => m,
        };
        pre.push(Pre { s_acc, pair_scales: pair_m, offset, lo, hi, bias_real, alpha_real, m, bias: bias_i, alpha: alpha_i, notes });
    }

    // the array configuration
    if max_depth > 1 << 24 {
        return Err(shape_err(format!("weight tensor `{}`: K = {k} is deeper than the array supports (max_depth at most 2^24)", spec.weights.tensor)));
    }
    let mut raw = RawConfig {
        module_prefix: spec.array.module_prefix.clone(),
        rows: spec.array.rows,
        cols: spec.array.cols.unwrap_or_else(|| (out as u32).clamp(1, 8)),
        lanes,
        max_depth: max_depth as u32,
        weight_bits: spec.weights.bits,
        weight_encoding: encoding,
        level_bits: spec.array.level_bits,
        act_bits: spec.input.bits,
        act_encoding: if binary_in { EncodingName::Bases } else { EncodingName::Unsigned },
        out_bits: Some(spec.output.bits),
        acc_bits: None,
        acc_saturate: false,
        mult_bits: spec.array.mult_bits,
        rounding: spec.rounding,
        ..RawConfig::default()
    };
    let exact = Config::new(raw.clone())?.exact_acc_bits();
    let need = pre.iter().map(|p| signed_bits(p.bias.min(0), p.bias.max(0)).max(unsigned_bits(p.alpha.max(0) as u128))).max().unwrap_or(2);
    if need > exact {
        if need > 64 {
            let (o, p) = pre.iter().enumerate().max_by_key(|(_, p)| p.bias.abs().max(p.alpha)).expect("channels");
            return Err(QuantizeError::Requant { channel: o, message: format!("bias {} / clip {} in the accumulator domain need {need} bits, more than 64 (the float bias or clip is out of all proportion to the weight and input scales)", p.bias, p.alpha) });
        }
        raw.acc_bits = Some(need);
    }
    let cfg = Config::new(raw)?;
    let max_shift = cfg.max_shift();
    let mut channels = Vec::with_capacity(out);
    for p in pre {
        let mut notes = p.notes;
        let (mult, shift, saturated) = mult_shift(p.m, spec.array.mult_bits, max_shift, rounding);
        if saturated {
            notes.push(format!("multiplier {:.4} does not fit mult_bits = {}; saturated to {mult}", p.m, spec.array.mult_bits));
        }
        let approx = mult as f64 / 2f64.powi(shift as i32);
        let mult_rel_error = if p.m > 0.0 { (approx - p.m).abs() / p.m } else { 0.0 };
        channels.push(ChannelQuant {
            acc_scale: p.s_acc,
            acc_range: [p.lo as i64, p.hi as i64],
            bias_real: p.bias_real,
            alpha_real: p.alpha_real,
            mult_real: p.m,
            bias: p.bias as i64,
            alpha: p.alpha as u64,
            mult,
            shift,
            mult_rel_error,
            pair_scales: p.pair_scales,
            acc_offset: p.offset as i64,
            notes,
        });
    }
    let params: Vec<ChannelParams> = channels.iter().map(ChannelQuant::params).collect();
    // check every channel against the field widths (check_params wants exactly `cols` sets)
    for chunk in params.chunks(cfg.cols as usize) {
        let mut full = chunk.to_vec();
        full.resize(cfg.cols as usize, ChannelParams { bias: 0, alpha: 0, mult: 0, shift: 0 });
        check_params(&cfg, &full)?;
    }
    let layer = QuantizedLayer {
        format: FORMAT.into(),
        source,
        spec: spec.clone(),
        geometry: geo,
        weights,
        bias,
        input: InputQuant { scheme: spec.input.scheme, bits: spec.input.bits, alpha: a_in, scale: s_a, basis_scales: in_scales, calibrated: false },
        output: OutputQuant { bits: spec.output.bits, alphas: out_alphas, scales: out_scales },
        channels,
        config: (*cfg).clone(),
    };
    // and the run-time table of every column group
    for g in 0..out.div_ceil(cfg.cols as usize) {
        check_table(&cfg, &layer.table(g))?;
    }
    Ok(layer)
}

/// Write `files` into `out` all at once: a temporary sibling directory is filled and then renamed
/// over `out`, so a failure leaves nothing half written. An existing `out` is replaced only if it is
/// empty or holds a `quantized.json`.
pub fn write_dir(out: &Path, files: &[(&str, String)]) -> Result<(), QuantizeError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| QuantizeError::Io { path: p, source }
    };
    if out.exists() {
        let ours = out.join("quantized.json").is_file();
        let empty = out.is_dir() && std::fs::read_dir(out).map_err(io(out))?.next().is_none();
        if !ours && !empty {
            return Err(QuantizeError::NotAQuantizeDir(out.to_path_buf()));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "quantized".into());
    let tmp = parent.join(format!(".{name}.qmac-tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let result = (|| {
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for (rel, text) in files {
            let path = tmp.join(rel);
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io(out))?;
    }
    std::fs::rename(&tmp, out).map_err(io(out))
}

/// What [`quantize_to_dir`] produced.
#[derive(Clone, Debug)]
pub struct QuantizeRun {
    /// The quantized layer (`quantized.json`).
    pub layer: QuantizedLayer,
    /// The weight report.
    pub weights: report::WeightReport,
    /// The layer run on the given inputs, if any (`vectors.txt`).
    pub vectors: Option<LayerVectors>,
    /// The files written, relative to the output directory.
    pub files: Vec<String>,
}

/// The whole `qmac quantize` job: read the spec and the tensors, quantize, report, and write
/// `quantized.json`, `config.toml`, `spec.toml`, `report.json`, `report.md` (and, with `inputs`,
/// `vectors.txt`: the layer run on those inputs, for `qmac sim`) into `out`, all at once.
///
/// A binary input scheme without `input.scales` has its basis scales calibrated on `inputs`
/// ([`calibrate_input_scales`]); they are written into `spec.toml` and `quantized.json`, so the layer
/// runs later inputs with the same fixed scales. Without `inputs` that is an error naming `input.scales`.
pub fn quantize_to_dir(weights: &Path, spec_path: &Path, out: &Path, inputs: Option<(&Path, Option<&str>)>) -> Result<QuantizeRun, QuantizeError> {
    let mut spec = Spec::from_file(spec_path)?;
    let x = match inputs {
        Some((path, name)) => Some(read_tensor(path, name)?),
        None => None,
    };
    let mut calibrated = false;
    if let (true, None, Some((x, _))) = (spec.input.scheme.is_binary(), &spec.input.scales, &x) {
        spec.input.scales = Some(calibrate_input_scales(&spec, x)?);
        calibrated = true;
    }
    let tensors = LayerTensors::load(&spec, weights)?;
    let source = Source { weights_file: weights.display().to_string(), tensor: spec.weights.tensor.clone(), bias: spec.weights.bias.clone() };
    let mut layer = quantize_layer(&spec, &tensors, source)?;
    layer.input.calibrated = calibrated;
    let wr = report::weight_report(&layer)?;
    let vectors = match &x {
        Some((x, shape)) => Some(layer_vectors(&layer, x, shape)?),
        None => None,
    };
    let cfg = layer.config()?;
    let mut files: Vec<(&str, String)> = vec![
        ("quantized.json", layer.to_json()),
        ("config.toml", cfg.to_toml()),
        ("spec.toml", spec.to_toml()),
        ("report.json", serde_json::to_string_pretty(&report::report_json(&layer, &wr, vectors.as_ref())).expect("report serialises") + "\n"),
        ("report.md", report::report_markdown(&layer, &wr, vectors.as_ref())),
    ];
    if let Some(v) = &vectors {
        files.push(("vectors.txt", crate::vectors::render(&v.config, &v.layers)?));
    }
    write_dir(out, &files)?;
    Ok(QuantizeRun { layer, weights: wr, vectors, files: files.iter().map(|(n, _)| n.to_string()).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mult_shift_takes_the_largest_shift() {
        // m = 0.75 with 4-bit multipliers: 0.75 * 16 = 12 fits, 0.75 * 32 = 24 does not
        assert_eq!(mult_shift(0.75, 4, 40, Rounding::HalfEven), (12, 4, false));
        // exact powers of two keep the full width: 1.0 * 2^3 = 8 <= 15
        assert_eq!(mult_shift(1.0, 4, 40, Rounding::HalfEven), (8, 3, false));
        // capped by max_shift
        assert_eq!(mult_shift(0.001, 16, 5, Rounding::HalfEven), (0, 5, false));
        // too large even at shift 0
        assert_eq!(mult_shift(40.0, 4, 40, Rounding::HalfEven), (15, 0, true));
        // rounding near the top: 15.6 rounds to 16 > 15 at shift 0 -> saturated
        assert_eq!(mult_shift(15.6, 4, 0, Rounding::HalfEven), (15, 0, true));
        // 0.49 * 32 = 15.68 -> 16 does not fit, so shift 4: 7.84 -> 8
        assert_eq!(mult_shift(0.49, 4, 40, Rounding::HalfEven), (8, 4, false));
    }

    #[test]
    fn pact_code_matches_definition() {
        assert_eq!(pact_code(-1.0, 2.0, 2, Rounding::HalfEven), 0);
        assert_eq!(pact_code(5.0, 2.0, 2, Rounding::HalfEven), 3);
        // 1.0 * 3 / 2 = 1.5: half_even -> 2, half_up -> 2; 0.333.. * 1.5 = 0.5 -> 0 / 1
        assert_eq!(pact_code(1.0, 2.0, 2, Rounding::HalfEven), 2);
        assert_eq!(pact_code(1.0 / 3.0, 2.0, 2, Rounding::HalfEven), 0);
        assert_eq!(pact_code(1.0 / 3.0, 2.0, 2, Rounding::HalfUp), 1);
    }

    fn spec(scheme: &str, bits: u32) -> Spec {
        Spec::from_toml(
            &format!(
                "[weights]\ntensor = \"w\"\nscheme = \"{scheme}\"\nbits = {bits}\ngranularity = \"per_channel\"\nlayout = \"fc\"\n\
                 [input]\nbits = 4\nalpha = 1.5\n[output]\nscheme = \"pact\"\nbits = 4\nalpha = 2.0\n[array]\nrows = 2\ncols = 2\nlanes = 3\n"
            ),
            "t",
        )
        .unwrap()
    }

    fn src() -> Source {
        Source { weights_file: "mem".into(), tensor: "w".into(), bias: None }
    }

    /// The derived parameters follow the documented formulas.
    #[test]
    fn parameters_follow_the_formulas() {
        let s = spec("uniform", 4);
        let w = vec![0.875f32, -0.4375, 0.125, 0.0, 0.2, -0.4, 0.05, 0.3, 0.0, 0.0, 0.0, 0.0];
        let t = LayerTensors::new(&s, w, vec![3, 4], Some(vec![0.1, -0.2, 0.3])).unwrap();
        let q = quantize_layer(&s, &t, src()).unwrap();
        assert_eq!(q.config.max_depth, 6); // K = 4 rounded up to lanes 3
        assert_eq!(q.config.weight_encoding, EncodingName::Int);
        let s_a = 1.5 / 15.0;
        // channel 0: scale 0.875 / 7 = 0.125 exactly
        let c = &q.channels[0];
        assert_eq!(q.weights.scale(0), 0.125);
        assert!((c.acc_scale - 0.125 * s_a).abs() < 1e-15);
        assert_eq!(q.weights.codes[0], vec![7, 0b1100, 1, 0]); // 7, -3.5 -> -4 (half even), 1, 0
        assert_eq!(c.bias, (0.1f32 as f64 / c.acc_scale).round() as i64);
        // alpha = round(2.0 / acc_scale) = 160, above the largest reachable acc + bias
        // (7 + 1) * 15 + 8 = 128, so it is lowered to 128
        assert_eq!((2.0 / c.acc_scale).round(), 160.0);
        assert_eq!(c.bias, 8);
        assert_eq!(c.acc_range, [-4 * 15, 8 * 15]);
        assert_eq!(c.alpha, 128);
        let approx = c.mult as f64 / 2f64.powi(c.shift as i32);
        assert!((approx - c.acc_scale * 15.0 / 2.0).abs() / approx < 1e-4);
        assert!(c.mult < 1 << 16 && c.mult >= 1 << 15, "largest shift keeps mult in the top half: {}", c.mult);
        // channel 2: all-zero weights, uniform scale falls back to 1.0, so the channel is regular and
        // its accumulator is always 0: output = PACT(0.3) = round(0.3 * 15 / 2) = 2
        let p = q.channels[2].params();
        let code = qmac_arith::pipeline::output_code(0, &p, Rounding::HalfEven, 4);
        assert_eq!(code, 2);
    }

    /// An all-zero SAWB channel (scale 0) gets a constant output equal to PACT of its bias.
    #[test]
    fn zero_channel_is_constant() {
        let s = spec("sawb", 2);
        let w = vec![0.5f32, -0.25, 0.1, 0.0, 0.0, 0.0];
        for (b, want) in [(0.9f32, pact_code(0.9, 2.0, 4, Rounding::HalfEven)), (-1.0, 0)] {
            let t = LayerTensors::new(&s, w.clone(), vec![2, 3], Some(vec![0.0, b])).unwrap();
            let q = quantize_layer(&s, &t, src()).unwrap();
            let c = &q.channels[1];
            assert!(!c.notes.is_empty());
            let [lo, hi] = c.acc_range;
            for acc in [lo, hi, (lo + hi) / 2] {
                assert_eq!(qmac_arith::pipeline::output_code(acc, &c.params(), Rounding::HalfEven, 4), want, "acc {acc}");
            }
        }
    }

    fn binary_spec(wscheme: &str, wbits: u32, input: &str, array: &str) -> Spec {
        Spec::from_toml(
            &format!(
                "[weights]\ntensor = \"w\"\nscheme = \"{wscheme}\"\nbits = {wbits}\ngranularity = \"per_channel\"\nlayout = \"fc\"\n\
                 [input]\n{input}\n[output]\nscheme = \"pact\"\nbits = 4\nalpha = 2.0\n[array]\n{array}\n"
            ),
            "t",
        )
        .unwrap()
    }

    /// Pair scales: for factorized float scales u[i] v[j] the integer combination `s_acc * sum_p m[p] D_p`
    /// reproduces `sum_ij u[i] v[j] D_ij` within the stated bound `s_acc / 2 * sum_p |D_p|`, the largest
    /// pair scale uses the full `level_bits`, and every pair scale fits.
    #[test]
    fn pair_scales_reproduce_the_float_combination() {
        let mut rng = crate::rng::Rng::new(31);
        let unit = |rng: &mut crate::rng::Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        for case in 0..2000 {
            let (nw, na) = (1 + rng.below(4) as usize, 1 + rng.below(4) as usize);
            let level_bits = 2 + rng.below(15) as u32;
            let u: Vec<f64> = (0..nw).map(|_| unit(&mut rng) * 3.0).collect();
            let v: Vec<f64> = (0..na).map(|_| unit(&mut rng) * 0.5).collect();
            let rounding = if case % 2 == 0 { Rounding::HalfEven } else { Rounding::HalfUp };
            let (s_acc, m) = pair_scales(&u, &v, level_bits, rounding);
            let lmax = (1i64 << (level_bits - 1)) - 1;
            assert_eq!(m.len(), nw * na);
            assert!(m.iter().all(|&x| (0..=lmax).contains(&x)), "case {case}: {m:?}");
            assert_eq!(*m.iter().max().unwrap(), lmax, "case {case}");
            let n = 1 + rng.below(200) as i64;
            let d: Vec<i64> = (0..nw * na).map(|_| rng.range_i64(-n, n)).collect();
            let float: f64 = (0..nw).flat_map(|i| (0..na).map(move |j| (i, j))).map(|(i, j)| u[i] * v[j] * d[i * na + j] as f64).sum();
            let int: i64 = m.iter().zip(&d).map(|(a, b)| a * b).sum();
            let bound = s_acc / 2.0 * d.iter().map(|x| x.abs() as f64).sum::<f64>();
            assert!((s_acc * int as f64 - float).abs() <= bound * (1.0 + 1e-12) + 1e-12, "case {case}: {} vs {float}, bound {bound}", s_acc * int as f64);
        }
        // by hand: u = [2, 1], v = [0.5, 0.25] at 4 bits: products [1, 0.5, 0.5, 0.25], s_acc = 1/7,
        // m = round([7, 3.5, 3.5, 1.75]) = [7, 4, 4, 2] (half even: 3.5 -> 4)
        let (s_acc, m) = pair_scales(&[2.0, 1.0], &[0.5, 0.25], 4, Rounding::HalfEven);
        assert_eq!((s_acc, m), (1.0 / 7.0, vec![7, 4, 4, 2]));
        assert_eq!(pair_scales(&[0.0], &[1.0, 2.0], 8, Rounding::HalfEven), (0.0, vec![0, 0]));
    }

    /// Fixed-scale encoding: with the scales the scheme's own fit gives, the codes are the quantizer's
    /// signs, bit j the sign of basis j; calibration is that fit.
    #[test]
    fn fixed_scale_codes_match_the_quantizer() {
        let mut rng = crate::rng::Rng::new(32);
        for (scheme, bits) in [("ls1", 1u32), ("ls2", 2), ("lsT", 2), ("gf", 3), ("gf", 4)] {
            let spec = binary_spec("ls1", 1, &format!("scheme = \"{scheme}\"\nbits = {bits}"), "");
            let x: Vec<f32> = (0..300).map(|_| (rng.range_i64(-1000, 1000) as f32) / 400.0).collect();
            let q = lsq::quantize(&x, Granularity::PerTensor, spec.input.scheme.binary(bits).unwrap()).unwrap();
            let v: Vec<f64> = q.bases().iter().map(|b| b.scales()[0]).collect();
            let calibrated = calibrate_input_scales(&spec, &x).unwrap();
            for (a, b) in calibrated.iter().zip(&v) {
                assert!((a - b).abs() <= 5e-9 * b, "{scheme}: {a} vs {b}");
                assert_eq!(serde_json::from_str::<f64>(&serde_json::to_string(a).unwrap()).unwrap(), *a, "exact JSON round trip");
            }
            let codes = encode_bases(&x, &v).unwrap();
            for (e, &c) in codes.iter().enumerate() {
                assert!(c < 1 << bits);
                for (j, b) in q.bases().iter().enumerate() {
                    assert_eq!((c >> j & 1) as u8, b.signs()[e], "{scheme} element {e} basis {j}");
                }
            }
        }
        // 0 encodes as s1 = +1, then the residual signs of -v1: with v = [1, 0.5, 0.25]: -1 -> -, -0.5 -> -
        assert_eq!(encode_bases(&[0.0], &[1.0, 0.5, 0.25]).unwrap(), vec![0b001]);
        // scales of another scheme change the codes: x = 0.6 with v1 = 1 -> s2 = sign(-0.4) = -1
        assert_eq!(encode_bases(&[0.6], &[1.0, 0.5]).unwrap(), vec![0b01]);
        assert_eq!(encode_bases(&[0.6], &[0.5, 0.5]).unwrap(), vec![0b11]);
    }

    /// A binary input scheme without `input.scales` cannot be quantized without inputs: the error names
    /// the field; with the scales the layer quantizes to `bases` codes and pair scales.
    #[test]
    fn binary_inputs_need_scales() {
        let w = vec![0.5f32, -0.25, 0.1, 0.3, -0.4, 0.2];
        let s = binary_spec("ls2", 2, "scheme = \"ls2\"\nbits = 2", "cols = 2\nlanes = 4");
        let t = LayerTensors::new(&s, w.clone(), vec![2, 3], None).unwrap();
        let e = quantize_layer(&s, &t, src()).unwrap_err().to_string();
        assert!(e.starts_with("spec field `input.scales` = (not given) is invalid: the 2 basis scales [v1, v2] of the \"ls2\" input activations") && e.contains("--inputs"), "{e}");
        let s = binary_spec("ls2", 2, "scheme = \"ls2\"\nbits = 2\nscales = [0.6, 0.2]", "cols = 2\nlanes = 4");
        let q = quantize_layer(&s, &t, src()).unwrap();
        let cfg = q.config().unwrap();
        assert_eq!((cfg.weight_encoding, cfg.act_encoding, cfg.bases()), (EncodingName::Bases, EncodingName::Bases, Some((2, 2))));
        assert_eq!(q.input.basis_scales, vec![0.6, 0.2]);
        assert_eq!(q.table(0).len(), 2 * 4);
        // K = 3 padded to 4: one padded element per tile adds sum_p m[p], taken off the bias
        for c in &q.channels {
            assert_eq!(c.acc_offset, c.pair_scales.iter().sum::<i64>());
            assert_eq!(*c.pair_scales.iter().max().unwrap(), 127);
        }
        // ls1 weights with PACT inputs stay 1-bit odd codes; with binary inputs they are one basis
        let s = binary_spec("ls1", 1, "bits = 4\nalpha = 1.0", "");
        let q = quantize_layer(&s, &LayerTensors::new(&s, w.clone(), vec![2, 3], None).unwrap(), src()).unwrap();
        assert_eq!((q.config.weight_encoding, q.config.act_encoding), (EncodingName::Odd, EncodingName::Unsigned));
        let s = binary_spec("ls1", 1, "scheme = \"gf\"\nbits = 3\nscales = [0.6, 0.2, 0.1]", "");
        let q = quantize_layer(&s, &LayerTensors::new(&s, w, vec![2, 3], None).unwrap(), src()).unwrap();
        assert_eq!((q.config.weight_encoding, q.config.act_encoding, q.config().unwrap().bases()), (EncodingName::Bases, EncodingName::Bases, Some((1, 3))));
    }

    /// Codebook weights: codes are the nearest trained levels, integer levels `round(level * 2^e)` with
    /// the largest `e` that fits `level_bits`, one weight step `2^-e`.
    #[test]
    fn codebook_levels_follow_the_formulas() {
        let text = |levels: &str, lb: u32| {
            Spec::from_toml(
                &format!("[weights]\ntensor = \"w\"\nscheme = \"levels\"\nbits = 2\ngranularity = \"per_tensor\"\nlayout = \"fc\"\n{levels}\n[input]\nbits = 4\nalpha = 1.0\n[output]\nscheme = \"pact\"\nbits = 4\nalpha = 2.0\n[array]\nlevel_bits = {lb}\ncols = 2\nlanes = 2\n"),
                "t",
            )
            .unwrap()
        };
        let w = vec![0.9f32, -0.3, 0.05, -1.0, 0.31, 0.6];
        let s = text("levels = [-0.8, -0.2, 0.2, 0.7]", 6);
        let q = quantize_layer(&s, &LayerTensors::new(&s, w.clone(), vec![2, 3], None).unwrap(), src()).unwrap();
        let l = q.weights.levels.as_ref().unwrap();
        // 6 bits: -32..=31; 0.8 * 2^5 = 25.6 fits, 0.8 * 2^6 = 51.2 does not -> e = 5
        assert_eq!((l.exponent, l.ints.clone(), l.fitted), (5, vec![-26, -6, 6, 22], false));
        assert_eq!(q.weights.codes, vec![vec![3, 1, 2], vec![0, 2, 3]]); // nearest levels
        assert_eq!(q.weights.scales, vec![1.0 / 32.0]);
        assert_eq!(q.table(0), vec![-26, -6, 6, 22]);
        assert_eq!(q.table(0), q.table(1));
        assert_eq!((q.config.weight_encoding, q.config.level_bits), (EncodingName::Codebook, 6));
        assert_eq!(q.weights.value(1, 0), -26);
        assert!((q.channels[0].acc_scale - 1.0 / 32.0 / 15.0).abs() < 1e-15);
        // large levels get a negative exponent: 100 * 2^-2 = 25 fits 6 bits, 100 * 2^-1 = 50 does not
        let (ints, e) = fixed_levels(&LevelTable::new(1, vec![-100.0, 3.0]).unwrap(), 6, Rounding::HalfEven).unwrap();
        assert_eq!((ints, e), (vec![-25, 1], -2));
        // fitted levels when the spec has none
        let s = text("", 8);
        let q = quantize_layer(&s, &LayerTensors::new(&s, w.clone(), vec![2, 3], None).unwrap(), src()).unwrap();
        let l = q.weights.levels.as_ref().unwrap();
        assert!(l.fitted);
        assert_eq!(l.levels, LevelTable::fit(2, &w).unwrap().levels());
    }

    /// Reducing bias and clip to the reachable range changes no output.
    #[test]
    fn reductions_change_no_output() {
        let s = spec("sawb", 2);
        // tiny weights and a large bias: the output is pinned at the top; a large negative bias pins it at 0
        let w = vec![1e-4f32, -2e-4, 1e-4, 3e-4, 1e-4, -1e-4];
        let t = LayerTensors::new(&s, w, vec![2, 3], Some(vec![50.0, -50.0])).unwrap();
        let q = quantize_layer(&s, &t, src()).unwrap();
        assert!(q.config().unwrap().acc_bits() <= 16, "no widening needed: {:?}", q.config.acc_bits);
        for (o, want) in [(0usize, 15u64), (1, 0)] {
            let c = &q.channels[o];
            assert!(!c.notes.is_empty(), "{o}: {c:?}");
            for acc in c.acc_range[0]..=c.acc_range[1] {
                assert_eq!(qmac_arith::pipeline::output_code(acc, &c.params(), Rounding::HalfEven, 4), want);
            }
        }
    }
}
