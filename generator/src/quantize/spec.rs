//! The layer spec of `qmac quantize`: a TOML file that names the float tensors of one trained layer and
//! says how to quantize them for the array (docs/quantize.md has the full reference).
//!
//! ```toml
//! rounding = "half_even"          # optional; the tie rule everywhere (quantizers and requantization)
//!
//! [weights]
//! tensor = "conv1.weight"         # name inside the weights file
//! bias = "conv1.bias"             # optional float bias, one value per output channel
//! scheme = "sawb"                 # sawb | uniform | ls1
//! bits = 2
//! granularity = "per_channel"     # per_tensor | per_channel (per output channel)
//! layout = "conv"                 # fc: [out][in]; conv: [out][in][kh][kw], lowered with im2col
//!
//! [conv]                          # only with layout = "conv"; every field optional
//! stride = [1, 1]
//! padding = [1, 1]
//! dilation = [1, 1]
//!
//! [input]                         # the layer's input activations: PACT codes (unsigned)
//! bits = 4
//! alpha = 4.0                     # PACT clip; or scale = 0.2667 (alpha = scale * (2^bits - 1))
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
//! module_prefix = "qmac"
//! ```
//!
//! Parsing rejects unknown fields (serde `deny_unknown_fields`); [`Spec::validate`] rejects values out
//! of range with one message naming the field, the value and what is allowed.

use super::QuantizeError;
use crate::config::RoundingName;
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
    /// Least-squares binary (ls-1): `mean|w| * sign(w)` (1 bit); `odd` 1-bit codes.
    Ls1,
}

impl WeightScheme {
    /// The name used in the spec.
    pub fn name(self) -> &'static str {
        match self {
            WeightScheme::Sawb => "sawb",
            WeightScheme::Uniform => "uniform",
            WeightScheme::Ls1 => "ls1",
        }
    }

    /// The bit-widths the scheme supports on the array.
    pub fn bits_range(self) -> (u32, u32) {
        match self {
            WeightScheme::Sawb => (1, 8),
            WeightScheme::Uniform => (2, 8),
            WeightScheme::Ls1 => (1, 1),
        }
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
    /// Code width.
    pub bits: u32,
    /// One scale per tensor or per output channel.
    pub granularity: GranularityName,
    /// `fc` or `conv`.
    pub layout: LayoutName,
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

/// `[input]`: the layer's input activations, PACT codes with one clip for the whole tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Activation code width (the array's `act_bits`).
    pub bits: u32,
    /// PACT clip level: a number or the name of a 1-element tensor. Give this or `scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<AlphaSpec>,
    /// Real value of one code step (`alpha / (2^bits - 1)`). Give this or `alpha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
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
    /// Module name prefix of the generated design.
    #[serde(default = "default_prefix")]
    pub module_prefix: String,
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
fn default_prefix() -> String {
    "qmac".into()
}
fn default_rounding() -> RoundingName {
    RoundingName::HalfEven
}

impl Default for ArraySpec {
    fn default() -> Self {
        ArraySpec { rows: 8, cols: None, lanes: 4, mult_bits: 16, module_prefix: default_prefix() }
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
        let spec: Spec = toml::from_str(text).map_err(|e| QuantizeError::SpecParse { path: origin.to_string(), message: e.to_string().trim().to_string() })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Read, parse and validate a spec file.
    pub fn from_file(path: &Path) -> Result<Spec, QuantizeError> {
        let text = std::fs::read_to_string(path).map_err(|source| QuantizeError::Io { path: path.to_path_buf(), source })?;
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
        let (lo, hi) = w.scheme.bits_range();
        if w.bits < lo || w.bits > hi {
            let allowed = if lo == hi { format!("allowed {lo} for scheme \"{}\"", w.scheme.name()) } else { format!("allowed {lo}..={hi} for scheme \"{}\"", w.scheme.name()) };
            return Err(invalid("weights.bits", w.bits, allowed));
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
        in_range("input.bits", self.input.bits, 1, 8)?;
        match (&self.input.alpha, self.input.scale) {
            (Some(_), Some(s)) => return Err(invalid("input.scale", s, "allowed: give either input.alpha or input.scale, not both")),
            (None, None) => return Err(invalid("input", "no alpha and no scale", "allowed: input.alpha (PACT clip level) or input.scale (alpha / (2^bits - 1))")),
            (Some(a), None) => check_alpha("input.alpha", a, false)?,
            (None, Some(s)) => positive("input.scale", s)?,
        }
        in_range("output.bits", self.output.bits, 1, 8)?;
        check_alpha("output.alpha", &self.output.alpha, true)?;
        let a = &self.array;
        in_range("array.rows", a.rows, 1, 64)?;
        if let Some(c) = a.cols {
            in_range("array.cols", c, 1, 64)?;
        }
        in_range("array.lanes", a.lanes, 1, 64)?;
        in_range("array.mult_bits", a.mult_bits, 1, 32)?;
        let p = &a.module_prefix;
        let ok_prefix = !p.is_empty() && p.len() <= 32 && p.starts_with(|c: char| c.is_ascii_lowercase()) && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_prefix {
            return Err(invalid("array.module_prefix", format!("{p:?}"), "allowed: 1 to 32 characters of a-z, 0-9 and _, starting with a letter"));
        }
        Ok(())
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
