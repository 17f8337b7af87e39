//! Outcomes out: every output of a run is a `Sink`, fed by one journal thread.
//!
//! In: `Event`s from the reader (input headers, rejected rows, input errors) and from the
//! senders (a batch with one `Outcome` per row). The journal thread (`spawn`) counts them
//! in a `Tally` and fans each one out to the sinks, in the order `Journal::open` registers
//! them; one thread owns every output, so lines never interleave. Every 1024 rows, or
//! 5 ms after an event, whichever comes first, it calls `checkpoint` on each (the results
//! log flushes then, so it doubles as the checkpoint for `--resume`; see `Pending`),
//! `finish` at the end, and, once the run's `Summary` is built, `report`.
//!
//! The outputs, one file each:
//! - `results.rs`: the results log (and `read_settled`, its reader for `--resume`);
//! - `retry_file.rs`: the retry files, and the ambiguous files beside them;
//! - `progress.rs`: the progress display (bar, plain lines or JSON lines);
//! - `summary_json.rs`: `--summary-json`, written at the end;
//! - `metrics.rs`: `--metrics` (written at the end) and `--metrics-push`'s text;
//! - `report/`: `--report`, the HTML report, written at the end from the results log;

//! - `summary.rs`: not a sink, the `Summary` built from the tally;
//! - `manifest.rs`: not a sink, the manifest's reading and flags, checked by `--resume`
//!   and `merge-results`, and the refs a resume keeps;
//! - `claim.rs`: not a sink, the run's lock on the results log and whether it may be
//!   replaced, taken before anything is sent.
//! - `merge.rs`: not a sink, `czload merge-results`: the results logs of the N copies of
//!   a load (`--shard`) joined into one.
//!
//! The journal also stops the run at `--max-errors` (`Journal::stop_on_max_errors`).
//!
//! A new output is one new file with a type that implements `Sink` (only the methods it
//! needs: `report` for an end-of-run report), plus one line in `Journal::open` that
//! registers it, as the HTML report is:
//! `sinks.push(Box::new(report::HtmlReport::new(log, out)));`.

pub mod claim;
pub mod manifest;
pub mod merge;
pub mod metrics;
pub mod progress;
pub mod reasons;
pub mod report;
pub mod results;
pub mod retry_file;
pub mod summary;
pub mod summary_json;

pub use results::{input_id, read_settled, Manifest, RowSet};
pub use summary::{Counts, Latency, RunStats, Summary, Tally};

use crate::batch::Batch;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::outcome::{Outcome, RejectedRow};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the journal thread receives.
pub enum Event {
    /// An input starts: its header line for its retry file (CSV), already encoded.
    InputStart { input: u32, header: Option<Vec<u8>> },
    /// Rows rejected before sending, in reading order.
    Rejected(Vec<RejectedRow>),
    /// A batch is settled: `outcomes[i]` belongs to `batch.rows[i]`; `None` means the row
    /// was left unsettled by a stop (it stays resumable).
    Batch {
        batch: Batch,
        outcomes: Vec<Option<Outcome>>,
    },
    /// Reading an input broke off.
    InputError {
        input: u32,
        line: u64,
        message: String,
    },
}

/// One output of a run. Every method has a default that does nothing, so a sink names
/// only the events it uses. An error stops the run: nothing more is sent once an outcome
/// cannot be recorded (a row sent then would be resent by `--resume`).
pub trait Sink: Send {
    /// An input starts; `header` is its header line as a retry file holds it (CSV).
    fn on_input_start(&mut self, _input: u32, _header: Option<&[u8]>) -> Result<()> {
        Ok(())
    }

    /// Rows rejected before sending.
    fn on_rejected(&mut self, _rows: &[RejectedRow]) -> Result<()> {
        Ok(())
    }

    /// A settled batch: `outcomes[i]` belongs to `batch.rows[i]`, `None` is a row a stop
    /// left unsettled.
    fn on_batch(&mut self, _batch: &Batch, _outcomes: &[Option<Outcome>]) -> Result<()> {
        Ok(())
    }

    /// Reading an input broke off at `line`.
    fn on_input_error(&mut self, _input: u32, _line: u64, _message: &str) -> Result<()> {
        Ok(())
    }

    /// Write out what was buffered (the results log is the resume checkpoint): called
    /// every 1024 rows or 5 ms after an event, whichever comes first, and after the last
    /// event. `tally` holds the counts so far.
    fn checkpoint(&mut self, _tally: &Tally) -> Result<()> {
        Ok(())
    }

    /// Every event was handled: write out everything.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }

    /// The run's summary is built: the place for an end-of-run report.
    fn report(&mut self, _summary: &Summary) -> Result<()> {
        Ok(())
    }
}

/// The sinks of a run and the tally of what they saw.
pub struct Journal {
    sinks: Vec<Box<dyn Sink>>,
    tally: Tally,
    /// `--max-errors`, the token that stops the run when it is reached, and what to do
    /// then (`max_errors_advice`).
    max_errors: Option<(
        crate::config::MaxErrors,
        tokio_util::sync::CancellationToken,
        &'static str,
    )>,
    /// Why the journal stopped the run (`--max-errors`).
    limit_reached: Option<String>,
}

impl Journal {
    /// Opens the outputs of `cfg`: truncates (or, with `resume`, appends to) the results
    /// log and removes the retry files of an earlier run. `live` is what the progress
    /// display follows.
    pub fn open(
        cfg: &LoadConfig,
        resume: bool,
        manifest: &Manifest,
        live: progress::Live,
    ) -> Result<Journal> {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        // Checkpoints go in this order: the results log before the retry files, so that
        // after a crash between the two a row is logged but missing from the retry file
        // (visible in the log), never in the retry file twice (resumed, it would be
        // written there again). A dry run writes neither.
        // Each sink is given its own settings, taken from the run's here, and nothing else.
        let facts = results::RunFacts::of(cfg);
        let multi_input = cfg.inputs.len() > 1;
        let log = results::ResultsLog::create(
            cfg.results.as_deref(),
            multi_input,
            facts,
            resume,
            manifest,
        )?;
        if let Some(log) = log {
            sinks.push(Box::new(log));
            for (paths, kind) in [
                (&cfg.retry_files, retry_file::Kind::Retry),
                (&cfg.ambiguous_files, retry_file::Kind::Ambiguous),
            ] {
                let files = retry_file::RetryFiles::new(paths, &cfg.inputs, resume, kind);
                sinks.push(Box::new(files));
            }
        }
        let shown = progress::Shown::of(cfg);
        sinks.push(Box::new(progress::Progress::new(shown, live)));
        if let Some(p) = &cfg.summary_json {
            sinks.push(Box::new(summary_json::SummaryJson::new(p.clone())));
        }
        if let Some(p) = &cfg.metrics {
            sinks.push(Box::new(metrics::MetricsFile::new(p.clone())));
        }
        // After the results log: its `report` writes the run's last line first.
        if let (Some(out), Some(log)) = (&cfg.report, &cfg.results) {
            sinks.push(Box::new(report::HtmlReport::new(log.clone(), out.clone())));
        }
        Ok(Journal {
            sinks,
            tally: Tally::default(),
            max_errors: None,
            limit_reached: None,
        })
    }

    /// Stops the run through `stop` once `--max-errors` of `cfg` is reached: as a first
    /// Ctrl-C does, so the rows not settled stay resumable.
    pub fn stop_on_max_errors(
        &mut self,
        cfg: &LoadConfig,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let advice = max_errors_advice(&cfg.mapping.ref_mode);
        self.max_errors = cfg.max_errors.map(|m| (m, stop, advice));
    }

    /// Checks `--max-errors` against the tally.
    fn check_errors(&mut self) {
        let Some((limit, stop, advice)) = &self.max_errors else {
            return;
        };
        let c = &self.tally.counts;
        let rejected = c.get(crate::Status::Rejected);
        if self.limit_reached.is_none() && limit.reached(rejected, c.total()) {
            self.limit_reached = Some(format!(
                "{limit} reached: {rejected} of {} rows rejected (the results log and the reasons above say why); {advice}",
                c.total()
            ));
            stop.cancel();
        }
    }

    /// Rows the reader rejected, as far as `--max-errors N` lets them count: once the
    /// limit is reached, the rows read past it are not settled (no line, no count), so
    /// the run stops at the limit rather than some thousands of rows on (the reader
    /// hands rejected rows over 256 at a time, and runs ahead of the journal). Rows the
    /// server rejected are always settled: they were sent (docs/architecture.md, Threads
    /// and channels: the bound is the limit and the requests already in flight).
    fn admit_rejected(&self, rows: &mut Vec<crate::outcome::RejectedRow>) {
        let Some((limit, ..)) = &self.max_errors else {
            return;
        };
        if self.limit_reached.is_some() {
            rows.clear();
        } else if let crate::config::MaxErrors::Rows(n) = limit {
            let so_far = self.tally.counts.get(crate::Status::Rejected);
            rows.truncate(n.max(&1).saturating_sub(so_far) as usize);
        }
    }

    fn handle(&mut self, mut ev: Event) -> Result<()> {
        if let Event::Rejected(rows) = &mut ev {
            self.admit_rejected(rows);
            if rows.is_empty() {
                return Ok(());
            }
        }
        self.tally.record(&ev);
        for s in &mut self.sinks {
            match &ev {
                Event::InputStart { input, header } => s.on_input_start(*input, header.as_deref()),
                Event::Rejected(rows) => s.on_rejected(rows),
                Event::Batch { batch, outcomes } => s.on_batch(batch, outcomes),
                Event::InputError {
                    input,
                    line,
                    message,
                } => s.on_input_error(*input, *line, message),
            }?;
        }
        // Per event, not per wake-up: a wake-up handles up to 257 events of 256 rows.
        self.check_errors();
        Ok(())
    }

    /// Writes out the lines of every event handled since the last call. The journal
    /// thread calls this when `Pending` says it is due: under load one write carries ten
    /// batches instead of one, and a crash loses no more than the events still queued
    /// (which it would lose anyway) and the last few ms.
    fn checkpoint(&mut self) -> Result<()> {
        for s in &mut self.sinks {
            s.checkpoint(&self.tally)?;
        }
        Ok(())
    }

    /// Writes out everything buffered; the journal thread's last act.
    fn finish(&mut self) -> Result<()> {
        for s in &mut self.sinks {
            s.finish()?;
        }
        Ok(())
    }

    /// Builds the run's summary and hands it to the end-of-run reports; a report that
    /// fails is named in `Summary::report_errors` (the summary itself is still shown).
    pub fn summarize(&mut self, cfg: &LoadConfig, run: RunStats) -> Summary {
        let mut summary = Summary::new(cfg, &self.tally, run);
        summary.limit_reached = self.limit_reached.clone();
        for s in &mut self.sinks {
            if let Err(e) = s.report(&summary) {
                summary.report_errors.push(e.to_string());
            }
        }
        summary
    }

    /// Handles events until every sender of `events` is gone, checkpointing once
    /// `CHECKPOINT_ROWS` rows have been handled since the last checkpoint, or
    /// `CHECKPOINT_DELAY` after the first of them, whichever comes first (waking for it
    /// if no event comes), and once more at the end.
    fn drain(&mut self, events: &mut mpsc::Receiver<Event>) -> Result<()> {
        // A tokio channel has no blocking receive with a time limit: a runtime of this
        // thread's own (no threads of its own, a timer) waits for the next event or the
        // checkpoint, whichever comes first.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the journal's timer: {e}")))?;
        let mut pending = Pending::default();
        loop {
            let next = match pending.due {
                None => rt.block_on(events.recv()),
                Some(due) => {
                    let due = tokio::time::Instant::from_std(due);
                    // The timer is made inside: only there is the runtime current.
                    let next = async { tokio::time::timeout_at(due, events.recv()).await };
                    match rt.block_on(next) {
                        Ok(ev) => ev,
                        Err(_) => {
                            self.checkpoint()?;
                            pending = Pending::default();
                            continue;
                        }
                    }
                }
            };
            let Some(ev) = next else { break };
            pending.add(&ev);
            self.handle(ev)?;
            // Everything already waiting is handled before the checks; the bound keeps
            // the progress display moving.
            for _ in 0..256 {
                let Ok(ev) = events.try_recv() else { break };
                pending.add(&ev);
                self.handle(ev)?;
            }
            self.check_errors();
            if pending.is_due(Instant::now()) {
                self.checkpoint()?;
                pending = Pending::default();
            }
        }
        if pending.due.is_some() {
            self.checkpoint()?;
        }
        self.finish()
    }
}

/// What to do once `--max-errors` stopped the run: advice that works when followed
/// (tests/words_logs.rs follows each literally). Fixing the input changes it, so
/// `--resume` refuses it; a `--restart` sends every row again, which refs make safe and
/// `--no-ref` does not; a resume counts its own rejections, so it needs the limit gone.
pub fn max_errors_advice(refs: &crate::mapping::RefMode) -> &'static str {
    match refs {
        crate::mapping::RefMode::None => "to load the rest, run the same command with --resume, the input unchanged and no --max-errors (the rejected rows stay rejected, listed in the results log: fix them into a file of their own and load that); never run it again without --resume: without refs (--no-ref) the rows loaded already would be created twice",
        _ => "fix those rows in place (each on its own line, so that their refs stay the same), then run the same command with --restart: the rows loaded already come back exists; or, to load the rest and leave those rows rejected, run it with --resume, the input unchanged and no --max-errors",
    }
}

/// Rows handled since the last checkpoint. The results log was flushed after every
/// batch (one write of ~13 KB per 100 rows): on ext4 (Linux 6.18), writes that small cost
/// the kernel 3 to 6 times more per byte than 64 KiB writes (`dd` of 135 MB: 0.10 to
/// 0.23 s of system time in 13.5 KB writes, 0.04 s in 64 KiB ones): 0.1 to 0.2 s of
/// czload's ~2 s of CPU per million rows in the end-to-end bench, more than the rest of
/// the journal thread. A checkpoint every 1024 rows writes ~130 KB at once; the delay
/// bounds how long a settled row's line waits at a slow rate (a crash or a second
/// Ctrl-C loses at most those few ms of lines, besides the events still queued, which it
/// loses anyway: rows without a line are resent by `--resume`, with their refs).
#[derive(Default)]
struct Pending {
    rows: usize,
    /// When a checkpoint is due: `CHECKPOINT_DELAY` after the first event since the last.
    due: Option<Instant>,
}

/// Rows handled before a checkpoint is due.
const CHECKPOINT_ROWS: usize = 1024;
/// How long after an event its lines may wait to be written out.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(5);

impl Pending {
    fn add(&mut self, ev: &Event) {
        self.rows += match ev {
            Event::Batch { batch, .. } => batch.len(),
            Event::Rejected(rows) => rows.len(),
            Event::InputStart { .. } | Event::InputError { .. } => 0,
        };
        self.due
            .get_or_insert_with(|| Instant::now() + CHECKPOINT_DELAY);
    }

    fn is_due(&self, now: Instant) -> bool {
        self.rows >= CHECKPOINT_ROWS || self.due.is_some_and(|d| now >= d)
    }
}

/// Starts the journal thread: it owns `journal` and handles `events` until the channel
/// closes, then hands the journal back for the summary. When an output fails it calls
/// `halt` (nothing more may be sent once outcomes cannot be recorded: a row sent then
/// would be resent by `--resume`, and without a ref created twice) and ends with the error.
pub fn spawn(
    mut journal: Journal,
    mut events: mpsc::Receiver<Event>,
    halt: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<Journal>>> {
    std::thread::Builder::new()
        .name("czload-journal".into())
        .spawn(move || match journal.drain(&mut events) {
            Ok(()) => Ok(journal),
            Err(e) => {
                halt();
                Err(e)
            }
        })
        .map_err(|e| Error::Other(format!("cannot start the journal thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that writes down what it is given, and fails where told to.
    struct Spy {
        name: &'static str,
        seen: Arc<Mutex<Vec<String>>>,
        fail_on_error_event: bool,
    }

    impl Sink for Spy {
        fn on_input_start(&mut self, input: u32, header: Option<&[u8]>) -> Result<()> {
            let h = header.map(|h| String::from_utf8_lossy(h).into_owned());
            self.log(format!("start {input} {h:?}"));
            Ok(())
        }
        fn on_rejected(&mut self, rows: &[RejectedRow]) -> Result<()> {
            self.log(format!("rejected {}", rows.len()));
            Ok(())
        }
        fn on_input_error(&mut self, _: u32, line: u64, message: &str) -> Result<()> {
            self.log(format!("error {line} {message}"));
            if self.fail_on_error_event {
                return Err(Error::Other("disk full".into()));
            }
            Ok(())
        }
        fn checkpoint(&mut self, tally: &Tally) -> Result<()> {
            self.log(format!("checkpoint {}", tally.counts.total()));
            Ok(())
        }
        fn finish(&mut self) -> Result<()> {
            self.log("finish".into());
            Ok(())
        }
        fn report(&mut self, s: &Summary) -> Result<()> {
            self.log(format!("report {}", s.rows));
            Err(Error::Other(format!(
                "{}: cannot write the report",
                self.name
            )))
        }
    }

    impl Spy {
        fn log(&self, what: String) {
            self.seen
                .lock()
                .unwrap()
                .push(format!("{}: {what}", self.name));
        }
    }

    fn journal(fail: bool) -> (Journal, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let spy = |name, fail_on_error_event| -> Box<dyn Sink> {
            Box::new(Spy {
                name,
                seen: seen.clone(),
                fail_on_error_event,
            })
        };
        let j = Journal {
            sinks: vec![spy("a", fail), spy("b", false)],
            tally: Tally::default(),
            max_errors: None,
            limit_reached: None,
        };
        (j, seen)
    }

    fn rejected(row: u64) -> RejectedRow {
        RejectedRow {
            input: 0,
            row,
            line: row + 1,
            reference: None,
            reason: "bad".into(),
        }
    }

    #[test]
    fn every_sink_sees_every_event_in_order_then_a_checkpoint_then_finish() {
        let (j, seen) = journal(false);
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(Event::InputStart {
            input: 0,
            header: Some(b"x\n".to_vec()),
        })
        .unwrap();
        tx.try_send(Event::Rejected(vec![rejected(1), rejected(2)]))
            .unwrap();
        drop(tx);
        let halted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = halted.clone();
        let mut j = spawn(j, rx, move || {
            h.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
        assert!(!halted.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "a: start 0 Some(\"x\\n\")",
                "b: start 0 Some(\"x\\n\")",
                "a: rejected 2",
                "b: rejected 2",
                "a: checkpoint 2",
                "b: checkpoint 2",
                "a: finish",
                "b: finish",
            ]
        );
        assert_eq!(j.tally.sample_rejects.len(), 2);

        // Every report runs, and each failure is named in the summary, not lost.
        let cfg =
            crate::config::tests::load_config(&["-", "--format", "csv", "--conv-id", "1"]).unwrap();
        let s = j.summarize(
            &cfg,
            RunStats {
                rows: 2,
                ..RunStats::default()
            },
        );
        assert_eq!(
            s.report_errors,
            ["a: cannot write the report", "b: cannot write the report"]
        );
        assert_eq!(s.counts.get(crate::Status::Rejected), 2);
    }

    #[test]
    fn a_checkpoint_is_due_after_1024_rows_or_5_ms_after_the_first_event() {
        let mut p = Pending::default();
        assert!(
            !p.is_due(Instant::now() + Duration::from_secs(1)),
            "nothing pending"
        );
        let start = Instant::now();
        p.add(&Event::Rejected((0..1000).map(rejected).collect()));
        let due = p.due.expect("due once an event is handled");
        assert!(due >= start + CHECKPOINT_DELAY);
        assert!(!p.is_due(start));
        assert!(p.is_due(due));
        // Later events do not push the time back; rows bring it forward.
        p.add(&Event::InputError {
            input: 0,
            line: 1,
            message: "x".into(),
        });
        assert_eq!(p.due, Some(due));
        assert!(!p.is_due(start));
        p.add(&Event::Rejected((0..24).map(rejected).collect()));
        assert!(p.is_due(start), "1024 rows");
    }

    #[test]
    fn a_lone_event_is_checkpointed_without_waiting_for_the_next() {
        let (j, seen) = journal(false);
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(Event::Rejected(vec![rejected(1)])).unwrap();
        let thread = spawn(j, rx, || {}).unwrap();
        // The channel stays open: only the timer can bring the checkpoint.
        let waited = Instant::now();
        while !seen.lock().unwrap().iter().any(|s| s == "b: checkpoint 1") {
            assert!(waited.elapsed() < Duration::from_secs(10), "no checkpoint");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(tx);
        thread.join().unwrap().unwrap();
        // Nothing new since: the end is no second checkpoint, just finish.
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "a: rejected 1",
                "b: rejected 1",
                "a: checkpoint 1",
                "b: checkpoint 1",
                "a: finish",
                "b: finish",
            ]
        );
    }

    #[test]
    fn a_sink_that_fails_halts_the_run_and_the_thread_ends_with_its_error() {
        let (j, seen) = journal(true);
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(Event::InputError {
            input: 0,
            line: 3,
            message: "cut".into(),
        })
        .unwrap();
        let halted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = halted.clone();
        let thread = spawn(j, rx, move || {
            h.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .unwrap();
        // The channel is still open: the thread ends on the error, not on the close.
        let err = thread.join().unwrap().err().expect("the sink's error");
        assert_eq!(err.to_string(), "disk full");
        assert!(halted.load(std::sync::atomic::Ordering::SeqCst));
        // The failing sink was the first: nothing after it ran, no checkpoint, no finish.
        assert_eq!(*seen.lock().unwrap(), ["a: error 3 cut"]);
        drop(tx);
    }
}
