//! Following czload's advice never duplicates a row: every retry file, in every encoding,
//! format and compression, loads back with the same command (the sandbox then holds each
//! row exactly once, under the first run's ref, with the right keys and text); rows whose
//! fate is unknown go to their own file, never to the retry file; and `--op raw` obeys
//! the one-ref-once rule. Faults come from the sandbox (`fail_before`, `fail_after`,
//! `drop_after`), healed before the retry.

use crate::common::{self, by_ref, load_command, results, s, Out, SECRET};
use czload::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ROWS: usize = 24;

async fn run(url: &str, args: &[String]) -> Out {
    let mut cmd = load_command(url, SECRET);
    cmd.args(args);
    tokio::task::spawn_blocking(move || Out::from(cmd.output().expect("czload runs")))
        .await
        .unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Enc {
    Utf8,
    Utf8Bom,
    Utf16LeBom,
    Utf16BeBom,
    Utf16Le,
    Utf16Be,
    Cp1251,
}

const ENCODINGS: [Enc; 7] = [
    Enc::Utf8,
    Enc::Utf8Bom,
    Enc::Utf16LeBom,
    Enc::Utf16BeBom,
    Enc::Utf16Le,
    Enc::Utf16Be,
    Enc::Cp1251,
];

impl Enc {
    fn encode(self, text: &str) -> Vec<u8> {
        let utf16 = |le: bool, bom: bool| {
            let mut v = Vec::new();
            for u in bom.then_some(0xFEFF).into_iter().chain(text.encode_utf16()) {
                v.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
            }
            v
        };
        match self {
            Enc::Utf8 => text.as_bytes().to_vec(),
            Enc::Utf8Bom => [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
            Enc::Utf16LeBom => utf16(true, true),
            Enc::Utf16BeBom => utf16(false, true),
            Enc::Utf16Le => utf16(true, false),
            Enc::Utf16Be => utf16(false, false),
            Enc::Cp1251 => encoding_rs::WINDOWS_1251.encode(text).0.into_owned(),
        }
    }

    /// The flag a file without a byte order mark needs.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Enc::Utf16Le => &["--encoding", "utf-16le"],
            Enc::Utf16Be => &["--encoding", "utf-16be"],
            Enc::Cp1251 => &["--encoding", "windows-1251"],
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fmt {
    Csv,
    CsvNoHeader,
    Tsv,
    Ndjson,
    Array,
    ArrayFlag,
}

const FORMATS: [Fmt; 6] = [
    Fmt::Csv,
    Fmt::CsvNoHeader,
    Fmt::Tsv,
    Fmt::Ndjson,
    Fmt::Array,
    Fmt::ArrayFlag,
];

/// The name of row `i`: Cyrillic that windows-1251 holds, a comma, quotes.
fn name(i: usize) -> String {
    format!("Ім'я, \"Ґанна\" №{i}")
}

impl Fmt {
    /// The extension, the text of `n` rows and the flags that read it.
    fn text(self, n: usize) -> (&'static str, String, &'static [&'static str]) {
        let rows = 1..=n;
        match self {
            Fmt::Csv | Fmt::CsvNoHeader => {
                let mut t = String::new();
                if self == Fmt::Csv {
                    t.push_str("id,name\r\n");
                }
                for i in rows {
                    t.push_str(&format!("{i},\"{}\"\r\n", name(i).replace('"', "\"\"")));
                }
                let flags: &[&str] = if self == Fmt::Csv {
                    &[]
                } else {
                    &["--no-header"]
                };
                ("csv", t, flags)
            }
            Fmt::Tsv => {
                let mut t = String::from("id\tname\n");
                for i in rows {
                    t.push_str(&format!("{i}\t\"{}\"\n", name(i).replace('"', "\"\"")));
                }
                ("tsv", t, &[])
            }
            Fmt::Ndjson => {
                let t: String = rows
                    .map(|i| format!("{}\n", json!({"id": i.to_string(), "name": name(i)})))
                    .collect();
                ("ndjson", t, &[])
            }
            Fmt::Array | Fmt::ArrayFlag => {
                let items: Vec<String> = rows
                    .map(|i| json!({"id": i.to_string(), "name": name(i)}).to_string())
                    .collect();
                let flags: &[&str] = if self == Fmt::Array {
                    &[]
                } else {
                    &["--format", "json-array"]
                };
                ("json", format!("[\n  {}\n]\n", items.join(",\n  ")), flags)
            }
        }
    }

    /// The data keys of the id and the name.
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Fmt::CsvNoHeader => ("key1", "key2"),
            _ => ("id", "name"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Zip {
    None,
    Gzip,
    Zstd,
    /// Gzip named by `--compression gzip`, not by the file's name.
    GzipFlag,
}

fn compress(z: Zip, bytes: Vec<u8>) -> (&'static str, Vec<u8>) {
    use std::io::Write;
    match z {
        Zip::None => ("", bytes),
        Zip::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
            e.write_all(&bytes).unwrap();
            (".gz", e.finish().unwrap())
        }
        Zip::Zstd => (".zst", zstd::encode_all(&bytes[..], 3).unwrap()),
        Zip::GzipFlag => ("", compress(Zip::Gzip, bytes).1),
    }
}

/// The paths a summary JSON lists under `key`.
fn listed(summary: &Path, key: &str) -> Vec<PathBuf> {
    let v: Value = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| PathBuf::from(p.as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// One case: a load through a server that refuses about half the requests before
/// applying them (`--max-attempts 1`: those rows fail), then the retry file loaded with
/// the same command through the healed server. `Err` says what went wrong.
async fn retry_round_trip(
    k: usize,
    enc: Enc,
    fmt: Fmt,
    zip: Zip,
    resume: bool,
    root: &Path,
) -> Result<(), String> {
    let sb = Sandbox::start(SandboxConfig {
        fail_before: 0.6,
        seed: Some(k as u64),
        ..common::config()
    })
    .await
    .unwrap();
    let dir = root.join(k.to_string());
    std::fs::create_dir(&dir).unwrap();
    let (ext, text, fmt_flags) = fmt.text(ROWS);
    let (zext, bytes) = compress(zip, enc.encode(&text));
    let file_name = format!("c{k}.{ext}{zext}");
    let file = dir.join(&file_name);
    std::fs::write(&file, bytes).unwrap();
    let summary = dir.join("summary.json");
    let args = |input: &Path| -> Vec<String> {
        let mut a: Vec<String> = [s(input), "--conv-id", "555", "--batch-size", "2"]
            .iter()
            .chain(&["--max-attempts", "1", "--summary-json", s(&summary)])
            .chain(enc.flags())
            .chain(fmt_flags)
            .chain(if zip == Zip::GzipFlag {
                &["--compression", "gzip"][..]
            } else {
                &[]
            })
            .map(|x| x.to_string())
            .collect();
        a.push("--rate".into());
        a.push("unlimited".into());
        a
    };
    let first = run(&sb.url(), &args(&file)).await;
    if first.code != 2 {
        return Err(format!("first run: exit {}: {}", first.code, first.stderr));
    }
    if resume {
        // A crash after three rows, resumed through the still faulty server: the rows
        // failing again are appended to the retry file the first run wrote (some of them
        // a second time: their refs make that harmless).
        let log = dir.join(format!("c{k}.results.ndjson"));
        let text = std::fs::read_to_string(&log).unwrap();
        let kept: Vec<&str> = text.lines().take(4).collect();
        std::fs::write(&log, kept.join("\n") + "\n").unwrap();
        let mut a = args(&file);
        a.push("--resume".into());
        let again = run(&sb.url(), &a).await;
        if again.code != 2 && again.code != 0 {
            return Err(format!("resume: exit {}: {}", again.code, again.stderr));
        }
    }
    let retry = listed(&summary, "retry_files");
    let [retry] = &retry[..] else {
        return Err(format!(
            "first run: retry files {retry:?}: {}",
            first.stderr
        ));
    };
    sb.heal();
    let again = run(&sb.url(), &args(retry)).await;
    if again.code != 0 {
        return Err(format!(
            "the retry file {} with the same command: exit {}: {}",
            retry.display(),
            again.code,
            again.stderr
        ));
    }
    let tasks = sb.tasks();
    let refs: HashMap<_, _> = tasks
        .iter()
        .filter_map(|t| t.ref_.clone().map(|r| (r, t)))
        .collect();
    let (id_key, name_key) = fmt.keys();
    for row in 1..=ROWS {
        let r = format!("{file_name}:{row}");
        let Some(t) = refs.get(&r) else {
            return Err(format!(
                "row {row} not stored under {r}: {:?}",
                tasks.first()
            ));
        };
        if t.data.get(id_key) != Some(&json!(row.to_string()))
            || t.data.get(name_key) != Some(&json!(name(row)))
        {
            return Err(format!("row {row} stored as {:?}", t.data));
        }
    }
    if tasks.len() != ROWS || refs.len() != ROWS {
        return Err(format!("{} tasks for {ROWS} rows", tasks.len()));
    }
    Ok(())
}

async fn retry_matrix(cases: &[(Enc, Fmt, Zip)], offset: usize, resume: bool) {
    let root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (k, &(enc, fmt, zip)) in cases.iter().enumerate() {
        if let Err(e) = retry_round_trip(offset + k, enc, fmt, zip, resume, root.path()).await {
            failures.push(format!("{enc:?} {fmt:?} {zip:?}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Every encoding × every format, uncompressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retry_file_loads_back_with_the_same_command_in_every_encoding() {
    let cases: Vec<_> = ENCODINGS
        .iter()
        .flat_map(|&e| FORMATS.iter().map(move |&f| (e, f, Zip::None)))
        .collect();
    retry_matrix(&cases, 0, false).await;
}

/// Every format × gzip and zstd (by the name, or gzip by `--compression`), in UTF-8,
/// UTF-16 with its mark and windows-1251.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compressed_retry_file_loads_back_with_the_same_command() {
    let cases: Vec<_> = [Zip::Gzip, Zip::Zstd, Zip::GzipFlag]
        .iter()
        .flat_map(|&z| {
            [Enc::Utf8, Enc::Utf16LeBom, Enc::Cp1251]
                .into_iter()
                .flat_map(move |e| FORMATS.iter().map(move |&f| (e, f, z)))
        })
        .collect();
    retry_matrix(&cases, 100, false).await;
}

/// A retry file a resume appended to (a JSON array reopened before its `]`, a new gzip
/// member or zstd frame, no second byte order mark or header) still loads back with the
/// same command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_file_appended_to_by_a_resume_loads_back_with_the_same_command() {
    let cases: Vec<_> = [Zip::None, Zip::GzipFlag, Zip::Zstd]
        .iter()
        .flat_map(|&z| {
            [Enc::Utf8Bom, Enc::Utf16LeBom, Enc::Utf16Be]
                .into_iter()
                .flat_map(move |e| FORMATS.iter().map(move |&f| (e, f, z)))
        })
        .collect();
    retry_matrix(&cases, 200, true).await;
}

/// The ids of the rows of a retry or ambiguous CSV file (header first).
fn csv_ids(p: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(p).unwrap();
    let mut ids: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

/// `--no-ref` through a server that fails requests before and after applying them: the
/// rows whose fate is unknown (`ambiguous`) go to their own file and never to the retry
/// file, the summary says to check them on the server; loading the retry file with the
/// same command then stores every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_rows_never_go_to_the_retry_file() {
    let sb = Sandbox::start(SandboxConfig {
        fail_before: 0.2,
        fail_after: 0.2,
        drop_after: 0.2,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let input = crate::recovery::make_csv(dir.path(), "amb.csv", n);
    let summary = dir.path().join("summary.json");
    let args = |input: &Path| -> Vec<String> {
        [
            s(input),
            "--conv-id",
            "555",
            "--no-ref",
            "--batch-size",
            "10",
        ]
        .iter()
        .chain(&["--max-attempts", "1", "--summary-json", s(&summary)])
        .map(|x| x.to_string())
        .collect()
    };
    let out = run(&sb.url(), &args(&input)).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = results(&dir.path().join("amb.results.ndjson"));
    let ids = |status: &str| {
        let mut v: Vec<u64> = lines
            .iter()
            .filter(|l| l["status"] == status)
            .map(|l| l["row"].as_u64().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    let (failed, ambiguous) = (ids("failed"), ids("ambiguous"));
    assert!(!failed.is_empty() && !ambiguous.is_empty(), "{out:?}");
    let retry = listed(&summary, "retry_files");
    assert_eq!(retry.len(), 1, "{out:?}");
    assert_eq!(
        csv_ids(&retry[0]),
        failed,
        "the retry file holds the failed rows only"
    );
    let amb = listed(&summary, "ambiguous_files");
    assert_eq!(amb.len(), 1, "{out:?}");
    assert_eq!(csv_ids(&amb[0]), ambiguous);
    assert!(
        out.stderr.contains(&amb[0].display().to_string()) && out.stderr.contains("check"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&format!(
        "retry file: {} (load it with the same command",
        amb[0].display()
    )));

    sb.heal();
    let out = run(&sb.url(), &args(&retry[0])).await;
    assert_eq!(out.code, 0, "{out:?}");
    let mut stored: Vec<u64> = sb
        .tasks()
        .iter()
        .map(|t| t.data["id"].as_str().unwrap().parse().unwrap())
        .collect();
    stored.sort_unstable();
    assert_eq!(
        stored,
        (1..=n as u64).collect::<Vec<_>>(),
        "every row exactly once"
    );
}

/// `--op raw`: a second create of one ref into one process is refused by the reader,
/// as a repeated `--ref-column` value is (its data would otherwise be lost as `exists`);
/// the same ref in another process, and a modify of it, still go. A resume still refuses
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ops_obey_the_one_ref_once_rule() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let create = |conv: u64, r: &str, n: u32| json!({"type":"create","obj":"task","conv_id":conv,"ref":r,"data":{"n":n}});
    let ops = [
        create(555, "r-1", 1),
        create(555, "r-2", 2),
        create(555, "r-1", 3),
        create(556, "r-1", 4),
        json!({"type":"modify","obj":"task","conv_id":555,"ref":"r-1","data":{"m":5}}),
        create(555, "r-2", 6),
    ];
    let input = dir.path().join("raw.ndjson");
    let text: String = ops.iter().map(|o| format!("{o}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let args: Vec<String> = [s(&input), "--op", "raw", "--conv-id", "555"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    let out = run(&sb.url(), &args).await;
    assert_eq!(out.code, 2, "{out:?}");
    let log = dir.path().join("raw.results.ndjson");
    let lines = results(&log);
    let rows = common::by_row(&lines);
    for r in [3, 6] {
        assert_eq!(rows[&r]["status"], "rejected", "{}", rows[&r]);
        assert!(rows[&r]["error"]
            .as_str()
            .unwrap()
            .contains("duplicate ref"));
    }
    assert_eq!(rows[&4]["status"], "created");
    assert_eq!(rows[&5]["status"], "modified");
    let tasks = sb.tasks();
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let in_555: Vec<_> = tasks.iter().filter(|t| t.conv_id == 555).cloned().collect();
    let refs = by_ref(&in_555);
    assert_eq!(
        Value::Object(refs["r-1"].data.clone()),
        json!({"n":1,"m":5})
    );
    assert_eq!(Value::Object(refs["r-2"].data.clone()), json!({"n":2}));

    // A crash after the first two rows: the resume still refuses the repeats.
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.starts_with(r#"{"row":1,"#) || l.starts_with(r#"{"row":2,"#))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(kept.len(), 3, "{text}");
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    let mut resume = args.clone();
    resume.push("--resume".into());
    let out = run(&sb.url(), &resume).await;
    assert_eq!(out.code, 2, "{out:?}");
    let rows_now = results(&log);
    let rows = common::by_row(&rows_now);
    for r in [3, 6] {
        assert_eq!(rows[&r]["status"], "rejected", "{}", rows[&r]);
    }
    assert_eq!(sb.tasks().len(), 3);
}

/// A user's file where the ambiguous file would go is refused before anything is sent,
/// and left as it was; czload's own (listed by the results log) is replaced by a re-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_file_at_the_ambiguous_path_is_never_touched() {
    let sb = Sandbox::start(SandboxConfig {
        fail_after: 1.0,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = crate::recovery::make_csv(dir.path(), "o.csv", 20);
    let mine = dir.path().join("o.ambiguous.csv");
    std::fs::write(&mine, "my notes\n").unwrap();
    let args: Vec<String> = [
        s(&input),
        "--conv-id",
        "555",
        "--no-ref",
        "--max-attempts",
        "1",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let out = run(&sb.url(), &args).await;
    assert_eq!(out.code, 2, "an output refused (docs/outputs.md): {out:?}");
    assert!(out.stderr.contains("o.ambiguous.csv"), "{}", out.stderr);
    assert_eq!(std::fs::read(&mine).unwrap(), b"my notes\n");
    assert_eq!(sb.stats().requests, 0);

    std::fs::remove_file(&mine).unwrap();
    let out = run(&sb.url(), &args).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(csv_ids(&mine).len(), 20, "every row ambiguous");
    let out = run(&sb.url(), &args).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(csv_ids(&mine).len(), 20, "replaced, not appended to");
}
