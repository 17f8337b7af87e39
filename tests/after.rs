//! After a load: `--op delete` on an input of obj_id / ref rows, `czload verify` and
//! `czload undo`, against the sandbox: what it received and kept, the results logs and
//! the exit codes.

use crate::common::{self, load, results, s, CONV};
use crate::recovery::make_csv;
use serde_json::Value;
use std::path::Path;

/// The node every task of `conv` rests in, in the sandbox (docs/protocol.md): `node`
/// and the conv id, as 24 hex digits.
pub(crate) fn sandbox_node(conv: u64) -> String {
    format!("{}{:016x}", hex_of(b"node"), conv)
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Loads `n` rows into the sandbox at `url`; the results log's row lines.
pub(crate) async fn loaded(url: &str, dir: &Path, n: usize) -> (std::path::PathBuf, Vec<Value>) {
    let input = make_csv(dir, "orders.csv", n);
    let log = dir.join("orders.results.ndjson");
    let out = load(
        url,
        &[s(&input), "--conv-id", "555", "--results", s(&log)],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    (log, results(&dir.join("orders.results.ndjson")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_delete_takes_obj_ids_with_or_without_the_node_and_refs() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, lines) = loaded(&sb.url(), dir.path(), 50).await;
    let node = sandbox_node(CONV);
    // Rows 1-20 by obj_id (shown first for the node), 21-30 by obj_id and node (no
    // show), and an obj_id no task has; then rows 31-40 by ref alone, another input.
    let (mut ids, mut refs) = (String::from("obj_id,node_id\n"), String::from("ref\n"));
    for l in &lines {
        let row = l["row"].as_u64().unwrap();
        let (obj, r) = (l["obj_id"].as_str().unwrap(), l["ref"].as_str().unwrap());
        match row {
            1..=20 => ids.push_str(&format!("{obj},\n")),
            21..=30 => ids.push_str(&format!("{obj},{node}\n")),
            31..=40 => refs.push_str(&format!("{r}\n")),
            _ => {}
        }
    }
    ids.push_str("0123456789abcdef01234567,\n");
    let (by_id, by_ref) = (dir.path().join("ids.csv"), dir.path().join("refs.csv"));
    std::fs::write(&by_id, ids).unwrap();
    std::fs::write(&by_ref, refs).unwrap();
    let before = sb.stats();
    let delete = |input: &Path, log: &Path, more: &[&str]| {
        let mut a: Vec<String> = [
            s(input),
            "--op",
            "delete",
            "--conv-id",
            "555",
            "--results",
            s(log),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(more.iter().map(|x| x.to_string()));
        a
    };
    let run = |args: Vec<String>| {
        let url = sb.url();
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            load(&url, &a, None).await
        }
    };
    // A dry run shows the request as it would go: the shows, no data.
    let dry = dir.path().join("dry.results.ndjson");
    let out = run(delete(&by_id, &dry, &["--dry-run"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(r#"{"ops":[{"id":"1","type":"show","obj":"task","conv_id":555,"obj_id":""#)
            && !out.stdout.contains("data"),
        "{}",
        out.stdout
    );
    assert_eq!(sb.stats().requests, before.requests);
    let log = dir.path().join("ids.results.ndjson");
    let out = run(delete(&by_id, &log, &[])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mid = sb.stats();
    assert_eq!(mid.deleted - before.deleted, 30);
    // A show for each row without a node: 20 by obj_id, and the one not there.
    assert_eq!(mid.shown - before.shown, 20);
    let got = results(&log);
    let count = |st: &str| got.iter().filter(|l| l["status"] == st).count();
    assert_eq!(
        (got.len(), count("deleted"), count("gone")),
        (31, 30, 1),
        "{got:?}"
    );
    assert!(out.stderr.contains("30 deleted, 1 gone"), "{}", out.stderr);

    let log = dir.path().join("refs.results.ndjson");
    let out = run(delete(&by_ref, &log, &["--ref-column", "ref"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let after = sb.stats();
    assert_eq!(
        (after.deleted - mid.deleted, after.shown - mid.shown),
        (10, 10)
    );
    assert!(results(&log).iter().all(|l| l["status"] == "deleted"));
    let left: Vec<String> = sb.tasks().iter().filter_map(|t| t.ref_.clone()).collect();
    let want: Vec<String> = (41..=50).map(|i| format!("orders.csv:{i}")).collect();
    assert_eq!(left, want, "only rows 41-50 are left");

    // Again: every task is gone already, settled, exit 0, nothing more deleted.
    let again = dir.path().join("again.results.ndjson");
    let out = run(delete(&by_id, &again, &[])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sb.stats().deleted, after.deleted);
    assert!(results(&again).iter().all(|l| l["status"] == "gone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_delete_refuses_a_row_that_names_no_task() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ids.csv");
    std::fs::write(&input, "obj_id,x\n,1\n").unwrap();
    let log = dir.path().join("ids.results.ndjson");
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--op",
            "delete",
            "--conv-id",
            "555",
            "--results",
            s(&log),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let got = results(&log);
    assert_eq!(got[0]["status"], "rejected");
    assert!(got[0]["error"].as_str().unwrap().contains("no obj_id"));
    assert_eq!(sb.stats().requests, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_addresses_the_process_and_a_resume_keeps_it() {
    let sb = czload::sandbox::Sandbox::start(czload::sandbox::SandboxConfig {
        aliases: vec![("orders".into(), CONV)],
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "a.csv", 20);
    let log = dir.path().join("a.results.ndjson");
    let args = |more: &[&'static str]| -> Vec<String> {
        let mut a = vec![s(&input).to_owned(), "--results".into(), s(&log).to_owned()];
        a.extend(more.iter().map(|x| x.to_string()));
        a
    };
    let run = |a: Vec<String>| {
        let url = sb.url();
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            load(&url, &a, None).await
        }
    };
    let out = run(args(&["--alias", "orders", "--company-id", "c1"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), 20);
    assert!(tasks.iter().all(|t| t.conv_id == CONV));
    assert!(results(&log).iter().all(|l| l["status"] == "created"));
    let manifest: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let flags = manifest["flags"].to_string();
    assert!(
        flags.contains("--alias orders") && !flags.contains("--conv-id"),
        "{flags}"
    );

    // Another target on resume is refused, naming the flag.
    let out = run(args(&["--conv-id", "555", "--resume"])).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("--alias orders"), "{}", out.stderr);
    // --alias with --conv-id, or without --company-id: refused before anything is sent.
    let before = sb.stats().requests;
    let out = run(args(&[
        "--alias",
        "orders",
        "--company-id",
        "c1",
        "--conv-id",
        "555",
        "--restart",
    ]))
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("--alias and --conv-id both name the process"),
        "{}",
        out.stderr
    );
    let out = run(args(&["--alias", "orders", "--restart"])).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("--alias orders needs --company-id"),
        "{}",
        out.stderr
    );
    assert_eq!(sb.stats().requests, before);
    // Verify and undo ask the process the manifest names: by its alias.
    let shown = sb.stats().shown;
    let out = after_cmd("verify", &sb.url(), &[s(&log)]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sb.stats().shown - shown, 20);
    let out = after_cmd("undo", &sb.url(), &[s(&log), "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((sb.stats().tasks, sb.stats().deleted), (0, 20));
    let out = run(args(&[
        "--alias",
        "orders",
        "--company-id",
        "c1",
        "--dry-run",
        "--restart",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            r#""type":"create","obj":"task","obj_alias":"orders","company_id":"c1","ref""#
        ) && !out.stdout.contains("conv_id"),
        "{}",
        out.stdout
    );
}

/// Runs `czload SUB ARGS` against the sandbox at `url` with the test credentials.
pub(crate) async fn after_cmd(sub: &str, url: &str, args: &[&str]) -> common::Out {
    let mut cmd = common::czload();
    cmd.arg(sub)
        .args(["--url", url, "--api-login", common::LOGIN])
        .args(args)
        .env("COREZOID_API_SECRET", common::SECRET)
        .env_remove("COREZOID_API_LOGIN")
        .env_remove("COREZOID_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    tokio::task::spawn_blocking(move || common::Out::from(cmd.output().expect("czload runs")))
        .await
        .unwrap()
}

/// The lines of an NDJSON file.
pub(crate) fn ndjson(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_exactly_the_tasks_the_server_lost() {
    let sb = czload::sandbox::Sandbox::start(czload::sandbox::SandboxConfig {
        lose_every: 7,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (log, lines) = loaded(&sb.url(), dir.path(), 300).await;
    let kept: std::collections::HashSet<String> =
        sb.tasks().into_iter().map(|t| t.obj_id).collect();
    let lost: std::collections::BTreeSet<String> = lines
        .iter()
        .map(|l| l["obj_id"].as_str().unwrap().to_owned())
        .filter(|o| !kept.contains(o))
        .collect();
    assert_eq!(lost.len(), 300 / 7);
    let shown = sb.stats().shown;
    let out = after_cmd("verify", &sb.url(), &[s(&log), "--all"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let vlog = dir.path().join("orders.verify.ndjson");
    let v = ndjson(&vlog);
    assert_eq!(v.len(), 300, "a line per row checked");
    let missing: std::collections::BTreeSet<String> = v
        .iter()
        .filter(|l| l["verdict"] == "missing")
        .map(|l| l["obj_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(missing, lost, "exactly the lost ones");
    assert!(v
        .iter()
        .all(|l| l["verdict"] == "missing" || l["verdict"] == "confirmed"));
    assert_eq!(sb.stats().shown - shown, 300 - lost.len() as u64);
    assert_eq!(
        sb.stats().requests,
        3 + 3,
        "3 requests to load, 3 of 100 shows"
    );
    assert!(
        out.stderr.contains(&format!(
            "{} confirmed, {} missing",
            300 - lost.len(),
            lost.len()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        sb.stats().tasks,
        kept.len() as u64,
        "verify changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_confirms_a_sound_load_and_samples_by_seed() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = loaded(&sb.url(), dir.path(), 250).await;
    let out = after_cmd("verify", &sb.url(), &[s(&log)]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("250 of the 250 rows the logs say succeeded checked: 250 confirmed"),
        "{}",
        out.stderr
    );
    let rows = |out: &str| -> Vec<u64> {
        ndjson(Path::new(out))
            .iter()
            .map(|l| l["row"].as_u64().unwrap())
            .collect()
    };
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    for (o, seed) in [(&a, "5"), (&b, "5")] {
        let out = after_cmd(
            "verify",
            &sb.url(),
            &[s(&log), "--sample", "40", "--seed", seed, "-o", s(o)],
        )
        .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stderr.contains("40 of the 250 rows"), "{}", out.stderr);
    }
    let (ra, rb) = (rows(s(&a)), rows(s(&b)));
    assert_eq!(ra.len(), 40);
    assert_eq!(ra, rb, "the same seed draws the same rows");
    let out = after_cmd(
        "verify",
        &sb.url(),
        &[s(&log), "--sample", "40", "--seed", "6", "-o", s(&b)],
    )
    .await;
    assert_eq!(out.code, 0);
    assert_ne!(ra, rows(s(&b)), "another seed, other rows");
    // A file that is not a verify log (here the results log itself) is not replaced:
    // refused before anything is sent, exit 2 (docs/outputs.md).
    let before = std::fs::read(&log).unwrap();
    let out = after_cmd("verify", &sb.url(), &[s(&log), "-o", s(&log)]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--output") && out.stderr.contains("is the input"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&log).unwrap(), before);
    let notes = log.with_file_name("notes.txt");
    std::fs::write(&notes, "mine\n").unwrap();
    let out = after_cmd("verify", &sb.url(), &[s(&log), "-o", s(&notes)]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("czload did not write it"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_data_finds_a_task_whose_data_changed() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "typed.csv", 120);
    let log = dir.path().join("typed.results.ndjson");
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--type",
            "amount:number",
            "--set",
            "batch:integer=7",
            "--results",
            s(&log),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A file beside the input where its retry file would go: reading again is no load.
    std::fs::write(dir.path().join("typed.retry.csv"), "not czload's").unwrap();
    let out = after_cmd("verify", &sb.url(), &[s(&log), "--data"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("120 confirmed, 0 missing, 0 with other data"),
        "{}",
        out.stderr
    );

    // The process changed row 3's name and added a key: the name is a difference.
    let modify = common::body(&[serde_json::json!({
        "id": "m", "type": "modify", "obj": "task", "conv_id": CONV,
        "ref": "typed.csv:3", "data": {"name": "changed", "extra": 1}
    })]);
    let r = common::post_to(
        &common::client(true),
        &sb.url(),
        &modify,
        &common::Auth::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.ops()[0]["proc"], "ok", "{}", r.text);
    let out = after_cmd("verify", &sb.url(), &[s(&log), "--data", "--all"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let v = ndjson(&dir.path().join("typed.verify.ndjson"));
    let diff: Vec<&Value> = v.iter().filter(|l| l["verdict"] == "different").collect();
    assert_eq!(diff.len(), 1, "{v:?}");
    assert_eq!(diff[0]["row"], 3);
    let why = diff[0]["reason"].as_str().unwrap();
    assert!(
        why.contains("name: sent \"name 3\", the task has \"changed\"") && !why.contains("extra"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_undo_take_the_logs_of_every_shard() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = make_csv(dir.path(), "sh.csv", 400);
    let mut logs = Vec::new();
    for i in 0..2 {
        let log = dir.path().join(format!("sh.{i}.results.ndjson"));
        let shard = format!("{i}/2");
        let out = load(
            &sb.url(),
            &[
                s(&input),
                "--conv-id",
                "555",
                "--shard",
                &shard,
                "--results",
                s(&log),
            ],
            None,
        )
        .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        logs.push(log);
    }
    assert_eq!(sb.tasks().len(), 400);
    let (a, b) = (s(&logs[0]), s(&logs[1]));
    let out = after_cmd("verify", &sb.url(), &[a, b]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("400 of the 400 rows the logs say succeeded checked: 400 confirmed"),
        "{}",
        out.stderr
    );
    let out = after_cmd("undo", &sb.url(), &[a, b, "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((sb.stats().tasks, sb.stats().deleted), (0, 400));
    // The undo log names both logs; a resume with one of them is refused.
    let out = after_cmd(
        "undo",
        &sb.url(),
        &[
            a,
            "--yes",
            "--resume",
            "-o",
            s(&dir.path().join("sh.0.undo.ndjson")),
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is not the undo log of these results logs"),
        "{}",
        out.stderr
    );
}
