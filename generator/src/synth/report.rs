//! Quality-of-results: parsing nextpnr's `--report` JSON and Yosys' `stat -json`, and the run report.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::targets::{Family, Target};

/// One `utilization` entry of nextpnr's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedAvailable {
    /// Cells of this type used by the design.
    pub used: u64,
    /// Cells of this type on the device.
    pub available: u64,
}

/// One `fmax` entry of nextpnr's report.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockFmax {
    /// Achieved maximum frequency, MHz.
    pub achieved: f64,
    /// Requested frequency, MHz.
    pub constraint: f64,
}

/// The parts of nextpnr's `--report` JSON the flow uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextpnrReport {
    /// Bel type -> used/available.
    pub utilization: BTreeMap<String, UsedAvailable>,
    /// Clock net -> achieved/requested (absent for a design without clocked logic).
    #[serde(default)]
    pub fmax: BTreeMap<String, ClockFmax>,
}

impl NextpnrReport {
    /// Parses the report text.
    pub fn parse(text: &str) -> Result<NextpnrReport, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// used/available of a bel type (0/0 when the device has none).
    pub fn get(&self, bel: &str) -> UsedAvailable {
        self.utilization.get(bel).copied().unwrap_or(UsedAvailable { used: 0, available: 0 })
    }

    /// The slowest clock: (net, fmax). `None` without clocks.
    pub fn worst_clock(&self) -> Option<(&str, ClockFmax)> {
        self.fmax.iter().min_by(|a, b| a.1.achieved.total_cmp(&b.1.achieved)).map(|(k, v)| (k.as_str(), *v))
    }
}

#[derive(Deserialize)]
struct StatModule {
    #[serde(default)]
    num_cells_by_type: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct StatJson {
    modules: BTreeMap<String, StatModule>,
}

/// Cell counts from Yosys' `stat -json` after synthesis.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct YosysStat {
    /// Primitive cell type -> count over the whole design below the top (hierarchy expanded).
    pub total: BTreeMap<String, u64>,
    /// Primitive cells of the top module itself (the board wrapper when the array kept its hierarchy).
    pub top_only: BTreeMap<String, u64>,
}

impl YosysStat {
    /// Parses `stat -json` output and expands the hierarchy below `top`. Module names are compared
    /// without Yosys' leading backslash (modules are listed as `\name`, their cells as `name`).
    pub fn parse(text: &str, top: &str) -> Result<YosysStat, String> {
        let s: StatJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let norm = |n: &str| n.strip_prefix('\\').unwrap_or(n).to_string();
        let modules: BTreeMap<String, &StatModule> = s.modules.iter().map(|(k, v)| (norm(k), v)).collect();
        let top_mod = *modules.get(top).ok_or_else(|| format!("module `{top}` not in the statistics"))?;
        fn expand(
            modules: &BTreeMap<String, &StatModule>,
            m: &StatModule,
            mult: u64,
            depth: usize,
            out: &mut BTreeMap<String, u64>,
        ) -> Result<(), String> {
            if depth > 64 {
                return Err("hierarchy too deep".into());
            }
            for (ty, n) in &m.num_cells_by_type {
                let ty = ty.strip_prefix('\\').unwrap_or(ty);
                match modules.get(ty) {
                    Some(sub) => expand(modules, sub, mult * n, depth + 1, out)?,
                    None => *out.entry(ty.to_string()).or_insert(0) += mult * n,
                }
            }
            Ok(())
        }
        let mut total = BTreeMap::new();
        expand(&modules, top_mod, 1, 0, &mut total)?;
        let top_only = top_mod
            .num_cells_by_type
            .iter()
            .filter(|(ty, _)| !modules.contains_key(ty.strip_prefix('\\').unwrap_or(ty)))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        Ok(YosysStat { total, top_only })
    }

    fn sum(map: &BTreeMap<String, u64>, pred: impl Fn(&str) -> bool) -> u64 {
        map.iter().filter(|(k, _)| pred(k)).map(|(_, v)| v).sum()
    }

    /// LUT4 cells (SB_LUT4 / LUT4) in the whole design.
    pub fn luts(&self) -> u64 {
        Self::sum(&self.total, |k| k == "SB_LUT4" || k == "LUT4")
    }

    /// LUT4 cells of the wrapper (top module) alone.
    pub fn wrapper_luts(&self) -> u64 {
        Self::sum(&self.top_only, |k| k == "SB_LUT4" || k == "LUT4")
    }

    /// Flip-flops (SB_DFF* / TRELLIS_FF).
    pub fn flip_flops(&self) -> u64 {
        Self::sum(&self.total, |k| k.starts_with("SB_DFF") || k == "TRELLIS_FF")
    }

    /// DSP multipliers (SB_MAC16 / MULT18X18D).
    pub fn dsps(&self) -> u64 {
        Self::sum(&self.total, |k| k == "SB_MAC16" || k == "MULT18X18D")
    }

    /// Carry cells (SB_CARRY: one bit each; CCU2C: two bits each).
    pub fn carries(&self) -> u64 {
        Self::sum(&self.total, |k| k == "SB_CARRY" || k == "CCU2C")
    }
}

/// used / available / percent of one resource.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Used.
    pub used: u64,
    /// On the device.
    pub available: u64,
    /// 100 * used / available, rounded to 0.01 (0 when the device has none).
    pub percent: f64,
}

impl Usage {
    /// Builds the entry and rounds the percentage.
    pub fn new(used: u64, available: u64) -> Usage {
        let percent = if available == 0 { 0.0 } else { round2(100.0 * used as f64 / available as f64) };
        Usage { used, available, percent }
    }
}

/// Rounds to two decimals (keeps the JSON short and stable).
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Rounds to three decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Device resources after place and route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// The nextpnr bel type counted as LUT4: `ICESTORM_LC` (a LUT4 + FF + carry logic cell) or
    /// `TRELLIS_COMB` (a LUT4 or one half of a CCU2C carry cell).
    pub lut4_kind: String,
    /// LUT4 / logic cells (from nextpnr).
    pub lut4: Usage,
    /// Carry cells from Yosys (`SB_CARRY`, one bit each; `CCU2C`, two bits each).
    pub carry_cells: u64,
    /// Flip-flops (iCE40: Yosys SB_DFF* count against the logic cells; ECP5: nextpnr TRELLIS_FF).
    pub flip_flops: Usage,
    /// DSP blocks (SB_MAC16 = ICESTORM_DSP, or MULT18X18D).
    pub dsp: Usage,
    /// Block RAM (ICESTORM_RAM or DP16KD).
    pub bram: Usage,
    /// I/O cells (SB_IO or TRELLIS_IO).
    pub io: Usage,
}

impl Resources {
    /// Derives the resources from nextpnr's report and the Yosys statistics.
    pub fn from_reports(family: Family, pnr: &NextpnrReport, stat: &YosysStat) -> Resources {
        match family {
            Family::Ice40 => {
                let lc = pnr.get("ICESTORM_LC");
                let dsp = pnr.get("ICESTORM_DSP");
                let ram = pnr.get("ICESTORM_RAM");
                let io = pnr.get("SB_IO");
                Resources {
                    lut4_kind: "ICESTORM_LC".into(),
                    lut4: Usage::new(lc.used, lc.available),
                    carry_cells: stat.carries(),
                    flip_flops: Usage::new(stat.flip_flops(), lc.available),
                    dsp: Usage::new(dsp.used, dsp.available),
                    bram: Usage::new(ram.used, ram.available),
                    io: Usage::new(io.used, io.available),
                }
            }
            Family::Ecp5 => {
                let comb = pnr.get("TRELLIS_COMB");
                let ff = pnr.get("TRELLIS_FF");
                let dsp = pnr.get("MULT18X18D");
                let ram = pnr.get("DP16KD");
                let io = pnr.get("TRELLIS_IO");
                Resources {
                    lut4_kind: "TRELLIS_COMB".into(),
                    lut4: Usage::new(comb.used, comb.available),
                    carry_cells: stat.carries(),
                    flip_flops: Usage::new(ff.used, ff.available),
                    dsp: Usage::new(dsp.used, dsp.available),
                    bram: Usage::new(ram.used, ram.available),
                    io: Usage::new(io.used, io.available),
                }
            }
        }
    }
}

/// Pre-place-and-route LUT4 counts from Yosys, split into wrapper and array (the split is only
/// meaningful when the array kept its hierarchy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthLuts {
    /// All LUT4 cells after synthesis.
    pub total: u64,
    /// LUT4 cells of the board wrapper.
    pub wrapper: u64,
    /// LUT4 cells of the array (total - wrapper).
    pub array: u64,
}

/// Tool versions, as the tools print them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolVersions {
    /// `yosys -V`.
    pub yosys: String,
    /// `nextpnr-* --version`.
    pub nextpnr: String,
}

/// How this report compares to the baseline of the same shape, precision and target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline's design name.
    pub baseline_design: String,
    /// Baseline LUT4 per MAC.
    pub baseline_luts_per_mac: f64,
    /// Baseline fmax, MHz.
    pub baseline_fmax_mhz: f64,
    /// Baseline GOPS.
    pub baseline_gops: f64,
    /// ours / baseline LUT4 per MAC (below 1 is better).
    pub luts_per_mac_ratio: f64,
    /// ours / baseline fmax (above 1 is better).
    pub fmax_ratio: f64,
    /// ours / baseline GOPS.
    pub gops_ratio: f64,
}

/// Wall time of one flow step (kept out of `qor.json` so it stays deterministic).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    /// Step name (`yosys`, `nextpnr`, `icepack`, `ecppack`).
    pub step: String,
    /// Seconds.
    pub seconds: f64,
}

/// One place-and-route run of several (`--seeds`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    /// nextpnr's seed.
    pub seed: u64,
    /// Its fmax of the slowest clock, MHz.
    pub fmax_mhz: f64,
}

/// The result of one synthesis run (`qor.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthReport {
    /// The synthesised module (the manifest's top).
    pub design: String,
    /// `qmac` for a generated array, `baseline` for the handwritten plain array.
    pub kind: String,
    /// The configuration from the manifest (verbatim).
    pub config: serde_json::Value,
    /// Target name.
    pub target: Target,
    /// Device with package.
    pub device: String,
    /// Board whose pins were used.
    pub board: String,
    /// The DSP policy asked for.
    pub dsp_policy: super::DspPolicy,
    /// Whether the netlist was synthesised with DSP blocks allowed (for `auto`: what was kept).
    pub dsp_enabled: bool,
    /// Whether the array kept its hierarchy (not flattened into the wrapper).
    pub keep_hierarchy: bool,
    /// Whether ABC9 mapped to the requested clock period as its delay target.
    #[serde(default)]
    pub abc9_clock: bool,
    /// nextpnr seed of the kept placement (with several seeds: the run with the highest fmax).
    pub seed: u64,
    /// With several seeds (`--seeds`): every run's seed and fmax, in seed order. Empty for one run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seed_runs: Vec<SeedRun>,
    /// With several seeds: the seeds whose router stalled and were replaced by the next unused seed
    /// (`seed_runs` has the replacements). Empty when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stalled_seeds: Vec<u64>,
    /// Requested clock, MHz.
    pub requested_mhz: f64,
    /// Achieved fmax of the slowest clock, MHz (nextpnr's final timing analysis). With several
    /// seeds: the median run's (for an even count, the lower middle run's).
    pub fmax_mhz: f64,
    /// The kept placement's fmax >= requested.
    pub timing_met: bool,
    /// Resources after place and route.
    pub resources: Resources,
    /// Yosys LUT4 counts (wrapper vs array).
    pub synth_luts: SynthLuts,
    /// MACs per cycle (manifest `derived.macs_per_cycle`).
    pub macs_per_cycle: f64,
    /// 2 * MACs per cycle * fmax / 1000.
    pub gops: f64,
    /// LUT4 (as in `resources.lut4`, wrapper included) per MAC per cycle.
    pub luts_per_mac: f64,
    /// Tool versions.
    pub tools: ToolVersions,
    /// Files written, relative to the build directory.
    pub files: BTreeMap<String, String>,
    /// The baseline run, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Box<SynthReport>>,
    /// Comparison with the baseline, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<Comparison>,
    /// Why the baseline has no result although it was requested: the plain array does not fit the
    /// device (which resource, how much of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_does_not_fit: Option<String>,
    /// Step wall times: shown by `Display`, written to `timing.json`, never to `qor.json`.
    #[serde(skip)]
    pub step_times: Vec<StepTime>,
}

impl SynthReport {
    /// Fills `vs_baseline` from `baseline` and stores the baseline.
    pub fn attach_baseline(&mut self, baseline: SynthReport) {
        let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
        self.vs_baseline = Some(Comparison {
            baseline_design: baseline.design.clone(),
            baseline_luts_per_mac: baseline.luts_per_mac,
            baseline_fmax_mhz: baseline.fmax_mhz,
            baseline_gops: baseline.gops,
            luts_per_mac_ratio: ratio(self.luts_per_mac, baseline.luts_per_mac),
            fmax_ratio: ratio(self.fmax_mhz, baseline.fmax_mhz),
            gops_ratio: ratio(self.gops, baseline.gops),
        });
        self.baseline = Some(Box::new(baseline));
    }

    /// Takes the outcome of the baseline's run: its report is attached; a baseline that does not fit
    /// the device is recorded as such and this report is kept; any other failure is the caller's.
    pub fn attach_baseline_outcome(&mut self, outcome: Result<SynthReport, super::SynthError>) -> Result<(), super::SynthError> {
        match outcome {
            Ok(b) => self.attach_baseline(b),
            Err(super::SynthError::DoesNotFit { device, resource, used, available, percent, .. }) => {
                self.baseline_does_not_fit = Some(format!("does not fit {device}: needs {used} {resource} of {available} ({percent}%)"));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The report as pretty JSON (deterministic: no times, no absolute paths).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises") + "\n"
    }

    /// The human table without the step times (for `qor.txt`).
    pub fn to_text_without_times(&self) -> String {
        let mut c = self.clone();
        c.step_times.clear();
        if let Some(b) = c.baseline.as_mut() {
            b.step_times.clear();
        }
        c.to_string()
    }
}

fn usage_row(f: &mut fmt::Formatter<'_>, name: &str, u: &Usage) -> fmt::Result {
    if u.available > 0 {
        writeln!(f, "  {name:<22} {:>7} / {:<7} {:>6.2} %", u.used, u.available, u.percent)
    } else {
        writeln!(f, "  {name:<22} {:>7}", u.used)
    }
}

impl fmt::Display for SynthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.resources;
        writeln!(
            f,
            "{} ({}) on {} ({}, {} pins), seed {}, DSP {} ({}), {}{}",
            self.design,
            self.kind,
            self.target,
            self.device,
            self.board,
            self.seed,
            self.dsp_policy.name(),
            match (self.dsp_enabled, r.dsp.used) {
                (true, _) => "allowed",
                // the paired 8 x 8 units are mapped onto DSP blocks even when none is inferred
                (false, 0) => "not used",
                (false, _) => "not inferred; paired units in DSPs",
            },
            if self.keep_hierarchy { "hierarchy kept" } else { "flattened" },
            if self.abc9_clock { ", ABC9 delay target = clock period" } else { "" },
        )?;
        usage_row(f, &format!("LUT4 ({})", r.lut4_kind), &r.lut4)?;
        writeln!(f, "  {:<22} {:>7}", "carry cells", r.carry_cells)?;
        usage_row(f, "flip-flops", &r.flip_flops)?;
        usage_row(f, "DSP", &r.dsp)?;
        usage_row(f, "block RAM", &r.bram)?;
        usage_row(f, "I/O", &r.io)?;
        writeln!(
            f,
            "  {:<22} {:>7} (wrapper {}, array {})",
            "Yosys LUT4", self.synth_luts.total, self.synth_luts.wrapper, self.synth_luts.array
        )?;
        let met = if self.timing_met { "met" } else { "NOT met" };
        if self.seed_runs.is_empty() {
            writeln!(f, "  {:<22} {:>7.2} MHz (requested {:.2} MHz, {met})", "fmax", self.fmax_mhz, self.requested_mhz)?;
        } else {
            let all: Vec<String> = self.seed_runs.iter().map(|s| format!("{}: {:.2}", s.seed, s.fmax_mhz)).collect();
            let kept = self.seed_runs.iter().find(|s| s.seed == self.seed).map_or(0.0, |s| s.fmax_mhz);
            writeln!(f, "  {:<22} {:>7.2} MHz (median of {} seeds; requested {:.2} MHz)", "fmax", self.fmax_mhz, self.seed_runs.len(), self.requested_mhz)?;
            writeln!(f, "  {:<22} {} MHz; kept seed {} ({kept:.2} MHz, {met})", "fmax per seed", all.join(", "), self.seed)?;
            if !self.stalled_seeds.is_empty() {
                let s: Vec<String> = self.stalled_seeds.iter().map(u64::to_string).collect();
                writeln!(f, "  {:<22} {} (nextpnr's router stalled; replaced by the next unused seeds)", "seeds stopped", s.join(", "))?;
            }
        }
        writeln!(f, "  {:<22} {:>7}", "MACs per cycle", self.macs_per_cycle)?;
        writeln!(f, "  {:<22} {:>7.2}", "GOPS (2*MAC*fmax)", self.gops)?;
        writeln!(f, "  {:<22} {:>7.2}", "LUT4 per MAC", self.luts_per_mac)?;
        if let Some(c) = &self.vs_baseline {
            writeln!(
                f,
                "  vs baseline {}: LUT4/MAC {:.2} -> {:.2} ({:.3}x), fmax {:.2} -> {:.2} MHz ({:.3}x), GOPS {:.2} -> {:.2} ({:.3}x)",
                c.baseline_design,
                c.baseline_luts_per_mac,
                self.luts_per_mac,
                c.luts_per_mac_ratio,
                c.baseline_fmax_mhz,
                self.fmax_mhz,
                c.fmax_ratio,
                c.baseline_gops,
                self.gops,
                c.gops_ratio
            )?;
        }
        if let Some(why) = &self.baseline_does_not_fit {
            writeln!(f, "  vs baseline: the plain array of this shape and precision {why}; no comparison")?;
        }
        writeln!(f, "  tools: {}; {}", self.tools.yosys, self.tools.nextpnr)?;
        if !self.step_times.is_empty() {
            let steps: Vec<String> = self.step_times.iter().map(|s| format!("{} {:.1} s", s.step, s.seconds)).collect();
            writeln!(f, "  steps: {}", steps.join(", "))?;
        }
        if let Some(b) = &self.baseline {
            writeln!(f, "baseline:")?;
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_expands_hierarchy() {
        let text = r#"{"modules": {
            "$paramod\\sub\\N=4": {"num_cells_by_type": {"SB_LUT4": 4, "SB_DFF": 2}},
            "\\top": {"num_cells_by_type": {"$paramod\\sub\\N=4": 2, "SB_LUT4": 1, "SB_DFFE": 3, "leaf": 1}},
            "\\leaf": {"num_cells_by_type": {"SB_LUT4": 10}}
        }}"#;
        let s = YosysStat::parse(text, "top").unwrap();
        assert_eq!(s.luts(), 19);
        assert_eq!(s.wrapper_luts(), 1);
        assert_eq!(s.flip_flops(), 7);
        assert!(YosysStat::parse(text, "nope").is_err());
    }

    #[test]
    fn usage_percent() {
        assert_eq!(Usage::new(1, 3).percent, 33.33);
        assert_eq!(Usage::new(5, 0).percent, 0.0);
    }
}
