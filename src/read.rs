//! The reader stage: source -> mapping -> batcher, on its own thread.
//!
//! In: the inputs, the rows an earlier run settled (`--resume`) and the refs it sent, and
//! with `--shard` which copy this is (other copies' rows are skipped before mapping).
//! Out: full batches to the senders, and to the journal the rejected rows, each input's
//! start (with its retry file's header) and the inputs that broke off. Written once over
//! [`Records`], [`Plan`] and [`RetryRows`]: no format is named here.

mod seen;

pub(crate) use seen::SeenRefs;

use crate::batch::{Batch, Batcher, RowKey};
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::mapping::{Mapped, Plan, RetryRows};
use crate::op::raw_create_key;
use crate::outcome::RejectedRow;
use crate::shard::{RowShards, Shard};
use crate::sink::{Event, RowSet};
use crate::source::{Input, ReadOptions, Records};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the reader thread reports at the end.
#[derive(Debug, Default)]
pub(crate) struct ReadReport {
    pub(crate) rows: u64,
    pub(crate) skipped: u64,
    /// `--shard`: rows read that other copies load.
    pub(crate) other_shards: u64,
}

/// The reader thread's loop over all inputs. A row that cannot be mapped becomes a
/// `rejected` event and the run goes on; an input that cannot be read at all is an error
/// when nothing was read yet (exit 1), otherwise an input error in the summary.
pub(crate) fn read_inputs(
    cfg: &LoadConfig,
    settled: &[RowSet],
    seen: SeenRefs,
    batch_tx: mpsc::Sender<Batch>,
    jtx: mpsc::Sender<Event>,
    stop: CancellationToken,
    bytes_read: Arc<AtomicU64>,
) -> Result<ReadReport> {
    let closed = Rc::new(Cell::new(false));
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
        raw: cfg.mapping.op.rows_are_ops,
        key_buf: String::new(),
        next_id: 1,
        report: ReadReport::default(),
        jtx: &jtx,
        batch_bytes: cfg.batch_bytes,
        rejected: Rc::new(RefCell::new(Vec::new())),
    };
    // Whether to stop reading: the run stops (Ctrl-C, a fatal answer, a log that failed),
    // or the senders are gone. The token takes a lock to look at, 3 to 4% of a read that
    // maps little (a `--shard` copy): it is looked at every 64th row, and at every row of
    // stdin, whose read a stop may cut short (the record then must not be mapped).
    let (tick, stopped, exact) = (Cell::new(0u32), Cell::new(false), Cell::new(false));
    let halt = || {
        if closed.get() || stopped.get() {
            return true;
        }
        tick.set(tick.get().wrapping_add(1));
        if (exact.get() || tick.get() % 64 == 0) && stop.is_cancelled() {
            stopped.set(true);
        }
        stopped.get()
    };

    for input in &cfg.inputs {
        exact.set(input.path.is_none());
        if closed.get() || stop.is_cancelled() {
            break;
        }
        let idx = input.index;
        let Some(mapped) = open_mapped(cfg, input, &mut rows, &stop, &bytes_read)? else {
            continue;
        };
        let each = Each {
            name: input.display(),
            input: idx,
            done: &settled[idx as usize],
            halt: &halt,
            shard: cfg.shard,
        };
        match mapped {
            Mapped::Fields(mut src, plan, retry) => each.read(&mut *src, &plan, *retry, &mut rows),
            Mapped::Objects(mut src, plan, retry) => each.read(&mut *src, &plan, retry, &mut rows),
        }
    }
    batcher.borrow_mut().flush();
    // What is left of the rejected rows goes when `rows` is dropped.
    Ok(std::mem::take(&mut rows.report))
}

/// Opens one input for the reader loop, with a hook that sends a partial batch when
/// stdin pauses. An input that cannot be used is fatal before any row (`Err`), an input
/// error after (`None`: the next input is read).
fn open_mapped<F: FnMut(Batch) + 'static>(
    cfg: &LoadConfig,
    input: &Input,
    rows: &mut Rows<'_, F>,
    stop: &CancellationToken,
    bytes_read: &Arc<AtomicU64>,
) -> Result<Option<Mapped>> {
    let idle_batcher = rows.batcher.clone();
    let (idle_rejected, idle_jtx) = (rows.rejected.clone(), rows.jtx.clone());
    let linger = cfg.linger;
    let on_idle: Box<dyn FnMut()> = Box::new(move || {
        // Called from inside a read, while no op is being written.
        if let Ok(mut b) = idle_batcher.try_borrow_mut() {
            b.flush_if_lingering(linger);
        }
        // A quiet stream's rejected rows reach the log and the counts too.
        hand_over(&idle_rejected, &idle_jtx);
    });
    let opened = open_input(cfg, input, bytes_read.clone(), on_idle, stop.clone());
    match opened {
        Ok(mapped) => Ok(Some(mapped)),
        Err(e) if rows.report.rows == 0 => Err(e),
        Err(e) => {
            let _ = rows.jtx.blocking_send(Event::InputError {
                input: input.index,
                line: 0,
                message: e.to_string(),
            });
            Ok(None)
        }
    }
}

/// Opens an input's records with their mapping (built from the header, for fields): for
/// the reader loop, the preflight and `check`. `counter` receives the bytes read; with
/// stdin, `on_idle` is called when it pauses.
pub(crate) fn open_input(
    cfg: &LoadConfig,
    input: &Input,
    counter: Arc<AtomicU64>,
    on_idle: Box<dyn FnMut()>,
    stop: CancellationToken,
) -> Result<Mapped> {
    let opts = ReadOptions {
        delimiter: input.delimiter,
        has_header: cfg.has_header,
        empty: cfg.mapping.empty,
        max_row: max_row(cfg),
    };
    let opened = input.open(&opts, counter, cfg.linger, on_idle, stop)?;
    let ref_name = &cfg.ref_names[input.index as usize];
    Mapped::new(&cfg.mapping, opened, &input.file_name(), ref_name).map_err(|e| {
        match input.delimiter_hint {
            // A flag naming a column the one-column header lacks: most likely the delimiter.
            Some(d) => Error::Usage(format!(
                "{e}\n{}: {}",
                input.display(),
                crate::source::csv::delimiter_hint(d)
            )),
            None => e,
        }
    })
}

/// The largest row worth reading whole: one larger than any request may hold can only be
/// rejected. (NDJSON skips the rest of such a line; a CSV row that large breaks the
/// input off, as it most likely comes from a quote that is never closed.)
fn max_row(cfg: &LoadConfig) -> u64 {
    (cfg.batch_bytes.max(cfg.mapping.max_task_bytes) + 4096) as u64
}

/// Opens each input file, reads its header, and builds its mapping, so that an unusable
/// input (empty file, bad header, a flag naming no column) stops the run before any
/// output is touched or any row sent. Stdin cannot be read twice: it is checked when it
/// is read.
pub(crate) fn preflight(cfg: &LoadConfig) -> Result<()> {
    for input in cfg.inputs.iter().filter(|i| i.path.is_some()) {
        open_alone(cfg, input)?;
    }
    Ok(())
}

/// Opens one input outside a run (no byte count, no idle hook, no stop): to check it
/// (`preflight`, `czload check`).
pub(crate) fn open_alone(cfg: &LoadConfig, input: &Input) -> Result<Mapped> {
    open_input(
        cfg,
        input,
        Arc::new(AtomicU64::new(0)),
        Box::new(|| {}),
        CancellationToken::new(),
    )
}

/// One input as the reader loop goes through it.
struct Each<'a> {
    /// How the input is named in messages.
    name: String,
    input: u32,
    /// Its rows settled by an earlier run.
    done: &'a RowSet,
    halt: &'a dyn Fn() -> bool,
    shard: Option<Shard>,
}

impl Each<'_> {
    /// Maps every record of `src` not settled by an earlier run, until the end, a stop,
    /// or a read error (reported with its line; the rows before it stay loaded).
    fn read<P: Plan, W: RetryRows<Record = P::Record>, F: FnMut(Batch)>(
        &self,
        src: &mut dyn Records<Record = P::Record>,
        plan: &P,
        mut retry: W,
        rows: &mut Rows<'_, F>,
    ) {
        let header = retry.header();
        let _ = rows.jtx.blocking_send(Event::InputStart {
            input: self.input,
            header,
        });
        let by_row = self.shard.and_then(|s| plan.row_shards(s));
        while !(self.halt)() {
            if let Some(by_row) = &by_row {
                self.pass_over(src, by_row, &mut rows.report);
            }
            let (row, line) = match src.advance() {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    let _ = rows.jtx.blocking_send(Event::InputError {
                        input: self.input,
                        line: e.line,
                        message: format!(
                            "{}: line {}: {}; the rows before it were loaded",
                            self.name, e.line, e.message
                        ),
                    });
                    break;
                }
            };
            // A stop may have cut the read short: the record may be partial.
            if (self.halt)() {
                break;
            }
            if self.done.contains(row) {
                rows.report.skipped += 1;
                if rows.raw {
                    rows.seed_settled(plan, src.record(), row);
                }
                continue;
            }
            if let Some(shard) = self.shard {
                let too_long = src.too_long().is_some() || src.unfit().is_some();
                if !rows.in_shard(shard, plan, src.record(), row, too_long) {
                    rows.report.other_shards += 1;
                    continue;
                }
            }
            let key = RowKey {
                id: 0,
                input: self.input,
                row,
                line,
            };
            match src.too_long() {
                Some(len) => {
                    let reason = format!(
                        "the line is {len} bytes, more than a request may hold (--batch-bytes {})",
                        rows.batch_bytes
                    );
                    rows.reject_unmapped(key, reason);
                }
                None => match src.unfit() {
                    Some(reason) => rows.reject_unmapped(key, reason.to_string()),
                    None => rows.map(key, plan, &mut retry, src.record()),
                },
            }
        }
    }

    /// `--shard` with refs from row numbers: passes over the next rows that are settled
    /// or other copies', without reading their fields, as far as the source can (at most
    /// what it has read in, so the stop is still looked at); counted as `read` would.
    fn pass_over<R: ?Sized>(
        &self,
        src: &mut dyn Records<Record = R>,
        by_row: &RowShards,
        report: &mut ReadReport,
    ) {
        src.pass_while(&mut |row, fields| {
            if self.done.contains(row) {
                report.skipped += 1;
            } else if !by_row.keeps(row, fields) {
                report.other_shards += 1;
            } else {
                return false;
            }
            true
        });
    }
}

/// The reader's state across inputs: the open batch, op ids, refs seen, counts.
struct Rows<'a, F: FnMut(Batch)> {
    batcher: Rc<RefCell<Batcher<F>>>,
    seen: SeenRefs,
    ref_buf: String,
    /// `--op raw`: creates obey the one-ref-once rule by `key_buf` (`raw_create_key`).
    raw: bool,
    key_buf: String,
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
    /// Maps one row into the open batch: the op (given its id) and its ref, and the row
    /// as the retry file would hold it. A row that cannot be mapped is rejected with its
    /// reason.
    fn map<P: Plan, W: RetryRows<Record = P::Record>>(
        &mut self,
        mut key: RowKey,
        plan: &P,
        retry: &mut W,
        rec: &P::Record,
    ) {
        key.id = self.next_id;
        self.next_id += 1;
        self.report.rows += 1;
        let mut b = self.batcher.borrow_mut();
        let at = b.begin();
        let res = plan
            .write_op(rec, key.id, key.row, b.buf(), &mut self.ref_buf)
            .map_err(|r| r.0)
            .and_then(|()| match self.raw {
                // `--op raw`: only creates, by process and ref.
                true if raw_create_key(b.op_since(&at), &self.ref_buf, &mut self.key_buf) => {
                    self.seen.check_as(&self.key_buf, &self.ref_buf)
                }
                true => Ok(None),
                false => self.seen.check(&self.ref_buf),
            });
        let res = match res {
            Ok(hash) => {
                let r = &self.ref_buf;
                b.commit(at, key, r, |raw| retry.write(rec, key.row, r, raw))
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
            Ok(hash) => self.seen.insert(hash),
            Err(reason) => self.reject(key, reason),
        }
    }

    /// `--shard`: whether the row is this copy's, by its ref, or by its row number when it
    /// has none (`--no-ref`, a ref that cannot be built, a line too long to read whole).
    /// Only the ref is built: the rest of the mapping is for this copy's rows.
    fn in_shard<P: Plan>(
        &mut self,
        shard: Shard,
        plan: &P,
        rec: &P::Record,
        row: u64,
        too_long: bool,
    ) -> bool {
        let built = !too_long && plan.write_ref(rec, row, &mut self.ref_buf).is_ok();
        let of = if built && !self.ref_buf.is_empty() {
            shard.of_ref(self.ref_buf.as_bytes())
        } else {
            shard.of_row(row)
        };
        of == shard.index
    }

    /// `--op raw` resumed: a create the earlier run settled still takes its ref, so a
    /// later create of it is refused as in one run (the log keeps refs, not processes).
    fn seed_settled<P: Plan>(&mut self, plan: &P, rec: &P::Record, row: u64) {
        let mut op = Vec::new();
        if plan
            .write_op(rec, 0, row, &mut op, &mut self.ref_buf)
            .is_ok()
            && raw_create_key(&op, &self.ref_buf, &mut self.key_buf)
        {
            self.seen.seed(&self.key_buf);
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
