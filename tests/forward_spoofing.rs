//! The forwarder against off-path forged answers (issue 17, RFC 5452 and
//! 0x20), driven over real UDP with an in-process authoritative upstream that
//! records where each query came from and how its name was spelt.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use ::picket::upstream::PoolLimits;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Many letters per name, so a name sent in random case is all lower case
/// by chance with probability 2^-26 at most.
const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";

/// `w<i>.<LETTERS>.example.test A 192.0.2.<i>` for i in 0..count.
fn zone(count: u8) -> String {
    let mut zone = String::from(
        "example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60\n\
         www.example.test. 300 IN A 192.0.2.1\n\
         www.example.test. 300 IN A 192.0.2.2\n",
    );
    for i in 0..count {
        zone.push_str(&format!("{} 300 IN A 192.0.2.{i}\n", long_name(i)));
    }
    zone
}

fn long_name(i: u8) -> String {
    format!("w{i}.{LETTERS}.example.test")
}

/// The question names the upstream received over UDP, as spelt on the wire.
fn names_sent(upstream: &Authority) -> Vec<String> {
    upstream
        .received()
        .iter()
        .filter_map(|m| m.queries.first().map(|q| q.name().to_ascii()))
        .collect()
}

fn has_upper(name: &str) -> bool {
    name.bytes().any(|b| b.is_ascii_uppercase())
}

fn has_lower(name: &str) -> bool {
    name.bytes().any(|b| b.is_ascii_lowercase())
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_queries_leave_from_ports_drawn_at_random_from_a_large_pool() {
    let upstream = Authority::start(&zone(0));
    let mut settings = test_settings(&[upstream.addr()]);
    settings.threads = 1;
    let slots = PoolLimits::per_worker(&settings.limits, settings.threads).slots;
    assert_eq!(slots, 4096, "the default pool, all in one worker");
    let picket = start_picket_with(settings);
    // 200 misses (NXDOMAIN names, each asked once), 20 at a time.
    for batch in 0..10 {
        let queries = (0..20).map(|i| {
            let name = format!("miss{}.example.test", batch * 20 + i);
            let addr = picket.addr;
            tokio::spawn(async move { query_udp(addr, &name, RecordType::A).await })
        });
        for answer in await_all(queries).await {
            assert_eq!(rcode(&answer), ResponseCode::NXDomain);
        }
    }
    // At least one query per miss (more if an attempt timed out on a busy box).
    let sources = upstream.udp_sources();
    assert!(sources.len() >= 200, "{} upstream queries", sources.len());
    let ports: HashSet<u16> = sources.iter().map(|s| s.port()).collect();
    // Each query draws one of 4096 slots uniformly (a busy slot is drawn
    // again, or gets a socket of its own: both only add ports), and each
    // slot has its own kernel-random port. n = 200 draws land on a slot
    // drawn before n^2/2N ~ 4.9 times on average; more than 20 such repeats
    // happen with probability 6e-9 (exact occupancy distribution; 2e-7 for
    // 220 draws, if timeouts added attempts), so this fails by chance
    // about never. A pool of 512 slots repeats 34 times on average and
    // fails this with probability 0.999; 8 fixed ports always.
    assert!(
        ports.len() + 20 >= sources.len(),
        "{} upstream queries came from only {} distinct source ports",
        sources.len(),
        ports.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn query_names_go_upstream_in_random_case_and_clients_get_their_own() {
    let upstream = Authority::start(&zone(20));
    let picket = start_picket(&[upstream.addr()]);
    for i in 0..20 {
        let answer = query_udp(picket.addr, &long_name(i), RecordType::A).await;
        assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, i)]);
        // Our random case stays between us and the upstream.
        let owner = answer.answers[0].name.to_ascii();
        assert_eq!(owner, format!("{}.", long_name(i)), "answer owner name");
    }
    let sent = names_sent(&upstream);
    assert!(sent.len() >= 20, "one upstream query per name: {sent:?}");
    for name in &sent {
        assert!(
            has_upper(name) && has_lower(name),
            "0x20: {name} went upstream without mixed case"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_in_another_case_is_rejected_while_the_real_one_is_taken() {
    let upstream = Authority::start(&zone(2));
    // Before each real answer: one with our ID and question, in swapped case.
    upstream.set_forge_case(true);
    let picket = start_picket(&[upstream.addr()]);
    let answer = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_not_forged(&answer, 2, "an answer in the wrong case");
    // The forgery did not talk us out of 0x20 for this server.
    let next = query_udp(picket.addr, &long_name(1), RecordType::A).await;
    assert_eq!(a_records(&next), [Ipv4Addr::new(192, 0, 2, 1)]);
    let last = names_sent(&upstream).pop().expect("a query went upstream");
    assert!(has_upper(&last) && has_lower(&last), "still 0x20: {last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_does_not_preserve_case_is_still_answered_and_learnt() {
    let upstream = Authority::start(&zone(5));
    upstream.set_lowercase_answers(true);
    let picket = start_picket(&[upstream.addr()]);
    for i in 0..5 {
        let answer = query_udp(picket.addr, &long_name(i), RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::NoError, "query {i}");
        assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, i)]);
    }
    let sent = names_sent(&upstream);
    assert!(has_upper(&sent[0]), "0x20 was tried first: {}", sent[0]);
    // One attempt in random case times out (its answer was in the wrong
    // case), then the server is asked in lower case for good.
    let learnt = sent
        .iter()
        .position(|name| !has_upper(name))
        .expect("asked in lower case after the first attempt");
    assert_eq!(learnt, 1, "queries sent upstream: {sent:?}");
    for name in &sent[learnt..] {
        assert!(!has_upper(name), "asked in lower case once learnt: {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn misses_over_the_upstream_socket_bound_fail_fast_instead_of_sharing() {
    let upstream = Authority::start(&zone(3));
    upstream.set_delay_for(&long_name(0), Duration::from_millis(800));
    let mut settings = test_settings(&[upstream.addr()]);
    settings.limits.max_upstream_sockets = 1;
    settings.forwarder.attempt_timeout = Duration::from_secs(2);
    settings.forwarder.total_timeout = Duration::from_secs(2);
    let picket = start_picket_with(settings);
    let addr = picket.addr;
    let slow = tokio::spawn(async move { query_udp(addr, &long_name(0), RecordType::A).await });
    // Wait until the slow query holds the only socket.
    for _ in 0..100 {
        if upstream.udp_queries() == 1 {
            break;
        }
        real_sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.udp_queries(), 1, "the slow query went upstream");
    let refused = query_udp(picket.addr, &long_name(1), RecordType::A).await;
    assert_eq!(rcode(&refused), ResponseCode::ServFail);
    assert_eq!(
        ede(&refused).map(|(code, _)| code),
        Some(14),
        "EDE 14 Not Ready"
    );
    assert_eq!(upstream.udp_queries(), 1, "nothing more was sent upstream");
    let slow = slow.await.expect("slow query task");
    assert_eq!(a_records(&slow), [Ipv4Addr::new(192, 0, 2, 0)]);
    // The socket is back in its pool, no longer in use: the bound has room again.
    let later = query_udp(picket.addr, &long_name(2), RecordType::A).await;
    assert_eq!(a_records(&later), [Ipv4Addr::new(192, 0, 2, 2)]);
}

/// Awaits every task, in order.
async fn await_all<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await.expect("query task"));
    }
    results
}
