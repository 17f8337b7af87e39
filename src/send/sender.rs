//! Request bodies -> outcomes, over HTTP.
//!
//! In: `Batch`es. Out: one `Outcome` per row (or none, for rows a stop left unsettled).
//! Requests leave as `control` paces them and as many at once as it allows; every attempt
//! is signed anew; only the ops that need it are retried, with exponential backoff and
//! full jitter; a `Retry-After` pauses every sender (`Control::pause_all`); an
//! authentication failure stops the whole run; a server that cannot be reached opens the
//! `breaker`: every sender waits for a probe, and the rows are not charged the attempts
//! that never reached it. What each answer means is decided by the pure functions of
//! `retry.rs`.

use super::answer::{self, MaybeOp};
use super::breaker::{Breaker, Go};
use super::control::{Control, ControlConfig, Rate};
use super::gate::Gate;
use super::http::{self, Reply};
use super::matching;
use super::retry::{self, Answer, OpVerdict, Verdict};
use crate::batch::Batch;
use crate::op::OpKind;
use crate::outcome::{Outcome, Status, TaskId};
use crate::sign::{self, Secret};
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::VecDeque;
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
    /// When a fixed `--rate` is not being held: what can be held, for the progress line.
    short_of_rate: Mutex<Option<f64>>,
}

impl SendStats {
    /// The rate that can be held when a fixed `--rate` cannot be (`Control::shortfall`).
    pub fn short_of_rate(&self) -> Option<f64> {
        self.short_of_rate.lock().ok().and_then(|s| *s)
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
    cfg: SendConfig,
    client: reqwest::Client,
    pub control: Control,
    /// Requests in flight, as many as `control` allows now.
    inflight: Gate,
    /// Batches alive (waiting, in flight or retrying): two for each request in flight and
    /// one, so the next batch is ready when a slot frees. Bounds the memory.
    alive: Gate,
    pause_until: Mutex<Option<Instant>>,
    cancel: CancellationToken,
    fatal: Mutex<Option<String>>,
    breaker: Breaker,
    /// Shared with the progress display.
    pub stats: Arc<SendStats>,
}

/// One request's worth of rows of a batch, being settled.
struct Settling<'a> {
    batch: &'a Batch,
    out: Vec<Option<Outcome>>,
    attempts: Vec<u32>,
    /// Per row: the last answer's latency (ms) and the times a rate limit refused it,
    /// for the results log (the report's latency and throttling charts).
    latency_ms: Vec<u32>,
    throttled: Vec<u32>,
    /// The retry time counts from the first answer, not from the wait for a rate slot
    /// or a connection before it, which at a low --rate can be long.
    started: Option<Instant>,
    /// Groups of rows to send; a malformed-body refusal splits its group in two.
    queue: VecDeque<Vec<usize>>,
    round: u32,
}

/// A `Verdict::Retry`'s parts: why, whether the request may have been applied, whether
/// it was throttling, and the pause the server asked for.
struct Resend {
    reason: String,
    maybe_applied: bool,
    throttled: bool,
    pause: Option<Duration>,
}

/// What came of one group's attempt: the rows to send again, and why.
#[derive(Default)]
struct Again {
    rows: Vec<usize>,
    reason: String,
    /// The server asked this group (only) to wait this long.
    wait: Option<Duration>,
    /// Of `rows`, those refused by a rate limit.
    throttled: usize,
}

impl Sender {
    pub fn new(cfg: SendConfig, cancel: CancellationToken) -> crate::Result<Sender> {
        let control = Control::new(
            ControlConfig {
                rate: cfg.rate,
                share: cfg.share,
                concurrency: cfg.concurrency,
                max_concurrency: cfg.max_concurrency,
                batch_size: cfg.batch_size,
            },
            Instant::now(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(control.inflight_ceiling().max(1) * 2)
            .tcp_nodelay(true)
            // A POST redirected becomes a GET elsewhere: never follow, report it.
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(cfg.insecure)
            .user_agent(concat!("czload/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Other(format!("cannot build the HTTP client: {e}")))?;
        let first = control.inflight_limit().max(1);
        Ok(Sender {
            inflight: Gate::new(first),
            alive: Gate::new(first * 2 + 1),
            control,
            client,
            pause_until: Mutex::new(None),
            cancel,
            fatal: Mutex::new(None),
            breaker: Breaker::new(cfg.backoff_base.saturating_mul(2)),
            stats: Arc::default(),
            cfg,
        })
    }

    /// Waits until one more batch may be alive; the permit goes with the batch.
    pub async fn admit_batch(&self) -> OwnedSemaphorePermit {
        self.alive
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// Gives the in-flight limit (and the batches alive with it) what `control` allows now.
    fn resize(&self) {
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

    fn set_fatal(&self, reason: String) {
        if let Ok(mut f) = self.fatal.lock() {
            if f.is_none() {
                tracing::error!("stopping: {reason}");
                *f = Some(reason);
            }
        }
        self.stop();
    }

    fn pause_for(&self, d: Duration) {
        if let Ok(mut p) = self.pause_until.lock() {
            let until = Instant::now() + d;
            if p.is_none_or(|x| x < until) {
                *p = Some(until);
            }
        }
    }

    /// Sleeps, waking early when the run stops. Returns false if stopped.
    async fn sleep(&self, d: Duration) -> bool {
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
                Some(u) if u > Instant::now() => {
                    if !self.sleep(u - Instant::now()).await {
                        return false;
                    }
                }
                _ => return !self.is_stopped(),
            }
        }
    }

    fn backoff(&self, retry_round: u32) -> Duration {
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
            match self.breaker.go(Instant::now()) {
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
    async fn attempt(
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
            match self.control.claim(Instant::now(), n_ops) {
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
        let sent = Instant::now();
        let reply = http::post(&self.client, url, body).await;
        let took = sent.elapsed();
        if let Ok(mut l) = self.stats.latencies_us.lock() {
            l.push(took.as_micros().min(u32::MAX as u128) as u32);
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

    /// Settles every row of `batch`. `None` for a row means a stop left it unsettled.
    pub async fn process(&self, batch: &Batch) -> Vec<Option<Outcome>> {
        let n = batch.len();
        self.stats.rows.fetch_add(n as u64, Ordering::Relaxed);
        let mut st = Settling {
            batch,
            out: vec![None; n],
            attempts: vec![0; n],
            latency_ms: vec![0; n],
            throttled: vec![0; n],
            started: None,
            queue: VecDeque::from([(0..n).collect()]),
            round: 0,
        };
        let mut url = String::with_capacity(self.cfg.base.len() + 96);
        while let Some(group) = st.queue.pop_front() {
            if self.is_stopped() || !self.send_group(&mut st, group, &mut url).await {
                break;
            }
        }
        for (i, o) in st.out.iter_mut().enumerate() {
            if let Some(o) = o {
                o.latency_ms = st.latency_ms[i];
                o.throttled = st.throttled[i];
            }
        }
        st.out
    }

    /// Sends one group of rows once and settles what its answer settles; the rest go back
    /// on the queue after a backoff. False when the run stopped.
    async fn send_group(&self, st: &mut Settling<'_>, group: Vec<usize>, url: &mut String) -> bool {
        for &i in &group {
            st.attempts[i] += 1;
        }
        if group.iter().any(|&i| st.attempts[i] > 1) {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        let body = self.with_sync_timeout(st.batch.body_for(&group));
        let Some((reply, probe, sent, took)) = self.attempt(body, group.len(), url).await else {
            // Stopped before sending: these rows were not attempted after all.
            for &i in &group {
                st.attempts[i] -= 1;
            }
            return false;
        };
        let started = *st.started.get_or_insert_with(Instant::now);
        if !self.breaker.track(&reply, probe) {
            return self.unreachable(st, group);
        }
        let ms = took.as_millis().min(u32::MAX as u128) as u32;
        for &i in &group {
            st.latency_ms[i] = ms;
        }
        let mut again = Again::default();
        let verdict = self.read_reply(st, &group, &reply, &mut again);
        let throttled_ops = match &verdict {
            Verdict::Retry {
                throttled: true, ..
            } => group.len(),
            _ => again.throttled,
        };
        if matches!(reply, Reply::Http { .. }) {
            let pause = self.control.on_answer(
                Instant::now(),
                sent,
                group.len() - throttled_ops,
                throttled_ops,
                took,
            );
            if let Some(p) = pause {
                self.pause_for(p);
            }
            self.resize();
            if let Ok(mut s) = self.stats.short_of_rate.lock() {
                *s = self.control.shortfall().map(|f| f.holdable);
            }
        }
        match verdict {
            Verdict::PerOp => {}
            Verdict::Retry {
                reason,
                maybe_applied,
                throttled,
                pause,
            } => {
                let resend = Resend {
                    reason,
                    maybe_applied,
                    throttled,
                    pause,
                };
                self.retry_all(st, &group, resend, &mut again)
            }
            Verdict::Split { reason } => {
                split(st, group, reason);
                return true;
            }
            Verdict::Fatal { reason } => {
                self.set_fatal(reason);
                return false;
            }
        }
        self.requeue(st, again, started).await
    }

    /// The group's request never reached the server: its rows go back on the queue,
    /// their attempt not charged, to leave when the breaker lets them; or the run stops
    /// (`Breaker::give_up`), the rows left resumable.
    fn unreachable(&self, st: &mut Settling<'_>, group: Vec<usize>) -> bool {
        for &i in &group {
            st.attempts[i] -= 1;
        }
        let give_up = self
            .breaker
            .give_up(Instant::now(), self.cfg.max_retry_time, &self.cfg.base);
        if let Some(reason) = give_up {
            self.set_fatal(reason);
            return false;
        }
        st.queue.push_front(group);
        true
    }

    /// Classifies a reply; a per-op answer settles its rows into `st` right away.
    fn read_reply(
        &self,
        st: &mut Settling<'_>,
        group: &[usize],
        reply: &Reply,
        again: &mut Again,
    ) -> Verdict {
        let (status, retry_after, location, date, body) = match reply {
            Reply::Transport(t, msg) => return retry::classify_transport(*t, msg),
            Reply::Http {
                status,
                retry_after,
                location,
                date,
                body,
            } => (*status, *retry_after, location, *date, body),
        };
        let parsed = body.as_ref().and_then(|b| answer::parse(b));
        // Borrowed from the body (no copy per request): only failures show it.
        let excerpt: Cow<str> = match body {
            Some(b) => String::from_utf8_lossy(&b[..b.len().min(200)]),
            None => Cow::Borrowed("(answer too large: over 32 MiB, not read)"),
        };
        let answer = Answer {
            request_proc: parsed.as_ref().and_then(|p| p.request_proc.as_deref()),
            description: parsed.as_ref().and_then(|p| p.description.as_deref()),
            excerpt: &excerpt,
            location: location.as_deref(),
        };
        let mut v = retry::classify_response(status, retry_after, &answer);
        if let (Verdict::Fatal { reason }, Some(server)) = (&mut v, date) {
            if let Some(note) = retry::clock_note(server, SystemTime::now()) {
                reason.push_str("; ");
                reason.push_str(&note);
            }
        }
        if v == Verdict::PerOp {
            let ops = parsed.map(|p| p.ops).unwrap_or_default();
            self.settle_ops(st, group, ops, again);
        }
        v
    }

    /// The whole group is to be sent again, except rows without a ref whose request may
    /// have been applied: those become `ambiguous`.
    fn retry_all(&self, st: &mut Settling<'_>, group: &[usize], r: Resend, again: &mut Again) {
        let Resend {
            reason,
            maybe_applied,
            throttled,
            pause,
        } = r;
        if throttled {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            for &i in group {
                st.throttled[i] += 1;
            }
        }
        if let Some(p) = pause {
            if self.control.pause_all(p) {
                self.pause_for(p);
            } else {
                again.wait = Some(p);
            }
        }
        tracing::debug!("retrying {} ops: {reason}", group.len());
        for &i in group {
            if maybe_applied && st.batch.reference(i).is_none() {
                // Without a ref a resend could create the task twice.
                st.out[i] = Some(Outcome::new(Status::Ambiguous, st.attempts[i]).with_error(format!(
                    "{reason}; the task may or may not have been created, and without a ref it is not resent"
                )));
            } else {
                again.rows.push(i);
            }
        }
        again.reason = reason;
    }

    /// Fails the rows of `again` that are out of attempts or time; the others go back on
    /// the queue after a backoff. False when the run stopped during the backoff.
    async fn requeue(&self, st: &mut Settling<'_>, again: Again, started: Instant) -> bool {
        if again.rows.is_empty() {
            return true;
        }
        let over_time = started.elapsed() >= self.cfg.max_retry_time;
        let mut keep = Vec::with_capacity(again.rows.len());
        for i in again.rows {
            if st.attempts[i] >= self.cfg.max_attempts || over_time {
                st.out[i] = Some(
                    Outcome::new(Status::Failed, st.attempts[i]).with_error(format!(
                        "{} (gave up after {} attempts)",
                        again.reason, st.attempts[i]
                    )),
                );
            } else {
                keep.push(i);
            }
        }
        if keep.is_empty() {
            return true;
        }
        let wait = self.backoff(st.round).max(again.wait.unwrap_or_default());
        if !self.sleep(wait).await {
            return false;
        }
        st.round += 1;
        st.queue.push_back(keep);
        true
    }

    /// Settles the rows of `group` from a per-op answer; rows to retry go to `again`.
    fn settle_ops(
        &self,
        st: &mut Settling<'_>,
        group: &[usize],
        ops: Vec<MaybeOp>,
        again: &mut Again,
    ) {
        let batch = st.batch;
        let positional = self.cfg.sync.is_some();
        let (mut answers, mut by_ref) = matching::by_row(batch, group, ops, positional);
        for &i in group {
            let a = answers[i]
                .take()
                .or_else(|| batch.reference(i).and_then(|r| by_ref.remove(r)));
            let Some(a) = a else {
                // Not answered: it may have been applied.
                if batch.reference(i).is_none() {
                    st.out[i] = Some(Outcome::new(Status::Ambiguous, st.attempts[i]).with_error(
                        "the answer did not mention this op; without a ref it is not resent",
                    ));
                } else {
                    again.rows.push(i);
                    again.reason = "the answer did not mention this op".into();
                }
                continue;
            };
            let proc_ = a.proc_.as_deref().unwrap_or("");
            // `--op raw`: each row is of its own type.
            let kind = self.cfg.op.of_row(batch.op(i));
            let dup_is_exists = kind.duplicate_ref_is_exists();
            let attempts = st.attempts[i];
            if self.cfg.sync.is_some() && kind == OpKind::Create {
                if let Some(why) = retry::sync_no_reply(proc_, a.description.as_deref()) {
                    let mut o = Outcome::new(Status::NoReply, attempts).with_error(why);
                    o.proc_ = Some(proc_.to_string());
                    st.out[i] = Some(with_obj_id(o, a.obj_id.as_deref()));
                    continue;
                }
            }
            let classify = if self.cfg.one_process {
                retry::classify_op_in_one_process
            } else {
                retry::classify_op
            };
            st.out[i] = match classify(dup_is_exists, proc_, a.description.as_deref()) {
                OpVerdict::Ok => Some(with_obj_id(
                    Outcome {
                        reply: a.data.map(Box::from),
                        ..Outcome::new(kind.success(), attempts)
                    },
                    a.obj_id.as_deref(),
                )),
                OpVerdict::Exists => Some(with_obj_id(
                    Outcome::new(Status::Exists, attempts),
                    a.obj_id.as_deref(),
                )),
                OpVerdict::Retry { reason, throttled } => {
                    if throttled {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                        st.throttled[i] += 1;
                        again.throttled += 1;
                    }
                    again.rows.push(i);
                    again.reason = reason;
                    None
                }
                OpVerdict::Reject { reason } => {
                    let mut o = Outcome::new(Status::Rejected, attempts).with_error(reason);
                    o.proc_ = Some(proc_.to_string());
                    Some(o)
                }
                OpVerdict::Fatal { reason } => {
                    self.set_fatal(reason);
                    None
                }
            };
        }
    }
}

/// A body refused as malformed: a lone row is rejected, a group is split in two and sent
/// again, at no cost to the rows' attempts.
fn split(st: &mut Settling<'_>, group: Vec<usize>, reason: String) {
    if group.len() == 1 {
        st.out[group[0]] =
            Some(Outcome::new(Status::Rejected, st.attempts[group[0]]).with_error(reason));
        return;
    }
    for &i in &group {
        st.attempts[i] -= 1;
    }
    let (a, b) = group.split_at(group.len() / 2);
    st.queue.push_front(b.to_vec());
    st.queue.push_front(a.to_vec());
}

fn with_obj_id(mut o: Outcome, obj_id: Option<&str>) -> Outcome {
    o.obj_id = obj_id.map(TaskId::new);
    o
}
