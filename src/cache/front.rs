//! A small per-thread front for the shared cache.
//!
//! moka's `get` costs 0.3-1.2 µs (hashing with SipHash, its frequency sketch
//! and access-order deques), which was the largest user-space cost of a
//! cache hit. Each worker thread keeps a direct-mapped table of the entries it
//! served last; a hit there is one hash, one atomic operation and one key
//! comparison. The front only ever returns entries that are still fresh, so
//! an entry refreshed in the shared cache by another worker replaces ours as
//! soon as ours expires.
//!
//! The front keeps no answer alive: a slot points at moka's entry through a
//! [`Weak`], so an entry that moka evicts (byte budget), expires or replaces
//! is freed at once and no longer found here. What the front holds itself is
//! fixed, whatever the answers' size: [`SLOTS`] slots, each with at most the
//! answerless shell of one dropped [`Entry`] (its key's name is freed with
//! it): [`MAX_BYTES`] per worker thread beyond the cache's byte budget.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::{Arc, Weak};

use super::{CacheKey, Entry};

/// Slots per worker thread (a power of two): enough for the hot head of a
/// resolver's working set.
pub const SLOTS: usize = 32_768;

/// Most bytes one thread's front holds: its slots, plus a dropped entry's
/// allocation (two reference counts and the [`Entry`]) that a slot's `Weak`
/// keeps until the slot is reused: 3.5 MiB, 3.75 MiB with the allocator's
/// rounding of the entry's allocation.
pub const MAX_BYTES: usize =
    SLOTS * (size_of::<Option<Slot>>() + 2 * size_of::<usize>() + size_of::<Entry>());

struct Slot {
    /// Which [`super::Cache`] the entry belongs to (tests run several servers per process).
    owner: u64,
    hash: u64,
    /// moka holds the entry; the front only finds it while moka does.
    entry: Weak<Entry>,
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

/// The entry for `key` in this thread's front, if the shared cache still holds it.
pub fn get(owner: u64, key: &CacheKey) -> Option<Arc<Entry>> {
    FRONT.with(|front| {
        let front = front.borrow();
        let hash = front.hasher.hash_one(key);
        match &front.slots[hash as usize & (SLOTS - 1)] {
            Some(slot) if slot.hash == hash && slot.owner == owner => {
                slot.entry.upgrade().filter(|entry| entry.key == *key)
            }
            _ => None,
        }
    })
}

/// Remembers `entry` (stored under its own key) in this thread's front.
pub fn put(owner: u64, entry: &Arc<Entry>) {
    FRONT.with(|front| {
        let mut front = front.borrow_mut();
        let hash = front.hasher.hash_one(&entry.key);
        front.slots[hash as usize & (SLOTS - 1)] = Some(Slot {
            owner,
            hash,
            entry: Arc::downgrade(entry),
        });
    });
}
