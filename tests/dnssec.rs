//! DNSSEC validation of forwarded answers (issue 16, "Forwarding never
//! validates"), as a client meets it: Picket forwards to a stand-in
//! recursive resolver ([`TreeUpstream`]) holding a fake tree signed in
//! process (ECDSA P-256), with the fake root's key as `--trust-anchor`.
//! Secure answers get AD (for DO or AD clients) and RRSIGs (for DO clients
//! only); bogus ones SERVFAIL with the Extended DNS Error that says why;
//! insecure ones are answered without AD; the upstream's AD is never passed on.

mod common;

use std::net::Ipv4Addr;

use ::picket::config::Settings;
use ::picket::upstream::DnssecMode;
use base64::Engine;
use common::sign::ZoneKey;
use common::*;
use hickory_proto::dnssec::rdata::DNSKEY;
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKeyBuf};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

const SOA_TAIL: &str = "3600 IN SOA ns.invalid. hostmaster.invalid. 1 7200 900 1209600 60";

/// `secure.` as served: SOA, NS, an address, a CNAME, a TXT-only name, and
/// an empty non-terminal (`ent.`).
fn secure_zone(zone: &str) -> String {
    format!(
        "{zone} {SOA_TAIL}
         {zone} 3600 IN NS ns.invalid.
         www.{zone} 300 IN A 192.0.2.1
         alias.{zone} 300 IN CNAME www.{zone}
         txt.{zone} 300 IN TXT \"only-text\"
         a.ent.{zone} 300 IN A 192.0.2.9"
    )
}

/// The fake root: signed by `root`, delegating `secure.` with `secure_ds`,
/// and `insecure.` and `alg.` (DS lines given) as listed.
fn root_zone(root: &ZoneKey, delegations: &[(&str, Option<String>)]) -> String {
    let mut text = format!(". {SOA_TAIL}\n. 3600 IN NS ns.invalid.\n");
    for (zone, ds) in delegations {
        text.push_str(&format!("{zone} 3600 IN NS ns.invalid.\n"));
        if let Some(ds) = ds {
            text.push_str(ds);
            text.push('\n');
        }
    }
    root.sign(&text)
}

/// Picket forwarding to `upstream`, validating with `anchor` (zone-file text).
fn validating_picket(upstream: &TreeUpstream, anchor: &str, nta: &[&str]) -> Picket {
    let mut settings: Settings = test_settings(&[upstream.addr()]);
    settings.dnssec = DnssecMode::Validate;
    settings.trust_anchor = Some(anchor.to_string());
    settings.negative_trust_anchors = nta.iter().map(|z| Name::from_ascii(z).unwrap()).collect();
    start_picket_with(settings)
}

/// A signed tree: root → `secure.` (signed, DS), `insecure.` (unsigned, no
/// DS). `edit` may change the signed `secure.` text before it is served.
struct Tree {
    upstream: TreeUpstream,
    picket: Picket,
    /// The root's DS line, the trust anchor.
    root_anchor: String,
}

impl Tree {
    /// A forwarding Picket in front of `upstream`, anchored at `root`'s key.
    fn validating(upstream: TreeUpstream, root: &ZoneKey, nta: &[&str]) -> Tree {
        let root_anchor = root.ds_line();
        let picket = validating_picket(&upstream, &root_anchor, nta);
        Tree {
            upstream,
            picket,
            root_anchor,
        }
    }
}

fn tree_with(edit: impl Fn(String) -> String, nta: &[&str]) -> Tree {
    let root = ZoneKey::generate(".");
    let secure = ZoneKey::generate("secure.");
    let secure_text = edit(secure.sign(&secure_zone("secure.")));
    let root_text = root_zone(
        &root,
        &[("secure.", Some(secure.ds_line())), ("insecure.", None)],
    );
    let upstream = TreeUpstream::start(&[root_text, secure_text, secure_zone("insecure.")]);
    Tree::validating(upstream, &root, nta)
}

fn tree() -> Tree {
    tree_with(|t| t, &[])
}

async fn ask(picket: &Picket, name: &str, rtype: RecordType, dnssec_ok: bool, ad: bool) -> Message {
    let mut query = QueryBuilder::new(name, rtype).dnssec_ok(dnssec_ok).build();
    query.metadata.authentic_data = ad;
    send_udp(picket.addr, &query)
        .await
        .unwrap_or_else(|| panic!("no answer for {name} {rtype}"))
}

/// `name` A with DO=1 and CD=1 (checking disabled).
async fn ask_unchecked(picket: &Picket, name: &str) -> Message {
    let query = QueryBuilder::new(name, RecordType::A)
        .dnssec_ok(true)
        .cd(true)
        .build();
    send_udp(picket.addr, &query)
        .await
        .unwrap_or_else(|| panic!("no answer for {name} A with CD"))
}

/// Asserts that `answer` has rcode `want` and is secure (AD set).
fn assert_secure(answer: &Message, want: ResponseCode) {
    assert_eq!(rcode(answer), want, "{answer:?}");
    assert!(answer.metadata.authentic_data, "no AD: {answer:?}");
}

fn has_type(records: &[hickory_proto::rr::Record], rtype: RecordType) -> bool {
    records.iter().any(|r| r.record_type() == rtype)
}

/// The lines of `text` without the RRSIG covering `rtype` at `owner`.
fn without_rrsig(text: &str, owner: &str, rtype: &str) -> String {
    text.lines()
        .filter(|l| !is_rrsig_of(l, owner, rtype))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_rrsig_of(line: &str, owner: &str, rtype: &str) -> bool {
    let f: Vec<&str> = line.split_whitespace().collect();
    f.len() > 4 && f[0] == owner && f[3] == "RRSIG" && f[4] == rtype
}

/// `text` with the signature of `owner`/`rtype`'s RRSIG damaged.
fn corrupt_rrsig(text: &str, owner: &str, rtype: &str) -> String {
    text.lines()
        .map(|l| {
            if !is_rrsig_of(l, owner, rtype) {
                return l.to_string();
            }
            let (head, sig) = l.rsplit_once(' ').unwrap();
            let mut bytes = base64::engine::general_purpose::STANDARD
                .decode(sig)
                .unwrap();
            bytes[10] ^= 0xff;
            format!(
                "{head} {}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secure_answer_gets_ad_and_rrsigs_only_for_clients_that_ask() {
    let t = tree();
    let with_do = ask(&t.picket, "www.secure", RecordType::A, true, false).await;
    assert_eq!(rcode(&with_do), ResponseCode::NoError, "{with_do:?}");
    assert!(
        with_do.metadata.authentic_data,
        "AD for a DO client: {with_do:?}"
    );
    assert!(
        has_type(&with_do.answers, RecordType::RRSIG),
        "RRSIG for DO: {with_do:?}"
    );
    assert_eq!(a_records(&with_do), [Ipv4Addr::new(192, 0, 2, 1)]);

    let ad_only = ask(&t.picket, "www.secure", RecordType::A, false, true).await;
    assert!(
        ad_only.metadata.authentic_data,
        "AD for an AD client: {ad_only:?}"
    );
    assert!(
        !has_type(&ad_only.answers, RecordType::RRSIG),
        "no RRSIG without DO: {ad_only:?}"
    );

    let plain = ask(&t.picket, "www.secure", RecordType::A, false, false).await;
    assert!(
        !plain.metadata.authentic_data,
        "no AD for a plain client: {plain:?}"
    );
    assert!(!has_type(&plain.answers, RecordType::RRSIG), "{plain:?}");
    assert_eq!(a_records(&plain), [Ipv4Addr::new(192, 0, 2, 1)]);

    // Picket asked its upstream with DO=1 CD=1 even for the plain client.
    let asked = t.upstream.received();
    let www: Vec<&Message> = asked
        .iter()
        .filter(|q| {
            q.queries[0]
                .name()
                .to_ascii()
                .eq_ignore_ascii_case("www.secure.")
        })
        .collect();
    assert!(!www.is_empty());
    for q in www {
        assert!(q.metadata.checking_disabled, "CD=1 upstream: {q:?}");
        assert!(
            q.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            "DO=1 upstream: {q:?}"
        );
    }
}

/// `ds_line` (`owner TTL IN DS tag alg digest-type hex`) with field `i`
/// replaced by `value`.
fn with_ds_field(ds_line: &str, i: usize, value: &str) -> String {
    let mut fields: Vec<&str> = ds_line.split_whitespace().collect();
    fields[i] = value;
    fields.join(" ")
}

/// A DS names its key by algorithm and key tag as well as by digest (RFC
/// 4034 §5.1): a trust anchor, or a parent's DS, whose digest is the key's
/// but whose algorithm or tag is not, vouches for nothing, and the answers
/// are bogus, as Unbound has them (Deckard's val_minimal_baddsalgorithm,
/// val_minimal_baddskeytag). They were secure.
#[tokio::test(flavor = "multi_thread")]
async fn a_ds_whose_algorithm_or_key_tag_is_not_the_keys_vouches_for_nothing() {
    let root = ZoneKey::generate(".");
    let secure = ZoneKey::generate("secure.");
    let root_tag: u16 = root
        .ds_line()
        .split_whitespace()
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    let tag = (root_tag ^ 1).to_string();
    for anchor in [
        with_ds_field(&root.ds_line(), 5, "8"),
        with_ds_field(&root.ds_line(), 4, &tag),
    ] {
        let root_text = root_zone(&root, &[("secure.", Some(secure.ds_line()))]);
        let secure_text = secure.sign(&secure_zone("secure."));
        let upstream = TreeUpstream::start(&[root_text, secure_text]);
        let picket = validating_picket(&upstream, &anchor, &[]);
        let answer = ask(&picket, "www.secure", RecordType::A, true, false).await;
        assert_eq!(
            rcode(&answer),
            ResponseCode::ServFail,
            "{anchor}: {answer:?}"
        );
    }
    // The parent's DS for secure. with the wrong algorithm: secure. is bogus.
    let wrong_alg = with_ds_field(&secure.ds_line(), 5, "8");
    let root_text = root_zone(&root, &[("secure.", Some(wrong_alg))]);
    let upstream = TreeUpstream::start(&[root_text, secure.sign(&secure_zone("secure."))]);
    let picket = validating_picket(&upstream, &root.ds_line(), &[]);
    let answer = ask(&picket, "www.secure", RecordType::A, true, false).await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cname_in_a_secure_zone_is_secure() {
    let t = tree();
    let answer = ask(&t.picket, "alias.secure", RecordType::A, true, false).await;
    assert_secure(&answer, ResponseCode::NoError);
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_signature_is_servfail_with_ede_6() {
    let t = tree_with(|text| corrupt_rrsig(&text, "www.secure.", "A"), &[]);
    let answer = ask(&t.picket, "www.secure", RecordType::A, true, false).await;
    let (code, text) = servfail_ede(&answer);
    assert_eq!(code, 6, "DNSSEC Bogus: {text}");
    assert!(text.contains("www.secure"), "names the RRset: {text}");
    assert!(answer.answers.is_empty());
    // The verdict is remembered: the next query is answered without asking again.
    let before = t.upstream.received().len();
    let again = ask(&t.picket, "www.secure", RecordType::A, true, false).await;
    assert_eq!(rcode(&again), ResponseCode::ServFail);
    assert_eq!(ede(&again).map(|e| e.0), Some(6));
    assert_eq!(t.upstream.received().len(), before, "bogus verdict cached");
}

/// A negative answer's SOA is judged with its proof: one whose RRSIG does
/// not verify makes the NXDOMAIN and the NODATA bogus, though their NSEC
/// proofs are good (Deckard's val_bogus_nodata). They were secure.
#[tokio::test(flavor = "multi_thread")]
async fn a_negative_answer_with_a_bad_soa_signature_is_bogus() {
    let t = tree_with(|text| corrupt_rrsig(&text, "secure.", "SOA"), &[]);
    for (name, rtype) in [
        ("nope.secure", RecordType::A),
        ("www.secure", RecordType::TXT),
    ] {
        let answer = ask(&t.picket, name, rtype, true, false).await;
        let (code, text) = servfail_ede(&answer);
        assert_eq!(code, 6, "{name} {rtype}: {text}");
        assert!(text.contains("SOA"), "names the RRset: {text}");
    }
    let fine = ask(&t.picket, "www.secure", RecordType::A, true, false).await;
    assert_secure(&fine, ResponseCode::NoError);
}

/// A tree where only www.secure's A RRSIG comes from a signing with the
/// window `validity` (seconds from now); the rest is signed normally.
fn tree_with_window(validity: (i64, i64)) -> Tree {
    let root = ZoneKey::generate(".");
    let secure = ZoneKey::generate("secure.");
    let good = secure.sign(&secure_zone("secure."));
    let odd_key = secure.with_validity(validity.0, validity.1);
    let odd = odd_key.sign(&secure_zone("secure."));
    let odd_sig: Vec<&str> = odd
        .lines()
        .filter(|l| is_rrsig_of(l, "www.secure.", "A"))
        .collect();
    let text = format!(
        "{}\n{}",
        without_rrsig(&good, "www.secure.", "A"),
        odd_sig.join("\n")
    );
    let root_text = root_zone(&root, &[("secure.", Some(odd_key.ds_line()))]);
    let upstream = TreeUpstream::start(&[root_text, text]);
    Tree::validating(upstream, &root, &[])
}

/// Asserts that `answer` is SERVFAIL carrying an Extended DNS Error; its code and text.
#[track_caller]
fn servfail_ede(answer: &Message) -> (u16, String) {
    assert_eq!(rcode(answer), ResponseCode::ServFail, "{answer:?}");
    ede(answer).expect("an EDE says why")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_signature_is_servfail_with_ede_7() {
    // A window that closed yesterday.
    let t = tree_with_window((-864_000, -86_400));
    let answer = ask(&t.picket, "www.secure", RecordType::A, true, false).await;
    let (code, text) = servfail_ede(&answer);
    assert_eq!(code, 7, "Signature Expired: {text}");
    // The rest of the zone is fine.
    let other = ask(&t.picket, "txt.secure", RecordType::TXT, true, false).await;
    assert_secure(&other, ResponseCode::NoError);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secure_answer_is_kept_no_longer_than_its_signature_lasts() {
    // RFC 4035 §5.3.3: www.secure. A has a TTL of 300, its RRSIG expires in
    // 120 s. Served with AD and at most 120 s, the RRSIG as well; a
    // client with DO=0 (another cache key) alike.
    // Forwarding, then recursion from the same tree.
    let t = tree_with_window((-3_600, 120));
    let recursive = recursive_picket(&t.upstream, &t.root_anchor);
    for (mode, picket) in [("forwarding", &t.picket), ("recursive", &recursive)] {
        for dnssec_ok in [true, false] {
            let answer = ask(picket, "www.secure", RecordType::A, dnssec_ok, true).await;
            assert_secure(&answer, ResponseCode::NoError);
            let ttls: Vec<u32> = answer.answers.iter().map(|r| r.ttl).collect();
            assert!(!ttls.is_empty(), "{mode}: {answer:?}");
            assert!(
                ttls.iter().all(|&ttl| (60..=120).contains(&ttl)),
                "{mode}, DO={dnssec_ok}: TTLs {ttls:?}, the signature lasts 120 s"
            );
        }
        // A name whose signature lasts past its TTL keeps its TTL.
        let other = ask(picket, "txt.secure", RecordType::TXT, true, true).await;
        assert_secure(&other, ResponseCode::NoError);
        assert!(
            other.answers.iter().all(|r| r.ttl > 120),
            "{mode}: {other:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secure_answer_is_kept_no_longer_than_its_original_ttl() {
    // RFC 4035 §5.3.3: txt.secure. TXT and its RRSIG come with a TTL of a
    // day, but the RRSIG's original TTL field says 300.
    let raised = |text: String| {
        text.lines()
            .map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                ["txt.secure.", "300", ..] => l.replacen(" 300 ", " 86400 ", 1),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let t = tree_with(raised, &[]);
    let recursive = recursive_picket(&t.upstream, &t.root_anchor);
    for (mode, picket) in [("forwarding", &t.picket), ("recursive", &recursive)] {
        let answer = ask(picket, "txt.secure", RecordType::TXT, true, true).await;
        assert_secure(&answer, ResponseCode::NoError);
        assert!(
            answer.answers.iter().all(|r| r.ttl <= 300),
            "{mode}: {:?}",
            answer.answers
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nsec_records_are_not_used_aggressively_past_their_signatures() {
    // secure. is signed with signatures that expire 3 s from now. Its
    // NXDOMAIN for nope.secure. brings the NSEC alias.secure. → txt.secure.,
    // which also covers other.secure. (RFC 8198); once the signatures have
    // expired, that NSEC proves nothing, so other.secure. is asked and
    // judged (its signatures are expired: SERVFAIL, EDE 7), not denied
    // with AD from the aggressive cache.
    let root = ZoneKey::generate(".");
    let short = ZoneKey::generate("secure.").with_validity(-3_600, 3);
    let root_text = root_zone(&root, &[("secure.", Some(short.ds_line()))]);
    let upstream = TreeUpstream::start(&[root_text, short.sign(&secure_zone("secure."))]);
    let picket = recursive_picket(&upstream, &root.ds_line());
    let nx = ask(&picket, "nope.secure", RecordType::A, true, false).await;
    assert_secure(&nx, ResponseCode::NXDomain);
    assert!(
        nx.authorities.iter().all(|r| r.ttl <= 3),
        "kept no longer than the signatures: {:?}",
        nx.authorities
    );
    tokio::time::sleep(std::time::Duration::from_millis(4_500)).await;
    let later = ask(&picket, "other.secure", RecordType::A, true, false).await;
    let (code, text) = servfail_ede(&later);
    assert_eq!(code, 7, "Signature Expired: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn questions_for_dnssec_types_are_answered_with_their_records() {
    // RRSIGs are not signed (RFC 4035 §2.2): a question for them is
    // answered as it came, without AD, not judged bogus for lack of an
    // NSEC. A question for an NSEC gets it even without DO (RFC 3225 §3).
    let t = tree();
    let recursive = recursive_picket(&t.upstream, &t.root_anchor);
    for (mode, picket) in [("forwarding", &t.picket), ("recursive", &recursive)] {
        let sigs = ask(picket, "www.secure", RecordType::RRSIG, true, false).await;
        assert_eq!(rcode(&sigs), ResponseCode::NoError, "{mode}: {sigs:?}");
        assert!(!sigs.metadata.authentic_data, "{mode}: {sigs:?}");
        assert!(
            has_type(&sigs.answers, RecordType::RRSIG),
            "{mode}: {sigs:?}"
        );
        for dnssec_ok in [true, false] {
            let nsec = ask(picket, "www.secure", RecordType::NSEC, dnssec_ok, false).await;
            assert_eq!(rcode(&nsec), ResponseCode::NoError, "{mode}: {nsec:?}");
            assert!(
                has_type(&nsec.answers, RecordType::NSEC),
                "{mode}, DO={dnssec_ok}: {nsec:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_not_valid_yet_is_servfail_with_ede_8() {
    // A window that opens tomorrow.
    let t = tree_with_window((86_400, 864_000));
    let answer = ask(&t.picket, "www.secure", RecordType::A, true, false).await;
    let (code, text) = servfail_ede(&answer);
    assert_eq!(code, 8, "Signature Not Yet Valid: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_signature_is_servfail_with_ede_10() {
    let t = tree_with(|text| without_rrsig(&text, "www.secure.", "A"), &[]);
    let answer = ask(&t.picket, "www.secure", RecordType::A, false, false).await;
    let (code, text) = servfail_ede(&answer);
    assert_eq!(code, 10, "RRSIGs Missing: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_zone_under_a_provably_insecure_delegation_is_answered_without_ad() {
    let t = tree();
    let answer = ask(&t.picket, "www.insecure", RecordType::A, true, true).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
    // The upstream set AD; Picket validated nothing secure, so none.
    assert!(
        !answer.metadata.authentic_data,
        "upstream AD never copied: {answer:?}"
    );
    let nx = ask(&t.picket, "nope.insecure", RecordType::A, true, false).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert!(!nx.metadata.authentic_data);
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_and_nodata_with_nsec_proofs_are_secure() {
    let t = tree();
    let nx = ask(&t.picket, "nope.secure", RecordType::A, true, false).await;
    assert_secure(&nx, ResponseCode::NXDomain);
    assert!(has_type(&nx.authorities, RecordType::NSEC), "{nx:?}");
    let nodata = ask(&t.picket, "www.secure", RecordType::AAAA, true, false).await;
    assert_eq!(rcode(&nodata), ResponseCode::NoError, "{nodata:?}");
    assert!(nodata.answers.is_empty());
    assert!(nodata.metadata.authentic_data, "{nodata:?}");
    // A DO=0 client gets the same verdict without the NSEC records.
    let plain = ask(&t.picket, "nope.secure", RecordType::A, false, true).await;
    assert_eq!(rcode(&plain), ResponseCode::NXDomain);
    assert!(plain.metadata.authentic_data);
    assert!(!has_type(&plain.authorities, RecordType::NSEC), "{plain:?}");
    assert!(
        !has_type(&plain.authorities, RecordType::RRSIG),
        "{plain:?}"
    );
}

/// Unbound's val_nodata_entnx, forwarded: an upstream that answers
/// NXDOMAIN for an empty non-terminal, with the NSEC that shows the name to
/// exist, is read as the NODATA it is, and that NODATA is secure; an
/// NXDOMAIN for a name with records of its own is still bogus.
#[tokio::test(flavor = "multi_thread")]
async fn an_nxdomain_for_an_empty_non_terminal_is_a_secure_nodata() {
    let t = tree();
    t.upstream.set_nxdomain_for_nodata(true);
    for dnssec_ok in [true, false] {
        let ent = ask(&t.picket, "ent.secure", RecordType::A, dnssec_ok, true).await;
        assert_secure(&ent, ResponseCode::NoError);
        assert!(ent.answers.is_empty(), "{ent:?}");
    }
    let nx = ask(&t.picket, "nope.secure", RecordType::A, true, false).await;
    assert_secure(&nx, ResponseCode::NXDomain);
    let lying = ask(&t.picket, "www.secure", RecordType::AAAA, true, false).await;
    assert_eq!(rcode(&lying), ResponseCode::ServFail, "{lying:?}");
}

/// RFC 8509, forwarded: names whose leftmost label asks whether a key is a
/// root trust anchor (`root-key-sentinel-is-ta-DDDDD`) or is not one
/// (`...-not-ta-DDDDD`) fail (SERVFAIL) where the answer is no, once the
/// answer validated; CD=1 clients and other types than A and AAAA get the
/// answer whatever the key.
#[tokio::test(flavor = "multi_thread")]
async fn root_key_sentinels_tell_which_root_key_is_trusted() {
    let root = ZoneKey::generate(".");
    let anchor = root.ds_line();
    let tag: u16 = anchor.split_whitespace().nth(4).unwrap().parse().unwrap();
    let other = tag.wrapping_add(1);
    let names = [
        format!("root-key-sentinel-is-ta-{tag:05}"),
        format!("root-key-sentinel-not-ta-{tag:05}"),
        format!("root-key-sentinel-is-ta-{other:05}"),
        format!("root-key-sentinel-not-ta-{other:05}"),
    ];
    let extra: String = names
        .iter()
        .map(|n| format!("{n}.secure. 300 IN A 192.0.2.70\n{n}.secure. 300 IN TXT \"t\"\n"))
        .collect();
    let secure = ZoneKey::generate("secure.");
    let secure_text = secure.sign(&format!("{}\n{extra}", secure_zone("secure.")));
    let root_text = root_zone(&root, &[("secure.", Some(secure.ds_line()))]);
    let t = Tree::validating(TreeUpstream::start(&[root_text, secure_text]), &root, &[]);
    let fails = [false, true, true, false];
    for (name, fails) in names.iter().zip(fails) {
        let name = format!("{name}.secure");
        let answer = ask(&t.picket, &name, RecordType::A, false, true).await;
        let want = if fails {
            ResponseCode::ServFail
        } else {
            ResponseCode::NoError
        };
        assert_eq!(rcode(&answer), want, "{name}: {answer:?}");
        let txt = ask(&t.picket, &name, RecordType::TXT, false, true).await;
        assert_eq!(rcode(&txt), ResponseCode::NoError, "{name} TXT: {txt:?}");
        let unchecked = ask_unchecked(&t.picket, &name).await;
        assert_eq!(
            rcode(&unchecked),
            ResponseCode::NoError,
            "{name} CD: {unchecked:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_negative_answer_without_its_proof_is_bogus() {
    // Strip the NSEC records' signatures: the proof no longer holds.
    let t = tree_with(
        |text| {
            text.lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    !(f.len() > 4 && f[3] == "RRSIG" && f[4] == "NSEC")
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
        &[],
    );
    let nx = ask(&t.picket, "nope.secure", RecordType::A, true, false).await;
    assert_eq!(rcode(&nx), ResponseCode::ServFail, "{nx:?}");
    assert!(ede(&nx).is_some(), "{nx:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_negative_trust_anchor_makes_a_broken_zone_insecure() {
    let t = tree_with(
        |text| corrupt_rrsig(&text, "www.secure.", "A"),
        &["secure."],
    );
    let answer = ask(&t.picket, "www.secure", RecordType::A, true, true).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(!answer.metadata.authentic_data, "not validated, no AD");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cd_query_is_passed_through_unvalidated() {
    let t = tree_with(|text| corrupt_rrsig(&text, "www.secure.", "A"), &[]);
    let answer = ask_unchecked(&t.picket, "www.secure").await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(!answer.metadata.authentic_data, "{answer:?}");
    assert!(answer.metadata.checking_disabled);
    // Without CD the same name is bogus.
    let checked = ask(&t.picket, "www.secure", RecordType::A, true, false).await;
    assert_eq!(rcode(&checked), ResponseCode::ServFail);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cd_query_of_a_secure_name_is_validated_for_ad() {
    // RFC 4035 §3.2.3: AD if and only if Picket found the answer authentic,
    // CD or not; Unbound and BIND set it the same way.
    let t = tree();
    let answer = ask_unchecked(&t.picket, "www.secure").await;
    assert_secure(&answer, ResponseCode::NoError);
    assert!(answer.metadata.checking_disabled);
    assert!(has_type(&answer.answers, RecordType::RRSIG), "{answer:?}");
    // An insecure name with CD=1: answered, no AD.
    let answer = ask_unchecked(&t.picket, "www.insecure").await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert!(!answer.metadata.authentic_data, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_dnssec_off_the_upstream_ad_bit_is_cleared() {
    let t = tree();
    let mut settings = test_settings(&[t.upstream.addr()]);
    settings.dnssec = DnssecMode::Off;
    let off = start_picket_with(settings);
    let answer = ask(&off, "www.secure", RecordType::A, true, true).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert!(!answer.metadata.authentic_data, "{answer:?}");
    assert!(
        has_type(&answer.answers, RecordType::RRSIG),
        "DO passed through"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn islands_of_security_in_forward_mode() {
    // An unsigned root; `island.` signed with its DS as anchor; `stale.`
    // signed but anchored by a DS of another key.
    let island = ZoneKey::generate("island.");
    let stale = ZoneKey::generate("stale.");
    let other = ZoneKey::generate("stale.");
    let root_text = format!(
        ". {SOA_TAIL}\n. 3600 IN NS ns.invalid.\nisland. 3600 IN NS ns.invalid.\nstale. 3600 IN NS ns.invalid.\nopen. 3600 IN NS ns.invalid.\n"
    );
    let upstream = TreeUpstream::start(&[
        root_text,
        island.sign(&secure_zone("island.")),
        stale.sign(&secure_zone("stale.")),
        secure_zone("open."),
    ]);
    let anchors = format!("{}\n{}\n", island.ds_line(), other.ds_line());
    let picket = validating_picket(&upstream, &anchors, &[]);
    let secure = ask(&picket, "www.island", RecordType::A, true, false).await;
    assert_secure(&secure, ResponseCode::NoError);
    let bogus = ask(&picket, "www.stale", RecordType::A, true, false).await;
    assert_eq!(rcode(&bogus), ResponseCode::ServFail, "{bogus:?}");
    let (code, text) = ede(&bogus).expect("an EDE");
    assert_eq!(code, 9, "DNSKEY Missing: {text}");
    assert!(text.contains("stale."), "{text}");
    let open = ask(&picket, "www.open", RecordType::A, true, false).await;
    assert_eq!(rcode(&open), ResponseCode::NoError, "{open:?}");
    assert!(!open.metadata.authentic_data, "under no anchor: insecure");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rollover_with_two_ksks_validates_through_the_new_ds() {
    let root = ZoneKey::generate(".");
    let old = ZoneKey::generate("secure.");
    let new = ZoneKey::generate("secure.");
    let text = old.sign_rollover(&new, &secure_zone("secure."));
    let root_text = root_zone(&root, &[("secure.", Some(new.ds_line()))]);
    let upstream = TreeUpstream::start(&[root_text, text]);
    let picket = validating_picket(&upstream, &root.ds_line(), &[]);
    let answer = ask(&picket, "www.secure", RecordType::A, true, false).await;
    assert_secure(&answer, ResponseCode::NoError);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zone_whose_ds_uses_an_unsupported_algorithm_is_insecure() {
    let root = ZoneKey::generate(".");
    // Ed448 (16): hickory-proto with ring cannot verify it.
    let key = vec![7u8; 57];
    let dnskey = DNSKEY::with_flags(257, PublicKeyBuf::new(key.clone(), Algorithm::from_u8(16)));
    let zone = Name::from_ascii("alg.").unwrap();
    let digest = dnskey.to_digest(&zone, DigestType::SHA256).unwrap();
    let ds = format!(
        "alg. 3600 IN DS {} 16 2 {}",
        dnskey.calculate_key_tag().unwrap(),
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    );
    let alg_zone = format!(
        "{}\nalg. 3600 IN DNSKEY 257 3 16 {}",
        secure_zone("alg."),
        base64::engine::general_purpose::STANDARD.encode(&key)
    );
    let root_text = root_zone(&root, &[("alg.", Some(ds))]);
    let upstream = TreeUpstream::start(&[root_text, alg_zone]);
    let picket = validating_picket(&upstream, &root.ds_line(), &[]);
    let answer = ask(&picket, "www.alg", RecordType::A, true, true).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(!answer.metadata.authentic_data, "insecure: {answer:?}");
}

/// `n3.`: signed, its denials proven with NSEC3 (`iterations`, opt-out as
/// given), with an unsigned delegation `unsigned.n3.` left out of the chain.
fn nsec3_tree(iterations: u16, opt_out: bool) -> Tree {
    let root = ZoneKey::generate(".");
    let n3 = ZoneKey::generate("n3.");
    let zone = format!(
        "{}\nunsigned.n3. 3600 IN NS ns.invalid.",
        secure_zone("n3.")
    );
    let apex: &[RecordType] = &[RecordType::SOA, RecordType::NS, RecordType::DNSKEY];
    let chain = n3.nsec3_chain(
        &[
            ("n3.", apex),
            ("www.n3.", &[RecordType::A]),
            ("alias.n3.", &[RecordType::CNAME]),
            ("txt.n3.", &[RecordType::TXT]),
        ],
        iterations,
        opt_out,
    );
    let root_text = root_zone(&root, &[("n3.", Some(n3.ds_line()))]);
    let upstream = TreeUpstream::start_nsec3(
        &[root_text, n3.sign(&zone), secure_zone("unsigned.n3.")],
        vec![("n3.", chain)],
    );
    Tree::validating(upstream, &root, &[])
}

/// A recursive Picket iterating from `upstream` as its only root server
/// (it answers every zone of the tree, so every iteration ends there),
/// validating with `anchor`.
fn recursive_picket(upstream: &TreeUpstream, anchor: &str) -> Picket {
    let mut settings: Settings = test_settings(&[]);
    settings.recursion = Some(::picket::upstream::RecursorSettings {
        root_hints: vec![upstream.addr().ip()],
        dnssec: DnssecMode::Validate,
        trust_anchor: Some(anchor.to_string()),
        deny_servers: Vec::new(),
        nameserver_ports: [(upstream.addr().ip(), upstream.addr().port())].into(),
        ..Default::default()
    });
    start_picket_with(settings)
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_and_nodata_with_nsec3_proofs_are_secure() {
    let t = nsec3_tree(0, false);
    let nx = ask(&t.picket, "nope.n3", RecordType::A, true, false).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert!(has_type(&nx.authorities, RecordType::NSEC3), "{nx:?}");
    assert!(nx.metadata.authentic_data, "{nx:?}");
    let nodata = ask(&t.picket, "www.n3", RecordType::AAAA, true, false).await;
    assert_secure(&nodata, ResponseCode::NoError);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_delegation_in_an_nsec3_opt_out_span_is_insecure() {
    let t = nsec3_tree(0, true);
    let answer = ask(&t.picket, "www.unsigned.n3", RecordType::A, true, true).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError, "{answer:?}");
    assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(!answer.metadata.authentic_data, "{answer:?}");
    // Without opt-out the same unsigned delegation has no proof: bogus.
    let strict = nsec3_tree(0, false);
    let bogus = ask(
        &strict.picket,
        "www.unsigned.n3",
        RecordType::A,
        true,
        false,
    )
    .await;
    assert_eq!(rcode(&bogus), ResponseCode::ServFail, "{bogus:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nsec3_iterations_above_the_cap_make_a_denial_insecure() {
    let cap = ::picket::config::Limits::default().dnssec_max_nsec3_iterations;
    let t = nsec3_tree(cap + 1, false);
    let nx = ask(&t.picket, "nope.n3", RecordType::A, true, true).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert!(!nx.metadata.authentic_data, "insecure over the cap: {nx:?}");
    // RFC 9276 §3.2 / RFC 8914: the client is told why (Unbound does the same).
    assert_eq!(ede(&nx).map(|e| e.0), Some(27), "EDE 27: {nx:?}");
    let nodata = ask(&t.picket, "www.n3", RecordType::AAAA, true, false).await;
    assert_eq!(rcode(&nodata), ResponseCode::NoError, "{nodata:?}");
    assert_eq!(ede(&nodata).map(|e| e.0), Some(27), "{nodata:?}");
    let at_cap = nsec3_tree(cap, false);
    let nx = ask(&at_cap.picket, "nope.n3", RecordType::A, true, true).await;
    assert!(nx.metadata.authentic_data, "secure at the cap: {nx:?}");
    assert_eq!(ede(&nx), None, "{nx:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_iterator_tells_nsec3_iterations_above_the_cap_with_ede_27() {
    let cap = ::picket::config::Limits::default().dnssec_max_nsec3_iterations;
    let over = nsec3_tree(cap + 1, false);
    let root_anchor = over.root_anchor.clone();
    let picket = recursive_picket(&over.upstream, &root_anchor);
    let nx = ask(&picket, "nope.n3", RecordType::A, true, true).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert!(!nx.metadata.authentic_data, "insecure over the cap: {nx:?}");
    assert_eq!(ede(&nx).map(|e| e.0), Some(27), "EDE 27: {nx:?}");
    // The same answer from the cache still says why.
    let again = ask(&picket, "nope.n3", RecordType::A, true, true).await;
    assert_eq!(ede(&again).map(|e| e.0), Some(27), "cached: {again:?}");
    // Data in the zone is signed and still secure.
    let www = ask(&picket, "www.n3", RecordType::A, true, true).await;
    assert!(www.metadata.authentic_data, "{www:?}");
    let at_cap = nsec3_tree(cap, false);
    let picket = recursive_picket(&at_cap.upstream, &at_cap.root_anchor);
    let nx = ask(&picket, "nope.n3", RecordType::A, true, true).await;
    assert!(nx.metadata.authentic_data, "secure at the cap: {nx:?}");
    assert_eq!(ede(&nx), None, "{nx:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_of_trust_is_validated_once_not_per_query() {
    let t = tree();
    let key_queries = |u: &TreeUpstream| {
        u.received()
            .iter()
            .filter(|q| {
                matches!(
                    q.queries[0].query_type(),
                    RecordType::DNSKEY | RecordType::DS
                )
            })
            .count()
    };
    let first = ask(&t.picket, "www.secure", RecordType::A, true, false).await;
    assert!(first.metadata.authentic_data);
    let cold = key_queries(&t.upstream);
    assert!(cold >= 3, "root DNSKEY, DS and DNSKEY of secure.: {cold}");
    for name in ["txt.secure", "alias.secure", "nope.secure"] {
        let answer = ask(&t.picket, name, RecordType::A, true, false).await;
        assert!(answer.metadata.authentic_data, "{name}: {answer:?}");
    }
    assert_eq!(
        key_queries(&t.upstream),
        cold,
        "no DNSKEY or DS fetched again"
    );
}

/// How many queries for `name` (any type, or `rtype`) `upstream` received.
fn asked_for(upstream: &TreeUpstream, name: &str, rtype: Option<RecordType>) -> usize {
    let name = Name::from_ascii(name).unwrap();
    upstream
        .received()
        .iter()
        .filter_map(|m| m.queries.first())
        .filter(|q| *q.name() == name && rtype.is_none_or(|t| q.query_type() == t))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_name_in_a_cached_nsec_gap_is_answered_without_asking() {
    let t = tree();
    let picket = recursive_picket(&t.upstream, &t.root_anchor);
    let first = ask(&picket, "nope.secure", RecordType::A, true, false).await;
    assert_secure(&first, ResponseCode::NXDomain);
    // other.secure falls in the same NSEC gap (alias.secure → txt.secure),
    // and *.secure in the apex's: RFC 8198 answers it from the cache.
    let second = ask(&picket, "other.secure", RecordType::A, true, false).await;
    assert_secure(&second, ResponseCode::NXDomain);
    assert!(
        has_type(&second.authorities, RecordType::NSEC),
        "{second:?}"
    );
    assert!(has_type(&second.authorities, RecordType::SOA), "{second:?}");
    assert_eq!(asked_for(&t.upstream, "other.secure.", None), 0);
    // NODATA: www.secure's NSEC, cached with the AAAA denial, lacks TXT too.
    let aaaa = ask(&picket, "www.secure", RecordType::AAAA, true, false).await;
    assert_eq!(rcode(&aaaa), ResponseCode::NoError, "{aaaa:?}");
    assert!(aaaa.metadata.authentic_data && aaaa.answers.is_empty());
    let mx = ask(&picket, "www.secure", RecordType::MX, true, false).await;
    assert_eq!(rcode(&mx), ResponseCode::NoError, "{mx:?}");
    assert!(
        mx.metadata.authentic_data && mx.answers.is_empty(),
        "{mx:?}"
    );
    assert_eq!(
        asked_for(&t.upstream, "www.secure.", Some(RecordType::MX)),
        0
    );
    // A name that exists outside the gap is still asked and answered.
    let www = ask(&picket, "www.secure", RecordType::A, true, false).await;
    assert_eq!(a_records(&www), [Ipv4Addr::new(192, 0, 2, 1)]);
    // A DO=0 client gets the synthesized answer without NSEC records.
    let quiet = ask(&picket, "more.secure", RecordType::A, false, false).await;
    assert_eq!(rcode(&quiet), ResponseCode::NXDomain, "{quiet:?}");
    assert!(!has_type(&quiet.authorities, RecordType::NSEC), "{quiet:?}");
    assert_eq!(asked_for(&t.upstream, "more.secure.", None), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn nsec_records_of_an_insecure_zone_are_never_used_aggressively() {
    // orphan. is signed, but the root proves it has no DS: insecure.
    let root = ZoneKey::generate(".");
    let orphan = ZoneKey::generate("orphan.");
    let root_text = root_zone(&root, &[("orphan.", None)]);
    let upstream = TreeUpstream::start(&[root_text, orphan.sign(&secure_zone("orphan."))]);
    let picket = recursive_picket(&upstream, &root.ds_line());
    for name in ["nope.orphan", "other.orphan"] {
        let nx = ask(&picket, name, RecordType::A, true, false).await;
        assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
        assert!(!nx.metadata.authentic_data, "insecure: {nx:?}");
        assert!(has_type(&nx.authorities, RecordType::NSEC), "{nx:?}");
    }
    assert!(
        asked_for(&upstream, "other.orphan.", None) >= 1,
        "asked upstream"
    );
}

/// Every query `upstream` received so far.
fn upstream_queries(upstream: &TreeUpstream) -> usize {
    upstream.received().len()
}

/// A recursive Picket on [`nsec3_tree`] (0 iterations, `opt_out`) whose
/// first answer, for `name`/`rtype`, came back secure with `expected`:
/// the whole NSEC3 chain that proved it is in its cache. Also the queries
/// the upstream had received by then.
async fn with_nsec3_chain_cached(
    opt_out: bool,
    name: &str,
    rtype: RecordType,
    expected: ResponseCode,
) -> (Tree, Picket, usize) {
    let t = nsec3_tree(0, opt_out);
    let picket = recursive_picket(&t.upstream, &t.root_anchor);
    let first = ask(&picket, name, rtype, true, false).await;
    assert_eq!(rcode(&first), expected, "{first:?}");
    assert!(first.metadata.authentic_data, "{first:?}");
    let asked = upstream_queries(&t.upstream);
    (t, picket, asked)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_name_under_an_nsec3_zone_is_denied_from_the_cached_chain() {
    let (t, picket, asked) =
        with_nsec3_chain_cached(false, "nope.n3", RecordType::A, ResponseCode::NXDomain).await;
    // RFC 8198 with NSEC3: n3. is the closest encloser, and the cached
    // chain covers the next closer names other.n3. and deep.er.n3. and
    // the wildcard *.n3.: NXDOMAIN without a query.
    for name in ["other.n3", "deep.er.n3"] {
        let nx = ask(&picket, name, RecordType::A, true, false).await;
        assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{name}: {nx:?}");
        assert!(nx.metadata.authentic_data, "{name}: {nx:?}");
        assert!(has_type(&nx.authorities, RecordType::NSEC3), "{nx:?}");
        assert!(has_type(&nx.authorities, RecordType::SOA), "{nx:?}");
    }
    // NODATA: www.n3.'s own NSEC3 (kept with that chain) lacks MX.
    let mx = ask(&picket, "www.n3", RecordType::MX, true, false).await;
    assert_eq!(rcode(&mx), ResponseCode::NoError, "{mx:?}");
    assert!(
        mx.metadata.authentic_data && mx.answers.is_empty(),
        "{mx:?}"
    );
    assert!(has_type(&mx.authorities, RecordType::NSEC3), "{mx:?}");
    // A DO=0 client gets the same denial without the NSEC3 records.
    let quiet = ask(&picket, "more.n3", RecordType::A, false, false).await;
    assert_eq!(rcode(&quiet), ResponseCode::NXDomain, "{quiet:?}");
    assert!(
        !has_type(&quiet.authorities, RecordType::NSEC3),
        "{quiet:?}"
    );
    assert_eq!(upstream_queries(&t.upstream), asked, "no query upstream");
    // Data that exists is still asked for and answered.
    let www = ask(&picket, "www.n3", RecordType::A, true, false).await;
    assert_eq!(a_records(&www), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_nsec3_opt_out_span_denies_nothing() {
    // www.n3.'s own NSEC3 proves this NODATA: secure, so the whole chain
    // (every NSEC3 with the opt-out flag) is kept.
    let (t, picket, asked) =
        with_nsec3_chain_cached(true, "www.n3", RecordType::AAAA, ResponseCode::NoError).await;
    let mx = ask(&picket, "www.n3", RecordType::MX, true, false).await;
    assert!(
        mx.metadata.authentic_data && mx.answers.is_empty(),
        "{mx:?}"
    );
    assert_eq!(
        upstream_queries(&t.upstream),
        asked,
        "NODATA from the cache"
    );
    // unsigned.n3. and nope.n3. fall in opt-out spans: either may be an
    // unsigned delegation, so the cache denies neither (RFC 5155 §6).
    let www = ask(&picket, "www.unsigned.n3", RecordType::A, true, false).await;
    assert_eq!(a_records(&www), [Ipv4Addr::new(192, 0, 2, 1)], "{www:?}");
    assert!(!www.metadata.authentic_data, "{www:?}");
    let nx = ask(&picket, "nope.n3", RecordType::A, true, false).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{nx:?}");
    assert!(!nx.metadata.authentic_data, "opt-out: insecure: {nx:?}");
    assert!(
        asked_for(&t.upstream, "nope.n3.", None) >= 1,
        "asked upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nsec3_over_the_iteration_cap_or_the_hash_budget_is_not_used_from_the_cache() {
    let cap = ::picket::config::Limits::default().dnssec_max_nsec3_iterations;
    let over = nsec3_tree(cap + 1, false);
    let picket = recursive_picket(&over.upstream, &over.root_anchor);
    for name in ["nope.n3", "other.n3"] {
        let nx = ask(&picket, name, RecordType::A, true, false).await;
        assert_eq!(ede(&nx).map(|e| e.0), Some(27), "{name}: {nx:?}");
    }
    assert!(asked_for(&over.upstream, "other.n3.", None) >= 1);
    // Within the cap, a name of 70 labels needs more NSEC3 hashes for its
    // closest-encloser proof than one validation may spend (CVE-2023-50868):
    // the cache does not answer it; upstream's answer is bogus.
    let (t, picket, _) =
        with_nsec3_chain_cached(false, "nope.n3", RecordType::A, ResponseCode::NXDomain).await;
    let long = format!("{}n3", "x.".repeat(70));
    let nx = ask(&picket, &long, RecordType::A, true, false).await;
    assert_eq!(rcode(&nx), ResponseCode::ServFail, "{nx:?}");
    assert!(asked_for(&t.upstream, &format!("{long}."), None) >= 1);
}

/// Unbound validating with `anchor` (a DS line), forwarding everything to
/// `upstream`.
fn validating_unbound(
    upstream: std::net::SocketAddr,
    anchor: &str,
) -> (KillOnDrop, std::net::SocketAddr) {
    let dir = temp_dir("unbound-validating");
    let port = free_port();
    let server = format!(
        "  interface: 127.0.0.1\n  port: {port}\n  do-not-query-localhost: no\n  \
         module-config: \"validator iterator\"\n  trust-anchor: \"{anchor}\"\n  \
         access-control: 127.0.0.0/8 allow\n  verbosity: 0\n\
         forward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n",
        upstream.ip(),
        upstream.port(),
    );
    let unbound = common::process::start_unbound(&dir, &server);
    (unbound, format!("127.0.0.1:{port}").parse().unwrap())
}

/// Picket and Unbound, both validating and forwarding to one stand-in
/// upstream with the fake root's key as their trust anchor, read alike on
/// secure, insecure and bogus answers, for clients with and without DO, AD
/// and CD ([`reading`]: RCODE, flags, answers with their RRSIGs, a negative
/// answer's SOA and NSEC proof, EDNS; not TTLs or EDE, which Unbound 1.17
/// does not send by default); and a validating Unbound behind Picket reads
/// them alike too, having judged Picket's answers itself.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "runs Unbound (/usr/sbin/unbound, Debian package unbound) beside Picket"]
async fn validated_answers_read_as_unbounds() {
    let root = ZoneKey::generate(".");
    let keys: Vec<ZoneKey> = ["secure.", "bogus.", "stripped."]
        .into_iter()
        .map(ZoneKey::generate)
        .collect();
    let [secure, bogus, stripped] = &keys[..] else {
        unreachable!()
    };
    // Signatures that expired two days ago. (Unbound allows for clock skew:
    // a tenth of the validity period, at least an hour and at most a day,
    // so it takes signatures that expired an hour ago as valid; Picket
    // does not.)
    let expired = ZoneKey::generate("expired.").with_validity(-3 * 86_400, -2 * 86_400);
    let delegations = [
        ("secure.", Some(secure.ds_line())),
        ("bogus.", Some(bogus.ds_line())),
        ("stripped.", Some(stripped.ds_line())),
        ("expired.", Some(expired.ds_line())),
        ("insecure.", None),
    ];
    let upstream = TreeUpstream::start(&[
        root_zone(&root, &delegations),
        secure.sign(&secure_zone("secure.")),
        corrupt_rrsig(&bogus.sign(&secure_zone("bogus.")), "www.bogus.", "A"),
        // Delegated with a DS, served unsigned: its signatures were stripped.
        secure_zone("stripped."),
        secure_zone("insecure."),
        expired.sign(&secure_zone("expired.")),
    ]);
    let anchor = root.ds_line();
    let picket = validating_picket(&upstream, &anchor, &[]);
    let (_unbound, unbound) = validating_unbound(upstream.addr(), &anchor);
    // And one that forwards to Picket: it judges Picket's answers to DO
    // clients, proofs included, by the same anchor.
    let (_behind, behind) = validating_unbound(picket.addr, &anchor);
    wait_until_answering(unbound).await;
    wait_until_answering(behind).await;

    // (name, type, DO, AD, CD)
    let cases = [
        ("www.secure.", RecordType::A, true, false, false),
        ("www.secure.", RecordType::A, false, false, false),
        ("www.secure.", RecordType::A, false, true, false),
        ("alias.secure.", RecordType::A, true, false, false),
        ("txt.secure.", RecordType::A, true, false, false),
        ("nope.secure.", RecordType::A, true, false, false),
        ("nope.secure.", RecordType::A, false, true, false),
        ("secure.", RecordType::DNSKEY, true, false, false),
        ("secure.", RecordType::DS, true, false, false),
        ("secure.", RecordType::SOA, false, false, false),
        ("www.insecure.", RecordType::A, true, false, false),
        ("nope.insecure.", RecordType::A, true, false, false),
        ("www.bogus.", RecordType::A, true, false, false),
        ("www.bogus.", RecordType::A, false, false, false),
        ("www.bogus.", RecordType::A, true, false, true),
        ("txt.bogus.", RecordType::TXT, true, false, false),
        ("www.stripped.", RecordType::A, true, false, false),
        ("www.stripped.", RecordType::A, true, false, true),
        ("www.expired.", RecordType::A, true, false, false),
        ("www.expired.", RecordType::A, false, false, true),
    ];
    let mut differences = Vec::new();
    for (name, rtype, dnssec_ok, ad, cd) in cases {
        let mut query = QueryBuilder::new(name, rtype)
            .dnssec_ok(dnssec_ok)
            .cd(cd)
            .build();
        query.metadata.authentic_data = ad;
        let bytes = query.to_vec().unwrap();
        let ours = reading(send_udp_raw(picket.addr, &bytes).await.as_deref());
        let theirs = reading(send_udp_raw(unbound, &bytes).await.as_deref());
        let through = reading(send_udp_raw(behind, &bytes).await.as_deref());
        if ours != theirs || through != theirs {
            differences.push(format!(
                "== {name} {rtype} DO={dnssec_ok} AD={ad} CD={cd}\n-- Picket:\n{ours}\n\
                 -- Unbound:\n{theirs}\n-- Unbound behind Picket:\n{through}"
            ));
        }
        assert!(ours.starts_with("rcode"), "{name} {rtype}: {ours}");
    }
    assert!(
        differences.is_empty(),
        "{} of {} differ:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
}
