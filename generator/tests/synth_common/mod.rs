//! Shared helpers of the synthesis tests: a hand-made build directory whose top follows the ports of
//! docs/interface.md (a tiny 2x2 array, so place and route takes seconds).

#![allow(dead_code)]

use std::path::Path;

/// Rows, cols, lanes, act bits, weight bits, out bits, parameter address/data bits of the placeholder.
pub const R: u32 = 2;
pub const C: u32 = 2;
pub const L: u32 = 1;
pub const AB: u32 = 2;
pub const WB: u32 = 2;
pub const OB: u32 = 4;
pub const PA: u32 = 3;
pub const PD: u32 = 8;

/// A small but complete top with the interface ports: per cell an 8-bit accumulator of signed
/// products, per column a bias; rows come out one per beat after the last step, `out = (acc + bias)
/// >> 4` truncated to OB bits.
pub const PLACEHOLDER_TOP: &str = r#"
module qmac_pe (
    input  wire        clk_i,
    input  wire        clr_i,
    input  wire        en_i,
    input  wire [1:0]  w_i,
    input  wire [1:0]  a_i,
    output reg  [7:0]  acc_o
);
    wire signed [3:0] p = $signed(w_i) * $signed(a_i);
    always @(posedge clk_i)
        if (clr_i) acc_o <= 8'd0;
        else if (en_i) acc_o <= acc_o + {{4{p[3]}}, p};
endmodule

module qmac_top (
    input  wire        clk_i,
    input  wire        rst_i,
    input  wire [3:0]  a_data_i,
    input  wire        a_last_i,
    input  wire        a_valid_i,
    output wire        a_ready_o,
    input  wire [3:0]  w_data_i,
    input  wire        w_valid_i,
    output wire        w_ready_o,
    input  wire        prm_we_i,
    input  wire [2:0]  prm_addr_i,
    input  wire [7:0]  prm_wdata_i,
    output wire [7:0]  y_data_o,
    output wire        y_last_o,
    output wire        y_valid_o,
    input  wire        y_ready_i
);
    reg       drain;
    reg       row;
    reg [7:0] bias0, bias1;
    wire beat = a_valid_i & w_valid_i & ~drain;
    wire fire = drain & y_ready_i;
    assign a_ready_o = w_valid_i & ~drain;
    assign w_ready_o = a_valid_i & ~drain;
    assign y_valid_o = drain;
    assign y_last_o  = drain & row;
    always @(posedge clk_i) begin
        if (prm_we_i && prm_addr_i[1:0] == 2'd0) begin
            if (prm_addr_i[2]) bias1 <= prm_wdata_i; else bias0 <= prm_wdata_i;
        end
        if (rst_i) begin
            drain <= 1'b0;
            row <= 1'b0;
        end else if (beat & a_last_i) begin
            drain <= 1'b1;
            row <= 1'b0;
        end else if (fire) begin
            if (row) drain <= 1'b0;
            row <= ~row;
        end
    end
    wire [7:0] acc00, acc01, acc10, acc11;
    qmac_pe pe00 (.clk_i(clk_i), .clr_i(rst_i | (fire & ~row)), .en_i(beat), .w_i(w_data_i[1:0]), .a_i(a_data_i[1:0]), .acc_o(acc00));
    qmac_pe pe01 (.clk_i(clk_i), .clr_i(rst_i | (fire & ~row)), .en_i(beat), .w_i(w_data_i[3:2]), .a_i(a_data_i[1:0]), .acc_o(acc01));
    qmac_pe pe10 (.clk_i(clk_i), .clr_i(rst_i | (fire &  row)), .en_i(beat), .w_i(w_data_i[1:0]), .a_i(a_data_i[3:2]), .acc_o(acc10));
    qmac_pe pe11 (.clk_i(clk_i), .clr_i(rst_i | (fire &  row)), .en_i(beat), .w_i(w_data_i[3:2]), .a_i(a_data_i[3:2]), .acc_o(acc11));
    wire [7:0] s0 = (row ? acc10 : acc00) + bias0;
    wire [7:0] s1 = (row ? acc11 : acc01) + bias1;
    assign y_data_o = {s1[7:4], s0[7:4]};
endmodule
"#;

/// The manifest of the placeholder (the shape of the generator's manifest.json).
pub fn manifest_json() -> String {
    let ports = [
        ("clk_i", "input", 1),
        ("rst_i", "input", 1),
        ("a_data_i", "input", R * L * AB),
        ("a_last_i", "input", 1),
        ("a_valid_i", "input", 1),
        ("a_ready_o", "output", 1),
        ("w_data_i", "input", C * L * WB),
        ("w_valid_i", "input", 1),
        ("w_ready_o", "output", 1),
        ("prm_we_i", "input", 1),
        ("prm_addr_i", "input", PA),
        ("prm_wdata_i", "input", PD),
        ("y_data_o", "output", C * OB),
        ("y_last_o", "output", 1),
        ("y_valid_o", "output", 1),
        ("y_ready_i", "input", 1),
    ];
    let ports: Vec<serde_json::Value> =
        ports.iter().map(|(n, d, w)| serde_json::json!({"name": n, "direction": d, "width": w})).collect();
    let m = serde_json::json!({
        "generator": "synth test placeholder",
        "top": "qmac_top",
        "config": {"rows": R, "cols": C, "lanes": L, "weight_bits": WB, "act_bits": AB, "out_bits": OB},
        "derived": {"macs_per_cycle": R * C * L, "acc_bits": 8, "latency": 1},
        "ports": ports,
        "files": ["rtl/qmac_top.v"],
    });
    serde_json::to_string_pretty(&m).unwrap()
}

/// Writes the placeholder build directory into `dir`.
pub fn write_build_dir(dir: &Path) {
    write_build_dir_with(dir, PLACEHOLDER_TOP);
}

/// Writes a build directory with `verilog` as its only RTL file.
pub fn write_build_dir_with(dir: &Path, verilog: &str) {
    std::fs::create_dir_all(dir.join("rtl")).unwrap();
    std::fs::write(dir.join("rtl/qmac_top.v"), verilog).unwrap();
    std::fs::write(dir.join("filelist.f"), "rtl/qmac_top.v\n").unwrap();
    std::fs::write(dir.join("manifest.json"), manifest_json()).unwrap();
}

/// A minimal well-formedness check of XML: every tag closed in order, attributes quoted, one root.
pub fn check_xml(text: &str) -> Result<usize, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0;
    let mut rest = text;
    let mut roots = 0;
    while let Some(i) = rest.find('<') {
        let between = &rest[..i];
        if stack.is_empty() && !between.trim().is_empty() {
            return Err(format!("text outside the root: {between:?}"));
        }
        rest = &rest[i..];
        let end = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or_else(|| format!("closing </{name}> without an open tag"))?;
            if open != name.trim() {
                return Err(format!("</{name}> closes <{open}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body.split_whitespace().next().ok_or("empty tag")?.to_string();
        if body.matches('"').count() & 1 == 1 {
            return Err(format!("unbalanced quotes in <{body}>"));
        }
        if body.contains('<') || body.contains('&') && !body.contains("&amp;") && !body.contains("&lt;") {
            return Err(format!("bad character in <{body}>"));
        }
        elements += 1;
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name);
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed tags: {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(elements)
}
