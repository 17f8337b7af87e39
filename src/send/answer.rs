//! Reading an answer of the Corezoid API: `{"request_proc": ..., "ops": [...]}`.
//!
//! In: the answer's bytes. Out: an [`AnswerBody`] borrowing from them. Two readers give
//! the same result: [`parse`] tries a small hand-written scanner for the usual shape (flat
//! op objects of strings, no escapes) and falls back to serde for anything else. The
//! scanner exists because reading answers through serde was the largest cost of the
//! sender after SHA-1 in `perf` profiles of `benches/e2e.sh` (about a sixth of czload's
//! CPU); it either gives exactly what serde gives or declines, which the differential
//! tests below and the `answer` fuzz target check.

use serde::Deserialize;
use std::borrow::Cow;

/// The parts of an answer czload uses.
#[derive(Debug, PartialEq, Deserialize)]
pub struct AnswerBody<'a> {
    #[serde(borrow)]
    pub request_proc: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub ops: Vec<MaybeOp<'a>>,
}

/// One entry of `ops`. An entry that is not a well-formed op answer (not an object, a
/// `proc` that is not a string...) must not make the whole answer unreadable: the ops
/// answered properly settle, and the ops it might have been about count as unanswered.
///
/// Read by hand rather than through `#[serde(untagged)]` and `serde_json::Value`, which
/// buffer every entry into a tree first and allocated for every field: that parse was the
/// largest cost of the sender in `perf` profiles of the end-to-end bench.
#[derive(Debug, PartialEq)]
pub enum MaybeOp<'a> {
    Op(OpAnswer<'a>),
    Malformed,
}

#[derive(Debug, Default, PartialEq)]
pub struct OpAnswer<'a> {
    /// `id`, `ref`, `obj_id`, `description` as text whatever their JSON type (a number
    /// as written); `None` when absent, null, or an array/object where text belongs.
    /// Borrowed from the answer body unless escaped.
    pub id: Option<Cow<'a, str>>,
    pub reference: Option<Cow<'a, str>>,
    pub proc_: Option<Cow<'a, str>>,
    pub obj_id: Option<Cow<'a, str>>,
    pub description: Option<Cow<'a, str>>,
    /// `node_id`: a `show`'s node the task is in, which a delete must name.
    pub node_id: Option<Cow<'a, str>>,
    /// `data`, when it is an object: its JSON text as the server wrote it (the Sync API's
    /// reply, a `show`'s task). Any other `data` is ignored. The fast scanner declines
    /// nested values, so it is only ever read by serde.
    pub data: Option<&'a str>,
}

/// A scalar as text; arrays and objects are skipped.
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E>(self) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Text<'a>, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Text<'a>, A::Error> {
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// An op answer's `proc`: text, null, or something else (which makes the entry malformed).
enum Proc<'a> {
    Text(Cow<'a, str>),
    Null,
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Proc<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::IgnoredAny;
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Proc<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a proc")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Proc<'a>, E> {
                Ok(Proc::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Proc<'a>, E> {
                Ok(Proc::Text(Cow::Owned(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<Proc<'a>, E> {
                Ok(Proc::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Proc<'a>, E> {
                Ok(Proc::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Proc<'a>, E> {
                Ok(Proc::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Proc<'a>, E> {
                Ok(Proc::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Proc<'a>, E> {
                Ok(Proc::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Proc<'a>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Proc::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Proc<'a>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Proc::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A key of an op's answer, told apart without allocating: a `Cow<str>` key is always
/// an owned `String` (serde's `Cow` impl does not borrow), five allocations per op.
enum Key {
    Id,
    Ref,
    ObjId,
    Description,
    Proc,
    Data,
    NodeId,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "id" => Key::Id,
                    "ref" => Key::Ref,
                    "obj_id" => Key::ObjId,
                    "description" => Key::Description,
                    "proc" => Key::Proc,
                    "data" => Key::Data,
                    "node_id" => Key::NodeId,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for MaybeOp<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::IgnoredAny;
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = MaybeOp<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an op answer")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<MaybeOp<'a>, A::Error> {
                let mut a = OpAnswer::default();
                let mut malformed = false;
                while let Some(k) = m.next_key::<Key>()? {
                    match k {
                        Key::Id => a.id = m.next_value::<Text>()?.0,
                        Key::Ref => a.reference = m.next_value::<Text>()?.0,
                        Key::ObjId => a.obj_id = m.next_value::<Text>()?.0,
                        Key::Description => a.description = m.next_value::<Text>()?.0,
                        Key::NodeId => a.node_id = m.next_value::<Text>()?.0,
                        Key::Proc => match m.next_value::<Proc>()? {
                            Proc::Text(p) => a.proc_ = Some(p),
                            Proc::Null => {}
                            Proc::Other => malformed = true,
                        },
                        Key::Data => {
                            let raw: &'de serde_json::value::RawValue = m.next_value()?;
                            if raw.get().starts_with('{') {
                                a.data = Some(raw.get());
                            }
                        }
                        Key::Other => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(if malformed {
                    MaybeOp::Malformed
                } else {
                    MaybeOp::Op(a)
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<MaybeOp<'a>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeOp::Malformed)
            }
            fn visit_str<E>(self, _: &str) -> Result<MaybeOp<'a>, E> {
                Ok(MaybeOp::Malformed)
            }
            fn visit_u64<E>(self, _: u64) -> Result<MaybeOp<'a>, E> {
                Ok(MaybeOp::Malformed)
            }
            fn visit_i64<E>(self, _: i64) -> Result<MaybeOp<'a>, E> {
                Ok(MaybeOp::Malformed)
            }
            fn visit_f64<E>(self, _: f64) -> Result<MaybeOp<'a>, E> {
                Ok(MaybeOp::Malformed)
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeOp<'a>, E> {
                Ok(MaybeOp::Malformed)
            }
            fn visit_unit<E>(self) -> Result<MaybeOp<'a>, E> {
                Ok(MaybeOp::Malformed)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Reads an answer: the fast scanner when it can, serde otherwise. `None` when the
/// answer is not JSON of the expected shape (then it is judged by its status alone).
pub fn parse(body: &[u8]) -> Option<AnswerBody<'_>> {
    parse_fast(body).or_else(|| parse_serde(body))
}

/// The reference reader: what [`parse_fast`] must agree with.
pub fn parse_serde(body: &[u8]) -> Option<AnswerBody<'_>> {
    serde_json::from_slice(body).ok()
}

/// The usual answer, read without serde: objects whose values are strings (without
/// escapes or control characters) or null, the ops one array of such objects. `None`
/// means "not this shape", never "not JSON": anything else (numbers, nesting, escapes,
/// a repeated top-level key, bytes that are not UTF-8) is left to [`parse_serde`].
pub fn parse_fast(body: &[u8]) -> Option<AnswerBody<'_>> {
    // One check of the whole body: every string sliced from it below starts and ends at
    // an ASCII quote, so each slice is valid UTF-8 too.
    let text = std::str::from_utf8(body).ok()?;
    let mut s = Scan {
        b: body,
        text,
        i: 0,
    };
    let mut out = AnswerBody {
        request_proc: None,
        description: None,
        ops: Vec::new(),
    };
    // serde refuses a repeated field: such an answer is left to it.
    let (mut seen_proc, mut seen_desc, mut seen_ops) = (false, false, false);
    let first = |seen: &mut bool| (!std::mem::replace(seen, true)).then_some(());
    s.expect(b'{')?;
    if !s.eat(b'}') {
        loop {
            let key = s.string()?;
            s.expect(b':')?;
            match key {
                "request_proc" => {
                    first(&mut seen_proc)?;
                    out.request_proc = s.scalar()?.map(Cow::Borrowed);
                }
                "description" => {
                    first(&mut seen_desc)?;
                    out.description = s.scalar()?.map(Cow::Borrowed);
                }
                "ops" => {
                    first(&mut seen_ops)?;
                    out.ops = s.ops()?;
                }
                _ => {
                    s.scalar()?;
                }
            }
            if !s.more(b'}')? {
                break;
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(out)
}

/// Where the first `"`, backslash or control character is: the end of a string, or the
/// reason to decline it. Eight bytes at a time (see `swar`; a byte loop here was a
/// twentieth of the sender's time).
fn special(b: &[u8]) -> Option<usize> {
    use crate::swar::{below, eq, first, word};
    let mut i = 0;
    while i + 8 <= b.len() {
        let x = word(b, i);
        let hit = below(x, 0x20) | eq(x, b'"') | eq(x, b'\\');
        if hit != 0 {
            return Some(i + first(hit));
        }
        i += 8;
    }
    let tail = b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(i + tail)
}

struct Scan<'a> {
    b: &'a [u8],
    text: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Skips whitespace, then takes `c` if it comes next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.b.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    /// After a member or element: `,` means another follows, `close` that none does.
    fn more(&mut self, close: u8) -> Option<bool> {
        if self.eat(b',') {
            Some(true)
        } else {
            self.expect(close).map(|_| false)
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        let len = special(&self.b[start..])?;
        // The closing quote itself, not `expect` (which would skip a newline first).
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(&self.text[start..start + len])
    }

    /// A string (`Some`) or null (`None`); anything else declines the whole answer.
    fn scalar(&mut self) -> Option<Option<&'a str>> {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// `[ {op}, ... ]`
    fn ops(&mut self) -> Option<Vec<MaybeOp<'a>>> {
        self.expect(b'[')?;
        let mut ops = Vec::new();
        if self.eat(b']') {
            return Some(ops);
        }
        loop {
            ops.push(self.op()?);
            if !self.more(b']')? {
                return Some(ops);
            }
        }
    }

    /// One op's answer, with [`MaybeOp`]'s serde semantics: a later key wins, a null
    /// `proc` is no proc, unknown keys are skipped.
    fn op(&mut self) -> Option<MaybeOp<'a>> {
        self.expect(b'{')?;
        let mut a = OpAnswer::default();
        if self.eat(b'}') {
            return Some(MaybeOp::Op(a));
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            let v = self.scalar()?.map(Cow::Borrowed);
            match key {
                "id" => a.id = v,
                "ref" => a.reference = v,
                "obj_id" => a.obj_id = v,
                "description" => a.description = v,
                "node_id" => a.node_id = v,
                "proc" if v.is_some() => a.proc_ = v,
                _ => {}
            }
            if !self.more(b'}')? {
                return Some(MaybeOp::Op(a));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The fast reader must agree with serde whenever it answers.
    fn agree(body: &[u8]) {
        if let Some(fast) = parse_fast(body) {
            assert_eq!(
                Some(&fast),
                parse_serde(body).as_ref(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_usual_answers_take_the_fast_path_and_read_as_serde_reads_them() {
        let cases: &[&str] = &[
            r#"{"request_proc":"ok","ops":[{"id":"1","proc":"ok","obj":"task","ref":"a.csv:1","obj_id":"5f0c0a000000000000000001"},{"id":"2","proc":"error","obj":"task","ref":"a.csv:2","key":"ref","description":"not unical reference"}]}"#,
            r#"{"request_proc":"ok","ops":[]}"#,
            r#"{"request_proc":"fail","description":"Bad signature"}"#,
            " {\n \"ops\" : [ { } , {\"proc\":null,\"id\":null} ] ,\"request_proc\":\"ok\"}\r\n",
            r#"{"ops":[{"id":"1","id":"2","proc":"ok","proc":null,"ref":"é€𝄞"}],"x":"y","z":null}"#,
            r#"{}"#,
        ];
        for c in cases {
            let fast = parse_fast(c.as_bytes()).unwrap_or_else(|| panic!("declined: {c}"));
            assert_eq!(Some(fast), parse_serde(c.as_bytes()), "{c}");
        }
        let a = parse(cases[0].as_bytes()).unwrap();
        assert_eq!(a.request_proc.as_deref(), Some("ok"));
        let MaybeOp::Op(op) = &a.ops[1] else {
            panic!("{:?}", a.ops[1])
        };
        assert_eq!(op.proc_.as_deref(), Some("error"));
        assert_eq!(op.description.as_deref(), Some("not unical reference"));
        assert_eq!(op.reference.as_deref(), Some("a.csv:2"));
    }

    #[test]
    fn anything_else_is_declined_and_left_to_serde() {
        let cases: &[&str] = &[
            r#"{"ops":[{"id":1,"proc":"ok"}]}"#,
            r#"{"ops":[{"id":"1","proc":"ok","data":{"a":1}}]}"#,
            r#"{"ops":[{"id":"\u0031","proc":"ok"}]}"#,
            r#"{"ops":[{"proc":7}]}"#,
            r#"{"ops":["x"]}"#,
            r#"{"ops":null}"#,
            r#"{"ops":[],"ops":[]}"#,
            r#"{"request_proc":"ok","request_proc":"ok"}"#,
            r#"{"request_proc":"ok"} x"#,
            r#"{"request_proc":"ok""#,
            r#"{"request_proc":"o"#,
            "{\"request_proc\":\"o\tk\"}",
            "{\"request_proc\":\"ok\n\"}",
            r#"{"ops":[{"id":"1",}]}"#,
            r#"{"ops":[{"id":nul}]}"#,
            "\u{feff}{}",
            "",
        ];
        for c in cases {
            assert!(parse_fast(c.as_bytes()).is_none(), "accepted: {c}");
            agree(c.as_bytes());
        }
        // Declined, yet serde reads it: the fallback keeps such answers.
        let a = parse(br#"{"ops":[{"id":1,"proc":"ok"}]}"#).unwrap();
        assert_eq!(
            a.ops,
            vec![MaybeOp::Op(OpAnswer {
                id: Some("1".into()),
                proc_: Some("ok".into()),
                ..OpAnswer::default()
            })]
        );
        assert!(parse(&[0xff, b'{', b'}']).is_none());
        // `data`: kept when an object (the Sync API's reply), ignored otherwise, by both.
        let a = parse(br#"{"request_proc":"ok","ops":[{"id":"1","proc":"ok","data":{"a": [1,{"b":2}]}},{"id":"2","proc":"ok","data":"x"}]}"#).unwrap();
        let data: Vec<_> = a
            .ops
            .iter()
            .map(|o| match o {
                MaybeOp::Op(o) => o.data,
                MaybeOp::Malformed => None,
            })
            .collect();
        assert_eq!(data, vec![Some(r#"{"a": [1,{"b":2}]}"#), None]);
        for c in [
            r#"{"ops":[{"id":"2","proc":"ok","data":"x"}]}"#,
            r#"{"ops":[{"id":"2","proc":"ok","data":null}]}"#,
        ] {
            assert!(parse_fast(c.as_bytes()).is_some(), "{c}");
            agree(c.as_bytes());
        }
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_byte_anywhere() {
        for len in 0..=20 {
            for at in 0..=len {
                for c in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    // Non-ASCII filler too: its bytes are >= 0x80.
                    for fill in ["a", "é"] {
                        let mut b: Vec<u8> = fill.bytes().cycle().take(len).collect();
                        if at < len {
                            b[at] = c;
                            // A second one later must not hide the first.
                            if at + 1 < len {
                                b[len - 1] = b'"';
                            }
                        }
                        let want = b.iter().position(|&x| x == b'"' || x == b'\\' || x < 0x20);
                        assert_eq!(special(&b), want, "{b:?}");
                    }
                }
            }
        }
        assert_eq!(
            special(&[0x20, 0x7f, 0x80, 0xff, 0x21, 0x5b, 0x5d, 0x23, b'"']),
            Some(8)
        );
    }

    /// Random answers, then random damage to them: wherever the fast reader answers, it
    /// answers as serde does.
    #[test]
    fn fast_and_serde_agree_on_generated_and_damaged_answers() {
        const PIECES: &[&str] = &[
            "\"id\"",
            "\"ref\"",
            "\"proc\"",
            "\"obj_id\"",
            "\"description\"",
            "\"ops\"",
            "\"request_proc\"",
            "\"ok\"",
            "\"x\"",
            "null",
            "1",
            "true",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\\",
            "\"",
            "\"a\\\"b\"",
            "é",
            "\n",
        ];
        let mut rng = StdRng::seed_from_u64(7);
        let mut fast_hits = 0;
        for _ in 0..50_000 {
            let mut s = String::from(r#"{"request_proc":"ok","ops":["#);
            for k in 0..rng.random_range(0..4) {
                if k > 0 {
                    s.push(',');
                }
                s.push('{');
                let fields = ["id", "ref", "proc", "obj_id", "description", "obj"];
                for f in 0..rng.random_range(0..5) {
                    if f > 0 {
                        s.push(',');
                    }
                    let key = fields[rng.random_range(0..fields.len())];
                    let v = match rng.random_range(0..5) {
                        0 => "null".to_string(),
                        4 => format!("\"{}-0123456789abcdef\"", rng.random_range(0..100)),
                        1 => format!("\"v{}\"", rng.random_range(0..100)),
                        2 => "\"\"".to_string(),
                        _ => "\"ok\"".to_string(),
                    };
                    s.push_str(&format!("\"{key}\":{v}"));
                }
                s.push('}');
            }
            s.push_str("]}");
            let mut b = s.into_bytes();
            for _ in 0..rng.random_range(0..3) {
                let at = rng.random_range(0..=b.len());
                match rng.random_range(0..3) {
                    0 if at < b.len() => {
                        b.remove(at);
                    }
                    1 => {
                        let p = PIECES[rng.random_range(0..PIECES.len())];
                        b.splice(at..at, p.bytes());
                    }
                    _ if at < b.len() => b[at] = rng.random(),
                    _ => {}
                }
            }
            if parse_fast(&b).is_some() {
                fast_hits += 1;
            }
            agree(&b);
        }
        // Most undamaged answers are the usual shape: the comparison was not vacuous.
        assert!(
            fast_hits > 12_000,
            "the fast reader answered only {fast_hits} times"
        );
    }
}
