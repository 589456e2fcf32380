//! The co-simulation runner used by the test suite: generate, lint, check and simulate many
//! configurations, sharing the machine's cores between tests and each configuration's Verilator model
//! between its seeds.
//!
//! Every check here fails loudly when a tool is missing: a missing Verilator or Yosys is a test failure
//! with install advice, never a skip.

use qmac::config::{Config, RawConfig};
use qmac::flow::{self, SimOptions};
use qmac::vectors::StimulusOptions;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// A counting semaphore that limits concurrent tool runs to the number of cores, across every test
/// of the process.
struct Pool {
    free: Mutex<usize>,
    cv: Condvar,
}

static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let n = std::env::var("QMAC_TEST_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        Pool { free: Mutex::new(n.max(1)), cv: Condvar::new() }
    })
}

/// Run `f` (a tool run) holding one of the pool's slots.
pub fn with_slot<T>(f: impl FnOnce() -> T) -> T {
    let p = pool();
    let mut free = p.free.lock().unwrap();
    while *free == 0 {
        free = p.cv.wait(free).unwrap();
    }
    *free -= 1;
    drop(free);
    let out = f();
    *p.free.lock().unwrap() += 1;
    p.cv.notify_one();
    out
}

/// Where test build directories go.
pub fn work_dir(group: &str) -> PathBuf {
    let base = std::env::var_os("QMAC_TEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/qmac-tests"));
    base.join(group)
}

/// One configuration's full check: generate, lint (-Wall), yosys check, then co-simulate for every
/// seed on one shared model. Returns a description of the first failure.
pub fn check_config(dir: &Path, cfg: &Config, seeds: &[u64], stimulus: StimulusOptions) -> Result<String, String> {
    let name = cfg.short_name();
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{name} ({}): {what}: {e}", dir.display());
    // the harness's own scratch directory: one left by a qmac from before ownership markers is
    // removed here, as `qmac generate` refuses to replace a directory without one
    if dir.is_dir() && !dir.join(qmac::outdir::MARKER).exists() {
        std::fs::remove_dir_all(dir).map_err(|e| fail("removing an old unmarked test directory", &e))?;
    }
    flow::generate(cfg, dir).map_err(|e| fail("generate", &e))?;
    with_slot(|| flow::check(dir)).map_err(|e| fail("lint/check", &e))?;
    let mut summary = Vec::new();
    for &seed in seeds {
        let opts = SimOptions { seed, stimulus, ..SimOptions::default() };
        let o = with_slot(|| flow::simulate(dir, &opts)).map_err(|e| fail(&format!("sim seed {seed}"), &e))?;
        // every corner class the design can reach must have been driven
        let missed = o.corners.missed();
        if !missed.is_empty() {
            return Err(fail(&format!("sim seed {seed}"), &format!("corner classes never hit: {missed:?} ({})", o.corners)));
        }
        summary.push(format!("{} [corners: {}]", o.report.summary, o.corners));
    }
    Ok(format!("{name}: {}", summary.join("; ")))
}

/// Check many configurations in parallel (bounded by the shared pool) and fail with every failure
/// listed. `dirs` are named `<group>/<index>-<short name>`.
///
/// With `QMAC_DUMP_CONFIGS=<dir>` set, nothing is checked: each configuration is written as
/// `<dir>/<group>/<index>-<short name>.toml` ([`minimal_toml`]) for `scripts/emitted-tree.sh`, which
/// generates every design of the matrix with two commits and compares them.
pub fn check_all(group: &str, cfgs: Vec<RawConfig>, seeds: &[u64], stimulus: StimulusOptions) {
    if let Some(dir) = std::env::var_os("QMAC_DUMP_CONFIGS") {
        write_configs(&Path::new(&dir).join(group), &cfgs);
        return;
    }
    let base = work_dir(group);
    let cfgs: Vec<Config> = cfgs.into_iter().map(|r| Config::new(r.clone()).unwrap_or_else(|e| panic!("test config {r:?} invalid: {e}"))).collect();
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cfgs
            .iter()
            .enumerate()
            .map(|(i, cfg)| {
                let dir = base.join(format!("{i:03}-{}", cfg.short_name()));
                s.spawn(move || check_config(&dir, cfg, seeds, stimulus))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("panicked".into()))).collect()
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for r in results.iter().flatten() {
        eprintln!("ok {r}");
    }
    assert!(failures.is_empty(), "{} of {} configurations failed:\n{}", failures.len(), results.len(), failures.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("\n"));
}

/// A configuration as TOML with only the fields that differ from [`RawConfig::default`], so that a
/// `qmac` built from an older commit (which may lack newer fields) reads it as the same design.
pub fn minimal_toml(raw: &RawConfig) -> String {
    let table = |r: &RawConfig| match toml::Value::try_from(r).expect("a config serialises") {
        toml::Value::Table(t) => t,
        _ => unreachable!("a config is a table"),
    };
    let default = table(&RawConfig::default());
    let mut own = table(raw);
    own.retain(|k, v| default.get(k) != Some(v));
    toml::to_string(&own).expect("a table serialises")
}

/// Write each valid configuration to `<dir>/<index>-<short name>.toml` ([`minimal_toml`]); panics on
/// an invalid one or an I/O error (a test tool).
pub fn write_configs(dir: &Path, cfgs: &[RawConfig]) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (i, r) in cfgs.iter().enumerate() {
        let cfg = Config::new(r.clone()).unwrap_or_else(|e| panic!("config {r:?} invalid: {e}"));
        let path = dir.join(format!("{i:03}-{}.toml", cfg.short_name()));
        std::fs::write(&path, minimal_toml(r)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
