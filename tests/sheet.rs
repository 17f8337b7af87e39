//! XLSX and ODS input: what the server receives (cells of their types), `--sheet` by name
//! and position and the error for a missing one, a resumed run, `--shard`, the retry file
//! reloaded, stdin refused. The workbooks are made by the tests: XLSX with
//! rust_xlsxwriter, ODS written by hand (a zip of a few XML files).

use crate::common::*;
use czload::sandbox::{Sandbox, SandboxConfig};
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A workbook of two sheets: "Notes" (one row) first, then "Orders": a header, `n` rows
/// of every kind of cell, and a row left empty after the second.
fn write_xlsx(dir: &Path, n: u32) -> PathBuf {
    let p = dir.join("orders.xlsx");
    let mut wb = Workbook::new();
    let notes = wb.add_worksheet().set_name("Notes").unwrap();
    notes.write_string(0, 0, "about").unwrap();
    notes.write_string(1, 0, "not orders").unwrap();
    let orders = wb.add_worksheet().set_name("Orders").unwrap();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let stamp = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    for (c, h) in ["name", "qty", "price", "paid", "day", "at", "note"]
        .iter()
        .enumerate()
    {
        orders.write_string(0, c as u16, *h).unwrap();
    }
    for i in 1..=n {
        // Row 4 of the sheet is left empty: not a row.
        let r = if i >= 3 { i + 1 } else { i };
        orders.write_string(r, 0, format!("Item {i}")).unwrap();
        orders.write_number(r, 1, i as f64).unwrap();
        orders.write_number(r, 2, i as f64 + 0.5).unwrap();
        orders.write_boolean(r, 3, i % 2 == 0).unwrap();
        let day = ExcelDateTime::from_ymd(2024, 3, 1).unwrap();
        orders
            .write_datetime_with_format(r, 4, &day, &date)
            .unwrap();
        let at = ExcelDateTime::from_ymd(2024, 3, 1)
            .unwrap()
            .and_hms(12, 30, 0)
            .unwrap();
        orders
            .write_datetime_with_format(r, 5, &at, &stamp)
            .unwrap();
        // Column G (note) is empty but on the first row.
        if i == 1 {
            orders.write_string(r, 6, "first").unwrap();
        }
    }
    wb.save(&p).unwrap();
    p
}

/// An ODS workbook of one sheet "Data": a header, then rows of text, a float, a boolean,
/// a date and an empty cell.
fn write_ods(dir: &Path, rows: &[(&str, f64, bool, &str)]) -> PathBuf {
    let p = dir.join("people.ods");
    let cell = |kind: &str, attrs: &str, text: &str| {
        format!(
            r#"<table:table-cell office:value-type="{kind}" {attrs}><text:p>{text}</text:p></table:table-cell>"#
        )
    };
    let mut body = String::from("<table:table-row>");
    for h in ["name", "score", "active", "born", "nick"] {
        body.push_str(&cell("string", "", h));
    }
    body.push_str("</table:table-row>");
    for (name, score, active, born) in rows {
        body.push_str("<table:table-row>");
        body.push_str(&cell("string", "", name));
        body.push_str(&cell("float", &format!(r#"office:value="{score}""#), ""));
        body.push_str(&cell(
            "boolean",
            &format!(r#"office:boolean-value="{active}""#),
            "",
        ));
        body.push_str(&cell(
            "date",
            &format!(r#"office:date-value="{born}""#),
            born,
        ));
        body.push_str("<table:table-cell/></table:table-row>");
    }
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet><table:table table:name="Data">{body}</table:table></office:spreadsheet></office:body></office:document-content>"#
    );
    let manifest = r#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, text) in [
        ("mimetype", "application/vnd.oasis.opendocument.spreadsheet"),
        ("META-INF/manifest.xml", manifest),
        ("content.xml", content.as_str()),
    ] {
        zip.start_file(name, stored).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    p
}

/// The stored tasks' data by ref.
fn data_by_ref(sb: &Sandbox) -> std::collections::HashMap<String, Value> {
    by_ref(&sb.tasks())
        .into_iter()
        .map(|(r, t)| (r, Value::Object(t.data.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xlsx_sheet_loads_with_its_cells_types() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_xlsx(dir.path(), 3);
    let out = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--sheet", "Orders"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let data = data_by_ref(&sb);
    assert_eq!(data.len(), 3, "{data:?}");
    assert_eq!(
        data["orders.xlsx:1"],
        json!({"name": "Item 1", "qty": 1, "price": 1.5, "paid": false,
               "day": "2024-03-01", "at": "2024-03-01T12:30:00", "note": "first"})
    );
    // An empty cell is what CSV makes of one: "" by default.
    assert_eq!(data["orders.xlsx:2"]["note"], "");
    assert_eq!(data["orders.xlsx:2"]["paid"], true);
    let lines = results(&dir.path().join("orders.results.ndjson"));
    // The empty sheet row is no row; a row's line is its row in the sheet.
    let row3 = lines.iter().find(|l| l["row"] == 3).unwrap();
    assert_eq!(row3["line"], 5, "{row3}");

    // --empty omit leaves an empty cell out, as for CSV.
    let sb = sandbox().await;
    let log = dir.path().join("omit.ndjson");
    let args = [
        s(&input),
        "--conv-id",
        "555",
        "--sheet",
        "2",
        "--empty",
        "omit",
    ];
    let out = load(
        &sb.url(),
        &[&args[..], &["--results", s(&log)]].concat(),
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let data = data_by_ref(&sb);
    assert!(data["orders.xlsx:2"].get("note").is_none(), "{data:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheets_are_picked_by_name_or_position_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_xlsx(dir.path(), 2);
    // The first sheet by default, by name, by position.
    for (sheet, want) in [
        (None, "not orders"),
        (Some("Notes"), "not orders"),
        (Some("2"), "Item 1"),
    ] {
        let sb = sandbox().await;
        let mut args = vec![s(&input), "--conv-id", "555"];
        if let Some(sh) = sheet {
            args.extend(["--sheet", sh]);
        }
        let out = load(&sb.url(), &args, None).await;
        assert_eq!(out.code, 0, "{sheet:?}: {out:?}");
        let tasks = sb.tasks();
        let first = Value::Object(tasks[0].data.clone());
        assert!(first.to_string().contains(want), "{sheet:?}: {first}");
        std::fs::remove_file(dir.path().join("orders.results.ndjson")).unwrap();
    }
    for (sheet, want) in [
        (
            "Customers",
            r#"--sheet "Customers": no sheet of that name; its sheets are "Notes", "Orders""#,
        ),
        ("3", r#"--sheet 3: there are 2 sheets ("Notes", "Orders")"#),
    ] {
        let sb = sandbox().await;
        let out = load(
            &sb.url(),
            &[s(&input), "--conv-id", "555", "--sheet", sheet],
            None,
        )
        .await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains(s(&input)), "{}", out.stderr);
        assert!(out.stderr.contains(want), "{}", out.stderr);
        assert!(sb.tasks().is_empty());
        assert!(
            !dir.path().join("orders.results.ndjson").exists(),
            "no output touched"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ods_sheet_loads_with_its_cells_types() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_ods(
        dir.path(),
        &[
            ("Ann", 9.5, true, "1990-05-17"),
            ("Bob", 7.0, false, "1985-01-02"),
        ],
    );
    let out = load(&sb.url(), &[s(&input), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let data = data_by_ref(&sb);
    assert_eq!(
        data["people.ods:1"],
        json!({"name": "Ann", "score": 9.5, "active": true, "born": "1990-05-17", "nick": ""})
    );
    assert_eq!(data["people.ods:2"]["score"], 7);
    assert_eq!(data["people.ods:2"]["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sheet_row_goes_to_an_ndjson_retry_file_that_reloads_the_same_task() {
    let broken = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = write_xlsx(dir.path(), 3);
    let flags = [
        "--conv-id",
        "555",
        "--sheet",
        "Orders",
        "--max-attempts",
        "1",
    ];
    let out = load(&broken.url(), &[&[s(&input)][..], &flags].concat(), None).await;
    assert_eq!(out.code, 2, "{out:?}");
    let retry = dir.path().join("orders.retry.ndjson");
    let text = std::fs::read_to_string(&retry).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    // The same flags load it (--sheet applies to spreadsheets only), under the same refs
    // and with the same types.
    let sb = sandbox().await;
    let out = load(&sb.url(), &[&[s(&retry)][..], &flags].concat(), None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let data = data_by_ref(&sb);
    assert_eq!(data["orders.xlsx:1"]["qty"], 1);
    assert_eq!(data["orders.xlsx:3"]["day"], "2024-03-01");
    assert_eq!(data.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sheet_resumes_after_a_partial_run_and_shards_split_it() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let input = write_xlsx(dir.path(), n);
    let args = [s(&input), "--conv-id", "555", "--sheet", "Orders"];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    // As if the run had been killed after 15 rows were logged: a resume skips those and
    // sends the others again under their refs; the server has them (`exists`), and no
    // task is made twice.
    let log = dir.path().join("orders.results.ndjson");
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text.lines().take(16).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    let resumed = load(&sb.url(), &[&args[..], &["--resume"]].concat(), None).await;
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let lines = results(&log);
    let rows = by_row(&lines);
    assert_eq!(rows.len(), n as usize);
    for (row, l) in rows {
        let want = if row <= 15 { "created" } else { "exists" };
        assert_eq!(l["status"], want, "{l}");
    }
    assert_eq!(sb.tasks().len(), n as usize);
    // Another sheet is another input: refused.
    let other = load(
        &sb.url(),
        &[s(&input), "--conv-id", "555", "--resume"],
        None,
    )
    .await;
    assert_eq!(other.code, 1, "{other:?}");
    assert!(other.stderr.contains("--sheet Orders"), "{}", other.stderr);

    // Three shards load every row once between them.
    let sb = sandbox().await;
    for i in 0..3 {
        let shard = format!("{i}/3");
        let out = load(&sb.url(), &[&args[..], &["--shard", &shard]].concat(), None).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
    let data = data_by_ref(&sb);
    assert_eq!(data.len(), n as usize);
    for i in 1..=n {
        assert_eq!(data[&format!("orders.xlsx:{i}")]["qty"], i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sheet_from_stdin_is_refused() {
    let sb = sandbox().await;
    let out = load(
        &sb.url(),
        &["-", "--format", "xlsx", "--conv-id", "555"],
        Some(b"PK".to_vec()),
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("--format xlsx cannot be read from stdin"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_outside_the_header_rejects_its_row_naming_the_sheet_and_cell() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wide.xlsx");
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet().set_name("Wide").unwrap();
    ws.write_string(0, 0, "a").unwrap();
    ws.write_string(0, 1, "b").unwrap();
    ws.write_number(1, 0, 1).unwrap();
    ws.write_number(2, 0, 2).unwrap();
    ws.write_string(2, 3, "stray").unwrap();
    wb.save(&p).unwrap();
    let out = load(&sb.url(), &[s(&p), "--conv-id", "555"], None).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = results(&dir.path().join("wide.results.ndjson"));
    let row2 = lines.iter().find(|l| l["row"] == 2).unwrap();
    assert_eq!(row2["status"], "rejected", "{row2}");
    assert_eq!(
        row2["error"],
        r#"sheet "Wide", cell D3: a value outside the header's columns (A to B)"#
    );
    let data = data_by_ref(&sb);
    assert_eq!(data["wide.xlsx:1"], json!({"a": 1, "b": ""}));
}

/// Not a test: writes `CZLOAD_BIG_XLSX` (a path) with `CZLOAD_BIG_ROWS` rows (default
/// 1,000,000) of six columns, for measuring a load's peak memory (README, Spreadsheets):
/// `CZLOAD_BIG_XLSX=/tmp/big.xlsx cargo test --test integration make_big_xlsx -- --ignored`.
#[test]
#[ignore]
fn make_big_xlsx() {
    let Ok(path) = std::env::var("CZLOAD_BIG_XLSX") else {
        return;
    };
    let rows: u32 = std::env::var("CZLOAD_BIG_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut wb = Workbook::new();
    // Shared strings, as Excel writes them (calamine holds their table whole); with
    // `CZLOAD_BIG_INLINE` set, strings in the cells, to see the cell reader alone.
    let ws = if std::env::var_os("CZLOAD_BIG_INLINE").is_some() {
        wb.add_worksheet_with_constant_memory().unwrap()
    } else {
        wb.add_worksheet()
    };
    for (c, h) in ["id", "name", "city", "amount", "paid", "note"]
        .iter()
        .enumerate()
    {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for i in 1..=rows {
        ws.write_number(i, 0, i).unwrap();
        ws.write_string(i, 1, format!("Customer {i:07}")).unwrap();
        ws.write_string(i, 2, ["Kyiv", "Lviv", "Odesa", "Dnipro"][i as usize % 4])
            .unwrap();
        ws.write_number(i, 3, f64::from(i) * 1.25).unwrap();
        ws.write_boolean(i, 4, i % 3 == 0).unwrap();
        ws.write_string(i, 5, format!("order {i} of the year"))
            .unwrap();
    }
    wb.save(&path).unwrap();
}
