//! Wires the stages together: a reader thread (source -> mapping -> batcher), the async
//! senders, and a journal thread that owns the outputs.
//!
//! ```text
//! reader thread ──Batch──► dispatcher ──spawn──► Sender::process ──Event──► journal thread
//!      └────────────── Event (rejected rows, input errors) ─────────────────────┘
//! ```
//! Memory is bounded by the two channels and the number of batches alive (a small
//! multiple of `--concurrency`), never by the size of the input.

use crate::batch::{Batch, Batcher, RowKey};
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::mapping::{CsvPlan, NdjsonPlan, Reject, REF_COLUMN};
use crate::outcome::RejectedRow;
use crate::send::Sender;
use crate::sink::{self, Event, Journal, Manifest, RowSet, RunStats, Summary};
use crate::source::csv::{CsvSource, RowEncoder};
use crate::source::ndjson::NdjsonSource;
use crate::source::Format;
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// What the reader thread reports at the end.
#[derive(Debug, Default)]
struct ReadReport {
    rows: u64,
    skipped: u64,
}

/// The first request of a dry run, as it would be sent.
#[derive(Debug, Clone)]
pub struct DryRunRequest {
    pub url: String,
    pub body: bytes::Bytes,
}

/// Loads the inputs as `cfg` says. Resolves when every row is settled, or when the run
/// stops: `shutdown` resolving (Ctrl-C) or a fatal answer. Rows left unsettled by a stop
/// have no line in the results log, so `--resume` picks them up.
pub async fn run(
    cfg: LoadConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(Summary, Option<DryRunRequest>)> {
    let started = Instant::now();
    let manifest = Manifest::new(&cfg);
    let mut settled: Vec<RowSet> = vec![RowSet::default(); cfg.inputs.len()];
    let mut resume = cfg.resume;
    let mut earlier = sink::Counts::default();
    let mut seen = SeenRefs::new(&cfg);
    if cfg.resume {
        let path = cfg
            .results
            .as_ref()
            .ok_or_else(|| Error::Usage("--resume needs a results log".into()))?;
        if cfg.inputs.iter().any(|i| i.path.is_none()) {
            return Err(Error::Usage(
                "--resume cannot skip rows of stdin (it cannot be read again the same way); resume from a file".into(),
            ));
        }
        if path.exists() {
            (settled, earlier) =
                sink::read_settled(path, &manifest, |r, input, row| seen.seed(r, input, row))?;
        } else {
            // The config told the user (LoadConfig::notes).
            resume = false;
        }
    }
    // Every input whose header or mapping is unusable is refused now, before the journal
    // truncates the results log of an earlier run and before anything is sent.
    preflight(&cfg)?;
    let bytes_read = Arc::new(AtomicU64::new(0));
    let journal = Journal::open(&cfg, resume, &manifest, bytes_read.clone())?;

    let cfg = Arc::new(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    // Small: the dispatcher takes batches as fast as senders may hold them (Sender::admit_batch).
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(8);
    let (jtx, jrx) = mpsc::channel::<Event>(64);

    // The journal thread: owns every output file and the progress display.
    let cancel = tokio_util::sync::CancellationToken::new();
    let sender = Arc::new(Sender::new(cfg.send.clone(), cancel.clone())?);
    let jstop = stop.clone();
    let jsender = sender.clone();
    let journal_thread = sink::spawn(journal, jrx, move || {
        jstop.store(true, Ordering::SeqCst);
        jsender.stop();
    })?;

    // The reader thread: source -> mapping -> batcher.
    let rcfg = cfg.clone();
    let rstop = stop.clone();
    let rjtx = jtx.clone();
    let rbytes = bytes_read.clone();
    let reader_thread = std::thread::Builder::new()
        .name("czload-reader".into())
        .spawn(move || read_inputs(&rcfg, &settled, seen, batch_tx, rjtx, rstop, rbytes))
        .map_err(|e| Error::Other(format!("cannot start the reader thread: {e}")))?;

    let mut interrupted = false;
    let mut dry_first: Option<DryRunRequest> = None;
    let mut requests = 0u64;
    if cfg.dry_run {
        // Sign every body as it would be sent, to prove the whole path; send nothing.
        let mut url = String::new();
        while let Some(b) = batch_rx.recv().await {
            sender.sign_into(&b.body, &mut url);
            requests += 1;
            if dry_first.is_none() {
                dry_first = Some(DryRunRequest {
                    url: url.clone(),
                    body: b.body.clone(),
                });
            }
        }
    } else {
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => { interrupted = true; break; }
                _ = sender.wait_stopped() => break,
                p = sender.admit_batch() => p,
            };
            let batch = tokio::select! {
                _ = &mut shutdown => { interrupted = true; break; }
                _ = sender.wait_stopped() => break,
                b = batch_rx.recv() => b,
            };
            let Some(batch) = batch else { break };
            let s = sender.clone();
            let jtx = jtx.clone();
            tasks.spawn(async move {
                let outcomes = s.process(&batch).await;
                let _ = jtx.send(Event::Batch { batch, outcomes }).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        let interrupt = |sender: &Sender| {
            eprintln!("czload: interrupted: finishing the requests in flight (Ctrl-C again to quit at once)");
            sender.stop();
        };
        if interrupted {
            interrupt(&sender);
        }
        // The reader stops at its next row (when it is not done already).
        stop.store(true, Ordering::SeqCst);
        // Unblocks the reader if it waits to hand over a batch.
        drop(batch_rx);
        // The last batches may still be retrying (for minutes, with backoff): Ctrl-C must
        // still stop them.
        loop {
            tokio::select! {
                done = tasks.join_next() => if done.is_none() { break },
                _ = &mut shutdown, if !interrupted => {
                    interrupted = true;
                    interrupt(&sender);
                }
            }
        }
    }
    drop(jtx);
    let report = tokio::task::spawn_blocking(move || reader_thread.join())
        .await
        .map_err(|e| Error::Other(format!("reader: {e}")))?
        .map_err(|_| Error::Other("the reader thread panicked".into()))?;
    let mut journal = tokio::task::spawn_blocking(move || journal_thread.join())
        .await
        .map_err(|e| Error::Other(format!("journal: {e}")))?
        .map_err(|_| Error::Other("the journal thread panicked".into()))??;
    let report = report?;

    let summary = journal.summarize(
        &cfg,
        RunStats {
            rows: report.rows,
            skipped: report.skipped,
            earlier,
            requests: if cfg.dry_run {
                requests
            } else {
                sender.stats.requests.load(Ordering::Relaxed)
            },
            retries: sender.stats.retries.load(Ordering::Relaxed),
            throttled: sender.stats.throttled.load(Ordering::Relaxed),
            latencies_us: sender.stats.latencies(),
            elapsed_secs: started.elapsed().as_secs_f64(),
            interrupted,
            fatal: sender.fatal(),
            rate: (!cfg.dry_run).then(|| sender.control.report()),
        },
    );
    Ok((summary, dry_first))
}

/// The reader thread's loop over all inputs. A row that cannot be mapped becomes a
/// `rejected` event and the run goes on; an input that cannot be read at all is an error
/// when nothing was read yet (exit 1), otherwise an input error in the summary.
fn read_inputs(
    cfg: &LoadConfig,
    settled: &[RowSet],
    seen: SeenRefs,
    batch_tx: mpsc::Sender<Batch>,
    jtx: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
    bytes_read: Arc<AtomicU64>,
) -> Result<ReadReport> {
    let closed = Rc::new(std::cell::Cell::new(false));
    let sink_closed = closed.clone();
    let batcher = Rc::new(RefCell::new(Batcher::new(
        cfg.batch_size,
        cfg.batch_bytes,
        move |b: Batch| {
            if batch_tx.blocking_send(b).is_err() {
                sink_closed.set(true);
            }
        },
    )));
    let mut rows = Rows {
        batcher: batcher.clone(),
        seen,
        ref_buf: String::with_capacity(64),
        next_id: 1,
        report: ReadReport::default(),
        jtx: &jtx,
        batch_bytes: cfg.batch_bytes,
        rejected: Rc::new(RefCell::new(Vec::new())),
    };
    // Whether to stop reading: Ctrl-C or a fatal answer, or the senders are gone.
    let halt = || stop.load(Ordering::Relaxed) || closed.get();

    for input in &cfg.inputs {
        if halt() {
            break;
        }
        let idx = input.index;
        let name = input.display();
        let file_name = input.file_name();
        let idle_batcher = batcher.clone();
        let (idle_rejected, idle_jtx) = (rows.rejected.clone(), jtx.clone());
        let linger = cfg.linger;
        let on_idle: Box<dyn FnMut()> = Box::new(move || {
            // Called from inside a read, while no op is being written.
            if let Ok(mut b) = idle_batcher.try_borrow_mut() {
                b.flush_if_lingering(linger);
            }
            // A quiet stream's rejected rows reach the log and the counts too.
            hand_over(&idle_rejected, &idle_jtx);
        });
        // An input that cannot be used: fatal before any row, an input error after.
        let unusable = |e: Error, rows_read: u64| -> Result<()> {
            if rows_read == 0 {
                return Err(e);
            }
            let _ = jtx.blocking_send(Event::InputError {
                input: idx,
                line: 0,
                message: e.to_string(),
            });
            Ok(())
        };
        let reader = match input.open(bytes_read.clone(), cfg.linger, on_idle, stop.clone()) {
            Ok(r) => r,
            Err(e) => {
                unusable(e, rows.report.rows)?;
                continue;
            }
        };
        let done = &settled[idx as usize];
        match input.format {
            Format::Csv => {
                let opened = CsvSource::new(reader, cfg.delimiter, cfg.has_header, &name)
                    .map(|s| s.max_row(max_row(cfg)))
                    .and_then(|s| {
                        CsvPlan::new(&cfg.mapping, &s.header, &file_name).map(|p| (s, p))
                    });
                let (mut src, plan) = match opened {
                    Ok(sp) => sp,
                    Err(e) => {
                        unusable(e, rows.report.rows)?;
                        continue;
                    }
                };
                let ref_cell = src.header.iter().position(|h| h == REF_COLUMN);
                let add_ref_col = plan.auto_ref() && ref_cell.is_none();
                // A file that has the column (a retry file) but leaves a row's cell empty
                // gets a generated ref for that row: it must go into the cell, or loading
                // the retry file would send the row under another ref.
                let fill_cell = ref_cell.filter(|_| plan.auto_ref());
                // Rows go to the retry file as csv would write them, with their generated
                // ref as one more column when refs are generated.
                let mut enc = RowEncoder::new(cfg.delimiter);
                let ref_col = add_ref_col.then_some(REF_COLUMN.as_bytes());
                let header = match &src.header_record {
                    Some(h) => {
                        let mut v = Vec::new();
                        enc.write(&mut v, h, ref_col);
                        Some(v)
                    }
                    // Without a header, the generated-ref column could not be told from
                    // data: the retry file gets a header line (key1, ..., _czload_ref), and
                    // is loaded without --no-header (the summary says so).
                    None if add_ref_col => {
                        let names: csv::ByteRecord =
                            src.header.iter().map(|h| h.as_bytes()).collect();
                        let mut v = Vec::new();
                        enc.write(&mut v, &names, ref_col);
                        Some(v)
                    }
                    None => None,
                };
                let _ = jtx.blocking_send(Event::InputStart { input: idx, header });
                each_row(
                    &mut src,
                    &name,
                    idx,
                    done,
                    &mut rows,
                    &halt,
                    |src, rows, row, line| {
                        let rec = src.record();
                        rows.map(
                            RowKey {
                                id: 0,
                                input: idx,
                                row,
                                line,
                            },
                            |buf, id, r| plan.write_op(rec, id, row, buf, r),
                            |raw, r| match fill_cell {
                                Some(i) if rec.get(i).is_some_and(<[u8]>::is_empty) => {
                                    let filled: csv::ByteRecord = rec
                                        .iter()
                                        .enumerate()
                                        .map(|(j, f)| if j == i { r.as_bytes() } else { f })
                                        .collect();
                                    enc.write(raw, &filled, None)
                                }
                                _ => enc.write(raw, rec, add_ref_col.then_some(r.as_bytes())),
                            },
                        );
                    },
                );
            }
            Format::Ndjson => {
                let plan = NdjsonPlan::new(&cfg.mapping, &file_name)?;
                let _ = jtx.blocking_send(Event::InputStart {
                    input: idx,
                    header: None,
                });
                let max_line = max_row(cfg) as usize;
                let mut src = NdjsonSource::new(reader, max_line);
                let add_ref = plan.auto_ref();
                each_row(
                    &mut src,
                    &name,
                    idx,
                    done,
                    &mut rows,
                    &halt,
                    |src, rows, row, line| {
                        let key = RowKey {
                            id: 0,
                            input: idx,
                            row,
                            line,
                        };
                        if let Some(len) = src.overlong() {
                            let reason = format!(
                            "the line is {len} bytes, more than a request may hold (--batch-bytes {})",
                            rows.batch_bytes
                        );
                            rows.reject_unmapped(key, reason);
                            return;
                        }
                        let text = src.line();
                        rows.map(
                            key,
                            |buf, id, r| plan.write_op(text, id, row, buf, r),
                            |raw, r| {
                                let generated = add_ref && is_generated(r, &file_name, row);
                                write_ndjson_raw(raw, text, generated.then_some(r))
                            },
                        );
                    },
                );
            }
        }
    }
    batcher.borrow_mut().flush();
    // What is left of the rejected rows goes when `rows` is dropped.
    Ok(std::mem::take(&mut rows.report))
}

/// The largest row worth reading whole: one larger than any request may hold can only be
/// rejected. (NDJSON skips the rest of such a line; a CSV row that large breaks the
/// input off, as it most likely comes from a quote that is never closed.)
fn max_row(cfg: &LoadConfig) -> u64 {
    (cfg.batch_bytes.max(cfg.mapping.max_task_bytes) + 4096) as u64
}

/// The sources as the reader loop sees them.
trait Records {
    /// The next record: `(row, line)`, or `None` at the end.
    fn advance(&mut self)
        -> std::result::Result<Option<(u64, u64)>, crate::source::csv::ReadError>;
}

impl Records for CsvSource {
    fn advance(
        &mut self,
    ) -> std::result::Result<Option<(u64, u64)>, crate::source::csv::ReadError> {
        CsvSource::advance(self)
    }
}

impl Records for NdjsonSource {
    fn advance(
        &mut self,
    ) -> std::result::Result<Option<(u64, u64)>, crate::source::csv::ReadError> {
        NdjsonSource::advance(self)
    }
}

/// Runs `f` on every record of `src` not settled by an earlier run (`done`), until the end,
/// a stop, or a read error (reported with its line; the rows before it stay loaded).
fn each_row<S: Records, F: FnMut(Batch)>(
    src: &mut S,
    name: &str,
    input: u32,
    done: &RowSet,
    rows: &mut Rows<'_, F>,
    halt: &dyn Fn() -> bool,
    mut f: impl FnMut(&S, &mut Rows<'_, F>, u64, u64),
) {
    while !halt() {
        let (row, line) = match src.advance() {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                let _ = rows.jtx.blocking_send(Event::InputError {
                    input,
                    line: e.line,
                    message: format!(
                        "{name}: line {}: {}; the rows before it were loaded",
                        e.line, e.message
                    ),
                });
                break;
            }
        };
        // A stop may have cut the read short: the record may be partial.
        if halt() {
            break;
        }
        if done.contains(row) {
            rows.report.skipped += 1;
            continue;
        }
        f(src, rows, row, line);
    }
}

/// The reader's state across inputs: the open batch, op ids, refs seen, counts.
struct Rows<'a, F: FnMut(Batch)> {
    batcher: Rc<RefCell<Batcher<F>>>,
    seen: SeenRefs,
    ref_buf: String,
    next_id: u64,
    report: ReadReport,
    jtx: &'a mpsc::Sender<Event>,
    batch_bytes: usize,
    /// Rejected rows not yet handed to the journal: they go in groups, not an event
    /// (and a wake of the journal thread) each, so a file of bad rows reads as fast as
    /// one of good rows. Handed over when full, and whatever is left when `Rows` is
    /// dropped (every way out of the reader).
    rejected: Rc<RefCell<Vec<RejectedRow>>>,
}

/// Rejected rows per event.
const REJECTED_PER_EVENT: usize = 256;

impl<F: FnMut(Batch)> Drop for Rows<'_, F> {
    fn drop(&mut self) {
        self.hand_over_rejected();
    }
}

impl<F: FnMut(Batch)> Rows<'_, F> {
    /// Maps one row into the open batch: `write_op` writes the op (given its id) and the
    /// ref, `write_raw` the row as the retry file would hold it. A row that cannot be
    /// mapped is rejected with its reason.
    fn map(
        &mut self,
        mut key: RowKey,
        write_op: impl FnOnce(&mut Vec<u8>, u64, &mut String) -> std::result::Result<(), Reject>,
        write_raw: impl FnOnce(&mut Vec<u8>, &str),
    ) {
        key.id = self.next_id;
        self.next_id += 1;
        self.report.rows += 1;
        let mut b = self.batcher.borrow_mut();
        let at = b.begin();
        let res = write_op(b.buf(), key.id, &mut self.ref_buf)
            .map_err(|r| r.0)
            .and_then(|()| self.seen.check(&self.ref_buf));
        let res = match res {
            Ok(hash) => {
                let r = &self.ref_buf;
                b.commit(at, key, r, |raw| write_raw(raw, r))
                    .map(|()| hash)
                    .map_err(|t| {
                        format!(
                            "the op is {} bytes, more than a request may hold (--batch-bytes {})",
                            t.op_bytes, t.max_bytes
                        )
                    })
            }
            Err(r) => {
                b.abort(at);
                Err(r)
            }
        };
        drop(b);
        match res {
            Ok(hash) => self.seen.insert(hash, key.input, key.row),
            Err(reason) => self.reject(key, reason),
        }
    }

    /// Rejects a row before any mapping (it has no ref), counting it like `map` does.
    fn reject_unmapped(&mut self, key: RowKey, reason: String) {
        self.next_id += 1;
        self.report.rows += 1;
        self.ref_buf.clear();
        self.reject(key, reason);
    }

    fn reject(&mut self, key: RowKey, reason: String) {
        let full = {
            let mut r = self.rejected.borrow_mut();
            r.push(RejectedRow {
                input: key.input,
                row: key.row,
                line: key.line,
                reference: (!self.ref_buf.is_empty()).then(|| self.ref_buf.clone()),
                reason,
            });
            r.len() >= REJECTED_PER_EVENT
        };
        if full {
            self.hand_over_rejected();
        }
    }

    fn hand_over_rejected(&mut self) {
        hand_over(&self.rejected, self.jtx);
    }
}

/// Sends the rejected rows gathered so far to the journal, if any (and if they are not
/// being added to right now: the idle hook runs inside a read).
fn hand_over(rejected: &RefCell<Vec<RejectedRow>>, jtx: &mpsc::Sender<Event>) {
    let rows = match rejected.try_borrow_mut() {
        Ok(mut r) if !r.is_empty() => std::mem::take(&mut *r),
        _ => return,
    };
    let _ = jtx.blocking_send(Event::Rejected(rows));
}

/// The line as it goes to the retry file. `reference` is given when the ref was generated
/// (`{file}:{row}`): the line then carries it in a leading `_czload_ref`, so that loading
/// the retry file reuses it (exactly once across runs). A ref that came from the line's own
/// `_czload_ref` is already in it.
fn write_ndjson_raw(raw: &mut Vec<u8>, line: &[u8], reference: Option<&str>) {
    let t = line.trim_ascii();
    match reference {
        Some(r) => {
            raw.extend_from_slice(b"{\"");
            raw.extend_from_slice(REF_COLUMN.as_bytes());
            raw.extend_from_slice(b"\":");
            crate::mapping::write_json_str(raw, r).expect("a Vec never fails");
            let rest = &t[1..];
            if rest.trim_ascii() != b"}" {
                raw.push(b',');
            }
            raw.extend_from_slice(rest);
        }
        None => raw.extend_from_slice(t),
    }
    raw.push(b'\n');
}

/// Whether `r` is the ref generated for `row` of `file_name` (`{file}:{row}`), as opposed
/// to one read from a `_czload_ref` field.
fn is_generated(r: &str, file_name: &str, row: u64) -> bool {
    r.strip_prefix(file_name)
        .and_then(|x| x.strip_prefix(':'))
        .is_some_and(|n| n == itoa::Buffer::new().format(row))
}

/// The refs sent so far in this run, to refuse a ref that the input repeats before the
/// server does: the second row would come back "not unical reference", which after a
/// retry is indistinguishable from our own earlier attempt (`exists`), so its data would
/// be dropped silently. Only for creates with refs from the data (`--ref-column`,
/// `--ref-template`) into one process: generated refs are unique by construction, and a
/// modify file may rightly name a task twice. Costs about 30 to 60 bytes per row (a hash
/// map from a 64-bit hash of the ref to where it was first seen).
struct SeenRefs {
    /// Keyed by the ref's 64-bit hash, which is already well mixed: the map rehashes it
    /// with foldhash's cheap hasher, not SipHash again.
    map: Option<std::collections::HashMap<u64, (u32, u64), foldhash::fast::FixedState>>,
    multi_input: bool,
}

impl SeenRefs {
    fn new(cfg: &LoadConfig) -> SeenRefs {
        use crate::mapping::{OpKind, RefMode, Target};
        let on = cfg.mapping.op == OpKind::Create
            && matches!(
                cfg.mapping.ref_mode,
                RefMode::Column(_) | RefMode::Template(_)
            )
            && matches!(cfg.mapping.target, Target::Conv(_));
        SeenRefs {
            map: on.then(std::collections::HashMap::default),
            multi_input: cfg.inputs.len() > 1,
        }
    }

    fn hash(r: &str) -> u64 {
        use std::hash::BuildHasher;
        // foldhash's quality variant: two refs share a hash (and the second would be
        // refused as a repeat) about once in 2^64, as with SipHash, at a fraction of the cost.
        foldhash::quality::FixedState::default().hash_one(r)
    }

    /// Refuses a ref seen before; otherwise gives its hash (when refs are tracked) for
    /// `insert` once the row is in a batch, so each ref is hashed once.
    fn check(&self, r: &str) -> std::result::Result<Option<u64>, String> {
        let Some(map) = &self.map else {
            return Ok(None);
        };
        let h = Self::hash(r);
        match map.get(&h) {
            Some(&(input, row)) => Err(format!(
                "duplicate ref {r:?}: row {row}{} has it already, and the server would refuse it (not unical reference)",
                if self.multi_input { format!(" of input {input}") } else { String::new() }
            )),
            None => Ok(Some(h)),
        }
    }

    fn insert(&mut self, hash: Option<u64>, input: u32, row: u64) {
        if let (Some(map), Some(h)) = (&mut self.map, hash) {
            map.entry(h).or_insert((input, row));
        }
    }

    /// Records a ref settled by an earlier run (`--resume`), so that a later row repeating
    /// it is refused too.
    fn seed(&mut self, r: &str, input: u32, row: u64) {
        if let Some(map) = &mut self.map {
            map.entry(Self::hash(r)).or_insert((input, row));
        }
    }
}

/// Opens each input file, reads its CSV header, and builds its mapping plan, so that an
/// unusable input (empty file, bad header, a flag naming no column) stops the run before
/// any output is touched or any row sent. Stdin cannot be read twice: it is checked when
/// it is read.
fn preflight(cfg: &LoadConfig) -> Result<()> {
    for input in cfg.inputs.iter().filter(|i| i.path.is_some()) {
        match input.format {
            Format::Csv => {
                let reader = input.open(
                    Arc::new(AtomicU64::new(0)),
                    cfg.linger,
                    Box::new(|| {}),
                    Arc::new(AtomicBool::new(false)),
                )?;
                let src = CsvSource::new(reader, cfg.delimiter, cfg.has_header, &input.display())?;
                CsvPlan::new(&cfg.mapping, &src.header, &input.file_name())?;
            }
            Format::Ndjson => {
                NdjsonPlan::new(&cfg.mapping, &input.file_name())?;
            }
        }
    }
    Ok(())
}
