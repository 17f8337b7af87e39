//! The accepted-rate estimator: ops the server took, per second of its clock.
//!
//! In: each answer's accepted ops and when the server saw them (sent + half the round
//! trip, on this machine's clock). Out: what a second took (`accepted_in`), what a span
//! took pro rata (`accepted_since`), the rate lately (`through`).

use super::phases::Auto;
use super::tuning::TUNING;
use std::collections::VecDeque;

pub(super) fn add_to(counts: &mut VecDeque<(u64, f64)>, sec: u64, ok: f64) {
    match counts.iter_mut().find(|(s, _)| *s == sec) {
        Some((_, n)) => *n += ok,
        None => {
            counts.push_back((sec, ok));
            if counts.len() > 8 {
                counts.pop_front();
            }
        }
    }
}

pub(super) fn count_in(counts: &VecDeque<(u64, f64)>, sec: u64) -> f64 {
    counts
        .iter()
        .find(|(s, _)| *s == sec)
        .map_or(0.0, |(_, n)| *n)
}

impl Auto {
    /// Counts `ok` ops accepted by a server that saw them at `seen` (its clock, seconds).
    /// Those seen within `TUNING.edge` (and 5% of the round trip) of a second's turn may have been
    /// the other second's on the server's clock, as the round trip is not split exactly in
    /// two: they are also noted as the neighbour's (`edges`).
    pub(super) fn count(&mut self, seen: f64, ok: f64, srtt: f64) {
        let sec = seen as u64;
        add_to(&mut self.seconds, sec, ok);
        let near = TUNING.edge + 0.05 * srtt;
        let into = seen - sec as f64;
        if into < near && sec > 0 {
            add_to(&mut self.edges, sec - 1, ok);
        } else if into > 1.0 - near {
            add_to(&mut self.edges, sec + 1, ok);
        }
    }

    /// Ops accepted from `from` to `to` (server time, seconds), the seconds at either end
    /// taken pro rata. The counts are complete up to `horizon`: a second that ends after
    /// it holds only the ops seen before it, spread over that part (taken as the whole
    /// second, the second under way would count a tenth of its rate a tenth of the way
    /// in, and startup's cap fell at every turn of a second).
    pub(super) fn accepted_since(&self, from: f64, to: f64, horizon: f64) -> f64 {
        self.seconds
            .iter()
            .map(|&(s, n)| {
                let a = s as f64;
                let b = (a + 1.0).min(horizon.max(a + 0.05));
                let overlap = (b.min(to) - a.max(from)).max(0.0);
                n * overlap / (b - a)
            })
            .sum()
    }

    pub(super) fn accepted_in(&self, sec: u64) -> f64 {
        count_in(&self.seconds, sec)
    }

    /// Ops per second accepted up to `known` (server time): over the last second, or ten
    /// round trips if shorter (what is refused in a round trip is all an overshoot costs,
    /// so a near server may grow faster), or since the start.
    pub(super) fn through(&self, known: f64, srtt: f64) -> f64 {
        let longest = (10.0 * srtt).clamp(0.1, 1.0);
        let span = (known - self.started).clamp(0.1, longest);
        self.accepted_since(known - span, known, known) / span
    }
}
