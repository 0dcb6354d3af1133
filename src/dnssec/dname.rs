//! DNAME (RFC 6672) as the iterator follows it and the validator judges it:
//! hickory-proto carries DNAME as unknown RDATA, whose target is one
//! uncompressed name (RFC 6672 §2.5), read here.

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

/// The target of a DNAME record; None for any other record, or RDATA that
/// is not one whole name.
pub fn target(record: &Record) -> Option<Name> {
    if record.record_type() != RecordType::DNAME {
        return None;
    }
    let RData::Unknown { rdata, .. } = &record.data else {
        return None;
    };
    let mut decoder = hickory_proto::serialize::binary::BinDecoder::new(&rdata.anything);
    let name = Name::read(&mut decoder).ok()?;
    decoder.is_empty().then_some(name)
}

/// Why a DNAME substitution gives no name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Substitution {
    /// `name` is not below the DNAME's owner.
    NotBelow,
    /// The new name would be longer than 255 octets: YXDOMAIN (RFC 6672 §2.2).
    TooLong,
}

/// `name` with the DNAME's `owner` suffix replaced by `target` (RFC 6672
/// §2.2): the target of the CNAME a server synthesises for `name`.
pub fn substitute(name: &Name, owner: &Name, target: &Name) -> Result<Name, Substitution> {
    if !owner.zone_of(name) || name.num_labels() <= owner.num_labels() {
        return Err(Substitution::NotBelow);
    }
    let keep = usize::from(name.num_labels() - owner.num_labels());
    let prefix = Name::from_labels(name.iter().take(keep)).map_err(|_| Substitution::TooLong)?;
    prefix
        .append_domain(target)
        .map_err(|_| Substitution::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_suffix_is_replaced_unless_it_grows_too_long() {
        use crate::testing::name;
        let (owner, target) = (name("old.test."), name("new.example."));
        let got = substitute(&name("a.b.old.test."), &owner, &target);
        assert_eq!(got, Ok(name("a.b.new.example.")));
        // The owner itself is not redirected, nor a name elsewhere.
        for other in ["old.test.", "x.other.test."] {
            let got = substitute(&name(other), &owner, &target);
            assert_eq!(got, Err(Substitution::NotBelow), "{other}");
        }
        let label = "a".repeat(60);
        let long = name(&format!("{label}.{label}.{label}.old.test."));
        let long_target = name(&format!("{label}.{label}.example."));
        let got = substitute(&long, &owner, &long_target);
        assert_eq!(got, Err(Substitution::TooLong), "past 255 octets");
    }
}
