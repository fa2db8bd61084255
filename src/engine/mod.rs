//! The pure core: one [`Auction`] per lot, driven by [`Command`]s that carry the server's
//! timestamp and answered with [`Event`]s or an [`EngineError`].
//!
//! An auction runs one of three mechanisms, each in its own module with its own book: the
//! sealed formats and fixed price ([`sealed`]), the English auction ([`english`]) and the clock
//! auction ([`clock`]). [`Auction`] owns the phase and the timeline and dispatches to its
//! mechanism; every bid passes the same checks ([`checks`]) in the same order, whatever the
//! format. Every rule lives here: the shell hands commands in as the client gave them (an empty
//! price or quantity included) and gets back everything its reply needs.
//!
//! Invariant: nothing in this module awaits, reads a clock, draws randomness, does I/O or sees
//! a protobuf type. Given the same commands with the same timestamps, ids and seeds, it
//! produces the same events, byte for byte.
//!
//! Invariant: a rejected command changes nothing, and no command, whatever its numbers,
//! panics: every sum of client quantities is checked or held in a total wide enough for it.

mod book;
mod checks;
mod clearing;
mod clock;
pub mod eligibility;
mod english;
mod error;
mod sealed;
mod settlement;
mod spec;

pub use book::{BidState, BidView, SealedBook};
pub use clearing::Seed;
pub use clock::ClockView;
pub use eligibility::Eligibility;
pub use english::AscendingView;
pub use error::EngineError;
pub use settlement::{Allocation, DepositOutcome, Settlement, SettlementStatus, TieBreak};
pub use spec::{
    AscendingRequest, AscendingTerms, AuctionRequest, AuctionSpec, BidRevision, CapChoice, CapMode, CapRequest,
    ClockRequest, ClockTerms, DepositRule, DepositTerms, Format, Lot, LotOrigin, LotRequest, OriginKind, Phase,
    PriceBand, ProjectFacts, TieRule, Undersubscription, lot_offerable,
};

use std::collections::BTreeMap;

use crate::domain::{
    Amount, AuctionId, BidId, BidderId, MAX_BID_AMOUNT_FEN, Price, PricePolicy, Quantity, QuantityTotal, Reason,
    Timestamp, receipt,
};

use checks::Exposure;

use book::Bidder;
use clock::{ClockBook, RoundEnd};
use english::{English, FreePeriodEnd};
use sealed::Sealed;

/// The receipt fields of `bid` in `auction`: what the server signs and the book's tree hashes.
pub fn receipt_fields(auction: AuctionId, bid: &BidView, pseudonym: Option<u32>) -> receipt::ReceiptFields {
    let mut fields = receipt::ReceiptFields::default();
    fill_receipt_fields(&mut fields, auction, bid, pseudonym);
    fields
}

/// Writes `bid`'s receipt fields into `fields`, reusing the room its strings have: hashing a
/// whole book at the close allocates once, not once per field per bid.
fn fill_receipt_fields(fields: &mut receipt::ReceiptFields, auction: AuctionId, bid: &BidView, pseudonym: Option<u32>) {
    use std::fmt::Write;
    let text = |field: &mut String, value: &dyn std::fmt::Display| {
        field.clear();
        // Writing to a String cannot fail.
        let _ = write!(field, "{value}");
    };
    text(&mut fields.auction_id, &auction);
    text(&mut fields.bid_id, &bid.id);
    text(&mut fields.bidder, &bid.bidder);
    text(&mut fields.price, &bid.price);
    text(&mut fields.quantity, &bid.quantity);
    fields.received_at = bid.placed_at.as_micros();
    let state = match bid.state {
        BidState::Active => "ACTIVE",
        BidState::Withdrawn => "WITHDRAWN",
    };
    text(&mut fields.state, &state);
    fields.pseudonym.clear();
    if let Some(n) = pseudonym {
        let _ = write!(fields.pseudonym, "B{n:03}");
    }
}

/// A request to change an auction. The timestamp travels beside it (see [`Auction::apply`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Open before `opens_at` (the timer opens it at `opens_at` otherwise).
    Open,
    /// Close now and settle; before the end of bidding this is an early close by the operator.
    Close,
    Cancel {
        note: Option<String>,
    },
    /// A new bid, or a clock auction's demand statement. An empty price means the posted price
    /// (fixed price) or the clock price at the moment the bid is applied (clock auctions); an
    /// empty quantity means the whole lot (single-lot formats). Other formats refuse them.
    ///
    /// `eligibility` is what the registry and policy said of the bidder when the shell took
    /// the bid (journaled with it, so replay decides the same); `None` when the exchange does
    /// not check eligibility.
    PlaceBid {
        bidder: BidderId,
        bid: BidId,
        price: Option<Price>,
        quantity: Option<Quantity>,
        eligibility: Option<Box<Eligibility>>,
    },
    /// Replaces one of the bidder's active bids; empty fields resolve as for a new bid.
    ReviseBid {
        bidder: BidderId,
        bid: BidId,
        price: Option<Price>,
        quantity: Option<Quantity>,
        eligibility: Option<Box<Eligibility>>,
    },
    WithdrawBid {
        bidder: BidderId,
        bid: BidId,
    },
    /// Clock auctions: end the running round now (the operator's call).
    AdvanceRound,
    /// An operator records a deposit (保证金) received from `enterprise`; it adds to what the
    /// enterprise posted before. Only in an auction that asks for a deposit, before it ends.
    RecordDeposit {
        enterprise: BidderId,
        amount: Amount,
    },
}

impl Command {
    /// Whether the command is a bidder's (its outcome is a bid).
    pub fn is_bid(&self) -> bool {
        matches!(self, Command::PlaceBid { .. } | Command::ReviseBid { .. } | Command::WithdrawBid { .. })
    }
}

/// A bid taken into the book (placed, revised or withdrawn), with everything its receipt needs.
/// The hot path returns this rather than a list of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidChange {
    /// Set when the bid arrived at or after `opens_at` before the open timer fired.
    pub opened_at: Option<Timestamp>,
    /// The bid as taken: its resolved price and quantity, its stamp and state.
    pub bid: BidView,
    /// The bidder's pseudonym (竞买号) in an English auction.
    pub pseudonym: Option<u32>,
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
            Applied::Bid(change) => change.events(),
            Applied::Events(events) => events,
        }
    }
}

impl BidChange {
    /// The change as events: the opening it brought about, if any, then the bid.
    pub fn events(&self) -> Vec<Event> {
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
        demand: QuantityTotal,
        next_price: Price,
    },
    /// An ascending auction's free period ended and its countdown started.
    TimedPeriodStarted {
        deadline: Timestamp,
    },
    /// Boxed: a settlement is large and rare, bids are small and many.
    Concluded(Box<Settlement>),
    /// A deposit was recorded; `total` is all the enterprise has posted for the auction. Not
    /// public: it changes no watcher's view.
    DepositRecorded {
        enterprise: BidderId,
        total: Amount,
    },
}

impl Event {
    /// Whether watchers see the event (and count it in [`Auction::public_seq`]).
    pub fn is_public(&self) -> bool {
        !matches!(self, Event::DepositRecorded { .. })
    }
}

/// How an auction's bids are taken and cleared: its format's mechanism, with its own book.
#[derive(Debug)]
enum Mechanism {
    /// SEALED_FIRST_PRICE, SEALED_UNIFORM_PRICE, SEALED_PAY_AS_BID and FIXED_PRICE.
    Sealed(Sealed),
    /// ASCENDING_ENGLISH.
    English(English),
    /// ASCENDING_CLOCK.
    Clock(ClockBook),
}

/// A new bid or a revision as its command carries it (see [`Command::PlaceBid`]).
struct BidOrder<'e> {
    bidder: BidderId,
    bid: BidId,
    price: Option<Price>,
    quantity: Option<Quantity>,
    eligibility: Option<&'e Eligibility>,
}

impl Mechanism {
    /// `code` as the mechanism's book knows it (a clock keeps no book of numbers).
    #[inline]
    fn bidder(&self, code: BidderId) -> Bidder {
        match self {
            Mechanism::Sealed(sealed) => sealed.book.bidder(code),
            Mechanism::English(english) => english.book().bidder(code),
            Mechanism::Clock(_) => Bidder { code, number: None },
        }
    }
}

/// One auction: its terms, its phase, and its mechanism's state.
#[derive(Debug)]
pub struct Auction {
    spec: AuctionSpec,
    phase: Phase,
    /// SEEDED_RANDOM only. Secret until the settlement reveals it.
    seed: Option<Seed>,
    mechanism: Mechanism,
    /// See [`Auction::public_seq`].
    public_seq: u64,
    /// Deposits recorded per enterprise, when the auction asks for them. Ordered, since the
    /// settlement lists them.
    deposits: BTreeMap<BidderId, Amount>,
}

impl Auction {
    /// Creates a scheduled auction. `seed` is kept for SEEDED_RANDOM and ignored otherwise.
    pub fn create(
        id: AuctionId,
        request: AuctionRequest,
        policy: &PricePolicy,
        at: Timestamp,
        seed: Seed,
    ) -> Result<Auction, EngineError> {
        let spec = AuctionSpec::resolve(id, request, policy, at)?;
        Auction::from_spec(spec, seed)
    }

    /// An auction as it was created, from its resolved spec: replay uses this, so that a
    /// later change of policy never moves a replayed floor. Refuses a spec whose format lacks
    /// its terms (only a damaged journal could hold one).
    pub fn from_spec(spec: AuctionSpec, seed: Seed) -> Result<Auction, EngineError> {
        let mechanism = match (spec.format, spec.ascending, spec.clock) {
            (Format::AscendingEnglish, Some(terms), _) => Mechanism::English(English::new(terms)),
            (Format::AscendingEnglish, None, _) => return Err(EngineError::invalid("ascending", "is required")),
            (Format::AscendingClock, _, Some(terms)) => Mechanism::Clock(ClockBook::new(terms, spec.opens_at)),
            (Format::AscendingClock, _, None) => return Err(EngineError::invalid("clock", "is required")),
            _ => Mechanism::Sealed(Sealed::new(&spec)),
        };
        let seed = (spec.tie_rule == TieRule::SeededRandom).then_some(seed);
        Ok(Auction { spec, phase: Phase::Scheduled, seed, mechanism, public_seq: 0, deposits: BTreeMap::new() })
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
        match (self.phase, &self.mechanism) {
            (Phase::Scheduled, _) => Some(self.spec.opens_at),
            (Phase::Open, Mechanism::Sealed(_)) => Some(self.spec.closes_at),
            (Phase::Open, Mechanism::English(english)) => Some(english.next_deadline(&self.spec)),
            (Phase::Open, Mechanism::Clock(book)) => Some(book.round_ends(self.spec.closes_at)),
            _ => None,
        }
    }

    /// The public state of an ascending auction.
    pub fn ascending_view(&self) -> Option<AscendingView> {
        match &self.mechanism {
            Mechanism::English(english) => Some(english.view(&self.spec, self.phase.is_terminal())),
            _ => None,
        }
    }

    /// The public state of a clock auction: round, clock price, when the round ends, and the
    /// last round's total demand.
    pub fn clock_view(&self) -> Option<ClockView> {
        match &self.mechanism {
            Mechanism::Clock(book) => Some(book.view(self.spec.closes_at)),
            _ => None,
        }
    }

    /// A bidder's pseudonym in an ascending auction, once it has bid.
    pub fn pseudonym_of(&self, bidder: BidderId) -> Option<u32> {
        match &self.mechanism {
            Mechanism::English(english) => english.pseudonym_of(bidder),
            _ => None,
        }
    }

    /// When bidding ends for a bid stamped `at`: the close, or for an English auction the end of
    /// its free period or running countdown.
    fn bidding_ends(&self, at: Timestamp) -> Timestamp {
        match &self.mechanism {
            Mechanism::English(english) => english.bidding_ends(&self.spec, at),
            _ => self.spec.closes_at,
        }
    }

    /// How many public changes the auction has seen: openings, the timed period's start, a
    /// clock round's end, the conclusion, and every bid of an open-outcry auction. Watchers
    /// number updates by it, so it never counts a sealed bid or a demand statement (that would
    /// tell how many there are), and replay restores it.
    pub fn public_seq(&self) -> u64 {
        self.public_seq
    }

    /// Applies what time alone does by `at`: opening at `opens_at`, ending a clock round, the
    /// English free period and countdown, closing at the end of bidding.
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
        if self.phase != Phase::Open {
            return events;
        }
        let closes_at = self.spec.closes_at;
        match &mut self.mechanism {
            Mechanism::Clock(_) => {
                // Every round whose end has come, each as of its own end.
                while let Some(ends) = self.clock_round_ends().filter(|ends| at >= *ends) {
                    let event = self.end_round(ends, ends >= closes_at);
                    let concluded = matches!(event, Event::Concluded(_));
                    events.push(event);
                    if concluded {
                        break;
                    }
                }
            }
            Mechanism::English(english) if at >= closes_at => {
                match english.end_free_period(&self.spec) {
                    Some(FreePeriodEnd::Over) => {
                        events.push(self.conclude(closes_at));
                        return events;
                    }
                    Some(FreePeriodEnd::Timed { deadline }) => events.push(Event::TimedPeriodStarted { deadline }),
                    None => {}
                }
                let ends = self.bidding_ends(at);
                if at >= ends {
                    events.push(self.conclude(ends));
                }
            }
            Mechanism::Sealed(_) if at >= closes_at => events.push(self.conclude(closes_at)),
            _ => {}
        }
        events
    }

    /// When a clock auction's running round ends; `None` for other formats.
    fn clock_round_ends(&self) -> Option<Timestamp> {
        match &self.mechanism {
            Mechanism::Clock(book) => Some(book.round_ends(self.spec.closes_at)),
            _ => None,
        }
    }

    pub fn apply(&mut self, at: Timestamp, command: Command) -> Result<Vec<Event>, EngineError> {
        self.apply_command(at, command).map(Applied::into_events)
    }

    /// [`Auction::apply`] without building a list of events for bids: what the shell and
    /// replay use.
    pub fn apply_command(&mut self, at: Timestamp, command: Command) -> Result<Applied, EngineError> {
        let applied = self.apply_inner(at, command)?;
        let public = match &applied {
            Applied::Bid(change) => change.opened_at.is_some() || self.spec.format.is_open_outcry(),
            Applied::Events(events) => events.iter().any(Event::is_public),
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
            Command::PlaceBid { bidder, bid, price, quantity, eligibility } => {
                let order = BidOrder { bidder, bid, price, quantity, eligibility: eligibility.as_deref() };
                self.take_bid(at, order).map(Applied::Bid)
            }
            Command::ReviseBid { bidder, bid, price, quantity, eligibility } => {
                let order = BidOrder { bidder, bid, price, quantity, eligibility: eligibility.as_deref() };
                self.take_revision(at, order).map(Applied::Bid)
            }
            Command::WithdrawBid { bidder, bid } => self.withdraw_bid(at, bidder, bid).map(Applied::Bid),
            Command::AdvanceRound => self.advance_round(at).map(events),
            Command::RecordDeposit { enterprise, amount } => self.record_deposit(enterprise, amount).map(events),
        }
    }

    fn record_deposit(&mut self, enterprise: BidderId, amount: Amount) -> Result<Event, EngineError> {
        if self.spec.deposit.is_none() {
            return Err(EngineError::invalid("deposit", "the auction asks for no deposit"));
        }
        if self.phase.is_terminal() {
            return Err(EngineError::InvalidTransition { phase: self.phase, action: "recording a deposit" });
        }
        if amount.is_zero() {
            return Err(EngineError::invalid("amount", "must be positive"));
        }
        let before = self.deposits.get(&enterprise).copied().unwrap_or(Amount::ZERO);
        let total = before
            .checked_add(amount)
            .filter(|t| t.units() <= MAX_BID_AMOUNT_FEN)
            .ok_or_else(|| EngineError::invalid("amount", "makes the deposit larger than the engine accepts"))?;
        self.deposits.insert(enterprise, total);
        Ok(Event::DepositRecorded { enterprise, total })
    }

    /// What `enterprise` has posted as deposit for this auction.
    pub fn deposit_of(&self, enterprise: BidderId) -> Amount {
        self.deposits.get(&enterprise).copied().unwrap_or(Amount::ZERO)
    }

    /// What `bidder`'s deposit must cover for a new bid, besides the bid: see [`Exposure`].
    /// `revising` is left out of the standing bids, since the revision replaces it.
    fn exposure(&self, bidder: BidderId, revising: Option<BidId>) -> Option<Box<Exposure>> {
        let terms = self.spec.deposit.as_ref()?;
        let standing = match &self.mechanism {
            Mechanism::Sealed(sealed) => sealed
                .book
                .bids_of(bidder)
                .into_iter()
                .filter(|b| b.state == BidState::Active && Some(b.id) != revising)
                .map(|b| (b.price, b.quantity))
                .collect(),
            // An English raise or a clock statement supersedes the bidder's last one.
            Mechanism::English(_) | Mechanism::Clock(_) => Vec::new(),
        };
        Some(Box::new(Exposure { deposit: self.deposit_of(bidder), required: terms.required, standing }))
    }

    fn open(&mut self, at: Timestamp) -> Result<Event, EngineError> {
        if self.phase != Phase::Scheduled {
            return Err(EngineError::InvalidTransition { phase: self.phase, action: "opening" });
        }
        if at >= self.spec.closes_at {
            return Err(EngineError::AuctionClosed { closes_at: self.spec.closes_at });
        }
        self.phase = Phase::Open;
        if let Mechanism::Clock(book) = &mut self.mechanism {
            // Round 1 runs from the operator's early open.
            book.opened(at);
        }
        Ok(Event::Opened { at })
    }

    fn close(&mut self, at: Timestamp) -> Result<Event, EngineError> {
        if self.phase != Phase::Open {
            return Err(EngineError::InvalidTransition { phase: self.phase, action: "closing" });
        }
        // An operator's close that arrives after bidding ended (before the timer fired) closes
        // as of the end, as the timer would have: the auction ended then. A clock auction ends
        // at the running round's price.
        let ends = self.clock_round_ends().unwrap_or_else(|| self.bidding_ends(at));
        Ok(self.conclude(at.min(ends)))
    }

    fn advance_round(&mut self, at: Timestamp) -> Result<Event, EngineError> {
        match self.clock_round_ends() {
            Some(ends) if self.phase == Phase::Open => {
                // A round already over by the clock ends as of its end, as its timer would.
                let at = at.min(ends);
                Ok(self.end_round(at, at >= self.spec.closes_at))
            }
            _ => Err(EngineError::InvalidTransition { phase: self.phase, action: "advancing a round" }),
        }
    }

    fn cancel(&mut self, at: Timestamp, note: Option<String>) -> Result<Event, EngineError> {
        if self.phase.is_terminal() {
            return Err(EngineError::InvalidTransition { phase: self.phase, action: "cancelling" });
        }
        let mut settlement = clearing::empty(
            &self.spec,
            SettlementStatus::Cancelled,
            Reason::CancelledByOperator,
            self.seed.as_ref(),
            at,
        );
        settlement.note = note;
        Ok(self.finish(settlement))
    }

    /// Ends a clock auction's running round at `at`: the next round's opening, or the end.
    /// `hard_stop` ends the auction whatever the demand. Other formats conclude.
    fn end_round(&mut self, at: Timestamp, hard_stop: bool) -> Event {
        if hard_stop {
            return self.conclude(at);
        }
        let Mechanism::Clock(book) = &mut self.mechanism else { return self.conclude(at) };
        let end = book.end_round(&self.spec, at);
        match end {
            RoundEnd::Next { round, price, demand, next_price } => {
                Event::RoundEnded { round, price, demand, next_price }
            }
            RoundEnd::Final(end) => {
                let settlement = clearing::clear_clock(&self.spec, &end, at);
                self.finish(settlement)
            }
        }
    }

    /// Ends the auction at `at` and clears it.
    fn conclude(&mut self, at: Timestamp) -> Event {
        let seed = self.seed.as_ref();
        let settlement = match &self.mechanism {
            Mechanism::Sealed(sealed) => sealed.clear(&self.spec, seed, at),
            Mechanism::English(english) => english.clear(&self.spec, seed, at),
            Mechanism::Clock(book) => clearing::clear_clock(&self.spec, &book.finish(&self.spec, at), at),
        };
        self.finish(settlement)
    }

    fn finish(&mut self, mut settlement: Settlement) -> Event {
        settlement.deposits = self.deposit_outcomes(&settlement);
        self.phase = match settlement.status {
            SettlementStatus::Settled => Phase::Settled,
            SettlementStatus::Failed => Phase::Failed,
            SettlementStatus::Cancelled => Phase::Cancelled,
        };
        settlement.book_root = Some(hex::encode(receipt::merkle_root(&self.book_leaves())));
        Event::Concluded(Box::new(settlement))
    }

    /// Every recorded deposit, applied to its winner's payment (amounts plus buyer fees) up to
    /// the deposit, the rest released; losers' released whole.
    fn deposit_outcomes(&self, settlement: &Settlement) -> Vec<DepositOutcome> {
        self.deposits
            .iter()
            .map(|(&enterprise, &deposit)| {
                let due = settlement
                    .allocations
                    .iter()
                    .filter(|a| a.bidder == enterprise)
                    .map(|a| i128::from(a.amount.units()) + i128::from(a.buyer_fee.units()))
                    .sum::<i128>();
                let applied = Amount::from_units(due.min(i128::from(deposit.units())) as i64).unwrap_or(deposit);
                // Cannot fall back: applied is at most the deposit.
                let released = deposit.checked_sub(applied).unwrap_or(Amount::ZERO);
                DepositOutcome { enterprise, deposit, applied, released }
            })
            .collect()
    }

    /// The receipt fields of a bid as taken (`receipt::ReceiptFields`).
    pub fn receipt_fields(&self, bid: &BidView) -> receipt::ReceiptFields {
        receipt_fields(self.spec.id, bid, self.pseudonym_of(bid.bidder))
    }

    /// The final book's bids (each bid's last version) in bid-id order, with their leaves.
    pub fn book(&self) -> Vec<(BidView, [u8; 32])> {
        let bids = self.final_bids();
        let leaves = self.leaves(&bids);
        bids.into_iter().zip(leaves).collect()
    }

    /// Each bid's last version, in bid-id order: the leaves' order.
    fn final_bids(&self) -> Vec<BidView> {
        match &self.mechanism {
            Mechanism::Sealed(sealed) => sealed.book.bids_by_id(),
            Mechanism::English(english) => english.book().bids_by_id(),
            Mechanism::Clock(book) => {
                let mut bids = book.statements();
                bids.sort_by_key(|b| b.id.get());
                bids
            }
        }
    }

    fn leaves(&self, bids: &[BidView]) -> Vec<[u8; 32]> {
        let mut fields = receipt::ReceiptFields::default();
        bids.iter()
            .map(|bid| {
                fill_receipt_fields(&mut fields, self.spec.id, bid, self.pseudonym_of(bid.bidder));
                fields.leaf()
            })
            .collect()
    }

    fn book_leaves(&self) -> Vec<[u8; 32]> {
        self.leaves(&self.final_bids())
    }

    /// Step 1 of the shared checks: a bid stamped `at` falls inside bidding. Returns whether
    /// taking it also opens the auction (it arrived at or after `opens_at` before the timer).
    fn window(&self, at: Timestamp) -> Result<bool, EngineError> {
        let ends = self.bidding_ends(at);
        if self.phase.is_terminal() || at >= ends {
            return Err(EngineError::AuctionClosed { closes_at: ends });
        }
        if self.phase == Phase::Scheduled && at < self.spec.opens_at {
            return Err(EngineError::NotOpen { opens_at: self.spec.opens_at });
        }
        if let Mechanism::Clock(book) = &self.mechanism {
            let round_ends = book.round_ends(self.spec.closes_at);
            if at >= round_ends {
                return Err(EngineError::RoundOver { round: book.round(), ends_at: round_ends });
            }
        }
        Ok(self.phase == Phase::Scheduled)
    }

    /// Step 2 of the shared checks: the bidder's eligibility, from the facts its command
    /// carries ([`eligibility::check`]). Returns its affiliates, who share its per-bidder cap.
    fn eligible<'e>(&self, at: Timestamp, eligibility: Option<&'e Eligibility>) -> Result<&'e [BidderId], EngineError> {
        match eligibility {
            Some(facts) => {
                eligibility::check(&self.spec, facts, at)?;
                Ok(&facts.affiliates)
            }
            None => Ok(&[]),
        }
    }

    /// Commits the implicit open of a bid that arrived at `opens_at` before the timer.
    fn open_for_bid(&mut self, opening: bool, at: Timestamp) -> Option<Timestamp> {
        opening.then(|| {
            self.phase = Phase::Open;
            at
        })
    }

    /// A new bid: a sealed bid or request, an English raise, or a clock demand statement,
    /// without eligibility facts (see [`Command::PlaceBid`]).
    pub fn place_bid(
        &mut self,
        at: Timestamp,
        bidder: BidderId,
        bid: BidId,
        price: Option<Price>,
        quantity: Option<Quantity>,
    ) -> Result<BidChange, EngineError> {
        self.take_bid(at, BidOrder { bidder, bid, price, quantity, eligibility: None })
    }

    /// Steps 1 and 2 of the shared checks, for a new bid or a revision: whether taking it also
    /// opens the auction, and the bidder's affiliates (who share its cap).
    #[inline(always)]
    fn admit<'e>(&self, at: Timestamp, order: &BidOrder<'e>) -> Result<(bool, &'e [BidderId]), EngineError> {
        Ok((self.window(at)?, self.eligible(at, order.eligibility)?))
    }

    // Inlined into both callers: the order's fields then stay in registers.
    #[inline(always)]
    fn take_bid(&mut self, at: Timestamp, order: BidOrder<'_>) -> Result<BidChange, EngineError> {
        let (opening, affiliates) = self.admit(at, &order)?;
        let BidOrder { bidder, bid, price, quantity, .. } = order;
        let who = self.mechanism.bidder(bidder);
        let mut rules = match &self.mechanism {
            Mechanism::Sealed(sealed) => sealed.rules(&who, None, affiliates),
            Mechanism::English(english) => english.rules(&self.spec, &who),
            Mechanism::Clock(book) => book.rules(&self.spec, bidder, bid),
        };
        if self.spec.deposit.is_some() {
            rules.exposure = self.exposure(bidder, None);
        }
        let checked = rules.check(price, quantity)?;
        let (price, quantity) = (checked.price, checked.quantity);
        // The books check the id as they take the bid; once taken, nothing below may fail.
        let duplicate = |_| EngineError::DuplicateBidId;
        let (view, pseudonym) = match &mut self.mechanism {
            Mechanism::Sealed(sealed) => {
                (sealed.book.insert(bid, who, price, quantity, at).map_err(duplicate)?.0, None)
            }
            Mechanism::English(english) => {
                let (view, pseudonym) = english.raise(&self.spec, at, who, bid, price, quantity).map_err(duplicate)?;
                (view, Some(pseudonym))
            }
            Mechanism::Clock(book) => (book.state(bidder, bid, quantity, at), None),
        };
        let opened_at = self.open_for_bid(opening, at);
        Ok(BidChange { opened_at, bid: view, pseudonym })
    }

    /// The bidder's own active sealed bid, for revision or withdrawal. English bids stand
    /// (others have bid against them); a clock bidder restates its demand instead.
    fn own_active_bid(&self, bidder: BidderId, bid: BidId) -> Result<(&Sealed, BidView), EngineError> {
        let sealed = match &self.mechanism {
            Mechanism::Sealed(sealed) => sealed,
            Mechanism::English(english) => {
                english.book().bid_of(bidder, bid).ok_or(EngineError::BidNotFound)?;
                return Err(EngineError::BidIrrevocable);
            }
            Mechanism::Clock(_) => return Err(EngineError::BidIrrevocable),
        };
        let current = sealed.book.bid_of(bidder, bid).ok_or(EngineError::BidNotFound)?;
        if current.state == BidState::Withdrawn {
            return Err(EngineError::BidWithdrawn);
        }
        if self.spec.revision == BidRevision::Irrevocable {
            return Err(EngineError::BidIrrevocable);
        }
        Ok((sealed, current))
    }

    fn take_revision(&mut self, at: Timestamp, order: BidOrder<'_>) -> Result<BidChange, EngineError> {
        let (opening, affiliates) = self.admit(at, &order)?;
        let BidOrder { bidder, bid, price, quantity, .. } = order;
        let (sealed, current) = self.own_active_bid(bidder, bid)?;
        let mut rules = sealed.rules(&sealed.book.bidder(bidder), Some(&current), affiliates);
        if self.spec.deposit.is_some() {
            rules.exposure = self.exposure(bidder, Some(bid));
        }
        let checked = rules.check(price, quantity)?;
        let opened_at = self.open_for_bid(opening, at);
        let Mechanism::Sealed(sealed) = &mut self.mechanism else { return Err(EngineError::BidIrrevocable) };
        let view = sealed.book.revise(bid, checked.price, checked.quantity, at).ok_or(EngineError::BidNotFound)?;
        Ok(BidChange { opened_at, bid: view, pseudonym: None })
    }

    pub fn withdraw_bid(&mut self, at: Timestamp, bidder: BidderId, bid: BidId) -> Result<BidChange, EngineError> {
        let opening = self.window(at)?;
        self.own_active_bid(bidder, bid)?;
        let opened_at = self.open_for_bid(opening, at);
        let Mechanism::Sealed(sealed) = &mut self.mechanism else { return Err(EngineError::BidIrrevocable) };
        let view = sealed.book.withdraw(bid).ok_or(EngineError::BidNotFound)?;
        Ok(BidChange { opened_at, bid: view, pseudonym: None })
    }

    /// A bidder's own bids; always allowed, sealed or not.
    pub fn bids_of(&self, bidder: BidderId) -> Vec<BidView> {
        match &self.mechanism {
            Mechanism::Sealed(sealed) => sealed.book.bids_of(bidder),
            Mechanism::English(english) => english.book().bids_of(bidder),
            Mechanism::Clock(book) => book.statements_of(bidder),
        }
    }

    /// Every bid, for operators and auditors, once the auction has ended. Before that the book
    /// is sealed and not even the number of bids is given out.
    pub fn all_bids(&self) -> Result<Vec<BidView>, EngineError> {
        if !self.phase.is_terminal() {
            return Err(EngineError::BidsSealed { closes_at: self.spec.closes_at });
        }
        Ok(match &self.mechanism {
            Mechanism::Sealed(sealed) => sealed.book.all_bids(),
            Mechanism::English(english) => english.book().all_bids(),
            Mechanism::Clock(book) => book.statements(),
        })
    }

    /// For tests: the book's internal consistency. Panics on a broken invariant.
    pub fn check_invariants(&self) {
        match &self.mechanism {
            Mechanism::Sealed(sealed) => sealed.book.check_invariants(),
            Mechanism::English(english) => english.book().check_invariants(),
            Mechanism::Clock(_) => {}
        }
    }
}
