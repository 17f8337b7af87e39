//! Reading that checks itself (docs/architecture.md, Reading that checks itself): every
//! reading flag against files whose own bytes say how they are to be read. Each run is
//! either refused before any request (exit 2, naming the flags that read the file), or
//! reads the file right; no run ever stores a task whose data differs from the file's.

use crate::common::{load, results, s, sandbox};
use czload::sandbox::Sandbox;
use serde_json::{json, Value};
use std::path::Path;

/// A file's rows as they are meant: id, name (holding the delimiter, quoted), sum.
fn rows() -> Vec<Value> {
    vec![
        json!({"id": "1", "name": "Ірина Шевченко", "sum": 12.5}),
        json!({"id": "2", "name": "Пётр{d} Ёжик", "sum": 3}),
    ]
}

/// One byte pattern: how the file is written, which is the reading that reads it.
struct Pattern {
    name: &'static str,
    encoding: &'static str,
    delimiter: char,
    decimal_comma: bool,
    crlf: bool,
}

const PATTERNS: [Pattern; 6] = [
    // Excel in a Ukrainian or Russian locale.
    Pattern {
        name: "excel_ru",
        encoding: "windows-1251",
        delimiter: ';',
        decimal_comma: true,
        crlf: true,
    },
    Pattern {
        name: "semicolon_utf8",
        encoding: "utf-8",
        delimiter: ';',
        decimal_comma: true,
        crlf: false,
    },
    Pattern {
        name: "utf16le_nobom",
        encoding: "utf-16le",
        delimiter: ',',
        decimal_comma: false,
        crlf: true,
    },
    Pattern {
        name: "utf16be_tabs",
        encoding: "utf-16be",
        delimiter: '\t',
        decimal_comma: false,
        crlf: false,
    },
    Pattern {
        name: "plain_utf8",
        encoding: "utf-8",
        delimiter: ',',
        decimal_comma: false,
        crlf: false,
    },
    Pattern {
        name: "cp1251_commas",
        encoding: "windows-1251",
        delimiter: ',',
        decimal_comma: false,
        crlf: false,
    },
];

impl Pattern {
    fn text(&self) -> String {
        let d = self.delimiter;
        let nl = if self.crlf { "\r\n" } else { "\n" };
        let sum = if self.decimal_comma { "12,50" } else { "12.50" };
        format!("id{d}name{d}sum{nl}1{d}Ірина Шевченко{d}{sum}{nl}2{d}\"Пётр{d} Ёжик\"{d}3{nl}")
    }

    fn bytes(&self) -> Vec<u8> {
        let text = self.text();
        match self.encoding {
            "utf-16le" => text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
            "utf-16be" => text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect(),
            label => {
                let enc = encoding_rs::Encoding::for_label(label.as_bytes()).unwrap();
                enc.encode(&text).0.into_owned()
            }
        }
    }

    fn delimiter_flag(&self) -> String {
        if self.delimiter == '\t' {
            "--delimiter '\\t'".into()
        } else {
            format!("--delimiter '{}'", self.delimiter)
        }
    }

    /// The rows as the server must hold them.
    fn want(&self) -> Vec<Value> {
        rows()
            .into_iter()
            .map(|mut r| {
                let name = r["name"]
                    .as_str()
                    .unwrap()
                    .replace("{d}", &self.delimiter.to_string());
                r["name"] = name.into();
                r
            })
            .collect()
    }
}

/// The reading flags of one run: `None` leaves the flag out.
#[derive(Debug, Clone, Copy)]
struct Flags {
    encoding: Option<&'static str>,
    delimiter: Option<&'static str>,
    decimal_comma: bool,
    no_header: bool,
}

impl Flags {
    fn args(&self) -> Vec<&'static str> {
        let mut a = vec!["--type", "sum:number"];
        if let Some(e) = self.encoding {
            a.extend(["--encoding", e]);
        }
        if let Some(d) = self.delimiter {
            a.extend(["--delimiter", d]);
        }
        if self.decimal_comma {
            a.push("--decimal-comma");
        }
        if self.no_header {
            a.push("--no-header");
        }
        a
    }

    /// The reading flags whose value differs from the pattern's, as the refusal names them.
    fn wrong(&self, p: &Pattern) -> Vec<String> {
        let mut w = Vec::new();
        if self.encoding.unwrap_or("utf-8") != p.encoding {
            w.push(format!("--encoding {}", p.encoding));
        }
        let d = match self.delimiter.unwrap_or(",") {
            "\\t" => '\t',
            d => d.chars().next().unwrap(),
        };
        if d != p.delimiter {
            w.push(p.delimiter_flag());
        }
        w
    }
}

/// Runs one combination and checks the promise; returns a line describing a breach.
async fn one(
    sb: &Sandbox,
    dir: &Path,
    p: &Pattern,
    f: Flags,
    n: usize,
    stdin: bool,
) -> Option<String> {
    let file = dir.join(format!("{}_{n}.csv", p.name));
    std::fs::write(&file, p.bytes()).unwrap();
    let mut args = vec![if stdin { "-" } else { s(&file) }, "--conv-id", "555"];
    // Stdin's refs as the file's would be.
    let template = format!("{}_{n}.csv:{{id}}", p.name);
    let log = dir.join(format!("stdin_{n}.results.ndjson"));
    if stdin {
        args.extend([
            "--format",
            "csv",
            "--ref-template",
            &template,
            "--results",
            s(&log),
        ]);
    }
    args.extend(f.args());
    let before = sb.stats().requests;
    let out = load(&sb.url(), &args, stdin.then(|| p.bytes())).await;
    let sent = sb.stats().requests - before;
    let mut wrong = f.wrong(p);
    // Reading 1251 bytes as UTF-8 because the user said so: the rows are rejected one by
    // one (named, exit 2), which is not a reading the bytes refute (`sniff`).
    let said_utf8 = f.encoding == Some("utf-8") && p.encoding == "windows-1251";
    if said_utf8 {
        wrong.retain(|w| !w.starts_with("--encoding"));
    }
    let case = format!("{} {args:?}: {out:?}", p.name);
    if !wrong.is_empty() {
        let named = wrong.iter().all(|w| out.stderr.contains(w.as_str()));
        if out.code != 2 || sent != 0 || !named {
            return Some(format!("not refused naming {wrong:?}, sent {sent}: {case}"));
        }
        return None;
    }
    if f.no_header {
        // The header read as a row: `sum` names no column, so nothing starts.
        return (out.code != 1 || sent != 0).then(|| format!("--no-header: {case}"));
    }
    // Read right, or rows rejected one by one: every stored task is the file's.
    let prefix = format!("{}_{n}.csv:", p.name);
    let want = p.want();
    let mut stored = 0;
    let tasks = sb.tasks();
    for t in tasks
        .iter()
        .filter(|t| t.ref_.as_deref().unwrap_or("").starts_with(&prefix))
    {
        let r = t.ref_.as_deref().unwrap();
        let row: usize = r.rsplit(':').next().unwrap().parse().unwrap();
        if Value::Object(t.data.clone()) != want[row - 1] {
            return Some(format!("stored {:?} for row {row}: {case}", t.data));
        }
        stored += 1;
    }
    let all = f.decimal_comma == p.decimal_comma && !said_utf8;
    if all && (out.code != 0 || stored != 2) || !all && out.code != 2 {
        return Some(format!("exit {}, {stored} stored: {case}", out.code));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_flag_on_every_byte_pattern_is_refused_or_read_right() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let encodings = [
        None,
        Some("utf-8"),
        Some("utf-16le"),
        Some("utf-16be"),
        Some("windows-1251"),
    ];
    let delimiters = [None, Some(","), Some(";"), Some("\\t")];
    let mut breaches = Vec::new();
    let mut n = 0;
    for p in &PATTERNS {
        let mut combos = Vec::new();
        for encoding in encodings {
            for delimiter in delimiters {
                for decimal_comma in [false, true] {
                    combos.push(Flags {
                        encoding,
                        delimiter,
                        decimal_comma,
                        no_header: false,
                    });
                }
            }
        }
        // The header flag, with no other flag and with the right ones.
        let right = Flags {
            encoding: Some(p.encoding),
            delimiter: Some(match p.delimiter {
                ',' => ",",
                ';' => ";",
                _ => "\\t",
            }),
            decimal_comma: p.decimal_comma,
            no_header: true,
        };
        combos.push(right);
        combos.push(Flags {
            encoding: None,
            delimiter: None,
            decimal_comma: false,
            no_header: true,
        });
        for f in combos {
            n += 1;
            breaches.extend(one(&sb, dir.path(), p, f, n, false).await);
        }
        // Stdin: the same check on its first read.
        for f in [
            Flags {
                no_header: false,
                ..right
            },
            Flags {
                encoding: None,
                delimiter: None,
                decimal_comma: false,
                no_header: false,
            },
        ] {
            n += 1;
            breaches.extend(one(&sb, dir.path(), p, f, n, true).await);
        }
    }
    assert!(
        breaches.is_empty(),
        "{} of {n} runs:\n{}",
        breaches.len(),
        breaches.join("\n")
    );
}

/// The refusal names the flags; loading with exactly them stores the right keys and
/// numbers: Excel's `;`, windows-1251, CRLF and decimal commas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excel_export_in_a_cyrillic_locale_loads_with_the_flags_the_refusal_names() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("excel.csv");
    let text = "Код;Имя;Сумма\r\n1;Ирина;12,50\r\n2;\"Пётр; Ёжик\";1234,5\r\n3;Ганна;1,234,5\r\n";
    let bytes = encoding_rs::WINDOWS_1251.encode(text).0.into_owned();
    std::fs::write(&file, &bytes).unwrap();
    let base = [
        s(&file),
        "--conv-id",
        "555",
        "--type",
        "Сумма:number",
        "--decimal-comma",
    ];
    let out = load(&sb.url(), &base, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(sb.stats().requests, 0, "nothing sent");
    assert!(
        !dir.path().join("excel.results.ndjson").exists(),
        "no output written"
    );
    let said = out
        .stderr
        .split("to read it, pass ")
        .nth(1)
        .expect("flags named")
        .trim();
    assert_eq!(said, "--encoding windows-1251 --delimiter ';'");
    // The flags as a shell would pass them.
    let mut args = base.to_vec();
    args.extend(["--encoding", "windows-1251", "--delimiter", ";"]);
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 2, "the ambiguous row is rejected: {out:?}");
    let tasks = sb.tasks();
    let data = |r: &str| {
        Value::Object(
            tasks
                .iter()
                .find(|t| t.ref_.as_deref() == Some(r))
                .unwrap()
                .data
                .clone(),
        )
    };
    assert_eq!(
        data("excel.csv:1"),
        json!({"Код": "1", "Имя": "Ирина", "Сумма": 12.5})
    );
    assert_eq!(
        data("excel.csv:2"),
        json!({"Код": "2", "Имя": "Пётр; Ёжик", "Сумма": 1234.5})
    );
    assert_eq!(tasks.len(), 2);
    let lines = results(&dir.path().join("excel.results.ndjson"));
    let bad = lines.iter().find(|l| l["row"] == 3).unwrap();
    assert_eq!(bad["status"], "rejected");
    assert!(
        bad["error"].as_str().unwrap().contains("more than one ','"),
        "{bad}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "the input is untouched"
    );
}

/// A format the bytes deny, by flag or by extension; and what the JSON readers accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_the_bytes_deny_are_refused_and_json_arrays_reject_what_ndjson_rejects() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "{\"a\":1}\n{\"a\":2}\n").unwrap();
    let nd = dir.path().join("rows.ndjson");
    std::fs::write(&nd, "id,name\n1,Ann\n").unwrap();
    for (args, says) in [
        (vec![s(&csv)], "--format ndjson"),
        (vec![s(&nd)], "--format csv"),
        (vec![s(&nd), "--format", "ndjson"], "--format csv"),
        (vec![s(&csv), "--format", "json-array"], "`[`"),
    ] {
        let mut a = args.clone();
        a.extend(["--conv-id", "555"]);
        let out = load(&sb.url(), &a, None).await;
        assert_ne!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains(says), "{says} in {out:?}");
    }
    assert_eq!(sb.stats().requests, 0);

    // A raw line feed and a raw tab inside a string are invalid JSON: rejected, named by
    // row and line, in a JSON array as in NDJSON; the other rows load.
    let arr = dir.path().join("a.json");
    std::fs::write(
        &arr,
        "[{\"id\":\"1\",\"t\":\"x\ny\"},\n{\"id\":\"2\",\"t\":\"a\tb\"},\n{\"id\":\"3\"}]\n",
    )
    .unwrap();
    let lines = dir.path().join("a.ndjson");
    std::fs::write(&lines, "{\"id\":\"2\",\"t\":\"a\tb\"}\n{\"id\":\"3\"}\n").unwrap();
    for (file, bad_rows) in [(&arr, vec![1, 2]), (&lines, vec![1])] {
        let out = load(
            &sb.url(),
            &[s(file), "--conv-id", "555", "--ref-column", "id"],
            None,
        )
        .await;
        assert_eq!(out.code, 2, "{out:?}");
        let log = file.with_extension("results.ndjson");
        for l in results(&log) {
            let bad = bad_rows.contains(&l["row"].as_u64().unwrap());
            assert_eq!(l["status"] == "rejected", bad, "{l}");
        }
    }
    assert!(
        sb.tasks().iter().all(|t| t.data.get("t").is_none()),
        "{:?}",
        sb.tasks()
    );
}

/// `--rename a:b` onto a line that has `b`: rejected naming the flag (CSV refuses the
/// same rename from its header), never sent with the key twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_onto_a_field_the_line_has_is_rejected() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let nd = dir.path().join("r.ndjson");
    std::fs::write(&nd, "{\"a\":1,\"b\":2}\n{\"a\":3}\n{\"b\":4,\"c\":5}\n").unwrap();
    let out = load(
        &sb.url(),
        &[s(&nd), "--conv-id", "555", "--rename", "a:b"],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let log = results(&dir.path().join("r.results.ndjson"));
    let first = log.iter().find(|l| l["row"] == 1).unwrap();
    assert_eq!(first["status"], "rejected");
    assert!(
        first["error"].as_str().unwrap().contains("--rename a:b"),
        "{first}"
    );
    let mut got: Vec<Value> = sb
        .tasks()
        .iter()
        .map(|t| Value::Object(t.data.clone()))
        .collect();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, [json!({"b": 3}), json!({"b": 4, "c": 5})]);
    // Renaming `b` away too frees the name.
    let two = dir.path().join("two.ndjson");
    std::fs::write(&two, "{\"a\":1,\"b\":2}\n").unwrap();
    let args = [
        s(&two),
        "--conv-id",
        "555",
        "--rename",
        "a:b",
        "--rename",
        "b:c",
    ];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let t = sb
        .tasks()
        .into_iter()
        .find(|t| t.ref_.as_deref() == Some("two.ndjson:1"));
    assert_eq!(Value::Object(t.unwrap().data), json!({"b": 1, "c": 2}));
    let csv = dir.path().join("r.csv");
    std::fs::write(&csv, "a,b\n1,2\n").unwrap();
    let out = load(
        &sb.url(),
        &[s(&csv), "--conv-id", "555", "--rename", "a:b"],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "CSV refuses it from the header: {out:?}");
}

/// The JSON formats and CSV in each other's files, in each encoding: `(file, encoding,
/// format)` that reads it, and its text.
const JSON_PATTERNS: [(&str, &str, &str, &str); 6] = [
    ("u16.ndjson", "utf-16le", "ndjson", ND),
    ("cp.ndjson", "windows-1251", "ndjson", ND),
    ("plain.ndjson", "utf-8", "ndjson", ND),
    ("arr.json", "utf-8", "json-array", ARRAY),
    ("csv_in.ndjson", "utf-8", "csv", CSV),
    ("nd_in.csv", "utf-8", "ndjson", ND),
];
const ND: &str = "{\"id\":\"1\",\"name\":\"Ірина\"}\n{\"id\":\"2\",\"name\":\"Пётр\"}\n";
const ARRAY: &str = "[{\"id\":\"1\",\"name\":\"Ірина\"},\n{\"id\":\"2\",\"name\":\"Пётр\"}]\n";
const CSV: &str = "id,name\n1,Ірина\n2,Пётр\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encoding_and_format_flag_on_json_and_misnamed_files_is_refused_or_read_right() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut breaches = Vec::new();
    let mut n = 0;
    for (file, encoding, format, text) in JSON_PATTERNS {
        let by_ext = if file.ends_with(".json") {
            "json-array"
        } else if file.ends_with(".csv") {
            "csv"
        } else {
            "ndjson"
        };
        let bytes: Vec<u8> = match encoding {
            "utf-16le" => text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
            "windows-1251" => encoding_rs::WINDOWS_1251.encode(text).0.into_owned(),
            _ => text.as_bytes().to_vec(),
        };
        for enc in [None, Some("utf-8"), Some("utf-16le"), Some("windows-1251")] {
            for fmt in [None, Some("csv"), Some("ndjson"), Some("json-array")] {
                n += 1;
                let name = format!("{n}_{file}");
                let path = dir.path().join(&name);
                std::fs::write(&path, &bytes).unwrap();
                let mut args = vec![s(&path), "--conv-id", "555"];
                if let Some(e) = enc {
                    args.extend(["--encoding", e]);
                }
                if let Some(f) = fmt {
                    args.extend(["--format", f]);
                }
                let mut wrong = Vec::new();
                let said_utf8 = enc == Some("utf-8") && encoding == "windows-1251";
                if enc.unwrap_or("utf-8") != encoding && !said_utf8 {
                    wrong.push(format!("--encoding {encoding}"));
                }
                if fmt.unwrap_or(by_ext) != format {
                    wrong.push(format!("--format {format}"));
                }
                let before = sb.stats().requests;
                let out = load(&sb.url(), &args, None).await;
                let sent = sb.stats().requests - before;
                let case = format!("{args:?}: {out:?}");
                if !wrong.is_empty() {
                    let named = wrong.iter().all(|w| out.stderr.contains(w.as_str()));
                    if out.code != 2 || sent != 0 || !named {
                        breaches.push(format!("not refused naming {wrong:?}: {case}"));
                    }
                    continue;
                }
                let tasks = sb.tasks();
                let mine: Vec<_> = tasks
                    .iter()
                    .filter(|t| {
                        t.ref_
                            .as_deref()
                            .unwrap_or("")
                            .starts_with(&format!("{name}:"))
                    })
                    .collect();
                for t in &mine {
                    let row: usize = t
                        .ref_
                        .as_deref()
                        .unwrap()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let want = [
                        json!({"id": "1", "name": "Ірина"}),
                        json!({"id": "2", "name": "Пётр"}),
                    ];
                    if Value::Object(t.data.clone()) != want[row - 1] {
                        breaches.push(format!("stored {:?}: {case}", t.data));
                    }
                }
                let all = !said_utf8;
                if all && (out.code != 0 || mine.len() != 2) || !all && out.code != 2 {
                    breaches.push(format!("exit {}, {} stored: {case}", out.code, mine.len()));
                }
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "{} of {n} runs:\n{}",
        breaches.len(),
        breaches.join("\n")
    );
}
