//! Inputs that once broke a fuzz target, kept as regression tests. Each file
//! under `tests/fixtures/fuzz-regressions/<target>/` is replayed through the
//! same checks as `fuzz/fuzz_targets/<target>.rs`.

use std::path::Path;

use picket::protocol::{parse_query, Answer, EdnsOut};

/// The fixed client query of the `upstream_answer` target: `WwW.Example.TEST A`, EDNS, DO.
const QUERY: &[u8] = &[
    0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, //
    3, b'W', b'w', b'W', 7, b'E', b'x', b'a', b'm', b'p', b'l', b'e', 4, b'T', b'E', b'S', b'T',
    0, //
    0, 1, 0, 1, //
    0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0,
];

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz-regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn upstream_answers_that_once_broke_serving() {
    let req = parse_query(QUERY).unwrap();
    let cases = inputs("upstream_answer");
    assert!(!cases.is_empty());
    for (name, data) in cases {
        let Ok(answer) = Answer::from_upstream(&data, &req.name_wire, req.qtype, req.qclass) else {
            continue;
        };
        let edns = req.edns.map(|e| EdnsOut::answering(&e, 1232));
        for (age, limit) in [(0, 65535), (5, 512), (u32::MAX, 1232)] {
            let out = answer.write_reply(&req, age, 300, edns.as_ref(), limit);
            let msg = hickory_proto::op::Message::from_vec(&out)
                .unwrap_or_else(|e| panic!("{name}: served answer does not parse: {e}"));
            assert_eq!(msg.metadata.id, 0xbeef, "{name}");
        }
    }
}
