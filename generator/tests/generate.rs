//! The emitted text: deterministic, readable names, the header, and snapshots of the named configs in
//! `configs/` for review (correctness comes from lint, synthesis and co-simulation, not from these).

use qmac::config::{Config, RawConfig};
use qmac::emit::generate;
use std::path::Path;

fn named_configs() -> Vec<(String, Config)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut out: Vec<(String, Config)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().to_string(), Config::from_file(&p).unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 4, "configs/ should hold the named configurations");
    out
}

#[test]
fn output_is_byte_identical_for_the_same_config() {
    for (_, cfg) in named_configs() {
        let a = generate(&cfg);
        let b = generate(&Config::new((*cfg).clone()).unwrap());
        assert_eq!(a, b);
    }
}

#[test]
fn config_toml_regenerates_the_same_design() {
    for (name, cfg) in named_configs() {
        let g = generate(&cfg);
        let again = Config::from_toml(&g.config, &name).unwrap();
        assert_eq!(generate(&again), g, "{name}");
    }
}

#[test]
fn names_are_structural_and_free_of_dollars() {
    let cfg = Config::default();
    let g = generate(&cfg);
    for (path, text) in &g.rtl {
        let without_casts = text.replace("$signed(", "").replace("$unsigned(", "");
        assert!(!without_casts.contains('$'), "{path} has a `$` outside a signed cast");
        assert!(!text.contains("initial"), "{path}: no initial blocks");
        assert!(text.contains("// Configuration:") && text.contains(&format!("//   latency = {}", cfg.latency())), "{path}: header");
        let module = path.trim_start_matches("rtl/").trim_end_matches(".v");
        assert!(text.contains(&format!("module {module} (")), "{path}: one module named after its file");
        assert_eq!(text.matches("\nmodule ").count(), 1, "{path}: one module per file");
    }
    let array = &g.rtl.iter().find(|(p, _)| p.ends_with("qmac_array.v")).unwrap().1;
    assert!(array.contains("begin : g_row") && array.contains("begin : g_col") && array.contains("qmac_pe u_pe ("));
    let ctrl = &g.rtl.iter().find(|(p, _)| p.ends_with("qmac_ctrl.v")).unwrap().1;
    assert!(ctrl.contains("if (rst_i) begin"), "synchronous reset");
    assert!(!g.rtl.iter().any(|(_, t)| t.contains("posedge rst") || t.contains("negedge")), "no asynchronous reset");
}

#[test]
fn manifest_describes_ports_and_derived_values() {
    let cfg = Config::new(RawConfig { rows: 3, cols: 5, lanes: 2, ..RawConfig::default() }).unwrap();
    let g = generate(&cfg);
    let m: serde_json::Value = serde_json::from_str(&g.manifest).unwrap();
    assert_eq!(m["top"], "qmac_top");
    assert_eq!(m["derived"]["latency"], cfg.latency());
    assert_eq!(m["derived"]["acc_bits"], cfg.acc_bits());
    assert_eq!(m["derived"]["macs_per_cycle"], 30);
    let port = |n: &str| m["ports"].as_array().unwrap().iter().find(|p| p["name"] == n).unwrap()["width"].as_u64().unwrap();
    assert_eq!(port("a_data_i"), 3 * 2 * 4);
    assert_eq!(port("w_data_i"), 5 * 2 * 4);
    assert_eq!(port("y_data_o"), 5 * 4);
    assert_eq!(port("prm_addr_i"), u64::from(cfg.prm_addr_bits()));
    assert_eq!(g.filelist.lines().last(), Some("rtl/qmac_top.v"));
}

#[test]
fn snapshots_of_named_configs() {
    for (name, cfg) in named_configs() {
        let g = generate(&cfg);
        for (path, text) in &g.rtl {
            let unit = path.trim_start_matches("rtl/").trim_end_matches(".v");
            if ["qmac_pe", "qmac_top", "qmac_requant", "qmac_thresh", "qmac_ctrl", "qmac_combine", "qmac_mul8x2"].contains(&unit) {
                insta::assert_snapshot!(format!("{name}__{unit}"), text);
            }
        }
    }
}

/// Bit-plane lane products are the default where they apply and `bit_planes = false` keeps the lane
/// multipliers. W2A2 x 4 lanes (two's complement weights, unsigned activations): classes of 4, 8 and
/// 4 partial products, popcounts of 1 and 2 levels (2 + 2 and 1 pair terms), the heaviest two classes'
/// counts two Horner adders from the dot product and the lightest one: 4 levels, 2 register stages
/// against 1 for a tree of 4 products (2 levels). W4A4 (16 partial products) keeps its multipliers.
#[test]
fn bit_plane_products_are_the_default_and_an_option() {
    let w2a2 = RawConfig { weight_bits: 2, act_bits: 2, lanes: 4, ..RawConfig::default() };
    let planes = Config::new(w2a2.clone()).unwrap();
    let mults = Config::new(RawConfig { bit_planes: false, ..w2a2 }).unwrap();
    assert_eq!(planes.latency(), mults.latency() + 1);
    assert!(!planes.to_toml().contains("bit_planes") && mults.to_toml().contains("bit_planes = false"));
    let pe = |c: &Config| generate(c).rtl.iter().find(|(n, _)| n == "rtl/qmac_pe.v").unwrap().1.clone();
    let (p, m) = (pe(&planes), pe(&mults));
    assert!(p.contains("wire [7:0] pp1 = ") && p.contains("(h0 - 6'd24)") && !p.contains("prod0_q"), "{p}");
    assert!(m.contains("prod0_q") && !m.contains("pp1"), "{m}");
    let w4a4 = Config::new(RawConfig::default()).unwrap();
    let w4a4_off = Config::new(RawConfig { bit_planes: false, ..RawConfig::default() }).unwrap();
    assert_eq!(pe(&w4a4).replace("//   bit_planes = false\n", ""), pe(&w4a4_off).replace("//   bit_planes = false\n", ""));
}
