//! Picket as a forwarder against Unbound as a forwarder, side by side: both
//! forward to the same in-process authority, get the same queries over UDP
//! and TCP (the usual record types, negative answers, a CNAME chain across
//! zones and a CNAME loop, a wildcard, an answer too large for the client's
//! buffer, and the odd queries of the protocol: other opcodes, EDNS
//! versions and options, no question or two, malformed queries, a response
//! sent as a query), and must answer them alike in what a client reads
//! ([`common::reading`]). Where the two part by design, the case says why
//! and checks Picket's side ([`Expect`]).
//!
//! `#[ignore]`d: it runs Debian's `unbound`; `.ci/run` installs it.

mod common;

use std::net::SocketAddr;

use common::*;
use hickory_proto::op::OpCode;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::RecordType;

const ZONE: &str = r#"example.test 300 IN SOA ns1.example.test hostmaster.example.test 1 7200 900 1209600 60
example.test          300 IN NS  ns1.example.test
ns1.example.test      300 IN A   192.0.2.53
www.example.test      300 IN A   192.0.2.1
www.example.test      300 IN A   192.0.2.2
www.example.test      300 IN AAAA 2001:db8::1
mail.example.test     300 IN MX  10 mx1.example.test
txt.example.test      300 IN TXT "hello world"
_dns._udp.example.test 300 IN SRV 0 5 53 ns1.example.test
ptr.example.test      300 IN PTR www.example.test
example.test          300 IN CAA 0 issue "ca.example.net"
a.b.c.example.test    300 IN A   192.0.2.7
*.wild.example.test   300 IN A   192.0.2.8
chain.example.test     60 IN CNAME alias.other.test.
loop1.example.test     60 IN CNAME loop2.example.test.
loop2.example.test     60 IN CNAME loop1.example.test.
other.test   600 IN SOA ns1.other.test hostmaster.other.test 1 7200 900 1209600 30
other.test   600 IN NS  ns1.other.test
ns1.other.test    600 IN A   192.0.2.54
alias.other.test   60 IN CNAME target.other.test
target.other.test  45 IN A     198.51.100.7
"#;

/// A TXT RRset of about 1,600 bytes: more than fits in 512 or 1232.
fn big_txt() -> String {
    let long = "x".repeat(200);
    (0..8)
        .map(|i| format!("big.example.test 300 IN TXT \"{i}{long}\"\n"))
        .collect()
}

/// Unbound on a free port, forwarding everything to `upstream`, without
/// validation (the test zones are unsigned), as Picket is started.
fn start_unbound_forwarder(upstream: SocketAddr) -> (KillOnDrop, SocketAddr) {
    let dir = temp_dir("unbound-forwarder");
    let port = free_port();
    let server = format!(
        "  interface: 127.0.0.1\n  port: {port}\n  do-not-query-localhost: no\n  \
         module-config: \"iterator\"\n  local-zone: \"test.\" nodefault\n  verbosity: 0\n  \
         access-control: 127.0.0.0/8 allow\n\
         forward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n",
        upstream.ip(),
        upstream.port(),
    );
    let unbound = common::process::start_unbound(&dir, &server);
    (unbound, format!("127.0.0.1:{port}").parse().unwrap())
}

/// Picket and Unbound, both forwarding to one authority of [`ZONE`].
struct SideBySide {
    _upstream: Authority,
    picket: Picket,
    _unbound: KillOnDrop,
    unbound: SocketAddr,
}

impl SideBySide {
    async fn start() -> SideBySide {
        let upstream = Authority::start(&format!("{ZONE}{}", big_txt()));
        let picket = start_picket(&[upstream.addr()]);
        let (_unbound, unbound) = start_unbound_forwarder(upstream.addr());
        wait_until_answering(unbound).await;
        SideBySide {
            _upstream: upstream,
            picket,
            _unbound,
            unbound,
        }
    }
}

/// One query, by name: what it is, its bytes, and how the two answers
/// compare.
struct Case {
    what: String,
    bytes: Vec<u8>,
    expect: Expect,
}

/// How Picket's answer compares with Unbound's.
#[derive(Clone, Copy)]
enum Expect {
    /// Read alike.
    Same,
    /// Alike but for RA in an error Picket makes itself (FORMERR, NOTIMP,
    /// REFUSED): Picket sets it, since it offers recursion to this client
    /// (RFC 1035 §4.1.1); Unbound clears it in those errors.
    SameButRa,
    /// A chosen difference: Picket's reading has this line, and why.
    Differs(&'static str, &'static str),
    /// Over UDP Picket truncates (TC=1) where Unbound does not, and why;
    /// over TCP, where nothing is truncated, the two read alike.
    PicketTruncates(&'static str),
    /// The same RCODE, the rest different, and why.
    SameRcode(&'static str),
}

fn case(what: &str, query: QueryBuilder) -> Case {
    raw(what, query.to_bytes())
}

fn raw(what: &str, bytes: Vec<u8>) -> Case {
    Case {
        what: what.into(),
        bytes,
        expect: Expect::Same,
    }
}

impl Case {
    fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    /// Where the two readings part, or None when they compare as expected.
    fn difference(&self, ours: &str, theirs: &str) -> Option<String> {
        let agree = match self.expect {
            Expect::Same => ours == theirs,
            Expect::SameButRa => without_ra(ours) == without_ra(theirs),
            Expect::Differs(line, _) => ours.lines().any(|l| l.contains(line)),
            Expect::PicketTruncates(_) => ours.lines().any(|l| l.contains("tc true")),
            Expect::SameRcode(_) => rcode_words(ours) == rcode_words(theirs),
        };
        let why = match self.expect {
            Expect::Differs(line, why) => format!(" (Picket's should read \"{line}\": {why})"),
            Expect::PicketTruncates(why) => format!(" (Picket's should be truncated: {why})"),
            Expect::SameRcode(why) => format!(" (the RCODEs should agree: {why})"),
            _ => String::new(),
        };
        (!agree).then(|| {
            format!(
                "== {}{why}\n-- Picket:\n{ours}\n-- Unbound:\n{theirs}",
                self.what
            )
        })
    }

    /// Whether the case is a query a TCP client would send: a response
    /// sent as a query gets no answer to wait for.
    fn over_tcp(&self) -> bool {
        self.bytes[2] & 0x80 == 0
    }
}

impl Expect {
    /// Over TCP no answer is truncated: a size difference is none there.
    fn over_tcp(self) -> Expect {
        match self {
            Expect::PicketTruncates(_) => Expect::Same,
            other => other,
        }
    }
}

/// What a client reads of `server`'s answer to `query`.
async fn ask(server: SocketAddr, query: &[u8], tcp: bool) -> String {
    let answer = match tcp {
        false => send_udp_raw(server, query).await,
        true => tcp_exchange(server, query).await,
    };
    reading(answer.as_deref())
}

/// One query over a fresh TCP connection: its answer, if one came.
async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let client = TcpClient::connect(server).await;
    client.send_frame(query).await;
    client.recv_raw().await
}

/// "rcode X", the first two words of a reading.
fn rcode_words(reading: &str) -> Vec<&str> {
    reading.split_whitespace().take(2).collect()
}

fn without_ra(reading: &str) -> String {
    reading
        .replacen(" ra true ", " ", 1)
        .replacen(" ra false ", " ", 1)
}

/// Why a malformed query's FORMERR reads differently.
const MALFORMED: &str = "both FORMERR (RFC 1035 §4.1.1; RFC 6891 §6.1.1 for two OPT records); \
    Unbound's echoes the malformed query after the header, Picket's has the header (and the \
    question when one could be read), without the malformed rest";

/// Why a query without RD is answered as one with it.
const RD_ZERO: &str = "Picket resolves a query without RD as one with it (a stub that \
    clears RD still gets its answer; what is cached shows no more than TTLs show anyway); \
    Unbound, whose access-control `allow` is not `allow_snoop`, refuses it";

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = [
        ("www.example.test", RecordType::A),
        ("www.example.test", RecordType::AAAA),
        ("mail.example.test", RecordType::MX),
        ("txt.example.test", RecordType::TXT),
        ("_dns._udp.example.test", RecordType::SRV),
        ("ptr.example.test", RecordType::PTR),
        ("example.test", RecordType::CAA),
        ("example.test", RecordType::NS),
        ("example.test", RecordType::SOA),
        ("nope.example.test", RecordType::A),
        ("www.example.test", RecordType::MX),
        ("b.c.example.test", RecordType::A),
        ("x.wild.example.test", RecordType::A),
        ("x.y.wild.example.test", RecordType::TXT),
        ("chain.example.test", RecordType::A),
        ("chain.example.test", RecordType::CNAME),
        ("alias.other.test", RecordType::AAAA),
        ("WwW.ExAmPlE.TeSt", RecordType::A),
        ("nope.other.test", RecordType::A),
        ("loop1.example.test", RecordType::A),
        ("example.test", RecordType::DNSKEY),
        ("example.test", RecordType::DS),
        ("www.example.test", RecordType::RRSIG),
        ("www.example.test", RecordType::Unknown(65280)),
        (".", RecordType::NS),
        ("elsewhere.invalid.example", RecordType::A),
    ]
    .into_iter()
    .map(|(name, rtype)| case(&format!("{name} {rtype}"), QueryBuilder::new(name, rtype)))
    .collect();
    let of_type =
        |name: &str, rtype| case(&format!("{name} {rtype}"), QueryBuilder::new(name, rtype));
    cases.extend([
        of_type("www.example.test", RecordType::ANY).expect(Expect::Differs(
            "HINFO RFC8482",
            "RFC 8482: ANY gets one synthesized HINFO, as Cloudflare's servers answer it; \
             Unbound forwards it unless deny-any is set",
        )),
        of_type("example.test", RecordType::AXFR).expect(Expect::SameButRa),
        of_type("www.example.test", RecordType::IXFR).expect(Expect::SameButRa),
    ]);
    let www = || QueryBuilder::new("www.example.test", RecordType::A);
    let big = || QueryBuilder::new("big.example.test", RecordType::TXT);
    cases.extend([
        case("www A, no EDNS", www().no_edns()),
        case("www A, DO=1", www().dnssec_ok(true)),
        case("www A, CD=1", www().cd(true)),
        case("www A, EDNS version 1", www().edns_version(1)),
        case(
            "www A, an unknown EDNS option",
            www().option(EdnsOption::Unknown(65001, vec![1, 2, 3])),
        ),
        case("big TXT, no EDNS (512)", big().no_edns()),
        case("big TXT, EDNS 1232", big()),
        case("big TXT, EDNS 4096", big().payload(4096)).expect(Expect::PicketTruncates(
            "over UDP Picket answers at most 1232 bytes whatever the client's EDNS size \
             (DNS Flag Day 2020, as BIND, Knot Resolver and PowerDNS Recursor do); \
             Unbound 1.17 fills the client's size",
        )),
        case("www A, DO=1 CD=1", www().dnssec_ok(true).cd(true)),
        case("www A, RD=0 (cached)", www().rd(false)).expect(Expect::Differs(
            "answer www.example.test. IN A 192.0.2.1",
            RD_ZERO,
        )),
        case(
            "uncached A, RD=0",
            QueryBuilder::new("never.example.test", RecordType::A).rd(false),
        )
        .expect(Expect::Differs("rcode NXDomain", RD_ZERO)),
        case(
            "www A, a client subnet option",
            www().option(EdnsOption::Unknown(8, vec![0, 1, 24, 0, 192, 0, 2])),
        ),
        case(
            "a 253-character name",
            QueryBuilder::new(
                &format!("{}example.test", "a23456789.".repeat(24)),
                RecordType::A,
            ),
        ),
        case("www A, opcode STATUS", www().op_code(OpCode::Status)).expect(Expect::SameButRa),
        case("www A, opcode NOTIFY", www().op_code(OpCode::Notify)).expect(Expect::Differs(
            "rcode NotImp",
            "Picket serves no zone a primary could notify (RFC 1996); Unbound \
             REFUSES it, as it would accept NOTIFY for an auth-zone it was told to",
        )),
        case("www A, opcode UPDATE", www().op_code(OpCode::Update)).expect(Expect::SameButRa),
    ]);
    let mut no_question = www().no_edns().to_bytes();
    no_question.truncate(12);
    no_question[5] = 0; // QDCOUNT 0
    cases.push(raw("no question", no_question).expect(Expect::SameButRa));
    let mut two_questions = www().no_edns().to_bytes();
    let question = two_questions[12..].to_vec();
    two_questions.extend_from_slice(&question);
    two_questions[5] = 2; // QDCOUNT 2
    cases.push(raw("two questions", two_questions).expect(Expect::Differs(
        "rcode FormErr",
        "both answer FORMERR (RFC 9619); Picket's names no question, Unbound's echoes both",
    )));
    let mut chaos = www().to_bytes();
    let class_at = 12 + "www.example.test".len() + 2 + 2;
    chaos[class_at + 1] = 3; // CLASS CH
    cases.push(raw("www A in class CH", chaos));
    let mut trailing = www().to_bytes();
    trailing.extend_from_slice(b"trailing bytes");
    cases.push(raw("www A with bytes after the message", trailing));
    let mut cut = www().no_edns().to_bytes();
    cut.truncate(20);
    cases.push(raw("a question cut inside its name", cut).expect(Expect::SameRcode(MALFORMED)));
    let mut pointer = www().no_edns().to_bytes();
    pointer.truncate(12);
    pointer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    cases.push(
        raw("a compression pointer as the question name", pointer)
            .expect(Expect::SameRcode(MALFORMED)),
    );
    let mut two_opts = www().to_bytes();
    let opt = two_opts[two_opts.len() - 11..].to_vec();
    two_opts.extend_from_slice(&opt);
    two_opts[11] = 2; // ARCOUNT 2
    cases.push(raw("www A with two OPT records", two_opts).expect(Expect::SameRcode(MALFORMED)));
    let mut flags = www().to_bytes();
    flags[2] |= 0x02; // TC
    flags[3] |= 0x40; // Z
    cases.push(
        raw("www A with TC and Z set in the query", flags).expect(Expect::Differs(
            "answer www.example.test. IN A 192.0.2.1",
            "Picket answers, ignoring the two bits (Z must be zero and a receiver ignores \
             it, RFC 1035 §4.1.1; TC means nothing in a query); Unbound 1.17 answers FORMERR",
        )),
    );
    let mut response = www().to_bytes();
    response[2] |= 0x80; // QR=1: a response, which a server must not answer
    cases.push(raw("a response sent as a query", response));
    cases
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs Unbound (/usr/sbin/unbound, Debian package unbound) beside Picket"]
async fn picket_forwards_as_unbound_does() {
    let pair = SideBySide::start().await;
    let (picket, unbound) = (&pair.picket, pair.unbound);
    let mut differences = Vec::new();
    let mut answered = 0;
    for tcp in [false, true] {
        // Over TCP the size limit is gone: the large answers agree there.
        let cases = cases().into_iter().filter(|c| !tcp || c.over_tcp());
        for case in cases {
            let ours = ask(picket.addr, &case.bytes, tcp).await;
            let theirs = ask(unbound, &case.bytes, tcp).await;
            answered += usize::from(ours.starts_with("rcode"));
            let case = match tcp {
                false => case,
                true => Case {
                    what: format!("{} over TCP", case.what),
                    expect: case.expect.over_tcp(),
                    ..case
                },
            };
            differences.extend(case.difference(&ours, &theirs));
        }
    }
    // All but the response sent as a query, over both transports: a
    // Picket that answered nothing would agree with an Unbound that did not
    // either.
    assert_eq!(answered, 2 * (cases().len() - 1), "answers from Picket");
    assert!(
        differences.is_empty(),
        "{} cases differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// 600 random queries (a fixed seed) asked of both: names of the zones and
/// not, in mixed case, of the common types, the DNSSEC types, unknown,
/// meta and obsolete ones, in classes IN, CH and *, with and without EDNS
/// (payloads 512 to 4096), DO, CD and NSID. They read alike but for the
/// differences [`picket_forwards_as_unbound_does`] names: ANY, QCLASS *,
/// RA in errors Picket makes itself.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs Unbound (/usr/sbin/unbound, Debian package unbound) beside Picket"]
async fn random_queries_read_as_unbounds() {
    use rand::{Rng, SeedableRng};
    let pair = SideBySide::start().await;
    let (picket, unbound) = (&pair.picket, pair.unbound);
    let mut rng = rand::rngs::StdRng::seed_from_u64(24);
    let names = [
        "www.example.test",
        "example.test",
        "nope.example.test",
        "a.b.c.example.test",
        "b.c.example.test",
        "x.wild.example.test",
        "wild.example.test",
        "chain.example.test",
        "alias.other.test",
        "target.other.test",
        "other.test",
        "big.example.test",
        "mail.example.test",
        "txt.example.test",
        "ns1.example.test",
        "loop1.example.test",
        "x.y.z.nope.other.test",
        "_dns._udp.example.test",
    ];
    let types: [u16; 24] = [
        1, 2, 5, 6, 12, 15, 16, 28, 33, 43, 46, 47, 48, 50, 257, 13, 99, 0, 65535, 65280, 251, 252,
        255, 41,
    ];
    let classes: [u16; 5] = [1, 1, 1, 3, 255];
    let mut differences = Vec::new();
    let mut answered = 0;
    const ASKED: usize = 600;
    for _ in 0..ASKED {
        let name: String = names[rng.random_range(0..names.len())]
            .chars()
            .map(|c| {
                if rng.random_bool(0.3) {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let rtype = types[rng.random_range(0..types.len())];
        let mut query = QueryBuilder::new(&name, RecordType::from(rtype));
        if rng.random_bool(0.2) {
            query = query.no_edns();
        } else {
            query = query
                .payload([512, 1232, 1400, 4096][rng.random_range(0..4)])
                .dnssec_ok(rng.random_bool(0.3));
            if rng.random_bool(0.2) {
                query = query.nsid();
            }
        }
        query = query.cd(rng.random_bool(0.2));
        let mut bytes = query.to_bytes();
        let class = classes[rng.random_range(0..classes.len())];
        let at = 12 + name.len() + 2 + 2;
        bytes[at..at + 2].copy_from_slice(&class.to_be_bytes());
        let ours = ask(picket.addr, &bytes, false).await;
        let theirs = ask(unbound, &bytes, false).await;
        // Every one is a query: an unanswered one would agree with an
        // Unbound that did not answer either.
        answered += usize::from(ours.starts_with("rcode"));
        // RA may differ in errors Picket makes itself ([`Expect::SameButRa`]).
        let same = without_ra(&ours) == without_ra(&theirs);
        let agree = match (rtype, class) {
            // ANY: the RFC 8482 answer here, Unbound forwards it.
            (255, 1) => ours.contains("HINFO RFC8482"),
            // QCLASS * (RFC 1035 §3.2.5): refused here, as every class but
            // IN and CHAOS; Unbound forwards it.
            (_, 255) => same || ours.starts_with("rcode Refused"),
            _ => same,
        };
        if !agree {
            differences.push(format!(
                "== {name} type {rtype} class {class}\n-- Picket:\n{ours}\n-- Unbound:\n{theirs}"
            ));
        }
    }
    assert_eq!(answered, ASKED, "answers from Picket");
    assert!(
        differences.is_empty(),
        "{} of {ASKED} differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
