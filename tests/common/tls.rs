//! TLS clients for DoT and DoH tests: a rustls client that trusts exactly
//! the certificate Picket presents (pinned), and the raw first flight of a
//! handshake for clients that never finish one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme,
};
use tokio_rustls::TlsConnector;

/// Trusts exactly one certificate.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(tokio_rustls::rustls::Error::General(
                "not the pinned certificate".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config that trusts only `cert`, offering `alpn`.
pub fn pinned_config(cert: CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    let verifier = Pinned {
        cert,
        provider: provider.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring offers TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TCP connection to `addr` from the loopback address `from` (another
/// loopback address is another client).
pub async fn tcp_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(
        format!("{from}:0")
            .parse()
            .expect("a loopback IPv4 address"),
    )?;
    socket.connect(addr).await
}

/// A finished TLS handshake with `addr` (SNI `localhost`) over `tcp`,
/// trusting only `cert`.
pub async fn tls_over(
    tcp: TcpStream,
    cert: CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from("localhost").expect("a valid name");
    TlsConnector::from(pinned_config(cert, alpn))
        .connect(name, tcp)
        .await
}

/// The bytes a client sends to open a TLS handshake (its ClientHello,
/// offering `alpn`): sent alone, the handshake never finishes.
pub fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
    let cert = CertificateDer::from(vec![0u8]);
    let name = ServerName::try_from("localhost").expect("a valid name");
    let mut client =
        ClientConnection::new(pinned_config(cert, alpn), name).expect("a client connection");
    let mut hello = Vec::new();
    client.write_tls(&mut hello).expect("a ClientHello");
    hello
}

/// A certificate authority made for one test: it issues server
/// certificates for the test's encrypted servers, and its certificate goes
/// to Picket as `--ca-file` (Picket's own roots never trust it).
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: CertificateDer<'static>,
    pem: String,
    dir: std::path::PathBuf,
}

/// A server certificate chain and its key, as DER and as PEM.
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Vec<u8>,
    pub chain_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Picket test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = super::files::temp_dir("test-ca");
        Self {
            issuer: rcgen::Issuer::new(params, key),
            cert: cert.der().clone(),
            pem: cert.pem(),
            dir,
        }
    }

    /// The CA certificate as a PEM file (what `--ca-file` takes).
    pub fn ca_file(&self) -> std::path::PathBuf {
        let path = self.dir.join("ca.pem");
        std::fs::write(&path, &self.pem).expect("write ca.pem");
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("server params");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        Issued {
            chain: vec![cert.der().clone(), self.cert.clone()],
            key: key.serialize_der(),
            chain_pem: cert.pem() + &self.pem,
            key_pem: key.serialize_pem(),
        }
    }

    /// A client config that trusts this CA alone (as a managed device that
    /// had the operator's CA installed), offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).expect("the CA certificate");
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring offers TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A rustls server config presenting a certificate for `names`,
    /// offering `alpn`; TLS 1.3 only when `quic` (RFC 9001).
    pub fn server_config(
        &self,
        names: &[&str],
        alpn: &[&[u8]],
        quic: bool,
    ) -> Arc<tokio_rustls::rustls::ServerConfig> {
        let issued = self.issue(names);
        let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(issued.key.into());
        let builder = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            ring::default_provider(),
        ));
        let builder = if quic {
            builder.with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        } else {
            builder.with_safe_default_protocol_versions()
        }
        .expect("ring offers TLS 1.2 and 1.3");
        let mut config = builder
            .with_no_client_auth()
            .with_single_cert(issued.chain, key)
            .expect("a usable server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        if quic {
            // quinn requires either no early data or the QUIC maximum.
            config.max_early_data_size = 0;
        }
        Arc::new(config)
    }
}
