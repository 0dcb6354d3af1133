//! Concurrent misses for one key cause one upstream query.
//!
//! The first caller for a key (the leader) starts the work as a task of its
//! own, and every caller, the leader included, waits for that task's result.
//! The work belongs to no caller: one that goes away (a DoH stream reset, a
//! task cancelled) only stops waiting, and the others are still answered by
//! the one query already on its way, instead of each starting its own.
//!
//! A caller that runs to the end anyway (a task of its own that nothing
//! aborts) may lead with [`Coalescer::run_here`] instead: it does the work
//! itself, which saves a miss the second task, its wake-up and a channel.
//!
//! A key gathers at most `max_followers` callers beyond the leader; past that
//! a caller is turned away at once ([`Unshared::TooManyWaiting`]), so one
//! slow name cannot pile up waiting queries without bound.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Callers waiting for each key's result. foldhash rather than SipHash, as
/// in the cache: seeded per process, and cheaper per miss.
type Table<K, V> = Mutex<HashMap<K, Waiters<V>, hashbrown::DefaultHashBuilder>>;

/// A key's waiters, and whether its leader is one of them ([`Coalescer::run`])
/// or does the work itself and waits for nothing ([`Coalescer::run_here`]).
struct Waiters<V> {
    senders: Vec<oneshot::Sender<V>>,
    leader_waits: bool,
}

/// In-flight work keyed by `K`, sharing results of type `V`.
pub struct Coalescer<K, V> {
    table: Arc<Table<K, V>>,
    max_followers: usize,
}

/// Whether this caller started the work or joined another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

/// Why a caller got no shared result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unshared {
    /// The key already has its bound of followers.
    #[error("too many queries are already waiting for this answer")]
    TooManyWaiting,
    /// The work ended without a result: it panicked, or its runtime is
    /// shutting down.
    #[error("the fetch stopped without a result")]
    Abandoned,
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// A coalescer letting at most `max_followers` callers join a key's work.
    pub fn new(max_followers: usize) -> Self {
        Self {
            table: Arc::new(Mutex::new(HashMap::default())),
            max_followers,
        }
    }

    /// Waits for the result of the work in flight for `key`, starting it
    /// with `work` (on the current tokio runtime) when there is none.
    /// Cancelling this future never cancels the work.
    pub async fn run<F>(&self, key: &K, work: impl FnOnce() -> F) -> Result<(V, Role), Unshared>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (waiter, result) = oneshot::channel();
        let role = self.join(key, waiter)?;
        if role == Role::Leader {
            let completion = Completion {
                table: Arc::clone(&self.table),
                key: Some(key.clone()),
            };
            let work = work();
            // Boxed: tokio copies a task's whole future when it is spawned and again when it
            // completes; a fetch's future is kilobytes, its box a pointer.
            tokio::spawn(Box::pin(async move { completion.deliver(&work.await) }));
        }
        let value = result.await.map_err(|_| Unshared::Abandoned)?;
        Ok((value, role))
    }

    /// As [`Self::run`], but a leader does the work itself, in the caller's
    /// task, rather than in a task of its own: a miss then costs one task, not
    /// two, and no channel for the leader. Only for a caller that runs to the
    /// end (a task of its own that nothing aborts): if this future is dropped
    /// while it leads, the work stops and its followers hear
    /// [`Unshared::Abandoned`].
    pub async fn run_here<F>(
        &self,
        key: &K,
        work: impl FnOnce() -> F,
    ) -> Result<(V, Role), Unshared>
    where
        F: Future<Output = V>,
    {
        if let Some(result) = self.lead_or_follow(key)? {
            let value = result.await.map_err(|_| Unshared::Abandoned)?;
            return Ok((value, Role::Follower));
        }
        let completion = Completion {
            table: Arc::clone(&self.table),
            key: Some(key),
        };
        let value = work().await;
        completion.deliver(&value);
        Ok((value, Role::Leader))
    }

    /// For [`Self::run_here`]: None when this caller leads `key` (registered
    /// as a leader that waits for nothing), else the follower's receiver.
    fn lead_or_follow(&self, key: &K) -> Result<Option<oneshot::Receiver<V>>, Unshared> {
        let mut table = lock(&self.table);
        let Some(waiters) = table.get_mut(key) else {
            let (senders, leader_waits) = (Vec::new(), false);
            table.insert(
                key.clone(),
                Waiters {
                    senders,
                    leader_waits,
                },
            );
            return Ok(None);
        };
        let (waiter, result) = oneshot::channel();
        self.follow(waiters, waiter)?;
        Ok(Some(result))
    }

    /// Registers `waiter` for `key`; the first one for a key leads.
    fn join(&self, key: &K, waiter: oneshot::Sender<V>) -> Result<Role, Unshared> {
        let mut table = lock(&self.table);
        let Some(waiters) = table.get_mut(key) else {
            let senders = vec![waiter];
            let leader_waits = true;
            table.insert(
                key.clone(),
                Waiters {
                    senders,
                    leader_waits,
                },
            );
            return Ok(Role::Leader);
        };
        self.follow(waiters, waiter)?;
        Ok(Role::Follower)
    }

    /// Adds a follower to a key's waiters, within the bound.
    fn follow(&self, waiters: &mut Waiters<V>, waiter: oneshot::Sender<V>) -> Result<(), Unshared> {
        let bound = self
            .max_followers
            .saturating_add(usize::from(waiters.leader_waits));
        let senders = &mut waiters.senders;
        if senders.len() >= bound {
            // Callers that went away still hold a place: make room first.
            senders.retain(|w| !w.is_closed());
        }
        if senders.len() >= bound {
            return Err(Unshared::TooManyWaiting);
        }
        senders.push(waiter);
        Ok(())
    }

    /// Keys in flight now.
    pub fn in_flight(&self) -> usize {
        lock(&self.table).len()
    }
}

/// The work's side of a key: hands the result to every waiter, or, if the
/// work never finishes (a panic, a runtime shutting down, a leader of
/// [`Coalescer::run_here`] dropped), clears the key so that its waiters hear
/// [`Unshared::Abandoned`] instead of hanging. The key is owned by a work
/// task, borrowed by a leader working in its own task.
struct Completion<K: Hash + Eq, V, Q: Borrow<K> = K> {
    table: Arc<Table<K, V>>,
    key: Option<Q>,
}

impl<K: Hash + Eq, V: Clone, Q: Borrow<K>> Completion<K, V, Q> {
    fn deliver(mut self, value: &V) {
        for waiter in self.take_waiters() {
            // A waiter that went away is simply skipped.
            let _ = waiter.send(value.clone());
        }
    }

    fn take_waiters(&mut self) -> Vec<oneshot::Sender<V>> {
        let Some(key) = self.key.take() else {
            return Vec::new();
        };
        let waiters = lock(&self.table).remove(key.borrow());
        waiters.map(|w| w.senders).unwrap_or_default()
    }
}

impl<K: Hash + Eq, V, Q: Borrow<K>> Drop for Completion<K, V, Q> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Dropping the senders wakes the waiters with `Abandoned`.
            let waiters = lock(&self.table).remove(key.borrow());
            drop(waiters);
        }
    }
}

/// A panic elsewhere must not turn every later lookup into a second panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Work that counts its runs and answers `value` after `delay`.
    fn counted(
        runs: &Arc<AtomicUsize>,
        delay: Duration,
        value: u32,
    ) -> impl Future<Output = u32> + Send + 'static {
        let runs = Arc::clone(runs);
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            value
        }
    }

    /// A task asking `c` for `key` with work that answers `value` after 50 ms,
    /// by [`Coalescer::run_here`] when `here`, else by [`Coalescer::run`].
    fn caller(
        c: &Arc<Coalescer<u32, u32>>,
        runs: &Arc<AtomicUsize>,
        (key, value): (u32, u32),
        here: bool,
    ) -> tokio::task::JoinHandle<Result<(u32, Role), Unshared>> {
        let (c, runs) = (c.clone(), runs.clone());
        tokio::spawn(async move {
            let work = || counted(&runs, Duration::from_millis(50), value);
            if here {
                c.run_here(&key, work).await
            } else {
                c.run(&key, work).await
            }
        })
    }

    /// Lets every spawned task run until it waits on something.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hundred_callers_one_execution() {
        let c = Arc::new(Coalescer::<u32, u32>::new(1000));
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..100)
            .map(|_| caller(&c, &runs, (7, 42), false))
            .collect();
        let mut leaders = 0;
        for t in tasks {
            let (value, role) = t.await.unwrap().unwrap();
            assert_eq!(value, 42);
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!((runs.load(Ordering::SeqCst), leaders), (1, 1));
        assert_eq!(c.in_flight(), 0);
    }

    /// A leader for key 1 (by [`Coalescer::run_here`] when `here`), `n`
    /// followers, then the leader aborted: the followers' results and the
    /// work's runs. Nothing is left in flight either way.
    async fn followers_of_an_aborted_leader(
        here: bool,
        n: usize,
    ) -> (Vec<Result<(u32, Role), Unshared>>, usize) {
        let c = Arc::new(Coalescer::<u32, u32>::new(1000));
        let runs = Arc::new(AtomicUsize::new(0));
        let leader = caller(&c, &runs, (1, 5), here);
        settle().await;
        let followers: Vec<_> = (0..n).map(|_| caller(&c, &runs, (1, 6), false)).collect();
        settle().await;
        leader.abort();
        let mut results = Vec::new();
        for follower in followers {
            results.push(follower.await.unwrap());
        }
        assert_eq!(c.in_flight(), 0);
        (results, runs.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_leader_leaves_its_work_to_the_followers() {
        let (results, runs) = followers_of_an_aborted_leader(false, 10).await;
        assert_eq!(results, vec![Ok((5, Role::Follower)); 10]);
        assert_eq!(runs, 1, "the work ran once");
    }

    /// Ten callers for one key with a bound of 3 followers, all leading with
    /// [`Coalescer::run_here`] when `here`, else with [`Coalescer::run`]:
    /// (shared, refused) results and the work's runs.
    async fn ten_callers_bound_three(here: bool) -> ((usize, usize), usize) {
        let c = Arc::new(Coalescer::<u32, u32>::new(3));
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10).map(|_| caller(&c, &runs, (1, 9), here)).collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let shared = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| **r == Err(Unshared::TooManyWaiting))
            .count();
        ((shared, refused), runs.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn followers_past_the_bound_are_turned_away_at_once() {
        // A leader working here is not one of its key's waiters: it does not
        // take a follower's place.
        for here in [false, true] {
            let (results, runs) = ten_callers_bound_three(here).await;
            assert_eq!(results, (4, 6), "the leader and 3 followers (here: {here})");
            assert_eq!(runs, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn followers_that_left_make_room() {
        let c = Arc::new(Coalescer::<u32, u32>::new(2));
        let runs = Arc::new(AtomicUsize::new(0));
        let spawn = || caller(&c, &runs, (1, 3), false);
        let leader = spawn();
        settle().await;
        let gone: Vec<_> = (0..2).map(|_| spawn()).collect();
        settle().await;
        for task in &gone {
            task.abort();
        }
        settle().await;
        let late = spawn();
        assert_eq!(late.await.unwrap(), Ok((3, Role::Follower)));
        assert_eq!(leader.await.unwrap(), Ok((3, Role::Leader)));
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_panics_releases_its_waiters() {
        let c = Arc::new(Coalescer::<u32, u32>::new(10));
        let result = c
            .run(&1, || async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                panic!("work failed")
            })
            .await;
        assert_eq!(result, Err(Unshared::Abandoned));
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_working_here_shares_with_its_followers() {
        let c = Arc::new(Coalescer::<u32, u32>::new(1000));
        let runs = Arc::new(AtomicUsize::new(0));
        let leader = caller(&c, &runs, (2, 8), true);
        settle().await;
        // Either way of following shares the one run.
        let followers: Vec<_> = (0..10)
            .map(|i| caller(&c, &runs, (2, 9), i % 2 == 0))
            .collect();
        assert_eq!(leader.await.unwrap(), Ok((8, Role::Leader)));
        for follower in followers {
            assert_eq!(follower.await.unwrap(), Ok((8, Role::Follower)));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran once");
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_leader_working_here_releases_its_followers() {
        let (results, _) = followers_of_an_aborted_leader(true, 1).await;
        assert_eq!(results, vec![Err(Unshared::Abandoned)]);
    }
}
