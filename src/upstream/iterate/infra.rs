//! The infrastructure cache every worker shares: delegations learned from
//! referrals, addresses of nameserver names, facts about servers, and lame
//! (server, zone) pairs. Entry-bounded moka caches
//! (`Limits::recursion_infra_cache_entries` each).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;
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
    pub(crate) addrs: Vec<IpAddr>,
    pub(crate) expires: Instant,
}

/// Addresses found for a nameserver name (empty: it has none, or its
/// lookup failed; kept for a short while so it is not chased per query).
#[derive(Debug, Clone)]
pub(crate) struct HostAddrs {
    pub(crate) addrs: Vec<IpAddr>,
    pub(crate) expires: Instant,
}

pub(crate) struct Infra {
    zones: Cache<Name, Arc<Delegation>>,
    hosts: Cache<Name, Arc<HostAddrs>>,
    servers: Cache<IpAddr, Arc<Mutex<ServerFacts>>>,
    lame: Cache<(IpAddr, Name), ()>,
}

impl Infra {
    pub(crate) fn new(entries: u64) -> Self {
        Self {
            zones: Cache::builder()
                .max_capacity(entries)
                .time_to_live(RECURSION_MAX_DELEGATION_TTL)
                .build(),
            hosts: Cache::builder()
                .max_capacity(entries)
                .time_to_live(RECURSION_MAX_DELEGATION_TTL)
                .build(),
            servers: Cache::builder()
                .max_capacity(entries)
                .time_to_idle(RECURSION_SERVER_FACTS_TTL)
                .build(),
            lame: Cache::builder()
                .max_capacity(entries)
                .time_to_live(RECURSION_LAME_TTL)
                .build(),
        }
    }

    /// The deepest known delegation at or above `name`, if any unexpired.
    pub(crate) fn closest(&self, name: &Name, now: Instant) -> Option<Arc<Delegation>> {
        let labels = name.num_labels();
        (0..=labels).rev().find_map(|n| {
            let zone = name.trim_to(usize::from(n));
            self.zones.get(&zone).filter(|d| d.expires > now)
        })
    }

    pub(crate) fn learn(&self, delegation: Delegation) {
        self.zones
            .insert(delegation.zone.clone(), Arc::new(delegation));
    }

    pub(crate) fn host(&self, name: &Name, now: Instant) -> Option<Arc<HostAddrs>> {
        self.hosts.get(name).filter(|h| h.expires > now)
    }

    pub(crate) fn learn_host(&self, name: Name, addrs: Vec<IpAddr>, ttl: Duration) {
        let ttl = ttl.min(RECURSION_MAX_DELEGATION_TTL);
        let entry = HostAddrs {
            addrs,
            expires: Instant::now() + ttl,
        };
        self.hosts.insert(name, Arc::new(entry));
    }

    /// Runs `f` on `ip`'s facts (created on first use).
    pub(crate) fn server<T>(&self, ip: IpAddr, f: impl FnOnce(&mut ServerFacts) -> T) -> T {
        let facts = self.servers.get_with(ip, Default::default);
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

    pub(crate) fn mark_lame(&self, ip: IpAddr, zone: &Name) {
        self.lame.insert((ip, zone.clone()), ());
    }

    pub(crate) fn is_lame(&self, ip: IpAddr, zone: &Name) -> bool {
        self.lame.contains_key(&(ip, zone.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

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
                addrs: vec![],
                expires: now + Duration::from_secs(ttl),
            });
        }
        let found = infra.closest(&name("www.deep.example.test."), now).unwrap();
        assert_eq!(found.zone, name("example.test."));
        assert!(infra.closest(&name("www.other."), now).is_none());
    }
}
