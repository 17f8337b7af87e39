//! Mapping and batching: input bytes -> signed request bodies, no network, on one core.
//!
//! The loop mirrors the reader thread of `czload::pipeline` (`read_inputs`): a source
//! hands out one reused record, the plan writes its op straight into the open body, the
//! batcher commits it with its ref and its raw row (CSV rows re-encoded by one
//! `csv::Writer`, as for the retry file), and every full body is signed with a URL written
//! into a reused string. The channel to the senders is left out: it is one
//! `blocking_send` per 100 rows.
//!
//! Beside it, in the same run, the limits of the same bytes:
//! - `csv/parse_limit`: the csv crate merely counting records (same reader settings);
//! - `ndjson/parse_limit`: splitting lines and validating each with serde_json
//!   (`IgnoredAny`), the least any NDJSON loader must do.
//!
//! Inputs: 10 columns, rows of about 120 bytes; the default mapping (every column a string,
//! auto refs `{file}:{row}`, 100 ops per body). `csv_typed` types four of the columns.
//! Throughput is in MB (10^6 bytes) of input per second; rows/s is 100,000 rows divided by
//! the time per iteration (each iteration is the whole input).
//!
//!     cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use czload::batch::{Batch, Batcher, RowKey};
use czload::mapping::{
    ColType, CsvPlan, EmptyPolicy, MappingConfig, NdjsonPlan, OpKind, Plan, RefMode, Target,
};
use czload::sign::{self, Secret};
use czload::source::csv::{CsvSource, RowEncoder};
use czload::source::ndjson::NdjsonSource;
use std::cell::RefCell;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Cursor};
use std::rc::Rc;

const ROWS: usize = 100_000;
const BATCH: usize = 100;
const TS: u64 = 1_700_000_000;

const HEADER: &str = "id,name,email,city,country,amount,qty,paid,created_at,note";

/// Row `i` as ten fields: realistic mixed cells, ~120 bytes as CSV.
fn fields(i: usize) -> [String; 10] {
    const CITIES: [&str; 4] = ["Kyiv", "Lviv", "Odesa", "Kharkiv"];
    [
        (100_000 + i).to_string(),
        format!("Customer {i:06}"),
        format!("customer{i:06}@example.com"),
        CITIES[i % 4].to_string(),
        "UA".to_string(),
        format!("{}.{:02}", (i * 37) % 10_000, i % 100),
        (i % 17).to_string(),
        i.is_multiple_of(3).to_string(),
        format!("2024-05-{:02}T12:{:02}:00Z", 1 + i % 28, i % 60),
        "first order via web".to_string(),
    ]
}

fn csv_bytes() -> Bytes {
    let mut s = String::from(HEADER);
    s.push('\n');
    for i in 0..ROWS {
        s.push_str(&fields(i).join(","));
        s.push('\n');
    }
    Bytes::from(s)
}

fn ndjson_bytes() -> Bytes {
    let names: Vec<&str> = HEADER.split(',').collect();
    let mut s = String::new();
    for i in 0..ROWS {
        let f = fields(i);
        // The same row with JSON types: numbers and booleans bare, the rest strings.
        s.push('{');
        for (k, (name, v)) in names.iter().zip(f.iter()).enumerate() {
            if k > 0 {
                s.push(',');
            }
            let bare = matches!(*name, "id" | "amount" | "qty" | "paid");
            if bare {
                s.push_str(&format!("\"{name}\":{v}"));
            } else {
                s.push_str(&format!("\"{name}\":\"{v}\""));
            }
        }
        s.push_str("}\n");
    }
    Bytes::from(s)
}

fn mapping(types: Vec<(String, ColType)>) -> MappingConfig {
    MappingConfig {
        op: OpKind::CREATE,
        target: Target::Conv(555),
        company_id: None,
        ref_mode: RefMode::Auto,
        types,
        exclude: Vec::new(),
        empty: EmptyPolicy::Keep,
        data_field: None,
        max_task_bytes: 131_072,
        edits: Default::default(),
    }
}

/// As the real input: a 256 KiB `BufReader` over the bytes (the page cache's copy).
fn reader(data: &Bytes) -> Box<dyn BufRead> {
    Box::new(BufReader::with_capacity(
        256 * 1024,
        Cursor::new(data.clone()),
    ))
}

/// What the sink saw, to check every row arrived in a signed body.
#[derive(Default)]
struct Tally {
    batches: usize,
    rows: usize,
    body_bytes: usize,
}

/// The sink: sign the body and write the URL, as the sender does per attempt.
fn signing_sink(tally: Rc<RefCell<Tally>>) -> impl FnMut(Batch) {
    let secret = Secret::new("0123456789abcdef0123456789abcdef01234567");
    let mut url = String::with_capacity(256);
    move |b: Batch| {
        let sig = sign::sign(TS, &secret, &b.body);
        sign::write_url(&mut url, "http://127.0.0.1:8080", "1001", TS, &sig);
        black_box(&url);
        let mut t = tally.borrow_mut();
        t.batches += 1;
        t.rows += b.len();
        t.body_bytes += b.body.len();
        // The batch drops here; in the real run the journal thread drops it later.
    }
}

/// The csv writer's output, readable while the writer lives (as in `pipeline.rs`).
#[derive(Clone, Default)]
struct SharedBuf(Rc<RefCell<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How the raw row for the retry file is encoded.
#[derive(Clone, Copy)]
enum Raw {
    /// As `pipeline.rs` does today: one `csv::Writer` over a shared buffer.
    CsvWriter,
    /// Through `czload::source::csv::RowEncoder` (proposed for `pipeline.rs`).
    RowEncoder,
}

fn run_csv(data: &Bytes, cfg: &MappingConfig, raw_mode: Raw) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let mut batcher = Batcher::new(BATCH, 4 << 20, signing_sink(tally.clone()));
    let mut src = CsvSource::new(reader(data), b',', true, "bench.csv").expect("header");
    let plan = CsvPlan::new(cfg, &src.header, "bench.csv").expect("plan");
    let add_ref_col = plan.auto_ref();
    let out = SharedBuf::default();
    let mut wtr = csv::WriterBuilder::new().from_writer(out.clone());
    let mut enc = RowEncoder::new(b',');
    let mut ref_buf = String::with_capacity(64);
    let mut id = 0u64;
    while let Some((row, line)) = src.advance().expect("well-formed CSV") {
        id += 1;
        let at = batcher.begin();
        let rec = src.record();
        plan.write_op(rec, id, row, batcher.buf(), &mut ref_buf)
            .expect("every row maps");
        let key = RowKey {
            id,
            input: 0,
            row,
            line,
        };
        batcher
            .commit(at, key, &ref_buf, |raw| match raw_mode {
                Raw::RowEncoder => enc.write(raw, rec, add_ref_col.then_some(ref_buf.as_bytes())),
                Raw::CsvWriter => {
                    if add_ref_col {
                        let _ =
                            wtr.write_record(rec.iter().chain(std::iter::once(ref_buf.as_bytes())));
                    } else {
                        let _ = wtr.write_byte_record(rec);
                    }
                    let _ = wtr.flush();
                    raw.append(&mut out.0.borrow_mut());
                }
            })
            .expect("fits");
    }
    batcher.flush();
    drop(batcher);
    Rc::try_unwrap(tally)
        .ok()
        .expect("sink dropped")
        .into_inner()
}

fn run_ndjson(data: &Bytes, cfg: &MappingConfig) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let mut batcher = Batcher::new(BATCH, 4 << 20, signing_sink(tally.clone()));
    let mut src = NdjsonSource::new(reader(data), (4 << 20) + 4096);
    let plan = NdjsonPlan::new(cfg, "bench.ndjson").expect("plan");
    let mut ref_buf = String::with_capacity(64);
    let mut id = 0u64;
    while let Some((row, line)) = src.advance().expect("readable") {
        id += 1;
        let at = batcher.begin();
        let text = src.line();
        plan.write_op(text, id, row, batcher.buf(), &mut ref_buf)
            .expect("every line maps");
        let key = RowKey {
            id,
            input: 0,
            row,
            line,
        };
        batcher
            .commit(at, key, &ref_buf, |raw| {
                // What `write_ndjson_raw` does for a line without `_czload_ref`.
                raw.extend_from_slice(b"{\"_czload_ref\":");
                serde_json::to_writer(&mut *raw, ref_buf.as_str()).expect("Vec");
                raw.push(b',');
                raw.extend_from_slice(&text[1..]);
                raw.push(b'\n');
            })
            .expect("fits");
    }
    batcher.flush();
    drop(batcher);
    Rc::try_unwrap(tally)
        .ok()
        .expect("sink dropped")
        .into_inner()
}

fn csv_count(data: &Bytes) -> usize {
    // The reader settings `CsvSource` uses.
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(reader(data));
    let mut rec = csv::ByteRecord::new();
    let mut n = 0;
    while rdr.read_byte_record(&mut rec).expect("CSV") {
        n += 1;
    }
    n - 1
}

fn ndjson_validate(data: &Bytes) -> usize {
    let mut r = reader(data);
    let mut line = Vec::with_capacity(4096);
    let mut n = 0;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).expect("read") == 0 {
            return n;
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&line).expect("JSON");
        n += 1;
    }
}

fn check(t: &Tally) {
    assert_eq!(t.rows, ROWS);
    assert_eq!(t.batches, ROWS.div_ceil(BATCH));
    assert!(t.body_bytes > ROWS * 100);
}

fn bench_pipeline(c: &mut Criterion) {
    let csv = csv_bytes();
    let nd = ndjson_bytes();
    let plain = mapping(Vec::new());
    let typed = mapping(vec![
        ("id".into(), ColType::Integer),
        ("amount".into(), ColType::Number),
        ("qty".into(), ColType::Integer),
        ("paid".into(), ColType::Bool),
    ]);
    let t = run_csv(&csv, &plain, Raw::CsvWriter);
    check(&t);
    // Both ways of encoding the retry rows must agree before either is timed.
    let t2 = run_csv(&csv, &plain, Raw::RowEncoder);
    check(&t2);
    assert_eq!(t.body_bytes, t2.body_bytes);
    eprintln!(
        "pipeline: {ROWS} rows; CSV {} bytes ({:.1} bytes/row), NDJSON {} bytes ({:.1} bytes/row); request bodies {:.1} bytes/op",
        csv.len(),
        csv.len() as f64 / ROWS as f64,
        nd.len(),
        nd.len() as f64 / ROWS as f64,
        t.body_bytes as f64 / ROWS as f64
    );

    let mut g = c.benchmark_group("csv");
    g.sample_size(10);
    g.throughput(Throughput::BytesDecimal(csv.len() as u64));
    g.bench_function("parse_limit", |b| {
        b.iter(|| assert_eq!(csv_count(black_box(&csv)), ROWS))
    });
    g.bench_function("czload", |b| {
        b.iter(|| check(&run_csv(black_box(&csv), &plain, Raw::CsvWriter)))
    });
    g.bench_function("czload_row_encoder", |b| {
        b.iter(|| check(&run_csv(black_box(&csv), &plain, Raw::RowEncoder)))
    });
    g.bench_function("czload_typed", |b| {
        b.iter(|| check(&run_csv(black_box(&csv), &typed, Raw::CsvWriter)))
    });
    g.finish();

    let mut g = c.benchmark_group("ndjson");
    g.sample_size(10);
    g.throughput(Throughput::BytesDecimal(nd.len() as u64));
    g.bench_function("parse_limit", |b| {
        b.iter(|| assert_eq!(ndjson_validate(black_box(&nd)), ROWS))
    });
    g.bench_function("czload", |b| {
        b.iter(|| check(&run_ndjson(black_box(&nd), &plain)))
    });
    g.finish();
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
