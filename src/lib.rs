//! emission-auction: an electronic auction engine for emission-rights trading (排污权交易).
//!
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod auth;
pub mod board;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod fuzzing;
pub mod grpc;
pub mod journal;
pub mod metrics;
pub mod private;
pub mod recorders;
pub mod server;
pub mod service;

/// Types generated from `proto/emission_auction/v1/auction.proto`. Only `grpc` and the client
/// commands use them.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("emission_auction.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("emission_auction_descriptor");
}
