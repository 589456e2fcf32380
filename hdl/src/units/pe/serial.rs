//! The bit-serial PE: one activation bit per cycle selects shifted weight values.

use super::accumulate::{accumulate_and_hold, AccPorts};
use super::{pe_inputs, pe_inputs_doc, PeParams};
use crate::rtl::{Expr, Module, Stmt, Ty};
use crate::units::builders::adder_tree_piped;
use qmac_arith::width::{clog2, signed_bits};

/// A processing element for bit-serial activations. Each cycle brings one bit plane of the activations,
/// least significant first, and the column's weight values already shifted to that bit's weight
/// (`w << k`, negated for the sign bit of two's complement activations; shared by the column, see
/// [`array`](crate::units::array)). The PE adds the shifted weights its bits select: with one lane straight into the
/// accumulator (the bit is the accumulator's enable), with more lanes through selected terms (S2) and
/// the adder tree.
pub(super) fn pe_serial(p: &PeParams, weight_range: (i64, i64)) -> Module {
    let (l, ab, aw) = (p.lanes, p.act_bits, p.acc.bits);
    let (lo, hi) = weight_range;
    let sw = signed_bits(lo.into(), hi.into());
    let mut m = Module::new(&p.name);
    m.doc(&format!("Processing element, bit-serial activations: {l} lane{} of {ab}-bit {} activations, one bit per cycle,", if l > 1 { "s" } else { "" }, p.act_enc.name()));
    m.doc(&format!("least significant first, selecting {sw}-bit shifted {} weight values; a {aw}-bit accumulator.", p.weight_enc.name()));
    if l == 1 {
        m.doc("Stages: accumulate (S2): the activation bit enables the accumulator.");
    } else {
        m.doc(&format!("Stages: selected weights (S2), adder tree (S3..S{}), accumulate (S{}).", 2 + p.tree.stages, 3 + p.tree.stages));
    }
    pe_inputs_doc(&mut m, p);
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l), "this cycle's activation bit of each lane");
    let w = m.input("w_i", Ty::u(l * sw), "shifted weight values of this bit, lane l at [l*SW +: SW]");
    let acc_en = m.input("acc_en_i", Ty::bit(), "a valid bit plane is in the PE: accumulate it");
    let ports = AccPorts::new(&mut m, &p.acc);
    let b = &mut m.body;
    let (a, w) = pe_inputs(b, p, &clk, &a, &w);
    if l == 1 {
        let ws = b.net("w0_val", &w.as_signed(), "");
        if ports.load.is_none() && !p.acc.saturate {
            // the bit enables the accumulator: acc + w is computed every cycle, kept when the bit is 1
            b.comment("S2: accumulate the shifted weight where the activation bit is 1");
            let en = b.net("add_en", &acc_en.land(&a.bit(0)), "");
            accumulate_and_hold(b, &p.acc, &clk, &ws, &en, &ports);
        } else {
            b.comment("S2: accumulate the shifted weight where the activation bit is 1, else 0");
            let d = b.net("dot_v", &Expr::mux(&a.bit(0), &ws, &Expr::zero(ws.ty())), "");
            accumulate_and_hold(b, &p.acc, &clk, &d, &acc_en, &ports);
        }
        return m;
    }
    b.comment("S2: each lane's shifted weight where its activation bit is 1, else 0");
    let mut s2 = Vec::new();
    let mut terms = Vec::new();
    for i in 0..l {
        let ws = b.net(&format!("w{i}_val"), &w.slice(i * sw + sw - 1, i * sw).as_signed(), "");
        let q = b.reg(&format!("sel{i}_q"), Ty::s(sw), "");
        s2.push(Stmt::set(&q, &Expr::mux(&a.bit(i), &ws, &Expr::zero(Ty::s(sw)))));
        terms.push((q, (lo.min(0), hi.max(0))));
    }
    b.always(&clk, s2);
    b.comment(&format!("S3: adder tree ({} register stage{})", p.tree.stages, if p.tree.stages > 1 { "s" } else { "" }));
    assert_eq!(clog2(terms.len() as u64), p.tree.depth, "tree depth as derived");
    let (root, _) = adder_tree_piped(b, "sum", terms, Some((&clk, p.tree.levels_per_stage)));
    let dot_q = b.reg("dot_q", root.ty(), "partial sum of this bit plane");
    b.always(&clk, vec![Stmt::set(&dot_q, &root)]);
    b.comment("S4: accumulate, hold");
    accumulate_and_hold(b, &p.acc, &clk, &dot_q, &acc_en, &ports);
    m
}
