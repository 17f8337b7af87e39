//! Signing throughput against its limit, in one run.
//!
//! Three variants per body size (1 KiB, 64 KiB, 1 MiB), reported in bytes/s:
//! - `czload`: `czload::sign::sign`, one SHA-1 state fed ts, secret, body, secret;
//! - `sha1_body`: a raw SHA-1 of the body alone: the limit, since signing must hash the
//!   body at least once;
//! - `naive`: `format!` the concatenation, then `hex::encode` (what the SDKs do).
//!
//! The issue's goal is `czload` ≥ 95% of `sha1_body` at 64 KiB and 1 MiB. Every variant's
//! output goes through `black_box` and the signing ones are compared with the expected
//! signature once per iteration, so the optimiser cannot drop the work.
//!
//!     cargo bench --bench sign -- --warm-up-time 1 --measurement-time 3

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use czload::sign::{sign, Secret};
use sha1::{Digest, Sha1};
use std::hint::black_box;

const TS: u64 = 1_700_000_000;

fn body(len: usize) -> Vec<u8> {
    // Printable JSON-ish bytes; the content does not change SHA-1's speed, but the naive
    // variant needs valid UTF-8 to go through `format!`.
    let unit = br#"{"id":"17","type":"create","obj":"task","conv_id":555,"data":{"sum":12.5}},"#;
    unit.iter().copied().cycle().take(len).collect()
}

fn naive(ts: u64, secret: &str, body: &str) -> String {
    let joined = format!("{ts}{secret}{body}{secret}");
    hex::encode(Sha1::digest(joined.as_bytes()))
}

fn bench_sign(c: &mut Criterion) {
    let secret_text = "0123456789abcdef0123456789abcdef01234567";
    let secret = Secret::new(secret_text);
    let mut g = c.benchmark_group("sign");
    for (label, len) in [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        let b = body(len);
        let text = std::str::from_utf8(&b).expect("ASCII body");
        let want = sign(TS, &secret, &b);
        // The three must agree, or the comparison is meaningless.
        assert_eq!(naive(TS, secret_text, text).as_bytes(), &want[..]);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("czload", label), &b, |bn, b| {
            bn.iter(|| {
                let sig = sign(black_box(TS), &secret, black_box(b));
                assert!(black_box(sig) == want);
            })
        });
        g.bench_with_input(BenchmarkId::new("sha1_body", label), &b, |bn, b| {
            bn.iter(|| black_box(Sha1::digest(black_box(b))))
        });
        g.bench_with_input(BenchmarkId::new("naive", label), &text, |bn, t| {
            bn.iter(|| {
                let sig = naive(black_box(TS), secret_text, black_box(t));
                assert!(black_box(sig).as_bytes() == want);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_sign);
criterion_main!(benches);
