//! `<prefix>_combine`: with multi-basis binary operands, the sum of a channel's per-pair counts
//! scaled by its pair scales, at the head of the output stage.

use super::builders::adder_tree;
use super::{Bases, HwParams};
use crate::rtl::{Module, Stmt, Ty};
use qmac_arith::width::signed_bits;

/// What the basis combination depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CombineParams {
    /// Module name.
    pub name: String,
    /// The bases: pairs, count and scale widths.
    pub bases: Bases,
    /// Width of the combined value (the output stage's accumulator).
    pub acc_bits: u32,
}

impl HwParams {
    /// The basis combination's parameters; `None` without bases.
    pub fn combine_params(&self) -> Option<CombineParams> {
        self.bases.map(|bases| CombineParams { name: self.module("combine"), bases, acc_bits: self.acc_bits })
    }
}

/// Basis combination of one channel: `acc = sum_p m_p * D_p` over the basis pairs, with the pair
/// counts `D_p` from the hold register and the channel's signed pair scales `m_p` (drain stages C1:
/// products, C2: sum). Exact: the sum's range is what sizes `acc_bits`.
pub fn combine(p: &CombineParams) -> Module {
    let bs = p.bases;
    let (np, cw, sb, aw) = (bs.pairs(), bs.count_bits(), bs.scale_bits, p.acc_bits);
    let mut m = Module::new(&p.name);
    m.doc(&format!("Basis combination: acc = sum over the {np} basis pairs of scale_p * count_p (C1: products, C2: sum)."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let d = m.input("d_i", Ty::u(np * cw), "pair counts, pair p at [p*CW +: CW]");
    let sc = m.input("scale_i", Ty::u(np * sb), "pair scales, pair p at [p*SB +: SB]");
    let acc_o = m.output_reg("acc_o", Ty::s(aw), "the combined accumulator value (C2)");
    let b = &mut m.body;
    // a count lies in -N..=N, a scale in -2^(SB-1)..2^(SB-1)-1
    let n = i64::from(bs.max_count);
    let mmax = 1i64 << (sb - 1);
    let range = (-mmax * n, mmax * n);
    let tw = signed_bits(range.0.into(), range.1.into()).max(cw).max(sb);
    let mut st = Vec::new();
    let mut terms = Vec::new();
    for pi in 0..np {
        let dv = b.net(&format!("d{pi}"), &d.slice(pi * cw + cw - 1, pi * cw).as_signed(), "");
        let mv = b.net(&format!("m{pi}"), &sc.slice(pi * sb + sb - 1, pi * sb).as_signed(), "");
        let q = b.reg(&format!("prod{pi}_q"), Ty::s(tw), "scale * count (C1)");
        st.push(Stmt::set(&q, &dv.resize(tw).mul(&mv.resize(tw))));
        terms.push((q, range));
    }
    b.always(&clk, st);
    let (root, _) = adder_tree(b, "sum", terms);
    assert!(root.width() <= aw, "acc_bits holds the combined range");
    b.always(&clk, vec![Stmt::set(&acc_o, &root.resize(aw))]);
    m
}
