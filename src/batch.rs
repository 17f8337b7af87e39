//! Operations -> request bodies.
//!
//! In: ops written one after another by the mapping straight into the open body, with
//! each row's metadata. Out: `Batch`es, each a complete `{"ops":[...]}` body (as `Bytes`,
//! so it moves into the HTTP request without a copy) plus, per row, where its op sits in
//! the body, its ref and its raw input row (for the retry file).
//!
//! Three flush rules: the op count (`--batch-size`), the body size (`--batch-bytes`: a
//! body never exceeds it; an op that would overflow starts the next body) and, for slow
//! streams, a linger time checked by the caller (`flush_if_lingering`).

use bytes::Bytes;
use std::ops::Range;
use std::time::{Duration, Instant};

const OPEN: &[u8] = br#"{"ops":["#;
const CLOSE: &[u8] = b"]}";

/// One row inside a batch. Ranges are byte offsets into the batch's buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta {
    /// The op id sent to the server (unique within the run), to match answers.
    pub id: u64,
    /// Index of the input file.
    pub input: u32,
    /// Record number within its input, from 1, header excluded.
    pub row: u64,
    /// Line of the input where the record starts, from 1.
    pub line: u64,
    pub op: Range<u32>,
    pub reference: Range<u32>,
    pub raw: Range<u32>,
}

/// A complete request body and the rows in it.
#[derive(Debug, Clone)]
pub struct Batch {
    pub body: Bytes,
    pub rows: Vec<RowMeta>,
    /// The refs of all rows, back to back.
    pub refs: String,
    /// The raw input rows (as they go to the retry file), back to back.
    pub raw: Vec<u8>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn op(&self, i: usize) -> &[u8] {
        let r = &self.rows[i].op;
        &self.body[r.start as usize..r.end as usize]
    }

    /// The row's ref, `None` with `--no-ref`.
    pub fn reference(&self, i: usize) -> Option<&str> {
        let r = &self.rows[i].reference;
        (r.start != r.end).then(|| &self.refs[r.start as usize..r.end as usize])
    }

    pub fn raw(&self, i: usize) -> &[u8] {
        let r = &self.rows[i].raw;
        &self.raw[r.start as usize..r.end as usize]
    }

    /// A body holding only the ops of `rows` (indexes into this batch), for a retry.
    pub fn body_for(&self, rows: &[usize]) -> Bytes {
        if rows.len() == self.rows.len() {
            return self.body.clone();
        }
        let len: usize = rows.iter().map(|&i| self.op(i).len() + 1).sum();
        let mut b = Vec::with_capacity(OPEN.len() + len + CLOSE.len());
        b.extend_from_slice(OPEN);
        for (n, &i) in rows.iter().enumerate() {
            if n > 0 {
                b.push(b',');
            }
            b.extend_from_slice(self.op(i));
        }
        b.extend_from_slice(CLOSE);
        Bytes::from(b)
    }
}

/// Which row an op is, as `commit` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    pub id: u64,
    pub input: u32,
    pub row: u64,
    pub line: u64,
}

/// Where an op being written starts.
#[derive(Debug, Clone, Copy)]
pub struct OpStart {
    sep_at: usize,
    op_at: usize,
}

/// Builds batches. The mapping writes an op into `buf()` between `begin()` and
/// `commit()`/`abort()`; full batches go to the sink.
pub struct Batcher<F: FnMut(Batch)> {
    max_ops: usize,
    max_bytes: usize,
    body: Vec<u8>,
    rows: Vec<RowMeta>,
    refs: String,
    raw: Vec<u8>,
    opened: Option<Instant>,
    /// Sizes of the last full batch's body and raw rows: the next batch starts with that
    /// capacity, so it fills without reallocating (and copying) its body on the way.
    last_body: usize,
    last_raw: usize,
    sink: F,
}

/// Why `commit` refused an op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub op_bytes: usize,
    pub max_bytes: usize,
}

impl<F: FnMut(Batch)> Batcher<F> {
    /// `max_bytes` must leave room for at least the envelope (config checks it).
    pub fn new(max_ops: usize, max_bytes: usize, sink: F) -> Self {
        let mut b = Batcher {
            max_ops: max_ops.max(1),
            max_bytes: max_bytes.max(OPEN.len() + CLOSE.len() + 2),
            body: Vec::new(),
            rows: Vec::new(),
            refs: String::new(),
            raw: Vec::new(),
            opened: None,
            last_body: 0,
            last_raw: 0,
            sink,
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        // Sized for a full batch like the last one (a guess for the first), so the body
        // rarely reallocates while filling: with 300-byte ops, the fixed guess of 160 per
        // op made every body grow twice, copying it each time.
        let guess = (self.max_ops * 160).min(self.max_bytes) + 64;
        let body = self.last_body.max(guess).min(self.max_bytes + 64);
        self.body = Vec::with_capacity(body);
        self.body.extend_from_slice(OPEN);
        self.rows = Vec::with_capacity(self.max_ops);
        self.refs = String::with_capacity(self.max_ops * 24);
        self.raw = Vec::with_capacity(self.last_raw.max(guess));
        self.opened = None;
    }

    /// Opens an op: the mapping writes it into `buf()` next.
    pub fn begin(&mut self) -> OpStart {
        let sep_at = self.body.len();
        if !self.rows.is_empty() {
            self.body.push(b',');
        }
        OpStart {
            sep_at,
            op_at: self.body.len(),
        }
    }

    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// The op written since `at` (`begin`).
    pub fn op_since(&self, at: &OpStart) -> &[u8] {
        &self.body[at.op_at..]
    }

    /// Drops a partly written op (the row was rejected).
    pub fn abort(&mut self, at: OpStart) {
        self.body.truncate(at.sep_at);
    }

    /// Keeps the op written since `at`. `write_raw` appends the row as it goes to the
    /// retry file. Fails, dropping the op, when the op alone is larger than a body may be.
    pub fn commit(
        &mut self,
        at: OpStart,
        key: RowKey,
        reference: &str,
        write_raw: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), TooLarge> {
        let op_len = self.body.len() - at.op_at;
        if OPEN.len() + op_len + CLOSE.len() > self.max_bytes {
            self.body.truncate(at.sep_at);
            return Err(TooLarge {
                op_bytes: op_len,
                max_bytes: self.max_bytes,
            });
        }
        let mut op_at = at.op_at;
        if self.body.len() + CLOSE.len() > self.max_bytes {
            // It does not fit beside the others: close this body, start the next with it.
            let op = self.body[at.op_at..].to_vec();
            self.body.truncate(at.sep_at);
            self.flush();
            op_at = self.body.len();
            self.body.extend_from_slice(&op);
        }
        let ref_start = self.refs.len();
        self.refs.push_str(reference);
        let raw_start = self.raw.len();
        write_raw(&mut self.raw);
        self.rows.push(RowMeta {
            id: key.id,
            input: key.input,
            row: key.row,
            line: key.line,
            op: op_at as u32..self.body.len() as u32,
            reference: ref_start as u32..self.refs.len() as u32,
            raw: raw_start as u32..self.raw.len() as u32,
        });
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
        if self.rows.len() >= self.max_ops {
            self.flush();
        }
        Ok(())
    }

    /// Sends the open batch if it has waited longer than `linger`.
    pub fn flush_if_lingering(&mut self, linger: Duration) {
        if self.opened.is_some_and(|t| t.elapsed() >= linger) {
            self.flush();
        }
    }

    /// Sends the open batch, if it has any op.
    pub fn flush(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let mut body = std::mem::take(&mut self.body);
        body.extend_from_slice(CLOSE);
        if self.rows.len() >= self.max_ops {
            // Learn only from full batches: a partial one (linger, end of input) says
            // nothing about the size of the next. A little headroom for longer rows.
            self.last_body = body.len() + body.len() / 16;
            self.last_raw = self.raw.len() + self.raw.len() / 16;
        }
        let batch = Batch {
            body: Bytes::from(body),
            rows: std::mem::take(&mut self.rows),
            refs: std::mem::take(&mut self.refs),
            raw: std::mem::take(&mut self.raw),
        };
        self.reset();
        (self.sink)(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push<F: FnMut(Batch)>(b: &mut Batcher<F>, id: u64, op: &str) -> Result<(), TooLarge> {
        let at = b.begin();
        b.buf().extend_from_slice(op.as_bytes());
        let key = RowKey {
            id,
            input: 0,
            row: id,
            line: id + 1,
        };
        b.commit(at, key, &format!("r{id}"), |raw| {
            raw.extend_from_slice(format!("raw{id}\n").as_bytes())
        })
    }

    fn bodies(batches: &[Batch]) -> Vec<String> {
        batches
            .iter()
            .map(|b| String::from_utf8(b.body.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn flushes_by_count() {
        let mut out = Vec::new();
        let mut b = Batcher::new(2, 1 << 20, |x| out.push(x));
        for i in 1..=3 {
            push(&mut b, i, &i.to_string()).unwrap();
        }
        b.flush();
        drop(b);
        assert_eq!(bodies(&out), [r#"{"ops":[1,2]}"#, r#"{"ops":[3]}"#]);
        assert_eq!(out[0].op(1), b"2");
        assert_eq!(out[0].reference(1), Some("r2"));
        assert_eq!(out[1].raw(0), b"raw3\n");
        assert_eq!(out[1].rows[0].line, 4);
    }

    #[test]
    fn a_body_never_exceeds_the_byte_limit() {
        let mut out = Vec::new();
        // {"ops":[ + aaaa,bbbb + ]} = 8 + 9 + 2 = 19 bytes fits in 20; a third op does not.
        let mut b = Batcher::new(100, 20, |x| out.push(x));
        push(&mut b, 1, "aaaa").unwrap();
        push(&mut b, 2, "bbbb").unwrap();
        push(&mut b, 3, "cccc").unwrap();
        b.flush();
        drop(b);
        assert_eq!(
            bodies(&out),
            [r#"{"ops":[aaaa,bbbb]}"#, r#"{"ops":[cccc]}"#]
        );
        assert!(out.iter().all(|x| x.body.len() <= 20));
        assert_eq!(out[1].op(0), b"cccc");
        assert_eq!(out[1].reference(0), Some("r3"));
        assert_eq!(out[1].raw(0), b"raw3\n");
    }

    #[test]
    fn an_op_larger_than_a_body_is_refused_and_the_others_go_on() {
        let mut out = Vec::new();
        let mut b = Batcher::new(100, 20, |x| out.push(x));
        push(&mut b, 1, "aaaa").unwrap();
        let err = push(&mut b, 2, "0123456789abcdef").unwrap_err();
        assert_eq!(err.op_bytes, 16);
        push(&mut b, 3, "cccc").unwrap();
        b.flush();
        drop(b);
        assert_eq!(bodies(&out), [r#"{"ops":[aaaa,cccc]}"#]);
    }

    #[test]
    fn aborted_ops_leave_no_trace() {
        let mut out = Vec::new();
        let mut b = Batcher::new(100, 1 << 20, |x| out.push(x));
        push(&mut b, 1, "1").unwrap();
        let at = b.begin();
        b.buf().extend_from_slice(b"half");
        b.abort(at);
        push(&mut b, 3, "3").unwrap();
        b.flush();
        drop(b);
        assert_eq!(bodies(&out), [r#"{"ops":[1,3]}"#]);
        assert_eq!(out[0].body_for(&[1]), Bytes::from_static(br#"{"ops":[3]}"#));
    }

    #[test]
    fn empty_flush_sends_nothing() {
        let mut out = Vec::new();
        let mut b = Batcher::new(2, 100, |x| out.push(x));
        b.flush();
        b.flush_if_lingering(Duration::ZERO);
        drop(b);
        assert!(out.is_empty());
    }
}
