//! DNSSEC validation of forwarded answers (RFC 4035 §4.9; issue 16
//! "Forwarding never validates"), around [`Forwarder::query`].
//!
//! With `--dnssec validate` (the default) a client query with CD=0 is
//! forwarded with DO=1 CD=1 (the upstream's own judgement is not taken:
//! Picket decides with its own trust anchors), judged by [`Validator`], and
//! - Secure: stored with AD set (served to clients that sent DO or AD);
//! - Insecure: stored with AD clear (with EDE 27 when the zone's NSEC3
//!   iterations are over the cap, RFC 9276 §3.2);
//! - Bogus: SERVFAIL with the validator's EDE, remembered for
//!   `Limits::dnssec_verdict_ttl` so a bogus name is not judged per query.
//!
//! DO=0 clients are given none of the RRSIG, NSEC and NSEC3 records asked
//! for on their behalf. A CD=1 query is validated too, as Unbound and BIND
//! do, but only to set AD (RFC 4035 §3.2.3: AD if and only if the resolver
//! side found the answer authentic): a bogus or unjudgeable answer is passed
//! on as it came, without AD, because the client takes responsibility for
//! its own checking (§3.2.2). The upstream's AD bit is never passed on: AD
//! means that Picket validated the answer itself.

use super::Upstream;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::forward::{Forwarder, UpstreamQuery};
use super::UpstreamError;
use crate::config::Limits;
use crate::dnssec::{
    cap_ttls, nxdomain_for_an_empty_non_terminal, secure_ttl_cap, strip_for_client_without_do,
    Fetch, FetchError, FetchFuture, Security, Validator, ValidatorSettings,
};
use crate::protocol::wire::flag;

/// Key of a remembered bogus verdict: wire name, type, class, DO, and the
/// servers asked (a policy's upstream group may see other data).
type BogusKey = (Vec<u8>, u16, u16, bool, Vec<Upstream>);

/// The validator of forwarded answers, shared by every worker.
pub struct Validation {
    validator: Validator,
    /// Recent bogus verdicts (EDE, reason), answered without a new fetch.
    bogus: moka::sync::Cache<BogusKey, (u16, String)>,
}

impl Validation {
    pub fn new(settings: ValidatorSettings, limits: &Limits) -> Self {
        Self {
            validator: Validator::new(settings, limits),
            bogus: moka::sync::Cache::builder()
                .max_capacity(limits.dnssec_key_cache_entries)
                .time_to_live(limits.dnssec_verdict_ttl)
                .build(),
        }
    }

    pub fn validator(&self) -> &Validator {
        &self.validator
    }
}

/// Forwards `q` to `servers` and, when `validation` is on, validates the
/// answer (see the module doc). The bytes returned never carry the
/// upstream's AD bit; they carry Picket's own when secure.
pub async fn forward(
    forwarder: &Forwarder,
    validation: Option<&Arc<Validation>>,
    q: &UpstreamQuery<'_>,
    servers: &[Upstream],
) -> Result<(Vec<u8>, Upstream), UpstreamError> {
    let Some(validation) = validation else {
        let (mut bytes, server) = forwarder.query(q, servers).await?;
        set_ad(&mut bytes, false);
        return Ok((bytes, server));
    };
    // Boxed: the validator's future is kilobytes; unboxed, every forward
    // that does not validate would carry (and copy) it too.
    Box::pin(forward_validated(forwarder, validation, q, servers)).await
}

/// [`forward`] with validation: DO=1 CD=1 upstream, then the validator's verdict.
async fn forward_validated(
    forwarder: &Forwarder,
    validation: &Validation,
    q: &UpstreamQuery<'_>,
    servers: &[Upstream],
) -> Result<(Vec<u8>, Upstream), UpstreamError> {
    let key: BogusKey = (
        q.name_wire.to_vec(),
        q.qtype,
        q.qclass,
        q.dnssec_ok,
        servers.to_vec(),
    );
    // A CD=1 client is given the data of a name judged bogus, so the
    // remembered verdict is not for it.
    if let Some((ede, reason)) = validation.bogus.get(&key).filter(|_| !q.cd) {
        return Err(UpstreamError::Dnssec { ede, reason });
    }
    let asked = UpstreamQuery {
        name_wire: q.name_wire,
        qtype: q.qtype,
        qclass: q.qclass,
        dnssec_ok: true,
        cd: true,
    };
    let (bytes, server) = forwarder.query(&asked, servers).await?;
    let mut message = Message::from_vec(&bytes).map_err(|_| UpstreamError::Malformed)?;
    if !matches!(
        message.metadata.response_code,
        ResponseCode::NoError | ResponseCode::NXDomain
    ) {
        // SERVFAIL, REFUSED...: nothing to judge, passed on as it is (minus
        // the records a DO=0 client did not ask for, and AD).
        let mut bytes = for_client(bytes, message, q, false)?;
        set_ad(&mut bytes, false);
        return Ok((bytes, server));
    }
    let fetch = UpstreamFetch { forwarder, servers };
    let nodata = nxdomain_for_an_empty_non_terminal(&mut message);
    let (secure, changed) = match validation.validator.validate(&message, &fetch).await {
        // RFC 4035 §5.3.3: a secure answer is not kept past its signatures.
        Security::Secure => {
            let cap = secure_ttl_cap(&message);
            (true, cap.is_some_and(|cap| cap_ttls(&mut message, cap)))
        }
        Security::Insecure => (false, false),
        // Checking disabled: the client judges for itself (RFC 4035 §3.2.2).
        Security::Bogus { .. } | Security::Indeterminate { .. } if q.cd => (false, false),
        Security::InsecureUnsupported { ede, reason } => {
            attach_ede(&mut message, ede, &reason);
            (false, true)
        }
        Security::Bogus { ede, reason } => {
            tracing::debug!(%reason, ede, "DNSSEC bogus answer");
            validation.bogus.insert(key, (ede, reason.clone()));
            return Err(UpstreamError::Dnssec { ede, reason });
        }
        Security::Indeterminate { reason } => return Err(UpstreamError::Resolution(reason)),
    };
    if secure && !q.cd {
        if let Some(reason) = validation.validator.root_key_sentinel(&message) {
            return Err(UpstreamError::Dnssec { ede: 0, reason });
        }
    }
    let mut bytes = for_client(bytes, message, q, changed || nodata)?;
    set_ad(&mut bytes, secure);
    Ok((bytes, server))
}

/// What the client of `q` is given: the upstream's `bytes` as they came
/// when `message` (their reading) was not `changed` and holds nothing a
/// DO=0 client did not ask for; else `message` re-encoded, without those
/// records. Most answers are the first kind: an insecure answer carries no
/// DNSSEC record, and re-encoding costs as much as the validation.
fn for_client(
    bytes: Vec<u8>,
    mut message: Message,
    q: &UpstreamQuery<'_>,
    changed: bool,
) -> Result<Vec<u8>, UpstreamError> {
    let stripped = !q.dnssec_ok && strip_for_client_without_do(&mut message);
    if stripped || changed {
        message.to_vec().map_err(|_| UpstreamError::Malformed)
    } else {
        Ok(bytes)
    }
}

/// Puts Extended DNS Error `code` (RFC 8914) with `text` in `message`'s OPT,
/// where the answer cache reads it and passes it on to clients with EDNS.
pub(crate) fn attach_ede(message: &mut Message, code: u16, text: &str) {
    use hickory_proto::op::Edns;
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let mut data = code.to_be_bytes().to_vec();
    data.extend_from_slice(text.as_bytes());
    let edns = message.edns.get_or_insert_with(Edns::new);
    let ede = EdnsCode::Unknown(crate::protocol::wire::edns_option::EDE);
    edns.options_mut()
        .insert(EdnsOption::Unknown(ede.into(), data));
}

fn set_ad(bytes: &mut [u8], on: bool) {
    if let Some(flags) = bytes.get_mut(3) {
        let ad = flag::AD as u8;
        *flags = if on { *flags | ad } else { *flags & !ad };
    }
}

/// The validator's DNSKEY and DS queries, asked of the forwarder's
/// upstreams with DO=1 CD=1.
struct UpstreamFetch<'a> {
    forwarder: &'a Forwarder,
    servers: &'a [Upstream],
}

impl Fetch for UpstreamFetch<'_> {
    fn fetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> FetchFuture<'a> {
        Box::pin(async move {
            let wire = name
                .to_lowercase()
                .to_bytes()
                .map_err(|e| FetchError(format!("{name}: {e}")))?;
            let q = UpstreamQuery {
                name_wire: &wire,
                qtype: rtype.into(),
                qclass: 1,
                dnssec_ok: true,
                cd: true,
            };
            let (bytes, server) = self
                .forwarder
                .query(&q, self.servers)
                .await
                .map_err(|e| FetchError(format!("{name} {rtype}: {e}")))?;
            Message::from_vec(&bytes).map_err(|e| {
                FetchError(format!(
                    "{name} {rtype}: malformed answer from {server}: {e}"
                ))
            })
        })
    }
}
