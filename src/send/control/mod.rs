//! Rate and concurrency control: when the next request may leave, and how many requests
//! may be in flight.
//!
//! In: each request's op count before it leaves (`claim`), and each answer after it
//! (`on_answer`: when the request left, how many of its ops went through and how many were
//! throttled, how long it took). Out: how long to wait before the next request, how many
//! requests may be in flight, with `--rate auto` the rate itself, and pauses for everyone.
//!
//! Every method takes the time as an argument: the sender passes tokio's clock, the tests
//! and the simulator (`sim.rs`) a virtual one, through the same code.
//!
//! - `pacer`: governor's GCRA at the rate of the moment (`--rate N`, or auto's);
//! - `inflight`: the requests in flight the rate needs (Little's law), and a shortfall;
//! - `estimator`: the ops the server accepted, per second of its clock;
//! - `phases`: `--rate auto`'s phases, what each does with an answer;
//! - `tuning`: every number the above are tuned by, each with the invariant it protects.

mod estimator;
mod inflight;
pub mod learned;
mod pacer;
mod phases;
#[cfg(test)]
mod sim;
mod tuning;

pub use inflight::Shortfall;
use pacer::Pacer;
use phases::Auto;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tuning::TUNING;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// No pacing: the in-flight limit alone bounds the load.
    Unlimited,
    /// This many ops per second.
    Fixed(u32),
    /// Find the server's limit and hold just under it.
    Auto,
}

/// Settings of the controller.
#[derive(Debug, Clone, Copy)]
pub struct ControlConfig {
    pub rate: Rate,
    /// This copy's share of the server's limit: 1, or 1/N with `--shard i/N`. With
    /// `--rate auto`, N copies start together at the rate one copy would start at, and a
    /// startup step is capped at the same share, so that N copies doubling at once do not
    /// overshoot N times further. The limit a copy then measures (the ops *it* got
    /// through in a throttled second, of a license the server counts for all copies) is
    /// already its share, so the share is not applied to it again. (A limiter shared
    /// through a store, such as Redis, would replace this guess: docs/architecture.md.)
    pub share: f64,
    /// `--concurrency N`: a fixed in-flight limit; `None` lets it follow the rate.
    pub concurrency: Option<usize>,
    /// `--max-concurrency`: the ceiling of an adaptive in-flight limit.
    pub max_concurrency: usize,
    /// Ops in a full request.
    pub batch_size: usize,
    /// `--rate auto`'s start, when one is known (`--rate auto:N`, or the last run's limit
    /// kept in the state directory): this copy's rate, and where it came from.
    pub start: Option<Start>,
}

/// Where `--rate auto` starts, other than from a few requests a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Start {
    /// This copy's rate, ops/s.
    pub rate: f64,
    pub from: StartFrom,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartFrom {
    /// `--rate auto:N`.
    Asked,
    /// The limit the last run found (`learned.rs`).
    Learned,
}

/// In-flight limit with no rate to follow, and the start of an adaptive one.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default `--max-concurrency`: 20,000 ops/s at 640 ms with 100 ops a request.
pub const DEFAULT_MAX_CONCURRENCY: usize = 128;

#[derive(Debug)]
struct State {
    /// Ops per second; `None` when unpaced.
    rate: Option<f64>,
    /// GCRA at `rate`, rebuilt when the rate changes (`claim`).
    pacer: Option<Pacer>,
    /// Smoothed answer time, in seconds.
    srtt: Option<f64>,
    /// The lowest answer time seen, in seconds: the round trip without queueing.
    min_rtt: f64,
    /// Smoothed ops per request.
    ops_per_request: f64,
    auto: Option<Auto>,
}

/// Rate and in-flight limit for one run; shared by every sender.
#[derive(Debug)]
pub struct Control {
    cfg: ControlConfig,
    /// This machine's clock (seconds since the Unix epoch) at `start`: server seconds are
    /// told apart on it.
    start: Instant,
    unix_at_start: f64,
    state: Mutex<State>,
}

impl Control {
    /// `unix` is this machine's clock at `now`, as time since the Unix epoch.
    pub fn new(cfg: ControlConfig, now: Instant, unix: Duration) -> Control {
        let batch = cfg.batch_size.max(1) as f64;
        let (rate, auto) = match cfg.rate {
            Rate::Unlimited => (None, None),
            Rate::Fixed(r) => (Some(f64::from(r.max(1))), None),
            Rate::Auto => match cfg.start {
                Some(s) => {
                    let r = s.rate.clamp(TUNING.min_rate, TUNING.max_rate);
                    (
                        Some(r * TUNING.plateau),
                        Some(Auto::known(unix.as_secs_f64(), r)),
                    )
                }
                None => {
                    let r = (TUNING.start_requests * batch * cfg.share.clamp(1e-6, 1.0))
                        .max(TUNING.min_rate);
                    (Some(r), Some(Auto::new(unix.as_secs_f64(), r)))
                }
            },
        };
        Control {
            cfg,
            start: now,
            unix_at_start: unix.as_secs_f64(),
            state: Mutex::new(State {
                rate,
                pacer: rate.map(|r| Pacer::new(r, cfg.batch_size, now)),
                srtt: None,
                min_rtt: f64::INFINITY,
                ops_per_request: batch,
                auto,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every unlock: a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This machine's clock at `t`, in seconds since the Unix epoch.
    fn wall(&self, t: Instant) -> f64 {
        self.unix_at_start + t.saturating_duration_since(self.start).as_secs_f64()
    }

    /// Claims the pacer for a request of `n` ops: `None` when it may leave now (the ops
    /// are then booked), or how long to wait before asking again. A slot is booked only
    /// when due, so a change of rate applies to every later request.
    pub fn claim(&self, now: Instant, n: usize) -> Option<Duration> {
        let mut s = self.lock();
        self.tick(&mut s, now);
        let rate = s.rate?;
        let n_ops = n.max(1);
        let batch = self.cfg.batch_size;
        let pacer = s.pacer.get_or_insert_with(|| Pacer::new(rate, batch, now));
        pacer.set_rate(rate, batch, now);
        if let Some(wait) = pacer.claim(now, n_ops, batch) {
            // `--rate auto` steps at least every `startup_step`: a wait of seconds at a
            // low start would hold the rate where it was until it ended.
            return Some(match s.auto {
                Some(_) => wait.min(Duration::from_secs_f64(TUNING.startup_step)),
                None => wait,
            });
        }
        if let Some(a) = &mut s.auto {
            a.claimed(n_ops as f64);
        }
        None
    }

    /// With `--rate auto`, moves the rate on with time (at every request and answer:
    /// at a few requests a second, answers come too seldom to step on alone).
    fn tick(&self, s: &mut State, now: Instant) {
        // Before the first answer the round trip is unknown: nothing to step on.
        let Some(srtt) = s.srtt else { return };
        let State { rate, auto, .. } = s;
        if let (Some(a), Some(r)) = (auto.as_mut(), rate.as_mut()) {
            a.tick(self.wall(now), r, srtt, self.cfg.batch_size.max(1) as f64);
        }
    }

    /// Takes in one answer: the request left at `sent`, carried `ok` ops that went through
    /// (or failed for reasons other than throttling) and `throttled` ops refused by a rate
    /// limit, and took `latency`. Gives a pause for every sender, when there is one.
    pub fn on_answer(
        &self,
        now: Instant,
        sent: Instant,
        ok: usize,
        throttled: usize,
        latency: Duration,
    ) -> Option<Duration> {
        let mut s = self.lock();
        let l = latency.as_secs_f64();
        let srtt = s.srtt.map_or(l, |x| x + (l - x) / 8.0);
        s.srtt = Some(srtt);
        s.min_rtt = s.min_rtt.min(l);
        let ops = (ok + throttled) as f64;
        if ops > 0.0 {
            s.ops_per_request += (ops - s.ops_per_request) / 16.0;
        }
        let (wall_now, wall_sent) = (self.wall(now), self.wall(sent));
        let State { rate, auto, .. } = &mut *s;
        let (Some(a), Some(r)) = (auto.as_mut(), rate.as_mut()) else {
            return None;
        };
        let pause = a.answer(wall_now, wall_sent, (ok as f64, throttled as f64), srtt, r);
        self.tick(&mut s, now);
        pause.map(Duration::from_secs_f64)
    }

    /// Whether a `Retry-After` pauses every sender, or only the request it refused. With
    /// `--rate auto` a pause of a second or less is what the controller's own pauses after
    /// a cut already do; a longer one (maintenance) holds everyone.
    pub fn pause_all(&self, pause: Duration) -> bool {
        self.cfg.rate != Rate::Auto || pause > Duration::from_secs(1)
    }

    /// The ops per second being paced at; `None` when unpaced.
    pub fn rate(&self) -> Option<f64> {
        self.lock().rate
    }

    /// With `--rate auto`: the limit last measured.
    pub fn limit_found(&self) -> Option<f64> {
        self.lock().auto.as_ref().and_then(|a| a.found)
    }
}

/// What the summary says of the rate: what was asked, and what the controller learnt.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateReport {
    /// `auto`, `unlimited`, or the number asked.
    pub asked: String,
    /// `--rate auto`: the rate the server accepted when it last refused (its limit, or this
    /// copy's share of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_found: Option<f64>,
    /// `--rate auto`: the rate being sent at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_rate: Option<f64>,
    /// A fixed rate that the in-flight ceiling could not hold, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<String>,
    /// `--rate auto`: where it started: `probe` (a few requests a second, climbing),
    /// `asked` (`--rate auto:N`) or `learned` (the last run's limit), and at what rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
}

impl RateReport {
    /// The summary's line about the rate, when there is something to say.
    pub fn line(&self) -> Option<String> {
        if let Some(s) = &self.shortfall {
            return Some(format!("rate: --rate {} not held: {s}", self.asked));
        }
        let start = match (self.start.as_deref(), self.started_at) {
            (Some("learned"), Some(r)) => format!(
                "started at {r:.0} tasks/s, the limit the last run found (kept in the state directory)"
            ),
            (Some("asked"), Some(r)) => format!("started at {r:.0} tasks/s (--rate auto:N)"),
            _ => "started from a few requests a second".to_string(),
        };
        match (self.asked.as_str(), self.limit_found, self.final_rate) {
            ("auto", Some(l), _) => Some(format!(
                "rate: auto {start}; the server's limit was found at {l:.0} tasks/s; to load at a set rate next time, pass --rate N (e.g. --rate {:.0})",
                l * TUNING.plateau
            )),
            ("auto", None, Some(r)) => Some(format!(
                "rate: auto {start}, never throttled (last paced at {r:.0} tasks/s)"
            )),
            _ => None,
        }
    }
}

impl Control {
    /// The rate's part of the summary.
    pub fn report(&self) -> RateReport {
        RateReport {
            asked: match self.cfg.rate {
                Rate::Auto => "auto".into(),
                Rate::Unlimited => "unlimited".into(),
                Rate::Fixed(n) => n.to_string(),
            },
            limit_found: self.limit_found(),
            final_rate: (self.cfg.rate == Rate::Auto).then(|| self.rate()).flatten(),
            started_at: self.cfg.start.map(|s| s.rate.round()),
            start: (self.cfg.rate == Rate::Auto).then(|| {
                match self.cfg.start.map(|s| s.from) {
                    Some(StartFrom::Asked) => "asked",
                    Some(StartFrom::Learned) => "learned",
                    None => "probe",
                }
                .to_string()
            }),
            shortfall: self.shortfall().map(|s| s.to_string()),
        }
    }
}
#[cfg(test)]
mod tests;
