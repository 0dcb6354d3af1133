//! Per-thread buffers that one collector drains: the dashboard's batches and
//! the query log's pending lines. A worker thread writes into its own slot
//! (an uncontended mutex: the collector takes it now and then), so recording
//! costs no allocation, channel or wake-up per query.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::LocalKey;

/// One thread's buffer, shared with the collector.
pub(crate) type Slot<T> = Arc<Mutex<T>>;

/// A thread's slot in each live [`ThreadSlots`] of one kind (several servers
/// may run in one process, e.g. in tests); each user declares one in a
/// `thread_local!` and passes it to [`ThreadSlots::with`].
pub(crate) type Local<T> = RefCell<Vec<(Weak<ThreadSlots<T>>, Slot<T>)>>;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every thread's slot (a thread registers on its first use).
#[derive(Debug)]
pub(crate) struct ThreadSlots<T> {
    slots: Mutex<Vec<Slot<T>>>,
}

impl<T> Default for ThreadSlots<T> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Default> ThreadSlots<T> {
    /// Runs `f` on this thread's slot, registering it on first use.
    pub(crate) fn with(
        self: &Arc<Self>,
        local: &'static LocalKey<Local<T>>,
        f: impl FnOnce(&mut T),
    ) {
        local.with(|mine| {
            let mut mine = mine.borrow_mut();
            let me = Arc::as_ptr(self);
            if let Some((_, slot)) = mine.iter().find(|(s, _)| std::ptr::eq(s.as_ptr(), me)) {
                f(&mut lock(slot));
                return;
            }
            // First use from this thread: forget the slots of owners that are
            // gone, and register a new one.
            mine.retain(|(s, _)| s.strong_count() > 0);
            let slot = Slot::<T>::default();
            lock(&self.slots).push(slot.clone());
            f(&mut lock(&slot));
            mine.push((Arc::downgrade(self), slot));
        });
    }
}

impl<T> ThreadSlots<T> {
    /// A copy of the list, for the collector to drain without holding its lock.
    pub(crate) fn all(&self) -> Vec<Slot<T>> {
        lock(&self.slots).clone()
    }

    /// Forgets the slots of threads that are gone (only this list holds them
    /// once the collector's copy is dropped), unless `keep` says one still
    /// holds something to collect.
    pub(crate) fn forget_gone(&self, keep: impl Fn(&T) -> bool) {
        lock(&self.slots).retain(|slot| Arc::strong_count(slot) > 1 || keep(&lock(slot)));
    }

    /// How many threads have a slot.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.slots).len()
    }
}
