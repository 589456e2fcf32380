//! `<prefix>_array`: the input registers and the `rows x cols` PEs, with the column shift chains.

use super::builders::code_value;
use super::HwParams;
use crate::rtl::{Expr, Module, Stmt, Ty};
use qmac_arith::code::Encoding;
use qmac_arith::width::clog2;

/// The array: input registers (S1), per-row corrections and `rows x cols` PEs whose hold registers
/// form one shift chain per column, row 0 at the bottom.
pub fn array(p: &HwParams, pe: &Module, rowsum: Option<&Module>) -> Module {
    // a hold register is the accumulator, or with bases all the pair counts
    let (r, c, l, ab, wb, aw) = (p.rows, p.cols, p.lanes, p.act_bits, p.weight_bits, p.hold_bits());
    let dw = p.dot_bits();
    let mut m = Module::new(&p.module("array"));
    m.doc(&format!("{r} x {c} processing elements, {l} lanes each; activations broadcast along rows, weights along columns."));
    m.doc("The compute pipeline never stalls: control only admits a tile's last step when its sum will find the hold registers free.");
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_data_i", Ty::u(r * l * ab), "activation codes of one step");
    let cbits = p.code_bits();
    let w_in = m.input("w_data_i", Ty::u(c * l * cbits), "weight codes of one step");
    let levels = p.codebook_bits.map(|_| m.input("levels_i", Ty::u(p.table_bits()), "level table"));
    let step = p.serial.then(|| m.input("step_i", Ty::bit(), "a step is accepted: load the input registers"));
    let neg = (p.serial && p.act_enc == Encoding::Int).then(|| m.input("neg_i", Ty::bit(), "the bit plane entering S1 is a two's complement sign bit: negate the weights"));
    let acc_en = m.input("acc_en_i", Ty::bit(), "accumulate the dot products");
    let clr = m.input("clr_i", Ty::bit(), "clear the accumulators");
    let load = p.double_buffer.then(|| m.input("load_i", Ty::bit(), "the dot products end a tile"));
    let shift = m.input("shift_i", Ty::bit(), "shift the hold registers one row down");
    let col_o = m.output("col_o", Ty::u(c * aw), "hold register of row 0 of each column");
    let b = &mut m.body;
    let w = match (&levels, p.codebook_bits) {
        (Some(levels), Some(cb)) => {
            b.comment("codebook: each weight code selects a level; decoded once per column and lane");
            let n = 1u32 << cb;
            let iw = clog2(u64::from(n * wb));
            let w_dec = b.wire("w_dec", Ty::u(c * l * wb), "decoded weight levels");
            b.generate_for("gw", c * l, "g_lookup", |b| {
                let code = b.net("code", &w_in.part(&format!("gw * {cb}"), cb, (c * l - 1) * cb), "");
                let base = b.net("base", &code.resize(iw).mul(&Expr::lit(i128::from(wb), Ty::u(iw))), "first bit of the level");
                b.assign(&w_dec.part(&format!("gw * {wb}"), wb, (c * l - 1) * wb), &levels.part_at(&base, wb));
            });
            w_dec
        }
        _ => w_in.clone(),
    };
    assert!(p.input_regs || !p.serial, "bit-serial activations shift in the input registers");
    if p.input_regs {
        b.comment("S1: input registers");
    } else {
        b.comment("no input registers: the PEs' first stage takes the input ports");
    }
    let a_q = if p.input_regs {
        b.reg("a_q", Ty::u(r * l * ab), if p.serial { "activation codes, each shifted right one bit per cycle" } else { "" })
    } else {
        a.clone()
    };
    let (planes, w_pe, cl) = match &step {
        Some(step) => {
            // each lane's code moves down one bit per cycle: its bit 0 is this cycle's bit plane
            let shifted: Vec<Expr> = (0..r * l)
                .rev()
                .map(|k| if ab == 1 { Expr::lit(0, Ty::bit()) } else { Expr::concat(&[Expr::lit(0, Ty::bit()), a_q.slice(k * ab + ab - 1, k * ab + 1)]) })
                .collect();
            let a_shift = b.net("a_shift", &Expr::concat(&shifted), "every code shifted right by one bit");
            b.always(&clk, vec![Stmt::when_else(step, vec![Stmt::set(&a_q, &a)], vec![Stmt::set(&a_q, &a_shift)])]);
            let bits: Vec<Expr> = (0..r * l).rev().map(|k| a_q.bit(k * ab)).collect();
            let planes = b.net("a_plane", &Expr::concat(&bits), "this cycle's bit of every activation, row r lane l at [r*L + l]");
            // each column lane's weight value, shifted left one bit per cycle with its activation bit
            // (negated for the sign bit of two's complement activations): shared by the column's PEs
            let sw = p.serial_weight_bits();
            let ws = b.wire("w_shift", Ty::u(c * l * sw), "shifted weight values, column c lane l at [(c*L+l)*SW +: SW]");
            b.generate_for("gw", c * l, "g_wshift", |b| {
                let code = b.net("code", &w.part(&format!("gw * {wb}"), wb, (c * l - 1) * wb), "");
                let (val, _) = code_value(b, "val", &code, p.weight_enc);
                let ws_q = b.reg("ws_q", Ty::s(sw), "this bit's weight value");
                let base = b.net("base", &Expr::mux(step, &val.resize(sw), &ws_q.shl(1)), "");
                let next = match &neg {
                    Some(neg) => Expr::mux(neg, &Expr::zero(Ty::s(sw)).sub(&base), &base),
                    None => base.clone(),
                };
                b.always(&clk, vec![Stmt::set(&ws_q, &next)]);
                b.assign(&ws.part(&format!("gw * {sw}"), sw, (c * l - 1) * sw), &ws_q.as_unsigned());
            });
            (Some(planes), ws, l * sw)
        }
        None if !p.input_regs => (None, w, l * wb),
        None => {
            let w_q = b.reg("w_q", Ty::u(c * l * wb), "");
            b.always(&clk, vec![Stmt::set(&a_q, &a), Stmt::set(&w_q, &w)]);
            (None, w_q, l * wb)
        }
    };
    let hold = b.wire("hold", Ty::u((r + 1) * c * aw), "hold registers, row-major; the row above the top reads zeros");
    b.assign(&hold.part(&format!("{}", r * c * aw), c * aw, r * c * aw), &Expr::zero(Ty::u(c * aw)));
    b.assign(&col_o, &hold.part("0", c * aw, 0));
    let rl = l * ab;
    b.generate_for("gr", r, "g_row", |b| {
        let a_row = match &planes {
            Some(pl) => pl.part(&format!("gr * {l}"), l, (r - 1) * l),
            None => a_q.part(&format!("gr * {rl}"), rl, (r - 1) * rl),
        };
        let corr = rowsum.map(|rs| {
            let corr = b.wire("corr", Ty::s(dw), "n_w * sum of this row's activations");
            b.instance(rs, "u_rowsum", &[("clk_i", clk.clone()), ("a_i", a_row.clone()), ("corr_o", corr.clone())]);
            corr
        });
        b.generate_for("gc", c, "g_col", |b| {
            let mut conns = vec![
                ("clk_i", clk.clone()),
                ("a_i", a_row.clone()),
                ("w_i", w_pe.part(&format!("gc * {cl}"), cl, (c - 1) * cl)),
                ("acc_en_i", acc_en.clone()),
                ("clr_i", clr.clone()),
                ("shift_i", shift.clone()),
                ("hold_i", hold.part(&format!("((gr + 1) * {c} + gc) * {aw}"), aw, (r * c + c - 1) * aw)),
                ("hold_o", hold.part(&format!("(gr * {c} + gc) * {aw}"), aw, ((r - 1) * c + c - 1) * aw)),
            ];
            if let Some(corr) = &corr {
                conns.push(("corr_i", corr.clone()));
            }
            if let Some(load) = &load {
                conns.push(("load_i", load.clone()));
            }
            b.instance(pe, "u_pe", &conns);
        });
    });
    m
}
