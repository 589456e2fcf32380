//! `<prefix>_ctrl`: control, beside the datapath: the stream join, tile tracking through the compute
//! pipeline, and the drain's sequencing and credits.
//!
//! Built in named pieces, in the order they appear in the emitted module: the ports
//! ([`CtrlPorts`]), the compute pipeline's tracking and the step acceptance ([`compute_pipeline`]),
//! the drain's issue with its credits and column counter ([`drain_issue`]), the drain pipeline's
//! flags and row counter ([`drain_pipeline`]), the running totals' item counter
//! ([`running_totals_items`]), then the registers' reset and update ([`registers`]) and the last
//! flags that travel with the data ([`last_flags`]). Control takes the whole [`HwParams`]: nearly
//! every option changes one of its ports or its sequencing.

use super::builders::shift_chain;
use super::HwParams;
use crate::rtl::{Body, Expr, Module, Stmt, Ty};
use qmac_arith::code::Encoding;
use qmac_arith::width::{clog2, unsigned_bits};

/// Control: joins the input streams, tracks tile boundaries through the compute pipeline, stalls it
/// while a finished tile waits for the hold registers, and runs the drain to the output stream.
pub fn ctrl(p: &HwParams) -> Module {
    let mut m = Module::new(&p.module("ctrl"));
    m.doc("Control: stream join, tile tracking, compute stall and drain sequencing.");
    m.doc("a_ready/w_ready depend on registers, the other stream's valid and a_last; y_ready only reaches the output buffer.");
    let io = CtrlPorts::declare(&mut m, p);
    let b = &mut m.body;
    let compute = compute_pipeline(b, p, &io);
    let issue = drain_issue(b, p, &io, &compute.hold_full);
    let drain = drain_pipeline(b, p, &io, &issue);
    let totals = running_totals_items(b, p, &io, &issue, &drain);
    registers(b, p, &io, &compute, &issue, &drain, totals.as_ref());
    last_flags(b, p, &io, &compute, &issue, &drain);
    m
}

/// The control unit's ports; the optional ones exist only with the option that needs them.
struct CtrlPorts {
    clk: Expr,
    rst: Expr,
    a_valid: Expr,
    a_last: Expr,
    a_ready: Expr,
    w_valid: Expr,
    w_ready: Expr,
    acc_en_o: Expr,
    clr_o: Expr,
    /// With hold registers ([`HwParams::double_buffer`]).
    load_o: Option<Expr>,
    shift_o: Expr,
    push_o: Expr,
    push_last_o: Expr,
    pop: Expr,
    /// Bit-serial activations.
    step_o: Option<Expr>,
    /// Bit-serial two's complement activations.
    neg_o: Option<Expr>,
    /// Width of the shared output unit's column number (0 with one unit per column, or one column).
    cbw: u32,
    /// With a shared output unit.
    gather_o: Option<Expr>,
    /// With a shared output unit over several columns.
    sel_o: Option<Expr>,
    /// With the parameters in memories ([`HwParams::param_ram`]).
    sel_next_o: Option<Expr>,
    /// With running totals: the item valid, its index (with several items per tile), fresh.
    tot_o: Option<(Expr, Option<Expr>, Expr)>,
}

impl CtrlPorts {
    fn declare(m: &mut Module, p: &HwParams) -> CtrlPorts {
        let clk = m.input("clk_i", Ty::bit(), "clock");
        let rst = m.input("rst_i", Ty::bit(), "synchronous reset");
        let a_valid = m.input("a_valid_i", Ty::bit(), "");
        let a_last = m.input("a_last_i", Ty::bit(), "");
        let a_ready = m.output("a_ready_o", Ty::bit(), "");
        let w_valid = m.input("w_valid_i", Ty::bit(), "");
        let w_ready = m.output("w_ready_o", Ty::bit(), "");
        let acc_en_o = m.output("acc_en_o", Ty::bit(), "a valid dot product is ready: accumulate it");
        let clr_o = m.output("clr_o", Ty::bit(), "clear the accumulators: a tile ends, or reset");
        let load_o = p.double_buffer.then(|| m.output("load_o", Ty::bit(), "the dot product ends a tile: load the hold registers"));
        let shift_o = m.output("shift_o", Ty::bit(), "issue one row into the drain; shift the hold registers");
        let push_o = m.output("push_o", Ty::bit(), "a row leaves the drain pipeline into the output buffer");
        let push_last_o = m.output("push_last_o", Ty::bit(), "that row is the last of its tile");
        let pop = m.input("pop_i", Ty::bit(), "a row leaves the output buffer (y_valid && y_ready)");
        let step_o = p.serial.then(|| m.output("step_o", Ty::bit(), "a step is accepted: load the input registers"));
        let serial_neg = p.serial && p.act_enc == Encoding::Int;
        let neg_o = serial_neg.then(|| m.output("neg_o", Ty::bit(), "the bit plane entering S1 is a two's complement sign bit"));
        let cbw = if p.shared_output { clog2(u64::from(p.cols)) } else { 0 };
        let gather_o = p.shared_output.then(|| m.output("gather_o", Ty::bit(), "a code leaves the shared output unit: gather it into the row"));
        let sel_o = (cbw > 0).then(|| m.output("col_o", Ty::u(cbw), "the column issued into the shared output unit"));
        let sel_next_o = p.param_ram().then(|| m.output("col_next_o", Ty::u(cbw), "the column issued next, if any is: col_o of the next cycle"));
        let ib = clog2(u64::from(p.delta_items()));
        let tot_o = p.running_totals.then(|| {
            (
                m.output("item_v_o", Ty::bit(), "running totals: a value is issued to the difference unit"),
                (p.delta_items() > 1).then(|| {
                    if p.delta_read_ahead() {
                        m.output("item_next_o", Ty::u(ib), "the index within the tile of the next value issued: item_o of the next cycle")
                    } else {
                        m.output("item_o", Ty::u(ib), "its index within the tile")
                    }
                }),
                m.output("fresh_o", Ty::bit(), "it belongs to the first tile after reset"),
            )
        });
        CtrlPorts {
            clk,
            rst,
            a_valid,
            a_last,
            a_ready,
            w_valid,
            w_ready,
            acc_en_o,
            clr_o,
            load_o,
            shift_o,
            push_o,
            push_last_o,
            pop,
            step_o,
            neg_o,
            cbw,
            gather_o,
            sel_o,
            sel_next_o,
            tot_o,
        }
    }
}

/// Bit-serial activations: S1 holds one step for `act_bits` cycles.
struct SerialPlanes {
    /// `bit_q`: the bit plane of the step in S1.
    bit: Expr,
    /// S1 holds the step's last plane.
    e1: Expr,
    /// The last-plane flag at each stage, `e[0] = e1`.
    e: Vec<Expr>,
}

/// The compute pipeline's tracking.
struct Compute {
    /// Valid flags of stages S1.. (`v[top]` holds the step's dot product).
    v: Vec<Expr>,
    /// Last-step flags of the same stages.
    l: Vec<Expr>,
    top: usize,
    serial: Option<SerialPlanes>,
    hold_full: Expr,
    /// A step is accepted.
    fire: Expr,
    /// The hold registers load (and, without running totals, the accumulators clear).
    load: Expr,
    /// With `load` a register: its next value.
    load_next: Option<Expr>,
}

/// The compute pipeline: valid and last flags per stage, the bit-serial plane counter, the step
/// acceptance (a tile's last step only when its sum will find the hold registers free), the
/// readies, and the accumulators' enable, load and clear.
fn compute_pipeline(b: &mut Body, p: &HwParams, io: &CtrlPorts) -> Compute {
    b.comment(&format!("compute pipeline: S1..S{} valid/last (S{} holds the step's dot product)", p.compute_stages() - 1, p.compute_stages() - 1));
    let nv = p.compute_stages() - 1;
    let v: Vec<Expr> = (1..=nv).map(|i| b.reg(&format!("v{i}_q"), Ty::bit(), if i == 1 { "S1 holds a step" } else { "" })).collect();
    let l: Vec<Expr> = (1..=nv).map(|i| b.reg(&format!("l{i}_q"), Ty::bit(), if i == 1 { "S1 step is the last of its tile" } else { "" })).collect();
    let top = nv as usize - 1;
    // bit-serial: S1 holds one step for act_bits cycles (bit_q counts them, least significant first);
    // the flag e (the step's last bit plane) travels with each cycle's plane
    let serial = p.serial.then(|| {
        let ab = p.act_bits;
        let bw = clog2(u64::from(ab)).max(1);
        let bit = b.reg("bit_q", Ty::u(bw), "bit plane of the step in S1, 0 = least significant");
        let e1 = b.net("e1", &bit.eq(&Expr::lit(i128::from(ab - 1), Ty::u(bw))), "S1 holds the step's last (most significant) plane");
        let mut e = vec![e1.clone()];
        // up to the stage below the top: the top stage's load condition is the register load_q (with
        // running totals, computed from the top stage)
        let upto = if p.running_totals { nv + 1 } else { nv.max(2) };
        e.extend((2..upto).map(|i| b.reg(&format!("e{i}_q"), Ty::bit(), "")));
        SerialPlanes { bit, e1, e }
    });
    let hold_full = b.reg("hold_full_q", Ty::bit(), "the hold registers hold a tile not yet drained");
    // The compute pipeline has no enable. A tile's last step is admitted only when no other last step is
    // in flight and the hold registers are free: nothing can fill them before this step reaches S4.
    let mut lif = v[0].land(&l[0]);
    for i in 1..=top {
        lif = lif.lor(&v[i].land(&l[i]));
    }
    // running totals load the hold registers a cycle after the top stage: that cycle is in flight too
    let load_reg = p.running_totals.then(|| b.reg("load_q", Ty::bit(), "a tile's last step was accumulated last cycle: load the hold registers"));
    if let Some(lq) = &load_reg {
        lif = lif.lor(lq);
    }
    let last_in_flight = b.net("last_in_flight", &lif, "");
    let can_finish = b.net("can_finish", &hold_full.lor(&last_in_flight).lnot(), "a last step may enter");
    // with hold registers only a tile's last step waits for them; without, every step waits while a
    // tile's last step is in flight or the accumulators drain
    let tile_ok = if p.double_buffer { io.a_last.lnot().lor(&can_finish) } else { can_finish.clone() };
    let ok = match &serial {
        // a bit-serial step is accepted when S1 is free or in its last cycle
        Some(s) => b.net("step_ok", &tile_ok.land(&v[0].lnot().lor(&s.e1)), ""),
        None => b.net("step_ok", &tile_ok, ""),
    };
    let fire = b.net("fire", &io.a_valid.land(&io.w_valid).land(&ok), "a step is accepted");
    b.assign(&io.a_ready, &io.w_valid.land(&ok));
    b.assign(&io.w_ready, &io.a_valid.land(&ok));
    b.assign(&io.acc_en_o, &v[top]);
    if let Some(s) = &serial {
        if let Some(step_o) = &io.step_o {
            b.assign(step_o, &fire);
        }
        if let Some(neg_o) = &io.neg_o {
            // the sign plane enters S1 next: a one-bit step is accepted, or S1 moves to the top bit
            let ab = p.act_bits;
            let into_top = if ab >= 2 { v[0].land(&s.bit.eq(&Expr::lit(i128::from(ab - 2), Ty::u(s.bit.width())))) } else { Expr::lit(0, Ty::bit()) };
            let n = if ab == 1 { fire.clone() } else { fire.lnot().land(&into_top) };
            b.assign(neg_o, &n);
        }
    }
    // a tile's last step (for a bit-serial step: its last plane) at stage i
    let ends_tile = |i: usize| match &serial {
        Some(s) => v[i].land(&s.e[i]).land(&l[i]),
        None => v[i].land(&l[i]),
    };
    // at the top stage; a register computed from the stage below when there is one, since it reaches
    // every accumulator's clear and enable
    let (load_next, load) = match load_reg {
        // running totals: a cycle after the top stage
        Some(lq) => (Some(ends_tile(top)), lq),
        None if top == 0 => (None, b.net("load", &ends_tile(0), "")),
        None => (Some(ends_tile(top - 1)), b.reg("load_q", Ty::bit(), "a tile's last step is at the top stage")),
    };
    match &io.load_o {
        // running totals are never cleared between tiles
        Some(load_o) if !p.running_totals => {
            b.assign(load_o, &load);
            b.assign(&io.clr_o, &io.rst.lor(&load));
        }
        Some(load_o) => {
            b.assign(load_o, &load);
            b.assign(&io.clr_o, &io.rst);
        }
        None => b.assign(&io.clr_o, &io.rst),
    }
    Compute { v, l, top, serial, hold_full, fire, load, load_next }
}

/// The drain's issue: what goes into the drain pipeline this cycle.
struct Issue {
    /// `occ_q`: rows issued and not yet popped (the credits in use).
    occ: Expr,
    /// A value (one column, with a shared unit) or a row enters the drain.
    issue: Expr,
    /// A row starts: it takes a credit.
    row_issue: Expr,
    /// A row's last column is issued: the hold registers shift.
    shift: Expr,
    /// With a shared unit over several columns: `col_q` and its last-column flag.
    col: Option<(Expr, Expr)>,
    /// With a shared unit over several columns: the shift, registered a cycle ahead.
    shift_q: Option<Expr>,
}

/// The drain's issue: credits against the output buffer's depth, and with a shared output unit the
/// column counter (a row's columns are issued one per cycle) and the shift enable a cycle ahead.
fn drain_issue(b: &mut Body, p: &HwParams, io: &CtrlPorts, hold_full: &Expr) -> Issue {
    let cbw = io.cbw;
    b.comment(&format!("drain: hold registers -> output stage ({} register stages) -> output buffer", p.drain_stages()));
    // Credits: rows issued and not yet popped never exceed the output buffer's depth, so the drain
    // pipeline runs free and never drops a row; `issue` depends on registers only.
    let depth = p.outbuf_depth();
    let ow = unsigned_bits(u128::from(depth));
    let occ = b.reg("occ_q", Ty::u(ow), "rows issued and not yet popped");
    let room = b.net("room", &occ.lt(&Expr::lit(i128::from(depth), Ty::u(ow))), "");
    // with a shared output unit, a row's columns are issued one per cycle; credits are taken per row
    let (col_first, col) = if cbw > 0 {
        let col = b.reg("col_q", Ty::u(cbw), "next column to issue");
        let first = b.net("col_first", &col.eq(&Expr::zero(Ty::u(cbw))), "");
        let last = b.net("col_last", &col.eq(&Expr::lit(i128::from(p.cols - 1), Ty::u(cbw))), "");
        (first, Some((col, last)))
    } else {
        (Expr::lit(1, Ty::bit()), None)
    };
    let issue = if cbw > 0 {
        b.net("issue", &hold_full.land(&room.lor(&col_first.lnot())), "one value into the drain")
    } else {
        b.net("issue", &hold_full.land(&room), "one row into the drain")
    };
    let (row_issue, shift) = match &col {
        Some((_, col_last)) => (b.net("row_issue", &issue.land(&col_first), "a row starts: take a credit"), b.net("row_done", &issue.land(col_last), "a row's last column is issued")),
        None => (issue.clone(), issue.clone()),
    };
    if let (Some(sel_o), Some((col, _))) = (&io.sel_o, &col) {
        b.assign(sel_o, col);
    }
    // A shared unit over several columns issues a started row's remaining columns without waiting, so
    // the shift at its last column is known a cycle ahead: the hold registers' shift enable, which
    // reaches every PE, comes from a register instead of the issue logic.
    let shift_q = (cbw > 0 && p.cols >= 2).then(|| {
        let q = b.reg("shift_q", Ty::bit(), "row_done, a cycle ahead: a row's last column always issues");
        b.assign(&io.shift_o, &q);
        q
    });
    if shift_q.is_none() {
        b.assign(&io.shift_o, &shift);
    }
    Issue { occ, issue, row_issue, shift, col, shift_q }
}

/// The drain pipeline's flags and the row counter.
struct Drain {
    /// Valid flags of the drain stages P1..
    dv: Vec<Expr>,
    /// Last-row flags of the same stages.
    dl: Vec<Expr>,
    /// With a shared unit over several columns: last-column flags of the same stages.
    dc: Vec<Expr>,
    /// With a shared unit: `push_q`, `push_last_q` and the row-complete condition.
    gathered: Option<(Expr, Expr, Expr)>,
    occ_up: Expr,
    occ_dn: Expr,
    /// With several rows: `row_q` and its update.
    row: Option<(Expr, Vec<Stmt>)>,
    /// The row issued is the tile's last.
    row_last: Expr,
    /// The tile's last row is issued.
    done: Expr,
}

/// The drain pipeline: valid, last-row and last-column flags through the drain stages, the push
/// into the output buffer (after gathering a row, with a shared unit), and the row counter.
fn drain_pipeline(b: &mut Body, p: &HwParams, io: &CtrlPorts, issue: &Issue) -> Drain {
    let (cbw, rb) = (io.cbw, p.row_count_bits());
    let ds = p.drain_stages();
    let dv: Vec<Expr> = (1..=ds).map(|i| b.reg(&format!("dv{i}_q"), Ty::bit(), if i == 1 { "P1 holds a row" } else { "" })).collect();
    let dl: Vec<Expr> = (1..=ds).map(|i| b.reg(&format!("dl{i}_q"), Ty::bit(), if i == 1 { "P1 row is the last of its tile" } else { "" })).collect();
    let dc: Vec<Expr> = if cbw > 0 { (1..=ds).map(|i| b.reg(&format!("dc{i}_q"), Ty::bit(), if i == 1 { "P1 value is the row's last column" } else { "" })).collect() } else { Vec::new() };
    let (dvl, dll) = (dv[dv.len() - 1].clone(), dl[dl.len() - 1].clone());
    let gathered = if let Some(g) = &io.gather_o {
        b.assign(g, &dvl);
        let push_q = b.reg("push_q", Ty::bit(), "the gathered row is complete");
        let push_last_q = b.reg("push_last_q", Ty::bit(), "");
        b.assign(&io.push_o, &push_q);
        b.assign(&io.push_last_o, &push_last_q);
        let complete = if cbw > 0 { dvl.land(&dc[dc.len() - 1]) } else { dvl.clone() };
        Some((push_q, push_last_q, complete))
    } else {
        b.assign(&io.push_o, &dvl);
        b.assign(&io.push_last_o, &dll);
        None
    };
    let one_w = Expr::lit(1, issue.occ.ty());
    let occ_up = b.net("occ_up", &issue.occ.add(&one_w), "");
    let occ_dn = b.net("occ_dn", &issue.occ.sub(&one_w), "");
    let (row_last, row) = if rb == 0 {
        (Expr::lit(1, Ty::bit()), None)
    } else {
        let row = b.reg("row_q", Ty::u(rb), "next row to issue");
        let last = b.net("row_last", &row.eq(&Expr::lit(i128::from(p.rows - 1), Ty::u(rb))), "");
        let st = vec![Stmt::when(
            &issue.shift,
            vec![Stmt::set(&row, &Expr::mux(&last, &Expr::zero(Ty::u(rb)), &row.add(&Expr::lit(1, Ty::u(rb)))))],
        )];
        (last, Some((row, st)))
    };
    let done = b.net("drain_done", &issue.shift.land(&row_last), "the last row of the tile is issued");
    Drain { dv, dl, dc, gathered, occ_up, occ_dn, row, row_last, done }
}

/// Running totals: `fresh_q`, and with its own item counter, the counter and its update.
struct Totals {
    fresh: Expr,
    counter: Option<(Expr, Stmt)>,
}

/// Running totals: which item the difference unit gets (the row counter, or per value a counter of
/// its own, read a cycle ahead with [`HwParams::delta_read_ahead`]), and whether the tile is the
/// first after reset.
fn running_totals_items(b: &mut Body, p: &HwParams, io: &CtrlPorts, issue: &Issue, drain: &Drain) -> Option<Totals> {
    let (cbw, items) = (io.cbw, p.delta_items());
    let ib = clog2(u64::from(items));
    // running totals: which item the difference unit gets, and whether the tile is the first after reset
    io.tot_o.as_ref().map(|(item_v_o, item_o, fresh_o)| {
        let per_item = if cbw > 0 { issue.issue.clone() } else { issue.shift.clone() };
        b.assign(item_v_o, &per_item);
        let fresh = b.reg("fresh_q", Ty::bit(), "no tile has drained since reset: no previous totals");
        b.assign(fresh_o, &fresh);
        let counter = item_o.as_ref().map(|item_o| {
            // one item per row (the row counter), or per value (a counter of its own)
            let (item, last, counter) = if cbw == 0 {
                (drain.row.as_ref().map(|r| r.0.clone()).expect("several rows have a row counter"), drain.row_last.clone(), None)
            } else {
                let item = b.reg("item_q", Ty::u(ib), "index of the next value issued within the tile");
                let last = b.net("item_last", &item.eq(&Expr::lit(i128::from(items - 1), Ty::u(ib))), "");
                (item.clone(), last, Some(item))
            };
            let next = Expr::mux(&last, &Expr::zero(Ty::u(ib)), &item.add(&Expr::lit(1, Ty::u(ib))));
            if p.delta_read_ahead() {
                b.assign(item_o, &Expr::mux(&io.rst, &Expr::zero(Ty::u(ib)), &Expr::mux(&per_item, &next, &item)));
            } else {
                b.assign(item_o, &item);
            }
            counter.map(|c| (c.clone(), Stmt::when(&issue.issue, vec![Stmt::set(&c, &next)])))
        });
        Totals { fresh, counter: counter.flatten() }
    })
}

/// The control registers' synchronous reset and update, in one clocked block.
fn registers(b: &mut Body, p: &HwParams, io: &CtrlPorts, c: &Compute, issue: &Issue, d: &Drain, tot: Option<&Totals>) {
    let cbw = io.cbw;
    let zero = Expr::lit(0, Ty::bit());
    let one = Expr::lit(1, Ty::bit());
    let mut reset = vec![Stmt::set(&c.hold_full, &zero), Stmt::set(&issue.occ, &Expr::zero(issue.occ.ty()))];
    reset.extend(d.dv.iter().map(|r| Stmt::set(r, &zero)));
    reset.extend(c.v.iter().map(|r| Stmt::set(r, &zero)));
    if c.load_next.is_some() {
        reset.push(Stmt::set(&c.load, &zero));
    }
    if let Some((row, _)) = &d.row {
        reset.push(Stmt::set(row, &Expr::zero(row.ty())));
    }
    if let Some((col, _)) = &issue.col {
        reset.push(Stmt::set(col, &Expr::zero(Ty::u(cbw))));
    }
    if let Some((push_q, _, _)) = &d.gathered {
        reset.push(Stmt::set(push_q, &zero));
    }
    if let Some(q) = &issue.shift_q {
        reset.push(Stmt::set(q, &zero));
    }
    if let Some(t) = tot {
        reset.push(Stmt::set(&t.fresh, &one));
        if let Some((item, _)) = &t.counter {
            reset.push(Stmt::set(item, &Expr::zero(item.ty())));
        }
    }
    let (row_issue, pop) = (&issue.row_issue, &io.pop);
    let mut run = vec![
        Stmt::when_else(&c.load, vec![Stmt::set(&c.hold_full, &one)], vec![Stmt::when(&d.done, vec![Stmt::set(&c.hold_full, &zero)])]),
        Stmt::when_else(
            &row_issue.land(&pop.lnot()),
            vec![Stmt::set(&issue.occ, &d.occ_up)],
            vec![Stmt::when(&pop.land(&row_issue.lnot()), vec![Stmt::set(&issue.occ, &d.occ_dn)])],
        ),
    ];
    run.extend(shift_chain(&issue.issue, &d.dv[..d.dv.len() - 1], &d.dv[d.dv.len() - 1]));
    if let Some(n) = &c.load_next {
        run.push(Stmt::set(&c.load, n));
    }
    let (v, top) = (&c.v, c.top);
    match &c.serial {
        Some(SerialPlanes { bit, e1, .. }) => {
            // S1 stays valid for the step's act_bits cycles
            let bw = bit.width();
            run.push(Stmt::when_else(
                &c.fire,
                vec![Stmt::set(&v[0], &one), Stmt::set(bit, &Expr::zero(Ty::u(bw)))],
                vec![Stmt::when(&v[0], vec![Stmt::when_else(e1, vec![Stmt::set(&v[0], &zero)], vec![Stmt::set(bit, &bit.add(&Expr::lit(1, Ty::u(bw))))])])],
            ));
            if top > 0 {
                run.extend(shift_chain(&v[0], &v[1..top], &v[top]));
            }
        }
        None => run.extend(shift_chain(&c.fire, &v[..top], &v[top])),
    }
    if let Some((_, st)) = &d.row {
        run.extend(st.iter().cloned());
    }
    if let Some((col, col_last)) = &issue.col {
        let next = Expr::mux(col_last, &Expr::zero(Ty::u(cbw)), &col.add(&Expr::lit(1, Ty::u(cbw))));
        run.push(Stmt::when(&issue.issue, vec![Stmt::set(col, &next)]));
        if let Some(q) = &issue.shift_q {
            // issuing the last column but one: the last one issues in the next cycle
            run.push(Stmt::set(q, &issue.issue.land(&col.eq(&Expr::lit(i128::from(p.cols - 2), Ty::u(cbw))))));
        }
        if let Some(o) = &io.sel_next_o {
            let n = Expr::mux(&io.rst, &Expr::zero(Ty::u(cbw)), &Expr::mux(&issue.issue, &next, col));
            b.assign(o, &n);
        }
    }
    if let Some((push_q, _, complete)) = &d.gathered {
        run.push(Stmt::set(push_q, complete));
    }
    if let Some(t) = tot {
        run.push(Stmt::when(&d.done, vec![Stmt::set(&t.fresh, &zero)]));
        if let Some((_, st)) = &t.counter {
            run.push(st.clone());
        }
    }
    b.always(&io.clk, vec![Stmt::when_else(&io.rst, reset, run)]);
}

/// The last flags that travel with the steps (and bit planes) and the drained rows, unreset.
fn last_flags(b: &mut Body, p: &HwParams, io: &CtrlPorts, c: &Compute, issue: &Issue, d: &Drain) {
    let (l, top) = (&c.l, c.top);
    b.comment("last flags travel with the steps and rows; they need no reset (qualified by the valid bits)");
    let mut flags = match &c.serial {
        Some(SerialPlanes { e1, e, .. }) => {
            // the last flag is held in S1 for the whole step
            let mut st = vec![Stmt::when(&c.fire, vec![Stmt::set(&l[0], &io.a_last)])];
            if top > 0 {
                st.extend(shift_chain(&l[0], &l[1..top], &l[top]));
                let etop = if p.running_totals { top } else { top - 1 };
                if etop > 0 {
                    st.extend(shift_chain(e1, &e[1..etop], &e[etop]));
                }
            }
            st
        }
        None => shift_chain(&io.a_last, &l[..top], &l[top]),
    };
    let (dl, dc) = (&d.dl, &d.dc);
    flags.extend(shift_chain(&d.done, &dl[..dl.len() - 1], &dl[dl.len() - 1]));
    if let Some((_, col_last)) = &issue.col {
        flags.extend(shift_chain(col_last, &dc[..dc.len() - 1], &dc[dc.len() - 1]));
    }
    if let Some((_, push_last_q, complete)) = &d.gathered {
        flags.push(Stmt::set(push_last_q, &complete.land(&dl[dl.len() - 1])));
    }
    b.always(&io.clk, flags);
}
