//! The English mechanism (ASCENDING_ENGLISH, 网络竞价): a public rising price on one indivisible
//! lot, bidders under per-auction pseudonyms (竞买号), a free-bidding period until `closes_at`,
//! then a timed period in which every accepted bid restarts a countdown, bounded by an optional
//! hard stop and maximum number of restarts. Bids stand once made (others bid against them);
//! every bid stays in the book, and the auction clears like a first-price one: ties happen only
//! at the cap, where the first to reach it wins, or a seeded lottery draws among those there.

use crate::domain::{BidId, BidderId, Price, Quantity, Timestamp};

use super::book::{BidView, Bidder, BidderNo, IdTaken, SealedBook};
use super::checks::{Barrier, BidRules, BookRoom, Holdings, PriceRule, QuantityRule};
use super::clearing::{self, Seed};
use super::{AscendingTerms, AuctionSpec, Settlement, TieRule};

/// The highest bid so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lead {
    bidder: BidderId,
    price: Price,
}

/// Which part of the auction's timeline bidding is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    /// Until `closes_at`: bids change no deadline.
    Free,
    /// After it: the running countdown ends at `deadline`; `extensions` bids restarted it.
    Timed { deadline: Timestamp, extensions: u32 },
}

#[derive(Debug)]
pub(super) struct English {
    terms: AscendingTerms,
    /// Every bid stays here. A bidder's pseudonym is its number in this book plus one: numbered
    /// from 1 in the order bidders first bid.
    book: SealedBook,
    lead: Option<Lead>,
    period: Period,
}

/// What anyone may see of an ascending auction while it runs: prices and pseudonyms, never
/// who the bidders are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AscendingView {
    pub current_price: Option<Price>,
    /// The leading bidder's pseudonym.
    pub leader: Option<u32>,
    /// The least the next bid may be; `None` when no further bid can be taken (the auction is
    /// over, or the cap was reached and the first to reach it wins).
    pub min_next: Option<Price>,
    pub timed: bool,
    /// The free period's end, then the running countdown's end.
    pub deadline: Timestamp,
    pub extensions: u32,
    pub bidders: u32,
}

/// How the free period ended.
pub(super) enum FreePeriodEnd {
    /// Enough bidders: the countdown runs until `deadline`.
    Timed { deadline: Timestamp },
    /// Too few bidders for a timed period: the auction ends with the free period.
    Over,
}

impl English {
    pub(super) fn new(terms: AscendingTerms) -> English {
        English { terms, book: SealedBook::default(), lead: None, period: Period::Free }
    }

    pub(super) fn book(&self) -> &SealedBook {
        &self.book
    }

    fn bidders(&self) -> u32 {
        self.book.bidder_count()
    }

    /// When the timed period's first countdown ends.
    fn first_countdown(&self, spec: &AuctionSpec) -> Timestamp {
        let end = spec.closes_at.plus_micros(i64::from(self.terms.countdown_seconds) * 1_000_000);
        self.terms.hard_stop.map_or(end, |stop| end.min(stop))
    }

    /// When bidding ends for a bid stamped `at`, given what has been applied so far: the free
    /// period's end, the running countdown's end, or (the free period over but not yet
    /// processed) the first countdown's end, or the free period's end when too few bidders came
    /// for a timed period.
    pub(super) fn bidding_ends(&self, spec: &AuctionSpec, at: Timestamp) -> Timestamp {
        match self.period {
            Period::Timed { deadline, .. } => deadline,
            Period::Free if at < spec.closes_at || self.bidders() < self.terms.timed_min_bidders => spec.closes_at,
            Period::Free => self.first_countdown(spec),
        }
    }

    /// The next moment time alone changes the auction while it is open.
    pub(super) fn next_deadline(&self, spec: &AuctionSpec) -> Timestamp {
        match self.period {
            Period::Timed { deadline, .. } => deadline,
            Period::Free => spec.closes_at,
        }
    }

    /// Ends the free period (time reached `closes_at`).
    pub(super) fn end_free_period(&mut self, spec: &AuctionSpec) -> Option<FreePeriodEnd> {
        if self.period != Period::Free {
            return None;
        }
        if self.bidders() < self.terms.timed_min_bidders {
            return Some(FreePeriodEnd::Over);
        }
        let deadline = self.first_countdown(spec);
        self.period = Period::Timed { deadline, extensions: 0 };
        Some(FreePeriodEnd::Timed { deadline })
    }

    pub(super) fn rules(&self, spec: &AuctionSpec, bidder: &Bidder) -> BidRules {
        let cap = spec.prices.cap;
        let lottery = spec.tie_rule == TieRule::SeededRandom;
        let price = match self.lead {
            None => PriceRule::AtLeast { current: None, min_next: self.terms.start_price, cap },
            // At the cap under a lottery, every bidder may join the draw, once.
            Some(lead) if Some(lead.price) == cap && lottery => {
                if self.book.has_active_bid_at(bidder, lead.price) {
                    PriceRule::Barred(Barrier::AlreadyLeading { current: lead.price })
                } else {
                    PriceRule::AtLeast { current: Some(lead.price), min_next: lead.price, cap }
                }
            }
            Some(lead) if Some(lead.price) == cap => PriceRule::Barred(Barrier::CapReached { cap: lead.price }),
            Some(lead) if lead.bidder == bidder.code => {
                PriceRule::Barred(Barrier::AlreadyLeading { current: lead.price })
            }
            Some(lead) => match lead.price.checked_add(self.terms.increment) {
                Some(next) => PriceRule::AtLeast {
                    current: Some(lead.price),
                    min_next: cap.map_or(next, |cap| next.min(cap)),
                    cap,
                },
                // The increment would pass the largest price: nothing can outbid the lead.
                None => PriceRule::Barred(Barrier::CapReached { cap: lead.price }),
            },
        };
        BidRules {
            price,
            quantity: QuantityRule::WholeLot(spec.lot.quantity),
            holdings: Holdings::Unbounded,
            exposure: None,
            book: BookRoom {
                full: self.book.is_full(),
                // The book checks the id as it takes the bid (`SealedBook::insert`).
                id_taken: false,
                bidder_limit: spec.max_bids_per_bidder.map(|max| (max, self.book.bids_placed(bidder))),
            },
        }
    }

    /// Takes a checked bid: it may lead, and in the timed period it restarts the countdown.
    /// Returns the bid and its bidder's pseudonym, or, changing nothing, that its id is taken.
    pub(super) fn raise(
        &mut self,
        spec: &AuctionSpec,
        at: Timestamp,
        bidder: Bidder,
        bid: BidId,
        price: Price,
        quantity: Quantity,
    ) -> Result<(BidView, u32), IdTaken> {
        let (view, number) = self.book.insert(bid, bidder, price, quantity, at)?;
        if at >= spec.closes_at {
            let (deadline, extensions) = match self.period {
                Period::Timed { deadline, extensions } => (deadline, extensions),
                Period::Free => (self.first_countdown(spec), 0),
            };
            self.period = if self.terms.max_extensions.is_none_or(|max| extensions < max) {
                let restarted = at.plus_micros(i64::from(self.terms.countdown_seconds) * 1_000_000);
                let deadline = self.terms.hard_stop.map_or(restarted, |stop| restarted.min(stop));
                Period::Timed { deadline, extensions: extensions + 1 }
            } else {
                Period::Timed { deadline, extensions }
            };
        }
        // The first to reach the cap stays in the lead; later bidders at the cap join the draw.
        if self.lead.is_none_or(|lead| price > lead.price) {
            self.lead = Some(Lead { bidder: bidder.code, price });
        }
        Ok((view, pseudonym(number)))
    }

    pub(super) fn pseudonym_of(&self, bidder: BidderId) -> Option<u32> {
        self.book.bidder(bidder).number.map(pseudonym)
    }

    pub(super) fn view(&self, spec: &AuctionSpec, over: bool) -> AscendingView {
        let current_price = self.lead.map(|l| l.price);
        let min_next = match (self.lead, spec.prices.cap) {
            _ if over => None,
            (Some(lead), Some(cap)) if lead.price == cap => (spec.tie_rule == TieRule::SeededRandom).then_some(cap),
            (Some(lead), cap) => {
                lead.price.checked_add(self.terms.increment).map(|next| cap.map_or(next, |cap| next.min(cap)))
            }
            (None, _) => Some(self.terms.start_price),
        };
        let (timed, deadline, extensions) = match self.period {
            Period::Free => (false, spec.closes_at, 0),
            Period::Timed { deadline, extensions } => (true, deadline, extensions),
        };
        AscendingView {
            current_price,
            leader: self.lead.and_then(|l| self.pseudonym_of(l.bidder)),
            min_next,
            timed,
            deadline,
            extensions,
            bidders: self.bidders(),
        }
    }

    pub(super) fn clear(&self, spec: &AuctionSpec, seed: Option<&Seed>, at: Timestamp) -> Settlement {
        clearing::clear(spec, &self.book, seed, at)
    }
}

/// A bidder's pseudonym (竞买号): its number in the book, counted from 1.
fn pseudonym(number: BidderNo) -> u32 {
    number.saturating_add(1)
}
