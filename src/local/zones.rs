//! Locally served zones: names that have no answer on the public internet,
//! answered here instead of being sent upstream or to the root, as Unbound,
//! Knot Resolver and BIND do by default. Asking the internet for them leaks
//! what a network uses (private reverse lookups reach the AS112 servers) and
//! costs a round trip for an answer known in advance.
//!
//! | zones | answer |
//! |---|---|
//! | `localhost` and every name under it (RFC 6761 §6.3) | A 127.0.0.1, AAAA ::1; other types: no data |
//! | `127.in-addr.arpa`, the `ip6.arpa` name of `::1` | PTR `localhost.` for the loopback address; NXDOMAIN for the rest |
//! | `invalid` (RFC 6761 §6.4), `onion` (RFC 7686), `home.arpa` (RFC 8375), the reverse zones of RFC 1918, RFC 6598 (100.64.0.0/10) and RFC 6303 | NXDOMAIN under the apex |
//!
//! Each zone's apex has an SOA (`localhost. nobody.invalid. 1 3600 1200
//! 604800 10800`) and an NS (`localhost.`), and the SOA goes with every
//! negative answer, as Unbound's do. `test.` is not among them (Unbound's
//! list has it): labs, this project's own tests and its benches forward
//! names under `test.` to an authority of their own.
//!
//! `--local-zone-nodefault ZONE` sends a zone (and the ones under it)
//! upstream again, e.g. `10.in-addr.arpa` for an office resolver that knows
//! its own reverse names; `--no-local-zones` sends all of them.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::protocol::wire::{self, flag, rcode, rtype};
use crate::protocol::{EdnsOut, Request, ResponseWriter, Section};

/// TTL of every local record, and so of negative answers (Unbound's).
const TTL: u32 = 10_800;
/// PTR's type code.
const PTR: u16 = 12;
/// The locally served zones in force.
#[derive(Debug, Clone)]
pub struct LocalZones {
    zones: Vec<LocalZone>,
    /// The top-level labels of `zones` (`localhost`, `arpa`...): a name
    /// ending in any other is not looked up further.
    tops: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct LocalZone {
    /// Presentation form with the trailing dot, for the SOA's owner.
    apex: String,
    /// Lower-case wire form.
    wire: Vec<u8>,
    /// Every name under the apex answers as the apex does (`localhost`).
    redirect: bool,
    /// Owner (lower-case wire), type, RDATA; the apex's SOA first, then its NS.
    records: Vec<(Vec<u8>, u16, Vec<u8>)>,
}

/// A `--local-zone-nodefault` zone that names no locally served zone.
#[derive(Debug, thiserror::Error)]
#[error(
    "--local-zone-nodefault {0}: no locally served zone is at or under it; the zones are \
     localhost, invalid, onion, home.arpa, 127.in-addr.arpa and the private reverse zones \
     (README, \"Locally served zones\")"
)]
pub struct NotLocal(pub String);

impl Default for LocalZones {
    fn default() -> Self {
        let mut zones = vec![localhost()];
        zones.push(static_zone(
            "127.in-addr.arpa",
            &[("1.0.0.127.in-addr.arpa", PTR)],
        ));
        let loopback6 = reverse_v6(Ipv6Addr::LOCALHOST);
        zones.push(static_zone(&loopback6, &[(&loopback6, PTR)]));
        for name in empty_zone_names() {
            zones.push(static_zone(&name, &[]));
        }
        Self::of(zones)
    }
}

impl LocalZones {
    /// None: every name goes upstream (`--no-local-zones`).
    pub fn none() -> Self {
        Self::of(Vec::new())
    }

    fn of(zones: Vec<LocalZone>) -> Self {
        let mut tops: Vec<Vec<u8>> = Vec::new();
        for top in zones.iter().filter_map(|z| last_label(&z.wire)) {
            if !tops.iter().any(|t| t == top) {
                tops.push(top.to_vec());
            }
        }
        Self { zones, tops }
    }

    /// The default zones less each of `exempt` and every zone under it.
    pub fn without(exempt: &[String]) -> Result<Self, NotLocal> {
        let mut zones = Self::default().zones;
        for zone in exempt {
            let mut wire_form = Vec::new();
            let lower = zone.to_ascii_lowercase();
            if wire::push_name(&mut wire_form, &lower).is_none() {
                return Err(NotLocal(zone.clone()));
            }
            let before = zones.len();
            zones.retain(|z| !is_at_or_under(&z.wire, &wire_form));
            if zones.len() == before {
                return Err(NotLocal(zone.clone()));
            }
        }
        Ok(Self::of(zones))
    }

    /// The answer to `req` when its name is in a locally served zone.
    pub fn answer(
        &self,
        req: &Request,
        edns: Option<&EdnsOut<'_>>,
        limit: usize,
    ) -> Option<Vec<u8>> {
        let top = last_label(&req.name_wire)?;
        if !self.tops.iter().any(|t| t == top) {
            return None;
        }
        let zone = self
            .zones
            .iter()
            .filter(|z| is_at_or_under(&req.name_wire, &z.wire))
            .max_by_key(|z| z.wire.len())?;
        Some(zone.answer(req, edns, limit))
    }
}

impl LocalZone {
    fn answer(&self, req: &Request, edns: Option<&EdnsOut<'_>>, limit: usize) -> Vec<u8> {
        let owner: &[u8] = if self.redirect {
            &self.wire
        } else {
            &req.name_wire
        };
        // A name exists when it owns a record or is an empty non-terminal above one.
        let exists = self
            .records
            .iter()
            .any(|(o, _, _)| is_at_or_under(o, owner));
        let code = if exists {
            rcode::NOERROR
        } else {
            rcode::NXDOMAIN
        };
        let mut w = ResponseWriter::new(req, code as u16);
        w.set_flags(flag::AA);
        let asked = |t: u16| req.qtype == t || req.qtype == rtype::ANY;
        let mut answered = false;
        for (_, t, rdata) in self
            .records
            .iter()
            .filter(|(o, t, _)| o == owner && asked(*t))
        {
            w.record_at_question(Section::Answer, *t, TTL, rdata);
            answered = true;
        }
        if !answered {
            w.record_at(
                Section::Authority,
                &self.apex,
                rtype::SOA,
                TTL,
                &self.records[0].2,
            );
        }
        w.finish(edns, limit)
    }
}

/// `localhost.`: A 127.0.0.1 and AAAA ::1, for it and every name under it.
fn localhost() -> LocalZone {
    let mut zone = static_zone("localhost", &[]);
    zone.redirect = true;
    let apex = zone.wire.clone();
    zone.records.push((
        apex.clone(),
        rtype::A,
        Ipv4Addr::LOCALHOST.octets().to_vec(),
    ));
    zone.records
        .push((apex, rtype::AAAA, Ipv6Addr::LOCALHOST.octets().to_vec()));
    zone
}

/// A zone with its SOA and NS, and `(owner, PTR)` records pointing at `localhost.`.
fn static_zone(apex: &str, ptrs: &[(&str, u16)]) -> LocalZone {
    let wire = wire_of(apex);
    let mut records = vec![
        (wire.clone(), rtype::SOA, soa_rdata()),
        (wire.clone(), rtype::NS, localhost_name()),
    ];
    records.extend(
        ptrs.iter()
            .map(|(owner, t)| (wire_of(owner), *t, localhost_name())),
    );
    LocalZone {
        apex: format!("{apex}."),
        wire,
        redirect: false,
        records,
    }
}

/// The zones answered NXDOMAIN under their apex.
fn empty_zone_names() -> Vec<String> {
    let mut names: Vec<String> = ["invalid", "onion", "home.arpa"]
        .into_iter()
        .map(String::from)
        .collect();
    // RFC 1918 and RFC 6598 reverse zones.
    names.push("10.in-addr.arpa".into());
    names.extend((16..=31).map(|b| format!("{b}.172.in-addr.arpa")));
    names.push("168.192.in-addr.arpa".into());
    names.extend((64..=127).map(|b| format!("{b}.100.in-addr.arpa")));
    // RFC 6303 §4.
    names.extend(
        [
            "0.in-addr.arpa",
            "254.169.in-addr.arpa",
            "2.0.192.in-addr.arpa",
            "100.51.198.in-addr.arpa",
            "113.0.203.in-addr.arpa",
            "255.255.255.255.in-addr.arpa",
            "d.f.ip6.arpa",
            "8.e.f.ip6.arpa",
            "9.e.f.ip6.arpa",
            "a.e.f.ip6.arpa",
            "b.e.f.ip6.arpa",
            "8.b.d.0.1.0.0.2.ip6.arpa",
        ]
        .into_iter()
        .map(String::from),
    );
    names.push(reverse_v6(Ipv6Addr::UNSPECIFIED));
    names
}

/// The `ip6.arpa` name of `addr` (32 nibbles, no trailing dot).
fn reverse_v6(addr: Ipv6Addr) -> String {
    let nibbles: Vec<String> = addr
        .octets()
        .iter()
        .rev()
        .flat_map(|b| [b & 0xf, b >> 4])
        .map(|n| format!("{n:x}"))
        .collect();
    format!("{}.ip6.arpa", nibbles.join("."))
}

/// `localhost. nobody.invalid. 1 3600 1200 604800 10800`, as Unbound's.
fn soa_rdata() -> Vec<u8> {
    let mut rdata = localhost_name();
    rdata.extend_from_slice(&wire_of("nobody.invalid"));
    for v in [1u32, 3600, 1200, 604_800, TTL] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    rdata
}

fn localhost_name() -> Vec<u8> {
    wire_of("localhost")
}

fn wire_of(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    wire::push_name(&mut out, name).expect("built-in zone names are valid");
    out
}

/// The last label of a wire-form name (None for the root).
fn last_label(name: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    let mut last = None;
    while let Some(&len) = name.get(pos) {
        if len == 0 {
            break;
        }
        let label = name.get(pos + 1..pos + 1 + len as usize)?;
        last = Some(label);
        pos += 1 + len as usize;
    }
    last
}

/// Whether wire-form `name` is `zone` or a name under it (both lower case).
fn is_at_or_under(name: &[u8], zone: &[u8]) -> bool {
    let Some(start) = name.len().checked_sub(zone.len()) else {
        return false;
    };
    if &name[start..] != zone {
        return false;
    }
    // The suffix must begin at a label boundary, not inside a label.
    let mut pos = 0;
    while pos < start {
        pos += 1 + name[pos] as usize;
    }
    pos == start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_query;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{RData, RecordType};

    fn ask(zones: &LocalZones, name: &str, qtype: RecordType) -> Option<Message> {
        let mut query = Message::query();
        query.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii(name).unwrap(),
            qtype,
        ));
        let req = parse_query(&query.to_vec().unwrap()).unwrap();
        let reply = zones.answer(&req, None, 4096)?;
        Some(Message::from_vec(&reply).unwrap())
    }

    fn soa_owner(m: &Message) -> String {
        m.authorities[0].name.to_ascii()
    }

    #[test]
    fn localhost_and_names_under_it_are_the_loopback_address() {
        let zones = LocalZones::default();
        for name in ["localhost.", "printer.LocalHost."] {
            let a = ask(&zones, name, RecordType::A).unwrap();
            assert!(a.metadata.authoritative);
            assert_eq!(a.answers[0].data, RData::A(Ipv4Addr::LOCALHOST.into()));
            let aaaa = ask(&zones, name, RecordType::AAAA).unwrap();
            assert_eq!(
                aaaa.answers[0].data,
                RData::AAAA(Ipv6Addr::LOCALHOST.into())
            );
            let mx = ask(&zones, name, RecordType::MX).unwrap();
            assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
            assert!(mx.answers.is_empty());
            assert_eq!(soa_owner(&mx), "localhost.");
        }
    }

    #[test]
    fn loopback_reverse_names_point_at_localhost_and_nothing_else_exists() {
        let zones = LocalZones::default();
        for name in [
            "1.0.0.127.in-addr.arpa.",
            &format!("{}.", reverse_v6(Ipv6Addr::LOCALHOST)),
        ] {
            let ptr = ask(&zones, name, RecordType::PTR).unwrap();
            assert_eq!(ptr.answers.len(), 1, "{name}");
            assert_eq!(ptr.answers[0].data.to_string(), "localhost.");
        }
        let other = ask(&zones, "2.0.0.127.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(other.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(soa_owner(&other), "127.in-addr.arpa.");
        // An empty non-terminal above the loopback record exists.
        let ent = ask(&zones, "0.0.127.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn special_use_and_private_reverse_names_are_nxdomain_with_the_zones_soa() {
        let zones = LocalZones::default();
        for (name, apex) in [
            ("foo.invalid.", "invalid."),
            ("x.y.onion.", "onion."),
            ("nas.home.arpa.", "home.arpa."),
            ("1.0.0.10.in-addr.arpa.", "10.in-addr.arpa."),
            ("1.1.31.172.in-addr.arpa.", "31.172.in-addr.arpa."),
            ("5.1.168.192.in-addr.arpa.", "168.192.in-addr.arpa."),
            ("1.1.64.100.in-addr.arpa.", "64.100.in-addr.arpa."),
            ("1.d.f.ip6.arpa.", "d.f.ip6.arpa."),
        ] {
            let m = ask(&zones, name, RecordType::PTR).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(m.metadata.authoritative);
            assert_eq!(soa_owner(&m), apex, "{name}");
        }
        let apex = ask(&zones, "10.in-addr.arpa.", RecordType::SOA).unwrap();
        assert_eq!(apex.answers[0].record_type(), RecordType::SOA);
        let ns = ask(&zones, "invalid.", RecordType::NS).unwrap();
        assert_eq!(ns.answers[0].data.to_string(), "localhost.");
    }

    #[test]
    fn public_names_and_neighbours_of_local_zones_go_upstream() {
        let zones = LocalZones::default();
        for name in [
            "example.com.",
            "1.1.15.172.in-addr.arpa.",
            "1.1.32.172.in-addr.arpa.",
            "1.1.128.100.in-addr.arpa.",
            "8.8.8.8.in-addr.arpa.",
            "foo.test.",
            "notlocalhost.",
            "localhost.example.",
            "arpa.",
            ".",
        ] {
            assert!(ask(&zones, name, RecordType::A).is_none(), "{name}");
        }
    }

    #[test]
    fn exempt_zones_go_upstream_and_an_unknown_one_is_refused() {
        let zones = LocalZones::without(&["10.in-addr.arpa".into(), "ip6.arpa.".into()]).unwrap();
        assert!(ask(&zones, "1.0.0.10.in-addr.arpa.", RecordType::PTR).is_none());
        assert!(ask(&zones, "1.d.f.ip6.arpa.", RecordType::PTR).is_none());
        assert!(ask(&zones, "1.0.168.192.in-addr.arpa.", RecordType::PTR).is_some());
        let err = LocalZones::without(&["example.com".into()]).unwrap_err();
        assert!(err
            .to_string()
            .contains("--local-zone-nodefault example.com"));
        assert!(ask(&LocalZones::none(), "localhost.", RecordType::A).is_none());
    }
}
