//! Records in.
//!
//! In: the input paths (`-` for stdin; `.gz` and `.zst` decompressed on the fly; another
//! encoding than UTF-8 decoded on the fly, `decode.rs`). Out: records with their record
//! number and line, streamed from a reused buffer; a file is never loaded whole. Bytes
//! read are counted for the progress display.
//!
//! A format is one file here that implements [`Records`] for its reader, yielding one of
//! two kinds of record ([`Kind`]), each with its own mapping (`crate::mapping`): named
//! fields (`csv::ByteRecord` with a [`Header`]: `csv.rs`) or a JSON object's text (`[u8]`:
//! `ndjson.rs`, `json_array.rs`, `sheet.rs`). Its [`Spec`] holds every fact the rest of
//! the code asks about a format: its `--format` value, its extensions, its kind, how it
//! opens (a byte stream, or a file it seeks in: XLSX and ODS are zip files), its retry
//! file, the flags that apply to it. The reader loop and the preflight (`crate::read`)
//! are written once over the trait, and nothing outside this module names a format. So
//! adding one is a new file with its `Spec` and its line in [`FORMATS`]
//! (docs/architecture.md, Where a change goes).

pub mod csv;
pub mod decode;
pub mod json_array;
pub mod ndjson;
pub mod sheet;
pub mod sniff;

use crate::error::{Error, Result};
use encoding_rs::Encoding;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Where reading an input stopped early, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The line where reading broke (the line after the last complete record).
    pub line: u64,
    pub message: String,
}

/// A source of records, read one at a time into a buffer it reuses.
pub trait Records {
    /// The record as the source holds it: `csv::ByteRecord` (named fields) or `[u8]` (a
    /// JSON object's text).
    type Record: ?Sized;

    /// Advances to the next record: `(row, line)`, or `None` at the end. The row counts
    /// records from 1 (header excluded); the line is where the record starts.
    fn advance(&mut self) -> std::result::Result<Option<(u64, u64)>, ReadError>;

    /// The current record.
    fn record(&self) -> &Self::Record;

    /// The length of the current record when it was too long to keep (the rest of it was
    /// skipped): it is rejected, not mapped.
    fn too_long(&self) -> Option<u64> {
        None
    }

    /// Why the current record cannot be mapped, when the source can tell (a sheet's cell
    /// holding an error, or outside the header's columns): it is rejected with this reason.
    fn unfit(&self) -> Option<&str> {
        None
    }

    /// Passes over the next records, unread, while `pass(row, fields)` says so, given
    /// each one's row number and field count (`--shard`: other copies' rows). Only as
    /// far as both are known for certain, exactly as `advance` would give them, without
    /// reading the fields (CSV: plain lines), and only within what is already read in.
    /// The rows passed over count as read: `advance` goes on after the last. A source
    /// that cannot tell passes none.
    fn pass_while(&mut self, _pass: &mut dyn FnMut(u64, usize) -> bool) {}
}

/// The names of a source's fields.
#[derive(Debug, Clone)]
pub struct Header {
    /// Column names (from the header, or key1..keyN without one).
    pub names: Vec<String>,
    /// The header as read, for the retry file (`None` without one).
    pub record: Option<::csv::ByteRecord>,
    /// The retry file is written with the input's delimiter.
    pub delimiter: u8,
}

/// An input opened for reading, by the kind of its records.
pub enum Opened {
    Fields(Box<dyn Records<Record = ::csv::ByteRecord>>, Header),
    Objects(Box<dyn Records<Record = [u8]>>),
}

/// The settings every format is opened with (each uses those that apply to it).
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub delimiter: u8,
    pub has_header: bool,
    /// `--empty`: a format that writes JSON objects from cells (a sheet) writes an empty
    /// cell as CSV's mapping would.
    pub empty: crate::mapping::EmptyPolicy,
    /// The largest record worth reading whole (see `crate::read::max_row`).
    pub max_row: u64,
}

/// The kind of record a format yields, and so the mapping that reads it (`crate::mapping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Named fields (`csv::ByteRecord` with a [`Header`]); the retry file is CSV.
    Fields,
    /// A JSON object's text; the retry file is NDJSON.
    Objects,
}

/// How a format opens.
pub enum Open {
    /// From a byte stream (decompressed and decoded first; stdin too); `name` names the
    /// input in errors. Reads at most the header.
    Stream(fn(Box<dyn BufRead>, &ReadOptions, &str) -> Result<Opened>),
    /// From a file it may seek in (a zip: XLSX, ODS), with the `--sheet` asked for; never
    /// stdin, never compressed.
    File(fn(&Path, Option<&str>, &ReadOptions) -> Result<Opened>),
}

/// What a format is: every fact about it that the rest of the code asks. Registered in
/// [`FORMATS`]; nothing outside this module names a format.
pub struct Spec {
    /// Its `--format` value.
    pub name: &'static str,
    /// The file extensions that imply it (after `.gz`/`.zst`), lower case, with the dot.
    pub extensions: &'static [&'static str],
    /// For an extension two formats share (`.json`): whether the file's first bytes
    /// (decoded) are of this format. The first format in [`FORMATS`] to claim a file wins.
    pub claims: Option<fn(&[u8]) -> bool>,
    pub kind: Kind,
    pub open: Open,
    /// The `--format` value of the format its retry file is written in (the retry file
    /// loads back with the same command, so it must be read as that format).
    pub retry_format: &'static str,
    /// How a file czload writes in this format starts (for `claims`, to tell which format
    /// a name and those bytes would be read as).
    pub starts: &'static [u8],
    /// How the results log's manifest names it (`--resume` compares).
    pub manifest: &'static str,
    /// `--delimiter` applies.
    pub delimited: bool,
    /// The first row may be a header (`--no-header` applies).
    pub header_row: bool,
    /// Its values may be JSON objects: `--data-field` and `--op raw` apply.
    pub json_values: bool,
    /// A file holds several tables: `--sheet` picks one.
    pub sheets: bool,
}

/// Every format, registered here: the one line a new format adds. The order decides
/// which claims a shared extension first.
const FORMATS: &[&Spec] = &[
    &csv::SPEC,
    &json_array::SPEC,
    &ndjson::SPEC,
    &sheet::XLSX,
    &sheet::ODS,
];

/// `--format`'s parser (`cli.rs`): the registered names, each with its extensions as help.
pub fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    Format::value_parser()
}

/// An input format: a handle on its [`Spec`] in the registry.
#[derive(Clone, Copy)]
pub struct Format(&'static Spec);

impl PartialEq for Format {
    fn eq(&self, other: &Format) -> bool {
        // By name: a `const` may be copied, so its address is no identity.
        self.0.name == other.0.name
    }
}

impl Eq for Format {}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl Format {
    /// The formats that `sniff.rs` tells apart by their first bytes.
    pub(super) const CSV: Format = Format(&csv::SPEC);
    pub(super) const NDJSON: Format = Format(&ndjson::SPEC);
    pub(super) const JSON_ARRAY: Format = Format(&json_array::SPEC);

    /// The format whose `--format` value is `name`.
    pub fn by_name(name: &str) -> Option<Format> {
        FORMATS.iter().find(|s| s.name == name).map(|s| Format(s))
    }

    fn value_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
        use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
        let values = FORMATS.iter().map(|s| {
            let exts = s.extensions.join(", ");
            PossibleValue::new(s.name).help(if exts.is_empty() { String::new() } else { exts })
        });
        PossibleValuesParser::new(values)
            .map(|n: String| Format::by_name(&n).expect("a registered name"))
    }

    /// The `--format` values that can read a stream (stdin), for messages.
    fn stream_names() -> String {
        let names: Vec<&str> = FORMATS
            .iter()
            .filter(|s| matches!(s.open, Open::Stream(_)))
            .map(|s| s.name)
            .collect();
        names.join(", ")
    }

    /// The format a file name (less `.gz`/`.zst`) and its first bytes imply.
    fn of_file(inner: &str, head: impl Fn() -> Vec<u8>) -> Option<Format> {
        FORMATS
            .iter()
            .find(|s| {
                s.extensions.iter().any(|e| inner.ends_with(e))
                    && s.claims.is_none_or(|claims| claims(&head()))
            })
            .map(|s| Format(s))
    }

    /// Its `--format` value.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The kind of its records.
    pub fn kind(self) -> Kind {
        self.0.kind
    }

    /// Its usual extension, without the dot (the first it is registered with).
    pub fn ext(self) -> &'static str {
        self.0.extensions.first().map_or(self.0.name, |e| &e[1..])
    }

    /// The format its retry file is written in (`Spec::retry_format`).
    pub fn retry_format(self) -> Format {
        Format::by_name(self.0.retry_format).expect("retry formats are registered")
    }

    /// Its files are one JSON array (a retry file in it is rewritten before its `]`).
    pub fn writes_array(self) -> bool {
        self == Format::JSON_ARRAY
    }

    /// Whether a file named `inner` (its name less `.gz`/`.zst`) holding what czload
    /// writes in this format is read as this format when no `--format` says so.
    pub fn read_by_name(self, inner: &str) -> bool {
        let inner = inner.to_ascii_lowercase();
        Format::of_file(&inner, || self.0.starts.to_vec()) == Some(self)
    }

    /// `--delimiter` applies.
    pub fn delimited(self) -> bool {
        self.0.delimited
    }

    /// `--no-header` applies.
    pub fn header_row(self) -> bool {
        self.0.header_row
    }

    /// Its values may be JSON objects: `--data-field` and `--op raw` apply.
    pub fn json_values(self) -> bool {
        self.0.json_values
    }

    /// Bytes a retry row adds for a generated ref besides the ref itself: `,` after a CSV
    /// row; `"_czload_ref":"",` before an object's fields (the progress display takes
    /// them off the bytes sent, to compare with the bytes read).
    pub fn retry_ref_overhead(self) -> u64 {
        match self.0.kind {
            Kind::Fields => 1,
            Kind::Objects => 17,
        }
    }
}

/// How an input is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// How the inputs are read, beyond their names: from the command line.
#[derive(Debug, Clone)]
pub struct Reading {
    /// `--format`; `None`: from each file's extension.
    pub format: Option<Format>,
    /// `--compression`, for stdin (files go by their extension).
    pub compression: Compression,
    /// `--encoding`; `None` is UTF-8 (or UTF-16 where a byte order mark says so).
    pub encoding: Option<&'static Encoding>,
    /// `--delimiter`; `None`: tab for .tsv, else `,`.
    pub delimiter: Option<u8>,
    /// `--encoding` was given (`--encoding utf-8` too), and CSV has a header: what
    /// `sniff::check` holds the bytes against.
    pub encoding_flag: bool,
    pub has_header: bool,
    /// `--sheet`, for the formats whose files hold several tables (the others ignore it,
    /// so that a retry file loads with the same flags).
    pub sheet: Option<String>,
}

/// One input, as given on the command line.
#[derive(Debug, Clone)]
pub struct Input {
    pub index: u32,
    /// `None` for stdin.
    pub path: Option<PathBuf>,
    pub format: Format,
    pub compression: Compression,
    /// The encoding to decode from; `None` is UTF-8 (no decoding).
    pub encoding: Option<&'static Encoding>,
    /// CSV: the field delimiter.
    pub delimiter: u8,
    /// CSV: the delimiter the file seems to use instead (see `csv::guess_delimiter`).
    pub delimiter_hint: Option<u8>,
    /// Size on disk (compressed for .gz), for the progress ETA; `None` for stdin.
    pub size: Option<u64>,
    /// Which reading flags were given: `sniff` holds the bytes against them.
    pub given: sniff::Given,
    /// `--sheet`, when the format has sheets (`None`: the first).
    pub sheet: Option<String>,
}

impl Input {
    /// Checks that the input exists and can be read, and settles its format: the run
    /// refuses to start on a missing file rather than failing half-way. The format comes
    /// from `--format`, else from the extension ([`Spec::extensions`], [`Spec::claims`]).
    pub fn resolve(index: u32, arg: &Path, how: &Reading) -> Result<Input> {
        if arg == Path::new("-") {
            let format = how.format.ok_or_else(|| {
                Error::Usage(format!(
                    "reading stdin (`-`) needs --format {}",
                    Format::stream_names()
                ))
            })?;
            if matches!(format.0.open, Open::File(_)) {
                return Err(Error::Usage(format!(
                    "--format {} cannot be read from stdin (`-`): it is a zip file, read by seeking in it; save it to a file and name the file",
                    format.name()
                )));
            }
            return Ok(Input {
                index,
                path: None,
                format,
                compression: how.compression,
                encoding: how.encoding,
                delimiter: how.delimiter.unwrap_or(b','),
                delimiter_hint: None,
                size: None,
                given: sniff::Given::of(how),
                sheet: None,
            });
        }
        let meta = std::fs::metadata(arg).map_err(|e| Error::file(arg, io_reason(&e)))?;
        if meta.is_dir() {
            return Err(Error::file(arg, "is a directory, not an input file"));
        }
        std::fs::File::open(arg).map_err(|e| Error::file(arg, io_reason(&e)))?;
        let name = arg
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let (compression, inner) = if let Some(x) = name.strip_suffix(".gz") {
            (Compression::Gzip, x)
        } else if let Some(x) = name.strip_suffix(".zst") {
            (Compression::Zstd, x)
        } else {
            // `--compression` for a file whose name does not say.
            (how.compression, name.as_str())
        };
        let mut input = Input {
            index,
            path: Some(arg.to_path_buf()),
            format: Format(&csv::SPEC),
            compression,
            encoding: how.encoding,
            delimiter: how
                .delimiter
                .unwrap_or(if inner.ends_with(".tsv") { b'\t' } else { b',' }),
            delimiter_hint: None,
            size: Some(meta.len()),
            given: sniff::Given::of(how),
            sheet: None,
        };
        let head = input.head(arg)?;
        // A UTF-16 file announces itself; the retry file is then written in it too.
        input.encoding = how.encoding.or_else(|| decode::sniff_bom(&head));
        let format = how
            .format
            .or_else(|| Format::of_file(inner, || input.decoded(&head)));
        input.format = format.ok_or_else(|| {
            let names: Vec<&str> = FORMATS.iter().map(|s| s.name).collect();
            Error::file(
                arg,
                format!(
                    "cannot tell the format from the extension; pass --format {}",
                    names.join(", ")
                ),
            )
        })?;
        if matches!(input.format.0.open, Open::File(_)) {
            if compression != Compression::None {
                return Err(Error::file(
                    arg,
                    format!(
                        "a compressed {} file cannot be read (it is a zip already): decompress it first",
                        input.format.name()
                    ),
                ));
            }
            input.encoding = None;
            input.sheet = how.sheet.clone().filter(|_| input.format.0.sheets);
            return Ok(input);
        }
        sniff::refuse_contradicted(&input, &head)?;
        if input.format.delimited() && how.delimiter.is_none() {
            input.delimiter_hint = csv::guess_delimiter(&input.decoded(&head), input.delimiter);
        }
        Ok(input)
    }

    /// The first bytes of the file, decompressed (up to `sniff::SAMPLE`, and one more
    /// byte when there are more).
    pub(crate) fn head(&self, path: &Path) -> Result<Vec<u8>> {
        let file = std::fs::File::open(path).map_err(|e| Error::file(path, io_reason(&e)))?;
        let mut head = Vec::with_capacity(4096);
        self.decompress(Box::new(file))?
            .take(sniff::SAMPLE as u64 + 1)
            .read_to_end(&mut head)
            .map_err(|e| {
                Error::file(path, format!("cannot read it{}: {e}", self.compressed_by()))
            })?;
        Ok(head)
    }

    /// How the input is decompressed, for a message that it cannot be: ` as gzip
    /// (--compression gzip)` when the flag said so (the name did not), so that a wrong
    /// flag is named.
    fn compressed_by(&self) -> String {
        let (name, ext) = match self.compression {
            Compression::None => return String::new(),
            Compression::Gzip => ("gzip", ".gz"),
            Compression::Zstd => ("zstd", ".zst"),
        };
        let named = self.display().to_ascii_lowercase().ends_with(ext);
        match named {
            true => format!(" as {name}"),
            false => format!(" as {name} (--compression {name})"),
        }
    }

    /// `head` as UTF-8, for a look at its first characters.
    fn decoded(&self, head: &[u8]) -> Vec<u8> {
        match self.encoding {
            // `decode` drops a byte order mark (and follows one).
            Some(enc) => enc.decode(head).0.as_bytes().to_vec(),
            None => head.to_vec(),
        }
    }

    /// The input's bytes, decompressed.
    fn decompress(&self, raw: Box<dyn Read>) -> Result<Box<dyn BufRead>> {
        const CAP: usize = 256 * 1024;
        Ok(match self.compression {
            Compression::None => Box::new(BufReader::with_capacity(CAP, raw)),
            Compression::Gzip => Box::new(BufReader::with_capacity(
                CAP,
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(CAP, raw)),
            )),
            Compression::Zstd => {
                let dec =
                    zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(CAP, raw))
                        .map_err(|e| {
                            Error::file(
                                self.display(),
                                format!("cannot read it{}: {e}", self.compressed_by()),
                            )
                        })?;
                Box::new(BufReader::with_capacity(CAP, dec))
            }
        })
    }

    /// How the input is named in messages.
    pub fn display(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "<stdin>".into(),
        }
    }

    /// The file name without directories: the seed of auto refs, so that the same file
    /// loaded from another directory gets the same refs.
    pub fn file_name(&self) -> String {
        match &self.path {
            Some(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            None => "stdin".into(),
        }
    }

    /// `orders.csv.gz` -> `orders`: the base of the default output names.
    pub fn stem(&self) -> String {
        let name = self.file_name();
        let mut s = name.as_str();
        if let Some(x) = s.strip_suffix(".gz").or_else(|| s.strip_suffix(".zst")) {
            s = x;
        }
        let ext = FORMATS.iter().flat_map(|f| f.extensions);
        match ext.filter_map(|e| s.strip_suffix(e)).next() {
            Some(x) => x.to_string(),
            None => s.to_string(),
        }
    }

    /// The directory of the input (`.` for stdin), where default outputs go.
    pub fn dir(&self) -> PathBuf {
        match self.path.as_ref().and_then(|p| p.parent()) {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Opens the input's records, as its format opens (a stream, or a file it seeks
    /// in). `counter` receives the bytes read from disk (a file opened whole counts its
    /// size once opened). For stdin, `on_idle` is called when no data came for `linger`,
    /// so the caller can send a partial batch (see `IdleReader`).
    pub fn open(
        &self,
        opts: &ReadOptions,
        counter: Arc<AtomicU64>,
        linger: Duration,
        on_idle: Box<dyn FnMut()>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Opened> {
        match (&self.format.0.open, &self.path) {
            (Open::Stream(open), _) => {
                let bytes = self.stream(counter, linger, on_idle, stop)?;
                open(bytes, opts, &self.display())
            }
            (Open::File(open), Some(path)) => {
                let opened = open(path, self.sheet.as_deref(), opts)?;
                counter.fetch_add(self.size.unwrap_or(0), Ordering::Relaxed);
                Ok(opened)
            }
            // `resolve` refuses it.
            (Open::File(_), None) => Err(Error::Usage(format!(
                "--format {} cannot be read from stdin",
                self.format.name()
            ))),
        }
    }

    /// The input's bytes, decompressed and decoded to UTF-8.
    fn stream(
        &self,
        counter: Arc<AtomicU64>,
        linger: Duration,
        on_idle: Box<dyn FnMut()>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Box<dyn BufRead>> {
        let raw: Box<dyn Read> = match &self.path {
            Some(p) => Box::new(Counting {
                inner: std::fs::File::open(p).map_err(|e| Error::file(p, io_reason(&e)))?,
                counter,
            }),
            None => Box::new(Counting {
                inner: IdleReader::stdin(linger, on_idle, stop),
                counter,
            }),
        };
        let mut bytes = self.decompress(raw)?;
        // Stdin's encoding is known only now: a UTF-16 byte order mark; and its first
        // bytes are checked only now (`sniff`).
        let bom = match &self.path {
            None => {
                let head = bytes
                    .fill_buf()
                    .map_err(|e| Error::file(self.display(), format!("cannot read it: {e}")))?;
                sniff::refuse_contradicted(self, head)?;
                self.encoding
                    .is_none()
                    .then(|| decode::sniff_bom(head))
                    .flatten()
            }
            _ => None,
        };
        Ok(match self.encoding.or(bom) {
            // UTF-8: read as it is, no extra step.
            None => bytes,
            Some(enc) => Box::new(decode::Decode::new(bytes, enc)),
        })
    }

    /// How the results log's manifest names the input's format (and its sheet):
    /// `--resume` refuses another.
    pub fn manifest_format(&self) -> String {
        match &self.sheet {
            Some(s) => format!("{} --sheet {s}", self.format.0.manifest),
            None => self.format.0.manifest.to_string(),
        }
    }
}

/// A user-facing reason for an I/O error on an input.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads stdin on its own thread and hands chunks over a channel, so that the reading
/// thread can notice a pause (no data for `linger`) without a platform-specific poll and
/// call `on_idle`: with a slow producer on stdin, rows must not wait for a full batch.
/// Rows completed before the pause are by then in the batcher; a record the pause cut in
/// two waits for the rest of its line, as it must.
pub struct IdleReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    linger: Duration,
    done: bool,
    on_idle: Box<dyn FnMut()>,
    /// The run is stopping: a quiet stdin must not hold the reader thread.
    stop: tokio_util::sync::CancellationToken,
}

impl IdleReader {
    fn stdin(
        linger: Duration,
        on_idle: Box<dyn FnMut()>,
        stop: tokio_util::sync::CancellationToken,
    ) -> IdleReader {
        let (tx, rx) = mpsc::sync_channel(4);
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let mut buf = vec![0u8; 64 * 1024];
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        IdleReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            linger,
            done: false,
            on_idle,
            stop,
        }
    }
}

impl Read for IdleReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            let mut idle_told = false;
            let next = loop {
                match self.rx.recv_timeout(self.linger) {
                    Ok(c) => break Ok(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if self.stop.is_cancelled() {
                            // The reader checks the stop flag after this read and drops
                            // whatever partial record it holds.
                            break Err(());
                        }
                        if !idle_told {
                            // The partial batch goes out; then wait as long as it takes.
                            (self.on_idle)();
                            idle_told = true;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break Err(()),
                }
            };
            match next {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(()) => self.done = true,
            }
        }
        let n = (self.chunk.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
