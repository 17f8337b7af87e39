//! `czload verify RESULTS...`: asks the server about the rows the logs say succeeded,
//! with `show` ops through the load's sender (paced, retried, read-only), and writes
//! what it found, a line per row checked.
//!
//! In: results logs (one, a shard's each, or a merged one). Out: the verify log
//! (`<log>.verify.ndjson`), a report on stderr, and a [`Verified`] for the exit code.
//! Memory is flat: the logs are streamed; a sample is drawn by reservoir sampling
//! (Algorithm R) and holds its rows only.

use super::drive::{drive, Chunk, Mode};
use super::flags::SendFlags;
use super::logs::Log;
use super::steps::Want;
use crate::error::{Error, Result};
use crate::op::OpKind;
use crate::outcome::{Outcome, Status};
use crate::send::Sender;
use clap::Args;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Logs with more rows to check than this are sampled by default (`--sample`); smaller
/// ones are checked whole. 10,000 shows find a loss of 1 task in 1,000 with a
/// probability above 99.99%, and of 1 in 10,000 with 63%, in 100 requests.
pub const DEFAULT_SAMPLE: u64 = 10_000;

/// The most missing or different rows the report lists (the verify log has them all).
const LISTED: usize = 20;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Results logs of a load: one, each shard's, or a merged one.
    #[arg(value_name = "RESULTS", required = true)]
    pub logs: Vec<PathBuf>,

    /// Check every row the logs say succeeded (the default up to 10,000 of them).
    #[arg(long, conflicts_with = "sample")]
    pub all: bool,

    /// Check a random sample of N of the rows that succeeded (the default, of 10,000,
    /// for larger logs). The same --seed draws the same rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,

    /// The sample's random seed.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Also compare each task's data with what was sent (every key sent must hold the
    /// value sent; keys the process added are not differences), re-reading the inputs
    /// with the flags the log's manifest recorded. Holds the data of the rows checked
    /// in memory: with --all on a large log, that of every row.
    #[arg(long)]
    pub data: bool,

    /// The verify log: a line per row checked. Default `<first log>.verify.ndjson`.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub send: SendFlags,
}

/// What became of the rows checked.
#[derive(Debug, Default, Clone)]
pub struct Verified {
    /// Rows the logs say succeeded, and of them how many were checked.
    pub succeeded: u64,
    pub checked: u64,
    pub confirmed: u64,
    pub missing: u64,
    /// `--data`: on the server, with other data than was sent.
    pub different: u64,
    /// Rows that name no task the server can be asked about (no obj_id, no ref).
    pub unverifiable: u64,
    /// Rows the server could not be asked about (failed, refused, or a stop).
    pub unknown: u64,
    pub sampled: bool,
    /// `--data`: the data was compared too.
    pub data: bool,
    /// A few missing or unknown rows, for the report.
    pub listed: Vec<String>,
    /// Why the run stopped early.
    pub stopped: Option<String>,
    pub outage: bool,
    /// Ctrl-C (or SIGTERM) stopped it.
    pub interrupted: bool,
    pub output: PathBuf,
}

impl Verified {
    /// 0 every row checked is on the server; 2 some are not (or could not be checked);
    /// 75 the server was away; 1 a refusal stopped it.
    pub fn exit_code(&self) -> u8 {
        match (&self.stopped, self.outage) {
            (Some(_), true) => crate::EXIT_OUTAGE as u8,
            (Some(_), false) => 1,
            _ if self.interrupted => 130,
            _ if self.confirmed == self.checked && self.unverifiable == 0 => 0,
            _ => 2,
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "verify: {} of the {} rows the logs say succeeded checked{}: {} confirmed, {} missing, {}{} not verifiable, {} could not be checked\n",
            self.checked + self.unverifiable,
            self.succeeded,
            if self.sampled { " (a random sample; --all checks every row)" } else { "" },
            self.confirmed,
            self.missing,
            if self.data { format!("{} with other data, ", self.different) } else { String::new() },
            self.unverifiable,
            self.unknown
        );
        for l in &self.listed {
            s.push_str(&format!("  {l}\n"));
        }
        let more = (self.missing + self.different + self.unknown + self.unverifiable) as usize;
        if more > self.listed.len() {
            s.push_str(&format!(
                "  ... and {} more in the verify log\n",
                more - self.listed.len()
            ));
        }
        if let Some(why) = &self.stopped {
            s.push_str(&format!("stopped: {why}\n"));
        }
        s.push_str(&format!("verify log: {}\n", self.output.display()));
        s
    }
}

/// A row to check, as its log gives it.
#[derive(Debug, Clone)]
struct Row {
    log: u32,
    input: Option<u32>,
    row: u64,
    reference: Option<String>,
    obj_id: Option<String>,
    status: Status,
    /// `--data`: what the load sent as its data (`None`: its input row is not there).
    sent: Option<String>,
}

/// Whether a row's status says its task should be on the server.
fn should_exist(s: Status) -> bool {
    s.is_success() && !matches!(s, Status::Deleted | Status::Gone)
}

/// `czload verify`.
pub async fn run(
    a: &VerifyArgs,
    mut ticker: super::Ticker,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Verified> {
    let logs: Vec<Log> = a.logs.iter().map(|p| Log::open(p)).collect::<Result<_>>()?;
    let (cfg, _notes) = a.send.send_config(OpKind::SHOW)?;
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| super::beside(&a.logs[0], "verify.ndjson"));
    // Before anything is sent: a regular file or nothing, no log it reads, absent or a
    // verify log (docs/outputs.md).
    let output = crate::outpath::check_beside_logs(
        "--output",
        &output,
        crate::outpath::Kind::Verify,
        &a.logs,
    )?;
    // An earlier verify log with other hard links (a backup) is unlinked, not emptied
    // through them (docs/outputs.md).
    #[cfg(unix)]
    if std::fs::metadata(&output).is_ok_and(|m| std::os::unix::fs::MetadataExt::nlink(&m) > 1) {
        let _ = std::fs::remove_file(&output);
    }
    let file = crate::sink::results::create_private(&output, false)
        .map_err(|e| Error::file(&output, format!("cannot write the verify log: {e}")))?;
    let mut w = std::io::BufWriter::new(file);
    let sender = Arc::new(Sender::new(cfg, CancellationToken::new())?);
    let (tx, rx) = mpsc::channel::<Chunk<Row>>(8);
    let batch = sender.batch_size();
    let (all, sample, seed, data) = (a.all, a.sample, a.seed, a.data);
    let reader_logs = logs.clone();
    let reader = tokio::task::spawn_blocking(move || {
        // The receiver is gone only when the run stopped.
        let send = |c| {
            let _ = tx.blocking_send(c);
        };
        if !data {
            return read_rows(&reader_logs, all, sample, seed, batch, send);
        }
        let mut chunks = Vec::new();
        let r = read_rows(&reader_logs, all, sample, seed, batch, |c| chunks.push(c))?;
        with_sent_data(&reader_logs, &mut chunks)?;
        chunks.into_iter().for_each(send);
        Ok(r)
    });
    let mut v = Verified {
        data,
        output: output.clone(),
        ..Verified::default()
    };
    let interrupted = drive(
        &sender,
        Mode::Show,
        rx,
        |chunk, outcomes| {
            write_chunk(&mut w, &logs, chunk, &outcomes, &mut v)?;
            ticker.tick(v.checked + v.unverifiable, || {
                format!("{} confirmed, {} missing", v.confirmed, v.missing)
            });
            Ok(())
        },
        shutdown,
    )
    .await?;
    let (succeeded, sampled) = reader
        .await
        .map_err(|e| Error::Other(format!("the log reader failed: {e}")))??;
    v.succeeded = succeeded;
    v.sampled = sampled;
    w.flush()
        .map_err(|e| Error::file(&output, format!("cannot write: {e}")))?;
    v.stopped = sender.fatal();
    v.interrupted = interrupted;
    v.outage = sender.outage();
    Ok(v)
}

/// Streams the logs' rows that should be on the server, in chunks of `batch`: all of
/// them, or a seeded sample drawn as they stream by. Gives the count of such rows and
/// whether a sample was drawn.
fn read_rows(
    logs: &[Log],
    all: bool,
    sample: Option<u64>,
    seed: u64,
    batch: usize,
    mut emit: impl FnMut(Chunk<Row>),
) -> Result<(u64, bool)> {
    let keep = if all {
        None
    } else {
        Some(sample.unwrap_or(DEFAULT_SAMPLE))
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut reservoir: Vec<Row> = Vec::new();
    let mut open = Chunk {
        wants: Vec::new(),
        extra: Vec::new(),
    };
    let mut seen = 0u64;
    let mut id = 0u64;
    let mut send = |chunk: &mut Chunk<Row>| {
        emit(std::mem::replace(
            chunk,
            Chunk {
                wants: Vec::new(),
                extra: Vec::new(),
            },
        ))
    };
    for (k, log) in logs.iter().enumerate() {
        log.rows(|r, _| {
            if !should_exist(r.status) {
                return Ok(());
            }
            seen += 1;
            let row = Row {
                log: k as u32,
                input: r.input,
                row: r.row,
                reference: r.reference.map(|c| c.into_owned()),
                obj_id: r.obj_id.map(|c| c.into_owned()),
                status: r.status,
                sent: None,
            };
            match keep {
                None => {
                    push(&mut open, row, &logs[k].target, &mut id);
                    if open.extra.len() >= batch {
                        send(&mut open);
                    }
                }
                Some(n) if (reservoir.len() as u64) < n => reservoir.push(row),
                Some(_) => {
                    let j = rng.random_range(0..seen);
                    if let Some(slot) = reservoir.get_mut(j as usize) {
                        *slot = row;
                    }
                }
            }
            Ok(())
        })?;
    }
    // In log order, so the verify log reads as the logs do.
    reservoir.sort_by_key(|r| (r.log, r.input, r.row));
    for row in reservoir {
        let target = &logs[row.log as usize].target;
        push(&mut open, row, target, &mut id);
        if open.extra.len() >= batch {
            send(&mut open);
        }
    }
    if !open.extra.is_empty() {
        send(&mut open);
    }
    Ok((seen, keep.is_some_and(|n| seen > n)))
}

/// `--data`: puts into each row what its load sent, read again from its inputs.
fn with_sent_data(logs: &[Log], chunks: &mut [Chunk<Row>]) -> Result<()> {
    for (k, log) in logs.iter().enumerate() {
        let want: std::collections::HashSet<(u32, u64)> = chunks
            .iter()
            .flat_map(|c| &c.extra)
            .filter(|r| r.log == k as u32)
            .map(|r| (r.input.unwrap_or(0), r.row))
            .collect();
        let mut sent = super::expect::sent_data(log, &want)?;
        for r in chunks.iter_mut().flat_map(|c| &mut c.extra) {
            if r.log == k as u32 {
                r.sent = sent.remove(&(r.input.unwrap_or(0), r.row));
            }
        }
    }
    Ok(())
}

/// Adds a row to a chunk: a want for it when it names a task, none when it cannot.
fn push(chunk: &mut Chunk<Row>, row: Row, target: &str, id: &mut u64) {
    if row.obj_id.is_some() || row.reference.is_some() {
        *id += 1;
        chunk.wants.push(Want {
            id: *id,
            target: target.to_owned(),
            obj_id: row.obj_id.clone(),
            node_id: None,
            reference: row.reference.clone(),
        });
    }
    chunk.extra.push(row);
}

/// What one row's check found: its verdict and why. `sent`: with `--data`, what the
/// load sent as its data.
fn verdict(o: Option<&Outcome>, sent: Option<Option<&str>>) -> (&'static str, Option<String>) {
    match o {
        Some(o) if o.status == Status::Done => match sent {
            None => ("confirmed", None),
            Some(None) => (
                "unknown",
                Some("its row is not in the inputs read again (changed since the load?)".into()),
            ),
            Some(Some(s)) => {
                let d = super::expect::differences(s, o.reply.as_deref());
                if d.is_empty() {
                    ("confirmed", None)
                } else {
                    ("different", Some(d.join("; ")))
                }
            }
        },
        Some(o) if o.status == Status::Gone => {
            ("missing", Some("the server has no such task".into()))
        }
        Some(o) => (
            "unknown",
            Some(format!(
                "{}: {}",
                o.status.as_str(),
                o.error.as_deref().unwrap_or("")
            )),
        ),
        None => ("unknown", Some("not asked: the run stopped".into())),
    }
}

/// Writes a verify line per row of a finished chunk and counts them.
fn write_chunk(
    w: &mut impl Write,
    logs: &[Log],
    chunk: Chunk<Row>,
    outcomes: &[Option<Outcome>],
    v: &mut Verified,
) -> Result<()> {
    let mut asked = outcomes.iter();
    for row in &chunk.extra {
        let (what, why) = if row.obj_id.is_some() || row.reference.is_some() {
            let sent = v.data.then_some(row.sent.as_deref());
            verdict(asked.next().and_then(Option::as_ref), sent)
        } else {
            (
                "unverifiable",
                Some("the row has no obj_id and no ref (a --no-ref row whose answer gave none): nothing names its task".into()),
            )
        };
        match what {
            "confirmed" => v.confirmed += 1,
            "missing" => v.missing += 1,
            "different" => v.different += 1,
            "unverifiable" => v.unverifiable += 1,
            _ => v.unknown += 1,
        }
        if what != "unverifiable" {
            v.checked += 1;
        }
        let line = serde_json::json!({
            "log": logs[row.log as usize].path.display().to_string(),
            "input": row.input,
            "row": row.row,
            "ref": row.reference,
            "obj_id": row.obj_id,
            "logged": row.status.as_str(),
            "verdict": what,
            "reason": why,
        });
        if what != "confirmed" && v.listed.len() < LISTED {
            v.listed.push(format!(
                "{what}: row {} ref {} obj_id {}{}",
                row.row,
                row.reference.as_deref().unwrap_or("-"),
                row.obj_id.as_deref().unwrap_or("-"),
                why.as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            ));
        }
        serde_json::to_writer(&mut *w, &line)
            .map_err(|e| Error::Other(format!("cannot write the verify log: {e}")))?;
        w.write_all(b"\n")
            .map_err(|e| Error::Other(format!("cannot write the verify log: {e}")))?;
    }
    Ok(())
}
