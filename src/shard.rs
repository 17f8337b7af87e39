//! `--shard i/N`: which copy of a load a row belongs to (docs/architecture.md, "One load
//! across many machines").
//!
//! In: a row's ref (its UTF-8 bytes), or its row number when it has none. Out: its shard,
//! `0..N`. Every copy reads the same inputs and keeps the rows of its shard, so the hash
//! is part of the file format, like the results log: fixed here, the same on every
//! platform and in every version (the unit tests pin its values). It is FNV-1a 64 of the
//! ref's bytes, then MurmurHash3's 64-bit finalizer, mod N. FNV-1a alone will not do: its
//! low bits depend only on the low bits of each byte, so refs `f.csv:1`, `f.csv:2`, ...
//! would fall unevenly on 2, 4 or 8 shards; the finalizer mixes every bit into every bit.
//! A row without a ref (`--no-ref`, or a ref that cannot be built, which is rejected)
//! goes to shard `row mod N`.
//!
//! Splitting by ref, not by line range, keeps every row of one ref (a create and a later
//! modify) on one copy, in input order.

use crate::error::{Error, Result};

/// This copy's part of a load: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `i/N` (0 <= i < N), as `--shard` and `CZLOAD_SHARD` give it.
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--shard {s:?} (or CZLOAD_SHARD): {why}; give i/N, this copy's index i from 0 to N-1 of N copies, e.g. --shard 0/3"
            ))
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: u32 = i.trim().parse().map_err(|_| bad("i is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            let last = format!(
                "i must be below N, shards count from 0 (the last is --shard {}/{count})",
                count - 1
            );
            return Err(bad(&last));
        }
        Ok(Shard { index, count })
    }

    /// The shard of a row with this ref.
    pub fn of_ref(self, reference: &[u8]) -> u32 {
        (ref_hash(reference) % u64::from(self.count)) as u32
    }

    /// The shard of a row without a ref.
    pub fn of_row(self, row: u64) -> u32 {
        (row % u64::from(self.count)) as u32
    }

    /// The part of output file names that tells the copies apart: `shard-0-of-3`.
    pub fn file_tag(self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The hash a ref is sharded by: FNV-1a 64 of its bytes, then MurmurHash3's `fmix64`.
/// Part of the file format: never change it (the tests pin it).
pub fn ref_hash(bytes: &[u8]) -> u64 {
    fmix64(fnv1a(FNV_OFFSET, bytes))
}

/// The longest ref the mapping builds (`mapping::check_ref`), in characters.
const MAX_REF_CHARS: usize = 255;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of `bytes`, going on from the state `h` (FNV is a stream: the state after a
/// ref's prefix can be kept, [`RowShards`]).
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// `--shard` where a row's ref is generated from its row number (`{prefix}{row}`, or no
/// ref at all with `--no-ref`), and the record counts only by whether it has the
/// `fields` its ref needs (one that has not cannot be mapped: it goes by its row
/// number): the shard of a row from its number and field count, without reading its
/// fields or building its ref. The same answer as [`Shard::of_ref`] of the ref the
/// mapping would build, or [`Shard::of_row`] when it builds none (the tests compare).
#[derive(Debug, Clone)]
pub struct RowShards {
    shard: Shard,
    /// The FNV state after the prefix, and the prefix's length in characters (a ref over
    /// 255 characters cannot be built); `None` without refs.
    prefix: Option<(u64, usize)>,
    fields: usize,
}

impl RowShards {
    /// `prefix`: what the ref of row `r` is before `r` (`None`: rows have no ref).
    /// `fields`: the field count a record must have for its ref to be built.
    pub fn new(shard: Shard, prefix: Option<&str>, fields: usize) -> RowShards {
        RowShards {
            shard,
            prefix: prefix.map(|p| (fnv1a(FNV_OFFSET, p.as_bytes()), p.chars().count())),
            fields,
        }
    }

    /// Whether row `row`, whose record has `fields` fields, is this copy's.
    pub fn keeps(&self, row: u64, fields: usize) -> bool {
        let of = match self.prefix {
            Some((state, chars)) if fields == self.fields => {
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(row);
                if chars + digits.len() <= MAX_REF_CHARS {
                    let h = fmix64(fnv1a(state, digits.as_bytes()));
                    (h % u64::from(self.shard.count)) as u32
                } else {
                    self.shard.of_row(row)
                }
            }
            _ => self.shard.of_row(row),
        };
        of == self.shard.index
    }
}

/// MurmurHash3's 64-bit finalizer: every input bit flips each output bit with
/// probability about one half.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h
    }

    #[test]
    fn fnv1a_is_the_published_one() {
        // The FNV test vectors (Fowler, Noll, Vo).
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn the_shard_hash_is_pinned() {
        // Computed apart from this code (a Python FNV-1a + fmix64). If one of these changes, copies of two czload versions would split a load
        // differently: rows lost or sent twice. Never update them.
        assert_eq!(ref_hash(b""), 0xefd01f60ba992926);
        assert_eq!(ref_hash(b"orders.csv:1"), 0x12b997ac73444cc4);
        assert_eq!(ref_hash("order-é€𝄞".as_bytes()), 0x9d0c8b61e338cb10);
        let s3 = Shard { index: 0, count: 3 };
        let shards: Vec<u32> = (1..=12)
            .map(|r| s3.of_ref(format!("orders.csv:{r}").as_bytes()))
            .collect();
        assert_eq!(shards, [0, 1, 0, 2, 0, 1, 0, 0, 1, 0, 2, 0]);
        assert_eq!(s3.of_row(7), 1);
    }

    #[test]
    fn generated_refs_spread_evenly_over_powers_of_two() {
        let s = Shard { index: 0, count: 8 };
        let mut n = [0u32; 8];
        for r in 1..=80_000u64 {
            n[s.of_ref(format!("big.csv:{r}").as_bytes()) as usize] += 1;
        }
        assert!(n.iter().all(|&c| (9_500..=10_500).contains(&c)), "{n:?}");
    }

    #[test]
    fn shards_parse_and_refuse_with_the_fix() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        assert_eq!(Shard::parse(" 0 / 1 ").unwrap().to_string(), "0/1");
        assert_eq!(Shard::parse("1/8").unwrap().file_tag(), "shard-1-of-8");
        let e = Shard::parse("3/3").unwrap_err().to_string();
        assert!(e.contains("--shard 2/3"), "{e}");
        for bad in ["3", "a/3", "1/0", "-1/3", "1/b"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
