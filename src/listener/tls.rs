//! TLS for DoH and DoT: the certificate and key (PEM files, or a throwaway
//! self-signed certificate), one rustls `ServerConfig` per transport (they
//! differ only in ALPN), and reloading them on SIGHUP.
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
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSource;

/// ALPN of DoH: HTTP/2 first (RFC 8484 §5.2 recommends it), then HTTP/1.1.
const DOH_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN of DoT (RFC 7858 §3.2, registered by RFC 8310).
const DOT_ALPN: [&[u8]; 1] = [b"dot"];
/// Names the self-signed certificate always carries.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate chain and its key, as loaded.
struct CertifiedKey {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// The live TLS configuration of the DoH and DoT listeners. Each new
/// connection takes the current config; [`Tls::reload`] swaps in new ones
/// without disturbing established connections.
pub struct Tls {
    source: TlsSource,
    doh: ArcSwap<ServerConfig>,
    dot: ArcSwap<ServerConfig>,
    leaf: ArcSwap<CertificateDer<'static>>,
}

impl Tls {
    /// Loads (or, for [`TlsSource::SelfSigned`], generates) the certificate.
    pub fn load(source: &TlsSource) -> Result<Tls> {
        let (doh, dot, leaf) = configs(certified_key(source)?)?;
        Ok(Tls {
            source: source.clone(),
            doh: ArcSwap::from_pointee(doh),
            dot: ArcSwap::from_pointee(dot),
            leaf: ArcSwap::from_pointee(leaf),
        })
    }

    /// Reads the certificate and key files again and uses them for new
    /// connections. On any error the old ones stay in use. A self-signed
    /// certificate is kept as it is (a new one would break pinned clients).
    pub fn reload(&self) -> Result<()> {
        if matches!(self.source, TlsSource::SelfSigned { .. }) {
            return Ok(());
        }
        let (doh, dot, leaf) = configs(certified_key(&self.source)?)?;
        self.doh.store(Arc::new(doh));
        self.dot.store(Arc::new(dot));
        self.leaf.store(Arc::new(leaf));
        Ok(())
    }

    /// An acceptor for a new DoH connection (ALPN h2, http/1.1).
    pub fn doh_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.doh.load_full())
    }

    /// An acceptor for a new DoT connection (ALPN dot).
    pub fn dot_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.dot.load_full())
    }

    /// The end-entity certificate in use (DER), e.g. for a test client to pin.
    pub fn certificate(&self) -> CertificateDer<'static> {
        CertificateDer::clone(&self.leaf.load())
    }

    /// SHA-256 of the end-entity certificate as colon-separated hex, the form
    /// browsers and `openssl x509 -fingerprint -sha256` show.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.leaf.load())
    }

    /// Whether the certificate is a throwaway self-signed one.
    pub fn is_self_signed(&self) -> bool {
        matches!(self.source, TlsSource::SelfSigned { .. })
    }
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

/// The DoH and DoT configs and the leaf certificate for one certificate and key.
fn configs(cert: CertifiedKey) -> Result<(ServerConfig, ServerConfig, CertificateDer<'static>)> {
    let leaf = cert.chain[0].clone();
    let doh = server_config(&cert, &DOH_ALPN)?;
    let dot = server_config(&cert, &DOT_ALPN)?;
    Ok((doh, dot, leaf))
}

fn server_config(cert: &CertifiedKey, alpn: &[&[u8]]) -> Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("the TLS library offers no protocol version")?
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .context(
            "the TLS certificate and key do not go together (is --tls-key the key of --tls-cert?)",
        )?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
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
        assert_eq!(
            tls.doh.load().alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(tls.dot.load().alpn_protocols, vec![b"dot".to_vec()]);
        let fp = tls.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        // Reloading a self-signed certificate keeps it.
        tls.reload().unwrap();
        assert_eq!(tls.fingerprint(), fp);
    }

    #[test]
    fn files_reload_and_errors_name_the_fix() {
        let dir = std::env::temp_dir().join(format!("picket-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let write = |name: &str| {
            let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
            std::fs::write(&cert, made.cert.pem()).unwrap();
            std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        };
        write("one.example.test");
        let tls = Tls::load(&TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        let first = tls.fingerprint();
        write("two.example.test");
        tls.reload().unwrap();
        assert_ne!(tls.fingerprint(), first);

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
        let other = rcgen::generate_simple_self_signed(vec!["x.example.test".to_string()]).unwrap();
        write("three.example.test");
        std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
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
