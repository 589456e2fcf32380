//! The integer semantics of one output channel, from accumulator to output code.
//!
//! For an accumulator value `acc` of output channel `c` with parameters `bias`, `alpha`, `mult`, `shift`:
//!
//! ```text
//! t    = acc + bias                                   bias: signed, in the accumulator domain
//! x    = clamp(t, 0, alpha)                           PACT clip to [0, alpha], alpha >= 0
//! q    = round(x * mult / 2^shift)                    requantization, rounding per `Rounding`
//! code = min(q, 2^out_bits - 1)                       saturation to the unsigned output code
//! ```
//!
//! `alpha * mult / 2^shift` is the real-valued scale chosen so that `alpha` maps to `2^out_bits - 1`
//! (PACT: `scale = alpha / n`); the final `min` then only matters when the scale rounds the top up.
//! `x` and `mult` are non-negative, so `q >= 0` and no lower clamp is needed after rounding.

use crate::round::{shift_round, Rounding};

/// Run-time parameters of one output channel (what the hardware's parameter-load interface writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelParams {
    /// Added to the accumulator before clipping (batch-norm shift, zero-point corrections).
    pub bias: i64,
    /// PACT clip level in the accumulator domain.
    pub alpha: u64,
    /// Requantization multiplier.
    pub mult: u64,
    /// Requantization right shift.
    pub shift: u32,
}

/// PACT clip in the integer domain: `clamp(acc + bias, 0, alpha)`.
pub fn pact_clip(acc: i64, bias: i64, alpha: u64) -> u64 {
    let t = i128::from(acc) + i128::from(bias);
    t.clamp(0, i128::from(alpha)) as u64
}

/// Requantize a non-negative value: `min(round(x * mult / 2^shift), 2^out_bits - 1)`.
pub fn requantize(x: u64, mult: u64, shift: u32, rounding: Rounding, out_bits: u32) -> u64 {
    let p = i128::from(x) * i128::from(mult);
    let q = shift_round(p, shift, rounding);
    let max = (1i128 << out_bits) - 1;
    q.clamp(0, max) as u64
}

/// The whole output pipeline of one channel: clip, then requantize.
pub fn output_code(acc: i64, p: &ChannelParams, rounding: Rounding, out_bits: u32) -> u64 {
    output_code_frac(acc, p, rounding, out_bits, 0)
}

/// The biased accumulator with a bias of `frac` fractional bits: `t = acc * 2^frac + bias`, exact. The
/// bias (and everything after it: the clip level, the requantizer's input) is then in units of
/// `2^-frac` accumulator units.
pub fn biased(acc: i64, bias: i64, frac: u32) -> i128 {
    (i128::from(acc) << frac) + i128::from(bias)
}

/// The output pipeline with a finer bias: `t = acc * 2^frac + bias`, `x = clamp(t, 0, alpha)`, then
/// requantize `x` (so `alpha` is in the same `2^-frac` units as the bias, and `mult / 2^shift` maps
/// those units to output steps). `frac = 0` is [`output_code`].
pub fn output_code_frac(acc: i64, p: &ChannelParams, rounding: Rounding, out_bits: u32, frac: u32) -> u64 {
    let x = biased(acc, p.bias, frac).clamp(0, i128::from(p.alpha)) as u64;
    requantize(x, p.mult, p.shift, rounding, out_bits)
}

/// Most bases of a basis-coded output ([`bases_code`]).
pub const MAX_OUT_BASES: u32 = 2;

/// The binary-basis code (ls-1, ls-2, ls-T, gf-1, gf-2 activations of the next layer) of the
/// pre-activation `t = acc * 2^frac + bias`, taken in units of the first basis scale `v_1`:
/// `z = t * mult / 2^shift` (exact, a rational). The signs are the greedy residual signs of
/// `arith::quant::lsq::quantize_with_scales` with `sign(0) = +1`:
///
/// ```text
/// s_1 = +1 if z >= 0                  else -1
/// s_2 = +1 if z - s_1 >= 0            else -1      (the residual after v_1 * s_1, with v_1 = 1)
/// ```
///
/// bit `i` of the code is 1 for `s_(i+1) = +1`. Every test is an integer comparison,
/// `t * mult >= c * 2^shift` with `c` in `{-1, 0, 1}`. The scale of the last basis never changes the
/// code, so with at most 2 bases only `v_1` (through `mult / 2^shift`) is a parameter.
/// `bases` is `1..=`[`MAX_OUT_BASES`].
pub fn bases_code(acc: i64, p: &ChannelParams, frac: u32, bases: u32) -> u64 {
    assert!((1..=MAX_OUT_BASES).contains(&bases), "1..={MAX_OUT_BASES} output bases");
    let tm = biased(acc, p.bias, frac) * i128::from(p.mult);
    let unit = 1i128 << p.shift;
    let s1 = tm >= 0;
    if bases == 1 {
        return u64::from(s1);
    }
    let s2 = tm >= if s1 { unit } else { -unit };
    u64::from(s1) | u64::from(s2) << 1
}

/// One accumulation step with the accumulator held in `bits` bits: exact when the sum fits; when
/// `saturate` is set an out-of-range sum sticks at the nearest bound, otherwise it wraps (two's
/// complement), which a validated configuration never lets happen.
pub fn accumulate(acc: i64, dot: i64, bits: u32, saturate: bool) -> i64 {
    let sum = i128::from(acc) + i128::from(dot);
    let lo = -(1i128 << (bits - 1));
    let hi = (1i128 << (bits - 1)) - 1;
    if saturate {
        sum.clamp(lo, hi) as i64
    } else {
        let m = 1i128 << bits;
        let w = sum.rem_euclid(m);
        (if w > hi { w - m } else { w }) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Invariant: the basis code equals the greedy residual signs of the float encoder
    /// (`quant::lsq::quantize_with_scales`) of the real pre-activation `x = t / 2^frac` with the first
    /// basis scale `v_1 = 2^shift / mult / 2^frac`, for every accumulator value of a small range and
    /// parameters whose values are exact in floating point.
    #[test]
    fn bases_code_is_the_greedy_residual_encoding() {
        for frac in [0u32, 3] {
            for (bias, mult, shift) in [(0i64, 1u64, 0u32), (5, 3, 2), (-17, 1, 4), (9, 5, 6), (-3, 2, 1)] {
                let p = ChannelParams { bias, alpha: 0, mult, shift };
                let v1 = 2f64.powi(shift as i32) / mult as f64 / 2f64.powi(frac as i32);
                for acc in -300i64..=300 {
                    let x = biased(acc, bias, frac) as f64 / 2f64.powi(frac as i32);
                    for bases in 1..=2u32 {
                        let scales = [v1, 0.37][..bases as usize].to_vec();
                        let q = crate::quant::lsq::quantize_with_scales(&[x as f32], &scales).unwrap();
                        let want: u64 = q.bases().iter().enumerate().map(|(i, b)| u64::from(b.signs()[0]) << i).sum();
                        assert_eq!(bases_code(acc, &p, frac, bases), want, "acc {acc} bias {bias} mult {mult} shift {shift} frac {frac}");
                    }
                }
            }
        }
    }

    /// Invariant: a finer bias is the same pipeline on `acc * 2^frac + bias`: with every parameter
    /// scaled by `2^frac` (bias and clip up, the shift up) the code is unchanged.
    #[test]
    fn finer_bias_scales_consistently() {
        for acc in -50i64..200 {
            for (bias, alpha, mult, shift) in [(7i64, 150u64, 3u64, 5u32), (-20, 90, 11, 6)] {
                let p = ChannelParams { bias, alpha, mult, shift };
                let want = output_code(acc, &p, Rounding::HalfEven, 4);
                let f = ChannelParams { bias: bias * 8, alpha: alpha * 8, mult, shift: shift + 3 };
                assert_eq!(output_code_frac(acc, &f, Rounding::HalfEven, 4, 3), want, "acc {acc}");
                // and a bias between two accumulator units lands between the two integer biases' codes
                let half = ChannelParams { bias: bias * 8 + 4, ..f };
                let hi = output_code(acc, &ChannelParams { bias: bias + 1, ..p }, Rounding::HalfEven, 4);
                let got = output_code_frac(acc, &half, Rounding::HalfEven, 4, 3);
                assert!(want <= got && got <= hi, "acc {acc}: {want} <= {got} <= {hi}");
            }
        }
    }

    #[test]
    fn clip_bounds() {
        assert_eq!(pact_clip(-5, 0, 10), 0);
        assert_eq!(pact_clip(5, 0, 10), 5);
        assert_eq!(pact_clip(15, 0, 10), 10);
        assert_eq!(pact_clip(5, -7, 10), 0);
        assert_eq!(pact_clip(5, 3, 10), 8);
    }

    #[test]
    fn requantize_ties() {
        // 5 * 1 / 2 = 2.5: half_even -> 2, half_up -> 3
        assert_eq!(requantize(5, 1, 1, Rounding::HalfEven, 4), 2);
        assert_eq!(requantize(5, 1, 1, Rounding::HalfUp, 4), 3);
        // 7 * 3 / 4 = 5.25 -> 5 both ways; saturates at 2^2 - 1 = 3 for 2-bit output
        assert_eq!(requantize(7, 3, 2, Rounding::HalfUp, 4), 5);
        assert_eq!(requantize(7, 3, 2, Rounding::HalfUp, 2), 3);
    }

    /// Invariant: with alpha * mult / 2^shift = n exactly, the code equals the PACT quantizer
    /// round(clip(t, 0, alpha) * n / alpha) computed independently in rationals, for every t.
    #[test]
    fn matches_pact_definition_when_scale_is_exact() {
        for out_bits in 1..=4u32 {
            let n = (1u64 << out_bits) - 1;
            // alpha = 2^s / mult * n: choose mult = 1, alpha = n * 2^s / 1 with s = 3 -> scale n/alpha = 1/8
            let s = 3;
            let alpha = n << s;
            let p = ChannelParams { bias: 0, alpha, mult: 1, shift: s };
            for t in -20i64..(alpha as i64 + 20) {
                let clipped = t.clamp(0, alpha as i64);
                // round(clipped / 8), half-even, in integers: compare 2*rem with 8
                let (q, r) = (clipped / 8, clipped % 8);
                let want = if 2 * r > 8 || (2 * r == 8 && q % 2 == 1) { q + 1 } else { q };
                assert_eq!(output_code(t, &p, Rounding::HalfEven, out_bits) as i64, want, "t={t}");
            }
        }
    }

    #[test]
    fn accumulate_saturates_and_wraps() {
        assert_eq!(accumulate(120, 10, 8, true), 127);
        assert_eq!(accumulate(-120, -10, 8, true), -128);
        assert_eq!(accumulate(120, 10, 8, false), -126);
        assert_eq!(accumulate(3, 4, 8, false), 7);
    }

    proptest! {
        /// Invariant: the output code is monotone non-decreasing in the accumulator and always within
        /// 0..=2^out_bits-1.
        #[test]
        fn output_monotone_and_in_range(acc in -100_000i64..100_000, d in 0i64..500, bias in -1000i64..1000,
                                        alpha in 0u64..200_000, mult in 0u64..65536, shift in 0u32..24,
                                        out_bits in 1u32..=8, even in any::<bool>()) {
            let mode = if even { Rounding::HalfEven } else { Rounding::HalfUp };
            let p = ChannelParams { bias, alpha, mult, shift };
            let a = output_code(acc, &p, mode, out_bits);
            let b = output_code(acc + d, &p, mode, out_bits);
            prop_assert!(a <= b);
            prop_assert!(b < (1u64 << out_bits));
        }

        /// Invariant: saturating accumulation never leaves the accumulator range and equals the exact sum
        /// whenever the exact sum is in range.
        #[test]
        fn accumulate_saturating_bounds(acc in -(1i64 << 15)..(1i64 << 15), dot in -70000i64..70000, bits in 2u32..=20) {
            let lo = -(1i64 << (bits - 1));
            let hi = (1i64 << (bits - 1)) - 1;
            let acc = acc.clamp(lo, hi);
            let r = accumulate(acc, dot, bits, true);
            prop_assert!(lo <= r && r <= hi);
            if (lo..=hi).contains(&(acc + dot)) { prop_assert_eq!(r, acc + dot); }
        }
    }
}
