//! Arbitrary bytes as an answer body: wherever czload's fast answer reader answers, it
//! must give exactly what serde gives (src/answer.rs).
#![no_main]

use czload::send::answer::{parse_fast, parse_serde};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fast) = parse_fast(data) {
        assert_eq!(Some(fast), parse_serde(data));
    }
});
