//! The one integration-test binary: data-driven clearing scenarios, property tests, and the
//! real gRPC server driven over loopback.

mod board;
mod cdp;
mod cli;
mod crash;
mod deposits;
mod english;
mod fuzz;
mod grpc;
mod journal;
mod loadgen;
mod nopanic;
mod outbox;
mod pipeline;
mod props;
mod recorders;
mod registry;
mod replay;
mod rng;
mod scenarios;
mod sealing;
mod security;
