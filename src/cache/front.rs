//! A small per-thread front for the shared cache.
//!
//! moka's `get` costs 0.3-1.2 µs (hashing with SipHash, its frequency sketch
//! and access-order deques), which was the largest user-space cost of a
//! cache hit. Each worker thread keeps a table of the entries it served
//! last; a hit there is one hash, one atomic operation and one key
//! comparison. The table is eight-way set-associative: each key may sit in
//! any slot of its bucket (128 bytes, a pair of cache lines the CPU fetches
//! together), the one used last first, so hot names that hash to the same
//! bucket do not evict each other on every query as they did in a
//! direct-mapped table (with 10,000 hot names, a quarter of them shared a
//! slot and went to moka every other time). Names asked in a cycle (a client
//! walking a list) miss every time in a bucket that holds more of them than it
//! has ways: of 10,000 names in 32,768 slots that was 12 % with two ways,
//! 3.6 % with four and is 0.3 % with eight, in the same memory (a slot is a
//! tag and a pointer, 16 bytes). Each such miss is a lookup in moka: with
//! four ways, moka's code was 2.1 % of a hit's CPU on the bench's 10,000 names,
//! with eight 0.2 % (benches/README.md, *Fifteenth round*). The front only
//! ever returns entries that are still fresh, so an entry refreshed in the
//! shared cache by another worker replaces ours as soon as ours expires.
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
use crate::protocol::Answer;

/// Slots per worker thread (a power of two): enough for the hot head of a
/// resolver's working set.
pub const SLOTS: usize = 32_768;

/// Slots per bucket: a key lives in one of its bucket's slots.
const WAYS: usize = 8;

const BUCKETS: usize = SLOTS / WAYS;

/// Most bytes one thread's front holds: its slots, plus a dropped entry's
/// allocation (two reference counts and the [`Entry`]) that a slot's `Weak`
/// keeps until the slot is reused: 5 MiB, 5.5 MiB with the allocator's
/// rounding of the entry's allocation (an entry holds its key's name inline).
pub const MAX_BYTES: usize =
    SLOTS * (size_of::<Option<Slot>>() + 2 * size_of::<usize>() + size_of::<Entry>());

struct Slot {
    /// The key's hash mixed with its [`super::Cache`]'s id (see [`Front::tag`]).
    tag: u64,
    /// moka holds the entry; the front only finds it while moka does.
    entry: Weak<Entry>,
}

/// Slot 0 is the one used last. Aligned so that a bucket is one pair of cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Bucket([Option<Slot>; WAYS]);

struct Front {
    buckets: Vec<Bucket>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Front {
    /// The key's hash, made different for each cache (tests run several servers per
    /// process): the same key of two caches never has the same tag, because multiplying
    /// by an odd number is one-to-one, so a slot holds one cache's entry and the key
    /// comparison after the tag's tells different keys apart.
    fn tag(&self, owner: u64, key: &CacheKey) -> u64 {
        self.hasher.hash_one(key) ^ owner.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// The slot of `at`'s bucket that holds its key's tag, if any.
    fn slot(&self, at: Pending) -> Option<&Slot> {
        let bucket = &self.buckets[at.0 as usize & (BUCKETS - 1)].0;
        bucket.iter().flatten().find(|s| s.tag == at.0)
    }

    fn bucket(&mut self, tag: u64) -> &mut [Option<Slot>; WAYS] {
        &mut self.buckets[tag as usize & (BUCKETS - 1)].0
    }
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
        let tag = front.tag(owner, key);
        let bucket = front.bucket(tag);
        let way = bucket
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|s| s.tag == tag))?;
        let entry = bucket[way].as_ref()?.entry.upgrade()?;
        if entry.key != *key {
            return None;
        }
        // Most recently used first: a new key replaces the least recently used.
        bucket[..=way].rotate_right(1);
        Some(entry)
    })
}

/// Where a key sits in this thread's front, for [`prefetch_entry`].
#[derive(Debug, Clone, Copy)]
pub struct Pending(u64);

/// Starts loading the bucket `key` sits in, without waiting for it: the first half of a lookup
/// done ahead of [`get`] (see [`super::Cache::prefetch`]).
pub fn prefetch_bucket(owner: u64, key: &CacheKey) -> Pending {
    FRONT.with(|front| {
        let front = front.borrow();
        let tag = front.tag(owner, key);
        prefetch_lines(&front.buckets[tag as usize & (BUCKETS - 1)]);
        Pending(tag)
    })
}

/// Starts loading the entry that `at`'s bucket holds for its key, if any, without waiting for
/// it; call it once the bucket had time to arrive ([`prefetch_bucket`] of the whole batch first).
pub fn prefetch_entry(at: Pending) {
    FRONT.with(|front| {
        let front = front.borrow();
        if let Some(slot) = front.slot(at) {
            // The allocation's start: the reference counts that `get` updates come first.
            let counts = Weak::as_ptr(&slot.entry)
                .cast::<u8>()
                .wrapping_sub(2 * size_of::<usize>());
            prefetch_bytes(counts, 2 * size_of::<usize>() + size_of::<Entry>());
        }
    })
}

/// Starts loading the answer of the entry [`prefetch_entry`] asked for, once that entry has had
/// time to arrive: a query judged a few places later in its batch then finds its answer's lines
/// there, where its first read of the answer (`write_reply`'s first field) would wait for them.
/// Done at the entry's own time, not in a pass right after [`prefetch_entry`], which would wait
/// for every entry in turn. A hint only, like the others.
///
/// The entry is read, not upgraded: an upgrade writes the entry's reference count, a line
/// every worker that serves the same name writes too, and `get` upgrades it once anyway.
pub fn prefetch_answer(at: Pending) {
    FRONT.with(|front| {
        let front = front.borrow();
        if let Some(slot) = front.slot(at) {
            let entry = Weak::as_ptr(&slot.entry);
            // SAFETY: the slot's `Weak` keeps the entry's allocation, so the read is in bounds
            // even if another thread dropped the entry; nothing writes the `answer` field after
            // the entry is built (dropping it only reads it), so it holds a pointer value. The
            // answer it points to may be freed: it is only prefetched, never dereferenced.
            let answer = unsafe {
                std::ptr::addr_of!((*entry).answer)
                    .cast::<*const u8>()
                    .read()
            };
            prefetch_bytes(answer, 2 * size_of::<usize>() + size_of::<Answer>());
        }
    })
}

// `prefetch_answer` reads an `Arc<Answer>` as the address of its allocation (reference counts,
// then the answer): a pointer is all an `Arc` holds.
const _: () = assert!(size_of::<Arc<Answer>>() == size_of::<*const u8>());

/// Asks the CPU to load the cache lines of `value`, not waiting for them.
fn prefetch_lines<T>(value: &T) {
    prefetch_bytes((value as *const T).cast(), size_of::<T>());
}

/// Asks the CPU to load the cache lines of `len` bytes from `start`. A prefetch never faults,
/// whatever the address (a dropped entry's, or a dangling `Weak`'s), and changes no memory.
#[inline(always)]
fn prefetch_bytes(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len).step_by(64) {
        // SAFETY: a prefetch hint reads nothing the program sees and cannot fault.
        #[allow(unused_unsafe)]
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

/// Remembers `entry` (stored under its own key) in this thread's front, as the
/// bucket's most recently used: in its key's slot if it has one (a refreshed
/// entry), else in place of the least recently used.
pub fn put(owner: u64, entry: &Arc<Entry>) {
    FRONT.with(|front| {
        let mut front = front.borrow_mut();
        let tag = front.tag(owner, &entry.key);
        let bucket = front.bucket(tag);
        let way = bucket
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|s| s.tag == tag))
            .unwrap_or(WAYS - 1);
        bucket[way] = Some(Slot {
            tag,
            entry: Arc::downgrade(entry),
        });
        bucket[..=way].rotate_right(1);
    });
}

/// Puts a refreshed `entry` in its key's slot of this thread's front, if the
/// key has one, so that the old entry is no longer served from here. A key
/// the front does not hold gets no slot until it is looked up ([`put`] from
/// the shared cache's hit): most names a miss stores are never asked again,
/// and a slot for one would evict another entry, touching its memory (its
/// weak count) for nothing.
pub fn refresh(owner: u64, entry: &Arc<Entry>) {
    FRONT.with(|front| {
        let mut front = front.borrow_mut();
        let tag = front.tag(owner, &entry.key);
        let bucket = front.bucket(tag);
        if let Some(slot) = bucket.iter_mut().flatten().find(|slot| slot.tag == tag) {
            slot.entry = Arc::downgrade(entry);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::tests::{answer, request};
    use super::*;
    use crate::cache::{Cache, CacheSettings, Lookup};
    use crate::clock::Clock;

    fn bucket_of(cache: &Cache, key: &CacheKey) -> usize {
        FRONT.with(|f| f.borrow().tag(cache.id, key)) as usize & (BUCKETS - 1)
    }

    /// `n` names whose keys share a bucket of this thread's front for `cache`.
    fn colliding_names(cache: &Cache, n: usize) -> Vec<String> {
        let mut seen: std::collections::HashMap<usize, Vec<String>> = Default::default();
        for i in 0.. {
            let name = format!("n{i}.test");
            let bucket = bucket_of(cache, &CacheKey::for_request(&request(&name)));
            let names = seen.entry(bucket).or_default();
            names.push(name);
            if names.len() == n {
                return names.clone();
            }
        }
        unreachable!()
    }

    #[test]
    fn as_many_hot_keys_of_one_bucket_as_it_has_ways_are_all_served_from_the_front() {
        let cache = Cache::new(CacheSettings::default(), Clock::manual());
        let (names, entries) = a_full_bucket(&cache);
        for _ in 0..3 {
            for e in &entries {
                let found = get(cache.id, &e.key).expect("in the front");
                assert!(Arc::ptr_eq(&found, e));
            }
        }
        // One more key of the bucket replaces the one used least recently (the first), no other.
        let last = stored_and_looked_up(&cache, &names[WAYS]);
        assert!(get(cache.id, &entries[0].key).is_none());
        for e in entries[1..].iter().chain([&last]) {
            assert!(get(cache.id, &e.key).is_some());
        }
    }

    /// One bucket of this thread's front filled with entries of `cache`, each
    /// stored and looked up, and the names of its keys and of one more key of it.
    fn a_full_bucket(cache: &Cache) -> (Vec<String>, Vec<Arc<Entry>>) {
        let names = colliding_names(cache, WAYS + 1);
        let entries = names[..WAYS]
            .iter()
            .map(|n| stored_and_looked_up(cache, n))
            .collect();
        (names, entries)
    }

    /// `name` stored in `cache`, then looked up once (which gives it a slot).
    fn stored_and_looked_up(cache: &Cache, name: &str) -> Arc<Entry> {
        let r = request(name);
        let entry = cache.insert(CacheKey::for_request(&r), answer(&r, 300));
        assert!(matches!(cache.get(&entry.key), Lookup::Fresh(..)));
        entry
    }

    #[test]
    fn a_stored_key_takes_a_slot_at_its_first_lookup_and_a_refresh_replaces_it_at_once() {
        let cache = Cache::new(CacheSettings::default(), Clock::manual());
        let (names, held) = a_full_bucket(&cache);
        // A new key of the full bucket: stored, but no slot, so no other entry is evicted.
        let r = request(&names[WAYS]);
        let new = cache.insert(CacheKey::for_request(&r), answer(&r, 300));
        assert!(
            get(cache.id, &new.key).is_none(),
            "no slot before its first lookup"
        );
        for e in &held {
            assert!(
                get(cache.id, &e.key).is_some(),
                "nothing evicted by a store"
            );
        }
        // A refreshed key that has a slot: the new entry is served from the front at once.
        let r = request(&names[0]);
        let refreshed = cache.insert(CacheKey::for_request(&r), answer(&r, 600));
        let found = get(cache.id, &refreshed.key).expect("still in the front");
        assert!(
            Arc::ptr_eq(&found, &refreshed),
            "the refreshed entry, not the old one"
        );
    }

    #[test]
    fn the_same_key_of_two_caches_is_found_for_each_cache_only() {
        let (one, two) = (
            Cache::new(CacheSettings::default(), Clock::manual()),
            Cache::new(CacheSettings::default(), Clock::manual()),
        );
        let e1 = stored_and_looked_up(&one, "shared.test");
        assert!(get(two.id, &e1.key).is_none());
        let e2 = stored_and_looked_up(&two, "shared.test");
        assert!(Arc::ptr_eq(&get(one.id, &e1.key).expect("one's"), &e1));
        assert!(Arc::ptr_eq(&get(two.id, &e2.key).expect("two's"), &e2));
    }

    #[test]
    fn prefetching_a_batch_changes_no_lookup_and_keeps_no_reference() {
        let cache = Cache::new(CacheSettings::default(), Clock::manual());
        let held = stored_and_looked_up(&cache, "held.test");
        let gone = stored_and_looked_up(&cache, "gone.test");
        let gone_key = gone.key.clone();
        cache.inner.invalidate(&gone_key);
        cache.inner.run_pending_tasks();
        drop(gone);
        let absent = CacheKey::for_request(&request("absent.test"));
        let keys = [
            Some(held.key.clone()),
            Some(gone_key.clone()),
            None,
            Some(absent.clone()),
        ];
        let pending = cache.prefetch(keys.into_iter());
        assert_eq!(
            pending.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, true, false, true]
        );
        let before = Arc::strong_count(&held);
        pending
            .iter()
            .flatten()
            .for_each(|&at| cache.prefetch_answer(at));
        assert_eq!(Arc::strong_count(&held), before, "a hint holds no entry");
        assert!(Arc::ptr_eq(&get(cache.id, &held.key).expect("held"), &held));
        assert!(
            get(cache.id, &gone_key).is_none(),
            "a freed entry stays gone"
        );
        assert!(get(cache.id, &absent).is_none());
    }
}
