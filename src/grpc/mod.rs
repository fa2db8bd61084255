//! The gRPC layer, the only code that knows protobuf. It authenticates, validates and converts
//! requests, calls the [`Exchange`], and turns every error into a status with a reason code.
//! It also owns the transport's defences: TLS (optionally mutual), per-principal rate limits on
//! changing calls, a cap on streams per connection and on connections, an idle timeout and
//! HTTP/2 keepalive.
//!
//! Invariant: a malformed or forbidden request is rejected here or by the core before anything
//! changes, and never takes the server down.

mod auth;
pub mod conn;
pub mod convert;
pub mod limits;
mod services;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Server, ServerTlsConfig};

pub use auth::Authenticator;
use services::{OperatorService, ResultsService, TradingService};

use crate::auth::PrincipalStore;
use crate::config::Limits;
use crate::domain::Reason;
use crate::proto as pb;
use crate::service::Exchange;

/// How the API is served, beyond what it serves.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Requests larger than this get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// TLS, or plain text (h2c) when `None`.
    pub tls: Option<ServerTlsConfig>,
    pub limits: Limits,
}

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight calls.
pub async fn serve(
    listener: TcpListener,
    exchange: Arc<Exchange>,
    principals: Arc<PrincipalStore>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let ServeOptions { max_message_bytes, tls, limits } = options;
    let auth = Authenticator::new(principals, Arc::new(limits::RateLimiter::new(limits.rate)));
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

    let mut builder = Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let incoming = conn::incoming(listener, limits.max_connections, limits.idle_timeout);
    builder
        .layer(conn::InFlightLayer)
        .layer(tower::util::MapResponseLayer::new(rewrite_transport_status))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(InterceptedService::new(operator, with_auth(&auth)))
        .add_service(InterceptedService::new(trading, with_auth(&auth)))
        .add_service(InterceptedService::new(results, with_auth(&auth)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Statuses tonic itself sends before any handler runs, rewritten to this API's contract, on
/// the trailers-only response tonic sends for them:
/// - a request over `max_decoding_message_size` is OUT_OF_RANGE in tonic; gRPC's own guidance,
///   and this API's contract, is RESOURCE_EXHAUSTED;
/// - a request that does not decode (invalid UTF-8, a wrong wire type, a truncated message or
///   frame) is INTERNAL in tonic, but the fault is the caller's: INVALID_ARGUMENT with
///   `MALFORMED_MESSAGE` in an ErrorInfo.
fn rewrite_transport_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let message = || headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("");
    let status = headers.get("grpc-status").and_then(|s| s.to_str().ok()).unwrap_or("");
    let oversize = status == "11"
        && (message().contains("decoded%20message%20length%20too%20large")
            || message().contains("decoded message length too large"));
    let undecodable = status == "13"
        && [
            "failed%20to%20decode%20Protobuf%20message",
            "failed to decode Protobuf message",
            "Unexpected%20EOF%20decoding%20stream",
            "Unexpected EOF decoding stream",
        ]
        .iter()
        .any(|m| message().contains(m));
    if oversize {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    } else if undecodable {
        let why = tonic::Status::from_header_map(headers).map(|s| s.message().to_owned()).unwrap_or_default();
        let status = status::status(Reason::MalformedMessage, why, Vec::new(), None);
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        if status.add_header(headers).is_err() {
            headers.insert("grpc-status", http::HeaderValue::from_static("3"));
        }
    }
    response
}
