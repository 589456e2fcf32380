//! `<prefix>_logit`: the output stage of a last layer, the exact biased accumulator (logits).

use super::pact::{biased_name, biased_sum};
use super::HwParams;
use crate::rtl::{Module, Stmt, Ty};

/// What the logit unit depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogitParams {
    /// Module name.
    pub name: String,
    /// Width of the accumulator value.
    pub acc_bits: u32,
    /// Fractional bits of the bias (`acc_bits + bias_frac` bits).
    pub bias_frac: u32,
}

impl HwParams {
    /// The logit unit's parameters.
    pub fn logit_params(&self) -> LogitParams {
        LogitParams { name: self.module("logit"), acc_bits: self.acc_bits, bias_frac: self.bias_frac }
    }
}

/// Logits of one channel: `y = acc * 2^F + bias`, exact and unclipped, `acc_bits + F + 1` bits
/// (drain stage P1). A last layer's output: the argmax over the classes of the exact biased
/// accumulators.
pub fn logit(p: &LogitParams) -> Module {
    let (aw, bw) = (p.acc_bits, p.acc_bits + p.bias_frac);
    let sum = biased_name(p.bias_frac);
    let mut m = Module::new(&p.name);
    m.doc(&format!("Logit: y = {sum}, exact, two's complement, no clip (a last layer's output)."));
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let acc = m.input("acc_i", Ty::s(aw), "accumulator value");
    let bias = m.input("bias_i", Ty::s(bw), "per-channel bias");
    let y_o = m.output_reg("y_o", Ty::u(bw + 1), "logit, two's complement");
    let b = &mut m.body;
    b.comment(&format!("P1: {sum}"));
    b.always(&clk, vec![Stmt::set(&y_o, &biased_sum(p.bias_frac, &acc, &bias).as_unsigned())]);
    m
}
