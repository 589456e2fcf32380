//! Per-target defaults (`qmac generate --target`): applied only to fields the user did not set (flags
//! and the keys present in --config win), recorded in manifest.json, read back strictly, and picked
//! up by `qmac synth` (target and DSP policy) when it is given none. No tool runs: synthesis is
//! pointed at a failing stand-in, which is enough to see the target and the Yosys script it chose.

use std::path::Path;
use std::process::{Command, Output};

use qmac::synth::Manifest;
use serde_json::Value;

fn qmac(args: &[&str], cwd: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmac"));
    c.args(args).current_dir(cwd).env("RUST_BACKTRACE", "0");
    // every tool is a stand-in that fails at once (the flow looks all of them up first)
    for var in ["QMAC_YOSYS", "QMAC_NEXTPNR_ICE40", "QMAC_NEXTPNR_ECP5", "QMAC_ICEPACK", "QMAC_ECPPACK"] {
        c.env(var, "/bin/false");
    }
    c.output().unwrap()
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let o = qmac(args, cwd);
    assert!(o.status.success(), "qmac {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(args: &[&str], cwd: &Path) -> String {
    let o = qmac(args, cwd);
    assert!(!o.status.success(), "qmac {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn defaults_fill_only_the_fields_nobody_set() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let small = ["--weight-bits", "2", "--act-bits", "2", "--rows", "2", "--cols", "2", "--lanes", "2"];

    // iCE40: the area options, on top of the user's shape and precision
    let mut args = vec!["generate", "--target", "ice40-up5k", "-o", "up"];
    args.extend(small);
    let out = ok(&args, t);
    assert!(out.contains("target ice40-up5k: its defaults set output_units = \"shared\", input_registers = false, running_totals = true; DSP policy auto"), "{out}");
    let m = manifest(&t.join("up"));
    let c = &m["config"];
    assert_eq!((&c["input_registers"], &c["running_totals"], &c["output_units"]), (&Value::Bool(false), &Value::Bool(true), &Value::from("shared")));
    assert_eq!((&c["rows"], &c["lanes"], &c["weight_bits"], &c["act_bits"]), (&Value::from(2), &Value::from(2), &Value::from(2), &Value::from(2)));
    assert_eq!(m["target"]["name"], "ice40-up5k");
    assert_eq!(m["target"]["dsp"], "auto");
    assert_eq!(keys(&m["target"]["defaults"]), ["input_registers", "output_units", "running_totals"]);
    assert_eq!(m["target"]["defaults"]["input_registers"], false);
    let toml = std::fs::read_to_string(t.join("up/config.toml")).unwrap();
    assert!(toml.starts_with("# generated with --target ice40-up5k: its defaults set input_registers, output_units, running_totals"), "{toml}");
    // the config.toml it wrote regenerates the same design without the target
    ok(&["generate", "--config", "up/config.toml", "-o", "again"], t);
    assert_eq!(manifest(&t.join("again"))["config"], m["config"]);
    assert!(manifest(&t.join("again")).get("target").is_none(), "no target, no record");

    // a key present in --config wins even at its built-in default value, and a flag wins
    std::fs::write(t.join("mine.toml"), "input_registers = true\nrunning_totals = false\n").unwrap();
    let mut args = vec!["generate", "--target", "ice40-up5k", "--config", "mine.toml", "--output-units", "per-column", "-o", "mine"];
    args.extend(small);
    ok(&args, t);
    let m = manifest(&t.join("mine"));
    assert_eq!((&m["config"]["input_registers"], &m["config"]["running_totals"]), (&Value::Bool(true), &Value::Bool(false)));
    assert_eq!(m["config"]["output_units"], "per_column");
    assert_eq!(keys(&m["target"]["defaults"]), Vec::<&str>::new(), "every candidate was set by the user");
    let mut args = vec!["generate", "--target", "ice40-up5k", "--running-totals", "-o", "flag"];
    args.extend(small);
    ok(&args, t);
    assert_eq!(keys(&manifest(&t.join("flag"))["target"]["defaults"]), ["input_registers", "output_units"]);

    // ECP5, W4A4 4x4x8: running totals, input copies, lanes packed two per DSP block (66 of 156)
    ok(&["generate", "--target", "ecp5-85k", "--rows", "4", "--cols", "4", "-o", "ecp5"], t);
    let m = manifest(&t.join("ecp5"));
    assert_eq!(keys(&m["target"]["defaults"]), ["memory_style", "pack", "pe_input_regs", "running_totals"]);
    assert_eq!((&m["config"]["pack"], &m["target"]["dsp"]), (&Value::from("auto"), &Value::from("on")));
    assert_eq!(m["derived"]["pack_lanes"], 2);
    assert_eq!(m["config"]["memory_style"], "distributed");
    // a default that conflicts with the user's choice is left out: bit-serial activations keep the
    // input registers
    ok(&["generate", "--target", "ice40-up5k", "--act-serial", "--rows", "2", "--cols", "2", "-o", "serial"], t);
    let m = manifest(&t.join("serial"));
    assert_eq!(keys(&m["target"]["defaults"]), ["output_units", "running_totals"]);
    assert_eq!(m["config"]["input_registers"], true);
}

#[test]
fn an_unknown_target_is_one_error_with_the_allowed_names() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = "unknown target `xc7a35t`; allowed: ice40-up5k, ice40-hx8k, ecp5-25k, ecp5-85k";
    for args in [
        vec!["generate", "--target", "xc7a35t", "-o", "x"],
        vec!["run", "--target", "xc7a35t", "-o", "x"],
        vec!["sweep", "--weight-bits", "2", "--rows", "2", "--cols", "2", "--target", "xc7a35t", "--target-defaults", "-o", "x"],
    ] {
        let e = fails(&args, tmp.path());
        assert!(e.contains(allowed) && e.contains("--target"), "{args:?}: {e}");
        assert!(!tmp.path().join("x").exists());
    }
}

#[test]
fn synth_takes_the_recorded_target_and_dsp_policy_unless_told_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    ok(&["generate", "--target", "ecp5-85k", "--rows", "4", "--cols", "4", "-o", "d"], t);
    let script = |target: &str| std::fs::read_to_string(t.join("d/synth").join(target).join("synth.ys")).unwrap();

    // the stand-in Yosys fails, after the flow chose the target and wrote its script
    let e = fails(&["synth", "d"], t);
    assert!(e.contains("qmac synth of d for ecp5-85k") && e.contains("yosys synthesis failed"), "{e}");
    assert!(script("ecp5-85k").contains("synth_ecp5 -top qmac_board_top -json"), "DSP policy on: no -nodsp\n{}", script("ecp5-85k"));
    // an explicit DSP flag wins
    fails(&["synth", "d", "--dsp=off"], t);
    assert!(script("ecp5-85k").contains("synth_ecp5 -top qmac_board_top -nodsp -json"), "{}", script("ecp5-85k"));
    // another target: the recorded policy is not its own, so the default (off) applies
    let e = fails(&["synth", "d", "--target", "ice40-up5k"], t);
    assert!(e.contains("for ice40-up5k"), "{e}");
    assert!(script("ice40-up5k").contains("synth_ice40 -top qmac_board_top -json"), "{}", script("ice40-up5k"));

    // without a record, --target is needed
    ok(&["generate", "--rows", "2", "--cols", "2", "-o", "plain"], t);
    let e = fails(&["synth", "plain"], t);
    assert!(e.contains("no --target given") && e.contains("records none") && e.contains("allowed: ice40-up5k, ice40-hx8k, ecp5-25k, ecp5-85k"), "{e}");
}

#[test]
fn the_manifest_record_is_read_back_strictly() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    ok(&["generate", "--target", "ice40-up5k", "--rows", "2", "--cols", "2", "--weight-bits", "2", "--act-bits", "2", "-o", "d"], t);
    let d = t.join("d");
    let good = manifest(&d);
    assert!(Manifest::read(&d).unwrap().target.is_some());
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut m = good.clone();
        f(&mut m);
        std::fs::write(d.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
        Manifest::read(&d).map(|_| ()).map_err(|e| e.to_string())
    };
    let e = edit(&|m| m["target"]["seed"] = 3.into()).unwrap_err();
    assert!(e.contains("unknown field `seed`"), "{e}");
    let e = edit(&|m| m["target"]["name"] = "ice40-up9k".into()).unwrap_err();
    assert!(e.contains("ice40-up9k"), "{e}");
    let e = edit(&|m| m["target"]["dsp"] = "maybe".into()).unwrap_err();
    assert!(e.contains("maybe"), "{e}");
    let e = edit(&|m| m["target"]["defaults"]["rows"] = 2.into()).unwrap_err();
    assert!(e.contains("target.defaults names `rows`") && e.contains("allowed: output_units"), "{e}");
    let e = edit(&|m| m["target"]["defaults"]["running_totals"] = false.into()).unwrap_err();
    assert!(e.contains("target.defaults.running_totals = false differs from the configuration's true"), "{e}");
    // a field left out of config is at its built-in default
    let e = edit(&|m| m["target"]["defaults"]["pack"] = "auto".into()).unwrap_err();
    assert!(e.contains("target.defaults.pack = \"auto\" differs from the configuration's \"off\""), "{e}");
    edit(&|_| {}).unwrap();
}

#[test]
fn a_sweep_generates_each_point_as_generate_target_would() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let grid = ["sweep", "--weight-bits", "4", "--rows", "4", "--cols", "4", "--lanes", "8", "--target", "ecp5-85k,ecp5-25k", "--baseline", "-j", "2"];
    // every tool is a failing stand-in: each run fails at Yosys, after its script was written
    let mut args = grid.to_vec();
    args.extend(["--target-defaults", "-o", "sw"]);
    fails(&args, t);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(t.join("sw/sweep.json")).unwrap()).unwrap();
    let dsp: Vec<&Value> = summary["results"].as_array().unwrap().iter().map(|r| &r["point"]["dsp"]).collect();
    assert_eq!(dsp, [&Value::from("on"), &Value::from("off")], "packed on the 85F (66 of 156 DSPs), not on the 25F (28)");
    let m = manifest(&t.join("sw/ecp5-85k/4x4x8-w4a4"));
    assert_eq!((&m["target"]["name"], &m["config"]["pack"]), (&Value::from("ecp5-85k"), &Value::from("auto")));
    assert_eq!(keys(&m["target"]["defaults"]), ["memory_style", "pack", "pe_input_regs", "running_totals"]);
    assert_eq!(manifest(&t.join("sw/ecp5-25k/4x4x8-w4a4"))["config"]["pack"], Value::Null, "not packed: left out");
    // the design and its baseline are synthesised with the point's policy
    let ys = |d: &str| std::fs::read_to_string(t.join(d).join("synth.ys")).unwrap();
    assert!(ys("sw/ecp5-85k/4x4x8-w4a4/synth/ecp5-85k").contains("synth_ecp5 -top qmac_board_top -json"));
    assert!(ys("sw/ecp5-85k/4x4x8-w4a4-baseline/synth/ecp5-85k").contains("synth_ecp5 -top qmac_board_top -json"));
    assert!(ys("sw/ecp5-25k/4x4x8-w4a4-baseline/synth/ecp5-25k").contains("-nodsp"));

    // without --target-defaults: no record, the sweep's policy (off)
    let mut args = grid.to_vec();
    args.extend(["-o", "plain"]);
    fails(&args, t);
    assert!(manifest(&t.join("plain/ecp5-85k/4x4x8-w4a4")).get("target").is_none());
    assert!(ys("plain/ecp5-85k/4x4x8-w4a4/synth/ecp5-85k").contains("-nodsp"));
    // an explicit --dsp wins over the targets' policies
    let mut args = grid.to_vec();
    args.extend(["--target-defaults", "--dsp=off", "-o", "off"]);
    fails(&args, t);
    assert!(ys("off/ecp5-85k/4x4x8-w4a4/synth/ecp5-85k").contains("-nodsp"));
    assert_eq!(manifest(&t.join("off/ecp5-85k/4x4x8-w4a4"))["config"]["pack"], "auto", "the configuration is still the target's");
}
