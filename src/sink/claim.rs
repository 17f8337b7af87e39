//! Claiming the results log before anything is sent. In: `--results`, `--resume`,
//! `--restart`. Out: a `Claim` the run holds to its end, or a refusal naming the log.
//!
//! - One run per log: an exclusive `flock(2)` on it for the whole run. The lock is
//!   advisory and belongs to the open file, so the kernel drops it when the process dies
//!   (even by SIGKILL): a crash never leaves a stale lock behind.
//! - A log is replaced only when it is a finished czload log (its last line is
//!   `results::END_LINE`), or holds no row (empty, or a manifest and the closing lines of
//!   runs that settled none: a re-run then does all that a resume would). An unfinished one (a crash, a stop, a czload older
//!   than the end line) wants `--resume`, or `--restart`, which keeps it beside under a
//!   new name. A file that is not a czload log at all is never replaced (`crate::outpath`
//!   refused it already; this is the last word, under the lock).
//! - A log the claim creates gets its manifest line at once: a file czload made is never
//!   left empty (an empty file is not czload's: docs/outputs.md), even when the run is
//!   refused right after.

use super::results::{Manifest, END_LINE};
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The run's hold on its results log; dropping it (or dying) releases the lock.
#[derive(Debug)]
pub struct Claim {
    _lock: File,
    /// The log this run replaces when other hard links share it (`relink`): still
    /// locked, so that a run that opened it just before finds the lock taken.
    _replaced: Option<File>,
    /// With `--restart`: where the unfinished log was kept.
    pub kept: Option<PathBuf>,
}

/// Locks the results log of `cfg` and decides whether this run may write it. `None` in a
/// dry run (no log).
pub fn claim(cfg: &LoadConfig, manifest: &Manifest) -> Result<Option<Claim>> {
    let Some(path) = &cfg.results else {
        return Ok(None);
    };
    let lock = lock(path, manifest)?;
    if cfg.resume {
        return Ok(Some(Claim {
            _lock: lock,
            _replaced: None,
            kept: None,
        }));
    }
    match state(path) {
        State::Replaceable if linked(&lock) => Ok(Some(Claim {
            _lock: relink(path, manifest)?,
            _replaced: Some(lock),
            kept: None,
        })),
        State::Replaceable => Ok(Some(Claim {
            _lock: lock,
            _replaced: None,
            kept: None,
        })),
        State::Foreign => Err(Error::Output(format!(
            "--results {}: the file exists and is not a czload results log; czload will not overwrite it: move it or choose another path",
            path.display()
        ))),
        State::Unfinished if cfg.restart => {
            let kept = keep_aside(path)?;
            // The lock went with the renamed file: lock the new one before writing it.
            drop(lock);
            let lock = self::lock(path, manifest)?;
            Ok(Some(Claim {
                _lock: lock,
                _replaced: None,
                kept: Some(kept),
            }))
        }
        State::Unfinished => Err(Error::Usage(format!(
            "{} holds an unfinished run (it does not end with the line a finished run writes): add --resume to continue it, or --restart to start over (the old log is kept beside it)",
            path.display()
        ))),
    }
}

/// Opens (creating it with `manifest` as its first line, never truncating) and locks
/// `path`; refuses when another process holds the lock.
fn lock(path: &Path, manifest: &Manifest) -> Result<File> {
    let err = |e: std::io::Error| Error::file(path, format!("cannot write the results log: {e}"));
    let (mut f, created) = match super::results::create_new_private(path) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (
            super::results::create_private(path, true).map_err(err)?,
            false,
        ),
        Err(e) => return Err(err(e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Err(Error::Usage(format!(
                    "{}: another czload run is writing this results log; wait for it to end, or give this run another --results",
                    path.display()
                )));
            }
            return Err(Error::file(
                path,
                format!("cannot lock the results log: {e}"),
            ));
        }
    }
    // Under the lock: of two runs that opened the new file, only the one holding the
    // lock writes to it (the other is refused above, having written nothing).
    if created {
        use std::io::Write;
        let mut line = serde_json::to_vec(manifest).expect("plain data");
        line.push(b'\n');
        f.write_all(&line).map_err(err)?;
    }
    Ok(f)
}

/// Whether the log has other names (a hard-linked backup, `cp -al`): truncating it
/// would empty them too.
fn linked(f: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        f.metadata().is_ok_and(|m| m.nlink() > 1 && m.len() > 0)
    }
    #[cfg(not(unix))]
    {
        let _ = f;
        false
    }
}

/// A finished log that other hard links share is replaced by a new file, not truncated:
/// its other names keep what it held (docs/outputs.md). The new file is created
/// exclusively beside it, locked, given the manifest line, and renamed over the path.
fn relink(path: &Path, manifest: &Manifest) -> Result<File> {
    use std::io::Write;
    let err = |e: std::io::Error| Error::file(path, format!("cannot write the results log: {e}"));
    let mut r = crate::outpath::Replace::new(path, crate::outpath::Kind::Results).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor `r` owns; a new file no one else has opened.
        if unsafe { libc::flock(r.file().as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
    }
    let mut line = serde_json::to_vec(manifest).expect("plain data");
    line.push(b'\n');
    r.file().write_all(&line).map_err(err)?;
    r.commit().map_err(err)
}

enum State {
    /// Empty or new, or a finished czload log.
    Replaceable,
    /// A czload log without the end line.
    Unfinished,
    /// Something else: not ours to replace.
    Foreign,
}

fn state(path: &Path) -> State {
    use std::io::{Read, Seek, SeekFrom};
    // Only a regular file, never waiting on a FIFO swapped in (crate::outpath).
    let Some(mut f) = crate::outpath::open_regular(path) else {
        return match std::fs::symlink_metadata(path) {
            Ok(_) => State::Foreign,
            Err(_) => State::Replaceable,
        };
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return State::Replaceable;
    }
    if Manifest::read(path).is_none() {
        return State::Foreign;
    }
    if !has_rows(&mut f) {
        return State::Replaceable;
    }
    // The end line is short: the last bytes of the file are enough.
    let mut tail = Vec::new();
    let from = len.saturating_sub(256);
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut tail).is_err() {
        return State::Unfinished;
    }
    let last = tail
        .split(|&b| b == b'\n')
        .rev()
        .find(|l| !l.iter().all(u8::is_ascii_whitespace));
    if last == Some(END_LINE) {
        State::Replaceable
    } else {
        State::Unfinished
    }
}

/// Whether a row line follows the first line. The runs' closing lines are not rows: a
/// run stopped before it settled any row (a refused login, a process that does not
/// exist) leaves nothing to resume, and a corrected plain re-run may replace its log.
/// That is safe because every op the server may have applied gets a line (applied:
/// settled; maybe applied without a ref: `ambiguous`; with a ref, a re-run finds it
/// `exists`). A line that cannot be read counts as a row: the log is not replaced.
fn has_rows(f: &mut File) -> bool {
    use super::results::LogLine;
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(f).split(b'\n').skip(1);
    lines.any(|l| l.map_or(true, |l| !matches!(LogLine::of(&l), LogLine::Other)))
}

/// Renames the unfinished log at `path` to the first free `<path>.unfinished-N`.
fn keep_aside(path: &Path) -> Result<PathBuf> {
    for n in 1..10_000 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".unfinished-{n}"));
        let to = PathBuf::from(name);
        if std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        // A link, then the old name removed: unlike a rename, a link never replaces a
        // file that appeared at `to` meanwhile (docs/outputs.md).
        let kept = match std::fs::hard_link(path, &to) {
            // The new log must be a new file, not the kept one under its old name.
            Ok(()) => std::fs::remove_file(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // A file system without hard links: renamed, `to` having been free just now.
            Err(_) => std::fs::rename(path, &to),
        };
        kept.map_err(|e| Error::file(path, format!("cannot keep the unfinished log aside: {e}")))?;
        return Ok(to);
    }
    Err(Error::file(
        path,
        "cannot keep the unfinished log aside: no free .unfinished-N name",
    ))
}
