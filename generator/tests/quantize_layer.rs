//! `qmac quantize` on whole layers: weight codes and scales against the quantizers, parameters
//! against the configuration, the array's outputs (reference model on the produced tiles) against
//! the float layer, im2col against a direct convolution, and the output directory.

use qmac::config::Config;
use qmac::quantize::{self, layer_vectors, quantize_layer, LayerTensors, LayerVectors, QuantizedLayer, Source, Spec};
use qmac::reference::{basis_sign, check_params, tile_outputs_table};
use qmac::rng::Rng;
use qmac::vectors::{render, Item};
use qmac_arith::pipeline::{output_code_frac, ChannelParams};
use qmac_arith::quant::{lsq, sawb, uniform, Granularity, Rounding};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;

fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Roughly normal values (sum of 4 uniforms), mean 0, standard deviation `sd`.
fn normal(rng: &mut Rng, n: usize, sd: f64) -> Vec<f32> {
    (0..n).map(|_| ((0..4).map(|_| unit(rng)).sum::<f64>() - 2.0) * sd * 3f64.sqrt() as f32 as f64).map(|v| v as f32).collect()
}

fn uniform01(rng: &mut Rng, n: usize, hi: f64) -> Vec<f32> {
    (0..n).map(|_| (unit(rng) * hi) as f32).collect()
}

struct SpecOpts<'a> {
    scheme: &'a str,
    bits: u32,
    granularity: &'a str,
    layout: &'a str,
    conv: &'a str,
    in_bits: u32,
    in_alpha: f64,
    out_bits: u32,
    out_alpha: String,
    array: &'a str,
    bias: bool,
    /// Replaces the `[input]` section's body (PACT `bits` and `alpha`) when not empty.
    input: &'a str,
    /// Extra `[weights]` lines (a level table).
    weights_extra: &'a str,
}

impl Default for SpecOpts<'_> {
    fn default() -> Self {
        SpecOpts { scheme: "sawb", bits: 2, granularity: "per_channel", layout: "fc", conv: "", in_bits: 4, in_alpha: 2.0, out_bits: 4, out_alpha: "3.0".into(), array: "rows = 3\ncols = 4\nlanes = 5\n", bias: true, input: "", weights_extra: "" }
    }
}

fn spec_text(o: &SpecOpts) -> String {
    format!(
        "[weights]\ntensor = \"layer.weight\"\n{}scheme = \"{}\"\nbits = {}\ngranularity = \"{}\"\nlayout = \"{}\"\n{}{}\n[input]\n{}\n\n[output]\nscheme = \"pact\"\nbits = {}\nalpha = {}\n\n[array]\n{}",
        if o.bias { "bias = \"layer.bias\"\n" } else { "" },
        o.scheme,
        o.bits,
        o.granularity,
        o.layout,
        o.weights_extra,
        if o.conv.is_empty() { String::new() } else { format!("\n[conv]\n{}", o.conv) },
        if o.input.is_empty() { format!("bits = {}\nalpha = {:?}", o.in_bits, o.in_alpha) } else { o.input.to_string() },
        o.out_bits,
        o.out_alpha,
        o.array
    )
}

fn quantize(o: &SpecOpts, w: &[f32], shape: &[usize], bias: &[f32]) -> QuantizedLayer {
    let spec = Spec::from_toml(&spec_text(o), "test").unwrap();
    let t = LayerTensors::new(&spec, w.to_vec(), shape.to_vec(), o.bias.then(|| bias.to_vec())).unwrap();
    quantize_layer(&spec, &t, Source { weights_file: "memory".into(), tensor: "layer.weight".into(), bias: None }).unwrap()
}

/// Integer value of each code of `q`, decoded here from the encodings' definitions.
fn decode(q: &QuantizedLayer, code: u64) -> i64 {
    let b = q.weights.bits;
    match q.config.weight_encoding {
        qmac::config::EncodingName::Odd => 2 * code as i64 - ((1i64 << b) - 1),
        qmac::config::EncodingName::Int => ((code << (64 - b)) as i64) >> (64 - b),
        qmac::config::EncodingName::Unsigned => code as i64,
        qmac::config::EncodingName::Codebook | qmac::config::EncodingName::Bases => panic!("this test covers the single-code schemes"),
    }
}

/// Every code is in range and `scale * value(code)` is the quantizer's own dequantization.
#[test]
fn codes_decode_to_the_quantizers_dequantization() {
    let mut rng = Rng::new(1);
    let (out, k) = (6, 20);
    let w = normal(&mut rng, out * k, 0.3);
    let bias = normal(&mut rng, out, 0.1);
    for (scheme, bits_list) in [("sawb", vec![1u32, 2, 3, 4, 8]), ("uniform", vec![2, 4, 8]), ("ls1", vec![1])] {
        for &bits in &bits_list {
            for gran in ["per_tensor", "per_channel"] {
                let o = SpecOpts { scheme, bits, granularity: gran, ..SpecOpts::default() };
                let q = quantize(&o, &w, &[out, k], &bias);
                let g = if gran == "per_tensor" { Granularity::PerTensor } else { Granularity::PerChannel { axis0_len: out } };
                let want: Vec<f64> = match scheme {
                    "sawb" => sawb::quantize(&w, g, bits).unwrap().dequantize_f64(),
                    "uniform" => uniform::signed(&w, g, bits, Rounding::HalfEven).unwrap().dequantize_f64(),
                    _ => lsq::quantize(&w, g, lsq::BinaryScheme::Ls1).unwrap().dequantize_f64(),
                };
                assert_eq!(q.weights.scales.len(), g.channels(), "{scheme}{bits} {gran}");
                for oc in 0..out {
                    for kk in 0..k {
                        let c = q.weights.codes[oc][kk];
                        assert!(c < 1 << bits, "{scheme}{bits}: code {c} out of range");
                        let got = q.weights.scale(oc) * decode(&q, c) as f64;
                        assert_eq!(got, want[oc * k + kk], "{scheme}{bits} {gran} [{oc}][{kk}]");
                    }
                }
                // the derived configuration matches the weights
                let cfg = q.config().unwrap();
                assert_eq!(cfg.weight_bits, bits);
                assert_eq!(cfg.weight_enc().name(), if scheme == "uniform" { "int" } else { "odd" });
                assert_eq!(cfg.act_enc().name(), "unsigned");
                assert_eq!(cfg.max_depth, 20); // K = 20 is a multiple of lanes = 5
            }
        }
    }
}

/// The derived parameters fit the derived configuration's field widths, for many layers.
#[test]
fn channel_params_pass_check_params() {
    let mut rng = Rng::new(2);
    for case in 0..40 {
        let out = 1 + rng.below(11) as usize;
        let k = 1 + rng.below(70) as usize;
        let sd = [1e-3, 0.05, 0.5, 4.0][case % 4];
        let w = normal(&mut rng, out * k, sd);
        let bias = normal(&mut rng, out, [0.0, 0.2, 5.0, 50.0][(case / 4) % 4]);
        let scheme = ["sawb", "uniform", "ls1"][case % 3];
        let bits = match scheme {
            "sawb" => 1 + rng.below(8) as u32,
            "uniform" => 2 + rng.below(7) as u32,
            _ => 1,
        };
        let cols = 1 + rng.below(8);
        let array = format!("rows = {}\ncols = {cols}\nlanes = {}\nmult_bits = {}\n", 1 + rng.below(8), 1 + rng.below(8), [8, 12, 16, 24][case % 4]);
        let o = SpecOpts { scheme, bits, in_bits: 1 + rng.below(8) as u32, out_bits: 1 + rng.below(8) as u32, in_alpha: 0.5 + unit(&mut rng) * 4.0, out_alpha: format!("{:?}", 0.1 + unit(&mut rng) * 6.0), array: &array, ..SpecOpts::default() };
        let q = quantize(&o, &w, &[out, k], &bias);
        let cfg = q.config().unwrap();
        let params = q.params();
        assert_eq!(params.len(), out);
        for chunk in params.chunks(cfg.cols as usize) {
            let mut full = chunk.to_vec();
            full.resize(cfg.cols as usize, ChannelParams { bias: 0, alpha: 0, mult: 0, shift: 0 });
            check_params(&cfg, &full).unwrap_or_else(|e| panic!("case {case}: {e}"));
        }
        // the largest shift that keeps mult within mult_bits: doubling the multiplier would not fit
        // (unless the shift is at its maximum or the channel is constant)
        for (i, c) in q.channels.iter().enumerate() {
            if c.mult > 0 && c.shift < cfg.max_shift() && c.notes.is_empty() {
                let doubled = (c.mult_real * 2f64.powi(c.shift as i32 + 1)).round_ties_even();
                assert!(doubled > ((1u64 << cfg.mult_bits) - 1) as f64, "case {case} channel {i}: shift {} is not the largest ({c:?})", c.shift);
                assert!(c.mult_rel_error < 2f64.powi(-(cfg.mult_bits as i32) + 1), "case {case} channel {i}: {c:?}");
            }
        }
    }
}

/// The array's output codes, re-derived here from the tiles with the reference model.
fn outputs_from_tiles(lv: &LayerVectors) -> Vec<u64> {
    let cfg = &lv.config;
    let (rows, cols) = (cfg.rows as usize, cfg.cols as usize);
    let out = lv.out_channels;
    let mut y = vec![u64::MAX; lv.patches * out];
    for (g, layer) in lv.layers.iter().enumerate() {
        for (b, item) in layer.items.iter().enumerate() {
            let Item::Tile(steps) = item else { panic!("only complete tiles") };
            assert_eq!(steps.len() as u32, cfg.max_steps());
            let t = tile_outputs_table(cfg, steps, &layer.params, &layer.table);
            for r in 0..rows {
                for c in 0..cols {
                    let (p, o) = (b * rows + r, g * cols + c);
                    if p < lv.patches && o < out {
                        y[p * out + o] = t[r * cols + c];
                    }
                }
            }
        }
    }
    assert!(y.iter().all(|&v| v != u64::MAX), "every output covered by a tile");
    y
}

fn pact(y: f64, alpha: f64, bits: u32) -> u64 {
    let n = ((1u64 << bits) - 1) as f64;
    (y.clamp(0.0, alpha) / (alpha / n)).round_ties_even().clamp(0.0, n) as u64
}

/// End to end on a fully connected layer: the array's codes against PACT of the float layer.
///
/// Tolerance: within one code for at least 99 % of the outputs. Not exact, because the array computes
/// with the quantized weights and inputs (8-bit here, so their error is small against the 4-bit output
/// step but still moves outputs that lie near a rounding boundary by one code), and with the rounded
/// integer bias, clip and multiplier. Against float math on the *quantized* weights and inputs every
/// output must be within one code and at least 99 % equal: there only the integer parameters' rounding
/// is left.
#[test]
fn fc_outputs_match_float_pact_within_one_code() {
    let mut rng = Rng::new(3);
    let (out, k, n) = (10, 48, 40);
    let w = normal(&mut rng, out * k, 0.2);
    let bias = normal(&mut rng, out, 0.3);
    let x = uniform01(&mut rng, n * k, 2.2); // some inputs above the input clip 2.0
    let o = SpecOpts { scheme: "uniform", bits: 8, in_bits: 8, in_alpha: 2.0, out_alpha: "2.5".into(), array: "rows = 4\ncols = 3\nlanes = 5\n", ..SpecOpts::default() };
    let q = quantize(&o, &w, &[out, k], &bias);
    let lv = layer_vectors(&q, &x, &[n, k]).unwrap();
    assert_eq!((lv.patches, lv.out_channels), (n, out));
    assert_eq!(lv.layers.len(), 4); // ceil(10 / 3) column groups
    assert!(lv.layers.iter().all(|l| l.items.len() == 10)); // ceil(40 / 4) row blocks
    let hw = outputs_from_tiles(&lv);
    assert_eq!(hw, lv.codes);
    let n_in = 255.0;
    let s_a = 2.0 / n_in;
    let (mut within_float, mut exact_q, mut within_q) = (0, 0, 0);
    let mut spread = std::collections::BTreeSet::new();
    for p in 0..n {
        for oc in 0..out {
            let xf = &x[p * k..(p + 1) * k];
            let wf = &w[oc * k..(oc + 1) * k];
            let y: f64 = wf.iter().zip(xf).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() + f64::from(bias[oc]);
            let want = pact(y, 2.5, 4);
            let got = hw[p * out + oc];
            spread.insert(want);
            within_float += usize::from(got.abs_diff(want) <= 1);
            // float math on the quantized operands
            let acc: i64 = (0..k).map(|kk| decode(&q, q.weights.codes[oc][kk]) * (f64::from(xf[kk]).clamp(0.0, 2.0) / s_a).round_ties_even() as i64).sum();
            let yq = q.weights.scale(oc) * s_a * acc as f64 + f64::from(bias[oc]);
            let wq = pact(yq, 2.5, 4);
            exact_q += usize::from(got == wq);
            within_q += usize::from(got.abs_diff(wq) <= 1);
        }
    }
    let total = n * out;
    assert!(spread.len() >= 8, "outputs must spread over the code range: {spread:?}");
    assert!(within_float * 100 >= total * 99, "{within_float} of {total} within one code of float");
    assert_eq!(within_q, total, "all within one code of float math on quantized operands");
    assert!(exact_q * 100 >= total * 99, "{exact_q} of {total} equal to float math on quantized operands");
    // the library's own summary says the same
    assert_eq!(lv.error.codes_vs_float.total, total);
    assert!(lv.error.codes_vs_float.within_one_fraction() >= 0.99);
    assert_eq!(lv.error.codes_vs_quantized.within_one, total);
    assert!(lv.error.vs_float.max_abs < 2.0 * 2.5 / 15.0, "{:?}", lv.error.vs_float);
    // the vectors render for the testbench
    let text = render(&lv.config, &lv.layers).unwrap();
    assert_eq!(text.matches("\ntile ").count(), 40);
    assert_eq!(text.matches("\nlayer ").count(), 4);
}

/// A 2-bit SAWB layer: far from float (that is the weight error), but the array still equals float
/// math on its own quantized operands within one code everywhere.
#[test]
fn low_bit_layer_matches_its_quantized_math() {
    let mut rng = Rng::new(4);
    let (out, k, n) = (7, 33, 25);
    let w = normal(&mut rng, out * k, 0.5);
    let bias = normal(&mut rng, out, 0.5);
    let x = uniform01(&mut rng, n * k, 1.0);
    let alphas: Vec<String> = (0..out).map(|i| format!("{:?}", 1.0 + 0.5 * i as f64)).collect();
    let o = SpecOpts { scheme: "sawb", bits: 2, in_bits: 4, in_alpha: 1.0, out_bits: 3, out_alpha: format!("[{}]", alphas.join(", ")), ..SpecOpts::default() };
    for rounding in ["half_even", "half_up"] {
        let spec = Spec::from_toml(&format!("rounding = \"{rounding}\"\n{}", spec_text(&o)), "test").unwrap();
        let t = LayerTensors::new(&spec, w.clone(), vec![out, k], Some(bias.clone())).unwrap();
        let q = quantize_layer(&spec, &t, Source { weights_file: "memory".into(), tensor: "layer.weight".into(), bias: None }).unwrap();
        assert_eq!(q.config.max_depth, 35); // K = 33 rounded up to lanes = 5
        assert_eq!(q.config().unwrap().rounding_rule().name(), rounding);
        let lv = layer_vectors(&q, &x, &[n, k]).unwrap();
        assert_eq!(outputs_from_tiles(&lv), lv.codes);
        assert_eq!(lv.error.codes_vs_quantized.within_one, n * out, "{rounding}: {:?}", lv.error);
        assert!(lv.error.codes_vs_quantized.exact_fraction() >= 0.97, "{rounding}: {:?}", lv.error);
    }
}

/// The finer bias: by default `qmac quantize` gives the bias enough fractional bits that its
/// rounding error is under 1/8 of an output step in every channel, and on a W2A2 layer whose
/// accumulator unit is worth about an output step that makes the array agree with float math on the
/// quantized operands far more often than a whole-unit bias (measured in docs/quantize.md).
#[test]
fn finer_bias_keeps_the_bias_error_under_an_eighth_of_a_step() {
    let mut rng = Rng::new(21);
    let (out, k, n) = (8, 40, 300);
    let w = normal(&mut rng, out * k, 0.5);
    let bias = normal(&mut rng, out, 0.5);
    let x = uniform01(&mut rng, n * k, 1.0);
    let mut agree = Vec::new();
    for frac in ["bias_frac_bits = 0\n", ""] {
        let array = format!("rows = 3\ncols = 4\nlanes = 5\n{frac}");
        let o = SpecOpts { scheme: "sawb", bits: 2, in_bits: 2, in_alpha: 1.0, out_bits: 2, out_alpha: "0.2".into(), array: &array, ..SpecOpts::default() };
        let q = quantize(&o, &w, &[out, k], &bias);
        let f = q.config.bias_frac_bits;
        for (o_, ch) in q.channels.iter().enumerate() {
            let step = q.output.scales[o_] / ch.acc_scale; // one output step in accumulator units
            let err = (ch.bias as f64 / 2f64.powi(f as i32) - ch.bias_real).abs();
            if frac.is_empty() {
                assert!(err < step / 8.0, "channel {o_}: bias error {err} with F = {f}, step {step}");
            }
        }
        let lv = layer_vectors(&q, &x, &[n, k]).unwrap();
        assert_eq!(outputs_from_tiles(&lv), lv.codes);
        eprintln!("bias_frac_bits = {f}: {:?}; vs float {:?}", lv.error.codes_vs_quantized, lv.error.codes_vs_float);
        agree.push((f, lv.error.codes_vs_quantized.exact));
    }
    let ((f0, whole), (f, fine)) = (agree[0], agree[1]);
    assert_eq!(f0, 0);
    assert!(f >= 2, "a unit is worth about an output step here, so F >= 2: {f}");
    assert!(fine > whole, "finer bias: {fine} exact codes, whole-unit bias: {whole}");
}

/// Direct 2-D convolution of `[N][C][H][W]` with `[O][C][KH][KW]`, `f` combining weight and input.
#[allow(clippy::too_many_arguments)]
fn direct_conv<T: Copy, A: Copy + std::ops::Add<Output = A>>(x: &[T], nchw: [usize; 4], o: usize, khw: [usize; 2], s: [usize; 2], p: [usize; 2], d: [usize; 2], zero: A, f: impl Fn(usize, usize, T) -> A) -> (Vec<A>, [usize; 2]) {
    let [n, c, h, w] = nchw;
    let oh = (h + 2 * p[0] - d[0] * (khw[0] - 1) - 1) / s[0] + 1;
    let ow = (w + 2 * p[1] - d[1] * (khw[1] - 1) - 1) / s[1] + 1;
    let mut y = Vec::new();
    for img in 0..n {
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = zero;
                    for ci in 0..c {
                        for ky in 0..khw[0] {
                            for kx in 0..khw[1] {
                                let iy = (oy * s[0] + ky * d[0]) as i64 - p[0] as i64;
                                let ix = (ox * s[1] + kx * d[1]) as i64 - p[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                    continue;
                                }
                                let widx = ((oc * c + ci) * khw[0] + ky) * khw[1] + kx;
                                acc = acc + f(oc, widx, x[((img * c + ci) * h + iy as usize) * w + ix as usize]);
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
    (y, [oh, ow])
}

/// A convolution lowered with im2col: the float GEMM equals a direct convolution, and the array's codes
/// equal the output pipeline applied to a direct integer convolution of the codes, exactly.
#[test]
fn conv_im2col_matches_direct_convolution() {
    let mut rng = Rng::new(5);
    for (case, (conv, kh, kw, s, p, d)) in [
        ("stride = [1, 1]\npadding = [1, 1]\n", 3, 3, [1, 1], [1, 1], [1, 1]),
        ("stride = [2, 1]\npadding = [0, 2]\ndilation = [1, 2]\n", 3, 2, [2, 1], [0, 2], [1, 2]),
        ("", 1, 1, [1, 1], [0, 0], [1, 1]),
    ]
    .into_iter()
    .enumerate()
    {
        let (n, c, h, wd, out) = (2, 3, 7, 6, 5);
        let w = normal(&mut rng, out * c * kh * kw, 0.3);
        let bias = normal(&mut rng, out, 0.2);
        let x = uniform01(&mut rng, n * c * h * wd, 1.2);
        let o = SpecOpts { scheme: "sawb", bits: 3, layout: "conv", conv, in_bits: 4, in_alpha: 1.0, out_bits: 4, out_alpha: "2.0".into(), array: "rows = 4\ncols = 2\nlanes = 4\n", ..SpecOpts::default() };
        let q = quantize(&o, &w, &[out, c, kh, kw], &bias);
        assert_eq!(q.geometry.k, c * kh * kw);
        let lv = layer_vectors(&q, &x, &[n, c, h, wd]).unwrap();
        // float: GEMM rows p = (img * OH + oy) * OW + ox against the direct convolution in NCHW
        let (yf, [oh, ow]) = direct_conv(&x, [n, c, h, wd], out, [kh, kw], s, p, d, 0.0f64, |oc, wi, v| {
            let _ = oc;
            f64::from(w[wi]) * f64::from(v)
        });
        assert_eq!(lv.out_hw, Some([oh, ow]), "case {case}");
        assert_eq!(lv.patches, n * oh * ow);
        let gemm_index = |img: usize, oc: usize, oy: usize, ox: usize| ((img * oh + oy) * ow + ox) * out + oc;
        let nchw_index = |img: usize, oc: usize, oy: usize, ox: usize| ((img * out + oc) * oh + oy) * ow + ox;
        // integer: direct convolution of the weight values and the input codes (computed here)
        let codes_in: Vec<i64> = x.iter().map(|&v| (f64::from(v).clamp(0.0, 1.0) * 15.0).round_ties_even() as i64).collect();
        let flat_codes: Vec<u64> = q.weights.codes.iter().flatten().copied().collect();
        let (acc, _) = direct_conv(&codes_in, [n, c, h, wd], out, [kh, kw], s, p, d, 0i64, |_, wi, v| decode(&q, flat_codes[wi]) * v);
        let params = q.params();
        let hw = outputs_from_tiles(&lv);
        for img in 0..n {
            for oc in 0..out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (gi, ni) = (gemm_index(img, oc, oy, ox), nchw_index(img, oc, oy, ox));
                        let want = yf[ni] + f64::from(bias[oc]);
                        assert!((lv.float_output[gi] - want).abs() <= 1e-9 * (1.0 + want.abs()), "case {case} float [{img}][{oc}][{oy}][{ox}]: {} vs {want}", lv.float_output[gi]);
                        let code = output_code_frac(acc[ni], &params[oc], Rounding::HalfEven, 4, q.config.bias_frac_bits);
                        assert_eq!(hw[gi], code, "case {case} codes [{img}][{oc}][{oy}][{ox}]");
                    }
                }
            }
        }
        // some outputs must be nonzero and some below the top, or the comparison says little
        assert!(hw.iter().any(|&v| v > 0) && hw.iter().any(|&v| v < 15), "case {case}: {hw:?}");
    }
}

/// The output codes of a binary-activation layer computed here from its codes: per-pair counts over the
/// layer's K elements only, `acc = sum_p m[p] D_p`, plus the channel's `acc_offset` (what the padded
/// elements of a tile add in the array), through the output pipeline.
fn bases_outputs_direct(q: &QuantizedLayer, lv: &LayerVectors) -> Vec<u64> {
    let k = q.geometry.k;
    let (wb, ab) = (q.weights.bits, q.input.bits);
    let mut y = Vec::new();
    for p in 0..lv.patches {
        for (o, ch) in q.channels.iter().enumerate() {
            let m = &ch.pair_scales;
            let mut acc = 0i64;
            for i in 0..wb {
                for j in 0..ab {
                    let d: i64 = (0..k).map(|kk| basis_sign(q.weights.codes[o][kk], i) * basis_sign(lv.input_codes[p * k + kk], j)).sum();
                    acc += m[(i * ab + j) as usize] * d;
                }
            }
            y.push(output_code_frac(acc + ch.acc_offset, &ch.params(), Rounding::HalfEven, q.output.bits, q.config.bias_frac_bits));
        }
    }
    y
}

/// Root-mean-square error of the array's dequantized outputs against the float layer output clipped to
/// `[0, alpha]`, relative to the root-mean-square of the latter.
fn relative_error(lv: &LayerVectors, alpha: f64) -> f64 {
    let clipped: Vec<f64> = lv.float_output.iter().map(|y| y.clamp(0.0, alpha)).collect();
    let rms = (clipped.iter().map(|v| v * v).sum::<f64>() / clipped.len() as f64).sqrt();
    lv.error.vs_float.mse.sqrt() / rms
}

/// Layers with binary activations (weights and inputs as binary bases, `bases` on the array): the
/// tiles' outputs equal the pair-count model computed here (so padded elements are compensated
/// exactly: K = 23 is not a multiple of lanes = 5), the array agrees with float math on its own
/// quantized operands (what is left is the rounding of the pair scales and of the integer bias, clip
/// and multiplier), and the output is near the float layer.
#[test]
fn bases_layers_match_their_quantized_math() {
    let mut rng = Rng::new(40);
    let (out, k, n) = (6, 23, 30);
    let w = normal(&mut rng, out * k, 0.3);
    let bias = normal(&mut rng, out, 0.3);
    let x = normal(&mut rng, n * k, 1.0);
    // (weights, bits, granularity, input section, bound on the RMS error relative to float). The
    // bounds are the binary schemes' own error with some margin (measured 0.65, 0.48, 0.50, 0.71,
    // 0.24): one ls-1 basis alone is off by sqrt(1 - 2/pi) = 0.6 of a normal weight's RMS.
    let cases = [
        ("ls1", 1, "per_channel", "scheme = \"ls2\"\nbits = 2", 0.75),
        ("ls2", 2, "per_channel", "scheme = \"gf\"\nbits = 2", 0.6),
        ("gf", 3, "per_channel", "scheme = \"lsT\"\nbits = 2", 0.6),
        ("lsT", 2, "per_tensor", "scheme = \"ls1\"\nbits = 1", 0.8),
        ("gf", 4, "per_tensor", "scheme = \"gf\"\nbits = 4", 0.3),
    ];
    for (scheme, bits, granularity, input, bound) in cases {
        let o = SpecOpts { scheme, bits, granularity, input, out_alpha: "3.0".into(), array: "rows = 4\ncols = 4\nlanes = 5\n", ..SpecOpts::default() };
        let mut spec = Spec::from_toml(&spec_text(&o), "test").unwrap();
        spec.input.scales = Some(quantize::calibrate_input_scales(&spec, &x).unwrap());
        let t = LayerTensors::new(&spec, w.clone(), vec![out, k], Some(bias.clone())).unwrap();
        let q = quantize_layer(&spec, &t, Source { weights_file: "memory".into(), tensor: "layer.weight".into(), bias: None }).unwrap();
        let name = format!("{scheme}-{bits} x {input:?}");
        let cfg = q.config().unwrap();
        assert_eq!(cfg.bases(), Some((bits, spec.input.bits)), "{name}");
        let lv = layer_vectors(&q, &x, &[n, k]).unwrap();
        assert_eq!(lv.layers.len(), 2, "{name}");
        assert!(lv.layers.iter().all(|l| l.table.len() == 4 * cfg.basis_pairs() as usize));
        assert_eq!(outputs_from_tiles(&lv), lv.codes, "{name}");
        assert_eq!(bases_outputs_direct(&q, &lv), lv.codes, "{name}");
        let total = n * out;
        let cq = lv.error.codes_vs_quantized;
        assert_eq!(cq.within_one, total, "{name}: {cq:?}");
        assert!(cq.exact * 100 >= total * 97, "{name}: {cq:?}");
        let rel = relative_error(&lv, 3.0);
        assert!(rel < bound, "{name}: relative error {rel} against float");
        // the outputs spread over the code range, so the comparisons say something
        let spread: std::collections::BTreeSet<u64> = lv.codes.iter().copied().collect();
        assert!(spread.len() >= 8, "{name}: {spread:?}");
    }
}

/// A convolution with binary activations: the zero padding gets the code of the value 0, so the layer
/// on padded codes equals the same layer without padding on an input padded with float zeros.
#[test]
fn bases_conv_padding_is_the_code_of_zero() {
    let mut rng = Rng::new(41);
    let (n, c, h, wd, out) = (2, 2, 5, 4, 3);
    let w = normal(&mut rng, out * c * 9, 0.3);
    let bias = normal(&mut rng, out, 0.2);
    let x = normal(&mut rng, n * c * h * wd, 1.0);
    let (ph, pw) = (h + 2, wd + 2);
    let mut xp = vec![0.0f32; n * c * ph * pw];
    for i in 0..n * c {
        for y in 0..h {
            for xx in 0..wd {
                xp[(i * ph + y + 1) * pw + xx + 1] = x[(i * h + y) * wd + xx];
            }
        }
    }
    let run = |conv: &str, x: &[f32], shape: &[usize]| {
        let input = "scheme = \"gf\"\nbits = 3\nscales = [0.8, 0.35, 0.15]";
        let o = SpecOpts { scheme: "ls2", bits: 2, layout: "conv", conv, input, array: "rows = 4\ncols = 2\nlanes = 4\n", ..SpecOpts::default() };
        let q = quantize(&o, &w, &[out, c, 3, 3], &bias);
        let lv = layer_vectors(&q, x, shape).unwrap();
        assert_eq!(outputs_from_tiles(&lv), lv.codes);
        assert_eq!(bases_outputs_direct(&q, &lv), lv.codes);
        lv
    };
    let padded = run("padding = [1, 1]\n", &x, &[n, c, h, wd]);
    let explicit = run("", &xp, &[n, c, ph, pw]);
    assert_eq!(padded.out_hw, explicit.out_hw);
    assert_eq!(padded.input_codes, explicit.input_codes);
    assert_eq!(padded.codes, explicit.codes);
    // the code of 0 with v = [0.8, 0.35, 0.15]: s1 = +1, then -0.8 -> -1, -0.45 -> -1: 0b001
    assert!(padded.input_codes.iter().filter(|&&c| c == 0b001).count() >= 2 * 2 * (h + wd) * 3);
}

/// Learnable levels (codebook weights) on a fully connected layer: codes are nearest levels of the
/// trained table, the array's outputs are the output pipeline on `sum level_int * input code`, and the
/// result is as close to float math on the quantized operands as for any other scheme.
#[test]
fn codebook_layer_matches_its_quantized_math() {
    let mut rng = Rng::new(42);
    let (out, k, n) = (5, 26, 30);
    let w = normal(&mut rng, out * k, 0.3);
    let bias = normal(&mut rng, out, 0.2);
    let x = uniform01(&mut rng, n * k, 1.1);
    let levels = [-0.6, -0.35, -0.18, -0.05, 0.05, 0.18, 0.35, 0.6];
    let extra = format!("levels = {levels:?}\n");
    let o = SpecOpts { scheme: "levels", bits: 3, granularity: "per_tensor", weights_extra: &extra, in_bits: 4, in_alpha: 1.0, out_alpha: "2.0".into(), array: "rows = 4\ncols = 2\nlanes = 4\nlevel_bits = 8\n", ..SpecOpts::default() };
    let q = quantize(&o, &w, &[out, k], &bias);
    let l = q.weights.levels.clone().unwrap();
    // 0.6 * 2^7 = 76.8 fits 8 bits (-128..=127), 0.6 * 2^8 does not
    assert_eq!(l.exponent, 7);
    assert_eq!(l.ints, levels.iter().map(|v: &f64| (v * 128.0).round_ties_even() as i64).collect::<Vec<_>>());
    for oc in 0..out {
        for kk in 0..k {
            let v = f64::from(w[oc * k + kk]);
            let c = q.weights.codes[oc][kk] as usize;
            assert!(levels.iter().all(|l| (v - levels[c]).abs() <= (v - l).abs()), "[{oc}][{kk}]");
        }
    }
    let lv = layer_vectors(&q, &x, &[n, k]).unwrap();
    assert_eq!(lv.layers.len(), 3);
    assert!(lv.layers.iter().all(|layer| layer.table == l.ints));
    assert_eq!(outputs_from_tiles(&lv), lv.codes);
    for p in 0..n {
        for (oc, params) in q.params().iter().enumerate() {
            let acc: i64 = (0..k).map(|kk| l.ints[q.weights.codes[oc][kk] as usize] * lv.input_codes[p * k + kk] as i64).sum();
            assert_eq!(lv.codes[p * out + oc], output_code_frac(acc, params, Rounding::HalfEven, 4, q.config.bias_frac_bits), "[{p}][{oc}]");
        }
    }
    let total = n * out;
    let cq = lv.error.codes_vs_quantized;
    assert_eq!(cq.within_one, total, "{cq:?}");
    assert!(cq.exact * 100 >= total * 97, "{cq:?}");
    let rel = relative_error(&lv, 2.0);
    assert!(rel < 0.3, "relative error {rel} against float");
    let spread: std::collections::BTreeSet<u64> = lv.codes.iter().copied().collect();
    assert!(spread.len() >= 8, "{spread:?}");
}

fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors.iter().zip(&bytes).map(|((n, s, _), b)| (*n, TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn write_npy(path: &Path, shape: &[u64], values: &[f32]) {
    use npyz::WriterBuilder;
    let mut f = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<f32>::new().default_dtype().shape(shape).writer(&mut f).begin_nd().unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// The whole job from files: outputs written all at once, readable back, reports present.
#[test]
fn quantize_to_dir_writes_a_complete_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(6);
    let (out, k, n) = (5, 12, 9);
    let w = normal(&mut rng, out * k, 0.4);
    let b = normal(&mut rng, out, 0.1);
    let weights = tmp.path().join("model.safetensors");
    write_safetensors(&weights, &[("layer.weight", vec![out, k], w.clone()), ("layer.bias", vec![out], b), ("act.alpha", vec![1], vec![2.5]), ("other", vec![2], vec![0.0, 1.0])]);
    let spec = tmp.path().join("layer.toml");
    std::fs::write(&spec, spec_text(&SpecOpts { out_alpha: "\"act.alpha\"".into(), ..SpecOpts::default() })).unwrap();
    let acts = tmp.path().join("acts.npy");
    write_npy(&acts, &[n as u64, k as u64], &uniform01(&mut rng, n * k, 2.0));
    let dir = tmp.path().join("build/layer1");
    let run = quantize::quantize_to_dir(&weights, &spec, &dir, Some((&acts, None))).unwrap();
    for f in ["quantized.json", "config.toml", "spec.toml", "report.json", "report.md", "vectors.txt"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert_eq!(run.layer.output.alphas, vec![2.5; out]);
    let back = QuantizedLayer::load(&dir).unwrap();
    // integers round-trip exactly; floats to within an ulp (serde_json's default float parsing)
    assert_eq!(back.weights.codes, run.layer.weights.codes);
    assert_eq!(back.weights.float, run.layer.weights.float);
    assert_eq!(back.params(), run.layer.params());
    assert_eq!(back.config, run.layer.config);
    assert_eq!((&back.spec, &back.geometry, &back.source), (&run.layer.spec, &run.layer.geometry, &run.layer.source));
    for (a, b) in back.weights.scales.iter().zip(&run.layer.weights.scales).chain(back.channels.iter().map(|c| &c.acc_scale).zip(run.layer.channels.iter().map(|c| &c.acc_scale))) {
        assert!((a - b).abs() <= 1e-15 * b.abs(), "{a} vs {b}");
    }
    let cfg = Config::from_file(&dir.join("config.toml")).unwrap();
    assert_eq!(cfg, run.layer.config().unwrap());
    // the loaded layer runs the inputs to the same vectors
    let (x, shape) = quantize::read_tensor(&acts, None).unwrap();
    let lv = layer_vectors(&back, &x, &shape).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("vectors.txt")).unwrap(), render(&lv.config, &lv.layers).unwrap());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["weights"]["per_channel"].as_array().unwrap().len(), out);
    let rows = report["comparison"].as_array().unwrap();
    for scheme in ["sawb", "uniform", "ls1", "ls2", "lsT"] {
        assert!(rows.iter().any(|r| r["scheme"] == scheme), "{scheme} missing from the comparison");
    }
    // the chosen row of the comparison is the error of the written codes
    let chosen: Vec<&serde_json::Value> = rows.iter().filter(|r| r["chosen"] == true).collect();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0]["mse"], report["weights"]["error"]["mse"]);
    assert_eq!((chosen[0]["scheme"].as_str(), chosen[0]["bits"].as_u64()), (Some("sawb"), Some(2)));
    // at 2 bits ls-2 (two bases) beats SAWB's four levels in MSE, which the table shows
    let mse = |s: &str, b: u64| rows.iter().find(|r| r["scheme"] == s && r["bits"] == b).unwrap()["mse"].as_f64().unwrap();
    assert!(mse("ls2", 2) <= mse("sawb", 2) * 1.0001, "ls2 {} sawb {}", mse("ls2", 2), mse("sawb", 2));
    // SAWB's levels {+-a, +-a/3} are one choice of two binary bases, so ls-2's optimum is never worse;
    // 1-bit SAWB is ls-1; uniform improves with every bit (SAWB need not: its regression clip can cut
    // short rows, which is what the table is for)
    assert_eq!(mse("sawb", 1), mse("ls1", 1));
    for b in 2..8 {
        assert!(mse("uniform", b + 1) < mse("uniform", b), "uniform {b} bits");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Scheme comparison") && md.contains("**chosen**") && md.contains("## Layer run"), "{md}");
    // a rerun replaces the directory; a directory that is not ours is refused and left alone
    quantize::quantize_to_dir(&weights, &spec, &dir, None).unwrap();
    assert!(!dir.join("vectors.txt").exists());
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), "x").unwrap();
    let e = quantize::quantize_to_dir(&weights, &spec, &foreign, None).unwrap_err().to_string();
    assert!(e.contains("was not written by qmac"), "{e}");
    assert!(foreign.join("keep.txt").is_file());
}

/// Errors from files: the spec field, the missing tensor with the file's tensors, shapes; nothing is
/// written on failure.
#[test]
fn errors_name_the_field_or_the_tensor_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("m.safetensors");
    write_safetensors(&weights, &[("layer.weight", vec![4, 6], vec![0.1; 24]), ("layer.bias", vec![3], vec![0.0; 3]), ("fc2.weight", vec![2, 2], vec![0.5; 4])]);
    let dir = tmp.path().join("out");
    let run = |text: String| {
        let spec = tmp.path().join("s.toml");
        std::fs::write(&spec, text).unwrap();
        let e = quantize::quantize_to_dir(&weights, &spec, &dir, None).unwrap_err().to_string();
        assert!(!dir.exists(), "nothing written on error: {e}");
        e
    };
    let e = run(spec_text(&SpecOpts { bits: 9, ..SpecOpts::default() }));
    assert!(e.contains("spec field `weights.bits` = 9 is invalid: allowed 1..=8 for scheme \"sawb\""), "{e}");
    let e = run(spec_text(&SpecOpts { in_bits: 0, ..SpecOpts::default() }));
    assert!(e.contains("`input.bits` = 0") && e.contains("1..=8"), "{e}");
    let e = run(spec_text(&SpecOpts::default()).replace("layer.weight", "layer2.weight"));
    assert!(e.contains("`layer2.weight` not found") && e.contains("`fc2.weight`, `layer.bias`, `layer.weight`"), "{e}");
    // the bias has 3 values for 4 output channels
    let e = run(spec_text(&SpecOpts::default()));
    assert!(e.contains("bias") && e.contains("3 values") && e.contains("4 output channels"), "{e}");
    let e = run(spec_text(&SpecOpts { bias: false, out_alpha: "[1.0, 2.0]".into(), ..SpecOpts::default() }));
    assert!(e.contains("`output.alpha` = 2 values") && e.contains("4 values"), "{e}");
    let e = run(spec_text(&SpecOpts { bias: false, layout: "conv", ..SpecOpts::default() }));
    assert!(e.contains("shape [4, 6]") && e.contains("[out][in][kh][kw]"), "{e}");
    let e = run(spec_text(&SpecOpts { bias: false, ..SpecOpts::default() }).replace("[output]", "[output]\nclip = 1"));
    assert!(e.contains("unknown field `clip`"), "{e}");
    // inputs of the wrong width
    let spec = tmp.path().join("ok.toml");
    std::fs::write(&spec, spec_text(&SpecOpts { bias: false, ..SpecOpts::default() })).unwrap();
    let acts = tmp.path().join("a.npy");
    write_npy(&acts, &[2, 5], &[0.5; 10]);
    let e = quantize::quantize_to_dir(&weights, &spec, &dir, Some((&acts, None))).unwrap_err().to_string();
    assert!(e.contains("[2, 5]") && e.contains("6 inputs"), "{e}");
    assert!(!dir.exists());
}

/// The CLI entry point the binary wires (`qmac quantize`).
#[test]
fn cli_entry_point_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("w.safetensors");
    write_safetensors(&weights, &[("layer.weight", vec![3, 8], normal(&mut Rng::new(7), 24, 0.3)), ("layer.bias", vec![3], vec![0.0, 0.1, -0.1])]);
    let spec = tmp.path().join("s.toml");
    std::fs::write(&spec, spec_text(&SpecOpts::default())).unwrap();
    let args = quantize::cli::QuantizeArgs { weights, spec, out: tmp.path().join("o"), inputs: None, inputs_name: None };
    quantize::cli::run_quantize(&args).unwrap();
    assert!(tmp.path().join("o/quantized.json").is_file());
}

/// The end-to-end path through the binary: `qmac quantize` of a layer from files, then
/// `qmac sim DIR --inputs acts.npy` runs the real data through the generated RTL in Verilator, bit-exact
/// against the reference with random stalls (needs the pinned tools). Cases: a fully-connected and a
/// convolution layer with PACT inputs; a fully-connected layer with ls-1 weights x ls-2 activations
/// whose basis scales `qmac quantize --inputs` calibrates; a convolution (zero padding, K not a
/// multiple of lanes) with gf-3 weights x ls-T activations with scales from the spec; and a
/// fully-connected codebook layer (learnable levels, fitted). The dequantized result of each is
/// compared with the float layer.
#[test]
fn real_data_through_the_rtl_for_fc_and_conv() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(21);
    struct Case<'a> {
        name: &'a str,
        opts: SpecOpts<'a>,
        wshape: Vec<usize>,
        xshape: Vec<u64>,
        /// Signed (normal) inputs for binary activations, else PACT-range ones.
        signed: bool,
        /// Also pass the inputs to `qmac quantize` (calibrates binary input scales).
        calibrate: bool,
        /// Bound on the output's RMS error relative to the float layer (clipped to [0, alpha]).
        rel_bound: f64,
    }
    let cases = [
        Case { name: "fc", opts: SpecOpts::default(), wshape: vec![5, 12], xshape: vec![7, 12], signed: false, calibrate: false, rel_bound: 0.5 },
        Case {
            name: "conv",
            opts: SpecOpts { layout: "conv", conv: "stride = [1, 1]\npadding = [1, 1]\n", scheme: "uniform", bits: 3, ..SpecOpts::default() },
            wshape: vec![4, 2, 3, 3],
            xshape: vec![1, 2, 4, 4],
            signed: false,
            calibrate: false,
            rel_bound: 0.5,
        },
        Case { name: "fc-ls1-ls2", opts: SpecOpts { scheme: "ls1", bits: 1, input: "scheme = \"ls2\"\nbits = 2", ..SpecOpts::default() }, wshape: vec![5, 12], xshape: vec![7, 12], signed: true, calibrate: true, rel_bound: 0.8 },
        Case {
            name: "conv-gf3-lsT",
            opts: SpecOpts { layout: "conv", conv: "padding = [1, 1]\n", scheme: "gf", bits: 3, input: "scheme = \"lsT\"\nbits = 2\nscales = [0.55, 0.55]", ..SpecOpts::default() },
            wshape: vec![4, 2, 3, 3],
            xshape: vec![1, 2, 4, 4],
            signed: true,
            calibrate: false,
            rel_bound: 0.5,
        },
        Case { name: "fc-levels", opts: SpecOpts { scheme: "levels", bits: 3, granularity: "per_tensor", ..SpecOpts::default() }, wshape: vec![5, 12], xshape: vec![7, 12], signed: false, calibrate: false, rel_bound: 0.3 },
    ];
    for case in cases {
        let name = case.name;
        let out = case.wshape[0];
        let wn: usize = case.wshape.iter().product();
        let xn: usize = case.xshape.iter().product::<u64>() as usize;
        let weights = tmp.path().join(format!("{name}.safetensors"));
        write_safetensors(&weights, &[("layer.weight", case.wshape.clone(), normal(&mut rng, wn, 0.4)), ("layer.bias", vec![out], normal(&mut rng, out, 0.1))]);
        let spec = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&spec, spec_text(&case.opts)).unwrap();
        let acts = tmp.path().join(format!("{name}.npy"));
        let x = if case.signed { normal(&mut rng, xn, 1.0) } else { uniform01(&mut rng, xn, 2.0) };
        write_npy(&acts, &case.xshape, &x);
        let dir = tmp.path().join(name);
        let bin = env!("CARGO_BIN_EXE_qmac");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["quantize", "--weights"]).arg(&weights).arg("--spec").arg(&spec).arg("-o").arg(&dir);
        if case.calibrate {
            cmd.arg("--inputs").arg(&acts);
        }
        let q = cmd.output().unwrap();
        assert!(q.status.success(), "{name}: quantize failed: {}", String::from_utf8_lossy(&q.stderr));
        let s = std::process::Command::new(bin).arg("sim").arg(&dir).arg("--inputs").arg(&acts).env("RUST_BACKTRACE", "0").output().unwrap();
        let stdout = String::from_utf8_lossy(&s.stdout);
        assert!(s.status.success(), "{name}: sim failed: {}{}", stdout, String::from_utf8_lossy(&s.stderr));
        assert!(stdout.contains("bit-exact in the RTL") && stdout.contains("PASS"), "{name}: {stdout}");
        assert!(dir.join("hw/rtl").is_dir());

        // the layer the RTL ran, against float
        let ql = QuantizedLayer::load(&dir).unwrap();
        let lv = layer_vectors(&ql, &x, &case.xshape.iter().map(|&d| d as usize).collect::<Vec<_>>()).unwrap();
        assert!(stdout.contains(&format!("{} output codes", lv.codes.len())), "{name}: {stdout}");
        let cq = lv.error.codes_vs_quantized;
        assert_eq!(cq.within_one, cq.total, "{name}: {cq:?}");
        assert!(cq.exact * 10 >= cq.total * 9, "{name}: {cq:?}");
        let rel = relative_error(&lv, 3.0);
        assert!(rel < case.rel_bound, "{name}: output error relative to float {rel}");
        match name {
            "fc-ls1-ls2" => {
                // calibrated once on the inputs, recorded, and used again by `qmac sim`
                let mut sp = Spec::from_toml(&spec_text(&case.opts), "t").unwrap();
                let v = quantize::calibrate_input_scales(&sp, &x).unwrap();
                assert!(ql.input.calibrated);
                assert_eq!(ql.input.basis_scales.len(), 2);
                assert_eq!(ql.input.basis_scales, v, "quantized.json holds the scales exactly");
                sp.input.scales = Some(ql.input.basis_scales.clone());
                assert_eq!(Spec::from_file(&dir.join("spec.toml")).unwrap(), sp);
                assert_eq!(ql.config.act_encoding, qmac::config::EncodingName::Bases);
            }
            "conv-gf3-lsT" => {
                assert_eq!(ql.input.basis_scales, vec![0.55, 0.55]);
                assert_eq!(ql.config().unwrap().bases(), Some((3, 2)));
                assert!(ql.channels.iter().all(|c| c.acc_offset != 0), "K = 18 padded to 20");
            }
            "fc-levels" => assert!(ql.weights.levels.as_ref().is_some_and(|l| l.fitted && l.ints.len() == 8)),
            _ => {}
        }
        eprintln!("{name}: rel {rel:.3}, vs quantized {cq:?}");
    }
}
