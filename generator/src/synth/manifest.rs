//! The parts of a build directory the flow reads: `manifest.json` and `filelist.f` (docs/interface.md).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::target_defaults::TargetRecord;
use super::SynthError;

/// Direction of a top-level port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Input port.
    Input,
    /// Output port.
    Output,
}

/// One top-level port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// Verilog port name.
    pub name: String,
    /// Direction.
    pub direction: Direction,
    /// Width in bits (at least 1).
    pub width: u32,
}

/// The fields of `manifest.json` the flow uses; everything else is kept as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Generator name and version.
    #[serde(default)]
    pub generator: String,
    /// Top module name.
    pub top: String,
    /// The configuration (kept verbatim).
    #[serde(default)]
    pub config: serde_json::Value,
    /// Derived values; `macs_per_cycle` is used.
    #[serde(default)]
    pub derived: serde_json::Value,
    /// Top-level ports.
    pub ports: Vec<Port>,
    /// RTL files (informational; `filelist.f` is authoritative).
    #[serde(default)]
    pub files: Vec<String>,
    /// Verilog parameter overrides for the top (used by the baseline build directory only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, i64>,
    /// The target the design was generated for (`qmac generate --target`): its name, DSP policy and
    /// the fields its defaults set; checked against `config` on reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRecord>,
}

impl Manifest {
    /// Reads and checks `<build_dir>/manifest.json`.
    pub fn read(build_dir: &Path) -> Result<Manifest, SynthError> {
        let path = build_dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| SynthError::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| SynthError::Manifest { path: path.clone(), message: e.to_string() })?;
        m.check().map_err(|message| SynthError::Manifest { path, message })?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        if !is_identifier(&self.top) {
            return Err(format!("top `{}` is not a Verilog identifier", self.top));
        }
        if self.ports.is_empty() {
            return Err("no ports".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.ports {
            if !is_identifier(&p.name) {
                return Err(format!("port `{}` is not a Verilog identifier", p.name));
            }
            if p.width == 0 {
                return Err(format!("port `{}` has width 0", p.name));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(format!("port `{}` is listed twice", p.name));
            }
        }
        for k in self.parameters.keys() {
            if !is_identifier(k) {
                return Err(format!("parameter `{k}` is not a Verilog identifier"));
            }
        }
        if let Some(t) = &self.target {
            t.check(&self.config)?;
        }
        Ok(())
    }

    /// `derived.macs_per_cycle`, if present.
    pub fn macs_per_cycle(&self) -> Option<f64> {
        self.derived.get("macs_per_cycle").and_then(|v| v.as_f64())
    }

    /// Finds an unsigned integer named `key` in `config` (searched depth first), then in `derived`.
    pub fn find_u64(&self, key: &str) -> Option<u64> {
        find_u64(&self.config, key).or_else(|| find_u64(&self.derived, key))
    }

    /// The port named `name`.
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }
}

fn find_u64(v: &serde_json::Value, key: &str) -> Option<u64> {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(x) = map.get(key).and_then(|x| x.as_u64()) {
                return Some(x);
            }
            map.values().find_map(|x| find_u64(x, key))
        }
        _ => None,
    }
}

/// True for a plain (not escaped) Verilog identifier.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Reads `<build_dir>/filelist.f`: one path per line relative to the build directory, `#` or `//`
/// comments and blank lines ignored. Every file must exist.
pub fn read_filelist(build_dir: &Path) -> Result<Vec<String>, SynthError> {
    let path = build_dir.join("filelist.f");
    let text = std::fs::read_to_string(&path).map_err(|e| SynthError::io(&path, e))?;
    let mut files = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let bad =
            |why: &str| SynthError::Filelist { path: path.clone(), line: n + 1, message: format!("`{line}`: {why}") };
        if line.starts_with('+') || line.starts_with('-') {
            return Err(bad("options are not supported; list one RTL file per line"));
        }
        if line.contains(char::is_whitespace) || line.contains('"') {
            return Err(bad("spaces or quotes in a path are not supported"));
        }
        if Path::new(line).is_absolute() {
            return Err(bad("absolute path; paths must be relative to the build directory (YoWASP tools only see it)"));
        }
        if !build_dir.join(line).is_file() {
            return Err(bad("no such file (relative to the build directory)"));
        }
        files.push(line.to_string());
    }
    if files.is_empty() {
        return Err(SynthError::Filelist { path, line: 0, message: "no files listed".into() });
    }
    Ok(files)
}
