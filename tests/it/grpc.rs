//! The real server on 127.0.0.1:0, driven over gRPC with the generated clients.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use emission_auction::auth::{Principal, Principals, Role};
use emission_auction::cli::client::Terminal;
use emission_auction::config::Config;
use emission_auction::domain::{CreditCode, EligibilityPolicy, PricePolicy, Timestamp};
use emission_auction::grpc::convert::to_timestamp;
use emission_auction::proto as pb;
use emission_auction::service::clock::{Clock, ManualClock, SystemClock};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000_000;
const HOUR: i64 = 3_600_000_000;

pub fn firm(n: u32) -> CreditCode {
    CreditCode::with_check_digit(&format!("91140100MA0TEXT{n:02}")).unwrap()
}

pub struct TestServer {
    pub channel: Channel,
    pub tokens: HashMap<String, String>,
    pub clock: Option<Arc<ManualClock>>,
    pub dir: tempfile::TempDir,
    /// Who may bid, and price policy; kept across restarts.
    eligibility: EligibilityPolicy,
    prices: PricePolicy,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), emission_auction::server::ServerError>>>,
}

impl TestServer {
    /// A server with a manual clock at T0 (timers never fire unless the test moves past them
    /// in real time) and principals: operator, auditor, observer, bidders b1..b24.
    pub async fn start() -> TestServer {
        Self::start_with(Some(Arc::new(ManualClock::new(Timestamp::from_micros(T0))))).await
    }

    /// A server on the wall clock, for timer tests.
    pub async fn start_real_time() -> TestServer {
        Self::start_with(None).await
    }

    /// [`TestServer::start`] with bids checked against the enterprise registry under `policy`.
    pub async fn start_enforcing(policy: EligibilityPolicy) -> TestServer {
        let clock = Some(Arc::new(ManualClock::new(Timestamp::from_micros(T0))));
        Self::start_configured(clock, EligibilityPolicy { enforce: true, ..policy }, PricePolicy::default()).await
    }

    /// [`TestServer::start`] under price policy `prices` (its conversion factors, say).
    pub async fn start_priced(prices: PricePolicy) -> TestServer {
        let clock = Some(Arc::new(ManualClock::new(Timestamp::from_micros(T0))));
        Self::start_configured(clock, EligibilityPolicy::default(), prices).await
    }

    async fn start_with(clock: Option<Arc<ManualClock>>) -> TestServer {
        Self::start_configured(clock, EligibilityPolicy::default(), PricePolicy::default()).await
    }

    async fn start_configured(
        clock: Option<Arc<ManualClock>>,
        eligibility: EligibilityPolicy,
        prices: PricePolicy,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut principals = Principals::default();
        let mut tokens = HashMap::new();
        for (name, role) in [("operator", Role::Operator), ("auditor", Role::Auditor), ("observer", Role::Observer)] {
            tokens.insert(
                name.to_owned(),
                principals.add(Principal { name: name.into(), role, enterprise: None }).unwrap(),
            );
        }
        for n in 1..=24 {
            let name = format!("b{n}");
            let token = principals
                .add(Principal { name: name.clone(), role: Role::Bidder, enterprise: Some(firm(n)) })
                .unwrap();
            tokens.insert(name, token);
        }
        principals.save(&dir.path().join("principals.json")).unwrap();
        Self::boot(dir, tokens, clock, eligibility, prices).await
    }

    /// Starts a server on `dir` as it is: its principals, journal and settlements.
    async fn boot(
        dir: tempfile::TempDir,
        tokens: HashMap<String, String>,
        clock: Option<Arc<ManualClock>>,
        eligibility: EligibilityPolicy,
        prices: PricePolicy,
    ) -> TestServer {
        let mut config = Config::default();
        config.set_data_dir(dir.path().to_owned());
        crate::sealing::key_inside(&mut config, dir.path());
        config.eligibility = eligibility.clone();
        config.policy = prices.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let wall: Arc<dyn Clock> = match &clock {
            Some(c) => c.clone(),
            None => Arc::new(SystemClock),
        };
        let parts = emission_auction::server::assemble_with_clock(&config, wall).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(emission_auction::server::run(parts, listener, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        TestServer { channel, tokens, clock, dir, eligibility, prices, stop: Some(stop), task: Some(task) }
    }

    pub fn as_(&self, who: &str) -> Terminal {
        Terminal::on(self.channel.clone(), &self.tokens[who]).unwrap()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.as_ref().map_or_else(|| SystemClock.now(), |c| c.now())
    }

    pub fn set_time(&self, at: Timestamp) {
        self.clock.as_ref().expect("manual clock").set(at);
    }

    pub async fn stop(self) {
        self.halt().await;
    }

    /// Stops the server and starts a new one on the same data directory, with a manual clock
    /// now at `at`.
    pub async fn restart(self, at: Timestamp) -> TestServer {
        let (eligibility, prices) = (self.eligibility.clone(), self.prices.clone());
        let (dir, tokens) = self.halt().await;
        Self::boot(dir, tokens, Some(Arc::new(ManualClock::new(at))), eligibility, prices).await
    }

    async fn halt(mut self) -> (tempfile::TempDir, HashMap<String, String>) {
        drop(self.channel);
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task.take().unwrap())
            .await
            .expect("server stops in time")
            .unwrap()
            .unwrap();
        (self.dir, self.tokens)
    }
}

pub fn reserve_lot(lot_id: &str, quantity: &str, fill: &str) -> pb::Lot {
    pb::Lot {
        lot_id: lot_id.into(),
        pollutant: pb::Pollutant::So2 as i32,
        quantity: quantity.into(),
        fill_unit: fill.into(),
        seller: CreditCode::with_check_digit("12140000MB0CENTRE").unwrap().to_string(),
        origin: pb::LotOrigin::GovernmentReserve as i32,
        certificate_id: String::new(),
        region_code: "140100".into(),
        vintage_year: 2025,
        valid_years: 5,
        ..Default::default()
    }
}

pub fn erc_lot(lot_id: &str, pollutant: pb::Pollutant, quantity: &str) -> pb::Lot {
    pb::Lot {
        lot_id: lot_id.into(),
        pollutant: pollutant as i32,
        quantity: quantity.into(),
        fill_unit: String::new(),
        seller: firm(9).to_string(),
        origin: pb::LotOrigin::ErcCertified as i32,
        certificate_id: "ERC-CERT-7".into(),
        region_code: "140200".into(),
        vintage_year: 2024,
        valid_years: 5,
        ..Default::default()
    }
}

pub fn create(
    lot: pb::Lot,
    format: pb::AuctionFormat,
    opens: Timestamp,
    closes: Timestamp,
) -> pb::CreateAuctionRequest {
    pb::CreateAuctionRequest {
        request_id: format!("create-{}", lot.lot_id),
        lot: Some(lot),
        format: format as i32,
        opens_at: Some(to_timestamp(opens)),
        closes_at: Some(to_timestamp(closes)),
        ..Default::default()
    }
}

pub fn bid(auction: &str, price: &str, quantity: &str) -> pb::PlaceBidRequest {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    pb::PlaceBidRequest {
        request_id: format!("bid-{n}"),
        auction_id: auction.into(),
        price: price.into(),
        quantity: quantity.into(),
    }
}

pub fn aref(auction: &str) -> pb::AuctionRef {
    pb::AuctionRef { request_id: format!("ref-{auction}-{}", rand_suffix()), auction_id: auction.into() }
}

fn rand_suffix() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// An auction's settlement, as anyone may read it once it is recorded.
pub async fn settlement(server: &TestServer, auction: &str) -> pb::Settlement {
    let request = pb::GetSettlementRequest { auction_id: auction.into() };
    server.as_("observer").results.get_settlement(request).await.unwrap().into_inner()
}

/// The settlement once the server's own timer has recorded it (polled, at most two seconds).
pub async fn await_settlement(server: &TestServer, auction: &str) -> pb::Settlement {
    for _ in 0..100 {
        let request = pb::GetSettlementRequest { auction_id: auction.into() };
        if let Ok(s) = server.as_("observer").results.get_settlement(request).await {
            return s.into_inner();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no settlement of {auction} was recorded");
}

/// The ErrorInfo reason and metadata of a status.
pub fn reason(status: &tonic::Status) -> (String, HashMap<String, String>) {
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    (info.reason, info.metadata)
}

fn field_of(status: &tonic::Status) -> String {
    let bad = status.get_details_bad_request().unwrap_or_else(|| panic!("no BadRequest on {status:?}"));
    bad.field_violations[0].field.clone()
}

/// An auction scheduled to open in ten minutes that the operator opens early.
async fn open_auction(server: &TestServer, lot: pb::Lot, format: pb::AuctionFormat) -> String {
    let t0 = server.now();
    let mut op = server.as_("operator");
    let a = op
        .operator
        .create_auction(create(lot, format, t0.plus_micros(HOUR / 6), t0.plus_micros(HOUR)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.phase, pb::AuctionPhase::Scheduled as i32);
    let opened = op.operator.open_auction(aref(&a.auction_id)).await.unwrap().into_inner();
    assert_eq!(opened.phase, pb::AuctionPhase::Open as i32);
    a.auction_id
}

async fn close(server: &TestServer, auction: &str) -> pb::Settlement {
    let mut op = server.as_("operator");
    let closed = op.operator.close_auction(aref(auction)).await.unwrap().into_inner();
    assert_ne!(closed.phase, pb::AuctionPhase::Open as i32);
    settlement(server, auction).await
}

fn allocations(s: &pb::Settlement) -> Vec<(String, String, String, String, String)> {
    s.allocations
        .iter()
        .map(|a| (a.bidder.clone(), a.quantity.clone(), a.unit_price.clone(), a.amount.clone(), a.buyer_fee.clone()))
        .collect()
}

#[tokio::test]
async fn uniform_price_auction_end_to_end() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-SO2-1", "10.000", "0.500"), pb::AuctionFormat::SealedUniformPrice).await;
    let (mut b1, mut b2, mut b3) = (server.as_("b1"), server.as_("b2"), server.as_("b3"));
    b1.trading.place_bid(bid(&id, "19000.00", "4.000")).await.unwrap();
    b2.trading.place_bid(bid(&id, "18500.00", "4.000")).await.unwrap();
    b3.trading.place_bid(bid(&id, "18500.00", "4.000")).await.unwrap();
    let s = close(&server, &id).await;
    assert_eq!(s.status, pb::SettlementStatus::Settled as i32);
    assert_eq!(s.clearing_price, "18500.00");
    assert_eq!(s.sequence, 1);
    let f = |n| firm(n).to_string();
    assert_eq!(
        allocations(&s),
        vec![
            (f(1), "4.000".into(), "18500.00".into(), "74000.00".into(), "555.00".into()),
            (f(2), "4.000".into(), "18500.00".into(), "74000.00".into(), "555.00".into()),
            (f(3), "2.000".into(), "18500.00".into(), "37000.00".into(), "277.50".into()),
        ]
    );
    assert_eq!(
        (s.total_amount.as_str(), s.total_seller_fee.as_str(), s.unsold_quantity.as_str()),
        ("185000.00", "1387.50", "0.000")
    );
    let tie = s.tie_break.unwrap();
    assert_eq!(tie.rule, pb::TieRule::TimePriority as i32);
    assert_eq!(tie.marginal_price, "18500.00");
    // Recorded durably, one JSON object per line, before it was published.
    let recorded = std::fs::read_to_string(server.dir.path().join("settlements.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(recorded.lines().next().unwrap()).unwrap();
    assert_eq!(line["auction_id"], id.as_str());
    assert_eq!(line["total_amount"], "185000.00");
    assert_eq!(line["sequence"], 1);
    server.stop().await;
}

#[tokio::test]
async fn pay_as_bid_auction_end_to_end() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-SO2-2", "10.000", "1.000"), pb::AuctionFormat::SealedPayAsBid).await;
    server.as_("b1").trading.place_bid(bid(&id, "19000.00", "6.000")).await.unwrap();
    server.as_("b2").trading.place_bid(bid(&id, "18600.00", "6.000")).await.unwrap();
    let s = close(&server, &id).await;
    assert_eq!(s.clearing_price, "", "pay-as-bid has no single clearing price");
    let f = |n| firm(n).to_string();
    assert_eq!(
        allocations(&s),
        vec![
            (f(1), "6.000".into(), "19000.00".into(), "114000.00".into(), "855.00".into()),
            (f(2), "4.000".into(), "18600.00".into(), "74400.00".into(), "558.00".into()),
        ]
    );
    assert_eq!(s.total_amount, "188400.00");
    server.stop().await;
}

#[tokio::test]
async fn first_price_auction_end_to_end_with_revision() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, erc_lot("ERC-NOX-1", pb::Pollutant::Nox, "4.048"), pb::AuctionFormat::SealedFirstPrice)
            .await;
    let auction = server
        .as_("b1")
        .trading
        .get_auction(pb::GetAuctionRequest { auction_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((auction.floor_price.as_str(), auction.cap_price.as_str()), ("19000.00", "22800.00"));
    let mut b1 = server.as_("b1");
    // The quantity may be omitted: a single lot is bid whole.
    let first = b1.trading.place_bid(bid(&id, "20000.00", "")).await.unwrap().into_inner();
    assert_eq!(first.quantity, "4.048");
    server.as_("b2").trading.place_bid(bid(&id, "21000.00", "4.048")).await.unwrap();
    let revised = b1
        .trading
        .revise_bid(pb::ReviseBidRequest {
            request_id: "rev-1".into(),
            auction_id: id.clone(),
            bid_id: first.bid_id.clone(),
            price: "22800.00".into(),
            quantity: "4.048".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((revised.bid_id.as_str(), revised.price.as_str()), (first.bid_id.as_str(), "22800.00"));
    let s = close(&server, &id).await;
    assert_eq!(
        allocations(&s),
        vec![(firm(1).to_string(), "4.048".into(), "22800.00".into(), "92294.40".into(), "692.21".into())]
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_bids_are_invalid_argument_naming_the_field_and_change_nothing() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-SO2-3", "10.000", "0.500"), pb::AuctionFormat::SealedUniformPrice).await;
    let mut b1 = server.as_("b1");
    let huge = "1".repeat(29);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("", "1.000", "price"),
        ("NaN", "1.000", "price"),
        ("1e5", "1.000", "price"),
        ("-1", "1.000", "price"),
        ("0", "1.000", "price"),
        ("-0", "1.000", "price"),
        ("0.001", "1.000", "price"),
        (&huge, "1.000", "price"),
        ("1,000", "1.000", "price"),
        ("１８０００", "1.000", "price"),
        ("18000.00", "", "quantity"),
        ("18000.00", "0.0001", "quantity"),
        ("18000.00", "0", "quantity"),
        ("18000.00", "1.250", "quantity"),
        ("99999999.99", "9999999.999", "price"),
    ];
    for (price, quantity, field) in cases {
        let err = b1.trading.place_bid(bid(&id, price, quantity)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{price:?} x {quantity:?}: {err:?}");
        assert_eq!(field_of(&err), field, "{price:?} x {quantity:?}");
    }
    let mut bad_id = bid(&id, "18000.00", "1.000");
    bad_id.request_id.clear();
    assert_eq!(field_of(&b1.trading.place_bid(bad_id).await.unwrap_err()), "request_id");
    let err = b1.trading.place_bid(bid("AUC-12", "18000.00", "1.000")).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::NotFound, "AUCTION_NOT_FOUND"));
    let err = b1.trading.place_bid(bid("12", "18000.00", "1.000")).await.unwrap_err();
    assert_eq!(field_of(&err), "auction_id");
    // Nothing was accepted.
    let mine = b1.trading.list_my_bids(pb::ListMyBidsRequest { auction_id: id.clone() }).await.unwrap().into_inner();
    assert!(mine.bids.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn malformed_auctions_are_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let mut op = server.as_("operator");
    let t0 = server.now();
    let good = create(
        reserve_lot("RES-X", "10.000", "1.000"),
        pb::AuctionFormat::SealedUniformPrice,
        t0,
        t0.plus_micros(HOUR),
    );
    let mut cases: Vec<(pb::CreateAuctionRequest, &str)> = Vec::new();
    let mut c = good.clone();
    c.lot = None;
    cases.push((c, "lot"));
    let mut c = good.clone();
    c.format = 0;
    cases.push((c, "format"));
    let mut c = good.clone();
    c.format = 99;
    cases.push((c, "format"));
    let mut c = good.clone();
    c.opens_at = None;
    cases.push((c, "opens_at"));
    let mut c = good.clone();
    c.closes_at = Some(to_timestamp(t0));
    cases.push((c, "closes_at"));
    let mut c = good.clone();
    c.lot.as_mut().unwrap().pollutant = 0;
    cases.push((c, "lot.pollutant"));
    let mut c = good.clone();
    c.lot.as_mut().unwrap().quantity = "10.500".into();
    c.lot.as_mut().unwrap().fill_unit = "1.000".into();
    cases.push((c, "lot.quantity"));
    let mut c = good.clone();
    // A valid shape with a wrong check digit.
    let code = firm(1).to_string();
    let wrong = if code.ends_with('0') { '1' } else { '0' };
    c.lot.as_mut().unwrap().seller = format!("{}{wrong}", &code[..17]);
    cases.push((c, "lot.seller"));
    let mut c = good.clone();
    c.lot.as_mut().unwrap().region_code = "14010".into();
    cases.push((c, "lot.region_code"));
    let mut c = good.clone();
    c.lot.as_mut().unwrap().vintage_year = 0;
    cases.push((c, "lot.vintage_year"));
    let mut c = good.clone();
    c.lot.as_mut().unwrap().origin = pb::LotOrigin::ErcCertified as i32;
    cases.push((c, "lot.certificate_id"));
    let mut c = good.clone();
    c.per_bidder_cap_percent = "120".into();
    cases.push((c, "per_bidder_cap_percent"));
    let mut c = good.clone();
    c.cap_mode = pb::CapMode::Percent as i32;
    cases.push((c, "cap_percent"));
    for (request, field) in cases {
        let err = op.operator.create_auction(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert_eq!(field_of(&err), field);
    }
    let listed = op.trading.list_auctions(pb::ListAuctionsRequest::default()).await.unwrap().into_inner();
    assert!(listed.auctions.is_empty(), "a refused auction was created");
    // A retry of the same request is the same auction; a new request for the same lot is
    // refused, since a lot is on sale in one auction at a time.
    let first = op.operator.create_auction(good.clone()).await.unwrap().into_inner();
    let retried = op.operator.create_auction(good.clone()).await.unwrap().into_inner();
    // (The retry shows the auction as it is now: its phase may have moved on.)
    assert_eq!((first.auction_id.as_str(), first.created_at), ("AUC-0001", retried.created_at));
    let mut again = good;
    again.request_id = "create-RES-X-again".into();
    let err = op.operator.create_auction(again).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::AlreadyExists, "LOT_ON_SALE"));
    server.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-BIG", "10.000", "1.000"), pb::AuctionFormat::SealedUniformPrice).await;
    let mut request = bid(&id, "18000.00", "1.000");
    request.request_id = "x".repeat(70 * 1024);
    let err = server.as_("b1").trading.place_bid(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // The server is still there and the bid did not happen.
    let mine =
        server.as_("b1").trading.list_my_bids(pb::ListMyBidsRequest { auction_id: id }).await.unwrap().into_inner();
    assert!(mine.bids.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn rule_breaks_are_failed_precondition_with_reason_and_numbers() {
    let server = TestServer::start().await;
    let t0 = server.now();
    let mut op = server.as_("operator");
    let mut request = create(
        erc_lot("ERC-SO2-9", pb::Pollutant::So2, "10.000"),
        pb::AuctionFormat::SealedUniformPrice,
        t0,
        t0.plus_micros(HOUR),
    );
    request.lot.as_mut().unwrap().fill_unit = "0.500".into();
    request.per_bidder_cap_percent = "25".into();
    request.bid_revision = pb::BidRevision::Irrevocable as i32;
    let id = op.operator.create_auction(request).await.unwrap().into_inner().auction_id;
    let mut b1 = server.as_("b1");

    let expect = |err: tonic::Status, code: &str, key: &str, value: &str| {
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        let (reason, meta) = reason(&err);
        assert_eq!(reason, code);
        assert_eq!(meta.get(key).map(String::as_str), Some(value), "{meta:?}");
    };
    expect(b1.trading.place_bid(bid(&id, "17999.99", "1.000")).await.unwrap_err(), "BELOW_FLOOR", "floor", "18000.00");
    expect(b1.trading.place_bid(bid(&id, "21600.01", "1.000")).await.unwrap_err(), "ABOVE_CAP", "cap", "21600.00");
    let placed = b1.trading.place_bid(bid(&id, "21600.00", "2.000")).await.unwrap().into_inner();
    expect(
        b1.trading.place_bid(bid(&id, "18000.00", "1.000")).await.unwrap_err(),
        "BIDDER_CAP_EXCEEDED",
        "room_left",
        "0.500",
    );
    let withdraw =
        pb::WithdrawBidRequest { request_id: "w-1".into(), auction_id: id.clone(), bid_id: placed.bid_id.clone() };
    let err = b1.trading.withdraw_bid(withdraw.clone()).await.unwrap_err();
    assert_eq!(reason(&err).0, "BID_IRREVOCABLE");
    // Another bidder cannot see or touch b1's bid: it is simply not found.
    let err = server.as_("b2").trading.withdraw_bid(withdraw).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::NotFound, "BID_NOT_FOUND"));
    // A bid stamped exactly at the close is refused even though no timer has closed it.
    server.set_time(t0.plus_micros(HOUR));
    let err = server.as_("b2").trading.place_bid(bid(&id, "18000.00", "1.000")).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::FailedPrecondition, "AUCTION_CLOSED"));
    server.stop().await;
}

#[tokio::test]
async fn authentication_and_roles() {
    let server = TestServer::start().await;
    let t0 = server.now();
    let request = create(
        reserve_lot("RES-AUTH", "10.000", "1.000"),
        pb::AuctionFormat::SealedUniformPrice,
        t0,
        t0.plus_micros(HOUR),
    );

    let mut anonymous = pb::trading_client::TradingClient::new(server.channel.clone());
    let err = anonymous.list_auctions(pb::ListAuctionsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut forged = Terminal::on(server.channel.clone(), "ea_0000").unwrap();
    assert_eq!(
        forged.trading.list_auctions(pb::ListAuctionsRequest::default()).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let err = server.as_("b1").operator.create_auction(request.clone()).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::PermissionDenied, "ROLE_NOT_ALLOWED"));
    let id = server.as_("operator").operator.create_auction(request).await.unwrap().into_inner().auction_id;
    for who in ["operator", "auditor", "observer"] {
        let err = server.as_(who).trading.place_bid(bid(&id, "18000.00", "1.000")).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{who} bid");
    }
    let err =
        server.as_("observer").operator.list_bids(pb::ListBidsRequest { auction_id: id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Observers read public views.
    let seen =
        server.as_("observer").trading.list_auctions(pb::ListAuctionsRequest::default()).await.unwrap().into_inner();
    assert_eq!(seen.auctions.len(), 1);

    // Health and reflection need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest { service: "emission_auction.v1.Trading".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection.server_reflection_info(tokio_stream::iter(vec![ask])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "emission_auction.v1.AuctionOperator",
        "emission_auction.v1.Trading",
        "emission_auction.v1.Results",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == service), "{service} missing from {names:?}");
    }
    drop(replies);
    server.stop().await;
}

#[tokio::test]
async fn sealed_bids_are_invisible_to_operators_and_other_bidders() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-SEAL", "10.000", "1.000"), pb::AuctionFormat::SealedUniformPrice).await;
    let get = pb::GetAuctionRequest { auction_id: id.clone() };
    let before_op = server.as_("operator").operator.get_auction(get.clone()).await.unwrap().into_inner();
    let before_pub = server.as_("b2").trading.get_auction(get.clone()).await.unwrap().into_inner();
    let list_before =
        server.as_("b2").trading.list_auctions(pb::ListAuctionsRequest::default()).await.unwrap().into_inner();

    let secret = server.as_("b1").trading.place_bid(bid(&id, "19876.54", "3.000")).await.unwrap().into_inner();
    server.as_("b1").trading.place_bid(bid(&id, "19000.00", "2.000")).await.unwrap();

    // What operators and other bidders can see has not changed at all.
    assert_eq!(server.as_("operator").operator.get_auction(get.clone()).await.unwrap().into_inner(), before_op);
    assert_eq!(server.as_("b2").trading.get_auction(get.clone()).await.unwrap().into_inner(), before_pub);
    assert_eq!(
        server.as_("b2").trading.list_auctions(pb::ListAuctionsRequest::default()).await.unwrap().into_inner(),
        list_before
    );
    for who in ["operator", "auditor"] {
        let err = server.as_(who).operator.list_bids(pb::ListBidsRequest { auction_id: id.clone() }).await.unwrap_err();
        assert_eq!((err.code(), reason(&err).0.as_str()), (Code::FailedPrecondition, "BIDS_SEALED"), "{who}");
        assert!(!err.message().contains("19876"), "{who} learned a price");
    }
    let b2_view = server
        .as_("b2")
        .trading
        .list_my_bids(pb::ListMyBidsRequest { auction_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(b2_view.bids.is_empty());
    // Guessing b1's bid id tells b2 nothing more than guessing a random one.
    let probe = |bid_id: String| pb::WithdrawBidRequest {
        request_id: format!("probe-{bid_id}"),
        auction_id: id.clone(),
        bid_id,
    };
    let real = server.as_("b2").trading.withdraw_bid(probe(secret.bid_id.clone())).await.unwrap_err();
    let fake = server.as_("b2").trading.withdraw_bid(probe("0123456789abcdef".into())).await.unwrap_err();
    assert_eq!((real.code(), real.message()), (fake.code(), fake.message()));
    assert_eq!(reason(&real), reason(&fake));
    // b2's own rejected bid says nothing about b1's.
    let err = server.as_("b2").trading.place_bid(bid(&id, "17000.00", "1.000")).await.unwrap_err();
    assert!(!err.message().contains("19876") && !err.message().contains("3.000"));
    // b1 sees its own bids.
    let mine = server
        .as_("b1")
        .trading
        .list_my_bids(pb::ListMyBidsRequest { auction_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.bids.len(), 2);
    assert_eq!(mine.bids[0].price, "19876.54");

    // After the close, the auditor may read the book.
    close(&server, &id).await;
    let all =
        server.as_("auditor").operator.list_bids(pb::ListBidsRequest { auction_id: id }).await.unwrap().into_inner();
    assert_eq!(all.bids.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn settlements_stream_resumes_from_a_sequence_number() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = open_auction(
            &server,
            reserve_lot(&format!("RES-STREAM-{n}"), "1.000", "1.000"),
            pb::AuctionFormat::SealedUniformPrice,
        )
        .await;
        server.as_("b1").trading.place_bid(bid(&id, "18000.00", "1.000")).await.unwrap();
        ids.push(id);
    }
    let mut live = server
        .as_("observer")
        .results
        .subscribe_settlements(pb::SubscribeSettlementsRequest { from_sequence: 1 })
        .await
        .unwrap()
        .into_inner();
    close(&server, &ids[0]).await;
    close(&server, &ids[1]).await;
    let first = live.message().await.unwrap().unwrap();
    let second = live.message().await.unwrap().unwrap();
    assert_eq!((first.sequence, first.auction_id.as_str()), (1, ids[0].as_str()));
    assert_eq!((second.sequence, second.auction_id.as_str()), (2, ids[1].as_str()));
    // A reconnecting client asks from 2 and gets 2, then the live 3.
    let mut resumed = server
        .as_("observer")
        .results
        .subscribe_settlements(pb::SubscribeSettlementsRequest { from_sequence: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.message().await.unwrap().unwrap().sequence, 2);
    close(&server, &ids[2]).await;
    let third = resumed.message().await.unwrap().unwrap();
    assert_eq!((third.sequence, third.auction_id.as_str()), (3, ids[2].as_str()));
    assert_eq!(live.message().await.unwrap().unwrap().sequence, 3);
    // A settlement is not available before the close.
    let id =
        open_auction(&server, reserve_lot("RES-STREAM-X", "1.000", "1.000"), pb::AuctionFormat::SealedUniformPrice)
            .await;
    let err =
        server.as_("observer").results.get_settlement(pb::GetSettlementRequest { auction_id: id }).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::FailedPrecondition, "NOT_SETTLED"));
    drop((live, resumed));
    server.stop().await;
}

#[tokio::test]
async fn timers_open_and_close_auctions() {
    let server = TestServer::start_real_time().await;
    let now = server.now();
    let mut op = server.as_("operator");
    let request = create(
        reserve_lot("RES-TIMER", "5.000", "1.000"),
        pb::AuctionFormat::SealedUniformPrice,
        now.plus_micros(100_000),
        now.plus_micros(600_000),
    );
    let id = op.operator.create_auction(request).await.unwrap().into_inner().auction_id;
    let mut live = server
        .as_("observer")
        .results
        .subscribe_settlements(pb::SubscribeSettlementsRequest { from_sequence: 1 })
        .await
        .unwrap()
        .into_inner();
    let err = server.as_("b1").trading.place_bid(bid(&id, "18000.00", "1.000")).await.unwrap_err();
    assert_eq!(reason(&err).0, "AUCTION_NOT_OPEN");
    // Wait for the open timer, then bid.
    let mut placed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if server.as_("b1").trading.place_bid(bid(&id, "18100.00", "2.000")).await.is_ok() {
            placed = true;
            break;
        }
    }
    assert!(placed, "the auction never opened");
    let s = tokio::time::timeout(Duration::from_secs(5), live.message())
        .await
        .expect("the close timer fired")
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.auction_id.as_str(), s.clearing_price.as_str(), s.sold_quantity.as_str()),
        (id.as_str(), "18100.00", "2.000")
    );
    let a = op.operator.get_auction(pb::GetAuctionRequest { auction_id: id }).await.unwrap().into_inner();
    assert_eq!(a.phase, pb::AuctionPhase::Settled as i32);
    drop(live);
    server.stop().await;
}

async fn my_bids(server: &TestServer, who: &str, auction: &str) -> Vec<pb::Bid> {
    server
        .as_(who)
        .trading
        .list_my_bids(pb::ListMyBidsRequest { auction_id: auction.into() })
        .await
        .unwrap()
        .into_inner()
        .bids
}

#[tokio::test]
async fn a_restart_keeps_every_acknowledged_change_and_emits_settlements_once() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-RESTART", "10.000", "1.000"), pb::AuctionFormat::SealedUniformPrice)
            .await;
    let first = server.as_("b1").trading.place_bid(bid(&id, "19000.00", "4.000")).await.unwrap().into_inner();
    server.as_("b2").trading.place_bid(bid(&id, "18500.00", "4.000")).await.unwrap();
    let gone = server.as_("b3").trading.place_bid(bid(&id, "18900.00", "4.000")).await.unwrap().into_inner();
    let withdraw =
        pb::WithdrawBidRequest { request_id: "w-restart".into(), auction_id: id.clone(), bid_id: gone.bid_id.clone() };
    server.as_("b3").trading.withdraw_bid(withdraw).await.unwrap();
    let revise = pb::ReviseBidRequest {
        request_id: "r-restart".into(),
        auction_id: id.clone(),
        bid_id: first.bid_id.clone(),
        price: "19100.00".into(),
        quantity: "4.000".into(),
    };
    server.as_("b1").trading.revise_bid(revise).await.unwrap();
    let mut before = Vec::new();
    for who in ["b1", "b2", "b3"] {
        before.push(my_bids(&server, who, &id).await);
    }
    let view_before = server
        .as_("operator")
        .operator
        .get_auction(pb::GetAuctionRequest { auction_id: id.clone() })
        .await
        .unwrap()
        .into_inner();

    let server = server.restart(Timestamp::from_micros(T0 + 60_000_000)).await;
    for (who, expected) in ["b1", "b2", "b3"].into_iter().zip(&before) {
        assert_eq!(&my_bids(&server, who, &id).await, expected, "{who}'s bids changed across the restart");
    }
    let view_after = server
        .as_("operator")
        .operator
        .get_auction(pb::GetAuctionRequest { auction_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view_after, view_before);
    // The restarted auction keeps trading, and the revised bid kept its id.
    server.as_("b4").trading.place_bid(bid(&id, "18600.00", "4.000")).await.unwrap();
    let settled = close(&server, &id).await;
    let f = |n| firm(n).to_string();
    assert_eq!(
        allocations(&settled),
        vec![
            (f(1), "4.000".into(), "18500.00".into(), "74000.00".into(), "555.00".into()),
            (f(4), "4.000".into(), "18500.00".into(), "74000.00".into(), "555.00".into()),
            (f(2), "2.000".into(), "18500.00".into(), "37000.00".into(), "277.50".into()),
        ]
    );
    assert_eq!(settled.allocations[0].bid_id, first.bid_id);

    // Replaying a journal that ends in a close derives the same settlement and records nothing new.
    let server = server.restart(Timestamp::from_micros(T0 + 120_000_000)).await;
    let again = settlement(&server, &id).await;
    assert_eq!(again, settled);
    let lines = std::fs::read_to_string(server.dir.path().join("settlements.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 1, "a settlement was recorded twice");
    let all = server
        .as_("auditor")
        .operator
        .list_bids(pb::ListBidsRequest { auction_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.bids.len(), 4);
    // Numbering continues after the replayed auctions.
    let t = server.now();
    let next = server
        .as_("operator")
        .operator
        .create_auction(create(
            reserve_lot("RES-RESTART-2", "1.000", "1.000"),
            pb::AuctionFormat::SealedUniformPrice,
            t.plus_micros(HOUR),
            t.plus_micros(2 * HOUR),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.auction_id, "AUC-0002");
    server.stop().await;
}

#[tokio::test]
async fn an_auction_whose_close_passed_while_down_closes_as_of_its_close_time() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-DOWN", "10.000", "1.000"), pb::AuctionFormat::SealedUniformPrice).await;
    server.as_("b1").trading.place_bid(bid(&id, "18200.00", "3.000")).await.unwrap();
    // Down for two hours across the close at T0 + 1 h.
    let server = server.restart(Timestamp::from_micros(T0 + 2 * HOUR)).await;
    // The overdue close is processed after the restart.
    let settled = await_settlement(&server, &id).await;
    assert_eq!(
        settled.settled_at,
        Some(to_timestamp(Timestamp::from_micros(T0 + HOUR))),
        "closed as of its scheduled close"
    );
    assert_eq!((settled.clearing_price.as_str(), settled.sold_quantity.as_str()), ("18200.00", "3.000"));
    // The wall clock jumps back before the close: the auction stays closed, now and after a restart.
    server.set_time(Timestamp::from_micros(T0));
    let err = server.as_("b2").trading.place_bid(bid(&id, "18300.00", "1.000")).await.unwrap_err();
    assert_eq!(reason(&err).0, "AUCTION_CLOSED");
    let server = server.restart(Timestamp::from_micros(T0)).await;
    let a = server
        .as_("operator")
        .operator
        .get_auction(pb::GetAuctionRequest { auction_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.phase, pb::AuctionPhase::Settled as i32);
    let again = settlement(&server, &id).await;
    assert_eq!(again, settled);
    assert_eq!(std::fs::read_to_string(server.dir.path().join("settlements.jsonl")).unwrap().lines().count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn retried_requests_return_the_original_result_and_change_nothing_even_across_restarts() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-RETRY", "10.000", "1.000"), pb::AuctionFormat::SealedUniformPrice).await;
    let with_id = |request_id: &str, price: &str| pb::PlaceBidRequest {
        request_id: request_id.into(),
        auction_id: id.clone(),
        price: price.into(),
        quantity: "2.000".into(),
    };
    let mut b1 = server.as_("b1");

    // A plain retry: the same receipt, one bid.
    let first = b1.trading.place_bid(with_id("r-1", "19000.00")).await.unwrap().into_inner();
    let retried = b1.trading.place_bid(with_id("r-1", "19000.00")).await.unwrap().into_inner();
    assert_eq!(retried, first);
    assert_eq!(my_bids(&server, "b1", &id).await.len(), 1);

    // The same id for a different request is refused and the original is untouched.
    let err = b1.trading.place_bid(with_id("r-1", "19500.00")).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::AlreadyExists, "REQUEST_ID_REUSED"));
    assert_eq!(field_of(&err), "request_id");
    assert_eq!(reason(&err).1["request_id"], "r-1");
    let mine = my_bids(&server, "b1", &id).await;
    assert_eq!((mine.len(), mine[0].price.as_str()), (1, "19000.00"));
    // So is the same id for another method.
    let withdraw =
        pb::WithdrawBidRequest { request_id: "r-1".into(), auction_id: id.clone(), bid_id: first.bid_id.clone() };
    let err = b1.trading.withdraw_bid(withdraw).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // Request ids belong to their principal: b2's "r-1" is b2's own request.
    let other = server.as_("b2").trading.place_bid(with_id("r-1", "19000.00")).await.unwrap().into_inner();
    assert_ne!(other.bid_id, first.bid_id);

    // Concurrent duplicates run once and all get the one answer.
    let mut racing = Vec::new();
    for _ in 0..20 {
        let mut terminal = server.as_("b1");
        let request = with_id("r-2", "18800.00");
        racing.push(tokio::spawn(async move { terminal.trading.place_bid(request).await.unwrap().into_inner() }));
    }
    let mut receipts = Vec::new();
    for task in racing {
        receipts.push(task.await.unwrap());
    }
    assert!(receipts.iter().all(|r| r == &receipts[0]), "duplicates got different receipts");
    assert_eq!(my_bids(&server, "b1", &id).await.len(), 2);

    // A refused request changes nothing, so its id stays free for a corrected request.
    let err = b1.trading.place_bid(with_id("r-3", "17000.00")).await.unwrap_err();
    assert_eq!(reason(&err).0, "BELOW_FLOOR");
    let corrected = b1.trading.place_bid(with_id("r-3", "18100.00")).await.unwrap().into_inner();
    assert_eq!(corrected.price, "18100.00");

    // A retried revision answers with its own receipt, not the bid as later revised.
    let revise = |request_id: &str, price: &str| pb::ReviseBidRequest {
        request_id: request_id.into(),
        auction_id: id.clone(),
        bid_id: first.bid_id.clone(),
        price: price.into(),
        quantity: "2.000".into(),
    };
    let rev1 = b1.trading.revise_bid(revise("rev-1", "19200.00")).await.unwrap().into_inner();
    b1.trading.revise_bid(revise("rev-2", "19300.00")).await.unwrap();
    assert_eq!(b1.trading.revise_bid(revise("rev-1", "19200.00")).await.unwrap().into_inner(), rev1);
    let current = my_bids(&server, "b1", &id).await;
    assert_eq!(current.iter().find(|b| b.bid_id == first.bid_id).unwrap().price, "19300.00");
    let before = my_bids(&server, "b1", &id).await;

    // After a restart, the journal still knows every request.
    let server = server.restart(Timestamp::from_micros(T0 + 60_000_000)).await;
    let mut b1 = server.as_("b1");
    assert_eq!(b1.trading.place_bid(with_id("r-1", "19000.00")).await.unwrap().into_inner(), first);
    assert_eq!(b1.trading.place_bid(with_id("r-2", "18800.00")).await.unwrap().into_inner(), receipts[0]);
    assert_eq!(b1.trading.revise_bid(revise("rev-1", "19200.00")).await.unwrap().into_inner(), rev1);
    let err = b1.trading.place_bid(with_id("r-2", "18900.00")).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::AlreadyExists, "REQUEST_ID_REUSED"));
    assert_eq!(my_bids(&server, "b1", &id).await, before);
    // The operator's creation is a request too.
    let t0 = Timestamp::from_micros(T0);
    let recreated = server
        .as_("operator")
        .operator
        .create_auction(create(
            reserve_lot("RES-RETRY", "10.000", "1.000"),
            pb::AuctionFormat::SealedUniformPrice,
            t0.plus_micros(HOUR / 6),
            t0.plus_micros(HOUR),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recreated.auction_id, id);
    server.stop().await;
}

#[tokio::test]
async fn a_forward_clock_jump_closes_an_auction_once_as_of_its_close() {
    let server = TestServer::start().await;
    let id =
        open_auction(&server, reserve_lot("RES-JUMP", "10.000", "1.000"), pb::AuctionFormat::SealedUniformPrice).await;
    server.as_("b1").trading.place_bid(bid(&id, "18400.00", "2.000")).await.unwrap();
    // The wall clock leaps two hours, past the close, before the close timer has fired.
    server.set_time(Timestamp::from_micros(T0 + 3 * HOUR));
    let err = server.as_("b2").trading.place_bid(bid(&id, "19000.00", "2.000")).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).0.as_str()), (Code::FailedPrecondition, "AUCTION_CLOSED"));
    // The auction's timer sees the jump at its next wake-up and closes it as of closes_at.
    let settled = await_settlement(&server, &id).await;
    assert_eq!(settled.settled_at, Some(to_timestamp(Timestamp::from_micros(T0 + HOUR))), "as of its close");
    assert_eq!(settled.sold_quantity, "2.000");
    // A second close is refused and records nothing; neither does a restart.
    let err = server.as_("operator").operator.close_auction(aref(&id)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let server = server.restart(Timestamp::from_micros(T0 + 4 * HOUR)).await;
    let again = settlement(&server, &id).await;
    assert_eq!(again, settled);
    assert_eq!(std::fs::read_to_string(server.dir.path().join("settlements.jsonl")).unwrap().lines().count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn fixed_price_sale_end_to_end() {
    let server = TestServer::start().await;
    let id = open_auction(&server, reserve_lot("RES-POSTED", "10.000", "1.000"), pb::AuctionFormat::FixedPrice).await;
    let auction = server
        .as_("operator")
        .operator
        .get_auction(pb::GetAuctionRequest { auction_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((auction.floor_price.as_str(), auction.cap_price.as_str()), ("18000.00", ""));
    // The price may be left to the sale; any other price is refused with the posted one.
    let at_posted = server.as_("b1").trading.place_bid(bid(&id, "", "6.000")).await.unwrap().into_inner();
    assert_eq!(at_posted.price, "18000.00");
    let err = server.as_("b2").trading.place_bid(bid(&id, "18500.00", "6.000")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), ("NOT_POSTED_PRICE".into(), HashMap::from([("posted_price".into(), "18000.00".into())])));
    server.as_("b2").trading.place_bid(bid(&id, "18000.00", "6.000")).await.unwrap();
    let settled = close(&server, &id).await;
    assert_eq!(settled.format, pb::AuctionFormat::FixedPrice as i32);
    let f = |n| firm(n).to_string();
    assert_eq!(
        allocations(&settled),
        vec![
            (f(1), "6.000".into(), "18000.00".into(), "108000.00".into(), "810.00".into()),
            (f(2), "4.000".into(), "18000.00".into(), "72000.00".into(), "540.00".into()),
        ]
    );
    server.stop().await;
}

/// Regression: a second whole-lot bid on a 9,000,000 t lot with no per-bidder cap once
/// panicked the auction's task (the bidder's total overflowed) and left the auction answering
/// SHUTTING_DOWN to everyone. It is refused with the room left, and the auction goes on.
#[tokio::test]
async fn two_whole_lot_bids_are_refused_with_the_room_left_and_the_auction_keeps_working() {
    let server = TestServer::start().await;
    let mut lot = reserve_lot("RES-SO2-HUGE", "9000000.000", "1.000");
    lot.origin = pb::LotOrigin::Allocated as i32;
    let mut request = create(lot, pb::AuctionFormat::SealedUniformPrice, server.now(), server.now().plus_micros(HOUR));
    request.cap_mode = pb::CapMode::None as i32;
    let id = server.as_("operator").operator.create_auction(request).await.unwrap().into_inner().auction_id;
    let mut b1 = server.as_("b1");
    b1.trading.place_bid(bid(&id, "18000.00", "9000000.000")).await.unwrap();
    let refused = b1.trading.place_bid(bid(&id, "18000.00", "9000000.000")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let (code, metadata) = reason(&refused);
    assert_eq!(code, "BIDDER_TOTAL_TOO_LARGE");
    assert_eq!(metadata["limit"], "9999999.999");
    assert_eq!(metadata["room_left"], "999999.999");
    // The auction still answers everyone, takes bids and settles.
    b1.trading.place_bid(bid(&id, "18100.00", "999999.000")).await.unwrap();
    server.as_("b2").trading.place_bid(bid(&id, "18200.00", "9000000.000")).await.unwrap();
    assert_eq!(my_bids(&server, "b1", &id).await.len(), 2);
    let s = close(&server, &id).await;
    assert_eq!(s.status, pb::SettlementStatus::Settled as i32);
    assert_eq!(s.clearing_price, "18200.00");
    assert_eq!(s.total_amount, "163800000000.00");
    assert_eq!(
        allocations(&s),
        vec![(
            firm(2).to_string(),
            "9000000.000".into(),
            "18200.00".into(),
            "163800000000.00".into(),
            "1228500000.00".into()
        )]
    );
}

/// A lot on sale cannot be offered twice; once its auction failed it can, and once sold it
/// cannot. GetSettlement before the end says NOT_SETTLED, not NOT_FOUND.
#[tokio::test]
async fn a_failed_lot_is_offered_again_and_a_sold_one_is_not() {
    let server = TestServer::start().await;
    let mut op = server.as_("operator");
    let lot = || reserve_lot("RES-SO2-AGAIN", "10.000", "1.000");
    let first = open_auction(&server, lot(), pb::AuctionFormat::SealedUniformPrice).await;
    let early = server
        .as_("observer")
        .results
        .get_settlement(pb::GetSettlementRequest { auction_id: first.clone() })
        .await
        .unwrap_err();
    assert_eq!((early.code(), reason(&early).0.as_str()), (Code::FailedPrecondition, "NOT_SETTLED"));
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let request = || {
        let (opens, closes) = (server.now().plus_micros(HOUR / 6), server.now().plus_micros(HOUR));
        let mut request = create(lot(), pb::AuctionFormat::SealedUniformPrice, opens, closes);
        // Each offer is a new request.
        request.request_id = format!("offer-{}", attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        request
    };
    let taken = op.operator.create_auction(request()).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let (code, metadata) = reason(&taken);
    assert_eq!((code.as_str(), metadata["auction_id"].as_str()), ("LOT_ON_SALE", first.as_str()));
    let failed = close(&server, &first).await;
    assert_eq!((failed.status, failed.reason.as_str()), (pb::SettlementStatus::Failed as i32, "NO_BIDS"));
    let second = op.operator.create_auction(request()).await.unwrap().into_inner().auction_id;
    op.operator.open_auction(aref(&second)).await.unwrap();
    // A fixed price needs no price, and this divisible lot a quantity; here a uniform-price
    // bid leaves neither out.
    server.as_("b1").trading.place_bid(bid(&second, "18000.00", "10.000")).await.unwrap();
    assert_eq!(close(&server, &second).await.status, pb::SettlementStatus::Settled as i32);
    let sold = op.operator.create_auction(request()).await.unwrap_err();
    let (code, metadata) = reason(&sold);
    assert_eq!((code.as_str(), metadata["auction_id"].as_str()), ("LOT_SOLD", second.as_str()));
}

/// The engine resolves what a bid leaves out: the posted price of a fixed-price sale, the whole
/// lot of a single-lot auction; a divisible lot without a quantity is INVALID_ARGUMENT naming it.
#[tokio::test]
async fn empty_prices_and_quantities_are_resolved_by_the_auction() {
    let server = TestServer::start().await;
    let fixed =
        open_auction(&server, reserve_lot("RES-SO2-FIXED", "10.000", "1.000"), pb::AuctionFormat::FixedPrice).await;
    let receipt = server.as_("b1").trading.place_bid(bid(&fixed, "", "4.000")).await.unwrap().into_inner();
    assert_eq!((receipt.price.as_str(), receipt.quantity.as_str()), ("18000.00", "4.000"));
    let missing = server.as_("b2").trading.place_bid(bid(&fixed, "", "")).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_eq!((reason(&missing).0.as_str(), field_of(&missing).as_str()), ("QUANTITY_REQUIRED", "quantity"));
    let single = open_auction(
        &server,
        erc_lot("ERC-NOX-WHOLE", pb::Pollutant::Nox, "2.500"),
        pb::AuctionFormat::SealedFirstPrice,
    )
    .await;
    let receipt = server.as_("b3").trading.place_bid(bid(&single, "19500.00", "")).await.unwrap().into_inner();
    assert_eq!(receipt.quantity, "2.500");
    let no_price = server.as_("b3").trading.place_bid(bid(&single, "", "")).await.unwrap_err();
    assert_eq!((reason(&no_price).0.as_str(), field_of(&no_price).as_str()), ("PRICE_REQUIRED", "price"));
}
