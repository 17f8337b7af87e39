//! What came of each request, by kind, over the run's time: for the report's chart of
//! where errors came from (issue 23). In: one `record` per attempt that went out. Out:
//! `Outcomes`, written into the run line of the results log.
//!
//! Kept as counts per time slot and kind, the slot doubling in width past `MAX_SLOTS`
//! (as the report's own slots do), so a run of any length costs a few KB.

use super::http::Reply;
use super::retry::TransportError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The most slots kept per kind; past it neighbours merge and the slot doubles.
pub const MAX_SLOTS: usize = 600;

/// Requests by kind (`answered`, `429`, `503`, `connection refused`, `timeout`, ...) per
/// slot of `width_ms`, from the run's start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcomes {
    pub width_ms: u64,
    pub kinds: BTreeMap<String, Vec<u32>>,
}

impl Default for Outcomes {
    fn default() -> Outcomes {
        Outcomes {
            width_ms: 1000,
            kinds: BTreeMap::new(),
        }
    }
}

impl Outcomes {
    /// One request that went out `since` the start and came back as `reply`.
    pub fn record(&mut self, since: Duration, reply: &Reply) {
        self.add(since.as_millis() as u64, kind(reply), 1);
    }

    pub fn add(&mut self, t_ms: u64, kind: &str, n: u32) {
        while t_ms / self.width_ms >= MAX_SLOTS as u64 {
            self.widen();
        }
        let i = (t_ms / self.width_ms) as usize;
        let v = match self.kinds.get_mut(kind) {
            Some(v) => v,
            None => self.kinds.entry(kind.to_string()).or_default(),
        };
        if v.len() <= i {
            v.resize(i + 1, 0);
        }
        v[i] += n;
    }

    fn widen(&mut self) {
        for v in self.kinds.values_mut() {
            *v = v.chunks(2).map(|c| c.iter().sum()).collect();
        }
        self.width_ms *= 2;
    }

    /// Adds `other`'s counts (every kind, or all of them as `as_kind`), widening whichever
    /// has the narrower slots; both start at time 0.
    pub fn absorb(&mut self, other: &Outcomes, as_kind: Option<&str>) {
        let mut other = other.clone();
        while other.width_ms < self.width_ms {
            other.widen();
        }
        while self.width_ms < other.width_ms {
            self.widen();
        }
        for (k, v) in &other.kinds {
            let k = as_kind.unwrap_or(k);
            for (i, &n) in v.iter().enumerate().filter(|(_, n)| **n > 0) {
                self.add(i as u64 * self.width_ms, k, n);
            }
        }
    }

    /// The counts of `kind` per second, in slots of `width_ms` (summed, or spread evenly
    /// when these slots are wider), `len` of them.
    pub fn per_second(&self, kind: &str, width_ms: u64, len: usize) -> Vec<Option<f64>> {
        let mut out = vec![0.0; len];
        for (i, &n) in self.kinds.get(kind).into_iter().flatten().enumerate() {
            let (start, end) = (i as u64 * self.width_ms, (i as u64 + 1) * self.width_ms);
            let mut t = start;
            while t < end {
                let slot = (t / width_ms) as usize;
                let next = ((slot as u64 + 1) * width_ms).min(end);
                if let Some(o) = out.get_mut(slot) {
                    *o += n as f64 * (next - t) as f64 / self.width_ms as f64;
                }
                t = next;
            }
        }
        let secs = width_ms as f64 / 1000.0;
        out.into_iter().map(|n| Some(n / secs)).collect()
    }

    /// Requests of each kind in the whole run, most first.
    pub fn totals(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<_> = self
            .kinds
            .iter()
            .map(|(k, c)| (k.as_str(), c.iter().map(|&n| n as u64).sum::<u64>()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

/// The kind of an attempt, as the report names it.
pub fn kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Http { status: 200, .. } => "answered",
        Reply::Http { status, .. } => match status {
            429 => "429 throttled",
            500 => "500",
            502 => "502",
            503 => "503",
            504 => "504",
            s if *s >= 500 => "other 5xx",
            _ => "4xx",
        },
        Reply::Transport(e, _) => match e {
            TransportError::Connect => "connection refused",
            TransportError::Timeout => "timeout",
            TransportError::Broken => "connection broken",
            _ => "other transport error",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> Reply {
        Reply::Http {
            status,
            retry_after: None,
            location: None,
            date: None,
            body: None,
        }
    }

    #[test]
    fn kinds_are_counted_per_slot_and_slots_widen_keeping_every_request() {
        let mut o = Outcomes::default();
        o.record(Duration::from_millis(10), &http(200));
        o.record(Duration::from_millis(1500), &http(503));
        o.record(Duration::from_millis(1600), &http(503));
        o.record(
            Duration::from_millis(2100),
            &Reply::Transport(TransportError::Timeout, String::new()),
        );
        assert_eq!(o.kinds["503"], [0, 2]);
        assert_eq!(o.kinds["timeout"], [0, 0, 1]);
        // Past the cap: twice as wide, nothing lost.
        o.record(Duration::from_secs(700), &http(429));
        assert_eq!(o.width_ms, 2000);
        assert_eq!(o.kinds["503"], [2]);
        assert_eq!(o.kinds["timeout"], [0, 1]);
        assert_eq!(o.kinds["429 throttled"].len(), 351);
        assert_eq!(o.totals()[0], ("503", 2));
        assert_eq!(o.totals().iter().map(|t| t.1).sum::<u64>(), 5);
    }

    #[test]
    fn absorbing_and_resampling_keep_every_count() {
        let mut a = Outcomes::default();
        a.add(500, "x", 4);
        let mut b = Outcomes::default();
        b.add(700_000, "y", 2);
        b.add(1_500, "y", 6);
        a.absorb(&b, Some("lane"));
        assert_eq!(a.width_ms, 2000);
        assert_eq!(a.kinds["x"], [4]);
        assert_eq!(a.kinds["lane"][0], 6);
        assert_eq!(a.kinds["lane"].iter().sum::<u32>(), 8);
        // 4 in a 2 s slot, read in 1 s slots: 2 a second in each of the first two.
        assert_eq!(
            a.per_second("x", 1000, 3),
            [Some(2.0), Some(2.0), Some(0.0)]
        );
        // Read in 4 s slots: 4 in 4 s.
        assert_eq!(a.per_second("x", 4000, 1), [Some(1.0)]);
    }
}
