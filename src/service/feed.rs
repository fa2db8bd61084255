//! The live feed of one auction's public changes, for `WatchAuction`: its phase, and for
//! ascending auctions the price, leading pseudonym and countdown. The auction's task publishes
//! an update after each public change is durable; watchers get recent updates (to resume from
//! a sequence number) and then live ones from a bounded broadcast. A watcher that falls behind
//! the broadcast is cut off (it can resume) rather than slowing the auction or growing memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::{BidderId, Price, Timestamp};
use crate::engine::{AscendingView, ClockView, Phase, SettlementStatus};

/// How many updates a watcher may lag behind before it is cut off.
const WATCHER_BUFFER: usize = 256;
/// How many recent updates are kept for watchers that reconnect.
const HISTORY: usize = 4096;

/// What a public change was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// The state as it is (the first message of a watch, or a resync after a gap).
    State,
    Opened,
    /// An ascending auction took a bid.
    Bid,
    TimedPeriodStarted,
    /// A clock auction's round ended and the next began.
    RoundEnded,
    Concluded,
}

/// The outcome a watcher sees when the auction concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conclusion {
    pub status: SettlementStatus,
    pub price: Option<Price>,
    /// Ascending auctions: the winner's pseudonym.
    pub winner: Option<u32>,
    /// The winning enterprise, published with the settlement; not shown while bidding runs.
    pub winner_code: Option<BidderId>,
}

/// One public change of an auction, numbered by [`crate::engine::Auction::public_seq`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuctionUpdate {
    pub sequence: u64,
    pub kind: UpdateKind,
    pub at: Timestamp,
    pub phase: Phase,
    pub ascending: Option<AscendingView>,
    pub clock: Option<ClockView>,
    pub conclusion: Option<Conclusion>,
}

struct FeedState {
    recent: VecDeque<Arc<AuctionUpdate>>,
    /// The state after the latest update, for watchers that start now.
    current: Arc<AuctionUpdate>,
}

pub struct AuctionFeed {
    state: Mutex<FeedState>,
    live: broadcast::Sender<Arc<AuctionUpdate>>,
}

/// Where a new watcher starts: what it missed (or the state, after a gap), then live updates.
pub struct Watch {
    pub backlog: Vec<Arc<AuctionUpdate>>,
    pub live: broadcast::Receiver<Arc<AuctionUpdate>>,
}

impl AuctionFeed {
    /// A feed whose current state is `current` (kind [`UpdateKind::State`]).
    pub fn new(current: AuctionUpdate) -> AuctionFeed {
        AuctionFeed {
            state: Mutex::new(FeedState { recent: VecDeque::new(), current: Arc::new(current) }),
            live: broadcast::channel(WATCHER_BUFFER).0,
        }
    }

    pub fn publish(&self, update: AuctionUpdate) {
        let update = Arc::new(update);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.recent.len() == HISTORY {
            state.recent.pop_front();
        }
        state.recent.push_back(Arc::clone(&update));
        state.current = Arc::new(AuctionUpdate { kind: UpdateKind::State, ..(*update).clone() });
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(update);
    }

    /// Updates after `after` (0: none, just the current state), then live ones; taken under
    /// one lock so nothing falls between. When `after` is older than what is kept, or from
    /// before a restart, the backlog is the current state instead.
    pub fn watch(&self, after: u64) -> Watch {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let current = state.current.sequence;
        let backlog = if after == 0 || after > current {
            vec![Arc::clone(&state.current)]
        } else if after == current {
            Vec::new()
        } else {
            match state.recent.front() {
                Some(oldest) if oldest.sequence <= after + 1 => {
                    state.recent.iter().filter(|u| u.sequence > after).cloned().collect()
                }
                _ => vec![Arc::clone(&state.current)],
            }
        };
        Watch { backlog, live: self.live.subscribe() }
    }
}
