//! Debian's Chromium, headless, for tests of pages in a real browser (the dashboard, the
//! block page). Tests that use it are `#[ignore]`d: `.ci/run` installs `chromium`.

use std::path::PathBuf;

/// Runs headless Chromium on `url` with `args` (e.g. `--dump-dom`, `--screenshot=FILE`,
/// `--host-resolver-rules=...`) in a fresh profile, offline but for what `url` names.
pub fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = super::temp_dir("chromium-profile");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs (apt-get install chromium)");
    let _ = std::fs::remove_dir_all(profile);
    out
}

/// The text inside the element with `id` in a dumped DOM (its first text
/// run: enough for figures and names).
pub fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let at = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    &rest[start..end]
}

/// Where a test keeps a screenshot for people to look at: `target/tmp/NAME`
/// (`CARGO_TARGET_TMPDIR`), an older one removed first.
pub fn screenshot_path(name: &str) -> PathBuf {
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&shot);
    shot
}
