//! Domain lists: parsing (plain, hosts, adblock) and the one suffix structure shared by every
//! list of a policy.
//!
//! # Representation
//!
//! Every distinct domain of every list is stored once, as one 16-byte slot of an open-addressing
//! table (linear probing, power-of-two size, at most 3/4 full): the domain's 64-bit fingerprint
//! and a *combination id*. A combination is the sorted set of list ids the domain is on;
//! combinations are interned, so the common case (a domain on one list) costs nothing extra and
//! there is no per-entry allocation. 1,000,000 domains take 2^21 slots = 32 MiB.
//!
//! The fingerprint is a hash computed over the name's bytes from right to left, so one
//! right-to-left pass over a query name yields the fingerprint of every parent suffix (`com`,
//! `example.com`, `ads.example.com`) at its label boundary: one walk answers every `list.*` field
//! at once. The slots of all suffixes are loaded before any is examined, so their cache misses
//! overlap instead of adding up.
//!
//! # False positives
//!
//! Names are not stored, only their 64-bit fingerprints (the byte step is a bijection of the
//! state, so names that differ in one byte never collide; the final mix is a bijection too). A
//! name that is on no list matches only if its fingerprint equals a listed one's: about
//! 2^-64 per probed slot, i.e. one wrong answer in ~10^18 queries for a 1M-entry table. Two
//! listed names sharing a fingerprint (~n²/2^65 = 3·10^-8 for 1M names) would share their list
//! memberships. Both are far below any other source of error, and cost nothing to accept: the
//! alternative (keeping the bytes in an arena for comparison) costs ~22 MB and a cache miss per
//! hit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

/// Index of a list inside a [`DomainSet`] (global numbering across the whole policy).
pub(crate) type ListId = u32;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// 0 = empty.
    fp: u64,
    combo: u32,
}

/// All domains of all lists of one policy.
pub(crate) struct DomainSet {
    slots: Vec<Slot>,
    len: usize,
    combos: Vec<Box<[ListId]>>,
    combo_ids: HashMap<Box<[ListId]>, u32>,
    /// Combination id of `[list]`, by list id.
    single: Vec<u32>,
    /// Entries per list id (a domain on two lists counts for both).
    per_list: Vec<u64>,
}

impl Default for DomainSet {
    fn default() -> Self {
        Self::new()
    }
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const K: u64 = 0x517c_c1b7_2722_0a95;

/// One byte into the state: a bijection of the state for each byte.
#[inline(always)]
fn step(h: u64, b: u8) -> u64 {
    (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K)
}

/// Final avalanche (murmur3 fmix64, a bijection); never 0 (0 marks an empty slot).
#[inline(always)]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h.max(1)
}

/// Fingerprint of a whole (already normalised) domain, consistent with the suffix walk.
fn fingerprint(name: &[u8]) -> u64 {
    finish(name.iter().rev().fold(SEED, |h, &b| step(h, b)))
}

/// Fingerprints of every suffix of `qname` at label boundaries, shortest first.
#[inline]
fn suffix_fingerprints(qname: &[u8], out: &mut smallvec::SmallVec<[(u64, usize); 8]>) {
    let mut h = SEED;
    let mut i = qname.len();
    while i > 0 {
        i -= 1;
        h = step(h, qname[i]);
        if i == 0 || qname[i - 1] == b'.' {
            out.push((finish(h), i));
        }
    }
}

impl DomainSet {
    pub(crate) fn new() -> Self {
        DomainSet {
            slots: vec![Slot::default(); 16],
            len: 0,
            combos: Vec::new(),
            combo_ids: HashMap::new(),
            single: Vec::new(),
            per_list: Vec::new(),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Make room for `additional` more domains without growing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let need = (self.len + additional).saturating_mul(4) / 3 + 1;
        if need > self.slots.len() {
            self.resize(need.next_power_of_two());
        }
    }

    fn resize(&mut self, cap: usize) {
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); cap]);
        let mask = cap - 1;
        for s in old.into_iter().filter(|s| s.fp != 0) {
            let mut i = s.fp as usize & mask;
            while self.slots[i].fp != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
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
        self.slots.capacity() * std::mem::size_of::<Slot>()
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
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.resize(self.slots.len() * 2);
        }
        let fp = fingerprint(name);
        let mask = self.mask();
        let mut i = fp as usize & mask;
        loop {
            let s = self.slots[i];
            if s.fp == 0 {
                self.slots[i] = Slot {
                    fp,
                    combo: self.single[list as usize],
                };
                self.len += 1;
                break;
            }
            if s.fp == fp {
                let old = &self.combos[s.combo as usize];
                if old.contains(&list) {
                    return; // duplicate line
                }
                let mut merged: Vec<ListId> = old.to_vec();
                merged.push(list);
                merged.sort_unstable();
                let combo = self.intern(merged.into_boxed_slice());
                self.slots[i].combo = combo;
                break;
            }
            i = (i + 1) & mask;
        }
        self.per_list[list as usize] += 1;
    }

    /// Call `f(suffix start, list ids)` for every suffix of `qname` (normalised) that is on
    /// some list. One right-to-left pass; the slots of all suffixes are loaded up front.
    #[inline]
    pub(crate) fn for_each_match(&self, qname: &[u8], mut f: impl FnMut(usize, &[ListId])) {
        if self.len == 0 || qname.is_empty() {
            return;
        }
        let mut fps = smallvec::SmallVec::<[(u64, usize); 8]>::new();
        suffix_fingerprints(qname, &mut fps);
        let mask = self.mask();
        // Independent loads first (their misses overlap), then the checks.
        let mut first = smallvec::SmallVec::<[u64; 8]>::new();
        for &(fp, _) in &fps {
            first.push(self.slots[fp as usize & mask].fp);
        }
        for (k, &(fp, start)) in fps.iter().enumerate() {
            let mut seen = first[k];
            let mut i = fp as usize & mask;
            loop {
                if seen == fp {
                    f(start, &self.combos[self.slots[i].combo as usize]);
                    break;
                }
                if seen == 0 {
                    break;
                }
                i = (i + 1) & mask;
                seen = self.slots[i].fp;
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

/// Add the lines of a list file's text to `set` under `list`.
pub(crate) fn load_text(
    set: &mut DomainSet,
    list: ListId,
    text: &str,
    file: &Path,
    counts: &mut LoadCounts,
) {
    let mut buf = Vec::with_capacity(256);
    let bad = |counts: &mut LoadCounts, lineno: usize, raw: &str, e: LineError| {
        counts.invalid += 1;
        if counts.samples.len() < SAMPLES_PER_FILE {
            counts.samples.push(InvalidLine {
                file: file.to_path_buf(),
                line: lineno,
                reason: e.as_str(),
                text: raw.trim().chars().take(120).collect(),
            });
        }
    };
    for (i, raw) in text.lines().enumerate() {
        match parse_line(raw) {
            Line::Skip => {}
            Line::Invalid(e) => bad(counts, i + 1, raw, e),
            Line::Names(names) => {
                let mut line_bad = None;
                for name in names {
                    match normalize_domain(name, &mut buf) {
                        Ok(()) => {
                            set.insert(&buf, list);
                            counts.entries += 1;
                        }
                        Err(e) => line_bad = Some(e),
                    }
                }
                if let Some(e) = line_bad {
                    bad(counts, i + 1, raw, e);
                }
            }
        }
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
        load_text(
            &mut set,
            l,
            "# header\nads.example\nbad..name\n0.0.0.0 x.example\n||y.example^\n",
            Path::new("f.txt"),
            &mut c,
        );
        assert_eq!(c.entries, 3);
        assert_eq!(c.invalid, 1);
        assert_eq!(c.samples[0].line, 3);
        assert_eq!(c.samples[0].text, "bad..name");
    }
}
