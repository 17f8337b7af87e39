//! A semaphore whose number of permits can be set, up or down, while permits are out.
//!
//! In: the number of permits wanted now (`resize`), from the rate controller's in-flight
//! limit. Out: permits (`acquire`). The limit follows the rate and the latency both ways
//! (docs/architecture.md, "Rate and concurrency"): one that only grew kept the most
//! requests a passing spike of latency ever asked for, and on loopback a server given 128
//! requests at once (one slow first answer was enough) did half the rows/s of 4.
//! Lowering cannot take back permits in use: what is owed is kept back as permits are
//! next acquired.

use std::sync::{Arc, Mutex};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Gate {
    sem: Arc<Semaphore>,
    /// Permits given (in circulation or available) and permits still to take back.
    state: Mutex<(usize, usize)>,
}

impl Gate {
    pub fn new(permits: usize) -> Gate {
        Gate {
            sem: Arc::new(Semaphore::new(permits)),
            state: Mutex::new((permits, 0)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        // Two counters, consistent at every unlock: a panic elsewhere cannot break them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the number of permits to `want`: added at once, or taken back as they free.
    pub fn resize(&self, want: usize) {
        let mut s = self.state();
        let (granted, owed) = *s;
        let have = granted - owed;
        if want > have {
            // Cancel what is owed first, then add.
            let more = want - have;
            let repaid = more.min(owed);
            s.1 -= repaid;
            if more > repaid {
                self.sem.add_permits(more - repaid);
                s.0 += more - repaid;
            }
        } else if want < have {
            let less = have - want;
            let now = self.sem.forget_permits(less);
            s.0 -= now;
            s.1 += less - now;
        }
    }

    /// The permits there are to be, once what is owed is taken back.
    pub fn size(&self) -> usize {
        let s = self.state();
        s.0 - s.1
    }

    /// Waits for a permit; it goes back when dropped.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        loop {
            let p = self.sem.clone().acquire_owned().await?;
            let mut s = self.state();
            if s.1 == 0 {
                return Ok(p);
            }
            // Owed: this one is taken back.
            s.1 -= 1;
            s.0 -= 1;
            p.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_follow_the_size_both_ways() {
        let g = Gate::new(4);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(g.acquire().await.expect("open"));
        }
        assert_eq!(g.sem.available_permits(), 0);
        // Down to 2 while all 4 are out: two are taken back as they come home.
        g.resize(2);
        assert_eq!(g.size(), 2);
        drop(held);
        let a = g.acquire().await.expect("open");
        let b = g.acquire().await.expect("open");
        assert_eq!(g.sem.available_permits(), 0, "only 2 remain");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), g.acquire())
                .await
                .is_err(),
            "a third waits"
        );
        // Up to 3: one more at once.
        g.resize(3);
        let c = tokio::time::timeout(std::time::Duration::from_millis(20), g.acquire()).await;
        assert!(c.is_ok(), "the third gets in");
        drop((a, b, c));
        assert_eq!(g.sem.available_permits(), 3);
        // Down with permits free: taken at once.
        g.resize(1);
        assert_eq!((g.sem.available_permits(), g.size()), (1, 1));
    }
}
