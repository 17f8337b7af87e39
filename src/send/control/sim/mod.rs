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

/// A run under way: the server, the copies, the events to come.
struct Sim<'a> {
    case: &'a Case,
    rng: StdRng,
    t0: Instant,
    server: Limiter,
    copies: Vec<Copy>,
    heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    /// Per second: copy 0's rate, ops accepted and refused.
    trace: Vec<(f64, f64, f64)>,
}

/// Runs `case` for its length: every copy at `rate` (`--rate auto`, or a fixed one).
pub fn run(case: &Case, rate: Rate) -> Outcome {
    let t0 = Instant::now();
    let share = 1.0 / case.copies as f64;
    let copies = (0..case.copies)
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
    let mut sim = Sim {
        case,
        rng: StdRng::seed_from_u64(case.seed),
        t0,
        server: Limiter::new(
            case.shape,
            case.limit,
            case.whole,
            case.batch as f64,
            case.jitter,
        ),
        copies,
        heap: BinaryHeap::new(),
        seq: 0,
        trace: vec![(0.0, 0.0, 0.0); case.secs.ceil() as usize],
    };
    for i in 0..case.copies {
        // Copies of a Job start within a few hundred milliseconds of each other.
        let t = if i == 0 {
            0
        } else {
            ns(sim.rng.random_range(0.0..0.3))
        };
        sim.copies[i].wake_at = Some(t);
        sim.push(t, Event::Wake { copy: i });
    }
    sim.push(0, Event::Background);
    let end = ns(case.secs);
    while let Some(Reverse((t, _, e))) = sim.heap.pop() {
        if t >= end {
            break;
        }
        sim.step(t, e);
    }
    let (left, left_late) = left_over(case);
    Outcome {
        found: sim.copies[0].control.limit_found(),
        copies: sim.copies.into_iter().map(|c| c.stats).collect(),
        left,
        left_late,
        trace: sim.trace,
    }
}

/// The ops the license leaves the copies over the run, and over its steady part.
fn left_over(case: &Case) -> (f64, f64) {
    let (mut left, mut left_late) = (0.0, 0.0);
    let step = 0.01;
    let mut t = 0.0;
    while t < case.secs {
        let here = case.limit * step * (1.0 - case.background_at(t));
        left += here;
        if t >= case.steady_from {
            left_late += here;
        }
        t += step;
    }
    (left, left_late)
}

impl Sim<'_> {
    fn push(&mut self, t: u64, e: Event) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, e)));
    }

    fn at(&self, t: u64) -> Instant {
        self.t0 + Duration::from_nanos(t)
    }

    fn second(&self, t: u64) -> usize {
        ((t as f64 / NS) as usize).min(self.trace.len() - 1)
    }

    fn step(&mut self, t: u64, e: Event) {
        let case = self.case;
        let secs = t as f64 / NS;
        match e {
            Event::Background => {
                let b = case.background_at(secs) * case.limit;
                let n = (case.limit / 200.0).clamp(1.0, 100.0);
                if b > 0.0 {
                    self.server.take(case.clock + secs, n);
                }
                let every = if b > 0.0 { n / b } else { 0.1 };
                self.push(t + ns(every), Event::Background);
            }
            Event::Arrive { copy, sent, ops } => {
                let ok = self.server.admit(case.clock + secs, ops);
                let refused = ops - ok;
                let i = self.second(t);
                self.trace[i].1 += ok as f64;
                self.trace[i].2 += refused as f64;
                let back = one_way(case, &mut self.rng);
                let e = Event::Answer {
                    copy,
                    sent,
                    ok,
                    refused,
                };
                self.push(t + ns(back), e);
            }
            Event::Answer {
                copy,
                sent,
                ok,
                refused,
            } => self.answer(t, copy, sent, (ok, refused)),
            Event::Wake { copy } => {
                if self.copies[copy].wake_at == Some(t) {
                    self.copies[copy].wake_at = None;
                    self.send(copy, t);
                }
            }
        }
        let i = self.second(t);
        self.trace[i].0 = self.copies[0].control.rate().unwrap_or(0.0);
    }

    /// An answer back at `t`, as the sender takes it in (`send/settle.rs`).
    fn answer(&mut self, t: u64, copy: usize, sent: u64, (ok, thr): (usize, usize)) {
        let (now, left) = (self.at(t), self.at(sent));
        let steady = t >= ns(self.case.steady_from);
        let c = &mut self.copies[copy];
        c.inflight -= 1;
        c.stats.accepted += ok as f64;
        if steady {
            c.stats.accepted_late += ok as f64;
        }
        if thr > 0 {
            c.stats.refused_requests += 1;
            c.stats.refused_ops += thr as u64;
        }
        let latency = Duration::from_nanos(t - sent);
        if let Some(p) = c.control.on_answer(now, left, ok, thr, latency) {
            c.pause_until = c.pause_until.max(t + p.as_nanos() as u64);
        }
        self.wake(copy, t);
    }

    /// Wakes a copy at `t` (or its pause's end) unless it is already to wake sooner.
    fn wake(&mut self, copy: usize, t: u64) {
        let c = &mut self.copies[copy];
        let t = t.max(c.pause_until);
        if c.wake_at.is_none_or(|w| w > t) {
            c.wake_at = Some(t);
            self.push(t, Event::Wake { copy });
        }
    }

    /// Sends what the copy's slots and pacer allow at `t`, and sets its next wake-up, as
    /// the sender does (`send/sender.rs`: a slot, then the pacer, waiting what it says).
    fn send(&mut self, copy: usize, t: u64) {
        if t < self.copies[copy].pause_until {
            return self.wake(copy, t);
        }
        let batch = self.case.batch;
        let now = self.at(t);
        while self.copies[copy].inflight < self.copies[copy].control.inflight_limit() {
            let c = &mut self.copies[copy];
            match c.control.claim(now, batch) {
                None => {
                    c.inflight += 1;
                    c.stats.requests += 1;
                    c.stats.ops += batch as u64;
                    let there = one_way(self.case, &mut self.rng);
                    let e = Event::Arrive {
                        copy,
                        sent: t,
                        ops: batch,
                    };
                    self.push(t + ns(there), e);
                }
                Some(w) => {
                    // The sender sleeps what the pacer says; tokio wakes it a little late.
                    let w = w.as_nanos() as u64 + 50_000;
                    return self.wake(copy, t + w);
                }
            }
        }
        // All slots taken: the next answer wakes it.
    }
}

/// A one-way trip: half the round trip, and up to the jitter more.
fn one_way(case: &Case, rng: &mut StdRng) -> f64 {
    case.rtt / 2.0 + rng.random_range(0.0..=case.jitter.max(0.0))
}
