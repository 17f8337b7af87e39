//! A scripted [`Transport`] for the sender's unit tests: it answers each call from a queue
//! of canned steps (then from a rule, by default "every op ok"), records what it was sent
//! and when, and takes time only on tokio's clock, so a test on a paused clock runs a
//! minute of backoffs in no time.

use super::http::{Posting, Reply, Transport};
use super::retry::TransportError;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// One call the transport got.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub url: String,
    pub body: Bytes,
    pub timeout: Duration,
    /// When it came, on tokio's clock, from the transport's creation.
    pub at: Duration,
}

impl Call {
    /// The ops of the body.
    pub fn ops(&self) -> Vec<Value> {
        let v: Value = serde_json::from_slice(&self.body).expect("a JSON body");
        v["ops"].as_array().expect("an ops array").clone()
    }

    /// The op ids of the body, as numbers.
    pub fn ids(&self) -> Vec<u64> {
        self.ops()
            .iter()
            .map(|o| o["id"].as_str().expect("an id").parse().expect("a number"))
            .collect()
    }
}

/// One canned answer: a reply, given after a delay (longer than the call's timeout: a
/// timeout, at the timeout).
#[derive(Debug, Clone)]
pub(crate) struct Step {
    after: Duration,
    reply: Reply,
}

impl Step {
    /// An HTTP answer with this status and body.
    pub fn http(status: u16, body: &str) -> Step {
        Step {
            after: Duration::ZERO,
            reply: Reply::Http {
                status,
                retry_after: None,
                location: None,
                date: None,
                body: Some(Bytes::from(body.to_string())),
            },
        }
    }

    /// No answer: the transport failed this way.
    pub fn fail(kind: TransportError) -> Step {
        Step {
            after: Duration::ZERO,
            reply: Reply::Transport(kind, format!("scripted {kind:?}")),
        }
    }

    /// A `200 {"request_proc":"ok"}` answer whose ops are `f` of each op sent.
    pub fn per_op(call: &Call, f: impl Fn(&Value) -> Option<Value>) -> Step {
        let ops: Vec<Value> = call.ops().iter().filter_map(f).collect();
        Step::http(200, &json!({"request_proc": "ok", "ops": ops}).to_string())
    }

    /// Every op of `call` created, its task id `task-ID`.
    pub fn all_ok(call: &Call) -> Step {
        Step::per_op(call, |op| Some(ok(op)))
    }

    /// Given after `d`.
    pub fn after(mut self, d: Duration) -> Step {
        self.after = d;
        self
    }

    /// With a `Retry-After` header.
    pub fn retry_after(mut self, d: Duration) -> Step {
        if let Reply::Http { retry_after, .. } = &mut self.reply {
            *retry_after = Some(d);
        }
        self
    }

    /// With a `Date` header.
    pub fn date(mut self, t: SystemTime) -> Step {
        if let Reply::Http { date, .. } = &mut self.reply {
            *date = Some(t);
        }
        self
    }
}

/// The answer `ok` for `op`, by its id and ref.
pub(crate) fn ok(op: &Value) -> Value {
    json!({"id": op["id"], "ref": op["ref"], "proc": "ok", "obj_id": format!("task-{}", op["id"].as_str().unwrap_or(""))})
}

type Rule = Box<dyn Fn(&Call) -> Step + Send + Sync>;
type Once = Box<dyn FnOnce(&Call) -> Step + Send>;

/// The transport: the queue, the rule after it, and the calls so far.
pub(crate) struct Scripted {
    steps: Mutex<VecDeque<Once>>,
    rule: Rule,
    calls: Mutex<Vec<Call>>,
    start: tokio::time::Instant,
}

impl Scripted {
    /// Answers every call "all ok" until told otherwise.
    pub fn new() -> Scripted {
        Scripted {
            steps: Mutex::new(VecDeque::new()),
            rule: Box::new(Step::all_ok),
            calls: Mutex::new(Vec::new()),
            start: tokio::time::Instant::now(),
        }
    }

    /// The next call not yet scripted gets `step`.
    pub fn then(self, step: Step) -> Scripted {
        self.then_with(move |_| step)
    }

    /// The next call not yet scripted gets what `f` makes of it.
    pub fn then_with(self, f: impl FnOnce(&Call) -> Step + Send + 'static) -> Scripted {
        self.steps.lock().unwrap().push_back(Box::new(f));
        self
    }

    /// Calls past the queue are answered by `rule`.
    pub fn otherwise(mut self, rule: impl Fn(&Call) -> Step + Send + Sync + 'static) -> Scripted {
        self.rule = Box::new(rule);
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Transport for Scripted {
    fn post<'a>(&'a self, url: &'a str, body: Bytes, timeout: Duration) -> Posting<'a> {
        Box::pin(async move {
            let call = Call {
                url: url.to_string(),
                body,
                timeout,
                at: self.start.elapsed(),
            };
            self.calls.lock().unwrap().push(call.clone());
            let queued = self.steps.lock().unwrap().pop_front();
            let step = match queued {
                Some(f) => f(&call),
                None => (self.rule)(&call),
            };
            if step.after > timeout {
                tokio::time::sleep(timeout).await;
                return Reply::Transport(TransportError::Timeout, "scripted timeout".into());
            }
            // No await for an immediate answer: a refused connection comes back at once.
            if !step.after.is_zero() {
                tokio::time::sleep(step.after).await;
            }
            step.reply
        })
    }
}
