//! Retry decisions: one pure function per level, table-tested.
//!
//! In: what came back for a request (a transport failure, or an HTTP status with the
//! answer's `request_proc`/`description`) and, per op, its `proc`/`description`. Out: what
//! to do, with a reason: the op is done, retry it, reject it, or stop the whole run.
//!
//! PROTOCOL.md leaves the form of auth and throttling errors unknown, so both are
//! recognised by status *and* by text, and an unexplained request-level refusal stops the
//! run (all rows stay resumable) rather than rejecting rows that may be fine.

use std::time::Duration;

/// How a request failed below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// Could not connect: nothing was sent.
    Connect,
    /// No answer in time: the server may have applied the request.
    Timeout,
    /// The connection broke after sending (reset, closed without an answer).
    Broken,
    /// The server's TLS certificate did not verify: no retry can change that, and only
    /// the user may decide to trust the server (`--insecure`).
    Certificate,
    /// An `https://` URL to a server that answered in plain HTTP: the scheme of --url is
    /// wrong, and stays wrong however often we retry.
    NotTls,
}

/// What the whole request's answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The answer lists per-op results: classify each with `classify_op`.
    PerOp,
    /// Send every op again. `maybe_applied`: the server may have applied them, so an op
    /// without a ref must not be resent blindly. `pause`: every sender waits this long.
    Retry {
        reason: String,
        maybe_applied: bool,
        throttled: bool,
        pause: Option<Duration>,
    },
    /// The body was refused as malformed: split it so that only the bad ops are rejected.
    Split { reason: String },
    /// Nothing more can succeed (credentials, signature, clock, wrong URL).
    Fatal { reason: String },
}

/// The parts of an answer body that matter for the decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer<'a> {
    /// `None` when the body is not a JSON object.
    pub request_proc: Option<&'a str>,
    pub description: Option<&'a str>,
    /// The start of a non-JSON body (an HTML error page), for messages.
    pub excerpt: &'a str,
    /// The `Location` header of a redirect, so the message can say where to point --url.
    pub location: Option<&'a str>,
}

fn is_throttle_text(s: &str) -> bool {
    throttle_words(&s.to_ascii_lowercase())
}

/// Whether a description speaks of a rate limit; `low` is already lowercase.
fn throttle_words(low: &str) -> bool {
    low.contains("rps limit") || low.contains("rate limit") || low.contains("too many requests")
}

/// What kind of transport failure an HTTP client error is. `is_timeout`/`is_connect` are
/// what reqwest says; `chain` is the error with its causes, as text: reqwest has no kind
/// for TLS failures, and rustls says what went wrong only in its messages
/// ("invalid peer certificate: UnknownIssuer", "received corrupt message of type
/// InvalidContentType").
pub fn transport_kind(is_timeout: bool, is_connect: bool, chain: &str) -> TransportError {
    let s = chain.to_ascii_lowercase();
    if is_timeout {
        TransportError::Timeout
    } else if s.contains("invalid peer certificate")
        || s.contains("certificate verify failed")
        || s.contains("self-signed certificate")
        || s.contains("self signed certificate")
    {
        TransportError::Certificate
    } else if s.contains("invalidcontenttype") || s.contains("wrong version number") {
        TransportError::NotTls
    } else if is_connect {
        TransportError::Connect
    } else {
        TransportError::Broken
    }
}

/// Decides from a transport failure; `detail` is what the HTTP client said.
pub fn classify_transport(t: TransportError, detail: &str) -> Verdict {
    let retry = |what: &str, maybe_applied: bool| Verdict::Retry {
        reason: format!("{what}: {detail}"),
        maybe_applied,
        throttled: false,
        pause: None,
    };
    match t {
        TransportError::Connect => retry("could not connect", false),
        TransportError::Timeout => retry("no answer before the timeout", true),
        TransportError::Broken => retry("connection closed before the answer", true),
        TransportError::Certificate => Verdict::Fatal {
            reason: format!(
                "the server's TLS certificate does not verify ({detail}); check --url, or pass --insecure if you trust this server"
            ),
        },
        TransportError::NotTls => Verdict::Fatal {
            reason: format!(
                "the server does not speak TLS ({detail}); check the scheme of --url (http:// or https://)"
            ),
        },
    }
}

/// What to check after an authentication failure (docs/protocol.md: a refused login,
/// signature or timestamp all look alike).
pub const AUTH_HINT: &str = "check --api-login, the secret (COREZOID_API_SECRET or --secret-file, for that login) and that this API user has rights on the process (--conv-id)";

/// Beyond this the local clock is named as a likely cause of a refused request: the
/// server's accepted skew is unknown (docs/protocol.md), a minute is a common window.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A note on the local clock when the server's (`Date` header) is more than `CLOCK_SKEW`
/// away from `local`.
pub fn clock_note(server: std::time::SystemTime, local: std::time::SystemTime) -> Option<String> {
    let (off, ahead) = match local.duration_since(server) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    (off > CLOCK_SKEW).then(|| {
        format!(
            "the local clock is {} s {} the server's (its Date header): a signed request carries a timestamp, fix the clock (NTP)",
            off.as_secs(),
            if ahead { "ahead of" } else { "behind" }
        )
    })
}

/// Decides from an HTTP answer.
pub fn classify_response(status: u16, retry_after: Option<Duration>, a: &Answer) -> Verdict {
    // The common case first, before any message is built.
    if (200..=299).contains(&status) && a.request_proc == Some("ok") {
        return Verdict::PerOp;
    }
    let desc = a.description.unwrap_or("");
    let what = if desc.is_empty() {
        a.excerpt.trim().chars().take(120).collect::<String>()
    } else {
        desc.to_string()
    };
    let retry = |reason: String, maybe_applied: bool, throttled: bool| Verdict::Retry {
        reason,
        maybe_applied,
        throttled,
        pause: retry_after,
    };
    match status {
        200..=299 => match a.request_proc {
            Some("ok") => Verdict::PerOp,
            Some("format_error") => Verdict::Split {
                reason: format!("format_error: {what}"),
            },
            Some(_) if is_throttle_text(desc) => retry(format!("throttled: {what}"), false, true),
            Some(p) => Verdict::Fatal {
                reason: format!("the server refused the request ({p}): {what}; {AUTH_HINT}"),
            },
            // A 2xx we cannot read may have been applied.
            None => retry(
                format!("HTTP {status} with an unreadable answer: {what}"),
                true,
                false,
            ),
        },
        401 | 403 => Verdict::Fatal {
            reason: format!("HTTP {status}: {what}; {AUTH_HINT}"),
        },
        400 | 413 if is_throttle_text(desc) => retry(format!("HTTP {status}: {what}"), false, true),
        400 | 413 => Verdict::Split {
            reason: format!("HTTP {status}: {what}"),
        },
        408 => retry(format!("HTTP 408: {what}"), false, false),
        429 => Verdict::Retry {
            reason: format!("HTTP 429: {what}"),
            maybe_applied: false,
            throttled: true,
            pause: Some(retry_after.unwrap_or(Duration::from_secs(1))),
        },
        // 503 is what overloaded servers and the RPS limit answer before doing anything.
        503 => retry(format!("HTTP 503: {what}"), false, is_throttle_text(desc)),
        501 => Verdict::Fatal {
            reason: format!(
                "HTTP 501: the server does not implement this API; check --url ({what})"
            ),
        },
        // 500, 502, 504 and the rest: a gateway or a crash, possibly after applying.
        500..=599 => retry(format!("HTTP {status}: {what}"), true, false),
        300..=399 => Verdict::Fatal {
            reason: match a.location {
                Some(to) => format!(
                    "HTTP {status}: the server redirects to {to}; point --url at the final address"
                ),
                None => {
                    format!("HTTP {status}: the server redirects; point --url at the final address")
                }
            },
        },
        404 => Verdict::Fatal {
            reason: format!("HTTP 404: no Corezoid API at this address; check --url ({what})"),
        },
        _ => Verdict::Fatal {
            reason: format!("HTTP {status}: {what}"),
        },
    }
}

/// What one op's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpVerdict {
    /// Applied now.
    Ok,
    /// Create answered "duplicate ref": the task was already there.
    Exists,
    Retry {
        reason: String,
        throttled: bool,
    },
    Reject {
        reason: String,
    },
    Fatal {
        reason: String,
    },
}

/// Whether an op's refusal says its task is not there: the tags `not_found_task` (the
/// API reference) and `obj_id_not_found` (the seed page's example), or the words "task
/// not found" / "task does not exist" (docs/protocol.md, Task show, modify and delete).
pub fn task_not_found(proc_: &str, description: Option<&str>) -> bool {
    if matches!(proc_, "not_found_task" | "obj_id_not_found") {
        return true;
    }
    let low = description.unwrap_or("").to_ascii_lowercase();
    low.contains("task not found") || low.contains("task does not exist")
}

/// Decides from one op's `proc` and `description`.
pub fn classify_op(is_create: bool, proc_: &str, description: Option<&str>) -> OpVerdict {
    if proc_ == "ok" {
        return OpVerdict::Ok;
    }
    let desc = description.unwrap_or("");
    // A re-run gets "not unical reference" for nearly every op: decided before building
    // any text.
    if is_create && proc_ == "not_unical_ref" {
        return OpVerdict::Exists;
    }
    let low = desc.to_ascii_lowercase();
    let dup = low.contains("not unical")
        || low.contains("not unique ref")
        || low.contains("duplicate ref");
    if dup && is_create {
        return OpVerdict::Exists;
    }
    let reason = if desc.is_empty() {
        proc_.to_string()
    } else {
        format!("{proc_}: {desc}")
    };
    if throttle_words(&low) || proc_ == "rps_limit" {
        return OpVerdict::Retry {
            reason,
            throttled: true,
        };
    }
    // Auth failures come at the request level; an op's description only stops the run
    // when it speaks of the credentials themselves (a field named `timestamp` failing
    // validation is an ordinary rejection).
    if low.contains("signature") || low.contains("api login") {
        return OpVerdict::Fatal { reason };
    }
    OpVerdict::Reject { reason }
}

/// Op refusals that speak of the process or of the API key's rights on it, not of the row:
/// when every op goes to the one process of `--conv-id`, every row would get the same, so
/// the first stops the run (docs/protocol.md, Errors: process-level refusals). Each is a
/// tag or a lowercase piece of the description, and what the user should check.
pub const PROCESS_REFUSALS: &[(&str, &str)] = &[
    (
        "does not exist",
        "no such process on this server for this API key: check --conv-id (and --url)",
    ),
    (
        "access_denied",
        "the API key has no rights on the process: check --conv-id, and that --api-login's key may create and modify tasks in it (the process's sharing settings)",
    ),
    (
        "access denied",
        "the API key has no rights on the process: check --conv-id, and that --api-login's key may create and modify tasks in it (the process's sharing settings)",
    ),
    (
        "conveyor_is_not_active",
        "the process is not active: activate it in Corezoid, or check --conv-id",
    ),
    (
        "bad object",
        "the server does not take task operations here: check --url (a Corezoid API) and --conv-id",
    ),
    (
        "between companies",
        "the process belongs to another company: check --company-id (and --conv-id)",
    ),
    (
        "do not matches companyid",
        "the process belongs to another company: check --company-id (and --conv-id)",
    ),
];

/// What to check when an op's refusal is about the process (`PROCESS_REFUSALS`), or `None`
/// when it is about the row. "does not exist" counts only for a process ("Object conv with
/// id N"), not for a task a modify did not find.
pub fn process_refusal(proc_: &str, description: Option<&str>) -> Option<&'static str> {
    let low = description.unwrap_or("").to_ascii_lowercase();
    PROCESS_REFUSALS.iter().find_map(|&(what, check)| {
        let hit = if what == "does not exist" {
            low.contains("object conv") && low.contains(what)
        } else {
            proc_ == what || low.contains(what)
        };
        hit.then_some(check)
    })
}

/// `classify_op` for a run whose ops all go to one process (`--conv-id`): a refusal of the
/// process itself stops the run, with the server's words and what to check, instead of
/// rejecting every row with it.
pub fn classify_op_in_one_process(
    is_create: bool,
    proc_: &str,
    description: Option<&str>,
) -> OpVerdict {
    match classify_op(is_create, proc_, description) {
        OpVerdict::Reject { reason } => match process_refusal(proc_, description) {
            Some(check) => OpVerdict::Fatal {
                reason: format!("the server refused the process: {reason}; {check}"),
            },
            None => OpVerdict::Reject { reason },
        },
        v => v,
    }
}

/// `--sync`, a create's answer that says the task is there but brings no reply: the Sync
/// API's timeout (the task was created and runs on), or a duplicate ref (a resent create
/// whose first attempt created the task; its reply went to that attempt). The reason, or
/// `None` to classify the answer as usual.
pub fn sync_no_reply(proc_: &str, description: Option<&str>) -> Option<String> {
    if proc_ == "ok" {
        return None;
    }
    let low = description.unwrap_or("").to_ascii_lowercase();
    if low.contains("timeout for") {
        return Some(format!(
            "{proc_}: {}: the task was created and runs on, but its reply did not come within --sync-timeout",
            description.unwrap_or("")
        ));
    }
    if classify_op(true, proc_, description) == OpVerdict::Exists {
        return Some(
            "the task exists (its ref is taken: an earlier attempt or run created it), and the Sync API replies only to the request that created it".into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_answers_without_a_reply_are_named() {
        let timeout = sync_no_reply("error", Some("Timeout for create task")).unwrap();
        assert!(timeout.contains("runs on"), "{timeout}");
        let dup = sync_no_reply("not_unical_ref", None).unwrap();
        assert!(dup.contains("ref is taken"), "{dup}");
        assert!(sync_no_reply("error", Some("duplicate ref")).is_some());
        assert_eq!(sync_no_reply("ok", None), None);
        assert_eq!(sync_no_reply("error", Some("RPS limit reached")), None);
        assert_eq!(sync_no_reply("error", Some("Value is not valid")), None);
    }

    #[test]
    fn a_clock_off_by_more_than_the_window_is_named_with_the_offset() {
        use std::time::{Duration, SystemTime};
        let server = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(clock_note(server, server + Duration::from_secs(59)), None);
        let ahead = clock_note(server, server + Duration::from_secs(125)).unwrap();
        assert!(ahead.contains("125 s ahead of"), "{ahead}");
        let behind = clock_note(server, server - Duration::from_secs(3600)).unwrap();
        assert!(behind.contains("3600 s behind"), "{behind}");
    }

    fn ans<'a>(p: Option<&'a str>, d: Option<&'a str>) -> Answer<'a> {
        Answer {
            request_proc: p,
            description: d,
            excerpt: "",
            location: None,
        }
    }

    #[test]
    fn response_table() {
        let ra = Some(Duration::from_secs(3));
        // (status, request_proc, description) -> expected kind
        let table: &[(u16, Option<&str>, Option<&str>, &str)] = &[
            (200, Some("ok"), None, "perop"),
            (200, Some("format_error"), Some("Incorrect body"), "split"),
            (200, Some("error"), Some("Wrong signature"), "fatal"),
            (
                200,
                Some("error"),
                Some("RPS limit reached"),
                "retry-throttled",
            ),
            (200, None, None, "retry-maybe"),
            (400, None, Some("Incorrect body"), "split"),
            (413, None, None, "split"),
            (401, Some("error"), Some("bad login"), "fatal"),
            (403, None, None, "fatal"),
            (404, None, None, "fatal"),
            (408, None, None, "retry-clean"),
            (429, None, None, "retry-throttled"),
            (500, None, None, "retry-maybe"),
            (501, None, None, "fatal"),
            (502, None, None, "retry-maybe"),
            (503, None, None, "retry-clean"),
            (504, None, None, "retry-maybe"),
            (301, None, None, "fatal"),
            (418, None, None, "fatal"),
        ];
        for &(status, p, d, want) in table {
            let v = classify_response(status, ra, &ans(p, d));
            let got = match &v {
                Verdict::PerOp => "perop",
                Verdict::Split { .. } => "split",
                Verdict::Fatal { .. } => "fatal",
                Verdict::Retry {
                    throttled: true, ..
                } => "retry-throttled",
                Verdict::Retry {
                    maybe_applied: true,
                    ..
                } => "retry-maybe",
                Verdict::Retry { .. } => "retry-clean",
            };
            assert_eq!(got, want, "status {status} {p:?} {d:?}: {v:?}");
        }
    }

    #[test]
    fn a_redirect_names_url_and_where_it_goes() {
        let a = Answer {
            location: Some("https://api.example.com/"),
            ..Answer::default()
        };
        for status in [301, 302, 307, 308] {
            let Verdict::Fatal { reason } = classify_response(status, None, &a) else {
                panic!("{status}: not fatal");
            };
            assert!(reason.contains("--url") && reason.contains("https://api.example.com/"));
        }
    }

    #[test]
    fn retry_after_pauses_everyone() {
        let v = classify_response(429, Some(Duration::from_secs(7)), &ans(None, None));
        assert!(matches!(v, Verdict::Retry { pause: Some(d), .. } if d == Duration::from_secs(7)));
        // 429 without Retry-After still pauses.
        let v = classify_response(429, None, &ans(None, None));
        assert!(matches!(v, Verdict::Retry { pause: Some(_), .. }));
    }

    #[test]
    fn transport_table() {
        // (kind, maybe applied if retried; None: fatal)
        for (t, want) in [
            (TransportError::Connect, Some(false)),
            (TransportError::Timeout, Some(true)),
            (TransportError::Broken, Some(true)),
            (TransportError::Certificate, None),
            (TransportError::NotTls, None),
        ] {
            let v = classify_transport(t, "detail");
            match (want, &v) {
                (
                    Some(m),
                    Verdict::Retry {
                        maybe_applied,
                        reason,
                        ..
                    },
                ) => {
                    assert_eq!(*maybe_applied, m, "{t:?}");
                    assert!(reason.ends_with(": detail"), "{reason}");
                }
                (None, Verdict::Fatal { reason }) => {
                    assert!(
                        reason.contains("--url") && reason.contains("detail"),
                        "{reason}"
                    );
                    if t == TransportError::Certificate {
                        assert!(reason.contains("certificate") && reason.contains("--insecure"));
                    }
                }
                _ => panic!("{t:?}: {v:?}"),
            }
        }
    }

    #[test]
    fn transport_kinds_from_reqwest_errors() {
        use TransportError::*;
        // (is_timeout, is_connect, chain) -> kind
        let table: &[(bool, bool, &str, TransportError)] = &[
            (false, true, "error sending request for url (https://127.0.0.1:1/api/2/json/1/2/3): client error (Connect): invalid peer certificate: UnknownIssuer", Certificate),
            (false, true, "client error (Connect): invalid peer certificate: NotValidForName", Certificate),
            (false, true, "invalid peer certificate: Expired", Certificate),
            (false, true, "error:0A000086:SSL routines::certificate verify failed", Certificate),
            (false, true, "self-signed certificate in certificate chain", Certificate),
            (false, true, "client error (Connect): received corrupt message of type InvalidContentType", NotTls),
            (false, true, "SSL routines:ssl3_get_record:wrong version number", NotTls),
            (false, true, "client error (Connect): tcp connect error: Connection refused (os error 111)", Connect),
            (true, true, "operation timed out", Timeout),
            (true, false, "error decoding response body: operation timed out", Timeout),
            (false, false, "connection closed before message completed", Broken),
            (false, false, "connection reset by peer", Broken),
        ];
        for &(timeout, connect, text, want) in table {
            assert_eq!(transport_kind(timeout, connect, text), want, "{text}");
        }
    }

    /// Each process-level refusal stops a one-process run, naming what to check; the
    /// same texts on a row of its own process (or a task not found) stay rejections.
    #[test]
    fn refusals_of_the_process_stop_a_one_process_run() {
        let table: &[(&str, Option<&str>, &str)] = &[
            (
                "error",
                Some("Object conv with id 556 does not exist"),
                "--conv-id",
            ),
            ("access_denied", None, "--api-login"),
            ("error", Some("Access denied"), "--api-login"),
            ("conveyor_is_not_active", None, "activate"),
            ("error", Some("bad object"), "--url"),
            (
                "error",
                Some("Task operations between companies is not allowed"),
                "--company-id",
            ),
            (
                "error",
                Some("Company of object do not matches companyId of request"),
                "--company-id",
            ),
        ];
        for &(p, d, check) in table {
            for create in [true, false] {
                let OpVerdict::Fatal { reason } = classify_op_in_one_process(create, p, d) else {
                    panic!("{p} {d:?}: not fatal");
                };
                assert!(reason.contains(check), "{reason}");
                assert!(
                    reason.contains(d.unwrap_or(p)),
                    "the server's words: {reason}"
                );
                assert!(matches!(
                    classify_op(create, p, d),
                    OpVerdict::Reject { .. }
                ));
            }
        }
        for (p, d) in [
            ("not_found_task", None),
            ("error", Some("Task does not exist")),
            ("error", Some("Value is not valid")),
            ("ok", None),
            ("not_unical_ref", None),
        ] {
            assert_eq!(
                classify_op_in_one_process(true, p, d),
                classify_op(true, p, d),
                "{p} {d:?}"
            );
        }
    }

    #[test]
    fn op_table() {
        let table: &[(bool, &str, Option<&str>, &str)] = &[
            (true, "ok", None, "ok"),
            (false, "ok", None, "ok"),
            (true, "not_unical_ref", None, "exists"),
            (true, "error", Some("not unical reference"), "exists"),
            (false, "not_unical_ref", None, "reject"),
            (true, "error", Some("RPS limit reached"), "retry"),
            (
                true,
                "error",
                Some("Object conv with id 9 does not exist"),
                "reject",
            ),
            (true, "access_denied", None, "reject"),
            (true, "error", Some("Value is not valid"), "reject"),
            (false, "not_found_task", None, "reject"),
            (true, "error", Some("Wrong signature"), "fatal"),
            (
                true,
                "error",
                Some("Value is not valid: timestamp"),
                "reject",
            ),
            (
                true,
                "error",
                Some("Value is not valid: timestamp"),
                "reject",
            ),
        ];
        for &(create, p, d, want) in table {
            let v = classify_op(create, p, d);
            let got = match &v {
                OpVerdict::Ok => "ok",
                OpVerdict::Exists => "exists",
                OpVerdict::Retry { .. } => "retry",
                OpVerdict::Reject { .. } => "reject",
                OpVerdict::Fatal { .. } => "fatal",
            };
            assert_eq!(got, want, "{create} {p} {d:?}: {v:?}");
        }
    }
}
