//! Plain uniform integer quantization, the baseline the paper schemes are compared with
//! (quantization.md § Integer-only inference: codes are integers times a scale, plus a zero point
//! for asymmetric ranges).
//!
//! Both quantizers take their range from the data, per tensor or per channel (row):
//!
//! **Signed, symmetric** (`bits` in 2..=16, [`Encoding::Int`]):
//!
//! ```text
//! qmax  = 2^(bits-1) - 1
//! scale = max|x| / qmax                      (1.0 if max|x| = 0)
//! q     = clamp(round(x / scale), -2^(bits-1), qmax)   two's complement
//! value = q * scale
//! ```
//!
//! The clamp is to the full two's complement range; with the data-derived scale every `|x / scale|`
//! is at most `qmax`, so the most negative code `-2^(bits-1)` is never produced and the grid is
//! symmetric around 0.
//!
//! **Unsigned, asymmetric** (`bits` in 1..=16, [`Encoding::Unsigned`] with a zero point):
//!
//! ```text
//! lo = min(min x, 0), hi = max(max x, 0)     the range always contains 0
//! n  = 2^bits - 1
//! scale = (hi - lo) / n                      (1.0 if hi = lo = 0)
//! z  = clamp(round(-lo / scale), 0, n)       zero point: real 0 is exactly code z
//! q  = clamp(round(x / scale) + z, 0, n)
//! value = (q - z) * scale
//! ```
//!
//! `round` is the configured [`Rounding`] (quantization.md § Rounding). The all-zero fallback
//! scale 1.0 is arbitrary but harmless: every element is then 0 and is represented exactly.

use super::{
    check_bits, check_input, round_f64, steps, CodeMap, Encoding, Granularity, QuantError,
    Quantized, Rounding,
};

/// Smallest signed bit-width.
pub const MIN_SIGNED_BITS: u32 = 2;
/// Smallest unsigned bit-width.
pub const MIN_UNSIGNED_BITS: u32 = 1;
/// Largest bit-width of either kind.
pub const MAX_BITS: u32 = 16;

/// Symmetric signed quantization with two's complement codes (see the module docs).
pub fn signed(
    x: &[f32],
    granularity: Granularity,
    bits: u32,
    rounding: Rounding,
) -> Result<Quantized, QuantError> {
    check_bits("uniform signed bits", bits, MIN_SIGNED_BITS, MAX_BITS)?;
    let layout = check_input(x, granularity)?;
    let qmax = (1i64 << (bits - 1)) - 1;
    let qmin = -(1i64 << (bits - 1));
    let mask = u64::from(steps(bits));
    let mut scales = Vec::with_capacity(layout.channels);
    let mut codes = Vec::with_capacity(x.len());
    for row in x.chunks(layout.row_len) {
        let max_abs = row.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
        let scale = if max_abs > 0.0 {
            max_abs / qmax as f64
        } else {
            1.0
        };
        scales.push(scale);
        codes.extend(row.iter().map(|&v| {
            let q = round_f64(f64::from(v) / scale, rounding).clamp(qmin as f64, qmax as f64);
            // Two's complement bit pattern of q in `bits` bits.
            ((q as i64 as u64) & mask) as u32
        }));
    }
    let map = CodeMap::Linear {
        encoding: Encoding::Int,
        scales,
        zero_points: vec![0; layout.channels],
    };
    Ok(Quantized::new(bits, granularity, layout, codes, map))
}

/// Asymmetric unsigned quantization with a zero point (see the module docs).
pub fn unsigned(
    x: &[f32],
    granularity: Granularity,
    bits: u32,
    rounding: Rounding,
) -> Result<Quantized, QuantError> {
    check_bits("uniform unsigned bits", bits, MIN_UNSIGNED_BITS, MAX_BITS)?;
    let layout = check_input(x, granularity)?;
    let n = f64::from(steps(bits));
    let mut scales = Vec::with_capacity(layout.channels);
    let mut zero_points = Vec::with_capacity(layout.channels);
    let mut codes = Vec::with_capacity(x.len());
    for row in x.chunks(layout.row_len) {
        let lo = row.iter().fold(0.0f64, |m, &v| m.min(f64::from(v)));
        let hi = row.iter().fold(0.0f64, |m, &v| m.max(f64::from(v)));
        let scale = if hi > lo { (hi - lo) / n } else { 1.0 };
        let z = round_f64(-lo / scale, rounding).clamp(0.0, n);
        scales.push(scale);
        zero_points.push(z as i64);
        codes.extend(
            row.iter()
                .map(|&v| (round_f64(f64::from(v) / scale, rounding) + z).clamp(0.0, n) as u32),
        );
    }
    let map = CodeMap::Linear {
        encoding: Encoding::Unsigned,
        scales,
        zero_points,
    };
    Ok(Quantized::new(bits, granularity, layout, codes, map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Signed: max|x| = 3 at 3 bits gives scale 1, so ties are exact; codes are two's complement.
    #[test]
    fn signed_by_hand() {
        let x = [-3.0, -1.5, 0.0, 0.5, 2.5, 3.0];
        let even = signed(&x, Granularity::PerTensor, 3, Rounding::HalfEven).unwrap();
        assert_eq!(even.int_values().unwrap(), vec![-3, -2, 0, 0, 2, 3]);
        assert_eq!(even.codes(), &[0b101, 0b110, 0, 0, 2, 3]);
        assert_eq!(even.dequantize_f64(), vec![-3.0, -2.0, 0.0, 0.0, 2.0, 3.0]);
        let up = signed(&x, Granularity::PerTensor, 3, Rounding::HalfUp).unwrap();
        assert_eq!(up.int_values().unwrap(), vec![-3, -1, 0, 1, 3, 3]);
        let zero = signed(&[0.0; 3], Granularity::PerTensor, 4, Rounding::HalfEven).unwrap();
        assert_eq!(zero.codes(), &[0, 0, 0]);
        assert_eq!(zero.map().scales().unwrap(), &[1.0]);
    }

    /// Unsigned: range [-1, 2] at 2 bits gives scale 1 and zero point 1.
    #[test]
    fn unsigned_by_hand() {
        let x = [-1.0, 0.0, 0.5, 2.0];
        let even = unsigned(&x, Granularity::PerTensor, 2, Rounding::HalfEven).unwrap();
        assert_eq!(even.codes(), &[0, 1, 1, 3]);
        assert_eq!(
            even.map(),
            &CodeMap::Linear {
                encoding: Encoding::Unsigned,
                scales: vec![1.0],
                zero_points: vec![1],
            }
        );
        assert_eq!(even.dequantize_f64(), vec![-1.0, 0.0, 0.0, 2.0]);
        let up = unsigned(&x, Granularity::PerTensor, 2, Rounding::HalfUp).unwrap();
        assert_eq!(up.codes(), &[0, 1, 2, 3]);
        // Positive-only data: the range is widened to include 0, so the zero point is 0.
        let pos = unsigned(&[1.0, 3.0], Granularity::PerTensor, 2, Rounding::HalfEven).unwrap();
        assert_eq!(pos.codes(), &[1, 3]);
        assert_eq!(pos.int_values().unwrap(), vec![1, 3]);
    }

    /// Bad input is an error, not a panic.
    #[test]
    fn rejects_bad_input() {
        let (g, r) = (Granularity::PerTensor, Rounding::HalfEven);
        assert!(matches!(
            signed(&[1.0], g, 1, r),
            Err(QuantError::BitsOutOfRange {
                min: 2,
                max: 16,
                ..
            })
        ));
        assert!(matches!(
            unsigned(&[1.0], g, 17, r),
            Err(QuantError::BitsOutOfRange { min: 1, .. })
        ));
        assert_eq!(signed(&[], g, 8, r), Err(QuantError::EmptyTensor));
        assert!(matches!(
            unsigned(
                &[1.0, 2.0, 3.0],
                Granularity::PerChannel { axis0_len: 2 },
                8,
                r
            ),
            Err(QuantError::ChannelSplit { .. })
        ));
        assert!(matches!(
            signed(&[f32::NEG_INFINITY], g, 8, r),
            Err(QuantError::NonFinite { .. })
        ));
    }

    fn rounding() -> impl Strategy<Value = Rounding> {
        prop_oneof![Just(Rounding::HalfEven), Just(Rounding::HalfUp)]
    }

    fn data() -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(-100f32..100.0, 1..40)
    }

    proptest! {
        /// Invariant: signed codes are bit patterns in 0..2^bits whose two's complement values
        /// lie in -2^(bits-1)..=2^(bits-1)-1, and every element is within half a step
        /// max|x| / (2^(bits-1) - 1) of its reconstruction.
        #[test]
        fn signed_range_and_half_step(x in data(), bits in MIN_SIGNED_BITS..=MAX_BITS, rounding in rounding()) {
            let q = signed(&x, Granularity::PerTensor, bits, rounding).unwrap();
            prop_assert!(q.codes().iter().all(|&c| c < 1 << bits));
            let half = 1i64 << (bits - 1);
            prop_assert!(q.int_values().unwrap().iter().all(|&v| (-half..half).contains(&v)));
            let max_abs = x.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
            let step = max_abs / (half - 1) as f64;
            for (&v, d) in x.iter().zip(q.dequantize_f64()) {
                prop_assert!((f64::from(v) - d).abs() <= 0.5 * step * (1.0 + 1e-9) + 1e-300);
            }
        }

        /// Invariant: unsigned codes are in 0..=2^bits - 1, 0.0 is reconstructed exactly, and
        /// every element is within half a step (max(x,0) - min(x,0)) / (2^bits - 1).
        #[test]
        fn unsigned_range_and_half_step(x in data(), bits in MIN_UNSIGNED_BITS..=MAX_BITS, rounding in rounding()) {
            let mut x = x;
            x.push(0.0);
            let q = unsigned(&x, Granularity::PerTensor, bits, rounding).unwrap();
            prop_assert!(q.codes().iter().all(|&c| c < (1 << bits)));
            let lo = x.iter().fold(0.0f64, |m, &v| m.min(f64::from(v)));
            let hi = x.iter().fold(0.0f64, |m, &v| m.max(f64::from(v)));
            let step = (hi - lo) / f64::from((1u32 << bits) - 1);
            let d = q.dequantize_f64();
            prop_assert_eq!(d[x.len() - 1], 0.0);
            for (&v, d) in x.iter().zip(d) {
                prop_assert!((f64::from(v) - d).abs() <= 0.5 * step * (1.0 + 1e-9) + 1e-300);
            }
        }

        /// Invariant: per-channel quantization equals per-tensor quantization of each row, for
        /// both kinds.
        #[test]
        fn per_channel_is_per_tensor_per_row(
            rows in 1usize..5,
            cols in 1usize..10,
            seed in any::<u64>(),
            bits in MIN_SIGNED_BITS..=MAX_BITS,
            rounding in rounding(),
        ) {
            let mut rng = crate::quant::SplitMix64(seed);
            let x: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(-3.0, 5.0) as f32).collect();
            let g = Granularity::PerChannel { axis0_len: rows };
            for f in [signed, unsigned] {
                let pc = f(&x, g, bits, rounding).unwrap();
                for (r, row) in x.chunks(cols).enumerate() {
                    let pt = f(row, Granularity::PerTensor, bits, rounding).unwrap();
                    prop_assert_eq!(&pc.codes()[r * cols..(r + 1) * cols], pt.codes());
                    prop_assert_eq!(pc.map().scales().unwrap()[r], pt.map().scales().unwrap()[0]);
                    prop_assert_eq!(pc.value(r, pc.codes()[r * cols]), pt.value(0, pt.codes()[0]));
                    prop_assert_eq!(&pc.dequantize_f64()[r * cols..(r + 1) * cols], &pt.dequantize_f64()[..]);
                }
            }
        }
    }
}
