//! Crier's engine: HTTP/1.1 and Server-Sent Events over tokio.
//!
//! The core knows nothing of the BEAM. It reports to its owner through the [`notify::Notify`]
//! trait, so `cargo test` drives it over real sockets with plain channels while the NIF crate
//! implements the trait with `enif_send`.
//!
//! The path of one request: [`server`] accepts a socket and spawns a [`conn`] task, which reads
//! and parses a head ([`http::request`]), hands it to the owner ([`notify::Notify::request`]),
//! and then writes what the owner queues on the shared [`stream::Stream`] until the response
//! ends or the client leaves, which it reports as one close ([`notify::Notify::closed`]).

pub mod cluster_order;
pub mod config;
pub mod conn;
pub mod http;
pub mod hub;
pub mod notify;
pub mod server;
pub mod sse;
pub mod stats;
pub mod stream;

pub use bytes::Bytes;
