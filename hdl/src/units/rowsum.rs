//! `<prefix>_rowsum`: with weights multiplied as unsigned codes (odd levels, or offset-binary codes
//! of packed two's complement weights), the correction `n * sum a` of one row, computed once and
//! shared by the row's PEs.

use super::builders::{adder_tree, code_value};
use super::HwParams;
use crate::rtl::{Module, Stmt, Ty};
use qmac_arith::code::{Encoding, MacKind};

/// What the row correction depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowsumParams {
    /// Module name.
    pub name: String,
    /// Lanes of the row.
    pub lanes: u32,
    /// Activation code width.
    pub act_bits: u32,
    /// Activation encoding.
    pub act_enc: Encoding,
    /// The PEs' lane arithmetic ([`MacKind::row_correction`]: odd levels `n = 2^weight_bits - 1`,
    /// offset-binary codes `n = 2^(weight_bits - 1)`).
    pub kind: MacKind,
    /// Weight code width.
    pub weight_bits: u32,
    /// Width of a PE's dot product, which the correction is subtracted from.
    pub dot_bits: u32,
    /// Register stages from the row's activations to the PE's `dot_q`, which the correction matches:
    /// the PE's adder-tree stages, its own input registers ([`HwParams::pe_input_regs`]) and the
    /// packed operands' register ([`HwParams::pack_stages`]).
    pub align_stages: u32,
}

impl HwParams {
    /// The row correction's parameters; `None` unless the PEs multiply unsigned weight codes.
    pub fn rowsum_params(&self) -> Option<RowsumParams> {
        let kind = self.kind();
        kind.row_correction(self.weight_bits).map(|_| RowsumParams {
            name: self.module("rowsum"),
            lanes: self.lanes,
            act_bits: self.act_bits,
            act_enc: self.act_enc,
            kind,
            weight_bits: self.weight_bits,
            dot_bits: self.dot_bits(),
            align_stages: self.tree_stages() + u32::from(self.pe_input_regs) + self.pack_stages(),
        })
    }
}

/// Per-row correction: `n * sum_l a_l` (S2: sum, S3: scale).
pub fn rowsum(p: &RowsumParams) -> Module {
    let (l, ab, wb) = (p.lanes, p.act_bits, p.weight_bits);
    let dw = p.dot_bits;
    let (_, n) = p.kind.row_correction(wb).expect("a kind with a row correction");
    let mut m = Module::new(&p.name);
    if p.kind == MacKind::OddWeights {
        m.doc(&format!("Row correction for {wb}-bit odd-level weights: n_w * sum of the row's {l} activations, n_w = {n}."));
    } else {
        m.doc(&format!("Row correction for {wb}-bit two's complement weights as offset-binary codes: n * sum of the row's {l} activations, n = {n}."));
    }
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let a = m.input("a_i", Ty::u(l * ab), "activation codes of one row");
    let corr_o = m.output_reg("corr_o", Ty::s(dw), if p.kind == MacKind::OddWeights { "n_w * sum a, aligned with the PE's dot_q" } else { "n * sum a, aligned with the PE's dot_q" });
    let b = &mut m.body;
    let mut terms = Vec::new();
    for i in 0..l {
        let ac = b.net(&format!("a{i}_code"), &a.slice(i * ab + ab - 1, i * ab), "");
        let (v, r) = code_value(b, &format!("a{i}_val"), &ac, p.act_enc);
        terms.push((v, r));
    }
    let (root, _) = adder_tree(b, "sum", terms);
    let sum_q = b.reg("sum_q", root.ty(), "sum of the row's activations (S2)");
    let sum_s = if root.ty().signed { sum_q.clone() } else { sum_q.to_signed_value() };
    let corr_q = corr_o;
    let sum_w = b.net("sum_w", &sum_s.resize(dw), "");
    // aligned with the PE's adder tree: extra register stages when the tree has them, and one for the
    // PE's own input registers
    let mut prev = match p.kind {
        // (2^wb - 1) * sum
        MacKind::OddWeights => sum_w.shl(wb).sub(&sum_w),
        // 2^(wb - 1) * sum
        _ if wb > 1 => sum_w.shl(wb - 1),
        _ => sum_w.clone(),
    };
    let mut st = vec![Stmt::set(&sum_q, &root)];
    for i in 1..p.align_stages {
        let d = b.reg(&format!("corr_d{i}_q"), Ty::s(dw), "");
        st.push(Stmt::set(&d, &prev));
        prev = d;
    }
    st.push(Stmt::set(&corr_q, &prev));
    b.always(&clk, st);
    m
}
