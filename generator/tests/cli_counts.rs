//! Counts on the command line are checked against the ranges of the configuration and of the flows:
//! a run that would check nothing is refused, sizes the configuration refuses are refused when the
//! command line is parsed, and a run's stimulus is bounded.

use qmac::config::Config;
use qmac::flow::{check_stimulus, MAX_STIMULUS_CODES};
use qmac::vectors::StimulusOptions;
use std::path::Path;
use std::process::{Command, Output};

fn qmac() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmac"));
    c.env("RUST_BACKTRACE", "0");
    c
}

fn refused(o: &Output, code: i32, want: &[&str]) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{e}");
    for w in want {
        assert!(e.contains(w), "missing {w:?} in: {e}");
    }
}

fn generated(dir: &Path) {
    let o = qmac().args(["generate", "--rows", "1", "--cols", "1", "--lanes", "1", "-o"]).arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn sim_counts_of_zero_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    generated(&dir);
    for (flag, allowed) in [("--layers", "1..=1000"), ("--tiles", "1..=100000"), ("--max-steps", "1..=16777216")] {
        let o = qmac().args(["sim", flag, "0"]).arg(&dir).output().unwrap();
        refused(&o, 2, &[flag, "0 is not in", allowed]);
    }
    assert!(!dir.join("sim").exists(), "nothing may be built for a refused run");
}

#[test]
fn a_run_too_large_for_memory_is_refused_before_anything_is_built() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    generated(&dir);
    let o = qmac().args(["sim", "--layers", "1000", "--tiles", "100000"]).arg(&dir).output().unwrap();
    refused(&o, 1, &["layers 1000 x tiles 100000", &format!("at most {MAX_STIMULUS_CODES}")]);
    assert!(!dir.join("sim").exists(), "nothing may be built for a refused run");
}

#[test]
fn stimulus_bounds_in_the_library() {
    let cfg = Config::default();
    let ok = StimulusOptions::default();
    check_stimulus(&cfg, &ok).unwrap();
    for bad in [StimulusOptions { layers: 0, ..ok }, StimulusOptions { tiles: 0, ..ok }, StimulusOptions { max_steps: 0, ..ok }] {
        let e = check_stimulus(&cfg, &bad).unwrap_err().to_string();
        assert!(e.contains("= 0 is invalid") && e.contains("at least one tile"), "{e}");
    }
    // the default 8x8x8 array: (8 + 8) * 8 codes a step; 2^24 codes are 131072 steps
    let steps = MAX_STIMULUS_CODES / (16 * 8);
    let edge = StimulusOptions { layers: 1, tiles: (steps / 64) as u32, max_steps: 64, abort: true };
    check_stimulus(&cfg, &edge).unwrap();
    let e = check_stimulus(&cfg, &StimulusOptions { tiles: edge.tiles + 1, ..edge }).unwrap_err().to_string();
    assert!(e.contains(&format!("= {} codes", (edge.tiles as u64 + 1) * 64 * 128)), "{e}");
}

#[test]
fn sweep_ranges_are_the_configuration_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let base = ["sweep", "--weight-bits", "2", "--target", "ice40-up5k", "--cols", "2"];
    // the configuration allows 1..=64 rows: 100 is refused when parsed, before any point runs
    let o = qmac().args(base).args(["--rows", "100", "-o"]).arg(&out).output().unwrap();
    refused(&o, 2, &["--rows", "`100` is not allowed", "1 to 64"]);
    let o = qmac().args(base).args(["--rows", "2", "--max-depth", "0", "-o"]).arg(&out).output().unwrap();
    refused(&o, 2, &["--max-depth", "0 is not in 1..=16777216"]);
    // below the lanes: refused, not raised to the lanes
    let o = qmac().args(base).args(["--rows", "2", "--lanes", "8", "--max-depth", "4", "-o"]).arg(&out).output().unwrap();
    refused(&o, 1, &["--max-depth 4 is below --lanes 8"]);
    assert!(!out.exists());
    let o = qmac().args(["sweep", "--target", "ice40-up5k", "--rows", "2", "--cols", "2", "--weight-bits", "9", "-o"]).arg(&out).output().unwrap();
    refused(&o, 2, &["9 bits is out of range"]);
    // generate: the same source
    let o = qmac().args(["generate", "--lanes", "65", "-o"]).arg(tmp.path().join("g")).output().unwrap();
    refused(&o, 2, &["--lanes", "65 is not in 1..=64"]);
}

#[test]
fn a_testbench_verdict_without_rows_is_a_failure() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tb");
    std::fs::write(&exe, "#!/bin/sh\necho 'qmac-tb: PASS tiles=0 rows=0 resets=0 cycles=10 latency=5 seed=1 stall=0 seconds=0.001'\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let vectors = tmp.path().join("v.txt");
    std::fs::write(&vectors, "").unwrap();
    // another test's child may still hold the script's write descriptor between its fork and exec
    // (ETXTBSY, "Text file busy"): that is this test's race, not qmac's, so try again
    let mut e = String::new();
    for _ in 0..50 {
        e = qmac::sim::run(&exe, &vectors, 1, 0, &tmp.path().join("log")).unwrap_err().to_string();
        if !e.contains("Text file busy") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(e.contains("checked no output row"), "{e}");
}
