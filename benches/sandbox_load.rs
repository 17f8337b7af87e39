//! Sandbox capacity: how many ops per second the in-process sandbox applies.
//!
//! One pre-signed body of 100 creates (no refs, so every op creates a task) is sent over N
//! keep-alive connections for a few seconds by a minimal raw HTTP/1.1 client (one write of
//! the prepared bytes, one read of the answer), so the client costs little of the CPU it
//! shares with the server. At the end the sandbox's own count must equal the ops the
//! client saw answered, or the run fails.
//!
//! `--rps-shape window|bucket|sliding` turns on the RPS limit in that shape, set too high
//! to refuse anything (the sliding window's largest, 2^20 - 1 ops/s, for all three), so
//! the figure shows what the limiter costs on the hot path.
//!
//!     cargo bench --bench sandbox_load -- [--connections N] [--seconds S] [--ops N]
//!         [--rps-shape SHAPE]

#[path = "support/http.rs"]
mod http;

use czload::sandbox::{RpsShape, Sandbox, SandboxConfig};
use czload::sign::{self, Secret};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `--rps-shape`: `None` for no limit.
fn shape() -> Option<RpsShape> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--rps-shape")?;
    Some(match args.get(i + 1).map(String::as_str) {
        Some("window") => RpsShape::Window,
        Some("bucket") => RpsShape::Bucket,
        Some("sliding") => RpsShape::Sliding,
        other => panic!("--rps-shape window|bucket|sliding, not {other:?}"),
    })
}

fn main() {
    let conns = arg("--connections", 8) as usize;
    let secs = arg("--seconds", 3);
    let ops_per_req = arg("--ops", 100) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(conns, secs, ops_per_req, shape()));
}

async fn run(conns: usize, secs: u64, ops_per_req: usize, shape: Option<RpsShape>) {
    let secret = Secret::new("bench-secret");
    let mut cfg = SandboxConfig::new("1001", secret.clone(), vec![555]);
    if let Some(shape) = shape {
        // Beyond what the sandbox serves on this machine: the limit is counted, and
        // (checked below: no op errors) never refuses.
        cfg.rps = Some((1 << 20) - 1);
        cfg.rps_shape = shape;
    }
    let sb = Sandbox::start(cfg).await.expect("sandbox");

    let ops: Vec<String> = (0..ops_per_req)
        .map(|i| {
            format!(
                r#"{{"id":"{i}","type":"create","obj":"task","conv_id":555,"data":{{"n":{i},"name":"customer-{i}","sum":12.5,"paid":false}}}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"ops":[{}]}}"#, ops.join(","));
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sig = sign::sign(ts, &secret, body.as_bytes());
    let mut url = String::new();
    sign::write_url(&mut url, "", "1001", ts, &sig);
    let request: Arc<[u8]> = format!(
        "POST {url} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        sb.addr(),
        body.len()
    )
    .into_bytes()
    .into();

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let started = Instant::now();
    for _ in 0..conns {
        let (request, stop, answered) = (request.clone(), stop.clone(), answered.clone());
        let addr = sb.addr();
        workers.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                s.write_all(&request).await.expect("write");
                read_answer(&mut s, &mut buf).await;
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = answered.load(Ordering::Relaxed);
    let ops = requests * ops_per_req as u64;
    let stats = sb.stats();
    assert_eq!(stats.created, ops, "the sandbox created what it answered");
    assert_eq!(stats.op_errors, 0);
    println!(
        "sandbox_load: {conns} connections, {ops_per_req} ops/request, rps limit {shape:?}, {elapsed:.1} s: {requests} requests, {ops} ops, {:.0} requests/s, {:.0} ops/s",
        requests as f64 / elapsed,
        ops as f64 / elapsed
    );
    sb.shutdown().await;
}

/// Reads one HTTP/1.1 answer (headers, then `content-length` bytes) and checks it is a 200.
async fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut have = 0;
    loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[have..]).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        have += n;
        if let Some((start, len)) = http::head(&buf[..have]) {
            let total = start + len;
            if buf.len() < total {
                buf.resize(total, 0);
            }
            while have < total {
                let n = s.read(&mut buf[have..total]).await.expect("read body");
                assert!(n > 0, "the server closed the connection mid-answer");
                have += n;
            }
            return;
        }
    }
}
