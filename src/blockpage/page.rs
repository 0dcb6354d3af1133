//! The block page itself: one HTML document with its style inline and nothing loaded from
//! anywhere (no font, image or script: the page is shown *because* names are blocked, and its
//! Content-Security-Policy forbids every other source, [`CSP`]), in the language the browser
//! asks for where Picket has it (`Accept-Language`, RFC 9110 §12.5.4), English otherwise.
//!
//! Everything that comes from outside (the Host the browser asked for, rule and organization
//! names, the reason) is HTML-escaped; the translations are constants and are not.

use std::fmt::Write as _;
use std::sync::OnceLock;

use super::Blocked;

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--fg:#1d2330;--muted:#5b6475;--line:#d9dde5;--accent:#b42318}\
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--card:#1d2128;--fg:#e8eaee;--muted:#a3abb8;--line:#323844;--accent:#f97066}}\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;padding:16px}\
main{max-width:560px;width:100%;background:var(--card);border:1px solid var(--line);border-top:4px solid var(--accent);border-radius:8px;padding:28px 32px}\
h1{margin:0 0 12px;font-size:1.5rem}\
p{margin:0 0 16px}\
strong{overflow-wrap:anywhere}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:8px 16px;margin:20px 0;padding:16px 0;border-top:1px solid var(--line);border-bottom:1px solid var(--line)}\
dt{color:var(--muted)}\
dd{margin:0;overflow-wrap:anywhere}\
code{font:0.9em ui-monospace,monospace;color:var(--muted)}\
.note{color:var(--muted);font-size:0.9rem;margin:0}";

/// The Content-Security-Policy the page is served with: its one inline style (by hash), and
/// nothing else from anywhere.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; style-src '{}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            crate::observe::sha256_source(STYLE)
        )
    })
}

/// A language the page is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language {
    /// Its primary subtag (RFC 5646), the `lang` attribute.
    pub tag: &'static str,
    texts: Texts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Texts {
    title: &'static str,
    heading: &'static str,
    /// `{domain}` marks where the (escaped, emphasised) name goes.
    lead: &'static str,
    rule: &'static str,
    org: &'static str,
    time: &'static str,
    reason: &'static str,
    no_reason: &'static str,
    no_org: &'static str,
    unknown_rule: &'static str,
    note: &'static str,
}

/// Every language the page is written in; the first is the fallback.
pub const LANGUAGES: [Language; 5] = [
    Language {
        tag: "en",
        texts: Texts {
            title: "Blocked",
            heading: "This site is blocked",
            lead: "Access to {domain} was blocked by your network’s DNS filter.",
            rule: "Rule",
            org: "Organization",
            time: "Time",
            reason: "Reason",
            no_reason: "No reason was given.",
            no_org: "None",
            unknown_rule: "The rule that blocked it is no longer known to this server.",
            note: "If you think this is a mistake, contact your network administrator and tell them the rule and time shown here.",
        },
    },
    Language {
        tag: "pt",
        texts: Texts {
            title: "Bloqueado",
            heading: "Este site está bloqueado",
            lead: "O acesso a {domain} foi bloqueado pelo filtro DNS da sua rede.",
            rule: "Regra",
            org: "Organização",
            time: "Hora",
            reason: "Motivo",
            no_reason: "Não foi indicado nenhum motivo.",
            no_org: "Nenhuma",
            unknown_rule: "A regra que o bloqueou já não é conhecida por este servidor.",
            note: "Se acha que é um erro, contacte o administrador da sua rede e indique a regra e a hora mostradas aqui.",
        },
    },
    Language {
        tag: "es",
        texts: Texts {
            title: "Bloqueado",
            heading: "Este sitio está bloqueado",
            lead: "El acceso a {domain} ha sido bloqueado por el filtro DNS de su red.",
            rule: "Regla",
            org: "Organización",
            time: "Hora",
            reason: "Motivo",
            no_reason: "No se indicó ningún motivo.",
            no_org: "Ninguna",
            unknown_rule: "Este servidor ya no conoce la regla que lo bloqueó.",
            note: "Si cree que es un error, contacte con el administrador de su red e indíquele la regla y la hora que se muestran aquí.",
        },
    },
    Language {
        tag: "fr",
        texts: Texts {
            title: "Bloqué",
            heading: "Ce site est bloqué",
            lead: "L’accès à {domain} a été bloqué par le filtre DNS de votre réseau.",
            rule: "Règle",
            org: "Organisation",
            time: "Heure",
            reason: "Motif",
            no_reason: "Aucun motif n’a été indiqué.",
            no_org: "Aucune",
            unknown_rule: "Ce serveur ne connaît plus la règle qui l’a bloqué.",
            note: "Si vous pensez qu’il s’agit d’une erreur, contactez l’administrateur de votre réseau en lui indiquant la règle et l’heure affichées ici.",
        },
    },
    Language {
        tag: "de",
        texts: Texts {
            title: "Gesperrt",
            heading: "Diese Website ist gesperrt",
            lead: "Der Zugriff auf {domain} wurde vom DNS-Filter Ihres Netzwerks gesperrt.",
            rule: "Regel",
            org: "Organisation",
            time: "Zeit",
            reason: "Grund",
            no_reason: "Es wurde kein Grund angegeben.",
            no_org: "Keine",
            unknown_rule: "Die Regel, die sie gesperrt hat, ist diesem Server nicht mehr bekannt.",
            note: "Wenn Sie das für einen Fehler halten, wenden Sie sich an Ihre Netzwerkverwaltung und nennen Sie die hier gezeigte Regel und Zeit.",
        },
    },
];

/// Entries of an `Accept-Language` header looked at; browsers send a handful.
const MAX_LANGUAGE_RANGES: usize = 32;

/// The language to answer in: of the ranges the browser accepts (RFC 9110 §12.5.4), the one
/// with the highest weight that Picket has (by primary subtag: `pt-BR` is `pt`; earlier wins a
/// tie), else English. A malformed entry is skipped, never an error.
pub fn choose_language(accept: Option<&str>) -> Language {
    let mut best: Option<(u16, Language)> = None;
    for range in accept.unwrap_or("").split(',').take(MAX_LANGUAGE_RANGES) {
        let mut parts = range.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let weight = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1000), weight);
        let Some(weight) = weight.filter(|w| *w > 0) else {
            continue;
        };
        let primary = tag.split('-').next().unwrap_or("");
        let Some(language) = LANGUAGES
            .iter()
            .find(|l| l.tag.eq_ignore_ascii_case(primary))
        else {
            continue;
        };
        if best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, *language));
        }
    }
    best.map_or(LANGUAGES[0], |(_, l)| l)
}

/// A `q` value in thousandths (`0`, `0.5`, `1.000`); None when malformed.
fn weight(text: &str) -> Option<u16> {
    let value: f32 = text.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&value)
        .then(|| (value * 1000.0).round() as u16)
}

/// What one page shows.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The name the browser asked for (its Host), as received.
    pub domain: &'a str,
    /// The block, when known.
    pub blocked: Option<&'a Blocked>,
}

/// The page, in `language`.
pub fn render(view: &View<'_>, language: Language) -> String {
    let t = &language.texts;
    let domain = escape(view.domain);
    let mut html = String::with_capacity(4096);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{title}: {domain}</title><style>{STYLE}</style></head>\n<body><main>\n\
         <h1 id=\"heading\">{heading}</h1>\n<p id=\"lead\">{lead}</p>\n",
        lang = language.tag,
        title = t.title,
        heading = t.heading,
        lead = t.lead.replace(
            "{domain}",
            &format!("<strong id=\"domain\">{domain}</strong>")
        ),
    );
    match view.blocked {
        Some(b) => details(&mut html, t, b),
        None => {
            let _ = writeln!(html, "<p id=\"unknown\">{}</p>", t.unknown_rule);
        }
    }
    let _ = write!(
        html,
        "<p class=\"note\">{}</p>\n</main></body></html>\n",
        t.note
    );
    html
}

/// The rule, organization, time and reason, as a definition list.
fn details(html: &mut String, t: &Texts, b: &Blocked) {
    let org = if b.org.is_empty() {
        t.no_org.to_owned()
    } else {
        escape(&b.org)
    };
    let reason = match &b.reason {
        Some(r) if !r.trim().is_empty() => escape(r),
        _ => t.no_reason.to_owned(),
    };
    let _ = write!(
        html,
        "<dl>\n<dt>{rule}</dt><dd><span id=\"rule-name\">{name}</span> <code id=\"rule-id\">{id}</code></dd>\n\
         <dt>{org_label}</dt><dd id=\"org\">{org}</dd>\n\
         <dt>{time}</dt><dd><time id=\"time\" datetime=\"{iso}\">{shown}</time></dd>\n\
         <dt>{reason_label}</dt><dd id=\"reason\">{reason}</dd>\n</dl>\n",
        rule = t.rule,
        name = escape(&b.rule_name),
        id = escape(&b.rule),
        org_label = t.org,
        time = t.time,
        iso = b.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        shown = b.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        reason_label = t.reason,
    );
}

/// `text` with the five characters that mean something in HTML (in text and in quoted
/// attributes) written as references.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(accept: &str) -> &'static str {
        choose_language(Some(accept)).tag
    }

    #[test]
    fn the_language_is_the_best_weighted_one_picket_has() {
        assert_eq!(choose_language(None).tag, "en");
        assert_eq!(tag("pt-BR,pt;q=0.9,en;q=0.8"), "pt");
        assert_eq!(tag("ja, de;q=0.5, fr;q=0.7"), "fr");
        assert_eq!(tag("ja,zh-CN"), "en");
        assert_eq!(tag("es;q=0, de;q=0.1"), "de");
        assert_eq!(tag("FR-ca"), "fr");
        assert_eq!(
            tag("de;q=abc, es"),
            "es",
            "a malformed weight skips its entry"
        );
        assert_eq!(tag("en;q=0.5,es;q=0.5"), "en", "a tie keeps the first");
        assert_eq!(tag(";;;,,,q=,"), "en");
    }

    #[test]
    fn everything_from_outside_is_escaped() {
        let blocked = Blocked {
            rule: "acme/<r>".into(),
            rule_name: "\"quoted\" & 'single'".into(),
            org: "<script>alert(1)</script>".into(),
            reason: Some("<img src=x onerror=alert(1)>".into()),
            at: jiff::Timestamp::UNIX_EPOCH,
        };
        let html = render(
            &View {
                domain: "<b>evil</b>.example",
                blocked: Some(&blocked),
            },
            LANGUAGES[0],
        );
        for raw in [
            "<b>evil",
            "<script>",
            "<img",
            "\"quoted\"",
            "'single'",
            "<r>",
        ] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
        assert!(html.contains("&lt;b&gt;evil&lt;/b&gt;.example"));
        assert!(html.contains("1970-01-01 00:00:00 UTC"));
    }

    #[test]
    fn the_policy_allows_the_style_and_nothing_else() {
        let csp = csp();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"));
        let html = render(
            &View {
                domain: "x.example",
                blocked: None,
            },
            LANGUAGES[4],
        );
        assert!(html.contains("lang=\"de\"") && html.contains("id=\"unknown\""));
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
    }
}
