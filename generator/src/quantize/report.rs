//! The quantization-error report: `report.json` and `report.md`.
//!
//! * The chosen scheme's weight error against the float weights (MSE and largest absolute error),
//!   for the whole tensor and for each output channel.
//! * Every scheme on the same tensor at the spec's granularity, so a user can choose: SAWB at 1 to 8
//!   bits, uniform signed at 2 to 8 bits, ls-1 (1 bit), and ls-2 and ls-T (two binary bases, 2 bits;
//!   not loadable on the array as one weight code, listed for comparison).
//! * The integer parameters of each output channel and the real values they approximate.
//! * With inputs: the layer output's error against float ([`super::OutputError`]).

use super::{GranularityName, LayerVectors, QuantizeError, QuantizedLayer, WeightScheme};
use qmac_arith::quant::{lsq, sawb, uniform, ErrorReport, ErrorStats, Granularity};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// One scheme's error on the weight tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemeRow {
    /// Scheme name: `sawb`, `uniform`, `ls1`, `ls2`, `lsT`.
    pub scheme: &'static str,
    /// Bits per weight (for ls-2 and ls-T: two binary bases).
    pub bits: u32,
    /// The array's weight encoding if the scheme loads as one code per weight, else `None`.
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
    for (name, scheme, bits, enc) in [("ls1", lsq::BinaryScheme::Ls1, 1, Some("odd")), ("ls2", lsq::BinaryScheme::Ls2, 2, None), ("lsT", lsq::BinaryScheme::LsTernary, 2, None)] {
        let e = lsq::quantize(&w, g, scheme).and_then(|r| r.error_report(&w)).map_err(err(name))?;
        rows.push(SchemeRow { scheme: name, bits, encoding: enc, error: e.tensor, chosen: name == "ls1" && is(WeightScheme::Ls1, 1) });
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
    let _ = writeln!(s, "- Weights: {} {} bits, {}, `{}` codes", q.weights.scheme.name(), q.weights.bits, q.weights.granularity.name(), q.weights.enc().name());
    let _ = writeln!(s, "- Input: PACT {} bits, alpha {}, scale {}", q.input.bits, g(q.input.alpha), g(q.input.scale));
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
        let _ = writeln!(s, "| {o} | {} | {} | {} |", g(q.weights.scale(o)), g(e.mse), g(e.max_abs));
    }

    let _ = writeln!(s, "\n## Scheme comparison ({}, same tensor)\n", q.weights.granularity.name());
    let _ = writeln!(s, "`loadable`: one code per weight in the array's `odd` or `int` encoding. ls-2 and ls-T use two binary bases (two passes), listed for comparison.\n");
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
    let _ = writeln!(s, "`acc scale` = weight scale x input scale; the array computes `min(round(clamp(acc + bias, 0, alpha) * mult / 2^shift), 2^out_bits - 1)`.\n");
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
