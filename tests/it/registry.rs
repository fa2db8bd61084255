//! The enterprise registry over gRPC: operators register enterprises, bids are checked
//! against the registry as it stands, a later change never rewrites a bid already taken, and
//! the registry survives a restart (it is replayed from the journal).

use emission_auction::domain::{EligibilityPolicy, Timestamp};
use emission_auction::proto as pb;

use super::grpc::{TestServer, aref, bid, create, firm, reason, reserve_lot, settlement};

const HOUR: i64 = 3_600_000_000;

fn enterprise(n: u32, industry: &str) -> pb::Enterprise {
    pb::Enterprise {
        credit_code: firm(n).to_string(),
        name: format!("firm {n}"),
        region_code: "140100".into(),
        industry_code: industry.into(),
        permit_number: format!("91140100-{n:03}P"),
        permit_valid_from: "2025-01-01".into(),
        permit_valid_until: "2028-12-31".into(),
        ..Default::default()
    }
}

fn add(n: u32, e: pb::Enterprise) -> pb::EnterpriseRequest {
    pb::EnterpriseRequest { request_id: format!("add-{n}"), enterprise: Some(e) }
}

#[tokio::test]
async fn a_reserve_auction_admits_registered_enterprises_only() {
    let server = TestServer::start_enforcing(EligibilityPolicy::default()).await;
    let mut op = server.as_("operator");
    // Ten registered enterprises; b10 is in retail (section F), which is not admitted.
    for n in 1..=10 {
        let industry = if n == 10 { "F5100" } else { "C2511" };
        op.operator.add_enterprise(add(n, enterprise(n, industry))).await.unwrap();
    }
    // A retried add answers the same; a second add of the same code is refused.
    op.operator.add_enterprise(add(1, enterprise(1, "C2511"))).await.unwrap();
    let again = pb::EnterpriseRequest { request_id: "add-1-again".into(), enterprise: Some(enterprise(1, "C2511")) };
    let err = op.operator.add_enterprise(again).await.unwrap_err();
    assert_eq!(reason(&err).0, "ENTERPRISE_EXISTS");
    // b9 is suspended before the auction.
    let suspend = |n: u32, status: pb::EnterpriseStatus, id: &str| pb::SetEnterpriseStatusRequest {
        request_id: id.into(),
        credit_code: firm(n).to_string(),
        status: status as i32,
        reason: "overdue discharge report".into(),
    };
    op.operator.suspend_enterprise(suspend(9, pb::EnterpriseStatus::Suspended, "s-9")).await.unwrap();
    let listed = op.operator.list_enterprises(pb::ListEnterprisesRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.enterprises.len(), 10);
    // Bidders may not list the registry.
    assert!(server.as_("b1").operator.list_enterprises(pb::ListEnterprisesRequest {}).await.is_err());

    let t0 = server.now();
    let lot = reserve_lot("SX-RES-REG-1", "16.000", "1.000");
    let request = create(lot, pb::AuctionFormat::SealedUniformPrice, t0.plus_micros(HOUR / 6), t0.plus_micros(HOUR));
    let id = op.operator.create_auction(request).await.unwrap().into_inner().auction_id;
    op.operator.open_auction(aref(&id)).await.unwrap();

    // Eight eligible enterprises bid 2 t each at rising prices.
    for n in 1..=8 {
        let price = format!("{}.00", 18000 + n * 100);
        server.as_(&format!("b{n}")).trading.place_bid(bid(&id, &price, "2.000")).await.unwrap();
    }
    let refused = server.as_("b9").trading.place_bid(bid(&id, "19000.00", "2.000")).await.unwrap_err();
    let (code, meta) = reason(&refused);
    assert_eq!(code, "ENTERPRISE_SUSPENDED");
    assert_eq!(meta["status_reason"], "overdue discharge report");
    let refused = server.as_("b10").trading.place_bid(bid(&id, "19000.00", "2.000")).await.unwrap_err();
    let (code, meta) = reason(&refused);
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(code, "INDUSTRY_NOT_ADMITTED");
    assert_eq!((meta["industry"].as_str(), meta["admitted_sections"].as_str()), ("F5100", "BCD"));
    let refused = server.as_("b11").trading.place_bid(bid(&id, "19000.00", "2.000")).await.unwrap_err();
    assert_eq!(reason(&refused).0, "NOT_REGISTERED");

    // CheckEligibility gives every reason at once.
    op.operator
        .update_enterprise(pb::EnterpriseRequest {
            request_id: "upd-9".into(),
            enterprise: Some(pb::Enterprise {
                industry_code: "F5100".into(),
                permit_number: String::new(),
                status: pb::EnterpriseStatus::Suspended as i32,
                status_reason: "overdue discharge report".into(),
                ..enterprise(9, "F5100")
            }),
        })
        .await
        .unwrap();
    let check = pb::CheckEligibilityRequest { auction_id: id.clone() };
    let answer = server.as_("b9").trading.check_eligibility(check.clone()).await.unwrap().into_inner();
    assert!(!answer.eligible);
    let reasons: Vec<&str> = answer.reasons.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["ENTERPRISE_SUSPENDED", "PERMIT_MISSING", "INDUSTRY_NOT_ADMITTED"]);
    let answer = server.as_("b2").trading.check_eligibility(check).await.unwrap().into_inner();
    assert!(answer.eligible && answer.reasons.is_empty());

    // b8 (the highest bid) is suspended after it bid: its bid stands and wins; its next bid
    // is refused.
    op.operator.suspend_enterprise(suspend(8, pb::EnterpriseStatus::Suspended, "s-8")).await.unwrap();
    let refused = server.as_("b8").trading.place_bid(bid(&id, "19900.00", "1.000")).await.unwrap_err();
    assert_eq!(reason(&refused).0, "ENTERPRISE_SUSPENDED");

    // The registry is journaled: a restart replays it, and the bids it judged stay.
    let server = server.restart(Timestamp::from_micros(t0.as_micros() + HOUR / 2)).await;
    let mut op = server.as_("operator");
    let listed = op.operator.list_enterprises(pb::ListEnterprisesRequest {}).await.unwrap().into_inner();
    let b8 = listed.enterprises.iter().find(|e| e.credit_code == firm(8).to_string()).unwrap();
    assert_eq!(b8.status, pb::EnterpriseStatus::Suspended as i32);
    // Reinstated, b8 may bid again.
    op.operator.suspend_enterprise(suspend(8, pb::EnterpriseStatus::Active, "r-8")).await.unwrap();
    server.as_("b8").trading.place_bid(bid(&id, "18050.00", "1.000")).await.unwrap();

    op.operator.close_auction(aref(&id)).await.unwrap();
    let s = settlement(&server, &id).await;
    let winners: Vec<String> = s.allocations.iter().map(|a| a.bidder.clone()).collect();
    assert!(winners.contains(&firm(8).to_string()), "b8's bid from before its suspension wins");
    assert!(!winners.contains(&firm(9).to_string()) && !winners.contains(&firm(10).to_string()));
    let sold: u32 = s.allocations.len() as u32;
    assert_eq!(sold, 8, "eight 2 t bids fill the 16 t lot");
    server.stop().await;
}
