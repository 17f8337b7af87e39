//! `--metrics FILE` and `--metrics-push URL`: the run's figures, at its end, in the
//! Prometheus text exposition format (version 0.0.4): for node_exporter's textfile
//! collector (a file in its directory, replaced whole by a rename so that it never reads
//! half a file) and for a Pushgateway, the Prometheus convention for batch jobs. In: the
//! `Summary`. Out: the file, or the body of the push (`push` in `crate::run`, async).
//!
//! Every figure is a gauge: a batch job's counts describe its last run, not a counter
//! that grows across runs. `czload_last_success_timestamp_seconds` is the time of the last
//! run that exited 0: a failed run keeps the one before (read back from the file, or
//! left on the Pushgateway by pushing with POST, which replaces only the metrics sent),
//! so that an alert on "no success for a day" works.

use super::summary::Summary;
use super::Sink;
use crate::error::{Error, Result};
use crate::outcome::Status;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The first line of every metrics file czload writes: how it knows its own file, to
/// replace it, from a user's, which it refuses to (a comment to Prometheus).
pub const MARK: &str = "# czload metrics";

/// The name of the gauge that survives a failed run.
const LAST_SUCCESS: &str = "czload_last_success_timestamp_seconds";

/// Exposition text being written: gauges, each series under the run's own labels.
struct Exposition {
    out: String,
    /// `shard="i/N"` for a copy, else empty.
    labels: String,
}

impl Exposition {
    fn gauge(&mut self, name: &str, help: &str, series: &[(&str, f64)]) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (extra, v) in series {
            let l = [self.labels.as_str(), extra]
                .iter()
                .filter(|l| !l.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(",");
            let l = if l.is_empty() { l } else { format!("{{{l}}}") };
            let _ = writeln!(self.out, "{name}{l} {v}");
        }
    }
}

/// The exposition text of a run that ended with `exit` at `now` (Unix seconds);
/// `last_success` is the previous success when this run is not one.
pub fn render(s: &Summary, exit: i32, now: f64, last_success: Option<f64>) -> String {
    let labels = s
        .shard
        .as_ref()
        .map_or(String::new(), |sh| format!("shard=\"{}\"", escape(sh)));
    let mut text = Exposition {
        out: format!("{MARK} {}\n", env!("CARGO_PKG_VERSION")),
        labels,
    };
    let mut gauge = |name: &str, help: &str, series: &[(&str, f64)]| text.gauge(name, help, series);
    let statuses = statuses(s);
    let statuses: Vec<(&str, f64)> = statuses.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    gauge(
        "czload_rows",
        "Rows of the last run by final status (unsettled: left for --resume).",
        &statuses,
    );
    let one = |v: f64| [("", v)];
    let rate = s.rate.as_ref();
    // The figures of one value each; the rate ones only when --rate auto found them.
    let scalars = [
        (
            "czload_rows_skipped",
            "Rows the last run skipped as settled by an earlier one (--resume).",
            Some(s.skipped as f64),
        ),
        (
            "czload_requests",
            "Requests sent by the last run.",
            Some(s.requests as f64),
        ),
        (
            "czload_retries",
            "Requests sent again (errors, throttling).",
            Some(s.retries as f64),
        ),
        (
            "czload_throttled",
            "Requests the server throttled.",
            Some(s.throttled as f64),
        ),
        (
            "czload_duration_seconds",
            "How long the last run took.",
            Some(s.elapsed_secs),
        ),
        (
            "czload_rows_per_second",
            "Rows settled per second, whole run.",
            Some(s.rows_per_sec),
        ),
        (
            "czload_rate_limit_found",
            "Ops/s the server's limit was found at (--rate auto).",
            rate.and_then(|r| r.limit_found),
        ),
        (
            "czload_rate_final",
            "Ops/s being sent at the end (--rate auto).",
            rate.and_then(|r| r.final_rate),
        ),
    ];
    for (name, help, v) in scalars {
        if let Some(v) = v {
            gauge(name, help, &one(v));
        }
    }
    gauge(
        "czload_latency_seconds",
        "Request latency of the last run.",
        &[
            ("quantile=\"0.5\"", s.latency.p50_ms / 1000.0),
            ("quantile=\"0.99\"", s.latency.p99_ms / 1000.0),
            ("quantile=\"1\"", s.latency.max_ms / 1000.0),
        ],
    );
    gauge(
        "czload_exit_code",
        "The last run's exit code (0: every row succeeded).",
        &one(exit as f64),
    );
    gauge(
        "czload_last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        &one(now),
    );
    if let Some(t) = if exit == 0 { Some(now) } else { last_success } {
        gauge(
            LAST_SUCCESS,
            "When the last run that exited 0 ended (Unix time).",
            &one(t),
        );
    }
    text.out
}

/// Rows by final status as labelled series (unsettled: left for `--resume`).
fn statuses(s: &Summary) -> Vec<(String, f64)> {
    Status::ALL
        .iter()
        .map(|&st| {
            (
                format!("status=\"{}\"", st.as_str()),
                s.counts.get(st) as f64,
            )
        })
        .chain([("status=\"unsettled\"".to_string(), s.unsettled as f64)])
        .collect()
}

/// A label value as the exposition format quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The last success a metrics file czload wrote records, if any.
fn last_success_in(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(LAST_SUCCESS))
        .and_then(|rest| rest.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `path` holds a metrics file czload wrote (its first bytes are `MARK`). Only a
/// regular file is opened: opening a FIFO would wait for a writer.
pub fn is_own(path: &Path) -> bool {
    crate::outpath::read_regular(path, MARK.len() as u64).is_some_and(|h| h == MARK.as_bytes())
}

/// Unix time now, in seconds.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `--metrics FILE`, written when the run ends.
pub struct MetricsFile {
    path: PathBuf,
}

impl MetricsFile {
    pub fn new(path: PathBuf) -> MetricsFile {
        MetricsFile { path }
    }
}

impl Sink for MetricsFile {
    fn report(&mut self, s: &Summary) -> Result<()> {
        // Never waits on a FIFO put there during the run (docs/outputs.md).
        let last = crate::outpath::read_regular(&self.path, 1 << 20)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|t| t.starts_with(MARK))
            .and_then(|t| last_success_in(&t));
        let text = render(s, s.exit_code(), unix_now(), last);
        // A collector reads the old file or the new one, never half of one; and only a
        // metrics file czload wrote is replaced (docs/outputs.md).
        crate::outpath::replace_with(&self.path, crate::outpath::Kind::Metrics, text.as_bytes())
            .map_err(|e| Error::file(&self.path, format!("cannot write the metrics: {e}")))
    }
}

/// Pushes `s` to `url`: PUT (replacing the group) after a success, POST (replacing only
/// the metrics sent, so the last success stays) otherwise.
pub async fn push(url: &str, s: &Summary, exit: i32) -> std::result::Result<(), String> {
    let text = render(s, exit, unix_now(), None);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let req = if exit == 0 {
        client.put(url)
    } else {
        client.post(url)
    };
    let answer = req
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(text)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    match answer.status() {
        st if st.is_success() => Ok(()),
        st => Err(format!("the Pushgateway answered HTTP {}", st.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        let mut s = Summary {
            rows: 5,
            requests: 2,
            elapsed_secs: 1.5,
            ..Summary::default()
        };
        for _ in 0..4 {
            s.counts.add(Status::Created);
        }
        s.counts.add(Status::Rejected);
        s
    }

    /// Every sample line is `name{labels} value` with a declared TYPE, as the format wants.
    #[test]
    fn the_text_is_well_formed_exposition_with_every_status() {
        let mut s = summary();
        s.shard = Some("1/3".into());
        let text = render(&s, 2, 1000.0, Some(900.0));
        assert!(text.starts_with(MARK), "{text}");
        let mut typed = Vec::new();
        for l in text.lines().skip(1) {
            if let Some(t) = l.strip_prefix("# TYPE ") {
                typed.push(t.split(' ').next().unwrap().to_string());
                assert!(t.ends_with(" gauge"), "{l}");
                continue;
            }
            if l.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
            let name = series.split('{').next().unwrap();
            assert!(typed.iter().any(|t| t == name), "{l}: no TYPE");
            assert!(series.contains("shard=\"1/3\""), "{l}");
        }
        for st in Status::ALL {
            assert!(
                text.contains(&format!("status=\"{}\"", st.as_str())),
                "{st:?}"
            );
        }
        assert!(
            text.contains("czload_rows{shard=\"1/3\",status=\"created\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("czload_exit_code{shard=\"1/3\"} 2\n"));
        // Not a success: the earlier success is kept.
        assert_eq!(last_success_in(&text), Some(900.0));
        let ok = render(&summary(), 0, 1000.0, Some(900.0));
        assert_eq!(last_success_in(&ok), Some(1000.0));
        assert!(!render(&summary(), 1, 1000.0, None).contains(LAST_SUCCESS));
    }
}
