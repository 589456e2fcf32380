//! The one way qmac runs an external program (Verilator, make and g++, the testbench, Yosys, nextpnr,
//! the bitstream packers): started in a process group of its own with its output in a log file, given
//! a time limit that depends on the step ([`Limit`]), watched with a progress line on a terminal, and,
//! on timeout or when qmac itself is interrupted (SIGINT, SIGTERM, SIGHUP; see
//! [`install_interrupt_handler`]), killed together with everything it started. A step may also be
//! watched for a stall ([`Stall`]): a progress figure read from its log that stays the same for too
//! long ends it the same way, before its time limit.
//!
//! Every limit is multiplied by the timeout scale: `--timeout-scale` of the CLI
//! ([`set_timeout_scale`]), else the environment variable `QMAC_TIMEOUT_SCALE`, else 1.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The environment variable that scales every limit when `--timeout-scale` is not given.
pub const SCALE_VAR: &str = "QMAC_TIMEOUT_SCALE";
/// Smallest and largest timeout scale.
pub const SCALE_RANGE: std::ops::RangeInclusive<f64> = 0.001..=1000.0;
/// How often a running step reports on a terminal.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The kinds of tool step, each with its own default time limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `verilator --lint-only -Wall`.
    Lint,
    /// The Yosys structural check of `qmac check`.
    Check,
    /// Verilator translating the design to C++.
    Verilate,
    /// make and g++ compiling the simulation model.
    Compile,
    /// The testbench running the vector file.
    Simulate,
    /// Yosys synthesis.
    Synthesis,
    /// nextpnr place and route (each seed).
    PlaceRoute,
    /// icepack or ecppack.
    Pack,
    /// A tool's version query.
    Version,
}

impl Limit {
    /// Every kind, in flow order (for documentation and tests).
    pub const ALL: [Limit; 9] = [
        Limit::Lint,
        Limit::Check,
        Limit::Verilate,
        Limit::Compile,
        Limit::Simulate,
        Limit::Synthesis,
        Limit::PlaceRoute,
        Limit::Pack,
        Limit::Version,
    ];

    /// The limit before scaling.
    pub fn default_timeout(self) -> Duration {
        let minutes = match self {
            Limit::Lint | Limit::Check | Limit::Pack => 10,
            Limit::Verilate => 15,
            Limit::Compile | Limit::Simulate => 60,
            Limit::Synthesis | Limit::PlaceRoute => 120,
            Limit::Version => 1,
        };
        Duration::from_secs(60 * minutes)
    }

    /// The limit in force: the default times the timeout scale.
    pub fn timeout(self) -> Result<Duration, RunError> {
        Ok(self.default_timeout().mul_f64(timeout_scale()?))
    }
}

/// Why a program could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not be started.
    #[error("cannot start {tool} ({}): {source}", path.display())]
    Spawn {
        /// The program name.
        tool: String,
        /// Its path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Its log could not be created.
    #[error("cannot write log {}: {source}", path.display())]
    Log {
        /// The log path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It ran past its limit and was killed with every process it started.
    #[error(
        "{tool} timed out during {what} after {} s (the limit of this step; scale every limit with --timeout-scale or {SCALE_VAR}); it was stopped with every process it started; its output so far: {}",
        secs(*limit),
        log.display()
    )]
    TimedOut {
        /// The program name.
        tool: String,
        /// The step.
        what: String,
        /// The limit it ran into.
        limit: Duration,
        /// Its log.
        log: PathBuf,
    },
    /// Its progress figure ([`Stall`]) stayed the same for the stall limit; it was killed with every
    /// process it started.
    #[error(
        "{tool} made no progress during {what} for {} s ({figure} stayed at {value}; the limit scales with --timeout-scale or {SCALE_VAR}); it was stopped with every process it started; its output: {}",
        secs(*after),
        log.display()
    )]
    Stalled {
        /// The program name.
        tool: String,
        /// The step.
        what: String,
        /// What the progress figure counts.
        figure: &'static str,
        /// Its value all that time.
        value: u64,
        /// How long it stayed.
        after: Duration,
        /// Its log.
        log: PathBuf,
    },
    /// `QMAC_TIMEOUT_SCALE` is not a number in [`SCALE_RANGE`].
    #[error("{SCALE_VAR}={value:?} is invalid: {}", scale_allowed())]
    BadScale {
        /// The variable's value (capped).
        value: String,
    },
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// What a timeout scale may be.
pub fn scale_allowed() -> String {
    format!("allowed a number from {} to {} (every step's time limit is multiplied by it)", SCALE_RANGE.start(), SCALE_RANGE.end())
}

/// Parses a timeout scale (for the CLI's `--timeout-scale` and [`SCALE_VAR`]).
pub fn parse_scale(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if SCALE_RANGE.contains(&v) => Ok(v),
        _ => Err(format!("`{}` is not a timeout scale; {}", cap(s, 40), scale_allowed())),
    }
}

fn cap(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// 0 while unset; else the bits of the scale.
static SCALE: AtomicU64 = AtomicU64::new(0);

/// Sets the timeout scale for this process (the CLI's `--timeout-scale`); it takes precedence over
/// [`SCALE_VAR`].
pub fn set_timeout_scale(scale: f64) {
    SCALE.store(scale.to_bits(), Ordering::Relaxed);
}

/// The timeout scale in force: [`set_timeout_scale`], else [`SCALE_VAR`], else 1.
pub fn timeout_scale() -> Result<f64, RunError> {
    match SCALE.load(Ordering::Relaxed) {
        0 => match std::env::var(SCALE_VAR) {
            Ok(v) if !v.trim().is_empty() => parse_scale(&v).map_err(|_| RunError::BadScale { value: cap(&v, 40) }),
            _ => Ok(1.0),
        },
        bits => Ok(f64::from_bits(bits)),
    }
}

/// A running program's process group, the step it does and its log (for the interrupt message).
struct Running {
    group: i32,
    what: String,
    log: PathBuf,
}

static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn running() -> MutexGuard<'static, Vec<Running>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

fn kill_group(group: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// Installs the handler of SIGINT, SIGTERM and SIGHUP for the CLI: it kills the process group of
/// every running tool, says which steps were stopped, and exits with 128 + the signal number.
pub fn install_interrupt_handler() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let list = running();
            INTERRUPTED.store(true, Ordering::SeqCst);
            for r in list.iter() {
                kill_group(r.group);
                eprintln!("qmac: interrupted: stopped {} (log: {})", r.what, r.log.display());
            }
            if list.is_empty() {
                eprintln!("qmac: interrupted");
            }
            // the lock stays held: no other thread can start a tool before the process ends
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}

/// A step to run: which program, what it does, its time limit and its log.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// The program's name, for messages.
    pub tool: &'a str,
    /// What it does, for messages (`lint (--lint-only -Wall)`).
    pub what: &'a str,
    /// The kind of step, which sets the time limit.
    pub limit: Limit,
    /// Where stdout and stderr go (created or truncated; its directory is created).
    pub log: &'a Path,
    /// A stall watch, if the program's log shows its progress.
    pub stall: Option<Stall>,
}

/// A stall watch: every [`STALL_CHECK_EVERY`] the end of the log ([`STALL_TAIL`] bytes) is read and
/// `progress` gives the figure it shows, if any; a figure that stays the same for `after` (times the
/// timeout scale) ends the step with [`RunError::Stalled`]. No figure (yet) never counts as a stall.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    /// What the figure counts, for the message (`arcs left to route`).
    pub figure: &'static str,
    /// The figure in the end of the log, if it shows one.
    pub progress: fn(&str) -> Option<u64>,
    /// How long the figure may stay the same, before scaling.
    pub after: Duration,
}

/// How often a stall watch reads the log (at most; a quarter of its scaled limit if that is shorter).
pub const STALL_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How much of the end of the log a stall watch reads.
pub const STALL_TAIL: u64 = 8192;

/// A program that ran to its end.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status (the caller decides what a failure means).
    pub status: ExitStatus,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs `cmd` as `job`: its own process group, stdin empty, stdout and stderr into `job.log`. Returns
/// when it has exited (and anything it left running in its group is killed); on reaching the time
/// limit the whole group is killed and the error names the step, the limit and the log.
pub fn run(mut cmd: Command, job: Job) -> Result<Finished, RunError> {
    let limit = job.limit.timeout()?;
    let log_err = |source| RunError::Log { path: job.log.to_path_buf(), source };
    if let Some(d) = job.log.parent() {
        std::fs::create_dir_all(d).map_err(log_err)?;
    }
    let out = File::create(job.log).map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err)).process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|source| RunError::Spawn { tool: job.tool.to_string(), path: PathBuf::from(cmd.get_program()), source })?;
    let group = child.id() as i32;
    {
        let mut list = running();
        if INTERRUPTED.load(Ordering::SeqCst) {
            kill_group(group);
        }
        list.push(Running { group, what: format!("{} ({})", job.what, job.tool), log: job.log.to_path_buf() });
    }
    let forget = || running().retain(|r| r.group != group);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut next_report = PROGRESS_EVERY;
    let stall_after = match job.stall {
        Some(s) => Some(s.after.mul_f64(timeout_scale()?)),
        None => None,
    };
    let stall_every = stall_after.map_or(STALL_CHECK_EVERY, |a| STALL_CHECK_EVERY.min(a / 4));
    let mut next_stall_check = stall_every;
    // the figure last seen and since when
    let mut seen: Option<(u64, Instant)> = None;
    let mut pause = Duration::from_millis(2);
    loop {
        if exited(group) {
            break;
        }
        let elapsed = start.elapsed();
        if let (Some(stall), Some(after)) = (job.stall, stall_after) {
            if elapsed >= next_stall_check {
                next_stall_check = elapsed + stall_every;
                let now = read_log_tail(job.log, STALL_TAIL).ok().and_then(|t| (stall.progress)(&t));
                seen = match (now, seen) {
                    (Some(v), Some((old, since))) if v == old => Some((old, since)),
                    (Some(v), _) => Some((v, Instant::now())),
                    (None, _) => None,
                };
                if let Some((value, since)) = seen {
                    if since.elapsed() >= after {
                        kill_group(group);
                        let _ = child.wait();
                        forget();
                        return Err(RunError::Stalled {
                            tool: job.tool.to_string(),
                            what: job.what.to_string(),
                            figure: stall.figure,
                            value,
                            after: since.elapsed(),
                            log: job.log.to_path_buf(),
                        });
                    }
                }
            }
        }
        if elapsed >= limit {
            // the child is not reaped yet, so its pid (the group's id) cannot be reused
            kill_group(group);
            let _ = child.wait();
            forget();
            return Err(RunError::TimedOut { tool: job.tool.to_string(), what: job.what.to_string(), limit, log: job.log.to_path_buf() });
        }
        if terminal && elapsed >= next_report {
            eprintln!("qmac: {} running for {} s (limit {} s; log: {})", job.what, elapsed.as_secs(), secs(limit), job.log.display());
            next_report += PROGRESS_EVERY;
        }
        std::thread::sleep(pause.min(limit.saturating_sub(elapsed)));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    // whatever it left behind in its group goes with it
    kill_group(group);
    let status = child.wait().map_err(|source| RunError::Spawn { tool: job.tool.to_string(), path: PathBuf::from(cmd.get_program()), source })?;
    forget();
    Ok(Finished { status, elapsed: start.elapsed() })
}

/// Whether the group leader `pid` has exited, without reaping it.
fn exited(pid: i32) -> bool {
    // SAFETY: waitid fills the zeroed siginfo_t it is given; WNOWAIT leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        r != 0 || info.si_pid() != 0
    }
}

/// The end of a log, at most `max` bytes (the whole file when shorter), as text.
pub fn read_log_tail(log: &Path, max: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(log)?;
    let len = f.metadata()?.len();
    if len > max {
        f.seek(SeekFrom::Start(len - max))?;
    }
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Runs `program args` as a version query (limit [`Limit::Version`]) and returns what it printed;
/// `None` if it could not run or ran out of time.
pub fn capture(program: &Path, args: &[&str]) -> Option<String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let log = std::env::temp_dir().join(format!("qmac-version-{}-{}.log", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let mut cmd = Command::new(program);
    cmd.args(args);
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let done = run(cmd, Job { tool: &name, what: "version query", limit: Limit::Version, log: &log, stall: None });
    let text = read_log_tail(&log, 1 << 16).ok();
    let _ = std::fs::remove_file(&log);
    done.ok().and(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_parsing() {
        assert_eq!(parse_scale("2"), Ok(2.0));
        assert_eq!(parse_scale(" 0.5 "), Ok(0.5));
        for bad in ["0", "-1", "nan", "inf", "x", "1001"] {
            let e = parse_scale(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("0.001 to 1000"), "{e}");
        }
    }

    fn last_number(log: &str) -> Option<u64> {
        log.lines().last()?.trim().parse().ok()
    }

    fn watched(script: &str, dir: &Path) -> Result<Finished, RunError> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        let log = dir.join("tool.log");
        let stall = Stall { figure: "items left", progress: last_number, after: Duration::from_millis(400) };
        run(cmd, Job { tool: "sh", what: "counting", limit: Limit::Lint, log: &log, stall: Some(stall) })
    }

    #[test]
    fn a_figure_that_stays_the_same_stops_the_step() {
        let tmp = tempfile::tempdir().unwrap();
        // the figure moves for a while, then stays at 7 with the tool still printing
        let e = watched("for i in 3 2 1; do echo $i; sleep 0.2; done; while :; do echo 7; sleep 0.05; done", tmp.path()).unwrap_err();
        match &e {
            RunError::Stalled { value: 7, figure: "items left", after, .. } => assert!(*after >= Duration::from_millis(400), "{after:?}"),
            other => panic!("{other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("sh made no progress during counting") && msg.contains("items left stayed at 7"), "{msg}");
        // a figure that keeps moving, and a log without one, are left alone
        assert!(watched("i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo $i; sleep 0.02; done", tmp.path()).unwrap().status.success());
        assert!(watched("echo starting; sleep 1.2; echo done", tmp.path()).unwrap().status.success());
    }

    #[test]
    fn defaults_are_minutes_not_seconds() {
        for l in Limit::ALL {
            assert!(l.default_timeout() >= Duration::from_secs(60), "{l:?}");
        }
        assert!(Limit::PlaceRoute.default_timeout() > Limit::Lint.default_timeout());
    }
}
