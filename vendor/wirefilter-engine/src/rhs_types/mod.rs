mod bool;
mod bytes;
mod int;
mod ip;
mod regex;

pub use self::{
    bool::UninhabitedBool,
    bytes::Bytes,
    ip::{ExplicitIpRange, IpRange},
    regex::{Error as RegexError, Regex},
};
