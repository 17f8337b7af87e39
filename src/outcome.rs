//! What became of a row: its `Status`, the `Outcome` the sender gives each row it settles
//! (with the task id the server answered), and the `RejectedRow` the reader gives a row it
//! cannot map. Produced by `send` and the reader, consumed by the sinks; defined here so
//! that neither side owns the other's vocabulary.

/// Defines `Status` from one table, so that a new status is one line: the enum, its name
/// in the results log and the summary (the serde name, `as_str`), the order of every
/// per-status list (`Status::ALL`, the counts, the rendered summary), and what it means
/// for the exit code and the retry file.
macro_rules! statuses {
    ($($(#[$doc:meta])* $v:ident = $name:literal, success: $ok:literal, retry: $retry:literal;)*) => {
        /// The final status of a row (see docs/architecture.md, "What becomes of a row").
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum Status {
            $($(#[$doc])* #[serde(rename = $name)] $v,)*
        }

        impl Status {
            /// Every status, in the order the summary lists them.
            pub const ALL: &'static [Status] = &[$(Status::$v),*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Status::$v => $name,)*
                }
            }

            pub const fn is_success(self) -> bool {
                match self {
                    $(Status::$v => $ok,)*
                }
            }

            /// Rows the same command can load again from the retry file.
            pub const fn to_retry_file(self) -> bool {
                match self {
                    $(Status::$v => $retry,)*
                }
            }
        }
    };
}

statuses! {
    Created = "created", success: true, retry: false;
    Modified = "modified", success: true, retry: false;
    /// The ref was taken already: loaded by an earlier attempt or run.
    Exists = "exists", success: true, retry: false;
    Rejected = "rejected", success: false, retry: false;
    Failed = "failed", success: false, retry: true;
    /// The request may or may not have reached the server, and no ref tells which. Not
    /// retried: its own file (`sink/retry_file.rs`), for a human to check.
    Ambiguous = "ambiguous", success: false, retry: false;
    /// `--op raw`: an op other than create or modify that the server applied. Last, so
    /// that the counts of task loads read as before.
    Done = "done", success: true, retry: false;
    /// `--sync`: the task was created but its reply did not come (the Sync API's timeout,
    /// or a resent create found its ref taken). Not a success, and not retried: a retry
    /// would find the task there and still bring no reply.
    NoReply = "no_reply", success: false, retry: false;
    /// `--op delete`, `czload undo`: the task was deleted.
    Deleted = "deleted", success: true, retry: false;
    /// A delete (or a show) found no task: deleted already (a delete resent after a lost
    /// answer, or resumed), or never there. Settled, since a delete wanted it gone.
    Gone = "gone", success: true, retry: false;
}

impl Status {
    /// How many statuses there are: the length of per-status tables.
    pub const COUNT: usize = Status::ALL.len();

    /// Where this status sits in `ALL` (and in per-status tables).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// A task's `obj_id` as the server gave it. Corezoid's are 24 hex digits; up to 32 bytes
/// are kept inline, so settling a row allocates nothing (a `String` per row showed in
/// profiles of fast loads as malloc in the senders and free in the journal thread).
/// Longer ones are boxed.
#[derive(Clone, PartialEq, Eq)]
pub enum TaskId {
    Inline(u8, [u8; 32]),
    Boxed(Box<str>),
}

impl TaskId {
    pub fn new(s: &str) -> TaskId {
        match u8::try_from(s.len()) {
            Ok(n) if n <= 32 => {
                let mut b = [0u8; 32];
                b[..s.len()].copy_from_slice(s.as_bytes());
                TaskId::Inline(n, b)
            }
            _ => TaskId::Boxed(s.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `str`, so always UTF-8.
            TaskId::Inline(n, b) => std::str::from_utf8(&b[..*n as usize]).unwrap_or_default(),
            TaskId::Boxed(s) => s,
        }
    }
}

impl std::fmt::Debug for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub obj_id: Option<TaskId>,
    /// The node a `show` found the task in (`node_id`), for the delete that follows.
    pub node_id: Option<TaskId>,
    pub attempts: u32,
    /// The server's `proc` for a refused op.
    pub proc_: Option<String>,
    pub error: Option<String>,
    /// The answer op's `data` (an object's JSON text): the Sync API's reply, a `show`'s task.
    pub reply: Option<Box<str>>,
    /// How long the request that settled the row took, in ms (0: none did).
    pub latency_ms: u32,
    /// How many times a rate limit refused the row before it settled.
    pub throttled: u32,
}

impl Outcome {
    pub fn new(status: Status, attempts: u32) -> Outcome {
        Outcome {
            status,
            obj_id: None,
            node_id: None,
            attempts,
            proc_: None,
            error: None,
            reply: None,
            latency_ms: 0,
            throttled: 0,
        }
    }

    pub fn with_error(mut self, e: impl Into<String>) -> Outcome {
        self.error = Some(e.into());
        self
    }
}

/// A row rejected before sending (by the reader: it could not be mapped).
#[derive(Debug, Clone)]
pub struct RejectedRow {
    pub input: u32,
    pub row: u64,
    pub line: u64,
    pub reference: Option<String>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_serde_names_and_indexes_follow_all() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
            assert_eq!(s.index(), i);
        }
        assert_eq!(Status::COUNT, 10);
        assert!(Status::Exists.is_success() && !Status::Rejected.is_success());
        assert!(Status::Failed.to_retry_file() && !Status::Rejected.to_retry_file());
        // Its fate is unknown: never in a file whose advice is to load it again.
        assert!(!Status::Ambiguous.to_retry_file());
    }

    #[test]
    fn task_ids_read_back_as_given_inline_or_boxed() {
        for s in [
            "",
            "5f0c0a000000000000000001",
            &"é".repeat(16),
            &"x".repeat(33),
            "€€€€€€€€€€€",
        ] {
            let t = TaskId::new(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(matches!(t, TaskId::Inline(..)), s.len() <= 32, "{s}");
            assert_eq!(format!("{t:?}"), format!("{s:?}"));
        }
    }
}
