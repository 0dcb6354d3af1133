//! Denial-of-existence proofs over NSEC (RFC 4035 §5.4, RFC 6840 §4) and
//! NSEC3 (RFC 5155 §8) records whose signatures are already verified.

use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC, NSEC3};
use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::chain::{Ctx, Fail};
use super::ede;

/// The outcome of a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proof {
    Proven,
    /// The proof rests on NSEC3 opt-out.
    Insecure(String),
    /// NSEC3 beyond the iteration cap: not checked, insecure (RFC 9276),
    /// told with EDE 27.
    Unsupported(Fail),
    NotProven(String),
}

/// What the DS denial of a name on the way down says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DsAbsence {
    /// An NS without DS, or an NSEC3 opt-out span: unsigned below.
    InsecureDelegation(String),
    /// NSEC3 beyond the iteration cap: treated as insecure (RFC 9276),
    /// told with EDE 27.
    Unsupported(Fail),
    /// The name is no zone cut (or does not exist).
    NotCut,
    NotProven(String),
}

fn nsecs(records: &[Record]) -> Vec<(&Name, &NSEC)> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => Some((&r.name, n)),
            _ => None,
        })
        .collect()
}

/// Whether the NSEC at `owner` pointing to `next` covers `name` (strictly
/// between them in canonical order; the last NSEC wraps to the apex).
fn nsec_covers(owner: &Name, next: &Name, name: &Name) -> bool {
    owner < name && (name < next || next <= owner)
}

/// The labels `a` and `b` share from the root.
fn common_labels(a: &Name, b: &Name) -> usize {
    let most = usize::from(a.num_labels().min(b.num_labels()));
    (0..=most)
        .rev()
        .find(|&n| a.trim_to(n) == b.trim_to(n))
        .unwrap_or(0)
}

fn wildcard_of(name: &Name) -> Option<Name> {
    name.prepend_label("*").ok()
}

/// An NSEC at a delegation seen from above (NS, no SOA) proves nothing
/// below it, and says nothing of types but DS (RFC 6840 §4.1).
fn is_delegation(types: impl Fn(RecordType) -> bool) -> bool {
    types(RecordType::NS) && !types(RecordType::SOA)
}

/// RFC 6840 §4.1: an NSEC (or NSEC3) at a delegation or at a DNAME proves
/// nothing about the names below its owner (they are elsewhere).
fn hides_below(types: impl Fn(RecordType) -> bool) -> bool {
    is_delegation(&types) || types(RecordType::DNAME)
}

/// Whether `records` (verified NSEC or NSEC3 of `zone`) prove that `name` does not exist
/// (`qtype` None: NXDOMAIN) or exists without `qtype` (NODATA).
pub(crate) fn absence(
    name: &Name,
    qtype: Option<RecordType>,
    zone: &Name,
    records: &[Record],
    ctx: &mut Ctx<'_>,
) -> Result<Proof, Fail> {
    if let Some(n3) = Nsec3Set::of(zone, records, ctx)? {
        return match qtype {
            None => n3.nxdomain(name, zone, ctx),
            Some(qtype) => n3.nodata(name, qtype, zone, ctx),
        };
    }
    let set = nsecs(records);
    Ok(match qtype {
        None => nxdomain(name, zone, &set),
        Some(qtype) => nodata(name, qtype, zone, &set),
    })
}

/// Reads an NXDOMAIN as the NODATA it is when its own NSEC shows the name
/// to be an empty non-terminal (the NSEC covering it points below it):
/// such a name exists (RFC 4035 §3.1.3.2, RFC 8020), and old servers
/// answered NXDOMAIN for it all the same. The rcode becomes NOERROR, as
/// Unbound's validator makes it; the validator then judges the NODATA
/// proof, so a forged NSEC gains nothing. Only for an answer without
/// records (no CNAME chain), before it is validated. Whether it changed.
pub fn nxdomain_for_an_empty_non_terminal(message: &mut Message) -> bool {
    if message.metadata.response_code != ResponseCode::NXDomain || !message.answers.is_empty() {
        return false;
    }
    let Some(name) = message.queries.first().map(|q| q.name().clone()) else {
        return false;
    };
    let below = nsecs(&message.authorities).iter().any(|(owner, nsec)| {
        let next = nsec.next_domain_name();
        nsec_covers(owner, next, &name) && name.zone_of(next) && name != *next
    });
    if below {
        message.metadata.response_code = ResponseCode::NoError;
    }
    below
}

/// The closest name above `name` (and at or below `zone`) that the NSEC at `owner` pointing to
/// `next` shows to exist: the longer common suffix with either end.
fn closest_encloser(name: &Name, owner: &Name, next: &Name, zone: &Name) -> Name {
    let labels = common_labels(name, owner).max(common_labels(name, next));
    name.trim_to(labels.max(usize::from(zone.num_labels())))
}

/// NXDOMAIN by NSEC: nothing at `name`, an NSEC covering it, none at its wildcard.
fn nxdomain(name: &Name, zone: &Name, set: &[(&Name, &NSEC)]) -> Proof {
    if set.iter().any(|(owner, _)| *owner == name) {
        return Proof::NotProven(format!("NXDOMAIN for {name}, but an NSEC says it exists"));
    }
    let Some((owner, nsec)) = set
        .iter()
        .find(|(owner, n)| nsec_covers(owner, n.next_domain_name(), name))
    else {
        return Proof::NotProven(format!("no NSEC covers {name}"));
    };
    if owner.zone_of(name) && hides_below(|t| nsec.type_set().contains(t)) {
        return below_a_cut(name, owner, nsec);
    }
    // The next name below `name`: `name` is an empty non-terminal, it exists
    // (RFC 4035 §3.1.3.2; Unbound's `val_nsec_proves_name_error`).
    let next = nsec.next_domain_name();
    if name.zone_of(next) && name != next {
        return Proof::NotProven(format!(
            "NXDOMAIN for {name}, but the NSEC covering it points below it ({next}): it is \
             an empty non-terminal"
        ));
    }
    let encloser = closest_encloser(name, owner, nsec.next_domain_name(), zone);
    let Some(wildcard) = wildcard_of(&encloser) else {
        return Proof::NotProven(format!("no wildcard name under {encloser}"));
    };
    if set.iter().any(|(owner, _)| **owner == wildcard) {
        return Proof::NotProven(format!(
            "NXDOMAIN for {name}, but the wildcard {wildcard} exists"
        ));
    }
    if set
        .iter()
        .any(|(owner, n)| nsec_covers(owner, n.next_domain_name(), &wildcard))
    {
        Proof::Proven
    } else {
        Proof::NotProven(format!("no NSEC proves that {wildcard} does not exist"))
    }
}

/// `name` is below `owner`, whose NSEC is a delegation's or a DNAME's: this
/// zone's NSEC records prove nothing there (RFC 6840 §4.1). A delegation
/// without DS, though, puts `name` in an unsigned zone (RFC 4035 §5.2), so
/// an answer from there is insecure, as Unbound judges a CNAME into an
/// unsigned child whose NSEC came with it (val_cnametonsec).
fn below_a_cut(name: &Name, owner: &Name, nsec: &NSEC) -> Proof {
    let has = |t| nsec.type_set().contains(t);
    if is_delegation(has) && !has(RecordType::DS) && !has(RecordType::DNAME) {
        return unsigned_below(name, owner);
    }
    Proof::NotProven(format!(
        "the NSEC covering {name} is a delegation's or a DNAME's ({owner}): it proves nothing \
         below it"
    ))
}

/// NODATA by NSEC: `name` exists without `qtype` (or only a wildcard would).
fn nodata(name: &Name, qtype: RecordType, zone: &Name, set: &[(&Name, &NSEC)]) -> Proof {
    let lacks = |n: &NSEC| {
        let has = |t| n.type_set().contains(t);
        !has(qtype) && !has(RecordType::CNAME) && (qtype == RecordType::DS || !is_delegation(has))
    };
    if let Some((_, nsec)) = set.iter().find(|(owner, _)| *owner == name) {
        return if lacks(nsec) {
            Proof::Proven
        } else {
            Proof::NotProven(format!("NODATA for {name} {qtype}, but its NSEC lists the type (or CNAME, or is a delegation's)"))
        };
    }
    let covering = set
        .iter()
        .find(|(owner, n)| nsec_covers(owner, n.next_domain_name(), name));
    if let Some((owner, nsec)) = covering {
        if owner.zone_of(name) && hides_below(|t| nsec.type_set().contains(t)) {
            return below_a_cut(name, owner, nsec);
        }
        // An empty non-terminal: the next name is below it (RFC 4035 §3.1.3.2).
        if name.zone_of(nsec.next_domain_name()) && name != nsec.next_domain_name() {
            return Proof::Proven;
        }
        // A wildcard without the type (RFC 4035 §3.1.3.4).
        let encloser = closest_encloser(name, owner, nsec.next_domain_name(), zone);
        if let Some(wildcard) = wildcard_of(&encloser) {
            if let Some((_, w)) = set.iter().find(|(owner, _)| **owner == wildcard) {
                if lacks(w) {
                    return Proof::Proven;
                }
            }
        }
    }
    Proof::NotProven(format!("no NSEC proves that {name} has no {qtype}"))
}

/// Whether `here` (below `zone`) has no DS, and why.
pub(crate) fn ds_absence(
    here: &Name,
    zone: &Name,
    records: &[Record],
    ctx: &mut Ctx<'_>,
) -> Result<DsAbsence, Fail> {
    if let Some(n3) = Nsec3Set::of(zone, records, ctx)? {
        return n3.ds_absence(here, zone, ctx);
    }
    let set = nsecs(records);
    if let Some((_, nsec)) = set.iter().find(|(owner, _)| *owner == here) {
        let has = |t| nsec.type_set().contains(t);
        return Ok(ds_absence_at(here, zone, has, "NSEC"));
    }
    if set
        .iter()
        .any(|(owner, n)| nsec_covers(owner, n.next_domain_name(), here))
    {
        // No such name (or an empty non-terminal): no cut here.
        return Ok(DsAbsence::NotCut);
    }
    Ok(DsAbsence::NotProven(format!("no NSEC for {here}")))
}

/// What the `record` (NSEC or NSEC3) matching `here`, whose type bitmap `has`, says of its DS.
fn ds_absence_at(
    here: &Name,
    zone: &Name,
    has: impl Fn(RecordType) -> bool,
    record: &str,
) -> DsAbsence {
    if has(RecordType::DS) {
        DsAbsence::NotProven(format!("the {record} of {here} lists DS"))
    } else if is_delegation(has) {
        DsAbsence::InsecureDelegation(format!(
            "{here} is delegated without DS ({record} of {zone})"
        ))
    } else {
        DsAbsence::NotCut
    }
}

/// A wildcard expansion of `name` from a wildcard with `labels` labels:
/// `name` itself must not exist (RFC 4035 §5.3.4, RFC 5155 §8.8).
pub(crate) fn wildcard_expansion(
    name: &Name,
    labels: u8,
    records: &[Record],
    ctx: &mut Ctx<'_>,
) -> Result<Proof, Fail> {
    let encloser = name.trim_to(usize::from(labels));
    let zone_hint = records
        .iter()
        .find(|r| r.record_type() == RecordType::NSEC3)
        .map(|r| r.name.base_name());
    if let Some(zone) = zone_hint {
        if let Some(n3) = Nsec3Set::of(&zone, records, ctx)? {
            if let Some(fail) = n3.over_cap(ctx) {
                return Ok(Proof::Unsupported(fail));
            }
            let next_closer = name.trim_to(usize::from(labels) + 1);
            let h = n3.hash(&next_closer, ctx)?;
            // In an opt-out span the next closer name may be an unsigned
            // delegation: the expansion is insecure (RFC 5155 §9.2).
            return Ok(match n3.covering(&h) {
                Some(cover) if cover.opt_out() => opt_out_span(name),
                Some(_) => Proof::Proven,
                None => Proof::NotProven(format!("no NSEC3 covers {next_closer}")),
            });
        }
    }
    let set = nsecs(records);
    let covered = set
        .iter()
        .any(|(owner, n)| *owner != name && nsec_covers(owner, n.next_domain_name(), name));
    Ok(if covered {
        Proof::Proven
    } else {
        Proof::NotProven(format!(
            "no NSEC covers {name} under the wildcard of {encloser}"
        ))
    })
}

/// The NSEC3 records of one zone with their decoded owner hashes.
struct Nsec3Set<'r> {
    entries: Vec<(Vec<u8>, &'r NSEC3)>,
    salt: Vec<u8>,
    iterations: u16,
}

impl<'r> Nsec3Set<'r> {
    /// None when there is no NSEC3; Err when they are over the iteration
    /// cap is reported by the caller's proof as Insecure instead, so this
    /// returns a set with `iterations` and the callers check it.
    fn of(zone: &Name, records: &'r [Record], _ctx: &mut Ctx<'_>) -> Result<Option<Self>, Fail> {
        let mut entries = Vec::new();
        let mut params: Option<(Vec<u8>, u16)> = None;
        for r in records {
            let RData::DNSSEC(DNSSECRData::NSEC3(n)) = &r.data else {
                continue;
            };
            if r.name.base_name() != *zone || n.hash_algorithm() != Nsec3HashAlgorithm::SHA1 {
                continue;
            }
            let Some(hash) = nsec3_owner_hash(&r.name) else {
                continue;
            };
            match &params {
                None => params = Some((n.salt().to_vec(), n.iterations())),
                // RFC 5155 §8.2: one zone, one set of parameters; others are ignored.
                Some((salt, it)) if salt.as_slice() != n.salt() || *it != n.iterations() => {
                    continue
                }
                Some(_) => {}
            }
            entries.push((hash, n));
        }
        Ok(params.map(|(salt, iterations)| Self {
            entries,
            salt,
            iterations,
        }))
    }

    /// RFC 9276 §3.2: over the cap, the proof is not checked and the answer
    /// is insecure (EDE 27, Unsupported NSEC3 Iterations Value).
    fn over_cap(&self, ctx: &Ctx<'_>) -> Option<Fail> {
        (self.iterations > ctx.budget.nsec3_iterations).then(|| {
            Fail::new(
                ede::UNSUPPORTED_NSEC3_ITERATIONS,
                format!(
                    "NSEC3 with {} iterations, over the cap of {} (RFC 9276)",
                    self.iterations, ctx.budget.nsec3_iterations,
                ),
            )
        })
    }

    fn hash(&self, name: &Name, ctx: &mut Ctx<'_>) -> Result<Vec<u8>, Fail> {
        ctx.budget.nsec3_hash()?;
        Nsec3HashAlgorithm::SHA1
            .hash(&self.salt, name, self.iterations)
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| {
                Fail::new(
                    ede::DNSSEC_BOGUS,
                    format!("cannot hash {name} for NSEC3: {e}"),
                )
            })
    }

    fn matching(&self, hash: &[u8]) -> Option<&'r NSEC3> {
        self.entries
            .iter()
            .find(|(owner, _)| owner.as_slice() == hash)
            .map(|(_, n)| *n)
    }

    fn covering(&self, hash: &[u8]) -> Option<&'r NSEC3> {
        self.entries
            .iter()
            .find(|(owner, n)| {
                let next = n.next_hashed_owner_name();
                let owner = owner.as_slice();
                (owner < hash && (hash < next || next <= owner)) || (next <= owner && hash < next)
            })
            .map(|(_, n)| *n)
    }

    /// The closest encloser proof (RFC 5155 §8.3): the closest encloser,
    /// and the NSEC3 covering the next closer name.
    /// Hashes each ancestor from the longest: a long name exhausts the
    /// NSEC3 hash budget (CVE-2023-50868) and is bogus.
    fn closest_encloser(
        &self,
        name: &Name,
        zone: &Name,
        ctx: &mut Ctx<'_>,
    ) -> Result<Encloser<'r>, Fail> {
        let top = usize::from(zone.num_labels());
        for labels in (top..usize::from(name.num_labels())).rev() {
            let candidate = name.trim_to(labels);
            let h = self.hash(&candidate, ctx)?;
            if let Some(found) = self.matching(&h) {
                let has = |t| found.type_set().contains(t);
                let cut = labels > top && is_delegation(has);
                if cut && !has(RecordType::DS) {
                    return Ok(Encloser::UnsignedDelegation(candidate));
                }
                if cut || has(RecordType::DNAME) {
                    return Ok(Encloser::NotProven);
                }
                let next_closer = name.trim_to(labels + 1);
                let h = self.hash(&next_closer, ctx)?;
                return Ok(match self.covering(&h) {
                    Some(cover) => Encloser::Proven(candidate, cover),
                    None => Encloser::NotProven,
                });
            }
        }
        Ok(Encloser::NotProven)
    }

    fn nxdomain(&self, name: &Name, zone: &Name, ctx: &mut Ctx<'_>) -> Result<Proof, Fail> {
        if let Some(fail) = self.over_cap(ctx) {
            return Ok(Proof::Unsupported(fail));
        }
        let (encloser, cover) = match self.closest_encloser(name, zone, ctx)? {
            Encloser::Proven(encloser, cover) => (encloser, cover),
            Encloser::UnsignedDelegation(cut) => return Ok(unsigned_below(name, &cut)),
            Encloser::NotProven => {
                return Ok(Proof::NotProven(format!(
                    "no NSEC3 closest-encloser proof for {name}"
                )))
            }
        };
        let Some(wildcard) = wildcard_of(&encloser) else {
            return Ok(Proof::NotProven(format!(
                "no wildcard name under {encloser}"
            )));
        };
        let h = self.hash(&wildcard, ctx)?;
        if self.covering(&h).is_none() {
            return Ok(Proof::NotProven(format!(
                "no NSEC3 proves that {wildcard} does not exist"
            )));
        }
        // The next closer name may be an unsigned delegation in an opt-out
        // span (RFC 5155 §6): nothing is proven about it.
        Ok(if cover.opt_out() {
            opt_out_span(name)
        } else {
            Proof::Proven
        })
    }

    fn nodata(
        &self,
        name: &Name,
        qtype: RecordType,
        zone: &Name,
        ctx: &mut Ctx<'_>,
    ) -> Result<Proof, Fail> {
        if let Some(fail) = self.over_cap(ctx) {
            return Ok(Proof::Unsupported(fail));
        }
        let h = self.hash(name, ctx)?;
        if let Some(found) = self.matching(&h) {
            return Ok(matching_nodata(name, qtype, found));
        }
        let (encloser, cover) = match self.closest_encloser(name, zone, ctx)? {
            Encloser::Proven(encloser, cover) => (encloser, cover),
            // Data from below an unsigned cut, met through a CNAME or a
            // forwarder: it is insecure, as Unbound has it. A DS question
            // is the parent's to answer, and is not.
            Encloser::UnsignedDelegation(cut) if qtype != RecordType::DS => {
                return Ok(unsigned_below(name, &cut))
            }
            _ => {
                return Ok(Proof::NotProven(format!(
                    "no NSEC3 matches or encloses {name}"
                )))
            }
        };
        // A wildcard without the type (RFC 5155 §8.7), DS included: a name
        // a wildcard answers for has no DS of its own. (An existing name,
        // a signed delegation's included, has an NSEC3 of its own, so no
        // NSEC3 covers it as a next closer name.)
        if let Some(wildcard) = wildcard_of(&encloser) {
            let h = self.hash(&wildcard, ctx)?;
            if let Some(found) = self.matching(&h) {
                return Ok(match matching_nodata(&wildcard, qtype, found) {
                    Proof::Proven if cover.opt_out() => opt_out_span(name),
                    proof => proof,
                });
            }
        }
        // RFC 5155 §8.6 and §9.2: the next closer name in an opt-out span
        // may be an unsigned delegation; nothing is proven, and the answer
        // goes out without AD.
        Ok(if cover.opt_out() {
            opt_out_span(name)
        } else {
            Proof::NotProven(format!("no NSEC3 proves that {name} has no {qtype}"))
        })
    }

    fn ds_absence(&self, here: &Name, zone: &Name, ctx: &mut Ctx<'_>) -> Result<DsAbsence, Fail> {
        if let Some(fail) = self.over_cap(ctx) {
            return Ok(DsAbsence::Unsupported(fail));
        }
        let h = self.hash(here, ctx)?;
        if let Some(found) = self.matching(&h) {
            let has = |t| found.type_set().contains(t);
            return Ok(ds_absence_at(here, zone, has, "NSEC3"));
        }
        Ok(match self.closest_encloser(here, zone, ctx)? {
            Encloser::Proven(_, cover) if cover.opt_out() => DsAbsence::InsecureDelegation(
                format!("{here} falls in an NSEC3 opt-out span of {zone}"),
            ),
            Encloser::Proven(..) => DsAbsence::NotCut,
            Encloser::UnsignedDelegation(cut) => DsAbsence::InsecureDelegation(format!(
                "{here} is below {cut}, delegated without DS"
            )),
            Encloser::NotProven => {
                DsAbsence::NotProven(format!("no NSEC3 matches or encloses {here}"))
            }
        })
    }
}

/// What the NSEC3 records say of the closest encloser of a name.
enum Encloser<'r> {
    /// RFC 5155 §8.3: the closest encloser, and the NSEC3 covering the
    /// next closer name.
    Proven(Name, &'r NSEC3),
    /// The closest encloser is a delegation without DS: the name is in an
    /// unsigned child zone.
    UnsignedDelegation(Name),
    NotProven,
}

/// NODATA from the NSEC3 matching `name` (RFC 5155 §8.5, §8.6). Seen from
/// above, a delegation says nothing of types but DS: without a DS it is an
/// unsigned cut (insecure), with one the answer should have come from below.
/// A DS denial from the child's apex NSEC3 is the wrong side of the cut.
fn matching_nodata(name: &Name, qtype: RecordType, found: &NSEC3) -> Proof {
    let has = |t| found.type_set().contains(t);
    if has(qtype) || has(RecordType::CNAME) {
        return Proof::NotProven(format!(
            "NODATA for {name} {qtype}, but its NSEC3 lists the type"
        ));
    }
    if qtype == RecordType::DS {
        return if has(RecordType::SOA) && !name.is_root() {
            Proof::NotProven(format!("the child's apex NSEC3 denies the DS of {name}"))
        } else {
            Proof::Proven
        };
    }
    match (is_delegation(has), has(RecordType::DS)) {
        (false, _) => Proof::Proven,
        (true, false) => unsigned_below(name, name),
        (true, true) => Proof::NotProven(format!(
            "NODATA for {name} {qtype} from above its signed delegation"
        )),
    }
}

fn opt_out_span(name: &Name) -> Proof {
    Proof::Insecure(format!("{name} falls in an NSEC3 opt-out span"))
}

fn unsigned_below(name: &Name, cut: &Name) -> Proof {
    Proof::Insecure(format!("{name} is at or below {cut}, delegated without DS"))
}

/// The hash an NSEC3 owner name carries in its first label (RFC 5155
/// §3), decoded: what callers that index NSEC3 records by hash key them by.
pub(crate) fn nsec3_owner_hash(owner: &Name) -> Option<Vec<u8>> {
    owner.iter().next().and_then(base32hex)
}

/// RFC 4648 §7 base32hex, no padding, either case (NSEC3 owner labels).
fn base32hex(label: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(label.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in label {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'v' => c - b'a' + 10,
            b'A'..=b'V' => c - b'A' + 10,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::name as n;

    #[test]
    fn base32hex_decodes_nsec3_labels() {
        // RFC 5155 Appendix A: H(example) = 0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.
        let h = base32hex(b"0p9mhaveqvm6t7vbl5lop2u3t2rp3tom").unwrap();
        let computed = Nsec3HashAlgorithm::SHA1
            .hash(&[0xaa, 0xbb, 0xcc, 0xdd], &n("example."), 12)
            .unwrap();
        assert_eq!(h, computed.as_ref());
        assert_eq!(base32hex(b"0P9M"), base32hex(b"0p9m"));
        assert!(base32hex(b"xyz").is_none());
    }

    #[test]
    fn nsec_cover_is_canonical_and_wraps_to_the_apex() {
        assert!(nsec_covers(
            &n("a.example."),
            &n("c.example."),
            &n("b.example.")
        ));
        assert!(nsec_covers(
            &n("a.example."),
            &n("c.example."),
            &n("x.b.example.")
        ));
        assert!(!nsec_covers(
            &n("a.example."),
            &n("c.example."),
            &n("d.example.")
        ));
        assert!(!nsec_covers(
            &n("a.example."),
            &n("c.example."),
            &n("a.example.")
        ));
        // The last NSEC points back to the apex.
        assert!(nsec_covers(
            &n("z.example."),
            &n("example."),
            &n("zz.example.")
        ));
        assert_eq!(common_labels(&n("a.b.example."), &n("c.b.example.")), 2);
    }

    /// `dn.example. NSEC a.b.c.ent.example.` covers `c.ent.example.` in
    /// canonical order, but `c.ent.example.` is above the next name: an
    /// empty non-terminal, which exists. It proves NODATA for it, never
    /// NXDOMAIN; a name beside the chain (`other.ent.example.`, not above
    /// the next name) is still denied.
    #[test]
    fn an_nsec_pointing_below_a_name_proves_it_exists_not_that_it_does_not() {
        let zone = n("example.");
        let ent_nsec = NSEC::new_cover_self(n("a.b.c.ent.example."), [RecordType::TXT]);
        let wildcard_nsec = NSEC::new_cover_self(n("dn.example."), [RecordType::SOA]);
        let (dn, apex) = (n("dn.example."), n("example."));
        let set = vec![(&dn, &ent_nsec), (&apex, &wildcard_nsec)];
        for ent in ["ent.example.", "c.ent.example.", "b.c.ent.example."] {
            let name = n(ent);
            assert!(
                matches!(nxdomain(&name, &zone, &set), Proof::NotProven(ref why) if why.contains("empty non-terminal")),
                "{ent}: {:?}",
                nxdomain(&name, &zone, &set)
            );
            assert_eq!(
                nodata(&name, RecordType::A, &zone, &set),
                Proof::Proven,
                "{ent}"
            );
        }
        assert_eq!(
            nxdomain(&n("e.example."), &zone, &set),
            Proof::Proven,
            "beside the chain: denied"
        );
    }
    /// A name below a delegation's NSEC (`sub.example. NSEC zzz.example. NS`):
    /// nothing is proven of it in example., but without DS the delegation
    /// makes it insecure; with DS, or below a DNAME, the proof fails.
    #[test]
    fn below_a_delegation_without_ds_is_insecure_and_below_a_signed_one_is_not_proven() {
        let zone = n("example.");
        let sub = n("sub.example.");
        let name = n("www.sub.example.");
        let cases = [
            (vec![RecordType::NS], true),
            (vec![RecordType::NS, RecordType::DS], false),
            (vec![RecordType::DNAME], false),
        ];
        for (types, insecure) in cases {
            let nsec = NSEC::new_cover_self(n("zzz.example."), types.clone());
            let set = vec![(&sub, &nsec)];
            for proof in [
                nxdomain(&name, &zone, &set),
                nodata(&name, RecordType::A, &zone, &set),
            ] {
                assert_eq!(
                    matches!(proof, Proof::Insecure(_)),
                    insecure,
                    "{types:?}: {proof:?}"
                );
                if !insecure {
                    assert!(matches!(proof, Proof::NotProven(_)), "{types:?}: {proof:?}");
                }
            }
        }
    }
}
