//! The bare client of `benches/e2e.sh`: the fastest a client can feed a running sandbox.
//!
//! It signs one body of `--ops` creates once, then sends those same bytes over
//! `--connections` keep-alive HTTP/1.1 connections for `--seconds` or `--requests` in all
//! (one request in flight per connection, as czload's `--concurrency`), and prints one
//! line of JSON with the ops the sandbox answered per second. The ops carry no `ref`, so
//! every op creates a task. With `--refs` every op carries a ref of its own, like
//! czload's, and every request is a body of its own, all signed before the clock starts.
//! All bodies carry the timestamp of the start, so a run must end within the sandbox's
//! `--max-skew` (300 s by default): e2e.sh's runs take seconds.
//! No parsing beyond the status line and `content-length`, no allocation per request:
//! whatever czload reaches below this is czload's own cost.
//!
//!     COREZOID_API_SECRET=s cargo bench --bench bare_client -- \
//!         --addr 127.0.0.1:PORT --login 1001 --conv 555 --connections 4 --seconds 5
//!     ... --requests 10000 [--refs]
//!
//! Only loopback addresses are accepted: it is a load generator.

#[path = "support/http.rs"]
mod http;

use czload::sign::{self, Secret};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    // `cargo bench` appends `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args().collect();
    let Some(addr) = arg(&args, "--addr") else {
        // `cargo bench` with no arguments runs every bench: this one has nothing to do.
        eprintln!("bare_client: no --addr given; nothing to do (see benches/e2e.sh)");
        return;
    };
    let addr: SocketAddr = addr.parse().expect("--addr HOST:PORT");
    assert!(addr.ip().is_loopback(), "--addr must be a loopback address");
    let num = |name: &str, default: u64| {
        arg(&args, name).map_or(default, |v| v.parse().expect("a number"))
    };
    let login = arg(&args, "--login").unwrap_or_else(|| "1001".into());
    let conv = num("--conv", 555);
    let conns = num("--connections", 4) as usize;
    let secs = num("--seconds", 5);
    let ops = num("--ops", 100) as usize;
    let secret = Secret::new(std::env::var("COREZOID_API_SECRET").expect("COREZOID_API_SECRET"));

    // `--requests N` sends N requests in all (instead of for `--seconds`), so that the
    // bare client and czload leave the sandbox's store the same size. `--refs` gives each
    // op a ref of its own, as czload's ops carry (so every request needs its own body:
    // all are built and signed before the clock starts); without it one body is sent
    // again and again.
    let requests = arg(&args, "--requests").map(|v| v.parse::<u64>().expect("a number"));
    let refs = args.iter().any(|a| a == "--refs");
    assert!(
        !refs || requests.is_some(),
        "--refs needs --requests: each request is a body of its own"
    );
    let bodies = if refs { requests.unwrap_or(1) } else { 1 };
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let bodies: Arc<[Vec<u8>]> = (0..bodies)
        .map(|r| {
            let body = make_body(conv, ops, refs.then_some(r as usize * ops));
            let sig = sign::sign(ts, &secret, body.as_bytes());
            let mut path = String::new();
            sign::write_url(&mut path, "", &login, ts, &sig);
            format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json; charset=utf8\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();

    let cpu_before = cpu_secs();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (bodies, stop, next, answered) =
                (bodies.clone(), stop.clone(), next.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect to the sandbox");
                s.set_nodelay(true).expect("nodelay");
                // A stuck server must not hang the benchmark.
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let r = next.fetch_add(1, Ordering::Relaxed);
                    if requests.is_some_and(|n| r >= n) {
                        break;
                    }
                    s.write_all(&bodies[r as usize % bodies.len()])
                        .expect("write");
                    read_answer(&mut s, &mut buf);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    if requests.is_none() {
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    }
    for w in workers {
        w.join().expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The CPU of sending alone, without building and signing the bodies.
    let send_cpu = cpu_secs() - cpu_before;
    let requests = answered.load(Ordering::Relaxed);
    let total_ops = requests * ops as u64;
    println!(
        r#"{{"connections":{conns},"ops_per_request":{ops},"elapsed_secs":{elapsed:.3},"requests":{requests},"ops":{total_ops},"ops_per_sec":{:.0},"send_cpu_secs":{send_cpu:.3}}}"#,
        total_ops as f64 / elapsed
    );
}

/// User plus system CPU seconds this process has used (Linux: /proc/self/stat, in clock
/// ticks, which are 1/100 s on every Linux this runs on).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (tick(11) + tick(12)) / 100.0
}

/// A body of `ops` creates: the same kind of task as the e2e input rows (ten string
/// fields, ~120 bytes of data), with refs `bare:N` from `first_ref` on when given.
fn make_body(conv: u64, ops: usize, first_ref: Option<usize>) -> String {
    let ops: Vec<String> = (0..ops)
        .map(|i| {
            let r = first_ref.map_or(String::new(), |f| format!(r#""ref":"bare:{}","#, f + i + 1));
            format!(
                r#"{{"id":"{i}","type":"create","obj":"task","conv_id":{conv},{r}"data":{{"id":"{}","name":"Customer {i:06}","email":"customer{i:06}@example.com","city":"Kyiv","country":"UA","amount":"{}.{:02}","qty":"{}","paid":"true","created_at":"2024-05-01T12:00:00Z","note":"first order via web"}}}}"#,
                100_000 + i,
                i * 37,
                i % 100,
                i % 17
            )
        })
        .collect();
    format!(r#"{{"ops":[{}]}}"#, ops.join(","))
}

/// Reads one HTTP/1.1 answer (headers, then `content-length` bytes); it must be a 200 with
/// `"request_proc":"ok"`, or the figure would count refusals.
fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut have = 0;
    loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[have..]).expect("read");
        assert!(n > 0, "the sandbox closed the connection");
        have += n;
        let Some((start, len)) = http::head(&buf[..have]) else {
            continue;
        };
        let total = start + len;
        if buf.len() < total {
            buf.resize(total, 0);
        }
        while have < total {
            let n = s.read(&mut buf[have..total]).expect("read body");
            assert!(n > 0, "the sandbox closed the connection mid-answer");
            have += n;
        }
        let answer = &buf[start..total];
        let ok = br#""request_proc":"ok""#;
        assert!(
            answer.windows(ok.len()).any(|w| w == ok),
            "{}",
            String::from_utf8_lossy(answer)
        );
        return;
    }
}
