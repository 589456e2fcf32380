//! `<prefix>_pe`: one processing element, of the kind its operands need: lane products
//! ([`products`]: multipliers, several lanes packed into one multiply, lane pairs in a paired 8 x 8
//! product unit, an AND per lane with odd weights, XNOR with +-1 operands), bit-serial
//! activations ([`serial`]), or per-basis-pair XNOR counts ([`bases`]). The kinds share the
//! accumulator and hold register ([`accumulate`]) and the PE's own input copies (here).

mod accumulate;
mod bases;
mod bitplane;
mod products;
mod serial;

pub use accumulate::AccParams;
pub use bitplane::BitPlanes;

use super::{Bases, HwParams, Mul8x2Params};
use crate::rtl::{Body, Expr, Module, Stmt, Ty};
use qmac_arith::width::{clog2, unsigned_bits};
use qmac_arith::code::{Encoding, MacKind};
use qmac_arith::pack::Packing;

/// What a processing element depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeParams {
    /// Module name.
    pub name: String,
    /// Products per cycle.
    pub lanes: u32,
    /// Activation code width.
    pub act_bits: u32,
    /// Activation encoding.
    pub act_enc: Encoding,
    /// Width of the weight values (the level width with a codebook).
    pub weight_bits: u32,
    /// Weight encoding as the PE sees it.
    pub weight_enc: Encoding,
    /// The lane arithmetic: which kind of PE.
    pub arith: PeArith,
    /// The adder tree's pipelining.
    pub tree: Tree,
    /// The PE registers its own copy of its inputs ([`HwParams::pe_input_regs`]).
    pub own_inputs: bool,
    /// The accumulator and its hold register.
    pub acc: AccParams,
    /// Lane pairs computed by a paired 8 x 8 product unit, and that unit ([`HwParams::dsp_pairs`]).
    pub pairs: Option<(u32, Mul8x2Params)>,
    /// The lane products as counts of their partial products ([`HwParams::bit_planes`]).
    pub bit_planes: Option<BitPlanes>,
}

/// The kind of a processing element, with what only that kind needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeArith {
    /// Lane products ([`MacKind`]), reduced to a `dot_bits`-bit dot product per step.
    Products {
        /// The per-lane operation.
        kind: MacKind,
        /// Width of one step's dot product ([`HwParams::dot_bits`]).
        dot_bits: u32,
        /// Groups of lanes packed into one multiply ([`HwParams::packing`]).
        packing: Option<Packing>,
    },
    /// Bit-serial activations: each lane selects a shifted weight value by its activation bit.
    Serial {
        /// Range of the shifted weight values ([`HwParams::serial_weight_range`]).
        weight_range: (i64, i64),
    },
    /// Multi-basis binary operands: an XNOR/popcount and a count per basis pair.
    Bases {
        /// The bases.
        bases: Bases,
        /// Width of one step's +-1 dot product of a pair.
        dot_bits: u32,
    },
}

/// The pipelining of a PE's adder tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tree {
    /// Adder levels between registers ([`HwParams::tree_levels`]).
    pub levels_per_stage: u32,
    /// Adder levels ([`HwParams::tree_depth`]).
    pub depth: u32,
    /// Register stages ([`HwParams::tree_stages`]).
    pub stages: u32,
}

impl HwParams {
    /// The processing element's parameters.
    pub fn pe_params(&self) -> PeParams {
        let arith = match (self.bases, self.serial) {
            (Some(bases), _) => PeArith::Bases { bases, dot_bits: self.dot_bits() },
            (None, true) => PeArith::Serial { weight_range: self.serial_weight_range() },
            (None, false) => PeArith::Products { kind: self.kind(), dot_bits: self.dot_bits(), packing: self.packing },
        };
        PeParams {
            name: self.module("pe"),
            lanes: self.lanes,
            act_bits: self.act_bits,
            act_enc: self.act_enc,
            weight_bits: self.weight_bits,
            weight_enc: self.weight_enc,
            arith,
            tree: Tree { levels_per_stage: self.tree_levels, depth: self.tree_depth(), stages: self.tree_stages() },
            own_inputs: self.pe_input_regs,
            acc: self.acc_params(),
            pairs: self.mul8x2_params().map(|u| (self.dsp_pairs, u)),
            bit_planes: self.bit_planes(),
        }
    }
}

/// One processing element: `lanes` products, an adder tree, an accumulator and a hold register.
pub fn pe(p: &PeParams) -> Module {
    match p.arith {
        PeArith::Products { kind, dot_bits, packing } => products::pe_products(p, kind, dot_bits, packing),
        PeArith::Serial { weight_range } => serial::pe_serial(p, weight_range),
        PeArith::Bases { bases, dot_bits } => bases::pe_bases(p, bases, dot_bits),
    }
}

/// The stage note of a PE with its own input registers.
fn pe_inputs_doc(m: &mut Module, p: &PeParams) {
    if p.own_inputs {
        m.doc("Every stage is one cycle later than its number: the PE first registers its own copy of its inputs (S1b).");
    }
}

/// The PE's activation and weight inputs as its lane logic sees them: the ports themselves, or with
/// [`HwParams::pe_input_regs`] this PE's own registered copy (S1b). The copies are `keep`: Yosys
/// would otherwise merge the identical registers of a row's or a column's PEs back into one.
fn pe_inputs(b: &mut Body, p: &PeParams, clk: &Expr, a: &Expr, w: &Expr) -> (Expr, Expr) {
    if !p.own_inputs {
        return (a.clone(), w.clone());
    }
    b.comment("S1b: this PE's own copy of its broadcast inputs");
    let a_r = b.reg("a_r", a.ty(), "activations, registered beside this PE");
    let w_r = b.reg("w_r", w.ty(), "weights, registered beside this PE");
    b.always_kept(clk, vec![Stmt::set(&a_r, a), Stmt::set(&w_r, w)]);
    (a_r, w_r)
}

/// How a popcount of `lanes` agreement bits starts ([`xnor_popcount`]): `pairs` lane pairs, each
/// counted by the LUTs that also compute its two XNORs (a 2-bit term), and `singles` single lanes,
/// of which `single_terms` are terms of the tree and the others carry-ins of its adders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct XnorLeaves {
    pub(crate) pairs: u32,
    pub(crate) singles: u32,
    pub(crate) single_terms: u32,
}

impl XnorLeaves {
    /// About a third of the lanes are carry-ins: a tree of `n` terms has `n - 1` adders, and an adder
    /// takes one carry-in besides its two terms.
    pub(crate) fn new(lanes: u32) -> XnorLeaves {
        let pairs = (lanes / 2).min((lanes + 3) / 3);
        let singles = lanes - 2 * pairs;
        let single_terms = (singles + 1).saturating_sub(pairs).div_ceil(2);
        XnorLeaves { pairs, singles, single_terms }
    }
    /// Terms of the adder tree.
    pub(crate) fn terms(&self) -> u32 {
        self.pairs + self.single_terms
    }
}

/// The most positions of one carry chain of a popcount level (the accumulator's chain is about as
/// long). Longer chains made nextpnr's iCE40 placer fail to legalize a design at 88 % of the UP5K,
/// and nextpnr times a chain from end to end, although a boundary's carry-out does not depend on its
/// carry-in. A new chain costs a cell: the lower adder's carry-out and the upper one's carry-in no
/// longer share one.
const MAX_CHAIN: u32 = 12;

/// The adders of one popcount chain, least significant position first: both operands, and per adder
/// its index in the level, first position, sum width and largest sum.
#[derive(Default)]
struct Chain {
    xs: Vec<Expr>,
    ys: Vec<Expr>,
    segs: Vec<(usize, u32, u32, u64)>,
    pos: u32,
    carry_out: bool,
    cin: Option<Expr>,
}

impl Chain {
    /// The chain's addition as a net, and each adder's sum as a named slice of it.
    fn emit(self, b: &mut Body, prefix: &str, level: u32, k: u32) -> Vec<(Expr, u64)> {
        let tw = self.pos + u32::from(self.carry_out);
        let side = |v: &Vec<Expr>| Expr::concat(&v.iter().rev().cloned().collect::<Vec<_>>()).resize(tw);
        let mut sum = side(&self.xs).add(&side(&self.ys));
        if let Some(z) = &self.cin {
            sum = sum.add(&z.resize(tw));
        }
        let n = self.segs.len();
        let chain = b.net(&format!("{prefix}sum_c{level}_{k}"), &sum, &format!("{n} adder{} on one carry chain", if n > 1 { "s" } else { "" }));
        self.segs.iter().map(|&(i, p, ow, max)| (b.net(&format!("{prefix}sum_s{level}_{i}"), &chain.slice(p + ow - 1, p), ""), max)).collect()
    }
}

/// The popcount of `same` (one agreement bit per lane): lane pairs counted into registered 2-bit
/// terms and single lanes registered (S2), then an adder tree whose levels are carry chains. Each
/// chain is one addition of adjacent adders of a level side by side (up to [`MAX_CHAIN`] positions),
/// each adder's terms at their own bit positions. Between two adders whose lower one can carry out,
/// one position holds a single lane's bit in both operands: that position's sum bit is the lower
/// adder's carry-out (`z + z + c = c + 2z`), and its carry-out is `z`, the upper adder's carry-in.
/// A single lane thus costs no cell beyond its XNOR, where an adder of its own would cost two more
/// (its carry-out and its carry-in). The first adder of a chain takes a single lane as the addition's
/// carry-in when the boundaries cannot take them all. Registers after every `per_stage` levels (not
/// after the last: the caller registers the root), the single lanes not yet added registered with
/// the terms. Returns the count (unsigned, just wide enough for `lanes`).
fn xnor_popcount(b: &mut Body, prefix: &str, same: &Expr, clk: &Expr, per_stage: u32, depth: u32) -> Expr {
    let regs: Vec<u32> = (1..depth).filter(|level| level % per_stage == 0).collect();
    popcount_registered_after(b, prefix, same, clk, &regs, depth)
}

/// [`xnor_popcount`] with registers after the given levels (each below `depth`) instead of after every
/// few.
fn popcount_registered_after(b: &mut Body, prefix: &str, same: &Expr, clk: &Expr, regs: &[u32], depth: u32) -> Expr {
    let l = same.width();
    let mut s2 = Vec::new();
    let lv = XnorLeaves::new(l);
    // (signal, largest value); every signal is unsigned and just wide enough for its largest value
    let mut terms: Vec<(Expr, u64)> = Vec::new();
    let mut singles: Vec<Expr> = Vec::new();
    for i in 0..lv.pairs {
        let (x0, x1) = (same.bit(2 * i), same.bit(2 * i + 1));
        let q = b.reg(&format!("{prefix}pair{i}_q"), Ty::u(2), "");
        s2.push(Stmt::set(&q, &Expr::concat(&[x0.and(&x1), x0.xor(&x1)])));
        terms.push((q, 2));
    }
    for j in 0..lv.singles {
        let q = b.reg(&format!("{prefix}one{j}_q"), Ty::bit(), "");
        s2.push(Stmt::set(&q, &same.bit(2 * lv.pairs + j)));
        if j < lv.single_terms {
            terms.push((q, 1));
        } else {
            singles.push(q);
        }
    }
    b.always(clk, s2);
    assert_eq!(clog2(terms.len() as u64), depth, "tree depth as derived");
    assert!(regs.iter().all(|&r| (1..depth).contains(&r)), "registers after levels {regs:?} of {depth}");
    let mut level = 0;
    while terms.len() > 1 {
        if regs.contains(&level) {
            let mut st = Vec::new();
            for (i, (e, _)) in terms.iter_mut().enumerate() {
                let q = b.reg(&format!("{prefix}sum_q{level}_{i}"), e.ty(), "");
                st.push(Stmt::set(&q, e));
                *e = q;
            }
            for (j, e) in singles.iter_mut().enumerate() {
                let q = b.reg(&format!("{prefix}one_q{level}_{j}"), Ty::bit(), "");
                st.push(Stmt::set(&q, e));
                *e = q;
            }
            b.always(clk, st);
        }
        level += 1;
        let adders = terms.len() / 2;
        let mut next: Vec<(Expr, u64)> = Vec::new();
        let mut chain = Chain::default();
        let mut chains = 0;
        for i in 0..adders {
            let ((x, rx), (y, ry)) = (&terms[2 * i], &terms[2 * i + 1]);
            let kw = x.width().max(y.width());
            // a chain ends before an adder that could take it past MAX_CHAIN positions
            if !chain.segs.is_empty() && chain.pos + 1 + kw + 1 > MAX_CHAIN {
                next.extend(chain.emit(b, prefix, level, chains));
                chains += 1;
                chain = Chain::default();
            }
            let mut max = rx + ry;
            if chain.segs.is_empty() {
                // a chain's own carry-in costs a cell: only for singles the boundaries cannot take
                if singles.len() > adders - 1 - i || terms.len() == 2 {
                    chain.cin = singles.pop();
                    max += u64::from(chain.cin.is_some());
                }
            } else if chain.carry_out {
                let z = singles.pop();
                max += u64::from(z.is_some());
                let z = z.unwrap_or_else(|| Expr::lit(0, Ty::bit()));
                chain.xs.push(z.clone());
                chain.ys.push(z);
                chain.pos += 1;
            }
            let ow = unsigned_bits(u128::from(max));
            chain.xs.push(x.resize(kw));
            chain.ys.push(y.resize(kw));
            chain.segs.push((i, chain.pos, ow, max));
            chain.pos += kw;
            chain.carry_out = ow > kw;
        }
        next.extend(chain.emit(b, prefix, level, chains));
        if terms.len() % 2 == 1 {
            next.push(terms.pop().expect("an odd term"));
        }
        terms = next;
    }
    let (root, max) = terms.pop().expect("a popcount of no lanes");
    // the leaves are sized so that the adders take every single lane (a unit test checks every lane count)
    assert!(singles.is_empty() && max == u64::from(l), "{l} lanes: {} single lanes left over, count up to {max}", singles.len());
    root
}

/// The +-1 dot product of `lanes` sign pairs from the count of agreeing pairs: `2 * count - lanes`, as a
/// `dw`-bit signed net.
fn xnor_dot(b: &mut Body, name: &str, count: &Expr, lanes: u32, dw: u32) -> Expr {
    let pop = count.resize(dw).as_signed();
    b.net(name, &pop.shl(1).sub(&Expr::lit(i128::from(lanes), Ty::s(dw))), "2 * popcount - lanes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For every lane count the popcount's adders take every single lane (the builder asserts it), and
    /// the count is just wide enough; the tree has the derived depth.
    #[test]
    fn xnor_popcount_takes_every_lane() {
        for l in 1..=64u32 {
            let lv = XnorLeaves::new(l);
            assert_eq!(2 * lv.pairs + lv.singles, l);
            assert!(lv.singles - lv.single_terms < lv.terms(), "{l} lanes: more carry-ins than adders");
            for per_stage in 1..=4 {
                let mut m = Module::new("t");
                let clk = m.input("clk_i", Ty::bit(), "");
                let same = m.input("same_i", Ty::u(l), "");
                let root = xnor_popcount(&mut m.body, "", &same, &clk, per_stage, clog2(u64::from(lv.terms())));
                assert_eq!(root.width(), unsigned_bits(u128::from(l)), "{l} lanes");
            }
        }
    }
}
