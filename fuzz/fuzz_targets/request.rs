//! Query bytes → parse → response build → the response must re-parse.
//! Any panic, or a response hickory-proto cannot read, is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket::protocol::{parse_query, ResponseWriter, Section, EdnsOut, Rejection};
use picket::protocol::build::{empty_reply, synthetic_soa_rdata};
use picket::protocol::wire::rtype;

fuzz_target!(|data: &[u8]| {
    let reply = match parse_query(data) {
        Ok(req) => {
            let mut w = ResponseWriter::new(&req, 3);
            w.record_at_question(Section::Authority, rtype::SOA, 60, &synthetic_soa_rdata(60));
            let edns = req.edns.map(|e| EdnsOut::answering(&e, 1232).with_ede(15, "fuzz"));
            w.finish(edns.as_ref(), req.udp_limit(1232))
        }
        Err(Rejection::Drop) => return,
        Err(Rejection::Reply { header, question, edns, rcode }) => {
            let edns = edns.map(|e| EdnsOut::answering(&e, 1232));
            empty_reply(&header, question.as_deref(), rcode, edns.as_ref())
        }
    };
    hickory_proto::op::Message::from_vec(&reply).expect("our response must parse");
});
