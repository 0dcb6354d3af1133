//! The root key trust anchor sentinel (RFC 8509): a client learns which
//! root keys its resolver trusts by asking for names whose leftmost label
//! is `root-key-sentinel-is-ta-<key tag>` or `root-key-sentinel-not-ta-<key
//! tag>` and seeing which ones fail. Unbound and Knot Resolver answer them
//! the same way.

use hickory_proto::rr::{Name, RecordType};

/// The sentinel a question carries, with the key tag it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sentinel {
    /// `root-key-sentinel-is-ta-DDDDD`: fails unless the key is trusted.
    IsTa(u16),
    /// `root-key-sentinel-not-ta-DDDDD`: fails if the key is trusted.
    NotTa(u16),
}

impl Sentinel {
    /// The sentinel in `name`'s leftmost label, for an address question
    /// (A or AAAA, §3.2); case does not matter, the key tag is five decimal
    /// digits (§2).
    pub(crate) fn of(name: &Name, qtype: RecordType) -> Option<Sentinel> {
        if !matches!(qtype, RecordType::A | RecordType::AAAA) {
            return None;
        }
        let label = name.iter().next()?;
        let after = |prefix: &str| {
            let head = label.get(..prefix.len())?;
            head.eq_ignore_ascii_case(prefix.as_bytes())
                .then(|| &label[prefix.len()..])
        };
        let (make, digits): (fn(u16) -> Sentinel, &[u8]) =
            if let Some(digits) = after("root-key-sentinel-is-ta-") {
                (Sentinel::IsTa, digits)
            } else if let Some(digits) = after("root-key-sentinel-not-ta-") {
                (Sentinel::NotTa, digits)
            } else {
                return None;
            };
        if digits.len() != 5 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok().map(make)
    }

    /// Why a secure answer to this sentinel is SERVFAIL, given the key tags
    /// of the root's trust anchors; `None`: the answer is given as it is.
    /// Without a root anchor (islands of trust only) there is nothing to
    /// report, and nothing fails.
    pub(crate) fn refusal(self, root_key_tags: &[u16]) -> Option<String> {
        if root_key_tags.is_empty() {
            return None;
        }
        match self {
            Sentinel::IsTa(tag) if !root_key_tags.contains(&tag) => Some(format!(
                "root-key-sentinel: key {tag} is not a trust anchor of the root"
            )),
            Sentinel::NotTa(tag) if root_key_tags.contains(&tag) => Some(format!(
                "root-key-sentinel: key {tag} is a trust anchor of the root"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn only_address_questions_with_a_five_digit_tag_are_sentinels() {
        let is = name("Root-Key-Sentinel-IS-TA-20326.example.");
        assert_eq!(
            Sentinel::of(&is, RecordType::A),
            Some(Sentinel::IsTa(20326))
        );
        assert_eq!(
            Sentinel::of(&is, RecordType::AAAA),
            Some(Sentinel::IsTa(20326))
        );
        assert_eq!(Sentinel::of(&is, RecordType::TXT), None);
        let not = name("root-key-sentinel-not-ta-00042.example.");
        assert_eq!(Sentinel::of(&not, RecordType::A), Some(Sentinel::NotTa(42)));
        for other in [
            "root-key-sentinel-is-ta-2032.example.",
            "root-key-sentinel-is-ta-203260.example.",
            "root-key-sentinel-is-ta-99999.example.",
            "root-key-sentinel-is-ta-2032x.example.",
            "www.root-key-sentinel-is-ta-20326.example.",
            "kskroll-sentinel-is-ta-4f66.example.",
        ] {
            assert_eq!(Sentinel::of(&name(other), RecordType::A), None, "{other}");
        }
    }

    #[test]
    fn is_ta_fails_for_an_untrusted_key_and_not_ta_for_a_trusted_one() {
        let trusted = [20326, 38696];
        assert_eq!(Sentinel::IsTa(20326).refusal(&trusted), None);
        assert!(Sentinel::IsTa(12345).refusal(&trusted).is_some());
        assert!(Sentinel::NotTa(20326).refusal(&trusted).is_some());
        assert_eq!(Sentinel::NotTa(12345).refusal(&trusted), None);
        // No root anchor: nothing fails.
        assert_eq!(Sentinel::IsTa(20326).refusal(&[]), None);
        assert_eq!(Sentinel::NotTa(20326).refusal(&[]), None);
    }
}
