//! `<prefix>_requant`: multiply, rounding shift and saturation of one channel, second half of the
//! multiply output stage (after [`super::pact`]).

use super::HwParams;
use crate::rtl::{Expr, Module, Stmt, Ty};
use qmac_arith::round::Rounding;
use qmac_arith::width::clog2;

/// What the requantization unit depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequantParams {
    /// Module name.
    pub name: String,
    /// Width of the clipped value.
    pub acc_bits: u32,
    /// Multiplier width.
    pub mult_bits: u32,
    /// Shift field width.
    pub shift_bits: u32,
    /// Output code width.
    pub out_bits: u32,
    /// Rounding of the shift.
    pub rounding: Rounding,
    /// The multiply takes two stages ([`HwParams::mult_split`]).
    pub split: bool,
}

impl RequantParams {
    /// Width of the product `x * mult`.
    pub fn product_bits(&self) -> u32 {
        self.acc_bits + self.mult_bits
    }
}

impl HwParams {
    /// The requantization unit's parameters.
    pub fn requant_params(&self) -> RequantParams {
        RequantParams {
            name: self.module("requant"),
            acc_bits: self.biased_bits(),
            mult_bits: self.mult_bits,
            shift_bits: self.shift_bits,
            out_bits: self.out_bits,
            rounding: self.rounding,
            split: self.mult_split(),
        }
    }
}

/// Requantization of one channel: `code = min(round(x * mult / 2^shift), 2^out_bits - 1)`
/// (drain stages P3: product, two stages with a multiplier of 8 bits or more; P4: quotient bits and rounding
/// bit; P5: saturation and increment).
pub fn requant(p: &RequantParams) -> Module {
    let (aw, mb, sb, ob) = (p.acc_bits, p.mult_bits, p.shift_bits, p.out_bits);
    let pw = p.product_bits();
    let mut m = Module::new(&p.name);
    m.doc(&format!("Requantization: code = min(round(x * mult / 2^shift), {}), rounding {}.", (1u32 << ob) - 1, p.rounding.name()));
    m.doc("Rounding from parts: q = p >> shift, up = h && (k || t); h = bit shift-1, k = any lower bit, t = 1 (half_up) or q[0] (half_even).");
    let clk = m.input("clk_i", Ty::bit(), "clock");
    let x = m.input("x_i", Ty::u(aw), "clipped value");
    let mult = m.input("mult_i", Ty::u(mb), "per-channel multiplier");
    let shift = m.input("shift_i", Ty::u(sb), "per-channel right shift");
    let code_o = m.output_reg("code_o", Ty::u(ob), "output code");
    let b = &mut m.body;
    let prod_q = b.reg("prod_q", Ty::u(pw), if p.split { "x * mult (P3b)" } else { "x * mult (P3)" });
    let shift_a = b.reg("shift_a_q", Ty::u(sb), "the shift that goes with prod_q");
    if p.split {
        // P3a: two narrower products, by the multiplier's low and high halves; P3b: their sum
        let lw = mb / 2;
        let hw = mb - lw;
        let lo_q = b.reg("prod_lo_q", Ty::u(aw + lw), "x * mult[low half] (P3a)");
        let hi_q = b.reg("prod_hi_q", Ty::u(aw + hw), "x * mult[high half] (P3a)");
        let shift_p = b.reg("shift_p_q", Ty::u(sb), "");
        let (m_lo, m_hi) = (mult.slice(lw - 1, 0), mult.slice(mb - 1, lw));
        b.always(
            &clk,
            vec![
                Stmt::set(&lo_q, &x.resize(aw + lw).mul(&m_lo.resize(aw + lw))),
                Stmt::set(&hi_q, &x.resize(aw + hw).mul(&m_hi.resize(aw + hw))),
                Stmt::set(&shift_p, &shift),
            ],
        );
        b.always(&clk, vec![Stmt::set(&prod_q, &lo_q.resize(pw).add(&hi_q.resize(pw).shl(lw))), Stmt::set(&shift_a, &shift_p)]);
    } else {
        b.always(&clk, vec![Stmt::set(&prod_q, &x.resize(pw).mul(&mult.resize(pw))), Stmt::set(&shift_a, &shift)]);
    }
    let shift = shift_a;
    // P4: the parts of round(p / 2^shift) (arith::round::shift_round_by_parts), no wide carry chain:
    //   q = p >> shift (only its low OB bits, a part-select), ovf = q >= 2^OB (a mask test),
    //   h = bit shift-1 of p, k = any bit below it, up = h && (k || t), t = 1 (half_up) or q[0] (half_even)
    let xw = pw + ob;
    let p_ext = b.net("prod_ext", &prod_q.resize(xw), "zero-extended so that [shift +: OB] stays in range");
    let ones = (1i128 << xw) - 1;
    let below = b.net("below", &Expr::lit(ones, Ty::u(xw)).shl_by(&shift).not(), "bits below position shift");
    let low = b.net("low", &below.shr_by(&one_bit_amount()), "bits below position shift-1");
    let h = b.net("half_bit", &p_ext.and(&below.xor(&low)).any(), "bit shift-1 of p: the first dropped bit");
    let k = b.net("sticky", &p_ext.and(&low).any(), "any lower dropped bit");
    let top_mask = Expr::lit(ones ^ ((1i128 << ob) - 1), Ty::u(xw));
    let hi = b.net("hi_mask", &top_mask.shl_by(&shift), "bits at and above shift + OB");
    let iw = clog2(u64::from(xw)).max(sb);
    let idx = if iw > sb { b.net("shift_idx", &shift.resize(iw), "") } else { shift.clone() };
    let q_low = b.net("q_low", &p_ext.part_at(&idx, ob), "low OB bits of p >> shift");
    let t = match p.rounding {
        Rounding::HalfUp => Expr::lit(1, Ty::bit()),
        Rounding::HalfEven => q_low.bit(0),
    };
    let q_q = b.reg("q_q", Ty::u(ob), "low bits of the quotient (P4)");
    let ovf_q = b.reg("ovf_q", Ty::bit(), "the quotient alone exceeds the output range");
    let up_q = b.reg("up_q", Ty::bit(), "round up");
    b.always(
        &clk,
        vec![Stmt::set(&q_q, &q_low), Stmt::set(&ovf_q, &p_ext.and(&hi).any()), Stmt::set(&up_q, &h.land(&k.lor(&t)))],
    );
    // P5: saturate and add the rounding bit (an OB-bit increment)
    let max = (1i128 << ob) - 1;
    let max_e = Expr::lit(max, Ty::u(ob));
    let sat = b.net("sat", &ovf_q.lor(&q_q.eq(&max_e).land(&up_q)), "the rounded value does not fit OB bits");
    let code = Expr::mux(&sat, &max_e, &q_q.add(&up_q.resize(ob)));
    let code_q = code_o;
    b.always(&clk, vec![Stmt::set(&code_q, &code)]);
    m
}

fn one_bit_amount() -> Expr {
    Expr::lit(1, Ty::u(1))
}
