//! Picket in recursive mode (issue 6) against a fake DNS hierarchy on
//! loopback: root on 127.0.0.10, `test.` on 127.0.0.11, leaf zones on
//! 127.0.0.12 and 127.0.0.13 (127.0.0.14 plays a silent server).
//!
//! Every server listens on its own 127.0.0.x address on a free port, and
//! `RecursorSettings::nameserver_ports` sends the iterator there instead of
//! port 53, so these tests need no root and run in plain `cargo test`
//! (those that sign zones with ldns-signzone or run Unbound are ignored and
//! run by `.ci/run`).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ::picket::config::Settings;
use ::picket::upstream::recursor::parse_root_hints;
use ::picket::upstream::{DnssecMode, RecursorSettings};
use common::sign::ZoneKey;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

const ROOT: [u8; 4] = [127, 0, 0, 10];
const TLD: [u8; 4] = [127, 0, 0, 11];
const LEAF1: [u8; 4] = [127, 0, 0, 12];
const LEAF2: [u8; 4] = [127, 0, 0, 13];
const SILENT: [u8; 4] = [127, 0, 0, 14];

const ROOT_ZONE: &str = "
.                    86400 IN SOA a.root-servers.test. hostmaster.root.test. 1 1800 900 604800 86400
.                   518400 IN NS  a.root-servers.test.
a.root-servers.test. 518400 IN A   127.0.0.10
test.               172800 IN NS  ns1.test.
ns1.test.           172800 IN A   127.0.0.11
";

fn tld_zone(extra: &str) -> String {
    format!(
        "
test.               86400 IN SOA ns1.test. hostmaster.test. 1 1800 900 604800 60
test.               86400 IN NS  ns1.test.
ns1.test.           86400 IN A   127.0.0.11
example.test.       86400 IN NS  ns1.example.test.
ns1.example.test.   86400 IN A   127.0.0.12
other.test.         86400 IN NS  ns1.other.test.
ns1.other.test.     86400 IN A   127.0.0.13
lame.test.          86400 IN NS  ns1.lame.test.
ns1.lame.test.      86400 IN A   127.0.0.13
silent.test.        86400 IN NS  ns1.silent.test.
ns1.silent.test.    86400 IN A   127.0.0.14
{extra}
"
    )
}

fn example_zone(extra: &str) -> String {
    format!(
        "
example.test.       3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
example.test.       3600 IN NS  ns1.example.test.
ns1.example.test.   3600 IN A   127.0.0.12
www.example.test.    300 IN A   192.0.2.1
www.example.test.    300 IN AAAA 2001:db8::1
alias.example.test.  300 IN CNAME www.other.test.
loop.example.test.   300 IN CNAME loop.other.test.
{extra}
"
    )
}

const OTHER_ZONE: &str = "
other.test.         3600 IN SOA ns1.other.test. hostmaster.other.test. 1 7200 900 1209600 30
other.test.         3600 IN NS  ns1.other.test.
ns1.other.test.     3600 IN A   127.0.0.13
www.other.test.      300 IN A   198.51.100.7
loop.other.test.     300 IN CNAME loop.example.test.
";

/// The fake hierarchy and a recursive Picket using it.
struct Lab {
    root: Authority,
    tld: Authority,
    example: Authority,
    other: Authority,
    silent: Authority,
    picket: Picket,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("picket-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lab zones, overridable per test.
struct Zones {
    root: String,
    tld: String,
    example: String,
    other: String,
}

impl Default for Zones {
    fn default() -> Self {
        Self {
            root: ROOT_ZONE.to_string(),
            tld: tld_zone(""),
            example: example_zone(""),
            other: OTHER_ZONE.to_string(),
        }
    }
}

fn lab_settings(hints_file: &std::path::Path) -> Settings {
    let hints = std::fs::read_to_string(hints_file).unwrap();
    let mut settings = test_settings(&[]);
    settings.recursion = Some(RecursorSettings {
        root_hints: parse_root_hints(&hints).unwrap(),
        dnssec: DnssecMode::Off,
        deny_servers: Vec::new(),
        ..RecursorSettings::default()
    });
    settings.limits.recursion_attempt_timeout = Duration::from_millis(300);
    settings.limits.recursion_timeout = Duration::from_millis(1500);
    settings
}

impl Lab {
    fn start(zones: Zones, tweak: impl FnOnce(&mut Settings)) -> Lab {
        let dir = TempDir::new("lab");
        let hints = dir.0.join("root.hints");
        std::fs::write(
            &hints,
            ". 3600000 NS a.root-servers.test.\na.root-servers.test. 3600000 A 127.0.0.10\n",
        )
        .unwrap();
        let root = Authority::start_at(ROOT.into(), &zones.root);
        let tld = Authority::start_at(TLD.into(), &zones.tld);
        let example = Authority::start_at(LEAF1.into(), &zones.example);
        let other = Authority::start_at(LEAF2.into(), &zones.other);
        let silent = Authority::start_at(
            SILENT.into(),
            "silent.test. 3600 IN SOA ns1.silent.test. h.silent.test. 1 7200 900 1209600 60",
        );
        silent.set_silent(true);
        let mut settings = lab_settings(&hints);
        let recursion = settings.recursion.as_mut().unwrap();
        recursion.nameserver_ports = [&root, &tld, &example, &other, &silent]
            .iter()
            .map(|s| (s.addr().ip(), s.addr().port()))
            .collect();
        tweak(&mut settings);
        let picket = start_picket_with(settings);
        Lab {
            root,
            tld,
            example,
            other,
            silent,
            picket,
            _dir: dir,
        }
    }

    fn total_queries(&self) -> usize {
        [
            &self.root,
            &self.tld,
            &self.example,
            &self.other,
            &self.silent,
        ]
        .iter()
        .map(|a| a.queries())
        .sum()
    }

    fn reset_counts(&self) {
        for a in [
            &self.root,
            &self.tld,
            &self.example,
            &self.other,
            &self.silent,
        ] {
            a.reset_counts();
        }
    }

    async fn query(&self, name: &str, rtype: RecordType) -> Message {
        query_udp(self.picket.addr, name, rtype).await
    }
}

fn cname_targets(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(t) => Some(t.0.to_ascii()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn resolves_a_aaaa_and_cname_across_zones() {
    let lab = Lab::start(Zones::default(), |_| {});

    let a = lab.query("www.example.test", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert_eq!(
        a_records(&a),
        ["192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(a.metadata.recursion_available, "RA set");
    assert!(!a.metadata.authentic_data, "no AD without validation");
    assert!(lab.root.queries() >= 1 && lab.tld.queries() >= 1 && lab.example.queries() >= 1);

    let aaaa = lab.query("www.example.test", RecordType::AAAA).await;
    assert_eq!(
        aaaa_records(&aaaa),
        ["2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap()]
    );

    let alias = lab.query("alias.example.test", RecordType::A).await;
    assert_eq!(rcode(&alias), ResponseCode::NoError);
    assert_eq!(cname_targets(&alias), ["www.other.test."]);
    assert_eq!(
        a_records(&alias),
        ["198.51.100.7".parse::<std::net::Ipv4Addr>().unwrap()]
    );

    // A second ask is Picket's cache: no upstream query at all.
    lab.reset_counts();
    let again = lab.query("alias.example.test", RecordType::A).await;
    assert_eq!(a_records(&again), a_records(&alias));
    assert_eq!(lab.total_queries(), 0, "served from Picket's cache");
}

/// A zone whose nameserver's name is an alias (RFC 2181 §10.3 forbids it;
/// zones do it, and Unbound and BIND reach them): the CNAME is followed,
/// here out of its zone, to the server's address.
#[tokio::test(flavor = "multi_thread")]
async fn a_nameserver_named_by_an_alias_is_still_reached() {
    let zones = Zones {
        tld: tld_zone("aliased.test.       86400 IN NS  nsalias.other.test."),
        other: format!("{OTHER_ZONE}nsalias.other.test.   300 IN CNAME ns1.example.test.\n"),
        example: example_zone(
            "
aliased.test.       3600 IN SOA ns1.example.test. hostmaster.aliased.test. 1 7200 900 1209600 60
aliased.test.       3600 IN NS  nsalias.other.test.
www.aliased.test.    300 IN A   192.0.2.44
",
        ),
        ..Zones::default()
    };
    let lab = Lab::start(zones, |_| {});
    let a = lab.query("www.aliased.test", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert_eq!(
        a_records(&a),
        ["192.0.2.44".parse::<std::net::Ipv4Addr>().unwrap()]
    );
}

/// A child that gives its own nameserver a wrong address (Deckard's
/// iter_pcdiff): `other.test.` says ns2.other.test is 127.0.0.12, which
/// refuses `pc.`; its parent's glue says 127.0.0.13, which serves it.
/// Unbound falls back to the parent's glue when the child's word fails,
/// and so does Picket.
#[tokio::test(flavor = "multi_thread")]
async fn the_parents_glue_is_the_last_resort_when_the_childs_address_fails() {
    let zones = Zones {
        root: format!("{ROOT_ZONE}pc.                 172800 IN NS  ns2.other.test.\n"),
        tld: tld_zone(
            "other.test.         86400 IN NS  ns2.other.test.
ns2.other.test.     86400 IN A   127.0.0.13",
        ),
        other: format!(
            "{OTHER_ZONE}ns2.other.test.      300 IN A   127.0.0.12
pc.                 3600 IN SOA ns2.other.test. hostmaster.pc. 1 7200 900 1209600 60
pc.                 3600 IN NS  ns2.other.test.
www.pc.              300 IN A   192.0.2.77
mail.pc.             300 IN A   192.0.2.78
"
        ),
        ..Zones::default()
    };
    let lab = Lab::start(zones, |_| {});
    let a = lab.query("www.pc", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError, "{a:?}");
    assert_eq!(
        a_records(&a),
        ["192.0.2.77".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(
        lab.example.queries_for("www.pc") >= 1,
        "the child's address for ns2.other.test was tried first"
    );
    // The next name in the zone goes where the parent points, at once: the
    // child's address is lame for `pc.` by now.
    lab.reset_counts();
    let mail = lab.query("mail.pc", RecordType::A).await;
    assert_eq!(
        a_records(&mail),
        ["192.0.2.78".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(lab.example.queries(), 0);
    assert_eq!(lab.other.queries_for("mail.pc"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_and_nodata_carry_the_soa() {
    let lab = Lab::start(Zones::default(), |_| {});

    let nx = lab.query("nope.example.test", RecordType::A).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain);
    assert!(nx.answers.is_empty());
    let soa = soa_in_authority(&nx).expect("SOA in the authority section (RFC 2308)");
    assert_eq!(soa.name.to_ascii(), "example.test.");
    assert!(soa.ttl <= 60, "negative TTL from the SOA: {}", soa.ttl);

    let nodata = lab.query("www.example.test", RecordType::MX).await;
    assert_eq!(rcode(&nodata), ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(soa_owner(&nodata), "example.test.");

    // Both are cached by Picket (RFC 2308).
    lab.reset_counts();
    lab.query("nope.example.test", RecordType::A).await;
    lab.query("www.example.test", RecordType::MX).await;
    assert_eq!(lab.total_queries(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn lame_delegation_fails_fast_and_is_not_retried_every_query() {
    let lab = Lab::start(Zones::default(), |_| {});
    // 127.0.0.13 serves other.test but not lame.test: it answers REFUSED.
    let started = Instant::now();
    let answer = lab.query("www.lame.test", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail);
    assert_eq!(
        ede(&answer).map(|e| e.0),
        Some(22),
        "EDE 22 No Reachable Authority"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(lab.other.queries_for("www.lame.test") + lab.other.queries_for("lame.test") >= 1);

    lab.reset_counts();
    for _ in 0..20 {
        let again = lab.query("www.lame.test", RecordType::A).await;
        assert_eq!(rcode(&again), ResponseCode::ServFail);
    }
    assert_eq!(lab.total_queries(), 0, "RFC 9520: the failure is cached");
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_delegation_fails_in_bounded_time_and_is_held_down() {
    let lab = Lab::start(Zones::default(), |_| {});
    let started = Instant::now();
    let answer = lab.query("www.silent.test", RecordType::A).await;
    let took = started.elapsed();
    assert_eq!(rcode(&answer), ResponseCode::ServFail);
    eprintln!("silent: {took:?} {:?}", ede(&answer));
    assert!(
        took < Duration::from_millis(1800),
        "bounded by recursion_timeout: {took:?}"
    );
    let first = lab.silent.queries();
    assert!(first >= 1, "the silent server was asked");

    // Same question: the failure cache answers. Other names under the same
    // delegation: the server is held down after its timeouts.
    for i in 0..10 {
        let again = lab.query("www.silent.test", RecordType::A).await;
        assert_eq!(rcode(&again), ResponseCode::ServFail);
        let other = lab.query(&format!("n{i}.silent.test"), RecordType::A).await;
        assert_eq!(rcode(&other), ResponseCode::ServFail);
    }
    let later = lab.silent.queries() - first;
    assert!(
        later <= 2,
        "a silent server is not asked again on every query: {later} more queries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cname_loop_is_servfail_quickly() {
    let lab = Lab::start(Zones::default(), |_| {});
    let started = Instant::now();
    let answer = lab.query("loop.example.test", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail);
    eprintln!(
        "loop: {:?} after {} queries",
        ede(&answer),
        lab.total_queries()
    );
    // Bounded by work, not by the clock: a loop is noticed after a few queries, never run
    // until the depth limit or the deadline.
    assert!(
        lab.total_queries() <= 12,
        "{} queries in {:?}",
        lab.total_queries(),
        started.elapsed()
    );
}

fn chain_zone(links: usize) -> String {
    let mut extra = String::new();
    for i in 0..links {
        extra.push_str(&format!(
            "c{i}.example.test. 300 IN CNAME c{}.example.test.\n",
            i + 1
        ));
    }
    extra.push_str(&format!("c{links}.example.test. 300 IN A 192.0.2.77\n"));
    example_zone(&extra)
}

#[tokio::test(flavor = "multi_thread")]
async fn cname_chain_longer_than_the_limit_is_servfail() {
    // The test authority sends a chain inside one zone in a single answer,
    // which hickory accepts whatever its length: the limit is Picket's.
    let zones = Zones {
        example: chain_zone(14),
        ..Zones::default()
    };
    let lab = Lab::start(zones, |s| s.limits.recursion_max_cname_chain = 11);
    let long = lab.query("c0.example.test", RecordType::A).await;
    assert_eq!(rcode(&long), ResponseCode::ServFail, "14 CNAMEs > 11");
    assert!(
        ede(&long).unwrap().1.contains("CNAME chain"),
        "{:?}",
        ede(&long)
    );
    let short = lab.query("c5.example.test", RecordType::A).await;
    assert_eq!(rcode(&short), ResponseCode::NoError, "9 CNAMEs are fine");
    assert_eq!(cname_targets(&short).len(), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn nxns_referral_to_many_addressless_nameservers_is_bounded() {
    // attack.test is delegated to 100 nameservers in victim.test, none with
    // glue; victim.test (on 127.0.0.13) has none of them.
    let mut ns = String::new();
    for i in 0..100 {
        ns.push_str(&format!("attack.test. 86400 IN NS ns{i}.victim.test.\n"));
    }
    ns.push_str("victim.test. 86400 IN NS ns1.victim-dns.test.\nns1.victim-dns.test. 86400 IN A 127.0.0.13\n");
    let other = format!(
        "{OTHER_ZONE}\nvictim.test. 3600 IN SOA ns1.victim-dns.test. h.victim.test. 1 7200 900 1209600 30\n"
    );
    let zones = Zones {
        tld: tld_zone(&ns),
        other,
        ..Zones::default()
    };
    let lab = Lab::start(zones, |_| {});
    for i in 0..5 {
        let answer = lab.query(&format!("r{i}.attack.test"), RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::ServFail);
    }
    let at_victim = lab.other.queries();
    let names: std::collections::HashSet<String> = lab
        .other
        .received()
        .iter()
        .filter_map(|m| {
            m.queries
                .first()
                .map(|q| q.name().to_lowercase().to_ascii())
        })
        .filter(|n| n.starts_with("ns"))
        .collect();
    eprintln!("victim: {at_victim} queries, names chased: {names:?}");
    assert!(
        names.len() <= ::picket::config::limits::RECURSION_GLUELESS_NS_FOLLOWED,
        "at most 5 of the 100 nameserver names are chased: {names:?}"
    );
    assert!(
        at_victim <= 50,
        "victim saw {at_victim} queries for 5 client queries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_query_budget_stops_a_resolution() {
    // A cold resolution of www.example.test takes about 4 queries (root, TLD,
    // and QNAME-minimised steps at the leaf). With a budget of 2 it fails and
    // no more than 2 queries leave.
    let lab = Lab::start(Zones::default(), |s| s.limits.recursion_max_queries = 2);
    let answer = lab.query("www.example.test", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail);
    let (_, text) = ede(&answer).expect("EDE says why");
    assert!(text.contains("upstream queries"), "{text}");
    assert!(lab.total_queries() <= 2, "{} queries", lab.total_queries());
}

#[tokio::test(flavor = "multi_thread")]
async fn referral_depth_limit_stops_deep_delegations() {
    // a.b.c.d.example.test needs five QNAME-minimisation steps below the
    // root; a depth limit of 3 stops it, the default of 24 does not.
    let zones = Zones {
        example: example_zone("a.b.c.d.example.test. 300 IN A 192.0.2.9"),
        ..Zones::default()
    };
    let lab = Lab::start(zones, |s| s.limits.recursion_max_depth = 3);
    let deep = lab.query("a.b.c.d.example.test", RecordType::A).await;
    assert_eq!(rcode(&deep), ResponseCode::ServFail);
    let (_, why) = ede(&deep).unwrap();
    assert!(
        why.contains("recursion limit") || why.contains("depth"),
        "{why}"
    );
    drop(lab);
    let zones = Zones {
        example: example_zone("a.b.c.d.example.test. 300 IN A 192.0.2.9"),
        ..Zones::default()
    };
    let lab = Lab::start(zones, |_| {});
    let deep = lab.query("a.b.c.d.example.test", RecordType::A).await;
    assert_eq!(rcode(&deep), ResponseCode::NoError);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_randomization_is_sent_and_answers_still_resolve() {
    let lab = Lab::start(Zones::default(), |s| {
        s.recursion.as_mut().unwrap().case_randomization = true;
    });
    let answer = lab.query("www.example.test", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    let mixed = lab
        .root
        .received()
        .iter()
        .chain(lab.tld.received().iter())
        .chain(lab.example.received().iter())
        .filter_map(|m| m.queries.first().map(|q| q.name().to_ascii()))
        .any(|n| n.chars().any(|c| c.is_ascii_uppercase()));
    assert!(mixed, "0x20: some query names went out in mixed case");
    // Random IDs: no two queries share one.
    let ids: Vec<u16> = lab
        .example
        .received()
        .iter()
        .map(|m| m.metadata.id)
        .collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "IDs {ids:?}");
}

// ---------------------------------------------------------------- DNSSEC
//
// The hierarchy is signed for real with ldns (Debian `ldnsutils`):
// example.test and bogus.test are signed with DS records in test., test.
// with its DS in the root, the root's DNSKEY is the trust anchor. other.test
// stays unsigned (an insecure delegation: test.'s NSEC proves no DS), and
// bogus.test has an A record changed after signing.

/// Zone-file lines from ldns output, with a TTL where ldns leaves it out
/// (.ds and .key files) and comments dropped.
fn zone_lines(text: &str) -> String {
    text.lines()
        .map(|l| l.split(';').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.get(1) == Some(&"IN") {
                format!("{} 86400 {}", fields[0], fields[1..].join(" "))
            } else {
                fields.join(" ")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Signs `zone` for `origin` in `dir`; returns (signed zone text, DS lines,
/// DNSKEY lines of the key).
fn sign(dir: &std::path::Path, origin: &str, zone: &str) -> (String, String, String) {
    sign_with(dir, origin, zone, false)
}

/// [`sign`], with a zone-signing key besides the key-signing key when `zsk`
/// (only the KSK gets a DS).
fn sign_with(
    dir: &std::path::Path,
    origin: &str,
    zone: &str,
    zsk: bool,
) -> (String, String, String) {
    let file = format!("{}zone", origin.replace('.', "_"));
    std::fs::write(dir.join(&file), zone).unwrap();
    let key = run_in(dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", "-k", origin]);
    if zsk {
        let zsk = run_in(dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", origin]);
        run_in(dir, "ldns-signzone", &["-o", origin, &file, &key, &zsk]);
    } else {
        run_in(dir, "ldns-signzone", &["-o", origin, &file, &key]);
    }
    let signed = std::fs::read_to_string(dir.join(format!("{file}.signed"))).unwrap();
    let ds = std::fs::read_to_string(dir.join(format!("{key}.ds"))).unwrap();
    let dnskey = std::fs::read_to_string(dir.join(format!("{key}.key"))).unwrap();
    (zone_lines(&signed), zone_lines(&ds), zone_lines(&dnskey))
}

struct SignedLab {
    zones: Zones,
    root_dnskey: String,
    root_ds: String,
}

/// Root key sentinel names (RFC 8509) naming key 1, which no root anchor
/// of the lab has.
const SENTINELS: &str = "
root-key-sentinel-is-ta-00001.example.test.  300 IN A 192.0.2.71
root-key-sentinel-not-ta-00001.example.test. 300 IN A 192.0.2.72
";

/// A second server for example.test, at the `other` server's address: the
/// NS and address records for both the delegation in test. and the apex.
const EXAMPLE_NS2: &str = "
example.test.       3600 IN NS  ns2.example.test.
ns2.example.test.   3600 IN A   127.0.0.13
";

/// [`EXAMPLE_NS2`], and `h0`..`h19.example.test` (A 192.0.2.50): names a
/// test asks one by one, each a fresh pick between the two servers.
fn example_ns2_and_hosts() -> String {
    let hosts: String = (0..20)
        .map(|i| format!("h{i}.example.test. 300 IN A 192.0.2.50\n"))
        .collect();
    format!("{EXAMPLE_NS2}{hosts}")
}

fn signed_zones(dir: &std::path::Path) -> SignedLab {
    signed_zones_with(dir, false, "")
}

/// The signed lab; `example_zsk`: example.test gets a ZSK besides its KSK;
/// `example_extra`: records added to example.test and to its delegation.
fn signed_zones_with(dir: &std::path::Path, example_zsk: bool, example_extra: &str) -> SignedLab {
    let example_text = example_zone(&format!("{SENTINELS}{example_extra}"));
    let (example, example_ds, _) = sign_with(dir, "example.test.", &example_text, example_zsk);
    let bogus_zone = "
bogus.test.       3600 IN SOA ns1.other.test. hostmaster.bogus.test. 1 7200 900 1209600 60
bogus.test.       3600 IN NS  ns1.other.test.
www.bogus.test.    300 IN A   192.0.2.6
";
    let (bogus, bogus_ds, _) = sign(dir, "bogus.test.", bogus_zone);
    // Tamper after signing: the RRSIG no longer matches.
    let bogus = bogus.replace("192.0.2.6", "192.0.2.66");
    assert!(bogus.contains("192.0.2.66"));
    let tld_extra = format!(
        "bogus.test. 86400 IN NS ns1.other.test.\n{example_ds}\n{bogus_ds}\n{example_extra}\n"
    );
    let (tld, tld_ds, _) = sign(dir, "test.", &tld_zone(&tld_extra));
    let (root, root_ds, root_dnskey) = sign(dir, ".", &format!("{ROOT_ZONE}\n{tld_ds}\n"));
    SignedLab {
        zones: Zones {
            root,
            tld,
            example,
            other: format!("{OTHER_ZONE}\n{bogus}\n"),
        },
        root_dnskey,
        root_ds,
    }
}

fn validating(anchor: &str) -> impl FnOnce(&mut Settings) + '_ {
    move |s: &mut Settings| {
        let r = s.recursion.as_mut().unwrap();
        r.dnssec = DnssecMode::Validate;
        r.trust_anchor = Some(anchor.to_string());
    }
}

fn has_rrsig(m: &Message) -> bool {
    m.answers
        .iter()
        .any(|r| r.record_type() == RecordType::RRSIG)
}

async fn query_with(picket: &Picket, q: QueryBuilder) -> Message {
    send_udp(picket.addr, &q.build()).await.expect("an answer")
}

/// www.example.test A with DO=1, the question every validation test asks.
async fn ask_www_with_do(picket: &Picket) -> Message {
    query_with(
        picket,
        QueryBuilder::new("www.example.test", RecordType::A).dnssec_ok(true),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "signs zones with ldns-signzone (Debian ldnsutils); run by .ci/run"]
async fn dnssec_secure_bogus_insecure_and_cd() {
    let keys = TempDir::new("keys");
    let signed = signed_zones(&keys.0);
    let lab = Lab::start(signed.zones, validating(&signed.root_dnskey));

    // Secure, DO=1: AD and the RRSIG.
    let secure = ask_www_with_do(&lab.picket).await;
    assert_eq!(rcode(&secure), ResponseCode::NoError, "{secure:?}");
    assert!(secure.metadata.authentic_data, "AD on a validated answer");
    assert!(has_rrsig(&secure), "RRSIG for a DO client");
    assert_eq!(
        a_records(&secure),
        ["192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap()]
    );

    // RFC 8509: "is key 1 a root anchor?" No: SERVFAIL. "Is it not?" Yes:
    // the answer. With CD=1 the client validates, and nothing fails.
    let is_ta = "root-key-sentinel-is-ta-00001.example.test";
    let failed = lab.query(is_ta, RecordType::A).await;
    assert_eq!(rcode(&failed), ResponseCode::ServFail, "{failed:?}");
    let not_ta = lab
        .query("root-key-sentinel-not-ta-00001.example.test", RecordType::A)
        .await;
    assert_eq!(
        a_records(&not_ta),
        ["192.0.2.72".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    let unchecked = query_with(
        &lab.picket,
        QueryBuilder::new(is_ta, RecordType::A).cd(true),
    )
    .await;
    assert_eq!(a_records(&unchecked).len(), 1, "{unchecked:?}");

    // Secure, DO=0: data only, no AD (the client did not ask for it).
    let plain = lab.query("www.example.test", RecordType::A).await;
    assert_eq!(a_records(&plain).len(), 1);
    assert!(!has_rrsig(&plain), "no RRSIG without DO");
    assert!(!plain.metadata.authentic_data);

    // Bogus: SERVFAIL with EDE 6, for every client.
    let bogus = query_with(
        &lab.picket,
        QueryBuilder::new("www.bogus.test", RecordType::A).dnssec_ok(true),
    )
    .await;
    assert_eq!(rcode(&bogus), ResponseCode::ServFail, "{bogus:?}");
    assert_eq!(ede(&bogus).map(|e| e.0), Some(6), "EDE 6 DNSSEC Bogus");
    let bogus_plain = lab.query("www.bogus.test", RecordType::A).await;
    assert_eq!(rcode(&bogus_plain), ResponseCode::ServFail);

    // CD=1: the data, unvalidated, without AD.
    let cd = query_with(
        &lab.picket,
        QueryBuilder::new("www.bogus.test", RecordType::A).cd(true),
    )
    .await;
    assert_eq!(rcode(&cd), ResponseCode::NoError, "{cd:?}");
    assert_eq!(
        a_records(&cd),
        ["192.0.2.66".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(!cd.metadata.authentic_data);
    // CD=1 on a secure name: validated all the same, for AD (RFC 4035
    // §3.2.3), as Unbound does.
    let cd_secure = query_with(
        &lab.picket,
        QueryBuilder::new("www.example.test", RecordType::A)
            .dnssec_ok(true)
            .cd(true),
    )
    .await;
    assert_eq!(rcode(&cd_secure), ResponseCode::NoError, "{cd_secure:?}");
    assert!(cd_secure.metadata.authentic_data, "{cd_secure:?}");

    // Insecure delegation: answered, no AD.
    let insecure = query_with(
        &lab.picket,
        QueryBuilder::new("www.other.test", RecordType::A).dnssec_ok(true),
    )
    .await;
    assert_eq!(rcode(&insecure), ResponseCode::NoError, "{insecure:?}");
    assert!(!insecure.metadata.authentic_data);

    // Signed NXDOMAIN: the SOA, and NSEC proofs for a DO client.
    let nx = query_with(
        &lab.picket,
        QueryBuilder::new("nope.example.test", RecordType::A).dnssec_ok(true),
    )
    .await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert!(soa_in_authority(&nx).is_some());
    assert!(nx.metadata.authentic_data, "validated denial of existence");
    assert!(nx
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NSEC));

    // None of it needed a DS query: a signed parent puts the child's DS
    // RRset, or the NSEC proving there is none, in its referrals (RFC 4035
    // §3.1.4.1), and Picket validates the cut with them as Unbound does
    // (Deckard's val_ans_dsent serves DS only in referrals).
    for (server, name) in [(&lab.root, "root"), (&lab.tld, "test.")] {
        assert_eq!(
            ds_queries(server),
            Vec::<String>::new(),
            "the {name} server was asked for DS records its referrals had given"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "signs zones with ldns-signzone (Debian ldnsutils); run by .ci/run"]
async fn a_ds_rrset_from_a_referral_that_does_not_validate_is_asked_of_the_parent() {
    // test.'s server trims its referrals: example.test's DS RRset comes without
    // its RRSIG, so the cut cannot be proved secure from the referral. A DS
    // query to the same server gets the RRset signed. Picket asks it once,
    // as Unbound does, and the answer is secure; judged on the referral
    // alone it would be bogus (SERVFAIL, EDE 6).
    let keys = TempDir::new("keys");
    let signed = signed_zones(&keys.0);
    let lab = Lab::start(signed.zones, validating(&signed.root_dnskey));
    lab.tld.set_unsigned_referral_ds(true);

    let secure = ask_www_with_do(&lab.picket).await;
    assert_eq!(rcode(&secure), ResponseCode::NoError, "{secure:?}");
    assert!(secure.metadata.authentic_data, "AD: {secure:?}");
    assert_eq!(
        ds_queries(&lab.tld),
        ["example.test."],
        "one DS query to the parent, for the cut its referral left unproved"
    );
    assert_eq!(ds_queries(&lab.root), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "signs zones with ldns-signzone (Debian ldnsutils); run by .ci/run"]
async fn a_ds_question_answered_with_a_referral_takes_the_ds_from_it() {
    // test.'s server answers a DS question for the zone it delegates with
    // the referral (NS, and the signed DS RRset in the authority section),
    // as servers that also serve the child may. The DS RRset is the answer
    // (Unbound's iter_ds_referral); taken for a referral, the answer was
    // bogus (SERVFAIL, EDE 12: NODATA without a proof).
    let keys = TempDir::new("keys");
    let signed = signed_zones(&keys.0);
    let lab = Lab::start(signed.zones, validating(&signed.root_dnskey));
    lab.tld.set_ds_by_referral(true);

    let ds = query_with(
        &lab.picket,
        QueryBuilder::new("example.test", RecordType::DS).dnssec_ok(true),
    )
    .await;
    assert_eq!(rcode(&ds), ResponseCode::NoError, "{ds:?}");
    assert!(ds.metadata.authentic_data, "AD: {ds:?}");
    let types: Vec<RecordType> = ds.answers.iter().map(|r| r.record_type()).collect();
    assert!(types.contains(&RecordType::DS), "{ds:?}");
    assert!(types.contains(&RecordType::RRSIG), "{ds:?}");
    assert!(ds.authorities.is_empty(), "nothing of the referral: {ds:?}");
    assert_eq!(ds_queries(&lab.tld), ["example.test."]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "signs zones with ldns-signzone (Debian ldnsutils); run by .ci/run"]
async fn a_server_serving_a_signed_zone_unsigned_is_passed_over() {
    // example.test has a second server, the faster, serving an unsigned
    // copy of the zone (an old secondary): none of its answers carries an
    // RRSIG though test. has a DS RRset for the zone. Another server of
    // the zone is asked, as Unbound does with servers it calls "DNSSEC
    // lame" (iter_dnsseclame_ds, iter_dnsseclame_ta); taken as they come,
    // its answers were bogus (SERVFAIL, EDE 10).
    let keys = TempDir::new("keys");
    let lab = lab_with_a_second_example_server(&keys, |_| {
        example_zone(&format!("{SENTINELS}{}", example_ns2_and_hosts()))
    });

    for (name, qtype, expected) in [
        ("www.example.test", RecordType::A, ResponseCode::NoError),
        ("www.example.test", RecordType::AAAA, ResponseCode::NoError),
        ("www.example.test", RecordType::MX, ResponseCode::NoError),
        ("nx1.example.test", RecordType::A, ResponseCode::NXDomain),
        ("nx2.example.test", RecordType::A, ResponseCode::NXDomain),
    ] {
        let answer = query_with(&lab.picket, QueryBuilder::new(name, qtype).dnssec_ok(true)).await;
        assert_eq!(rcode(&answer), expected, "{name} {qtype}: {answer:?}");
        assert!(answer.metadata.authentic_data, "{name} {qtype}: {answer:?}");
    }
    let asked_of_the_copy = lab
        .other
        .received()
        .iter()
        .flat_map(|m| m.queries.iter())
        .filter(|q| q.name().to_string().ends_with("example.test."))
        .count();
    assert!(
        asked_of_the_copy > 0,
        "the unsigned copy was asked, and passed over"
    );
}

/// The signed example.test text with `tamper` applied to the lines it
/// changes; panics if it changed none.
fn tampered(zone: &str, tamper: impl Fn(&str) -> Option<String>) -> String {
    let mut changed = 0;
    let lines: Vec<String> = zone
        .lines()
        .map(|line| match tamper(line) {
            Some(new) => {
                changed += 1;
                new
            }
            None => line.to_string(),
        })
        .collect();
    assert!(changed > 0, "the tamper matched no line");
    lines.join("\n")
}

/// The lab with example.test served by two servers: the slower, with the
/// zone as signed, and the faster (the `other` server) with `copy`.
fn lab_with_a_second_example_server(keys: &TempDir, copy: impl Fn(&str) -> String) -> Lab {
    let mut signed = signed_zones_with(&keys.0, false, &example_ns2_and_hosts());
    signed.zones.other = format!("{}\n{}", signed.zones.other, copy(&signed.zones.example));
    let lab = Lab::start(signed.zones, validating(&signed.root_dnskey));
    lab.example.set_delay(Duration::from_millis(40));
    lab
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "signs zones with ldns-signzone (Debian ldnsutils); run by .ci/run"]
async fn bogus_data_from_one_server_is_asked_again_of_another() {
    // example.test's second server serves a broken copy: the hosts'
    // addresses were changed after signing. An answer from it is bogus, and
    // Picket asks again, the servers that answered left to the last resort,
    // as Unbound does (Deckard's black_data); judged once, it was SERVFAIL.
    // Servers within 400 ms are picked at random: each new name has an even
    // chance of going to the broken copy first.
    let keys = TempDir::new("keys");
    let lab = lab_with_a_second_example_server(&keys, |zone| {
        tampered(zone, |line| {
            (line.starts_with('h') && line.ends_with("192.0.2.50"))
                .then(|| line.replace("192.0.2.50", "192.0.2.66"))
        })
    });
    let good: std::net::Ipv4Addr = "192.0.2.50".parse().unwrap();
    let mut broken_copy_asked = 0;
    for i in 0..20 {
        let name = format!("h{i}.example.test");
        let answer = query_with(
            &lab.picket,
            QueryBuilder::new(&name, RecordType::A).dnssec_ok(true),
        )
        .await;
        assert_eq!(rcode(&answer), ResponseCode::NoError, "{name}: {answer:?}");
        assert!(answer.metadata.authentic_data, "{name}: {answer:?}");
        assert_eq!(a_records(&answer), [good], "{name}: {answer:?}");
        broken_copy_asked += lab.other.queries_for(&name);
        if broken_copy_asked > 0 && i >= 3 {
            break;
        }
    }
    assert!(
        broken_copy_asked > 0,
        "the broken copy was asked (and passed over)"
    );
}

/// The DS queries `server` received (the validator's fetches; a referral
/// never needs one).
fn ds_queries(server: &Authority) -> Vec<String> {
    server
        .received()
        .iter()
        .flat_map(|m| m.queries.iter())
        .filter(|q| q.query_type() == RecordType::DS)
        .map(|q| q.name().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "signs zones with ldns-signzone (Debian ldnsutils); run by .ci/run"]
async fn dnssec_trust_anchor_as_ds_is_primed() {
    let keys = TempDir::new("keys");
    let signed = signed_zones(&keys.0);
    let lab = Lab::start(signed.zones, validating(&signed.root_ds));
    let secure = ask_www_with_do(&lab.picket).await;
    assert_eq!(rcode(&secure), ResponseCode::NoError, "{secure:?}");
    assert!(secure.metadata.authentic_data, "AD with a DS trust anchor");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "signs zones with ldns-signzone (Debian ldnsutils); run by .ci/run"]
async fn dnssec_wrong_trust_anchor_makes_everything_bogus() {
    let keys = TempDir::new("keys");
    let signed = signed_zones(&keys.0);
    // Another lab's root key: nothing chains to it.
    let other_keys = TempDir::new("keys2");
    let (_, _, stranger) = sign(&other_keys.0, ".", ROOT_ZONE);
    let lab = Lab::start(signed.zones, validating(&stranger));
    let answer = ask_www_with_do(&lab.picket).await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail, "{answer:?}");
    // EDE 9 (DNSKEY Missing: no key of the root matches the anchor) or 6
    // (DNSSEC Bogus), as for a stale island anchor below.
    let code = ede(&answer).map(|e| e.0);
    assert!(matches!(code, Some(6 | 9)), "{:?}", ede(&answer));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "signs zones with ldns-signzone (Debian ldnsutils); run by .ci/run"]
async fn keytrap_signatures_beyond_the_cap_are_not_tried() {
    // example.test (a KSK with a DS and a ZSK without) serves its DNSKEY
    // RRset with 40 forged RRSIGs (right key tag, wrong signature) before the
    // real ones. hickory tries every RRSIG of a DNSKEY RRset (KeyTrap) and
    // would succeed on the real one; Picket keeps 8 per RRset, so the real
    // ones are never reached and the zone is bogus: an attacker's RRSIG
    // count no longer buys verifications.
    let keys = TempDir::new("keys");
    let mut signed = signed_zones_with(&keys.0, true, "");
    let real: String = signed
        .zones
        .example
        .lines()
        .find(|l| l.contains("RRSIG DNSKEY"))
        .expect("the DNSKEY RRset is signed")
        .to_string();
    let fields: Vec<&str> = real.split_whitespace().collect();
    let signature = fields.last().unwrap();
    let mut forged = String::new();
    for i in 0..40 {
        let bad = format!("{}{i:04}AA==", &signature[..signature.len() - 8]);
        forged.push_str(&real.replace(signature, &bad));
        forged.push('\n');
    }
    signed.zones.example = signed
        .zones
        .example
        .replace(&real, &format!("{forged}{real}"));
    let lab = Lab::start(signed.zones, validating(&signed.root_dnskey));
    let started = Instant::now();
    let answer = ask_www_with_do(&lab.picket).await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail, "{answer:?}");
    // EDE 6 (not 22) also says validation ended on its own, well before the per-query
    // deadline (4 s) that a KeyTrap-style blow-up would have run into.
    assert_eq!(ede(&answer).map(|e| e.0), Some(6));
    eprintln!("bogus answer after {:?}", started.elapsed());
    // The other zones still validate.
    let tld = query_with(
        &lab.picket,
        QueryBuilder::new("test", RecordType::SOA).dnssec_ok(true),
    )
    .await;
    assert!(tld.metadata.authentic_data, "{tld:?}");
}

// ------------------------------------------------ a tree on free ports
//
// Each server of this tree has its own 127.0.0.x address and a free port
// (`RecursorSettings::nameserver_ports` sends hickory there instead of port
// 53), so these tests need no root and run in plain `cargo test`:
//
//   .                 unsigned root                      127.0.0.20
//   example.          unsigned TLD                       127.0.0.21
//   secure.example.   signed; its DS is a trust anchor    127.0.0.22
//   bogus.example.    signed with a key its anchor does   127.0.0.23
//                     not match (a stale anchor)
//   plain.example.    unsigned; CNAME chains and loops    127.0.0.24
//   hops.example.     unsigned, on the same server as plain.example
//                     (like NSD serving both: it answers a chain through
//                     both zones at once)

const TREE_ROOT: [u8; 4] = [127, 0, 0, 20];
const TREE_TLD: [u8; 4] = [127, 0, 0, 21];
const TREE_SECURE: [u8; 4] = [127, 0, 0, 22];
const TREE_BOGUS: [u8; 4] = [127, 0, 0, 23];
const TREE_PLAIN: [u8; 4] = [127, 0, 0, 24];

const TREE_ROOT_ZONE: &str = "
.                 86400 IN SOA a.root.tree. h.root.tree. 1 1800 900 604800 86400
.                518400 IN NS  a.root.tree.
a.root.tree.     518400 IN A   127.0.0.20
example.         172800 IN NS  ns.example.
ns.example.      172800 IN A   127.0.0.21
";

const TREE_TLD_ZONE: &str = "
example.              86400 IN SOA ns.example. h.example. 1 1800 900 604800 60
example.              86400 IN NS  ns.example.
ns.example.           86400 IN A   127.0.0.21
secure.example.       86400 IN NS  ns.secure.example.
ns.secure.example.    86400 IN A   127.0.0.22
bogus.example.        86400 IN NS  ns.bogus.example.
ns.bogus.example.     86400 IN A   127.0.0.23
plain.example.        86400 IN NS  ns.plain.example.
ns.plain.example.     86400 IN A   127.0.0.24
hops.example.         86400 IN NS  ns.plain.example.
";

fn leaf_zone(zone: &str, ip: &str, extra: &str) -> String {
    format!(
        "
{zone}       3600 IN SOA ns.{zone} h.{zone} 1 7200 900 1209600 60
{zone}       3600 IN NS  ns.{zone}
ns.{zone}    3600 IN A   {ip}
www.{zone}    300 IN A   {www}
www2.{zone}   300 IN A   {www}
{extra}
",
        www = ip.replace("127.0.0.", "192.0.2.")
    )
}

const PLAIN_EXTRA: &str = "
chain1.plain.example.  300 IN CNAME chain2.plain.example.
chain2.plain.example.  300 IN CNAME hop1.hops.example.
final.plain.example.   300 IN A     192.0.2.99
nodata.plain.example.  300 IN CNAME empty.hops.example.
nx.plain.example.      300 IN CNAME gone.hops.example.
loop-a.plain.example.  300 IN CNAME loop-b.hops.example.
self.plain.example.    300 IN CNAME self.plain.example.
to-secure.plain.example. 300 IN CNAME www2.secure.example.
old.plain.example.     300 IN DNAME hops.example.
loop.plain.example.    300 IN DNAME loop.hops.example.
grow.plain.example.    300 IN DNAME a.grow.plain.example.
long.plain.example.    300 IN DNAME xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.hops.example.
";

const HOPS_ZONE: &str = "
hops.example.          3600 IN SOA ns.plain.example. h.hops.example. 1 7200 900 1209600 45
hops.example.          3600 IN NS  ns.plain.example.
hop1.hops.example.      300 IN CNAME hop3.hops.example.
hop3.hops.example.      300 IN CNAME final.plain.example.
empty.hops.example.     300 IN TXT   \"no address here\"
loop-b.hops.example.    300 IN CNAME loop-a.plain.example.
loop.hops.example.      300 IN DNAME loop.plain.example.
";

/// secure.example's DNAME onto itself: signed, its synthesized CNAMEs not.
const SECURE_EXTRA: &str = "
dn.secure.example.      300 IN DNAME secure.example.
long.secure.example.    300 IN DNAME xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.hops.example.
a.ent.secure.example.   300 IN A     192.0.2.77
";

/// The texts of secure.example (signed with the anchor's key, its data by
/// `zsk` when given) and bogus.example (signed with a key that does not
/// match its anchor), and the two anchors (DS lines).
fn island_zones(zsk: Option<ZoneKey>) -> (String, String, String) {
    let secure_key = ZoneKey::generate("secure.example.");
    let bogus_key = ZoneKey::generate("bogus.example.");
    let stale_key = ZoneKey::generate("bogus.example.");
    let anchors = format!("{}\n{}\n", secure_key.ds_line(), stale_key.ds_line());
    let secure_zone = leaf_zone("secure.example.", "127.0.0.22", SECURE_EXTRA);
    let secure = secure_key.sign_with(zsk.as_ref(), &secure_zone);
    let bogus = bogus_key.sign(&leaf_zone("bogus.example.", "127.0.0.23", ""));
    (secure, bogus, anchors)
}

/// The tree's authorities: root, TLD, secure.example and bogus.example as
/// given, plain.example with hops.example.
fn tree_servers(secure: &str, bogus: &str) -> Vec<Authority> {
    let plain = format!(
        "{}\n{HOPS_ZONE}",
        leaf_zone("plain.example.", "127.0.0.24", PLAIN_EXTRA)
    );
    vec![
        Authority::start_at(TREE_ROOT.into(), TREE_ROOT_ZONE),
        Authority::start_at(TREE_TLD.into(), TREE_TLD_ZONE),
        Authority::start_at(TREE_SECURE.into(), secure),
        Authority::start_at(TREE_BOGUS.into(), bogus),
        Authority::start_at(TREE_PLAIN.into(), &plain),
    ]
}

/// The tree's servers (root, TLD, secure, bogus, plain) and a recursive
/// Picket using it.
struct Tree {
    servers: Vec<Authority>,
    anchors: Option<String>,
    picket: Picket,
}

impl Tree {
    /// The tree, unsigned, with validation off.
    fn unsigned() -> Tree {
        Self::start(
            leaf_zone("secure.example.", "127.0.0.22", SECURE_EXTRA),
            leaf_zone("bogus.example.", "127.0.0.23", ""),
            DnssecMode::Off,
            None,
        )
    }

    /// secure.example signed with the anchor's key, bogus.example with a
    /// key that does not match its anchor; both DS records are anchors.
    fn islands() -> Tree {
        Self::islands_with(None)
    }

    /// [`Tree::islands`], secure.example's data signed by `zsk` (its
    /// DNSKEY RRset still by the anchored key-signing key).
    fn islands_with(zsk: Option<ZoneKey>) -> Tree {
        let (secure, bogus, anchors) = island_zones(zsk);
        Self::start(secure, bogus, DnssecMode::Validate, Some(anchors))
    }

    fn start(secure: String, bogus: String, dnssec: DnssecMode, anchor: Option<String>) -> Tree {
        let servers = tree_servers(&secure, &bogus);
        let mut settings = test_settings(&[]);
        settings.recursion = Some(RecursorSettings {
            root_hints: vec![std::net::IpAddr::from(TREE_ROOT)],
            dnssec,
            trust_anchor: anchor.clone(),
            deny_servers: Vec::new(),
            nameserver_ports: servers
                .iter()
                .map(|s| (s.addr().ip(), s.addr().port()))
                .collect(),
            ..RecursorSettings::default()
        });
        settings.limits.recursion_attempt_timeout = Duration::from_millis(500);
        settings.limits.recursion_timeout = Duration::from_millis(2500);
        Tree {
            servers,
            anchors: anchor,
            picket: start_picket_with(settings),
        }
    }

    async fn ask(&self, name: &str, rtype: RecordType) -> Message {
        query_with(&self.picket, QueryBuilder::new(name, rtype).dnssec_ok(true)).await
    }
}

/// The answer section as `owner type data` lines, in order.
fn answer_lines(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter(|r| r.record_type() != RecordType::RRSIG)
        .map(|r| match ::picket::dnssec::dname::target(r) {
            Some(target) => format!("{} DNAME {target}", r.name),
            None => format!("{} {} {}", r.name, r.record_type(), r.data),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn trust_anchors_are_islands_a_stale_one_fails_only_its_zone() {
    let tree = Tree::islands();

    // Under no anchor: insecure, answered, no AD.
    let plain = tree.ask("www.plain.example", RecordType::A).await;
    assert_eq!(rcode(&plain), ResponseCode::NoError, "{plain:?}");
    assert_eq!(a_records(&plain), [std::net::Ipv4Addr::new(192, 0, 2, 24)]);
    assert!(!plain.metadata.authentic_data, "insecure: no AD");

    // Under the matching anchor: secure, AD and the RRSIG for a DO client.
    let secure = tree.ask("www.secure.example", RecordType::A).await;
    assert_eq!(rcode(&secure), ResponseCode::NoError, "{:?}", ede(&secure));
    assert_eq!(a_records(&secure), [std::net::Ipv4Addr::new(192, 0, 2, 22)]);
    assert!(secure.metadata.authentic_data, "secure: AD {secure:?}");
    assert!(has_rrsig(&secure), "RRSIG with DO: {secure:?}");

    // Under the stale anchor: bogus, SERVFAIL with EDE 9 (DNSKEY Missing)
    // or 6 (DNSSEC Bogus).
    let bogus = tree.ask("www.bogus.example", RecordType::A).await;
    assert_eq!(rcode(&bogus), ResponseCode::ServFail, "{bogus:?}");
    let code = ede(&bogus).map(|e| e.0);
    assert!(matches!(code, Some(6 | 9)), "EDE 6 or 9: {:?}", ede(&bogus));

    // And nothing else is affected afterwards (new names: not from cache).
    let plain2 = tree.ask("www2.plain.example", RecordType::A).await;
    assert_eq!(rcode(&plain2), ResponseCode::NoError, "{plain2:?}");
    assert!(!plain2.metadata.authentic_data);
    let secure2 = tree.ask("www2.secure.example", RecordType::A).await;
    assert_eq!(rcode(&secure2), ResponseCode::NoError, "{secure2:?}");
    assert!(secure2.metadata.authentic_data, "{secure2:?}");
    // A DO=0 client gets the data without RRSIGs or AD.
    let quiet = query_udp(tree.picket.addr, "www.secure.example", RecordType::A).await;
    assert_eq!(a_records(&quiet).len(), 1);
    assert!(!has_rrsig(&quiet) && !quiet.metadata.authentic_data);
}

#[tokio::test(flavor = "multi_thread")]
async fn denials_of_existence_in_an_island_are_secure() {
    let tree = Tree::islands();
    let nx = tree.ask("nope.secure.example", RecordType::A).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{:?}", ede(&nx));
    assert!(nx.metadata.authentic_data, "validated NXDOMAIN: {nx:?}");
    assert_eq!(soa_owner(&nx), "secure.example.");
    let proof = nx
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NSEC);
    assert!(proof, "NSEC proofs for a DO client: {nx:?}");
    let nodata = tree.ask("www.secure.example", RecordType::MX).await;
    assert_eq!(rcode(&nodata), ResponseCode::NoError, "{:?}", ede(&nodata));
    assert!(nodata.answers.is_empty());
    assert!(
        nodata.metadata.authentic_data,
        "validated NODATA: {nodata:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anchor_for_a_zone_that_went_unsigned_fails_only_that_zone() {
    // hops.example has no DNSKEY at all, yet a DS anchor names it.
    let anchor = ZoneKey::generate("hops.example.").ds_line();
    let tree = Tree::start(
        leaf_zone("secure.example.", "127.0.0.22", ""),
        leaf_zone("bogus.example.", "127.0.0.23", ""),
        DnssecMode::Validate,
        Some(anchor),
    );
    let hops = tree.ask("empty.hops.example", RecordType::TXT).await;
    assert_eq!(rcode(&hops), ResponseCode::ServFail, "{hops:?}");
    assert_eq!(
        ede(&hops).map(|e| e.0),
        Some(9),
        "DNSKEY Missing: {:?}",
        ede(&hops)
    );
    let plain = tree.ask("www.plain.example", RecordType::A).await;
    assert_eq!(rcode(&plain), ResponseCode::NoError, "{:?}", ede(&plain));
    assert!(!plain.metadata.authentic_data);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_island_signed_with_a_ksk_and_a_zsk_validates() {
    // Only the KSK has a DS (the anchor); the data is signed by the ZSK,
    // which priming trusts because the KSK signs the DNSKEY RRset.
    let tree = Tree::islands_with(Some(ZoneKey::generate_zsk("secure.example.")));
    let secure = tree.ask("www.secure.example", RecordType::A).await;
    assert_eq!(rcode(&secure), ResponseCode::NoError, "{:?}", ede(&secure));
    assert!(secure.metadata.authentic_data, "{secure:?}");
    assert!(has_rrsig(&secure));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_from_an_insecure_zone_into_an_island_is_insecure() {
    let tree = Tree::islands();
    let answer = tree.ask("to-secure.plain.example", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{:?}", ede(&answer));
    assert_eq!(
        answer_lines(&answer),
        [
            "to-secure.plain.example. CNAME www2.secure.example.",
            "www2.secure.example. A 192.0.2.22",
        ]
    );
    assert!(!answer.metadata.authentic_data, "the CNAME is insecure");
}

/// Asks `name` A of `tree` and checks the answer section is `lines`, in order.
async fn assert_chain(tree: &Tree, name: &str, lines: &[&str]) -> Message {
    let answer = tree.ask(name, RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(answer_lines(&answer), lines, "{name}");
    answer
}

/// How chain1.plain.example (or a DNAME onto hop1) goes on.
const CHAIN_FROM_HOP1: [&str; 3] = [
    "hop1.hops.example. CNAME hop3.hops.example.",
    "hop3.hops.example. CNAME final.plain.example.",
    "final.plain.example. A 192.0.2.99",
];

#[tokio::test(flavor = "multi_thread")]
async fn cname_chain_across_zones_comes_back_in_chain_order() {
    let head = [
        "chain1.plain.example. CNAME chain2.plain.example.",
        "chain2.plain.example. CNAME hop1.hops.example.",
    ];
    let lines = [&head[..], &CHAIN_FROM_HOP1[..]].concat();
    assert_chain(&Tree::unsigned(), "chain1.plain.example", &lines).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cname_chain_into_nodata_or_nxdomain_keeps_the_cnames_and_the_soa() {
    let tree = Tree::unsigned();
    let nodata = tree.ask("nodata.plain.example", RecordType::A).await;
    assert_eq!(rcode(&nodata), ResponseCode::NoError, "{nodata:?}");
    assert_eq!(
        answer_lines(&nodata),
        ["nodata.plain.example. CNAME empty.hops.example."]
    );
    let soa = soa_in_authority(&nodata).expect("the final zone's SOA");
    assert_eq!(soa.name.to_ascii(), "hops.example.");

    // RFC 6604: after a CNAME, the rcode is the last name's.
    let nx = tree.ask("nx.plain.example", RecordType::A).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert_eq!(
        answer_lines(&nx),
        ["nx.plain.example. CNAME gone.hops.example."]
    );
    assert_eq!(soa_owner(&nx), "hops.example.");
}

#[tokio::test(flavor = "multi_thread")]
async fn cname_loops_are_servfail_in_recursive_mode() {
    let tree = Tree::unsigned();
    for name in ["loop-a.plain.example", "self.plain.example"] {
        let answer = tree.ask(name, RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::ServFail, "{name}: {answer:?}");
        assert!(answer.answers.is_empty(), "{name}: {answer:?}");
        // Not "No Reachable Authority": every authority answered.
        assert_eq!(ede(&answer), None, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dname_answers_are_followed_through_cnames_across_zones() {
    let tree = Tree::unsigned();
    let dname = "old.plain.example. DNAME hops.example.";
    let synthesized = "hop1.old.plain.example. CNAME hop1.hops.example.";
    let lines = [&[dname, synthesized][..], &CHAIN_FROM_HOP1[..]].concat();
    assert_chain(&tree, "hop1.old.plain.example", &lines).await;
    // A name the DNAME maps onto nothing: NXDOMAIN of the new name, with
    // the DNAME and its CNAME.
    let nx = tree.ask("gone.old.plain.example", RecordType::A).await;
    let soa = soa_in_authority(&nx).map(|r| r.name.to_ascii());
    let view = (rcode(&nx), answer_lines(&nx).len(), soa);
    let want = (ResponseCode::NXDomain, 2, Some("hops.example.".to_string()));
    assert_eq!(view, want, "{nx:?}");
}

/// RFC 6672 §2.2 (Unbound's iter_dname_yx): a DNAME whose new name would
/// be too long makes the server answer YXDOMAIN with the DNAME. That is
/// the answer, passed on as such, not a broken server's reply.
#[tokio::test(flavor = "multi_thread")]
async fn a_dname_whose_new_name_is_too_long_answers_yxdomain() {
    let tree = Tree::unsigned();
    for prefix in [
        "a-label-long-enough-to-overflow",
        "another-label-that-overflows.too",
    ] {
        let name = format!("{prefix}.long.plain.example");
        let answer = tree.ask(&name, RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::YXDomain, "{name}: {answer:?}");
        let lines = answer_lines(&answer);
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(
            lines[0].starts_with("long.plain.example. DNAME"),
            "{lines:?}"
        );
    }
    // A short enough name under the same DNAME is substituted as usual.
    let fits = tree.ask("a.long.plain.example", RecordType::A).await;
    assert_eq!(rcode(&fits), ResponseCode::NXDomain, "{fits:?}");
}

/// Unbound's val_dnametoolong: the YXDOMAIN of a signed DNAME whose new
/// name would be too long is validated like any answer: its DNAME's RRSIG
/// makes it secure (AD), where it was judged to have nothing to validate
/// (SERVFAIL, EDE 6).
#[tokio::test(flavor = "multi_thread")]
async fn a_signed_dname_whose_new_name_is_too_long_is_a_secure_yxdomain() {
    let tree = Tree::islands();
    let name = "a-label-long-enough-to-overflow.long.secure.example";
    let answer = tree.ask(name, RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::YXDomain, "{answer:?}");
    assert!(answer.metadata.authentic_data, "AD: {answer:?}");
    let types: Vec<RecordType> = answer.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::DNAME, RecordType::RRSIG], "{answer:?}");
}

/// Unbound's val_nodata_entnx: a server that answers NXDOMAIN for an empty
/// non-terminal, with the NSEC that shows the name to exist (it points
/// below it), is read as the NODATA it is, and that NODATA is secure.
#[tokio::test(flavor = "multi_thread")]
async fn an_nxdomain_for_an_empty_non_terminal_is_a_secure_nodata() {
    let tree = Tree::islands();
    tree.servers[2].set_nxdomain_for_nodata(true);
    let answer = tree.ask("ent.secure.example", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert!(answer.metadata.authentic_data, "AD: {answer:?}");
    assert!(answer.answers.is_empty(), "{answer:?}");
    assert!(soa_in_authority(&answer).is_some(), "{answer:?}");
    // A name that does not exist is still NXDOMAIN, and secure.
    let nx = tree.ask("nope.secure.example", RecordType::A).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert!(nx.metadata.authentic_data, "AD: {nx:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cname_that_disagrees_with_its_dname_is_not_followed() {
    let tree = Tree::unsigned();
    // The server's own synthesized CNAME is replaced by one made from the
    // DNAME (RFC 6672 §3.4): a forged target in it is never followed.
    let forged = format!(
        "{}
{HOPS_ZONE}
hop1.old.plain.example. 300 IN CNAME www.plain.example.",
        leaf_zone("plain.example.", "127.0.0.24", PLAIN_EXTRA)
    );
    tree.servers[4].set_records(&forged);
    let answer = tree.ask("hop1.old.plain.example", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(a_records(&answer), [std::net::Ipv4Addr::new(192, 0, 2, 99)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn dname_loops_and_endless_dnames_are_servfail() {
    let tree = Tree::unsigned();
    // x.loop.plain → x.loop.hops → x.loop.plain: a loop.
    let looped = tree.ask("x.loop.plain.example", RecordType::A).await;
    assert_eq!(rcode(&looped), ResponseCode::ServFail, "{looped:?}");
    assert!(looped.answers.is_empty(), "{looped:?}");
    // x.grow.plain → x.a.grow.plain → x.a.a.grow.plain ...: each DNAME
    // step counts toward the CNAME limit.
    let grown = tree.ask("x.grow.plain.example", RecordType::A).await;
    assert_eq!(rcode(&grown), ResponseCode::ServFail, "{grown:?}");
    assert!(grown.answers.is_empty(), "{grown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_dname_validates_and_its_unsigned_cname_does_not_spoil_it() {
    let tree = Tree::islands();
    let lines = [
        "dn.secure.example. DNAME secure.example.",
        "www.dn.secure.example. CNAME www.secure.example.",
        "www.secure.example. A 192.0.2.22",
    ];
    let answer = assert_chain(&tree, "www.dn.secure.example", &lines).await;
    assert!(answer.metadata.authentic_data, "secure: {answer:?}");
    let sigs: Vec<RecordType> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(
                sig,
            )) => Some(sig.input().type_covered),
            _ => None,
        })
        .collect();
    assert!(sigs.contains(&RecordType::DNAME), "{sigs:?}");
    assert!(!sigs.contains(&RecordType::CNAME), "{sigs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cname_loops_are_servfail_in_forward_mode() {
    let upstream = Authority::start(&format!(
        "{}\n{HOPS_ZONE}",
        leaf_zone("plain.example.", "127.0.0.24", PLAIN_EXTRA)
    ));
    let picket = start_picket(&[upstream.addr()]);
    for name in ["loop-a.plain.example", "self.plain.example"] {
        let answer = query_udp(picket.addr, name, RecordType::A).await;
        assert_eq!(rcode(&answer), ResponseCode::ServFail, "{name}: {answer:?}");
        assert!(answer.answers.is_empty(), "{name}: {answer:?}");
        assert_eq!(ede(&answer), None, "{name}");
    }
    // A chain that ends is still answered.
    let chain = query_udp(picket.addr, "chain1.plain.example", RecordType::A).await;
    assert_eq!(a_records(&chain), [std::net::Ipv4Addr::new(192, 0, 2, 99)]);
}

/// Answers of every kind a validating recursive Picket gives, for names
/// made with `i`: secure data and denials, bogus SERVFAIL, insecure data,
/// NXDOMAIN and NODATA, a CNAME loop.
async fn one_of_each_answer(addr: SocketAddr, i: usize) {
    let asked = [
        (
            "www.secure.example".to_string(),
            RecordType::A,
            ResponseCode::NoError,
        ),
        (
            format!("n{i}.secure.example"),
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            format!("n{i}.bogus.example"),
            RecordType::A,
            ResponseCode::ServFail,
        ),
        (
            "www.plain.example".to_string(),
            RecordType::A,
            ResponseCode::NoError,
        ),
        (
            format!("n{i}.plain.example"),
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            format!("n{i}.hops.example"),
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            "www.plain.example".to_string(),
            RecordType::MX,
            ResponseCode::NoError,
        ),
        (
            "self.plain.example".to_string(),
            RecordType::A,
            ResponseCode::ServFail,
        ),
    ];
    for (name, rtype, expected) in asked {
        let answer = query_udp(addr, &name, rtype).await;
        assert_eq!(rcode(&answer), expected, "{name} {rtype}: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recursive_queries_log_nothing_per_query() {
    let (secure, bogus, anchors) = island_zones(None);
    let servers = tree_servers(&secure, &bogus);
    let dir = TempDir::new("quiet");
    std::fs::write(dir.0.join("hints"), "a.root.tree. 3600 IN A 127.0.0.20\n").unwrap();
    std::fs::write(dir.0.join("anchors"), anchors).unwrap();
    let mut options = PicketProcess::options();
    options
        .args(&["--recursive", "--allow-private-nameservers", "--no-policy"])
        .threads(1)
        .flag("--root-hints", dir.0.join("hints"))
        .flag("--trust-anchor", dir.0.join("anchors"));
    for server in &servers {
        let port = format!("{}={}", server.addr().ip(), server.addr().port());
        options.flag("--nameserver-port", port);
    }
    let stderr = dir.0.join("stderr");
    let picket = options.spawn_logging_to(&stderr);
    wait_until_answering(picket.addr).await;
    one_of_each_answer(picket.addr, 0).await;
    let lines = || std::fs::read_to_string(&stderr).unwrap();
    let after_one = lines();
    assert!(
        after_one.contains("starting picket"),
        "the log is captured: {after_one}"
    );
    for i in 1..20 {
        one_of_each_answer(picket.addr, i).await;
    }
    let log = lines();
    drop(picket);
    // Whatever one round logged (start-up), 19 more rounds log nothing.
    assert_eq!(
        log.lines().count(),
        after_one.lines().count(),
        "per-query log lines: {}",
        &log[after_one.len()..]
    );
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "warnings: {warnings:#?}");
}

/// Unbound on the same tree, each zone a stub on its server's port.
struct Unbound {
    _child: KillOnDrop,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Unbound {
    fn start(tree: &Tree) -> Unbound {
        let dir = TempDir::new("unbound");
        let port = free_port();
        let anchors = dir.0.join("anchors");
        std::fs::write(&anchors, tree.anchors.clone().unwrap_or_default()).unwrap();
        let at = |i: usize| {
            let a: SocketAddr = tree.servers[i].addr();
            format!("{}@{}", a.ip(), a.port())
        };
        let stubs = [
            (".", 0),
            ("example.", 1),
            ("secure.example.", 2),
            ("bogus.example.", 3),
            ("plain.example.", 4),
            ("hops.example.", 4),
        ]
        .map(|(zone, i)| format!("stub-zone:\n  name: \"{zone}\"\n  stub-addr: {}\n", at(i)))
        .concat();
        let server = format!(
            "  interface: 127.0.0.1\n  port: {port}\n  do-not-query-localhost: no\n  \
             module-config: \"validator iterator\"\n  trust-anchor-file: \"{anchors}\"\n  \
             verbosity: 0\n{stubs}",
            anchors = anchors.display(),
        );
        Unbound {
            _child: start_unbound(&dir.0, &server),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs Unbound (/usr/sbin/unbound, Debian package unbound) beside Picket"]
async fn unbound_and_picket_agree_on_the_tree() {
    let tree = Tree::islands();
    let unbound = Unbound::start(&tree);
    wait_until_answering(unbound.addr).await;
    let names = [
        "www.plain.example",
        "www.secure.example",
        "nope.secure.example",
        "www.bogus.example",
        "to-secure.plain.example",
        "chain1.plain.example",
        "nodata.plain.example",
        "nx.plain.example",
        "loop-a.plain.example",
        "self.plain.example",
        "hop1.old.plain.example",
        "x.loop.plain.example",
        "www.dn.secure.example",
    ];
    let others = [
        ("www.plain.example", RecordType::AAAA),
        ("www.secure.example", RecordType::TXT),
        ("plain.example", RecordType::NS),
        ("plain.example", RecordType::SOA),
        ("secure.example", RecordType::DNSKEY),
        ("secure.example", RecordType::DS),
        ("example", RecordType::NS),
        // RRSIGs asked for under a DNAME: a client without DO gets those of
        // the target, not the DNAME's.
        ("www.dn.secure.example", RecordType::RRSIG),
        ("nope.secure.example", RecordType::RRSIG),
    ];
    let questions = names
        .iter()
        .map(|&name| (name, RecordType::A))
        .chain(others);
    let mut differences = Vec::new();
    for (name, rtype) in questions {
        // (DO, CD): a validating stub, a plain stub, a stub that checks for itself.
        for (dnssec_ok, cd) in [(true, false), (false, false), (true, true)] {
            let query = QueryBuilder::new(name, rtype)
                .dnssec_ok(dnssec_ok)
                .cd(cd)
                .to_bytes();
            let ours = reading(send_udp_raw(tree.picket.addr, &query).await.as_deref());
            let theirs = reading(send_udp_raw(unbound.addr, &query).await.as_deref());
            assert!(ours.starts_with("rcode"), "{name}: Picket answers: {ours}");
            if ours != theirs {
                differences.push(format!(
                    "== {name} {rtype} DO={dnssec_ok} CD={cd}\n-- Picket:\n{ours}\n-- Unbound:\n{theirs}"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_nsec_at_a_dname_denies_nothing_below_it() {
    let tree = Tree::islands();
    // nope.secure.example's NXDOMAIN carries the NSEC of dn.secure.example
    // (the DNAME's owner), which RFC 8198 keeps; RFC 6840 §4.1: it proves
    // nothing about the names below the DNAME.
    let nx = tree.ask("nope.secure.example", RecordType::A).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    let answer = tree.ask("www.dn.secure.example", RecordType::A).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(a_records(&answer), [std::net::Ipv4Addr::new(192, 0, 2, 22)]);
    assert!(answer.metadata.authentic_data, "{answer:?}");
}

/// A CNAME question about a name under a signed DNAME: the DNAME applies
/// (RFC 6672 §3.1), so the answer carries it, its RRSIGs (which vouch for
/// the unsigned CNAME it synthesizes) and that CNAME, and then what the new
/// name has: a CNAME there would be given, not followed; www.secure.example
/// has none (NODATA), and the answer is secure (the CNAME asked for, which
/// the DNAME vouches for); a new name that does not exist makes it
/// NXDOMAIN, judged there. (The answer was
/// once the bare synthesized CNAME, which the validator rightly took for an
/// unsigned RRset in a signed zone: SERVFAIL, EDE 10.) Under an unsigned
/// DNAME onto a CNAME, that CNAME is the last record.
#[tokio::test(flavor = "multi_thread")]
async fn a_cname_question_under_a_signed_dname_gets_the_dname_and_is_secure() {
    let tree = Tree::islands();
    let answer = tree.ask("www.dn.secure.example", RecordType::CNAME).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{:?}", ede(&answer));
    assert!(answer.metadata.authentic_data, "secure: {answer:?}");
    assert_eq!(
        answer_lines(&answer),
        [
            "dn.secure.example. DNAME secure.example.",
            "www.dn.secure.example. CNAME www.secure.example.",
        ]
    );
    assert!(has_rrsig(&answer), "the DNAME's RRSIG for a DO client");
    // Without DO: the same records, no RRSIG, no AD.
    let plain = query_with(
        &tree.picket,
        QueryBuilder::new("www.dn.secure.example", RecordType::CNAME),
    )
    .await;
    assert_eq!(rcode(&plain), ResponseCode::NoError);
    assert_eq!(answer_lines(&plain), answer_lines(&answer));
    assert!(
        !has_rrsig(&plain) && !plain.metadata.authentic_data,
        "{plain:?}"
    );
    // A new name that does not exist: its rcode (RFC 6604), proven.
    let nx = tree.ask("nope.dn.secure.example", RecordType::CNAME).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{:?}", ede(&nx));
    assert!(nx.metadata.authentic_data, "{nx:?}");
    let onto_cname = tree.ask("hop1.old.plain.example", RecordType::CNAME).await;
    assert_eq!(
        answer_lines(&onto_cname),
        [
            "old.plain.example. DNAME hops.example.",
            "hop1.old.plain.example. CNAME hop1.hops.example.",
            "hop1.hops.example. CNAME hop3.hops.example.",
        ],
        "{onto_cname:?}"
    );
}

/// An RRSIG question about a name that does not exist: the NXDOMAIN's proof
/// is judged as for any question, and is secure (AD), as Unbound has it.
/// (An answer of RRSIGs holds nothing to check: it stays without AD.)
#[tokio::test(flavor = "multi_thread")]
async fn a_denial_of_an_rrsig_question_is_judged_like_any_other() {
    let tree = Tree::islands();
    // Asked directly, and through a DNAME (whose RRSIG is then in the answer).
    for name in ["nope.secure.example", "nope.dn.secure.example"] {
        let nx = tree.ask(name, RecordType::RRSIG).await;
        assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{name}: {nx:?}");
        assert!(nx.metadata.authentic_data, "{name}: secure denial: {nx:?}");
    }
    let sigs = tree.ask("www.secure.example", RecordType::RRSIG).await;
    assert_eq!(rcode(&sigs), ResponseCode::NoError, "{sigs:?}");
    assert!(
        has_rrsig(&sigs) && !sigs.metadata.authentic_data,
        "{sigs:?}"
    );
}
