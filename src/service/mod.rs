//! The shell around the core: one task per auction (its only writer), the registry of books,
//! the settlement hub and recorders, and the clock. It speaks domain types, not protobuf.
//!
//! Invariant: a `dashmap` guard is never held across an `.await`; handles are cloned out first.

mod actor;
pub mod clock;
pub mod hub;
pub mod recorder;

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
}

impl Exchange {
    /// Must be called inside a tokio runtime: each auction gets a task.
    pub async fn new(policy: PricePolicy, hub: Arc<SettlementHub>, clock: Arc<dyn Clock>) -> Exchange {
        let first = hub.max_auction_id().await.map_or(1, |id| id.get() + 1);
        Exchange {
            auctions: DashMap::new(),
            books: DashMap::new(),
            next_auction: Mutex::new(first),
            policy,
            hub,
            clock,
        }
    }

    pub fn policy(&self) -> &PricePolicy {
        &self.policy
    }

    pub fn hub(&self) -> &Arc<SettlementHub> {
        &self.hub
    }

    pub fn create_auction(&self, request: AuctionRequest) -> Result<AuctionSnapshot, ServiceError> {
        let mut next = self.next_auction.lock().unwrap_or_else(|p| p.into_inner());
        let key = (request.lot.pollutant, request.lot.id.clone());
        if let Some(existing) = self.books.get(&key) {
            return Err(ServiceError::LotTaken { pollutant: key.0, lot: key.1, auction: *existing });
        }
        let id = AuctionId::new(*next);
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system's random source");
        let auction = Auction::create(id, request, &self.policy, self.clock.now(), Seed(seed))?;
        *next += 1;

        let spec = Arc::new(auction.spec().clone());
        let snapshot = AuctionActor::snapshot_of(&auction, &spec);
        let (snapshot_tx, snapshot_rx) = watch::channel(snapshot.clone());
        let (tx, rx) = mpsc::channel(AUCTION_QUEUE_DEPTH);
        let actor = AuctionActor::new(auction, rx, snapshot_tx, Arc::clone(&self.hub), Arc::clone(&self.clock));
        tokio::spawn(actor.run());
        self.auctions.insert(id, AuctionHandle { requests: tx, snapshot: snapshot_rx });
        self.books.insert(key, id);
        tracing::info!(auction = %id, lot = %spec.lot.id, pollutant = %spec.lot.pollutant, "auction created");
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
        Ok(self.ask(id, |reply| Request::Apply { command, reply }).await??)
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
        Ok(self.ask(id, |reply| Request::Place { bidder, price, quantity, reply }).await??)
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
