//! Scenarios for Picket's iterator (issue 16), in the spirit of Deckard:
//! scripted authorities on loopback, each on its own 127.0.0.x address and
//! a free port (`RecursorSettings::nameserver_ports`), and a recursive
//! Picket asked like a client would. What each authority received is the
//! evidence: query names (QNAME minimisation), source ports and IDs
//! (RFC 5452), transports (TCP after TC), counts (caching, server choice).
//!
//!   .                  127.0.0.40
//!   test.              127.0.0.41
//!   example.test.      127.0.0.42 (fast) and 127.0.0.43 (the slow one, when a test says so)
//!   glueless.test.     127.0.0.44, named only as ns.host.example.test (no glue)
//!   lame.test.         127.0.0.44 and 127.0.0.45 (which does not serve it: REFUSED)
//!   v6only.test.       ::1, named only as ns.v6host.example.test (no glue,
//!                      and that name has an AAAA record and no A)

mod common;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ::picket::upstream::{DnssecMode, RecursorSettings};
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

const ROOT_ZONE: &str = "
.                 86400 IN SOA a.root.scn. h.root.scn. 1 1800 900 604800 86400
.                518400 IN NS  a.root.scn.
a.root.scn.      518400 IN A   127.0.0.40
test.            172800 IN NS  ns.test.
ns.test.         172800 IN A   127.0.0.41
";

const TLD_ZONE: &str = "
test.               86400 IN SOA ns.test. h.test. 1 1800 900 604800 60
test.               86400 IN NS  ns.test.
ns.test.            86400 IN A   127.0.0.41
example.test.       86400 IN NS  ns1.example.test.
example.test.       86400 IN NS  ns2.example.test.
ns1.example.test.   86400 IN A   127.0.0.42
ns2.example.test.   86400 IN A   127.0.0.43
glueless.test.      86400 IN NS  ns.host.example.test.
lame.test.          86400 IN NS  ns1.lame.test.
lame.test.          86400 IN NS  ns2.lame.test.
ns1.lame.test.      86400 IN A   127.0.0.44
ns2.lame.test.      86400 IN A   127.0.0.45
v6only.test.        86400 IN NS  ns.v6host.example.test.
";

const EXAMPLE_ZONE: &str = "
example.test.       3600 IN SOA ns1.example.test. h.example.test. 1 7200 900 1209600 60
example.test.       3600 IN NS  ns1.example.test.
example.test.       3600 IN NS  ns2.example.test.
ns1.example.test.   3600 IN A   127.0.0.42
ns2.example.test.   3600 IN A   127.0.0.43
ns.host.example.test. 3600 IN A 127.0.0.44
ns.v6host.example.test. 3600 IN AAAA ::1
www.example.test.    300 IN A   192.0.2.1
a.b.c.example.test.  300 IN A   192.0.2.3
big.example.test.    300 IN TXT \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"
big.example.test.    300 IN TXT \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"
wild.example.test.   300 IN TXT \"the wildcard's parent\"
*.wild.example.test. 300 IN A   192.0.2.50
to-glueless.example.test. 300 IN CNAME www.glueless.test.
out.example.test.         300 IN CNAME www.glueless.test.
";

/// What the example.test servers also claim about glueless.test, a zone
/// they are not delegated: an iterator that took records from outside the
/// zone it asked (its bailiwick) would answer 192.0.2.66.
const POISON: &str = "
glueless.test.      3600 IN SOA ns.evil.test. h.evil.test. 1 7200 900 1209600 30
www.glueless.test.   300 IN A   192.0.2.66
";

const GLUELESS_AND_LAME: &str = "
glueless.test.      3600 IN SOA ns.host.example.test. h.glueless.test. 1 7200 900 1209600 30
glueless.test.      3600 IN NS  ns.host.example.test.
www.glueless.test.   300 IN A   192.0.2.44
lame.test.          3600 IN SOA ns1.lame.test. h.lame.test. 1 7200 900 1209600 30
lame.test.          3600 IN NS  ns1.lame.test.
lame.test.          3600 IN NS  ns2.lame.test.
ns1.lame.test.      3600 IN A   127.0.0.44
ns2.lame.test.      3600 IN A   127.0.0.45
www.lame.test.       300 IN A   192.0.2.45
";

/// Served on ::1 only.
const V6ONLY: &str = "
v6only.test.        3600 IN SOA ns.v6host.example.test. h.v6only.test. 1 7200 900 1209600 30
v6only.test.        3600 IN NS  ns.v6host.example.test.
www.v6only.test.     300 IN A   192.0.2.6
";

/// 127.0.0.45 serves only an unrelated zone: asked about lame.test it says REFUSED.
const UNRELATED: &str = "
unrelated.test.     3600 IN SOA ns.unrelated.test. h.unrelated.test. 1 7200 900 1209600 30
";

struct World {
    root: Authority,
    tld: Authority,
    fast: Authority,
    slow: Authority,
    glueless: Authority,
    lame: Authority,
    v6: Authority,
    picket: Picket,
}

impl World {
    fn start(tweak: impl FnOnce(&mut ::picket::config::Settings)) -> World {
        let root = Authority::start_at([127, 0, 0, 40].into(), ROOT_ZONE);
        let tld = Authority::start_at([127, 0, 0, 41].into(), TLD_ZONE);
        let example = format!("{EXAMPLE_ZONE}\n{POISON}");
        let fast = Authority::start_at([127, 0, 0, 42].into(), &example);
        let slow = Authority::start_at([127, 0, 0, 43].into(), &example);
        let glueless = Authority::start_at([127, 0, 0, 44].into(), GLUELESS_AND_LAME);
        let lame = Authority::start_at([127, 0, 0, 45].into(), UNRELATED);
        let v6 = Authority::start_at(std::net::Ipv6Addr::LOCALHOST.into(), V6ONLY);
        let mut settings = test_settings(&[]);
        settings.recursion = Some(RecursorSettings {
            root_hints: vec![[127, 0, 0, 40].into()],
            dnssec: DnssecMode::Off,
            deny_servers: Vec::new(),
            nameserver_ports: [&root, &tld, &fast, &slow, &glueless, &lame, &v6]
                .iter()
                .map(|s| (s.addr().ip(), s.addr().port()))
                .collect(),
            ..RecursorSettings::default()
        });
        settings.limits.recursion_attempt_timeout = Duration::from_millis(800);
        settings.limits.recursion_timeout = Duration::from_secs(4);
        tweak(&mut settings);
        World {
            root,
            tld,
            fast,
            slow,
            glueless,
            lame,
            v6,
            picket: start_picket_with(settings),
        }
    }

    fn all(&self) -> [&Authority; 6] {
        [
            &self.root,
            &self.tld,
            &self.fast,
            &self.slow,
            &self.glueless,
            &self.lame,
        ]
    }

    fn total_queries(&self) -> usize {
        self.all().iter().map(|a| a.queries()).sum()
    }

    fn reset_counts(&self) {
        self.all().iter().for_each(|a| a.reset_counts());
    }

    async fn ask(&self, name: &str, rtype: RecordType) -> Message {
        query_udp(self.picket.addr, name, rtype).await
    }
}

/// The question names an authority received, lower case.
/// How many UDP queries each source port carried, checking on the way
/// that no port served two authorities (README "Forged answers": a port is
/// kept for one server only).
fn port_uses(world: &World) -> HashMap<u16, usize> {
    let mut uses: HashMap<u16, (usize, usize)> = HashMap::new();
    for (server, authority) in world.all().iter().enumerate() {
        for source in authority.udp_sources() {
            let (by, n) = uses.entry(source.port()).or_insert((server, 0));
            assert_eq!(*by, server, "port {} served two servers", source.port());
            *n += 1;
        }
    }
    uses.into_iter().map(|(port, (_, n))| (port, n)).collect()
}

/// A world that knows example.test's delegation and was then asked
/// `count` new names under it, one at a time (NXDOMAIN each), its counts
/// reset in between.
async fn new_names_under_a_known_zone(count: usize) -> World {
    let world = World::start(|_| {});
    world.ask("www.example.test", RecordType::A).await;
    world.reset_counts();
    for n in 0..count {
        let answer = world
            .ask(&format!("n{n}.example.test"), RecordType::A)
            .await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{answer:?}");
    }
    world
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authority_port_serves_at_most_8_answered_queries_of_its_server() {
    let world = new_names_under_a_known_zone(24).await;
    let uses = port_uses(&world);
    assert_eq!(uses.values().sum::<usize>(), 24, "one query each: {uses:?}");
    assert!(uses.values().all(|&n| n <= 8), "{uses:?}");
    // One question at a time, to two servers: ports are kept between them.
    assert!(uses.values().any(|&n| n > 1), "{uses:?}");
}

fn names_seen(authority: &Authority) -> Vec<String> {
    authority
        .received()
        .iter()
        .filter_map(|m| m.queries.first())
        .map(|q| q.name().to_lowercase().to_ascii())
        .collect()
}

/// [`names_seen`] by both servers of example.test, the zone the names are in.
fn names_seen_by_the_leaf(world: &World) -> Vec<String> {
    let mut names = names_seen(&world.fast);
    names.extend(names_seen(&world.slow));
    names
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn qname_minimisation_shows_each_server_one_label_more() {
    let world = World::start(|_| {});
    let answer = world.ask("a.b.c.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [v4("192.0.2.3")], "{answer:?}");
    // RFC 9156: the root learns only the TLD (after priming, RFC 8109),
    // the TLD only the zone below it.
    assert_eq!(names_seen(&world.root), [".", "test."]);
    assert_eq!(names_seen(&world.tld), ["example.test."]);
    // The example.test servers see the name grow label by label.
    // (Sorted: the two servers of the zone may share the steps.)
    let mut leaf = names_seen_by_the_leaf(&world);
    leaf.sort_by_key(|n| n.len());
    assert_eq!(
        leaf,
        [
            "c.example.test.",
            "b.c.example.test.",
            "a.b.c.example.test."
        ]
    );
}

/// `--no-qname-minimisation`: every server is asked the whole name.
#[tokio::test(flavor = "multi_thread")]
async fn without_qname_minimisation_every_server_sees_the_whole_name() {
    let world = World::start(|settings| {
        settings.recursion.as_mut().unwrap().qname_minimisation = false;
    });
    let answer = world.ask("a.b.c.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [v4("192.0.2.3")], "{answer:?}");
    assert_eq!(names_seen(&world.root), [".", "a.b.c.example.test."]);
    assert_eq!(names_seen(&world.tld), ["a.b.c.example.test."]);
    assert_eq!(names_seen_by_the_leaf(&world), ["a.b.c.example.test."]);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_upstream_query_has_its_own_id_a_port_serves_one_server_and_forgeries_are_ignored() {
    let world = World::start(|_| {});
    for a in world.all() {
        a.set_forge(true);
    }
    let answer = world.ask("a.b.c.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&answer),
        [v4("192.0.2.3")],
        "forged answers ignored: {answer:?}"
    );
    let aaaa = world.ask("www.example.test", RecordType::AAAA).await;
    assert_eq!(rcode(&aaaa), ResponseCode::NoError);
    assert!(aaaa.answers.is_empty(), "no forged AAAA: {aaaa:?}");
    let sources: Vec<_> = world.all().iter().flat_map(|a| a.udp_sources()).collect();
    assert!(sources.len() >= 5, "{sources:?}");
    let uses = port_uses(&world);
    assert!(uses.values().all(|&n| n <= 8), "{uses:?}");
    let ids: Vec<u16> = world
        .all()
        .iter()
        .flat_map(|a| a.received())
        .map(|m| m.metadata.id)
        .collect();
    let unique: HashSet<u16> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a fresh ID per query: {ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn case_randomization_survives_forgers_and_servers_that_lowercase() {
    let world = World::start(|s| s.recursion.as_mut().unwrap().case_randomization = true);
    // Forged answers in swapped case come first: they are not taken.
    world.fast.set_forge_case(true);
    world.slow.set_forge_case(true);
    let answer = world.ask("www.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [v4("192.0.2.1")], "{answer:?}");
    // A server that answers in lower case is still usable (asked without 0x20).
    world.glueless.set_lowercase_answers(true);
    let answer = world.ask("www.glueless.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [v4("192.0.2.44")], "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_answers_are_fetched_again_over_tcp() {
    let world = World::start(|_| {});
    world.fast.set_udp_limit(Some(100));
    world.slow.set_udp_limit(Some(100));
    let answer = query_tcp(world.picket.addr, "big.example.test", RecordType::TXT).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(answer.answers.len(), 2, "{answer:?}");
    assert!(world.fast.tcp_queries() + world.slow.tcp_queries() >= 1);
}

/// Unbound's iter_auth_tc: an answer that is still TC=1 over TCP is a part
/// of the answer at best; with no other server to ask, the client gets
/// SERVFAIL, not the records it happened to hold.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_truncated_over_tcp_too_is_not_used() {
    let world = World::start(|_| {});
    for server in [&world.fast, &world.slow] {
        server.set_always_truncated(true);
    }
    let answer = world.ask("www.example.test", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail, "{answer:?}");
    assert!(
        world.fast.tcp_queries() + world.slow.tcp_queries() > 0,
        "asked again over TCP after TC=1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn glueless_delegations_are_resolved() {
    let world = World::start(|_| {});
    let answer = world.ask("www.glueless.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [v4("192.0.2.44")], "{answer:?}");
    // The nameserver's own name was resolved at example.test's servers.
    let asked: Vec<String> = [&world.fast, &world.slow]
        .iter()
        .flat_map(|a| names_seen(a))
        .collect();
    assert!(
        asked.iter().any(|n| n == "ns.host.example.test."),
        "{asked:?}"
    );
    // A CNAME into the glueless zone: the delegation and its address are known now.
    world.reset_counts();
    let chain = world.ask("to-glueless.example.test", RecordType::A).await;
    assert_eq!(a_records(&chain), [v4("192.0.2.44")], "{chain:?}");
    assert_eq!(
        world.root.queries() + world.tld.queries(),
        0,
        "no referral needed again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glueless_nameserver_with_only_an_ipv6_address_is_reached_over_ipv6() {
    let world = World::start(|_| {});
    let answer = world.ask("www.v6only.test", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(a_records(&answer), [v4("192.0.2.6")], "{answer:?}");
    assert!(
        world.v6.queries() >= 1,
        "the zone's server on ::1 was asked"
    );
    // Both address types of the nameserver's name were asked, as Unbound does.
    let asked: Vec<RecordType> = [&world.fast, &world.slow]
        .iter()
        .flat_map(|a| a.received())
        .filter_map(|m| m.queries.first().cloned())
        .filter(|q| {
            q.name()
                .to_ascii()
                .eq_ignore_ascii_case("ns.v6host.example.test.")
        })
        .map(|q| q.query_type())
        .collect();
    assert!(asked.contains(&RecordType::AAAA), "{asked:?}");
    assert!(asked.contains(&RecordType::A), "{asked:?}");
    // The address is kept: a new name in the zone costs no lookup of it again.
    world.reset_counts();
    let nx = world.ask("nope.v6only.test", RecordType::A).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert_eq!(world.fast.queries() + world.slow.queries(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lame_server_is_skipped_and_not_asked_again() {
    let world = World::start(|_| {});
    for i in 0..12 {
        let answer = world.ask(&format!("n{i}.lame.test"), RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{answer:?}");
    }
    let answer = world.ask("www.lame.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [v4("192.0.2.45")], "{answer:?}");
    assert!(
        world.lame.queries() <= 1,
        "the lame server answered REFUSED once and was not asked again: {}",
        world.lame.queries()
    );
}

/// Unbound's iter_lame_aaaa: servers found lame for AAAA questions are
/// still asked for A (lameness is kept for A and for the other types apart).
#[tokio::test(flavor = "multi_thread")]
async fn servers_lame_for_aaaa_still_answer_a() {
    let world = World::start(|_| {});
    for server in [&world.fast, &world.slow] {
        server.set_refused_type(Some(RecordType::AAAA));
    }
    let aaaa = world.ask("www.example.test", RecordType::AAAA).await;
    assert_eq!(rcode(&aaaa), ResponseCode::ServFail, "{aaaa:?}");
    let asked = world.fast.queries() + world.slow.queries();
    let a = world.ask("www.example.test", RecordType::A).await;
    assert_eq!(a_records(&a), [v4("192.0.2.1")], "{a:?}");
    assert!(
        world.fast.queries() + world.slow.queries() > asked,
        "the A question went to the servers"
    );
    let again = world.ask("mail.example.test", RecordType::AAAA).await;
    assert_eq!(rcode(&again), ResponseCode::ServFail, "{again:?}");
}

/// Unbound's iter_primenoglue: a server that answers NOERROR with nothing
/// at all (no record, no SOA, no AA) has answered NODATA, leaving the proof
/// out: the client gets that NODATA, not SERVFAIL, and the server is not
/// taken for lame.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_noerror_without_aa_is_nodata() {
    let world = World::start(|_| {});
    for server in [&world.fast, &world.slow] {
        server.set_rcode(Some(ResponseCode::NoError));
    }
    let aaaa = world.ask("www.example.test", RecordType::AAAA).await;
    assert_eq!(rcode(&aaaa), ResponseCode::NoError, "{aaaa:?}");
    assert!(aaaa.answers.is_empty(), "{aaaa:?}");
    let asked = world.fast.queries() + world.slow.queries();
    let again = world.ask("mail.example.test", RecordType::AAAA).await;
    assert_eq!(rcode(&again), ResponseCode::NoError, "{again:?}");
    assert!(
        world.fast.queries() + world.slow.queries() > asked,
        "the servers are still asked"
    );
}

/// Unbound's iter_ranoaa_lame: a zone server that answers as a recursive
/// resolver does from its cache (RA=1, AA=0; here with a stale address) is
/// passed over for one that answers with authority, and used only when
/// none does.
#[tokio::test(flavor = "multi_thread")]
async fn answers_from_a_recursive_servers_cache_are_the_last_resort() {
    let world = World::start(|_| {});
    let stale = EXAMPLE_ZONE.replace("192.0.2.50", "192.0.2.222");
    world.slow.set_records(&stale);
    world.slow.set_answers_from_a_cache(true);
    // The cache-answering server is the faster one: it is asked first.
    world.fast.set_delay(Duration::from_millis(30));
    for i in 0..6 {
        let answer = world
            .ask(&format!("x{i}.wild.example.test"), RecordType::A)
            .await;
        assert_eq!(a_records(&answer), [v4("192.0.2.50")], "x{i}: {answer:?}");
    }
    assert!(
        world.slow.queries() > 0,
        "the cache-answering server was asked"
    );
    world.fast.set_silent(true);
    let last_resort = world.ask("y.wild.example.test", RecordType::A).await;
    assert_eq!(
        a_records(&last_resort),
        [v4("192.0.2.222")],
        "{last_resort:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcards_answer_for_any_name_below_them() {
    let world = World::start(|_| {});
    for name in ["x.wild.example.test", "y.wild.example.test"] {
        let answer = world.ask(name, RecordType::A).await;
        assert_eq!(a_records(&answer), [v4("192.0.2.50")], "{answer:?}");
        assert_eq!(answer.answers[0].name.to_ascii(), format!("{name}."));
    }
    // The wildcard's parent exists with other data: NODATA for A.
    let parent = world.ask("wild.example.test", RecordType::A).await;
    assert_eq!(rcode(&parent), ResponseCode::NoError);
    assert!(parent.answers.is_empty(), "{parent:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_and_nodata_are_told_apart_and_cached() {
    let world = World::start(|_| {});
    let nx = world.ask("nope.example.test", RecordType::A).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain);
    assert_eq!(soa_owner(&nx), "example.test.");
    let nodata = world.ask("www.example.test", RecordType::TXT).await;
    assert_eq!(rcode(&nodata), ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(soa_owner(&nodata), "example.test.");
    // RFC 2308: asked again, nothing is sent.
    world.reset_counts();
    world.ask("nope.example.test", RecordType::A).await;
    world.ask("www.example.test", RecordType::TXT).await;
    assert_eq!(world.total_queries(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_cached_with_backoff() {
    let world = World::start(|_| {});
    world.fast.set_servfail(true);
    world.slow.set_servfail(true);
    let failed = world.ask("www.example.test", RecordType::A).await;
    assert_eq!(rcode(&failed), ResponseCode::ServFail);
    assert!(world.fast.queries() + world.slow.queries() >= 1);
    // RFC 9520: the failure is remembered; the servers are not asked again.
    world.reset_counts();
    for _ in 0..5 {
        let again = world.ask("www.example.test", RecordType::A).await;
        assert_eq!(rcode(&again), ResponseCode::ServFail);
    }
    assert_eq!(world.total_queries(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_faster_server_of_a_zone_gets_most_queries() {
    let world = World::start(|_| {});
    world.slow.set_delay(Duration::from_millis(500));
    for i in 0..30 {
        let answer = world
            .ask(&format!("n{i}.example.test"), RecordType::A)
            .await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{answer:?}");
    }
    let (fast, slow) = (world.fast.queries(), world.slow.queries());
    eprintln!("fast {fast}, slow {slow}");
    // Random choice would split them about evenly. The slow server still gets
    // a few: its first (exploratory) query, and the retries after the fast
    // one's adaptive timeout (as low as 50 ms) expired on a loaded machine.
    assert!(fast >= 2 * slow, "fast {fast}, slow {slow}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ds_queries_go_to_the_parent_side_of_the_cut() {
    let world = World::start(|_| {});
    let ds = world.ask("example.test", RecordType::DS).await;
    assert_eq!(rcode(&ds), ResponseCode::NoError, "{ds:?}");
    // RFC 4035 §4.2: the parent (test.) answers for the child's DS.
    assert_eq!(soa_owner(&ds), "test.");
    let ds_at = |a: &Authority| {
        a.received()
            .iter()
            .filter(|m| {
                m.queries
                    .first()
                    .is_some_and(|q| q.query_type() == RecordType::DS)
            })
            .count()
    };
    assert_eq!(ds_at(&world.tld), 1);
    assert_eq!(ds_at(&world.fast) + ds_at(&world.slow), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_name_under_a_known_zone_costs_one_query() {
    let world = new_names_under_a_known_zone(5).await;
    // The delegation learned from the referral is enough: no NS query,
    // nothing at the root or TLD.
    assert_eq!(world.total_queries(), 5);
    let ns_queries = world
        .all()
        .iter()
        .flat_map(|a| a.received())
        .filter(|m| {
            m.queries
                .first()
                .is_some_and(|q| q.query_type() == RecordType::NS)
        })
        .count();
    assert_eq!(ns_queries, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_carry_no_records_from_outside_the_bailiwick() {
    // out.example.test is a CNAME to www.glueless.test: the example.test
    // servers send their own (poisoned) www.glueless.test along, which they
    // may not vouch for, so it is fetched from glueless.test's server.
    let world = World::start(|_| {});
    let chain = world.ask("out.example.test", RecordType::A).await;
    let lines: Vec<String> = chain
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::CNAME(t) => format!("{} CNAME {}", r.name, t.0),
            other => format!("{} {}", r.name, other),
        })
        .collect();
    assert_eq!(
        lines,
        [
            "out.example.test. CNAME www.glueless.test.",
            "www.glueless.test. 192.0.2.44"
        ]
    );
    assert!(world.glueless.queries_for("www.glueless.test") >= 1);
}

/// The root zone as the server the hints name serves it: its NS set names
/// another server (`b.root.scn.`, 127.0.0.46), the root in use.
fn moved_root_zone() -> String {
    ROOT_ZONE
        .replace("a.root.scn.", "b.root.scn.")
        .replace("127.0.0.40", "127.0.0.46")
}

/// The same root zone with its NS set's address missing: priming gives
/// nothing to ask, referrals still work.
fn glueless_root_zone() -> String {
    moved_root_zone()
        .lines()
        .filter(|l| !l.contains("127.0.0.46"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A world whose hints name 127.0.0.40 while the root's NS set names
/// 127.0.0.46 (both serve the root zone); returns the world and the new root.
fn moved_root(hints_zone: &str, retry: Duration) -> (World, Authority) {
    moved_root_denying(hints_zone, retry, &[])
}

/// [`moved_root`], never asking the networks `deny`.
fn moved_root_denying(hints_zone: &str, retry: Duration, deny: &[&str]) -> (World, Authority) {
    let new_root = Authority::start_at([127, 0, 0, 46].into(), &moved_root_zone());
    let port = (new_root.addr().ip(), new_root.addr().port());
    let world = World::start(|s| {
        let recursion = s.recursion.as_mut().unwrap();
        recursion.nameserver_ports.insert(port.0, port.1);
        recursion.deny_servers = deny.iter().map(|n| n.parse().unwrap()).collect();
        s.limits.recursion_priming_retry = retry;
    });
    world.root.set_records(hints_zone);
    (world, new_root)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_root_is_primed_and_the_servers_it_names_are_used() {
    let (world, new_root) = moved_root(&moved_root_zone(), Duration::from_secs(60));
    for name in ["www.example.test", "www.lame.test", "www.glueless.test"] {
        let answer = world.ask(name, RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::NoError, "{name}: {answer:?}");
    }
    // The hints server was asked `. NS` once (RFC 8109), nothing else.
    let asked: Vec<(String, RecordType)> = world
        .root
        .received()
        .iter()
        .filter_map(|m| m.queries.first())
        .map(|q| (q.name().to_ascii(), q.query_type()))
        .collect();
    assert_eq!(asked, [(".".to_string(), RecordType::NS)]);
    // The root in use answered the referrals.
    assert!(new_root.queries() >= 1, "the primed root was asked");
    assert_eq!(new_root.queries_for("."), 0, "no priming of the new root");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_priming_falls_back_to_the_hints_and_is_retried() {
    let (world, new_root) = moved_root(&glueless_root_zone(), Duration::ZERO);
    // `. NS` gives no address: the hints answer the referrals.
    let first = world.ask("www.example.test", RecordType::A).await;
    assert_eq!(a_records(&first), [v4("192.0.2.1")], "{first:?}");
    assert_eq!(new_root.queries(), 0);
    assert_eq!(world.root.queries_for("."), 1);
    // Each resolution that needs the root tries priming again (retry 0 s);
    // a TLD not known yet needs the root.
    let second = world.ask("nope", RecordType::A).await;
    assert_eq!(rcode(&second), ResponseCode::NXDomain, "{second:?}");
    assert_eq!(world.root.queries_for("."), 2, "priming retried");
    assert_eq!(new_root.queries(), 0);
    // Once the root's NS set has its address, priming takes and the
    // servers it names are used from then on.
    world.root.set_records(&moved_root_zone());
    let third = world.ask("other", RecordType::A).await;
    assert_eq!(rcode(&third), ResponseCode::NXDomain, "{third:?}");
    assert_eq!(
        new_root.queries_for("other."),
        1,
        "the primed root answered"
    );
    assert_eq!(world.root.queries_for("other."), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primed_root_the_deny_list_forbids_is_not_used() {
    let (world, new_root) = moved_root_denying(
        &moved_root_zone(),
        Duration::from_secs(60),
        &["127.0.0.46/32"],
    );
    let answer = world.ask("www.example.test", RecordType::A).await;
    assert_eq!(a_records(&answer), [v4("192.0.2.1")], "{answer:?}");
    assert_eq!(world.root.queries_for("."), 1, "primed once");
    assert_eq!(new_root.queries(), 0, "the denied root is never asked");
    assert!(world.root.queries_for("test.") >= 1, "the hints answered");
}
