//! Work budgets of one `validate` call (KeyTrap, CVE-2023-50387; NSEC3
//! closest-encloser hashing, CVE-2023-50868).

use crate::config::Limits;

/// What one `validate` call may still spend. Past a cap the answer is bogus
/// (EDE 6) with a reason naming the cap.
#[derive(Debug, Clone)]
pub struct Budget {
    verifications: u32,
    nsec3_hashes: u32,
    pub(crate) keys_per_tag: usize,
    pub(crate) rrsigs_per_rrset: usize,
    pub(crate) nsec3_iterations: u16,
}

/// A budget ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exhausted(pub(crate) &'static str);

impl Budget {
    pub fn new(limits: &Limits) -> Self {
        Self {
            verifications: limits.dnssec_max_verifications,
            nsec3_hashes: limits.dnssec_max_nsec3_hashes,
            keys_per_tag: limits.dnssec_max_keys_per_tag,
            rrsigs_per_rrset: limits.dnssec_max_rrsigs_per_rrset,
            nsec3_iterations: limits.dnssec_max_nsec3_iterations,
        }
    }

    /// One signature verification.
    pub(crate) fn verification(&mut self) -> Result<(), Exhausted> {
        self.verifications = self.verifications.checked_sub(1).ok_or(Exhausted(
            "too many signature verifications for one answer (limit dnssec_max_verifications; KeyTrap, CVE-2023-50387)",
        ))?;
        Ok(())
    }

    /// One NSEC3 hash computation.
    pub(crate) fn nsec3_hash(&mut self) -> Result<(), Exhausted> {
        self.nsec3_hashes = self.nsec3_hashes.checked_sub(1).ok_or(Exhausted(
            "too many NSEC3 hash computations for one answer (limit dnssec_max_nsec3_hashes; CVE-2023-50868)",
        ))?;
        Ok(())
    }
}
