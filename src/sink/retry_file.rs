//! The retry files: per input, the rows that may load on a second try (`failed`,
//! `ambiguous`; see `Status::to_retry_file`), as the input held them, so that the same
//! command loads them again, in the input's encoding (`--encoding`). In: input headers and settled batches. Out: one file per
//! input, opened at its first such row, flushed at each checkpoint after the results log.

use super::results::create_private;
use super::{Sink, Tally};
use crate::batch::Batch;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::source::decode;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

pub struct RetryFiles {
    /// Per input.
    paths: Vec<PathBuf>,
    /// Per input: open once a row went to it.
    out: Vec<Option<BufWriter<File>>>,
    /// Per input: its header line (CSV), already encoded.
    headers: Vec<Option<Vec<u8>>>,
    /// Per input: the encoding to write (`None`: UTF-8, as the rows are).
    encodings: Vec<Option<&'static encoding_rs::Encoding>>,
    /// A row re-encoded.
    encoded: Vec<u8>,
    /// Append to the files of the earlier run, whose header is already there.
    resume: bool,
    /// Batches handled since the last checkpoint.
    dirty: bool,
}

impl RetryFiles {
    pub fn new(cfg: &LoadConfig, resume: bool) -> RetryFiles {
        // A retry file from an earlier run would list rows this run settles anew.
        if !resume {
            for r in &cfg.retry_files {
                let _ = std::fs::remove_file(r);
            }
        }
        let n = cfg.retry_files.len();
        RetryFiles {
            paths: cfg.retry_files.clone(),
            out: (0..n).map(|_| None).collect(),
            headers: vec![None; n],
            encodings: cfg.inputs.iter().map(|i| i.encoding).collect(),
            encoded: Vec::new(),
            resume,
            dirty: false,
        }
    }

    fn write(&mut self, input: u32, raw: &[u8]) -> Result<()> {
        let i = input as usize;
        let path = &self.paths[i];
        if self.out[i].is_none() {
            let existed = self.resume && std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
            let f = create_private(path, self.resume)
                .map_err(|e| Error::file(path, format!("cannot write the retry file: {e}")))?;
            let mut w = BufWriter::new(f);
            if !existed {
                if let Some(h) = &self.headers[i] {
                    let h = match self.encodings[i] {
                        Some(enc) => {
                            let mut v = Vec::new();
                            decode::encode(enc, h, &mut v);
                            v
                        }
                        None => h.clone(),
                    };
                    w.write_all(&h).map_err(|e| Error::file(path, e))?;
                }
            }
            self.out[i] = Some(w);
        }
        let w = self.out[i].as_mut().expect("opened above");
        let raw = match self.encodings[i] {
            Some(enc) => {
                self.encoded.clear();
                decode::encode(enc, raw, &mut self.encoded);
                &self.encoded
            }
            None => raw,
        };
        w.write_all(raw).map_err(|e| Error::file(path, e))
    }

    fn flush(&mut self) -> Result<()> {
        for (w, path) in self.out.iter_mut().zip(&self.paths) {
            if let Some(w) = w {
                w.flush().map_err(|e| Error::file(path, e))?;
            }
        }
        Ok(())
    }
}

impl Sink for RetryFiles {
    fn on_input_start(&mut self, input: u32, header: Option<&[u8]>) -> Result<()> {
        self.headers[input as usize] = header.map(<[u8]>::to_vec);
        Ok(())
    }

    fn on_batch(&mut self, batch: &Batch, outcomes: &[Option<Outcome>]) -> Result<()> {
        self.dirty = true;
        for (i, o) in outcomes.iter().enumerate() {
            if o.as_ref().is_some_and(|o| o.status.to_retry_file()) {
                self.write(batch.rows[i].input, batch.raw(i))?;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, _: &Tally) -> Result<()> {
        if std::mem::take(&mut self.dirty) {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()
    }
}

/// The retry files that hold rows, from this run or (resuming) an earlier one. None in a
/// dry run, which writes nothing.
pub fn written(cfg: &LoadConfig) -> Vec<PathBuf> {
    if cfg.results.is_none() {
        return Vec::new();
    }
    cfg.retry_files
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .cloned()
        .collect()
}
