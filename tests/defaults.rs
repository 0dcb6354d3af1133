//! Safe by default (issue 17), as a user meets it: `picket serve` with no policy flags
//! resolves everything and blocks nothing, whether it is started in a clone or anywhere
//! else; `check` and `explain` describe the policy `serve` would run; the example policies
//! apply only when asked for (`--policies policies/examples`); `picket token` makes DoH
//! tokens and DoT names the loader accepts, and guessable ones are refused.
//!
//! Set `PICKET_BIN` to run these against another build (e.g. an older one, to see them fail).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ::picket::config::PolicySource;
use common::process::{answering_address, assert_mentions};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Names a user would expect any resolver to answer: a development name on this machine
/// (like `*.localtest.me`), a company or benchmark record in a private range, and two names
/// that only the example policy's lists block.
const ZONE: &str = "
example. 3600 IN SOA ns.example. hostmaster.example. 1 7200 900 1209600 60
dev.example. 300 IN A 127.0.0.1
bench.example. 300 IN A 10.0.0.1
ads.example. 300 IN A 192.0.2.10
malware.example. 300 IN A 192.0.2.11
";

fn picket_bin() -> String {
    std::env::var("PICKET_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_picket").to_owned())
}

fn clone_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn examples_dir() -> PathBuf {
    clone_dir().join("policies/examples")
}

/// `picket ARGS` run in `cwd`: exit code and stdout + stderr.
fn picket_in(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(picket_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("picket runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// `picket serve` started in `cwd`, forwarding to `upstream`, killed when dropped.
struct Serving {
    child: Child,
    addr: SocketAddr,
}

/// What a user's resolver sees: a signed root delegating `example.` without
/// DS (an insecure delegation, as most of the real tree is), ZONE unsigned.
/// The root is signed with a key of our own, named by `--trust-anchor`,
/// since a test cannot sign with IANA's; `--dnssec` keeps its default,
/// `validate`, so the defaults tested here include validation.
struct World {
    upstream: TreeUpstream,
    anchor: PathBuf,
}

impl World {
    fn start() -> World {
        let root = common::sign::ZoneKey::generate(".");
        let root_zone = root.sign(
            ". 3600 IN SOA ns.invalid. hostmaster.invalid. 1 7200 900 1209600 60
             . 3600 IN NS ns.invalid.
             example. 3600 IN NS ns.invalid.",
        );
        let upstream = TreeUpstream::start(&[root_zone, ZONE.to_string()]);
        let dir = temp_dir("defaults-anchor");
        let anchor = dir.join("root.ds");
        std::fs::write(&anchor, root.ds_line()).unwrap();
        World { upstream, anchor }
    }

    fn addr(&self) -> SocketAddr {
        self.upstream.addr()
    }
}

impl Serving {
    /// Listens on a port the kernel picks (read back from its log), so no
    /// other test can hold or share it.
    fn start(cwd: &Path, world: &World, extra: &[&str]) -> Serving {
        let mut child = Command::new(picket_bin())
            .current_dir(cwd)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--upstream", &world.addr().to_string()])
            .arg("--trust-anchor")
            .arg(&world.anchor)
            .args(["--threads", "1", "--log-level", "info"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("picket starts");
        let addr = answering_address(&mut child);
        Serving { child, addr }
    }

    /// Waits until it answers anything.
    async fn answering(self) -> Serving {
        wait_until_answering(self.addr).await;
        self
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rcode and A records of `name`, asked from 127.0.0.1 (the example organization's network).
async fn ask(server: SocketAddr, name: &str) -> (ResponseCode, Vec<Ipv4Addr>) {
    let answer = query_udp(server, name, RecordType::A).await;
    (answer.metadata.response_code, a_records(&answer))
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_with_no_policy_flags_resolves_private_addresses_and_blocks_nothing() {
    let upstream = World::start();
    let outside = temp_dir("defaults-serve");
    for cwd in [clone_dir(), outside.as_path()] {
        let picket = Serving::start(cwd, &upstream, &[]).answering().await;
        let from = cwd.display();
        // Private addresses pass (dev, bench) and the example lists are not in force (ads,
        // malware).
        for (name, address) in [
            ("dev.example", [127, 0, 0, 1]),
            ("bench.example", [10, 0, 0, 1]),
            ("ads.example", [192, 0, 2, 10]),
            ("malware.example", [192, 0, 2, 11]),
        ] {
            assert_eq!(
                ask(picket.addr, name).await,
                (ResponseCode::NoError, vec![Ipv4Addr::from(address)]),
                "{name} resolves as the upstream says (started in {from})"
            );
        }
    }
    std::fs::remove_dir_all(&outside).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn blocking_happens_only_when_asked_for() {
    let upstream = World::start();
    let outside = temp_dir("defaults-asked");
    let examples = examples_dir();
    // The example policies, from anywhere: as before, acme (127.0.0.0/8) blocks ads with
    // 0.0.0.0 and the global policy blocks malware and rebinding answers with NXDOMAIN.
    let picket = Serving::start(
        &outside,
        &upstream,
        &["--policies", examples.to_str().unwrap()],
    )
    .answering()
    .await;
    let ads = query_udp(picket.addr, "ads.example", RecordType::A).await;
    assert_eq!(a_records(&ads), [Ipv4Addr::UNSPECIFIED]);
    assert_eq!(
        ede(&ads),
        Some((17, "filtered by rule acme/block-ads".into()))
    );
    let malware = query_udp(picket.addr, "malware.example", RecordType::A).await;
    assert_eq!(malware.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        ede(&malware),
        Some((15, "blocked by rule block-malware".into()))
    );
    let rebinding = query_udp(picket.addr, "dev.example", RecordType::A).await;
    assert_eq!(rebinding.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        ede(&rebinding),
        Some((17, "filtered by rule rebind-protection".into()))
    );
    drop(picket);

    // --rebind-protection alone screens private answers and nothing else.
    let picket = Serving::start(&outside, &upstream, &["--rebind-protection"])
        .answering()
        .await;
    assert_eq!(
        ask(picket.addr, "dev.example").await.0,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(picket.addr, "bench.example").await.0,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(picket.addr, "ads.example").await,
        (ResponseCode::NoError, vec![Ipv4Addr::new(192, 0, 2, 10)])
    );
    std::fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn check_and_explain_describe_the_policy_serve_runs_from_anywhere() {
    let outside = temp_dir("defaults-explain");
    for cwd in [clone_dir(), outside.as_path()] {
        let from = cwd.display();
        let (code, out) = picket_in(cwd, &["check"]);
        assert_eq!(code, 0, "check in {from}: {out}");
        assert!(
            out.starts_with(
                "built-in default policy (no organization, no rule): 0 organization(s), 0 rule(s)"
            ),
            "check in {from}: {out}"
        );
        assert!(out.contains("0 passed, 0 failed"), "check in {from}: {out}");

        let (code, out) = picket_in(cwd, &["explain", "ads.example", "--client", "127.0.0.1"]);
        assert_eq!(code, 0, "explain in {from}: {out}");
        assert_mentions(
            &format!("explain in {from}"),
            &out,
            &[
                "organization: none (no organization matches the client)",
                "decision: no rule matched: resolve normally",
            ],
        );
    }
    // With the examples named, both see what `serve --policies policies/examples` runs.
    let examples = examples_dir();
    let (code, out) = picket_in(&outside, &["check", examples.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 organization(s)") && out.contains(" passed, 0 failed"),
        "{out}"
    );
    let (code, out) = picket_in(
        &outside,
        &[
            "explain",
            "ads.example",
            "--policies",
            examples.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("decision: rule acme/block-ads"), "{out}");
    std::fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn a_policies_directory_is_never_picked_implicitly_only_named() {
    // A directory like a clone of old: ./policies holds the example policy files.
    let cwd = temp_dir("defaults-implicit");
    let policies = cwd.join("policies");
    std::fs::create_dir_all(policies.join("lists")).unwrap();
    for file in [
        "acme.json",
        "global.json",
        "lists/ads.txt",
        "lists/malware.txt",
        "lists/trackers.hosts",
    ] {
        std::fs::copy(examples_dir().join(file), policies.join(file)).unwrap();
    }
    let (code, out) = picket_in(&cwd, &["explain", "ads.example"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("decision: no rule matched"), "{out}");
    assert!(
        out.contains("note: the policy files in policies/ are not used without --policies"),
        "{out}"
    );
    let (code, out) = picket_in(&cwd, &["explain", "ads.example", "--policies", "policies"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("decision: rule acme/block-ads"), "{out}");
    assert!(!out.contains("note:"), "{out}");
    std::fs::remove_dir_all(&cwd).unwrap();
}

/// A policy directory whose organization `acme` (127.0.0.0/8) blocks `www.example.test`, is
/// identified over DoH by `token` and over DoT by `dot_name`, and has policy tests saying so.
fn token_policy(token: &str, dot_name: &str) -> PathBuf {
    let dir = temp_dir("defaults-tokens");
    let policy = format!(
        r#"{{
  "organizations": [ {{
    "id": "acme", "networks": ["127.0.0.0/8"],
    "doh_tokens": ["{token}"],
    "dot_names": ["{dot_name}"],
    "rules": [ {{ "id": "www", "expression": "dns.fqdn == \"www.example.test\"", "action": "block" }} ],
    "tests": [
      {{ "name": "www.example.test", "client": "203.0.113.9", "transport": "doh", "doh_token": "{token}",
        "expect": {{ "action": "block", "org": "acme" }} }},
      {{ "name": "www.example.test", "client": "203.0.113.9", "transport": "dot", "dot_name": "{dot_name}",
        "expect": {{ "action": "block", "org": "acme" }} }}
    ]
  }} ]
}}"#
    );
    std::fs::write(dir.join("acme.json"), policy).unwrap();
    dir
}

#[test]
fn picket_token_prints_fresh_tokens_that_check_accepts() {
    let outside = temp_dir("defaults-token");
    let token = || {
        let (code, out) = picket_in(&outside, &["token"]);
        assert_eq!(code, 0, "{out}");
        out.trim_end().to_owned()
    };
    let (first, second) = (token(), token());
    assert_ne!(first, second, "two runs differ");
    for t in [&first, &second] {
        assert!(
            t.len() >= 20
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "a DNS label and a URL path segment: {t:?}"
        );
    }
    let dir = token_policy(&first, &second);
    let (code, out) = picket_in(&outside, &["check", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn serve_and_check_refuse_guessable_tokens_naming_the_place() {
    let dir = token_policy("acme-7f3c9a", "acme");
    let (code, out) = picket_in(&dir, &["check", "."]);
    assert_eq!(code, 1, "{out}");
    assert_mentions(
        "picket check",
        &out,
        &[
            "acme.json:4:20: organizations[0].doh_tokens[0]: this DoH token has about",
            "acme.json:5:19: organizations[0].dot_names[0]: this DoT name has about",
        ],
    );

    let mut serve = Command::new(picket_bin())
        .current_dir(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--upstream", "127.0.0.1:9", "--policies", "."])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("picket starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = serve.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = serve.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve must refuse to start: {stderr}"
    );
    assert!(
        stderr.contains("organizations[0].doh_tokens[0]"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_with_a_guessable_token_keeps_the_last_good_policy() {
    let upstream = Authority::start(
        "example.test. 3600 IN SOA ns.example.test. h.example.test. 1 7200 900 1209600 60
         www.example.test. 300 IN A 192.0.2.1",
    );
    let dir = token_policy("y3zdxoilh3cvc9bcp7r5b1kv7", "dy4gjk39y0upzkx0dtubgyeur");
    let mut settings = test_settings(&[upstream.addr()]);
    settings.policies = PolicySource::Dir(dir.clone());
    let picket = start_picket_with(settings);
    let blocked = |answer: hickory_proto::op::Message| answer.metadata.response_code;
    let www = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(blocked(www), ResponseCode::NXDomain, "acme's rule blocks");

    // The same organization without its rule, but with a guessable token: refused.
    let weak = std::fs::read_to_string(dir.join("acme.json"))
        .unwrap()
        .replace("y3zdxoilh3cvc9bcp7r5b1kv7", "acme-token")
        .replace("\"www.example.test\\\"", "\"nothing.example.test\\\"");
    std::fs::write(dir.join("acme.json"), weak).unwrap();
    let shared = picket.server.shared();
    let refused = shared
        .reload_policy()
        .expect_err("a guessable token does not load");
    assert!(
        refused
            .to_string()
            .contains("organizations[0].doh_tokens[0]: this DoH token has about"),
        "{refused}"
    );
    let www = query_udp(picket.addr, "www.example.test", RecordType::A).await;
    assert_eq!(
        blocked(www),
        ResponseCode::NXDomain,
        "the last good policy stays"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the issue reported, with the user's own tool: `curl --doh-url` through a Picket
/// started with no policy flags resolves a name that points at 127.0.0.1 (and then tries to
/// connect there), where the old default answered NXDOMAIN ("Could not resolve host").
#[tokio::test(flavor = "multi_thread")]
#[ignore = "drives curl"]
async fn curl_over_doh_resolves_a_name_pointing_at_loopback() {
    let upstream = World::start();
    let doh = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let outside = temp_dir("defaults-curl");
    let picket = Serving::start(
        &outside,
        &upstream,
        &["--doh", &doh.to_string(), "--tls-self-signed"],
    )
    .answering()
    .await;
    // Port 9 (discard) on loopback: nothing listens, so curl stops after resolving.
    let out = Command::new("curl")
        .args(["-sv", "--max-time", "5", "--doh-insecure"])
        .args(["--doh-url", &format!("https://{doh}/dns-query")])
        .arg("http://dev.example:9/")
        .output()
        .expect("curl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(6), "could not resolve: {stderr}");
    assert!(stderr.contains("Trying 127.0.0.1:9..."), "{stderr}");
    drop(picket);
    std::fs::remove_dir_all(&outside).unwrap();
}
