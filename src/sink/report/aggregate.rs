//! The results log, read once into what the report shows. In: the log's lines. Out:
//! `Stats`: counts per status, per time slot the rows settled (by kind), retried and
//! throttled and a latency histogram, the top reasons with example lines, and each run's
//! `RunLine`. Nothing here grows with the number of rows but the reason table, which is
//! capped at `MAX_REASONS` distinct texts.

use crate::error::{Error, Result};
use crate::outcome::Status;
use crate::send::Outcomes;
use crate::sink::results::{Manifest, ResultLine, RunLine};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The most time slots kept; past it two neighbours merge and the slot doubles.
pub const MAX_SLOTS: usize = 600;
/// Latency histograms: the largest value kept apart (an hour, in ms; more is counted
/// as an hour) and the significant digits, 2 per slot (exact to 1 ms up to 256 ms,
/// within 1% above; 8 KB a slot) and 3 for the whole run.
const LAT_MAX_MS: u64 = 3_600_000;
const SLOT_DIGITS: u8 = 2;
const RUN_DIGITS: u8 = 3;
/// Distinct reason texts counted one by one; rarer ones past this are "other reasons".
const MAX_REASONS: usize = 2000;
/// Example lines kept per reason.
const EXAMPLES: usize = 5;

/// What one time slot saw.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Rows that succeeded (created, modified, exists).
    pub ok: u64,
    pub rejected: u64,
    /// Failed or ambiguous.
    pub failed: u64,
    /// Rows that took more than one attempt.
    pub retried: u64,
    /// Rows a rate limit refused at least once.
    pub throttled: u64,
    /// Of the request that settled each row, in ms.
    pub latency: Histogram<u32>,
}

/// An empty latency histogram with `digits` significant digits.
pub fn histogram<T: hdrhistogram::Counter>(digits: u8) -> Histogram<T> {
    Histogram::new_with_bounds(1, LAT_MAX_MS, digits).expect("the bounds are valid")
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            ok: 0,
            rejected: 0,
            failed: 0,
            retried: 0,
            throttled: 0,
            latency: histogram(SLOT_DIGITS),
        }
    }
}

impl Slot {
    pub fn settled(&self) -> u64 {
        self.ok + self.rejected + self.failed
    }

    fn merge(&mut self, o: &Slot) {
        self.ok += o.ok;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.retried += o.retried;
        self.throttled += o.throttled;
        // Same bounds, so adding cannot fail.
        let _ = self.latency.add(&o.latency);
    }

    /// The latency (ms) below which `q` (0..1) of this slot's rows were answered.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q) as f64)
    }
}

/// Time slots of `width_ms` each, from the start of the first run.
#[derive(Debug, Clone)]
pub struct Slots {
    pub width_ms: u64,
    pub v: Vec<Slot>,
}

impl Slots {
    fn at(&mut self, t_ms: u64) -> &mut Slot {
        let mut i = (t_ms / self.width_ms) as usize;
        while i >= MAX_SLOTS {
            // Twice as wide: neighbours merge, so the memory stays bounded.
            let merged = self
                .v
                .chunks(2)
                .map(|c| {
                    let mut s = c[0].clone();
                    if let Some(o) = c.get(1) {
                        s.merge(o);
                    }
                    s
                })
                .collect();
            self.v = merged;
            self.width_ms *= 2;
            i = (t_ms / self.width_ms) as usize;
        }
        if self.v.len() <= i {
            self.v.resize(i + 1, Slot::default());
        }
        &mut self.v[i]
    }
}

/// One reason text: how many rows gave it, and the first few of them.
#[derive(Debug, Clone, Default)]
pub struct Reason {
    pub rows: u64,
    /// (input index, line) of the first rows with this reason.
    pub examples: Vec<(u32, u64)>,
}

/// Reasons by text, capped at `MAX_REASONS` texts.
#[derive(Debug, Default)]
pub struct Reasons {
    by_text: HashMap<String, Reason>,
    /// Rows whose reason came after the table was full.
    pub other: u64,
}

/// A reason with the values it quotes left out, so that rows refused for the same
/// reason group together: every quoted string after the first (which names the column
/// or field) becomes `"…"`. `column "n": "x1" is not an integer` and the same with `"x2"`
/// are one reason.
pub fn shape(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut quoted = 0;
    let mut chars = reason.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' {
            continue;
        }
        quoted += 1;
        let mut inner = String::new();
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    inner.push(c);
                    inner.extend(chars.next());
                }
                '"' => {
                    closed = true;
                    break;
                }
                c => inner.push(c),
            }
        }
        out.push_str(if quoted == 1 { &inner } else { "…" });
        if closed {
            out.push('"');
        }
    }
    out
}

impl Reasons {
    fn add(&mut self, text: &str, input: u32, line: u64) {
        let shaped = shape(text);
        let text = shaped.as_str();
        if !self.by_text.contains_key(text) {
            if self.by_text.len() >= MAX_REASONS {
                self.other += 1;
                return;
            }
            self.by_text.insert(text.to_string(), Reason::default());
        }
        let Some(r) = self.by_text.get_mut(text) else {
            return;
        };
        r.rows += 1;
        if r.examples.len() < EXAMPLES {
            r.examples.push((input, line));
        }
    }

    /// The `n` most frequent, most rows first.
    pub fn top(&self, n: usize) -> Vec<(&str, &Reason)> {
        let mut v: Vec<_> = self.by_text.iter().map(|(k, r)| (k.as_str(), r)).collect();
        v.sort_by(|a, b| b.1.rows.cmp(&a.1.rows).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    pub fn total(&self) -> u64 {
        self.by_text.values().map(|r| r.rows).sum::<u64>() + self.other
    }

    pub fn distinct(&self) -> usize {
        self.by_text.len()
    }
}

/// Everything the report shows.
#[derive(Debug)]
pub struct Stats {
    /// The first log's manifest (the copies of one load share it but for `shard`).
    pub manifest: Manifest,
    /// The logs read, as named.
    pub sources: Vec<String>,
    pub rows: u64,
    pub counts: [u64; Status::COUNT],
    pub slots: Slots,
    /// Every row's latency (ms), for the run-wide percentiles.
    pub latency: Histogram<u64>,
    pub rejections: Reasons,
    pub failures: Reasons,
    /// The `run` line of each run that wrote the log (a crash leaves none).
    pub runs: Vec<RunLine>,
    /// Requests by what came of them, on the report's time axis (from the run lines).
    pub outcomes: Outcomes,
    /// Rows settled per lane (a copy, `--shard i/N`, or a log), on the same axis; only
    /// when several logs or a merged one are drawn on one wall-clock axis.
    pub lanes: Outcomes,
    /// Rows whose line has no time (written by an older czload): counted, not charted.
    pub untimed: u64,
    /// Lines that are neither a row nor a run line (a crash can cut the last one).
    pub unreadable: u64,
    /// With several logs or a merged one: the wall-clock time (ms since the epoch) the
    /// axis starts at, so copies that ran side by side are drawn side by side.
    origin: Option<u64>,
    /// Rows of the current lane not yet given to `lanes` (its name comes with its run line).
    pending: Outcomes,
    /// Where the time of the current run starts, on the report's time axis: each run's
    /// `t` counts from its own start, so a resumed run is put after the one before.
    offset_ms: u64,
    last_ms: u64,
    /// The last `t` of the current run: times only grow within a run, so a smaller one
    /// is the start of a resumed run after a crash (which wrote no run line).
    run_t: u64,
}

/// The line that ends each run.
#[derive(serde::Deserialize)]
struct RunWrapper {
    run: RunLine,
}

/// Only the wall-clock time of a line (for the axis' origin).
#[derive(serde::Deserialize)]
struct At {
    at: Option<u64>,
}

impl Stats {
    /// Reads the results log at `path`.
    pub fn read(path: &Path) -> Result<Stats> {
        Stats::read_all(&[path.to_path_buf()])
    }

    /// Reads results logs: one, a merged one, or the logs of the copies of one load,
    /// which are drawn on one wall-clock axis, a lane each.
    pub fn read_all(paths: &[PathBuf]) -> Result<Stats> {
        let mut st: Option<Stats> = None;
        for path in paths {
            let mut lines = open(path)?;
            let manifest = first_line(path, &mut lines)?;
            let lane = manifest.shard.clone().unwrap_or_else(|| {
                let name = path.file_name().unwrap_or(path.as_os_str());
                name.to_string_lossy().into_owned()
            });
            let st = match &mut st {
                Some(st) => st,
                None => {
                    let side_by_side = paths.len() > 1 || manifest.merged_from.is_some();
                    let mut s = Stats::new(manifest);
                    if side_by_side {
                        s.origin = Some(origin(paths)?);
                    }
                    st.insert(s)
                }
            };
            st.sources.push(path.display().to_string());
            for line in lines {
                st.add_line(&line.map_err(|e| Error::file(path, e))?);
            }
            st.close_lane(&lane);
        }
        st.ok_or_else(|| Error::Usage("czload report: name at least one results log".into()))
    }

    pub fn new(manifest: Manifest) -> Stats {
        Stats {
            manifest,
            sources: Vec::new(),
            rows: 0,
            counts: [0; Status::COUNT],
            slots: Slots {
                width_ms: 1000,
                v: Vec::new(),
            },
            latency: histogram(RUN_DIGITS),
            rejections: Reasons::default(),
            failures: Reasons::default(),
            runs: Vec::new(),
            outcomes: Outcomes::default(),
            lanes: Outcomes::default(),
            untimed: 0,
            unreadable: 0,
            origin: None,
            pending: Outcomes::default(),
            offset_ms: 0,
            last_ms: 0,
            run_t: 0,
        }
    }

    /// One line of the log after the manifest.
    pub fn add_line(&mut self, line: &[u8]) {
        // The end line of a finished run is no row and no damage (issue 23 found every
        // clean run reported "1 lines could not be read").
        if line.iter().all(u8::is_ascii_whitespace) || line == crate::sink::results::END_LINE {
            return;
        }
        match serde_json::from_slice::<ResultLine>(line) {
            Ok(r) => self.add_row(&r),
            Err(_) => match serde_json::from_slice::<RunWrapper>(line) {
                Ok(w) => self.add_run(w.run),
                Err(_) => self.unreadable += 1,
            },
        }
    }

    fn add_run(&mut self, run: RunLine) {
        // Where the run began on the axis: its own start on the wall clock, or (one log)
        // where its rows were put.
        let start = match self.origin {
            Some(o) => run.facts.start_ms.map(|s| s.saturating_sub(o)),
            None => Some(self.offset_ms),
        };
        if let (Some(start), Some(o)) = (start, &run.outcomes) {
            let mut shifted = Outcomes::default();
            for (kind, v) in &o.kinds {
                for (i, &n) in v.iter().enumerate().filter(|(_, n)| **n > 0) {
                    shifted.add(start + i as u64 * o.width_ms, kind, n);
                }
            }
            self.outcomes.absorb(&shifted, None);
        }
        // In a merged log each copy's rows end with its run line, which names it.
        if let Some(shard) = run.facts.shard.clone() {
            self.close_lane(&shard);
        }
        // The next run's times count from its own start.
        self.offset_ms = self.last_ms.max(self.offset_ms + run.elapsed_ms);
        self.run_t = 0;
        self.runs.push(run);
    }

    /// The rows since the last lane was closed are the lane `name`'s.
    fn close_lane(&mut self, name: &str) {
        let pending = std::mem::take(&mut self.pending);
        if self.origin.is_some() && !pending.kinds.is_empty() {
            self.lanes.absorb(&pending, Some(name));
        }
    }

    fn add_row(&mut self, r: &ResultLine) {
        self.rows += 1;
        self.counts[r.status.index()] += 1;
        let input = r.input.unwrap_or(0);
        let reason = r.error.as_deref().unwrap_or("(no reason given)");
        match r.status {
            Status::Rejected => self.rejections.add(reason, input, r.line),
            Status::Failed | Status::Ambiguous => {
                let text = format!("{}: {reason}", r.status.as_str());
                self.failures.add(&text, input, r.line)
            }
            _ => {}
        }
        if let Some(ms) = r.ms {
            self.latency.saturating_record(ms as u64);
        }
        let Some(at) = self.place(r) else {
            self.untimed += 1;
            return;
        };
        self.last_ms = self.last_ms.max(at);
        if self.origin.is_some() {
            self.pending.add(at, "", 1);
        }
        let slot = self.slots.at(at);
        match r.status {
            s if s.is_success() => slot.ok += 1,
            Status::Rejected => slot.rejected += 1,
            _ => slot.failed += 1,
        }
        if r.attempts > 1 {
            slot.retried += 1;
        }
        if r.throttled > 0 {
            slot.throttled += 1;
        }
        if let Some(ms) = r.ms {
            slot.latency.saturating_record(ms as u64);
        }
    }

    /// Where a row goes on the time axis (ms), if its line has a time.
    fn place(&mut self, r: &ResultLine) -> Option<u64> {
        if let Some(origin) = self.origin {
            return r.at.map(|at| at.saturating_sub(origin));
        }
        let t = r.t?;
        if t < self.run_t {
            self.offset_ms = self.last_ms;
        }
        self.run_t = t;
        Some(self.offset_ms + t)
    }

    /// How long the charted time runs, in ms.
    pub fn span_ms(&self) -> u64 {
        self.last_ms
    }
}

type Lines = std::io::Split<std::io::BufReader<std::fs::File>>;

fn open(path: &Path) -> Result<Lines> {
    let f = std::fs::File::open(path)
        .map_err(|e| Error::file(path, format!("cannot read the results log: {e}")))?;
    Ok(std::io::BufReader::with_capacity(256 * 1024, f).split(b'\n'))
}

fn first_line(path: &Path, lines: &mut Lines) -> Result<Manifest> {
    let first = lines
        .next()
        .transpose()
        .map_err(|e| Error::file(path, e))?
        .unwrap_or_default();
    serde_json::from_slice(&first).map_err(|_| {
        Error::file(
            path,
            "line 1: not a czload results log (it must start with the manifest line); pass the file that --results named",
        )
    })
}

/// The earliest wall-clock time of any row of `paths` (a pass over them before the
/// real one: rows settle out of order across requests in flight).
fn origin(paths: &[PathBuf]) -> Result<u64> {
    let mut min = u64::MAX;
    for path in paths {
        for line in open(path)?.skip(1) {
            let line = line.map_err(|e| Error::file(path, e))?;
            if let Ok(At { at: Some(at) }) = serde_json::from_slice::<At>(&line) {
                min = min.min(at);
            }
        }
    }
    Ok(if min == u64::MAX { 0 } else { min })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        Stats::new(Manifest {
            czload: 1,
            inputs: vec![],
            mapping: "op=Create".into(),
            reading: None,
            flags: vec![],
            retry_files: vec![],
            shard: None,
            merged_from: None,
        })
    }

    #[test]
    fn slots_widen_past_the_cap_and_keep_every_row() {
        let mut st = stats();
        let n = 10_000u64;
        for i in 0..n {
            // One row every 100 ms: 1000 s, more than MAX_SLOTS one-second slots.
            let line = format!(
                r#"{{"row":{i},"line":{},"status":"created","attempts":1,"ms":{},"t":{}}}"#,
                i + 1,
                i % 50,
                i * 100
            );
            st.add_line(line.as_bytes());
        }
        assert_eq!(st.slots.width_ms, 2000);
        assert!(st.slots.v.len() <= MAX_SLOTS);
        assert_eq!(st.slots.v.iter().map(Slot::settled).sum::<u64>(), n);
        assert_eq!(st.counts[Status::Created.index()], n);
        let p50 = st.slots.v[0].percentile(0.5).unwrap();
        // Its 20 rows took 0..19 ms.
        assert!((7.0..12.0).contains(&p50), "{p50}");
    }

    #[test]
    fn old_lines_count_and_a_resumed_run_goes_after_the_first() {
        let mut st = stats();
        st.add_line(br#"{"row":1,"line":2,"status":"rejected","attempts":0,"error":"bad"}"#);
        st.add_line(br#"{"row":2,"line":3,"status":"created","attempts":2,"ms":5,"t":4000}"#);
        st.add_line(br#"{"run":{"elapsed_ms":5000,"requests":2,"retries":1,"throttled":0}}"#);
        st.add_line(br#"{"row":3,"line":4,"status":"failed","attempts":8,"throttled":8,"t":1000,"error":"throttled"}"#);
        st.add_line(b"{\"row\":4,\"li");
        st.add_line(crate::sink::results::END_LINE);
        // A crash: no run line, and the times start again.
        st.add_line(br#"{"row":5,"line":6,"status":"exists","attempts":1,"ms":3,"t":500}"#);
        assert_eq!(st.slots.v[6].ok, 1);
        assert_eq!((st.rows, st.untimed, st.unreadable), (4, 1, 1));
        assert_eq!(st.runs.len(), 1);
        // The second run's row at t=1000 lands at 5000 + 1000.
        assert_eq!(st.span_ms(), 6500);
        assert_eq!(st.slots.v[6].failed, 1);
        assert_eq!(st.slots.v[6].throttled, 1);
        assert_eq!(st.slots.v[4].retried, 1);
        assert_eq!(st.rejections.top(1)[0].1.examples, [(0, 2)]);
        assert_eq!(st.failures.top(1)[0].0, "failed: throttled");
    }

    #[test]
    fn reasons_group_without_the_values_they_quote() {
        assert_eq!(
            shape(r#"column "n": "x\"1" is not an integer"#),
            r#"column "n": "…" is not an integer"#
        );
        assert_eq!(shape("no quotes 42"), "no quotes 42");
        assert_eq!(shape(r#"cut "a" "b"#), r#"cut "a" "…"#);
    }
}
