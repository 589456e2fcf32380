//! Exact dot-product packing: several low-bit lane products from one wide multiply.
//!
//! `n` lanes with operands `x_i` (weight side) and `y_i` (activation side) are packed into two
//! integers with a field spacing of `k` bits, the weights in ascending and the activations in
//! descending order:
//!
//! ```text
//! X = sum_i x_i * 2^(i k)            Y = sum_i y_i * 2^((n-1-i) k)          i = 0..n-1
//! P = X * Y = sum_j F_j * 2^(j k)    F_j = sum_{i + (n-1-l) = j} x_i y_l
//! ```
//!
//! The field at `E = (n-1) k` is `F_(n-1) = sum_i x_i y_i`, the lanes' dot product. The fields
//! below it form `L = sum_(j < n-1) F_j 2^(j k)`; `k` is chosen so that `-2^(E-1) <= L < 2^(E-1)`
//! ([`Packing::new`]). Then `P mod 2^E = L mod 2^E`, bit `E-1` of `P` is the sign of `L` (the
//! borrow `b`: `floor(L / 2^E) = -b`), and
//!
//! ```text
//! P >> E = F_(n-1) - b + 2^k * (the fields above)
//! dot    = ((P >> E) + b) mod 2^k, read as a k-bit two's complement number
//! ```
//!
//! which is exact because `k` is also wide enough for the dot product itself. Only the low `E + k`
//! bits of `P` are ever used, so the multiply may be computed modulo `2^(E + k)`.
//!
//! When both operands are never negative (unsigned activations times unsigned codes: odd-level
//! weights' codes, or two's complement weights as offset-binary codes) every field is too, so the
//! packing is borrow-free ([`Packing::borrow_free`]): `k` only has to hold the dot product as an
//! unsigned number, the fields below it only have to stay below `2^E`, and the dot product is bits
//! `[E+k-1:E]` of `P` as they are, with no borrow to add.
//! [`Packing::field`] is that extraction; the tests check it against the plain sum of products for
//! every operand combination of every packing a multiplier of up to [`MAX_OPERAND_BITS`] allows.

use crate::code::product_range;
use crate::width::{signed_bits, unsigned_bits};

/// The widest signed multiplier operand of the Lattice DSP blocks (ECP5 MULT18X18D: 18 x 18).
pub const MAX_OPERAND_BITS: u32 = 18;
/// The operand width that fits both families' blocks (iCE40 SB_MAC16: 16 x 16).
pub const COMMON_OPERAND_BITS: u32 = 16;
/// The highest dot-product field position [`Packing::new`] considers (keeps every intermediate
/// value inside `i128`).
pub const MAX_FIELD_LSB: u32 = 88;

/// One exact packing of `terms` lane products into one multiply (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packing {
    /// Lanes per multiply, `n >= 2`.
    pub terms: u32,
    /// Field spacing `k` in bits: also the width of the extracted dot product.
    pub spacing: u32,
    /// Range of one weight-side operand `x_i`.
    pub x: (i64, i64),
    /// Range of one activation-side operand `y_i`.
    pub y: (i64, i64),
}

impl Packing {
    /// The packing of `terms` lanes with the smallest spacing that is exact for every operand in the
    /// ranges `x` and `y`: `k` holds the dot product of `terms` products, and the fields below the dot
    /// product (`F_j` has `j + 1` products) stay within `-2^(E-1) .. 2^(E-1)` for every operand.
    /// `None` when the dot-product field would start above bit [`MAX_FIELD_LSB`] (no DSP block
    /// multiplies such operands). Operands are at most 2^20 in magnitude.
    pub fn new(terms: u32, x: (i64, i64), y: (i64, i64)) -> Option<Packing> {
        assert!(terms >= 2, "a packing has at least two lanes");
        let lim = 1i64 << 20;
        assert!([x.0, x.1, y.0, y.1].iter().all(|v| v.abs() <= lim) && x.0 <= x.1 && y.0 <= y.1, "operand ranges {x:?} {y:?}");
        let (plo, phi) = product_range(x, y);
        let n = i128::from(terms);
        // borrow-free: the dot product as an unsigned field, and the fields below it within [0, 2^E)
        let unsigned = x.0 >= 0 && y.0 >= 0;
        let mut k = if unsigned { unsigned_bits((n * i128::from(phi)) as u128) } else { signed_bits(n * i128::from(plo), n * i128::from(phi)) };
        loop {
            if (terms - 1) * k > MAX_FIELD_LSB {
                return None;
            }
            let (llo, lhi) = (0..terms - 1).fold((0i128, 0i128), |(lo, hi), j| {
                let c = i128::from(j + 1) << (j * k);
                (lo + c * i128::from(plo), hi + c * i128::from(phi))
            });
            let e = (terms - 1) * k;
            let fits = if unsigned { lhi < 1i128 << e } else { -(1i128 << (e - 1)) <= llo && lhi < 1i128 << (e - 1) };
            if fits {
                return Some(Packing { terms, spacing: k, x, y });
            }
            k += 1;
        }
    }

    /// Both operands are never negative, so no field is: the dot product is bits `[E+k-1:E]` of the
    /// product as they are, unsigned, with no borrow (see the module documentation).
    pub fn borrow_free(&self) -> bool {
        self.x.0 >= 0 && self.y.0 >= 0
    }
    /// Position `E = (terms - 1) * spacing` of the dot-product field in the product.
    pub fn field_lsb(&self) -> u32 {
        (self.terms - 1) * self.spacing
    }
    /// Bits of the product that are used: `E + k`; the multiply may be computed modulo `2^this`.
    pub fn product_bits(&self) -> u32 {
        self.field_lsb() + self.spacing
    }
    /// Range of the packed weight operand `X`.
    pub fn x_range(&self) -> (i128, i128) {
        packed_range(self.x, self.terms, self.spacing)
    }
    /// Range of the packed activation operand `Y`.
    pub fn y_range(&self) -> (i128, i128) {
        packed_range(self.y, self.terms, self.spacing)
    }
    /// Signed width of `X`.
    pub fn x_bits(&self) -> u32 {
        let (lo, hi) = self.x_range();
        signed_bits(lo, hi)
    }
    /// Signed width of `Y`.
    pub fn y_bits(&self) -> u32 {
        let (lo, hi) = self.y_range();
        signed_bits(lo, hi)
    }
    /// The wider operand: the multiplier this packing needs is `operand_bits` x `operand_bits` signed.
    pub fn operand_bits(&self) -> u32 {
        self.x_bits().max(self.y_bits())
    }
    /// Range of the extracted dot product (`terms` products).
    pub fn dot_range(&self) -> (i64, i64) {
        let (lo, hi) = product_range(self.x, self.y);
        (lo * i64::from(self.terms), hi * i64::from(self.terms))
    }
    /// `X = sum_i x_i 2^(i k)` (lane 0 lowest).
    pub fn pack_x(&self, xs: &[i64]) -> i128 {
        assert_eq!(xs.len(), self.terms as usize);
        xs.iter().enumerate().map(|(i, &v)| i128::from(v) << (i as u32 * self.spacing)).sum()
    }
    /// `Y = sum_i y_i 2^((n-1-i) k)` (lane 0 highest).
    pub fn pack_y(&self, ys: &[i64]) -> i128 {
        assert_eq!(ys.len(), self.terms as usize);
        ys.iter().enumerate().map(|(i, &v)| i128::from(v) << ((self.terms - 1 - i as u32) * self.spacing)).sum()
    }
    /// The borrow: bit `E - 1` of the product (the sign of the fields below the dot product); 0 for
    /// a borrow-free packing, which does not read that bit.
    pub fn borrow(&self, product: i128) -> i64 {
        if self.borrow_free() {
            return 0;
        }
        ((product >> (self.field_lsb() - 1)) & 1) as i64
    }
    /// The dot product from a product `X * Y` (only its low [`Packing::product_bits`] bits are read):
    /// `((P >> E) + borrow) mod 2^k` as a k-bit two's complement number, as the hardware computes it;
    /// borrow-free, `(P >> E) mod 2^k` as an unsigned number.
    pub fn field(&self, product: i128) -> i64 {
        let k = self.spacing;
        let raw = (product >> self.field_lsb()) & ((1i128 << k) - 1);
        if self.borrow_free() {
            return raw as i64;
        }
        let sum = (raw + i128::from(self.borrow(product))) & ((1i128 << k) - 1);
        (if sum >> (k - 1) == 1 { sum - (1i128 << k) } else { sum }) as i64
    }
    /// The dot product of `xs` and `ys` computed through the packing (exact for operands in range).
    pub fn dot(&self, xs: &[i64], ys: &[i64]) -> i64 {
        self.field(self.pack_x(xs).wrapping_mul(self.pack_y(ys)))
    }
}

fn packed_range(r: (i64, i64), terms: u32, k: u32) -> (i128, i128) {
    (0..terms).fold((0, 0), |(lo, hi), i| (lo + (i128::from(r.0) << (i * k)), hi + (i128::from(r.1) << (i * k))))
}

/// The most lanes per multiply whose operands fit `operand_bits` x `operand_bits` signed, at most
/// `max_terms`; `None` when not even two do.
pub fn widest(x: (i64, i64), y: (i64, i64), operand_bits: u32, max_terms: u32) -> Option<Packing> {
    (2..=max_terms).map_while(|n| Packing::new(n, x, y).filter(|p| p.operand_bits() <= operand_bits)).last()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::Encoding;

    /// The operand value sets of the processing element's lane products: weight values of `int` codes
    /// (and codebook levels), the unsigned codes `c` of odd-level weights, and activation values of
    /// every encoding.
    fn weight_sides(bits: u32) -> Vec<(&'static str, Vec<i64>)> {
        let codes = 0..(1u64 << bits);
        vec![("int", codes.clone().map(|c| Encoding::Int.value(bits, c)).collect()), ("odd code", codes.map(|c| c as i64).collect())]
    }
    fn act_sides(bits: u32) -> Vec<(&'static str, Vec<i64>)> {
        [Encoding::Unsigned, Encoding::Int, Encoding::Odd].iter().map(|e| (e.name(), (0..(1u64 << bits)).map(|c| e.value(bits, c)).collect())).collect()
    }
    fn range(v: &[i64]) -> (i64, i64) {
        (*v.iter().min().unwrap(), *v.iter().max().unwrap())
    }

    /// Every operand combination (`terms` weights, `terms` activations) through the packing equals the
    /// plain dot product; returns the number of combinations checked.
    fn exhaustive(p: &Packing, xs: &[i64], ys: &[i64]) -> u64 {
        let n = p.terms as usize;
        let (nx, ny) = (xs.len(), ys.len());
        let total = (nx * ny).pow(n as u32);
        let (mut xv, mut yv) = (vec![0i64; n], vec![0i64; n]);
        for idx in 0..total {
            let mut r = idx;
            for i in 0..n {
                xv[i] = xs[r % nx];
                r /= nx;
                yv[i] = ys[r % ny];
                r /= ny;
            }
            let want: i64 = xv.iter().zip(&yv).map(|(a, b)| a * b).sum();
            let prod = p.pack_x(&xv) * p.pack_y(&yv);
            assert_eq!(p.field(prod), want, "{p:?}: x {xv:?} y {yv:?}");
            // the hardware multiplies modulo 2^product_bits
            let m = (1i128 << p.product_bits()) - 1;
            assert_eq!(p.field(prod & m), want, "{p:?}: modular product, x {xv:?} y {yv:?}");
            let (xlo, xhi) = p.x_range();
            let (ylo, yhi) = p.y_range();
            assert!((xlo..=xhi).contains(&p.pack_x(&xv)) && (ylo..=yhi).contains(&p.pack_y(&yv)));
        }
        total as u64
    }

    /// Invariant: for every weight side (int values, odd-level codes) and activation encoding of 1 to
    /// 8 bits and every number of lanes whose packing fits an 18 x 18 multiplier, the extraction equals
    /// the plain dot product for every combination of operands. Packings wider than 2^22 combinations do
    /// not exist within 18 bits (checked here too), so this covers every packing the generator can emit.
    #[test]
    fn every_packing_that_fits_is_exact_for_every_operand() {
        let mut checked = 0u64;
        let mut packings = 0;
        for wb in 1..=8 {
            for ab in 1..=8 {
                for (_, xs) in weight_sides(wb) {
                    for (_, ys) in act_sides(ab) {
                        for n in 2..=8 {
                            let Some(p) = Packing::new(n, range(&xs), range(&ys)).filter(|p| p.operand_bits() <= MAX_OPERAND_BITS) else {
                                break;
                            };
                            assert!((xs.len() * ys.len()).pow(n) <= 1 << 22, "{p:?}");
                            checked += exhaustive(&p, &xs, &ys);
                            packings += 1;
                        }
                    }
                }
            }
        }
        assert!(packings >= 290 && checked >= 28_000_000, "{packings} packings, {checked} combinations");
    }

    /// The goal points: W4A4 (int weights, unsigned activations) packs 2 lanes into 14 x 14 bits,
    /// inside an ECP5 MULT18X18D (and an iCE40 SB_MAC16); W2A2 packs 3 lanes into 15 x 15 bits, inside an
    /// SB_MAC16; 4 W2A2 lanes need 21-bit operands.
    #[test]
    fn goal_packings() {
        let w4a4 = Packing::new(2, (-8, 7), (0, 15)).unwrap();
        assert_eq!((w4a4.spacing, w4a4.x_bits(), w4a4.y_bits(), w4a4.product_bits()), (9, 14, 14, 18));
        assert_eq!(widest((-8, 7), (0, 15), MAX_OPERAND_BITS, 64), Some(w4a4));
        let w2a2 = Packing::new(3, (-2, 1), (0, 3)).unwrap();
        assert_eq!((w2a2.spacing, w2a2.x_bits(), w2a2.y_bits(), w2a2.product_bits()), (6, 15, 15, 18));
        assert_eq!(widest((-2, 1), (0, 3), COMMON_OPERAND_BITS, 64), Some(w2a2));
        assert_eq!(Packing::new(4, (-2, 1), (0, 3)).unwrap().operand_bits(), 21);
        assert_eq!(Packing::new(8, (-32768, 32767), (-128, 127)), None);
        assert_eq!(widest((-128, 127), (0, 255), MAX_OPERAND_BITS, 64), None);
        assert_eq!(widest((-8, 7), (0, 15), MAX_OPERAND_BITS, 1), None);
        // borrow-free: W4A4 as offset-binary weight codes, the same spacing and widths, no borrow
        let w4a4 = Packing::new(2, (0, 15), (0, 15)).unwrap();
        assert!(w4a4.borrow_free() && !Packing::new(2, (-8, 7), (0, 15)).unwrap().borrow_free());
        assert_eq!((w4a4.spacing, w4a4.x_bits(), w4a4.y_bits(), w4a4.product_bits()), (9, 14, 14, 18));
        let w2a2 = Packing::new(3, (0, 3), (0, 3)).unwrap();
        assert_eq!((w2a2.spacing, w2a2.operand_bits(), w2a2.product_bits()), (5, 13, 15));
        assert_eq!(Packing::new(4, (0, 3), (0, 3)).unwrap().operand_bits(), 21);
    }

    /// The borrow matters: without it the W4A4 packing is wrong exactly when the low field is negative
    /// (here `w_0 * y_1 = -1 * 1`), and the spacing is minimal (one bit less is wrong for some operand).
    #[test]
    fn borrow_and_spacing_are_needed() {
        let p = Packing::new(2, (-8, 7), (0, 15)).unwrap();
        let prod = p.pack_x(&[-1, 0]) * p.pack_y(&[0, 1]);
        assert_eq!(p.borrow(prod), 1);
        assert_eq!(p.field(prod), 0);
        let raw = (prod >> p.field_lsb()) & ((1 << p.spacing) - 1);
        assert_eq!(raw, (1 << p.spacing) - 1, "without the borrow the field reads -1");
        for (x, y, n) in [((-8, 7), (0, 15), 2), ((-2, 1), (0, 3), 3), ((-4, 3), (-4, 3), 2), ((0, 15), (-15, 15), 2), ((0, 15), (0, 15), 2), ((0, 3), (0, 3), 3)] {
            let p = Packing::new(n, x, y).unwrap();
            let narrow = Packing { spacing: p.spacing - 1, ..p };
            let xs: Vec<i64> = (x.0..=x.1).collect();
            let ys: Vec<i64> = (y.0..=y.1).collect();
            let wrong = std::panic::catch_unwind(|| exhaustive(&narrow, &xs, &ys));
            assert!(wrong.is_err(), "{p:?} is exact with a spacing of {}", narrow.spacing);
        }
    }
}
