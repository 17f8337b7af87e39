//! The refs sent so far in this run, to refuse a ref that the input repeats before the
//! server does: the second row would come back "not unical reference", which after a
//! retry is indistinguishable from our own earlier attempt (`exists`), so its data would
//! be dropped silently.
//!
//! In: each row's ref (and, with `--resume`, the refs the earlier run sent). Out: the
//! rejection reason for a repeat. Only for creates with refs from the data
//! (`--ref-column`, `--ref-template`) into one process: generated refs are unique by
//! construction, and a modify file may rightly name a task twice.

use crate::config::LoadConfig;
use hashbrown::HashTable;

/// A set of 64-bit ref hashes: 9 bytes a slot (the hash and hashbrown's control byte),
/// 8 slots to at most 7 refs, so 10 to 21 bytes a ref as the table fills and doubles, and
/// half as much again while it doubles (the old table is freed after the move). Measured
/// at 5M refs (peak RSS of a dry run with `--ref-column`, less one without): 22.6 bytes a
/// ref, against 62.9 when the map kept the input and row each ref was first seen in. So
/// it cannot say which row had a ref first; it says whether that row was of this run or
/// of the run it resumes, in the hash's lowest bit.
pub(crate) struct SeenRefs {
    table: Option<HashTable<u64>>,
}

/// The lowest bit of a stored hash: set for a ref the resumed run sent.
const RESUMED: u64 = 1;

impl SeenRefs {
    pub(crate) fn new(cfg: &LoadConfig) -> SeenRefs {
        use crate::mapping::{OpKind, RefMode, Target};
        let on = cfg.mapping.op == OpKind::Create
            && matches!(
                cfg.mapping.ref_mode,
                RefMode::Column(_) | RefMode::Template(_)
            )
            && matches!(cfg.mapping.target, Target::Conv(_));
        SeenRefs {
            table: on.then(HashTable::new),
        }
    }

    /// The ref's hash with its lowest bit clear (for the origin).
    fn hash(r: &str) -> u64 {
        use std::hash::BuildHasher;
        // foldhash's quality variant: two refs share a hash (and the second would be
        // refused as a repeat) about once in 2^63, as with SipHash, at a fraction of the cost.
        foldhash::quality::FixedState::default().hash_one(r) & !RESUMED
    }

    /// The table's hash of a stored one. hashbrown takes the bucket from the low bits and
    /// its tag from the top 7: the origin bit must move neither, and the bucket's lowest
    /// bit must not always be clear.
    fn spread(h: u64) -> u64 {
        let h = h & !RESUMED;
        h ^ (h >> 57)
    }

    /// Refuses a ref seen before; otherwise gives its hash (when refs are tracked) for
    /// `insert` once the row is in a batch, so each ref is hashed once.
    pub(crate) fn check(&self, r: &str) -> std::result::Result<Option<u64>, String> {
        let Some(table) = &self.table else {
            return Ok(None);
        };
        let h = Self::hash(r);
        match table.find(Self::spread(h), |&s| s & !RESUMED == h) {
            Some(&s) => Err(format!(
                "duplicate ref {r:?}: {} has it already, and the server would refuse it (not unical reference)",
                if s & RESUMED != 0 {
                    "a row sent by the run this one resumes"
                } else {
                    "an earlier row of this load"
                }
            )),
            None => Ok(Some(h)),
        }
    }

    /// Records the ref `check` passed, once its row is in a batch.
    pub(crate) fn insert(&mut self, hash: Option<u64>) {
        if let (Some(table), Some(h)) = (&mut self.table, hash) {
            table.insert_unique(Self::spread(h), h, |&s| Self::spread(s));
        }
    }

    /// Records a ref sent by the run this one resumes (`--resume`), so that a row
    /// repeating it is refused too.
    pub(crate) fn seed(&mut self, r: &str) {
        if let Some(table) = &mut self.table {
            let h = Self::hash(r);
            if table
                .find(Self::spread(h), |&s| s & !RESUMED == h)
                .is_none()
            {
                table.insert_unique(Self::spread(h), h | RESUMED, |&s| Self::spread(s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> SeenRefs {
        SeenRefs {
            table: Some(HashTable::new()),
        }
    }

    #[test]
    fn a_repeat_is_refused_and_says_where_the_first_was() {
        let mut s = on();
        s.seed("old");
        s.seed("old");
        for r in ["a", "b", "c"] {
            let h = s.check(r).unwrap();
            assert!(h.is_some());
            s.insert(h);
        }
        let err = s.check("b").unwrap_err();
        assert!(
            err.starts_with("duplicate ref \"b\": an earlier row of this load"),
            "{err}"
        );
        let err = s.check("old").unwrap_err();
        assert!(
            err.contains("a row sent by the run this one resumes"),
            "{err}"
        );
        assert!(s.check("d").is_ok());
    }

    #[test]
    fn many_refs_stay_apart_and_off_tracks_nothing() {
        let mut s = on();
        for i in 0..100_000u32 {
            let r = i.to_string();
            let h = s.check(&r).unwrap_or_else(|e| panic!("{e}"));
            s.insert(h);
        }
        assert!(s.check("99999").is_err());
        let off = SeenRefs { table: None };
        assert_eq!(off.check("x"), Ok(None));
    }
}
