//! TLS for DoH, DoT, DoQ, DoH over HTTP/3 and the block page: the certificate and key (PEM
//! files, or a throwaway self-signed certificate), one rustls `ServerConfig`
//! per transport (they differ in ALPN, and QUIC's allow TLS 1.3 only), and
//! reloading them on SIGHUP.
//!
//! Only the ring crypto provider is compiled in, and it is named explicitly
//! (`builder_with_provider`), so no process-wide default is needed.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use rustls_pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{version, ServerConfig, SupportedProtocolVersion};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSource;

/// ALPN of DoH: HTTP/2 first (RFC 8484 §5.2 recommends it), then HTTP/1.1.
const DOH_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN of the block page (`--block-page-tls`): HTTP/1.1 only, all one page needs.
const BLOCK_PAGE_ALPN: [&[u8]; 1] = [b"http/1.1"];
/// ALPN of DoT (RFC 7858 §3.2, registered by RFC 8310).
const DOT_ALPN: [&[u8]; 1] = [b"dot"];
/// ALPN of DNS over QUIC (RFC 9250 §4.1).
pub const DOQ_ALPN: &[u8] = b"doq";
/// ALPN of HTTP/3 (RFC 9114 §3.1).
pub const H3_ALPN: &[u8] = b"h3";
/// Names the self-signed certificate always carries.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate chain and its key, as loaded.
struct CertifiedKey {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// The live TLS configuration of the DoH, DoT, DoQ and DoH3 listeners. Each
/// new connection takes the current config; [`Tls::reload`] swaps in new
/// ones without disturbing established connections.
pub struct Tls {
    source: TlsSource,
    configs: ArcSwap<Configs>,
}

/// The configs of one certificate and key.
struct Configs {
    doh: Arc<ServerConfig>,
    dot: Arc<ServerConfig>,
    doq: Arc<ServerConfig>,
    doh3: Arc<ServerConfig>,
    block_page: Arc<ServerConfig>,
    leaf: CertificateDer<'static>,
}

impl Tls {
    /// Loads (or, for [`TlsSource::SelfSigned`], generates) the certificate.
    pub fn load(source: &TlsSource) -> Result<Tls> {
        let cert = certified_key(source)?;
        Ok(Tls {
            source: source.clone(),
            configs: ArcSwap::from_pointee(configs(cert)?),
        })
    }

    /// Reads the certificate and key files again and uses them for new
    /// connections. On any error the old ones stay in use. A self-signed
    /// certificate is kept as it is (a new one would break pinned clients).
    pub fn reload(&self) -> Result<()> {
        if matches!(self.source, TlsSource::SelfSigned { .. }) {
            return Ok(());
        }
        let configs = configs(certified_key(&self.source)?)?;
        self.configs.store(Arc::new(configs));
        Ok(())
    }

    /// An acceptor for a new DoH connection (ALPN h2, http/1.1).
    pub fn doh_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.configs.load().doh.clone())
    }

    /// An acceptor for a new DoT connection (ALPN dot).
    pub fn dot_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.configs.load().dot.clone())
    }

    /// The config for new DoQ connections (ALPN doq, TLS 1.3, no 0-RTT).
    /// The same `Arc` until a reload, so a listener can tell it changed.
    pub fn doq_config(&self) -> Arc<ServerConfig> {
        self.configs.load().doq.clone()
    }

    /// The config for new DoH3 connections (ALPN h3, TLS 1.3, no 0-RTT).
    pub fn doh3_config(&self) -> Arc<ServerConfig> {
        self.configs.load().doh3.clone()
    }

    /// An acceptor for a new block page connection (ALPN http/1.1).
    pub fn block_page_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.configs.load().block_page.clone())
    }

    /// The end-entity certificate in use (DER), e.g. for a test client to pin.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.configs.load().leaf.clone()
    }

    /// SHA-256 of the end-entity certificate as colon-separated hex, the form
    /// browsers and `openssl x509 -fingerprint -sha256` show.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.configs.load().leaf)
    }

    /// The DNS name the certificate is for, as DDR advertises it (see
    /// [`dns_name`]); None if it names no host.
    pub fn dns_name(&self) -> Option<String> {
        dns_name(&self.configs.load().leaf)
    }

    /// Whether the certificate is a throwaway self-signed one.
    pub fn is_self_signed(&self) -> bool {
        matches!(self.source, TlsSource::SelfSigned { .. })
    }
}

/// The name a certificate is for: its first DNS name (subjectAltName
/// dNSName) that is no wildcard, preferring any other to `localhost` (which
/// the self-signed certificate always carries first). Lower case.
pub fn dns_name(der: &[u8]) -> Option<String> {
    let names: Vec<String> = subject_alt_dns_names(der)
        .into_iter()
        .filter(|n| !n.starts_with('*'))
        .collect();
    let first_real = names.iter().find(|n| n.as_str() != "localhost");
    first_real.or(names.first()).cloned()
}

/// OID 2.5.29.17, subjectAltName (RFC 5280 §4.2.1.6), DER content bytes.
const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];

/// The dNSName entries of a DER certificate's subjectAltName, lower case,
/// in order; empty if it has none or cannot be read. Walks only the DER
/// needed (Certificate, TBSCertificate, extensions) rather than pull in a
/// full X.509 parser for one field; rustls has checked the certificate
/// already, and a truncated or odd one just yields fewer names.
pub fn subject_alt_dns_names(der: &[u8]) -> Vec<String> {
    fn names(der: &[u8]) -> Option<Vec<String>> {
        let (_, cert, _) = der_element(der, 0x30)?;
        let (_, tbs, _) = der_element(cert, 0x30)?;
        let mut rest = tbs;
        let mut out = Vec::new();
        while let Some((tag, content, next)) = der_any(rest) {
            rest = next;
            // extensions [3] EXPLICIT SEQUENCE OF Extension
            if tag != 0xa3 {
                continue;
            }
            let (_, mut extensions, _) = der_element(content, 0x30)?;
            while let Some((_, extension, next)) = der_element(extensions, 0x30) {
                extensions = next;
                let (_, oid, after) = der_element(extension, 0x06)?;
                if oid != SUBJECT_ALT_NAME {
                    continue;
                }
                // critical BOOLEAN DEFAULT FALSE, then extnValue OCTET STRING
                let after = der_element(after, 0x01).map_or(after, |(_, _, rest)| rest);
                let (_, value, _) = der_element(after, 0x04)?;
                let (_, mut general, _) = der_element(value, 0x30)?;
                while let Some((tag, name, next)) = der_any(general) {
                    general = next;
                    // dNSName [2] IMPLICIT IA5String
                    if tag == 0x82 {
                        if let Ok(name) = std::str::from_utf8(name) {
                            out.push(name.to_ascii_lowercase());
                        }
                    }
                }
            }
        }
        Some(out)
    }
    names(der).unwrap_or_default()
}

/// The first DER element of `input` if its tag is `tag`: (tag, content, rest).
fn der_element(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    der_any(input).filter(|(t, _, _)| *t == tag)
}

/// The first DER element of `input` (single-byte tags, definite lengths of
/// up to 4 bytes, all a certificate needs): (tag, content, rest).
fn der_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// SHA-256 of a DER certificate as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ::ring::digest::digest(&::ring::digest::SHA256, der);
    let mut out = String::with_capacity(digest.as_ref().len() * 3);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

fn certified_key(source: &TlsSource) -> Result<CertifiedKey> {
    match source {
        TlsSource::Files { cert, key } => Ok(CertifiedKey {
            chain: read_chain(cert)?,
            key: read_key(key)?,
        }),
        TlsSource::SelfSigned { names } => self_signed(names),
    }
}

/// The configs of every transport and the leaf certificate for one certificate and key.
fn configs(cert: CertifiedKey) -> Result<Configs> {
    let tls12_and_13 = &[&version::TLS13, &version::TLS12][..];
    // QUIC carries TLS 1.3 only (RFC 9001 §4.2).
    let tls13 = &[&version::TLS13][..];
    Ok(Configs {
        leaf: cert.chain[0].clone(),
        doh: Arc::new(server_config(&cert, &DOH_ALPN, tls12_and_13)?),
        dot: Arc::new(server_config(&cert, &DOT_ALPN, tls12_and_13)?),
        doq: Arc::new(server_config(&cert, &[DOQ_ALPN], tls13)?),
        doh3: Arc::new(server_config(&cert, &[H3_ALPN], tls13)?),
        block_page: Arc::new(server_config(&cert, &BLOCK_PAGE_ALPN, tls12_and_13)?),
    })
}

fn server_config(
    cert: &CertifiedKey,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(versions)
        .context("the TLS library offers no protocol version")?
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .context(
            "the TLS certificate and key do not go together (is --tls-key the key of --tls-cert?)",
        )?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No 0-RTT anywhere: early data can be replayed, and a DNS query is
    // only replay-safe if the server knows it cannot change state, which a
    // filtering resolver with rate limits and a query log does not
    // (RFC 9250 §4.5, RFC 8446 §8). 0 is rustls' default; said here so it
    // stays so. quinn then refuses 0-RTT as well.
    config.max_early_data_size = 0;
    Ok(config)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let file = File::open(path)
        .with_context(|| format!("cannot open TLS certificate {}", path.display()))?;
    let chain = CertificateDer::pem_reader_iter(file)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read TLS certificate {}", path.display()))?;
    if chain.is_empty() {
        bail!(
            "{} holds no certificate: --tls-cert needs a PEM file with `-----BEGIN CERTIFICATE-----` \
             (the server certificate first, then any intermediates)",
            path.display()
        );
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let file =
        File::open(path).with_context(|| format!("cannot open TLS key {}", path.display()))?;
    match PrivateKeyDer::from_pem_reader(file) {
        Err(pem::Error::NoItemsFound) => bail!(
            "{} holds no private key: --tls-key needs a PEM file with a PKCS#8, RSA or EC private key",
            path.display()
        ),
        read => read.with_context(|| format!("cannot read TLS key {}", path.display())),
    }
}

fn self_signed(extra: &[String]) -> Result<CertifiedKey> {
    let mut names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names).context(
        "cannot make a self-signed certificate (is every --tls-name a valid DNS name or IP?)",
    )?;
    Ok(CertifiedKey {
        chain: vec![generated.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_configs_differ_only_in_alpn() {
        let tls = Tls::load(&TlsSource::SelfSigned {
            names: vec!["dns.example.test".into()],
        })
        .unwrap();
        let configs = tls.configs.load();
        assert_eq!(
            configs.doh.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(configs.dot.alpn_protocols, vec![b"dot".to_vec()]);
        assert_eq!(tls.doq_config().alpn_protocols, vec![b"doq".to_vec()]);
        assert_eq!(tls.doh3_config().alpn_protocols, vec![b"h3".to_vec()]);
        assert_eq!(tls.doq_config().max_early_data_size, 0);
        let fp = tls.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        // Reloading a self-signed certificate keeps it (and its configs).
        let doq = tls.doq_config();
        tls.reload().unwrap();
        assert_eq!(tls.fingerprint(), fp);
        assert!(Arc::ptr_eq(&doq, &tls.doq_config()));
    }

    #[test]
    fn the_certificate_names_its_host() {
        let made = rcgen::generate_simple_self_signed(vec![
            "*.dot.example.net".to_string(),
            "Dns.Example.Test".to_string(),
            "192.0.2.1".to_string(),
            "other.example.test".to_string(),
        ])
        .unwrap();
        let der = made.cert.der();
        assert_eq!(
            subject_alt_dns_names(der),
            [
                "*.dot.example.net",
                "dns.example.test",
                "other.example.test"
            ]
        );
        assert_eq!(dns_name(der).as_deref(), Some("dns.example.test"));
        // The self-signed certificate: its extra name, else localhost.
        let named = Tls::load(&TlsSource::SelfSigned {
            names: vec!["dns.example.test".into()],
        })
        .unwrap();
        assert_eq!(named.dns_name().as_deref(), Some("dns.example.test"));
        let plain = Tls::load(&TlsSource::SelfSigned { names: vec![] }).unwrap();
        assert_eq!(plain.dns_name().as_deref(), Some("localhost"));
        // Truncated or foreign bytes give no name, never a panic.
        for cut in 0..der.len() {
            let _ = subject_alt_dns_names(&der[..cut]);
        }
        assert!(subject_alt_dns_names(b"not a certificate").is_empty());
        let ip_only = rcgen::generate_simple_self_signed(vec!["192.0.2.1".to_string()]).unwrap();
        assert_eq!(dns_name(ip_only.cert.der()), None);
    }

    /// Writes a new self-signed certificate for `name` and its key as PEM files.
    fn write_self_signed(cert: &Path, key: &Path, name: &str) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        std::fs::write(cert, made.cert.pem()).unwrap();
        std::fs::write(key, made.signing_key.serialize_pem()).unwrap();
    }

    #[test]
    fn files_reload_and_errors_name_the_fix() {
        let dir = crate::testing::fresh_dir("tls");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let write = |name: &str| write_self_signed(&cert, &key, name);
        write("one.example.test");
        let tls = Tls::load(&TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        let first = tls.fingerprint();
        write("two.example.test");
        let doq = tls.doq_config();
        tls.reload().unwrap();
        assert_ne!(tls.fingerprint(), first);
        // QUIC listeners see the change by the config's identity.
        assert!(!Arc::ptr_eq(&doq, &tls.doq_config()));

        // A broken file on reload leaves the loaded certificate in place.
        let second = tls.fingerprint();
        std::fs::write(&cert, "not a certificate").unwrap();
        let err = tls.reload().unwrap_err();
        assert!(
            format!("{err:#}").contains("holds no certificate"),
            "{err:#}"
        );
        assert_eq!(tls.fingerprint(), second);

        // A key that belongs to another certificate.
        write("three.example.test");
        write_self_signed(&dir.join("other.pem"), &key, "x.example.test");
        let err = tls.reload().unwrap_err();
        assert!(format!("{err:#}").contains("do not go together"), "{err:#}");

        let missing = Tls::load(&TlsSource::Files {
            cert: dir.join("absent.pem"),
            key,
        });
        assert!(format!("{:#}", missing.err().unwrap()).contains("cannot open TLS certificate"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
