//! Operations: the request body in, one answer per operation out.
//!
//! Two steps, so that no lock is held while parsing the body: [`plan`] reads it (borrowing
//! from it, no `Value` tree for task data), validates every operation against the fixed
//! set of processes and copies what a create stores; [`apply`] then takes a process's
//! lock once per request (a modify's merge is the one parse done under it). [`reply`]
//! serializes the answers.
//!
//! Every operation gets an answer with its `id` (`""` when it had none) and `obj`, `ref`
//! echoed exactly as sent; an op that named its task by `obj_id` gets the task's `ref`.
//! Validation failures are per-op errors with `proc: "error"`, a `key` naming the field
//! and a `description`; they never fail the whole request.

use super::stats::add;
use super::store::{node_of, unix_now, ObjId, Shard, ShardInner, StoredTask};
use super::validate::{refuse, validate, Action, OpIn};
use super::State;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::MutexGuard;

/// The one description the RPS limit uses, per op and per request alike.
pub(crate) const RPS_LIMIT: &str = "RPS limit reached";

#[derive(Deserialize)]
struct BodyIn<'a> {
    #[serde(borrow)]
    ops: Vec<&'a RawValue>,
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
    /// As sent; an op sent without one is answered `"id": ""`, as Corezoid does.
    #[serde(serialize_with = "ser_id")]
    id: Option<&'a RawValue>,
    proc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    obj: Option<&'a RawValue>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    ref_: Option<Cow<'a, RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_obj_id")]
    obj_id: Option<ObjId>,
    /// `show task`'s fields besides `obj_id`, `ref` and `data`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    task: Option<Shown>,
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

/// What `show` tells of a task (docs/protocol.md, Task show, modify and delete). The
/// sandbox's tasks do not move: `status` is always `processed`, `node_id` the one node of
/// its process, `node_prev_id` the start node; `task_id` is the obj_id.
#[derive(Serialize)]
struct Shown {
    task_id: String,
    status: &'static str,
    node_id: String,
    node_prev_id: String,
    user_id: Value,
    create_time: u32,
    change_time: u32,
}

fn hex(id: ObjId) -> String {
    String::from_utf8_lossy(&id.to_hex()).into_owned()
}

fn ser_id<S: Serializer>(id: &Option<&RawValue>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(raw) => raw.serialize(s),
        None => s.serialize_str(""),
    }
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
            ref_: echo.ref_.map(Cow::Borrowed),
            obj_id: None,
            task: None,
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

    /// An `ok` for `task`: its obj_id, and its ref when the op did not send one.
    fn ok_for(echo: Echo<'a>, task: &StoredTask) -> Answer<'a> {
        let mut a = Answer::new(echo, "ok");
        a.obj_id = Some(task.obj_id);
        if a.ref_.is_none() {
            a.ref_ = task
                .ref_
                .as_deref()
                .and_then(|r| serde_json::value::to_raw_value(r).ok())
                .map(Cow::Owned);
        }
        a
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

/// What a request's operations did, added to the counters once per request.
#[derive(Default)]
struct Tally {
    created: u64,
    lost: u64,
    modified: u64,
    shown: u64,
    deleted: u64,
    dups: u64,
    errors: u64,
    throttled: u64,
}

/// Applies the planned operations in request order; those from index `admitted` on are
/// refused by the RPS limit (op mode). Counts everything it answers.
pub(crate) fn apply<'a>(
    planned: Vec<Planned<'a, '_>>,
    admitted: usize,
    state: &State,
) -> Vec<Answer<'a>> {
    let mut t = Tally::default();
    let n = planned.len() as u64;
    let mut held = Held(None);
    let mut answers = Vec::with_capacity(planned.len());
    for (i, p) in planned.into_iter().enumerate() {
        let answer = if i >= admitted {
            t.throttled += 1;
            Answer::error(p.echo, "error", None, RPS_LIMIT)
        } else {
            apply_one(p, &mut held, state, &mut t)
        };
        if answer.proc != "ok" {
            t.errors += 1;
        }
        answers.push(answer);
    }
    drop(held);
    let c = &state.counters;
    add(&c.ops, n);
    add(&c.created, t.created);
    add(&c.tasks, t.created - t.lost);
    c.tasks
        .fetch_sub(t.deleted, std::sync::atomic::Ordering::Relaxed);
    add(&c.lost, t.lost);
    add(&c.modified, t.modified);
    add(&c.shown, t.shown);
    add(&c.deleted, t.deleted);
    add(&c.duplicate_refs, t.dups);
    add(&c.op_errors, t.errors);
    add(&c.throttled_ops, t.throttled);
    answers
}

fn apply_one<'a, 's>(
    p: Planned<'a, 's>,
    held: &mut Held<'s>,
    state: &State,
    t: &mut Tally,
) -> Answer<'a> {
    let echo = p.echo;
    match p.action {
        Action::Meta(fields) => {
            t.shown += 1;
            Answer {
                meta: Some(fields),
                ..Answer::new(echo, "ok")
            }
        }
        Action::Refuse { key, description } => Answer::error(echo, "error", key, description),
        Action::Tagged { proc_, description } => Answer::error(echo, proc_, None, description),
        Action::Create { shard, ref_, data } => {
            let store = held.lock(shard);
            match store.create(ref_, data, &state.ids) {
                None => {
                    t.dups += 1;
                    Answer::error(echo, "not_unical_ref", Some("ref"), "not unical reference")
                }
                Some(obj_id) => {
                    t.created += 1;
                    store.created += 1;
                    let lose = state.cfg.lose_every;
                    if lose > 0 && store.created.is_multiple_of(lose) && store.delete(obj_id) {
                        t.lost += 1;
                    }
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
                    task.change_time = unix_now();
                    t.modified += 1;
                    Answer::ok_for(echo, task)
                }
                Err(description) => Answer::error(echo, "error", Some("data"), description),
            },
        },
        Action::Show { shard, by } => match held.lock(shard).find_mut(by.target()) {
            None => not_found(echo),
            Some(task) => {
                t.shown += 1;
                Answer {
                    task: Some(shown(task, shard.conv_id, &state.cfg.login)),
                    data: Some(task.data.clone()),
                    ..Answer::ok_for(echo, task)
                }
            }
        },
        Action::Delete { shard, obj, node } => delete(echo, held.lock(shard), shard, obj, node, t),
    }
}

fn delete<'a>(
    echo: Echo<'a>,
    store: &mut ShardInner,
    shard: &Shard,
    obj: Option<ObjId>,
    node: Option<ObjId>,
    t: &mut Tally,
) -> Answer<'a> {
    let Some(task) = obj.and_then(|id| store.find_mut(super::store::Target::Obj(id))) else {
        return not_found(echo);
    };
    // Which words a real server uses for a task in another node is unknown
    // (docs/protocol.md): the sandbox names the field and both nodes.
    if node != Some(node_of(shard.conv_id, false)) {
        let d = format!(
            "task {} is not in node {}",
            hex(task.obj_id),
            node.map_or_else(|| "(not 24 hex digits)".to_owned(), hex)
        );
        return Answer::error(echo, "error", Some("node_id"), d);
    }
    let answer = Answer::ok_for(echo, task);
    let id = task.obj_id;
    store.delete(id);
    t.deleted += 1;
    answer
}

fn shown(task: &StoredTask, conv_id: u64, login: &str) -> Shown {
    Shown {
        task_id: hex(task.obj_id),
        status: "processed",
        node_id: hex(node_of(conv_id, false)),
        node_prev_id: hex(node_of(conv_id, true)),
        user_id: login
            .parse::<u64>()
            .map_or_else(|_| Value::from(login), Value::from),
        create_time: task.create_time,
        change_time: task.change_time,
    }
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
