//! Which keys the shared cache may hold: a bit per key hash, set when an entry is
//! stored, so a look-up of a name that was never stored (every new name a forwarded
//! miss asks for) is answered without a probe of moka's table.
//!
//! A probe of moka's table for a key it does not hold costs a cache miss on a random
//! slot of a table the size of the cache, and more for each occupied slot it walks; the
//! bits are a few hundred KiB for the default budget and stay in the core's cache.
//!
//! The bits never give a false "not stored": a stored key's bit is set before its
//! insert returns, and bits are never cleared in the set that look-ups read. They do
//! give false "maybe", for hash collisions and for keys that were evicted since; when
//! half of the bits are set, a background thread rebuilds a fresh set from moka's
//! keys (`rebuild`), while inserts write both sets, and look-ups move to it.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bits per entry the budget can hold at the least weight an entry has (its fixed
/// overhead): after a rebuild at most a quarter of the bits are set (usually a tenth).
const BITS_PER_MAX_ENTRY: u64 = 4;

/// Fewest bits, for tests' tiny budgets.
const MIN_BITS: u64 = 1 << 12;

/// Most bits per set (16 MiB), for budgets of 20 GiB and more: their bits fill sooner, and
/// the rule in [`Bits::wants_rebuild`] keeps their rebuilds apart.
const MAX_BITS: u64 = 1 << 27;

/// One set of bits, indexed by the key's hash.
struct Bits {
    words: Box<[AtomicU64]>,
    /// Bits set (counted when a bit goes from 0 to 1).
    ones: AtomicUsize,
    /// Bits set when a rebuild made this set the one look-ups read.
    settled: AtomicUsize,
}

impl Bits {
    fn new(bits: usize) -> Self {
        Self {
            words: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            ones: AtomicUsize::new(0),
            settled: AtomicUsize::new(0),
        }
    }

    fn len(&self) -> usize {
        self.words.len() * 64
    }

    fn place(&self, hash: u64) -> (&AtomicU64, u64) {
        // The low bits pick moka's slot and the front's bucket; the high ones pick here.
        let index = (hash >> 32) as usize ^ (hash as usize >> 6);
        let word = &self.words[index & (self.words.len() - 1)];
        (word, 1 << (hash & 63))
    }

    fn contains(&self, hash: u64) -> bool {
        let (word, bit) = self.place(hash);
        word.load(Ordering::Acquire) & bit != 0
    }

    /// Sets `hash`'s bit; true when it was clear.
    fn set(&self, hash: u64) -> bool {
        let (word, bit) = self.place(hash);
        if word.load(Ordering::Relaxed) & bit != 0 {
            return false;
        }
        let newly = word.fetch_or(bit, Ordering::AcqRel) & bit == 0;
        if newly {
            self.ones.fetch_add(1, Ordering::Relaxed);
        }
        newly
    }

    fn clear(&self) {
        self.words
            .iter()
            .for_each(|w| w.store(0, Ordering::Relaxed));
        self.ones.store(0, Ordering::Relaxed);
        self.settled.store(0, Ordering::Relaxed);
    }

    /// Half the bits are set, a quarter of them since the last rebuild: a cache holding
    /// more keys than its bits were sized for is rebuilt a few times, then no more (its
    /// bits stay full, and every look-up probes moka, as it did without them).
    fn wants_rebuild(&self) -> bool {
        let ones = self.ones.load(Ordering::Relaxed);
        ones * 2 >= self.len() && ones >= self.settled.load(Ordering::Relaxed) + self.len() / 4
    }
}

/// What [`StoredKeys::note`] found.
pub(super) struct Noted {
    /// The key's bit was clear: no entry under it was stored since the set look-ups
    /// read was rebuilt, so no thread's front serves one.
    pub(super) first: bool,
    /// The set look-ups read is half full and nobody rebuilds it yet: the caller starts
    /// [`StoredKeys::rebuild`].
    pub(super) rebuild: bool,
}

/// The bits of the keys a cache may hold.
pub(super) struct StoredKeys {
    sets: [Bits; 2],
    /// Which of `sets` look-ups read.
    current: AtomicUsize,
    /// Set while a rebuild fills the other set: inserts then write both.
    building: AtomicBool,
    /// A rebuild is claimed (one at a time).
    rebuilding: AtomicBool,
    /// Rebuilds finished.
    rebuilds: AtomicU64,
}

impl StoredKeys {
    /// Bits for a cache of `max_bytes`, whose entries weigh at least `least_weight`.
    pub(super) fn for_budget(max_bytes: u64, least_weight: u64) -> Arc<Self> {
        let bits = (max_bytes / least_weight)
            .saturating_mul(BITS_PER_MAX_ENTRY)
            .clamp(MIN_BITS, MAX_BITS)
            .next_power_of_two() as usize;
        Arc::new(Self {
            sets: [Bits::new(bits), Bits::new(bits)],
            current: AtomicUsize::new(0),
            building: AtomicBool::new(false),
            rebuilding: AtomicBool::new(false),
            rebuilds: AtomicU64::new(0),
        })
    }

    /// False only when no key with this hash was stored since the last rebuild began.
    pub(super) fn may_hold(&self, hash: u64) -> bool {
        self.sets[self.current.load(Ordering::Acquire)].contains(hash)
    }

    /// Records a key just stored in moka.
    pub(super) fn note(&self, hash: u64) -> Noted {
        // Read `building` before `current`: an insert that finds no rebuild under way
        // either came before it (the rebuild's walk of moka then finds the key) or after
        // it (`current` is then the new set). The fences pair with the rebuild's: either
        // this insert's store into moka is seen by the walk, or `building` is seen here.
        fence(Ordering::SeqCst);
        let building = self.building.load(Ordering::SeqCst);
        let current = self.current.load(Ordering::SeqCst);
        let newly = self.sets[current].set(hash);
        if building {
            self.sets[1 - current].set(hash);
        }
        Noted {
            first: newly,
            rebuild: newly
                && self.sets[current].wants_rebuild()
                && !self.rebuilding.swap(true, Ordering::AcqRel),
        }
    }

    /// Fills the other set from `hashes` (every key moka holds), then moves look-ups to
    /// it. Call once [`Self::note`] says so; inserts meanwhile write both sets.
    pub(super) fn rebuild(&self, hashes: impl Iterator<Item = u64>) {
        let current = self.current.load(Ordering::SeqCst);
        let fresh = &self.sets[1 - current];
        fresh.clear();
        self.building.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        for hash in hashes {
            fresh.set(hash);
        }
        let settled = fresh.ones.load(Ordering::Relaxed);
        fresh.settled.store(settled, Ordering::Relaxed);
        self.current.store(1 - current, Ordering::SeqCst);
        self.building.store(false, Ordering::SeqCst);
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        self.rebuilding.store(false, Ordering::Release);
    }

    /// Rebuilds finished, and whether one runs now.
    pub(super) fn rebuilds(&self) -> (u64, bool) {
        (
            self.rebuilds.load(Ordering::Relaxed),
            self.rebuilding.load(Ordering::Acquire),
        )
    }

    /// Bits set in the set look-ups read, and its size (for tests and the logs).
    pub(super) fn fill(&self) -> (usize, usize) {
        let set = &self.sets[self.current.load(Ordering::Acquire)];
        (set.ones.load(Ordering::Relaxed), set.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` well-mixed hashes, the same for the same `seed` (splitmix64).
    fn hashes(seed: u64, count: u64) -> impl Iterator<Item = u64> {
        (0..count).map(move |i| {
            let mut z = (seed << 32 | i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    #[test]
    fn a_noted_key_is_always_held_and_most_others_are_not() {
        let stored = StoredKeys::for_budget(1 << 20, 600);
        let noted: Vec<u64> = hashes(1, 200).collect();
        let firsts = noted.iter().filter(|&&h| stored.note(h).first).count();
        assert!(
            firsts > 190,
            "only {firsts} of 200 new keys were noted as first"
        );
        assert!(noted.iter().all(|&h| stored.may_hold(h)));
        assert!(
            noted.iter().all(|&h| !stored.note(h).first),
            "a key noted again is not first"
        );
        let strangers = hashes(2, 1000).filter(|&h| stored.may_hold(h)).count();
        // 200 of 8,192 bits set: about 2.4 % of strangers collide.
        assert!(
            strangers < 100,
            "{strangers} of 1,000 never-noted keys looked held"
        );
    }

    #[test]
    fn a_rebuild_keeps_held_keys_and_keys_noted_while_it_runs_and_drops_the_rest() {
        let stored = StoredKeys::for_budget(1 << 20, 600);
        let evicted: Vec<u64> = hashes(1, 6000).collect();
        let kept: Vec<u64> = hashes(2, 100).collect();
        let during: Vec<u64> = hashes(3, 100).collect();
        let mut asked = false;
        for &h in evicted.iter().chain(&kept) {
            asked |= stored.note(h).rebuild;
        }
        assert!(
            asked,
            "6,100 keys set over half of 8,192 bits and should ask for a rebuild"
        );
        assert!(
            !stored.note(hashes(4, 1).next().unwrap()).rebuild,
            "one rebuild at a time"
        );
        // The rebuild walks moka's keys (here: `kept`); inserts land in the middle of it.
        let mut walked = 0;
        let walk = kept.iter().copied().inspect(|_| {
            walked += 1;
            if walked == kept.len() / 2 {
                during.iter().for_each(|&h| {
                    stored.note(h);
                });
            }
        });
        stored.rebuild(walk);
        assert!(kept.iter().chain(&during).all(|&h| stored.may_hold(h)));
        let ghosts = evicted.iter().filter(|&&h| stored.may_hold(h)).count();
        assert!(
            ghosts < 300,
            "{ghosts} of 3,000 evicted keys still looked held"
        );
        let (ones, len) = stored.fill();
        assert!(
            ones * 16 < len,
            "{ones} of {len} bits set after the rebuild"
        );
        assert!(
            !stored.rebuilding.load(Ordering::Acquire),
            "the next rebuild can be claimed"
        );
    }

    #[test]
    fn a_cache_holding_more_keys_than_its_bits_is_not_rebuilt_again_at_once() {
        let stored = StoredKeys::for_budget(1 << 20, 600);
        // 10,000 keys held leave about 70 % of 8,192 bits set after a rebuild.
        stored.rebuild(hashes(1, 10_000));
        let (ones, len) = stored.fill();
        assert!(ones * 2 > len, "{ones} of {len}");
        let asked = hashes(2, 200).filter(|&h| stored.note(h).rebuild).count();
        assert_eq!(
            asked, 0,
            "a rebuild was asked {asked} times right after one"
        );
        let asked = hashes(3, 20_000)
            .filter(|&h| stored.note(h).rebuild)
            .count();
        assert_eq!(asked, 1, "a quarter of the bits set since should ask once");
    }
}
