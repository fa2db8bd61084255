//! The sealed mechanism: SEALED_FIRST_PRICE, SEALED_UNIFORM_PRICE, SEALED_PAY_AS_BID and
//! FIXED_PRICE. Bids rest in a [`SealedBook`] unseen by anyone but their bidder until the close,
//! may be revised or withdrawn (unless the auction says irrevocable), and clear in
//! [`super::clearing`].

use crate::domain::{BidderId, Quantity, QuantityTotal, Timestamp};

use super::book::{BidView, Bidder, SealedBook};
use super::checks::{BidRules, BidderCap, BookRoom, Holdings, PriceRule, QuantityRule};
use super::clearing::{self, Seed};
use super::{AuctionSpec, Format, Settlement};

#[derive(Debug)]
pub(super) struct Sealed {
    pub book: SealedBook,
    /// What every bid's price and quantity must be, and the per-bidder cap: fixed by the spec,
    /// so worked out once rather than for every bid.
    price: PriceRule,
    quantity: QuantityRule,
    cap: Option<BidderCap>,
    max_bids: Option<u32>,
}

impl Sealed {
    pub(super) fn new(spec: &AuctionSpec) -> Sealed {
        let (lot, band) = (&spec.lot, &spec.prices);
        let price = match spec.format {
            Format::FixedPrice => PriceRule::Posted(band.floor),
            _ => PriceRule::Band { floor: band.floor, cap: band.cap },
        };
        let quantity = if spec.format.is_divisible() {
            QuantityRule::FillUnits { fill_unit: lot.fill_unit, lot: lot.quantity }
        } else {
            QuantityRule::WholeLot(lot.quantity)
        };
        let cap =
            spec.per_bidder_cap.zip(spec.bidder_cap_quantity()).map(|(ratio, quantity)| BidderCap { ratio, quantity });
        Sealed { book: SealedBook::default(), price, quantity, cap, max_bids: spec.max_bids_per_bidder }
    }

    /// The rules for a bid by `bidder` (as the book knows it); `revising` is the bid it
    /// replaces, if any; its `affiliates` share its cap.
    #[inline(always)]
    pub(super) fn rules(&self, bidder: &Bidder, revising: Option<&BidView>, affiliates: &[BidderId]) -> BidRules {
        let holdings = match self.quantity {
            QuantityRule::FillUnits { .. } => {
                // Affiliates share one cap: what the group holds counts as the bidder's own.
                let held = affiliates
                    .iter()
                    .try_fold(self.book.active_quantity(bidder), |held, a| {
                        held.plus_total(self.book.active_quantity_of(*a))
                    })
                    .unwrap_or(QuantityTotal::of(Quantity::MAX));
                // A revision replaces its bid: what the bidder holds besides it is what counts.
                let held = revising.and_then(|old| held.minus(old.quantity)).unwrap_or(held);
                Holdings::Total { held, cap: self.cap }
            }
            _ => Holdings::OneBid { exists: revising.is_none() && self.book.has_active_bid(bidder) },
        };
        let book = BookRoom {
            full: self.book.is_full(),
            // The book checks the id as it takes the bid (`SealedBook::insert`).
            id_taken: false,
            bidder_limit: self.max_bids.filter(|_| revising.is_none()).map(|max| (max, self.book.bids_placed(bidder))),
        };
        BidRules { price: self.price, quantity: self.quantity, holdings, exposure: None, book }
    }

    pub(super) fn clear(&self, spec: &AuctionSpec, seed: Option<&Seed>, at: Timestamp) -> Settlement {
        clearing::clear(spec, &self.book, seed, at)
    }
}
