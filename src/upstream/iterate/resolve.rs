//! The iteration: from the closest known zone cut down to the servers that
//! answer for a name, one referral at a time, with QNAME minimisation.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use smallvec::SmallVec;

use super::assemble::{cname_at, with_rrsigs};
use super::budget::Budget;
use super::exchange::{exchange, refuses_edns, ExchangeError, How};
use super::infra::{address, glue_for, Delegation, Glue, ParentSide};
use super::servers::choose;
use super::Engine;
use crate::config::limits::{
    RECURSION_EDNS_PAYLOAD, RECURSION_GLUELESS_NS_FOLLOWED, RECURSION_GLUELESS_PARALLEL,
    RECURSION_MAX_DELEGATION_TTL, RECURSION_QNAME_MIN_STEPS,
};
use crate::upstream::UpstreamError;

/// The authoritative response for one name, and the zone whose servers
/// gave it: the bailiwick its records are trusted within.
pub(crate) struct Reply {
    pub(crate) zone: Name,
    pub(crate) message: Message,
}

/// What a response is to the iteration.
pub(crate) enum Kind {
    /// A zone cut below the zone asked: go there.
    Referral(Delegation),
    /// Data, a CNAME, NODATA or NXDOMAIN from the zone's servers.
    Final,
}

/// One question put to a zone's servers (`Engine::ask`).
struct Question<'a> {
    name: &'a Name,
    qtype: RecordType,
    dnssec_ok: bool,
    /// A server that answers a minimised question badly is not marked lame.
    minimised: bool,
}

/// What a zone's servers did so far for one question (`Engine::ask`).
#[derive(Default)]
struct Attempts {
    addrs: Vec<IpAddr>,
    tried: Vec<IpAddr>,
    /// Whether the glueless nameserver names were looked up.
    chased: bool,
    /// Whether the parent's glue that the child contradicts was added.
    parents_glue: bool,
    /// Servers whose short wait ran out (a busy moment, theirs or ours):
    /// asked once more with the backed-off wait before the zone fails, as
    /// Unbound retries a server; `retried` keeps it to once.
    retry: Vec<IpAddr>,
    retried: Vec<IpAddr>,
    lame: usize,
    timeouts: usize,
    unreachable: usize,
    /// The first usable response from a server passed over for a better
    /// one, used only when no server of the zone gives a better one: an
    /// answer from a recursive resolver's cache (RA=1, AA=0; Unbound's
    /// "recursion lame" servers, asked last), or a response without the
    /// RRSIGs a signed zone's servers send (Unbound's "DNSSEC lame").
    last_resort: Option<(Message, Kind)>,
}

impl Engine {
    /// The root as the hints give it (see `prime` for when they are used).
    pub(crate) fn root(&self) -> Arc<Delegation> {
        Arc::new(Delegation {
            zone: Name::root(),
            names: Vec::new(),
            glue: self.roots.iter().map(|&ip| Glue { ip, ns: None }).collect(),
            expires: Instant::now() + RECURSION_MAX_DELEGATION_TTL,
            parent_side: None,
        })
    }

    fn socket(&self, ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, self.ports.get(&ip).copied().unwrap_or(53))
    }

    pub(crate) fn allowed(&self, ip: &IpAddr) -> bool {
        !self.deny.iter().any(|net| net.contains(ip))
    }

    /// Resolves `name`/`qtype` down to the zone that answers it and returns
    /// that zone's response. `depth` counts the steps already taken on the
    /// path here (CNAMEs, glueless lookups).
    pub(crate) fn iterate<'a>(
        &'a self,
        budget: &'a Budget,
        name: &'a Name,
        qtype: RecordType,
        depth: usize,
        dnssec_ok: bool,
    ) -> BoxFuture<'a, Result<Reply, UpstreamError>> {
        Box::pin(self.iterate_from(budget, name, qtype, depth, dnssec_ok))
    }

    pub(crate) async fn iterate_from(
        &self,
        budget: &Budget<'_>,
        name: &Name,
        qtype: RecordType,
        mut depth: usize,
        dnssec_ok: bool,
    ) -> Result<Reply, UpstreamError> {
        // RFC 4035 §4.2: a DS RRset lives on the parent side of the cut, so
        // the iteration stops above the name's own zone.
        let below = if qtype == RecordType::DS && !name.is_root() {
            name.base_name()
        } else {
            name.clone()
        };
        let mut zone = match self.infra.closest(&below, Instant::now()) {
            Some(zone) => zone,
            None => self.root_servers(budget).await,
        };
        let labels = usize::from(name.num_labels());
        let mut known = usize::from(zone.zone.num_labels());
        let mut minimise = self.qname_minimisation;
        let mut steps = 0;
        loop {
            budget.check_depth(depth)?;
            // RFC 9156: one more label than the zone has, asked as A (the
            // type that passes middleboxes and broken servers best, §2.1),
            // until the full name; relaxed: the full name after an error.
            let next = known.max(usize::from(zone.zone.num_labels())) + 1;
            let minimised = minimise && next < labels && steps < RECURSION_QNAME_MIN_STEPS;
            let (ask, ask_type) = if minimised {
                (name.trim_to(next), RecordType::A)
            } else {
                (name.clone(), qtype)
            };
            let asked = self
                .ask(budget, &zone, &ask, ask_type, depth, dnssec_ok, minimised)
                .await;
            let (message, kind) = match asked {
                // Relaxed mode (RFC 9156 §2.3): a zone whose servers choke on
                // the minimised question gets the full one.
                Err(UpstreamError::Resolution(_)) if minimised && !budget.exceeded() => {
                    minimise = false;
                    continue;
                }
                other => other?,
            };
            depth += 1;
            match kind {
                Kind::Referral(child) if !(qtype == RecordType::DS && child.zone == *name) => {
                    let child = Arc::new(child);
                    self.infra.learn((*child).clone());
                    known = known.max(usize::from(child.zone.num_labels()));
                    zone = child;
                }
                Kind::Final | Kind::Referral(_) if minimised => {
                    if message.metadata.response_code == ResponseCode::NXDomain {
                        // RFC 8020 would end here; relaxed mode (RFC 9156
                        // §2.3) asks the full name, as some servers answer
                        // NXDOMAIN for empty non-terminals.
                        minimise = false;
                    } else {
                        known = next;
                        steps += 1;
                    }
                }
                Kind::Final | Kind::Referral(_) => {
                    return Ok(Reply {
                        zone: zone.zone.clone(),
                        message,
                    })
                }
            }
        }
    }

    /// Every address of `zone`'s servers known now: glue, and addresses
    /// found for its nameserver names.
    fn addresses(&self, zone: &Delegation, now: Instant) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = zone.addrs().collect();
        for name in &zone.names {
            if let Some(host) = self.infra.host(name, now) {
                addrs.extend(host.addrs.iter().copied());
            }
        }
        addrs.sort();
        addrs.dedup();
        let root = zone.zone.is_root();
        addrs.retain(|ip| (root && self.roots.contains(ip)) || self.allowed(ip));
        addrs
    }

    /// Asks `zone`'s servers, best first, until one answers usably. A
    /// server that answers a `minimised` question badly is not marked lame:
    /// it may still answer the full one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn ask(
        &self,
        budget: &Budget<'_>,
        zone: &Delegation,
        name: &Name,
        qtype: RecordType,
        depth: usize,
        dnssec_ok: bool,
        minimised: bool,
    ) -> Result<(Message, Kind), UpstreamError> {
        let mut attempts = Attempts {
            addrs: self.addresses(zone, Instant::now()),
            ..Attempts::default()
        };
        let question = Question {
            name,
            qtype,
            dnssec_ok,
            minimised,
        };
        loop {
            let (mut candidates, held) = self.candidates(zone, qtype, &attempts, Instant::now());
            // Only servers a bogus attempt answered from are left: the
            // zone's glueless nameservers may be the others.
            if !attempts.chased && !candidates.is_empty() && budget.all_struck(&candidates) {
                attempts.chased = true;
                let more = self.chase_glueless(budget, zone, depth).await;
                attempts.addrs.extend(more);
                continue;
            }
            budget.keep_the_least_struck(&mut candidates);
            let Some(ip) = choose(&candidates) else {
                if let Err(error) = self.widen(budget, zone, depth, &mut attempts, held).await {
                    return attempts.last_resort.take().ok_or(error);
                }
                continue;
            };
            attempts.tried.push(ip);
            budget.charge()?;
            let asked = self.ask_server(budget, zone, ip, &question, &mut attempts);
            if let Some(done) = asked.await? {
                return Ok(done);
            }
        }
    }

    /// The addresses not tried yet, with their rank, and how many were left
    /// out because they are held down after timeouts.
    fn candidates(
        &self,
        zone: &Delegation,
        qtype: RecordType,
        attempts: &Attempts,
        now: Instant,
    ) -> (SmallVec<[(IpAddr, Duration); 8]>, usize) {
        let mut held = 0;
        let candidates = attempts
            .addrs
            .iter()
            .filter(|ip| {
                !attempts.tried.contains(ip) && !self.infra.is_lame(**ip, &zone.zone, qtype)
            })
            .filter_map(|ip| {
                let facts = self.infra.peek(*ip);
                if facts.held_down(now) {
                    held += 1;
                    None
                } else {
                    Some((*ip, facts.rank()))
                }
            })
            .collect();
        (candidates, held)
    }

    /// Every candidate was tried: more addresses from the glueless
    /// nameserver names (once), else the servers to retry with their
    /// backed-off wait (once), else the zone fails.
    async fn widen(
        &self,
        budget: &Budget<'_>,
        zone: &Delegation,
        depth: usize,
        attempts: &mut Attempts,
        held: usize,
    ) -> Result<(), UpstreamError> {
        if !attempts.chased {
            attempts.chased = true;
            let more = self.chase_glueless(budget, zone, depth).await;
            if !more.is_empty() {
                attempts.addrs.extend(more);
                return Ok(());
            }
        }
        if !attempts.retry.is_empty() {
            let retry = std::mem::take(&mut attempts.retry);
            attempts.tried.retain(|ip| !retry.contains(ip));
            attempts.retried.extend(retry);
            return Ok(());
        }
        if !attempts.parents_glue {
            attempts.parents_glue = true;
            let more = self.parents_glue(zone, &attempts.addrs, Instant::now());
            if !more.is_empty() {
                attempts.addrs.extend(more);
                return Ok(());
            }
        }
        if held > 0 {
            self.stats.held_down.fetch_add(1, Ordering::Relaxed);
        }
        let Attempts {
            lame,
            timeouts,
            unreachable,
            ..
        } = *attempts;
        Err(UpstreamError::Resolution(format!(
            "no server of zone {} answered usably ({} addresses: {lame} lame, \
             {timeouts} timed out, {held} held down after timeouts, \
             {unreachable} unreachable)",
            zone.zone,
            attempts.addrs.len()
        )))
    }

    /// The last resort: addresses the parent gave as glue for `zone`'s
    /// nameservers that their own zone contradicts. A child that gives its
    /// nameserver a wrong address is still reached where the parent points
    /// (Unbound's parent-side fallback).
    fn parents_glue(&self, zone: &Delegation, known: &[IpAddr], now: Instant) -> Vec<IpAddr> {
        let mut more: Vec<IpAddr> = zone
            .names
            .iter()
            .filter_map(|name| self.infra.host(name, now))
            .flat_map(|host| host.glue.clone())
            .filter(|ip| !known.contains(ip) && self.allowed(ip))
            .collect();
        more.sort();
        more.dedup();
        more
    }

    /// One exchange with server `ip`: the response and what it is to the
    /// iteration when usable, None to go on with another server (or this
    /// one again without EDNS or 0x20), what the server did noted in the
    /// infrastructure cache and in `attempts`.
    async fn ask_server(
        &self,
        budget: &Budget<'_>,
        zone: &Delegation,
        ip: IpAddr,
        question: &Question<'_>,
        attempts: &mut Attempts,
    ) -> Result<Option<(Message, Kind)>, UpstreamError> {
        let facts = self.infra.peek(ip);
        let how = How {
            edns: !facts.no_edns,
            dnssec_ok: question.dnssec_ok,
            randomize_case: self.case_randomization && !facts.no_case,
            payload: RECURSION_EDNS_PAYLOAD,
            timeout: facts.timeout(self.limits.recursion_attempt_timeout),
        };
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        let server = self.socket(ip);
        match exchange(budget.sockets(), server, question.name, question.qtype, how).await {
            Ok(done) if how.edns && refuses_edns(&done.message) => {
                self.infra.server(ip, |f| f.no_edns = true);
                attempts.tried.pop();
            }
            Ok(done) => {
                if done.over_tcp {
                    self.stats.tcp.fetch_add(1, Ordering::Relaxed);
                }
                self.infra.server(ip, |f| f.answered(done.rtt));
                // Strikes after a bogus answer are only ever given when validating.
                if self.validator.is_some() {
                    budget.answered(ip);
                }
                let mut message = self.scrub(done.message);
                if question.qtype == RecordType::DS {
                    ds_from_referral(&mut message, question.name);
                }
                match classify(&message, &zone.zone, question.name) {
                    Some(kind) if self.passed_over(zone, &how, &kind, &message) => {
                        attempts.last_resort.get_or_insert((message, kind));
                        attempts.lame += 1;
                        return Ok(None);
                    }
                    Some(kind) => return Ok(Some((message, kind))),
                    None => {}
                }
                if !question.minimised && message.metadata.response_code != ResponseCode::ServFail {
                    self.infra.mark_lame(ip, &zone.zone, question.qtype);
                }
                attempts.lame += 1;
            }
            Err(ExchangeError::Overloaded) => return Err(UpstreamError::Overloaded),
            Err(ExchangeError::OtherCase) => {
                self.infra.server(ip, |f| f.no_case = true);
                attempts.tried.pop();
            }
            Err(error @ (ExchangeError::Timeout | ExchangeError::Network)) => {
                self.unanswered(ip, how.timeout, error, attempts);
            }
        }
        Ok(None)
    }

    /// Whether a usable response is kept only as the last resort, another
    /// server of the zone asked first: an answer from a recursive
    /// resolver's cache, or a DNSSEC-lame response (asked with EDNS and DO).
    fn passed_over(&self, zone: &Delegation, how: &How, kind: &Kind, message: &Message) -> bool {
        let from_a_cache = matches!(kind, Kind::Final) && answered_from_a_cache(message);
        from_a_cache || (how.edns && how.dnssec_ok && self.dnssec_lame(zone, message))
    }

    /// A response without a single RRSIG from a server of a zone the
    /// validator expects signed (a trust anchor's zone, or a cut whose
    /// parent gave a DS RRset): a server that serves the zone unsigned
    /// (an old copy, a misconfigured secondary), "DNSSEC lame" in Unbound's
    /// words. Every answer, denial and referral of a signed zone carries
    /// one, so another server of the zone is asked first.
    fn dnssec_lame(&self, zone: &Delegation, message: &Message) -> bool {
        let Some(validator) = &self.validator else {
            return false;
        };
        let signed_cut = zone.parent_side.as_ref().is_some_and(|p| !p.ds.is_empty());
        let expected = signed_cut || validator.anchored_at(&zone.zone);
        expected && !validator.negative_anchor(&zone.zone) && !has_rrsigs(message)
    }

    /// Notes a server that did not answer within `waited`. An unreachable
    /// address (no IPv6 route, ICMP refused) is counted like a timeout:
    /// held down after a few, it stops costing every resolution an attempt
    /// from its budget. A short wait that ran out is retried once.
    fn unanswered(
        &self,
        ip: IpAddr,
        waited: Duration,
        error: ExchangeError,
        attempts: &mut Attempts,
    ) {
        let limits = &self.limits;
        let full =
            matches!(error, ExchangeError::Network) || waited >= limits.recursion_attempt_timeout;
        self.infra.server(ip, |f| {
            f.timed_out(
                waited,
                full,
                limits.recursion_server_timeouts,
                limits.recursion_failure_ttl_max,
                Instant::now(),
            )
        });
        match error {
            ExchangeError::Timeout => {
                attempts.timeouts += 1;
                if !full && !attempts.retried.contains(&ip) {
                    attempts.retry.push(ip);
                }
            }
            _ => attempts.unreachable += 1,
        }
    }

    /// Finds addresses for `zone`'s nameserver names that came without glue:
    /// the first [`RECURSION_GLUELESS_NS_FOLLOWED`] names outside the zone
    /// (in-zone names without glue cannot be resolved), a few at a time,
    /// stopping at the first that has addresses. Results, failures too, go to
    /// the infrastructure cache, so the next query does not chase them again.
    async fn chase_glueless(
        &self,
        budget: &Budget<'_>,
        zone: &Delegation,
        depth: usize,
    ) -> Vec<IpAddr> {
        let now = Instant::now();
        let names: Vec<Name> = zone
            .names
            .iter()
            .filter(|n| !zone.zone.zone_of(n))
            .take(RECURSION_GLUELESS_NS_FOLLOWED)
            .filter(|n| self.infra.host(n, now).is_none())
            .cloned()
            .collect();
        let mut lookups = stream::iter(names)
            .map(|n| async move { self.lookup_host(budget, &n, depth + 1).await })
            .buffer_unordered(RECURSION_GLUELESS_PARALLEL);
        while let Some(addrs) = lookups.next().await {
            if !addrs.is_empty() {
                return addrs;
            }
        }
        Vec::new()
    }

    /// The addresses of nameserver `name`, resolved from the top: A and
    /// AAAA asked side by side, as Unbound does for a nameserver without
    /// glue, so a server with only an IPv6 address (or whose A lookup
    /// fails) is still reached.
    async fn lookup_host(&self, budget: &Budget<'_>, name: &Name, depth: usize) -> Vec<IpAddr> {
        let (v4, v6) = futures_util::join!(
            self.lookup_addresses(budget, name, RecordType::A, depth),
            self.lookup_addresses(budget, name, RecordType::AAAA, depth),
        );
        let mut ttl = self.limits.recursion_failure_ttl;
        let mut addrs = Vec::new();
        let mut glue = Vec::new();
        for found in [v4, v6].into_iter().flatten() {
            glue.extend(found.glue);
            if found.addrs.is_empty() {
                continue;
            }
            ttl = if addrs.is_empty() {
                found.ttl
            } else {
                ttl.min(found.ttl)
            };
            addrs.extend(found.addrs);
        }
        addrs.retain(|ip| self.allowed(ip));
        // Both lookups met the same delegation: its glue came twice.
        glue.sort();
        glue.dedup();
        glue.retain(|ip| !addrs.contains(ip));
        self.infra
            .learn_host(name.clone(), addrs.clone(), glue, ttl);
        addrs
    }

    /// `name`'s addresses of type `qtype` (A or AAAA) and their TTL, with
    /// the glue for `name` of the zone that answered; None when the lookup
    /// failed. A CNAME is followed (at most `recursion_max_cname_chain` of
    /// them, each iteration charged to the budget): RFC 2181 §10.3 says a
    /// nameserver's name must not be an alias, but zones that do it exist,
    /// and Unbound and BIND reach them.
    async fn lookup_addresses(
        &self,
        budget: &Budget<'_>,
        name: &Name,
        qtype: RecordType,
        depth: usize,
    ) -> Option<HostLookup> {
        let mut owner = name.clone();
        let mut ttl = u32::MAX;
        let mut followed = 0;
        loop {
            // With DO when validating, as every other question (Unbound sets
            // DO on all its queries): a referral met on the way keeps its DS
            // records or proof, and the validator needs no DS query later.
            let reply = self
                .iterate(budget, &owner, qtype, depth, self.validator.is_some())
                .await
                .ok()?;
            let answers = &reply.message.answers;
            let mut moved = false;
            // The chain within this answer while it stays in the answering
            // zone (what is outside is not that server's to give), then the
            // last name's addresses.
            while let Some((cname, target)) = cname_at(answers, &owner) {
                moved = true;
                followed += 1;
                if followed > self.limits.recursion_max_cname_chain || target == *name {
                    return None;
                }
                ttl = ttl.min(cname.ttl);
                owner = target;
                if !reply.zone.zone_of(&owner) {
                    break;
                }
            }
            let in_zone = reply.zone.zone_of(&owner);
            let addrs: Vec<IpAddr> = answers
                .iter()
                .filter(|r| in_zone && r.name == owner)
                .filter_map(|r| {
                    let ip = address(&r.data)?;
                    ttl = ttl.min(r.ttl);
                    Some(ip)
                })
                .collect();
            if !addrs.is_empty() || !moved {
                let glue = match self.infra.delegation(&reply.zone, Instant::now()) {
                    Some(zone) if !moved => zone.glue_of(name).collect(),
                    _ => Vec::new(),
                };
                return Some(HostLookup {
                    addrs,
                    glue,
                    ttl: Duration::from_secs(u64::from(ttl)),
                });
            }
        }
    }
}

/// What one lookup of a nameserver's addresses found.
struct HostLookup {
    addrs: Vec<IpAddr>,
    /// The parent's glue for the name, from the delegation of the zone
    /// that answered.
    glue: Vec<IpAddr>,
    ttl: Duration,
}

/// What a response from `zone`'s server for `asked` is; `None`: unusable
/// (lame: REFUSED, SERVFAIL, a referral upwards or sideways, the zone's NS
/// set without AA and without an answer, or TC=1 over TCP).
fn classify(message: &Message, zone: &Name, asked: &Name) -> Option<Kind> {
    let rcode = message.metadata.response_code;
    // A DNAME above the name answers it too, with or without the CNAME a
    // server synthesizes (RFC 6672 §3.4: old servers send none).
    let dname = |r: &Record| r.record_type() == RecordType::DNAME && r.name.zone_of(asked);
    // YXDOMAIN with that DNAME: the new name would be too long (§2.2), an
    // answer, not a failure.
    let too_long = rcode == ResponseCode::YXDomain && message.answers.iter().any(dname);
    if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) && !too_long {
        return None;
    }
    // A truncated answer here came over TCP (UDP's is asked again there):
    // its records are a part of the answer at best, and there is no
    // larger transport left to ask.
    if message.metadata.truncation {
        return None;
    }
    if message.answers.iter().any(|r| r.name == *asked || dname(r))
        || rcode == ResponseCode::NXDomain
    {
        return Some(Kind::Final);
    }
    let cut = message.authorities.iter().find_map(|r| match r.data {
        RData::NS(_) if r.name != *zone && zone.zone_of(&r.name) && r.name.zone_of(asked) => {
            Some(r.name.clone())
        }
        _ => None,
    });
    if let Some(cut) = cut {
        return Some(Kind::Referral(referral(message, zone, &cut)));
    }
    let has_soa = message
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA);
    // NS records above or beside the zone and no SOA: an upward referral,
    // which a server not serving the zone sends, AA or not (Unbound calls it
    // lame too); not the NODATA an empty answer with AA otherwise is.
    let upward = message
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NS && !zone.zone_of(&r.name));
    // No SOA and no NS at all, AA or not: NODATA from a server that leaves
    // the proof out (Unbound reads it so, iter_primenoglue). An NS set
    // without AA and without an answer is a server answering from its
    // delegation data, not the zone's: asked of another server.
    let no_ns = !message
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NS);
    (has_soa || no_ns || (message.metadata.authoritative && !upward)).then_some(Kind::Final)
}

/// A DS question answered with the referral to that very zone (servers of
/// both the parent and the child may answer from the child's side, see the
/// cut, and refer), its authority section holding the parent's DS RRset for
/// the name: that RRset is the answer, and becomes the whole message, as
/// Unbound's scrubber makes it (iter_ds_referral). Its RRSIGs still have to
/// validate; nothing else of the referral is kept.
fn ds_from_referral(message: &mut Message, asked: &Name) {
    let referral_with_ds = message.answers.is_empty()
        && message.metadata.response_code == ResponseCode::NoError
        && message
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::DS && r.name == *asked);
    if !referral_with_ds {
        return;
    }
    let authorities = std::mem::take(&mut message.authorities);
    message.answers = with_rrsigs(&authorities, &[RecordType::DS])
        .filter(|r| r.name == *asked)
        .cloned()
        .collect();
    message.additionals.clear();
}

/// Whether the answer or authority section holds an RRSIG.
fn has_rrsigs(message: &Message) -> bool {
    let rrsig = |r: &Record| r.record_type() == RecordType::RRSIG;
    message.answers.iter().any(rrsig) || message.authorities.iter().any(rrsig)
}

/// A final answer with RA=1 and AA=0: a recursive resolver named as the
/// zone's server answered from its cache, where a forged or stale record
/// may sit (Unbound's iter_ranoaa_lame). A referral, which has no AA
/// either, is not one of these.
fn answered_from_a_cache(message: &Message) -> bool {
    message.metadata.recursion_available && !message.metadata.authoritative
}

/// The delegation to `cut` a referral from `zone`'s server carries: its NS
/// names in order, and glue only for names inside `zone` (what the server
/// is authoritative for; anything else could be a poisoning attempt).
fn referral(message: &Message, zone: &Name, cut: &Name) -> Delegation {
    let mut names = Vec::new();
    let mut ttl = RECURSION_MAX_DELEGATION_TTL.as_secs() as u32;
    for record in &message.authorities {
        if let RData::NS(ns) = &record.data {
            if record.name == *cut && !names.contains(&ns.0) {
                names.push(ns.0.clone());
                ttl = ttl.min(record.ttl);
            }
        }
    }
    let glue = glue_for(&names, &message.additionals, |owner| zone.zone_of(owner));
    Delegation {
        zone: cut.clone(),
        names,
        glue,
        expires: Instant::now() + Duration::from_secs(u64::from(ttl)),
        parent_side: parent_side(message, zone, cut),
    }
}

/// The referral's DNSSEC records about `cut`'s DS RRset (see
/// [`ParentSide`]): the DS RRset and its RRSIGs if there, else the NSEC and
/// NSEC3 records within `zone` and their RRSIGs. None if it has neither, or
/// too many to be a referral's.
fn parent_side(message: &Message, zone: &Name, cut: &Name) -> Option<Box<ParentSide>> {
    let ds: Vec<Record> = with_rrsigs(&message.authorities, &[RecordType::DS])
        .filter(|r| r.name == *cut)
        .cloned()
        .collect();
    let denial: Vec<Record> = if ds.is_empty() {
        with_rrsigs(&message.authorities, &[RecordType::NSEC, RecordType::NSEC3])
            .filter(|r| zone.zone_of(&r.name))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let count = ds.len() + denial.len();
    (count > 0 && count <= ParentSide::MAX_RECORDS).then(|| {
        Box::new(ParentSide {
            parent: zone.clone(),
            ds,
            denial,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, NS, SOA};
    use hickory_proto::rr::Record;

    use crate::testing::name;

    fn response(rcode: ResponseCode) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m
    }

    fn ns(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 3600, RData::NS(NS(name(target))))
    }

    fn a(owner: &str, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), 3600, RData::A(A::from(Ipv4Addr::from(ip))))
    }

    use std::net::Ipv4Addr;

    #[test]
    fn a_referral_keeps_only_glue_inside_the_zone_asked() {
        let mut m = response(ResponseCode::NoError);
        m.add_authority(ns("example.test.", "ns1.example.test."));
        m.add_authority(ns("example.test.", "ns.elsewhere.org."));
        m.add_additional(a("ns1.example.test.", [192, 0, 2, 1]));
        // The test. servers cannot vouch for an address in org.
        m.add_additional(a("ns.elsewhere.org.", [192, 0, 2, 66]));
        let Some(Kind::Referral(d)) = classify(&m, &name("test."), &name("www.example.test."))
        else {
            panic!("a referral");
        };
        assert_eq!(d.zone, name("example.test."));
        assert_eq!(d.names.len(), 2);
        assert_eq!(
            d.addrs().collect::<Vec<_>>(),
            [IpAddr::from([192, 0, 2, 1])]
        );
    }

    #[test]
    fn upward_and_sideways_referrals_are_lame() {
        let mut up = response(ResponseCode::NoError);
        up.add_authority(ns(".", "a.root.test."));
        assert!(classify(&up, &name("example.test."), &name("www.example.test.")).is_none());
        let mut sideways = response(ResponseCode::NoError);
        sideways.add_authority(ns("other.test.", "ns.other.test."));
        assert!(classify(&sideways, &name("test."), &name("www.example.test.")).is_none());
        // AA does not make an upward referral an answer (Deckard's
        // iter_lame_aaaa: an empty AAAA answer "authoritative" for the root).
        let mut lame_aa = up.clone();
        lame_aa.metadata.authoritative = true;
        assert!(classify(&lame_aa, &name("example.test."), &name("example.test.")).is_none());
        let mut nodata_aa = response(ResponseCode::NoError);
        nodata_aa.metadata.authoritative = true;
        nodata_aa.add_authority(ns("example.test.", "ns.example.test."));
        assert!(matches!(
            classify(&nodata_aa, &name("example.test."), &name("example.test.")),
            Some(Kind::Final)
        ));
        assert!(classify(
            &response(ResponseCode::Refused),
            &name("test."),
            &name("www.example.test.")
        )
        .is_none());
    }

    #[test]
    fn an_empty_nodata_is_final_and_the_zones_ns_set_without_aa_is_not() {
        let zone = name("example.test.");
        let asked = name("ns.example.test.");
        // Neither SOA nor NS nor AA: NODATA without its proof, as Unbound
        // reads it.
        let empty = response(ResponseCode::NoError);
        assert!(matches!(classify(&empty, &zone, &asked), Some(Kind::Final)));
        // The zone's own NS set, no AA, no answer: delegation data from a
        // server that does not serve the zone.
        let mut delegation_only = response(ResponseCode::NoError);
        delegation_only.add_authority(ns("example.test.", "ns.example.test."));
        assert!(classify(&delegation_only, &zone, &asked).is_none());
    }

    #[test]
    fn nodata_with_an_soa_and_nxdomain_are_final() {
        let mut nodata = response(ResponseCode::NoError);
        let soa = SOA::new(
            name("ns.example.test."),
            name("h.example.test."),
            1,
            2,
            3,
            4,
            5,
        );
        nodata.add_authority(Record::from_rdata(
            name("example.test."),
            60,
            RData::SOA(soa),
        ));
        let asked = name("www.example.test.");
        let zone = name("example.test.");
        assert!(matches!(
            classify(&nodata, &zone, &asked),
            Some(Kind::Final)
        ));
        let nx = response(ResponseCode::NXDomain);
        assert!(matches!(classify(&nx, &zone, &asked), Some(Kind::Final)));
    }
}
