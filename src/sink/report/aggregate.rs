//! The results log, read once into what the report shows. In: the log's lines. Out:
//! `Stats`: counts per status, per time slot the rows settled (by kind), retried and
//! throttled and a latency histogram, the top reasons with example lines, and each run's
//! `RunLine`. Nothing here grows with the number of rows but the reason table, which is
//! capped at `MAX_REASONS` distinct texts.

use crate::error::{Error, Result};
use crate::outcome::Status;
use crate::sink::results::{Manifest, ResultLine, RunLine};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// The most time slots kept; past it two neighbours merge and the slot doubles.
pub const MAX_SLOTS: usize = 600;
/// Latency histogram: `BUCKETS_PER_DOUBLING` buckets per doubling of (ms + 1), so a
/// percentile read from it is within 19% of the true one; the last bucket holds ~2^16 ms up.
const BUCKETS_PER_DOUBLING: f64 = 4.0;
pub const LAT_BUCKETS: usize = 64;
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
    pub latency: [u32; LAT_BUCKETS],
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            ok: 0,
            rejected: 0,
            failed: 0,
            retried: 0,
            throttled: 0,
            latency: [0; LAT_BUCKETS],
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
        for (a, b) in self.latency.iter_mut().zip(&o.latency) {
            *a += b;
        }
    }

    /// The latency (ms) below which `q` (0..1) of this slot's rows were answered.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        let n: u64 = self.latency.iter().map(|&c| c as u64).sum();
        if n == 0 {
            return None;
        }
        let want = (q * n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &c) in self.latency.iter().enumerate() {
            seen += c as u64;
            if seen >= want {
                // The bucket's middle, on the log scale it is cut on.
                return Some(2f64.powf((b as f64 + 0.5) / BUCKETS_PER_DOUBLING) - 1.0);
            }
        }
        None
    }
}

fn bucket(ms: u32) -> usize {
    let b = ((ms as f64 + 1.0).log2() * BUCKETS_PER_DOUBLING) as usize;
    b.min(LAT_BUCKETS - 1)
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
    pub manifest: Manifest,
    pub rows: u64,
    pub counts: [u64; Status::COUNT],
    pub slots: Slots,
    pub rejections: Reasons,
    pub failures: Reasons,
    /// The `run` line of each run that wrote to the log (a crash leaves none).
    pub runs: Vec<RunLine>,
    /// Rows whose line has no time (written by an older czload): counted, not charted.
    pub untimed: u64,
    /// Lines that are neither a row nor a run line (a crash can cut the last one).
    pub unreadable: u64,
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

impl Stats {
    /// Reads the results log at `path`.
    pub fn read(path: &Path) -> Result<Stats> {
        let f = std::fs::File::open(path)
            .map_err(|e| Error::file(path, format!("cannot read the results log: {e}")))?;
        let mut lines = std::io::BufReader::with_capacity(256 * 1024, f).split(b'\n');
        let first = lines
            .next()
            .transpose()
            .map_err(|e| Error::file(path, e))?
            .unwrap_or_default();
        let manifest: Manifest = serde_json::from_slice(&first).map_err(|_| {
            Error::file(
                path,
                "line 1: not a czload results log (it must start with the manifest line); pass the file that --results named",
            )
        })?;
        let mut st = Stats::new(manifest);
        for line in lines {
            let line = line.map_err(|e| Error::file(path, e))?;
            st.add_line(&line);
        }
        Ok(st)
    }

    pub fn new(manifest: Manifest) -> Stats {
        Stats {
            manifest,
            rows: 0,
            counts: [0; Status::COUNT],
            slots: Slots {
                width_ms: 1000,
                v: Vec::new(),
            },
            rejections: Reasons::default(),
            failures: Reasons::default(),
            runs: Vec::new(),
            untimed: 0,
            unreadable: 0,
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
                Ok(w) => {
                    // The next run's times count from its own start.
                    self.offset_ms = self.last_ms.max(self.offset_ms + w.run.elapsed_ms);
                    self.run_t = 0;
                    self.runs.push(w.run);
                }
                Err(_) => self.unreadable += 1,
            },
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
        let Some(t) = r.t else {
            self.untimed += 1;
            return;
        };
        if t < self.run_t {
            self.offset_ms = self.last_ms;
        }
        self.run_t = t;
        let at = self.offset_ms + t;
        self.last_ms = self.last_ms.max(at);
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
            slot.latency[bucket(ms)] += 1;
        }
    }

    /// How long the charted time runs, in ms.
    pub fn span_ms(&self) -> u64 {
        self.last_ms
    }
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
