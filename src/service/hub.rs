//! The visible settlement stream: what `GetSettlement` and `SubscribeSettlements` serve. A
//! settlement is shown here only once the gating recorder holds it durably (see
//! [`super::outbox`]), in sequence order, each once.
//!
//! Subscribers are served from a history (for resuming from a sequence number) followed by a
//! bounded broadcast; one that falls behind the broadcast is told so and can resume.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use crate::domain::AuctionId;

use super::recorder::RecordedSettlement;

/// How many live settlements a subscriber may lag behind before it is cut off.
const SUBSCRIBER_BUFFER: usize = 1024;

#[derive(Default)]
struct HubState {
    history: BTreeMap<u64, Arc<RecordedSettlement>>,
    by_auction: HashMap<AuctionId, u64>,
}

pub struct SettlementHub {
    state: Mutex<HubState>,
    live: broadcast::Sender<Arc<RecordedSettlement>>,
    /// The last sequence shown.
    shown: watch::Sender<u64>,
}

impl Default for SettlementHub {
    fn default() -> SettlementHub {
        SettlementHub {
            state: Mutex::default(),
            live: broadcast::channel(SUBSCRIBER_BUFFER).0,
            shown: watch::channel(0).0,
        }
    }
}

impl SettlementHub {
    /// Shows settlements that are now durable where they must be, in order; those shown
    /// before are skipped.
    pub fn show(&self, batch: &[Arc<RecordedSettlement>]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = *self.shown.borrow();
        for settlement in batch {
            if settlement.sequence <= last {
                continue;
            }
            state.by_auction.insert(settlement.settlement.auction_id, settlement.sequence);
            state.history.insert(settlement.sequence, Arc::clone(settlement));
            last = settlement.sequence;
            // No receivers is fine: nobody is subscribed.
            let _ = self.live.send(Arc::clone(settlement));
        }
        self.shown.send_replace(last);
    }

    pub fn get(&self, auction: AuctionId) -> Option<Arc<RecordedSettlement>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.by_auction.get(&auction).and_then(|seq| state.history.get(seq)).cloned()
    }

    /// Waits until `auction`'s settlement is shown, at most `patience`.
    pub async fn wait_for(&self, auction: AuctionId, patience: std::time::Duration) -> Option<Arc<RecordedSettlement>> {
        let mut shown = self.shown.subscribe();
        let wait = async {
            loop {
                if let Some(found) = self.get(auction) {
                    return Some(found);
                }
                if shown.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(patience, wait).await.ok().flatten()
    }

    /// Everything from `from_sequence` on, and a receiver for what comes after. Taken under
    /// one lock, so nothing falls between the two.
    pub fn subscribe(
        &self,
        from_sequence: u64,
    ) -> (Vec<Arc<RecordedSettlement>>, broadcast::Receiver<Arc<RecordedSettlement>>) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let backlog = state.history.range(from_sequence..).map(|(_, s)| Arc::clone(s)).collect();
        (backlog, self.live.subscribe())
    }
}
