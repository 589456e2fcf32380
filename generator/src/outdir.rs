//! Writing an output directory: qmac replaces only a directory it wrote, all at once, one run at a time.
//!
//! Every command that writes an output directory goes through [`Staged`]:
//!
//! 1. The path is resolved: symbolic links are followed (the link stays, its target directory gets the
//!    new content); `..` after a component that does not exist yet is taken lexically, so
//!    `nosuch/../out` is `out` and no `nosuch` is created. A file in the way, a dangling link, and a
//!    path that is (or contains) the current directory are refused with one message each.
//! 2. The lock: `.<name>.qmac-lock` next to the directory, held with `flock` for the whole write; a
//!    second run into the same directory waits for the first (it says so on stderr). The lock file is
//!    removed when the run ends.
//! 3. Temporaries of killed runs (`.<name>.qmac-tmp-<pid>` whose process is gone) are removed.
//! 4. An existing directory must be empty, or hold qmac's marker [`MARKER`] of the same [`Kind`] and
//!    nothing the marker does not list (the kind's work directories, such as a build directory's
//!    `sim/`, are qmac's as a whole). Anything else is refused, naming what is in the way; nothing is
//!    changed.
//! 5. The new content is written into `.<name>.qmac-tmp-<pid>` next to it, which holds a
//!    `.qmac-staging` file from its creation until the marker, written last, is complete.
//! 6. The temporary directory is exchanged with the old one in one step (Linux `renameat2` with
//!    `RENAME_EXCHANGE`; a plain rename when there was none), and the old one, now under the temporary
//!    name, is removed: its listed files first, the marker last.
//!
//! A process killed at any instant therefore leaves the previous complete result or the new complete
//! result at the path, and at most a temporary directory that the next run removes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};

/// The ownership marker: a JSON file qmac writes last into every output directory ([`Marker`]).
pub const MARKER: &str = ".qmac-owned";
/// Present in a temporary directory from its creation until its marker is complete.
const STAGING: &str = ".qmac-staging";
/// Largest marker qmac reads back.
const MAX_MARKER_BYTES: u64 = 64 << 20;
/// Files named in an error, at most.
const NAMED: usize = 8;

/// What an output directory holds, and so which command may replace it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A build directory (`qmac generate`).
    Build,
    /// A quantized layer (`qmac quantize`).
    Quantized,
    /// A sweep (`qmac sweep`).
    Sweep,
    /// A scheme comparison (`qmac schemes`).
    Schemes,
    /// A benchmark's scratch directory (`qmac bench`).
    Bench,
    /// A quantized network (`qmac net quantize`).
    Net,
    /// A network's simulation results (`qmac net sim`, in `<net dir>/sim`).
    NetSim,
    /// A trained network (`qmac train`), which `qmac net sim` runs.
    Train,
}

impl Kind {
    /// What the directory is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Kind::Build => "qmac build directory",
            Kind::Quantized => "qmac quantize directory",
            Kind::Sweep => "qmac sweep directory",
            Kind::Schemes => "qmac schemes directory",
            Kind::Bench => "qmac bench directory",
            Kind::Net => "qmac net quantize directory",
            Kind::NetSim => "qmac net sim directory",
            Kind::Train => "qmac train directory",
        }
    }

    /// The command that writes it.
    pub fn command(self) -> &'static str {
        match self {
            Kind::Build => "qmac generate",
            Kind::Quantized => "qmac quantize",
            Kind::Sweep => "qmac sweep",
            Kind::Schemes => "qmac schemes",
            Kind::Bench => "qmac bench",
            Kind::Net => "qmac net quantize",
            Kind::NetSim => "qmac net sim",
            Kind::Train => "qmac train",
        }
    }

    /// Subdirectories that later qmac commands fill (`qmac sim`, `check`, `synth` in a build
    /// directory; `qmac sim --inputs` in a quantize directory): qmac's as a whole, and replaced with
    /// the directory.
    pub fn work_dirs(self) -> &'static [&'static str] {
        match self {
            Kind::Build => &["sim", "logs", "synth"],
            Kind::Quantized => &["hw"],
            Kind::Net => &["sim", "work"],
            Kind::Train => &["sim", "work"],
            Kind::Sweep | Kind::Schemes | Kind::Bench | Kind::NetSim => &[],
        }
    }
}

/// The content of [`MARKER`]: which command wrote the directory, and every file and directory in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// Always `"qmac"`.
    pub owner: String,
    /// Marker format version (1).
    pub format: u32,
    /// What the directory holds.
    pub kind: Kind,
    /// The qmac that wrote it.
    pub generator: String,
    /// Every file qmac wrote, relative, `/`-separated, sorted.
    pub files: Vec<String>,
    /// Every directory qmac made, relative, sorted.
    pub dirs: Vec<String>,
}

/// Why an output directory was not written. Nothing at the path was changed.
#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    /// The path names an existing directory that qmac did not write.
    #[error(
        "{out} exists and was not written by qmac (it has no {MARKER} file), so qmac will not replace it; nothing was changed. \
         Choose another output directory, or move its contents away yourself"
    )]
    NotOurs {
        /// The path as given.
        out: String,
    },
    /// A directory qmac wrote holds files that qmac did not write.
    #[error(
        "{out} is a {} but also holds {count} file(s) qmac did not write: {}; qmac never deletes what it did not write, so nothing was changed. \
         Move them out, or choose another output directory",
        kind.what(), names.join(", ")
    )]
    Foreign {
        /// The path as given.
        out: String,
        /// What it is.
        kind: Kind,
        /// How many entries are not qmac's.
        count: usize,
        /// The first of them (relative), at most eight.
        names: Vec<String>,
    },
    /// A directory of another kind.
    #[error("{out} holds a {} (written by `{}`), not a {}; nothing was changed. Choose another output directory", found.what(), found.command(), wanted.what())]
    OtherKind {
        /// The path as given.
        out: String,
        /// What it holds.
        found: Kind,
        /// What was to be written.
        wanted: Kind,
    },
    /// The marker is not one qmac wrote.
    #[error("{}: not a qmac ownership marker ({why}); the directory is left alone. Choose another output directory", path.display())]
    BadMarker {
        /// The marker file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file (or something else that is not a directory) is at the path.
    #[error("{out} exists and is not a directory (a file is in the way); nothing was changed. Choose another output path, or move the file away")]
    NotADirectory {
        /// The path as given.
        out: String,
    },
    /// A file is in the way of one of the path's parent directories.
    #[error("cannot create {out}: {} is a file, not a directory", blocker.display())]
    InTheWay {
        /// The path as given.
        out: String,
        /// The file in the way.
        blocker: PathBuf,
    },
    /// A symbolic link on the path points nowhere.
    #[error("{out}: {} is a symbolic link to something that does not exist; create its target directory or give another path", link.display())]
    DanglingLink {
        /// The path as given.
        out: String,
        /// The link.
        link: PathBuf,
    },
    /// The path is the current directory or one of its parents.
    #[error(
        "{out} is the current directory or contains it; qmac replaces an output directory as a whole (the old one is removed), \
         so run it from outside: cd {} and give the directory's path from there",
        parent.display()
    )]
    ContainsCwd {
        /// The path as given.
        out: String,
        /// Where to run from.
        parent: PathBuf,
    },
    /// The path has no parent to write the temporary directory into (`/`).
    #[error("{out} has no parent directory; choose a directory below it")]
    NoParent {
        /// The path as given.
        out: String,
    },
    /// The previous result cannot be removed (a read-only directory in it).
    #[error(
        "cannot replace {out}: {} is not writable, so the previous result could not be removed; nothing was changed. \
         Make it writable (chmod -R u+w) or remove the directory yourself",
        dir.display()
    )]
    NotWritable {
        /// The path as given.
        out: String,
        /// The read-only directory.
        dir: PathBuf,
    },
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OutDirError + 'a {
    move |source| OutDirError::Io { action, path: path.to_path_buf(), source }
}

/// An output directory being written: the new content goes into [`Staged::path`], and
/// [`Staged::commit`] puts it at the target in one step. Dropped without a commit, it removes its
/// temporary directory and leaves the target as it was.
#[derive(Debug)]
pub struct Staged {
    shown: String,
    target: PathBuf,
    tmp: PathBuf,
    kind: Kind,
    previous: Previous,
    committed: bool,
    _lock: Lock,
}

/// What was at the target when the run began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Previous {
    Nothing,
    Empty,
    Owned,
}

impl Staged {
    /// Resolve `out`, lock it, remove stale temporaries, check that an existing directory is qmac's
    /// (of this `kind`) or empty, and create the temporary directory.
    pub fn begin(out: &Path, kind: Kind) -> Result<Staged, OutDirError> {
        let shown = out.display().to_string();
        let target = resolve(out, &shown)?;
        let (parent, name) = match (target.parent(), target.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_string_lossy().to_string()),
            _ => return Err(OutDirError::NoParent { out: shown }),
        };
        fs::create_dir_all(&parent).map_err(io_err("create the directory", &parent))?;
        let lock = Lock::acquire(parent.join(format!(".{name}.qmac-lock")), &shown)?;
        clean_stale(&parent, &name);
        let previous = check_existing(&target, kind, &shown)?;
        let tmp = parent.join(format!(".{name}.qmac-tmp-{}", std::process::id()));
        if fs::symlink_metadata(&tmp).is_ok() {
            remove_temporary(&tmp);
        }
        fs::create_dir(&tmp).map_err(io_err("create the temporary directory", &tmp))?;
        let staged = Staged { shown, target, tmp, kind, previous, committed: false, _lock: lock };
        let staging = staged.tmp.join(STAGING);
        fs::write(&staging, format!("{}\n", std::process::id())).map_err(io_err("write", &staging))?;
        Ok(staged)
    }

    /// The temporary directory to write the new content into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The resolved output directory (absolute, no symbolic links).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Whether the target holds a complete directory of this kind that qmac wrote.
    pub fn has_previous(&self) -> bool {
        self.previous == Previous::Owned
    }

    /// Write one file (its parent directories created) below the temporary directory.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> Result<(), OutDirError> {
        let path = self.tmp.join(rel);
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(io_err("create the directory", d))?;
        }
        fs::write(&path, contents).map_err(io_err("write", &path))
    }

    /// Write the marker and put the new content at the target in one step; the previous content is
    /// removed afterwards. Returns the target.
    pub fn commit(mut self) -> Result<PathBuf, OutDirError> {
        let (files, dirs) = list_tree(&self.tmp)?;
        let marker = Marker { owner: "qmac".into(), format: 1, kind: self.kind, generator: crate::emit::GENERATOR.into(), files, dirs };
        let text = serde_json::to_string_pretty(&marker).expect("the marker serialises") + "\n";
        let mpath = self.tmp.join(MARKER);
        fs::write(&mpath, text).map_err(io_err("write", &mpath))?;
        let staging = self.tmp.join(STAGING);
        fs::remove_file(&staging).map_err(io_err("remove", &staging))?;
        match self.previous {
            Previous::Nothing => rename_noreplace(&self.tmp, &self.target).map_err(io_err("move the new result to", &self.target))?,
            Previous::Empty | Previous::Owned => {
                exchange(&self.tmp, &self.target).map_err(io_err("put the new result at", &self.target))?;
                // the previous result is now at the temporary name
                if let Err(e) = remove_previous(&self.tmp) {
                    eprintln!("qmac: warning: {} is written, but its previous content (now {}) could not be removed: {e}; the next run tries again", self.shown, self.tmp.display());
                }
            }
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            remove_temporary(&self.tmp);
        }
    }
}

/// Write `files` (relative path, contents) as the whole content of the directory `out`.
pub fn write_files<C: AsRef<[u8]>>(out: &Path, kind: Kind, files: &[(&str, C)]) -> Result<PathBuf, OutDirError> {
    let staged = Staged::begin(out, kind)?;
    for (rel, c) in files {
        staged.write(rel, c)?;
    }
    staged.commit()
}

/// Check, before a long job, that `out` could be written as a directory of `kind` (the same checks as
/// [`Staged::begin`], without the lock); changes nothing.
pub fn check(out: &Path, kind: Kind) -> Result<(), OutDirError> {
    let shown = out.display().to_string();
    let target = resolve(out, &shown)?;
    check_existing(&target, kind, &shown).map(|_| ())
}

/// Whether `qmac` would write a directory of `kind` at `dir`: it is missing, empty, or one qmac wrote
/// of that kind with nothing else in it. Used for advice in messages; changes nothing.
pub fn writable_by_qmac(dir: &Path, kind: Kind) -> bool {
    match fs::symlink_metadata(dir) {
        Err(e) => e.kind() == io::ErrorKind::NotFound,
        Ok(_) => check_existing(dir, kind, "").is_ok(),
    }
}

/// Resolve `out` to an absolute path without symbolic links. Components that exist are resolved by the
/// file system; below the first one that does not, `.` and `..` are taken lexically.
fn resolve(out: &Path, shown: &str) -> Result<PathBuf, OutDirError> {
    let cwd = std::env::current_dir().and_then(fs::canonicalize).map_err(io_err("find the current directory", Path::new(".")))?;
    let mut cur = if out.is_absolute() { PathBuf::from("/") } else { cwd.clone() };
    let mut exists = true;
    for c in out.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => cur = PathBuf::from("/"),
            Component::CurDir => {}
            // `cur` has no symbolic links, so its parent is the real parent
            Component::ParentDir => {
                cur.pop();
                exists = fs::symlink_metadata(&cur).is_ok();
            }
            Component::Normal(n) => {
                cur.push(n);
                if !exists {
                    continue;
                }
                match fs::symlink_metadata(&cur) {
                    Ok(m) if m.file_type().is_symlink() => {
                        cur = fs::canonicalize(&cur).map_err(|_| OutDirError::DanglingLink { out: shown.to_string(), link: cur.clone() })?;
                    }
                    Ok(_) => {}
                    // a file in the way of a parent is found below
                    Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => exists = false,
                    Err(e) => return Err(io_err("look at", &cur)(e)),
                }
            }
        }
    }
    if cur.parent().is_none() {
        return Err(OutDirError::NoParent { out: shown.to_string() });
    }
    // the first existing ancestor must be a directory
    for a in cur.ancestors().skip(1) {
        if let Ok(m) = fs::metadata(a) {
            if !m.is_dir() {
                return Err(OutDirError::InTheWay { out: shown.to_string(), blocker: a.to_path_buf() });
            }
            break;
        }
    }
    if let Ok(m) = fs::symlink_metadata(&cur) {
        if !m.is_dir() {
            return Err(OutDirError::NotADirectory { out: shown.to_string() });
        }
    }
    if cwd.starts_with(&cur) {
        let parent = cur.parent().unwrap_or(Path::new("/")).to_path_buf();
        return Err(OutDirError::ContainsCwd { out: shown.to_string(), parent });
    }
    Ok(cur)
}

/// Read and check the marker of `dir`.
pub fn read_marker(dir: &Path) -> Result<Option<Marker>, OutDirError> {
    let path = dir.join(MARKER);
    let bad = |why: String| OutDirError::BadMarker { path: path.clone(), why };
    let meta = match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
        Ok(m) => m,
    };
    if !meta.is_file() {
        return Err(bad("it is not a regular file".into()));
    }
    if meta.len() > MAX_MARKER_BYTES {
        return Err(bad(format!("{} bytes, more than the {MAX_MARKER_BYTES} qmac writes at most", meta.len())));
    }
    let text = fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let m: Marker = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if m.owner != "qmac" || m.format != 1 {
        return Err(bad(format!("owner {:?}, format {}; expected owner \"qmac\", format 1", cap(&m.owner), m.format)));
    }
    for p in m.files.iter().chain(&m.dirs) {
        let plain = !p.is_empty() && Path::new(p).components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || p == MARKER {
            return Err(bad(format!("it lists {:?}, which is not a plain relative path inside the directory", cap(p))));
        }
    }
    Ok(Some(m))
}

/// What is at `target`: nothing, an empty directory, or a directory qmac wrote of `kind` with nothing
/// else in it (checked that its old content can be removed). Anything else is an error.
fn check_existing(target: &Path, kind: Kind, shown: &str) -> Result<Previous, OutDirError> {
    let meta = match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Previous::Nothing),
        Err(e) => return Err(io_err("look at", target)(e)),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        return Err(OutDirError::NotADirectory { out: shown.to_string() });
    }
    if fs::read_dir(target).map_err(io_err("read the directory", target))?.next().is_none() {
        return Ok(Previous::Empty);
    }
    let Some(marker) = read_marker(target)? else {
        return Err(OutDirError::NotOurs { out: shown.to_string() });
    };
    if marker.kind != kind {
        return Err(OutDirError::OtherKind { out: shown.to_string(), found: marker.kind, wanted: kind });
    }
    let foreign = foreign_entries(target, &marker)?;
    if !foreign.is_empty() {
        return Err(OutDirError::Foreign { out: shown.to_string(), kind, count: foreign.len(), names: foreign.into_iter().take(NAMED).collect() });
    }
    if let Some(dir) = first_unwritable_dir(target)? {
        return Err(OutDirError::NotWritable { out: shown.to_string(), dir });
    }
    Ok(Previous::Owned)
}

/// Whether `name` (in a directory of a kind with `work` directories) is a lock or temporary directory
/// of one of them, left by a run that writes into it (`qmac sim --inputs` writes `hw/`).
fn is_work_scratch(name: &str, work: &[&str]) -> bool {
    work.iter().any(|w| {
        name.strip_prefix('.').and_then(|r| r.strip_prefix(w)).is_some_and(|r| r == ".qmac-lock" || r.strip_prefix(".qmac-tmp-").is_some_and(|p| p.parse::<u32>().is_ok()))
    })
}

/// Entries of `root` that its marker does not account for (relative paths, sorted).
fn foreign_entries(root: &Path, marker: &Marker) -> Result<Vec<String>, OutDirError> {
    let files: BTreeSet<&str> = marker.files.iter().map(String::as_str).collect();
    let mut dirs: BTreeSet<String> = marker.dirs.iter().cloned().collect();
    for f in &marker.files {
        let mut p = Path::new(f);
        while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(parent.to_string_lossy().to_string());
            p = parent;
        }
    }
    let work = marker.kind.work_dirs();
    let mut out = Vec::new();
    walk(root, |r, is_dir| {
        let top = !r.contains('/');
        if top && (r == MARKER || (is_dir && work.contains(&r)) || is_work_scratch(r, work)) {
            return false;
        }
        if is_dir && dirs.contains(r) {
            return true;
        }
        if is_dir || !files.contains(r) {
            out.push(if is_dir { format!("{r}/") } else { r.to_string() });
        }
        false
    })?;
    out.sort();
    Ok(out)
}

/// Visit every entry below `root`: `visit(relative path, is a directory)` says whether to go into a
/// directory. Symbolic links are entries, never followed.
fn walk(root: &Path, mut visit: impl FnMut(&str, bool) -> bool) -> Result<(), OutDirError> {
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in fs::read_dir(&dir).map_err(io_err("read the directory", &dir))? {
            let entry = entry.map_err(io_err("read the directory", &dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let is_dir = entry.file_type().map_err(io_err("look at", &entry.path()))?.is_dir();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if visit(&r, is_dir) && is_dir {
                stack.push(r);
            }
        }
    }
    Ok(())
}

/// The first directory below `root` (itself included) whose entries this process may not remove.
fn first_unwritable_dir(root: &Path) -> Result<Option<PathBuf>, OutDirError> {
    let writable = |d: &Path| {
        // SAFETY: the path is a valid NUL-terminated string for the duration of the call.
        cpath(d).is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0)
    };
    if !writable(root) {
        return Ok(Some(root.to_path_buf()));
    }
    let mut found = None;
    walk(root, |r, is_dir| {
        if is_dir && found.is_none() && !writable(&root.join(r)) {
            found = Some(root.join(r));
        }
        is_dir && found.is_none()
    })?;
    Ok(found)
}

/// Every file and directory below `root` (relative, sorted), except the marker and the staging file.
fn list_tree(root: &Path) -> Result<(Vec<String>, Vec<String>), OutDirError> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(root, |r, is_dir| {
        if r == MARKER || r == STAGING {
            return false;
        }
        if is_dir {
            dirs.push(r.to_string());
        } else {
            files.push(r.to_string());
        }
        true
    })?;
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

/// Remove a previous result (moved to a temporary name): only if everything in it is accounted for
/// by its marker; the marker goes last, so a run killed meanwhile leaves a directory the next run
/// still recognises.
fn remove_previous(dir: &Path) -> io::Result<()> {
    let marker = read_marker(dir).map_err(|e| io::Error::other(e.to_string()))?;
    if let Some(m) = &marker {
        let foreign = foreign_entries(dir, m).map_err(|e| io::Error::other(e.to_string()))?;
        if !foreign.is_empty() {
            return Err(io::Error::other(format!("it holds files qmac did not write: {}", foreign.join(", "))));
        }
        remove_contents_then(dir, &[MARKER])?;
    }
    fs::remove_dir(dir)
}

/// Remove everything in `dir` except `last`, then `last` (in order).
fn remove_contents_then(dir: &Path, last: &[&str]) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if last.iter().any(|l| entry.file_name() == *l) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    for l in last {
        match fs::remove_file(dir.join(l)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Remove a temporary directory of a run that is over: one still being written (it has the staging
/// file) is all qmac's; a previous result (with a marker) goes as [`remove_previous`] says; an empty
/// one is removed. Anything else is left alone.
fn remove_temporary(tmp: &Path) {
    let Ok(meta) = fs::symlink_metadata(tmp) else { return };
    if !meta.is_dir() {
        return;
    }
    let result = if tmp.join(STAGING).is_file() {
        remove_contents_then(tmp, &[MARKER, STAGING]).and_then(|()| fs::remove_dir(tmp))
    } else if tmp.join(MARKER).is_file() {
        remove_previous(tmp)
    } else {
        fs::remove_dir(tmp)
    };
    if let Err(e) = result {
        eprintln!("qmac: warning: cannot remove the temporary directory {}: {e}", tmp.display());
    }
}

/// Remove the temporaries (`.<name>.qmac-tmp-<pid>`) in `parent` whose process is gone.
fn clean_stale(parent: &Path, name: &str) {
    let prefix = format!(".{name}.qmac-tmp-");
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let fname = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = fname.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !alive(pid) {
            remove_temporary(&entry.path());
        }
    }
}

/// Whether a process with this id exists.
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `s`, or its first 60 characters and an ellipsis.
fn cap(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn cpath(p: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

#[cfg(target_os = "linux")]
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (f, t) = (cpath(from)?, cpath(to)?);
    // SAFETY: both paths are valid NUL-terminated strings for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the file system refused a `renameat2` flag it does not support.
#[cfg(target_os = "linux")]
fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS))
}

/// Swap two directories in one step.
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    match renameat2(a, b, libc::RENAME_EXCHANGE) {
        Err(e) if unsupported(&e) => {}
        r => return r,
    }
    // No atomic exchange on this file system: the old directory goes aside first, so a crash in
    // between leaves it complete under `<b>.qmac-old` (not removed by qmac).
    let aside = b.with_file_name(format!(".{}.qmac-old-{}", b.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    fs::rename(b, &aside)?;
    fs::rename(a, b)?;
    fs::rename(&aside, a)
}

/// Move `a` to `b`, which must not exist.
fn rename_noreplace(a: &Path, b: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    match renameat2(a, b, libc::RENAME_NOREPLACE) {
        Err(e) if unsupported(&e) => {}
        r => return r,
    }
    fs::rename(a, b)
}

/// An exclusive `flock` on a lock file next to the output directory, released (and the file
/// removed) when dropped.
#[derive(Debug)]
struct Lock {
    path: PathBuf,
    _file: File,
}

impl Lock {
    fn acquire(path: PathBuf, shown: &str) -> Result<Lock, OutDirError> {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        let mut told = false;
        loop {
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_err("create the lock file", &path))?;
            // SAFETY: flock on an open descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(io_err("lock", &path)(e));
                }
                if !told {
                    eprintln!("qmac: another qmac run is writing {shown}; waiting for it to finish");
                    told = true;
                }
                loop {
                    // SAFETY: as above, blocking.
                    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                        break;
                    }
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(io_err("lock", &path)(e));
                    }
                }
            }
            // The run that held it removes the file before it lets go: lock the file now at the path.
            let held = file.metadata().map_err(io_err("lock", &path))?;
            match fs::metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => return Ok(Lock { path, _file: file }),
                _ => continue,
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // removed while still held; the descriptor closes (and unlocks) after this
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_scratch_names_are_exact() {
        assert!(is_work_scratch(".hw.qmac-lock", &["hw"]));
        assert!(is_work_scratch(".hw.qmac-tmp-123", &["hw"]));
        assert!(!is_work_scratch(".hw.qmac-tmp-12x", &["hw"]));
        assert!(!is_work_scratch(".hwx.qmac-lock", &["hw"]));
        assert!(!is_work_scratch(".hw.qmac-lock", &[]));
    }

    #[test]
    fn markers_with_paths_outside_the_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let m = |files: &[&str]| {
            let m = Marker { owner: "qmac".into(), format: 1, kind: Kind::Build, generator: "x".into(), files: files.iter().map(|s| s.to_string()).collect(), dirs: vec![] };
            fs::write(tmp.path().join(MARKER), serde_json::to_string(&m).unwrap()).unwrap();
            read_marker(tmp.path())
        };
        assert!(m(&["a/b.v"]).unwrap().is_some());
        for bad in ["../x", "/etc/passwd", "a/../../x", "", MARKER] {
            let e = m(&[bad]).unwrap_err().to_string();
            assert!(e.contains("not a plain relative path"), "{bad}: {e}");
        }
        fs::write(tmp.path().join(MARKER), "{}").unwrap();
        assert!(read_marker(tmp.path()).unwrap_err().to_string().contains("not a qmac ownership marker"));
    }
}
