//! The kinds of operation czload sends, each a value holding its facts as data.
//!
//! In: `--op`. Out: what the rest of the code asks of a kind, always through its [`Spec`]
//! and never by comparing kinds: the `type` the mapping writes, whether the rows need a
//! ref or carry `data`, the status a success gives and the statuses a row can end in, what
//! a "duplicate ref" answer means (send), whether the input may repeat a ref (read), and
//! whether it may go through the Sync API. A new kind is one `const` here and its place
//! in [`OpKind::ALL`], which is also what `--op` offers (docs/architecture.md, "Where a
//! change goes").

use crate::outcome::Status;

/// What an op's `data` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// The whole task: the process's required parameters must all be in it (a create).
    Task,
    /// Changes merged into the task the ref names (a modify).
    Changes,
    /// Nothing: the op names a task and reads or removes it.
    Nothing,
    /// Whatever each row's op says (`--op raw`: rows are ops as written).
    AsWritten,
}

/// The facts of one kind of op.
#[derive(Debug)]
pub struct Spec {
    /// Its `--op` value, and the `type` the mapping writes into each op.
    pub name: &'static str,
    /// What `--op NAME` does, for `--help`.
    pub help: &'static str,
    /// Each row is a whole op of its own `type`, sent as written ([`OpKind::of_row`]);
    /// the mapping flags do not apply.
    pub rows_are_ops: bool,
    /// The op finds its task by ref, so every row needs one (`--ref-column`,
    /// `--ref-template`): generated refs would name no task.
    pub needs_ref: bool,
    /// What its `data` holds.
    pub data: Data,
    /// The status of a row whose op the server applied.
    pub success: Status,
    /// Every status a row of this kind can end in.
    pub ends_in: &'static [Status],
    /// Whether the server's "duplicate ref" answer means the task is already there (a
    /// create retried or re-run: `exists`), rather than a refusal.
    pub duplicate_ref_is_exists: bool,
    /// Whether the input may not repeat a ref: a second create with it would be refused,
    /// while a modify file may rightly name a task twice (and a raw file may create a
    /// task and then modify it by the same ref).
    pub unique_refs: bool,
    /// Whether it may go through the Sync API (`--sync`), which brings back the
    /// process's reply.
    pub sync: bool,
    /// The status of a row whose op found no task (`not_found_task`, `obj_id_not_found`,
    /// `retry::task_not_found`), when that settles it rather than refusing it: a delete
    /// resent after a lost answer, or resumed, finds its task gone, and that is what it
    /// wanted. `None`: a refusal, `rejected`.
    pub not_found: Option<Status>,
    /// Its op needs the node the task is in (`node_id`), which a row may not give: then a
    /// `show` goes first to learn it (`src/after/delete.rs`). A delete: there is no delete
    /// by ref, and `show` gives both the obj_id and the node.
    pub finds_node_first: bool,
}

/// What a row's op can end in, whatever its kind, besides its success.
const TROUBLE: [Status; 3] = [Status::Rejected, Status::Failed, Status::Ambiguous];

/// A kind of op: a handle on its [`Spec`]. Deliberately without `PartialEq`: code asks a
/// kind for a fact, and a new kind then needs no change there.
#[derive(Clone, Copy)]
pub struct OpKind(&'static Spec);

impl OpKind {
    /// Create one task per row.
    pub const CREATE: OpKind = OpKind(&Spec {
        name: "create",
        help: "Create one task per row",
        rows_are_ops: false,
        needs_ref: false,
        data: Data::Task,
        success: Status::Created,
        ends_in: &[
            Status::Created,
            Status::Exists,
            TROUBLE[0],
            TROUBLE[1],
            TROUBLE[2],
            Status::NoReply,
        ],
        duplicate_ref_is_exists: true,
        unique_refs: true,
        sync: true,
        not_found: None,
        finds_node_first: false,
    });

    /// Modify the task with the row's ref.
    pub const MODIFY: OpKind = OpKind(&Spec {
        name: "modify",
        help: "Modify the task with the row's ref, merging the row into its data",
        rows_are_ops: false,
        needs_ref: true,
        data: Data::Changes,
        success: Status::Modified,
        ends_in: &[Status::Modified, TROUBLE[0], TROUBLE[1], TROUBLE[2]],
        duplicate_ref_is_exists: false,
        unique_refs: false,
        sync: false,
        not_found: None,
        finds_node_first: false,
    });

    /// `--op raw`: every line is a whole op, whose row is of its own `type`.
    pub const RAW: OpKind = OpKind(&Spec {
        name: "raw",
        help: "Each NDJSON (or JSON-array) line is a whole op (`type`, `obj` and the rest, any object kind), sent as written but for the `id` czload puts first; its own `ref` makes retries safe",
        rows_are_ops: true,
        needs_ref: false,
        data: Data::AsWritten,
        success: Status::Done,
        ends_in: &[
            Status::Created,
            Status::Modified,
            Status::Exists,
            Status::Done,
            Status::Deleted,
            Status::Gone,
            TROUBLE[0],
            TROUBLE[1],
            TROUBLE[2],
        ],
        duplicate_ref_is_exists: false,
        unique_refs: false,
        sync: false,
        not_found: None,
        finds_node_first: false,
    });

    /// A raw op of a `type` no kind here has (ops on processes or folders...).
    pub const OTHER: OpKind = OpKind(&Spec {
        name: "other",
        help: "",
        rows_are_ops: false,
        needs_ref: false,
        data: Data::AsWritten,
        success: Status::Done,
        ends_in: &[Status::Done, TROUBLE[0], TROUBLE[1], TROUBLE[2]],
        duplicate_ref_is_exists: false,
        unique_refs: false,
        sync: false,
        not_found: None,
        finds_node_first: false,
    });

    /// Delete the task each row names: by `obj_id` (and `node_id`, when the row has it),
    /// or by ref, found with a `show` first (docs/protocol.md, Task show, modify and
    /// delete).
    pub const DELETE: OpKind = OpKind(&Spec {
        name: "delete",
        help: "Delete the task each row names: by its `obj_id` column or field (with `node_id`, no show is needed), or by its ref (--ref-column, --ref-template); a `show` first finds the node the task is in. A task already gone is `gone`, settled",
        rows_are_ops: false,
        needs_ref: false,
        data: Data::Nothing,
        success: Status::Deleted,
        ends_in: &[
            Status::Deleted,
            Status::Gone,
            TROUBLE[0],
            TROUBLE[1],
            TROUBLE[2],
        ],
        duplicate_ref_is_exists: false,
        unique_refs: false,
        sync: false,
        not_found: Some(Status::Gone),
        finds_node_first: true,
    });

    /// Show the task the op names by `ref` or `obj_id`: `czload verify`, and the first
    /// step of a delete. Not an `--op` value: a load of shows would change nothing.
    pub const SHOW: OpKind = OpKind(&Spec {
        name: "show",
        help: "",
        rows_are_ops: false,
        needs_ref: false,
        data: Data::Nothing,
        success: Status::Done,
        ends_in: &[
            Status::Done,
            Status::Gone,
            TROUBLE[0],
            TROUBLE[1],
            TROUBLE[2],
        ],
        duplicate_ref_is_exists: false,
        unique_refs: false,
        sync: false,
        not_found: Some(Status::Gone),
        finds_node_first: false,
    });

    /// The kinds `--op` offers, in the order its help lists them.
    pub const ALL: &'static [OpKind] =
        &[OpKind::CREATE, OpKind::MODIFY, OpKind::DELETE, OpKind::RAW];

    /// The kinds a raw row's `type` may name: those `--op` offers. Not `show`: a raw
    /// show of a task that is not there stays a refusal (`rejected`), as it always was,
    /// where verify's show makes it `gone`.
    const TYPES: &'static [OpKind] = &[OpKind::CREATE, OpKind::MODIFY, OpKind::DELETE];

    /// Its facts.
    pub fn spec(self) -> &'static Spec {
        self.0
    }

    /// The kind `--op NAME` names.
    pub fn named(name: &str) -> Option<OpKind> {
        OpKind::ALL.iter().copied().find(|k| k.0.name == name)
    }

    /// The op's `type` in the request body.
    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    /// The kind of the op a row sent: `self`, but where rows are ops, the kind its
    /// `type` names (`OTHER` for a type no kind has).
    pub fn of_row(self, op: &[u8]) -> OpKind {
        if !self.0.rows_are_ops {
            return self;
        }
        #[derive(serde::Deserialize)]
        struct Type<'a> {
            #[serde(borrow, rename = "type")]
            t: Option<std::borrow::Cow<'a, str>>,
        }
        let t = serde_json::from_slice::<Type>(op).ok().and_then(|t| t.t);
        t.and_then(|t| OpKind::TYPES.iter().copied().find(|k| k.0.name == t))
            .unwrap_or(OpKind::OTHER)
    }

    /// The status of a row whose op the server applied.
    pub fn success(self) -> Status {
        self.0.success
    }

    /// See [`Spec::duplicate_ref_is_exists`].
    pub fn duplicate_ref_is_exists(self) -> bool {
        self.0.duplicate_ref_is_exists
    }

    /// See [`Spec::unique_refs`].
    pub fn refs_are_unique(self) -> bool {
        self.0.unique_refs
    }
}

impl std::ops::Deref for OpKind {
    type Target = Spec;
    fn deref(&self) -> &Spec {
        self.0
    }
}

/// As the enum it was printed (`Create`, `Raw`): the mapping's fingerprint in a results
/// log's manifest holds it, and `--resume` compares it.
impl std::fmt::Debug for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut c = self.0.name.chars();
        if let Some(first) = c.next() {
            write!(f, "{}{}", first.to_ascii_uppercase(), c.as_str())?;
        }
        Ok(())
    }
}

/// `--op raw`: what the one-ref-once rule keys a create by, its process and ref
/// (`555` NUL `r-1`, into `out`), so that a second create of the ref is refused by the
/// reader as a repeated ref column is; `false` for an op that may name a ref again (a
/// modify, a show) or has none.
pub fn raw_create_key(op: &[u8], reference: &str, out: &mut String) -> bool {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, rename = "type")]
        t: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        conv_id: Option<&'a serde_json::value::RawValue>,
    }
    out.clear();
    if reference.is_empty() {
        return false;
    }
    match serde_json::from_slice::<Head>(op) {
        Ok(h) if h.t.as_deref() == Some("create") => {
            let conv = h.conv_id.map_or("", |c| c.get().trim_matches('"'));
            out.push_str(conv);
            out.push('\0');
            out.push_str(reference);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_row_is_of_its_type() {
        let name = |k: OpKind| k.name;
        let raw = OpKind::RAW;
        assert_eq!(
            name(raw.of_row(br#"{"id":"1","type":"create","obj":"task"}"#)),
            "create"
        );
        assert_eq!(
            name(raw.of_row(br#"{"obj":"task","type":"modify","ref":"a"}"#)),
            "modify"
        );
        assert_eq!(
            name(raw.of_row(br#"{"type":"delete","obj":"task"}"#)),
            "delete"
        );
        assert_eq!(name(raw.of_row(br#"{"type":"show"}"#)), "other");
        assert_eq!(name(raw.of_row(br#"{"type":"list"}"#)), "other");
        assert_eq!(name(raw.of_row(br#"{"type":"raw"}"#)), "other");
        assert_eq!(name(raw.of_row(b"{}")), "other");
        assert_eq!(
            name(OpKind::MODIFY.of_row(br#"{"type":"create"}"#)),
            "modify"
        );
        assert_eq!(OpKind::OTHER.success(), Status::Done);
        assert!(OpKind::CREATE.of_row(b"").duplicate_ref_is_exists());
    }

    #[test]
    fn every_kind_ends_in_its_success_and_the_troubles() {
        for k in OpKind::ALL.iter().chain([&OpKind::OTHER, &OpKind::SHOW]) {
            assert!(k.ends_in.contains(&k.success), "{k:?}");
            if let Some(s) = k.not_found {
                assert!(k.ends_in.contains(&s) && s.is_success(), "{k:?}");
            }
            // A kind that finds the node first carries no data to lose on the way.
            assert!(!k.finds_node_first || k.data == Data::Nothing, "{k:?}");
            for t in TROUBLE {
                assert!(k.ends_in.contains(&t), "{k:?}");
            }
            assert_eq!(
                k.ends_in.contains(&Status::Exists),
                k.duplicate_ref_is_exists || k.rows_are_ops,
                "{k:?}"
            );
            assert_eq!(k.ends_in.contains(&Status::NoReply), k.sync, "{k:?}");
        }
        for k in OpKind::ALL {
            assert_eq!(OpKind::named(k.name).map(|n| n.name), Some(k.name));
        }
        assert!(OpKind::named("other").is_none(), "not an --op value");
    }

    #[test]
    fn debug_is_the_fingerprint_s_old_spelling() {
        let names: Vec<String> = OpKind::ALL.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(names, ["Create", "Modify", "Delete", "Raw"]);
        assert_eq!(format!("{:?}", OpKind::OTHER), "Other");
    }

    #[test]
    fn raw_creates_are_keyed_by_process_and_ref() {
        let mut k = String::new();
        assert!(raw_create_key(
            br#"{"type":"create","conv_id":555}"#,
            "r",
            &mut k
        ));
        assert_eq!(k, "555\0r");
        assert!(raw_create_key(
            br#"{"type":"create","conv_id":"555"}"#,
            "r",
            &mut k
        ));
        assert_eq!(k, "555\0r");
        assert!(!raw_create_key(
            br#"{"type":"modify","conv_id":555}"#,
            "r",
            &mut k
        ));
        assert!(!raw_create_key(
            br#"{"type":"create","conv_id":555}"#,
            "",
            &mut k
        ));
    }
}
