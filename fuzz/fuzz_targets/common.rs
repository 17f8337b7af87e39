//! What both targets check about one mapped row.

use czload::mapping::{ColType, EmptyPolicy, MappingConfig, OpKind, RefMode, Reject, Target};
use serde_json::Value;

/// A mapping config picked by the fuzzer's selector byte: every ref mode, both targets,
/// every empty policy, and a task size limit small enough to be hit.
pub fn config(
    sel: u8,
    ref_field: &str,
    conv_field: &str,
    types: Vec<(String, ColType)>,
) -> MappingConfig {
    MappingConfig {
        op: if sel & 0x40 == 0 {
            OpKind::CREATE
        } else {
            OpKind::MODIFY
        },
        target: if sel & 0x80 == 0 {
            Target::Conv(555)
        } else {
            Target::Column(conv_field.to_string())
        },
        company_id: (sel & 0x20 != 0).then(|| "co\"mp\u{e9}".to_string()),
        ref_mode: match sel & 3 {
            0 => RefMode::Auto,
            1 => RefMode::Column(ref_field.to_string()),
            2 => RefMode::Template(format!("r-{{{{{}}}}}-{{{ref_field}}}", "lit")),
            _ => RefMode::None,
        },
        types,
        exclude: Vec::new(),
        empty: match (sel >> 2) & 3 {
            0 => EmptyPolicy::Keep,
            1 => EmptyPolicy::Omit,
            _ => EmptyPolicy::Null,
        },
        data_field: None,
        max_task_bytes: if sel & 0x10 == 0 { 131_072 } else { 48 },
    }
}

/// The invariants of `write_op`: an accepted row is one JSON object with the id it was
/// given, the ref it reported, and a `data` object; a rejected row says why.
pub fn check(res: Result<(), Reject>, op: &[u8], id: u64, ref_out: &str, with_ref: bool) {
    match res {
        Ok(()) => {
            let v: Value = match serde_json::from_slice(op) {
                Ok(v) => v,
                // NDJSON numbers beyond a double (`1e400`) pass through by design: valid
                // JSON grammar, checking them costs a fifth of the NDJSON mapping, and a
                // server that refuses them gets the request split and that row rejected.
                // Everything else must read back.
                Err(e) if e.to_string().contains("number out of range") => return,
                Err(e) => panic!(
                    "op is not valid JSON ({e}): {}",
                    String::from_utf8_lossy(op)
                ),
            };
            let o = v.as_object().expect("op is an object");
            assert!(o["data"].is_object(), "data is not an object: {v}");
            assert_eq!(o["id"], Value::String(id.to_string()), "{v}");
            if with_ref {
                assert!(!ref_out.is_empty() && ref_out.chars().count() <= 255);
                assert_eq!(o["ref"], Value::String(ref_out.to_string()), "{v}");
            } else {
                assert!(o.get("ref").is_none(), "{v}");
            }
            assert!(o["conv_id"].as_u64().is_some_and(|c| c > 0), "{v}");
        }
        Err(Reject(reason)) => assert!(!reason.trim().is_empty(), "a reject without a reason"),
    }
}
