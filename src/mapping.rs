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

/// Deepest nesting accepted in task data. serde_json and many other parsers refuse 128
/// levels or more by default; a task nested that deep would likely be refused or crash a
/// consumer downstream, so it is rejected here with a clear reason. 100 keeps CSV `json`
/// cells (checked by serde_json too) and NDJSON lines on the same rule and message.
pub const MAX_DEPTH: usize = 100;

/// Whether valid JSON `b` nests arrays/objects deeper than `MAX_DEPTH`. Only called on
/// text long enough to be that deep (two bytes per level), so typical rows skip the scan.
fn too_deep(b: &[u8]) -> Option<usize> {
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

fn depth_reject(levels: usize) -> Reject {
    Reject(format!(
        "the data is nested {levels} levels deep; the limit is {MAX_DEPTH}"
    ))
}

/// Checks a ref the way the server will (1 to 255 characters).
pub fn check_ref(r: &str) -> std::result::Result<(), Reject> {
    if r.is_empty() {
        return Err(Reject("ref is empty".into()));
    }
    // A string of at most 255 bytes has at most 255 characters: skip the count.
    if r.len() <= 255 {
        return Ok(());
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
        push_conv(&mut v, c);
    }
    if let Some(co) = &cfg.company_id {
        v.extend_from_slice(br#","company_id":"#);
        serde_json::to_writer(&mut v, co).expect("a Vec never fails");
    }
    v
}

fn push_conv(buf: &mut Vec<u8>, conv: u64) {
    buf.extend_from_slice(br#","conv_id":"#);
    buf.extend_from_slice(itoa::Buffer::new().format(conv).as_bytes());
}

/// The end of building a row's ref, for both plans. A ref that could not be built must not
/// be half-reported (`order-5-`), so it is cleared; one that was built is checked.
fn settle_ref(
    built: std::result::Result<(), Reject>,
    has_ref: bool,
    ref_out: &mut String,
) -> std::result::Result<(), Reject> {
    if let Err(e) = built {
        ref_out.clear();
        return Err(e);
    }
    if has_ref {
        check_ref(ref_out)?;
    }
    Ok(())
}

/// An op up to its data: `{"id":"N"`, the plan's fixed part, the row's process when it
/// comes from the row, its ref when it has one, then `,"data":`.
fn write_head(buf: &mut Vec<u8>, id: u64, fixed: &[u8], conv: Option<u64>, reference: &str) {
    buf.extend_from_slice(OP_OPEN);
    buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    buf.extend_from_slice(fixed);
    if let Some(c) = conv {
        push_conv(buf, c);
    }
    if !reference.is_empty() {
        buf.extend_from_slice(br#","ref":"#);
        push_json_str(buf, reference);
    }
    buf.extend_from_slice(br#","data":"#);
}

/// The data of one task must fit `--max-task-bytes`.
fn check_task_size(data_len: usize, max: usize) -> std::result::Result<(), Reject> {
    if data_len > max {
        return Err(Reject(format!(
            "task data is {data_len} bytes; the limit is {max} (--max-task-bytes)"
        )));
    }
    Ok(())
}

fn push_json_str(buf: &mut Vec<u8>, s: &str) {
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
fn push_plain(buf: &mut Vec<u8>, b: &[u8]) {
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
        ref_out.clear();
        if rec.len() != self.n_fields {
            // A quote that is never closed swallows the line ends after it.
            let hint = if rec.len() < self.n_fields && rec.iter().any(|f| f.contains(&b'\n')) {
                " (a quoted field runs on across lines: is a closing quote missing?)"
            } else {
                ""
            };
            return Err(Reject(format!(
                "row has {} fields, the header has {}{hint}",
                rec.len(),
                self.n_fields
            )));
        }
        let retry_ref = self.retry_ref.map(|i| &rec[i]).filter(|r| !r.is_empty());
        // A ref that cannot be built must not be half-reported (`order-5-`).
        let built = (|| -> std::result::Result<(), Reject> {
            match (&self.reference, retry_ref) {
                (CsvRef::Auto(_), Some(r)) => ref_out.push_str(
                    std::str::from_utf8(r)
                        .map_err(|_| Reject::col(REF_COLUMN, "not valid UTF-8"))?,
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
            Ok(())
        })();
        settle_ref(built, !matches!(self.reference, CsvRef::None), ref_out)?;
        let conv = match &self.conv_col {
            Some((i, name)) => Some(
                std::str::from_utf8(&rec[*i])
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
                    })?,
            ),
            None => None,
        };
        write_head(buf, id, &self.fixed, conv, ref_out);
        let data_start = buf.len();
        buf.push(b'{');
        let mut first = true;
        for (col, field) in self.cols.iter().zip(rec.iter()) {
            let Some(col) = col else { continue };
            if col.ty == ColType::String && !field.is_empty() && is_plain(field) {
                // The common cell: no UTF-8 check or escaping needed (see `is_plain`).
                sep(buf, &mut first);
                buf.extend_from_slice(&col.key);
                push_plain(buf, field);
                continue;
            }
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
        check_task_size(buf.len() - data_start, self.max_task_bytes)?;
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
    /// The fields whose values the op needs (ref, process, data field, retry ref).
    wanted: Vec<String>,
    max_task_bytes: usize,
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
        let mut wanted = vec![REF_COLUMN.to_string()];
        match &reference {
            NdRef::Field(f) => wanted.push(f.clone()),
            NdRef::Template(parts) => wanted.extend(parts.iter().filter_map(|p| match p {
                TemplatePart::Field(f) => Some(f.clone()),
                TemplatePart::Lit(_) => None,
            })),
            NdRef::Auto(_) | NdRef::None => {}
        }
        wanted.extend(conv_field.iter().cloned());
        wanted.extend(cfg.data_field.iter().cloned());
        Ok(NdjsonPlan {
            fixed: fixed_part(cfg, conv),
            conv_field,
            reference,
            data_field: cfg.data_field.clone(),
            exclude: cfg.exclude.clone(),
            wanted,
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
        // A rejected line must not report the previous line's ref.
        ref_out.clear();
        // One UTF-8 check of the whole line, so that skipped values are checked too.
        let text = std::str::from_utf8(line).map_err(|e| {
            Reject(format!(
                "not valid JSON: invalid UTF-8 at byte {}",
                e.valid_up_to() + 1
            ))
        })?;
        let how = Scan {
            all: false,
            wanted: &self.wanted,
            exclude: &self.exclude,
        };
        let mut top = scan(text, how)?;
        if top.dropped && self.data_field.is_none() {
            // Rare (a retry file, or --exclude): `data` is rebuilt from every field.
            top = scan(text, Scan { all: true, ..how })?;
        }
        let retry_ref = top.get(REF_COLUMN);
        // A ref that cannot be built must not be half-reported (`order-5-`).
        let built = (|| -> std::result::Result<(), Reject> {
            match (&self.reference, retry_ref) {
                (NdRef::Auto(_), Some(r)) => scalar_text(r, ref_out)
                    .map_err(|what| Reject(format!("field \"{REF_COLUMN}\" is {what}")))?,
                (NdRef::Auto(prefix), None) => {
                    ref_out.push_str(prefix);
                    ref_out.push_str(itoa::Buffer::new().format(row));
                }
                (NdRef::Field(f), _) => {
                    let v = top.get(f).ok_or_else(|| {
                        Reject(format!("field \"{f}\" (--ref-column) is missing"))
                    })?;
                    scalar_text(v, ref_out).map_err(|what| {
                        Reject(format!("field \"{f}\" (--ref-column) is {what}"))
                    })?;
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
            Ok(())
        })();
        settle_ref(built, !matches!(self.reference, NdRef::None), ref_out)?;
        let conv = match &self.conv_field {
            Some(f) => {
                let v = top.get(f).ok_or_else(|| {
                    Reject(format!("field \"{f}\" (--conv-id-column) is missing"))
                })?;
                let mut s = String::new();
                let conv = scalar_text(v, &mut s)
                    .ok()
                    .and_then(|_| parse_conv(&s))
                    .ok_or_else(|| {
                        Reject(format!("field \"{f}\": {} is not a process id", v.get()))
                    })?;
                Some(conv)
            }
            None => None,
        };
        write_head(buf, id, &self.fixed, conv, ref_out);
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
                if top.dropped {
                    // Rare (a retry file, or --exclude): rebuild the object without them.
                    buf.push(b'{');
                    let mut first = true;
                    for (k, v) in top.fields.iter().filter(|(k, _)| !drop_key(k)) {
                        sep(buf, &mut first);
                        push_json_str(buf, k);
                        buf.push(b':');
                        buf.extend_from_slice(v.get().as_bytes());
                    }
                    buf.push(b'}');
                } else {
                    // The common case: the line is the data, validated but not rebuilt.
                    buf.extend_from_slice(line.trim_ascii());
                }
            }
        }
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

    fn cfg() -> MappingConfig {
        MappingConfig {
            op: OpKind::Create,
            target: Target::Conv(555),
            company_id: None,
            ref_mode: RefMode::Auto,
            types: vec![("n".into(), ColType::Integer)],
            exclude: Vec::new(),
            empty: EmptyPolicy::Keep,
            data_field: None,
            max_task_bytes: 131_072,
        }
    }

    #[test]
    fn csv_op_is_the_same_json_whether_cells_take_the_fast_path_or_not() {
        let header: Vec<String> = ["name", "note", "n"].map(String::from).to_vec();
        let plan = CsvPlan::new(&cfg(), &header, "f.csv").unwrap();
        let cells = [
            ["Customer 000017", "plain text of some length", "7"],
            ["say \"hi\"", "tab\tand ünï", "-3"],
            ["", "x", ""],
        ];
        for (i, row) in cells.iter().enumerate() {
            let rec = csv::ByteRecord::from(row.to_vec());
            let (mut buf, mut r) = (Vec::new(), String::new());
            plan.write_op(&rec, 9, i as u64 + 1, &mut buf, &mut r)
                .unwrap();
            let got: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            let mut data = serde_json::Map::new();
            data.insert("name".into(), row[0].into());
            data.insert("note".into(), row[1].into());
            if !row[2].is_empty() {
                data.insert("n".into(), row[2].parse::<i64>().unwrap().into());
            }
            let want = serde_json::json!({
                "id": "9", "type": "create", "obj": "task", "conv_id": 555,
                "ref": format!("f.csv:{}", i + 1), "data": data,
            });
            assert_eq!(got, want);
        }
    }

    #[test]
    fn invalid_utf8_in_a_cell_is_still_rejected() {
        let header: Vec<String> = ["name"].map(String::from).to_vec();
        let plan = CsvPlan::new(&cfg_no_types(), &header, "f.csv").unwrap();
        let rec = csv::ByteRecord::from(vec![&b"ab\xffcd"[..]]);
        let err = plan
            .write_op(&rec, 1, 1, &mut Vec::new(), &mut String::new())
            .unwrap_err();
        assert!(err.0.contains("not valid UTF-8"), "{}", err.0);
    }

    fn cfg_no_types() -> MappingConfig {
        MappingConfig {
            types: Vec::new(),
            ..cfg()
        }
    }

    #[test]
    fn refs_are_checked_in_characters() {
        assert!(check_ref(&"é".repeat(255)).is_ok());
        assert!(check_ref(&"a".repeat(256)).is_err());
        assert!(check_ref("").is_err());
    }

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
}
