//! No command panics the engine, whatever its numbers: random command sequences over every
//! format, with extreme prices and quantities (zero, one kilogram, the whole lot, the largest
//! representable), empty fields, revisions, withdrawals, timers far in the future, operator
//! closes, cancels and round advances. After every step the book's invariants hold, a refused
//! command changed nothing visible, and every settlement adds up.
//!
//! `cargo test nopanic` runs 256 sequences; `PROPTEST_CASES=100000 cargo test --release
//! nopanic` is the longer run.

use emission_auction::domain::{
    AuctionId, BidId, MAX_PRICE_FEN, MAX_QUANTITY_KG, Price, PricePolicy, Quantity, Ratio, Timestamp,
};
use emission_auction::engine::{
    AscendingRequest, Auction, AuctionRequest, BidRevision, CapMode, CapRequest, ClockRequest, Command, Event, Format,
    LotRequest, OriginKind, Seed, Settlement, TieRule, Undersubscription,
};
use proptest::prelude::*;

use super::scenarios::bidder;

const T0: i64 = 1_767_225_600_000_000;
const SECOND: i64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
    Bid { who: u8, price: Option<i64>, quantity: Option<i64> },
    Revise { pick: usize, price: Option<i64>, quantity: Option<i64> },
    Withdraw { pick: usize },
    Tick { seconds: i64 },
    Open,
    Close,
    Cancel,
    Advance,
}

/// Prices in fen: around the floor, and the extremes.
fn price() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        1 => Just(None),
        4 => (1_790_000i64..2_300_000).prop_map(Some),
        1 => Just(Some(MAX_PRICE_FEN)),
        1 => Just(Some(1)),
        1 => (1i64..=MAX_PRICE_FEN).prop_map(Some),
    ]
}

/// Quantities in kilograms: small, whole tonnes, the extremes.
fn quantity() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(0)),
        3 => (1i64..20).prop_map(|t| Some(t * 1000)),
        1 => Just(Some(MAX_QUANTITY_KG)),
        1 => Just(Some(9_000_000_000)),
        1 => (0i64..=MAX_QUANTITY_KG).prop_map(Some),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..6, price(), quantity()).prop_map(|(who, price, quantity)| Op::Bid { who, price, quantity }),
        2 => (any::<usize>(), price(), quantity()).prop_map(|(pick, price, quantity)| Op::Revise { pick, price, quantity }),
        1 => any::<usize>().prop_map(|pick| Op::Withdraw { pick }),
        2 => prop_oneof![0i64..200, Just(100_000_000)].prop_map(|seconds| Op::Tick { seconds }),
        1 => Just(Op::Open),
        1 => Just(Op::Close),
        1 => Just(Op::Cancel),
        1 => Just(Op::Advance),
    ]
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![
        Just(Format::SealedFirstPrice),
        Just(Format::SealedUniformPrice),
        Just(Format::SealedPayAsBid),
        Just(Format::FixedPrice),
        Just(Format::AscendingEnglish),
        Just(Format::AscendingClock),
    ]
}

fn tie() -> impl Strategy<Value = TieRule> {
    prop_oneof![Just(TieRule::TimePriority), Just(TieRule::ProRata), Just(TieRule::SeededRandom)]
}

fn under() -> impl Strategy<Value = Undersubscription> {
    prop_oneof![
        Just(Undersubscription::SellAvailable),
        Just(Undersubscription::Cancel),
        Just(Undersubscription::ClearAtFloor)
    ]
}

/// Lot sizes in whole fill units, with fill units from a kilogram to a thousand tonnes; some
/// lots are as large as a quantity can be.
fn lot() -> impl Strategy<Value = (i64, i64)> {
    prop_oneof![
        3 => (prop_oneof![Just(1i64), Just(500), Just(1000)], 1i64..40),
        1 => Just((1000, 9_000_000)),
        1 => Just((1, MAX_QUANTITY_KG)),
    ]
}

struct Setup {
    format: Format,
    tie: TieRule,
    under: Undersubscription,
    lot: (i64, i64),
    bidder_cap: Option<i64>,
    cap: Option<i64>,
    irrevocable: bool,
}

fn request(s: &Setup) -> AuctionRequest {
    let (fill, units) = s.lot;
    let quantity = Quantity::from_units(fill.saturating_mul(units).min(MAX_QUANTITY_KG)).unwrap();
    let divisible = !matches!(s.format, Format::SealedFirstPrice | Format::AscendingEnglish);
    let fill_unit = if divisible { Quantity::from_units(fill).unwrap() } else { quantity };
    let quantity = Quantity::from_units(quantity.units() - quantity.units() % fill_unit.units()).unwrap();
    AuctionRequest {
        lot: LotRequest {
            id: "NP-1".parse().unwrap(),
            pollutant: emission_auction::domain::Pollutant::So2,
            quantity,
            fill_unit: Some(fill_unit),
            seller: bidder("S"),
            origin: OriginKind::Allocated,
            certificate_id: None,
            region: "140100".parse().unwrap(),
            vintage_year: 2025,
            valid_years: 5,
            project: Default::default(),
        },
        format: s.format,
        tie_rule: s.tie,
        undersubscription: s.under,
        min_bidders: 0,
        per_bidder_cap: s.bidder_cap.map(|p| Ratio::from_ppm(p * 10_000)),
        revision: if s.irrevocable { BidRevision::Irrevocable } else { BidRevision::Revisable },
        conversion_factor: Ratio::ONE,
        reserve_markup: None,
        cap: match s.cap {
            Some(p) => CapRequest { mode: CapMode::Percent, percent: Some(Ratio::from_ppm(p * 10_000)) },
            None => CapRequest { mode: CapMode::None, percent: None },
        },
        opens_at: Timestamp::from_micros(T0 + 10 * SECOND),
        closes_at: Timestamp::from_micros(T0 + 100 * SECOND),
        ascending: (s.format == Format::AscendingEnglish).then_some(AscendingRequest {
            start_price: None,
            increment: Price::from_units(10_000).unwrap(),
            countdown_seconds: 20,
            hard_stop: Some(Timestamp::from_micros(T0 + 150 * SECOND)),
            max_extensions: Some(3),
            timed_min_bidders: 1,
        }),
        clock: (s.format == Format::AscendingClock).then_some(ClockRequest {
            start_price: None,
            increment: Price::from_units(50_000).unwrap(),
            round_seconds: 15,
            silent_keeps_demand: true,
        }),
        deposit: None,
        seller_section: None,
    }
}

/// Every settlement adds up, whatever the auction.
fn check(s: &Settlement, lot: Quantity) {
    let sold: i128 = s.allocations.iter().map(|a| i128::from(a.quantity.units())).sum();
    assert_eq!(sold, i128::from(s.sold.units()));
    assert_eq!(i128::from(s.sold.units()) + i128::from(s.unsold.units()), i128::from(lot.units()));
    let amount: i128 = s.allocations.iter().map(|a| i128::from(a.amount.units())).sum();
    assert_eq!(amount, i128::from(s.total_amount.units()));
    for a in &s.allocations {
        assert!(a.unit_price >= s.floor && s.cap.is_none_or(|cap| a.unit_price <= cap));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_command_panics_the_engine(
        format in format(),
        tie in tie(),
        under in under(),
        lot in lot(),
        bidder_cap in proptest::option::of(1i64..=100),
        cap in proptest::option::of(0i64..=50),
        irrevocable in any::<bool>(),
        ops in prop::collection::vec((op(), 0i64..40), 1..60),
    ) {
        let setup = Setup { format, tie, under, lot, bidder_cap, cap, irrevocable };
        let policy = PricePolicy::default();
        // Invalid terms are refused with a reason; that is an outcome too.
        let Ok(mut auction) =
            Auction::create(AuctionId::new(1), request(&setup), &policy, Timestamp::from_micros(T0), Seed([5; 32]))
        else {
            return Ok(());
        };
        let lot_quantity = auction.spec().lot.quantity;
        let mut bids: Vec<(u8, BidId)> = Vec::new();
        let mut now = T0;
        let mut concluded = 0;
        for (i, (op, gap)) in ops.into_iter().enumerate() {
            now += gap * SECOND / 4;
            let at = Timestamp::from_micros(now);
            let before = (auction.phase(), auction.public_seq());
            let p = |fen: Option<i64>| fen.map(|f| Price::from_units(f).unwrap());
            let q = |kg: Option<i64>| kg.map(|k| Quantity::from_units(k).unwrap());
            let result = match op {
                Op::Bid { who, price, quantity } => {
                    let id = BidId::new(i as u64 + 1);
                    let result = auction.apply(at, Command::PlaceBid {
                        bidder: bidder(&((b'A' + who) as char).to_string()),
                        bid: id,
                        price: p(price),
                        quantity: q(quantity),
                        eligibility: None,
                    });
                    if result.is_ok() {
                        bids.push((who, id));
                    }
                    result
                }
                Op::Revise { pick, price, quantity } if !bids.is_empty() => {
                    let (who, id) = bids[pick % bids.len()];
                    let who = bidder(&((b'A' + who) as char).to_string());
                    auction.apply(at, Command::ReviseBid { bidder: who, bid: id, price: p(price), quantity: q(quantity), eligibility: None })
                }
                Op::Withdraw { pick } if !bids.is_empty() => {
                    let (who, id) = bids[pick % bids.len()];
                    auction.apply(at, Command::WithdrawBid { bidder: bidder(&((b'A' + who) as char).to_string()), bid: id })
                }
                Op::Tick { seconds } => {
                    now += seconds * SECOND;
                    Ok(auction.tick(Timestamp::from_micros(now)))
                }
                Op::Open => auction.apply(at, Command::Open),
                Op::Close => auction.apply(at, Command::Close),
                Op::Cancel => auction.apply(at, Command::Cancel { note: None }),
                Op::Advance => auction.apply(at, Command::AdvanceRound),
                _ => continue,
            };
            auction.check_invariants();
            match result {
                Ok(events) => {
                    for event in &events {
                        if let Event::Concluded(s) = event {
                            check(s, lot_quantity);
                            concluded += 1;
                        }
                    }
                }
                // A refusal changes nothing anyone can see.
                Err(e) => {
                    prop_assert_eq!((auction.phase(), auction.public_seq()), before, "{} changed state", e);
                    prop_assert!(!e.reason().code().is_empty());
                }
            }
            prop_assert!(concluded <= 1, "an auction concludes once");
            // Bids stay readable whatever happened.
            let _ = auction.all_bids();
            let _ = auction.ascending_view();
            let _ = auction.clock_view();
            let _ = auction.next_deadline();
        }
    }
}
