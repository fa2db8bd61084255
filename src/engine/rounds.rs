//! The book of a clock auction (ASCENDING_CLOCK): the round, its clock price, and each bidder's
//! demand at it. Demand statements are private to their bidder; after each round only the
//! aggregate demand is published.
//!
//! Rules (DESIGN.md section 2): round r has clock price start + (r - 1) x increment, never above
//! the cap. In a round each bidder states the quantity it wants at the clock price, a multiple
//! of the fill unit, and never more than its demand at the end of the round before (activity
//! rule; in round 1, at most the lot). A silent bidder keeps its last demand or drops to zero,
//! as the auction says. When a round ends with total demand at or below the supply, everyone
//! gets its demand at that round's price and the supply left over goes to the bidders who cut
//! their demand in that round, by the auction's tie rule (time priority of the cut, or pro-rata
//! to the cut), never more than each one cut. When demand still exceeds supply at the cap (or at
//! the hard stop), the supply is shared pro-rata to demand at that price.

use std::collections::BTreeMap;

use crate::domain::{BidId, BidderId, Price, Quantity, Timestamp};

use super::book::{BidState, BidView};
use super::spec::{AuctionSpec, ClockTerms};

/// One bidder's demand: at the end of the last round (`None` before round 1 ends) and as
/// stated in this round.
#[derive(Debug, Clone, Default)]
struct Demand {
    previous: Option<Quantity>,
    current: Option<Statement>,
    /// The latest statement, whatever the round: what an allocation refers to.
    latest: Option<Statement>,
}

#[derive(Debug, Clone, Copy)]
struct Statement {
    bid: BidId,
    quantity: Quantity,
    at: Timestamp,
    /// Arrival order in the auction, which breaks ties between equal stamps.
    arrival: u64,
}

/// A bidder's standing when the auction ends, for clearing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinalDemand {
    pub bid: BidId,
    pub bidder: BidderId,
    /// Demand at the final price.
    pub quantity: Quantity,
    /// How much it cut in the final round (zero in round 1 or for those who did not cut).
    pub cut: Quantity,
    /// When it made its final-round statement; silent bidders rank after every statement.
    pub stated_at: Timestamp,
    /// Arrival order of that statement (`u64::MAX` when silent), for equal stamps.
    pub arrival: u64,
}

/// What anyone may see of a clock auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockView {
    pub round: u32,
    pub price: Price,
    pub round_ends_at: Timestamp,
    /// Total demand at the end of the last completed round.
    pub last_round_demand: Option<Quantity>,
}

/// How a round ended.
pub(crate) enum RoundEnd {
    /// Demand exceeds supply below the cap: the next round opens at `next_price`.
    Next { round: u32, price: Price, demand: Quantity, next_price: Price },
    /// The auction ends at `price`; `excess` when demand still exceeds supply (the cap or the
    /// hard stop): shares are then pro-rata to demand.
    Final { price: Price, excess: bool, demands: Vec<FinalDemand> },
}

#[derive(Debug, Clone)]
pub(crate) struct ClockBook {
    terms: ClockTerms,
    round: u32,
    round_started: Timestamp,
    price: Price,
    bidders: BTreeMap<BidderId, Demand>,
    last_round_demand: Option<Quantity>,
    /// Every statement, in arrival order.
    history: Vec<BidView>,
    ids: std::collections::BTreeSet<BidId>,
}

impl ClockBook {
    pub(crate) fn new(terms: ClockTerms, opens_at: Timestamp) -> ClockBook {
        ClockBook {
            terms,
            round: 1,
            round_started: opens_at,
            price: terms.start_price,
            bidders: BTreeMap::new(),
            last_round_demand: None,
            history: Vec::new(),
            ids: std::collections::BTreeSet::new(),
        }
    }

    /// Round 1 starts when the auction opens.
    pub(crate) fn opened(&mut self, at: Timestamp) {
        self.round_started = at;
    }

    pub(crate) fn price(&self) -> Price {
        self.price
    }

    pub(crate) fn round(&self) -> u32 {
        self.round
    }

    /// When the running round ends: its timer, or the hard stop.
    pub(crate) fn round_ends(&self, closes_at: Timestamp) -> Timestamp {
        self.round_started.plus_micros(i64::from(self.terms.round_seconds) * 1_000_000).min(closes_at)
    }

    pub(crate) fn view(&self, closes_at: Timestamp) -> ClockView {
        ClockView {
            round: self.round,
            price: self.price,
            round_ends_at: self.round_ends(closes_at),
            last_round_demand: self.last_round_demand,
        }
    }

    /// The most `bidder` may state this round.
    pub(crate) fn allowed(&self, bidder: BidderId, lot: Quantity, per_bidder: Option<Quantity>) -> Quantity {
        match self.round {
            1 => per_bidder.map_or(lot, |cap| cap.min(lot)),
            _ => self.bidders.get(&bidder).and_then(|d| d.previous).unwrap_or(Quantity::ZERO),
        }
    }

    /// Records a checked statement; a later one in the same round replaces it.
    pub(crate) fn state(&mut self, bidder: BidderId, bid: BidId, quantity: Quantity, at: Timestamp) -> BidView {
        let statement = Statement { bid, quantity, at, arrival: self.history.len() as u64 };
        let demand = self.bidders.entry(bidder).or_default();
        demand.current = Some(statement);
        demand.latest = Some(statement);
        let view = BidView { id: bid, bidder, price: self.price, quantity, placed_at: at, state: BidState::Active };
        self.history.push(view);
        self.ids.insert(bid);
        view
    }

    pub(crate) fn contains(&self, bid: BidId) -> bool {
        self.ids.contains(&bid)
    }

    pub(crate) fn statements_of(&self, bidder: BidderId) -> Vec<BidView> {
        self.history.iter().filter(|b| b.bidder == bidder).copied().collect()
    }

    pub(crate) fn statements(&self) -> Vec<BidView> {
        self.history.clone()
    }

    /// Each bidder's demand at the end of the running round.
    fn closing_demands(&self) -> Vec<(BidderId, Option<Statement>, Quantity, Option<Quantity>)> {
        self.bidders
            .iter()
            .map(|(bidder, d)| {
                let quantity = match (d.current, d.previous) {
                    (Some(s), _) => s.quantity,
                    (None, Some(previous)) if self.terms.silent_keeps_demand => previous,
                    _ => Quantity::ZERO,
                };
                (*bidder, d.current, quantity, d.previous)
            })
            .collect()
    }

    /// Ends the running round at `at`. `force` ends the auction whatever the demand (the hard
    /// stop, or the operator's close).
    pub(crate) fn end_round(&mut self, spec: &AuctionSpec, at: Timestamp, force: bool) -> RoundEnd {
        let closing = self.closing_demands();
        let demand = closing
            .iter()
            .try_fold(Quantity::ZERO, |sum, (_, _, q, _)| sum.checked_add(*q))
            .expect("demand within bounds: each at most the lot");
        let supply = spec.lot.quantity;
        let at_cap = spec.prices.cap.is_some_and(|cap| self.price >= cap);
        if demand <= supply || at_cap || force {
            let demands = closing
                .iter()
                .filter_map(|(bidder, current, quantity, previous)| {
                    let latest = self.bidders[bidder].latest?;
                    let cut = match previous {
                        Some(previous) => previous.checked_sub(*quantity).unwrap_or(Quantity::ZERO),
                        None => Quantity::ZERO,
                    };
                    Some(FinalDemand {
                        bid: current.map_or(latest.bid, |s| s.bid),
                        bidder: *bidder,
                        quantity: *quantity,
                        cut,
                        stated_at: current.map_or(at, |s| s.at),
                        arrival: current.map_or(u64::MAX, |s| s.arrival),
                    })
                })
                .collect();
            return RoundEnd::Final { price: self.price, excess: demand > supply, demands };
        }
        let (round, price) = (self.round, self.price);
        let next = self.price.checked_add(self.terms.increment).unwrap_or(self.price);
        self.price = spec.prices.cap.map_or(next, |cap| next.min(cap));
        self.round += 1;
        self.round_started = at;
        self.last_round_demand = Some(demand);
        for (bidder, _, quantity, _) in closing {
            let d = self.bidders.get_mut(&bidder).expect("closing demands come from the map");
            d.previous = Some(quantity);
            d.current = None;
        }
        RoundEnd::Next { round, price, demand, next_price: self.price }
    }
}
