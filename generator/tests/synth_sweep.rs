//! A small sweep end to end: two points in parallel (one generated, one whose generator fails) plus a
//! baseline, then sweep.json, sweep.md and a well-formed sweep.svg.

mod synth_common;

use qmac::synth::report::SeedRun;
use qmac::synth::sweep::{sweep_markdown, sweep_svg};
use qmac::synth::{sweep, SweepMode, SweepOptions, SweepPoint, SweepSummary, SynthOptions, Target};

#[test]
fn sweep_runs_points_in_parallel_and_writes_summaries() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let point =
        |w, a| SweepPoint { target: Target::Ice40Up5k, rows: 2, cols: 2, lanes: 1, weight_bits: w, act_bits: a, dsp: None, plain: None };
    let points = [point(2, 2), point(3, 3)];
    let opts = SweepOptions {
        out_dir: out.clone(),
        jobs: 2,
        synth: SynthOptions { bitstream: false, ..SynthOptions::new(Target::Ice40Up5k) },
        mode: SweepMode::WithBaseline,
        progress: true,
        command: None,
    };
    let summary = sweep(&points, &opts, |p: &SweepPoint, dir: &std::path::Path| {
        if p.weight_bits == 3 {
            return Err(format!("no generator for {}", p.label()));
        }
        synth_common::write_build_dir(dir);
        Ok(())
    })
    .unwrap();

    assert_eq!(summary.results.len(), 2);
    let ok = &summary.results[0];
    assert_eq!(ok.point, points[0]);
    assert!(ok.errors.is_empty(), "{:?}", ok.errors);
    let q = ok.qmac.as_ref().expect("generated design synthesised");
    let b = ok.baseline.as_ref().expect("baseline synthesised");
    assert!(q.resources.lut4.used > 0 && b.resources.lut4.used > q.resources.lut4.used);
    let failed = &summary.results[1];
    assert!(failed.qmac.is_none());
    assert_eq!(failed.errors, ["generate: no generator for w3a3"]);
    assert!(failed.baseline.is_some(), "the baseline does not need the generator");
    assert_eq!(summary.failures(), 1);
    assert!(out.join("ice40-up5k/2x2-w2a2/synth/ice40-up5k/qor.json").is_file());
    assert!(out.join("ice40-up5k/2x2-w3a3-baseline/synth/ice40-up5k/qor.json").is_file());

    let json: SweepSummary = serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json.results.len(), 2);
    assert_eq!(json.results[0].qmac.as_ref().unwrap().resources, q.resources);

    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(md.contains("| ice40-up5k | 2x2 | 2 | 2 | qmac | "), "{md}");
    assert!(md.contains("| ice40-up5k | 2x2 | 3 | 3 | baseline | "), "{md}");
    assert!(md.contains("failed: generate: no generator for w3a3"), "{md}");
    let ratio = format!("{:.3}x", q.luts_per_mac / b.luts_per_mac);
    assert!(md.contains(&ratio), "{ratio} missing in\n{md}");
    assert!(!md.contains("median of"), "one seed per design: {md}");
    // with several seeds per design the table says its fmax is a median
    let mut several = json.clone();
    let runs = (1..=3).map(|seed| SeedRun { seed, fmax_mhz: q.fmax_mhz }).collect();
    several.results[0].qmac.as_mut().unwrap().seed_runs = runs;
    assert!(sweep_markdown(&several).contains("fmax is the median of 3 place-and-route runs"));

    let svg = std::fs::read_to_string(out.join("sweep.svg")).unwrap();
    let elements = synth_common::check_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    assert!(elements > 30);
    for needle in [
        "<svg",
        "LUT4 per MAC",
        "fmax",
        "w2a2",
        "w3a3",
        "precision",
        "ice40-up5k 2x2 qmac",
        "ice40-up5k 2x2 baseline",
        "<polyline",
    ] {
        assert!(svg.contains(needle), "{needle} missing in the plot");
    }
}

#[test]
fn empty_and_failed_sweeps_still_plot() {
    let s = SweepSummary { mode: SweepMode::Generated, command: None, results: vec![] };
    let svg = sweep_svg(&s);
    synth_common::check_xml(&svg).unwrap();
    assert!(svg.contains("no successful runs"));
    // the checker itself rejects broken XML
    assert!(synth_common::check_xml("<svg><g></svg>").is_err());
    assert!(synth_common::check_xml("<svg><text a=\"1>x</text></svg>").is_err());
}
