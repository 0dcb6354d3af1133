//! The dashboard page: `ui/index.html` with `ui/style.css` and `ui/app.js`
//! inlined, all compiled into the binary, so it works offline and needs
//! nothing but the admin listener. Its Content-Security-Policy allows that
//! one script and style (by SHA-256) and requests to this listener only: no
//! other host, even if a query name ever slipped into the page as markup.

use std::sync::OnceLock;

use base64::Engine;

const HTML: &str = include_str!("ui/index.html");
const STYLE: &str = include_str!("ui/style.css");
const SCRIPT: &str = include_str!("ui/app.js");

/// The page and the policy it is served with.
pub struct Page {
    pub html: &'static str,
    pub csp: String,
}

/// Built once, on first request.
pub fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let html = HTML
            .replace("/*STYLE*/", STYLE)
            .replace("/*SCRIPT*/", SCRIPT);
        let csp = format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            sha256_source(SCRIPT),
            sha256_source(STYLE)
        );
        Page {
            html: Box::leak(html.into_boxed_str()),
            csp,
        }
    })
}

/// A CSP source for an inline script or style: `sha256-` and its digest in base64.
pub fn sha256_source(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

/// What `/` answers without the token (`--admin-token`): a form that opens
/// the page again with `?token=`, after which the page's script sends the
/// token as a bearer header and takes it out of the address bar.
pub const LOGIN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Picket dashboard: token needed</title></head>
<body><main>
<h1>Picket dashboard</h1>
<p>This admin listener was started with <code>--admin-token</code>.</p>
<form method="get" action="/">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" required autocomplete="current-password">
<button type="submit">Open the dashboard</button>
</form>
</main></body></html>
"#;

/// The login page needs no script and no style.
pub const LOGIN_CSP: &str =
    "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_assets_and_names_no_other_host() {
        let p = page();
        assert!(!p.html.contains("/*STYLE*/") && !p.html.contains("/*SCRIPT*/"));
        assert!(p.html.contains("function chart("));
        assert!(p.csp.contains("connect-src 'self'") && p.csp.contains("script-src 'sha256-"));
        // The SVG namespace is an identifier, never fetched.
        let text = p.html.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "an outside URL"
        );
        assert!(
            !text.contains("innerHTML"),
            "names are put in with textContent"
        );
    }
}
