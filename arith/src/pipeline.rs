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
    requantize(pact_clip(acc, p.bias, p.alpha), p.mult, p.shift, rounding, out_bits)
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
