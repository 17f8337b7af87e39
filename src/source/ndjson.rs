//! NDJSON lines, read into one reused buffer. Blank lines are skipped (they are not rows).

use super::csv::ReadError;
use std::io::BufRead;

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
                let (chunk, done) = match memchr_nl(avail) {
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

/// The first `\n`, 8 bytes at a time: a byte loop here was 7% of the NDJSON time per
/// row in the profile of `benches/pipeline.rs`.
fn memchr_nl(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const NL: u64 = ONES * b'\n' as u64;
    let mut i = 0;
    while i + 8 <= b.len() {
        let x = u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes")) ^ NL;
        // Nonzero iff some byte of `x` is zero, i.e. a `\n` ("Bit Twiddling Hacks").
        if x.wrapping_sub(ONES) & !x & HIGH != 0 {
            break;
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == b'\n').map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memchr_nl_finds_the_first_newline_anywhere() {
        for len in 0..=20 {
            assert_eq!(memchr_nl(&vec![b'x'; len]), None);
            for at in 0..len {
                let mut v = vec![b'x'; len];
                v[at] = b'\n';
                if at + 1 < len {
                    v[len - 1] = b'\n';
                }
                // Bytes that differ from `\n` by one bit must not match.
                if at > 0 {
                    v[at - 1] = b'\n' ^ 0x80;
                }
                assert_eq!(memchr_nl(&v), Some(at), "at {at} of {len}");
            }
        }
    }
}
