//! The report's sections beyond the rows: the facts of each run (start, version,
//! command line, target), the lanes of copies drawn side by side, the requests by what
//! came of them, and the run-wide latency percentiles. `html.rs` calls them in order.

use super::aggregate::Stats;
use super::html::{FAILED, OK, REJECTED, RETRIED, THROTTLED};
use super::svg::{esc, Chart, Series};
use std::fmt::Write;

/// Colours for lanes and request kinds beyond the status ones.
const PALETTE: [&str; 10] = [
    "#3b6fd6", "#3a9d4f", "#e6a23c", "#9b3bd6", "#d64545", "#17a2b8", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22",
];

/// When and how each run was started, and where it loaded to.
pub fn facts(h: &mut String, st: &Stats) {
    if st.runs.iter().all(|r| r.facts.start.is_none()) {
        return;
    }
    h.push_str("<h2>Run facts</h2><table id=\"facts\"><tr><th>run</th><th>started (UTC)</th><th>czload</th><th>copy</th><th>target</th><th>command line</th></tr>");
    for (i, r) in st.runs.iter().enumerate() {
        let f = &r.facts;
        let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or("-"));
        let _ = write!(
            h,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            i + 1,
            opt(&f.start),
            opt(&f.version),
            opt(&f.shard),
            opt(&f.target),
            esc(&f.command.join(" "))
        );
    }
    h.push_str("</table>");
}

/// Rows per second of each copy and of all of them, on one wall-clock axis.
pub fn lanes(h: &mut String, st: &Stats) {
    if st.lanes.kinds.len() < 2 {
        return;
    }
    let (w, n) = (st.slots.width_ms, st.slots.v.len());
    let mut lines: Vec<Series> = st
        .lanes
        .kinds
        .keys()
        .enumerate()
        .map(|(i, k)| Series::new(k, PALETTE[i % PALETTE.len()], st.lanes.per_second(k, w, n)))
        .collect();
    let secs = w as f64 / 1000.0;
    let total = st
        .slots
        .v
        .iter()
        .map(|s| Some(s.settled() as f64 / secs))
        .collect();
    lines.push(Series {
        dashed: true,
        ..Series::new("all copies", "#222", total)
    });
    let chart = Chart {
        id: "lanes-chart",
        y_label: "rows settled per second",
        slot_secs: secs,
        areas: vec![],
        lines,
        hlines: limit_line(st),
        marks: None,
    };
    let _ = write!(
        h,
        "<h2>Copies side by side</h2><p class=\"muted\">Each copy's rows settled per second, by the wall-clock time in its log; dashed: all copies together.</p>{}",
        chart.render()
    );
}

/// The limit the copies found together: each copy's share added up.
pub(super) fn limit_line(st: &Stats) -> Vec<(String, f64, &'static str)> {
    let found: f64 = st
        .runs
        .iter()
        .filter_map(|r| r.rate.as_ref().and_then(|r| r.limit_found))
        .sum();
    if found > 0.0 {
        vec![(
            format!("limits found, added {found:.0}/s"),
            found,
            THROTTLED,
        )]
    } else {
        vec![]
    }
}

/// The colour of a kind of request outcome: accepted green, throttled purple, server
/// errors red and orange, the network blue and grey.
fn kind_color(kind: &str, i: usize) -> &'static str {
    match kind {
        "answered" => OK,
        "429 throttled" => THROTTLED,
        "503" => FAILED,
        "502" | "504" | "500" => REJECTED,
        "timeout" => RETRIED,
        "connection refused" | "connection broken" => "#7f7f7f",
        _ => PALETTE[(i + 5) % PALETTE.len()],
    }
}

/// Requests per second by what came of them, and their totals.
pub fn outcomes(h: &mut String, st: &Stats) {
    let totals = st.outcomes.totals();
    if totals.is_empty() {
        return;
    }
    let (w, n) = (st.slots.width_ms, st.slots.v.len().max(1));
    // Errors at the bottom, where they are seen; the answered ones on top.
    let mut kinds: Vec<&str> = totals.iter().map(|t| t.0).collect();
    kinds.sort_by_key(|k| (*k == "answered", *k));
    let areas = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| Series::new(k, kind_color(k, i), st.outcomes.per_second(k, w, n)))
        .collect();
    let chart = Chart {
        id: "outcomes-chart",
        y_label: "requests per second",
        slot_secs: w as f64 / 1000.0,
        areas,
        lines: vec![],
        hlines: vec![],
        marks: None,
    };
    let _ = write!(
        h,
        "<h2>Requests by outcome</h2><p class=\"muted\">Every request sent, stacked by what came of it: answered (the ops in it then settled one by one), refused by the rate limit (429), a server error (each 5xx apart), a timeout, or a connection that failed.</p>{}<table id=\"outcomes\"><tr><th>outcome</th><th>requests</th><th>share</th></tr>",
        chart.render()
    );
    let all: u64 = totals.iter().map(|t| t.1).sum();
    for (k, n) in &totals {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{n}</td><td class=\"n\">{:.2}%</td></tr>",
            esc(k),
            *n as f64 * 100.0 / all.max(1) as f64
        );
    }
    h.push_str("</table>");
}

/// The run-wide latency percentiles.
pub fn latency_table(h: &mut String, st: &Stats) {
    let l = &st.latency;
    if l.is_empty() {
        return;
    }
    h.push_str("<table id=\"latency\"><tr><th>rows</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    let q = |q: f64| format!("{} ms", l.value_at_quantile(q));
    let _ = write!(
        h,
        "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} ms</td></tr></table>",
        l.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        l.max()
    );
}
