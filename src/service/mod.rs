//! The shell around the core: one task per auction (its only writer), the registry of books,
//! the settlement hub and recorders, and the clock. It speaks domain types, not protobuf.
//!
//! Invariant: a `dashmap` guard is never held across an `.await`; handles are cloned out first.

mod actor;
pub mod clock;
pub mod entry;
pub mod hub;
pub mod recorder;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot, watch};

pub use actor::AuctionSnapshot;
use actor::{AuctionActor, Request};
use clock::Clock;
use hub::SettlementHub;
pub use recorder::RecordedSettlement;

use crate::domain::{AuctionId, BidId, BidderId, LotId, Pollutant, Price, PricePolicy, Quantity, RegionCode};
use crate::engine::{Auction, AuctionRequest, BidView, Command, EngineError, Event, Phase, Seed};
use crate::journal::FileJournal;
use entry::Entry;

/// How many requests may wait for one auction before callers are told to back off.
const AUCTION_QUEUE_DEPTH: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no auction {0}")]
    AuctionNotFound(AuctionId),
    #[error("lot {lot} of {pollutant} is already on sale in auction {auction}")]
    LotTaken { pollutant: Pollutant, lot: LotId, auction: AuctionId },
    #[error("auction {0} is too busy; retry shortly")]
    Busy(AuctionId),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The journal failed; nothing more is accepted until the server restarts.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
}

/// Why the journal could not be replayed.
#[derive(Debug, thiserror::Error)]
#[error("journal replay, entry {index}: {reason}")]
pub struct ReplayError {
    pub index: usize,
    pub reason: String,
}

/// The handle the registry keeps for each auction.
#[derive(Clone)]
struct AuctionHandle {
    requests: mpsc::Sender<Request>,
    snapshot: watch::Receiver<AuctionSnapshot>,
}

/// Which auctions `list` returns.
#[derive(Debug, Clone, Default)]
pub struct AuctionFilter {
    pub pollutant: Option<Pollutant>,
    pub region: Option<RegionCode>,
    pub phase: Option<Phase>,
}

/// The registry of auctions and the front door to each auction's task.
pub struct Exchange {
    auctions: DashMap<AuctionId, AuctionHandle>,
    /// The book of each (pollutant, lot); a lot is on sale in at most one auction.
    books: DashMap<(Pollutant, LotId), AuctionId>,
    /// The number the next auction gets. Creating holds this lock, so numbers have no gaps
    /// and the lot check and insertion are one step.
    next_auction: Mutex<u64>,
    policy: PricePolicy,
    hub: Arc<SettlementHub>,
    clock: Arc<dyn Clock>,
    journal: Option<Arc<FileJournal>>,
    /// Every auction task, awaited by [`Exchange::shutdown`].
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Exchange {
    /// Rebuilds the exchange from journal entries, in order, then starts every auction's task
    /// (so it must run inside a tokio runtime).
    ///
    /// Settlements the replay derives that no recorder has yet (the server stopped between
    /// journaling a close and recording it) are recorded and published now; the others were
    /// emitted before and are not emitted again.
    pub async fn recover(
        policy: PricePolicy,
        hub: Arc<SettlementHub>,
        clock: Arc<dyn Clock>,
        journal: Option<Arc<FileJournal>>,
        entries: Vec<Entry>,
    ) -> Result<Exchange, ReplayError> {
        let mut auctions: BTreeMap<AuctionId, (Auction, crate::domain::Timestamp)> = BTreeMap::new();
        let mut concluded = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let fail = |reason: String| ReplayError { index, reason };
            let (events, auction_id, at) = match entry {
                Entry::Create { spec, seed } => {
                    let (id, at) = (spec.id, spec.created_at);
                    let seed = Entry::seed_of(&seed).map_err(fail)?;
                    auctions.insert(id, (Auction::from_spec(*spec, seed), at));
                    continue;
                }
                Entry::Apply { at, auction, command } => {
                    let (a, _) = auctions.get_mut(&auction).ok_or_else(|| fail(format!("no auction {auction}")))?;
                    (
                        a.apply(at, command)
                            .map_err(|e| fail(format!("{auction} refused a journaled command: {e}")))?,
                        auction,
                        at,
                    )
                }
                Entry::Tick { at, auction } => {
                    let (a, _) = auctions.get_mut(&auction).ok_or_else(|| fail(format!("no auction {auction}")))?;
                    (a.tick(at), auction, at)
                }
            };
            let (_, last) = auctions.get_mut(&auction_id).expect("looked up above");
            *last = (*last).max(at);
            concluded.extend(events.into_iter().filter_map(|e| match e {
                Event::Concluded(s) => Some(*s),
                _ => None,
            }));
        }
        for settlement in concluded {
            if hub.get(settlement.auction_id).await.is_none() {
                hub.publish(settlement).await;
            }
        }
        let after_journal = auctions.keys().next_back().map_or(1, |id| id.get() + 1);
        let after_recorded = hub.max_auction_id().await.map_or(1, |id| id.get() + 1);
        let exchange = Exchange {
            auctions: DashMap::new(),
            books: DashMap::new(),
            next_auction: Mutex::new(after_journal.max(after_recorded)),
            policy,
            hub,
            clock,
            journal,
            tasks: Mutex::new(Vec::new()),
        };
        for (auction, last_stamp) in auctions.into_values() {
            exchange.start(auction, last_stamp);
        }
        Ok(exchange)
    }

    /// Registers an auction and starts its task.
    fn start(&self, auction: Auction, last_stamp: crate::domain::Timestamp) -> AuctionSnapshot {
        let id = auction.spec().id;
        let key = (auction.spec().lot.pollutant, auction.spec().lot.id.clone());
        let spec = Arc::new(auction.spec().clone());
        let snapshot = AuctionActor::snapshot_of(&auction, &spec);
        let (snapshot_tx, snapshot_rx) = watch::channel(snapshot.clone());
        let (tx, rx) = mpsc::channel(AUCTION_QUEUE_DEPTH);
        let actor = AuctionActor::new(
            auction,
            rx,
            snapshot_tx,
            Arc::clone(&self.hub),
            Arc::clone(&self.clock),
            self.journal.clone(),
            last_stamp,
        );
        let task = tokio::spawn(actor.run());
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        self.auctions.insert(id, AuctionHandle { requests: tx, snapshot: snapshot_rx });
        self.books.insert(key, id);
        snapshot
    }

    /// Stops every auction task after the requests it holds, so that nothing writes to the
    /// journal any more. Requests after this answer SHUTTING_DOWN.
    pub async fn shutdown(&self) {
        self.auctions.clear();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }

    pub fn policy(&self) -> &PricePolicy {
        &self.policy
    }

    pub fn hub(&self) -> &Arc<SettlementHub> {
        &self.hub
    }

    /// Creates an auction; returns once its creation is durable.
    pub async fn create_auction(&self, request: AuctionRequest) -> Result<AuctionSnapshot, ServiceError> {
        let (snapshot, pending) = {
            // Numbering, the lot check, journaling order and registration are one step.
            let mut next = self.next_auction.lock().unwrap_or_else(|p| p.into_inner());
            let key = (request.lot.pollutant, request.lot.id.clone());
            if let Some(existing) = self.books.get(&key) {
                return Err(ServiceError::LotTaken { pollutant: key.0, lot: key.1, auction: *existing });
            }
            let slot = match &self.journal {
                Some(j) => Some(
                    j.try_reserve()
                        .map_err(|e| ServiceError::Unavailable(e.to_string()))?
                        .ok_or_else(|| ServiceError::Unavailable("the journal queue is full; retry shortly".into()))?,
                ),
                None => None,
            };
            let id = AuctionId::new(*next);
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).expect("the operating system's random source");
            let at = self.clock.now();
            let auction = Auction::create(id, request, &self.policy, at, Seed(seed))?;
            *next += 1;
            let entry = Entry::Create { spec: Box::new(auction.spec().clone()), seed: Entry::seed_hex(auction.seed()) };
            let pending = slot.map(|s| s.submit(entry.encode()));
            (self.start(auction, at), pending)
        };
        if let Some(pending) = pending {
            pending.wait().await.map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        }
        let spec = &snapshot.spec;
        tracing::info!(auction = %spec.id, lot = %spec.lot.id, pollutant = %spec.lot.pollutant, "auction created");
        Ok(snapshot)
    }

    fn handle(&self, id: AuctionId) -> Result<AuctionHandle, ServiceError> {
        self.auctions.get(&id).map(|h| h.clone()).ok_or(ServiceError::AuctionNotFound(id))
    }

    async fn ask<T>(&self, id: AuctionId, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ServiceError> {
        let handle = self.handle(id)?;
        let (tx, rx) = oneshot::channel();
        handle.requests.try_send(make(tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ServiceError::Busy(id),
            mpsc::error::TrySendError::Closed(_) => ServiceError::ShuttingDown,
        })?;
        rx.await.map_err(|_| ServiceError::ShuttingDown)
    }

    async fn command(&self, id: AuctionId, command: Command) -> Result<Vec<Event>, ServiceError> {
        self.ask(id, |reply| Request::Apply { command, reply }).await?
    }

    pub fn get(&self, id: AuctionId) -> Result<AuctionSnapshot, ServiceError> {
        Ok(self.handle(id)?.snapshot.borrow().clone())
    }

    pub fn list(&self, filter: &AuctionFilter) -> Vec<AuctionSnapshot> {
        let mut out: Vec<AuctionSnapshot> = self
            .auctions
            .iter()
            .map(|entry| entry.value().snapshot.borrow().clone())
            .filter(|s| {
                filter.pollutant.is_none_or(|p| s.spec.lot.pollutant == p)
                    && filter.region.is_none_or(|r| s.spec.lot.region == r)
                    && filter.phase.is_none_or(|p| s.phase == p)
            })
            .collect();
        out.sort_by_key(|s| s.spec.id);
        out
    }

    /// Applies an operator command and returns the auction as it is afterwards.
    pub async fn operate(&self, id: AuctionId, command: Command) -> Result<AuctionSnapshot, ServiceError> {
        self.command(id, command).await?;
        self.get(id)
    }

    pub async fn place_bid(
        &self,
        id: AuctionId,
        bidder: BidderId,
        price: Price,
        quantity: Quantity,
    ) -> Result<BidView, ServiceError> {
        let events =
            self.command(id, Command::PlaceBid { bidder, bid: actor::fresh_bid_id(), price, quantity }).await?;
        Ok(bid_in(&events))
    }

    pub async fn revise_bid(
        &self,
        id: AuctionId,
        bidder: BidderId,
        bid: BidId,
        price: Price,
        quantity: Quantity,
    ) -> Result<BidView, ServiceError> {
        let events = self.command(id, Command::ReviseBid { bidder, bid, price, quantity }).await?;
        Ok(bid_in(&events))
    }

    pub async fn withdraw_bid(&self, id: AuctionId, bidder: BidderId, bid: BidId) -> Result<BidView, ServiceError> {
        let events = self.command(id, Command::WithdrawBid { bidder, bid }).await?;
        Ok(bid_in(&events))
    }

    pub async fn bids_of(&self, id: AuctionId, bidder: BidderId) -> Result<Vec<BidView>, ServiceError> {
        self.ask(id, |reply| Request::BidsOf { bidder, reply }).await
    }

    pub async fn all_bids(&self, id: AuctionId) -> Result<Vec<BidView>, ServiceError> {
        Ok(self.ask(id, |reply| Request::AllBids { reply }).await??)
    }

    pub async fn settlement(&self, id: AuctionId) -> Result<Arc<RecordedSettlement>, ServiceError> {
        self.hub.get(id).await.ok_or(ServiceError::AuctionNotFound(id))
    }
}

fn bid_in(events: &[Event]) -> BidView {
    events
        .iter()
        .find_map(|e| match e {
            Event::BidAccepted(b) | Event::BidWithdrawn(b) => Some(*b),
            _ => None,
        })
        .expect("a bid command yields its bid")
}
