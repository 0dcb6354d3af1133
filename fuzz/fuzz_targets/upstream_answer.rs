//! A hostile upstream answer → cache entry → served answer. Whatever the
//! upstream sends, what we serve must parse and must answer the client's
//! question with the client's ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket::protocol::{parse_query, Answer, EdnsOut};

/// A fixed client query: `WwW.Example.TEST A`, EDNS 1232, DO.
const QUERY: &[u8] = &[
    0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, //
    3, b'W', b'w', b'W', 7, b'E', b'x', b'a', b'm', b'p', b'l', b'e', 4, b'T', b'E', b'S', b'T', 0, //
    0, 1, 0, 1, //
    0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0,
];

fuzz_target!(|data: &[u8]| {
    let req = parse_query(QUERY).expect("fixed query parses");
    let Ok(answer) = Answer::from_upstream(data, &req.name_wire, req.qtype, req.qclass) else {
        return;
    };
    let edns = req.edns.map(|e| EdnsOut::answering(&e, 1232));
    for (age, limit) in [(0, 65535), (5, 512), (u32::MAX, 1232)] {
        let out = answer.write_reply(&req, age, 300, edns.as_ref(), limit);
        let msg = hickory_proto::op::Message::from_vec(&out).expect("served answer must parse");
        assert_eq!(msg.metadata.id, 0xbeef);
        assert_eq!(msg.queries.len(), 1);
        assert!(out.len() <= limit.max(512));
    }
    let _ = answer.answer_records();
});
