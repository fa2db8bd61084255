//! The single writer of one auction. A task owns the [`Auction`], takes requests from a
//! bounded channel, stamps each with the server clock, applies it, and fires the auction's
//! open and close timers itself. Nobody else ever touches the book.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{BidId, BidderId, Price, Quantity, Timestamp};
use crate::engine::{Auction, AuctionSpec, BidView, Command, EngineError, Event, Phase};

use super::clock::Clock;
use super::hub::SettlementHub;

/// What everyone may see of an auction: its terms and phase, never its bids.
#[derive(Debug, Clone)]
pub struct AuctionSnapshot {
    pub spec: Arc<AuctionSpec>,
    pub phase: Phase,
    pub seed_hash: Option<String>,
}

pub(crate) type Reply<T> = oneshot::Sender<T>;

pub(crate) enum Request {
    /// A new bid; the actor draws its id.
    Place {
        bidder: BidderId,
        price: Price,
        quantity: Quantity,
        reply: Reply<Result<BidView, EngineError>>,
    },
    Apply {
        command: Command,
        reply: Reply<Result<Vec<Event>, EngineError>>,
    },
    BidsOf {
        bidder: BidderId,
        reply: Reply<Vec<BidView>>,
    },
    AllBids {
        reply: Reply<Result<Vec<BidView>, EngineError>>,
    },
}

pub(crate) struct AuctionActor {
    auction: Auction,
    requests: mpsc::Receiver<Request>,
    snapshot: watch::Sender<AuctionSnapshot>,
    hub: Arc<SettlementHub>,
    clock: Arc<dyn Clock>,
    /// The latest stamp given; stamps never go backwards even if the wall clock does.
    last_stamp: Timestamp,
}

impl AuctionActor {
    pub(crate) fn new(
        auction: Auction,
        requests: mpsc::Receiver<Request>,
        snapshot: watch::Sender<AuctionSnapshot>,
        hub: Arc<SettlementHub>,
        clock: Arc<dyn Clock>,
    ) -> AuctionActor {
        let last_stamp = auction.spec().created_at;
        AuctionActor { auction, requests, snapshot, hub, clock, last_stamp }
    }

    pub(crate) fn snapshot_of(auction: &Auction, spec: &Arc<AuctionSpec>) -> AuctionSnapshot {
        AuctionSnapshot { spec: Arc::clone(spec), phase: auction.phase(), seed_hash: auction.seed_hash() }
    }

    fn stamp(&mut self) -> Timestamp {
        self.last_stamp = self.last_stamp.max(self.clock.now());
        self.last_stamp
    }

    pub(crate) async fn run(mut self) {
        loop {
            let wait = self.auction.next_deadline().map(|deadline| {
                let micros = deadline.as_micros().saturating_sub(self.clock.now().as_micros()).max(0);
                Duration::from_micros(micros as u64)
            });
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(request) => self.handle(request).await,
                    None => break,
                },
                () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                    let at = self.stamp();
                    let events = self.auction.tick(at);
                    self.after(&events).await;
                }
            }
        }
    }

    async fn handle(&mut self, request: Request) {
        match request {
            Request::Place { bidder, price, quantity, reply } => {
                let at = self.stamp();
                let result = loop {
                    match self.auction.place_bid(at, bidder, fresh_bid_id(), price, quantity) {
                        Err(EngineError::DuplicateBidId) => continue,
                        other => break other,
                    }
                };
                if let Ok(change) = &result
                    && let Some(at) = change.opened_at
                {
                    self.after(&[Event::Opened { at }]).await;
                }
                let _ = reply.send(result.map(|change| change.bid));
            }
            Request::Apply { command, reply } => {
                let at = self.stamp();
                let result = self.auction.apply(at, command);
                if let Ok(events) = &result {
                    self.after(events).await;
                }
                let _ = reply.send(result);
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
    async fn after(&mut self, events: &[Event]) {
        for event in events {
            if let Event::Concluded(settlement) = event {
                let sequence = self.hub.publish((**settlement).clone()).await;
                tracing::info!(
                    auction = %settlement.auction_id,
                    status = ?settlement.status,
                    sequence,
                    "auction concluded"
                );
            }
        }
        if self.snapshot.borrow().phase != self.auction.phase() {
            let spec = Arc::clone(&self.snapshot.borrow().spec);
            self.snapshot.send_replace(Self::snapshot_of(&self.auction, &spec));
        }
    }
}

/// A random bid id, so that ids reveal nothing about how many bids an auction holds.
fn fresh_bid_id() -> BidId {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    BidId::new(u64::from_be_bytes(bytes))
}
