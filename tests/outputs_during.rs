//! Output paths that change while a run goes on (docs/outputs.md, "Between the check
//! and the write"), and a crash while rows fail: what czload finds then is judged again
//! when it writes, and no file it did not write is harmed.

use crate::common::{self, load_command, s, SECRET};
use crate::outputs_matrix::{load, mkfifo, run, snapshot, untouched};
use czload::sandbox::Sandbox;

/// Paths swapped while the run goes on (after the check, before the end): the summary
/// for a symlink to the input, the report for a user's file, the metrics for a FIFO.
/// Each is left as it is, the run says so (exit 1), and no temporary file is left. The
/// swap waits for the first row in the results log; `--rate 20` keeps the 100 rows
/// going for seconds after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_swapped_during_the_run_is_left_as_it_is() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut text = String::from("id,name\n");
    for i in 0..100 {
        text.push_str(&format!("{i},n{i}\n"));
    }
    std::fs::write(&input, &text).unwrap();
    let (summary, report, metrics) = (
        dir.path().join("s.json"),
        dir.path().join("r.html"),
        dir.path().join("m.prom"),
    );
    let mut cmd = load_command(&sb.url(), SECRET);
    cmd.args([
        s(&input),
        "--conv-id",
        "555",
        "--rate",
        "20",
        "--batch-size",
        "5",
    ])
    .args(["--summary-json", s(&summary), "--report", s(&report)])
    .args(["--metrics", s(&metrics)]);
    let run = tokio::spawn(run(cmd));
    let log = dir.path().join("in.results.ndjson");
    crate::recovery::wait_lines(&log, 2).await;
    std::os::unix::fs::symlink(&input, &summary).unwrap();
    std::fs::write(&report, "a user's page\n").unwrap();
    mkfifo(&metrics);
    let before = snapshot(dir.path());
    let out = run.await.unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    for p in [&summary, &report, &metrics] {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(&name) && l.contains("no longer czload's")),
            "{name}: {}",
            out.stderr
        );
    }
    assert_eq!(std::fs::read_to_string(&input).unwrap(), text);
    untouched("swapped", &before, dir.path(), &[log]);
}

/// A crash while rows fail leaves a retry file that the resume knows as czload's: the file
/// is created only at a checkpoint, after the results log holds a row that went to it
/// (before, it was created at the first failed row and held nothing on disk until 8 KB or
/// the end, so `--resume` after `kill -9` refused it as someone's empty file). Its rows
/// are rows the log calls `failed`, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_resume_takes_the_retry_file_as_czloads() {
    use crate::recovery::{finish, make_csv, signal, spawn_load, wait_lines};
    let bad = Sandbox::start(czload::sandbox::SandboxConfig {
        fail_before: 1.0,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "in.csv", 200);
    let args = [s(&input), "--conv-id", "555", "--max-attempts", "1"];
    let mut slow = args.to_vec();
    slow.extend(["--rate", "20", "--batch-size", "5"]);
    let child = spawn_load(&bad.url(), &slow);
    let log = dir.path().join("in.results.ndjson");
    // The manifest and a few failed rows, well before the 200 rows are done.
    wait_lines(&log, 12).await;
    signal(&child, "-KILL");
    finish(child).await;
    let out = load(
        &bad.url(),
        &input,
        &["--resume".into(), "--max-attempts".into(), "1".into()],
    )
    .await;
    assert_eq!(out.code, 2, "rows failed, none refused: {out:?}");
    assert!(!out.stderr.contains("will not replace"), "{}", out.stderr);
    let failed: std::collections::HashSet<String> = common::results(&log)
        .iter()
        .filter(|l| l["status"] == "failed")
        .map(|l| l["ref"].as_str().unwrap().to_string())
        .collect();
    let retry = std::fs::read_to_string(dir.path().join("in.retry.csv")).unwrap();
    let mut rows: Vec<&str> = retry.lines().skip(1).collect();
    let n = rows.len();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), n, "each row once: {retry}");
    assert!(
        n > 0 && n <= failed.len(),
        "{n} rows, {} failed",
        failed.len()
    );
}
