//! `czload undo`: a load taken back, then verified gone, through faults and a kill -9 in
//! the middle; what the sandbox received and kept, the undo log, the exit codes.

use crate::after::{after_cmd, loaded};
use crate::common::{self, s};
use crate::recovery::{finish, signal, wait_lines};
use czload::sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

/// Each row of the undo log settled once, by a success line: `deleted` or `gone`.
fn one_success_per_row(log: &Path, n: usize) -> Vec<Value> {
    // A line a kill cut short is passed over, as a resume passes over it.
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("row").is_some())
        .collect();
    let mut ok: HashMap<u64, u32> = HashMap::new();
    for l in &lines {
        if l["status"] == "deleted" || l["status"] == "gone" {
            *ok.entry(l["row"].as_u64().unwrap()).or_default() += 1;
        }
    }
    assert_eq!(ok.len(), n, "every row settled");
    assert!(ok.values().all(|&k| k == 1), "and once");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_asks_lists_deletes_and_verify_finds_nothing_left() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (log, lines) = loaded(&sb.url(), dir.path(), 300).await;
    // A second load of the same rows (a new log): every row `exists` at its first
    // attempt, the tasks of the first load; its undo deletes none of them.
    let input = dir.path().join("orders.csv");
    let again = dir.path().join("again.results.ndjson");
    let out = common::load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--results", s(&again)],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = after_cmd("undo", &sb.url(), &[s(&again), "--dry-run"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert!(
        out.stderr.contains("would delete 0 tasks"),
        "{}",
        out.stderr
    );

    let requests = sb.stats().requests;

    // Not a terminal, no --yes: refused, nothing sent.
    let out = after_cmd("undo", &sb.url(), &[s(&log)]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
    // --dry-run: the list, nothing sent.
    let out = after_cmd("undo", &sb.url(), &[s(&log), "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 300);
    let first = format!(
        "{} {}",
        lines[0]["ref"].as_str().unwrap(),
        lines[0]["obj_id"].as_str().unwrap()
    );
    assert!(out.stdout.lines().any(|l| l == first), "{}", out.stdout);
    assert_eq!(sb.stats().requests, requests);

    let errors = sb.stats().op_errors;
    let out = after_cmd("undo", &sb.url(), &[s(&log), "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let st = sb.stats();
    assert_eq!((st.tasks, st.deleted, st.shown), (0, 300, 300));
    // Every op answered ok: the server received each delete once.
    assert_eq!(st.op_errors, errors);
    // 3 requests of 100 shows, then 3 of 100 deletes.
    assert_eq!(st.requests - requests, 6);
    let undo = dir.path().join("orders.undo.ndjson");
    let got = one_success_per_row(&undo, 300);
    assert!(got.iter().all(|l| l["status"] == "deleted"));
    assert!(std::fs::read_to_string(&undo)
        .unwrap()
        .ends_with("{\"end\":\"finished\"}\n"));
    assert!(
        out.stderr.contains("300 deleted, 0 gone already"),
        "{}",
        out.stderr
    );

    // Verify: nothing left.
    let out = after_cmd("verify", &sb.url(), &[s(&log), "--all"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("0 confirmed, 300 missing"),
        "{}",
        out.stderr
    );

    // Again: its log is there, so it wants --resume; resumed, nothing more is sent.
    let out = after_cmd("undo", &sb.url(), &[s(&log), "--yes"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    let before = sb.stats().requests;
    let out = after_cmd("undo", &sb.url(), &[s(&log), "--yes", "--resume"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sb.stats().requests, before);
    assert!(
        out.stderr.contains("300 settled by the run resumed"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_through_faults_and_a_kill_deletes_each_task_once() {
    let sb = Sandbox::start(SandboxConfig {
        fail_before: 0.05,
        fail_after: 0.05,
        drop_after: 0.05,
        delay_ms: 10,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 2000;
    let input = crate::recovery::make_csv(dir.path(), "orders.csv", n);
    let log = dir.path().join("orders.results.ndjson");
    let out = common::load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--max-attempts",
            "30",
            "--results",
            s(&log),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sb.tasks().len(), n);
    // Created, or resent and found there: this load's tasks, all of them.
    let created = common::results(&log)
        .iter()
        .filter(|l| {
            l["status"] == "created" || l["status"] == "exists" && l["attempts"].as_u64() > Some(1)
        })
        .count();
    assert_eq!(created, n);

    let url = sb.url();
    let args = [
        "undo",
        "--url",
        &url,
        "--api-login",
        common::LOGIN,
        s(&log),
        "--yes",
        "--max-attempts",
        "30",
        "--concurrency",
        "2",
        "--batch-size",
        "50",
    ];
    let undo = dir.path().join("orders.undo.ndjson");
    let child = common::czload()
        .args(args)
        .env("COREZOID_API_SECRET", common::SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_lines(&undo, 400).await;
    signal(&child, "-KILL");
    let out = finish(child).await;
    assert_eq!(out.code, -1, "killed: {out:?}");
    let before = std::fs::read_to_string(&undo).unwrap().lines().count();
    assert!(before < created, "killed before the end ({before} lines)");

    let mut resumed: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    resumed.push("--resume".into());
    let out = tokio::task::spawn_blocking(move || {
        let o = common::czload()
            .args(resumed)
            .env("COREZOID_API_SECRET", common::SECRET)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        common::Out::from(o)
    })
    .await
    .unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let st = sb.stats();
    assert_eq!(st.tasks, 0, "nothing left");
    // Each task deleted once: a delete resent after a lost answer, or redone by the
    // resume, found its task gone.
    assert_eq!(st.deleted as usize, n);
    let got = one_success_per_row(&undo, created);
    let deleted = got.iter().filter(|l| l["status"] == "deleted").count();
    assert!(deleted <= n && deleted > 0);
    assert!(
        st.faults_fail_after + st.faults_drop_after > 0,
        "faults happened"
    );

    sb.heal();
    let out = after_cmd("verify", &sb.url(), &[s(&log), "--all"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("0 confirmed, {created} missing")),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_stopped_by_sigterm_says_resume_and_resumes() {
    let sb = Sandbox::start(SandboxConfig {
        delay_ms: 10,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = loaded(&sb.url(), dir.path(), 2000).await;
    let url = sb.url();
    let args: Vec<String> = [
        "undo",
        "--url",
        &url,
        "--api-login",
        common::LOGIN,
        s(&log),
        "--yes",
        "--concurrency",
        "1",
        "--batch-size",
        "20",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let undo = dir.path().join("orders.undo.ndjson");
    let child = common::czload()
        .args(&args)
        .env("COREZOID_API_SECRET", common::SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_lines(&undo, 200).await;
    signal(&child, "-TERM");
    let out = finish(child).await;
    assert_eq!(out.code, 143, "{}", out.stderr);
    assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    let text = std::fs::read_to_string(&undo).unwrap();
    assert!(
        !text.contains("\"end\""),
        "an interrupted undo is not finished"
    );
    assert!(sb.stats().tasks > 0, "stopped before the end");

    let mut resumed = args.clone();
    resumed.push("--resume".into());
    let out = tokio::task::spawn_blocking(move || {
        common::Out::from(
            common::czload()
                .args(resumed)
                .env("COREZOID_API_SECRET", common::SECRET)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((sb.stats().tasks, sb.stats().deleted), (0, 2000));
    one_success_per_row(&undo, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_writes_no_file_it_was_not_given() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = loaded(&sb.url(), dir.path(), 10).await;
    let mine = dir.path().join("mine.txt");
    std::fs::write(&mine, "a user's file").unwrap();
    let link = dir.path().join("orders.undo.ndjson");
    std::os::unix::fs::symlink(&mine, &link).unwrap();
    for more in [&[][..], &["--resume"][..]] {
        let mut args = vec![s(&log), "--yes"];
        args.extend(more);
        let out = after_cmd("undo", &sb.url(), &args).await;
        // Refused before anything is sent, exit 2: the symlink leads to a file czload did
        // not write (docs/outputs.md).
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains("--output") && out.stderr.contains("will not replace"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "a user's file");
    assert_eq!(sb.stats().tasks, 10, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_deletes_the_tasks_of_creates_resent_after_a_lost_answer() {
    let sb = Sandbox::start(SandboxConfig {
        fail_after: 0.5,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = crate::recovery::make_csv(dir.path(), "orders.csv", 500);
    let log = dir.path().join("orders.results.ndjson");
    let args = [
        s(&input),
        "--conv-id",
        "555",
        "--concurrency",
        "1",
        "--max-attempts",
        "30",
        "--results",
        s(&log),
    ];
    let out = common::load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = common::results(&log);
    let resent = lines
        .iter()
        .filter(|l| l["status"] == "exists" && l["attempts"].as_u64() > Some(1))
        .count();
    assert!(
        resent > 0,
        "a create applied and its answer lost came back exists"
    );
    assert_eq!(sb.tasks().len(), 500);
    sb.heal();
    let out = after_cmd("undo", &sb.url(), &[s(&log), "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((sb.stats().tasks, sb.stats().deleted), (0, 500));
    let undone = one_success_per_row(&dir.path().join("orders.undo.ndjson"), 500);
    let by_ref = undone.iter().filter(|l| l.get("obj_id").is_none()).count();
    assert_eq!(by_ref, resent, "the resent rows, found by ref");
}
