//! The configuration: parsed from TOML or built from CLI flags, validated once, and the only source of
//! every derived value (widths, latency, parameter layout).

use qmac_arith::code::{product_range, Encoding, MacKind};
use qmac_arith::pack::{Packing, COMMON_OPERAND_BITS, MAX_OPERAND_BITS};
use qmac_arith::pipeline::MAX_OUT_BASES;
use qmac_arith::round::Rounding;
use qmac_arith::width::{clog2, signed_bits, unsigned_bits};
use qmac_hdl::units::{HwParams, OutMode};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Deref, RangeInclusive};
use std::path::Path;

/// A configuration as written by the user, before validation. Every field has a default, so an empty
/// file is the built-in default design.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Prefix of every module name (`<prefix>_top`, `<prefix>_pe`, ...): a lower-case identifier.
    pub module_prefix: String,
    /// PE rows: activation vectors processed together (1..=64).
    pub rows: u32,
    /// PE columns: output channels processed together (1..=64).
    pub cols: u32,
    /// Products reduced by each PE per cycle (1..=64).
    pub lanes: u32,
    /// Largest reduction depth K (elements) a tile may have; sizes the accumulator (lanes..=2^24).
    pub max_depth: u32,
    /// Weight code width (1..=8).
    pub weight_bits: u32,
    /// Weight encoding: `int` (two's complement), `odd` (levels 2c - (2^b - 1); +-1 at 1 bit),
    /// `codebook` (a b-bit code selects one of 2^b signed `level_bits`-bit levels from a table loaded at
    /// run time: learnable quantization levels), or `bases` (b binary bases, 1..=4: bit i of a code is the
    /// sign of basis i; ls-2, ls-T, gf-k).
    pub weight_encoding: EncodingName,
    /// Width of a codebook level, or of a basis-pair scale with `bases` (2..=16).
    pub level_bits: u32,
    /// Activation code width (1..=8; the number of bases, 1..=4, with `bases`).
    pub act_bits: u32,
    /// Activation encoding: `unsigned` (PACT output), `int` (signed first layer), `odd`, or `bases`
    /// (multi-basis binary, as for weights).
    pub act_encoding: EncodingName,
    /// Output code width (1..=8); defaults to `act_bits`, so the output feeds the next layer. With
    /// `out_mode = "bases"` the number of output bases (1..=2); with `"logits"` it is derived (the
    /// logit width, [`Config::logit_bits`]) and any other value is an error.
    pub out_bits: Option<u32>,
    /// What the output stage computes: `pact` (clipped and requantized PACT codes), `logits` (the
    /// biased accumulator `acc * 2^bias_frac_bits + bias`, signed, unclipped: a last layer whose argmax
    /// is exact), or `bases` (the binary-basis codes of the next layer's activations, the greedy
    /// residual signs of the pre-activation, computed by thresholds).
    #[serde(skip_serializing_if = "OutModeName::is_pact")]
    pub out_mode: OutModeName,
    /// Fractional bits of the bias (0..=16): the output stage computes `t = acc * 2^F + bias`, so the
    /// bias (and the clip level, and the requantizer's input) is in units of `2^-F` accumulator units.
    #[serde(skip_serializing_if = "is_zero")]
    pub bias_frac_bits: u32,
    /// Accumulator width; defaults to the width that cannot overflow at `max_depth`. Narrower only
    /// with `acc_saturate = true`.
    pub acc_bits: Option<u32>,
    /// Saturate the accumulator instead of sizing it for no overflow.
    pub acc_saturate: bool,
    /// Requantization multiplier width (1..=32).
    pub mult_bits: u32,
    /// Rounding of the requantization shift: `half_even` (torch/QONNX default) or `half_up`.
    pub rounding: RoundingName,
    /// Output stage: `multiply` (PACT clip, multiply, rounding shift), `thresholds` (compare the
    /// accumulator with 2^out_bits - 1 thresholds derived from the same parameters; out_bits <= 2), or
    /// `auto` (thresholds when out_bits <= 2).
    pub requant: RequantName,
    /// Bit-serial activations: each step takes `act_bits` cycles, one activation bit per cycle (least
    /// significant first), and each PE adds the shifted weights its activation bits select. Fewer LUTs
    /// per PE (no multipliers) for `1/act_bits` of the throughput. `unsigned` or `int` activations,
    /// weights other than `bases`, no `acc_saturate`.
    pub act_serial: bool,
    /// Hold registers (double buffering): a finished tile moves out of the accumulators, so the next
    /// tile accumulates while it drains. `false`: the accumulators themselves shift down the column
    /// and the next tile waits for the drain; one register per PE fewer. Not with `bases`.
    pub double_buffer: bool,
    /// Adder levels between pipeline registers in each PE's adder tree (1..=4): 1 registers every
    /// level (the highest clock), more levels per stage save flip-flops and latency.
    pub tree_levels_per_stage: u32,
    /// The array's input registers. `false` feeds the PEs' first stage straight from the input ports:
    /// one cycle less latency and `rows * lanes * act_bits + cols * lanes * weight_bits` flip-flops
    /// fewer (on iCE40 each one a logic cell of its own). The ports should then be driven by
    /// registers, as the board wrapper's are. Not with `act_serial`.
    pub input_registers: bool,
    /// Running totals: the accumulators are never cleared between tiles; the hold registers take them
    /// a cycle after a tile's last step, and the drain subtracts each PE's total at the end of the
    /// previous tile, kept in a block-RAM memory (`rows` words per column, or `rows * cols` words with
    /// a shared unit). Saves one logic cell per accumulator bit on iCE40 (the accumulator's adder then
    /// feeds only its own register) for one or two drain stages. Needs `double_buffer`; not with
    /// `acc_saturate` or `bases`.
    pub running_totals: bool,
    /// Each PE registers its own copy of its activations and weights: one more cycle of latency and
    /// `lanes * (act_bits + weight_bits)` flip-flops per PE, so that the broadcast of an input to a
    /// row's or a column's PEs is a register-to-register path. For fmax on ECP5, where flip-flops
    /// are plentiful beside the LUTs; on iCE40 each of them takes a logic cell. With `pack` the lane
    /// operands (packed and plain) are registered once more before the multiplies (one more cycle).
    pub pe_input_regs: bool,
    /// Output units: `per_column` (one clip/requantize unit per column, a tile drains in `rows` cycles)
    /// or `shared` (one unit for all columns, a tile drains in `rows * cols` cycles; much smaller when
    /// the requantization multiplier is wide).
    pub output_units: OutputUnitsName,
    /// Exact DSP packing of the lane products: `off` (one product per multiplier), `auto` (the most
    /// lanes per multiply whose packed operands fit 16 x 16 signed bits, an iCE40 SB_MAC16 and an ECP5
    /// MULT18X18D; off when not even two do), or a number of lanes `n` (2..=8, operands at most
    /// 18 x 18 bits) whose products one multiply computes exactly ([`qmac_arith::pack`]). Each PE's
    /// lanes form groups of `n` consecutive lanes, one multiply each; the rest are plain products.
    /// For designs synthesised with DSP blocks (`qmac synth --dsp`). Not with XNOR, `bases` or
    /// bit-serial PEs, which have no multipliers.
    #[serde(skip_serializing_if = "PackName::is_off")]
    pub pack: PackName,
    /// Lane pairs per PE computed by a paired 8 x 8 product unit (`<prefix>_mul8x2`): lanes `2j` and
    /// `2j + 1` for `j < dsp_pairs`, the other lanes plain products. `qmac synth` maps each unit onto
    /// one iCE40 SB_MAC16 in its dual 8 x 8 mode (two MACs per block; Yosys alone maps one multiply per
    /// block). Every lane operand must fit 8 bits, signed or unsigned; not with `pack`, XNOR, `bases` or
    /// bit-serial PEs. 0 (the default): none.
    #[serde(skip_serializing_if = "is_zero")]
    pub dsp_pairs: u32,
    /// Bit-plane lane products (the default, `true`): where a lane product has at most 4 one-bit
    /// partial products (W2A2, W1A2, W2A1, W1A3, W3A1, W1A4, W4A1) and both operands are unsigned or
    /// two's complement codes (odd-level weights: their unsigned code), a PE counts its lanes'
    /// partial products by weight on carry chains instead of multiplying each lane and adding the
    /// products. Fewer logic cells (W2A2 16-lane PE: 197 instead of 277 ECP5 `TRELLIS_COMB`, 210
    /// instead of 241 iCE40 logic cells) and one or more adder levels (latency); on iCE40 the longer
    /// carry chains cost clock (W2A2 4x4x16 on the UP5K: 11 % fewer cells, 11 % lower fmax).
    /// `false`: lane multipliers. No effect on other PEs (packed, paired, XNOR, bases, bit-serial).
    #[serde(skip_serializing_if = "is_true")]
    pub bit_planes: bool,
    /// What the design's small memories are built from (the shared unit's per-column parameters, the
    /// running totals' previous totals, the shared unit's output buffer): `block` (the default: block
    /// RAM, otherwise unused, where Yosys would build the smallest in logic cells) or `distributed`
    /// (LUT RAM on ECP5, flip-flops on iCE40, which has none). On ECP5 a block RAM read takes 5.83 ns
    /// from the clock edge (Yosys maps DP16KD without its output register), the critical path of
    /// the W1A1 and W2A2 designs: W2A2 4x4x16 ran at 160.9 instead of 138.5 MHz with LUT RAM.
    #[serde(skip_serializing_if = "MemoryStyleName::is_block")]
    pub memory_style: MemoryStyleName,
}


/// DSP packing as written in configuration files: `"off"`, `"auto"`, or lanes per multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PackName {
    /// One product per multiplier.
    #[default]
    Off,
    /// The most lanes whose packed operands fit 16 x 16 signed bits.
    Auto,
    /// This many lanes per multiply.
    Lanes(u32),
}

/// Allowed lanes per packed multiply.
pub const PACK_RANGE: RangeInclusive<u32> = 2..=8;

impl PackName {
    fn is_off(&self) -> bool {
        *self == PackName::Off
    }
}

impl fmt::Display for PackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackName::Off => f.write_str("off"),
            PackName::Auto => f.write_str("auto"),
            PackName::Lanes(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for PackName {
    type Err = String;
    fn from_str(s: &str) -> Result<PackName, String> {
        match s {
            "off" => Ok(PackName::Off),
            "auto" => Ok(PackName::Auto),
            _ => s.parse::<u32>().ok().filter(|n| PACK_RANGE.contains(n)).map(PackName::Lanes).ok_or_else(|| {
                format!("`{}` is not a packing: allowed \"off\", \"auto\" or lanes per multiply {}..={}", crate::limits::capped(s), PACK_RANGE.start(), PACK_RANGE.end())
            }),
        }
    }
}

impl Serialize for PackName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PackName::Lanes(n) => s.serialize_u32(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for PackName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PackName, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PackName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"off\", \"auto\" or lanes per multiply {}..={}", PACK_RANGE.start(), PACK_RANGE.end())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PackName, E> {
                match v {
                    "off" => Ok(PackName::Off),
                    "auto" => Ok(PackName::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(&crate::limits::capped(v)), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PackName, E> {
                // the range is checked by Config::new, which names the field
                u32::try_from(v).map(PackName::Lanes).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PackName, E> {
                u32::try_from(v).map(PackName::Lanes).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// Memory styles as written in configuration files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MemoryStyleName {
    /// Block RAM.
    #[default]
    Block,
    /// LUT RAM (ECP5) or flip-flops (iCE40).
    Distributed,
}

impl MemoryStyleName {
    fn is_block(&self) -> bool {
        *self == MemoryStyleName::Block
    }
}

impl fmt::Display for MemoryStyleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemoryStyleName::Block => "block",
            MemoryStyleName::Distributed => "distributed",
        })
    }
}

/// Output unit arrangements as written in configuration files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OutputUnitsName {
    /// One output unit per column.
    PerColumn,
    /// One output unit for all columns.
    Shared,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_true(v: &bool) -> bool {
    *v
}

/// What the output stage computes, as written in configuration files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OutModeName {
    /// Clipped, requantized PACT codes (`out_bits` unsigned).
    #[default]
    Pact,
    /// The biased accumulator, signed and unclipped (the last layer's logits).
    Logits,
    /// Binary-basis codes of the next layer's activations (1 or 2 bases), by thresholds.
    Bases,
}

impl OutModeName {
    fn is_pact(&self) -> bool {
        *self == OutModeName::Pact
    }
    /// The name as written in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            OutModeName::Pact => "pact",
            OutModeName::Logits => "logits",
            OutModeName::Bases => "bases",
        }
    }
}

/// Largest `bias_frac_bits`.
pub const MAX_BIAS_FRAC_BITS: u32 = 16;

/// Output stage names as written in configuration files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RequantName {
    /// Thresholds when out_bits <= 2, else multiply.
    Auto,
    /// Clip, multiply, rounding shift.
    Multiply,
    /// Compare with thresholds.
    Thresholds,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            module_prefix: "qmac".into(),
            rows: 8,
            cols: 8,
            lanes: 8,
            max_depth: 512,
            weight_bits: 4,
            weight_encoding: EncodingName::Int,
            level_bits: 8,
            act_bits: 4,
            act_encoding: EncodingName::Unsigned,
            out_bits: None,
            out_mode: OutModeName::Pact,
            bias_frac_bits: 0,
            acc_bits: None,
            acc_saturate: false,
            mult_bits: 16,
            rounding: RoundingName::HalfEven,
            requant: RequantName::Auto,
            output_units: OutputUnitsName::Shared,
            act_serial: false,
            double_buffer: true,
            tree_levels_per_stage: 2,
            input_registers: true,
            running_totals: false,
            pe_input_regs: false,
            pack: PackName::Off,
            dsp_pairs: 0,
            bit_planes: true,
            memory_style: MemoryStyleName::Block,
        }
    }
}

/// Encoding names as written in configuration files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EncodingName {
    /// Unsigned integer.
    Unsigned,
    /// Two's complement.
    Int,
    /// Symmetric odd levels without zero.
    Odd,
    /// Index into a run-time table of levels (weights only).
    Codebook,
    /// Binary bases: bit i is the sign of basis i (1 means +1); the value is a sum of scaled +-1 bases,
    /// with the scales of each (weight basis, activation basis) pair loaded at run time per channel.
    Bases,
}

impl From<EncodingName> for Encoding {
    fn from(e: EncodingName) -> Encoding {
        match e {
            EncodingName::Unsigned => Encoding::Unsigned,
            EncodingName::Int => Encoding::Int,
            EncodingName::Odd => Encoding::Odd,
            // a codebook code is an unsigned index, a bases code a bit pattern of signs; their values
            // come from run-time tables
            EncodingName::Codebook | EncodingName::Bases => Encoding::Unsigned,
        }
    }
}

/// Rounding names as written in configuration files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RoundingName {
    /// Ties to even.
    HalfEven,
    /// Ties up.
    HalfUp,
}

impl From<RoundingName> for Rounding {
    fn from(r: RoundingName) -> Rounding {
        match r {
            RoundingName::HalfEven => Rounding::HalfEven,
            RoundingName::HalfUp => Rounding::HalfUp,
        }
    }
}

/// A configuration that was rejected: which field, the value, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field has a value outside what is allowed.
    #[error("config field `{field}` = {value} is invalid: {allowed}")]
    Invalid {
        /// The field name as written in the file.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The file could not be parsed (TOML syntax, unknown field, wrong type).
    #[error("cannot parse config {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (names the field and position).
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read config {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The system's message.
        message: String,
    },
}

/// Most bases of a `bases` operand.
pub const MAX_BASES: u32 = 4;

fn enc_name(e: EncodingName) -> &'static str {
    match e {
        EncodingName::Unsigned => "unsigned",
        EncodingName::Int => "int",
        EncodingName::Odd => "odd",
        EncodingName::Codebook => "codebook",
        EncodingName::Bases => "bases",
    }
}

fn invalid(field: &'static str, value: impl fmt::Display, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, value: crate::limits::capped(&value.to_string()).into_owned(), allowed: allowed.into() }
}

/// Allowed PE rows, columns and lanes (also the CLI's ranges for `--rows`, `--cols`, `--lanes`).
pub const DIM_RANGE: RangeInclusive<u32> = 1..=64;
/// Allowed weight, activation and output code widths.
pub const BITS_RANGE: RangeInclusive<u32> = 1..=8;
/// Largest `max_depth` (the smallest is `lanes`).
pub const MAX_DEPTH_LIMIT: u32 = 1 << 24;

fn within(field: &'static str, v: u32, r: &RangeInclusive<u32>) -> Result<(), ConfigError> {
    in_range(field, v, *r.start(), *r.end())
}

fn in_range(field: &'static str, v: u32, lo: u32, hi: u32) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(field, v, format!("allowed {lo}..={hi}")));
    }
    Ok(())
}

/// A validated configuration. Only [`Config::new`] (and so `TryFrom<RawConfig>`) makes one; its fields
/// are read through `Deref` to [`RawConfig`], and everything derived is a method.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Config {
    raw: RawConfig,
}

impl Deref for Config {
    type Target = RawConfig;
    fn deref(&self) -> &RawConfig {
        &self.raw
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;
    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        Config::new(raw)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new(RawConfig::default()).expect("the default config is valid")
    }
}

impl Config {
    /// Validate a raw configuration.
    pub fn new(raw: RawConfig) -> Result<Config, ConfigError> {
        let p = &raw.module_prefix;
        let ok_prefix = !p.is_empty()
            && p.len() <= 32
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_prefix {
            return Err(invalid("module_prefix", format!("{p:?}"), "allowed: 1 to 32 characters of a-z, 0-9 and _, starting with a letter"));
        }
        within("rows", raw.rows, &DIM_RANGE)?;
        within("cols", raw.cols, &DIM_RANGE)?;
        within("lanes", raw.lanes, &DIM_RANGE)?;
        within("weight_bits", raw.weight_bits, &BITS_RANGE)?;
        within("act_bits", raw.act_bits, &BITS_RANGE)?;
        match (raw.out_mode, raw.out_bits) {
            (OutModeName::Pact, Some(o)) => within("out_bits", o, &BITS_RANGE)?,
            (OutModeName::Bases, o) => {
                let o = o.unwrap_or(raw.act_bits);
                if !(1..=MAX_OUT_BASES).contains(&o) {
                    return Err(invalid("out_bits", o, format!("with out_mode = \"bases\" out_bits is the number of output bases, 1..={MAX_OUT_BASES} (ls-1, ls-2, ls-T, gf-1, gf-2)")));
                }
                if raw.requant == RequantName::Multiply {
                    return Err(invalid("requant", "\"multiply\"", "with out_mode = \"bases\" the output stage is thresholds (\"auto\" or \"thresholds\")"));
                }
            }
            (OutModeName::Logits, _) => {
                if raw.requant != RequantName::Auto {
                    return Err(invalid("requant", format!("\"{:?}\"", raw.requant).to_lowercase(), "with out_mode = \"logits\" there is no requantization: leave requant = \"auto\""));
                }
            }
            (OutModeName::Pact, None) => {}
        }
        in_range("bias_frac_bits", raw.bias_frac_bits, 0, MAX_BIAS_FRAC_BITS)?;
        in_range("mult_bits", raw.mult_bits, 1, 32)?;
        if raw.max_depth < raw.lanes || raw.max_depth > MAX_DEPTH_LIMIT {
            return Err(invalid("max_depth", raw.max_depth, format!("allowed lanes ({})..={MAX_DEPTH_LIMIT}", raw.lanes)));
        }
        if raw.requant == RequantName::Thresholds && raw.out_mode == OutModeName::Pact && raw.out_bits.unwrap_or(raw.act_bits) > 2 {
            return Err(invalid("requant", "\"thresholds\"", format!("thresholds need out_bits <= 2 (out_bits is {}); use \"multiply\" or \"auto\"", raw.out_bits.unwrap_or(raw.act_bits))));
        }
        if raw.weight_encoding == EncodingName::Unsigned {
            return Err(invalid("weight_encoding", "\"unsigned\"", "allowed \"int\", \"odd\", \"codebook\" or \"bases\""));
        }
        if raw.act_encoding == EncodingName::Codebook {
            return Err(invalid("act_encoding", "\"codebook\"", "allowed \"unsigned\", \"int\", \"odd\" or \"bases\" (codebooks are for weights)"));
        }
        in_range("level_bits", raw.level_bits, 2, 16)?;
        in_range("tree_levels_per_stage", raw.tree_levels_per_stage, 1, 4)?;
        let (wbases, abases) = (raw.weight_encoding == EncodingName::Bases, raw.act_encoding == EncodingName::Bases);
        if wbases {
            in_range("weight_bits", raw.weight_bits, 1, MAX_BASES)?;
        }
        if abases {
            in_range("act_bits", raw.act_bits, 1, MAX_BASES)?;
        }
        let one_basis = |e: EncodingName, b: u32| e == EncodingName::Bases || (e == EncodingName::Odd && b == 1);
        if wbases && !one_basis(raw.act_encoding, raw.act_bits) {
            return Err(invalid("act_encoding", format!("\"{}\" with act_bits = {}", enc_name(raw.act_encoding), raw.act_bits), "with weight_encoding = \"bases\" activations are \"bases\" or 1-bit \"odd\" (one +-1 basis)"));
        }
        if abases && !one_basis(raw.weight_encoding, raw.weight_bits) {
            return Err(invalid("weight_encoding", format!("\"{}\" with weight_bits = {}", enc_name(raw.weight_encoding), raw.weight_bits), "with act_encoding = \"bases\" weights are \"bases\" or 1-bit \"odd\" (one +-1 basis)"));
        }
        if (wbases || abases) && raw.acc_saturate {
            return Err(invalid("acc_saturate", "true", "not with \"bases\" encodings: the per-pair counters and the combined sum are always sized for no overflow"));
        }
        if raw.act_serial {
            if !matches!(raw.act_encoding, EncodingName::Unsigned | EncodingName::Int) {
                return Err(invalid("act_serial", "true", format!("bit-serial activations are \"unsigned\" or \"int\" (act_encoding is \"{}\")", enc_name(raw.act_encoding))));
            }
            if wbases {
                return Err(invalid("act_serial", "true", "not with weight_encoding = \"bases\""));
            }
            if raw.acc_saturate {
                return Err(invalid("act_serial", "true", "not with acc_saturate = true: bit planes are accumulated one by one, so saturating per step cannot be reproduced"));
            }
            if !raw.input_registers {
                return Err(invalid("input_registers", "false", "not with act_serial = true: the input registers shift the activation codes one bit per cycle"));
            }
        }
        if raw.running_totals {
            if !raw.double_buffer {
                return Err(invalid("running_totals", "true", "needs double_buffer = true: the hold registers take the totals while the accumulators go on"));
            }
            if raw.acc_saturate {
                return Err(invalid("running_totals", "true", "not with acc_saturate = true: a running total wraps, a saturated one could not be undone"));
            }
            if wbases || abases {
                return Err(invalid("running_totals", "true", "not with \"bases\" encodings (their per-pair counters are cleared per tile)"));
            }
        }
        if let PackName::Lanes(n) = raw.pack {
            if !PACK_RANGE.contains(&n) || n > raw.lanes {
                let (lo, hi) = (PACK_RANGE.start(), PACK_RANGE.end());
                return Err(invalid("pack", n, format!("allowed \"off\", \"auto\" or lanes per multiply {lo}..={hi}, at most lanes ({})", raw.lanes)));
            }
        }
        if !raw.double_buffer && (wbases || abases) {
            return Err(invalid("double_buffer", "false", "not with \"bases\" encodings (their PEs always have hold registers)"));
        }
        let mut cfg = Config { raw };
        let need = cfg.exact_acc_bits();
        if let Some(a) = cfg.raw.acc_bits {
            let lo = cfg.dot_bits().max(2);
            if a < lo || a > 64 {
                return Err(invalid("acc_bits", a, format!("allowed {lo}..=64 (at least one step's dot product, {lo} bits)")));
            }
            if a < need && cfg.bases().is_some() {
                return Err(invalid("acc_bits", a, format!("{need} bits are needed for no overflow at max_depth = {} with bases; use acc_bits >= {need}", cfg.raw.max_depth)));
            }
            if a < need && !cfg.raw.acc_saturate {
                return Err(invalid(
                    "acc_bits",
                    a,
                    format!("{need} bits are needed for no overflow at max_depth = {}; use acc_bits >= {need}, or set acc_saturate = true to saturate", cfg.raw.max_depth),
                ));
            }
        }
        // normalise: every derived default written out, so the stored config regenerates the design
        cfg.raw.acc_bits = Some(cfg.raw.acc_bits.unwrap_or(need));
        if cfg.out_mode == OutModeName::Logits {
            let lb = cfg.logit_bits();
            if lb > 64 {
                return Err(invalid("out_mode", "\"logits\"", format!("a logit is acc_bits + bias_frac_bits + 1 = {lb} bits; at most 64 are allowed")));
            }
            if let Some(o) = cfg.raw.out_bits.filter(|&o| o != lb) {
                return Err(invalid("out_bits", o, format!("with out_mode = \"logits\" out_bits is the logit width acc_bits + bias_frac_bits + 1 = {lb}; leave it out")));
            }
        }
        cfg.raw.out_bits = Some(cfg.out_bits());
        if let PackName::Lanes(n) = cfg.raw.pack {
            cfg.check_pack(n)?;
        }
        if cfg.raw.dsp_pairs > 0 {
            cfg.check_dsp_pairs()?;
        }
        if cfg.product_bits() > 96 {
            return Err(invalid("mult_bits", cfg.raw.mult_bits, format!("acc_bits + bias_frac_bits + mult_bits must be at most 96 (acc_bits is {}, bias_frac_bits {})", cfg.acc_bits(), cfg.bias_frac_bits)));
        }
        Ok(cfg)
    }

    fn check_pack(&self, n: u32) -> Result<(), ConfigError> {
        let value = n.to_string();
        let Some((x, y)) = self.pack_operands() else {
            return Err(invalid("pack", value, "packing needs lane multipliers: not with XNOR lanes (1-bit odd x 1-bit odd), bases or act_serial"));
        };
        let p = Packing::new(n, x, y).filter(|p| p.operand_bits() <= MAX_OPERAND_BITS);
        if p.is_none() {
            let wide = Packing::new(n, x, y).map_or("more than 64".to_string(), |p| format!("{} x {}", p.x_bits(), p.y_bits()));
            let fits = qmac_arith::pack::widest(x, y, MAX_OPERAND_BITS, self.lanes).map_or("no packing fits".to_string(), |w| format!("pack = {} fits", w.terms));
            return Err(invalid(
                "pack",
                value,
                format!("{n} lanes of operands {x:?} x {y:?} need {wide}-bit signed multiplier operands; the Lattice DSP blocks take at most {MAX_OPERAND_BITS} ({fits})"),
            ));
        }
        Ok(())
    }

    fn check_dsp_pairs(&self) -> Result<(), ConfigError> {
        let n = self.dsp_pairs;
        if n > self.lanes / 2 {
            return Err(invalid("dsp_pairs", n, format!("allowed 0..={} (lane pairs, at most lanes / 2 with lanes = {})", self.lanes / 2, self.lanes)));
        }
        if self.pack != PackName::Off {
            return Err(invalid("dsp_pairs", n, format!("not with pack = {} (a lane is either packed or paired)", self.pack)));
        }
        let Some((x, y)) = self.pack_operands() else {
            return Err(invalid("dsp_pairs", n, "paired products need lane multipliers: not with XNOR lanes (1-bit odd x 1-bit odd), bases or act_serial"));
        };
        let fits = |(lo, hi): (i64, i64)| (lo >= -128 && hi <= 127) || (lo >= 0 && hi <= 255);
        for (side, r) in [("weight", x), ("activation", y)] {
            if !fits(r) {
                return Err(invalid(
                    "dsp_pairs",
                    n,
                    format!("the {side} operand of a lane ranges over {}..={}, which does not fit 8 bits (signed -128..=127 or unsigned 0..=255)", r.0, r.1),
                ));
            }
        }
        Ok(())
    }

    /// The ranges of the two operands of a lane multiply (weight side, activation side), when the PEs
    /// multiply: `None` for XNOR, bases and bit-serial PEs.
    fn pack_operands(&self) -> Option<((i64, i64), (i64, i64))> {
        self.operands_of(self.mac_kind())
    }

    fn operands_of(&self, kind: MacKind) -> Option<((i64, i64), (i64, i64))> {
        if self.act_serial || self.bases().is_some() {
            return None;
        }
        kind.lane_operands(self.pe_weight(), (self.act_enc(), self.act_bits))
    }

    /// The packing `pack` asks for with the lane operands of `kind`.
    fn packing_of(&self, kind: MacKind) -> Option<Packing> {
        let (x, y) = self.operands_of(kind)?;
        match self.pack {
            PackName::Off => None,
            PackName::Auto => qmac_arith::pack::widest(x, y, COMMON_OPERAND_BITS, self.lanes),
            PackName::Lanes(n) => Packing::new(n, x, y),
        }
    }

    /// The exact packing of the PEs' lane products ([`RawConfig::pack`], [`qmac_arith::pack`]): `None`
    /// when off (also for `auto` when not even two lanes fit 16 x 16 bits, or the PEs do not multiply).
    pub fn packing(&self) -> Option<Packing> {
        self.packing_of(self.mac_kind())
    }

    /// Lanes per packed multiply (1 without packing).
    pub fn pack_lanes(&self) -> u32 {
        self.packing().map_or(1, |p| p.terms)
    }

    /// Multiplies per PE: one per group of [`Config::pack_lanes`] lanes, one per remaining lane (0
    /// for PEs without multipliers).
    pub fn pe_multipliers(&self) -> u32 {
        if self.pack_operands().is_none() {
            return 0;
        }
        let n = self.pack_lanes();
        self.lanes / n + self.lanes % n
    }

    /// Parse and validate TOML text.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.to_string(), message: crate::limits::capped_lines(e.to_string().trim()) })?;
        Config::new(raw)
    }

    /// Read, parse and validate a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = crate::limits::read_text(path, crate::limits::MAX_TOML_BYTES).map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// The configuration as TOML, every field written out (derived defaults included), so the file
    /// regenerates the same design.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.raw).expect("config serialises")
    }

    /// A short name: `w<bits><enc>a<bits><enc>_<rows>x<cols>x<lanes>`.
    pub fn short_name(&self) -> String {
        let e = |e: EncodingName| match e {
            EncodingName::Unsigned => "u",
            EncodingName::Int => "i",
            EncodingName::Odd => "o",
            EncodingName::Codebook => "c",
            EncodingName::Bases => "b",
        };
        format!("w{}{}a{}{}_{}x{}x{}", self.weight_bits, e(self.weight_encoding), self.act_bits, e(self.act_encoding), self.rows, self.cols, self.lanes)
    }

    /// Weight encoding.
    pub fn weight_enc(&self) -> Encoding {
        self.weight_encoding.into()
    }
    /// Activation encoding.
    pub fn act_enc(&self) -> Encoding {
        self.act_encoding.into()
    }
    /// Rounding rule.
    pub fn rounding_rule(&self) -> Rounding {
        self.raw.rounding.into()
    }
    /// Width of one output on `y_data` per column: the code width (`out_bits`, the number of bases
    /// with `out_mode = "bases"`), or with `out_mode = "logits"` the logit width
    /// [`Config::logit_bits`].
    pub fn out_bits(&self) -> u32 {
        if self.out_mode == OutModeName::Logits {
            return self.logit_bits();
        }
        self.raw.out_bits.unwrap_or(self.raw.act_bits)
    }
    /// Width of the biased accumulator `t = acc * 2^bias_frac_bits + bias` as a signed logit:
    /// `acc_bits + bias_frac_bits + 1` (the sum of two values of `acc_bits + bias_frac_bits` bits).
    pub fn logit_bits(&self) -> u32 {
        self.biased_bits() + 1
    }
    /// Width of the bias and of the clip level `alpha` (and of the requantizer's input): the
    /// accumulator's width plus the bias's fractional bits.
    pub fn biased_bits(&self) -> u32 {
        self.acc_bits() + self.bias_frac_bits
    }
    /// True for codebook weights.
    pub fn is_codebook(&self) -> bool {
        self.weight_encoding == EncodingName::Codebook
    }
    /// How the processing elements see weights: as codes of `weight_bits` bits, or, with a codebook, as
    /// the looked-up `level_bits`-bit two's complement levels.
    pub fn pe_weight(&self) -> (Encoding, u32) {
        if self.is_codebook() {
            (Encoding::Int, self.level_bits)
        } else {
            (self.weight_enc(), self.weight_bits)
        }
    }
    /// The value of weight code `code`; `levels` is the codebook (ignored for other encodings).
    pub fn weight_value(&self, code: u64, levels: &[i64]) -> i64 {
        if self.is_codebook() {
            levels[code as usize]
        } else {
            self.weight_enc().value(self.weight_bits, code)
        }
    }
    /// The lane arithmetic the PEs use (XNOR on every basis pair with bases).
    pub fn mac_kind(&self) -> MacKind {
        if self.bases().is_some() {
            return MacKind::Xnor;
        }
        let (we, wb) = self.pe_weight();
        let kind = MacKind::of(we, wb, self.act_enc(), self.act_bits);
        // packed lanes of int weights and unsigned activations multiply offset-binary weight codes,
        // when that packing fits the DSP blocks as the plain one would
        let packed = kind.packed(we, self.act_enc());
        let fits = |k| self.packing_of(k).filter(|p| p.operand_bits() <= MAX_OPERAND_BITS);
        if packed != kind && fits(packed).is_some() {
            return packed;
        }
        kind
    }
    /// With a `bases` encoding: the number of weight bases and of activation bases (a 1-bit `odd`
    /// operand is one basis); `None` otherwise.
    pub fn bases(&self) -> Option<(u32, u32)> {
        let count = |e: EncodingName, b: u32| if e == EncodingName::Bases || (e == EncodingName::Odd && b == 1) { Some(b) } else { None };
        if self.weight_encoding != EncodingName::Bases && self.act_encoding != EncodingName::Bases {
            return None;
        }
        Some((count(self.weight_encoding, self.weight_bits)?, count(self.act_encoding, self.act_bits)?))
    }
    /// Number of (weight basis, activation basis) pairs, each with its own XNOR/popcount count in every
    /// PE and its own scale per channel (1 without bases).
    pub fn basis_pairs(&self) -> u32 {
        self.bases().map_or(1, |(w, a)| w * a)
    }
    /// Width of a PE's per-pair count `D = sum of +-1 products` of a tile: `-N..=N` with
    /// `N = max_steps * lanes`.
    pub fn pair_acc_bits(&self) -> u32 {
        self.hw_params().bases.map_or(0, |b| b.count_bits())
    }
    /// Entries of the run-time table: `2^weight_bits` levels of a codebook, or `cols * basis_pairs`
    /// pair scales (channel `c`, pair `p = i * act_bases + j` at `c * basis_pairs + p`); 0 otherwise.
    pub fn table_entries(&self) -> u32 {
        if self.is_codebook() {
            1 << self.weight_bits
        } else if self.bases().is_some() {
            self.cols * self.basis_pairs()
        } else {
            0
        }
    }
    /// Range of one product `w * a` (for a codebook: any level of `level_bits` bits; with bases, the
    /// combined value of one element, `sum_p m_p * (+-1)`, for any pair scales `m_p`).
    pub fn product_range(&self) -> (i64, i64) {
        if self.bases().is_some() {
            let m = i64::from(self.basis_pairs()) << (self.level_bits - 1);
            return (-m, m);
        }
        let (we, wb) = self.pe_weight();
        product_range(we.range(wb), self.act_enc().range(self.act_bits))
    }
    /// Most reduction steps (beats) in one tile: `ceil(max_depth / lanes)`.
    pub fn max_steps(&self) -> u32 {
        self.max_depth.div_ceil(self.lanes)
    }
    /// Width of one step's dot product `sum_l w_l * a_l`.
    pub fn dot_bits(&self) -> u32 {
        self.hw_params_with_acc(64).dot_bits()
    }
    /// Range of a tile's exact sum: `max_steps * lanes` products, each in [`Config::product_range`].
    pub fn acc_range(&self) -> (i128, i128) {
        let (lo, hi) = self.product_range();
        let n = i128::from(self.max_steps()) * i128::from(self.lanes);
        (i128::from(lo) * n, i128::from(hi) * n)
    }
    /// The accumulator width that can never overflow.
    ///
    /// Proof: a tile has at most `S = ceil(max_depth / lanes)` steps of `lanes` products each, and every
    /// product lies in `[pmin, pmax]` ([`Config::product_range`]: the extreme products of the two
    /// value ranges). So every partial sum of a tile, the final one included, lies in
    /// `[S * lanes * pmin, S * lanes * pmax]` (partial sums have fewer terms, and `pmin <= 0 <= pmax`
    /// for every encoding pair, so fewer terms stay inside). `signed_bits` returns the smallest
    /// two's complement width holding that interval; the accumulator starts each tile from zero.
    pub fn exact_acc_bits(&self) -> u32 {
        let (lo, hi) = self.acc_range();
        signed_bits(lo, hi).max(2)
    }
    /// The accumulator width in use: `acc_bits` if given, else [`Config::exact_acc_bits`].
    pub fn acc_bits(&self) -> u32 {
        self.raw.acc_bits.unwrap_or_else(|| self.exact_acc_bits())
    }
    /// True when the accumulator saturates (`acc_saturate`; required when it is narrower than
    /// [`Config::exact_acc_bits`]).
    pub fn acc_saturates(&self) -> bool {
        self.raw.acc_saturate
    }
    /// Width of the requantization product `x * mult` (`x` has [`Config::biased_bits`]).
    pub fn product_bits(&self) -> u32 {
        self.biased_bits() + self.mult_bits
    }
    /// Largest shift that the requantizer computes exactly: the product width.
    pub fn max_shift(&self) -> u32 {
        self.product_bits()
    }
    /// Width of the shift field.
    pub fn shift_bits(&self) -> u32 {
        unsigned_bits(u128::from(self.max_shift()))
    }
    /// Parameter address width: channel bits and two field bits; with a table (codebook levels or
    /// basis-pair scales), one more bit selects the table (`1 << (prm_addr_bits - 1)` + index).
    pub fn prm_addr_bits(&self) -> u32 {
        let ch = clog2(u64::from(self.cols)).max(1) + 2;
        match self.table_entries() {
            0 => ch,
            n => ch.max(clog2(u64::from(n)).max(1)) + 1,
        }
    }
    /// Parameter data width: the widest field.
    pub fn prm_data_bits(&self) -> u32 {
        self.hw_params().prm_data_bits
    }
    /// True when the output stage compares against thresholds (see [`RawConfig::requant`]): always for
    /// basis-coded outputs, never for logits.
    pub fn uses_thresholds(&self) -> bool {
        match self.out_mode {
            OutModeName::Bases => return true,
            OutModeName::Logits => return false,
            OutModeName::Pact => {}
        }
        match self.requant {
            RequantName::Auto => self.out_bits() <= 2,
            RequantName::Multiply => false,
            RequantName::Thresholds => true,
        }
    }
    /// Multiply-accumulates per cycle: `rows * cols * lanes`, divided by `act_bits` with bit-serial
    /// activations.
    pub fn macs_per_cycle(&self) -> f64 {
        (u64::from(self.rows) * u64::from(self.cols) * u64::from(self.lanes)) as f64 / f64::from(self.cycles_per_step())
    }
    /// Cycles one step occupies the array: `act_bits` with bit-serial activations, else 1.
    pub fn cycles_per_step(&self) -> u32 {
        self.hw_params().cycles_per_step()
    }
    /// Cycles from the cycle that accepts a tile's last step to the cycle its first output row is
    /// valid, when nothing stalls.
    pub fn latency(&self) -> u32 {
        self.hw_params().latency()
    }
    /// Cycles the drain of one tile occupies: one per row, or one per row and column with a shared
    /// output unit.
    pub fn drain_cycles(&self) -> u32 {
        if self.output_units == OutputUnitsName::Shared {
            self.rows * self.cols
        } else {
            self.rows
        }
    }
    /// Width of the activation input bus.
    pub fn a_data_bits(&self) -> u32 {
        self.rows * self.lanes * self.act_bits
    }
    /// Width of the weight input bus.
    pub fn w_data_bits(&self) -> u32 {
        self.cols * self.lanes * self.weight_bits
    }
    /// Width of the output bus.
    pub fn y_data_bits(&self) -> u32 {
        self.cols * self.out_bits()
    }

    fn hw_params_with_acc(&self, acc_bits: u32) -> HwParams {
        HwParams {
            prefix: self.module_prefix.clone(),
            rows: self.rows,
            cols: self.cols,
            lanes: self.lanes,
            act_bits: self.act_bits,
            act_enc: self.act_enc(),
            weight_bits: self.pe_weight().1,
            weight_enc: self.pe_weight().0,
            codebook_bits: self.is_codebook().then_some(self.weight_bits),
            bases: self.bases().map(|(w, a)| qmac_hdl::units::Bases { weight: w, act: a, scale_bits: self.level_bits, max_count: self.max_steps() * self.lanes }),
            out_bits: self.out_bits(),
            acc_bits,
            acc_saturate: false,
            mult_bits: self.mult_bits,
            shift_bits: 1,
            rounding: self.rounding_rule(),
            prm_addr_bits: 1,
            prm_data_bits: 1,
            thresholds: false,
            shared_output: false,
            serial: self.act_serial,
            double_buffer: self.double_buffer,
            tree_levels: self.tree_levels_per_stage,
            input_regs: self.input_registers,
            running_totals: self.running_totals,
            pe_input_regs: self.pe_input_regs,
            packing: self.packing(),
            dsp_pairs: self.dsp_pairs,
            bit_planes: self.bit_planes,
            mem_style: match self.memory_style {
                MemoryStyleName::Block => qmac_hdl::rtl::MemStyle::Block,
                MemoryStyleName::Distributed => qmac_hdl::rtl::MemStyle::Distributed,
            },
            bias_frac: self.bias_frac_bits,
            out_mode: match self.out_mode {
                OutModeName::Pact => OutMode::Pact,
                OutModeName::Logits => OutMode::Logits,
                OutModeName::Bases => OutMode::Bases,
            },
        }
    }

    /// The hardware view of this configuration.
    pub fn hw_params(&self) -> HwParams {
        let mut hw = HwParams {
            acc_saturate: self.acc_saturates(),
            shift_bits: self.shift_bits(),
            prm_addr_bits: self.prm_addr_bits(),
            prm_data_bits: 1,
            thresholds: self.uses_thresholds(),
            shared_output: self.output_units == OutputUnitsName::Shared,
            ..self.hw_params_with_acc(self.acc_bits())
        };
        let table = if self.table_entries() > 0 { self.level_bits } else { 1 };
        hw.prm_data_bits = hw.param_fields().iter().map(|f| f.1).max().unwrap_or(1).max(table);
        hw
    }
}
