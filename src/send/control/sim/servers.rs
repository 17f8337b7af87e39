//! The limiters a simulated server counts with: every shape the controller must hold on,
//! since how Corezoid counts is unknown (docs/protocol.md, "Limits and overload").
//!
//! Each admits, at server time `t` (seconds), as many of `n` ops as it will: all or none
//! when the server refuses whole requests (429), as many as fit when it refuses per op.

use std::collections::VecDeque;

/// How a server counts its limit of `limit` ops/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Fixed one-second windows, their turns `phase` seconds off this machine's seconds.
    Window { phase: f64 },
    /// The sliding-window counter: this window's count plus the last one's, weighted by
    /// the share of it still within the last second; windows at `phase`.
    Sliding { phase: f64 },
    /// The exact sliding log: the ops of the last second, each with its time.
    Log,
    /// A token bucket refilled at the limit, holding `burst` seconds' worth (at least one
    /// request); it starts full.
    Bucket { burst: f64 },
    /// A leaky bucket without burst: room for two requests (one paced a little early), 20 ms
    /// and the network's jitter only.
    Leaky,
}

/// One limiter's state.
#[derive(Debug, Clone)]
pub struct Limiter {
    pub shape: Shape,
    pub limit: f64,
    /// Refuse whole requests (429), or only the ops past the limit.
    pub whole: bool,
    /// The room a bucket holds (ops).
    capacity: f64,
    /// Window and sliding counter: the current window, its count and the last one's.
    window: i64,
    used: f64,
    last: f64,
    /// Buckets: tokens (token bucket) or level (leaky bucket), at `at`.
    level: f64,
    at: f64,
    /// The sliding log.
    log: VecDeque<(f64, f64)>,
    logged: f64,
}

impl Limiter {
    /// `batch`: the largest request; `jitter`: the most a one-way trip varies (s).
    pub fn new(shape: Shape, limit: f64, whole: bool, batch: f64, jitter: f64) -> Limiter {
        let capacity = match shape {
            Shape::Bucket { burst } => (burst * limit).max(batch),
            Shape::Leaky => 2.0 * batch + (0.02 + 2.0 * jitter) * limit,
            _ => 0.0,
        };
        Limiter {
            shape,
            limit,
            whole,
            capacity,
            window: i64::MIN,
            used: 0.0,
            last: 0.0,
            level: if matches!(shape, Shape::Bucket { .. }) {
                capacity
            } else {
                0.0
            },
            at: f64::NAN,
            log: VecDeque::new(),
            logged: 0.0,
        }
    }

    /// Room for ops at `t`, the state brought up to `t`.
    fn room(&mut self, t: f64) -> f64 {
        match self.shape {
            Shape::Window { phase } | Shape::Sliding { phase } => {
                let u = t + phase;
                let w = u.floor() as i64;
                if w != self.window {
                    self.last = if w == self.window + 1 { self.used } else { 0.0 };
                    self.used = 0.0;
                    self.window = w;
                }
                if matches!(self.shape, Shape::Window { .. }) {
                    self.limit - self.used
                } else {
                    let carried = self.last * (1.0 - (u - u.floor()));
                    self.limit - self.used - carried
                }
            }
            Shape::Log => {
                while self.log.front().is_some_and(|&(at, _)| at <= t - 1.0) {
                    let (_, n) = self.log.pop_front().expect("front");
                    self.logged -= n;
                }
                self.limit - self.logged
            }
            Shape::Bucket { .. } => {
                let dt = if self.at.is_nan() { 0.0 } else { t - self.at };
                self.at = t;
                self.level = (self.level + dt.max(0.0) * self.limit).min(self.capacity);
                self.level
            }
            Shape::Leaky => {
                let dt = if self.at.is_nan() { 0.0 } else { t - self.at };
                self.at = t;
                self.level = (self.level - dt.max(0.0) * self.limit).max(0.0);
                self.capacity - self.level
            }
        }
    }

    /// Other clients' `n` ops at `t`: counted whatever the room, as their share of the
    /// license is theirs (a live process is not pushed out by a loader).
    pub fn take(&mut self, t: f64, n: f64) {
        self.room(t);
        match self.shape {
            Shape::Window { .. } | Shape::Sliding { .. } => self.used += n,
            Shape::Log => {
                self.log.push_back((t, n));
                self.logged += n;
            }
            Shape::Bucket { .. } => self.level -= n,
            Shape::Leaky => self.level += n,
        }
    }

    /// Admits `n` ops at `t`: how many went through.
    pub fn admit(&mut self, t: f64, n: usize) -> usize {
        let room = self.room(t).max(0.0);
        let n = n as f64;
        // Float counts: a small epsilon so that room for exactly n ops admits them.
        let grant = if self.whole {
            if n <= room + 1e-9 {
                n
            } else {
                0.0
            }
        } else {
            (room + 1e-9).floor().min(n)
        };
        if grant > 0.0 {
            match self.shape {
                Shape::Window { .. } | Shape::Sliding { .. } => self.used += grant,
                Shape::Log => {
                    self.log.push_back((t, grant));
                    self.logged += grant;
                }
                Shape::Bucket { .. } => self.level -= grant,
                Shape::Leaky => self.level += grant,
            }
        }
        grant as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits `n`-op requests every `every` seconds for `secs`: what went through.
    fn offer(l: &mut Limiter, every: f64, n: usize, secs: f64) -> (usize, usize) {
        let mut t = 0.0;
        let (mut ok, mut sent) = (0, 0);
        while t < secs {
            ok += l.admit(t, n);
            sent += n;
            t += every;
        }
        (ok, sent)
    }

    /// Offered twice the limit for ten seconds, every shape passes about its limit: more
    /// by its burst at most, less by a request.
    #[test]
    fn every_shape_passes_its_limit_under_twice_the_load() {
        let shapes = [
            Shape::Window { phase: 0.3 },
            Shape::Sliding { phase: 0.7 },
            Shape::Log,
            Shape::Bucket { burst: 2.0 },
            Shape::Leaky,
        ];
        for shape in shapes {
            for whole in [true, false] {
                let mut l = Limiter::new(shape, 1000.0, whole, 10.0, 0.0);
                let ok = offer(&mut l, 0.005, 10, 10.0).0 as f64;
                let burst = if let Shape::Bucket { burst } = shape {
                    burst * 1000.0
                } else {
                    1000.0
                };
                assert!(
                    (9_800.0..=10_000.0 + burst + 10.0).contains(&ok),
                    "{shape:?} whole {whole}: {ok}"
                );
            }
        }
    }

    /// Just under the limit, evenly spaced, nothing is refused by any shape.
    #[test]
    fn just_under_the_limit_nothing_is_refused() {
        for shape in [
            Shape::Window { phase: 0.5 },
            Shape::Sliding { phase: 0.1 },
            Shape::Log,
            Shape::Bucket { burst: 0.1 },
            Shape::Leaky,
        ] {
            let mut l = Limiter::new(shape, 1000.0, true, 10.0, 0.0);
            let (ok, sent) = offer(&mut l, 0.0101, 10, 10.0);
            assert_eq!(ok, sent, "{shape:?}");
        }
    }
}
