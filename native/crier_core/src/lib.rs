//! Crier's engine: HTTP/1.1 and Server-Sent Events over tokio.
//!
//! The core knows nothing of the BEAM. It reports to its owners through the
//! [`reporter::Reporter`] trait, so `cargo test` drives it over real sockets with plain
//! channels while the NIF crate implements the trait with [`relay::Relay`]s.
//!
//! The path of one request: [`server`] accepts a socket and spawns a [`task`], which reads and
//! parses a head ([`http::request`]), opens an [`exchange`] on the connection's shared state
//! ([`connection::Connection`]) and hands the request to an owner
//! ([`reporter::Reporter::request`]). The owner's calls queue the response's bytes
//! ([`http::response`], [`write_queue`]); the task writes them until the response ends or the
//! client leaves, which it reports as one close ([`lifecycle`], [`report`]). `ARCHITECTURE.md`
//! at the repository root draws it.

pub mod cluster_order;
pub mod config;
pub mod connection;
mod exchange;
mod h2;
mod h2_watch;
pub mod http;
pub mod hub;
mod lifecycle;
pub mod membership;
pub mod relay;
pub mod report;
pub mod reporter;
mod request_body;
pub mod server;
pub mod shared;
pub mod sse;
pub mod stats;
mod task;
pub mod tls;
mod transport;
mod write_queue;

pub use bytes::Bytes;
