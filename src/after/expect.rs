//! `czload verify --data`: what a load sent as each row's `data`, found again by reading
//! its inputs with the flags its manifest recorded (the reading flags of each input and
//! the mapping flags), through the load's own sources and mapping plans.
//!
//! In: a results log and the rows wanted. Out: each wanted row's data as sent (JSON
//! text). Only the wanted rows' data is kept.

use super::logs::Log;
use crate::cli::LoadArgs;
use crate::config::LoadConfig;
use crate::error::{Error, Result};
use crate::mapping::{Mapped, Plan};
use crate::source::Records;
use clap::{Args, FromArgMatches};
use std::collections::{HashMap, HashSet};

/// The data the load sent for each of `want` (input, row) of `log`.
pub fn sent_data(log: &Log, want: &HashSet<(u32, u64)>) -> Result<HashMap<(u32, u64), String>> {
    let mut got = HashMap::new();
    let reading = log
        .manifest
        .reading
        .as_ref()
        .map(|r| r.inputs.clone())
        .unwrap_or_default();
    for (k, id) in log.manifest.inputs.iter().enumerate() {
        let k = k as u32;
        if !want.iter().any(|(i, _)| *i == k) {
            continue;
        }
        let mut argv = vec!["load".to_owned(), id.path.clone(), "--dry-run".to_owned()];
        let flags = reading
            .get(k as usize)
            .into_iter()
            .flatten()
            .chain(&log.manifest.flags);
        for f in flags {
            match f.split_once(' ') {
                Some((flag, v)) => argv.extend([flag.to_owned(), unquote(v).to_owned()]),
                None => argv.push(f.clone()),
            }
        }
        let cmd = <LoadArgs as Args>::augment_args(clap::Command::new("load"));
        let m = cmd.try_get_matches_from(&argv).map_err(|e| {
            Error::Usage(format!(
                "--data: the flags of {} no longer parse: {e}",
                log.path.display()
            ))
        })?;
        let args = LoadArgs::from_arg_matches(&m).map_err(|e| Error::Usage(e.to_string()))?;
        let cfg = LoadConfig::for_check(&args)?;
        let input = &cfg.inputs[0];
        let mapped = crate::read::open_alone(&cfg, input)?;
        let mut keep = |row: u64, op: &[u8]| {
            if want.contains(&(k, row)) {
                if let Some(d) = data_of(op) {
                    got.insert((k, row), d);
                }
            }
        };
        match mapped {
            Mapped::Fields(mut src, plan, _) => each(&mut *src, &plan, &mut keep)?,
            Mapped::Objects(mut src, plan, _) => each(&mut *src, &plan, &mut keep)?,
        }
    }
    Ok(got)
}

/// A manifest flag's value as typed: the delimiter is written quoted for a shell
/// (`--delimiter ';'`, `'\t'`, `"'"`).
fn unquote(v: &str) -> &str {
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Maps every record of `src` as the load did, handing each op to `keep`.
fn each<P: Plan>(
    src: &mut dyn Records<Record = P::Record>,
    plan: &P,
    keep: &mut dyn FnMut(u64, &[u8]),
) -> Result<()> {
    let (mut buf, mut r) = (Vec::new(), String::new());
    while let Some((row, _)) = src
        .advance()
        .map_err(|e| Error::Other(format!("--data: cannot read an input again: {e:?}")))?
    {
        buf.clear();
        if plan
            .write_op(src.record(), 0, row, &mut buf, &mut r)
            .is_ok()
        {
            keep(row, &buf);
        }
    }
    Ok(())
}

/// An op's `data` as JSON text.
fn data_of(op: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Op<'a> {
        #[serde(borrow)]
        data: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Op>(op)
        .ok()
        .and_then(|o| o.data)
        .map(|d| d.get().to_owned())
}

/// How the task's data differs from what was sent: each key sent whose value the task
/// lacks or holds otherwise (a process may add keys; those are not differences).
pub fn differences(sent: &str, task: Option<&str>) -> Vec<String> {
    let parse =
        |s: &str| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).ok();
    let (Some(sent), task) = (parse(sent), task.and_then(parse).unwrap_or_default()) else {
        return vec!["what was sent cannot be read again".into()];
    };
    sent.iter()
        .filter(|(k, v)| task.get(*k) != Some(v))
        .map(|(k, v)| match task.get(k) {
            None => format!("{k}: sent {v}, the task has none"),
            Some(t) => format!("{k}: sent {v}, the task has {t}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_is_a_key_sent_that_the_task_holds_otherwise() {
        assert!(differences(r#"{"a":1,"b":"x"}"#, Some(r#"{"b":"x","a":1,"c":2}"#)).is_empty());
        assert_eq!(
            differences(r#"{"a":1,"b":"x"}"#, Some(r#"{"a":2}"#)),
            [
                "a: sent 1, the task has 2",
                "b: sent \"x\", the task has none"
            ]
        );
        assert_eq!(
            differences(r#"{"a":1}"#, None),
            ["a: sent 1, the task has none"]
        );
    }

    #[test]
    fn quoted_values_are_unquoted() {
        assert_eq!(unquote("';'"), ";");
        assert_eq!(unquote("'\\t'"), "\\t");
        assert_eq!(unquote("\"'\""), "'");
        assert_eq!(unquote("a'b"), "a'b");
    }

    #[test]
    fn the_data_of_an_op() {
        assert_eq!(
            data_of(br#"{"id":"1","type":"create","data":{"a":[1,2]}}"#).as_deref(),
            Some(r#"{"a":[1,2]}"#)
        );
        assert_eq!(data_of(br#"{"id":"1"}"#), None);
    }
}
