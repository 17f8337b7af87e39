//! The tasks-per-second limit (`--rps`), as a license enforces it, in three shapes
//! (`--rps-shape`), because how the real server counts is unknown (docs/protocol.md,
//! Limits and overload) and a client must cope with each.
//!
//! In: the number of operations a request carries. Out: how many of them the limit admits
//! now: all or none (request mode, `admit_all`) or as many as fit (op mode, `admit_some`).
//!
//! - [`RpsWindow`] (`window`, the default): a fixed window per wall-clock second
//!   (`unix time / 1 s`). Up to `limit` ops per second; a burst across the boundary of two
//!   seconds can pass `2 × limit` within a few milliseconds.
//! - [`TokenBucket`] (`bucket`): refills at `limit` ops/s, holds at most `limit` (one
//!   second's worth: a client that was idle may send that much at once); starts full.
//!   Over any interval of `L` seconds it admits at most `limit × (1 + L)`.
//! - [`SlidingWindow`] (`sliding`): the sliding-window counter (the usual approximation of
//!   a sliding log): the ops of this second plus the previous second's, weighted by the
//!   share of the last 1000 ms that still lies in it. Smooths the boundary burst of
//!   `window` without keeping a timestamp per op; approximate, as it assumes the previous
//!   second's ops were spread evenly. Limits up to 2^20 - 1.
//!
//! Each keeps its state in one `AtomicU64` changed by compare-and-swap (`update`): no lock
//! on the sandbox's hot path (benches/sandbox_load.rs). Each has an `admit_at` taking the
//! clock reading, so the unit tests drive time by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Which shape counts the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RpsShape {
    /// A fixed window per wall-clock second.
    #[default]
    Window,
    /// A token bucket: `limit` ops/s, burst `limit`.
    Bucket,
    /// A sliding-window counter over the last second.
    Sliding,
}

/// The limit in the configured shape.
#[derive(Debug)]
pub(crate) enum RpsLimit {
    Window(RpsWindow),
    Bucket(TokenBucket),
    Sliding(SlidingWindow),
}

impl RpsLimit {
    pub fn new(shape: RpsShape, limit: u32) -> RpsLimit {
        match shape {
            RpsShape::Window => RpsLimit::Window(RpsWindow::new(limit)),
            RpsShape::Bucket => RpsLimit::Bucket(TokenBucket::new(limit)),
            RpsShape::Sliding => RpsLimit::Sliding(SlidingWindow::new(limit)),
        }
    }

    /// Admits `n` ops only if all of them fit now (request mode); true if so.
    pub fn admit_all(&self, n: usize) -> bool {
        self.admit(n, true) == n
    }

    /// Admits as many of `n` ops as fit now (op mode) and returns that number.
    pub fn admit_some(&self, n: usize) -> usize {
        self.admit(n, false)
    }

    fn admit(&self, n: usize, all_or_nothing: bool) -> usize {
        match self {
            RpsLimit::Window(w) => w.admit_at(now_second(), n, all_or_nothing),
            RpsLimit::Bucket(b) => b.admit_at(b.now(), n, all_or_nothing),
            RpsLimit::Sliding(s) => s.admit_at(s.now(), n, all_or_nothing),
        }
    }
}

/// What to grant of `n` when `room` ops fit; `None` when that is nothing (and `n` is not).
fn grant(n: usize, room: u64, all_or_nothing: bool) -> Option<usize> {
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    let g = if all_or_nothing {
        if n <= room {
            n
        } else {
            0
        }
    } else {
        n.min(room)
    };
    (g != 0 || n == 0).then_some(g)
}

/// Applies `step` to `state` by compare-and-swap until it wins, and gives the ops granted.
/// `step` maps the state it read to the new state and the grant, or `None` to grant
/// nothing and leave the state alone.
fn update(state: &AtomicU64, mut step: impl FnMut(u64) -> Option<(u64, usize)>) -> usize {
    let mut cur = state.load(Ordering::Relaxed);
    loop {
        let Some((next, granted)) = step(cur) else {
            return 0;
        };
        match state.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return granted,
            Err(actual) => cur = actual,
        }
    }
}

/// A fixed window per wall-clock second, kept as `second << 32 | used`.
#[derive(Debug)]
pub(crate) struct RpsWindow {
    limit: u32,
    state: AtomicU64,
}

impl RpsWindow {
    pub fn new(limit: u32) -> RpsWindow {
        RpsWindow {
            limit,
            state: AtomicU64::new(0),
        }
    }

    fn admit_at(&self, second: u32, n: usize, all_or_nothing: bool) -> usize {
        update(&self.state, |cur| {
            let (sec, used) = ((cur >> 32) as u32, cur as u32);
            // A later second starts from zero; an earlier one (a clock stepped back) keeps
            // counting in the window we have rather than granting a fresh second.
            let (sec, used) = if second > sec {
                (second, 0)
            } else {
                (sec, used)
            };
            let room = u64::from(self.limit.saturating_sub(used));
            let g = grant(n, room, all_or_nothing)?;
            Some(((u64::from(sec) << 32) | u64::from(used + g as u32), g))
        })
    }
}

fn now_second() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

const NANOS: u64 = 1_000_000_000;

/// A token bucket in its GCRA form: instead of a token count refilled by a timer, the
/// "theoretical arrival time" `tat` (nanoseconds since the bucket was made): each op
/// admitted pushes it `interval` later, and `n` ops fit at time `t` if `tat` pushed by
/// them stays within one second (the burst) of `t`. One number, so one atomic.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Nanoseconds one op costs: `1 s / limit`, rounded (off by under a nanosecond per op).
    interval: u64,
    /// How far ahead of now `tat` may run: `limit` ops' worth, about a second.
    burst: u64,
    tat: AtomicU64,
    start: Instant,
}

impl TokenBucket {
    pub fn new(limit: u32) -> TokenBucket {
        let limit = u64::from(limit.max(1));
        let interval = ((NANOS + limit / 2) / limit).max(1);
        TokenBucket {
            interval,
            burst: interval * limit,
            tat: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// `t`: nanoseconds since the bucket was made.
    fn admit_at(&self, t: u64, n: usize, all_or_nothing: bool) -> usize {
        update(&self.tat, |tat| {
            // An idle bucket is full: its `tat` is in the past, and counts from now.
            let base = tat.max(t);
            let room = (t + self.burst).saturating_sub(base) / self.interval;
            let g = grant(n, room, all_or_nothing)?;
            Some((base + g as u64 * self.interval, g))
        })
    }
}

/// The sliding-window counter, kept as `second (24 bits) | current (20) | previous (20)`:
/// the second since the limiter was made (wrapping after 194 days, harmless: only "same",
/// "next" or "later" matters), and the ops admitted in it and in the one before.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    limit: u32,
    state: AtomicU64,
    start: Instant,
}

const SEC_BITS: u32 = 24;
const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const SEC_MASK: u64 = (1 << SEC_BITS) - 1;

impl SlidingWindow {
    /// The largest limit the packed counts hold.
    pub const MAX_LIMIT: u32 = COUNT_MASK as u32;

    /// `limit` above [`Self::MAX_LIMIT`] is capped there (`--rps-shape sliding` refuses
    /// such a `--rps`).
    pub fn new(limit: u32) -> SlidingWindow {
        SlidingWindow {
            limit: limit.min(Self::MAX_LIMIT),
            state: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `ms`: milliseconds since the limiter was made.
    fn admit_at(&self, ms: u64, n: usize, all_or_nothing: bool) -> usize {
        let (second, into) = ((ms / 1000) & SEC_MASK, ms % 1000);
        update(&self.state, |cur| {
            let sec = cur >> (2 * COUNT_BITS);
            let (now_c, prev_c) = ((cur >> COUNT_BITS) & COUNT_MASK, cur & COUNT_MASK);
            let (now_c, prev_c) = match second.wrapping_sub(sec) & SEC_MASK {
                0 => (now_c, prev_c),
                1 => (0, now_c),
                _ => (0, 0),
            };
            // The previous second's share of the last 1000 ms, rounded up so the estimate
            // never admits more than the limit.
            let carried = (prev_c * (1000 - into)).div_ceil(1000);
            let room = u64::from(self.limit).saturating_sub(now_c + carried);
            let g = grant(n, room, all_or_nothing)?;
            let next = (second << (2 * COUNT_BITS)) | ((now_c + g as u64) << COUNT_BITS) | prev_c;
            Some((next, g))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_mode_is_all_or_nothing_within_a_second() {
        let w = RpsWindow::new(50);
        assert_eq!(w.admit_at(10, 40, true), 40);
        assert_eq!(w.admit_at(10, 20, true), 0);
        assert_eq!(w.admit_at(10, 10, true), 10);
        assert_eq!(w.admit_at(10, 1, true), 0);
        assert_eq!(w.admit_at(11, 50, true), 50);
        assert_eq!(w.admit_at(11, 100, true), 0);
    }

    #[test]
    fn op_mode_admits_what_fits() {
        let w = RpsWindow::new(50);
        assert_eq!(w.admit_at(10, 30, false), 30);
        assert_eq!(w.admit_at(10, 30, false), 20);
        assert_eq!(w.admit_at(10, 30, false), 0);
        assert_eq!(
            w.admit_at(9, 5, false),
            0,
            "a clock step back grants nothing new"
        );
        assert_eq!(w.admit_at(12, 100, false), 50);
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn bucket_starts_full_and_refills_at_the_rate() {
        let b = TokenBucket::new(50); // one op per 20 ms
        assert_eq!(b.admit_at(0, 50, true), 50, "a full second's burst at once");
        assert_eq!(b.admit_at(0, 1, true), 0, "then empty");
        assert_eq!(
            b.admit_at(19 * MS, 1, true),
            0,
            "not a whole op refilled yet"
        );
        assert_eq!(b.admit_at(20 * MS, 1, true), 1);
        // 200 ms later: 10 ops refilled; request mode takes all or nothing.
        assert_eq!(b.admit_at(220 * MS, 11, true), 0);
        assert_eq!(b.admit_at(220 * MS, 10, true), 10);
        // Idle long enough, the bucket is full again, and holds no more than that.
        assert_eq!(b.admit_at(10_000 * MS, 51, true), 0);
        assert_eq!(b.admit_at(10_000 * MS, 50, true), 50);
    }

    #[test]
    fn bucket_op_mode_admits_what_fits() {
        let b = TokenBucket::new(50);
        assert_eq!(b.admit_at(0, 30, false), 30);
        assert_eq!(b.admit_at(0, 30, false), 20);
        assert_eq!(b.admit_at(0, 30, false), 0);
        assert_eq!(
            b.admit_at(100 * MS, 30, false),
            5,
            "5 ops refilled in 100 ms"
        );
        assert_eq!(
            b.admit_at(0, 5, false),
            0,
            "an earlier reading grants nothing new"
        );
    }

    #[test]
    fn bucket_holds_a_steady_rate_over_time() {
        // Ops offered faster than the limit for 10 s: about limit × (10 + 1 burst) pass.
        let b = TokenBucket::new(1000);
        let admitted: usize = (0..10_000u64).map(|ms| b.admit_at(ms * MS, 5, false)).sum();
        assert!((10_990..=11_000).contains(&admitted), "{admitted}");
        // Limits that do not divide a second are rounded to the nanosecond, not more.
        let b = TokenBucket::new(3);
        assert_eq!(b.admit_at(0, 10, false), 3);
        assert_eq!(b.admit_at(3_000 * MS, 10, false), 3);
    }

    #[test]
    fn sliding_window_carries_the_previous_second_over() {
        let s = SlidingWindow::new(100);
        assert_eq!(s.admit_at(500, 100, true), 100);
        assert_eq!(s.admit_at(999, 1, true), 0);
        // 1.25 s: 75% of the last 1000 ms lies in second 0, which had 100: room for 25.
        assert_eq!(s.admit_at(1250, 26, true), 0);
        assert_eq!(s.admit_at(1250, 25, true), 25);
        // 1.75 s: 25 of second 0 carried, 25 used in second 1: room for 50.
        assert_eq!(s.admit_at(1750, 60, false), 50);
        // 2.5 s: half of second 1's 75: room for 62.
        assert_eq!(s.admit_at(2500, 100, false), 62);
        // Two quiet seconds later, nothing is carried over.
        assert_eq!(s.admit_at(5000, 100, true), 100);
    }

    #[test]
    fn sliding_window_never_passes_the_limit_in_any_second() {
        // Offered 20 ops every 10 ms for 5 s: no 1000 ms span may hold more than the limit.
        let s = SlidingWindow::new(400);
        let per_tick: Vec<usize> = (0..500u64).map(|t| s.admit_at(t * 10, 20, false)).collect();
        for w in per_tick.windows(100) {
            let sum: usize = w.iter().sum();
            assert!(sum <= 400, "{sum} in a second");
        }
        let total: usize = per_tick.iter().sum();
        assert!(total >= 1800, "it still admits about the limit: {total}");
    }

    #[test]
    fn sliding_window_caps_a_limit_beyond_its_counters() {
        let s = SlidingWindow::new(u32::MAX);
        assert_eq!(
            s.admit_at(0, usize::MAX, false),
            SlidingWindow::MAX_LIMIT as usize
        );
    }

    #[test]
    fn every_shape_admits_nothing_for_nothing_and_counts_in_both_modes() {
        // Through the real clocks: a run that straddles a wall-clock second (or is paused
        // long enough for the bucket to refill an op) is done again.
        for shape in [RpsShape::Window, RpsShape::Bucket, RpsShape::Sliding] {
            loop {
                let (second, t0) = (now_second(), Instant::now());
                let l = RpsLimit::new(shape, 10);
                let got = (
                    l.admit_all(0),
                    l.admit_all(6),
                    l.admit_all(6),
                    l.admit_some(6),
                    l.admit_some(1),
                );
                if now_second() != second || t0.elapsed().as_millis() >= 50 {
                    continue;
                }
                assert_eq!(got, (true, true, false, 4, 0), "{shape:?}");
                break;
            }
        }
    }
}
