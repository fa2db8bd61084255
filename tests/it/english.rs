//! An open ascending auction over real gRPC: terminals racing to raise the price while others
//! watch. Time is the test's manual clock: the countdown fires when the clock is moved, with
//! no real sleeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use emission_auction::domain::Timestamp;
use emission_auction::grpc::convert::to_timestamp;
use emission_auction::proto as pb;
use tokio::sync::Mutex;
use tonic::Code;

use crate::grpc::{TestServer, create, firm, reason, reserve_lot, settlement};

/// 2026-03-01T00:00:00Z, the test server's start.
const T0: i64 = 1_772_323_200_000_000;
const HOUR: i64 = 3_600_000_000;
const SECOND: i64 = 1_000_000;
const TERMINALS: usize = 20;
const WATCHERS: usize = 5;

fn english(lot_id: &str) -> pb::CreateAuctionRequest {
    let t0 = Timestamp::from_micros(T0);
    let mut request =
        create(reserve_lot(lot_id, "10.000", "10.000"), pb::AuctionFormat::AscendingEnglish, t0, t0.plus_micros(HOUR));
    request.ascending = Some(pb::AscendingTerms {
        start_price: String::new(),
        increment: "100.00".into(),
        countdown_seconds: 60,
        hard_stop: None,
        max_extensions: None,
        timed_min_bidders: 2,
    });
    request
}

fn price_fen(text: &str) -> i64 {
    let (yuan, fen) = text.split_once('.').unwrap();
    yuan.parse::<i64>().unwrap() * 100 + fen.parse::<i64>().unwrap()
}

fn fen_text(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Collects one watch's events until the auction concludes. `drop_after`: hang up after that
/// many events and watch again from the last sequence seen.
async fn watch(
    server_channel: tonic::transport::Channel,
    token: String,
    id: String,
    drop_after: Option<usize>,
) -> Vec<pb::AuctionEvent> {
    let mut seen: Vec<pb::AuctionEvent> = Vec::new();
    let mut after = 0;
    let mut hang_up = drop_after;
    loop {
        let mut t = emission_auction::cli::client::Terminal::on(server_channel.clone(), &token).unwrap();
        let request = pb::WatchAuctionRequest { auction_id: id.clone(), after_sequence: after };
        let mut stream = t.trading.watch_auction(request).await.unwrap().into_inner();
        let mut this_time = 0;
        while let Some(event) = stream.message().await.unwrap() {
            after = event.sequence;
            let done = event.kind == pb::AuctionEventKind::Concluded as i32;
            seen.push(event);
            this_time += 1;
            if done {
                return seen;
            }
            if hang_up.is_some_and(|n| this_time >= n) {
                hang_up = None;
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_terminals_race_and_five_watchers_see_the_settlement() {
    let server = TestServer::start().await;
    let created = server.as_("operator").operator.create_auction(english("RES-ENGLISH")).await.unwrap().into_inner();
    let id = created.auction_id.clone();

    let watchers: Vec<_> = (0..WATCHERS)
        .map(|n| {
            // The last watcher hangs up after ten events and comes back.
            let drop_after = (n == WATCHERS - 1).then_some(10);
            tokio::spawn(watch(server.channel.clone(), server.tokens["observer"].clone(), id.clone(), drop_after))
        })
        .collect();

    // Twenty terminals race: each bids the minimum it last heard of, and on BID_TOO_LOW
    // takes the new minimum the error names.
    let pseudonyms: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let accepted: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let mut terminals = Vec::new();
    for n in 1..=TERMINALS {
        let mut t = server.as_(&format!("b{n}"));
        let (id, pseudonyms, accepted) = (id.clone(), Arc::clone(&pseudonyms), Arc::clone(&accepted));
        terminals.push(tokio::spawn(async move {
            let mut next = 1_800_000;
            let mut too_low = 0;
            for attempt in 0..40 {
                let request = pb::PlaceBidRequest {
                    request_id: format!("b{n}-{attempt}"),
                    auction_id: id.clone(),
                    price: fen_text(next),
                    quantity: String::new(),
                };
                match t.trading.place_bid(request).await {
                    Ok(receipt) => {
                        let receipt = receipt.into_inner();
                        pseudonyms.lock().await.insert(firm(n as u32).to_string(), receipt.pseudonym.clone());
                        accepted.lock().await.push((price_fen(&receipt.price), receipt.pseudonym));
                        next += 10_000;
                    }
                    Err(e) => {
                        let (why, numbers) = reason(&e);
                        match why.as_str() {
                            "BID_TOO_LOW" => {
                                // Lost a race: told the new minimum, above what was tried.
                                assert_eq!(e.code(), Code::FailedPrecondition);
                                let min = price_fen(&numbers["min_acceptable"]);
                                assert!(min > next, "min_acceptable {min} is not above the losing bid {next}");
                                assert_eq!(min, price_fen(&numbers["current_price"]) + 10_000);
                                next = min;
                                too_low += 1;
                            }
                            "ALREADY_LEADING" => next = price_fen(&numbers["current_price"]) + 10_000,
                            other => panic!("terminal b{n}: unexpected {other}: {e:?}"),
                        }
                    }
                }
            }
            too_low
        }));
    }
    let mut races_lost = 0;
    for t in terminals {
        races_lost += t.await.unwrap();
    }
    assert!(races_lost > 0, "twenty terminals bidding at once should have raced");

    // The free period ends: the countdown starts. Two more bids in the timed period each
    // restart it; then time runs out.
    let close = T0 + HOUR;
    server.set_time(Timestamp::from_micros(close));
    let live = loop {
        let a =
            server.as_("observer").trading.get_auction(pb::GetAuctionRequest { auction_id: id.clone() }).await.unwrap();
        let live = a.into_inner().live.unwrap();
        if live.timed_period {
            break live;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(live.deadline, Some(to_timestamp(Timestamp::from_micros(close + 60 * SECOND))));
    let mut last_bidder = None;
    for (k, at) in [(0u32, close + 30 * SECOND), (1, close + 80 * SECOND)] {
        server.set_time(Timestamp::from_micros(at));
        let a =
            server.as_("observer").trading.get_auction(pb::GetAuctionRequest { auction_id: id.clone() }).await.unwrap();
        let live = a.into_inner().live.unwrap();
        // Someone other than the leader raises.
        let leader_code = pseudonyms.lock().await.iter().find(|(_, p)| **p == live.leader).map(|(c, _)| c.clone());
        let who = (21..=22).map(|n| (n, firm(n))).find(|(_, code)| Some(code.to_string()) != leader_code).unwrap().0;
        let request = pb::PlaceBidRequest {
            request_id: format!("timed-{k}"),
            auction_id: id.clone(),
            price: live.min_next_bid.clone(),
            quantity: String::new(),
        };
        let receipt = server.as_(&format!("b{who}")).trading.place_bid(request).await.unwrap().into_inner();
        pseudonyms.lock().await.insert(firm(who).to_string(), receipt.pseudonym.clone());
        accepted.lock().await.push((price_fen(&receipt.price), receipt.pseudonym));
        last_bidder = Some(firm(who).to_string());
    }
    // The countdown restarted at close + 80 s: a bid stamped at its end is refused.
    let end = close + 140 * SECOND;
    server.set_time(Timestamp::from_micros(end));

    let watched: Vec<Vec<pb::AuctionEvent>> = {
        let mut all = Vec::new();
        for w in watchers {
            all.push(w.await.unwrap());
        }
        all
    };
    let settlement = settlement(&server, &id).await;
    let accepted = accepted.lock().await.clone();
    let top = accepted.iter().map(|(p, _)| *p).max().unwrap();
    // Of bids racing at one price, exactly one won.
    let mut prices: Vec<i64> = accepted.iter().map(|(p, _)| *p).collect();
    prices.sort_unstable();
    let before = prices.len();
    prices.dedup();
    assert_eq!(prices.len(), before, "two bids were accepted at one price");
    assert_eq!(settlement.clearing_price, fen_text(top));
    assert_eq!(settlement.allocations.len(), 1);
    assert_eq!(Some(&settlement.allocations[0].bidder), last_bidder.as_ref());
    assert_eq!(settlement.settled_at, Some(to_timestamp(Timestamp::from_micros(end))));
    let winner_pseudonym = pseudonyms.lock().await[&settlement.allocations[0].bidder].clone();
    let counts: Vec<usize> = watched.iter().map(Vec::len).collect();
    println!("{} bids accepted, {races_lost} races lost, events per watcher {counts:?}", accepted.len());

    for (n, events) in watched.iter().enumerate() {
        let last = events.last().unwrap();
        assert_eq!(last.kind, pb::AuctionEventKind::Concluded as i32, "watcher {n}");
        assert_eq!(
            (last.final_price.as_str(), last.winner.as_str()),
            (settlement.clearing_price.as_str(), winner_pseudonym.as_str()),
            "watcher {n}"
        );
        // Nothing missed: sequences run without a gap from the first state seen.
        for pair in events.windows(2) {
            assert_eq!(pair[1].sequence, pair[0].sequence + 1, "watcher {n} missed an update");
        }
        // Every accepted bid after the watch began was seen, in rising price order.
        let prices: Vec<i64> = events
            .iter()
            .filter(|e| e.kind == pb::AuctionEventKind::Bid as i32)
            .map(|e| price_fen(&e.live.as_ref().unwrap().current_price))
            .collect();
        assert!(prices.windows(2).all(|w| w[0] < w[1]), "watcher {n}: prices did not rise");
        assert_eq!(prices.last(), Some(&top));
        assert!(events.iter().any(|e| e.kind == pb::AuctionEventKind::TimedPeriodStarted as i32));
        // Bidders appear only under pseudonyms.
        for e in events {
            let text = format!("{e:?}");
            assert!(!(1..=24).any(|b| text.contains(firm(b).as_str())), "watcher {n} saw a credit code");
        }
    }
    // The watchers saw the same stream. (A STATE message repeats the sequence of the latest
    // change as it stood when the watch began, so only changes are compared.)
    let strip = |events: &[pb::AuctionEvent]| -> BTreeMap<u64, (i32, String)> {
        events
            .iter()
            .filter(|e| e.kind != pb::AuctionEventKind::State as i32)
            .map(|e| (e.sequence, (e.kind, e.live.as_ref().map(|l| l.current_price.clone()).unwrap_or_default())))
            .collect()
    };
    let first = strip(&watched[0]);
    for events in &watched[1..] {
        let these = strip(events);
        for (seq, event) in &these {
            if let Some(other) = first.get(seq) {
                assert_eq!(other, event, "watchers disagree at sequence {seq}");
            }
        }
    }
    // The reconnecting watcher's history covers every bid the first watcher saw after its start.
    let reconnecting = strip(&watched[WATCHERS - 1]);
    let first_seq = watched[WATCHERS - 1][0].sequence + 1;
    for (seq, event) in first.range(first_seq..) {
        assert_eq!(reconnecting.get(seq), Some(event), "the reconnecting watcher missed sequence {seq}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_clock_auction_over_grpc_with_a_watcher() {
    let server = TestServer::start().await;
    let t0 = Timestamp::from_micros(T0);
    let mut request = create(
        reserve_lot("RES-CLOCK", "10.000", "1.000"),
        pb::AuctionFormat::AscendingClock,
        t0,
        t0.plus_micros(HOUR),
    );
    request.clock = Some(pb::ClockTerms {
        start_price: String::new(),
        increment: "500.00".into(),
        round_seconds: 600,
        silent_keeps_demand: true,
    });
    let mut op = server.as_("operator");
    let id = op.operator.create_auction(request).await.unwrap().into_inner().auction_id;
    let mut watcher = server.as_("observer");
    let mut events = watcher
        .trading
        .watch_auction(pb::WatchAuctionRequest { auction_id: id.clone(), after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let demand = |who: &str, quantity: &str, n: u32| {
        let mut t = server.as_(who);
        let request = pb::PlaceBidRequest {
            request_id: format!("{who}-{n}"),
            auction_id: id.clone(),
            price: String::new(),
            quantity: quantity.into(),
        };
        async move { t.trading.place_bid(request).await }
    };
    // Round 1 at the floor: 6 + 5 + 4 = 15 t for 10 t.
    assert_eq!(demand("b1", "6.000", 1).await.unwrap().into_inner().price, "18000.00");
    demand("b2", "5.000", 1).await.unwrap();
    demand("b3", "4.000", 1).await.unwrap();
    let round = op.operator.advance_round(pb::AuctionRef { request_id: "adv-1".into(), auction_id: id.clone() }).await;
    let state = round.unwrap().into_inner().clock_state.unwrap();
    assert_eq!((state.round, state.clock_price.as_str(), state.last_round_demand.as_str()), (2, "18500.00", "15.000"));
    // The activity rule, with the most allowed.
    let err = demand("b1", "7.000", 2).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), ("ACTIVITY_RULE".into(), HashMap::from([("allowed_max".into(), "6.000".into())])));
    // Round 2: b1 cuts 6 -> 5, then b2 drops out (5 -> 0), b3 is silent and keeps 4: 9 t fit.
    // The 1 t left goes to the cutters by time priority: b1 cut first.
    demand("b1", "5.000", 3).await.unwrap();
    demand("b2", "0", 3).await.unwrap();
    op.operator.advance_round(pb::AuctionRef { request_id: "adv-2".into(), auction_id: id.clone() }).await.unwrap();
    let settlement = settlement(&server, &id).await;
    let allocated: Vec<(String, String)> =
        settlement.allocations.iter().map(|a| (a.bidder.clone(), a.quantity.clone())).collect();
    assert_eq!(settlement.clearing_price, "18500.00");
    assert_eq!(allocated, vec![(firm(1).to_string(), "6.000".into()), (firm(3).to_string(), "4.000".into())]);
    // The watcher saw the state, each round's end with its total demand, and the end; no
    // demand statement of anyone.
    let mut seen = Vec::new();
    while let Some(e) = events.message().await.unwrap() {
        let done = e.kind == pb::AuctionEventKind::Concluded as i32;
        seen.push((e.kind, e.clock.map(|c| (c.round, c.clock_price, c.last_round_demand))));
        if done {
            break;
        }
    }
    // (The watch may begin before or after the opening timer fired.)
    seen.retain(|(k, _)| *k != pb::AuctionEventKind::Opened as i32);
    let kinds: Vec<i32> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        vec![
            pb::AuctionEventKind::State as i32,
            pb::AuctionEventKind::RoundEnded as i32,
            pb::AuctionEventKind::Concluded as i32
        ]
    );
    assert_eq!(seen[1].1, Some((2, "18500.00".into(), "15.000".into())));
    server.stop().await;
}

#[tokio::test]
async fn a_sealed_auction_shows_watchers_only_its_phases() {
    let server = TestServer::start().await;
    let t0 = Timestamp::from_micros(T0);
    let request = create(
        reserve_lot("RES-SEALED-WATCH", "10.000", "1.000"),
        pb::AuctionFormat::SealedUniformPrice,
        t0.plus_micros(HOUR / 6),
        t0.plus_micros(HOUR),
    );
    let id = server.as_("operator").operator.create_auction(request).await.unwrap().into_inner().auction_id;
    let mut watcher = server.as_("observer");
    let mut stream = watcher
        .trading
        .watch_auction(pb::WatchAuctionRequest { auction_id: id.clone(), after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    server.set_time(t0.plus_micros(HOUR / 6));
    for (n, price) in [(1, "18500.00"), (2, "18600.00"), (3, "18700.00")] {
        let bid = pb::PlaceBidRequest {
            request_id: format!("sealed-{n}"),
            auction_id: id.clone(),
            price: price.into(),
            quantity: "2.000".into(),
        };
        server.as_(&format!("b{n}")).trading.place_bid(bid).await.unwrap();
    }
    server.set_time(t0.plus_micros(HOUR));
    let mut seen = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        let done = e.kind == pb::AuctionEventKind::Concluded as i32;
        seen.push((e.sequence, e.kind, e.phase, e.live.is_some(), e.final_price.clone()));
        if done {
            break;
        }
    }
    // State, opened, concluded: sequence 0, 1, 2. Three bids changed nothing a watcher sees.
    assert_eq!(
        seen,
        vec![
            (0, pb::AuctionEventKind::State as i32, pb::AuctionPhase::Scheduled as i32, false, String::new()),
            (1, pb::AuctionEventKind::Opened as i32, pb::AuctionPhase::Open as i32, false, String::new()),
            (2, pb::AuctionEventKind::Concluded as i32, pb::AuctionPhase::Settled as i32, false, "18500.00".into()),
        ]
    );
    server.stop().await;
}
