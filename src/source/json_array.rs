//! A JSON array of objects (`[{...},{...}]`), streamed element by element: the array is
//! never held whole, only the element being read. Each element is a record of the same
//! kind as an NDJSON line (a JSON object's text), so it is mapped by the same plan.
//!
//! The scanner only finds where each element ends (a `,` or the closing `]` outside any
//! string, object or array); whether the element is a valid object is the plan's
//! question, so a bad element is rejected alone and the rest loads. Line ends between an
//! element's tokens become spaces, so the element means the same and goes to the retry
//! file (NDJSON) as one line; one inside a string (invalid JSON) stays, and the element
//! is rejected as the same NDJSON line is. Rows count
//! elements from 1; an element's line is where its first byte is.

use super::{Kind, Open, Opened, ReadError, ReadOptions, Records, Spec};
use crate::error::{Error, Result};
use std::io::BufRead;

/// A JSON array: JSON objects, one an element; the retry file is NDJSON.
pub const SPEC: Spec = Spec {
    name: "json-array",
    // A `.json` file is a JSON array when its first character is `[`, else NDJSON.
    extensions: &[".json"],
    claims: Some(looks_like_array),
    kind: Kind::Objects,
    open: Open::Stream(open),
    // Its retry file keeps the array's shape (`src/sink/retry_file.rs`).
    retry_format: "json-array",
    starts: b"[",
    // As logs written before the registry named it.
    manifest: "ndjson",
    delimited: false,
    header_row: false,
    json_values: true,
    sheets: false,
};

fn open(mut reader: Box<dyn BufRead>, opts: &ReadOptions, name: &str) -> Result<Opened> {
    let mut line = 1;
    match skip_bom(&mut reader).and_then(|()| skip_space(&mut reader, &mut line)) {
        Ok(Some(b'[')) => reader.consume(1),
        Ok(Some(c)) => {
            return Err(Error::file(
                name,
                format!(
                    "line {line}: a JSON array starts with `[`, not {:?}; for one object a line use --format ndjson",
                    c as char
                ),
            ))
        }
        Ok(None) => return Err(Error::file(name, "the file is empty: there is no JSON array")),
        Err(e) => return Err(Error::file(name, format!("read error: {e}"))),
    }
    Ok(Opened::Objects(Box::new(JsonArraySource {
        rdr: reader,
        buf: Vec::with_capacity(4096),
        line,
        row: 0,
        max_row: opts.max_row as usize,
        overlong: None,
        closed: false,
    })))
}

/// Skips a UTF-8 byte order mark, a byte at a time: the reader's buffer may be smaller.
fn skip_bom(rdr: &mut Box<dyn BufRead>) -> std::io::Result<()> {
    for &b in b"\xEF\xBB\xBF" {
        match rdr.fill_buf()?.first() {
            Some(&c) if c == b => rdr.consume(1),
            _ => break,
        }
    }
    Ok(())
}

/// Skips whitespace, counting line ends; returns the
/// next byte without consuming it, or `None` at the end.
fn skip_space(rdr: &mut Box<dyn BufRead>, line: &mut u64) -> std::io::Result<Option<u8>> {
    loop {
        let avail = match rdr.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(None);
        }
        let n = avail.iter().take_while(|c| c.is_ascii_whitespace()).count();
        *line += avail[..n].iter().filter(|&&c| c == b'\n').count() as u64;
        if n < avail.len() {
            let c = avail[n];
            rdr.consume(n);
            return Ok(Some(c));
        }
        rdr.consume(n);
    }
}

pub struct JsonArraySource {
    rdr: Box<dyn BufRead>,
    /// The current element, line ends made spaces.
    buf: Vec<u8>,
    /// The line the reader is on.
    line: u64,
    row: u64,
    max_row: usize,
    /// The length of the current element when it was too long to keep.
    overlong: Option<u64>,
    /// The closing `]` was read.
    closed: bool,
}

/// Where the scan of an element is.
#[derive(Default, Clone)]
struct Scan {
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl Scan {
    /// Feeds `bytes`; returns the position of the byte that ends the element (a `,` or
    /// `]` at depth 0, outside strings), if it is in them.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        bytes.iter().position(|&c| self.step(c))
    }

    /// Takes one byte; `true` when it ends the element.
    fn step(&mut self, c: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == b'\\' {
                self.escaped = true;
            } else if c == b'"' {
                self.in_string = false;
            }
            return false;
        }
        match c {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth > 0 => self.depth -= 1,
            b',' | b']' if self.depth == 0 => return true,
            _ => {}
        }
        false
    }
}

/// Makes the line ends of `part` spaces where they are between tokens; `scan` is the
/// state before its first byte. One inside a string is left as it is: JSON allows none
/// there, so the element is rejected as the same NDJSON line would be, not loaded with a
/// space the file does not hold.
fn blank_line_ends(part: &mut [u8], mut scan: Scan) {
    for c in part {
        let between = !scan.in_string;
        scan.step(*c);
        if between && (*c == b'\n' || *c == b'\r') {
            *c = b' ';
        }
    }
}

impl JsonArraySource {
    fn read_error(&self, message: impl Into<String>) -> ReadError {
        ReadError {
            line: self.line,
            message: message.into(),
        }
    }

    /// Reads one element into `buf` up to the byte that ends it, which is returned (and
    /// consumed). `None`: the input ended first.
    fn element(&mut self) -> std::result::Result<Option<u8>, ReadError> {
        let mut scan = Scan::default();
        let mut total = 0u64;
        loop {
            let avail = match self.rdr.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let msg = format!("read error: {e}");
                    return Err(self.read_error(msg));
                }
            };
            if avail.is_empty() {
                return Ok(None);
            }
            let before = scan.clone();
            let end = scan.feed(avail);
            let part = &avail[..end.unwrap_or(avail.len())];
            let ends = part.iter().filter(|&&c| c == b'\n').count() as u64;
            total += part.len() as u64;
            if self.overlong.is_none() && self.buf.len() + part.len() <= self.max_row {
                let from = self.buf.len();
                self.buf.extend_from_slice(part);
                if ends > 0 || part.contains(&b'\r') {
                    blank_line_ends(&mut self.buf[from..], before);
                }
            } else {
                self.buf.clear();
                self.overlong = Some(total);
            }
            if let Some(o) = &mut self.overlong {
                *o = total;
            }
            self.line += ends;
            match end {
                Some(i) => {
                    let c = avail[i];
                    self.rdr.consume(i + 1);
                    return Ok(Some(c));
                }
                None => {
                    let n = avail.len();
                    self.rdr.consume(n);
                }
            }
        }
    }

    /// After the closing `]`: only whitespace may follow.
    fn check_tail(&mut self) -> std::result::Result<(), ReadError> {
        match skip_space(&mut self.rdr, &mut self.line) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(self.read_error("text after the end of the JSON array")),
            Err(e) => Err(self.read_error(format!("read error: {e}"))),
        }
    }
}

impl Records for JsonArraySource {
    type Record = [u8];

    fn advance(&mut self) -> std::result::Result<Option<(u64, u64)>, ReadError> {
        if self.closed {
            // Checked after the last element was given out, so that it loads regardless.
            self.check_tail()?;
            return Ok(None);
        }
        self.buf.clear();
        self.overlong = None;
        let start = match skip_space(&mut self.rdr, &mut self.line) {
            Ok(Some(_)) => self.line,
            Ok(None) => return Err(self.read_error("the JSON array is not closed (no `]`)")),
            Err(e) => return Err(self.read_error(format!("read error: {e}"))),
        };
        let Some(end) = self.element()? else {
            return Err(self.read_error(
                "the JSON array is not closed (no `]`): the last element was not loaded",
            ));
        };
        if end == b']' {
            self.closed = true;
            // `[]`, or a trailing comma before `]`: no element.
            if self.overlong.is_none() && self.buf.trim_ascii().is_empty() {
                self.check_tail()?;
                return Ok(None);
            }
        }
        self.row += 1;
        Ok(Some((self.row, start)))
    }

    fn record(&self) -> &[u8] {
        &self.buf
    }

    fn too_long(&self) -> Option<u64> {
        self.overlong
    }
}

/// Whether the first byte after whitespace (and a BOM) is `[`: a `.json` file that is an
/// array, not one object a line. `head` is the start of the file.
pub fn looks_like_array(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    head.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'[')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, cap: usize) -> (Vec<(String, u64)>, Option<ReadError>) {
        let rdr = std::io::BufReader::with_capacity(cap, std::io::Cursor::new(text.to_string()));
        let opts = ReadOptions {
            empty: crate::mapping::EmptyPolicy::Keep,
            delimiter: b',',
            has_header: true,
            max_row: 1 << 20,
        };
        let Opened::Objects(mut src) = open(Box::new(rdr), &opts, "t.json").unwrap() else {
            panic!("objects")
        };
        let mut got = Vec::new();
        loop {
            match src.advance() {
                Ok(Some((row, line))) => {
                    assert_eq!(row as usize, got.len() + 1);
                    let s = String::from_utf8(src.record().to_vec()).unwrap();
                    got.push((s.trim().to_string(), line));
                }
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    #[test]
    fn elements_come_back_one_at_a_time_with_their_lines() {
        let text = "\u{feff} [\n {\"a\": \"x,]}\\\"\",\n  \"b\": [1, {\"c\": 2}]},\n{}, 7 ,{\"d\":\n1}\n]\n";
        for cap in [1, 2, 3, 7, 64, 4096] {
            let (got, err) = read(text, cap);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(
                got,
                vec![
                    (
                        "{\"a\": \"x,]}\\\"\",   \"b\": [1, {\"c\": 2}]}".to_string(),
                        2
                    ),
                    ("{}".into(), 4),
                    ("7".into(), 4),
                    ("{\"d\": 1}".into(), 4),
                ],
                "cap {cap}"
            );
        }
    }

    #[test]
    fn a_line_end_inside_a_string_stays_for_the_plan_to_reject() {
        let text = "[{\"a\":\n\"x\ny\"},\r\n{\"b\":\"\\\"\n\"}]";
        for cap in [1, 3, 4096] {
            let (got, err) = read(text, cap);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(got[0], ("{\"a\": \"x\ny\"}".to_string(), 1), "cap {cap}");
            assert_eq!(got[1].0, "{\"b\":\"\\\"\n\"}", "cap {cap}");
            for (el, _) in &got {
                assert!(
                    serde_json::from_str::<serde_json::Value>(el).is_err(),
                    "{el}"
                );
            }
        }
    }

    #[test]
    fn empty_arrays_trailing_commas_and_broken_ends() {
        assert_eq!(read("[]", 8), (vec![], None));
        assert_eq!(read(" [ {\"a\":1}, ]", 8).0.len(), 1);
        let (got, err) = read("[{\"a\":1},\n{\"b\":", 8);
        assert_eq!(got.len(), 1);
        let err = err.unwrap();
        assert!(err.message.contains("not closed"), "{err:?}");
        let (got, err) = read("[{\"a\":1}] x", 8);
        assert_eq!(got.len(), 1);
        assert!(err.unwrap().message.contains("after the end"));
        assert!(looks_like_array(b"\xEF\xBB\xBF \n[{"));
        assert!(!looks_like_array(b"{\"a\":[1]}"));
    }
}
