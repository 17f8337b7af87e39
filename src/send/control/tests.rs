use super::phases::far_cap;
use super::*;

fn cfg(rate: Rate) -> ControlConfig {
    ControlConfig {
        rate,
        share: 1.0,
        concurrency: None,
        max_concurrency: DEFAULT_MAX_CONCURRENCY,
        batch_size: 100,
    }
}

#[test]
fn a_fixed_rate_is_paced_exactly() {
    let t0 = Instant::now();
    let c = Control::new(cfg(Rate::Fixed(1000)), t0, Duration::ZERO);
    // 100 ops at 1,000/s: one request every 100 ms, after the slack of the first.
    let mut now = t0;
    let mut sent = 0;
    while now < t0 + Duration::from_secs(10) {
        match c.claim(now, 100) {
            None => sent += 100,
            Some(w) => now += w.max(Duration::from_micros(100)),
        }
    }
    assert!((10_000..=10_200).contains(&sent), "sent {sent} ops in 10 s");
}

#[test]
fn the_inflight_limit_follows_rate_and_latency() {
    let t0 = Instant::now();
    let c = Control::new(cfg(Rate::Fixed(20_000)), t0, Duration::ZERO);
    assert_eq!(c.inflight_limit(), DEFAULT_CONCURRENCY);
    for _ in 0..50 {
        c.on_answer(t0, t0, 100, 0, Duration::from_millis(200));
    }
    // 20,000/s × 0.2 s / 100 = 40 needed; with half again: 61.
    assert_eq!(c.inflight_limit(), 61);
    assert_eq!(c.shortfall(), None);
    // Answers five times slower than the fastest wait in a queue: more requests in
    // flight would only lengthen it, so the limit follows twice the fastest (0.402 s:
    // 20,000 × 0.402 / 100 × 1.5, and one), while the shortfall says what the rate
    // would need at the latency there is.
    for _ in 0..50 {
        c.on_answer(t0, t0, 100, 0, Duration::from_secs(1));
    }
    assert_eq!(c.inflight_limit(), 122);
    let s = c.shortfall().expect("200 needed, 128 allowed");
    assert_eq!((s.needed, s.ceiling), (200, 128));
    assert!((s.holdable - 12_800.0).abs() < 50.0, "{s:?}");
    assert!(s.to_string().contains("--max-concurrency 128"), "{s}");
}

#[test]
fn a_far_server_gets_the_ceiling() {
    let t0 = Instant::now();
    let c = Control::new(cfg(Rate::Fixed(20_000)), t0, Duration::ZERO);
    for _ in 0..50 {
        c.on_answer(t0, t0, 100, 0, Duration::from_secs(1));
    }
    assert_eq!(c.inflight_limit(), DEFAULT_MAX_CONCURRENCY);
}

#[test]
fn a_fixed_concurrency_stays_fixed() {
    let t0 = Instant::now();
    let mut k = cfg(Rate::Fixed(20_000));
    k.concurrency = Some(3);
    let c = Control::new(k, t0, Duration::ZERO);
    c.on_answer(t0, t0, 100, 0, Duration::from_secs(1));
    assert_eq!(c.inflight_limit(), 3);
    assert_eq!(c.shortfall().map(|s| s.ceiling), Some(3));
}

/// A server second's worth (20,000 ops in 200 requests over 0.8 s) sent from `from`
/// (seconds after `t0`), each answered 200 ms later: seen in second `from + 0.1`.
fn fill(c: &Control, t0: Instant, from: f64, requests: usize) {
    let l = Duration::from_millis(200);
    for i in 0..requests {
        let sent = t0 + Duration::from_secs_f64(from + i as f64 * 0.004);
        c.on_answer(sent + l, sent, 100, 0, l);
    }
}

/// `--rate auto` 200 ms away, `t0` its start: second 5 took 20,000 ops and then
/// refused one request; that measure ends at the first request from 6.2 s.
fn throttled_in_second_5(t0: Instant) -> Control {
    let c = Control::new(cfg(Rate::Auto), t0, Duration::ZERO);
    let l = Duration::from_millis(200);
    fill(&c, t0, 4.9, 200);
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    c.on_answer(at(5.95), at(5.75), 0, 100, l);
    c
}

/// A refusal that follows a measure at once comes from what was sent before the new
/// rate took hold: it is measured like any other, not taken as the limit being below
/// the rate of the moment. (Taken so, a run at 200 ms found 9,900 of a 20,000 limit:
/// the rate had just been halved for the measure, and it held that for the run.)
#[test]
fn a_refusal_just_after_a_measure_does_not_lower_the_limit() {
    let t0 = Instant::now();
    let c = throttled_in_second_5(t0);
    let l = Duration::from_millis(200);
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    assert!(c.claim(at(6.31), 100).is_some() || c.limit_found().is_some());
    assert_eq!(c.limit_found().map(f64::round), Some(20_000.0));
    // Overrun at once, twice: second 6 (the rate just set) and second 7 (the rate just
    // halved for that measure).
    fill(&c, t0, 5.9, 200);
    c.on_answer(at(6.6), at(6.4), 0, 100, l);
    c.on_answer(at(7.3), at(7.1), 0, 100, l);
    fill(&c, t0, 6.9, 200);
    c.claim(at(8.31), 100);
    assert_eq!(c.limit_found().map(f64::round), Some(20_000.0));
    assert_eq!(c.rate().map(f64::round), Some(19_800.0));
}

/// Sends every request the pacer allows from `from` to `to` (seconds after `t0`), as a
/// sender that keeps up does, each answered in full 200 ms later.
fn send_until(c: &Control, t0: Instant, from: f64, to: f64) {
    let l = Duration::from_millis(200);
    let mut flight = std::collections::VecDeque::new();
    let mut t = t0 + Duration::from_secs_f64(from);
    while t < t0 + Duration::from_secs_f64(to) {
        while flight.front().is_some_and(|&sent| sent + l <= t) {
            let sent = flight.pop_front().expect("front");
            c.on_answer(sent + l, sent, 100, 0, l);
        }
        while c.claim(t, 100).is_none() {
            flight.push_back(t);
        }
        t += Duration::from_millis(1);
    }
}

/// Throttled again and again at a rate that held for a second, while its seconds
/// took at least that rate (a sliding window's lumpy estimate): the limit goes 2%
/// below the rate, then 4% (at 1% each time, a 500/s sliding window was refused every
/// 2 s for the whole run, 14.8% of its requests in simulation).
#[test]
fn a_refusal_at_a_rate_its_seconds_took_backs_off_further_each_time() {
    let t0 = Instant::now();
    let c = throttled_in_second_5(t0);
    let l = Duration::from_millis(200);
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    c.claim(at(6.31), 100);
    assert_eq!(c.limit_found().map(f64::round), Some(20_000.0));
    assert_eq!(c.rate().map(f64::round), Some(19_800.0));
    // Seconds 6 and 7 take 20,000 each, and second 7 refuses 19,800 held since 6.31.
    fill(&c, t0, 5.9, 200);
    fill(&c, t0, 6.9, 200);
    c.on_answer(at(7.85), at(7.65), 0, 100, l);
    c.claim(at(8.31), 100);
    assert_eq!(c.limit_found().map(f64::round), Some(19_404.0));
    let held = c.rate().expect("paced");
    fill(&c, t0, 7.9, 200);
    fill(&c, t0, 8.9, 200);
    c.on_answer(at(9.85), at(9.65), 0, 100, l);
    c.claim(at(10.31), 100);
    assert_eq!(c.limit_found().map(f64::round), Some((held * 0.96).round()));
}

/// A first measure whose second took less than the one before it (which a limit
/// counted per wall-clock second cannot do) is checked by quick probes: 1%, 2%, 4%
/// more, one every 1.1 s. One that took more is held, 1% more only after 10 s.
#[test]
fn a_short_first_measure_is_probed_quickly() {
    let l = Duration::from_millis(200);
    for short in [false, true] {
        let t0 = Instant::now();
        let c = Control::new(cfg(Rate::Auto), t0, Duration::ZERO);
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        if short {
            // Second 4 takes 20,000, second 5 half that before a refusal.
            fill(&c, t0, 3.9, 200);
            fill(&c, t0, 4.9, 100);
        } else {
            fill(&c, t0, 4.9, 200);
        }
        c.on_answer(at(5.95), at(5.75), 0, 100, l);
        send_until(&c, t0, 6.21, 6.31);
        assert_eq!(c.limit_found().map(f64::round), Some(20_000.0));
        assert_eq!(c.rate().map(f64::round), Some(19_800.0));
        send_until(&c, t0, 6.31, 9.7);
        let expect: f64 = if short {
            19_800.0 * 1.01 * 1.02 * 1.04
        } else {
            19_800.0
        };
        assert_eq!(
            c.rate().map(f64::round),
            Some(expect.round()),
            "short: {short}"
        );
    }
}

/// Far startup's bound and pace, against a server 200 ms away that takes all: the
/// rate stays within twice `far_cap` times the most the server took in one second
/// (what the first throttled second of a limit would cost is the rate times a round
/// trip), and still passes 20,000/s within 4.5 s (in steps, once per whole second
/// counted, it took 6 s).
#[test]
fn far_startup_grows_fast_within_what_the_server_took() {
    let t0 = Instant::now();
    let offset = 0.37;
    let c = Control::new(cfg(Rate::Auto), t0, Duration::from_secs_f64(offset));
    let rtt = Duration::from_millis(200);
    let mut flight: std::collections::VecDeque<(Duration, Duration)> = Default::default();
    let mut took: std::collections::BTreeMap<u64, f64> = Default::default();
    let mut reached = None;
    let mut t = Duration::ZERO;
    while t < Duration::from_secs(6) {
        while flight.front().is_some_and(|f| f.0 <= t) {
            let (_, sent) = flight.pop_front().expect("front");
            c.on_answer(t0 + t, t0 + sent, 100, 0, rtt);
            let seen = offset + sent.as_secs_f64() + rtt.as_secs_f64() / 2.0;
            *took.entry(seen as u64).or_default() += 100.0;
        }
        while flight.len() < c.inflight_limit() && c.claim(t0 + t, 100).is_none() {
            flight.push_back((t + rtt, t));
        }
        let most = took.values().fold(300.0, |a: f64, &b| a.max(b));
        let rate = c.rate().expect("paced");
        assert!(
            rate <= 2.0 * far_cap(0.2) * most + 1.0,
            "{rate:.0} ops/s at {t:?}, the most taken in a second {most}"
        );
        if reached.is_none() && rate >= 20_000.0 {
            reached = Some(t);
        }
        t += Duration::from_micros(250);
    }
    let reached = reached.expect("20,000 ops/s reached");
    assert!(reached < Duration::from_millis(4500), "{reached:?}");
}

/// How a simulated server counts its limit.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// The wall-clock second.
    Window,
    /// A bucket of one second's worth, refilled continuously.
    Bucket,
    /// The sandbox's sliding-window counter, its seconds not the wall clock's.
    Sliding,
}

struct Server {
    limit: f64,
    shape: Shape,
    /// Refuse the whole request (429) or the ops past the limit.
    whole: bool,
    second: u64,
    used: f64,
    tokens: f64,
    last: f64,
}

impl Server {
    fn admit(&mut self, t: f64, n: usize) -> usize {
        let room = match self.shape {
            Shape::Window => {
                let s = t.floor() as u64;
                if s != self.second {
                    self.second = s;
                    self.used = 0.0;
                }
                self.limit - self.used
            }
            Shape::Bucket => {
                self.tokens = (self.tokens + (t - self.last) * self.limit).min(self.limit);
                self.last = t;
                self.tokens
            }
            Shape::Sliding => {
                // `used`: this second's count; `tokens`: the previous second's.
                let u = t + 0.61;
                let s = u.floor() as u64;
                if s != self.second {
                    self.tokens = if s == self.second + 1 { self.used } else { 0.0 };
                    self.used = 0.0;
                    self.second = s;
                }
                let carried = (self.tokens * (1.0 - (u - u.floor()))).ceil();
                self.limit - self.used - carried
            }
        };
        let grant = if self.whole {
            if n as f64 <= room {
                n
            } else {
                0
            }
        } else {
            (room.max(0.0).floor() as usize).min(n)
        };
        match self.shape {
            Shape::Window | Shape::Sliding => self.used += grant as f64,
            Shape::Bucket => self.tokens -= grant as f64,
        }
        grant
    }
}

struct Run {
    share: f64,
    throttled: f64,
    requests: usize,
    found: Option<f64>,
    /// The most ops sent into one server second after the first throttled one.
    most_after: f64,
}

/// `--rate auto` for `secs` against a server of `limit` ops/s, `rtt_ms` away: the
/// share of the limit delivered, and the share of requests (whole) or ops throttled.
fn simulate(limit: f64, rtt_ms: u64, shape: Shape, whole: bool, offset: f64) -> Run {
    let secs = 30;
    let t0 = Instant::now();
    // This machine's clock and the server's agree; the run starts `offset` into a
    // second of it.
    let c = Control::new(cfg(Rate::Auto), t0, Duration::from_secs_f64(offset));
    let mut srv = Server {
        limit,
        shape,
        whole,
        second: 0,
        used: 0.0,
        tokens: limit,
        last: 0.0,
    };
    let rtt = Duration::from_millis(rtt_ms.max(1));
    // Requests in flight: (answer due, sent, ok, throttled).
    let mut flight: std::collections::VecDeque<(Duration, Duration, usize, usize)> =
        Default::default();
    let (mut ok_ops, mut requests, mut refused_requests, mut ops, mut refused_ops) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut pause_until = Duration::ZERO;
    let mut per_second: std::collections::BTreeMap<u64, f64> = Default::default();
    let mut first_refused = None;
    let step = Duration::from_micros(250);
    let mut t = Duration::ZERO;
    while t < Duration::from_secs(secs) {
        while flight.front().is_some_and(|f| f.0 <= t) {
            let (_, sent, ok, thr) = flight.pop_front().expect("front");
            if let Some(p) = c.on_answer(t0 + t, t0 + sent, ok, thr, rtt) {
                pause_until = pause_until.max(t + p);
            }
            if thr > 0 && whole && c.pause_all(Duration::from_secs(1)) {
                pause_until = pause_until.max(t + Duration::from_secs(1));
            }
        }
        while t >= pause_until
            && flight.len() < c.inflight_limit()
            && c.claim(t0 + t, 100).is_none()
        {
            let at = t.as_secs_f64() + offset + rtt.as_secs_f64() / 2.0;
            let ok = srv.admit(at, 100);
            *per_second.entry(at as u64).or_default() += 100.0;
            if ok < 100 && first_refused.is_none() {
                first_refused = Some(at as u64);
            }
            requests += 1;
            ops += 100;
            ok_ops += ok;
            if ok < 100 {
                refused_requests += 1;
                refused_ops += 100 - ok;
            }
            flight.push_back((t + rtt, t, ok, 100 - ok));
        }
        t += step;
    }
    Run {
        share: ok_ops as f64 / (limit * secs as f64),
        throttled: if whole {
            refused_requests as f64 / requests as f64
        } else {
            refused_ops as f64 / ops as f64
        },
        requests,
        found: c.limit_found(),
        most_after: first_refused.map_or(0.0, |f| {
            per_second
                .range(f + 1..)
                .map(|(_, &n)| n)
                .fold(0.0, f64::max)
        }),
    }
}

/// After the first throttled second, no second is sent more than the limit: at
/// 500/s, 200 ms away, what startup's last burst landed in the next second counts
/// against it (without that, it got six requests of 100, and a second refusal).
#[test]
fn no_second_is_sent_more_than_the_limit_once_measured() {
    for offset in [0.03, 0.37, 0.71] {
        for rtt in [100, 200] {
            let r = simulate(500.0, rtt, Shape::Window, true, offset);
            assert_eq!(r.found, Some(500.0), "offset {offset}, {rtt} ms");
            assert!(
                r.most_after <= 500.0,
                "{} at offset {offset}, {rtt} ms",
                r.most_after
            );
        }
    }
}

/// The grid of benches/grid.sh, in simulation: every round trip (and 150 ms), license
/// and refusal form, 30 s each, from three points in a second (where a run starts
/// decides where its seconds turn, and a refused request more or less).
/// - Against a limit counted per wall-clock second (the sandbox's default and, as far
///   as is known, Corezoid's): the goal, at least 0.9 of the limit and at most 2%
///   throttled, with a grain of two requests (one is 0.7% at 500/s).
/// - Against a token bucket a throttled second's count can fall short (the bucket was
///   drained before it, and the pause cuts it), so the controller climbs from a floor
///   and is throttled more often. Against a sliding window whose seconds are not the
///   wall clock's, a throttled second counts less than the limit after a burst, and
///   hold then probes up from there 1% every 10 s (docs/architecture.md). These guard
///   that both stay where they are.
#[test]
fn auto_finds_the_limit_on_every_server_of_the_grid() {
    let mut bad = Vec::new();
    for shape in [Shape::Window, Shape::Bucket, Shape::Sliding] {
        for whole in [true, false] {
            for limit in [500.0, 2000.0, 20_000.0] {
                for rtt in [0, 50, 100, 150, 200] {
                    for offset in [0.03, 0.37, 0.71] {
                        let r = simulate(limit, rtt, shape, whole, offset);
                        let line = format!(
                                "{shape:?} whole={whole} limit={limit} rtt={rtt} offset={offset}: share {:.3}, throttled {:.2}%, found {:?}",
                                r.share,
                                100.0 * r.throttled,
                                r.found.map(|f| f.round())
                            );
                        eprintln!("{line}");
                        let grain = 2.0 / r.requests as f64;
                        let (share, throttled) = match shape {
                            Shape::Window => (0.9, 0.02 + grain),
                            Shape::Bucket => (0.8, 0.09),
                            Shape::Sliding => (0.45, 0.08),
                        };
                        if r.share < share || r.throttled > throttled {
                            bad.push(line);
                        }
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "cells below the goal:\n{}", bad.join("\n"));
}
