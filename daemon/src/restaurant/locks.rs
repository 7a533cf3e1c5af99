//! Per-key locks: an order holds the locks of what it checks (its operator, its tables, the
//! deposits and originals it uses) from the check until its record is durable and applied, so
//! two orders never both pass a check that only one of them may pass. Orders that share no key
//! run side by side (group commit is kept).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// A lock per key, created on demand and forgotten when nobody holds it.
#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<String, Weak<RwLock<()>>>>,
}

/// Held locks; released on drop.
pub struct Guards {
    _read: Vec<OwnedRwLockReadGuard<()>>,
    _write: Vec<OwnedRwLockWriteGuard<()>>,
}

impl KeyedLocks {
    fn get(&self, key: &str) -> Arc<RwLock<()>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = map.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() >= 4096 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(RwLock::new(()));
        map.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }

    /// Takes every lock in `keys` (`true` = exclusive), in key order so that two callers never
    /// wait for each other in a cycle. A key named twice is taken once, exclusive if either asks.
    pub async fn lock(&self, keys: impl IntoIterator<Item = (String, bool)>) -> Guards {
        let mut wanted: BTreeMap<String, bool> = BTreeMap::new();
        for (k, exclusive) in keys {
            *wanted.entry(k).or_default() |= exclusive;
        }
        let mut guards = Guards {
            _read: Vec::new(),
            _write: Vec::new(),
        };
        for (key, exclusive) in wanted {
            let lock = self.get(&key);
            if exclusive {
                guards._write.push(lock.write_owned().await);
            } else {
                guards._read.push(lock.read_owned().await);
            }
        }
        guards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn exclusive_keys_wait_shared_keys_do_not() {
        let locks = Arc::new(KeyedLocks::default());
        let a = locks.lock([("op:1".to_owned(), false)]).await;
        // A second reader gets in at once.
        let b = tokio::time::timeout(
            Duration::from_secs(5),
            locks.lock([("op:1".to_owned(), false)]),
        )
        .await
        .expect("shared lock");
        drop(b);
        let l2 = locks.clone();
        let writer = tokio::spawn(async move { l2.lock([("op:1".to_owned(), true)]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!writer.is_finished(), "writer must wait for the reader");
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("writer gets the lock once the reader is gone")
            .expect("task");
    }

    #[tokio::test]
    async fn keys_are_taken_in_order_so_crossing_callers_do_not_deadlock() {
        let locks = Arc::new(KeyedLocks::default());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let l = locks.clone();
            tasks.push(tokio::spawn(async move {
                let (a, b) = if i % 2 == 0 {
                    ("t:1", "t:2")
                } else {
                    ("t:2", "t:1")
                };
                let _g = l.lock([(a.to_owned(), true), (b.to_owned(), true)]).await;
                tokio::task::yield_now().await;
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("no deadlock")
                .expect("task");
        }
    }
}
