//! Starts Picket in-process on 127.0.0.1:0 for a test.

use std::net::SocketAddr;
use std::ops::Deref;
use std::time::Duration;

use picket::app::Server;
use picket::clock::Clock;
use picket::config::{Settings, TlsSource};
use picket::upstream::DnssecMode;
use picket::upstream::Upstream;

use super::Authority;

/// A running Picket and the clock its cache ages by.
pub struct Picket {
    pub server: Server,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    /// Advance this instead of sleeping to age cached answers.
    pub clock: Clock,
}

/// Settings for tests: loopback port 0, two workers (so that cross-worker
/// paths are exercised), a manual clock and short upstream timeouts.
/// DNSSEC validation is off: the test authorities serve unsigned zones,
/// which a validating resolver with the root's trust anchor judges bogus
/// (tests/dnssec.rs turns it on against signed zones).
pub fn test_settings(upstreams: &[SocketAddr]) -> Settings {
    let mut settings = Settings {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        upstreams: upstreams.iter().copied().map(Upstream::from).collect(),
        threads: 2,
        clock: Clock::manual(),
        dnssec: DnssecMode::Off,
        ..Settings::default()
    };
    settings.forwarder.attempt_timeout = Duration::from_millis(300);
    settings.forwarder.total_timeout = Duration::from_millis(900);
    // A hit in the last tenth of a TTL refreshes the entry in the background: tests that count
    // upstream queries after moving the clock would race it. The prefetch tests turn it on.
    settings.cache.prefetch = false;
    settings
}

/// Picket forwarding to `upstreams` with test settings.
pub fn start_picket(upstreams: &[SocketAddr]) -> Picket {
    start_picket_with(test_settings(upstreams))
}

/// Picket with the given settings.
pub fn start_picket_with(settings: Settings) -> Picket {
    let clock = settings.clock.clone();
    let server = Server::start(settings).expect("picket starts");
    let addr = server.local_addrs()[0];
    Picket {
        server,
        addr,
        clock,
    }
}

/// A test of encrypted listeners (DoT, DoH, DoQ, HTTP/3): the authority and
/// Picket forwarding to it; derefs to the server (its listener addresses, its
/// certificate).
pub struct EncryptedPicket {
    pub upstream: Authority,
    pub picket: Picket,
}

impl EncryptedPicket {
    /// Picket forwarding to `upstream` with a self-signed certificate for
    /// `name` and `*.name`, and the test's `listeners` (and anything else) set.
    pub fn start(upstream: Authority, name: &str, listeners: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = test_settings(&[upstream.addr()]);
        settings.tls = Some(TlsSource::SelfSigned {
            names: vec![name.into(), format!("*.{name}")],
        });
        listeners(&mut settings);
        Self {
            upstream,
            picket: start_picket_with(settings),
        }
    }
}

impl Deref for EncryptedPicket {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.picket.server
    }
}

/// 127.0.0.1:0, a listener on any free port.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}
