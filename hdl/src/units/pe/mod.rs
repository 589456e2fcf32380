//! `<prefix>_pe`: one processing element, of the kind its operands need: lane products
//! ([`products`]: multipliers, several lanes packed into one multiply, lane pairs in a paired 8 x 8
//! product unit, an AND per lane with odd weights, XNOR with +-1 operands), bit-serial
//! activations ([`serial`]), or per-basis-pair XNOR counts ([`bases`]). The kinds share the
//! accumulator and hold register ([`accumulate`]) and the PE's own input copies (here).

mod accumulate;
mod bases;
mod products;
mod serial;

pub use accumulate::AccParams;

use super::{Bases, HwParams, Mul8x2Params};
use crate::rtl::{Body, Expr, Module, Stmt, Ty};
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

/// Count the agreeing signs of `same` (one bit per lane) two lanes at a time into registered 2-bit
/// counts (S2), the first level of a popcount; returns the counts as adder-tree terms.
fn xnor_pair_counts(b: &mut Body, prefix: &str, same: &Expr, s2: &mut Vec<Stmt>) -> Vec<(Expr, (i64, i64))> {
    let l = same.width();
    let mut terms = Vec::new();
    for i in 0..l / 2 {
        let (x0, x1) = (same.bit(2 * i), same.bit(2 * i + 1));
        let q = b.reg(&format!("{prefix}pair{i}_q"), Ty::u(2), "");
        s2.push(Stmt::set(&q, &Expr::concat(&[x0.and(&x1), x0.xor(&x1)])));
        terms.push((q, (0, 2)));
    }
    if l % 2 == 1 {
        let q = b.reg(&format!("{prefix}odd_q"), Ty::bit(), "");
        s2.push(Stmt::set(&q, &same.bit(l - 1)));
        terms.push((q, (0, 1)));
    }
    terms
}

/// The +-1 dot product of `lanes` sign pairs from the count of agreeing pairs: `2 * count - lanes`, as a
/// `dw`-bit signed net.
fn xnor_dot(b: &mut Body, name: &str, count: &Expr, lanes: u32, dw: u32) -> Expr {
    let pop = count.resize(dw).as_signed();
    b.net(name, &pop.shl(1).sub(&Expr::lit(i128::from(lanes), Ty::s(dw))), "2 * popcount - lanes")
}
