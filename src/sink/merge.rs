//! `czload merge-results`: the results logs of the N copies of one load (`--shard i/N`)
//! joined into one results log in which every row of the inputs appears exactly once.
//!
//! In: the copies' logs. Out: one log (a manifest saying it is merged from N shards, the
//! row and run lines of every shard, each run line naming its shard, the end line), or a refusal
//! naming what is wrong: a log of another load (inputs, reading or mapping differ), a
//! shard missing or given twice, a shard whose run is unfinished, a row in two shards.
//!
//! Completeness is not checked against the inputs (they may be on other machines): each
//! copy lists exactly the rows of its shard, and a copy that settled every row ends its
//! log with the end line, so N finished shards with no row in two of them are the whole
//! load. The output is written beside itself under a temporary name and renamed at the
//! end (`outpath::Replace`): a refused merge leaves no partial file, and never touches
//! the logs it reads. `-o` is checked as every output is (`crate::outpath`): a regular
//! file or nothing, not one of the logs nor an input of the load their manifests name,
//! and absent or a results log.

use super::results::{Manifest, ResultLine, RowSet, RunLine, END_LINE};
use crate::error::{Error, Result};
use crate::outpath::{Kind, Replace};
use crate::shard::Shard;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// What a merge did.
#[derive(Debug)]
pub enum Merge {
    /// Written: the rows of each shard, in shard order.
    Done { shards: u32, rows: Vec<u64> },
    /// Not written, and why (exit 2).
    Refused(String),
}

/// One copy's log, read for the merge.
struct ShardLog<'a> {
    path: &'a Path,
    manifest: Manifest,
    shard: Shard,
}

/// Merges `logs` into `out`. `Err` is a file that cannot be read or written (exit 1),
/// or an `-o` czload will not write (exit 2).
pub fn merge_results(logs: &[PathBuf], out: &Path) -> Result<Merge> {
    let out = &check_output(logs, out)?;
    let shards = match shard_logs(logs)? {
        Ok(s) => s,
        Err(why) => return Ok(Merge::Refused(why)),
    };
    let count = shards[0].shard.count;
    let io = |e: std::io::Error| Error::file(out, format!("cannot write the merged log: {e}"));
    let mut tmp = Replace::new(out, Kind::Results).map_err(io)?;
    match write_merged(&shards, tmp.file())? {
        Ok(rows) => {
            tmp.commit().map_err(io)?;
            Ok(Merge::Done {
                shards: count,
                rows,
            })
        }
        // Dropped, the temporary file goes.
        Err(why) => Ok(Merge::Refused(why)),
    }
}

/// `-o` through `outpath`: the logs and the inputs their manifests name are inputs.
fn check_output(logs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    crate::outpath::check_beside_logs("-o", out, Kind::Results, logs)
}

/// Reads every log's manifest and checks that together they are the N shards of one load:
/// the inner `Err` is why not.
fn shard_logs(logs: &[PathBuf]) -> Result<std::result::Result<Vec<ShardLog<'_>>, String>> {
    let mut shards: Vec<ShardLog> = Vec::new();
    for path in logs {
        File::open(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        let Some(manifest) = Manifest::read(path) else {
            return Ok(Err(format!(
                "{}: does not start with a czload manifest: not a results log",
                path.display()
            )));
        };
        let Some(shard) = manifest.shard.as_deref().and_then(|s| Shard::parse(s).ok()) else {
            return Ok(Err(format!(
                "{}: was not written by a copy with --shard i/N; merge-results joins the logs of the N copies of one load",
                path.display()
            )));
        };
        if let Some(first) = shards.first() {
            if let Some(why) = other_load(first, path, &manifest, shard) {
                return Ok(Err(why));
            }
        }
        if let Some(twice) = shards.iter().find(|s| s.shard == shard) {
            return Ok(Err(format!(
                "shard {shard} is given twice: {} and {}",
                twice.path.display(),
                path.display()
            )));
        }
        shards.push(ShardLog {
            path,
            manifest,
            shard,
        });
    }
    let count = shards[0].shard.count;
    let missing: Vec<String> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.shard.index == *i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Ok(Err(format!(
            "shard {} of this load is missing: give the logs of all {count} copies",
            missing.join(", ")
        )));
    }
    shards.sort_by_key(|s| s.shard.index);
    Ok(Ok(shards))
}

/// Why a log is not of the same load as the first one, if it is not.
fn other_load(first: &ShardLog, path: &Path, m: &Manifest, shard: Shard) -> Option<String> {
    let (a, b) = (first.path.display(), path.display());
    let f = &first.manifest;
    let d = super::manifest::differences(m, f, &a.to_string());
    let what = if shard.count != first.shard.count {
        format!(
            "{a} is a shard of {}, {b} of {}",
            first.shard.count, shard.count
        )
    } else if !d.is_empty() {
        format!("{b} was read or mapped with other flags: {}", d.join(", "))
    } else if f.mapping != m.mapping {
        format!(
            "the mapping differs (in {a}: {}; in {b}: {})",
            f.mapping, m.mapping
        )
    } else if f.reading != m.reading {
        "the inputs were read with other flags (format, delimiter or header)".into()
    } else if f.inputs.len() != m.inputs.len()
        || f.inputs
            .iter()
            .zip(&m.inputs)
            .any(|(x, y)| x.size != y.size || x.sample_sha1 != y.sample_sha1)
    {
        "the inputs differ (their number, size or content)".into()
    } else {
        return None;
    };
    Some(format!("{a} and {b} are not of one load: {what}"))
}

/// Writes the merged log to `tmp`: the rows per shard, or (inner `Err`) why the logs
/// cannot be merged.
fn write_merged(
    shards: &[ShardLog],
    tmp: &mut File,
) -> Result<std::result::Result<Vec<u64>, String>> {
    let io = |e: std::io::Error| Error::Other(format!("cannot write the merged log: {e}"));
    let mut w = BufWriter::with_capacity(256 * 1024, tmp);
    let mut manifest = shards[0].manifest.clone();
    manifest.shard = None;
    manifest.retry_files = Vec::new();
    manifest.merged_from = Some(shards[0].shard.count);
    serde_json::to_writer(&mut w, &manifest).map_err(|e| io(e.into()))?;
    w.write_all(b"\n").map_err(io)?;
    // Rows of the shards copied so far, per input.
    let mut seen = vec![RowSet::default(); manifest.inputs.len()];
    let mut rows = Vec::new();
    for (k, s) in shards.iter().enumerate() {
        match copy_rows(s, &shards[..k], &mut seen, &mut w)? {
            Ok(n) => rows.push(n),
            Err(why) => return Ok(Err(why)),
        }
    }
    w.write_all(END_LINE)
        .and_then(|()| w.write_all(b"\n"))
        .and_then(|()| w.flush())
        .map_err(io)?;
    Ok(Ok(rows))
}

/// Copies one shard's row and run lines to `w`, as they are (its run lines naming it). Counts
/// its rows, or (inner `Err`) names a row an earlier shard (`before`) has too, or says the
/// shard's run did not finish.
fn copy_rows(
    s: &ShardLog,
    before: &[ShardLog],
    seen: &mut [RowSet],
    w: &mut impl Write,
) -> Result<std::result::Result<u64, String>> {
    let path = s.path;
    let f = File::open(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mut finished = false;
    let mut mine = RowSet::default();
    let mut n = 0u64;
    for (no, line) in BufReader::new(f).split(b'\n').enumerate().skip(1) {
        let line = line.map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        finished = line == END_LINE;
        let parsed = match super::results::LogLine::of(&line) {
            super::results::LogLine::Row(r) => Some(r),
            // A row whose line is damaged would be missing from the merged log.
            super::results::LogLine::Damaged(why) => {
                return Ok(Err(format!(
                    "{} line {} is not a results line ({why}): repair or delete that line, resume that shard (`czload load ... --shard {} --resume`), then merge again",
                    path.display(),
                    no + 1,
                    s.shard
                )))
            }
            _ => None,
        };
        if let Some(r) = parsed {
            let input = r.input.unwrap_or(0);
            let Some(set) = seen.get_mut(input as usize) else {
                return Ok(Err(format!(
                    "{}: a line names input {input}, but the load has {}",
                    path.display(),
                    seen.len()
                )));
            };
            // A row twice in one log (a cut line redone by a resume) counts once, as
            // --resume reads it.
            if mine.contains(r.row) {
                continue;
            }
            if set.contains(r.row) {
                let other = before.iter().find(|b| has_row(b.path, input, r.row));
                return Ok(Err(format!(
                    "row {} of input {} is in shard {} ({}) and in shard {} ({}): a row must be in one shard only; are these the logs of one load?",
                    r.row,
                    input + 1,
                    other.map_or("?".into(), |o| o.shard.to_string()),
                    other.map_or("?".into(), |o| o.path.display().to_string()),
                    s.shard,
                    path.display()
                )));
            }
            set.insert(r.row);
            mine.insert(r.row);
            n += 1;
            w.write_all(&line)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| Error::Other(format!("cannot write the merged log: {e}")))?;
        } else if let Some(mut r) = run_line(&line) {
            // Kept as the copy wrote it, naming the copy: the report draws each copy's
            // rows in a lane of its own, and adds up their requests.
            r.facts.shard.get_or_insert_with(|| s.shard.to_string());
            serde_json::to_writer(&mut *w, &serde_json::json!({ "run": r }))
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| Error::Other(format!("cannot write the merged log: {e}")))?;
        }
    }
    if !finished {
        return Ok(Err(format!(
            "shard {} ({}) is unfinished: its run stopped before every row was settled; finish it with `czload load ... --shard {} --resume`, then merge again",
            s.shard,
            path.display(),
            s.shard
        )));
    }
    Ok(Ok(n))
}

/// Whether the log at `path` has a line for `row` of `input` (to name the other shard of
/// a doubled row: read again, as that is rare).
fn has_row(path: &Path, input: u32, row: u64) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    BufReader::new(f)
        .split(b'\n')
        .map_while(|l| l.ok())
        .any(|l| {
            serde_json::from_slice::<ResultLine>(&l)
                .is_ok_and(|r| r.row == row && r.input.unwrap_or(0) == input)
        })
}

fn run_line(line: &[u8]) -> Option<RunLine> {
    #[derive(serde::Deserialize)]
    struct Wrapped {
        run: RunLine,
    }
    serde_json::from_slice::<Wrapped>(line).ok().map(|w| w.run)
}
