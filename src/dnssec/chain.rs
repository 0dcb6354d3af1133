//! The validator: chains of trust from the anchors, top-down.

use hickory_proto::op::Message;

use super::{Fetch, Security, ValidatorSettings};
use crate::config::Limits;

/// Validates responses; one per process, shared by every worker in an `Arc`.
pub struct Validator {
    settings: ValidatorSettings,
    limits: Limits,
}

impl Validator {
    pub fn new(settings: ValidatorSettings, limits: &Limits) -> Self {
        Self { settings, limits: limits.clone() }
    }

    /// Judges a whole response: every RRset of the answer section (a CNAME
    /// chain may cross zones, each RRset judged by its own signer), or for
    /// NXDOMAIN/NODATA the denial proof (NSEC or NSEC3) in the authority
    /// section. The caller sets AD only on Secure, answers SERVFAIL with the
    /// EDE on Bogus, passes Insecure through without AD.
    pub async fn validate(&self, response: &Message, fetch: &dyn Fetch) -> Security {
        let _ = (response, fetch, &self.settings, &self.limits);
        Security::Indeterminate { reason: "validator under construction".into() }
    }
}
