//! Cache-hit micro-benchmark (plain std::time, no harness): `cargo bench --bench cache_hit`.
//!
//! `Cache::get` on entries that the calling thread's front holds: the lookup of every cached
//! answer a worker serves again. Thread CPU time per lookup, median of rounds, so that other
//! load on a shared machine counts less. To compare two builds, run their binaries in turn,
//! several times interleaved, and compare medians.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use common::{cpu_now, median};
use picket::cache::{Cache, CacheKey, CacheSettings, Lookup};
use picket::clock::Clock;
use picket::protocol::{parse_query, wire, Answer, Request, ResponseWriter, Section};

const HOT: usize = 1_000;
const LOOKUPS: usize = 2_000_000;
const ROUNDS: usize = 9;

fn request(name: &str) -> Request {
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    wire::push_name(&mut q, name).expect("a valid name");
    q.extend_from_slice(&[0, 1, 0, 1]);
    parse_query(&q).expect("a valid query")
}

fn answer(req: &Request) -> Arc<Answer> {
    let mut w = ResponseWriter::new(req, 0);
    w.address(
        Section::Answer,
        "192.0.2.7".parse().expect("an address"),
        300,
    );
    let bytes = w.finish(None, usize::MAX);
    Arc::new(Answer::from_upstream(&bytes, &req.name_wire, 1, 1).expect("a valid answer"))
}

/// Nanoseconds of thread CPU per `get` over `keys`, median of rounds.
fn ns_per_get(cache: &Cache, keys: &[CacheKey]) -> f64 {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let began = cpu_now();
        for i in 0..LOOKUPS {
            let hit = matches!(
                cache.get(black_box(&keys[i % keys.len()])),
                Lookup::Fresh(..)
            );
            black_box(hit);
        }
        rounds.push((cpu_now() - began).as_nanos() as f64 / LOOKUPS as f64);
    }
    median(&mut rounds)
}

fn main() {
    let cache = Cache::new(CacheSettings::default(), Clock::manual());
    let keys: Vec<CacheKey> = (0..HOT)
        .map(|i| {
            let req = request(&format!("www{i}.example.com"));
            let key = CacheKey::for_request(&req);
            cache.insert(key.clone(), answer(&req));
            key
        })
        .collect();
    cache.run_pending_tasks();
    let front = ns_per_get(&cache, &keys);
    println!("front hit: {front:.1} ns per get ({HOT} hot names)");
}
