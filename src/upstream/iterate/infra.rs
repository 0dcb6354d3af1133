//! The infrastructure cache every worker shares: delegations learned from
//! referrals, addresses of nameserver names, facts about servers, and lame
//! (server, zone) pairs. Four moka caches bounded together by bytes
//! (`Limits::recursion_infra_cache_bytes`), each entry weighed by an
//! estimate of what it holds plus moka's own bookkeeping.

use std::mem::size_of;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::DefaultHashBuilder;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use moka::sync::Cache;

use super::servers::ServerFacts;
use crate::config::limits::{
    RECURSION_LAME_TTL, RECURSION_MAX_DELEGATION_TTL, RECURSION_SERVER_FACTS_TTL,
};

/// A zone cut: the zone's nameserver names and the addresses known for
/// them (glue from the referral).
#[derive(Debug, Clone)]
pub(crate) struct Delegation {
    pub(crate) zone: Name,
    /// In the referral's order (the NXNS bound chases the first ones).
    pub(crate) names: Vec<Name>,
    pub(crate) glue: Vec<Glue>,
    pub(crate) expires: Instant,
    /// What the referral said of the cut's DS RRset, if it was signed.
    pub(crate) parent_side: Option<Box<ParentSide>>,
}

/// An address of one of a delegation's nameservers, as the parent gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Glue {
    pub(crate) ip: IpAddr,
    /// The index in `names` of the nameserver it is for; None for the root
    /// hints, which are addresses without names.
    pub(crate) ns: Option<u16>,
}

impl Delegation {
    pub(crate) fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.glue.iter().map(|g| g.ip)
    }

    /// The glue for nameserver `name`: the parent's word on its addresses,
    /// which the last resort tries when the child's own word fails.
    pub(crate) fn glue_of<'a>(&'a self, name: &Name) -> impl Iterator<Item = IpAddr> + 'a {
        let index = self.names.iter().position(|n| n == name);
        self.glue
            .iter()
            .filter(move |g| index.is_some() && g.ns.map(usize::from) == index)
            .map(|g| g.ip)
    }
}

/// The address an A or AAAA record holds.
pub(crate) fn address(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

/// The glue in `additionals` for `names` that `keep` allows, in record order.
pub(crate) fn glue_for(
    names: &[Name],
    additionals: &[Record],
    keep: impl Fn(&Name) -> bool,
) -> Vec<Glue> {
    additionals
        .iter()
        .filter_map(|r| {
            let ip = address(&r.data)?;
            let ns = names.iter().position(|n| *n == r.name)?;
            keep(&r.name).then(|| Glue {
                ip,
                ns: u16::try_from(ns).ok(),
            })
        })
        .collect()
}

/// The DNSSEC records a signed parent puts in a referral (RFC 4035
/// §3.1.4.1): the child's DS RRset with its RRSIGs, or the NSEC/NSEC3
/// records and RRSIGs proving it has none. Kept with the delegation so the
/// validator's DS fetch for the cut is answered from them, not with a query
/// to the parent (Unbound does the same); unverified until the validator
/// checks them against the parent's keys.
#[derive(Debug, Clone)]
pub(crate) struct ParentSide {
    /// The zone whose server sent the referral.
    pub(crate) parent: Name,
    /// DS and RRSIG(DS) records owned by the cut.
    pub(crate) ds: Vec<Record>,
    /// NSEC, NSEC3 and their RRSIGs, when the referral had no DS.
    pub(crate) denial: Vec<Record>,
}

impl ParentSide {
    /// A referral carries a few DS or NSEC3 records; more is not a referral
    /// worth keeping the DNSSEC part of.
    pub(crate) const MAX_RECORDS: usize = 16;

    /// An estimate that errs high: a record, its owner, and rdata the size
    /// of a 2048-bit RSA signature.
    fn bytes(&self) -> usize {
        name_bytes(&self.parent)
            + (self.ds.len() + self.denial.len()) * (size_of::<Record>() + 256 + 64)
    }
}

/// Addresses found for a nameserver name (empty: it has none, or its
/// lookup failed; kept for a short while so it is not chased per query).
#[derive(Debug, Clone)]
pub(crate) struct HostAddrs {
    pub(crate) addrs: Vec<IpAddr>,
    /// Glue the parent gave for the name that its own zone does not give:
    /// tried last, when the zone's other servers failed (as Unbound falls
    /// back to parent-side addresses).
    pub(crate) glue: Vec<IpAddr>,
    pub(crate) expires: Instant,
}

/// moka's bookkeeping per entry (hash table slot, deque nodes, timers),
/// as measured for the answer cache (`cache::ENTRY_OVERHEAD`), plus the
/// `Arc` counts.
pub(super) const ENTRY_OVERHEAD: usize = 540;

/// Bytes a name holds: inline labels up to hickory's inline capacity, and
/// its wire length again when it spills to the heap (counted always: an
/// estimate that errs high).
fn name_bytes(name: &Name) -> usize {
    size_of::<Name>() + name.len()
}

/// `name`'s last `labels` labels, as `Name::trim_to` gives them, appended
/// one by one to the root: `trim_to` collects the labels into vectors first,
/// an allocation per call, and `closest` makes one per new name.
fn trim_to(name: &Name, labels: usize) -> Name {
    let skip = name.iter().len().saturating_sub(labels);
    name.iter()
        .skip(skip)
        .try_fold(Name::root(), |trimmed, label| trimmed.append_label(label))
        .unwrap_or_else(|_| name.trim_to(labels))
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

pub(crate) struct Infra {
    zones: Cache<Name, Arc<Delegation>, DefaultHashBuilder>,
    hosts: Cache<Name, Arc<HostAddrs>, DefaultHashBuilder>,
    servers: Cache<IpAddr, Arc<Mutex<ServerFacts>>, DefaultHashBuilder>,
    /// Servers that answered `zone`'s questions badly, by [`LameFor`]: one
    /// lame for AAAA is still asked for A (Unbound's `lame_type_A` and
    /// `lame_other`).
    lame: Cache<(IpAddr, Name, LameFor), (), DefaultHashBuilder>,
    /// The most labels any zone learnt has: `closest` looks no deeper
    /// (a new name one label below a known zone cut is otherwise a lookup
    /// that cannot hit, a moka read like any other).
    deepest: AtomicU8,
    /// Whether a server was ever marked lame: until then `is_lame` looks
    /// nothing up (a name clone and a lookup per candidate server).
    any_lame: AtomicBool,
}

impl Infra {
    /// Caches holding `bytes` in all: half for delegations (the most and
    /// the largest entries), a quarter for nameserver addresses, an eighth
    /// each for server facts and lameness. foldhash, as the answer cache:
    /// seeded per process, cheaper than SipHash on names.
    pub(crate) fn new(bytes: u64) -> Self {
        Self {
            zones: Cache::builder()
                .max_capacity(bytes / 2)
                .weigher(|zone: &Name, d: &Arc<Delegation>| {
                    let names: usize = d.names.iter().map(name_bytes).sum();
                    weight(
                        name_bytes(zone)
                            + size_of::<Delegation>()
                            + name_bytes(&d.zone)
                            + names
                            + d.glue.len() * size_of::<Glue>()
                            + d.parent_side.as_ref().map_or(0, |p| p.bytes()),
                    )
                })
                .time_to_live(RECURSION_MAX_DELEGATION_TTL)
                .build_with_hasher(DefaultHashBuilder::default()),
            hosts: Cache::builder()
                .max_capacity(bytes / 4)
                .weigher(|name: &Name, h: &Arc<HostAddrs>| {
                    weight(
                        name_bytes(name)
                            + size_of::<HostAddrs>()
                            + (h.addrs.len() + h.glue.len()) * size_of::<IpAddr>(),
                    )
                })
                .time_to_live(RECURSION_MAX_DELEGATION_TTL)
                .build_with_hasher(DefaultHashBuilder::default()),
            servers: Cache::builder()
                .max_capacity(bytes / 8)
                .weigher(|_: &IpAddr, _: &Arc<Mutex<ServerFacts>>| {
                    weight(size_of::<IpAddr>() + size_of::<Mutex<ServerFacts>>())
                })
                .time_to_idle(RECURSION_SERVER_FACTS_TTL)
                .build_with_hasher(DefaultHashBuilder::default()),
            lame: Cache::builder()
                .max_capacity(bytes / 8)
                .weigher(|(_, zone, _): &(IpAddr, Name, LameFor), _: &()| {
                    weight(size_of::<IpAddr>() + name_bytes(zone))
                })
                .time_to_live(RECURSION_LAME_TTL)
                .build_with_hasher(DefaultHashBuilder::default()),
            deepest: AtomicU8::new(0),
            any_lame: AtomicBool::new(false),
        }
    }

    /// Bytes held by the weighers' count, all four caches (after moka's
    /// deferred maintenance, which this runs).
    #[cfg(test)]
    pub(crate) fn weighted_bytes(&self) -> u64 {
        self.zones.run_pending_tasks();
        self.hosts.run_pending_tasks();
        self.servers.run_pending_tasks();
        self.lame.run_pending_tasks();
        self.zones.weighted_size()
            + self.hosts.weighted_size()
            + self.servers.weighted_size()
            + self.lame.weighted_size()
    }

    /// The deepest known delegation at or above `name`, if any unexpired.
    pub(crate) fn closest(&self, name: &Name, now: Instant) -> Option<Arc<Delegation>> {
        let labels = name.num_labels().min(self.deepest.load(Ordering::Relaxed));
        (0..=labels).rev().find_map(|n| {
            let zone = trim_to(name, usize::from(n));
            self.zones.get(&zone).filter(|d| d.expires > now)
        })
    }

    /// The unexpired delegation of exactly `zone`, if known.
    pub(crate) fn delegation(&self, zone: &Name, now: Instant) -> Option<Arc<Delegation>> {
        self.zones.get(zone).filter(|d| d.expires > now)
    }

    pub(crate) fn learn(&self, delegation: Delegation) {
        self.deepest
            .fetch_max(delegation.zone.num_labels(), Ordering::Relaxed);
        self.zones
            .insert(delegation.zone.clone(), Arc::new(delegation));
    }

    pub(crate) fn host(&self, name: &Name, now: Instant) -> Option<Arc<HostAddrs>> {
        self.hosts.get(name).filter(|h| h.expires > now)
    }

    pub(crate) fn learn_host(
        &self,
        name: Name,
        addrs: Vec<IpAddr>,
        glue: Vec<IpAddr>,
        ttl: Duration,
    ) {
        let ttl = ttl.min(RECURSION_MAX_DELEGATION_TTL);
        let entry = HostAddrs {
            addrs,
            glue,
            expires: Instant::now() + ttl,
        };
        self.hosts.insert(name, Arc::new(entry));
    }

    /// Runs `f` on `ip`'s facts (created on first use).
    pub(crate) fn server<T>(&self, ip: IpAddr, f: impl FnOnce(&mut ServerFacts) -> T) -> T {
        // A plain read first: `get_with` allocates for its key even when
        // the entry is there, which it nearly always is.
        let facts = match self.servers.get(&ip) {
            Some(facts) => facts,
            None => self.servers.get_with(ip, Default::default),
        };
        let mut facts = facts.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut facts)
    }

    /// `ip`'s facts as they are, without creating an entry.
    pub(crate) fn peek(&self, ip: IpAddr) -> ServerFacts {
        self.servers
            .get(&ip)
            .map(|f| f.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    pub(crate) fn mark_lame(&self, ip: IpAddr, zone: &Name, qtype: RecordType) {
        self.lame.insert((ip, zone.clone(), LameFor::of(qtype)), ());
        self.any_lame.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_lame(&self, ip: IpAddr, zone: &Name, qtype: RecordType) -> bool {
        self.any_lame.load(Ordering::Relaxed)
            && self
                .lame
                .contains_key(&(ip, zone.clone(), LameFor::of(qtype)))
    }
}

/// The questions a server was found lame for. Servers (and load balancers
/// in front of them) that answer A but botch AAAA, or the reverse, are
/// common: lameness for one must not cost the other (Unbound keeps the
/// same two classes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum LameFor {
    A,
    Other,
}

impl LameFor {
    fn of(qtype: RecordType) -> Self {
        if qtype == RecordType::A {
            LameFor::A
        } else {
            LameFor::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::name;

    #[test]
    fn the_closest_delegation_is_the_deepest_unexpired_one() {
        let infra = Infra::new(100);
        let now = Instant::now();
        for (zone, ttl) in [
            ("test.", 60),
            ("example.test.", 60),
            ("deep.example.test.", 0),
        ] {
            infra.learn(Delegation {
                zone: name(zone),
                names: vec![],
                glue: vec![],
                expires: now + Duration::from_secs(ttl),
                parent_side: None,
            });
        }
        let found = infra.closest(&name("www.deep.example.test."), now).unwrap();
        assert_eq!(found.zone, name("example.test."));
        assert!(infra.closest(&name("www.other."), now).is_none());
    }

    #[test]
    fn trimming_a_name_gives_what_hickory_trim_to_gives() {
        for text in ["www.Example.test.", "*.wild.example.test.", "."] {
            let full = name(text);
            for labels in 0..=full.iter().len() {
                let trimmed = trim_to(&full, labels);
                assert_eq!(trimmed, full.trim_to(labels), "{text} to {labels}");
                assert_eq!(trimmed.to_string(), full.trim_to(labels).to_string());
            }
        }
    }

    #[test]
    fn the_byte_budget_binds_however_many_delegations_are_learned() {
        let budget = 64 << 10;
        let infra = Infra::new(budget);
        let now = Instant::now();
        let learned = 2_000;
        for i in 0..learned {
            let zone = name(&format!("zone-with-a-long-enough-name-{i}.example.test."));
            infra.learn(Delegation {
                names: (0..8)
                    .map(|n| name(&format!("ns{n}.a-long-nameserver-name.{zone}")))
                    .collect(),
                glue: vec![
                    Glue {
                        ip: IpAddr::from([192, 0, 2, 1]),
                        ns: Some(0)
                    };
                    8
                ],
                zone,
                expires: now + Duration::from_secs(60),
                parent_side: None,
            });
            infra.learn_host(
                name(&format!("ns{i}.example.test.")),
                vec![],
                vec![],
                Duration::from_secs(60),
            );
            infra.server(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), |_| ());
        }
        assert!(
            infra.weighted_bytes() <= budget,
            "{} bytes",
            infra.weighted_bytes()
        );
        // Each delegation above weighs over 1 KiB, so its half of the
        // budget holds fewer than 32: an entry bound would keep them all.
        let kept = infra.zones.entry_count();
        assert!(kept > 0 && kept < 32, "{kept} delegations kept");
    }
}
