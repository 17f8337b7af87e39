//! What the sandbox received and did, counted with atomics.
//!
//! In: increments from the request handlers (no lock, `Relaxed`: the counters are
//! independent tallies, read as a snapshot). Out: [`Stats`], a plain copy served at
//! `GET /__sandbox/stats` and returned by `Sandbox::stats`.
//!
//! Invariant the tests lean on: `ops == created + modified + shown + deleted + op_errors`, where `ops`
//! counts the operations that were answered one by one (including those of requests whose
//! answer was then lost to `--fail-after` or `--drop-after`).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// API requests received (`POST /api/...`), whatever became of them.
    pub requests: u64,
    /// Operations processed one by one (each got a `proc`, `ok` or an error).
    pub ops: u64,
    /// Tasks created.
    pub created: u64,
    /// Tasks modified.
    pub modified: u64,
    /// `show` operations answered with a task.
    pub shown: u64,
    /// Creates refused because their ref was taken in that process (also in `op_errors`).
    pub duplicate_refs: u64,
    /// Operations answered with a `proc` other than `ok`.
    pub op_errors: u64,
    /// Requests refused for their login, signature or timestamp.
    pub auth_failures: u64,
    /// Requests whose body was not `{"ops":[...]}`.
    pub format_errors: u64,
    /// Requests refused whole by the RPS limit (`--rps-mode request`).
    pub throttled_requests: u64,
    /// Operations refused by the RPS limit, in either mode.
    pub throttled_ops: u64,
    /// Requests answered 503 before anything was applied.
    pub faults_fail_before: u64,
    /// Requests applied, then answered 502.
    pub faults_fail_after: u64,
    /// Requests applied, then dropped without an answer.
    pub faults_drop_after: u64,
    /// Requests refused with 413 for their body size.
    pub too_large: u64,
    /// Tasks in the store now.
    pub tasks: u64,
    /// Tasks deleted (`delete` answered ok); they are no longer in `tasks`.
    #[serde(default)]
    pub deleted: u64,
    /// Creates answered ok whose task was then not kept (`--lose-every`): what a server
    /// that loses tasks looks like to `czload verify`.
    #[serde(default)]
    pub lost: u64,
}

/// The live counters; one field per `Stats` field.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub ops: AtomicU64,
    pub created: AtomicU64,
    pub modified: AtomicU64,
    pub shown: AtomicU64,
    pub duplicate_refs: AtomicU64,
    pub op_errors: AtomicU64,
    pub auth_failures: AtomicU64,
    pub format_errors: AtomicU64,
    pub throttled_requests: AtomicU64,
    pub throttled_ops: AtomicU64,
    pub faults_fail_before: AtomicU64,
    pub faults_fail_after: AtomicU64,
    pub faults_drop_after: AtomicU64,
    pub too_large: AtomicU64,
    pub tasks: AtomicU64,
    pub deleted: AtomicU64,
    pub lost: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.fetch_add(n, Relaxed);
    }
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests.load(Relaxed),
            ops: self.ops.load(Relaxed),
            created: self.created.load(Relaxed),
            modified: self.modified.load(Relaxed),
            shown: self.shown.load(Relaxed),
            duplicate_refs: self.duplicate_refs.load(Relaxed),
            op_errors: self.op_errors.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            format_errors: self.format_errors.load(Relaxed),
            throttled_requests: self.throttled_requests.load(Relaxed),
            throttled_ops: self.throttled_ops.load(Relaxed),
            faults_fail_before: self.faults_fail_before.load(Relaxed),
            faults_fail_after: self.faults_fail_after.load(Relaxed),
            faults_drop_after: self.faults_drop_after.load(Relaxed),
            too_large: self.too_large.load(Relaxed),
            tasks: self.tasks.load(Relaxed),
            deleted: self.deleted.load(Relaxed),
            lost: self.lost.load(Relaxed),
        }
    }
}
