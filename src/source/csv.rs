//! CSV records, through one `csv::ByteRecord` reused across rows.

use super::ReadError;
use super::{Header, Kind, Open, Opened, ReadOptions, Records, Spec};
use crate::error::{Error, Result};
use std::io::BufRead;

/// CSV: named fields; the retry file is CSV too.
pub const SPEC: Spec = Spec {
    name: "csv",
    extensions: &[".csv", ".tsv", ".txt"],
    claims: None,
    kind: Kind::Fields,
    open: Open::Stream(open),
    retry_format: "csv",
    starts: b"",
    manifest: "csv",
    delimited: true,
    header_row: true,
    json_values: false,
    sheets: false,
};

fn open(reader: Box<dyn BufRead>, opts: &ReadOptions, name: &str) -> Result<Opened> {
    let src = CsvSource::new(reader, opts.delimiter, opts.has_header, name)?.max_row(opts.max_row);
    let header = Header {
        names: src.header.clone(),
        record: src.header_record.clone(),
        delimiter: opts.delimiter,
    };
    Ok(Opened::Fields(Box::new(src), header))
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The smallest cap on a CSV row's size; see [`CsvSource::max_row`].
pub const MAX_ROW_BYTES: u64 = 16 << 20;

/// Between the input and the csv reader: refuses to hand over more once the record being
/// read holds more than `limit` bytes, so that a quote that is never closed cannot make
/// the csv reader hold the whole rest of the file as one record. The csv reader then
/// fails with that error, the input breaks off at the runaway row, the rows before it
/// are kept, and memory stays bounded.
///
/// It counts the bytes that are not line ends handed over since the last complete record
/// (`mark`; [`CsvSource`] sets it and restarts the count) once more than 1 MiB has gone by
/// since it: blank lines between records (which the csv reader skips within one record
/// read) never count, and what is not counted (the first MiB, and the part of the record
/// that came before the last complete one was marked: at most the csv reader's 256 KiB
/// buffer) only moves the cutoff by that much.
struct RowGuard {
    inner: Box<dyn BufRead>,
    /// Where the last complete record ended, as the csv reader counts bytes.
    mark: u64,
    /// Bytes other than line ends counted since `mark` (see above).
    content: u64,
    limit: u64,
    tripped: bool,
    /// Bytes handed over in all, and whether the input has ended: together they tell a
    /// record ended by the end of the input from one ended by a line end.
    given: u64,
    eof: bool,
    /// The last byte handed over.
    last: u8,
    /// Hand over at most one line per read (see [`CsvSource::pass_while`]).
    lines: bool,
    /// An error met by `pass_while`, for the csv reader to meet in its turn.
    pending: Option<std::io::Error>,
}

impl std::io::Read for RowGuard {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.content > self.limit {
            self.tripped = true;
            return Err(std::io::Error::other(format!(
                "a row here runs over {} MiB, more than any request may hold: is a quote opened in it never closed? The rest of the file was not read",
                self.limit >> 20
            )));
        }
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        // Counting only once a record (or a run of blank lines) has passed 1 MiB keeps
        // ordinary files free of the count (it cost 7% of the reader's time per row in
        // `benches/pipeline.rs`), and moves the cutoff by at most that much.
        let counting = self.given - self.mark > 1 << 20;
        let n = if self.lines {
            self.read_line(buf)?
        } else {
            self.inner.read(buf)?
        };
        self.given += n as u64;
        self.eof |= n == 0 && !buf.is_empty();
        if n > 0 {
            self.last = buf[n - 1];
        }
        if counting {
            let ends = buf[..n]
                .iter()
                .filter(|&&c| c == b'\n' || c == b'\r')
                .count();
            self.content += (n - ends) as u64;
        }
        Ok(n)
    }
}

impl RowGuard {
    /// Hands over the input's buffered bytes up to the next line end (all of them when it
    /// holds none), so that the csv reader, having read a record that ends a line, holds
    /// nothing after it.
    fn read_line(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.inner.fill_buf()?;
        let n = memchr::memchr(b'\n', avail)
            .map_or(avail.len(), |i| i + 1)
            .min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.inner.consume(n);
        Ok(n)
    }
}

/// A header record's fields as column names (trimmed), or which one is not UTF-8.
fn header_names(first: &csv::ByteRecord, name: &str) -> Result<Vec<String>> {
    first
        .iter()
        .enumerate()
        .map(|(i, f)| {
            std::str::from_utf8(f)
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    Error::file(
                        name,
                        format!("column {} of the header is not valid UTF-8", i + 1),
                    )
                })
        })
        .collect()
}

pub struct CsvSource {
    rdr: csv::Reader<RowGuard>,
    /// The line after the last complete record: where a runaway row starts.
    next_line: u64,
    /// The line the last complete record ended on.
    end_line: u64,
    /// Column names (from the header, or key1..keyN with `--no-header`).
    pub header: Vec<String>,
    /// The header as read, for the retry file (`None` with `--no-header`).
    pub header_record: Option<csv::ByteRecord>,
    rec: csv::ByteRecord,
    row: u64,
    /// With `--no-header` the first record is read to count columns, then given out.
    first_pending: bool,
    last_line: u64,
    /// Added to the line of every record after the first (see `new`).
    line_fix: u64,
    /// The lines `pass_while` passed over, which the csv reader did not see: added to
    /// every line it reports.
    passed_lines: u64,
    /// The delimiter is none of `"`, `\r`, `\n`: a line without those is a plain record.
    delimiter: Option<u8>,
}

impl CsvSource {
    /// Reads the header. An input without even a header row is unusable: the error names it.
    pub fn new(
        mut reader: Box<dyn BufRead>,
        delimiter: u8,
        has_header: bool,
        name: &str,
    ) -> Result<CsvSource> {
        // csv takes a record's position before it swallows the `\n` of the previous
        // record's `\r\n`, so in CRLF files every record after the first reports the line
        // before its own. Peek at the first line end to correct for it.
        let crlf = match reader.fill_buf() {
            Ok(buf) => buf
                .iter()
                .position(|&c| c == b'\n')
                .is_some_and(|i| i > 0 && buf[i - 1] == b'\r'),
            Err(_) => false,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(256 * 1024)
            .from_reader(RowGuard {
                inner: reader,
                mark: 0,
                content: 0,
                limit: MAX_ROW_BYTES,
                tripped: false,
                given: 0,
                eof: false,
                last: 0,
                lines: false,
                pending: None,
            });
        let mut first = csv::ByteRecord::new();
        let got = rdr.read_byte_record(&mut first).map_err(|e| {
            Error::file(
                name,
                format!("cannot read the first row: {}", csv_reason(&e)),
            )
        })?;
        if !got {
            return Err(Error::file(
                name,
                if has_header {
                    "the file is empty: there is no header row"
                } else {
                    "the file is empty"
                },
            ));
        }
        strip_bom(&mut first);
        let last_line = first.position().map_or(1, |p| p.line());
        // With a header, the first record is it; without, it is the first row, given
        // out by the first `advance`.
        // A retry file of a `--no-header` input starts with the names czload gave its
        // columns and the ref column (`key1,key2,_czload_ref`): a header, so that the
        // same command loads it (docs/architecture.md, Exactly once).
        let has_header = has_header || is_retry_header(&first);
        let (header, header_record, rec) = if has_header {
            (
                header_names(&first, name)?,
                Some(first),
                csv::ByteRecord::new(),
            )
        } else {
            (
                (1..=first.len()).map(|i| format!("key{i}")).collect(),
                None,
                first,
            )
        };
        let mut src = CsvSource {
            rdr,
            next_line: 0,
            end_line: 0,
            header,
            first_pending: header_record.is_none(),
            header_record,
            rec,
            row: 0,
            last_line,
            line_fix: crlf as u64,
            passed_lines: 0,
            delimiter: (!b"\"\r\n".contains(&delimiter)).then_some(delimiter),
        };
        src.record_done();
        Ok(src)
    }

    /// The cap on one row's size (never below [`MAX_ROW_BYTES`]); past it the input
    /// breaks off there. Set it above the largest row a request may hold, so that a
    /// merely large row is rejected on its own and the rest of the file still loads.
    pub fn max_row(mut self, bytes: u64) -> CsvSource {
        self.rdr.get_mut().limit = bytes.max(MAX_ROW_BYTES);
        self
    }

    /// After a complete record: notes where it ended, and the guard counts the next one
    /// afresh.
    fn record_done(&mut self) {
        let pos = self.rdr.position().clone();
        // After a record ended by a line end, csv's position is on the next line; in CRLF
        // files it has not yet taken the `\n` (see `new`), hence the fix. A record ended
        // by the end of the input is on the position's own line.
        self.next_line = pos.line() + self.passed_lines + self.line_fix;
        let guard = self.rdr.get_ref();
        // csv marks itself done only at the next read, so ask the guard: the input has
        // ended and the record took everything.
        self.end_line = if guard.eof && guard.given == pos.byte() {
            pos.line() + self.passed_lines
        } else {
            self.next_line - 1
        };
        let guard = self.rdr.get_mut();
        guard.mark = pos.byte();
        guard.content = 0;
    }

    /// The line the current record starts on. csv dates a record from where its read
    /// began, before the blank lines it skips, so `reported` is too early after blank
    /// lines: the start is the line it ended on, less the line ends inside it.
    fn start_line(&self, reported: u64) -> u64 {
        if self.end_line == reported {
            // One line, no blank lines before it: nearly every row, with no scan.
            return reported;
        }
        let inside = self.rec.as_slice().iter().filter(|&&c| c == b'\n').count() as u64;
        self.end_line.saturating_sub(inside).max(reported)
    }

    /// Advances to the next record: `(row, line)`, or `None` at the end.
    pub fn advance(&mut self) -> std::result::Result<Option<(u64, u64)>, ReadError> {
        let fix = if self.first_pending {
            self.first_pending = false;
            0
        } else {
            match self.rdr.read_byte_record(&mut self.rec) {
                Ok(true) => self.record_done(),
                Ok(false) => return Ok(None),
                Err(e) => {
                    let line = if self.rdr.get_ref().tripped {
                        self.next_line
                    } else {
                        e.position().map_or(self.last_line + 1, |p| {
                            p.line() + self.passed_lines + self.line_fix
                        })
                    };
                    return Err(ReadError {
                        line,
                        message: csv_reason(&e),
                    });
                }
            }
            self.line_fix
        };
        self.row += 1;
        let reported = self
            .rec
            .position()
            .map_or(self.last_line + 1, |p| p.line() + self.passed_lines + fix);
        let line = self.start_line(reported);
        self.last_line = line;
        Ok(Some((self.row, line)))
    }

    pub fn record(&self) -> &csv::ByteRecord {
        &self.rec
    }

    /// See [`Records::pass_while`]. A record is passed over unread when it is a plain
    /// line (no quote, no `\r` but the one of a CRLF line end, not empty) that starts
    /// where the csv reader would start its next record: the csv reader has just ended a
    /// record with a line end like this file's first (`\n`; or the `\r` of `\r\n`, and
    /// holds the `\n` alone) and holds nothing after it, so its parser is in the state it
    /// starts a record in. It would read such a line as one record of its delimiters plus
    /// one fields, on one line, and end in that same state, so leaving the line out
    /// changes nothing it reads after, but its line count (`passed_lines`). Once asked,
    /// the csv reader is given one line at a time ([`RowGuard::read_line`]), so that it
    /// holds nothing after a record. Lines ended otherwise than the first are left to it.
    pub fn pass_while(&mut self, pass: &mut dyn FnMut(u64, usize) -> bool) {
        let pos = self.rdr.position();
        let (at, csv_line) = (pos.byte(), pos.line());
        let guard = self.rdr.get_mut();
        guard.lines = true;
        let Some(d) = self.delimiter else { return };
        // The csv reader holds nothing, or (CRLF) the `\n` of the `\r\n` it ended on.
        let crlf = self.line_fix == 1;
        let clean = at + self.line_fix == guard.given && guard.last == b'\n';
        if !clean || guard.pending.is_some() || self.first_pending {
            return;
        }
        let buf = match guard.inner.fill_buf() {
            Ok(b) => b,
            Err(e) => {
                guard.pending = Some(e);
                return;
            }
        };
        let (mut used, mut rows) = (0, 0);
        while let Some(end) = memchr::memchr3(b'\n', b'\r', b'"', &buf[used..]) {
            let line = &buf[used..used + end];
            let ending: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            if end == 0 || !buf[used + end..].starts_with(ending) {
                break;
            }
            let fields = 1 + count_byte(line, d);
            if !pass(self.row + rows + 1, fields) {
                break;
            }
            used += end + ending.len();
            rows += 1;
        }
        guard.inner.consume(used);
        if rows > 0 {
            // The first line passed is the one after the csv reader's last record.
            let first = csv_line + self.passed_lines + self.line_fix;
            self.row += rows;
            self.passed_lines += rows;
            self.last_line = first + rows - 1;
            self.next_line = first + rows;
            self.end_line = self.next_line - 1;
        }
    }
}

impl Records for CsvSource {
    type Record = csv::ByteRecord;

    fn advance(&mut self) -> std::result::Result<Option<(u64, u64)>, ReadError> {
        CsvSource::advance(self)
    }

    fn record(&self) -> &csv::ByteRecord {
        &self.rec
    }

    fn pass_while(&mut self, pass: &mut dyn FnMut(u64, usize) -> bool) {
        CsvSource::pass_while(self, pass)
    }
}

/// How many bytes of `b` are `c`. Counting in 255-byte chunks into `u8` lets the loop
/// run 32 bytes at a time (a count into `usize` went 2 at a time).
fn count_byte(b: &[u8], c: u8) -> usize {
    b.chunks(255)
        .map(|chunk| chunk.iter().fold(0u8, |n, &x| n + (x == c) as u8) as usize)
        .sum()
}

/// Encodes records as CSV rows for the retry file, byte for byte as a `csv::Writer` with
/// the same delimiter would. A row none of whose fields needs quoting (no delimiter, quote
/// or line end: nearly every row) is its fields joined by the delimiter, written directly;
/// any other goes through a `csv::Writer`, so quoting stays exactly csv's. The profile of
/// `benches/pipeline.rs` showed `csv::Writer::write_record` over a chained iterator (the
/// record plus its generated ref) at 16% of the time per row; this path costs about 2%.
pub struct RowEncoder {
    delimiter: u8,
    slow: csv::Writer<Taken>,
}

/// A byte sink whose contents can be taken through a shared reference, which is all that
/// `csv::Writer` gives back (`get_ref`).
#[derive(Default)]
struct Taken(std::cell::Cell<Vec<u8>>);

impl std::io::Write for Taken {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.get_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RowEncoder {
    pub fn new(delimiter: u8) -> RowEncoder {
        RowEncoder {
            delimiter,
            // Flexible: each row stands alone here; the caller checks field counts.
            slow: csv::WriterBuilder::new()
                .delimiter(delimiter)
                .flexible(true)
                .from_writer(Taken::default()),
        }
    }

    /// Appends `rec`, then `extra` as one more field if given, then `\n`, to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>, rec: &csv::ByteRecord, extra: Option<&[u8]>) {
        let fields = rec.len() + extra.is_some() as usize;
        // csv writes a lone empty field as `""` so the row is not a blank line.
        let lone_empty = fields == 1 && rec.as_slice().len() + extra.map_or(0, <[u8]>::len) == 0;
        if fields == 0
            || lone_empty
            || needs_quotes(rec.as_slice(), self.delimiter)
            || extra.is_some_and(|e| needs_quotes(e, self.delimiter))
        {
            let res = self
                .slow
                .write_record(rec.iter().chain(extra))
                .and_then(|()| self.slow.flush().map_err(csv::Error::from));
            // Writing into a Vec cannot fail; if it ever did, the row would be missing
            // from the retry file, which the journal's counts would show.
            debug_assert!(res.is_ok(), "{res:?}");
            let mut row = self.slow.get_ref().0.take();
            out.append(&mut row);
            // Hand the (now empty) buffer back, keeping its capacity for the next one.
            self.slow.get_ref().0.set(row);
            return;
        }
        out.reserve(rec.as_slice().len() + fields + extra.map_or(0, <[u8]>::len));
        for (i, f) in rec.iter().chain(extra).enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            out.extend_from_slice(f);
        }
        out.push(b'\n');
    }
}

/// Whether any byte is the delimiter, `"`, `\r` or `\n` (what makes csv quote a field),
/// 8 bytes at a time.
fn needs_quotes(b: &[u8], delimiter: u8) -> bool {
    use crate::swar::eq;
    let hit = |x: u64| eq(x, delimiter) | eq(x, b'"') | eq(x, b'\r') | eq(x, b'\n');
    let mut chunks = b.chunks_exact(8);
    let mut acc = 0;
    for c in &mut chunks {
        acc |= hit(crate::swar::word(c, 0));
    }
    b[b.len() - chunks.remainder().len()..]
        .iter()
        .any(|&c| c == delimiter || c == b'"' || c == b'\r' || c == b'\n')
        || acc != 0
}

/// The delimiter a CSV file seems to use when it is not `delimiter`: its first line has
/// no `delimiter` (one column), and its first lines (up to 10 complete ones in `head`)
/// each hold the same number, at least one, of `;`, `|` or tab. A hint for the user: the
/// file is read with `delimiter` regardless.
pub fn guess_delimiter(head: &[u8], delimiter: u8) -> Option<u8> {
    let head = head.strip_prefix(BOM).unwrap_or(head);
    let complete = &head[..head.iter().rposition(|&c| c == b'\n')? + 1];
    let lines: Vec<&[u8]> = complete
        .split(|&c| c == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .take(10)
        .collect();
    if lines.first()?.contains(&delimiter) {
        return None;
    }
    [b';', b'|', b'\t'].into_iter().find(|&d| {
        let count = |l: &&[u8]| l.iter().filter(|&&c| c == d).count();
        d != delimiter && count(&lines[0]) > 0 && lines.iter().all(|l| count(l) == count(&lines[0]))
    })
}

/// What to tell the user about a guessed delimiter.
pub fn delimiter_hint(d: u8) -> String {
    let shown = if d == b'\t' {
        "\\t".to_string()
    } else {
        (d as char).to_string()
    };
    format!(
        "the header has one column, but the first lines each hold the same number of {:?}: is that the delimiter? pass --delimiter '{shown}'",
        d as char
    )
}

/// Whether `first` is `key1,...,keyN,_czload_ref`: the header czload writes into the
/// retry file of a `--no-header` CSV input with generated refs.
fn is_retry_header(first: &csv::ByteRecord) -> bool {
    let n = first.len();
    n >= 2
        && first.get(n - 1) == Some(crate::mapping::REF_COLUMN.as_bytes())
        && first
            .iter()
            .take(n - 1)
            .enumerate()
            .all(|(i, f)| f == format!("key{}", i + 1).as_bytes())
}

fn strip_bom(rec: &mut csv::ByteRecord) {
    if rec.get(0).is_some_and(|f| f.starts_with(BOM)) {
        let pos = rec.position().cloned();
        let mut fixed = csv::ByteRecord::new();
        for (i, f) in rec.iter().enumerate() {
            fixed.push_field(if i == 0 { &f[BOM.len()..] } else { f });
        }
        fixed.set_position(pos);
        *rec = fixed;
    }
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => format!("read error: {io}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record's fields and the extra field the encoder appends.
    type Row<'a> = (Vec<&'a [u8]>, Option<&'a [u8]>);

    fn via_csv(delimiter: u8, rows: &[Row]) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_writer(Vec::new());
        for (fields, extra) in rows {
            w.write_record(fields.iter().copied().chain(*extra))
                .unwrap();
        }
        w.into_inner().unwrap()
    }

    #[test]
    fn row_encoder_writes_what_csv_writes() {
        let rows: Vec<Row> = vec![
            (vec![b"a", b"b", b"c"], None),
            (vec![b"a", b"b"], Some(b"f.csv:2")),
            (vec![b"has,comma", b"x"], Some(b"r")),
            (vec![b"has \"quote\"", b""], None),
            (vec![b"line\nbreak", b"cr\rhere"], None),
            (vec![b"tab\there", b"semi;colon"], Some(b"ref,with,commas")),
            (vec![b""], None),
            (vec![b""], Some(b"")),
            (vec![], Some(b"")),
            (vec![], Some(b"only")),
            (vec![b"", b""], None),
            (
                vec![b"exactly8", b"sixteen bytes!!!", b"\xff\xfe not utf8"],
                None,
            ),
            (vec![b" spaced ", b"#hash"], None),
        ];
        for delimiter in [b',', b'\t', b';', b'|'] {
            let mut enc = RowEncoder::new(delimiter);
            let mut out = Vec::new();
            for (fields, extra) in &rows {
                let rec = csv::ByteRecord::from(fields.clone());
                enc.write(&mut out, &rec, *extra);
            }
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&via_csv(delimiter, &rows)),
                "delimiter {:?}",
                delimiter as char
            );
        }
    }

    #[test]
    fn a_delimiter_is_guessed_only_when_consistent() {
        assert_eq!(guess_delimiter(b"a;b;c\n1;2;3\n4;5;6\n", b','), Some(b';'));
        assert_eq!(
            guess_delimiter(b"\xEF\xBB\xBFa|b\n\n1|2\n", b','),
            Some(b'|')
        );
        assert_eq!(guess_delimiter(b"a\tb\n1\t2\n", b','), Some(b'\t'));
        assert_eq!(guess_delimiter(b"a,b;c\n1,2;3\n", b','), None);
        assert_eq!(guess_delimiter(b"a;b;c\n1;2\n", b','), None);
        assert_eq!(guess_delimiter(b"name\nx\n", b','), None);
        assert_eq!(guess_delimiter(b"a;b;c", b','), None);
        assert!(delimiter_hint(b'\t').contains("--delimiter '\\t'"));
    }

    #[test]
    fn needs_quotes_finds_every_special_byte_anywhere() {
        for len in 1..=20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut v = vec![b'x'; len];
                    v[at] = b;
                    let want = matches!(b, b',' | b'"' | b'\r' | b'\n');
                    assert_eq!(needs_quotes(&v, b','), want, "{b:#x} at {at} of {len}");
                }
            }
        }
        assert!(!needs_quotes(b"", b','));
    }

    fn source(data: Vec<u8>) -> CsvSource {
        let r: Box<dyn BufRead> = Box::new(std::io::Cursor::new(data));
        CsvSource::new(r, b',', true, "t.csv").unwrap()
    }

    /// Reads every row: the first field of each, then the error if reading broke off.
    fn read_all(src: &mut CsvSource) -> (Vec<(Vec<u8>, u64)>, Option<ReadError>) {
        let mut rows = Vec::new();
        loop {
            match src.advance() {
                Ok(Some((_, line))) => rows.push((src.record()[0].to_vec(), line)),
                Ok(None) => return (rows, None),
                Err(e) => return (rows, Some(e)),
            }
        }
    }

    const OVER: usize = (MAX_ROW_BYTES as usize) + (3 << 20);

    pub(super) fn over() -> usize {
        OVER
    }

    #[test]
    fn a_runaway_quote_breaks_off_at_the_line_its_row_starts() {
        for crlf in [false, true] {
            let nl = if crlf { "\r\n" } else { "\n" };
            // Record 1 spans lines 2 to 4; the runaway row starts on line 5.
            let mut d = format!("id,n{nl}1,\"a{nl}b{nl}c\"{nl}2,\"never closed{nl}").into_bytes();
            d.extend(std::iter::repeat_n(b'x', OVER));
            let (rows, err) = read_all(&mut source(d));
            assert_eq!(rows, vec![(b"1".to_vec(), 2)], "crlf {crlf}");
            let err = err.expect("broke off");
            assert_eq!(err.line, 5, "crlf {crlf}: {err:?}");
            assert!(err.message.contains("quote"), "{err:?}");
        }
    }

    #[test]
    fn blank_lines_and_large_rows_under_the_cap_are_not_runaways() {
        // More blank lines between two records than the cap.
        let mut d = b"id,n\n1,a\n".to_vec();
        d.extend(std::iter::repeat_n(b'\n', OVER));
        d.extend_from_slice(b"2,b\n");
        let (rows, err) = read_all(&mut source(d));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            [b"1", b"2"]
        );
        assert_eq!(rows[1].1 as usize, 3 + OVER);

        // A well-formed row over the default cap, with the cap raised: read whole, and
        // the rows after it too.
        let mut d = b"id,n\n1,\"".to_vec();
        d.extend(std::iter::repeat_n(b'y', OVER));
        d.extend_from_slice(b"\"\n2,small\n");
        let (rows, err) = read_all(&mut source(d).max_row(4 * MAX_ROW_BYTES));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], (b"2".to_vec(), 3));
    }

    /// Every record's line is the line its first byte is on: after blank lines, after
    /// records spanning lines, in LF and CRLF files, with and without a final line end,
    /// with and without a header.
    #[test]
    fn line_numbers_are_where_each_record_starts() {
        let shapes: [&[(usize, bool)]; 4] = [
            &[(0, false), (0, false), (0, false)],
            &[(2, false), (0, true), (3, false), (1, true)],
            &[(0, true), (5, false), (0, true)],
            &[(1, false), (1, false)],
        ];
        for crlf in [false, true] {
            let nl = if crlf { "\r\n" } else { "\n" };
            for header in [true, false] {
                for final_end in [true, false] {
                    for shape in shapes {
                        let mut text = String::new();
                        let mut line = 1;
                        if header {
                            text.push_str(&format!("id,v{nl}"));
                            line += 1;
                        }
                        let mut want = Vec::new();
                        for (k, &(blanks, multi)) in shape.iter().enumerate() {
                            for _ in 0..blanks {
                                text.push_str(nl);
                                line += 1;
                            }
                            want.push(line);
                            if multi {
                                text.push_str(&format!("{k},\"a{nl}b\""));
                                line += 1;
                            } else {
                                text.push_str(&format!("{k},x"));
                            }
                            if k + 1 < shape.len() || final_end {
                                text.push_str(nl);
                                line += 1;
                            }
                        }
                        let r: Box<dyn BufRead> = Box::new(std::io::Cursor::new(text.clone()));
                        let mut src = CsvSource::new(r, b',', header, "t.csv").unwrap();
                        let (rows, err) = read_all(&mut src);
                        assert!(err.is_none(), "{err:?}");
                        let got: Vec<u64> = rows.iter().map(|r| r.1).collect();
                        assert_eq!(got, want, "{text:?}");
                    }
                }
            }
        }
    }
}

/// `pass_while` against plain reading, on generated inputs: every record is given out or
/// passed over exactly once, passed over only as the predicate says and with the field
/// count the csv reader finds, and the records given out are those plain reading gives,
/// field for field, on the same lines. Quotes (closed or not) with line ends and
/// delimiters inside, `\r\n`, `\r` alone, blank lines, rows of any field count, a byte
/// order mark, with and without a header, in buffers from 1 byte up.
#[cfg(test)]
mod pass_tests {
    use super::*;

    /// SplitMix64: a fixed-seed generator, so that a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A CSV-ish input: mostly plain lines, with the bytes that make records otherwise.
    fn input(rng: &mut Rng, delimiter: u8) -> Vec<u8> {
        let mut out = Vec::new();
        if rng.below(8) == 0 {
            out.extend_from_slice(BOM);
        }
        let lines = rng.below(80);
        // Most lines end as in a file written on Unix, or on Windows.
        let crlf = rng.below(2) == 0;
        for _ in 0..lines {
            if rng.below(3) == 0 {
                // A line of any bytes that matter.
                let special: &[u8] = &[b'"', b'\r', b'\n', b'a', b' ', delimiter, b'"', 0xC3];
                for _ in 0..rng.below(12) {
                    out.push(special[rng.below(special.len())]);
                }
            } else {
                // A plain line, of a field count near 3.
                let fields = 1 + rng.below(5);
                for f in 0..fields {
                    if f > 0 {
                        out.push(delimiter);
                    }
                    for _ in 0..rng.below(4) {
                        out.push(b"xyz0"[rng.below(4)]);
                    }
                }
            }
            match rng.below(10) {
                0 => out.extend_from_slice(if crlf { b"\n" } else { b"\r\n" }),
                1 => out.push(b'\r'),
                2 => {}
                _ => out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" }),
            }
        }
        out
    }

    /// Records as plain reading gives them: (row, line, fields).
    type Read = Vec<(u64, u64, Vec<Vec<u8>>)>;

    /// Hands over at most `.1` bytes a read: a file's chunks, in small.
    struct Trickle(std::io::Cursor<Vec<u8>>, usize);

    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    /// `cap`: the input's buffer; `trickle`: at most as much a read from below it.
    fn open(
        data: &[u8],
        (cap, trickle): (usize, usize),
        delimiter: u8,
        header: bool,
    ) -> Option<CsvSource> {
        let r: Box<dyn BufRead> = Box::new(std::io::BufReader::with_capacity(
            cap,
            Trickle(std::io::Cursor::new(data.to_vec()), trickle),
        ));
        CsvSource::new(r, delimiter, header, "t.csv").ok()
    }

    fn fields(src: &CsvSource) -> Vec<Vec<u8>> {
        src.record().iter().map(<[u8]>::to_vec).collect()
    }

    /// Reads `src` to the end; with `pass`, passing over what it says before each
    /// record. Returns the records given out, and the (row, fields) passed over.
    fn read(
        src: &mut CsvSource,
        pass: Option<&dyn Fn(u64, usize) -> bool>,
    ) -> (Read, Vec<(u64, usize)>) {
        let (mut given, mut passed) = (Vec::new(), Vec::new());
        loop {
            if let Some(p) = pass {
                src.pass_while(&mut |row, n| {
                    let yes = p(row, n);
                    if yes {
                        passed.push((row, n));
                    }
                    yes
                });
            }
            match src.advance() {
                Ok(Some((row, line))) => given.push((row, line, fields(src))),
                Ok(None) => return (given, passed),
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn passing_over_rows_is_exactly_plain_reading() {
        let mut rng = Rng(14);
        let (mut passed_any, mut mixed, mut crlf) = (0, 0, 0);
        for case in 0..10_000 {
            let delimiter = [b',', b';', b'\t'][rng.below(3)];
            let data = input(&mut rng, delimiter);
            let header = rng.below(4) != 0;
            let chunk = [1, 4, 16, 32, 64, 128, 4096][rng.below(7)];
            let cap = ([chunk, 4096][rng.below(2)], chunk);
            let seed = rng.next();
            // (The same buffer for both: a buffer under 3 bytes keeps csv from seeing a
            // byte order mark, a quirk of plain reading too.)
            let Some(mut plain) = open(&data, cap, delimiter, header) else {
                continue;
            };
            let (want, _) = read(&mut plain, None);
            // Passes over about half the rows, by row and field count.
            let pass = move |row: u64, n: usize| (row.wrapping_mul(seed) ^ n as u64) >> 63 == 1;
            let mut src = open(&data, cap, delimiter, header).expect("opens as plain does");
            let (given, passed) = read(&mut src, Some(&pass));
            let ctx = || {
                format!(
                    "case {case}: cap {cap:?} header {header} {:?}",
                    String::from_utf8_lossy(&data)
                )
            };
            // Each passed row: one plain reading gives, of that field count, that the
            // predicate passes.
            for &(row, n) in &passed {
                let rec = want
                    .iter()
                    .find(|r| r.0 == row)
                    .unwrap_or_else(|| panic!("row {row} does not exist: {}", ctx()));
                assert_eq!(rec.2.len(), n, "row {row}: {}", ctx());
                assert!(pass(row, n));
            }
            // Every other row is given out, as plain reading gives it.
            let rest: Read = want
                .iter()
                .filter(|r| !passed.iter().any(|p| p.0 == r.0))
                .cloned()
                .collect();
            assert_eq!(given, rest, "{}", ctx());
            passed_any += passed.len();
            // Rows passed over in an input with quotes or `\r` in it.
            mixed +=
                usize::from(!passed.is_empty() && data.iter().any(|&c| c == b'"' || c == b'\r'));
            // Rows passed over in a file whose first line ends with `\r\n`.
            if src.line_fix == 1 {
                crlf += passed.len();
            }
        }
        // The fast path ran, and among the bytes that make it stop.
        eprintln!("passed over {passed_any} rows ({crlf} in CRLF files), in {mixed} inputs with quotes or CR");
        assert!(
            passed_any > 6_000 && mixed > 1_500 && crlf > 2_000,
            "{passed_any} {mixed} {crlf}"
        );
    }

    #[test]
    fn a_runaway_after_rows_passed_over_breaks_off_on_its_line() {
        for nl in ["\n", "\r\n"] {
            let mut d = format!("id,n{nl}").into_bytes();
            for i in 0..20_000 {
                d.extend_from_slice(format!("{i},x{nl}").as_bytes());
            }
            d.extend_from_slice(format!("7,\"never closed{nl}").as_bytes());
            d.extend(std::iter::repeat_n(b'x', super::tests::over()));
            let mut plain = open(&d, (64 * 1024, 64 * 1024), b',', true).unwrap();
            let mut n = 0;
            let want = loop {
                match plain.advance() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => panic!("no runaway"),
                    Err(e) => break e,
                }
            };
            assert_eq!((n, want.line), (20_000, 20_002), "{nl:?}");
            let mut src = open(&d, (64 * 1024, 64 * 1024), b',', true).unwrap();
            let (mut passed, mut given) = (0, 0);
            let got = loop {
                src.pass_while(&mut |_, _| {
                    passed += 1;
                    true
                });
                match src.advance() {
                    Ok(Some(_)) => given += 1,
                    Ok(None) => panic!("no runaway"),
                    Err(e) => break e,
                }
            };
            assert!(passed > 5_000, "{nl:?}: {passed}");
            assert_eq!((passed + given, got), (20_000, want), "{nl:?}");
        }
    }
}
