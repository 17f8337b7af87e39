//! Inputs as exports arrive: other encodings, JSON arrays, zstd, constant and renamed
//! fields, tab files. Each against the sandbox: what it stored, what the results log and
//! the retry file say, and the exit code.

use crate::common::{self, by_ref, load, results, s, sandbox};
use czload::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use std::io::Write;

/// `text` in `label`'s encoding.
fn encoded(label: &str, text: &str) -> Vec<u8> {
    let enc = encoding_rs::Encoding::for_label(label.as_bytes()).unwrap();
    let (bytes, _, bad) = enc.encode(text);
    assert!(!bad, "{label} holds {text:?}");
    bytes.into_owned()
}

/// A server where every request fails: every row goes to the retry file.
async fn broken() -> Sandbox {
    Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..common::config()
    })
    .await
    .unwrap()
}

const CYRILLIC: &str =
    "id,name,city\n1,Ирина Шевченко,Київ\n2,Пётр,Москва\n3,\"Ёлка, ель\",Минск\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_1251_cyrillic_is_stored_as_unicode_and_retried_in_1251() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cp.csv");
    let bytes = encoded("windows-1251", CYRILLIC);
    std::fs::write(&input, &bytes).unwrap();
    let args = [s(&input), "--conv-id", "555", "--encoding", "windows-1251"];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    assert_eq!(refs.len(), 3);
    assert_eq!(refs["cp.csv:1"].data["name"], "Ирина Шевченко");
    assert_eq!(refs["cp.csv:1"].data["city"], "Київ");
    assert_eq!(refs["cp.csv:3"].data["name"], "Ёлка, ель");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        bytes,
        "the input is untouched"
    );

    // Without --encoding the same bytes are not UTF-8: refused, naming the flag.
    let sb2 = sandbox().await;
    let out = load(&sb2.url(), &[s(&input), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--encoding windows-1251"),
        "{}",
        out.stderr
    );
    assert_eq!(sb2.stats().requests, 0);

    // The retry file is in the input's encoding, and the same command loads it.
    let bad = broken().await;
    let out = load(
        &bad.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--encoding",
            "cp1251",
            "--max-attempts",
            "1",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let retry = dir.path().join("cp.retry.csv");
    let got = std::fs::read(&retry).unwrap();
    let want = encoded(
        "windows-1251",
        "id,name,city,_czload_ref\n1,Ирина Шевченко,Київ,cp.csv:1\n2,Пётр,Москва,cp.csv:2\n3,\"Ёлка, ель\",Минск,cp.csv:3\n",
    );
    assert_eq!(got, want, "{}", String::from_utf8_lossy(&got));
    let sb3 = sandbox().await;
    let out = load(
        &sb3.url(),
        &[s(&retry), "--conv-id", "555", "--encoding", "windows-1251"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(by_ref(&sb3.tasks())["cp.csv:2"].data["name"], "Пётр");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf16_is_recognised_by_its_bom_and_a_cell_that_does_not_decode_is_rejected() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("u16.csv");
    let mut bytes = vec![0xFF, 0xFE];
    let text = "id,name\n1,Олена\n2,X\n3,Ї\n";
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    // Row 2's "X" becomes a lone surrogate: it does not decode.
    let x = bytes
        .windows(2)
        .rposition(|w| w == [b'X', 0])
        .expect("the X");
    bytes[x..x + 2].copy_from_slice(&[0x00, 0xD8]);
    std::fs::write(&input, &bytes).unwrap();
    let out = load(&sb.url(), &[s(&input), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    let refs: Vec<Value> = results(&dir.path().join("u16.results.ndjson"));
    let rejected: Vec<&Value> = refs.iter().filter(|l| l["status"] == "rejected").collect();
    assert_eq!(rejected.len(), 1, "{refs:?}");
    assert_eq!(rejected[0]["line"], 3);
    assert!(rejected[0]["error"].as_str().unwrap().contains("\"name\""));
    let tasks = sb.tasks();
    let stored = by_ref(&tasks);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored["u16.csv:1"].data["name"], "Олена");
    assert_eq!(stored["u16.csv:3"].data["name"], "Ї");

    let e = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--encoding", "klingon"],
        None,
    )
    .await;
    assert_eq!(e.code, 1, "{e:?}");
    assert!(e.stderr.contains("--encoding \"klingon\""), "{e:?}");
}

/// Writes `[{...},...]` of `n` elements on one line (no line end to stop at): each
/// element has an id and a padding of 300 bytes.
fn write_array(path: &std::path::Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let pad = "p".repeat(300);
    f.write_all(b"[").unwrap();
    for i in 1..=n {
        if i > 1 {
            f.write_all(b",").unwrap();
        }
        write!(
            f,
            r#"{{"id":{i},"pad":"{pad}","tags":["a,]",{{"k":"}}"}}]}}"#
        )
        .unwrap();
    }
    f.write_all(b"]\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100000_element_json_array_streams_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.json");
    let big = dir.path().join("big.json");
    write_array(&small, 1_000);
    write_array(&big, 100_000);
    assert!(std::fs::metadata(&big).unwrap().len() > 30 << 20);
    let mut peaks = Vec::new();
    for (path, n) in [(&small, 1_000), (&big, 100_000)] {
        let sb = sandbox().await;
        let (url, p) = (sb.url(), path.clone());
        let (out, rss_kib) = tokio::task::spawn_blocking(move || {
            crate::hostile::load_measured(&url, &[s(&p), "--conv-id", "555"])
        })
        .await
        .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(sb.stats().created, n as u64);
        let tasks = sb.tasks();
        let refs = by_ref(&tasks);
        let name = path.file_name().unwrap().to_str().unwrap();
        let last = &refs[&format!("{name}:{n}")];
        assert_eq!(last.data["id"], n);
        assert_eq!(last.data["tags"], json!(["a,]", {"k": "}"}]));
        peaks.push(rss_kib);
    }
    // The array is one 36 MB line: read whole, the peak would grow by that much. What
    // does grow (about 10 MiB here) is the refs seen and the rows in flight.
    assert!(
        peaks[1] < peaks[0] + 20 * 1024,
        "peak RSS {} KiB for 1,000 elements, {} KiB for 100,000",
        peaks[0],
        peaks[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_array_rows_are_elements_a_bad_one_is_rejected_alone_and_retries_are_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export.json");
    let text = "[\n  {\"id\": 1,\n   \"name\": \"a\"},\n  {\"id\": tru},\n  7,\n  {\"id\": 4, \"s\": \"x]\"}\n]\n";
    std::fs::write(&input, text).unwrap();
    let sb = sandbox().await;
    let out = load(&sb.url(), &[s(&input), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = results(&dir.path().join("export.results.ndjson"));
    let by_row = |row: u64| lines.iter().find(|l| l["row"] == row).unwrap().clone();
    assert_eq!(by_row(1)["status"], "created");
    assert_eq!(by_row(1)["line"], 2);
    assert_eq!(by_row(2)["status"], "rejected");
    assert_eq!(by_row(2)["line"], 4);
    assert!(by_row(2)["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert_eq!(by_row(3)["status"], "rejected");
    assert_eq!(by_row(4)["status"], "created");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    assert_eq!(refs.len(), 2);
    assert_eq!(refs["export.json:1"].data["name"], "a");
    assert_eq!(refs["export.json:4"].data["s"], "x]");

    // Failed rows go to an NDJSON retry file, one element a line, which loads back.
    let bad = broken().await;
    let out = load(
        &bad.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--format",
            "json-array",
            "--max-attempts",
            "1",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    // A JSON array's retry file is a JSON array, so `--format json-array` reads it.
    let retry = dir.path().join("export.retry.json");
    let text = std::fs::read_to_string(&retry).unwrap();
    let got: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        got,
        vec![
            json!({"_czload_ref": "export.json:1", "id": 1, "name": "a"}),
            json!({"_czload_ref": "export.json:4", "id": 4, "s": "x]"}),
        ]
    );
    let sb2 = sandbox().await;
    let out = load(&sb2.url(), &[s(&retry), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(by_ref(&sb2.tasks()).contains_key("export.json:4"));

    // A JSON array on stdin.
    let sb3 = sandbox().await;
    // Stdin's results log would go to the working directory: one of its own.
    let log = tempfile::tempdir().unwrap();
    let log = log.path().join("stdin.results.ndjson");
    let out = load(
        &sb3.url(),
        &[
            "-",
            "--conv-id",
            "555",
            "--format",
            "json-array",
            "--ref-column",
            "id",
            "--results",
            s(&log),
        ],
        Some(br#"[{"id":"x1"},{"id":"x2"}]"#.to_vec()),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sb3.stats().created, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_files_and_zstd_on_stdin_load() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("z.ndjson.zst");
    let text: String = (1..=500).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let packed = zstd::encode_all(text.as_bytes(), 3).unwrap();
    std::fs::write(&input, &packed).unwrap();
    let sb = sandbox().await;
    let out = load(&sb.url(), &[s(&input), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sb.stats().created, 500);
    // The default outputs are named after the file without .ndjson.zst.
    assert_eq!(results(&dir.path().join("z.results.ndjson")).len(), 500);
    assert_eq!(by_ref(&sb.tasks())["z.ndjson.zst:500"].data["n"], 500);

    let sb = sandbox().await;
    let csv = zstd::encode_all(&b"k\na\nb\n"[..], 3).unwrap();
    let log = dir.path().join("stdin.results.ndjson");
    let out = load(
        &sb.url(),
        &[
            "-",
            "--conv-id",
            "555",
            "--format",
            "csv",
            "--compression",
            "zstd",
            "--ref-column",
            "k",
            "--results",
            s(&log),
        ],
        Some(csv),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sb.stats().created, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_adds_typed_constants_rename_renames_and_resume_checks_both() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    std::fs::write(&csv, "id,cust,batch\n1,ann,old\n2,bob,old\n").unwrap();
    let nd = dir.path().join("n.ndjson");
    std::fs::write(&nd, "{\"id\":1,\"cust\":\"cy\",\"x\":{\"cust\":1}}\n{}\n").unwrap();
    let flags = [
        "--conv-id",
        "555",
        "--set",
        "batch:integer=42",
        "--set",
        "source=crm",
        "--rename",
        "cust:customer",
    ];
    let sb = sandbox().await;
    let mut args = vec![s(&csv), s(&nd), "--results", "r.ndjson"];
    args.extend_from_slice(&flags);
    let results_log = dir.path().join("r.ndjson");
    args[3] = s(&results_log);
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    let data = |r: &str| Value::Object(refs[r].data.clone());
    assert_eq!(
        data("c.csv:1"),
        json!({"id": "1", "customer": "ann", "batch": 42, "source": "crm"})
    );
    assert_eq!(
        data("n.ndjson:1"),
        json!({"id": 1, "customer": "cy", "x": {"cust": 1}, "batch": 42, "source": "crm"})
    );
    assert_eq!(data("n.ndjson:2"), json!({"batch": 42, "source": "crm"}));

    // Resuming under another constant is refused: the rows would differ.
    let mut args2 = args.clone();
    args2[7] = "batch:integer=43";
    args2.push("--resume");
    let out = load(&sb.url(), &args2, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("mapping flags"), "{out:?}");
    assert!(out.stderr.contains("--set batch:integer=43"), "{out:?}");
    let mut args3 = args.clone();
    args3.push("--resume");
    let out = load(&sb.url(), &args3, None).await;
    assert_eq!(out.code, 0, "{out:?}");

    for (flag, value, want) in [
        ("--set", "n:integer=x", "--set \"n:integer=x\""),
        ("--rename", "nope", "OLD:NEW"),
        ("--rename", "ghost:g", "--rename: no column named \"ghost\""),
        ("--rename", "id:cust", "would both be named \"cust\""),
    ] {
        let out = load(&sb.url(), &[s(&csv), "--conv-id", "555", flag, value], None).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains(want), "{want}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsv_means_tab_and_a_semicolon_file_gets_the_delimiter_suggested() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("t.tsv");
    std::fs::write(&tsv, "id\tname\n1\ta, b\n").unwrap();
    let sb = sandbox().await;
    let out = load(&sb.url(), &[s(&tsv), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        Value::Object(sb.tasks()[0].data.clone()),
        json!({"id": "1", "name": "a, b"})
    );

    let semi = dir.path().join("semi.csv");
    std::fs::write(&semi, "id;name\n1;ann\n2;bob\n").unwrap();
    // It is refused before anything is sent, naming the delimiter (docs/architecture.md,
    // Reading that checks itself), with or without a flag naming a column.
    let sb = sandbox().await;
    for extra in [&[][..], &["--ref-column", "id"]] {
        let mut args = vec![s(&semi), "--conv-id", "555"];
        args.extend(extra);
        let out = load(&sb.url(), &args, None).await;
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("--delimiter ';'"), "{out:?}");
        assert_eq!(sb.stats().requests, 0);
    }
    // With the delimiter given, no warning.
    let sb = sandbox().await;
    let out = load(
        &sb.url(),
        &[
            s(&semi),
            "--conv-id",
            "555",
            "--delimiter",
            ";",
            "--ref-column",
            "id",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("warning"), "{out:?}");
    assert_eq!(by_ref(&sb.tasks())["2"].data["name"], "bob");
}
