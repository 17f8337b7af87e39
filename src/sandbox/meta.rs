//! The read-only process ops (docs/protocol.md, Process metadata): `show conv` and
//! `list conv_params`. In: the op's `type`, `obj` and `obj_id`, and the configured
//! parameters. Out: the fields of the op's answer, or a refusal.

use crate::error::{Error, Result};
use serde_json::{json, Map, Value};

/// A declared input parameter: `--param NAME:TYPE[:required]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// `string`, `number`, `boolean`, `object` or `array`.
    pub type_: String,
    pub required: bool,
}

impl Param {
    pub fn parse(s: &str) -> Result<Param> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--param {s:?}: {why}; expected NAME:TYPE[:required], e.g. --param amount:number:required"
            ))
        };
        let mut parts = s.split(':');
        let name = parts
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("no name"))?;
        let type_ = parts.next().ok_or_else(|| bad("no type"))?;
        if !["string", "number", "boolean", "object", "array"].contains(&type_) {
            return Err(bad(
                "the type is one of string, number, boolean, object, array",
            ));
        }
        let required = match parts.next() {
            None => false,
            Some("required") => true,
            Some(_) => return Err(bad("the third part can only be `required`")),
        };
        if parts.next().is_some() {
            return Err(bad("too many parts"));
        }
        Ok(Param {
            name: name.to_string(),
            type_: type_.to_string(),
            required,
        })
    }
}

/// Whether `(type, obj)` is one of the metadata ops.
pub(crate) fn is_meta(type_: &str, obj: &str) -> bool {
    matches!((type_, obj), ("show", "conv") | ("list", "conv_params"))
}

/// The answer's fields for a metadata op on process `conv` (which exists).
pub(crate) fn answer(type_: &str, conv: u64, params: &[Param]) -> Map<String, Value> {
    let v = if type_ == "show" {
        json!({
            "obj_id": conv,
            "status": "active",
            "title": format!("sandbox process {conv}"),
            "privs": [
                {"type": "create", "list_obj": ["task"]},
                {"type": "modify", "list_obj": ["task"]},
                {"type": "view", "list_obj": ["task"]}
            ]
        })
    } else {
        let list: Vec<Value> = params
            .iter()
            .map(|p| {
                let mut flags = vec!["input"];
                if p.required {
                    flags.push("required");
                }
                json!({"name": p.name, "type": p.type_, "descr": "", "flags": flags})
            })
            .collect();
        json!({"obj_id": conv, "params": list, "ref_mask": false})
    };
    match v {
        Value::Object(m) => m,
        _ => unreachable!("built as an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_bad_ones_name_the_flag() {
        assert_eq!(
            Param::parse("amount:number:required").unwrap(),
            Param {
                name: "amount".into(),
                type_: "number".into(),
                required: true
            }
        );
        assert!(!Param::parse("note:string").unwrap().required);
        for bad in [
            "amount",
            "amount:num",
            ":string",
            "a:string:optional",
            "a:string:required:x",
        ] {
            let e = Param::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--param"), "{e}");
        }
    }
}
