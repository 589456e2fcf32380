//! The user-level flows behind the CLI: generate, check, simulate.

use crate::config::Config;
use crate::corners::{self, CornerCounts};
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

/// Allowed `layers` of random stimulus.
pub const LAYERS_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
/// Allowed `tiles` per layer.
pub const TILES_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;
/// Allowed `max_steps` (a tile never has more than the configuration's `max_steps()`).
pub const MAX_STEPS_RANGE: std::ops::RangeInclusive<u32> = 1..=crate::config::MAX_DEPTH_LIMIT;
/// Most activation and weight codes a run's random stimulus may hold (`layers * tiles * steps *
/// (rows + cols) * lanes`): about 130 MiB in memory, and a vector file of up to 32 MiB.
pub const MAX_STIMULUS_CODES: u64 = 1 << 24;

/// Checks the stimulus counts against their ranges and the run's size against
/// [`MAX_STIMULUS_CODES`]: a run that checks nothing, or would not fit in memory, is refused.
pub fn check_stimulus(cfg: &Config, s: &StimulusOptions) -> Result<(), SimError> {
    let range = |name: &str, v: u32, r: &std::ops::RangeInclusive<u32>| {
        if r.contains(&v) {
            Ok(())
        } else {
            Err(SimError::Stimulus(format!("{name} = {v} is invalid: allowed {}..={} (a run must check at least one tile)", r.start(), r.end())))
        }
    };
    range("layers", s.layers, &LAYERS_RANGE)?;
    range("tiles", s.tiles, &TILES_RANGE)?;
    range("max_steps", s.max_steps, &MAX_STEPS_RANGE)?;
    let steps = u64::from(s.max_steps.min(cfg.max_steps()));
    let codes = u64::from(s.layers) * u64::from(s.tiles) * steps * u64::from(cfg.rows + cfg.cols) * u64::from(cfg.lanes);
    if codes > MAX_STIMULUS_CODES {
        return Err(SimError::Stimulus(format!(
            "layers {} x tiles {} x steps {steps} x (rows + cols) {} x lanes {} = {codes} codes of stimulus; at most {MAX_STIMULUS_CODES} per run: use fewer layers, tiles or steps, or several seeds",
            s.layers,
            s.tiles,
            cfg.rows + cfg.cols,
            cfg.lanes
        )));
    }
    Ok(())
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
    /// How often the stimulus hit each corner class (directed and random stimulus together).
    pub corners: CornerCounts,
}

/// The validated configuration stored in a build directory.
pub fn load_build_config(dir: &Path) -> Result<Config, SimError> {
    Config::from_file(&dir.join("config.toml")).map_err(|e| SimError::build_dir(dir, e.to_string()))
}

/// The simulation model of the build directory, from the model cache or built into it
/// ([`sim::cached_model`]).
pub fn ensure_model(info: &BuildInfo, opts: &BuildOptions) -> Result<(PathBuf, Duration), SimError> {
    sim::cached_model(info, opts)
}

/// Check that the build directory's RTL is what this generator makes from its `config.toml`: the
/// expected outputs and the latency the testbench checks come from this generator, so stale RTL from
/// another version would fail for the wrong reason.
pub fn check_up_to_date(dir: &Path, cfg: &Config) -> Result<(), SimError> {
    let g = emit::generate(cfg);
    let stale: Vec<&str> = g.rtl.iter().filter(|(p, t)| std::fs::read_to_string(dir.join(p)).map_or(true, |on_disk| &on_disk != t)).map(|(p, _)| p.as_str()).collect();
    if stale.is_empty() {
        return Ok(());
    }
    Err(SimError::Stale {
        dir: dir.display().to_string(),
        why: format!(
            "its RTL differs from what {} generates from its config.toml ({}); regenerate it with `qmac generate --config {} -o {}`",
            emit::GENERATOR,
            stale.join(", "),
            dir.join("config.toml").display(),
            dir.display()
        ),
    })
}

/// Write vectors for the build directory's configuration, build the model, run the testbench.
pub fn simulate(dir: &Path, opts: &SimOptions) -> Result<SimOutcome, SimError> {
    let cfg = load_build_config(dir)?;
    check_stimulus(&cfg, &opts.stimulus)?;
    check_up_to_date(dir, &cfg)?;
    simulate_rtl(dir, &cfg, opts)
}

/// [`simulate`] without the check that the RTL is what this generator makes from `cfg`: the stimulus is
/// the random layers of `opts` followed by the directed corner layers ([`corners::corner_layers`]).
/// For tests that co-simulate deliberately altered RTL.
pub fn simulate_rtl(dir: &Path, cfg: &Config, opts: &SimOptions) -> Result<SimOutcome, SimError> {
    let info = sim::build_info(dir)?;
    let mut layers = random_layers(cfg, opts.seed, &opts.stimulus);
    layers.extend(corners::corner_layers(cfg, opts.seed));
    let corners = corners::count(cfg, &layers);
    let text = render(cfg, &layers).expect("random and directed parameters fit the configuration");
    let vectors = info.dir.join(format!("sim/vectors-seed{}.txt", opts.seed));
    std::fs::create_dir_all(info.dir.join("sim")).map_err(|source| SimError::Io { path: info.dir.join("sim"), source })?;
    std::fs::write(&vectors, text).map_err(|source| SimError::Io { path: vectors.clone(), source })?;
    let (exe, build_time) = ensure_model(&info, &opts.build)?;
    let report = sim::run(&exe, &vectors, opts.seed, opts.stall_pct, &info.dir.join(format!("logs/sim-seed{}.log", opts.seed)))?;
    Ok(SimOutcome { report, build_time, vectors, corners })
}

/// Generate a build directory.
pub fn generate(cfg: &Config, out: &Path) -> Result<emit::Generated, emit::EmitError> {
    emit::write(cfg, out)
}

/// Generate a build directory for a target ([`emit::write_for`]).
pub fn generate_for(cfg: &Config, target: Option<&crate::synth::target_defaults::TargetRecord>, out: &Path) -> Result<emit::Generated, emit::EmitError> {
    emit::write_for(cfg, target, out)
}

/// Lint with Verilator and check with Yosys.
pub fn check(dir: &Path) -> Result<(), SimError> {
    let info = sim::build_info(dir)?;
    sim::lint(&info)?;
    sim::yosys_check(&info)
}

/// Measured figures of [`bench`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// Configuration of the generation benchmark.
    pub generate_config: String,
    /// Median time to generate it in memory, milliseconds.
    pub generate_ms: f64,
    /// Lines of Verilog generated.
    pub generate_lines: usize,
    /// Configuration of the simulation benchmark.
    pub sim_config: String,
    /// Verilator build time (verilation and C++ compile, runtime objects shared), seconds.
    pub verilator_build_s: f64,
    /// C++ optimisation of the model.
    pub sim_opt: String,
    /// Simulated cycles per second with no stalls.
    pub cycles_per_s: f64,
    /// Simulated cycles per second with 30 % stalls on every stream.
    pub cycles_per_s_stalled: f64,
    /// Cycles simulated for each figure.
    pub cycles: u64,
}

/// Measure generation time of a 64x64 array, and the Verilator build time and simulation speed of an
/// 8x8 W4A4 array (the default configuration). `work` is a scratch build directory.
pub fn bench(work: &Path) -> Result<BenchReport, SimError> {
    use crate::config::RawConfig;
    let big = Config::new(RawConfig { rows: 64, cols: 64, ..RawConfig::default() }).expect("valid");
    let mut times = Vec::new();
    let mut lines = 0;
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        let g = emit::generate(&big);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        lines = g.rtl.iter().map(|(_, t)| t.lines().count()).sum();
    }
    times.sort_by(f64::total_cmp);
    let cfg = Config::default();
    let dir = work.join(cfg.short_name());
    emit::write(&cfg, &dir).map_err(|e| SimError::Io { path: dir.clone(), source: std::io::Error::other(e.to_string()) })?;
    let info = sim::build_info(&dir)?;
    let opts = BuildOptions { opt: "-O2".into(), jobs: 2 };
    // a fresh build (not the model cache's), in the cache directory where make can build
    let scratch = sim::build_cache_dir()?.join(format!("bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|source| SimError::Io { path: scratch.clone(), source })?;
    let measured = bench_model(&cfg, &dir, &info, &opts, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let (build, fast, slow) = measured?;
    Ok(BenchReport {
        generate_config: big.short_name(),
        generate_ms: times[times.len() / 2],
        generate_lines: lines,
        sim_config: cfg.short_name(),
        verilator_build_s: build.as_secs_f64(),
        sim_opt: opts.opt,
        cycles_per_s: fast.cycles as f64 / fast.seconds.max(1e-9),
        cycles_per_s_stalled: slow.cycles as f64 / slow.seconds.max(1e-9),
        cycles: fast.cycles,
    })
}

/// The model build time and the two simulation runs of [`bench`].
fn bench_model(cfg: &Config, dir: &Path, info: &BuildInfo, opts: &BuildOptions, scratch: &Path) -> Result<(Duration, SimReport, SimReport), SimError> {
    let (exe, build) = sim::build_in(info, opts, scratch)?;
    let layers = random_layers(cfg, 1, &StimulusOptions { layers: 1, tiles: 50, max_steps: 64, abort: false });
    let vectors = dir.join("sim/bench-vectors.txt");
    std::fs::create_dir_all(dir.join("sim")).map_err(|source| SimError::Io { path: dir.join("sim"), source })?;
    std::fs::write(&vectors, render(cfg, &layers).expect("valid")).map_err(|source| SimError::Io { path: vectors.clone(), source })?;
    let fast = sim::run_repeated(&exe, &vectors, 1, 0, 400, &dir.join("logs/bench.log"))?;
    let slow = sim::run_repeated(&exe, &vectors, 1, 30, 200, &dir.join("logs/bench-stalled.log"))?;
    Ok((build, fast, slow))
}

/// Outcome of [`simulate_layer`].
#[derive(Clone, Debug)]
pub struct LayerSimOutcome {
    /// The co-simulation of the array on the layer's real data.
    pub sim: SimOutcome,
    /// The hardware build directory.
    pub hw_dir: PathBuf,
    /// Float-vs-quantized error of the layer output.
    pub error: crate::quantize::layer::OutputError,
    /// Output codes compared bit-exact in the RTL.
    pub codes: usize,
}

/// Run real data through the RTL: `dir` is a `qmac quantize` output directory. Generates the array of
/// its configuration into `<dir>/hw`, turns the float inputs into tiles (PACT or binary-basis codes,
/// im2col for a convolution), writes the reference's expected outputs, and co-simulates with stalls. The
/// dequantized result's error against the float layer comes back beside the bit-exact verdict.
pub fn simulate_layer(dir: &Path, inputs: &Path, name: Option<&str>, opts: &SimOptions) -> anyhow::Result<LayerSimOutcome> {
    use crate::quantize::{layer::layer_vectors, read_tensor, QuantizedLayer};
    let q = QuantizedLayer::load(dir)?;
    let (x, shape) = read_tensor(inputs, name)?;
    let mut lv = layer_vectors(&q, &x, &shape)?;
    let hw = dir.join("hw");
    emit::write(&lv.config, &hw)?;
    let info = sim::build_info(&hw)?;
    // the real data first, then the directed corners with their own parameters
    lv.layers.extend(corners::corner_layers(&lv.config, opts.seed));
    let corners = corners::count(&lv.config, &lv.layers);
    let text = render(&lv.config, &lv.layers)?;
    let vectors = info.dir.join("sim/inputs-vectors.txt");
    std::fs::create_dir_all(info.dir.join("sim"))?;
    std::fs::write(&vectors, text)?;
    let (exe, build_time) = ensure_model(&info, &opts.build)?;
    let report = sim::run(&exe, &vectors, opts.seed, opts.stall_pct, &info.dir.join("logs/sim-inputs.log"))?;
    Ok(LayerSimOutcome { codes: lv.codes.len(), sim: SimOutcome { report, build_time, vectors, corners }, hw_dir: hw, error: lv.error })
}
