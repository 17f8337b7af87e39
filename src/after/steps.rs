//! Show and delete, as requests of 100 ops through the load's [`Sender`]: paced by the
//! same controller, resent by the same rules, stopped by the same token.
//!
//! In: [`Want`]s, each a task named by `obj_id` (and maybe `node_id`) or by ref, with the
//! process it is in. Out: one `Outcome` per want, or `None` where a stop left it unsettled.
//! A delete needs the node the task is in; a want without one is shown first, and
//! deleted with the node the show answered (docs/protocol.md, Task show, modify and
//! delete). Both are safe to send again, so every op carries a ref for the sender (the
//! task's, or its obj_id) and none is ever `ambiguous`.

use crate::batch::{Batch, RowMeta};
use crate::mapping::write_json_str;
use crate::outcome::{Outcome, Status};
use crate::send::Sender;

/// One task to show or delete.
#[derive(Debug, Clone, Default)]
pub struct Want {
    /// The op id (unique within the run), to match its answers.
    pub id: u64,
    /// The fields naming the process, JSON members each with a leading comma:
    /// `,"conv_id":555` or `,"obj_alias":"orders","company_id":"c1"`.
    pub target: String,
    pub obj_id: Option<String>,
    pub node_id: Option<String>,
    /// The task's ref; a show by ref when there is no `obj_id`.
    pub reference: Option<String>,
}

/// Which op a request carries for a want.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Show,
    Delete,
}

/// A request body of ops for `wants[i]` for each `i` of `which`, in that order.
fn batch_of(wants: &[Want], which: &[usize], step: Step) -> Batch {
    let mut body = br#"{"ops":["#.to_vec();
    let mut rows = Vec::with_capacity(which.len());
    let mut refs = String::new();
    for (n, &i) in which.iter().enumerate() {
        let w = &wants[i];
        if n > 0 {
            body.push(b',');
        }
        let at = body.len() as u32;
        body.extend_from_slice(br#"{"id":""#);
        body.extend_from_slice(itoa::Buffer::new().format(w.id).as_bytes());
        body.extend_from_slice(match step {
            Step::Show => br#"","type":"show","obj":"task""#.as_slice(),
            Step::Delete => br#"","type":"delete","obj":"task""#.as_slice(),
        });
        body.extend_from_slice(w.target.as_bytes());
        match (&w.obj_id, &w.reference) {
            (Some(o), _) => {
                body.extend_from_slice(br#","obj_id":"#);
                let _ = write_json_str(&mut body, o);
            }
            (None, Some(r)) => {
                body.extend_from_slice(br#","ref":"#);
                let _ = write_json_str(&mut body, r);
            }
            (None, None) => {}
        }
        if step == Step::Delete {
            body.extend_from_slice(br#","node_id":"#);
            let _ = write_json_str(&mut body, w.node_id.as_deref().unwrap_or(""));
        }
        body.push(b'}');
        let r0 = refs.len() as u32;
        // Never empty: a show or delete may always go again, and an empty ref would
        // make the sender call a lost answer `ambiguous`.
        refs.push_str(
            w.reference
                .as_deref()
                .or(w.obj_id.as_deref())
                .unwrap_or("-"),
        );
        rows.push(RowMeta {
            id: w.id,
            input: 0,
            row: i as u64,
            line: 0,
            op: at..body.len() as u32,
            reference: r0..refs.len() as u32,
            raw: 0..0,
        });
    }
    body.extend_from_slice(b"]}");
    Batch {
        body: body.into(),
        rows,
        refs,
        raw: Vec::new(),
    }
}

/// Shows every want (by `obj_id`, else by ref): `Done` with the task's `obj_id`,
/// `node_id` and data (`reply`), or `Gone`, or the trouble the sender settled it with.
pub async fn show(sender: &Sender, wants: &[Want]) -> Vec<Option<Outcome>> {
    let all: Vec<usize> = (0..wants.len()).collect();
    let mut out = vec![None; wants.len()];
    for chunk in all.chunks(sender_batch(sender)) {
        let b = batch_of(wants, chunk, Step::Show);
        for (o, &i) in sender.process(&b).await.into_iter().zip(chunk) {
            out[i] = o;
        }
    }
    out
}

/// Deletes every want: those without a node are shown first (one found by ref gets its
/// obj_id from the show too). `Deleted`, `Gone`, or the trouble of either step.
pub async fn delete(sender: &Sender, wants: &[Want]) -> Vec<Option<Outcome>> {
    let mut out: Vec<Option<Outcome>> = vec![None; wants.len()];
    let mut ready: Vec<Want> = wants.to_vec();
    let unknown: Vec<usize> = (0..wants.len())
        .filter(|&i| wants[i].node_id.is_none())
        .collect();
    let mut go: Vec<usize> = (0..wants.len())
        .filter(|&i| wants[i].node_id.is_some())
        .collect();
    for chunk in unknown.chunks(sender_batch(sender)) {
        let b = batch_of(wants, chunk, Step::Show);
        for (o, &i) in sender.process(&b).await.into_iter().zip(chunk) {
            match o {
                // The sender gives a delete kind's success to the show's `ok`.
                Some(o) if o.status == sender_success(sender) => match (&o.obj_id, &o.node_id) {
                    (Some(obj), Some(node)) => {
                        ready[i].obj_id = Some(obj.as_str().to_owned());
                        ready[i].node_id = Some(node.as_str().to_owned());
                        go.push(i);
                    }
                    _ => {
                        out[i] = Some(Outcome::new(Status::Rejected, o.attempts).with_error(
                            "the show of the task answered without its obj_id and node_id, which a delete needs",
                        ))
                    }
                },
                other => out[i] = other,
            }
        }
    }
    // Each step counts its rows in flight; a row shown, then deleted, is one row.
    let twice = (go.len() - (wants.len() - unknown.len())) as u64;
    sender
        .stats
        .rows
        .fetch_sub(twice, std::sync::atomic::Ordering::Relaxed);
    go.sort_unstable();
    for chunk in go.chunks(sender_batch(sender)) {
        let b = batch_of(&ready, chunk, Step::Delete);
        for (o, &i) in sender.process(&b).await.into_iter().zip(chunk) {
            out[i] = o;
        }
    }
    out
}

/// The body of the first request [`delete`] sends for `wants` (all within one request):
/// the shows of those without a node, or else the deletes.
pub fn first_body(wants: &[Want]) -> Option<bytes::Bytes> {
    let shows: Vec<usize> = (0..wants.len())
        .filter(|&i| wants[i].node_id.is_none())
        .collect();
    match shows.is_empty() {
        false => Some(batch_of(wants, &shows, Step::Show).body),
        true if !wants.is_empty() => {
            let all: Vec<usize> = (0..wants.len()).collect();
            Some(batch_of(wants, &all, Step::Delete).body)
        }
        true => None,
    }
}

fn sender_batch(sender: &Sender) -> usize {
    sender.batch_size().max(1)
}

fn sender_success(sender: &Sender) -> Status {
    sender.op().success()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_name_the_task_and_the_node() {
        let wants = vec![
            Want {
                id: 7,
                target: r#","conv_id":555"#.into(),
                obj_id: Some("a".repeat(24)),
                node_id: Some("b".repeat(24)),
                reference: Some("r-1".into()),
            },
            Want {
                id: 8,
                target: r#","obj_alias":"o","company_id":"c""#.into(),
                reference: Some("r\"2".into()),
                ..Want::default()
            },
        ];
        let b = batch_of(&wants, &[0, 1], Step::Show);
        let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(
            v["ops"][0],
            serde_json::json!({"id":"7","type":"show","obj":"task","conv_id":555,"obj_id":"a".repeat(24)})
        );
        assert_eq!(
            v["ops"][1],
            serde_json::json!({"id":"8","type":"show","obj":"task","obj_alias":"o","company_id":"c","ref":"r\"2"})
        );
        assert_eq!(b.reference(1), Some("r\"2"));
        let d = batch_of(&wants, &[0], Step::Delete);
        let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(v["ops"][0]["type"], "delete");
        assert_eq!(v["ops"][0]["node_id"], "b".repeat(24));
        assert_eq!(d.op(0), &d.body[8..d.body.len() - 2]);
    }
}
