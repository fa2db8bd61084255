//! Does a watched board slow bidding down? A bounded load program (`cargo bench --bench board`):
//! the real server with the board on loopback, terminals placing sealed bids over gRPC, with and
//! without 200 browsers' worth of server-sent-event clients connected to `/events`; prints the
//! bid latency of each run and the ratio. Rounds alternate (without, with, without, with, ...)
//! so that drift on a shared machine falls on both sides.
//!
//! The journal runs without fdatasync here (`journal_sync = never`): the disk's sync latency
//! would otherwise dominate every bid and hide what the board costs in CPU and scheduling.
//! While bids flow, an open ascending auction is raised every 100 ms, so the board has a change
//! to push to every client at each of its ticks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use emission_auction::auth::{Principal, Principals, Role};
use emission_auction::cli::client::Terminal;
use emission_auction::config::Config;
use emission_auction::domain::{CreditCode, Timestamp};
use emission_auction::grpc::convert::to_timestamp;
use emission_auction::journal::SyncPolicy;
use emission_auction::proto as pb;
use emission_auction::service::clock::{Clock, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

const SSE_CLIENTS: usize = 200;
const TERMINALS: usize = 8;
/// How long each round places bids: several of the board's 500 ms ticks.
const ROUND: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

fn firm(n: usize) -> CreditCode {
    CreditCode::with_check_digit(&format!("91140100MA0BEN{n:03}")).unwrap()
}

fn lot(id: &str, pollutant: pb::Pollutant, quantity: &str, fill: &str) -> pb::Lot {
    pb::Lot {
        lot_id: id.into(),
        pollutant: pollutant as i32,
        quantity: quantity.into(),
        fill_unit: fill.into(),
        seller: CreditCode::with_check_digit("12140000MB0CENTRE").unwrap().to_string(),
        origin: pb::LotOrigin::GovernmentReserve as i32,
        region_code: "140100".into(),
        vintage_year: 2025,
        valid_years: 5,
        ..Default::default()
    }
}

static REQUEST: AtomicU64 = AtomicU64::new(0);

fn request_id() -> String {
    format!("bench-{}", REQUEST.fetch_add(1, Ordering::Relaxed))
}

/// Every terminal places bids one after another, each waiting for its receipt, for `length`;
/// the latencies, sorted.
async fn bid_round(terminals: &[Terminal], auction: &str, length: Duration) -> Vec<Duration> {
    let until = Instant::now() + length;
    let mut tasks = Vec::new();
    for t in terminals {
        let mut t = t.clone();
        let auction = auction.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let request = pb::PlaceBidRequest {
                    request_id: request_id(),
                    auction_id: auction.clone(),
                    price: "18000.00".into(),
                    quantity: "0.001".into(),
                };
                let started = Instant::now();
                t.trading.place_bid(request).await.expect("bid accepted");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    all
}

fn at(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// One browser's worth of event stream: reads and discards; counts the events it got.
async fn sse_client(board: SocketAddr, events: Arc<AtomicU64>, connected: Arc<AtomicU64>) {
    let mut s = tokio::net::TcpStream::connect(board).await.expect("connect to the board");
    s.write_all(format!("GET /events HTTP/1.1\r\nHost: {board}\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut first = true;
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if first {
                    connected.fetch_add(1, Ordering::Relaxed);
                    first = false;
                }
                let count = buf[..n].windows(7).filter(|w| w == b"event: ").count();
                events.fetch_add(count as u64, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut principals = Principals::default();
    let mut tokens = HashMap::new();
    tokens.insert(
        "operator",
        principals.add(Principal { name: "operator".into(), role: Role::Operator, enterprise: None }).unwrap(),
    );
    let bidder_tokens: Vec<String> = (0..TERMINALS + 2)
        .map(|n| {
            principals.add(Principal { name: format!("b{n}"), role: Role::Bidder, enterprise: Some(firm(n)) }).unwrap()
        })
        .collect();
    principals.save(&dir.path().join("principals.json")).unwrap();
    let mut config = Config::default();
    config.set_data_dir(dir.path().to_owned());
    config.journal_sync = SyncPolicy::Never;
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let board = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api_addr, board_addr) = (api.local_addr().unwrap(), board.local_addr().unwrap());
    let parts = emission_auction::server::assemble(&config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(emission_auction::server::run_with_board(parts, api, board, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{api_addr}")).unwrap().connect().await.unwrap();
    let mut operator = Terminal::on(channel.clone(), &tokens["operator"]).unwrap();

    let now = SystemClock.now();
    let closes = Timestamp::from_micros(now.as_micros() + 3_600_000_000);
    let create = |lot: pb::Lot, format: pb::AuctionFormat| pb::CreateAuctionRequest {
        request_id: request_id(),
        lot: Some(lot),
        format: format as i32,
        opens_at: Some(to_timestamp(now)),
        closes_at: Some(to_timestamp(closes)),
        ..Default::default()
    };
    let sealed = operator
        .operator
        .create_auction(create(
            lot("BENCH-SO2", pb::Pollutant::So2, "1000000.000", "0.001"),
            pb::AuctionFormat::SealedUniformPrice,
        ))
        .await
        .unwrap()
        .into_inner()
        .auction_id;
    let mut english = create(lot("BENCH-NOX", pb::Pollutant::Nox, "1.000", ""), pb::AuctionFormat::AscendingEnglish);
    english.ascending =
        Some(pb::AscendingTerms { increment: "0.01".into(), countdown_seconds: 600, ..Default::default() });
    english.cap_mode = pb::CapMode::None as i32;
    let english = operator.operator.create_auction(english).await.unwrap().into_inner().auction_id;

    // Two bidders take turns raising the open auction every 100 ms: a change for the board.
    let raisers: Vec<Terminal> =
        bidder_tokens[TERMINALS..].iter().map(|t| Terminal::on(channel.clone(), t).unwrap()).collect();
    let raising = tokio::spawn(async move {
        for (i, fen) in (1_900_000u64..).enumerate() {
            let mut t = raisers[i % 2].clone();
            let request = pb::PlaceBidRequest {
                request_id: request_id(),
                auction_id: english.clone(),
                price: format!("{}.{:02}", fen / 100, fen % 100),
                quantity: String::new(),
            };
            let _ = t.trading.place_bid(request).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let terminals: Vec<Terminal> =
        bidder_tokens[..TERMINALS].iter().map(|t| Terminal::on(channel.clone(), t).unwrap()).collect();
    // Warm up connections and the auction's task.
    bid_round(&terminals, &sealed, Duration::from_millis(500)).await;

    let events = Arc::new(AtomicU64::new(0));
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..ROUNDS {
        let plain = bid_round(&terminals, &sealed, ROUND).await;
        println!(
            "round {round} without SSE clients: {} bids, median {:?}, p99 {:?}",
            plain.len(),
            at(&plain, 0.5),
            at(&plain, 0.99)
        );
        without.extend(plain);

        let connected = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = (0..SSE_CLIENTS)
            .map(|_| tokio::spawn(sse_client(board_addr, Arc::clone(&events), Arc::clone(&connected))))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while connected.load(Ordering::Relaxed) < SSE_CLIENTS as u64 {
            assert!(Instant::now() < deadline, "SSE clients did not all connect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = events.load(Ordering::Relaxed);
        let watched = bid_round(&terminals, &sealed, ROUND).await;
        let got = events.load(Ordering::Relaxed) - before;
        println!(
            "round {round} with {SSE_CLIENTS} SSE clients: {} bids, median {:?}, p99 {:?}; the clients received {got} events meanwhile",
            watched.len(),
            at(&watched, 0.5),
            at(&watched, 0.99)
        );
        with.extend(watched);
        for c in clients {
            c.abort();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    without.sort_unstable();
    with.sort_unstable();
    let ratio = |q: f64| at(&with, q).as_secs_f64() / at(&without, q).as_secs_f64();
    println!(
        "all rounds: without median {:?} p99 {:?}; with {SSE_CLIENTS} SSE clients median {:?} p99 {:?}",
        at(&without, 0.5),
        at(&without, 0.99),
        at(&with, 0.5),
        at(&with, 0.99)
    );
    println!("ratio with/without: median {:.3}, p90 {:.3}, p99 {:.3}", ratio(0.5), ratio(0.9), ratio(0.99));
    raising.abort();
    drop((operator, terminals, channel));
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
