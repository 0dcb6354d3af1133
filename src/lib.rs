//! Picket: a fast filtering recursive DNS resolver.
//!
//! The query's path, one direction, one module per stage:
//!
//! ```text
//! listener ─RawQuery─▶ protocol::parse ─Request─▶ policy::evaluate ─Verdict─▶
//!     block/override ─────────────────────────────────────────────▶ protocol::build
//!     allow ─▶ cache (hit) ───────────────────────────────────────▶ │
//!            └▶ upstream (coalesced miss) ─▶ cache insert ─────────▶ │
//! protocol::build ─bytes─▶ listener writes;  Outcome ─▶ observe::{metrics, querylog}
//! ```

pub mod cache;
pub mod clock;
pub mod policy;
pub mod protocol;
pub mod query;
pub mod upstream;
