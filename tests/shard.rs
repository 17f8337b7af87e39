//! `--shard i/N`: N copies of one load against one sandbox with one license limit; the
//! union of their work is the load, exactly once; `merge-results` joins their logs and
//! refuses logs that are not the N finished shards of one load.

use crate::common::*;
use czload::sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROWS: usize = 1500;

fn write_csv(dir: &Path) -> PathBuf {
    let p = dir.join("orders.csv");
    let mut s = String::from("id,amount\n");
    for i in 1..=ROWS {
        s.push_str(&format!("{i},{}\n", i * 3));
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// Runs `czload ARGS` (any subcommand) with the test credentials.
async fn czload(mut cmd: Command) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || Out::from(cmd.output().expect("czload runs")))
        .await
        .unwrap()
}

fn merge(logs: &[&Path], out: &Path) -> Command {
    let mut cmd = crate::common::czload();
    cmd.arg("merge-results").args(logs).arg("-o").arg(out);
    cmd
}

fn shard_log(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("orders.shard-{i}-of-3.results.ndjson"))
}

/// Three copies, started together, one of them given its shard by `CZLOAD_SHARD`.
async fn three_copies(sb: &Sandbox, input: &Path, rate: &str) -> Vec<Out> {
    let conv = CONV.to_string();
    let running: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = load_command(&sb.url(), SECRET);
            cmd.args([s(input), "--conv-id", &conv, "--rate", rate]);
            if i == 2 {
                cmd.env("CZLOAD_SHARD", "2/3");
            } else {
                cmd.env_remove("CZLOAD_SHARD")
                    .args(["--shard", &format!("{i}/3")]);
            }
            tokio::spawn(czload(cmd))
        })
        .collect();
    let mut outs = Vec::new();
    for r in running {
        outs.push(r.await.unwrap());
    }
    outs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_copies_under_one_license_load_every_row_once_and_merge() {
    // The license is the copies' total rate: each copy sends a third of it.
    let sb = Sandbox::start(SandboxConfig {
        rps: Some(1000),
        ..config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = write_csv(dir.path());
    let outs = three_copies(&sb, &input, "1000").await;
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o.code, 0, "copy {i}: {}", o.stderr);
        assert!(
            o.stderr
                .contains(&format!("--shard {i}/3: --rate 1000 is the total of the 3 copies; this one sends 333 tasks/s")),
            "{}",
            o.stderr
        );
        assert!(
            o.stderr.contains("rows read belong to the other copies"),
            "{}",
            o.stderr
        );
    }
    // The server: one task per ref, every row's ref, each created once.
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    let want: HashSet<String> = (1..=ROWS).map(|i| format!("orders.csv:{i}")).collect();
    assert_eq!(refs.keys().cloned().collect::<HashSet<_>>(), want);
    let st = sb.stats();
    assert_eq!((st.created, st.duplicate_refs), (ROWS as u64, 0));
    // Each copy's log lists its own rows only, and together every row once.
    let mut rows = Vec::new();
    for i in 0..3 {
        let log = shard_log(dir.path(), i);
        let first: Value = serde_json::from_str(
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(first["shard"], format!("{i}/3"));
        let lines = results(&log);
        assert!(lines.len() > ROWS / 5, "shard {i}: {} rows", lines.len());
        assert!(lines.iter().all(|l| l["status"] == "created"));
        rows.extend(lines.iter().map(|l| l["row"].as_u64().unwrap()));
        // Its retry file too is its own (written when a row did not succeed).
        let retry = first["retry_files"][0].as_str().unwrap();
        assert!(
            retry.ends_with(&format!("orders.shard-{i}-of-3.retry.csv")),
            "{retry}"
        );
    }
    rows.sort_unstable();
    assert_eq!(rows, (1..=ROWS as u64).collect::<Vec<_>>());

    // Merged: one line per row, a manifest that says so, a finished log.
    let logs: Vec<PathBuf> = (0..3).map(|i| shard_log(dir.path(), i)).collect();
    let out = dir.path().join("merged.ndjson");
    let m = czload(merge(&[&logs[2], &logs[0], &logs[1]], &out)).await;
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert!(
        m.stderr.contains(&format!("{ROWS} rows from 3 shards")),
        "{}",
        m.stderr
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let manifest: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(manifest["merged_from"], 3);
    assert!(manifest.get("shard").is_none());
    assert!(text.ends_with("{\"end\":\"finished\"}\n"));
    let mut merged: Vec<u64> = results(&out)
        .iter()
        .map(|l| l["row"].as_u64().unwrap())
        .collect();
    merged.sort_unstable();
    assert_eq!(merged, (1..=ROWS as u64).collect::<Vec<_>>());
    // `czload report` reads a merged log like any other.
    let mut report = crate::common::czload();
    report
        .arg("report")
        .arg(&out)
        .arg("-o")
        .arg(dir.path().join("r.html"));
    assert_eq!(czload(report).await.code, 0);

    refusals(dir.path(), &logs).await;
    resume_is_per_shard(&sb, &input, &logs).await;
}

/// A missing, doubled or unfinished shard and a row in two shards: exit 2, named, and
/// nothing written.
async fn refusals(dir: &Path, logs: &[PathBuf]) {
    let out = dir.join("refused.ndjson");
    let refused = |o: &Out, what: &str| {
        assert_eq!(o.code, 2, "{}", o.stderr);
        assert!(o.stderr.contains(what), "want {what:?} in: {}", o.stderr);
        assert!(!out.exists(), "a refused merge writes nothing");
    };
    let o = czload(merge(&[&logs[0], &logs[2]], &out)).await;
    refused(&o, "shard 1/3 of this load is missing");
    let o = czload(merge(&[&logs[0], &logs[1], &logs[0]], &out)).await;
    refused(&o, "shard 0/3 is given twice");

    // Shard 2's log with a row of shard 0 in it.
    let row0 = std::fs::read_to_string(&logs[0])
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let row: Value = serde_json::from_str(&row0).unwrap();
    let text2 = std::fs::read_to_string(&logs[2]).unwrap();
    let doubled = dir.join("doubled.ndjson");
    // The manifest stays first: the row goes after it.
    let (head, rest) = text2.split_once('\n').unwrap();
    std::fs::write(&doubled, format!("{head}\n{row0}\n{rest}")).unwrap();
    let o = czload(merge(&[&logs[0], &logs[1], &doubled], &out)).await;
    refused(
        &o,
        &format!("row {} of input 1 is in shard 0/3", row["row"]),
    );

    // Shard 1's run did not finish (no end line).
    let unfinished = dir.join("unfinished.ndjson");
    let text1 = std::fs::read_to_string(&logs[1]).unwrap();
    std::fs::write(&unfinished, text1.replace("{\"end\":\"finished\"}\n", "")).unwrap();
    let o = czload(merge(&[&logs[0], &unfinished, &logs[2]], &out)).await;
    refused(&o, "shard 1/3");
    refused(&o, "is unfinished");
    // Not a shard at all.
    let plain = dir.join("plain.ndjson");
    let plain_text = text1.replacen(",\"shard\":\"1/3\"", "", 1);
    assert_ne!(plain_text, text1);
    std::fs::write(&plain, plain_text).unwrap();
    let o = czload(merge(&[&logs[0], &plain, &logs[2]], &out)).await;
    refused(&o, "was not written by a copy with --shard");
}

/// `--resume` is per shard: another copy's log is refused; the copy's own resumes.
async fn resume_is_per_shard(sb: &Sandbox, input: &Path, logs: &[PathBuf]) {
    let conv = CONV.to_string();
    let before = sb.stats().requests;
    let o = load(
        &sb.url(),
        &[
            s(input),
            "--conv-id",
            &conv,
            "--shard",
            "1/3",
            "--resume",
            "--results",
            s(&logs[0]),
        ],
        None,
    )
    .await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("written by the copy with --shard 0/3; this run has --shard 1/3"),
        "{}",
        o.stderr
    );
    let o = load(
        &sb.url(),
        &[s(input), "--conv-id", &conv, "--shard", "1/3", "--resume"],
        None,
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(sb.stats().requests, before, "nothing left to send");
}

#[tokio::test]
async fn rows_without_a_ref_and_ref_columns_split_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("o.ndjson");
    let mut s_ = String::new();
    for i in 1..=300 {
        s_.push_str(&format!("{{\"k\":\"key-{i}\",\"n\":{i}}}\n"));
    }
    std::fs::write(&p, s_).unwrap();
    for flags in [&["--no-ref"][..], &["--ref-column", "k"][..]] {
        let sb = sandbox().await;
        let conv = CONV.to_string();
        let mut read = 0;
        for i in 0..4 {
            let shard = format!("{i}/4");
            let log = dir.path().join(format!("r{i}.ndjson"));
            let mut args = vec![s(&p), "--conv-id", &conv, "--shard", &shard];
            args.extend(["--results", s(&log)]);
            args.extend_from_slice(flags);
            let o = load(&sb.url(), &args, None).await;
            assert_eq!(o.code, 0, "{flags:?} {shard}: {}", o.stderr);
            read += results(&log).len();
        }
        assert_eq!(read, 300, "{flags:?}");
        assert_eq!(sb.stats().created, 300, "{flags:?}");
        if flags[0] == "--ref-column" {
            assert_eq!(by_ref(&sb.tasks()).len(), 300);
        }
    }
}

/// A file larger than the read buffers, so that copies pass over most other copies' rows
/// unread (`CsvSource::pass_while`), with the rows that stop that between them: quoted
/// fields with line ends and quotes in them, blank lines, rows with a field missing (no
/// ref: placed by row number), a `\r` alone; with LF and with CRLF line ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_passed_over_unread_are_placed_as_their_refs_say() {
    for nl in ["\n", "\r\n"] {
        rows_passed_over(nl).await;
    }
}

async fn rows_passed_over(nl: &str) {
    use czload::shard::Shard;
    const N: u64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.csv");
    let mut text = format!("id,note,v{nl}");
    let mut lines = vec![0u64; N as usize + 1];
    let mut line = 2;
    for i in 1..=N {
        if i % 211 == 0 {
            text.push_str(nl);
            line += 1;
        }
        lines[i as usize] = line;
        let row = match i {
            _ if i % 97 == 0 => format!("{i},\"two{nl}lines\",x{nl}"),
            _ if i % 89 == 0 => format!("{i},short{nl}"),
            _ if i % 173 == 0 => format!("{i},\"say \"\"hi\"\"\",x{nl}"),
            // (Lines are counted as csv counts them: a `\r` alone ends a row, not a
            // line; a CRLF file is taken to end every row with `\r\n`.)
            _ if i % 301 == 0 && nl == "\n" => format!("{i},cr alone,x\r"),
            _ => format!("{i},plain row of some length,{}{nl}", i * 7),
        };
        line += row.matches('\n').count() as u64;
        text.push_str(&row);
    }
    std::fs::write(&p, text).unwrap();
    let sb = sandbox().await;
    let conv = CONV.to_string();
    let mut seen = vec![0u32; N as usize + 1];
    for index in 0..4 {
        let shard = format!("{index}/4");
        let log = dir.path().join(format!("r{index}.ndjson"));
        let mut args = vec![s(&p), "--conv-id", &conv, "--shard", &shard];
        args.extend(["--results", s(&log), "--rate", "unlimited"]);
        let o = load(&sb.url(), &args, None).await;
        assert_eq!(o.code, 2, "{shard}: some rows are rejected: {}", o.stderr);
        let me = Shard { index, count: 4 };
        for l in results(&log) {
            let row = l["row"].as_u64().expect("a row");
            seen[row as usize] += 1;
            assert_eq!(l["line"], lines[row as usize], "{nl:?} {l}");
            let of = if row % 89 == 0 && row % 97 != 0 {
                assert_eq!(l["status"], "rejected", "{l}");
                me.of_row(row)
            } else {
                assert_eq!(l["status"], "created", "{l}");
                assert_eq!(l["ref"], format!("big.csv:{row}"), "{l}");
                me.of_ref(format!("big.csv:{row}").as_bytes())
            };
            assert_eq!(of, index, "{nl:?} {l}");
        }
    }
    let once = seen[1..].iter().all(|&n| n == 1);
    assert!(once, "{nl:?}: every row on exactly one copy");
}

#[tokio::test]
async fn a_shard_that_does_not_exist_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_csv(dir.path());
    let o = load(
        "http://127.0.0.1:9",
        &[s(&input), "--conv-id", "1", "--dry-run", "--shard", "3/3"],
        None,
    )
    .await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("the last is --shard 2/3"), "{}", o.stderr);
    let o = load(
        "http://127.0.0.1:9",
        &[s(&input), "--conv-id", "1", "--shard", "0/3", "--rate", "2"],
        None,
    )
    .await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("less than one task per second each"),
        "{}",
        o.stderr
    );
}
