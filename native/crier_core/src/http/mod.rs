//! HTTP/1.1 as RFC 9112 frames it: request heads, bodies, response heads and chunked framing.
//!
//! Parsing is separate from I/O: every function here works on byte slices, so the rules are
//! tested without sockets, and `conn` only moves bytes.

pub mod body;
pub mod chunked;
pub mod error;
pub mod request;
pub mod response;

pub use error::HttpError;
pub use request::{BodyKind, RequestHead, Version};
