//! The results log read back, and the advice of a stopped run (issue 25, class 6): a
//! damaged line is never passed over in silence (only a line a crash cut short is, and
//! said), the report of a clean run finds nothing unreadable, and `--max-errors` stops
//! at its limit with advice that, followed literally, finishes the load with no
//! duplicate.

use crate::common::{self, by_ref, load, results, s};
use std::path::{Path, PathBuf};

fn rows(dir: &Path, name: &str, n: usize) -> PathBuf {
    let p = dir.join(name);
    let mut t = String::from("id,amount\n");
    for i in 1..=n {
        t.push_str(&format!("r{i},{i}\n"));
    }
    std::fs::write(&p, t).unwrap();
    p
}

/// A finished log of `n` rows made unfinished: its run and end lines dropped, as a crash
/// leaves it; the lines after the manifest returned for the caller to damage.
fn crashed_log(log: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut lines = text.lines();
    let manifest = lines.next().unwrap().to_string();
    let rows = lines
        .filter(|l| l.starts_with("{\"row\""))
        .map(String::from)
        .collect();
    (manifest, rows)
}

fn write_log(log: &Path, manifest: &str, rows: &[String], tail: &str) {
    let mut t = format!("{manifest}\n");
    for r in rows {
        t.push_str(r);
        t.push('\n');
    }
    t.push_str(tail);
    std::fs::write(log, t).unwrap();
}

/// Every damage of a line that is not a crash's cut, anywhere but at the very end: the
/// resume is refused naming the log and the line, nothing is sent; each way the message
/// offers (delete the line and resume, or --restart) then finishes with no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_line_stops_the_resume_and_its_advice_works() {
    let damages: &[&str] = &[
        "garbage",
        "{}",
        r#"{"row":7}"#,
        r#"{"row":"seven","line":8,"status":"created","attempts":1}"#,
        r#"{"row":7,"line":8,"status":"nonsense","attempts":1}"#,
        "[1,2,3]",
        "\u{0}\u{0}{\"row\":7,\"line\":8,\"status\":\"created\",\"attempts\":1}",
    ];
    for (k, damage) in damages.iter().enumerate() {
        for no_ref in [false, true] {
            for fix in ["delete", "--restart"] {
                let sb = common::sandbox().await;
                let dir = tempfile::tempdir().unwrap();
                let input = rows(dir.path(), "d.csv", 30);
                let mut args = vec![s(&input), "--conv-id", "555", "--batch-size", "5"];
                if no_ref {
                    args.push("--no-ref");
                }
                let out = load(&sb.url(), &args, None).await;
                assert_eq!(out.code, 0, "{out:?}");
                let log = dir.path().join("d.results.ndjson");
                let (manifest, mut lines) = crashed_log(&log);
                assert_eq!(lines.len(), 30);
                // The first 20 lines survive a crash, one of them damaged.
                lines.truncate(20);
                lines[9] = damage.to_string();
                write_log(&log, &manifest, &lines, "");
                let before = sb.stats().requests;
                let mut resume = args.clone();
                resume.push("--resume");
                let out = load(&sb.url(), &resume, None).await;
                assert_eq!(out.code, 1, "damage {k}: {out:?}");
                assert!(
                    out.stderr.contains(s(&log)) && out.stderr.contains("line 11"),
                    "damage {k}: {}",
                    out.stderr
                );
                assert!(out.stderr.contains("--restart"), "{}", out.stderr);
                assert_eq!(sb.stats().requests, before, "nothing sent");
                // The advice, followed.
                let follow = if fix == "delete" {
                    lines.remove(9);
                    write_log(&log, &manifest, &lines, "");
                    resume.clone()
                } else {
                    let mut a = args.clone();
                    a.push("--restart");
                    a
                };
                let out = load(&sb.url(), &follow, None).await;
                assert_eq!(out.code, 0, "damage {k} {fix} no_ref={no_ref}: {out:?}");
                let tasks = sb.tasks();
                if no_ref {
                    // Row 10's line was deleted: that row is sent again (the message
                    // says so); every other row exists once. A --restart without refs
                    // creates everything again (the message says that too).
                    // Rows 21 to 30 lost their lines to the "crash": created again too.
                    let expect = if fix == "delete" { 41 } else { 60 };
                    assert_eq!(tasks.len(), expect, "damage {k} {fix}");
                } else {
                    assert_eq!(by_ref(&tasks).len(), 30, "damage {k} {fix}");
                }
            }
        }
    }
}

/// A line a crash cut short is tolerated, at the end or (after a resume glued on) in the
/// middle, and said; its row is sent again under its ref: no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_cut_short_by_a_crash_is_tolerated_and_said() {
    for (k, shape) in ["end", "middle", "zeros", "utf8"].iter().enumerate() {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let input = rows(dir.path(), "c.csv", 30);
        let args = [s(&input), "--conv-id", "555", "--batch-size", "5"];
        assert_eq!(load(&sb.url(), &args, None).await.code, 0);
        let log = dir.path().join("c.results.ndjson");
        let (manifest, mut lines) = crashed_log(&log);
        lines.truncate(20);
        let cut = lines[19][..25].to_string();
        let tail = match *shape {
            "end" => {
                lines.truncate(19);
                cut
            }
            "middle" => {
                // A crash, then a resume that started on a fresh line and crashed too.
                let last = lines.pop().unwrap();
                lines.insert(5, cut);
                lines.push(last);
                String::new()
            }
            "zeros" => {
                lines.truncate(19);
                format!("{cut}\0\0\0\0")
            }
            _ => {
                // Written below as bytes: cut inside a two-byte character.
                lines.truncate(19);
                String::new()
            }
        };
        if *shape == "utf8" {
            let mut t = format!("{manifest}\n");
            for r in &lines {
                t.push_str(r);
                t.push('\n');
            }
            let mut bytes = t.into_bytes();
            let mut c = lines[0].as_bytes()[..25].to_vec();
            c.extend_from_slice(",\"error\":\"".as_bytes());
            c.push(0xc3);
            bytes.extend_from_slice(&c);
            std::fs::write(&log, bytes).unwrap();
        } else {
            write_log(&log, &manifest, &lines, &tail);
        }
        let mut resume = args.to_vec();
        resume.push("--resume");
        let out = load(&sb.url(), &resume, None).await;
        assert_eq!(out.code, 0, "{shape}: {out:?}");
        assert!(
            out.stderr.contains("cut short"),
            "{k} {shape}: {}",
            out.stderr
        );
        assert_eq!(by_ref(&sb.tasks()).len(), 30, "{shape}");
    }
}

/// The report of a clean run, and of a resumed one, finds no unreadable line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_clean_run_reads_every_line() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = rows(dir.path(), "r.csv", 20);
    let report = dir.path().join("r.html");
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--report", s(&report)],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("could not be read"), "a clean run's report");
    let out = crate::common::czload()
        .args(["report", s(&dir.path().join("r.results.ndjson")), "-o"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success());
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("could not be read"));
}

/// `--max-errors N` logs N rejected rows, not hundreds more: the rows read past the limit
/// are left unsettled (resumable). Over limits and batch sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_errors_stops_at_its_limit() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    let mut t = String::from("id,amount\n");
    for i in 1..=3000 {
        t.push_str(&format!("b{i},x{i}\n"));
    }
    std::fs::write(&input, t).unwrap();
    for limit in ["1", "10", "257", "1000"] {
        let out = load(
            &sb.url(),
            &[
                s(&input),
                "--conv-id",
                "555",
                "--type",
                "amount:number",
                "--max-errors",
                limit,
                "--restart",
            ],
            None,
        )
        .await;
        assert_eq!(out.code, 2, "{out:?}");
        let lines = results(&dir.path().join("bad.results.ndjson"));
        assert_eq!(lines.len().to_string(), limit, "--max-errors {limit}");
    }
    assert_eq!(sb.stats().requests, 0);
}

/// `--max-errors` stopped the run; each way its advice offers, followed literally,
/// finishes the load with every good row once: with refs, fix the rows in place and
/// `--restart` (exit 0), or `--resume` the input unchanged (exit 2, the bad rows stay
/// rejected); with `--no-ref`, `--resume` the input unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_max_errors_advice_works_when_followed() {
    for (no_ref, way) in [
        (false, "--restart"),
        (false, "--resume"),
        (true, "--resume"),
    ] {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("m.csv");
        let write = |fixed: bool| {
            let mut t = String::from("id,amount\n");
            for i in 1..=400 {
                let bad = (100..110).contains(&i) && !fixed;
                t.push_str(&format!(
                    "m{i},{}\n",
                    if bad { "x".into() } else { i.to_string() }
                ));
            }
            std::fs::write(&input, t).unwrap();
        };
        write(false);
        let mut args = vec![
            s(&input),
            "--conv-id",
            "555",
            "--type",
            "amount:number",
            "--max-errors",
            "3",
            "--batch-size",
            "10",
        ];
        if no_ref {
            args.push("--no-ref");
        }
        let out = load(&sb.url(), &args, None).await;
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains("--max-errors 3 reached"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(way), "{way}: {}", out.stderr);
        if no_ref {
            assert!(!out.stderr.contains("--restart"), "{}", out.stderr);
        } else {
            assert!(
                out.stderr.contains("fix those rows in place"),
                "{}",
                out.stderr
            );
        }
        if way == "--restart" {
            write(true);
        } else {
            // "... with --resume, the input unchanged and no --max-errors".
            args.retain(|a| *a != "--max-errors" && *a != "3");
        }
        args.push(way);
        let out = load(&sb.url(), &args, None).await;
        let tasks = sb.tasks();
        if way == "--restart" {
            assert_eq!(out.code, 0, "{out:?}");
            assert_eq!(by_ref(&tasks).len(), 400);
        } else {
            assert_eq!(out.code, 2, "{out:?}");
            assert!(!out.stderr.contains("not settled"), "{}", out.stderr);
            let mut amounts: Vec<i64> = tasks
                .iter()
                .map(|t| t.data["amount"].as_i64().unwrap())
                .collect();
            amounts.sort();
            amounts.dedup();
            assert_eq!(amounts.len(), tasks.len(), "no row twice");
            assert_eq!(tasks.len(), 390);
        }
    }
}

/// The advice of a resume refused for a changed input, followed: `--restart` (the log is
/// unfinished) loads it, the rows loaded already coming back exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changed_input_advice_works_when_followed() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ch.csv");
    std::fs::write(&input, "id,amount\nc1,1\nc2,x\nc3,3\n").unwrap();
    let args = [s(&input), "--conv-id", "555", "--type", "amount:number"];
    let mut first = args.to_vec();
    first.extend(["--max-errors", "1"]);
    assert_eq!(load(&sb.url(), &first, None).await.code, 2);
    std::fs::write(&input, "id,amount\nc1,1\nc2,2\nc3,3\n").unwrap();
    let mut resume = args.to_vec();
    resume.push("--resume");
    let out = load(&sb.url(), &resume, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("changed since"), "{}", out.stderr);
    assert!(out.stderr.contains("--restart"), "{}", out.stderr);
    let mut restart = args.to_vec();
    restart.push("--restart");
    let out = load(&sb.url(), &restart, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(by_ref(&sb.tasks()).len(), 3);
}

/// The advice for an integer beyond 2^53, followed: `--type COL:string` loads it exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_big_integer_advice_works_when_followed() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.csv");
    std::fs::write(&input, "id,n\nb1,90071992547409930\n").unwrap();
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--type", "n:integer"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let log = std::fs::read_to_string(dir.path().join("big.results.ndjson")).unwrap();
    assert!(log.contains("--type COL:string"), "{log}");
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--type", "n:string"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].data["n"], "90071992547409930");
}

/// `merge-results` of shard logs with a damaged row line refuses (exit 2, naming the log
/// and the line, nothing written), instead of a merged log missing that row; its advice
/// (repair the line) followed, the merge succeeds with every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_refuses_a_damaged_line_and_its_advice_works() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = rows(dir.path(), "sh.csv", 40);
    let mut logs = Vec::new();
    for i in 0..2 {
        let shard = format!("{i}/2");
        let log = dir.path().join(format!("s{i}.ndjson"));
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
        assert_eq!(out.code, 0, "{out:?}");
        logs.push(log);
    }
    let good = std::fs::read_to_string(&logs[1]).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    let kept = lines[2].to_string();
    lines[2] = "{\"row\":oops}";
    std::fs::write(&logs[1], lines.join("\n") + "\n").unwrap();
    let merged = dir.path().join("all.ndjson");
    let merge = || {
        crate::common::czload()
            .arg("merge-results")
            .args(&logs)
            .arg("-o")
            .arg(&merged)
            .output()
            .unwrap()
    };
    let out = merge();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(s(&logs[1])) && err.contains("line 3"), "{err}");
    assert!(!merged.exists(), "nothing written");
    lines[2] = &kept;
    std::fs::write(&logs[1], lines.join("\n") + "\n").unwrap();
    let out = merge();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = results(&merged);
    assert_eq!(rows.len(), 40);
}
