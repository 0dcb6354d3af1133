//! [`TreeUpstream`]: a stand-in for a recursive resolver that Picket
//! forwards to. It holds a whole tree of zones (root, TLDs, leaves; signed
//! with [`super::sign`] or not) and answers each question from the zone that
//! holds it, the parent for DS (RFC 4035 §3.1.4.1), following CNAMEs into
//! other zones, with RRSIGs and NSEC proofs for DO=1 queries. It always sets
//! AD, as a validating upstream would, so tests can check that Picket never
//! passes that bit on.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::zone::Zones;

/// Bound on CNAME hops across zones.
const MAX_CHASE: usize = 8;

/// A fake recursive upstream on `127.0.0.1:<port>` (UDP). Dropping it stops it.
pub struct TreeUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Message>>>,
    nxdomain_for_nodata: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TreeUpstream {
    /// Serves `zones`, one zone's text each (its SOA says which zone).
    pub fn start(zones: &[String]) -> TreeUpstream {
        Self::start_nsec3(zones, Vec::new())
    }

    /// [`TreeUpstream::start`], with the negative answers of the zones in
    /// `nsec3` (apex, chain from [`super::sign::ZoneKey::nsec3_chain`])
    /// proven by that whole NSEC3 chain instead of NSEC records.
    pub fn start_nsec3(zones: &[String], nsec3: Vec<(&str, Vec<Record>)>) -> TreeUpstream {
        let tree: Vec<Served> = zones
            .iter()
            .map(|text| {
                let zone = Zones::parse(text).unwrap_or_else(|e| panic!("bad test zone: {e}"));
                let apex = zone.apex().expect("every zone text has an SOA");
                let chain = nsec3
                    .iter()
                    .find(|(z, _)| Name::from_ascii(z).unwrap() == apex)
                    .map(|(_, chain)| chain.clone());
                Served {
                    apex,
                    zone,
                    nsec3: chain,
                }
            })
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the tree upstream");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("its address");
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let nxdomain_for_nodata = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            let nxdomain_for_nodata = nxdomain_for_nodata.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_535];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    received.lock().unwrap().push(query.clone());
                    let old_server = nxdomain_for_nodata.load(Ordering::SeqCst);
                    if let Some(reply) = answer(&tree, &query, old_server) {
                        let _ = socket.send_to(&reply, peer);
                    }
                }
            })
        };
        TreeUpstream {
            addr,
            stop,
            received,
            nxdomain_for_nodata,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer NXDOMAIN where the answer is NODATA (the proof left as it
    /// is), as old servers did for empty non-terminals.
    pub fn set_nxdomain_for_nodata(&self, nxdomain: bool) {
        self.nxdomain_for_nodata.store(nxdomain, Ordering::SeqCst);
    }

    /// Every query received so far.
    pub fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for TreeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One zone of the tree.
struct Served {
    apex: Name,
    zone: Zones,
    /// Its NSEC3 chain, served whole with every negative answer.
    nsec3: Option<Vec<Record>>,
}

/// The zone that answers `name`/`rtype`: the deepest holding it, or for DS
/// at a zone's apex, the one above.
fn zone_for<'t>(tree: &'t [Served], name: &Name, rtype: RecordType) -> Option<&'t Served> {
    tree.iter()
        .filter(|s| s.apex.zone_of(name))
        .filter(|s| !(rtype == RecordType::DS && s.apex == *name && !name.is_root()))
        .max_by_key(|s| s.apex.num_labels())
}

fn answer(tree: &[Served], query: &Message, nxdomain_for_nodata: bool) -> Option<Vec<u8>> {
    let question = query.queries.first()?;
    let dnssec_ok = query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    let qtype = question.query_type();
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata = Metadata::response_from_request(&query.metadata);
    response.metadata.message_type = MessageType::Response;
    response.metadata.recursion_available = true;
    response.metadata.authentic_data = true;
    response.queries = query.queries.clone();
    response.edns = query.edns.as_ref().map(|_| {
        let mut edns = Edns::new();
        edns.set_max_payload(4096).set_dnssec_ok(dnssec_ok);
        edns
    });
    let mut name = question.name().clone();
    for _ in 0..MAX_CHASE {
        let Some(zone) = zone_for(tree, &name, qtype) else {
            response.metadata.response_code = hickory_proto::op::ResponseCode::Refused;
            break;
        };
        let mut part = zone.zone.answer_dnssec(&name, qtype, dnssec_ok);
        let negative = part
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA);
        if let (Some(chain), true, true) = (&zone.nsec3, negative, dnssec_ok) {
            part.authorities.retain(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::NSEC(_)) => false,
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                    sig.input().type_covered != RecordType::NSEC
                }
                _ => true,
            });
            part.authorities.extend(chain.iter().cloned());
        }
        response.metadata.response_code = part.rcode;
        let target = part.answers.iter().rev().find_map(|r| match &r.data {
            RData::CNAME(c) if qtype != RecordType::CNAME => Some(c.0.clone()),
            _ => None,
        });
        let answered = |t: &Name| {
            part.answers
                .iter()
                .any(|r| r.name == *t && r.record_type() != RecordType::CNAME)
                || part.answers.iter().any(|r| {
                    r.name == *t
                        && r.record_type() == RecordType::CNAME
                        && qtype == RecordType::CNAME
                })
        };
        response.answers.extend(part.answers.iter().cloned());
        response.authorities = part.authorities;
        response.additionals = part.additionals;
        match target {
            Some(t) if !answered(&t) && !part.answers.iter().any(|r| r.name == t) => name = t,
            _ => break,
        }
    }
    let nodata = response.metadata.response_code == ResponseCode::NoError
        && response.answers.is_empty()
        && response
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA);
    if nxdomain_for_nodata && nodata {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response.to_vec().ok()
}
