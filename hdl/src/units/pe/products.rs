//! The lane-products PE: a multiplier, an AND or an XNOR per lane.

use super::accumulate::{accumulate_and_hold, AccPorts};
use super::{pe_inputs, pe_inputs_doc, xnor_dot, xnor_pair_counts, PeParams};
use crate::rtl::{Module, Stmt, Ty};
use crate::units::builders::{adder_tree_piped, code_value};
use qmac_arith::code::MacKind;
use qmac_arith::width::{clog2, signed_bits};

/// A processing element of lane products (a multiplier, an AND, or XNOR on +-1 operands): `lanes`
/// products, an adder tree, an accumulator and a hold register.
pub(super) fn pe_products(p: &PeParams, kind: MacKind, dw: u32) -> Module {
    let (l, ab, wb, aw) = (p.lanes, p.act_bits, p.weight_bits, p.acc.bits);
    let mut m = Module::new(&p.name);
    m.doc(&format!("Processing element: {l} lanes of {wb}-bit {} weights x {ab}-bit {} activations, {kind:?} lane arithmetic,", p.weight_enc.name(), p.act_enc.name()));
    m.doc(&format!("a {aw}-bit{} accumulator and a hold register that shifts the finished sum down the column.", if p.acc.saturate { " saturating" } else { "" }));
    m.doc(&format!("Stages: lane products (S2), adder tree (S3..S{}), accumulate (S{}).", 2 + p.tree.stages, 3 + p.tree.stages));
    pe_inputs_doc(&mut m, p);
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l * ab), "activation codes, lane l at [l*AB +: AB]");
    let w = m.input("w_i", Ty::u(l * wb), "weight codes, lane l at [l*WB +: WB]");
    let corr = (kind == MacKind::OddWeights).then(|| m.input("corr_i", Ty::s(dw), "n_w * sum of this row's activations, aligned with dot_q"));
    let acc_en = m.input("acc_en_i", Ty::bit(), "a valid dot product is in dot_q: accumulate it");
    let ports = AccPorts::new(&mut m, &p.acc);
    let b = &mut m.body;
    let (a, w) = pe_inputs(b, p, &clk, &a, &w);

    // S2: lane products
    let mut s2 = Vec::new();
    let mut terms = Vec::new();
    let term_range = kind.lane_term_range((p.weight_enc, wb), (p.act_enc, ab));
    match kind {
        MacKind::Xnor => {
            b.comment("S2: +-1 x +-1 products as XNOR bits (1 means +1), counted in pairs");
            let x = b.net("same", &a.xor(&w).not(), "XNOR: the two signs agree");
            terms = xnor_pair_counts(b, "", &x, &mut s2);
        }
        _ => {
            b.comment("S2: lane products");
            let tw = signed_bits(term_range.0.into(), term_range.1.into());
            for i in 0..l {
                let ac = b.net(&format!("a{i}_code"), &a.slice(i * ab + ab - 1, i * ab), "");
                let wc = b.net(&format!("w{i}_code"), &w.slice(i * wb + wb - 1, i * wb), "");
                let (av, _) = code_value(b, &format!("a{i}_val"), &ac, p.act_enc);
                let wv = if kind == MacKind::Direct {
                    code_value(b, &format!("w{i}_val"), &wc, p.weight_enc).0
                } else {
                    // odd weights: the unsigned code c, as a signed number
                    b.net(&format!("w{i}_val"), &wc.to_signed_value(), "")
                };
                // degenerate ranges (a 1-bit {-1, 0} weight times a 1-bit {0, 1} activation) have a
                // product narrower than the operands; never truncate an operand
                let tw = tw.max(av.width()).max(wv.width());
                let prod = av.resize(tw).mul(&wv.resize(tw));
                let q = b.reg(&format!("prod{i}_q"), Ty::s(tw), "");
                s2.push(Stmt::set(&q, &prod));
                terms.push((q, term_range));
            }
        }
    }
    b.always(&clk, s2);

    // adder tree, registered every tree_levels levels
    b.comment(&format!("S3: adder tree ({} register stage{})", p.tree.stages, if p.tree.stages > 1 { "s" } else { "" }));
    assert_eq!(clog2(terms.len() as u64), p.tree.depth, "tree depth as derived");
    let (root, _) = adder_tree_piped(b, "sum", terms, Some((&clk, p.tree.levels_per_stage)));
    let root_ty = root.ty();
    // the dot product's width: the true range's, or the tree's if a degenerate range made it wider
    let dw = if kind == MacKind::Direct { dw.max(root_ty.width) } else { dw };
    // a popcount becomes the +-1 dot product before its register, so that the register feeds the
    // accumulator's adder directly (on iCE40 that conversion and its routing were the critical path)
    let dot_in = match kind {
        MacKind::Xnor => xnor_dot(b, "dot_s", &root, l, dw),
        _ => root,
    };
    let dot_q = b.reg("dot_q", dot_in.ty(), if kind == MacKind::Xnor { "this step's dot product" } else { "partial sum of this step" });
    b.always(&clk, vec![Stmt::set(&dot_q, &dot_in)]);

    // S4: the true dot product, accumulate, hold
    b.comment("S4: the step's dot product sum_l w_l * a_l, accumulate, hold");
    let dot_v = match kind {
        MacKind::Direct => b.net("dot_v", &dot_q.resize(dw), ""),
        MacKind::OddWeights => {
            let corr = corr.expect("odd weights have a row correction");
            b.net("dot_v", &dot_q.resize(dw).shl(1).sub(&corr), "2 * sum c*a - n_w * sum a")
        }
        MacKind::Xnor => dot_q,
    };
    accumulate_and_hold(b, &p.acc, &clk, &dot_v, &acc_en, &ports);
    m
}
