//! `--rate auto`: a controller that assumes nothing about how the server counts.
//!
//! It sees what any limiter shows a client: refusals (a 429 with or without Retry-After,
//! a 503 or per-op answer saying "RPS limit" / "too many requests"; not a bare 503, which a
//! fault on one request answers too), all passed in as throttled ops, and the rate the
//! server accepted over a horizon (`estimator.rs`). Phases:
//! - **startup**: the rate grows `startup_growth` times every round trip
//!   (`Tuning::startup_rtts`) while the sender keeps up with it, until the first refusal;
//! - **cut** (at a refusal of a request that left after the last cut and its cover): the
//!   rate found is what the server took over the horizon (or the rate, if less), and the
//!   rate becomes `cut` of it. One cut per overrun: refusals of requests in flight at the
//!   cut say nothing new; those of requests sent just after it (a window or a log still
//!   counting the overrun) pause the copy with one request in flight, doubling the pause
//!   until one is accepted, so a full window costs a request per pause and not a second's
//!   worth;
//! - **avoid**: back to `plateau` of the rate found in `regrow` seconds (concave), held
//!   for `hold`, then a convex probe, × exp(`probe` t²), so that a license other clients
//!   freed is found within seconds and crossing the old limit costs little. The next
//!   refusal cuts again.
//!
//! Copies of czload under one license behave as competing TCP flows under AIMD: all are
//! refused when the sum passes the limit, a copy sending more is refused sooner and more
//! often in a mild overrun, and each cut takes a share of its own rate, so the larger give
//! more back and the shares converge. This is botocore's adaptive retry mode (a CUBIC
//! rate, cut on throttling) with the cut taken from the accepted rate rather than the sent
//! one, and a plateau, since a flat license does not move as a network's capacity does.

use super::estimator::Estimator;
use super::tuning::TUNING;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Phase {
    Startup,
    Avoid,
}

/// The state of `--rate auto`. Times are this machine's clock, in seconds.
#[derive(Debug)]
pub(super) struct Auto {
    pub(super) phase: Phase,
    est: Estimator,
    /// The rate found at the last cut (the limit's share this copy got), for the summary
    /// and the next run's start.
    pub(super) found: Option<f64>,
    /// The first rate: startup's cap before a second has been counted.
    start: f64,
    /// When the last cut was, and the rate it set.
    cut_at: f64,
    cut_to: f64,
    /// The step under way: since when, the ops claimed in it, and whether the sender kept
    /// up with the rate in the last one.
    step_start: f64,
    step_ops: f64,
    keeping_up: bool,
    /// Refusals after a cut: one request in flight (since when), and the next pause.
    pub(super) probing: Option<f64>,
    pause: f64,
    /// The plateau's length now (`holding`).
    hold: f64,
    /// The rate since each change, for the last few seconds (`rate_at`).
    history: std::collections::VecDeque<(f64, f64)>,
}

impl Auto {
    pub(super) fn new(now: f64, start: f64) -> Auto {
        Auto {
            start,
            phase: Phase::Startup,
            est: Estimator::default(),
            found: None,
            cut_at: f64::NEG_INFINITY,
            cut_to: 0.0,
            step_start: now,
            step_ops: 0.0,
            keeping_up: true,
            probing: None,
            pause: TUNING.pause_min,
            history: std::collections::VecDeque::new(),
            hold: TUNING.hold,
        }
    }

    /// Notes the rate set at `now`.
    fn note(&mut self, now: f64, rate: f64) {
        if self.history.back().is_some_and(|&(_, r)| r == rate) {
            return;
        }
        self.history.push_back((now, rate));
        while self.history.len() > 2 && self.history[1].0 < now - 8.0 {
            self.history.pop_front();
        }
    }

    /// How long avoid holds at the plateau before it probes: `hold`, twice that each
    /// time a cut finds the limit where the last one did (up to `hold_max`).
    fn holding(&self) -> f64 {
        self.hold
    }

    /// The rate paced at `t`, if known.
    fn rate_at(&self, t: f64) -> Option<f64> {
        self.history.iter().rev().find(|h| h.0 <= t).map(|h| h.1)
    }

    /// A start known from the last run (or `--rate auto:N`): taken as found, held at the
    /// plateau and probed from there, as after a cut.
    pub(super) fn known(now: f64, rate: f64) -> Auto {
        let mut a = Auto::new(now, rate);
        a.phase = Phase::Avoid;
        a.found = Some(rate);
        a.cut_at = now - TUNING.regrow;
        a.cut_to = rate * TUNING.plateau;
        a
    }

    pub(super) fn claimed(&mut self, n: f64) {
        self.step_ops += n;
    }

    /// Moves the rate on with time: startup's doubling, avoid's regrowth and probe.
    pub(super) fn tick(&mut self, now: f64, rate: &mut f64, srtt: f64, batch: f64) {
        let step = (TUNING.startup_rtts * srtt).max(TUNING.startup_step);
        let took = now - self.step_start;
        let stepped = took >= step;
        if stepped {
            // Requests come whole: one request short is still keeping up.
            self.keeping_up = self.step_ops + batch >= TUNING.kept_up * *rate * took;
            self.step_start = now;
            self.step_ops = 0.0;
        }
        let to = match self.phase {
            Phase::Startup if stepped && self.keeping_up => {
                // A limit counted per second refuses only once a second's worth has gone,
                // when the rate may be several times it: at most `startup_cap` times the
                // most a second took keeps what that costs to a round trip at that.
                let cap = TUNING.startup_cap * self.est.best_second.max(self.start);
                (*rate * TUNING.startup_growth).min(cap).max(*rate)
            }
            Phase::Startup => *rate,
            Phase::Avoid => {
                let to = self.target(now);
                if to > *rate && !self.keeping_up {
                    *rate
                } else {
                    to.min(*rate * 2.0)
                }
            }
        };
        *rate = to.clamp(TUNING.min_rate, TUNING.max_rate);
        self.note(now, *rate);
    }

    /// Avoid's rate `t` seconds after the cut: concave back to the plateau, held, convex.
    fn target(&self, now: f64) -> f64 {
        let found = self.found.unwrap_or(self.cut_to);
        let w = found * TUNING.plateau;
        let t = now - self.cut_at;
        if t < TUNING.regrow {
            let gap = (w - self.cut_to).max(0.0);
            w - gap * (1.0 - t / TUNING.regrow).powi(3)
        } else if t < TUNING.regrow + self.holding() {
            w
        } else {
            let p = t - TUNING.regrow - self.holding();
            w * (TUNING.probe * p * p).min(20.0).exp()
        }
    }

    /// Takes in an answer to a request sent at `sent`: gives a pause for the copy, if any.
    pub(super) fn answer(
        &mut self,
        now: f64,
        sent: f64,
        (ok, throttled): (f64, f64),
        srtt: f64,
        rate: &mut f64,
    ) -> Option<f64> {
        self.est.record(sent, ok);
        if throttled == 0.0 {
            if self.probing.is_some_and(|p| sent >= p) && ok > 0.0 {
                self.probing = None;
                self.pause = TUNING.pause_min;
            }
            return None;
        }
        if sent < self.cut_at {
            // In flight at the cut: sent at the rate before it.
            return None;
        }
        if sent < self.cut_at + TUNING.cover.max(srtt) {
            // The overrun the cut answered, still counted: wait it out, one at a time.
            // Only a request sent since the last pause says it is not over yet.
            if self.probing.is_some_and(|since| sent < since) {
                return None;
            }
            let p = self.pause;
            self.pause = (p * 2.0).min(TUNING.pause_max);
            self.probing = Some(now + p);
            return Some(p);
        }
        let horizon = TUNING.horizon.max(2.0 * srtt);
        let took = self.est.accepted_rate(sent, horizon);
        // A limit that refuses a load that never ran above it is no limit of a rate, so
        // it is at most the rate the refused request left at (startup's rate a few steps
        // back, below the rate by then). Early, with too little history, half of that.
        let then = self.rate_at(sent).unwrap_or(*rate).min(*rate);
        let found = took.map_or(then / 2.0, |t| t.min(then));
        tracing::debug!("throttled at {rate:.0} ops/s: the server took {found:.0}/s");
        if std::env::var("CZDBG").is_ok() {
            eprintln!(
                "cut at {now:.3} sent {sent:.3} rate {rate:.0} found {found:.0} took {took:?}"
            );
        }
        // A license seldom moves: found where it was, the next probe waits longer.
        let same = self
            .found
            .is_some_and(|f| (found - f).abs() <= TUNING.same * f);
        self.hold = if same {
            (self.hold * 2.0).min(TUNING.hold_max)
        } else {
            TUNING.hold
        };
        self.found = Some(found.max(TUNING.min_rate));
        // Startup's overrun is measured over a second that was still climbing: deeper.
        let cut = if self.phase == Phase::Startup {
            TUNING.exit_cut
        } else {
            TUNING.cut
        };
        self.cut_to = found * cut;
        self.cut_at = now;
        self.phase = Phase::Avoid;
        *rate = self.cut_to.clamp(TUNING.min_rate, TUNING.max_rate);
        self.note(now, *rate);
        None
    }
}
