//! The single writer of one auction. A task owns the [`Auction`], takes requests from a
//! bounded channel, stamps each with the server clock, applies it, and fires the auction's
//! open and close timers itself. Nobody else ever touches the book.
//!
//! Durability is pipelined: the task applies a change, submits its journal entry and goes on to
//! the next request without waiting. Changes wait in a queue, in journal order; as the journal
//! confirms each, the task answers its caller and publishes what it did (settlement, public
//! snapshot, watchers' feed), as of that change. A read that could show a change (a bidder's own
//! bids, every bid after the close) is computed when it arrives and answered only once every
//! change before it is durable (a read barrier), so nobody ever sees what a crash could take
//! back. If the journal fails, every waiting caller gets UNAVAILABLE, nothing waiting is
//! published, and the task answers nothing more until the server restarts from the journal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{Amount, AuctionId, BidId, BidderId, Timestamp};
use crate::engine::{
    Applied, AscendingView, Auction, AuctionSpec, BidView, ClockView, Command, EngineError, Event, Phase, Settlement,
};
use crate::journal::{self, Journal};

use super::ServiceError;
use super::clock::Clock;
use super::entry::Entry;
use super::feed::{AuctionFeed, AuctionUpdate, Conclusion, UpdateKind};
use super::health::Health;
use super::outbox::Outbox;
use super::recorder::{JournalPosition, RecordedSettlement};
use super::requests::Origin;
use super::seal::{AuctionKey, MasterKey};

/// Whether an auction of `format` keeps its bids secret until the close (and so journals them
/// sealed): the sealed formats and fixed price. English and clock bids are public.
pub(crate) fn is_sealed(format: crate::engine::Format) -> bool {
    !format.is_open_outcry() && !format.is_clock()
}

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

/// A bid of the final book: its last version, its bidder's pseudonym and its leaf.
pub(crate) type BookLeaf = (BidView, Option<u32>, [u8; 32]);

pub(crate) enum Request {
    /// A client's change; the reply carries what the core said, bids with their receipt.
    Apply {
        command: Command,
        origin: Origin,
        reply: Reply<Result<Applied, ServiceError>>,
    },
    BidsOf {
        bidder: BidderId,
        reply: Reply<Result<Vec<BidView>, ServiceError>>,
    },
    AllBids {
        reply: Reply<Result<Vec<BidView>, ServiceError>>,
    },
    /// What an enterprise has posted as deposit.
    DepositOf {
        enterprise: BidderId,
        reply: Reply<Result<Amount, ServiceError>>,
    },
    /// The final book, once concluded: each bid's last version by bid id, with the bidder's
    /// pseudonym and the bid's leaf in the book's Merkle tree.
    Book {
        reply: Reply<Result<Vec<BookLeaf>, ServiceError>>,
    },
}

/// What can change an auction.
enum Change {
    Command(Command, Origin, Reply<Result<Applied, ServiceError>>),
    /// Time reached one of the auction's deadlines.
    Tick(Timestamp),
}

/// Most changes one auction keeps waiting for the journal; past it the task stops reading
/// requests until the oldest is durable.
const PIPELINE_DEPTH: usize = 8192;

/// Something waiting, in journal order, for every change before it (and itself) to be durable.
enum Waiting {
    /// An applied change: its journal entry on its way, and what to do once it is durable.
    Change { durable: journal::Pending, done: Done },
    /// A read computed when it arrived, answered once everything before it is durable.
    Read(Box<dyn FnOnce(Result<(), ServiceError>) + Send>),
}

/// What an applied change does once its entry is durable: answer its caller, publish.
struct Done {
    reply: Option<Reply<Result<Applied, ServiceError>>>,
    applied: Applied,
    /// The settlement and its sequence number, when the change concluded the auction.
    settlement: Option<(u64, Box<Settlement>)>,
    /// Boxed, like the settlement: most changes (sealed bids) carry none of them.
    snapshot: Option<Box<AuctionSnapshot>>,
    update: Option<Box<AuctionUpdate>>,
}

pub(crate) struct AuctionActor {
    auction: Auction,
    requests: mpsc::Receiver<Request>,
    snapshot: watch::Sender<AuctionSnapshot>,
    /// The public state as of the last change applied (the snapshot shows it once durable).
    shown: (Phase, Option<AscendingView>, Option<ClockView>),
    /// Where settlements go once durable, for the recorders.
    outbox: Arc<Outbox>,
    /// The next settlement's number, shared by every auction.
    next_settlement: Arc<AtomicU64>,
    clock: Arc<dyn Clock>,
    /// Every accepted change goes here, and is durable, before anyone hears of it.
    journal: Arc<Journal>,
    /// Changes and reads waiting for the journal, oldest first.
    waiting: VecDeque<Waiting>,
    /// Why the exchange cannot serve, when it cannot.
    health: Arc<Health>,
    /// Set once the journal failed: from then on nothing is answered from memory.
    journal_failed: Arc<AtomicBool>,
    /// Every auction's phase changes, once durable.
    phases: tokio::sync::broadcast::Sender<PhaseChange>,
    /// The latest stamp given; stamps never go backwards even if the wall clock does.
    last_stamp: Timestamp,
    /// Public changes, for watchers.
    feed: Arc<AuctionFeed>,
    /// Sealed formats: the auction's key, which seals its bid entries and is journaled when it
    /// concludes. `None` for open formats (English, clock), whose bids are public.
    key: Option<AuctionKey>,
}

/// Where an auction's task shows what it did: the public snapshot and the watchers' feed.
pub(crate) struct Outlets {
    pub snapshot: watch::Sender<AuctionSnapshot>,
    pub feed: Arc<AuctionFeed>,
}

/// What every auction's task shares: the outbox and settlement numbers, time, the journal,
/// and the exchange's health.
#[derive(Clone)]
pub(crate) struct Shared {
    pub outbox: Arc<Outbox>,
    pub next_settlement: Arc<AtomicU64>,
    pub clock: Arc<dyn Clock>,
    pub journal: Arc<Journal>,
    pub health: Arc<Health>,
    pub journal_failed: Arc<AtomicBool>,
    pub phases: tokio::sync::broadcast::Sender<PhaseChange>,
    pub master: MasterKey,
}

/// An auction's phase changed (durably): what a website or a regulator's system follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseChange {
    pub auction: AuctionId,
    pub spec: Arc<AuctionSpec>,
    pub phase: Phase,
    pub at: Timestamp,
}

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable(e.to_string())
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
        let Shared { outbox, next_settlement, clock, journal, health, journal_failed, phases, master } = shared;
        let key = is_sealed(auction.spec().format).then(|| master.auction_key(auction.spec().id));
        let shown = (auction.phase(), auction.ascending_view(), auction.clock_view());
        AuctionActor {
            auction,
            requests,
            snapshot,
            shown,
            outbox,
            next_settlement,
            clock,
            journal,
            waiting: VecDeque::new(),
            health,
            journal_failed,
            phases,
            last_stamp,
            feed,
            key,
        }
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

    fn failed(&self) -> bool {
        self.journal_failed.load(Ordering::Acquire)
    }

    pub(crate) async fn run(mut self) {
        // A hand-moved clock (tests) wakes the timers; the wall clock needs nothing.
        let mut moves = self.clock.moves();
        loop {
            // Timers stop once the journal failed: nothing more may change.
            let deadline = self.auction.next_deadline().filter(|_| !self.failed());
            let wait = deadline.map(|deadline| {
                let micros = deadline.as_micros().saturating_sub(self.clock.now().as_micros()).max(0);
                Duration::from_micros(micros as u64)
            });
            let room = self.waiting.len() < PIPELINE_DEPTH;
            tokio::select! {
                biased;
                // The oldest change's entry became durable (or the journal failed).
                durable = oldest(&mut self.waiting), if !self.waiting.is_empty() => self.durable(durable).await,
                request = self.requests.recv(), if room => match request {
                    Some(request) => self.handle(request).await,
                    None => break,
                },
                () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() && room => {
                    if let Some(deadline) = deadline.filter(|d| self.clock.now() >= *d) {
                        self.change(Change::Tick(deadline)).await;
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
        // The server is stopping: let what was submitted finish, answering its callers.
        while !self.waiting.is_empty() {
            let durable = oldest(&mut self.waiting).await;
            self.durable(durable).await;
        }
    }

    async fn handle(&mut self, request: Request) {
        match request {
            Request::Apply { command, origin, reply } => self.change(Change::Command(command, origin, reply)).await,
            Request::BidsOf { bidder, reply } => {
                let bids = self.auction.bids_of(bidder);
                self.read(move |ready| {
                    let _ = reply.send(ready.map(|()| bids));
                });
            }
            Request::DepositOf { enterprise, reply } => {
                let deposit = self.auction.deposit_of(enterprise);
                self.read(move |ready| {
                    let _ = reply.send(ready.map(|()| deposit));
                });
            }
            Request::Book { reply } => {
                let book = match self.auction.all_bids() {
                    Ok(_) => Ok(self
                        .auction
                        .book()
                        .into_iter()
                        .map(|(bid, leaf)| (bid, self.auction.pseudonym_of(bid.bidder), leaf))
                        .collect()),
                    Err(e) => Err(ServiceError::from(e)),
                };
                self.read(move |ready| {
                    let _ = reply.send(ready.and(book));
                });
            }
            Request::AllBids { reply } => {
                let bids = self.auction.all_bids();
                self.read(move |ready| {
                    let _ = reply.send(ready.and(bids.map_err(ServiceError::from)));
                });
            }
        }
    }

    /// Answers a read at once when nothing waits for the journal, otherwise behind what waits.
    fn read(&mut self, answer: impl FnOnce(Result<(), ServiceError>) + Send + 'static) {
        if self.failed() {
            answer(Err(unavailable("the journal failed; the server answers nothing more until it restarts")));
        } else if self.waiting.is_empty() {
            answer(Ok(()));
        } else {
            self.waiting.push_back(Waiting::Read(Box::new(answer)));
        }
    }

    /// The one way an auction changes: take a place in the journal's queue, apply the change
    /// to the core, and submit its entry; answering and publishing wait until it is durable.
    async fn change(&mut self, change: Change) {
        if self.failed() {
            if let Change::Command(_, _, reply) = change {
                let _ = reply.send(Err(unavailable("the journal failed; nothing more is accepted until restart")));
            }
            return;
        }
        let journal = Arc::clone(&self.journal);
        let slot = match journal.reserve().await {
            Ok(slot) => slot,
            Err(e) => {
                if let Change::Command(_, _, reply) = change {
                    let _ = reply.send(Err(unavailable(e)));
                }
                return;
            }
        };
        let seq_before = self.auction.public_seq();
        let (applied, mut entry, at, reply) = match change {
            Change::Tick(deadline) => {
                self.last_stamp = self.last_stamp.max(deadline);
                let events = self.auction.tick(deadline);
                (
                    Applied::Events(events),
                    Entry::Tick { at: deadline, auction: self.id(), settled: None },
                    deadline,
                    None,
                )
            }
            Change::Command(mut command, origin, reply) => {
                let at = self.stamp();
                let applied = loop {
                    match (self.auction.apply_command(at, command.clone()), &mut command) {
                        // Bid ids are drawn at random; on the rare collision, draw again.
                        (Err(EngineError::DuplicateBidId), Command::PlaceBid { bid, .. }) => *bid = fresh_bid_id(),
                        (result, _) => break result,
                    }
                };
                let applied = match applied {
                    Ok(applied) => applied,
                    // A refusal changed nothing and needs no journal, but its numbers (the
                    // current price, the room left) may reflect changes not yet durable: it
                    // waits behind them like a read.
                    Err(e) => {
                        self.read(move |ready| {
                            let _ = reply.send(ready.and(Err(e.into())));
                        });
                        return;
                    }
                };
                let entry = Entry::Apply { at, auction: self.id(), command, origin: Some(origin), settled: None };
                (applied, entry, at, Some(reply))
            }
        };
        let public = self.auction.public_seq() != seq_before;
        let (settlement, update) = match &applied {
            // The hot path: a sealed bid shows nothing to anyone but its bidder.
            Applied::Bid(_) if !public => (None, None),
            Applied::Bid(change) => (None, Some(self.update(&change.events(), at))),
            Applied::Events(events) if events.is_empty() => {
                // A tick that changed nothing: nothing to journal.
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(applied));
                }
                return;
            }
            Applied::Events(events) => {
                let settlement = events.iter().find_map(|e| match e {
                    // Numbered now, once: the number travels in the journal entry.
                    Event::Concluded(s) => Some((self.next_settlement.fetch_add(1, Ordering::AcqRel), s.clone())),
                    _ => None,
                });
                (settlement, public.then(|| self.update(events, at)))
            }
        };
        if let (Some((sequence, _)), Entry::Apply { settled, .. } | Entry::Tick { settled, .. }) =
            (&settlement, &mut entry)
        {
            *settled = Some(*sequence);
        }
        let snapshot = self.snapshot_if_changed();
        let concluded = settlement.is_some();
        let durable = match self.seal(entry).and_then(|entry| entry.encode()) {
            Ok(encoded) => slot.submit(encoded),
            Err(e) => {
                // Cannot happen for entries of in-range values; treated as a journal failure,
                // since the state already moved on.
                self.fail_journal(&unavailable(e));
                if let Some(reply) = reply {
                    let _ = reply.send(Err(unavailable("the journal failed")));
                }
                return;
            }
        };
        let done = Done { reply, applied, settlement, snapshot: snapshot.map(Box::new), update: update.map(Box::new) };
        self.waiting.push_back(Waiting::Change { durable, done });
        if concluded && let Some(key) = self.key {
            self.unseal(key).await;
        }
    }

    /// A sealed auction's bid entry, encrypted under its key; every other entry as it is.
    fn seal(&self, entry: Entry) -> Result<Entry, postcard::Error> {
        match (&self.key, &entry) {
            (Some(key), Entry::Apply { at, auction, command, settled: None, .. }) if command.is_bid() => {
                let (at, auction) = (*at, *auction);
                let (nonce, ciphertext) = key.seal(auction, at, &entry.encode()?);
                Ok(Entry::Sealed { at, auction, nonce, ciphertext })
            }
            _ => Ok(entry),
        }
    }

    /// Journals the key of the auction that just concluded, right behind the entry that
    /// concluded it, so that the journal alone opens its sealed entries from then on. (A
    /// crash between the two is repaired on start: `Exchange::recover` journals the key of
    /// every concluded sealed auction whose key the journal lacks.)
    async fn unseal(&mut self, key: AuctionKey) {
        let entry = Entry::Unseal { auction: self.id(), key: key.0 };
        let durable = match (self.journal.reserve().await, entry.encode()) {
            (Ok(slot), Ok(encoded)) => slot.submit(encoded),
            (Err(e), _) => return self.fail_journal(&unavailable(e)),
            (_, Err(e)) => return self.fail_journal(&unavailable(e)),
        };
        let done =
            Done { reply: None, applied: Applied::Events(Vec::new()), settlement: None, snapshot: None, update: None };
        self.waiting.push_back(Waiting::Change { durable, done });
    }

    /// The public snapshot after the change just applied, if it differs from the last one.
    fn snapshot_if_changed(&mut self) -> Option<AuctionSnapshot> {
        let now = (self.auction.phase(), self.auction.ascending_view(), self.auction.clock_view());
        if now == self.shown {
            return None;
        }
        self.shown = now;
        let spec = Arc::clone(&self.snapshot.borrow().spec);
        Some(Self::snapshot_of(&self.auction, &spec))
    }

    /// The oldest waiting change is durable (or the journal failed): answer and publish it,
    /// then every read that waited only for it.
    async fn durable(&mut self, result: Result<journal::Appended, journal::JournalError>) {
        let done = match self.waiting.pop_front() {
            Some(Waiting::Change { done, .. }) => done,
            Some(Waiting::Read(answer)) => return answer(Ok(())),
            None => return,
        };
        match result {
            Ok(appended) => {
                let Done { reply, applied, settlement, snapshot, update } = done;
                let position = JournalPosition::from(appended);
                if let Some((sequence, settlement)) = settlement {
                    tracing::info!(auction = %settlement.auction_id, status = ?settlement.status, sequence, "auction concluded");
                    self.outbox.push(RecordedSettlement { sequence, journal: position, settlement: *settlement });
                }
                if let Some(snapshot) = snapshot {
                    if snapshot.phase != self.snapshot.borrow().phase {
                        let change = PhaseChange {
                            auction: snapshot.spec.id,
                            spec: Arc::clone(&snapshot.spec),
                            phase: snapshot.phase,
                            at: update.as_ref().map_or(self.last_stamp, |u| u.at),
                        };
                        // Nobody listening is fine.
                        let _ = self.phases.send(change);
                    }
                    self.snapshot.send_replace(*snapshot);
                }
                if let Some(update) = update {
                    self.feed.publish(*update);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(applied));
                }
                self.release_reads();
            }
            Err(e) => {
                let error = unavailable(&e);
                self.fail_journal(&error);
                if let Some(reply) = done.reply {
                    let _ = reply.send(Err(error.clone()));
                }
                // Everything after it fails too: the journal acknowledges nothing more.
                for waiting in self.waiting.drain(..) {
                    match waiting {
                        Waiting::Change { done, .. } => {
                            if let Some(reply) = done.reply {
                                let _ = reply.send(Err(error.clone()));
                            }
                        }
                        Waiting::Read(answer) => answer(Err(error.clone())),
                    }
                }
            }
        }
    }

    /// Answers the reads at the front of the queue: everything before them is durable.
    fn release_reads(&mut self) {
        while let Some(Waiting::Read(_)) = self.waiting.front() {
            if let Some(Waiting::Read(answer)) = self.waiting.pop_front() {
                answer(Ok(()));
            }
        }
    }

    /// After a journal failure the exchange answers nothing from memory, and says so where
    /// health is read.
    fn fail_journal(&self, error: &ServiceError) {
        if !self.journal_failed.swap(true, Ordering::AcqRel) {
            tracing::error!(auction = %self.id(), error = %error, "journal failed; nothing more is answered until restart");
        }
        self.health.set("journal", format!("the journal failed: {error}"));
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
}

/// Waits for the oldest waiting change's entry. Reads at the front are released by
/// [`AuctionActor::release_reads`] as soon as what precedes them is durable, so the front is
/// a change whenever this is polled.
async fn oldest(waiting: &mut VecDeque<Waiting>) -> Result<journal::Appended, journal::JournalError> {
    match waiting.front_mut() {
        Some(Waiting::Change { durable, .. }) => durable.await,
        _ => std::future::pending().await,
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
