//! Inputs that once broke a fuzz target, kept as regression tests. Each file
//! under `tests/fixtures/fuzz-regressions/<target>/` is replayed through the
//! same checks as `fuzz/fuzz_targets/<target>.rs`, and its outcome is compared
//! with the one written for it in a table below: a fixture that starts being
//! accepted, or rejected for another reason, fails the test, and so does a
//! fixture without an entry (a new file needs its expected outcome).

use std::path::Path;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use picket::protocol::{parse_query, Answer, AnswerError, AnswerKind, EdnsOut, Request};

/// The fixed client query of the `upstream_answer` target: `WwW.Example.TEST A`, EDNS, DO.
const QUERY: &[u8] = &[
    0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, //
    3, b'W', b'w', b'W', 7, b'E', b'x', b'a', b'm', b'p', b'l', b'e', 4, b'T', b'E', b'S', b'T',
    0, //
    0, 1, 0, 1, //
    0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0,
];

/// What must become of an upstream answer.
#[derive(Debug, PartialEq)]
enum Expected {
    /// Refused before caching, for this reason.
    Rejected(AnswerError),
    /// Accepted and served: the kind, the response code the client gets, and the types of the
    /// answer and authority records served (in order).
    Served {
        kind: AnswerKind,
        rcode: ResponseCode,
        answers: Vec<RecordType>,
        authority: Vec<RecordType>,
    },
}

/// Every fixture of `upstream_answer`, with its outcome and why.
fn upstream_answer_expectations() -> Vec<(&'static str, Expected)> {
    vec![
        (
            // No answer, and two authority records of unassigned types, the first owned by a
            // name that points into the header (offset 11): accepted as NODATA, and served
            // with its names re-encoded so that no pointer reaches into the header we patch.
            "pointer-into-header",
            Expected::Served {
                kind: AnswerKind::NoData,
                rcode: ResponseCode::NoError,
                answers: vec![],
                authority: vec![RecordType::Unknown(63237), RecordType::Unknown(1377)],
            },
        ),
        (
            // A CNAME whose target is "\0x" and a pointer to a prior name (the answer's owner,
            // labels of 51 "3"s) whose labels run on into the target's own bytes and end at
            // its zero: every pointer goes backwards, but the labels overlap another name,
            // which hickory refuses (`LabelOverlapsWithOther`). It was stored as it came and
            // served unreadable; now the name reader refuses it as hickory does, so it goes to
            // the full parse, which refuses it.
            "rdata-labels-overlapping-their-own-name",
            Expected::Rejected(AnswerError::Unparsable(String::new())),
        ),
        (
            // An NXDOMAIN with an SOA whose OPT record carries an extended RCODE and is
            // followed by stray bytes: the OPT is dropped, and an extended RCODE from upstream
            // is served as SERVFAIL (with the SOA).
            "trailing-garbage-after-opt",
            Expected::Served {
                kind: AnswerKind::Failure,
                rcode: ResponseCode::ServFail,
                answers: vec![],
                authority: vec![RecordType::SOA],
            },
        ),
        (
            // Opcode UPDATE (5): hickory would read its sections by UPDATE's rules.
            "update-opcode",
            Expected::Rejected(AnswerError::NotAResponse),
        ),
    ]
}

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
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Replays one upstream answer as the fuzz target does: every served form must parse and
/// answer the client's question with its ID. Returns what happened.
fn replay_upstream_answer(name: &str, req: &Request, data: &[u8]) -> Expected {
    let answer = match Answer::from_upstream(data, &req.name_wire, req.qtype, req.qclass) {
        Ok(answer) => answer,
        // The parser's message is hickory's text; the reason is the variant.
        Err(AnswerError::Unparsable(_)) => {
            return Expected::Rejected(AnswerError::Unparsable(String::new()))
        }
        Err(e) => return Expected::Rejected(e),
    };
    let edns = req.edns.map(|e| EdnsOut::answering(&e, 1232));
    let mut served = None;
    for (age, limit) in [(0, 65535), (5, 512), (u32::MAX, 1232)] {
        let out = answer.write_reply(req, age, 300, edns.as_ref(), limit);
        let msg = Message::from_vec(&out)
            .unwrap_or_else(|e| panic!("{name}: served answer does not parse: {e}"));
        assert_eq!(msg.metadata.id, 0xbeef, "{name}");
        assert_eq!(msg.queries.len(), 1, "{name}");
        assert!(out.len() <= limit.max(512), "{name}");
        served.get_or_insert(msg);
    }
    let msg = served.expect("served at least once");
    Expected::Served {
        kind: answer.kind,
        rcode: msg.metadata.response_code,
        answers: msg.answers.iter().map(|r| r.record_type()).collect(),
        authority: msg.authorities.iter().map(|r| r.record_type()).collect(),
    }
}

#[test]
fn upstream_answers_that_once_broke_serving_have_their_written_outcome() {
    let req = parse_query(QUERY).unwrap();
    let expectations = upstream_answer_expectations();
    let cases = inputs("upstream_answer");
    let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
    let listed: Vec<&str> = expectations.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names, listed,
        "every fixture has exactly one expected outcome"
    );
    for ((name, data), (_, expected)) in cases.iter().zip(&expectations) {
        let got = replay_upstream_answer(name, &req, data);
        assert_eq!(&got, expected, "{name}");
    }
}
