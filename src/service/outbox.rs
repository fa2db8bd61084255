//! The outbox: every settlement the journal derives, in sequence order, and one delivery task
//! per recorder that hands it what comes after the recorder's own durable cursor.
//!
//! Settlements enter the outbox once their journal entry is durable (live) or when the journal
//! is replayed at start (all of them); each recorder catches up from its cursor, so a recorder
//! that was down, or behind at a restart, receives what it missed and nothing twice. Auction
//! tasks only push into the outbox and never wait for a recorder: a recorder that is down
//! delays no bid. The first required recorder gates visibility: a settlement is shown to
//! `GetSettlement` and `SubscribeSettlements` only once that recorder holds it durably.
//!
//! Invariant: a recorder is handed settlements in sequence order, each after its cursor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::health::Health;
use super::hub::SettlementHub;
use super::recorder::{RecordedSettlement, Recorder};

/// Most settlements handed to a recorder in one call.
const BATCH: usize = 512;

/// Longest wait between attempts at a recorder that failed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A recorder and how the exchange depends on it.
#[derive(Clone)]
pub struct Recording {
    pub recorder: Arc<dyn Recorder>,
    /// A required recorder that is down turns health NOT_SERVING; the first required one also
    /// gates visibility.
    pub required: bool,
}

/// How one recorder stands, for the status RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderStatus {
    pub name: String,
    pub required: bool,
    /// The last sequence it holds durably (`None` until it answered once).
    pub cursor: Option<u64>,
    /// How many settlements it is behind the outbox.
    pub lag: u64,
    pub last_error: Option<String>,
}

struct State {
    settlements: BTreeMap<u64, Arc<RecordedSettlement>>,
    /// Every settlement up to here is in the outbox; later ones wait for the gap to fill.
    ready: u64,
}

pub struct Outbox {
    state: Mutex<State>,
    /// The highest ready sequence, for delivery tasks to wait on.
    ready: watch::Sender<u64>,
    statuses: Mutex<Vec<RecorderStatus>>,
}

impl Outbox {
    /// An outbox holding what the journal derived at start. Numbers lost with an earlier
    /// journal failure leave gaps here, which are accepted; from now on numbers follow the
    /// last one without gaps.
    pub fn new(replayed: impl IntoIterator<Item = RecordedSettlement>) -> Outbox {
        let settlements: BTreeMap<u64, Arc<RecordedSettlement>> =
            replayed.into_iter().map(|s| (s.sequence, Arc::new(s))).collect();
        let ready = settlements.keys().next_back().copied().unwrap_or(0);
        Outbox {
            state: Mutex::new(State { settlements, ready }),
            ready: watch::channel(ready).0,
            statuses: Mutex::new(Vec::new()),
        }
    }

    /// The highest sequence derived so far.
    pub fn last(&self) -> u64 {
        *self.ready.borrow()
    }

    /// A settlement whose concluding entry is durable.
    pub fn push(&self, settlement: RecordedSettlement) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.settlements.insert(settlement.sequence, Arc::new(settlement));
        let mut ready = state.ready;
        while state.settlements.contains_key(&(ready + 1)) {
            ready += 1;
        }
        if ready != state.ready {
            state.ready = ready;
            self.ready.send_replace(ready);
        }
    }

    /// Up to `limit` ready settlements after `cursor`, in order.
    fn after(&self, cursor: u64, limit: usize) -> Vec<Arc<RecordedSettlement>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if cursor >= state.ready {
            return Vec::new();
        }
        state.settlements.range(cursor + 1..=state.ready).take(limit).map(|(_, s)| Arc::clone(s)).collect()
    }

    /// Every recorder's standing.
    pub fn statuses(&self) -> Vec<RecorderStatus> {
        let last = self.last();
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for status in &mut statuses {
            status.lag = last.saturating_sub(status.cursor.unwrap_or(0));
        }
        statuses
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut RecorderStatus)) {
        if let Some(status) = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).get_mut(index) {
            change(status);
        }
    }

    /// Starts one delivery task per recorder; the first required one feeds `hub` (without
    /// one, settlements are visible as soon as they are ready). The tasks stop with `stop`.
    pub fn deliver(
        self: &Arc<Self>,
        recordings: Vec<Recording>,
        hub: Arc<SettlementHub>,
        health: Arc<Health>,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let gate = recordings.iter().position(|r| r.required);
        {
            let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
            *statuses = recordings
                .iter()
                .map(|r| RecorderStatus {
                    name: r.recorder.name().to_owned(),
                    required: r.required,
                    cursor: None,
                    lag: 0,
                    last_error: None,
                })
                .collect();
        }
        let mut tasks = Vec::new();
        if gate.is_none() {
            tasks.push(tokio::spawn(show_all(Arc::clone(self), Arc::clone(&hub), stop.clone())));
        }
        for (index, recording) in recordings.into_iter().enumerate() {
            let delivery = Delivery {
                outbox: Arc::clone(self),
                index,
                recording,
                hub: (gate == Some(index)).then(|| Arc::clone(&hub)),
                health: Arc::clone(&health),
            };
            tasks.push(tokio::spawn(delivery.run(stop.clone())));
        }
        tasks
    }
}

/// Without a gating recorder, settlements are visible as soon as they are ready.
async fn show_all(outbox: Arc<Outbox>, hub: Arc<SettlementHub>, mut stop: watch::Receiver<bool>) {
    let mut ready = outbox.ready.subscribe();
    let mut shown = 0;
    loop {
        let batch = outbox.after(shown, usize::MAX);
        if let Some(last) = batch.last() {
            shown = last.sequence;
            hub.show(&batch);
        }
        tokio::select! {
            changed = ready.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

struct Delivery {
    outbox: Arc<Outbox>,
    index: usize,
    recording: Recording,
    /// Set for the recorder that gates visibility.
    hub: Option<Arc<SettlementHub>>,
    health: Arc<Health>,
}

impl Delivery {
    fn health_key(&self) -> String {
        format!("recorder {}", self.recording.recorder.name())
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut ready = self.outbox.ready.subscribe();
        let mut cursor: Option<u64> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            if *stop.borrow() {
                return;
            }
            let attempt = match cursor {
                None => self.start().await.map(|c| {
                    cursor = Some(c);
                    true
                }),
                Some(at) => {
                    let batch = self.outbox.after(at, BATCH);
                    match batch.last().map(|s| s.sequence) {
                        None => Ok(false),
                        Some(last) => self.recording.recorder.record(&batch).await.map(|()| {
                            cursor = Some(last);
                            if let Some(hub) = &self.hub {
                                hub.show(&batch);
                            }
                            true
                        }),
                    }
                }
            };
            match attempt {
                Ok(progress) => {
                    backoff = Duration::from_millis(50);
                    self.outbox.update(self.index, |s| {
                        s.cursor = cursor;
                        s.last_error = None;
                    });
                    self.health.clear(&self.health_key());
                    if progress {
                        continue;
                    }
                    tokio::select! {
                        changed = ready.changed() => if changed.is_err() { return },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                Err(e) => {
                    let error = e.to_string();
                    tracing::warn!(recorder = self.recording.recorder.name(), error = %error, retry_in = ?backoff, "recorder failed; it catches up from its cursor when it is back");
                    if self.recording.required {
                        self.health.set(&self.health_key(), format!("required recorder down: {error}"));
                    }
                    self.outbox.update(self.index, |s| s.last_error = Some(error));
                    // What the failed call did is unknown: ask the recorder where it stands.
                    cursor = None;
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Where the recorder stands at start (or after an error); the gating recorder shows what
    /// it already holds.
    async fn start(&self) -> Result<u64, super::recorder::RecorderError> {
        let cursor = self.recording.recorder.cursor().await?;
        if let Some(hub) = &self.hub {
            hub.show(
                &self.outbox.after(0, usize::MAX).into_iter().take_while(|s| s.sequence <= cursor).collect::<Vec<_>>(),
            );
        }
        Ok(cursor)
    }
}
