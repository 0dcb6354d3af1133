//! The wire protocol: pure functions, no I/O, no async. This is the fuzz surface.
//!
//! - [`parse`]: query bytes → [`Request`] (or a [`Rejection`] saying how to answer);
//! - [`answer`]: upstream bytes → [`Answer`], checked and indexed for serving
//!   (stored as they came when `verbatim` finds them canonical already);
//! - [`build`]: synthesized responses and our OPT record;
//! - [`cookie`]: the server cookie a client's COOKIE option gets back (RFC 7873, RFC 9018);
//! - [`wire`]: the byte-level helpers under all three.

pub mod answer;
pub mod build;
pub mod cookie;
pub mod parse;
mod verbatim;
pub mod wire;

pub use answer::{Answer, AnswerError, AnswerKind};
pub use build::{EdnsOut, ResponseWriter, Section};
pub use parse::{parse_query, EdnsInfo, Rejection, Request};
