//! Inputs in another encoding than UTF-8 (`--encoding`, or a UTF-16 byte order mark).
//!
//! In: the input's bytes and its encoding. Out: the same text as UTF-8, streamed through a
//! buffer of its own, so the formats read UTF-8 only. Line ends survive decoding, so line
//! numbers stay those of the file. A byte sequence that does not decode becomes the byte
//! 0xFF, which is never valid UTF-8: the row it is in is rejected by the mapping's UTF-8
//! check (naming the column and the row's line) instead of loading a replacement
//! character. UTF-8 inputs skip all of this (no wrapper at all).
//!
//! The way back, for the retry file: [`encode`], so that the file holds the input's
//! encoding and the same command loads it.

use encoding_rs::{DecoderResult, Encoding, UTF_16BE, UTF_16LE, UTF_8};
use std::io::{self, BufRead, Read};

/// Looks up an encoding by any of its WHATWG labels (`windows-1251`, `cp1251`, `koi8-u`,
/// `latin1`, `utf-16le`, ...). UTF-8 is `None`: nothing to do.
pub fn parse(label: &str) -> Option<Option<&'static Encoding>> {
    let enc = Encoding::for_label(label.trim().as_bytes())?;
    Some((enc != UTF_8).then_some(enc))
}

/// The encoding a UTF-16 byte order mark at the start of `head` announces.
pub fn sniff_bom(head: &[u8]) -> Option<&'static Encoding> {
    match head {
        [0xFF, 0xFE, ..] => Some(UTF_16LE),
        [0xFE, 0xFF, ..] => Some(UTF_16BE),
        _ => None,
    }
}

/// Appends `utf8` to `out` in `enc`. A character the encoding cannot hold (not one read
/// from the input, which decoded from it) becomes `?`.
pub fn encode(enc: &'static Encoding, utf8: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(utf8);
    if enc == UTF_16LE || enc == UTF_16BE {
        // encoding_rs encodes UTF-16 as UTF-8 (the WHATWG rule for forms); a file is not a form.
        for u in text.encode_utf16() {
            out.extend_from_slice(&if enc == UTF_16LE {
                u.to_le_bytes()
            } else {
                u.to_be_bytes()
            });
        }
        return;
    }
    let mut enc = enc.new_encoder();
    out.reserve(text.len());
    let mut rest: &str = &text;
    loop {
        let (res, read) = enc.encode_from_utf8_to_vec_without_replacement(rest, out, true);
        rest = &rest[read..];
        match res {
            encoding_rs::EncoderResult::InputEmpty => return,
            encoding_rs::EncoderResult::OutputFull => out.reserve(rest.len() + 16),
            encoding_rs::EncoderResult::Unmappable(_) => out.push(b'?'),
        }
    }
}

/// Decodes `inner` (in `enc`) to UTF-8 while it is read. A byte order mark is honoured and
/// dropped (encoding_rs's rule).
pub struct Decode<R> {
    inner: R,
    dec: encoding_rs::Decoder,
    input: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    out: Vec<u8>,
    out_pos: usize,
    out_len: usize,
    eof: bool,
    done: bool,
}

const CHUNK: usize = 64 * 1024;

impl<R: Read> Decode<R> {
    pub fn new(inner: R, enc: &'static Encoding) -> Decode<R> {
        Decode {
            inner,
            dec: enc.new_decoder(),
            input: vec![0; CHUNK],
            in_pos: 0,
            in_len: 0,
            // Room for the decoded chunk (at most 3 bytes of UTF-8 per input byte).
            out: vec![0; 3 * CHUNK + 16],
            out_pos: 0,
            out_len: 0,
            eof: false,
            done: false,
        }
    }

    /// Decodes the next piece into `out`; `false` at the end.
    fn decode_more(&mut self) -> io::Result<bool> {
        loop {
            if self.done {
                return Ok(false);
            }
            if self.in_pos == self.in_len && !self.eof {
                let n = loop {
                    match self.inner.read(&mut self.input) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                self.in_pos = 0;
                self.in_len = n;
                self.eof = n == 0;
            }
            let last = self.eof;
            let room = self.out.len() - 1;
            let (res, read, written) = self.dec.decode_to_utf8_without_replacement(
                &self.input[self.in_pos..self.in_len],
                &mut self.out[..room],
                last,
            );
            self.in_pos += read;
            let mut len = written;
            match res {
                DecoderResult::Malformed(..) => {
                    // Not valid UTF-8, ever: the row is rejected downstream.
                    self.out[len] = 0xFF;
                    len += 1;
                }
                DecoderResult::InputEmpty if last => self.done = true,
                _ => {}
            }
            if len > 0 {
                self.out_pos = 0;
                self.out_len = len;
                return Ok(true);
            }
        }
    }
}

impl<R: Read> Read for Decode<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Decode<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.out_pos == self.out_len && !self.decode_more()? {
            return Ok(&[]);
        }
        Ok(&self.out[self.out_pos..self.out_len])
    }

    fn consume(&mut self, n: usize) {
        self.out_pos = (self.out_pos + n).min(self.out_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], enc: &'static Encoding, cap: usize) -> Vec<u8> {
        let inner = io::BufReader::with_capacity(cap, io::Cursor::new(bytes.to_vec()));
        let mut d = Decode::new(inner, enc);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn cyrillic_round_trips_and_bad_bytes_stay_invalid() {
        let text = "id,name\n1,Привет мир\n2,Ёжик\n";
        let enc = parse("windows-1251").unwrap().unwrap();
        let mut bytes = Vec::new();
        encode(enc, text.as_bytes(), &mut bytes);
        assert_eq!(bytes.len(), text.chars().count());
        for cap in [1, 5, 4096] {
            assert_eq!(decode_all(&bytes, enc, cap), text.as_bytes());
        }
        // 0xAA is a byte windows-1253 leaves undefined.
        let got = decode_all(b"a\xAAb", parse("windows-1253").unwrap().unwrap(), 16);
        assert!(std::str::from_utf8(&got).is_err());
        assert_eq!(got, b"a\xFFb");
    }

    #[test]
    fn utf16_with_its_bom_and_labels() {
        let text = "k,v\n1,Ї\n";
        let mut bytes = vec![0xFF, 0xFE];
        encode(UTF_16LE, text.as_bytes(), &mut bytes);
        assert_eq!(sniff_bom(&bytes), Some(UTF_16LE));
        assert_eq!(decode_all(&bytes, UTF_16LE, 3), text.as_bytes());
        assert_eq!(parse("utf-8"), Some(None));
        assert_eq!(parse("latin1").unwrap().unwrap().name(), "windows-1252");
        assert_eq!(parse("koi8-u").unwrap().unwrap().name(), "KOI8-U");
        assert!(parse("klingon").is_none());
        // A lone surrogate at the end does not decode.
        let got = decode_all(&[b'a', 0, 0x00, 0xD8], UTF_16LE, 16);
        assert!(std::str::from_utf8(&got).is_err());
    }
}
