//! The circuit breaker: an outage of the server is the run's, not each batch's.
//!
//! In: what became of each attempt (the server unreachable, or any answer). Out: whether
//! an attempt may go now, and since when the server is away (`Breaker::down_since`, read
//! by the progress display). Once a connection is refused, every sender waits; one probe
//! at a time goes out, with backoff; the first answer of any kind closes the breaker and
//! every sender goes on. The attempts of rows that could not even connect are not
//! charged (sender.rs), so an outage shorter than `--max-retry-time` fails no row, and
//! while the server is away one request probes instead of every batch spending its
//! attempts (docs/architecture.md, "Sender tasks").

use super::http::Reply;
use super::retry::TransportError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest wait between two probes: the run should notice a server that is back soon.
const PROBE_CAP: Duration = Duration::from_secs(5);
/// How often a long outage is mentioned again.
const REMIND: Duration = Duration::from_secs(30);
/// How often a waiting sender looks again.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    /// Unix milliseconds since the server is unreachable; 0 while it answers.
    down_since: Arc<AtomicU64>,
    /// The server answered at least once (a lock-free copy of `State::answered`).
    ever: std::sync::atomic::AtomicBool,
    base: Duration,
}

#[derive(Debug)]
struct State {
    /// Set while the server is unreachable.
    down: Option<Down>,
    /// The server answered at least once in this run.
    answered: bool,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    /// When the user was last told (a long outage is mentioned again now and then).
    said: Instant,
    /// A probe is out.
    probing: bool,
    next_probe: Instant,
    /// Probes failed so far: the backoff doubles with each.
    failed: u32,
}

/// What a sender may do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Go {
    /// The server answers: send.
    Send,
    /// The server is away and this attempt is the probe.
    Probe,
    /// The server is away and another sender probes: wait this long, then ask again.
    Wait(Duration),
}

impl Breaker {
    /// `base`: the first wait between probes (doubles, up to `PROBE_CAP`).
    pub fn new(base: Duration) -> Breaker {
        Breaker {
            state: Mutex::new(State {
                down: None,
                answered: false,
            }),
            down_since: Arc::new(AtomicU64::new(0)),
            ever: std::sync::atomic::AtomicBool::new(false),
            base,
        }
    }

    /// Unix milliseconds since the server is unreachable (0: it answers), shared.
    pub fn down_since(&self) -> Arc<AtomicU64> {
        self.down_since.clone()
    }

    /// Whether an attempt may go at `now`.
    pub fn go(&self, now: Instant) -> Go {
        let Ok(mut st) = self.state.lock() else {
            return Go::Send;
        };
        match &mut st.down {
            None => Go::Send,
            Some(d) if !d.probing && now >= d.next_probe => {
                d.probing = true;
                Go::Probe
            }
            Some(d) if !d.probing => Go::Wait((d.next_probe - now).min(POLL)),
            Some(_) => Go::Wait(POLL),
        }
    }

    /// An attempt could not reach the server. `probe`: it was the probe.
    pub fn unreachable(&self, now: Instant, probe: bool, why: &str) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match &mut st.down {
            None => {
                let ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_millis() as u64);
                self.down_since.store(ms.max(1), Ordering::Relaxed);
                tracing::warn!(
                    "server unreachable since {} UTC ({why}), retrying; rows are not charged attempts meanwhile",
                    clock(ms / 1000)
                );
                st.down = Some(Down {
                    since: now,
                    said: now,
                    probing: false,
                    next_probe: now + self.base,
                    failed: 0,
                });
            }
            Some(d) if probe => {
                d.failed += 1;
                d.probing = false;
                let wait = self
                    .base
                    .saturating_mul(1 << d.failed.min(16))
                    .min(PROBE_CAP);
                d.next_probe = now + wait;
                if now.saturating_duration_since(d.said) >= REMIND {
                    d.said = now;
                    tracing::warn!(
                        "server unreachable since {} UTC ({why}), retrying",
                        clock(self.down_since.load(Ordering::Relaxed) / 1000)
                    );
                }
            }
            Some(_) => {}
        }
    }

    /// The server answered (anything): every sender goes on.
    pub fn answered(&self) {
        if self.down_since.load(Ordering::Relaxed) == 0 {
            // The common case: one atomic load, no lock. `answered` is set at the first
            // answer, below, and never reset.
            if self.ever.load(Ordering::Relaxed) {
                return;
            }
        }
        if let Ok(mut st) = self.state.lock() {
            st.answered = true;
            self.ever.store(true, Ordering::Relaxed);
            if let Some(d) = st.down.take() {
                self.down_since.store(0, Ordering::Relaxed);
                tracing::warn!(
                    "the server answers again after {:.0} s",
                    d.since.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// Takes in what `reply`, come at `now`, says of the server. False when it could not
    /// be reached at all (the attempt is then not charged to the rows).
    pub fn track(&self, reply: &Reply, probe: bool, now: Instant) -> bool {
        match reply {
            Reply::Http { .. } => {
                self.answered();
                true
            }
            Reply::Transport(TransportError::Connect, msg) => {
                self.unreachable(now, probe, msg);
                false
            }
            Reply::Transport(_, msg) => {
                // Connected, then no answer: not an outage by itself, but a probe that
                // got no answer did not find the server back.
                if probe {
                    self.unreachable(now, true, msg);
                }
                true
            }
        }
    }

    /// Why the run should stop: the server has been away longer than `max_retry_time`,
    /// or, if it never answered in this run (`--url` is likely wrong), 10 s. `base`: the
    /// server's URL, for the message.
    pub fn give_up(&self, now: Instant, max_retry_time: Duration, base: &str) -> Option<String> {
        let (down, ever) = {
            let st = self.state.lock().ok()?;
            let d = st.down.as_ref()?;
            (now.saturating_duration_since(d.since), st.answered)
        };
        let limit = if ever {
            max_retry_time
        } else {
            max_retry_time.min(Duration::from_secs(10))
        };
        if down < limit {
            return None;
        }
        let since = clock(self.down_since.load(Ordering::Relaxed) / 1000);
        Some(if ever {
            format!(
                "the server has been unreachable since {since} UTC, longer than --max-retry-time ({:.0} s); the rows not settled are resumable with --resume",
                limit.as_secs_f64()
            )
        } else {
            format!("could not connect to {base} since the start ({since} UTC); check --url and the network")
        })
    }

    /// A probe that never went out (the run stopped): let another sender probe.
    pub fn probe_dropped(&self) {
        if let Ok(mut st) = self.state.lock() {
            if let Some(d) = &mut st.down {
                d.probing = false;
            }
        }
    }
}

/// `HH:MM:SS` of a Unix time, in UTC.
pub fn clock(unix_secs: u64) -> String {
    let s = unix_secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_at_a_time_with_backoff_until_an_answer() {
        let b = Breaker::new(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(b.go(t), Go::Send);
        b.unreachable(t, false, "refused");
        assert_ne!(b.down_since().load(Ordering::Relaxed), 0);
        // Everyone waits for the first probe time.
        assert!(matches!(b.go(t), Go::Wait(_)));
        let t1 = t + Duration::from_millis(100);
        assert_eq!(b.go(t1), Go::Probe);
        // Only one probe.
        assert_eq!(b.go(t1), Go::Wait(POLL));
        // Another failure in flight does not move the probe time.
        b.unreachable(t1, false, "refused");
        b.unreachable(t1, true, "refused");
        assert!(matches!(b.go(t1 + Duration::from_millis(150)), Go::Wait(_)));
        assert_eq!(b.go(t1 + Duration::from_millis(200)), Go::Probe);
        b.answered();
        assert_eq!(b.go(t1), Go::Send);
        assert_eq!(b.down_since().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn gives_up_after_the_retry_time_or_10_s_for_a_server_never_reached() {
        let b = Breaker::new(Duration::from_millis(100));
        let t = Instant::now();
        let max = Duration::from_secs(300);
        assert_eq!(b.give_up(t, max, "http://x"), None);
        b.unreachable(t, false, "refused");
        assert_eq!(b.give_up(t + Duration::from_secs(9), max, "http://x"), None);
        let never = b
            .give_up(t + Duration::from_secs(10), max, "http://x")
            .unwrap();
        assert!(never.contains("could not connect to http://x"), "{never}");

        let b = Breaker::new(Duration::from_millis(100));
        b.answered();
        b.unreachable(t, false, "refused");
        assert_eq!(b.give_up(t + Duration::from_secs(299), max, "u"), None);
        let away = b.give_up(t + max, max, "u").unwrap();
        assert!(
            away.contains("longer than --max-retry-time (300 s)"),
            "{away}"
        );
    }

    #[test]
    fn probes_back_off_to_the_cap() {
        let b = Breaker::new(Duration::from_millis(100));
        let mut t = Instant::now();
        b.unreachable(t, false, "x");
        for _ in 0..20 {
            t += PROBE_CAP;
            assert_eq!(b.go(t), Go::Probe);
            b.unreachable(t, true, "x");
        }
        assert!(matches!(
            b.go(t + PROBE_CAP - Duration::from_millis(1)),
            Go::Wait(_)
        ));
        assert_eq!(b.go(t + PROBE_CAP), Go::Probe);
    }
}
