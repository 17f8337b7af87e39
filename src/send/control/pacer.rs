//! The pacer: when the next request may leave at the rate of the moment.
//!
//! In: the rate (ops/s), and each request's op count with the time it asks (`claim`).
//! Out: `None` when it may leave now (its ops are booked), or how long to wait.
//!
//! The pacing itself is `governor`'s GCRA, on a clock the caller drives: every call takes
//! `now`, so the simulator (`sim.rs`) and the tests run it on virtual time, through the same
//! code a run uses. What governor lacks is wrapped here:
//! - a quota that changes (`--rate auto` moves the rate): the limiter is rebuilt, and the
//!   debt the old one carried (the ops booked ahead of now) is charged to the new one at
//!   the new rate, so a change never forgives a burst;
//! - ops of a fractional rate: the quota is one op per `1/rate` (nanoseconds), its burst
//!   one full request and `pacer_slack` of a second's worth (`Tuning::pacer_slack`).

use super::tuning::TUNING;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A clock that reads what the caller last set: nanoseconds since the pacer's origin.
#[derive(Debug, Clone, Default)]
struct Explicit(Arc<AtomicU64>);

impl Clock for Explicit {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, Explicit, StateInformationMiddleware>;

/// GCRA pacing at a rate that may change.
pub struct Pacer {
    origin: Instant,
    clock: Explicit,
    limiter: Limiter,
    rate: f64,
    /// Seconds of one op at `rate`, and the burst in ops.
    per_op: f64,
    burst: u32,
    /// When the last booking was made, and how far ahead of then the bookings ran.
    debt: (Instant, Duration),
    /// Debt that did not fit a new limiter's burst: nothing leaves before this, and then
    /// the limiter is charged a full burst (so it runs ahead by its slack, no more).
    hold_until: Option<Instant>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("debt", &self.debt)
            .finish()
    }
}

fn build(rate: f64, batch: usize, clock: &Explicit) -> (Limiter, f64, u32) {
    let per_op = 1.0 / rate;
    let burst = (batch.max(1) as f64 + rate * TUNING.pacer_slack).ceil();
    let burst = burst.min(f64::from(u32::MAX)) as u32;
    let period = Duration::from_secs_f64(per_op).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period)
        .expect("a period of at least a nanosecond")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"));
    (
        RateLimiter::direct_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>(),
        per_op,
        burst,
    )
}

impl Pacer {
    pub fn new(rate: f64, batch: usize, now: Instant) -> Pacer {
        let clock = Explicit::default();
        let (limiter, per_op, burst) = build(rate, batch, &clock);
        Pacer {
            origin: now,
            clock,
            limiter,
            rate,
            per_op,
            burst,
            debt: (now, Duration::ZERO),
            hold_until: None,
        }
    }

    fn set_clock(&self, now: Instant) {
        let ns = now.saturating_duration_since(self.origin).as_nanos();
        self.clock
            .0
            .store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Sets the rate: a new limiter, charged with the debt the old one still carries.
    pub fn set_rate(&mut self, rate: f64, batch: usize, now: Instant) {
        if rate == self.rate && batch as u32 <= self.burst {
            return;
        }
        let (at, ahead) = self.debt;
        let left = ahead.saturating_sub(now.saturating_duration_since(at));
        // The debt is ops booked and not yet due: owed at the new rate (a cut slows what
        // is booked at once, a rise speeds it; carried as time, one request booked at 38
        // ops/s held the next 2.6 s whatever the rate became).
        let owed = (left.as_secs_f64() / self.per_op).round();
        let (limiter, per_op, burst) = build(rate, batch, &self.clock);
        (self.limiter, self.rate, self.per_op, self.burst) = (limiter, rate, per_op, burst);
        self.set_clock(now);
        self.hold_until = None;
        if owed <= f64::from(burst) {
            self.charge(owed as u32);
        } else {
            let excess = (owed - f64::from(burst)) * per_op;
            self.hold_until = Some(now + Duration::from_secs_f64(excess));
        }
        self.debt = (now, Duration::from_secs_f64(owed * per_op));
    }

    /// Books `n` ops (at most a burst) at the clock's time, whatever the limiter says.
    fn charge(&self, n: u32) {
        if let Some(n) = NonZeroU32::new(n.min(self.burst)) {
            // At most the burst, into a limiter just made or just due: it conforms.
            let _ = self.limiter.check_n(n);
        }
    }

    /// Books `n` ops now if the rate allows, or says how long to wait before asking again.
    pub fn claim(&mut self, now: Instant, n: usize, batch: usize) -> Option<Duration> {
        if let Some(h) = self.hold_until {
            if h > now {
                return Some(h - now);
            }
            self.hold_until = None;
            self.set_clock(now);
            self.charge(self.burst);
        }
        if n > self.burst as usize {
            self.set_rate(self.rate, n, now);
        }
        let n = NonZeroU32::new(n.max(1) as u32).expect("at least one");
        self.set_clock(now);
        match self.limiter.check_n(n) {
            Ok(Ok(state)) => {
                let used = self.burst - state.remaining_burst_capacity();
                self.debt = (now, Duration::from_secs_f64(f64::from(used) * self.per_op));
                None
            }
            Ok(Err(not_until)) => Some(
                not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_micros(1)),
            ),
            // The burst was made at least `n` above.
            Err(_) => {
                self.set_rate(self.rate, batch.max(n.get() as usize), now);
                Some(Duration::from_micros(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paces `rate` for `secs` with requests of `n`, asking again when told: the ops sent.
    fn run(p: &mut Pacer, t0: Instant, from: f64, secs: f64, n: usize) -> usize {
        let mut now = t0 + Duration::from_secs_f64(from);
        let end = t0 + Duration::from_secs_f64(from + secs);
        let mut sent = 0;
        while now < end {
            match p.claim(now, n, 100) {
                None => sent += n,
                Some(w) => now += w,
            }
        }
        sent
    }

    #[test]
    fn a_rate_is_held_and_a_change_keeps_the_debt() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000.0, 100, t0);
        let sent = run(&mut p, t0, 0.0, 10.0, 100);
        assert!((10_000..=10_200).contains(&sent), "{sent}");
        // Ten times the rate: the debt of the last bookings at 1,000/s (its burst, 110
        // ops) is not forgiven but owed at the new rate, so the first second at 10,000/s
        // sends that second's worth and the new burst (200 ops) less the debt.
        p.set_rate(10_000.0, 100, t0 + Duration::from_secs(10));
        let sent = run(&mut p, t0, 10.0, 1.0, 100);
        assert!((9_900..=10_300).contains(&sent), "{sent}");
        // Down to 100/s: one request a second.
        p.set_rate(100.0, 100, t0 + Duration::from_secs(11));
        let sent = run(&mut p, t0, 11.0, 10.0, 100);
        assert!((900..=1_100).contains(&sent), "{sent}");
    }
}
