//! A simulator to test `--rate auto` against: servers drawn from a family (`servers.rs`,
//! `family.rs`), copies of the controller sharing their limit with each other and with
//! other clients, on virtual time.
//!
//! Each copy is a [`Control`] driven as the sender drives it (`send/sender.rs`,
//! `send/settle.rs`): a request takes an in-flight slot (`inflight_limit`), then the pacer
//! (`claim`, waiting what it says), leaves, reaches the server half a round trip later
//! (give or take the jitter), and its answer comes back another half later
//! (`on_answer`, whose pause holds that copy). The input never runs dry: what is refused
//! is sent again later like any other ops. Events are kept in a heap by time, so a
//! 30-second run takes milliseconds and no test sleeps.

mod family;
mod servers;

pub use family::Case;
pub use servers::{Limiter, Shape};

use super::{Control, ControlConfig, Rate, DEFAULT_MAX_CONCURRENCY};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What happens next, in time order (nanoseconds of virtual time, then a sequence number
/// so that equal times keep their order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A copy may try to send.
    Wake { copy: usize },
    /// A copy's request reaches the server: `sent` (ns), ops.
    Arrive { copy: usize, sent: u64, ops: usize },
    /// Its answer is back.
    Answer {
        copy: usize,
        sent: u64,
        ok: usize,
        refused: usize,
    },
    /// Other clients send their next request.
    Background,
}

/// One copy's counts.
#[derive(Debug, Default, Clone)]
pub struct CopyStats {
    pub accepted: f64,
    pub requests: u64,
    pub refused_requests: u64,
    pub ops: u64,
    pub refused_ops: u64,
    /// Accepted after `steady_from`.
    pub accepted_late: f64,
}

struct Copy {
    control: Control,
    inflight: usize,
    pause_until: u64,
    /// The time of the wake-up in the heap that counts; others are stale.
    wake_at: Option<u64>,
    stats: CopyStats,
}

/// The outcome of a run, and what the failure message prints.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub copies: Vec<CopyStats>,
    /// The ops the license left the copies: its limit less the other clients', over the
    /// run, and over the part after `steady_from`.
    pub left: f64,
    pub left_late: f64,
    /// Per second: copy 0's rate at its end, ops accepted and refused (all copies).
    pub trace: Vec<(f64, f64, f64)>,
    pub found: Option<f64>,
}

impl Outcome {
    pub fn share(&self) -> f64 {
        self.copies.iter().map(|c| c.accepted).sum::<f64>() / self.left
    }

    pub fn steady_share(&self) -> f64 {
        self.copies.iter().map(|c| c.accepted_late).sum::<f64>() / self.left_late
    }

    /// Refused requests over requests (whole) or refused ops over ops (per op).
    pub fn throttled(&self, whole: bool) -> f64 {
        let sum = |f: fn(&CopyStats) -> u64| self.copies.iter().map(f).sum::<u64>() as f64;
        if whole {
            sum(|c| c.refused_requests) / sum(|c| c.requests).max(1.0)
        } else {
            sum(|c| c.refused_ops) / sum(|c| c.ops).max(1.0)
        }
    }

    /// The copy farthest from a fair share, as its ratio to it.
    pub fn unfairness(&self) -> f64 {
        let n = self.copies.len() as f64;
        let fair = self.copies.iter().map(|c| c.accepted).sum::<f64>() / n;
        self.copies
            .iter()
            .map(|c| (c.accepted / fair.max(1e-9) - 1.0).abs())
            .fold(0.0, f64::max)
    }

    /// The per-second trace as lines.
    pub fn trace_text(&self) -> String {
        let mut s = String::from("  second  rate(copy 0)  accepted  refused\n");
        for (i, (r, a, x)) in self.trace.iter().enumerate() {
            s.push_str(&format!("  {i:>6}  {r:>12.0}  {a:>8.0}  {x:>7.0}\n"));
        }
        s
    }
}

const NS: f64 = 1e9;

fn ns(s: f64) -> u64 {
    (s.max(0.0) * NS) as u64
}

/// Runs `case` for its length: every copy at `--rate auto` (or `rate`), from `start`.
pub fn run(case: &Case, rate: Rate) -> Outcome {
    let mut rng = StdRng::seed_from_u64(case.seed);
    let t0 = Instant::now();
    let at = |t: u64| t0 + Duration::from_nanos(t);
    let mut server = Limiter::new(
        case.shape,
        case.limit,
        case.whole,
        case.batch as f64,
        case.jitter,
    );
    let share = 1.0 / case.copies as f64;
    let mut copies: Vec<Copy> = (0..case.copies)
        .map(|_| Copy {
            control: Control::new(
                ControlConfig {
                    rate,
                    share,
                    concurrency: None,
                    max_concurrency: DEFAULT_MAX_CONCURRENCY,
                    batch_size: case.batch,
                    start: case.start,
                },
                t0,
                Duration::from_secs_f64(case.clock),
            ),
            inflight: 0,
            pause_until: 0,
            wake_at: None,
            stats: CopyStats::default(),
        })
        .collect();
    let end = ns(case.secs);
    let steady_from = ns(case.steady_from);
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<_>, t: u64, e: Event| {
        seq += 1;
        heap.push(Reverse((t, seq, e)));
    };
    for (i, c) in copies.iter_mut().enumerate() {
        // Copies of a Job start within a few hundred milliseconds of each other.
        let t = if i == 0 {
            0
        } else {
            ns(rng.random_range(0.0..0.3))
        };
        c.wake_at = Some(t);
        push(&mut heap, t, Event::Wake { copy: i });
    }
    push(&mut heap, 0, Event::Background);
    let mut trace = vec![(0.0, 0.0, 0.0); case.secs.ceil() as usize];
    let (mut left, mut left_late) = (0.0, 0.0);
    let step = 0.01;
    let mut t_left = 0.0;
    while t_left < case.secs {
        let others = case.background_at(t_left) * case.limit * step;
        left += case.limit * step - others;
        if t_left >= case.steady_from {
            left_late += case.limit * step - others;
        }
        t_left += step;
    }
    while let Some(Reverse((t, _, e))) = heap.pop() {
        if t >= end {
            break;
        }
        let secs = t as f64 / NS;
        match e {
            Event::Background => {
                let b = case.background_at(secs) * case.limit;
                let n = (case.limit / 200.0).clamp(1.0, 100.0);
                if b > 0.0 {
                    server.take(case.clock + secs, n);
                }
                let every = if b > 0.0 { n / b } else { 0.1 };
                push(&mut heap, t + ns(every), Event::Background);
            }
            Event::Arrive { copy, sent, ops } => {
                let ok = server.admit(case.clock + secs, ops);
                let back = one_way(case, &mut rng);
                let refused = ops - ok;
                let idx = (secs as usize).min(trace.len() - 1);
                trace[idx].1 += ok as f64;
                trace[idx].2 += refused as f64;
                push(
                    &mut heap,
                    t + ns(back),
                    Event::Answer {
                        copy,
                        sent,
                        ok,
                        refused,
                    },
                );
            }
            Event::Answer {
                copy,
                sent,
                ok,
                refused,
            } => {
                let c = &mut copies[copy];
                c.inflight -= 1;
                // A whole refusal is a 429: the sender counts the request's ops throttled.
                let (ok, thr) = (ok, refused);
                c.stats.accepted += ok as f64;
                if t >= steady_from {
                    c.stats.accepted_late += ok as f64;
                }
                if thr > 0 {
                    c.stats.refused_requests += 1;
                    c.stats.refused_ops += thr as u64;
                }
                let latency = Duration::from_nanos(t - sent);
                if let Some(p) = c.control.on_answer(at(t), at(sent), ok, thr, latency) {
                    c.pause_until = c.pause_until.max(t + p.as_nanos() as u64);
                }
                wake(c, copy, t, &mut heap, &mut push);
            }
            Event::Wake { copy } => {
                let c = &mut copies[copy];
                if c.wake_at != Some(t) {
                    continue;
                }
                c.wake_at = None;
                send(c, copy, t, case, &mut rng, &mut heap, &mut push);
            }
        }
        let idx = (secs as usize).min(trace.len() - 1);
        trace[idx].0 = copies[0].control.rate().unwrap_or(0.0);
    }
    Outcome {
        found: copies[0].control.limit_found(),
        copies: copies.into_iter().map(|c| c.stats).collect(),
        left,
        left_late,
        trace,
    }
}

type Push<'a> = dyn FnMut(&mut BinaryHeap<Reverse<(u64, u64, Event)>>, u64, Event) + 'a;

/// Wakes a copy at `t` unless it is already to wake sooner.
fn wake(
    c: &mut Copy,
    copy: usize,
    t: u64,
    heap: &mut BinaryHeap<Reverse<(u64, u64, Event)>>,
    push: &mut Push<'_>,
) {
    let t = t.max(c.pause_until);
    if c.wake_at.is_none_or(|w| w > t) {
        c.wake_at = Some(t);
        push(heap, t, Event::Wake { copy });
    }
}

/// Sends what the copy's slots and pacer allow at `t`, and sets its next wake-up.
fn send(
    c: &mut Copy,
    copy: usize,
    t: u64,
    case: &Case,
    rng: &mut StdRng,
    heap: &mut BinaryHeap<Reverse<(u64, u64, Event)>>,
    push: &mut Push<'_>,
) {
    if t < c.pause_until {
        return wake(c, copy, t, heap, push);
    }
    while c.inflight < c.control.inflight_limit() {
        let now = c.control.start + Duration::from_nanos(t);
        match c.control.claim(now, case.batch) {
            None => {
                c.inflight += 1;
                c.stats.requests += 1;
                c.stats.ops += case.batch as u64;
                let there = one_way(case, rng);
                let e = Event::Arrive {
                    copy,
                    sent: t,
                    ops: case.batch,
                };
                push(heap, t + ns(there), e);
            }
            Some(w) => {
                // The sender sleeps what the pacer says; tokio wakes it a little late.
                let w = w.as_nanos() as u64 + 50_000;
                return wake(c, copy, t + w, heap, push);
            }
        }
    }
    // All slots taken: the next answer wakes it.
}

/// A one-way trip: half the round trip, and up to the jitter more.
fn one_way(case: &Case, rng: &mut StdRng) -> f64 {
    case.rtt / 2.0 + rng.random_range(0.0..=case.jitter.max(0.0))
}
