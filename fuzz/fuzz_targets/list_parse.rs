//! List files (plain, hosts, adblock): any bytes must load leniently, never
//! panic, and every loaded entry must match itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket::policy::{evaluate, PolicySet};
use picket::query::{ClientHints, Facts, Transport};

const POLICY: &str = r#"{ "global": { "lists": { "l": { "file": "lists/l.txt" } },
  "rules": [ { "id": "r", "expression": "list.l", "action": "block" } ] } }"#;

fuzz_target!(|data: &[u8]| {
    let list = String::from_utf8_lossy(data);
    let files = [("p.json", POLICY), ("lists/l.txt", list.as_ref())];
    let policy = PolicySet::load_embedded(&files).expect("a list never makes a policy fail");
    let hints = ClientHints::plain("10.0.0.1".parse().unwrap(), Transport::Udp);
    let identity = policy.identify(&hints);
    for line in list.lines().take(16) {
        let name = line.trim().trim_end_matches('.').to_ascii_lowercase();
        let _ = evaluate(&policy, &identity, &Facts::question(&name, 1, &hints));
    }
});
