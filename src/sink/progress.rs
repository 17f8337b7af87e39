//! Progress while loading, on stderr, by rows settled: two lines on a terminal (a bar,
//! the percentage and ETA; rows, rows/s, in flight, retries, throttled), a plain line
//! every few seconds otherwise, one JSON object per line with `--progress json`, nothing
//! with `--quiet` (or in a dry run). Every line fits the width of stderr (`term::width`:
//! the terminal's, else 80), and every plain line and JSON event carries an RFC 3339 time;
//! a start line (version, inputs, target, rate) comes first, so that nights appended to
//! one log can be told apart.
//!
//! In: the journal's counts and settled batches, the bytes the reader has read and the
//! senders' counters (`Live`). The total number of rows is not known before the end:
//! it is estimated from the input's size and the bytes per row so far: those of the rows
//! settled (their raw text, less the generated ref the retry file adds), or for gzip
//! input, where the size is compressed, the rows read per compressed byte read (which
//! runs ahead by the reader's buffer, so the estimate starts low).
//!
//! This is the one sink that writes to stderr itself: it is an output the user asks for,
//! drawn while the run goes on, so it cannot wait to be handed back to `main`.

use super::{Counts, Sink, Tally};
use crate::batch::Batch;
use crate::error::Result;
use crate::outcome::{Outcome, RejectedRow};
use crate::send::SendStats;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How progress is shown: a setting, so config's (`--progress`, `--quiet`).
pub use crate::config::ProgressMode as Mode;

/// The counters that move while the run goes on, shared with the reader and senders.
pub struct Live {
    /// Bytes the reader has read so far.
    pub bytes_read: Arc<AtomicU64>,
    pub send: Arc<SendStats>,
    /// Rows an earlier run settled (`--resume`): their bytes are in the input too.
    pub earlier: u64,
}

/// The bar's length at most; a narrower terminal shortens it.
const BAR: usize = 40;
/// Plain and JSON lines, this often.
const EVERY: Duration = Duration::from_secs(5);
/// The rate (and so the ETA) is taken over this much recent time.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What one frame shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// When, RFC 3339 UTC (`term::now_rfc3339`).
    pub time: String,
    /// `progress` while the run goes on, `done` for the last counts.
    pub event: &'static str,
    pub elapsed_s: f64,
    /// Rows settled (by this run).
    pub rows: u64,
    /// Rows expected in all, when the input size is known; exact once all is read.
    pub rows_total_est: Option<u64>,
    pub percent: Option<f64>,
    pub rows_per_s: f64,
    pub eta_s: Option<f64>,
    pub in_flight: u64,
    pub retries: u64,
    pub throttled: u64,
    pub ok: u64,
    pub not_ok: u64,
    /// A fixed `--rate` that the in-flight ceiling cannot hold: the rate it can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_of_rate: Option<f64>,
}

impl Snapshot {
    /// The two terminal lines, `width` columns at most: the bar, then the counts.
    pub fn tty_lines(&self, width: usize) -> (String, String) {
        // `[`, `]`, the percentage, ETA and clock take about 26 columns.
        let bar = BAR.min(width.saturating_sub(26)).max(10);
        let filled = self
            .percent
            .map_or(0, |p| ((p / 100.0) * bar as f64).round() as usize)
            .min(bar);
        let pct = self
            .percent
            .map_or("  ?%".to_string(), |p| format!("{p:>3.0}%"));
        let first = fit(
            &[
                format!("[{}{}]", "#".repeat(filled), "-".repeat(bar - filled)),
                pct,
                format!("ETA {}", self.eta_s.map_or("?".into(), clock)),
                clock(self.elapsed_s),
            ],
            width,
        );
        // The counts are drawn indented by two.
        (first, fit(&self.parts(), width.saturating_sub(2)))
    }

    /// The plain line (no terminal), `width` columns at most, after its time.
    pub fn plain_line(&self, width: usize) -> String {
        let mut parts = vec![format!("{} czload:", self.time)];
        if let Some(p) = self.percent {
            parts.push(format!("{p:.0}%"));
        }
        let mut counts = self.parts();
        if let Some(e) = self.eta_s {
            // After rows and rows/s: what `fit` drops first are the counts at the end.
            counts.insert(2, format!("ETA {}", clock(e)));
        }
        parts.extend(counts);
        fit(&parts, width + 1).replacen("czload:  ", "czload: ", 1)
    }

    fn parts(&self) -> Vec<String> {
        let total = self
            .rows_total_est
            .map_or(String::new(), |t| format!("/~{}", compact(t as f64)));
        let mut parts = vec![
            format!("{}{total} rows", compact(self.rows as f64)),
            format!("{}/s", compact(self.rows_per_s)),
        ];
        if let Some(h) = self.short_of_rate {
            // Before the counts: `fit` drops parts from the end, and this one matters more.
            parts.push(format!("--rate not held (max ~{}/s)", compact(h)));
        }
        parts.extend([
            format!("in flight {}", compact(self.in_flight as f64)),
            format!("retries {}", compact(self.retries as f64)),
            format!("throttled {}", compact(self.throttled as f64)),
        ]);
        parts
    }
}

/// Joins `parts` with two spaces, dropping parts from the end until it fits `width` - 1
/// (the last column of a terminal wraps on some).
fn fit(parts: &[String], width: usize) -> String {
    let mut n = parts.len();
    loop {
        let s = parts[..n].join("  ");
        if s.chars().count() < width || n == 1 {
            return s.chars().take(width.saturating_sub(1)).collect();
        }
        n -= 1;
    }
}

/// What the progress display is given of the run: how to show it, what the start line
/// says, and what it needs to estimate the rows to come. Nothing else of the settings.
#[derive(Debug, Clone)]
pub struct Shown {
    pub mode: Mode,
    /// The inputs as named in messages.
    pub inputs: Vec<String>,
    /// The flags that name the process (`target_flags`).
    pub target: String,
    pub url: String,
    /// `--rate` as typed.
    pub rate: String,
    pub shard: Option<String>,
    /// The inputs' sizes added up, when every one is known.
    pub total_bytes: Option<u64>,
    /// An input is compressed (its bytes read are not its bytes on disk).
    pub compressed: bool,
    /// Bytes a generated ref adds to each retry row (`Format::retry_ref_overhead`).
    pub ref_overhead: Option<u64>,
}

impl Shown {
    pub fn of(cfg: &crate::config::LoadConfig) -> Shown {
        use crate::mapping::RefMode;
        Shown {
            mode: cfg.progress,
            inputs: cfg.inputs.iter().map(|i| i.display()).collect(),
            target: target_flags(cfg),
            url: cfg.send.base.clone(),
            rate: rate_text(cfg.send.rate),
            shard: cfg.shard.map(|s| s.to_string()),
            total_bytes: cfg.inputs.iter().map(|i| i.size).sum(),
            compressed: cfg
                .inputs
                .iter()
                .any(|i| i.compression != crate::source::Compression::None),
            // `,ref` after a CSV row; `"_czload_ref":"ref",` before an NDJSON object's fields.
            ref_overhead: (cfg.mapping.ref_mode == RefMode::Auto)
                .then(|| cfg.inputs[0].format.retry_ref_overhead()),
        }
    }
}

/// The first line of a run: version, inputs, target and rate, plain or as a JSON event.
fn start_line(s: &Shown, json: bool) -> String {
    let time = crate::term::now_rfc3339();
    let version = env!("CARGO_PKG_VERSION");
    let (inputs, target, rate, url) = (&s.inputs, s.target.clone(), &s.rate, &s.url);
    if json {
        serde_json::json!({
            "time": time,
            "event": "start",
            "version": version,
            "inputs": inputs,
            "target": target,
            "url": url,
            "rate": rate,
            "shard": s.shard,
        })
        .to_string()
    } else {
        let target = if target.is_empty() {
            "the rows' own processes".into()
        } else {
            target
        };
        let shard = s
            .shard
            .as_ref()
            .map_or(String::new(), |s| format!(", --shard {s}"));
        format!(
            "{time} czload {version}: loading {} into {target} at {url}, --rate {rate}{shard}",
            inputs.join(", ")
        )
    }
}

/// The flags that name the process (`--conv-id 555`), not Rust's names for them; empty
/// when the rows name their own (`--op raw`).
pub(crate) fn target_flags(cfg: &crate::config::LoadConfig) -> String {
    cfg.mapping
        .flags()
        .into_iter()
        .filter(|f| {
            ["--conv-id", "--company-id", "--alias"]
                .iter()
                .any(|p| f.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--rate` as typed.
fn rate_text(rate: crate::send::Rate) -> String {
    use crate::send::Rate;
    match rate {
        Rate::Unlimited => "unlimited".into(),
        Rate::Fixed(n) => n.to_string(),
        Rate::Auto => "auto".into(),
    }
}

/// `1234` -> `1.2k`, at most six characters below a billion.
fn compact(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.1}G", v / 1e9),
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// Seconds as `m:ss` or `h:mm:ss`.
fn clock(s: f64) -> String {
    let t = s.max(0.0).round() as u64;
    if t >= 3600 {
        format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    } else {
        format!("{}:{:02}", t / 60, t % 60)
    }
}

pub struct Progress {
    /// Of stderr's lines (`term::width`), taken once: a resized terminal keeps it.
    width: usize,
    mode: Mode,
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    last_draw: Instant,
    started: Instant,
    total_bytes: Option<u64>,
    /// Whether `total_bytes` counts compressed bytes.
    compressed: bool,
    /// With generated refs, the bytes a raw row gains besides its ref (the retry file's
    /// `_czload_ref`): not in the input.
    ref_overhead: Option<u64>,
    live: Live,
    /// Rows settled from batches, and their raw bytes.
    sent_rows: u64,
    sent_bytes: u64,
    /// Rows the reader rejected (they were read but never sent).
    rejected_read: u64,
    /// The journal's counts at the last checkpoint.
    counts: Counts,
    /// Every event was handled.
    finished: bool,
    /// (when, rows settled) over the last `RATE_WINDOW`.
    recent: VecDeque<(Instant, u64)>,
    /// Where plain and JSON lines go (never written from the journal's thread).
    lines: Lines,
}

/// Progress lines written to stderr by a thread of their own, so that a stderr nobody
/// reads (a stalled log collector, a full pipe, a terminal on hold) never stops the
/// journal, whose results log is what makes `--resume` exact. A line that finds the
/// writer still busy with the ones before is dropped: the next one says as much.
struct Lines {
    tx: std::sync::mpsc::SyncSender<LineMsg>,
}

enum LineMsg {
    Line(String),
    /// Answered once every line before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

impl Lines {
    fn start() -> Lines {
        // A few lines of slack: stderr keeps up, except when it is stuck.
        let (tx, rx) = std::sync::mpsc::sync_channel::<LineMsg>(4);
        let spawned = std::thread::Builder::new()
            .name("czload-progress".into())
            .spawn(move || {
                use std::io::Write as _;
                for msg in rx {
                    match msg {
                        // A closed stderr (`2>&1 | head -1`) ends the lines, never the run.
                        LineMsg::Line(l) => drop(writeln!(std::io::stderr(), "{l}")),
                        LineMsg::Flush(done) => drop(done.send(())),
                    }
                }
            });
        if spawned.is_err() {
            tracing::debug!("no thread for progress lines: they are dropped");
        }
        Lines { tx }
    }

    /// Hands `line` over, or drops it when the writer is stuck.
    fn say(&self, line: String) {
        let _ = self.tx.try_send(LineMsg::Line(line));
    }

    /// The last line of the run, and the ones before it written out before the summary
    /// comes: worth a short wait, never a long one (a stuck stderr keeps the thread, which
    /// is not joined, and the line).
    fn last(&self, line: Option<String>) {
        let until = Instant::now() + Duration::from_secs(1);
        let (done, written) = std::sync::mpsc::channel();
        let msgs = line
            .map(LineMsg::Line)
            .into_iter()
            .chain([LineMsg::Flush(done)]);
        for mut msg in msgs {
            loop {
                match self.tx.try_send(msg) {
                    Ok(()) => break,
                    Err(std::sync::mpsc::TrySendError::Full(m)) if Instant::now() < until => {
                        msg = m;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return,
                }
            }
        }
        let _ = written.recv_timeout(until.saturating_duration_since(Instant::now()));
    }
}

impl Progress {
    pub fn new(shown: Shown, live: Live) -> Progress {
        let mode = shown.mode;
        let (total_bytes, compressed, ref_overhead) =
            (shown.total_bytes, shown.compressed, shown.ref_overhead);
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        let bar = (mode == Mode::Auto && tty).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            let style = indicatif::ProgressStyle::with_template("{spinner} {msg}")
                .expect("a valid template");
            b.set_style(style);
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let now = Instant::now();
        let width = crate::term::width();
        let lines = Lines::start();
        if mode != Mode::Off {
            let line = start_line(&shown, mode == Mode::Json);
            let line = if mode == Mode::Json {
                line
            } else {
                crate::term::wrap(&line, width)
            };
            lines.say(line);
        }
        Progress {
            width,
            mode,
            bar,
            last_line: now,
            last_draw: now - Duration::from_secs(1),
            started: now,
            total_bytes,
            compressed,
            ref_overhead,
            live,
            sent_rows: 0,
            sent_bytes: 0,
            rejected_read: 0,
            counts: Counts::default(),
            finished: false,
            recent: VecDeque::from([(now, 0)]),
            lines,
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let now = Instant::now();
        let c = &self.counts;
        let rows = c.total();
        let handed = self.live.send.rows.load(Ordering::Relaxed);
        let read = handed + self.rejected_read;
        let earlier = self.live.earlier;
        let bytes = self.live.bytes_read.load(Ordering::Relaxed);
        // Everything read and settled: the total is known.
        let all_read = self.total_bytes.is_some_and(|t| bytes >= t);
        let total = if all_read && self.finished {
            Some(read + earlier)
        } else {
            self.estimate_total(read + earlier)
        };
        let rows_all = rows + earlier;
        self.recent.push_back((now, rows));
        while self.recent.len() > 2 && now - self.recent[1].0 >= RATE_WINDOW {
            self.recent.pop_front();
        }
        let (t0, r0) = self.recent[0];
        let secs = (now - t0).as_secs_f64();
        let rate = if secs > 0.2 {
            (rows - r0) as f64 / secs
        } else {
            0.0
        };
        let percent = total.map(|t| (rows_all as f64 * 100.0 / t.max(1) as f64).min(100.0));
        let eta_s = total
            .filter(|_| rate > 0.0)
            .map(|t| t.saturating_sub(rows_all) as f64 / rate);
        Snapshot {
            time: crate::term::now_rfc3339(),
            event: if self.finished { "done" } else { "progress" },
            elapsed_s: self.started.elapsed().as_secs_f64(),
            rows,
            rows_total_est: total,
            percent,
            rows_per_s: rate,
            eta_s,
            in_flight: handed.saturating_sub(rows.saturating_sub(self.rejected_read)),
            retries: self.live.send.retries.load(Ordering::Relaxed),
            throttled: self.live.send.throttled.load(Ordering::Relaxed),
            ok: c.succeeded(),
            not_ok: c.not_ok(),
            short_of_rate: self.live.send.short_of_rate(),
        }
    }

    /// The rows the inputs hold, estimated; never below the `read` so far.
    fn estimate_total(&self, read: u64) -> Option<u64> {
        let total = self.total_bytes? as f64;
        let per_row = if self.compressed {
            let bytes = self.live.bytes_read.load(Ordering::Relaxed);
            (read > 0 && bytes > 0).then(|| bytes as f64 / read as f64)?
        } else {
            (self.sent_rows > 0).then(|| self.sent_bytes as f64 / self.sent_rows as f64)?
        };
        Some(((total / per_row.max(1.0)).round() as u64).max(read))
    }

    fn clear(&self) {
        if let Some(b) = self.bar.as_ref().filter(|b| !b.is_finished()) {
            b.finish_and_clear();
        }
    }
}

impl Sink for Progress {
    fn on_batch(&mut self, batch: &Batch, outcomes: &[Option<Outcome>]) -> Result<()> {
        // Rows a stop left unsettled are few; counting the batch whole keeps this cheap.
        let _ = outcomes;
        let rows = batch.len() as u64;
        let added = self
            .ref_overhead
            .map_or(0, |o| batch.refs.len() as u64 + o * rows);
        self.sent_rows += rows;
        self.sent_bytes += (batch.raw.len() as u64).saturating_sub(added);
        Ok(())
    }

    fn on_rejected(&mut self, rows: &[RejectedRow]) -> Result<()> {
        self.rejected_read += rows.len() as u64;
        Ok(())
    }

    fn checkpoint(&mut self, tally: &Tally) -> Result<()> {
        self.counts.clone_from(&tally.counts);
        // Called per batch of events: redraw at most five times a second.
        if self.mode == Mode::Off || self.last_draw.elapsed() < Duration::from_millis(200) {
            return Ok(());
        }
        self.last_draw = Instant::now();
        let snap = self.snapshot();
        if let Some(b) = &self.bar {
            // One message for both lines: one redraw, never a bar of one frame over the
            // counts of the one before.
            let (first, second) = snap.tty_lines(self.width);
            b.set_message(format!("{first}\n  {second}"));
        } else if self.last_line.elapsed() >= EVERY {
            self.last_line = Instant::now();
            let line = match self.mode {
                Mode::Json => serde_json::to_string(&snap).unwrap_or_default(),
                _ => snap.plain_line(self.width),
            };
            self.lines.say(line);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.clear();
        self.finished = true;
        // A log collector gets the last counts too (the summary is not JSON).
        let last = (self.mode == Mode::Json)
            .then(|| serde_json::to_string(&self.snapshot()).unwrap_or_default());
        // The lines before the summary, as they were written before it.
        self.lines.last(last);
        Ok(())
    }
}

/// A run that stops on an error skips `finish`: the bar must not stay on the screen.
impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
        // The lines so far before the error that stopped the run is said.
        if !self.finished {
            self.lines.last(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(big: bool) -> Snapshot {
        let n = if big { 987_654_321_012.0 } else { 3.0 };
        Snapshot {
            time: "2026-12-04T14:55:03Z".into(),
            event: "progress",
            elapsed_s: n,
            rows: n as u64,
            rows_total_est: Some(n as u64 * 3),
            percent: Some(33.3),
            rows_per_s: n,
            eta_s: Some(n),
            in_flight: n as u64,
            retries: n as u64,
            throttled: n as u64,
            ok: 0,
            not_ok: 0,
            short_of_rate: None,
        }
    }

    #[test]
    fn a_rate_not_held_is_shown_before_the_counts() {
        let mut s = snap(false);
        s.short_of_rate = Some(12_800.0);
        let (_, b) = s.tty_lines(80);
        assert!(
            b.starts_with("3/~9 rows  3/s  --rate not held (max ~13k/s)"),
            "{b}"
        );
        assert!(b.chars().count() < 78, "{b}");
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""short_of_rate":12800.0"#), "{json}");
        assert!(!serde_json::to_string(&snap(false))
            .unwrap()
            .contains("short_of_rate"));
    }

    #[test]
    fn every_line_fits_its_width_whatever_the_numbers() {
        for width in [40, 60, 80, 132] {
            for big in [false, true] {
                let s = snap(big);
                let (a, b) = s.tty_lines(width);
                // The counts line is drawn after two spaces.
                for (l, w) in [
                    (&a, width),
                    (&b, width - 2),
                    (&s.plain_line(width), width + 1),
                ] {
                    assert!(l.chars().count() < w, "{width}: {} columns: {l}", l.len());
                }
                assert!(a.contains(" 33%"), "{a}");
                assert!(s
                    .plain_line(width)
                    .starts_with("2026-12-04T14:55:03Z czload: "));
            }
        }
        let json = serde_json::to_string(&snap(false)).unwrap();
        assert!(
            json.starts_with(r#"{"time":"2026-12-04T14:55:03Z","event":"progress","#),
            "{json}"
        );
        let (a, b) = snap(false).tty_lines(80);
        assert_eq!(
            a,
            "[#############---------------------------]   33%  ETA 0:03  0:03"
        );
        assert_eq!(b, "3/~9 rows  3/s  in flight 3  retries 3  throttled 3");
        assert_eq!(
            snap(false).plain_line(80),
            "2026-12-04T14:55:03Z czload: 33%  3/~9 rows  3/s  ETA 0:03  in flight 3"
        );
        assert_eq!(
            snap(false).plain_line(132),
            "2026-12-04T14:55:03Z czload: 33%  3/~9 rows  3/s  ETA 0:03  in flight 3  retries 3  throttled 3"
        );
        assert_eq!(compact(12_345.0), "12k");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}
