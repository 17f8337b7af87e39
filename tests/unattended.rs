//! Unattended runs (cron, systemd, Kubernetes): every way a run can be stopped,
//! overlapped, cut off or pointed at the wrong file ends with nothing lost, nothing
//! duplicated and no file harmed. One test per defect of issue 12.

use crate::common::{self, load, results, s, Out, SECRET};
use crate::recovery::{
    assert_one_line_per_row, assert_one_task_per_row, finish, make_csv, signal, spawn_load,
    wait_lines,
};
use czload::sandbox::{Sandbox, SandboxConfig};
use std::path::Path;
use std::time::{Duration, Instant};

async fn slow_sandbox(delay_ms: u64) -> Sandbox {
    Sandbox::start(SandboxConfig {
        delay_ms,
        ..common::config()
    })
    .await
    .unwrap()
}

/// An output refused before anything is sent: exit 2, as every output refusal is
/// (docs/outputs.md).
fn refused(out: &Out, sb: &Sandbox, words: &[&str]) {
    assert_eq!(out.code, 2, "{out:?}");
    for w in words {
        assert!(out.stderr.contains(w), "{w:?} in {}", out.stderr);
    }
    assert_eq!(sb.stats().requests, 0, "refused before anything was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_ever_harms_a_file_it_was_not_made_for() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "in.csv", 20);
    let original = std::fs::read(&input).unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "my notes\n").unwrap();
    let base = [s(&input), "--conv-id", "555"];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|x| x.to_string()).collect()
    };
    let run = |args: Vec<String>| {
        let url = sb.url();
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            load(&url, &a, None).await
        }
    };

    // A --retry-file that is someone's file: refused, not deleted.
    let out = run(with(&["--retry-file", s(&notes)])).await;
    refused(
        &out,
        &sb,
        &["--retry-file", "notes.txt", "will not replace"],
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");

    // Outputs that are the input under another name: a hard link, a symlink.
    let link = dir.path().join("link.ndjson");
    std::fs::hard_link(&input, &link).unwrap();
    let sym = dir.path().join("sym.json");
    std::os::unix::fs::symlink(&input, &sym).unwrap();
    let out = run(with(&["--results", s(&link)])).await;
    refused(&out, &sb, &["--results", "is the input"]);
    let out = run(with(&["--summary-json", s(&sym)])).await;
    refused(&out, &sb, &["--summary-json", "is the input"]);
    let out = run(with(&["--retry-file", s(&link)])).await;
    refused(&out, &sb, &["--retry-file", "is the input"]);

    // Two outputs that are one file.
    let log = dir.path().join("in.results.ndjson");
    let out = run(with(&["--summary-json", s(&log)])).await;
    refused(&out, &sb, &["--summary-json", "--results", "same file"]);
    let out = run(with(&[
        "--results",
        s(&dir.path().join("r.ndjson")),
        "--retry-file",
        s(&dir.path().join("./r.ndjson")),
    ]))
    .await;
    refused(&out, &sb, &["same file"]);

    // A --results file that is not a czload log.
    let out = run(with(&["--results", s(&notes)])).await;
    refused(&out, &sb, &["not a czload results log"]);
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    assert_eq!(std::fs::read(&input).unwrap(), original, "input untouched");

    // A file at the retry path that an earlier run on this log named but put no row in
    // is not czload's (czload makes its retry file at the first row): refused, kept.
    // (Its own, with rows, is replaced: tests/outputs_matrix.rs.)
    let retry = dir.path().join("retry.csv");
    let out = run(with(&["--retry-file", s(&retry)])).await;
    assert_eq!(out.code, 0, "{out:?}");
    std::fs::write(&retry, "id,name,amount\n1,x,1\n").unwrap();
    let out = run(with(&["--retry-file", s(&retry)])).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--retry-file") && out.stderr.contains("will not replace"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&retry).unwrap(),
        "id,name,amount\n1,x,1\n"
    );
    assert_eq!(std::fs::read(&input).unwrap(), original, "input untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_and_stderr_neither_panic_nor_lose_the_log() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let input = make_csv(dir.path(), "pipe.csv", n);
    // A pipe whose reader is gone, as after `2>&1 | head -1`.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two fresh descriptors that are owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    // --resume without a log: a note on stderr before the load; the summary after.
    let child = common::load_command(&sb.url(), SECRET)
        .args([
            s(&input),
            "--conv-id",
            "555",
            "--batch-size",
            "50",
            "--resume",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(write.try_clone().unwrap())
        .stderr(write)
        .spawn()
        .unwrap();
    let out = finish(child).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "pipe.csv", n);
    assert_one_line_per_row(&dir.path().join("pipe.results.ndjson"), n, &["created"]);
}

/// SIGTERM (Kubernetes, systemd, `timeout`) and SIGHUP stop as a first Ctrl-C does: the
/// requests in flight finish and are logged, the summary is printed, and the exit code
/// names the signal; a resume finishes the load exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_drain_exit_with_their_code_and_resume() {
    for (sig, code) in [("-TERM", 143), ("-HUP", 129)] {
        let sb = slow_sandbox(15).await;
        let dir = tempfile::tempdir().unwrap();
        let n = 6000;
        let input = make_csv(dir.path(), "sig.csv", n);
        let log = dir.path().join("sig.results.ndjson");
        let args = [s(&input), "--conv-id", "555", "--batch-size", "50"];
        let child = spawn_load(&sb.url(), &args);
        wait_lines(&log, 500).await;
        signal(&child, sig);
        let out = finish(child).await;
        assert_eq!(out.code, code, "{sig}: {out:?}");
        assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
        assert!(
            out.stderr.contains("not settled"),
            "a summary: {}",
            out.stderr
        );
        let lines = results(&log);
        assert!(lines.len() < n);
        assert_eq!(
            sb.tasks().len(),
            lines.len(),
            "{sig}: in flight, then logged"
        );

        let mut resumed = args.to_vec();
        resumed.push("--resume");
        let out = load(&sb.url(), &resumed, None).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert_one_task_per_row(&sb, "sig.csv", n);
        assert_one_line_per_row(&log, n, &["created"]);
    }

    // A second signal does not wait for the requests in flight.
    let sb = slow_sandbox(3000).await;
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "twice.csv", 500);
    let child = spawn_load(&sb.url(), &[s(&input), "--conv-id", "555"]);
    let t0 = Instant::now();
    while sb.stats().requests == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    signal(&child, "-TERM");
    let out = finish(child).await;
    assert_eq!(out.code, 143, "{out:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_a_log_in_use_is_refused() {
    let sb = slow_sandbox(15).await;
    let dir = tempfile::tempdir().unwrap();
    let n = 6000;
    let input = make_csv(dir.path(), "lock.csv", n);
    let log = dir.path().join("lock.results.ndjson");
    let args = [s(&input), "--conv-id", "555", "--batch-size", "50"];
    let first = spawn_load(&sb.url(), &args);
    wait_lines(&log, 200).await;
    let before = sb.stats().requests;
    for extra in [None, Some("--resume")] {
        let mut a = args.to_vec();
        a.extend(extra);
        let out = load(&sb.url(), &a, None).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.contains("another czload run") && out.stderr.contains(s(&log)),
            "{}",
            out.stderr
        );
    }
    assert!(sb.stats().requests >= before);
    // Killed, the first run holds nothing: the kernel dropped its lock.
    signal(&first, "-KILL");
    finish(first).await;
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let out = load(&sb.url(), &resumed, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "lock.csv", n);
    // Rows in flight when it was killed reached the server but not the log: resumed, they
    // come back `exists` (one task each all the same, as just checked).
    assert_one_line_per_row(&log, n, &["created", "exists"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_log_wants_resume_or_restart() {
    let sb = slow_sandbox(15).await;
    let dir = tempfile::tempdir().unwrap();
    let n = 6000;
    let input = make_csv(dir.path(), "cut.csv", n);
    let log = dir.path().join("cut.results.ndjson");
    let args = [s(&input), "--conv-id", "555", "--batch-size", "50"];
    let child = spawn_load(&sb.url(), &args);
    wait_lines(&log, 300).await;
    signal(&child, "-KILL");
    finish(child).await;
    let crashed = std::fs::read(&log).unwrap();
    let sent = sb.stats().requests;

    // Forgetting --resume: refused, the log as it was, nothing sent.
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    for w in ["unfinished", "--resume", "--restart", s(&log)] {
        assert!(out.stderr.contains(w), "{w:?} in {}", out.stderr);
    }
    assert_eq!(std::fs::read(&log).unwrap(), crashed);
    assert_eq!(sb.stats().requests, sent);

    // --restart starts over and keeps the old log beside the new one.
    let mut restart = args.to_vec();
    restart.push("--restart");
    let out = load(&sb.url(), &restart, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let kept = dir.path().join("cut.results.ndjson.unfinished-1");
    assert!(out.stderr.contains(s(&kept)), "{}", out.stderr);
    assert_eq!(std::fs::read(&kept).unwrap(), crashed);
    assert_eq!(results(&log).len(), n);

    // A finished log is replaced by a plain re-run, as always.
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(results(&log).len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_another_reading_of_the_input_naming_the_flag() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "read.csv", 10);
    let log = dir.path().join("read.results.ndjson");
    let args = [s(&input), "--conv-id", "555"];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    cut_log(&log, 4);
    let sent = sb.stats().requests;
    for (extra, code, says) in [
        // A delimiter the bytes deny is refused before the log is read (exit 2).
        (&["--delimiter", ";"][..], 2, "pass --delimiter ','"),
        (&["--no-header"][..], 1, "--no-header (was: no --no-header)"),
    ] {
        let mut a = args.to_vec();
        a.push("--resume");
        a.extend(extra);
        let out = load(&sb.url(), &a, None).await;
        assert_eq!(out.code, code, "{out:?}");
        assert!(out.stderr.contains(says), "{says:?} in {}", out.stderr);
        assert_eq!(sb.stats().requests, sent, "nothing sent");
    }
    let mut a = args.to_vec();
    a.push("--resume");
    let out = load(&sb.url(), &a, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "read.csv", 10);
}

/// Keeps the manifest and the first `rows` lines of a log, as a crash could leave it.
fn cut_log(log: &Path, rows: usize) {
    let text = std::fs::read_to_string(log).unwrap();
    let kept: String = text
        .lines()
        .take(rows + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(log, kept).unwrap();
}

/// The server goes away mid-run and comes back on the same port: with two attempts a row
/// and no breaker every batch in the gap would fail; with it the senders wait, probe, and
/// every row ends created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shorter_than_the_retry_time_fails_no_row() {
    let sb = slow_sandbox(15).await;
    let addr = sb.addr();
    let dir = tempfile::tempdir().unwrap();
    let n = 6000;
    let input = make_csv(dir.path(), "gap.csv", n);
    let log = dir.path().join("gap.results.ndjson");
    let args = [
        s(&input),
        "--conv-id",
        "555",
        "--batch-size",
        "50",
        "--max-attempts",
        "2",
    ];
    let child = spawn_load(&sb.url(), &args);
    wait_lines(&log, 500).await;
    sb.shutdown().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let sb2 = Sandbox::start_on(
        listener,
        SandboxConfig {
            delay_ms: 15,
            ..common::config()
        },
    )
    .await
    .unwrap();
    let out = finish(child).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("server unreachable since") && out.stderr.contains("answers again"),
        "{}",
        out.stderr
    );
    assert_one_line_per_row(&log, n, &["created", "exists"]);
    assert!(sb2.stats().requests > 0);
}

/// A server that never answers stops the run early, saying why, with the exit code of
/// an outage (75, worth starting again later; a refusal such as a wrong secret is 1, see
/// `words::stderr_to_a_file_has_no_colour_codes`); no row is failed, so all stay
/// resumable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_never_reached_stops_the_run_with_the_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "never.csv", 500);
    let t0 = Instant::now();
    let out = load(
        &url,
        &[
            s(&input),
            "--conv-id",
            "555",
            "--max-retry-time",
            "2",
            "--summary-json",
            s(&dir.path().join("sum.json")),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 75, "{out:?}");
    let sum: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sum.json")).unwrap()).unwrap();
    assert_eq!(sum["outage"], true, "{sum}");
    assert!(
        out.stderr.contains("could not connect to"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("check --url"), "{}", out.stderr);
    assert!(t0.elapsed() < Duration::from_secs(20));
    let lines = results(&dir.path().join("never.results.ndjson"));
    assert!(lines.iter().all(|l| l["status"] != "failed"), "{lines:?}");
}

/// `--max-errors`: a broken export stops early, exit 2, and the rest is resumable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_errors_stops_a_broken_export_early_and_resumably() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("broken.csv");
    let mut text = String::from("id,n\n");
    // Many rows: the reader runs ahead of the journal by up to the channel's worth
    // (64 groups of 256 rejected rows), so a stop shows only well past that.
    for i in 1..=200_000 {
        // Every row has a number column that does not parse.
        text.push_str(&format!("{i},x{i}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let log = dir.path().join("broken.results.ndjson");
    for limit in ["50", "10%"] {
        let args = [
            s(&input),
            "--conv-id",
            "555",
            "--type",
            "n:integer",
            "--max-errors",
            limit,
            "--restart",
        ];
        let out = load(&sb.url(), &args, None).await;
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr
                .contains(&format!("--max-errors {limit} reached")),
            "{}",
            out.stderr
        );
        let lines = results(&log);
        assert!(lines.len() < 100_000, "stopped early: {}", lines.len());
        // Unfinished: a plain re-run wants --resume or --restart.
        let out = load(&sb.url(), &args[..7], None).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    }
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--max-errors", "5x"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--max-errors 5x"), "{}", out.stderr);
}

/// An authentication failure says what to check; when the server's `Date` shows the
/// local clock far off, it says that too, with the offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_failure_says_what_to_check_and_names_a_clock_that_is_off() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "auth.csv", 10);
    let mut cmd = common::load_command(&sb.url(), "not-the-secret");
    let out: Out = cmd
        .args([s(&input), "--conv-id", "555"])
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("check --api-login, the secret") && out.stderr.contains("rights"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("clock"), "{}", out.stderr);

    // A server whose clock reads 1994: every answer a 401 with its Date.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = c.read(&mut buf).await;
                let body = r#"{"request_proc":"error","description":"bad signature"}"#;
                let head = format!(
                    "HTTP/1.1 401 Unauthorized\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(head.as_bytes()).await;
                let _ = c.write_all(body.as_bytes()).await;
            });
        }
    });
    let out = load(&url, &[s(&input), "--conv-id", "555", "--restart"], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("bad signature") && out.stderr.contains("s ahead of the server's"),
        "{}",
        out.stderr
    );
}
