//! Command-line front ends of `qmac synth` and `qmac sweep` (clap argument structs and entry points).
//!
//! The binary wires them as subcommands:
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Synthesise, place and route a build directory and report LUTs, fmax and GOPS.
//!     Synth(qmac::synth::cli::SynthArgs),
//!     /// Generate and synthesise a grid of precisions on one or more targets.
//!     Sweep(qmac::synth::cli::SweepArgs),
//! }
//! // ...
//! Command::Synth(a) => qmac::synth::cli::run_synth(&a),
//! Command::Sweep(a) => qmac::synth::cli::run_sweep(&a, &a.points(), None, |p, dir| {
//!     let raw = RawConfig { rows: p.rows, cols: p.cols, lanes: p.lanes, weight_bits: p.weight_bits,
//!                           act_bits: p.act_bits, ..RawConfig::default() };
//!     let cfg = Config::new(raw).map_err(|e| e.to_string())?;
//!     qmac::emit::write(&cfg, dir).map(|_| ()).map_err(|e| e.to_string())
//! }),
//! ```

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use clap::Args;

use super::sweep::{sweep, SweepMode, SweepOptions, SweepPoint};
use super::target_defaults::TargetRecord;
use super::targets::Target;
use super::{synth, DspPolicy, SynthOptions};

/// Largest bit width accepted by `--weight-bits` / `--act-bits`: the configuration's.
pub const MAX_BITS: u32 = *crate::config::BITS_RANGE.end();

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse::<Target>().map_err(|e| e.to_string())
}

fn parse_dsp(s: &str) -> Result<DspPolicy, String> {
    s.parse()
}

fn parse_freq(s: &str) -> Result<f64, String> {
    let f: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number of MHz (e.g. 48 or 37.5)"))?;
    if !(f.is_finite() && f > 0.0 && f <= 1000.0) {
        return Err(format!("{s} MHz is out of range; allowed: above 0 up to 1000"));
    }
    Ok(f)
}

fn parse_seeds(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(v) if (1..=32).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number of seeds; use a whole number from 1 to 32")),
    }
}

/// Rows, columns and lanes: the configuration's range ([`crate::config::DIM_RANGE`]).
fn parse_dim(s: &str) -> Result<u32, String> {
    let r = crate::config::DIM_RANGE;
    match s.trim().parse::<u32>() {
        Ok(v) if r.contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not allowed; use a whole number from {} to {}", r.start(), r.end())),
    }
}

/// A set of bit widths: a number (`4`), an inclusive range (`1..8`) or a comma list of both (`1,2,4..6`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitsList(pub Vec<u32>);

impl FromStr for BitsList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let allowed = format!(
            "allowed: a bit width 1..={MAX_BITS} (`4`), an inclusive range (`1..8`) or a comma list (`1,2,4` or `1..3,8`)"
        );
        let num = |t: &str| -> Result<u32, String> {
            let v: u32 = t.trim().parse().map_err(|_| format!("`{t}` is not a number; {allowed}"))?;
            if !crate::config::BITS_RANGE.contains(&v) {
                return Err(format!("{v} bits is out of range; {allowed}"));
            }
            Ok(v)
        };
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Err(format!("empty list; {allowed}"));
        }
        for part in s.split(',') {
            let part = part.trim();
            if let Some((a, b)) = part.split_once("..") {
                let b = b.strip_prefix('=').unwrap_or(b);
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("`{part}` is an empty range (write the smaller bound first); {allowed}"));
                }
                out.extend(a..=b);
            } else {
                out.push(num(part)?);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(BitsList(out))
    }
}

fn parse_bits(s: &str) -> Result<BitsList, String> {
    s.parse()
}

/// One or more targets, comma separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetList(pub Vec<Target>);

fn parse_targets(s: &str) -> Result<TargetList, String> {
    let mut v = Vec::new();
    for t in s.split(',') {
        let t = parse_target(t)?;
        if !v.contains(&t) {
            v.push(t);
        }
    }
    Ok(TargetList(v))
}

/// `qmac synth`: synthesise, place and route a generated build directory.
///
/// Runs Yosys, nextpnr and the bitstream packer (YoWASP builds from the project's .venv, see
/// `make tools`) on BUILD_DIR inside a small serial board wrapper, and reports LUT4, flip-flops,
/// carry cells, DSPs, block RAM, fmax, GOPS and LUT4 per MAC. Logs and reports are written to
/// BUILD_DIR/synth/<target>/ (qor.json, qor.txt, yosys.log, nextpnr.log, report.json).
#[derive(Args, Clone, Debug)]
pub struct SynthArgs {
    /// Build directory written by `qmac generate` (with filelist.f and manifest.json).
    pub build_dir: PathBuf,

    /// FPGA target: ice40-up5k (iCEBreaker), ice40-hx8k (HX8K breakout), ecp5-25k (ULX3S-25F) or
    /// ecp5-85k (ULX3S-85F). Default: the target recorded in BUILD_DIR/manifest.json by
    /// `qmac generate --target` (an error if there is none).
    #[arg(long, short = 't', value_parser = parse_target)]
    pub target: Option<Target>,

    /// Requested clock frequency in MHz for timing-driven place and route
    /// [default: 50 on iCE40, 100 on ECP5].
    #[arg(long, value_parser = parse_freq)]
    pub freq: Option<f64>,

    /// nextpnr placement seed (results are deterministic for a given seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Place and route N times, with seeds SEED, SEED+1, ...: the reported fmax is the median run's
    /// (for an even N the lower middle one), and the placement, logs and bitstream of the run with
    /// the highest fmax are kept. The seed alone moves nextpnr's fmax by about 10 %, so compare
    /// designs by the median of several seeds (docs/synthesis.md). A seed whose router stops making
    /// progress (2 minutes with the same arcs left to route) is stopped and replaced by the next
    /// unused seed; qor.json lists it under stalled_seeds.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_seeds)]
    pub seeds: u32,

    /// Also synthesise the handwritten plain array of the same shape and precision
    /// (hdl/verilog/baseline_plain_array.v) and report our LUT4/MAC and fmax relative to it.
    #[arg(long)]
    pub baseline: bool,

    /// Stop after place and route (no icepack/ecppack bitstream).
    #[arg(long)]
    pub no_bitstream: bool,

    /// DSP blocks for multipliers: off (all arithmetic in LUTs), on (SB_MAC16 / MULT18X18D wherever
    /// Yosys maps them) or auto (on, unless that needs more DSP blocks than the device has). `--dsp`
    /// alone means on; otherwise `--dsp=auto`. Default: the policy manifest.json records for the
    /// target (`qmac generate --target`), else off.
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_parser = parse_dsp, conflicts_with = "no_dsp")]
    pub dsp: Option<DspPolicy>,

    /// Same as `--dsp=off`.
    #[arg(long)]
    pub no_dsp: bool,

    /// Let Yosys flatten the array into the board wrapper (default: the array keeps its hierarchy).
    #[arg(long)]
    pub flatten: bool,

    /// Give Yosys's LUT mapper (ABC9) the requested clock period as its delay target. Without one it
    /// maps every path for the depth of the deepest, which costs LUTs where paths have slack. Measured
    /// on ECP5: 5 to 26 % fewer LUTs, mostly at a lower fmax; on iCE40 no saving (docs/synthesis.md).
    #[arg(long)]
    pub abc9_clock: bool,

    /// Print the report as JSON (the content of qor.json) instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl SynthArgs {
    /// The library options these arguments stand for, for a build directory whose manifest records
    /// `recorded` (`qmac generate --target`): the recorded target when `--target` is not given, and
    /// the recorded DSP policy when neither `--dsp` nor `--no-dsp` is given and the target is the
    /// recorded one. Explicit flags win.
    pub fn options(&self, recorded: Option<&TargetRecord>) -> Result<SynthOptions, String> {
        let target = match (self.target, recorded) {
            (Some(t), _) => t,
            (None, Some(r)) => r.name,
            (None, None) => {
                return Err(format!(
                    "no --target given, and {} records none (it was generated without --target); allowed: {}",
                    self.build_dir.join("manifest.json").display(),
                    Target::allowed_names()
                ))
            }
        };
        let dsp = match (self.no_dsp, self.dsp, recorded) {
            (true, _, _) => DspPolicy::Off,
            (false, Some(d), _) => d,
            (false, None, Some(r)) if r.name == target => r.dsp,
            (false, None, _) => DspPolicy::Off,
        };
        Ok(SynthOptions {
            target,
            freq_mhz: self.freq,
            seed: self.seed,
            seeds: self.seeds,
            progress: true,
            baseline: self.baseline,
            bitstream: !self.no_bitstream,
            dsp,
            keep_hierarchy: !self.flatten,
            abc9_clock: self.abc9_clock,
        })
    }
}

/// Entry point of `qmac synth`.
pub fn run_synth(args: &SynthArgs) -> anyhow::Result<()> {
    let what = || format!("qmac synth of {}", args.build_dir.display());
    let manifest = super::Manifest::read(&args.build_dir).with_context(what)?;
    let opts = args.options(manifest.target.as_ref()).map_err(anyhow::Error::msg).with_context(what)?;
    let report = synth(&args.build_dir, &opts).with_context(|| format!("{} for {}", what(), opts.target))?;
    if args.json {
        print!("{}", report.to_json());
    } else {
        print!("{report}");
        println!("  reports: {}", super::synth_dir(&args.build_dir, opts.target).join("qor.json").display());
    }
    Ok(())
}

/// `qmac sweep`: generate and synthesise a grid of precisions.
///
/// For every weight width x activation width (x target) a build directory is generated below
/// OUT/<target>/<rows>x<cols>-w<W>a<A>/ and synthesised; runs go in parallel. Writes OUT/sweep.json,
/// OUT/sweep.md (table) and OUT/sweep.svg (LUT4 per MAC and fmax against precision).
#[derive(Args, Clone, Debug)]
pub struct SweepArgs {
    /// A named set of points instead of --weight-bits, --rows, --cols, --lanes and --target:
    /// `headline`, the table of docs/synthesis.md (W1A1, W2A2, W4A4, W8A8 on ice40-up5k and
    /// ecp5-85k, each at a shape that fits the device with its target defaults; ECP5 W4A4 at 8 and
    /// 16 lanes).
    #[arg(long, value_enum, conflicts_with_all = ["weight_bits", "act_bits", "rows", "cols", "lanes", "target"])]
    pub preset: Option<Preset>,

    /// Generate every point as `qmac generate --target <its target>` would: the target's defaults
    /// (docs/synthesis.md, "Per-target defaults") for every field the sweep does not set, and the
    /// target's DSP policy unless --dsp is given.
    #[arg(long)]
    pub target_defaults: bool,

    /// Weight widths: a number (4), an inclusive range (1..8) or a comma list (1,2,4).
    #[arg(long, value_parser = parse_bits, required_unless_present = "preset")]
    pub weight_bits: Option<BitsList>,

    /// Activation widths, same syntax. Default: the diagonal, i.e. each weight width paired with the
    /// same activation width (w1a1, w2a2, ...); given, the full grid weight x activation is run.
    #[arg(long, value_parser = parse_bits)]
    pub act_bits: Option<BitsList>,

    /// Rows of the array.
    #[arg(long, value_parser = parse_dim, required_unless_present = "preset")]
    pub rows: Option<u32>,

    /// Columns of the array.
    #[arg(long, value_parser = parse_dim, required_unless_present = "preset")]
    pub cols: Option<u32>,

    /// Lanes (products summed per cell per cycle).
    #[arg(long, value_parser = parse_dim, default_value = "1")]
    pub lanes: u32,

    /// Target(s), comma separated: ice40-up5k, ice40-hx8k, ecp5-25k, ecp5-85k.
    #[arg(long, short = 't', value_parser = parse_targets, required_unless_present = "preset")]
    pub target: Option<TargetList>,

    /// Output directory.
    #[arg(long, short = 'o', default_value = "build/sweep")]
    pub out: PathBuf,

    /// Parallel runs [default: the number of cores].
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,

    /// Requested clock frequency in MHz [default: 50 on iCE40, 100 on ECP5].
    #[arg(long, value_parser = parse_freq)]
    pub freq: Option<f64>,

    /// nextpnr placement seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Place and route every point N times (seeds SEED, SEED+1, ...) and report the median run's
    /// fmax (see `qmac synth --help`).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_seeds)]
    pub seeds: u32,

    /// Also synthesise the handwritten baseline for every point.
    #[arg(long, conflicts_with = "baseline_only")]
    pub baseline: bool,

    /// Synthesise only the handwritten baseline (no generator needed).
    #[arg(long)]
    pub baseline_only: bool,

    /// DSP blocks for multipliers: off (default), on or auto (see `qmac synth --help`); `--dsp`
    /// alone means on; otherwise `--dsp=auto`.
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "on", value_parser = parse_dsp)]
    pub dsp: Option<DspPolicy>,

    /// Let Yosys flatten the array into the board wrapper.
    #[arg(long)]
    pub flatten: bool,

    /// Give ABC9 the requested clock period as its delay target (see `qmac synth --help`).
    #[arg(long)]
    pub abc9_clock: bool,

    /// Also pack bitstreams (default for sweeps: stop after place and route).
    #[arg(long)]
    pub bitstream: bool,
}

/// Named sets of sweep points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The headline table of docs/synthesis.md.
    Headline,
}

impl Preset {
    /// The points: (target, rows, cols, lanes, weight bits = activation bits).
    ///
    /// `headline`: on the UP5K the largest measured shapes that fit its 5280 logic cells; on the
    /// ECP5-85F 4x4 PEs, which place and route in a few minutes each, W4A4 twice, packed two lanes
    /// per MULT18X18D: at 8 lanes (66 blocks, the higher clock) and at 16 (130 blocks, the fewer
    /// LUT4 per MAC). The baseline of every point is the plain 8x8 array of its precision (64 MACs
    /// per cycle, run once per precision and target), the reference of docs/synthesis.md; the plain
    /// W4A4 and W8A8 arrays do not fit the UP5K.
    pub fn points(self) -> Vec<SweepPoint> {
        const HEADLINE: [(Target, u32, u32, u32, u32); 9] = [
            (Target::Ice40Up5k, 4, 8, 36, 1),
            (Target::Ice40Up5k, 4, 4, 16, 2),
            (Target::Ice40Up5k, 4, 4, 4, 4),
            (Target::Ice40Up5k, 2, 4, 3, 8),
            (Target::Ecp5_85k, 4, 4, 32, 1),
            (Target::Ecp5_85k, 4, 4, 16, 2),
            (Target::Ecp5_85k, 4, 4, 8, 4),
            (Target::Ecp5_85k, 4, 4, 16, 4),
            (Target::Ecp5_85k, 4, 4, 2, 8),
        ];
        match self {
            Preset::Headline => HEADLINE
                .iter()
                .map(|&(target, rows, cols, lanes, bits)| SweepPoint {
                    target,
                    rows,
                    cols,
                    lanes,
                    weight_bits: bits,
                    act_bits: bits,
                    dsp: None,
                    plain: Some([8, 8, 1]),
                })
                .collect(),
        }
    }
}

impl SweepArgs {
    /// The points of the sweep: the preset's, or in order target, weight bits, activation bits.
    pub fn points(&self) -> Vec<SweepPoint> {
        if let Some(p) = self.preset {
            return p.points();
        }
        let (Some(targets), Some(weights), Some(rows), Some(cols)) = (&self.target, &self.weight_bits, self.rows, self.cols) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for t in &targets.0 {
            for &w in &weights.0 {
                let acts: Vec<u32> = match &self.act_bits {
                    Some(a) => a.0.clone(),
                    None => vec![w],
                };
                for a in acts {
                    out.push(SweepPoint { target: *t, rows, cols, lanes: self.lanes, weight_bits: w, act_bits: a, dsp: None, plain: None });
                }
            }
        }
        out
    }

    /// The sweep options.
    pub fn options(&self) -> SweepOptions {
        let first = self.points().first().map_or(Target::Ice40Up5k, |p| p.target);
        let mut synth = SynthOptions::new(first);
        synth.freq_mhz = self.freq;
        synth.seed = self.seed;
        synth.seeds = self.seeds;
        synth.dsp = self.dsp.unwrap_or_default();
        synth.keep_hierarchy = !self.flatten;
        synth.abc9_clock = self.abc9_clock;
        synth.bitstream = self.bitstream;
        let jobs = self.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        SweepOptions {
            out_dir: self.out.clone(),
            jobs: jobs.max(1),
            synth,
            mode: if self.baseline_only {
                SweepMode::BaselineOnly
            } else if self.baseline {
                SweepMode::WithBaseline
            } else {
                SweepMode::Generated
            },
            progress: true,
            command: None,
        }
    }
}

/// Entry point of `qmac sweep` on `points` (normally [`SweepArgs::points`], with each point's DSP
/// policy set for `--target-defaults`); `generate` writes the build directory of a point into the
/// given directory (it is not called with `--baseline-only`). `command` is shown above the table.
pub fn run_sweep<F, E>(args: &SweepArgs, points: &[SweepPoint], command: Option<String>, generate: F) -> anyhow::Result<()>
where
    F: Fn(&SweepPoint, &Path) -> Result<(), E> + Sync,
    E: Display,
{
    if points.is_empty() {
        bail!("qmac sweep: no points (give --target and --weight-bits, or --preset)");
    }
    let mut opts = args.options();
    opts.command = command;
    eprintln!(
        "qmac sweep: {} point(s), {} run(s), {} in parallel, into {}",
        points.len(),
        super::sweep::runs(points, opts.mode),
        opts.jobs,
        opts.out_dir.display()
    );
    let summary = sweep(points, &opts, generate).context("qmac sweep")?;
    println!("{}", super::sweep::sweep_markdown(&summary));
    println!("wrote {}/sweep.json, sweep.md, sweep.svg", opts.out_dir.display());
    let failed = summary.failures();
    if failed > 0 {
        bail!("{failed} run(s) failed; see {}/sweep.md and the logs below it", opts.out_dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_lists() {
        assert_eq!("1..8".parse::<BitsList>().unwrap().0, (1..=8).collect::<Vec<_>>());
        assert_eq!("4".parse::<BitsList>().unwrap().0, vec![4]);
        assert_eq!("4,1,2,2".parse::<BitsList>().unwrap().0, vec![1, 2, 4]);
        assert_eq!("1..=3,8".parse::<BitsList>().unwrap().0, vec![1, 2, 3, 8]);
        assert!("0..8".parse::<BitsList>().unwrap_err().contains("0 bits is out of range"));
        assert!("9".parse::<BitsList>().is_err());
        assert!("x".parse::<BitsList>().unwrap_err().contains("`x` is not a number"));
        assert!("5..2".parse::<BitsList>().unwrap_err().contains("empty range"));
        assert!("".parse::<BitsList>().is_err());
    }
}
