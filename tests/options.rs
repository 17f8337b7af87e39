//! Flags that shape the data: header, delimiter, exclusions, empty cells, data field,
//! per-row process, company id, slow stdin, the summary file and progress output.

use crate::common;
use crate::common::s;
use crate::common::{by_ref, load};
use czload::sandbox::Sandbox;
use serde_json::{json, Value};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_delimiter_exclude_and_empty_cells() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("semi.csv");
    std::fs::write(&input, "1;a;;x\n2;;5;y\n").unwrap();
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--no-header",
            "--delimiter",
            ";",
            "--exclude",
            "key4",
            "--type",
            "key3:number",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    // keep: empty string column -> "", empty typed column -> left out; key4 excluded.
    assert_eq!(
        Value::Object(refs["semi.csv:1"].data.clone()),
        json!({"key1": "1", "key2": "a"})
    );
    assert_eq!(
        Value::Object(refs["semi.csv:2"].data.clone()),
        json!({"key1": "2", "key2": "", "key3": 5})
    );

    for (mode, want) in [
        ("omit", json!({"key1": "2", "key3": 5})),
        ("null", json!({"key1": "2", "key2": null, "key3": 5})),
    ] {
        let sb = common::sandbox().await;
        let out = load(
            &sb.url(),
            &[
                s(&input),
                "--conv-id",
                "555",
                "--no-header",
                "--delimiter",
                ";",
                "--exclude",
                "key4",
                "--type",
                "key3:number",
                "--empty",
                mode,
            ],
            None,
        )
        .await;
        assert_eq!(out.code, 0, "{out:?}");
        let tasks = sb.tasks();
        assert_eq!(
            Value::Object(by_ref(&tasks)["semi.csv:2"].data.clone()),
            want,
            "--empty {mode}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_field_conv_id_column_and_ref_field_for_ndjson() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.ndjson");
    std::fs::write(
        &input,
        concat!(
            "{\"key\":\"k1\",\"proc\":555,\"payload\":{\"a\":1},\"noise\":true}\n",
            "{\"key\":\"k2\",\"proc\":\"556\",\"payload\":{\"b\":[2]}}\n",
            "{\"key\":\"k3\",\"proc\":999999,\"payload\":{}}\n",
            "{\"key\":\"k4\",\"proc\":555,\"payload\":[1]}\n",
        ),
    )
    .unwrap();
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id-column",
            "proc",
            "--data-field",
            "payload",
            "--ref-column",
            "key",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    assert_eq!(refs.len(), 2);
    assert_eq!(
        (refs["k1"].conv_id, Value::Object(refs["k1"].data.clone())),
        (555, json!({"a": 1}))
    );
    assert_eq!(
        (refs["k2"].conv_id, Value::Object(refs["k2"].data.clone())),
        (556, json!({"b": [2]}))
    );
    let log = std::fs::read_to_string(dir.path().join("e.results.ndjson")).unwrap();
    assert!(
        log.contains("Object conv with id 999999 does not exist"),
        "{log}"
    );
    assert!(
        log.contains(r#"\"payload\" (--data-field) is not an object"#),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn company_id_is_sent_with_every_op() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("c.csv");
    std::fs::write(&input, "id\n1\n").unwrap();
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--company-id",
            "i-0042",
            "--dry-run",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(r#""company_id":"i-0042""#),
        "{}",
        out.stdout
    );
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--company-id", "i-0042"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sb.tasks().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stdin_is_sent_after_the_linger_time_not_at_the_end() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let url = sb.url();
    let results = dir.path().join("r.ndjson");
    let mut child = common::load_command(&url, common::SECRET)
        .args([
            "-",
            "--format",
            "ndjson",
            "--conv-id",
            "555",
            "--linger-ms",
            "100",
            "--results",
            s(&results),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    stdin.flush().unwrap();
    // Far fewer than a batch, and stdin stays open: they must still arrive.
    let t0 = Instant::now();
    while sb.tasks().len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "rows held back while stdin is open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stdin.write_all(b"{\"n\":3}\n").unwrap();
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(sb.tasks().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_and_plain_progress_lines() {
    let sb = Sandbox::start(czload::sandbox::SandboxConfig {
        delay_ms: 40,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("p.csv");
    let mut text = String::from("id\n");
    for i in 1..=15_000 {
        text.push_str(&format!("{i}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let summary = dir.path().join("s.json");
    let url = sb.url();
    // Not --quiet, and stderr is a pipe (not a terminal): plain progress lines.
    let out = tokio::task::spawn_blocking({
        let (input, summary) = (input.clone(), summary.clone());
        move || {
            crate::common::czload()
                .args([
                    "load",
                    s(&input),
                    "--conv-id",
                    "555",
                    "--concurrency",
                    "1",
                    "--summary-json",
                    s(&summary),
                ])
                .args(["--url", &url, "--api-login", common::LOGIN])
                .env("COREZOID_API_SECRET", common::SECRET)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Each line after an RFC 3339 time, so that nights appended to one log are told
    // apart; the first says what this run is.
    let timed = |l: &str, rest: &str| {
        l.len() > 21 && humantime::parse_rfc3339(&l[..20]).is_ok() && l[21..].starts_with(rest)
    };
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        timed(
            first,
            &format!("czload {}: loading ", env!("CARGO_PKG_VERSION"))
        ) && first.contains("--conv-id 555")
            && first.contains("--rate auto"),
        "a start line: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| timed(l, "czload: ") && l.contains("% ") && l.contains(" in flight ")),
        "a progress line every 5 s, by rows: {stderr}"
    );
    let sum: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(sum["rows"], 15_000);
    assert_eq!(sum["created"], 15_000);
    assert_eq!(sum["requests"], 150);
    assert!(sum["latency"]["p50_ms"].as_f64().unwrap() >= 40.0, "{sum}");
    assert!(sum["rows_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(sum["results_log"], s(&dir.path().join("p.results.ndjson")));
}
