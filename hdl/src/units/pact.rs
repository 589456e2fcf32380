//! `<prefix>_pact`: the PACT clip of one channel, first half of the multiply output stage.

use super::HwParams;
use crate::rtl::{Expr, Module, Stmt, Ty};

/// What the PACT unit depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PactParams {
    /// Module name.
    pub name: String,
    /// Width of the accumulator value.
    pub acc_bits: u32,
    /// Fractional bits of the bias: the bias, the clip level and the clipped value are
    /// `acc_bits + bias_frac` bits, in units of `2^-bias_frac` accumulator units.
    pub bias_frac: u32,
}

impl HwParams {
    /// The PACT unit's parameters.
    pub fn pact_params(&self) -> PactParams {
        PactParams { name: self.module("pact"), acc_bits: self.acc_bits, bias_frac: self.bias_frac }
    }
}

/// `acc * 2^F + bias` in text (`acc + bias` without fractional bias bits).
pub(super) fn biased_name(bias_frac: u32) -> String {
    if bias_frac == 0 {
        "acc + bias".into()
    } else {
        format!("acc * 2^{bias_frac} + bias")
    }
}

/// The exact biased accumulator `acc * 2^F + bias`, signed, one bit wider than the bias: the shift
/// is wiring (the accumulator's bits move up, zeros below).
pub(super) fn biased_sum(bias_frac: u32, acc: &Expr, bias: &Expr) -> Expr {
    let w = bias.width() + 1;
    let a = if bias_frac == 0 { acc.resize(w) } else { acc.resize(w).shl(bias_frac) };
    a.add(&bias.resize(w))
}

/// PACT clip of one channel: `x = clamp(acc * 2^F + bias, 0, alpha)` (drain stages P1: sum, P2: clip).
pub fn pact(p: &PactParams) -> Module {
    let (aw, bw) = (p.acc_bits, p.acc_bits + p.bias_frac);
    let sum = biased_name(p.bias_frac);
    let mut m = Module::new(&p.name);
    m.doc(&format!("PACT clip in the accumulator domain: x = clamp({sum}, 0, alpha)."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let acc = m.input("acc_i", Ty::s(aw), "accumulator value");
    let bias = m.input("bias_i", Ty::s(bw), "per-channel bias");
    let alpha = m.input("alpha_i", Ty::u(bw), "per-channel clip level");
    let x_o = m.output_reg("x_o", Ty::u(bw), "clipped value, 0..alpha");
    let b = &mut m.body;
    b.comment(&format!("P1: {sum} (the clip level travels along); P2: clip"));
    let t = b.reg("t_q", Ty::s(bw + 1), &format!("{sum}, exact (P1)"));
    let alpha_q = b.reg("alpha_q", Ty::u(bw), "");
    b.always(&clk, vec![Stmt::set(&t, &biased_sum(p.bias_frac, &acc, &bias)), Stmt::set(&alpha_q, &alpha)]);
    let alpha = alpha_q;
    let alpha_s = b.net("alpha_s", &alpha.to_signed_value(), "");
    let x = Expr::mux(
        &t.lt(&Expr::zero(Ty::s(bw + 1))),
        &Expr::zero(Ty::u(bw)),
        &Expr::mux(&t.gt(&alpha_s), &alpha, &t.slice(bw - 1, 0)),
    );
    let x_q = x_o;
    b.always(&clk, vec![Stmt::set(&x_q, &x)]);
    m
}
