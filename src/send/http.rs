//! HTTP behind a small trait: one POST of a signed body and its answer, read up to a cap,
//! or how it failed. `Sender` classifies the [`Reply`]; it never sees the HTTP client.
//!
//! [`Reqwest`] is the one implementation a run uses; the sender's unit tests give a
//! scripted one (`send/scripted.rs`) that answers from a queue and records what it was
//! sent, so every verdict is tested without a server (docs/architecture.md, "Where a
//! change goes").

use super::retry::{self, TransportError};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// The largest answer read; a bigger one is treated as unreadable (and retried).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// One attempt's result, before classification.
#[derive(Debug, Clone)]
pub enum Reply {
    /// No HTTP answer: how the attempt failed, and what the client said.
    Transport(TransportError, String),
    Http {
        status: u16,
        retry_after: Option<Duration>,
        location: Option<String>,
        /// The server's `Date` header: its clock.
        date: Option<SystemTime>,
        /// `None` when the answer was larger than `MAX_ANSWER_BYTES` (not read).
        body: Option<Bytes>,
    },
}

/// The future of one POST. Boxed so that `Sender` holds any transport as
/// `Arc<dyn Transport>`: one allocation per request, next to a round trip.
pub type Posting<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// Sends a signed request body and brings back what came of it.
pub trait Transport: Send + Sync {
    /// Posts `body` to the signed `url`; no answer within `timeout` is
    /// `TransportError::Timeout`.
    fn post<'a>(&'a self, url: &'a str, body: Bytes, timeout: Duration) -> Posting<'a>;
}

/// The transport of a run: a reqwest client with keep-alive connections.
pub struct Reqwest {
    client: reqwest::Client,
}

impl Reqwest {
    /// `timeout` also bounds connecting (at most 10 s); `pool`: idle connections kept.
    pub fn new(timeout: Duration, pool: usize, insecure: bool) -> crate::Result<Reqwest> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true)
            // A POST redirected becomes a GET elsewhere: never follow, report it.
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(insecure)
            .user_agent(concat!("czload/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Reqwest { client })
    }
}

impl Transport for Reqwest {
    fn post<'a>(&'a self, url: &'a str, body: Bytes, timeout: Duration) -> Posting<'a> {
        Box::pin(post(&self.client, url, body, timeout))
    }
}

/// Posts `body` to the signed `url` and reads the answer (up to `MAX_ANSWER_BYTES`).
async fn post(client: &reqwest::Client, url: &str, body: Bytes, timeout: Duration) -> Reply {
    let resp = client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json; charset=utf8")
        .body(body)
        .send()
        .await;
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let detail = error_chain(&e);
            let kind = retry::transport_kind(e.is_timeout(), e.is_connect(), &detail);
            return Reply::Transport(kind, detail);
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)));
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(300).collect::<String>());
    let date = resp
        .headers()
        .get("date")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok());
    let announced = resp.content_length().unwrap_or(0);
    if announced > MAX_ANSWER_BYTES as u64 {
        // Announced too large: not worth reading (and dropping `resp` closes it).
        return Reply::Http {
            status,
            retry_after,
            location,
            date,
            body: None,
        };
    }
    // An answer without a length is still read only up to the cap, chunk by chunk.
    let mut buf = Vec::with_capacity(announced as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > MAX_ANSWER_BYTES {
                    return Reply::Http {
                        status,
                        retry_after,
                        location,
                        date,
                        body: None,
                    };
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => {
                // The answer had begun: nothing here can be a connect or TLS failure.
                let kind = if e.is_timeout() {
                    TransportError::Timeout
                } else {
                    TransportError::Broken
                };
                return Reply::Transport(kind, error_chain(&e));
            }
        }
    }
    tracing::debug!(
        "answer HTTP {status}: {}",
        String::from_utf8_lossy(&buf[..buf.len().min(500)])
    );
    Reply::Http {
        status,
        retry_after,
        location,
        date,
        body: Some(Bytes::from(buf)),
    }
}

/// The error with its causes, which reqwest keeps apart ("error sending request" alone
/// says nothing).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
