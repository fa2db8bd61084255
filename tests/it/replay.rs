//! A live run against an offline replay of its journal: the settlements must match byte for
//! byte. The live run drives the exchange directly (the gRPC layer adds nothing to what is
//! journaled); the replay runs in a fresh process, the real binary's `journal replay`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use emission_auction::config::Config;
use emission_auction::domain::{Price, Quantity, Timestamp};
use emission_auction::engine::{BidView, Command, SettlementStatus, TieRule};
use emission_auction::grpc::convert::auction_request;
use emission_auction::proto as pb;
use emission_auction::service::clock::ManualClock;
use emission_auction::service::{Exchange, Fingerprint, Origin, ServiceError};

use crate::grpc::{create, firm, reserve_lot};
use crate::rng::Rng;

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000_000;
const HOUR: i64 = 3_600_000_000;
const AUCTIONS: u64 = 36;
const ACTIONS_PER_AUCTION: u64 = 600;
const BIDDERS: u32 = 12;

fn origin(principal: &str, request: u64) -> Origin {
    Origin {
        principal: principal.to_owned(),
        request_id: format!("req-{request}"),
        fingerprint: Fingerprint::of("test", &request.to_le_bytes()),
    }
}

async fn start(dir: &std::path::Path, at: i64) -> Arc<Exchange> {
    let mut config = Config::default();
    config.set_data_dir(dir.to_owned());
    crate::sealing::key_inside(&mut config, dir);
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(at)));
    emission_auction::server::assemble_with_clock(&config, clock).await.unwrap().exchange
}

/// What one auction's bidding did, for the coverage checks.
#[derive(Default)]
struct Tally {
    placed: usize,
    revised: usize,
    withdrawn: usize,
}

/// Bids, revisions and withdrawals on auction `n` from a dozen bidders, at a handful of price
/// levels so that ties at the margin are common.
async fn bidding(exchange: Arc<Exchange>, n: u64, format: pb::AuctionFormat, seed: u64) -> Tally {
    let id = emission_auction::domain::AuctionId::new(n);
    let mut rng = Rng::new(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut tally = Tally::default();
    let mut mine: Vec<(u32, BidView)> = Vec::new();
    for action in 0..ACTIONS_PER_AUCTION {
        // Auction 25 needs three bidders and gets two: it fails.
        let bidders = if n == 25 { 2 } else { BIDDERS };
        let who = rng.below(bidders.into()) as u32 + 1;
        let principal = format!("b{who}");
        let request = n * 1_000_000 + action;
        let level = rng.below(12) as i64;
        let public = exchange.get(id).unwrap();
        let price = match format {
            // Requests at the posted price, and demand at the clock price: left to the auction.
            pb::AuctionFormat::FixedPrice | pb::AuctionFormat::AscendingClock => None,
            // The least acceptable price, or a little more, or (a late bid) a stale one.
            pb::AuctionFormat::AscendingEnglish => Some(match public.ascending.and_then(|a| a.min_next) {
                Some(next) => Price::from_units(next.units() + (level % 4 - 1) * 10_000).unwrap(),
                None => Price::from_units(1_800_000).unwrap(),
            }),
            _ => Some(Price::from_units(1_800_000 + level * 10_000).unwrap()),
        };
        let quantity = match format {
            pb::AuctionFormat::SealedFirstPrice | pb::AuctionFormat::AscendingEnglish => {
                Quantity::from_units(10_000).unwrap()
            }
            pb::AuctionFormat::AscendingClock => Quantity::from_units(rng.below(5) as i64 * 1000).unwrap(),
            _ => Quantity::from_units((rng.below(4) as i64 + 1) * 1000).unwrap(),
        };
        let quantity = Some(quantity);
        if format == pb::AuctionFormat::AscendingClock && action % 60 == 59 {
            // The operator moves the clock on.
            let moved = exchange.operate(id, Command::AdvanceRound, origin("operator", request)).await;
            match moved {
                Ok(_) | Err(ServiceError::Engine(_)) => continue,
                Err(e) => panic!("auction {n}: {e}"),
            }
        }
        let roll = rng.below(10);
        let result = if roll < 2 && !mine.is_empty() {
            let (owner, bid) = mine[rng.below(mine.len() as u64) as usize];
            let by = origin(&format!("b{owner}"), request);
            exchange.revise_bid(id, firm(owner), bid.id, price, quantity, by).await.map(|_| tally.revised += 1)
        } else if roll < 3 && !mine.is_empty() {
            let (owner, bid) = mine[rng.below(mine.len() as u64) as usize];
            let by = origin(&format!("b{owner}"), request);
            exchange.withdraw_bid(id, firm(owner), bid.id, by).await.map(|_| {
                mine.retain(|(_, b)| b.id != bid.id);
                tally.withdrawn += 1;
            })
        } else {
            exchange.place_bid(id, firm(who), price, quantity, origin(&principal, request)).await.map(|receipt| {
                mine.push((who, receipt.bid));
                tally.placed += 1;
            })
        };
        match result {
            // Refusals (a revision of an irrevocable bid, a per-bidder cap) change nothing.
            Ok(()) | Err(ServiceError::Engine(_)) => {}
            Err(e) => panic!("auction {n}: {e}"),
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_in_a_fresh_process_derives_the_live_settlements_byte_for_byte() {
    let seed: u64 = std::env::var("REPLAY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_128);
    println!("replay test seed {seed} (set REPLAY_SEED to reproduce)");
    let dir = tempfile::tempdir().unwrap();
    let exchange = start(dir.path(), T0).await;
    let t0 = Timestamp::from_micros(T0);

    // Every format, every tie rule and every undersubscription policy, some auctions
    // with a per-bidder cap or a minimum number of bidders, some with irrevocable bids.
    let formats = [
        pb::AuctionFormat::SealedUniformPrice,
        pb::AuctionFormat::SealedPayAsBid,
        pb::AuctionFormat::SealedFirstPrice,
        pb::AuctionFormat::FixedPrice,
        pb::AuctionFormat::AscendingEnglish,
        pb::AuctionFormat::AscendingClock,
    ];
    let ties = [pb::TieRule::TimePriority, pb::TieRule::ProRata, pb::TieRule::SeededRandom];
    let unders =
        [pb::Undersubscription::SellAvailable, pb::Undersubscription::Cancel, pb::Undersubscription::ClearAtFloor];
    let mut tasks = Vec::new();
    for n in 1..=AUCTIONS {
        let format = formats[(n % 6) as usize];
        let (quantity, fill) = match format {
            pb::AuctionFormat::SealedFirstPrice | pb::AuctionFormat::AscendingEnglish => ("10.000", "10.000"),
            pb::AuctionFormat::AscendingClock => ("20.000", "1.000"),
            _ => ("60.000", "1.000"),
        };
        let mut request = create(reserve_lot(&format!("RES-RP-{n}"), quantity, fill), format, t0, t0.plus_micros(HOUR));
        request.tie_rule = match ties[(n / 3 % 3) as usize] {
            // An indivisible lot cannot be split.
            pb::TieRule::ProRata
                if matches!(format, pb::AuctionFormat::SealedFirstPrice | pb::AuctionFormat::AscendingEnglish) =>
            {
                pb::TieRule::TimePriority
            }
            // A posted price or a clock has no draw.
            pb::TieRule::SeededRandom
                if matches!(format, pb::AuctionFormat::FixedPrice | pb::AuctionFormat::AscendingClock) =>
            {
                pb::TieRule::TimePriority
            }
            rule => rule,
        } as i32;
        request.undersubscription = unders[(n / 9 % 3) as usize] as i32;
        if format == pb::AuctionFormat::AscendingEnglish {
            request.ascending =
                Some(pb::AscendingTerms { increment: "100.00".into(), countdown_seconds: 60, ..Default::default() });
            // A band, so that the price reaches the cap (and, with a seeded rule, the lottery).
            request.cap_mode = pb::CapMode::Percent as i32;
            request.cap_percent = "5".into();
        }
        if format == pb::AuctionFormat::AscendingClock {
            request.clock = Some(pb::ClockTerms {
                increment: "200.00".into(),
                round_seconds: 600,
                silent_keeps_demand: n % 4 == 1,
                ..Default::default()
            });
        }
        if n % 4 == 0 && matches!(format, pb::AuctionFormat::SealedUniformPrice | pb::AuctionFormat::SealedPayAsBid) {
            request.per_bidder_cap_percent = "25".into();
        }
        if n % 5 == 0 {
            request.min_bidders = 3;
        }
        if n % 6 == 0 {
            request.bid_revision = pb::BidRevision::Irrevocable as i32;
        }
        if n % 2 == 0 {
            // Opened by the operator rather than by its timer.
            request.opens_at = Some(emission_auction::grpc::convert::to_timestamp(t0.plus_micros(HOUR / 2)));
        }
        let spec = auction_request(&request).unwrap();
        let created = exchange.create_auction(spec, origin("operator", n)).await.unwrap();
        let id = created.spec.id;
        assert_eq!(id.get(), n);
        if n % 2 == 0 {
            exchange.operate(id, Command::Open, origin("operator", 100 + n)).await.unwrap();
        }
        // The timer opens the others at once.
        while exchange.get(id).unwrap().phase != emission_auction::engine::Phase::Open {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tasks.push(tokio::spawn(bidding(Arc::clone(&exchange), n, format, seed)));
    }
    let mut tally = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        tally.placed += t.placed;
        tally.revised += t.revised;
        tally.withdrawn += t.withdrawn;
    }
    assert!(tally.revised > 500 && tally.withdrawn > 300, "{} revised, {} withdrawn", tally.revised, tally.withdrawn);

    // A third close on the operator's word, a few are cancelled, the rest by their timers,
    // which fire late: the server is down at the close and catches up on restart.
    for n in 1..=AUCTIONS {
        let id = emission_auction::domain::AuctionId::new(n);
        let command = match n % 3 {
            0 => Command::Close,
            1 if n % 7 == 1 => Command::Cancel { note: Some(format!("lot {n} withdrawn by the centre")) },
            _ => continue,
        };
        exchange.operate(id, command, origin("operator", 200 + n)).await.unwrap();
    }
    exchange.shutdown().await;
    drop(exchange);
    let exchange = start(dir.path(), T0 + 2 * HOUR).await;
    let mut live = Vec::new();
    for n in 1..=AUCTIONS {
        let id = emission_auction::domain::AuctionId::new(n);
        let recorded = loop {
            match exchange.settlement(id).await {
                Ok(recorded) => break recorded,
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        };
        live.push((*recorded).clone());
    }
    exchange.shutdown().await;
    drop(exchange);

    // The run covered what it should: enough journaled changes, every status, and margins
    // broken by each tie rule.
    let journal = emission_auction::journal::verify(&dir.path().join("journal")).unwrap();
    assert!(journal.records.len() >= 10_000, "only {} journal records", journal.records.len());
    let statuses: BTreeSet<String> = live.iter().map(|d| format!("{:?}", d.settlement.status)).collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    let mut tie_rules = BTreeSet::new();
    for d in &live {
        if let Some(tie) = d.settlement.tie_break.as_ref().filter(|t| t.marginal_price.is_some() && t.order.len() > 1) {
            tie_rules.insert(format!("{:?}", tie.rule));
        }
    }
    for rule in [TieRule::TimePriority, TieRule::ProRata, TieRule::SeededRandom] {
        assert!(tie_rules.contains(&format!("{rule:?}")), "no tie broken by {rule:?}: {tie_rules:?}");
    }
    let settled_formats: BTreeSet<String> = live
        .iter()
        .filter(|d| d.settlement.status == SettlementStatus::Settled)
        .map(|d| format!("{:?}", d.settlement.format))
        .collect();
    assert_eq!(settled_formats.len(), 6, "every format settles at least once: {settled_formats:?}");

    // A fresh process replays the journal.
    let out = dir.path().join("replayed.jsonl");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_emission-auction"))
        .args(["journal", "replay", "--data-dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(report.contains(&format!("{AUCTIONS} settlements derived")), "{report}");

    live.sort_by_key(|d| d.sequence);
    let expected: String = live.iter().map(|d| serde_json::to_string(d).unwrap() + "\n").collect();
    let replayed = std::fs::read_to_string(&out).unwrap();
    assert_eq!(replayed.len(), expected.len());
    for (line, (got, want)) in replayed.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "settlement {line} differs");
    }
    assert!(replayed == expected, "replayed settlements differ from the live run");
    // And the file the live run recorded holds exactly the same bytes.
    let recorded = std::fs::read_to_string(dir.path().join("settlements.jsonl")).unwrap();
    assert!(recorded == replayed, "journal replay --out differs from settlements.jsonl");
    let sequences: Vec<u64> = live.iter().map(|d| d.sequence).collect();
    assert_eq!(sequences, (1..=AUCTIONS).collect::<Vec<_>>(), "settlements are numbered 1.. without gaps");
}

/// A watcher that stops reading falls behind a bounded queue and is told so; the auction
/// neither waits for it nor keeps its backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_is_cut_off_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let exchange = start(dir.path(), T0).await;
    let t0 = Timestamp::from_micros(T0);
    let mut request = create(
        reserve_lot("RES-LAGGARD", "10.000", "10.000"),
        pb::AuctionFormat::AscendingEnglish,
        t0,
        t0.plus_micros(HOUR),
    );
    request.ascending =
        Some(pb::AscendingTerms { increment: "0.01".into(), countdown_seconds: 60, ..Default::default() });
    let id = exchange.create_auction(auction_request(&request).unwrap(), origin("operator", 1)).await.unwrap().spec.id;
    while exchange.get(id).unwrap().phase != emission_auction::engine::Phase::Open {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut laggard = exchange.watch(id, 0).unwrap();
    assert_eq!(laggard.backlog.len(), 1, "a new watch starts with the state");
    // 1,000 bids while the watcher reads nothing; every one is taken at once.
    let lot = Quantity::from_units(10_000).unwrap();
    for k in 0..1000u64 {
        let who = (k % 2) as u32 + 1;
        let price = Price::from_units(1_800_000 + k as i64).unwrap();
        exchange.place_bid(id, firm(who), Some(price), Some(lot), origin(&format!("b{who}"), 10 + k)).await.unwrap();
    }
    match laggard.live.recv().await {
        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
            assert_eq!(missed, 1000 - 256, "the queue holds the latest 256 updates");
        }
        other => panic!("expected the watcher to have lagged, got {other:?}"),
    }
    // Watching again from where it stood replays from the kept history.
    let resumed = exchange.watch(id, 1).unwrap();
    let sequences: Vec<u64> = resumed.backlog.iter().map(|u| u.sequence).collect();
    assert_eq!(sequences, (2..=1001).collect::<Vec<_>>(), "every update after sequence 1, in order");
    exchange.shutdown().await;
}

/// A clock that moves without telling anyone, so that a bid can reach an auction whose open
/// timer has not fired.
struct SilentClock(std::sync::atomic::AtomicI64);

impl emission_auction::service::clock::Clock for SilentClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// A sealed auction opened by its first bid (the bid beat the open timer) shows watchers the
/// opening alone, as of `opens_at`: neither that a bid came nor when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_auction_opened_by_a_bid_shows_only_its_opening() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.set_data_dir(dir.path().to_owned());
    crate::sealing::key_inside(&mut config, dir.path());
    let clock = Arc::new(SilentClock(std::sync::atomic::AtomicI64::new(T0)));
    let exchange = emission_auction::server::assemble_with_clock(&config, clock.clone()).await.unwrap().exchange;
    let t0 = Timestamp::from_micros(T0);
    let opens = t0.plus_micros(HOUR / 2);
    let request = create(
        reserve_lot("RES-QUIET", "10.000", "1.000"),
        pb::AuctionFormat::SealedUniformPrice,
        opens,
        t0.plus_micros(HOUR),
    );
    let id = exchange.create_auction(auction_request(&request).unwrap(), origin("operator", 1)).await.unwrap().spec.id;
    let mut watch = exchange.watch(id, 0).unwrap();
    // Time passes the opening; the open timer, set for half an hour of real time, sleeps on.
    clock.0.store(opens.as_micros() + 7_000_000, std::sync::atomic::Ordering::SeqCst);
    let price = Price::from_units(1_850_000).unwrap();
    let quantity = Quantity::from_units(2000).unwrap();
    let receipt = exchange.place_bid(id, firm(1), Some(price), Some(quantity), origin("b1", 2)).await.unwrap();
    assert_eq!(receipt.bid.placed_at, opens.plus_micros(7_000_000));
    assert_eq!(exchange.get(id).unwrap().phase, emission_auction::engine::Phase::Open);
    let update = watch.live.recv().await.unwrap();
    assert_eq!(update.kind, emission_auction::service::feed::UpdateKind::Opened);
    assert_eq!((update.sequence, update.at), (1, opens), "the opening, as of opens_at");
    assert!(watch.live.try_recv().is_err(), "nothing else was published");
    exchange.shutdown().await;
}
