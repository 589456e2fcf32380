//! `<prefix>_outbuf`: the output buffer, a FIFO of rows between the drain and the output stream, in
//! registers or (with a shared output unit) in a memory; and the [`Fifo`] bookkeeping both forms use.

use super::HwParams;
use crate::rtl::{Body, Expr, Module, Stmt, Ty};
use qmac_arith::width::{clog2, unsigned_bits};

/// What the output buffer depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutbufParams {
    /// Module name.
    pub name: String,
    /// Width of a row of output codes (`cols * out_bits`).
    pub row_bits: u32,
    /// Rows held ([`HwParams::outbuf_depth`]).
    pub depth: u32,
    /// The rows are in a memory ([`HwParams::outbuf_ram`]).
    pub ram: bool,
    /// What that memory is built from.
    pub mem_style: crate::rtl::MemStyle,
}

impl HwParams {
    /// The output buffer's parameters.
    pub fn outbuf_params(&self) -> OutbufParams {
        OutbufParams { name: self.module("outbuf"), row_bits: self.cols * self.out_bits, depth: self.outbuf_depth(), ram: self.outbuf_ram(), mem_style: self.mem_style }
    }
}

/// The output buffer: a FIFO of `outbuf_depth` rows between the free-running drain pipeline and the
/// output stream, so `y_ready` reaches only this buffer and the control's credit counter.
pub fn outbuf(p: &OutbufParams) -> Module {
    let rw = p.row_bits;
    let depth = p.depth;
    let w = rw + 1;
    let pw = clog2(u64::from(depth)).max(1);
    let cw = unsigned_bits(u128::from(depth));
    let mut m = Module::new(&p.name);
    m.doc(&format!("Output buffer: a {depth}-row FIFO of {{last, row}}; y_valid comes from a register."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let rst = m.input("rst_i", Ty::bit(), "synchronous reset: empty");
    let push = m.input("push_i", Ty::bit(), "write a row");
    let row = m.input("row_i", Ty::u(rw), "the row");
    let last = m.input("last_i", Ty::bit(), "the row is the last of its tile");
    let y_data = m.output("y_data_o", Ty::u(rw), "");
    let y_last = m.output("y_last_o", Ty::bit(), "");
    let y_valid = m.output("y_valid_o", Ty::bit(), "");
    let y_ready = m.input("y_ready_i", Ty::bit(), "");
    if p.ram {
        m.doc("Rows in a memory; the head row in the memory's read register (a row is readable the cycle after its write).");
        outbuf_ram(&mut m.body, depth, p.mem_style, [clk, rst, push, row, last, y_data, y_last, y_valid, y_ready]);
        return m;
    }
    let b = &mut m.body;
    let f = Fifo::declare(b, depth, "rows held");
    let (count, wp, rp) = (f.count.clone(), f.wp.clone(), f.rp.clone());
    let entries: Vec<Expr> = (0..depth).map(|i| b.reg(&format!("mem{i}_q"), Ty::u(w), "")).collect();
    let nonempty = b.net("nonempty", &count.eq(&Expr::zero(Ty::u(cw))).lnot(), "");
    b.assign(&y_valid, &nonempty);
    let pop = b.net("pop", &nonempty.land(&y_ready), "");
    let entry = b.net("entry", &Expr::concat(&[last, row]), "");
    // read: a balanced tree of 2:1 selects on the read pointer's bits, least significant first
    let mut level = entries.clone();
    let mut bit = 0;
    while level.len() > 1 {
        level = level.chunks(2).map(|p| if p.len() == 2 { Expr::mux(&rp.bit(bit), &p[1], &p[0]) } else { p[0].clone() }).collect();
        bit += 1;
    }
    let head = b.net("head", &level[0], "the oldest row");
    b.assign(&y_data, &head.slice(rw - 1, 0));
    b.assign(&y_last, &head.bit(rw));
    let mut writes = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        writes.push(Stmt::when(&push.land(&wp.eq(&Expr::lit(i as i128, Ty::u(pw)))), vec![Stmt::set(e, &entry)]));
    }
    b.always(&clk, writes);
    b.always(&clk, vec![Stmt::when_else(&rst, f.reset(), f.advance(&push, &pop))]);
    m
}

/// A FIFO's bookkeeping: `count_q` entries held, and write and read pointers that wrap at `depth`.
struct Fifo {
    depth: u32,
    count: Expr,
    wp: Expr,
    rp: Expr,
}

impl Fifo {
    fn declare(b: &mut Body, depth: u32, count_doc: &str) -> Fifo {
        let pw = clog2(u64::from(depth)).max(1);
        let count = b.reg("count_q", Ty::u(unsigned_bits(u128::from(depth))), count_doc);
        let wp = b.reg("wp_q", Ty::u(pw), "write pointer");
        let rp = b.reg("rp_q", Ty::u(pw), "read pointer");
        Fifo { depth, count, wp, rp }
    }
    /// Empty.
    fn reset(&self) -> Vec<Stmt> {
        [&self.count, &self.wp, &self.rp].iter().map(|r| Stmt::set(r, &Expr::zero(r.ty()))).collect()
    }
    /// `push` writes an entry, `pop` removes one; both may happen in one cycle.
    fn advance(&self, push: &Expr, pop: &Expr) -> Vec<Stmt> {
        let pt = self.wp.ty();
        let wrap = |ptr: &Expr| Expr::mux(&ptr.eq(&Expr::lit(i128::from(self.depth - 1), pt)), &Expr::zero(pt), &ptr.add(&Expr::lit(1, pt)));
        let one = Expr::lit(1, self.count.ty());
        vec![
            Stmt::when(push, vec![Stmt::set(&self.wp, &wrap(&self.wp))]),
            Stmt::when(pop, vec![Stmt::set(&self.rp, &wrap(&self.rp))]),
            Stmt::when_else(
                &push.land(&pop.lnot()),
                vec![Stmt::set(&self.count, &self.count.add(&one))],
                vec![Stmt::when(&pop.land(&push.lnot()), vec![Stmt::set(&self.count, &self.count.sub(&one))])],
            ),
        ]
    }
}

/// The output buffer in a memory: `count_q` counts the rows written in earlier cycles and not yet
/// read, so a read never meets a write to the same word (the read pointer equals the write pointer
/// only when the memory is empty or full, and the control's credits never push into a full buffer).
/// The head row waits in the memory's read register `head_q`, loaded when it is empty or popped.
fn outbuf_ram(b: &mut Body, depth: u32, style: crate::rtl::MemStyle, ports: [Expr; 9]) {
    let [clk, rst, push, row, last, y_data, y_last, y_valid, y_ready] = ports;
    let w = row.width() + 1;
    let mem = b.memory("rows_mem", w, depth, style, "{last, row}");
    let f = Fifo::declare(b, depth, "rows in the memory, written in earlier cycles");
    let head_v = b.reg("head_v_q", Ty::bit(), "head_q holds a row");
    let head = b.reg("head_q", Ty::u(w), "the oldest row, read from the memory");
    b.assign(&y_valid, &head_v);
    b.assign(&y_data, &head.slice(w - 2, 0));
    b.assign(&y_last, &head.bit(w - 1));
    let stored = b.net("stored", &f.count.eq(&Expr::zero(f.count.ty())).lnot(), "the memory holds a row");
    let take = b.net("take", &stored.land(&head_v.lnot().lor(&y_ready)), "read the next row into head_q");
    let entry = b.net("entry", &Expr::concat(&[last, row]), "");
    b.always(&clk, vec![Stmt::when(&push, vec![Stmt::set(&mem.word(&f.wp), &entry)])]);
    b.always(&clk, vec![Stmt::when(&take, vec![Stmt::set(&head, &mem.word(&f.rp))])]);
    let zero = Expr::lit(0, Ty::bit());
    let mut reset = f.reset();
    reset.push(Stmt::set(&head_v, &zero));
    let mut run = f.advance(&push, &take);
    run.push(Stmt::when_else(&take, vec![Stmt::set(&head_v, &Expr::lit(1, Ty::bit()))], vec![Stmt::when(&y_ready, vec![Stmt::set(&head_v, &zero)])]));
    b.always(&clk, vec![Stmt::when_else(&rst, reset, run)]);
}
