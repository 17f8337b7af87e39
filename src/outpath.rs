//! The one owner of every output path: results log, retry and ambiguous files,
//! `--summary-json`, `--report`, `--metrics`, `czload report -o`, `merge-results -o`,
//! `verify --output`, `undo --output`, the sandbox's `--dump`. Every command hands its outputs here before it sends or writes anything;
//! the rules in plain words are docs/outputs.md.
//!
//! For each output, in this order:
//! 1. **Its place** (`place`): a regular file or nothing, never a directory, FIFO,
//!    device or socket, looked at with `symlink_metadata`/`metadata` and never opened (opening a FIFO
//!    blocks, a device may take or give data). A symlink is followed to the file it
//!    names, which is then the path written (the link itself is never removed or renamed
//!    over); one that names nothing is refused. Its folder exists, is a folder, and can
//!    be written.
//! 2. **Its identity** (`distinct`): no output is an input or another output, compared by
//!    device and inode, so a hard link, a symlink or another spelling is caught.
//! 3. **Its owner** (`is_own`): an existing file is written (replaced, truncated,
//!    appended to, deleted) only when czload wrote it, known by its content (a results
//!    log's manifest line, a report's first bytes, a summary's keys, the metrics marker)
//!    or, for a retry or ambiguous file, by the manifest of the results log naming it.
//!    An empty file says nothing of who made it: it is not czload's.
//!
//! A refusal is `Error::Output` (exit 2) and names the flag to change. Files written
//! whole at the end (report, summary, metrics, merged log, dump) go through `Replace`: a
//! temporary file created exclusively under a name no user file has, renamed over the
//! target only if that is still absent or czload's. Files written as the run goes
//! (results log, retry files) are opened by `create_private`/`create_new_private`, which
//! check again what is there when it is opened (the path may have changed since).

use crate::error::{Error, Result};
use std::fs::{File, Metadata, OpenOptions};
use std::path::{Path, PathBuf};

/// What an output holds: how czload knows a file of it as its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A results log, or a merged one: its first line is a manifest.
    Results,
    /// A retry or ambiguous file: the results log's manifest names it, and the log holds
    /// rows that went to it (`Output::logged`).
    Retry,
    /// `--summary-json`: an object with the summary's keys.
    Summary,
    /// `--report`, `czload report -o`: the page's first bytes.
    Report,
    /// `--metrics`: its first bytes are `sink::metrics::MARK`.
    Metrics,
    /// The sandbox's `--dump`: lines of stored tasks.
    Dump,
    /// `czload verify -o`: lines with a `verdict` on a logged row.
    Verify,
    /// `czload undo -o`: its first line is `{"czload_undo":…}`.
    Undo,
}

impl Kind {
    /// The mode a file of this kind is created with: only its owner may read what holds
    /// rows; the metrics and the summary are for collectors that may run as another user.
    fn mode(self) -> u32 {
        match self {
            Kind::Metrics | Kind::Summary => 0o644,
            _ => 0o600,
        }
    }
}

/// One output of a command: the flag that names it (what a refusal says to change), its
/// path and what it holds.
#[derive(Debug, Clone)]
pub struct Output {
    pub flag: String,
    pub path: PathBuf,
    pub kind: Kind,
    /// A retry or ambiguous file: the results log's manifest names it and the log has
    /// rows that czload wrote to it. Its content alone cannot say (it holds the input's
    /// rows), and a name in the manifest alone does not either: the file is made at its
    /// first row, so a file there after a run with no such row is someone else's.
    pub logged: bool,
}

impl Output {
    pub fn new(flag: impl Into<String>, path: &Path, kind: Kind) -> Output {
        Output {
            flag: flag.into(),
            path: path.to_path_buf(),
            kind,
            logged: false,
        }
    }
}

/// Checks `outputs` against each other and `inputs`, and that each is absent or
/// czload's. Gives each output's path to write: a symlink resolved.
pub fn check(outputs: &[Output], inputs: &[&Path]) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(outputs.len());
    for o in outputs {
        paths.push(place(&o.flag, &o.path)?);
    }
    distinct(outputs, &paths, inputs)?;
    for (o, p) in outputs.iter().zip(&paths) {
        owned(o, p)?;
    }
    Ok(paths)
}

/// `check` for a command's one output, written beside the results logs it reads
/// (`verify`, `undo`): those logs and the inputs their manifests name are its inputs.
pub fn check_beside_logs(flag: &str, path: &Path, kind: Kind, logs: &[PathBuf]) -> Result<PathBuf> {
    let named: Vec<PathBuf> = logs
        .iter()
        .filter_map(|l| crate::sink::Manifest::read(l))
        .flat_map(|m| m.inputs.into_iter().map(|i| PathBuf::from(i.path)))
        .collect();
    let inputs: Vec<&Path> = logs.iter().chain(&named).map(PathBuf::as_path).collect();
    Ok(check(&[Output::new(flag, path, kind)], &inputs)?.remove(0))
}

/// Refuses an existing file at `path` (already `place`d) that czload did not write.
pub fn owned(o: &Output, path: &Path) -> Result<()> {
    let Ok(m) = std::fs::metadata(path) else {
        return Ok(());
    };
    let own = match o.kind {
        Kind::Retry => o.logged && m.is_file() && m.len() > 0,
        k => is_own(k, path, &m),
    };
    if own {
        return Ok(());
    }
    let what = if m.len() == 0 {
        "the file exists (empty)"
    } else {
        "the file exists"
    };
    let whose = match o.kind {
        Kind::Retry => {
            "the results log does not say czload wrote it (no run of that log put rows there)"
        }
        Kind::Results => "it is not a czload results log",
        _ => "czload did not write it",
    };
    Err(Error::Output(format!(
        "{} {}: {what} and {whose}; czload will not replace, change or delete it: move it or give {} another path",
        o.flag,
        o.path.display(),
        o.flag
    )))
}

/// Where `path` leads, checked: the path to write (a symlink's target), or a refusal
/// naming `flag` when it is not a regular file or nothing, or its folder cannot take it.
pub fn place(flag: &str, path: &Path) -> Result<PathBuf> {
    let refuse = |why: String| {
        Error::Output(format!(
            "{flag} {}: {why}; czload writes only a regular file in a folder it can write: give {flag} another path",
            path.display()
        ))
    };
    let spelled = path.as_os_str().as_encoded_bytes();
    if spelled.is_empty() || spelled.ends_with(b"/") || path.file_name().is_none() {
        return Err(refuse("names a folder, not a file".into()));
    }
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(t) => t,
            Err(_) => return Err(refuse("is a symlink to nothing".into())),
        },
        _ => path.to_path_buf(),
    };
    if let Ok(m) = std::fs::metadata(&target) {
        if let Some(what) = not_a_file(&m) {
            return Err(refuse(format!("is {what}, not a regular file")));
        }
    }
    let dir = folder(&target);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refuse(format!("{} is not a folder", dir.display()))),
        Err(_) => {
            return Err(refuse(format!(
                "its folder {} does not exist",
                dir.display()
            )))
        }
    }
    if !writable(dir) {
        return Err(refuse(format!(
            "its folder {} cannot be written",
            dir.display()
        )));
    }
    Ok(target)
}

/// The folder a file at `path` goes in.
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// What a file that is not a regular one is, in words.
fn not_a_file(m: &Metadata) -> Option<&'static str> {
    let t = m.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_socket() {
            return Some("a socket");
        }
        if t.is_char_device() || t.is_block_device() {
            return Some("a device");
        }
    }
    Some("not a regular file")
}

#[cfg(unix)]
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path and nothing else.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(not(unix))]
fn writable(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|m| !m.permissions().readonly())
}

/// Refuses an output that is an input, or the same file as another output.
fn distinct(outputs: &[Output], paths: &[PathBuf], inputs: &[&Path]) -> Result<()> {
    for (k, (o, p)) in outputs.iter().zip(paths).enumerate() {
        let key = FileKey::of(p);
        if let Some(inp) = inputs.iter().find(|i| FileKey::of(i) == key) {
            return Err(Error::Output(format!(
                "{} {}: is the input {} (the same file); an input is never written: give {} another path",
                o.flag,
                o.path.display(),
                inp.display(),
                o.flag
            )));
        }
        if let Some(j) = paths[..k].iter().position(|q| FileKey::of(q) == key) {
            let other = &outputs[j];
            return Err(Error::Output(format!(
                "{} {} and {} {} are the same file; give each output its own path",
                o.flag,
                o.path.display(),
                other.flag,
                other.path.display()
            )));
        }
    }
    Ok(())
}

/// Whether the two paths name one file (or one place, when neither exists yet).
pub fn same_file(a: &Path, b: &Path) -> bool {
    FileKey::of(a) == FileKey::of(b)
}

/// What a path names: a file's device and inode when it exists (a hard link or another
/// spelling of the same file is the same file), else its absolute path with the
/// folder resolved (two outputs not yet created).
#[derive(PartialEq, Eq, Debug)]
enum FileKey {
    #[cfg(unix)]
    Inode(u64, u64),
    Path(PathBuf),
}

impl FileKey {
    fn of(p: &Path) -> FileKey {
        #[cfg(unix)]
        if let Ok(m) = std::fs::metadata(p) {
            use std::os::unix::fs::MetadataExt;
            return FileKey::Inode(m.dev(), m.ino());
        }
        if let Ok(c) = std::fs::canonicalize(p) {
            return FileKey::Path(c);
        }
        match (std::fs::canonicalize(folder(p)), p.file_name()) {
            (Ok(d), Some(name)) => FileKey::Path(d.join(name)),
            _ => FileKey::Path(p.to_path_buf()),
        }
    }
}

/// The first line of `summary.json` holds `{`; these keys are what makes it the
/// summary's (`sink::summary::Summary`).
const SUMMARY_KEYS: [&str; 5] = [
    "rows",
    "requests",
    "elapsed_secs",
    "rows_per_sec",
    "interrupted",
];

/// How every report begins (`sink::report::html`).
pub const REPORT_START: &[u8] =
    b"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>czload report: ";

/// Whether czload wrote the regular file at `path` (metadata `m`), as an output of
/// `kind`, by its content (a retry file cannot say: never, here; see `Output::logged`).
pub fn is_own(kind: Kind, path: &Path, m: &Metadata) -> bool {
    if !m.is_file() || m.len() == 0 {
        return false;
    }
    match kind {
        Kind::Results => crate::sink::Manifest::read(path).is_some(),
        Kind::Retry => false,
        Kind::Report => head(path, REPORT_START.len()).is_some_and(|h| h == REPORT_START),
        Kind::Metrics => crate::sink::metrics::is_own(path),
        Kind::Summary => {
            // A summary is small; anything large is not one.
            m.len() < 1 << 20
                && read_regular(path, 1 << 20)
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.as_object().cloned())
                    .is_some_and(|o| SUMMARY_KEYS.iter().all(|k| o.contains_key(*k)))
        }
        Kind::Dump => first_line_has(path, &["conv_id", "obj_id", "data"]),
        Kind::Verify => first_line_has(path, &["row", "logged", "verdict"]),
        Kind::Undo => first_line_has(path, &["czload_undo"]),
    }
}

/// Whether the first line of the file at `path` is a JSON object with all of `keys`.
fn first_line_has(path: &Path, keys: &[&str]) -> bool {
    head(path, 64 << 10).is_some_and(|h| {
        let first = h.split(|&b| b == b'\n').next().unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(first)
            .is_ok_and(|v| keys.iter().all(|k| v.get(k).is_some()))
    })
}

/// The first `n` bytes of a regular file (fewer if it is shorter).
fn head(path: &Path, n: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(n);
    open_regular(path)?
        .take(n as u64)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// The whole of a regular file at `path` (up to `max` bytes), or `None` for anything
/// else. What is at the path may have changed since it was checked: it is opened without
/// waiting for a FIFO's writer (`O_NONBLOCK`) and read only if it is a regular file.
pub fn read_regular(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    open_regular(path)?.take(max).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Opens `path` to read if it is a regular file, without waiting for a FIFO's writer.
pub fn open_regular(path: &Path) -> Option<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NONBLOCK);
    }
    let f = o.open(path).ok()?;
    f.metadata().ok()?.is_file().then_some(f)
}

/// Creates a file only its owner can read: results and retry files hold the loaded data.
/// The path was checked before the run (`crate::outpath`); what is there when it is
/// opened is checked again, so that a path swapped meanwhile for a symlink, a FIFO or a
/// device is not written through: the last component is not followed (`O_NOFOLLOW`), the
/// open does not wait for a FIFO's reader (`O_NONBLOCK`), and anything but a regular file
/// is refused before it is truncated.
pub fn create_private(path: &Path, append: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true);
    if append {
        o.append(true);
    }
    open_written(o, path, !append)
}

/// Creates a new file only its owner can read; fails if anything is at `path`.
pub fn create_new_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    open_written(o, path, false)
}

fn open_written(mut o: OpenOptions, path: &Path, truncate: bool) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let f = o.open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "it is no longer a regular file (it was replaced while czload ran); left as it is",
        ));
    }
    if truncate {
        f.set_len(0)?;
    }
    Ok(f)
}

/// A file written whole and then put in place: a temporary file beside the target,
/// created exclusively (`.NAME.czload-tmp-PID-RANDOM`: no user file has that name, and
/// one that did would not be opened), renamed over the target by `commit` only if the
/// target is then absent or czload's. Dropped uncommitted, the temporary file goes.
pub struct Replace {
    target: PathBuf,
    tmp: PathBuf,
    kind: Kind,
    file: Option<File>,
}

impl Replace {
    /// Creates the temporary file for `target` (a path `place` gave).
    pub fn new(target: &Path, kind: Kind) -> std::io::Result<Replace> {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        // A long name would make the temporary one too long for the file system (255
        // bytes), found only at the end of the run: its first 100 bytes are enough.
        let mut cut = name.len().min(100);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let name = &name[..cut];
        let dir = folder(target);
        for _ in 0..16 {
            let tmp = dir.join(format!(
                ".{name}.czload-tmp-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(kind.mode());
            }
            match o.open(&tmp) {
                Ok(f) => {
                    return Ok(Replace {
                        target: target.to_path_buf(),
                        tmp,
                        kind,
                        file: Some(f),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free temporary name"))
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until commit")
    }

    /// Puts the file in place: synced, then renamed over the target, unless the target
    /// became something czload did not write meanwhile (then the error says so).
    /// Gives back the file, now at the target (a lock taken on it holds).
    pub fn commit(mut self) -> std::io::Result<File> {
        let f = self.file.take().expect("open until commit");
        f.sync_all()?;
        match std::fs::symlink_metadata(&self.target) {
            Err(_) => {}
            Ok(m) if is_own(self.kind, &self.target, &m) => {}
            Ok(_) => {
                return Err(std::io::Error::other(
                    "the file there is no longer czload's (it was replaced while czload ran); it is left as it is",
                ))
            }
        }
        std::fs::rename(&self.tmp, &self.target)?;
        self.tmp = PathBuf::new();
        Ok(f)
    }
}

impl Drop for Replace {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `target` through a `Replace`.
pub fn replace_with(target: &Path, kind: Kind, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut r = Replace::new(target, kind)?;
    r.file().write_all(bytes)?;
    r.commit().map(drop)
}

/// What the results log says czload wrote beside it: the retry and ambiguous files its
/// manifest names, and whether its rows put any there.
pub struct Written {
    pub named: Vec<PathBuf>,
    /// A row went to a retry file (`Status::to_retry_file`).
    pub failed: bool,
    /// A row went to an ambiguous file.
    pub ambiguous: bool,
}

impl Written {
    /// `None` when `results` is not a czload log (it vouches for nothing).
    pub fn of(results: &Path) -> Option<Written> {
        use crate::sink::results::LogLine;
        use std::io::BufRead;
        if !std::fs::metadata(results).is_ok_and(|m| m.is_file()) {
            return None;
        }
        let m = crate::sink::Manifest::read(results)?;
        let mut w = Written {
            named: m.retry_files.iter().map(PathBuf::from).collect(),
            failed: false,
            ambiguous: false,
        };
        // The log is read only when a file it names is there to judge.
        if !w.named.iter().any(|p| p.exists()) {
            return Some(w);
        }
        let f = std::fs::File::open(results).ok()?;
        for line in std::io::BufReader::new(f)
            .split(b'\n')
            .map_while(|l| l.ok())
        {
            if let LogLine::Row(r) = LogLine::of(&line) {
                w.failed |= r.status.to_retry_file();
                w.ambiguous |= r.status == crate::outcome::Status::Ambiguous;
                if w.failed && w.ambiguous {
                    break;
                }
            }
        }
        Some(w)
    }

    pub fn names(&self, p: &Path) -> bool {
        self.named.iter().any(|n| same_file(n, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(flag: &str, p: &Path, kind: Kind) -> Output {
        Output::new(flag, p, kind)
    }

    #[test]
    fn places_that_are_not_files_are_refused_naming_the_flag() {
        let d = tempfile::tempdir().unwrap();
        let err = |p: &Path| place("--report", p).unwrap_err().to_string();
        assert!(err(d.path()).contains("a directory"), "{}", err(d.path()));
        assert!(err(&d.path().join("no/x.html")).contains("does not exist"));
        assert!(err(Path::new("x/")).contains("names a folder"));
        let fifo = d.path().join("f");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path in a temporary folder.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(err(&fifo).starts_with("--report "), "{}", err(&fifo));
        assert!(err(&fifo).contains("a FIFO"));
        let dangling = d.path().join("l");
        std::os::unix::fs::symlink(d.path().join("nothing"), &dangling).unwrap();
        assert!(err(&dangling).contains("symlink to nothing"));
        assert!(err(Path::new("/dev/null")).contains("a device"));
    }

    #[test]
    fn a_symlink_is_followed_and_an_input_under_any_name_refused() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("in.csv");
        std::fs::write(&input, "a\n1\n").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let hard = d.path().join("hard");
        std::fs::hard_link(&input, &hard).unwrap();
        let dotted = d.path().join("sub/../in.csv");
        std::fs::create_dir(d.path().join("sub")).unwrap();
        for p in [&link, &hard, &dotted] {
            let e = check(&[out("--results", p, Kind::Results)], &[&input]).unwrap_err();
            assert!(e.to_string().contains("is the input"), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
        let other = d.path().join("other.json");
        std::fs::write(&other, "{}").unwrap();
        let l2 = d.path().join("l2");
        std::os::unix::fs::symlink(&other, &l2).unwrap();
        let p = place("--summary-json", &l2).unwrap();
        assert_eq!(p, std::fs::canonicalize(&other).unwrap());
    }

    #[test]
    fn a_replace_never_opens_a_file_of_that_name_and_never_renames_over_a_users_file() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("r.html");
        let mut page = REPORT_START.to_vec();
        page.extend_from_slice(b"x</title>");
        replace_with(&target, Kind::Report, &page).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), page);
        // Czload's own: replaced.
        replace_with(&target, Kind::Report, &page).unwrap();
        // A user's file appeared: left alone, and no temporary file stays.
        std::fs::write(&target, "mine").unwrap();
        assert!(replace_with(&target, Kind::Report, &page).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"mine");
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // A name the file system only just takes still gets its temporary file.
        let long = d.path().join(format!("{}.json", "ы".repeat(120)));
        replace_with(&long, Kind::Summary, b"{}").unwrap();
        assert_eq!(std::fs::read(&long).unwrap(), b"{}");
    }
}
