//! Which answer is which row's: by op id, then by ref, and (`--sync`) in order when the
//! answers carry neither (docs/protocol.md, Answers and Sync API). In: a batch, the rows
//! of the request, its answers. Out: each row's answer (by batch index), and the answers
//! by ref that no id claimed.

use super::answer::{MaybeOp, OpAnswer};
use crate::batch::Batch;
use std::borrow::Cow;
use std::collections::HashMap;

/// Answers by row for the rows of `group`. With `in_order` (the Sync API, whose documented
/// answer has neither `id` nor `ref`): when no answer carries either and there is one per
/// op sent, they are taken in request order.
#[allow(clippy::type_complexity)]
pub(super) fn by_row<'a>(
    batch: &Batch,
    group: &[usize],
    ops: Vec<MaybeOp<'a>>,
    in_order: bool,
) -> (
    Vec<Option<OpAnswer<'a>>>,
    HashMap<Cow<'a, str>, OpAnswer<'a>>,
) {
    let anonymous =
        |o: &MaybeOp| matches!(o, MaybeOp::Op(a) if a.id.is_none() && a.reference.is_none());
    if in_order && ops.len() == group.len() && ops.iter().all(anonymous) {
        let mut answers: Vec<Option<OpAnswer>> = (0..batch.len()).map(|_| None).collect();
        for (&i, o) in group.iter().zip(ops) {
            if let MaybeOp::Op(a) = o {
                answers[i] = Some(a);
            }
        }
        return (answers, HashMap::new());
    }
    match_answers(batch, ops)
}

/// Answers by row: matched by op id (the server may reorder them), and by ref for answers
/// without a usable id. Ids rise within a batch (the reader numbers rows in order), so an
/// id finds its row by binary search; the first answer for an id counts, unknown ids are
/// ignored.
#[allow(clippy::type_complexity)]
fn match_answers<'a>(
    batch: &Batch,
    ops: Vec<MaybeOp<'a>>,
) -> (
    Vec<Option<OpAnswer<'a>>>,
    HashMap<Cow<'a, str>, OpAnswer<'a>>,
) {
    debug_assert!(batch.rows.windows(2).all(|w| w[0].id < w[1].id));
    let mut answers: Vec<Option<OpAnswer>> = (0..batch.len()).map(|_| None).collect();
    let mut by_ref: HashMap<Cow<'a, str>, OpAnswer<'a>> = HashMap::new();
    for a in ops {
        let MaybeOp::Op(a) = a else { continue };
        match a.id.as_deref().and_then(|v| v.parse::<u64>().ok()) {
            Some(id) => {
                if let Ok(i) = batch.rows.binary_search_by_key(&id, |m| m.id) {
                    if answers[i].is_none() {
                        answers[i] = Some(a);
                    }
                }
            }
            None => {
                if let Some(r) = a.reference.clone() {
                    by_ref.entry(r).or_insert(a);
                }
            }
        }
    }
    (answers, by_ref)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batcher, RowKey};
    use crate::send::answer::parse;

    /// A batch of three ops with ids 1..=3 and refs r1..r3.
    fn batch() -> Batch {
        let mut out = Vec::new();
        let mut b = Batcher::new(10, 1 << 20, |x| out.push(x));
        for id in 1..=3u64 {
            let at = b.begin();
            b.buf()
                .extend_from_slice(format!("{{\"id\":\"{id}\"}}").as_bytes());
            let key = RowKey {
                id,
                input: 0,
                row: id,
                line: id,
            };
            b.commit(at, key, &format!("r{id}"), |_| {}).unwrap();
        }
        b.flush();
        drop(b);
        out.pop().unwrap()
    }

    fn procs(answers: &[Option<OpAnswer>]) -> Vec<Option<String>> {
        answers
            .iter()
            .map(|a| {
                a.as_ref()
                    .and_then(|a| a.proc_.as_deref().map(String::from))
            })
            .collect()
    }

    #[test]
    fn anonymous_answers_go_in_order_only_for_the_sync_api_and_only_when_complete() {
        let b = batch();
        let body = br#"{"request_proc":"ok","ops":[{"proc":"a"},{"proc":"b"}]}"#;
        let ops = || parse(body).unwrap().ops;
        // The Sync API, rows 0 and 2 resent: in order.
        let (answers, _) = by_row(&b, &[0, 2], ops(), true);
        let want = [Some("a".to_string()), None, Some("b".to_string())];
        assert_eq!(procs(&answers), want);
        // The task API: never by position.
        let (answers, _) = by_row(&b, &[0, 2], ops(), false);
        assert_eq!(procs(&answers), [None, None, None]);
        // One answer short, or one with an id: not in order.
        let (answers, _) = by_row(&b, &[0, 1, 2], ops(), true);
        assert_eq!(procs(&answers), [None, None, None]);
        let body = br#"{"request_proc":"ok","ops":[{"proc":"a"},{"id":"3","proc":"b"}]}"#;
        let (answers, _) = by_row(&b, &[0, 2], parse(body).unwrap().ops, true);
        assert_eq!(procs(&answers), [None, None, Some("b".to_string())]);
    }
}
