//! Picket: a fast filtering recursive DNS resolver.
//!
//! The query's path, one direction, one module per stage:
//!
//! ```text
//! listener ─bytes─▶ protocol::parse ─Request─▶ policy::evaluate ─Verdict─▶
//!     block/override ─────────────────────────────────────────────▶ protocol::build
//!     allow ─▶ cache (hit) ───────────────────────────────────────▶ │
//!            └▶ upstream (coalesced miss) ─▶ cache insert ─────────▶ │
//! protocol::build ─bytes─▶ listener writes;  Outcome ─▶ observe::{metrics, querylog, dashboard}
//! ```
//!
//! [`pipeline`] shows that path in one place. Lower floors never import
//! higher ones: `protocol`, `query`, `clock`, `throttle`, `reactor`, `huge_pages` ←
//! `cache`, `upstream`, `policy` ← `pipeline` ← `listener` ← `app` ← `cli`.

pub mod admission;
pub mod app;
pub mod blockpage;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ddr;
pub mod dnssec;
pub mod fetch;
pub mod fleet;
pub mod health;
pub mod huge_pages;
pub mod import;
pub mod listener;
pub mod local;
pub mod observe;
pub mod pipeline;
pub mod policy;
pub mod protocol;
pub mod query;
pub mod reactor;
pub mod rebinding;
pub mod reload;
pub mod synthesize;
pub mod throttle;
pub mod upstream;

#[cfg(test)]
mod testing;
