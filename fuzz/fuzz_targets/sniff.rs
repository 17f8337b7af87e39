//! Arbitrary bytes as the first bytes of an input, under every claimed reading, through
//! `sniff::check`: it never panics, and a refusal names at least one reason.
#![no_main]

use czload::source::sniff::{check, Claim};
use czload::source::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else { return };
    let format = Format::by_name(["csv", "ndjson", "json-array"][(sel % 3) as usize]).expect("registered");
    let encoding = [
        None,
        Some(encoding_rs::UTF_16LE),
        Some(encoding_rs::UTF_16BE),
        Some(encoding_rs::WINDOWS_1251),
    ][((sel >> 2) & 3) as usize];
    let claim = Claim {
        format,
        format_flag: sel & 16 != 0,
        encoding,
        encoding_flag: sel & 32 != 0,
        delimiter: [b',', b';', b'\t', b'|'][((sel >> 6) & 3) as usize],
        delimiter_flag: sel & 16 != 0,
        has_header: sel & 32 == 0,
    };
    if let Err(r) = check(rest, sel & 1 != 0, &claim) {
        assert!(!r.why.is_empty(), "{r:?}");
    }
});
