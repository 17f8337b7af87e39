//! The HTTP side: connections, routing, authentication, the RPS limit and fault injection.
//!
//! In: TCP connections. Out: answers, built by `ops` from what the store did. One tokio
//! task per connection (hyper 1, HTTP/1.1 with keep-alive); a connection's errors end that
//! connection only and are logged at debug level. Per request, in this order: half the delay,
//! body size (413), authentication (401), `--fail-before` (503), body format
//! (`format_error`), RPS limit (429 or per-op), apply, `--fail-after` (502) or
//! `--drop-after` (connection closed without an answer), the other half of the delay.

use super::ops::{self, RPS_LIMIT};
use super::stats::inc;
use super::{RpsMode, State};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A client gets this long to send its request headers, and again its body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, connections get this long to finish the request they are in.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

type Reply = Response<Full<Bytes>>;

/// Returned by the service to make hyper close the connection without writing an answer
/// (`--drop-after`, or a body that could not be read).
#[derive(Debug)]
struct Dropped(&'static str);

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Dropped {}

/// Accepts connections until `shutdown` changes, then lets open connections finish.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    let stop = shutdown.clone();
                    conns.spawn(async move {
                        if let Err(e) = connection(stream, state, stop).await {
                            tracing::debug!(%peer, "sandbox connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin or exit.
                    tracing::debug!("sandbox accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), hyper::Error> {
    let svc = service_fn(move |req| handle(state.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if parts.method == Method::GET {
        match path {
            "/__sandbox/stats" => {
                let stats = serde_json::to_vec(&state.counters.snapshot()).unwrap_or_default();
                return Ok(respond(StatusCode::OK, "application/json", stats));
            }
            "/__sandbox/tasks" => {
                let mut out = Vec::new();
                for shard in state.store.shards() {
                    shard.write_ndjson(&mut out);
                }
                return Ok(respond(StatusCode::OK, "application/x-ndjson", out));
            }
            _ => {}
        }
    }
    // The Sync API lives under `/sync` (on Corezoid, another host with the same paths).
    let (sync, api_at) = match path.strip_prefix("/sync") {
        Some(rest) if rest.starts_with("/api/1/") => (true, rest),
        _ => (false, path),
    };
    match (parts.method == Method::POST, api_path(api_at)) {
        (true, Some((login, ts, sig))) => {
            let (login, ts, sig) = (login.to_string(), ts.to_string(), sig.to_string());
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let reply = api(&state, body, declared, (&login, &ts, &sig), sync).await;
            // The answer's half of the round trip (see `api`).
            let back = state.cfg.delay_ms - state.cfg.delay_ms / 2;
            if back > 0 {
                tokio::time::sleep(Duration::from_millis(back)).await;
            }
            reply
        }
        _ => Ok(error_json(
            StatusCode::NOT_FOUND,
            "error",
            &format!(
                "no such endpoint: {} {path} (POST /api/2/json/{{login}}/{{ts}}/{{sig}}, POST /sync/api/1/json/..., GET /__sandbox/stats, GET /__sandbox/tasks)",
                parts.method
            ),
        )),
    }
}

/// `/api/{1,2}/json/{login}/{ts}/{sig}` → its three last segments.
fn api_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path
        .strip_prefix("/api/2/json/")
        .or_else(|| path.strip_prefix("/api/1/json/"))?;
    let mut it = rest.split('/');
    let (login, ts, sig) = (it.next()?, it.next()?, it.next()?);
    match it.next() {
        None => Some((login, ts, sig)),
        Some("") if it.next().is_none() => Some((login, ts, sig)),
        Some(_) => None,
    }
}

/// `--delay-ms` is a round trip: half of it before the request is handled (it travels
/// to the server), half after (the answer travels back), so that the server counts a
/// request against its limit when a real one far away would; `--delay-jitter-ms` adds
/// up to that much more, drawn per request.
async fn travel_there(cfg: &super::SandboxConfig) {
    let jitter = if cfg.delay_jitter_ms > 0 {
        rand::random_range(0..=cfg.delay_jitter_ms * 1000)
    } else {
        0
    };
    let there = Duration::from_millis(cfg.delay_ms / 2) + Duration::from_micros(jitter);
    if !there.is_zero() {
        tokio::time::sleep(there).await;
    }
}

async fn api(
    state: &State,
    body: Incoming,
    declared_len: Option<u64>,
    (login, ts, sig): (&str, &str, &str),
    sync: bool,
) -> Result<Reply, Dropped> {
    let cfg = &state.cfg;
    let seq = state
        .counters
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    travel_there(cfg).await;

    let body = match read_body(state, body, declared_len).await? {
        Ok(b) => b,
        Err(too_large) => return Ok(too_large),
    };

    if let Err(problem) = authenticate(state, login, ts, sig, &body) {
        inc(&state.counters.auth_failures);
        tracing::debug!("sandbox: refused a request: {problem}");
        return Ok(error_json(StatusCode::UNAUTHORIZED, "error", &problem));
    }

    let mut rng = SmallRng::seed_from_u64(mix(state.seed, seq));
    // `Sandbox::heal`: a test's server comes back to health between two runs.
    let faults = !state.healed.load(std::sync::atomic::Ordering::Relaxed);
    if faults && chance(&mut rng, cfg.fail_before) {
        inc(&state.counters.faults_fail_before);
        return Ok(error_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "error",
            "Service Unavailable (injected by --fail-before: nothing was applied)",
        ));
    }

    let raw_ops = match ops::parse_body(&body) {
        Ok(ops) => ops,
        Err(description) => {
            inc(&state.counters.format_errors);
            let body = serde_json::json!({
                "request_proc": "format_error",
                "description": description,
                "ops": [],
            });
            return Ok(respond(
                StatusCode::OK,
                "application/json",
                body.to_string(),
            ));
        }
    };

    let Some(admitted) = admit(state, raw_ops.len()) else {
        let mut r = error_json(StatusCode::TOO_MANY_REQUESTS, "error", RPS_LIMIT);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(r);
    };

    let planned: Vec<_> = raw_ops.iter().map(|raw| ops::plan(raw, state)).collect();
    let created: Vec<_> = if sync {
        planned.iter().map(|p| p.create_data()).collect()
    } else {
        Vec::new()
    };
    let mut answers = ops::apply(planned, admitted, state);
    if sync {
        let timeout = super::sync::timeout_of(&body);
        if !super::sync::reply(&mut answers, created, timeout, cfg.sync_delay_ms).await {
            return Ok(error_json(
                StatusCode::GATEWAY_TIMEOUT,
                "error",
                "Gateway Time-out: no reply within 60 s (the tasks were created)",
            ));
        }
    }
    if !cfg.ordered {
        answers.shuffle(&mut rng);
    }
    let reply = ops::reply(&answers);
    drop(answers);

    if faults && chance(&mut rng, cfg.fail_after) {
        inc(&state.counters.faults_fail_after);
        return Ok(respond(
            StatusCode::BAD_GATEWAY,
            "text/html",
            BAD_GATEWAY_HTML,
        ));
    }
    if faults && chance(&mut rng, cfg.drop_after) {
        inc(&state.counters.faults_drop_after);
        return Err(Dropped("dropped after applying (--drop-after)"));
    }
    Ok(respond(StatusCode::OK, "application/json", reply))
}

/// The request body, up to `--max-body-bytes`; `Ok(Err)` is the 413 answer to one larger.
async fn read_body(
    state: &State,
    body: Incoming,
    declared_len: Option<u64>,
) -> Result<Result<Bytes, Reply>, Dropped> {
    // Refuse an announced oversize body before reading a byte of it.
    let limit = state.cfg.max_body_bytes;
    if declared_len.is_some_and(|n| n > limit as u64) {
        inc(&state.counters.too_large);
        return Ok(Err(too_large(limit)));
    }
    match tokio::time::timeout(READ_TIMEOUT, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Dropped("timed out reading the request body")),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            inc(&state.counters.too_large);
            Ok(Err(too_large(limit)))
        }
        Ok(Err(_)) => Err(Dropped("the request body could not be read")),
        Ok(Ok(collected)) => Ok(Ok(collected.to_bytes())),
    }
}

/// How many of a request's `n` ops the RPS limit admits; in request mode all or none
/// (`None`: the whole request is refused, with a 429).
fn admit(state: &State, n: usize) -> Option<usize> {
    match (&state.rps, state.cfg.rps_mode) {
        (None, _) => Some(n),
        (Some(w), RpsMode::Request) => {
            if w.admit_all(n) {
                return Some(n);
            }
            inc(&state.counters.throttled_requests);
            super::stats::add(&state.counters.throttled_ops, n as u64);
            None
        }
        (Some(w), RpsMode::Op) => Some(w.admit_some(n)),
    }
}

/// Checks the login, the timestamp and the signature; `Err` says which one failed.
fn authenticate(
    state: &State,
    login: &str,
    ts: &str,
    sig: &str,
    body: &[u8],
) -> Result<(), String> {
    let cfg = &state.cfg;
    if login != cfg.login {
        return Err(format!("unknown api login {login}"));
    }
    let when: u64 = match ts.parse() {
        Ok(t) if ts.bytes().all(|b| b.is_ascii_digit()) => t,
        _ => {
            return Err(format!(
                "timestamp {ts:?} is not a Unix time in whole seconds"
            ))
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now.abs_diff(when) > cfg.max_skew {
        return Err(format!(
            "timestamp {when} is outside the allowed clock skew of {} s (the sandbox's clock says {now})",
            cfg.max_skew
        ));
    }
    if !crate::sign::verify(ts.as_bytes(), cfg.secret.expose(), body, sig.as_bytes()) {
        return Err("wrong signature: expected hex(sha1(timestamp + secret + body + secret)) over the exact body bytes".into());
    }
    Ok(())
}

fn chance(rng: &mut SmallRng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

/// The per-request seed: the sandbox's seed and the request's arrival number, so that a
/// seeded sandbox fed one request at a time repeats its shuffles and faults exactly.
fn mix(seed: u64, seq: u64) -> u64 {
    // splitmix64 finalizer.
    let mut z = seed ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error_json(status: StatusCode, request_proc: &str, description: &str) -> Reply {
    let body = serde_json::json!({ "request_proc": request_proc, "description": description });
    respond(status, "application/json", body.to_string())
}

fn too_large(limit: usize) -> Reply {
    error_json(
        StatusCode::PAYLOAD_TOO_LARGE,
        "error",
        &format!("request body over {limit} bytes (--max-body-bytes)"),
    )
}

/// What nginx in front of Corezoid answers when the upstream fails.
const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths() {
        assert_eq!(
            api_path("/api/2/json/1001/1700000000/abc"),
            Some(("1001", "1700000000", "abc"))
        );
        assert_eq!(
            api_path("/api/1/json/1001/1700000000/abc/"),
            Some(("1001", "1700000000", "abc"))
        );
        assert_eq!(api_path("/api/2/json/1001/1700000000"), None);
        assert_eq!(api_path("/api/2/json/1001/1/abc/x"), None);
        assert_eq!(api_path("/api/3/json/1001/1/abc"), None);
    }

    #[test]
    fn mix_is_splitmix64_and_seeds_differ_per_request() {
        // With seed 0, request n gets SplitMix64's n-th output (the published sequence
        // for seed 0), so the mixing is the real finalizer, not something weaker.
        assert_eq!(mix(0, 1), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix(0, 2), 0x6e78_9e6a_a1b9_65f4);
        // Distinct per request and per sandbox seed, so no two requests share faults.
        let mut seen = std::collections::HashSet::new();
        for seed in [0, 1, 7, u64::MAX] {
            for seq in 0..2_000 {
                assert!(seen.insert(mix(seed, seq)), "mix({seed}, {seq}) repeats");
            }
        }
        // Neighbouring seeds give unrelated streams: about half the bits differ.
        let flipped: u32 = (0..1_000)
            .map(|q| (mix(7, q) ^ mix(6, q)).count_ones())
            .sum();
        assert!(
            (28_000..=36_000).contains(&flipped),
            "{flipped} bits of 64,000"
        );
    }
}
