//! Wires the stages together: a reader thread (source -> mapping -> batcher), the async
//! senders, and a journal thread that owns the outputs.
//!
//! ```text
//! reader thread ──Batch──► dispatcher ──spawn──► Sender::process ──Event──► journal thread
//!      └────────────── Event (rejected rows, input errors) ─────────────────────┘
//! ```
//! Memory is bounded by the two channels and the number of batches alive (a small
//! multiple of `--concurrency`), never by the size of the input.

use crate::batch::Batch;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::read::{preflight, read_inputs, SeenRefs};
use crate::send::Sender;
use crate::sink::{self, Event, Journal, Manifest, RowSet, RunStats, Summary};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

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
            (settled, earlier) = sink::read_settled(path, &manifest, |r, _, _| seen.seed(r))?;
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
