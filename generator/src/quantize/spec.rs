//! The layer spec of `qmac quantize`: a TOML file that names the float tensors of one trained layer and
//! says how to quantize them for the array (docs/quantize.md has the full reference).
//!
//! ```toml
//! rounding = "half_even"          # optional; the tie rule everywhere (quantizers and requantization)
//!
//! [weights]
//! tensor = "conv1.weight"         # name inside the weights file
//! bias = "conv1.bias"             # optional float bias, one value per output channel
//! scheme = "sawb"                 # sawb | uniform | ls1 | ls2 | lsT | gf | levels
//! bits = 2                        # code bits; binary schemes: number of bases; levels: 2^bits levels
//! granularity = "per_channel"     # per_tensor | per_channel (per output channel); levels: per_tensor
//! layout = "conv"                 # fc: [out][in]; conv: [out][in][kh][kw], lowered with im2col
//! # levels = [-0.3, -0.1, 0.1, 0.3]  # scheme "levels" only: the trained table (else fitted)
//!
//! [conv]                          # only with layout = "conv"; every field optional
//! stride = [1, 1]
//! padding = [1, 1]
//! dilation = [1, 1]
//!
//! [input]                         # the layer's input activations
//! scheme = "pact"                 # pact (default) | ls1 | ls2 | lsT | gf (binary bases)
//! bits = 4                        # PACT code bits; binary schemes: number of bases
//! alpha = 4.0                     # PACT clip; or scale = 0.2667 (alpha = scale * (2^bits - 1))
//! # scales = [0.8, 0.3]           # binary schemes: fixed basis scales (else calibrated on --inputs)
//!
//! [output]                        # the layer's activation: PACT, the next layer's input codes
//! scheme = "pact"
//! bits = 4
//! alpha = 6.0                     # per tensor; [a0, a1, ...] per output channel; or "tensor name"
//!
//! [array]                         # the hardware to target; every field optional
//! rows = 8
//! cols = 8                        # default: min(output channels, 8)
//! lanes = 4
//! mult_bits = 16
//! level_bits = 8                  # codebook levels and basis-pair scales (levels, binary inputs)
//! module_prefix = "qmac"
//! # output_units = "per_column"  # default "shared": one output stage for all columns
//! ```
//!
//! Parsing rejects unknown fields (serde `deny_unknown_fields`); [`Spec::validate`] rejects values out
//! of range with one message naming the field, the value and what is allowed.

use super::QuantizeError;
use crate::config::{RoundingName, MAX_BASES};
use qmac_arith::quant::lsq;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Weight quantization scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightScheme {
    /// SAWB: symmetric odd levels without zero, clip from weight statistics (1..=8 bits); `odd` codes.
    Sawb,
    /// Uniform symmetric signed integers, scale `max|w| / (2^(bits-1) - 1)` (2..=8 bits); `int` codes.
    Uniform,
    /// Least-squares binary (ls-1): `mean|w| * sign(w)` (1 bit); `odd` 1-bit codes with PACT
    /// activations, one basis of `bases` with binary activations.
    Ls1,
    /// ls-2: two binary bases, exact optimal `v1` (bits = 2); `bases`, needs binary activations.
    Ls2,
    /// ls-T: ternary, two bases with `v2 = v1` (bits = 2); `bases`, needs binary activations.
    #[serde(rename = "lsT")]
    LsT,
    /// gf-k: `bits` greedy binary bases (1..=4); `bases` (gf-1 is ls-1, `odd` with PACT activations).
    Gf,
    /// Learnable levels: a per-layer table of `2^bits` levels (1..=8), `bits`-bit indices; `codebook`.
    Levels,
}

/// The least-squares binary scheme of a name and a number of bases.
fn binary_scheme(name: &str, bits: u32) -> Option<lsq::BinaryScheme> {
    match name {
        "ls1" => Some(lsq::BinaryScheme::Ls1),
        "ls2" => Some(lsq::BinaryScheme::Ls2),
        "lsT" => Some(lsq::BinaryScheme::LsTernary),
        "gf" => Some(lsq::BinaryScheme::Greedy { bases: bits }),
        _ => None,
    }
}

impl WeightScheme {
    /// The name used in the spec.
    pub fn name(self) -> &'static str {
        match self {
            WeightScheme::Sawb => "sawb",
            WeightScheme::Uniform => "uniform",
            WeightScheme::Ls1 => "ls1",
            WeightScheme::Ls2 => "ls2",
            WeightScheme::LsT => "lsT",
            WeightScheme::Gf => "gf",
            WeightScheme::Levels => "levels",
        }
    }

    /// The bit-widths the scheme supports on the array (for binary schemes: numbers of bases).
    pub fn bits_range(self) -> (u32, u32) {
        match self {
            WeightScheme::Sawb => (1, 8),
            WeightScheme::Uniform => (2, 8),
            WeightScheme::Ls1 => (1, 1),
            WeightScheme::Ls2 | WeightScheme::LsT => (2, 2),
            WeightScheme::Gf => (1, MAX_BASES),
            WeightScheme::Levels => (1, 8),
        }
    }

    /// The least-squares binary quantizer of a binary scheme (`ls1`, `ls2`, `lsT`, `gf` with `bits`
    /// bases), `None` for the others.
    pub fn binary(self, bits: u32) -> Option<lsq::BinaryScheme> {
        binary_scheme(self.name(), bits)
    }
}

/// Input activation scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputScheme {
    /// PACT codes (unsigned), one clip for the tensor: `input.alpha` or `input.scale`.
    #[default]
    Pact,
    /// ls-1: one binary basis, `x ~ v1 * sign(x)`.
    Ls1,
    /// ls-2: two binary bases (the exact optimal `v1` when calibrated).
    Ls2,
    /// ls-T: ternary, two bases with `v2 = v1`.
    #[serde(rename = "lsT")]
    LsT,
    /// gf-k: `bits` greedy binary bases (1..=4).
    Gf,
}

impl InputScheme {
    /// The name used in the spec.
    pub fn name(self) -> &'static str {
        match self {
            InputScheme::Pact => "pact",
            InputScheme::Ls1 => "ls1",
            InputScheme::Ls2 => "ls2",
            InputScheme::LsT => "lsT",
            InputScheme::Gf => "gf",
        }
    }

    /// The bit-widths the scheme supports (for binary schemes: numbers of bases).
    pub fn bits_range(self) -> (u32, u32) {
        match self {
            InputScheme::Pact => (1, 8),
            InputScheme::Ls1 => (1, 1),
            InputScheme::Ls2 | InputScheme::LsT => (2, 2),
            InputScheme::Gf => (1, MAX_BASES),
        }
    }

    /// True for the binary-basis schemes.
    pub fn is_binary(self) -> bool {
        self != InputScheme::Pact
    }

    /// The least-squares binary quantizer (its fit calibrates the basis scales), `None` for PACT.
    pub fn binary(self, bits: u32) -> Option<lsq::BinaryScheme> {
        binary_scheme(self.name(), bits)
    }
}

/// One scale per tensor or one per output channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GranularityName {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per output channel (row of the `[out][K]` matrix).
    PerChannel,
}

impl GranularityName {
    /// The name used in the spec.
    pub fn name(self) -> &'static str {
        match self {
            GranularityName::PerTensor => "per_tensor",
            GranularityName::PerChannel => "per_channel",
        }
    }
}

/// Layout of the weight tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutName {
    /// Fully connected: `[out][in]`, K = in.
    Fc,
    /// 2-D convolution: `[out][in][kh][kw]`, lowered to a GEMM with im2col, K = in * kh * kw.
    Conv,
}

/// Activation scheme of the layer output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActScheme {
    /// PACT: `clamp(round(clip(y, 0, alpha) * (2^bits - 1) / alpha), 0, 2^bits - 1)`, unsigned codes.
    Pact,
}

/// A clip level: a number, one number per output channel, or the name of a tensor in the weights file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a number, a list of numbers (one per output channel) or a tensor name (string)")]
pub enum AlphaSpec {
    /// One value for the whole tensor.
    Value(f64),
    /// One value per output channel.
    PerChannel(Vec<f64>),
    /// A tensor of the weights file: 1 element (per tensor) or one per output channel.
    Tensor(String),
}

impl fmt::Display for AlphaSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlphaSpec::Value(v) => write!(f, "{v}"),
            AlphaSpec::PerChannel(v) => write!(f, "{v:?}"),
            AlphaSpec::Tensor(t) => write!(f, "{t:?}"),
        }
    }
}

/// `[weights]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightSpec {
    /// Name of the weight tensor inside the file.
    pub tensor: String,
    /// Name of the float bias tensor (one value per output channel), if the layer has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<String>,
    /// Quantization scheme.
    pub scheme: WeightScheme,
    /// Code width (binary schemes: number of bases; `levels`: `2^bits` levels).
    pub bits: u32,
    /// One scale per tensor or per output channel (`levels`: `per_tensor`, one table per layer).
    pub granularity: GranularityName,
    /// `fc` or `conv`.
    pub layout: LayoutName,
    /// Scheme `levels` only: the trained level table, `2^bits` finite values in code order. Without
    /// it the levels are fitted to the weight tensor (`LevelTable::fit`: quantile start, 1-D k-means).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<f64>>,
}

fn one_one() -> [u32; 2] {
    [1, 1]
}

/// `[conv]`: geometry of a convolution (`layout = "conv"`), as `[y, x]` pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    /// Stride, `[sy, sx]`, each >= 1.
    #[serde(default = "one_one")]
    pub stride: [u32; 2],
    /// Zero padding on each side, `[py, px]`.
    #[serde(default)]
    pub padding: [u32; 2],
    /// Dilation, `[dy, dx]`, each >= 1.
    #[serde(default = "one_one")]
    pub dilation: [u32; 2],
}

impl Default for ConvSpec {
    fn default() -> Self {
        ConvSpec { stride: [1, 1], padding: [0, 0], dilation: [1, 1] }
    }
}

/// `[input]`: the layer's input activations: PACT codes with one clip for the whole tensor, or binary
/// bases with one set of basis scales for the whole tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// `pact` (default) or a binary-basis scheme (`ls1`, `ls2`, `lsT`, `gf`).
    #[serde(default)]
    pub scheme: InputScheme,
    /// Activation code width (the array's `act_bits`); for binary schemes the number of bases.
    pub bits: u32,
    /// PACT clip level: a number or the name of a 1-element tensor. Give this or `scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<AlphaSpec>,
    /// Real value of one code step (`alpha / (2^bits - 1)`). Give this or `alpha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// Binary schemes: the fixed basis scales `[v1, v2, ...]` (one per basis, finite, `>= 0`; ls-T:
    /// equal). Left out, `qmac quantize --inputs` calibrates them on the inputs with the scheme's own
    /// fit and writes them into `spec.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scales: Option<Vec<f64>>,
}

/// `[output]`: the layer's activation function, which produces the next layer's input codes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Only `pact`.
    pub scheme: ActScheme,
    /// Output code width (the array's `out_bits`).
    pub bits: u32,
    /// PACT clip level(s).
    pub alpha: AlphaSpec,
}

/// `[array]`: the array to target. The rest of the configuration is derived from the spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySpec {
    /// PE rows: GEMM rows (input vectors, output pixels) per tile (1..=64).
    #[serde(default = "default_rows")]
    pub rows: u32,
    /// PE columns: output channels per pass (1..=64); default `min(output channels, 8)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u32>,
    /// Products per PE per cycle (1..=64).
    #[serde(default = "default_lanes")]
    pub lanes: u32,
    /// Requantization multiplier width (1..=32).
    #[serde(default = "default_mult_bits")]
    pub mult_bits: u32,
    /// Width of a codebook level (`levels` weights) or of a basis-pair scale (binary activations),
    /// signed (2..=16); unused otherwise.
    #[serde(default = "default_level_bits")]
    pub level_bits: u32,
    /// Module name prefix of the generated design.
    #[serde(default = "default_prefix")]
    pub module_prefix: String,
    /// Fractional bits of the loaded bias (the array's `bias_frac_bits`, 0..=16); default: the fewest
    /// that keep every channel's bias rounding error (at most `2^-(F+1)` accumulator units) under
    /// 1/8 of its output step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_frac_bits: Option<u32>,
    /// The array's `output_units` (`per_column` or `shared`, the default): one output stage per column
    /// (a tile drains in `rows` cycles) or one for all columns (`rows * cols` cycles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_units: Option<crate::config::OutputUnitsName>,
}

fn default_rows() -> u32 {
    8
}
fn default_lanes() -> u32 {
    4
}
fn default_mult_bits() -> u32 {
    16
}
fn default_level_bits() -> u32 {
    8
}
fn default_prefix() -> String {
    "qmac".into()
}
fn default_rounding() -> RoundingName {
    RoundingName::HalfEven
}

impl ArraySpec {
    /// Check every field's range (the array configuration's ranges, docs/configuration.md): the first
    /// bad field is reported as `array.<field>` with its value and what is allowed.
    pub fn validate(&self) -> Result<(), QuantizeError> {
        let a = self;
        in_range("array.rows", a.rows, 1, 64)?;
        if let Some(c) = a.cols {
            in_range("array.cols", c, 1, 64)?;
        }
        in_range("array.lanes", a.lanes, 1, 64)?;
        in_range("array.mult_bits", a.mult_bits, 1, 32)?;
        if let Some(f) = a.bias_frac_bits {
            in_range("array.bias_frac_bits", f, 0, crate::config::MAX_BIAS_FRAC_BITS)?;
        }
        in_range("array.level_bits", a.level_bits, 2, 16)?;
        let p = &a.module_prefix;
        let ok_prefix = !p.is_empty() && p.len() <= 32 && p.starts_with(|c: char| c.is_ascii_lowercase()) && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_prefix {
            return Err(invalid("array.module_prefix", format!("{p:?}"), "allowed: 1 to 32 characters of a-z, 0-9 and _, starting with a letter"));
        }
        Ok(())
    }
}

impl Default for ArraySpec {
    fn default() -> Self {
        ArraySpec { rows: 8, cols: None, lanes: 4, mult_bits: 16, level_bits: 8, module_prefix: default_prefix(), bias_frac_bits: None, output_units: None }
    }
}

/// A layer spec (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Tie rule of every rounding: the weight and activation quantizers, the integer bias and clip,
    /// and the hardware's requantization shift.
    #[serde(default = "default_rounding")]
    pub rounding: RoundingName,
    /// The weight tensor and its quantizer.
    pub weights: WeightSpec,
    /// Convolution geometry (`weights.layout = "conv"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv: Option<ConvSpec>,
    /// Input activations.
    pub input: InputSpec,
    /// Output activation.
    pub output: OutputSpec,
    /// Target array.
    #[serde(default)]
    pub array: ArraySpec,
}

fn invalid(field: &str, value: impl fmt::Display, allowed: impl Into<String>) -> QuantizeError {
    QuantizeError::Spec { field: field.to_string(), value: value.to_string(), allowed: allowed.into() }
}

fn in_range(field: &str, v: u32, lo: u32, hi: u32) -> Result<(), QuantizeError> {
    if v < lo || v > hi {
        return Err(invalid(field, v, format!("allowed {lo}..={hi}")));
    }
    Ok(())
}

fn positive(field: &str, v: f64) -> Result<(), QuantizeError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(invalid(field, v, "allowed: a finite number > 0"));
    }
    Ok(())
}

fn scheme_bits(field: &str, bits: u32, (lo, hi): (u32, u32), scheme: &str) -> Result<(), QuantizeError> {
    if bits < lo || bits > hi {
        let allowed = if lo == hi { format!("allowed {lo} for scheme \"{scheme}\"") } else { format!("allowed {lo}..={hi} for scheme \"{scheme}\"") };
        return Err(invalid(field, bits, allowed));
    }
    Ok(())
}

/// Basis scales of a binary input scheme: one per basis, finite and `>= 0`; ls-T's two are equal.
fn check_basis_scales(scheme: InputScheme, bases: u32, v: &[f64]) -> Result<(), QuantizeError> {
    if v.len() != bases as usize {
        return Err(invalid("input.scales", format!("{v:?}"), format!("allowed: {bases} values (one per basis of input.scheme = \"{}\" with bits = {bases})", scheme.name())));
    }
    if let Some(i) = v.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
        return Err(invalid(&format!("input.scales[{i}]"), v[i], "allowed: a finite number >= 0"));
    }
    if scheme == InputScheme::LsT && v[0] != v[1] {
        return Err(invalid("input.scales", format!("{v:?}"), "allowed: two equal values for scheme \"lsT\" (ternary: v2 = v1)"));
    }
    Ok(())
}

fn check_alpha(field: &str, a: &AlphaSpec, per_channel_ok: bool) -> Result<(), QuantizeError> {
    match a {
        AlphaSpec::Value(v) => positive(field, *v),
        AlphaSpec::PerChannel(vs) => {
            if !per_channel_ok {
                return Err(invalid(field, a, "allowed: one number (the input activations have one clip for the whole tensor) or a tensor name"));
            }
            if vs.is_empty() {
                return Err(invalid(field, a, "allowed: a nonempty list, one value per output channel"));
            }
            for (i, &v) in vs.iter().enumerate() {
                positive(&format!("{field}[{i}]"), v)?;
            }
            Ok(())
        }
        AlphaSpec::Tensor(t) => {
            if t.is_empty() {
                return Err(invalid(field, "\"\"", "allowed: a number or a nonempty tensor name"));
            }
            Ok(())
        }
    }
}

impl Spec {
    /// Parse TOML text (`origin` names it in errors) and validate it.
    pub fn from_toml(text: &str, origin: &str) -> Result<Spec, QuantizeError> {
        let spec: Spec = toml::from_str(text).map_err(|e| QuantizeError::SpecParse { path: origin.to_string(), message: crate::limits::capped_lines(e.to_string().trim()) })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Read, parse and validate a spec file.
    pub fn from_file(path: &Path) -> Result<Spec, QuantizeError> {
        let text = crate::limits::read_text(path, crate::limits::MAX_TOML_BYTES).map_err(|source| QuantizeError::Io { path: path.to_path_buf(), source })?;
        Spec::from_toml(&text, &path.display().to_string())
    }

    /// The spec as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("spec serialises")
    }

    /// Check every value that does not depend on the tensors (those are checked by
    /// [`super::quantize_layer`]): the first bad field is reported with its value and what is allowed.
    pub fn validate(&self) -> Result<(), QuantizeError> {
        let w = &self.weights;
        if w.tensor.is_empty() {
            return Err(invalid("weights.tensor", "\"\"", "allowed: the name of a tensor in the weights file"));
        }
        if w.bias.as_deref() == Some("") {
            return Err(invalid("weights.bias", "\"\"", "allowed: the name of a tensor in the weights file, or leave the field out"));
        }
        scheme_bits("weights.bits", w.bits, w.scheme.bits_range(), w.scheme.name())?;
        match (&w.levels, w.scheme) {
            (Some(_), s) if s != WeightScheme::Levels => return Err(invalid("weights.levels", "a level table", format!("allowed only with weights.scheme = \"levels\" (the scheme is \"{}\")", s.name()))),
            (Some(l), _) => {
                if l.len() != 1 << w.bits {
                    return Err(invalid("weights.levels", format!("{} values", l.len()), format!("allowed: exactly 2^bits = {} levels (weights.bits = {})", 1 << w.bits, w.bits)));
                }
                if let Some(i) = l.iter().position(|v| !v.is_finite()) {
                    return Err(invalid(&format!("weights.levels[{i}]"), l[i], "allowed: a finite number"));
                }
            }
            _ => {}
        }
        if w.scheme == WeightScheme::Levels && w.granularity != GranularityName::PerTensor {
            return Err(invalid("weights.granularity", format!("\"{}\"", w.granularity.name()), "allowed \"per_tensor\" for scheme \"levels\" (one level table per layer)"));
        }
        match (w.layout, &self.conv) {
            (LayoutName::Fc, Some(_)) => return Err(invalid("conv", "a [conv] section", "allowed only with weights.layout = \"conv\"")),
            (LayoutName::Conv, Some(c)) => {
                for (i, axis) in ["y", "x"].iter().enumerate() {
                    if c.stride[i] < 1 || c.stride[i] > 64 {
                        return Err(invalid(&format!("conv.stride ({axis})"), c.stride[i], "allowed 1..=64"));
                    }
                    if c.dilation[i] < 1 || c.dilation[i] > 64 {
                        return Err(invalid(&format!("conv.dilation ({axis})"), c.dilation[i], "allowed 1..=64"));
                    }
                    if c.padding[i] > 1024 {
                        return Err(invalid(&format!("conv.padding ({axis})"), c.padding[i], "allowed 0..=1024"));
                    }
                }
            }
            _ => {}
        }
        let inp = &self.input;
        if inp.scheme.is_binary() {
            scheme_bits("input.bits", inp.bits, inp.scheme.bits_range(), inp.scheme.name())?;
            let not_pact = |field: &str, value: String| invalid(field, value, format!("allowed only with input.scheme = \"pact\"; binary input schemes (here \"{}\") take input.scales", inp.scheme.name()));
            if let Some(a) = &inp.alpha {
                return Err(not_pact("input.alpha", a.to_string()));
            }
            if let Some(sc) = inp.scale {
                return Err(not_pact("input.scale", sc.to_string()));
            }
            if let Some(v) = &inp.scales {
                check_basis_scales(inp.scheme, inp.bits, v)?;
            }
        } else {
            in_range("input.bits", inp.bits, 1, 8)?;
            match (&inp.alpha, inp.scale) {
                (Some(_), Some(s)) => return Err(invalid("input.scale", s, "allowed: give either input.alpha or input.scale, not both")),
                (None, None) => return Err(invalid("input", "no alpha and no scale", "allowed: input.alpha (PACT clip level) or input.scale (alpha / (2^bits - 1))")),
                (Some(a), None) => check_alpha("input.alpha", a, false)?,
                (None, Some(s)) => positive("input.scale", s)?,
            }
            if let Some(v) = &inp.scales {
                return Err(invalid("input.scales", format!("{v:?}"), "allowed only with a binary input scheme (input.scheme = \"ls1\", \"ls2\", \"lsT\" or \"gf\"); PACT inputs take input.alpha or input.scale"));
            }
        }
        // what the array can compute
        let binary_w = w.scheme.binary(w.bits).is_some();
        let multi_w = binary_w && w.bits > 1;
        if inp.scheme.is_binary() && !binary_w {
            return Err(invalid(
                "input.scheme",
                format!("\"{}\"", inp.scheme.name()),
                format!("binary activations (ls1, ls2, lsT, gf) need binary weights (weights.scheme = \"ls1\", \"ls2\", \"lsT\" or \"gf\"); weights.scheme is \"{}\": use input.scheme = \"pact\"", w.scheme.name()),
            ));
        }
        if multi_w && !inp.scheme.is_binary() {
            return Err(invalid(
                "weights.scheme",
                format!("\"{}\" with bits = {}", w.scheme.name(), w.bits),
                "multi-basis weights need binary activations (input.scheme = \"ls1\", \"ls2\", \"lsT\" or \"gf\"): the array has no multi-basis x PACT mode; with PACT inputs use sawb, uniform, ls1, gf with bits = 1, or levels",
            ));
        }
        in_range("output.bits", self.output.bits, 1, 8)?;
        check_alpha("output.alpha", &self.output.alpha, true)?;
        self.array.validate()
    }

    /// The convolution geometry (defaults when the section is left out).
    pub fn conv_geometry(&self) -> ConvSpec {
        self.conv.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[weights]
tensor = "fc.weight"
scheme = "sawb"
bits = 2
granularity = "per_channel"
layout = "fc"

[input]
bits = 4
alpha = 2.0

[output]
scheme = "pact"
bits = 4
alpha = [1.0, 2.0]
"#;

    #[test]
    fn good_spec_parses_with_defaults() {
        let s = Spec::from_toml(GOOD, "t.toml").unwrap();
        assert_eq!(s.rounding, RoundingName::HalfEven);
        assert_eq!(s.array, ArraySpec::default());
        assert_eq!(s.output.alpha, AlphaSpec::PerChannel(vec![1.0, 2.0]));
        assert_eq!(s.input.alpha, Some(AlphaSpec::Value(2.0)));
        // round trip through TOML
        let back = Spec::from_toml(&s.to_toml(), "back").unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_values_name_field_value_and_allowed() {
        let e = Spec::from_toml(&GOOD.replace("bits = 2", "bits = 9"), "t").unwrap_err().to_string();
        assert_eq!(e, "spec field `weights.bits` = 9 is invalid: allowed 1..=8 for scheme \"sawb\"");
        let e = Spec::from_toml(&GOOD.replace("bits = 2\n", "bits = 1\n").replace("\"sawb\"", "\"uniform\""), "t").unwrap_err().to_string();
        assert_eq!(e, "spec field `weights.bits` = 1 is invalid: allowed 2..=8 for scheme \"uniform\"");
        let e = Spec::from_toml(&GOOD.replace("\"sawb\"", "\"ls1\""), "t").unwrap_err().to_string();
        assert_eq!(e, "spec field `weights.bits` = 2 is invalid: allowed 1 for scheme \"ls1\"");
        let e = Spec::from_toml(&GOOD.replace("alpha = 2.0", "alpha = -1.0"), "t").unwrap_err().to_string();
        assert!(e.contains("`input.alpha` = -1") && e.contains("> 0"), "{e}");
        let e = Spec::from_toml(&GOOD.replace("alpha = [1.0, 2.0]", "alpha = [1.0, 0.0]"), "t").unwrap_err().to_string();
        assert!(e.contains("`output.alpha[1]` = 0"), "{e}");
        let e = Spec::from_toml(&GOOD.replace("alpha = 2.0", "alpha = [2.0]"), "t").unwrap_err().to_string();
        assert!(e.contains("`input.alpha`") && e.contains("one number"), "{e}");
        let e = Spec::from_toml(&GOOD.replace("alpha = 2.0", "scale = 0.1"), "t").unwrap();
        assert_eq!(e.input.scale, Some(0.1));
        let e = Spec::from_toml(&GOOD.replace("alpha = 2.0", "alpha = 2.0\nscale = 0.1"), "t").unwrap_err().to_string();
        assert!(e.contains("`input.scale`") && e.contains("not both"), "{e}");
        let e = Spec::from_toml(&format!("{GOOD}\n[array]\nlanes = 0\n"), "t").unwrap_err().to_string();
        assert_eq!(e, "spec field `array.lanes` = 0 is invalid: allowed 1..=64");
        let e = Spec::from_toml(&format!("{GOOD}\n[conv]\nstride = [2, 2]\n"), "t").unwrap_err().to_string();
        assert!(e.contains("`conv`") && e.contains("layout = \"conv\""), "{e}");
        let conv = GOOD.replace("\"fc\"", "\"conv\"");
        let e = Spec::from_toml(&format!("{conv}\n[conv]\nstride = [0, 1]\n"), "t").unwrap_err().to_string();
        assert!(e.contains("`conv.stride (y)` = 0"), "{e}");
    }

    /// The binary-basis and learnable-level schemes: bits per scheme, the input fields each input
    /// scheme takes, and the combinations the array can compute.
    #[test]
    fn binary_and_level_schemes_and_their_combinations() {
        let binary_in = |wscheme: &str, wbits: u32, input: &str| GOOD.replace("scheme = \"sawb\"\nbits = 2", &format!("scheme = \"{wscheme}\"\nbits = {wbits}")).replace("[input]\nbits = 4\nalpha = 2.0", input);
        // good: ls1 weights x ls2 inputs (scales optional), gf-3 x lsT with scales, levels x PACT
        let s = Spec::from_toml(&binary_in("ls1", 1, "[input]\nscheme = \"ls2\"\nbits = 2"), "t").unwrap();
        assert_eq!((s.input.scheme, s.input.scales.clone()), (InputScheme::Ls2, None));
        let s = Spec::from_toml(&binary_in("gf", 3, "[input]\nscheme = \"lsT\"\nbits = 2\nscales = [0.5, 0.5]"), "t").unwrap();
        assert_eq!(s.weights.scheme.binary(3), Some(lsq::BinaryScheme::Greedy { bases: 3 }));
        assert_eq!(Spec::from_toml(&s.to_toml(), "back").unwrap(), s);
        let lv = GOOD.replace("scheme = \"sawb\"\nbits = 2\ngranularity = \"per_channel\"", "scheme = \"levels\"\nbits = 2\ngranularity = \"per_tensor\"\nlevels = [-1.0, -0.25, 0.25, 1.0]");
        let s = Spec::from_toml(&lv, "t").unwrap();
        assert_eq!(s.weights.levels.as_deref(), Some(&[-1.0, -0.25, 0.25, 1.0][..]));
        assert_eq!(Spec::from_toml(&s.to_toml(), "back").unwrap(), s);
        // pact is the default input scheme; gf-1 weights with PACT inputs are one basis (odd)
        assert_eq!(Spec::from_toml(GOOD, "t").unwrap().input.scheme, InputScheme::Pact);
        Spec::from_toml(&GOOD.replace("scheme = \"sawb\"\nbits = 2", "scheme = \"gf\"\nbits = 1"), "t").unwrap();

        let err = |text: String| Spec::from_toml(&text, "t").unwrap_err().to_string();
        // bits per scheme
        assert_eq!(err(GOOD.replace("scheme = \"sawb\"\nbits = 2", "scheme = \"gf\"\nbits = 5")), "spec field `weights.bits` = 5 is invalid: allowed 1..=4 for scheme \"gf\"");
        assert_eq!(err(binary_in("ls2", 3, "[input]\nscheme = \"ls2\"\nbits = 2")), "spec field `weights.bits` = 3 is invalid: allowed 2 for scheme \"ls2\"");
        assert_eq!(err(binary_in("ls1", 1, "[input]\nscheme = \"lsT\"\nbits = 3")), "spec field `input.bits` = 3 is invalid: allowed 2 for scheme \"lsT\"");
        // binary activations need binary weights
        let e = err(GOOD.replace("[input]\nbits = 4\nalpha = 2.0", "[input]\nscheme = \"ls2\"\nbits = 2"));
        assert!(e.starts_with("spec field `input.scheme` = \"ls2\" is invalid: binary activations (ls1, ls2, lsT, gf) need binary weights") && e.contains("weights.scheme is \"sawb\""), "{e}");
        let e = err(lv.replace("[input]\nbits = 4\nalpha = 2.0", "[input]\nscheme = \"gf\"\nbits = 2"));
        assert!(e.contains("`input.scheme` = \"gf\"") && e.contains("weights.scheme is \"levels\""), "{e}");
        // multi-basis weights need binary activations
        for (scheme, bits) in [("ls2", 2), ("lsT", 2), ("gf", 2), ("gf", 4)] {
            let e = err(GOOD.replace("scheme = \"sawb\"\nbits = 2", &format!("scheme = \"{scheme}\"\nbits = {bits}")));
            assert!(e.starts_with(&format!("spec field `weights.scheme` = \"{scheme}\" with bits = {bits} is invalid: multi-basis weights need binary activations")) && e.contains("no multi-basis x PACT mode"), "{e}");
        }
        // input fields of the other scheme
        let e = err(binary_in("ls1", 1, "[input]\nscheme = \"ls2\"\nbits = 2\nalpha = 2.0"));
        assert!(e.starts_with("spec field `input.alpha` = 2 is invalid: allowed only with input.scheme = \"pact\""), "{e}");
        let e = err(GOOD.replace("alpha = 2.0", "alpha = 2.0\nscales = [1.0]"));
        assert!(e.starts_with("spec field `input.scales` = [1.0] is invalid: allowed only with a binary input scheme"), "{e}");
        let e = err(binary_in("ls1", 1, "[input]\nscheme = \"ls2\"\nbits = 2\nscales = [1.0]"));
        assert!(e.starts_with("spec field `input.scales` = [1.0] is invalid: allowed: 2 values"), "{e}");
        let e = err(binary_in("ls1", 1, "[input]\nscheme = \"gf\"\nbits = 2\nscales = [1.0, -0.5]"));
        assert_eq!(e, "spec field `input.scales[1]` = -0.5 is invalid: allowed: a finite number >= 0");
        let e = err(binary_in("ls1", 1, "[input]\nscheme = \"lsT\"\nbits = 2\nscales = [1.0, 0.5]"));
        assert!(e.contains("`input.scales` = [1.0, 0.5]") && e.contains("two equal values for scheme \"lsT\""), "{e}");
        // level tables
        let e = err(lv.replace("levels = [-1.0, -0.25, 0.25, 1.0]", "levels = [-1.0, 1.0]"));
        assert_eq!(e, "spec field `weights.levels` = 2 values is invalid: allowed: exactly 2^bits = 4 levels (weights.bits = 2)");
        let e = err(lv.replace("per_tensor", "per_channel"));
        assert!(e.contains("`weights.granularity` = \"per_channel\"") && e.contains("\"per_tensor\" for scheme \"levels\""), "{e}");
        let e = err(GOOD.replace("layout = \"fc\"", "layout = \"fc\"\nlevels = [0.0, 1.0, 2.0, 3.0]"));
        assert!(e.contains("`weights.levels`") && e.contains("only with weights.scheme = \"levels\""), "{e}");
        assert_eq!(err(format!("{lv}\n[array]\nlevel_bits = 17\n")), "spec field `array.level_bits` = 17 is invalid: allowed 2..=16");
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = Spec::from_toml(&GOOD.replace("layout = \"fc\"", "layout = \"fc\"\nlayuot = 3"), "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("unknown field `layuot`"), "{e}");
        let e = Spec::from_toml(&GOOD.replace("\"sawb\"", "\"ternary\""), "my.toml").unwrap_err().to_string();
        assert!(e.contains("ternary") && e.contains("sawb") && e.contains("uniform") && e.contains("ls1"), "{e}");
        let e = Spec::from_toml(&GOOD.replace("alpha = [1.0, 2.0]", "alpha = true"), "my.toml").unwrap_err().to_string();
        assert!(e.contains("alpha") && e.contains("tensor name"), "{e}");
        let e = Spec::from_toml(&GOOD.replace("[input]\nbits = 4\n", "[input]\n"), "my.toml").unwrap_err().to_string();
        assert!(e.contains("missing field `bits`"), "{e}");
    }
}
