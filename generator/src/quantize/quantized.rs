//! What `quantized.json` holds: the quantized weights, the input and output quantizers, every
//! channel's integer parameters and the array configuration ([`QuantizedLayer`]).

use super::{GranularityName, InputScheme, LayoutName, QuantizeError, Spec, WeightScheme};
use crate::config::{Config, EncodingName, RawConfig};
use crate::quantize::ConvGeometry;
use qmac_arith::code::Encoding;
use qmac_arith::pipeline::ChannelParams;
use qmac_arith::quant::Rounding;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format tag of `quantized.json`.
pub const FORMAT: &str = "qmac-quantized 1";

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
    /// The float weights, `[out][K]` (kept for the float reference of [`layer_vectors`](super::layer_vectors)).
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

    /// The parameters to load on an array `cfg` that serves this layer with at least its
    /// `bias_frac_bits` (`F' = F + d`): `bias * 2^d`, `alpha * 2^d`, `shift + d`, which give exactly the
    /// same PACT and basis codes (`t' = 2^d t`, and `mult / 2^(shift + d)` takes it back), and logits
    /// `2^d` times the layer's own (one logit unit is then worth `output.scales[o] / 2^d`).
    pub fn params_on(&self, cfg: &Config) -> Vec<ChannelParams> {
        let d = cfg.bias_frac_bits.saturating_sub(self.config.bias_frac_bits);
        let logits = self.config.out_mode == crate::config::OutModeName::Logits;
        self.channels
            .iter()
            .map(|c| {
                let p = c.params();
                ChannelParams { bias: p.bias << d, alpha: p.alpha << d, mult: p.mult, shift: if logits { p.shift } else { p.shift + d } }
            })
            .collect()
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

    /// Read `quantized.json` (`path` is the file or the directory holding it) and check it as strictly
    /// as a configuration (`validate.rs`): every length, code and parameter against the configuration it
    /// carries.
    pub fn load(path: &Path) -> Result<QuantizedLayer, QuantizeError> {
        let file = if path.is_dir() { path.join("quantized.json") } else { path.to_path_buf() };
        let text = crate::limits::read_text(&file, crate::limits::MAX_QUANTIZED_BYTES).map_err(|source| QuantizeError::Io { path: file.clone(), source })?;
        let q: QuantizedLayer = serde_json::from_str(&text).map_err(|e| QuantizeError::BadQuantized { path: file.clone(), message: crate::limits::capped_lines(&e.to_string()) })?;
        super::validate::validate(&q, &file)?;
        Ok(q)
    }

    /// `quantized.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("quantized layer serialises") + "\n"
    }
}
