//! Bit-plane lane products: a low-bit PE's dot product as a weighted count of one-bit partial
//! products, each class of equal weight counted like the XNOR PE's agreement bits (`xnor_popcount`).
//!
//! A lane's operands are sums of their bits with signed power-of-two weights (an unsigned code:
//! `2^i`; two's complement: the top bit `-2^(n-1)`), so a product `w * a` is the sum over bit pairs of
//! `w_i a_j` (an AND) weighted `+-2^(i+j)`. A negative partial product is counted as its complement,
//! `-p = (1 - p) - 1` (a NAND), with `-1` per lane going into one constant. The dot product of a
//! step is `sum_s 2^s P_s - K`, `P_s` the count of the partial products of weight `2^s` over all lanes.

use super::{popcount_registered_after, XnorLeaves};
use crate::rtl::{Body, Expr, Stmt, Ty};
use qmac_arith::code::{Encoding, MacKind};
use qmac_arith::width::{clog2, unsigned_bits};

/// The products the bit-plane form computes: at most this many partial products per lane (W2A2:
/// 4). Larger ones (W3A3, W2A4, W4A4) measured smaller than lane multipliers too, with deeper
/// popcounts (docs/synthesis.md, "Bit-plane PE"), but are not taken yet.
const MAX_PARTIAL_PRODUCTS: u32 = 4;

/// One partial product: weight bit `w`, activation bit `a`, counted complemented (`neg`: its weight is
/// negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partial {
    pub w: u32,
    pub a: u32,
    pub neg: bool,
}

/// The classes of one lane's partial products by weight, and the constant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitPlanes {
    /// `classes[s]`: the partial products of weight `2^s` (complemented ones included).
    pub classes: Vec<Vec<Partial>>,
    /// Per lane, the sum of the negative partial products' magnitudes: the dot product is
    /// `sum_s 2^s P_s - lanes * offset`.
    pub offset: i64,
}

/// The weights of an operand's bits, least significant first: `None` for encodings with a constant
/// term (odd levels), which this form does not take.
fn bit_weights(enc: Encoding, bits: u32) -> Option<Vec<i64>> {
    let top = match enc {
        Encoding::Unsigned => 1,
        Encoding::Int => -1,
        Encoding::Odd => return None,
    };
    Some((0..bits).map(|i| if i + 1 == bits { top << i } else { 1 << i }).collect())
}

impl BitPlanes {
    /// The bit-plane form of a lane product of this kind, if it applies: lane products that multiply
    /// (no XNOR), with no constant term in either operand, and at most [`MAX_PARTIAL_PRODUCTS`]
    /// partial products.
    pub fn of(kind: MacKind, weight: (Encoding, u32), act: (Encoding, u32)) -> Option<BitPlanes> {
        let wenc = match kind {
            MacKind::Direct => weight.0,
            // the PE multiplies the unsigned code
            MacKind::OddWeights => Encoding::Unsigned,
            // (packed lanes only, which are not in bit planes)
            MacKind::Xnor | MacKind::OffsetWeights => return None,
        };
        if weight.1 * act.1 > MAX_PARTIAL_PRODUCTS {
            return None;
        }
        let (ws, as_) = (bit_weights(wenc, weight.1)?, bit_weights(act.0, act.1)?);
        let mut classes = vec![Vec::new(); (weight.1 + act.1 - 1) as usize];
        let mut offset = 0;
        for (i, wv) in ws.iter().enumerate() {
            for (j, av) in as_.iter().enumerate() {
                let v = wv * av;
                classes[i + j].push(Partial { w: i as u32, a: j as u32, neg: v < 0 });
                if v < 0 {
                    offset -= v;
                }
            }
        }
        Some(BitPlanes { classes, offset })
    }

    /// The levels of each class's popcount over `lanes` lanes.
    fn class_depths(&self, lanes: u32) -> Vec<u32> {
        self.classes.iter().map(|c| clog2(u64::from(XnorLeaves::new(lanes * c.len() as u32).terms()))).collect()
    }

    /// The Horner adders after class `s`'s count: the heaviest two classes go into the first, class
    /// `s` below them into the `(n - 1 - s)`-th, and every adder is followed by the rest.
    fn adders_after(&self, s: usize) -> u32 {
        let n = self.classes.len();
        if s + 1 == n {
            (n - 1) as u32
        } else {
            s as u32 + 1
        }
    }

    /// Adder levels from the registered leaves to the dot product: the deepest class's popcount and
    /// the Horner adders after it ([`HwParams::tree_depth`](crate::units::HwParams::tree_depth)).
    pub fn depth(&self, lanes: u32) -> u32 {
        self.class_depths(lanes).iter().enumerate().map(|(s, d)| d + self.adders_after(s)).max().expect("a class")
    }

    /// The value of one lane's classes with these codes: `sum_s 2^s (count of class s) - offset`.
    #[cfg(test)]
    fn lane_value(&self, wc: u64, ac: u64) -> i64 {
        let mut v = -self.offset;
        for (s, class) in self.classes.iter().enumerate() {
            for p in class {
                let bit = (wc >> p.w) & (ac >> p.a) & 1;
                v += (if p.neg { 1 - bit } else { bit } as i64) << s;
            }
        }
        v
    }
}

/// The dot product of one step from the lanes' codes (`a`, `w`: lane `l` at `[l*AB +: AB]`,
/// `[l*WB +: WB]`): each class's partial products counted (registered leaves, S2, then carry-chain
/// levels), the Horner adders of the counts (`depth` levels in all, a register after every
/// `per_stage`), and `sum_s 2^s P_s - lanes * offset`
/// as a `dw`-bit signed net, which the caller registers.
pub(super) fn bitplane_dot(b: &mut Body, planes: &BitPlanes, clk: &Expr, a: &Expr, w: &Expr, (ab, wb): (u32, u32), (per_stage, depth): (u32, u32), dw: u32) -> Expr {
    let l = a.width() / ab;
    // every class's levels end where the Horner adders after its count begin, so that the overall
    // level g is the class's level g - lead; registers after every `per_stage` overall levels, at the
    // class's root for those after its last level
    let total = planes.depth(l);
    assert_eq!(total, depth, "tree depth as derived");
    let depths = planes.class_depths(l);
    let overall: Vec<u32> = (1..total).filter(|g| g % per_stage == 0).collect();
    let mut counts = Vec::new();
    for (s, class) in planes.classes.iter().enumerate() {
        let mut bits = Vec::new();
        for lane in 0..l {
            for p in class {
                let x = w.bit(lane * wb + p.w).and(&a.bit(lane * ab + p.a));
                bits.push(if p.neg { x.not() } else { x });
            }
        }
        // lane 0's partial products lowest
        bits.reverse();
        let pp = b.net(&format!("pp{s}"), &Expr::concat(&bits), &format!("the partial products of weight 2^{s}{}", if class.iter().any(|p| p.neg) { " (the negative ones complemented)" } else { "" }));
        let lead = total - depths[s] - planes.adders_after(s);
        // (a register before the class's first level goes after it)
        let mut regs: Vec<u32> = overall.iter().map(|g| g.saturating_sub(lead).max(1)).filter(|&lv| lv < depths[s]).collect();
        regs.dedup();
        let mut count = popcount_registered_after(b, &format!("p{s}_"), &pp, clk, &regs, depths[s]);
        for k in regs.len()..overall.len() {
            let q = b.reg(&format!("p{s}_count_q{k}"), count.ty(), "the count, registered as often as the other classes'");
            b.always(clk, vec![Stmt::set(&q, &count)]);
            count = q;
        }
        counts.push((count, u64::from(pp.width())));
    }
    // Horner's scheme from the heaviest class down: h <- 2 h + P_s, each an adder of just the sum's
    // width whose lowest bit is P_s's (the shifted term has a zero there), so no chain carries a
    // constant-zero position
    let (mut h, mut max) = counts.pop().expect("a class");
    while let Some((c, m)) = counts.pop() {
        max = 2 * max + m;
        let hw = unsigned_bits(u128::from(max));
        let s = counts.len();
        h = b.net(&format!("h{s}"), &Expr::concat(&[h, Expr::lit(0, Ty::bit())]).resize(hw).add(&c.resize(hw)), &format!("sum_(t>={s}) 2^(t-{s}) * count_t"));
    }
    // modulo 2^dw, which holds the true dot product
    let k = i128::from(l) * i128::from(planes.offset);
    let sum = h.resize(dw);
    let dot = if k == 0 { sum } else { sum.sub(&Expr::lit(k % (1i128 << dw), Ty::u(dw))) };
    b.net("dot_s", &dot.as_signed(), &format!("sum_s 2^s * count_s - {k}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every lane product of every applicable kind and encoding is its classes' value, for every pair of
    /// codes (the expected product from the encodings' values, not from the classes).
    #[test]
    fn classes_and_constant_give_every_product() {
        let encs = [Encoding::Unsigned, Encoding::Int, Encoding::Odd];
        let mut applied = 0;
        for kind in [MacKind::Direct, MacKind::OddWeights] {
            for we in encs {
                for ae in encs {
                    for wb in 1..=4u32 {
                        for ab in 1..=4u32 {
                            let Some(bp) = BitPlanes::of(kind, (we, wb), (ae, ab)) else {
                                assert!(wb * ab > MAX_PARTIAL_PRODUCTS || ae == Encoding::Odd || (kind == MacKind::Direct && we == Encoding::Odd), "{kind:?} {we:?}{wb} {ae:?}{ab}");
                                continue;
                            };
                            applied += 1;
                            assert_eq!(bp.classes.iter().map(Vec::len).sum::<usize>() as u32, wb * ab);
                            for wc in 0..1u64 << wb {
                                for ac in 0..1u64 << ab {
                                    let wv = if kind == MacKind::OddWeights { wc as i64 } else { we.value(wb, wc) };
                                    assert_eq!(bp.lane_value(wc, ac), wv * ae.value(ab, ac), "{kind:?} {we:?}{wb} {ae:?}{ab}: codes {wc} {ac}");
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(applied > 10);
        // the builder's own checks (register levels inside each class, the derived depth) for every
        // lane count, pipelining and kind, and the dot product just as wide as asked
        for (kind, we, wb, ae, ab) in [(MacKind::Direct, Encoding::Int, 2, Encoding::Unsigned, 2), (MacKind::Direct, Encoding::Int, 2, Encoding::Int, 2), (MacKind::OddWeights, Encoding::Odd, 1, Encoding::Unsigned, 4)] {
            let bp = BitPlanes::of(kind, (we, wb), (ae, ab)).unwrap();
            for l in 1..=40u32 {
                for per_stage in 1..=3 {
                    let mut m = crate::rtl::Module::new("t");
                    let clk = m.input("clk_i", Ty::bit(), "");
                    let a = m.input("a_i", Ty::u(l * ab), "");
                    let w = m.input("w_i", Ty::u(l * wb), "");
                    let dot = bitplane_dot(&mut m.body, &bp, &clk, &a, &w, (ab, wb), (per_stage, bp.depth(l)), 12);
                    assert_eq!(dot.ty(), Ty::s(12));
                }
            }
        }
        // W2A2, two's complement weights, unsigned activations: -4 w1a1 - 2 w1a0 + 2 w0a1 + w0a0
        let bp = BitPlanes::of(MacKind::Direct, (Encoding::Int, 2), (Encoding::Unsigned, 2)).unwrap();
        assert_eq!(bp.offset, 6);
        assert_eq!(bp.classes.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2, 1]);
    }
}
