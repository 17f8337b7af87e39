//! What czload tells the user, and where it sends (issue 25, classes 5 and 6): `--sync`
//! goes only where the user pointed; a refusal of the process itself stops the run at
//! the first answer, with the server's words and the flag to check; the summary gives
//! the reasons rows failed; no secret in any message; colour only on a terminal;
//! `check` judges the header when it reads no row; and every piece of advice, followed
//! literally, works (no duplicate, the exit code said).

use crate::common::{self, by_ref, load, results, s, Out, CONV, LOGIN, SECRET};
use czload::sandbox::{Param, Sandbox, SandboxConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `n` rows `id,amount` with ids `r1`.., amounts 1..
fn rows(dir: &Path, name: &str, n: usize) -> PathBuf {
    let p = dir.join(name);
    let mut t = String::from("id,amount\n");
    for i in 1..=n {
        t.push_str(&format!("r{i},{i}\n"));
    }
    std::fs::write(&p, t).unwrap();
    p
}

/// Runs `czload ARGS` (no implicit flags) with `env`, stdin closed; stderr to a file
/// when `stderr_file` is given (so it is not a terminal, nor a pipe the test reads).
fn run(args: &[&str], env: &[(&str, &str)], stderr_file: Option<&Path>) -> Out {
    let mut cmd = crate::common::czload();
    cmd.args(args)
        .env_remove("COREZOID_API_LOGIN")
        .env_remove("COREZOID_API_SECRET")
        .env_remove("COREZOID_URL")
        .env_remove("COREZOID_SYNC_URL")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match stderr_file {
        Some(f) => {
            cmd.stderr(std::fs::File::create(f).unwrap());
            let out = cmd.stdout(Stdio::piped()).output().unwrap();
            Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: std::fs::read_to_string(f).unwrap(),
            }
        }
        None => Out::from(cmd.output().unwrap()),
    }
}

async fn run_async(args: Vec<String>, env: Vec<(String, String)>) -> Out {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&a, &e, None)
    })
    .await
    .unwrap()
}

// ---- class 5: data sent where the user did not point ----

/// `--sync` with any `--url` but the public API needs `--sync-url`: refused before a
/// request, exit 1, naming the flag; with it (flag or environment) the sync load goes
/// where it says; the public API keeps its Sync API as the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_goes_only_where_the_user_pointed() {
    let sb = Sandbox::start(common::config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = rows(dir.path(), "s.csv", 3);
    let env = [("COREZOID_API_SECRET", SECRET)];
    let base = |url: &str| {
        vec![
            "load".to_string(),
            s(&input).into(),
            "--conv-id".into(),
            CONV.to_string(),
            "--api-login".into(),
            LOGIN.into(),
            "--quiet".into(),
            "--sync".into(),
            "--url".into(),
            url.into(),
        ]
    };
    let envv = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        env.iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // On-premise URLs, a real one (dry run: nothing can leave) and the sandbox.
    for url in [
        sb.url(),
        "https://corezoid.example.com".into(),
        "https://api.corezoid.com.evil.example".into(),
        "http://api.corezoid.com".into(),
    ] {
        for dry in [false, true] {
            let mut a = base(&url);
            if dry {
                a.push("--dry-run".into());
            }
            let out = run_async(a, envv(&[])).await;
            assert_eq!(out.code, 1, "{url} dry={dry}: {out:?}");
            assert!(out.stderr.contains("--sync-url"), "{url}: {}", out.stderr);
        }
    }
    assert_eq!(sb.stats().requests, 0, "nothing was sent");
    // The public API (with or without a trailing slash): its Sync API by default.
    for url in ["https://api.corezoid.com", "https://api.corezoid.com/"] {
        let mut a = base(url);
        a.push("--dry-run".into());
        let out = run_async(a, envv(&[])).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout
                .contains("POST https://sync-api.corezoid.com/api/1/json/"),
            "{}",
            out.stdout
        );
    }
    // Pointed at the install's Sync API, by the flag or by the environment: it loads.
    let sync = format!("{}/sync", sb.url());
    let mut a = base(&sb.url());
    a.extend(["--sync-url".into(), sync.clone(), "--results".into()]);
    a.push(s(&dir.path().join("a.ndjson")).into());
    let out = run_async(a, envv(&[])).await;
    assert_eq!(out.code, 0, "{out:?}");
    let other = rows(dir.path(), "s2.csv", 3);
    let mut a = base(&sb.url());
    a[1] = s(&other).into();
    a.extend(["--results".into(), s(&dir.path().join("b.ndjson")).into()]);
    let out = run_async(a, envv(&[("COREZOID_SYNC_URL", &sync)])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(by_ref(&sb.tasks()).len(), 6);
}

// ---- class 6: telling plainly ----

/// A sandbox config whose process 556 refuses as `how` says.
fn refusing(how: &str) -> SandboxConfig {
    let mut cfg = common::config();
    match how {
        "denied" => cfg.denied = vec![556],
        "inactive" => cfg.inactive = vec![556],
        "company" => cfg.company = Some("c-1".into()),
        _ => {}
    }
    cfg
}

/// Each process-level refusal (docs/protocol.md, Errors): (how the sandbox refuses, the
/// flags that provoke it, the server's words, what the message asks to check, the flags
/// that fix it).
type Refusal = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static [&'static str],
);

const PROCESS_REFUSALS: &[Refusal] = &[
    (
        "none",
        &["--conv-id", "999"],
        "Object conv with id 999 does not exist",
        "check --conv-id",
        &["--conv-id", "555"],
    ),
    (
        "denied",
        &["--conv-id", "556"],
        "access_denied",
        "--api-login",
        &["--conv-id", "555"],
    ),
    (
        "inactive",
        &["--conv-id", "556"],
        "conveyor_is_not_active",
        "activate it",
        &["--conv-id", "555"],
    ),
    (
        "company",
        &["--conv-id", "556", "--company-id", "c-2"],
        "Company of object do not matches companyId of request",
        "check --company-id",
        &["--conv-id", "556", "--company-id", "c-1"],
    ),
];

/// A refusal of the process stops the run at the first answers (not 200 requests for
/// 2,000 rows), exit 1, with the server's words and the flag to check; no row gets a
/// line; the advice (fix it, run again without --resume) then loads every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_the_process_stops_at_once_and_names_the_flag() {
    for &(how, flags, words, check, fixed) in PROCESS_REFUSALS {
        let sb = Sandbox::start(refusing(how)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input = rows(dir.path(), "p.csv", 2000);
        let mut args = vec![s(&input), "--batch-size", "10"];
        args.extend(flags);
        let out = load(&sb.url(), &args, None).await;
        assert_eq!(out.code, 1, "{how}: {out:?}");
        assert!(out.stderr.contains(words), "{how}: {}", out.stderr);
        assert!(out.stderr.contains(check), "{how}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("run the command again (without --resume"),
            "{how}: {}",
            out.stderr
        );
        let sent = sb.stats().requests;
        assert!(
            sent < 40,
            "{how}: stopped at the first answers, sent {sent}"
        );
        let log = dir.path().join("p.results.ndjson");
        assert_eq!(results(&log).len(), 0, "{how}: no row settled");
        assert!(sb.tasks().is_empty());
        // The advice, literally: the flag fixed, the same command again.
        let mut args = vec![s(&input), "--batch-size", "10"];
        args.extend(fixed);
        let out = load(&sb.url(), &args, None).await;
        assert_eq!(out.code, 0, "{how}: {out:?}");
        assert_eq!(by_ref(&sb.tasks()).len(), 2000, "{how}");
    }
}

/// With `--conv-id-column` a process that does not exist is one row's problem: rejected,
/// and the run goes on; the summary counts it with the server's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_row_processes_reject_the_row_and_the_summary_gives_the_reasons() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("c.csv");
    let mut t = String::from("id,proc,amount\n");
    for i in 1..=40 {
        let (proc_, amount) = match i % 4 {
            0 => ("999", i.to_string()),
            1 => ("555", format!("x{i}")),
            _ => ("556", i.to_string()),
        };
        t.push_str(&format!("k{i},{proc_},{amount}\n"));
    }
    std::fs::write(&input, t).unwrap();
    let summary = dir.path().join("summary.json");
    let out = load(
        &sb.url(),
        &[
            s(&input),
            "--conv-id-column",
            "proc",
            "--ref-column",
            "id",
            "--type",
            "amount:number",
            "--summary-json",
            s(&summary),
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("rejected rows, by the reason given:"),
        "{}",
        out.stderr
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("Object conv with id 999 does not exist"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(line.trim_start().starts_with("10 "), "{line}");
    let json: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let reasons = json["reasons"].as_array().unwrap();
    let of = |text: &str| {
        reasons
            .iter()
            .find(|r| r["reason"].as_str().unwrap().contains(text))
            .unwrap_or_else(|| panic!("{text} in {reasons:?}"))
    };
    assert_eq!(of("does not exist")["rows"], 10);
    assert_eq!(of("does not exist")["status"], "rejected");
    assert_eq!(of("amount")["rows"], 10, "{reasons:?}");
    assert_eq!(sb.tasks().len(), 20);
}

/// Failed rows are counted by the reason too, without the attempt count that differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rows_are_counted_by_the_servers_words() {
    let sb = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = rows(dir.path(), "f.csv", 30);
    let summary = dir.path().join("summary.json");
    let args = [
        s(&input),
        "--conv-id",
        "555",
        "--max-attempts",
        "2",
        "--batch-size",
        "10",
        "--summary-json",
        s(&summary),
    ];
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("failed rows, by the reason given:"),
        "{}",
        out.stderr
    );
    let json: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let reasons = json["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["status"], "failed");
    assert_eq!(reasons[0]["rows"], 30);
    assert!(reasons[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 503"));
}

const MARK: &str = "Qx7-secret-typed-in-the-wrong-place";

/// The secret typed as the value of a flag (where a path, a login or a URL belongs) is
/// never echoed: each command, each form of each flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_typed_as_a_flag_value_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let input = rows(dir.path(), "x.csv", 2);
    let i = s(&input).to_string();
    let with_url = |extra: Vec<String>| {
        let mut v = vec![
            i.clone(),
            "--conv-id".into(),
            "555".into(),
            "--url".into(),
            "http://127.0.0.1:9".into(),
        ];
        v.extend(extra);
        v
    };
    let cases: Vec<(Vec<String>, bool)> = vec![
        (
            with_url(vec![
                "--api-login".into(),
                "1".into(),
                "--secret-file".into(),
                MARK.into(),
            ]),
            false,
        ),
        (
            with_url(vec![
                "--api-login".into(),
                "1".into(),
                format!("--secret-file={MARK}"),
            ]),
            false,
        ),
        (with_url(vec!["--api-login".into(), MARK.into()]), true),
        (with_url(vec![format!("--api-login={MARK}")]), true),
        (
            with_url(vec!["--api-login".into(), format!("{MARK}/x")]),
            true,
        ),
        (
            vec![
                i.clone(),
                "--conv-id".into(),
                "555".into(),
                "--api-login".into(),
                "1".into(),
                "--url".into(),
                format!("https://u:{MARK}@api.example.com"),
            ],
            true,
        ),
        (
            with_url(vec![
                "--api-login".into(),
                "1".into(),
                "--sync".into(),
                "--sync-url".into(),
                format!("https://u:{MARK}@sync.example.com"),
            ]),
            true,
        ),
    ];
    for sub in ["load", "check"] {
        for (extra, env_secret) in &cases {
            let mut args = vec![sub.to_string()];
            args.extend(extra.iter().cloned());
            let env: Vec<(String, String)> = if *env_secret {
                vec![("COREZOID_API_SECRET".into(), MARK.into())]
            } else {
                Vec::new()
            };
            let out = run_async(args.clone(), env).await;
            assert_eq!(out.code, 1, "{args:?}: {out:?}");
            let all = format!("{}{}", out.stdout, out.stderr);
            assert!(!all.contains(MARK), "{args:?} echoed the secret: {all}");
            assert!(!all.contains("Qx7"), "{args:?} echoed part of it: {all}");
        }
    }
    for args in [
        vec!["sandbox", "--secret-file", MARK],
        vec!["sandbox", "--api-login", &format!("{MARK}/1")],
    ] {
        let out = run_async(
            args.iter().map(|a| a.to_string()).collect(),
            vec![("COREZOID_API_SECRET".into(), "other".into())],
        )
        .await;
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(!out.stderr.contains(MARK), "{args:?}: {}", out.stderr);
    }
}

/// The advice of a `--secret-file` others may read, followed: `chmod 600` and it loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chmod_advice_for_a_secret_file_works() {
    use std::os::unix::fs::PermissionsExt;
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = rows(dir.path(), "m.csv", 2);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = sb.url();
    let args = [
        "load",
        s(&input),
        "--conv-id",
        "555",
        "--api-login",
        LOGIN,
        "--url",
        &url,
        "--secret-file",
        s(&secret),
        "--quiet",
    ];
    let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = run_async(owned.clone(), Vec::new()).await;
    assert_eq!(out.code, 1, "{out:?}");
    let advice = out
        .stderr
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("{}", out.stderr))
        .to_string();
    assert!(advice.starts_with("chmod 600 "), "{advice}");
    let st = Command::new("sh").args(["-c", &advice]).status().unwrap();
    assert!(st.success());
    let out = run_async(owned, Vec::new()).await;
    assert_eq!(out.code, 0, "{out:?}");
}

/// Colour codes only on a terminal: stderr to a file gets none (auto, `NO_COLOR`,
/// `--color never`), and `--color always` shows the test can see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_to_a_file_has_no_colour_codes() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = rows(dir.path(), "col.csv", 3);
    let url = sb.url();
    let log = dir.path().join("stderr.txt");
    // A wrong secret: the run stops with an error message (and a log line).
    let base = vec![
        "load",
        s(&input),
        "--conv-id",
        "555",
        "--api-login",
        LOGIN,
        "--url",
        &url,
        "--restart",
    ];
    for (extra, env, coloured) in [
        (vec![], vec![], false),
        (vec![], vec![("NO_COLOR", "1")], false),
        (vec!["--color", "auto"], vec![], false),
        (vec!["--color", "never"], vec![], false),
        (vec!["--color", "always"], vec![], true),
    ] {
        let mut args = base.clone();
        args.extend(&extra);
        let mut env = env.clone();
        env.push(("COREZOID_API_SECRET", "wrong-secret"));
        let out = run(&args, &env, Some(&log));
        assert_eq!(out.code, 1, "{extra:?}: {out:?}");
        assert!(out.stderr.contains("stopped"), "{}", out.stderr);
        // The cause is said once (the summary's `stopped:` line), not again as a log line.
        assert_eq!(
            out.stderr.matches("wrong signature").count(),
            1,
            "{}",
            out.stderr
        );
        assert_eq!(
            out.stderr.contains('\x1b'),
            coloured,
            "{extra:?} {env:?}: {:?}",
            out.stderr
        );
    }
}

/// After a run that settled nothing (a refused login), the corrected plain re-run is not
/// refused as unfinished; a log that holds rows still is, and its advice works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_settled_nothing_does_not_block_the_corrected_one() {
    let sb = common::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = rows(dir.path(), "a.csv", 50);
    let args = [s(&input), "--conv-id", "555"];
    let out = common::load_command(&sb.url(), "wrong")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(by_ref(&sb.tasks()).len(), 50);

    // A stopped run that did settle rows: the refusal's two ways both work.
    let input = dir.path().join("b.csv");
    std::fs::write(&input, "id,amount\nb1,1\nb2,x\nb3,3\n").unwrap();
    let args = [s(&input), "--conv-id", "555", "--type", "amount:number"];
    let mut first = args.to_vec();
    first.extend(["--max-errors", "1"]);
    let out = load(&sb.url(), &first, None).await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = load(&sb.url(), &args, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("add --resume") && out.stderr.contains("--restart"),
        "{}",
        out.stderr
    );
    for how in ["--resume", "--restart"] {
        let mut a = args.to_vec();
        a.push(how);
        let out = load(&sb.url(), &a, None).await;
        assert_eq!(out.code, 2, "{how}: {out:?}");
        by_ref(&sb.tasks());
    }
}

/// `check` of a header without rows, or with `--check-rows 0`: the header alone shows a
/// required parameter missing; a header that supplies it fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_judges_the_header_when_it_reads_no_row() {
    let sb = Sandbox::start(SandboxConfig {
        params: ["id:string:required", "amount:number:required"]
            .iter()
            .map(|p| Param::parse(p).unwrap())
            .collect(),
        ..common::config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = sb.url();
    let header_only = dir.path().join("h.csv");
    std::fs::write(&header_only, "id,name\n").unwrap();
    let with_rows = dir.path().join("r.csv");
    std::fs::write(&with_rows, "id,name\n1,a\n").unwrap();
    let fits = dir.path().join("ok.csv");
    std::fs::write(&fits, "id,amount\n").unwrap();
    let cases: &[(&str, &Path, &[&str], i32)] = &[
        ("check", &header_only, &[], 2),
        ("check", &with_rows, &["--check-rows", "0"], 2),
        ("check", &header_only, &["--set", "amount:number=1"], 0),
        ("check", &header_only, &["--rename", "name:amount"], 0),
        ("check", &fits, &[], 0),
        ("check", &fits, &["--check-rows", "0"], 0),
        ("load", &with_rows, &["--check", "--check-rows", "0"], 2),
    ];
    for &(sub, input, extra, want) in cases {
        let mut args = vec![
            sub.to_string(),
            s(input).into(),
            "--conv-id".into(),
            "555".into(),
            "--url".into(),
            url.clone(),
            "--api-login".into(),
            LOGIN.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let out = run_async(
            args.clone(),
            vec![("COREZOID_API_SECRET".into(), SECRET.into())],
        )
        .await;
        assert_eq!(out.code, want, "{args:?}: {out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        if want == 2 {
            assert!(text.contains("required parameter \"amount\""), "{text}");
            assert!(!text.contains("the mapping fits"), "{text}");
            // The advice, followed with a value for VALUE: it fits.
            let set = text
                .split("--set ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .unwrap_or_else(|| panic!("{text}"))
                .replace("VALUE", "7");
            assert_eq!(set, "amount:number=7", "{text}");
            let mut again = args.clone();
            again.retain(|a| a != "--check-rows" && a != "0");
            again.extend(["--set".to_string(), set]);
            let out = run_async(
                again.clone(),
                vec![("COREZOID_API_SECRET".into(), SECRET.into())],
            )
            .await;
            assert_eq!(out.code, 0, "{again:?}: {out:?}");
        }
    }
    // One load: the --check that fitted loaded its row (with --set amount).
    assert!(sb.tasks().len() <= 1);
}

/// `check` of a process that refuses says the same as a load: the server's words and
/// the flag to check (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_of_a_refusing_process_names_the_flag() {
    for &(how, flags, words, check, _) in PROCESS_REFUSALS {
        if how == "company" {
            // `show conv` takes no company in the sandbox.
            continue;
        }
        let sb = Sandbox::start(refusing(how)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input = rows(dir.path(), "k.csv", 2);
        let url = sb.url();
        let mut args = vec!["check", s(&input), "--url", &url, "--api-login", LOGIN];
        args.extend(flags);
        let owned = args.iter().map(|a| a.to_string()).collect();
        let out = run_async(owned, vec![("COREZOID_API_SECRET".into(), SECRET.into())]).await;
        if how == "inactive" {
            // The process answers `show conv`: a misfit of the report, exit 2.
            assert_eq!(out.code, 2, "{how}: {out:?}");
            assert!(out.stdout.contains("not active"), "{how}: {}", out.stdout);
        } else {
            assert_eq!(out.code, 1, "{how}: {out:?}");
            assert!(out.stderr.contains(words), "{how}: {}", out.stderr);
            assert!(out.stderr.contains(check), "{how}: {}", out.stderr);
        }
    }
}
