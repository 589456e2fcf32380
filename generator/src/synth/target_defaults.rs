//! Per-target defaults: the options measured best on each device (docs/synthesis.md), applied by
//! `qmac generate --target`, `qmac run` and `qmac sweep --target-defaults` to every field the user did
//! not set, and recorded in the build directory's `manifest.json` as [`TargetRecord`].
//!
//! Precedence, lowest first: the built-in default, the target's defaults, the keys present in the
//! `--config` file, the flags. Precision and shape are always the user's: no default changes
//! `rows`, `cols`, `lanes`, `max_depth` or any bit width or encoding.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::targets::{Family, Target};
use super::DspPolicy;
use crate::config::{Config, MemoryStyleName, OutputUnitsName, PackName, RawConfig};

/// One configuration field a target's defaults set, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `output_units`.
    OutputUnits(OutputUnitsName),
    /// `input_registers`.
    InputRegisters(bool),
    /// `running_totals`.
    RunningTotals(bool),
    /// `pe_input_regs`.
    PeInputRegs(bool),
    /// `pack`.
    Pack(PackName),
    /// `dsp_pairs`. In [`candidates`] the count is a placeholder: [`apply`] computes it with
    /// [`pairs_fit`] from the shape.
    DspPairs(u32),
    /// `memory_style`.
    MemoryStyle(MemoryStyleName),
}

/// The configuration fields a target's defaults may set (names as in configuration files).
pub const FIELDS: [&str; 7] = ["output_units", "input_registers", "running_totals", "pe_input_regs", "pack", "dsp_pairs", "memory_style"];

impl Setting {
    /// The field's name as written in configuration files.
    pub fn field(self) -> &'static str {
        match self {
            Setting::OutputUnits(_) => "output_units",
            Setting::InputRegisters(_) => "input_registers",
            Setting::RunningTotals(_) => "running_totals",
            Setting::PeInputRegs(_) => "pe_input_regs",
            Setting::Pack(_) => "pack",
            Setting::DspPairs(_) => "dsp_pairs",
            Setting::MemoryStyle(_) => "memory_style",
        }
    }

    fn apply(self, raw: &mut RawConfig) {
        match self {
            Setting::OutputUnits(v) => raw.output_units = v,
            Setting::InputRegisters(v) => raw.input_registers = v,
            Setting::RunningTotals(v) => raw.running_totals = v,
            Setting::PeInputRegs(v) => raw.pe_input_regs = v,
            Setting::Pack(v) => raw.pack = v,
            Setting::DspPairs(v) => raw.dsp_pairs = v,
            Setting::MemoryStyle(v) => raw.memory_style = v,
        }
    }

    /// The value as the manifest's `config` writes it.
    pub fn value(self) -> serde_json::Value {
        match self {
            Setting::OutputUnits(v) => serde_json::to_value(v).expect("serialises"),
            Setting::InputRegisters(v) | Setting::RunningTotals(v) | Setting::PeInputRegs(v) => v.into(),
            Setting::Pack(v) => serde_json::to_value(v).expect("serialises"),
            Setting::DspPairs(v) => v.into(),
            Setting::MemoryStyle(v) => serde_json::to_value(v).expect("serialises"),
        }
    }
}

/// The candidate settings of a target, in the order they are tried.
///
/// - iCE40: a shared output unit, no input registers and running totals (the logic cells that held
///   only a flip-flop: W1A1 0.111x to 0.096x and W2A2 0.385x to 0.348x the plain array's LUT4 per
///   MAC on the UP5K). `tree_levels_per_stage` stays 2: 3 or 4 cost logic cells, and 1 (the
///   per-column designs that reached 1.5x the plain array's fmax) made the W2A2 4x4x16 array with
///   these options unplaceable on the UP5K (more flip-flops than its cells hold beside the LUTs).
///   On the UP5K, W8A8 lanes paired in the SB_MAC16's dual 8x8 mode when every PE gets a block
///   ([`pairs_fit`]; 2x4x2: 16 MACs per cycle in 2643 LC against 5090 in LUTs).
/// - ECP5: running totals and a copy of the inputs in every PE (the W4A4 8x8x8 array: 112.5 instead
///   of 104.1 MHz), and W4A4 lanes packed two per MULT18X18D when every multiply fits the device's
///   DSP blocks (4x4x8: 27.4 LUT4 per MAC at 110.9 MHz against 74.5 in LUTs; [`packing_fits`]),
///   and the small memories in LUT RAM (a block RAM read was the critical path of the W2A2 4x4x16
///   array: 160.9 instead of 138.5 MHz, 2 % more `TRELLIS_COMB`).
fn candidates(target: Target) -> &'static [Setting] {
    match target.family() {
        Family::Ice40 => &[
            Setting::OutputUnits(OutputUnitsName::Shared),
            Setting::InputRegisters(false),
            Setting::RunningTotals(true),
            Setting::DspPairs(0),
        ],
        Family::Ecp5 => &[
            Setting::RunningTotals(true),
            Setting::PeInputRegs(true),
            Setting::Pack(PackName::Auto),
            Setting::MemoryStyle(MemoryStyleName::Distributed),
        ],
    }
}

/// Precisions whose DSP packing was measured better than the LUT array on a target (weight, act).
const PACK_MEASURED: [(u32, u32); 1] = [(4, 4)];

/// Precisions whose paired 8 x 8 products were measured better than the LUT array (weight, act).
const PAIRS_MEASURED: [(u32, u32); 1] = [(8, 8)];

/// The lane pairs per PE that `cfg`'s shape gives each of `target`'s dual 8x8 blocks: as many as the
/// lanes allow (`lanes / 2`) while every PE's pairs fit the device's SB_MAC16 (`rows * cols * n`
/// blocks); `None` when not one pair per PE fits, on devices without them, or for precisions whose
/// pairing was not measured better ([`PAIRS_MEASURED`]).
pub fn pairs_fit(cfg: &Config, target: Target) -> Option<u32> {
    if target.family() != Family::Ice40 || !target.has_dsp() || !PAIRS_MEASURED.contains(&(cfg.weight_bits, cfg.act_bits)) {
        return None;
    }
    let pes = u64::from(cfg.rows) * u64::from(cfg.cols);
    let n = u64::from(cfg.lanes / 2).min(target.dsp_blocks() / pes.max(1));
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// Whether `cfg` packs lanes into multiplies whose count, with the output stage's, fits `target`'s
/// DSP blocks: the PEs' `rows * cols * pe_multipliers`, and two blocks per requantization
/// multiplier (one shared unit, or one per column).
pub fn packing_fits(cfg: &Config, target: Target) -> bool {
    if cfg.packing().is_none_or(|p| p.terms < 2) {
        return false;
    }
    let pe = u64::from(cfg.rows) * u64::from(cfg.cols) * u64::from(cfg.pe_multipliers());
    let units = if cfg.uses_thresholds() || cfg.out_mode != crate::config::OutModeName::Pact {
        0
    } else if cfg.output_units == OutputUnitsName::Shared {
        1
    } else {
        u64::from(cfg.cols)
    };
    pe + 2 * units <= target.dsp_blocks()
}

/// The DSP policy the flow uses for a design generated for `target`: `on` when its lanes are packed
/// (each packed multiply is meant for one DSP block), otherwise `auto` on the iCE40 UP5K (its wide
/// requantization multiplier takes an SB_MAC16, low-bit products are too small for one) and `off`
/// elsewhere (on ECP5 Yosys maps even a 2 x 2 product to a MULT18X18D, which measured slower than
/// LUTs; the HX8K has no DSP blocks).
pub fn dsp_policy(cfg: &Config, target: Target) -> DspPolicy {
    if !target.has_dsp() {
        DspPolicy::Off
    } else if cfg.packing().is_some() {
        DspPolicy::On
    } else if target.family() == Family::Ice40 {
        DspPolicy::Auto
    } else {
        DspPolicy::Off
    }
}

/// What a target's defaults did to one configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The target.
    pub target: Target,
    /// The DSP policy for synthesis ([`dsp_policy`] of the final configuration).
    pub dsp: DspPolicy,
    /// The settings applied, in order: only fields the user did not set, and only those that keep
    /// the configuration valid with the user's choices (a default that conflicts with one, such as
    /// no input registers with bit-serial activations, is left out).
    pub set: Vec<Setting>,
}

impl Applied {
    /// The record written to `manifest.json`.
    pub fn record(&self) -> TargetRecord {
        TargetRecord {
            name: self.target,
            dsp: self.dsp,
            defaults: self.set.iter().map(|s| (s.field().to_string(), s.value())).collect(),
        }
    }
}

/// Applies `target`'s defaults to `raw` for every field not in `explicit` (names as in configuration
/// files: the keys present in the `--config` file and the fields the flags set). The user's settings
/// must already be in `raw`. Returns the validated configuration and what was applied; an invalid
/// user configuration is reported as it would be without a target.
pub fn apply(target: Target, mut raw: RawConfig, explicit: &BTreeSet<String>) -> Result<(Config, Applied), crate::config::ConfigError> {
    let mut set = Vec::new();
    for &s in candidates(target) {
        if explicit.contains(s.field()) {
            continue;
        }
        let s = match s {
            Setting::DspPairs(_) => match Config::new(raw.clone()).ok().and_then(|c| pairs_fit(&c, target)) {
                Some(n) => Setting::DspPairs(n),
                None => continue,
            },
            s => s,
        };
        let mut trial = raw.clone();
        s.apply(&mut trial);
        let Ok(cfg) = Config::new(trial.clone()) else { continue };
        if let Setting::Pack(_) = s {
            let measured = PACK_MEASURED.contains(&(cfg.weight_bits, cfg.act_bits));
            if !measured || !packing_fits(&cfg, target) {
                continue;
            }
        }
        raw = trial;
        set.push(s);
    }
    let cfg = Config::new(raw)?;
    let dsp = dsp_policy(&cfg, target);
    Ok((cfg, Applied { target, dsp, set }))
}

/// The `target` entry of `manifest.json`: the target a build directory was generated for, the DSP
/// policy `qmac synth` uses for it when given none, and the fields (with their values) that the
/// target's defaults set. Read back strictly ([`TargetRecord::check`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRecord {
    /// The target's name.
    pub name: Target,
    /// The DSP policy for synthesis.
    pub dsp: DspPolicy,
    /// Each field the target's defaults set, with its value (as in `config`).
    pub defaults: BTreeMap<String, serde_json::Value>,
}

impl TargetRecord {
    /// Checks the record against the manifest's `config`: every field is one a target default can
    /// set, and its value is the configuration's.
    pub fn check(&self, config: &serde_json::Value) -> Result<(), String> {
        for (k, v) in &self.defaults {
            if !FIELDS.contains(&k.as_str()) {
                return Err(format!(
                    "target.defaults names `{}`, which no target default sets; allowed: {}",
                    crate::limits::capped(k),
                    FIELDS.join(", ")
                ));
            }
            let actual = config.get(k.as_str()).cloned().unwrap_or_else(|| default_value(k));
            if &actual != v {
                return Err(format!(
                    "target.defaults.{k} = {} differs from the configuration's {actual}",
                    crate::limits::capped(&v.to_string())
                ));
            }
        }
        Ok(())
    }
}

/// The built-in default of `field` as the manifest writes it (fields left out when at their default,
/// such as `pack = "off"`).
fn default_value(field: &str) -> serde_json::Value {
    if field == "pack" {
        return serde_json::to_value(PackName::Off).expect("serialises");
    }
    if field == "dsp_pairs" {
        return 0.into();
    }
    if field == "memory_style" {
        return serde_json::to_value(MemoryStyleName::Block).expect("serialises");
    }
    let raw = serde_json::to_value(RawConfig::default()).expect("serialises");
    raw.get(field).cloned().unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(a: &Applied) -> Vec<&'static str> {
        a.set.iter().map(|s| s.field()).collect()
    }

    #[test]
    fn every_candidate_field_is_listed() {
        for t in Target::ALL {
            for s in candidates(t) {
                assert!(FIELDS.contains(&s.field()), "{s:?}");
            }
        }
    }

    #[test]
    fn ecp5_packs_w4a4_only_when_the_multiplies_fit() {
        let raw = RawConfig { rows: 4, cols: 4, lanes: 8, ..RawConfig::default() };
        let (cfg, a) = apply(Target::Ecp5_85k, raw.clone(), &BTreeSet::new()).unwrap();
        assert_eq!(names(&a), ["running_totals", "pe_input_regs", "pack", "memory_style"]);
        assert_eq!((cfg.pack, a.dsp), (PackName::Auto, DspPolicy::On));
        // 4x4 PEs x 4 multiplies + 2 for the shared unit = 66 of 156; on the 25F (28) it does not fit
        let (cfg, a) = apply(Target::Ecp5_25k, raw, &BTreeSet::new()).unwrap();
        assert_eq!((cfg.pack, a.dsp), (PackName::Off, DspPolicy::Off));
        // the 8x8x8 default needs 256 + 2
        let (_, a) = apply(Target::Ecp5_85k, RawConfig::default(), &BTreeSet::new()).unwrap();
        assert_eq!(names(&a), ["running_totals", "pe_input_regs", "memory_style"]);
    }

    #[test]
    fn up5k_pairs_w8a8_lanes_when_every_pe_gets_a_block() {
        let w8 = |rows, cols, lanes| RawConfig { rows, cols, lanes, weight_bits: 8, act_bits: 8, max_depth: 256, ..RawConfig::default() };
        let (cfg, a) = apply(Target::Ice40Up5k, w8(2, 4, 3), &BTreeSet::new()).unwrap();
        assert_eq!(names(&a), ["output_units", "input_registers", "running_totals", "dsp_pairs"]);
        assert_eq!((cfg.dsp_pairs, a.dsp), (1, DspPolicy::Auto));
        // 2 PEs of 4 lanes: both pairs of each PE fit the 8 blocks
        let (cfg, _) = apply(Target::Ice40Up5k, w8(1, 2, 4), &BTreeSet::new()).unwrap();
        assert_eq!(cfg.dsp_pairs, 2);
        // one lane per PE; 16 PEs for 8 blocks; no blocks on the HX8K; the user's own choice
        for (t, raw) in [(Target::Ice40Up5k, w8(2, 4, 1)), (Target::Ice40Up5k, w8(4, 4, 2)), (Target::Ice40Hx8k, w8(2, 4, 2))] {
            let (cfg, a) = apply(t, raw, &BTreeSet::new()).unwrap();
            assert_eq!(cfg.dsp_pairs, 0, "{t:?}");
            assert!(!names(&a).contains(&"dsp_pairs"));
        }
        let (cfg, _) = apply(Target::Ice40Up5k, w8(2, 4, 2), &BTreeSet::from(["dsp_pairs".to_string()])).unwrap();
        assert_eq!(cfg.dsp_pairs, 0);
        // W4A4 pairing was not measured better
        let raw = RawConfig { rows: 2, cols: 4, lanes: 2, ..RawConfig::default() };
        assert_eq!(apply(Target::Ice40Up5k, raw, &BTreeSet::new()).unwrap().0.dsp_pairs, 0);
    }
}
