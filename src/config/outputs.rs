//! Outputs: where the results log, the retry files, the summary, the report and the
//! metrics go. In: `--results`, `--retry-file`, `--summary-json`, `--report`, `--metrics`,
//! `--dry-run`, `--resume`, and the inputs (outputs go beside the first one by default;
//! with `--shard` their default names carry it, so that copies sharing a folder do not
//! share outputs). Out: the paths, and notes for the user.
//!
//! Every output goes through `crate::outpath` before anything is sent (docs/outputs.md):
//! a regular file or nothing, in a folder that is there, no input nor another output, and
//! absent or czload's own. The retry and ambiguous files are czload's when the manifest
//! of the results log names them; a user's file there is refused, not deleted, whether
//! the run is plain, `--resume` (with a log or without one yet) or `--restart`. A dry
//! run writes only `--summary-json`; `czload check` writes nothing, so neither is
//! refused for a file it would not touch.

use crate::cli::LoadArgs;
use crate::error::{Error, Result};
use crate::outpath::{self, Kind, Output};
use crate::shard::Shard;
use crate::source::Input;
use std::path::{Path, PathBuf};

pub(super) struct Outputs {
    /// `None` in a dry run.
    pub results: Option<PathBuf>,
    /// One per input.
    pub retry_files: Vec<PathBuf>,
    /// One per input, beside its retry file.
    pub ambiguous_files: Vec<PathBuf>,
    pub report: Option<PathBuf>,
    pub summary_json: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
}

pub(super) fn outputs(
    a: &LoadArgs,
    inputs: &[Input],
    shard: Option<Shard>,
    writes: bool,
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
    let ambiguous_files: Vec<PathBuf> = retry_files
        .iter()
        .map(|r| super::retry_names::ambiguous_path(r))
        .collect();
    let report = report(a)?;
    let mut out = Outputs {
        results,
        retry_files,
        ambiguous_files,
        report,
        summary_json: a.summary_json.clone(),
        metrics: a.metrics.clone(),
    };
    if writes {
        let input_paths: Vec<&Path> = inputs.iter().filter_map(|i| i.path.as_deref()).collect();
        owned(&mut out, &input_paths)?;
    }
    if let Some(p) = &a.retry_file {
        // Loaded back with the same command: its name must say what the input's does.
        let (format, delimiter) = (a.format.is_some(), a.delimiter.is_some());
        super::retry_names::check_name(&inputs[0], p, format, delimiter)?;
    }
    // The run then goes on from the first row; said now, with the other notes. (Stdin
    // cannot be resumed at all: the run refuses it.)
    if let Some(r) = out
        .results
        .as_ref()
        .filter(|r| a.resume && inputs.iter().all(|i| i.path.is_some()) && !r.exists())
    {
        notes.push(format!(
            "--resume: no results log at {} yet; starting from the first row",
            r.display()
        ));
    }
    Ok(out)
}

/// Every output `out` writes through `outpath::check`; each path replaced by the one to
/// write (a symlink resolved).
fn owned(out: &mut Outputs, inputs: &[&Path]) -> Result<()> {
    let log = out.results.as_deref().and_then(outpath::Written::of);
    let logged = |p: &Path, ambiguous: bool| {
        log.as_ref()
            .is_some_and(|w| w.names(p) && if ambiguous { w.ambiguous } else { w.failed })
    };
    // A dry run writes no results log and no retry file.
    let dry = out.results.is_none();
    let mut slots: Vec<(Output, &mut PathBuf)> = Vec::new();
    let slot = |flag: &str, kind: Kind, logged: bool, p: &mut PathBuf| {
        let mut o = Output::new(flag, p, kind);
        o.logged = logged;
        o
    };
    if let Some(p) = out.results.as_mut() {
        slots.push((slot("--results", Kind::Results, false, p), p));
    }
    if !dry {
        for p in &mut out.retry_files {
            slots.push((slot("--retry-file", Kind::Retry, logged(p, false), p), p));
        }
        for p in &mut out.ambiguous_files {
            slots.push((slot("--retry-file", Kind::Retry, logged(p, true), p), p));
        }
    }
    if let Some(p) = out.summary_json.as_mut() {
        slots.push((slot("--summary-json", Kind::Summary, false, p), p));
    }
    if let Some(p) = out.report.as_mut() {
        slots.push((slot("--report", Kind::Report, false, p), p));
    }
    if let Some(p) = out.metrics.as_mut() {
        slots.push((slot("--metrics", Kind::Metrics, false, p), p));
    }
    let outs: Vec<Output> = slots.iter().map(|(o, _)| o.clone()).collect();
    let paths = outpath::check(&outs, inputs)?;
    for ((_, slot), p) in slots.into_iter().zip(paths) {
        *slot = p;
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
                let ext = super::retry_names::default_ext(i);
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
