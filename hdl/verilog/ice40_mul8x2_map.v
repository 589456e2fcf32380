// Yosys techmap rule: qmac's paired 8x8 product unit (`<prefix>_mul8x2`, hdl/src/units/mul8x2.rs) as
// one iCE40 SB_MAC16 in its dual 8x8 mode. qmac synth writes this file into the synthesis directory
// and, for iCE40 targets whose design contains the unit, runs
//
//   read_verilog -lib -D QMAC_MUL8X2_STUB <this file>             (before hierarchy)
//   techmap -D QMAC_MUL8X2=<module> -D QMAC_X_SIGNED=<0|1> -D QMAC_Y_SIGNED=<0|1> -map <this file>
//   synth_ice40 ...
//   chtype -map QMAC_SB_MAC16_DUAL SB_MAC16
//
// The rule places a QMAC_SB_MAC16_DUAL, a black box with the ports and parameters of SB_MAC16, which
// becomes an SB_MAC16 only after synth_ice40: its ice40_dsp pass (with -dsp) takes every SB_MAC16 it
// finds as a 16x16 multiplier and rewrites its parameters (MODE_8x8 = 0 among them).
//
// The unit computes p0 <= x0 * y0 and p1 <= x1 * y1 (8-bit operands, 16-bit registered products).
// In the block (Yosys' SB_MAC16 model, share/ice40/cells_sim.v): with MODE_8x8 = 1 the upper bytes
// A[15:8] x B[15:8] form product F and the lower bytes A[7:0] x B[7:0] product G, each byte
// sign-extended when A_SIGNED (B_SIGNED) is set, so one parameter sets the signedness of a side for
// both products. TOP_8x8_MULT_REG / BOT_8x8_MULT_REG register F and G inside the block (the unit's
// register), and the output selects 2 put F on O[31:16] and G on O[15:0]. The adders, the
// accumulator and the 16x16 pipeline registers are unused.
//
// generator/tests/mul8x2_map.rs runs these steps (synth_ice40 with -dsp) and simulates the result
// with Yosys' model over every operand pair of both products for every signedness.

`ifdef QMAC_MUL8X2_STUB

(* blackbox *)
module QMAC_SB_MAC16_DUAL (
    input  wire        CLK, CE,
    input  wire [15:0] C, A, B, D,
    input  wire        AHOLD, BHOLD, CHOLD, DHOLD,
    input  wire        IRSTTOP, IRSTBOT,
    input  wire        ORSTTOP, ORSTBOT,
    input  wire        OLOADTOP, OLOADBOT,
    input  wire        ADDSUBTOP, ADDSUBBOT,
    input  wire        OHOLDTOP, OHOLDBOT,
    input  wire        CI, ACCUMCI, SIGNEXTIN,
    output wire [31:0] O,
    output wire        CO, ACCUMCO, SIGNEXTOUT
);
    parameter [0:0] NEG_TRIGGER = 0;
    parameter [0:0] C_REG = 0;
    parameter [0:0] A_REG = 0;
    parameter [0:0] B_REG = 0;
    parameter [0:0] D_REG = 0;
    parameter [0:0] TOP_8x8_MULT_REG = 0;
    parameter [0:0] BOT_8x8_MULT_REG = 0;
    parameter [0:0] PIPELINE_16x16_MULT_REG1 = 0;
    parameter [0:0] PIPELINE_16x16_MULT_REG2 = 0;
    parameter [1:0] TOPOUTPUT_SELECT = 0;
    parameter [1:0] TOPADDSUB_LOWERINPUT = 0;
    parameter [0:0] TOPADDSUB_UPPERINPUT = 0;
    parameter [1:0] TOPADDSUB_CARRYSELECT = 0;
    parameter [1:0] BOTOUTPUT_SELECT = 0;
    parameter [1:0] BOTADDSUB_LOWERINPUT = 0;
    parameter [0:0] BOTADDSUB_UPPERINPUT = 0;
    parameter [1:0] BOTADDSUB_CARRYSELECT = 0;
    parameter [0:0] MODE_8x8 = 0;
    parameter [0:0] A_SIGNED = 0;
    parameter [0:0] B_SIGNED = 0;
endmodule

`else

// The rule is named after the unit, so it replaces exactly the unit's instances.
module `QMAC_MUL8X2 (
    input  wire        clk_i,
    input  wire [7:0]  x0_i,
    input  wire [7:0]  y0_i,
    input  wire [7:0]  x1_i,
    input  wire [7:0]  y1_i,
    output wire [15:0] p0_o,
    output wire [15:0] p1_o
);
    wire [31:0] o;

    QMAC_SB_MAC16_DUAL #(
        .NEG_TRIGGER(1'b0),
        .C_REG(1'b0),
        .A_REG(1'b0),
        .B_REG(1'b0),
        .D_REG(1'b0),
        .TOP_8x8_MULT_REG(1'b1),
        .BOT_8x8_MULT_REG(1'b1),
        .PIPELINE_16x16_MULT_REG1(1'b0),
        .PIPELINE_16x16_MULT_REG2(1'b0),
        .TOPOUTPUT_SELECT(2'd2),
        .TOPADDSUB_LOWERINPUT(2'd0),
        .TOPADDSUB_UPPERINPUT(1'b0),
        .TOPADDSUB_CARRYSELECT(2'd0),
        .BOTOUTPUT_SELECT(2'd2),
        .BOTADDSUB_LOWERINPUT(2'd0),
        .BOTADDSUB_UPPERINPUT(1'b0),
        .BOTADDSUB_CARRYSELECT(2'd0),
        .MODE_8x8(1'b1),
        .A_SIGNED(`QMAC_X_SIGNED ? 1'b1 : 1'b0),
        .B_SIGNED(`QMAC_Y_SIGNED ? 1'b1 : 1'b0)
    ) _TECHMAP_REPLACE_ (
        .CLK(clk_i),
        .CE(1'b1),
        .C(16'd0),
        .A({x1_i, x0_i}),
        .B({y1_i, y0_i}),
        .D(16'd0),
        .AHOLD(1'b0),
        .BHOLD(1'b0),
        .CHOLD(1'b0),
        .DHOLD(1'b0),
        .IRSTTOP(1'b0),
        .IRSTBOT(1'b0),
        .ORSTTOP(1'b0),
        .ORSTBOT(1'b0),
        .OLOADTOP(1'b0),
        .OLOADBOT(1'b0),
        .ADDSUBTOP(1'b0),
        .ADDSUBBOT(1'b0),
        .OHOLDTOP(1'b0),
        .OHOLDBOT(1'b0),
        .CI(1'b0),
        .ACCUMCI(1'b0),
        .SIGNEXTIN(1'b0),
        .O(o),
        .CO(),
        .ACCUMCO(),
        .SIGNEXTOUT()
    );

    assign p0_o = o[15:0];
    assign p1_o = o[31:16];
endmodule

`endif
