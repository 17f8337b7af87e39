//! What becomes of a batch's rows, attempt by attempt: settled from a per-op answer,
//! resent (only the ops that need it, after a backoff), split in two (a malformed body,
//! down to its one bad row), `ambiguous` (no ref, and the request may have been applied),
//! or left unsettled by a stop (docs/architecture.md, "Exactly once").
//!
//! In: a `Batch` and the replies of `Sender::attempt`. Out: one `Outcome` per row, or
//! none for a row a stop left unsettled.

use super::answer::{self, MaybeOp};
use super::http::Reply;
use super::matching;
use super::retry::{self, Answer, OpVerdict, Verdict};
use super::sender::{now, Sender};
use crate::batch::Batch;
use crate::outcome::{Outcome, Status, TaskId};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// One request's worth of rows of a batch, being settled.
struct Settling<'a> {
    batch: &'a Batch,
    out: Vec<Option<Outcome>>,
    attempts: Vec<u32>,
    /// Per row: the last answer's latency (ms) and the times a rate limit refused it,
    /// for the results log (the report's latency and throttling charts).
    latency_ms: Vec<u32>,
    throttled: Vec<u32>,
    /// The retry time counts from the first answer, not from the wait for a rate slot
    /// or a connection before it, which at a low --rate can be long.
    started: Option<Instant>,
    /// Groups of rows to send; a malformed-body refusal splits its group in two.
    queue: VecDeque<Vec<usize>>,
    round: u32,
}

/// A `Verdict::Retry`'s parts: why, whether the request may have been applied, whether
/// it was throttling, and the pause the server asked for.
struct Resend {
    reason: String,
    maybe_applied: bool,
    throttled: bool,
    pause: Option<Duration>,
}

/// What came of one group's attempt: the rows to send again, and why.
#[derive(Default)]
struct Again {
    rows: Vec<usize>,
    reason: String,
    /// The server asked this group (only) to wait this long.
    wait: Option<Duration>,
    /// Of `rows`, those refused by a rate limit.
    throttled: usize,
}

impl Sender {
    /// Settles every row of `batch`. `None` for a row means a stop left it unsettled.
    pub async fn process(&self, batch: &Batch) -> Vec<Option<Outcome>> {
        let n = batch.len();
        self.stats.rows.fetch_add(n as u64, Ordering::Relaxed);
        let mut st = Settling {
            batch,
            out: vec![None; n],
            attempts: vec![0; n],
            latency_ms: vec![0; n],
            throttled: vec![0; n],
            started: None,
            queue: VecDeque::from([(0..n).collect()]),
            round: 0,
        };
        let mut url = String::with_capacity(self.cfg.base.len() + 96);
        while let Some(group) = st.queue.pop_front() {
            if self.is_stopped() || !self.send_group(&mut st, group, &mut url).await {
                break;
            }
        }
        for (i, o) in st.out.iter_mut().enumerate() {
            if let Some(o) = o {
                o.latency_ms = st.latency_ms[i];
                o.throttled = st.throttled[i];
            }
        }
        st.out
    }

    /// Sends one group of rows once and settles what its answer settles; the rest go back
    /// on the queue after a backoff. False when the run stopped.
    async fn send_group(&self, st: &mut Settling<'_>, group: Vec<usize>, url: &mut String) -> bool {
        for &i in &group {
            st.attempts[i] += 1;
        }
        if group.iter().any(|&i| st.attempts[i] > 1) {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        let body = self.with_sync_timeout(st.batch.body_for(&group));
        let Some((reply, probe, sent, took)) = self.attempt(body, group.len(), url).await else {
            // Stopped before sending: these rows were not attempted after all.
            for &i in &group {
                st.attempts[i] -= 1;
            }
            return false;
        };
        let started = *st.started.get_or_insert_with(now);
        if !self.breaker.track(&reply, probe, now()) {
            return self.unreachable(st, group);
        }
        let ms = took.as_millis().min(u32::MAX as u128) as u32;
        for &i in &group {
            st.latency_ms[i] = ms;
        }
        let mut again = Again::default();
        let verdict = self.read_reply(st, &group, &reply, &mut again);
        // A bare 503 is not taken as a refusal: it is also what a server answers when a
        // fault hits one request (2% of them, on the sandbox's --fail-before, took the
        // rate to 0.6 of a 6,000/s limit); a 503 that says why ("RPS limit", "too many
        // requests") is one (`retry::classify_response`).
        let throttled_ops = match &verdict {
            Verdict::Retry {
                throttled: true, ..
            } => group.len(),
            _ => again.throttled,
        };
        if matches!(reply, Reply::Http { .. }) {
            let pause = self.control.on_answer(
                now(),
                sent,
                group.len() - throttled_ops,
                throttled_ops,
                took,
            );
            if let Some(p) = pause {
                self.pause_for(p);
            }
            self.resize();
            if let Ok(mut s) = self.stats.short_of_rate.lock() {
                *s = self.control.shortfall().map(|f| f.holdable);
            }
        }
        match verdict {
            Verdict::PerOp => {}
            Verdict::Retry {
                reason,
                maybe_applied,
                throttled,
                pause,
            } => {
                let resend = Resend {
                    reason,
                    maybe_applied,
                    throttled,
                    pause,
                };
                self.retry_all(st, &group, resend, &mut again)
            }
            Verdict::Split { reason } => {
                split(st, group, reason);
                return true;
            }
            Verdict::Fatal { reason } => {
                self.set_fatal(reason);
                return false;
            }
        }
        self.requeue(st, again, started).await
    }

    /// The group's request never reached the server: its rows go back on the queue,
    /// their attempt not charged, to leave when the breaker lets them; or the run stops
    /// (`Breaker::give_up`), the rows left resumable.
    fn unreachable(&self, st: &mut Settling<'_>, group: Vec<usize>) -> bool {
        for &i in &group {
            st.attempts[i] -= 1;
        }
        let give_up = self
            .breaker
            .give_up(now(), self.cfg.max_retry_time, &self.cfg.base);
        if let Some(reason) = give_up {
            self.set_outage(reason);
            return false;
        }
        st.queue.push_front(group);
        true
    }

    /// Classifies a reply; a per-op answer settles its rows into `st` right away.
    fn read_reply(
        &self,
        st: &mut Settling<'_>,
        group: &[usize],
        reply: &Reply,
        again: &mut Again,
    ) -> Verdict {
        let (status, retry_after, location, date, body) = match reply {
            Reply::Transport(t, msg) => return retry::classify_transport(*t, msg),
            Reply::Http {
                status,
                retry_after,
                location,
                date,
                body,
            } => (*status, *retry_after, location, *date, body),
        };
        let parsed = body.as_ref().and_then(|b| answer::parse(b));
        // Borrowed from the body (no copy per request): only failures show it.
        let excerpt: Cow<str> = match body {
            Some(b) => String::from_utf8_lossy(&b[..b.len().min(200)]),
            None => Cow::Borrowed("(answer too large: over 32 MiB, not read)"),
        };
        let answer = Answer {
            request_proc: parsed.as_ref().and_then(|p| p.request_proc.as_deref()),
            description: parsed.as_ref().and_then(|p| p.description.as_deref()),
            excerpt: &excerpt,
            location: location.as_deref(),
        };
        let mut v = retry::classify_response(status, retry_after, &answer);
        if let (Verdict::Fatal { reason }, Some(server)) = (&mut v, date) {
            if let Some(note) = retry::clock_note(server, SystemTime::now()) {
                reason.push_str("; ");
                reason.push_str(&note);
            }
        }
        if v == Verdict::PerOp {
            let ops = parsed.map(|p| p.ops).unwrap_or_default();
            self.settle_ops(st, group, ops, again);
        }
        v
    }

    /// The whole group is to be sent again, except rows without a ref whose request may
    /// have been applied: those become `ambiguous`.
    fn retry_all(&self, st: &mut Settling<'_>, group: &[usize], r: Resend, again: &mut Again) {
        let Resend {
            reason,
            maybe_applied,
            throttled,
            pause,
        } = r;
        if throttled {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            for &i in group {
                st.throttled[i] += 1;
            }
        }
        if let Some(p) = pause {
            if self.control.pause_all(p) {
                self.pause_for(p);
            } else {
                again.wait = Some(p);
            }
        }
        tracing::debug!("retrying {} ops: {reason}", group.len());
        for &i in group {
            if maybe_applied && st.batch.reference(i).is_none() {
                // Without a ref a resend could create the task twice.
                st.out[i] = Some(Outcome::new(Status::Ambiguous, st.attempts[i]).with_error(format!(
                    "{reason}; the task may or may not have been created, and without a ref it is not resent"
                )));
            } else {
                again.rows.push(i);
            }
        }
        again.reason = reason;
    }

    /// Fails the rows of `again` that are out of attempts or time; the others go back on
    /// the queue after a backoff. False when the run stopped during the backoff.
    async fn requeue(&self, st: &mut Settling<'_>, again: Again, started: Instant) -> bool {
        if again.rows.is_empty() {
            return true;
        }
        let over_time = now().saturating_duration_since(started) >= self.cfg.max_retry_time;
        let mut keep = Vec::with_capacity(again.rows.len());
        for i in again.rows {
            if st.attempts[i] >= self.cfg.max_attempts || over_time {
                st.out[i] = Some(
                    Outcome::new(Status::Failed, st.attempts[i]).with_error(format!(
                        "{} (gave up after {} attempts)",
                        again.reason, st.attempts[i]
                    )),
                );
            } else {
                keep.push(i);
            }
        }
        if keep.is_empty() {
            return true;
        }
        let wait = self.backoff(st.round).max(again.wait.unwrap_or_default());
        if !self.sleep(wait).await {
            return false;
        }
        st.round += 1;
        st.queue.push_back(keep);
        true
    }

    /// Settles the rows of `group` from a per-op answer; rows to retry go to `again`.
    fn settle_ops(
        &self,
        st: &mut Settling<'_>,
        group: &[usize],
        ops: Vec<MaybeOp>,
        again: &mut Again,
    ) {
        let batch = st.batch;
        let positional = self.cfg.sync.is_some();
        let (mut answers, mut by_ref) = matching::by_row(batch, group, ops, positional);
        for &i in group {
            let a = answers[i]
                .take()
                .or_else(|| batch.reference(i).and_then(|r| by_ref.remove(r)));
            let Some(a) = a else {
                // Not answered: it may have been applied.
                if batch.reference(i).is_none() {
                    st.out[i] = Some(Outcome::new(Status::Ambiguous, st.attempts[i]).with_error(
                        "the answer did not mention this op; without a ref it is not resent",
                    ));
                } else {
                    again.rows.push(i);
                    again.reason = "the answer did not mention this op".into();
                }
                continue;
            };
            let proc_ = a.proc_.as_deref().unwrap_or("");
            // `--op raw`: each row is of its own type.
            let kind = self.cfg.op.of_row(batch.op(i));
            let dup_is_exists = kind.duplicate_ref_is_exists();
            let attempts = st.attempts[i];
            if self.cfg.sync.is_some() && kind.sync {
                if let Some(why) = retry::sync_no_reply(proc_, a.description.as_deref()) {
                    let mut o = Outcome::new(Status::NoReply, attempts).with_error(why);
                    o.proc_ = Some(proc_.to_string());
                    st.out[i] = Some(with_obj_id(o, a.obj_id.as_deref()));
                    continue;
                }
            }
            if let Some(gone) = kind.not_found {
                if proc_ != "ok" && retry::task_not_found(proc_, a.description.as_deref()) {
                    let mut o = Outcome::new(gone, attempts);
                    o.proc_ = Some(proc_.to_string());
                    st.out[i] = Some(o);
                    continue;
                }
            }
            let classify = if self.cfg.one_process {
                retry::classify_op_in_one_process
            } else {
                retry::classify_op
            };
            st.out[i] = match classify(dup_is_exists, proc_, a.description.as_deref()) {
                OpVerdict::Ok => Some(with_obj_id(
                    Outcome {
                        reply: a.data.map(Box::from),
                        node_id: a.node_id.as_deref().map(TaskId::new),
                        ..Outcome::new(kind.success(), attempts)
                    },
                    a.obj_id.as_deref(),
                )),
                OpVerdict::Exists => Some(with_obj_id(
                    Outcome::new(Status::Exists, attempts),
                    a.obj_id.as_deref(),
                )),
                OpVerdict::Retry { reason, throttled } => {
                    if throttled {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                        st.throttled[i] += 1;
                        again.throttled += 1;
                    }
                    again.rows.push(i);
                    again.reason = reason;
                    None
                }
                OpVerdict::Reject { reason } => {
                    let mut o = Outcome::new(Status::Rejected, attempts).with_error(reason);
                    o.proc_ = Some(proc_.to_string());
                    Some(o)
                }
                OpVerdict::Fatal { reason } => {
                    self.set_fatal(reason);
                    None
                }
            };
        }
    }
}

/// A body refused as malformed: a lone row is rejected, a group is split in two and sent
/// again, at no cost to the rows' attempts.
fn split(st: &mut Settling<'_>, group: Vec<usize>, reason: String) {
    if group.len() == 1 {
        st.out[group[0]] =
            Some(Outcome::new(Status::Rejected, st.attempts[group[0]]).with_error(reason));
        return;
    }
    for &i in &group {
        st.attempts[i] -= 1;
    }
    let (a, b) = group.split_at(group.len() / 2);
    st.queue.push_front(b.to_vec());
    st.queue.push_front(a.to_vec());
}

fn with_obj_id(mut o: Outcome, obj_id: Option<&str>) -> Outcome {
    o.obj_id = obj_id.map(TaskId::new);
    o
}
