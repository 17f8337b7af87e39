//! `czload load` against servers that misbehave: answers that are not JSON, HTML gateway
//! pages, too few or too many op answers, unknown or duplicated ids, a 100 MB answer, no
//! answer at all, a redirect, a TLS certificate that does not verify.
//!
//! The server is a few lines of tokio over a raw socket, so that each test scripts exactly
//! the bytes it answers (the sandbox only misbehaves in the ways a real Corezoid does). In
//! every case the run must not panic and must not lose a row: each input row ends with one
//! line in the results log, or is counted as unsettled in the summary (and so resumable).

use crate::common::s;
use crate::common::SECRET;
use crate::common::{load, results, Out};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the scripted server saw it.
struct Req {
    /// 0 for the first request of the run.
    n: usize,
    /// The `ops` of the body (empty if the body was not JSON).
    ops: Vec<Value>,
}

/// What the scripted server does with a request.
enum Act {
    /// These bytes, as they are: status line, headers and body.
    Raw(Vec<u8>),
    /// A 200 that streams this many bytes of a JSON answer, announced by `content-length`
    /// or (`chunked`) not announced at all.
    Huge { len: usize, chunked: bool },
    /// Keep the connection open and never answer.
    Hang,
}

type Script = Arc<dyn Fn(&Req) -> Act + Send + Sync>;

struct Server {
    url: String,
    /// The ops of each request received, in order.
    requests: Arc<Mutex<Vec<Vec<Value>>>>,
    /// Connections accepted (for TLS: handshakes attempted).
    accepted: Arc<AtomicUsize>,
}

impl Server {
    async fn start(script: impl Fn(&Req) -> Act + Send + Sync + 'static) -> Server {
        Server::start_inner(Arc::new(script), None).await
    }

    /// The same server behind TLS with a self-signed certificate for localhost/127.0.0.1.
    async fn start_tls(script: impl Fn(&Req) -> Act + Send + Sync + 'static) -> Server {
        use tokio_rustls::rustls;
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a self-signed certificate");
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key.into())
            .expect("a TLS server config");
        Server::start_inner(
            Arc::new(script),
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
        )
        .await
    }

    async fn start_inner(script: Script, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (reqs, acc) = (requests.clone(), accepted.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Tasks end with the test's runtime, hanging connections included.
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let (script, reqs, tls) = (script.clone(), reqs.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(t) => {
                            // A client that refuses the certificate ends the handshake here.
                            if let Ok(s) = t.accept(sock).await {
                                serve(s, &script, &reqs).await;
                            }
                        }
                        None => serve(sock, &script, &reqs).await,
                    }
                });
            }
        });
        Server {
            url: format!("{scheme}://{addr}"),
            requests,
            accepted,
        }
    }

    fn requests(&self) -> Vec<Vec<Value>> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request (headers, then `Content-Length` bytes of body), answers as scripted,
/// and closes the connection (every answer says `connection: close`).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    script: &Script,
    reqs: &Mutex<Vec<Vec<Value>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.first() == Some(&0x16) {
            // A TLS handshake: answer in plain HTTP, as web servers do.
            let _ = s
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    let ops = body["ops"].as_array().cloned().unwrap_or_default();
    let n = {
        let mut r = reqs.lock().unwrap();
        r.push(ops.clone());
        r.len() - 1
    };
    match script(&Req { n, ops }) {
        Act::Raw(bytes) => {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
        Act::Huge { len, chunked } => {
            let framing = if chunked {
                "transfer-encoding: chunked".to_string()
            } else {
                format!("content-length: {len}")
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
            );
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // A JSON answer that is still open when the client must give up on it.
            let mut piece = br#"{"request_proc":"ok","ops":[],"pad":""#.to_vec();
            let filler = vec![b'x'; 1 << 20];
            let mut sent = 0;
            while sent < len {
                let n = piece.len().min(len - sent);
                let mut out = Vec::with_capacity(n + 16);
                if chunked {
                    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                }
                out.extend_from_slice(&piece[..n]);
                if chunked {
                    out.extend_from_slice(b"\r\n");
                }
                // The client hangs up after its cap: then writing fails and we stop.
                if s.write_all(&out).await.is_err() {
                    return;
                }
                sent += n;
                piece.clone_from(&filler);
            }
            if chunked {
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
        }
        Act::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// An HTTP answer with a body.
fn http(status: &str, content_type: &str, body: &str, extra: &str) -> Act {
    Act::Raw(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn json_answer(v: &Value) -> Act {
    http("200 OK", "application/json", &v.to_string(), "")
}

/// The answer a Corezoid would give if every op in `ops` succeeded.
fn ok_op(op: &Value) -> Value {
    let id = op["id"].as_str().unwrap_or("0");
    json!({"id": id, "proc": "ok", "obj": "task", "ref": op["ref"], "obj_id": format!("{:0>24}", id)})
}

fn ok_all(req: &Req) -> Act {
    let ops: Vec<Value> = req.ops.iter().map(ok_op).collect();
    json_answer(&json!({"request_proc": "ok", "ops": ops}))
}

const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// A CSV of `n` rows in a fresh directory; the results log goes beside it.
fn input(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    let mut text = String::from("n,name\n");
    for i in 1..=n {
        text.push_str(&format!("{i},row {i}\n"));
    }
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Checks that nothing panicked and that each of the `n` rows has exactly one results
/// line or is counted as unsettled; gives the lines by row number.
fn accounted(out: &Out, dir: &Path, n: u64) -> HashMap<u64, Value> {
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let mut by_row = HashMap::new();
    for r in results(&dir.join("in.results.ndjson")) {
        let row = r["row"].as_u64().expect("a row number");
        assert!((1..=n).contains(&row), "row {row} out of range: {r}");
        assert!(by_row.insert(row, r).is_none(), "row {row} settled twice");
    }
    let unsettled = n - by_row.len() as u64;
    if unsettled > 0 {
        assert!(
            out.stderr
                .contains(&format!("{unsettled} rows were not settled")),
            "{unsettled} rows without a line and not reported: {}",
            out.stderr
        );
    }
    by_row
}

fn statuses(rows: &HashMap<u64, Value>) -> Vec<(u64, String, u64)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|(r, l)| {
            (
                *r,
                l["status"].as_str().unwrap_or("").to_string(),
                l["attempts"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

fn all(rows: &HashMap<u64, Value>, status: &str) -> bool {
    rows.values().all(|l| l["status"] == status)
}

/// `load` with the flags every test here uses: one request at a time, quick retries.
async fn run(url: &str, input: &Path, extra: &[&str]) -> Out {
    let mut args = vec![s(input), "--conv-id", "555", "--concurrency", "1"];
    args.extend_from_slice(extra);
    load(url, &args, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_answer_that_is_not_json_is_retried_not_guessed() {
    // Recovers: the rows are resent with their refs and created.
    let srv = Server::start(|r| {
        if r.n == 0 {
            http("200 OK", "text/plain", "all good, probably", "")
        } else {
            ok_all(r)
        }
    })
    .await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "3"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        statuses(&rows),
        vec![
            (1, "created".into(), 2),
            (2, "created".into(), 2),
            (3, "created".into(), 2)
        ]
    );
    assert_eq!(srv.requests().len(), 2);

    // Never recovers: failed after the budget, naming what came back.
    let srv = Server::start(|_| http("200 OK", "application/json", "{\"ops\":[{", "")).await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "2"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(all(&rows, "failed"), "{rows:?}");
    assert!(
        rows[&1]["error"].as_str().unwrap().contains("unreadable"),
        "{rows:?}"
    );
    assert_eq!(srv.requests().len(), 2);

    // Without refs the request may have been applied: ambiguous, never resent.
    let srv = Server::start(|_| http("200 OK", "text/html", "<html></html>", "")).await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "3", "--no-ref"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(all(&rows, "ambiguous"), "{rows:?}");
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_502_page_is_retried_until_the_server_recovers_or_the_budget_ends() {
    let bad = || http("502 Bad Gateway", "text/html", HTML_502, "");
    let srv = Server::start(move |r| if r.n < 2 { bad() } else { ok_all(r) }).await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "3"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(all(&rows, "created"), "{rows:?}");
    assert!(rows.values().all(|l| l["attempts"] == 3), "{rows:?}");

    let srv = Server::start(move |_| bad()).await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "2"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(all(&rows, "failed"), "{rows:?}");
    let err = rows[&2]["error"].as_str().unwrap();
    assert!(
        err.contains("HTTP 502") && err.contains("2 attempts"),
        "{err}"
    );
    assert_eq!(srv.requests().len(), 2);
    // The failed rows are in the retry file, ready for the same command.
    let retry = std::fs::read_to_string(dir.path().join("in.retry.csv")).unwrap();
    assert_eq!(retry.lines().count(), 4, "{retry}");

    let srv = Server::start(move |_| bad()).await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "3", "--no-ref"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(all(&rows, "ambiguous"), "{rows:?}");
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_fewer_ops_resends_only_the_missing_ones() {
    // The first answer leaves out every other op.
    let script = |r: &Req| {
        if r.n == 0 {
            let ops: Vec<Value> = r.ops.iter().step_by(2).map(ok_op).collect();
            json_answer(&json!({"request_proc": "ok", "ops": ops}))
        } else {
            ok_all(r)
        }
    };
    let srv = Server::start(script).await;
    let (dir, path) = input(4);
    let out = run(&srv.url, &path, &["--max-attempts", "3"]).await;
    let rows = accounted(&out, dir.path(), 4);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        statuses(&rows),
        vec![
            (1, "created".into(), 1),
            (2, "created".into(), 2),
            (3, "created".into(), 1),
            (4, "created".into(), 2)
        ]
    );
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    let resent: Vec<&Value> = reqs[1].iter().map(|o| &o["ref"]).collect();
    assert_eq!(resent, vec!["in.csv:2", "in.csv:4"]);

    // Without refs the missing ones may have been applied: ambiguous.
    let srv = Server::start(script).await;
    let (dir, path) = input(4);
    let out = run(&srv.url, &path, &["--max-attempts", "3", "--no-ref"]).await;
    let rows = accounted(&out, dir.path(), 4);
    assert_eq!(out.code, 2, "{out:?}");
    let st = statuses(&rows);
    assert_eq!(st[0].1, "created");
    assert_eq!(st[1].1, "ambiguous");
    assert_eq!(st[2].1, "created");
    assert_eq!(st[3].1, "ambiguous");
    assert_eq!(srv.requests().len(), 1);

    // An empty `ops` with request_proc ok: nothing was answered, everything is resent.
    let srv = Server::start(|r| {
        if r.n == 0 {
            json_answer(&json!({"request_proc": "ok", "ops": []}))
        } else {
            ok_all(r)
        }
    })
    .await;
    let (dir, path) = input(4);
    let out = run(&srv.url, &path, &["--max-attempts", "2"]).await;
    let rows = accounted(&out, dir.path(), 4);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(all(&rows, "created"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_unknown_or_duplicated_op_answers_settle_each_row_once() {
    // Each op answered twice (two different obj_ids), plus answers for ops never sent:
    // ids that are unknown, not numbers, null, beyond u64, refs nobody sent, and entries
    // that are not op answers at all.
    let srv = Server::start(|r| {
        let mut ops: Vec<Value> = Vec::new();
        for op in &r.ops {
            ops.push(ok_op(op));
            let mut again = ok_op(op);
            again["obj_id"] = json!("ffffffffffffffffffffffff");
            ops.push(again);
        }
        ops.push(json!({"id": "999", "proc": "ok", "obj_id": "x"}));
        ops.push(json!({"id": "not-a-number", "proc": "error", "description": "?"}));
        ops.push(json!({"id": null, "ref": "nobody", "proc": "ok"}));
        ops.push(json!({"id": 99999999999999999999u128 as f64, "proc": "ok"}));
        ops.push(json!({"proc": "error"}));
        ops.push(json!("not even an object"));
        ops.push(json!({"id": "1", "proc": 7, "obj_id": ["?"]}));
        json_answer(&json!({"request_proc": "ok", "ops": ops}))
    })
    .await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "3"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(all(&rows, "created"), "{rows:?}");
    // The first answer for an id counts.
    assert!(
        rows.values()
            .all(|l| l["obj_id"] != "ffffffffffffffffffffffff"),
        "{rows:?}"
    );
    assert_eq!(srv.requests().len(), 1);

    // Every answer carries the first op's id: the others are unanswered, and resent.
    let srv = Server::start(|r| {
        if r.n == 0 {
            let first = ok_op(&r.ops[0]);
            let ops: Vec<Value> = r.ops.iter().map(|_| first.clone()).collect();
            json_answer(&json!({"request_proc": "ok", "ops": ops}))
        } else {
            ok_all(r)
        }
    })
    .await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "3"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        statuses(&rows),
        vec![
            (1, "created".into(), 1),
            (2, "created".into(), 2),
            (3, "created".into(), 2)
        ]
    );

    // Answers matched by a numeric id, or by ref when there is no id, in any order.
    let srv = Server::start(|r| {
        let ops: Vec<Value> = r
            .ops
            .iter()
            .rev()
            .enumerate()
            .map(|(i, op)| {
                let mut a = ok_op(op);
                if i % 2 == 0 {
                    a["id"] = json!(op["id"].as_str().unwrap().parse::<u64>().unwrap());
                } else {
                    a.as_object_mut().unwrap().remove("id");
                }
                a
            })
            .collect();
        json_answer(&json!({"request_proc": "ok", "ops": ops}))
    })
    .await;
    let (dir, path) = input(4);
    let out = run(&srv.url, &path, &[]).await;
    let rows = accounted(&out, dir.path(), 4);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(all(&rows, "created"), "{rows:?}");
    assert_eq!(srv.requests().len(), 1);
}

/// Runs `czload load` like `load`, and gives its peak resident memory in KiB as well.
// The child is reaped by `wait4`, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub(crate) fn load_measured(url: &str, args: &[&str]) -> (Out, u64) {
    let mut child = crate::common::load_command(url, SECRET)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("czload starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // wait4 rather than Child::wait: it also gives the child's own peak RSS (getrusage
    // of all children would mix in the other tests' runs).
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's, not yet reaped; both pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert!(pid > 0, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let out = Out {
        code,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    };
    (out, ru.ru_maxrss as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_answer_is_cut_off_not_buffered_and_the_rows_are_retried() {
    const SIZE: usize = 100 * 1024 * 1024;
    let srv = Server::start(|r| {
        if r.n < 2 {
            Act::Huge {
                len: SIZE,
                chunked: true,
            }
        } else {
            ok_all(r)
        }
    })
    .await;
    let (dir, path) = input(3);
    let (url, p) = (srv.url.clone(), path.clone());
    let (out, rss_kib) = tokio::task::spawn_blocking(move || {
        load_measured(
            &url,
            &[
                s(&p),
                "--conv-id",
                "555",
                "--concurrency",
                "1",
                "--max-attempts",
                "3",
            ],
        )
    })
    .await
    .unwrap();
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(all(&rows, "created"), "{rows:?}");
    assert!(rows.values().all(|l| l["attempts"] == 3), "{rows:?}");
    // The sender reads at most 32 MiB of an answer; buffering 100 MB would show here.
    assert!(rss_kib < 90 * 1024, "peak RSS {rss_kib} KiB");

    // Always too large, and announced as such: failed after the budget, saying why.
    let srv = Server::start(|_| Act::Huge {
        len: SIZE,
        chunked: false,
    })
    .await;
    let (dir, path) = input(2);
    let out = run(&srv.url, &path, &["--max-attempts", "2"]).await;
    let rows = accounted(&out, dir.path(), 2);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(all(&rows, "failed"), "{rows:?}");
    let err = rows[&1]["error"].as_str().unwrap();
    assert!(err.contains("too large"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_the_rows_fail_or_are_ambiguous() {
    let with_ref = async {
        let srv = Server::start(|_| Act::Hang).await;
        let (dir, path) = input(2);
        let t0 = std::time::Instant::now();
        let out = run(&srv.url, &path, &["--timeout", "1", "--max-attempts", "2"]).await;
        let rows = accounted(&out, dir.path(), 2);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(all(&rows, "failed"), "{rows:?}");
        let err = rows[&1]["error"].as_str().unwrap();
        assert!(err.contains("timeout"), "{err}");
        assert_eq!(srv.requests().len(), 2);
        assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    };
    let without_ref = async {
        let srv = Server::start(|_| Act::Hang).await;
        let (dir, path) = input(2);
        let out = run(
            &srv.url,
            &path,
            &["--timeout", "1", "--max-attempts", "2", "--no-ref"],
        )
        .await;
        let rows = accounted(&out, dir.path(), 2);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(all(&rows, "ambiguous"), "{rows:?}");
        assert_eq!(srv.requests().len(), 1);
    };
    tokio::join!(with_ref, without_ref);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_stops_the_run_naming_url_and_leaves_the_rows_resumable() {
    for status in ["301 Moved Permanently", "307 Temporary Redirect"] {
        let srv = Server::start(move |_| {
            http(
                status,
                "text/html",
                "<html>moved</html>",
                "location: https://api.example.com/\r\n",
            )
        })
        .await;
        let (dir, path) = input(3);
        let out = run(&srv.url, &path, &["--max-attempts", "5"]).await;
        let rows = accounted(&out, dir.path(), 3);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(rows.is_empty(), "{rows:?}");
        assert!(
            out.stderr.contains("--url")
                && out.stderr.contains("redirects to https://api.example.com/"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("--resume"), "{}", out.stderr);
        assert_eq!(srv.requests().len(), 1, "stopped at the first answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_verify_is_refused_unless_insecure() {
    let srv = Server::start_tls(ok_all).await;
    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--max-attempts", "8"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(rows.is_empty(), "{rows:?}");
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("certificate") && err.contains("--insecure"),
        "{}",
        out.stderr
    );
    // Fatal at once, not retried: one handshake, no request.
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
    assert!(srv.requests().is_empty());

    let (dir, path) = input(3);
    let out = run(&srv.url, &path, &["--insecure"]).await;
    let rows = accounted(&out, dir.path(), 3);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(all(&rows, "created"), "{rows:?}");
}

/// Fuzz findings (`fuzz/`), kept as regression tests: a `\u` escape of a lone UTF-16
/// surrogate is valid JSON grammar but no character; serde_json's skipping parsers let it
/// through into the request body, where a strict server parser refuses the whole body.
#[test]
fn fuzz_finding_a_lone_surrogate_is_rejected_not_sent() {
    use czload::mapping::{
        has_lone_surrogate, write_typed, ColType, EmptyPolicy, MappingConfig, NdjsonPlan, OpKind,
        Plan, RefMode, Target,
    };
    let table: &[(&str, bool)] = &[
        (r#""\ud800""#, true),
        (r#""\uDBFF x""#, true),
        (r#""\udc00""#, true),
        (r#""\ud800\u0041""#, true),
        (r#""\ud83d\ude00""#, false),
        (r#""\\ud800""#, false),
        (r#""\u00e9\n\"\\""#, false),
        (r#"{"a":[1,"\ud83d\ude00"],"b":"\ud800"}"#, true),
        ("\\", false),
        ("\"\\u12", true),
        ("", false),
    ];
    for &(text, want) in table {
        assert_eq!(has_lone_surrogate(text.as_bytes()), want, "{text}");
    }

    let mut buf = Vec::new();
    let err = write_typed(&mut buf, r#"{"a":"\ud800"}"#, ColType::Json).unwrap_err();
    assert!(err.contains("surrogate"), "{err}");
    write_typed(&mut buf, r#"{"a":"\ud83d\ude00"}"#, ColType::Json).unwrap();

    let cfg = MappingConfig {
        op: OpKind::CREATE,
        target: Target::Conv(555),
        company_id: None,
        ref_mode: RefMode::Auto,
        types: Vec::new(),
        exclude: Vec::new(),
        empty: EmptyPolicy::Keep,
        data_field: None,
        max_task_bytes: 131_072,
        edits: Default::default(),
    };
    let plan = NdjsonPlan::new(&cfg, "f.ndjson").unwrap();
    let (mut buf, mut r) = (Vec::new(), String::new());
    let err = plan
        .write_op(br#"{"a":"\ud800"}"#, 1, 1, &mut buf, &mut r)
        .unwrap_err();
    assert!(err.0.contains("surrogate"), "{err:?}");
    buf.clear();
    plan.write_op(br#"{"a":"\ud83d\ude00"}"#, 1, 1, &mut buf, &mut r)
        .unwrap();
    let op: Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(op["data"]["a"], "\u{1f600}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_url_to_a_plain_http_server_stops_the_run_naming_url() {
    let srv = Server::start(ok_all).await;
    let url = srv.url.replace("http://", "https://");
    let (dir, path) = input(2);
    let out = run(&url, &path, &["--max-attempts", "8", "--timeout", "3"]).await;
    let rows = accounted(&out, dir.path(), 2);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(rows.is_empty(), "{rows:?}");
    assert!(
        out.stderr.contains("TLS") && out.stderr.contains("--url"),
        "{}",
        out.stderr
    );
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1, "not retried");
}
