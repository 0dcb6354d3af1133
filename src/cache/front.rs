//! A small per-thread front for the shared cache.
//!
//! moka's `get` costs 0.3-1.2 µs (hashing with SipHash, its frequency sketch
//! and access-order deques), which was the largest user-space cost of a
//! cache hit. Each worker thread keeps a direct-mapped table of the entries it
//! served last; a hit there is one hash and one key comparison. The front
//! only ever returns entries that are still fresh, so an entry refreshed in
//! the shared cache by another worker replaces ours as soon as ours expires.
//! It holds at most [`SLOTS`] entries per worker beyond moka's byte budget.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;

use super::{CacheKey, Entry};

/// Slots per worker thread (a power of two): ~2.5 MB of slots, enough for the
/// hot head of a resolver's working set.
pub const SLOTS: usize = 32_768;

struct Slot {
    /// Which [`super::Cache`] the entry belongs to (tests run several servers per process).
    owner: u64,
    hash: u64,
    key: CacheKey,
    entry: Arc<Entry>,
}

struct Front {
    slots: Vec<Option<Slot>>,
    hasher: hashbrown::DefaultHashBuilder,
}

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front {
        slots: (0..SLOTS).map(|_| None).collect(),
        hasher: hashbrown::DefaultHashBuilder::default(),
    });
}

/// The entry for `key` in this thread's front, if any.
pub fn get(owner: u64, key: &CacheKey) -> Option<Arc<Entry>> {
    FRONT.with(|front| {
        let front = front.borrow();
        let hash = front.hasher.hash_one(key);
        match &front.slots[hash as usize & (SLOTS - 1)] {
            Some(slot) if slot.hash == hash && slot.owner == owner && slot.key == *key => {
                Some(slot.entry.clone())
            }
            _ => None,
        }
    })
}

/// Remembers `entry` for `key` in this thread's front.
pub fn put(owner: u64, key: &CacheKey, entry: &Arc<Entry>) {
    FRONT.with(|front| {
        let mut front = front.borrow_mut();
        let hash = front.hasher.hash_one(key);
        front.slots[hash as usize & (SLOTS - 1)] = Some(Slot {
            owner,
            hash,
            key: key.clone(),
            entry: entry.clone(),
        });
    });
}
