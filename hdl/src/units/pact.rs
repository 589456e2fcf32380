//! `<prefix>_pact`: the PACT clip of one channel, first half of the multiply output stage.

use super::HwParams;
use crate::rtl::{Expr, Module, Stmt, Ty};

/// What the PACT unit depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PactParams {
    /// Module name.
    pub name: String,
    /// Width of the accumulator value, the bias and the clip level.
    pub acc_bits: u32,
}

impl HwParams {
    /// The PACT unit's parameters.
    pub fn pact_params(&self) -> PactParams {
        PactParams { name: self.module("pact"), acc_bits: self.acc_bits }
    }
}

/// PACT clip of one channel: `x = clamp(acc + bias, 0, alpha)` (drain stages P1: sum, P2: clip).
pub fn pact(p: &PactParams) -> Module {
    let aw = p.acc_bits;
    let mut m = Module::new(&p.name);
    m.doc("PACT clip in the accumulator domain: x = clamp(acc + bias, 0, alpha).");
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let acc = m.input("acc_i", Ty::s(aw), "accumulator value");
    let bias = m.input("bias_i", Ty::s(aw), "per-channel bias");
    let alpha = m.input("alpha_i", Ty::u(aw), "per-channel clip level");
    let x_o = m.output_reg("x_o", Ty::u(aw), "clipped value, 0..alpha");
    let b = &mut m.body;
    b.comment("P1: acc + bias (the clip level travels along); P2: clip");
    let t = b.reg("t_q", Ty::s(aw + 1), "acc + bias, exact (P1)");
    let alpha_q = b.reg("alpha_q", Ty::u(aw), "");
    b.always(&clk, vec![Stmt::set(&t, &acc.resize(aw + 1).add(&bias.resize(aw + 1))), Stmt::set(&alpha_q, &alpha)]);
    let alpha = alpha_q;
    let alpha_s = b.net("alpha_s", &alpha.to_signed_value(), "");
    let x = Expr::mux(
        &t.lt(&Expr::zero(Ty::s(aw + 1))),
        &Expr::zero(Ty::u(aw)),
        &Expr::mux(&t.gt(&alpha_s), &alpha, &t.slice(aw - 1, 0)),
    );
    let x_q = x_o;
    b.always(&clk, vec![Stmt::set(&x_q, &x)]);
    m
}
