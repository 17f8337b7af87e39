//! Request bodies -> outcomes, over a [`Transport`]: the state shared by all senders and
//! one attempt's way out.
//!
//! In: `Batch`es. Out: one `Outcome` per row (or none, for rows a stop left unsettled).
//! Requests leave as `control` paces them and as many at once as it allows; every attempt
//! is signed anew; a `Retry-After` pauses every sender (`Control::pause_all`); an
//! authentication failure stops the whole run; a server that cannot be reached opens the
//! `breaker`: every sender waits for a probe. What becomes of each row after an attempt
//! (settled, resent, split, ambiguous) is `settle.rs`; what each answer means is decided
//! by the pure functions of `retry.rs`.
//!
//! Time is read through [`now`], tokio's clock, so tests with a paused clock
//! (`send/sender_tests.rs`) drive backoffs, pauses and timeouts without waiting.

use super::breaker::{Breaker, Go};
use super::control::{Control, ControlConfig, Rate};
use super::gate::Gate;
use super::http::{Reply, Reqwest, Transport};
use crate::op::OpKind;
use crate::sign::{self, Secret};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// Settings of the sender.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Base URL without a trailing slash.
    pub base: String,
    pub login: String,
    pub secret: Secret,
    /// `--concurrency N`: a fixed in-flight limit; `None` lets it follow the rate.
    pub concurrency: Option<usize>,
    /// `--max-concurrency`: the ceiling of that limit.
    pub max_concurrency: usize,
    pub rate: Rate,
    /// With `--shard i/N`: 1/N, this copy's share of the license (`ControlConfig::share`).
    pub share: f64,
    /// Largest op count of a request.
    pub batch_size: usize,
    /// `--rate auto`'s start, when known (`ControlConfig::start`).
    pub auto_start: Option<super::control::Start>,
    /// Where `--rate auto` keeps the limit it finds for the next run (`control::learned`):
    /// the state directory and the key; `None` to keep nothing.
    pub learned: Option<(std::path::PathBuf, super::control::learned::LearnedKey)>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_retry_time: Duration,
    pub insecure: bool,
    pub op: OpKind,
    /// `--sync`: send through the Sync API instead.
    pub sync: Option<SyncApi>,
    /// Every op goes to the one process of `--conv-id` (not `--conv-id-column`, not raw
    /// lines): a refusal of that process stops the run (`retry::process_refusal`).
    pub one_process: bool,
    /// Backoff: first delay and cap.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

/// The Sync API (docs/protocol.md, Sync API): where, and how long the process may take to
/// reply.
#[derive(Debug, Clone)]
pub struct SyncApi {
    /// Base URL without a trailing slash (`--sync-url`).
    pub url: String,
    /// `--sync-timeout`, whole seconds, sent in the body.
    pub timeout_s: u64,
}

/// Counters the summary reads.
#[derive(Debug, Default)]
pub struct SendStats {
    /// Rows handed to the senders (in flight: these less the settled ones).
    pub rows: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
    /// Requests by what came of them, over time (the report's chart).
    outcomes: Mutex<super::Outcomes>,
    /// When a fixed `--rate` is not being held: what can be held, for the progress line.
    pub(super) short_of_rate: Mutex<Option<f64>>,
}

impl SendStats {
    /// The rate that can be held when a fixed `--rate` cannot be (`Control::shortfall`).
    pub fn short_of_rate(&self) -> Option<f64> {
        self.short_of_rate.lock().ok().and_then(|s| *s)
    }

    pub fn outcomes(&self) -> super::Outcomes {
        self.outcomes.lock().map(|o| o.clone()).unwrap_or_default()
    }

    pub fn latencies(&self) -> Vec<u32> {
        self.latencies_us
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

/// State shared by all requests of a run.
pub struct Sender {
    pub(super) cfg: SendConfig,
    http: Arc<dyn Transport>,
    pub control: Control,
    /// Requests in flight, as many as `control` allows now.
    inflight: Gate,
    /// Batches alive (waiting, in flight or retrying): two for each request in flight and
    /// one, so the next batch is ready when a slot frees. Bounds the memory.
    alive: Gate,
    pause_until: Mutex<Option<Instant>>,
    cancel: CancellationToken,
    fatal: Mutex<Option<String>>,
    /// The stop was the server away (`Breaker::give_up`), not an answer refusing the
    /// run: worth starting again later (exit 75), where a refusal is not.
    outage: std::sync::atomic::AtomicBool,
    pub(super) breaker: Breaker,
    /// Shared with the progress display.
    pub stats: Arc<SendStats>,
    /// When the sender was made: where the outcomes' time axis starts.
    started: Instant,
}

impl Sender {
    /// With `--rate auto`, keeps the limit found for the next run's start
    /// (`control::learned`): as the license (this copy's rate divided by its share), so a
    /// run with another number of copies starts at its own share. A state directory that
    /// cannot be written costs the next run its learned start, not this run its result.
    pub fn keep_limit(&self) {
        let (Some((dir, key)), Some(found)) = (&self.cfg.learned, self.control.limit_found())
        else {
            return;
        };
        let total = found / self.cfg.share.clamp(1e-6, 1.0);
        if let Err(e) = super::control::learned::save(dir, key, total) {
            tracing::warn!("could not keep the rate found in {}: {e}", dir.display());
        }
    }
}

impl Sender {
    /// A sender over HTTP (reqwest), as a run uses.
    pub fn new(cfg: SendConfig, cancel: CancellationToken) -> crate::Result<Sender> {
        let control = control(&cfg);
        let http = Reqwest::new(
            cfg.timeout,
            control.inflight_ceiling().max(1) * 2,
            cfg.insecure,
        )?;
        Ok(Sender::build(cfg, cancel, control, Arc::new(http)))
    }

    /// A sender over another transport (the tests' scripted one).
    pub fn with_transport(
        cfg: SendConfig,
        cancel: CancellationToken,
        http: Arc<dyn Transport>,
    ) -> Sender {
        let control = control(&cfg);
        Sender::build(cfg, cancel, control, http)
    }

    fn build(
        cfg: SendConfig,
        cancel: CancellationToken,
        control: Control,
        http: Arc<dyn Transport>,
    ) -> Sender {
        let first = control.inflight_limit().max(1);
        Sender {
            inflight: Gate::new(first),
            alive: Gate::new(first * 2 + 1),
            control,
            http,
            pause_until: Mutex::new(None),
            cancel,
            fatal: Mutex::new(None),
            outage: std::sync::atomic::AtomicBool::new(false),
            breaker: Breaker::new(cfg.backoff_base.saturating_mul(2)),
            stats: Arc::default(),
            started: now(),
            cfg,
        }
    }

    /// Ops per request (`--batch-size`): what a caller building its own batches fills.
    pub fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    /// The kind of op it settles rows as.
    pub fn op(&self) -> OpKind {
        self.cfg.op
    }

    /// Waits until one more batch may be alive; the permit goes with the batch.
    pub async fn admit_batch(&self) -> OwnedSemaphorePermit {
        self.alive
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// Gives the in-flight limit (and the batches alive with it) what `control` allows now.
    pub(super) fn resize(&self) {
        let want = self.control.inflight_limit().max(1);
        if want != self.inflight.size() {
            self.inflight.resize(want);
            self.alive.resize(2 * want + 1);
        }
    }

    /// Stops every sender before its next attempt; requests in flight finish.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves once the run is stopped (fatal answer, Ctrl-C, a log that failed).
    pub async fn wait_stopped(&self) {
        self.cancel.cancelled().await
    }

    /// Why the run had to stop, if it did.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|f| f.clone())
    }

    /// The run stopped because the server was away, not because it refused the run.
    pub fn outage(&self) -> bool {
        self.outage.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the run for a server away longer than it may be (`set_fatal` otherwise).
    pub(super) fn set_outage(&self, reason: String) {
        if self.fatal().is_none() {
            self.outage
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.set_fatal(reason);
    }

    pub(super) fn set_fatal(&self, reason: String) {
        if let Ok(mut f) = self.fatal.lock() {
            if f.is_none() {
                // Debug only: the summary's `stopped:` line says it, once.
                tracing::debug!("stopping: {reason}");
                *f = Some(reason);
            }
        }
        self.stop();
    }

    pub(super) fn pause_for(&self, d: Duration) {
        if let Ok(mut p) = self.pause_until.lock() {
            let until = now() + d;
            if p.is_none_or(|x| x < until) {
                *p = Some(until);
            }
        }
    }

    /// Sleeps, waking early when the run stops. Returns false if stopped.
    pub(super) async fn sleep(&self, d: Duration) -> bool {
        if d.is_zero() {
            return !self.is_stopped();
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_stopped(),
            _ = self.cancel.cancelled() => false,
        }
    }

    async fn wait_pause(&self) -> bool {
        loop {
            let until = self.pause_until.lock().ok().and_then(|p| *p);
            match until {
                Some(u) if u > now() => {
                    if !self.sleep(u - now()).await {
                        return false;
                    }
                }
                _ => return !self.is_stopped(),
            }
        }
    }

    pub(super) fn backoff(&self, retry_round: u32) -> Duration {
        use rand::Rng;
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << retry_round.min(20))
            .min(self.cfg.backoff_cap);
        // Full jitter: senders that failed together do not come back together.
        let ms = exp.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms.max(1)))
    }

    /// Writes into `url` the signed request URL for `body`, with the current timestamp:
    /// every attempt (and a dry run) signs anew.
    pub fn sign_into(&self, body: &[u8], url: &mut String) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let sig = sign::sign(ts, &self.cfg.secret, body);
        match &self.cfg.sync {
            None => sign::write_url(url, &self.cfg.base, &self.cfg.login, ts, &sig),
            Some(s) => sign::write_url_at(url, &s.url, "/api/1/json/", &self.cfg.login, ts, &sig),
        }
    }

    /// Waits while the server is unreachable and another sender probes it. True when
    /// this attempt is the probe; `None` when the run stopped.
    async fn wait_breaker(&self) -> Option<bool> {
        loop {
            match self.breaker.go(now()) {
                Go::Send => return Some(false),
                Go::Probe => return Some(true),
                Go::Wait(d) => {
                    if !self.sleep(d).await {
                        return None;
                    }
                }
            }
        }
    }

    /// One attempt: wait for the server (breaker), the pacer and a slot, sign `body` with
    /// a fresh timestamp, post it. `None` when the run stopped first. Gives the reply,
    /// whether it was the breaker's probe, when the request left and how long it took.
    pub(super) async fn attempt(
        &self,
        body: Bytes,
        n_ops: usize,
        url: &mut String,
    ) -> Option<(Reply, bool, Instant, Duration)> {
        if !self.wait_pause().await {
            return None;
        }
        let probe = self.wait_breaker().await?;
        let sent = self.post(body, n_ops, url).await;
        if sent.is_none() && probe {
            self.breaker.probe_dropped();
        }
        sent.map(|(reply, at, took)| (reply, probe, at, took))
    }

    async fn post(
        &self,
        body: Bytes,
        n_ops: usize,
        url: &mut String,
    ) -> Option<(Reply, Instant, Duration)> {
        let _permit = tokio::select! {
            p = self.inflight.acquire() => p.ok()?,
            _ = self.cancel.cancelled() => return None,
        };
        // A slot first, then the pacer: a request that may leave by the rate leaves at
        // once, so the pacer's booking is the time it is sent. A pause for everyone that
        // began while this one waited for the pacer holds it too.
        loop {
            if !self.wait_pause().await {
                return None;
            }
            match self.control.claim(now(), n_ops) {
                None => break,
                Some(wait) => {
                    if !self.sleep(wait).await {
                        return None;
                    }
                }
            }
        }
        if self.is_stopped() {
            return None;
        }
        self.sign_into(&body, url);
        tracing::debug!(
            "POST {} ({} ops, {} bytes): {}",
            url,
            n_ops,
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let sent = now();
        let reply = self.http.post(url, body, self.cfg.timeout).await;
        let took = now() - sent;
        if let Ok(mut l) = self.stats.latencies_us.lock() {
            l.push(took.as_micros().min(u32::MAX as u128) as u32);
        }
        if let Ok(mut o) = self.stats.outcomes.lock() {
            o.record(sent.saturating_duration_since(self.started), &reply);
        }
        Some((reply, sent, took))
    }

    /// `--sync`: `{"timeout":S,` in front of the body's members (one copy per request;
    /// a sync request waits for its replies anyway).
    pub fn with_sync_timeout(&self, body: Bytes) -> Bytes {
        let Some(s) = &self.cfg.sync else {
            return body;
        };
        let mut b = Vec::with_capacity(body.len() + 24);
        b.extend_from_slice(b"{\"timeout\":");
        b.extend_from_slice(itoa::Buffer::new().format(s.timeout_s).as_bytes());
        b.push(b',');
        b.extend_from_slice(&body[1..]);
        Bytes::from(b)
    }
}

/// The settings of the rate and concurrency controller, taken from the sender's.
fn control(cfg: &SendConfig) -> Control {
    Control::new(
        ControlConfig {
            rate: cfg.rate,
            share: cfg.share,
            concurrency: cfg.concurrency,
            max_concurrency: cfg.max_concurrency,
            batch_size: cfg.batch_size,
            start: cfg.auto_start,
        },
        now(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// Now, on tokio's clock: the wall clock in a run, and the clock a test pauses and moves.
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
