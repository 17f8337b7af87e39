//! Operations: the request body in, one answer per operation out.
//!
//! Two steps, so that no lock is held while parsing the body: [`plan`] reads it (borrowing
//! from it, no `Value` tree for task data), validates every operation against the fixed
//! set of processes and copies what a create stores; [`apply`] then takes a process's
//! lock once per request (a modify's merge is the one parse done under it). [`reply`]
//! serializes the answers.
//!
//! Every operation gets an answer with its `id` (and `obj`, `ref`) echoed exactly as sent.
//! Validation failures are per-op errors with `proc: "error"`, a `key` naming the field
//! and a `description`; they never fail the whole request.

use super::stats::add;
use super::store::{ObjId, Shard, ShardInner, Target};
use super::State;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::MutexGuard;

/// The one description the RPS limit uses, per op and per request alike.
pub(crate) const RPS_LIMIT: &str = "RPS limit reached";

/// The longest ref Corezoid accepts, in characters.
const MAX_REF_CHARS: usize = 255;

#[derive(Deserialize)]
struct BodyIn<'a> {
    #[serde(borrow)]
    ops: Vec<&'a RawValue>,
}

/// One operation as sent: every field kept raw, so that a field of the wrong type becomes
/// a per-op error naming that field instead of a failure to read the whole op.
#[derive(Deserialize)]
struct OpIn<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    type_: Option<&'a RawValue>,
    #[serde(borrow, default)]
    obj: Option<&'a RawValue>,
    #[serde(borrow, default)]
    conv_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    obj_alias: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "ref")]
    ref_: Option<&'a RawValue>,
    #[serde(borrow, default)]
    obj_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    company_id: Option<&'a RawValue>,
}

/// What an operation will do once it is applied.
pub(crate) enum Action<'a, 's> {
    /// Owned already, so that nothing allocates while a lock is held.
    Create {
        shard: &'s Shard,
        ref_: Option<Box<str>>,
        data: Box<RawValue>,
    },
    Modify {
        shard: &'s Shard,
        by: By<'a>,
        data: Map<String, Value>,
    },
    Show {
        shard: &'s Shard,
        by: By<'a>,
    },
    /// `show conv`, `list conv_params`: the answer's fields (`meta.rs`).
    Meta(Map<String, Value>),
    /// Refused with a tag of its own as the `proc` (`access_denied`, ...).
    Tagged {
        proc_: &'static str,
        description: &'static str,
    },
    /// Refused before reaching the store.
    Refuse {
        key: Option<&'static str>,
        description: Cow<'static, str>,
    },
}

/// How a modify or show names its task; `obj_id` wins when both are given.
pub(crate) enum By<'a> {
    Obj(Option<ObjId>),
    Ref(Cow<'a, str>),
}

impl By<'_> {
    fn target(&self) -> Target<'_> {
        match self {
            By::Obj(Some(id)) => Target::Obj(*id),
            By::Obj(None) => Target::BadObj,
            By::Ref(r) => Target::Ref(r),
        }
    }
}

/// A validated operation and the fields its answer echoes.
pub(crate) struct Planned<'a, 's> {
    echo: Echo<'a>,
    action: Action<'a, 's>,
}

#[derive(Default, Clone, Copy)]
struct Echo<'a> {
    id: Option<&'a RawValue>,
    obj: Option<&'a RawValue>,
    ref_: Option<&'a RawValue>,
}

/// One operation's answer.
#[derive(Serialize)]
pub(crate) struct Answer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
    proc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    obj: Option<&'a RawValue>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    ref_: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_obj_id")]
    obj_id: Option<ObjId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'static, str>>,
    /// A metadata op's fields, at the top of its answer.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    meta: Option<Map<String, Value>>,
}

fn ser_obj_id<S: Serializer>(id: &Option<ObjId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => {
            let hex = id.to_hex();
            s.serialize_str(std::str::from_utf8(&hex).unwrap_or_default())
        }
        None => s.serialize_none(),
    }
}

impl<'a> Answer<'a> {
    fn new(echo: Echo<'a>, proc: &'static str) -> Answer<'a> {
        Answer {
            id: echo.id,
            proc,
            obj: echo.obj,
            ref_: echo.ref_,
            obj_id: None,
            data: None,
            key: None,
            description: None,
            meta: None,
        }
    }

    fn error(
        echo: Echo<'a>,
        proc: &'static str,
        key: Option<&'static str>,
        description: impl Into<Cow<'static, str>>,
    ) -> Answer<'a> {
        Answer {
            key,
            description: Some(description.into()),
            ..Answer::new(echo, proc)
        }
    }
}

/// Reads `{"ops":[...]}`; `Err` is the description of a format error.
pub(crate) fn parse_body(body: &[u8]) -> Result<Vec<&RawValue>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    serde_json::from_str::<BodyIn<'_>>(text)
        .map(|b| b.ops)
        .map_err(|e| format!("the body is not a JSON object with an \"ops\" array: {e}"))
}

/// Validates one operation against the configured processes, without touching the store.
pub(crate) fn plan<'a, 's>(raw: &'a RawValue, state: &'s State) -> Planned<'a, 's> {
    let op: OpIn<'a> = match serde_json::from_str(raw.get()) {
        Ok(op) => op,
        Err(e) => {
            return Planned {
                echo: Echo::default(),
                action: refuse(
                    None,
                    format!("the operation is not a valid JSON object: {e}"),
                ),
            }
        }
    };
    let echo = Echo {
        id: op.id,
        obj: op.obj,
        ref_: op.ref_,
    };
    Planned {
        echo,
        action: validate(&op, state).unwrap_or_else(|a| a),
    }
}

impl Planned<'_, '_> {
    /// A create's data, for the Sync API's reply.
    pub(crate) fn create_data(&self) -> Option<Box<RawValue>> {
        match &self.action {
            Action::Create { data, .. } => Some(data.clone()),
            _ => None,
        }
    }
}

impl Answer<'_> {
    pub(crate) fn is_ok(&self) -> bool {
        self.proc == "ok"
    }

    /// The Sync API's answer to a create: the process's reply, without `obj_id`.
    pub(crate) fn replied(&mut self, data: Box<RawValue>) {
        self.obj_id = None;
        self.data = Some(data);
    }

    /// The Sync API's answer to a create whose reply did not come in time.
    pub(crate) fn timed_out(&mut self) {
        self.obj_id = None;
        self.proc = "error";
        self.description = Some(Cow::Borrowed("Timeout for create task"));
    }
}

fn refuse<'a, 's>(key: Option<&'static str>, d: impl Into<Cow<'static, str>>) -> Action<'a, 's> {
    Action::Refuse {
        key,
        description: d.into(),
    }
}

/// A ref as the API takes it: a string of 1 to 255 characters.
fn checked_ref<'a, 's>(raw: &'a RawValue) -> Result<Cow<'a, str>, Action<'a, 's>> {
    let r = string(raw)
        .ok_or_else(|| refuse(Some("ref"), "Value is not valid: ref is not a string"))?;
    if r.is_empty() {
        return Err(refuse(Some("ref"), "Value is not valid: ref is empty"));
    }
    if r.chars().count() > MAX_REF_CHARS {
        return Err(refuse(
            Some("ref"),
            "Value is not valid: ref is longer than 255 characters",
        ));
    }
    Ok(r)
}

/// `Err` carries the refusal, so that `?` reads as "or else refuse".
fn validate<'a, 's>(op: &OpIn<'a>, state: &'s State) -> Result<Action<'a, 's>, Action<'a, 's>> {
    let cfg = &state.cfg;
    if let Some(m) = meta_op(op, state)? {
        return Ok(m);
    }
    if op.obj.and_then(string).as_deref() != Some("task") {
        return Err(refuse(Some("obj"), "bad object"));
    }
    let kind = match op.type_.and_then(string) {
        Some(t) if t == "create" || t == "modify" || t == "show" => t,
        Some(t) => {
            return Err(refuse(
                Some("type"),
                format!("unsupported type {t:?}: the sandbox knows create, modify and show"),
            ))
        }
        None => return Err(refuse(Some("type"), "type is required (a string)")),
    };
    if let Some(c) = op.company_id {
        if string(c).as_deref() == Some("") {
            return Err(refuse(
                Some("company_id"),
                "Value is not valid: company_id is empty",
            ));
        }
    }
    let conv_id = match op.conv_id {
        Some(raw) => number(raw).ok_or_else(|| {
            refuse(
                Some("conv_id"),
                "Value is not valid: conv_id is not a number",
            )
        })?,
        None if op.obj_alias.is_some() => {
            return Err(refuse(
                Some("obj_alias"),
                "obj_alias is not supported by the sandbox: send conv_id",
            ))
        }
        None => return Err(refuse(Some("conv_id"), "conv_id is required")),
    };
    let shard = state.store.shard(conv_id).ok_or_else(|| {
        refuse(
            None,
            format!("Object conv with id {conv_id} does not exist"),
        )
    })?;
    process_refusal(op, conv_id, cfg)?;
    let ref_ = op.ref_.map(checked_ref).transpose()?;
    let data = match op.data {
        Some(d) if d.get().trim_start().starts_with('{') => Some(d),
        Some(_) => {
            return Err(refuse(
                Some("data"),
                "Value is not valid: data is not an object",
            ))
        }
        None => None,
    };
    if let Some(d) = data {
        if d.get().len() > cfg.max_task_bytes {
            return Err(refuse(
                Some("data"),
                format!(
                    "task size overflow limit: {} bytes of data, the limit is {}",
                    d.get().len(),
                    cfg.max_task_bytes
                ),
            ));
        }
    }
    if kind == "create" {
        let data = data.ok_or_else(|| refuse(Some("data"), "data is required (an object)"))?;
        return Ok(Action::Create {
            shard,
            ref_: ref_.map(|r| r.into()),
            data: data.to_owned(),
        });
    }
    let by = match (op.obj_id, ref_) {
        (Some(raw), _) => By::Obj(string(raw).and_then(|s| ObjId::parse(&s))),
        (None, Some(r)) => By::Ref(r),
        (None, None) => {
            return Err(refuse(
                Some("ref"),
                format!("{kind} needs a ref or an obj_id to find the task"),
            ))
        }
    };
    if kind == "show" {
        return Ok(Action::Show { shard, by });
    }
    let d = data.ok_or_else(|| refuse(Some("data"), "data is required (an object)"))?;
    let data: Map<String, Value> = serde_json::from_str(d.get())
        .map_err(|e| refuse(Some("data"), format!("Value is not valid: {e}")))?;
    Ok(Action::Modify { shard, by, data })
}

/// The refusals of a process that exists (`denied`, `inactive`, another `company`), with
/// the tags Corezoid uses.
fn process_refusal<'a, 's>(
    op: &OpIn<'a>,
    conv: u64,
    cfg: &super::SandboxConfig,
) -> Result<(), Action<'a, 's>> {
    if cfg.denied.contains(&conv) {
        return Err(Action::Tagged {
            proc_: "access_denied",
            description: "Access denied",
        });
    }
    if cfg.inactive.contains(&conv) {
        return Err(Action::Tagged {
            proc_: "conveyor_is_not_active",
            description: "Process is not active",
        });
    }
    let asked = op.company_id.and_then(string);
    if let (Some(ours), Some(asked)) = (&cfg.company, asked) {
        if *ours != asked {
            return Err(refuse(
                Some("company_id"),
                "Company of object do not matches companyId of request",
            ));
        }
    }
    Ok(())
}

/// `show conv` / `list conv_params` on a process that exists; `None` for any other op.
fn meta_op<'a, 's>(
    op: &OpIn<'a>,
    state: &'s State,
) -> Result<Option<Action<'a, 's>>, Action<'a, 's>> {
    let (Some(t), Some(o)) = (op.type_.and_then(string), op.obj.and_then(string)) else {
        return Ok(None);
    };
    if !super::meta::is_meta(&t, &o) {
        return Ok(None);
    }
    let conv = op
        .obj_id
        .and_then(number)
        .ok_or_else(|| refuse(Some("obj_id"), "Value is not valid: obj_id is not a number"))?;
    if state.store.shard(conv).is_none() {
        return Err(refuse(
            None,
            format!("Object conv with id {conv} does not exist"),
        ));
    }
    if state.cfg.denied.contains(&conv) {
        return Err(Action::Tagged {
            proc_: "access_denied",
            description: "Access denied",
        });
    }
    let mut fields = super::meta::answer(&t, conv, &state.cfg.params);
    if state.cfg.inactive.contains(&conv) && fields.contains_key("status") {
        fields.insert("status".into(), "paused".into());
    }
    Ok(Some(Action::Meta(fields)))
}

/// A JSON string's text, borrowed when it has no escapes.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get().trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        if s.contains('\\') {
            serde_json::from_str::<String>(s).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&s[1..s.len() - 1]))
        }
    } else {
        None
    }
}

/// A non-negative integer given as a number or as a numeric string.
fn number(raw: &RawValue) -> Option<u64> {
    let s = raw.get().trim();
    let digits = match string(raw) {
        Some(Cow::Borrowed(inner)) => inner,
        Some(Cow::Owned(_)) => return None,
        None => s,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Applies the planned operations in request order; those from index `admitted` on are
/// refused by the RPS limit (op mode). Counts everything it answers.
pub(crate) fn apply<'a>(
    planned: Vec<Planned<'a, '_>>,
    admitted: usize,
    state: &State,
) -> Vec<Answer<'a>> {
    let c = &state.counters;
    let mut answers = Vec::with_capacity(planned.len());
    let (mut created, mut modified, mut shown, mut dups, mut errors) = (0, 0, 0, 0, 0);
    let mut throttled = 0;
    let n = planned.len() as u64;
    let mut held = Held(None);
    for (i, p) in planned.into_iter().enumerate() {
        let echo = p.echo;
        if i >= admitted {
            throttled += 1;
            errors += 1;
            answers.push(Answer::error(echo, "error", None, RPS_LIMIT));
            continue;
        }
        let answer = match p.action {
            Action::Meta(fields) => {
                shown += 1;
                Answer {
                    meta: Some(fields),
                    ..Answer::new(echo, "ok")
                }
            }
            Action::Refuse { key, description } => Answer::error(echo, "error", key, description),
            Action::Tagged { proc_, description } => Answer::error(echo, proc_, None, description),
            Action::Create { shard, ref_, data } => {
                match held.lock(shard).create(ref_, data, &state.ids) {
                    None => {
                        dups += 1;
                        Answer::error(echo, "not_unical_ref", Some("ref"), "not unical reference")
                    }
                    Some(obj_id) => {
                        created += 1;
                        Answer {
                            obj_id: Some(obj_id),
                            ..Answer::new(echo, "ok")
                        }
                    }
                }
            }
            Action::Modify { shard, by, data } => match held.lock(shard).find_mut(by.target()) {
                None => not_found(echo),
                Some(task) => match merge(&task.data, data, state.cfg.max_task_bytes) {
                    Ok(merged) => {
                        task.data = merged;
                        modified += 1;
                        Answer {
                            obj_id: Some(task.obj_id),
                            ..Answer::new(echo, "ok")
                        }
                    }
                    Err(description) => Answer::error(echo, "error", Some("data"), description),
                },
            },
            Action::Show { shard, by } => match held.lock(shard).find_mut(by.target()) {
                None => not_found(echo),
                Some(task) => {
                    let (obj_id, data) = (task.obj_id, task.data.clone());
                    shown += 1;
                    Answer {
                        obj_id: Some(obj_id),
                        data: Some(data),
                        ..Answer::new(echo, "ok")
                    }
                }
            },
        };
        if answer.proc != "ok" {
            errors += 1;
        }
        answers.push(answer);
    }
    drop(held);
    add(&c.ops, n);
    add(&c.created, created);
    add(&c.tasks, created);
    add(&c.modified, modified);
    add(&c.shown, shown);
    add(&c.duplicate_refs, dups);
    add(&c.op_errors, errors);
    add(&c.throttled_ops, throttled);
    answers
}

/// The lock of the process the previous operation used. A request's operations usually
/// all name one process, so it is locked once per request rather than once per
/// operation (per-op locking showed up as lock contention under load). Nothing that
/// parses or allocates much runs while it is held, except a modify's merge.
struct Held<'s>(Option<(&'s Shard, MutexGuard<'s, ShardInner>)>);

impl<'s> Held<'s> {
    fn lock(&mut self, shard: &'s Shard) -> &mut ShardInner {
        if !matches!(&self.0, Some((s, _)) if std::ptr::eq(*s, shard)) {
            // Let go of the previous lock first: two locks are never held together.
            self.0 = None;
            self.0 = Some((shard, shard.lock()));
        }
        &mut self.0.as_mut().expect("just locked").1
    }
}

fn not_found(echo: Echo<'_>) -> Answer<'_> {
    Answer::error(echo, "not_found_task", None, "task not found")
}

/// Top-level merge of `new` into the stored data, refused if the result outgrows the limit.
fn merge(
    stored: &RawValue,
    new: Map<String, Value>,
    max: usize,
) -> Result<Box<RawValue>, Cow<'static, str>> {
    let mut data: Map<String, Value> = serde_json::from_str(stored.get()).unwrap_or_default();
    data.extend(new);
    let raw = serde_json::value::to_raw_value(&data)
        .map_err(|e| Cow::Owned(format!("Value is not valid: {e}")))?;
    if raw.get().len() > max {
        return Err(Cow::Owned(format!(
            "task size overflow limit: {} bytes of data after the merge, the limit is {max}",
            raw.get().len()
        )));
    }
    Ok(raw)
}

/// `{"request_proc":"ok","ops":[...]}`.
pub(crate) fn reply(answers: &[Answer<'_>]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Reply<'r, 'a> {
        request_proc: &'static str,
        ops: &'r [Answer<'a>],
    }
    // Serializing strings and already-valid JSON into a Vec cannot fail.
    serde_json::to_vec(&Reply {
        request_proc: "ok",
        ops: answers,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_numeric_strings_are_conv_ids() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        assert_eq!(number(&raw("555")), Some(555));
        assert_eq!(number(&raw("\"555\"")), Some(555));
        assert_eq!(number(&raw("-1")), None);
        assert_eq!(number(&raw("5.5")), None);
        assert_eq!(number(&raw("\"\"")), None);
        assert_eq!(number(&raw("null")), None);
    }

    #[test]
    fn strings_decode_escapes() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        assert_eq!(string(&raw("\"task\"")).as_deref(), Some("task"));
        assert_eq!(string(&raw(r#""t\u0061sk""#)).as_deref(), Some("task"));
        assert_eq!(string(&raw("1")), None);
    }

    #[test]
    fn format_errors_are_described() {
        // (body, words the description must hold): what is wrong, and where serde saw it.
        let table: &[(&[u8], &[&str])] = &[
            (
                b"not json",
                &["not a JSON object with an \"ops\" array", "line 1 column 2"],
            ),
            (b"[]", &["\"ops\" array", "expected", "struct"]),
            (br#"{"ops":{}}"#, &["\"ops\" array", "expected a sequence"]),
            (br#"{"op":[]}"#, &["\"ops\" array", "missing field `ops`"]),
            (br#"{"ops":[1,{}]"#, &["\"ops\" array", "EOF"]),
            (b"\xff", &["not UTF-8"]),
        ];
        for &(body, words) in table {
            let err = parse_body(body).expect_err(&String::from_utf8_lossy(body));
            for w in words {
                assert!(
                    err.contains(w),
                    "{:?}: {err:?} lacks {w:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        assert_eq!(parse_body(br#"{"ops":[1,{}]}"#).map(|v| v.len()), Ok(2));
    }
}
