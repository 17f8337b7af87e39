//! In-flight sizing: how many requests may be out at once.
//!
//! The rate paces requests; the in-flight limit only has to be large enough for the rate.
//! Little's law ties the two: holding R ops/s when an answer takes L seconds and a request
//! carries B ops needs R·L/B requests in flight. So the limit follows the measured latency,
//! up to `--max-concurrency`, instead of silently capping the rate (a fixed four requests of
//! 100 ops at 100 ms can never pass 4,000 ops/s). When even the ceiling cannot hold the
//! rate, `shortfall` says so and why.

use super::tuning::TUNING;
use super::{Control, Rate, DEFAULT_CONCURRENCY};
use std::time::Duration;

/// Why the asked rate is not being held.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    pub rate: f64,
    pub latency: Duration,
    pub needed: usize,
    pub ceiling: usize,
    pub holdable: f64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} tasks/s at {} ms a request needs {} requests in flight, over --max-concurrency {}: at most about {:.0} tasks/s (raise --max-concurrency or --batch-size)",
            self.rate,
            self.latency.as_millis(),
            self.needed,
            self.ceiling,
            self.holdable
        )
    }
}

impl Control {
    /// The requests that may be in flight now.
    pub fn inflight_limit(&self) -> usize {
        if let Some(c) = self.cfg.concurrency {
            return c;
        }
        let s = self.lock();
        if s.auto.as_ref().is_some_and(|a| a.probing.is_some()) {
            // Waiting out an overrun: one request at a time finds when it is over.
            return 1;
        }
        match (s.rate, s.srtt) {
            (Some(r), Some(l)) => {
                // Half again what Little's law asks: latency varies, and a request waiting
                // for a slot is rate lost for good. The latency counted is at most twice
                // the lowest seen: answers slower than that wait in a queue (a server at
                // its capacity), and more requests in flight would only lengthen the
                // queue, the latency and the memory, not the rate (on loopback, the
                // ceiling of 128 in flight gave half the rows/s of 4, at 20 ms a request).
                let l = l.min(TUNING.queue_latency * s.min_rtt + 0.0005);
                let need = (r * l / s.ops_per_request.max(1.0) * TUNING.inflight_headroom).ceil()
                    as usize
                    + 1;
                need.clamp(DEFAULT_CONCURRENCY, self.cfg.max_concurrency)
            }
            _ => DEFAULT_CONCURRENCY.min(self.cfg.max_concurrency),
        }
    }

    /// The most requests that will ever be in flight.
    pub fn inflight_ceiling(&self) -> usize {
        self.cfg.concurrency.unwrap_or(self.cfg.max_concurrency)
    }

    /// When a fixed rate needs more requests in flight than allowed: what it needs, and
    /// what can be held.
    pub fn shortfall(&self) -> Option<Shortfall> {
        let s = self.lock();
        let (Rate::Fixed(_), Some(r), Some(l)) = (self.cfg.rate, s.rate, s.srtt) else {
            return None;
        };
        let per = s.ops_per_request.max(1.0);
        let needed = (r * l / per).ceil() as usize;
        let ceiling = self.inflight_ceiling();
        (needed > ceiling).then(|| Shortfall {
            rate: r,
            latency: Duration::from_secs_f64(l),
            needed,
            ceiling,
            holdable: ceiling as f64 * per / l.max(1e-6),
        })
    }
}
