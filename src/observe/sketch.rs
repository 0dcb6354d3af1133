//! Space-Saving (Metwally, Agrawal, El Abbadi, 2005): the heaviest keys of a
//! stream in a fixed number of counters, for the dashboard's top-N lists.
//!
//! An unbounded map of names or clients would grow with every random
//! subdomain an attacker sends; this keeps `capacity` counters whatever the
//! stream. Guarantees, for a stream of total weight `N`:
//!
//! - every kept count is an upper bound on the key's true weight, and
//!   `count - error` a lower bound;
//! - a key that is not kept weighs at most the smallest kept count, which is
//!   at most `N / capacity`, so every key heavier than that is kept;
//! - the counts add up to `N` exactly.
//!
//! Counters sit in a binary min-heap (the smallest is the one a new key
//! replaces) with a map from key to heap position: an update is a hash
//! lookup and O(log capacity) swaps, never a scan.
//!
//! Summaries are mergeable ([`merge`]): the dashboard keeps one sketch per
//! window of time and merges the windows of the last hour when asked.

use std::borrow::Borrow;
use std::hash::Hash;

use hashbrown::HashMap;

/// One counter: a key, an upper bound on its weight, and by how much it may
/// overcount (the weight of the key it replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted<K> {
    pub key: K,
    pub count: u64,
    pub error: u64,
}

/// A Space-Saving summary of at most `capacity` keys.
#[derive(Debug, Clone)]
pub struct SpaceSaving<K> {
    capacity: usize,
    /// Min-heap by `count`.
    heap: Vec<Counted<K>>,
    /// Key → position in `heap`.
    index: HashMap<K, usize>,
    total: u64,
}

impl<K: Hash + Eq + Clone> SpaceSaving<K> {
    /// A summary keeping at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            heap: Vec::new(),
            index: HashMap::new(),
            total: 0,
        }
    }

    /// Counts `weight` more for `key`.
    pub fn add<Q>(&mut self, key: &Q, weight: u64)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if weight == 0 {
            return;
        }
        self.total += weight;
        if let Some(&at) = self.index.get(key) {
            self.heap[at].count += weight;
            self.sift_down(at);
            return;
        }
        if self.heap.len() < self.capacity {
            let at = self.heap.len();
            self.heap.push(Counted {
                key: key.to_owned(),
                count: weight,
                error: 0,
            });
            self.index.insert(self.heap[at].key.clone(), at);
            self.sift_up(at);
            return;
        }
        // Full: the new key takes over the smallest counter, and may
        // overcount by what that counter held.
        let min = self.heap[0].count;
        let old = std::mem::replace(
            &mut self.heap[0],
            Counted {
                key: key.to_owned(),
                count: min + weight,
                error: min,
            },
        );
        self.index.remove(&old.key);
        self.index.insert(self.heap[0].key.clone(), 0);
        self.sift_down(0);
    }

    /// Total weight counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Keys kept.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most a key that is not kept can weigh: the smallest count once
    /// every counter is in use, 0 before (every key seen is then kept).
    pub fn floor(&self) -> u64 {
        if self.heap.len() < self.capacity {
            0
        } else {
            self.heap.first().map_or(0, |c| c.count)
        }
    }

    /// The counter of `key`, if kept.
    pub fn get<Q>(&self, key: &Q) -> Option<&Counted<K>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.get(key).map(|&at| &self.heap[at])
    }

    /// Every counter, heaviest first.
    pub fn sorted(&self) -> Vec<Counted<K>> {
        let mut all = self.heap.clone();
        all.sort_by(|a, b| b.count.cmp(&a.count).then(a.error.cmp(&b.error)));
        all
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.heap[parent].count <= self.heap[at].count {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut smallest = at;
            if left < self.heap.len() && self.heap[left].count < self.heap[smallest].count {
                smallest = left;
            }
            if right < self.heap.len() && self.heap[right].count < self.heap[smallest].count {
                smallest = right;
            }
            if smallest == at {
                return;
            }
            self.swap(at, smallest);
            at = smallest;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        if let Some(slot) = self.index.get_mut(&self.heap[a].key) {
            *slot = a;
        }
        if let Some(slot) = self.index.get_mut(&self.heap[b].key) {
            *slot = b;
        }
    }
}

/// Several summaries merged: the heaviest keys of the streams together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged<K> {
    /// Heaviest first; `count` is an upper bound, `count - error` a lower one.
    pub entries: Vec<Counted<K>>,
    /// Total weight of the streams.
    pub total: u64,
    /// The most a key that is not listed can weigh.
    pub floor: u64,
}

/// Merges summaries of disjoint streams (e.g. consecutive windows of time)
/// into at most `keep` keys.
///
/// For each key the upper bounds add up (a summary that does not hold the
/// key contributes its [`floor`](SpaceSaving::floor), the most the key can
/// have weighed there) and so do the lower bounds (0 where absent). So the
/// bounds stay bounds. A key left out weighs at most the larger of the
/// floors' sum and the heaviest upper bound that was cut, which is the
/// merged `floor`.
pub fn merge<'a, K: Hash + Eq + Clone + 'a>(
    parts: impl IntoIterator<Item = &'a SpaceSaving<K>>,
    keep: usize,
) -> Merged<K> {
    let parts: Vec<&SpaceSaving<K>> = parts.into_iter().collect();
    let floors: u64 = parts.iter().map(|p| p.floor()).sum();
    let total = parts.iter().map(|p| p.total()).sum();
    // Key → (upper, lower).
    let mut bounds: HashMap<K, (u64, u64)> = HashMap::new();
    for part in &parts {
        for c in &part.heap {
            bounds.entry(c.key.clone()).or_insert((0, 0));
        }
    }
    for (key, (upper, lower)) in bounds.iter_mut() {
        for part in &parts {
            match part.get(key) {
                Some(c) => {
                    *upper += c.count;
                    *lower += c.count - c.error;
                }
                None => *upper += part.floor(),
            }
        }
    }
    let mut entries: Vec<Counted<K>> = bounds
        .into_iter()
        .map(|(key, (upper, lower))| Counted {
            key,
            count: upper,
            error: upper - lower,
        })
        .collect();
    entries.sort_by(|a, b| b.count.cmp(&a.count).then(a.error.cmp(&b.error)));
    let cut = entries.get(keep).map_or(0, |c| c.count);
    entries.truncate(keep);
    Merged {
        entries,
        total,
        floor: floors.max(cut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as StdMap;

    /// A skewed stream over `distinct` keys (Zipf-like: key i about 1/i as
    /// often), deterministic.
    fn stream(len: usize, distinct: u64, seed: u64) -> Vec<String> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                // xorshift64*
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
                let u = (r as f64) / ((1u64 << 53) as f64);
                let i = ((distinct as f64).powf(u)) as u64;
                format!("k{}", i.min(distinct))
            })
            .collect()
    }

    fn truth(items: &[String]) -> StdMap<String, u64> {
        let mut m = StdMap::new();
        for i in items {
            *m.entry(i.clone()).or_default() += 1;
        }
        m
    }

    fn sketch(items: &[String], k: usize) -> SpaceSaving<String> {
        let mut s = SpaceSaving::new(k);
        for i in items {
            s.add(i.as_str(), 1);
        }
        s
    }

    #[test]
    fn counts_are_upper_bounds_and_count_minus_error_lower_bounds() {
        let items = stream(50_000, 5_000, 7);
        let s = sketch(&items, 64);
        let t = truth(&items);
        for c in s.sorted() {
            let f = t[&c.key];
            assert!(c.count >= f, "{} counted {} < true {f}", c.key, c.count);
            assert!(c.count - c.error <= f, "{} lower bound above {f}", c.key);
        }
    }

    #[test]
    fn every_key_heavier_than_n_over_k_is_kept() {
        let items = stream(50_000, 5_000, 11);
        let k = 50;
        let s = sketch(&items, k);
        let n = items.len() as u64;
        assert!(s.floor() <= n / k as u64, "floor {} > N/k", s.floor());
        let t = truth(&items);
        let mut heavy = 0;
        for (key, &f) in &t {
            if f > n / k as u64 {
                heavy += 1;
                assert!(s.get(key.as_str()).is_some(), "{key} ({f}) dropped");
            }
            if s.get(key.as_str()).is_none() {
                assert!(f <= s.floor(), "{key} ({f}) absent above the floor");
            }
        }
        assert!(heavy > 0, "the stream has heavy hitters to find");
    }

    #[test]
    fn counts_add_up_to_the_stream_and_capacity_is_a_bound() {
        let items = stream(20_000, 3_000, 3);
        let s = sketch(&items, 32);
        assert_eq!(s.len(), 32);
        assert_eq!(s.total(), 20_000);
        assert_eq!(s.sorted().iter().map(|c| c.count).sum::<u64>(), 20_000);
        assert_eq!(s.index.len(), s.heap.len());
    }

    #[test]
    fn exact_while_there_are_no_more_keys_than_counters() {
        let items = stream(10_000, 40, 5);
        let s = sketch(&items, 64);
        let t = truth(&items);
        assert_eq!(s.len(), t.len());
        assert_eq!(s.floor(), 0);
        for c in s.sorted() {
            assert_eq!((c.count, c.error), (t[&c.key], 0), "{}", c.key);
        }
        let sorted = s.sorted();
        assert!(sorted.windows(2).all(|w| w[0].count >= w[1].count));
    }

    #[test]
    fn weights_count_like_repeated_updates() {
        let mut a = SpaceSaving::new(4);
        let mut b = SpaceSaving::new(4);
        for (key, w) in [
            ("x", 5u64),
            ("y", 2),
            ("x", 3),
            ("z", 1),
            ("w", 4),
            ("v", 6),
        ] {
            a.add(key, w);
            for _ in 0..w {
                b.add(key, 1);
            }
        }
        assert_eq!(a.total(), b.total());
        assert_eq!(a.get("x").map(|c| c.count), Some(8));
        assert_eq!(b.get("x").map(|c| c.count), Some(8));
        a.add("ignored", 0);
        assert!(a.get("ignored").is_none());
    }

    #[test]
    fn merged_summaries_keep_the_bounds_and_the_heavy_hitters() {
        let k = 40;
        let windows: Vec<Vec<String>> = (0..6).map(|w| stream(8_000, 2_000, 100 + w)).collect();
        let sketches: Vec<SpaceSaving<String>> = windows.iter().map(|w| sketch(w, k)).collect();
        let all: Vec<String> = windows.concat();
        let t = truth(&all);
        let m = merge(&sketches, k);
        assert_eq!(m.total, all.len() as u64);
        assert!(m.entries.len() <= k);
        for c in &m.entries {
            let f = t[&c.key];
            assert!(c.count >= f && c.count - c.error <= f, "{c:?} vs {f}");
        }
        for (key, &f) in &t {
            if !m.entries.iter().any(|c| &c.key == key) {
                assert!(
                    f <= m.floor,
                    "{key} ({f}) left out above the floor {}",
                    m.floor
                );
            }
        }
        // The heaviest key of the whole stream leads the merged list.
        let heaviest = t.iter().max_by_key(|(_, &f)| f).unwrap().0;
        assert_eq!(&m.entries[0].key, heaviest);
        // One part merged is the part itself.
        let one = merge([&sketches[0]], k);
        assert_eq!(one.entries.len(), sketches[0].len());
        for c in &one.entries {
            assert_eq!(sketches[0].get(c.key.as_str()), Some(c));
        }
        assert_eq!(one.floor, sketches[0].floor());
    }
}
