//! The summary: counts per status, latency, what was written where. In: the journal's
//! `Tally` (what the sinks saw) and the run's `RunStats` (what the senders measured).
//! Out: `Summary`, rendered for stderr by `render`, serialized for `--summary-json`, and
//! mapped to the exit code by `exit_code` (docs/architecture.md, exit codes).

use super::Event;
use crate::config::LoadConfig;
use crate::outcome::{RejectedRow, Status};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::path::PathBuf;

/// Counts per status, indexed by `Status::index`: a new status needs no line here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts([u64; Status::COUNT]);

impl Counts {
    pub fn add(&mut self, s: Status) {
        self.0[s.index()] += 1;
    }

    pub fn get(&self, s: Status) -> u64 {
        self.0[s.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn succeeded(&self) -> u64 {
        Status::ALL
            .iter()
            .filter(|s| s.is_success())
            .map(|&s| self.get(s))
            .sum()
    }

    /// Rows that did not succeed.
    pub fn not_ok(&self) -> u64 {
        self.total() - self.succeeded()
    }
}

/// `1 created, 0 modified, ...`: every status, in `Status::ALL` order.
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &s) in Status::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {}", self.get(s), s.as_str())?;
        }
        Ok(())
    }
}

/// A JSON object with one key per status, in `Status::ALL` order (as the struct of named
/// fields it replaces wrote it; flattened into the summary, the keys land at its top).
impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(Some(Status::COUNT))?;
        for &s in Status::ALL {
            m.serialize_entry(s.as_str(), &self.get(s))?;
        }
        m.end()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_micros(mut v: Vec<u32>) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Latency {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: *v.last().expect("non-empty") as f64 / 1000.0,
        }
    }
}

/// What the journal saw: counts per status, input errors, and the first rejected rows
/// (for the dry-run report). Kept by the journal itself, not by a sink, as the summary
/// is built from it; sinks read it at each checkpoint.
#[derive(Debug, Default)]
pub struct Tally {
    pub counts: Counts,
    pub input_errors: Vec<String>,
    pub sample_rejects: Vec<RejectedRow>,
    /// Why rows failed: the cause (an error up to its first `:`) and how many rows.
    pub failed_causes: Vec<(String, u64)>,
    /// Why rows did not succeed, in full (the summary's top reasons).
    pub reasons: super::reasons::Reasons,
}

/// Rejected rows kept for the dry-run report.
const SAMPLE_REJECTS: usize = 20;

impl Tally {
    pub fn record(&mut self, ev: &Event) {
        match ev {
            Event::InputStart { .. } => {}
            Event::InputError { message, .. } => self.input_errors.push(message.clone()),
            Event::Rejected(rows) => {
                for r in rows {
                    self.counts.add(Status::Rejected);
                    self.reasons.add(Status::Rejected, Some(&r.reason));
                    if self.sample_rejects.len() < SAMPLE_REJECTS {
                        self.sample_rejects.push(r.clone());
                    }
                }
            }
            Event::Batch { outcomes, .. } => {
                // A row a stop left unsettled (`None`) is not counted: --resume picks it up.
                for o in outcomes.iter().flatten() {
                    self.counts.add(o.status);
                    self.reasons.add(o.status, o.error.as_deref());
                    if o.status == Status::Failed {
                        self.failed_cause(o.error.as_deref().unwrap_or("unknown"));
                    }
                }
            }
        }
    }
}

impl Tally {
    fn failed_cause(&mut self, error: &str) {
        let cause = error.split([':', '(']).next().unwrap_or(error).trim();
        if let Some((_, n)) = self.failed_causes.iter_mut().find(|(c, _)| c == cause) {
            *n += 1;
        } else if self.failed_causes.len() < 32 {
            // A handful of causes at most; the bound keeps a run of odd errors cheap.
            self.failed_causes.push((cause.into(), 1));
        }
    }

    /// The cause of most failed rows, with their count.
    fn main_failure(&self) -> Option<String> {
        let (cause, n) = self.failed_causes.iter().max_by_key(|(_, n)| *n)?;
        Some(format!("{cause} ({n} rows)"))
    }
}

/// What the run measured outside the journal, for `Summary::new`.
#[derive(Debug, Default)]
pub struct RunStats {
    /// Rows read in this run (resumed rows not included).
    pub rows: u64,
    /// Rows skipped as settled by the results log (`--resume`).
    pub skipped: u64,
    /// What became of the skipped rows, by the results log.
    pub earlier: Counts,
    /// `--shard`: rows read that belong to other copies.
    pub other_shards: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    /// Every request's latency, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Requests by what came of them, over time (`None` in a dry run).
    pub outcomes: Option<crate::send::Outcomes>,
    pub elapsed_secs: f64,
    pub interrupted: bool,
    pub fatal: Option<String>,
    /// The stop was the server away, not a refusal (`Sender::outage`).
    pub outage: bool,
    /// What the rate controller learnt; `None` in a dry run.
    pub rate: Option<crate::send::RateReport>,
}

/// What happened, for the user (stderr) and for automation (`--summary-json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Rows read from the inputs in this run (resumed rows not included).
    pub rows: u64,
    #[serde(flatten)]
    pub counts: Counts,
    /// Rows skipped because the results log already settled them (`--resume`).
    pub skipped: u64,
    /// What became of the skipped rows, by the results log of the earlier runs.
    pub earlier: Counts,
    /// `--shard i/N`: this copy, and the rows read that belong to the other copies (not
    /// rows of this run: they have no line in its results log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub other_shards: u64,
    /// Rows read but left without a final status by a stop (resumable).
    pub unsettled: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub latency: Latency,
    pub elapsed_secs: f64,
    pub rows_per_sec: f64,
    pub results_log: Option<PathBuf>,
    /// `--report` and `--metrics`: said at the end, so the user knows where to look.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<PathBuf>,
    /// For the results log's run line; the report draws it.
    #[serde(skip)]
    pub outcomes: Option<crate::send::Outcomes>,
    pub retry_files: Vec<PathBuf>,
    /// The rows whose fate is unknown (`ambiguous`), apart from the retry files: to be
    /// checked on the server, never loaded again blindly.
    pub ambiguous_files: Vec<PathBuf>,
    /// How to load the retry files, when it is not the same command.
    pub retry_hint: Option<String>,
    pub input_errors: Vec<String>,
    pub interrupted: bool,
    /// Why the run stopped early (authentication, ...).
    pub fatal: Option<String>,
    /// The stop was the server away longer than `--max-retry-time` (exit 75: worth
    /// starting again later), not a refusal of the run (exit 1: fix something first).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outage: bool,
    /// `--max-errors` stopped the run: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_reached: Option<String>,
    /// Why most failed rows failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_cause: Option<String>,
    /// The most common reasons rows did not succeed, in the words given (the server's, or
    /// the mapping's), with their row counts: up to `reasons::TOP` per status.
    pub reasons: Vec<super::reasons::Reason>,
    /// Per status, the rows whose reason `reasons` leaves out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_reasons: Vec<(crate::outcome::Status, u64)>,
    /// The rate asked and what the controller found (`--rate auto`) or could not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<crate::send::RateReport>,
    pub dry_run: bool,
    /// A dry run's report of the first rejected rows, one line each, shown before the
    /// summary.
    #[serde(skip)]
    pub dry_run_rejects: Vec<String>,
    /// End-of-run outputs that could not be written (`Sink::report`): shown after the
    /// summary, and the run exits 1.
    #[serde(skip)]
    pub report_errors: Vec<String>,
    /// Notes for the user about what the run did besides loading (an unfinished log kept
    /// aside by `--restart`), shown before the summary.
    #[serde(skip)]
    pub notes: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Summary {
    pub fn new(cfg: &LoadConfig, tally: &Tally, run: RunStats) -> Summary {
        let counts = tally.counts.clone();
        let settled_now = counts.total();
        let dry_run_rejects = if cfg.dry_run {
            tally
                .sample_rejects
                .iter()
                .map(|r| {
                    format!(
                        "would reject: {} row {} (line {}): {}",
                        cfg.inputs[r.input as usize].display(),
                        r.row,
                        r.line,
                        r.reason
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let (reasons, other_reasons) = tally.reasons.top();
        Summary {
            reasons,
            other_reasons,
            rows: run.rows,
            skipped: run.skipped,
            earlier: run.earlier,
            shard: cfg.shard.map(|s| s.to_string()),
            other_shards: run.other_shards,
            unsettled: if cfg.dry_run {
                0
            } else {
                run.rows.saturating_sub(settled_now)
            },
            requests: run.requests,
            retries: run.retries,
            throttled: run.throttled,
            latency: Latency::from_micros(run.latencies_us),
            elapsed_secs: run.elapsed_secs,
            rows_per_sec: settled_now as f64 / run.elapsed_secs.max(1e-9),
            results_log: cfg.results.clone(),
            report: cfg.report.clone(),
            metrics: cfg.metrics.clone(),
            outcomes: run.outcomes,
            retry_files: super::retry_file::written(cfg, super::retry_file::Kind::Retry),
            ambiguous_files: super::retry_file::written(cfg, super::retry_file::Kind::Ambiguous),
            input_errors: tally.input_errors.clone(),
            retry_hint: None,
            interrupted: run.interrupted,
            fatal: run.fatal,
            outage: run.outage,
            failed_cause: tally.main_failure(),
            limit_reached: None,
            rate: run.rate,
            dry_run: cfg.dry_run,
            counts,
            dry_run_rejects,
            report_errors: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The exit codes of docs/architecture.md: 0 all rows succeeded, 2 some did not, 1 the
    /// run could not proceed, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        // A resumed run answers for the whole input: rows an earlier run could not load
        // still make the exit code 2.
        let clean = if self.dry_run {
            self.counts.get(Status::Rejected) == 0
        } else {
            self.counts.succeeded() == self.rows
                && self.unsettled == 0
                && self.earlier.succeeded() == self.earlier.total()
        };
        if self.interrupted {
            130
        } else if self.fatal.is_some() && self.outage {
            crate::error::EXIT_OUTAGE
        } else if self.fatal.is_some() {
            1
        } else if clean && self.input_errors.is_empty() {
            0
        } else {
            2
        }
    }

    /// What to do about rows a stop left unsettled.
    fn unsettled_line(&self) -> Option<String> {
        if self.unsettled == 0 {
            return None;
        }
        Some(if self.counts.total() == 0 && self.skipped == 0 {
            // Nothing to resume, and a fix of --conv-id (say) is a new mapping that
            // --resume would refuse: a plain run starts over (sink::claim::has_rows).
            format!(
                "{} rows were not settled, and no row was: once the cause is fixed, run the command again (without --resume: the results log holds no row, so the run starts over)",
                self.unsettled
            )
        } else {
            format!(
                "{} rows were not settled; run the same command with --resume to finish them",
                self.unsettled
            )
        })
    }

    /// The human summary, as printed on stderr.
    pub fn render(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write as _;
        if self.dry_run {
            let rejected = self.counts.get(Status::Rejected);
            let _ = writeln!(
                s,
                "dry run: {} rows read, {} would be sent in {} requests, {} rejected",
                self.rows,
                self.rows - rejected,
                self.requests,
                rejected
            );
        } else {
            let _ = writeln!(
                s,
                "{} rows in {:.1}s ({:.0} rows/s): {}",
                self.rows, self.elapsed_secs, self.rows_per_sec, self.counts
            );
            let _ = writeln!(
                s,
                "requests: {} ({} retries, {} throttled); latency p50 {:.1} ms, p99 {:.1} ms",
                self.requests,
                self.retries,
                self.throttled,
                self.latency.p50_ms,
                self.latency.p99_ms
            );
            if let Some(c) = &self.failed_cause {
                let _ = writeln!(s, "failed rows, mostly: {c}");
            }
            super::reasons::render(&self.reasons, &self.other_reasons, &mut s);
            if let Some(line) = self.rate.as_ref().and_then(|r| r.line()) {
                let _ = writeln!(s, "{line}");
            }
        }
        if let Some(shard) = &self.shard {
            let _ = writeln!(
                s,
                "shard {shard}: {} rows read belong to the other copies (skipped here; czload merge-results joins the copies' logs)",
                self.other_shards
            );
        }
        if self.rows == 0
            && self.skipped == 0
            && self.other_shards == 0
            && self.input_errors.is_empty()
        {
            let _ = writeln!(s, "note: the input has no data rows");
        }
        if self.skipped > 0 {
            let _ = writeln!(
                s,
                "resumed: {} rows already settled were skipped (earlier runs: {})",
                self.skipped, self.earlier
            );
        }
        if let Some(l) = self.unsettled_line() {
            let _ = writeln!(s, "{l}");
        }
        for e in &self.input_errors {
            let _ = writeln!(s, "input error: {e}");
        }
        if let Some(f) = &self.fatal {
            let _ = writeln!(s, "stopped: {f}");
        }
        if let Some(l) = &self.limit_reached {
            let _ = writeln!(s, "stopped: {l}");
        }
        if let Some(p) = &self.results_log {
            let _ = writeln!(s, "results log: {}", p.display());
        }
        if let Some(p) = &self.report {
            let _ = writeln!(s, "report: {}", p.display());
        }
        if let Some(p) = &self.metrics {
            let _ = writeln!(s, "metrics: {}", p.display());
        }
        for p in &self.retry_files {
            let _ = writeln!(
                s,
                "retry file: {} (load it with the same command to retry those rows)",
                p.display()
            );
        }
        for p in &self.ambiguous_files {
            let _ = writeln!(
                s,
                "ambiguous file: {} (rows sent without a ref whose request may or may not have created them: check on the server which exist, and load only the missing ones; loading it as it is may create them twice)",
                p.display()
            );
        }
        if let (Some(h), false) = (&self.retry_hint, self.retry_files.is_empty()) {
            let _ = writeln!(s, "note: {h}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(n: [u64; 10]) -> Counts {
        let mut c = Counts::default();
        for (&s, k) in Status::ALL.iter().zip(n) {
            for _ in 0..k {
                c.add(s);
            }
        }
        c
    }

    /// The text and the JSON as the hand-listed fields wrote them before the status table.
    #[test]
    fn counts_render_and_serialize_as_the_named_fields_did() {
        let c = counts([1, 2, 3, 4, 5, 6, 7, 8, 0, 0]);
        assert_eq!(
            c.to_string(),
            "1 created, 2 modified, 3 exists, 4 rejected, 5 failed, 6 ambiguous, 7 done, 8 no_reply, 0 deleted, 0 gone"
        );
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"created":1,"modified":2,"exists":3,"rejected":4,"failed":5,"ambiguous":6,"done":7,"no_reply":8,"deleted":0,"gone":0}"#
        );
        assert_eq!((c.total(), c.succeeded(), c.not_ok()), (36, 13, 23));
        let s = Summary {
            rows: 36,
            counts: c,
            ..Summary::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.starts_with(r#"{"rows":36,"created":1,"modified":2,"exists":3,"rejected":4,"failed":5,"ambiguous":6,"done":7,"no_reply":8,"deleted":0,"gone":0,"skipped":0,"earlier":{"created":0,"#),
            "{json}"
        );
        assert!(!json.contains("dry_run_rejects") && !json.contains("report_errors"));
    }
}
