//! Validating one operation against the sandbox's processes, before any lock is taken:
//! the fields as sent (kept raw, so a field of the wrong type is a per-op error naming it)
//! in, an [`Action`] out (what to apply, or the refusal). The shapes follow
//! docs/protocol.md, Task show, modify and delete.

use super::store::{ObjId, Shard, Target};
use super::State;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The longest ref Corezoid accepts, in characters.
const MAX_REF_CHARS: usize = 255;

/// One operation as sent: every field kept raw, so that a field of the wrong type becomes
/// a per-op error naming that field instead of a failure to read the whole op.
#[derive(Deserialize)]
pub(crate) struct OpIn<'a> {
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    type_: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub obj: Option<&'a RawValue>,
    #[serde(borrow, default)]
    conv_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    obj_alias: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "ref")]
    pub ref_: Option<&'a RawValue>,
    #[serde(borrow, default)]
    obj_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    company_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    node_id: Option<&'a RawValue>,
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
    /// By `obj_id` only (the API has no delete by ref), in the node the task is in.
    Delete {
        shard: &'s Shard,
        obj: Option<ObjId>,
        node: Option<ObjId>,
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
    pub(crate) fn target(&self) -> Target<'_> {
        match self {
            By::Obj(Some(id)) => Target::Obj(*id),
            By::Obj(None) => Target::BadObj,
            By::Ref(r) => Target::Ref(r),
        }
    }
}

pub(crate) fn refuse<'a, 's>(
    key: Option<&'static str>,
    d: impl Into<Cow<'static, str>>,
) -> Action<'a, 's> {
    Action::Refuse {
        key,
        description: d.into(),
    }
}

/// A ref as the API takes it: a string of 1 to 255 characters, or a number (kept as its
/// text), or `null` for none (docs/protocol.md, Task show, modify and delete).
fn checked_ref<'a, 's>(raw: &'a RawValue) -> Result<Option<Cow<'a, str>>, Action<'a, 's>> {
    let text = raw.get().trim();
    if text == "null" {
        return Ok(None);
    }
    let r = match string(raw) {
        Some(r) => r,
        None if text.parse::<f64>().is_ok() => Cow::Borrowed(text),
        None => {
            return Err(refuse(
                Some("ref"),
                "Value is not valid: ref is not a string or a number",
            ))
        }
    };
    if r.is_empty() {
        return Err(refuse(Some("ref"), "Value is not valid: ref is empty"));
    }
    if r.chars().count() > MAX_REF_CHARS {
        return Err(refuse(
            Some("ref"),
            "Value is not valid: ref is longer than 255 characters",
        ));
    }
    Ok(Some(r))
}

/// `Err` carries the refusal, so that `?` reads as "or else refuse".
pub(crate) fn validate<'a, 's>(
    op: &OpIn<'a>,
    state: &'s State,
) -> Result<Action<'a, 's>, Action<'a, 's>> {
    let cfg = &state.cfg;
    if let Some(m) = meta_op(op, state)? {
        return Ok(m);
    }
    if op.obj.and_then(string).as_deref() != Some("task") {
        return Err(refuse(Some("obj"), "bad object"));
    }
    let kind = match op.type_.and_then(string) {
        Some(t) if ["create", "modify", "show", "delete"].contains(&&*t) => t,
        Some(t) => {
            return Err(refuse(
                Some("type"),
                format!(
                    "unsupported type {t:?}: the sandbox knows create, modify, show and delete"
                ),
            ))
        }
        None => return Err(refuse(Some("type"), "type is required (a string)")),
    };
    let (conv_id, shard) = process(op, state)?;
    process_refusal(op, conv_id, cfg)?;
    let ref_ = op.ref_.map(checked_ref).transpose()?.flatten();
    let data = checked_data(op.data, cfg.max_task_bytes)?;
    if kind == "create" {
        let data = data.ok_or_else(|| refuse(Some("data"), "data is required (an object)"))?;
        return Ok(Action::Create {
            shard,
            ref_: ref_.map(|r| r.into()),
            data: data.to_owned(),
        });
    }
    if kind == "delete" {
        let id = |raw: Option<&RawValue>| raw.and_then(string).and_then(|s| ObjId::parse(&s));
        if op.obj_id.is_none() {
            return Err(refuse(
                Some("obj_id"),
                "delete needs obj_id and node_id: there is no delete by ref (show gives both)",
            ));
        }
        if op.node_id.is_none() {
            return Err(refuse(
                Some("node_id"),
                "node_id is required to delete a task",
            ));
        }
        return Ok(Action::Delete {
            shard,
            obj: id(op.obj_id),
            node: id(op.node_id),
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

/// The process an op names (`conv_id`, or `obj_alias` with `company_id`) and its shard.
fn process<'a, 's>(op: &OpIn<'a>, state: &'s State) -> Result<(u64, &'s Shard), Action<'a, 's>> {
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
        None if op.obj_alias.is_some() => by_alias(op, state)?,
        None => return Err(refuse(Some("conv_id"), "conv_id is required")),
    };
    let shard = state.store.shard(conv_id).ok_or_else(|| {
        refuse(
            None,
            format!("Object conv with id {conv_id} does not exist"),
        )
    })?;
    Ok((conv_id, shard))
}

/// `data` as the API takes it: an object (or `[]`, an empty one), within the task size.
fn checked_data<'a, 's>(
    data: Option<&'a RawValue>,
    max_task_bytes: usize,
) -> Result<Option<&'a RawValue>, Action<'a, 's>> {
    let data = match data {
        Some(d) if d.get().trim_start().starts_with('{') => Some(d),
        // PHP's json_encode writes an empty array for an empty map; the API takes `[]`.
        Some(d) if is_empty_array(d) => Some(empty_object()),
        Some(_) => {
            return Err(refuse(
                Some("data"),
                "Value is not valid: data is not an object",
            ))
        }
        None => None,
    };
    if let Some(d) = data {
        if d.get().len() > max_task_bytes {
            return Err(refuse(
                Some("data"),
                format!(
                    "task size overflow limit: {} bytes of data, the limit is {}",
                    d.get().len(),
                    max_task_bytes
                ),
            ));
        }
    }
    Ok(data)
}

/// `obj_alias` with `company_id` in place of `conv_id`: the process the sandbox's
/// `--alias NAME=CONV` names. Which alias texts a real server takes, and its words for an
/// unknown one, are unknown (docs/protocol.md); these are the sandbox's.
fn by_alias<'a, 's>(op: &OpIn<'a>, state: &'s State) -> Result<u64, Action<'a, 's>> {
    let alias = op.obj_alias.and_then(string).ok_or_else(|| {
        refuse(
            Some("obj_alias"),
            "Value is not valid: obj_alias is not a string",
        )
    })?;
    if op.company_id.and_then(string).is_none_or(|c| c.is_empty()) {
        return Err(refuse(
            Some("company_id"),
            "company_id is required with obj_alias",
        ));
    }
    state
        .cfg
        .aliases
        .iter()
        .find(|(a, _)| *a == *alias)
        .map(|&(_, conv)| conv)
        .ok_or_else(|| {
            refuse(
                Some("obj_alias"),
                format!("Object conv with alias {alias} does not exist"),
            )
        })
}

fn is_empty_array(d: &RawValue) -> bool {
    let t = d.get().trim();
    t.starts_with('[') && t.ends_with(']') && t[1..t.len() - 1].trim().is_empty()
}

fn empty_object() -> &'static RawValue {
    // A valid literal: from_str cannot fail on it.
    serde_json::from_str("{}").expect("{} is JSON")
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
pub(crate) fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
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
pub(crate) fn number(raw: &RawValue) -> Option<u64> {
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
}
