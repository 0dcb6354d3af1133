//! Test harness shared by the integration tests (`mod common;`).
//!
//! - [`Authority`]: an in-process authoritative server on 127.0.0.1 to use as
//!   Picket's upstream, steerable while it runs (silence, delay, truncation,
//!   SERVFAIL, forged answers, EDE, replacement records).
//! - [`client`]: UDP/TCP query helpers with timeouts.
//! - [`inspect`]: readers for answers in assertions.
//! - [`files`]: fresh scratch directories.
//! - [`tls`]: pinned TLS clients and half-finished handshakes; a test CA.
//! - [`quic`]: DoQ and HTTP/3 clients over quinn.
//! - [`https`]: an HTTPS server under a test CA (a control plane, a list feed).
//! - [`encrypted`]: DoT, DoH and DoQ fronts for an [`Authority`], for
//!   encrypted-upstream tests.
//! - [`http`]: plain HTTP GETs to the admin listener.
//! - [`process`]: the picket binary as a process ([`PicketProcess::options`]),
//!   outside programs, free loopback ports.
//! - [`browser`]: headless Chromium (dashboard and block page tests).
//!
//! Nothing here touches the network beyond loopback.
//!
//! ```rust,ignore
//! mod common;
//! use common::*;
//!
//! #[tokio::test]
//! async fn forwards_to_upstream() {
//!     let upstream = Authority::start("
//!         example.test     3600 IN SOA ns.example.test h.example.test 1 7200 900 1209600 60
//!         www.example.test  300 IN A   192.0.2.1");
//!     let answer = query_udp(upstream.addr(), "www.example.test", RecordType::A).await;
//!     assert_eq!(a_records(&answer), [Ipv4Addr::new(192, 0, 2, 1)]);
//!     assert_eq!(upstream.queries_for("www.example.test"), 1);
//! }
//! ```

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod authority;
pub mod browser;
pub mod client;
pub mod encrypted;
pub mod files;
pub mod http;
pub mod https;
pub mod inspect;
pub mod picket;
pub mod process;
pub mod quic;
mod respond;
mod server;
mod server_thread;
pub mod sign;
pub mod signed;
pub mod tls;
pub mod zone;

pub use authority::Authority;
pub use client::{
    a_query, query_tcp, query_udp, query_udp_from, real_sleep, send_tcp, send_udp,
    send_udp_collect, send_udp_raw, unconnected_udp, wait_until_answering, Frame, QueryBuilder,
    TcpClient, ANSWER_TIMEOUT, RAW_TIMEOUT,
};
pub use encrypted::EncryptedFront;
pub use files::{dir_with, policy_file_dir, temp_dir};
pub use http::{
    assert_fields, http_exchange, http_get, http_get_as, http_get_with, http_try_get, metric,
    poll_until, HttpAnswer,
};
pub use inspect::{
    a_records, aaaa_records, assert_a_answer, assert_not_forged, assert_rcode_ede, ede, ede_option,
    min_ttl, rcode, reading, soa_in_authority, soa_owner, EDE_CODE,
};
pub use picket::{
    allow_only, any_port, start_picket, start_picket_adjusted, start_picket_with, test_settings,
    EncryptedPicket, Picket,
};
pub use process::{
    dig, free_addr, free_port, proc_number, run_in, run_program, start_unbound, start_unbound_with,
    KillOnDrop, PicketProcess, ServeOptions,
};
pub use respond::{FORGED_V4, FORGED_V6};
pub use signed::TreeUpstream;
