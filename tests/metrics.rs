//! `--metrics FILE` and `--metrics-push URL` (issue 23, Metrics): the run's figures in
//! the Prometheus text format, as a textfile collector and a Pushgateway receive them;
//! the last success kept across a failed run; a user's file never replaced.

use crate::common::{self, load, s};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The samples of an exposition text: `name{labels}` -> value; panics on a line that is
/// neither a comment nor `series value`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            (k.to_string(), v.parse().unwrap_or_else(|_| panic!("{l}")))
        })
        .collect()
}

fn csv(dir: &Path, name: &str, bad: usize) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut t = String::from("id,amount\n");
    for i in 1..=20 {
        let v = if i <= bad {
            format!("x{i}")
        } else {
            i.to_string()
        };
        t.push_str(&format!("m{i},{v}\n"));
    }
    std::fs::write(&p, t).unwrap();
    p
}

/// A clean run, then one with rejected rows: the second's counts and exit code, the
/// first's last success kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_has_the_runs_figures_and_keeps_the_last_success() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("czload.prom");
    let good = csv(dir.path(), "good.csv", 0);
    let args = |input: &Path| {
        vec![
            s(input).to_string(),
            "--conv-id".into(),
            "555".into(),
            "--type".into(),
            "amount:number".into(),
            "--metrics".into(),
            s(&metrics).to_string(),
        ]
    };
    let a = args(&good);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = load(&sb.url(), &a, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let first = samples(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(first["czload_rows{status=\"created\"}"], 20.0, "{first:?}");
    assert_eq!(first["czload_rows{status=\"rejected\"}"], 0.0);
    assert_eq!(first["czload_exit_code"], 0.0);
    assert_eq!(first["czload_requests"], sb.stats().requests as f64);
    let success = first["czload_last_success_timestamp_seconds"];
    assert!(success > 1.7e9, "{success}");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let bad = csv(dir.path(), "bad.csv", 3);
    let a = args(&bad);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = load(&sb.url(), &a, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let second = samples(&text);
    assert_eq!(second["czload_rows{status=\"rejected\"}"], 3.0, "{text}");
    assert_eq!(second["czload_rows{status=\"created\"}"], 17.0);
    assert_eq!(second["czload_exit_code"], 2.0);
    assert_eq!(second["czload_last_success_timestamp_seconds"], success);
    assert!(second["czload_last_run_timestamp_seconds"] > success);
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("czload-tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// `--metrics` onto a user's file, an empty file, a directory, a FIFO, or into a missing
/// folder: refused before any request, the file untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_flag_never_replaces_what_czload_did_not_write() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = csv(dir.path(), "in.csv", 0);
    let user = dir.path().join("user.prom");
    std::fs::write(&user, "my_metric 1\n").unwrap();
    let empty = dir.path().join("empty.prom");
    std::fs::write(&empty, "").unwrap();
    let fifo = dir.path().join("fifo.prom");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a NUL-terminated path this test owns.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let missing = dir.path().join("no/such/dir/m.prom");
    for target in [
        &user,
        &empty,
        &dir.path().to_path_buf(),
        &fifo,
        &missing,
        &input,
    ] {
        // Reading a FIFO would block until a writer comes: it is compared by kind instead.
        let before = (target != &fifo)
            .then(|| std::fs::read(target).ok())
            .flatten();
        let requests = sb.stats().requests;
        let out = load(
            &sb.url(),
            &[
                s(&input),
                "--conv-id",
                "555",
                "--metrics",
                s(target),
                "--restart",
            ],
            None,
        )
        .await;
        // An output refused is exit 2, before anything is sent (docs/outputs.md).
        assert_eq!(out.code, 2, "{}: {out:?}", target.display());
        assert!(out.stderr.contains("--metrics"), "{}", out.stderr);
        assert_eq!(sb.stats().requests, requests, "{}", target.display());
        if target != &fifo {
            assert_eq!(std::fs::read(target).ok(), before, "{}", target.display());
        }
    }
}

/// What a fake Pushgateway received: (method, path, body) of each request.
type Pushed = Arc<Mutex<Vec<(String, String, String)>>>;

/// A Pushgateway that answers 200 to every request and keeps what it got.
fn pushgateway() -> (String, Pushed) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got: Pushed = Arc::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut parts = line.split(' ');
            let (method, path) = (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            );
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            keep.lock()
                .unwrap()
                .push((method, path, String::from_utf8(body).unwrap()));
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// A success is PUT (the group replaced), a run with rejected rows is POST (the last
/// success stays on the gateway), a copy under its shard; a gateway away is a note, and
/// the exit code is the load's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_pushed_to_a_pushgateway_as_batch_jobs_do() {
    let sb = common::sandbox().await;
    let (gw, got) = pushgateway();
    let dir = tempfile::tempdir().unwrap();
    let good = csv(dir.path(), "g.csv", 0);
    // Every row bad, so the copy has some whichever rows the shard picks.
    let bad = csv(dir.path(), "b.csv", 20);
    let typed = [
        "--conv-id",
        "555",
        "--type",
        "amount:number",
        "--metrics-push",
        &gw,
    ];
    let out = load(&sb.url(), &[&[s(&good)][..], &typed].concat(), None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = load(
        &sb.url(),
        &[&[s(&bad)][..], &typed, &["--shard", "1/2"]].concat(),
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].0.as_str(), got[0].1.as_str()),
        ("PUT", "/metrics/job/czload")
    );
    let first = samples(&got[0].2);
    assert_eq!(
        first["czload_rows{status=\"created\"}"], 20.0,
        "{}",
        got[0].2
    );
    assert!(first.contains_key("czload_last_success_timestamp_seconds"));
    assert_eq!(
        (got[1].0.as_str(), got[1].1.as_str()),
        ("POST", "/metrics/job/czload/shard/1")
    );
    let second = samples(&got[1].2);
    assert_eq!(
        second["czload_exit_code{shard=\"1/2\"}"], 2.0,
        "{}",
        got[1].2
    );
    assert!(!got[1].2.contains("czload_last_success_timestamp_seconds"));

    // A gateway that is not there: said, and the exit code is still the load's.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let away = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cmd = [
        s(&good),
        "--conv-id",
        "555",
        "--metrics-push",
        &away,
        "--restart",
    ];
    let out = load(&sb.url(), &cmd, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("--metrics-push: the metrics were not pushed"),
        "{}",
        out.stderr
    );
    // A password in the URL is refused before anything is sent.
    let with_pw = "http://u:hunter2@127.0.0.1:9/";
    let out = load(
        &sb.url(),
        &[s(&good), "--conv-id", "555", "--metrics-push", with_pw],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}
