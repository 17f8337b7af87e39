//! A nightly run starts where the last ended: `--rate auto` keeps the limit it found per
//! (URL, API login, process) in the state directory (`$XDG_STATE_HOME/czload`), the next
//! run starts there, `--rate auto:N` gives the start outright, and the summary says which.

use crate::common::{self, Out, SECRET};
use crate::recovery::make_csv;
use czload::sandbox::{RpsMode, Sandbox, SandboxConfig};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;

/// `czload load INPUT --conv-id 555 --summary-json S ARGS` with `state` as XDG_STATE_HOME:
/// the outcome and the summary.
async fn run(sb: &Sandbox, state: &Path, input: &Path, args: &[&str]) -> (Out, Value) {
    let summary = input.with_extension("summary.json");
    let mut cmd = common::load_command(&sb.url(), SECRET);
    cmd.arg(input)
        .args(["--conv-id", "555", "--summary-json"])
        .arg(&summary)
        .args(args)
        .env("XDG_STATE_HOME", state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || Out::from(cmd.output().expect("czload runs")))
        .await
        .expect("runner");
    assert_eq!(out.code, 0, "{out:?}");
    let sum: Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("summary JSON");
    (out, sum)
}

/// The one file kept in the state directory, read.
fn kept(state: &Path) -> (String, Value) {
    let dir = state.join("czload").join("rate");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "one file, no temporary left: {files:?}");
    let text = std::fs::read_to_string(&files[0]).expect("readable");
    let v = serde_json::from_str(&text).expect("JSON");
    (text, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_run_starts_at_the_limit_the_last_one_found() {
    let sb = Sandbox::start(SandboxConfig {
        rps: Some(2000),
        rps_mode: RpsMode::Request,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");

    // First run: no state, so it starts from a few requests a second and keeps what it found.
    let first = make_csv(dir.path(), "first.csv", 8_000);
    let (_, sum) = run(&sb, &state, &first, &[]).await;
    assert_eq!(sum["rate"]["start"], "probe", "{sum}");
    let found = sum["rate"]["limit_found"].as_f64().expect("a limit found");
    let (text, v) = kept(&state);
    assert!(!text.contains(SECRET), "the secret is never kept: {text}");
    assert_eq!(v["url"], sb.url().as_str());
    assert_eq!(
        (v["login"].as_str(), v["process"].as_str()),
        (Some(common::LOGIN), Some("555"))
    );
    assert_eq!(v["limit"].as_f64(), Some(found.round()), "{v}");
    assert!((1_000.0..=2_300.0).contains(&found), "found {found}");

    // Second run: it starts there, and says so.
    let second = make_csv(dir.path(), "second.csv", 4_000);
    let (out, sum) = run(&sb, &state, &second, &[]).await;
    assert_eq!(sum["rate"]["start"], "learned", "{sum}");
    assert_eq!(
        sum["rate"]["started_at"].as_f64(),
        Some(found.round()),
        "{sum}"
    );
    assert!(
        out.stderr.contains("the limit the last run found"),
        "{out:?}"
    );
    assert_eq!(sum["created"], 4_000, "{sum}");

    // `--rate auto:N` gives the start outright, whatever is kept.
    let third = make_csv(dir.path(), "third.csv", 1_000);
    let (_, sum) = run(&sb, &state, &third, &["--rate", "auto:700"]).await;
    assert_eq!(sum["rate"]["start"], "asked", "{sum}");
    assert_eq!(sum["rate"]["started_at"].as_f64(), Some(700.0), "{sum}");
}
