//! `czload check` and `load --check`: does the mapping fit the process, before anything
//! is created?
//!
//! In: a checked `LoadConfig` (the flags of `load`) and how many rows to sample. It signs
//! one request with two read-only ops (docs/protocol.md, Process metadata): `show conv`
//! (the process exists, is active, the key's rights) and `list conv_params` (the declared
//! parameters), and maps the first rows of the inputs with the plans `load` uses, so what
//! is inspected is exactly the data that would be sent. Out: a [`CheckReport`] (problems,
//! each naming the flag that fixes it; warnings; notes), or an `Err` when the check
//! cannot be made (no answer, authentication, no such process: the server's words).
//!
//! Where the answer's shape is unknown, the fields are looked for at the top of the op's
//! answer and then under its `data`; a `required` flag is taken from `flags` or from a
//! boolean `required`.

use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::mapping::{Mapped, Plan};
use crate::source::Records;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What the check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub conv: u64,
    pub title: Option<String>,
    /// Rows mapped and inspected.
    pub rows: u64,
    /// Misfits: the load would be refused or would create wrong tasks.
    pub problems: Vec<String>,
    /// Accepted by Corezoid, but maybe not meant.
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn fits(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as lines for the user.
    pub fn render(&self) -> String {
        let mut s = format!(
            "czload check: process {}{}, {} rows mapped\n",
            self.conv,
            self.title
                .as_deref()
                .map(|t| format!(" ({t:?})"))
                .unwrap_or_default(),
            self.rows
        );
        for (tag, list) in [
            ("problem", &self.problems),
            ("warning", &self.warnings),
            ("note", &self.notes),
        ] {
            for l in list {
                s.push_str(&format!("{tag}: {l}\n"));
            }
        }
        if self.fits() {
            s.push_str("czload check: the mapping fits\n");
        } else {
            s.push_str(&format!(
                "czload check: the mapping does not fit ({} problems)\n",
                self.problems.len()
            ));
        }
        s
    }
}

/// Runs the check against the server `cfg.send` names.
pub async fn check(cfg: &LoadConfig, rows: usize) -> Result<CheckReport> {
    let conv = match &cfg.mapping.target {
        crate::mapping::Target::Conv(c) => *c,
        crate::mapping::Target::Column(_) | crate::mapping::Target::Alias(_) => return Err(Error::Usage(
            "check compares the mapping with one process: pass --conv-id N, not --conv-id-column or --alias"
                .into(),
        )),
    };
    if cfg.mapping.op.rows_are_ops {
        return Err(Error::Usage(
            "check compares task data with a process's parameters; --op raw sends ops as written, so there is nothing to compare".into(),
        ));
    }
    let (show, params) = fetch(cfg, conv).await?;
    let mut report = CheckReport {
        conv,
        title: field(&show, "title")
            .and_then(Value::as_str)
            .map(String::from),
        ..CheckReport::default()
    };
    judge_process(&show, cfg, &mut report);
    let sample = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || sample(&cfg, rows))
            .await
            .map_err(|e| Error::Other(format!("internal error while reading: {e}")))??
    };
    report.rows = sample.rows;
    report.problems.extend(
        sample
            .rejects
            .iter()
            .take(5)
            .map(|(row, why)| format!("row {row} would be rejected: {why}")),
    );
    match field(&params, "params").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => judge_params(list, &sample, cfg, &mut report),
        _ => report.notes.push(format!(
            "process {conv} declares no parameters: any data goes, so the mapping was not compared"
        )),
    }
    Ok(report)
}

/// A field of a metadata answer: at its top, or under its `data`.
fn field<'v>(op: &'v Value, k: &str) -> Option<&'v Value> {
    op.get(k).or_else(|| op.get("data").and_then(|d| d.get(k)))
}

/// One signed request with `show conv` and `list conv_params`; their answers.
async fn fetch(cfg: &LoadConfig, conv: u64) -> Result<(Value, Value)> {
    let s = &cfg.send;
    let company = cfg
        .mapping
        .company_id
        .as_ref()
        .map(|c| format!(",\"company_id\":{}", Value::from(c.as_str())))
        .unwrap_or_default();
    let body = format!(
        "{{\"ops\":[{{\"id\":\"show\",\"type\":\"show\",\"obj\":\"conv\",\"obj_id\":{conv}{company}}},{{\"id\":\"params\",\"type\":\"list\",\"obj\":\"conv_params\",\"obj_id\":{conv}{company}}}]}}"
    );
    let client = reqwest::Client::builder()
        .timeout(s.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(s.insecure)
        .user_agent(concat!("czload/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Other(format!("cannot build the HTTP client: {e}")))?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut url = String::new();
    crate::sign::write_url(
        &mut url,
        &s.base,
        &s.login,
        ts,
        &crate::sign::sign(ts, &s.secret, body.as_bytes()),
    );
    let cannot = |why: String| Error::Other(format!("cannot check process {conv}: {why}"));
    let (status, text) = match client
        .post(&url)
        .header("content-type", "application/json; charset=utf8")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => return Err(cannot(format!("no answer from {} (--url): {e}", s.base))),
    };
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let description = |v: &Value| {
        v.get("description")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| text.chars().take(200).collect())
    };
    if status != 200 || answer.get("request_proc").and_then(Value::as_str) != Some("ok") {
        return Err(cannot(format!(
            "the server answered HTTP {status}: {} (check --api-login, the secret and --url)",
            description(&answer)
        )));
    }
    let op = |id: &str| -> Result<Value> {
        let a = answer
            .get("ops")
            .and_then(Value::as_array)
            .and_then(|ops| {
                ops.iter()
                    .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
            })
            .ok_or_else(|| cannot(format!("the answer has no reply to the {id} op")))?;
        match a.get("proc").and_then(Value::as_str) {
            Some("ok") => Ok(a.clone()),
            p => {
                let d = description(a);
                // The same words a load stops on (docs/protocol.md, Errors).
                let check = crate::send::retry::process_refusal(p.unwrap_or(""), Some(&d))
                    .map(|c| format!("; {c}"))
                    .unwrap_or_default();
                Err(cannot(format!("{d} ({}){check}", p.unwrap_or("no proc"))))
            }
        }
    };
    Ok((op("show")?, op("params")?))
}

/// The process is active and the key may do what the load does.
fn judge_process(show: &Value, cfg: &LoadConfig, r: &mut CheckReport) {
    match field(show, "status").and_then(Value::as_str) {
        Some("active") => {}
        Some(st) => r.problems.push(format!(
            "process {} is {st:?}, not active: Corezoid refuses tasks for it (conveyor_is_not_active); activate it first",
            r.conv
        )),
        None => r.notes.push("the answer gives no status; whether the process is active was not checked".into()),
    }
    let want = cfg.mapping.op.as_str();
    match field(show, "privs").and_then(Value::as_array) {
        Some(privs) => {
            let has: Vec<&str> = privs
                .iter()
                .filter_map(|p| p.get("type").and_then(Value::as_str).or_else(|| p.as_str()))
                .collect();
            if !has.contains(&want) {
                r.problems.push(format!(
                    "the API key (--api-login) has no {want:?} right on process {} (it has: {}); grant it in Corezoid",
                    r.conv,
                    has.join(", ")
                ));
            }
        }
        None => r
            .notes
            .push("the answer lists no rights; the key's rights were not checked".into()),
    }
}

/// What the sampled rows put under each data key.
#[derive(Debug, Default)]
struct Sample {
    rows: u64,
    rejects: Vec<(u64, String)>,
    keys: BTreeMap<String, KeySeen>,
    /// Whether any input is CSV (its columns take --type and --exclude).
    csv: bool,
    /// The data keys the CSV inputs' headers give: with no row read, the header alone
    /// still shows a required parameter no column supplies.
    header_keys: std::collections::BTreeSet<String>,
}

#[derive(Debug, Default)]
struct KeySeen {
    /// Rows with a non-null value.
    rows: u64,
    /// Per JSON kind: the first row and value.
    kinds: BTreeMap<&'static str, (u64, String)>,
    /// The first string value that would not pass as a number / bool / JSON, with its row.
    not_numeric: Option<(u64, String)>,
    not_bool: Option<(u64, String)>,
    not_json: Option<(u64, String)>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Null => "null",
    }
}

/// Maps the first `limit` rows of the inputs as `load` would and records their data.
fn sample(cfg: &LoadConfig, limit: usize) -> Result<Sample> {
    let mut s = Sample::default();
    for input in &cfg.inputs {
        // With no row to read, every input is still opened: its header is checked.
        if limit > 0 && s.rows as usize >= limit {
            break;
        }
        let opened = crate::read::open_alone(cfg, input)?;
        match opened {
            Mapped::Fields(mut src, plan, _) => {
                s.csv = true;
                s.header_keys.extend(plan.data_keys(&cfg.mapping.edits));
                take(&mut *src, &plan, limit, &mut s)
            }
            Mapped::Objects(mut src, plan, _) => take(&mut *src, &plan, limit, &mut s),
        }
    }
    Ok(s)
}

fn take<R: ?Sized>(
    src: &mut dyn Records<Record = R>,
    plan: &impl Plan<Record = R>,
    limit: usize,
    s: &mut Sample,
) {
    let (mut buf, mut reference) = (Vec::new(), String::new());
    while (s.rows as usize) < limit {
        let row = match src.advance() {
            Ok(Some((row, _))) => row,
            Ok(None) => break,
            Err(e) => {
                s.rejects.push((
                    s.rows + 1,
                    format!("the input breaks off at line {}: {}", e.line, e.message),
                ));
                break;
            }
        };
        s.rows += 1;
        buf.clear();
        if let Err(e) = plan.write_op(src.record(), 1, row, &mut buf, &mut reference) {
            s.rejects.push((row, e.0));
            continue;
        }
        let data = serde_json::from_slice::<Value>(&buf)
            .ok()
            .and_then(|mut op| op.get_mut("data").map(Value::take));
        let Some(Value::Object(data)) = data else {
            continue;
        };
        record(s, row, data);
    }
}

fn record(s: &mut Sample, row: u64, data: Map<String, Value>) {
    for (k, v) in data {
        let seen = s.keys.entry(k).or_default();
        if v.is_null() {
            continue;
        }
        seen.rows += 1;
        if let Value::String(t) = &v {
            let first = |slot: &mut Option<(u64, String)>, ok: bool| {
                if !ok && slot.is_none() {
                    *slot = Some((row, format!("{:?}", t.chars().take(60).collect::<String>())));
                }
            };
            first(
                &mut seen.not_numeric,
                t.trim().parse::<f64>().is_ok_and(f64::is_finite),
            );
            first(&mut seen.not_bool, matches!(t.trim(), "true" | "false"));
            first(
                &mut seen.not_json,
                serde_json::from_str::<Value>(t).is_ok_and(|j| j.is_object() || j.is_array()),
            );
        }
        let shown = match &v {
            Value::String(t) => format!("{t:?}"),
            other => other.to_string(),
        };
        seen.kinds
            .entry(kind(&v))
            .or_insert((row, shown.chars().take(60).collect()));
    }
}

/// A declared parameter, read leniently.
struct Declared<'v> {
    name: &'v str,
    type_: &'v str,
    required: bool,
}

fn declared(p: &Value) -> Option<Declared<'_>> {
    let flags = p.get("flags").and_then(Value::as_array);
    Some(Declared {
        name: p.get("name")?.as_str()?,
        type_: p.get("type").and_then(Value::as_str).unwrap_or(""),
        required: p.get("required").and_then(Value::as_bool) == Some(true)
            || flags.is_some_and(|f| f.iter().any(|x| x.as_str() == Some("required"))),
    })
}

/// Whether a JSON kind fits a declared type; `None`: a type czload does not know.
fn fits(declared: &str, kind: &str) -> Option<bool> {
    let want = match declared.to_ascii_lowercase().as_str() {
        "string" => "string",
        "number" | "integer" | "int" | "float" | "decimal" => "number",
        "boolean" | "bool" => "boolean",
        "object" => "object",
        "array" => "array",
        _ => return None,
    };
    Some(want == kind)
}

/// The `--type`/`--set` name for a declared type.
fn col_type(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "number" | "float" | "decimal" => "number",
        "integer" | "int" => "integer",
        "boolean" | "bool" => "bool",
        "object" | "array" => "json",
        _ => "string",
    }
}

/// Where a data key comes from, for the flag that changes it.
enum Origin {
    Set,
    Column(String),
    Field(String),
}

fn origin(key: &str, cfg: &LoadConfig, csv: bool) -> Origin {
    let edits = &cfg.mapping.edits;
    if edits.set.iter().any(|(k, _, _)| k == key) {
        return Origin::Set;
    }
    let name = edits
        .rename
        .iter()
        .find(|(_, new)| new == key)
        .map_or(key, |(old, _)| old.as_str())
        .to_string();
    if csv {
        Origin::Column(name)
    } else {
        Origin::Field(name)
    }
}

fn judge_params(list: &[Value], s: &Sample, cfg: &LoadConfig, r: &mut CheckReport) {
    let params: Vec<Declared> = list.iter().filter_map(declared).collect();
    // Only a whole task must hold every required parameter; a modify changes some.
    let create = cfg.mapping.op.data == crate::op::Data::Task;
    if s.rows == 0 {
        r.notes.push(if s.csv {
            "no row was read (--check-rows 0, or no data rows): only the header's columns were compared with the declared parameters".into()
        } else {
            "no row was read (--check-rows 0, or no data rows): the values and the fields were not compared".into()
        });
    }
    for p in &params {
        let seen = s.keys.get(p.name);
        let present = seen.map_or(0, |k| k.rows);
        // With no row, the header stands for the rows (a header-only file, --check-rows 0).
        let by_header = s.rows == 0 && s.csv && !s.header_keys.contains(p.name);
        if p.required && create && (present < s.rows || by_header) {
            r.problems.push(if present == 0 {
                format!(
                    "required parameter {:?} is supplied by no column or field: map one to it with --rename COL:{}, or give every task a value with --set {}=VALUE",
                    p.name,
                    p.name,
                    set_key(p)
                )
            } else {
                format!(
                    "required parameter {:?} is missing or empty in {} of {} rows: fill them in the input (an empty typed cell leaves the key out)",
                    p.name,
                    s.rows - present,
                    s.rows
                )
            });
        }
        let Some(seen) = seen else { continue };
        for (k, (row, value)) in &seen.kinds {
            if fits(p.type_, k) == Some(false) {
                r.problems
                    .push(clash(p, k, *row, value, seen, origin(p.name, cfg, s.csv)));
            }
        }
        if fits(p.type_, "string").is_none() {
            r.notes.push(format!(
                "parameter {:?} has the type {:?}, which czload does not know; its values were not compared",
                p.name, p.type_
            ));
        }
    }
    for key in s.keys.keys() {
        if params.iter().all(|p| p.name != key) {
            let fix = match origin(key, cfg, s.csv) {
                Origin::Column(c) => format!(
                    ": --exclude {c} leaves it out, --rename {c}:PARAM maps it to a parameter"
                ),
                Origin::Set => format!(": drop --set {key}=..."),
                Origin::Field(f) => format!(": --rename {f}:PARAM maps it to a parameter"),
            };
            r.warnings.push(format!(
                "{key:?} is not a declared parameter of process {} (Corezoid accepts it){fix}",
                r.conv
            ));
        }
    }
}

/// `--set`'s key for a parameter: typed when it is not a string, so that the advice,
/// followed, gives the declared type (a plain `--set K=V` sets a string).
fn set_key(p: &Declared) -> String {
    match (fits(p.type_, "string"), col_type(p.type_)) {
        (Some(false), ty) => format!("{}:{ty}", p.name),
        _ => p.name.to_string(),
    }
}

/// A value of kind `got` for a parameter declared otherwise, and the flag that fixes it.
fn clash(p: &Declared, got: &str, row: u64, value: &str, seen: &KeySeen, from: Origin) -> String {
    let head = format!(
        "parameter {:?} is declared {}, but row {row} maps {} {value} to it",
        p.name, p.type_, got
    );
    let want = col_type(p.type_);
    let unconvertible = match want {
        _ if got != "string" => None,
        "number" | "integer" => seen.not_numeric.as_ref(),
        "bool" => seen.not_bool.as_ref(),
        "json" => seen.not_json.as_ref(),
        _ => None,
    };
    let fix = match from {
        Origin::Set => format!("give it as --set {}:{want}=VALUE", p.name),
        Origin::Column(c) => match unconvertible {
            None => format!("--type {c}:{want}"),
            Some((bad_row, bad)) => format!(
                "--type {c}:{want}, once the input is fixed: row {bad_row} holds {bad}, which is no {want}"
            ),
        },
        Origin::Field(f) => format!(
            "NDJSON values keep their JSON types: write field {f:?} as a {} in the input",
            p.type_
        ),
    };
    format!("{head}: {fix}")
}
