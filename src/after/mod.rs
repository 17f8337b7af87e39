//! After a load: the ops that name tasks already there, `show` and `delete`
//! (`steps.rs`), and what is built on them: `--op delete` on an input of `obj_id` / ref
//! rows (here), `czload verify` (`verify.rs`) and `czload undo` (`undo.rs`).

pub mod steps;

use crate::batch::Batch;
use crate::outcome::{Outcome, Status};
use crate::send::Sender;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::atomic::Ordering;
use steps::Want;

/// The parts of a mapped `--op delete` op that name its task: the process fields as
/// the mapping wrote them, and `obj_id` / `node_id` from the row's data.
#[derive(Deserialize)]
struct Mapped<'a> {
    #[serde(borrow)]
    conv_id: Option<&'a RawValue>,
    #[serde(borrow)]
    obj_alias: Option<&'a RawValue>,
    #[serde(borrow)]
    company_id: Option<&'a RawValue>,
    #[serde(default)]
    data: serde_json::Map<String, serde_json::Value>,
}

/// A string field of the row, when it is a non-empty string.
fn text(data: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    match data.get(key) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// `--op delete`: settles a batch the mapping wrote (each op's `data` the row) by a
/// `show` where the row gives no `node_id` and a `delete` by `obj_id` and `node_id`.
/// `refs_name_tasks`: the refs come from `--ref-column` or `--ref-template`; a generated
/// ref (`file:row`) names no task, so a row without an `obj_id` is then refused.
pub async fn delete_rows(
    sender: &Sender,
    batch: &Batch,
    refs_name_tasks: bool,
) -> Vec<Option<Outcome>> {
    let mut out: Vec<Option<Outcome>> = vec![None; batch.len()];
    let mut wants = Vec::with_capacity(batch.len());
    let mut back = Vec::with_capacity(batch.len());
    for (i, slot) in out.iter_mut().enumerate() {
        let Ok(m) = serde_json::from_slice::<Mapped>(batch.op(i)) else {
            *slot = Some(Outcome::new(Status::Rejected, 0).with_error("the op is not valid JSON"));
            continue;
        };
        let mut target = String::new();
        for (k, v) in [
            ("conv_id", m.conv_id),
            ("obj_alias", m.obj_alias),
            ("company_id", m.company_id),
        ] {
            if let Some(v) = v {
                target.push_str(&format!(",\"{k}\":{}", v.get()));
            }
        }
        let reference = batch
            .reference(i)
            .filter(|_| refs_name_tasks)
            .map(str::to_owned);
        let obj_id = text(&m.data, "obj_id");
        if obj_id.is_none() && reference.is_none() {
            *slot = Some(Outcome::new(Status::Rejected, 0).with_error(
                "the row has no obj_id, and no ref names its task (--ref-column or --ref-template; a generated ref names none)",
            ));
            continue;
        }
        wants.push(Want {
            id: batch.rows[i].id,
            target,
            node_id: text(&m.data, "node_id").filter(|_| obj_id.is_some()),
            obj_id,
            reference,
        });
        back.push(i);
    }
    // Refused here, never handed to the sender: counted as it counts rows in flight.
    let refused = (batch.len() - wants.len()) as u64;
    sender.stats.rows.fetch_add(refused, Ordering::Relaxed);
    let settled = steps::delete(sender, &wants).await;
    for (o, i) in settled.into_iter().zip(back) {
        out[i] = o;
    }
    out
}
