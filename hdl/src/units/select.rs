//! `<prefix>_select`: the shared output unit's first drain stage, which picks the issued column.

use super::HwParams;
use crate::rtl::{Body, Expr, Module, Stmt, Ty};
use qmac_arith::width::clog2;

/// What the column select depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectParams {
    /// Module name.
    pub name: String,
    /// Columns to select from.
    pub cols: u32,
    /// Width of a column's hold register ([`HwParams::hold_bits`]).
    pub hold_bits: u32,
    /// The hold registers carry per-pair counts (bases), not a signed accumulator.
    pub pair_counts: bool,
    /// The per-column fields selected with the value ([`HwParams::select_fields`]).
    pub fields: Vec<(String, u32)>,
    /// The parameters are read from memories in the parameter unit, not selected here
    /// ([`HwParams::param_ram`]).
    pub param_ram: bool,
}

impl HwParams {
    /// The column select's parameters; `None` without a shared output unit.
    pub fn select_params(&self) -> Option<SelectParams> {
        self.shared_output.then(|| SelectParams {
            name: self.module("select"),
            cols: self.cols,
            hold_bits: self.hold_bits(),
            pair_counts: self.bases.is_some(),
            fields: self.select_fields(),
            param_ram: self.param_ram(),
        })
    }
}

/// Column select of a shared output unit: registers the issued column's accumulator (with bases: its
/// pair counts) and the fields of [`HwParams::select_fields`] (drain stage P0). Over several columns
/// the parameters are not among them: they are read from memories in the parameter unit.
pub fn select(p: &SelectParams) -> Module {
    let (c, hw) = (p.cols, p.hold_bits);
    let cbw = clog2(u64::from(c));
    let fields = &p.fields;
    let mut m = Module::new(&p.name);
    let with = if fields.is_empty() { "" } else if p.param_ram { ", with its pair scales" } else { ", with its parameters" };
    m.doc(&format!("Column select for the shared output unit: one of {c} columns per cycle{with}."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let col = (cbw > 0).then(|| m.input("col_i", Ty::u(cbw), "column to select"));
    let acc = m.input("acc_i", Ty::u(c * hw), "row-0 hold register of each column");
    let ins: Vec<Expr> = fields.iter().map(|(n, w)| m.input(&format!("{n}_i"), Ty::u(c * w), "")).collect();
    let acc_o = if p.pair_counts {
        m.output_reg("acc_o", Ty::u(hw), "the selected pair counts (P0)")
    } else {
        m.output_reg("acc_o", Ty::s(hw), "the selected accumulator (P0)")
    };
    let outs: Vec<Expr> = fields.iter().map(|(n, w)| m.output_reg(&format!("{n}_o"), Ty::u(*w), "")).collect();
    let b = &mut m.body;
    let pick = |b: &mut Body, name: &str, bus: &Expr, w: u32| -> Expr {
        match &col {
            Some(col) => {
                let iw = clog2(u64::from(c * w));
                let base = b.net(&format!("{name}_base"), &col.resize(iw).mul(&Expr::lit(i128::from(w), Ty::u(iw))), "");
                bus.part_at(&base, w)
            }
            None => bus.clone(),
        }
    };
    let mut st = Vec::new();
    let acc_sel = pick(b, "acc", &acc, hw);
    let acc_v = if p.pair_counts { acc_sel } else { acc_sel.as_signed() };
    st.push(Stmt::set(&acc_o, &acc_v));
    for ((name, w), (inp, out)) in fields.iter().zip(ins.iter().zip(&outs)) {
        let v = pick(b, name, inp, *w);
        st.push(Stmt::set(out, &v));
    }
    b.always(&clk, st);
    m
}
