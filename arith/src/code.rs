//! Integer codes and the values they stand for.
//!
//! A `bits`-wide code `c` (an unsigned bit pattern `0 ..= 2^bits - 1`) has a value that depends on its
//! encoding:
//!
//! | encoding | value | range |
//! |---|---|---|
//! | [`Encoding::Unsigned`] | `c` | `0 ..= 2^b - 1` |
//! | [`Encoding::Int`] | two's complement of `c` | `-2^(b-1) ..= 2^(b-1) - 1` |
//! | [`Encoding::Odd`] | `2c - (2^b - 1)` | odd values `-(2^b - 1) ..= 2^b - 1`, no zero |
//!
//! `Odd` at 1 bit is binary +-1 (code 1 is +1); it is the level set of SAWB and of least-squares binary
//! quantization, scaled by `alpha / (2^b - 1)`.

/// How a code maps to an integer value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Unsigned integer: value = code.
    Unsigned,
    /// Two's complement signed integer.
    Int,
    /// Symmetric odd levels without zero: value = 2 * code - (2^bits - 1).
    Odd,
}

impl Encoding {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Unsigned => "unsigned",
            Encoding::Int => "int",
            Encoding::Odd => "odd",
        }
    }

    /// True when the encoding has negative values.
    pub fn is_signed(self) -> bool {
        !matches!(self, Encoding::Unsigned)
    }

    /// The value of `code` (only its low `bits` bits are used).
    pub fn value(self, bits: u32, code: u64) -> i64 {
        assert!((1..=32).contains(&bits));
        let mask = (1u64 << bits) - 1;
        let c = code & mask;
        match self {
            Encoding::Unsigned => c as i64,
            Encoding::Int => {
                if c >> (bits - 1) == 1 {
                    c as i64 - (1i64 << bits)
                } else {
                    c as i64
                }
            }
            Encoding::Odd => 2 * c as i64 - mask as i64,
        }
    }

    /// The smallest and largest value of a `bits`-wide code.
    pub fn range(self, bits: u32) -> (i64, i64) {
        let n = (1i64 << bits) - 1;
        match self {
            Encoding::Unsigned => (0, n),
            Encoding::Int => (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1),
            Encoding::Odd => (-n, n),
        }
    }

    /// The code whose value is `value`, if there is one.
    pub fn code_of(self, bits: u32, value: i64) -> Option<u64> {
        let (lo, hi) = self.range(bits);
        if value < lo || value > hi {
            return None;
        }
        let mask = (1u64 << bits) - 1;
        match self {
            Encoding::Unsigned => Some(value as u64),
            Encoding::Int => Some((value as u64) & mask),
            Encoding::Odd => {
                let twice = value + mask as i64;
                (twice % 2 == 0).then_some((twice / 2) as u64)
            }
        }
    }
}

/// The range of the product of two values drawn from `a` and `b` (both inclusive ranges).
pub fn product_range(a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
    let c = [a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1];
    (*c.iter().min().unwrap(), *c.iter().max().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_levels_match_definition() {
        // 2-bit odd levels are -3, -1, 1, 3 (SAWB's {-a, -a/3, a/3, a} times 3/a).
        let v: Vec<i64> = (0..4).map(|c| Encoding::Odd.value(2, c)).collect();
        assert_eq!(v, vec![-3, -1, 1, 3]);
        assert_eq!(Encoding::Odd.value(1, 0), -1);
        assert_eq!(Encoding::Odd.value(1, 1), 1);
    }

    #[test]
    fn int_is_twos_complement() {
        assert_eq!(Encoding::Int.value(1, 1), -1);
        assert_eq!(Encoding::Int.value(4, 0b1000), -8);
        assert_eq!(Encoding::Int.value(4, 0b0111), 7);
        assert_eq!(Encoding::Int.value(8, 0xff), -1);
    }

    /// Invariant: for every encoding and width, `code_of` inverts `value` on every code, every value lies
    /// in `range`, and `range` is attained.
    #[test]
    fn code_of_inverts_value() {
        for enc in [Encoding::Unsigned, Encoding::Int, Encoding::Odd] {
            for bits in 1..=8u32 {
                let (lo, hi) = enc.range(bits);
                let mut seen = (i64::MAX, i64::MIN);
                for c in 0..(1u64 << bits) {
                    let v = enc.value(bits, c);
                    assert!(lo <= v && v <= hi);
                    seen = (seen.0.min(v), seen.1.max(v));
                    assert_eq!(enc.code_of(bits, v), Some(c), "{enc:?} {bits} {c}");
                }
                assert_eq!(seen, (lo, hi));
            }
        }
        assert_eq!(Encoding::Odd.code_of(2, 0), None);
    }

    /// Invariant: the processing element's decompositions equal the plain sum of products, for every
    /// pair of codes of 4 bits or fewer and every encoding pair: odd-level weights as
    /// `2 * c * a - n_w * a`, and +-1 x +-1 as `2 * xnor(c, d) - 1`; and a lane term stays inside
    /// `lane_term_range`.
    #[test]
    fn mac_decompositions_exhaustive() {
        let encs = [Encoding::Unsigned, Encoding::Int, Encoding::Odd];
        for we in [Encoding::Int, Encoding::Odd] {
            for ae in encs {
                for wb in 1..=4u32 {
                    for ab in 1..=4u32 {
                        let kind = MacKind::of(we, wb, ae, ab);
                        let (tlo, thi) = kind.lane_term_range((we, wb), (ae, ab));
                        let prange = product_range(we.range(wb), ae.range(ab));
                        for c in 0..(1u64 << wb) {
                            for d in 0..(1u64 << ab) {
                                let want = we.value(wb, c) * ae.value(ab, d);
                                assert!(prange.0 <= want && want <= prange.1);
                                let (term, got) = match kind {
                                    MacKind::Direct => (want, want),
                                    MacKind::OddWeights => {
                                        let t = c as i64 * ae.value(ab, d);
                                        (t, 2 * t - ((1i64 << wb) - 1) * ae.value(ab, d))
                                    }
                                    MacKind::OffsetWeights => unreachable!("not chosen from encodings alone"),
                                    MacKind::Xnor => {
                                        let x = i64::from(c == d);
                                        (x, 2 * x - 1)
                                    }
                                };
                                assert_eq!(got, want, "{we:?}{wb} x {ae:?}{ab}: codes {c}, {d}");
                                assert!(tlo <= term && term <= thi, "{kind:?} term {term} outside {tlo}..={thi}");
                                // packed: offset-binary weight codes (the code's top bit inverted)
                                let pk = kind.packed(we, ae);
                                if let Some((scale, n)) = pk.row_correction(wb) {
                                    let u = match pk {
                                        MacKind::OffsetWeights => (c ^ (1 << (wb - 1))) as i64,
                                        _ => c as i64,
                                    };
                                    let t = u * ae.value(ab, d);
                                    let (plo, phi) = pk.lane_term_range((we, wb), (ae, ab));
                                    assert!(plo <= t && t <= phi, "{pk:?} term {t} outside {plo}..={phi}");
                                    assert_eq!(scale * t - n * ae.value(ab, d), want, "{pk:?} {we:?}{wb} x {ae:?}{ab}: codes {c}, {d}");
                                }
                                assert_eq!(pk == MacKind::OffsetWeights, we == Encoding::Int && ae == Encoding::Unsigned, "{we:?} x {ae:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn product_range_corners() {
        assert_eq!(product_range((-8, 7), (0, 15)), (-120, 105));
        assert_eq!(product_range((-3, 3), (-3, 3)), (-9, 9));
        assert_eq!(product_range((-1, 0), (-2, 1)), (-1, 2));
    }
}

/// How a processing element forms its lane products, chosen from the two encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacKind {
    /// Two's complement weights: each lane multiplies the weight value by the activation value.
    Direct,
    /// Odd-level weights `w = 2c - n_w`: `sum w*a = 2 * sum c*a - n_w * sum a`. The processing element
    /// multiplies the unsigned code `c`, and `n_w * sum a` is computed once per row and subtracted.
    /// At 1 bit the lane product `c*a` is an AND, not a multiplier.
    OddWeights,
    /// Two's complement weights multiplied as their offset-binary code `u = w + 2^(n-1)` (the code with
    /// its top bit inverted, `0..2^n - 1`): `sum w*a = sum u*a - 2^(n-1) * sum a`, the correction computed
    /// once per row as with odd-level weights. Taken for packed lanes with unsigned activations
    /// ([`MacKind::packed`]): every field of the packed product is then never negative, so the packing
    /// is borrow-free and the packed weights are a concatenation of codes instead of a sum.
    OffsetWeights,
    /// 1-bit odd weights and activations (+-1 both): `sum w*a = 2 * popcount(xnor(c, d)) - lanes`.
    Xnor,
}

impl MacKind {
    /// The lane arithmetic for these operands.
    pub fn of(weight: Encoding, weight_bits: u32, act: Encoding, act_bits: u32) -> MacKind {
        match weight {
            Encoding::Odd if weight_bits == 1 && act == Encoding::Odd && act_bits == 1 => MacKind::Xnor,
            Encoding::Odd => MacKind::OddWeights,
            _ => MacKind::Direct,
        }
    }

    /// The lane arithmetic of packed lanes ([`crate::pack`]): two's complement weights times unsigned
    /// activations become [`MacKind::OffsetWeights`]; every other kind stays.
    pub fn packed(self, weight: Encoding, act: Encoding) -> MacKind {
        match (self, weight, act) {
            (MacKind::Direct, Encoding::Int, Encoding::Unsigned) => MacKind::OffsetWeights,
            _ => self,
        }
    }

    /// The row correction of kinds that multiply an unsigned weight code `c`:
    /// `sum w*a = scale * sum c*a - n * sum a`, as `(scale, n)` for `weight_bits`-bit weights (odd
    /// levels: `(2, 2^n - 1)`; offset-binary: `(1, 2^(n-1))`); `None` for the other kinds.
    pub fn row_correction(self, weight_bits: u32) -> Option<(i64, i64)> {
        match self {
            MacKind::OddWeights => Some((2, (1i64 << weight_bits) - 1)),
            MacKind::OffsetWeights => Some((1, 1i64 << (weight_bits - 1))),
            MacKind::Direct | MacKind::Xnor => None,
        }
    }

    /// The range of one lane's product term as the processing element computes it (before the
    /// row correction or the popcount scaling).
    pub fn lane_term_range(self, weight: (Encoding, u32), act: (Encoding, u32)) -> (i64, i64) {
        match self.lane_operands(weight, act) {
            Some((w, a)) => product_range(w, a),
            None => (0, 1),
        }
    }

    /// The ranges of the two operands a lane multiplies, weight side first: the weight value, or with
    /// odd-level weights its unsigned code; `None` for XNOR lanes, which do not multiply.
    pub fn lane_operands(self, weight: (Encoding, u32), act: (Encoding, u32)) -> Option<((i64, i64), (i64, i64))> {
        match self {
            MacKind::Direct => Some((weight.0.range(weight.1), act.0.range(act.1))),
            MacKind::OddWeights | MacKind::OffsetWeights => Some(((0, (1i64 << weight.1) - 1), act.0.range(act.1))),
            MacKind::Xnor => None,
        }
    }
}
