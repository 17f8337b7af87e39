//! The refs sent so far in this run, to refuse a ref that the input repeats before the
//! server does: the second row would come back "not unical reference", which after a
//! retry is indistinguishable from our own earlier attempt (`exists`), so its data would
//! be dropped silently.
//!
//! In: each row's ref (and, with `--resume`, the refs the earlier run sent). Out: the
//! rejection reason for a repeat. Only for creates with refs from the data
//! (`--ref-column`, `--ref-template`) into one process: generated refs are unique by
//! construction, and a modify file may rightly name a task twice. With `--op raw`, for
//! the creates, keyed by their process and ref (`op::raw_create_key`).

use crate::config::LoadConfig;
use hashbrown::HashTable;

/// A set of 64-bit ref hashes in 16 tables, by the hash's top 4 bits: 9 bytes a slot (the
/// hash and hashbrown's control byte), 8 slots to at most 7 refs, so 10 to 21 bytes a ref
/// as a table fills and doubles. One table alone doubles at a time, so the old table that
/// lives on during the move is a sixteenth of the whole, not half of it as with one table.
/// At 5M refs (peak RSS of a dry run with `--ref-column`, less one without): 15.6 bytes a
/// ref, against 22.6 in one table and 62.9 when a map kept the row each ref was first seen
/// in. So it cannot
/// say which row had a ref first; it says whether that row was of this run or of the run
/// it resumes, in the hash's lowest bit.
pub(crate) struct SeenRefs {
    tables: Option<Box<[HashTable<u64>; PARTS]>>,
}

const PARTS: usize = 16;

/// The lowest bit of a stored hash: set for a ref the resumed run sent.
const RESUMED: u64 = 1;

impl SeenRefs {
    pub(crate) fn new(cfg: &LoadConfig) -> SeenRefs {
        use crate::mapping::{RefMode, Target};
        let on = cfg.mapping.op.rows_are_ops
            || cfg.mapping.op.refs_are_unique()
                && matches!(
                    cfg.mapping.ref_mode,
                    RefMode::Column(_) | RefMode::Template(_)
                )
                && matches!(cfg.mapping.target, Target::Conv(_) | Target::Alias(_));
        SeenRefs {
            tables: on.then(Default::default),
        }
    }

    /// The ref's hash with its lowest bit clear (for the origin).
    fn hash(r: &str) -> u64 {
        use std::hash::BuildHasher;
        // foldhash's quality variant: two refs share a hash (and the second would be
        // refused as a repeat) about once in 2^63, as with SipHash, at a fraction of the cost.
        foldhash::quality::FixedState::default().hash_one(r) & !RESUMED
    }

    /// The table a hash goes in.
    fn part(h: u64) -> usize {
        (h >> 60) as usize
    }

    /// A table's hash of a stored one. hashbrown takes the bucket from the low bits and
    /// its tag from the top 7; the top 4 are the same in one table and the lowest is the
    /// origin bit, so they are mixed anew by one multiply (of the hash without its origin
    /// bit, so the product's low bits are not all even).
    fn spread(h: u64) -> u64 {
        (h >> 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Refuses a ref seen before; otherwise gives its hash (when refs are tracked) for
    /// `insert` once the row is in a batch, so each ref is hashed once.
    pub(crate) fn check(&self, r: &str) -> std::result::Result<Option<u64>, String> {
        self.check_as(r, r)
    }

    /// `check` of `key`, a ref with what else tells it apart (a raw create's process),
    /// named `r` in the refusal.
    pub(crate) fn check_as(&self, key: &str, r: &str) -> std::result::Result<Option<u64>, String> {
        let Some(tables) = &self.tables else {
            return Ok(None);
        };
        let h = Self::hash(key);
        match tables[Self::part(h)].find(Self::spread(h), |&s| s & !RESUMED == h) {
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
        if let (Some(tables), Some(h)) = (&mut self.tables, hash) {
            tables[Self::part(h)].insert_unique(Self::spread(h), h, |&s| Self::spread(s));
        }
    }

    /// Records a ref sent by the run this one resumes (`--resume`), so that a row
    /// repeating it is refused too.
    pub(crate) fn seed(&mut self, r: &str) {
        if let Some(tables) = &mut self.tables {
            let h = Self::hash(r);
            let table = &mut tables[Self::part(h)];
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
            tables: Some(Default::default()),
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
        let off = SeenRefs { tables: None };
        assert_eq!(off.check("x"), Ok(None));
    }
}
