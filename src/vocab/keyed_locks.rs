//! In-process locks by name (a team, a database, a URL): holders of one name take turns,
//! other names are not delayed. A name's lock is forgotten once nobody holds or waits for it,
//! so the map is only as large as what is contended right now.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Debug, Default)]
pub struct KeyedLocks(Mutex<BTreeMap<String, Arc<AsyncMutex<()>>>>);

impl KeyedLocks {
    pub const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    /// Waits for `key`'s turn; the turn lasts as long as the guard (which may move to a task).
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(|e| e.into_inner());
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(key.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_name_takes_turns_others_do_not_wait_and_idle_names_are_forgotten() {
        let locks = KeyedLocks::new();
        let a = locks.lock("a").await;
        // Another name is free while "a" is held.
        let b = locks.lock("b").await;
        drop(b);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("a"));
        assert!(waiting.await.is_err(), "a second holder of a waits");
        drop(a);
        let _again = locks.lock("a").await;
        // Only "a" (held now) is left; "b" was forgotten when "a" was taken again.
        assert_eq!(locks.0.lock().unwrap().len(), 1);
    }
}
