//! The single writer of one auction. A task owns the [`Auction`], takes requests from a
//! bounded channel, stamps each with the server clock, applies it, and fires the auction's
//! open and close timers itself. Nobody else ever touches the book.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{AuctionId, BidId, BidderId, Timestamp};
use crate::engine::{AscendingView, Auction, AuctionSpec, BidView, ClockView, Command, EngineError, Event, Phase};
use crate::journal::{FileJournal, Pending, Reservation};

use super::ServiceError;
use super::clock::Clock;
use super::entry::Entry;
use super::feed::{AuctionFeed, AuctionUpdate, Conclusion, UpdateKind};
use super::hub::SettlementHub;
use super::recorder::JournalPosition;
use super::requests::Origin;

/// What everyone may see of an auction: its terms and phase, never its bids.
#[derive(Debug, Clone)]
pub struct AuctionSnapshot {
    pub spec: Arc<AuctionSpec>,
    pub phase: Phase,
    pub seed_hash: Option<String>,
    /// Ascending auctions: the public price, leader pseudonym and countdown.
    pub ascending: Option<AscendingView>,
    /// Clock auctions: the round, its price and its end, the last round's total demand.
    pub clock: Option<ClockView>,
}

pub(crate) type Reply<T> = oneshot::Sender<T>;

pub(crate) enum Request {
    Apply { command: Command, origin: Origin, reply: Reply<Result<Vec<Event>, ServiceError>> },
    BidsOf { bidder: BidderId, reply: Reply<Vec<BidView>> },
    PseudonymOf { bidder: BidderId, reply: Reply<Option<u32>> },
    AllBids { reply: Reply<Result<Vec<BidView>, EngineError>> },
}

/// What can change an auction.
enum Change {
    Command(Command, Origin),
    /// Time reached one of the auction's deadlines.
    Tick(Timestamp),
}

pub(crate) struct AuctionActor {
    auction: Auction,
    requests: mpsc::Receiver<Request>,
    snapshot: watch::Sender<AuctionSnapshot>,
    hub: Arc<SettlementHub>,
    clock: Arc<dyn Clock>,
    /// Every accepted change goes here, and is durable, before anyone hears of it. `None` only
    /// in tests of the shell without storage.
    journal: Option<Arc<FileJournal>>,
    /// The latest stamp given; stamps never go backwards even if the wall clock does.
    last_stamp: Timestamp,
    /// Set when the journal failed under a timer: timers stop until restart.
    stalled: bool,
    /// Public changes, for watchers.
    feed: Arc<AuctionFeed>,
}

/// Where an auction's task shows what it did: the public snapshot and the watchers' feed.
pub(crate) struct Outlets {
    pub snapshot: watch::Sender<AuctionSnapshot>,
    pub feed: Arc<AuctionFeed>,
}

/// What every auction's task shares: settlements, time, the journal.
#[derive(Clone)]
pub(crate) struct Shared {
    pub hub: Arc<SettlementHub>,
    pub clock: Arc<dyn Clock>,
    pub journal: Option<Arc<FileJournal>>,
}

/// Takes a place in the journal's queue before a change is made.
async fn reserve(journal: &Option<Arc<FileJournal>>) -> Result<Option<Reservation<'_>>, ServiceError> {
    match journal {
        Some(j) => j.reserve().await.map(Some).map_err(|e| ServiceError::Unavailable(e.to_string())),
        None => Ok(None),
    }
}

/// Journals an accepted change and waits until it is durable; returns where it landed.
async fn persist(slot: Option<Reservation<'_>>, entry: &Entry) -> Result<Option<JournalPosition>, ServiceError> {
    let pending: Option<Pending> = slot.map(|s| s.submit(entry.encode()));
    match pending {
        Some(p) => p.wait().await.map(|at| Some(at.into())).map_err(|e| ServiceError::Unavailable(e.to_string())),
        None => Ok(None),
    }
}

impl AuctionActor {
    pub(crate) fn new(
        auction: Auction,
        last_stamp: Timestamp,
        requests: mpsc::Receiver<Request>,
        outlets: Outlets,
        shared: Shared,
    ) -> AuctionActor {
        let Outlets { snapshot, feed } = outlets;
        let Shared { hub, clock, journal } = shared;
        AuctionActor { auction, requests, snapshot, hub, clock, journal, last_stamp, stalled: false, feed }
    }

    /// The feed's starting state for `auction`.
    pub(crate) fn state_of(auction: &Auction, at: Timestamp) -> AuctionUpdate {
        AuctionUpdate {
            sequence: auction.public_seq(),
            kind: UpdateKind::State,
            at,
            phase: auction.phase(),
            ascending: auction.ascending_view(),
            clock: auction.clock_view(),
            conclusion: None,
        }
    }

    fn id(&self) -> AuctionId {
        self.auction.spec().id
    }

    pub(crate) fn snapshot_of(auction: &Auction, spec: &Arc<AuctionSpec>) -> AuctionSnapshot {
        AuctionSnapshot {
            spec: Arc::clone(spec),
            phase: auction.phase(),
            seed_hash: auction.seed_hash(),
            ascending: auction.ascending_view(),
            clock: auction.clock_view(),
        }
    }

    fn stamp(&mut self) -> Timestamp {
        self.last_stamp = self.last_stamp.max(self.clock.now());
        self.last_stamp
    }

    pub(crate) async fn run(mut self) {
        // A hand-moved clock (tests) wakes the timers; the wall clock needs nothing.
        let mut moves = self.clock.moves();
        loop {
            let deadline = self.auction.next_deadline().filter(|_| !self.stalled);
            let wait = deadline.map(|deadline| {
                let micros = deadline.as_micros().saturating_sub(self.clock.now().as_micros()).max(0);
                Duration::from_micros(micros as u64)
            });
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(request) => self.handle(request).await,
                    None => break,
                },
                () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                    if let Some(deadline) = deadline.filter(|d| self.clock.now() >= *d) {
                        self.fire(deadline).await;
                    }
                }
                moved = async { moves.as_mut().expect("guarded").changed().await }, if moves.is_some() => {
                    if moved.is_err() {
                        moves = None;
                    }
                }
            }
        }
    }

    /// Opens or closes the auction as of `deadline`, however late the timer fired (after a
    /// restart, an auction whose close passed while the server was down closes as of its
    /// scheduled close).
    async fn fire(&mut self, deadline: Timestamp) {
        if let Err(e) = self.change(Change::Tick(deadline)).await {
            tracing::error!(auction = %self.id(), error = %e, "journal failed; timers stop until restart");
            self.stalled = true;
        }
    }

    /// The one way an auction changes: take a place in the journal's queue, apply the change
    /// to the core, journal it, and publish its events only once the journal entry is durable.
    async fn change(&mut self, change: Change) -> Result<Vec<Event>, ServiceError> {
        let journal = self.journal.clone();
        let slot = reserve(&journal).await?;
        let seq_before = self.auction.public_seq();
        let (events, entry, at) = match change {
            Change::Tick(deadline) => {
                self.last_stamp = self.last_stamp.max(deadline);
                (self.auction.tick(deadline), Entry::Tick { at: deadline, auction: self.id() }, deadline)
            }
            Change::Command(mut command, origin) => {
                let at = self.stamp();
                let events = loop {
                    match (self.auction.apply(at, command.clone()), &mut command) {
                        // Bid ids are drawn at random; on the rare collision, draw again.
                        (Err(EngineError::DuplicateBidId), Command::PlaceBid { bid, .. }) => *bid = fresh_bid_id(),
                        (result, _) => break result?,
                    }
                };
                (events, Entry::Apply { at, auction: self.id(), command, origin: Some(origin) }, at)
            }
        };
        if !events.is_empty() {
            let position = persist(slot, &entry).await?;
            self.after(&events, position).await;
            if self.auction.public_seq() != seq_before {
                self.feed.publish(self.update(&events, at));
            }
        }
        Ok(events)
    }

    /// The public update for a change that made `events`.
    fn update(&self, events: &[Event], at: Timestamp) -> AuctionUpdate {
        let mut kind = UpdateKind::State;
        let mut conclusion = None;
        for event in events {
            kind = match event {
                Event::Opened { .. } if kind == UpdateKind::State => UpdateKind::Opened,
                // Only open-outcry bids are public; a sealed bid that opened the auction shows
                // as the opening alone.
                Event::BidAccepted(_) | Event::BidWithdrawn(_) if self.auction.spec().format.is_open_outcry() => {
                    UpdateKind::Bid
                }
                Event::TimedPeriodStarted { .. } => UpdateKind::TimedPeriodStarted,
                Event::RoundEnded { .. } => UpdateKind::RoundEnded,
                Event::Concluded(s) => {
                    let winner_code = s.allocations.first().map(|a| a.bidder);
                    conclusion = Some(Conclusion {
                        status: s.status,
                        price: s.clearing_price,
                        winner: winner_code.and_then(|code| self.auction.pseudonym_of(code)),
                        winner_code,
                    });
                    UpdateKind::Concluded
                }
                _ => kind,
            };
        }
        // An opening brought about by a bid is shown as of `opens_at`, not as of the bid.
        let at = if kind == UpdateKind::Opened { at.min(self.auction.spec().opens_at) } else { at };
        AuctionUpdate {
            sequence: self.auction.public_seq(),
            kind,
            at,
            phase: self.auction.phase(),
            ascending: self.auction.ascending_view(),
            clock: self.auction.clock_view(),
            conclusion,
        }
    }

    async fn handle(&mut self, request: Request) {
        match request {
            Request::Apply { command, origin, reply } => {
                let _ = reply.send(self.change(Change::Command(command, origin)).await);
            }
            Request::BidsOf { bidder, reply } => {
                let _ = reply.send(self.auction.bids_of(bidder));
            }
            Request::PseudonymOf { bidder, reply } => {
                let _ = reply.send(self.auction.pseudonym_of(bidder));
            }
            Request::AllBids { reply } => {
                let _ = reply.send(self.auction.all_bids());
            }
        }
    }

    /// Publishes what changed: settlements to the hub (recorded before anyone is answered),
    /// phase changes to the public snapshot.
    async fn after(&mut self, events: &[Event], position: Option<JournalPosition>) {
        for event in events {
            if let Event::Concluded(settlement) = event {
                let sequence = self.hub.publish((**settlement).clone(), position.clone()).await;
                tracing::info!(
                    auction = %settlement.auction_id,
                    status = ?settlement.status,
                    sequence,
                    "auction concluded"
                );
            }
        }
        let changed = {
            let shown = self.snapshot.borrow();
            shown.phase != self.auction.phase()
                || shown.ascending != self.auction.ascending_view()
                || shown.clock != self.auction.clock_view()
        };
        if changed {
            let spec = Arc::clone(&self.snapshot.borrow().spec);
            self.snapshot.send_replace(Self::snapshot_of(&self.auction, &spec));
        }
    }
}

/// A random bid id, so that ids reveal nothing about how many bids an auction holds.
pub(crate) fn fresh_bid_id() -> BidId {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    BidId::new(u64::from_be_bytes(bytes))
}
