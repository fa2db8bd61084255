//! The pure core: one [`Auction`] per lot, driven by [`Command`]s that carry the server's
//! timestamp and answered with [`Event`]s or an [`EngineError`].
//!
//! Invariant: nothing in this module awaits, reads a clock, draws randomness, does I/O or sees
//! a protobuf type. Given the same commands with the same timestamps, ids and seeds, it
//! produces the same events, byte for byte.
//!
//! Invariant: a rejected command changes nothing.

mod book;
mod clearing;
mod error;
mod rounds;
mod settlement;
mod spec;

pub use book::{BidState, BidView, SealedBook};
pub use clearing::Seed;
pub use error::{EngineError, ErrorClass};
pub use rounds::ClockView;
use rounds::{ClockBook, RoundEnd};
pub use settlement::{Allocation, Settlement, SettlementStatus, TieBreak, reason};
pub use spec::{
    AscendingRequest, AscendingTerms, AuctionRequest, AuctionSpec, BidRevision, CapChoice, ClockRequest, ClockTerms,
    Format, Lot, LotOrigin, Phase, PriceBand, TieRule, Undersubscription,
};

use crate::domain::{Amount, AuctionId, BidId, BidderId, MAX_BID_AMOUNT_FEN, Price, PricePolicy, Quantity, Timestamp};

/// A request to change an auction. The timestamp travels beside it (see [`Auction::apply`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Open before `opens_at` (the timer opens it at `opens_at` otherwise).
    Open,
    /// Close now and settle; before `closes_at` this is an early close by the operator.
    Close,
    Cancel {
        note: Option<String>,
    },
    PlaceBid {
        bidder: BidderId,
        bid: BidId,
        price: Price,
        quantity: Quantity,
    },
    ReviseBid {
        bidder: BidderId,
        bid: BidId,
        price: Price,
        quantity: Quantity,
    },
    WithdrawBid {
        bidder: BidderId,
        bid: BidId,
    },
    /// Clock auctions: end the running round now (the operator's call).
    AdvanceRound,
}

impl Command {
    /// Whether the command is a bidder's (its outcome is a bid).
    pub fn is_bid(&self) -> bool {
        matches!(self, Command::PlaceBid { .. } | Command::ReviseBid { .. } | Command::WithdrawBid { .. })
    }
}

/// A bid taken into the book (placed, revised or withdrawn), and whether taking it opened the
/// auction. The hot path returns this rather than a list of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidChange {
    /// Set when the bid arrived at or after `opens_at` before the open timer fired.
    pub opened_at: Option<Timestamp>,
    pub bid: BidView,
}

/// What an accepted command did: a bid change (the hot path, without allocating), or events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Bid(BidChange),
    Events(Vec<Event>),
}

impl Applied {
    pub fn into_events(self) -> Vec<Event> {
        match self {
            Applied::Bid(change) => change.into_events(),
            Applied::Events(events) => events,
        }
    }
}

impl BidChange {
    fn into_events(self) -> Vec<Event> {
        let mut events = Vec::with_capacity(2);
        if let Some(at) = self.opened_at {
            events.push(Event::Opened { at });
        }
        events.push(match self.bid.state {
            BidState::Active => Event::BidAccepted(self.bid),
            BidState::Withdrawn => Event::BidWithdrawn(self.bid),
        });
        events
    }
}

/// What changed. A settlement is emitted exactly once per auction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened {
        at: Timestamp,
    },
    BidAccepted(BidView),
    BidWithdrawn(BidView),
    /// A clock auction's round ended with demand above supply; the next opens at `next_price`.
    RoundEnded {
        round: u32,
        price: Price,
        demand: Quantity,
        next_price: Price,
    },
    /// An ascending auction's free period ended and its countdown started.
    TimedPeriodStarted {
        deadline: Timestamp,
    },
    /// Boxed: a settlement is large and rare, bids are small and many.
    Concluded(Box<Settlement>),
}

/// When the first countdown of an ascending auction's timed period ends.
fn first_countdown(spec: &AuctionSpec, terms: &AscendingTerms) -> Timestamp {
    let end = spec.closes_at.plus_micros(i64::from(terms.countdown_seconds) * 1_000_000);
    terms.hard_stop.map_or(end, |stop| end.min(stop))
}

/// One auction and its book. Every bid is kept in the book, whatever the format; an
/// ascending auction also keeps its public state in an [`Ascent`].
#[derive(Debug)]
pub struct Auction {
    spec: AuctionSpec,
    phase: Phase,
    book: SealedBook,
    /// SEEDED_RANDOM only. Secret until the settlement reveals it.
    seed: Option<Seed>,
    /// ASCENDING_ENGLISH only.
    ascent: Option<Ascent>,
    /// ASCENDING_CLOCK only.
    rounds: Option<ClockBook>,
    /// See [`Auction::public_seq`].
    public_seq: u64,
}

/// The highest bid of an ascending auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lead {
    bidder: BidderId,
    price: Price,
}

/// The running state of an ascending auction.
#[derive(Debug, Clone, Default)]
struct Ascent {
    lead: Option<Lead>,
    /// Per-auction pseudonyms (竞买号), numbered from 1 in the order bidders first bid.
    pseudonyms: std::collections::BTreeMap<BidderId, u32>,
    /// Set once the timed period has begun.
    timed: bool,
    /// When the running countdown ends (timed period only).
    deadline: Option<Timestamp>,
    /// How many times a bid restarted the countdown.
    extensions: u32,
}

/// What anyone may see of an ascending auction while it runs: prices and pseudonyms, never
/// who the bidders are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AscendingView {
    pub current_price: Option<Price>,
    /// The leading bidder's pseudonym.
    pub leader: Option<u32>,
    /// The least the next bid may be; `None` when no further bid can be taken (the cap was
    /// reached and the first to reach it wins).
    pub min_next: Option<Price>,
    pub timed: bool,
    /// The free period's end, then the running countdown's end.
    pub deadline: Timestamp,
    pub extensions: u32,
    pub bidders: u32,
}

impl Auction {
    /// Creates a scheduled auction. `seed` is required for SEEDED_RANDOM and ignored otherwise.
    pub fn create(
        id: AuctionId,
        request: AuctionRequest,
        policy: &PricePolicy,
        at: Timestamp,
        seed: Seed,
    ) -> Result<Auction, EngineError> {
        let spec = AuctionSpec::resolve(id, request, policy, at)?;
        Ok(Auction::from_spec(spec, seed))
    }

    /// An auction as it was created, from its resolved spec: replay uses this, so that a
    /// later change of policy never moves a replayed floor.
    pub fn from_spec(spec: AuctionSpec, seed: Seed) -> Auction {
        let seed = (spec.tie_rule == TieRule::SeededRandom).then_some(seed);
        let ascent = spec.ascending.map(|_| Ascent::default());
        let rounds = spec.clock.map(|terms| ClockBook::new(terms, spec.opens_at));
        Auction { spec, phase: Phase::Scheduled, book: SealedBook::default(), seed, ascent, rounds, public_seq: 0 }
    }

    /// The tie-break seed, for the journal only: it stays secret until the settlement.
    pub fn seed(&self) -> Option<Seed> {
        self.seed
    }

    pub fn spec(&self) -> &AuctionSpec {
        &self.spec
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The published commitment to the tie-break seed.
    pub fn seed_hash(&self) -> Option<String> {
        self.seed.as_ref().map(Seed::hash_hex)
    }

    /// The next moment at which time alone changes this auction, for the shell's timer.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::Scheduled => Some(self.spec.opens_at),
            Phase::Open => match (&self.ascent, &self.rounds) {
                (Some(Ascent { timed: true, deadline, .. }), _) => *deadline,
                (_, Some(rounds)) => Some(rounds.round_ends(self.spec.closes_at)),
                _ => Some(self.spec.closes_at),
            },
            _ => None,
        }
    }

    /// The public state of an ascending auction.
    pub fn ascending_view(&self) -> Option<AscendingView> {
        let (terms, ascent) = (self.spec.ascending?, self.ascent.as_ref()?);
        let current_price = ascent.lead.map(|l| l.price);
        let min_next = match (ascent.lead, self.spec.prices.cap) {
            _ if self.phase.is_terminal() => None,
            (Some(lead), Some(cap)) if lead.price == cap => {
                (self.spec.tie_rule == TieRule::SeededRandom).then_some(cap)
            }
            (Some(lead), cap) => {
                lead.price.checked_add(terms.increment).map(|next| cap.map_or(next, |cap| next.min(cap)))
            }
            (None, _) => Some(terms.start_price),
        };
        Some(AscendingView {
            current_price,
            leader: ascent.lead.and_then(|l| ascent.pseudonyms.get(&l.bidder).copied()),
            min_next,
            timed: ascent.timed,
            deadline: ascent.deadline.filter(|_| ascent.timed).unwrap_or(self.spec.closes_at),
            extensions: ascent.extensions,
            bidders: ascent.pseudonyms.len() as u32,
        })
    }

    /// The public state of a clock auction: round, clock price, when the round ends, and the
    /// last round's total demand.
    pub fn clock_view(&self) -> Option<ClockView> {
        self.rounds.as_ref().map(|r| r.view(self.spec.closes_at))
    }

    /// A bidder's pseudonym in an ascending auction, once it has bid.
    pub fn pseudonym_of(&self, bidder: BidderId) -> Option<u32> {
        self.ascent.as_ref()?.pseudonyms.get(&bidder).copied()
    }

    /// When an ascending auction's bidding ends for a bid stamped `at`, given what has been
    /// applied so far: the free period's end, the running countdown's end, or (the free period
    /// over but not yet processed) the first countdown's end, or the free period's end when too
    /// few bidders came for a timed period. Sealed formats: `closes_at`.
    fn bidding_ends(&self, at: Timestamp) -> Timestamp {
        let (Some(terms), Some(ascent)) = (self.spec.ascending, &self.ascent) else { return self.spec.closes_at };
        if ascent.timed {
            return ascent.deadline.unwrap_or(self.spec.closes_at);
        }
        if at < self.spec.closes_at || (ascent.pseudonyms.len() as u32) < terms.timed_min_bidders {
            return self.spec.closes_at;
        }
        first_countdown(&self.spec, &terms)
    }

    /// Applies what time alone does by `at`: opening at `opens_at`, closing at `closes_at`.
    /// How many public changes the auction has seen: openings, the timed period's start, the
    /// conclusion, and every bid of an open-outcry auction. Watchers number updates by it, so
    /// it never counts a sealed bid (that would tell how many there are), and replay restores it.
    pub fn public_seq(&self) -> u64 {
        self.public_seq
    }

    pub fn tick(&mut self, at: Timestamp) -> Vec<Event> {
        let events = self.advance(at);
        if !events.is_empty() {
            self.public_seq += 1;
        }
        events
    }

    fn advance(&mut self, at: Timestamp) -> Vec<Event> {
        let mut events = Vec::new();
        if self.phase == Phase::Scheduled && at >= self.spec.opens_at {
            self.phase = Phase::Open;
            events.push(Event::Opened { at });
        }
        if self.phase == Phase::Open && self.rounds.is_some() {
            // Every round whose end has come, each as of its own end.
            loop {
                let ends = self.rounds.as_ref().expect("checked").round_ends(self.spec.closes_at);
                if at < ends {
                    break;
                }
                let event = self.end_round(ends, ends >= self.spec.closes_at);
                let concluded = matches!(event, Event::Concluded(_));
                events.push(event);
                if concluded {
                    break;
                }
            }
            return events;
        }
        if self.phase == Phase::Open && at >= self.spec.closes_at {
            match (self.spec.ascending, &mut self.ascent) {
                (Some(terms), Some(ascent)) if !ascent.timed => {
                    if (ascent.pseudonyms.len() as u32) < terms.timed_min_bidders {
                        // Too few bidders for a timed period: it ends with the free period.
                        events.push(self.conclude(self.spec.closes_at));
                        return events;
                    }
                    ascent.timed = true;
                    ascent.deadline = Some(first_countdown(&self.spec, &terms));
                    events.push(Event::TimedPeriodStarted { deadline: ascent.deadline.expect("just set") });
                }
                _ => {}
            }
            let ends = self.bidding_ends(at);
            if at >= ends {
                events.push(self.conclude(ends));
            }
        }
        events
    }

    pub fn apply(&mut self, at: Timestamp, command: Command) -> Result<Vec<Event>, EngineError> {
        self.apply_command(at, command).map(Applied::into_events)
    }

    /// [`Auction::apply`] without building a list of events for bids: what replay uses.
    pub fn apply_command(&mut self, at: Timestamp, command: Command) -> Result<Applied, EngineError> {
        let applied = self.apply_inner(at, command)?;
        let public = match &applied {
            Applied::Bid(change) => change.opened_at.is_some() || self.spec.format.is_open_outcry(),
            Applied::Events(events) => !events.is_empty(),
        };
        if public {
            self.public_seq += 1;
        }
        Ok(applied)
    }

    fn apply_inner(&mut self, at: Timestamp, command: Command) -> Result<Applied, EngineError> {
        let events = |event| Applied::Events(vec![event]);
        match command {
            Command::Open => self.open(at).map(events),
            Command::Close => self.close(at).map(events),
            Command::Cancel { note } => self.cancel(at, note).map(events),
            Command::PlaceBid { bidder, bid, price, quantity } => {
                self.place_bid(at, bidder, bid, price, quantity).map(Applied::Bid)
            }
            Command::ReviseBid { bidder, bid, price, quantity } => {
                self.revise_bid(at, bidder, bid, price, quantity).map(Applied::Bid)
            }
            Command::WithdrawBid { bidder, bid } => self.withdraw_bid(at, bidder, bid).map(Applied::Bid),
            Command::AdvanceRound => {
                if self.phase != Phase::Open || self.rounds.is_none() {
                    return Err(EngineError::InvalidTransition { phase: self.phase, action: "advancing a round" });
                }
                Ok(events(self.end_round(at, false)))
            }
        }
    }

    fn open(&mut self, at: Timestamp) -> Result<Event, EngineError> {
        if self.phase != Phase::Scheduled {
            return Err(EngineError::InvalidTransition { phase: self.phase, action: "opening" });
        }
        if at >= self.spec.closes_at {
            return Err(EngineError::AuctionClosed { closes_at: self.spec.closes_at });
        }
        self.phase = Phase::Open;
        if let Some(rounds) = &mut self.rounds {
            // Round 1 runs from the operator's early open.
            rounds.opened(at);
        }
        Ok(Event::Opened { at })
    }

    fn close(&mut self, at: Timestamp) -> Result<Event, EngineError> {
        if self.phase != Phase::Open {
            return Err(EngineError::InvalidTransition { phase: self.phase, action: "closing" });
        }
        if let Some(rounds) = &self.rounds {
            // A clock auction closed by the operator ends at the running round's price.
            let ends = rounds.round_ends(self.spec.closes_at);
            return Ok(self.end_round(at.min(ends), true));
        }
        // An operator's close that arrives after bidding ended (before the timer fired) closes
        // as of the end, as the timer would have: the auction ended then.
        Ok(self.conclude(at.min(self.bidding_ends(at))))
    }

    fn cancel(&mut self, at: Timestamp, note: Option<String>) -> Result<Event, EngineError> {
        if self.phase.is_terminal() {
            return Err(EngineError::InvalidTransition { phase: self.phase, action: "cancelling" });
        }
        let mut settlement = clearing::empty(
            &self.spec,
            SettlementStatus::Cancelled,
            reason::CANCELLED_BY_OPERATOR,
            self.seed.as_ref(),
            at,
        );
        settlement.note = note;
        Ok(self.finish(settlement))
    }

    /// Ends a clock auction's running round at `at`: the next round's opening, or the end.
    fn end_round(&mut self, at: Timestamp, force: bool) -> Event {
        let rounds = self.rounds.as_mut().expect("clock auctions have rounds");
        match rounds.end_round(&self.spec, at, force) {
            RoundEnd::Next { round, price, demand, next_price } => {
                Event::RoundEnded { round, price, demand, next_price }
            }
            RoundEnd::Final { price, demands, excess, .. } => {
                let settlement = clearing::clear_clock(&self.spec, price, &demands, excess, at);
                self.finish(settlement)
            }
        }
    }

    fn conclude(&mut self, at: Timestamp) -> Event {
        let settlement = clearing::clear(&self.spec, &self.book, self.seed.as_ref(), at);
        self.finish(settlement)
    }

    fn finish(&mut self, settlement: Settlement) -> Event {
        self.phase = match settlement.status {
            SettlementStatus::Settled => Phase::Settled,
            SettlementStatus::Failed => Phase::Failed,
            SettlementStatus::Cancelled => Phase::Cancelled,
        };
        Event::Concluded(Box::new(settlement))
    }

    /// Checks that a bid stamped `at` may act on the book. Returns whether accepting it also
    /// opens the auction (a bid that arrives at `opens_at` before the timer fired).
    fn accepting(&self, at: Timestamp) -> Result<bool, EngineError> {
        if self.phase.is_terminal() || at >= self.spec.closes_at {
            return Err(EngineError::AuctionClosed { closes_at: self.spec.closes_at });
        }
        self.opens_with(at)
    }

    /// Price and quantity rules shared by new and revised bids. `held` is what the bidder
    /// already holds in active bids, not counting the bid being revised.
    fn check_terms(&self, price: Price, quantity: Quantity, held: Quantity) -> Result<(), EngineError> {
        // Malformed whatever the state, so checked first.
        if Amount::of(price, quantity).is_none_or(|a| a.units() > MAX_BID_AMOUNT_FEN) {
            return Err(EngineError::AmountOverflow);
        }
        let lot = &self.spec.lot;
        if self.spec.format.is_divisible() {
            if !quantity.is_multiple_of(lot.fill_unit) {
                return Err(EngineError::NotFillMultiple { fill_unit: lot.fill_unit });
            }
            if quantity > lot.quantity {
                return Err(EngineError::QuantityExceedsLot { lot_quantity: lot.quantity });
            }
        } else if quantity != lot.quantity {
            return Err(EngineError::WholeLotOnly { lot_quantity: lot.quantity });
        }
        let band = &self.spec.prices;
        if self.spec.format == Format::FixedPrice && price != band.floor {
            return Err(EngineError::NotPostedPrice { posted: band.floor });
        }
        if price < band.floor {
            return Err(EngineError::BelowFloor { floor: band.floor });
        }
        if let Some(cap) = band.cap.filter(|cap| price > *cap) {
            return Err(EngineError::AboveCap { cap });
        }
        if let (Some(ratio), Some(cap)) = (self.spec.per_bidder_cap, self.spec.bidder_cap_quantity())
            && held.checked_add(quantity).is_none_or(|total| total > cap)
        {
            return Err(EngineError::bidder_cap(ratio, cap, held));
        }
        Ok(())
    }

    /// Whether a bid stamped `at` also opens the auction (it arrived at or after `opens_at`
    /// before the timer fired); a bid before `opens_at` is refused.
    fn opens_with(&self, at: Timestamp) -> Result<bool, EngineError> {
        match self.phase {
            Phase::Scheduled if at < self.spec.opens_at => Err(EngineError::NotOpen { opens_at: self.spec.opens_at }),
            Phase::Scheduled => Ok(true),
            _ => Ok(false),
        }
    }

    /// Commits the implicit open of a bid that arrived at `opens_at` before the timer.
    fn open_for_bid(&mut self, opening: bool, at: Timestamp) -> Option<Timestamp> {
        opening.then(|| {
            self.phase = Phase::Open;
            at
        })
    }

    pub fn place_bid(
        &mut self,
        at: Timestamp,
        bidder: BidderId,
        bid: BidId,
        price: Price,
        quantity: Quantity,
    ) -> Result<BidChange, EngineError> {
        if self.spec.ascending.is_some() {
            return self.raise(at, bidder, bid, price, quantity);
        }
        if self.rounds.is_some() {
            return self.state_demand(at, bidder, bid, price, quantity);
        }
        let opening = self.accepting(at)?;
        let held = self.book.active_quantity_of(bidder);
        self.check_terms(price, quantity, held)?;
        if !self.spec.format.is_divisible() && self.book.has_active_bid(bidder) {
            return Err(EngineError::BidExists);
        }
        if self.book.is_full() {
            return Err(EngineError::BookFull);
        }
        if self.book.contains(bid) {
            return Err(EngineError::DuplicateBidId);
        }
        let opened_at = self.open_for_bid(opening, at);
        Ok(BidChange { opened_at, bid: self.book.insert(bid, bidder, price, quantity, at) })
    }

    /// A bid in an ascending auction: it must beat the current price by the increment (or
    /// meet the start price), stay within the cap, and arrive before bidding ends. Accepted in
    /// the timed period, it restarts the countdown.
    fn raise(
        &mut self,
        at: Timestamp,
        bidder: BidderId,
        bid: BidId,
        price: Price,
        quantity: Quantity,
    ) -> Result<BidChange, EngineError> {
        let terms = self.spec.ascending.expect("ascending auctions have terms");
        let ends = self.bidding_ends(at);
        if self.phase.is_terminal() || at >= ends {
            return Err(EngineError::AuctionClosed { closes_at: ends });
        }
        let opening = self.opens_with(at)?;
        if Amount::of(price, quantity).is_none_or(|a| a.units() > MAX_BID_AMOUNT_FEN) {
            return Err(EngineError::AmountOverflow);
        }
        if quantity != self.spec.lot.quantity {
            return Err(EngineError::WholeLotOnly { lot_quantity: self.spec.lot.quantity });
        }
        let ascent = self.ascent.as_ref().expect("ascending auctions have an ascent");
        let cap = self.spec.prices.cap;
        let lottery = self.spec.tie_rule == TieRule::SeededRandom;
        let min_next = match ascent.lead {
            None => terms.start_price,
            // At the cap under a lottery, every bidder may join the draw, once.
            Some(lead) if Some(lead.price) == cap && lottery => {
                if self.book.has_active_bid_at(bidder, lead.price) {
                    return Err(EngineError::AlreadyLeading { current: lead.price });
                }
                lead.price
            }
            Some(lead) if Some(lead.price) == cap => return Err(EngineError::CapReached { cap: lead.price }),
            Some(lead) if lead.bidder == bidder => return Err(EngineError::AlreadyLeading { current: lead.price }),
            Some(lead) => {
                let next = lead.price.checked_add(terms.increment).ok_or(EngineError::AmountOverflow)?;
                cap.map_or(next, |cap| next.min(cap))
            }
        };
        if price < min_next {
            return Err(EngineError::BidTooLow { current: ascent.lead.map(|l| l.price), min_next });
        }
        if let Some(cap) = cap.filter(|cap| price > *cap) {
            return Err(EngineError::AboveCap { cap });
        }
        if self.book.is_full() {
            return Err(EngineError::BookFull);
        }
        if self.book.contains(bid) {
            return Err(EngineError::DuplicateBidId);
        }
        // Accepted: nothing below may fail.
        let opened_at = self.open_for_bid(opening, at);
        let ascent = self.ascent.as_mut().expect("ascending auctions have an ascent");
        let next = ascent.pseudonyms.len() as u32 + 1;
        ascent.pseudonyms.entry(bidder).or_insert(next);
        if at >= self.spec.closes_at {
            if !ascent.timed {
                ascent.timed = true;
                ascent.deadline = Some(first_countdown(&self.spec, &terms));
            }
            if terms.max_extensions.is_none_or(|max| ascent.extensions < max) {
                ascent.extensions += 1;
                let restarted = at.plus_micros(i64::from(terms.countdown_seconds) * 1_000_000);
                ascent.deadline = Some(terms.hard_stop.map_or(restarted, |stop| restarted.min(stop)));
            }
        }
        // The first to reach the cap stays in the lead; later bidders at the cap join the draw.
        if ascent.lead.is_none_or(|lead| price > lead.price) {
            ascent.lead = Some(Lead { bidder, price });
        }
        Ok(BidChange { opened_at, bid: self.book.insert(bid, bidder, price, quantity, at) })
    }

    /// A demand statement in a clock auction: at the round's clock price, a multiple of the
    /// fill unit (zero drops out), within the activity rule, before the round ends.
    fn state_demand(
        &mut self,
        at: Timestamp,
        bidder: BidderId,
        bid: BidId,
        price: Price,
        quantity: Quantity,
    ) -> Result<BidChange, EngineError> {
        let rounds = self.rounds.as_ref().expect("clock auctions have rounds");
        if self.phase.is_terminal() || at >= self.spec.closes_at {
            return Err(EngineError::AuctionClosed { closes_at: self.spec.closes_at });
        }
        let opening = self.opens_with(at)?;
        let ends = rounds.round_ends(self.spec.closes_at);
        if at >= ends {
            return Err(EngineError::RoundOver { round: rounds.round(), ends_at: ends });
        }
        if price != rounds.price() {
            return Err(EngineError::NotClockPrice { clock_price: rounds.price(), round: rounds.round() });
        }
        if !quantity.is_multiple_of(self.spec.lot.fill_unit) {
            return Err(EngineError::NotFillMultiple { fill_unit: self.spec.lot.fill_unit });
        }
        if Amount::of(price, quantity).is_none_or(|a| a.units() > MAX_BID_AMOUNT_FEN) {
            return Err(EngineError::AmountOverflow);
        }
        let allowed = rounds.allowed(bidder, self.spec.lot.quantity, self.spec.bidder_cap_quantity());
        if quantity > allowed {
            return Err(EngineError::ActivityRule { allowed });
        }
        if rounds.contains(bid) {
            return Err(EngineError::DuplicateBidId);
        }
        let opened_at = self.open_for_bid(opening, at);
        let view = self.rounds.as_mut().expect("checked").state(bidder, bid, quantity, at);
        Ok(BidChange { opened_at, bid: view })
    }

    /// The bidder's own active bid, for revision or withdrawal.
    fn own_active_bid(&self, bidder: BidderId, bid: BidId) -> Result<BidView, EngineError> {
        if self.rounds.is_some() {
            // A clock bidder restates its demand instead.
            return Err(EngineError::BidIrrevocable);
        }
        let current = self.book.bid_of(bidder, bid).ok_or(EngineError::BidNotFound)?;
        if current.state == BidState::Withdrawn {
            return Err(EngineError::BidWithdrawn);
        }
        // Open bids stand: others have already bid against them.
        if self.spec.revision == BidRevision::Irrevocable || self.spec.format.is_open_outcry() {
            return Err(EngineError::BidIrrevocable);
        }
        Ok(current)
    }

    pub fn revise_bid(
        &mut self,
        at: Timestamp,
        bidder: BidderId,
        bid: BidId,
        price: Price,
        quantity: Quantity,
    ) -> Result<BidChange, EngineError> {
        let opening = self.accepting(at)?;
        let current = self.own_active_bid(bidder, bid)?;
        let held = self.book.active_quantity_of(bidder).checked_sub(current.quantity).expect("bid counted in total");
        self.check_terms(price, quantity, held)?;
        if self.book.is_full() {
            return Err(EngineError::BookFull);
        }
        let opened_at = self.open_for_bid(opening, at);
        Ok(BidChange { opened_at, bid: self.book.revise(bid, price, quantity, at) })
    }

    pub fn withdraw_bid(&mut self, at: Timestamp, bidder: BidderId, bid: BidId) -> Result<BidChange, EngineError> {
        let opening = self.accepting(at)?;
        self.own_active_bid(bidder, bid)?;
        let opened_at = self.open_for_bid(opening, at);
        Ok(BidChange { opened_at, bid: self.book.withdraw(bid) })
    }

    /// A bidder's own bids; always allowed, sealed or not.
    pub fn bids_of(&self, bidder: BidderId) -> Vec<BidView> {
        match &self.rounds {
            Some(rounds) => rounds.statements_of(bidder),
            None => self.book.bids_of(bidder),
        }
    }

    /// Every bid, for operators and auditors, once the auction has ended. Before that the book
    /// is sealed and not even the number of bids is given out.
    pub fn all_bids(&self) -> Result<Vec<BidView>, EngineError> {
        if !self.phase.is_terminal() {
            return Err(EngineError::BidsSealed { closes_at: self.spec.closes_at });
        }
        Ok(match &self.rounds {
            Some(rounds) => rounds.statements(),
            None => self.book.all_bids(),
        })
    }

    /// For tests: the book's internal consistency.
    pub fn check_invariants(&self) {
        self.book.check_invariants();
    }
}
