//! `--retry-file NAME` for every input format × every name a user might give (issue 25,
//! class 3; issue 21, the format registry decides): refused before any request, or the
//! file written there loads back with the same flags, every row stored once under the
//! first run's ref. (A JSON array's retry file named `.ndjson` was accepted and then
//! read back as lines.)

use crate::common::{self, load_command, s, Out, SECRET};
use czload::sandbox::{Sandbox, SandboxConfig};
use std::collections::HashSet;
use std::path::Path;

const ROWS: usize = 6;

async fn run(url: &str, args: Vec<String>) -> Out {
    let mut cmd = load_command(url, SECRET);
    cmd.args(args);
    tokio::task::spawn_blocking(move || Out::from(cmd.output().expect("czload runs")))
        .await
        .unwrap()
}

/// An input of `ROWS` rows in `format`: its file name and text.
fn input(format: &str) -> (&'static str, String) {
    let rows = 1..=ROWS;
    match format {
        "csv" => (
            "in.csv",
            rows.fold("id,name\n".into(), |t, i| t + &format!("{i},n{i}\n")),
        ),
        "tsv" => (
            "in.tsv",
            rows.fold("id\tname\n".into(), |t, i| t + &format!("{i}\tn{i}\n")),
        ),
        "ndjson" => (
            "in.ndjson",
            rows.map(|i| format!("{{\"id\":\"{i}\",\"name\":\"n{i}\"}}\n"))
                .collect(),
        ),
        _ => (
            "in.json",
            format!(
                "[{}]",
                rows.map(|i| format!("{{\"id\":\"{i}\",\"name\":\"n{i}\"}}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retry_file_name_is_refused_up_front_or_loads_back() {
    let names = [
        "r.csv", "r.tsv", "r.txt", "r.ndjson", "r.jsonl", "r.json", "r.dat",
    ];
    let root = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut accepted = Vec::new();
    for format in ["csv", "tsv", "ndjson", "json-array"] {
        for name in names {
            let sb = Sandbox::start(SandboxConfig {
                fail_before: 1.0,
                ..common::config()
            })
            .await
            .unwrap();
            let dir = root.path().join(format!("{format}-{name}"));
            std::fs::create_dir(&dir).unwrap();
            let (file, text) = input(format);
            let path = dir.join(file);
            std::fs::write(&path, text).unwrap();
            let retry = dir.join(name);
            let flags = |input: &Path| -> Vec<String> {
                [
                    s(input),
                    "--conv-id",
                    "555",
                    "--max-attempts",
                    "1",
                    "--rate",
                    "unlimited",
                ]
                .map(String::from)
                .to_vec()
            };
            let mut first = flags(&path);
            first.extend(["--retry-file".into(), s(&retry).into()]);
            let out = run(&sb.url(), first).await;
            if sb.stats().requests == 0 {
                if out.code == 0 || !out.stderr.contains("--retry-file") {
                    problems.push(format!(
                        "{format} {name}: exit {}: {}",
                        out.code, out.stderr
                    ));
                }
                continue;
            }
            accepted.push(format!("{format} {name}"));
            if out.code != 2 || !retry.exists() {
                problems.push(format!(
                    "{format} {name}: first run exit {}: {}",
                    out.code, out.stderr
                ));
                continue;
            }
            sb.heal();
            let out = run(&sb.url(), flags(&retry)).await;
            let refs: HashSet<String> = sb.tasks().into_iter().filter_map(|t| t.ref_).collect();
            let want: HashSet<String> = (1..=ROWS).map(|i| format!("{file}:{i}")).collect();
            if out.code != 0 || refs != want || sb.tasks().len() != ROWS {
                problems.push(format!(
                    "{format} {name}: reload exit {}, refs {refs:?}: {}",
                    out.code, out.stderr
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The names that say the format written are taken (not everything refused).
    for want in [
        "csv r.csv",
        "csv r.txt",
        "tsv r.tsv",
        "ndjson r.ndjson",
        "ndjson r.jsonl",
        "json-array r.json",
    ] {
        assert!(
            accepted.iter().any(|a| a == want),
            "{want} refused: {accepted:?}"
        );
    }
    assert!(
        !accepted.iter().any(|a| a == "json-array r.ndjson"),
        "{accepted:?}"
    );
}
