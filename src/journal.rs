//! Outcomes out: the results log, the retry files, progress and the summary.
//!
//! In: `Event`s from the reader (rejected rows, input headers and errors) and the sender
//! (a batch with one `Outcome` per row). One thread owns every output, so lines never
//! interleave. The results log is flushed whenever no more events wait (see
//! `Journal::checkpoint`), so it doubles as the checkpoint for `--resume`: after a crash
//! it holds every sent row whose outcome reached the journal (rows rejected before
//! sending may be missing: a resume rejects them again, sending nothing).

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::source::Format;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The final status of a row (see DESIGN.md, "What becomes of a row").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Modified,
    Exists,
    Rejected,
    Failed,
    Ambiguous,
}

impl Status {
    pub fn is_success(self) -> bool {
        matches!(self, Status::Created | Status::Modified | Status::Exists)
    }

    /// Rows the same command can load again from the retry file.
    pub fn to_retry_file(self) -> bool {
        matches!(self, Status::Failed | Status::Ambiguous)
    }
}

/// A task's `obj_id` as the server gave it. Corezoid's are 24 hex digits; up to 32 bytes
/// are kept inline, so settling a row allocates nothing (a `String` per row showed in
/// profiles of fast loads as malloc in the senders and free in the journal thread).
/// Longer ones are boxed.
#[derive(Clone, PartialEq, Eq)]
pub enum TaskId {
    Inline(u8, [u8; 32]),
    Boxed(Box<str>),
}

impl TaskId {
    pub fn new(s: &str) -> TaskId {
        match u8::try_from(s.len()) {
            Ok(n) if n <= 32 => {
                let mut b = [0u8; 32];
                b[..s.len()].copy_from_slice(s.as_bytes());
                TaskId::Inline(n, b)
            }
            _ => TaskId::Boxed(s.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `str`, so always UTF-8.
            TaskId::Inline(n, b) => std::str::from_utf8(&b[..*n as usize]).unwrap_or_default(),
            TaskId::Boxed(s) => s,
        }
    }
}

impl std::fmt::Debug for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub obj_id: Option<TaskId>,
    pub attempts: u32,
    /// The server's `proc` for a refused op.
    pub proc_: Option<String>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn new(status: Status, attempts: u32) -> Outcome {
        Outcome {
            status,
            obj_id: None,
            attempts,
            proc_: None,
            error: None,
        }
    }

    pub fn with_error(mut self, e: impl Into<String>) -> Outcome {
        self.error = Some(e.into());
        self
    }
}

/// A row rejected before sending.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    pub input: u32,
    pub row: u64,
    pub line: u64,
    pub reference: Option<String>,
    pub reason: String,
}

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

/// One line of the results log.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResultLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub input: Option<u32>,
    pub row: u64,
    pub line: u64,
    // Borrowed when written (no copy of each ref and id per row), owned when read back.
    #[serde(
        rename = "ref",
        skip_serializing_if = "Option::is_none",
        default,
        borrow
    )]
    pub reference: Option<Cow<'a, str>>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none", default, borrow)]
    pub obj_id: Option<Cow<'a, str>>,
    pub attempts: u32,
    #[serde(
        rename = "proc",
        skip_serializing_if = "Option::is_none",
        default,
        borrow
    )]
    pub proc_: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default, borrow)]
    pub error: Option<Cow<'a, str>>,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Modified => "modified",
            Status::Exists => "exists",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Ambiguous => "ambiguous",
        }
    }
}

impl ResultLine<'_> {
    /// Writes the line as JSON, byte for byte what serde writes for it (a unit test holds
    /// the two together), straight into `out` (the log's buffered writer). By hand because
    /// a line is written for every row and serde's generic map machinery was most of the
    /// journal thread's time in profiles.
    pub fn write_json<W: Write>(&self, out: &mut W) -> std::io::Result<()> {
        fn num<W: Write>(out: &mut W, key: &[u8], n: impl itoa::Integer) -> std::io::Result<()> {
            out.write_all(key)?;
            out.write_all(itoa::Buffer::new().format(n).as_bytes())
        }
        fn text<W: Write>(out: &mut W, key: &[u8], v: &str) -> std::io::Result<()> {
            out.write_all(key)?;
            crate::mapping::write_json_str(out, v)
        }
        out.write_all(b"{")?;
        if let Some(i) = self.input {
            num(out, b"\"input\":", i)?;
            out.write_all(b",")?;
        }
        num(out, b"\"row\":", self.row)?;
        num(out, b",\"line\":", self.line)?;
        if let Some(r) = &self.reference {
            text(out, b",\"ref\":", r)?;
        }
        text(out, b",\"status\":", self.status.as_str())?;
        if let Some(o) = &self.obj_id {
            text(out, b",\"obj_id\":", o)?;
        }
        num(out, b",\"attempts\":", self.attempts)?;
        if let Some(p) = &self.proc_ {
            text(out, b",\"proc\":", p)?;
        }
        if let Some(e) = &self.error {
            text(out, b",\"error\":", e)?;
        }
        out.write_all(b"}")
    }
}

/// The first line of the results log: what this run loads and how, so that `--resume`
/// can refuse a log written for other inputs or another mapping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub czload: u32,
    pub inputs: Vec<InputId>,
    pub mapping: String,
}

/// How an input is recognised again: its name, size and a hash of its first and last
/// 64 KiB (hashing a whole multi-GB file at every start would cost a full read).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputId {
    pub path: String,
    pub size: Option<u64>,
    pub sample_sha1: Option<String>,
}

/// Counts per status.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub created: u64,
    pub modified: u64,
    pub exists: u64,
    pub rejected: u64,
    pub failed: u64,
    pub ambiguous: u64,
}

impl Counts {
    pub fn add(&mut self, s: Status) {
        *match s {
            Status::Created => &mut self.created,
            Status::Modified => &mut self.modified,
            Status::Exists => &mut self.exists,
            Status::Rejected => &mut self.rejected,
            Status::Failed => &mut self.failed,
            Status::Ambiguous => &mut self.ambiguous,
        } += 1;
    }

    pub fn total(&self) -> u64 {
        self.created + self.modified + self.exists + self.rejected + self.failed + self.ambiguous
    }

    pub fn succeeded(&self) -> u64 {
        self.created + self.modified + self.exists
    }
}

/// Where the outputs go.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// `None` in a dry run: nothing is written.
    pub results: Option<PathBuf>,
    /// Per input.
    pub retry_files: Vec<PathBuf>,
    pub formats: Vec<Format>,
    pub delimiter: u8,
    /// Whether result lines carry the input index (several inputs).
    pub multi_input: bool,
    pub resume: bool,
}

/// Creates a file only its owner can read: results and retry files hold the loaded data.
pub fn create_private(path: &Path, append: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true);
    if append {
        o.append(true);
    } else {
        o.truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

struct RetryOut {
    w: BufWriter<File>,
}

pub struct Journal {
    cfg: JournalConfig,
    results: Option<BufWriter<File>>,
    retry: Vec<Option<RetryOut>>,
    headers: Vec<Option<Vec<u8>>>,
    pub counts: Counts,
    pub input_errors: Vec<String>,
    /// The first rejected rows, for the dry-run report.
    pub sample_rejects: Vec<RejectedRow>,
    /// Batches handled since the last [`Journal::checkpoint`].
    dirty: bool,
}

impl Journal {
    pub fn create(cfg: JournalConfig, manifest: &Manifest) -> Result<Journal> {
        let results = match &cfg.results {
            None => None,
            Some(p) => {
                let existed = cfg.resume && p.exists();
                // A crash can cut the last line short; start on a fresh line so that the
                // next one is not glued to it (the cut row is redone, as it has no line).
                let cut = existed && ends_mid_line(p);
                let f = create_private(p, cfg.resume)
                    .map_err(|e| Error::file(p, format!("cannot write the results log: {e}")))?;
                let mut w = BufWriter::with_capacity(256 * 1024, f);
                if cut {
                    w.write_all(b"\n").map_err(|e| Error::file(p, e))?;
                }
                if !existed {
                    serde_json::to_writer(&mut w, manifest).map_err(|e| Error::file(p, e))?;
                    w.write_all(b"\n")
                        .and_then(|_| w.flush())
                        .map_err(|e| Error::file(p, e))?;
                }
                // A retry file from an earlier run would list rows this run settles anew.
                if !cfg.resume {
                    for r in &cfg.retry_files {
                        let _ = std::fs::remove_file(r);
                    }
                }
                Some(w)
            }
        };
        let n = cfg.retry_files.len();
        Ok(Journal {
            cfg,
            results,
            retry: (0..n).map(|_| None).collect(),
            headers: vec![None; n],
            counts: Counts::default(),
            input_errors: Vec::new(),
            sample_rejects: Vec::new(),
            dirty: false,
        })
    }

    pub fn handle(&mut self, ev: Event) -> Result<()> {
        let batch_event = matches!(ev, Event::Batch { .. });
        match ev {
            Event::InputStart { input, header } => {
                self.headers[input as usize] = header;
            }
            Event::InputError { message, .. } => {
                self.input_errors.push(message);
            }
            Event::Rejected(rows) => {
                for r in rows {
                    self.counts.add(Status::Rejected);
                    let line = ResultLine {
                        input: self.cfg.multi_input.then_some(r.input),
                        row: r.row,
                        line: r.line,
                        reference: r.reference.as_deref().map(Cow::Borrowed),
                        status: Status::Rejected,
                        obj_id: None,
                        attempts: 0,
                        proc_: None,
                        error: Some(Cow::Borrowed(&r.reason)),
                    };
                    self.write_result(&line)?;
                    if self.sample_rejects.len() < 20 {
                        self.sample_rejects.push(r);
                    }
                }
            }
            Event::Batch { batch, outcomes } => {
                for (i, o) in outcomes.iter().enumerate() {
                    // A row a stop left unsettled has no line: --resume picks it up.
                    let Some(o) = o else { continue };
                    self.counts.add(o.status);
                    let meta = &batch.rows[i];
                    if o.status.to_retry_file() {
                        self.write_retry(meta.input, batch.raw(i))?;
                    }
                    let line = ResultLine {
                        input: self.cfg.multi_input.then_some(meta.input),
                        row: meta.row,
                        line: meta.line,
                        reference: batch.reference(i).map(Cow::Borrowed),
                        status: o.status,
                        obj_id: o.obj_id.as_ref().map(|t| Cow::Borrowed(t.as_str())),
                        attempts: o.attempts,
                        proc_: o.proc_.as_deref().map(Cow::Borrowed),
                        error: o.error.as_deref().map(Cow::Borrowed),
                    };
                    self.write_result(&line)?;
                }
            }
        }
        // Rows rejected before sending do not make the log dirty (a file of bad rows
        // would cost a write per row); if a crash loses their lines, a resume rejects
        // them again, sending nothing.
        self.dirty |= batch_event;
        Ok(())
    }

    /// Writes out the lines of every batch handled since the last call. The log is the
    /// checkpoint of what was sent: the journal thread calls this whenever no more events
    /// are waiting, so a crash loses no more than the events still queued (which it
    /// would lose anyway), while under load one write carries many batches instead of
    /// one write per batch.
    pub fn checkpoint(&mut self) -> Result<()> {
        if std::mem::take(&mut self.dirty) {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out everything buffered; the journal's last act.
    pub fn finish(&mut self) -> Result<()> {
        self.flush()
    }

    fn write_result(&mut self, line: &ResultLine) -> Result<()> {
        let Some(w) = &mut self.results else {
            return Ok(());
        };
        line.write_json(w)
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| {
                Error::file(
                    self.cfg.results.clone().unwrap_or_default(),
                    format!("cannot write: {e}"),
                )
            })
    }

    fn write_retry(&mut self, input: u32, raw: &[u8]) -> Result<()> {
        if self.results.is_none() {
            return Ok(());
        }
        let i = input as usize;
        let path = &self.cfg.retry_files[i];
        if self.retry[i].is_none() {
            let existed = self.cfg.resume && std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
            let f = create_private(path, self.cfg.resume)
                .map_err(|e| Error::file(path, format!("cannot write the retry file: {e}")))?;
            let mut w = BufWriter::new(f);
            if !existed {
                if let Some(h) = &self.headers[i] {
                    w.write_all(h).map_err(|e| Error::file(path, e))?;
                }
            }
            self.retry[i] = Some(RetryOut { w });
        }
        let out = self.retry[i].as_mut().expect("opened above");
        out.w.write_all(raw).map_err(|e| Error::file(path, e))
    }

    fn flush(&mut self) -> Result<()> {
        // The results log first: after a crash between the two, a row is logged but
        // missing from the retry file (visible in the log), never in the retry file twice
        // (resumed, it would be written there again).
        if let Some(w) = &mut self.results {
            w.flush().map_err(|e| {
                Error::file(
                    self.cfg.results.clone().unwrap_or_default(),
                    format!("cannot write: {e}"),
                )
            })?;
        }
        for (i, r) in self.retry.iter_mut().enumerate() {
            if let Some(r) = r {
                r.w.flush()
                    .map_err(|e| Error::file(&self.cfg.retry_files[i], e))?;
            }
        }
        Ok(())
    }

    /// The retry files that were written this run (or earlier, when resuming).
    pub fn retry_files_written(&self) -> Vec<PathBuf> {
        self.cfg
            .retry_files
            .iter()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0) && self.results.is_some())
            .cloned()
            .collect()
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
    /// Rows read but left without a final status by a stop (resumable).
    pub unsettled: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub latency: Latency,
    pub elapsed_secs: f64,
    pub rows_per_sec: f64,
    pub results_log: Option<PathBuf>,
    pub retry_files: Vec<PathBuf>,
    /// How to load the retry files, when it is not the same command.
    pub retry_hint: Option<String>,
    pub input_errors: Vec<String>,
    pub interrupted: bool,
    /// Why the run stopped early (authentication, ...).
    pub fatal: Option<String>,
    pub dry_run: bool,
}

impl Summary {
    /// DESIGN.md's exit codes: 0 all rows succeeded, 2 some did not, 1 the run could not
    /// proceed, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        // A resumed run answers for the whole input: rows an earlier run could not load
        // still make the exit code 2.
        let clean = if self.dry_run {
            self.counts.rejected == 0
        } else {
            self.counts.succeeded() == self.rows
                && self.unsettled == 0
                && self.earlier.succeeded() == self.earlier.total()
        };
        if self.interrupted {
            130
        } else if self.fatal.is_some() {
            1
        } else if clean && self.input_errors.is_empty() {
            0
        } else {
            2
        }
    }

    /// The human summary, as printed on stderr.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        use std::fmt::Write as _;
        if self.dry_run {
            let _ = writeln!(
                s,
                "dry run: {} rows read, {} would be sent in {} requests, {} rejected",
                self.rows,
                self.rows - c.rejected,
                self.requests,
                c.rejected
            );
        } else {
            let _ = writeln!(
                s,
                "{} rows in {:.1}s ({:.0} rows/s): {} created, {} modified, {} exists, {} rejected, {} failed, {} ambiguous",
                self.rows,
                self.elapsed_secs,
                self.rows_per_sec,
                c.created,
                c.modified,
                c.exists,
                c.rejected,
                c.failed,
                c.ambiguous
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
        }
        if self.rows == 0 && self.skipped == 0 && self.input_errors.is_empty() {
            let _ = writeln!(s, "note: the input has no data rows");
        }
        if self.skipped > 0 {
            let e = &self.earlier;
            let _ = writeln!(
                s,
                "resumed: {} rows already settled were skipped (earlier runs: {} created, {} modified, {} exists, {} rejected, {} failed, {} ambiguous)",
                self.skipped, e.created, e.modified, e.exists, e.rejected, e.failed, e.ambiguous
            );
        }
        if self.unsettled > 0 {
            let _ = writeln!(
                s,
                "{} rows were not settled; run the same command with --resume to finish them",
                self.unsettled
            );
        }
        for e in &self.input_errors {
            let _ = writeln!(s, "input error: {e}");
        }
        if let Some(f) = &self.fatal {
            let _ = writeln!(s, "stopped: {f}");
        }
        if let Some(p) = &self.results_log {
            let _ = writeln!(s, "results log: {}", p.display());
        }
        for p in &self.retry_files {
            let _ = writeln!(
                s,
                "retry file: {} (load it with the same command to retry those rows)",
                p.display()
            );
        }
        if let (Some(h), false) = (&self.retry_hint, self.retry_files.is_empty()) {
            let _ = writeln!(s, "note: {h}");
        }
        s
    }
}

/// Shown while loading: a bar on a terminal, a plain line every few seconds otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_plain: std::time::Instant,
    last_draw: std::time::Instant,
    started: std::time::Instant,
    total_bytes: Option<u64>,
}

impl Progress {
    pub fn new(quiet: bool, total_bytes: Option<u64>) -> Progress {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = match total_bytes {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ETA {eta} | {msg}",
            )
            .expect("a valid template");
            b.set_style(style);
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            plain: !quiet && !tty,
            last_plain: std::time::Instant::now(),
            last_draw: std::time::Instant::now(),
            started: std::time::Instant::now(),
            total_bytes,
        }
    }

    pub fn update(&mut self, bytes_read: u64, c: &Counts) {
        // Called per event (per rejected row, too): redraw at most ten times a second.
        if self.last_draw.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last_draw = std::time::Instant::now();
        let done = c.total();
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        if let Some(b) = &self.bar {
            b.set_position(bytes_read);
            b.set_message(format!(
                "{done} rows, {rate:.0}/s, ok {}, not ok {}",
                c.succeeded(),
                c.rejected + c.failed + c.ambiguous
            ));
        } else if self.plain && self.last_plain.elapsed() >= Duration::from_secs(5) {
            self.last_plain = std::time::Instant::now();
            let pct = self
                .total_bytes
                .filter(|&t| t > 0)
                .map(|t| format!(" ({:.0}% of input)", bytes_read as f64 * 100.0 / t as f64))
                .unwrap_or_default();
            eprintln!(
                "czload: {done} rows{pct}, {rate:.0} rows/s, ok {}, not ok {}",
                c.succeeded(),
                c.rejected + c.failed + c.ambiguous
            );
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Reads a results log for `--resume`: checks its manifest against this run's and
/// returns, per input, the rows that already reached a final status.
/// `on_ref` sees the ref of every row that was sent (all but `rejected`), so that the
/// resumed run can refuse a repeat of it.
pub fn read_settled(
    path: &Path,
    expected: &Manifest,
    mut on_ref: impl FnMut(&str, u32, u64),
) -> Result<(Vec<RowSet>, Counts)> {
    use std::io::BufRead;
    let f = File::open(path).map_err(|e| {
        Error::Resume(format!(
            "{}: cannot read the results log: {e}",
            path.display()
        ))
    })?;
    // Lines as bytes: a crash can cut the last line inside a UTF-8 character, and that
    // must cost only that row (redone), not the whole resume.
    let mut lines = std::io::BufReader::new(f).split(b'\n');
    let first = match lines.next() {
        Some(Ok(l)) => l,
        _ => {
            return Err(Error::Resume(format!(
                "{} is empty: there is nothing to resume; run without --resume",
                path.display()
            )))
        }
    };
    let manifest: Manifest = serde_json::from_slice(&first).map_err(|_| {
        Error::Resume(format!(
            "{} does not start with a czload manifest",
            path.display()
        ))
    })?;
    if manifest.mapping != expected.mapping {
        return Err(Error::Resume(format!(
            "the mapping flags differ from those of the run that wrote {} (was: {}; now: {})",
            path.display(),
            manifest.mapping,
            expected.mapping
        )));
    }
    if manifest.inputs.len() != expected.inputs.len() {
        return Err(Error::Resume(format!(
            "{} was written for {} input(s), this run has {}",
            path.display(),
            manifest.inputs.len(),
            expected.inputs.len()
        )));
    }
    for (was, now) in manifest.inputs.iter().zip(&expected.inputs) {
        if was.size != now.size || was.sample_sha1 != now.sample_sha1 {
            return Err(Error::Resume(format!(
                "input {} changed since the run that wrote {} (size or content differs); start a new run without --resume",
                now.path,
                path.display()
            )));
        }
    }
    let mut sets = vec![RowSet::default(); expected.inputs.len()];
    let mut earlier = Counts::default();
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| Error::Resume(format!("{}: {e}", path.display())))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // A line cut by a crash is the last one; it is incomplete, so that row is redone.
        let Ok(r) = serde_json::from_slice::<ResultLine>(&line) else {
            tracing::debug!("results log line {} is incomplete; ignored", n + 2);
            continue;
        };
        if let Some(s) = sets.get_mut(r.input.unwrap_or(0) as usize) {
            if !s.contains(r.row) {
                s.insert(r.row);
                earlier.add(r.status);
                if let (Some(reference), false) = (&r.reference, r.status == Status::Rejected) {
                    on_ref(reference, r.input.unwrap_or(0), r.row);
                }
            }
        }
    }
    Ok((sets, earlier))
}

/// A set of row numbers as a bitmap: a million rows cost 125 KB.
#[derive(Debug, Clone, Default)]
pub struct RowSet {
    bits: Vec<u64>,
}

impl RowSet {
    pub fn insert(&mut self, row: u64) {
        let (w, b) = ((row / 64) as usize, row % 64);
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        self.bits[w] |= 1 << b;
    }

    pub fn contains(&self, row: u64) -> bool {
        let (w, b) = ((row / 64) as usize, row % 64);
        self.bits.get(w).is_some_and(|x| x & (1 << b) != 0)
    }
}

/// Identifies an input for the manifest.
pub fn input_id(path: Option<&Path>) -> InputId {
    use sha1::{Digest, Sha1};
    use std::io::{Read, Seek, SeekFrom};
    let Some(p) = path else {
        return InputId {
            path: "-".into(),
            size: None,
            sample_sha1: None,
        };
    };
    let mut id = InputId {
        path: p.display().to_string(),
        size: None,
        sample_sha1: None,
    };
    if let Ok(mut f) = File::open(p) {
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        id.size = Some(size);
        let mut h = Sha1::new();
        let mut buf = vec![0u8; 64 * 1024];
        let n = f.read(&mut buf).unwrap_or(0);
        h.update(&buf[..n]);
        if size > 128 * 1024 && f.seek(SeekFrom::End(-(64 * 1024))).is_ok() {
            let n = f.read(&mut buf).unwrap_or(0);
            h.update(&buf[..n]);
        }
        id.sample_sha1 = Some(hex::encode(h.finalize()));
    }
    id
}

/// Whether a file's last byte is something other than a newline.
fn ends_mid_line(p: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(p) else {
        return false;
    };
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_written_exactly_as_serde_writes_them() {
        let texts = [
            "a.csv:1",
            "",
            "quote \" and backslash \\",
            "tab\tnewline\ncontrol\u{1}",
            "é€𝄞 \u{7f} \u{2028}",
        ];
        let statuses = [
            Status::Created,
            Status::Modified,
            Status::Exists,
            Status::Rejected,
            Status::Failed,
            Status::Ambiguous,
        ];
        let mut n = 0;
        for (k, status) in statuses.into_iter().enumerate() {
            for (j, t) in texts.iter().enumerate() {
                let some = |on: bool| on.then_some(Cow::Borrowed(*t));
                let line = ResultLine {
                    input: (j % 2 == 0).then_some(j as u32),
                    row: u64::MAX - k as u64,
                    line: j as u64,
                    reference: some(k % 2 == 0),
                    status,
                    obj_id: some(j % 3 != 0),
                    attempts: k as u32 * 7,
                    proc_: some(k % 3 == 0),
                    error: some(j % 2 == 1),
                };
                let mut mine = Vec::new();
                line.write_json(&mut mine).unwrap();
                assert_eq!(
                    String::from_utf8(mine).unwrap(),
                    serde_json::to_string(&line).unwrap()
                );
                n += 1;
            }
        }
        assert_eq!(n, 30);
    }

    #[test]
    fn task_ids_read_back_as_given_inline_or_boxed() {
        for s in [
            "",
            "5f0c0a000000000000000001",
            &"é".repeat(16),
            &"x".repeat(33),
            "€€€€€€€€€€€",
        ] {
            let t = TaskId::new(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(matches!(t, TaskId::Inline(..)), s.len() <= 32, "{s}");
            assert_eq!(format!("{t:?}"), format!("{s:?}"));
        }
    }
}
