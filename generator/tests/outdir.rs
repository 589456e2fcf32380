//! Output directories: qmac replaces only what it wrote (its `.qmac-owned` marker says so), all at
//! once (a run killed at any instant leaves the previous or the new complete result), one run at a
//! time (a lock next to the directory), and every odd path gets one clear message.

use qmac::config::{Config, RawConfig};
use qmac::outdir::{Marker, MARKER};
use qmac::rng::Rng;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qmac() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmac"));
    c.env("RUST_BACKTRACE", "0");
    c
}

/// The two small designs the tests alternate between.
fn small(k: usize) -> (Config, Vec<String>) {
    let rows = [1, 2][k];
    let cfg = Config::new(RawConfig { rows, cols: 1, lanes: 1, max_depth: 4, ..RawConfig::default() }).unwrap();
    (cfg, ["--rows", ["1", "2"][k], "--cols", "1", "--lanes", "1", "--max-depth", "4"].iter().map(|s| s.to_string()).collect())
}

fn generate(k: usize, out: &Path) -> std::process::Output {
    qmac().arg("generate").args(small(k).1).arg("-o").arg(out).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Every file below `dir` (relative path, contents), `skip` top-level names left out.
fn tree(dir: &Path, skip: &[&str]) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, rel: &str, skip: &[&str], out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            if rel.is_empty() && skip.contains(&name.as_str()) {
                continue;
            }
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if e.file_type().unwrap().is_dir() {
                walk(root, &r, skip, out);
            } else {
                out.insert(r, std::fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", skip, &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    v.sort();
    v
}

/// Which of the two small designs `dir` holds complete (its files byte for byte, and a marker that
/// lists exactly them); `None` if it holds neither (a description of what is there in the panic).
fn complete(dir: &Path) -> Option<usize> {
    let found = tree(dir, &["sim", MARKER]);
    let marker: Option<Marker> = std::fs::read_to_string(dir.join(MARKER)).ok().and_then(|t| serde_json::from_str(&t).ok());
    (0..2).find(|&k| {
        let g = qmac::emit::generate(&small(k).0);
        let mut want: BTreeMap<String, Vec<u8>> = g.rtl.iter().map(|(p, t)| (p.clone(), t.clone().into_bytes())).collect();
        want.insert("filelist.f".into(), g.filelist.into_bytes());
        want.insert("manifest.json".into(), g.manifest.into_bytes());
        want.insert("config.toml".into(), g.config.into_bytes());
        found == want && marker.as_ref().is_some_and(|m| m.files == want.keys().cloned().collect::<Vec<_>>())
    })
}

#[test]
fn a_directory_qmac_did_not_write_is_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    // a web app that happens to have a manifest.json (what qmac used to take for a build directory)
    let web = tmp.path().join("webapp");
    std::fs::create_dir(&web).unwrap();
    std::fs::write(web.join("manifest.json"), "{}").unwrap();
    std::fs::write(web.join("index.html"), "x").unwrap();
    let before = tree(tmp.path(), &[]);
    let o = generate(0, &web);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("was not written by qmac") && e.contains(".qmac-owned") && e.contains("nothing was changed"), "{e}");
    assert!(!e.contains("os error"), "{e}");
    assert_eq!(tree(tmp.path(), &[]), before, "nothing may change, next to it either");
    assert_eq!(names(tmp.path()), ["webapp"]);
    // `qmac sim` then does not advise a `qmac generate -o webapp` that would be refused
    let o = qmac().arg("sim").arg(&web).output().unwrap();
    let e = stderr(&o);
    assert!(e.contains("will not write there") && !e.contains(&format!("generate -o {}", web.display())), "{e}");
    // a quantize directory whose marker qmac reads is not a build directory either
    let q = tmp.path().join("q");
    std::fs::create_dir(&q).unwrap();
    std::fs::write(q.join(MARKER), r#"{"owner":"qmac","format":1,"kind":"quantized","generator":"qmac","files":["quantized.json"],"dirs":[]}"#).unwrap();
    std::fs::write(q.join("quantized.json"), "{}").unwrap();
    let e = stderr(&generate(0, &q));
    assert!(e.contains("holds a qmac quantize directory") && e.contains("not a qmac build directory"), "{e}");
    assert!(q.join("quantized.json").is_file());
    // an empty directory may be used
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(generate(0, &empty).status.success());
    assert_eq!(complete(&empty), Some(0));
}

#[test]
fn files_added_to_a_build_directory_are_named_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    assert!(generate(0, &b).status.success());
    std::fs::write(b.join("notes.txt"), "mine").unwrap();
    std::fs::write(b.join("rtl/mine.v"), "module mine; endmodule\n").unwrap();
    let before = tree(&b, &[]);
    let o = generate(1, &b);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("qmac did not write: notes.txt, rtl/mine.v") && e.contains("never deletes"), "{e}");
    assert_eq!(tree(&b, &[]), before);
    assert_eq!(names(tmp.path()), ["b"], "no lock or temporary left");
    // qmac's own work directories go with the build it replaces
    std::fs::remove_file(b.join("notes.txt")).unwrap();
    std::fs::remove_file(b.join("rtl/mine.v")).unwrap();
    std::fs::create_dir_all(b.join("sim/obj")).unwrap();
    std::fs::write(b.join("sim/obj/tb"), "model").unwrap();
    std::fs::create_dir_all(b.join("synth/ecp5-85k")).unwrap();
    assert!(generate(1, &b).status.success(), "sim/ and synth/ are qmac's");
    assert_eq!(complete(&b), Some(1));
    assert!(!b.join("sim").exists() && !b.join("synth").exists());
}

#[test]
fn odd_output_paths_get_one_clear_message_or_the_right_result() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    assert!(generate(0, &b).status.success());
    let before = tree(&b, &[]);
    // `-o .` from inside the build directory: refused, not emptied
    let o = qmac().current_dir(&b).arg("generate").args(small(1).1).args(["-o", "."]).output().unwrap();
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("is the current directory") && !e.contains("os error"), "{e}");
    assert_eq!(tree(&b, &[]), before);
    assert_eq!(names(tmp.path()), ["b"]);
    // a symbolic link: its target gets the new design, the link stays a link
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink("b", &link).unwrap();
    assert!(generate(1, &link).status.success());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(complete(&b), Some(1));
    std::fs::remove_file(&link).unwrap();
    // `..` after a missing directory: no stray directory
    let o = qmac().current_dir(tmp.path()).arg("generate").args(small(0).1).args(["-o", "nosuch/../out"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(tmp.path()), ["b", "out"]);
    assert_eq!(complete(&tmp.path().join("out")), Some(0));
    // a file in the way, of the directory or of a parent; a dangling link
    std::fs::write(tmp.path().join("afile"), "f").unwrap();
    std::os::unix::fs::symlink("gone", tmp.path().join("dangling")).unwrap();
    for (path, says) in [
        ("afile", "exists and is not a directory"),
        ("afile/x", "afile is a file, not a directory"),
        ("afile/x/../y", "afile is a file, not a directory"),
        ("dangling", "is a symbolic link to something that does not exist"),
    ] {
        let o = qmac().current_dir(tmp.path()).arg("generate").args(small(0).1).args(["-o", path]).output().unwrap();
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains(says), "{path}: {e}");
        assert!(!e.contains("os error") && !e.contains("Invalid argument") && !e.contains("File exists"), "{path}: {e}");
    }
    assert_eq!(std::fs::read_to_string(tmp.path().join("afile")).unwrap(), "f");
    assert_eq!(names(tmp.path()), ["afile", "b", "dangling", "out"]);
}

#[test]
fn a_failed_replacement_leaves_the_previous_build() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    assert!(generate(0, &b).status.success());
    let rtl = b.join("rtl");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rtl, std::fs::Permissions::from_mode(0o555)).unwrap();
    // root may write anywhere: an immutable directory is read-only to root too
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && !Command::new("chattr").arg("+i").arg(&rtl).status().is_ok_and(|s| s.success()) {
        std::fs::set_permissions(&rtl, std::fs::Permissions::from_mode(0o755)).unwrap();
        eprintln!("skipped: running as root on a file system without chattr +i, no directory is read-only");
        return;
    }
    let o = generate(1, &b);
    let e = stderr(&o);
    if root {
        Command::new("chattr").arg("-i").arg(&rtl).status().unwrap();
    }
    std::fs::set_permissions(&rtl, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!o.status.success() && e.contains("rtl is not writable") && e.contains("nothing was changed"), "{e}");
    assert_eq!(complete(&b), Some(0), "the previous build is intact");
    assert_eq!(names(tmp.path()), ["b"], "no temporary left");
    assert!(generate(1, &b).status.success(), "{}", stderr(&generate(1, &b)));
    assert_eq!(complete(&b), Some(1));
}

/// A process id that is not running (a child that has exited and been reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn temporaries_of_killed_runs_are_removed_and_look_alikes_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    assert!(generate(0, &b).status.success());
    let t = |pid: u32| tmp.path().join(format!(".b.qmac-tmp-{pid}"));
    let pids: Vec<u32> = (0..4).map(|_| dead_pid()).collect();
    // being written when killed: the staging file, some files, no marker
    std::fs::create_dir_all(t(pids[0]).join("rtl")).unwrap();
    std::fs::write(t(pids[0]).join(".qmac-staging"), "1\n").unwrap();
    std::fs::write(t(pids[0]).join("rtl/x.v"), "x").unwrap();
    // a previous build being removed when killed: its marker is still there
    std::fs::create_dir_all(t(pids[1]).join("rtl")).unwrap();
    std::fs::copy(b.join(MARKER), t(pids[1]).join(MARKER)).unwrap();
    std::fs::copy(b.join("config.toml"), t(pids[1]).join("config.toml")).unwrap();
    // an empty one
    std::fs::create_dir(t(pids[2])).unwrap();
    // the same name pattern without any qmac marker: not qmac's, kept
    std::fs::create_dir(t(pids[3])).unwrap();
    std::fs::write(t(pids[3]).join("mine.txt"), "mine").unwrap();
    // a lock file left by a killed run
    std::fs::write(tmp.path().join(".b.qmac-lock"), "").unwrap();
    assert!(generate(1, &b).status.success());
    let mut want = vec!["b".to_string(), format!(".b.qmac-tmp-{}", pids[3])];
    want.sort();
    assert_eq!(names(tmp.path()), want);
    assert_eq!(std::fs::read_to_string(t(pids[3]).join("mine.txt")).unwrap(), "mine");
}

#[test]
fn a_second_run_waits_for_the_lock() {
    use std::os::unix::io::AsRawFd;
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    let lock = std::fs::File::create(tmp.path().join(".b.qmac-lock")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut child = qmac().arg("generate").args(small(0).1).arg("-o").arg(&b).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("another qmac run is writing") && line.contains("waiting"), "{line:?}");
    assert!(!b.exists(), "nothing written while the other run holds the lock");
    drop(lock);
    assert!(child.wait().unwrap().success());
    assert_eq!(complete(&b), Some(0));
    assert_eq!(names(tmp.path()), ["b"], "the lock file is removed");
}

#[test]
fn concurrent_runs_into_one_directory_serialise() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    for round in 0..4 {
        let children: Vec<_> = (0..8)
            .map(|i| qmac().arg("generate").args(small((i + round) % 2).1).arg("-o").arg(&b).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: {}", stderr(&o));
        }
        assert!(complete(&b).is_some(), "round {round}: {:?}", names(&b));
        assert_eq!(names(tmp.path()), ["b"], "round {round}: no lock or temporary left");
    }
}

/// Kill `qmac generate` at random instants (SIGKILL) while it replaces a build directory: the
/// directory always holds the previous or the new design, complete; the next run leaves nothing else.
#[test]
fn killed_runs_leave_the_previous_or_the_new_build() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    // the longest delay before the kill: at first the longest of three whole runs
    let mut whole = Duration::ZERO;
    for k in 0..3 {
        let t0 = Instant::now();
        assert!(generate(k % 2, &b).status.success());
        whole = whole.max(t0.elapsed());
    }
    let mut at = complete(&b).expect("a complete build");
    let mut rng = Rng::new(12);
    let (mut killed, mut kept_old, mut got_new) = (0, 0, 0);
    for i in 0..200 {
        let k = 1 - at;
        // a model in sim/, as after `qmac sim`: removing the old build takes a while
        let sim = b.join("sim/obj");
        std::fs::create_dir_all(&sim).unwrap();
        for f in 0..100 {
            std::fs::write(sim.join(format!("V{f}.o")), [0u8; 64]).unwrap();
        }
        let mut child = qmac().arg("generate").args(small(k).1).arg("-o").arg(&b).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(whole.mul_f64(rng.below(1000) as f64 / 1000.0));
        let finished = child.try_wait().unwrap().is_some_and(|s| s.success());
        child.kill().ok();
        child.wait().unwrap();
        // the delays follow the run's time on this machine now: about half the runs are killed
        if finished {
            whole = whole.mul_f64(0.9);
        } else {
            killed += 1;
            whole = whole.mul_f64(1.1);
        }
        match complete(&b) {
            Some(now) if now == at => kept_old += 1,
            Some(now) => {
                got_new += 1;
                at = now;
            }
            None => panic!("run {i}: {} holds neither build complete: {:?}", b.display(), tree(&b, &[]).keys().take(20).collect::<Vec<_>>()),
        }
        assert!(!finished || at == k, "run {i}: a run that finished must leave its build");
    }
    eprintln!("{killed} of 200 runs killed before they finished; previous build kept {kept_old} times, new build found {got_new} times");
    assert!(killed >= 50 && kept_old >= 10 && got_new >= 10, "the kills must land before, during and after the replacement");
    assert!(generate(1 - at, &b).status.success());
    assert_eq!(complete(&b), Some(1 - at));
    assert_eq!(names(tmp.path()), ["b"], "the next run removes every temporary and lock left by killed runs");
}

/// Where a quantize run's files go is checked the same way (`qmac quantize` shares the module).
#[test]
fn quantize_directories_are_checked_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let q: PathBuf = tmp.path().join("q");
    std::fs::create_dir(&q).unwrap();
    std::fs::write(q.join("quantized.json"), "{}").unwrap();
    std::fs::write(q.join("keep.txt"), "x").unwrap();
    let files = [("quantized.json", String::from("{}\n"))];
    let e = qmac::quantize::write_dir(&q, &files).unwrap_err().to_string();
    assert!(e.contains("was not written by qmac"), "{e}");
    std::fs::remove_file(q.join("keep.txt")).unwrap();
    std::fs::remove_file(q.join("quantized.json")).unwrap();
    qmac::quantize::write_dir(&q, &files).unwrap();
    std::fs::create_dir_all(q.join("hw/rtl")).unwrap();
    std::fs::write(q.join("hw/rtl/x.v"), "x").unwrap();
    qmac::quantize::write_dir(&q, &files).unwrap();
    assert_eq!(names(&q), [MARKER, "quantized.json"], "hw/ (written by `qmac sim --inputs`) is qmac's and goes with it");
    let e = qmac::emit::write(&small(0).0, &q).unwrap_err().to_string();
    assert!(e.contains("holds a qmac quantize directory"), "{e}");
}

/// `qmac sweep`, `qmac schemes` and `qmac bench` write their directories the same way: a directory
/// qmac did not write is refused before any work starts.
#[test]
fn sweep_schemes_and_bench_refuse_a_directory_qmac_did_not_write() {
    use qmac::synth::{SweepMode, SweepOptions, SweepPoint, SynthOptions, Target};
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("webapp");
    std::fs::create_dir(&web).unwrap();
    std::fs::write(web.join("index.html"), "x").unwrap();
    let before = tree(tmp.path(), &[]);
    let opts = SweepOptions { out_dir: web.clone(), jobs: 1, synth: SynthOptions::new(Target::Ice40Up5k), mode: SweepMode::Generated, progress: false, command: None };
    let point = SweepPoint { target: Target::Ice40Up5k, rows: 2, cols: 2, lanes: 1, weight_bits: 2, act_bits: 2, dsp: None, plain: None };
    let e = qmac::synth::sweep(&[point], &opts, |_: &SweepPoint, _: &Path| -> Result<(), String> { panic!("no point may run") }).unwrap_err().to_string();
    assert!(e.contains("was not written by qmac"), "{e}");
    for args in [&["schemes", "-o"][..], &["bench", "--dir"][..]] {
        let o = qmac().args(args).arg(&web).output().unwrap();
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains("was not written by qmac"), "{args:?}: {e}");
    }
    assert_eq!(tree(tmp.path(), &[]), before);
    // and a schemes directory is replaced whole by the next run
    let s = tmp.path().join("s");
    for _ in 0..2 {
        let o = qmac().args(["schemes", "-o"]).arg(&s).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(names(&s), [MARKER, "schemes.json", "schemes.md"]);
}
