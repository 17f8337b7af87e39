//! The tasks-per-second limit (`--rps`), as a license enforces it.
//!
//! In: the number of operations a request carries. Out: how many of them the current
//! second still admits. The window is the wall-clock second (`unix time / 1 s`), kept with
//! the ops used so far in one `AtomicU64` (`second << 32 | used`), so admitting is one
//! compare-and-swap and no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub(crate) struct RpsWindow {
    limit: u32,
    state: AtomicU64,
}

impl RpsWindow {
    pub fn new(limit: u32) -> RpsWindow {
        RpsWindow {
            limit,
            state: AtomicU64::new(0),
        }
    }

    /// Admits `n` ops only if all of them fit in this second (request mode); true if so.
    pub fn admit_all(&self, n: usize) -> bool {
        self.admit(n, true) == n
    }

    /// Admits as many of `n` ops as fit in this second (op mode) and returns that number.
    pub fn admit_some(&self, n: usize) -> usize {
        self.admit(n, false)
    }

    fn admit(&self, n: usize, all_or_nothing: bool) -> usize {
        self.admit_at(now_second(), n, all_or_nothing)
    }

    fn admit_at(&self, second: u32, n: usize, all_or_nothing: bool) -> usize {
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (sec, used) = ((cur >> 32) as u32, cur as u32);
            // A later second starts from zero; an earlier one (a clock stepped back) keeps
            // counting in the window we have rather than granting a fresh second.
            let (sec, used) = if second > sec {
                (second, 0)
            } else {
                (sec, used)
            };
            let room = self.limit.saturating_sub(used) as usize;
            let grant = if all_or_nothing {
                if n <= room {
                    n
                } else {
                    0
                }
            } else {
                n.min(room)
            };
            if grant == 0 && n != 0 {
                return 0;
            }
            let next = (u64::from(sec) << 32) | u64::from(used + grant as u32);
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return grant,
                Err(actual) => cur = actual,
            }
        }
    }
}

fn now_second() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_mode_is_all_or_nothing_within_a_second() {
        let w = RpsWindow::new(50);
        assert_eq!(w.admit_at(10, 40, true), 40);
        assert_eq!(w.admit_at(10, 20, true), 0);
        assert_eq!(w.admit_at(10, 10, true), 10);
        assert_eq!(w.admit_at(10, 1, true), 0);
        assert_eq!(w.admit_at(11, 50, true), 50);
        assert_eq!(w.admit_at(11, 100, true), 0);
    }

    #[test]
    fn op_mode_admits_what_fits() {
        let w = RpsWindow::new(50);
        assert_eq!(w.admit_at(10, 30, false), 30);
        assert_eq!(w.admit_at(10, 30, false), 20);
        assert_eq!(w.admit_at(10, 30, false), 0);
        assert_eq!(
            w.admit_at(9, 5, false),
            0,
            "a clock step back grants nothing new"
        );
        assert_eq!(w.admit_at(12, 100, false), 50);
    }
}
