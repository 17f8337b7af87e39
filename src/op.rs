//! The kinds of operation czload sends, and what each expects back.
//!
//! In: `--op`. Out: the op's `type` for the body (mapping), the status of a row the server
//! applied, and what a "duplicate ref" answer means (send). A new kind is one arm in each
//! method here plus its `--op` value (docs/architecture.md, "Where a change goes").

use crate::outcome::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Modify,
    /// `--op raw`: every NDJSON line is a whole op; each row's own kind comes from its
    /// `type` ([`OpKind::of_row`]).
    Raw,
    /// A raw op of another `type` (`show`, `delete`, ops on processes or folders...).
    Other,
}

impl OpKind {
    /// The op's `type` in the request body.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Modify => "modify",
            // Never written by czload: a raw line carries its own `type`.
            OpKind::Raw => "raw",
            OpKind::Other => "other",
        }
    }

    /// The kind of the op a row sent: `self`, but for `--op raw`, where it is the line's
    /// `type` (create and modify as for tasks, anything else `Other`).
    pub fn of_row(self, op: &[u8]) -> OpKind {
        if self != OpKind::Raw {
            return self;
        }
        #[derive(serde::Deserialize)]
        struct Type<'a> {
            #[serde(borrow, rename = "type")]
            t: Option<std::borrow::Cow<'a, str>>,
        }
        match serde_json::from_slice::<Type>(op)
            .ok()
            .and_then(|t| t.t)
            .as_deref()
        {
            Some("create") => OpKind::Create,
            Some("modify") => OpKind::Modify,
            _ => OpKind::Other,
        }
    }

    /// The status of a row whose op the server applied.
    pub fn success(self) -> Status {
        match self {
            OpKind::Create => Status::Created,
            OpKind::Modify => Status::Modified,
            OpKind::Raw | OpKind::Other => Status::Done,
        }
    }

    /// Whether the server's "duplicate ref" answer means the task is already there (a
    /// create retried or re-run: `exists`), rather than a refusal.
    pub fn duplicate_ref_is_exists(self) -> bool {
        self == OpKind::Create
    }

    /// Whether the input may not repeat a ref: a second create with it would be refused,
    /// while a modify file may rightly name a task twice (and a raw file may create a
    /// task and then modify it by the same ref).
    pub fn refs_are_unique(self) -> bool {
        self == OpKind::Create
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_row_is_of_its_type() {
        let raw = OpKind::Raw;
        assert_eq!(
            raw.of_row(br#"{"id":"1","type":"create","obj":"task"}"#),
            OpKind::Create
        );
        assert_eq!(
            raw.of_row(br#"{"obj":"task","type":"modify","ref":"a"}"#),
            OpKind::Modify
        );
        assert_eq!(
            raw.of_row(br#"{"type":"delete","obj":"task"}"#),
            OpKind::Other
        );
        assert_eq!(raw.of_row(b"{}"), OpKind::Other);
        assert_eq!(
            OpKind::Modify.of_row(br#"{"type":"create"}"#),
            OpKind::Modify
        );
        assert_eq!(OpKind::Other.success(), Status::Done);
        assert!(OpKind::Create.of_row(b"").duplicate_ref_is_exists());
    }
}
