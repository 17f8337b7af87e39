//! The HTML report (`load --report`, `czload report`), drawn by headless Chromium when it
//! is installed; the progress display under a pseudo-terminal of 80 columns and as JSON
//! lines; completions and the man page.

use crate::common::{self, load, s};
use czload::sandbox::{RpsMode, Sandbox, SandboxConfig};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `n` rows with an integer column `n`; every 97th row's is not an integer.
fn csv_with_bad_rows(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut text = String::from("id,n,name\n");
    for i in 0..n {
        let v = if i % 97 == 5 {
            format!("x{i}")
        } else {
            i.to_string()
        };
        text.push_str(&format!("r{i},{v},name {i}\n"));
    }
    let p = dir.join("rows.csv");
    std::fs::write(&p, text).unwrap();
    p
}

fn czload(args: &[&str]) -> common::Out {
    crate::common::czload()
        .args(args)
        .output()
        .expect("czload runs")
        .into()
}

/// Headless Chromium, when installed: the page's DOM after load, and a screenshot.
fn chromium(page: &Path, png: &Path) -> Option<(String, String)> {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())?;
    let url = format!("file://{}", page.display());
    let base = [
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--allow-file-access-from-files",
    ];
    let dom = Command::new(bin)
        .args(base)
        .args(["--dump-dom", &url])
        .output()
        .expect("chromium runs");
    let shot = Command::new(bin)
        .args(base)
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1100,2000", &url])
        .output()
        .expect("chromium runs");
    assert!(shot.status.success(), "{shot:?}");
    Some((
        String::from_utf8_lossy(&dom.stdout).into_owned(),
        String::from_utf8_lossy(&dom.stderr).into_owned() + &String::from_utf8_lossy(&shot.stderr),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_run_with_bad_rows_makes_a_report_that_chromium_draws() {
    let sb = Sandbox::start(SandboxConfig {
        rps: Some(6000),
        rps_mode: RpsMode::Request,
        fail_before: 0.02,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    let input = csv_with_bad_rows(dir.path(), n);
    let report = dir.path().join("report.html");
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id",
            "555",
            "--type",
            "n:integer",
            "--report",
            s(&report),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines = common::results_and_runs(&dir.path().join("rows.results.ndjson"));
    // One line per row, then the run's line.
    assert_eq!(lines.len(), n + 1);
    let run = &lines[n]["run"];
    assert!(run["throttled"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(run["rate"]["asked"], "auto");
    let sent: Vec<&Value> = lines[..n].iter().filter(|l| l["attempts"] != 0).collect();
    assert!(sent.iter().all(|l| l["ms"].is_u64() && l["t"].is_u64()));
    assert!(sent.iter().any(|l| l["throttled"].as_u64() > Some(0)));
    let bad = lines[..n]
        .iter()
        .filter(|l| l["status"] == "rejected")
        .count();
    assert_eq!(bad, (0..n).filter(|i| i % 97 == 5).count());

    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.len() < 2 << 20, "{} bytes", html.len());
    for what in [
        "<svg id=\"rows-chart\"",
        "<svg id=\"latency-chart\"",
        "class=\"mark\"",
        "limit found",
        &format!("<td class=\"n\">{bad}</td>"),
        "column &quot;n&quot;: &quot;…&quot; is not an integer",
        "line 7, line 104",
    ] {
        assert!(html.contains(what), "{what} not in the report");
    }
    // Self-contained: nothing is fetched when it opens.
    for what in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(what), "{what} in the report");
    }

    // The same report from the results log alone.
    let again = dir.path().join("again.html");
    let out = czload(&[
        "report",
        s(&dir.path().join("rows.results.ndjson")),
        "-o",
        s(&again),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), html);

    let png = dir.path().join("report.png");
    let Some((dom, log)) = chromium(&report, &png) else {
        eprintln!("SKIPPED: chromium is not installed; the report was not drawn in a browser (apt-get install chromium)");
        return;
    };
    assert!(!log.contains("Page load failed"), "{log}");
    for id in ["rows-chart", "latency-chart", "counts", "rejections"] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "{id} not drawn: {dom:.300}"
        );
    }
    // The rows chart stacks its three statuses.
    let rows_chart = &dom[dom.find("<svg id=\"rows-chart\"").unwrap()..];
    let rows_chart = &rows_chart[..rows_chart.find("</svg>").unwrap()];
    assert_eq!(
        rows_chart.matches("class=\"area\"").count(),
        3,
        "{dom:.300}"
    );
    assert!(dom.contains("id=\"outcomes-chart\""), "{dom:.300}");
    let shot = std::fs::read(&png).unwrap();
    assert!(
        shot.starts_with(b"\x89PNG") && shot.len() > 20_000,
        "{} bytes",
        shot.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_without_the_report_fields_still_resumes_and_still_reports() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = csv_with_bad_rows(dir.path(), 300);
    let log = dir.path().join("rows.results.ndjson");
    let args = [s(&input), "--conv-id", "555", "--type", "n:integer"];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    // As an older czload wrote it: no ms, throttled or t, no run line; and it crashed
    // before its last 100 rows were logged.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut old: Vec<String> = Vec::new();
    for l in text.lines() {
        let mut v: Value = serde_json::from_str(l).unwrap();
        if v.get("run").is_some() || v.get("end").is_some() {
            continue;
        }
        if let Some(o) = v.as_object_mut() {
            for k in ["ms", "throttled", "t"] {
                o.remove(k);
            }
        }
        old.push(v.to_string());
    }
    old.truncate(old.len() - 100);
    std::fs::write(&log, old.join("\n") + "\n").unwrap();

    let out = load(&sb.url(), &[&args[..], &["--resume"]].concat(), None).await;
    assert_eq!(out.code, 2, "{out:?}");
    // Only the 100 rows not logged were sent again: each ref once.
    common::by_ref(&sb.tasks());
    let lines = common::results_and_runs(&log);
    assert_eq!(lines.len(), 300 + 1);
    assert_eq!(lines.iter().filter(|l| l["t"].is_u64()).count(), 100);

    let report = dir.path().join("r.html");
    let out = czload(&["report", s(&log), "-o", s(&report)]);
    assert_eq!(out.code, 0, "{out:?}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("200 rows were logged without a time"),
        "{html:.2000}"
    );
    // Not a results log: said with the file and what to pass.
    let out = czload(&["report", s(&input), "-o", s(&report)]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("rows.csv") && out.stderr.contains("--results"),
        "{out:?}"
    );
    // The report never replaces the log it reads.
    let out = czload(&["report", s(&log), "-o", s(&log)]);
    assert_eq!(out.code, 2, "an output refused (docs/outputs.md)");
    assert!(
        out.stderr.contains("-o") && out.stderr.contains("is the input"),
        "{out:?}"
    );
    assert_eq!(common::results_and_runs(&log).len(), 301);
    // A dry run writes no results log to report on.
    let out = load(
        &sb.url(),
        &[&args[..], &["--dry-run", "--report", "x.html"]].concat(),
        None,
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--report x.html"), "{out:?}");
}

/// The rows an 80-column terminal showed: the output split where the display moves the
/// cursor, each piece cut every 80 columns as the terminal wraps it.
fn screen_rows(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // An escape sequence: CSI ... final byte.
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                pieces.push(std::mem::take(&mut cur));
            }
            '\r' | '\n' => pieces.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    pieces.push(cur);
    let mut rows = Vec::new();
    for p in pieces {
        let chars: Vec<char> = p.chars().collect();
        for row in chars.chunks(80) {
            let row: String = row.iter().collect();
            if !row.trim().is_empty() {
                rows.push(row.trim_end().to_string());
            }
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_follows_rows_and_fits_80_columns_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no `script` command to run czload under a pseudo-terminal");
        return;
    }
    // Slow enough (about 3 s) for a few frames.
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = csv_with_bad_rows(dir.path(), 6000);
    let typescript = dir.path().join("tty.out");
    let cmd = format!(
        "stty cols 80 rows 24; {} load {} --conv-id 555 --url {} --api-login {} --rate 2000",
        env!("CARGO_BIN_EXE_czload"),
        s(&input),
        sb.url(),
        common::LOGIN
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, s(&typescript)])
        .env("COREZOID_API_SECRET", common::SECRET)
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script runs");
    let rows = screen_rows(&std::fs::read(&typescript).unwrap());
    assert_eq!(out.status.code(), Some(0), "{out:?} {rows:#?}");
    // Every row of the display is one whole line of it: a bar line or a counts line,
    // never the wrapped end of a longer one.
    let display: Vec<&String> = rows
        .iter()
        .skip_while(|r| !r.contains("ETA"))
        .take_while(|r| !r.contains(" rows in "))
        .collect();
    for r in &display {
        let bar = r.chars().nth(1) == Some(' ') && r.contains("ETA");
        let counts = r.starts_with("  ") && r.contains(" rows  ") && r.ends_with(char::is_numeric);
        assert!(
            bar || counts || r.chars().count() == 1,
            "a wrapped line: {r:?} in {display:#?}"
        );
    }
    // The percentage is the rows settled of the estimated total, and it starts low (the
    // whole input is read at once, so a percentage of bytes would be 100% from the start).
    let mut seen = Vec::new();
    for w in display.windows(2) {
        let (Some(pct), Some(n)) = (w[0].find('%'), w[1].find(" rows")) else {
            continue;
        };
        // Before the first rows settle there is no estimate: `?%`, and no `/~total`.
        let Ok(pct) = w[0][..pct].rsplit(' ').next().unwrap().parse::<f64>() else {
            continue;
        };
        let (done, total) = w[1][..n].trim().split_once("/~").unwrap();
        let num = |t: &str| -> f64 {
            match t.strip_suffix('k') {
                Some(k) => k.parse::<f64>().unwrap() * 1000.0,
                None => t.parse().unwrap(),
            }
        };
        let want = num(done) * 100.0 / num(total);
        assert!((pct - want).abs() <= 2.0, "{pct}% for {}", w[1]);
        seen.push(pct);
    }
    assert!(seen.len() >= 3, "{display:#?}");
    assert!(
        seen[0] < 50.0 && seen.windows(2).all(|w| w[0] <= w[1]),
        "{seen:?}"
    );
    assert!(
        display.iter().any(|r| r.contains("in flight")),
        "{display:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_json_is_one_object_per_line_on_stderr() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = csv_with_bad_rows(dir.path(), 500);
    let mut cmd = common::load_command(&sb.url(), common::SECRET);
    // --quiet (from load_command) wins over it: only this test's flag order matters.
    cmd.args([s(&input), "--conv-id", "555"]);
    let out: common::Out = tokio::task::spawn_blocking(move || cmd.output().unwrap().into())
        .await
        .unwrap();
    assert!(!out.stderr.contains("\"rows\""), "{out:?}");
    let mut cmd = crate::common::czload();
    cmd.args(["load", s(&input), "--conv-id", "555", "--url", &sb.url()])
        .args(["--api-login", common::LOGIN, "--progress", "json"])
        .env("COREZOID_API_SECRET", common::SECRET);
    let out: common::Out = tokio::task::spawn_blocking(move || cmd.output().unwrap().into())
        .await
        .unwrap();
    let json: Vec<Value> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = json.last().expect("a JSON line");
    assert_eq!(last["rows"], 500, "{last}");
    assert_eq!(last["percent"], 100.0, "{last}");
    assert_eq!(last["in_flight"], 0, "{last}");
}

#[test]
fn completions_and_the_man_page_come_from_the_flags() {
    for (shell, mark) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef czload"),
        ("fish", "complete -c czload"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = czload(&["completions", shell]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains(mark), "{shell}: {:.300}", out.stdout);
        assert!(out.stdout.contains("report"), "{shell}");
    }
    let out = czload(&["man"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with(".ie") || out.stdout.contains(".TH czload"));
    for what in [
        "czload\\-load \\-",
        "\\-\\-report",
        "\\-\\-progress",
        "czload\\-report \\-",
        // The sections man readers look for, and what they must hold.
        ".SH \"EXIT STATUS\"",
        "130 / 143 / 129",
        ".SH ENVIRONMENT",
        "COREZOID_API_SECRET",
        "COREZOID_URL",
        ".SH EXAMPLES",
        "czload merge\\-results",
    ] {
        assert!(out.stdout.contains(what), "{what} not in the man page");
    }
    // Exit codes have their own section, not clap_mangen's catch-all.
    assert!(
        !out.stdout.contains(".SH EXTRA"),
        "an EXTRA section is left"
    );
    assert_eq!(out.stdout.matches(".TH ").count(), 1, "one page, one title");
}
