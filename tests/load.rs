//! `czload load` against the in-process sandbox: what the server stored, what the results
//! log and the retry file say, and the exit code.

use crate::common::s;
use crate::common::{
    self, by_ref, copy_sample, load, results, sample, sandbox, CONV, LOGIN, SECRET,
};
use czload::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_csv_sample_row_is_created_once_with_its_ref_and_typed_data() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = copy_sample("orders.csv", dir.path());
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--ref-column",
            "order_id",
            "--type",
            "amount:number",
            "--type",
            "quantity:integer",
            "--type",
            "paid:bool",
            "--type",
            "items:json",
            "--batch-size",
            "37",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), 300);
    let refs = by_ref(&tasks);
    // The input's key column, read independently of czload.
    let mut rdr = csv::Reader::from_path(&input).unwrap();
    let mut rows = 0;
    for rec in rdr.records() {
        let rec = rec.unwrap();
        rows += 1;
        let t = refs
            .get(&rec[0])
            .unwrap_or_else(|| panic!("{} not stored", &rec[0]));
        assert_eq!(t.conv_id, CONV);
        assert_eq!(t.data["customer"], json!(rec[1].to_string()));
        assert_eq!(
            t.data["amount"].as_f64().unwrap(),
            rec[4].parse::<f64>().unwrap()
        );
        assert_eq!(t.data["quantity"], json!(rec[5].parse::<i64>().unwrap()));
        assert_eq!(t.data["paid"], json!(&rec[6] == "true"));
        assert!(t.data["items"].is_array(), "{:?}", t.data);
        assert_eq!(
            t.data["note"],
            json!(rec[9].to_string()),
            "empty cells stay \"\""
        );
    }
    assert_eq!(rows, 300);

    // One results line per row, and the obj_id each line names is the task the server
    // made for that row's ref: answers come back shuffled, so this proves the matching.
    let lines = results(&dir.path().join("orders.results.ndjson"));
    assert_eq!(lines.len(), 300);
    let mut seen = HashSet::new();
    for l in &lines {
        assert_eq!(l["status"], "created", "{l}");
        let r = l["ref"].as_str().unwrap();
        assert!(seen.insert(l["row"].as_u64().unwrap()), "row twice: {l}");
        assert_eq!(l["obj_id"].as_str().unwrap(), refs[r].obj_id, "{l}");
        assert_eq!(l["line"].as_u64().unwrap(), l["row"].as_u64().unwrap() + 1);
    }
    assert!(!dir.path().join("orders.retry.csv").exists());
    let st = sb.stats();
    assert_eq!(st.created, 300);
    assert_eq!(st.requests, 300_u64.div_ceil(37));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_lines_become_task_data_as_they_are() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = copy_sample("events.ndjson", dir.path());
    let out = load(&sb.url(), &[s(&input), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    let text = std::fs::read_to_string(&input).unwrap();
    for (i, line) in text.lines().enumerate() {
        let want: Value = serde_json::from_str(line).unwrap();
        // The default ref: the file name and the row number.
        let t = refs[&format!("events.ndjson:{}", i + 1)];
        assert_eq!(Value::Object(t.data.clone()), want);
    }
    assert_eq!(tasks.len(), text.lines().count());
    assert_eq!(
        results(&dir.path().join("events.results.ndjson")).len(),
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_inputs_gzip_and_stdin() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    std::fs::write(&a, "k,v\n1,x\n2,y\n").unwrap();
    let b = dir.path().join("b.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"k,v\n3,z\n4,w\n5,q\n").unwrap();
    std::fs::write(&b, gz.finish().unwrap()).unwrap();
    let results_path = dir.path().join("r.ndjson");
    let out = load(
        &sb.url(),
        &[
            s(&a),
            s(&b),
            "--conv-id",
            "555",
            "--results",
            s(&results_path),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    let mut got: Vec<_> = refs.keys().cloned().collect();
    got.sort();
    assert_eq!(
        got,
        [
            "a.csv:1",
            "a.csv:2",
            "b.csv.gz:1",
            "b.csv.gz:2",
            "b.csv.gz:3"
        ]
    );
    assert_eq!(refs["b.csv.gz:3"].data["v"], "q");
    let lines = results(&results_path);
    assert_eq!(lines.len(), 5);
    assert_eq!(lines.iter().filter(|l| l["input"] == 1).count(), 3);

    // stdin, NDJSON.
    let out = load(
        &sb.url(),
        &[
            "-",
            "--format",
            "ndjson",
            "--conv-id",
            "556",
            "--results",
            s(&results_path),
        ],
        Some(b"{\"n\":1}\n{\"n\":2}\n".to_vec()),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks: Vec<_> = sb
        .tasks()
        .into_iter()
        .filter(|t| t.conv_id == 556)
        .collect();
    assert_eq!(tasks.len(), 2);
    assert!(tasks
        .iter()
        .any(|t| t.ref_.as_deref() == Some("stdin:2") && t.data["n"] == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_updates_the_tasks_by_ref() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let create = dir.path().join("c.csv");
    std::fs::write(&create, "id,status,sum\n1,new,10\n2,new,20\n").unwrap();
    let out = load(
        &sb.url(),
        &[
            s(&create),
            "--conv-id",
            "555",
            "--ref-template",
            "order-{id}",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let modify = dir.path().join("m.csv");
    std::fs::write(&modify, "id,status\n2,paid\n3,paid\n").unwrap();
    let out = load(
        &sb.url(),
        &[
            s(&modify),
            "--conv-id",
            "555",
            "--op",
            "modify",
            "--ref-template",
            "order-{id}",
        ],
        None,
    )
    .await;
    // Row 3 has no task to modify: rejected, so exit 2.
    assert_eq!(out.code, 2, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    assert_eq!(refs["order-2"].data["status"], "paid");
    assert_eq!(
        refs["order-2"].data["sum"], "20",
        "a modify merges, it does not replace"
    );
    assert_eq!(refs["order-1"].data["status"], "new");
    let lines = results(&dir.path().join("m.results.ndjson"));
    let st: HashMap<u64, &Value> = lines
        .iter()
        .map(|l| (l["row"].as_u64().unwrap(), l))
        .collect();
    assert_eq!(st[&1]["status"], "modified");
    assert_eq!(st[&2]["status"], "rejected");
    assert_eq!(st[&2]["proc"], "not_found_task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_rejected_with_line_and_reason_and_the_rest_load() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    let long = "x".repeat(300);
    std::fs::write(
        &input,
        format!("id,sum,when\n1,10,a\n2,ten,b\n3,30\n{long},40,c\n5,9007199254740993,d\n6,60,f\n"),
    )
    .unwrap();
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--ref-column",
            "id",
            "--type",
            "sum:number",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let tasks = sb.tasks();
    let mut refs: Vec<_> = by_ref(&tasks).keys().cloned().collect();
    refs.sort();
    assert_eq!(refs, ["1", "6"]);
    let lines = results(&dir.path().join("bad.results.ndjson"));
    assert_eq!(lines.len(), 6);
    let by_line: HashMap<u64, &Value> = lines
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l))
        .collect();
    let err = |line: u64| {
        assert_eq!(by_line[&line]["status"], "rejected", "{:?}", by_line[&line]);
        by_line[&line]["error"].as_str().unwrap().to_string()
    };
    assert!(
        err(3).contains("\"sum\"") && err(3).contains("not a number"),
        "{}",
        err(3)
    );
    assert!(err(4).contains("2 fields"), "{}", err(4));
    assert!(err(5).contains("255"), "{}", err(5));
    assert!(err(6).contains("2^53"), "{}", err(6));
    assert_eq!(by_line[&2]["status"], "created");
    assert!(out.stderr.contains("4 rejected"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_shows_the_first_request_without_the_secret() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = copy_sample("orders.csv", dir.path());
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--dry-run",
            "--type",
            "amount:number",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sb.stats().requests, 0);
    assert!(sb.tasks().is_empty());
    assert!(
        out.stdout.contains(&format!("/api/2/json/{LOGIN}/")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(r#""ref":"orders.csv:1""#),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("300 would be sent in 3 requests"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    assert!(
        !dir.path().join("orders.results.ndjson").exists(),
        "a dry run writes no log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rows_go_to_the_retry_file_which_loads_back_with_the_same_refs() {
    // Every request fails before it is applied: all rows end failed.
    let broken = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = copy_sample("orders.csv", dir.path());
    let out = load(
        &broken.url(),
        &[s(&input), "--conv-id", "555", "--max-attempts", "2"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(broken.tasks().is_empty());
    let lines = results(&dir.path().join("orders.results.ndjson"));
    assert_eq!(lines.len(), 300);
    assert!(
        lines
            .iter()
            .all(|l| l["status"] == "failed" && l["attempts"] == 2),
        "{:?}",
        lines[0]
    );
    let retry = dir.path().join("orders.retry.csv");
    let mut rdr = csv::Reader::from_path(&retry).unwrap();
    let header = rdr.headers().unwrap().clone();
    assert_eq!(&header[0], "order_id");
    assert_eq!(&header[header.len() - 1], "_czload_ref");
    assert_eq!(rdr.records().count(), 300);

    // The same command on the retry file, against a healthy server.
    let sb = sandbox().await;
    let out = load(&sb.url(), &[s(&retry), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    assert_eq!(refs.len(), 300);
    // The refs of the first run, so a row that did reach the server is not created twice.
    assert!(refs.contains_key("orders.csv:1") && refs.contains_key("orders.csv:300"));
    assert!(!refs["orders.csv:1"].data.contains_key("_czload_ref"));
    assert_eq!(refs["orders.csv:1"].data["order_id"], "A-10001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_stops_the_run_with_exit_1_and_leaves_rows_unsettled() {
    let sb = Sandbox::start(SandboxConfig::new(
        LOGIN,
        czload::sign::Secret::new("other"),
        vec![CONV],
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = copy_sample("orders.csv", dir.path());
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--concurrency", "1"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.to_lowercase().contains("signature"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    assert!(sb.tasks().is_empty());
    // Nothing was settled: every row stays for --resume.
    assert!(results(&dir.path().join("orders.results.ndjson")).is_empty());
    assert!(
        sb.stats().requests <= 3,
        "stopped after the first answers: {:?}",
        sb.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_input_errors_exit_1_naming_the_problem() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    let out = load(&sb.url(), &[s(&missing), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("nope.csv") && out.stderr.contains("no such file"),
        "{}",
        out.stderr
    );

    let input = copy_sample("orders.csv", dir.path());
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--type", "amount:money"],
        None,
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("--type") && out.stderr.contains("money"),
        "{}",
        out.stderr
    );

    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--ref-column", "nope"],
        None,
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("--ref-column") && out.stderr.contains("order_id"),
        "{}",
        out.stderr
    );

    let out = load(&sb.url(), &[s(&input)], None).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--conv-id"), "{}", out.stderr);

    // An output that is the input would truncate it before it is read.
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--retry-file", s(&input)],
        None,
    )
    .await;
    // An output refused is exit 2 (docs/outputs.md), before anything is sent.
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--retry-file"), "{}", out.stderr);
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--results", s(&input)],
        None,
    )
    .await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--results"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(&input).unwrap(),
        std::fs::read(sample("orders.csv")).unwrap()
    );

    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--no-such-flag"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "a usage error is exit 1: {out:?}");
    assert_eq!(sb.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_sandbox_command_loads_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let input = copy_sample("orders.csv", dir.path());
    let out = tokio::task::spawn_blocking(move || {
        crate::common::czload()
            .args([
                "load",
                s(&input),
                "--conv-id",
                "555",
                "--sandbox",
                "--quiet",
            ])
            .env_remove("COREZOID_API_SECRET")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("300 created"), "{stderr}");
    assert!(stderr.contains("stores 300 tasks"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_files_keep_generated_refs_without_a_header_and_in_ndjson() {
    let broken = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv_in = dir.path().join("nh.csv");
    std::fs::write(&csv_in, "a,b\nc,d\n").unwrap();
    let nd_in = dir.path().join("nd.ndjson");
    std::fs::write(
        &nd_in,
        "{\"note\":\"_czload_ref is a word here\",\"n\":1}\n",
    )
    .unwrap();
    let out = load(
        &broken.url(),
        &[
            s(&csv_in),
            "--conv-id",
            "555",
            "--no-header",
            "--max-attempts",
            "1",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = load(
        &broken.url(),
        &[s(&nd_in), "--conv-id", "555", "--max-attempts", "1"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");

    let sb = sandbox().await;
    let retry = dir.path().join("nh.retry.csv");
    assert_eq!(
        std::fs::read_to_string(&retry).unwrap(),
        "key1,key2,_czload_ref\na,b,nh.csv:1\nc,d,nh.csv:2\n"
    );
    // The same command: `--no-header` takes that line for the header czload wrote.
    let out = load(
        &sb.url(),
        &[s(&retry), "--conv-id", "555", "--no-header"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = load(
        &sb.url(),
        &[s(&dir.path().join("nd.retry.ndjson")), "--conv-id", "555"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    let mut got: Vec<_> = refs.keys().cloned().collect();
    got.sort();
    assert_eq!(
        got,
        ["nd.ndjson:1", "nh.csv:1", "nh.csv:2"],
        "the first run's refs"
    );
    assert_eq!(
        Value::Object(refs["nh.csv:2"].data.clone()),
        json!({"key1": "c", "key2": "d"})
    );
    assert_eq!(
        Value::Object(refs["nd.ndjson:1"].data.clone()),
        json!({"note": "_czload_ref is a word here", "n": 1})
    );
}

/// A retry file edited by hand, with a row whose `_czload_ref` cell is empty: the ref
/// generated for it goes into that cell of the next retry file, so loading that file
/// sends the row under the same ref again (never a second task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_ref_cell_gets_the_generated_ref_in_the_retry_file() {
    let broken = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hand.csv");
    std::fs::write(&input, "id,_czload_ref\n1,\n2,orig.csv:7\n").unwrap();
    let out = load(
        &broken.url(),
        &[s(&input), "--conv-id", "555", "--max-attempts", "1"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let retry = dir.path().join("hand.retry.csv");
    assert_eq!(
        std::fs::read_to_string(&retry).unwrap(),
        "id,_czload_ref\n1,hand.csv:1\n2,orig.csv:7\n"
    );
    let sb = sandbox().await;
    let out = load(&sb.url(), &[s(&retry), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    assert_eq!(refs.len(), 2);
    assert!(refs.contains_key("hand.csv:1") && refs.contains_key("orig.csv:7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_run_leaves_the_previous_outputs_alone() {
    let broken = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = copy_sample("orders.csv", dir.path());
    let out = load(
        &broken.url(),
        &[s(&input), "--conv-id", "555", "--max-attempts", "1"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let log = dir.path().join("orders.results.ndjson");
    let retry = dir.path().join("orders.retry.csv");
    let (log_before, retry_before) = (std::fs::read(&log).unwrap(), std::fs::read(&retry).unwrap());
    // A typo in a flag: refused before anything is touched.
    let out = load(
        &broken.url(),
        &[s(&input), "--conv-id", "555", "--ref-column", "ID"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(std::fs::read(&log).unwrap(), log_before);
    assert_eq!(std::fs::read(&retry).unwrap(), retry_before);

    // Two inputs of the same name would share generated refs: refused.
    let other = dir.path().join("sub");
    std::fs::create_dir(&other).unwrap();
    let twin = copy_sample("orders.csv", &other);
    let out = load(
        &broken.url(),
        &[s(&input), s(&twin), "--conv-id", "555"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("same file name"), "{}", out.stderr);
}
