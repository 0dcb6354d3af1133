//! A fleet node as an operator runs one (issue 19): `picket keygen`, `picket bundle sign`,
//! a control plane (an in-process HTTPS server under a test CA) publishing bundles, and
//! `picket serve --policy-url` answering real DNS queries before and after each publication.
//! Waits poll what the node answers or reports; nothing is asserted on timing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::https::HttpsServer;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const ZONE: &str = r#"
example.test.        3600 IN SOA ns1.example.test. hostmaster.example.test. 1 7200 900 1209600 60
good.example.test     300 IN A    192.0.2.1
bad.example.test      300 IN A    192.0.2.2
worse.example.test    300 IN A    192.0.2.3
ads.example.test      300 IN A    192.0.2.4
ok.bad.example.test   300 IN A    192.0.2.5
x.evil.example.test   300 IN A    192.0.2.6
"#;

/// Runs the binary; (exit code, stdout, stderr).
fn picket(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_picket"))
        .args(args)
        .output()
        .expect("picket runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `picket keygen` in `dir`: the key file and the public key (the last line of stdout).
fn keygen(dir: &Path) -> (PathBuf, String) {
    let key = dir.join(format!("key-{}", std::process::id()));
    let _ = std::fs::remove_file(&key);
    let (code, out, err) = picket(&["keygen", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let public = out.lines().last().expect("a public key line").to_owned();
    (key, public)
}

/// `picket bundle verify BUNDLE --policy-key KEY`; (exit code, stdout, stderr).
fn verify(bundle: &Path, key: &str) -> (i32, String, String) {
    let bundle = bundle.to_str().unwrap();
    picket(&["bundle", "verify", bundle, "--policy-key", key])
}

/// A policy directory blocking every name on its list file.
fn policy_dir(blocked: &[&str]) -> PathBuf {
    dir_with(
        "fleet-policy",
        &[
            (
                "p.json",
                r#"{ "global": {
                  "lists": { "bad": { "file": "lists/bad.txt" } },
                  "rules": [ { "id": "bad", "expression": "list.bad", "action": "block" } ] } }"#,
            ),
            ("lists/bad.txt", &(blocked.join("\n") + "\n")),
        ],
    )
}

/// `picket bundle sign` of a policy blocking `blocked`, with `version`: the bundle's bytes.
fn signed(key: &Path, version: u64, blocked: &[&str]) -> Vec<u8> {
    signed_dir(key, version, &policy_dir(blocked))
}

/// `picket bundle sign DIR`: the bundle's bytes.
fn signed_dir(key: &Path, version: u64, dir: &Path) -> Vec<u8> {
    let out = dir.join("out.bundle");
    let (code, stdout, err) = picket(&[
        "bundle",
        "sign",
        dir.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--version",
        &version.to_string(),
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    std::fs::read(out).unwrap()
}

/// A node of the fleet: `picket serve --policy-url ...` with metrics on.
struct Node {
    process: PicketProcess,
    admin: SocketAddr,
}

fn node(
    upstream: SocketAddr,
    url: &str,
    public: &str,
    ca: &Path,
    state: &Path,
    extra: &[&str],
) -> Node {
    let admin = free_addr();
    let process = PicketProcess::options()
        .upstream(upstream)
        .dnssec_off()
        .flag("--policy-url", url)
        .flag("--policy-key", public)
        .flag("--policy-interval", "1s")
        .flag("--state-dir", state)
        .flag("--ca-file", ca)
        .metrics(admin)
        .args(extra)
        .quiet()
        .spawn();
    Node { process, admin }
}

async fn answer(node: &Node, name: &str) -> ResponseCode {
    rcode(&query_udp(node.process.addr, name, RecordType::A).await)
}

/// Waits (bounded) until `name` gets `want` from `node`: `what` has happened.
async fn wait_for_answer(node: &Node, name: &str, want: ResponseCode, what: &str) {
    poll_until(what, || async { answer(node, name).await == want }).await;
}

#[test]
fn keygen_sign_verify_and_check_round_trip_and_tampering_is_refused() {
    let dir = temp_dir("fleet-cli");
    let (key, public) = keygen(&dir);
    assert_eq!(public.len(), 44, "32 bytes in base64: {public}");
    let (code, _, err) = picket(&["keygen", key.to_str().unwrap()]);
    assert_ne!(code, 0, "an existing key is never overwritten");
    assert!(err.contains("never overwritten"), "{err}");

    let bundle = dir.join("b.bundle");
    std::fs::write(&bundle, signed(&key, 5, &["bad.example.test"])).unwrap();
    let b = bundle.to_str().unwrap();
    let (code, out, err) = verify(&bundle, &public);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("good signature, version 5"), "{out}");
    assert!(
        out.contains("lists/bad.txt"),
        "the list travels with the policy: {out}"
    );

    // `check` takes the bundle where it takes a directory, with or without the key.
    let (code, out, err) = picket(&["check", b]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = picket(&["check", b, "--policy-key", &public]);
    assert_eq!(code, 0, "{out}{err}");

    // Another key: refused by verify and by check.
    let (_, other) = keygen(&temp_dir("fleet-cli-other"));
    let (code, out, _) = verify(&bundle, &other);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature does not verify"), "{out}");
    let (code, out, _) = picket(&["check", b, "--policy-key", &other]);
    assert_eq!(code, 1, "{out}");

    // One byte of the list changed: refused, by signature.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() - 70;
    bytes[at] ^= 0x20;
    let tampered = dir.join("t.bundle");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, out, _) = verify(&tampered, &public);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature does not verify"), "{out}");

    // Cut short: refused, and the message says what probably happened.
    let cut = dir.join("cut.bundle");
    std::fs::write(&cut, &std::fs::read(&bundle).unwrap()[..20]).unwrap();
    let (code, out, _) = verify(&cut, &public);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated download"), "{out}");

    // A policy that does not load is never signed.
    let broken = policy_file_dir(
        "fleet-broken",
        r#"{ "global": { "rules": [ { "id": "x", "expression": "nope ==", "action": "block" } ] } }"#,
    );
    let (code, _, err) = picket(&[
        "bundle",
        "sign",
        broken.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        dir.join("no.bundle").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("p.json") && err.contains("not signed"),
        "{err}"
    );
    assert!(!dir.join("no.bundle").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_follows_its_control_plane_and_refuses_what_it_must() {
    let upstream = Authority::start(ZONE);
    let control = HttpsServer::start();
    let work = temp_dir("fleet-serve");
    let (key, public) = keygen(&work);
    let state = work.join("state");
    let url = control.url("policy.bundle");
    let fetches = |result: &str| format!("picket_policy_bundle_fetch_total{{result=\"{result}\"}}");

    // Nothing published yet: the node answers, but is not ready.
    let n = node(
        upstream.addr(),
        &url,
        &public,
        &control.ca_file,
        &state,
        &[],
    );
    wait_until_answering(n.process.addr).await;
    poll_until("a failed first fetch is counted", || async {
        metric(n.admin, &fetches("fetch_failed")).await >= 1.0
    })
    .await;
    let ready = http_get(n.admin, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("no policy"), "{}", ready.body);
    assert_eq!(answer(&n, "bad.example.test").await, ResponseCode::NoError);

    // Version 1 published: bad.example.test becomes blocked, the node ready.
    control.publish("policy.bundle", signed(&key, 1, &["bad.example.test"]));
    wait_for_answer(
        &n,
        "bad.example.test",
        ResponseCode::NXDomain,
        "version 1 blocks bad.example.test",
    )
    .await;
    assert_eq!(answer(&n, "good.example.test").await, ResponseCode::NoError);
    let ready = http_get(n.admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready.body.contains("policy bundle version 1"),
        "{}",
        ready.body
    );
    assert_eq!(metric(n.admin, "picket_policy_bundle_version").await, 1.0);
    assert!(state.join("policy.bundle").exists(), "kept in --state-dir");
    // The server saw the ETag again and answered 304.
    poll_until("a conditional poll answered 304", || async {
        control
            .requests("policy.bundle")
            .iter()
            .any(|s| s.status == 304 && s.if_none_match.is_some())
    })
    .await;

    // A tampered version 2 (one byte of its list): refused and counted, version 1 serves on.
    let mut tampered = signed(&key, 2, &["bad.example.test", "worse.example.test"]);
    let at = tampered.len() - 70;
    tampered[at] ^= 0x20;
    control.publish("policy.bundle", tampered);
    poll_until("the tampered bundle is refused", || async {
        metric(n.admin, &fetches("bad_signature")).await >= 1.0
    })
    .await;
    assert_eq!(answer(&n, "bad.example.test").await, ResponseCode::NXDomain);
    assert_eq!(
        answer(&n, "worse.example.test").await,
        ResponseCode::NoError
    );

    // A truncated download of a good version 2: refused too.
    let good2 = signed(&key, 2, &["bad.example.test", "worse.example.test"]);
    control.publish("policy.bundle", good2[..good2.len() / 2].to_vec());
    poll_until("the truncated bundle is refused", || async {
        metric(n.admin, &fetches("bad_signature")).await
            + metric(n.admin, &fetches("malformed")).await
            >= 2.0
    })
    .await;
    assert_eq!(
        answer(&n, "worse.example.test").await,
        ResponseCode::NoError
    );

    // Version 3 whole and signed: applied within a few polls.
    control.publish(
        "policy.bundle",
        signed(&key, 3, &["bad.example.test", "worse.example.test"]),
    );
    wait_for_answer(
        &n,
        "worse.example.test",
        ResponseCode::NXDomain,
        "version 3 blocks worse.example.test",
    )
    .await;
    assert_eq!(metric(n.admin, "picket_policy_bundle_version").await, 3.0);

    // An older, validly signed bundle (version 2, blocking nothing new): rollback refused.
    control.publish("policy.bundle", signed(&key, 2, &["bad.example.test"]));
    poll_until("the rollback is refused", || async {
        metric(n.admin, &fetches("rollback")).await >= 1.0
    })
    .await;
    assert_eq!(
        answer(&n, "worse.example.test").await,
        ResponseCode::NXDomain
    );
    assert_eq!(metric(n.admin, "picket_policy_bundle_version").await, 3.0);
    assert!(metric(n.admin, &fetches("applied")).await >= 2.0);
    drop(n);

    // The control plane goes down and the node restarts: it serves version 3 from its state.
    let ca = control.ca_file.clone();
    drop(control);
    let down = format!("https://127.0.0.1:{}/policy.bundle", free_port());
    let restarted = node(upstream.addr(), &down, &public, &ca, &state, &[]);
    wait_until_answering(restarted.process.addr).await;
    assert_eq!(
        answer(&restarted, "worse.example.test").await,
        ResponseCode::NXDomain
    );
    // Ready once every worker serves: the state's policy is there from the start.
    poll_until("the restarted node is ready", || async {
        http_try_get(restarted.admin, "/readyz")
            .await
            .is_some_and(|a| a.status == 200)
    })
    .await;
    let ready = http_get(restarted.admin, "/readyz").await;
    assert!(ready.body.contains("version 3"), "{}", ready.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_rollback_applies_an_older_bundle() {
    let upstream = Authority::start(ZONE);
    let control = HttpsServer::start();
    let work = temp_dir("fleet-rollback");
    let (key, public) = keygen(&work);
    let url = control.url("b");
    control.publish(
        "b",
        signed(&key, 9, &["bad.example.test", "worse.example.test"]),
    );
    let n = node(
        upstream.addr(),
        &url,
        &public,
        &control.ca_file,
        &work.join("s"),
        &["--allow-rollback"],
    );
    wait_until_answering(n.process.addr).await;
    wait_for_answer(
        &n,
        "worse.example.test",
        ResponseCode::NXDomain,
        "version 9 applied",
    )
    .await;
    control.publish("b", signed(&key, 4, &["bad.example.test"]));
    wait_for_answer(
        &n,
        "worse.example.test",
        ResponseCode::NoError,
        "the older version 4 applied on purpose",
    )
    .await;
    assert_eq!(answer(&n, "bad.example.test").await, ResponseCode::NXDomain);
    assert_eq!(metric(n.admin, "picket_policy_bundle_version").await, 4.0);
}

const FEED: &str = "$TTL 60
$ORIGIN rpz.feed.
@ SOA localhost. root.localhost. 1 3600 600 86400 60
@ NS localhost.
bad.example.test CNAME .
*.evil.example.test CNAME *.
ok.bad.example.test CNAME rpz-passthru.
good.example.test A 192.0.2.250
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_lists_refresh_with_etags_and_rpz_feeds_block_and_exempt() {
    let upstream = Authority::start(ZONE);
    let feeds = HttpsServer::start();
    feeds.publish("ads.txt", "ads.example.test\n");
    feeds.publish("feed.rpz", FEED);
    let policy = format!(
        r#"{{ "global": {{
          "lists": {{
            "ads": {{ "url": "{ads}", "refresh": "1s" }},
            "threat": {{ "url": "{rpz}", "format": "rpz" }},
            "threat_ok": {{ "url": "{rpz}", "format": "rpz", "rpz": "passthru" }}
          }},
          "rules": [
            {{ "id": "threat-ok", "expression": "list.threat_ok", "action": "allow" }},
            {{ "id": "threat", "expression": "list.threat", "action": "block" }},
            {{ "id": "ads", "expression": "list.ads", "action": "block" }}
          ] }} }}"#,
        ads = feeds.url("ads.txt"),
        rpz = feeds.url("feed.rpz"),
    );
    let dir = policy_file_dir("fleet-lists", &policy);
    let state = temp_dir("fleet-lists-state");
    let admin = free_addr();
    let mut options = PicketProcess::options();
    options
        .upstream(upstream.addr())
        .dnssec_off()
        .flag("--policies", &dir)
        .flag("--state-dir", &state)
        .quiet();
    let process = options
        .clone()
        .flag("--ca-file", &feeds.ca_file)
        .metrics(admin)
        .spawn();
    let n = Node { process, admin };
    wait_until_answering(n.process.addr).await;

    // Downloaded off the query path, then in force.
    wait_for_answer(
        &n,
        "ads.example.test",
        ResponseCode::NXDomain,
        "the ads list is downloaded and blocks",
    )
    .await;
    wait_for_answer(
        &n,
        "bad.example.test",
        ResponseCode::NXDomain,
        "the RPZ feed blocks bad.example.test",
    )
    .await;
    assert_eq!(
        answer(&n, "x.evil.example.test").await,
        ResponseCode::NXDomain,
        "wildcard owner"
    );
    assert_eq!(
        answer(&n, "ok.bad.example.test").await,
        ResponseCode::NoError,
        "rpz-passthru"
    );
    assert_eq!(
        answer(&n, "good.example.test").await,
        ResponseCode::NoError,
        "local data not mapped"
    );

    // Refreshed with the ETag: the server answers 304 and the list stays.
    poll_until("a refresh is answered 304", || async {
        feeds.requests("ads.txt").iter().any(|s| {
            s.status == 304
                && s.if_none_match
                    .as_deref()
                    .is_some_and(|e| e.starts_with("\"v"))
        })
    })
    .await;
    assert!(metric(admin, "picket_list_fetch_total{result=\"not_modified\"}").await >= 1.0);
    assert_eq!(answer(&n, "ads.example.test").await, ResponseCode::NXDomain);

    // A new version of the list: swapped in, the old entry gone.
    feeds.publish("ads.txt", "worse.example.test\n");
    wait_for_answer(
        &n,
        "worse.example.test",
        ResponseCode::NXDomain,
        "the new ads list blocks worse.example.test",
    )
    .await;
    assert_eq!(answer(&n, "ads.example.test").await, ResponseCode::NoError);
    assert!(metric(admin, "picket_list_fetch_total{result=\"updated\"}").await >= 3.0);

    // The feed server goes away: the lists stay, and a restart loads them from --state-dir.
    drop(feeds);
    poll_until("a failed refresh is counted", || async {
        metric(admin, "picket_list_fetch_total{result=\"fetch_failed\"}").await >= 1.0
    })
    .await;
    assert_eq!(
        answer(&n, "worse.example.test").await,
        ResponseCode::NXDomain
    );
    drop(n);
    let restarted = options.spawn();
    wait_until_answering(restarted.addr).await;
    let a = |name: &'static str| {
        let addr = restarted.addr;
        async move { rcode(&query_udp(addr, name, RecordType::A).await) }
    };
    assert_eq!(a("worse.example.test").await, ResponseCode::NXDomain);
    assert_eq!(a("bad.example.test").await, ResponseCode::NXDomain);
}

#[test]
fn check_reports_what_an_rpz_list_cannot_map_with_line_numbers() {
    let dir = dir_with(
        "fleet-rpz-check",
        &[
            (
                "p.json",
                r#"{ "global": { "lists": { "t": { "file": "feed.rpz", "format": "rpz" } },
                  "rules": [ { "id": "t", "expression": "list.t", "action": "block" } ] } }"#,
            ),
            ("feed.rpz", FEED),
        ],
    );
    let (code, out, err) = picket(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let all = out + &err;
    assert!(all.contains("feed.rpz:8"), "the A record's line: {all}");
    assert!(all.contains("RPZ local data"), "{all}");
}

/// A bundle can be valid where it was signed and still not load on a node (here the node's own
/// `--blocklist` needs the list name the bundle uses): refused, counted, and the node stays
/// not ready until a bundle that loads arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_does_not_load_on_the_node_is_refused() {
    let upstream = Authority::start(ZONE);
    let control = HttpsServer::start();
    let work = temp_dir("fleet-load-failed");
    let (key, public) = keygen(&work);
    let blocklist = work.join("local.txt");
    std::fs::write(&blocklist, "worse.example.test\n").unwrap();
    let clash = policy_file_dir(
        "fleet-clash",
        r#"{ "global": { "lists": { "blocklist": { "domains": ["bad.example.test"] } },
                  "rules": [ { "id": "b", "expression": "list.blocklist", "action": "block" } ] } }"#,
    );
    control.publish("b", signed_dir(&key, 1, &clash));
    let n = node(
        upstream.addr(),
        &control.url("b"),
        &public,
        &control.ca_file,
        &work.join("s"),
        &["--blocklist", blocklist.to_str().unwrap()],
    );
    wait_until_answering(n.process.addr).await;
    poll_until("the bundle that does not load is refused", || async {
        metric(
            n.admin,
            "picket_policy_bundle_fetch_total{result=\"load_failed\"}",
        )
        .await
            >= 1.0
    })
    .await;
    let ready = http_get(n.admin, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(!work.join("s").join("policy.bundle").exists(), "never kept");
    assert_eq!(answer(&n, "bad.example.test").await, ResponseCode::NoError);

    control.publish("b", signed(&key, 2, &["bad.example.test"]));
    wait_for_answer(
        &n,
        "bad.example.test",
        ResponseCode::NXDomain,
        "the next good bundle applies",
    )
    .await;
    assert_eq!(
        answer(&n, "worse.example.test").await,
        ResponseCode::NXDomain,
        "the node's --blocklist applies with it"
    );
    poll_until("ready", || async {
        http_try_get(n.admin, "/readyz")
            .await
            .is_some_and(|a| a.status == 200)
    })
    .await;
}
