//! `--summary-json FILE`: the summary as pretty JSON, written once the run is over. In:
//! the `Summary`. Out: the file. The model for an end-of-run report: all it needs is
//! `Sink::report`.

use super::summary::Summary;
use super::Sink;
use crate::error::{Error, Result};
use std::path::PathBuf;

pub struct SummaryJson {
    path: PathBuf,
}

impl SummaryJson {
    pub fn new(path: PathBuf) -> SummaryJson {
        SummaryJson { path }
    }
}

impl Sink for SummaryJson {
    fn report(&mut self, summary: &Summary) -> Result<()> {
        let json = serde_json::to_vec_pretty(summary).expect("plain data");
        // Whole or not at all, and only over a summary (docs/outputs.md).
        crate::outpath::replace_with(&self.path, crate::outpath::Kind::Summary, &json)
            .map_err(|e| Error::file(&self.path, format!("cannot write the summary: {e}")))
    }
}
