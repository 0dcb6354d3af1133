//! Starts Picket in-process on 127.0.0.1:0 for a test.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::time::Duration;

use picket::app::Server;
use picket::clock::Clock;
use picket::config::{Settings, TlsSource};
use picket::upstream::DnssecMode;
use picket::upstream::Upstream;

use hickory_proto::op::Message;

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

/// Picket forwarding to `upstreams` with the test settings `adjust`ed.
pub fn start_picket_adjusted(
    upstreams: &[SocketAddr],
    adjust: impl FnOnce(&mut Settings),
) -> Picket {
    let mut settings = test_settings(upstreams);
    adjust(&mut settings);
    start_picket_with(settings)
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

/// The address every name of [`EncryptedPicket::serving`]'s zone has.
pub const SERVED_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The TTL of that zone's A records.
pub const SERVED_A_TTL: u32 = 300;
/// That zone's negative TTL (the SOA's MINIMUM, below the SOA's own TTL).
pub const SERVED_NEGATIVE_TTL: u32 = 120;

impl EncryptedPicket {
    /// [`EncryptedPicket::start`] with an upstream serving `names` under
    /// example.test, each with one A record: [`SERVED_ADDRESS`].
    pub fn serving(names: &[String], name: &str, listeners: impl FnOnce(&mut Settings)) -> Self {
        let mut zone = format!(
            "example.test 3600 IN SOA ns.example.test h.example.test 1 7200 900 1209600 {SERVED_NEGATIVE_TTL}\n"
        );
        for name in names {
            zone.push_str(&format!(
                "{name}.example.test {SERVED_A_TTL} IN A {SERVED_ADDRESS}\n"
            ));
        }
        Self::start(Authority::start(&zone), name, listeners)
    }
}

/// Asserts that `msg` answers with [`SERVED_ADDRESS`] alone.
pub fn assert_served(msg: &Message) {
    super::assert_a_answer(msg, &[SERVED_ADDRESS]);
}

impl Deref for EncryptedPicket {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.picket.server
    }
}

/// An access list that admits the clients in `networks` (CIDR) alone.
pub fn allow_only(networks: &[&str]) -> picket::admission::AccessList {
    let networks = networks.iter().map(|n| n.parse().expect("a CIDR network"));
    picket::admission::AccessList::new(networks.collect())
}

/// 127.0.0.1:0, a listener on any free port.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}
