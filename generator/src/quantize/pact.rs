//! The output stage's arithmetic in the float domain: the PACT code of a value and the
//! requantizer's multiplier and shift (mirrors `qmac_arith::quant::pact`).

use qmac_arith::quant::{round_f64, Rounding};

/// PACT code of a real value: `clamp(round(clip(y, 0, alpha) * n / alpha), 0, n)`.
pub fn pact_code(y: f64, alpha: f64, bits: u32, rounding: Rounding) -> u64 {
    let n = f64::from((1u32 << bits) - 1);
    let c = y.clamp(0.0, alpha);
    round_f64(c * n / alpha, rounding).clamp(0.0, n) as u64
}

/// `(mult, shift, saturated)`: the largest `shift <= max_shift` with `round(m * 2^shift)` within
/// `mult_bits`; if even shift 0 overflows, the largest multiplier and shift 0 (`saturated`).
pub fn mult_shift(m: f64, mult_bits: u32, max_shift: u32, rounding: Rounding) -> (u64, u32, bool) {
    let mmax = ((1u128 << mult_bits) - 1) as f64;
    for s in (0..=max_shift).rev() {
        let v = round_f64(m * 2f64.powi(s as i32), rounding);
        if v <= mmax {
            return (v as u64, s, false);
        }
    }
    (mmax as u64, 0, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mult_shift_takes_the_largest_shift() {
        // m = 0.75 with 4-bit multipliers: 0.75 * 16 = 12 fits, 0.75 * 32 = 24 does not
        assert_eq!(mult_shift(0.75, 4, 40, Rounding::HalfEven), (12, 4, false));
        // exact powers of two keep the full width: 1.0 * 2^3 = 8 <= 15
        assert_eq!(mult_shift(1.0, 4, 40, Rounding::HalfEven), (8, 3, false));
        // capped by max_shift
        assert_eq!(mult_shift(0.001, 16, 5, Rounding::HalfEven), (0, 5, false));
        // too large even at shift 0
        assert_eq!(mult_shift(40.0, 4, 40, Rounding::HalfEven), (15, 0, true));
        // rounding near the top: 15.6 rounds to 16 > 15 at shift 0 -> saturated
        assert_eq!(mult_shift(15.6, 4, 0, Rounding::HalfEven), (15, 0, true));
        // 0.49 * 32 = 15.68 -> 16 does not fit, so shift 4: 7.84 -> 8
        assert_eq!(mult_shift(0.49, 4, 40, Rounding::HalfEven), (8, 4, false));
    }

    #[test]
    fn pact_code_matches_definition() {
        assert_eq!(pact_code(-1.0, 2.0, 2, Rounding::HalfEven), 0);
        assert_eq!(pact_code(5.0, 2.0, 2, Rounding::HalfEven), 3);
        // 1.0 * 3 / 2 = 1.5: half_even -> 2, half_up -> 2; 0.333.. * 1.5 = 0.5 -> 0 / 1
        assert_eq!(pact_code(1.0, 2.0, 2, Rounding::HalfEven), 2);
        assert_eq!(pact_code(1.0 / 3.0, 2.0, 2, Rounding::HalfEven), 0);
        assert_eq!(pact_code(1.0 / 3.0, 2.0, 2, Rounding::HalfUp), 1);
    }
}
