//! The command line as an operator's script drives it: `picket check` and
//! `picket explain` exit codes and output.

use std::process::Command;

fn picket(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_picket"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("picket runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_passes_the_shipped_policies_and_runs_their_tests() {
    let (code, out) = picket(&["check", "policies/examples"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn check_names_file_path_and_column_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("picket-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.json"),
        r#"{ "organizations": [ { "id": "x", "rules": [
  { "id": "r1", "expression": "dns.src_ip in {10.0.0.0/33}", "action": "block" } ] } ] }"#,
    )
    .unwrap();
    let (code, out) = picket(&["check", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("p.json: organizations[0].rules[0].expression"),
        "{out}"
    );
    assert!(
        out.contains("(1:16)"),
        "Wirefilter's line and column: {out}"
    );
    assert_eq!(
        out.matches("Network length 33").count(),
        1,
        "each problem once: {out}"
    );
}

#[test]
fn explain_shows_the_deciding_rule_and_the_answer() {
    let (code, out) = picket(&[
        "explain",
        "ads.example",
        "A",
        "--client",
        "10.0.0.5",
        "--policies",
        "policies/examples",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("organization: acme"), "{out}");
    assert!(out.contains("decision: rule acme/block-ads"), "{out}");
    assert!(out.contains("EDE 17"), "{out}");
}

#[test]
fn a_bad_nameserver_port_is_refused_with_the_expected_form() {
    let (code, out) = picket(&[
        "serve",
        "--recursive",
        "--nameserver-port",
        "127.0.0.10:5300",
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--nameserver-port"), "names the flag: {out}");
    assert!(
        out.contains("IP=PORT, e.g. 127.0.0.10=5300"),
        "says the fix: {out}"
    );
}
