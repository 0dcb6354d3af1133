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
