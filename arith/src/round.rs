//! Rounding right shift: `round(x / 2^s)` for integers, with the tie rule made explicit.
//!
//! This is the one definition of rounding in qmac. The reference model calls [`shift_round`]; the
//! generated hardware implements [`shift_round_by_parts`], which the tests prove equal to it
//! ([`shift_round_by_add`] is the textbook adder form, kept as a second check).

/// The tie-breaking rule of a rounding right shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Ties go to the even neighbour (banker's rounding): `round(2.5) = 2`, `round(3.5) = 4`,
    /// `round(-2.5) = -2`. The default of `torch.round` and of the QONNX `Quant` operator (`ROUND`).
    HalfEven,
    /// Ties go up, towards +infinity: `floor(x + 1/2)`; `round(2.5) = 3`, `round(-2.5) = -2`.
    HalfUp,
}

impl Rounding {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Rounding::HalfEven => "half_even",
            Rounding::HalfUp => "half_up",
        }
    }
}

/// `round(x / 2^s)` with ties broken by `mode`, by definition: with `q = floor(x / 2^s)` and
/// remainder `r = x - q * 2^s` (so `0 <= r < 2^s`), the result is `q + 1` when `r > 2^(s-1)`,
/// `q` when `r < 2^(s-1)`, and at a tie (`r == 2^(s-1)`) `q + 1` for half-up or `q + (q odd)` for
/// half-even. `s == 0` returns `x`.
pub fn shift_round(x: i128, s: u32, mode: Rounding) -> i128 {
    assert!(s < 127, "shift {s} out of range");
    if s == 0 {
        return x;
    }
    let q = x.div_euclid(1i128 << s);
    let r = x.rem_euclid(1i128 << s);
    let half = 1i128 << (s - 1);
    let up = match r.cmp(&half) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => match mode {
            Rounding::HalfUp => true,
            Rounding::HalfEven => q & 1 == 1,
        },
    };
    q + i128::from(up)
}

/// The same rounding as the hardware computes it, with one adder and one shifter and no comparator:
/// `(x + 2^(s-1) - 1 + t) >> s` (arithmetic shift) where the tie bit `t` is 1 for half-up and bit `s`
/// of `x` (the parity of `floor(x / 2^s)`) for half-even; `s == 0` returns `x`.
///
/// Why it is equal to [`shift_round`]: write `x = q * 2^s + r`. Adding `2^(s-1) - 1 + t` carries into
/// `q` exactly when `r + 2^(s-1) - 1 + t >= 2^s`, i.e. when `r > 2^(s-1)`, or `r == 2^(s-1)` and `t == 1`;
/// `t <= 1` keeps `r < 2^(s-1)` from carrying. Checked exhaustively in the tests.
pub fn shift_round_by_add(x: i128, s: u32, mode: Rounding) -> i128 {
    if s == 0 {
        return x;
    }
    let t = match mode {
        Rounding::HalfUp => 1,
        Rounding::HalfEven => (x >> s) & 1,
    };
    (x + (1i128 << (s - 1)) - 1 + t) >> s
}

/// The same rounding as the hardware computes it, from parts of `x` that need no carry chain: the
/// quotient `q = x >> s`, the first dropped bit `h` (bit `s-1`), and the sticky bit `k` (any of bits
/// `0..s-1` set). Then `round = q + u` with `u = h && (k || t)`, where `t` is 1 for half-up and bit 0 of `q`
/// for half-even; `s == 0` returns `x`.
///
/// Why it equals [`shift_round`]: with remainder `r = x - q * 2^s`, `h && k` means `r > 2^(s-1)`,
/// `h && !k` means `r == 2^(s-1)` (a tie, broken by `t`), and `!h` means `r < 2^(s-1)`. In hardware
/// `q`'s low bits are a part-select, `h` and `k` are masked OR-reductions, and only the output-width
/// increment `q + u` is an adder. Checked exhaustively in the tests.
pub fn shift_round_by_parts(x: i128, s: u32, mode: Rounding) -> i128 {
    if s == 0 {
        return x;
    }
    let q = x >> s;
    let h = (x >> (s - 1)) & 1 == 1;
    let k = x & ((1i128 << (s - 1)) - 1) != 0;
    let t = match mode {
        Rounding::HalfUp => true,
        Rounding::HalfEven => q & 1 == 1,
    };
    q + i128::from(h && (k || t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ties_half_even() {
        // x / 2 for x = -5..=5: -2.5 -> -2, -1.5 -> -2, -0.5 -> 0, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
        let got: Vec<i128> = [-5, -3, -1, 1, 3, 5].iter().map(|&x| shift_round(x, 1, Rounding::HalfEven)).collect();
        assert_eq!(got, vec![-2, -2, 0, 0, 2, 2]);
        // 10 / 4 = 2.5 -> 2; 14 / 4 = 3.5 -> 4
        assert_eq!(shift_round(10, 2, Rounding::HalfEven), 2);
        assert_eq!(shift_round(14, 2, Rounding::HalfEven), 4);
    }

    #[test]
    fn ties_half_up() {
        let got: Vec<i128> = [-5, -3, -1, 1, 3, 5].iter().map(|&x| shift_round(x, 1, Rounding::HalfUp)).collect();
        assert_eq!(got, vec![-2, -1, 0, 1, 2, 3]);
        assert_eq!(shift_round(10, 2, Rounding::HalfUp), 3);
        assert_eq!(shift_round(-10, 2, Rounding::HalfUp), -2);
    }

    /// Invariant: the result is the integer nearest to x / 2^s (checked in exact rational arithmetic:
    /// |x - y * 2^s| <= 2^(s-1)), and at an exact tie it is the neighbour the mode names.
    #[test]
    fn nearest_and_tie_rule_exhaustive() {
        for s in 0..=6u32 {
            for x in -300i128..=300 {
                for mode in [Rounding::HalfEven, Rounding::HalfUp] {
                    let y = shift_round(x, s, mode);
                    let err2 = 2 * (x - (y << s)); // twice the error, in units of 2^-s
                    assert!(err2.abs() <= (1i128 << s), "x={x} s={s} y={y}");
                    if s > 0 && err2.abs() == (1i128 << s) {
                        match mode {
                            Rounding::HalfUp => assert!(y << s > x, "half_up tie must go up: x={x} s={s}"),
                            Rounding::HalfEven => assert_eq!(y % 2, 0, "half_even tie must be even: x={x} s={s}"),
                        }
                    }
                }
            }
        }
    }

    /// Invariant: the adder form and the parts form (the one the hardware uses) equal the definition
    /// for every x in a 12-bit signed range and every shift up to 14.
    #[test]
    fn hardware_forms_equal_definition_exhaustive() {
        for s in 0..=14u32 {
            for x in -2048i128..2048 {
                for mode in [Rounding::HalfEven, Rounding::HalfUp] {
                    assert_eq!(shift_round_by_add(x, s, mode), shift_round(x, s, mode), "x={x} s={s} {mode:?}");
                    assert_eq!(shift_round_by_parts(x, s, mode), shift_round(x, s, mode), "x={x} s={s} {mode:?}");
                }
            }
        }
    }

    proptest! {
        /// Invariant: rounding is monotone in x and the adder form agrees with the definition on wide values.
        #[test]
        fn monotone_and_adder_form_wide(x in -(1i128 << 60)..(1i128 << 60), d in 0i128..1000, s in 0u32..40) {
            for mode in [Rounding::HalfEven, Rounding::HalfUp] {
                prop_assert!(shift_round(x, s, mode) <= shift_round(x + d, s, mode));
                prop_assert_eq!(shift_round_by_add(x, s, mode), shift_round(x, s, mode));
                prop_assert_eq!(shift_round_by_parts(x, s, mode), shift_round(x, s, mode));
            }
        }
    }
}
