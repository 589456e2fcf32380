//! `<prefix>_delta`: with running totals, a tile's sums from the never-cleared accumulators, at the
//! head of the output stage.

use super::HwParams;
use crate::rtl::{Expr, Module, Stmt, Ty};
use qmac_arith::width::clog2;

/// What the difference unit depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaParams {
    /// Module name.
    pub name: String,
    /// Accumulator width: the totals wrap in it.
    pub acc_bits: u32,
    /// Values a tile drains through the unit ([`HwParams::delta_items`]).
    pub items: u32,
    /// The unit captures its value at the issue (one per column), rather than taking a shared unit's
    /// select register.
    pub capture: bool,
    /// The memory is read a cycle ahead ([`HwParams::delta_read_ahead`]).
    pub read_ahead: bool,
    /// What the memory is built from.
    pub mem_style: crate::rtl::MemStyle,
}

impl HwParams {
    /// The difference unit's parameters; `None` without running totals.
    pub fn delta_params(&self) -> Option<DeltaParams> {
        self.running_totals.then(|| DeltaParams {
            name: self.module("delta"),
            acc_bits: self.acc_bits,
            items: self.delta_items(),
            capture: !self.shared_output,
            read_ahead: self.delta_read_ahead(),
            mem_style: self.mem_style,
        })
    }
}

/// The running totals' difference unit ([`HwParams::running_totals`]): the tile's sum of a PE is its
/// running total at the end of the tile minus the same PE's total at the end of the previous tile.
/// The previous totals are a memory of [`HwParams::delta_items`] words (block RAM), read for an item
/// when it is issued (D1; a cycle ahead and registered again, [`HwParams::delta_read_ahead`]) and
/// overwritten with the new total a cycle after the issue (D2), so a word is used only in a later
/// cycle than its write. Per column the unit first captures the column's value at the issue (the hold
/// registers shift then); after a shared unit's select register the value is already held. The first
/// tile after reset has no previous totals (`fresh_i`). The difference wraps in `acc_bits` like the
/// accumulator, so it is exact whenever the tile's sum fits.
pub fn delta(p: &DeltaParams) -> Module {
    let (aw, n) = (p.acc_bits, p.items);
    let capture = p.capture;
    let mut m = Module::new(&p.name);
    m.doc(&format!("Running totals to tile sums: total minus the same PE's total one tile earlier ({n} per tile{})", if capture { ", one column" } else { "" }));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let issue = m.input("issue_i", Ty::bit(), "an item is issued this cycle");
    let ib = clog2(u64::from(n));
    let ahead = p.read_ahead;
    let addr = (n > 1).then(|| {
        if ahead {
            m.input("item_next_i", Ty::u(ib), "index within the tile of the next item to be issued (this one's, if none is)")
        } else {
            m.input("item_i", Ty::u(ib), "its index within the tile")
        }
    });
    let fresh = m.input("fresh_i", Ty::bit(), "it belongs to the first tile after reset: no previous total");
    let acc = m.input("acc_i", Ty::s(aw), if capture { "running total, at the issue" } else { "running total, a cycle after the issue" });
    let acc_o = m.output_reg("acc_o", Ty::s(aw), "the tile's sum (D2)");
    let b = &mut m.body;
    let v1 = b.reg("v1_q", Ty::bit(), "D1 holds an item");
    let f1 = b.reg("f1_q", Ty::bit(), "");
    let prev = b.reg("prev_q", Ty::u(aw), if n > 1 { "the item's previous total (D1)" } else { "the previous total" });
    let mut d1 = vec![Stmt::set(&v1, &issue), Stmt::set(&f1, &fresh)];
    let x = if capture {
        let cap = b.reg("cap_q", Ty::s(aw), "the issued total (D1)");
        d1.push(Stmt::when(&issue, vec![Stmt::set(&cap, &acc)]));
        cap
    } else {
        acc.clone()
    };
    let mut d2 = Vec::new();
    match &addr {
        Some(addr) => {
            let mem = b.memory("tot_mem", aw, n, p.mem_style, "each item's total at the end of the previous tile");
            let a1 = b.reg("a1_q", Ty::u(ib), "");
            if ahead {
                // the word of the item issued this cycle was read in the cycle before; a word is read
                // at least two cycles after it was written (the next index is never the one the
                // previous issue is writing, with 3 or more items)
                let cur = b.reg("cur_q", Ty::u(ib), "index of the item issued this cycle, if one is");
                let rd = b.reg("rd_q", Ty::u(aw), "its previous total, read a cycle ahead");
                b.always(&clk, vec![Stmt::set(&cur, addr), Stmt::set(&rd, &mem.word(addr))]);
                d1.push(Stmt::set(&a1, &cur));
                d1.push(Stmt::when(&issue, vec![Stmt::set(&prev, &rd)]));
            } else {
                d1.push(Stmt::set(&a1, addr));
                d1.push(Stmt::when(&issue, vec![Stmt::set(&prev, &mem.word(addr))]));
            }
            d2.push(Stmt::when(&v1, vec![Stmt::set(&mem.word(&a1), &x.as_unsigned())]));
        }
        // one item per tile: a register
        None => d2.push(Stmt::when(&v1, vec![Stmt::set(&prev, &x.as_unsigned())])),
    }
    b.always(&clk, d1);
    let diff = b.net("diff", &x.sub(&prev.as_signed()), "wraps like the accumulator");
    d2.push(Stmt::set(&acc_o, &Expr::mux(&f1, &x, &diff)));
    b.always(&clk, d2);
    m
}
