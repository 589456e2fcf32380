//! Bit widths of integer ranges.

/// Smallest `w` with `2^w >= n` (ceil(log2(n))); `clog2(0) == clog2(1) == 0`.
pub fn clog2(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

/// Bits of an unsigned number that holds every value in `0..=max`.
pub fn unsigned_bits(max: u128) -> u32 {
    (128 - max.leading_zeros()).max(1)
}

/// Bits of a two's complement number that holds every value in `min..=max` (`min <= max`).
///
/// A `w`-bit two's complement number holds `-2^(w-1) ..= 2^(w-1) - 1`, so `w` is the smallest
/// width with `min >= -2^(w-1)` and `max <= 2^(w-1) - 1`.
pub fn signed_bits(min: i128, max: i128) -> u32 {
    assert!(min <= max, "signed_bits: empty range {min}..={max}");
    let mut w = 1u32;
    while w < 127 {
        let lo = -(1i128 << (w - 1));
        let hi = (1i128 << (w - 1)) - 1;
        if min >= lo && max <= hi {
            return w;
        }
        w += 1;
    }
    127
}

/// The range `(min, max)` of a `bits`-wide two's complement number.
pub fn signed_range(bits: u32) -> (i128, i128) {
    assert!((1..=127).contains(&bits));
    (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clog2_small_values() {
        let expect = [(0u64, 0u32), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (1024, 10)];
        for (n, w) in expect {
            assert_eq!(clog2(n), w, "clog2({n})");
        }
    }

    /// Invariant: `signed_bits` is the smallest width whose range contains the interval, checked by
    /// brute force over every interval with ends in -300..=300.
    #[test]
    fn signed_bits_is_minimal() {
        for min in -300i128..=300 {
            for max in (min..=300).step_by(7) {
                let w = signed_bits(min, max);
                let (lo, hi) = signed_range(w);
                assert!(lo <= min && max <= hi, "{min}..={max} does not fit {w} bits");
                if w > 1 {
                    let (lo, hi) = signed_range(w - 1);
                    assert!(min < lo || max > hi, "{min}..={max} fits {} bits", w - 1);
                }
            }
        }
    }

    #[test]
    fn unsigned_bits_edges() {
        assert_eq!(unsigned_bits(0), 1);
        assert_eq!(unsigned_bits(1), 1);
        assert_eq!(unsigned_bits(2), 2);
        assert_eq!(unsigned_bits(255), 8);
        assert_eq!(unsigned_bits(256), 9);
    }
}
