//! The two jobs behind `qmac net quantize` and `qmac net sim`, from files to an output directory.

use super::chain::{quantize, QCompute, QuantizedNet};
use super::calibrate::ActQuant;
use super::data::{self, npy_f32, npy_i64, npy_u8};
use super::float::{accuracy, argmax};
use super::format::{Network, OutputMode};
use super::lower::lower;
use super::report::{self, NetReport, Times};
use super::rtl::{simulate, RtlOptions};
use super::NetError;
use crate::outdir::Kind;
use crate::quantize::replace_dir;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// Names of the arrays in a data file.
#[derive(Clone, Debug)]
pub struct DataNames {
    /// Samples.
    pub x: String,
    /// Labels.
    pub y: String,
}

impl Default for DataNames {
    fn default() -> Self {
        DataNames {
            x: "x".into(),
            y: "y".into(),
        }
    }
}

/// `out` may be replaced as a directory of `kind` (crate::outdir): checked before the work starts.
fn replaceable(out: &Path, kind: Kind) -> Result<(), NetError> {
    crate::outdir::check(out, kind).map_err(|e| crate::quantize::QuantizeError::from(e).into())
}

/// What [`quantize_to_dir`] did.
#[derive(Clone, Debug)]
pub struct QuantizeNetRun {
    /// The quantized network.
    pub net: QuantizedNet,
    /// Float and integer-reference accuracy on the calibration set (if it has labels).
    pub calib_accuracy: Option<(f64, f64)>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// `qmac net quantize`: read the description, the weights and the calibration set; calibrate, quantize
/// every layer; write `network.json`, `net.toml` and `quantize.md` into `out` (all at once; an existing
/// `out` is replaced only if empty or written by `qmac net quantize`).
pub fn quantize_to_dir(
    model: &Path,
    weights: &Path,
    calib: &Path,
    names: &DataNames,
    out: &Path,
) -> Result<QuantizeNetRun, NetError> {
    let t0 = Instant::now();
    replaceable(out, Kind::Net)?;
    let net = Network::from_file(model)?;
    let stages = lower(&net, weights)?;
    let classes = stages
        .iter()
        .rev()
        .find_map(|s| {
            if let super::lower::Stage::Compute(c) = s {
                Some(c.output.len())
            } else {
                None
            }
        })
        .unwrap_or(0);
    let (x, _) = crate::quantize::read_tensor(calib, Some(&names.x))?;
    let n = x.len() / net.input.len().max(1);
    if n == 0 || x.len() != n * net.input.len() {
        return Err(NetError::Data { path: calib.to_path_buf(), message: format!("samples `{}` have {} values, not a whole number of samples of the network input {}", names.x, x.len(), net.input) });
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(NetError::Data { path: calib.to_path_buf(), message: format!("samples `{}` value {i} is {}, not finite", names.x, x[i]) });
    }
    let d = data::read(calib, &names.x, &names.y, net.input, classes).ok();
    let q = quantize(
        &net,
        stages,
        &x,
        n,
        &weights.display().to_string(),
        &calib.display().to_string(),
    )?;
    let calib_accuracy = match d {
        Some(d) => {
            let run = q.run(&d.x, d.n, |_, _, _| Ok(()))?;
            let fl = argmax(&q.float_output(&d.x, d.n), classes);
            Some((accuracy(&fl, &d.y), accuracy(&q.predict(&run), &d.y)))
        }
        None => None,
    };
    let model_text = std::fs::read_to_string(model).map_err(|source| NetError::Io {
        path: model.to_path_buf(),
        source,
    })?;
    let files = vec![
        ("network.json".to_string(), q.to_json().into_bytes()),
        ("net.toml".to_string(), model_text.into_bytes()),
        (
            "quantize.md".to_string(),
            quantize_md(&q, calib_accuracy).into_bytes(),
        ),
    ];
    replace_dir(out, Kind::Net, &files)?;
    Ok(QuantizeNetRun {
        net: q,
        calib_accuracy,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn clips_text(c: &QCompute) -> String {
    match &c.act {
        ActQuant::Logits => "-".into(),
        ActQuant::Bases { scheme, scales } => format!("{} scales {}", scheme.name(), scales.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(", ")),
        ActQuant::Pact(clips) => {
            let (lo, hi) = clips.iter().fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
            if clips.iter().all(|&v| v == clips[0]) {
                format!("clip {lo:.4}")
            } else {
                format!("{} clips {lo:.4}..{hi:.4}", clips.len())
            }
        }
    }
}

/// A compute layer's output as the tables show it: `pact 4`, `bases ls2 (2)`, `logits (27 bits)`.
pub fn output_text(c: &QCompute) -> String {
    match &c.act {
        ActQuant::Pact(_) => format!("pact {}", c.layer.output.bits),
        ActQuant::Bases { scheme, scales } => format!("bases {} ({})", scheme.name(), scales.len()),
        ActQuant::Logits => format!("logits ({} bits)", c.layer.output.bits),
    }
}

/// `quantize.md`: the calibration, every compute layer's quantization and array.
pub fn quantize_md(q: &QuantizedNet, calib_accuracy: Option<(f64, f64)>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# qmac net quantize: {}\n", q.network.name);
    let rule = match q.calibration.percentile {
        Some(p) => format!("{} {p}", q.calibration.rule),
        None => q.calibration.rule.clone(),
    };
    let _ = writeln!(
        s,
        "Calibration: rule {rule} on {} samples of {}; input PACT {} bits, clip {:.4}.\n",
        q.calibration.samples, q.calibration.file, q.input.bits, q.input.alpha
    );
    if let Some((f, r)) = calib_accuracy {
        let _ = writeln!(
            s,
            "Accuracy on the calibration set: float {:.2} %, integer reference {:.2} %.\n",
            100.0 * f,
            100.0 * r
        );
    }
    let hw = q.hardware().unwrap_or_default();
    let _ = writeln!(
        s,
        "| layer | K | out | weights | output | clips, scales | bias F | array |\n|---|---|---|---|---|---|---|---|"
    );
    for (i, c) in q.computes().iter().enumerate() {
        let array = hw
            .iter()
            .find(|h| h.layers.contains(&i))
            .map(|h| super::chain::array_name(&h.config))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} {} | {} | {} | {} {} {} | {} | {} | {} | {array} |",
            c.index,
            c.name,
            c.layer.geometry.k,
            c.layer.geometry.out_channels,
            c.layer.weights.scheme.name(),
            c.layer.weights.bits,
            c.layer.weights.granularity.name(),
            output_text(c),
            clips_text(c),
            c.layer.config.bias_frac_bits
        );
    }
    let _ = writeln!(
        s,
        "\n{} array(s): {}.",
        hw.len(),
        hw.iter()
            .map(|h| super::chain::array_name(&h.config))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
}

/// Options of [`simulate_dir`].
#[derive(Clone, Debug)]
pub struct NetSimOptions {
    /// Run the RTL (else the integer reference only).
    pub rtl: Option<RtlOptions>,
    /// Clock of the throughput figure, MHz.
    pub clock_mhz: f64,
}

/// `qmac net sim`: run the data set through the float network, the integer reference and (with
/// `opts.rtl`) every layer in Verilator; write `sim/` into `dir`: each layer's output codes
/// (`layers/NN-name.npy`, `[N, ...]` channel-major; `int64` logits for a logits layer), `logits.npy`
/// (real values), `logits-int.npy` (the integers they come from), `report.json` and `report.md`.
pub fn simulate_dir(
    dir: &Path,
    data_path: &Path,
    names: &DataNames,
    opts: &NetSimOptions,
) -> Result<NetReport, NetError> {
    let q = QuantizedNet::load(dir)?;
    let classes = q.classes();
    let d = data::read(data_path, &names.x, &names.y, q.network.input, classes)?;
    let out = dir.join("sim");
    replaceable(&out, Kind::NetSim)?;
    let t0 = Instant::now();
    let float_pred = argmax(&q.float_output(&d.x, d.n), classes);
    let reference = q.run(&d.x, d.n, |_, _, _| Ok(()))?;
    let ref_acc = accuracy(&q.predict(&reference), &d.y);
    let t_ref = t0.elapsed().as_secs_f64();
    let rtl = match &opts.rtl {
        Some(o) => Some(simulate(&q, &d.x, d.n, o)?),
        None => None,
    };
    let final_run = rtl.as_ref().map_or(&reference, |r| &r.run);
    let rtl_acc = rtl
        .as_ref()
        .map(|r| accuracy(&q.predict(&r.run), &d.y));
    let times = Times {
        reference: t_ref,
        build: rtl.as_ref().map_or(0.0, |r| r.build_time.as_secs_f64()),
        simulate: rtl.as_ref().map_or(0.0, |r| r.sim_time.as_secs_f64()),
    };
    let rep = report::report(
        &q,
        &data_path.display().to_string(),
        d.n,
        (accuracy(&float_pred, &d.y), ref_acc, rtl_acc),
        rtl.as_ref(),
        opts.clock_mhz,
        times,
    );
    // outputs
    let mut files = Vec::new();
    for (c, st) in q.computes().iter().zip(&final_run.stages) {
        let mut shape = vec![d.n];
        shape.extend(match c.output {
            super::Shape::Flat(f) => vec![f],
            super::Shape::Image(s) => s.to_vec(),
        });
        let npy = if c.mode == OutputMode::Logits { npy_i64(&shape, &final_run.logits) } else { npy_u8(&shape, &st.codes) };
        files.push((format!("layers/{:02}-{}.npy", c.index, c.name), npy));
    }
    files.push(("logits.npy".into(), npy_f32(&[d.n, classes], &final_run.real)));
    files.push(("logits-int.npy".into(), npy_i64(&[d.n, classes], &final_run.logits)));
    files.push((
        "report.json".into(),
        (serde_json::to_string_pretty(&rep).expect("report serialises") + "\n").into_bytes(),
    ));
    files.push(("report.md".into(), report::markdown(&rep).into_bytes()));
    replace_dir(&out, Kind::NetSim, &files)?;
    Ok(rep)
}
