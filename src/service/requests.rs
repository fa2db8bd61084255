//! Idempotent requests. Every change a client asks for carries its principal and a client
//! request id; a retry under the same pair gets the original outcome (the same bid id, the same
//! receipt) and changes nothing, and the same pair with a different payload is refused with
//! `REQUEST_ID_REUSED`. The pair and a fingerprint of the payload are journaled with the change,
//! so the table is rebuilt on replay and the promise holds across restarts.
//!
//! While a request runs, its slot is marked running: a concurrent duplicate waits for the
//! first to finish and gets its answer instead of running again. A request that fails changes
//! nothing, so its slot is freed and a retry runs afresh.

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::domain::AuctionId;
use crate::engine::BidView;

use super::ServiceError;

/// A digest of a request's payload: its method and every field but the request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// The first 16 bytes of SHA-256 over `method`, a zero byte, then `payload`.
    pub fn of(method: &str, payload: &[u8]) -> Fingerprint {
        let digest = Sha256::new().chain_update(method).chain_update([0]).chain_update(payload).finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        Fingerprint(first)
    }
}

/// Who asked for a change, under which request id, and what they asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The authenticated principal's name (never a request field).
    pub principal: String,
    pub request_id: String,
    pub fingerprint: Fingerprint,
}

impl Origin {
    /// The digest that keys this request among those replayed from the journal.
    pub fn key_digest(&self) -> u128 {
        key_digest(&self.principal, &self.request_id)
    }
}

/// What a bidder's receipt shows: the bid as the auction took it (price and quantity resolved,
/// stamp, state) and, in an English auction, the bidder's pseudonym there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub bid: BidView,
    pub pseudonym: Option<u32>,
}

/// What a finished request produced, as much as a retry needs to answer the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An auction was created or operated on; a retry answers with the auction as it is now.
    Auction(AuctionId),
    /// A bid was placed, revised or withdrawn; a retry gets this very receipt.
    Bid(Receipt),
    /// The registry changed this enterprise; a retry answers with it as it is now.
    Registry(crate::domain::CreditCode),
}

type Finished = Option<Result<Outcome, ServiceError>>;

enum Slot {
    Running { fingerprint: Fingerprint, done: watch::Receiver<Finished> },
    Done { fingerprint: Fingerprint, outcome: Outcome },
}

impl Slot {
    fn fingerprint(&self) -> Fingerprint {
        match self {
            Slot::Running { fingerprint, .. } | Slot::Done { fingerprint, .. } => *fingerprint,
        }
    }
}

type Key = (String, String);

/// The first 16 bytes of SHA-256(principal, 0, request id): collision-free in practice, so the
/// requests replayed from the journal can be held as a sorted array of digests.
pub(crate) fn key_digest(principal: &str, request_id: &str) -> u128 {
    let hash = Sha256::new().chain_update(principal).chain_update([0]).chain_update(request_id).finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_le_bytes(first)
}

/// The table of requests seen, by (principal, request id), kept for the life of the process.
///
/// Requests replayed from the journal sit in a sorted array (about 90 bytes each; a million
/// build in a fraction of what a hash map takes, which matters to replay speed). Requests of this
/// run go to a hash map, seeded per process (foldhash's `RandomState`) since clients choose the
/// ids.
#[derive(Default)]
pub(crate) struct Requests {
    /// Digests with an index into `replayed_outcomes`, sorted.
    replayed: Vec<(u128, u32)>,
    replayed_outcomes: Vec<(Fingerprint, Outcome)>,
    live: DashMap<Key, Slot, foldhash::fast::RandomState>,
}

/// What to do with an incoming request.
pub(crate) enum Admission {
    /// It is new: run it, and settle the ticket with its result.
    Run(Ticket),
    /// The same request is running; wait for its result.
    Wait(watch::Receiver<Finished>),
    /// The same request finished before.
    Done(Outcome),
}

/// Collects the requests a journal replay finds.
#[derive(Default)]
pub(crate) struct ReplayedRequests {
    keys: Vec<(u128, u32)>,
    outcomes: Vec<(Fingerprint, Outcome)>,
}

impl ReplayedRequests {
    pub(crate) fn with_capacity(capacity: usize) -> ReplayedRequests {
        ReplayedRequests { keys: Vec::with_capacity(capacity), outcomes: Vec::with_capacity(capacity) }
    }

    /// A journaled request (its [`Origin::key_digest`] and fingerprint) finished with `outcome`.
    pub(crate) fn record(&mut self, key: u128, fingerprint: Fingerprint, outcome: Outcome) {
        // Cannot truncate in practice: the journal's sequence numbers would run for centuries
        // before one replay holds 2^32 requests, and an index past it only mislabels a retry.
        let index = self.outcomes.len() as u32;
        self.keys.push((key, index));
        self.outcomes.push((fingerprint, outcome));
    }

    pub(crate) fn into_table(mut self) -> Requests {
        self.keys.sort_unstable();
        Requests { replayed: self.keys, replayed_outcomes: self.outcomes, live: DashMap::default() }
    }
}

impl Requests {
    pub(crate) fn admit(self: &Arc<Self>, origin: &Origin) -> Result<Admission, ServiceError> {
        let reused = || ServiceError::RequestIdReused { request_id: origin.request_id.clone() };
        if !self.replayed.is_empty() {
            let key = origin.key_digest();
            if let Ok(at) = self.replayed.binary_search_by_key(&key, |(k, _)| *k) {
                let (fingerprint, outcome) = &self.replayed_outcomes[self.replayed[at].1 as usize];
                return if *fingerprint == origin.fingerprint {
                    Ok(Admission::Done(outcome.clone()))
                } else {
                    Err(reused())
                };
            }
        }
        let key = (origin.principal.clone(), origin.request_id.clone());
        match self.live.entry(key) {
            MapEntry::Vacant(vacant) => {
                let (tx, rx) = watch::channel(None);
                let key = vacant.key().clone();
                vacant.insert(Slot::Running { fingerprint: origin.fingerprint, done: rx });
                let fingerprint = origin.fingerprint;
                Ok(Admission::Run(Ticket { requests: Arc::clone(self), key, fingerprint, done: tx, settled: false }))
            }
            MapEntry::Occupied(slot) if slot.get().fingerprint() != origin.fingerprint => Err(reused()),
            MapEntry::Occupied(slot) => match slot.get() {
                Slot::Running { done, .. } => Ok(Admission::Wait(done.clone())),
                Slot::Done { outcome, .. } => Ok(Admission::Done(outcome.clone())),
            },
        }
    }
}

/// The right and duty to settle one running request. Dropping it unsettled (the request was
/// never handed over) frees the slot and tells any waiting duplicate to retry.
pub(crate) struct Ticket {
    requests: Arc<Requests>,
    key: Key,
    fingerprint: Fingerprint,
    done: watch::Sender<Finished>,
    settled: bool,
}

impl Ticket {
    pub(crate) fn settle(mut self, result: &Result<Outcome, ServiceError>) {
        self.settled = true;
        match result {
            Ok(outcome) => {
                let done = Slot::Done { fingerprint: self.fingerprint, outcome: outcome.clone() };
                self.requests.live.insert(self.key.clone(), done);
            }
            Err(_) => {
                self.requests.live.remove(&self.key);
            }
        }
        self.done.send_replace(Some(result.clone()));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.requests.live.remove(&self.key);
            self.done.send_replace(Some(Err(ServiceError::ShuttingDown)));
        }
    }
}

/// Waits for a running duplicate to finish and takes its result.
pub(crate) async fn wait(mut done: watch::Receiver<Finished>) -> Result<Outcome, ServiceError> {
    match done.wait_for(Option::is_some).await {
        // `wait_for` returned because the value is `Some`.
        Ok(finished) => finished.clone().unwrap_or(Err(ServiceError::ShuttingDown)),
        Err(_) => Err(ServiceError::ShuttingDown),
    }
}
