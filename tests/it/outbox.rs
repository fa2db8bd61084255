//! The outbox on the journal: settlements reach recorders from their own cursors, are shown
//! only once the gating recorder holds them, keep their numbers across restarts, and the
//! JSON-lines file survives a torn last line.

use std::sync::Arc;
use std::time::Duration;

use emission_auction::config::Config;
use emission_auction::domain::{Price, PricePolicy, Quantity, Timestamp};
use emission_auction::engine::{AuctionRequest, Command, Format, Phase};
use emission_auction::journal::{Journal, MemoryStore, Options};
use emission_auction::service::clock::ManualClock;
use emission_auction::service::outbox::Recording;
use emission_auction::service::recorder::{JsonLinesRecorder, MemoryRecorder};
use emission_auction::service::{Exchange, ServiceError};

use super::grpc::firm;
use super::pipeline::{origin, request_for};

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000_000;

fn request(lot: &str) -> AuctionRequest {
    request_for(Format::SealedUniformPrice, lot)
}

/// Creates, opens, bids on and closes one auction; returns its id.
async fn settle_one(exchange: &Exchange, n: u64) -> emission_auction::domain::AuctionId {
    let id = exchange.create_auction(request(&format!("OUT-{n}")), origin("operator", n * 100)).await.unwrap().spec.id;
    exchange.operate(id, Command::Open, origin("operator", n * 100 + 1)).await.unwrap();
    let price = Price::from_units(1_850_000).unwrap();
    let quantity = Quantity::from_units(4000).unwrap();
    exchange.place_bid(id, firm(1), Some(price), Some(quantity), origin("b1", n * 100 + 2)).await.unwrap();
    exchange.operate(id, Command::Close, origin("operator", n * 100 + 3)).await.unwrap();
    id
}

async fn exchange_on(store: &MemoryStore, recordings: Vec<Recording>) -> Arc<Exchange> {
    let (journal, recovered, _) = Journal::open_store(store.clone(), Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0)));
    Arc::new(Exchange::recover(PricePolicy::default(), clock, Arc::new(journal), recordings, &recovered).await.unwrap())
}

/// A required recorder that is down: settlements are not shown (nothing is shown that is not
/// durable where it must be), health says why, bids go on; once it is back it catches up from
/// its cursor and everything is shown, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_recorder_that_is_down_hides_settlements_but_delays_no_bid() {
    let store = MemoryStore::new();
    let gate = Arc::new(MemoryRecorder::default());
    let best_effort = Arc::new(MemoryRecorder::default());
    let recordings = vec![
        Recording { recorder: gate.clone(), required: true },
        Recording { recorder: best_effort.clone(), required: false },
    ];
    let exchange = exchange_on(&store, recordings).await;
    let first = settle_one(&exchange, 1).await;
    assert_eq!(exchange.settlement(first).await.unwrap().sequence, 1);

    gate.set_down(true);
    best_effort.set_down(true);
    let second = settle_one(&exchange, 2).await;
    assert_eq!(exchange.get(second).unwrap().phase, Phase::Settled, "the close itself is durable and answered");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(exchange.hub().get(second).is_none(), "not shown while the gating recorder lacks it");
    let health = exchange.health().borrow().clone();
    assert!(health.as_deref().is_some_and(|h| h.contains("required recorder down")), "{health:?}");
    // Bids elsewhere are acknowledged meanwhile.
    let third = settle_one(&exchange, 3).await;
    assert_eq!(exchange.get(third).unwrap().phase, Phase::Settled);
    let status = exchange.recorders();
    assert_eq!(status.len(), 2);
    assert!(status.iter().all(|s| s.last_error.is_some()), "{status:?}");

    gate.set_down(false);
    best_effort.set_down(false);
    let shown = exchange.settlement(third).await.unwrap();
    assert_eq!(shown.sequence, 3);
    assert_eq!(exchange.settlement(second).await.unwrap().sequence, 2);
    for _ in 0..200 {
        if best_effort.records().len() == 3 && exchange.health().borrow().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sequences = |r: &MemoryRecorder| r.records().iter().map(|s| s.sequence).collect::<Vec<_>>();
    assert_eq!(sequences(&gate), vec![1, 2, 3], "each settlement once, in order");
    assert_eq!(sequences(&best_effort), vec![1, 2, 3], "the best-effort recorder caught up from its cursor");
    assert!(exchange.health().borrow().is_none(), "serving again");
    exchange.shutdown().await;
}

/// Settlement numbers are assigned once and survive restarts: after a restart the stream
/// continues, a recorder that missed settlements while the server was down catches up, and
/// nothing is numbered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_numbers_survive_restarts_and_recorders_catch_up_from_their_cursors() {
    let store = MemoryStore::new();
    let recorder = Arc::new(MemoryRecorder::default());
    let exchange = exchange_on(&store, vec![Recording { recorder: recorder.clone(), required: true }]).await;
    for n in 1..=3 {
        settle_one(&exchange, n).await;
    }
    exchange.shutdown().await;
    drop(exchange);
    assert_eq!(recorder.records().len(), 3);

    // Restart with the same recorder and a new one that never saw anything.
    let late = Arc::new(MemoryRecorder::default());
    let recordings = vec![
        Recording { recorder: recorder.clone(), required: true },
        Recording { recorder: late.clone(), required: false },
    ];
    let exchange = exchange_on(&store, recordings).await;
    let fourth = settle_one(&exchange, 4).await;
    assert_eq!(exchange.settlement(fourth).await.unwrap().sequence, 4);
    let (backlog, _) = exchange.hub().subscribe(1);
    assert_eq!(backlog.iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    for _ in 0..200 {
        if late.records().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let numbered = |r: &MemoryRecorder| {
        r.records().iter().map(|s| (s.sequence, s.settlement.auction_id.get())).collect::<Vec<_>>()
    };
    assert_eq!(numbered(&recorder), vec![(1, 1), (2, 2), (3, 3), (4, 4)]);
    assert_eq!(numbered(&late), numbered(&recorder), "the late recorder holds the same stream");
    exchange.shutdown().await;
}

/// A torn last line in settlements.jsonl (a crash in the middle of a write) is cut off with a
/// warning and derived again from the journal; the file then equals `journal replay --out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_settlement_line_is_cut_and_derived_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.set_data_dir(dir.path().to_owned());
    crate::sealing::key_inside(&mut config, dir.path());
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0)));
    let exchange = emission_auction::server::assemble_with_clock(&config, clock.clone()).await.unwrap().exchange;
    for n in 1..=3 {
        let id = settle_one(&exchange, n).await;
        exchange.settlement(id).await.unwrap();
    }
    exchange.shutdown().await;
    drop(exchange);
    let file = config.settlements_file();
    let whole = std::fs::read(&file).unwrap();
    // Tear the last line in half, as a crash mid-write would.
    let last_start = whole[..whole.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let torn = &whole[..last_start + (whole.len() - last_start) / 2];
    std::fs::write(&file, torn).unwrap();

    let exchange = emission_auction::server::assemble_with_clock(&config, clock).await.unwrap().exchange;
    let third = emission_auction::domain::AuctionId::new(3);
    assert_eq!(exchange.settlement(third).await.unwrap().sequence, 3, "re-derived and recorded again");
    exchange.shutdown().await;
    drop(exchange);
    assert_eq!(std::fs::read(&file).unwrap(), whole, "the file is whole again, byte for byte");
    let recorded = JsonLinesRecorder::read_all(&file).unwrap();
    let replayed =
        emission_auction::service::replay(emission_auction::journal::verify(&config.journal_dir()).unwrap().entries())
            .unwrap()
            .settlements;
    assert_eq!(recorded, replayed);
}

/// A journal that lost its records while settlements.jsonl still cites them refuses to start,
/// naming both, instead of starting empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_journal_refuses_start_when_the_settlements_cite_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.set_data_dir(dir.path().to_owned());
    crate::sealing::key_inside(&mut config, dir.path());
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0)));
    let exchange = emission_auction::server::assemble_with_clock(&config, clock.clone()).await.unwrap().exchange;
    for n in 1..=2 {
        let id = settle_one(&exchange, n).await;
        exchange.settlement(id).await.unwrap();
    }
    exchange.shutdown().await;
    drop(exchange);
    std::fs::remove_dir_all(config.journal_dir()).unwrap();
    let _ = std::fs::remove_file(dir.path().join("journal.anchor"));
    let refused = emission_auction::server::assemble_with_clock(&config, clock).await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("holds settlements up to 2") && error.contains("only up to 0"), "{error}");
}

/// A settlement is never shown before its concluding entry is durable: GetSettlement of an
/// auction that is still open answers NOT_SETTLED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_auction_is_not_settled() {
    let store = MemoryStore::new();
    let exchange = exchange_on(&store, Vec::new()).await;
    let id = exchange.create_auction(request("OUT-OPEN"), origin("operator", 1)).await.unwrap().spec.id;
    assert!(matches!(exchange.settlement(id).await, Err(ServiceError::NotSettled { .. })));
    exchange.shutdown().await;
}

/// A nearly full disk under settlements.jsonl (fault injection): the write is cut short and
/// fails, the partial line is taken back, the settlement is not shown (nothing is published
/// that is not durable) and health says why; bids go on; once space is freed the recorder
/// appends the whole line and the settlement is shown, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_never_publishes_a_settlement_that_is_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settlements.jsonl");
    let jsonl = Arc::new(JsonLinesRecorder::open(&file).unwrap());
    let store = MemoryStore::new();
    let exchange = exchange_on(&store, vec![Recording { recorder: jsonl.clone(), required: true }]).await;
    let first = settle_one(&exchange, 1).await;
    assert_eq!(exchange.settlement(first).await.unwrap().sequence, 1);
    let whole = std::fs::read(&file).unwrap();

    jsonl.set_space_left(Some(100));
    let second = settle_one(&exchange, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(exchange.hub().get(second).is_none(), "not shown: the settlements file does not hold it");
    assert_eq!(std::fs::read(&file).unwrap(), whole, "the partial line was taken back");
    let health = exchange.health().borrow().clone();
    assert!(health.as_deref().is_some_and(|h| h.contains("No space left")), "{health:?}");
    // Bids elsewhere are still taken.
    let third = settle_one(&exchange, 3).await;
    assert_eq!(exchange.get(third).unwrap().phase, Phase::Settled);

    jsonl.set_space_left(None);
    assert_eq!(exchange.settlement(third).await.unwrap().sequence, 3);
    assert_eq!(exchange.settlement(second).await.unwrap().sequence, 2);
    let lines = JsonLinesRecorder::read_all(&file).unwrap();
    assert_eq!(lines.iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
    for _ in 0..200 {
        if exchange.health().borrow().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(exchange.health().borrow().is_none(), "serving again once the disk has room");
    exchange.shutdown().await;
}
