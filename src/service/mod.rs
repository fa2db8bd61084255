//! The shell around the core: one task per auction (its only writer), the registry of books,
//! the settlement hub and recorders, and the clock. It speaks domain types, not protobuf.
//!
//! Invariant: a `dashmap` guard is never held across an `.await`; handles are cloned out first.

mod actor;
pub mod clock;
pub mod entry;
pub mod feed;
pub mod health;
pub mod hub;
pub mod outbox;
pub mod recorder;
pub mod registry;
pub mod requests;
pub mod seal;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot, watch};

use actor::{AuctionActor, Outlets, Request, Shared};
pub use actor::{AuctionSnapshot, PhaseChange};
use clock::Clock;
use health::Health;
use hub::SettlementHub;
use outbox::{Outbox, RecorderStatus, Recording};
pub use recorder::{JournalPosition, RecordedSettlement};
pub use requests::{Fingerprint, Origin, Receipt};

use crate::domain::{
    Amount, AuctionId, BidId, BidderId, CreditCode, EligibilityPolicy, Enterprise, LotId, Pollutant, Price,
    PricePolicy, Quantity, Reason, RegionCode, Timestamp,
};
use crate::engine::{
    Applied, Auction, AuctionRequest, BidView, Command, Eligibility, EngineError, Event, Phase, Seed, eligibility,
    lot_offerable,
};
use crate::journal::{Appended, Journal, Recovered};
use entry::Entry;
use registry::{Registry, RegistryChange, RegistryError};
use requests::{Admission, Outcome, ReplayedRequests, Requests};

/// The outcome of a request handed to its auction, still on its way.
pub type Pending<T> = std::pin::Pin<Box<dyn Future<Output = Result<T, ServiceError>> + Send + 'static>>;

/// How long `GetSettlement` waits for a concluded auction's settlement to be recorded.
const SHOW_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// How many requests may wait for one auction before callers are told to back off.
const AUCTION_QUEUE_DEPTH: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no auction {0}")]
    AuctionNotFound(AuctionId),
    #[error("auction {auction} has not concluded; bidding ends at {closes_at}")]
    NotSettled { auction: AuctionId, closes_at: Timestamp },
    #[error("auction {0} is too busy; retry shortly with the same request id")]
    Busy(AuctionId),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The auction's task stopped on an internal error (a bug): it answers nothing until a
    /// restart replays it from the journal.
    #[error("auction {0} stopped on an internal error; it is unavailable until the server restarts")]
    AuctionFailed(AuctionId),
    /// The client reused a request id for a different request.
    #[error("request id {request_id} was already used for a different request; use a new id for a new request")]
    RequestIdReused { request_id: String },
    /// The journal failed; nothing more is accepted until the server restarts.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl ServiceError {
    /// The stable reason code.
    pub fn reason(&self) -> Reason {
        match self {
            ServiceError::Engine(e) => e.reason(),
            ServiceError::AuctionNotFound(_) => Reason::AuctionNotFound,
            ServiceError::NotSettled { .. } => Reason::NotSettled,
            ServiceError::Busy(_) => Reason::AuctionBusy,
            ServiceError::ShuttingDown => Reason::ShuttingDown,
            ServiceError::AuctionFailed(_) => Reason::AuctionFailed,
            ServiceError::RequestIdReused { .. } => Reason::RequestIdReused,
            ServiceError::Unavailable(_) => Reason::JournalUnavailable,
            ServiceError::Registry(RegistryError::Exists(_)) => Reason::EnterpriseExists,
            ServiceError::Registry(RegistryError::NotFound(_)) => Reason::EnterpriseNotFound,
        }
    }
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
    feed: Arc<feed::AuctionFeed>,
    /// Set when the auction's task stopped on a panic.
    failed: Arc<std::sync::OnceLock<()>>,
}

impl AuctionHandle {
    /// Why the auction's task no longer answers: it failed, or the server is stopping.
    fn gone(&self, id: AuctionId) -> ServiceError {
        if self.failed.get().is_some() { ServiceError::AuctionFailed(id) } else { ServiceError::ShuttingDown }
    }
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
    auctions: Arc<DashMap<AuctionId, AuctionHandle>>,
    /// The latest auction of each (pollutant, lot). Its phase says what that means for the lot:
    /// on sale while scheduled or open, sold once settled, free again once failed or cancelled.
    lots: Arc<DashMap<(Pollutant, LotId), AuctionId>>,
    /// The number the next auction gets. Creating holds this lock, so numbers have no gaps
    /// and the lot check and insertion are one step.
    next_auction: Mutex<u64>,
    policy: PricePolicy,
    hub: Arc<SettlementHub>,
    clock: Arc<dyn Clock>,
    journal: Arc<Journal>,
    /// Why the exchange cannot serve, when it cannot (an auction's task failed, or the
    /// journal, or a required recorder); the gRPC layer turns it into health NOT_SERVING.
    health: Arc<Health>,
    /// Every derived settlement, for the recorders.
    outbox: Arc<Outbox>,
    /// The next settlement's number.
    next_settlement: Arc<std::sync::atomic::AtomicU64>,
    /// Tells the recorders' delivery tasks to stop.
    stop_delivery: watch::Sender<bool>,
    /// Every auction's durable phase changes.
    phases: tokio::sync::broadcast::Sender<PhaseChange>,
    /// Set once the journal failed. In-memory state may then be ahead of the journal, so
    /// nothing about an auction is answered any more until a restart returns to exactly what
    /// the journal holds.
    journal_failed: Arc<std::sync::atomic::AtomicBool>,
    /// Client requests seen, for idempotent retries.
    requests: Arc<Requests>,
    /// The enterprise registry. A `std` lock: nothing awaits while holding it. Changed only
    /// by [`Exchange::change_registry`], which journals each change under the write lock.
    registry: std::sync::RwLock<Registry>,
    /// Who may bid (config); bids carry the facts gathered under it.
    eligibility: EligibilityPolicy,
    /// Seals the bid entries of sealed auctions (each under its auction's key).
    master: seal::MasterKey,
    /// Signs receipts (derived from the master key).
    signer: seal::ReceiptSigner,
    /// Every auction task, awaited by [`Exchange::shutdown`].
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The recorders' delivery tasks.
    delivery: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What replaying a journal derives, before anything runs: the auctions as they stood (with the
/// latest stamp each had), every settlement with the record it was derived from, and every
/// client request with its outcome.
pub struct Replayed {
    pub auctions: BTreeMap<AuctionId, (Auction, Timestamp)>,
    /// Every settlement, with its number and the record it was derived from, in sequence
    /// order: exactly what the recorders hold (`journal replay --out` writes these).
    pub settlements: Vec<RecordedSettlement>,
    requests: ReplayedRequests,
    /// The enterprise registry as the journal leaves it.
    pub registry: Registry,
    /// The auctions whose key the journal holds (they concluded).
    pub unsealed: std::collections::BTreeSet<AuctionId>,
    /// Replayed without the master key: the auctions whose sealed entries no key in the
    /// journal opens yet (they had not concluded), with how many entries of each wait.
    pub still_sealed: BTreeMap<AuctionId, usize>,
}

/// How many decoded entries travel together from the decoding thread to the applying one.
const REPLAY_BATCH: usize = 1024;

/// What replay keeps of a request's origin: the digest of its key and its fingerprint.
#[derive(Debug, Clone, Copy)]
struct RequestKey {
    digest: u128,
    fingerprint: Fingerprint,
}

type Decoded = Result<(Appended, Entry<RequestKey>), ReplayError>;

/// Replays journal records (position and payload, in order) through the core. Pure and
/// deterministic: it is what `journal replay` does offline, without the master key. Sealed
/// entries wait, each auction's entries in journal order, until the auction's key appears in
/// the journal (`Entry::Unseal`, at its close); the auctions still open at the end of the
/// journal are replayed without the bids they hold (see [`Replayed::still_sealed`]).
pub fn replay<'a>(
    records: impl ExactSizeIterator<Item = (Appended, &'a [u8])> + Send,
) -> Result<Replayed, ReplayError> {
    replay_with(records, None)
}

/// [`replay`] with the master key, as the server does on start: every sealed entry is opened
/// where it stands.
///
/// Two threads share the work: one decodes entries (borrowing their strings), opens sealed
/// ones when it has the key, and digests their request keys, the other applies them in
/// journal order.
pub fn replay_with<'a>(
    records: impl ExactSizeIterator<Item = (Appended, &'a [u8])> + Send,
    master: Option<&seal::MasterKey>,
) -> Result<Replayed, ReplayError> {
    let expected = records.len();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(8);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut batch = Vec::with_capacity(REPLAY_BATCH);
            for (index, (at, payload)) in records.enumerate() {
                let decoded = Entry::decode_borrowed(payload)
                    .map_err(|e| format!("record {} is not an entry: {e}", at.seq))
                    .and_then(|entry| match (entry, master) {
                        (Entry::Sealed { at: stamp, auction, nonce, ciphertext }, Some(master)) => {
                            open_sealed(&master.auction_key(auction), stamp, auction, &nonce, &ciphertext)
                                .map_err(|e| format!("record {}: {e}", at.seq))
                        }
                        (entry, _) => Ok(entry.map_origin(|o| request_key(o.principal, o.request_id, o.fingerprint))),
                    })
                    .map(|entry| (at, entry))
                    .map_err(|reason| ReplayError { index, reason });
                let failed = decoded.is_err();
                batch.push(decoded);
                if failed || batch.len() == REPLAY_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(REPLAY_BATCH));
                    // Stop when the applier has gone (it failed) or after sending a failure.
                    if tx.send(full).is_err() || failed {
                        return;
                    }
                }
            }
            let _ = tx.send(batch);
        });
        apply_all(rx.into_iter().flatten(), expected)
    })
}

fn request_key(principal: &str, request_id: &str, fingerprint: Fingerprint) -> RequestKey {
    RequestKey { digest: requests::key_digest(principal, request_id), fingerprint }
}

/// Opens a sealed entry: the `Apply` entry it holds, for the same auction and stamp.
fn open_sealed(
    key: &seal::AuctionKey,
    at: Timestamp,
    auction: AuctionId,
    nonce: &[u8; 24],
    ciphertext: &[u8],
) -> Result<Entry<RequestKey>, String> {
    let plain = key
        .open(auction, at, nonce, ciphertext)
        .ok_or_else(|| format!("a sealed entry of {auction} does not open with its key (wrong key, or changed)"))?;
    match Entry::decode(&plain).map_err(|e| format!("a sealed entry of {auction} holds no entry: {e}"))? {
        Entry::Apply { at: inner, auction: inside, command, origin, settled: None }
            if inner == at && inside == auction =>
        {
            let origin = origin.map(|o| request_key(&o.principal, &o.request_id, o.fingerprint));
            Ok(Entry::Apply { at, auction, command, origin, settled: None })
        }
        _ => Err(format!("a sealed entry of {auction} holds something other than a bid of {auction} at its stamp")),
    }
}

/// The applying half of [`replay`].
struct Applier {
    auctions: BTreeMap<AuctionId, (Auction, Timestamp)>,
    settlements: Vec<RecordedSettlement>,
    requests: ReplayedRequests,
    registry: Registry,
    /// Entries of auctions that hold a sealed entry not opened yet, in journal order: they
    /// wait for the auction's key, so that each auction's entries apply in journal order.
    waiting: BTreeMap<AuctionId, Vec<(usize, Appended, Entry<RequestKey>)>>,
    /// Auctions whose key the journal holds.
    unsealed: std::collections::BTreeSet<AuctionId>,
}

fn apply_all(decoded: impl Iterator<Item = Decoded>, expected: usize) -> Result<Replayed, ReplayError> {
    let mut applier = Applier {
        auctions: BTreeMap::new(),
        settlements: Vec::new(),
        // Nearly every record is a client's request.
        requests: ReplayedRequests::with_capacity(expected),
        registry: Registry::default(),
        waiting: BTreeMap::new(),
        unsealed: Default::default(),
    };
    for (index, decoded) in decoded.enumerate() {
        let (position, entry) = decoded?;
        applier.take(index, position, entry)?;
    }
    let Applier { auctions, mut settlements, requests, registry, waiting, unsealed } = applier;
    settlements.sort_by_key(|s| s.sequence);
    let still_sealed = waiting.into_iter().map(|(id, entries)| (id, entries.len())).collect();
    Ok(Replayed { auctions, settlements, requests, registry, unsealed, still_sealed })
}

impl Applier {
    /// Takes the next entry in journal order: applies it, or keeps it behind its auction's
    /// sealed entries.
    fn take(&mut self, index: usize, position: Appended, entry: Entry<RequestKey>) -> Result<(), ReplayError> {
        let auction = match &entry {
            Entry::Sealed { auction, .. } => Some(*auction),
            Entry::Apply { auction, .. } | Entry::Tick { auction, .. } => {
                Some(*auction).filter(|a| self.waiting.contains_key(a))
            }
            _ => None,
        };
        if let Some(auction) = auction {
            self.waiting.entry(auction).or_default().push((index, position, entry));
            return Ok(());
        }
        self.apply(index, position, entry)
    }

    fn apply(&mut self, index: usize, position: Appended, entry: Entry<RequestKey>) -> Result<(), ReplayError> {
        let fail = |reason: String| ReplayError { index, reason };
        let requests = &mut self.requests;
        let (events, settled) = match entry {
            Entry::Create { spec, seed, origin } => {
                let (id, at) = (spec.id, spec.created_at);
                let seed = Entry::seed_of(&seed).map_err(fail)?;
                let auction = Auction::from_spec(*spec, seed).map_err(|e| fail(format!("{id}: {e}")))?;
                self.auctions.insert(id, (auction, at));
                if let Some(key) = origin {
                    requests.record(key.digest, key.fingerprint, Outcome::Auction(id));
                }
                return Ok(());
            }
            Entry::Apply { at, auction, command, origin, settled } => {
                let (a, last) = self.auctions.get_mut(&auction).ok_or_else(|| fail(format!("no auction {auction}")))?;
                *last = (*last).max(at);
                let applied = a
                    .apply_command(at, command)
                    .map_err(|e| fail(format!("{auction} refused a journaled command: {e}")))?;
                match applied {
                    // The hot path: a bid changes no phase and concludes nothing.
                    Applied::Bid(change) => {
                        if let Some(key) = origin {
                            let receipt = Receipt { bid: change.bid, pseudonym: change.pseudonym };
                            requests.record(key.digest, key.fingerprint, Outcome::Bid(receipt));
                        }
                        return Ok(());
                    }
                    Applied::Events(events) => {
                        if let Some(key) = origin {
                            requests.record(key.digest, key.fingerprint, Outcome::Auction(auction));
                        }
                        (events, settled)
                    }
                }
            }
            Entry::Tick { at, auction, settled } => {
                let (a, last) = self.auctions.get_mut(&auction).ok_or_else(|| fail(format!("no auction {auction}")))?;
                *last = (*last).max(at);
                (a.tick(at), settled)
            }
            Entry::Registry { change, origin, .. } => {
                let code = self
                    .registry
                    .apply(*change)
                    .map_err(|e| fail(format!("the registry refused a journaled change: {e}")))?
                    .code;
                if let Some(key) = origin {
                    requests.record(key.digest, key.fingerprint, Outcome::Registry(code));
                }
                return Ok(());
            }
            Entry::Sealed { auction, .. } => {
                return Err(fail(format!("a sealed entry of {auction} reached the core unopened")));
            }
            Entry::Unseal { auction, key } => {
                self.unsealed.insert(auction);
                let key = seal::AuctionKey(key);
                // Everything that waited for the key, in journal order.
                for (index, position, entry) in self.waiting.remove(&auction).unwrap_or_default() {
                    let entry = match entry {
                        Entry::Sealed { at, auction, nonce, ciphertext } => {
                            open_sealed(&key, at, auction, &nonce, &ciphertext)
                                .map_err(|e| ReplayError { index, reason: format!("record {}: {e}", position.seq) })?
                        }
                        entry => entry,
                    };
                    self.apply(index, position, entry)?;
                }
                return Ok(());
            }
        };
        for event in events {
            if let Event::Concluded(settlement) = event {
                let sequence = settled.ok_or_else(|| {
                    fail(format!(
                        "record {} concluded {} without a settlement number",
                        position.seq, settlement.auction_id
                    ))
                })?;
                let journal = JournalPosition::from(position);
                self.settlements.push(RecordedSettlement { sequence, journal, settlement: *settlement });
            }
        }
        Ok(())
    }
}

impl Exchange {
    /// Rebuilds the exchange from journal records, in order, then starts every auction's task
    /// (so it must run inside a tokio runtime).
    ///
    /// Every settlement the replay derives goes into the outbox; each recorder then receives
    /// what it does not hold yet, from its own cursor. A recorder holding more than the
    /// journal derives means the journal lost records: that refuses the start, naming both.
    ///
    /// Sealed bids are journaled under a key that lives as long as this process
    /// ([`seal::MasterKey::ephemeral`]): for tests and benchmarks. The server passes its
    /// master key to [`Exchange::recover_keyed`].
    pub async fn recover(
        policy: PricePolicy,
        clock: Arc<dyn Clock>,
        journal: Arc<Journal>,
        recordings: Vec<Recording>,
        records: &Recovered,
    ) -> Result<Exchange, ReplayError> {
        Exchange::recover_keyed(policy, clock, journal, recordings, records, seal::MasterKey::ephemeral()).await
    }

    /// [`Exchange::recover`] with the master key that opens the journal's sealed entries and
    /// seals new ones.
    pub async fn recover_keyed(
        policy: PricePolicy,
        clock: Arc<dyn Clock>,
        journal: Arc<Journal>,
        recordings: Vec<Recording>,
        records: &Recovered,
        master: seal::MasterKey,
    ) -> Result<Exchange, ReplayError> {
        let Replayed { auctions, settlements, requests, registry, unsealed, still_sealed: _ } =
            replay_with(records.entries(), Some(&master))?;
        // A crash between a sealed auction's conclusion and the entry with its key leaves the
        // key out of the journal: journal it now, so that the journal alone opens its bids.
        for (id, (auction, _)) in &auctions {
            if auction.phase().is_terminal() && actor::is_sealed(auction.spec().format) && !unsealed.contains(id) {
                let entry = Entry::Unseal { auction: *id, key: master.auction_key(*id).0 };
                let encoded = entry.encode().map_err(|e| ReplayError { index: 0, reason: e.to_string() })?;
                let unavailable = |e: crate::journal::JournalError| ReplayError {
                    index: records.records.len(),
                    reason: format!("journaling the key of {id}: {e}"),
                };
                journal.reserve().await.map_err(unavailable)?.submit(encoded).wait().await.map_err(unavailable)?;
            }
        }
        let derived = settlements.last().map_or(0, |s| s.sequence);
        for recording in &recordings {
            // A recorder that cannot answer now catches up later; one that answers must not be
            // ahead of the journal.
            if let Ok(cursor) = recording.recorder.cursor().await
                && cursor > derived
            {
                return Err(ReplayError {
                    index: records.records.len(),
                    reason: format!(
                        "recorder {} holds settlements up to {cursor}, but the journal derives only up to {derived}: \
                         journal records are missing (restore the journal, or the recorder's data does not belong to it)",
                        recording.recorder.name()
                    ),
                });
            }
        }
        let after_journal = auctions.keys().next_back().map_or(1, |id| id.get() + 1);
        let outbox = Arc::new(Outbox::new(settlements));
        let hub = Arc::new(SettlementHub::default());
        let health = Arc::new(Health::default());
        let (stop_delivery, stopping) = watch::channel(false);
        let delivery = outbox.deliver(recordings, Arc::clone(&hub), Arc::clone(&health), stopping);
        let exchange = Exchange {
            auctions: Arc::default(),
            lots: Arc::default(),
            health,
            next_settlement: Arc::new(std::sync::atomic::AtomicU64::new(derived + 1)),
            outbox,
            stop_delivery,
            phases: tokio::sync::broadcast::channel(4096).0,
            journal_failed: Arc::default(),
            next_auction: Mutex::new(after_journal),
            requests: Arc::new(requests.into_table()),
            policy,
            hub,
            clock,
            journal,
            registry: std::sync::RwLock::new(registry),
            eligibility: EligibilityPolicy::default(),
            signer: seal::ReceiptSigner::of(&master),
            master,
            tasks: Mutex::new(Vec::new()),
            delivery: Mutex::new(Vec::new()),
        };
        exchange.delivery.lock().unwrap_or_else(|p| p.into_inner()).extend(delivery);
        for (auction, last_stamp) in auctions.into_values() {
            let (id, key) = (auction.spec().id, (auction.spec().lot.pollutant, auction.spec().lot.id.clone()));
            let handle = exchange.spawn(auction, last_stamp);
            exchange.auctions.insert(id, handle);
            exchange.lots.insert(key, id);
        }
        Ok(exchange)
    }

    /// Starts an auction's task, under a supervisor that turns a panic into AUCTION_FAILED
    /// for the auction's callers and NOT_SERVING for the exchange, and returns its handle. The
    /// auction is reachable once its handle is registered.
    fn spawn(&self, auction: Auction, last_stamp: Timestamp) -> AuctionHandle {
        let id = auction.spec().id;
        let spec = Arc::new(auction.spec().clone());
        let snapshot = AuctionActor::snapshot_of(&auction, &spec);
        let (snapshot_tx, snapshot_rx) = watch::channel(snapshot);
        let (tx, rx) = mpsc::channel(AUCTION_QUEUE_DEPTH);
        let feed = Arc::new(feed::AuctionFeed::new(AuctionActor::state_of(&auction, last_stamp)));
        let shared = Shared {
            outbox: Arc::clone(&self.outbox),
            next_settlement: Arc::clone(&self.next_settlement),
            clock: Arc::clone(&self.clock),
            journal: Arc::clone(&self.journal),
            health: Arc::clone(&self.health),
            journal_failed: Arc::clone(&self.journal_failed),
            phases: self.phases.clone(),
            master: self.master.clone(),
        };
        let outlets = Outlets { snapshot: snapshot_tx, feed: Arc::clone(&feed) };
        let actor = AuctionActor::new(auction, last_stamp, rx, outlets, shared);
        let failed = Arc::new(std::sync::OnceLock::new());
        let task =
            tokio::spawn(supervise(id, tokio::spawn(actor.run()), Arc::clone(&failed), Arc::clone(&self.health)));
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        AuctionHandle { requests: tx, snapshot: snapshot_rx, feed, failed }
    }

    /// Why the exchange cannot serve right now (`None` while it can). The gRPC layer reports
    /// NOT_SERVING for the auction services while this is set.
    pub fn health(&self) -> watch::Receiver<Option<String>> {
        self.health.subscribe()
    }

    /// Every auction's phase changes from now on, once durable (a bounded broadcast: a
    /// receiver that falls behind misses changes and is told so).
    pub fn phase_changes(&self) -> tokio::sync::broadcast::Receiver<PhaseChange> {
        self.phases.subscribe()
    }

    /// The highest settlement number derived so far.
    pub fn last_settlement(&self) -> u64 {
        self.outbox.last()
    }

    /// How each recorder stands: its cursor, its lag behind the outbox, its last error.
    pub fn recorders(&self) -> Vec<RecorderStatus> {
        self.outbox.statuses()
    }

    /// Stops every auction task after the requests it holds, so that nothing writes to the
    /// journal any more. Requests after this answer SHUTTING_DOWN.
    pub async fn shutdown(&self) {
        self.auctions.clear();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        // Every auction has handed over its settlements; let the recorders take what they can
        // without waiting long for one that is down, then stop them.
        let outbox_last = self.outbox.last();
        let caught_up = async {
            while self
                .outbox
                .statuses()
                .iter()
                .any(|s| s.cursor.is_some_and(|c| c < outbox_last) && s.last_error.is_none())
            {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), caught_up).await;
        self.stop_delivery.send_replace(true);
        let delivery = std::mem::take(&mut *self.delivery.lock().unwrap_or_else(|p| p.into_inner()));
        for task in delivery {
            let _ = task.await;
        }
    }

    /// What signs receipts; its public key is the server's key.
    pub fn receipt_signer(&self) -> &seal::ReceiptSigner {
        &self.signer
    }

    /// Once auction `id` concluded: `bidder`'s bid `bid` as it stood in the final book, its
    /// index there, and every leaf of the book (by bid id). Another bidder's bid is
    /// BID_NOT_FOUND, exactly like a made-up id.
    pub async fn inclusion(
        &self,
        id: AuctionId,
        bidder: BidderId,
        bid: BidId,
    ) -> Result<(Receipt, usize, Vec<[u8; 32]>), ServiceError> {
        let book = self.final_book(id).await?;
        let found = book.iter().position(|(view, _, _)| view.id == bid && view.bidder == bidder);
        let Some(index) = found else { return Err(ServiceError::Engine(EngineError::BidNotFound)) };
        let (view, pseudonym, _) = book[index];
        Ok((Receipt { bid: view, pseudonym }, index, book.into_iter().map(|(_, _, leaf)| leaf).collect()))
    }

    /// Once auction `id` concluded: every bid of its final book (each bid's last version) in
    /// bid-id order, with its bidder's pseudonym (English auctions) and its leaf in the book's
    /// tree. Before the close, BIDS_SEALED.
    pub async fn final_book(&self, id: AuctionId) -> Result<Vec<(BidView, Option<u32>, [u8; 32])>, ServiceError> {
        self.ask(id, |reply| Request::Book { reply }).await?
    }

    pub fn policy(&self) -> &PricePolicy {
        &self.policy
    }

    pub fn hub(&self) -> &Arc<SettlementHub> {
        &self.hub
    }

    /// Runs a client's change at most once per (principal, request id). `run` does the
    /// change's synchronous part (handing it to its auction) before this returns, so changes
    /// submitted one after another reach their auctions in that order; the returned future
    /// only waits for the outcome. The rest of the change is spawned, so a caller who hangs up
    /// cannot leave the request half done: its outcome is still recorded for a retry.
    fn once<F, Fut>(&self, origin: Origin, run: F) -> Pending<Outcome>
    where
        F: FnOnce(Origin) -> Result<Fut, ServiceError>,
        Fut: Future<Output = Result<Outcome, ServiceError>> + Send + 'static,
    {
        let admission = match self.requests.admit(&origin) {
            Ok(admission) => admission,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        match admission {
            Admission::Done(outcome) => Box::pin(std::future::ready(Ok(outcome))),
            Admission::Wait(done) => Box::pin(requests::wait(done)),
            Admission::Run(ticket) => {
                let rest = match run(origin) {
                    Ok(rest) => rest,
                    Err(e) => {
                        ticket.settle(&Err(e.clone()));
                        return Box::pin(std::future::ready(Err(e)));
                    }
                };
                let task = tokio::spawn(async move {
                    let result = rest.await;
                    ticket.settle(&result);
                    result
                });
                Box::pin(async move { task.await.map_err(|_| ServiceError::ShuttingDown)? })
            }
        }
    }

    /// Creates an auction; returns once its creation is durable.
    pub async fn create_auction(
        &self,
        request: AuctionRequest,
        origin: Origin,
    ) -> Result<AuctionSnapshot, ServiceError> {
        let request_id = origin.request_id.clone();
        let id = match self.once(origin, |origin| self.create_now(request, origin)).await? {
            Outcome::Auction(id) => id,
            _ => return Err(ServiceError::RequestIdReused { request_id }),
        };
        let snapshot = self.get(id)?;
        let spec = &snapshot.spec;
        tracing::info!(auction = %spec.id, lot = %spec.lot.id, pollutant = %spec.lot.pollutant, "auction created");
        Ok(snapshot)
    }

    /// Numbering, the lot check, the journal's order and registration, as one step; the
    /// returned future waits until the creation is durable.
    fn create_now(
        &self,
        request: AuctionRequest,
        origin: Origin,
    ) -> Result<impl Future<Output = Result<Outcome, ServiceError>> + Send + 'static, ServiceError> {
        let mut next = self.next_auction.lock().unwrap_or_else(|p| p.into_inner());
        self.lot_is_free(request.lot.pollutant, &request.lot.id)?;
        let slot = self
            .journal
            .try_reserve()
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
            .ok_or_else(|| ServiceError::Unavailable("the journal queue is full; retry shortly".into()))?;
        let id = AuctionId::new(*next);
        let at = self.clock.now();
        // Policy's industry factor follows the seller's industry, as the registry has it now.
        let mut request = request;
        request.seller_section = self.registry_read().get(request.lot.seller).map(|e| e.industry.section());
        let auction = Auction::create(id, request, &self.policy, at, Seed(actor::random_bytes()))?;
        let entry = Entry::Create {
            spec: Box::new(auction.spec().clone()),
            seed: Entry::seed_hex(auction.seed()),
            origin: Some(origin),
        };
        let encoded = entry.encode().map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        *next += 1;
        let pending = slot.submit(encoded);
        // The lot is held from now on, so that no other auction offers it meanwhile; the
        // auction itself becomes reachable (listed, open to commands) once its creation is
        // durable. Its task starts now, so that its first change follows its creation in the
        // journal.
        let key = (auction.spec().lot.pollutant, auction.spec().lot.id.clone());
        self.lots.insert(key.clone(), id);
        let handle = self.spawn(auction, at);
        let (auctions, lots) = (Arc::clone(&self.auctions), Arc::clone(&self.lots));
        let (journal_failed, health) = (Arc::clone(&self.journal_failed), Arc::clone(&self.health));
        Ok(async move {
            match pending.wait().await {
                Ok(_) => {
                    auctions.insert(id, handle);
                    Ok(Outcome::Auction(id))
                }
                Err(e) => {
                    // Never durable, so never was: the lot is free again and the task, whose
                    // handle is dropped here, stops.
                    lots.remove_if(&key, |_, holder| *holder == id);
                    journal_failed.store(true, std::sync::atomic::Ordering::Release);
                    health.set("journal", format!("the journal failed: {e}"));
                    Err(ServiceError::Unavailable(e.to_string()))
                }
            }
        })
    }

    /// Whether a lot may be offered ([`lot_offerable`]), given the phase of its latest auction.
    fn lot_is_free(&self, pollutant: Pollutant, lot: &LotId) -> Result<(), ServiceError> {
        let latest = self.lots.get(&(pollutant, lot.clone())).map(|id| *id);
        let holder = latest.map(|auction| {
            // An auction whose task is gone still holds its lot.
            let phase = self.handle(auction).map_or(Phase::Open, |h| h.snapshot.borrow().phase);
            (auction, phase)
        });
        Ok(lot_offerable(holder)?)
    }

    fn handle(&self, id: AuctionId) -> Result<AuctionHandle, ServiceError> {
        self.serving()?;
        self.auctions.get(&id).map(|h| h.clone()).ok_or(ServiceError::AuctionNotFound(id))
    }

    /// UNAVAILABLE once the journal failed: memory may hold changes the journal does not.
    fn serving(&self) -> Result<(), ServiceError> {
        if self.journal_failed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ServiceError::Unavailable(
                "the journal failed; nothing is answered until the server restarts".into(),
            ));
        }
        Ok(())
    }

    /// Hands a request to the auction's task without waiting for room in its queue.
    fn send(&self, id: AuctionId, request: Request) -> Result<AuctionHandle, ServiceError> {
        let handle = self.handle(id)?;
        handle.requests.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ServiceError::Busy(id),
            mpsc::error::TrySendError::Closed(_) => handle.gone(id),
        })?;
        Ok(handle)
    }

    async fn ask<T>(&self, id: AuctionId, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ServiceError> {
        let (tx, rx) = oneshot::channel();
        let handle = self.send(id, make(tx))?;
        rx.await.map_err(|_| handle.gone(id))
    }

    /// Applies a client's command to an auction, at most once per request id.
    /// Hands a client's command to its auction, at most once per request id; the future
    /// waits for the outcome.
    fn command(&self, id: AuctionId, command: Command, origin: Origin) -> Pending<Outcome> {
        let is_bid = command.is_bid();
        let request_id = origin.request_id.clone();
        let outcome = self.once(origin, |origin| {
            let (reply, answer) = oneshot::channel();
            let handle = self.send(id, Request::Apply { command, origin, reply })?;
            Ok(async move {
                match answer.await.map_err(|_| handle.gone(id))?? {
                    Applied::Bid(change) => Ok(Outcome::Bid(Receipt { bid: change.bid, pseudonym: change.pseudonym })),
                    Applied::Events(_) => Ok(Outcome::Auction(id)),
                }
            })
        });
        Box::pin(async move {
            match (is_bid, outcome.await?) {
                (true, outcome @ Outcome::Bid(_)) | (false, outcome @ Outcome::Auction(_)) => Ok(outcome),
                // Fingerprints cover the method, so this is a request id reused across methods
                // whose fingerprints collided: refuse it like any other reuse.
                _ => Err(ServiceError::RequestIdReused { request_id }),
            }
        })
    }

    /// A bidder's command; its outcome is a receipt.
    fn bid_command(&self, id: AuctionId, command: Command, origin: Origin) -> Pending<Receipt> {
        let request_id = origin.request_id.clone();
        let outcome = self.command(id, command, origin);
        Box::pin(async move {
            match outcome.await? {
                Outcome::Bid(receipt) => Ok(receipt),
                _ => Err(ServiceError::RequestIdReused { request_id }),
            }
        })
    }

    pub fn get(&self, id: AuctionId) -> Result<AuctionSnapshot, ServiceError> {
        Ok(self.handle(id)?.snapshot.borrow().clone())
    }

    pub fn list(&self, filter: &AuctionFilter) -> Result<Vec<AuctionSnapshot>, ServiceError> {
        self.serving()?;
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
        Ok(out)
    }

    /// Applies an operator command and returns the auction as it is afterwards.
    pub async fn operate(
        &self,
        id: AuctionId,
        command: Command,
        origin: Origin,
    ) -> Result<AuctionSnapshot, ServiceError> {
        self.command(id, command, origin).await?;
        self.get(id)
    }

    /// Places a bid. An empty price or quantity is resolved by the auction (see
    /// [`Command::PlaceBid`]); the receipt carries what it resolved to.
    pub async fn place_bid(
        &self,
        id: AuctionId,
        bidder: BidderId,
        price: Option<Price>,
        quantity: Option<Quantity>,
        origin: Origin,
    ) -> Result<Receipt, ServiceError> {
        self.submit_bid(id, bidder, price, quantity, origin).await
    }

    /// [`Exchange::place_bid`] in two steps: the bid reaches its auction before this returns,
    /// and the future waits for its receipt. A stream of bids submits each in turn and awaits
    /// the receipts in order, so its bids are taken in the order sent and acknowledged as each
    /// becomes durable.
    pub fn submit_bid(
        &self,
        id: AuctionId,
        bidder: BidderId,
        price: Option<Price>,
        quantity: Option<Quantity>,
        origin: Origin,
    ) -> Pending<Receipt> {
        let eligibility = match self.eligibility_of(id, bidder) {
            Ok(facts) => facts,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let command = Command::PlaceBid { bidder, bid: actor::fresh_bid_id(), price, quantity, eligibility };
        self.bid_command(id, command, origin)
    }

    pub async fn revise_bid(
        &self,
        id: AuctionId,
        bidder: BidderId,
        bid: BidId,
        price: Option<Price>,
        quantity: Option<Quantity>,
        origin: Origin,
    ) -> Result<Receipt, ServiceError> {
        let eligibility = self.eligibility_of(id, bidder)?;
        self.bid_command(id, Command::ReviseBid { bidder, bid, price, quantity, eligibility }, origin).await
    }

    pub async fn withdraw_bid(
        &self,
        id: AuctionId,
        bidder: BidderId,
        bid: BidId,
        origin: Origin,
    ) -> Result<Receipt, ServiceError> {
        self.bid_command(id, Command::WithdrawBid { bidder, bid }, origin).await
    }

    /// Records a deposit received from `enterprise` for auction `id`, at most once per request
    /// id; returns all the enterprise has posted for the auction and what the auction requires.
    pub async fn record_deposit(
        &self,
        id: AuctionId,
        enterprise: BidderId,
        amount: Amount,
        origin: Origin,
    ) -> Result<(Amount, Option<Amount>), ServiceError> {
        self.command(id, Command::RecordDeposit { enterprise, amount }, origin).await?;
        let deposit = self.ask(id, |reply| Request::DepositOf { enterprise, reply }).await??;
        Ok((deposit, self.get(id)?.spec.deposit.map(|d| d.required)))
    }

    fn registry_read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The eligibility facts a bid by `bidder` in auction `id` carries: the registry and
    /// policy as they stand now. `None` when the exchange does not enforce eligibility.
    fn eligibility_of(&self, id: AuctionId, bidder: BidderId) -> Result<Option<Box<Eligibility>>, ServiceError> {
        if !self.eligibility.enforce {
            return Ok(None);
        }
        Ok(Some(Box::new(self.gather(id, bidder)?)))
    }

    fn gather(&self, id: AuctionId, bidder: BidderId) -> Result<Eligibility, ServiceError> {
        let spec = self.get(id)?.spec;
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        Ok(Eligibility::gather(bidder, registry.all(), &spec, &self.eligibility))
    }

    /// Every reason `bidder` may not bid in auction `id` now (empty: it may), whether or not
    /// the exchange enforces eligibility.
    pub fn check_eligibility(&self, id: AuctionId, bidder: BidderId) -> Result<Vec<EngineError>, ServiceError> {
        let facts = self.gather(id, bidder)?;
        let spec = self.get(id)?.spec;
        Ok(eligibility::check_all(&spec, &facts, self.clock.now()))
    }

    /// Sets who may bid (from the config), before the exchange serves.
    pub fn set_eligibility(&mut self, policy: EligibilityPolicy) {
        self.eligibility = policy;
    }

    pub fn eligibility_policy(&self) -> &EligibilityPolicy {
        &self.eligibility
    }

    /// Every registered enterprise, by credit code.
    pub fn enterprises(&self) -> Result<Vec<Enterprise>, ServiceError> {
        self.serving()?;
        Ok(self.registry.read().unwrap_or_else(|p| p.into_inner()).all().cloned().collect())
    }

    pub fn enterprise(&self, code: CreditCode) -> Result<Enterprise, ServiceError> {
        self.serving()?;
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        registry.get(code).cloned().ok_or(ServiceError::Registry(RegistryError::NotFound(code)))
    }

    /// Changes the registry, at most once per request id; returns once the change is
    /// durable, with the enterprise as it then stands. The change is checked, journaled and
    /// applied under the registry's write lock, so the journal holds changes in the order
    /// they were made; a bid gathered after it sees it, and journals what it saw.
    pub async fn change_registry(&self, change: RegistryChange, origin: Origin) -> Result<Enterprise, ServiceError> {
        let request_id = origin.request_id.clone();
        let code = match self.once(origin, |origin| self.registry_now(change, origin)).await? {
            Outcome::Registry(code) => code,
            _ => return Err(ServiceError::RequestIdReused { request_id }),
        };
        self.enterprise(code)
    }

    fn registry_now(
        &self,
        change: RegistryChange,
        origin: Origin,
    ) -> Result<impl Future<Output = Result<Outcome, ServiceError>> + Send + 'static, ServiceError> {
        self.serving()?;
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        registry.check(&change)?;
        let slot = self
            .journal
            .try_reserve()
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
            .ok_or_else(|| ServiceError::Unavailable("the journal queue is full; retry shortly".into()))?;
        let at = self.clock.now();
        let entry = Entry::Registry { at, change: Box::new(change.clone()), origin: Some(origin) };
        let encoded = entry.encode().map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let pending = slot.submit(encoded);
        let code = registry.apply(change)?.code;
        drop(registry);
        tracing::info!(enterprise = %code, "registry changed");
        let (journal_failed, health) = (Arc::clone(&self.journal_failed), Arc::clone(&self.health));
        Ok(async move {
            match pending.wait().await {
                Ok(_) => Ok(Outcome::Registry(code)),
                Err(e) => {
                    // Memory is now ahead of the journal: nothing more is answered.
                    journal_failed.store(true, std::sync::atomic::Ordering::Release);
                    health.set("journal", format!("the journal failed: {e}"));
                    Err(ServiceError::Unavailable(e.to_string()))
                }
            }
        })
    }

    pub async fn bids_of(&self, id: AuctionId, bidder: BidderId) -> Result<Vec<BidView>, ServiceError> {
        self.ask(id, |reply| Request::BidsOf { bidder, reply }).await?
    }

    /// Watches an auction's public changes after `after` (0: from its current state).
    pub fn watch(&self, id: AuctionId, after: u64) -> Result<feed::Watch, ServiceError> {
        Ok(self.handle(id)?.feed.watch(after))
    }

    pub async fn all_bids(&self, id: AuctionId) -> Result<Vec<BidView>, ServiceError> {
        self.ask(id, |reply| Request::AllBids { reply }).await?
    }

    /// The settlement of a concluded auction; NOT_SETTLED, with when bidding ends, before that.
    pub async fn settlement(&self, id: AuctionId) -> Result<Arc<RecordedSettlement>, ServiceError> {
        self.serving()?;
        if let Some(recorded) = self.hub.get(id) {
            return Ok(recorded);
        }
        let snapshot = self.get(id)?;
        if snapshot.phase.is_terminal() {
            // Concluded and durable; the local recorder is about to hold it. A recorder that
            // is down for long makes this UNAVAILABLE rather than wrong.
            return self.hub.wait_for(id, SHOW_PATIENCE).await.ok_or_else(|| {
                ServiceError::Unavailable(format!("the settlement of {id} is not recorded yet; retry shortly"))
            });
        }
        let closes_at = snapshot.ascending.map_or(snapshot.spec.closes_at, |view| view.deadline);
        Err(ServiceError::NotSettled { auction: id, closes_at })
    }
}

/// Waits for an auction's task. A task that panicked is a bug: its auction answers
/// AUCTION_FAILED from then on (a restart replays it from the journal), the exchange reports
/// NOT_SERVING, and the log names the auction. The panic's message is static text from the
/// code, never a bid.
async fn supervise(
    id: AuctionId,
    task: tokio::task::JoinHandle<()>,
    failed: Arc<std::sync::OnceLock<()>>,
    health: Arc<Health>,
) {
    let Err(error) = task.await else { return };
    if !error.is_panic() {
        return;
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    let _ = failed.set(());
    tracing::error!(auction = %id, panic = %message, "auction task panicked; the auction answers AUCTION_FAILED until a restart");
    health.set(&format!("auction {id}"), format!("auction {id} stopped on an internal error"));
}
