//! What `--upstream` (and a policy's upstream group) names: a plain DNS
//! server, or one spoken to over TLS (RFC 7858), HTTPS (RFC 8484) or QUIC
//! (RFC 9250).
//!
//! Syntax, checked once at startup so a typo is reported with the fix
//! instead of failing every query later:
//!
//! - `IP[:PORT]`: UDP, TCP after TC=1 (port 53)
//! - `tls://IP[:PORT]#NAME`: DoT (port 853), certificate checked against NAME
//! - `https://HOST[:PORT]/PATH[#IP]`: DoH (port 443), POST over HTTP/2;
//!   `#IP` is where HOST is reached, needed when HOST is a name: resolving it
//!   through the resolver being configured could ask Picket itself
//! - `quic://IP[:PORT]#NAME`: DoQ (port 853), certificate checked against NAME

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::ServerName;

use crate::config::parse_addr;

/// How an upstream is spoken to, and where.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamSpec {
    /// UDP, with TCP after TC=1.
    Plain(SocketAddr),
    /// DNS over TLS; the certificate must name `name`.
    Tls { addr: SocketAddr, name: String },
    /// DNS over HTTPS at `https://host:port{path}`, reached at `addr`; the
    /// certificate must name `host` (also sent as SNI and `:authority`).
    Https {
        host: String,
        path: String,
        addr: SocketAddr,
    },
    /// DNS over QUIC; the certificate must name `name`.
    Quic { addr: SocketAddr, name: String },
}

impl UpstreamSpec {
    /// Parses one `--upstream` value (see the module docs); errors say what
    /// is wrong and show the expected form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            return parse_addr(text, 53).map(Self::Plain).map_err(|_| {
                format!(
                    "`{text}` is not an upstream: expected IP[:PORT] (e.g. 192.0.2.53 or [2001:db8::53]:53), \
                     tls://IP[:PORT]#NAME, https://HOST[:PORT]/PATH[#IP] or quic://IP[:PORT]#NAME"
                )
            });
        };
        match scheme.to_ascii_lowercase().as_str() {
            "tls" => {
                let (addr, name) = addr_and_name(text, rest, 853, "tls")?;
                Ok(Self::Tls { addr, name })
            }
            "quic" => {
                let (addr, name) = addr_and_name(text, rest, 853, "quic")?;
                Ok(Self::Quic { addr, name })
            }
            "https" => parse_https(text, rest),
            other => Err(format!(
                "`{text}`: unknown upstream scheme `{other}://`: use tls:// (DoT), https:// (DoH), \
                 quic:// (DoQ), or a plain IP[:PORT] for UDP/TCP"
            )),
        }
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Plain(addr) => *addr,
            Self::Tls { addr, .. } | Self::Https { addr, .. } | Self::Quic { addr, .. } => *addr,
        }
    }

    /// The name the server's certificate must carry (None for plain DNS).
    pub fn tls_name(&self) -> Option<&str> {
        match self {
            Self::Plain(_) => None,
            Self::Tls { name, .. } | Self::Quic { name, .. } => Some(name),
            Self::Https { host, .. } => Some(host),
        }
    }

    /// A bounded label for metrics (`tls`, `https`, `quic`, `plain`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Plain(_) => "plain",
            Self::Tls { .. } => "tls",
            Self::Https { .. } => "https",
            Self::Quic { .. } => "quic",
        }
    }
}

/// `IP[:PORT]#NAME` of tls:// and quic://.
fn addr_and_name(
    text: &str,
    rest: &str,
    default_port: u16,
    scheme: &str,
) -> Result<(SocketAddr, String), String> {
    let example = format!("{scheme}://9.9.9.9#dns.quad9.net");
    let Some((addr, name)) = rest.split_once('#') else {
        return Err(format!(
            "`{text}` has no #NAME: name the server its certificate must match, e.g. {example}"
        ));
    };
    let addr = parse_addr(addr, default_port).map_err(|_| {
        format!(
            "`{text}`: `{addr}` is not an IP address (with an optional :PORT): {scheme}:// takes \
             the server's address, not a host name, e.g. {example}"
        )
    })?;
    Ok((addr, tls_name(text, name)?))
}

/// A name a certificate can be checked against (a DNS name or an IP).
fn tls_name(text: &str, name: &str) -> Result<String, String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || ServerName::try_from(name.as_str()).is_err() {
        return Err(format!(
            "`{text}`: `{name}` is not a valid server name for a certificate (a DNS name such as \
             dns.example.net, or an IP address)"
        ));
    }
    Ok(name)
}

/// `HOST[:PORT]/PATH[#IP]` of https://.
fn parse_https(text: &str, rest: &str) -> Result<UpstreamSpec, String> {
    let (url, bootstrap) = match rest.split_once('#') {
        Some((url, ip)) => (url, Some(ip)),
        None => (rest, None),
    };
    let (authority, path) = match url.find('/') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, "/dns-query"),
    };
    if path.contains(['?', ' ']) {
        return Err(format!(
            "`{text}`: the path `{path}` may not carry a query string or spaces: Picket sends POST \
             requests to the path as given, e.g. https://dns.example.net/dns-query"
        ));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| {
        format!(
            "`{text}`: `{authority}` is not HOST[:PORT] (an IPv6 host goes in brackets, \
             e.g. https://[2001:db8::53]/dns-query)"
        )
    })?;
    let host = tls_name(text, host)?;
    let ip = match bootstrap {
        Some(ip) => Some(
            ip.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| {
                    format!(
                        "`{text}`: `#{ip}` is not an IP address: after # give the address to reach \
                         {host} at, e.g. https://dns.quad9.net/dns-query#9.9.9.9"
                    )
                })?,
        ),
        None => host.parse::<IpAddr>().ok(),
    };
    let Some(ip) = ip else {
        return Err(format!(
            "`{text}`: {host} is a name and no address is given to reach it: add #IP, \
             e.g. https://{host}{path}#192.0.2.53 (Picket does not resolve upstream names \
             through itself)"
        ));
    };
    Ok(UpstreamSpec::Https {
        host,
        path: path.to_string(),
        addr: SocketAddr::new(ip, port),
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; None when malformed.
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after {
            "" => 443,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority, 443)),
    }
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(addr) => write!(f, "{addr}"),
            Self::Tls { addr, name } => write!(f, "tls://{addr}#{name}"),
            Self::Quic { addr, name } => write!(f, "quic://{addr}#{name}"),
            Self::Https { host, path, addr } => {
                let host_part = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                write!(f, "https://{host_part}")?;
                if addr.port() != 443 {
                    write!(f, ":{}", addr.port())?;
                }
                write!(f, "{path}")?;
                if host.parse::<IpAddr>().is_err() {
                    write!(f, "#{}", addr.ip())?;
                }
                Ok(())
            }
        }
    }
}

/// A configured upstream: cheap to clone and compare (health, metrics and
/// connection pools are keyed by it). Its `Display` is the normalised spec
/// (`192.0.2.53:53`, `tls://192.0.2.53:853#dns.example.net`, ...): the
/// `upstream` label of metrics and the query log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upstream(Arc<UpstreamSpec>);

impl Upstream {
    pub fn new(spec: UpstreamSpec) -> Self {
        Self(Arc::new(spec))
    }

    /// Parses an `--upstream` value ([`UpstreamSpec::parse`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        UpstreamSpec::parse(text).map(Self::new)
    }

    pub fn spec(&self) -> &UpstreamSpec {
        &self.0
    }

    /// The plain-DNS address, if this is a plain upstream.
    pub fn plain(&self) -> Option<SocketAddr> {
        match *self.0 {
            UpstreamSpec::Plain(addr) => Some(addr),
            _ => None,
        }
    }
}

impl std::str::FromStr for Upstream {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl From<SocketAddr> for Upstream {
    fn from(addr: SocketAddr) -> Self {
        Self::new(UpstreamSpec::Plain(addr))
    }
}

impl std::ops::Deref for Upstream {
    type Target = UpstreamSpec;
    fn deref(&self) -> &UpstreamSpec {
        &self.0
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> String {
        UpstreamSpec::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    fn err(text: &str) -> String {
        UpstreamSpec::parse(text).expect_err(text)
    }

    #[test]
    fn every_form_parses_and_prints_normalised() {
        assert_eq!(ok("192.0.2.53"), "192.0.2.53:53");
        assert_eq!(ok("[2001:db8::53]:5300"), "[2001:db8::53]:5300");
        assert_eq!(
            ok("tls://9.9.9.9#dns.quad9.net"),
            "tls://9.9.9.9:853#dns.quad9.net"
        );
        assert_eq!(
            ok("TLS://[2001:db8::1]:8853#Dns.Example."),
            "tls://[2001:db8::1]:8853#dns.example"
        );
        assert_eq!(
            ok("quic://127.0.0.1:8853#localhost"),
            "quic://127.0.0.1:8853#localhost"
        );
        assert_eq!(
            ok("https://dns.quad9.net/dns-query#9.9.9.9"),
            "https://dns.quad9.net/dns-query#9.9.9.9"
        );
        assert_eq!(ok("https://127.0.0.1:8443/q"), "https://127.0.0.1:8443/q");
        assert_eq!(ok("https://[::1]:8443/q"), "https://[::1]:8443/q");
        assert_eq!(ok("https://1.1.1.1"), "https://1.1.1.1/dns-query");
        let spec = UpstreamSpec::parse("https://dns.example:8443/x#[::1]").unwrap();
        assert_eq!(spec.addr(), "[::1]:8443".parse().unwrap());
        assert_eq!(spec.tls_name(), Some("dns.example"));
    }

    #[test]
    fn malformed_values_say_what_to_write() {
        for (text, says) in [
            ("dns.example", "expected IP[:PORT]"),
            ("udp://1.1.1.1", "unknown upstream scheme `udp://`"),
            ("tls://1.1.1.1", "has no #NAME"),
            ("tls://one.one.one.one#one.one.one.one", "not a host name"),
            ("tls://1.1.1.1:99999#x.example", "is not an IP address"),
            ("quic://1.1.1.1#", "not a valid server name"),
            ("tls://1.1.1.1#bad name", "not a valid server name"),
            ("https://dns.example/dns-query", "add #IP"),
            ("https://dns.example/q#dns2.example", "is not an IP address"),
            ("https://dns.example:x/q#1.2.3.4", "is not HOST[:PORT]"),
            ("https://[::1/q", "is not HOST[:PORT]"),
            ("https://1.1.1.1/q?dns=x", "query string"),
        ] {
            let e = err(text);
            assert!(e.contains(says), "{text}: {e}");
            assert!(e.contains(text), "{text}: the error names the value: {e}");
        }
    }
}
