//! Deposits (保证金) over gRPC: an auction states its deposit rule, operators record deposits
//! received, bids are refused with the missing amount when the deposit does not cover the
//! bidder's exposure, deposits survive a restart (they are journaled commands of the auction),
//! and the settlement shows what was applied and released.

use emission_auction::domain::Timestamp;
use emission_auction::proto as pb;

use super::grpc::{TestServer, aref, bid, create, erc_lot, firm, reason, reserve_lot, settlement};

const HOUR: i64 = 3_600_000_000;

fn deposit(id: &str, n: u32, amount: &str, request_id: &str) -> pb::RecordDepositRequest {
    pb::RecordDepositRequest {
        request_id: request_id.into(),
        auction_id: id.into(),
        enterprise: firm(n).to_string(),
        amount: amount.into(),
    }
}

#[tokio::test]
async fn deposits_bound_exposure_and_settle() {
    let server = TestServer::start().await;
    let mut op = server.as_("operator");
    let t0 = server.now();
    let lot = reserve_lot("SX-RES-DEP-1", "4.000", "1.000");
    let mut request = create(lot, pb::AuctionFormat::SealedPayAsBid, t0.plus_micros(HOUR / 6), t0.plus_micros(HOUR));
    // 10% x 18000 x 4 t x 5 years = 36000.00.
    request.deposit = Some(pb::DepositRule { percent: "10".into(), years: 5, ..Default::default() });
    let created = op.operator.create_auction(request).await.unwrap().into_inner();
    let id = created.auction_id;
    assert_eq!(created.deposit_required, "36000.00");
    assert_eq!(created.deposit.unwrap().percent, "10");
    // No policy factors here: the floor is the benchmark, and GetAuction says so.
    assert!(created.price_factors.is_empty());
    assert!(
        created.price_derivation.starts_with("floor = benchmark 18000.00 x conversion factor 1"),
        "{}",
        created.price_derivation
    );

    // Recorded deposits add up; a retry of the same request does not count twice.
    let d = op.operator.record_deposit(deposit(&id, 1, "30000.00", "d-1")).await.unwrap().into_inner();
    assert_eq!((d.deposit.as_str(), d.required.as_str()), ("30000.00", "36000.00"));
    op.operator.record_deposit(deposit(&id, 1, "30000.00", "d-1")).await.unwrap();
    let d = op.operator.record_deposit(deposit(&id, 1, "30000.00", "d-1b")).await.unwrap().into_inner();
    assert_eq!(d.deposit, "60000.00");
    op.operator.record_deposit(deposit(&id, 2, "40000.00", "d-2")).await.unwrap();
    // Bidders may not record deposits; malformed amounts name the field.
    assert!(server.as_("b1").operator.record_deposit(deposit(&id, 1, "1.00", "x")).await.is_err());
    let bad = op.operator.record_deposit(deposit(&id, 1, "1.001", "bad")).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    op.operator.open_auction(aref(&id)).await.unwrap();

    // b1: 20000 x 2 = 40000, then 19000 x (2 + 1) = 57000: within 60000; one more tonne at
    // 19000 would make 76000.
    let mut b1 = server.as_("b1");
    b1.trading.place_bid(bid(&id, "20000.00", "2.000")).await.unwrap();
    b1.trading.place_bid(bid(&id, "19000.00", "1.000")).await.unwrap();
    let refused = b1.trading.place_bid(bid(&id, "19000.00", "1.000")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let (code, meta) = reason(&refused);
    assert_eq!(code, "DEPOSIT_INSUFFICIENT");
    assert_eq!(
        (meta["deposit"].as_str(), meta["exposure"].as_str(), meta["missing"].as_str()),
        ("60000.00", "76000.00", "16000.00")
    );
    // b3 posted nothing: the required deposit is missing.
    let refused = server.as_("b3").trading.place_bid(bid(&id, "18000.00", "1.000")).await.unwrap_err();
    let (code, meta) = reason(&refused);
    assert_eq!((code.as_str(), meta["missing"].as_str()), ("DEPOSIT_INSUFFICIENT", "36000.00"));

    // Deposits are journaled with the auction: after a restart they still count.
    let server = server.restart(Timestamp::from_micros(t0.as_micros() + HOUR / 2)).await;
    server.as_("b2").trading.place_bid(bid(&id, "18500.00", "2.000")).await.unwrap();
    let refused = server.as_("b1").trading.place_bid(bid(&id, "19000.00", "1.000")).await.unwrap_err();
    assert_eq!(reason(&refused).0, "DEPOSIT_INSUFFICIENT");

    server.as_("operator").operator.close_auction(aref(&id)).await.unwrap();
    let s = settlement(&server, &id).await;
    // b1 wins 3 t for 59000 + 442.50 fee, applied from its 60000; b2 wins 1 t for 18500 +
    // 138.75, applied from its 40000.
    let outcome: Vec<(String, &str, &str, &str)> = s
        .deposits
        .iter()
        .map(|d| (d.enterprise.clone(), d.deposit.as_str(), d.applied.as_str(), d.released.as_str()))
        .collect();
    assert_eq!(
        outcome,
        [
            (firm(1).to_string(), "60000.00", "59442.50", "557.50"),
            (firm(2).to_string(), "40000.00", "18638.75", "21361.25"),
        ]
    );
    server.stop().await;
}

/// Policy's conversion factors apply at creation: the lot's region always, the seller's
/// industry section as the registry has it; GetAuction shows the factors and the derivation.
#[tokio::test]
async fn price_factors_follow_the_region_and_the_sellers_industry() {
    use emission_auction::domain::{FactorScope, PriceFactor, PricePolicy, Ratio};
    let from = Timestamp::from_micros(0);
    let prices = PricePolicy {
        factors: vec![
            PriceFactor {
                scope: FactorScope::Region("140200".parse().unwrap()),
                from,
                factor: Ratio::from_ppm(1_100_000),
            },
            PriceFactor { scope: FactorScope::IndustrySection('C'), from, factor: Ratio::from_ppm(1_050_000) },
        ],
        ..PricePolicy::default()
    };
    let server = TestServer::start_priced(prices).await;
    let mut op = server.as_("operator");
    let t0 = server.now();
    let (opens, closes) = (t0.plus_micros(HOUR / 6), t0.plus_micros(HOUR));
    // The seller (firm 9) is not registered yet: only the region factor, 19000 x 1.1.
    let lot = erc_lot("SX-ERC-PF-1", pb::Pollutant::Nox, "2.000");
    let a = op.operator.create_auction(create(lot, pb::AuctionFormat::SealedFirstPrice, opens, closes)).await;
    let a = a.unwrap().into_inner();
    assert_eq!((a.floor_price.as_str(), a.cap_price.as_str()), ("20900.00", "25080.00"));
    assert_eq!(a.price_factors.len(), 1);
    // Registered as a manufacturer (section C): 19000 x 1.1 x 1.05 = 21945.00.
    let seller = pb::Enterprise {
        credit_code: firm(9).to_string(),
        name: "seller".into(),
        region_code: "140200".into(),
        industry_code: "C3011".into(),
        ..Default::default()
    };
    let add = pb::EnterpriseRequest { request_id: "add-9".into(), enterprise: Some(seller) };
    op.operator.add_enterprise(add).await.unwrap();
    let lot = erc_lot("SX-ERC-PF-2", pb::Pollutant::Nox, "2.000");
    let a = op.operator.create_auction(create(lot, pb::AuctionFormat::SealedFirstPrice, opens, closes)).await;
    let a = a.unwrap().into_inner();
    assert_eq!((a.floor_price.as_str(), a.cap_price.as_str()), ("21945.00", "26334.00"));
    let sections: Vec<&str> = a.price_factors.iter().map(|f| f.industry_section.as_str()).collect();
    assert_eq!(sections, ["", "C"]);
    assert_eq!(
        a.price_derivation,
        "floor = benchmark 19000.00 x conversion factor 1 x region 140200 factor 1.1 (from 1970-01-01) x industry \
         section C factor 1.05 (from 1970-01-01) = 21945.00 (rounded up to the fen); cap = floor x (1 + 20%) = \
         26334.00 (rounded down to the fen)"
    );
    // The spec is journaled as resolved: a restart shows the same floor.
    let server = server.restart(t0).await;
    let mut op = server.as_("operator");
    let got = op.operator.get_auction(pb::GetAuctionRequest { auction_id: a.auction_id.clone() }).await.unwrap();
    assert_eq!(got.into_inner().floor_price, "21945.00");
    server.stop().await;
}
