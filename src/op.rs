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
}

impl OpKind {
    /// The op's `type` in the request body.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Modify => "modify",
        }
    }

    /// The status of a row whose op the server applied.
    pub fn success(self) -> Status {
        match self {
            OpKind::Create => Status::Created,
            OpKind::Modify => Status::Modified,
        }
    }

    /// Whether the server's "duplicate ref" answer means the task is already there (a
    /// create retried or re-run: `exists`), rather than a refusal.
    pub fn duplicate_ref_is_exists(self) -> bool {
        self == OpKind::Create
    }

    /// Whether the input may not repeat a ref: a second create with it would be refused,
    /// while a modify file may rightly name a task twice.
    pub fn refs_are_unique(self) -> bool {
        self == OpKind::Create
    }
}
