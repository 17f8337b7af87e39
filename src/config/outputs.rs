//! Outputs: where the results log, the retry files, the summary and the report go. In:
//! `--results`, `--retry-file`, `--summary-json`, `--report`, `--dry-run`, `--resume`, and
//! the inputs (outputs go beside the first one by default; with `--shard` their default
//! names carry it, so that copies sharing a folder do not share outputs). Out: the paths, and notes for
//! the user.
//!
//! Checked before anything is sent: no output is an input or another output. Files are
//! compared by identity (device and inode), not by name, so a hard link, a symlink or
//! another spelling of a path is caught too. A `--retry-file` that exists is replaced
//! only when the run that wrote the results log named it (its manifest lists it): a
//! user's file given by mistake is refused, not deleted.

use crate::cli::LoadArgs;
use crate::error::{Error, Result};
use crate::shard::Shard;
use crate::source::Input;
use std::path::{Path, PathBuf};

pub(super) struct Outputs {
    /// `None` in a dry run.
    pub results: Option<PathBuf>,
    /// One per input.
    pub retry_files: Vec<PathBuf>,
    pub report: Option<PathBuf>,
    pub summary_json: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
}

pub(super) fn outputs(
    a: &LoadArgs,
    inputs: &[Input],
    shard: Option<Shard>,
    notes: &mut Vec<String>,
) -> Result<Outputs> {
    let first = &inputs[0];
    // Copies of one load that share a folder must not share outputs.
    let tag = shard.map_or(String::new(), |s| format!(".{}", s.file_tag()));
    let results = (!a.dry_run).then(|| {
        a.results.clone().unwrap_or_else(|| {
            first
                .dir()
                .join(format!("{}{tag}.results.ndjson", first.stem()))
        })
    });
    let retry_files = retry_files(a, inputs, &tag)?;
    let mut outs: Vec<(&str, &Path)> = Vec::new();
    outs.extend(results.iter().map(|r| ("--results", r.as_path())));
    outs.extend(retry_files.iter().map(|r| ("--retry-file", r.as_path())));
    outs.extend(
        a.summary_json
            .iter()
            .map(|r| ("--summary-json", r.as_path())),
    );
    outs.extend(a.report.iter().map(|r| ("--report", r.as_path())));
    outs.extend(a.metrics.iter().map(|r| ("--metrics", r.as_path())));
    distinct(&outs, inputs)?;
    if let Some(m) = &a.metrics {
        metrics_file(m)?;
    }
    if let Some(p) = &a.retry_file {
        // Loaded back with the same command: its name must say what the input's does.
        let (format, delimiter) = (a.format.is_some(), a.delimiter.is_some());
        crate::sink::retry_file::check_name(&inputs[0], p, format, delimiter)?;
    }
    if let (Some(r), Some(explicit), false) = (&results, &a.retry_file, a.resume) {
        foreign_retry_file(r, explicit)?;
    }
    // The run then goes on from the first row; said now, with the other notes. (Stdin
    // cannot be resumed at all: the run refuses it.)
    if let Some(r) = results
        .as_ref()
        .filter(|r| a.resume && inputs.iter().all(|i| i.path.is_some()) && !r.exists())
    {
        notes.push(format!(
            "--resume: no results log at {} yet; starting from the first row",
            r.display()
        ));
    }
    let report = report(a)?;
    Ok(Outputs {
        results,
        retry_files,
        report,
        summary_json: a.summary_json.clone(),
        metrics: a.metrics.clone(),
    })
}

/// `--metrics FILE`: nothing there, or a metrics file czload wrote (it is replaced whole
/// at the end), in a folder that is there; refused before the first request otherwise.
fn metrics_file(p: &Path) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::Usage(format!(
            "--metrics {}: {why}; choose another path",
            p.display()
        )))
    };
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => return refuse("is a directory"),
        Ok(_) if !crate::sink::metrics::is_own(p) => return refuse(
            "the file exists and is not a metrics file czload wrote, so czload will not replace it",
        ),
        Ok(_) => {}
        Err(_) => {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return refuse("its folder does not exist");
            }
        }
    }
    Ok(())
}

/// `--report`: built from the results log, so a dry run (which writes none) has none.
/// (That it is no input nor another output is checked with the others.)
fn report(a: &LoadArgs) -> Result<Option<PathBuf>> {
    let Some(p) = &a.report else { return Ok(None) };
    if a.dry_run {
        return Err(Error::Usage(format!(
            "--report {}: a dry run writes no results log to build the report from; leave out --dry-run or --report",
            p.display()
        )));
    }
    Ok(Some(p.clone()))
}

/// One retry file per input: `--retry-file` for a single input, else beside each input.
fn retry_files(a: &LoadArgs, inputs: &[Input], tag: &str) -> Result<Vec<PathBuf>> {
    let retry_files = match &a.retry_file {
        Some(p) if inputs.len() > 1 => {
            return Err(Error::Usage(format!(
                "--retry-file {}: with several inputs each gets its own retry file beside it; leave the flag out",
                p.display()
            )))
        }
        Some(p) => vec![p.clone()],
        None => inputs
            .iter()
            .map(|i| {
                let ext = crate::sink::retry_file::default_ext(i);
                i.dir().join(format!("{}{tag}.retry.{ext}", i.stem()))
            })
            .collect(),
    };
    // Two inputs of the same name in different places would share output names.
    for (i, r) in retry_files.iter().enumerate() {
        if retry_files[..i].contains(r) {
            return Err(Error::Usage(format!(
                "inputs {} and {} would both write the retry file {}; rename one",
                retry_files[..i].iter().position(|x| x == r).unwrap_or(0) + 1,
                i + 1,
                r.display()
            )));
        }
    }
    Ok(retry_files)
}

/// Refuses an output that is an input or another output (either would be truncated or
/// overwritten by this run).
fn distinct(outs: &[(&str, &Path)], inputs: &[Input]) -> Result<()> {
    for (k, (flag, out)) in outs.iter().enumerate() {
        let key = FileKey::of(out);
        if let Some(inp) = inputs
            .iter()
            .find(|i| i.path.as_deref().is_some_and(|p| FileKey::of(p) == key))
        {
            return Err(Error::Usage(format!(
                "{flag} {}: is the input {} (the same file); an input is never written: choose another path",
                out.display(),
                inp.display()
            )));
        }
        if let Some((flag2, out2)) = outs[..k].iter().find(|(_, o)| FileKey::of(o) == key) {
            return Err(Error::Usage(format!(
                "{flag} {} and {flag2} {} are the same file; give each output its own path",
                out.display(),
                out2.display()
            )));
        }
    }
    Ok(())
}

/// Refuses an existing `--retry-file` that the run which wrote `results` did not name:
/// it is someone's file, and this run would delete or overwrite it.
fn foreign_retry_file(results: &Path, retry: &Path) -> Result<()> {
    if !std::fs::metadata(retry).is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Ok(());
    }
    let ours = crate::sink::Manifest::read(results).is_some_and(|m| {
        m.retry_files
            .iter()
            .any(|r| FileKey::of(Path::new(r)) == FileKey::of(retry))
    });
    if ours {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "--retry-file {}: the file exists and no earlier run with the results log {} wrote it; czload will not replace it: move it or choose another path",
        retry.display(),
        results.display()
    )))
}

/// What a path names: a file's device and inode when it exists (a hard link or another
/// spelling of the same file is the same file), else its absolute path with the
/// directory resolved (two outputs not yet created).
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
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match (std::fs::canonicalize(dir), p.file_name()) {
            (Ok(d), Some(name)) => FileKey::Path(d.join(name)),
            _ => FileKey::Path(p.to_path_buf()),
        }
    }
}
