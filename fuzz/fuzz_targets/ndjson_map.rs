//! Arbitrary bytes as NDJSON lines through `NdjsonSource` and `NdjsonPlan::write_op`,
//! with every ref mode, `--data-field`, `--exclude` and a per-line conv id.
#![no_main]

mod common;

use czload::mapping::{NdjsonPlan, Plan, RefMode};
use czload::source::ndjson::NdjsonSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [sel, sel2, rest @ ..] = data else { return };
    let mut cfg = common::config(*sel, "id", "conv", Vec::new());
    if sel2 & 1 != 0 {
        cfg.data_field = Some("d".into());
    }
    if sel2 & 2 != 0 {
        cfg.exclude = vec!["x".into(), "_czload_ref".into()];
    }
    let with_ref = cfg.ref_mode != RefMode::None;
    let Ok(plan) = NdjsonPlan::new(&cfg, "fuzz.ndjson") else {
        return;
    };
    let max_line = if sel2 & 4 != 0 { 64 } else { 1 << 20 };
    let reader: Box<dyn std::io::BufRead> = Box::new(std::io::Cursor::new(rest.to_vec()));
    let mut src = NdjsonSource::new(reader, max_line);
    let mut buf = b"{\"ops\":[".to_vec();
    let mut ref_out = String::new();
    let mut id = 0u64;
    while let Ok(Some((row, _line))) = src.advance() {
        id += 1;
        if src.overlong().is_some() {
            // The pipeline rejects an overlong line without mapping it.
            continue;
        }
        let start = buf.len();
        let res = plan.write_op(src.line(), id, row, &mut buf, &mut ref_out);
        common::check(res, &buf[start..], id, &ref_out, with_ref);
        buf.truncate(start);
    }
});
