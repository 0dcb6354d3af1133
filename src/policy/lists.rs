//! Domain lists: parsing (plain, hosts, adblock) and the one suffix structure shared by every
//! list of a policy.
//!
//! # Representation
//!
//! Every distinct domain of every list is stored once, as a 64-bit fingerprint in one array and
//! a *combination id* in a parallel one (12 bytes a slot, no per-entry allocation). A
//! combination is the sorted set of list ids the domain is on; combinations are interned, so
//! the common case (a domain on one list) costs nothing extra.
//!
//! The fingerprint array is an open-addressing table whose home slot is monotone in the
//! fingerprint (`fp * homes >> 64`), kept in Robin Hood order: every fingerprint sits at or
//! after its home slot with no empty slot in between, and the non-empty slots are sorted.
//! Sorted order lets a lookup for an absent name stop at the first larger fingerprint instead
//! of scanning to the next empty slot, so the table can be 3/4 full and any size (not a power
//! of two): 1,000,000 domains take 1.33M slots = 16 MiB, where a power-of-two table at half
//! load took 32 MiB. Memory matters twice over: a reload builds the new table beside the one
//! still serving.
//!
//! The fingerprint is a keyed hash of the name's bytes read from right to left
//! ([`super::fingerprint`]: SipHash-1-3 under a random per-process key), so one right-to-left
//! pass over a query name yields the fingerprint of every parent suffix (`com`, `example.com`,
//! `ads.example.com`) at its label boundary: one walk answers every `list.*` field at once. The
//! home slots of all suffixes are loaded before any is examined, so their cache misses overlap
//! instead of adding up.
//!
//! # False positives
//!
//! Names are not stored, only their 64-bit fingerprints. A name that is on no list matches
//! only if its fingerprint equals a listed one's: about 2^-64 per probed slot, i.e. one wrong
//! answer in ~10^18 queries for a 1M-entry table. Two listed names sharing a fingerprint
//! (~n²/2^65 = 3·10^-8 for 1M names) would share their list memberships. Both are far below
//! any other source of error, and cost nothing to accept: the alternative (keeping the bytes in
//! an arena for comparison) costs ~22 MB and a cache miss per hit. These odds hold against an
//! attacker too, because the key is secret: with a fixed hash anyone could compute a name that
//! collides with an allow-listed one (the reason for the key; see [`super::fingerprint`]).

use std::collections::HashMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use super::fingerprint::{fingerprint, suffix_fingerprints, FingerprintKey};
use crate::huge_pages;

/// Index of a list inside a [`DomainSet`] (global numbering across the whole policy).
pub(crate) type ListId = u32;

/// All domains of all lists of one policy.
pub(crate) struct DomainSet {
    /// Fingerprints (0 = empty slot), sorted apart from the empty slots, each at or after its
    /// home slot with no empty slot between. `homes` home slots, then a tail that takes what
    /// is pushed past the last one.
    fps: Vec<u64>,
    /// The combination id of the domain in the same slot of `fps`.
    combo_of: Vec<u32>,
    /// Number of home slots.
    homes: usize,
    len: usize,
    combos: Vec<Box<[ListId]>>,
    combo_ids: HashMap<Box<[ListId]>, u32>,
    /// Combination id of `[list]`, by list id.
    single: Vec<u32>,
    /// Entries per list id (a domain on two lists counts for both).
    per_list: Vec<u64>,
    /// The fingerprint key (the process key outside tests).
    key: FingerprintKey,
}

impl std::fmt::Debug for DomainSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainSet")
            .field("domains", &self.len)
            .field("lists", &self.per_list.len())
            .field("slots", &self.fps.len())
            .finish()
    }
}

impl Default for DomainSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Slots per domain a reservation sizes for: 3/4 full.
const RESERVE_NUM: usize = 4;
const RESERVE_DEN: usize = 3;
/// Past 7/8 full an insert first doubles the table (only when a reservation undercounted,
/// e.g. hosts lines with several names).
const GROW_NUM: usize = 7;
const GROW_DEN: usize = 8;

/// Empty slots after the last home slot: Robin Hood order never wraps around, so the run
/// that starts near the end spills into these. At 3/4 load runs are a few dozen slots long;
/// a spill past the tail still works (the vector grows), it only costs a copy.
fn tail_for(homes: usize) -> usize {
    homes / 128 + 256
}

impl DomainSet {
    pub(crate) fn new() -> Self {
        Self::with_homes(16, FingerprintKey::process())
    }

    fn with_homes(homes: usize, key: FingerprintKey) -> Self {
        let slots = homes + tail_for(homes);
        let (fps, combo_of) = (vec![0; slots], vec![0; slots]);
        // Every query probes the table at random; with 4 KiB pages a 1M-domain table spans
        // 6,000 of them, far more than the TLB holds, so nearly every probe also paid a
        // page-table walk (a long one in a virtual machine).
        huge_pages::advise_unwritten(&fps);
        huge_pages::advise_unwritten(&combo_of);
        DomainSet {
            fps,
            combo_of,
            homes,
            len: 0,
            combos: Vec::new(),
            combo_ids: HashMap::new(),
            single: Vec::new(),
            per_list: Vec::new(),
            key,
        }
    }

    /// The home slot of a fingerprint: monotone in `fp`, uniform over `0..homes`.
    #[inline(always)]
    fn home(&self, fp: u64) -> usize {
        ((u128::from(fp) * self.homes as u128) >> 64) as usize
    }

    /// Make room for `additional` more domains without growing. Call it before the first
    /// insert: it rebuilds the table when the room is not there yet.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let need = (self.len + additional).saturating_mul(RESERVE_NUM) / RESERVE_DEN + 1;
        if need > self.homes {
            self.rehome(need);
        }
    }

    /// Move every entry into a table of `homes` home slots.
    fn rehome(&mut self, homes: usize) {
        let mut next = Self::with_homes(homes, self.key);
        // Entries come out in ascending order and the home function is monotone, so each
        // lands at the end of the sorted prefix: one pass, no shifting.
        let mut at = 0;
        for (&fp, &combo) in self.fps.iter().zip(&self.combo_of) {
            if fp == 0 {
                continue;
            }
            at = at.max(next.home(fp));
            if at == next.fps.len() {
                next.fps.push(0);
                next.combo_of.push(0);
            }
            next.fps[at] = fp;
            next.combo_of[at] = combo;
            at += 1;
        }
        self.fps = next.fps;
        self.combo_of = next.combo_of;
        self.homes = homes;
    }

    /// Register a new list id and return it.
    pub(crate) fn new_list(&mut self) -> ListId {
        let id = self.per_list.len() as ListId;
        self.per_list.push(0);
        let combo = self.intern(vec![id].into_boxed_slice());
        self.single.push(combo);
        id
    }

    /// Number of entries on a list.
    pub(crate) fn list_len(&self, id: ListId) -> u64 {
        self.per_list.get(id as usize).copied().unwrap_or(0)
    }

    /// Distinct domains stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes used by the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.fps.capacity() * std::mem::size_of::<u64>()
            + self.combo_of.capacity() * std::mem::size_of::<u32>()
            + self.combos.iter().map(|c| c.len() * 4 + 16).sum::<usize>()
    }

    fn intern(&mut self, combo: Box<[ListId]>) -> u32 {
        if let Some(&id) = self.combo_ids.get(&combo) {
            return id;
        }
        let id = self.combos.len() as u32;
        self.combos.push(combo.clone());
        self.combo_ids.insert(combo, id);
        id
    }

    /// Add a normalised domain (lower case, no trailing dot) to a list.
    pub(crate) fn insert(&mut self, name: &[u8], list: ListId) {
        if (self.len + 1) * GROW_DEN > self.homes * GROW_NUM {
            self.rehome(self.homes * 2);
        }
        self.insert_unchecked(name, list);
    }

    /// [`insert`](Self::insert) without the growth check.
    fn insert_unchecked(&mut self, name: &[u8], list: ListId) {
        let fp = fingerprint(&self.key, name);
        // Skip the smaller fingerprints of the run; stop at our own, a larger one or a gap.
        let mut i = self.home(fp);
        while i < self.fps.len() && self.fps[i] != 0 && self.fps[i] < fp {
            i += 1;
        }
        if i < self.fps.len() && self.fps[i] == fp {
            self.add_to_combo(i, list);
            return;
        }
        // Shift the rest of the run one slot right, into the gap that ends it.
        let gap = match self.fps[i..].iter().position(|&f| f == 0) {
            Some(k) => i + k,
            None => {
                self.fps.push(0);
                self.combo_of.push(0);
                self.fps.len() - 1
            }
        };
        self.fps.copy_within(i..gap, i + 1);
        self.combo_of.copy_within(i..gap, i + 1);
        self.fps[i] = fp;
        self.combo_of[i] = self.single[list as usize];
        self.len += 1;
        self.per_list[list as usize] += 1;
    }

    /// A domain already stored is (also) on `list`.
    fn add_to_combo(&mut self, slot: usize, list: ListId) {
        let old = &self.combos[self.combo_of[slot] as usize];
        if old.contains(&list) {
            return; // duplicate line
        }
        let mut merged: Vec<ListId> = old.to_vec();
        merged.push(list);
        merged.sort_unstable();
        self.combo_of[slot] = self.intern(merged.into_boxed_slice());
        self.per_list[list as usize] += 1;
    }

    /// Call `f(suffix start, list ids)` for every suffix of `qname` (normalised) that is on
    /// some list. One right-to-left pass; the home slots of all suffixes are loaded up front.
    #[inline]
    pub(crate) fn for_each_match(&self, qname: &[u8], mut f: impl FnMut(usize, &[ListId])) {
        if self.len == 0 || qname.is_empty() {
            return;
        }
        let mut fps = smallvec::SmallVec::<[(u64, usize); 8]>::new();
        suffix_fingerprints(&self.key, qname, &mut fps);
        // Independent loads first (their misses overlap), then the checks.
        let mut first = smallvec::SmallVec::<[(usize, u64); 8]>::new();
        for &(fp, _) in &fps {
            let home = self.home(fp);
            first.push((home, self.fps[home]));
        }
        for (&(fp, start), &(home, mut seen)) in fps.iter().zip(&first) {
            let mut i = home;
            // Sorted runs: a larger fingerprint or a gap means it is not there.
            while seen != 0 && seen < fp {
                i += 1;
                seen = self.fps.get(i).copied().unwrap_or(0);
            }
            if seen == fp {
                f(start, &self.combos[self.combo_of[i] as usize]);
            }
        }
    }

    /// `(suffix, list id)` for every list `name` (or one of its parents) is on, for `explain`.
    pub(crate) fn lists_of(&self, qname: &[u8]) -> Vec<(String, ListId)> {
        let mut out = Vec::new();
        self.for_each_match(qname, |start, ids| {
            for &l in ids {
                out.push((String::from_utf8_lossy(&qname[start..]).into_owned(), l));
            }
        });
        out
    }

    /// Check the ordering invariant (tests).
    #[cfg(test)]
    fn check_invariant(&self) {
        let mut last = 0u64;
        let mut count = 0;
        for (i, &fp) in self.fps.iter().enumerate() {
            if fp == 0 {
                continue;
            }
            count += 1;
            assert!(fp > last, "slot {i}: not sorted");
            last = fp;
            let home = self.home(fp);
            assert!(home <= i, "slot {i}: before its home {home}");
            assert!(
                self.fps[home..i].iter().all(|&f| f != 0),
                "slot {i}: gap after its home {home}"
            );
        }
        assert_eq!(count, self.len);
    }
}

/// Why a list line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Not a domain name (bad characters, empty or too long label, too long name).
    BadDomain,
    /// An adblock rule we cannot express as "this domain and its subdomains".
    UnsupportedAdblock,
    /// An adblock exception (`@@`); use an `allow` rule instead.
    AdblockException,
    /// Several words but the first is not an IP address (not hosts format).
    NotHosts,
    /// A hosts line with an address but no names.
    NoNames,
    /// The line is not valid UTF-8... or contains non-ASCII characters (use punycode).
    NonAscii,
    /// RPZ local data (A, AAAA, a CNAME to a name...): a list holds names, not answers.
    RpzLocalData,
    /// RPZ `rpz-drop.` or `rpz-tcp-only.`: not the action a list's rule takes.
    RpzOtherAction,
    /// RPZ IP, client-IP, NSDNAME or NSIP trigger: lists match query names only.
    RpzTrigger,
    /// An RPZ line that is not `owner [ttl] [class] type rdata`.
    RpzSyntax,
    /// An absolute RPZ owner that is not under the zone's `$ORIGIN`.
    RpzOutsideOrigin,
}

impl LineError {
    /// A short description for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadDomain => "not a valid domain name",
            Self::UnsupportedAdblock => {
                "unsupported adblock rule (only ||domain^ and ||domain^$important)"
            }
            Self::AdblockException => {
                "adblock exceptions (@@) are not supported; use an allow rule"
            }
            Self::NotHosts => "several words but the first is not an IP address",
            Self::NoNames => "hosts line without a name",
            Self::NonAscii => "non-ASCII characters (write internationalised names in punycode)",
            Self::RpzLocalData => {
                "RPZ local data (A, AAAA, TXT, CNAME to a name) cannot be a list entry; write an override rule for it"
            }
            Self::RpzOtherAction => {
                "RPZ rpz-drop./rpz-tcp-only. is not mapped; list those names for a drop or truncate rule"
            }
            Self::RpzTrigger => {
                "RPZ IP, client-IP, NSDNAME and NSIP triggers are not mapped (lists match query names); use dns.response.ip or dns.src_ip rules"
            }
            Self::RpzSyntax => "not an RPZ record (owner [ttl] [class] type data)",
            Self::RpzOutsideOrigin => "absolute RPZ owner outside the zone's $ORIGIN",
        }
    }
}

/// Hosts-file boilerplate that is never a blocking target.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Normalise and validate one domain into `buf` (lower case, no trailing dot, `*.` prefix
/// removed). Returns false when it is not a valid name.
pub(crate) fn normalize_domain(input: &str, buf: &mut Vec<u8>) -> Result<(), LineError> {
    buf.clear();
    let mut s = input.as_bytes();
    if let Some(rest) = s.strip_prefix(b"*.") {
        s = rest;
    }
    if let Some(rest) = s.strip_suffix(b".") {
        s = rest;
    }
    if s.is_empty() || s.len() > 253 {
        return Err(LineError::BadDomain);
    }
    let mut label = 0usize;
    for &b in s {
        let c = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => b,
            b'A'..=b'Z' => b.to_ascii_lowercase(),
            b'.' => {
                if label == 0 {
                    return Err(LineError::BadDomain);
                }
                label = 0;
                buf.push(b'.');
                continue;
            }
            0x80..=0xff => return Err(LineError::NonAscii),
            _ => return Err(LineError::BadDomain),
        };
        label += 1;
        if label > 63 {
            return Err(LineError::BadDomain);
        }
        buf.push(c);
    }
    if label == 0 {
        return Err(LineError::BadDomain);
    }
    Ok(())
}

/// Result of parsing one line of a list file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// Comment, blank, header or hosts boilerplate.
    Skip,
    /// One or more names to add (validated later, one by one).
    Names(smallvec::SmallVec<[&'a str; 2]>),
    /// Not usable.
    Invalid(LineError),
}

/// Parse one list line in any of the three formats (detected per line).
pub(crate) fn parse_line(line: &str) -> Line<'_> {
    let line = line.trim();
    if line.is_empty() {
        return Line::Skip;
    }
    match line.as_bytes()[0] {
        b'#' | b'!' | b'[' => return Line::Skip,
        _ => {}
    }
    if line.starts_with("@@") {
        return Line::Invalid(LineError::AdblockException);
    }
    if let Some(rest) = line.strip_prefix("||") {
        // ||domain^ or ||domain^$important
        let Some(caret) = rest.find('^') else {
            return Line::Invalid(LineError::UnsupportedAdblock);
        };
        let (domain, tail) = rest.split_at(caret);
        let tail = &tail[1..];
        if !(tail.is_empty() || tail == "$important" || tail == "|") {
            return Line::Invalid(LineError::UnsupportedAdblock);
        }
        if domain.contains(['/', '*', '|', '$']) {
            return Line::Invalid(LineError::UnsupportedAdblock);
        }
        return Line::Names(smallvec::smallvec![domain]);
    }
    // Strip an inline comment.
    let line = match line.find('#') {
        Some(i) => line[..i].trim_end(),
        None => line,
    };
    let mut words = line.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return Line::Skip;
    };
    if first.parse::<IpAddr>().is_ok() {
        let names: smallvec::SmallVec<[&str; 2]> = words
            .filter(|w| !HOSTS_BOILERPLATE.iter().any(|b| b.eq_ignore_ascii_case(w)))
            .collect();
        if names.is_empty() {
            // `127.0.0.1 localhost` is boilerplate, `0.0.0.0` alone is malformed.
            return if line.split_ascii_whitespace().count() > 1 {
                Line::Skip
            } else {
                Line::Invalid(LineError::NoNames)
            };
        }
        return Line::Names(names);
    }
    if words.next().is_some() {
        return Line::Invalid(LineError::NotHosts);
    }
    if first.contains(['|', '^', '$', '/']) {
        return Line::Invalid(LineError::UnsupportedAdblock);
    }
    Line::Names(smallvec::smallvec![first])
}

/// How a list file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    /// Plain names, hosts or adblock lines (detected per line).
    Lines,
    /// An RPZ zone file; the entries whose policy is this one are the list.
    Rpz(RpzPolicy),
}

/// Which RPZ entries a list takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RpzPolicy {
    /// `CNAME .` (NXDOMAIN) and `CNAME *.` (NODATA): names to block; the rule's block mode
    /// says how (nxdomain or nodata).
    Block,
    /// `CNAME .` only.
    NxDomain,
    /// `CNAME *.` only.
    NoData,
    /// `CNAME rpz-passthru.`: names an `allow` rule exempts.
    Passthru,
}

impl RpzPolicy {
    pub(crate) fn parse(s: &str) -> Option<RpzPolicy> {
        Some(match s {
            "block" => Self::Block,
            "nxdomain" => Self::NxDomain,
            "nodata" => Self::NoData,
            "passthru" => Self::Passthru,
            _ => return None,
        })
    }
}

/// What an RPZ record asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RpzAction {
    NxDomain,
    NoData,
    Passthru,
}

/// The state of an RPZ file being read: its origin, the last owner, an open parenthesis.
#[derive(Debug, Default)]
pub(crate) struct RpzReader {
    origin: Option<String>,
    owner: Option<String>,
    in_parens: bool,
}

/// One RPZ line, mapped.
#[derive(Debug, PartialEq, Eq)]
enum RpzLine {
    Skip,
    Entry(String, RpzAction),
    Invalid(LineError),
}

impl RpzReader {
    /// Reads one line of a zone file: `$ORIGIN`, `$TTL`, SOA/NS at the apex (skipped), and
    /// records whose owner is a name (a `*.` owner is its subdomains: Picket's list entries
    /// always match subdomains too).
    fn line(&mut self, raw: &str) -> RpzLine {
        let line = match raw.find(';') {
            Some(i) => &raw[..i],
            None => raw,
        };
        if self.in_parens {
            if line.contains(')') {
                self.in_parens = false;
            }
            return RpzLine::Skip;
        }
        if line.trim().is_empty() {
            return RpzLine::Skip;
        }
        if line.contains('(') && !line.contains(')') {
            self.in_parens = true;
        }
        let continued = line.starts_with([' ', '\t']);
        let mut words = line.split_ascii_whitespace().peekable();
        let first = words.peek().copied().unwrap_or("");
        if first.eq_ignore_ascii_case("$ORIGIN") {
            words.next();
            self.origin = words
                .next()
                .map(|o| o.trim_end_matches('.').to_ascii_lowercase());
            return RpzLine::Skip;
        }
        if first.starts_with('$') {
            return RpzLine::Skip;
        }
        let owner = if continued {
            match self.owner.clone() {
                Some(o) => o,
                None => return RpzLine::Invalid(LineError::RpzSyntax),
            }
        } else {
            let o = words.next().unwrap_or("").to_owned();
            self.owner = Some(o.clone());
            o
        };
        // [ttl] [class] type, in either order of ttl and class.
        let mut rtype = None;
        for w in words.by_ref() {
            if w.bytes().all(|b| b.is_ascii_digit()) || w.eq_ignore_ascii_case("IN") {
                continue;
            }
            rtype = Some(w.to_ascii_uppercase());
            break;
        }
        let Some(rtype) = rtype else {
            return RpzLine::Invalid(LineError::RpzSyntax);
        };
        let data: Vec<&str> = words.collect();
        if matches!(rtype.as_str(), "SOA" | "NS") || owner == "@" {
            return RpzLine::Skip;
        }
        let name = match self.relative(&owner) {
            Ok(n) => n,
            Err(e) => return RpzLine::Invalid(e),
        };
        let lower = name.to_ascii_lowercase();
        if lower
            .rsplit('.')
            .any(|l| matches!(l, "rpz-ip" | "rpz-client-ip" | "rpz-nsdname" | "rpz-nsip"))
        {
            return RpzLine::Invalid(LineError::RpzTrigger);
        }
        if rtype != "CNAME" {
            return RpzLine::Invalid(LineError::RpzLocalData);
        }
        let action = match data.first().map(|t| t.to_ascii_lowercase()) {
            Some(t) if t == "." => RpzAction::NxDomain,
            Some(t) if t == "*." => RpzAction::NoData,
            Some(t) if t == "rpz-passthru." => RpzAction::Passthru,
            Some(t) if t == "rpz-drop." || t == "rpz-tcp-only." => {
                return RpzLine::Invalid(LineError::RpzOtherAction)
            }
            Some(_) => return RpzLine::Invalid(LineError::RpzLocalData),
            None => return RpzLine::Invalid(LineError::RpzSyntax),
        };
        RpzLine::Entry(lower, action)
    }

    /// An owner relative to the zone: relative names as written, absolute ones with the
    /// origin taken off.
    fn relative(&self, owner: &str) -> Result<String, LineError> {
        let Some(absolute) = owner.strip_suffix('.') else {
            return Ok(owner.to_owned());
        };
        let lower = absolute.to_ascii_lowercase();
        match &self.origin {
            Some(origin) => lower
                .strip_suffix(origin.as_str())
                .and_then(|n| n.strip_suffix('.'))
                .map(str::to_owned)
                .ok_or(LineError::RpzOutsideOrigin),
            None => Err(LineError::RpzOutsideOrigin),
        }
    }
}

impl RpzPolicy {
    fn takes(self, action: RpzAction) -> bool {
        matches!(
            (self, action),
            (Self::Block, RpzAction::NxDomain | RpzAction::NoData)
                | (Self::NxDomain, RpzAction::NxDomain)
                | (Self::NoData, RpzAction::NoData)
                | (Self::Passthru, RpzAction::Passthru)
        )
    }
}

/// An invalid list line, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLine {
    /// The list file.
    pub file: std::path::PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// Why it was rejected.
    pub reason: &'static str,
    /// The line (cut to 120 characters).
    pub text: String,
}

/// Counts from loading one list source.
#[derive(Debug, Default, Clone)]
pub(crate) struct LoadCounts {
    pub entries: u64,
    pub invalid: u64,
    pub samples: Vec<InvalidLine>,
}

/// How many invalid-line samples are kept per file.
pub(crate) const SAMPLES_PER_FILE: usize = 5;

/// Add the lines of a list file to `set` under `list`, one line at a time (the file is never
/// held whole). Bytes that are not UTF-8 make that line invalid, not the file.
pub(crate) fn load_lines(
    set: &mut DomainSet,
    list: ListId,
    mut reader: impl BufRead,
    file: &Path,
    format: Format,
    counts: &mut LoadCounts,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    let mut raw = Vec::with_capacity(256);
    let mut lineno = 0;
    let mut rpz = RpzReader::default();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        lineno += 1;
        let text = String::from_utf8_lossy(&raw);
        let entry;
        let line = match format {
            Format::Lines => parse_line(&text),
            Format::Rpz(policy) => match rpz.line(text.trim_end_matches(['\n', '\r'])) {
                RpzLine::Skip => Line::Skip,
                RpzLine::Invalid(e) => Line::Invalid(e),
                RpzLine::Entry(name, action) if policy.takes(action) => {
                    entry = name;
                    Line::Names(smallvec::smallvec![entry.as_str()])
                }
                RpzLine::Entry(..) => Line::Skip,
            },
        };
        load_line(set, list, line, &text, &mut buf, file, lineno, counts);
    }
}

#[allow(clippy::too_many_arguments)]
fn load_line(
    set: &mut DomainSet,
    list: ListId,
    parsed: Line<'_>,
    raw: &str,
    buf: &mut Vec<u8>,
    file: &Path,
    lineno: usize,
    counts: &mut LoadCounts,
) {
    let error = match parsed {
        Line::Skip => return,
        Line::Invalid(e) => e,
        Line::Names(names) => {
            let mut line_bad = None;
            for name in names {
                match normalize_domain(name, buf) {
                    Ok(()) => {
                        set.insert(buf, list);
                        counts.entries += 1;
                    }
                    Err(e) => line_bad = Some(e),
                }
            }
            match line_bad {
                Some(e) => e,
                None => return,
            }
        }
    };
    counts.invalid += 1;
    if counts.samples.len() < SAMPLES_PER_FILE {
        counts.samples.push(InvalidLine {
            file: file.to_path_buf(),
            line: lineno,
            reason: error.as_str(),
            text: raw.trim().chars().take(120).collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(set: &DomainSet, q: &str) -> Vec<ListId> {
        let mut v = Vec::new();
        set.for_each_match(q.as_bytes(), |_, c| v.extend_from_slice(c));
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn suffix_walk_matches_domain_and_subdomains_only() {
        let mut set = DomainSet::new();
        let a = set.new_list();
        let b = set.new_list();
        set.insert(b"ads.example", a);
        set.insert(b"example", b);
        set.insert(b"ads.example", b);
        set.insert(b"ads.example", b); // duplicate is ignored
        assert_eq!(set.len(), 2);
        assert_eq!(lists(&set, "ads.example"), vec![a, b]);
        assert_eq!(lists(&set, "x.y.ads.example"), vec![a, b]);
        assert_eq!(lists(&set, "bads.example"), vec![b]);
        assert_eq!(lists(&set, "example"), vec![b]);
        assert_eq!(lists(&set, "example.org"), Vec::<ListId>::new());
        assert_eq!(lists(&set, "xample"), Vec::<ListId>::new());
        assert_eq!(lists(&set, ""), Vec::<ListId>::new());
        assert_eq!(set.list_len(a), 1);
        assert_eq!(set.list_len(b), 2);
    }

    /// Many names through growth and reservation, against a plain set: every stored name is
    /// found, with its lists; absent names are not; the table stays in Robin Hood order.
    #[test]
    fn table_matches_a_plain_set_through_growth_and_reserve() {
        let names: Vec<String> = (0..20_000).map(|i| format!("n{i}.example")).collect();
        for reserve_first in [false, true] {
            let mut set = DomainSet::new();
            let a = set.new_list();
            let b = set.new_list();
            if reserve_first {
                set.reserve(names.len());
            }
            for (i, n) in names.iter().enumerate() {
                set.insert(n.as_bytes(), if i % 3 == 0 { b } else { a });
                if i % 5 == 0 {
                    set.insert(n.as_bytes(), b); // on both lists
                }
            }
            set.check_invariant();
            assert_eq!(set.len(), names.len());
            for (i, n) in names.iter().enumerate() {
                let want = match (i % 3 == 0, i % 5 == 0) {
                    (true, _) => vec![b],
                    (false, true) => vec![a, b],
                    (false, false) => vec![a],
                };
                assert_eq!(lists(&set, n), want, "{n}");
                assert_eq!(lists(&set, &format!("www.{n}")), want, "www.{n}");
            }
            for i in 0..20_000 {
                assert_eq!(lists(&set, &format!("x{i}.example")), Vec::<ListId>::new());
            }
            let on_b = (0..names.len())
                .filter(|i| i % 3 == 0 || i % 5 == 0)
                .count();
            assert_eq!(set.list_len(b), on_b as u64);
        }
    }

    /// A table too small for its runs: inserts spill past the last home slot into the tail
    /// and beyond it, and lookups still find everything.
    #[test]
    fn runs_past_the_last_home_slot() {
        let mut set = DomainSet::with_homes(4, FingerprintKey::process());
        let l = set.new_list();
        // Force a crowded table by inserting without the growth check's help: fill directly.
        set.homes = 1;
        let n = tail_for(1) + 40;
        for i in 0..n {
            set.insert_unchecked(format!("s{i}.example").as_bytes(), l);
        }
        set.check_invariant();
        assert!(set.fps.len() > 1 + tail_for(1));
        for i in 0..n {
            assert_eq!(lists(&set, &format!("s{i}.example")), vec![l]);
        }
        assert_eq!(lists(&set, "absent.example"), Vec::<ListId>::new());
    }

    #[test]
    fn parse_formats() {
        assert_eq!(parse_line("  # c"), Line::Skip);
        assert_eq!(parse_line("! c"), Line::Skip);
        assert_eq!(parse_line("[Adblock Plus 2.0]"), Line::Skip);
        assert_eq!(parse_line(""), Line::Skip);
        assert_eq!(
            parse_line("ads.example"),
            Line::Names(smallvec::smallvec!["ads.example"])
        );
        assert_eq!(
            parse_line("0.0.0.0 a.example b.example # c"),
            Line::Names(smallvec::smallvec!["a.example", "b.example"])
        );
        assert_eq!(parse_line("127.0.0.1 localhost"), Line::Skip);
        assert_eq!(parse_line("::1 ip6-localhost ip6-loopback"), Line::Skip);
        assert_eq!(parse_line("0.0.0.0"), Line::Invalid(LineError::NoNames));
        assert_eq!(
            parse_line("||ads.example^"),
            Line::Names(smallvec::smallvec!["ads.example"])
        );
        assert_eq!(
            parse_line("||ads.example^$important"),
            Line::Names(smallvec::smallvec!["ads.example"])
        );
        assert_eq!(
            parse_line("||ads.example^$third-party"),
            Line::Invalid(LineError::UnsupportedAdblock)
        );
        assert_eq!(
            parse_line("@@||ok.example^"),
            Line::Invalid(LineError::AdblockException)
        );
        assert_eq!(parse_line("foo bar"), Line::Invalid(LineError::NotHosts));
    }

    #[test]
    fn normalize() {
        let mut b = Vec::new();
        assert!(normalize_domain("Ads.Example.", &mut b).is_ok());
        assert_eq!(b, b"ads.example");
        assert!(normalize_domain("*.x.example", &mut b).is_ok());
        assert_eq!(b, b"x.example");
        assert_eq!(normalize_domain("a..b", &mut b), Err(LineError::BadDomain));
        assert_eq!(normalize_domain(".a", &mut b), Err(LineError::BadDomain));
        assert_eq!(normalize_domain("a b", &mut b), Err(LineError::BadDomain));
        assert_eq!(
            normalize_domain("bücher.example", &mut b),
            Err(LineError::NonAscii)
        );
        let long = "a".repeat(64);
        assert_eq!(normalize_domain(&long, &mut b), Err(LineError::BadDomain));
    }

    #[test]
    fn load_counts_invalid_lines_with_numbers() {
        let mut set = DomainSet::new();
        let l = set.new_list();
        let mut c = LoadCounts::default();
        let text = b"# header\nads.example\nbad..name\n0.0.0.0 x.example\n||y.example^\r\n\xff\n";
        load_lines(
            &mut set,
            l,
            &text[..],
            Path::new("f.txt"),
            Format::Lines,
            &mut c,
        )
        .unwrap();
        assert_eq!(c.entries, 3);
        assert_eq!(c.invalid, 2);
        assert_eq!(c.samples[0].line, 3);
        assert_eq!(c.samples[0].text, "bad..name");
    }

    /// One RPZ zone, every kind of line, and what each selection of it takes.
    const RPZ: &str = "$TTL 300
$ORIGIN rpz.example.
@ IN SOA localhost. root.localhost. (
        1 3600 600 86400 60 )
@ IN NS localhost.
nx.test CNAME .                        ; NXDOMAIN
*.wild.test 60 IN CNAME .              ; subdomains
nodata.test IN 60 CNAME *.             ; NODATA
ok.nx.test CNAME rpz-passthru.         ; allow
abs.test.rpz.example. CNAME .          ; absolute, under the origin
far.test.elsewhere. CNAME .            ; absolute, outside it
drop.test CNAME rpz-drop.
tcp.test CNAME rpz-tcp-only.
local.test A 192.0.2.1
    AAAA 2001:db8::1
redirect.test CNAME walled.garden.example.
32.1.2.0.192.rpz-ip CNAME .
ns.bad.rpz-nsdname CNAME .
garbage
";

    fn rpz(policy: RpzPolicy) -> (DomainSet, LoadCounts) {
        let mut set = DomainSet::new();
        let l = set.new_list();
        let mut c = LoadCounts::default();
        load_lines(
            &mut set,
            l,
            RPZ.as_bytes(),
            Path::new("feed.rpz"),
            Format::Rpz(policy),
            &mut c,
        )
        .unwrap();
        (set, c)
    }

    #[test]
    fn rpz_maps_what_a_list_can_hold_and_reports_the_rest_by_line() {
        let (set, c) = rpz(RpzPolicy::Block);
        let on = |q: &str| !lists(&set, q).is_empty();
        for (name, listed) in [
            ("nx.test", true),
            ("sub.nx.test", true),
            ("a.wild.test", true),
            ("nodata.test", true),
            ("abs.test", true),
            ("ok.other.test", false),
            ("far.test", false),
            ("drop.test", false),
            ("local.test", false),
            ("rpz.example", false),
        ] {
            assert_eq!(on(name), listed, "{name}");
        }
        assert_eq!(c.entries, 4);
        let reported: Vec<(usize, &str)> = c.samples.iter().map(|s| (s.line, s.reason)).collect();
        assert_eq!(reported.len(), SAMPLES_PER_FILE, "{reported:?}");
        assert_eq!(reported[0], (11, LineError::RpzOutsideOrigin.as_str()));
        assert_eq!(reported[1], (12, LineError::RpzOtherAction.as_str()));
        assert_eq!(reported[3], (14, LineError::RpzLocalData.as_str()));
        assert_eq!(
            reported[4],
            (15, LineError::RpzLocalData.as_str()),
            "owner carried over"
        );
        // far, drop, tcp, A, AAAA, CNAME to a name, rpz-ip, rpz-nsdname, garbage.
        assert_eq!(c.invalid, 9);

        let (set, c) = rpz(RpzPolicy::Passthru);
        assert!(!lists(&set, "ok.nx.test").is_empty());
        assert!(lists(&set, "nx.test").is_empty());
        assert_eq!(c.entries, 1);
        let (set, _) = rpz(RpzPolicy::NoData);
        assert!(!lists(&set, "nodata.test").is_empty());
        assert!(lists(&set, "nx.test").is_empty());
        let (set, _) = rpz(RpzPolicy::NxDomain);
        assert!(lists(&set, "nodata.test").is_empty());
        assert!(!lists(&set, "nx.test").is_empty());
    }
}
