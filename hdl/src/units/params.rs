//! `<prefix>_params`: the per-channel parameters written through the parameter-load interface, in
//! registers or memories, and the run-time table (codebook levels or basis-pair scales).

use super::HwParams;
use crate::rtl::{Expr, Module, Stmt, Ty};
use qmac_arith::width::clog2;

/// What the parameter unit depends on: the address map and where the values go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// Module name.
    pub name: String,
    /// Channels.
    pub cols: u32,
    /// Parameter address width.
    pub addr_bits: u32,
    /// Parameter data width.
    pub data_bits: u32,
    /// The per-channel fields in address order, with their widths ([`HwParams::param_fields`]).
    pub fields: Vec<(String, u32)>,
    /// The run-time table in the upper half of the address space, if there is one.
    pub table: Option<Table>,
    /// With the fields in memories read at a shared unit's issued column ([`HwParams::param_ram`]):
    /// each field's delay from the select stage to its use ([`HwParams::param_field_delays`]).
    pub memories: Option<Vec<u32>>,
    /// What the memories are built from.
    pub mem_style: crate::rtl::MemStyle,
}

/// The run-time table of a parameter unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Codebook levels or basis-pair scales.
    pub kind: TableKind,
    /// Entries ([`HwParams::table_entries`]).
    pub entries: u32,
    /// Width of one entry ([`HwParams::table_entry_bits`]).
    pub entry_bits: u32,
}

/// What a run-time table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// Codebook weight levels.
    Levels,
    /// Basis-pair scales, `pairs` per channel.
    Scales,
}

impl TableKind {
    /// The table's signal name.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Levels => "levels",
            TableKind::Scales => "scales",
        }
    }
}

impl Table {
    /// Bits of the whole table.
    pub fn bits(&self) -> u32 {
        self.entries * self.entry_bits
    }
}

impl HwParams {
    /// The parameter unit's layout.
    pub fn param_layout(&self) -> ParamLayout {
        let kind = if self.bases.is_some() { TableKind::Scales } else { TableKind::Levels };
        ParamLayout {
            name: self.module("params"),
            cols: self.cols,
            addr_bits: self.prm_addr_bits,
            data_bits: self.prm_data_bits,
            fields: self.param_fields(),
            table: (self.table_entries() > 0).then(|| Table { kind, entries: self.table_entries(), entry_bits: self.table_entry_bits() }),
            memories: self.param_ram().then(|| self.param_field_delays()),
            mem_style: self.mem_style,
        }
    }
}

/// Per-channel parameter registers written through the parameter-load interface, and the run-time table
/// (codebook levels or basis-pair scales) in the address region above them.
pub fn params(p: &ParamLayout) -> Module {
    let (c, pa, pd) = (p.cols, p.addr_bits, p.data_bits);
    let fields = &p.fields;
    assert!(fields.len() <= 4, "at most four fields per channel");
    let n = p.table.map_or(0, |t| t.entries);
    let scales = p.table.is_some_and(|t| t.kind == TableKind::Scales);
    let mut m = Module::new(&p.name);
    let names: Vec<String> = fields.iter().enumerate().map(|(i, (n, _))| format!("{i} {n}")).collect();
    m.doc(&format!("Per-channel parameters; address = channel * 4 + field ({}).", names.join(", ")));
    if scales {
        m.doc(&format!("Pair scales: address = 2^{} + channel * {} + pair.", pa - 1, n / c));
    } else if n > 0 {
        m.doc(&format!("Level table: address = 2^{} + index, index 0..{}.", pa - 1, n - 1));
    }
    m.doc("Not reset: a reset of the datapath keeps the loaded layer.");
    if p.memories.is_some() {
        m.doc("Fields in memories (a word per channel), read at the shared unit's issued column: written only while the array is idle.");
    }
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let we = m.input("prm_we_i", Ty::bit(), "write strobe");
    let addr = m.input("prm_addr_i", Ty::u(pa), "channel * 4 + field");
    let data = m.input("prm_wdata_i", Ty::u(pd), "value in the low bits");
    let col = p.memories.is_some().then(|| m.input("col_next_i", Ty::u(clog2(u64::from(c))), "column issued to the shared output unit in the next cycle"));
    let ports: Vec<Expr> = if let Some(delays) = &p.memories {
        fields.iter().zip(delays).map(|((n, w), d)| m.output_reg(&format!("{n}_o"), Ty::u(*w), &format!("the issued column's {n}, at P{d}"))).collect()
    } else {
        fields.iter().map(|(n, w)| m.output(&format!("{n}_o"), Ty::u(c * w), "")).collect()
    };
    let tname = p.table.map_or("", |t| t.kind.name());
    let (t_doc, t_we_doc) = if scales { ("pair scales, entry i at [i*SB +: SB]", "write to the pair scales") } else { ("level table, entry i at [i*LB +: LB]", "write to the level table") };
    let table_o = p.table.map(|t| (t, m.output(&format!("{tname}_o"), Ty::u(t.bits()), t_doc)));
    let b = &mut m.body;
    // with a table the top address bit selects it
    let ch_top = if n > 0 { pa - 2 } else { pa - 1 };
    let ch_we = if n > 0 { b.net("ch_we", &we.land(&addr.bit(pa - 1).lnot()), "write to a channel's parameters") } else { we.clone() };
    let ch = b.net("ch", &addr.slice(ch_top, 2), "channel");
    let field = b.net("field", &addr.slice(1, 0), "field");
    let nf = fields.len() as u32;
    let f_sel = b.net("field_sel", &Expr::lit(1, Ty::u(nf)).shl_by(&field), "one-hot field; none when unused");
    if let (Some(col), Some(delays)) = (&col, &p.memories) {
        // one memory per field, a word per channel; each field is read at the issued column, delayed to
        // the stage that uses it. The read is a cycle early, into the memory's read register, and the
        // field's own register follows: a block RAM's read is slow (5.8 ns on ECP5), so it gets a
        // cycle to itself.
        let cbw = col.width();
        // a write to a channel beyond the last changes nothing
        let in_range = if ch.width() == cbw && c == 1 << cbw { None } else { Some(b.net("ch_ok", &ch.lt(&Expr::lit(i128::from(c), ch.ty())), "channel in range")) };
        let ch_we = match &in_range {
            Some(ok) => b.net("mem_we", &ch_we.land(ok), "write to a channel in range"),
            None => ch_we.clone(),
        };
        let waddr = if ch.width() == cbw { ch.clone() } else { b.net("ch_addr", &ch.slice(cbw - 1, 0), "") };
        let mems: Vec<_> = fields.iter().map(|(n, w)| b.memory(&format!("{n}_mem"), *w, c, p.mem_style, "")).collect();
        let mut st = Vec::new();
        let mut col_d = vec![col.clone()];
        for k in 1..=delays.iter().copied().max().unwrap_or(0) {
            let q = b.reg(&format!("col_d{k}_q"), col.ty(), if k == 1 { "the issued column (col_next_i delayed)" } else { "" });
            st.push(Stmt::set(&q, &col_d[k as usize - 1]));
            col_d.push(q);
        }
        let reads: Vec<Expr> = fields.iter().map(|(n, w)| b.reg(&format!("{n}_rd_q"), Ty::u(*w), "")).collect();
        let mut writes = Vec::new();
        for (i, (((_, w), mem), (port, d))) in fields.iter().zip(&mems).zip(ports.iter().zip(delays)).enumerate() {
            writes.push(Stmt::when(&ch_we.land(&f_sel.bit(i as u32)), vec![Stmt::set(&mem.word(&waddr), &data.slice(w - 1, 0))]));
            st.push(Stmt::set(&reads[i], &mem.word(&col_d[*d as usize])));
            st.push(Stmt::set(port, &reads[i]));
        }
        b.always(&clk, writes);
        b.always(&clk, st);
    } else {
        let regs: Vec<Expr> = fields.iter().map(|(n, w)| b.reg(&format!("{n}_q"), Ty::u(c * w), "")).collect();
        for (port, q) in ports.iter().zip(&regs) {
            b.assign(port, q);
        }
        let ch_sel = b.net("ch_sel", &Expr::lit(1, Ty::u(c)).shl_by(&ch), "one-hot channel; none when out of range");
        b.generate_for("gc", c, "g_ch", |b| {
            let sel = b.net("sel", &ch_we.land(&ch_sel.part("gc", 1, c - 1)), "");
            for (i, ((_, w), q)) in fields.iter().zip(&regs).enumerate() {
                b.always(
                    &clk,
                    vec![Stmt::when(&sel.land(&f_sel.bit(i as u32)), vec![Stmt::set(&q.part(&format!("gc * {w}"), *w, (c - 1) * w), &data.slice(w - 1, 0))])],
                );
            }
        });
    }
    if let Some((table, table_o)) = table_o {
        let lb = table.entry_bits;
        let ib = clog2(u64::from(n)).max(1);
        let t_we = b.net("table_we", &we.land(&addr.bit(pa - 1)), t_we_doc);
        let idx = b.net("table_idx", &addr.slice(ib - 1, 0), "");
        let t_sel = b.net("table_sel", &Expr::lit(1, Ty::u(n)).shl_by(&idx), "one-hot table entry");
        let table_q = b.reg(&format!("{tname}_q"), Ty::u(n * lb), "");
        b.assign(&table_o, &table_q);
        b.generate_for("gt", n, "g_lvl", |b| {
            let sel = b.net("sel", &t_we.land(&t_sel.part("gt", 1, n - 1)), "");
            b.always(&clk, vec![Stmt::when(&sel, vec![Stmt::set(&table_q.part(&format!("gt * {lb}"), lb, (n - 1) * lb), &data.slice(lb - 1, 0))])]);
        });
    }
    m
}
