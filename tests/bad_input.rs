//! The bad-input corpus (`tests/data/bad/`) and generated bad inputs: bad rows end
//! `rejected` with their line and a reason naming the column or the problem, the good
//! rows load, exit 2; an unusable input is an error naming the file, exit 1.

use crate::common;
use crate::common::{by_ref, load, results, Out};
use czload::sandbox::Sandbox;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/bad")
        .join(name)
}

/// Loads `name` (copied into a temp dir) into a fresh sandbox.
async fn run(name: &str, extra: &[&str]) -> (Out, Sandbox, tempfile::TempDir, PathBuf) {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(name);
    if corpus(name).exists() {
        std::fs::copy(corpus(name), &input).unwrap();
    }
    let mut args = vec![input.to_str().unwrap(), "--conv-id", "555"];
    args.extend_from_slice(extra);
    let out = load(&sb.url(), &args, None).await;
    (out, sb, dir, input)
}

/// Result lines by input line number.
fn by_line(dir: &Path, stem: &str) -> HashMap<u64, Value> {
    results(&dir.join(format!("{stem}.results.ndjson")))
        .into_iter()
        .map(|l| (l["line"].as_u64().unwrap(), l))
        .collect()
}

/// Asserts line `line` was rejected with a reason containing every one of `words`.
fn rejected(lines: &HashMap<u64, Value>, line: u64, words: &[&str]) {
    let l = lines
        .get(&line)
        .unwrap_or_else(|| panic!("no result for line {line}: {lines:?}"));
    assert_eq!(l["status"], "rejected", "{l}");
    let err = l["error"].as_str().unwrap();
    for w in words {
        assert!(err.contains(w), "line {line}: {err:?} lacks {w:?}");
    }
}

fn stored_ids(sb: &Sandbox, field: &str) -> Vec<String> {
    let mut v: Vec<String> = sb
        .tasks()
        .iter()
        .map(|t| match &t.data[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_with_too_few_or_too_many_fields() {
    let (out, sb, dir, _) = run("fields.csv", &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = by_line(dir.path(), "fields");
    rejected(&lines, 3, &["2 fields", "header has 3"]);
    rejected(&lines, 4, &["4 fields"]);
    assert_eq!(stored_ids(&sb, "id"), ["1", "4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_unterminated_quote_is_named() {
    let (out, sb, dir, _) = run("unterminated_quote.csv", &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    rejected(
        &by_line(dir.path(), "unterminated_quote"),
        3,
        &["closing quote"],
    );
    assert_eq!(stored_ids(&sb, "id"), ["1"]);
}

/// Many bad rows among good ones: the journal gets rejected rows in groups (256), so the
/// groups' edges and the last partial group must all reach the log and the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_rejected_rows_are_each_logged_once() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.csv");
    let mut text = String::from("id,n\n");
    let n = 3000;
    for i in 1..=n {
        // Two rows in three are bad (not integers); row 1 is good.
        let v = if i % 3 == 1 {
            i.to_string()
        } else {
            format!("x{i}")
        };
        text.push_str(&format!("{i},{v}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let out = load(
        &sb.url(),
        &[
            input.to_str().unwrap(),
            "--conv-id",
            "555",
            "--type",
            "n:integer",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(", 2000 rejected,"), "{}", out.stderr);
    // One line per row: by_line would hide a row logged twice, the raw count does not.
    assert_eq!(results(&dir.path().join("mixed.results.ndjson")).len(), n);
    let lines = by_line(dir.path(), "mixed");
    assert_eq!(lines.len(), n);
    for i in 1..=n as u64 {
        let l = &lines[&(i + 1)];
        assert_eq!(l["row"], i);
        if i % 3 == 1 {
            assert_eq!(l["status"], "created", "{l}");
        } else {
            rejected(&lines, i + 1, &["\"n\"", "integer"]);
        }
    }
    assert_eq!(sb.stats().created, 1000);
}

/// A quote never closed near the top of a large file: the csv reader would take the whole
/// rest of the file as one record. It stops at 16 MiB instead: the rows before it load,
/// the summary names the line, and memory stays far below the file's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_a_quote_never_closed_does_not_buffer_the_rest_of_the_file() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("runaway.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    writeln!(f, "id,name").unwrap();
    for i in 1..=1000 {
        writeln!(f, "{i},name {i}").unwrap();
    }
    writeln!(f, "1001,\"opened and never closed").unwrap();
    // 160 MB after it, all inside the open quote.
    let line = format!("{}\n", "x".repeat(99));
    for _ in 0..1_600_000 {
        f.write_all(line.as_bytes()).unwrap();
    }
    drop(f);
    let (url, p) = (sb.url(), input.clone());
    let (out, rss_kib) = tokio::task::spawn_blocking(move || {
        crate::hostile::load_measured(&url, &[p.to_str().unwrap(), "--conv-id", "555"])
    })
    .await
    .unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("line 1002") && out.stderr.contains("quote"),
        "{}",
        out.stderr
    );
    assert_eq!(sb.stats().created, 1000);
    assert!(rss_kib < 100 * 1024, "peak RSS {rss_kib} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_invalid_utf8_names_the_column() {
    // Said to be UTF-8: the damaged row is rejected alone (without the flag, a file whose
    // only bytes beyond ASCII are not UTF-8 is refused, naming the encoding they look like).
    let (out, sb, dir, _) = run("invalid_utf8.csv", &["--encoding", "utf-8"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    rejected(
        &by_line(dir.path(), "invalid_utf8"),
        3,
        &["\"name\"", "UTF-8"],
    );
    assert_eq!(stored_ids(&sb, "id"), ["1", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_bom_and_crlf_are_read_cleanly() {
    let (out, sb, dir, _) = run("bom_crlf.csv", &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    // The BOM is not part of the first column's name, and no \r is left in the last.
    assert_eq!(refs["bom_crlf.csv:1"].data["id"], "1");
    assert_eq!(refs["bom_crlf.csv:1"].data["amount"], "10");
    assert_eq!(refs["bom_crlf.csv:2"].data["name"], "Zoë");
    let lines = by_line(dir.path(), "bom_crlf");
    assert_eq!(lines[&3]["row"], 2, "CRLF line numbers are right");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_csv_inputs_exit_1_naming_file_and_problem() {
    for (name, words) in [
        ("empty.csv", &["empty.csv", "empty", "header"][..]),
        (
            "duplicate_header.csv",
            &["duplicate_header.csv", "both named \"name\""][..],
        ),
        (
            "empty_header.csv",
            &["empty_header.csv", "column 2", "no name"][..],
        ),
    ] {
        let (out, sb, _dir, _) = run(name, &[]).await;
        assert_eq!(out.code, 1, "{name}: {out:?}");
        for w in words {
            assert!(
                out.stderr.contains(w),
                "{name}: {:?} lacks {w:?}",
                out.stderr
            );
        }
        assert_eq!(sb.stats().requests, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_only_file_loads_nothing_and_says_so() {
    let (out, sb, _dir, _) = run("header_only.csv", &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("no data rows"), "{}", out.stderr);
    assert_eq!(sb.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_typed_cells_that_do_not_parse_and_integers_beyond_2_53() {
    let types = [
        "--type",
        "amount:number",
        "--type",
        "qty:integer",
        "--type",
        "paid:bool",
        "--type",
        "tags:json",
    ];
    let (out, sb, dir, _) = run("types.csv", &types).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = by_line(dir.path(), "types");
    rejected(&lines, 3, &["\"amount\"", "\"ten\"", "not a number"]);
    rejected(&lines, 4, &["\"qty\"", "not an integer"]);
    rejected(&lines, 5, &["\"paid\"", "not a boolean"]);
    rejected(&lines, 6, &["\"tags\"", "not valid JSON"]);
    rejected(&lines, 7, &["\"qty\"", "2^53"]);
    rejected(&lines, 8, &["\"amount\"", "2^53"]);
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), 2);
    let refs = by_ref(&tasks);
    assert_eq!(refs["types.csv:1"].data["tags"], serde_json::json!([1, 2]));
    assert_eq!(refs["types.csv:8"].data["paid"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_of_a_megabyte_is_a_task_over_the_size_limit() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.csv");
    std::fs::write(
        &input,
        format!("id,blob\n1,small\n2,{}\n3,small\n", "b".repeat(1 << 20)),
    )
    .unwrap();
    let out = load(
        &sb.url(),
        &[input.to_str().unwrap(), "--conv-id", "555"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    rejected(
        &by_line(dir.path(), "big"),
        3,
        &["bytes", "--max-task-bytes"],
    );
    assert_eq!(stored_ids(&sb, "id"), ["1", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_empty_too_long_or_repeated() {
    let (out, sb, dir, _) = run("refs.csv", &["--ref-column", "ref"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = by_line(dir.path(), "refs");
    rejected(&lines, 3, &["ref is empty"]);
    rejected(&lines, 4, &["256 characters", "255"]);
    // Refs are kept as 64-bit hashes (16 bytes a row at most), so the message says the
    // ref came before in this load, not on which row.
    rejected(
        &lines,
        5,
        &["duplicate ref \"A\"", "an earlier row of this load"],
    );
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    assert_eq!(refs.len(), 2);
    // The first row with ref A won; the repeat was never sent.
    assert_eq!(refs["A"].data["v"], "1");
    assert_eq!(sb.stats().duplicate_refs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_bad_lines() {
    let (out, sb, dir, input) = run("bad.ndjson", &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = by_line(dir.path(), "bad");
    rejected(&lines, 2, &["not valid JSON"]);
    rejected(&lines, 3, &["not a JSON object"]);
    rejected(&lines, 4, &["not a JSON object"]);
    rejected(&lines, 5, &["trailing characters"]);
    rejected(&lines, 9, &["201 levels deep", "limit is 100"]);
    // Blank lines 6 and 7 are not rows.
    assert!(!lines.contains_key(&6) && !lines.contains_key(&7));
    let tasks = sb.tasks();
    let mut ids: Vec<_> = tasks
        .iter()
        .map(|t| t.data["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 8, 10]);
    let text = std::fs::read_to_string(&input).unwrap();
    let want: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let got = tasks.iter().find(|t| t.data["id"] == 10).unwrap();
    assert_eq!(
        Value::Object(got.data.clone()),
        want,
        "nested data passes through as it is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndjson_line_of_several_megabytes() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("huge.ndjson");
    let mut f = std::fs::File::create(&input).unwrap();
    writeln!(f, "{{\"id\":1}}").unwrap();
    writeln!(f, "{{\"id\":2,\"blob\":\"{}\"}}", "x".repeat(6 << 20)).unwrap();
    writeln!(f, "{{\"id\":3}}").unwrap();
    drop(f);
    let out = load(
        &sb.url(),
        &[input.to_str().unwrap(), "--conv-id", "555"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    rejected(&by_line(dir.path(), "huge"), 2, &["bytes"]);
    assert_eq!(sb.tasks().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_file_and_directory_exit_1() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = load(&sb.url(), &[d, "--conv-id", "555", "--format", "csv"], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("is a directory"), "{}", out.stderr);
    let missing = dir.path().join("missing.csv");
    let out = load(
        &sb.url(),
        &[missing.to_str().unwrap(), "--conv-id", "555"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("missing.csv: no such file"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_exits_1() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("locked.csv");
    std::fs::write(&input, "id\n1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&input).is_ok() {
        // Running as root: permissions do not stop us; a dangling symlink cannot be read
        // by anyone.
        std::fs::remove_file(&input).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &input).unwrap();
    }
    let out = load(
        &sb.url(),
        &[input.to_str().unwrap(), "--conv-id", "555"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("locked.csv"), "{}", out.stderr);
    assert_eq!(sb.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_truncated_midway_loads_the_rows_before_the_cut() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,text\n");
    for i in 1..=20_000 {
        csv.push_str(&format!("{i},row number {i} with some text to compress\n"));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes()).unwrap();
    let full = gz.finish().unwrap();
    let input = dir.path().join("cut.csv.gz");
    std::fs::write(&input, &full[..full.len() / 2]).unwrap();
    let out = load(
        &sb.url(),
        &[input.to_str().unwrap(), "--conv-id", "555"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("cut.csv.gz: line"), "{}", out.stderr);
    assert!(
        out.stderr.contains("the rows before it were loaded"),
        "{}",
        out.stderr
    );
    // Every row read before the cut is stored, each once, and has a results line.
    let lines = results(&dir.path().join("cut.results.ndjson"));
    let n = lines.len();
    assert!(n > 1000 && n < 20_000, "{n}");
    assert!(lines.iter().all(|l| l["status"] == "created"));
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), n);
    let refs = by_ref(&tasks);
    for i in 1..=n {
        assert!(refs.contains_key(&format!("cut.csv.gz:{i}")), "row {i}");
    }
}
