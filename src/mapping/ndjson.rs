//! Records that are JSON objects (an NDJSON line; any source of JSON objects) -> ops,
//! and -> retry-file lines.
//!
//! In: one object's text per row. Out: the op (see [`super::Plan`]): the object
//! is the task data, validated but not rebuilt unless fields must leave it; and the line
//! for the retry file, with its generated ref in a leading `_czload_ref` field.

use super::edits::append_members;
use super::json::{depth_reject, has_lone_surrogate, push_json_str, sep, too_deep, LONE_SURROGATE};
use super::refs::{is_generated, RefSource, REF_COLUMN};
use super::{
    check_task_size, fixed_part, parse_conv, write_head, Edits, MappingConfig, Plan, Reject,
    RetryRows, Target,
};
use crate::error::{Error, Result};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// How every line of one NDJSON input becomes an op.
#[derive(Debug)]
pub struct NdjsonPlan {
    fixed: Vec<u8>,
    conv_field: Option<String>,
    reference: RefSource<String>,
    data_field: Option<String>,
    exclude: Vec<String>,
    /// The fields that make a line's data be rebuilt: `--exclude`, and the fields that
    /// `--rename` renames or `--set` replaces.
    rebuild: Vec<String>,
    edits: Edits,
    /// `--set`: the constant members every task's data ends with (empty without).
    constants: Vec<u8>,
    /// The fields whose values the op needs (ref, process, data field, retry ref).
    wanted: Vec<String>,
    max_task_bytes: usize,
    /// `--op raw`: the line is the whole op, sent as written but for its `id`.
    raw: bool,
}

/// The top-level fields of one line that the plan asked for, borrowed from it: values
/// stay raw JSON text. The other fields are checked and skipped, not collected: the
/// profile showed collecting every field (a `Vec` that grew per line, `from_utf8` of each
/// raw value) at a quarter of the NDJSON time per row.
struct TopLevel<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// Whether a field to leave out of `data` (`_czload_ref`, `--exclude`) is present.
    dropped: bool,
}

/// How to read a line's top level: which fields to keep.
#[derive(Clone, Copy)]
struct Scan<'p> {
    /// Keep every field, in order (to rebuild `data` without the dropped ones).
    all: bool,
    wanted: &'p [String],
    exclude: &'p [String],
}

impl<'de> serde::de::DeserializeSeed<'de> for Scan<'_> {
    type Value = TopLevel<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = TopLevel<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Self::Value, A::Error> {
        let mut top = TopLevel {
            fields: Vec::new(),
            dropped: false,
        };
        while let Some(Text(k)) = m.next_key::<Text<'de>>()? {
            if k == REF_COLUMN || self.exclude.iter().any(|e| *e == k) {
                top.dropped = true;
            }
            if self.all || self.wanted.iter().any(|w| *w == k) {
                let val: &'de RawValue = m.next_value()?;
                top.fields.push((k, val));
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(top)
    }
}

/// A JSON string, borrowed from the input unless it has escapes. serde's own `Cow<str>`
/// always copies into a `String`: that was an allocation per key of every NDJSON line.
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'a> TopLevel<'a> {
    fn get(&self, k: &str) -> Option<&'a RawValue> {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, v)| *v)
    }
}

/// Reads the top level of `line`, already known to be UTF-8.
fn scan<'a>(line: &'a str, how: Scan) -> std::result::Result<TopLevel<'a>, Reject> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(line);
    how.deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top))
        .map_err(|e| {
            if e.is_data() {
                Reject("the line is not a JSON object".into())
            } else {
                Reject(format!("not valid JSON: {e}"))
            }
        })
}

/// A top-level value as ref text: strings unquoted, numbers and booleans as written.
fn scalar_text(v: &RawValue, out: &mut String) -> std::result::Result<(), &'static str> {
    let raw = v.get();
    match raw.as_bytes().first() {
        Some(b'"') => {
            let Text(s) = serde_json::from_str(raw).map_err(|_| "a bad string")?;
            out.push_str(&s);
            Ok(())
        }
        Some(b'{') => Err("an object"),
        Some(b'[') => Err("an array"),
        Some(b'n') => Err("null"),
        Some(_) => {
            out.push_str(raw);
            Ok(())
        }
        None => Err("empty"),
    }
}

impl NdjsonPlan {
    /// Generated refs are `{name}:{row}` (`--ref-prefix`, or the name a resumed run used).
    pub(crate) fn name_refs(&mut self, name: &str) {
        self.reference.rename(name);
    }

    pub fn new(cfg: &MappingConfig, file_name: &str) -> Result<NdjsonPlan> {
        if !cfg.types.is_empty() {
            return Err(Error::Usage(
                "--type applies to CSV input; NDJSON values keep their JSON types".into(),
            ));
        }
        let reference = RefSource::new(&cfg.ref_mode, file_name, |f, _| Ok(f.to_string()))?;
        let (conv, conv_field) = match &cfg.target {
            Target::Conv(c) => (Some(*c), None),
            Target::Column(c) => (None, Some(c.clone())),
            Target::Alias(_) => (None, None),
        };
        let mut wanted = vec![REF_COLUMN.to_string()];
        wanted.extend(reference.fields().cloned());
        wanted.extend(conv_field.iter().cloned());
        wanted.extend(cfg.data_field.iter().cloned());
        Ok(NdjsonPlan {
            fixed: fixed_part(cfg, conv),
            conv_field,
            reference,
            data_field: cfg.data_field.clone(),
            exclude: cfg.exclude.clone(),
            rebuild: cfg
                .exclude
                .iter()
                .chain(cfg.edits.rename.iter().map(|(old, _)| old))
                .chain(cfg.edits.set.iter().map(|(k, _, _)| k))
                .cloned()
                .collect(),
            edits: cfg.edits.clone(),
            constants: cfg.edits.constants(),
            wanted,
            max_task_bytes: cfg.max_task_bytes,
            raw: cfg.op.rows_are_ops,
        })
    }

    /// A line whose renamed field would meet another of the same name in the task is
    /// rejected: it would carry the key twice (`{"b":1,"b":2}`), and a server keeps one.
    /// CSV refuses the same rename from the header, before the run.
    fn check_renames(
        &self,
        top: &TopLevel,
        drop_key: &dyn Fn(&str) -> bool,
    ) -> std::result::Result<(), Reject> {
        for (old, new) in &self.edits.rename {
            if self.edits.renamed(old) != new.as_str() || !top.fields.iter().any(|(k, _)| k == old)
            {
                continue;
            }
            let clash = top
                .fields
                .iter()
                .find(|(k, _)| k != old && !drop_key(k) && self.edits.renamed(k) == new);
            if let Some((other, _)) = clash {
                return Err(Reject(format!(
                    "--rename {old}:{new}: the line has a field \"{other}\" that the task would hold as \"{new}\" too; rename or --exclude one of them"
                )));
            }
        }
        Ok(())
    }

    pub fn auto_ref(&self) -> bool {
        self.reference.is_auto()
    }

    /// The task data: the `--data-field` object, or the line less the fields left out.
    fn write_data(
        &self,
        line: &[u8],
        top: &TopLevel,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<(), Reject> {
        let start = buf.len();
        if let Some(f) = &self.data_field {
            let v = top
                .get(f)
                .ok_or_else(|| Reject(format!("field \"{f}\" (--data-field) is missing")))?;
            if !v.get().starts_with('{') {
                return Err(Reject(format!(
                    "field \"{f}\" (--data-field) is not an object"
                )));
            }
            buf.extend_from_slice(v.get().as_bytes());
        } else if top.dropped {
            // Rare (a retry file, --exclude, --rename, --set): rebuild the object without
            // them (renamed ones under their new name).
            let drop_key = |k: &str| {
                k == REF_COLUMN || self.exclude.iter().any(|e| e == k) || self.edits.replaced(k)
            };
            self.check_renames(top, &drop_key)?;
            buf.push(b'{');
            let mut first = true;
            for (k, v) in top.fields.iter().filter(|(k, _)| !drop_key(k)) {
                sep(buf, &mut first);
                push_json_str(buf, self.edits.renamed(k));
                buf.push(b':');
                buf.extend_from_slice(v.get().as_bytes());
            }
            buf.push(b'}');
        } else {
            // The common case: the line is the data, validated but not rebuilt.
            buf.extend_from_slice(line.trim_ascii());
        }
        if !self.constants.is_empty() {
            append_members(buf, start, &self.constants);
        }
        Ok(())
    }
}

impl Plan for NdjsonPlan {
    type Record = [u8];

    /// One line, without its line end.
    fn write_op(
        &self,
        line: &[u8],
        id: u64,
        row: u64,
        buf: &mut Vec<u8>,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject> {
        // A rejected line must not report the previous line's ref.
        ref_out.clear();
        // One UTF-8 check of the whole line, so that skipped values are checked too.
        let text = std::str::from_utf8(line).map_err(|e| {
            Reject(format!(
                "not valid JSON: invalid UTF-8 at byte {}",
                e.valid_up_to() + 1
            ))
        })?;
        if self.raw {
            return self.write_raw(text, id, buf, ref_out);
        }
        let how = Scan {
            all: false,
            wanted: &self.wanted,
            exclude: &self.rebuild,
        };
        let mut top = scan(text, how)?;
        if top.dropped && self.data_field.is_none() {
            // Rare (a retry file, or --exclude): `data` is rebuilt from every field.
            top = scan(text, Scan { all: true, ..how })?;
        }
        self.build_ref(&top, row, ref_out)?;
        let conv = match &self.conv_field {
            Some(f) => Some(field_conv(&top, f)?),
            None => None,
        };
        write_head(buf, id, &self.fixed, conv, ref_out);
        let data_start = buf.len();
        self.write_data(line, &top, buf)?;
        if has_lone_surrogate(&buf[data_start..]) {
            return Err(Reject(format!("the data {LONE_SURROGATE}")));
        }
        check_task_size(buf.len() - data_start, self.max_task_bytes)?;
        if let Some(levels) = too_deep(&buf[data_start..]) {
            return Err(depth_reject(levels));
        }
        buf.push(b'}');
        Ok(())
    }

    fn write_ref(
        &self,
        line: &[u8],
        row: u64,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject> {
        // The usual sharded case, generated refs: no need to read the line, unless it may
        // carry its ref (a retry file). (A `_czload_ref` key spelt with escapes is missed
        // here; every copy misses it alike, so the row still goes to exactly one.)
        if self.reference.is_auto() && memchr::memmem::find(line, REF_COLUMN.as_bytes()).is_none() {
            type Carried = fn(&mut String) -> std::result::Result<(), Reject>;
            let no_field = |_: &String, _: &'static str, _: &mut String| Ok(());
            return self
                .reference
                .build(row, None::<Carried>, no_field, ref_out);
        }
        ref_out.clear();
        let text = std::str::from_utf8(line).map_err(|_| Reject("not valid UTF-8".into()))?;
        let how = Scan {
            all: false,
            wanted: &self.wanted,
            exclude: &self.rebuild,
        };
        let top = scan(text, how)?;
        self.build_ref(&top, row, ref_out)
    }
}

impl NdjsonPlan {
    /// The ref of a line whose top level was read into `top`.
    fn build_ref(
        &self,
        top: &TopLevel,
        row: u64,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject> {
        let carried = top.get(REF_COLUMN).map(|r| {
            move |out: &mut String| {
                scalar_text(r, out)
                    .map_err(|what| Reject(format!("field \"{REF_COLUMN}\" is {what}")))
            }
        });
        let field = |f: &String, flag: &'static str, out: &mut String| {
            let v = top
                .get(f)
                .ok_or_else(|| Reject(format!("field \"{f}\" ({flag}) is missing")))?;
            scalar_text(v, out).map_err(|what| Reject(format!("field \"{f}\" ({flag}) is {what}")))
        };
        self.reference.build(row, carried, field, ref_out)
    }
}

impl NdjsonPlan {
    /// `--op raw`: the line's members in their order, after czload's own `id` (an `id`
    /// the line has is replaced: two would make the answer unmatchable); its ref is the
    /// op's own `ref`.
    fn write_raw(
        &self,
        text: &str,
        id: u64,
        buf: &mut Vec<u8>,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject> {
        let top = scan(
            text,
            Scan {
                all: true,
                wanted: &[],
                exclude: &[],
            },
        )?;
        for f in ["type", "obj"] {
            match top.get(f).map(|v| v.get().starts_with('"')) {
                Some(true) => {}
                Some(false) => return Err(Reject(format!("field \"{f}\" is not a string"))),
                None => {
                    return Err(Reject(format!(
                        "field \"{f}\" is missing: with --op raw each line is a whole op, e.g. {{\"type\":\"create\",\"obj\":\"task\",...}}"
                    )))
                }
            }
        }
        if let Some(r) = top.get("ref") {
            scalar_text(r, ref_out).map_err(|what| Reject(format!("field \"ref\" is {what}")))?;
            super::check_ref(ref_out)?;
        }
        if let Some(d) = top.get("data") {
            check_task_size(d.get().len(), self.max_task_bytes)?;
        }
        let start = buf.len();
        buf.extend_from_slice(super::OP_OPEN);
        buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        buf.push(b'"');
        for (k, v) in top.fields.iter().filter(|(k, _)| k != "id") {
            buf.push(b',');
            push_json_str(buf, k);
            buf.push(b':');
            buf.extend_from_slice(v.get().as_bytes());
        }
        buf.push(b'}');
        if has_lone_surrogate(&buf[start..]) {
            return Err(Reject(format!("the op {LONE_SURROGATE}")));
        }
        if let Some(levels) = too_deep(&buf[start..]) {
            return Err(depth_reject(levels));
        }
        Ok(())
    }
}

/// The process id in a `--conv-id-column` field.
fn field_conv(top: &TopLevel, f: &str) -> std::result::Result<u64, Reject> {
    let v = top
        .get(f)
        .ok_or_else(|| Reject(format!("field \"{f}\" (--conv-id-column) is missing")))?;
    let mut s = String::new();
    scalar_text(v, &mut s)
        .ok()
        .and_then(|_| parse_conv(&s))
        .ok_or_else(|| Reject(format!("field \"{f}\": {} is not a process id", v.get())))
}

/// A JSON-object input's rows as the retry file holds them: one object a line.
pub struct ObjectRetry {
    /// Whether refs are generated, and from what file name.
    auto_ref: bool,
    file_name: String,
}

impl ObjectRetry {
    pub fn new(plan: &NdjsonPlan, file_name: &str) -> ObjectRetry {
        ObjectRetry {
            auto_ref: plan.auto_ref(),
            file_name: file_name.to_string(),
        }
    }
}

impl RetryRows for ObjectRetry {
    type Record = [u8];

    fn header(&mut self) -> Option<Vec<u8>> {
        None
    }

    fn write(&mut self, rec: &[u8], row: u64, reference: &str, out: &mut Vec<u8>) {
        let generated = self.auto_ref && is_generated(reference, &self.file_name, row);
        write_object_line(out, rec, generated.then_some(reference))
    }
}

/// The line as it goes to the retry file. `reference` is given when the ref was generated
/// (`{file}:{row}`): the line then carries it in a leading `_czload_ref`, so that loading
/// the retry file reuses it (exactly once across runs). A ref that came from the line's own
/// `_czload_ref` is already in it.
fn write_object_line(raw: &mut Vec<u8>, line: &[u8], reference: Option<&str>) {
    let t = line.trim_ascii();
    match reference {
        Some(r) => {
            raw.extend_from_slice(b"{\"");
            raw.extend_from_slice(REF_COLUMN.as_bytes());
            raw.extend_from_slice(b"\":");
            push_json_str(raw, r);
            let rest = &t[1..];
            if rest.trim_ascii() != b"}" {
                raw.push(b',');
            }
            raw.extend_from_slice(rest);
        }
        None => raw.extend_from_slice(t),
    }
    raw.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::tests::cfg_no_types;
    use crate::mapping::{MappingConfig, RefMode};

    fn nd(
        line: &str,
        cfg: &MappingConfig,
    ) -> std::result::Result<(serde_json::Value, String), Reject> {
        let plan = NdjsonPlan::new(cfg, "f.ndjson").unwrap();
        let (mut buf, mut r) = (Vec::new(), String::new());
        plan.write_op(line.as_bytes(), 3, 7, &mut buf, &mut r)?;
        Ok((serde_json::from_slice(&buf).unwrap(), r))
    }

    #[test]
    fn the_ref_alone_is_the_ref_of_the_op() {
        // `--shard` places a row by `write_ref`: it must be the ref `write_op` sends.
        let auto = cfg_no_types();
        let col = MappingConfig {
            ref_mode: RefMode::Column("k".into()),
            ..cfg_no_types()
        };
        let lines = [
            r#"{"k":"a-1","n":1}"#,
            r#"{"n":1,"_czload_ref":"old.ndjson:3"}"#,
            r#"{"k":17,"_czload_ref":"x"}"#,
            r#"{"n":"no k"}"#,
            "not json",
        ];
        for c in [&auto, &col] {
            let plan = NdjsonPlan::new(c, "f.ndjson").unwrap();
            for l in lines {
                let (mut buf, mut sent, mut alone) = (Vec::new(), String::new(), String::new());
                let op = plan.write_op(l.as_bytes(), 1, 7, &mut buf, &mut sent);
                let r = plan.write_ref(l.as_bytes(), 7, &mut alone);
                if op.is_ok() {
                    assert_eq!((r, &alone), (Ok(()), &sent), "{l} {:?}", c.ref_mode);
                } else if r.is_err() {
                    assert_eq!(alone, "", "{l}");
                }
            }
        }
    }

    #[test]
    fn ndjson_lines_pass_through_or_are_rebuilt_as_before() {
        let c = cfg_no_types();
        let (op, r) = nd(r#" {"a":1,"b":"x","c":[1,{"d":null}]} "#, &c).unwrap();
        assert_eq!(r, "f.ndjson:7");
        assert_eq!(
            op["data"],
            serde_json::json!({"a":1,"b":"x","c":[1,{"d":null}]})
        );

        // A retry file's line: its ref wins and leaves the data.
        let (op, r) = nd(r#"{"a":1,"_czload_ref":"old:3","b":2}"#, &c).unwrap();
        assert_eq!(r, "old:3");
        assert_eq!(op["data"], serde_json::json!({"a":1,"b":2}));
        assert_eq!(op["ref"], "old:3");

        let ex = MappingConfig {
            exclude: vec!["b".into()],
            ..cfg_no_types()
        };
        let (op, _) = nd(r#"{"a":1,"b":2,"c":3}"#, &ex).unwrap();
        assert_eq!(op["data"], serde_json::json!({"a":1,"c":3}));

        let by_field = MappingConfig {
            ref_mode: RefMode::Column("k".into()),
            target: Target::Column("p".into()),
            data_field: Some("d".into()),
            ..cfg_no_types()
        };
        let (op, r) = nd(r#"{"x":[1],"k":42,"p":"556","d":{"v":true}}"#, &by_field).unwrap();
        assert_eq!(r, "42");
        assert_eq!(op["conv_id"], 556);
        assert_eq!(op["data"], serde_json::json!({"v":true}));

        let tpl = MappingConfig {
            ref_mode: RefMode::Template("o-{k}-{n}".into()),
            ..cfg_no_types()
        };
        let (_, r) = nd(r#"{"n":"x","skip":{"deep":[1,2]},"k":5}"#, &tpl).unwrap();
        assert_eq!(r, "o-5-x");
    }

    #[test]
    fn bad_ndjson_lines_are_rejected_even_in_skipped_values() {
        let c = cfg_no_types();
        for (line, want) in [
            (&b"[1,2]"[..], "not a JSON object"),
            (b"\"str\"", "not a JSON object"),
            (br#"{"a":1} x"#, "not valid JSON"),
            (br#"{"a":tru}"#, "not valid JSON"),
            (br#"{"a":"\q"}"#, "not valid JSON"),
            // Invalid UTF-8 in a value the scan skips.
            (b"{\"a\":\"\xff\"}", "not valid JSON"),
        ] {
            let plan = NdjsonPlan::new(&c, "f.ndjson").unwrap();
            let err = plan
                .write_op(line, 1, 1, &mut Vec::new(), &mut String::new())
                .unwrap_err();
            assert!(
                err.0.contains(want),
                "{:?}: {}",
                String::from_utf8_lossy(line),
                err.0
            );
        }
    }

    #[test]
    fn raw_lines_are_sent_as_written_with_our_id_in_place_of_theirs() {
        let c = MappingConfig {
            op: crate::op::OpKind::RAW,
            ref_mode: RefMode::Column("ref".into()),
            ..cfg_no_types()
        };
        let plan = NdjsonPlan::new(&c, "ops.ndjson").unwrap();
        let (mut buf, mut r) = (Vec::new(), String::new());
        let line = br#"{"type":"modify","id":"theirs","obj":"task","conv_id":555,"ref":"o-1","data":{"a":[1, 2]}}"#;
        plan.write_op(line, 7, 1, &mut buf, &mut r).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            r#"{"id":"7","type":"modify","obj":"task","conv_id":555,"ref":"o-1","data":{"a":[1, 2]}}"#
        );
        assert_eq!(r, "o-1");
        buf.clear();
        plan.write_op(
            br#"{"type":"show","obj":"conv","obj_id":5}"#,
            8,
            2,
            &mut buf,
            &mut r,
        )
        .unwrap();
        assert_eq!(r, "", "no ref: none reported");
        for (bad, why) in [
            (&br#"{"obj":"task"}"#[..], "field \"type\" is missing"),
            (
                br#"{"type":1,"obj":"task"}"#,
                "field \"type\" is not a string",
            ),
            (
                br#"{"type":"create","obj":"task","ref":""}"#,
                "ref is empty",
            ),
            (br#"[1]"#, "not a JSON object"),
        ] {
            let e = plan.write_op(bad, 9, 3, &mut buf, &mut r).unwrap_err();
            assert!(e.0.contains(why), "{e:?}");
        }
    }

    #[test]
    fn retry_lines_carry_a_generated_ref_in_front() {
        let mut out = Vec::new();
        write_object_line(&mut out, b" {\"a\":1} ", Some("f.ndjson:7"));
        write_object_line(&mut out, b"{}", Some("f.ndjson:8"));
        write_object_line(&mut out, b"{\"_czload_ref\":\"x\"}", None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"_czload_ref\":\"f.ndjson:7\",\"a\":1}\n{\"_czload_ref\":\"f.ndjson:8\"}\n{\"_czload_ref\":\"x\"}\n"
        );
    }
}
