//! The handwritten baseline (`hdl/verilog/baseline_plain_array.v`) as a build directory of its own,
//! so it goes through exactly the same flow and board wrapper as a generated array.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::manifest::Manifest;
use super::SynthError;

/// The baseline RTL (both modules), embedded at compile time.
pub const BASELINE_RTL: &str = include_str!("../../../hdl/verilog/baseline_plain_array.v");
/// The baseline's top module (docs/interface.md stream ports, no parameter port).
pub const BASELINE_TOP: &str = "baseline_plain_top";
/// The baseline's accumulator width.
pub const BASELINE_ACC_BITS: u32 = 24;

/// Shape and precision of a baseline array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineShape {
    /// Rows (activation broadcast along a row).
    pub rows: u32,
    /// Columns (weight broadcast down a column).
    pub cols: u32,
    /// Products summed per cell per cycle.
    pub lanes: u32,
    /// Weight bits.
    pub weight_bits: u32,
    /// Activation bits.
    pub act_bits: u32,
    /// Accumulator bits.
    pub acc_bits: u32,
}

impl BaselineShape {
    /// A `rows` x `cols` array with one lane and a 24-bit accumulator.
    pub fn new(rows: u32, cols: u32, weight_bits: u32, act_bits: u32) -> BaselineShape {
        BaselineShape { rows, cols, lanes: 1, weight_bits, act_bits, acc_bits: BASELINE_ACC_BITS }
    }

    /// The baseline with the same shape and precision as a generated design: `rows`, `cols`, `lanes`
    /// (default 1), `weight_bits`, `act_bits` are looked up by name in the manifest's `config` (at any
    /// depth), then in `derived`.
    pub fn from_manifest(m: &Manifest) -> Result<BaselineShape, SynthError> {
        let get = |k: &str| -> Result<u32, SynthError> {
            m.find_u64(k).map(|v| v as u32).ok_or_else(|| SynthError::Baseline {
                message: format!("the manifest of `{}` has no config `{k}`, needed to shape the baseline", m.top),
            })
        };
        let shape = BaselineShape {
            rows: get("rows")?,
            cols: get("cols")?,
            lanes: m.find_u64("lanes").map(|v| v as u32).unwrap_or(1),
            weight_bits: get("weight_bits")?,
            act_bits: get("act_bits")?,
            acc_bits: BASELINE_ACC_BITS,
        };
        shape.check()?;
        Ok(shape)
    }

    /// Checks the ranges the RTL supports.
    pub fn check(&self) -> Result<(), SynthError> {
        let bad = |message: String| Err(SynthError::Baseline { message });
        if self.rows == 0 || self.cols == 0 || self.lanes == 0 {
            return bad(format!(
                "rows, cols and lanes must be at least 1 (got {}x{}x{})",
                self.rows, self.cols, self.lanes
            ));
        }
        if !(1..=16).contains(&self.weight_bits) || !(1..=16).contains(&self.act_bits) {
            return bad(format!("weight/activation bits must be 1..=16 (got {}/{})", self.weight_bits, self.act_bits));
        }
        if self.acc_bits < self.weight_bits + self.act_bits + 1 || self.acc_bits > 32 {
            return bad(format!("accumulator of {} bits is too narrow or wider than 32", self.acc_bits));
        }
        Ok(())
    }

    /// MACs per cycle.
    pub fn macs_per_cycle(&self) -> u64 {
        self.rows as u64 * self.cols as u64 * self.lanes as u64
    }

    /// The manifest of the baseline build directory.
    pub fn manifest(&self) -> Manifest {
        let ports = json!([
            {"name": "clk_i", "direction": "input", "width": 1},
            {"name": "rst_i", "direction": "input", "width": 1},
            {"name": "a_data_i", "direction": "input", "width": self.rows * self.lanes * self.act_bits},
            {"name": "a_last_i", "direction": "input", "width": 1},
            {"name": "a_valid_i", "direction": "input", "width": 1},
            {"name": "a_ready_o", "direction": "output", "width": 1},
            {"name": "w_data_i", "direction": "input", "width": self.cols * self.lanes * self.weight_bits},
            {"name": "w_valid_i", "direction": "input", "width": 1},
            {"name": "w_ready_o", "direction": "output", "width": 1},
            {"name": "y_data_o", "direction": "output", "width": self.cols * self.acc_bits},
            {"name": "y_last_o", "direction": "output", "width": 1},
            {"name": "y_valid_o", "direction": "output", "width": 1},
            {"name": "y_ready_i", "direction": "input", "width": 1},
        ]);
        let value = json!({
            "generator": "qmac baseline (hdl/verilog/baseline_plain_array.v)",
            "top": BASELINE_TOP,
            "config": {
                "kind": "baseline",
                "rows": self.rows, "cols": self.cols, "lanes": self.lanes,
                "weight_bits": self.weight_bits, "act_bits": self.act_bits, "acc_bits": self.acc_bits,
            },
            "derived": {"macs_per_cycle": self.macs_per_cycle(), "acc_bits": self.acc_bits, "latency": 1},
            "ports": ports,
            "files": ["rtl/baseline_plain_array.v"],
            "parameters": {
                "ROWS": self.rows, "COLS": self.cols, "LANES": self.lanes,
                "WB": self.weight_bits, "AB": self.act_bits, "ACC": self.acc_bits,
            },
        });
        serde_json::from_value(value).expect("the baseline manifest is well formed")
    }

    /// Writes a build directory for the baseline into `dir` (created if missing): `rtl/`,
    /// `filelist.f`, `manifest.json`.
    pub fn write_build_dir(&self, dir: &Path) -> Result<(), SynthError> {
        self.check()?;
        let rtl = dir.join("rtl");
        std::fs::create_dir_all(&rtl).map_err(|e| SynthError::io(&rtl, e))?;
        let write = |p: &Path, text: &str| std::fs::write(p, text).map_err(|e| SynthError::io(p, e));
        write(&rtl.join("baseline_plain_array.v"), BASELINE_RTL)?;
        write(&dir.join("filelist.f"), "rtl/baseline_plain_array.v\n")?;
        let manifest = serde_json::to_string_pretty(&self.manifest()).expect("serialises") + "\n";
        write(&dir.join("manifest.json"), &manifest)?;
        Ok(())
    }
}
