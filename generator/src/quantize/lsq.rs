//! Binary bases (ls-1, ls-2, ls-T, gf-k): the basis-pair scales of a channel, binary encoding of
//! activations with fixed basis scales and their calibration, and the accumulator reach of a channel
//! (mirrors `qmac_arith::quant::lsq`).

use super::{quant_err, QuantizeError, Spec};
use qmac_arith::quant::{lsq, round_f64, Granularity, Rounding};

/// Basis-pair scales of one output channel: with weight basis scales `u[i]` and activation basis scales
/// `v[j]`, the accumulator unit `s_acc = max_ij |u[i] v[j]| / (2^(level_bits - 1) - 1)` and the integer
/// pair scales `m[i * v.len() + j] = round(u[i] v[j] / s_acc)` (the spec's rounding), each within
/// `level_bits` signed bits. Then for any per-pair counts `D_ij`,
/// `|s_acc * sum_p m[p] D_p - sum_ij u[i] v[j] D_ij| <= s_acc / 2 * sum_p |D_p|`. All-zero products give
/// `s_acc = 0` and all-zero `m` (a channel with constant output).
pub fn pair_scales(u: &[f64], v: &[f64], level_bits: u32, rounding: Rounding) -> (f64, Vec<i64>) {
    let prods: Vec<f64> = u.iter().flat_map(|&ui| v.iter().map(move |&vj| ui * vj)).collect();
    let top = prods.iter().fold(0.0f64, |m, p| m.max(p.abs()));
    if top == 0.0 || !top.is_finite() {
        return (0.0, vec![0; prods.len()]);
    }
    let lmax = ((1i64 << (level_bits - 1)) - 1) as f64;
    let s_acc = top / lmax;
    (s_acc, prods.iter().map(|&p| round_f64(p / s_acc, rounding).clamp(-lmax, lmax) as i64).collect())
}

/// Encode real activations as binary-basis codes with fixed basis scales `v`: the residual signs
/// (`lsq::quantize_with_scales`: `s_1 = sign(x)`, `s_(j+1) = sign(x - v_1 s_1 - ... - v_j s_j)`,
/// `sign(0) = +1`), bit `j` of a code is the sign of basis `j` (1 meaning +1).
pub fn encode_bases(x: &[f32], v: &[f64]) -> Result<Vec<u64>, QuantizeError> {
    let q = lsq::quantize_with_scales(x, v).map_err(quant_err("input activations"))?;
    let mut codes = vec![0u64; x.len()];
    for (j, b) in q.bases().iter().enumerate() {
        for (c, &s) in codes.iter_mut().zip(b.signs()) {
            *c |= u64::from(s) << j;
        }
    }
    Ok(codes)
}

/// Calibrate the basis scales of a binary input scheme on real input activations: the scheme's own fit
/// (`lsq::quantize` per tensor) over every value of `x`, as given (before any im2col or padding), each
/// scale rounded to 9 significant digits (a relative change below `5e-9`) so that `spec.toml` and
/// `quantized.json` hold exactly the scales the inputs are encoded with (JSON floats of more digits
/// read back only to within one ulp).
pub fn calibrate_input_scales(spec: &Spec, x: &[f32]) -> Result<Vec<f64>, QuantizeError> {
    let Some(scheme) = spec.input.scheme.binary(spec.input.bits) else {
        return Err(QuantizeError::Spec { field: "input.scheme".into(), value: format!("\"{}\"", spec.input.scheme.name()), allowed: "a binary scheme (ls1, ls2, lsT, gf) to calibrate basis scales for".into() });
    };
    let q = lsq::quantize(x, Granularity::PerTensor, scheme).map_err(quant_err("input activations (calibration)"))?;
    Ok(q.bases().iter().map(|b| format!("{:.8e}", b.scales()[0]).parse().unwrap_or(b.scales()[0])).collect())
}

/// With binary activations: the largest accumulator `sum_p m[p] D_p` any input codes can give, for a
/// channel with weight codes `codes` (`wb` bases) and pair scales `m` (`ab` activation bases). Each
/// element's activation signs are free, so element `k` adds at most `sum_j |sum_i m[i ab + j] s_i(w_k)|`;
/// the smallest accumulator is the negative of the largest.
pub(super) fn bases_reach(codes: &[u64], m: &[i64], wb: u32, ab: u32) -> i128 {
    codes
        .iter()
        .map(|&c| (0..ab).map(|j| (0..wb).map(|i| i128::from(m[(i * ab + j) as usize]) * i128::from(crate::reference::basis_sign(c, i))).sum::<i128>().abs()).sum::<i128>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::test_specs::*;

    /// Pair scales: for factorized float scales u[i] v[j] the integer combination `s_acc * sum_p m[p] D_p`
    /// reproduces `sum_ij u[i] v[j] D_ij` within the stated bound `s_acc / 2 * sum_p |D_p|`, the largest
    /// pair scale uses the full `level_bits`, and every pair scale fits.
    #[test]
    fn pair_scales_reproduce_the_float_combination() {
        let mut rng = crate::rng::Rng::new(31);
        let unit = |rng: &mut crate::rng::Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        for case in 0..2000 {
            let (nw, na) = (1 + rng.below(4) as usize, 1 + rng.below(4) as usize);
            let level_bits = 2 + rng.below(15) as u32;
            let u: Vec<f64> = (0..nw).map(|_| unit(&mut rng) * 3.0).collect();
            let v: Vec<f64> = (0..na).map(|_| unit(&mut rng) * 0.5).collect();
            let rounding = if case % 2 == 0 { Rounding::HalfEven } else { Rounding::HalfUp };
            let (s_acc, m) = pair_scales(&u, &v, level_bits, rounding);
            let lmax = (1i64 << (level_bits - 1)) - 1;
            assert_eq!(m.len(), nw * na);
            assert!(m.iter().all(|&x| (0..=lmax).contains(&x)), "case {case}: {m:?}");
            assert_eq!(*m.iter().max().unwrap(), lmax, "case {case}");
            let n = 1 + rng.below(200) as i64;
            let d: Vec<i64> = (0..nw * na).map(|_| rng.range_i64(-n, n)).collect();
            let float: f64 = (0..nw).flat_map(|i| (0..na).map(move |j| (i, j))).map(|(i, j)| u[i] * v[j] * d[i * na + j] as f64).sum();
            let int: i64 = m.iter().zip(&d).map(|(a, b)| a * b).sum();
            let bound = s_acc / 2.0 * d.iter().map(|x| x.abs() as f64).sum::<f64>();
            assert!((s_acc * int as f64 - float).abs() <= bound * (1.0 + 1e-12) + 1e-12, "case {case}: {} vs {float}, bound {bound}", s_acc * int as f64);
        }
        // by hand: u = [2, 1], v = [0.5, 0.25] at 4 bits: products [1, 0.5, 0.5, 0.25], s_acc = 1/7,
        // m = round([7, 3.5, 3.5, 1.75]) = [7, 4, 4, 2] (half even: 3.5 -> 4)
        let (s_acc, m) = pair_scales(&[2.0, 1.0], &[0.5, 0.25], 4, Rounding::HalfEven);
        assert_eq!((s_acc, m), (1.0 / 7.0, vec![7, 4, 4, 2]));
        assert_eq!(pair_scales(&[0.0], &[1.0, 2.0], 8, Rounding::HalfEven), (0.0, vec![0, 0]));
    }

    /// Fixed-scale encoding: with the scales the scheme's own fit gives, the codes are the quantizer's
    /// signs, bit j the sign of basis j; calibration is that fit.
    #[test]
    fn fixed_scale_codes_match_the_quantizer() {
        let mut rng = crate::rng::Rng::new(32);
        for (scheme, bits) in [("ls1", 1u32), ("ls2", 2), ("lsT", 2), ("gf", 3), ("gf", 4)] {
            let spec = binary_spec("ls1", 1, &format!("scheme = \"{scheme}\"\nbits = {bits}"), "");
            let x: Vec<f32> = (0..300).map(|_| (rng.range_i64(-1000, 1000) as f32) / 400.0).collect();
            let q = lsq::quantize(&x, Granularity::PerTensor, spec.input.scheme.binary(bits).unwrap()).unwrap();
            let v: Vec<f64> = q.bases().iter().map(|b| b.scales()[0]).collect();
            let calibrated = calibrate_input_scales(&spec, &x).unwrap();
            for (a, b) in calibrated.iter().zip(&v) {
                assert!((a - b).abs() <= 5e-9 * b, "{scheme}: {a} vs {b}");
                assert_eq!(serde_json::from_str::<f64>(&serde_json::to_string(a).unwrap()).unwrap(), *a, "exact JSON round trip");
            }
            let codes = encode_bases(&x, &v).unwrap();
            for (e, &c) in codes.iter().enumerate() {
                assert!(c < 1 << bits);
                for (j, b) in q.bases().iter().enumerate() {
                    assert_eq!((c >> j & 1) as u8, b.signs()[e], "{scheme} element {e} basis {j}");
                }
            }
        }
        // 0 encodes as s1 = +1, then the residual signs of -v1: with v = [1, 0.5, 0.25]: -1 -> -, -0.5 -> -
        assert_eq!(encode_bases(&[0.0], &[1.0, 0.5, 0.25]).unwrap(), vec![0b001]);
        // scales of another scheme change the codes: x = 0.6 with v1 = 1 -> s2 = sign(-0.4) = -1
        assert_eq!(encode_bases(&[0.6], &[1.0, 0.5]).unwrap(), vec![0b01]);
        assert_eq!(encode_bases(&[0.6], &[0.5, 0.5]).unwrap(), vec![0b11]);
    }
}
