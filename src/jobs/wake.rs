//! How idle runners of this process learn that a job is waiting.
//!
//! One job wakes one runner, not all of them: with 16 idle runners, waking all for each order
//! had 15 of them race for one row and claim nothing (22 empty claims per order, each a write
//! on the database). A runner that claimed a job passes the wake on to the next one, so a
//! batch that arrived as one wake (another replica's `NOTIFY`s coalesce, a transaction queues
//! several jobs) still spreads over the idle runners, one claim ahead of the work. Wakes are
//! counted (a semaphore's permits), so one that arrives while a runner is between its empty
//! claim and its wait is kept, not lost; they are capped at the number of runners, so a burst
//! leaves at most that many empty claims behind.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Semaphore;

#[derive(Clone, Default)]
pub struct Wake(Arc<Inner>);

struct Inner {
    permits: Semaphore,
    /// Runners waiting on this wake (see [`Wake::runner`]).
    runners: AtomicUsize,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            permits: Semaphore::new(0),
            runners: AtomicUsize::new(0),
        }
    }
}

impl Wake {
    /// A job was queued (once its transaction committed): one idle runner claims it.
    pub fn one(&self) {
        self.add(1);
    }

    /// Jobs may be waiting that this process did not queue (a reconnect to the listener lost
    /// notifications): every idle runner looks.
    pub fn all(&self) {
        self.add(self.0.runners.load(Ordering::Relaxed));
    }

    fn add(&self, n: usize) {
        let cap = self.0.runners.load(Ordering::Relaxed);
        let room = cap.saturating_sub(self.0.permits.available_permits());
        // A race between two adders can pass the cap by a few: a few empty claims.
        let n = n.min(room);
        if n > 0 {
            self.0.permits.add_permits(n);
        }
    }

    /// Counts a runner for the cap while the guard lives.
    pub(crate) fn runner(&self) -> RunnerGuard {
        self.0.runners.fetch_add(1, Ordering::Relaxed);
        RunnerGuard(self.clone())
    }

    /// Resolves at the next wake (cancel-safe: dropping it gives up its place, not a wake).
    pub(crate) async fn wait(&self) {
        if let Ok(p) = self.0.permits.acquire().await {
            p.forget();
        }
    }

    #[cfg(test)]
    fn pending(&self) -> usize {
        self.0.permits.available_permits()
    }
}

pub(crate) struct RunnerGuard(Wake);

impl Drop for RunnerGuard {
    fn drop(&mut self) {
        self.0.0.runners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wake_before_the_wait_is_kept() {
        let w = Wake::default();
        let _r = w.runner();
        w.one();
        tokio::time::timeout(Duration::from_secs(1), w.wait())
            .await
            .expect("the earlier wake is kept");
    }

    #[tokio::test]
    async fn one_job_wakes_one_runner() {
        let w = Wake::default();
        let guards: Vec<_> = (0..4).map(|_| w.runner()).collect();
        let woken = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (w, woken) = (w.clone(), woken.clone());
                tokio::spawn(async move {
                    w.wait().await;
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        tokio::task::yield_now().await;
        w.one();
        // Give every waiter the chance to run: only one may have been woken.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        w.all();
        for h in waiters {
            tokio::time::timeout(Duration::from_secs(1), h)
                .await
                .expect("all wakes every runner")
                .unwrap();
        }
        drop(guards);
    }

    #[test]
    fn wakes_are_capped_at_the_runners() {
        let w = Wake::default();
        w.one();
        assert_eq!(w.pending(), 0, "no runner, nobody to wake");
        let _a = w.runner();
        let _b = w.runner();
        for _ in 0..10 {
            w.one();
        }
        assert_eq!(w.pending(), 2);
        drop(_b);
        w.all();
        assert_eq!(w.pending(), 2, "a wake already given is not taken back");
    }
}
