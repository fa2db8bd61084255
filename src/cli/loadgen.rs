//! `emission-auction loadgen`: the project's own load generator for the network path.
//!
//! It drives `Trading.PlaceBid` (unary) or `Trading.PlaceBids` (streams) against a running
//! server (`--server`, with existing tokens) or against one it starts itself on loopback with a
//! temporary data directory and its own principals, in one of two modes:
//! - closed loop (`--mode closed`): a fixed number of requests in flight, each issuing the next
//!   as soon as the previous one completes; latency is measured from the send;
//! - fixed rate (`--mode rate --rate R`): sends are scheduled at fixed intervals whatever the
//!   server does, and latency is measured from the intended send time, so a stalled server
//!   shows in the percentiles instead of slowing the generator down (no coordinated omission).
//!
//! In the same run it measures two ceilings: the same closed-loop load against the health
//! `Check` (what the transport alone gives on this machine) and the disk's raw fdatasync rate
//! (4 KiB written and synced in a loop). It prints a table and can write the same as JSON.
//!
//! Latencies go into HDR histograms in microseconds. The generator never asserts a speed; the
//! integration test checks counts and the report's shape only.
//!
//! It must never send traffic anywhere but where `--server` points, or its own loopback
//! server, and every loop is bounded by `--duration` and `--requests`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::auth::{Principal, Principals, Role};
use crate::config::Config;
use crate::domain::{CreditCode, Price, Timestamp};
use crate::grpc::convert::to_timestamp;
use crate::grpc::limits::RateLimit;
use crate::journal::SyncPolicy;
use crate::proto as pb;
use crate::proto::trading_client::TradingClient;
use crate::service::clock::{Clock, SystemClock};

use super::client::request_id;

/// How long a phase may overrun its deadline while it waits for replies still in flight.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Latencies above this (in microseconds) are recorded as this.
const MAX_LATENCY_US: u64 = 60_000_000;

/// The size of one write in the fdatasync ceiling, as a journal batch of a few records.
const SYNC_WRITE_BYTES: usize = 4096;

#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// A running server's URL. Without it, a server is started on 127.0.0.1 with a temporary
    /// data directory and its own operator and bidders, with no per-principal rate limit. A
    /// running server's limits apply: raise `limits.rate_per_second`, `rate_burst` and
    /// `max_streams_per_connection` in its configuration for a load test.
    #[arg(long)]
    pub server: Option<String>,
    /// With --server: an operator token, to create and open the auctions (not needed with
    /// --auction).
    #[arg(long, requires = "server")]
    pub operator_token: Option<String>,
    /// With --server: a file of bidder tokens, one per line (`#` comments and blank lines
    /// skipped); each is one bidder.
    #[arg(long, requires = "server")]
    pub bidder_tokens: Option<PathBuf>,
    /// With --server: bid in these existing open auctions instead of creating new ones
    /// (repeat the flag for several).
    #[arg(long = "auction", requires = "server")]
    pub auction: Vec<String>,
    /// Unary PlaceBid, or the PlaceBids stream.
    #[arg(long, value_enum, default_value = "unary")]
    pub rpc: RpcArg,
    /// Closed loop (a fixed number in flight) or a fixed rate (open loop).
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: ModeArg,
    /// Requests per second in --mode rate, over the whole run.
    #[arg(long, required_if_eq("mode", "rate"))]
    pub rate: Option<f64>,
    /// HTTP/2 connections to the server.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight in all, shared evenly among connections (unary) or streams. In
    /// --mode rate it only bounds how many may be outstanding.
    #[arg(long, default_value_t = 128)]
    pub in_flight: usize,
    /// PlaceBids streams (--rpc stream); each bids as one bidder.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Stop after this many requests in each load (bids, then health checks), if sooner.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Bidders (self-started server); requests go round-robin over them.
    #[arg(long, default_value_t = 64)]
    pub bidders: usize,
    /// Auctions to create; requests go round-robin over them. One hot auction by default.
    #[arg(long, default_value_t = 1)]
    pub auctions: usize,
    /// Bids' prices spread over this many fen above the floor.
    #[arg(long, default_value_t = 2000)]
    pub price_levels: u32,
    /// The self-started server's journal: synced before each acknowledgement (durable), or
    /// never (to see what durability costs).
    #[arg(long, value_enum, default_value = "every-batch")]
    pub journal_sync: JournalSyncArg,
    /// Worker threads of the self-started server's runtime (the generator has its own).
    #[arg(long)]
    pub server_threads: Option<usize>,
    /// Skip the health-check ceiling.
    #[arg(long)]
    pub no_ceiling: bool,
    /// Seconds of raw 4 KiB write + fdatasync for the disk ceiling; 0 skips it.
    #[arg(long, default_value_t = 1.0)]
    pub sync_seconds: f64,
    /// Where to run the fdatasync ceiling: the self-started server's data directory by default,
    /// else the system's temporary directory.
    #[arg(long)]
    pub sync_dir: Option<PathBuf>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcArg {
    /// `Trading.PlaceBid`, one request per call.
    Unary,
    /// `Trading.PlaceBids`, many bids on each bidirectional stream.
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeArg {
    /// Each request in flight issues the next when it completes.
    Closed,
    /// Requests are sent on a fixed schedule; latency counts from the intended send time.
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalSyncArg {
    EveryBatch,
    Never,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("{0}")]
    Usage(String),
    #[error("could not start the server: {0}")]
    Server(String),
    #[error("could not connect to {addr}: {source}")]
    Connect { addr: String, source: tonic::transport::Error },
    #[error("{what}: {status}")]
    Setup { what: &'static str, status: Box<tonic::Status> },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a phase did not finish within {0:?} of its deadline")]
    Stalled(Duration),
}

/// Everything one run measured; printed as a table and written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run started (UTC).
    pub date: String,
    pub machine: Machine,
    pub config: RunConfig,
    /// The bids: PlaceBid or PlaceBids.
    pub bids: Load,
    /// The same closed-loop load against `grpc.health.v1.Health/Check`.
    pub health_ceiling: Option<Load>,
    pub fdatasync_ceiling: Option<SyncRate>,
    pub ratios: Ratios,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub load_average: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// "self-started" or the URL given.
    pub server: String,
    pub journal_sync: Option<JournalSyncArg>,
    pub rpc: RpcArg,
    pub mode: ModeArg,
    pub rate: Option<f64>,
    pub connections: usize,
    pub in_flight: usize,
    pub streams: Option<usize>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub requests: Option<u64>,
    /// Bidders the load went round-robin over (tokens given or principals created).
    pub bidders: usize,
    /// The auctions bid in, created by this run or given with --auction.
    pub auction_ids: Vec<String>,
}

/// One load's outcome. `sent`, `accepted` and `errors` count the whole load, warm-up included;
/// `measured`, the throughput and the latencies only what completed inside the measured
/// window.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub name: String,
    pub sent: u64,
    pub accepted: u64,
    pub errors: u64,
    /// Errors by reason code (or gRPC status code name when there is no reason).
    pub error_kinds: BTreeMap<String, u64>,
    pub measured: u64,
    pub seconds: f64,
    pub per_second: f64,
    /// Closed loop: from the send. Rate: from the intended send time.
    pub latency_us: Percentiles,
    /// Rate mode only: from the actual send, for comparison (what a generator with coordinated
    /// omission would report).
    pub service_time_us: Option<Percentiles>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncRate {
    pub dir: String,
    pub write_bytes: usize,
    pub syncs: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub latency_us: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Bids per second over health checks per second.
    pub bids_to_health: Option<f64>,
    /// Bids per second over raw fdatasyncs per second: how many bids share one sync's cost.
    pub bids_per_fdatasync: Option<f64>,
}

/// The command: run, print the table, write the JSON.
pub async fn main(args: LoadgenArgs) -> Result<(), Box<dyn std::error::Error>> {
    let report = run(&args).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(table(&report).as_bytes())?;
    if let Some(path) = &args.json {
        writeln!(out, "report written to {}", path.display())?;
    }
    Ok(())
}

/// Runs the loads and the ceilings and returns the report, also written to `--json` if given.
pub async fn run(args: &LoadgenArgs) -> Result<Report, LoadgenError> {
    check(args)?;
    let date = SystemClock.now().to_string();
    let target = Target::prepare(args).await?;
    let plan = Plan::from(args);

    let bids = match args.rpc {
        RpcArg::Unary => unary_load(&plan, &target, Call::PlaceBid).await?,
        RpcArg::Stream => stream_load(&plan, &target).await?,
    };
    let health_ceiling = if args.no_ceiling {
        None
    } else {
        let closed = Plan { mode: Mode::Closed, ..plan };
        Some(unary_load(&closed, &target, Call::HealthCheck).await?)
    };
    let sync_dir = args.sync_dir.clone().or_else(|| target.data_dir()).unwrap_or_else(std::env::temp_dir);
    let fdatasync_ceiling = if args.sync_seconds > 0.0 {
        let seconds = Duration::from_secs_f64(args.sync_seconds);
        Some(tokio::task::spawn_blocking(move || sync_rate(&sync_dir, seconds)).await.expect("fdatasync task")?)
    } else {
        None
    };
    let server = target.describe();
    let (auction_bidders, auction_ids) = (target.work.bidders.len(), target.work.auctions.clone());
    target.stop().await?;

    let ratios = Ratios {
        bids_to_health: health_ceiling.as_ref().and_then(|h| ratio(bids.per_second, h.per_second)),
        bids_per_fdatasync: fdatasync_ceiling.as_ref().and_then(|s| ratio(bids.per_second, s.per_second)),
    };
    let report = Report {
        date,
        machine: machine(),
        config: RunConfig {
            server,
            journal_sync: args.server.is_none().then_some(args.journal_sync),
            rpc: args.rpc,
            mode: args.mode,
            rate: args.rate,
            connections: args.connections,
            in_flight: args.in_flight,
            streams: (args.rpc == RpcArg::Stream).then_some(args.streams),
            duration_s: args.duration,
            warmup_s: args.warmup,
            requests: args.requests,
            bidders: auction_bidders,
            auction_ids,
        },
        bids,
        health_ceiling,
        fdatasync_ceiling,
        ratios,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("a report always serializes");
        std::fs::write(path, text + "\n")?;
    }
    Ok(report)
}

fn check(args: &LoadgenArgs) -> Result<(), LoadgenError> {
    let usage = |s: &str| Err(LoadgenError::Usage(s.to_owned()));
    if args.connections == 0 || args.in_flight == 0 || args.streams == 0 || args.auctions == 0 {
        return usage("--connections, --in-flight, --streams and --auctions must be at least 1");
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.warmup.is_finite() && args.warmup >= 0.0) {
        return usage("--duration must be positive and --warmup not negative");
    }
    if !(args.sync_seconds.is_finite() && args.sync_seconds >= 0.0) {
        return usage("--sync-seconds must not be negative");
    }
    if args.mode == ModeArg::Rate && !args.rate.is_some_and(|r| r.is_finite() && r > 0.0) {
        return usage("--mode rate needs a positive --rate");
    }
    if args.price_levels == 0 {
        return usage("--price-levels must be at least 1");
    }
    match &args.server {
        None if args.bidders == 0 => usage("--bidders must be at least 1"),
        Some(_) if args.bidder_tokens.is_none() => usage("--server needs --bidder-tokens"),
        Some(_) if args.auction.is_empty() && args.operator_token.is_none() => {
            usage("--server needs --auction or an --operator-token to create auctions")
        }
        _ => Ok(()),
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// What one load does, in numbers; the same for bids and the health ceiling.
#[derive(Debug, Clone, Copy)]
struct Plan {
    mode: Mode,
    connections: usize,
    in_flight: usize,
    streams: usize,
    warmup: Duration,
    duration: Duration,
    cap: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Closed,
    /// Requests per second over the whole load.
    Rate(f64),
}

impl From<&LoadgenArgs> for Plan {
    fn from(args: &LoadgenArgs) -> Plan {
        Plan {
            mode: match args.mode {
                ModeArg::Closed => Mode::Closed,
                ModeArg::Rate => Mode::Rate(args.rate.unwrap_or(1.0)),
            },
            connections: args.connections,
            in_flight: args.in_flight,
            streams: args.streams,
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
            cap: args.requests,
        }
    }
}

/// The server under load: where it is, whether this run started it, and the work to send it.
struct Target {
    addr: String,
    work: Arc<Workload>,
    hosted: Option<Hosted>,
}

/// A server this run started: its own runtime on its own threads, so that the generator and the
/// server are scheduled as two processes would be.
struct Hosted {
    dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl Target {
    async fn prepare(args: &LoadgenArgs) -> Result<Target, LoadgenError> {
        let (addr, operator, bidder_tokens, hosted) = match &args.server {
            Some(url) => {
                let path = args.bidder_tokens.as_deref().expect("checked");
                let tokens = read_tokens(path)?;
                if tokens.is_empty() {
                    return Err(LoadgenError::Usage(format!("{}: no bidder tokens", path.display())));
                }
                (url.clone(), args.operator_token.clone(), tokens, None)
            }
            None => {
                let (addr, operator, bidders, hosted) = host(args).await?;
                (addr, Some(operator), bidders, Some(hosted))
            }
        };
        let mut channels = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            channels.push(connect(&addr).await?);
        }
        let bidders = bidder_tokens.iter().map(|t| bearer(t)).collect::<Result<Vec<_>, _>>()?;
        let auctions = if args.auction.is_empty() {
            let token = bearer(operator.as_deref().expect("checked"))?;
            let mut ids = Vec::new();
            for _ in 0..args.auctions {
                ids.push(create_auction(&channels[0], &token).await?);
            }
            ids
        } else {
            args.auction.clone()
        };
        // Every auction is priced from the first one's floor; the generator's own auctions all
        // have the same floor.
        let mut trading = TradingClient::new(channels[0].clone());
        let mut get = Request::new(pb::GetAuctionRequest { auction_id: auctions[0].clone() });
        get.metadata_mut().insert("authorization", bidders[0].clone());
        let auction = trading
            .get_auction(get)
            .await
            .map_err(|s| LoadgenError::Setup { what: "get auction", status: Box::new(s) })?
            .into_inner();
        let floor: Price = auction
            .floor_price
            .parse()
            .map_err(|_| LoadgenError::Usage(format!("auction floor {:?} is not a price", auction.floor_price)))?;
        let prices = (0..i64::from(args.price_levels))
            .map_while(|l| Price::from_units(floor.units() + l).map(|p| p.to_string()))
            .collect();
        let mut tag = [0u8; 6];
        getrandom::fill(&mut tag).expect("the operating system's random source");
        let work = Workload { channels, bidders, auctions, prices, run_tag: hex::encode(tag) };
        Ok(Target { addr, work: Arc::new(work), hosted })
    }

    fn data_dir(&self) -> Option<PathBuf> {
        self.hosted.as_ref().map(|h| h.dir.path().to_owned())
    }

    fn describe(&self) -> String {
        match &self.hosted {
            Some(_) => format!("self-started on {}", self.addr),
            None => self.addr.clone(),
        }
    }

    async fn stop(self) -> Result<(), LoadgenError> {
        // Hang up first: the server drains open connections on shutdown.
        drop(self.work);
        if let Some(hosted) = self.hosted {
            let _ = hosted.stop.send(());
            let thread = hosted.thread;
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("join task")
                .map_err(|_| LoadgenError::Server("the server thread panicked".into()))?
                .map_err(LoadgenError::Server)?;
            drop(hosted.dir);
        }
        Ok(())
    }
}

fn read_tokens(path: &Path) -> Result<Vec<String>, LoadgenError> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect())
}

fn bearer(token: &str) -> Result<MetadataValue<Ascii>, LoadgenError> {
    format!("Bearer {token}").parse().map_err(|_| LoadgenError::Usage("tokens must be printable ASCII".into()))
}

async fn connect(addr: &str) -> Result<Channel, LoadgenError> {
    let endpoint = Channel::from_shared(addr.to_owned())
        .map_err(|_| LoadgenError::Usage(format!("server address {addr:?} is not a valid URI")))?;
    // Small requests: send them at once rather than waiting to coalesce.
    endpoint.tcp_nodelay(true).connect().await.map_err(|source| LoadgenError::Connect { addr: addr.to_owned(), source })
}

/// Starts a server on 127.0.0.1:0 in its own runtime with an operator and `--bidders` bidders;
/// returns its URL and their tokens.
async fn host(args: &LoadgenArgs) -> Result<(String, String, Vec<String>, Hosted), LoadgenError> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.set_data_dir(dir.path().to_owned());
    config.journal_sync = match args.journal_sync {
        JournalSyncArg::EveryBatch => SyncPolicy::EveryBatch,
        JournalSyncArg::Never => SyncPolicy::Never,
    };
    // The generator's bidders are machines, not people: no per-principal rate limit, and
    // enough streams on one connection for every request in flight.
    config.limits.rate = RateLimit { rate_per_second: 1e12, burst: u32::MAX };
    config.limits.max_streams_per_connection =
        u32::try_from(args.in_flight.div_ceil(args.connections).max(args.streams) + 16).unwrap_or(u32::MAX);
    let server_error = |e: &dyn std::fmt::Display| LoadgenError::Server(e.to_string());
    let mut principals = Principals::default();
    let operator = principals
        .add(Principal { name: "loadgen-operator".into(), role: Role::Operator, enterprise: None })
        .map_err(|e| server_error(&e))?;
    let mut bidders = Vec::with_capacity(args.bidders);
    for i in 0..args.bidders {
        let code = CreditCode::with_check_digit(&format!("9114010{i:010}")).expect("a valid credit code");
        bidders.push(
            principals
                .add(Principal { name: format!("loadgen-bidder-{i}"), role: Role::Bidder, enterprise: Some(code) })
                .map_err(|e| server_error(&e))?,
        );
    }
    principals.save(&config.principals_file).map_err(|e| server_error(&e))?;

    let threads = args.server_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let (stop, stopped) = oneshot::channel::<()>();
    let (bound, listening) = oneshot::channel::<Result<std::net::SocketAddr, String>>();
    let thread = std::thread::Builder::new().name("loadgen-server".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("loadgen-server-worker")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let started = async {
                let parts = crate::server::assemble(&config).await.map_err(|e| e.to_string())?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                Ok::<_, String>((parts, listener, addr))
            }
            .await;
            let (parts, listener) = match started {
                Ok((parts, listener, addr)) => {
                    let _ = bound.send(Ok(addr));
                    (parts, listener)
                }
                Err(e) => {
                    let _ = bound.send(Err(e.clone()));
                    return Err(e);
                }
            };
            crate::server::run(parts, listener, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| e.to_string())
        })
    })?;
    let addr = match listening.await {
        Ok(Ok(addr)) => addr,
        Ok(Err(e)) => return Err(LoadgenError::Server(e)),
        Err(_) => return Err(LoadgenError::Server("the server thread ended before listening".into())),
    };
    Ok((format!("http://{addr}"), operator, bidders, Hosted { dir, stop, thread }))
}

/// Creates and opens one sealed uniform-price reserve auction large enough that no bid of the
/// run is ever refused for quantity: 9,000,000 t in 1 t units, no per-bidder cap, no band cap,
/// closing in 30 days.
async fn create_auction(channel: &Channel, operator: &MetadataValue<Ascii>) -> Result<String, LoadgenError> {
    let now = SystemClock.now();
    let closes = Timestamp::from_micros(now.as_micros() + 30 * 86_400 * 1_000_000);
    let mut tag = [0u8; 6];
    getrandom::fill(&mut tag).expect("the operating system's random source");
    let create = pb::CreateAuctionRequest {
        request_id: request_id(),
        lot: Some(pb::Lot {
            lot_id: format!("LOADGEN-{}", hex::encode_upper(tag)),
            pollutant: pb::Pollutant::So2 as i32,
            quantity: "9000000.000".into(),
            fill_unit: "1.000".into(),
            seller: CreditCode::with_check_digit("12140000MB0CENTRE").expect("centre code").to_string(),
            origin: pb::LotOrigin::GovernmentReserve as i32,
            certificate_id: String::new(),
            region_code: "140100".into(),
            vintage_year: 2025,
            valid_years: 5,
            ..Default::default()
        }),
        format: pb::AuctionFormat::SealedUniformPrice as i32,
        tie_rule: pb::TieRule::TimePriority as i32,
        cap_mode: pb::CapMode::None as i32,
        opens_at: Some(to_timestamp(now)),
        closes_at: Some(to_timestamp(closes)),
        ..Default::default()
    };
    let mut client = pb::auction_operator_client::AuctionOperatorClient::new(channel.clone());
    let setup = |what| move |status| LoadgenError::Setup { what, status: Box::new(status) };
    let mut request = Request::new(create);
    request.metadata_mut().insert("authorization", operator.clone());
    let auction = client.create_auction(request).await.map_err(setup("create auction"))?.into_inner();
    if auction.phase != pb::AuctionPhase::Open as i32 {
        let mut open =
            Request::new(pb::AuctionRef { auction_id: auction.auction_id.clone(), request_id: request_id() });
        open.metadata_mut().insert("authorization", operator.clone());
        // The open timer may have beaten us to it; only a phase other than open is an error.
        if let Err(status) = client.open_auction(open).await {
            let mut get = Request::new(pb::GetAuctionRequest { auction_id: auction.auction_id.clone() });
            get.metadata_mut().insert("authorization", operator.clone());
            let now = client.get_auction(get).await.map_err(setup("get auction"))?.into_inner();
            if now.phase != pb::AuctionPhase::Open as i32 {
                return Err(setup("open auction")(status));
            }
        }
    }
    Ok(auction.auction_id)
}

/// What a unary load calls.
#[derive(Debug, Clone, Copy)]
enum Call {
    PlaceBid,
    HealthCheck,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::PlaceBid => "Trading/PlaceBid",
            Call::HealthCheck => "Health/Check",
        }
    }
}

/// The clock of one load: when measuring starts and when sending stops.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    until: Instant,
}

impl Window {
    fn new(plan: &Plan) -> Window {
        let start = Instant::now();
        Window { start, measure_from: start + plan.warmup, until: start + plan.warmup + plan.duration }
    }
}

/// Hands out request numbers until the `--requests` cap.
struct Budget {
    next: AtomicU64,
    cap: u64,
}

impl Budget {
    fn new(cap: Option<u64>) -> Budget {
        Budget { next: AtomicU64::new(0), cap: cap.unwrap_or(u64::MAX) }
    }

    fn take(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.cap).then_some(n)
    }

    fn exhausted(&self) -> bool {
        self.next.load(Ordering::Relaxed) >= self.cap
    }
}

/// One worker's counts and histograms, merged at the end of a load.
struct Tally {
    sent: u64,
    accepted: u64,
    errors: BTreeMap<String, u64>,
    measured: u64,
    last_measured: Option<Instant>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        let histogram = || Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
        Tally {
            sent: 0,
            accepted: 0,
            errors: BTreeMap::new(),
            measured: 0,
            last_measured: None,
            latency: histogram(),
            service: histogram(),
        }
    }

    /// One completed request: `intended` is when it was due (the send itself in closed loop),
    /// `sent` when it went out.
    fn record(&mut self, window: &Window, intended: Instant, sent: Instant, outcome: Result<(), String>) {
        let done = Instant::now();
        match outcome {
            Ok(()) => self.accepted += 1,
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
        if done >= window.measure_from && done <= window.until && intended >= window.measure_from {
            self.measured += 1;
            self.last_measured = Some(self.last_measured.map_or(done, |t| t.max(done)));
            self.latency.saturating_record(micros(done - intended));
            self.service.saturating_record(micros(done - sent));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.measured += other.measured;
        self.last_measured = match (self.last_measured, other.last_measured) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.latency.add(&other.latency).expect("same bounds");
        self.service.add(&other.service).expect("same bounds");
    }

    /// `exhausted`: the `--requests` cap ended the load, so the measured window ends at its
    /// last completion rather than at the deadline.
    fn into_load(self, name: String, window: &Window, mode: Mode, exhausted: bool) -> Load {
        let end = match self.last_measured {
            Some(last) if exhausted => last.min(window.until),
            _ => window.until,
        };
        let seconds = (end - window.measure_from).as_secs_f64();
        let errors = self.errors.values().sum();
        Load {
            name,
            sent: self.sent,
            accepted: self.accepted,
            errors,
            error_kinds: self.errors,
            measured: self.measured,
            seconds,
            per_second: if seconds > 0.0 { self.measured as f64 / seconds } else { 0.0 },
            latency_us: percentiles(&self.latency),
            service_time_us: matches!(mode, Mode::Rate(_)).then(|| percentiles(&self.service)),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        mean: h.mean(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// The error kind of a failed unary call: its reason code if it carries one, else the status
/// code's name.
fn kind_of(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    match status.get_details_error_info() {
        Some(info) if !info.reason.is_empty() => info.reason,
        _ => crate::grpc::status::code_name(status.code()).to_owned(),
    }
}

/// Shares `total` among `n` as evenly as possible; the `i`th share.
fn share(total: usize, n: usize, i: usize) -> usize {
    total / n + usize::from(i < total % n)
}

/// A unary load: closed loop (`in_flight` workers, each one request at a time) or fixed rate
/// (a scheduler per connection that never waits for replies).
async fn unary_load(plan: &Plan, target: &Target, call: Call) -> Result<Load, LoadgenError> {
    let window = Window::new(plan);
    let budget = Arc::new(Budget::new(plan.cap));
    let target = Arc::clone(&target.work);
    let mut tasks = JoinSet::new();
    for (c, channel) in target.channels.iter().enumerate() {
        let slots = share(plan.in_flight, plan.connections, c);
        if slots == 0 {
            continue;
        }
        match plan.mode {
            Mode::Closed => {
                for _ in 0..slots {
                    let (channel, target, budget) = (channel.clone(), Arc::clone(&target), Arc::clone(&budget));
                    tasks.spawn(async move {
                        let mut tally = Tally::new();
                        let mut clients = Clients::on(&channel);
                        while Instant::now() < window.until {
                            let Some(n) = budget.take() else { break };
                            tally.sent += 1;
                            let sent = Instant::now();
                            let outcome = target.unary(&mut clients, call, n).await;
                            tally.record(&window, sent, sent, outcome);
                        }
                        tally
                    });
                }
            }
            Mode::Rate(rate) => {
                let per_connection = rate / plan.connections as f64;
                let (clients, target, budget) = (Clients::on(channel), Arc::clone(&target), Arc::clone(&budget));
                let offset = Duration::from_secs_f64(c as f64 / rate);
                tasks.spawn(async move {
                    let tally = Arc::new(Mutex::new(Tally::new()));
                    let outstanding = Arc::new(Semaphore::new(slots));
                    let mut requests = JoinSet::new();
                    let mut i: u64 = 0;
                    loop {
                        let intended = window.start + offset + Duration::from_secs_f64(i as f64 / per_connection);
                        i += 1;
                        if intended >= window.until {
                            break;
                        }
                        tokio::time::sleep_until(intended).await;
                        let Some(n) = budget.take() else { break };
                        // Past the bound on outstanding requests the schedule slips, and the
                        // slip shows in the latency measured from `intended`.
                        let permit = Arc::clone(&outstanding).acquire_owned().await.expect("never closed");
                        let (mut clients, target, tally) = (clients.clone(), Arc::clone(&target), Arc::clone(&tally));
                        requests.spawn(async move {
                            let sent = Instant::now();
                            let outcome = target.unary(&mut clients, call, n).await;
                            drop(permit);
                            let mut tally = tally.lock().expect("tally lock");
                            tally.sent += 1;
                            tally.record(&window, intended, sent, outcome);
                        });
                        // Reap finished requests so the set stays small.
                        while requests.try_join_next().is_some() {}
                    }
                    while requests.join_next().await.is_some() {}
                    Arc::try_unwrap(tally).ok().expect("every request finished").into_inner().expect("tally lock")
                });
            }
        }
    }
    let tally = join_all(tasks, &window).await?;
    Ok(tally.into_load(call.name().into(), &window, plan.mode, budget.exhausted()))
}

/// A PlaceBids load: `streams` streams over the connections, each bidding as one bidder with
/// its share of `in_flight` as its window (closed loop), or sending on a fixed schedule.
async fn stream_load(plan: &Plan, target: &Target) -> Result<Load, LoadgenError> {
    let window = Window::new(plan);
    let budget = Arc::new(Budget::new(plan.cap));
    let target = Arc::clone(&target.work);
    let mut tasks = JoinSet::new();
    for s in 0..plan.streams {
        let slots = share(plan.in_flight, plan.streams, s).max(1);
        let channel = target.channels[s % target.channels.len()].clone();
        let (target, budget) = (Arc::clone(&target), Arc::clone(&budget));
        let schedule = match plan.mode {
            Mode::Closed => None,
            Mode::Rate(rate) => {
                let per_stream = rate / plan.streams as f64;
                Some((Duration::from_secs_f64(s as f64 / rate), per_stream))
            }
        };
        tasks.spawn(async move { one_stream(&target, channel, s, slots, schedule, &budget, window).await });
    }
    let tally = join_all(tasks, &window).await?;
    Ok(tally.into_load("Trading/PlaceBids".into(), &window, plan.mode, budget.exhausted()))
}

/// One PlaceBids stream. Replies come in the order of the requests, so the send instants
/// travel beside them in a queue and each reply takes the oldest.
async fn one_stream(
    target: &Workload,
    channel: Channel,
    s: usize,
    slots: usize,
    schedule: Option<(Duration, f64)>,
    budget: &Budget,
    window: Window,
) -> Tally {
    let mut tally = Tally::new();
    let (requests, outgoing) = mpsc::channel::<pb::PlaceBidRequest>(slots);
    let (stamps, mut sent_at) = mpsc::unbounded_channel::<(Instant, Instant)>();
    let window_slots = Arc::new(Semaphore::new(slots));
    let mut call = Request::new(tokio_stream::wrappers::ReceiverStream::new(outgoing));
    call.metadata_mut().insert("authorization", target.bidders[s % target.bidders.len()].clone());

    // The sender: the stream's bidder, the next bid number from the shared budget.
    let sender = {
        let window_slots = Arc::clone(&window_slots);
        let mut i: u64 = 0;
        let mut sent = 0u64;
        async move {
            loop {
                let intended = match schedule {
                    None => None,
                    Some((offset, per_stream)) => {
                        let at = window.start + offset + Duration::from_secs_f64(i as f64 / per_stream);
                        i += 1;
                        if at >= window.until {
                            break;
                        }
                        tokio::time::sleep_until(at).await;
                        Some(at)
                    }
                };
                // Closed when the stream has ended early: nothing more to send.
                let Ok(permit) = window_slots.acquire().await else { break };
                permit.forget();
                if Instant::now() >= window.until {
                    break;
                }
                let Some(n) = budget.take() else { break };
                let now = Instant::now();
                let _ = stamps.send((intended.unwrap_or(now), now));
                if requests.send(target.bid(n)).await.is_err() {
                    break;
                }
                sent += 1;
            }
            // Dropping `requests` ends the request stream; the server then ends the replies
            // after the last one.
            sent
        }
    };

    let receiver = async {
        let mut trading = TradingClient::new(channel);
        let mut replies = match trading.place_bids(call).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(kind_of(&status)),
        };
        let mut tally = Tally::new();
        loop {
            match replies.message().await {
                Ok(Some(reply)) => {
                    let Some((intended, sent)) = sent_at.recv().await else { break };
                    let outcome = match reply.result {
                        Some(pb::place_bids_reply::Result::Receipt(_)) => Ok(()),
                        Some(pb::place_bids_reply::Result::Refusal(r)) => {
                            Err(if r.reason.is_empty() { r.code } else { r.reason })
                        }
                        None => Err("EMPTY_REPLY".into()),
                    };
                    tally.record(&window, intended, sent, outcome);
                    window_slots.add_permits(1);
                }
                Ok(None) => break,
                Err(status) => {
                    *tally.errors.entry(kind_of(&status)).or_default() += 1;
                    break;
                }
            }
        }
        // A stream that failed before its end will not answer what was still in flight; it
        // stops the sender too.
        window_slots.close();
        Ok(tally)
    };

    let (sent, received) = tokio::join!(sender, receiver);
    match received {
        Ok(received) => tally.merge(received),
        Err(kind) => {
            *tally.errors.entry(kind).or_default() += 1;
        }
    }
    tally.sent = sent;
    // Bids sent but never answered (the stream broke) are errors too.
    let answered = tally.accepted + tally.errors.values().sum::<u64>();
    if sent > answered {
        *tally.errors.entry("UNANSWERED".into()).or_default() += sent - answered;
    }
    tally
}

/// What every load task reads: the connections, the bidders' credentials, the auctions and the
/// prices. Built once before the loads start; never changed.
struct Workload {
    channels: Vec<Channel>,
    /// One `authorization` value per bidder.
    bidders: Vec<MetadataValue<Ascii>>,
    auctions: Vec<String>,
    /// Price strings from the floor up, one per fen level.
    prices: Vec<String>,
    /// A random tag that makes this run's request ids unique.
    run_tag: String,
}

impl Workload {
    /// The `n`th bid of the run: auction and price round-robin, 1 t each (a bidder's total is
    /// bounded at 9,999,999.999 t, so small quantities keep every bid acceptable).
    fn bid(&self, n: u64) -> pb::PlaceBidRequest {
        let i = n as usize;
        pb::PlaceBidRequest {
            request_id: format!("lg-{}-{n}", self.run_tag),
            auction_id: self.auctions[i % self.auctions.len()].clone(),
            // A prime stride spreads consecutive bids over the levels.
            price: self.prices[i.wrapping_mul(7919) % self.prices.len()].clone(),
            quantity: "1.000".into(),
        }
    }

    async fn unary(&self, clients: &mut Clients, call: Call, n: u64) -> Result<(), String> {
        match call {
            Call::PlaceBid => {
                let mut request = Request::new(self.bid(n));
                request.metadata_mut().insert("authorization", self.bidders[n as usize % self.bidders.len()].clone());
                clients.trading.place_bid(request).await.map(drop).map_err(|s| kind_of(&s))
            }
            Call::HealthCheck => {
                let request = HealthCheckRequest { service: String::new() };
                clients.health.check(request).await.map(drop).map_err(|s| kind_of(&s))
            }
        }
    }
}

/// The generated clients on one connection; the bidder's token goes on each request.
#[derive(Clone)]
struct Clients {
    trading: TradingClient<Channel>,
    health: HealthClient<Channel>,
}

impl Clients {
    fn on(channel: &Channel) -> Clients {
        Clients { trading: TradingClient::new(channel.clone()), health: HealthClient::new(channel.clone()) }
    }
}

async fn join_all(mut tasks: JoinSet<Tally>, window: &Window) -> Result<Tally, LoadgenError> {
    let mut total = Tally::new();
    let deadline = window.until + DRAIN_GRACE;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(done)) => total.merge(done.expect("a load task panicked")),
            Ok(None) => return Ok(total),
            Err(_) => {
                tasks.abort_all();
                return Err(LoadgenError::Stalled(DRAIN_GRACE));
            }
        }
    }
}

/// The disk's raw rate: 4 KiB written at successive offsets of a preallocated file and
/// fdatasynced, one after the other, for `seconds`.
fn sync_rate(dir: &Path, seconds: Duration) -> Result<SyncRate, LoadgenError> {
    use std::os::unix::fs::FileExt as _;
    const SPAN: u64 = 4 << 20;
    let file = tempfile::tempfile_in(dir)?;
    file.set_len(SPAN)?;
    file.write_all_at(&vec![0u8; SPAN as usize], 0)?;
    file.sync_all()?;
    let block = [0x5Au8; SYNC_WRITE_BYTES];
    let mut latency = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
    let start = std::time::Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < seconds {
        let t = std::time::Instant::now();
        file.write_all_at(&block, syncs * SYNC_WRITE_BYTES as u64 % SPAN)?;
        file.sync_data()?;
        latency.saturating_record(micros(t.elapsed()));
        syncs += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(SyncRate {
        dir: dir.display().to_string(),
        write_bytes: SYNC_WRITE_BYTES,
        syncs,
        seconds: elapsed,
        per_second: syncs as f64 / elapsed,
        latency_us: percentiles(&latency),
    })
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_default();
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    Machine { cpus: std::thread::available_parallelism().map_or(1, |n| n.get()), cpu_model, load_average }
}

/// The report as a table for people at a terminal.
pub fn table(r: &Report) -> String {
    let c = &r.config;
    let mut s = String::new();
    let in_flight = match (c.rpc, c.streams) {
        (RpcArg::Stream, Some(n)) => format!("{} in flight over {n} streams", c.in_flight),
        _ => format!("{} in flight", c.in_flight),
    };
    let mode = match (c.mode, c.rate) {
        (ModeArg::Rate, Some(rate)) => format!("fixed rate {rate}/s (latency from the intended send)"),
        _ => "closed loop".into(),
    };
    s += &format!(
        "loadgen {} on {}; {} connection(s), {in_flight}, {mode}; {} bidder(s), {} auction(s); warm-up {} s, {} s measured\n",
        r.date,
        c.server,
        c.connections,
        c.bidders,
        c.auction_ids.len(),
        c.warmup_s,
        c.duration_s
    );
    s += &format!("machine: {} x {}, load average {}\n\n", r.machine.cpus, r.machine.cpu_model, r.machine.load_average);
    s += &format!(
        "{:<20} {:>10} {:>10} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "load", "sent", "accepted", "errors", "per second", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "ratio"
    );
    let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    let mut row = |l: &Load, ratio: Option<f64>| {
        s += &format!(
            "{:<20} {:>10} {:>10} {:>8} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            l.name,
            l.sent,
            l.accepted,
            l.errors,
            l.per_second,
            ms(l.latency_us.p50),
            ms(l.latency_us.p99),
            ms(l.latency_us.p999),
            ms(l.latency_us.max),
            ratio.map_or("".into(), |x| format!("{x:.3}")),
        );
    };
    row(&r.bids, r.ratios.bids_to_health);
    if let Some(h) = &r.health_ceiling {
        row(h, Some(1.0));
    }
    if let Some(f) = &r.fdatasync_ceiling {
        s += &format!(
            "{:<20} {:>10} {:>10} {:>8} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "fdatasync 4 KiB",
            f.syncs,
            "",
            "",
            f.per_second,
            ms(f.latency_us.p50),
            ms(f.latency_us.p99),
            ms(f.latency_us.p999),
            ms(f.latency_us.max),
            "",
        );
    }
    if let Some(service) = &r.bids.service_time_us {
        s += &format!(
            "\nservice time from the actual send (what coordinated omission would report): p50 {} ms, p99 {} ms, p99.9 {} ms\n",
            ms(service.p50),
            ms(service.p99),
            ms(service.p999)
        );
    }
    s += "\n";
    if let Some(x) = r.ratios.bids_to_health {
        s += &format!("bids per second / health checks per second: {x:.3}\n");
    }
    if let Some(x) = r.ratios.bids_per_fdatasync {
        s += &format!("bids per second / raw fdatasyncs per second: {x:.1}\n");
    }
    if !r.bids.error_kinds.is_empty() {
        s += &format!("errors by kind: {:?}\n", r.bids.error_kinds);
    }
    s
}
