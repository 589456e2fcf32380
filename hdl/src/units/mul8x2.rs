//! `<prefix>_mul8x2`: two independent registered products of 8-bit operands, the shape of an iCE40
//! SB_MAC16 in its dual 8 x 8 mode. The module is behavioural (two `*` and a register), so it
//! simulates and synthesises anywhere; `qmac synth` maps exactly this module onto one SB_MAC16 on
//! iCE40 targets (`hdl/verilog/ice40_mul8x2_map.v`, docs/synthesis.md). The signedness of each side is
//! the same for both products, as the block's `A_SIGNED` and `B_SIGNED` apply to both of its bytes.

use super::HwParams;
use crate::rtl::{Expr, Module, Stmt, Ty};

/// Operand width of each product.
pub const MUL8X2_OPERAND_BITS: u32 = 8;
/// Width of each product.
pub const MUL8X2_PRODUCT_BITS: u32 = 16;

/// What the paired product unit depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mul8x2Params {
    /// Module name.
    pub name: String,
    /// The `x` operands (a lane's weight side) are two's complement, else unsigned.
    pub x_signed: bool,
    /// The `y` operands (a lane's activation side) are two's complement, else unsigned.
    pub y_signed: bool,
}

impl Mul8x2Params {
    /// The type of each product: signed unless both operands are unsigned.
    pub fn product_ty(&self) -> Ty {
        if self.x_signed || self.y_signed {
            Ty::s(MUL8X2_PRODUCT_BITS)
        } else {
            Ty::u(MUL8X2_PRODUCT_BITS)
        }
    }
    /// The type of an `x` operand.
    pub fn x_ty(&self) -> Ty {
        operand_ty(self.x_signed)
    }
    /// The type of a `y` operand.
    pub fn y_ty(&self) -> Ty {
        operand_ty(self.y_signed)
    }
}

fn operand_ty(signed: bool) -> Ty {
    if signed {
        Ty::s(MUL8X2_OPERAND_BITS)
    } else {
        Ty::u(MUL8X2_OPERAND_BITS)
    }
}

impl HwParams {
    /// The paired product unit of the PEs' first [`HwParams::dsp_pairs`] lane pairs; `None` without them.
    /// The signedness of each side follows the lane operands' ranges: a side whose values are never
    /// negative (unsigned activation codes, odd-level weight codes) is unsigned.
    pub fn mul8x2_params(&self) -> Option<Mul8x2Params> {
        if self.dsp_pairs == 0 {
            return None;
        }
        let (x, y) = self.kind().lane_operands((self.weight_enc, self.weight_bits), (self.act_enc, self.act_bits))?;
        Some(Mul8x2Params { name: self.module("mul8x2"), x_signed: x.0 < 0, y_signed: y.0 < 0 })
    }
}

/// The unit: `p0_o <= x0_i * y0_i` and `p1_o <= x1_i * y1_i`, exact in 16 bits.
pub fn mul8x2(p: &Mul8x2Params) -> Module {
    let sign = |s: bool| if s { "signed" } else { "unsigned" };
    let mut m = Module::new(&p.name);
    m.doc(&format!(
        "Two independent registered products of 8-bit operands ({} x {}), exact in 16 bits: the shape of one",
        sign(p.x_signed),
        sign(p.y_signed)
    ));
    m.doc("iCE40 SB_MAC16 in its dual 8x8 mode, onto which qmac synth maps this module (docs/synthesis.md).");
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let mut ins = Vec::new();
    for k in 0..2 {
        let x = m.input(&format!("x{k}_i"), p.x_ty(), &format!("product {k}: first operand (a weight value or code)"));
        let y = m.input(&format!("y{k}_i"), p.y_ty(), &format!("product {k}: second operand (an activation)"));
        ins.push((x, y));
    }
    let pt = p.product_ty();
    let outs: Vec<Expr> = (0..2).map(|k| m.output_reg(&format!("p{k}_o"), pt, &format!("x{k} * y{k}, one cycle later"))).collect();
    let b = &mut m.body;
    let mut st = Vec::new();
    for (k, ((x, y), q)) in ins.iter().zip(&outs).enumerate() {
        // each operand widened to the product's type by its own signedness; the product of the
        // widened values modulo 2^16 is exact (|x * y| <= 255 * 255 unsigned, 128 * 255 mixed)
        let widen = |b: &mut crate::rtl::Body, v: &Expr, side: &str| -> Expr {
            match (v.ty().signed, pt.signed) {
                (false, true) => b.net(&format!("{side}{k}_v"), &v.to_signed_value(), "the unsigned code as a signed value").resize(pt.width),
                _ => v.resize(pt.width),
            }
        };
        let xw = widen(b, x, "x");
        let yw = widen(b, y, "y");
        st.push(Stmt::set(q, &xw.mul(&yw)));
    }
    b.always(&clk, st);
    m
}
