//! Policy engine benchmark (plain std::time, no harness): `cargo bench --bench policy`.
//!
//! 1. Generate a 1,000,000-domain list file, load it (time and RSS delta).
//!    Times are thread CPU time (the build box is shared), plus wall time for the load.
//! 2. Evaluate queries against a typical organization (10 rules + lists) and against 1,000 and
//!    10,000 rules, each with the 1M list, for list hits and misses.

mod common;

use std::hint::black_box;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cpu_now;
use picket::policy::{evaluate, evaluate_response, AnswerFacts, Identity, PolicySet};
use picket::query::{Facts, Transport};

const DOMAINS: usize = 1_000_000;

const WORDS: [&str; 16] = [
    "ads",
    "track",
    "metrics",
    "pixel",
    "beacon",
    "stats",
    "click",
    "banner",
    "promo",
    "cdn",
    "telemetry",
    "analytics",
    "tag",
    "sync",
    "adserv",
    "counter",
];
const MIDS: [&str; 8] = [
    "net", "media", "cloud", "edge", "static", "srv", "img", "go",
];
const TLDS: [&str; 8] = ["com", "net", "org", "io", "example", "test", "info", "biz"];

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// The i-th generated domain (deterministic).
fn domain(i: usize) -> String {
    let h = mix(i as u64 + 1);
    format!(
        "{}{}.{}.{}",
        WORDS[(h & 15) as usize],
        i,
        MIDS[((h >> 8) & 7) as usize],
        TLDS[((h >> 16) & 7) as usize]
    )
}

fn rss_kb(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Thread-CPU nanoseconds per call of `f` over `names`, repeated until `min` CPU time is spent.
fn per_query(names: &[String], min: Duration, mut f: impl FnMut(&str)) -> f64 {
    // Warm up (caches, branch predictors).
    for n in names.iter().take(100) {
        f(n);
    }
    let mut calls = 0u64;
    let start = cpu_now();
    loop {
        for n in names {
            f(n);
        }
        calls += names.len() as u64;
        if cpu_now() - start >= min {
            break;
        }
    }
    (cpu_now() - start).as_nanos() as f64 / calls as f64
}

fn facts(name: &str, qtype: u16) -> Facts<'_> {
    Facts {
        qname: name,
        qtype,
        qclass: 1,
        client_ip: IpAddr::from([10, 0, 0, 5]),
        transport: Transport::Udp,
        dnssec_ok: false,
    }
}

/// Rules for the scaling runs: `indexed_pct`% name rules (exact names, sets), the rest
/// Wirefilter rules that cannot be indexed; none of them matches the benchmark queries, and a
/// final `list.big` block rule decides for list hits.
fn scale_rules(n: usize, indexed_pct: usize) -> String {
    let mut rules = Vec::with_capacity(n + 1);
    for i in 0..n {
        let indexed = (i * 100 / n.max(1)) < indexed_pct;
        let expr = if indexed {
            if i % 2 == 0 {
                format!(r#"dns.fqdn == \"site{i}.example\""#)
            } else {
                format!(r#"dns.fqdn in {{\"a{i}.example\" \"b{i}.example\" \"c{i}.example\"}}"#)
            }
        } else {
            match i % 3 {
                0 => format!(r#"dns.fqdn contains \"k{i}z\" and dns.qtype == 1"#),
                1 => format!(
                    r#"dns.src_ip in {{192.0.{}.0/24}} and dns.qtype == {}"#,
                    i % 256,
                    i % 100 + 1
                ),
                _ => format!(r#"dns.fqdn == \"w{i}.example\" and dns.transport == \"tcp\""#),
            }
        };
        rules.push(format!(
            r#"{{"id": "r{i}", "expression": "{expr}", "action": "block"}}"#
        ));
    }
    rules.push(r#"{"id": "big", "expression": "list.big", "action": "block"}"#.to_owned());
    rules.join(",\n")
}

const TYPICAL_RULES: &str = r#"
  {"id": "allow-links", "expression": "dns.fqdn == \"links.ads.example\"", "action": "allow"},
  {"id": "block-ads", "expression": "list.ads or list.trackers", "action": "block", "mode": "null"},
  {"id": "safesearch", "expression": "dns.fqdn in {\"www.google.com\" \"google.com\"}", "action": "override", "cname": "forcesafesearch.google.com"},
  {"id": "youtube", "expression": "dns.fqdn in {\"www.youtube.com\" \"m.youtube.com\"}", "action": "override", "cname": "restrictmoderate.youtube.com"},
  {"id": "corp", "expression": "list.corp", "action": "resolve", "upstream": "corp"},
  {"id": "audit-txt", "expression": "dns.qtype.name == \"TXT\" and not list.corp", "action": "audit"},
  {"id": "refuse-any", "expression": "dns.qtype == 255", "action": "refuse"},
  {"id": "tunnel", "expression": "dns.fqdn matches \"^[a-z0-9]{40,}[.]\"", "action": "block"},
  {"id": "guest-tcp", "expression": "dns.src_ip in {10.99.0.0/16} and dns.transport == \"tcp\"", "action": "truncate"},
  {"id": "big", "expression": "list.big", "action": "block"}
"#;

fn org_file(rules: &str) -> String {
    format!(
        r#"{{
  "upstreams": {{"corp": ["127.0.0.1:5300"]}},
  "global": {{
    "lists": {{"malware": {{"domains": ["malware.example", "phish.test"]}}}},
    "rules": [
      {{"id": "malware", "expression": "list.malware", "action": "block"}},
      {{"id": "rebind", "expression": "dns.response.ip in {{10.0.0.0/8 192.168.0.0/16 fc00::/7}} and not list.malware", "action": "block"}}
    ]
  }},
  "organizations": [{{
    "id": "acme", "networks": ["10.0.0.0/8"],
    "lists": {{
      "big": {{"file": "big.txt"}},
      "ads": {{"domains": ["ads.example", "adserver.test"]}},
      "trackers": {{"domains": ["tracker.example"]}},
      "corp": {{"domains": ["corp.internal"]}}
    }},
    "rules": [{rules}]
  }}]
}}"#
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let min = Duration::from_millis(if quick { 100 } else { 400 });
    let base: PathBuf =
        std::env::temp_dir().join(format!("picket-policy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();

    // 1. The list file.
    let t = Instant::now();
    let list_path = base.join("big.txt");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&list_path).unwrap());
        writeln!(w, "# generated benchmark list").unwrap();
        for i in 0..DOMAINS {
            writeln!(w, "{}", domain(i)).unwrap();
        }
    }
    let size = std::fs::metadata(&list_path).unwrap().len();
    println!(
        "generated {DOMAINS} domains ({:.1} MB) in {:.2} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // 2. Load: time and memory.
    let load_dir = base.join("load");
    std::fs::create_dir_all(&load_dir).unwrap();
    std::fs::copy(&list_path, load_dir.join("big.txt")).unwrap();
    write(
        &load_dir,
        "p.json",
        r#"{"global": {"lists": {"big": {"file": "big.txt"}},
            "rules": [{"id": "big", "expression": "list.big", "action": "block"}]}}"#,
    );
    let rss0 = rss_kb("VmRSS:");
    let t = Instant::now();
    let c = cpu_now();
    let p = PolicySet::load_dir(&load_dir).unwrap();
    let load_cpu = cpu_now() - c;
    let load = t.elapsed();
    let rss1 = rss_kb("VmRSS:");
    let s = p.stats();
    println!(
        "load 1M-domain list: {:.0} ms CPU ({:.0} ms wall), RSS +{:.1} MB (table {:.1} MB, peak RSS {:.1} MB), {} entries, {} invalid lines",
        load_cpu.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3,
        (rss1.saturating_sub(rss0)) as f64 / 1024.0,
        s.list_bytes as f64 / 1e6,
        rss_kb("VmHWM:") as f64 / 1024.0,
        s.distinct_domains,
        s.invalid_lines
    );
    let hits: Vec<String> = (0..2000)
        .map(|i| format!("www.{}", domain(i * 487 + 13)))
        .collect();
    let misses: Vec<String> = (0..2000)
        .map(|i| format!("host{i}.miss{}.example.org", i * 7))
        .collect();
    let ns = per_query(&hits, min, |n| {
        black_box(evaluate(&p, &Identity::NoOrg, &facts(n, 1)));
    });
    let nm = per_query(&misses, min, |n| {
        black_box(evaluate(&p, &Identity::NoOrg, &facts(n, 1)));
    });
    println!("1M list, one rule: {ns:.0} ns/query (hit), {nm:.0} ns/query (miss)");
    drop(p);

    // 3. A typical organization, then scaling.
    let run = |label: &str, rules: &str| {
        let dir = base.join(label.replace([' ', ','], "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.txt");
        if std::fs::hard_link(&list_path, &big).is_err() {
            std::fs::copy(&list_path, &big).unwrap();
        }
        write(&dir, "p.json", &org_file(rules));
        let t = cpu_now();
        let p = PolicySet::load_dir(&dir).unwrap();
        let load = cpu_now() - t;
        let id = p.org_by_id("acme").unwrap();
        let t = cpu_now();
        black_box(evaluate(&p, &id, &facts("first.example", 1)));
        let first = cpu_now() - t;
        let st = p.stats();
        let h = per_query(&hits, min, |n| {
            black_box(evaluate(&p, &id, &facts(n, 1)));
        });
        let m = per_query(&misses, min, |n| {
            black_box(evaluate(&p, &id, &facts(n, 1)));
        });
        println!(
            "{label}: {} rules ({} indexed, {} guarded): evaluate {h:.0} ns/query (list hit), {m:.0} ns/query (miss); load {:.0} ms, first query {:.1} ms",
            st.rules_enabled,
            st.rules_indexed,
            st.rules_guarded,
            load.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3
        );
        (p, id)
    };

    let (p, id) = run("typical org", TYPICAL_RULES);
    let addrs: Vec<IpAddr> = vec![IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2])];
    let cnames = ["edge.cdn.example"];
    let r = per_query(&misses, min, |n| {
        black_box(evaluate_response(
            &p,
            &id,
            &facts(n, 1),
            &AnswerFacts {
                addresses: &addrs,
                cnames: &cnames,
            },
        ));
    });
    println!("typical org: evaluate_response {r:.0} ns/answer (2 addresses, 1 CNAME; rebinding rule + cloaking)");
    drop(p);

    for n in [1_000usize, 10_000] {
        run(&format!("{n} rules, 90% indexed"), &scale_rules(n, 90));
        run(&format!("{n} rules, 0% indexed"), &scale_rules(n, 0));
    }

    let _ = std::fs::remove_dir_all(&base);
}
