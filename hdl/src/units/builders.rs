//! Small builders the units share: code values, pipelined adder trees, delays and shift chains.

use crate::rtl::{Body, Expr, Stmt, Ty};
use qmac_arith::code::Encoding;
use qmac_arith::width::{clog2, signed_bits, unsigned_bits};

/// The value of one code as a signed number, as a named wire.
pub(crate) fn code_value(b: &mut Body, name: &str, code: &Expr, enc: Encoding) -> (Expr, (i64, i64)) {
    let bits = code.width();
    let v = match enc {
        Encoding::Unsigned => code.to_signed_value(),
        Encoding::Int => code.as_signed(),
        Encoding::Odd => {
            // 2c - (2^b - 1) = {~c[b-1], c[b-2:0], 1} read as a (b+1)-bit signed number
            let mut parts = vec![code.bit(bits - 1).not()];
            if bits > 1 {
                parts.push(code.slice(bits - 2, 0));
            }
            parts.push(Expr::lit(1, Ty::bit()));
            Expr::concat(&parts).as_signed()
        }
    };
    let range = enc.range(bits);
    let w = b.net(name, &v, "");
    (w, range)
}

/// Reduce `terms` (named signals with their value ranges) with a balanced tree of named adders whose
/// widths follow the ranges. Returns the root and its range.
pub(crate) fn adder_tree(b: &mut Body, prefix: &str, terms: Vec<(Expr, (i64, i64))>) -> (Expr, (i64, i64)) {
    adder_tree_piped(b, prefix, terms, None)
}

/// [`adder_tree`] with a register after every `per_stage` levels (but not after the last level: the
/// caller registers the root), clocked by `clk` when given.
pub(crate) fn adder_tree_piped(b: &mut Body, prefix: &str, terms: Vec<(Expr, (i64, i64))>, clk: Option<(&Expr, u32)>) -> (Expr, (i64, i64)) {
    let total = clog2(terms.len() as u64);
    let mut level = terms;
    let mut depth = 0;
    while level.len() > 1 {
        if let Some((clk, per_stage)) = clk {
            if depth > 0 && depth % per_stage == 0 && depth < total {
                let mut regs = Vec::new();
                let mut st = Vec::new();
                for (i, (e, r)) in level.iter().enumerate() {
                    let q = b.reg(&format!("{prefix}_q{depth}_{i}"), e.ty(), "");
                    st.push(Stmt::set(&q, e));
                    regs.push((q, *r));
                }
                b.always(clk, st);
                level = regs;
            }
        }
        depth += 1;
        let mut next = Vec::new();
        let mut it = level.into_iter();
        let mut i = 0;
        while let Some(x) = it.next() {
            match it.next() {
                Some(y) => {
                    let range = (x.1 .0 + y.1 .0, x.1 .1 + y.1 .1);
                    let signed = range.0 < 0 || x.0.ty().signed || y.0.ty().signed;
                    let e = if signed {
                        let w = signed_bits(range.0.into(), range.1.into()).max(x.0.width()).max(y.0.width());
                        let xs = if x.0.ty().signed { x.0.resize(w) } else { x.0.resize(w - 1).to_signed_value() };
                        let ys = if y.0.ty().signed { y.0.resize(w) } else { y.0.resize(w - 1).to_signed_value() };
                        xs.add(&ys)
                    } else {
                        let w = unsigned_bits(range.1 as u128).max(x.0.width()).max(y.0.width());
                        x.0.resize(w).add(&y.0.resize(w))
                    };
                    let n = b.net(&format!("{prefix}_s{depth}_{i}"), &e, "");
                    next.push((n, range));
                }
                None => next.push(x),
            }
            i += 1;
        }
        level = next;
    }
    level.pop().expect("adder tree of no terms")
}

/// `n` registers after `e`, named `<name>_d1_q ..`, their assignments appended to `st`; returns the last
/// (or `e` when `n` is 0).
pub(crate) fn delay(b: &mut Body, name: &str, e: &Expr, n: u32, st: &mut Vec<Stmt>) -> Expr {
    let mut prev = e.clone();
    for k in 1..=n {
        let q = b.reg(&format!("{name}_d{k}_q"), e.ty(), "");
        st.push(Stmt::set(&q, &prev));
        prev = q;
    }
    prev
}

/// `regs[0] <= input; regs[i] <= regs[i-1]; out <= regs[last]`.
pub(crate) fn shift_chain(input: &Expr, regs: &[Expr], out: &Expr) -> Vec<Stmt> {
    let mut prev = input.clone();
    let mut st = Vec::new();
    for r in regs.iter().chain(std::iter::once(out)) {
        st.push(Stmt::set(r, &prev));
        prev = r.clone();
    }
    st
}
