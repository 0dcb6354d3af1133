//! A small per-thread front for the shared cache.
//!
//! moka's `get` costs 0.3-1.2 µs (hashing with SipHash, its frequency sketch
//! and access-order deques), which was the largest user-space cost of a
//! cache hit. Each worker thread keeps a direct-mapped table of the entries it
//! served last; a hit there is one hash, one atomic operation and one key
//! comparison. The table is two-way set-associative: each key may sit in
//! either slot of its bucket (one cache line), the one used last first, so two
//! hot names that hash to the same bucket do not evict each other on every
//! query as they did in a direct-mapped table (with 10,000 hot names, a quarter
//! of them shared a slot and went to moka every other time). The front only ever returns entries that are still fresh, so
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

/// Slots per bucket: a key lives in one of its bucket's slots.
const WAYS: usize = 2;

const BUCKETS: usize = SLOTS / WAYS;

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

impl Slot {
    fn holds(&self, owner: u64, hash: u64) -> bool {
        self.hash == hash && self.owner == owner
    }
}

/// Slot 0 is the one used last. Aligned so that a bucket is one cache line.
#[repr(align(64))]
#[derive(Default)]
struct Bucket([Option<Slot>; WAYS]);

struct Front {
    buckets: Vec<Bucket>,
    hasher: hashbrown::DefaultHashBuilder,
}

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front {
        buckets: (0..BUCKETS).map(|_| Bucket::default()).collect(),
        hasher: hashbrown::DefaultHashBuilder::default(),
    });
}

/// The entry for `key` in this thread's front, if the shared cache still holds it.
pub fn get(owner: u64, key: &CacheKey) -> Option<Arc<Entry>> {
    FRONT.with(|front| {
        let mut front = front.borrow_mut();
        let hash = front.hasher.hash_one(key);
        let bucket = &mut front.buckets[hash as usize & (BUCKETS - 1)].0;
        let way = bucket
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|s| s.holds(owner, hash)))?;
        let entry = bucket[way].as_ref()?.entry.upgrade()?;
        if entry.key != *key {
            return None;
        }
        // Most recently used first: a new key replaces the other one.
        bucket.swap(0, way);
        Some(entry)
    })
}

/// Remembers `entry` (stored under its own key) in this thread's front, as the
/// bucket's most recently used: in its key's slot if it has one (a refreshed
/// entry), else in place of the least recently used.
pub fn put(owner: u64, entry: &Arc<Entry>) {
    FRONT.with(|front| {
        let mut front = front.borrow_mut();
        let hash = front.hasher.hash_one(&entry.key);
        let bucket = &mut front.buckets[hash as usize & (BUCKETS - 1)].0;
        let way = bucket
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|s| s.holds(owner, hash)))
            .unwrap_or(WAYS - 1);
        bucket[way] = Some(Slot {
            owner,
            hash,
            entry: Arc::downgrade(entry),
        });
        bucket[..=way].rotate_right(1);
    });
}

#[cfg(test)]
mod tests {
    use super::super::tests::{answer, request};
    use super::*;
    use crate::cache::{Cache, CacheSettings};
    use crate::clock::Clock;

    fn bucket_of(key: &CacheKey) -> usize {
        FRONT.with(|f| f.borrow().hasher.hash_one(key)) as usize & (BUCKETS - 1)
    }

    /// Two names whose keys share a bucket of this thread's front.
    fn colliding_names() -> (String, String) {
        let mut seen = std::collections::HashMap::new();
        for i in 0.. {
            let name = format!("n{i}.test");
            let bucket = bucket_of(&CacheKey::for_request(&request(&name)));
            if let Some(other) = seen.insert(bucket, name.clone()) {
                return (other, name);
            }
        }
        unreachable!()
    }

    #[test]
    fn two_hot_keys_of_one_bucket_are_both_served_from_the_front() {
        let cache = Cache::new(CacheSettings::default(), Clock::manual());
        let (a, b) = colliding_names();
        let (ra, rb) = (request(&a), request(&b));
        let ea = cache.insert(CacheKey::for_request(&ra), answer(&ra, 300));
        let eb = cache.insert(CacheKey::for_request(&rb), answer(&rb, 300));
        for _ in 0..3 {
            for e in [&ea, &eb] {
                let found = get(cache.id, &e.key).expect("in the front");
                assert!(Arc::ptr_eq(&found, e));
            }
        }
        // A third key of the bucket replaces the one used least recently (a), not b.
        let c = (0..)
            .map(|i| format!("c{i}.test"))
            .find(|n| bucket_of(&CacheKey::for_request(&request(n))) == bucket_of(&ea.key))
            .expect("a third name in the bucket");
        let rc = request(&c);
        let ec = cache.insert(CacheKey::for_request(&rc), answer(&rc, 300));
        assert!(get(cache.id, &ea.key).is_none());
        assert!(get(cache.id, &eb.key).is_some());
        assert!(get(cache.id, &ec.key).is_some());
    }
}
