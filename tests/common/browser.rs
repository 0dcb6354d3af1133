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

/// The DOM Chromium builds for `url` (`--dump-dom`), with `args` besides; panics with
/// Chromium's stderr when it fails.
pub async fn dump_dom(args: &[&str], url: &str) -> String {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push("--dump-dom".into());
    let out = run(args, url).await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `url` at `width`×`height` kept at `target/tmp/NAME`, with `args` besides;
/// panics when Chromium fails or the picture is too small to show a page. Returns its path.
pub async fn screenshot(
    name: &str,
    (width, height): (u32, u32),
    args: &[&str],
    url: &str,
) -> PathBuf {
    let shot = screenshot_path(name);
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!("--screenshot={}", shot.display()));
    args.push(format!("--window-size={width},{height}"));
    run(args, url).await;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "a screenshot of {url}: {size} bytes");
    println!("screenshot of {url}: {}", shot.display());
    shot
}

/// [`chromium`] off the test's runtime threads, asserting it succeeded.
async fn run(args: Vec<String>, url: &str) -> std::process::Output {
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        chromium(&args, &url)
    })
    .await
    .expect("chromium's thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
