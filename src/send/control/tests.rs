use super::*;

fn cfg(rate: Rate) -> ControlConfig {
    ControlConfig {
        rate,
        share: 1.0,
        concurrency: None,
        max_concurrency: DEFAULT_MAX_CONCURRENCY,
        batch_size: 100,
        start: None,
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
