//! Helpers shared by the integration tests: an in-process sandbox with a client, signed
//! requests (with any part of the authentication overridden), op builders, a clock
//! aligner for tests of per-second limits, and runs of the `czload load` binary with
//! readers of what they leave (results log, stored tasks).

#![allow(dead_code)]

use czload::sandbox::{Sandbox, SandboxConfig, Task};
use czload::sign::{self, Secret};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const LOGIN: &str = "1001";
pub const SECRET: &str = "sandbox-test-secret";
/// The processes every test sandbox has.
pub const CONV: u64 = 555;
pub const CONV2: u64 = 556;

/// A sandbox config for [`LOGIN`]/[`SECRET`] and [`CONV`], [`CONV2`], seeded.
pub fn config() -> SandboxConfig {
    SandboxConfig {
        seed: Some(7),
        ..SandboxConfig::new(LOGIN, Secret::new(SECRET), vec![CONV, CONV2])
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Sleeps until just after the next wall-clock second starts, unless we are at the start
/// of one already, so that a burst of requests lands in one RPS window.
pub async fn at_second_start() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_millis();
    if into > 30 {
        tokio::time::sleep(Duration::from_millis(u64::from(1000 - into) + 5)).await;
    }
}

/// What authentication a request carries; `Default` is the correct one.
#[derive(Debug, Default, Clone)]
pub struct Auth {
    pub ts: Option<u64>,
    pub secret: Option<&'static str>,
    pub login: Option<&'static str>,
    pub uppercase: bool,
    /// The older `/api/1/json/` path.
    pub v1: bool,
}

/// An answer: status, headers, body text and the body as JSON (`Null` when it is not).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// The `ops` answers.
    pub fn ops(&self) -> &Vec<Value> {
        self.json["ops"]
            .as_array()
            .expect("an ops array in the answer")
    }

    /// The answer to the op whose id is `id` (a string id).
    pub fn op(&self, id: &str) -> &Value {
        self.ops()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer for op {id} in {}", self.text))
    }
}

pub struct Harness {
    pub sb: Sandbox,
    pub client: reqwest::Client,
}

pub fn client(pooled: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(10));
    if !pooled {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().expect("a reqwest client")
}

impl Harness {
    pub async fn start(cfg: SandboxConfig) -> Harness {
        Harness::start_with(cfg, true).await
    }

    /// `pooled: false` opens a connection per request, so that a connection the server
    /// dropped is never reused by the client.
    pub async fn start_with(cfg: SandboxConfig, pooled: bool) -> Harness {
        let sb = Sandbox::start(cfg).await.expect("sandbox starts");
        Harness {
            sb,
            client: client(pooled),
        }
    }

    /// A correctly signed request; panics if there is no HTTP answer.
    pub async fn post(&self, body: &str) -> Reply {
        self.post_as(body, &Auth::default())
            .await
            .expect("an HTTP answer")
    }

    pub async fn post_as(&self, body: &str, auth: &Auth) -> Result<Reply, reqwest::Error> {
        post_to(&self.client, &self.sb.url(), body, auth).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.sb.url()))
            .send()
            .await
            .expect("an HTTP answer")
    }
}

/// Signs `body` as `auth` says and posts it to `base`.
pub async fn post_to(
    client: &reqwest::Client,
    base: &str,
    body: &str,
    auth: &Auth,
) -> Result<Reply, reqwest::Error> {
    let ts = auth.ts.unwrap_or_else(now);
    let secret = Secret::new(auth.secret.unwrap_or(SECRET));
    let sig = sign::sign(ts, &secret, body.as_bytes());
    let mut sig = String::from_utf8(sig.to_vec()).expect("hex");
    if auth.uppercase {
        sig = sig.to_uppercase();
    }
    let version = if auth.v1 { 1 } else { 2 };
    let login = auth.login.unwrap_or(LOGIN);
    let url = format!("{base}/api/{version}/json/{login}/{ts}/{sig}");
    let resp = client
        .post(url)
        .header("content-type", "application/json; charset=utf8")
        .body(body.to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        text,
        json,
    })
}

/// A create op for [`CONV`].
pub fn create(id: &str, ref_: Option<&str>, data: Value) -> Value {
    let mut op = json!({"id": id, "type": "create", "obj": "task", "conv_id": CONV, "data": data});
    if let Some(r) = ref_ {
        op["ref"] = json!(r);
    }
    op
}

/// `{"ops":[...]}`.
pub fn body(ops: &[Value]) -> String {
    json!({ "ops": ops }).to_string()
}

/// `n` creates with ids `"0"`, `"1"`, ... and refs `{prefix}-0`, ...
pub fn creates(prefix: &str, n: usize) -> String {
    let ops: Vec<Value> = (0..n)
        .map(|i| {
            create(
                &i.to_string(),
                Some(&format!("{prefix}-{i}")),
                json!({"n": i}),
            )
        })
        .collect();
    body(&ops)
}

/// A path as the `&str` a command line takes (test paths are UTF-8).
pub fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A sandbox of [`config`], started.
pub async fn sandbox() -> Sandbox {
    Sandbox::start(config()).await.expect("sandbox starts")
}

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(out: std::process::Output) -> Out {
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The czload binary, its messages one line each: `$COLUMNS` set wide, so that what a
/// test looks for is not broken across lines by the wrapping to 80 columns that stderr
/// gets off a terminal (`term::wrap`; tests/terminal.rs tests that wrapping itself).
pub fn czload() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_czload"));
    cmd.env("COLUMNS", "100000");
    // `--rate auto` keeps the limit it finds in the state directory: the tests' own, never
    // the user's (a test that checks it sets its own).
    cmd.env(
        "XDG_STATE_HOME",
        concat!(env!("CARGO_TARGET_TMPDIR"), "/state"),
    );
    cmd
}

/// `czload load --url URL --api-login LOGIN --quiet` with `secret` in the environment and
/// no other czload setting inherited from it; the caller adds the input and its flags.
pub fn load_command(url: &str, secret: &str) -> Command {
    let mut cmd = czload();
    cmd.arg("load")
        .args(["--url", url, "--api-login", LOGIN, "--quiet"])
        .env("COREZOID_API_SECRET", secret)
        .env_remove("COREZOID_API_LOGIN")
        .env_remove("COREZOID_URL")
        .env_remove("RUST_LOG");
    cmd
}

/// Runs `czload load ARGS` against `url` with the test credentials.
pub async fn load(url: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Out {
    let mut cmd = load_command(url, SECRET);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("czload starts");
        if let Some(data) = stdin {
            let mut w = child.stdin.take().expect("piped");
            w.write_all(&data).expect("stdin written");
        }
        Out::from(child.wait_with_output().expect("czload ends"))
    })
    .await
    .expect("runner")
}

/// The row lines of a results log (the manifest line, each run's closing `run` line and
/// the end line excluded; `results_and_runs` keeps the run lines).
pub fn results(path: &Path) -> Vec<Value> {
    results_and_runs(path)
        .into_iter()
        .filter(|l| l.get("run").is_none())
        .collect()
}

/// The lines of a results log after the manifest.
pub fn results_and_runs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let manifest: Value =
        serde_json::from_str(lines.next().expect("a manifest line")).expect("JSON");
    assert!(
        manifest.get("inputs").is_some(),
        "manifest first: {manifest}"
    );
    lines
        .filter(|l| *l != r#"{"end":"finished"}"#)
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Result lines by row; panics when a row has two.
pub fn by_row(lines: &[Value]) -> HashMap<u64, &Value> {
    let m: HashMap<u64, &Value> = lines
        .iter()
        .map(|l| (l["row"].as_u64().unwrap(), l))
        .collect();
    assert_eq!(m.len(), lines.len(), "one line per row");
    m
}

/// The stored tasks by ref; panics on a task without a ref or a ref stored twice.
pub fn by_ref(tasks: &[Task]) -> HashMap<String, &Task> {
    let mut m = HashMap::new();
    for t in tasks {
        let r = t.ref_.clone().expect("a ref");
        assert!(m.insert(r.clone(), t).is_none(), "ref {r} stored twice");
    }
    m
}

/// A file of `samples/`.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
}

/// Copies a sample into `dir`, so default outputs land beside it there.
pub fn copy_sample(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(sample(name), &to).expect("copy");
    to
}
