//! The multi-basis binary PE: an XNOR/popcount and a count per basis pair.

use super::{pe_inputs, pe_inputs_doc, xnor_dot, xnor_popcount, PeParams};
use crate::rtl::{Expr, Module, Stmt, Ty};
use crate::units::Bases;

/// Bit `basis` of every lane's code in `bus` (lane `l` at `[l * bits +: bits]`), lane 0 lowest.
fn sign_plane(bus: &Expr, lanes: u32, bits: u32, basis: u32) -> Expr {
    if bits == 1 {
        return bus.clone();
    }
    let parts: Vec<Expr> = (0..lanes).rev().map(|l| bus.bit(l * bits + basis)).collect();
    Expr::concat(&parts)
}

/// A processing element for multi-basis binary operands: for every basis pair `p = i * act + j`, XNOR
/// weight sign plane `i` with activation sign plane `j`, count the agreements with a pipelined tree,
/// and accumulate `2 * count - lanes` (the pair's +-1 dot product). The hold register keeps every
/// pair's count; the drain combines them with the channel's pair scales ([`combine`](crate::units::combine)).
pub(super) fn pe_bases(p: &PeParams, bs: Bases, dw: u32) -> Module {
    let (l, kw, ka, cw) = (p.lanes, bs.weight, bs.act, bs.count_bits());
    let np = bs.pairs();
    let hw = np * cw;
    let mut m = Module::new(&p.name);
    m.doc(&format!("Processing element: {l} lanes of {kw}-basis binary weights x {ka}-basis binary activations; per basis pair"));
    m.doc(&format!("(p = i * {ka} + j) an XNOR/popcount and a {cw}-bit count of +-1 products; a hold register with all {np} counts."));
    m.doc(&format!("Stages: sign agreements (S2), popcount trees (S3..S{}), accumulate (S{}).", 2 + p.tree.stages, 3 + p.tree.stages));
    pe_inputs_doc(&mut m, p);
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l * ka), "activation sign bits, lane l basis j at [l*KA + j]");
    let w = m.input("w_i", Ty::u(l * kw), "weight sign bits, lane l basis i at [l*KW + i]");
    let acc_en = m.input("acc_en_i", Ty::bit(), "valid counts are in dot_q: accumulate them");
    let clr = m.input("clr_i", Ty::bit(), "clear the counts (after a tile's last step, and on reset)");
    let load = m.input("load_i", Ty::bit(), "it is the last step: move the counts into the hold register");
    let shift = m.input("shift_i", Ty::bit(), "shift the hold registers down one row");
    let hold_i = m.input("hold_i", Ty::u(hw), "hold register of the row above");
    let hold_o = m.output_reg("hold_o", Ty::u(hw), "hold register, towards row 0; pair p at [p*CW +: CW]");
    let b = &mut m.body;
    let (a, w) = pe_inputs(b, p, &clk, &a, &w);
    b.comment("S2: per basis pair, XNOR of the sign planes (1 means the product is +1), lane pairs counted, single lanes registered;");
    b.comment(&format!("S3: per basis pair, popcount, each level's adders side by side on carry chains ({} register stage{})", p.tree.stages, if p.tree.stages > 1 { "s" } else { "" }));
    let mut dots = Vec::new();
    let mut st = Vec::new();
    for i in 0..kw {
        for j in 0..ka {
            let pi = i * ka + j;
            let wp = sign_plane(&w, l, kw, i);
            let ap = sign_plane(&a, l, ka, j);
            let x = b.net(&format!("same{pi}"), &ap.xor(&wp).not(), &format!("weight basis {i} x activation basis {j}"));
            let root = xnor_popcount(b, &format!("p{pi}_"), &x, &clk, p.tree.levels_per_stage, p.tree.depth);
            let dot = xnor_dot(b, &format!("p{pi}_dot_s"), &root, l, dw);
            let dot_q = b.reg(&format!("p{pi}_dot_q"), dot.ty(), "this pair's +-1 dot product of this step");
            st.push(Stmt::set(&dot_q, &dot));
            dots.push(dot_q);
        }
    }
    b.always(&clk, st);
    b.comment("S4: accumulate each pair's dot product, hold");
    let mut acc_st = Vec::new();
    let mut nexts = Vec::new();
    for (pi, dot_v) in dots.iter().enumerate() {
        let acc_q = b.reg(&format!("p{pi}_acc_q"), Ty::s(cw), "");
        assert!(dw <= cw, "pair count narrower than one step");
        let nxt = b.net(&format!("p{pi}_acc_nxt"), &acc_q.add(&dot_v.resize(cw)), "");
        acc_st.push(Stmt::when_else(&clr, vec![Stmt::set(&acc_q, &Expr::zero(Ty::s(cw)))], vec![Stmt::when(&acc_en, vec![Stmt::set(&acc_q, &nxt)])]));
        nexts.push(nxt);
    }
    let all: Vec<Expr> = nexts.iter().rev().map(|n| n.as_unsigned()).collect();
    acc_st.push(Stmt::when_else(&load, vec![Stmt::set(&hold_o, &Expr::concat(&all))], vec![Stmt::when(&shift, vec![Stmt::set(&hold_o, &hold_i)])]));
    b.always(&clk, acc_st);
    m
}
