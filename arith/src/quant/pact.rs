//! PACT activation quantization (quantization.md § PACT: parameterized clipping activation).
//!
//! With `n = 2^k - 1` and a clip level `alpha > 0` (per tensor, or per channel for channel-wise
//! activation quantizers):
//!
//! ```text
//! y     = clip(x, 0, alpha)                      = 0.5 * (|x| - |x - alpha| + alpha)
//! scale = alpha / n
//! code  = clamp(round(y / scale), 0, n)          unsigned k-bit code, k in 1..=8
//! value = code * scale
//! ```
//!
//! `round` is the configured [`Rounding`] (quantization.md § Rounding). The result is a
//! [`Quantized`] with [`CodeMap::Linear`], [`Encoding::Unsigned`], zero point 0 and scale
//! `alpha / n` per channel.

use super::{
    check_bits, check_count, check_input, round_f64, steps, CodeMap, Encoding, Granularity,
    QuantError, Quantized, Rounding,
};

/// Smallest supported activation bit-width.
pub const MIN_BITS: u32 = 1;
/// Largest supported activation bit-width.
pub const MAX_BITS: u32 = 8;

/// PACT's clip `clamp(x, 0, alpha)` (for `alpha >= 0`), which equals the paper's
/// `0.5 * (|x| - |x - alpha| + alpha)` in exact arithmetic.
pub fn clip(x: f64, alpha: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else if x >= alpha {
        alpha
    } else {
        x
    }
}

/// Validates PACT clip levels (finite, > 0, and `alpha / n` not underflowing to 0) and returns
/// the per-channel scales `alpha / n`.
pub(crate) fn scales_of(alphas: &[f64], n: u32) -> Result<Vec<f64>, QuantError> {
    alphas
        .iter()
        .enumerate()
        .map(|(index, &alpha)| {
            let scale = alpha / f64::from(n);
            if alpha.is_finite() && alpha > 0.0 && scale > 0.0 {
                Ok(scale)
            } else {
                Err(QuantError::InvalidParameter {
                    what: "PACT alpha",
                    index,
                    value: alpha,
                    requirement: "finite and > 0",
                })
            }
        })
        .collect()
}

/// Quantizes activations `x` with PACT.
///
/// `alphas` holds one clip level per channel of `granularity` (one value for
/// [`Granularity::PerTensor`]); each must be finite and > 0. `bits` must be in
/// [`MIN_BITS`]`..=`[`MAX_BITS`].
pub fn quantize(
    x: &[f32],
    granularity: Granularity,
    alphas: &[f64],
    bits: u32,
    rounding: Rounding,
) -> Result<Quantized, QuantError> {
    check_bits("PACT activation bits", bits, MIN_BITS, MAX_BITS)?;
    let layout = check_input(x, granularity)?;
    check_count(
        "PACT alpha values (one per channel)",
        layout.channels,
        alphas.len(),
    )?;
    let n = steps(bits);
    let scales = scales_of(alphas, n)?;
    let mut codes = Vec::with_capacity(x.len());
    for ((row, &alpha), &scale) in x.chunks(layout.row_len).zip(alphas).zip(&scales) {
        codes.extend(
            row.iter()
                .map(|&v| code(f64::from(v), alpha, scale, n, rounding)),
        );
    }
    let map = CodeMap::Linear {
        encoding: Encoding::Unsigned,
        scales,
        zero_points: vec![0; layout.channels],
    };
    Ok(Quantized::new(bits, granularity, layout, codes, map))
}

/// `clamp(round(clip(x, 0, alpha) / scale), 0, n)`.
fn code(x: f64, alpha: f64, scale: f64, n: u32, rounding: Rounding) -> u32 {
    let q = round_f64(clip(x, alpha) / scale, rounding);
    // q is finite and >= 0 here; the clamp only matters if alpha / scale rounds above n.
    q.clamp(0.0, f64::from(n)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QuantError;
    use proptest::prelude::*;

    fn per_tensor(x: &[f32], alpha: f64, bits: u32, rounding: Rounding) -> Vec<u32> {
        quantize(x, Granularity::PerTensor, &[alpha], bits, rounding)
            .unwrap()
            .codes()
            .to_vec()
    }

    /// clip() agrees with the paper's closed form on exactly representable inputs.
    #[test]
    fn clip_matches_paper_formula() {
        for alpha in [0.5, 1.0, 6.0] {
            for x in [-3.0, -0.25, 0.0, 0.125, 0.5, 1.0, 5.75, 6.0, 100.0] {
                let paper = 0.5 * (f64::abs(x) - f64::abs(x - alpha) + alpha);
                assert_eq!(clip(x, alpha), paper, "x={x} alpha={alpha}");
            }
        }
    }

    /// Exact ties y/scale = j + 0.5 round to even under HalfEven and up under HalfUp; values
    /// outside [0, alpha] clip to codes 0 and n.
    #[test]
    fn clip_and_round_at_exact_ties() {
        // 2 bits, alpha = 3: n = 3, scale = 1, so y / scale = y.
        let x = [-1.0, 0.5, 1.5, 2.5, 3.0, 4.0, 1.25];
        assert_eq!(
            per_tensor(&x, 3.0, 2, Rounding::HalfEven),
            vec![0, 0, 2, 2, 3, 3, 1]
        );
        assert_eq!(
            per_tensor(&x, 3.0, 2, Rounding::HalfUp),
            vec![0, 1, 2, 3, 3, 3, 1]
        );
        // 4 bits, alpha = 7.5: n = 15, scale = 0.5; 0.25 -> 0.5, 0.75 -> 1.5, 1.25 -> 2.5,
        // 7.25 -> 14.5, 9 clips to 7.5 -> 15.
        let x = [0.25, 0.75, 1.25, 7.25, 9.0];
        assert_eq!(
            per_tensor(&x, 7.5, 4, Rounding::HalfEven),
            vec![0, 2, 2, 14, 15]
        );
        assert_eq!(
            per_tensor(&x, 7.5, 4, Rounding::HalfUp),
            vec![1, 2, 3, 15, 15]
        );
        // 1 bit, alpha = 2: n = 1, scale = 2; 1.0 -> 0.5 is a tie.
        assert_eq!(
            per_tensor(&[1.0, 1.01, 0.99], 2.0, 1, Rounding::HalfEven),
            vec![0, 1, 0]
        );
        assert_eq!(
            per_tensor(&[1.0, 1.01, 0.99], 2.0, 1, Rounding::HalfUp),
            vec![1, 1, 0]
        );
    }

    /// Codes dequantize to code * alpha / n and the scale is reported per channel.
    #[test]
    fn dequantize_and_scales() {
        let q = quantize(
            &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0],
            Granularity::PerChannel { axis0_len: 2 },
            &[2.0, 1.0],
            2,
            Rounding::HalfEven,
        )
        .unwrap();
        assert_eq!(q.map().scales().unwrap(), &[2.0 / 3.0, 1.0 / 3.0]);
        // Row 0: 1.0 / (2/3) = 1.5 -> 2 (even); row 1 clips at 1 -> 3.
        assert_eq!(q.codes(), &[0, 2, 3, 0, 3, 3]);
        assert_eq!(q.dequantize_f64(), vec![0.0, 4.0 / 3.0, 2.0, 0.0, 1.0, 1.0]);
    }

    /// Bad input is an error, not a panic.
    #[test]
    fn rejects_bad_input() {
        let g = Granularity::PerTensor;
        let r = Rounding::HalfEven;
        assert_eq!(quantize(&[], g, &[1.0], 4, r), Err(QuantError::EmptyTensor));
        assert!(matches!(
            quantize(&[1.0], g, &[1.0], 0, r),
            Err(QuantError::BitsOutOfRange {
                bits: 0,
                min: 1,
                max: 8,
                ..
            })
        ));
        assert!(matches!(
            quantize(&[1.0], g, &[1.0], 9, r),
            Err(QuantError::BitsOutOfRange { bits: 9, .. })
        ));
        for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-322] {
            assert!(matches!(
                quantize(&[1.0], g, &[alpha], 8, r),
                Err(QuantError::InvalidParameter {
                    what: "PACT alpha",
                    ..
                })
            ));
        }
        assert!(matches!(
            quantize(
                &[1.0, 2.0],
                Granularity::PerChannel { axis0_len: 2 },
                &[1.0],
                4,
                r
            ),
            Err(QuantError::ShapeMismatch {
                expected: 2,
                found: 1,
                ..
            })
        ));
        assert!(matches!(
            quantize(&[1.0, f32::INFINITY], g, &[1.0], 4, r),
            Err(QuantError::NonFinite { index: 1, .. })
        ));
    }

    fn rounding() -> impl Strategy<Value = Rounding> {
        prop_oneof![Just(Rounding::HalfEven), Just(Rounding::HalfUp)]
    }

    proptest! {
        /// Invariant: every code is in 0..=2^bits - 1, for any finite input and valid alpha.
        #[test]
        fn codes_in_range(
            x in prop::collection::vec(-1e6f32..1e6, 1..40),
            alpha in 1e-3f64..1e3,
            bits in MIN_BITS..=MAX_BITS,
            rounding in rounding(),
        ) {
            let q = quantize(&x, Granularity::PerTensor, &[alpha], bits, rounding).unwrap();
            let n = (1u32 << bits) - 1;
            prop_assert!(q.codes().iter().all(|&c| c <= n));
            prop_assert_eq!(q.code_range(), 0..=n);
        }

        /// Invariant: inside the clip range [0, alpha] the reconstruction error is at most half a
        /// step alpha / (2^bits - 1); outside it the value saturates at 0 or alpha.
        #[test]
        fn half_step_error_inside_clip_range(
            x in prop::collection::vec(-20f32..20.0, 1..40),
            alpha in 0.1f64..10.0,
            bits in MIN_BITS..=MAX_BITS,
            rounding in rounding(),
        ) {
            let q = quantize(&x, Granularity::PerTensor, &[alpha], bits, rounding).unwrap();
            let step = alpha / f64::from((1u32 << bits) - 1);
            for (&v, d) in x.iter().zip(q.dequantize_f64()) {
                let v = f64::from(v);
                if v <= 0.0 {
                    prop_assert_eq!(d, 0.0);
                } else if v >= alpha {
                    prop_assert!((d - alpha).abs() <= 1e-9 * alpha);
                } else {
                    prop_assert!((d - v).abs() <= 0.5 * step * (1.0 + 1e-9), "v={} d={}", v, d);
                }
            }
        }

        /// Invariant: per-channel PACT equals per-tensor PACT applied to each row with that row's
        /// alpha.
        #[test]
        fn per_channel_is_per_tensor_per_row(
            rows in 1usize..5,
            cols in 1usize..8,
            seed in any::<u64>(),
            bits in MIN_BITS..=MAX_BITS,
            rounding in rounding(),
        ) {
            let mut rng = crate::quant::SplitMix64(seed);
            let x: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(-2.0, 6.0) as f32).collect();
            let alphas: Vec<f64> = (0..rows).map(|_| rng.uniform(0.5, 5.0)).collect();
            let pc = quantize(&x, Granularity::PerChannel { axis0_len: rows }, &alphas, bits, rounding)
                .unwrap();
            for (r, row) in x.chunks(cols).enumerate() {
                let pt = quantize(row, Granularity::PerTensor, &alphas[r..=r], bits, rounding).unwrap();
                prop_assert_eq!(&pc.codes()[r * cols..(r + 1) * cols], pt.codes());
                prop_assert_eq!(pc.map().scales().unwrap()[r], pt.map().scales().unwrap()[0]);
                prop_assert_eq!(&pc.dequantize_f64()[r * cols..(r + 1) * cols], &pt.dequantize_f64()[..]);
            }
        }
    }
}
