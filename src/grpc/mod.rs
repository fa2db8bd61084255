//! The gRPC layer, the only code that knows protobuf. It authenticates, validates and converts
//! requests, calls the [`Exchange`], and turns every error into a status with a reason code.
//!
//! Invariant: a malformed or forbidden request is rejected here or by the core before anything
//! changes, and never takes the server down.

mod auth;
pub mod convert;
mod services;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

pub use auth::Authenticator;
use services::{OperatorService, ResultsService, TradingService};

use crate::auth::Principals;
use crate::proto as pb;
use crate::service::Exchange;

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight calls.
pub async fn serve(
    listener: TcpListener,
    exchange: Arc<Exchange>,
    principals: Principals,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let auth = Authenticator::new(principals);
    let with_auth = |auth: &Authenticator| {
        let auth = auth.clone();
        move |req| auth.intercept(req)
    };
    let mut unhealthy = exchange.health();
    let operator =
        pb::auction_operator_server::AuctionOperatorServer::new(OperatorService { exchange: Arc::clone(&exchange) })
            .max_decoding_message_size(max_message_bytes);
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let trading = pb::trading_server::TradingServer::new(TradingService {
        exchange: Arc::clone(&exchange),
        stopping: stopping.clone(),
    })
    .max_decoding_message_size(max_message_bytes);
    let results = pb::results_server::ResultsServer::new(ResultsService { exchange, stopping })
        .max_decoding_message_size(max_message_bytes);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<pb::auction_operator_server::AuctionOperatorServer<OperatorService>>().await;
    health.set_serving::<pb::trading_server::TradingServer<TradingService>>().await;
    health.set_serving::<pb::results_server::ResultsServer<ResultsService>>().await;
    // The auction services stop serving when the exchange says it cannot (a failed auction
    // task, or the journal); results stay readable.
    tokio::spawn(async move {
        loop {
            let why = unhealthy.borrow_and_update().clone();
            match why {
                Some(why) => {
                    tracing::error!(why = %why, "reporting NOT_SERVING for the auction services");
                    health
                        .set_not_serving::<pb::auction_operator_server::AuctionOperatorServer<OperatorService>>()
                        .await;
                    health.set_not_serving::<pb::trading_server::TradingServer<TradingService>>().await;
                    // Also the server as a whole (the empty service name).
                    health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
                }
                None => {
                    health.set_serving::<pb::auction_operator_server::AuctionOperatorServer<OperatorService>>().await;
                    health.set_serving::<pb::trading_server::TradingServer<TradingService>>().await;
                    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
                }
            }
            if unhealthy.changed().await.is_err() {
                return;
            }
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        // Cannot fire on input: the descriptor set is compiled into the binary by build.rs.
        .expect("the compiled descriptor set is valid");

    Server::builder()
        .layer(tower::util::MapResponseLayer::new(oversize_is_resource_exhausted))
        .layer(crate::metrics::GrpcLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(InterceptedService::new(operator, with_auth(&auth)))
        .add_service(InterceptedService::new(trading, with_auth(&auth)))
        .add_service(InterceptedService::new(results, with_auth(&auth)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// tonic rejects a request over `max_decoding_message_size` with OUT_OF_RANGE; gRPC's own
/// guidance, and this API's contract, is RESOURCE_EXHAUSTED. The rejection happens before any
/// handler runs, so it is rewritten here, on the trailers-only response tonic sends for it.
fn oversize_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let oversize = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers.get("grpc-message").and_then(|m| m.to_str().ok()).is_some_and(|m| {
            m.contains("decoded%20message%20length%20too%20large") || m.contains("decoded message length too large")
        });
    if oversize {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}
