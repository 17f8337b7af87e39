//! CSV records, through one `csv::ByteRecord` reused across rows.

use crate::error::{Error, Result};
use std::io::BufRead;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where reading an input stopped early, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The line where reading broke (the line after the last complete record).
    pub line: u64,
    pub message: String,
}

pub struct CsvSource {
    rdr: csv::Reader<Box<dyn BufRead>>,
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
            .from_reader(reader);
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
        if has_header {
            let header = first
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
                .collect::<Result<Vec<_>>>()?;
            Ok(CsvSource {
                rdr,
                header,
                header_record: Some(first),
                rec: csv::ByteRecord::new(),
                row: 0,
                first_pending: false,
                last_line,
                line_fix: crlf as u64,
            })
        } else {
            let header = (1..=first.len()).map(|i| format!("key{i}")).collect();
            Ok(CsvSource {
                rdr,
                header,
                header_record: None,
                rec: first,
                row: 0,
                first_pending: true,
                last_line,
                line_fix: crlf as u64,
            })
        }
    }

    /// Advances to the next record: `(row, line)`, or `None` at the end.
    pub fn advance(&mut self) -> std::result::Result<Option<(u64, u64)>, ReadError> {
        let fix = if self.first_pending {
            self.first_pending = false;
            0
        } else {
            match self.rdr.read_byte_record(&mut self.rec) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => {
                    return Err(ReadError {
                        line: e
                            .position()
                            .map_or(self.last_line + 1, |p| p.line() + self.line_fix),
                        message: csv_reason(&e),
                    })
                }
            }
            self.line_fix
        };
        self.row += 1;
        let line = self
            .rec
            .position()
            .map_or(self.last_line + 1, |p| p.line() + fix);
        self.last_line = line;
        Ok(Some((self.row, line)))
    }

    pub fn record(&self) -> &csv::ByteRecord {
        &self.rec
    }
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
