//! The report page: `Stats` in, one HTML document out, with its style inline and its
//! charts as inline SVG (`svg.rs`), so it opens from an email or a CI artifact with no
//! network and no script.

use super::aggregate::{Reasons, Stats};
use super::svg::{dur, esc, Chart, Series};
use crate::outcome::Status;
use std::fmt::Write;

/// Reasons listed per table.
const TOP_REASONS: usize = 10;

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1000px;color:#222}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}\
code{font-size:12px;word-break:break-all}.muted{color:#666}.chart{max-width:100%;height:auto}";

/// The status colours, in the charts and the count table.
pub(super) const OK: &str = "#3a9d4f";
pub(super) const REJECTED: &str = "#e6a23c";
pub(super) const FAILED: &str = "#d64545";
pub(super) const RETRIED: &str = "#3b6fd6";
pub(super) const THROTTLED: &str = "#9b3bd6";

pub fn page(st: &Stats) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let source = st.sources.join(", ");
    let logs = if st.sources.len() > 1 { "logs" } else { "log" };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>czload report: {}</title><style>{STYLE}</style></head><body><h1>czload report</h1><p class=\"muted\">From the results {logs} <code>{}</code>: {} rows.</p>",
        esc(&source),
        esc(&source),
        st.rows
    );
    run(&mut h, st);
    super::facts::facts(&mut h, st);
    inputs(&mut h, st);
    counts(&mut h, st);
    charts(&mut h, st);
    super::facts::latency_table(&mut h, st);
    super::facts::lanes(&mut h, st);
    super::facts::outcomes(&mut h, st);
    reasons(
        &mut h,
        "Top rejection reasons",
        "rejections",
        &st.rejections,
        st,
    );
    reasons(&mut h, "Top failure reasons", "failures", &st.failures, st);
    h.push_str("</body></html>\n");
    h
}

/// The runs that wrote the log: time, requests, retries, the rate asked and found.
fn run(h: &mut String, st: &Stats) {
    h.push_str("<h2>Run</h2><table id=\"runs\"><tr><th>run</th><th>time</th><th>requests</th><th>retried requests</th><th>throttled</th><th>rate asked</th><th>limit found</th><th>final rate</th><th>ended</th></tr>");
    for (i, r) in st.runs.iter().enumerate() {
        let rate = r.rate.as_ref();
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}/s"));
        let ended = match (&r.fatal, r.interrupted) {
            (Some(f), _) => format!("stopped: {}", esc(f)),
            (None, true) => "interrupted".into(),
            (None, false) => "finished".into(),
        };
        let _ = write!(
            h,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{ended}</td></tr>",
            i + 1,
            dur(r.elapsed_ms as f64 / 1000.0),
            r.requests,
            r.retries,
            r.throttled,
            esc(rate.map_or("-", |r| r.asked.as_str())),
            opt(rate.and_then(|r| r.limit_found)),
            opt(rate.and_then(|r| r.final_rate)),
        );
        if let Some(s) = rate.and_then(|r| r.shortfall.as_ref()) {
            let _ = write!(
                h,
                "<tr><td></td><td colspan=\"8\">rate not held: {}</td></tr>",
                esc(s)
            );
        }
    }
    if st.runs.is_empty() {
        h.push_str("<tr><td colspan=\"9\">No run finished writing this log (it crashed or is still running): the rows below are what it logged.</td></tr>");
    }
    h.push_str("</table>");
}

/// The manifest: inputs and the mapping.
fn inputs(h: &mut String, st: &Stats) {
    h.push_str("<h2>Inputs and mapping</h2><table id=\"inputs\"><tr><th>input</th><th>file</th><th>size</th></tr>");
    for (i, inp) in st.manifest.inputs.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td class=\"n\">{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
            i + 1,
            esc(&inp.path),
            inp.size.map_or("-".into(), |s| format!("{s} bytes"))
        );
    }
    h.push_str("</table>");
    if !st.manifest.flags.is_empty() {
        // The flags that give this mapping, as the user would type them.
        let _ = write!(
            h,
            "<p>Mapping: <code id=\"mapping-flags\">{}</code></p>",
            esc(&st.manifest.flags.join(" "))
        );
        return;
    }
    h.push_str("<table id=\"mapping\">");
    for kv in st.manifest.mapping.split(';') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let _ = write!(
            h,
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            esc(k),
            esc(v)
        );
    }
    h.push_str("</table>");
}

fn counts(h: &mut String, st: &Stats) {
    h.push_str("<h2>Rows by status</h2><table id=\"counts\"><tr><th>status</th><th>rows</th><th>share</th></tr>");
    for s in Status::ALL {
        let n = st.counts[s.index()];
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{n}</td><td class=\"n\">{:.2}%</td></tr>",
            s.as_str(),
            n as f64 * 100.0 / st.rows.max(1) as f64
        );
    }
    let _ = write!(
        h,
        "<tr><th>total</th><th class=\"n\">{}</th><th></th></tr></table>",
        st.rows
    );
    if st.untimed > 0 {
        let _ = write!(h, "<p class=\"muted\">{} rows were logged without a time (by an older czload): counted here, not in the charts.</p>", st.untimed);
    }
    if st.unreadable > 0 {
        let _ = write!(
            h,
            "<p class=\"muted\">{} lines could not be read (a crash cuts the last line short).</p>",
            st.unreadable
        );
    }
}

fn charts(h: &mut String, st: &Stats) {
    let secs = st.slots.width_ms as f64 / 1000.0;
    let per_sec = |f: &dyn Fn(&super::aggregate::Slot) -> u64| -> Vec<Option<f64>> {
        st.slots
            .v
            .iter()
            .map(|s| Some(f(s) as f64 / secs))
            .collect()
    };
    let mut hlines = Vec::new();
    if st.lanes.kinds.len() > 1 {
        // Copies side by side share one limit: each found its share.
        hlines = super::facts::limit_line(st);
    } else if let Some(rate) = st.runs.last().and_then(|r| r.rate.as_ref()) {
        if let Ok(n) = rate.asked.parse::<f64>() {
            hlines.push((format!("asked {n:.0}/s"), n, "#444"));
        }
        if let Some(l) = rate.limit_found {
            hlines.push((format!("limit found {l:.0}/s"), l, THROTTLED));
        }
    }
    let rows = Chart {
        id: "rows-chart",
        y_label: "rows settled per second",
        slot_secs: secs,
        areas: vec![
            Series::new("succeeded", OK, per_sec(&|s| s.ok)),
            Series::new("rejected", REJECTED, per_sec(&|s| s.rejected)),
            Series::new("failed or ambiguous", FAILED, per_sec(&|s| s.failed)),
        ],
        lines: vec![Series {
            dashed: true,
            ..Series::new("of them retried", RETRIED, per_sec(&|s| s.retried))
        }],
        hlines,
        marks: Some(Series::new(
            "throttled",
            THROTTLED,
            per_sec(&|s| s.throttled),
        )),
    };
    let pct = |q: f64| st.slots.v.iter().map(|s| s.percentile(q)).collect();
    let latency = Chart {
        id: "latency-chart",
        y_label: "latency, ms",
        slot_secs: secs,
        areas: vec![],
        lines: vec![
            Series::new("p50", OK, pct(0.5)),
            Series::new("p90", REJECTED, pct(0.9)),
            Series::new("p99", FAILED, pct(0.99)),
        ],
        hlines: vec![],
        marks: None,
    };
    let slot = if secs == 1.0 {
        "second".to_string()
    } else {
        format!("second (averaged over slots of {secs} s)")
    };
    let _ = write!(
        h,
        "<h2>Rows settled per {slot}</h2><p class=\"muted\">Stacked by status; the dashed line is rows that needed more than one attempt; the marks above the chart are where rows were throttled (darker: more).</p>{}",
        rows.render()
    );
    let _ = write!(
        h,
        "<h2>Latency</h2><p class=\"muted\">Of the request that settled each row, per slot (from an HDR histogram: exact to 1 ms up to 256 ms, within 1% above).</p>{}",
        latency.render()
    );
}

fn reasons(h: &mut String, title: &str, id: &str, r: &Reasons, st: &Stats) {
    let _ = write!(h, "<h2>{title}</h2>");
    let top = r.top(TOP_REASONS);
    if top.is_empty() {
        h.push_str("<p>None.</p>");
        return;
    }
    let _ = write!(
        h,
        "<table id=\"{id}\"><tr><th>reason (quoted values left out)</th><th>rows</th><th>example rows (input line)</th></tr>"
    );
    let multi = st.manifest.inputs.len() > 1;
    for (text, reason) in &top {
        let ex: Vec<String> = reason
            .examples
            .iter()
            .map(|(input, line)| match multi {
                true => format!("{}:{line}", input + 1),
                false => format!("line {line}"),
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(text),
            reason.rows,
            ex.join(", ")
        );
    }
    let shown: u64 = top.iter().map(|(_, r)| r.rows).sum();
    let rest = r.total() - shown;
    if rest > 0 {
        let _ = write!(
            h,
            "<tr><td class=\"muted\">{} other reasons</td><td class=\"n\">{rest}</td><td></td></tr>",
            r.distinct().saturating_sub(top.len()) + usize::from(r.other > 0)
        );
    }
    h.push_str("</table>");
}
