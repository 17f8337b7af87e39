//! Every number `--rate auto` is tuned by, in one place, each with the invariant it protects.
//!
//! The controller reads them from [`TUNING`]; nothing else in `control/` holds a tuned
//! number. Changing one is a change of behaviour: the simulator's property test
//! (`sim/family.rs`) says whether the goals still hold over the whole family of servers,
//! never a single cell.

/// The controller's numbers. See each field for why it has its value.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// First rate, in full requests per second (times `share`), when no start is known:
    /// low enough that the smallest license of the family (100/s) is not refused long.
    pub start_requests: f64,
    /// The rate stays within these (ops/s): a run always makes progress, and the pacer's
    /// interval stays above a nanosecond.
    pub min_rate: f64,
    pub max_rate: f64,
    /// Startup multiplies the rate by `startup_growth` every `startup_rtts` round trips (at
    /// least `startup_step` seconds). A limit counted over a second (or a bucket's burst)
    /// refuses only once a second's worth (the burst) has gone, and all sent in the round
    /// trip before the first refusal returns is refused too: about limit × ln(growth) ×
    /// round trip / step ops, whatever the round trip. Startup takes step × ln(limit /
    /// start) / ln(growth): 1.65 (ln 0.5) keeps the first at about 0.5 s of the limit
    /// (under 2% of 30 s) and reaches 50,000/s from 300 in 2.6 s at 250 ms.
    pub startup_growth: f64,
    /// ... and stays within this many times the most the server took in a second (or the
    /// start): a second's count lags a rate growing so by some 0.4 s, so this binds only
    /// past the limit, and holds the first overrun to this many times it.
    pub startup_cap: f64,
    pub startup_rtts: f64,
    pub startup_step: f64,
    /// A cut sets the rate to this share of what the server took over `horizon` seconds
    /// (multiplicative decrease): below the limit by more than a request's lumpiness, so
    /// the next seconds are not refused, and (as in AIMD) a copy sending more than its
    /// share, refused more often, gives more back, so copies converge to fair shares.
    pub cut: f64,
    /// The first cut, ending startup: its measure spans a second of a climbing rate, and
    /// a window fills only at its end (the sum of a second passes the limit when the rate
    /// is already some 2.5 times it), so what it found may be well over the limit. From
    /// this much lower the regrowth crosses the limit again within a second, where the
    /// next cut measures a second sent at about the limit.
    pub exit_cut: f64,
    /// The accepted rate is measured over this many seconds (and two round trips): a
    /// license counted per second shows its rate over a second, whatever its shape.
    pub horizon: f64,
    /// After a cut the rate grows back to `plateau` × the rate found in `regrow` seconds
    /// (concave, as CUBIC's), and stays there `hold` seconds: most of the time is spent
    /// just under the limit, which is the steady state's share.
    pub regrow: f64,
    pub plateau: f64,
    pub hold: f64,
    /// ... twice as long each time a cut finds the limit within `same` of the last, up to
    /// `hold_max`: each probe past a limit costs a round trip of refusals, and a license
    /// seldom moves; a change is found at the next probe, or by the refusals it causes.
    pub hold_max: f64,
    pub same: f64,
    /// Then it probes: × exp(`probe` · t²), t seconds into the probe (convex): 1% after
    /// 0.45 s, 2.2 times after 4 s, so a license freed by other clients is found within
    /// seconds, while crossing the old limit is quick and so refused for little.
    pub probe: f64,
    /// A refusal of a request that left within `cover` seconds after a cut is the same
    /// overrun (a window or a log still counting it): it does not cut again, it pauses.
    pub cover: f64,
    /// Such refusals pause the copy, from `pause_min` seconds doubling to `pause_max`, one
    /// request in flight until one is accepted: a full window costs a request a pause.
    pub pause_min: f64,
    pub pause_max: f64,
    /// The sender kept up with the rate if it claimed this share of it: if not,
    /// something else binds (the in-flight ceiling, the input) and more proves nothing.
    pub kept_up: f64,
    /// The pacer may run ahead of now by one request and this share of a second's worth:
    /// each wait wakes a little late, and with no slack that time is lost for good (2.2%
    /// low at 5,000/s); 1% more in one second stays within a license.
    pub pacer_slack: f64,
    /// The in-flight limit is this many times what Little's law asks (rate × latency /
    /// ops a request): latency varies, and a request waiting for a slot is rate lost.
    pub inflight_headroom: f64,
    /// ... with the latency counted at most this many times the lowest seen: slower
    /// answers wait in a queue, and more in flight would only lengthen it.
    pub queue_latency: f64,
}

/// The numbers in force.
pub const TUNING: Tuning = Tuning {
    start_requests: 3.0,
    min_rate: 1.0,
    max_rate: 10_000_000.0,
    startup_growth: 1.65,
    startup_cap: 2.5,
    startup_rtts: 1.0,
    startup_step: 0.05,
    cut: 0.92,
    exit_cut: 0.6,
    horizon: 1.0,
    regrow: 1.0,
    plateau: 0.985,
    hold: 6.0,
    hold_max: 12.0,
    same: 0.03,
    probe: 0.05,
    cover: 1.0,
    pause_min: 0.01,
    pause_max: 1.0,
    kept_up: 0.8,
    pacer_slack: 0.01,
    inflight_headroom: 1.5,
    queue_latency: 2.0,
};
