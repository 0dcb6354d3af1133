//! List membership cannot be forged by a name whose fingerprint collides with a listed one
//! (issue 17). Lists store 64-bit fingerprints, not names (`src/policy/lists.rs`); they used to
//! be a fixed, invertible hash, so anyone could compute a name that the table took for an
//! allow-listed entry. This test computes such a name from that old hash and asks a running
//! Picket for it over UDP.

mod common;

use std::path::PathBuf;

use ::picket::config::PolicySource;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// The fixed per-byte hash lists used before issue 17 (right to left over the name, then
/// murmur3's fmix64): reproduced here only to compute a collision with it.
mod old_hash {
    const SEED: u64 = 0x243f_6a88_85a3_08d3;
    const K: u64 = 0x517c_c1b7_2722_0a95;

    pub fn step(h: u64, b: u8) -> u64 {
        (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K)
    }

    /// The state after `bytes`, read right to left from `h`.
    pub fn absorb_rev(h: u64, bytes: &[u8]) -> u64 {
        bytes.iter().rev().fold(h, |h, &b| step(h, b))
    }

    pub fn fingerprint(name: &str) -> u64 {
        let mut h = absorb_rev(SEED, name.as_bytes());
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h.max(1)
    }

    pub fn seed() -> u64 {
        SEED
    }
}

/// Characters a DNS label may use here (lower case letters and digits).
const LABEL_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Two different first labels `(a, b)` such that `a.suffix` and `b.suffix` have the same old
/// fingerprint. No search: multiplying by an odd constant never carries a difference
/// downwards, so once the two states agree in their low `t` bits, the next byte pair can be
/// chosen to cancel the 5 bits the rotation brings round from the top, and the states then
/// agree in their low `t + 5` bits. Thirteen bytes after a first difference in bit 6, the
/// states are equal.
fn colliding_labels(suffix: &str) -> (String, String) {
    let common = old_hash::absorb_rev(old_hash::seed(), format!(".{suffix}").as_bytes());
    // '1' ^ 'q' = 0x40: the first difference, in bit 6.
    let (mut a, mut b) = (vec![b'1'], vec![b'q']);
    let (mut ha, mut hb) = (old_hash::step(common, b'1'), old_hash::step(common, b'q'));
    while ha != hb {
        let delta = ((ha.rotate_left(5) ^ hb.rotate_left(5)) & 0xff) as u8;
        let ca = *LABEL_CHARS
            .iter()
            .find(|&&c| LABEL_CHARS.contains(&(c ^ delta)))
            .expect("every difference below 32 has a pair of letters");
        let cb = ca ^ delta;
        a.push(ca);
        b.push(cb);
        ha = old_hash::step(ha, ca);
        hb = old_hash::step(hb, cb);
        assert!(a.len() <= 63, "the collision fits in one label");
    }
    // Bytes were absorbed right to left: the last one chosen is the label's first character.
    a.reverse();
    b.reverse();
    (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap())
}

fn policy_dir(text: &str) -> PathBuf {
    dir_with("fingerprints", &[("policy.json", text)])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_colliding_with_an_allow_listed_one_under_the_old_hash_is_still_blocked() {
    let suffix = "tracker.example.test";
    let (listed, forged) = colliding_labels(suffix);
    let listed = format!("{listed}.{suffix}");
    let forged = format!("{forged}.{suffix}");
    assert_ne!(listed, forged);
    assert_eq!(
        old_hash::fingerprint(&listed),
        old_hash::fingerprint(&forged),
        "the computed names collide under the old hash"
    );

    let upstream = Authority::start(&format!(
        "
example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
{listed}. 300 IN A 192.0.2.10
{forged}. 300 IN A 192.0.2.66
"
    ));
    let dir = policy_dir(&format!(
        r#"{{ "global": {{
  "lists": {{ "partners": {{ "domains": ["{listed}"] }},
              "trackers": {{ "domains": ["{suffix}"] }} }},
  "rules": [
    {{ "id": "allow-partners", "expression": "list.partners", "action": "allow" }},
    {{ "id": "block-trackers", "expression": "list.trackers", "action": "block" }}
  ] }} }}"#
    ));
    let mut settings = test_settings(&[upstream.addr()]);
    settings.policies = PolicySource::Dir(dir.clone());
    let picket = start_picket_with(settings);

    let allowed = query_udp(picket.addr, &listed, RecordType::A).await;
    assert_eq!(
        a_records(&allowed),
        ["192.0.2.10".parse::<std::net::Ipv4Addr>().unwrap()],
        "the allow-listed name resolves"
    );
    let forged_answer = query_udp(picket.addr, &forged, RecordType::A).await;
    assert_eq!(
        forged_answer.metadata.response_code,
        ResponseCode::NXDomain,
        "{forged} is not on the allow list: {forged_answer:?}"
    );
    assert_eq!(
        ede(&forged_answer),
        Some((15, "blocked by rule block-trackers".to_owned()))
    );
    assert_eq!(upstream.queries_for(&forged), 0, "never asked upstream");
    let _ = std::fs::remove_dir_all(dir);
}
