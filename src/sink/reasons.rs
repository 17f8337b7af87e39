//! Why rows did not succeed, in the server's (or the mapping's) words, for the summary.
//! In: each row's status and error text as the journal sees them. Out: the most common
//! reasons per status with their row counts (`Summary::reasons`, on stderr and in
//! `--summary-json`), so that "20000 rejected" comes with what the server said.
//!
//! Texts are grouped as the report groups them (`report::shape`: quoted values after the
//! first left out) and without the attempt count a failure ends with. The table is
//! bounded (`MAX_TEXTS` per status); rows whose text came after it was full count as
//! "other reasons".

use crate::outcome::Status;
use serde::Serialize;
use std::collections::HashMap;

/// Reasons shown per status.
pub const TOP: usize = 5;

/// Distinct texts kept per status: a file of rows each refused in its own words must not
/// grow the journal's memory with the input.
const MAX_TEXTS: usize = 256;

/// One reason and the rows it settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub status: Status,
    pub reason: String,
    pub rows: u64,
}

/// The reasons seen so far, per status that is not a success.
#[derive(Debug, Default)]
pub struct Reasons {
    by_status: HashMap<Status, (HashMap<String, u64>, u64)>,
}

/// A failure's text without its attempt count ("... (gave up after 8 attempts)"), so that
/// rows that gave up after 3 and after 8 attempts for one cause are one reason.
fn grouped(text: &str) -> String {
    let t = match text.rfind(" (gave up after ") {
        Some(at) if text.ends_with(" attempts)") => &text[..at],
        _ => text,
    };
    super::report::shape(t)
}

impl Reasons {
    pub fn add(&mut self, status: Status, text: Option<&str>) {
        if status.is_success() {
            return;
        }
        let (texts, other) = self.by_status.entry(status).or_default();
        let key = grouped(text.unwrap_or("(no reason given)"));
        if let Some(n) = texts.get_mut(&key) {
            *n += 1;
        } else if texts.len() < MAX_TEXTS {
            texts.insert(key, 1);
        } else {
            *other += 1;
        }
    }

    /// Up to `TOP` reasons per status (most rows first, then by text), statuses in
    /// `Status::ALL` order; and per status, the rows the list leaves out.
    pub fn top(&self) -> (Vec<Reason>, Vec<(Status, u64)>) {
        let mut out = Vec::new();
        let mut rest = Vec::new();
        for &s in Status::ALL {
            let Some((texts, other)) = self.by_status.get(&s) else {
                continue;
            };
            let mut v: Vec<(&String, &u64)> = texts.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let left: u64 = v.iter().skip(TOP).map(|(_, &n)| n).sum::<u64>() + other;
            out.extend(v.into_iter().take(TOP).map(|(t, &n)| Reason {
                status: s,
                reason: t.clone(),
                rows: n,
            }));
            if left > 0 {
                rest.push((s, left));
            }
        }
        (out, rest)
    }
}

/// The summary's lines for `reasons`: a heading per status, a line per reason.
pub fn render(reasons: &[Reason], rest: &[(Status, u64)], out: &mut String) {
    use std::fmt::Write as _;
    let mut last = None;
    for r in reasons {
        if last != Some(r.status) {
            let _ = writeln!(out, "{} rows, by the reason given:", r.status.as_str());
            last = Some(r.status);
        }
        let _ = writeln!(out, "  {:>8}  {}", r.rows, r.reason);
    }
    for (s, n) in rest {
        let _ = writeln!(out, "  {n:>8}  {} rows for other reasons", s.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_common_reasons_come_first_with_their_counts() {
        let mut r = Reasons::default();
        for _ in 0..3 {
            r.add(
                Status::Rejected,
                Some("error: Object conv with id 556 does not exist"),
            );
        }
        r.add(
            Status::Rejected,
            Some("column \"sum\": \"x\" is not a number"),
        );
        r.add(
            Status::Rejected,
            Some("column \"sum\": \"y\" is not a number"),
        );
        r.add(
            Status::Failed,
            Some("HTTP 503: busy (gave up after 8 attempts)"),
        );
        r.add(
            Status::Failed,
            Some("HTTP 503: busy (gave up after 3 attempts)"),
        );
        r.add(Status::Created, None);
        let (top, rest) = r.top();
        let got: Vec<(Status, &str, u64)> = top
            .iter()
            .map(|x| (x.status, x.reason.as_str(), x.rows))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Status::Rejected,
                    "error: Object conv with id 556 does not exist",
                    3
                ),
                (Status::Rejected, "column \"sum\": \"…\" is not a number", 2),
                (Status::Failed, "HTTP 503: busy", 2),
            ]
        );
        assert!(rest.is_empty());
    }

    #[test]
    fn past_the_top_and_past_the_table_rows_are_counted_as_other() {
        let mut r = Reasons::default();
        for i in 0..(MAX_TEXTS + 10) {
            r.add(Status::Rejected, Some(&format!("reason {i}")));
        }
        let (top, rest) = r.top();
        assert_eq!(top.len(), TOP);
        assert_eq!(
            rest,
            vec![(Status::Rejected, (MAX_TEXTS + 10 - TOP) as u64)]
        );
        let mut s = String::new();
        render(&top, &rest, &mut s);
        assert!(
            s.starts_with("rejected rows, by the reason given:\n"),
            "{s}"
        );
        assert!(s.contains("rejected rows for other reasons"), "{s}");
    }
}
