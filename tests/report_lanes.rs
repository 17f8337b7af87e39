//! The report of several copies of one load (issue 23): their logs, or the log
//! `merge-results` made of them, drawn on one wall-clock axis with a lane per copy;
//! requests by what came of them; the facts of each run.

use crate::common::{self, load, s};
use czload::sandbox::{RpsMode, Sandbox, SandboxConfig};
use czload::sink::report::Stats;
use std::path::{Path, PathBuf};

fn input(dir: &Path, n: usize) -> PathBuf {
    let mut text = String::from("id,n\n");
    for i in 0..n {
        text.push_str(&format!("r{i},{i}\n"));
    }
    let p = dir.join("rows.csv");
    std::fs::write(&p, text).unwrap();
    p
}

/// The rows of the report's table `id`: (first cell, second cell as a number).
fn table(html: &str, id: &str) -> Vec<(String, u64)> {
    let start = html
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id}"));
    let t = &html[start..start + html[start..].find("</table>").unwrap()];
    t.split("<tr><td>")
        .skip(1)
        .map(|r| {
            let (k, rest) = r.split_once("</td>").unwrap();
            let n = rest.split('>').nth(1).unwrap().split('<').next().unwrap();
            (k.to_string(), n.parse().unwrap())
        })
        .collect()
}

/// The first slot with a row, per lane.
fn lane_starts(st: &Stats) -> Vec<(String, usize)> {
    st.lanes
        .kinds
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().position(|&n| n > 0).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_that_ran_side_by_side_are_drawn_side_by_side_with_requests_by_outcome() {
    // A shared limit (429s) and some 5xx answers, so that requests differ in outcome.
    let sb = Sandbox::start(SandboxConfig {
        rps: Some(4000),
        rps_mode: RpsMode::Request,
        fail_before: 0.04,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 9000;
    let input = input(dir.path(), n);
    let url = sb.url();
    let args = |shard: &'static str| [s(&input), "--conv-id", "555", "--shard", shard];
    let (a, b, c) = (args("0/3"), args("1/3"), args("2/3"));
    let (oa, ob, oc) = tokio::join!(
        load(&url, &a, None),
        load(&url, &b, None),
        load(&url, &c, None)
    );
    for o in [&oa, &ob, &oc] {
        assert_eq!(o.code, 0, "{o:?}");
    }
    let logs: Vec<PathBuf> = (0..3)
        .map(|i| {
            dir.path()
                .join(format!("rows.shard-{i}-of-3.results.ndjson"))
        })
        .collect();
    for log in &logs {
        let lines = common::results_and_runs(log);
        let rows: Vec<_> = lines.iter().filter(|l| l.get("row").is_some()).collect();
        assert!(rows
            .iter()
            .all(|l| l["at"].as_u64() > Some(1_700_000_000_000)));
    }

    // The three logs: a lane each, all starting in the first seconds of one axis.
    let st = Stats::read_all(&logs).unwrap();
    assert_eq!(st.rows, n as u64);
    let starts = lane_starts(&st);
    assert_eq!(
        starts.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["0/3", "1/3", "2/3"]
    );
    assert!(starts.iter().all(|s| s.1 <= 2), "{starts:?}");
    let lane_rows: u64 = st.lanes.kinds.values().flatten().map(|&n| n as u64).sum();
    assert_eq!(lane_rows, n as u64);
    // Every request the server received is counted once, by what came of it.
    let totals = st.outcomes.totals();
    let sum: u64 = totals.iter().map(|t| t.1).sum();
    assert_eq!(sum, sb.stats().requests, "{totals:?}");
    let kinds: Vec<&str> = totals.iter().map(|t| t.0).collect();
    assert!(kinds.contains(&"answered"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.starts_with('5')), "{kinds:?}");

    // The page: the lanes, the outcomes and their totals, the facts, no secret.
    let page = dir.path().join("r.html");
    let mut cmd = common::czload();
    cmd.arg("report").args(&logs).arg("-o").arg(&page);
    let out: common::Out = cmd.output().unwrap().into();
    assert_eq!(out.code, 0, "{out:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    for what in [
        "<svg id=\"lanes-chart\"",
        "<svg id=\"outcomes-chart\"",
        ">all copies<",
    ] {
        assert!(html.contains(what), "{what} not in the report");
    }
    assert_eq!(
        table(&html, "outcomes").iter().map(|r| r.1).sum::<u64>(),
        sb.stats().requests
    );
    let facts = &html[html.find("<table id=\"facts\">").unwrap()..];
    let facts = &facts[..facts.find("</table>").unwrap()];
    assert_eq!(facts.matches(env!("CARGO_PKG_VERSION")).count(), 3);
    assert!(facts.contains("--shard 2/3") && facts.contains("--conv-id 555"));
    assert!(!html.contains(common::SECRET));

    // Merged, the same lanes and the same requests.
    let merged = dir.path().join("all.results.ndjson");
    let mut cmd = common::czload();
    cmd.arg("merge-results").args(&logs).arg("-o").arg(&merged);
    let out: common::Out = cmd.output().unwrap().into();
    assert_eq!(out.code, 0, "{out:?}");
    let m = Stats::read_all(std::slice::from_ref(&merged)).unwrap();
    assert_eq!(lane_starts(&m), starts);
    assert_eq!(m.lanes.kinds, st.lanes.kinds);
    assert_eq!(m.outcomes.totals(), totals);
    assert_eq!(m.runs.len(), 3);
}

#[test]
fn a_password_in_a_url_never_reaches_the_run_facts() {
    use czload::sink::results::hide_password;
    assert_eq!(
        hide_password("https://ann:hunter2@api.example/api/2"),
        "https://ann:***@api.example/api/2"
    );
    assert_eq!(
        hide_password("--url=http://u:p@h:9/x@y"),
        "--url=http://u:***@h:9/x@y"
    );
    for plain in [
        "https://api.example/a@b",
        "user@host",
        "--conv-id",
        "http://u@h/",
    ] {
        assert_eq!(hide_password(plain), plain);
    }
}
