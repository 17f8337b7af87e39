//! Request bodies -> outcomes, over HTTP.
//!
//! In: `Batch`es. Out: one `Outcome` per row (or none, for rows a stop left unsettled).
//! A bounded number of requests in flight, a rate limit counted in ops, a fresh timestamp
//! and signature on every attempt, retries of only the ops that need them with
//! exponential backoff and full jitter, `Retry-After` as a pause for every sender, and a
//! stop of the whole run on authentication failures. What to do with each answer is
//! decided by the pure functions of `retry.rs`.

use crate::answer::{self, MaybeOp, OpAnswer};
use crate::batch::Batch;
use crate::outcome::{Outcome, Status, TaskId};
use crate::retry::{self, Answer, OpVerdict, Transport, Verdict};
use crate::sign::{self, Secret};
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore};

/// Settings of the sender.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Base URL without a trailing slash.
    pub base: String,
    pub login: String,
    pub secret: Secret,
    pub concurrency: usize,
    pub rate: Rate,
    /// Largest op count of a request (for the rate limiter's burst).
    pub batch_size: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_retry_time: Duration,
    pub insecure: bool,
    pub is_create: bool,
    /// Backoff: first delay and cap.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

/// The rate limit, in tasks (ops) per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Unlimited,
    Fixed(u32),
    /// Find the server's limit: AIMD on throttling answers (see `Aimd`).
    Auto,
}

/// `--rate auto`: additive increase, multiplicative decrease, as TCP does for the same
/// problem (a capacity known only through refusals). It starts at `START` ops/s and
/// doubles every second until the first throttling answer (slow start), then halves.
/// After that it falls to 85% on throttling, at most once a second (refusals of requests
/// already in flight at the old rate must not count twice), and grows after each second
/// without throttling: by 5% while below 90% of the rate that was last throttled, by 1%
/// above it, so that it creeps up on the limit instead of hitting it every few seconds
/// (each hit costs a `Retry-After` pause for every sender).
pub struct Aimd {
    state: Mutex<AimdState>,
}

struct AimdState {
    rate: f64,
    next: Instant,
    last_increase: Instant,
    last_decrease: Option<Instant>,
    /// The rate at the last throttling answer.
    ceiling: Option<f64>,
}

impl Aimd {
    pub const START: f64 = 200.0;
    const MIN: f64 = 1.0;
    const MAX: f64 = 1_000_000.0;

    pub fn new() -> Aimd {
        let now = Instant::now();
        Aimd {
            state: Mutex::new(AimdState {
                rate: Self::START,
                next: now,
                last_increase: now,
                last_decrease: None,
                ceiling: None,
            }),
        }
    }

    /// Claims the next send slot for `n` ops, or says how long to wait for it. A slot is
    /// claimed only when it is due, so a change of rate applies to every later request
    /// (slots booked in advance would keep the old spacing).
    fn try_claim(&self, n: usize) -> Option<Duration> {
        let Ok(mut s) = self.state.lock() else {
            return None;
        };
        let now = Instant::now();
        if s.next > now {
            return Some(s.next - now);
        }
        s.next = now + Duration::from_secs_f64(n as f64 / s.rate);
        None
    }

    pub fn on_success(&self) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            let calm = s
                .last_decrease
                .is_none_or(|d| now.duration_since(d) >= Duration::from_secs(1));
            if calm && now.duration_since(s.last_increase) >= Duration::from_secs(1) {
                let factor = match s.ceiling {
                    None => 2.0,
                    Some(c) if s.rate < 0.9 * c => 1.05,
                    Some(_) => 1.01,
                };
                s.rate = (s.rate * factor).min(Self::MAX);
                s.last_increase = now;
                tracing::debug!("no throttling for a second: rate now {:.0} ops/s", s.rate);
            }
        }
    }

    pub fn on_throttle(&self) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            if s.last_decrease
                .is_none_or(|d| now.duration_since(d) >= Duration::from_secs(1))
            {
                let factor = if s.ceiling.is_none() { 0.5 } else { 0.85 };
                s.ceiling = Some(s.rate);
                s.rate = (s.rate * factor).max(Self::MIN);
                s.last_decrease = Some(now);
                s.last_increase = now;
                tracing::debug!("throttled: rate now {:.0} ops/s", s.rate);
            }
        }
    }
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd::new()
    }
}

/// Counters the summary reads.
#[derive(Debug, Default)]
pub struct SendStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

impl SendStats {
    pub fn latencies(&self) -> Vec<u32> {
        self.latencies_us
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

type Limiter = governor::DefaultDirectRateLimiter;

/// State shared by all requests of a run.
pub struct Sender {
    cfg: SendConfig,
    client: reqwest::Client,
    inflight: Arc<Semaphore>,
    limiter: Option<Limiter>,
    pub aimd: Option<Aimd>,
    pause_until: Mutex<Option<Instant>>,
    stop: AtomicBool,
    stopped: Notify,
    fatal: Mutex<Option<String>>,
    pub stats: SendStats,
}

/// The largest answer read; a bigger one is treated as unreadable (and retried).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// One attempt's result, before classification.
enum Reply {
    Transport(Transport, String),
    Http {
        status: u16,
        retry_after: Option<Duration>,
        location: Option<String>,
        body: Option<Bytes>,
    },
}

impl Sender {
    pub fn new(cfg: SendConfig) -> crate::Result<Sender> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(cfg.concurrency.max(1) * 2)
            .tcp_nodelay(true)
            // A POST redirected becomes a GET elsewhere: never follow, report it.
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(cfg.insecure)
            .user_agent(concat!("czload/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Other(format!("cannot build the HTTP client: {e}")))?;
        let fixed = match cfg.rate {
            Rate::Fixed(r) => Some(r),
            _ => None,
        };
        let limiter = fixed.map(|r| {
            let r = NonZeroU32::new(r.max(1)).expect("max(1)");
            // The burst holds one full request (a smaller one could never admit a batch)
            // plus 1% of a second's worth: each wait wakes a fraction of a millisecond
            // late, and with no slack that time is lost for good (the rate came out 2.2%
            // low at 5000/s); 1% more in the first second stays within a license limit
            // (0 throttled against a sandbox limit equal to --rate, benches/rate.sh).
            let burst =
                NonZeroU32::new((cfg.batch_size as u32).max(1) + r.get() / 100).expect("max(1)");
            governor::RateLimiter::direct(governor::Quota::per_second(r).allow_burst(burst))
        });
        Ok(Sender {
            inflight: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            client,
            limiter,
            aimd: (cfg.rate == Rate::Auto).then(Aimd::new),
            pause_until: Mutex::new(None),
            stop: AtomicBool::new(false),
            stopped: Notify::new(),
            fatal: Mutex::new(None),
            stats: SendStats::default(),
            cfg,
        })
    }

    /// Stops every sender before its next attempt; requests in flight finish.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
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
        // `notify_waiters` wakes only futures that exist: create ours, then look at the
        // flag, so a stop that came just before is not slept through.
        let notified = self.stopped.notified();
        if self.is_stopped() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_stopped(),
            _ = notified => false,
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
        sign::write_url(url, &self.cfg.base, &self.cfg.login, ts, &sig);
    }

    /// One attempt: sign `body` with a fresh timestamp and post it.
    async fn attempt(
        &self,
        body: Bytes,
        n_ops: usize,
        url: &mut String,
    ) -> Option<(Reply, Duration)> {
        if !self.wait_pause().await {
            return None;
        }
        if let Some(l) = &self.limiter {
            let n = NonZeroU32::new(n_ops.max(1) as u32).expect("max(1)");
            // n never exceeds the burst (one full batch), so this cannot fail. A stop must
            // not wait for a slot: at a low rate that can take minutes.
            tokio::select! {
                _ = l.until_n_ready(n) => {}
                _ = self.wait_stopped() => return None,
            }
        }
        if let Some(a) = &self.aimd {
            while let Some(wait) = a.try_claim(n_ops) {
                if !self.sleep(wait).await {
                    return None;
                }
            }
        }
        let _permit = self.inflight.acquire().await.ok()?;
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
        let t0 = Instant::now();
        let reply = self.post(url, body).await;
        let took = t0.elapsed();
        if let Ok(mut l) = self.stats.latencies_us.lock() {
            l.push(took.as_micros().min(u32::MAX as u128) as u32);
        }
        Some((reply, took))
    }

    async fn post(&self, url: &str, body: Bytes) -> Reply {
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json; charset=utf8")
            .body(body)
            .send()
            .await;
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let detail = error_chain(&e);
                let kind = retry::transport_kind(e.is_timeout(), e.is_connect(), &detail);
                return Reply::Transport(kind, detail);
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(300).collect::<String>());
        let announced = resp.content_length().unwrap_or(0);
        if announced > MAX_ANSWER_BYTES as u64 {
            // Announced too large: not worth reading (and dropping `resp` closes it).
            return Reply::Http {
                status,
                retry_after,
                location,
                body: None,
            };
        }
        // An answer without a length is still read only up to the cap, chunk by chunk.
        let mut buf = Vec::with_capacity(announced as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if buf.len() + c.len() > MAX_ANSWER_BYTES {
                        return Reply::Http {
                            status,
                            retry_after,
                            location,
                            body: None,
                        };
                    }
                    buf.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => {
                    // The answer had begun: nothing here can be a connect or TLS failure.
                    let kind = if e.is_timeout() {
                        Transport::Timeout
                    } else {
                        Transport::Broken
                    };
                    return Reply::Transport(kind, error_chain(&e));
                }
            }
        }
        tracing::debug!(
            "answer HTTP {status}: {}",
            String::from_utf8_lossy(&buf[..buf.len().min(500)])
        );
        Reply::Http {
            status,
            retry_after,
            location,
            body: Some(Bytes::from(buf)),
        }
    }

    /// Settles every row of `batch`. `None` for a row means a stop left it unsettled.
    pub async fn process(&self, batch: &Batch) -> Vec<Option<Outcome>> {
        let n = batch.len();
        let mut out: Vec<Option<Outcome>> = vec![None; n];
        let mut attempts = vec![0u32; n];
        // The retry time counts from the first answer, not from the wait for a rate slot
        // or a connection before it, which at a low --rate can be long.
        let mut started: Option<Instant> = None;
        let mut url = String::with_capacity(self.cfg.base.len() + 96);
        // Groups of rows to send; a malformed-body refusal splits its group in two.
        let mut queue: std::collections::VecDeque<Vec<usize>> = std::collections::VecDeque::new();
        queue.push_back((0..n).collect());
        let mut round = 0u32;
        while let Some(group) = queue.pop_front() {
            if self.is_stopped() {
                break;
            }
            for &i in &group {
                attempts[i] += 1;
            }
            if group.iter().any(|&i| attempts[i] > 1) {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let body = batch.body_for(&group);
            let Some((reply, _)) = self.attempt(body, group.len(), &mut url).await else {
                // Stopped before sending: these rows were not attempted after all.
                for &i in &group {
                    attempts[i] -= 1;
                }
                break;
            };
            let started = *started.get_or_insert_with(Instant::now);
            let mut again: Vec<usize> = Vec::new();
            let mut again_reason = String::new();
            let verdict = match &reply {
                Reply::Transport(t, msg) => retry::classify_transport(*t, msg),
                Reply::Http {
                    status,
                    retry_after,
                    location,
                    body,
                } => {
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
                    let v = retry::classify_response(*status, *retry_after, &answer);
                    if v == Verdict::PerOp {
                        let ops = parsed.map(|p| p.ops).unwrap_or_default();
                        self.settle_ops(
                            batch,
                            &group,
                            ops,
                            &attempts,
                            &mut out,
                            &mut again,
                            &mut again_reason,
                        );
                    }
                    v
                }
            };
            match verdict {
                Verdict::PerOp => {}
                Verdict::Retry {
                    reason,
                    maybe_applied,
                    throttled,
                    pause,
                } => {
                    if throttled {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                        if let Some(a) = &self.aimd {
                            a.on_throttle();
                        }
                    }
                    if let Some(p) = pause {
                        self.pause_for(p);
                    }
                    tracing::debug!("retrying {} ops: {reason}", group.len());
                    for &i in &group {
                        if maybe_applied && batch.reference(i).is_none() {
                            // Without a ref a resend could create the task twice.
                            out[i] = Some(Outcome::new(Status::Ambiguous, attempts[i]).with_error(format!(
                                "{reason}; the task may or may not have been created, and without a ref it is not resent"
                            )));
                        } else {
                            again.push(i);
                        }
                    }
                    again_reason = reason;
                }
                Verdict::Split { reason } => {
                    if group.len() == 1 {
                        out[group[0]] = Some(
                            Outcome::new(Status::Rejected, attempts[group[0]]).with_error(reason),
                        );
                    } else {
                        let (a, b) = group.split_at(group.len() / 2);
                        // Splitting is not a failure of these rows: their budget is untouched.
                        for &i in &group {
                            attempts[i] -= 1;
                        }
                        queue.push_front(b.to_vec());
                        queue.push_front(a.to_vec());
                    }
                    continue;
                }
                Verdict::Fatal { reason } => {
                    self.set_fatal(reason);
                    break;
                }
            }
            if again.is_empty() {
                continue;
            }
            let over_time = started.elapsed() >= self.cfg.max_retry_time;
            let mut keep = Vec::with_capacity(again.len());
            for i in again {
                if attempts[i] >= self.cfg.max_attempts || over_time {
                    out[i] = Some(
                        Outcome::new(Status::Failed, attempts[i]).with_error(format!(
                            "{again_reason} (gave up after {} attempts)",
                            attempts[i]
                        )),
                    );
                } else {
                    keep.push(i);
                }
            }
            if !keep.is_empty() {
                if !self.sleep(self.backoff(round)).await {
                    break;
                }
                round += 1;
                queue.push_back(keep);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn settle_ops(
        &self,
        batch: &Batch,
        group: &[usize],
        ops: Vec<MaybeOp>,
        attempts: &[u32],
        out: &mut [Option<Outcome>],
        again: &mut Vec<usize>,
        again_reason: &mut String,
    ) {
        let mut any_throttled = false;
        // Match answers by op id (the server may reorder them); fall back to the ref. Ids
        // rise within a batch (the reader numbers rows in order), so an id finds its row
        // by binary search; the first answer for an id counts, unknown ids are ignored.
        debug_assert!(batch.rows.windows(2).all(|w| w[0].id < w[1].id));
        let mut answers: Vec<Option<OpAnswer>> = (0..batch.len()).map(|_| None).collect();
        let mut by_ref: HashMap<Cow<str>, OpAnswer> = HashMap::new();
        for a in ops {
            let MaybeOp::Op(a) = a else { continue };
            match a.id.as_deref().and_then(|v| v.parse::<u64>().ok()) {
                Some(id) => {
                    if let Ok(i) = batch.rows.binary_search_by_key(&id, |m| m.id) {
                        if answers[i].is_none() {
                            answers[i] = Some(a);
                        }
                    }
                }
                None => {
                    if let Some(r) = a.reference.clone() {
                        by_ref.entry(r).or_insert(a);
                    }
                }
            }
        }
        for &i in group {
            let a = answers[i]
                .take()
                .or_else(|| batch.reference(i).and_then(|r| by_ref.remove(r)));
            let Some(a) = a else {
                // Not answered: it may have been applied.
                if batch.reference(i).is_none() {
                    out[i] = Some(Outcome::new(Status::Ambiguous, attempts[i]).with_error(
                        "the answer did not mention this op; without a ref it is not resent",
                    ));
                } else {
                    again.push(i);
                    *again_reason = "the answer did not mention this op".into();
                }
                continue;
            };
            let proc_ = a.proc_.as_deref().unwrap_or("");
            match retry::classify_op(self.cfg.is_create, proc_, a.description.as_deref()) {
                OpVerdict::Ok => {
                    let mut o = Outcome::new(
                        if self.cfg.is_create {
                            Status::Created
                        } else {
                            Status::Modified
                        },
                        attempts[i],
                    );
                    o.obj_id = a.obj_id.as_deref().map(TaskId::new);
                    out[i] = Some(o);
                }
                OpVerdict::Exists => {
                    let mut o = Outcome::new(Status::Exists, attempts[i]);
                    o.obj_id = a.obj_id.as_deref().map(TaskId::new);
                    out[i] = Some(o);
                }
                OpVerdict::Retry { reason, throttled } => {
                    if throttled {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                        any_throttled = true;
                    }
                    again.push(i);
                    *again_reason = reason;
                }
                OpVerdict::Reject { reason } => {
                    let mut o = Outcome::new(Status::Rejected, attempts[i]).with_error(reason);
                    o.proc_ = Some(proc_.to_string());
                    out[i] = Some(o);
                }
                OpVerdict::Fatal { reason } => self.set_fatal(reason),
            }
        }
        if let Some(a) = &self.aimd {
            if any_throttled {
                a.on_throttle();
            } else {
                a.on_success();
            }
        }
    }
}

/// The error with its causes, which reqwest keeps apart ("error sending request" alone
/// says nothing).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Sender {
    /// Resolves once the run is stopped (fatal answer or Ctrl-C).
    pub async fn wait_stopped(&self) {
        loop {
            let notified = self.stopped.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}
