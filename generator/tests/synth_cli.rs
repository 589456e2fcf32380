//! Target names, command-line parsing and the board wrapper text (no tools needed).

mod synth_common;

use clap::Parser;
use qmac::synth::board::{board_top_verilog, plan};
use qmac::synth::cli::{SweepArgs, SynthArgs};
use qmac::synth::target_defaults::TargetRecord;
use qmac::synth::{DspPolicy, Manifest, SweepMode, Target};

#[derive(Parser, Debug)]
struct SynthCli {
    #[command(flatten)]
    args: SynthArgs,
}

#[derive(Parser, Debug)]
struct SweepCli {
    #[command(flatten)]
    args: SweepArgs,
}

#[test]
fn target_names() {
    for (name, t) in [
        ("ice40-up5k", Target::Ice40Up5k),
        ("ice40-hx8k", Target::Ice40Hx8k),
        ("ecp5-25k", Target::Ecp5_25k),
        ("ECP5-85K", Target::Ecp5_85k),
    ] {
        assert_eq!(name.parse::<Target>().unwrap(), t);
    }
    let e = "ice40-up9k".parse::<Target>().unwrap_err().to_string();
    assert_eq!(e, "unknown target `ice40-up9k`; allowed: ice40-up5k, ice40-hx8k, ecp5-25k, ecp5-85k");
    assert!("".parse::<Target>().is_err());
}

#[test]
fn synth_arguments() {
    let a = SynthCli::try_parse_from([
        "qmac",
        "build/x",
        "--target",
        "ecp5-85k",
        "--freq",
        "62.5",
        "--baseline",
        "--no-bitstream",
    ])
    .unwrap()
    .args;
    let o = a.options(None).unwrap();
    assert_eq!(o.target, Target::Ecp5_85k);
    assert_eq!(o.freq_mhz, Some(62.5));
    assert_eq!((o.seed, o.seeds), (1, 1));
    assert!(o.baseline && !o.bitstream && o.keep_hierarchy && !o.abc9_clock);
    assert_eq!(o.dsp, DspPolicy::Off);
    let a = SynthCli::try_parse_from(["qmac", "b", "-t", "ice40-up5k", "--abc9-clock"]).unwrap().args;
    assert!(a.options(None).unwrap().abc9_clock);
    let o = SynthCli::try_parse_from(["qmac", "b", "-t", "ice40-up5k", "--seed", "4", "--seeds", "3"]).unwrap().args.options(None).unwrap();
    assert_eq!((o.seed, o.seeds), (4, 3));
    assert!(o.progress, "several seeds print a line per run");
    for bad in ["0", "33", "two"] {
        let e = SynthCli::try_parse_from(["qmac", "b", "-t", "ice40-up5k", "--seeds", bad]).unwrap_err().to_string();
        assert!(e.contains("--seeds") && e.contains(bad) && e.contains("from 1 to 32"), "{e}");
    }

    let dsp = |extra: &[&str]| {
        let mut argv = vec!["qmac", "-t", "ecp5-25k"];
        argv.extend_from_slice(extra);
        SynthCli::try_parse_from(argv).map(|c| c.args.options(None).unwrap().dsp).map_err(|e| e.to_string())
    };
    assert_eq!(dsp(&["--dsp", "b"]).unwrap(), DspPolicy::On, "--dsp alone does not eat the build directory");
    assert_eq!(dsp(&["b", "--dsp=auto"]).unwrap(), DspPolicy::Auto);
    assert_eq!(dsp(&["b", "--dsp=off"]).unwrap(), DspPolicy::Off);
    assert_eq!(dsp(&["b", "--no-dsp"]).unwrap(), DspPolicy::Off);
    let e = dsp(&["b", "--dsp=maybe"]).unwrap_err();
    assert!(e.contains("--dsp") && e.contains("maybe") && e.contains("allowed: off, on, auto"), "{e}");

    let e = SynthCli::try_parse_from(["qmac", "b", "--target", "xc7a35t"]).unwrap_err().to_string();
    assert!(
        e.contains("xc7a35t")
            && e.contains("--target")
            && e.contains("allowed: ice40-up5k, ice40-hx8k, ecp5-25k, ecp5-85k"),
        "{e}"
    );
    let e = SynthCli::try_parse_from(["qmac", "b", "-t", "ice40-up5k", "--freq", "fast"]).unwrap_err().to_string();
    assert!(e.contains("--freq") && e.contains("fast") && e.contains("MHz"), "{e}");
    let e = SynthCli::try_parse_from(["qmac", "b", "-t", "ice40-up5k", "--dsp", "--no-dsp"]).unwrap_err().to_string();
    assert!(e.contains("--no-dsp"), "{e}");
    // without --target the manifest's recorded target is used; with none recorded it is an error
    let e = SynthCli::try_parse_from(["qmac", "b"]).unwrap().args.options(None).unwrap_err();
    assert!(e.contains("no --target given") && e.contains("allowed: ice40-up5k"), "{e}");
    let record = TargetRecord { name: Target::Ecp5_85k, dsp: DspPolicy::On, defaults: Default::default() };
    let o = SynthCli::try_parse_from(["qmac", "b"]).unwrap().args.options(Some(&record)).unwrap();
    assert_eq!((o.target, o.dsp), (Target::Ecp5_85k, DspPolicy::On));
    let o = SynthCli::try_parse_from(["qmac", "b", "--no-dsp"]).unwrap().args.options(Some(&record)).unwrap();
    assert_eq!((o.target, o.dsp), (Target::Ecp5_85k, DspPolicy::Off));
    let o = SynthCli::try_parse_from(["qmac", "b", "--dsp=auto"]).unwrap().args.options(Some(&record)).unwrap();
    assert_eq!(o.dsp, DspPolicy::Auto);
    let o = SynthCli::try_parse_from(["qmac", "b", "-t", "ecp5-25k"]).unwrap().args.options(Some(&record)).unwrap();
    assert_eq!((o.target, o.dsp), (Target::Ecp5_25k, DspPolicy::Off), "the recorded policy is the recorded target's");
}

#[test]
fn sweep_arguments() {
    let a = SweepCli::try_parse_from([
        "qmac",
        "--weight-bits",
        "1..3",
        "--rows",
        "8",
        "--cols",
        "4",
        "--target",
        "ice40-up5k,ecp5-25k",
    ])
    .unwrap()
    .args;
    let p = a.points();
    // the diagonal by default: w1a1, w2a2, w3a3 on each target
    assert_eq!(p.len(), 6);
    assert_eq!((p[0].target, p[0].weight_bits, p[0].act_bits, p[0].rows, p[0].cols), (Target::Ice40Up5k, 1, 1, 8, 4));
    assert_eq!((p[5].target, p[5].weight_bits, p[5].act_bits), (Target::Ecp5_25k, 3, 3));
    assert_eq!(p[2].label(), "w3a3");
    assert_eq!(a.options().mode, SweepMode::Generated);
    assert!(!a.options().synth.abc9_clock);
    let a = SweepCli::try_parse_from(["qmac", "--weight-bits", "2", "--rows", "2", "--cols", "2", "-t", "ecp5-25k", "--abc9-clock"]).unwrap().args;
    assert!(a.options().synth.abc9_clock);
    assert_eq!(a.options().synth.seeds, 1);
    let a = SweepCli::try_parse_from(["qmac", "--weight-bits", "2", "--rows", "2", "--cols", "2", "-t", "ecp5-25k", "--seeds", "5"]).unwrap().args;
    assert_eq!(a.options().synth.seeds, 5);

    let a = SweepCli::try_parse_from([
        "qmac",
        "--weight-bits",
        "1,8",
        "--act-bits",
        "2..4",
        "--rows",
        "2",
        "--cols",
        "2",
        "-t",
        "ice40-hx8k",
        "--baseline-only",
        "-j",
        "3",
    ])
    .unwrap()
    .args;
    let p = a.points();
    assert_eq!(p.iter().map(|q| q.label()).collect::<Vec<_>>(), ["w1a2", "w1a3", "w1a4", "w8a2", "w8a3", "w8a4"]);
    let o = a.options();
    assert_eq!(o.mode, SweepMode::BaselineOnly);
    assert_eq!(o.jobs, 3);

    for (flag, value, needle) in [
        ("--weight-bits", "0..8", "0 bits is out of range"),
        ("--weight-bits", "1..9", "9 bits is out of range"),
        ("--act-bits", "4..2", "empty range"),
        ("--act-bits", "two", "`two` is not a number"),
    ] {
        let mut argv = vec!["qmac", "--rows", "2", "--cols", "2", "-t", "ice40-up5k", "--weight-bits", "2"];
        if flag == "--weight-bits" {
            argv.truncate(argv.len() - 2);
        }
        argv.extend([flag, value]);
        let e = SweepCli::try_parse_from(argv).unwrap_err().to_string();
        assert!(e.contains(flag) && e.contains(value) && e.contains(needle) && e.contains("allowed"), "{e}");
    }
    // the headline preset: W1A1..W8A8 on both devices, each beside the plain 8x8 array
    let a = SweepCli::try_parse_from(["qmac", "--preset", "headline", "--target-defaults", "--baseline", "--seeds", "3"]).unwrap().args;
    assert!(a.target_defaults);
    let p = a.points();
    let names: Vec<String> = p.iter().map(|q| format!("{} {} {}", q.target, q.shape(), q.label())).collect();
    assert_eq!(
        names,
        [
            "ice40-up5k 4x8x36 w1a1",
            "ice40-up5k 4x4x16 w2a2",
            "ice40-up5k 4x4x4 w4a4",
            "ice40-up5k 2x4x3 w8a8",
            "ecp5-85k 4x4x32 w1a1",
            "ecp5-85k 4x4x16 w2a2",
            "ecp5-85k 4x4x8 w4a4",
            "ecp5-85k 4x4x16 w4a4",
            "ecp5-85k 4x4x2 w8a8"
        ]
    );
    assert!(p.iter().all(|q| q.baseline_shape_name() == "8x8" && q.dsp.is_none()));
    assert_eq!(a.options().synth.target, Target::Ice40Up5k);
    for extra in [["--rows", "2"], ["--target", "ecp5-25k"], ["--weight-bits", "2"]] {
        let mut argv = vec!["qmac", "--preset", "headline"];
        argv.extend(extra);
        let e = SweepCli::try_parse_from(argv).unwrap_err().to_string();
        assert!(e.contains("--preset") && e.contains(extra[0]), "{e}");
    }
    let e = SweepCli::try_parse_from(["qmac", "--rows", "2", "--cols", "2", "-t", "ice40-up5k"]).unwrap_err().to_string();
    assert!(e.contains("--weight-bits"), "without a preset the grid is needed: {e}");

    let e = SweepCli::try_parse_from(["qmac", "--weight-bits", "2", "--rows", "0", "--cols", "2", "-t", "ice40-up5k"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--rows") && e.contains("1 to 64"), "{e}");
    let e =
        SweepCli::try_parse_from(["qmac", "--weight-bits", "2", "--rows", "2", "--cols", "2", "-t", "ice40-up5k,nope"])
            .unwrap_err()
            .to_string();
    assert!(e.contains("unknown target `nope`"), "{e}");
}

#[test]
fn board_wrapper_wires_every_port() {
    let m: Manifest = serde_json::from_str(&synth_common::manifest_json()).unwrap();
    let p = plan(&m).unwrap();
    assert_eq!(p.clock, "clk_i");
    assert_eq!(p.ctl_inputs, ["rst_i", "a_last_i", "a_valid_i", "w_valid_i", "prm_we_i", "y_ready_i"]);
    assert_eq!(p.sts_outputs, ["a_ready_o", "w_ready_o", "y_last_o", "y_valid_o"]);
    assert_eq!(p.in_bits, 4 + 4 + 3 + 8);
    assert_eq!(p.out_bits, 8);
    assert!(p.capture_on_handshake);
    let v = board_top_verilog(&m, true).unwrap();
    for needle in [
        "module qmac_board_top (",
        "(* keep_hierarchy *)",
        "qmac_top u_dut (",
        ".clk_i(clk)",
        ".rst_i(ctl_q[2])",
        ".a_data_i(isr[3:0])",
        ".w_data_i(isr[7:4])",
        ".prm_addr_i(isr[10:8])",
        ".prm_wdata_i(isr[18:11])",
        ".y_ready_i(ctl_q[7])",
        "reg  [19:0] isr;",
        "isr <= {isr[15:0], din};",
        "cap_q <= dut_y_valid_o & ctl_q[7];",
        "out_q <= {dut_y_data_o};",
        "if (cap_q) osr <= out_q;",
        "sts_q <= {dut_y_valid_o, dut_y_last_o, dut_w_ready_o, dut_a_ready_o};",
    ] {
        assert!(v.contains(needle), "`{needle}` missing in\n{v}");
    }
    assert!(!board_top_verilog(&m, false).unwrap().contains("keep_hierarchy"));
    // every port of the top is connected exactly once
    for port in &m.ports {
        assert_eq!(v.matches(&format!(".{}(", port.name)).count(), 1, "{}", port.name);
    }
}

#[test]
fn board_wrapper_handles_odd_tops() {
    // more 1-bit inputs than ctl pins and more 1-bit outputs than sts pins, no y handshake
    let mut ports = vec![serde_json::json!({"name": "clk_i", "direction": "input", "width": 1})];
    for i in 0..8 {
        ports.push(serde_json::json!({"name": format!("in{i}"), "direction": "input", "width": 1}));
        ports.push(serde_json::json!({"name": format!("out{i}"), "direction": "output", "width": 1}));
    }
    let m: Manifest =
        serde_json::from_value(serde_json::json!({"top": "odd_top", "ports": ports, "derived": {"macs_per_cycle": 1}}))
            .unwrap();
    let p = plan(&m).unwrap();
    assert_eq!(p.ctl_inputs.len(), 6);
    assert_eq!(p.in_bits, 2);
    assert_eq!(p.sts_outputs.len(), 4);
    assert_eq!(p.out_bits, 4);
    assert!(!p.capture_on_handshake);
    let v = board_top_verilog(&m, true).unwrap();
    assert!(v.contains("cap_q <= ~sh;"), "{v}");
    assert!(v.contains("always @(posedge clk) if (ld) isr <= din;"), "{v}");
    assert!(v.contains(".in7(isr[1])"), "{v}");

    let bad: Result<Manifest, _> = serde_json::from_value(
        serde_json::json!({"top": "t", "ports": [{"name": "x", "direction": "inout", "width": 1}]}),
    );
    assert!(bad.is_err());
}
