//! DNS over TLS (RFC 7858): a TLS handshake (ALPN `dot`), bounded in time,
//! then the RFC 7766 stream code of [`super::tcp`] over the TLS stream. The
//! first label of the server name the client asked for (SNI) is passed on
//! as [`ClientHints::dot_label`](crate::query::ClientHints::dot_label), so
//! `acme.dot.example.net` can identify an organization.

use std::sync::Arc;

use super::conns::{accept_loop, Accepted, ConnectionTable};
use super::tcp::serve_stream;
use super::tls::Tls;
use crate::pipeline::Worker;

/// Accepts DoT connections on one worker's listener until the runtime stops.
pub async fn serve(
    worker: Arc<Worker>,
    listener: std::net::TcpListener,
    tls: Arc<Tls>,
    table: Arc<ConnectionTable>,
) -> std::io::Result<()> {
    accept_loop(worker, listener, table, move |accepted| {
        serve_connection(accepted, tls.clone())
    })
    .await
}

/// The TLS handshake, bounded in time and ended early if the connection is
/// shed meanwhile, then DNS over the TLS stream.
async fn serve_connection(accepted: Accepted, tls: Arc<Tls>) {
    let Accepted {
        worker,
        stream,
        mut hints,
        connection,
    } = accepted;
    let limits = worker.shared().settings.limits.clone();
    let acceptor = tls.dot_acceptor();
    let limit = limits.tls_handshake_timeout;
    let Some(stream) = connection.tls_handshake(acceptor, stream, limit).await else {
        return;
    };
    hints.dot_label = stream.get_ref().1.server_name().and_then(first_label);
    serve_stream(worker, stream, hints, &limits, &connection).await;
}

/// The first label of a server name, lower case (`Acme.dot.example.net` →
/// `acme`); None for a name of one label, which names no organization.
pub(crate) fn first_label(server_name: &str) -> Option<String> {
    let (label, rest) = server_name.split_once('.')?;
    (!label.is_empty() && !rest.is_empty()).then(|| label.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::first_label;

    #[test]
    fn first_sni_label() {
        assert_eq!(first_label("acme.dot.example.net").as_deref(), Some("acme"));
        assert_eq!(first_label("ACME.dot.example.net").as_deref(), Some("acme"));
        assert_eq!(first_label("localhost"), None);
        assert_eq!(first_label(".example.net"), None);
        assert_eq!(first_label("acme."), None);
    }
}
