//! Helpers shared by the integration tests: an in-process sandbox with a client, signed
//! requests (with any part of the authentication overridden), op builders, and a clock
//! aligner for tests of per-second limits.

#![allow(dead_code)]

use czload::sandbox::{Sandbox, SandboxConfig};
use czload::sign::{self, Secret};
use serde_json::{json, Value};
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
