//! NDJSON lines, read into one reused buffer. Blank lines are skipped (they are not rows).

use super::{Kind, Open, Opened, ReadError, ReadOptions, Records, Spec};
use crate::error::Result;
use std::io::BufRead;

/// NDJSON: JSON objects, one a line; the retry file is NDJSON too.
pub const SPEC: Spec = Spec {
    name: "ndjson",
    extensions: &[".ndjson", ".jsonl", ".json"],
    claims: None,
    kind: Kind::Objects,
    open: Open::Stream(open),
    retry_format: "ndjson",
    starts: b"{",
    manifest: "ndjson",
    delimited: false,
    header_row: false,
    json_values: true,
    sheets: false,
};

fn open(reader: Box<dyn BufRead>, opts: &ReadOptions, _name: &str) -> Result<Opened> {
    Ok(Opened::Objects(Box::new(NdjsonSource::new(
        reader,
        opts.max_row as usize,
    ))))
}

pub struct NdjsonSource {
    rdr: Box<dyn BufRead>,
    buf: Vec<u8>,
    line: u64,
    row: u64,
    max_line: usize,
    /// Length of the current line when it was cut at `max_line` (the rest was skipped).
    overlong: Option<u64>,
}

impl NdjsonSource {
    /// Lines longer than `max_line` are not kept in memory: `overlong()` reports them so
    /// the row can be rejected while the rest of the file loads.
    pub fn new(rdr: Box<dyn BufRead>, max_line: usize) -> NdjsonSource {
        NdjsonSource {
            rdr,
            buf: Vec::with_capacity(4096),
            line: 0,
            row: 0,
            max_line,
            overlong: None,
        }
    }

    /// Advances to the next non-blank line: `(row, line)`, or `None` at the end.
    pub fn advance(&mut self) -> Result<Option<(u64, u64)>, ReadError> {
        loop {
            self.buf.clear();
            self.overlong = None;
            let mut total: u64 = 0;
            let mut saw_any = false;
            loop {
                let avail = match self.rdr.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(ReadError {
                            line: self.line + 1,
                            message: format!("read error: {e}"),
                        })
                    }
                };
                if avail.is_empty() {
                    break;
                }
                saw_any = true;
                let (chunk, done) = match memchr::memchr(b'\n', avail) {
                    Some(i) => (&avail[..i], i + 1),
                    None => (avail, avail.len()),
                };
                total += chunk.len() as u64;
                if self.buf.len() + chunk.len() <= self.max_line {
                    self.buf.extend_from_slice(chunk);
                } else {
                    self.overlong = Some(total);
                }
                let ended = done > chunk.len();
                self.rdr.consume(done);
                if ended {
                    break;
                }
            }
            if !saw_any {
                return Ok(None);
            }
            self.line += 1;
            if let Some(n) = &mut self.overlong {
                *n = total;
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            if self.overlong.is_none() && self.buf.iter().all(|c| c.is_ascii_whitespace()) {
                continue;
            }
            self.row += 1;
            return Ok(Some((self.row, self.line)));
        }
    }

    /// The current line, without its line end.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// The length of the current line if it was longer than the limit.
    pub fn overlong(&self) -> Option<u64> {
        self.overlong
    }
}

impl Records for NdjsonSource {
    type Record = [u8];

    fn advance(&mut self) -> std::result::Result<Option<(u64, u64)>, ReadError> {
        NdjsonSource::advance(self)
    }

    fn record(&self) -> &[u8] {
        &self.buf
    }

    fn too_long(&self) -> Option<u64> {
        self.overlong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line search at the call site: lines of every length up to 20, split across
    /// reads of 7 bytes, come back whole; blank lines and `\r\n` ends are dropped.
    #[test]
    fn lines_of_every_length_come_back_whole_across_reads() {
        let mut text = Vec::new();
        let mut want = Vec::new();
        for len in 0..=20u8 {
            let line: Vec<u8> = (0..len).map(|i| b'a' + i).collect();
            text.extend_from_slice(&line);
            text.extend_from_slice(if len % 2 == 0 { b"\r\n" } else { b"\n" });
            if len > 0 {
                want.push(line);
            }
        }
        text.extend_from_slice(b"last");
        want.push(b"last".to_vec());
        let rdr = std::io::BufReader::with_capacity(7, std::io::Cursor::new(text));
        let mut src = NdjsonSource::new(Box::new(rdr), 1 << 20);
        let mut got = Vec::new();
        while let Some((row, line)) = src.advance().unwrap() {
            assert_eq!(row as usize, got.len() + 1);
            assert_eq!(line, row + 1, "the blank first line counts");
            got.push(src.line().to_vec());
        }
        assert_eq!(got, want);
    }
}
