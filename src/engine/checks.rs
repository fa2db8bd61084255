//! The checks every bid passes, whatever the format, in one order:
//!
//! 1. the window: the auction is open and bidding has not ended for a bid stamped now
//!    ([`super::Auction`] checks it, since only it knows the phase);
//! 2. the bidder's eligibility: registered, active, a valid permit, an admitted industry, an
//!    allowed region ([`super::eligibility`], from the facts the command carries);
//! 3. a default for what the bid left out: the posted price, the clock price, the whole lot;
//! 4. the amount: price x quantity within what the engine accepts;
//! 5. the quantity: positive (or zero to drop out of a clock auction), whole fill units, at
//!    most the lot, or exactly the lot in a single-lot auction;
//! 6. the price: the band, the posted price, the ascending minimum, or the clock price;
//! 7. the bidder's holdings: its per-bidder cap, the largest total one bidder may hold, one bid
//!    in a single-lot sealed auction, the activity rule of a clock auction; then, when the
//!    auction asks for a deposit, its exposure ([`Exposure`]): the deposit must cover the
//!    amount the auction requires and the bidder's maximum bid value with this bid;
//! 8. the book: room for one more bid, the bidder's limit on bids, and an unused bid id (the
//!    sealed and English books check the id as they take the bid, so that a bid probes their
//!    id index once: `SealedBook::insert`, which changes nothing when it refuses).
//!
//! Each mechanism says what its rules are for this bid ([`BidRules`]); this module applies them.
//! Nothing here changes state: a bid that passes is taken by its mechanism, and taking it
//! cannot fail.

use crate::domain::{Amount, MAX_AMOUNT_FEN, MAX_BID_AMOUNT_FEN, Price, Quantity, QuantityTotal, Ratio};

use super::EngineError;

/// What one mechanism requires of one bid, given the auction's state and the bidder's holdings.
/// Built for every bid on the hot path: it allocates only when the auction asks a deposit.
#[derive(Debug, Clone)]
pub(super) struct BidRules {
    pub price: PriceRule,
    pub quantity: QuantityRule,
    pub holdings: Holdings,
    /// `None` when the auction asks no deposit (boxed: most bids carry none, and the rules are
    /// built for every bid).
    pub exposure: Option<Box<Exposure>>,
    pub book: BookRoom,
}

/// What the bidder's deposit must cover (保证金), when the auction asks for one: `required` and
/// the maximum bid value of `standing` (its active bids that stay: not one being revised, none
/// at all in ascending formats, where a new bid supersedes the last) together with the new bid.
#[derive(Debug, Clone)]
pub(super) struct Exposure {
    pub deposit: Amount,
    pub required: Amount,
    pub standing: Vec<(Price, Quantity)>,
}

/// What the price must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum PriceRule {
    /// Sealed bids: from the floor up to the cap, both included.
    Band { floor: Price, cap: Option<Price> },
    /// A fixed-price sale: exactly the posted price, which an empty price means.
    Posted(Price),
    /// An English auction: at least `min_next`, at most the cap.
    AtLeast { current: Option<Price>, min_next: Price, cap: Option<Price> },
    /// A clock auction: exactly the round's clock price, which an empty price means.
    Clock { price: Price, round: u32 },
    /// No price is acceptable from this bidder now (it leads, or the cap was reached).
    Barred(Barrier),
}

/// Why an English bidder may not bid now.
#[derive(Debug, Clone, Copy)]
pub(super) enum Barrier {
    /// It holds the highest bid already (or its place in the lottery at the cap).
    AlreadyLeading { current: Price },
    /// The first bidder to reach the cap wins; nothing can follow.
    CapReached { cap: Price },
}

/// What the quantity must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum QuantityRule {
    /// A single indivisible lot: exactly the lot, which an empty quantity means.
    WholeLot(Quantity),
    /// A divisible lot: whole fill units, positive, at most the lot.
    FillUnits { fill_unit: Quantity, lot: Quantity },
    /// A clock auction's demand: whole fill units, zero to drop out (the activity rule bounds it).
    Demand { fill_unit: Quantity },
}

/// What the bidder already holds, and what bounds it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Holdings {
    /// Each bid stands alone (an English raise asks for the whole lot and outbids the last).
    Unbounded,
    /// Sealed divisible lots: the bidder's active bids, not counting one being revised, may
    /// not exceed its cap (when the auction has one) nor the largest quantity.
    Total { held: QuantityTotal, cap: Option<BidderCap> },
    /// Sealed single-lot auctions: one active bid per bidder (`exists` when it has one).
    OneBid { exists: bool },
    /// Clock auctions: demand may not rise above `allowed`.
    Activity { allowed: Quantity },
}

/// A per-bidder cap: the percentage of the lot, and the quantity it comes to.
#[derive(Debug, Clone, Copy)]
pub(super) struct BidderCap {
    pub ratio: Ratio,
    pub quantity: Quantity,
}

/// Whether the book can take one more bid under this id, and from this bidder.
#[derive(Debug, Clone, Copy)]
pub(super) struct BookRoom {
    pub full: bool,
    pub id_taken: bool,
    /// The most bids one bidder may place in the auction (its spec's limit), when the bid is a
    /// new one (a revision is not), and how many the bidder has placed.
    pub bidder_limit: Option<(u32, u32)>,
}

/// A bid's price and quantity once every default is applied and every check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checked {
    pub price: Price,
    pub quantity: Quantity,
}

impl BidRules {
    /// Applies steps 2 to 7 of the module's order to a bid's price and quantity.
    #[inline(always)]
    pub(super) fn check(&self, price: Option<Price>, quantity: Option<Quantity>) -> Result<Checked, EngineError> {
        let quantity = self.quantity.resolve(quantity)?;
        let price = self.price.resolve(price)?;
        if Amount::of(price, quantity).is_none_or(|a| a.units() > MAX_BID_AMOUNT_FEN) {
            return Err(EngineError::AmountOverflow);
        }
        self.quantity.check(quantity)?;
        self.price.check(price)?;
        self.holdings.check(quantity)?;
        if let Some(exposure) = &self.exposure {
            exposure.check(price, quantity)?;
        }
        self.book.check()?;
        Ok(Checked { price, quantity })
    }
}

impl PriceRule {
    #[inline(always)]
    fn resolve(&self, price: Option<Price>) -> Result<Price, EngineError> {
        match (price, self) {
            (Some(price), _) => Ok(price),
            (None, PriceRule::Posted(posted)) => Ok(*posted),
            (None, PriceRule::Clock { price, .. }) => Ok(*price),
            (None, _) => Err(EngineError::PriceRequired),
        }
    }

    #[inline(always)]
    fn check(&self, price: Price) -> Result<(), EngineError> {
        match self {
            PriceRule::Band { floor, cap } => {
                if price < *floor {
                    return Err(EngineError::BelowFloor { floor: *floor });
                }
                within_cap(price, *cap)
            }
            PriceRule::Posted(posted) if price != *posted => Err(EngineError::NotPostedPrice { posted: *posted }),
            PriceRule::Posted(_) => Ok(()),
            PriceRule::AtLeast { current, min_next, cap } => {
                if price < *min_next {
                    return Err(EngineError::BidTooLow { current: *current, min_next: *min_next });
                }
                within_cap(price, *cap)
            }
            PriceRule::Clock { price: clock_price, round } if price != *clock_price => {
                Err(EngineError::NotClockPrice { clock_price: *clock_price, round: *round })
            }
            PriceRule::Clock { .. } => Ok(()),
            PriceRule::Barred(Barrier::AlreadyLeading { current }) => {
                Err(EngineError::AlreadyLeading { current: *current })
            }
            PriceRule::Barred(Barrier::CapReached { cap }) => Err(EngineError::CapReached { cap: *cap }),
        }
    }
}

#[inline(always)]
fn within_cap(price: Price, cap: Option<Price>) -> Result<(), EngineError> {
    match cap {
        Some(cap) if price > cap => Err(EngineError::AboveCap { cap }),
        _ => Ok(()),
    }
}

impl QuantityRule {
    #[inline(always)]
    fn resolve(self, quantity: Option<Quantity>) -> Result<Quantity, EngineError> {
        match (quantity, self) {
            (Some(quantity), _) => Ok(quantity),
            (None, QuantityRule::WholeLot(lot)) => Ok(lot),
            (None, _) => Err(EngineError::QuantityRequired),
        }
    }

    #[inline(always)]
    fn check(self, quantity: Quantity) -> Result<(), EngineError> {
        match self {
            QuantityRule::WholeLot(_) | QuantityRule::FillUnits { .. } if quantity.is_zero() => {
                Err(EngineError::ZeroQuantity)
            }
            QuantityRule::WholeLot(lot) if quantity != lot => Err(EngineError::WholeLotOnly { lot_quantity: lot }),
            QuantityRule::WholeLot(_) => Ok(()),
            QuantityRule::FillUnits { fill_unit, lot } => {
                if !quantity.is_multiple_of(fill_unit) {
                    return Err(EngineError::NotFillMultiple { fill_unit });
                }
                if quantity > lot {
                    return Err(EngineError::QuantityExceedsLot { lot_quantity: lot });
                }
                Ok(())
            }
            QuantityRule::Demand { fill_unit } if !quantity.is_zero() && !quantity.is_multiple_of(fill_unit) => {
                Err(EngineError::NotFillMultiple { fill_unit })
            }
            QuantityRule::Demand { .. } => Ok(()),
        }
    }
}

impl Holdings {
    #[inline(always)]
    fn check(self, quantity: Quantity) -> Result<(), EngineError> {
        match self {
            Holdings::Unbounded => Ok(()),
            Holdings::Total { held, cap } => {
                let total = held.plus(quantity);
                if let Some(cap) = cap
                    && total.is_none_or(|total| total > QuantityTotal::of(cap.quantity))
                {
                    return Err(EngineError::bidder_cap(cap.ratio, cap.quantity, held));
                }
                if total.is_none_or(|total| total > QuantityTotal::of(Quantity::MAX)) {
                    return Err(EngineError::BidderTotalTooLarge {
                        limit: Quantity::MAX,
                        room_left: EngineError::room_left(Quantity::MAX, held),
                    });
                }
                Ok(())
            }
            Holdings::OneBid { exists: true } => Err(EngineError::BidExists),
            Holdings::OneBid { exists: false } => Ok(()),
            Holdings::Activity { allowed } if quantity > allowed => Err(EngineError::ActivityRule { allowed }),
            Holdings::Activity { .. } => Ok(()),
        }
    }
}

impl Exposure {
    fn check(&self, price: Price, quantity: Quantity) -> Result<(), EngineError> {
        let Exposure { deposit, required, standing } = self;
        // A clock bidder dropping out (zero demand) takes on nothing, whatever its deposit.
        if quantity.is_zero() {
            return Ok(());
        }
        let exposure = max_bid_value(standing.iter().copied().chain([(price, quantity)]));
        let needed = exposure.max(*required);
        if needed > *deposit {
            let missing = needed.checked_sub(*deposit).unwrap_or(needed);
            return Err(EngineError::DepositInsufficient { deposit: *deposit, required: *required, exposure, missing });
        }
        Ok(())
    }
}

/// The maximum bid value of a set of bids (the rule of the WCI auctions): the largest, over
/// its prices p, of p x the total quantity bid at prices >= p, rounded half-up to the fen.
/// Exact: sums in kilograms and products in milli-fen as `i128`; a value beyond what an
/// [`Amount`] holds saturates at its largest, which no deposit covers.
pub(super) fn max_bid_value(bids: impl IntoIterator<Item = (Price, Quantity)>) -> Amount {
    let mut bids: Vec<(Price, Quantity)> = bids.into_iter().collect();
    bids.sort_unstable_by_key(|b| std::cmp::Reverse(b.0));
    let mut kilograms = 0i128;
    let mut best = 0i128;
    for (i, (price, quantity)) in bids.iter().enumerate() {
        kilograms += i128::from(quantity.units());
        // Only at the last bid of a price level does the total at prices >= p stand complete.
        if bids.get(i + 1).is_none_or(|next| next.0 != *price) {
            best = best.max(i128::from(price.units()) * kilograms);
        }
    }
    let fen = (best + 500) / 1000;
    Amount::from_units(i64::try_from(fen).unwrap_or(MAX_AMOUNT_FEN).min(MAX_AMOUNT_FEN)).unwrap_or(Amount::MAX)
}

impl BookRoom {
    #[inline(always)]
    fn check(self) -> Result<(), EngineError> {
        if self.full {
            return Err(EngineError::BookFull);
        }
        if self.id_taken {
            return Err(EngineError::DuplicateBidId);
        }
        if let Some((limit, placed)) = self.bidder_limit
            && placed >= limit
        {
            return Err(EngineError::TooManyBids { limit });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(price: &str, quantity: &str) -> (Price, Quantity) {
        (price.parse().unwrap(), quantity.parse().unwrap())
    }

    /// The WCI rule: p x quantity at prices >= p, the largest over p; not the sum of values.
    #[test]
    fn max_bid_value_takes_the_largest_level() {
        // 20000 x 1 = 20000; 18500 x (1 + 2) = 55500; 18000 x (3 + 4) = 126000.
        let bids = [bid("20000.00", "1.000"), bid("18500.00", "2.000"), bid("18000.00", "4.000")];
        assert_eq!(max_bid_value(bids).to_string(), "126000.00");
        // A high price on a large quantity dominates the lower levels.
        let bids = [bid("21000.00", "5.000"), bid("18000.00", "0.100")];
        assert_eq!(max_bid_value(bids).to_string(), "105000.00");
        // Two bids at one price count together; half a fen rounds up.
        let bids = [bid("0.01", "0.050"), bid("0.01", "0.000")];
        assert_eq!(max_bid_value(bids).to_string(), "0.00");
        assert_eq!(max_bid_value([bid("0.01", "0.500")]).to_string(), "0.01");
        assert_eq!(max_bid_value([]).to_string(), "0.00");
    }
}
