//! The board top `qmac_board_top`: a small serial loader/unloader around the array so its wide buses
//! fit a handful of package pins and nothing is optimised away.
//!
//! Pins (fixed, so one constraint file per board serves every configuration):
//!
//! | pin | dir | use |
//! |---|---|---|
//! | `clk` | in | the array clock |
//! | `din[3:0]` | in | serial input nibble: while `ctl[0]` (registered) is 1, the input shift register shifts in `din` |
//! | `ctl[0]` | in | load strobe of the input shift register |
//! | `ctl[1]` | in | shift strobe of the output shift register |
//! | `ctl[7:2]` | in | the top's 1-bit inputs (`rst_i`, `a_last_i`, `a_valid_i`, ...), registered, in manifest order |
//! | `dout[3:0]` | out | low nibble of the output shift register |
//! | `sts[3:0]` | out | the top's 1-bit outputs (`a_ready_o`, ...), registered, in manifest order |
//!
//! Every multi-bit input of the top (and any 1-bit input beyond the six `ctl` bits) is driven from the
//! input shift register, in manifest order starting at bit 0. Every multi-bit output (and any 1-bit output
//! beyond the four `sts` bits) is captured into the output shift register, which then shifts right by 4
//! per `ctl[1]` cycle. The capture strobe is the output handshake `y_valid_o & y_ready_i` when the top has
//! both ports, otherwise every cycle in which `ctl[1]` is 0.

use std::fmt::Write as _;

use super::manifest::{Direction, Manifest};
use super::SynthError;

/// Name of the generated wrapper module.
pub const BOARD_TOP: &str = "qmac_board_top";
/// Width of the serial input bus `din`.
pub const DIN_BITS: u32 = 4;
/// Width of the serial output bus `dout`.
pub const DOUT_BITS: u32 = 4;
/// Width of `ctl` (2 strobes + up to 6 direct 1-bit inputs).
pub const CTL_BITS: u32 = 8;
/// Width of `sts` (direct 1-bit outputs).
pub const STS_BITS: u32 = 4;

/// How the top's ports are wired to the pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardPlan {
    /// The clock port of the top.
    pub clock: String,
    /// 1-bit inputs driven from `ctl_q[2 + i]`.
    pub ctl_inputs: Vec<String>,
    /// Inputs driven from the input shift register: (name, width, lsb offset).
    pub shifted_inputs: Vec<(String, u32, u32)>,
    /// 1-bit outputs registered onto `sts[i]`.
    pub sts_outputs: Vec<String>,
    /// Outputs captured into the output shift register: (name, width, lsb offset).
    pub shifted_outputs: Vec<(String, u32, u32)>,
    /// Total bits of the input shift register (before padding to a multiple of 4).
    pub in_bits: u32,
    /// Total bits of the output shift register (before padding).
    pub out_bits: u32,
    /// Capture on `y_valid_o & y_ready_i` (true) or whenever not shifting (false).
    pub capture_on_handshake: bool,
}

/// Decides the wiring of `m`'s ports.
pub fn plan(m: &Manifest) -> Result<BoardPlan, SynthError> {
    let err = |message: String| SynthError::BoardTop { message };
    if m.top == BOARD_TOP {
        return Err(err(format!("the design's top may not be called `{BOARD_TOP}`")));
    }
    let clock = m
        .ports
        .iter()
        .find(|p| p.direction == Direction::Input && p.width == 1 && p.name == "clk_i")
        .or_else(|| {
            m.ports.iter().find(|p| p.direction == Direction::Input && p.width == 1 && p.name.starts_with("clk"))
        })
        .map(|p| p.name.clone())
        .ok_or_else(|| err(format!("top `{}` has no 1-bit clock input `clk_i`", m.top)))?;
    let mut plan = BoardPlan {
        clock: clock.clone(),
        ctl_inputs: Vec::new(),
        shifted_inputs: Vec::new(),
        sts_outputs: Vec::new(),
        shifted_outputs: Vec::new(),
        in_bits: 0,
        out_bits: 0,
        capture_on_handshake: false,
    };
    for p in &m.ports {
        match p.direction {
            Direction::Input if p.name == clock => {}
            Direction::Input => {
                if p.width == 1 && (plan.ctl_inputs.len() as u32) < CTL_BITS - 2 {
                    plan.ctl_inputs.push(p.name.clone());
                } else {
                    plan.shifted_inputs.push((p.name.clone(), p.width, plan.in_bits));
                    plan.in_bits += p.width;
                }
            }
            Direction::Output => {
                if p.width == 1 && (plan.sts_outputs.len() as u32) < STS_BITS {
                    plan.sts_outputs.push(p.name.clone());
                } else {
                    plan.shifted_outputs.push((p.name.clone(), p.width, plan.out_bits));
                    plan.out_bits += p.width;
                }
            }
        }
    }
    plan.capture_on_handshake =
        plan.sts_outputs.iter().any(|n| n == "y_valid_o") && plan.ctl_inputs.iter().any(|n| n == "y_ready_i");
    Ok(plan)
}

fn round_up(x: u32, to: u32) -> u32 {
    x.div_ceil(to) * to
}

fn range(lsb: u32, width: u32) -> String {
    if width == 1 {
        format!("[{lsb}]")
    } else {
        format!("[{}:{lsb}]", lsb + width - 1)
    }
}

/// The Verilog text of `qmac_board_top` around `m.top`. With `keep_hierarchy` the instance carries
/// `(* keep_hierarchy *)` so Yosys does not flatten the wrapper into the array.
pub fn board_top_verilog(m: &Manifest, keep_hierarchy: bool) -> Result<String, SynthError> {
    let p = plan(m)?;
    let mut v = String::new();
    let w = &mut v;
    let isw = round_up(p.in_bits, DIN_BITS);
    let osw = round_up(p.out_bits, DOUT_BITS);
    let _ = writeln!(
        w,
        "// Generated by qmac synth: board wrapper around `{}` (see docs/synthesis.md). Do not edit.",
        m.top
    );
    let _ = writeln!(w, "// Input shift register: {} bits; output shift register: {} bits.", p.in_bits, p.out_bits);
    let _ = writeln!(w, "module {BOARD_TOP} (");
    let _ = writeln!(w, "    input  wire       clk,");
    let _ = writeln!(w, "    input  wire [{}:0] din,", DIN_BITS - 1);
    let _ = writeln!(w, "    input  wire [{}:0] ctl,", CTL_BITS - 1);
    let _ = writeln!(w, "    output wire [{}:0] dout,", DOUT_BITS - 1);
    let _ = writeln!(w, "    output wire [{}:0] sts", STS_BITS - 1);
    let _ = writeln!(w, ");");
    let _ = writeln!(w, "    reg  [{}:0] ctl_q = {CTL_BITS}'d0;", CTL_BITS - 1);
    let _ = writeln!(w, "    always @(posedge clk) ctl_q <= ctl;");
    let _ = writeln!(w, "    wire ld = ctl_q[0];");
    let _ = writeln!(w, "    wire sh = ctl_q[1];");
    if isw > 0 {
        let _ = writeln!(w, "\n    // input shift register, {DIN_BITS} bits per load cycle");
        let _ = writeln!(w, "    reg  [{}:0] isr;", isw - 1);
        if isw > DIN_BITS {
            let _ = writeln!(w, "    always @(posedge clk) if (ld) isr <= {{isr[{}:0], din}};", isw - DIN_BITS - 1);
        } else {
            let _ = writeln!(w, "    always @(posedge clk) if (ld) isr <= din;");
        }
    }
    let _ = writeln!(w);
    for port in m.ports.iter().filter(|q| q.direction == Direction::Output) {
        if port.width == 1 {
            let _ = writeln!(w, "    wire        dut_{};", port.name);
        } else {
            let _ = writeln!(w, "    wire [{}:0] dut_{};", port.width - 1, port.name);
        }
    }
    let _ = writeln!(w);
    if keep_hierarchy {
        let _ = writeln!(w, "    (* keep_hierarchy *)");
    }
    if m.parameters.is_empty() {
        let _ = writeln!(w, "    {} u_dut (", m.top);
    } else {
        let params: Vec<String> = m.parameters.iter().map(|(k, val)| format!(".{k}({val})")).collect();
        let _ = writeln!(w, "    {} #({}) u_dut (", m.top, params.join(", "));
    }
    let mut conns = Vec::new();
    for port in &m.ports {
        let src = match port.direction {
            Direction::Input if port.name == p.clock => "clk".to_string(),
            Direction::Input => {
                if let Some(i) = p.ctl_inputs.iter().position(|n| *n == port.name) {
                    format!("ctl_q[{}]", i + 2)
                } else {
                    let (_, width, lsb) = p.shifted_inputs.iter().find(|(n, _, _)| *n == port.name).expect("planned");
                    format!("isr{}", range(*lsb, *width))
                }
            }
            Direction::Output => format!("dut_{}", port.name),
        };
        conns.push(format!("        .{}({})", port.name, src));
    }
    let _ = writeln!(w, "{}", conns.join(",\n"));
    let _ = writeln!(w, "    );");

    let _ = writeln!(w, "\n    // registered 1-bit outputs");
    let _ = writeln!(w, "    reg  [{}:0] sts_q = {STS_BITS}'d0;", STS_BITS - 1);
    let mut sts_bits: Vec<String> = p.sts_outputs.iter().map(|n| format!("dut_{n}")).collect();
    sts_bits.reverse();
    let pad = STS_BITS - p.sts_outputs.len() as u32;
    if pad > 0 {
        sts_bits.insert(0, format!("{pad}'d0"));
    }
    let _ = writeln!(w, "    always @(posedge clk) sts_q <= {{{}}};", sts_bits.join(", "));
    let _ = writeln!(w, "    assign sts = sts_q;");

    if osw > 0 {
        let cap = if p.capture_on_handshake {
            let i = p.ctl_inputs.iter().position(|n| n == "y_ready_i").expect("planned");
            format!("dut_y_valid_o & ctl_q[{}]", i + 2)
        } else {
            "~sh".to_string()
        };
        let mut outs: Vec<String> = p.shifted_outputs.iter().map(|(n, _, _)| format!("dut_{n}")).collect();
        outs.reverse();
        if osw > p.out_bits {
            outs.insert(0, format!("{}'d0", osw - p.out_bits));
        }
        // The outputs and the capture strobe are registered once before the shift register, so the
        // array's output paths end at a register next to it, not at a fan-out across the chip.
        let _ = writeln!(w, "\n    // output shift register: capture (through one register stage), then {DOUT_BITS} bits per shift cycle");
        let _ = writeln!(w, "    reg  cap_q;");
        let _ = writeln!(w, "    reg  [{}:0] out_q;", osw - 1);
        let _ = writeln!(w, "    always @(posedge clk) begin");
        let _ = writeln!(w, "        cap_q <= {cap};");
        let _ = writeln!(w, "        out_q <= {{{}}};", outs.join(", "));
        let _ = writeln!(w, "    end");
        let _ = writeln!(w, "    reg  [{}:0] osr;", osw - 1);
        let _ = writeln!(w, "    always @(posedge clk)");
        let _ = writeln!(w, "        if (cap_q) osr <= out_q;");
        if osw > DOUT_BITS {
            let _ = writeln!(w, "        else if (sh) osr <= {{{DOUT_BITS}'d0, osr[{}:{DOUT_BITS}]}};", osw - 1);
        }
        let _ = writeln!(w, "    assign dout = osr[{}:0];", DOUT_BITS - 1);
    } else {
        let _ = writeln!(w, "    assign dout = {DOUT_BITS}'d0;");
    }
    let _ = writeln!(w, "endmodule");
    Ok(v)
}
