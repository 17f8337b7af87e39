//! Eight bytes at a time in a `u64` ("SIMD within a register"): the byte tests that the
//! hot scans (`mapping::is_plain`, `answer`'s string ends, the CSV quoting check) share.
//! (The NDJSON line search uses the `memchr` crate instead.)
//!
//! From "Bit Twiddling Hacks" ("Determine if a word has a byte less than n", "... equal
//! to n"): a test's result has the high bit set in each flagged byte, and may flag more
//! bytes only above a flagged one (a borrow runs upward), so "any flagged" is exact, and
//! so is the lowest flagged byte of a [`word`].

pub const ONES: u64 = u64::from_le_bytes([0x01; 8]);
pub const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// The 8 bytes of `b` from `i`, the first in the lowest bits.
#[inline]
pub fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Flags the bytes of `x` equal to `c`.
#[inline]
pub fn eq(x: u64, c: u8) -> u64 {
    let y = x ^ (ONES * u64::from(c));
    y.wrapping_sub(ONES) & !y & HIGH
}

/// Flags the bytes of `x` below `n` (`n` at most 0x80).
#[inline]
pub fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
}

/// The index of the lowest flagged byte in a nonzero test result.
#[inline]
pub fn first(flags: u64) -> usize {
    flags.trailing_zeros() as usize / 8
}
