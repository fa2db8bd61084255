//! The settlement stream: numbers settlements, hands each to every recorder, then makes it
//! visible to `GetSettlement` and `SubscribeSettlements`, in that order (record, then publish).
//!
//! Subscribers are served from a history (for resuming from a sequence number) followed by a
//! bounded broadcast; one that falls behind the broadcast is told so and can resume.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, broadcast};

use crate::domain::AuctionId;
use crate::engine::Settlement;

use super::recorder::{JournalPosition, RecordedSettlement, Recorder};

/// How many live settlements a subscriber may lag behind before it is cut off.
const SUBSCRIBER_BUFFER: usize = 1024;

struct HubState {
    history: Vec<Arc<RecordedSettlement>>,
    by_auction: HashMap<AuctionId, usize>,
}

pub struct SettlementHub {
    state: Mutex<HubState>,
    live: broadcast::Sender<Arc<RecordedSettlement>>,
    recorders: Vec<Arc<dyn Recorder>>,
}

impl SettlementHub {
    /// `history` is what earlier runs recorded; the stream continues after it.
    pub fn new(recorders: Vec<Arc<dyn Recorder>>, history: Vec<RecordedSettlement>) -> SettlementHub {
        let history: Vec<Arc<RecordedSettlement>> = history.into_iter().map(Arc::new).collect();
        let by_auction = history.iter().enumerate().map(|(i, r)| (r.settlement.auction_id, i)).collect();
        SettlementHub {
            state: Mutex::new(HubState { history, by_auction }),
            live: broadcast::channel(SUBSCRIBER_BUFFER).0,
            recorders,
        }
    }

    /// Records and publishes one settlement; returns its sequence number.
    pub async fn publish(&self, settlement: Settlement, journal: Option<JournalPosition>) -> u64 {
        let mut state = self.state.lock().await;
        let sequence = state.history.len() as u64 + 1;
        let recorded = Arc::new(RecordedSettlement { sequence, journal, settlement });
        for recorder in &self.recorders {
            let (recorder, rec) = (Arc::clone(recorder), Arc::clone(&recorded));
            let outcome = tokio::task::spawn_blocking(move || recorder.record(&rec)).await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, sequence, "recorder failed; settlement kept in memory"),
                Err(e) => tracing::error!(error = %e, sequence, "recorder panicked"),
            }
        }
        let index = state.history.len();
        state.by_auction.insert(recorded.settlement.auction_id, index);
        state.history.push(Arc::clone(&recorded));
        // No receivers is fine: nobody is subscribed.
        let _ = self.live.send(recorded);
        sequence
    }

    pub async fn get(&self, auction: AuctionId) -> Option<Arc<RecordedSettlement>> {
        let state = self.state.lock().await;
        state.by_auction.get(&auction).map(|&i| Arc::clone(&state.history[i]))
    }

    /// Everything from `from_sequence` on, and a receiver for what comes after. Taken under
    /// one lock, so nothing falls between the two.
    pub async fn subscribe(
        &self,
        from_sequence: u64,
    ) -> (Vec<Arc<RecordedSettlement>>, broadcast::Receiver<Arc<RecordedSettlement>>) {
        let state = self.state.lock().await;
        let start = from_sequence.saturating_sub(1) as usize;
        let backlog = state.history.get(start..).map(<[_]>::to_vec).unwrap_or_default();
        (backlog, self.live.subscribe())
    }

    /// The highest auction number any recorded settlement mentions.
    pub async fn max_auction_id(&self) -> Option<AuctionId> {
        self.state.lock().await.history.iter().map(|r| r.settlement.auction_id).max()
    }
}
