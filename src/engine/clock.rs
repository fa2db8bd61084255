//! The clock mechanism (ASCENDING_CLOCK): the round, its clock price, and each bidder's
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

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{BidId, BidderId, Price, Quantity, QuantityTotal, Timestamp};

use super::book::{BidState, BidView};
use super::checks::{BidRules, BookRoom, Holdings, PriceRule, QuantityRule};
use super::spec::{AuctionSpec, ClockTerms};

/// One bidder's demand: at the end of the last round (`None` before round 1 ends) and as
/// stated in this round.
#[derive(Debug, Clone, Default)]
struct Demand {
    previous: Option<Quantity>,
    current: Option<Statement>,
    /// The latest statement, whatever the round: what an allocation refers to.
    latest: Option<Statement>,
    /// How many statements the bidder has made, in every round.
    statements: u32,
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
    /// Total demand at the end of the last completed round (a total over bidders, which may
    /// exceed the lot many times over).
    pub last_round_demand: Option<QuantityTotal>,
}

/// How a round ended.
pub(crate) enum RoundEnd {
    /// Demand exceeds supply below the cap: the next round opens at `next_price`.
    Next { round: u32, price: Price, demand: QuantityTotal, next_price: Price },
    /// The auction ends.
    Final(ClockFinal),
}

/// How a clock auction ended: at `price`, with `excess` when demand still exceeded supply (the
/// cap, the hard stop or the operator's close), when shares are pro-rata to demand.
pub(crate) struct ClockFinal {
    pub price: Price,
    pub excess: bool,
    pub demands: Vec<FinalDemand>,
}

#[derive(Debug, Clone)]
pub(crate) struct ClockBook {
    terms: ClockTerms,
    round: u32,
    round_started: Timestamp,
    price: Price,
    bidders: BTreeMap<BidderId, Demand>,
    last_round_demand: Option<QuantityTotal>,
    /// Every statement, in arrival order.
    history: Vec<BidView>,
    ids: BTreeSet<BidId>,
}

/// Most demand statements one clock auction keeps (as many as a sealed book's bid versions).
const MAX_STATEMENTS: usize = super::book::MAX_SLOTS;

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
            ids: BTreeSet::new(),
        }
    }

    /// The rules for `bidder`'s demand statement this round.
    pub(crate) fn rules(&self, spec: &AuctionSpec, bidder: BidderId, bid: BidId) -> BidRules {
        BidRules {
            price: PriceRule::Clock { price: self.price, round: self.round },
            quantity: QuantityRule::Demand { fill_unit: spec.lot.fill_unit },
            holdings: Holdings::Activity {
                allowed: self.allowed(bidder, spec.lot.quantity, spec.bidder_cap_quantity()),
            },
            exposure: None,
            book: BookRoom {
                full: self.history.len() >= MAX_STATEMENTS,
                id_taken: self.ids.contains(&bid),
                bidder_limit: spec
                    .max_bids_per_bidder
                    .map(|max| (max, self.bidders.get(&bidder).map_or(0, |d| d.statements))),
            },
        }
    }

    /// Round 1 starts when the auction opens.
    pub(crate) fn opened(&mut self, at: Timestamp) {
        self.round_started = at;
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
    fn allowed(&self, bidder: BidderId, lot: Quantity, per_bidder: Option<Quantity>) -> Quantity {
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
        demand.statements = demand.statements.saturating_add(1);
        let view = BidView { id: bid, bidder, price: self.price, quantity, placed_at: at, state: BidState::Active };
        self.history.push(view);
        self.ids.insert(bid);
        view
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

    /// The running round's total demand.
    fn total(closing: &[(BidderId, Option<Statement>, Quantity, Option<Quantity>)]) -> QuantityTotal {
        // Each demand is at most the lot, and an i128 holds any number of them that fits in
        // memory; saturating keeps even a broken invariant from panicking.
        closing.iter().fold(QuantityTotal::ZERO, |sum, (_, _, q, _)| sum.plus(*q).unwrap_or(sum))
    }

    /// Ends the auction at `at` in the running round, whatever the demand (the hard stop, the
    /// cap, or the operator's close).
    pub(crate) fn finish(&self, spec: &AuctionSpec, at: Timestamp) -> ClockFinal {
        let closing = self.closing_demands();
        let excess = Self::total(&closing) > QuantityTotal::of(spec.lot.quantity);
        let demands = closing
            .iter()
            .filter_map(|(bidder, current, quantity, previous)| {
                let latest = self.bidders.get(bidder)?.latest?;
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
        ClockFinal { price: self.price, excess, demands }
    }

    /// Ends the running round at `at`: the auction ends when demand fits the supply or the
    /// clock can rise no further; otherwise the next round opens.
    pub(crate) fn end_round(&mut self, spec: &AuctionSpec, at: Timestamp) -> RoundEnd {
        let closing = self.closing_demands();
        let demand = Self::total(&closing);
        let at_cap = spec.prices.cap.is_some_and(|cap| self.price >= cap);
        // The clock cannot rise past the largest price either.
        let next = self.price.checked_add(self.terms.increment);
        if demand <= QuantityTotal::of(spec.lot.quantity) || at_cap {
            return RoundEnd::Final(self.finish(spec, at));
        }
        let Some(next) = next else { return RoundEnd::Final(self.finish(spec, at)) };
        let (round, price) = (self.round, self.price);
        self.price = spec.prices.cap.map_or(next, |cap| next.min(cap));
        self.round = self.round.saturating_add(1);
        self.round_started = at;
        self.last_round_demand = Some(demand);
        for (bidder, _, quantity, _) in closing {
            if let Some(d) = self.bidders.get_mut(&bidder) {
                d.previous = Some(quantity);
                d.current = None;
            }
        }
        RoundEnd::Next { round, price, demand, next_price: self.price }
    }
}
