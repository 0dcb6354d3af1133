//! The built-in dashboard and its `/api/` (issue 21), over real HTTP to a
//! running Picket after a known sequence of queries: counts, top-N lists,
//! the bounded and filterable ring of recent queries, explain, privacy,
//! the admin token; the Grafana board against a real `/metrics`; and the
//! page in a real browser (headless Chromium, ignored without it).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use ::picket::config::{PolicySource, Settings};
use ::picket::observe::{ClientIpMode, LogTarget, QueryLogSettings};
use ::picket::query::{ClientHints, Transport};
use common::browser::{dump_dom, screenshot, text_of};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

const ZONE: &str = r#"
example.test.      3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
example.test.      3600 IN NS  ns1.example.test.
www.example.test.   300 IN A   192.0.2.1
mail.example.test.  300 IN A   192.0.2.2
"#;

/// One organization (loopback clients) blocking `ads.example.test`, a global
/// rule blocking `tracker.example.test`, and an audit rule on www.
const POLICY: &str = r#"{ "global": { "rules": [
    { "id": "no-trackers", "name": "Block trackers", "expression": "dns.fqdn == \"tracker.example.test\"", "action": "block" }
] },
"organizations": [ { "id": "lab", "networks": ["127.0.0.0/8"], "rules": [
    { "id": "watch-www", "name": "Watch www", "expression": "dns.fqdn == \"www.example.test\"", "action": "audit" },
    { "id": "no-ads", "name": "Block ads", "expression": "dns.fqdn == \"ads.example.test\"", "action": "block" }
] } ] }"#;

fn settings(upstream: SocketAddr) -> Settings {
    let mut settings = test_settings(&[upstream]);
    settings.metrics = Some("127.0.0.1:0".parse().unwrap());
    let dir = dir_with("dashboard", &[("lab.json", POLICY)]);
    settings.policies = PolicySource::Dir(dir);
    settings
}

/// 3 × www (a miss, then hits), 2 × ads (blocked by lab), 1 × tracker
/// (blocked by the global rule), 1 × mail over TCP: 7 queries, 3 blocked,
/// 2 misses, 2 hits.
async fn known_traffic(picket: &Picket) {
    for _ in 0..3 {
        let a = query_udp(picket.addr, "www.example.test", RecordType::A).await;
        assert_eq!(a_records(&a).len(), 1);
    }
    for _ in 0..2 {
        let blocked = query_udp(picket.addr, "ads.example.test", RecordType::A).await;
        assert_eq!(rcode(&blocked), ResponseCode::NXDomain);
    }
    let tracker = query_udp(picket.addr, "tracker.example.test", RecordType::AAAA).await;
    assert_eq!(rcode(&tracker), ResponseCode::NXDomain);
    let mail = query_tcp(picket.addr, "mail.example.test", RecordType::A).await;
    assert_eq!(rcode(&mail), ResponseCode::NoError);
}

/// The upstream, and Picket with the dashboard's settings `adjust`ed.
fn start(adjust: impl FnOnce(&mut Settings)) -> (Authority, Picket) {
    let upstream = Authority::start(ZONE);
    let mut settings = settings(upstream.addr());
    adjust(&mut settings);
    (upstream, start_picket_with(settings))
}

/// [`start`], then the known traffic.
async fn start_after_known_traffic(adjust: impl FnOnce(&mut Settings)) -> (Authority, Picket) {
    let (upstream, picket) = start(adjust);
    known_traffic(&picket).await;
    (upstream, picket)
}

fn admin(picket: &Picket) -> SocketAddr {
    picket.server.admin_addr().expect("admin listener on")
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let answer = http_get(addr, path).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    answer.json()
}

/// How many queries `/api/recent?FILTER` lists (all of them when FILTER is empty).
async fn recent_count(addr: SocketAddr, filter: &str) -> usize {
    let path = match filter {
        "" => "/api/recent".to_string(),
        filter => format!("/api/recent?{filter}"),
    };
    let recent = get_json(addr, &path).await;
    let queries = recent["queries"].as_array();
    queries
        .unwrap_or_else(|| panic!("{filter}: {recent}"))
        .len()
}

/// GETs a request the API refuses: asserts the 400, returns its `error` text.
async fn api_error(addr: SocketAddr, path: &str) -> String {
    let answer = http_get(addr, path).await;
    assert_eq!(answer.status, 400, "{path}: {}", answer.body);
    let error = answer.json()["error"].as_str().map(str::to_owned);
    error.unwrap_or_else(|| panic!("{path}: no error text: {}", answer.body))
}

fn keys(list: &Value) -> Vec<String> {
    list["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("entries: {list}"))
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_the_known_traffic() {
    let (upstream, picket) = start_after_known_traffic(|_| {}).await;
    let stats = get_json(admin(&picket), "/api/stats").await;
    let totals = &stats["totals"];
    assert_eq!(totals["queries"], 7, "{stats:#}");
    assert_eq!(totals["blocked"], 3);
    assert_eq!(totals["cache_hits"], 2);
    assert_eq!(totals["cache_misses"], 2);
    assert_eq!(totals["by_action"]["block"], 3);
    assert_eq!(stats["cache_hit_ratio"], 0.5);
    assert_eq!(stats["blocked_share"], 0.4286);
    assert_eq!(stats["last_minute"]["blocked_share"], 0.4286);
    let series = &stats["series"];
    assert_eq!(series["slot_seconds"], 10);
    let qps: Vec<f64> = series["qps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(!qps.is_empty() && qps.len() <= 360, "{qps:?}");
    assert!(qps.iter().sum::<f64>() > 0.0, "{qps:?}");

    let up = &stats["upstreams"]["servers"][0];
    assert_eq!(up["upstream"], upstream.addr().to_string());
    assert_eq!(up["exchanges"], 2, "two misses, one exchange each");
    assert_eq!(up["failures"], 0);
    assert!(up["p50_ms"].as_f64().unwrap() > 0.0, "{up}");
    assert!(up["p99_ms"].as_f64().unwrap() >= up["p50_ms"].as_f64().unwrap());

    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["ready"], true);
    assert!(stats["uptime_seconds"].is_u64());
    let version = picket.server.shared().policy.load().version();
    assert_eq!(stats["policy"]["version"], version);
    assert_eq!(stats["policy"]["organizations"], 1);
    assert_eq!(stats["policy"]["last_reload"], Value::Null);
    assert_eq!(stats["client_ip"], "truncate");

    // A reload shows in the reload state.
    picket.server.reload_policy();
    let stats = get_json(admin(&picket), "/api/stats").await;
    assert_eq!(stats["policy"]["reloads_ok"], 1);
    assert_eq!(stats["policy"]["last_reload"]["ok"], true);
    assert!(stats["policy"]["version"].as_u64().unwrap() > version);

    let error = api_error(admin(&picket), "/api/stats?verbose=1").await;
    assert!(error.contains("unknown parameter \"verbose\""), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn top_lists_name_the_blocked_names_rules_clients_and_organizations() {
    let (_upstream, picket) = start_after_known_traffic(|_| {}).await;
    let top = get_json(admin(&picket), "/api/top?n=10").await;
    let lists = &top["lists"];
    assert_eq!(
        keys(&lists["blocked"]),
        ["ads.example.test", "tracker.example.test"]
    );
    assert_eq!(lists["blocked"]["entries"][0]["count"], 2);
    assert_eq!(
        lists["blocked"]["entries"][0]["error"], 0,
        "exact below capacity"
    );
    assert_eq!(lists["blocked"]["total"], 3);
    assert_eq!(keys(&lists["names"])[0], "www.example.test");
    let rules = keys(&lists["rules"]);
    assert_eq!(
        rules[0], "lab/watch-www",
        "audit hits count as hits: {rules:?}"
    );
    assert!(
        rules.contains(&"lab/no-ads".to_string()) && rules.contains(&"no-trackers".to_string())
    );
    assert_eq!(
        keys(&lists["clients"]),
        ["127.0.0.0"],
        "truncated to /24 by default"
    );
    assert_eq!(lists["clients"]["entries"][0]["count"], 7);
    assert_eq!(keys(&lists["orgs"]), ["lab"]);
    assert_eq!(top["window_seconds"], 3600);

    let one = get_json(admin(&picket), "/api/top?n=1&list=blocked").await;
    assert_eq!(keys(&one["lists"]["blocked"]), ["ads.example.test"]);
    assert!(one["lists"].get("names").is_none());
    for (query, says) in [
        ("n=0", "from 1 to 256"),
        ("n=257", "from 1 to 256"),
        ("n=ten", "from 1 to 256"),
        ("list=hosts", "not a list"),
    ] {
        let error = api_error(admin(&picket), &format!("/api/top?{query}")).await;
        assert!(
            error.contains(says) && error.starts_with("/api/top"),
            "{query}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recent_queries_are_bounded_and_filterable() {
    let (upstream, picket) = start(|s| s.limits.dashboard_recent_queries = 5);
    let addr = admin(&picket);
    known_traffic(&picket).await;

    let all = get_json(addr, "/api/recent").await;
    assert_eq!(
        (all["capacity"].as_u64(), all["held"].as_u64()),
        (Some(5), Some(5))
    );
    let names: Vec<&str> = all["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["qname"].as_str().unwrap())
        .collect();
    // The 5 newest of 7, newest first.
    assert_eq!(
        names,
        [
            "mail.example.test",
            "tracker.example.test",
            "ads.example.test",
            "ads.example.test",
            "www.example.test"
        ]
    );
    let newest = &all["queries"][0];
    assert_fields(
        "the newest",
        newest,
        &[
            ("transport", "tcp"),
            ("client", "127.0.0.0"),
            ("org", "lab"),
            ("qtype", "A"),
            ("rcode", "NOERROR"),
            ("cache", "miss"),
            ("upstream", &upstream.addr().to_string()),
        ],
    );

    let blocked = get_json(addr, "/api/recent?action=block").await;
    let blocked = blocked["queries"].as_array().unwrap();
    assert_eq!(blocked.len(), 3);
    assert!(blocked.iter().all(|q| q["action"] == "block"));
    assert_eq!(blocked[0]["rule"], "no-trackers");
    assert_eq!(blocked[0]["qtype"], "AAAA");
    assert_eq!(blocked[1]["rule"], "lab/no-ads");
    assert_eq!(blocked[1]["rcode"], "NXDOMAIN");

    // Each filter and how many of the 5 it selects.
    for (filter, selected) in [
        ("rule=no-ads", 2),
        ("name=ADS.example", 2), // case-insensitive
        ("client=127.0.0.&limit=2", 2),
        ("client=10.", 0),
        ("action=block&name=tracker", 1),
    ] {
        assert_eq!(recent_count(addr, filter).await, selected, "{filter}");
    }

    // Three more push the oldest out: still 5.
    for _ in 0..3 {
        query_udp(picket.addr, "www.example.test", RecordType::A).await;
    }
    assert_eq!(recent_count(addr, "").await, 5);
    assert_eq!(
        recent_count(addr, "action=block").await,
        1,
        "two ads evicted"
    );

    for (query, says) in [
        ("limit=6", "from 1 to 5"),
        ("limit=0", "from 1 to 5"),
        ("action=blocked", "not an action"),
        ("client=%3Cscript%3E", "not (the start of) an address"),
        ("name=%zz", "two hex digits"),
        ("limit=1&limit=2", "twice"),
    ] {
        let error = api_error(addr, &format!("/api/recent?{query}")).await;
        assert!(error.contains(says), "{query}: {error}");
    }
    let long = format!("/api/recent?name={}", "a".repeat(2100));
    assert_eq!(http_get(addr, &long).await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_returns_the_trace_of_the_policy_in_force() {
    let (_upstream, picket) = start(|_| {});
    let addr = admin(&picket);
    let answer = get_json(
        addr,
        "/api/explain?name=ads.example.test&type=A&client=127.0.0.1",
    )
    .await;
    let trace = answer["trace"].as_str().unwrap();
    let policy = picket.server.shared().policy.load();
    let hints = ClientHints::plain("127.0.0.1".parse().unwrap(), Transport::Udp);
    let expected = ::picket::policy::explain::explain(&policy, "ads.example.test", 1, &hints, None);
    assert_eq!(trace, expected, "the same trace `picket explain` prints");
    assert!(trace.contains("organization: lab"), "{trace}");
    assert!(trace.contains("decision: rule lab/no-ads"), "{trace}");
    assert_eq!(answer["query"]["client"], "127.0.0.1");

    // Another client and organization: the global rule only.
    let other = get_json(
        addr,
        "/api/explain?name=ads.example.test&client=192.0.2.7&transport=doh",
    )
    .await;
    let trace = other["trace"].as_str().unwrap();
    assert!(trace.contains("decision: no rule matched"), "{trace}");
    assert!(trace.contains("over doh"), "{trace}");

    let error = api_error(addr, "/api/explain?name=ads.example.test").await;
    assert!(error.contains("client= is missing"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hidden_clients_never_reach_the_api() {
    let (upstream, picket) = start_after_known_traffic(|s| s.client_ip = ClientIpMode::None).await;
    let addr = admin(&picket);
    let top = http_get(addr, "/api/top").await;
    let recent = http_get(addr, "/api/recent").await;
    assert_eq!(
        top.json()["lists"]["clients"]["entries"],
        Value::Array(vec![])
    );
    assert_eq!(top.json()["clients_hidden"], true);
    assert_eq!(recent.json()["queries"][0]["client"], Value::Null);
    for body in [&top.body, &recent.body] {
        let body = body.replace(&upstream.addr().to_string(), "upstream");
        assert!(!body.contains("127.0.0."), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_names_are_counted_but_never_listed() {
    let dir = temp_dir("dashboard-exclude");
    let list = dir.join("exclude.txt");
    std::fs::write(&list, "ads.example.test\n").unwrap();
    let mut log = QueryLogSettings::new(LogTarget::File(dir.join("q.log")));
    log.exclude = Some(list);
    let (_upstream, picket) = start_after_known_traffic(|s| s.query_log = Some(log)).await;
    let addr = admin(&picket);
    assert_eq!(get_json(addr, "/api/stats").await["totals"]["blocked"], 3);
    let top = get_json(addr, "/api/top").await;
    assert_eq!(keys(&top["lists"]["blocked"]), ["tracker.example.test"]);
    let recent = http_get(addr, "/api/recent").await;
    assert!(!recent.body.contains("ads.example.test"), "{}", recent.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_guards_everything_but_metrics_and_health() {
    let (_upstream, picket) =
        start_after_known_traffic(|s| s.admin_token = Some("k4m9x2q7w8e3r5t6y1u0i9o8p".into()))
            .await;
    let addr = admin(&picket);
    let good = "Authorization: Bearer k4m9x2q7w8e3r5t6y1u0i9o8p";
    for path in [
        "/api/stats",
        "/api/top",
        "/api/recent",
        "/api/explain?name=a.test&client=::1",
        "/api/",
        "/nowhere",
    ] {
        let answer = http_get(addr, path).await;
        assert_eq!(answer.status, 401, "{path}");
        assert!(answer
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer"));
        assert!(
            answer.body.contains("Authorization: Bearer TOKEN"),
            "{path}: {}",
            answer.body
        );
        let wrong = http_get_with(
            addr,
            path,
            &["Authorization: Bearer k4m9x2q7w8e3r5t6y1u0i9o8"],
        )
        .await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
    }
    for path in ["/api/stats", "/api/top", "/api/recent"] {
        assert_eq!(
            http_get_with(addr, path, &[good]).await.status,
            200,
            "{path}"
        );
    }
    assert_eq!(http_get_with(addr, "/nowhere", &[good]).await.status, 404);
    // Never in the query string of the API, only of the page.
    let in_query = http_get(addr, "/api/stats?token=k4m9x2q7w8e3r5t6y1u0i9o8p").await;
    assert_eq!(in_query.status, 401);
    // The page: a form without the token, the dashboard with it.
    let login = http_get(addr, "/").await;
    assert_eq!(login.status, 401);
    assert!(
        login
            .body
            .contains("<label for=\"token\">Admin token</label>"),
        "{}",
        login.body
    );
    let page = http_get(addr, "/?token=k4m9x2q7w8e3r5t6y1u0i9o8p").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"top-blocked\""));
    // Open: metrics, liveness, readiness.
    let metrics = http_get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("picket_queries_total{"));
    assert_eq!(http_get(addr, "/healthz").await.status, 200);
    assert_eq!(http_get(addr, "/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_one_self_contained_document() {
    let (upstream, picket) = start(|_| {});
    let page = http_get(admin(&picket), "/").await;
    assert_eq!(page.status, 200);
    let csp = page.html_csp();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    for tag in ["<script src", "<link", "<img", "@import", "url("] {
        assert!(
            !page.body.contains(tag),
            "{tag}: the page loads nothing else"
        );
    }
    for label in [
        "<label>Name <input",
        "<label>Client <input",
        "<label>Action <select",
    ] {
        assert!(page.body.contains(label), "{label}");
    }
    // Without the dashboard (only to measure its cost) there is no page.
    let mut off = settings(upstream.addr());
    off.dashboard = false;
    let off = start_picket_with(off);
    assert_eq!(http_get(admin(&off), "/").await.status, 404);
    assert_eq!(http_get(admin(&off), "/api/stats").await.status, 404);
}

/// Metric names a PromQL expression uses: identifiers starting `picket_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("picket_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        // Part of a longer identifier (a label value is quoted, so is skipped too).
        if !matches!(before, Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'"') {
            names.insert(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Every `expr` of the dashboard JSON, wherever it is nested.
fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, upstream) (rate(picket_upstream_latency_seconds_bucket{instance=~"$instance"}[5m]))) / picket_x:y{rule="picket_not_a_metric"}"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["picket_upstream_latency_seconds_bucket", "picket_x:y"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_grafana_board_uses_exists() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/picket.json");
    let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    // Importable for a fleet: a data-source variable and instance/job selectors.
    let vars: Vec<&str> = board["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for var in ["datasource", "job", "instance"] {
        assert!(vars.contains(&var), "no ${var} variable: {vars:?}");
    }
    let mut all = Vec::new();
    exprs(&board, &mut all);
    assert!(all.len() >= 10, "panels with queries: {}", all.len());

    // A Picket with every source of series on: a policy with rules, the
    // query log, TCP, an upstream exchange.
    let dir = temp_dir("grafana");
    let log = QueryLogSettings::new(LogTarget::File(dir.join("q.log")));
    let (_upstream, picket) = start_after_known_traffic(|s| s.query_log = Some(log)).await;
    let exposition = http_get(admin(&picket), "/metrics").await.body;
    let mut samples = BTreeSet::new();
    let mut families = std::collections::BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                families.insert(name.to_string(), kind.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_string());
        }
    }
    for expr in &all {
        assert!(
            expr.contains("$instance"),
            "a query without the instance selector: {expr}"
        );
    }
    // The variables' own queries name metrics too.
    for var in board["templating"]["list"].as_array().unwrap() {
        if let Some(definition) = var["definition"].as_str() {
            all.push(definition.to_string());
        }
    }
    for expr in &all {
        for name in metric_names(expr) {
            // `_bucket`, `_sum` and `_count` belong to a histogram only: the
            // family they come from must be one.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| {
                    !families.contains_key(name.as_str()) && families.contains_key(*base)
                });
            if let Some(base) = family {
                assert_eq!(families[base], "histogram", "{name} in {expr}");
            }
            assert!(
                samples.contains(&name),
                "{name} (in `{expr}`) is not in /metrics:\n{exposition}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium; run by .ci/run"]
async fn the_page_shows_the_figures_and_blocked_names_in_a_browser() {
    let (upstream, picket) = start_after_known_traffic(|_| {}).await;
    let url = format!("http://{}/", admin(&picket));
    let dom = dump_dom(&[], &url).await;
    assert_eq!(text_of(&dom, "total-queries"), "7", "{dom}");
    assert_eq!(text_of(&dom, "total-blocked"), "3");
    assert!(
        text_of(&dom, "hit-ratio").starts_with("50"),
        "{}",
        text_of(&dom, "hit-ratio")
    );
    let top = &dom[dom.find("id=\"top-blocked\"").unwrap()..];
    let top = &top[..top.find("</ol>").unwrap()];
    assert!(
        top.contains("ads.example.test") && top.contains("tracker.example.test"),
        "{top}"
    );
    let recent = &dom[dom.find("id=\"recent\"").unwrap()..];
    assert!(recent.contains("mail.example.test"), "the recent queries");
    assert!(dom.contains("ready"), "the readiness");
    assert!(
        dom.contains(&upstream.addr().to_string()),
        "the upstream's latency chart"
    );
    assert!(dom.contains("<polyline"), "charts drawn");

    screenshot("dashboard.png", (1280, 900), &[], &url).await;
    // And at a phone's width.
    screenshot("dashboard-phone.png", (390, 1600), &[], &url).await;
}
