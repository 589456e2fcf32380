//! The lane-products PE: a multiplier, an AND or an XNOR per lane.

use super::accumulate::{accumulate_and_hold, AccPorts};
use super::bitplane::bitplane_dot;
use super::{pe_inputs, pe_inputs_doc, xnor_dot, xnor_popcount, PeParams};
use crate::units::{mul8x2, Mul8x2Params, MUL8X2_OPERAND_BITS};
use crate::rtl::{Body, Expr, Module, Stmt, Ty};
use crate::units::builders::{adder_tree_piped, code_value};
use qmac_arith::code::{Encoding, MacKind};
use qmac_arith::pack::Packing;
use qmac_arith::width::{clog2, signed_bits, unsigned_bits};

/// A processing element of lane products (a multiplier, an AND, or XNOR on +-1 operands): `lanes`
/// products, an adder tree, an accumulator and a hold register.
pub(super) fn pe_products(p: &PeParams, kind: MacKind, dw: u32, packing: Option<Packing>) -> Module {
    let (l, ab, wb, aw) = (p.lanes, p.act_bits, p.weight_bits, p.acc.bits);
    let mut m = Module::new(&p.name);
    m.doc(&format!("Processing element: {l} lanes of {wb}-bit {} weights x {ab}-bit {} activations, {kind:?} lane arithmetic,", p.weight_enc.name(), p.act_enc.name()));
    m.doc(&format!("a {aw}-bit{} accumulator and a hold register that shifts the finished sum down the column.", if p.acc.saturate { " saturating" } else { "" }));
    if let Some(pk) = packing {
        let borrow = if pk.borrow_free() { " (never negative: no borrow)".to_string() } else { format!(", plus its bit {} (the borrow)", pk.field_lsb() - 1) };
        m.doc(&format!("Lanes in groups of {}, one {} x {}-bit multiply each: the group's dot product is bits [{}+:{}] of the product{borrow}.", pk.terms, pk.x_bits(), pk.y_bits(), pk.field_lsb(), pk.spacing));
        if kind == MacKind::OffsetWeights {
            m.doc(&format!("The weights are multiplied as offset-binary codes u = w + {} (the code's top bit inverted); the row correction subtracts {} * sum a.", 1u64 << (wb - 1), 1u64 << (wb - 1)));
        }
        if p.own_inputs {
            m.doc("S2 is two stages: every lane's operands registered (S2a, the groups' packed), then the products (S2b); the stages after it are one more cycle later.");
        }
    }
    if let Some((n, unit)) = &p.pairs {
        m.doc(&format!("Lanes 0..{} in pairs, each pair's two products in one {} (S2).", 2 * n, unit.name));
    }
    m.doc(&format!("Stages: lane products (S2), adder tree (S3..S{}), accumulate (S{}).", 2 + p.tree.stages, 3 + p.tree.stages));
    pe_inputs_doc(&mut m, p);
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l * ab), "activation codes, lane l at [l*AB +: AB]");
    let w = m.input("w_i", Ty::u(l * wb), "weight codes, lane l at [l*WB +: WB]");
    let corr_doc = if kind == MacKind::OddWeights { "n_w * sum of this row's activations, aligned with dot_q" } else { "n * sum of this row's activations (the row correction), aligned with dot_q" };
    let corr = kind.row_correction(wb).map(|_| m.input("corr_i", Ty::s(dw), corr_doc));
    let acc_en = m.input("acc_en_i", Ty::bit(), "a valid dot product is in dot_q: accumulate it");
    let ports = AccPorts::new(&mut m, &p.acc);
    let b = &mut m.body;
    let (a, w) = pe_inputs(b, p, &clk, &a, &w);

    // S2: lane products
    let mut s2 = Vec::new();
    let mut s2a = Vec::new();
    let mut s2c = Vec::new();
    let mut terms = Vec::new();
    let term_range = kind.lane_term_range((p.weight_enc, wb), (p.act_enc, ab));
    let planes = &p.bit_planes;
    match kind {
        _ if planes.is_some() => {
            let planes = planes.as_ref().expect("bit planes");
            b.comment("S2: the lanes' one-bit partial products by weight, lane pairs of a class counted, single ones registered");
            b.comment(&format!("S3: each class's popcount on carry chains, then the weighted sum ({} register stage{})", p.tree.stages, if p.tree.stages > 1 { "s" } else { "" }));
            let range = (i64::from(l) * term_range.0, i64::from(l) * term_range.1);
            let bw = signed_bits(range.0.into(), range.1.into());
            let dot = bitplane_dot(b, planes, &clk, &a, &w, (ab, wb), (p.tree.levels_per_stage, p.tree.depth), bw);
            terms.push((dot, range));
        }
        MacKind::Xnor => {
            b.comment("S2: +-1 x +-1 products as XNOR bits (1 means +1), lane pairs counted, single lanes registered");
            let x = b.net("same", &a.xor(&w).not(), "XNOR: the two signs agree");
            b.comment(&format!("S3: popcount, each level's adders side by side on carry chains ({} register stage{})", p.tree.stages, if p.tree.stages > 1 { "s" } else { "" }));
            let count = xnor_popcount(b, "", &x, &clk, p.tree.levels_per_stage, p.tree.depth);
            terms.push((count, (0, l.into())));
        }
        _ => {
            b.comment("S2: lane products");
            let tw = signed_bits(term_range.0.into(), term_range.1.into());
            // each lane's codes; its operand values (the activation value, and the weight value or
            // with odd weights the unsigned code c) where a multiply takes them as values
            let raw = (kind.row_correction(wb).is_some(), p.act_enc == Encoding::Unsigned);
            let packed = packing.map_or(0, |pk| l / pk.terms * pk.terms);
            let op_regs = packing.is_some() && p.own_inputs;
            let mut group = Vec::new();
            let paired = p.pairs.as_ref().map_or(0, |(n, _)| 2 * n);
            let mut pair_ops = Vec::new();
            for i in 0..l {
                let ac = b.net(&format!("a{i}_code"), &a.slice(i * ab + ab - 1, i * ab), "");
                let wc = b.net(&format!("w{i}_code"), &w.slice(i * wb + wb - 1, i * wb), "");
                if let (Some((_, unit)), true) = (&p.pairs, i < paired) {
                    // the lane's operands as the paired unit takes them: 8-bit values, or codes where the
                    // side is unsigned (unsigned activations, odd-level weight codes)
                    let x = if unit.x_signed { code_value(b, &format!("w{i}_val"), &wc, p.weight_enc).0 } else { wc };
                    let y = if unit.y_signed { code_value(b, &format!("a{i}_val"), &ac, p.act_enc).0 } else { ac };
                    // named nets: the unit's ports take names (Yosys 0.70 once failed on a signed
                    // cast in a port connection)
                    let widen = |b: &mut Body, v: Expr, name: String| if v.width() == MUL8X2_OPERAND_BITS { v } else { b.net(&name, &v.resize(MUL8X2_OPERAND_BITS), "") };
                    let x = widen(b, x, format!("w{i}_x"));
                    let y = widen(b, y, format!("a{i}_y"));
                    pair_ops.push((x, y));
                    if pair_ops.len() == 2 {
                        terms.extend(paired_products(b, i / 2, unit, &clk, &pair_ops, term_range));
                        pair_ops.clear();
                    }
                    continue;
                }
                let plain = i >= packed;
                let av = if plain || !raw.1 { code_value(b, &format!("a{i}_val"), &ac, p.act_enc).0 } else { ac };
                // the unsigned code the lane multiplies: odd weights' code, or the offset-binary code
                // (top bit inverted) of a two's complement weight
                let wc = if kind == MacKind::OffsetWeights {
                    let u = if wb == 1 { wc.bit(0).not() } else { Expr::concat(&[wc.bit(wb - 1).not(), wc.slice(wb - 2, 0)]) };
                    b.net(&format!("w{i}_u"), &u, "offset-binary code: w + 2^(WB-1)")
                } else {
                    wc
                };
                let wv = if !plain && raw.0 {
                    wc
                } else if kind == MacKind::Direct {
                    code_value(b, &format!("w{i}_val"), &wc, p.weight_enc).0
                } else {
                    // an unsigned weight code, as a signed number
                    b.net(&format!("w{i}_val"), &wc.to_signed_value(), "")
                };
                if let (Some(pk), false) = (packing, plain) {
                    group.push(LaneOperands { w: wv, a: av });
                    if group.len() == pk.terms as usize {
                        let g = i / pk.terms;
                        let regs = op_regs.then_some((&mut s2a, &mut s2c));
                        terms.push(packed_group(b, &format!("pack{g}"), &pk, &group, regs, &mut s2));
                        group.clear();
                    }
                    continue;
                }
                // with the PE's own input copies a packed PE registers every lane's operands (S2a), as
                // the groups' packed ones
                let (av, wv) = if op_regs {
                    let aq = b.reg(&format!("a{i}_q"), av.ty(), "");
                    let wq = b.reg(&format!("w{i}_q"), wv.ty(), "");
                    s2a.push(Stmt::set(&aq, &av));
                    s2a.push(Stmt::set(&wq, &wv));
                    (aq, wq)
                } else {
                    (av, wv)
                };
                // degenerate ranges (a 1-bit {-1, 0} weight times a 1-bit {0, 1} activation) have a
                // product narrower than the operands; never truncate an operand
                let tw = tw.max(av.width()).max(wv.width());
                let prod = av.resize(tw).mul(&wv.resize(tw));
                let q = b.reg(&format!("prod{i}_q"), Ty::s(tw), "");
                s2.push(Stmt::set(&q, &prod));
                let q = if op_regs {
                    // S2c: registered again, as the packed groups' fields
                    let dq = b.reg(&format!("prod{i}_dq"), Ty::s(tw), "");
                    s2c.push(Stmt::set(&dq, &q));
                    dq
                } else {
                    q
                };
                terms.push((q, term_range));
            }
        }
    }
    if !s2a.is_empty() {
        // kept: Yosys would otherwise merge a column's (a row's) copies into one register far from
        // most of its DSP blocks, or absorb it into an SB_MAC16's input register behind the adders
        b.always_kept(&clk, s2a);
    }
    let root = if kind == MacKind::Xnor || planes.is_some() {
        terms.pop().expect("the popcount or the bit planes' dot product").0
    } else {
        if !s2.is_empty() {
            // (empty when every lane is in a paired unit, whose registers are the products')
            b.always(&clk, s2);
        }
        if !s2c.is_empty() {
            b.always(&clk, s2c);
        }
        // adder tree, registered every tree_levels levels
        b.comment(&format!("S3: adder tree ({} register stage{})", p.tree.stages, if p.tree.stages > 1 { "s" } else { "" }));
        assert_eq!(clog2(terms.len() as u64), p.tree.depth, "tree depth as derived");
        adder_tree_piped(b, "sum", terms, Some((&clk, p.tree.levels_per_stage))).0
    };
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
        MacKind::OffsetWeights => {
            let corr = corr.expect("offset-binary weights have a row correction");
            if dot_q.width() > dw {
                // the tree of unsigned terms is wider than the true dot product: the difference at its
                // width, of which the low dw bits are the (exact) dot product
                let w = dot_q.width();
                let d = b.net_partly_read("dot_d", &dot_q.sub(&corr.resize(w)), "sum u*a - n * sum a, modulo 2^(its width)");
                b.net("dot_v", &d.resize(dw), "")
            } else {
                b.net("dot_v", &dot_q.resize(dw).sub(&corr), "sum u*a - n * sum a")
            }
        }
        MacKind::Xnor => dot_q,
    };
    accumulate_and_hold(b, &p.acc, &clk, &dot_v, &acc_en, &ports);
    m
}

/// Lanes `2j` and `2j + 1` (`ops`: each lane's 8-bit weight-side and activation-side operands) as one
/// instance `pair<j>` of the paired 8 x 8 product unit, whose outputs are the two lanes' registered
/// products (S2) `prod<2j>_q`, `prod<2j+1>_q`; returns them as signed adder-tree terms, each narrowed
/// to the width of `range` when the unit's 16 bits are more.
fn paired_products(b: &mut Body, j: u32, unit: &Mul8x2Params, clk: &Expr, ops: &[(Expr, Expr)], range: (i64, i64)) -> Vec<(Expr, (i64, i64))> {
    let pt = unit.product_ty();
    let need = if pt.signed { signed_bits(range.0.into(), range.1.into()) } else { unsigned_bits(range.1 as u128) };
    let mut outs = Vec::new();
    let mut terms = Vec::new();
    for k in 0..2 {
        let i = 2 * j + k;
        let doc = "this lane's product, registered in the paired unit";
        let q = if need < pt.width { b.wire_partly_read(&format!("prod{i}_q"), pt, doc) } else { b.wire(&format!("prod{i}_q"), pt, doc) };
        // signed terms, as the plain lanes' (an unsigned product gets a zero bit on top)
        let t = if need < pt.width { q.slice(need - 1, 0) } else { q.clone() };
        let term = match (pt.signed, need < pt.width) {
            (true, false) => q.clone(),
            (true, true) => b.net(&format!("prod{i}_v"), &t.as_signed(), ""),
            (false, _) => b.net(&format!("prod{i}_v"), &t.to_signed_value(), ""),
        };
        outs.push(q);
        terms.push((term, range));
    }
    let m = mul8x2(unit);
    b.instance(
        &m,
        &format!("pair{j}"),
        &[
            ("clk_i", clk.clone()),
            ("x0_i", ops[0].0.clone()),
            ("y0_i", ops[0].1.clone()),
            ("x1_i", ops[1].0.clone()),
            ("y1_i", ops[1].1.clone()),
            ("p0_o", outs[0].clone()),
            ("p1_o", outs[1].clone()),
        ],
    );
    terms
}

/// One lane's multiply operands: signed values, or unsigned codes where the code is the value
/// (unsigned activations and odd weights' codes in a packed group).
struct LaneOperands {
    w: Expr,
    a: Expr,
}

/// A packed operand `sum_i v_i * 2^(shift_i)` of `bits` signed bits (exact, so modular arithmetic
/// in `bits` is): a concatenation when every value is an unsigned code that fits its field, else a sum.
fn packed_operand(b: &mut Body, name: &str, vals: &[(&Expr, u32)], spacing: u32, bits: u32) -> Expr {
    let fields_fit = vals.iter().all(|(v, _)| !v.ty().signed && v.width() <= spacing);
    let shifts: Vec<u32> = vals.iter().map(|(_, s)| *s).collect();
    let ascending = shifts.iter().enumerate().all(|(i, &s)| s == i as u32 * spacing);
    if fields_fit && ascending {
        // lane 0 lowest: {v_(n-1), v_(n-2) zero-extended to the spacing, ..., v_0 zero-extended}
        let n = vals.len();
        let parts: Vec<Expr> = (0..n).rev().map(|i| if i + 1 == n { vals[i].0.clone() } else { vals[i].0.resize(spacing) }).collect();
        let cat = Expr::concat(&parts);
        return b.net(name, &cat.resize(bits - 1).to_signed_value(), "the fields side by side");
    }
    let sum = vals
        .iter()
        .map(|(v, s)| {
            let sv = if v.ty().signed { v.resize(bits) } else { v.resize(bits - 1).to_signed_value() };
            if *s == 0 {
                sv
            } else {
                sv.shl(*s)
            }
        })
        .reduce(|x, y| x.add(&y))
        .expect("a group has lanes");
    b.net(name, &sum, "")
}

/// One packed multiply: the group's weights `X = sum_i w_i 2^(i k)` times its activations
/// `Y = sum_i a_i 2^((n-1-i) k)` (registered, S2a, when `regs` is given), multiplied modulo `2^(E + k)`
/// into a register; returns the group's dot product
/// `((P >> E) + P[E-1]) mod 2^k` ([`Packing::field`]) as an adder-tree term with its range.
fn packed_group(b: &mut Body, name: &str, pk: &Packing, group: &[LaneOperands], regs: Option<(&mut Vec<Stmt>, &mut Vec<Stmt>)>, s2: &mut Vec<Stmt>) -> (Expr, (i64, i64)) {
    let (n, k) = (pk.terms, pk.spacing);
    assert_eq!(group.len(), n as usize);
    let ws: Vec<(&Expr, u32)> = group.iter().enumerate().map(|(i, l)| (&l.w, i as u32 * k)).collect();
    // activations in descending order: lane i at (n-1-i) k, so build it from the top lane down
    let as_: Vec<(&Expr, u32)> = group.iter().enumerate().rev().map(|(i, l)| (&l.a, (n - 1 - i as u32) * k)).collect();
    let xs = packed_operand(b, &format!("{name}_x"), &ws, k, pk.x_bits());
    let ys = packed_operand(b, &format!("{name}_y"), &as_, k, pk.y_bits());
    let (s2a, s2c) = match regs {
        Some((a, c)) => (Some(a), Some(c)),
        None => (None, None),
    };
    let (x, y) = match s2a {
        // S2a: the packed operands registered, so that the multiply (a DSP block) starts from registers
        Some(s2a) => {
            let x = b.reg(&format!("{name}_xq"), xs.ty(), "packed weights");
            let y = b.reg(&format!("{name}_yq"), ys.ty(), "packed activations");
            s2a.push(Stmt::set(&x, &xs));
            s2a.push(Stmt::set(&y, &ys));
            (x, y)
        }
        None => (xs, ys),
    };
    let (e, pw) = (pk.field_lsb(), pk.product_bits());
    let mw = pw.max(x.width()).max(y.width());
    let prod = b.net_partly_read(&format!("{name}_p"), &x.resize(mw).mul(&y.resize(mw)), &format!("{n} lanes in one multiply, modulo 2^{mw}"));
    // only the field and the borrow bit below it are kept
    if pk.borrow_free() {
        // only the field is kept: never negative, so no borrow
        let q = b.reg(&format!("{name}_q"), Ty::u(k), &format!("product bits [{}:{}]: the group's dot product", pw - 1, e));
        s2.push(Stmt::set(&q, &prod.slice(pw - 1, e)));
        let dot = b.net(&format!("{name}_dot"), &q.to_signed_value(), "the group's dot product, never negative");
        return (registered_again(b, name, dot, s2c), pk.dot_range());
    }
    let q = b.reg(&format!("{name}_q"), Ty::u(k + 1), &format!("product bits [{}:{}]: the field and the borrow", pw - 1, e - 1));
    s2.push(Stmt::set(&q, &prod.slice(pw - 1, e - 1)));
    let field = q.slice(k, 1).add(&q.bit(0).resize(k)).as_signed();
    let dot = b.net(&format!("{name}_dot"), &field, "bits [E+k-1:E] plus the borrow bit E-1: the group's dot product");
    (registered_again(b, name, dot, s2c), pk.dot_range())
}

/// S2c, with the PE's own input registers: the group's dot product registered once more, so that the
/// field register after the DSP block has the block as its only source and this register as its only
/// load, and the placer can put it between the two (on ECP5 the block's output route, with the
/// multiply's 3.9 ns, was the critical path).
fn registered_again(b: &mut Body, name: &str, dot: Expr, s2c: Option<&mut Vec<Stmt>>) -> Expr {
    match s2c {
        Some(s2c) => {
            let dq = b.reg(&format!("{name}_dq"), dot.ty(), "the group's dot product, registered again");
            s2c.push(Stmt::set(&dq, &dot));
            dq
        }
        None => dot,
    }
}
