// Handwritten baseline for `qmac synth --baseline`: a plain behavioural ROWS x COLS MAC array.
//
// Every cell (r, c) keeps an ACC-bit signed accumulator and does, once per accepted beat,
//     acc <= acc + sum over lanes l of w[c][l] * a[r][l]
// with the weights broadcast down each column and the activations broadcast along each row.
// Operand encoding (the same as the qmac arith crate):
//   * WB, AB >= 2: two's complement codes, product `$signed(w) * $signed(a)`;
//   * a 1-bit operand is binary +-1 (code 1 = +1, code 0 = -1);
//   * WB = AB = 1: the product is +1 when the bits are equal and -1 otherwise (xnor).
// No requantisation, no pipelining, no clever packing: this is the reference point the generated
// arrays are compared against (LUTs per MAC, fmax), with the same board wrapper around both.
//
// Two modules:
//   baseline_plain_array  the R x C array with a row read-out port (array-indexed mux)
//   baseline_plain_top    the same array behind the stream interface of docs/interface.md
//                         (a_*/w_* joined streams, y_* output stream of one row per beat, C*ACC bits)
//
// Verilog-2005; no `default_nettype` change so it can be read together with any other sources.

module baseline_plain_array #(
    parameter integer ROWS  = 8,
    parameter integer COLS  = 8,
    parameter integer LANES = 1,
    parameter integer WB    = 4,
    parameter integer AB    = 4,
    parameter integer ACC   = 24,
    parameter integer RSW   = (ROWS > 1) ? $clog2(ROWS) : 1
) (
    input  wire                      clk_i,
    input  wire                      rst_i,   // clears every accumulator
    input  wire                      en_i,    // accumulate a_i x w_i this cycle
    input  wire [ROWS*LANES*AB-1:0]  a_i,     // row r, lane l at [(r*LANES+l)*AB +: AB]
    input  wire [COLS*LANES*WB-1:0]  w_i,     // column c, lane l at [(c*LANES+l)*WB +: WB]
    input  wire [RSW-1:0]            rsel_i,  // row shown on row_o
    input  wire                      rclr_i,  // clear row rsel_i (after it has been read)
    output wire [COLS*ACC-1:0]       row_o    // column c of row rsel_i at [c*ACC +: ACC]
);
    // Read-out bus per row, indexed as an array (an indexed part-select costs far more LUTs).
    wire [COLS*ACC-1:0] rows_w [0:ROWS-1];
    assign row_o = rows_w[rsel_i];

    // Product width per operand case, and the lane sum's width.
    localparam integer PW = (WB == 1 && AB == 1) ? 2 : (WB == 1) ? AB + 1 : (AB == 1) ? WB + 1 : WB + AB;
    localparam integer SW = (LANES > 1) ? PW + $clog2(LANES) : PW;

    genvar r, c, l;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : g_row
            wire clr_row = rst_i | (rclr_i & ({{(32-RSW){1'b0}}, rsel_i} == r));
            for (c = 0; c < COLS; c = c + 1) begin : g_col
                wire signed [SW-1:0] sum [0:LANES];
                assign sum[0] = {SW{1'b0}};
                for (l = 0; l < LANES; l = l + 1) begin : g_lane
                    wire [WB-1:0] w = w_i[(c*LANES+l)*WB +: WB];
                    wire [AB-1:0] a = a_i[(r*LANES+l)*AB +: AB];
                    wire signed [PW-1:0] p;
                    if (WB == 1 && AB == 1) begin : g_xnor
                        // +1 when the bits are equal, -1 otherwise
                        assign p = {w[0] ^ a[0], 1'b1};
                    end else if (WB == 1) begin : g_wsign
                        wire signed [PW-1:0] ax = {a[AB-1], a};
                        assign p = w[0] ? ax : -ax;
                    end else if (AB == 1) begin : g_asign
                        wire signed [PW-1:0] wx = {w[WB-1], w};
                        assign p = a[0] ? wx : -wx;
                    end else begin : g_mul
                        // A separate product wire: without `keep`, Yosys 0.70 merges the multiply into the
                        // accumulator's adder as one ACC-bit wide $macc, which costs 1.7x the LUTs.
                        (* keep *) wire signed [PW-1:0] m = $signed(w) * $signed(a);
                        assign p = m;
                    end
                    /* verilator lint_off WIDTHEXPAND */
                    wire signed [SW-1:0] pe = p;  // sign extension (both signed)
                    /* verilator lint_on WIDTHEXPAND */
                    assign sum[l+1] = sum[l] + pe;
                end
                reg signed [ACC-1:0] acc;
                always @(posedge clk_i) begin
                    if (clr_row)
                        acc <= {ACC{1'b0}};
                    else if (en_i)
                        /* verilator lint_off WIDTHEXPAND */
                        acc <= acc + sum[LANES];  // signed + signed: sign-extended
                        /* verilator lint_on WIDTHEXPAND */
                end
                assign rows_w[r][c*ACC +: ACC] = acc;
            end
        end
    endgenerate
endmodule

/* verilator lint_off DECLFILENAME */
module baseline_plain_top #(
    parameter integer ROWS  = 8,
    parameter integer COLS  = 8,
    parameter integer LANES = 1,
    parameter integer WB    = 4,
    parameter integer AB    = 4,
    parameter integer ACC   = 24
) (
    input  wire                      clk_i,
    input  wire                      rst_i,
    input  wire [ROWS*LANES*AB-1:0]  a_data_i,
    input  wire                      a_last_i,
    input  wire                      a_valid_i,
    output wire                      a_ready_o,
    input  wire [COLS*LANES*WB-1:0]  w_data_i,
    input  wire                      w_valid_i,
    output wire                      w_ready_o,
    output wire [COLS*ACC-1:0]       y_data_o,
    output wire                      y_last_o,
    output wire                      y_valid_o,
    input  wire                      y_ready_i
);
    localparam integer RSW = (ROWS > 1) ? $clog2(ROWS) : 1;

    // Accumulate until the last beat of a tile, then drain the rows 0..ROWS-1 (clearing each
    // row as it is read); no overlap of accumulation and drain.
    reg           draining;
    reg [RSW-1:0] rsel;
    wire          beat   = a_valid_i & w_valid_i & ~draining;
    wire          y_fire = draining & y_ready_i;
    wire          last_row = ({{(32-RSW){1'b0}}, rsel} == ROWS - 1);

    assign a_ready_o = w_valid_i & ~draining;
    assign w_ready_o = a_valid_i & ~draining;
    assign y_valid_o = draining;
    assign y_last_o  = draining & last_row;

    always @(posedge clk_i) begin
        if (rst_i) begin
            draining <= 1'b0;
            rsel     <= {RSW{1'b0}};
        end else if (beat & a_last_i) begin
            draining <= 1'b1;
            rsel     <= {RSW{1'b0}};
        end else if (y_fire) begin
            if (last_row)
                draining <= 1'b0;
            else
                rsel <= rsel + 1'b1;
        end
    end

    baseline_plain_array #(
        .ROWS(ROWS), .COLS(COLS), .LANES(LANES), .WB(WB), .AB(AB), .ACC(ACC), .RSW(RSW)
    ) u_array (
        .clk_i (clk_i),
        .rst_i (rst_i),
        .en_i  (beat),
        .a_i   (a_data_i),
        .w_i   (w_data_i),
        .rsel_i(rsel),
        .rclr_i(y_fire),
        .row_o (y_data_o)
    );
endmodule
