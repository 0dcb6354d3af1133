//! Discovery of Designated Resolvers (DDR, RFC 9461 and RFC 9462): a client
//! that knows Picket only by its plain-DNS address asks `_dns.resolver.arpa`
//! SVCB and learns the encrypted endpoints Picket serves, so it can upgrade
//! to DoH or DoT.
//!
//! [`endpoints`] builds the list from [`Settings`] in one place; every
//! encrypted transport adds itself there. The answer is a pure function of
//! the settings and the certificate's name (made in `crate::local`, the
//! name kept current by `pipeline::Shared::set_tls_name`), so it never
//! leaves the process.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::Settings;
use crate::protocol::wire::push_name;

/// The name DDR clients ask (RFC 9462 §4), lower case as `Request::qname`.
pub const NAME: &str = "_dns.resolver.arpa";
/// The special-use zone DDR's name sits in (RFC 9462 §8): it names "the resolver the client
/// asks", so a resolver answers it itself and never forwards it, where another resolver would
/// designate itself instead.
pub const ZONE: &str = "resolver.arpa";

/// Whether `qname` (lower case, no trailing dot) is `resolver.arpa` or a name under it.
pub fn in_zone(qname: &str) -> bool {
    qname
        .strip_suffix(ZONE)
        .is_some_and(|head| head.is_empty() || head.ends_with('.'))
}

/// Record type SVCB (RFC 9460).
pub const SVCB: u16 = 64;
/// The DoH URI template Picket serves (RFC 9461 §5 `dohpath`): the base
/// path, `crate::listener::doh::PATH`, with its GET parameter. Token paths
/// are not advertised: a token is a bearer secret, and a client that has
/// one was configured with it already.
pub const DOH_PATH_TEMPLATE: &str = "/dns-query{?dns}";

/// SvcParamKeys (RFC 9460 §14.3.2, RFC 9461 §5), in the ascending order
/// they must be written in.
mod key {
    pub const ALPN: u16 = 1;
    pub const PORT: u16 = 3;
    pub const IPV4HINT: u16 = 4;
    pub const IPV6HINT: u16 = 6;
    pub const DOHPATH: u16 = 7;
}

/// One encrypted endpoint as DDR advertises it: one SVCB record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The ALPN protocol ID clients must offer: `h2`, `h3`, `dot`, `doq`.
    pub alpn: &'static str,
    /// The TCP (or UDP, for QUIC) port.
    pub port: u16,
    /// Addresses it listens on; empty when it listens on 0.0.0.0, where no
    /// address would be the right hint.
    pub ipv4: Vec<Ipv4Addr>,
    /// As `ipv4`, for `::`.
    pub ipv6: Vec<Ipv6Addr>,
    /// DoH's URI template; None for other transports.
    pub dohpath: Option<&'static str>,
}

/// Every encrypted endpoint Picket serves, in the order they are
/// advertised (DoH first: browsers upgrade to it). None without a
/// certificate, as nothing encrypted is served then. The listen addresses
/// are the bound ones (`app::Server::start` writes them back into the
/// settings), so a port 0 is advertised as the port the kernel picked.
pub fn endpoints(settings: &Settings) -> Vec<Endpoint> {
    let mut out = Vec::new();
    if settings.tls.is_none() {
        return out;
    }
    add(&mut out, "h2", Some(DOH_PATH_TEMPLATE), &settings.doh);
    add(&mut out, "h3", Some(DOH_PATH_TEMPLATE), &settings.doh3);
    add(&mut out, "dot", None, &settings.dot);
    add(&mut out, "doq", None, &settings.doq);
    // A new encrypted transport adds one call here with its listen addresses.
    out
}

/// One endpoint per port of `listen`, with the addresses on that port as
/// hints (none for a family it listens on as a wildcard).
fn add(
    out: &mut Vec<Endpoint>,
    alpn: &'static str,
    dohpath: Option<&'static str>,
    listen: &[SocketAddr],
) {
    let mut ports: Vec<u16> = Vec::new();
    for addr in listen {
        if !ports.contains(&addr.port()) {
            ports.push(addr.port());
        }
    }
    for port in ports {
        let on_port = || listen.iter().filter(move |a| a.port() == port);
        let mut ipv4 = Vec::new();
        let mut ipv6 = Vec::new();
        let (mut any4, mut any6) = (false, false);
        for addr in on_port() {
            match addr {
                SocketAddr::V4(a) if a.ip().is_unspecified() => any4 = true,
                SocketAddr::V6(a) if a.ip().is_unspecified() => any6 = true,
                SocketAddr::V4(a) => push_new(&mut ipv4, *a.ip()),
                SocketAddr::V6(a) => push_new(&mut ipv6, *a.ip()),
            }
        }
        if any4 {
            ipv4.clear();
        }
        if any6 {
            ipv6.clear();
        }
        out.push(Endpoint {
            alpn,
            port,
            ipv4,
            ipv6,
            dohpath,
        });
    }
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The RDATA of one SVCB record (RFC 9460 §2.2): priority (1 for the
/// first endpoint, 2 for the next, ...: all are ServiceMode), the target
/// name, then the parameters in ascending key order. None if `target` is
/// not a DNS name.
pub fn rdata(priority: u16, target: &str, endpoint: &Endpoint) -> Option<Vec<u8>> {
    let mut out = priority.to_be_bytes().to_vec();
    push_name(&mut out, target)?;
    let mut alpn = Vec::new();
    alpn.push(endpoint.alpn.len() as u8);
    alpn.extend_from_slice(endpoint.alpn.as_bytes());
    param(&mut out, key::ALPN, &alpn);
    param(&mut out, key::PORT, &endpoint.port.to_be_bytes());
    if !endpoint.ipv4.is_empty() {
        let hint: Vec<u8> = endpoint.ipv4.iter().flat_map(|a| a.octets()).collect();
        param(&mut out, key::IPV4HINT, &hint);
    }
    if !endpoint.ipv6.is_empty() {
        let hint: Vec<u8> = endpoint.ipv6.iter().flat_map(|a| a.octets()).collect();
        param(&mut out, key::IPV6HINT, &hint);
    }
    if let Some(path) = endpoint.dohpath {
        param(&mut out, key::DOHPATH, path.as_bytes());
    }
    Some(out)
}

fn param(out: &mut Vec<u8>, key: u16, value: &[u8]) {
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// The SVCB RDATAs of the DDR answer: one per endpoint, all pointing at
/// `target`, the certificate's name. Empty (a NODATA answer) without one,
/// as RFC 9462 §4 requires it for a client to verify the designation.
pub fn records(settings: &Settings, target: Option<&str>) -> Vec<Vec<u8>> {
    let Some(target) = target else {
        return Vec::new();
    };
    endpoints(settings)
        .iter()
        .zip(1u16..)
        .filter_map(|(endpoint, priority)| rdata(priority, target, endpoint))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsSource;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn settings(doh: &[&str], dot: &[&str]) -> Settings {
        Settings {
            doh: addrs(doh),
            dot: addrs(dot),
            tls: Some(TlsSource::SelfSigned { names: Vec::new() }),
            ..Settings::default()
        }
    }

    #[test]
    fn one_endpoint_per_transport_and_port_with_its_addresses() {
        let s = settings(
            &["192.0.2.1:443", "[2001:db8::1]:443", "192.0.2.1:8443"],
            &["192.0.2.1:853", "192.0.2.2:853"],
        );
        let got = endpoints(&s);
        assert_eq!(
            got,
            [
                Endpoint {
                    alpn: "h2",
                    port: 443,
                    ipv4: vec![Ipv4Addr::new(192, 0, 2, 1)],
                    ipv6: vec!["2001:db8::1".parse().unwrap()],
                    dohpath: Some("/dns-query{?dns}"),
                },
                Endpoint {
                    alpn: "h2",
                    port: 8443,
                    ipv4: vec![Ipv4Addr::new(192, 0, 2, 1)],
                    ipv6: vec![],
                    dohpath: Some("/dns-query{?dns}"),
                },
                Endpoint {
                    alpn: "dot",
                    port: 853,
                    ipv4: vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)],
                    ipv6: vec![],
                    dohpath: None,
                },
            ]
        );
    }

    #[test]
    fn a_wildcard_listener_gets_no_hint_for_its_family() {
        let s = settings(
            &["0.0.0.0:443", "192.0.2.1:443", "[::1]:443"],
            &["[::]:853"],
        );
        let got = endpoints(&s);
        assert!(got[0].ipv4.is_empty(), "{got:?}");
        assert_eq!(got[0].ipv6, ["::1".parse::<Ipv6Addr>().unwrap()]);
        assert!(got[1].ipv4.is_empty() && got[1].ipv6.is_empty(), "{got:?}");
    }

    #[test]
    fn nothing_without_a_certificate() {
        let mut s = settings(&["192.0.2.1:443"], &["192.0.2.1:853"]);
        s.tls = None;
        assert!(endpoints(&s).is_empty());
        let s = settings(&["192.0.2.1:443"], &[]);
        assert_eq!(records(&s, Some("dns.example.test")).len(), 1);
        assert!(records(&s, None).is_empty(), "no name to verify: no record");
        assert!(records(&settings(&[], &[]), Some("dns.example.test")).is_empty());
    }

    #[test]
    fn the_template_is_the_path_doh_serves() {
        let base = DOH_PATH_TEMPLATE.strip_suffix("{?dns}").unwrap();
        assert_eq!(base, crate::listener::doh::PATH);
    }

    #[test]
    fn rdata_wire_form() {
        let endpoint = Endpoint {
            alpn: "dot",
            port: 853,
            ipv4: vec![Ipv4Addr::new(192, 0, 2, 1)],
            ipv6: vec![],
            dohpath: None,
        };
        let wire = rdata(2, "a.test", &endpoint).unwrap();
        let want: &[u8] = &[
            0, 2, // priority
            1, b'a', 4, b't', b'e', b's', b't', 0, // target
            0, 1, 0, 4, 3, b'd', b'o', b't', // alpn
            0, 3, 0, 2, 3, 0x55, // port 853
            0, 4, 0, 4, 192, 0, 2, 1, // ipv4hint
        ];
        assert_eq!(wire, want);
        assert_eq!(rdata(1, "bad..name", &endpoint), None);
    }
}
