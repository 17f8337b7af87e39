//! What a cron log or `kubectl logs` gets on stderr (issue 23, Logs): off a terminal every
//! line within 80 columns (or `$COLUMNS`), broken at spaces only so that no word is lost;
//! a start line and a time on every progress line and JSON event.

use crate::common::{self, s};

/// czload off a terminal with `COLUMNS` as given (`None`: unset, 80).
fn run(args: &[&str], columns: Option<&str>) -> (i32, String) {
    let mut cmd = common::czload();
    cmd.args(args).env("COREZOID_API_SECRET", common::SECRET);
    match columns {
        Some(c) => cmd.env("COLUMNS", c),
        None => cmd.env_remove("COLUMNS"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// A load that stops (a wrong process), one refused before it starts (a long path that
/// does not exist), and a clean one: at 80 and at 50 columns every line fits unless it is
/// one word, and the words are those of the unwrapped text, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_fits_the_width_off_a_terminal_and_loses_no_word() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir
        .path()
        .join("orders-with-a-rather-long-name-for-wrapping.csv");
    let mut t = String::from("id,amount\n");
    for i in 1..=50 {
        t.push_str(&format!("w{i},x{i}\n"));
    }
    std::fs::write(&input, t).unwrap();
    let url = sb.url();
    let missing = dir
        .path()
        .join("no/such/folder/with/a/long/name/at/all/input.csv");
    let base = ["load", "--url", &url, "--api-login", common::LOGIN];
    let cases: Vec<Vec<&str>> = vec![
        vec![
            s(&input),
            "--conv-id",
            "555",
            "--type",
            "amount:number",
            "--restart",
        ],
        vec![s(&input), "--conv-id", "999999", "--restart"],
        vec![s(&missing), "--conv-id", "555"],
    ];
    let mut problems = Vec::new();
    for case in &cases {
        let args: Vec<&str> = base.iter().chain(case).copied().collect();
        let (code, wide) = run(&args, Some("100000"));
        for (columns, width) in [(None, 80), (Some("50"), 50)] {
            let (c, text) = run(&args, columns);
            if c != code {
                problems.push(format!("{case:?}: exit {c}, wide {code}"));
            }
            for l in text.lines() {
                if l.chars().count() > width && l.trim().contains(' ') {
                    problems.push(format!("{case:?} at {width}: {} columns: {l}", l.len()));
                }
            }
            // Times, durations and latencies differ from run to run: compare the words
            // without digits (the rows are all rejected, or refused, the same each time).
            let strip = |t: &str| {
                words(t)
                    .into_iter()
                    .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            if strip(&text) != strip(&wide) {
                problems.push(format!(
                    "{case:?} at {width}: words differ:\n{text}\n---\n{wide}"
                ));
            }
        }
        // Wrapped at all: the test can fail when nothing is wrapped.
        let (_, narrow) = run(&args, Some("50"));
        if narrow.lines().count() <= wide.lines().count() {
            problems.push(format!(
                "{case:?}: nothing wrapped at 50 columns:\n{narrow}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn timed(line: &str) -> bool {
    line.len() > 21 && humantime::parse_rfc3339(&line[..20]).is_ok()
}

/// `--progress json`: a start event (version, inputs, target, rate), progress events and
/// a `done` event, each with an RFC 3339 `time`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_progress_events_start_with_a_start_event_and_carry_their_time() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("j.csv");
    std::fs::write(&input, "id,amount\nj1,1\nj2,2\n").unwrap();
    let url = sb.url();
    let (code, text) = run(
        &[
            "load",
            s(&input),
            "--conv-id",
            "555",
            "--url",
            &url,
            "--api-login",
            common::LOGIN,
            "--progress",
            "json",
            "--rate",
            "50",
        ],
        None,
    );
    assert_eq!(code, 0, "{text}");
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() >= 2, "{text}");
    let first = &events[0];
    assert_eq!(first["event"], "start", "{first}");
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(first["target"], "--conv-id 555");
    assert_eq!(first["rate"], "50");
    assert_eq!(first["inputs"][0], s(&input));
    assert_eq!(events.last().unwrap()["event"], "done", "{text}");
    assert_eq!(events.last().unwrap()["rows"], 2, "{text}");
    for e in &events {
        let t = e["time"].as_str().unwrap_or_default();
        assert!(humantime::parse_rfc3339(t).is_ok(), "{e}");
    }
    // Plain: the start line, timed.
    let (_, plain) = run(
        &[
            "load",
            s(&input),
            "--conv-id",
            "555",
            "--url",
            &url,
            "--api-login",
            common::LOGIN,
            "--restart",
        ],
        None,
    );
    let first = plain.lines().next().unwrap_or_default();
    assert!(
        timed(first) && first.contains("czload ") && first.contains("loading"),
        "{plain}"
    );
}

/// `czload check`'s report on stdout, off a terminal: within 80 columns, broken at spaces
/// only, so the advice (`--rename COL:customer`) still reads whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_report_fits_80_columns_and_keeps_its_flags_whole() {
    use czload::sandbox::{Param, Sandbox, SandboxConfig};
    let sb = Sandbox::start(SandboxConfig {
        params: ["order_id:string:required", "customer:string:required"]
            .iter()
            .map(|p| Param::parse(p).unwrap())
            .collect(),
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("o.csv");
    std::fs::write(&input, "order_id,cust,note\nA-1,ann,x\n").unwrap();
    let url = sb.url();
    let out = common::czload()
        .args(["check", s(&input), "--conv-id", "555", "--url", &url])
        .args(["--api-login", common::LOGIN])
        .env("COREZOID_API_SECRET", common::SECRET)
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{line:?} in\n{text}");
    }
    let flat = words(&text).join(" ");
    assert!(
        flat.contains("map one to it with --rename COL:customer, or give every task a value with --set customer=VALUE"),
        "{text}"
    );
}

/// A stderr nobody reads (a stalled log collector, a full pipe) holds up the messages
/// only, never the load: the results log is written to its end while czload's stderr
/// cannot take a byte. The pipe is filled before czload starts, so its very first
/// progress line would block the journal if it were written there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_never_holds_up_the_results_log() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut t = String::from("id,n\n");
    for i in 0..3000 {
        t.push_str(&format!("r{i},{i}\n"));
    }
    std::fs::write(&input, t).unwrap();
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two fresh descriptors, owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Fill it: non-blocking until it refuses, then blocking again for czload.
    let w = write.as_raw_fd();
    unsafe {
        let flags = libc::fcntl(w, libc::F_GETFL);
        libc::fcntl(w, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let chunk = [b'.'; 4096];
        while libc::write(w, chunk.as_ptr().cast(), chunk.len()) > 0 {}
        libc::fcntl(w, libc::F_SETFL, flags);
    }
    let log = dir.path().join("in.results.ndjson");
    // Not `load_command`: it passes --quiet, and these lines are the point.
    let url = sb.url();
    let mut child = common::czload()
        .args(["load", "--url", &url, "--api-login", common::LOGIN])
        .env("COREZOID_API_SECRET", common::SECRET)
        .args([
            s(&input),
            "--conv-id",
            "555",
            "--batch-size",
            "20",
            "--progress",
            "json",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(write))
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let finished = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.ends_with("{\"end\":\"finished\"}\n") {
            break true;
        }
        if t0.elapsed() > std::time::Duration::from_secs(40) {
            break false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // Now read it, so that czload can say its summary and exit.
    let drain = std::thread::spawn(move || {
        let mut f = std::fs::File::from(read);
        let mut all = Vec::new();
        let _ = f.read_to_end(&mut all);
        all
    });
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let err = String::from_utf8_lossy(&drain.join().unwrap()).into_owned();
    assert!(finished, "the results log stalled behind a full stderr");
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        &err[err.len().saturating_sub(2000)..]
    );
    assert_eq!(sb.stats().created, 3000);
    assert!(err.contains(" rows in "), "the summary still comes");
}
