//! `lain-http`: the Docker Registry HTTP API V2 / OCI Distribution protocol on top of
//! `lain-engine`.
//!
//! For now it serves the API's base endpoint, `/v2/`, and answers everything else with
//! the spec's JSON error body; the full API is built on this skeleton next.

mod errors;
mod server;

pub use server::serve;
