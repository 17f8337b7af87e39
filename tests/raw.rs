//! `load --op raw` against the sandbox: creates then modifies by ref, applied and logged op
//! by op; the op's own `id` replaced, not doubled; retries safe with a ref (creates come back
//! `exists`, never twice), ambiguous without; the retry file holds the ops as written.

use crate::common::{self, by_row, load, results, s, CONV};
use czload::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use std::collections::HashMap;

fn write_ops(dir: &std::path::Path, name: &str, ops: &[Value]) -> std::path::PathBuf {
    let p = dir.join(name);
    let text: String = ops.iter().map(|o| format!("{o}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_creates_then_raw_modifies_by_ref_are_applied_and_logged_op_by_op() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let creates: Vec<Value> = (1..=150)
        .map(|i| {
            let mut op = json!({"type":"create","obj":"task","conv_id":CONV,"ref":format!("o-{i}"),"data":{"n":i}});
            if i % 10 == 0 {
                // An id of the line's own is replaced, so the answer still matches.
                op["id"] = json!(format!("mine-{i}"));
            }
            op
        })
        .collect();
    let input = write_ops(dir.path(), "creates.ndjson", &creates);
    let out = load(
        &sb.url(),
        &[s(&input), "--op", "raw", "--batch-size", "40"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sb.tasks().len(), 150);
    let lines = results(&dir.path().join("creates.results.ndjson"));
    assert_eq!(lines.len(), 150);
    assert!(lines
        .iter()
        .all(|l| l["status"] == "created" && l["obj_id"].is_string()));

    let mut modifies: Vec<Value> = (1..=150)
        .map(|i| json!({"type":"modify","obj":"task","conv_id":CONV,"ref":format!("o-{i}"),"data":{"paid":i % 2 == 0}}))
        .collect();
    modifies.push(
        json!({"type":"modify","obj":"task","conv_id":CONV,"ref":"o-missing","data":{"paid":true}}),
    );
    modifies.push(json!({"type":"show","obj":"task","conv_id":CONV,"ref":"o-7"}));
    modifies.push(json!({"type":"delete","obj":"task","conv_id":CONV,"obj_id":"0123"}));
    let input = write_ops(dir.path(), "modifies.ndjson", &modifies);
    let out = load(&sb.url(), &[s(&input), "--op", "raw"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    let tasks = common::by_ref(&sb.tasks())
        .into_iter()
        .map(|(r, t)| (r, t.data.clone()))
        .collect::<HashMap<_, _>>();
    assert_eq!(tasks.len(), 150, "modifies create nothing");
    for i in 1..=150 {
        assert_eq!(
            Value::Object(tasks[&format!("o-{i}")].clone()),
            json!({"n": i, "paid": i % 2 == 0})
        );
    }
    let lines = results(&dir.path().join("modifies.results.ndjson"));
    let rows = by_row(&lines);
    assert_eq!(rows.len(), 153);
    assert!((1..=150).all(|r| rows[&r]["status"] == "modified" && rows[&r]["obj_id"].is_string()));
    assert_eq!(rows[&151]["status"], "rejected");
    assert_eq!(rows[&151]["proc"], "not_found_task");
    assert_eq!(rows[&152]["status"], "done");
    assert_eq!(rows[&153]["status"], "rejected");
    assert!(
        rows[&153]["error"].as_str().unwrap().contains("delete"),
        "{}",
        rows[&153]
    );
    let st = sb.stats();
    assert_eq!((st.created, st.modified), (150, 150));
    assert!(
        out.stderr.contains("150 modified") && out.stderr.contains("1 done"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ops_with_a_ref_are_retried_safely_and_without_one_are_ambiguous() {
    let sb = Sandbox::start(SandboxConfig {
        fail_after: 0.3,
        drop_after: 0.2,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 600;
    let ops: Vec<Value> = (0..n)
        .map(|i| {
            let mut op = json!({"type":"create","obj":"task","conv_id":CONV,"data":{"i":i}});
            if i % 2 == 0 {
                op["ref"] = json!(format!("r-{i}"));
            }
            op
        })
        .collect();
    let input = write_ops(dir.path(), "ops.ndjson", &ops);
    let out = load(
        &sb.url(),
        &[s(&input), "--op", "raw", "--batch-size", "20"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    // Every fault strikes after applying, so every op was applied once and none twice.
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), n);
    let lines = results(&dir.path().join("ops.results.ndjson"));
    let rows = by_row(&lines);
    assert_eq!(rows.len(), n);
    for (row, l) in &rows {
        let with_ref = (row - 1) % 2 == 0;
        let st = l["status"].as_str().unwrap();
        if with_ref {
            assert!(st == "created" || st == "exists", "{l}");
        } else {
            assert!(st == "created" || st == "ambiguous", "{l}");
            assert_eq!(l["attempts"], 1, "never resent without a ref: {l}");
        }
    }
    assert!(lines.iter().any(|l| l["status"] == "exists"));
    let ambiguous: Vec<_> = lines
        .iter()
        .filter(|l| l["status"] == "ambiguous")
        .collect();
    assert!(!ambiguous.is_empty());
    // The ambiguous file holds them as written, ready for a human to decide (the retry
    // file, whose advice is to load it again, does not).
    let retry = std::fs::read_to_string(dir.path().join("ops.ambiguous.ndjson")).unwrap();
    assert_eq!(retry.lines().count(), ambiguous.len());
    for l in retry.lines() {
        let op: Value = serde_json::from_str(l).unwrap();
        assert_eq!(op["type"], "create");
        assert!(op.get("ref").is_none() && op.get("id").is_none(), "{op}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_that_shape_an_op_are_refused_with_raw() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_ops(
        dir.path(),
        "o.ndjson",
        &[json!({"type":"show","obj":"conv","obj_id":1})],
    );
    for (flag, extra) in [
        ("--ref-column", "k"),
        ("--set", "a=1"),
        ("--data-field", "d"),
    ] {
        let out = load(
            "http://127.0.0.1:9",
            &[s(&input), "--op", "raw", flag, extra],
            None,
        )
        .await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr
                .contains(&format!("--op raw sends each line as written: {flag}")),
            "{}",
            out.stderr
        );
    }
    let csv = dir.path().join("a.csv");
    std::fs::write(&csv, "a\n1\n").unwrap();
    let out = load("http://127.0.0.1:9", &[s(&csv), "--op", "raw"], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("is CSV"), "{}", out.stderr);
}
