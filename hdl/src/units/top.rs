//! `<prefix>_top`: the top level, which connects parameters, control, the array, the output stage
//! (per column or shared) and the output buffer.

use super::builders::delay;
use super::params::TableKind;
use super::{HwParams, OutStage, Units};
use crate::rtl::{Body, Expr, Module, Stmt, Ty};
use qmac_arith::code::Encoding;
use qmac_arith::width::clog2;

/// The top level: parameter registers, control, array, and one PACT + requantization pipeline per column.
pub fn top(p: &HwParams, units: &Units) -> Module {
    let (r, c, l, ab, aw, ob) = (p.rows, p.cols, p.lanes, p.act_bits, p.acc_bits, p.out_bits);
    let mut m = Module::new(&p.module("top"));
    m.doc(&format!("qmac array top: {r} x {c} PEs x {l} lanes = {} MACs per cycle; streams with valid/ready.", r * c * l));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let rst = m.input("rst_i", Ty::bit(), "synchronous reset, active high");
    let a_data = m.input("a_data_i", Ty::u(r * l * ab), "row r lane l at [(r*L+l)*AB +: AB]");
    let a_last = m.input("a_last_i", Ty::bit(), "last step of the tile");
    let a_valid = m.input("a_valid_i", Ty::bit(), "");
    let a_ready = m.output("a_ready_o", Ty::bit(), "");
    let w_data = m.input("w_data_i", Ty::u(c * l * p.code_bits()), "column c lane l at [(c*L+l)*WB +: WB]");
    let w_valid = m.input("w_valid_i", Ty::bit(), "");
    let w_ready = m.output("w_ready_o", Ty::bit(), "");
    let prm_we = m.input("prm_we_i", Ty::bit(), "parameter write");
    let prm_addr = m.input("prm_addr_i", Ty::u(p.prm_addr_bits), "channel * 4 + field");
    let prm_wdata = m.input("prm_wdata_i", Ty::u(p.prm_data_bits), "");
    let y_data = m.output("y_data_o", Ty::u(c * ob), "column c at [c*OB +: OB]");
    let y_last = m.output("y_last_o", Ty::bit(), "last row of the tile");
    let y_valid = m.output("y_valid_o", Ty::bit(), "");
    let y_ready = m.input("y_ready_i", Ty::bit(), "");
    let b = &mut m.body;
    let fields = p.param_fields();
    // per-channel parameters: every channel's side by side, or (in memories) the issued column's
    let pw = if p.param_ram() { 1 } else { c };
    let prm: Vec<Expr> = fields.iter().map(|(n, w)| b.wire(n, Ty::u(pw * w), "")).collect();
    let acc_en = b.wire("acc_en", Ty::bit(), "");
    let clr = b.wire("clr", Ty::bit(), "");
    let load = p.double_buffer.then(|| b.wire("load", Ty::bit(), ""));
    let drain_shift = b.wire("drain_shift", Ty::bit(), "");
    let push = b.wire("push", Ty::bit(), "");
    let push_last = b.wire("push_last", Ty::bit(), "");
    let row = b.wire("row", Ty::u(c * ob), "output codes leaving the drain pipeline");
    let gather = p.shared_output.then(|| b.wire("gather", Ty::bit(), "a code leaves the shared unit"));
    let cbits = clog2(u64::from(c));
    let col_sel = (p.shared_output && cbits > 0).then(|| b.wire("col_sel", Ty::u(cbits), "column issued to the shared unit"));
    let col_next = p.param_ram().then(|| b.wire("col_next", Ty::u(cbits), "column issued to the shared unit in the next cycle"));
    let pop = b.net("pop", &y_valid.land(&y_ready), "");
    let step = p.serial.then(|| b.wire("step", Ty::bit(), "a step is accepted (bit-serial input registers)"));
    let neg = (p.serial && p.act_enc == Encoding::Int).then(|| b.wire("neg", Ty::bit(), "the next bit plane is a two's complement sign bit"));
    let hw = p.hold_bits();
    let col = b.wire("col", Ty::u(c * hw), "row-0 hold register of each column");
    let mut conns = vec![("clk_i", clk.clone()), ("prm_we_i", prm_we), ("prm_addr_i", prm_addr), ("prm_wdata_i", prm_wdata)];
    let port_names: Vec<String> = fields.iter().map(|(n, _)| format!("{n}_o")).collect();
    for (pn, e) in port_names.iter().zip(&prm) {
        conns.push((pn.as_str(), e.clone()));
    }
    let param_table = p.param_layout().table;
    let tname = param_table.map_or("", |t| t.kind.name());
    let table = param_table.map(|t| b.wire(tname, Ty::u(t.bits()), if t.kind == TableKind::Scales { "basis-pair scales of every channel" } else { "codebook level table" }));
    let table_port = format!("{tname}_o");
    if let Some(t) = &table {
        conns.push((table_port.as_str(), t.clone()));
    }
    let levels = table.clone().filter(|_| p.codebook_bits.is_some());
    if p.param_ram() {
        conns.push(("col_next_i", col_next.clone().expect("parameter memories read the next column")));
    }
    b.instance(&units.params, "u_params", &conns);
    // running totals: the item the difference units get, its index, and whether it has a previous total
    let tot = p.running_totals.then(|| {
        let items = p.delta_items();
        let item = if p.delta_read_ahead() { ("item_next", "the index of the next one issued") } else { ("item", "its index within the tile") };
        (
            b.wire("item_v", Ty::bit(), "a running total is issued"),
            (items > 1).then(|| b.wire(item.0, Ty::u(clog2(u64::from(items))), item.1)),
            b.wire("fresh", Ty::bit(), "the first tile after reset: no previous totals"),
        )
    });
    let (item_out, item_in) = if p.delta_read_ahead() { ("item_next_o", "item_next_i") } else { ("item_o", "item_i") };
    let tot_conns = |acc_i: Expr, acc_o: Expr| -> Vec<(&'static str, Expr)> {
        let (v, item, fresh) = tot.clone().expect("running totals");
        let mut c = vec![("clk_i", clk.clone()), ("issue_i", v), ("fresh_i", fresh), ("acc_i", acc_i), ("acc_o", acc_o)];
        if let Some(i) = item {
            c.push((item_in, i));
        }
        c
    };
    b.instance(
        &units.ctrl,
        "u_ctrl",
        &[
            ("clk_i", clk.clone()),
            ("rst_i", rst.clone()),
            ("a_valid_i", a_valid),
            ("a_last_i", a_last),
            ("a_ready_o", a_ready),
            ("w_valid_i", w_valid),
            ("w_ready_o", w_ready),
            ("acc_en_o", acc_en.clone()),
            ("clr_o", clr.clone()),
            ("push_o", push.clone()),
            ("push_last_o", push_last.clone()),
            ("pop_i", pop),
        ]
        .into_iter()
        .chain(gather.clone().map(|g| ("gather_o", g)))
        .chain(col_sel.clone().map(|cs| ("col_o", cs)))
        .chain(col_next.clone().map(|cs| ("col_next_o", cs)))
        .chain(step.clone().map(|s| ("step_o", s)))
        .chain(neg.clone().map(|f| ("neg_o", f)))
        .chain(load.clone().map(|l| ("load_o", l)))
        .chain(std::iter::once(("shift_o", drain_shift.clone())))
        .chain(tot.iter().flat_map(|(v, item, fresh)| {
            [Some(("item_v_o", v.clone())), item.clone().map(|i| (item_out, i)), Some(("fresh_o", fresh.clone()))].into_iter().flatten()
        }))
        .collect::<Vec<_>>(),
    );
    b.instance(
        &units.outbuf,
        "u_outbuf",
        &[
            ("clk_i", clk.clone()),
            ("rst_i", rst.clone()),
            ("push_i", push),
            ("row_i", row.clone()),
            ("last_i", push_last),
            ("y_data_o", y_data),
            ("y_last_o", y_last),
            ("y_valid_o", y_valid.clone()),
            ("y_ready_i", y_ready.clone()),
        ],
    );
    b.instance(
        &units.array,
        "u_array",
        &[
            ("clk_i", clk.clone()),
            ("a_data_i", a_data),
            ("w_data_i", w_data),
            ("acc_en_i", acc_en),
            ("clr_i", clr),
            ("col_o", col.clone()),
        ]
        .into_iter()
        .chain(levels.map(|lv| ("levels_i", lv)))
        .chain(step.map(|s| ("step_i", s)))
        .chain(neg.map(|f| ("neg_i", f)))
        .chain(load.map(|l| ("load_i", l)))
        .chain(std::iter::once(("shift_i", drain_shift)))
        .collect::<Vec<_>>(),
    );
    if p.shared_output {
        b.comment("one output unit shared by all columns: select, clip/requantize, gather the row");
        let sfields = p.select_fields();
        let sel_ty = if p.bases.is_some() { Ty::u(hw) } else { Ty::s(aw) };
        let sel = b.wire("sel_acc", sel_ty, "the selected column's accumulator (P0)");
        let sel_fields: Vec<Expr> = sfields.iter().map(|(n, w)| b.wire(&format!("sel_{n}"), Ty::u(*w), "")).collect();
        let mut conns: Vec<(&str, Expr)> = vec![("clk_i", clk.clone()), ("acc_i", col.clone()), ("acc_o", sel.clone())];
        let in_names: Vec<String> = sfields.iter().map(|(n, _)| format!("{n}_i")).collect();
        let out_names: Vec<String> = sfields.iter().map(|(n, _)| format!("{n}_o")).collect();
        let selected_prm = if p.param_ram() { &[][..] } else { &prm[..] };
        let sources: Vec<Expr> = selected_prm.iter().cloned().chain(table.clone().filter(|_| p.bases.is_some())).collect();
        for i in 0..sfields.len() {
            conns.push((in_names[i].as_str(), sources[i].clone()));
            conns.push((out_names[i].as_str(), sel_fields[i].clone()));
        }
        if let Some(cs) = &col_sel {
            conns.push(("col_i", cs.clone()));
        }
        let select = units.select.as_ref().expect("a shared output unit has a select stage");
        b.instance(select, "u_select", &conns);
        let acc = match &units.combine {
            Some(comb) => {
                let acc = b.wire("comb_acc", Ty::s(aw), "the combined accumulator (C2)");
                let scales = sel_fields.last().expect("pair scales are selected with bases").clone();
                b.instance(comb, "u_combine", &[("clk_i", clk.clone()), ("d_i", sel), ("scale_i", scales), ("acc_o", acc.clone())]);
                acc
            }
            None => match &units.delta {
                Some(delta) => {
                    let acc = b.wire("tile_acc", Ty::s(aw), "the tile's sum of the selected PE (D2)");
                    b.instance(delta, "u_delta", &tot_conns(sel, acc.clone()));
                    acc
                }
                None => sel,
            },
        };
        let code = b.wire("code", Ty::u(ob), "the shared unit's output code");
        // each output stage takes its parameters with its value: after the combination (with bases),
        // and the requantizer two stages after the clip's input; delay them so each value meets its
        // own column's
        let stage_fields: Vec<Expr> = if p.param_ram() {
            // the parameter unit reads each field at its own stage
            prm.clone()
        } else {
            let mut st = Vec::new();
            let delays = p.param_field_delays();
            let f = (0..fields.len()).map(|i| delay(b, &fields[i].0, &sel_fields[i], delays[i], &mut st)).collect();
            if !st.is_empty() {
                b.always(&clk, st);
            }
            f
        };
        out_stage(b, &units.out, &clk, acc, stage_fields, code.clone(), "");
        let row_q = b.reg("row_q", Ty::u(c * ob), "row being gathered, column 0 lowest");
        let next = if c == 1 { code.clone() } else { Expr::concat(&[code.clone(), row_q.slice(c * ob - 1, ob)]) };
        b.always(&clk, vec![Stmt::when(gather.as_ref().expect("gather"), vec![Stmt::set(&row_q, &next)])]);
        b.assign(&row, &row_q);
    } else {
        b.generate_for("gc", c, "g_col", |b| {
            let part = |e: &Expr, w: u32| e.part(&format!("gc * {w}"), w, (c - 1) * w);
            let per: Vec<Expr> = (0..fields.len()).map(|i| part(&prm[i], fields[i].1)).collect();
            let acc = match (&units.combine, p.bases, &table) {
                (Some(comb), Some(bs), Some(table)) => {
                    let acc = b.wire("acc", Ty::s(aw), "the combined accumulator (C2)");
                    let conns = [("clk_i", clk.clone()), ("d_i", part(&col, hw)), ("scale_i", part(table, bs.pairs() * bs.scale_bits)), ("acc_o", acc.clone())];
                    b.instance(comb, "u_combine", &conns);
                    acc
                }
                _ => match &units.delta {
                    Some(delta) => {
                        let acc = b.wire("tile_acc", Ty::s(aw), "the tile's sum of the issued PE (D2)");
                        b.instance(delta, "u_delta", &tot_conns(part(&col, aw), acc.clone()));
                        acc
                    }
                    None => part(&col, aw),
                },
            };
            out_stage(b, &units.out, &clk, acc, per, part(&row, ob), "");
        });
    }
    m
}

/// Instantiate the output stage (clip + requantize, or thresholds) on `acc`, with this channel's
/// parameter fields in `param_fields` order, driving `code`.
fn out_stage(b: &mut Body, out: &OutStage, clk: &Expr, acc: Expr, fields: Vec<Expr>, code: Expr, _doc: &str) {
    match out {
        OutStage::Multiply { pact, requant } => {
            let xw = pact.ports().iter().find(|p| p.name == "x_o").expect("the clip's output").ty.width;
            let x = b.wire("x", Ty::u(xw), "clipped value (P1)");
            b.instance(pact, "u_pact", &[("clk_i", clk.clone()), ("acc_i", acc), ("bias_i", fields[0].clone()), ("alpha_i", fields[1].clone()), ("x_o", x.clone())]);
            b.instance(requant, "u_requant", &[("clk_i", clk.clone()), ("x_i", x), ("mult_i", fields[2].clone()), ("shift_i", fields[3].clone()), ("code_o", code)]);
        }
        OutStage::Logits(lg) => {
            b.instance(lg, "u_logit", &[("clk_i", clk.clone()), ("acc_i", acc), ("bias_i", fields[0].clone()), ("y_o", code)]);
        }
        OutStage::Thresholds(th) => {
            let width = fields.iter().map(|f| f.width()).sum();
            let t = b.wire("t", Ty::u(width), "this channel's thresholds");
            let per: Vec<Expr> = fields.into_iter().rev().collect();
            b.assign(&t, &Expr::concat(&per));
            b.instance(th, "u_thresh", &[("clk_i", clk.clone()), ("acc_i", acc), ("t_i", t), ("code_o", code)]);
        }
    }
}
