//! The accepted-rate estimator: what the server took of this copy's requests lately.
//!
//! In: each answer, by when its request left (this machine's clock, seconds) with its ops
//! accepted and refused. Out: the ops per second accepted over a horizon ending at a given
//! send time (`accepted_rate`). Requests are placed by when they left, not when answered:
//! the rate measured is then the one the sending produced, whatever the round trip.
//!
//! It assumes nothing about how the server counts: over a horizon of a second or more,
//! what a server of a flat license rate takes of a load above it is that rate (a window,
//! a sliding log or counter exactly; a token bucket once its burst is spent).

use std::collections::VecDeque;

/// Answers of the last few seconds.
#[derive(Debug, Default)]
pub struct Estimator {
    /// (sent, accepted ops), in the order answered (about the order sent).
    answers: VecDeque<(f64, f64)>,
    /// Those of the last second, their sum, and the most a second has taken: a license
    /// counted per second, whatever its shape, is at least that.
    second: VecDeque<(f64, f64)>,
    second_sum: f64,
    pub best_second: f64,
}

/// How much history is kept (s): the longest horizon asked and the round trip.
const KEEP: f64 = 8.0;

impl Estimator {
    pub fn record(&mut self, sent: f64, ok: f64) {
        self.answers.push_back((sent, ok));
        while self.answers.front().is_some_and(|&(t, _)| t < sent - KEEP) {
            self.answers.pop_front();
        }
        self.second.push_back((sent, ok));
        self.second_sum += ok;
        while self.second.front().is_some_and(|&(t, _)| t <= sent - 1.0) {
            let (_, n) = self.second.pop_front().expect("front");
            self.second_sum -= n;
        }
        self.best_second = self.best_second.max(self.second_sum);
    }

    /// Ops per second accepted of the requests sent in the `horizon` seconds up to `until`
    /// (less, when the answers cover less: early in a run), or `None` if they cover less
    /// than a tenth of a second.
    pub fn accepted_rate(&self, until: f64, horizon: f64) -> Option<f64> {
        let oldest = self
            .answers
            .iter()
            .map(|a| a.0)
            .fold(f64::INFINITY, f64::min);
        let horizon = horizon.min(until - oldest);
        if horizon < 0.1 {
            return None;
        }
        let from = until - horizon;
        let ok: f64 = self
            .answers
            .iter()
            .filter(|&&(t, _)| t > from && t <= until)
            .map(|a| a.1)
            .sum();
        Some(ok / horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_what_was_accepted_of_what_left_in_the_horizon() {
        let mut e = Estimator::default();
        assert_eq!(e.accepted_rate(1.0, 1.0), None);
        e.record(0.0, 100.0);
        assert_eq!(e.accepted_rate(0.05, 1.0), None);
        // 100 ops every 10 ms for 3 s, half of them accepted in the last second.
        for i in 0..300 {
            let t = i as f64 * 0.01;
            e.record(t, if t >= 2.0 { 50.0 } else { 100.0 });
        }
        let r = e.accepted_rate(2.995, 1.0).expect("covered");
        assert!((r - 5_000.0).abs() < 60.0, "{r}");
        let r = e.accepted_rate(1.995, 1.0).expect("covered");
        assert!((r - 10_000.0).abs() < 110.0, "{r}");
    }
}
