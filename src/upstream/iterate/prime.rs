//! Root priming (RFC 8109): the hints only say where to ask for the root's
//! NS set. On the first resolution, and whenever the primed set expires,
//! one `. NS` query to a hints server gives the root servers in use (names
//! and addresses), kept in the infrastructure cache like any delegation.
//! A failed priming falls back to the hints and is tried again after
//! `Limits::recursion_priming_retry`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, RecordType};

use super::budget::Budget;
use super::infra::{glue_for, Delegation};
use super::Engine;
use crate::config::limits::RECURSION_MAX_DELEGATION_TTL;

impl Engine {
    /// The root's servers: the primed set while it lasts, else a new
    /// priming when one is due, else the hints.
    pub(crate) async fn root_servers(&self, budget: &Budget<'_>) -> Arc<Delegation> {
        if let Some(primed) = self.infra.closest(&Name::root(), Instant::now()) {
            return primed;
        }
        if !self.priming_due() {
            return self.root();
        }
        let hints = self.root();
        let asked = self
            .ask(
                budget,
                &hints,
                &Name::root(),
                RecordType::NS,
                0,
                false,
                false,
            )
            .await;
        let primed = asked.ok().and_then(|(message, _)| primed_root(&message));
        // Addresses a resolution may not use (`deny_servers`, unless they are
        // hints themselves) would leave the root unreachable for the NS TTL.
        let primed = primed
            .map(|mut d| {
                d.glue
                    .retain(|g| self.roots.contains(&g.ip) || self.allowed(&g.ip));
                d
            })
            .filter(|d| !d.glue.is_empty());
        match primed {
            Some(primed) => {
                self.stats.primings.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(servers = primed.names.len(), "root priming done");
                let primed = Arc::new(primed);
                self.infra.learn((*primed).clone());
                primed
            }
            None => {
                self.stats.priming_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("root priming failed: resolving from the hints");
                hints
            }
        }
    }

    /// Whether this resolution should prime now: at most one attempt per
    /// `recursion_priming_retry` (the others meanwhile use the hints).
    fn priming_due(&self) -> bool {
        let now = Instant::now();
        let mut next = self.next_priming.lock().unwrap_or_else(|e| e.into_inner());
        if next.is_some_and(|at| now < at) {
            return false;
        }
        *next = Some(now + self.limits.recursion_priming_retry);
        true
    }
}

/// The root delegation an answer to `. NS` gives: the NS names in the
/// answer section and their addresses in the additional section (the root
/// is authoritative for every name). None without any address: nothing to
/// ask, the hints stay.
fn primed_root(message: &Message) -> Option<Delegation> {
    let mut names = Vec::new();
    let mut ttl = RECURSION_MAX_DELEGATION_TTL.as_secs() as u32;
    for record in &message.answers {
        if let RData::NS(ns) = &record.data {
            if record.name.is_root() && !names.contains(&ns.0) {
                names.push(ns.0.clone());
                ttl = ttl.min(record.ttl);
            }
        }
    }
    let glue = glue_for(&names, &message.additionals, |_| true);
    (!glue.is_empty()).then(|| Delegation {
        zone: Name::root(),
        names,
        glue,
        expires: Instant::now() + Duration::from_secs(u64::from(ttl)),
        parent_side: None,
    })
}
