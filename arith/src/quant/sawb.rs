//! SAWB weight quantization (quantization.md § SAWB: statistics-aware weight binning).
//!
//! The clip level comes from two weight statistics, without a search:
//!
//! ```text
//! alpha* = c1 * sqrt(E[w^2]) - c2 * E[|w|]
//! ```
//!
//! per tensor or per output channel (row of the `[out_channels][fan_in]` weight matrix). The
//! levels are symmetric, odd and without zero: with `n = 2^k - 1`, code `c in 0..=n` stands for
//! `(2c - n) * alpha / n`, so 2-bit levels are `{-alpha, -alpha/3, +alpha/3, +alpha}`. A weight is
//! quantized to the nearest level; weights beyond `+-alpha` clamp to the outermost level.
//!
//! # Coefficients
//!
//! | bits | c1 | c2 | source |
//! |---|---|---|---|
//! | 1 | - | - | binary case: `alpha = E[|w|]` |
//! | 2 | 3.12 | 2.064 | published (the older pair 3.212 / 2.178 is not used) |
//! | 3 | 7.509 | 6.892 | published |
//! | 4 | 12.68 | 12.80 | published |
//! | 5 | 17.74 | 18.64 | published |
//! | 6 | 22.4133... | 24.1067... | linear interpolation, 1/3 of the way from 5 to 8 bits |
//! | 7 | 27.0867... | 29.5733... | linear interpolation, 2/3 of the way from 5 to 8 bits |
//! | 8 | 31.76 | 35.04 | published |
//!
//! **1 bit.** The levels are `{-alpha, +alpha}` and every weight maps to `alpha * sign(w)`
//! (`sign(0) = +1`). For that fixed sign pattern the squared error `sum (w - alpha * sign(w))^2`
//! is minimized by `alpha = E[|w|]`, the least-squares optimum (the same as ls-1 in
//! [`super::lsq`]); no regression coefficients are needed.
//!
//! **6 and 7 bits.** No coefficients are published. We interpolate `c1` and `c2` linearly in
//! the bit-width between the 5- and 8-bit pairs. Why: (a) the published pairs grow almost
//! linearly with the bit-width (c1 rises by 4.4, 5.2, 5.1 per bit from 2 to 5 bits and by 4.7
//! per bit from 5 to 8), so a straight line is the simplest fit consistent with the table;
//! (b) `alpha*` is linear in `(c1, c2)` for fixed statistics, so this is exactly the same as
//! interpolating the 5- and 8-bit clip levels of the tensor at hand: the 6- and 7-bit clip always
//! lies between the 5- and 8-bit ones, so alpha stays monotone across the table whenever it is
//! monotone from 5 to 8 bits. The published pairs are regression fits over weight distributions,
//! so exact 6/7-bit pairs would need re-running that regression; interpolation is a documented
//! stop-gap, not a published value.
//!
//! # Fallback when the formula gives `alpha <= 0`
//!
//! `c1 * sqrt(E[w^2]) - c2 * E[|w|]` is not always positive: for weights of constant magnitude
//! (`E[w^2] = E[|w|]^2`) it is `(c1 - c2) * E[|w|]`, negative at 4 and 8 bits. Then (or if the
//! estimate is not finite) alpha falls back to `max |w|`, the smallest clip level that clips no
//! weight ([`AlphaSource::MaxAbsFallback`]). If `max |w| = 0` (an all-zero tensor or channel)
//! alpha is 0 ([`AlphaSource::ZeroTensor`]): every level is 0, every code is `(n + 1) / 2` (the
//! smallest positive level) and the weights dequantize exactly to 0.
//!
//! # Ties
//!
//! A weight exactly halfway between two levels goes to the upper one (towards +infinity). In
//! particular 0 maps to the smallest positive level `+alpha / n`, matching `sign(0) = +1` of the
//! binary case.

use super::{
    check_bits, check_count, check_input, round_f64, steps, CodeMap, Encoding, Granularity,
    QuantError, Quantized, Rounding,
};

/// Smallest supported weight bit-width.
pub const MIN_BITS: u32 = 1;
/// Largest supported weight bit-width.
pub const MAX_BITS: u32 = 8;

/// The SAWB regression coefficients of one bit-width: `alpha* = c1 * sqrt(E[w^2]) - c2 * E[|w|]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    /// Coefficient of the root mean square.
    pub c1: f64,
    /// Coefficient of the mean absolute value.
    pub c2: f64,
}

const C5: Coefficients = Coefficients {
    c1: 17.74,
    c2: 18.64,
};
const C8: Coefficients = Coefficients {
    c1: 31.76,
    c2: 35.04,
};

/// The coefficients for `bits` (see the module table): published for 2, 3, 4, 5 and 8 bits,
/// linearly interpolated for 6 and 7, and `None` for 1 bit (binary case, `alpha = E[|w|]`).
pub fn coefficients(bits: u32) -> Result<Option<Coefficients>, QuantError> {
    check_bits("SAWB weight bits", bits, MIN_BITS, MAX_BITS)?;
    let c = match bits {
        2 => Coefficients {
            c1: 3.12,
            c2: 2.064,
        },
        3 => Coefficients {
            c1: 7.509,
            c2: 6.892,
        },
        4 => Coefficients {
            c1: 12.68,
            c2: 12.80,
        },
        5 => C5,
        6 | 7 => {
            let t = f64::from(bits - 5) / 3.0;
            Coefficients {
                c1: C5.c1 + t * (C8.c1 - C5.c1),
                c2: C5.c2 + t * (C8.c2 - C5.c2),
            }
        }
        8 => C8,
        _ => return Ok(None),
    };
    Ok(Some(c))
}

/// Where a clip level came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlphaSource {
    /// `c1 * sqrt(E[w^2]) - c2 * E[|w|]` (2 to 8 bits).
    Formula,
    /// `E[|w|]`, the least-squares optimum of the 1-bit case.
    BinaryMean,
    /// The estimate was `<= 0` (or not finite); `max |w|` was used instead.
    MaxAbsFallback,
    /// All weights are 0; alpha is 0.
    ZeroTensor,
}

/// A SAWB clip level with its provenance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SawbAlpha {
    /// The clip level used (`>= 0`).
    pub alpha: f64,
    /// The raw statistical estimate (formula or mean), possibly `<= 0`.
    pub estimate: f64,
    /// Whether `alpha` is the estimate or a fallback.
    pub source: AlphaSource,
}

/// SAWB clip levels, one per channel of `granularity` (one for per-tensor).
pub fn alphas(
    w: &[f32],
    granularity: Granularity,
    bits: u32,
) -> Result<Vec<SawbAlpha>, QuantError> {
    let coeffs = coefficients(bits)?;
    let layout = check_input(w, granularity)?;
    Ok(w.chunks(layout.row_len)
        .map(|row| alpha_of(row, coeffs))
        .collect())
}

fn alpha_of(w: &[f32], coeffs: Option<Coefficients>) -> SawbAlpha {
    let len = w.len() as f64;
    let mean_sq = w.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / len;
    let mean_abs = w.iter().map(|&v| f64::from(v).abs()).sum::<f64>() / len;
    let max_abs = w.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let (estimate, source) = match coeffs {
        Some(c) => (
            c.c1 * mean_sq.sqrt() - c.c2 * mean_abs,
            AlphaSource::Formula,
        ),
        None => (mean_abs, AlphaSource::BinaryMean),
    };
    if estimate.is_finite() && estimate > 0.0 {
        SawbAlpha {
            alpha: estimate,
            estimate,
            source,
        }
    } else if max_abs > 0.0 {
        SawbAlpha {
            alpha: max_abs,
            estimate,
            source: AlphaSource::MaxAbsFallback,
        }
    } else {
        SawbAlpha {
            alpha: 0.0,
            estimate,
            source: AlphaSource::ZeroTensor,
        }
    }
}

/// Quantizes weights with SAWB clip levels computed from the weights themselves
/// (per tensor, or per output channel with [`Granularity::PerChannel`]).
pub fn quantize(w: &[f32], granularity: Granularity, bits: u32) -> Result<Quantized, QuantError> {
    let a: Vec<f64> = alphas(w, granularity, bits)?
        .iter()
        .map(|a| a.alpha)
        .collect();
    quantize_with_alphas(w, granularity, &a, bits)
}

/// Quantizes weights to SAWB's odd symmetric levels with given clip levels (for example trained
/// or imported ones), one per channel of `granularity`. Each alpha must be finite and `>= 0`;
/// alpha 0 gives the all-zero level set described in the module docs.
pub fn quantize_with_alphas(
    w: &[f32],
    granularity: Granularity,
    alphas: &[f64],
    bits: u32,
) -> Result<Quantized, QuantError> {
    check_bits("SAWB weight bits", bits, MIN_BITS, MAX_BITS)?;
    let layout = check_input(w, granularity)?;
    check_count(
        "SAWB alpha values (one per channel)",
        layout.channels,
        alphas.len(),
    )?;
    let n = steps(bits);
    let mut scales = Vec::with_capacity(alphas.len());
    for (index, &alpha) in alphas.iter().enumerate() {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(QuantError::InvalidParameter {
                what: "SAWB alpha",
                index,
                value: alpha,
                requirement: "finite and >= 0",
            });
        }
        scales.push(alpha / f64::from(n));
    }
    let mut codes = Vec::with_capacity(w.len());
    for (row, &scale) in w.chunks(layout.row_len).zip(&scales) {
        codes.extend(row.iter().map(|&v| nearest_code(f64::from(v), scale, n)));
    }
    let map = CodeMap::Linear {
        encoding: Encoding::Odd,
        scales,
        zero_points: vec![0; layout.channels],
    };
    Ok(Quantized::new(bits, granularity, layout, codes, map))
}

/// Code of the level `(2c - n) * scale` nearest to `w`, ties to the upper level.
///
/// In units of `scale` the levels are the odd integers `-n..=n`; the nearest odd integer to
/// `u = w / scale` is `2c - n` with `c = floor((u + n) / 2 + 1/2)`, clamped to `0..=n`.
fn nearest_code(w: f64, scale: f64, n: u32) -> u32 {
    if scale <= 0.0 {
        // alpha = 0 (or alpha / n underflowed): every level is 0; use the smallest positive one.
        return n.div_ceil(2);
    }
    let c = round_f64((w / scale + f64::from(n)) / 2.0, Rounding::HalfUp);
    c.clamp(0.0, f64::from(n)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The test tensor: all values are dyadic, so its moments are exact and were summed by hand:
    /// sum w^2 = 0.25 + 2.25 + 4 + 0.0625 + 1 + 9 + 0.5625 + 0.015625 = 17.140625,
    /// sum |w| = 0.5 + 1.5 + 2 + 0.25 + 1 + 3 + 0.75 + 0.125 = 9.125.
    const W: [f32; 8] = [0.5, -1.5, 2.0, -0.25, 1.0, -3.0, 0.75, 0.125];
    const MEAN_SQ: f64 = 17.140625 / 8.0;
    const MEAN_ABS: f64 = 9.125 / 8.0;

    /// The clip level is c1 * sqrt(E[w^2]) - c2 * E|w| with the published table (and the
    /// interpolated pairs at 6/7 bits), and E|w| at 1 bit.
    #[test]
    fn alpha_matches_formula() {
        let table = [
            (2, 3.12, 2.064),
            (3, 7.509, 6.892),
            (4, 12.68, 12.80),
            (5, 17.74, 18.64),
            (
                6,
                17.74 + (31.76 - 17.74) / 3.0,
                18.64 + (35.04 - 18.64) / 3.0,
            ),
            (
                7,
                17.74 + 2.0 * (31.76 - 17.74) / 3.0,
                18.64 + 2.0 * (35.04 - 18.64) / 3.0,
            ),
            (8, 31.76, 35.04),
        ];
        for (bits, c1, c2) in table {
            let expected = c1 * MEAN_SQ.sqrt() - c2 * MEAN_ABS;
            assert!(expected > 0.0);
            let a = alphas(&W, Granularity::PerTensor, bits).unwrap()[0];
            assert_eq!(a.source, AlphaSource::Formula, "bits {bits}");
            assert!(
                (a.alpha - expected).abs() <= 1e-12 * expected,
                "bits {bits}: {a:?} vs {expected}"
            );
        }
        let a = alphas(&W, Granularity::PerTensor, 1).unwrap()[0];
        assert_eq!(a.source, AlphaSource::BinaryMean);
        assert_eq!(a.alpha, MEAN_ABS);
    }

    /// 2-bit levels are {-alpha, -alpha/3, alpha/3, alpha}; weights go to the nearest, ties up,
    /// and beyond +-alpha clamp.
    #[test]
    fn two_bit_levels_nearest_and_ties() {
        let w = [-10.0, -0.4, 0.2, 10.0, -2.0, 2.0, 0.0, 3.0, -3.0];
        let q = quantize_with_alphas(&w, Granularity::PerTensor, &[3.0], 2).unwrap();
        assert_eq!(q.codes(), &[0, 1, 2, 3, 1, 3, 2, 3, 0]);
        assert_eq!(
            q.dequantize_f64(),
            vec![-3.0, -1.0, 1.0, 3.0, -1.0, 3.0, 1.0, 3.0, -3.0]
        );
        assert_eq!(q.int_values().unwrap(), vec![-3, -1, 1, 3, -1, 3, 1, 3, -3]);
    }

    /// 1 bit: alpha = mean |w| and every weight maps to alpha * sign(w), sign(0) = +1.
    #[test]
    fn one_bit_is_binary_mean() {
        let w = [0.5f32, -1.5, 0.0, -0.25];
        let q = quantize(&w, Granularity::PerTensor, 1).unwrap();
        let a = (0.5 + 1.5 + 0.0 + 0.25) / 4.0;
        assert_eq!(q.codes(), &[1, 0, 1, 0]);
        assert_eq!(q.dequantize_f64(), vec![a, -a, a, -a]);
    }

    /// Constant-magnitude weights make the 4-bit formula negative: alpha falls back to max |w|;
    /// an all-zero tensor gets alpha 0 and dequantizes to exact zeros.
    #[test]
    fn fallbacks() {
        let w = [1.0f32, -1.0, 1.0, -1.0];
        let a = alphas(&w, Granularity::PerTensor, 4).unwrap()[0];
        assert!((a.estimate - (12.68 - 12.80)).abs() < 1e-12);
        assert_eq!(a.source, AlphaSource::MaxAbsFallback);
        assert_eq!(a.alpha, 1.0);
        let q = quantize(&w, Granularity::PerTensor, 4).unwrap();
        assert_eq!(q.codes(), &[15, 0, 15, 0]);
        assert_eq!(q.dequantize_f64(), vec![1.0, -1.0, 1.0, -1.0]);

        for bits in MIN_BITS..=MAX_BITS {
            let z = [0.0f32; 6];
            let a = alphas(&z, Granularity::PerTensor, bits).unwrap()[0];
            assert_eq!((a.alpha, a.source), (0.0, AlphaSource::ZeroTensor));
            let q = quantize(&z, Granularity::PerTensor, bits).unwrap();
            let n = (1u32 << bits) - 1;
            assert!(q.codes().iter().all(|&c| 2 * c == n + 1));
            assert!(q.dequantize_f64().iter().all(|&v| v == 0.0));
        }
    }

    /// Bad input is an error, not a panic.
    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            quantize(&W, Granularity::PerTensor, 9),
            Err(QuantError::BitsOutOfRange {
                bits: 9,
                min: 1,
                max: 8,
                ..
            })
        ));
        assert!(matches!(
            coefficients(0),
            Err(QuantError::BitsOutOfRange { .. })
        ));
        assert_eq!(
            quantize(&[], Granularity::PerTensor, 2),
            Err(QuantError::EmptyTensor)
        );
        assert!(matches!(
            quantize(&W, Granularity::PerChannel { axis0_len: 3 }, 2),
            Err(QuantError::ChannelSplit {
                len: 8,
                axis0_len: 3
            })
        ));
        assert!(matches!(
            quantize_with_alphas(&W, Granularity::PerTensor, &[-1.0], 2),
            Err(QuantError::InvalidParameter {
                what: "SAWB alpha",
                ..
            })
        ));
        assert!(matches!(
            quantize(&[f32::NAN], Granularity::PerTensor, 2),
            Err(QuantError::NonFinite { index: 0, .. })
        ));
    }

    fn weights() -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(-4f32..4.0, 1..48)
    }

    proptest! {
        /// Invariant: every code is in 0..=2^bits - 1 and the alpha used is >= 0.
        #[test]
        fn codes_in_range(w in weights(), bits in MIN_BITS..=MAX_BITS) {
            let q = quantize(&w, Granularity::PerTensor, bits).unwrap();
            let n = (1u32 << bits) - 1;
            prop_assert!(q.codes().iter().all(|&c| c <= n));
            prop_assert!(alphas(&w, Granularity::PerTensor, bits).unwrap()[0].alpha >= 0.0);
        }

        /// Invariant: each weight's level is a nearest one among all 2^bits levels
        /// (checked by scanning every level).
        #[test]
        fn nearest_level(w in weights(), alpha in 0.01f64..5.0, bits in MIN_BITS..=MAX_BITS) {
            let q = quantize_with_alphas(&w, Granularity::PerTensor, &[alpha], bits).unwrap();
            let n = f64::from((1u32 << bits) - 1);
            for (&v, &c) in w.iter().zip(q.codes()) {
                let v = f64::from(v);
                let got = ((2.0 * f64::from(c) - n) * alpha / n - v).abs();
                for k in 0..=(1u32 << bits) - 1 {
                    let other = ((2.0 * f64::from(k) - n) * alpha / n - v).abs();
                    prop_assert!(got <= other + 1e-12, "w={} code={} beaten by {}", v, c, k);
                }
            }
        }

        /// Invariant: the interpolated 6/7-bit clip lies between the 5- and 8-bit clips.
        #[test]
        fn interpolated_alpha_between_neighbours(w in weights()) {
            let at = |bits| alphas(&w, Granularity::PerTensor, bits).unwrap()[0];
            let (a5, a8) = (at(5), at(8));
            if a5.source == AlphaSource::Formula && a8.source == AlphaSource::Formula {
                for bits in [6, 7] {
                    let a = at(bits).alpha;
                    let (lo, hi) = (a5.alpha.min(a8.alpha), a5.alpha.max(a8.alpha));
                    prop_assert!(a >= lo * (1.0 - 1e-12) && a <= hi * (1.0 + 1e-12));
                }
            }
        }

        /// Invariant: per-output-channel SAWB equals per-tensor SAWB applied to each row
        /// (same alphas, same codes).
        #[test]
        fn per_channel_is_per_tensor_per_row(
            rows in 1usize..5,
            cols in 1usize..10,
            seed in any::<u64>(),
            bits in MIN_BITS..=MAX_BITS,
        ) {
            let mut rng = crate::quant::SplitMix64(seed);
            let w: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(-2.0, 2.0) as f32).collect();
            let g = Granularity::PerChannel { axis0_len: rows };
            let pc = quantize(&w, g, bits).unwrap();
            let pc_alphas = alphas(&w, g, bits).unwrap();
            for (r, row) in w.chunks(cols).enumerate() {
                let pt = quantize(row, Granularity::PerTensor, bits).unwrap();
                prop_assert_eq!(&pc.codes()[r * cols..(r + 1) * cols], pt.codes());
                prop_assert_eq!(&pc.dequantize_f64()[r * cols..(r + 1) * cols], &pt.dequantize_f64()[..]);
                prop_assert_eq!(pc_alphas[r], alphas(row, Granularity::PerTensor, bits).unwrap()[0]);
            }
        }
    }
}
