//! The one integration-test binary: data-driven clearing scenarios, property tests, and the
//! real gRPC server driven over loopback.

mod cli;
mod crash;
mod english;
mod grpc;
mod journal;
mod nopanic;
mod pipeline;
mod props;
mod recorders;
mod replay;
mod rng;
mod scenarios;
mod security;
