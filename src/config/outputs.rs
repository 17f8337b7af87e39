//! Outputs: where the results log, the retry files and the report go. In: `--results`,
//! `--retry-file`, `--report`, `--dry-run`, `--resume`, and the inputs (outputs go beside the first
//! one by default, and must not be one of them). Out: the paths, and notes for the user.

use crate::cli::LoadArgs;
use crate::error::{Error, Result};
use crate::source::Input;
use std::path::{Path, PathBuf};

pub(super) struct Outputs {
    /// `None` in a dry run.
    pub results: Option<PathBuf>,
    /// One per input.
    pub retry_files: Vec<PathBuf>,
    pub report: Option<PathBuf>,
}

pub(super) fn outputs(a: &LoadArgs, inputs: &[Input], notes: &mut Vec<String>) -> Result<Outputs> {
    let first = &inputs[0];
    let results = (!a.dry_run).then(|| {
        a.results
            .clone()
            .unwrap_or_else(|| first.dir().join(format!("{}.results.ndjson", first.stem())))
    });
    let retry_files = retry_files(a, inputs)?;
    if let Some(r) = &results {
        for inp in inputs {
            if inp.path.as_deref().is_some_and(|p| same_file(p, r)) || retry_files.contains(r) {
                return Err(Error::Usage(format!(
                    "--results {}: would overwrite an input or a retry file",
                    r.display()
                )));
            }
        }
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
    let report = report(a, inputs, results.as_deref(), &retry_files)?;
    Ok(Outputs {
        results,
        retry_files,
        report,
    })
}

/// `--report`: built from the results log, so a dry run (which writes none) has none;
/// and it must not overwrite an input or another output.
fn report(
    a: &LoadArgs,
    inputs: &[Input],
    results: Option<&Path>,
    retry_files: &[PathBuf],
) -> Result<Option<PathBuf>> {
    let Some(p) = &a.report else { return Ok(None) };
    if a.dry_run {
        return Err(Error::Usage(format!(
            "--report {}: a dry run writes no results log to build the report from; leave out --dry-run or --report",
            p.display()
        )));
    }
    let clash = inputs
        .iter()
        .any(|i| i.path.as_deref().is_some_and(|i| same_file(i, p)))
        || results.is_some_and(|r| same_file(r, p))
        || retry_files.iter().any(|r| same_file(r, p));
    if clash {
        return Err(Error::Usage(format!(
            "--report {}: would overwrite an input, the results log or a retry file; name another file",
            p.display()
        )));
    }
    Ok(Some(p.clone()))
}

/// One retry file per input: `--retry-file` for a single input, else beside each input.
fn retry_files(a: &LoadArgs, inputs: &[Input]) -> Result<Vec<PathBuf>> {
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
            .map(|i| i.dir().join(format!("{}.retry.{}", i.stem(), i.format.ext())))
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
    // An output that is also an input would be truncated before it is read.
    for r in &retry_files {
        if let Some(inp) = inputs
            .iter()
            .find(|i| i.path.as_deref().is_some_and(|p| same_file(p, r)))
        {
            return Err(Error::Usage(format!(
                "--retry-file {}: is the input {}; the retry file of this run must be another file",
                r.display(),
                inp.display()
            )));
        }
    }
    Ok(retry_files)
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}
