//! The accumulate-and-hold logic of the lane-products and bit-serial PEs.

use crate::rtl::{Body, Expr, Module, Stmt, Ty};
use crate::units::HwParams;

/// What a PE's accumulator and hold register depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccParams {
    /// Accumulator width.
    pub bits: u32,
    /// The accumulator saturates ([`HwParams::acc_saturate`]).
    pub saturate: bool,
    /// The accumulator is a running total, never cleared between tiles
    /// ([`HwParams::running_totals`]).
    pub running_totals: bool,
    /// A hold register takes the finished sum ([`HwParams::double_buffer`]); without it the
    /// accumulators shift down the column themselves.
    pub hold_register: bool,
}

impl HwParams {
    /// The PEs' accumulator parameters.
    pub fn acc_params(&self) -> AccParams {
        AccParams { bits: self.acc_bits, saturate: self.acc_saturate, running_totals: self.running_totals, hold_register: self.double_buffer }
    }
}

/// The accumulator's control and drain ports of a PE: clear, hold load (with hold registers), shift,
/// and the column's shift chain.
pub(super) struct AccPorts {
    pub(super) clr: Expr,
    pub(super) load: Option<Expr>,
    pub(super) shift: Expr,
    pub(super) hold_i: Expr,
    pub(super) hold_o: Expr,
}

impl AccPorts {
    pub(super) fn new(m: &mut Module, p: &AccParams) -> AccPorts {
        let aw = p.bits;
        if p.hold_register {
            AccPorts {
                clr: m.input("clr_i", Ty::bit(), "clear the accumulator (after a tile's last step, and on reset)"),
                load: Some(m.input("load_i", Ty::bit(), "it is the last step: move the sum into the hold register")),
                shift: m.input("shift_i", Ty::bit(), "shift the hold registers down one row"),
                hold_i: m.input("hold_i", Ty::s(aw), "hold register of the row above"),
                hold_o: m.output_reg("hold_o", Ty::s(aw), "hold register, towards row 0"),
            }
        } else {
            AccPorts {
                clr: m.input("clr_i", Ty::bit(), "clear the accumulator (reset)"),
                load: None,
                shift: m.input("shift_i", Ty::bit(), "shift the accumulators down one row (drain)"),
                hold_i: m.input("hold_i", Ty::s(aw), "accumulator of the row above"),
                hold_o: m.output("hold_o", Ty::s(aw), "the accumulator, towards row 0 (no hold register)"),
            }
        }
    }
}

/// `acc += dot_v` when `acc_en` (saturating if configured), and the hold register (or, without one, the
/// accumulator itself) on the column's shift chain.
pub(super) fn accumulate_and_hold(b: &mut Body, p: &AccParams, clk: &Expr, dot_v: &Expr, acc_en: &Expr, ports: &AccPorts) {
    let (aw, dw) = (p.bits, dot_v.width());
    let acc_q = b.reg("acc_q", Ty::s(aw), if p.running_totals { "accumulator, a running total (cleared on reset only)" } else { "accumulator, zero between tiles" });
    let base = acc_q.clone();
    let acc_nxt = if p.saturate {
        let sw = aw.max(dw) + 1;
        let sum = b.net("acc_sum", &base.resize(sw).add(&dot_v.resize(sw)), "");
        let hi = (1i128 << (aw - 1)) - 1;
        let lo = -(1i128 << (aw - 1));
        let sat = Expr::mux(
            &sum.gt(&Expr::lit(hi, Ty::s(sw))),
            &Expr::lit(hi, Ty::s(aw)),
            &Expr::mux(&sum.lt(&Expr::lit(lo, Ty::s(sw))), &Expr::lit(lo, Ty::s(aw)), &sum.resize(aw)),
        );
        b.net("acc_nxt", &sat, "saturating sum")
    } else {
        assert!(dw <= aw, "accumulator narrower than one step's dot product");
        b.net("acc_nxt", &base.add(&dot_v.resize(aw)), "")
    };
    let AccPorts { clr, load, shift, hold_i, hold_o } = ports;
    // running totals: the accumulator is cleared only on reset, and the hold register takes it a cycle
    // after the tile's last step, so the adder feeds only the accumulator
    assert!(!(p.running_totals && p.saturate), "running totals wrap; a saturating accumulator cannot");
    let finished = if p.running_totals { &acc_q } else { &acc_nxt };
    match load {
        Some(load) => b.always(
            clk,
            vec![
                Stmt::when_else(clr, vec![Stmt::set(&acc_q, &Expr::zero(Ty::s(aw)))], vec![Stmt::when(acc_en, vec![Stmt::set(&acc_q, &acc_nxt)])]),
                Stmt::when_else(load, vec![Stmt::set(hold_o, finished)], vec![Stmt::when(shift, vec![Stmt::set(hold_o, hold_i)])]),
            ],
        ),
        None => {
            // the finished sum stays in the accumulator and shifts down the column; zeros shift in
            // from the top, so the accumulators are clear when the drain ends
            b.always(
                clk,
                vec![Stmt::when_else(
                    clr,
                    vec![Stmt::set(&acc_q, &Expr::zero(Ty::s(aw)))],
                    vec![Stmt::when_else(shift, vec![Stmt::set(&acc_q, hold_i)], vec![Stmt::when(acc_en, vec![Stmt::set(&acc_q, &acc_nxt)])])],
                )],
            );
            b.assign(hold_o, &acc_q);
        }
    }
}
