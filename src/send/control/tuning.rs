//! Every number `--rate auto` is tuned by, in one place, each with the invariant it protects.
//!
//! The controller reads them from [`TUNING`]; nothing else in `control/` holds a tuned number
//! (unit conversions and the ratios of a formula's derivation aside). Changing one is a
//! change of behaviour: the simulator's property test (`sim.rs`) is what says whether the
//! goals still hold over the whole family of servers, never a single cell.

use std::time::Duration;

/// The controller's numbers. See the field docs for why each has its value.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// First rate, in full requests per second (times `share`): low enough that a server of
    /// the smallest license in the family (100/s) is not refused for long, high enough that
    /// startup reaches 50,000/s within a few seconds.
    pub start_requests: f64,
    /// The rate never goes below this (ops/s): a run always makes progress.
    pub min_rate: f64,
    /// ... nor above this: keeps the pacer's interval above a nanosecond.
    pub max_rate: f64,
    /// Near startup's step (seconds, lowest and highest): ten round trips within it. An
    /// overshoot on a near server is stopped a round trip later, so it may step often.
    pub startup_step: (f64, f64),
    /// Startup's rate stays within this many times what went through lately, at most and at
    /// least (`startup_cap`): the first throttled second costs the rate then times a round
    /// trip, so the farther the server the closer the cap.
    pub startup_cap: (f64, f64),
    /// Far startup's cap, lowest and highest (`far_cap`): K × limit × round trip is what an
    /// overshoot can cost; 2.5 kept the simulated grid under 1.9% refused at 200 ms.
    pub far_cap: (f64, f64),
    /// `0.3 / srtt` is both caps before clamping: 16 at 19 ms, 4 at 75 ms.
    pub cap_scale: f64,
    /// How near the turn of a second (and 5% of the round trip) a request may be seen and
    /// still be the other second's on the server's clock (seconds).
    pub edge: f64,
    /// Requests in a second below which one counted in the wrong second matters.
    pub few: f64,
    /// A round trip from which startup follows the server's count answer by answer (s).
    pub far: f64,
    /// A climb's step: a limit counted per second shows once a second's worth has gone.
    pub climb_step: Duration,
    /// A climb's factor per step.
    pub climb: f64,
    /// The share of a measured limit that `hold` sends: room for one request more or less
    /// in a second and for the pacer's wake-ups.
    pub hold_share: f64,
    /// How long after the turn of a server second a paused sender resumes (s): the round
    /// trip is not always split evenly.
    pub resume_margin: f64,
    /// How long `hold` goes unthrottled before it tries 1% more.
    pub probe: Duration,
    /// After a short first measure, quick probes double from 1% up to this.
    pub quick_probe_max: f64,
    /// Once a probe found the limit where it was, the next probe waits this long: a probe
    /// over the limit costs a round trip of refusals, and a license seldom changes.
    pub probe_again: Duration,
    /// The pacer may run ahead of now by one request and this share of a second's worth:
    /// each wait wakes a little late, and with no slack that time is lost for good (2.2%
    /// low at 5,000/s); 1% more in one second stays within a license.
    pub pacer_slack: f64,
    /// The in-flight limit is this many times what Little's law asks (rate × latency /
    /// ops a request): latency varies, and a request waiting for a slot is rate lost.
    pub inflight_headroom: f64,
    /// ... with the latency counted at most this many times the lowest seen: slower answers
    /// wait in a queue, and more in flight would only lengthen it.
    pub queue_latency: f64,
}

/// The numbers in force.
pub const TUNING: Tuning = Tuning {
    start_requests: 3.0,
    min_rate: 1.0,
    max_rate: 10_000_000.0,
    startup_step: (0.025, 0.1),
    startup_cap: (3.0, 16.0),
    far_cap: (2.5, 4.0),
    cap_scale: 0.3,
    edge: 0.01,
    few: 20.0,
    far: 0.075,
    climb_step: Duration::from_millis(1100),
    climb: 1.1,
    hold_share: 0.99,
    resume_margin: 0.02,
    probe: Duration::from_secs(10),
    quick_probe_max: 0.25,
    probe_again: Duration::from_secs(60),
    pacer_slack: 0.01,
    inflight_headroom: 1.5,
    queue_latency: 2.0,
};
