//! Concurrent misses for one key cause one upstream query.
//!
//! The first caller for a key (the leader) does the work; later callers wait
//! for its result. If the leader is cancelled, its waiters are told so (they
//! get `None`) and may try again, so a dropped task never strands them.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// In-flight work keyed by `K`, sharing results of type `V`.
pub struct Coalescer<K, V> {
    inflight: Mutex<HashMap<K, Vec<oneshot::Sender<V>>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

/// Whether a result was fetched by this caller or shared from another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

impl<K: Hash + Eq + Clone, V: Clone> Coalescer<K, V> {
    /// Runs `work` unless the same key is in flight, in which case waits for
    /// that result. `None` means the leader was cancelled.
    pub async fn run<F: Future<Output = V>>(
        &self,
        key: &K,
        work: impl FnOnce() -> F,
    ) -> (Option<V>, Role) {
        let waiter = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get_mut(key) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    inflight.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiter {
            return (rx.await.ok(), Role::Follower);
        }
        let mut guard = LeaderGuard {
            owner: self,
            key: Some(key.clone()),
        };
        let value = work().await;
        for tx in guard.take_waiters() {
            let _ = tx.send(value.clone());
        }
        (Some(value), Role::Leader)
    }

    /// Keys in flight now.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().map_or(0, |m| m.len())
    }
}

/// Clears the leader's slot on completion or cancellation.
struct LeaderGuard<'a, K: Hash + Eq + Clone, V: Clone> {
    owner: &'a Coalescer<K, V>,
    key: Option<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> LeaderGuard<'_, K, V> {
    fn take_waiters(&mut self) -> Vec<oneshot::Sender<V>> {
        let Some(key) = self.key.take() else {
            return Vec::new();
        };
        let mut inflight = self
            .owner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        inflight.remove(&key).unwrap_or_default()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for LeaderGuard<'_, K, V> {
    fn drop(&mut self) {
        // Dropping the senders wakes the waiters with `None`.
        drop(self.take_waiters());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn hundred_callers_one_execution() {
        let c = Arc::new(Coalescer::<u32, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (c, runs) = (c.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                c.run(&7, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    42
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().0, Some(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_leader_releases_followers() {
        let c = Arc::new(Coalescer::<u32, u32>::default());
        let leader = {
            let c = c.clone();
            tokio::spawn(async move { c.run(&1, std::future::pending::<u32>).await })
        };
        tokio::task::yield_now().await;
        let follower = {
            let c = c.clone();
            tokio::spawn(async move { c.run(&1, || async { 5 }).await })
        };
        tokio::task::yield_now().await;
        leader.abort();
        assert_eq!(follower.await.unwrap(), (None, Role::Follower));
        assert_eq!(c.in_flight(), 0);
    }
}
