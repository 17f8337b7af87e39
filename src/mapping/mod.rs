//! Record -> operation.
//!
//! In: one record of an input, with its row number: named fields (`csv.rs`: CSV, and any
//! delimited format) or a JSON object's text (`ndjson.rs`: an NDJSON line, or any source of
//! JSON objects). Out: the operation's JSON written straight into the request body being
//! built (no `serde_json::Value` tree), plus its ref, or a `Reject` naming the column and
//! the problem; and the row as the retry file holds it.
//!
//! Everything that depends only on the header (column positions, types, pre-escaped
//! keys, the fixed part of each op) is resolved once in `CsvPlan::new` /
//! `NdjsonPlan::new`, before the first row. What both kinds share: the ref (`refs.rs`),
//! JSON text (`json.rs`), the config types and the op's head (here).

mod csv;
mod edits;
mod json;
mod ndjson;
mod refs;

pub use self::csv::{CsvPlan, CsvRetry};
pub use self::edits::Edits;
pub use self::json::{
    has_lone_surrogate, is_plain, write_json_str, write_typed, MAX_DEPTH, MAX_SAFE_INT,
};
pub use self::ndjson::{NdjsonPlan, ObjectRetry};
pub use self::refs::{check_ref, parse_template, TemplatePart, REF_COLUMN};

use self::json::push_json_str;
use crate::error::Result;
pub use crate::op::OpKind;
use crate::shard::{RowShards, Shard};
use crate::source::{Opened, Records};

/// How the records of one kind become ops: [`CsvPlan`] (named fields), [`NdjsonPlan`]
/// (JSON objects).
pub trait Plan {
    /// The record as its source hands it over.
    type Record: ?Sized;

    /// Writes the op for `rec` at the end of `buf` and its ref into `ref_out` (cleared
    /// first; left empty with `--no-ref`). On a `Reject`, `buf` may hold a partial op: the
    /// caller truncates it.
    fn write_op(
        &self,
        rec: &Self::Record,
        id: u64,
        row: u64,
        buf: &mut Vec<u8>,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject>;

    /// Writes the ref of `rec` into `ref_out` (cleared first), as `write_op` would, and
    /// nothing else: `--shard` gives a row to a copy by its ref before the rest of the
    /// mapping is paid for. A `Reject` (the ref cannot be built) leaves `ref_out` empty.
    fn write_ref(
        &self,
        rec: &Self::Record,
        row: u64,
        ref_out: &mut String,
    ) -> std::result::Result<(), Reject>;

    /// `--shard`: a row's shard from its row number and field count alone, when its ref
    /// depends on nothing else (generated refs, `--no-ref`), so that other copies' rows
    /// can be passed over unread ([`Records::pass_while`]); `None` when the ref reads
    /// the record. The same shard as `write_ref` gives (the tests compare).
    fn row_shards(&self, _shard: Shard) -> Option<RowShards> {
        None
    }
}

/// How the rows of one input go to its retry file: [`CsvRetry`], [`ObjectRetry`].
pub trait RetryRows {
    type Record: ?Sized;

    /// The retry file's first line, when the kind has one (a CSV header).
    fn header(&mut self) -> Option<Vec<u8>>;

    /// Appends `rec` as the retry file holds it. `reference` is the ref it was sent under:
    /// a generated one (`{file}:{row}`) goes into the row, so loading the retry file reuses
    /// it (exactly once across runs).
    fn write(&mut self, rec: &Self::Record, row: u64, reference: &str, out: &mut Vec<u8>);
}

/// One input's records with the plan and retry rows for their kind: what the reader
/// loop runs.
pub enum Mapped {
    Fields(
        Box<dyn Records<Record = ::csv::ByteRecord>>,
        CsvPlan,
        Box<CsvRetry>,
    ),
    Objects(Box<dyn Records<Record = [u8]>>, NdjsonPlan, ObjectRetry),
}

impl Mapped {
    /// Builds the mapping of an opened input (from its header, for named fields): a flag
    /// naming no column fails here, before any row is read. `file_name` names the input
    /// in errors; generated refs are `{ref_name}:{row}`.
    pub fn new(
        cfg: &MappingConfig,
        opened: Opened,
        file_name: &str,
        ref_name: &str,
    ) -> Result<Mapped> {
        Ok(match opened {
            Opened::Fields(src, header) => {
                let mut plan = CsvPlan::new(cfg, &header.names, file_name)?;
                plan.name_refs(ref_name);
                let retry = Box::new(CsvRetry::new(&plan, header));
                Mapped::Fields(src, plan, retry)
            }
            Opened::Objects(src) => {
                let mut plan = NdjsonPlan::new(cfg, file_name)?;
                plan.name_refs(ref_name);
                let retry = ObjectRetry::new(&plan, ref_name);
                Mapped::Objects(src, plan, retry)
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    String,
    Number,
    /// A `number` column under `--decimal-comma`: `12,50` is 12.5.
    NumberComma,
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

    /// The name `--type` takes.
    pub fn name(self) -> &'static str {
        match self {
            ColType::String => "string",
            // `--decimal-comma` makes every `number` column this one (`flags` says so).
            ColType::Number | ColType::NumberComma => "number",
            ColType::Integer => "integer",
            ColType::Bool => "bool",
            ColType::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyPolicy {
    /// String columns get "", typed columns leave the key out.
    Keep,
    Omit,
    Null,
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
    /// `--alias NAME`: `obj_alias` (with `company_id`) in place of `conv_id`.
    Alias(String),
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
    /// `--set`, `--rename`.
    pub edits: Edits,
}

impl MappingConfig {
    /// A stable description of everything that decides what a row becomes; `--resume`
    /// refuses to continue a log written under a different one.
    pub fn fingerprint(&self) -> String {
        format!(
            "op={:?};target={:?};company={:?};ref={:?};types={:?};exclude={:?};empty={:?};data_field={:?};max_task={}{}",
            self.op,
            self.target,
            self.company_id,
            self.ref_mode,
            self.types,
            self.exclude,
            self.empty,
            self.data_field,
            self.max_task_bytes,
            // Only when used, so that logs written before these flags still resume.
            if self.edits == Edits::default() {
                String::new()
            } else {
                format!(";set={:?};rename={:?}", self.edits.set, self.edits.rename)
            }
        )
    }
}

impl MappingConfig {
    /// The mapping as the flags that make it, one item each, as typed (`--op create`,
    /// `--conv-id 555`, `--type amount:number`, `--set batch=1`): the manifest keeps them
    /// so that a refused resume or merge names the flag that differs. Equal flags are an
    /// equal mapping (`fingerprint` stays the check of last resort).
    pub fn flags(&self) -> Vec<String> {
        let raw = self.op.rows_are_ops;
        let mut f = vec![format!("--op {}", self.op.name)];
        match &self.target {
            Target::Conv(c) => f.push(format!("--conv-id {c}")),
            // Raw ops name their own processes.
            Target::Column(_) if raw => {}
            Target::Column(c) => f.push(format!("--conv-id-column {c}")),
            Target::Alias(a) => f.push(format!("--alias {a}")),
        }
        if let Some(c) = &self.company_id {
            f.push(format!("--company-id {c}"));
        }
        match &self.ref_mode {
            // Per input: `--ref-prefix` (sink/manifest.rs); raw ops carry their own.
            RefMode::Auto => {}
            RefMode::Column(_) if raw => {}
            RefMode::Column(c) => f.push(format!("--ref-column {c}")),
            RefMode::Template(t) => f.push(format!("--ref-template {t}")),
            RefMode::None => f.push("--no-ref".into()),
        }
        f.extend(
            self.types
                .iter()
                .map(|(c, t)| format!("--type {c}:{}", t.name())),
        );
        if self.types.iter().any(|(_, t)| *t == ColType::NumberComma) {
            f.push("--decimal-comma".into());
        }
        f.extend(self.exclude.iter().map(|c| format!("--exclude {c}")));
        f.push(format!(
            "--empty {}",
            match self.empty {
                EmptyPolicy::Keep => "keep",
                EmptyPolicy::Omit => "omit",
                EmptyPolicy::Null => "null",
            }
        ));
        if let Some(d) = &self.data_field {
            f.push(format!("--data-field {d}"));
        }
        f.push(format!("--max-task-bytes {}", self.max_task_bytes));
        f.extend(self.edits.set.iter().map(|(k, t, v)| match t {
            ColType::String => format!("--set {k}={v}"),
            t => format!("--set {k}:{}={v}", t.name()),
        }));
        f.extend(
            self.edits
                .rename
                .iter()
                .map(|(o, n)| format!("--rename {o}:{n}")),
        );
        f
    }
}

/// Why a row was not sent. The message names the column or field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject(pub String);

impl Reject {
    pub(crate) fn col(col: &str, msg: impl std::fmt::Display) -> Reject {
        Reject(format!("column \"{col}\": {msg}"))
    }
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
    if let Target::Alias(a) = &cfg.target {
        v.extend_from_slice(br#","obj_alias":"#);
        serde_json::to_writer(&mut v, a).expect("a Vec never fails");
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

/// Parses a process id from a cell or a JSON field (number or numeric string).
fn parse_conv(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok().filter(|&c| c > 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Settings for the plans' tests: auto refs into process 555, column `n` an integer.
    pub(crate) fn cfg() -> MappingConfig {
        MappingConfig {
            op: OpKind::CREATE,
            target: Target::Conv(555),
            company_id: None,
            ref_mode: RefMode::Auto,
            types: vec![("n".into(), ColType::Integer)],
            exclude: Vec::new(),
            empty: EmptyPolicy::Keep,
            data_field: None,
            max_task_bytes: 131_072,
            edits: Edits::default(),
        }
    }

    pub(crate) fn cfg_no_types() -> MappingConfig {
        MappingConfig {
            types: Vec::new(),
            ..cfg()
        }
    }
}
