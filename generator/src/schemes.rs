//! The quantization schemes side by side: their error on a sample layer and, with a target, their
//! hardware cost at one array shape (`qmac schemes`).
//!
//! The sample layer is synthetic and seeded: weights `[64][576]` drawn from a Laplace distribution
//! (the shape of trained convolution weights, a 3x3x64 kernel per output channel) and 64 input rows of
//! ReLU(N(0, 1)) activations (half of them zero, as after a ReLU). For each scheme the weights and the
//! activations are quantized with the quantizers of [`qmac_arith::quant`] and dequantized, and three
//! errors are reported: the relative mean squared error of the weights and of the activations
//! (`sum (q - x)^2 / sum x^2`), and the relative RMS error of the layer output `Y = X W^T`
//! (`||Y_q - Y|| / ||Y||`), which is what a user feels.
//!
//! Each scheme also names the array configuration that computes it (encodings, widths); with a
//! target, every configuration is generated at the same shape and run through `qmac synth`, and the
//! table gains LUT4 per MAC and fmax.

use crate::config::{Config, EncodingName, OutputUnitsName, RawConfig};
use crate::rng::Rng;
use qmac_arith::quant::{levels::LevelTable, lsq, pact, sawb, uniform, Granularity, QuantError};
use qmac_arith::round::Rounding;
use serde::Serialize;

/// Output channels of the sample layer.
pub const SAMPLE_COUT: usize = 64;
/// Reduction depth K of the sample layer (3 x 3 x 64).
pub const SAMPLE_K: usize = 576;
/// Input rows of the sample layer.
pub const SAMPLE_ROWS: usize = 64;

/// The seeded sample layer.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Weights, `[SAMPLE_COUT][SAMPLE_K]` row-major.
    pub weights: Vec<f32>,
    /// Activations, `[SAMPLE_ROWS][SAMPLE_K]` row-major.
    pub acts: Vec<f32>,
}

impl Sample {
    /// The sample for `seed`.
    pub fn new(seed: u64) -> Sample {
        let mut rng = Rng::new(seed);
        let mut unit = move || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let weights = (0..SAMPLE_COUT * SAMPLE_K)
            .map(|_| {
                // Laplace(0, b = 0.05) by inversion
                let u = unit() - 0.5;
                (-0.05 * u.signum() * (1.0 - 2.0 * u.abs()).ln()) as f32
            })
            .collect();
        let acts = (0..SAMPLE_ROWS * SAMPLE_K)
            .map(|_| {
                // Box-Muller, then ReLU
                let (u1, u2) = (unit(), unit());
                let n = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                n.max(0.0) as f32
            })
            .collect();
        Sample { weights, acts }
    }
}

/// A weight quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightQ {
    /// Symmetric uniform two's complement, per output channel.
    Uniform(u32),
    /// SAWB, per output channel.
    Sawb(u32),
    /// Learnable levels: a per-layer table of 2^k levels (fitted here by `LevelTable::fit`).
    Levels(u32),
    /// Least-squares binary bases, per output channel.
    Binary(Bin),
}

/// An activation quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActQ {
    /// PACT with the clip level that minimizes the sample's squared error.
    Pact(u32),
    /// Least-squares binary bases, per tensor.
    Binary(Bin),
}

/// A least-squares binary scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bin {
    /// ls-1.
    Ls1,
    /// ls-2.
    Ls2,
    /// ls-T.
    LsT,
    /// gf-k.
    Gf(u32),
}

impl Bin {
    fn scheme(self) -> lsq::BinaryScheme {
        match self {
            Bin::Ls1 => lsq::BinaryScheme::Ls1,
            Bin::Ls2 => lsq::BinaryScheme::Ls2,
            Bin::LsT => lsq::BinaryScheme::LsTernary,
            Bin::Gf(k) => lsq::BinaryScheme::Greedy { bases: k },
        }
    }
    fn name(self) -> String {
        match self {
            Bin::Ls1 => "ls-1".into(),
            Bin::Ls2 => "ls-2".into(),
            Bin::LsT => "ls-T".into(),
            Bin::Gf(k) => format!("gf-{k}"),
        }
    }
}

impl WeightQ {
    /// A short name.
    pub fn name(self) -> String {
        match self {
            WeightQ::Uniform(b) => format!("uniform {b}b"),
            WeightQ::Sawb(b) => format!("SAWB {b}b"),
            WeightQ::Levels(b) => format!("levels {b}b"),
            WeightQ::Binary(s) => s.name(),
        }
    }
}

impl ActQ {
    /// A short name.
    pub fn name(self) -> String {
        match self {
            ActQ::Pact(b) => format!("PACT {b}b"),
            ActQ::Binary(s) => s.name(),
        }
    }
}

/// The schemes compared, in table order.
pub fn catalogue() -> Vec<(WeightQ, ActQ)> {
    use ActQ::Pact;
    use Bin::*;
    vec![
        (WeightQ::Uniform(4), Pact(4)),
        (WeightQ::Sawb(4), Pact(4)),
        (WeightQ::Levels(4), Pact(4)),
        (WeightQ::Uniform(2), Pact(2)),
        (WeightQ::Sawb(2), Pact(2)),
        (WeightQ::Levels(2), Pact(2)),
        (WeightQ::Binary(Ls1), Pact(2)),
        (WeightQ::Binary(Ls1), ActQ::Binary(Ls1)),
        (WeightQ::Binary(Ls1), ActQ::Binary(LsT)),
        (WeightQ::Binary(Ls1), ActQ::Binary(Gf(2))),
        (WeightQ::Binary(Ls1), ActQ::Binary(Ls2)),
        (WeightQ::Binary(Ls2), ActQ::Binary(Ls2)),
        (WeightQ::Binary(Gf(3)), ActQ::Binary(Gf(3))),
    ]
}

/// The array configuration that computes `(w, a)`, at shape `base` (rows, cols, lanes, depth, output).
pub fn config_for(w: WeightQ, a: ActQ, base: &RawConfig) -> Result<Config, crate::config::ConfigError> {
    let mut r = base.clone();
    (r.weight_encoding, r.weight_bits) = match w {
        WeightQ::Uniform(b) => (EncodingName::Int, b),
        WeightQ::Sawb(b) => (EncodingName::Odd, b),
        WeightQ::Levels(b) => (EncodingName::Codebook, b),
        WeightQ::Binary(s) if s.scheme().bases() == 1 => (EncodingName::Odd, 1),
        WeightQ::Binary(s) => (EncodingName::Bases, s.scheme().bases()),
    };
    (r.act_encoding, r.act_bits) = match a {
        ActQ::Pact(b) => (EncodingName::Unsigned, b),
        ActQ::Binary(s) if s.scheme().bases() == 1 => (EncodingName::Odd, 1),
        ActQ::Binary(s) => (EncodingName::Bases, s.scheme().bases()),
    };
    if r.weight_encoding == EncodingName::Odd && r.act_encoding == EncodingName::Bases {
        // ls-1 weights against multi-basis activations: one weight basis
        r.weight_encoding = EncodingName::Bases;
    }
    Config::new(r)
}

/// One row of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct SchemeRow {
    /// Weight scheme.
    pub weights: String,
    /// Activation scheme.
    pub activations: String,
    /// The configuration's short name (encodings and widths).
    pub config: String,
    /// Relative MSE of the weights.
    pub weight_rel_mse: f64,
    /// Relative MSE of the activations.
    pub act_rel_mse: f64,
    /// Relative RMS error of the layer output.
    pub output_rel_err: f64,
    /// The synthesis report's LUT4 per MAC, with a target.
    pub luts_per_mac: Option<f64>,
    /// LUT4 used, with a target.
    pub lut4: Option<u64>,
    /// fmax in MHz, with a target.
    pub fmax_mhz: Option<f64>,
    /// Why synthesis failed, if it did.
    pub synth_error: Option<String>,
}

fn rel_mse(x: &[f32], q: &[f64]) -> f64 {
    let num: f64 = x.iter().zip(q).map(|(a, b)| (f64::from(*a) - b).powi(2)).sum();
    let den: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
    num / den
}

/// `X W^T` for `[rows][k]` and `[cout][k]`.
fn matmul(x: &[f64], w: &[f64], k: usize) -> Vec<f64> {
    x.chunks(k).flat_map(|xr| w.chunks(k).map(move |wr| xr.iter().zip(wr).map(|(a, b)| a * b).sum::<f64>())).collect()
}

fn quantize_weights(w: &[f32], q: WeightQ) -> Result<Vec<f64>, QuantError> {
    let g = Granularity::PerChannel { axis0_len: SAMPLE_COUT };
    Ok(match q {
        WeightQ::Uniform(b) => uniform::signed(w, g, b, Rounding::HalfEven)?.dequantize_f64(),
        WeightQ::Sawb(b) => sawb::quantize(w, g, b)?.dequantize_f64(),
        WeightQ::Levels(b) => LevelTable::fit(b, w)?.quantize(w)?.dequantize_f64(),
        WeightQ::Binary(s) => lsq::quantize(w, g, s.scheme())?.dequantize_f64(),
    })
}

fn quantize_acts(x: &[f32], q: ActQ) -> Result<Vec<f64>, QuantError> {
    Ok(match q {
        ActQ::Pact(b) => {
            // the clip level with the least squared error, on a grid of 1/40 of the maximum
            let max = x.iter().fold(0.0f64, |m, &v| m.max(f64::from(v)));
            let mut best: Option<(f64, Vec<f64>)> = None;
            for i in 1..=40 {
                let alpha = max * f64::from(i) / 40.0;
                let d = pact::quantize(x, Granularity::PerTensor, &[alpha], b, Rounding::HalfEven)?.dequantize_f64();
                let e = rel_mse(x, &d);
                if best.as_ref().is_none_or(|(be, _)| e < *be) {
                    best = Some((e, d));
                }
            }
            best.expect("40 candidates").1
        }
        ActQ::Binary(s) => lsq::quantize(x, Granularity::PerTensor, s.scheme())?.dequantize_f64(),
    })
}

/// The error columns of every scheme of [`catalogue`] on the sample of `seed`, with the configuration
/// at shape `base`.
pub fn compare(seed: u64, base: &RawConfig) -> anyhow::Result<Vec<(SchemeRow, Config)>> {
    let s = Sample::new(seed);
    let wf: Vec<f64> = s.weights.iter().map(|&v| f64::from(v)).collect();
    let xf: Vec<f64> = s.acts.iter().map(|&v| f64::from(v)).collect();
    let y = matmul(&xf, &wf, SAMPLE_K);
    let ynorm: f64 = y.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut out = Vec::new();
    for (wq, aq) in catalogue() {
        let wd = quantize_weights(&s.weights, wq)?;
        let xd = quantize_acts(&s.acts, aq)?;
        let yq = matmul(&xd, &wd, SAMPLE_K);
        let err: f64 = y.iter().zip(&yq).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        let cfg = config_for(wq, aq, base)?;
        out.push((
            SchemeRow {
                weights: wq.name(),
                activations: aq.name(),
                config: cfg.short_name(),
                weight_rel_mse: rel_mse(&s.weights, &wd),
                act_rel_mse: rel_mse(&s.acts, &xd),
                output_rel_err: err / ynorm,
                luts_per_mac: None,
                lut4: None,
                fmax_mhz: None,
                synth_error: None,
            },
            cfg,
        ));
    }
    Ok(out)
}

/// The default shape of the hardware comparison: 4 x 4 PEs x 8 lanes, K up to 576, 2-bit outputs
/// (threshold stage), one shared output unit.
pub fn default_shape() -> RawConfig {
    RawConfig { rows: 4, cols: 4, lanes: 8, max_depth: SAMPLE_K as u32, out_bits: Some(2), output_units: OutputUnitsName::Shared, ..RawConfig::default() }
}

/// The table as Markdown.
pub fn markdown(rows: &[SchemeRow]) -> String {
    let mut s = String::from("| weights | activations | array config | weight rel. MSE | act. rel. MSE | output rel. error | LUT4/MAC | LUT4 | fmax MHz |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
        let lut4 = r.lut4.map_or_else(|| r.synth_error.clone().map_or("-".into(), |e| format!("failed: {e}")), |v| v.to_string());
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {} | {} | {} |\n",
            r.weights, r.activations, r.config, r.weight_rel_mse, r.act_rel_mse, r.output_rel_err, opt(r.luts_per_mac, 2), lut4, opt(r.fmax_mhz, 1)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scheme maps to a valid configuration (multi-basis schemes to `bases` with their basis
    /// counts), and on the sample more bits or bases give a smaller layer-output error within a family.
    #[test]
    fn schemes_map_to_configs_and_errors_order_by_precision() {
        let rows = compare(7, &default_shape()).unwrap();
        assert_eq!(rows.len(), catalogue().len());
        let get = |w: &str, a: &str| rows.iter().find(|(r, _)| r.weights == w && r.activations == a).unwrap().0.output_rel_err;
        assert!(get("uniform 4b", "PACT 4b") < get("uniform 2b", "PACT 2b"));
        assert!(get("SAWB 4b", "PACT 4b") < get("SAWB 2b", "PACT 2b"));
        assert!(get("ls-1", "ls-2") < get("ls-1", "ls-1"));
        assert!(get("ls-2", "ls-2") < get("ls-1", "ls-2"));
        for ((r, c), (wq, aq)) in rows.iter().zip(catalogue()) {
            assert!(r.output_rel_err > 0.0 && r.output_rel_err < 1.5, "{r:?}");
            let bases = |b: Option<Bin>| b.map_or(0, |b| b.scheme().bases());
            let wb = bases(if let WeightQ::Binary(b) = wq { Some(b) } else { None });
            let ab = bases(if let ActQ::Binary(b) = aq { Some(b) } else { None });
            let want = if wb.max(ab) > 1 { Some((wb, ab)) } else { None };
            assert_eq!(c.bases(), want, "{r:?} -> {}", c.short_name());
        }
    }
}

/// `qmac schemes`: compare the quantization schemes.
#[derive(clap::Args, Debug, Clone)]
pub struct SchemesArgs {
    /// Seed of the sample layer.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also generate every scheme's array at the same shape and run `qmac synth` on it (ice40-up5k,
    /// ice40-hx8k, ecp5-25k, ecp5-85k): adds LUT4 per MAC, LUT4 and fmax to the table.
    #[arg(long)]
    pub target: Option<crate::synth::Target>,
    /// PE rows of the hardware comparison.
    #[arg(long, default_value_t = 4)]
    pub rows: u32,
    /// PE columns of the hardware comparison.
    #[arg(long, default_value_t = 4)]
    pub cols: u32,
    /// Lanes of the hardware comparison.
    #[arg(long, default_value_t = 8)]
    pub lanes: u32,
    /// Parallel synthesis runs (default: the number of cores).
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Output directory: schemes.json, schemes.md and one build directory per scheme.
    #[arg(short = 'o', long, default_value = "build/schemes")]
    pub out: std::path::PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Run `qmac schemes`.
pub fn run(args: &SchemesArgs) -> anyhow::Result<()> {
    let base = RawConfig { rows: args.rows, cols: args.cols, lanes: args.lanes, ..default_shape() };
    let rows = compare(args.seed, &base)?;
    // everything goes to a temporary directory that replaces `args.out` at the end (crate::outdir)
    let staged = crate::outdir::Staged::begin(&args.out, crate::outdir::Kind::Schemes)?;
    let root = staged.path().to_path_buf();
    let mut table: Vec<SchemeRow> = rows.iter().map(|(r, _)| r.clone()).collect();
    if let Some(target) = args.target {
        let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
        let opts = crate::synth::SynthOptions { bitstream: false, ..crate::synth::SynthOptions::new(target) };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results = std::sync::Mutex::new(vec![None; rows.len()]);
        std::thread::scope(|s| {
            for _ in 0..jobs.min(rows.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((row, cfg)) = rows.get(i) else { break };
                    let dir = root.join(format!("{i:02}-{}", cfg.short_name()));
                    let r = crate::emit::write(cfg, &dir).map_err(anyhow::Error::from).and_then(|_| crate::synth::synth(&dir, &opts).map_err(anyhow::Error::from));
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    match &r {
                        Ok(rep) => eprintln!("[{n}/{}] {} x {} ({}) done: {} LUT4, {:.1} MHz", rows.len(), row.weights, row.activations, row.config, rep.resources.lut4.used, rep.fmax_mhz),
                        Err(e) => eprintln!("[{n}/{}] {} x {} ({}) FAILED: {e}", rows.len(), row.weights, row.activations, row.config),
                    }
                    results.lock().expect("no panics while locked")[i] = Some(r.map_err(|e| e.to_string()));
                });
            }
        });
        for (row, r) in table.iter_mut().zip(results.into_inner().expect("no panics while locked")) {
            match r {
                Some(Ok(rep)) => {
                    row.luts_per_mac = Some(rep.luts_per_mac);
                    row.lut4 = Some(rep.resources.lut4.used);
                    row.fmax_mhz = Some(rep.fmax_mhz);
                }
                Some(Err(e)) => row.synth_error = Some(e.lines().next().unwrap_or("").replace(&root.display().to_string(), &args.out.display().to_string())),
                None => {}
            }
        }
    }
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "seed": args.seed,
        "sample": { "weights": [SAMPLE_COUT, SAMPLE_K], "activations": [SAMPLE_ROWS, SAMPLE_K] },
        "shape": { "rows": args.rows, "cols": args.cols, "lanes": args.lanes },
        "target": args.target.map(|t| t.to_string()),
        "schemes": table,
    }))? + "\n";
    let md = markdown(&table);
    staged.write("schemes.json", &json)?;
    staged.write("schemes.md", &md)?;
    staged.commit()?;
    if args.json {
        print!("{json}");
    } else {
        print!("{md}");
        println!("(JSON and Markdown: {})", args.out.display());
    }
    if table.iter().any(|r| r.synth_error.is_some()) {
        anyhow::bail!("synthesis failed for some schemes (see the table)");
    }
    Ok(())
}
