//! The retry files and the ambiguous files: per input, the rows that may load on a second
//! try (`failed`; `Status::to_retry_file`), and apart from them the rows whose fate is
//! unknown (`ambiguous`: sent without a ref, the request may have created them), as the
//! input held them. A retry file loads back with the same command, so it is written the
//! way that command reads it: in the input's format (a JSON array as an array), encoding
//! (with a byte order mark for UTF-16, and for UTF-8 when the input had one), delimiter,
//! and compressed when the command would decompress it (its name ends `.gz`/`.zst`, or
//! `--compression` named the input's). An ambiguous file is the same, but the summary
//! says to check its rows on the server first: loading it again may create them twice.
//! In: input headers and settled batches. Out: the files, opened at their first row,
//! flushed at each checkpoint after the results log (a compressed one as a complete gzip
//! member or zstd frame, so a crash leaves every row before the last checkpoint readable).

use super::results::create_private;
use super::{Sink, Tally};
use crate::batch::Batch;
use crate::config::retry_names::named_compression;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::outcome::{Outcome, Status};
use crate::source::{decode, Compression, Input};
use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Which rows a set of files takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `failed`: load them again with the same command.
    Retry,
    /// `ambiguous`: check on the server first.
    Ambiguous,
}

impl Kind {
    fn takes(self, s: Status) -> bool {
        match self {
            Kind::Retry => s.to_retry_file(),
            Kind::Ambiguous => s == Status::Ambiguous,
        }
    }
}

pub struct RetryFiles {
    kind: Kind,
    /// Per input.
    files: Vec<OneFile>,
    /// A row re-encoded.
    encoded: Vec<u8>,
    /// Append to the files of the earlier run, whose header is already there.
    resume: bool,
    /// Batches handled since the last checkpoint.
    dirty: bool,
}

/// How one input's file is written.
struct OneFile {
    path: PathBuf,
    /// Open once a row went to it.
    out: Option<Writer>,
    /// Its header line (CSV), as UTF-8.
    header: Option<Vec<u8>>,
    /// The encoding to write (`None`: UTF-8, as the rows are).
    enc: Option<&'static Encoding>,
    /// A new file starts with the byte order mark of `enc` (or UTF-8's).
    bom: bool,
    zip: Compression,
    /// A JSON array: `[`, the elements between commas, `]`.
    array: bool,
    /// Elements in the array so far (the next needs a comma).
    elements: u64,
    /// Rows written since the last checkpoint (a compressed file then ends a member).
    pending: bool,
    /// The file's first bytes (its start and first rows) until the checkpoint after its
    /// first row creates it. So a retry file exists only once the results log, flushed
    /// first at every checkpoint, holds a row that went to it: that is how a later run
    /// knows the file as czload's (docs/outputs.md), even after a crash.
    early: Option<Vec<u8>>,
    /// Whether the earlier run's file is written on (resuming).
    existed: bool,
}

impl RetryFiles {
    /// One file per input, at `paths` (the retry files, or the ambiguous ones: `kind`).
    pub fn new(paths: &[PathBuf], inputs: &[Input], resume: bool, kind: Kind) -> RetryFiles {
        // A file from an earlier run would list rows this run settles anew.
        if !resume {
            for r in paths {
                let _ = std::fs::remove_file(r);
            }
        }
        let files = paths
            .iter()
            .zip(inputs)
            .map(|(p, i)| OneFile {
                path: p.clone(),
                out: None,
                header: None,
                enc: i.encoding,
                bom: match i.encoding {
                    Some(e) => e == UTF_16LE || e == UTF_16BE,
                    None => has_utf8_bom(i),
                },
                zip: compression_of(i, p),
                array: i.format.writes_array(),
                elements: 0,
                pending: false,
                early: None,
                existed: false,
            })
            .collect();
        RetryFiles {
            kind,
            files,
            encoded: Vec::new(),
            resume,
            dirty: false,
        }
    }

    fn write(&mut self, input: u32, raw: &[u8]) -> Result<()> {
        let f = &mut self.files[input as usize];
        if f.out.is_none() && f.early.is_none() {
            f.prepare(self.resume)?;
        }
        f.pending = true;
        let mut row = raw;
        let mut sep: &[u8] = b"";
        if f.array {
            row = row.strip_suffix(b"\n").unwrap_or(row);
            sep = if f.elements > 0 { b",\n" } else { b"" };
            f.elements += 1;
        }
        self.encoded.clear();
        f.encode(sep, &mut self.encoded);
        f.encode(row, &mut self.encoded);
        if let Some(early) = &mut f.early {
            early.extend_from_slice(&self.encoded);
            return Ok(());
        }
        let w = f.out.as_mut().expect("created at a checkpoint");
        w.write_all(&self.encoded)
            .map_err(|e| Error::file(&f.path, e))
    }
}

impl OneFile {
    /// Appends `utf8` to `out` in the file's encoding.
    fn encode(&self, utf8: &[u8], out: &mut Vec<u8>) {
        match self.enc {
            Some(enc) => decode::encode(enc, utf8, out),
            None => out.extend_from_slice(utf8),
        }
    }

    /// At its first row, what the file starts with: new, its mark, header or `[`; or,
    /// resuming, what the earlier run wrote (a JSON array reopened before its `]`).
    fn prepare(&mut self, resume: bool) -> Result<()> {
        let path = &self.path;
        let err =
            |e: std::io::Error| Error::file(path, format!("cannot write the retry file: {e}"));
        let existed = resume && std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let mut start = Vec::new();
        if existed && self.array {
            // The earlier run closed the array: the file is rewritten without its `]`.
            let text = self.read_back().map_err(err)?;
            let body = text.trim_end();
            let body = body.strip_suffix(']').unwrap_or(body).trim_end();
            self.elements = u64::from(!body.ends_with('['));
            self.start_of_file(&mut start);
            self.encode(body.as_bytes(), &mut start);
        } else if !existed {
            self.start_of_file(&mut start);
            if let Some(h) = &self.header {
                self.encode(h, &mut start);
            }
            if self.array {
                self.encode(b"[\n", &mut start);
            }
        }
        self.existed = existed;
        self.early = Some(start);
        Ok(())
    }

    /// Creates (or, resuming, reopens) the file and writes what `prepare` and the rows
    /// since put in `early`.
    fn create(&mut self) -> Result<()> {
        let Some(early) = self.early.take() else {
            return Ok(());
        };
        let path = &self.path;
        let err =
            |e: std::io::Error| Error::file(path, format!("cannot write the retry file: {e}"));
        let append = self.existed && !self.array;
        // A new file is created exclusively: the path was checked before the run (an
        // earlier run's file removed, a user's refused), so anything there now (a hard
        // link to the input, someone's file) appeared since and is left as it is.
        let file = match self.existed {
            false => super::results::create_new_private(path),
            true => create_private(path, append),
        }
        .map_err(err)?;
        let mut w = Writer::new(BufWriter::new(file), self.zip).map_err(err)?;
        w.write_all(&early).map_err(err)?;
        self.out = Some(w);
        Ok(())
    }

    fn start_of_file(&self, out: &mut Vec<u8>) {
        if self.bom {
            out.extend_from_slice(match self.enc {
                Some(e) if e == UTF_16LE => b"\xFF\xFE",
                Some(e) if e == UTF_16BE => b"\xFE\xFF",
                _ => b"\xEF\xBB\xBF",
            });
        }
    }

    /// The file as text (decompressed, decoded).
    fn read_back(&self) -> std::io::Result<String> {
        let mut raw = File::open(&self.path)?;
        let mut bytes = Vec::new();
        match self.zip {
            Compression::None => raw.read_to_end(&mut bytes)?,
            Compression::Gzip => flate2::read::MultiGzDecoder::new(raw).read_to_end(&mut bytes)?,
            Compression::Zstd => zstd::stream::read::Decoder::new(raw)?.read_to_end(&mut bytes)?,
        };
        Ok(self.enc.unwrap_or(UTF_8).decode(&bytes).0.into_owned())
    }

    fn flush(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.pending) {
            return Ok(());
        }
        self.create()?;
        if let Some(w) = &mut self.out {
            w.checkpoint().map_err(|e| Error::file(&self.path, e))?;
        }
        Ok(())
    }

    /// The end: a JSON array's `]`, the last member or frame.
    fn finish(&mut self) -> Result<()> {
        self.create()?;
        let Some(mut w) = self.out.take() else {
            return Ok(());
        };
        let mut end = Vec::new();
        if self.array {
            self.encode(b"\n]\n", &mut end);
        }
        w.write_all(&end)
            .and_then(|()| w.finish())
            .map_err(|e| Error::file(&self.path, e))
    }
}

/// The file's bytes on their way to disk: as they are, or compressed in members (gzip)
/// or frames (zstd) that each checkpoint completes.
enum Writer {
    Plain(BufWriter<File>),
    Gzip(Option<flate2::write::GzEncoder<BufWriter<File>>>),
    Zstd(Option<zstd::stream::write::Encoder<'static, BufWriter<File>>>),
}

impl Writer {
    fn new(w: BufWriter<File>, zip: Compression) -> std::io::Result<Writer> {
        Ok(match zip {
            Compression::None => Writer::Plain(w),
            Compression::Gzip => Writer::Gzip(Some(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            ))),
            Compression::Zstd => Writer::Zstd(Some(zstd::stream::write::Encoder::new(w, 3)?)),
        })
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Plain(w) => w.write_all(b),
            Writer::Gzip(Some(w)) => w.write_all(b),
            Writer::Zstd(Some(w)) => w.write_all(b),
            _ => Err(std::io::Error::other("the retry file is closed")),
        }
    }

    /// Everything so far on disk, readable: a compressed file's member or frame ends here
    /// and the next starts.
    fn checkpoint(&mut self) -> std::io::Result<()> {
        match self {
            Writer::Plain(w) => w.flush(),
            Writer::Gzip(g) => {
                let mut w = g.take().expect("open").finish()?;
                w.flush()?;
                *g = Some(flate2::write::GzEncoder::new(
                    w,
                    flate2::Compression::default(),
                ));
                Ok(())
            }
            Writer::Zstd(z) => {
                let mut w = z.take().expect("open").finish()?;
                w.flush()?;
                *z = Some(zstd::stream::write::Encoder::new(w, 3)?);
                Ok(())
            }
        }
    }

    fn finish(self) -> std::io::Result<()> {
        let mut w = match self {
            Writer::Plain(w) => w,
            Writer::Gzip(Some(g)) => g.finish()?,
            Writer::Zstd(Some(z)) => z.finish()?,
            _ => return Ok(()),
        };
        w.flush()
    }
}

impl Sink for RetryFiles {
    fn on_input_start(&mut self, input: u32, header: Option<&[u8]>) -> Result<()> {
        self.files[input as usize].header = header.map(<[u8]>::to_vec);
        Ok(())
    }

    fn on_batch(&mut self, batch: &Batch, outcomes: &[Option<Outcome>]) -> Result<()> {
        self.dirty = true;
        for (i, o) in outcomes.iter().enumerate() {
            if o.as_ref().is_some_and(|o| self.kind.takes(o.status)) {
                self.write(batch.rows[i].input, batch.raw(i))?;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, _: &Tally) -> Result<()> {
        if std::mem::take(&mut self.dirty) {
            for f in &mut self.files {
                f.flush()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        for f in &mut self.files {
            f.finish()?;
        }
        Ok(())
    }
}

/// Whether a UTF-8 input starts with a byte order mark (its retry file then does too:
/// spreadsheets read UTF-8 by it). Only a regular file is read again for it.
fn has_utf8_bom(input: &Input) -> bool {
    // Not a FIFO or a device: opening one again may block or take its data.
    let regular = input
        .path
        .as_deref()
        .is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()));
    if !regular {
        return false;
    }
    let Some(path) = input.path.as_deref() else {
        return false;
    };
    input
        .head(path)
        .is_ok_and(|head| head.starts_with(b"\xEF\xBB\xBF"))
}

/// How the same command reads the file at `retry`: by its name, or else by
/// `--compression` when that is what named the input's (its name did not say).
fn compression_of(input: &Input, retry: &Path) -> Compression {
    if let Some(c) = named_compression(&retry.to_string_lossy()) {
        return c;
    }
    match input.path.as_deref() {
        Some(p) if named_compression(&p.to_string_lossy()).is_some() => Compression::None,
        _ => input.compression,
    }
}

/// The files of `kind` that hold rows, from this run or (resuming) an earlier one. None
/// in a dry run, which writes nothing.
pub fn written(cfg: &LoadConfig, kind: Kind) -> Vec<PathBuf> {
    if cfg.results.is_none() {
        return Vec::new();
    }
    let paths = match kind {
        Kind::Retry => &cfg.retry_files,
        Kind::Ambiguous => &cfg.ambiguous_files,
    };
    paths
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_appears_at_a_new_retry_path_during_the_run_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.csv");
        std::fs::write(&input, "x\n1\n").unwrap();
        let cfg = crate::config::tests::load_config(&[input.to_str().unwrap(), "--conv-id", "1"])
            .unwrap();
        let mut files = RetryFiles::new(&cfg.retry_files, &cfg.inputs, false, Kind::Retry);
        // After the run started, before its first failed row: a hard link to the input.
        std::fs::hard_link(&input, &cfg.retry_files[0]).unwrap();
        files.write(0, b"1\n").unwrap();
        let e = files.finish().unwrap_err();
        assert!(e.to_string().contains("cannot write the retry file"), "{e}");
        assert_eq!(std::fs::read(&input).unwrap(), b"x\n1\n");
    }
}
