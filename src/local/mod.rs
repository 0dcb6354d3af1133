//! Answers that never leave this process and never depend on policy rules:
//! zone transfers are refused (we are not an authority), CHAOS identity
//! queries answered, other classes refused, the health name answered, DDR's
//! `_dns.resolver.arpa` answered with our encrypted endpoints
//! ([`crate::ddr`]) and the rest of `resolver.arpa` answered as a zone with
//! no other names, Firefox's canary domain answered NXDOMAIN when Picket
//! filters; and, once the policy has let it through, a name in a locally
//! served zone ([`zones`]: `localhost`, `invalid`, private reverse zones...)
//! is answered here, and ANY gets the minimal RFC 8482 answer, which also
//! removes it as an amplifier.

pub mod zones;

use std::sync::Arc;

use crate::config::Settings;
use crate::ddr;
use crate::health::NotReady;
use crate::protocol::build::txt_rdata;
use crate::protocol::wire::{ede, flag, rcode, rtype};
use crate::protocol::{EdnsOut, Request, ResponseWriter, Section};

/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Class CHAOS (RFC 1035 §3.2.4): server identity and version queries.
const CLASS_CH: u16 = 3;
/// TTL of local identity and health answers: never cached downstream.
const LOCAL_TTL: u32 = 0;
/// TTL of the RFC 8482 answer to ANY.
const ANY_TTL: u32 = 3600;
/// Firefox's canary domain: NXDOMAIN (or NOERROR without addresses) tells
/// Firefox the network filters DNS, and it then keeps using the system
/// resolver instead of turning on its own DoH ("DNS over HTTPS in Firefox",
/// Mozilla support: "Canary domain use-application-dns.net").
pub const CANARY: &str = "use-application-dns.net";
/// TTL of the DDR answer: endpoints change only with a restart, and RFC 9462
/// leaves the TTL to the resolver; five minutes lets a client notice a
/// changed deployment soon without asking before every connection.
const DDR_TTL: u32 = 300;

/// What a local answer may need to know of the running server, asked only
/// when a query needs it.
pub struct Probes<R, N> {
    /// Whether this node should receive traffic (or why not), for the health name.
    pub ready: R,
    /// The certificate's DNS name, for DDR.
    pub tls_name: N,
}

/// The local answer to `req`, if it gets one.
pub fn answer<R, N>(
    req: &Request,
    settings: &Settings,
    probes: Probes<R, N>,
    edns: Option<EdnsOut<'_>>,
    limit: usize,
) -> Option<Vec<u8>>
where
    R: FnOnce() -> Result<(), NotReady>,
    N: FnOnce() -> Option<Arc<String>>,
{
    if matches!(req.qtype, rtype::AXFR | rtype::IXFR) {
        return Some(ResponseWriter::new(req, rcode::REFUSED as u16).finish(edns.as_ref(), limit));
    }
    if req.qclass != CLASS_IN {
        return Some(chaos(req, settings, edns, limit));
    }
    if settings.health_name.as_deref() == Some(req.qname.as_str()) {
        return Some(health(req, (probes.ready)(), edns, limit));
    }
    if req.qname == CANARY && settings.filters() {
        // Every type: Firefox asks A and AAAA, other browsers may ask more.
        let edns = edns.map(|e| e.with_ede(ede::FILTERED, "this resolver filters"));
        return Some(ResponseWriter::new(req, rcode::NXDOMAIN as u16).finish(edns.as_ref(), limit));
    }
    if req.qname == ddr::NAME {
        let name = (probes.tls_name)();
        return Some(designation(
            req,
            settings,
            name.as_deref().map(String::as_str),
            edns,
            limit,
        ));
    }
    if ddr::in_zone(&req.qname) {
        return Some(resolver_arpa(req, edns, limit));
    }
    None
}

/// `resolver.arpa` and the names under it other than DDR's: the apex exists (DDR's name is
/// below it) with no data, anything else does not exist. Authoritative, and never forwarded:
/// an upstream resolver would answer for itself (RFC 9462 §8).
fn resolver_arpa(req: &Request, edns: Option<EdnsOut<'_>>, limit: usize) -> Vec<u8> {
    let code = if req.qname == ddr::ZONE {
        rcode::NOERROR
    } else {
        rcode::NXDOMAIN
    };
    let mut w = ResponseWriter::new(req, code as u16);
    w.set_flags(flag::AA);
    w.finish(edns.as_ref(), limit)
}

/// `_dns.resolver.arpa` (RFC 9462 §4): one SVCB record per encrypted
/// endpoint, authoritative; NODATA for other types, and without a
/// certificate (nothing encrypted to designate).
fn designation(
    req: &Request,
    settings: &Settings,
    tls_name: Option<&str>,
    edns: Option<EdnsOut<'_>>,
    limit: usize,
) -> Vec<u8> {
    let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
    w.set_flags(flag::AA);
    if req.qtype == ddr::SVCB {
        for rdata in ddr::records(settings, tls_name) {
            w.record_at_question(Section::Answer, ddr::SVCB, DDR_TTL, &rdata);
        }
    }
    w.finish(edns.as_ref(), limit)
}

/// The RFC 8482 answer to ANY (a lone HINFO "RFC8482"), for queries the
/// policy lets resolve: it costs the upstream nothing and amplifies nothing.
pub fn any_answer(req: &Request, edns: Option<EdnsOut<'_>>, limit: usize) -> Option<Vec<u8>> {
    if req.qtype != rtype::ANY {
        return None;
    }
    let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
    let mut hinfo = txt_rdata(b"RFC8482");
    hinfo.push(0);
    w.record_at_question(Section::Answer, rtype::HINFO, ANY_TTL, &hinfo);
    Some(w.finish(edns.as_ref(), limit))
}

/// CHAOS TXT (as BIND, NSD, Unbound): `id.server.` and `hostname.bind.`
/// give our identity (the NSID), `version.bind.` and `version.server.` the
/// configured version text. Anything else, any other class, and whatever is
/// turned off, is REFUSED.
fn chaos(req: &Request, settings: &Settings, edns: Option<EdnsOut<'_>>, limit: usize) -> Vec<u8> {
    let text: Option<&[u8]> = match (req.qclass, req.qname.as_str()) {
        (CLASS_CH, "id.server" | "hostname.bind") => settings.nsid.as_deref(),
        (CLASS_CH, "version.bind" | "version.server") => {
            settings.version_text.as_deref().map(str::as_bytes)
        }
        _ => None,
    };
    let Some(text) = text else {
        return ResponseWriter::new(req, rcode::REFUSED as u16).finish(edns.as_ref(), limit);
    };
    let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
    w.set_flags(flag::AA);
    if matches!(req.qtype, rtype::TXT | rtype::ANY) {
        w.record_at_question_in(
            Section::Answer,
            rtype::TXT,
            CLASS_CH,
            LOCAL_TTL,
            &txt_rdata(text),
        );
    }
    w.finish(edns.as_ref(), limit)
}

/// The health name: A 127.0.0.1 and TXT "ok" (other types: no data) while
/// ready; SERVFAIL with EDE 14 (Not Ready) and the reason while starting,
/// draining or without a working upstream.
fn health(
    req: &Request,
    ready: Result<(), NotReady>,
    edns: Option<EdnsOut<'_>>,
    limit: usize,
) -> Vec<u8> {
    if let Err(why) = ready {
        let edns = edns.map(|e| e.with_ede(ede::NOT_READY, why.as_str()));
        return ResponseWriter::new(req, rcode::SERVFAIL as u16).finish(edns.as_ref(), limit);
    }
    let mut w = ResponseWriter::new(req, rcode::NOERROR as u16);
    w.set_flags(flag::AA);
    match req.qtype {
        rtype::A => w.address(Section::Answer, [127, 0, 0, 1].into(), LOCAL_TTL),
        rtype::TXT => {
            w.record_at_question(Section::Answer, rtype::TXT, LOCAL_TTL, &txt_rdata(b"ok"))
        }
        _ => {}
    }
    w.finish(edns.as_ref(), limit)
}
