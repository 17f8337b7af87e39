//! Exactly once under faults: chaos, crashes, Ctrl-C, resume, auth failures, rows
//! without refs, throttling. Every test ends by checking what the sandbox stored against
//! the input, and the results log against the rows.

use crate::common::s;
use crate::common::{self, SECRET};
use crate::common::{by_ref, load, results, Out};
use czload::sandbox::{RpsMode, Sandbox, SandboxConfig};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Writes a CSV of `n` rows (`id` 1..=n) named `name` in `dir`.
pub(crate) fn make_csv(dir: &Path, name: &str, n: usize) -> PathBuf {
    let mut s = String::with_capacity(n * 40);
    s.push_str("id,name,amount\n");
    for i in 1..=n {
        s.push_str(&format!("{i},name {i},{}.{:02}\n", i % 1000, i % 100));
    }
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}

/// The sandbox holds exactly one task per row, `{file}:{row}` for rows 1..=n.
pub(crate) fn assert_one_task_per_row(sb: &Sandbox, file: &str, n: usize) {
    let tasks = sb.tasks();
    let refs = by_ref(&tasks); // panics on a ref stored twice
    for i in 1..=n {
        let r = format!("{file}:{i}");
        let t = refs
            .get(&r)
            .unwrap_or_else(|| panic!("row {i} ({r}) missing"));
        assert_eq!(t.data["id"], i.to_string());
    }
    assert_eq!(tasks.len(), n, "no task beyond the rows");
}

/// The results log has exactly one line per row, each with a status in `ok`.
pub(crate) fn assert_one_line_per_row(log: &Path, n: usize, ok: &[&str]) -> Vec<Value> {
    let lines = results(log);
    let mut seen: HashMap<u64, &Value> = HashMap::new();
    for l in &lines {
        let row = l["row"].as_u64().unwrap();
        assert!(seen.insert(row, l).is_none(), "row {row} has two lines");
        assert!(ok.contains(&l["status"].as_str().unwrap()), "{l}");
    }
    assert_eq!(seen.len(), n, "every row has a line");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_row_exactly_once() {
    let sb = Sandbox::start(SandboxConfig {
        fail_before: 0.1,
        fail_after: 0.1,
        drop_after: 0.1,
        rps: Some(30_000),
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    let input = make_csv(dir.path(), "chaos.csv", n);
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--concurrency",
            "8",
            "--max-attempts",
            "20",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "chaos.csv", n);
    let lines = assert_one_line_per_row(
        &dir.path().join("chaos.results.ndjson"),
        n,
        &["created", "exists"],
    );
    let st = sb.stats();
    // The faults really happened, and the ones after applying made rows come back `exists`.
    assert!(
        st.faults_fail_before > 0 && st.faults_fail_after > 0 && st.faults_drop_after > 0,
        "{st:?}"
    );
    assert!(lines.iter().any(|l| l["status"] == "exists"));
    assert!(lines.iter().any(|l| l["attempts"].as_u64().unwrap() > 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_refs_unknown_outcomes_are_ambiguous_and_never_resent() {
    let sb = Sandbox::start(SandboxConfig {
        fail_after: 0.3,
        drop_after: 0.2,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let input = make_csv(dir.path(), "noref.csv", n);
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--no-ref"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    // Every request was applied once (these faults strike after applying) and none was
    // sent twice: exactly one task per row, though some rows are reported ambiguous.
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), n);
    let mut ids: Vec<_> = tasks
        .iter()
        .map(|t| t.data["id"].as_str().unwrap().parse::<u64>().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
    let lines = assert_one_line_per_row(
        &dir.path().join("noref.results.ndjson"),
        n,
        &["created", "ambiguous"],
    );
    let ambiguous = lines.iter().filter(|l| l["status"] == "ambiguous").count();
    assert!(ambiguous > 0);
    assert!(lines.iter().all(|l| l["attempts"] == 1), "nothing resent");
    // They are in their own file, for a human to decide, and not in the retry file.
    let amb = std::fs::read_to_string(dir.path().join("noref.ambiguous.csv")).unwrap();
    assert_eq!(amb.lines().count(), ambiguous + 1);
    assert!(!dir.path().join("noref.retry.csv").exists());
    assert_eq!(sb.stats().requests, (n as u64).div_ceil(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_split_until_only_the_bad_rows_remain() {
    // Bodies over 6000 bytes get 413: a full batch of 100 rows is about 9 KB.
    let sb = Sandbox::start(SandboxConfig {
        max_body_bytes: 6000,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 1000;
    let input = make_csv(dir.path(), "split.csv", n);
    let out = load(&sb.url(), &[s(&input), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "split.csv", n);
    let lines = assert_one_line_per_row(&dir.path().join("split.results.ndjson"), n, &["created"]);
    assert!(
        lines.iter().all(|l| l["attempts"] == 1),
        "a split is not a failed attempt"
    );
    assert!(sb.stats().too_large > 0);
}

/// Starts `czload load` in the background.
pub(crate) fn spawn_load(url: &str, args: &[&str]) -> std::process::Child {
    common::load_command(url, SECRET)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the results log has at least `lines` lines (manifest included).
pub(crate) async fn wait_lines(log: &Path, lines: usize) {
    let t0 = Instant::now();
    loop {
        let n = std::fs::read_to_string(log)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= lines {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {n} lines after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub(crate) fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Waits for the child, at most 60 s: a run that should have stopped and did not fails
/// the test (the child is killed) instead of hanging it.
pub(crate) async fn finish(child: std::process::Child) -> Out {
    let pid = child.id();
    let wait = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    match tokio::time::timeout(Duration::from_secs(60), wait).await {
        Ok(done) => Out::from(done.unwrap()),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("czload (pid {pid}) still running after 60 s");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_twice_with_sigkill_then_resumed_every_row_exactly_once() {
    let sb = Sandbox::start(SandboxConfig {
        delay_ms: 15,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 10_000;
    let input = make_csv(dir.path(), "crash.csv", n);
    let log = dir.path().join("crash.results.ndjson");
    let args = [
        s(&input),
        "--conv-id",
        "555",
        "--concurrency",
        "4",
        "--batch-size",
        "50",
    ];

    let child = spawn_load(&sb.url(), &args);
    wait_lines(&log, 1500).await;
    signal(&child, "-KILL");
    let out = finish(child).await;
    assert_eq!(out.code, -1, "killed: {out:?}");

    let mut resumed: Vec<&str> = args.to_vec();
    resumed.push("--resume");
    let child = spawn_load(&sb.url(), &resumed);
    wait_lines(&log, 6000).await;
    signal(&child, "-KILL");
    finish(child).await;
    let before = results(&log).len();
    assert!(
        before < n,
        "the second kill came before the end ({before} lines)"
    );

    let out = load(&sb.url(), &resumed, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("already settled were skipped"),
        "{}",
        out.stderr
    );
    assert_one_task_per_row(&sb, "crash.csv", n);
    assert_one_line_per_row(&log, n, &["created", "exists"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_drains_exits_130_and_resume_finishes() {
    let sb = Sandbox::start(SandboxConfig {
        delay_ms: 15,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 6000;
    let input = make_csv(dir.path(), "int.csv", n);
    let log = dir.path().join("int.results.ndjson");
    let args = [
        s(&input),
        "--conv-id",
        "555",
        "--concurrency",
        "2",
        "--batch-size",
        "50",
    ];
    let child = spawn_load(&sb.url(), &args);
    wait_lines(&log, 500).await;
    signal(&child, "-INT");
    let out = finish(child).await;
    assert_eq!(out.code, 130, "{out:?}");
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    // Drained: every request the server answered has its rows in the log, so the log
    // and the server agree exactly.
    let lines = results(&log);
    assert!(lines.len() < n);
    assert_eq!(
        sb.tasks().len(),
        lines.len(),
        "in-flight requests were finished and logged"
    );

    let mut resumed: Vec<&str> = args.to_vec();
    resumed.push("--resume");
    let out = load(&sb.url(), &resumed, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "int.csv", n);
    let lines = assert_one_line_per_row(&log, n, &["created"]);
    assert!(
        lines.iter().all(|l| l["status"] == "created"),
        "nothing was in doubt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_a_changed_input_or_mapping() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "ch.csv", 50);
    let out = load(&sb.url(), &[s(&input), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");

    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--type",
            "amount:number",
            "--resume",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("mapping"), "{}", out.stderr);

    let mut text = std::fs::read_to_string(&input).unwrap();
    text.push_str("51,late,1.00\n");
    std::fs::write(&input, text).unwrap();
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--resume"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("changed"), "{}", out.stderr);
    assert_eq!(sb.tasks().len(), 50, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_wrong_secret_every_row_is_resumable() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let n = 2000;
    let input = make_csv(dir.path(), "auth.csv", n);
    let url = sb.url();
    let inp = input.clone();
    let out = tokio::task::spawn_blocking(move || {
        common::load_command(&url, "not-the-secret")
            .args([s(&inp), "--conv-id", "555"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("not-the-secret"));
    assert!(sb.stats().auth_failures >= 1);
    assert!(sb.tasks().is_empty());

    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--resume"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "auth.csv", n);
    assert_one_line_per_row(&dir.path().join("auth.results.ndjson"), n, &["created"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_auto_finds_the_limit_and_loses_nothing() {
    let sb = Sandbox::start(SandboxConfig {
        rps: Some(2000),
        rps_mode: RpsMode::Request,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 12_000;
    let input = make_csv(dir.path(), "auto.csv", n);
    let summary = dir.path().join("s.json");
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--rate",
            "auto",
            "--summary-json",
            s(&summary),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "auto.csv", n);
    let sum: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    // It was throttled (it went past the limit) and backed off (it finished).
    assert!(sum["throttled"].as_u64().unwrap() > 0, "{sum}");
    assert_eq!(sum["created"], n as u64);
    // What it took for the limit: the ops the sandbox accepted in a throttled second
    // (a second on this machine's clock may straddle two of the sandbox's a little).
    let found = sum["rate"]["limit_found"].as_f64().expect("a limit found");
    assert!((1700.0..=2300.0).contains(&found), "found {found}: {sum}");
    assert_eq!(sum["rate"]["asked"], "auto");
    assert!(
        out.stderr.contains("the server's limit was found at"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_refused_ops_of_a_request_are_resent() {
    // Ops beyond 500 a second are refused one by one; the rest of each request applies.
    let sb = Sandbox::start(SandboxConfig {
        rps: Some(500),
        rps_mode: RpsMode::Op,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 2000;
    let input = make_csv(dir.path(), "perop.csv", n);
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--max-attempts", "50"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "perop.csv", n);
    let st = sb.stats();
    assert!(st.throttled_ops > 0, "{st:?}");
    // Had the applied ops been resent with the refused ones, they would have come back
    // as duplicate refs.
    assert_eq!(st.duplicate_refs, 0, "{st:?}");
    let lines = assert_one_line_per_row(&dir.path().join("perop.results.ndjson"), n, &["created"]);
    assert!(lines.iter().any(|l| l["attempts"].as_u64().unwrap() > 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_pauses_every_sender() {
    let sb = Sandbox::start(SandboxConfig {
        rps: Some(400),
        rps_mode: RpsMode::Request,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 1600;
    let input = make_csv(dir.path(), "pause.csv", n);
    let t0 = Instant::now();
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--concurrency",
            "8",
            "--max-attempts",
            "50",
        ],
        None,
    )
    .await;
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_task_per_row(&sb, "pause.csv", n);
    // With each 429 pausing all eight senders for its Retry-After (1 s), refusals come at
    // most one round of senders per window (the sandbox admits 4 of the 8 requests that
    // leave together after a pause). Senders that each backed off on their own, 0 to
    // 100-800 ms, would keep hammering: dozens of 429s a second.
    let throttled = sb.stats().throttled_requests as f64;
    assert!(
        throttled <= 8.0 + 6.0 * secs,
        "{throttled} throttled requests in {secs:.1} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_answers_for_the_rows_of_earlier_runs() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.csv");
    let mut text = String::from("id,amount\n1,x\n");
    for i in 2..=300 {
        text.push_str(&format!("{i},{i}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let args = [s(&input), "--conv-id", "555", "--type", "amount:number"];
    // First run: the credentials are wrong, so only the bad row is settled (rejected).
    let url = sb.url();
    let a: Vec<String> = args.iter().map(|x| x.to_string()).collect();
    let code = tokio::task::spawn_blocking(move || {
        common::load_command(&url, "wrong")
            .args(&a)
            .output()
            .unwrap()
            .status
            .code()
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1));
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let out = load(&sb.url(), &resumed, None).await;
    // Everything this run sent was created, but row 1 never will be: exit 2, and said.
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("299 created"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("earlier runs: 0 created, 0 modified, 0 exists, 1 rejected"),
        "{}",
        out.stderr
    );
    assert_eq!(sb.tasks().len(), 299);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_batch_that_is_still_retrying_after_the_input_is_read() {
    // Every request fails, so the only batch keeps retrying long after the reader is done.
    let sb = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "stuck.csv", 10);
    let child = spawn_load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--max-attempts",
            "1000",
            "--max-retry-time",
            "600",
        ],
    );
    let t0 = Instant::now();
    while sb.stats().requests < 3 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no retries seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-INT");
    let t1 = Instant::now();
    let out = finish(child).await;
    assert_eq!(out.code, 130, "{out:?}");
    assert!(
        t1.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t1.elapsed()
    );
    assert!(
        out.stderr.contains("10 rows were not settled"),
        "{}",
        out.stderr
    );
    assert!(results(&dir.path().join("stuck.results.ndjson")).is_empty());
}

/// `czload load - ...` with a stdin that stays open (and quiet) after `first`.
fn spawn_stdin_load(
    dir: &Path,
    url: &str,
    secret: &str,
    first: &[u8],
) -> (std::process::Child, std::process::ChildStdin) {
    use std::io::Write;
    let mut child = common::load_command(url, secret)
        .args([
            "-",
            "--format",
            "ndjson",
            "--conv-id",
            "555",
            "--linger-ms",
            "50",
        ])
        .arg("--results")
        .arg(dir.join("r.ndjson"))
        .arg("--retry-file")
        .arg(dir.join("retry.ndjson"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(first).unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stdin_does_not_hold_a_stopped_run() {
    // A fatal answer: the run stops although stdin is still open.
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, stdin) = spawn_stdin_load(dir.path(), &sb.url(), "wrong", b"{\"n\":1}\n");
    let out = finish(child).await;
    drop(stdin);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(sb.stats().auth_failures >= 1);

    // Ctrl-C: the run stops although stdin is still open. (A log of its own: the first
    // run's is unfinished, and a plain run on it is refused.)
    let dir = tempfile::tempdir().unwrap();
    let (child, stdin) = spawn_stdin_load(dir.path(), &sb.url(), SECRET, b"{\"n\":1}\n{\"n\":2}\n");
    let t0 = Instant::now();
    while sb.tasks().len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(20), "rows held back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-INT");
    let out = finish(child).await;
    drop(stdin);
    assert_eq!(out.code, 130, "{out:?}");
    assert_eq!(sb.tasks().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_still_refuses_refs_an_earlier_run_sent() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dup.csv");
    std::fs::write(&input, "ref,v\nA,1\nB,2\nA,3\n").unwrap();
    let args = [s(&input), "--conv-id", "555", "--ref-column", "ref"];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    // As if the run had been killed before row 3 was logged.
    let log = dir.path().join("dup.results.ndjson");
    let kept: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"row\":3"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&log, kept.concat()).unwrap();
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let out = load(&sb.url(), &resumed, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = results(&log);
    let row3 = lines.iter().find(|l| l["row"] == 3).unwrap();
    assert_eq!(row3["status"], "rejected", "{row3}");
    assert!(
        row3["error"]
            .as_str()
            .unwrap()
            .contains("duplicate ref \"A\""),
        "{row3}"
    );
    assert_eq!(sb.stats().duplicate_refs, 0, "the repeat was never sent");
    assert_eq!(sb.tasks().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_copes_with_a_log_cut_inside_a_utf8_character() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("utf.csv");
    std::fs::write(&input, "ref,v\nзаказ-1,1\nзаказ-2,2\nзаказ-3,3\n").unwrap();
    let args = [s(&input), "--conv-id", "555", "--ref-column", "ref"];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    // Cut the log inside the last line's first Cyrillic letter, as a crash could.
    let log = dir.path().join("utf.results.ndjson");
    let bytes = std::fs::read(&log).unwrap();
    // A crash leaves no end line and no closing `run` line.
    let mut bytes = bytes
        .strip_suffix(b"{\"end\":\"finished\"}\n")
        .expect("a finished log")
        .to_vec();
    let run_line = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    assert!(bytes[run_line..].starts_with(b"{\"run\":"));
    bytes.truncate(run_line);
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let cyr = last_start + bytes[last_start..].iter().position(|&b| b >= 0x80).unwrap();
    std::fs::write(&log, &bytes[..cyr + 1]).unwrap();
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let out = load(&sb.url(), &resumed, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    // The cut row was redone: it was there already.
    assert!(out.stderr.contains("1 exists"), "{}", out.stderr);
    assert_eq!(sb.tasks().len(), 3);
}

/// A results log that can no longer be written stops the run: nothing more is sent once
/// outcomes cannot be recorded (a row sent then would be sent again by --resume). The
/// load runs with a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) a few KB past the
/// manifest, so writes to the log fail with EFBIG in the middle of the load. (A FIFO as
/// the log, as this test once used, is refused before anything is sent: docs/outputs.md.)
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_log_that_fails_mid_run_stops_the_senders() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::start(SandboxConfig {
        delay_ms: 5,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    let input = make_csv(dir.path(), "full.csv", n);
    let log = dir.path().join("results.ndjson");
    let mut cmd = common::load_command(&sb.url(), SECRET);
    cmd.args([s(&input), "--conv-id", "555", "--batch-size", "10"])
        .args(["--results", s(&log)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit).
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 8192,
                rlim_max: 8192,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = finish(cmd.spawn().unwrap()).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("results.ndjson"), "{}", out.stderr);
    let created = sb.stats().created;
    // At 5 ms a request, 4 at a time, the whole file takes 2.5 s or more; the stop
    // comes after a few dozen requests, and only those in flight may still land.
    assert!(
        created < n as u64 / 4,
        "{created} of {n} rows sent after the log failed"
    );
}

/// A stream that goes quiet: its rows, rejected ones included, reach the server and the
/// results log while stdin is still open (rejected rows go to the journal in groups; a
/// quiet stream hands over a partial group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stdin_logs_its_rejected_rows_without_waiting_for_more() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, stdin) = spawn_stdin_load(
        dir.path(),
        &sb.url(),
        SECRET,
        b"{\"n\":1}\nnot json\n{\"n\":2}\n",
    );
    let log = dir.path().join("r.ndjson");
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"rejected\"") && sb.tasks().len() == 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the rejected row is held back: {text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stdin);
    let out = finish(child).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = results(&log);
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .any(|l| l["status"] == "rejected" && l["line"] == 2));
}
