//! Record -> operation.
//!
//! In: a CSV `ByteRecord` or an NDJSON line, with its row number. Out: the operation's
//! JSON written straight into the request body being built (no `serde_json::Value` tree),
//! plus its ref, or a `Reject` naming the column and the problem.
//!
//! Everything that depends only on the header (column positions, types, pre-escaped
//! keys, the fixed part of each op) is resolved once in `CsvPlan::new` /
//! `NdjsonPlan::new`, before the first row.

use crate::error::{Error, Result};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt::Write as _;

/// Largest integer a JSON number can carry exactly (IEEE double); beyond it Corezoid
/// wants strings, so a typed cell beyond it is refused rather than silently rounded.
pub const MAX_SAFE_INT: i64 = 1 << 53;

/// The column (CSV) or field (NDJSON) in which a retry file carries a row's generated ref,
/// so that loading the retry file reuses the refs of the first run (see README).
pub const REF_COLUMN: &str = "_czload_ref";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    String,
    Number,
    Integer,
    Bool,
    Json,
}

impl ColType {
    pub fn parse(s: &str) -> Option<ColType> {
        Some(match s {
            "string" | "str" => ColType::String,
            "number" | "num" | "float" => ColType::Number,
            "integer" | "int" => ColType::Integer,
            "bool" | "boolean" => ColType::Bool,
            "json" | "array" | "object" => ColType::Json,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyPolicy {
    /// String columns get "", typed columns leave the key out.
    Keep,
    Omit,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Modify,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Modify => "modify",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefMode {
    /// `{file name}:{row}`: deterministic, so a re-run of the same file is idempotent.
    Auto,
    Column(String),
    Template(String),
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Conv(u64),
    Column(String),
}

/// What the mapping needs to know, from the validated config.
#[derive(Debug, Clone)]
pub struct MappingConfig {
    pub op: OpKind,
    pub target: Target,
    pub company_id: Option<String>,
    pub ref_mode: RefMode,
    pub types: Vec<(String, ColType)>,
    pub exclude: Vec<String>,
    pub empty: EmptyPolicy,
    pub data_field: Option<String>,
    pub max_task_bytes: usize,
}

impl MappingConfig {
    /// A stable description of everything that decides what a row becomes; `--resume`
    /// refuses to continue a log written under a different one.
    pub fn fingerprint(&self) -> String {
        format!(
            "op={:?};target={:?};company={:?};ref={:?};types={:?};exclude={:?};empty={:?};data_field={:?};max_task={}",
            self.op,
            self.target,
            self.company_id,
            self.ref_mode,
            self.types,
            self.exclude,
            self.empty,
            self.data_field,
            self.max_task_bytes
        )
    }
}

/// Why a row was not sent. The message names the column or field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject(pub String);

impl Reject {
    fn col(col: &str, msg: impl std::fmt::Display) -> Reject {
        Reject(format!("column \"{col}\": {msg}"))
    }
}

/// A part of a `--ref-template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Lit(String),
    Field(String),
}

/// Parses `order-{id}`: `{name}` is a field of the row, `{{` and `}}` are literal braces.
pub fn parse_template(t: &str) -> std::result::Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed '{{' in template {t:?}")),
                    }
                }
                if name.is_empty() {
                    return Err(format!("empty '{{}}' in template {t:?}"));
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Lit(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Field(name));
            }
            '}' => {
                return Err(format!(
                    "unmatched '}}' in template {t:?}; write '}}}}' for a brace"
                ))
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Lit(lit));
    }
    if !parts.iter().any(|p| matches!(p, TemplatePart::Field(_))) {
        return Err(format!(
            "template {t:?} names no field, so every row would get the same ref; use e.g. 'order-{{id}}'"
        ));
    }
    Ok(parts)
}

/// Checks a ref the way the server will (1 to 255 characters).
pub fn check_ref(r: &str) -> std::result::Result<(), Reject> {
    if r.is_empty() {
        return Err(Reject("ref is empty".into()));
    }
    let n = r.chars().count();
    if n > 255 {
        return Err(Reject(format!(
            "ref is {n} characters long; the limit is 255"
        )));
    }
    Ok(())
}

/// The start of every op: `{"id":"` (the id follows).
const OP_OPEN: &[u8] = br#"{"id":""#;

/// The fixed part of an op after its id, up to and excluding `,"ref"` / `,"data"`.
fn fixed_part(cfg: &MappingConfig, conv: Option<u64>) -> Vec<u8> {
    let mut v = Vec::with_capacity(96);
    v.extend_from_slice(br#"","type":""#);
    v.extend_from_slice(cfg.op.as_str().as_bytes());
    v.extend_from_slice(br#"","obj":"task""#);
    if let Some(c) = conv {
        write!(VecFmt(&mut v), r#","conv_id":{c}"#).ok();
    }
    if let Some(co) = &cfg.company_id {
        v.extend_from_slice(br#","company_id":"#);
        serde_json::to_writer(&mut v, co).expect("a Vec never fails");
    }
    v
}

/// `fmt::Write` into a byte vector, for `write!` of numbers.
struct VecFmt<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for VecFmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *buf, s).expect("a Vec never fails");
}

/// Parses a process id from a cell or a JSON field (number or numeric string).
fn parse_conv(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok().filter(|&c| c > 0)
}

// ---------------------------------------------------------------------------------------
// CSV

#[derive(Debug)]
enum CsvRef {
    Auto(String),
    Column(usize),
    Template(Vec<CsvTPart>),
    None,
}

#[derive(Debug)]
enum CsvTPart {
    Lit(String),
    Col(usize, String),
}

#[derive(Debug)]
struct CsvCol {
    name: String,
    /// `"name":`, escaped once.
    key: Vec<u8>,
    ty: ColType,
}

/// How every row of one CSV input becomes an op; built from its header.
#[derive(Debug)]
pub struct CsvPlan {
    fixed: Vec<u8>,
    conv_col: Option<(usize, String)>,
    reference: CsvRef,
    /// The `_czload_ref` column of a retry file: its value wins over an auto ref.
    retry_ref: Option<usize>,
    /// Data columns by position; `None` for excluded ones.
    cols: Vec<Option<CsvCol>>,
    n_fields: usize,
    empty: EmptyPolicy,
    max_task_bytes: usize,
}

impl CsvPlan {
    /// `header` is the list of column names; `file_name` seeds auto refs.
    pub fn new(cfg: &MappingConfig, header: &[String], file_name: &str) -> Result<CsvPlan> {
        let find = |name: &str, flag: &str| -> Result<usize> {
            header.iter().position(|h| h == name).ok_or_else(|| {
                Error::Usage(format!(
                    "{flag}: no column named {name:?} in the header of {file_name} (columns: {})",
                    header.join(", ")
                ))
            })
        };
        for (i, h) in header.iter().enumerate() {
            if h.is_empty() {
                return Err(Error::Usage(format!(
                    "{file_name}: column {} of the header has no name; name it, or use --no-header",
                    i + 1
                )));
            }
            if let Some(j) = header[..i].iter().position(|x| x == h) {
                return Err(Error::Usage(format!(
                    "{file_name}: columns {} and {} of the header are both named {h:?}; task parameters must be unique",
                    j + 1,
                    i + 1
                )));
            }
        }
        for (name, _) in &cfg.types {
            find(name, "--type")?;
        }
        for name in &cfg.exclude {
            find(name, "--exclude")?;
        }
        let retry_ref = header.iter().position(|h| h == REF_COLUMN);
        let reference = match &cfg.ref_mode {
            RefMode::Auto => CsvRef::Auto(format!("{file_name}:")),
            RefMode::None => CsvRef::None,
            RefMode::Column(c) => CsvRef::Column(find(c, "--ref-column")?),
            RefMode::Template(t) => {
                let parts =
                    parse_template(t).map_err(|e| Error::Usage(format!("--ref-template: {e}")))?;
                let mut out = Vec::new();
                for p in parts {
                    out.push(match p {
                        TemplatePart::Lit(s) => CsvTPart::Lit(s),
                        TemplatePart::Field(f) => CsvTPart::Col(find(&f, "--ref-template")?, f),
                    });
                }
                CsvRef::Template(out)
            }
        };
        let (conv, conv_col) = match &cfg.target {
            Target::Conv(c) => (Some(*c), None),
            Target::Column(c) => (None, Some((find(c, "--conv-id-column")?, c.clone()))),
        };
        let cols = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let excluded = cfg.exclude.contains(name)
                    || Some(i) == retry_ref
                    || conv_col.as_ref().is_some_and(|(c, _)| *c == i);
                if excluded {
                    return None;
                }
                let ty = cfg
                    .types
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map_or(ColType::String, |(_, t)| *t);
                let mut key = Vec::with_capacity(name.len() + 3);
                push_json_str(&mut key, name);
                key.push(b':');
                Some(CsvCol {
                    name: name.clone(),
                    key,
                    ty,
                })
            })
            .collect();
        Ok(CsvPlan {
            fixed: fixed_part(cfg, conv),
            conv_col,
            reference,
            retry_ref,
            cols,
            n_fields: header.len(),
            empty: cfg.empty,
            max_task_bytes: cfg.max_task_bytes,
        })
    }

    /// Whether refs are generated (so a retry file must carry them).
    pub fn auto_ref(&self) -> bool {
        matches!(self.reference, CsvRef::Auto(_))
    }

    /// Writes the op for `rec` at the end of `buf` and its ref into `ref_out` (cleared
    /// first; left empty with `--no-ref`). On a `Reject`, `buf` may hold a partial op: the
    /// caller truncates it.
    pub fn write_op(
        &self,
        rec: &csv::ByteRecord,
        id: u64,
        row: u64,
        buf: &mut Vec<u8>,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject> {
        if rec.len() != self.n_fields {
            return Err(Reject(format!(
                "row has {} fields, the header has {}",
                rec.len(),
                self.n_fields
            )));
        }
        ref_out.clear();
        let retry_ref = self.retry_ref.map(|i| &rec[i]).filter(|r| !r.is_empty());
        match (&self.reference, retry_ref) {
            (CsvRef::Auto(_), Some(r)) => ref_out.push_str(
                std::str::from_utf8(r).map_err(|_| Reject::col(REF_COLUMN, "not valid UTF-8"))?,
            ),
            (CsvRef::Auto(prefix), None) => {
                ref_out.push_str(prefix);
                ref_out.push_str(itoa::Buffer::new().format(row));
            }
            (CsvRef::Column(i), _) => {
                let name = self.col_name(*i);
                ref_out.push_str(
                    std::str::from_utf8(&rec[*i])
                        .map_err(|_| Reject::col(name, "not valid UTF-8"))?,
                );
            }
            (CsvRef::Template(parts), _) => {
                for p in parts {
                    match p {
                        CsvTPart::Lit(s) => ref_out.push_str(s),
                        CsvTPart::Col(i, name) => ref_out.push_str(
                            std::str::from_utf8(&rec[*i])
                                .map_err(|_| Reject::col(name, "not valid UTF-8"))?,
                        ),
                    }
                }
            }
            (CsvRef::None, _) => {}
        }
        if !matches!(self.reference, CsvRef::None) {
            check_ref(ref_out)?;
        }

        buf.extend_from_slice(OP_OPEN);
        buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        buf.extend_from_slice(&self.fixed);
        if let Some((i, name)) = &self.conv_col {
            let conv = std::str::from_utf8(&rec[*i])
                .ok()
                .and_then(parse_conv)
                .ok_or_else(|| {
                    Reject::col(
                        name,
                        format!(
                            "{:?} is not a process id",
                            String::from_utf8_lossy(&rec[*i])
                        ),
                    )
                })?;
            buf.extend_from_slice(br#","conv_id":"#);
            buf.extend_from_slice(itoa::Buffer::new().format(conv).as_bytes());
        }
        if !ref_out.is_empty() {
            buf.extend_from_slice(br#","ref":"#);
            push_json_str(buf, ref_out);
        }
        buf.extend_from_slice(br#","data":{"#);
        let data_start = buf.len() - 1;
        let mut first = true;
        for (col, field) in self.cols.iter().zip(rec.iter()) {
            let Some(col) = col else { continue };
            let text = std::str::from_utf8(field).map_err(|e| {
                Reject::col(
                    &col.name,
                    format!("not valid UTF-8 (byte {} of the cell)", e.valid_up_to() + 1),
                )
            })?;
            if text.is_empty() {
                match (self.empty, col.ty) {
                    (EmptyPolicy::Omit, _) => continue,
                    (EmptyPolicy::Keep, ColType::String) => {}
                    (EmptyPolicy::Keep, _) => continue,
                    (EmptyPolicy::Null, _) => {
                        sep(buf, &mut first);
                        buf.extend_from_slice(&col.key);
                        buf.extend_from_slice(b"null");
                        continue;
                    }
                }
            }
            sep(buf, &mut first);
            buf.extend_from_slice(&col.key);
            write_typed(buf, text, col.ty).map_err(|msg| Reject::col(&col.name, msg))?;
        }
        buf.push(b'}');
        let data_len = buf.len() - data_start;
        if data_len > self.max_task_bytes {
            return Err(Reject(format!(
                "task data is {data_len} bytes; the limit is {} (--max-task-bytes)",
                self.max_task_bytes
            )));
        }
        buf.push(b'}');
        Ok(())
    }

    fn col_name(&self, i: usize) -> &str {
        self.cols
            .get(i)
            .and_then(|c| c.as_ref())
            .map_or("ref", |c| c.name.as_str())
    }
}

fn sep(buf: &mut Vec<u8>, first: &mut bool) {
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
            if v.unsigned_abs() > MAX_SAFE_INT as u64 {
                return Err(format!(
                    "{v} is beyond 2^53 and would lose precision; load it as a string (--type COL:string)"
                ));
            }
            buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
        ColType::Number => {
            let t = text.trim();
            if let Ok(v) = t.parse::<i64>() {
                if v.unsigned_abs() > MAX_SAFE_INT as u64 {
                    return Err(format!(
                        "{v} is beyond 2^53 and would lose precision; load it as a string (--type COL:string)"
                    ));
                }
                buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                return Ok(());
            }
            let v: f64 = t.parse().map_err(|_| {
                if t.contains(',') {
                    format!("{t:?} is not a number (use '.' as the decimal separator)")
                } else {
                    format!("{t:?} is not a number")
                }
            })?;
            if !v.is_finite() {
                return Err(format!("{t:?} is not a finite number"));
            }
            if v.abs() > MAX_SAFE_INT as f64 {
                return Err(format!(
                    "{t} is beyond 2^53 and would lose precision; load it as a string (--type COL:string)"
                ));
            }
            buf.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        }
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
            serde_json::from_str::<IgnoredAny>(t).map_err(|e| format!("not valid JSON: {e}"))?;
            if has_lone_surrogate(t.as_bytes()) {
                return Err(LONE_SURROGATE.into());
            }
            buf.extend_from_slice(t.as_bytes());
        }
    }
    Ok(())
}

const LONE_SURROGATE: &str =
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

// ---------------------------------------------------------------------------------------
// NDJSON

#[derive(Debug)]
enum NdRef {
    Auto(String),
    Field(String),
    Template(Vec<TemplatePart>),
    None,
}

/// How every line of one NDJSON input becomes an op.
#[derive(Debug)]
pub struct NdjsonPlan {
    fixed: Vec<u8>,
    conv_field: Option<String>,
    reference: NdRef,
    data_field: Option<String>,
    exclude: Vec<String>,
    max_task_bytes: usize,
}

/// The top-level fields of one line, borrowed from it: values stay raw JSON text.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    let val: &'de RawValue = m.next_value()?;
                    v.push((k, val));
                }
                Ok(TopLevel(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> TopLevel<'a> {
    fn get(&self, k: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| *v)
    }
}

/// A top-level value as ref text: strings unquoted, numbers and booleans as written.
fn scalar_text(v: &RawValue, out: &mut String) -> std::result::Result<(), &'static str> {
    let raw = v.get();
    match raw.as_bytes().first() {
        Some(b'"') => {
            let s: Cow<str> = serde_json::from_str(raw).map_err(|_| "a bad string")?;
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
    pub fn new(cfg: &MappingConfig, file_name: &str) -> Result<NdjsonPlan> {
        if !cfg.types.is_empty() {
            return Err(Error::Usage(
                "--type applies to CSV input; NDJSON values keep their JSON types".into(),
            ));
        }
        let reference = match &cfg.ref_mode {
            RefMode::Auto => NdRef::Auto(format!("{file_name}:")),
            RefMode::None => NdRef::None,
            RefMode::Column(c) => NdRef::Field(c.clone()),
            RefMode::Template(t) => NdRef::Template(
                parse_template(t).map_err(|e| Error::Usage(format!("--ref-template: {e}")))?,
            ),
        };
        let (conv, conv_field) = match &cfg.target {
            Target::Conv(c) => (Some(*c), None),
            Target::Column(c) => (None, Some(c.clone())),
        };
        Ok(NdjsonPlan {
            fixed: fixed_part(cfg, conv),
            conv_field,
            reference,
            data_field: cfg.data_field.clone(),
            exclude: cfg.exclude.clone(),
            max_task_bytes: cfg.max_task_bytes,
        })
    }

    pub fn auto_ref(&self) -> bool {
        matches!(self.reference, NdRef::Auto(_))
    }

    /// As `CsvPlan::write_op`, for one line (without its line end).
    pub fn write_op(
        &self,
        line: &[u8],
        id: u64,
        row: u64,
        buf: &mut Vec<u8>,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject> {
        let top: TopLevel = serde_json::from_slice(line).map_err(|e| {
            if e.is_data() {
                Reject("the line is not a JSON object".into())
            } else {
                Reject(format!("not valid JSON: {e}"))
            }
        })?;
        ref_out.clear();
        let retry_ref = top.get(REF_COLUMN);
        match (&self.reference, retry_ref) {
            (NdRef::Auto(_), Some(r)) => scalar_text(r, ref_out)
                .map_err(|what| Reject(format!("field \"{REF_COLUMN}\" is {what}")))?,
            (NdRef::Auto(prefix), None) => {
                ref_out.push_str(prefix);
                ref_out.push_str(itoa::Buffer::new().format(row));
            }
            (NdRef::Field(f), _) => {
                let v = top
                    .get(f)
                    .ok_or_else(|| Reject(format!("field \"{f}\" (--ref-column) is missing")))?;
                scalar_text(v, ref_out)
                    .map_err(|what| Reject(format!("field \"{f}\" (--ref-column) is {what}")))?;
            }
            (NdRef::Template(parts), _) => {
                for p in parts {
                    match p {
                        TemplatePart::Lit(s) => ref_out.push_str(s),
                        TemplatePart::Field(f) => {
                            let v = top.get(f).ok_or_else(|| {
                                Reject(format!("field \"{f}\" (--ref-template) is missing"))
                            })?;
                            scalar_text(v, ref_out).map_err(|what| {
                                Reject(format!("field \"{f}\" (--ref-template) is {what}"))
                            })?;
                        }
                    }
                }
            }
            (NdRef::None, _) => {}
        }
        if !matches!(self.reference, NdRef::None) {
            check_ref(ref_out)?;
        }

        buf.extend_from_slice(OP_OPEN);
        buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        buf.extend_from_slice(&self.fixed);
        if let Some(f) = &self.conv_field {
            let v = top
                .get(f)
                .ok_or_else(|| Reject(format!("field \"{f}\" (--conv-id-column) is missing")))?;
            let mut s = String::new();
            let conv = scalar_text(v, &mut s)
                .ok()
                .and_then(|_| parse_conv(&s))
                .ok_or_else(|| Reject(format!("field \"{f}\": {} is not a process id", v.get())))?;
            buf.extend_from_slice(br#","conv_id":"#);
            buf.extend_from_slice(itoa::Buffer::new().format(conv).as_bytes());
        }
        if !ref_out.is_empty() {
            buf.extend_from_slice(br#","ref":"#);
            push_json_str(buf, ref_out);
        }
        buf.extend_from_slice(br#","data":"#);
        let data_start = buf.len();
        match &self.data_field {
            Some(f) => {
                let v = top
                    .get(f)
                    .ok_or_else(|| Reject(format!("field \"{f}\" (--data-field) is missing")))?;
                if !v.get().starts_with('{') {
                    return Err(Reject(format!(
                        "field \"{f}\" (--data-field) is not an object"
                    )));
                }
                buf.extend_from_slice(v.get().as_bytes());
            }
            None => {
                let drop_key = |k: &str| k == REF_COLUMN || self.exclude.iter().any(|e| e == k);
                if top.0.iter().any(|(k, _)| drop_key(k)) {
                    // Rare (a retry file, or --exclude): rebuild the object without them.
                    buf.push(b'{');
                    let mut first = true;
                    for (k, v) in top.0.iter().filter(|(k, _)| !drop_key(k)) {
                        sep(buf, &mut first);
                        push_json_str(buf, k);
                        buf.push(b':');
                        buf.extend_from_slice(v.get().as_bytes());
                    }
                    buf.push(b'}');
                } else {
                    // The common case: the line is the data, validated but not rebuilt.
                    buf.extend_from_slice(trim_ascii(line));
                }
            }
        }
        if has_lone_surrogate(&buf[data_start..]) {
            return Err(Reject(format!("the data {LONE_SURROGATE}")));
        }
        let data_len = buf.len() - data_start;
        if data_len > self.max_task_bytes {
            return Err(Reject(format!(
                "task data is {data_len} bytes; the limit is {} (--max-task-bytes)",
                self.max_task_bytes
            )));
        }
        buf.push(b'}');
        Ok(())
    }
}

pub fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}
