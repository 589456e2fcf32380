//! `<prefix>_thresh`: the threshold output stage of one channel, for 1- and 2-bit output codes.

use super::builders::adder_tree;
use super::{HwParams, OutMode};
use crate::rtl::{Expr, Module, Stmt, Ty};

/// What the threshold unit depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreshParams {
    /// Module name.
    pub name: String,
    /// Accumulator width (a threshold has one bit more).
    pub acc_bits: u32,
    /// Output code width: `2^out_bits - 1` thresholds.
    pub out_bits: u32,
    /// Register the inputs first ([`HwParams::thresh_input_regs`]).
    pub input_regs: bool,
    /// Compare in two halves ([`HwParams::thresh_split`]).
    pub split: bool,
    /// Basis codes of 2 bases: walk the sign decision tree of the 3 thresholds (`T_1` the root,
    /// `T_2` after `s_1 = -1`, `T_3` after `s_1 = +1`) instead of counting.
    pub tree: bool,
}

impl ThreshParams {
    /// Number of thresholds: `2^out_bits - 1`.
    pub fn count(&self) -> u32 {
        (1 << self.out_bits) - 1
    }
}

impl HwParams {
    /// The threshold unit's parameters.
    pub fn thresh_params(&self) -> ThreshParams {
        ThreshParams { name: self.module("thresh"), acc_bits: self.acc_bits, out_bits: self.out_bits, input_regs: self.thresh_input_regs(), split: self.thresh_split(), tree: self.out_mode == OutMode::Bases && self.out_bits == 2 }
    }
}

/// Threshold output stage of one channel: `code = #{k : acc >= T_k}` (P1: compares, P2: count), or
/// for basis codes of 2 bases the walk down the sign decision tree of `T_1` (root), `T_2`, `T_3`.
/// The thresholds are computed by the reference model from bias, alpha, mult and shift, so the codes
/// equal the clip/multiply/shift pipeline's exactly (the output is monotone in `acc`).
pub fn thresh(p: &ThreshParams) -> Module {
    let (aw, ob) = (p.acc_bits, p.out_bits);
    let n = p.count();
    let tw = aw + 1;
    let mut m = Module::new(&p.name);
    if p.tree {
        m.doc("Basis code by a sign decision tree: bit 0 = acc >= T_1 (basis 1); bit 1 = acc >= T_3 if bit 0 else acc >= T_2 (basis 2).");
    } else {
        m.doc(&format!("Threshold requantization: code = number of the {n} thresholds that acc reaches."));
    }
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let acc = m.input("acc_i", Ty::s(aw), "accumulator value");
    let t = m.input("t_i", Ty::u(n * tw), "thresholds T_1..T_n, T_k at [(k-1)*TW +: TW]");
    let code_o = m.output_reg("code_o", Ty::u(ob), "output code");
    let b = &mut m.body;
    let p1 = p.input_regs;
    let (acc, t) = if p1 {
        let acc_q = b.reg("acc_q", Ty::s(aw), "");
        let t_q = b.reg("t_q", Ty::u(n * tw), "");
        b.always(&clk, vec![Stmt::set(&acc_q, &acc), Stmt::set(&t_q, &t)]);
        (acc_q, t_q)
    } else {
        (acc, t)
    };
    // stage names: P1 is the input register when there is one
    let stage = |k: u32| format!("P{}", k - u32::from(!p1));
    let inputs = if p1 { "P1: register the accumulator and thresholds; " } else { "the inputs are registers (the shared unit's select): " };
    let last = if p.tree { "walk the sign tree" } else { "count" };
    let acc_x = b.net("acc_x", &acc.resize(tw), "");
    let ge_q = b.reg("ge_q", Ty::u(n), &format!("acc >= T_k ({})", stage(if p.split { 3 } else { 2 })));
    if p.split {
        // a signed comparison is the unsigned comparison of offset-binary values (sign bit inverted);
        // compared in two halves: ge = hi > t_hi || (hi == t_hi && lo >= t_lo)
        b.comment(&format!("{inputs}{}: compare the halves; {}: combine; {}: {last}", stage(2), stage(3), stage(4)));
        let lw = tw / 2;
        let flip = |e: &Expr| Expr::concat(&[e.bit(tw - 1).not(), e.slice(tw - 2, 0)]);
        let a_ob = b.net("acc_ob", &flip(&acc_x), "offset binary");
        let (a_hi, a_lo) = (a_ob.slice(tw - 1, lw), a_ob.slice(lw - 1, 0));
        let gt_q = b.reg("hi_gt_q", Ty::u(n), &format!("high half of acc > high half of T_k ({})", stage(2)));
        let eq_q = b.reg("hi_eq_q", Ty::u(n), &format!("high halves equal ({})", stage(2)));
        let lo_q = b.reg("lo_ge_q", Ty::u(n), &format!("low half of acc >= low half of T_k ({})", stage(2)));
        let (mut gts, mut eqs, mut los) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..n {
            let raw = b.net(&format!("t{}", k + 1), &t.slice(k * tw + tw - 1, k * tw), "");
            let tk = b.net(&format!("t{}_ob", k + 1), &flip(&raw), "offset binary");
            let (t_hi, t_lo) = (tk.slice(tw - 1, lw), tk.slice(lw - 1, 0));
            // comparisons written as `<` only: Yosys builds `<` (and `>=`) from a subtraction's carry,
            // but `a > b` as `!(a < b) && !(a == b)`, which puts an equality reduction after the carry
            // chain (the critical path on iCE40)
            gts.push(t_hi.lt(&a_hi));
            eqs.push(a_hi.eq(&t_hi));
            los.push(a_lo.lt(&t_lo).lnot());
        }
        for v in [&mut gts, &mut eqs, &mut los] {
            v.reverse();
        }
        b.always(&clk, vec![Stmt::set(&gt_q, &Expr::concat(&gts)), Stmt::set(&eq_q, &Expr::concat(&eqs)), Stmt::set(&lo_q, &Expr::concat(&los))]);
        b.always(&clk, vec![Stmt::set(&ge_q, &gt_q.or(&eq_q.and(&lo_q)))]);
    } else {
        b.comment(&format!("{inputs}{}: compare; {}: {last}", stage(2), stage(3)));
        let mut cmps = Vec::new();
        for k in 0..n {
            let tk = b.net(&format!("t{}", k + 1), &t.slice(k * tw + tw - 1, k * tw).as_signed(), "");
            cmps.push(acc_x.lt(&tk).lnot());
        }
        cmps.reverse();
        b.always(&clk, vec![Stmt::set(&ge_q, &Expr::concat(&cmps))]);
    }
    let code = if p.tree {
        // the residual test of basis 2 depends on the sign of basis 1: its threshold is T_2 after -1, T_3 after +1
        Expr::concat(&[Expr::mux(&ge_q.bit(0), &ge_q.bit(2), &ge_q.bit(1)), ge_q.bit(0)])
    } else {
        let terms: Vec<(Expr, (i64, i64))> = (0..n).map(|k| (ge_q.bit(k), (0, 1))).collect();
        adder_tree(b, "cnt", terms).0.resize(ob)
    };
    let code_q = code_o;
    b.always(&clk, vec![Stmt::set(&code_q, &code)]);
    m
}
