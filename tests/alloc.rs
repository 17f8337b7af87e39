//! Signing allocates nothing: a counting global allocator holds `sign` and `write_url`
//! (into a pre-sized `String`) to it.
//!
//! A binary of its own (`[[test]] name = "alloc"`): the global allocator counts every
//! allocation of the process, so no other test may share it. The count is per thread,
//! because the test harness's own threads allocate while we measure.

use czload::sign::{sign, sign_raw, write_url, Secret};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // `const` so that reading it never allocates (no lazy init through the allocator).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

#[test]
fn the_counter_sees_allocations() {
    // Without this, a broken counter would make the other tests pass vacuously.
    let (v, n) = allocations(|| std::hint::black_box(vec![1u8; 64]));
    assert_eq!(v.len(), 64);
    assert!(n >= 1, "the counting allocator saw nothing");
}

#[test]
fn sign_allocates_nothing() {
    let secret = Secret::new("s3cr3t");
    let big = vec![b'x'; 1 << 20];
    for body in [&br#"{"ops":[]}"#[..], &big[..]] {
        let (sig, n) = allocations(|| sign(1_700_000_000, &secret, body));
        assert_eq!(
            n,
            0,
            "sign allocated {n} times for a {}-byte body",
            body.len()
        );
        std::hint::black_box(sig);
        let (sig, n) = allocations(|| sign_raw(b"1700000000", secret.expose(), body));
        assert_eq!(n, 0, "sign_raw allocated {n} times");
        std::hint::black_box(sig);
    }
    let (sig, _) = allocations(|| sign(1_700_000_000, &secret, br#"{"ops":[]}"#));
    assert_eq!(&sig, b"c09a76f12f8beb4943bd8eabe86ad1c9739e7e7a");
}

#[test]
fn write_url_into_a_presized_string_allocates_nothing() {
    let secret = Secret::new("s3cr3t");
    let sig = sign(1_700_000_000, &secret, br#"{"ops":[]}"#);
    let base = "https://api.corezoid.com";
    // Sized the way a sender keeps its URL buffer: once, then reused for every request.
    let mut url = String::with_capacity(256);
    for ts in [1_700_000_000u64, u64::MAX, 0] {
        let ((), n) = allocations(|| write_url(&mut url, base, "123456", ts, &sig));
        assert_eq!(n, 0, "write_url allocated {n} times (ts {ts})");
    }
    write_url(&mut url, base, "123456", 1_700_000_000, &sig);
    assert_eq!(
        url,
        "https://api.corezoid.com/api/2/json/123456/1700000000/c09a76f12f8beb4943bd8eabe86ad1c9739e7e7a"
    );
}
