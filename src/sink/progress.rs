//! Progress while loading, on stderr: a bar on a terminal, a plain line every few seconds
//! otherwise, nothing with `--quiet` (or in a dry run). In: the journal's counts at each
//! checkpoint and the bytes read so far. This is the one sink that writes to stderr
//! itself: it is an output the user asks for, drawn while the run goes on, so it cannot
//! wait to be handed back to `main` with the summary.

use super::{Sink, Tally};
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_plain: Instant,
    last_draw: Instant,
    started: Instant,
    total_bytes: Option<u64>,
    /// Bytes the reader has read so far.
    bytes_read: Arc<AtomicU64>,
}

impl Progress {
    pub fn new(quiet: bool, total_bytes: Option<u64>, bytes_read: Arc<AtomicU64>) -> Progress {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = match total_bytes {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ETA {eta} | {msg}",
            )
            .expect("a valid template");
            b.set_style(style);
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            plain: !quiet && !tty,
            last_plain: Instant::now(),
            last_draw: Instant::now(),
            started: Instant::now(),
            total_bytes,
            bytes_read,
        }
    }

    fn clear(&self) {
        if let Some(b) = self.bar.as_ref().filter(|b| !b.is_finished()) {
            b.finish_and_clear();
        }
    }
}

impl Sink for Progress {
    fn checkpoint(&mut self, tally: &Tally) -> Result<()> {
        // Called per batch of events: redraw at most ten times a second.
        if self.last_draw.elapsed() < Duration::from_millis(100) {
            return Ok(());
        }
        self.last_draw = Instant::now();
        let bytes_read = self.bytes_read.load(Ordering::Relaxed);
        let c = &tally.counts;
        let done = c.total();
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        if let Some(b) = &self.bar {
            b.set_position(bytes_read);
            b.set_message(format!(
                "{done} rows, {rate:.0}/s, ok {}, not ok {}",
                c.succeeded(),
                c.not_ok()
            ));
        } else if self.plain && self.last_plain.elapsed() >= Duration::from_secs(5) {
            self.last_plain = Instant::now();
            let pct = self
                .total_bytes
                .filter(|&t| t > 0)
                .map(|t| format!(" ({:.0}% of input)", bytes_read as f64 * 100.0 / t as f64))
                .unwrap_or_default();
            // A closed stderr (`2>&1 | head -1`) ends the progress lines, never the run:
            // the results log goes on.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "czload: {done} rows{pct}, {rate:.0} rows/s, ok {}, not ok {}",
                c.succeeded(),
                c.not_ok()
            );
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.clear();
        Ok(())
    }
}

/// A run that stops on an error skips `finish`: the bar must not stay on the screen.
impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}
