//! `--rate auto`'s phases: startup, measure, climb, hold; what each does with an answer.
//!
//! Written for the usual case, a flat license rate counted per second (docs/protocol.md,
//! "Limits and overload"), whatever the shape of the server's count (a fixed second, a
//! sliding window, a token bucket):
//! - startup, until the first throttling answer (what the first throttled second costs is
//!   the rate then times a round trip):
//!   - near (under `Tuning::far`), the rate doubles every ten round trips while the sender
//!     keeps up, within a few times what went through lately (`startup_step`);
//!   - far, it is taken at every answer and request, within `far_cap` times the most the
//!     server took in one second of its clock (`far_startup`);
//! - measure: a throttled second is one in which the server took all it would, so the ops
//!   it accepted in that second (counted by when the server saw them: sent + half the
//!   round trip, on this machine's clock) are its limit. Everyone pauses to the end of that
//!   second, and once its last answers are in, the rate becomes `hold_share` of it;
//! - hold: that rate, plus 1% every `probe` without throttling, so that a limit that grew
//!   is found again; the next throttling measures anew.
//!
//! A bucket that starts full accepts more than its rate in the first throttled second; the
//! rate then found is too high, and the next throttled second gives the right one.

use super::estimator::count_in;
use super::tuning::TUNING;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Far startup's cap, `far_cap` times the most the server took in a second: 4 at 75 ms,
/// 3 at 100 ms, 2.5 from 120 ms. What an overshoot costs is the rate then times a round
/// trip, up to this many times the limit times the round trip.
pub(super) fn far_cap(srtt: f64) -> f64 {
    (TUNING.cap_scale / srtt.max(1e-6)).clamp(TUNING.far_cap.0, TUNING.far_cap.1)
}

/// Startup's cap for a server `srtt` seconds away, below `far`: 16 times what went through
/// lately on a near one, 6 at 50 ms.
fn startup_cap(srtt: f64) -> f64 {
    (TUNING.cap_scale / srtt.max(1e-6)).clamp(TUNING.startup_cap.0, TUNING.startup_cap.1)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Phase {
    Startup,
    /// Waiting for the last answers of this throttled second (server time, whole seconds);
    /// when in it the first refusal came (server time, seconds), and the rate then.
    Measure(u64, f64, f64),
    /// After a measure that only gave a floor: 10% more every step until throttled.
    Climb,
    Hold,
}

#[derive(Debug)]
pub(super) struct Auto {
    pub(super) phase: Phase,
    /// `ControlConfig::share`.
    pub(super) share: f64,
    pub(super) step_start: Instant,
    pub(super) grown: Instant,
    /// Ops claimed since `step_start`: whether the rate, or something else, bound.
    pub(super) step_ops: f64,
    /// Ops accepted per second of server time, for the last few seconds.
    pub(super) seconds: VecDeque<(u64, f64)>,
    /// Ops sent per second of server time they land in (sent + half the round trip).
    pub(super) sent: VecDeque<(u64, f64)>,
    /// Ops seen near the turn of the second before or after, per second (`count`).
    pub(super) edges: VecDeque<(u64, f64)>,
    /// The last limit measured, for the summary.
    pub(super) found: Option<f64>,
    /// How long `hold` goes unthrottled before it tries more...
    pub(super) probe: Duration,
    /// ... and how much more (1%, or doubling up to `TUNING.quick_probe_max` after the first
    /// measure, while `quick`).
    pub(super) probe_step: f64,
    pub(super) quick: bool,
    /// How far below a rate held for a second the last refusal of it set the limit.
    pub(super) backoff: f64,
    /// The most ops sent into one server second (`claim`), once a throttled second has
    /// shown the limit: what it took, then the limit measured; unbounded in startup.
    pub(super) budget: f64,
    /// When the run started (this machine's clock, seconds since the epoch).
    pub(super) started: f64,
}

impl Auto {
    /// Whether the sender claimed what `rate` allowed over `took` (less one request, as
    /// requests come whole): if not, something else binds (the in-flight ceiling, the
    /// input, the CPU) and a higher rate proves nothing.
    pub(super) fn kept_up(&self, rate: f64, took: Duration, batch: f64) -> bool {
        self.step_ops + batch >= 0.8 * rate * took.as_secs_f64()
    }

    pub(super) fn set(&mut self, now: Instant, rate: &mut f64, to: f64) {
        *rate = to.clamp(TUNING.min_rate, TUNING.max_rate);
        self.step_start = now;
        self.step_ops = 0.0;
    }

    /// A request the server saw at `seen` (its clock, seconds) was throttled: measure
    /// that second, and pause everyone until the measure is in (the end of that second
    /// and a round trip): sending into that second can only be refused, and sending into
    /// the next before the limit is known may overrun it too.
    pub(super) fn throttled(
        &mut self,
        now: Instant,
        rate: &mut f64,
        seen: f64,
        wall_now: f64,
        srtt: f64,
    ) -> Option<Duration> {
        let sec = seen as u64;
        match self.phase {
            Phase::Measure(m, ..) if sec <= m => {}
            _ => {
                // The rate bounds the limit from above only when it had held for the
                // whole second before the refused request (and its round trip): a rate
                // just set (startup's doubling, a probe, the rate right after a pause)
                // says nothing of what the server takes, and a refusal then comes from
                // what was sent before it.
                let steady = now.saturating_duration_since(self.step_start).as_secs_f64()
                    >= 1.0 + 2.0 * srtt;
                let at = if steady { *rate } else { f64::INFINITY };
                tracing::debug!("throttled at {rate:.0} ops/s: measuring second {sec}");
                self.phase = Phase::Measure(sec, seen, at);
                // Until the measure is in, the next second must not be throttled too:
                // 90% of what the server took in a second so far (a window never takes
                // more than its limit in one), or half the rate if that says nothing.
                let took = self
                    .accepted_in(sec)
                    .max(self.accepted_in(sec.saturating_sub(1)));
                let interim = if took > 0.0 {
                    (0.9 * took).min(*rate / 2.0)
                } else {
                    *rate / 2.0
                };
                if took > 0.0 {
                    self.budget = self.budget.min(took);
                }
                self.set(now, rate, interim);
            }
        }
        // Sending resumes so that the server sees it in the next second (sent half a round
        // trip, and 20 ms, before that second): pausing on to the measure's end (a round
        // trip into the next second) cost a fifth of a second's license at 200 ms.
        let end = (sec + 1) as f64 - srtt / 2.0 + TUNING.resume_margin - wall_now;
        (end > 0.0).then(|| Duration::from_secs_f64(end.min(1.0)))
    }

    /// Moves on when the current phase has done its part.
    pub(super) fn advance(
        &mut self,
        now: Instant,
        rate: &mut f64,
        wall_now: f64,
        srtt: f64,
        batch: f64,
    ) {
        let took = now.saturating_duration_since(self.step_start);
        match self.phase {
            Phase::Startup if srtt >= TUNING.far => {
                let to = self.far_startup(*rate, now, wall_now, srtt, batch);
                self.grown = now;
                if to != *rate {
                    self.set(now, rate, to);
                }
            }
            Phase::Startup => {
                // Near (under `FAR`), ten round trips are at least one.
                let step = (10.0 * srtt).clamp(TUNING.startup_step.0, TUNING.startup_step.1);
                if took.as_secs_f64() >= step {
                    let to = self.startup_step(*rate, took, wall_now, srtt, batch);
                    self.set(now, rate, to);
                }
            }
            Phase::Measure(sec, seen, at) => {
                // Every request the server saw in that second has been answered.
                if wall_now >= (sec + 1) as f64 + srtt {
                    self.measured(now, rate, (sec, seen, at), batch);
                }
            }
            Phase::Climb => {
                if took >= TUNING.climb_step.max(Duration::from_secs_f64(2.0 * srtt)) {
                    self.grow(now, rate, took, batch, TUNING.climb);
                }
            }
            Phase::Hold => {
                if took >= self.probe {
                    self.backoff = 0.0;
                    self.grow(now, rate, took, batch, 1.0 + self.probe_step);
                    if self.quick {
                        self.probe_step = (self.probe_step * 2.0).min(TUNING.quick_probe_max);
                    }
                }
            }
        }
    }

    /// Startup's rate on a far server (`FAR` and more), taken at every answer and request:
    /// at most four times the rate a round trip before, and at most `far_cap` times the
    /// most the server is known to have taken in one second of its clock: a whole second,
    /// or the answered part of one under way (a limit counted per second is at least
    /// that, whatever its shape), or the start's rate before either says more.
    ///
    /// Why this bound: a limit counted per second refuses only once a second's worth has
    /// gone, and everything sent in the round trip before the first refusal comes back is
    /// refused too. So the first throttled second costs the rate then times a round trip:
    /// capped at `far_cap` times a count the limit is at least, at most `far_cap` × limit
    /// × round trip. Why at every answer: in steps, once a whole second was counted, the
    /// rate took 6 s to reach 20,000/s at 200 ms (0.81 to 0.85 of the limit over 30 s on
    /// benches/grid.sh); following the second under way, it grows some three times a
    /// second (3.5 s to 20,000/s in simulation, against 6.3 s before).
    ///
    /// Until the ops sent into the second they land in reach the most taken in a whole
    /// one, the cap is twice that: a limit counted per wall-clock second cannot refuse
    /// them, and without it the rate stood still for the first part of every second,
    /// until the second's count passed the last one's (0.89 of the limit at 200 ms /
    /// 20,000 in simulation, 0.91 with it). A limit counted otherwise (a sliding window,
    /// a bucket) can, and pays at most twice the overshoot there.
    pub(super) fn far_startup(
        &self,
        rate: f64,
        now: Instant,
        wall_now: f64,
        srtt: f64,
        batch: f64,
    ) -> f64 {
        let dt = now.saturating_duration_since(self.grown).as_secs_f64();
        // Answers come half a round trip after the server saw their requests: what it
        // took is known up to then.
        let known = wall_now - srtt / 2.0;
        // Before a count says more, the start's rate stands for one (startup has no other
        // guess: at 200 ms, the first second's count is in only after some 0.8 s).
        let start = TUNING.start_requests * batch * self.share;
        let most = |within: f64| {
            self.seconds
                .iter()
                .filter(|&&(s, _)| s as f64 + within <= known)
                .map(|&(_, n)| n)
                .fold(start, f64::max)
        };
        let (whole, any) = (most(1.0), most(0.0));
        let lands = (wall_now + srtt / 2.0) as u64;
        let safe = if count_in(&self.sent, lands) < whole {
            2.0
        } else {
            1.0
        };
        (rate * 4f64.powf(dt / srtt)).min(safe * far_cap(srtt) * any)
    }

    /// Startup's next rate on a near server: double, within a few times what went through.
    pub(super) fn startup_step(
        &self,
        rate: f64,
        took: Duration,
        wall_now: f64,
        srtt: f64,
        batch: f64,
    ) -> f64 {
        // Whether the sender kept up with the rate: if not, something else binds (the
        // in-flight ceiling, the input, the CPU) and more proves nothing.
        let kept_up = self.kept_up(rate, took, batch);
        // A limit counted per second refuses only once a second's worth has gone, so the
        // first refusal can come at many times the limit, and everything sent in the round
        // trip before it is refused too. No more than a few times the rate that went
        // through over the last ten round trips (`through`) keeps that overshoot small.
        let start = TUNING.start_requests * batch * self.share;
        // Answers come half a round trip after the server saw their requests: what it
        // took is known up to then.
        let known = wall_now - srtt / 2.0;
        let through = self.through(known, srtt);
        let cap = startup_cap(srtt) * through.max(start);
        tracing::debug!(
            "startup at {rate:.0} ops/s: {through:.0} went through, cap {cap:.0}, kept up: {kept_up}"
        );
        if kept_up {
            (rate * 2.0).min(cap).max(rate)
        } else {
            rate
        }
    }

    /// The throttled second `sec` (first refused at `seen`, at a rate held for a second,
    /// `at`, or infinity) is over and answered: its count is the limit.
    pub(super) fn measured(
        &mut self,
        now: Instant,
        rate: &mut f64,
        (sec, seen, at): (u64, f64, f64),
        batch: f64,
    ) {
        // A server counting per wall-clock second took its limit in that second. One
        // counting otherwise (a bucket drained just before) may have taken less there, and
        // the pause cut the rest; but over the second before the first refusal it took at
        // least its limit, and a second counted per wall clock never twice its limit. Half
        // that is a floor, and from the floor the rate climbs until throttled again.
        // The second before went through unthrottled: the limit is at least what it took
        // (a throttled second counted short, its answers late behind a busy CPU, must not
        // set the rate below that).
        let mut aligned = self
            .accepted_in(sec)
            .max(self.accepted_in(sec.saturating_sub(1)));
        // A second of few requests is counted a request short by one placed in the next
        // second (20% at 500/s), and a limit found short is held for the run (a probe adds
        // 1% in 10 s), while one found long is throttled and measured again at once: those
        // near either turn of the second count in.
        let mut this = self.accepted_in(sec);
        if this < TUNING.few * batch {
            this += count_in(&self.edges, sec);
            aligned = aligned.max(this);
        }
        // A limit counted per wall-clock second took all it would in the throttled
        // second, so more than in the unthrottled one before it. Less says it counts
        // otherwise (a sliding window still counting startup's overshoot, a bucket it
        // drained), and this measure is short.
        let short = this < self.accepted_in(sec.saturating_sub(1));
        let floor = self.accepted_since(seen - 1.0, seen, f64::INFINITY) / 2.0;
        let mut limit = aligned.max(floor);
        // Throttled again at a rate held for a second: the limit was found again.
        let again = self.found.is_some() && at.is_finite();
        if again {
            // The limit is below `at`. A second placed a little off the server's (the
            // round trip is not split evenly) counts a little more or less than the limit;
            // between the two, the middle.
            limit = if limit < at {
                self.backoff = 0.0;
                (limit + at) / 2.0
            } else {
                // Refused at a rate its seconds did take: a limit counted otherwise than
                // per wall-clock second (a sliding window's estimate, lumpy with 100-op
                // requests at 500/s, refused 495/s every 2 s, and 1% less each time
                // took the whole run). Below it by 2%, then twice as far each time.
                self.backoff = (self.backoff * 2.0).clamp(0.02, 0.16);
                at * (1.0 - self.backoff)
            };
        }
        // The first measure, from startup's overshoot, is checked by quick probes; one
        // that found the limit where the last did (or a rate held for a second bounds it)
        // is probed again after a minute.
        let same = self
            .found
            .is_some_and(|f| (limit - f).abs() <= 0.02 * f.max(1.0));
        self.quick = self.found.is_none() && short;
        self.probe_step = 0.01;
        self.probe = if self.quick {
            TUNING.climb_step
        } else if again || same {
            TUNING.probe_again
        } else {
            TUNING.probe
        };
        self.phase = if floor > aligned {
            Phase::Climb
        } else {
            Phase::Hold
        };
        if limit > 0.0 {
            self.budget = limit;
            self.found = Some(limit);
            tracing::debug!("the server took {limit:.0} ops in a throttled second");
            self.set(now, rate, limit * TUNING.hold_share);
        } else {
            // Nothing went through in that second: back off and measure again.
            self.set(now, rate, *rate / 2.0);
        }
    }

    /// Climb and hold's step: `factor` times the rate if the sender kept up with it.
    pub(super) fn grow(
        &mut self,
        now: Instant,
        rate: &mut f64,
        took: Duration,
        batch: f64,
        factor: f64,
    ) {
        let to = if self.kept_up(*rate, took, batch) {
            *rate * factor
        } else {
            *rate
        };
        self.set(now, rate, to);
    }
}
