//! The quantization-error report: `report.json` and `report.md`.
//!
//! * The chosen scheme's weight error against the float weights (MSE and largest absolute error),
//!   for the whole tensor and for each output channel.
//! * Every scheme on the same tensor at the spec's granularity, so a user can choose: SAWB at 1 to 8
//!   bits, uniform signed at 2 to 8 bits, ls-1 (1 bit), ls-2 and ls-T (two binary bases), gf-k (1 to
//!   4 bases), and learnable levels at 1 to 8 bits (one table per layer, fitted, in `level_bits`
//!   fixed point), each with the array encoding it loads as.
//! * The integer parameters of each output channel and the real values they approximate, and the
//!   run-time table (codebook levels or basis-pair scales).
//! * With inputs: the layer output's error against float ([`super::OutputError`]).

use super::{codebook, GranularityName, LayerVectors, QuantizeError, QuantizedLayer, WeightScheme};
use qmac_arith::quant::{lsq, sawb, uniform, ErrorReport, ErrorStats, Granularity};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// One scheme's error on the weight tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemeRow {
    /// Scheme name: `sawb`, `uniform`, `ls1`, `ls2`, `lsT`, `gf`, `levels`.
    pub scheme: &'static str,
    /// Bits per weight (binary schemes: the number of bases).
    pub bits: u32,
    /// The array's weight encoding the scheme loads as: `odd`, `int`, `bases` (ls-2, ls-T, gf-k with
    /// 2 or more bases: needs binary activations) or `codebook` (levels); `None` if it cannot load.
    pub encoding: Option<&'static str>,
    /// Error over the tensor.
    pub error: ErrorStats,
    /// True for the spec's scheme and bits.
    pub chosen: bool,
}

/// Weight error of the chosen scheme and of the alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightReport {
    /// Chosen scheme: per tensor and per output channel (always per output channel, whatever the
    /// granularity, so channels the quantizer fits badly show up).
    pub chosen: ErrorReport,
    /// Every scheme at the spec's granularity, sorted by bits then scheme.
    pub comparison: Vec<SchemeRow>,
}

/// Compute the weight report of a quantized layer.
pub fn weight_report(q: &QuantizedLayer) -> Result<WeightReport, QuantizeError> {
    let out = q.geometry.out_channels;
    let w = q.weights.float_flat();
    let err = |what: &str| {
        let what = what.to_string();
        move |source| QuantizeError::Quant { what, source }
    };
    let chosen = ErrorReport::new(&w, &q.weights.dequantized(), Granularity::PerChannel { axis0_len: out }).map_err(err("weight error"))?;
    let g = match q.weights.granularity {
        GranularityName::PerTensor => Granularity::PerTensor,
        GranularityName::PerChannel => Granularity::PerChannel { axis0_len: out },
    };
    let rounding = q.rounding();
    let is = |s: WeightScheme, b: u32| q.weights.scheme == s && q.weights.bits == b;
    let mut rows = Vec::new();
    for bits in 1..=8 {
        let e = sawb::quantize(&w, g, bits).and_then(|r| r.error_report(&w)).map_err(err("sawb"))?;
        rows.push(SchemeRow { scheme: "sawb", bits, encoding: Some("odd"), error: e.tensor, chosen: is(WeightScheme::Sawb, bits) });
        if bits >= 2 {
            let e = uniform::signed(&w, g, bits, rounding).and_then(|r| r.error_report(&w)).map_err(err("uniform"))?;
            rows.push(SchemeRow { scheme: "uniform", bits, encoding: Some("int"), error: e.tensor, chosen: is(WeightScheme::Uniform, bits) });
        }
    }
    let binary = [
        ("ls1", WeightScheme::Ls1, lsq::BinaryScheme::Ls1, 1, "odd"),
        ("ls2", WeightScheme::Ls2, lsq::BinaryScheme::Ls2, 2, "bases"),
        ("lsT", WeightScheme::LsT, lsq::BinaryScheme::LsTernary, 2, "bases"),
        ("gf", WeightScheme::Gf, lsq::BinaryScheme::Greedy { bases: 1 }, 1, "odd"),
        ("gf", WeightScheme::Gf, lsq::BinaryScheme::Greedy { bases: 2 }, 2, "bases"),
        ("gf", WeightScheme::Gf, lsq::BinaryScheme::Greedy { bases: 3 }, 3, "bases"),
        ("gf", WeightScheme::Gf, lsq::BinaryScheme::Greedy { bases: 4 }, 4, "bases"),
    ];
    for (name, ws, scheme, bits, enc) in binary {
        let e = lsq::quantize(&w, g, scheme).and_then(|r| r.error_report(&w)).map_err(err(name))?;
        rows.push(SchemeRow { scheme: name, bits, encoding: Some(enc), error: e.tensor, chosen: is(ws, bits) });
    }
    let level_bits = q.spec.array.level_bits;
    for bits in 1..=8 {
        let (codes, cb) = codebook(&w, bits, None, level_bits, rounding)?;
        let step = 2f64.powi(-cb.exponent);
        let approx: Vec<f64> = codes.iter().map(|&c| cb.ints[c as usize] as f64 * step).collect();
        let e = ErrorStats::between(&w, &approx).map_err(err("levels"))?;
        rows.push(SchemeRow { scheme: "levels", bits, encoding: Some("codebook"), error: e, chosen: is(WeightScheme::Levels, bits) });
    }
    // the chosen row is the error of the codes written (a trained level table, for example)
    for r in rows.iter_mut().filter(|r| r.chosen) {
        r.error = chosen.tensor;
    }
    rows.sort_by_key(|r| (r.bits, r.scheme));
    Ok(WeightReport { chosen, comparison: rows })
}

fn stats_json(s: &ErrorStats) -> Value {
    json!({ "mse": s.mse, "max_abs": s.max_abs })
}

/// `report.json`.
pub fn report_json(q: &QuantizedLayer, wr: &WeightReport, run: Option<&LayerVectors>) -> Value {
    let cfg = q.config().ok();
    let mut v = json!({
        "format": "qmac-quantize-report 1",
        "source": q.source,
        "layer": {
            "layout": q.geometry.layout,
            "weight_shape": q.geometry.weight_shape,
            "out_channels": q.geometry.out_channels,
            "k": q.geometry.k,
            "k_order": q.geometry.k_order,
            "conv": q.geometry.conv,
        },
        "weights": {
            "scheme": q.weights.scheme,
            "bits": q.weights.bits,
            "encoding": q.weights.encoding,
            "granularity": q.weights.granularity,
            "scales": q.weights.scales,
            "basis_scales": q.weights.basis_scales,
            "levels": q.weights.levels,
            "error": stats_json(&wr.chosen.tensor),
            "per_channel": wr.chosen.per_channel.iter().map(stats_json).collect::<Vec<_>>(),
        },
        "comparison": wr.comparison.iter().map(|r| json!({
            "scheme": r.scheme,
            "bits": r.bits,
            "granularity": q.weights.granularity,
            "loadable": r.encoding.is_some(),
            "encoding": r.encoding,
            "mse": r.error.mse,
            "max_abs": r.error.max_abs,
            "chosen": r.chosen,
        })).collect::<Vec<_>>(),
        "input": q.input,
        "output": q.output,
        "channels": q.channels,
        "table": (0..q.geometry.out_channels.div_ceil(q.config.cols.max(1) as usize)).map(|g| q.table(g)).collect::<Vec<_>>(),
        "config": {
            "name": cfg.as_ref().map(|c| c.short_name()),
            "acc_bits": cfg.as_ref().map(|c| c.acc_bits()),
            "exact_acc_bits": cfg.as_ref().map(|c| c.exact_acc_bits()),
            "mult_bits": q.config.mult_bits,
            "max_shift": cfg.as_ref().map(|c| c.max_shift()),
        },
    });
    if let Some(r) = run {
        v["run"] = json!({
            "patches": r.patches,
            "out_channels": r.out_channels,
            "out_hw": r.out_hw,
            "tiles": r.layers.iter().map(|l| l.items.len()).sum::<usize>(),
            "output_error_vs_float": stats_json(&r.error.vs_float),
            "codes_vs_float": r.error.codes_vs_float,
            "codes_vs_quantized_float": r.error.codes_vs_quantized,
        });
    }
    v
}

fn g(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e-3 && x.abs() < 1e5 {
        format!("{x:.5}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{x:.4e}")
    }
}

/// `report.md`.
pub fn report_markdown(q: &QuantizedLayer, wr: &WeightReport, run: Option<&LayerVectors>) -> String {
    let mut s = String::new();
    let geo = &q.geometry;
    let _ = writeln!(s, "# Quantization report: `{}`\n", q.source.tensor);
    let _ = writeln!(s, "- Source: `{}`, tensor `{}`{}", q.source.weights_file, q.source.tensor, q.source.bias.as_ref().map(|b| format!(", bias `{b}`")).unwrap_or_default());
    let kind = match &geo.conv {
        Some(c) => format!("convolution, weights {:?}, stride {:?}, padding {:?}, dilation {:?}, lowered with im2col", geo.weight_shape, c.stride, c.padding, c.dilation),
        None => format!("fully connected, weights {:?}", geo.weight_shape),
    };
    let _ = writeln!(s, "- Layer: {kind}; GEMM with {} output channels and K = {} ({})", geo.out_channels, geo.k, geo.k_order);
    let wenc = match q.config.weight_encoding {
        crate::config::EncodingName::Bases => "bases",
        crate::config::EncodingName::Codebook => "codebook",
        _ => q.weights.enc().name(),
    };
    let wbits = match (&q.weights.levels, q.config.weight_encoding) {
        (Some(l), _) => format!("{} bits ({} levels, {})", q.weights.bits, l.levels.len(), if l.fitted { "fitted to the weights" } else { "trained table from the spec" }),
        (None, crate::config::EncodingName::Bases) => format!("{} bases", q.weights.bits),
        _ => format!("{} bits", q.weights.bits),
    };
    let _ = writeln!(s, "- Weights: {} {wbits}, {}, `{wenc}` codes", q.weights.scheme.name(), q.weights.granularity.name());
    if q.input.scheme.is_binary() {
        let v: Vec<String> = q.input.basis_scales.iter().map(|&x| g(x)).collect();
        let from = if q.input.calibrated { "calibrated on the given inputs" } else { "from the spec" };
        let _ = writeln!(s, "- Input: {} {} bases (`bases` codes), basis scales [{}] ({from})", q.input.scheme.name(), q.input.bits, v.join(", "));
    } else {
        let _ = writeln!(s, "- Input: PACT {} bits, alpha {}, scale {}", q.input.bits, g(q.input.alpha), g(q.input.scale));
    }
    let alphas = &q.output.alphas;
    let out_alpha = if alphas.iter().all(|&a| a == alphas[0]) { g(alphas[0]) } else { "per channel (below)".into() };
    let _ = writeln!(s, "- Output: PACT {} bits, alpha {out_alpha}", q.output.bits);
    let _ = writeln!(s, "- Rounding: {}", q.rounding().name());
    if let Ok(cfg) = q.config() {
        let widened = if cfg.acc_bits() > cfg.exact_acc_bits() { format!(" (widened from {} for the bias and clip)", cfg.exact_acc_bits()) } else { String::new() };
        let _ = writeln!(s, "- Array: `{}`, acc_bits {}{widened}, mult_bits {}, max_depth {} (`config.toml`)", cfg.short_name(), cfg.acc_bits(), cfg.mult_bits, cfg.max_depth);
    }

    let _ = writeln!(s, "\n## Weight quantization error\n");
    let _ = writeln!(s, "| | MSE | max abs error |\n|---|---|---|");
    let _ = writeln!(s, "| tensor | {} | {} |", g(wr.chosen.tensor.mse), g(wr.chosen.tensor.max_abs));
    let _ = writeln!(s, "\nPer output channel:\n\n| channel | scale | MSE | max abs error |\n|---|---|---|---|");
    for (o, e) in wr.chosen.per_channel.iter().enumerate() {
        let scale = if q.weights.basis_scales.is_empty() { g(q.weights.scale(o)) } else { q.weights.basis_scales_of(o).iter().map(|&u| g(u)).collect::<Vec<_>>().join(", ") };
        let _ = writeln!(s, "| {o} | {scale} | {} | {} |", g(e.mse), g(e.max_abs));
    }

    let _ = writeln!(s, "\n## Scheme comparison ({}, same tensor)\n", q.weights.granularity.name());
    let _ = writeln!(s, "`loadable`: the array encoding the scheme loads as. `odd` and `int` take any input scheme; `bases` (ls-2, ls-T, gf-k with 2 or more bases) needs binary input activations (ls1, ls2, lsT, gf); `codebook` (learnable levels, one table per layer whatever the granularity, levels fitted and in `level_bits` = {} fixed point) takes PACT inputs. Binary schemes: bits = number of bases.\n", q.spec.array.level_bits);
    let table = |s: &mut String, rows: &mut dyn Iterator<Item = &SchemeRow>| {
        let _ = writeln!(s, "| scheme | bits | loadable | MSE | max abs error | |\n|---|---|---|---|---|---|");
        for r in rows {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} |", r.scheme, r.bits, r.encoding.map(|e| format!("yes (`{e}`)")).unwrap_or_else(|| "no".into()), g(r.error.mse), g(r.error.max_abs), if r.chosen { "**chosen**" } else { "" });
        }
    };
    let _ = writeln!(s, "At {} bits:\n", q.weights.bits);
    table(&mut s, &mut wr.comparison.iter().filter(|r| r.bits == q.weights.bits));
    let _ = writeln!(s, "\nAll bit-widths:\n");
    table(&mut s, &mut wr.comparison.iter());

    let _ = writeln!(s, "\n## Integer parameters per output channel\n");
    if q.is_bases() {
        let _ = writeln!(s, "`acc scale` = max over basis pairs of u[i] v[j], / (2^(level_bits - 1) - 1); the array computes `acc = sum_p m[p] D_p` and then `min(round(clamp(acc + bias, 0, alpha) * mult / 2^shift), 2^out_bits - 1)`.\n");
    } else {
        let _ = writeln!(s, "`acc scale` = weight scale x input scale; the array computes `min(round(clamp(acc + bias, 0, alpha) * mult / 2^shift), 2^out_bits - 1)`.\n");
    }
    let _ = writeln!(s, "| channel | acc scale | bias (real) | alpha (real) | mult / 2^shift (real) | rel. error | notes |\n|---|---|---|---|---|---|---|");
    for (o, c) in q.channels.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {o} | {} | {} ({}) | {} ({}) | {} / 2^{} ({}) | {} | {} |",
            g(c.acc_scale),
            c.bias,
            g(c.bias_real),
            c.alpha,
            g(c.alpha_real),
            c.mult,
            c.shift,
            g(c.mult_real),
            g(c.mult_rel_error),
            c.notes.join("; ")
        );
    }

    if let Some(l) = &q.weights.levels {
        let _ = writeln!(s, "\n## Run-time table: codebook levels\n");
        let _ = writeln!(s, "Integer level = round(level x 2^{}), {} bits signed; the array multiplies it by the input code.\n", l.exponent, q.config.level_bits);
        let _ = writeln!(s, "| code | level | integer level | value |\n|---|---|---|---|");
        for (c, (&f, &i)) in l.levels.iter().zip(&l.ints).enumerate() {
            let _ = writeln!(s, "| {c} | {} | {i} | {} |", g(f), g(i as f64 * 2f64.powi(-l.exponent)));
        }
    }
    if q.is_bases() {
        let (wb, ab) = (q.weights.bits, q.input.bits);
        let _ = writeln!(s, "\n## Run-time table: basis-pair scales\n");
        let _ = writeln!(s, "Pair p = i * {ab} + j (weight basis i, input basis j): m[p] = round(u[i] v[j] / acc scale), {} bits signed; in brackets u[i] v[j] / acc scale.\n", q.config.level_bits);
        let pairs: Vec<String> = (0..wb).flat_map(|i| (0..ab).map(move |j| format!("m (w{i}, a{j})"))).collect();
        let _ = writeln!(s, "| channel | {} |\n|---|{}", pairs.join(" | "), "---|".repeat(pairs.len()));
        for (o, c) in q.channels.iter().enumerate() {
            let u = q.weights.basis_scales_of(o);
            let cells: Vec<String> = c
                .pair_scales
                .iter()
                .enumerate()
                .map(|(p, &m)| {
                    let (i, j) = (p / ab as usize, p % ab as usize);
                    let real = if c.acc_scale > 0.0 { u[i] * q.input.basis_scales[j] / c.acc_scale } else { 0.0 };
                    format!("{m} ({})", g(real))
                })
                .collect();
            let _ = writeln!(s, "| {o} | {} |", cells.join(" | "));
        }
    }

    if let Some(r) = run {
        let e = &r.error;
        let _ = writeln!(s, "\n## Layer run on the given inputs\n");
        let _ = writeln!(s, "{} GEMM rows x {} output channels; {} tiles in `vectors.txt`.\n", r.patches, r.out_channels, r.layers.iter().map(|l| l.items.len()).sum::<usize>());
        let _ = writeln!(s, "| comparison | result |\n|---|---|");
        let _ = writeln!(s, "| output (code x scale) vs float output clipped to [0, alpha]: MSE | {} |", g(e.vs_float.mse));
        let _ = writeln!(s, "| output vs float: max abs error | {} |", g(e.vs_float.max_abs));
        let pct = |a: usize, t: usize| if t == 0 { "-".to_string() } else { format!("{:.2} %", 100.0 * a as f64 / t as f64) };
        for (name, c) in [("PACT of the float output", &e.codes_vs_float), ("PACT of float math on the quantized weights and inputs", &e.codes_vs_quantized)] {
            let _ = writeln!(s, "| codes equal to {name} | {} |", pct(c.exact, c.total));
            let _ = writeln!(s, "| codes within one of {name} | {} (largest difference {}) |", pct(c.within_one, c.total), c.max_diff);
        }
    }
    s
}
