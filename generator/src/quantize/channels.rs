//! [`quantize_layer`]: a layer's weight codes, every output channel's integer parameters (bias and clip
//! in the accumulator domain, reduced to the reachable range; multiplier and shift) and the array
//! configuration.

use super::lsq::{bases_reach, pair_scales};
use super::pact::{mult_shift, pact_code};
use super::tensors::geometry;
use super::weights::quantize_weights;
use super::{shape_err, ChannelQuant, InputQuant, LayerTensors, OutputQuant, QuantizeError, QuantizedLayer, QuantizedWeights, Source, Spec, FORMAT};
use crate::config::{Config, EncodingName, RawConfig};
use crate::reference::{check_params, check_table};
use qmac_arith::pipeline::ChannelParams;
use qmac_arith::quant::{round_f64, Rounding};
use qmac_arith::width::{signed_bits, unsigned_bits};

fn to_i128(x: f64) -> i128 {
    // values beyond +-2^100 are reduced to the accumulator range below anyway
    x.clamp(-1e30, 1e30) as i128
}

/// What the layer's output stage computes (the array's `out_mode`). `qmac quantize` specs give PACT
/// outputs; `qmac net` also uses the other two for a network's last layer and for a layer whose next
/// layer takes binary activations.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputStage {
    /// PACT codes with the spec's `output` clips (`out_mode = "pact"`).
    Pact,
    /// The biased accumulator `acc * 2^F + bias`, signed and unclipped (`out_mode = "logits"`): only
    /// the bias is loaded. One logit unit of channel `o` is worth `acc_scale[o] / 2^F`
    /// (`output.scales`); the spec's `output` clips are not used.
    Logits,
    /// The greedy residual signs of the pre-activation with the next layer's basis scales `v` (1 or 2
    /// of them; `out_mode = "bases"`): `mult / 2^shift ~= acc_scale / (2^F v_1)`, so that
    /// `z = (acc * 2^F + bias) * mult / 2^shift` is the pre-activation in units of `v_1`
    /// (`output.scales` is `v_1` for every channel); the spec's `output` clips are not used.
    Bases(Vec<f64>),
}

/// Quantize a layer: weight codes, per-channel integer parameters and the array configuration.
pub fn quantize_layer(spec: &Spec, t: &LayerTensors, source: Source) -> Result<QuantizedLayer, QuantizeError> {
    quantize_layer_to(spec, t, source, &OutputStage::Pact)
}

/// [`quantize_layer`] with the output stage `stage`.
pub fn quantize_layer_to(spec: &Spec, t: &LayerTensors, source: Source, stage: &OutputStage) -> Result<QuantizedLayer, QuantizeError> {
    spec.validate()?;
    if let OutputStage::Bases(v) = stage {
        let ok = (1..=qmac_arith::pipeline::MAX_OUT_BASES as usize).contains(&v.len()) && v.iter().all(|x| x.is_finite() && *x > 0.0);
        if !ok {
            return Err(QuantizeError::Spec { field: "output basis scales".into(), value: format!("{v:?}"), allowed: format!("1..={} finite scales > 0", qmac_arith::pipeline::MAX_OUT_BASES) });
        }
    }
    let geo = geometry(spec, &t.weight_shape)?;
    let (out, k) = (geo.out_channels, geo.k);
    if t.weight.len() != out * k {
        return Err(shape_err(format!("weight tensor `{}` has {} values but shape {:?}", spec.weights.tensor, t.weight.len(), t.weight_shape)));
    }
    let rounding: Rounding = spec.rounding.into();
    let bias: Vec<f32> = match &t.bias {
        Some(b) if b.len() == out => b.clone(),
        Some(b) => return Err(shape_err(format!("bias tensor `{}` has {} values; the weight tensor has {out} output channels", spec.weights.bias.as_deref().unwrap_or(""), b.len()))),
        None => vec![0.0; out],
    };
    if let Some(i) = bias.iter().position(|v| !v.is_finite()) {
        return Err(shape_err(format!("bias tensor value {i} is {}, not finite", bias[i])));
    }
    // activation quantizers
    let binary_in = spec.input.scheme.is_binary();
    let (a_in, s_a, in_scales) = if binary_in {
        let Some(v) = spec.input.scales.clone() else {
            let n = spec.input.bits;
            let names: Vec<String> = (1..=n).map(|j| format!("v{j}")).collect();
            return Err(QuantizeError::Spec {
                field: "input.scales".into(),
                value: "(not given)".into(),
                allowed: format!(
                    "the {n} basis scales [{}] of the \"{}\" input activations: the array's basis-pair scales are fixed, so give input.scales in the spec, or --inputs to calibrate them on real inputs",
                    names.join(", "),
                    spec.input.scheme.name()
                ),
            });
        };
        (0.0, 0.0, v)
    } else {
        let in_n = f64::from((1u32 << spec.input.bits) - 1);
        let a_in = t.input_alpha;
        if !(a_in.is_finite() && a_in > 0.0) {
            return Err(QuantizeError::Spec { field: "input.alpha".into(), value: a_in.to_string(), allowed: "a finite number > 0".into() });
        }
        (a_in, a_in / in_n, Vec::new())
    };
    let out_alphas: Vec<f64> = match t.output_alpha.len() {
        1 => vec![t.output_alpha[0]; out],
        n if n == out => t.output_alpha.clone(),
        n => {
            return Err(QuantizeError::Spec {
                field: "output.alpha".into(),
                value: format!("{n} values"),
                allowed: format!("1 value (per tensor) or {out} values (one per output channel of `{}`)", spec.weights.tensor),
            })
        }
    };
    for (i, &a) in out_alphas.iter().enumerate() {
        if !(a.is_finite() && a > 0.0) {
            return Err(QuantizeError::Spec { field: format!("output.alpha[{i}]"), value: a.to_string(), allowed: "a finite number > 0".into() });
        }
    }
    let out_n = (1u64 << spec.output.bits) - 1;

    // weights
    let wq = quantize_weights(spec, &t.weight, out)?;
    let encoding = wq.encoding;
    let weights = QuantizedWeights {
        scheme: spec.weights.scheme,
        bits: spec.weights.bits,
        encoding,
        granularity: spec.weights.granularity,
        scales: wq.scales,
        basis_scales: wq.basis_scales,
        levels: wq.levels,
        codes: wq.codes.chunks(k).map(<[u64]>::to_vec).collect(),
        float: t.weight.chunks(k).map(<[f32]>::to_vec).collect(),
    };
    let lanes = spec.array.lanes;
    let max_depth = k.div_ceil(lanes as usize) * lanes as usize;
    let padded = (max_depth - k) as i128;

    // the accumulator scale of each channel (with binary inputs, and its pair scales)
    let acc_scales: Vec<(f64, Vec<i64>)> = (0..out)
        .map(|o| if binary_in { pair_scales(weights.basis_scales_of(o), &in_scales, spec.array.level_bits, rounding) } else { (weights.scale(o) * s_a, Vec::new()) })
        .collect();
    // the bias's fractional bits: its rounding error, at most 2^-(F+1) accumulator units, under 1/8 of
    // every channel's output step in accumulator units: alpha / (n * s_acc) for PACT codes, v_1 / s_acc
    // (the unit of z) for basis codes, one accumulator unit for logits
    let frac = spec.array.bias_frac_bits.unwrap_or_else(|| {
        let step = |o: usize| match stage {
            OutputStage::Pact => out_alphas[o] / (out_n as f64 * acc_scales[o].0),
            OutputStage::Logits => 1.0,
            OutputStage::Bases(v) => v[0] / acc_scales[o].0,
        };
        bias_frac_bits_for((0..out).filter(|&o| acc_scales[o].0 > 0.0).map(step).fold(f64::INFINITY, f64::min))
    });
    let fs = 2f64.powi(frac as i32);
    let out_scales: Vec<f64> = match stage {
        OutputStage::Pact => out_alphas.iter().map(|a| a / out_n as f64).collect(),
        OutputStage::Logits => acc_scales.iter().map(|(s, _)| s / fs).collect(),
        OutputStage::Bases(v) => vec![v[0]; out],
    };

    // per channel: bias and clip in the accumulator domain (in units of 2^-frac), reduced to the
    // reachable range
    let amax = (1i128 << spec.input.bits) - 1;
    struct Pre {
        s_acc: f64,
        pair_scales: Vec<i64>,
        offset: i128,
        lo: i128,
        hi: i128,
        bias_real: f64,
        alpha_real: f64,
        m: f64,
        bias: i128,
        alpha: i128,
        notes: Vec<String>,
    }
    let mut pre = Vec::with_capacity(out);
    for o in 0..out {
        let (s_acc, pair_m, lo, hi, offset) = if binary_in {
            // acc = sum_p m[p] D_p; padded elements (codes 0: every basis -1) add sum_p m[p] each
            let (s_acc, m) = acc_scales[o].clone();
            let reach = bases_reach(&weights.codes[o], &m, spec.weights.bits, spec.input.bits);
            let offset = padded * m.iter().map(|&v| i128::from(v)).sum::<i128>();
            (s_acc, m, -reach + offset, reach + offset, offset)
        } else {
            let (mut lo, mut hi) = (0i128, 0i128);
            for kk in 0..k {
                let v = i128::from(weights.value(o, kk));
                if v < 0 {
                    lo += v * amax;
                } else {
                    hi += v * amax;
                }
            }
            (acc_scales[o].0, Vec::new(), lo, hi, 0)
        };
        let b = f64::from(bias[o]);
        let mut notes = Vec::new();
        if *stage != OutputStage::Pact {
            // logits: only the bias; basis codes: the bias and mult / 2^shift = s_acc / (2^F v_1). A
            // channel with all-zero weights (s_acc = 0, acc always 0): basis codes get the bias b / v_1
            // (in units of 2^-F) and mult / 2^shift = 2^-F, so z = b / v_1; a logit has no unit to
            // carry its bias in and is 0
            let (bias_real, m) = match (stage, s_acc == 0.0) {
                (OutputStage::Bases(v), true) => {
                    notes.push(format!("all-zero weights: constant output, the basis code of the bias {b:.4}"));
                    (b / v[0], 1.0 / fs)
                }
                (OutputStage::Bases(v), false) => (b / s_acc, s_acc / (fs * v[0])),
                (_, true) => {
                    notes.push("all-zero weights: logit 0".into());
                    (0.0, 0.0)
                }
                _ => (b / s_acc, 0.0),
            };
            let bias_i = to_i128(round_f64(bias_real * fs, rounding)) - (offset << frac);
            pre.push(Pre { s_acc, pair_scales: pair_m, offset, lo, hi, bias_real, alpha_real: 0.0, m, bias: bias_i, alpha: 0, notes });
            continue;
        }
        let (bias_real, alpha_real, m) = if s_acc == 0.0 { (0.0, 0.0, 0.0) } else { (b / s_acc, out_alphas[o] / s_acc, s_acc * out_n as f64 / out_alphas[o]) };
        // the bias is loaded in the array's accumulator domain, which includes the padded elements
        // bias and clip in units of 2^-frac, and the multiplier takes those units to output steps
        let m = m / fs;
        let (lo_f, hi_f) = (lo << frac, hi << frac);
        let mut bias_i = to_i128(round_f64(bias_real * fs, rounding)) - (offset << frac);
        let mut alpha_i = to_i128(round_f64(alpha_real * fs, rounding)).max(1);
        // a constant output code, if the channel has one
        let constant = if s_acc == 0.0 {
            let c0 = pact_code(b, out_alphas[o], spec.output.bits, rounding);
            let what = if binary_in { "all-zero basis-pair scales" } else { "all-zero weights" };
            notes.push(format!("{what}: constant output code {c0} (PACT of the bias)"));
            Some(c0)
        } else if hi_f + bias_i <= 0 {
            notes.push(format!("acc + bias <= 0 for every input (bias {bias_real:.4}): constant output code 0"));
            Some(0)
        } else if lo_f + bias_i >= alpha_i {
            let c = round_f64(alpha_i as f64 * m, rounding).clamp(0.0, out_n as f64) as u64;
            notes.push(format!("acc + bias >= clip {alpha_i} for every input (bias {bias_real:.4}): constant output code {c}"));
            Some(c)
        } else {
            if offset != 0 {
                notes.push(format!("bias lowered by {offset}: the {padded} padded elements of every tile (codes 0, every basis -1) add sum_p m[p] = {} each", offset / padded));
            }
            if alpha_i > hi_f + bias_i {
                alpha_i = hi_f + bias_i;
                notes.push(format!("clip {alpha_real:.4} reduced to {alpha_i}, the largest reachable acc + bias"));
            }
            None
        };
        let m = match constant {
            // alpha = 1 and acc + bias >= 1 always: the output is round(mult / 2^shift) = c
            Some(c) if c > 0 => {
                (bias_i, alpha_i) = (1 - lo_f, 1);
                c as f64
            }
            Some(_) => {
                (bias_i, alpha_i) = (0, 0);
                0.0
            }
            None => m,
        };
        pre.push(Pre { s_acc, pair_scales: pair_m, offset, lo, hi, bias_real, alpha_real, m, bias: bias_i, alpha: alpha_i, notes });
    }

    // the array configuration
    if max_depth > 1 << 24 {
        return Err(shape_err(format!("weight tensor `{}`: K = {k} is deeper than the array supports (max_depth at most 2^24)", spec.weights.tensor)));
    }
    let mut raw = RawConfig {
        module_prefix: spec.array.module_prefix.clone(),
        rows: spec.array.rows,
        cols: spec.array.cols.unwrap_or_else(|| (out as u32).clamp(1, 8)),
        lanes,
        max_depth: max_depth as u32,
        weight_bits: spec.weights.bits,
        weight_encoding: encoding,
        level_bits: spec.array.level_bits,
        act_bits: spec.input.bits,
        act_encoding: if binary_in { EncodingName::Bases } else { EncodingName::Unsigned },
        out_bits: match stage {
            OutputStage::Pact => Some(spec.output.bits),
            OutputStage::Logits => None,
            OutputStage::Bases(v) => Some(v.len() as u32),
        },
        out_mode: match stage {
            OutputStage::Pact => crate::config::OutModeName::Pact,
            OutputStage::Logits => crate::config::OutModeName::Logits,
            OutputStage::Bases(_) => crate::config::OutModeName::Bases,
        },
        output_units: spec.array.output_units.unwrap_or(crate::config::OutputUnitsName::Shared),
        bias_frac_bits: frac,
        acc_bits: None,
        acc_saturate: false,
        mult_bits: spec.array.mult_bits,
        rounding: spec.rounding,
        ..RawConfig::default()
    };
    let exact = Config::new(raw.clone())?.exact_acc_bits();
    let need = pre.iter().map(|p| signed_bits(p.bias.min(0), p.bias.max(0)).max(unsigned_bits(p.alpha.max(0) as u128))).max().unwrap_or(2);
    if need > exact + frac {
        if need > 64 + frac {
            let (o, p) = pre.iter().enumerate().max_by_key(|(_, p)| p.bias.abs().max(p.alpha)).expect("channels");
            return Err(QuantizeError::Requant { channel: o, message: format!("bias {} / clip {} in the accumulator domain need {need} bits, more than 64 (the float bias or clip is out of all proportion to the weight and input scales)", p.bias, p.alpha) });
        }
        raw.acc_bits = Some(need - frac);
    }
    let cfg = Config::new(raw)?;
    let max_shift = cfg.max_shift();
    let mut channels = Vec::with_capacity(out);
    for p in pre {
        let mut notes = p.notes;
        let (mult, shift, saturated) = if *stage == OutputStage::Logits { (0, 0, false) } else { mult_shift(p.m, spec.array.mult_bits, max_shift, rounding) };
        if saturated {
            notes.push(format!("multiplier {:.4} does not fit mult_bits = {}; saturated to {mult}", p.m, spec.array.mult_bits));
        }
        let approx = mult as f64 / 2f64.powi(shift as i32);
        let mult_rel_error = if p.m > 0.0 { (approx - p.m).abs() / p.m } else { 0.0 };
        channels.push(ChannelQuant {
            acc_scale: p.s_acc,
            acc_range: [p.lo as i64, p.hi as i64],
            bias_real: p.bias_real,
            alpha_real: p.alpha_real,
            mult_real: p.m,
            bias: p.bias as i64,
            alpha: p.alpha as u64,
            mult,
            shift,
            mult_rel_error,
            pair_scales: p.pair_scales,
            acc_offset: p.offset as i64,
            notes,
        });
    }
    let params: Vec<ChannelParams> = channels.iter().map(ChannelQuant::params).collect();
    // check every channel against the field widths (check_params wants exactly `cols` sets)
    for chunk in params.chunks(cfg.cols as usize) {
        let mut full = chunk.to_vec();
        full.resize(cfg.cols as usize, ChannelParams { bias: 0, alpha: 0, mult: 0, shift: 0 });
        check_params(&cfg, &full)?;
    }
    let layer = QuantizedLayer {
        format: FORMAT.into(),
        source,
        spec: spec.clone(),
        geometry: geo,
        weights,
        bias,
        input: InputQuant { scheme: spec.input.scheme, bits: spec.input.bits, alpha: a_in, scale: s_a, basis_scales: in_scales, calibrated: false },
        output: OutputQuant { bits: cfg.out_bits(), alphas: if *stage == OutputStage::Pact { out_alphas } else { Vec::new() }, scales: out_scales },
        channels,
        config: (*cfg).clone(),
    };
    // and the run-time table of every column group
    for g in 0..out.div_ceil(cfg.cols as usize) {
        check_table(&cfg, &layer.table(g))?;
    }
    Ok(layer)
}

/// The fewest fractional bias bits (at most [`crate::config::MAX_BIAS_FRAC_BITS`]) whose rounding
/// error, at most `2^-(F+1)` accumulator units, is under 1/8 of `step`, the smallest output step in
/// accumulator units: `2^-(F+1) < step / 8`.
pub fn bias_frac_bits_for(step: f64) -> u32 {
    (0..crate::config::MAX_BIAS_FRAC_BITS).find(|&f| 2f64.powi(-(f as i32 + 1)) < step / 8.0).unwrap_or(crate::config::MAX_BIAS_FRAC_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::test_specs::*;

    /// The derived parameters follow the documented formulas.
    #[test]
    fn parameters_follow_the_formulas() {
        let s = spec("uniform", 4);
        let w = vec![0.875f32, -0.4375, 0.125, 0.0, 0.2, -0.4, 0.05, 0.3, 0.0, 0.0, 0.0, 0.0];
        let t = LayerTensors::new(&s, w, vec![3, 4], Some(vec![0.1, -0.2, 0.3])).unwrap();
        let q = quantize_layer(&s, &t, src()).unwrap();
        assert_eq!(q.config.max_depth, 6); // K = 4 rounded up to lanes 3
        assert_eq!(q.config.weight_encoding, EncodingName::Int);
        let s_a = 1.5 / 15.0;
        // channel 0: scale 0.875 / 7 = 0.125 exactly
        let c = &q.channels[0];
        assert_eq!(q.weights.scale(0), 0.125);
        assert!((c.acc_scale - 0.125 * s_a).abs() < 1e-15);
        assert_eq!(q.weights.codes[0], vec![7, 0b1100, 1, 0]); // 7, -3.5 -> -4 (half even), 1, 0
        assert_eq!(c.bias, (0.1f32 as f64 / c.acc_scale).round() as i64);
        // alpha = round(2.0 / acc_scale) = 160, above the largest reachable acc + bias
        // (7 + 1) * 15 + 8 = 128, so it is lowered to 128
        assert_eq!((2.0 / c.acc_scale).round(), 160.0);
        assert_eq!(c.bias, 8);
        assert_eq!(c.acc_range, [-4 * 15, 8 * 15]);
        assert_eq!(c.alpha, 128);
        let approx = c.mult as f64 / 2f64.powi(c.shift as i32);
        assert!((approx - c.acc_scale * 15.0 / 2.0).abs() / approx < 1e-4);
        assert!(c.mult < 1 << 16 && c.mult >= 1 << 15, "largest shift keeps mult in the top half: {}", c.mult);
        // channel 2: all-zero weights, uniform scale falls back to 1.0, so the channel is regular and
        // its accumulator is always 0: output = PACT(0.3) = round(0.3 * 15 / 2) = 2
        let p = q.channels[2].params();
        let code = qmac_arith::pipeline::output_code(0, &p, Rounding::HalfEven, 4);
        assert_eq!(code, 2);
    }

    /// An all-zero SAWB channel (scale 0) gets a constant output equal to PACT of its bias.
    #[test]
    fn zero_channel_is_constant() {
        let s = spec("sawb", 2);
        let w = vec![0.5f32, -0.25, 0.1, 0.0, 0.0, 0.0];
        for (b, want) in [(0.9f32, pact_code(0.9, 2.0, 4, Rounding::HalfEven)), (-1.0, 0)] {
            let t = LayerTensors::new(&s, w.clone(), vec![2, 3], Some(vec![0.0, b])).unwrap();
            let q = quantize_layer(&s, &t, src()).unwrap();
            let c = &q.channels[1];
            assert!(!c.notes.is_empty());
            let [lo, hi] = c.acc_range;
            for acc in [lo, hi, (lo + hi) / 2] {
                assert_eq!(qmac_arith::pipeline::output_code(acc, &c.params(), Rounding::HalfEven, 4), want, "acc {acc}");
            }
        }
    }

    /// A binary input scheme without `input.scales` cannot be quantized without inputs: the error names
    /// the field; with the scales the layer quantizes to `bases` codes and pair scales.
    #[test]
    fn binary_inputs_need_scales() {
        let w = vec![0.5f32, -0.25, 0.1, 0.3, -0.4, 0.2];
        let s = binary_spec("ls2", 2, "scheme = \"ls2\"\nbits = 2", "cols = 2\nlanes = 4");
        let t = LayerTensors::new(&s, w.clone(), vec![2, 3], None).unwrap();
        let e = quantize_layer(&s, &t, src()).unwrap_err().to_string();
        assert!(e.starts_with("spec field `input.scales` = (not given) is invalid: the 2 basis scales [v1, v2] of the \"ls2\" input activations") && e.contains("--inputs"), "{e}");
        let s = binary_spec("ls2", 2, "scheme = \"ls2\"\nbits = 2\nscales = [0.6, 0.2]", "cols = 2\nlanes = 4");
        let q = quantize_layer(&s, &t, src()).unwrap();
        let cfg = q.config().unwrap();
        assert_eq!((cfg.weight_encoding, cfg.act_encoding, cfg.bases()), (EncodingName::Bases, EncodingName::Bases, Some((2, 2))));
        assert_eq!(q.input.basis_scales, vec![0.6, 0.2]);
        assert_eq!(q.table(0).len(), 2 * 4);
        // K = 3 padded to 4: one padded element per tile adds sum_p m[p], taken off the bias
        for c in &q.channels {
            assert_eq!(c.acc_offset, c.pair_scales.iter().sum::<i64>());
            assert_eq!(*c.pair_scales.iter().max().unwrap(), 127);
        }
        // ls1 weights with PACT inputs stay 1-bit odd codes; with binary inputs they are one basis
        let s = binary_spec("ls1", 1, "bits = 4\nalpha = 1.0", "");
        let q = quantize_layer(&s, &LayerTensors::new(&s, w.clone(), vec![2, 3], None).unwrap(), src()).unwrap();
        assert_eq!((q.config.weight_encoding, q.config.act_encoding), (EncodingName::Odd, EncodingName::Unsigned));
        let s = binary_spec("ls1", 1, "scheme = \"gf\"\nbits = 3\nscales = [0.6, 0.2, 0.1]", "");
        let q = quantize_layer(&s, &LayerTensors::new(&s, w, vec![2, 3], None).unwrap(), src()).unwrap();
        assert_eq!((q.config.weight_encoding, q.config.act_encoding, q.config().unwrap().bases()), (EncodingName::Bases, EncodingName::Bases, Some((1, 3))));
    }

    /// Reducing bias and clip to the reachable range changes no output.
    #[test]
    fn reductions_change_no_output() {
        let s = spec("sawb", 2);
        // tiny weights and a large bias: the output is pinned at the top; a large negative bias pins it at 0
        let w = vec![1e-4f32, -2e-4, 1e-4, 3e-4, 1e-4, -1e-4];
        let t = LayerTensors::new(&s, w, vec![2, 3], Some(vec![50.0, -50.0])).unwrap();
        let q = quantize_layer(&s, &t, src()).unwrap();
        assert!(q.config().unwrap().acc_bits() <= 16, "no widening needed: {:?}", q.config.acc_bits);
        for (o, want) in [(0usize, 15u64), (1, 0)] {
            let c = &q.channels[o];
            assert!(!c.notes.is_empty(), "{o}: {c:?}");
            for acc in c.acc_range[0]..=c.acc_range[1] {
                assert_eq!(qmac_arith::pipeline::output_code_frac(acc, &c.params(), Rounding::HalfEven, 4, q.config.bias_frac_bits), want);
            }
        }
    }
}
