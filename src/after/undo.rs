//! `czload undo RESULTS...`: deletes the tasks a load created (its `created` rows, by
//! `obj_id`, and its `exists` rows that were resent, by ref: a create whose answer was
//! lost and that came back "duplicate ref"; a `show` first finds the node each is in),
//! through the load's sender, with
//! its own log, which is its checkpoint: `--resume` after a crash goes on where it ends,
//! and a task whose delete landed before the crash is found gone, settled, never an error.
//!
//! In: results logs. Out: the undo log (`<log>.undo.ndjson`: a head line naming the logs
//! undone, a line per row settled, an end line once every row is), and an [`Undone`].

use super::drive::{drive, Chunk, Mode};
use super::flags::SendFlags;
use super::logs::Log;
use super::steps::Want;
use crate::error::{Error, Result};
use crate::op::OpKind;
use crate::outcome::{Outcome, Status};
use crate::send::Sender;
use crate::sink::results::{input_id, InputId, RowSet};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// Results logs of the load to undo: one, each shard's, or a merged one.
    #[arg(value_name = "RESULTS", required = true)]
    pub logs: Vec<PathBuf>,

    /// Delete without asking (required when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,

    /// List the tasks it would delete (ref and obj_id, a line each, on stdout); send
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Go on with an undo that stopped (a crash, Ctrl-C, an outage): the rows its log
    /// settled are skipped.
    #[arg(long)]
    pub resume: bool,

    /// Also delete the tasks of `exists` rows answered so at their first attempt: their
    /// ref was taken before this load sent it, most likely by an earlier load of the
    /// same rows (by default only `exists` rows that were resent are deleted: their first
    /// attempt most likely created the task).
    #[arg(long)]
    pub all_exists: bool,

    /// The undo log: a line per row settled. Default `<first log>.undo.ndjson`.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub send: SendFlags,
}

/// The undo log's first line: which logs it undoes, so a resume of another is refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Head {
    czload_undo: u32,
    logs: Vec<InputId>,
}

/// A line of the undo log.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    log: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<u32>,
    row: u64,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    obj_id: Option<String>,
    status: Status,
    #[serde(default)]
    attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

const END: &[u8] = br#"{"end":"finished"}"#;

/// What the undo did, for the report and the exit code.
#[derive(Debug, Default)]
pub struct Undone {
    /// Rows whose task undo deletes (`created`, and `exists` rows resent), and of them
    /// those an earlier run of this undo settled.
    pub created: u64,
    pub earlier: u64,
    /// `exists` rows at their first attempt: an earlier load created the task.
    pub not_ours: u64,
    pub counts: HashMap<&'static str, u64>,
    pub unsettled: u64,
    pub stopped: Option<String>,
    pub outage: bool,
    pub interrupted: bool,
    pub output: PathBuf,
    /// `--dry-run`: the tasks it would delete.
    pub would: u64,
}

impl Undone {
    fn get(&self, s: Status) -> u64 {
        self.counts.get(s.as_str()).copied().unwrap_or(0)
    }

    /// 0 every created task is gone; 2 some are not; 1 a refusal; 75 an outage; 130 a stop.
    pub fn exit_code(&self) -> u8 {
        let left = self.unsettled + self.get(Status::Rejected) + self.get(Status::Failed);
        match (&self.stopped, self.outage) {
            (Some(_), true) => crate::EXIT_OUTAGE as u8,
            (Some(_), false) => 1,
            _ if self.interrupted => 130,
            _ if left == 0 => 0,
            _ => 2,
        }
    }

    pub fn render(&self) -> String {
        let mut s = if self.output.as_os_str().is_empty() {
            format!("undo --dry-run: would delete {} tasks\n", self.would)
        } else {
            format!(
                "undo: {} rows to delete: {} deleted, {} gone already, {} rejected, {} failed, {} not settled{}\n",
                self.created,
                self.get(Status::Deleted),
                self.get(Status::Gone),
                self.get(Status::Rejected),
                self.get(Status::Failed),
                self.unsettled,
                if self.earlier > 0 {
                    format!(" (and {} settled by the run resumed)", self.earlier)
                } else {
                    String::new()
                }
            )
        };
        if self.not_ours > 0 {
            s.push_str(&format!(
                "undo: {} rows were `exists` at their first attempt (an earlier load created those tasks): not deleted; --all-exists deletes them too, or undo that load's log\n",
                self.not_ours
            ));
        }
        if let Some(why) = &self.stopped {
            s.push_str(&format!("stopped: {why}\n"));
        }
        if self.interrupted || self.stopped.is_some() {
            s.push_str("undo: go on with the same command and --resume\n");
        }
        if !self.output.as_os_str().is_empty() {
            s.push_str(&format!("undo log: {}\n", self.output.display()));
        }
        s
    }
}

/// The tasks the logs created: a count, before asking for confirmation.
pub fn count(a: &UndoArgs) -> Result<(u64, String)> {
    let logs = open_logs(a)?;
    let mut n = 0;
    for log in &logs {
        log.rows(|r, _| {
            n += u64::from(pick(&r, a.all_exists).is_some());
            Ok(())
        })?;
    }
    let procs: Vec<String> = logs
        .iter()
        .map(|l| l.target.trim_start_matches(',').to_owned())
        .collect();
    Ok((n, procs.join("; ")))
}

fn open_logs(a: &UndoArgs) -> Result<Vec<Log>> {
    a.logs.iter().map(|p| Log::open(p)).collect()
}

/// `--dry-run`: writes the tasks it would delete to `out`, a line each (`REF OBJ_ID`, `-`
/// for no ref), and sends nothing.
pub fn dry_run(a: &UndoArgs, out: &mut impl Write) -> Result<Undone> {
    let mut u = Undone::default();
    let mut closed = false;
    for log in &open_logs(a)? {
        log.rows(|r, _| {
            if let Some(p) = pick(&r, a.all_exists) {
                u.would += 1;
                let obj = p.obj_id.as_deref().unwrap_or("-");
                // A reader that stopped early (`| head`) ends the list, not the count.
                closed = closed
                    || writeln!(out, "{} {obj}", r.reference.as_deref().unwrap_or("-")).is_err();
            }
            Ok(())
        })?;
    }
    Ok(u)
}

/// `czload undo` (the caller asked for confirmation).
pub async fn run(
    a: &UndoArgs,
    mut ticker: super::Ticker,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Undone> {
    let logs = open_logs(a)?;
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| super::beside(&a.logs[0], "undo.ndjson"));
    // Before anything is sent: a regular file or nothing, no log it reads, absent or an
    // undo log (docs/outputs.md).
    let output = crate::outpath::check_beside_logs(
        "--output",
        &output,
        crate::outpath::Kind::Undo,
        &a.logs,
    )?;
    let mut u = Undone {
        output: output.clone(),
        ..Undone::default()
    };
    let head = Head {
        czload_undo: 1,
        logs: logs.iter().map(|l| input_id(Some(&l.path))).collect(),
    };
    let settled = settled(&output, &head, a.resume)?;
    // One undo per log, as one load per results log; the kernel drops it with the process.
    let _lock = lock(&output)?;
    let (cfg, _notes) = a.send.send_config(OpKind::DELETE)?;
    let sender = Arc::new(Sender::new(cfg, CancellationToken::new())?);
    let file = crate::sink::results::create_private(&output, a.resume)
        .map_err(|e| Error::file(&output, format!("cannot write the undo log: {e}")))?;
    let mut w = std::io::BufWriter::new(file);
    let werr = |e: std::io::Error| Error::file(&output, format!("cannot write: {e}"));
    if !a.resume || std::fs::metadata(&output).is_ok_and(|m| m.len() == 0) {
        serde_json::to_writer(&mut w, &head).map_err(|e| Error::Other(e.to_string()))?;
    }
    // A crash may have cut the last line: the next starts on a line of its own.
    w.write_all(b"\n").and_then(|_| w.flush()).map_err(werr)?;
    let (tx, rx) = mpsc::channel::<Chunk<Line>>(8);
    let batch = sender.batch_size();
    let (reader_logs, all_exists) = (logs.clone(), a.all_exists);
    let reader = tokio::task::spawn_blocking(move || {
        read_created(&reader_logs, &settled, all_exists, batch, &tx)
    });
    let interrupted = drive(
        &sender,
        Mode::Delete,
        rx,
        |chunk, outcomes| {
            write_chunk(&mut w, chunk, &outcomes, &mut u)?;
            let n: u64 = u.counts.values().sum();
            ticker.tick(n, || {
                format!(
                    "{} deleted, {} gone",
                    u.get(Status::Deleted),
                    u.get(Status::Gone)
                )
            });
            Ok(())
        },
        shutdown,
    )
    .await?;
    let r = reader
        .await
        .map_err(|e| Error::Other(format!("the log reader failed: {e}")))??;
    (u.created, u.earlier, u.not_ours) = (r.created, r.earlier, r.not_ours);
    u.stopped = sender.fatal();
    u.outage = sender.outage();
    u.interrupted = interrupted;
    let all = u.get(Status::Deleted)
        + u.get(Status::Gone)
        + u.get(Status::Rejected)
        + u.get(Status::Failed);
    u.unsettled = u.created.saturating_sub(u.earlier + all);
    if u.unsettled == 0 && u.stopped.is_none() && !interrupted {
        w.write_all(END)
            .and_then(|_| w.write_all(b"\n"))
            .map_err(werr)?;
    }
    w.flush().map_err(werr)?;
    Ok(u)
}

/// An exclusive `flock(2)` on the undo log (created if need be, never truncated),
/// held to the end: the kernel drops it with the process, even after SIGKILL.
fn lock(path: &Path) -> Result<std::fs::File> {
    let f = crate::sink::results::create_private(path, true)
        .map_err(|e| Error::file(path, format!("cannot write the undo log: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Usage(format!(
                "{}: another czload undo is writing this undo log ({}); wait for it to end",
                path.display(),
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(f)
}

/// The rows an earlier run of this undo settled (`deleted` or `gone`), per log and
/// input; refused: a log of another undo, an existing log without `--resume`.
fn settled(output: &Path, head: &Head, resume: bool) -> Result<HashMap<(u32, u32), RowSet>> {
    let mut sets: HashMap<(u32, u32), RowSet> = HashMap::new();
    if std::fs::symlink_metadata(output).is_ok_and(|m| !m.is_file()) {
        return Err(Error::Usage(format!(
            "{}: not a regular file (a link, a FIFO, a folder): give the undo log another place with -o",
            output.display()
        )));
    }
    let exists = std::fs::metadata(output).is_ok_and(|m| m.len() > 0);
    if !resume {
        if exists {
            return Err(Error::Usage(format!(
                "{} exists: an undo ran already; go on with --resume, or remove it to start over",
                output.display()
            )));
        }
        return Ok(sets);
    }
    if !exists {
        return Ok(sets);
    }
    let f = std::fs::File::open(output).map_err(|e| Error::file(output, e))?;
    let mut lines = std::io::BufReader::new(f).split(b'\n');
    let first = lines
        .next()
        .transpose()
        .map_err(|e| Error::file(output, e))?;
    let was: Option<Head> = first.and_then(|l| serde_json::from_slice(&l).ok());
    if was.as_ref() != Some(head) {
        return Err(Error::Resume(format!(
            "{} is not the undo log of these results logs (or they changed since): give the logs it undid, or another --output",
            output.display()
        )));
    }
    for line in lines {
        let line = line.map_err(|e| Error::file(output, e))?;
        // A line a crash cut short, the end line: its row (if any) is done again.
        let Ok(l) = serde_json::from_slice::<Line>(&line) else {
            continue;
        };
        if l.status.is_success() {
            sets.entry((l.log, l.input.unwrap_or(0)))
                .or_default()
                .insert(l.row);
        }
    }
    Ok(sets)
}

/// The task a row names for undo, when undo deletes it: a `created` row's obj_id, or
/// the ref of an `exists` row that was resent (its first attempt most likely created the
/// task, its answer lost) or, with `--all-exists`, of any `exists` row.
struct Pick {
    obj_id: Option<String>,
}

fn pick(r: &crate::sink::results::ResultLine<'_>, all_exists: bool) -> Option<Pick> {
    match (r.status, &r.obj_id, &r.reference) {
        (Status::Created, Some(o), _) => Some(Pick {
            obj_id: Some(o.to_string()),
        }),
        (Status::Exists, _, Some(_)) if all_exists || r.attempts > 1 => Some(Pick { obj_id: None }),
        _ => None,
    }
}

struct Read {
    created: u64,
    earlier: u64,
    not_ours: u64,
}

/// Streams the logs' `created` rows not settled yet, in chunks of `batch`.
fn read_created(
    logs: &[Log],
    settled: &HashMap<(u32, u32), RowSet>,
    all_exists: bool,
    batch: usize,
    tx: &mpsc::Sender<Chunk<Line>>,
) -> Result<Read> {
    let mut r = Read {
        created: 0,
        earlier: 0,
        not_ours: 0,
    };
    let mut open = Chunk {
        wants: Vec::new(),
        extra: Vec::new(),
    };
    let mut id = 0u64;
    for (k, log) in logs.iter().enumerate() {
        log.rows(|row, _| {
            let Some(p) = pick(&row, all_exists) else {
                r.not_ours += u64::from(row.status == Status::Exists);
                return Ok(());
            };
            let obj = p.obj_id;
            r.created += 1;
            let key = (k as u32, row.input.unwrap_or(0));
            if settled.get(&key).is_some_and(|s| s.contains(row.row)) {
                r.earlier += 1;
                return Ok(());
            }
            id += 1;
            open.wants.push(Want {
                id,
                target: log.target.clone(),
                obj_id: obj.clone(),
                node_id: None,
                reference: row.reference.as_deref().map(str::to_owned),
            });
            open.extra.push(Line {
                log: k as u32,
                input: row.input,
                row: row.row,
                reference: row.reference.map(|c| c.into_owned()),
                obj_id: obj,
                status: Status::Failed,
                attempts: 0,
                error: None,
            });
            if open.wants.len() >= batch {
                let c = std::mem::replace(
                    &mut open,
                    Chunk {
                        wants: Vec::new(),
                        extra: Vec::new(),
                    },
                );
                // The receiver is gone only when the run stopped.
                let _ = tx.blocking_send(c);
            }
            Ok(())
        })?;
    }
    if !open.wants.is_empty() {
        let _ = tx.blocking_send(open);
    }
    Ok(r)
}

/// Writes a line per settled row of a finished chunk and flushes: the undo log is the
/// checkpoint a resume trusts.
fn write_chunk(
    w: &mut std::io::BufWriter<std::fs::File>,
    chunk: Chunk<Line>,
    outcomes: &[Option<Outcome>],
    u: &mut Undone,
) -> Result<()> {
    let werr = |e: std::io::Error| Error::Other(format!("cannot write the undo log: {e}"));
    for (mut line, o) in chunk.extra.into_iter().zip(outcomes) {
        let Some(o) = o else { continue };
        line.status = o.status;
        line.attempts = o.attempts;
        line.error = o.error.clone();
        *u.counts.entry(o.status.as_str()).or_default() += 1;
        serde_json::to_writer(&mut *w, &line).map_err(|e| Error::Other(e.to_string()))?;
        w.write_all(b"\n").map_err(werr)?;
    }
    w.flush().map_err(werr)
}
