//! Process metrics in the Prometheus text format, served at `/metrics` on the board's HTTP
//! port: gRPC requests and their latency per RPC, bids accepted and refused by reason code,
//! journal batch sizes and fsync latency, auctions by phase, open watch streams, settlements
//! published and how long after their conclusion they were published.
//!
//! Everything lives in one global registry, so that the layers being measured need only a
//! one-line call and no handle threaded through them.
//!
//! Invariant: no metric carries a price, a quantity, a bidder or an auction id. Labels are RPC
//! names, reason codes, phases, statuses and stream kinds only. (Counts are global: while a
//! single sealed auction is the only one taking bids, the bid counters move with its bids, which
//! is why the port should be scraped from the trading centre's own network; see the README.)

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tonic_types::StatusExt as _;

use crate::domain::Reason;
use crate::engine::{Phase, SettlementStatus};
use crate::service::{AuctionFilter, Exchange};

/// The metric families, registered once.
struct Metrics {
    registry: Registry,
    grpc_requests: IntCounterVec,
    grpc_latency: HistogramVec,
    bids_accepted: IntCounterVec,
    bids_refused: IntCounterVec,
    journal_batch: HistogramVec,
    journal_fsync: HistogramVec,
    auctions: IntGaugeVec,
    watchers: IntGaugeVec,
    settlements: IntCounterVec,
    publish_lag: HistogramVec,
}

/// Latency buckets from 50 us to 10 s: a bid journaled with group commit takes a few hundred
/// microseconds to a few milliseconds on a virtual disk.
const LATENCY_BUCKETS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid histogram")
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new_custom(Some("emission_auction".into()), None).expect("valid prefix");
    let m = Metrics {
        grpc_requests: IntCounterVec::new(
            Opts::new("grpc_requests_total", "gRPC requests answered, by RPC and gRPC status code"),
            &["rpc", "code"],
        )
        .expect("valid counter"),
        grpc_latency: histogram(
            "grpc_request_duration_seconds",
            "Time from a gRPC request's arrival to its response headers, by RPC (streams: to the start of the stream)",
            LATENCY_BUCKETS,
            &["rpc"],
        ),
        bids_accepted: IntCounterVec::new(
            Opts::new("bids_accepted_total", "Bid requests accepted (PlaceBid, ReviseBid, WithdrawBid)"),
            &["rpc"],
        )
        .expect("valid counter"),
        bids_refused: IntCounterVec::new(
            Opts::new("bids_refused_total", "Bid requests refused, by the reason code of the refusal"),
            &["rpc", "reason"],
        )
        .expect("valid counter"),
        journal_batch: histogram(
            "journal_batch_records",
            "Records written and synced together by the journal's group commit",
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 8192.0],
            &[],
        ),
        journal_fsync: histogram(
            "journal_fsync_seconds",
            "Time the journal's store took to sync one batch (fdatasync on files)",
            LATENCY_BUCKETS,
            &[],
        ),
        auctions: IntGaugeVec::new(Opts::new("auctions", "Auctions known to the exchange, by phase"), &["phase"])
            .expect("valid gauge"),
        watchers: IntGaugeVec::new(
            Opts::new(
                "watchers",
                "Open streams: auction watches and settlement subscriptions over gRPC, board event streams",
            ),
            &["stream"],
        )
        .expect("valid gauge"),
        settlements: IntCounterVec::new(
            Opts::new("settlements_published_total", "Settlements recorded and published in this run, by status"),
            &["status"],
        )
        .expect("valid counter"),
        publish_lag: histogram(
            "settlement_publish_lag_seconds",
            "Time from an auction's conclusion to its settlement being recorded by every recorder and published",
            LATENCY_BUCKETS,
            &[],
        ),
        registry,
    };
    let collectors: [Box<dyn prometheus::core::Collector>; 10] = [
        Box::new(m.grpc_requests.clone()),
        Box::new(m.grpc_latency.clone()),
        Box::new(m.bids_accepted.clone()),
        Box::new(m.bids_refused.clone()),
        Box::new(m.journal_batch.clone()),
        Box::new(m.journal_fsync.clone()),
        Box::new(m.auctions.clone()),
        Box::new(m.watchers.clone()),
        Box::new(m.settlements.clone()),
        Box::new(m.publish_lag.clone()),
    ];
    for c in collectors {
        m.registry.register(c).expect("each metric is registered once");
    }
    m
});

/// The exposition, in the Prometheus text format (version 0.0.4). Auctions by phase are
/// counted now, from the exchange's snapshots.
pub fn render(exchange: &Exchange) -> String {
    let m = &*METRICS;
    let mut counts = [0i64; 5];
    for snapshot in exchange.list(&AuctionFilter::default()).unwrap_or_default() {
        counts[phase_index(snapshot.phase)] += 1;
    }
    for phase in [Phase::Scheduled, Phase::Open, Phase::Settled, Phase::Failed, Phase::Cancelled] {
        m.auctions.with_label_values(&[&phase.to_string()]).set(counts[phase_index(phase)]);
    }
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail on I/O; a metric family that fails to encode is a bug.
    TextEncoder::new().encode(&m.registry.gather(), &mut out).expect("metrics encode");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Scheduled => 0,
        Phase::Open => 1,
        Phase::Settled => 2,
        Phase::Failed => 3,
        Phase::Cancelled => 4,
    }
}

/// One journal batch of `records`, written and synced.
pub fn journal_batch(records: usize) {
    METRICS.journal_batch.with_label_values::<&str>(&[]).observe(records as f64);
}

/// One sync of the journal's store that took `elapsed`.
pub fn journal_fsync(elapsed: Duration) {
    METRICS.journal_fsync.with_label_values::<&str>(&[]).observe(elapsed.as_secs_f64());
}

/// A settlement was recorded and published `lag` after its auction concluded.
pub fn settlement_published(status: SettlementStatus, lag: Duration) {
    let status = match status {
        SettlementStatus::Settled => "settled",
        SettlementStatus::Failed => "failed",
        SettlementStatus::Cancelled => "cancelled",
    };
    METRICS.settlements.with_label_values(&[status]).inc();
    METRICS.publish_lag.with_label_values::<&str>(&[]).observe(lag.as_secs_f64());
}

/// Counts an open stream while it lives.
pub struct Watching(&'static str);

impl Watching {
    /// `stream` names the kind: "auction", "settlements" or "board".
    pub fn new(stream: &'static str) -> Watching {
        METRICS.watchers.with_label_values(&[stream]).inc();
        Watching(stream)
    }

    /// For a relayed gRPC stream, named by the reason it would end with when too slow.
    pub fn relay(too_slow: Reason) -> Watching {
        Watching::new(if too_slow == Reason::WatcherTooSlow { "auction" } else { "settlements" })
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        METRICS.watchers.with_label_values(&[self.0]).dec();
    }
}

/// A tower layer for the gRPC server: counts and times every request by RPC, and counts bid
/// requests as accepted or refused by reason code (read from the error's `ErrorInfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcLayer;

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// The RPC's method name from the request path, as a static label: only the API's own methods
/// get their name, so a client cannot create label values at will.
fn rpc_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "CreateAuction",
        "OpenAuction",
        "AdvanceRound",
        "CloseAuction",
        "CancelAuction",
        "GetAuction",
        "ListBids",
        "ListAuctions",
        "PlaceBid",
        "ReviseBid",
        "WithdrawBid",
        "WatchAuction",
        "ListMyBids",
        "GetSettlement",
        "SubscribeSettlements",
        "Check",
        "Watch",
        "ServerReflectionInfo",
    ];
    let method = path.rsplit('/').next().unwrap_or("");
    KNOWN.iter().find(|k| **k == method).copied().unwrap_or("other")
}

fn is_bid(rpc: &str) -> bool {
    matches!(rpc, "PlaceBid" | "ReviseBid" | "WithdrawBid")
}

fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Records one answered request. An error status travels in the response headers (gRPC's
/// trailers-only response); a success has none there, its status comes in the trailers.
fn observe(rpc: &'static str, headers: Option<&http::HeaderMap>, elapsed: Duration) {
    let m = &*METRICS;
    m.grpc_latency.with_label_values(&[rpc]).observe(elapsed.as_secs_f64());
    let status = headers.and_then(tonic::Status::from_header_map);
    let code = status.as_ref().map_or(tonic::Code::Ok, |s| s.code());
    m.grpc_requests.with_label_values(&[rpc, code_label(code)]).inc();
    if !is_bid(rpc) {
        return;
    }
    match status.filter(|s| s.code() != tonic::Code::Ok) {
        None => m.bids_accepted.with_label_values(&[rpc]).inc(),
        Some(status) => {
            // Only a known reason code becomes a label; anything else (a transport error
            // without ErrorInfo) is counted under the gRPC code.
            let reason = status
                .get_details_error_info()
                .and_then(|info| Reason::from_code(&info.reason))
                .map_or(code_label(status.code()), Reason::code);
            m.bids_refused.with_label_values(&[rpc, reason]).inc();
        }
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let rpc = rpc_label(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            observe(rpc, response.as_ref().ok().map(http::Response::headers), started.elapsed());
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_labels_are_the_api_methods_only() {
        assert_eq!(rpc_label("/emission_auction.v1.Trading/PlaceBid"), "PlaceBid");
        assert_eq!(rpc_label("/grpc.health.v1.Health/Check"), "Check");
        assert_eq!(rpc_label("/x.Y/AnythingAClientMakesUp"), "other");
    }

    #[test]
    fn a_refusal_is_counted_under_its_reason() {
        let status = crate::grpc::status::status(Reason::BelowFloor, "below the floor", vec![], None);
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        let before = METRICS.bids_refused.with_label_values(&["PlaceBid", "BELOW_FLOOR"]).get();
        observe("PlaceBid", Some(&headers), Duration::from_micros(300));
        assert_eq!(METRICS.bids_refused.with_label_values(&["PlaceBid", "BELOW_FLOOR"]).get(), before + 1);
    }
}
