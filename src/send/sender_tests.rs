//! The sender's verdicts, one test each, over the scripted transport and tokio's paused
//! clock: no server, no wall time. Each test checks what the transport was sent (which
//! ops, how often, when) and the outcomes the rows got.

use super::control::Rate;
use super::retry::TransportError;
use super::scripted::{ok, Call, Scripted, Step};
use super::sender::{SendConfig, Sender};
use crate::batch::{Batch, Batcher, RowKey};
use crate::op::OpKind;
use crate::outcome::{Outcome, Status};
use crate::sign::Secret;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

fn cfg() -> SendConfig {
    SendConfig {
        base: "http://czload.test".into(),
        login: "1001".into(),
        secret: Secret::new("test-secret"),
        concurrency: Some(4),
        max_concurrency: 8,
        rate: Rate::Unlimited,
        share: 1.0,
        batch_size: 100,
        auto_start: None,
        learned: None,
        timeout: 5 * S,
        max_attempts: 5,
        max_retry_time: 60 * S,
        insecure: false,
        op: OpKind::CREATE,
        sync: None,
        one_process: false,
        backoff_base: 100 * MS,
        backoff_cap: 2 * S,
    }
}

fn sender(t: &Arc<Scripted>) -> Sender {
    Sender::with_transport(cfg(), CancellationToken::new(), t.clone())
}

/// A batch of creates with these refs (`None`: no ref), op ids `first`, `first + 1`, ...
fn batch_from(first: u64, refs: &[Option<&str>]) -> Batch {
    let mut out = None;
    let mut b = Batcher::new(1000, 1 << 20, |x| out = Some(x));
    for (i, r) in refs.iter().enumerate() {
        let id = first + i as u64;
        let mut op = json!({"id": id.to_string(), "type": "create", "obj": "task", "conv_id": 1, "data": {"n": i}});
        if let Some(r) = r {
            op["ref"] = json!(r);
        }
        let at = b.begin();
        b.buf().extend_from_slice(op.to_string().as_bytes());
        let key = RowKey {
            id,
            input: 0,
            row: i as u64 + 1,
            line: i as u64 + 2,
        };
        b.commit(at, key, r.unwrap_or(""), |raw| {
            raw.extend_from_slice(b"raw")
        })
        .unwrap();
    }
    b.flush();
    drop(b);
    out.expect("a batch")
}

/// `n` rows with refs `r1`, `r2`, ... and op ids 1, 2, ...
fn batch(n: usize) -> Batch {
    let refs: Vec<String> = (1..=n).map(|i| format!("r{i}")).collect();
    let refs: Vec<Option<&str>> = refs.iter().map(|r| Some(r.as_str())).collect();
    batch_from(1, &refs)
}

/// The rows (batch indexes, ids from 1) of each call.
fn rows(calls: &[Call]) -> Vec<Vec<u64>> {
    calls
        .iter()
        .map(|c| c.ids().iter().map(|id| id - 1).collect())
        .collect()
}

fn settled(out: &[Option<Outcome>]) -> Vec<(Status, u32)> {
    out.iter()
        .map(|o| {
            let o = o.as_ref().expect("settled");
            assert!(cfg().op.ends_in.contains(&o.status), "{o:?}");
            (o.status, o.attempts)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_attempt_is_the_batch_signed() {
    let t = Arc::new(Scripted::new());
    let s = sender(&t);
    let b = batch(3);
    let out = s.process(&b).await;
    assert_eq!(settled(&out), vec![(Status::Created, 1); 3]);
    assert_eq!(
        out[2].as_ref().unwrap().obj_id.as_ref().unwrap().as_str(),
        "task-3"
    );
    let calls = t.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body, b.body);
    assert_eq!(calls[0].timeout, 5 * S);
    assert!(calls[0]
        .url
        .starts_with("http://czload.test/api/2/json/1001/"));
    assert!(!calls[0].url.contains("test-secret"));
    assert_eq!(s.stats.requests.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_poison_batch_is_split_down_to_its_bad_row() {
    // Row 5 (op id 6) makes any body holding it malformed.
    let t = Arc::new(Scripted::new().otherwise(|c| {
        if c.ids().contains(&6) {
            Step::http(400, r#"{"request_proc":"error","description":"bad body"}"#)
        } else {
            Step::all_ok(c)
        }
    }));
    let s = sender(&t);
    let out = s.process(&batch(8)).await;
    let calls = t.calls();
    assert_eq!(
        rows(&calls),
        vec![
            vec![0, 1, 2, 3, 4, 5, 6, 7],
            vec![0, 1, 2, 3],
            vec![4, 5, 6, 7],
            vec![4, 5],
            vec![4],
            vec![5],
            vec![6, 7],
        ]
    );
    // A split costs no backoff and no attempt.
    assert!(calls.iter().all(|c| c.at.is_zero()));
    let mut want = vec![(Status::Created, 1); 8];
    want[5] = (Status::Rejected, 1);
    assert_eq!(settled(&out), want);
    let bad = out[5].as_ref().unwrap();
    assert!(
        bad.error.as_deref().unwrap().contains("HTTP 400"),
        "{bad:?}"
    );
    assert_eq!(s.stats.retries.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn only_the_ops_that_need_it_are_resent() {
    // Row 0 ok, row 1 throttled, row 2 not in the answer, row 3 refused for good.
    let t = Arc::new(Scripted::new().then_with(|c| {
        Step::per_op(c, |op| match op["id"].as_str() {
            Some("1") => Some(ok(op)),
            Some("2") => Some(json!({"id": "2", "proc": "rps_limit"})),
            Some("3") => None,
            _ => Some(json!({"id": op["id"], "proc": "error", "description": "invalid value"})),
        })
    }));
    let b = batch(4);
    let s = sender(&t);
    let out = s.process(&b).await;
    let calls = t.calls();
    assert_eq!(rows(&calls), vec![vec![0, 1, 2, 3], vec![1, 2]]);
    // After a backoff with full jitter: at most the first delay.
    assert!(calls[1].at <= 100 * MS, "{:?}", calls[1].at);
    assert_eq!(
        settled(&out),
        vec![
            (Status::Created, 1),
            (Status::Created, 2),
            (Status::Created, 2),
            (Status::Rejected, 1)
        ]
    );
    assert_eq!(out[1].as_ref().unwrap().throttled, 1);
    assert_eq!(out[3].as_ref().unwrap().proc_.as_deref(), Some("error"));
    assert_eq!(s.stats.retries.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.throttled.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_ref_an_unknown_outcome_is_ambiguous_and_not_resent() {
    // A 502 may come after the ops were applied.
    let t = Arc::new(Scripted::new().then(Step::http(502, "bad gateway")));
    let s = sender(&t);
    let out = s
        .process(&batch_from(1, &[Some("a"), None, Some("c"), None]))
        .await;
    assert_eq!(rows(&t.calls()), vec![vec![0, 1, 2, 3], vec![0, 2]]);
    assert_eq!(
        settled(&out),
        vec![
            (Status::Created, 2),
            (Status::Ambiguous, 1),
            (Status::Created, 2),
            (Status::Ambiguous, 1)
        ]
    );
    let e = out[1].as_ref().unwrap().error.as_deref().unwrap();
    assert!(e.contains("HTTP 502") && e.contains("without a ref"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn an_op_the_answer_leaves_out_is_ambiguous_without_a_ref() {
    let t = Arc::new(
        Scripted::new().otherwise(|c| Step::per_op(c, |op| (op["id"] == "1").then(|| ok(op)))),
    );
    let s = sender(&t);
    let out = s.process(&batch_from(1, &[None, None])).await;
    assert_eq!(rows(&t.calls()), vec![vec![0, 1]]);
    assert_eq!(
        settled(&out),
        vec![(Status::Created, 1), (Status::Ambiguous, 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_resends_what_has_a_ref() {
    let t = Arc::new(Scripted::new().then_with(|c| Step::all_ok(c).after(60 * S)));
    let s = sender(&t);
    let out = s.process(&batch_from(1, &[Some("a"), None])).await;
    let calls = t.calls();
    assert_eq!(rows(&calls), vec![vec![0, 1], vec![0]]);
    // The resend leaves after the timeout and a backoff of at most the first delay.
    assert!(
        calls[1].at >= 5 * S && calls[1].at <= 5 * S + 100 * MS,
        "{:?}",
        calls[1].at
    );
    assert_eq!(
        settled(&out),
        vec![(Status::Created, 2), (Status::Ambiguous, 1)]
    );
    let e = out[1].as_ref().unwrap().error.as_deref().unwrap();
    assert!(e.contains("no answer before the timeout"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn retryable_trouble_fails_the_rows_after_max_attempts() {
    let t = Arc::new(Scripted::new().otherwise(|_| Step::http(503, "overloaded")));
    let s = sender(&t);
    let out = s.process(&batch(2)).await;
    assert_eq!(rows(&t.calls()), vec![vec![0, 1]; 5]);
    assert_eq!(settled(&out), vec![(Status::Failed, 5); 2]);
    let e = out[0].as_ref().unwrap().error.as_deref().unwrap();
    assert!(
        e.contains("HTTP 503") && e.contains("gave up after 5 attempts"),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_every_sender() {
    let t = Arc::new(Scripted::new().then(Step::http(429, "slow down").retry_after(3 * S)));
    let s = sender(&t);
    let (a, b) = (batch(2), batch_from(3, &[Some("b1")]));
    let (out_a, out_b) = tokio::join!(s.process(&a), async {
        // Starts during the pause: it waits too.
        tokio::time::sleep(S).await;
        s.process(&b).await
    });
    let calls = t.calls();
    assert_eq!(calls[0].ids(), vec![1, 2]);
    assert!(calls[0].at.is_zero());
    assert_eq!(calls.len(), 3);
    for c in &calls[1..] {
        assert!(c.at >= 3 * S && c.at < 3 * S + 200 * MS, "{:?}", c.at);
    }
    let mut resent: Vec<Vec<u64>> = calls[1..].iter().map(Call::ids).collect();
    resent.sort();
    assert_eq!(resent, vec![vec![1, 2], vec![3]]);
    assert_eq!(settled(&out_a), vec![(Status::Created, 2); 2]);
    assert_eq!(out_a[0].as_ref().unwrap().throttled, 1);
    assert_eq!(settled(&out_b), vec![(Status::Created, 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_answer_stops_everything() {
    // The server's clock five minutes ahead: the reason names the local clock.
    let server = SystemTime::now() + 300 * S;
    let t = Arc::new(
        Scripted::new().then(
            Step::http(
                401,
                r#"{"request_proc":"error","description":"bad signature"}"#,
            )
            .date(server),
        ),
    );
    let s = sender(&t);
    let out = s.process(&batch(3)).await;
    assert!(out.iter().all(Option::is_none), "unsettled, so resumable");
    assert!(s.is_stopped());
    let why = s.fatal().unwrap();
    assert!(
        why.contains("HTTP 401")
            && why.contains("the local clock is 29")
            && why.contains("s behind"),
        "{why}"
    );
    // Nothing more goes out.
    let later = s.process(&batch_from(4, &[Some("x")])).await;
    assert!(later[0].is_none());
    assert_eq!(t.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_on_refused_connections_and_closes_on_the_first_answer() {
    // Refused for the first 3 s.
    let t = Arc::new(Scripted::new().otherwise(|c| {
        if c.at < 3 * S {
            Step::fail(TransportError::Connect)
        } else {
            Step::all_ok(c)
        }
    }));
    let s = sender(&t);
    let (a, b) = (batch(2), batch_from(3, &[Some("b1"), Some("b2")]));
    let (out_a, out_b) = tokio::join!(s.process(&a), s.process(&b));
    // The attempts that never reached the server are not charged.
    assert_eq!(settled(&out_a), vec![(Status::Created, 1); 2]);
    assert_eq!(settled(&out_b), vec![(Status::Created, 1); 2]);
    let calls = t.calls();
    let refused: Vec<Duration> = calls
        .iter()
        .map(|c| c.at)
        .filter(|at| *at < 3 * S)
        .collect();
    // One probe at a time, each wait twice the last (from twice the backoff base): 0,
    // 0.2, 0.6, 1.4 s; the next (3.0 s) gets an answer.
    assert_eq!(refused.len(), 4, "{refused:?}");
    let gaps: Vec<Duration> = refused.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([200 * MS, 400 * MS, 800 * MS]) {
        assert!(*gap >= want && *gap < want + 60 * MS, "{gaps:?}");
    }
    // The first answer lets the other batch go at once (within a waiting sender's poll).
    let answered: Vec<&Call> = calls.iter().filter(|c| c.at >= 3 * S).collect();
    assert_eq!(answered.len(), 2);
    assert!(answered[1].at - answered[0].at <= 60 * MS, "{:?}", answered);
    assert_eq!(s.breaker.down_since().load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_never_reached_stops_the_run_after_10_s() {
    let t = Arc::new(Scripted::new().otherwise(|_| Step::fail(TransportError::Connect)));
    let s = sender(&t);
    let out = s.process(&batch(2)).await;
    assert!(out.iter().all(Option::is_none));
    let why = s.fatal().unwrap();
    assert!(
        why.contains("could not connect to http://czload.test since the start"),
        "{why}"
    );
    let last = t.calls().last().unwrap().at;
    assert!(last >= 10 * S && last < 16 * S, "{last:?}");
}
