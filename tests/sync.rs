//! `load --sync` against the sandbox's Sync API: every row's reply in its results line; a
//! reply past the timeout is `no_reply` and its task is never created twice, neither by
//! the retries of a request whose answer was lost nor by a re-run.

use crate::common::{self, by_row, load, results, s};
use czload::sandbox::{Sandbox, SandboxConfig};
use serde_json::json;

async fn sync_sandbox(cfg: SandboxConfig) -> (Sandbox, String) {
    let sb = Sandbox::start(cfg).await.expect("sandbox starts");
    let sync = format!("{}/sync", sb.url());
    (sb, sync)
}

fn rows_csv(dir: &std::path::Path, n: usize, slow: impl Fn(usize) -> bool) -> std::path::PathBuf {
    let p = dir.join("rows.csv");
    let mut text = String::from("id,sync_delay_ms\n");
    for i in 1..=n {
        text.push_str(&format!("{i},{}\n", if slow(i) { 5000 } else { 20 }));
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_gets_its_reply_and_a_timeout_is_no_reply_never_a_second_task() {
    let (sb, sync) = sync_sandbox(common::config()).await;
    let dir = tempfile::tempdir().unwrap();
    let n = 60;
    let slow = |i: usize| i % 20 == 7;
    let input = rows_csv(dir.path(), n, slow);
    let args = [
        s(&input),
        "--conv-id",
        "555",
        "--sync",
        "--sync-url",
        &sync,
        "--sync-timeout",
        "1",
        "--type",
        "sync_delay_ms:integer",
        "--batch-size",
        "10",
    ];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(sb.tasks().len(), n, "every row's task, once");
    let lines = results(&dir.path().join("rows.results.ndjson"));
    let rows = by_row(&lines);
    assert_eq!(rows.len(), n);
    for i in 1..=n {
        let l = rows[&(i as u64)];
        if slow(i) {
            assert_eq!(l["status"], "no_reply", "{l}");
            assert!(
                l["error"]
                    .as_str()
                    .unwrap()
                    .contains("Timeout for create task"),
                "{l}"
            );
            assert!(l.get("reply").is_none(), "{l}");
        } else {
            assert_eq!(l["status"], "created", "{l}");
            assert_eq!(
                l["reply"],
                json!({"replied": true, "fields": 2, "data": {"id": i.to_string(), "sync_delay_ms": 20}}),
                "{l}"
            );
        }
    }
    assert!(out.stderr.contains("3 no_reply"), "{}", out.stderr);
    // The sync request went to the Sync API with the timeout in its body: a reply past it
    // could only come from there.
    assert_eq!(sb.stats().created, n as u64);

    // A re-run finds every task there: no reply to give, and nothing created twice.
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(sb.tasks().len(), n);
    assert!(
        out.stderr.contains(&format!("{n} no_reply")),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_retried_by_ref_into_no_reply_and_never_a_second_task() {
    let (sb, sync) = sync_sandbox(SandboxConfig {
        fail_after: 0.3,
        drop_after: 0.2,
        ..common::config()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    let input = rows_csv(dir.path(), n, |_| false);
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--sync",
            "--sync-url",
            &sync,
            "--type",
            "sync_delay_ms:integer",
            "--batch-size",
            "10",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        sb.tasks().len(),
        n,
        "applied once each, whatever the faults"
    );
    let lines = results(&dir.path().join("rows.results.ndjson"));
    let rows = by_row(&lines);
    assert_eq!(rows.len(), n);
    let mut no_reply = 0;
    for l in rows.values() {
        match l["status"].as_str().unwrap() {
            "created" => assert_eq!(l["reply"]["replied"], true, "{l}"),
            "no_reply" => {
                no_reply += 1;
                assert!(l["attempts"].as_u64().unwrap() > 1, "{l}");
            }
            other => panic!("{other}: {l}"),
        }
    }
    assert!(no_reply > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_takes_only_creates_and_the_in_process_sandbox_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = rows_csv(dir.path(), 3, |_| false);
    let out = load(
        "http://127.0.0.1:9",
        &[
            s(&input),
            "--conv-id",
            "555",
            "--sync",
            "--op",
            "modify",
            "--ref-column",
            "id",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("--sync creates tasks"),
        "{}",
        out.stderr
    );

    let out = crate::common::czload()
        .args([
            "load",
            s(&input),
            "--conv-id",
            "555",
            "--sandbox",
            "--sync",
            "--quiet",
        ])
        .output()
        .unwrap();
    let out = common::Out::from(out);
    assert_eq!(out.code, 0, "{out:?}");
    let lines = results(&dir.path().join("rows.results.ndjson"));
    assert_eq!(lines.len(), 3);
    assert!(
        lines.iter().all(|l| l["reply"]["replied"] == true),
        "{lines:?}"
    );
}
