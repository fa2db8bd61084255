//! The single writer of one auction. A task owns the [`Auction`], takes requests from a
//! bounded channel, stamps each with the server clock, applies it, and fires the auction's
//! open and close timers itself. Nobody else ever touches the book.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{AuctionId, BidId, BidderId, Timestamp};
use crate::engine::{
    Applied, AscendingView, Auction, AuctionSpec, BidView, ClockView, Command, EngineError, Event, Phase,
};
use crate::journal::{Journal, Reservation};

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
    /// A client's change; the reply carries what the core said, bids with their receipt.
    Apply {
        command: Command,
        origin: Origin,
        reply: Reply<Result<Applied, ServiceError>>,
    },
    BidsOf {
        bidder: BidderId,
        reply: Reply<Vec<BidView>>,
    },
    AllBids {
        reply: Reply<Result<Vec<BidView>, EngineError>>,
    },
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
    /// Every accepted change goes here, and is durable, before anyone hears of it.
    journal: Arc<Journal>,
    /// Set to why the exchange cannot serve (here: the journal failed).
    health: Arc<watch::Sender<Option<String>>>,
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

/// What every auction's task shares: settlements, time, the journal, and the exchange's health.
#[derive(Clone)]
pub(crate) struct Shared {
    pub hub: Arc<SettlementHub>,
    pub clock: Arc<dyn Clock>,
    pub journal: Arc<Journal>,
    pub health: Arc<watch::Sender<Option<String>>>,
}

/// Takes a place in the journal's queue before a change is made.
async fn reserve(journal: &Journal) -> Result<Reservation<'_>, ServiceError> {
    journal.reserve().await.map_err(|e| ServiceError::Unavailable(e.to_string()))
}

/// Journals an accepted change and waits until it is durable; returns where it landed.
async fn persist(slot: Reservation<'_>, entry: &Entry) -> Result<JournalPosition, ServiceError> {
    let encoded = entry.encode().map_err(|e| ServiceError::Unavailable(e.to_string()))?;
    slot.submit(encoded).wait().await.map(JournalPosition::from).map_err(|e| ServiceError::Unavailable(e.to_string()))
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
        let Shared { hub, clock, journal, health } = shared;
        AuctionActor { auction, requests, snapshot, hub, clock, journal, health, last_stamp, stalled: false, feed }
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
                moved = async {
                    match moves.as_mut() {
                        Some(moves) => moves.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                }, if moves.is_some() => {
                    if !moved {
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
    async fn change(&mut self, change: Change) -> Result<Applied, ServiceError> {
        let journal = Arc::clone(&self.journal);
        let slot = reserve(&journal).await?;
        let seq_before = self.auction.public_seq();
        let (applied, entry, at) = match change {
            Change::Tick(deadline) => {
                self.last_stamp = self.last_stamp.max(deadline);
                let events = self.auction.tick(deadline);
                (Applied::Events(events), Entry::Tick { at: deadline, auction: self.id() }, deadline)
            }
            Change::Command(mut command, origin) => {
                let at = self.stamp();
                let applied = loop {
                    match (self.auction.apply_command(at, command.clone()), &mut command) {
                        // Bid ids are drawn at random; on the rare collision, draw again.
                        (Err(EngineError::DuplicateBidId), Command::PlaceBid { bid, .. }) => *bid = fresh_bid_id(),
                        (result, _) => break result?,
                    }
                };
                (applied, Entry::Apply { at, auction: self.id(), command, origin: Some(origin) }, at)
            }
        };
        let changed = match &applied {
            Applied::Bid(_) => true,
            Applied::Events(events) => !events.is_empty(),
        };
        if changed {
            let position = persist(slot, &entry).await.inspect_err(|e| self.journal_failed(e))?;
            let events = match &applied {
                Applied::Bid(change) => std::borrow::Cow::Owned(change.events()),
                Applied::Events(events) => std::borrow::Cow::Borrowed(events),
            };
            self.after(&events, position).await;
            if self.auction.public_seq() != seq_before {
                self.feed.publish(self.update(&events, at));
            }
        }
        Ok(applied)
    }

    /// After a journal failure the exchange no longer serves: say so where health is read.
    fn journal_failed(&self, error: &ServiceError) {
        self.health.send_replace(Some(format!("the journal failed: {error}")));
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
            Request::AllBids { reply } => {
                let _ = reply.send(self.auction.all_bids());
            }
        }
    }

    /// Publishes what changed: settlements to the hub (recorded before anyone is answered),
    /// phase changes to the public snapshot.
    async fn after(&mut self, events: &[Event], position: JournalPosition) {
        for event in events {
            if let Event::Concluded(settlement) = event {
                let sequence = self.hub.publish((**settlement).clone(), Some(position.clone())).await;
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
    BidId::new(u64::from_be_bytes(random_bytes()))
}

/// Bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Cannot fail on Linux 3.17 and later (getrandom(2) blocks until the pool is seeded), the
    // only systems the server supports; with no randomness, ids and seeds would be unsafe, so
    // stopping is the right answer.
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}
