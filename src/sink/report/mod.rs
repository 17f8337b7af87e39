//! The HTML report of a run: one self-contained file (inline CSS and SVG, no script, no
//! network), built from the results log alone, so that it also covers a crashed,
//! interrupted or resumed run.
//!
//! In: a results log (its manifest, its row lines, the `run` line each run ends with).
//! Out: the HTML file. The log is read once, streaming: what is kept is per time slot
//! (`Slots`: counts and a latency histogram, at most `MAX_SLOTS` of them, the slot
//! widening as the run gets longer) and the most frequent reasons with a few example
//! lines, so a log of millions of rows costs a few hundred KB.
//!
//! - `czload report RESULTS... -o FILE` calls `write_report`;
//! - `load --report FILE` registers `HtmlReport`, a sink whose `report` runs once the
//!   results log has its last line.
//!
//! Files: `aggregate.rs` (the logs -> `Stats`), `svg.rs` (the charts), `html.rs` (the page),
//! `facts.rs` (run facts, copies side by side, requests by outcome, latency percentiles).

mod aggregate;
mod facts;
mod html;
mod svg;

/// How the summary groups reasons too (`sink::reasons`).
pub(crate) use aggregate::shape;
pub use aggregate::Stats;

use super::{Sink, Summary};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Writes the report of the results log `results` to `out`; gives the number of rows.
/// Every path in `out` must be one `outpath` accepted (`czload report` checks it in
/// `report_command`, `load` with its other outputs).
pub fn write_report(results: &[PathBuf], out: &Path) -> Result<u64> {
    let stats = Stats::read_all(results)?;
    let page = html::page(&stats);
    debug_assert!(page.as_bytes().starts_with(crate::outpath::REPORT_START));
    // Through a temporary file beside it: a report that fails half-way leaves the old
    // one, and a file that is not a report is never renamed over (docs/outputs.md).
    crate::outpath::replace_with(out, crate::outpath::Kind::Report, page.as_bytes())
        .map_err(|e| Error::file(out, format!("cannot write the report: {e}")))?;
    Ok(stats.rows)
}

/// `czload report RESULTS -o FILE`: `-o` checked as every output is (`crate::outpath`),
/// then written.
pub fn report_command(results: &[PathBuf], out: &Path) -> Result<u64> {
    use crate::outpath::{Kind, Output};
    let outs = [Output::new("-o", out, Kind::Report)];
    let logs: Vec<&Path> = results.iter().map(PathBuf::as_path).collect();
    let out = crate::outpath::check(&outs, &logs)?.remove(0);
    write_report(results, &out)
}

/// `load --report FILE`: the report, written once the run is over.
pub struct HtmlReport {
    results: PathBuf,
    out: PathBuf,
}

impl HtmlReport {
    pub fn new(results: PathBuf, out: PathBuf) -> HtmlReport {
        HtmlReport { results, out }
    }
}

impl Sink for HtmlReport {
    fn report(&mut self, _: &Summary) -> Result<()> {
        write_report(std::slice::from_ref(&self.results), &self.out).map(|_| ())
    }
}
