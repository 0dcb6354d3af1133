//! Policy files: any text must load or fail with an error, never panic; a
//! policy that loads must evaluate any query without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket::policy::{evaluate, evaluate_response, AnswerFacts, PolicySet};
use picket::query::{ClientHints, Facts, Transport};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [("fuzz.json", text), ("lists/a.txt", "ads.example\n||b.example^\n")];
    let Ok(policy) = PolicySet::load_embedded(&files) else {
        return;
    };
    let hints = ClientHints::plain("10.0.0.1".parse().unwrap(), Transport::Udp);
    let identity = policy.identify(&hints);
    for qname in ["ads.example", "x.b.example", "", "a.b.c.d.e"] {
        let facts = Facts::question(qname, 1, &hints);
        let _ = evaluate(&policy, &identity, &facts);
        let answer = AnswerFacts {
            addresses: &["10.1.2.3".parse().unwrap()],
            cnames: &["cdn.ads.example"],
        };
        let _ = evaluate_response(&policy, &identity, &facts, &answer);
    }
});
