//! `--resume` against everything a user may change between a run and its resume: every
//! reading and mapping flag (changed: refused before any request, naming the flag in flag
//! syntax; unchanged: resumed with no row twice on the sandbox), and the input renamed,
//! moved, linked or spelt otherwise (resumed under the first run's refs). And
//! `merge-results` of shards read otherwise. Each case cuts the first run's log to its
//! first rows, as a crash would, so that the resume has rows to send.

use crate::common::{self, by_ref, load_command, s, Out, SECRET};
use std::path::{Path, PathBuf};

const ROWS: usize = 30;

/// Runs `czload load ARGS` in `cwd`.
async fn load_in(cwd: &Path, url: &str, args: &[String]) -> Out {
    let mut cmd = load_command(url, SECRET);
    cmd.args(args).current_dir(cwd);
    tokio::task::spawn_blocking(move || Out::from(cmd.output().expect("czload runs")))
        .await
        .unwrap()
}

/// Keeps the manifest and the first `keep` row lines of a results log: what a crash
/// after those rows leaves (no end line).
fn cut_log(log: &Path, keep: usize) {
    let text = std::fs::read_to_string(log).unwrap();
    let kept: Vec<&str> = text.lines().take(1 + keep).collect();
    assert!(kept.len() > keep, "{}: too few lines", log.display());
    std::fs::write(log, kept.join("\n") + "\n").unwrap();
}

fn csv_text(n: usize) -> String {
    let mut t = String::from("id,name,amount\n");
    for i in 1..=n {
        t.push_str(&format!("{i},Іван {i},{}.5\n", i % 7));
    }
    t
}

/// The input of a case: its file name and bytes.
fn input(kind: &str) -> (&'static str, Vec<u8>) {
    match kind {
        "csv" => ("m.csv", csv_text(ROWS).into_bytes()),
        "pipe" => (
            "p.csv",
            csv_text(ROWS)
                .replace(',', "|")
                .replace('.', ",")
                .into_bytes(),
        ),
        "cp1251" => {
            let text = csv_text(ROWS);
            (
                "w.csv",
                encoding_rs::WINDOWS_1251.encode(&text).0.into_owned(),
            )
        }
        "gzip" => {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
            e.write_all(csv_text(ROWS).as_bytes()).unwrap();
            ("data", e.finish().unwrap())
        }
        "array" => {
            let items: Vec<String> = (1..=ROWS)
                .map(|i| format!(r#"{{"id":"{i}","name":"n{i}","d":{{"k":{i}}}}}"#))
                .collect();
            (
                "a.json",
                format!("[\n{}\n]\n", items.join(",\n")).into_bytes(),
            )
        }
        "ndjson" => {
            let lines: String = (1..=ROWS)
                .map(|i| format!("{{\"id\":\"{i}\",\"d\":{{\"k\":{i}}}}}\n"))
                .collect();
            ("n.ndjson", lines.into_bytes())
        }
        _ => unreachable!("{kind}"),
    }
}

/// One flag changed between a run and its resume.
struct Case {
    input: &'static str,
    /// The flags of the first run (and of a resume that changes nothing).
    run: &'static [&'static str],
    /// The flags of a resume that changed one.
    changed: &'static [&'static str],
    /// What the refusal must say.
    says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        input: "cp1251",
        run: &["--encoding", "windows-1251"],
        changed: &["--encoding", "koi8-u"],
        says: "--encoding",
    },
    Case {
        input: "cp1251",
        run: &["--encoding", "windows-1251"],
        changed: &["--encoding", "iso-8859-5"],
        says: "--encoding",
    },
    Case {
        input: "pipe",
        run: &["--delimiter", "|"],
        changed: &["--delimiter", ";"],
        says: "--delimiter",
    },
    Case {
        input: "csv",
        run: &[],
        changed: &["--no-header"],
        says: "--no-header",
    },
    Case {
        input: "array",
        run: &[],
        changed: &["--format", "ndjson"],
        // The reading refuses this before the manifest is asked: the bytes are an array,
        // and the refusal names the flag that reads them (`--format json-array`).
        says: "--format json-array",
    },
    Case {
        input: "gzip",
        run: &["--format", "csv", "--compression", "gzip"],
        changed: &["--format", "csv", "--compression", "zstd"],
        says: "--compression zstd",
    },
    Case {
        input: "csv",
        run: &[],
        changed: &["--type", "amount:number"],
        says: "--type amount:number",
    },
    Case {
        input: "csv",
        run: &["--type", "id:integer"],
        changed: &["--type", "id:string"],
        says: "--type id:string",
    },
    Case {
        input: "csv",
        run: &["--set", "batch=1"],
        changed: &["--set", "batch=2"],
        says: "--set batch=2",
    },
    Case {
        input: "csv",
        run: &[],
        changed: &["--rename", "name:title"],
        says: "--rename name:title",
    },
    Case {
        input: "csv",
        run: &[],
        changed: &["--exclude", "amount"],
        says: "--exclude amount",
    },
    Case {
        input: "csv",
        run: &[],
        changed: &["--empty", "omit"],
        says: "--empty omit",
    },
    Case {
        input: "csv",
        run: &[],
        changed: &["--ref-template", "o-{id}"],
        says: "--ref-template o-{id}",
    },
    Case {
        input: "csv",
        run: &["--ref-column", "id"],
        changed: &["--ref-column", "name"],
        says: "--ref-column name",
    },
    Case {
        input: "csv",
        run: &["--no-ref"],
        changed: &[],
        says: "--no-ref",
    },
    Case {
        input: "csv",
        run: &["--ref-prefix", "first"],
        changed: &["--ref-prefix", "second"],
        says: "--ref-prefix second",
    },
    Case {
        input: "csv",
        run: &["--company-id", "c1"],
        changed: &["--company-id", "c2"],
        says: "--company-id c2",
    },
    Case {
        input: "csv",
        run: &[],
        changed: &["--max-task-bytes", "5000"],
        says: "--max-task-bytes 5000",
    },
    Case {
        input: "csv",
        run: &["--shard", "0/2"],
        changed: &["--shard", "1/2"],
        says: "--shard 1/2",
    },
    Case {
        input: "ndjson",
        run: &["--data-field", "d"],
        changed: &[],
        says: "--data-field",
    },
    Case {
        input: "csv",
        run: &["--conv-id", "555"],
        changed: &["--conv-id", "556"],
        says: "--conv-id 556",
    },
];

fn args(input: &Path, log: &Path, flags: &[&str]) -> Vec<String> {
    let mut a = vec![s(input).to_string(), "--results".into(), s(log).into()];
    if !flags.contains(&"--conv-id") {
        a.extend(["--conv-id".into(), common::CONV.to_string()]);
    }
    a.extend(flags.iter().map(|f| f.to_string()));
    a
}

/// Every reading and mapping flag, changed between a run and its resume: refused before
/// any request, the refusal naming the flag as it is typed; unchanged:
/// the resume finishes with no task stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_changed_on_resume_is_refused_in_flag_syntax() {
    let sb = common::sandbox().await;
    let root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (k, case) in CASES.iter().enumerate() {
        let dir = root.path().join(k.to_string());
        std::fs::create_dir(&dir).unwrap();
        let (name, bytes) = input(case.input);
        let file = dir.join(name);
        std::fs::write(&file, bytes).unwrap();
        let log = dir.join("log.ndjson");
        let first = load_in(&dir, &sb.url(), &args(&file, &log, case.run)).await;
        assert_eq!(first.code, 0, "case {k}: {first:?}");
        cut_log(&log, 5);
        let (requests, tasks) = (sb.stats().requests, sb.tasks().len());

        let mut changed = args(&file, &log, case.changed);
        changed.push("--resume".into());
        let out = load_in(&dir, &sb.url(), &changed).await;
        // Exit 1 (a refused resume), or 2 where the reading refuses flags its bytes
        // contradict.
        let refused = (out.code == 1 || out.code == 2)
            && out.stderr.contains(case.says)
            && !out.stderr.contains("[(")
            && sb.stats().requests == requests;
        if !refused {
            failures.push(format!(
                "case {k} ({:?} -> {:?}): exit {}, requests {} -> {}: {}",
                case.run,
                case.changed,
                out.code,
                requests,
                sb.stats().requests,
                out.stderr.trim()
            ));
            continue;
        }

        let mut same = args(&file, &log, case.run);
        same.push("--resume".into());
        let out = load_in(&dir, &sb.url(), &same).await;
        assert_eq!(out.code, 0, "case {k}: {out:?}");
        let sent_again = sb.tasks().len() - tasks;
        // Without refs, the rows the cut log lost are sent again (that is what --no-ref
        // means); with them, they come back `exists`.
        let expected = if case.run.contains(&"--no-ref") {
            ROWS - 5
        } else {
            0
        };
        assert_eq!(sent_again, expected, "case {k}: {out:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let with_refs: Vec<_> = sb
        .tasks()
        .into_iter()
        .filter(|t| t.ref_.is_some())
        .collect();
    by_ref(&with_refs);
}

/// How the input is found again at the resume.
#[derive(Debug, Clone, Copy)]
enum Moved {
    Renamed,
    OtherFolder,
    Symlink,
    HardLink,
    Relative,
    Dotted,
}

/// The input renamed, moved, linked or named by another path between a run and its
/// resume (same log): the resume sends the rows the crash left under the refs the first
/// run gave them, so none is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_moved_or_linked_input_resumes_under_the_first_runs_refs() {
    let sb = common::sandbox().await;
    let root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (k, how) in [
        Moved::Renamed,
        Moved::OtherFolder,
        Moved::Symlink,
        Moved::HardLink,
        Moved::Relative,
        Moved::Dotted,
    ]
    .into_iter()
    .enumerate()
    {
        let dir = root.path().join(k.to_string());
        std::fs::create_dir(&dir).unwrap();
        let name = format!("in{k}.csv");
        let file = dir.join(&name);
        std::fs::write(&file, csv_text(ROWS)).unwrap();
        let log = dir.join("log.ndjson");
        let out = load_in(&dir, &sb.url(), &args(&file, &log, &[])).await;
        assert_eq!(out.code, 0, "{how:?}: {out:?}");
        cut_log(&log, 5);
        let again: PathBuf = match how {
            Moved::Renamed => {
                let to = dir.join("renamed.csv");
                std::fs::rename(&file, &to).unwrap();
                to
            }
            Moved::OtherFolder => {
                std::fs::create_dir(dir.join("sub")).unwrap();
                let to = dir.join("sub").join("other.csv");
                std::fs::rename(&file, &to).unwrap();
                to
            }
            Moved::Symlink => {
                let to = dir.join("link.csv");
                std::os::unix::fs::symlink(&file, &to).unwrap();
                to
            }
            Moved::HardLink => {
                let to = dir.join("hard.csv");
                std::fs::hard_link(&file, &to).unwrap();
                to
            }
            Moved::Relative => PathBuf::from(&name),
            Moved::Dotted => Path::new(".").join("sub").join("..").join(&name),
        };
        if matches!(how, Moved::Dotted) {
            std::fs::create_dir(dir.join("sub")).unwrap();
        }
        let mut a = args(&again, &log, &[]);
        a.push("--resume".into());
        let out = load_in(&dir, &sb.url(), &a).await;
        // Every first-run name starts with `in`; a task under any other ref is a row
        // stored twice.
        let foreign = sb
            .tasks()
            .iter()
            .filter(|t| t.ref_.as_deref().is_some_and(|r| !r.starts_with("in")))
            .count();
        if out.code != 0 || foreign > 0 {
            failures.push(format!(
                "{how:?}: exit {}, {foreign} tasks under new refs: {}",
                out.code,
                out.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let tasks = sb.tasks();
    let refs = by_ref(&tasks);
    assert_eq!(tasks.len(), 6 * ROWS, "one task per row of each case");
    for k in 0..6 {
        for row in 1..=ROWS {
            let t = refs[&format!("in{k}.csv:{row}")];
            assert_eq!(t.data["id"], row.to_string());
        }
    }
}

/// `--ref-prefix` names the refs of a renamed file: a plain re-run of it under its old
/// name finds every row loaded (`exists`); given to a resume against the log's, it is
/// refused naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_prefix_keeps_a_renamed_files_refs() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.csv");
    std::fs::write(&file, csv_text(ROWS)).unwrap();
    let log = dir.path().join("log.ndjson");
    let out = load_in(dir.path(), &sb.url(), &args(&file, &log, &[])).await;
    assert_eq!(out.code, 0, "{out:?}");
    let to = dir.path().join("orders-2024.csv");
    std::fs::rename(&file, &to).unwrap();
    let log2 = dir.path().join("log2.ndjson");
    let a = args(&to, &log2, &["--ref-prefix", "orders.csv"]);
    let out = load_in(dir.path(), &sb.url(), &a).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sb.tasks().len(), ROWS, "nothing stored twice");
    assert!(common::results(&log2)
        .iter()
        .all(|l| l["status"] == "exists"));
    let mut a = args(&to, &log, &["--ref-prefix", "orders-2024.csv"]);
    a.push("--resume".into());
    let out = load_in(dir.path(), &sb.url(), &a).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--ref-prefix"), "{}", out.stderr);
}

/// `merge-results` refuses the shards of one file read under two encodings, naming the
/// flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_results_refuses_shards_read_otherwise() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (name, bytes) = input("cp1251");
    let file = dir.path().join(name);
    std::fs::write(&file, bytes).unwrap();
    let mut logs = Vec::new();
    for (i, enc) in [(0, "windows-1251"), (1, "koi8-u")] {
        let log = dir.path().join(format!("s{i}.ndjson"));
        let shard = format!("{i}/2");
        let a = args(&file, &log, &["--shard", &shard, "--encoding", enc]);
        let out = load_in(dir.path(), &sb.url(), &a).await;
        assert_eq!(out.code, 0, "{out:?}");
        logs.push(log);
    }
    let merged = dir.path().join("merged.ndjson");
    let out = crate::common::czload()
        .arg("merge-results")
        .args(&logs)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    let out = Out::from(out);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--encoding"), "{}", out.stderr);
    assert!(!merged.exists());
    drop(sb);
}

/// A new file under the name of one an earlier run loaded gets the same generated refs:
/// its rows would come back `exists` with the old data. The run says so (naming
/// `--ref-prefix`); a file that only grew, or a `--ref-prefix` given, is not warned of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_under_an_old_name_is_warned_of() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.csv");
    std::fs::write(&file, csv_text(5)).unwrap();
    let log = dir.path().join("log.ndjson");
    let out = load_in(dir.path(), &sb.url(), &args(&file, &log, &[])).await;
    assert_eq!(out.code, 0, "{out:?}");

    // Grown: its new rows load, no warning.
    std::fs::write(&file, csv_text(8)).unwrap();
    let out = load_in(dir.path(), &sb.url(), &args(&file, &log, &[])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("does not begin"), "{}", out.stderr);
    assert_eq!(sb.tasks().len(), 8);

    // Replaced by another export of that name.
    std::fs::write(&file, csv_text(8).replace("Іван", "Петро")).unwrap();
    let out = load_in(dir.path(), &sb.url(), &args(&file, &log, &[])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("does not begin as that one did")
            && out.stderr.contains("--ref-prefix export.csv-2"),
        "{}",
        out.stderr
    );
    let a = args(&file, &log, &["--ref-prefix", "export.csv-2"]);
    let out = load_in(dir.path(), &sb.url(), &a).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("does not begin"), "{}", out.stderr);
    assert_eq!(sb.tasks().len(), 16, "the new export stored under new refs");
}
