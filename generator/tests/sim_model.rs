//! The simulation model: built in the model cache under a digest of everything it is made from (so a
//! build directory in a path with spaces works, identical designs share one model, an edited input or
//! a damaged executable means a new build), and the testbench refuses vector files that are cut
//! short, announce more than they hold, or check nothing.
//!
//! One model is built (and rebuilt once) for the whole file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn qmac(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmac"));
    c.env("RUST_BACKTRACE", "0").env("QMAC_CACHE_DIR", cache);
    c
}

fn ok(o: Output) -> String {
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    out.into_owned()
}

fn generate(cache: &Path, dir: &Path) {
    ok(qmac(cache).args(["generate", "--rows", "1", "--cols", "1", "--lanes", "1", "--max-depth", "4", "-o"]).arg(dir).output().unwrap());
}

/// The model build time `qmac sim` reports.
fn build_seconds(out: &str) -> f64 {
    let s = out.split("model build ").nth(1).unwrap_or_else(|| panic!("no build time in {out}"));
    s.split_whitespace().next().unwrap().parse().unwrap()
}

fn the_model(cache: &Path) -> PathBuf {
    let models: Vec<PathBuf> = std::fs::read_dir(cache.join("models")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(models.len(), 1, "{models:?}");
    models[0].join("obj/tb")
}

/// Runs the testbench on `text` and returns its verdict line; it must be a FAIL with exit status 1.
fn tb_fails(exe: &Path, dir: &Path, text: &str) -> String {
    let v = dir.join("crafted.txt");
    std::fs::write(&v, text).unwrap();
    let o = Command::new(exe).arg(&v).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "stdout: {out} stderr: {}", String::from_utf8_lossy(&o.stderr));
    assert!(out.starts_with("qmac-tb: FAIL"), "{out}");
    out
}

#[test]
fn models_are_cached_by_content_and_vector_files_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    // a build directory in a path with spaces: GNU make could not build there
    let dir = tmp.path().join("with space").join("b 1");
    generate(&cache, &dir);
    let out = ok(qmac(&cache).arg("sim").arg(&dir).output().unwrap());
    assert!(out.contains("sim: PASS") && build_seconds(&out) > 0.0, "{out}");

    // the same design in another directory shares the model
    let other = tmp.path().join("other");
    generate(&cache, &other);
    let out = ok(qmac(&cache).args(["sim", "--seed", "2"]).arg(&other).output().unwrap());
    assert!(out.contains("sim: PASS") && build_seconds(&out) == 0.0, "{out}");

    // vector files the testbench must refuse
    let exe = the_model(&cache);
    let good = std::fs::read_to_string(dir.join("sim/vectors-seed1.txt")).unwrap();
    let v = Command::new(&exe).arg(dir.join("sim/vectors-seed1.txt")).output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("qmac-tb: PASS"), "the model runs the file qmac wrote");
    let without_end = good.strip_suffix("end\n").expect("ends with its end marker");
    assert!(tb_fails(&exe, tmp.path(), without_end).contains("no end marker"));
    let cut = &good[..good.len() / 2];
    let e = tb_fails(&exe, tmp.path(), cut);
    // refused as cut inside a record, or as a count larger than the bytes left can hold
    assert!(e.contains("cut short") || e.contains("; allowed "), "{e}");
    let first_tile = good.lines().find(|l| l.starts_with("tile ")).unwrap();
    let e = tb_fails(&exe, tmp.path(), &good.replacen(first_tile, "tile 2000000000", 1));
    assert!(e.contains("step count is 2000000000; allowed 1.."), "{e}");
    let first_layer = good.lines().find(|l| l.starts_with("layer ")).unwrap();
    let e = tb_fails(&exe, tmp.path(), &good.replacen(first_layer, "layer 2000000000", 1));
    assert!(e.contains("layer write count is 2000000000"), "{e}");
    let ports = good.lines().find(|l| l.starts_with("ports ")).unwrap();
    let e = tb_fails(&exe, tmp.path(), &good.replacen(ports, "ports 99999 1 1 1 1", 1));
    assert!(e.contains("a_data width is 99999"), "{e}");
    let header: String = good.lines().take_while(|l| !l.starts_with("layer")).map(|l| format!("{l}\n")).collect();
    assert!(tb_fails(&exe, tmp.path(), &format!("{header}end\n")).contains("no tile: nothing to check"));
    // a parameter load with no tile after it checks nothing either
    let params: String = good.lines().take_while(|l| !l.starts_with("tile")).map(|l| format!("{l}\n")).collect();
    assert!(tb_fails(&exe, tmp.path(), &format!("{params}end\n")).contains("no tile"));

    // a damaged executable is rebuilt, not run
    let f = std::fs::OpenOptions::new().write(true).open(&exe).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    drop(f);
    let out = ok(qmac(&cache).arg("sim").arg(&dir).output().unwrap());
    assert!(out.contains("sim: PASS") && build_seconds(&out) > 0.0, "{out}");
    assert_eq!(std::fs::metadata(&exe).unwrap().len(), len);

    // an edited manifest is a different model: its top is now a module that does not exist
    let m = dir.join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("\"top\": \"qmac_top\"", "\"top\": \"qmac_renamed\"")).unwrap();
    let o = qmac(&cache).arg("sim").arg(&dir).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("verilation") && e.contains("qmac_renamed"), "{e}");
}
