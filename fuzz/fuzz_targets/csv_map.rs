//! Arbitrary bytes as a CSV input (header + rows) through `CsvSource` and
//! `CsvPlan::write_op`, with typed columns, every ref mode and empty policy.
#![no_main]

mod common;

use czload::mapping::{ColType, CsvPlan, Plan, RefMode};
use czload::source::csv::CsvSource;
use libfuzzer_sys::fuzz_target;

const TYPES: [ColType; 6] = [
    ColType::Number,
    ColType::NumberComma,
    ColType::Integer,
    ColType::Bool,
    ColType::Json,
    ColType::String,
];

fuzz_target!(|data: &[u8]| {
    let [sel, sel2, rest @ ..] = data else { return };
    let delimiter = [b',', b';', b'\t', b'|'][(sel2 & 3) as usize];
    let has_header = sel2 & 4 == 0;
    let reader: Box<dyn std::io::BufRead> = Box::new(std::io::Cursor::new(rest.to_vec()));
    let Ok(mut src) = CsvSource::new(reader, delimiter, has_header, "fuzz.csv") else {
        return;
    };
    let header = src.header.clone();
    // Column types rotate over the header so that every type meets every kind of cell.
    let types = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.clone(), TYPES[(i + (sel2 >> 3) as usize) % TYPES.len()]))
        .collect();
    let first = header.first().cloned().unwrap_or_default();
    let last = header.last().cloned().unwrap_or_default();
    let cfg = common::config(*sel, &first, &last, types);
    let with_ref = cfg.ref_mode != RefMode::None;
    let Ok(plan) = CsvPlan::new(&cfg, &header, "fuzz.csv") else {
        return;
    };
    // Ops go after something, as in a request body: write_op must not depend on an empty buffer.
    let mut buf = b"{\"ops\":[".to_vec();
    let mut ref_out = String::new();
    let mut id = 0u64;
    let mut last_line = 0;
    while let Ok(Some((row, line))) = src.advance() {
        // Rows come in file order, so their lines never go back.
        assert!(line >= last_line, "line {line} after line {last_line}");
        last_line = line;
        id += 1;
        let start = buf.len();
        let res = plan.write_op(src.record(), id, row, &mut buf, &mut ref_out);
        common::check(res, &buf[start..], id, &ref_out, with_ref);
        buf.truncate(start);
    }
});
