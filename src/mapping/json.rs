//! JSON text for ops: strings written as serde_json writes them (with a fast path for
//! plain ASCII), typed CSV cells, and the checks that keep a request body readable by a
//! strict server (nesting depth, lone surrogate escapes).
//!
//! In: text and bytes of a row. Out: JSON appended to the body being built, or why not.

use super::{ColType, Reject};
use serde::de::{Deserializer, MapAccess, Visitor};

/// Largest integer a JSON number can carry exactly (IEEE double); beyond it Corezoid
/// wants strings, so a typed cell beyond it is refused rather than silently rounded.
pub const MAX_SAFE_INT: i64 = 1 << 53;

/// Deepest nesting accepted in task data. serde_json and many other parsers refuse 128
/// levels or more by default; a task nested that deep would likely be refused or crash a
/// consumer downstream, so it is rejected here with a clear reason. 100 keeps CSV `json`
/// cells (checked by serde_json too) and NDJSON lines on the same rule and message.
pub const MAX_DEPTH: usize = 100;

/// Whether valid JSON `b` nests arrays/objects deeper than `MAX_DEPTH`. Only called on
/// text long enough to be that deep (two bytes per level), so typical rows skip the scan.
pub(super) fn too_deep(b: &[u8]) -> Option<usize> {
    // Nesting past MAX_DEPTH takes more opening brackets than that. Counting them is a
    // branch-free loop the compiler vectorizes; the exact scan below is a byte-by-byte
    // state machine, too slow to run on every row (it cost a third of the NDJSON mapping).
    if b.len() <= 2 * MAX_DEPTH || openings(b) <= MAX_DEPTH {
        return None;
    }
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (max > MAX_DEPTH).then_some(max)
}

/// How many `{` and `[` bytes `b` holds (in strings too: an upper bound of the nesting).
/// `[` is `{` with bit 5 clear, so one compare finds both, and counting in 255-byte
/// chunks into `u8` lets the loop run 32 bytes at a time.
fn openings(b: &[u8]) -> usize {
    b.chunks(255)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0u8, |n, &c| n + ((c | 0x20) == b'{') as u8) as usize
        })
        .sum()
}

pub(super) fn depth_reject(levels: usize) -> Reject {
    Reject(format!(
        "the data is nested {levels} levels deep; the limit is {MAX_DEPTH}"
    ))
}

pub(super) fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    write_json_str(buf, s).expect("a Vec never fails");
}

/// `s` as a JSON string, exactly as serde_json writes it: printable ASCII without `"` or
/// a backslash (nearly every ref, id and cell) goes between quotes as it is, anything
/// else through serde's escaping.
pub fn write_json_str<W: std::io::Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    if is_plain(s.as_bytes()) {
        w.write_all(b"\"")?;
        w.write_all(s.as_bytes())?;
        w.write_all(b"\"")
    } else {
        serde_json::to_writer(w, s).map_err(std::io::Error::from)
    }
}

/// Quotes bytes that `is_plain` accepted: they are a JSON string's content as they are.
#[inline]
pub(super) fn push_plain(buf: &mut Vec<u8>, b: &[u8]) {
    buf.reserve(b.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(b);
    buf.push(b'"');
}

/// Whether `b` is printable ASCII without `"` or a backslash: then it is valid UTF-8 and goes
/// into a JSON string unescaped. Most cells are, and checking 8 bytes at a time (SWAR)
/// costs a fraction of `from_utf8` plus serde_json's byte-by-byte escaping, which the
/// profile of `benches/pipeline.rs` showed as 18% of the time per row. Anything else
/// takes the general path, so this decides speed only, never output.
#[inline]
pub fn is_plain(b: &[u8]) -> bool {
    use crate::swar::{below, eq, word, HIGH};
    #[inline]
    fn bad(x: u64) -> u64 {
        (x & HIGH) | below(x, 0x20) | eq(x, b'"') | eq(x, b'\\')
    }
    let word = |i: usize| word(b, i);
    let n = b.len();
    if n >= 8 {
        let mut acc = 0;
        let mut i = 0;
        while i + 8 <= n {
            acc |= bad(word(i));
            i += 8;
        }
        // The tail as the last 8 bytes, overlapping checked ones (checking twice is
        // harmless). Copying it into a padded buffer instead stalled on store
        // forwarding: 10% of all the time per row in the profile.
        if i < n {
            acc |= bad(word(n - 8));
        }
        acc == 0
    } else if n >= 4 {
        let half = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        bad(half(0) as u64 | (half(n - 4) as u64) << 32) == 0
    } else {
        b.iter()
            .all(|&c| (0x20..0x80).contains(&c) && c != b'"' && c != b'\\')
    }
}

pub(super) fn sep(buf: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        buf.push(b',');
    }
    *first = false;
}

/// Writes one typed cell as JSON, or says why it cannot be.
pub fn write_typed(buf: &mut Vec<u8>, text: &str, ty: ColType) -> std::result::Result<(), String> {
    match ty {
        ColType::String => push_json_str(buf, text),
        ColType::Integer => {
            let t = text.trim();
            let v: i64 = t.parse().map_err(|_| format!("{t:?} is not an integer"))?;
            push_int(buf, v)?;
        }
        ColType::Number => write_number(buf, text.trim())?,
        ColType::NumberComma => write_number_comma(buf, text.trim())?,
        ColType::Bool => {
            let t = text.trim();
            let v = if ["true", "1", "yes", "y", "t"]
                .iter()
                .any(|s| t.eq_ignore_ascii_case(s))
            {
                true
            } else if ["false", "0", "no", "n", "f"]
                .iter()
                .any(|s| t.eq_ignore_ascii_case(s))
            {
                false
            } else {
                return Err(format!("{t:?} is not a boolean (true/false, 1/0, yes/no)"));
            };
            buf.extend_from_slice(if v { b"true" } else { b"false" });
        }
        ColType::Json => {
            let t = text.trim();
            // The surrogate scan first: it names the problem better than the parser's
            // "unexpected end of hex escape".
            if has_lone_surrogate(t.as_bytes()) {
                return Err(LONE_SURROGATE.into());
            }
            // Depth first: past 127 levels serde_json stops with its own, vaguer message.
            if let Some(levels) = too_deep(t.as_bytes()) {
                return Err(depth_reject(levels).0);
            }
            serde_json::from_str::<Strict>(t).map_err(|e| format!("not valid JSON: {e}"))?;
            buf.extend_from_slice(t.as_bytes());
        }
    }
    Ok(())
}

/// The error for a number a double cannot carry exactly.
fn beyond_2_53(shown: impl std::fmt::Display) -> String {
    format!(
        "{shown} is beyond 2^53 and would lose precision; load it as a string (--type COL:string)"
    )
}

/// An integer, refused beyond 2^53.
fn push_int(buf: &mut Vec<u8>, v: i64) -> std::result::Result<(), String> {
    if v.unsigned_abs() > MAX_SAFE_INT as u64 {
        return Err(beyond_2_53(v));
    }
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    Ok(())
}

/// A `number` cell: an integer as written, anything else as the shortest float text.
fn write_number(buf: &mut Vec<u8>, t: &str) -> std::result::Result<(), String> {
    if let Ok(v) = t.parse::<i64>() {
        return push_int(buf, v);
    }
    let v: f64 = t.parse().map_err(|_| {
        if t.contains(',') {
            format!("{t:?} is not a number (if ',' is its decimal mark, pass --decimal-comma)")
        } else {
            format!("{t:?} is not a number")
        }
    })?;
    if !v.is_finite() {
        return Err(format!("{t:?} is not a finite number"));
    }
    if v.abs() > MAX_SAFE_INT as f64 {
        return Err(beyond_2_53(t));
    }
    buf.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    Ok(())
}

/// A `number` cell under `--decimal-comma`: one `,` is the decimal mark. A `.` or a
/// second `,` could be a thousands separator (`1.234,5`, `1,234,5`) or a decimal mark:
/// refused rather than guessed.
fn write_number_comma(buf: &mut Vec<u8>, t: &str) -> std::result::Result<(), String> {
    if t.contains('.') {
        return Err(format!(
            "{t:?} holds a '.', but --decimal-comma makes ',' the decimal mark, and a thousands separator is not read: write it without one"
        ));
    }
    if t.matches(',').count() > 1 {
        return Err(format!(
            "{t:?} holds more than one ',': with --decimal-comma one ',' is the decimal mark, and a thousands separator is not read"
        ));
    }
    let mut dotted = t.replacen(',', ".", 1);
    if let Some(i) = t.find(',') {
        // `,5`, `5,` and `-,5`: a digit on each side of the mark, as Excel writes it.
        let digit = |b: Option<&u8>| b.is_some_and(u8::is_ascii_digit);
        if !digit(t.as_bytes().get(i.wrapping_sub(1))) || !digit(t.as_bytes().get(i + 1)) {
            dotted.clear();
        }
    }
    write_number(buf, &dotted).map_err(|_| format!("{t:?} is not a number"))
}

/// Valid JSON that every strict parser reads back: unlike `IgnoredAny` and `RawValue`,
/// which skip over values, it decodes every string (so a lone surrogate escape fails) and
/// converts every number (so `1e400`, beyond a double, fails), keeping nothing. Found by
/// the fuzz targets: such data passed the skipping parsers and a strict server would
/// refuse the whole request body. Used on `json` CSV cells; NDJSON lines are not parsed
/// twice for it (it would cost a fifth of the NDJSON mapping): there a number beyond a
/// double passes through, and a server that refuses it gets the request split so that
/// only that row ends rejected (lone surrogates are caught by a cheaper scan).
struct Strict;

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_unit<E>(self) -> std::result::Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Strict, A::Error> {
                while a.next_element::<Strict>()?.is_some() {}
                Ok(Strict)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Strict, A::Error> {
                while m.next_key::<Strict>()?.is_some() {
                    m.next_value::<Strict>()?;
                }
                Ok(Strict)
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) const LONE_SURROGATE: &str =
    "holds a \\u escape of a lone UTF-16 surrogate, which encodes no character";

/// Whether JSON text (already known to be valid) holds a `\u` escape of an unpaired
/// UTF-16 surrogate. The JSON grammar allows one, but it is not a character: serde_json
/// (and so `IgnoredAny` and `RawValue`, which skip strings without decoding them) lets it
/// through, and then the server's strict parser may refuse the whole request body.
/// Found by the `ndjson_map`/`csv_map` fuzz targets.
pub fn has_lone_surrogate(json: &[u8]) -> bool {
    let hex = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| u16::from_str_radix(s, 16).ok())
    };
    let mut i = 0;
    // In valid JSON every backslash starts an escape inside a string.
    while let Some(p) = json
        .get(i..)
        .and_then(|r| r.iter().position(|&c| c == b'\\'))
    {
        let at = i + p;
        i = at + 2;
        if json.get(at + 1) != Some(&b'u') {
            continue;
        }
        i = at + 6;
        match json.get(at + 2..at + 6).and_then(hex) {
            Some(0xD800..=0xDBFF) => {
                let low = match json.get(at + 6..at + 8) {
                    Some(b"\\u") => json.get(at + 8..at + 12).and_then(hex),
                    _ => None,
                };
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return true;
                }
                i = at + 12;
            }
            Some(0xDC00..=0xDFFF) | None => return true,
            Some(_) => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_str(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    #[test]
    fn openings_counts_both_brackets_across_chunks() {
        assert_eq!(openings(b"[{\"a\":[1]}] {}"), 4);
        assert_eq!(openings("[".repeat(600).as_bytes()), 600);
        assert_eq!(openings(b"]};:[{ZzKk"), 2);
    }

    #[test]
    fn decimal_commas_read_one_comma_and_refuse_what_is_ambiguous() {
        let mut buf = Vec::new();
        for (cell, want) in [
            ("12,50", "12.5"),
            (" -3,25 ", "-3.25"),
            ("7", "7"),
            ("1,5e3", "1500.0"),
        ] {
            buf.clear();
            write_typed(&mut buf, cell, ColType::NumberComma).unwrap();
            assert_eq!(String::from_utf8_lossy(&buf), want, "{cell}");
        }
        for (cell, why) in [
            ("1,234,5", "more than one"),
            ("1.234,5", "'.'"),
            ("12.5", "'.'"),
            (",5", "not a number"),
            ("5,", "not a number"),
            ("12,5x", "not a number"),
        ] {
            let err = write_typed(&mut buf, cell, ColType::NumberComma).unwrap_err();
            assert!(err.contains(why), "{cell}: {err}");
        }
        let err = write_typed(&mut buf, "12,5", ColType::Number).unwrap_err();
        assert!(err.contains("--decimal-comma"), "{err}");
    }

    #[test]
    fn json_cells_must_read_back_strictly() {
        let mut buf = Vec::new();
        for bad in ["1e400", "[1,-1e999]", r#"{"a":"\ud800"}"#, "[1,", "nope"] {
            buf.clear();
            assert!(write_typed(&mut buf, bad, ColType::Json).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        buf.clear();
        let err = write_typed(&mut buf, &deep, ColType::Json).unwrap_err();
        assert!(err.contains("150 levels deep"), "{err}");
        for good in ["1e300", r#"{"a":"\ud83d\ude00","b":[null,true]}"#, " [] "] {
            buf.clear();
            write_typed(&mut buf, good, ColType::Json).unwrap();
            serde_json::from_slice::<serde_json::Value>(&buf).unwrap();
        }
    }

    #[test]
    fn is_plain_accepts_exactly_what_json_leaves_unescaped_in_ascii() {
        // Every byte, at every position of words and tails (lengths 1..=17).
        for b in 0..=255u8 {
            let want = (0x20..0x80).contains(&b) && b != b'"' && b != b'\\';
            for len in 1..=17 {
                for at in 0..len {
                    let mut v = vec![b'x'; len];
                    v[at] = b;
                    assert_eq!(is_plain(&v), want, "byte {b:#x} at {at} of {len}");
                }
            }
        }
        assert!(is_plain(b""));
    }

    #[test]
    fn push_json_str_matches_serde_json() {
        for s in [
            "",
            "plain",
            "sixteen chars ok",
            "a \"quoted\" word",
            "back\\slash",
            "tab\there",
            "line\nbreak",
            "ünïcödé and more than eight bytes",
            "\u{7f}del",
            "emoji 🎉",
        ] {
            let mut v = Vec::new();
            push_json_str(&mut v, s);
            assert_eq!(v, serde_str(s), "{s:?}");
        }
    }
}
