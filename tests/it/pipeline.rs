//! Pipelined durability under journal failure: the exchange on a memory journal with injected
//! faults (the production writer and recovery, see `journal::MemoryStore`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use emission_auction::domain::{AuctionId, Price, PricePolicy, Quantity, Timestamp};
use emission_auction::engine::{
    AscendingRequest, AuctionRequest, BidRevision, CapMode, CapRequest, Command, Format, LotRequest, OriginKind, Phase,
    TieRule, Undersubscription,
};
use emission_auction::journal::{Faults, Journal, MemoryStore, Options};
use emission_auction::service::clock::ManualClock;
use emission_auction::service::{Exchange, Fingerprint, Origin, ServiceError};

use super::grpc::firm;

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000_000;
const HOUR: i64 = 3_600_000_000;

pub fn origin(principal: &str, n: u64) -> Origin {
    Origin {
        principal: principal.into(),
        request_id: format!("r-{n}"),
        fingerprint: Fingerprint::of("test", &n.to_le_bytes()),
    }
}

/// An exchange on `store`, whose journal fails as `faults` say.
async fn exchange(store: &MemoryStore, faults: Option<Arc<Faults>>) -> Arc<Exchange> {
    let (journal, recovered, _) = Journal::open_store(store.clone(), Options { faults, ..Options::default() }).unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0)));
    Arc::new(Exchange::recover(PricePolicy::default(), clock, Arc::new(journal), Vec::new(), &recovered).await.unwrap())
}

fn request(format: Format) -> AuctionRequest {
    request_for(format, "PIPE-1")
}

/// An auction of a 10 t lot `lot`, opening an hour after T0, with the terms its format needs.
pub fn request_for(format: Format, lot: &str) -> AuctionRequest {
    let english = format == Format::AscendingEnglish;
    AuctionRequest {
        lot: LotRequest {
            id: lot.parse().unwrap(),
            pollutant: emission_auction::domain::Pollutant::So2,
            quantity: Quantity::from_units(10_000).unwrap(),
            fill_unit: None,
            seller: firm(20),
            origin: OriginKind::Allocated,
            certificate_id: None,
            region: "140100".parse().unwrap(),
            vintage_year: 2025,
            valid_years: 5,
            project: Default::default(),
        },
        format,
        tie_rule: TieRule::TimePriority,
        undersubscription: Undersubscription::SellAvailable,
        min_bidders: 0,
        per_bidder_cap: None,
        revision: BidRevision::Revisable,
        conversion_factor: emission_auction::domain::Ratio::ONE,
        reserve_markup: None,
        cap: CapRequest { mode: CapMode::None, percent: None },
        opens_at: Timestamp::from_micros(T0 + HOUR),
        closes_at: Timestamp::from_micros(T0 + 2 * HOUR),
        ascending: english.then_some(AscendingRequest {
            start_price: None,
            increment: Price::from_units(100).unwrap(),
            countdown_seconds: 60,
            hard_stop: None,
            max_extensions: None,
            timed_min_bidders: 0,
        }),
        clock: None,
        deposit: None,
        seller_section: None,
    }
}

async fn open_auction(exchange: &Exchange, format: Format) -> AuctionId {
    let id = exchange.create_auction(request(format), origin("operator", 1)).await.unwrap().spec.id;
    exchange.operate(id, Command::Open, origin("operator", 2)).await.unwrap();
    id
}

/// An fsync fails in the middle of a burst of pipelined bids: no caller after the failure is
/// told OK, every later one gets UNAVAILABLE, a watcher sees no bid that was not acknowledged,
/// and from then on nothing about the auction is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_in_a_pipelined_burst_acknowledges_nothing_after_it() {
    let faults = Arc::new(Faults::default());
    let store = MemoryStore::new();
    let exchange = exchange(&store, Some(Arc::clone(&faults))).await;
    let id = open_auction(&exchange, Format::AscendingEnglish).await;
    let mut watch = exchange.watch(id, 0).unwrap();
    // 240 rising bids from two alternating bidders, each handed to the auction before the
    // next (so they pipeline); the journal starts failing its syncs after the first 80. (Fewer
    // updates than the watcher's queue holds, so the watcher need not read meanwhile.)
    let mut pending = Vec::new();
    for k in 0..240u64 {
        if k == 80 {
            faults.fail_syncs.store(true, Ordering::SeqCst);
        }
        let price = Price::from_units(1_800_000 + k as i64 * 100).unwrap();
        let who = (k % 2) as u32 + 1;
        pending.push(exchange.submit_bid(id, firm(who), Some(price), None, origin(&format!("b{who}"), 10 + k)));
    }
    let mut results = Vec::new();
    for p in pending {
        results.push(p.await);
    }
    let acknowledged = results.iter().take_while(|r| r.is_ok()).count();
    assert!(acknowledged <= 80, "nothing submitted after the failure was acknowledged");
    for (k, result) in results.iter().enumerate().skip(acknowledged) {
        match result {
            Err(ServiceError::Unavailable(_)) => {}
            other => panic!("bid {k} after the failure point got {other:?}"),
        }
    }
    assert!(acknowledged < 240, "the failure was noticed");
    println!("{acknowledged} of 240 bids acknowledged before the failed sync");
    // The watcher saw the opening and exactly the acknowledged bids, nothing after.
    let mut seen = Vec::new();
    while let Ok(update) = watch.live.try_recv() {
        seen.push(update);
    }
    let bids = seen.iter().filter(|u| u.kind == emission_auction::service::feed::UpdateKind::Bid).count();
    assert_eq!(bids, acknowledged, "watchers saw only acknowledged bids");
    if let Some(last) = seen.last() {
        let price = last.ascending.and_then(|a| a.current_price);
        let expected = acknowledged.checked_sub(1).map(|k| Price::from_units(1_800_000 + k as i64 * 100).unwrap());
        assert_eq!(price, expected, "the last public price is the last acknowledged bid's");
    }
    // From now on nothing about the auction is answered from memory.
    assert!(matches!(exchange.get(id), Err(ServiceError::Unavailable(_))));
    assert!(matches!(exchange.list(&Default::default()), Err(ServiceError::Unavailable(_))));
    assert!(matches!(exchange.bids_of(id, firm(1)).await, Err(ServiceError::Unavailable(_))));
    let late = exchange.place_bid(id, firm(1), Some(Price::MAX), None, origin("b1", 99_999)).await;
    assert!(matches!(late, Err(ServiceError::Unavailable(_))), "{late:?}");
    assert!(exchange.health().borrow().is_some(), "health reports the failure");
    exchange.shutdown().await;
}

/// A close that fails to journal never unseals the bids: the auditor's ListBids is refused,
/// and after a restart the auction is open again with its bids sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_that_fails_to_journal_never_unseals_bids() {
    let faults = Arc::new(Faults::default());
    let store = MemoryStore::new();
    let exchange = exchange(&store, Some(Arc::clone(&faults))).await;
    let id = open_auction(&exchange, Format::SealedUniformPrice).await;
    for k in 0..20u64 {
        let who = (k % 4) as u32 + 1;
        let price = Price::from_units(1_800_000 + k as i64 * 1000).unwrap();
        let quantity = Quantity::from_units(1000).unwrap();
        exchange
            .place_bid(id, firm(who), Some(price), Some(quantity), origin(&format!("b{who}"), 10 + k))
            .await
            .unwrap();
    }
    assert!(matches!(
        exchange.all_bids(id).await,
        Err(ServiceError::Engine(emission_auction::engine::EngineError::BidsSealed { .. }))
    ));
    faults.fail_syncs.store(true, Ordering::SeqCst);
    let closed = exchange.operate(id, Command::Close, origin("operator", 3)).await;
    assert!(matches!(closed, Err(ServiceError::Unavailable(_))), "{closed:?}");
    let bids = exchange.all_bids(id).await;
    assert!(matches!(bids, Err(ServiceError::Unavailable(_))), "the failed close unsealed nothing: {bids:?}");
    assert!(matches!(exchange.settlement(id).await, Err(ServiceError::Unavailable(_))));
    exchange.shutdown().await;
    drop(exchange);

    // The close's record was written but never synced; a power loss takes it. A restart then
    // returns to exactly what the journal holds: the auction open, its bids sealed.
    store.crash(0);
    let exchange = self::exchange(&store, None).await;
    assert_eq!(exchange.get(id).unwrap().phase, Phase::Open);
    assert!(matches!(
        exchange.all_bids(id).await,
        Err(ServiceError::Engine(emission_auction::engine::EngineError::BidsSealed { .. }))
    ));
    assert_eq!(exchange.bids_of(id, firm(1)).await.unwrap().len(), 5);
    exchange.shutdown().await;
}

/// A refused creation is never listed: the auction appears only once it is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_that_fails_to_journal_is_never_listed() {
    let faults = Arc::new(Faults::default());
    let store = MemoryStore::new();
    let exchange = exchange(&store, Some(Arc::clone(&faults))).await;
    faults.fail_syncs.store(true, Ordering::SeqCst);
    let created = exchange.create_auction(request(Format::SealedUniformPrice), origin("operator", 1)).await;
    assert!(matches!(created, Err(ServiceError::Unavailable(_))), "{created:?}");
    assert!(matches!(exchange.list(&Default::default()), Err(ServiceError::Unavailable(_))));
    exchange.shutdown().await;
    drop(exchange);
    store.crash(0);
    let exchange = self::exchange(&store, None).await;
    assert!(exchange.list(&Default::default()).unwrap().is_empty());
    exchange.shutdown().await;
}
