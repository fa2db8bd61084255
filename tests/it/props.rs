//! Property tests of the clearing invariants, over random auctions and bid sequences.

use emission_auction::domain::{Amount, AuctionId, BidId, Pollutant, Price, PricePolicy, Quantity, Ratio, Timestamp};
use emission_auction::engine::{
    Auction, AuctionRequest, BidRevision, CapMode, CapRequest, Command, Format, LotRequest, OriginKind, Seed,
    Settlement, SettlementStatus, TieRule, Undersubscription,
};
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};

use super::scenarios::bidder;

const T0: i64 = 1_767_225_600_000_000;

#[derive(Debug, Clone)]
enum Op {
    /// Bidder letter, price in fen above the floor, quantity in fill units.
    Bid(u8, i64, i64),
    /// Revise the n-th accepted bid (mod count) to a new price offset and size.
    Revise(usize, i64, i64),
    Withdraw(usize),
}

#[derive(Debug, Clone)]
struct Case {
    format: Format,
    tie: TieRule,
    under: Undersubscription,
    lot_units: i64,
    fill_kg: i64,
    factor_ppm: i64,
    cap_pct: Option<i64>,
    bidder_cap_pct: Option<i64>,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Format::SealedFirstPrice), Just(Format::SealedUniformPrice), Just(Format::SealedPayAsBid)],
        prop_oneof![Just(TieRule::TimePriority), Just(TieRule::ProRata), Just(TieRule::SeededRandom)],
        prop_oneof![
            Just(Undersubscription::SellAvailable),
            Just(Undersubscription::Cancel),
            Just(Undersubscription::ClearAtFloor)
        ],
        1i64..40,
        prop_oneof![Just(1i64), Just(500), Just(1_000), Just(3)],
        500_000i64..1_600_000,
        prop::option::of(1i64..60),
        prop::option::of(10i64..100),
        prop::collection::vec(
            prop_oneof![
                6 => (0u8..8, 0i64..400_000, 1i64..15).prop_map(|(b, p, q)| Op::Bid(b, p, q)),
                1 => (0usize..50, 0i64..400_000, 1i64..15).prop_map(|(i, p, q)| Op::Revise(i, p, q)),
                1 => (0usize..50).prop_map(Op::Withdraw),
            ],
            0..40,
        ),
    )
        .prop_map(|(format, tie, under, lot_units, fill_kg, factor_ppm, cap_pct, bidder_cap_pct, ops)| {
            let tie =
                if format == Format::SealedFirstPrice && tie == TieRule::ProRata { TieRule::TimePriority } else { tie };
            let bidder_cap_pct = if format == Format::SealedFirstPrice { None } else { bidder_cap_pct };
            Case { format, tie, under, lot_units, fill_kg, factor_ppm, cap_pct, bidder_cap_pct, ops }
        })
}

/// An active bid at the close: id, price, quantity.
type ActiveBid = (BidId, Price, Quantity);

/// Runs a case; returns the auction's settlement and the bids active at the close.
fn run(case: &Case) -> Option<(Settlement, Vec<ActiveBid>)> {
    let fill = Quantity::from_units(case.fill_kg).unwrap();
    let lot_qty = if case.format == Format::SealedFirstPrice {
        fill
    } else {
        Quantity::from_units(case.fill_kg * case.lot_units).unwrap()
    };
    let request = AuctionRequest {
        lot: LotRequest {
            id: "P-1".parse().unwrap(),
            pollutant: Pollutant::Cod,
            quantity: lot_qty,
            fill_unit: Some(fill),
            seller: bidder("S"),
            origin: OriginKind::Allocated,
            certificate_id: None,
            region: "140100".parse().unwrap(),
            vintage_year: 2025,
            valid_years: 5,
            project: Default::default(),
        },
        format: case.format,
        tie_rule: case.tie,
        undersubscription: case.under,
        min_bidders: 0,
        per_bidder_cap: case.bidder_cap_pct.map(|p| Ratio::from_ppm(p * 10_000)),
        revision: BidRevision::Revisable,
        conversion_factor: Ratio::from_ppm(case.factor_ppm),
        reserve_markup: None,
        cap: case.cap_pct.map_or(CapRequest { mode: CapMode::None, percent: None }, |p| CapRequest {
            mode: CapMode::Percent,
            percent: Some(Ratio::from_ppm(p * 10_000)),
        }),
        opens_at: Timestamp::from_micros(T0),
        closes_at: Timestamp::from_micros(T0 + 1_000_000_000),
        ascending: None,
        clock: None,
        deposit: None,
        seller_section: None,
    };
    let mut auction = Auction::create(
        AuctionId::new(1),
        request,
        &PricePolicy::default(),
        Timestamp::from_micros(T0 - 1),
        Seed([9; 32]),
    )
    .ok()?;
    let floor = auction.spec().prices.floor;
    let mut accepted: Vec<(BidId, emission_auction::domain::BidderId)> = Vec::new();
    let mut next = 1u64;
    for (i, op) in case.ops.iter().enumerate() {
        let at = Timestamp::from_micros(T0 + 1 + i as i64);
        let qty = |units: i64| {
            if case.format == Format::SealedFirstPrice {
                lot_qty
            } else {
                Quantity::from_units(units * case.fill_kg).unwrap()
            }
        };
        let price = |offset: i64| Price::from_units(floor.units() + offset).unwrap();
        match op {
            Op::Bid(b, p, q) => {
                let who = bidder(&((b'A' + b) as char).to_string());
                if auction.place_bid(at, who, BidId::new(next), Some(price(*p)), Some(qty(*q))).is_ok() {
                    accepted.push((BidId::new(next), who));
                    next += 1;
                }
            }
            Op::Revise(n, p, q) if !accepted.is_empty() => {
                let (id, who) = accepted[n % accepted.len()];
                let revise = Command::ReviseBid {
                    bidder: who,
                    bid: id,
                    price: Some(price(*p)),
                    quantity: Some(qty(*q)),
                    eligibility: None,
                };
                let _ = auction.apply(at, revise);
            }
            Op::Withdraw(n) if !accepted.is_empty() => {
                let (id, who) = accepted[n % accepted.len()];
                let _ = auction.withdraw_bid(at, who, id);
            }
            _ => {}
        }
        auction.check_invariants();
    }
    let active: Vec<_> = accepted
        .iter()
        .filter_map(|(id, who)| auction.bids_of(*who).into_iter().find(|b| b.id == *id))
        .filter(|b| b.state == emission_auction::engine::BidState::Active)
        .map(|b| (b.id, b.price, b.quantity))
        .collect();
    let events = auction.tick(Timestamp::from_micros(T0 + 1_000_000_000));
    let settlement = events.into_iter().find_map(|e| match e {
        emission_auction::engine::Event::Concluded(s) => Some(*s),
        _ => None,
    })?;
    Some((settlement, active))
}

fn half_up(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn dec(units: i64, scale: u32) -> Decimal {
    Decimal::new(units, scale)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn clearing_invariants(case in case()) {
        let Some((s, active)) = run(&case) else { return Ok(()) };
        let supply = s.sold.units() + s.unsold.units();
        // Never more than the lot; sold is what the allocations add up to.
        prop_assert!(s.sold.units() <= supply);
        prop_assert_eq!(s.allocations.iter().map(|a| a.quantity.units()).sum::<i64>(), s.sold.units());
        let mut total = Decimal::ZERO;
        let (mut buyer, mut seller) = (Decimal::ZERO, Decimal::ZERO);
        for a in &s.allocations {
            let (_, bid_price, bid_qty) = *active.iter().find(|(id, _, _)| *id == a.bid_id).expect("allocation to an active bid");
            // Nobody pays below the floor, above the cap, or above its own bid.
            prop_assert!(a.unit_price >= s.floor);
            prop_assert!(s.cap.is_none_or(|c| a.unit_price <= c));
            prop_assert!(a.unit_price <= bid_price);
            prop_assert!(a.quantity <= bid_qty && !a.quantity.is_zero());
            prop_assert_eq!(a.quantity.units() % case.fill_kg, 0);
            // Amounts and fees to the fen, recomputed independently with Decimal.
            let amount = half_up(dec(a.unit_price.units(), 2) * dec(a.quantity.units(), 3));
            prop_assert_eq!(dec(a.amount.units(), 2), amount);
            prop_assert_eq!(dec(a.buyer_fee.units(), 2), half_up(amount * Decimal::new(75, 4)));
            prop_assert_eq!(dec(a.seller_fee.units(), 2), half_up(amount * Decimal::new(75, 4)));
            total += amount;
            buyer += dec(a.buyer_fee.units(), 2);
            seller += dec(a.seller_fee.units(), 2);
        }
        prop_assert_eq!(dec(s.total_amount.units(), 2), total);
        prop_assert_eq!(dec(s.total_buyer_fee.units(), 2), buyer);
        prop_assert_eq!(dec(s.total_seller_fee.units(), 2), seller);

        match s.status {
            SettlementStatus::Settled => prop_assert!(!s.allocations.is_empty()),
            _ => prop_assert!(s.allocations.is_empty() && s.sold.is_zero()),
        }
        if active.is_empty() {
            prop_assert_eq!(s.status, SettlementStatus::Failed);
        }
        // Monotone in price: a bid that got nothing never outbid one that got something, and a
        // bid that was cut short never outbid one that was filled at a lower price.
        let got = |id: BidId| s.allocations.iter().find(|a| a.bid_id == id).map_or(0, |a| a.quantity.units());
        if s.status == SettlementStatus::Settled {
            for (id_hi, p_hi, q_hi) in &active {
                for (id_lo, p_lo, _) in &active {
                    if p_hi > p_lo && got(*id_lo) > 0 {
                        prop_assert_eq!(got(*id_hi), q_hi.units(), "a higher bid was not filled while a lower one was");
                    }
                }
            }
            if case.format == Format::SealedUniformPrice && case.under != Undersubscription::ClearAtFloor {
                let lowest = s.allocations.iter().map(|a| active.iter().find(|b| b.0 == a.bid_id).unwrap().1).min().unwrap();
                prop_assert_eq!(s.clearing_price, Some(lowest));
                prop_assert!(s.allocations.iter().all(|a| a.unit_price == lowest));
            }
            if case.format == Format::SealedFirstPrice {
                let top = active.iter().map(|b| b.1).max().unwrap();
                prop_assert_eq!(s.allocations[0].unit_price, top);
            }
        }
    }

    #[test]
    fn clearing_is_deterministic(case in case()) {
        let first = run(&case).map(|(s, _)| serde_json::to_string(&s).unwrap());
        let second = run(&case).map(|(s, _)| serde_json::to_string(&s).unwrap());
        prop_assert_eq!(first, second);
    }

    #[test]
    fn decimal_text_round_trips(units in 1i64..=emission_auction::domain::MAX_PRICE_FEN) {
        let p = Price::from_units(units).unwrap();
        prop_assert_eq!(Price::parse_positive(&p.to_string()).unwrap(), p);
        let q = Quantity::from_units(units).unwrap();
        prop_assert_eq!(Quantity::parse_positive(&q.to_string()).unwrap(), q);
        let a = Amount::from_units(units).unwrap();
        prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
    }
}
