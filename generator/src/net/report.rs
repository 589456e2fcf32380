//! The report of `qmac net sim`: accuracies (float, integer reference, RTL), every layer's bit-exact
//! verdict and cycles, the builds, and the throughput at a clock; as JSON and as a Markdown table.

use super::chain::{CalibrationRecord, QuantizedNet};
use super::rtl::{ModelBuild, RtlRun};
use serde::Serialize;
use std::fmt::Write as _;

/// One compute layer's row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRow {
    /// Index in `net.toml`.
    pub index: usize,
    /// Name.
    pub name: String,
    /// `dense` or `conv2d`.
    pub kind: String,
    /// The array it runs on.
    pub array: String,
    /// Weight scheme and bits.
    pub weights: String,
    /// Output mode and bits.
    pub output: String,
    /// Output codes per run.
    pub codes: usize,
    /// Bit-exact against the reference (None: not simulated).
    pub bit_exact: Option<bool>,
    /// The testbench's failure.
    pub failure: Option<String>,
    /// Simulated cycles of the layer over all samples.
    pub cycles: Option<u64>,
}

/// Wall times, seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Times {
    /// The float network and the integer reference.
    pub reference: f64,
    /// Verilator builds (0 for cached models).
    pub build: f64,
    /// Testbench runs.
    pub simulate: f64,
}

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetReport {
    /// Network name.
    pub network: String,
    /// The data file.
    pub data: String,
    /// Samples.
    pub samples: usize,
    /// How the clips were calibrated.
    pub calibration: CalibrationRecord,
    /// Float network accuracy.
    pub float_accuracy: f64,
    /// Integer reference accuracy.
    pub reference_accuracy: f64,
    /// Accuracy of the codes the RTL sent (None without the RTL).
    pub rtl_accuracy: Option<f64>,
    /// Every layer bit-exact (None without the RTL).
    pub bit_exact: Option<bool>,
    /// Compute layers.
    pub layers: Vec<LayerRow>,
    /// Simulated cycles per inference (all layers, parameter loads included).
    pub cycles_per_inference: Option<f64>,
    /// The clock of the throughput figure, MHz.
    pub clock_mhz: f64,
    /// Inferences per second at that clock.
    pub inferences_per_second: Option<f64>,
    /// The Verilator builds.
    pub builds: Vec<ModelBuild>,
    /// Wall times.
    pub seconds: Times,
}

/// Build the report.
pub fn report(
    q: &QuantizedNet,
    data: &str,
    samples: usize,
    accuracies: (f64, f64, Option<f64>),
    rtl: Option<&RtlRun>,
    clock_mhz: f64,
    seconds: Times,
) -> NetReport {
    let hw = q.hardware().unwrap_or_default();
    let layers: Vec<LayerRow> = q
        .computes()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let r = rtl.and_then(|r| r.layers.get(i));
            let array = hw
                .iter()
                .find(|h| h.layers.contains(&i))
                .map(|h| super::chain::array_name(&h.config))
                .unwrap_or_default();
            let output = super::flow::output_text(c);
            LayerRow {
                index: c.index,
                name: c.name.clone(),
                kind: if c.conv.is_some() { "conv2d" } else { "dense" }.into(),
                array,
                weights: format!(
                    "{} {} {}",
                    c.layer.weights.scheme.name(),
                    c.layer.weights.bits,
                    c.layer.weights.granularity.name()
                ),
                output,
                codes: r.map_or(0, |r| r.codes),
                bit_exact: r.map(|r| r.bit_exact),
                failure: r.and_then(|r| r.failure.clone()),
                cycles: r.map(|r| r.cycles),
            }
        })
        .collect();
    let cycles =
        rtl.map(|r| r.layers.iter().map(|l| l.cycles).sum::<u64>() as f64 / samples.max(1) as f64);
    NetReport {
        network: q.network.name.clone(),
        data: data.into(),
        samples,
        calibration: q.calibration.clone(),
        float_accuracy: accuracies.0,
        reference_accuracy: accuracies.1,
        rtl_accuracy: accuracies.2,
        bit_exact: rtl.map(|r| r.layers.iter().all(|l| l.bit_exact)),
        layers,
        cycles_per_inference: cycles,
        clock_mhz,
        inferences_per_second: cycles.map(|c| clock_mhz * 1e6 / c.max(1.0)),
        builds: rtl.map(|r| r.builds.clone()).unwrap_or_default(),
        seconds,
    }
}

fn pct(v: f64) -> String {
    format!("{:.2} %", 100.0 * v)
}

/// The report as Markdown.
pub fn markdown(r: &NetReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# qmac net sim: {} on {} ({} samples)\n",
        r.network, r.data, r.samples
    );
    let cal = match r.calibration.percentile {
        Some(p) => format!("{} {p}", r.calibration.rule),
        None => r.calibration.rule.clone(),
    };
    let _ = writeln!(
        s,
        "Clips calibrated on {} samples of {} by rule {cal}.\n",
        r.calibration.samples, r.calibration.file
    );
    let _ = writeln!(s, "| accuracy | value |\n|---|---|");
    let _ = writeln!(s, "| float | {} |", pct(r.float_accuracy));
    let _ = writeln!(s, "| integer reference | {} |", pct(r.reference_accuracy));
    let _ = writeln!(
        s,
        "| RTL (Verilator) | {} |",
        r.rtl_accuracy.map_or("not simulated".into(), pct)
    );
    let _ = writeln!(s, "\n| layer | type | array | weights | output | codes | bit-exact | cycles |\n|---|---|---|---|---|---|---|---|");
    for l in &r.layers {
        let exact = match (l.bit_exact, &l.failure) {
            (None, _) => "-".to_string(),
            (Some(true), _) => "yes".to_string(),
            (Some(false), f) => format!("NO ({})", f.as_deref().unwrap_or("")),
        };
        let _ = writeln!(
            s,
            "| {} {} | {} | {} | {} | {} | {} | {exact} | {} |",
            l.index,
            l.name,
            l.kind,
            l.array,
            l.weights,
            l.output,
            l.codes,
            l.cycles.map_or("-".into(), |c| c.to_string())
        );
    }
    if let (Some(c), Some(ips)) = (r.cycles_per_inference, r.inferences_per_second) {
        let _ = writeln!(s, "\n{c:.1} cycles per inference (every layer, parameter loads included, no stalls): {ips:.0} inferences/s at {} MHz.", r.clock_mhz);
    }
    if !r.builds.is_empty() {
        let _ = writeln!(s, "\n| array | layers | model |\n|---|---|---|");
        for b in &r.builds {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                b.array,
                b.layers.join(", "),
                if b.cached {
                    "cached".to_string()
                } else {
                    format!("built in {:.1} s", b.seconds)
                }
            );
        }
    }
    let _ = writeln!(
        s,
        "\nTimes: reference {:.2} s, Verilator builds {:.2} s, simulation {:.2} s.",
        r.seconds.reference, r.seconds.build, r.seconds.simulate
    );
    s
}
