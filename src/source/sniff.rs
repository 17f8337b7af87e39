//! Reading that checks itself: before anything is sent, the first bytes of an input
//! (up to [`SAMPLE`]) are held against the reading the flags give, and a reading they
//! contradict is refused with the flags that would read the file right.
//!
//! In: the input's first bytes, decompressed but not decoded, and the [`Claim`]: format,
//! encoding, delimiter, and which of them the user gave. Out: `Ok`, or a [`Refusal`]
//! (why, and the reading flags to pass), which `Input::resolve` (files) and `Input::open`
//! (stdin) turn into `Error::Reading`, exit 2, before any request.
//!
//! The policy (README, "How czload reads a file"; docs/architecture.md, Reading that
//! checks itself): only what is certain is read without a flag (UTF-8, or a byte order
//! mark); anything the bytes make doubtful is refused, never guessed, so that the same
//! command reads the same file the same way every night. What is checked:
//! - encoding: NUL bytes (UTF-16 without a byte order mark, its byte order from where
//!   the NULs are; other NULs: not text), bytes that are not UTF-8 (a legacy encoding,
//!   named by `chardetng`'s guess), an `--encoding` the bytes deny (UTF-16 of a file
//!   without NULs, a legacy encoding of a file that is UTF-8 with non-ASCII letters);
//! - format: NDJSON with no JSON object in its first lines, CSV whose lines are all
//!   JSON objects, a JSON array not starting with `[`, a JSON array of objects read as
//!   NDJSON or CSV;
//! - delimiter: the sample parsed (csv crate) with the delimiter read and with `,` `;`
//!   tab `|`; refused when the one read does not give every record the same count of
//!   more than one field and another gives more of them (at least `ALIKE`%) the header's
//!   count, more than one;
//! - rows: a CSV sample of several lines that reads as a header alone.

use super::{Format, Input, Reading};
use crate::error::{Error, Result};
use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

/// How much of an input is looked at.
pub const SAMPLE: usize = 64 * 1024;

/// Which reading flags the user gave (the rest are defaults or from the extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    pub format: bool,
    pub encoding: bool,
    pub delimiter: bool,
    pub has_header: bool,
}

impl Given {
    pub fn of(how: &Reading) -> Given {
        Given {
            format: how.format.is_some(),
            encoding: how.encoding_flag,
            delimiter: how.delimiter.is_some(),
            has_header: how.has_header,
        }
    }
}

/// Refuses `input` (exit 2) when `head`, its first bytes (up to `SAMPLE` and one more
/// when there are more; for stdin, what its first read gave), contradict its reading.
pub fn refuse_contradicted(input: &Input, head: &[u8]) -> Result<()> {
    let claim = Claim {
        format: input.format,
        format_flag: input.given.format,
        encoding: input.encoding,
        encoding_flag: input.given.encoding,
        delimiter: input.delimiter,
        delimiter_flag: input.given.delimiter,
        has_header: input.given.has_header,
    };
    // Stdin may hold more than its first read gave.
    let truncated = head.len() > SAMPLE || input.path.is_none();
    check(&head[..head.len().min(SAMPLE)], truncated, &claim).map_err(|r| Error::Reading {
        path: input.display().into(),
        message: r.to_string(),
    })
}

/// The reading the flags give one input.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub format: Format,
    /// `--format` was given (else: from the extension).
    pub format_flag: bool,
    /// The encoding read with; `None` is UTF-8.
    pub encoding: Option<&'static Encoding>,
    /// `--encoding` was given (`--encoding utf-8` too).
    pub encoding_flag: bool,
    pub delimiter: u8,
    /// `--delimiter` was given (else: `,`, or tab for .tsv).
    pub delimiter_flag: bool,
    pub has_header: bool,
}

/// Why a reading is refused, and the flags that would read the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub why: Vec<String>,
    /// Reading flags, as typed: `--delimiter ';'`, `--encoding windows-1251`.
    pub flags: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the file's own bytes contradict how it would be read: {}. Nothing was sent",
            self.why.join("; ")
        )?;
        if self.flags.is_empty() {
            Ok(())
        } else {
            write!(f, "; to read it, pass {}", self.flags.join(" "))
        }
    }
}

/// What the bytes say the encoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A byte order mark: certain.
    Bom(&'static Encoding),
    /// UTF-8; `true` when it holds letters beyond ASCII.
    Utf8(bool),
    /// Mostly UTF-8 with some bytes that are not: damaged rows, rejected one by one.
    DamagedUtf8,
    /// NULs where UTF-16 of mostly ASCII text has them.
    Utf16(&'static Encoding),
    /// NULs elsewhere: not text.
    Binary,
    /// Not UTF-8: `chardetng`'s guess.
    Legacy(&'static Encoding),
}

/// Checks `head` (the input's first bytes; `truncated` when there is more) against the
/// claimed reading.
pub fn check(head: &[u8], truncated: bool, claim: &Claim) -> Result<(), Refusal> {
    let mut r = Refusal {
        why: Vec::new(),
        flags: Vec::new(),
    };
    if head.is_empty() {
        return Ok(());
    }
    // Compressed bytes whose name (or `--compression`) does not say so.
    for (magic, name) in [(&b"\x1f\x8b"[..], "gzip"), (b"\x28\xb5\x2f\xfd", "zstd")] {
        if head.starts_with(magic) {
            r.why.push(format!(
                "it is {name}-compressed, and its name does not end in .gz or .zst"
            ));
            r.flags.push(format!("--compression {name}"));
            return Err(r);
        }
    }
    let seen = seen(head, truncated);
    let enc = encoding_verdict(seen, claim, &mut r);
    if seen == Seen::Binary {
        return Err(r);
    }
    let mut text = decode(head, enc);
    if truncated {
        // The last line may be cut short: leave it out.
        let end = text.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        text.truncate(end);
    }
    let format = format_verdict(&text, claim, &mut r);
    if format == Format::CSV {
        csv_verdict(&text, truncated, claim, &mut r);
    }
    if r.why.is_empty() {
        Ok(())
    } else {
        Err(r)
    }
}

/// The encoding the bytes show, whatever the claim.
fn seen(head: &[u8], truncated: bool) -> Seen {
    match head {
        [0xEF, 0xBB, 0xBF, ..] => return Seen::Bom(UTF_8),
        [0xFF, 0xFE, ..] => return Seen::Bom(UTF_16LE),
        [0xFE, 0xFF, ..] => return Seen::Bom(UTF_16BE),
        _ => {}
    }
    if head.contains(&0) {
        let even = head.iter().step_by(2).filter(|&&c| c == 0).count();
        let odd = head.iter().skip(1).step_by(2).filter(|&&c| c == 0).count();
        // UTF-16 of ASCII puts every NUL on one side; text beyond ASCII (Cyrillic:
        // 0x04 high bytes) still leaves its digits, delimiters and line ends there, one
        // character in ten at the very least. A stray NUL or two is a cell's, in text.
        let many = |n: usize| n * 20 >= head.len();
        match (even, odd) {
            (0, n) if many(n) => return Seen::Utf16(UTF_16LE),
            (n, 0) if many(n) => return Seen::Utf16(UTF_16BE),
            (a, b) if many(a + b) => return Seen::Binary,
            _ => {}
        }
    }
    let valid = match std::str::from_utf8(head) {
        Ok(s) => return Seen::Utf8(!s.is_ascii()),
        // A character cut by the end of the sample.
        Err(e) if e.error_len().is_none() && truncated => {
            return Seen::Utf8(!head[..e.valid_up_to()].is_ascii())
        }
        Err(e) => e.valid_up_to(),
    };
    // Letters beyond ASCII that are valid UTF-8 before the first bad byte: a UTF-8 file
    // with damaged rows (a legacy encoding is almost never valid UTF-8 by chance).
    if !head[..valid].is_ascii() {
        return Seen::DamagedUtf8;
    }
    let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    det.feed(head, !truncated);
    Seen::Legacy(det.guess(None, chardetng::Utf8Detection::Deny))
}

/// The encoding to read the sample with from here on (the claim, or what the bytes show
/// when they deny it), noting a contradiction in `r`.
fn encoding_verdict(seen: Seen, claim: &Claim, r: &mut Refusal) -> Option<&'static Encoding> {
    let claimed = claim.encoding.unwrap_or(UTF_8);
    let label = |e: &'static Encoding| e.name().to_ascii_lowercase();
    let said = if claim.encoding_flag {
        format!("--encoding {} says otherwise", label(claimed))
    } else {
        "it would be read as UTF-8".to_string()
    };
    let is16 = |e: &'static Encoding| e == UTF_16LE || e == UTF_16BE;
    let (why, right) = match seen {
        // A byte order mark decides (encoding_rs follows it whatever the claim), except
        // that a UTF-8 one denies a single-byte legacy encoding.
        Seen::Bom(e) if e == UTF_8 && claimed != UTF_8 && !is16(claimed) => {
            ("it starts with a UTF-8 byte order mark".to_string(), UTF_8)
        }
        Seen::Bom(_) => return claim.encoding,
        Seen::Utf16(e) if claimed == e => return claim.encoding,
        Seen::Utf16(e) => (
            format!(
                "it holds NUL bytes as {} without a byte order mark does",
                e.name()
            ),
            e,
        ),
        Seen::Binary => {
            r.why.push(
                "it holds NUL bytes and is not UTF-16 text: is it compressed (--compression) or not a text file?"
                    .into(),
            );
            return claim.encoding;
        }
        Seen::Utf8(_) | Seen::DamagedUtf8 if is16(claimed) => {
            ("it holds no NUL bytes, so it is not UTF-16".into(), UTF_8)
        }
        Seen::Legacy(e) if is16(claimed) => (
            format!(
                "it holds no NUL bytes, so it is not UTF-16, and reads as {} by its letters (a guess: check a few rows)",
                label(e)
            ),
            e,
        ),
        Seen::Utf8(true) if claimed != UTF_8 => (
            "it is valid UTF-8 with letters beyond ASCII, which a legacy encoding almost never is"
                .into(),
            UTF_8,
        ),
        Seen::Utf8(_) | Seen::DamagedUtf8 => return claim.encoding,
        // The user said UTF-8: bad bytes are then rows rejected one by one, named.
        Seen::Legacy(_) if claim.encoding_flag && claimed == UTF_8 => return None,
        Seen::Legacy(_) if claimed != UTF_8 => return claim.encoding,
        Seen::Legacy(e) => (
            format!(
                "it is not UTF-8, and reads as {} by its letters (a guess: check a few rows; --encoding utf-8 reads it as UTF-8 and rejects the rows that are not)",
                label(e)
            ),
            e,
        ),
    };
    r.why.push(format!("{why}, and {said}"));
    r.flags.push(format!("--encoding {}", label(right)));
    (right != UTF_8).then_some(right)
}

/// `text` (the sample's bytes) as UTF-8 by `enc`.
fn decode(head: &[u8], enc: Option<&'static Encoding>) -> Vec<u8> {
    match enc {
        // `decode` follows and drops a byte order mark.
        Some(e) => e.decode(head).0.as_bytes().to_vec(),
        None => head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head).to_vec(),
    }
}

fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&c| c == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty())
        .take(200)
}

/// The format the sample is read as from here on, noting a contradiction in `r`.
fn format_verdict(text: &[u8], claim: &Claim, r: &mut Refusal) -> Format {
    let first = text.iter().find(|c| !c.is_ascii_whitespace()).copied();
    let object = |l: &&[u8]| l.starts_with(b"{") && l.ends_with(b"}");
    let said = |what: &str| {
        if claim.format_flag {
            format!("--format {what} says otherwise")
        } else {
            format!("its extension says {what}")
        }
    };
    match claim.format.name() {
        "ndjson"
            if array_of_objects(text)
                || first.is_some() && !lines(text).any(|l| l.starts_with(b"{")) =>
        {
            if first == Some(b'[') {
                r.why.push(format!(
                    "it starts with `[`, a JSON array, and {}",
                    said("NDJSON")
                ));
                r.flags.push("--format json-array".into());
                Format::JSON_ARRAY
            } else {
                r.why.push(format!(
                    "none of its first lines is a JSON object, and {}",
                    said("NDJSON")
                ));
                r.flags.push("--format csv".into());
                Format::CSV
            }
        }
        "json-array" if first.is_some_and(|c| c != b'[') => {
            let (what, flag) = if lines(text).any(|l| l.starts_with(b"{")) {
                ("JSON objects", Format::NDJSON)
            } else {
                ("no JSON", Format::CSV)
            };
            let name = if flag == Format::NDJSON {
                "ndjson"
            } else {
                "csv"
            };
            r.why.push(format!(
                "it does not start with `[` and holds {what}, and {}",
                said("a JSON array")
            ));
            r.flags.push(format!("--format {name}"));
            flag
        }
        "csv" if array_of_objects(text) => {
            r.why.push(format!(
                "it starts with `[{{`, a JSON array of objects, and {}",
                said("CSV")
            ));
            r.flags.push("--format json-array".into());
            Format::JSON_ARRAY
        }
        "csv" if first == Some(b'{') && lines(text).all(|l| object(&l)) => {
            r.why.push(format!(
                "each of its first lines is a JSON object, and {}",
                said("CSV")
            ));
            r.flags.push("--format ndjson".into());
            Format::NDJSON
        }
        _ => claim.format,
    }
}

/// `[` and then `{`, whitespace between: a JSON array of objects.
fn array_of_objects(text: &[u8]) -> bool {
    let mut t = text.iter().filter(|c| !c.is_ascii_whitespace());
    t.next() == Some(&b'[') && t.next() == Some(&b'{')
}

/// The delimiters tried besides the one read.
const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The field count of each record of `text` split on `d` (at most 200 records; the last
/// left out when `truncated`, as it may be cut short).
fn field_counts(text: &[u8], d: u8, truncated: bool) -> Vec<usize> {
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(d)
        .from_reader(text);
    let mut counts = Vec::new();
    let mut rec = ::csv::ByteRecord::new();
    while counts.len() < 200 {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => counts.push(rec.len()),
            _ => break,
        }
    }
    if truncated && counts.len() > 1 {
        counts.pop();
    }
    counts
}

/// The header's field count and the share of records (in hundredths) that have it.
fn fit(counts: &[usize]) -> (usize, usize) {
    let Some(&n) = counts.first() else {
        return (0, 0);
    };
    (
        n,
        100 * counts.iter().filter(|&&c| c == n).count() / counts.len(),
    )
}

/// How many of the records a delimiter must split alike to be named: a ragged row or
/// two (rejected for its field count) does not hide a `;` file.
const ALIKE: usize = 80;

/// A delimiter as a shell takes it in a flag.
pub fn shown(d: u8) -> String {
    match d {
        b'\t' => "'\\t'".into(),
        b'\'' => "\"'\"".into(),
        _ => format!("'{}'", d as char),
    }
}

/// The delimiter and the rows, noting a contradiction in `r`.
fn csv_verdict(text: &[u8], truncated: bool, claim: &Claim, r: &mut Refusal) {
    let counts = field_counts(text, claim.delimiter, truncated);
    let (cn, cs) = fit(&counts);
    if cn < 2 || cs < 100 {
        let best = CANDIDATES
            .iter()
            .filter(|&&d| d != claim.delimiter)
            .map(|&d| (fit(&field_counts(text, d, truncated)), d))
            .filter(|&((n, share), _)| n > 1 && share >= ALIKE && (cn < 2 || share > cs))
            // The most alike, then the most fields; of equals, the first candidate.
            .max_by_key(|&((n, share), d)| {
                (
                    share,
                    n,
                    std::cmp::Reverse(CANDIDATES.iter().position(|&c| c == d)),
                )
            })
            .map(|((n, share), d)| (n, share, d));
        if let Some((n, share, d)) = best {
            let said = if claim.delimiter_flag {
                format!("--delimiter {} says otherwise", shown(claim.delimiter))
            } else {
                format!("it would be split on {}", shown(claim.delimiter))
            };
            let got = match counts.first() {
                Some(1) if counts.iter().all(|&c| c == 1) => "1 field".to_string(),
                _ => "fields that vary from row to row".to_string(),
            };
            let which = match (counts.len(), share) {
                (0 | 1, _) => "its first record splits".to_string(),
                (k, 100) => format!("all its first {k} records split"),
                (k, _) => format!("most of its first {k} records split"),
            };
            r.why.push(format!(
                "{which} into {n} fields on {} ({got} on {}), and {said}",
                shown(d),
                shown(claim.delimiter)
            ));
            r.flags.push(format!("--delimiter {}", shown(d)));
            return;
        }
    }
    // Several lines that read as one record: a quote opened early and never closed
    // swallowed them, and the file would load as a header alone.
    let many = lines(text).nth(2).is_some();
    if claim.has_header && many && counts.len() == 1 && !truncated {
        r.why.push(format!(
            "its {} lines read as one record, the header, with no row: is a quote in it never closed?",
            lines(text).count()
        ));
    }
}

#[cfg(test)]
#[path = "sniff_tests.rs"]
mod tests;
