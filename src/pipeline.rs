//! Wires the stages together: a reader thread (source -> mapping -> batcher), the async
//! senders, and a journal thread that owns the outputs.
//!
//! ```text
//! reader thread ──Batch──► dispatcher ──spawn──► Sender::process ──Event──► journal thread
//!      └────────────── Event (rejected rows, input errors) ─────────────────────┘
//! ```
//! Memory is bounded by the two channels and the number of batches alive (two for each
//! request the sender may have in flight), never by the size of the input. One
//! `CancellationToken` stops everything: Ctrl-C (the `shutdown` future), a fatal answer, a
//! log that cannot be written (docs/architecture.md, "Threads and channels").

use crate::batch::Batch;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::read::{preflight, read_inputs, SeenRefs};
use crate::send::Sender;
use crate::sink::{self, Event, Journal, Manifest, RowSet, RunStats, Summary};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    let mut cfg = cfg;
    // A renamed or linked input keeps the refs of the run it resumes.
    let mut notes = sink::manifest::keep_first_refs(&mut cfg);
    let manifest = Manifest::new(&cfg);
    sink::manifest::check_before_reading(&cfg, &manifest)?;
    // A file of the same name that begins otherwise gets the same refs.
    notes.extend(sink::manifest::another_file(&cfg));
    // Every input whose header or mapping is unusable is refused now, before the journal
    // truncates the results log of an earlier run and before anything is sent.
    preflight(&cfg)?;
    // Held to the end of the run: no other run writes this log meanwhile.
    let claim = sink::claim::claim(&cfg, &manifest)?;
    let earlier_run = resumed(&cfg, &manifest)?;
    let bytes_read = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let sender = Arc::new(Sender::new(cfg.send.clone(), cancel.clone())?);
    let live = sink::progress::Live {
        bytes_read: bytes_read.clone(),
        send: sender.stats.clone(),
        earlier: earlier_run.earlier.total(),
    };
    let mut journal = Journal::open(&cfg, earlier_run.resume, &manifest, live)?;

    let cfg = Arc::new(cfg);
    // Small: the dispatcher takes batches as fast as senders may hold them (Sender::admit_batch).
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(8);
    let (jtx, jrx) = mpsc::channel::<Event>(64);
    // The journal thread: owns every output file and the progress display. Nothing more
    // may be sent once outcomes cannot be logged.
    journal.stop_on_max_errors(&cfg, cancel.clone());
    let jcancel = cancel.clone();
    let journal_thread = sink::spawn(journal, jrx, move || jcancel.cancel())?;
    // The reader thread: source -> mapping -> batcher.
    let (rcfg, rjtx) = (cfg.clone(), jtx.clone());
    let Resumed {
        settled,
        seen,
        notes: resume_notes,
        ..
    } = earlier_run;
    let reader_thread = std::thread::Builder::new()
        .name("czload-reader".into())
        .spawn(move || read_inputs(&rcfg, &settled, seen, batch_tx, rjtx, cancel, bytes_read))
        .map_err(|e| Error::Other(format!("cannot start the reader thread: {e}")))?;

    let two_step = two_step(&cfg);
    let (interrupted, dry) = if cfg.dry_run {
        // The journal ends when the last event sender is gone.
        drop(jtx);
        (false, Some(dry_run(&sender, batch_rx, two_step).await))
    } else {
        (
            dispatch(&sender, batch_rx, jtx, shutdown, two_step).await,
            None,
        )
    };
    let report = join(reader_thread, "reader").await??;
    let mut journal = join(journal_thread, "journal").await??;
    let run = run_stats(
        &cfg,
        &sender,
        &report,
        earlier_run.earlier,
        dry.as_ref(),
        interrupted,
        started,
    );
    let summary = journal.summarize(&cfg, run);
    sender.keep_limit();
    let mut summary = summary;
    summary.notes.extend(resume_notes);
    summary.notes.extend(notes);
    if let Some(kept) = claim.and_then(|c| c.kept) {
        summary.notes.push(format!(
            "--restart: the unfinished results log was kept as {}",
            kept.display()
        ));
    }
    Ok((summary, dry.and_then(|d| d.first)))
}

/// `--op delete`: whether a show goes first where a row does not give the node
/// (src/after/); `None` for an op that needs no node.
fn two_step(cfg: &LoadConfig) -> Option<bool> {
    let by_ref = matches!(
        cfg.mapping.ref_mode,
        crate::mapping::RefMode::Column(_) | crate::mapping::RefMode::Template(_)
    );
    cfg.mapping.op.finds_node_first.then_some(by_ref)
}

/// What the senders and the reader counted, for the summary.
fn run_stats(
    cfg: &LoadConfig,
    sender: &Sender,
    report: &crate::read::ReadReport,
    earlier: sink::Counts,
    dry: Option<&DryRun>,
    interrupted: bool,
    started: Instant,
) -> RunStats {
    let stats = &sender.stats;
    RunStats {
        rows: report.rows,
        skipped: report.skipped,
        other_shards: report.other_shards,
        earlier,
        requests: dry.map_or_else(|| stats.requests.load(Ordering::Relaxed), |d| d.requests),
        retries: stats.retries.load(Ordering::Relaxed),
        throttled: stats.throttled.load(Ordering::Relaxed),
        latencies_us: stats.latencies(),
        outcomes: (!cfg.dry_run).then(|| stats.outcomes()),
        elapsed_secs: started.elapsed().as_secs_f64(),
        interrupted,
        fatal: sender.fatal(),
        outage: sender.outage(),
        rate: (!cfg.dry_run).then(|| sender.control.report()),
    }
}

/// What an earlier run settled (`--resume`).
struct Resumed {
    /// Whether there is a results log to append to.
    resume: bool,
    /// Rows settled, per input.
    settled: Vec<RowSet>,
    /// What became of them.
    earlier: sink::Counts,
    /// The refs they sent, so a row repeating one is refused.
    seen: SeenRefs,
    /// What the user should know about the log (lines a crash cut short).
    notes: Vec<String>,
}

fn resumed(cfg: &LoadConfig, manifest: &Manifest) -> Result<Resumed> {
    let mut r = Resumed {
        resume: cfg.resume,
        settled: vec![RowSet::default(); cfg.inputs.len()],
        earlier: sink::Counts::default(),
        seen: SeenRefs::new(cfg),
        notes: Vec::new(),
    };
    if !cfg.resume {
        return Ok(r);
    }
    let path = cfg
        .results
        .as_ref()
        .ok_or_else(|| Error::Usage("--resume needs a results log".into()))?;
    if cfg.inputs.iter().any(|i| i.path.is_none()) {
        return Err(Error::Usage(
            "--resume cannot skip rows of stdin (it cannot be read again the same way); resume from a file".into(),
        ));
    }
    // An empty log is one the claim just created.
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        let seen = &mut r.seen;
        let mut cut = Vec::new();
        (r.settled, r.earlier) =
            sink::read_settled(path, manifest, |x, _, _| seen.seed(x), &mut cut)?;
        r.notes.extend(cut.iter().map(|n| {
            format!(
                "{} line {n} was cut short (a crash while it was written): its row is sent again",
                path.display()
            )
        }));
    } else {
        // The config told the user (LoadConfig::notes).
        r.resume = false;
    }
    Ok(r)
}

/// A dry run's requests: every body signed as it would be sent, to prove the whole path;
/// nothing sent.
struct DryRun {
    requests: u64,
    first: Option<DryRunRequest>,
}

async fn dry_run(
    sender: &Sender,
    mut batch_rx: mpsc::Receiver<Batch>,
    two_step: Option<bool>,
) -> DryRun {
    let mut url = String::new();
    let mut d = DryRun {
        requests: 0,
        first: None,
    };
    while let Some(b) = batch_rx.recv().await {
        // As it would be sent: with `--sync`, the timeout in front; `--op delete`, the
        // shows (or deletes) the rows become.
        let body = match two_step {
            Some(refs) => crate::after::first_request(&b, refs).unwrap_or_default(),
            None => sender.with_sync_timeout(b.body.clone()),
        };
        sender.sign_into(&body, &mut url);
        d.requests += 1;
        if d.first.is_none() {
            d.first = Some(DryRunRequest {
                url: url.clone(),
                body,
            });
        }
    }
    d
}

/// Hands each batch to a sender task as soon as one more batch may be alive, until the
/// input ends or the run stops; then waits for the tasks. True when `shutdown` stopped it.
/// `two_step`: the kind finds the node first (`--op delete`), and whether refs name tasks.
async fn dispatch(
    sender: &Arc<Sender>,
    mut batch_rx: mpsc::Receiver<Batch>,
    jtx: mpsc::Sender<Event>,
    shutdown: impl Future<Output = ()>,
    two_step: Option<bool>,
) -> bool {
    let mut tasks = tokio::task::JoinSet::new();
    let mut interrupted = false;
    tokio::pin!(shutdown);
    loop {
        let batch = tokio::select! {
            _ = &mut shutdown => { interrupted = true; break; }
            _ = sender.wait_stopped() => break,
            b = async {
                let permit = sender.admit_batch().await;
                batch_rx.recv().await.map(|b| (b, permit))
            } => b,
        };
        let Some((batch, permit)) = batch else { break };
        let (s, jtx) = (sender.clone(), jtx.clone());
        tasks.spawn(async move {
            let outcomes = match two_step {
                Some(refs) => crate::after::delete_rows(&s, &batch, refs).await,
                None => s.process(&batch).await,
            };
            let _ = jtx.send(Event::Batch { batch, outcomes }).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    if interrupted {
        sender.stop();
    }
    // Unblocks the reader if it waits to hand over a batch.
    drop(batch_rx);
    // The last batches may still be retrying (for minutes, with backoff): Ctrl-C must
    // still stop them.
    loop {
        tokio::select! {
            done = tasks.join_next() => if done.is_none() { break },
            _ = &mut shutdown, if !interrupted => {
                interrupted = true;
                sender.stop();
            }
        }
    }
    interrupted
}

/// Waits for a stage's thread without holding a runtime worker.
async fn join<T: Send + 'static>(t: std::thread::JoinHandle<T>, what: &str) -> Result<T> {
    tokio::task::spawn_blocking(move || t.join())
        .await
        .map_err(|e| Error::Other(format!("{what}: {e}")))?
        .map_err(|_| Error::Other(format!("the {what} thread panicked")))
}
