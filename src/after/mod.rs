//! After a load: the ops that name tasks already there, `show` and `delete`
//! (`steps.rs`), and what is built on them: `--op delete` on an input of `obj_id` / ref
//! rows (here), `czload verify` (`verify.rs`) and `czload undo` (`undo.rs`).

pub mod drive;
pub mod expect;
pub mod flags;
pub mod logs;
pub mod steps;
pub mod undo;
pub mod verify;

/// `czload verify --help`: what it checks, then its exit codes.
pub const VERIFY_HELP: &str = "\
Checks the rows the logs say succeeded (created, modified, exists): by obj_id when the log \
has one, else by ref; a row with neither is not verifiable. Up to 10,000 such rows are all \
checked; of more, a random sample of 10,000 (--sample N, --seed S), unless --all. Writes a \
line per row checked to the verify log (verdict confirmed, missing, unverifiable or unknown).

Exit codes: 0 every row checked is on the server; 2 some are missing, not verifiable or could \
not be checked; 1 usage, a log that cannot be read, or a refusal of the process or the key; \
75 the server was away longer than --max-retry-time.

Examples:
  czload verify orders.results.ndjson
  czload verify orders.shard-*-of-3.results.ndjson --all --rate 200";

/// `czload undo --help`.
pub const UNDO_HELP: &str = "\
Deletes each task the logs say was created (by obj_id; a show first finds its node), and \
the task of each `exists` row that was resent (by ref: a create whose answer was lost came \
back \"duplicate ref\"). A task already gone is `gone`, settled. Rows `exists` at their first \
attempt (created by an earlier load) are left unless --all-exists. It cannot undo what the process already did with a task (calls it made, \
tasks it sent on to other processes, data it changed elsewhere): it only deletes the task.

Exit codes: 0 every created task is gone; 2 some could not be deleted (named in the undo \
log); 1 usage, no --yes, a refusal of the process or the key; 75 the server was away \
longer than --max-retry-time; 130 interrupted (go on with --resume).

Examples:
  czload undo orders.results.ndjson --dry-run
  czload undo orders.results.ndjson --yes --rate 100
  czload undo orders.results.ndjson --yes --resume       (after a stop)";

use crate::batch::Batch;
use crate::outcome::{Outcome, Status};
use crate::send::Sender;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::atomic::Ordering;
use steps::Want;

/// The parts of a mapped `--op delete` op that name its task: the process fields as
/// the mapping wrote them, and `obj_id` / `node_id` from the row's data.
#[derive(Deserialize)]
struct Mapped<'a> {
    #[serde(borrow)]
    conv_id: Option<&'a RawValue>,
    #[serde(borrow)]
    obj_alias: Option<&'a RawValue>,
    #[serde(borrow)]
    company_id: Option<&'a RawValue>,
    #[serde(default)]
    data: serde_json::Map<String, serde_json::Value>,
}

/// A string field of the row, when it is a non-empty string.
fn text(data: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    match data.get(key) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// `--op delete`: settles a batch the mapping wrote (each op's `data` the row) by a
/// `show` where the row gives no `node_id` and a `delete` by `obj_id` and `node_id`.
/// `refs_name_tasks`: the refs come from `--ref-column` or `--ref-template`; a generated
/// ref (`file:row`) names no task, so a row without an `obj_id` is then refused.
pub async fn delete_rows(
    sender: &Sender,
    batch: &Batch,
    refs_name_tasks: bool,
) -> Vec<Option<Outcome>> {
    let (mut out, wants, back) = wants_of(batch, refs_name_tasks);
    // Refused here, never handed to the sender: counted as it counts rows in flight.
    let refused = (batch.len() - wants.len()) as u64;
    sender.stats.rows.fetch_add(refused, Ordering::Relaxed);
    let settled = steps::delete(sender, &wants).await;
    for (o, i) in settled.into_iter().zip(back) {
        out[i] = o;
    }
    out
}

/// `--op delete --dry-run`: the first request a batch would send (its shows, or its
/// deletes when every row gives the node), as it would be sent.
pub fn first_request(batch: &Batch, refs_name_tasks: bool) -> Option<bytes::Bytes> {
    let (_, wants, _) = wants_of(batch, refs_name_tasks);
    steps::first_body(&wants)
}

/// The wants of a mapped batch, with the rows they are (`back`), and the outcome of
/// each row refused before any request.
fn wants_of(batch: &Batch, refs_name_tasks: bool) -> (Vec<Option<Outcome>>, Vec<Want>, Vec<usize>) {
    let mut out: Vec<Option<Outcome>> = vec![None; batch.len()];
    let mut wants = Vec::with_capacity(batch.len());
    let mut back = Vec::with_capacity(batch.len());
    for (i, slot) in out.iter_mut().enumerate() {
        let Ok(m) = serde_json::from_slice::<Mapped>(batch.op(i)) else {
            *slot = Some(Outcome::new(Status::Rejected, 0).with_error("the op is not valid JSON"));
            continue;
        };
        let mut target = String::new();
        for (k, v) in [
            ("conv_id", m.conv_id),
            ("obj_alias", m.obj_alias),
            ("company_id", m.company_id),
        ] {
            if let Some(v) = v {
                target.push_str(&format!(",\"{k}\":{}", v.get()));
            }
        }
        let reference = batch
            .reference(i)
            .filter(|_| refs_name_tasks)
            .map(str::to_owned);
        let obj_id = text(&m.data, "obj_id");
        if obj_id.is_none() && reference.is_none() {
            *slot = Some(Outcome::new(Status::Rejected, 0).with_error(
                "the row has no obj_id, and no ref names its task (--ref-column or --ref-template; a generated ref names none)",
            ));
            continue;
        }
        wants.push(Want {
            id: batch.rows[i].id,
            target,
            node_id: text(&m.data, "node_id").filter(|_| obj_id.is_some()),
            obj_id,
            reference,
        });
        back.push(i);
    }
    (out, wants, back)
}

/// What a verify or an undo says while it runs: a line every [`Ticker::EVERY`], handed
/// to the caller (`main` prints it; nothing here prints).
pub struct Ticker {
    say: Box<dyn FnMut(&str) + Send>,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl Ticker {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    pub fn new(say: Box<dyn FnMut(&str) + Send>) -> Ticker {
        let now = std::time::Instant::now();
        Ticker {
            say,
            started: now,
            last: now,
        }
    }

    /// Says `what` of `done` rows, with their rate, when a line is due.
    pub fn tick(&mut self, done: u64, what: impl FnOnce() -> String) {
        if self.last.elapsed() < Self::EVERY {
            return;
        }
        self.last = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        (self.say)(&format!(
            "{done} rows in {secs:.0} s ({:.0} rows/s): {}",
            done as f64 / secs,
            what()
        ));
    }
}

/// A file beside a results log, named after it: `orders.results.ndjson` gives
/// `orders.SUFFIX`.
pub fn beside(log: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let name = log
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let stem = name
        .strip_suffix(".results.ndjson")
        .or_else(|| name.strip_suffix(".ndjson"))
        .unwrap_or(&name);
    log.with_file_name(format!("{stem}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// The examples of `verify --help` and `undo --help` are commands clap accepts.
    #[test]
    fn the_help_examples_parse() {
        let mut n = 0;
        for line in super::VERIFY_HELP.lines().chain(super::UNDO_HELP.lines()) {
            let Some(cmd) = line.trim().strip_prefix("czload ") else {
                continue;
            };
            let cmd = cmd.split("  (").next().unwrap_or(cmd);
            let words = std::iter::once("czload").chain(cmd.split_whitespace());
            if let Err(e) = crate::cli::Cli::try_parse_from(words) {
                panic!("`{line}` does not parse: {e}");
            }
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn files_beside_a_log_are_named_after_it() {
        let p = std::path::Path::new("/d/orders.shard-0-of-3.results.ndjson");
        assert_eq!(
            super::beside(p, "undo.ndjson"),
            std::path::Path::new("/d/orders.shard-0-of-3.undo.ndjson")
        );
        assert_eq!(
            super::beside(std::path::Path::new("x.log"), "verify.ndjson"),
            std::path::Path::new("x.log.verify.ndjson")
        );
    }
}
