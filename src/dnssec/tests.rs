//! The validator against responses signed here (ECDSA P-256), fetched from a
//! map instead of the network: NSEC3 proofs (opt-out, iteration cap) and
//! every budget (KeyTrap, CVE-2023-50387; NSEC3 hashing, CVE-2023-50868),
//! each shown to bind.

use std::collections::HashMap;

use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSSECRData, SigInput, DNSKEY, NSEC3, RRSIG};
use hickory_proto::dnssec::{
    Algorithm, Nsec3HashAlgorithm, PublicKey, PublicKeyBuf, SigningKey, TBS,
};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};

use super::*;
use crate::config::Limits;

use crate::testing::name as n;

/// A zone's signing key.
struct Key {
    zone: Name,
    key: EcdsaSigningKey,
    dnskey: DNSKEY,
}

impl Key {
    fn new(zone: &str) -> Key {
        let alg = Algorithm::ECDSAP256SHA256;
        let pkcs8 = EcdsaSigningKey::generate_pkcs8(alg).unwrap();
        let key = EcdsaSigningKey::from_pkcs8(&pkcs8, alg).unwrap();
        let dnskey = DNSKEY::with_flags(257, key.to_public_key().unwrap());
        Key {
            zone: n(zone),
            key,
            dnskey,
        }
    }

    fn tag(&self) -> u16 {
        self.dnskey.calculate_key_tag().unwrap()
    }

    /// The RRSIG record over `rrset` (one owner, one type).
    fn sign(&self, rrset: &[Record]) -> Record {
        let now = chain::unix_now();
        let owner = rrset[0].name.clone();
        let input = SigInput {
            type_covered: rrset[0].record_type(),
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: owner.num_labels(),
            original_ttl: rrset[0].ttl,
            sig_expiration: SerialNumber::new(now + 86_400),
            sig_inception: SerialNumber::new(now - 3_600),
            key_tag: self.tag(),
            signer_name: self.zone.clone(),
        };
        let tbs = TBS::from_input(&owner, DNSClass::IN, &input, rrset.iter()).unwrap();
        let sig = self.key.sign(&tbs).unwrap();
        rrsig_record(&owner, input, sig)
    }

    fn dnskey_record(&self) -> Record {
        Record::from_rdata(
            self.zone.clone(),
            3600,
            RData::DNSSEC(DNSSECRData::DNSKEY(self.dnskey.clone())),
        )
    }

    /// The anchor text naming this key.
    fn anchor(&self) -> TrustAnchors {
        use base64::Engine;
        let text = format!(
            "{} IN DNSKEY 257 3 13 {}",
            self.zone,
            base64::engine::general_purpose::STANDARD
                .encode(self.dnskey.public_key().public_bytes())
        );
        TrustAnchors::parse(&text).unwrap()
    }
}

fn rrsig_record(owner: &Name, input: SigInput, sig: Vec<u8>) -> Record {
    Record::from_rdata(
        owner.clone(),
        input.original_ttl,
        RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
    )
}

fn a(name: &str) -> Record {
    Record::from_rdata(n(name), 300, RData::A(A::new(192, 0, 2, 1)))
}

fn response(qname: &str, qtype: RecordType, rcode: ResponseCode) -> Message {
    let mut m = Message::new(1, MessageType::Response, OpCode::Query);
    m.metadata.response_code = rcode;
    m.add_query(Query::query(n(qname), qtype));
    m
}

/// DNSKEY answers by zone.
struct MapFetch(HashMap<(Name, RecordType), Message>);

impl Fetch for MapFetch {
    fn fetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> FetchFuture<'a> {
        let found = self.0.get(&(name.clone(), rtype)).cloned();
        Box::pin(async move { found.ok_or_else(|| FetchError(format!("no {name} {rtype} here"))) })
    }
}

/// [`MapFetch`] that yields before answering (as a network fetch would)
/// and counts what it is asked.
struct SlowFetch(MapFetch, std::sync::atomic::AtomicUsize);

impl Fetch for SlowFetch {
    fn fetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> FetchFuture<'a> {
        Box::pin(async move {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            self.0.fetch(name, rtype).await
        })
    }
}

#[test]
fn concurrent_validations_in_a_cold_zone_fetch_its_keys_once() {
    let key = Key::new("example.");
    let v = validator(&key, &Limits::default());
    let fetch = SlowFetch(dnskey_fetch(&key, &[]), Default::default());
    let answers: Vec<Message> = (0..20)
        .map(|i| signed_a(&key, &format!("host{i}.example.")))
        .collect();
    let verdicts = block_on(futures_util::future::join_all(
        answers.iter().map(|m| v.validate(m, &fetch)),
    ));
    assert!(
        verdicts.iter().all(|s| *s == Security::Secure),
        "{verdicts:?}"
    );
    assert_eq!(
        fetch.1.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one DNSKEY fetch"
    );
}

/// `example.`'s DNSKEY RRset (`extra` keys first, then its own), signed.
fn dnskey_fetch(key: &Key, extra: &[DNSKEY]) -> MapFetch {
    let mut m = response("example.", RecordType::DNSKEY, ResponseCode::NoError);
    let mut rrset: Vec<Record> = extra
        .iter()
        .map(|k| {
            Record::from_rdata(
                key.zone.clone(),
                3600,
                RData::DNSSEC(DNSSECRData::DNSKEY(k.clone())),
            )
        })
        .collect();
    rrset.push(key.dnskey_record());
    let sig = key.sign(&rrset);
    m.answers.extend(rrset);
    m.answers.push(sig);
    MapFetch(HashMap::from([((n("example."), RecordType::DNSKEY), m)]))
}

fn validator(key: &Key, limits: &Limits) -> Validator {
    Validator::new(
        ValidatorSettings {
            anchors: key.anchor(),
            negative_anchors: Vec::new(),
        },
        limits,
    )
}

fn signed_a(key: &Key, name: &str) -> Message {
    let mut m = response(name, RecordType::A, ResponseCode::NoError);
    let rr = a(name);
    m.answers.push(rr.clone());
    m.answers.push(key.sign(&[rr]));
    m
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// `example.`'s key, a validator anchored at it with the default limits, and a fetch that
/// serves its DNSKEY RRset.
fn signed_example() -> (Key, Validator, MapFetch) {
    let key = Key::new("example.");
    let v = validator(&key, &Limits::default());
    let fetch = dnskey_fetch(&key, &[]);
    (key, v, fetch)
}

/// Asserts that `m` is secure under the `roomy` limits and bogus for going over `limit` under
/// the `capped` ones: the cap, not the data, makes it bogus.
fn assert_capped(
    key: &Key,
    m: &Message,
    fetch: &MapFetch,
    [roomy, capped]: [Limits; 2],
    limit: &str,
) {
    assert_eq!(
        block_on(validator(key, &roomy).validate(m, fetch)),
        Security::Secure
    );
    assert_bogus_over(&validator(key, &capped), m, fetch, limit);
}

/// Asserts that `v` finds `m` bogus (EDE 6) for going over the limit named `limit`.
fn assert_bogus_over(v: &Validator, m: &Message, fetch: &dyn Fetch, limit: &str) {
    let verdict = block_on(v.validate(m, fetch));
    assert!(
        matches!(&verdict, Security::Bogus { ede: 6, reason } if reason.contains(limit)),
        "{verdict:?}"
    );
}

#[test]
fn a_signed_answer_under_a_dnskey_anchor_is_secure() {
    let (key, v, fetch) = signed_example();
    assert_eq!(
        block_on(v.validate(&signed_a(&key, "www.example."), &fetch)),
        Security::Secure
    );
    // Names under no anchor are insecure without a fetch.
    let other = response("www.other.", RecordType::A, ResponseCode::NoError);
    assert_eq!(
        block_on(v.validate(&other, &MapFetch(HashMap::new()))),
        Security::Insecure
    );
}

#[test]
fn a_cname_chain_across_an_anchor_and_an_unanchored_zone_is_insecure_not_bogus() {
    let key = Key::new("example.");
    let v = validator(&key, &Limits::default());
    let mut m = response("www.example.", RecordType::A, ResponseCode::NoError);
    let cname = Record::from_rdata(n("www.example."), 300, RData::CNAME(CNAME(n("cdn.other."))));
    m.answers.push(cname.clone());
    m.answers.push(key.sign(&[cname]));
    m.answers.push(a("cdn.other."));
    assert_eq!(
        block_on(v.validate(&m, &dnskey_fetch(&key, &[]))),
        Security::Insecure
    );
}

/// DNSKEYs of garbage with `key`'s tag and algorithm: KeyTrap's colliding keys.
fn colliding_keys(key: &Key, count: usize) -> Vec<DNSKEY> {
    let mut out = Vec::new();
    let mut seed = 0u32;
    while out.len() < count {
        seed += 1;
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(&seed.to_be_bytes());
        // Fix the tag with the last two bytes (RFC 4034 Appendix B: a sum).
        for fix in 0..=u16::MAX {
            bytes[62..].copy_from_slice(&fix.to_be_bytes());
            let k = DNSKEY::with_flags(
                256,
                PublicKeyBuf::new(bytes.clone(), Algorithm::ECDSAP256SHA256),
            );
            if k.calculate_key_tag().unwrap() == key.tag() {
                out.push(k);
                break;
            }
        }
    }
    out
}

#[test]
fn keys_tried_per_rrsig_are_capped() {
    let key = Key::new("example.");
    let fetch = dnskey_fetch(&key, &colliding_keys(&key, 5));
    let m = signed_a(&key, "www.example.");
    let keys_per_tag = |n| Limits {
        dnssec_max_keys_per_tag: n,
        ..Limits::default()
    };
    let limits = [keys_per_tag(8), keys_per_tag(4)];
    assert_capped(&key, &m, &fetch, limits, "dnssec_max_keys_per_tag");
}

#[test]
fn signature_verifications_per_answer_are_capped() {
    let key = Key::new("example.");
    let fetch = dnskey_fetch(&key, &colliding_keys(&key, 5));
    let m = signed_a(&key, "www.example.");
    let limits = Limits {
        dnssec_max_keys_per_tag: 8,
        dnssec_max_verifications: 4,
        ..Limits::default()
    };
    // DNSKEY RRset: 1 verification; the A RRset: 5 wrong keys, then the right one.
    assert_bogus_over(
        &validator(&key, &limits),
        &m,
        &fetch,
        "dnssec_max_verifications",
    );
}

#[test]
fn a_zone_is_not_left_bogus_by_an_answer_that_ran_out_of_budget() {
    let key = Key::new("example.");
    let fetch = dnskey_fetch(&key, &colliding_keys(&key, 5));
    let limits = Limits {
        dnssec_max_verifications: 0,
        ..Limits::default()
    };
    let v = validator(&key, &limits);
    let m = signed_a(&key, "www.example.");
    assert_bogus_over(&v, &m, &fetch, "dnssec_max_verifications");
    // The DNSKEY RRset was never checked: nothing about example. is cached.
    assert!(v.cached_state(&n("example.")).is_none());
}

#[test]
fn rrsigs_tried_per_rrset_are_capped() {
    let key = Key::new("example.");
    let fetch = dnskey_fetch(&key, &[]);
    let rr = a("www.example.");
    let good = key.sign(std::slice::from_ref(&rr));
    let mut m = response("www.example.", RecordType::A, ResponseCode::NoError);
    m.answers.push(rr);
    // Nine RRSIGs that do not verify before the one that does.
    for i in 0..9u8 {
        let mut bad = good.clone();
        if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &good.data {
            let mut bytes = sig.sig().to_vec();
            bytes[0] ^= i + 1;
            bad = rrsig_record(&good.name, sig.input().clone(), bytes);
        }
        m.answers.push(bad);
    }
    m.answers.push(good);
    let roomy = Limits {
        dnssec_max_rrsigs_per_rrset: 16,
        dnssec_max_verifications: 64,
        ..Limits::default()
    };
    let limits = [roomy, Limits::default()];
    assert_capped(&key, &m, &fetch, limits, "dnssec_max_rrsigs_per_rrset");
}

/// RFC 4648 base32hex, lower case, no padding (RFC 5155's NSEC3 owner labels).
fn base32hex(bytes: &[u8]) -> String {
    data_encoding::BASE32_DNSSEC.encode(bytes)
}

/// An NSEC3 chain of `example.` over `names` (with their types), signed.
fn nsec3_chain(
    key: &Key,
    names: &[(&str, &[RecordType])],
    iterations: u16,
    opt_out: bool,
) -> Vec<Record> {
    let salt = vec![0xab, 0xcd];
    let mut hashed: Vec<(Vec<u8>, Vec<RecordType>)> = names
        .iter()
        .map(|(name, types)| {
            let h = Nsec3HashAlgorithm::SHA1
                .hash(&salt, &n(name), iterations)
                .unwrap();
            (h.as_ref().to_vec(), types.to_vec())
        })
        .collect();
    hashed.sort();
    let mut out = Vec::new();
    for (i, (h, types)) in hashed.iter().enumerate() {
        let next = hashed[(i + 1) % hashed.len()].0.clone();
        let owner = n(&format!("{}.example.", base32hex(h)));
        let mut types = types.clone();
        types.push(RecordType::RRSIG);
        let rdata = NSEC3::new(
            Nsec3HashAlgorithm::SHA1,
            opt_out,
            iterations,
            salt.clone(),
            next,
            types,
        );
        let record = Record::from_rdata(owner, 60, RData::DNSSEC(DNSSECRData::NSEC3(rdata)));
        out.push(key.sign(std::slice::from_ref(&record)));
        out.push(record);
    }
    out
}

fn soa(key: &Key) -> Vec<Record> {
    let soa = Record::from_rdata(
        n("example."),
        60,
        RData::SOA(SOA::new(
            n("ns.example."),
            n("h.example."),
            1,
            7200,
            900,
            1_209_600,
            60,
        )),
    );
    vec![key.sign(std::slice::from_ref(&soa)), soa]
}

const APEX: &[RecordType] = &[RecordType::SOA, RecordType::NS, RecordType::DNSKEY];

fn nxdomain(key: &Key, qname: &str, iterations: u16, opt_out: bool) -> Message {
    let a = RecordType::A;
    nsec3_denial(key, qname, a, ResponseCode::NXDomain, iterations, opt_out)
}

/// An `rcode` answer to `qname` `qtype` without records: the SOA and the NSEC3 chain of
/// `example.` over its apex and www.example. (A) in the authority section.
fn nsec3_denial(
    key: &Key,
    qname: &str,
    qtype: RecordType,
    rcode: ResponseCode,
    iterations: u16,
    opt_out: bool,
) -> Message {
    let mut m = response(qname, qtype, rcode);
    m.authorities.extend(soa(key));
    m.authorities.extend(nsec3_chain(
        key,
        &[("example.", APEX), ("www.example.", &[RecordType::A])],
        iterations,
        opt_out,
    ));
    m
}

#[test]
fn nsec3_nxdomain_and_nodata_proofs_are_secure() {
    let (key, v, fetch) = signed_example();
    assert_eq!(
        block_on(v.validate(&nxdomain(&key, "nope.example.", 1, false), &fetch)),
        Security::Secure
    );
    let nodata = |qtype| nsec3_denial(&key, "www.example.", qtype, ResponseCode::NoError, 1, false);
    assert_eq!(
        block_on(v.validate(&nodata(RecordType::AAAA), &fetch)),
        Security::Secure
    );
    // NODATA for a type the NSEC3 lists is a lie.
    let lie = nodata(RecordType::A);
    assert!(matches!(
        block_on(v.validate(&lie, &fetch)),
        Security::Bogus { .. }
    ));
    // NXDOMAIN for a name the chain shows existing is a lie too.
    let existing = nxdomain(&key, "www.example.", 1, false);
    assert!(matches!(
        block_on(v.validate(&existing, &fetch)),
        Security::Bogus { .. }
    ));
}

/// A child zone's NSEC3 beside the parent's denial (a CNAME chain crossed
/// the cut; Unbound's val_nsec3_cname_sub) is the child's to judge: the
/// parent's proof is secure, not bogus for a record its keys never signed.
#[test]
fn a_child_zones_nsec3_beside_the_parents_denial_is_left_to_the_child() {
    let (key, v, fetch) = signed_example();
    let child = Key::new("sub.example.");
    let mut nodata = nsec3_denial(
        &key,
        "www.example.",
        RecordType::AAAA,
        ResponseCode::NoError,
        1,
        false,
    );
    let owner = n("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.sub.example.");
    let rdata = NSEC3::new(
        Nsec3HashAlgorithm::SHA1,
        false,
        1,
        vec![],
        vec![0; 20],
        vec![RecordType::A],
    );
    let record = Record::from_rdata(owner, 60, RData::DNSSEC(DNSSECRData::NSEC3(rdata)));
    nodata
        .authorities
        .push(child.sign(std::slice::from_ref(&record)));
    nodata.authorities.push(record);
    assert_eq!(block_on(v.validate(&nodata, &fetch)), Security::Secure);
}

#[test]
fn nsec3_opt_out_makes_a_denial_insecure() {
    let key = Key::new("example.");
    let v = validator(&key, &Limits::default());
    let verdict = block_on(v.validate(
        &nxdomain(&key, "nope.example.", 1, true),
        &dnskey_fetch(&key, &[]),
    ));
    assert_eq!(verdict, Security::Insecure);
}

/// NODATA for a name with no NSEC3 of its own (Deckard's
/// val_nsec3_optout_ad): the closest encloser proof's next closer name in
/// an opt-out span may be an unsigned delegation, so the answer is
/// insecure (RFC 5155 §8.6, §9.2), as Unbound has it; without opt-out,
/// nothing proves the name exists, and NODATA for it is bogus.
#[test]
fn nsec3_nodata_by_an_opt_out_span_is_insecure() {
    let (key, v, fetch) = signed_example();
    let nodata = |opt_out| {
        let (mx, rcode) = (RecordType::MX, ResponseCode::NoError);
        nsec3_denial(&key, "sub.example.", mx, rcode, 1, opt_out)
    };
    assert_eq!(
        block_on(v.validate(&nodata(true), &fetch)),
        Security::Insecure
    );
    let verdict = block_on(v.validate(&nodata(false), &fetch));
    assert!(
        matches!(verdict, Security::Bogus { ede: 12, .. }),
        "{verdict:?}"
    );
}

/// NODATA for a name a wildcard answers for (RFC 5155 §8.7): the closest
/// encloser proof and the wildcard's NSEC3 without the type. A DS question
/// is judged so too (it once was not: bogus, where Unbound has it secure);
/// a type the wildcard has is a lie.
#[test]
fn nsec3_wildcard_nodata_is_secure_for_ds_too() {
    let (key, v, fetch) = signed_example();
    let wildcard_nodata = |qtype| {
        let mut m = response("x.example.", qtype, ResponseCode::NoError);
        m.authorities.extend(soa(&key));
        m.authorities.extend(nsec3_chain(
            &key,
            &[("example.", APEX), ("*.example.", &[RecordType::A])],
            1,
            false,
        ));
        m
    };
    for qtype in [RecordType::MX, RecordType::DS] {
        let verdict = block_on(v.validate(&wildcard_nodata(qtype), &fetch));
        assert_eq!(verdict, Security::Secure, "{qtype}");
    }
    let lie = block_on(v.validate(&wildcard_nodata(RecordType::A), &fetch));
    assert!(matches!(lie, Security::Bogus { .. }), "{lie:?}");
}

/// NODATA whose NSEC3 is a delegation seen from above: without DS it is an
/// unsigned child, whose data is insecure (as Unbound has it); with DS the
/// child is signed, and its parent's NSEC3 says nothing of its types.
#[test]
fn nsec3_nodata_at_a_delegation_is_insecure_without_ds_and_bogus_with_it() {
    let (key, v, fetch) = signed_example();
    let at_cut = |types: &[RecordType]| {
        let mut m = response("sub.example.", RecordType::MX, ResponseCode::NoError);
        m.authorities.extend(soa(&key));
        m.authorities.extend(nsec3_chain(
            &key,
            &[("example.", APEX), ("sub.example.", types)],
            1,
            false,
        ));
        m
    };
    let unsigned = at_cut(&[RecordType::NS]);
    assert_eq!(block_on(v.validate(&unsigned, &fetch)), Security::Insecure);
    let signed = at_cut(&[RecordType::NS, RecordType::DS]);
    assert!(matches!(
        block_on(v.validate(&signed, &fetch)),
        Security::Bogus { .. }
    ));
}

#[test]
fn nsec3_iterations_over_the_cap_are_insecure() {
    let key = Key::new("example.");
    let limits = Limits::default();
    let v = validator(&key, &limits);
    let fetch = dnskey_fetch(&key, &[]);
    let at_cap = nxdomain(
        &key,
        "nope.example.",
        limits.dnssec_max_nsec3_iterations,
        false,
    );
    assert_eq!(block_on(v.validate(&at_cap, &fetch)), Security::Secure);
    let over = nxdomain(
        &key,
        "nope.example.",
        limits.dnssec_max_nsec3_iterations + 1,
        false,
    );
    assert!(
        matches!(
            block_on(v.validate(&over, &fetch)),
            Security::InsecureUnsupported { ede: 27, .. }
        ),
        "insecure, told with EDE 27"
    );
}

#[test]
fn nsec3_hashes_per_answer_are_capped() {
    let key = Key::new("example.");
    let fetch = dnskey_fetch(&key, &[]);
    // 20 labels below the zone: a closest-encloser search hashes each ancestor.
    let long = format!("{}example.", "x.".repeat(20));
    let m = nxdomain(&key, &long, 1, false);
    let capped = Limits {
        dnssec_max_nsec3_hashes: 10,
        ..Limits::default()
    };
    let limits = [Limits::default(), capped];
    assert_capped(&key, &m, &fetch, limits, "dnssec_max_nsec3_hashes");
}

#[test]
fn a_dnskey_rrset_no_anchor_key_signs_is_dnskey_missing() {
    let key = Key::new("example.");
    let other = Key::new("example.");
    let v = validator(&key, &Limits::default());
    // The zone now serves another key: the anchor is stale.
    let verdict = block_on(v.validate(
        &signed_a(&other, "www.example."),
        &dnskey_fetch(&other, &[]),
    ));
    assert!(
        matches!(verdict, Security::Bogus { ede: 9, .. }),
        "{verdict:?}"
    );
}

#[test]
fn a_wildcard_expansion_needs_proof_that_the_name_does_not_exist() {
    let (key, v, fetch) = signed_example();
    // *.example. A, expanded for foo.example.: the RRSIG has 1 label.
    let expanded = a("foo.example.");
    let wildcard = a("*.example.");
    let sig = key.sign(std::slice::from_ref(&wildcard));
    let sig = Record::from_rdata(n("foo.example."), sig.ttl, sig.data.clone());
    let mut m = response("foo.example.", RecordType::A, ResponseCode::NoError);
    m.answers.push(expanded);
    m.answers.push(sig);
    let verdict = block_on(v.validate(&m, &fetch));
    assert!(
        matches!(verdict, Security::Bogus { ede: 12, .. }),
        "no proof: {verdict:?}"
    );
    m.authorities.extend(nsec3_chain(
        &key,
        &[("example.", APEX), ("*.example.", &[RecordType::A])],
        1,
        false,
    ));
    assert_eq!(block_on(v.validate(&m, &fetch)), Security::Secure);
    // In an opt-out span, foo.example. may be an unsigned delegation: no AD
    // (RFC 5155 §9.2), as Unbound answers.
    m.authorities.clear();
    m.authorities.extend(nsec3_chain(
        &key,
        &[("example.", APEX), ("*.example.", &[RecordType::A])],
        1,
        true,
    ));
    assert_eq!(block_on(v.validate(&m, &fetch)), Security::Insecure);
}

/// A DNAME signed as a wildcard's expansion (RRSIG labels below its owner's)
/// is bogus, even with the proof that its owner does not exist: DNAMEs are
/// never synthesized from wildcards (Unbound's val_dnamewc).
#[test]
fn a_dname_from_a_wildcard_is_bogus() {
    let (key, v, fetch) = signed_example();
    use hickory_proto::rr::rdata::NULL;
    use hickory_proto::serialize::binary::BinEncodable;
    let dname = |owner: &str| {
        let target = n("example.net.").to_bytes().unwrap();
        let rdata = RData::Unknown {
            code: RecordType::DNAME,
            rdata: NULL::with(target),
        };
        Record::from_rdata(n(owner), 300, rdata)
    };
    let sig = key.sign(&[dname("*.example.")]);
    let sig = Record::from_rdata(n("sub.example."), sig.ttl, sig.data.clone());
    let mut m = response("www.sub.example.", RecordType::A, ResponseCode::NoError);
    m.answers.push(dname("sub.example."));
    m.answers.push(sig);
    m.authorities.extend(nsec3_chain(
        &key,
        &[("example.", APEX), ("*.example.", &[RecordType::DNAME])],
        1,
        false,
    ));
    let verdict = block_on(v.validate(&m, &fetch));
    assert!(
        matches!(verdict, Security::Bogus { ref reason, .. } if reason.contains("wildcard")),
        "{verdict:?}"
    );
}

#[test]
#[ignore = "a measurement, not a check: prints the cost of one warm validation"]
fn cost_of_a_warm_validation() {
    let (key, v, fetch) = signed_example();
    let answer = signed_a(&key, "www.example.");
    let nx = nxdomain(&key, "nope.example.", 0, false);
    block_on(async {
        assert_eq!(v.validate(&answer, &fetch).await, Security::Secure);
        for (what, m) in [("signed A", &answer), ("NSEC3 NXDOMAIN", &nx)] {
            let rounds = 2_000;
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                v.validate(m, &fetch).await;
            }
            eprintln!(
                "{what}: {:?} per validation (keys cached)",
                started.elapsed() / rounds
            );
        }
    });
}

/// `x.old.example.` under the signed DNAME `old.example. → new.example.`,
/// with the unsigned CNAME `cname_target` a server synthesized for it.
fn dname_answer(key: &Key, cname_target: &str) -> Message {
    use hickory_proto::rr::rdata::NULL;
    use hickory_proto::serialize::binary::BinEncodable;
    let mut m = response("x.old.example.", RecordType::A, ResponseCode::NoError);
    let target = n("new.example.").to_bytes().unwrap();
    let dname = Record::from_rdata(
        n("old.example."),
        300,
        RData::Unknown {
            code: RecordType::DNAME,
            rdata: NULL::with(target),
        },
    );
    let sig = key.sign(std::slice::from_ref(&dname));
    let cname = Record::from_rdata(
        n("x.old.example."),
        300,
        RData::CNAME(CNAME(n(cname_target))),
    );
    let end = a(cname_target);
    let end_sig = key.sign(std::slice::from_ref(&end));
    m.add_answers([dname, sig, cname, end, end_sig]);
    m
}

#[test]
fn a_synthesized_cname_must_say_what_its_signed_dname_says() {
    let (key, v, fetch) = signed_example();
    let honest = dname_answer(&key, "x.new.example.");
    assert_eq!(block_on(v.validate(&honest, &fetch)), Security::Secure);
    // Unsigned, and not what the DNAME says: judged as any CNAME of a signed
    // zone, never secure (here the DS walk to old.example. finds nothing
    // to fetch; a server would make it bogus for the missing RRSIG).
    let forged = dname_answer(&key, "www.example.");
    assert_ne!(block_on(v.validate(&forged, &fetch)), Security::Secure);
}

/// An RRSIG at `owner` over its A RRset, expiring at `expiration`.
fn rrsig_expiring(owner: &str, expiration: u32) -> Record {
    rrsig_lasting(owner, expiration, 3600)
}

/// [`rrsig_expiring`] with an original TTL of `original_ttl`.
fn rrsig_lasting(owner: &str, expiration: u32, original_ttl: u32) -> Record {
    let input = SigInput {
        type_covered: RecordType::A,
        algorithm: Algorithm::ECDSAP256SHA256,
        num_labels: 2,
        original_ttl,
        sig_expiration: SerialNumber::new(expiration),
        sig_inception: SerialNumber::new(expiration.wrapping_sub(86_400)),
        key_tag: 1,
        signer_name: n("example."),
    };
    rrsig_record(&n(owner), input, vec![7; 64])
}

#[test]
fn a_secure_response_is_capped_by_its_signatures_expiry_and_original_ttl() {
    let now = 1_000_000;
    let mut m = response("www.example.", RecordType::A, ResponseCode::NoError);
    assert_eq!(chain::secure_ttl_cap(&m, now), None, "no RRSIG, no bound");
    m.answers.push(a("www.example."));
    m.answers.push(rrsig_expiring("www.example.", now + 900));
    m.authorities.push(rrsig_expiring("example.", now + 300));
    // An RRSIG that expired already validated nothing: passed over.
    m.answers.push(rrsig_expiring("www.example.", now - 10));
    assert_eq!(chain::secure_ttl_cap(&m, now), Some(300));
    // Serial arithmetic (RFC 1982): an expiry past 2^32 still lies ahead.
    let late = u32::MAX - 50;
    let mut wrapped = response("www.example.", RecordType::A, ResponseCode::NoError);
    wrapped
        .answers
        .push(rrsig_expiring("www.example.", late.wrapping_add(200)));
    assert_eq!(chain::secure_ttl_cap(&wrapped, late), Some(200));

    // The original TTL bounds it too, when lower.
    let mut short = m.clone();
    short
        .answers
        .push(rrsig_lasting("www.example.", now + 900, 60));
    assert_eq!(chain::secure_ttl_cap(&short, now), Some(60));

    assert!(cap_ttls(&mut m, 300));
    assert!(m.answers.iter().chain(&m.authorities).all(|r| r.ttl <= 300));
    assert!(!cap_ttls(&mut m, 300), "nothing left to lower");
}
