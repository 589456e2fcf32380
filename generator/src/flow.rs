//! The user-level flows behind the CLI: generate, check, simulate.

use crate::config::Config;
use crate::emit;
use crate::sim::{self, BuildInfo, BuildOptions, SimError, SimReport};
use crate::vectors::{random_layers, render, StimulusOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of a co-simulation run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Stimulus and stall seed.
    pub seed: u64,
    /// Stall probability on every stream, percent.
    pub stall_pct: u32,
    /// Stimulus shape.
    pub stimulus: StimulusOptions,
    /// Model build options.
    pub build: BuildOptions,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions { seed: 1, stall_pct: 30, stimulus: StimulusOptions::default(), build: BuildOptions::default() }
    }
}

/// Outcome of [`simulate`].
#[derive(Clone, Debug)]
pub struct SimOutcome {
    /// The testbench's report.
    pub report: SimReport,
    /// Model build time (zero when an up-to-date model was reused).
    pub build_time: Duration,
    /// The vector file used.
    pub vectors: PathBuf,
}

/// The validated configuration stored in a build directory.
pub fn load_build_config(dir: &Path) -> Result<Config, SimError> {
    Config::from_file(&dir.join("config.toml")).map_err(|e| SimError::BuildDir { dir: dir.display().to_string(), why: e.to_string() })
}

fn newest_input(info: &BuildInfo) -> Option<std::time::SystemTime> {
    info.files.iter().filter_map(|f| std::fs::metadata(info.dir.join(f)).and_then(|m| m.modified()).ok()).max()
}

/// Build (or reuse, when newer than every RTL file and built from the same testbench) the model.
pub fn ensure_model(info: &BuildInfo, opts: &BuildOptions) -> Result<(PathBuf, Duration), SimError> {
    let exe = info.dir.join("sim/obj/tb");
    let tb = info.dir.join("sim/tb.cpp");
    let fresh = match (std::fs::metadata(&exe).and_then(|m| m.modified()), newest_input(info)) {
        (Ok(built), Some(src)) => built > src && std::fs::read_to_string(&tb).is_ok_and(|t| t == sim::TB_CPP),
        _ => false,
    };
    if fresh {
        return Ok((exe, Duration::ZERO));
    }
    sim::build(info, opts)
}

/// Write vectors for the build directory's configuration, build the model, run the testbench.
pub fn simulate(dir: &Path, opts: &SimOptions) -> Result<SimOutcome, SimError> {
    let cfg = load_build_config(dir)?;
    let info = sim::build_info(dir)?;
    let layers = random_layers(&cfg, opts.seed, &opts.stimulus);
    let text = render(&cfg, &layers).expect("random parameters fit the configuration");
    let vectors = info.dir.join(format!("sim/vectors-seed{}.txt", opts.seed));
    std::fs::create_dir_all(info.dir.join("sim")).map_err(|source| SimError::Io { path: info.dir.join("sim"), source })?;
    std::fs::write(&vectors, text).map_err(|source| SimError::Io { path: vectors.clone(), source })?;
    let (exe, build_time) = ensure_model(&info, &opts.build)?;
    let report = sim::run(&exe, &vectors, opts.seed, opts.stall_pct, &info.dir.join(format!("logs/sim-seed{}.log", opts.seed)))?;
    Ok(SimOutcome { report, build_time, vectors })
}

/// Generate a build directory.
pub fn generate(cfg: &Config, out: &Path) -> Result<emit::Generated, emit::EmitError> {
    emit::write(cfg, out)
}

/// Lint with Verilator and check with Yosys.
pub fn check(dir: &Path) -> Result<(), SimError> {
    let info = sim::build_info(dir)?;
    sim::lint(&info)?;
    sim::yosys_check(&info)
}
