//! The secret never leaks: not in stdout, stderr, the results log, the retry file or the
//! summary, whether the load succeeds, fails on auth, on server errors or on bad rows, in
//! a dry run or with debug logging. Plus the rules around it: no plain flag,
//! `--secret-file` must be private, plain HTTP to another host is warned about, and the
//! output files are readable by their owner only.

use crate::common::{CONV, LOGIN};
use czload::sandbox::{Sandbox, SandboxConfig};
use czload::sign::Secret;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const MARK: &str = "Zebra-9f2c-Secret-Marker";

struct Run {
    code: i32,
    all: String,
}

/// Runs `czload load` with `secret` in the environment; collects stdout, stderr and every
/// file the run left in `dir`.
async fn run(dir: &Path, secret: &str, args: Vec<String>) -> Run {
    let secret = secret.to_string();
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = crate::common::czload()
            .arg("load")
            .args(&args)
            .args(["--api-login", LOGIN, "--quiet"])
            .env("COREZOID_API_SECRET", &secret)
            .env("RUST_LOG", "czload=trace")
            .output()
            .unwrap();
        let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
        all.push_str(&String::from_utf8_lossy(&out.stderr));
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            all.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
        }
        Run {
            code: out.status.code().unwrap_or(-1),
            all,
        }
    })
    .await
    .unwrap()
}

fn input(dir: &Path) -> String {
    let p = dir.join("rows.csv");
    std::fs::write(&p, "id,amount\n1,10\n2,x\n3,30\n").unwrap();
    p.to_str().unwrap().to_string()
}

fn args(url: &str, input: &str, extra: &[&str]) -> Vec<String> {
    let dir = Path::new(input).parent().unwrap();
    let mut v: Vec<String> = [
        input,
        "--conv-id",
        "555",
        "--type",
        "amount:number",
        "--url",
        url,
        "--verbose",
        "--summary-json",
        dir.join("summary.json").to_str().unwrap(),
        "--max-attempts",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_appears_in_no_output_or_file() {
    let good = Sandbox::start(SandboxConfig::new(LOGIN, Secret::new(MARK), vec![CONV]))
        .await
        .unwrap();
    let failing = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..SandboxConfig::new(LOGIN, Secret::new(MARK), vec![CONV])
    })
    .await
    .unwrap();
    let cases: Vec<(&str, String, &str, Vec<&str>, i32)> = vec![
        ("success with bad rows", good.url(), MARK, vec![], 2),
        ("auth failure", good.url(), "Other-Zebra-9f2c", vec![], 1),
        ("server errors", failing.url(), MARK, vec![], 2),
        ("dry run", good.url(), MARK, vec!["--dry-run"], 2),
    ];
    for (what, url, secret, extra, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let inp = input(dir.path());
        let r = run(dir.path(), secret, args(&url, &inp, &extra)).await;
        assert_eq!(r.code, want, "{what}: {}", r.all);
        // Debug logging did run: requests are logged.
        if what != "dry run" {
            assert!(r.all.contains("POST "), "{what}: debug log expected");
        }
        assert!(
            !r.all.contains("Zebra-9f2c"),
            "{what}: the secret leaked:\n{}",
            r.all
        );
    }
    assert!(good.stats().created >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_retry_files_are_private() {
    let sb = Sandbox::start(SandboxConfig {
        fail_before: 1.0,
        ..SandboxConfig::new(LOGIN, Secret::new(MARK), vec![CONV])
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inp = input(dir.path());
    let r = run(dir.path(), MARK, args(&sb.url(), &inp, &[])).await;
    assert_eq!(r.code, 2);
    for f in ["rows.results.ndjson", "rows.retry.csv"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

fn czload(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut c = crate::common::czload();
    c.args(args).env_remove("COREZOID_API_SECRET");
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_secret_file_readable_by_others_is_refused_and_there_is_no_secret_flag() {
    let dir = tempfile::tempdir().unwrap();
    let inp = input(dir.path());
    let sf = dir.path().join("secret");
    std::fs::write(&sf, format!("{MARK}\n")).unwrap();
    std::fs::set_permissions(&sf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let base = [
        "load",
        &inp,
        "--conv-id",
        "555",
        "--api-login",
        "1",
        "--dry-run",
    ];
    let mut a = base.to_vec();
    a.extend(["--secret-file", sf.to_str().unwrap()]);
    let (code, err) = czload(&a, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("readable by other users") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("Zebra"));

    std::fs::set_permissions(&sf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = czload(&a, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("placeholder"),
        "the file's secret was used: {err}"
    );

    let mut a = base.to_vec();
    a.extend(["--secret", MARK]);
    let (code, err) = czload(&a, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--secret"), "{err}");
}

#[test]
fn plain_http_to_another_host_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let inp = input(dir.path());
    let base = [
        "load",
        &inp,
        "--conv-id",
        "555",
        "--api-login",
        "1",
        "--dry-run",
        "--url",
    ];
    let mut a = base.to_vec();
    a.push("http://corezoid.example.com");
    let (_, err) = czload(&a, &[("COREZOID_API_SECRET", MARK)]);
    assert!(
        err.contains("plain HTTP") && err.contains("https://"),
        "{err}"
    );
    let mut a = base.to_vec();
    a.push("http://127.0.0.1:9");
    let (_, err) = czload(&a, &[("COREZOID_API_SECRET", MARK)]);
    assert!(!err.contains("plain HTTP"), "{err}");
}
