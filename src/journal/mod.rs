//! The write-ahead journal: every state-changing command is appended here, and synced, before
//! its client is acknowledged. This module is the storage engine only: record format
//! ([`format`](mod@format)), group commit, the failure contract, verification and recovery. It never sees
//! what a payload means (the service encodes and replays entries).
//!
//! [`Journal`] is one type whatever holds the bytes: the writer and recovery talk to storage
//! only through the [`SegmentStore`] trait, whose contract (ordering, durability point, errors)
//! is written on it. [`FileStore`] is production, preallocated segment files in a directory
//! ([`Journal::open`]); [`MemoryStore`] keeps segments in memory with what was synced apart from
//! what was only written, so tests run the same writer and recovery, and can simulate a power
//! loss ([`Journal::open_store`], [`Journal::memory`]).
//!
//! Group commit: appenders take a place in a bounded queue ([`Journal::reserve`]) and hand
//! payloads to one writer thread. The thread takes everything queued, numbers and chains the
//! records, writes them as one batch, syncs once, then answers every appender of the batch in
//! order. More concurrent appenders make larger batches. The store is called once per batch,
//! never per record.
//!
//! Failure contract: if a write or a sync fails, the journal fails that whole batch and every
//! later append with [`JournalError::Failed`], and calls nothing more on the store, until it is
//! reopened. It never reports success for a record it could not sync (with
//! [`SyncPolicy::EveryBatch`]). [`Faults`] injects write, sync and disk-full errors in the
//! writer, in front of whichever store, so both stores fail the same way.
//!
//! Recovery contract ([`recover`], [`recover_store`]): records are checked for CRC, sequence and
//! hash chain. A bad record with nothing valid after it is a torn tail (a batch cut short by a
//! crash): it and everything after it are zeroed, with a warning; so are trailing segments
//! without even a header (a crash while one was being started). A bad record followed by any
//! valid record means data that was synced is damaged: recovery refuses, naming the segment,
//! offset and sequence number, rather than drop it. [`verify`] checks the same way and changes
//! nothing.
//!
//! The anchor: a journal whose last segments were deleted, emptied or zero-filled, or whose
//! whole directory is gone, reads as a shorter journal with a clean end; its records alone
//! cannot show the loss. So the store keeps an anchor apart from the segments
//! ([`SegmentStore::write_anchor`]; for files `<data-dir>/journal.anchor`, beside the journal
//! directory, see [`anchor_path`]), naming the last synced record's sequence number and chain
//! hash ([`Anchor`]). The writer thread writes it, after a sync and never before it, whenever it
//! has rolled to a new segment, at most [`Options::anchor_every`] (1 s) after a sync that it
//! does not yet cover (also when no more appends come), and when the journal is closed (dropped,
//! after the writer drained its queue). Recovery and [`verify`] refuse, with
//! [`JournalError::Missing`] naming the gap, a journal that holds fewer records than the anchor
//! names, or another hash at its sequence number, before changing anything. The window: records
//! synced in the last `anchor_every` before a crash are not yet anchored, and losing them along
//! with their segment goes unnoticed; a torn tail is never anchored (it was not synced), so it
//! is still cut off with a warning. A missing anchor with an empty journal is a fresh start; with
//! records (a journal from before anchors) it is accepted with a warning and anchored at once.
//! With [`SyncPolicy::Never`] nothing new is synced, so the anchor does not advance.

mod file;
pub mod format;
mod memory;
mod recovery;
mod store;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use format::{ChainHash, MAX_PAYLOAD};

pub use file::{FileStore, anchor_path};
pub use format::Anchor;
pub use memory::MemoryStore;
pub use recovery::{recover, recover_store, verify, verify_store};
pub use store::SegmentStore;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {reason}")]
    Io { path: String, reason: String },
    #[error(
        "journal segment {segment} offset {offset} (record {seq}): {reason}; synced data is damaged, refusing to start"
    )]
    Corrupt { segment: String, offset: u64, seq: u64, reason: String },
    /// The journal holds less than its anchor says was synced: segments were lost.
    #[error(
        "journal anchor {anchor} says records up to {anchored_seq} (hash {anchored_hash}) were synced, \
         but the journal holds records up to {found_seq}: {reason}; refusing to start without them"
    )]
    Missing { anchor: String, anchored_seq: u64, anchored_hash: String, found_seq: u64, reason: String },
    /// The anchor itself cannot be read as one.
    #[error(
        "journal anchor {path}: {reason}; refusing to start, since it is what shows whether synced \
         records are missing (remove it only to accept the journal as it is)"
    )]
    BadAnchor { path: String, reason: String },
    #[error("the journal failed earlier ({0}); nothing more is accepted until restart")]
    Failed(String),
    #[error("a journal record may hold at most {MAX_PAYLOAD} bytes")]
    TooLarge,
    #[error("the journal is closed")]
    Closed,
}

/// Whether each batch is synced before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// The safe default: acknowledged means durable ([`SegmentStore::sync`] returned).
    #[default]
    EveryBatch,
    /// For tests and benchmarks only: acknowledged means handed to the store (for files, to
    /// the operating system).
    Never,
}

#[derive(Clone)]
pub struct Options {
    pub segment_bytes: u64,
    pub sync: SyncPolicy,
    /// How many appends may wait for the writer.
    pub queue: usize,
    /// Fault injection for tests; `None` in production.
    pub faults: Option<Arc<Faults>>,
    /// How long a synced record may go unanchored (besides at rolls and on close, the writer
    /// writes the anchor at most this long after a sync it does not cover yet): the window in
    /// which losing synced records goes unnoticed. Zero anchors after every batch.
    pub anchor_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 << 20,
            sync: SyncPolicy::EveryBatch,
            queue: 65_536,
            faults: None,
            anchor_every: Duration::from_secs(1),
        }
    }
}

/// Failures to inject, for tests of the failure contract. The writer checks them just before it
/// calls the store, so they act the same on every store; the test that holds the `Arc` may
/// change them at any time.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every write fails (before any byte is written).
    pub fail_writes: AtomicBool,
    /// Every sync fails (after the batch was written, so its bytes are written but not durable).
    pub fail_syncs: AtomicBool,
    /// Writes reaching past this many bytes of a segment fail with ENOSPC (0: never).
    pub disk_full_at: AtomicU64,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The chain hash of this record: the journal's head hash once it is the last.
    pub hash: ChainHash,
}

/// One record read back from the journal: where it is, and where its payload sits in the
/// segment read into memory ([`Recovered::payload`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number and chain hash.
    pub at: Appended,
    segment: usize,
    start: usize,
    end: usize,
}

impl Recovered {
    pub fn payload(&self, record: &Record) -> &[u8] {
        &self.segments[record.segment][record.start..record.end]
    }

    /// Every valid record's position and payload, in order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (Appended, &[u8])> + Send + '_ {
        self.records.iter().map(|r| (r.at, self.payload(r)))
    }
}

/// What [`recover`] found.
#[derive(Debug)]
pub struct Recovered {
    /// Every valid record, in order.
    pub records: Vec<Record>,
    /// The segments as read, which the records' payloads point into (no copy per record).
    segments: Vec<Vec<u8>>,
    pub head: Option<Appended>,
    /// Set when a torn tail was found (and, by [`recover`], cut off): the segment
    /// ([`SegmentStore::segment_path`]), the offset, and the sequence number it would have had.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// The anchor as it was found, which the records were checked against; `None` when there
    /// was none (a fresh journal, or one from before anchors).
    pub anchor: Option<Anchor>,
    /// Where the next record goes.
    tail: Tail,
}

#[derive(Debug, Clone)]
struct Tail {
    /// The first sequence number of the last segment, if there is one.
    segment: Option<u64>,
    offset: u64,
}

pub struct Job {
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Appended, JournalError>>,
}

/// The journal: a queue in front of one writer thread doing group commit into a
/// [`SegmentStore`] it owns.
pub struct Journal {
    jobs: mpsc::Sender<Job>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// The name from before the store was split out; `src/service` and `src/server.rs` still use it.
pub type FileJournal = Journal;

/// Statistics the writer keeps, for benchmarks: records and syncs so far.
#[derive(Debug, Default)]
pub struct Stats {
    pub records: AtomicU64,
    pub syncs: AtomicU64,
}

impl Journal {
    /// Recovers the segment files in `dir` (creating it if missing) and opens it for appending
    /// after its last valid record. The anchor is the file [`anchor_path`]`(dir)`, beside `dir`.
    pub fn open(dir: &Path, options: Options) -> Result<(Journal, Recovered, Arc<Stats>), JournalError> {
        crate::private::create_dir(dir)
            .map_err(|e| JournalError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
        Journal::open_store(FileStore::new(dir), options)
    }

    /// A journal in a fresh [`MemoryStore`]. To recover it after a simulated crash, keep a
    /// clone of the store and use [`Journal::open_store`] instead.
    pub fn memory(options: Options) -> Result<(Journal, Recovered, Arc<Stats>), JournalError> {
        Journal::open_store(MemoryStore::new(), options)
    }

    /// Recovers `store` ([`recover_store`]) and opens it for appending after its last valid
    /// record; the writer thread owns the store from then on. Refuses with
    /// [`JournalError::Missing`] when the store holds less than its anchor says was synced.
    pub fn open_store<S: SegmentStore>(
        mut store: S,
        options: Options,
    ) -> Result<(Journal, Recovered, Arc<Stats>), JournalError> {
        let recovered = recover_store(&mut store)?;
        let stats = Arc::new(Stats::default());
        let mut anchor = recovered.anchor;
        if let Some(first) = recovered.tail.segment {
            let path = store.segment_path(first).display().to_string();
            let io = |e: std::io::Error| JournalError::Io { path: path.clone(), reason: e.to_string() };
            store.resume(first).map_err(io)?;
            if let (None, Some(head)) = (anchor, recovered.head) {
                // A journal from before anchors: anchor what it holds now, once it is synced
                // (its last segment may hold records a crash left unsynced).
                store.sync().map_err(io)?;
                let new = Anchor { seq: head.seq, hash: head.hash, segment: first };
                store.write_anchor(&new.encode()).map_err(|e| JournalError::Io {
                    path: store.anchor_path().display().to_string(),
                    reason: e.to_string(),
                })?;
                anchor = Some(new);
            }
        }
        let path = store.path();
        let writer = writer::Writer::new(store, &recovered, anchor, options.clone(), Arc::clone(&stats));
        let (jobs, rx) = mpsc::channel(options.queue.max(1));
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        Ok((Journal { jobs, writer: Some(thread) }, recovered, stats))
    }

    /// Appends one record; resolves once it is durable (or the journal has failed).
    pub async fn append(&self, payload: Vec<u8>) -> Result<Appended, JournalError> {
        self.reserve().await?.submit(payload).wait().await
    }

    /// A place in the writer's queue. Taking it before changing state means the change can
    /// always be journaled, and in the order the changes were made.
    pub async fn reserve(&self) -> Result<Reservation<'_>, JournalError> {
        self.jobs.reserve().await.map(Reservation).map_err(|_| JournalError::Closed)
    }

    /// As [`Journal::reserve`], without waiting: `None` when the queue is full.
    pub fn try_reserve(&self) -> Result<Option<Reservation<'_>>, JournalError> {
        match self.jobs.try_reserve() {
            Ok(permit) => Ok(Some(Reservation(permit))),
            Err(mpsc::error::TrySendError::Full(())) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(())) => Err(JournalError::Closed),
        }
    }
}

/// A reserved place in the journal's queue.
pub struct Reservation<'a>(mpsc::Permit<'a, Job>);

impl Reservation<'_> {
    /// Queues the record; the returned [`Pending`] resolves when it is durable.
    pub fn submit(self, payload: Vec<u8>) -> Pending {
        let (reply, answer) = oneshot::channel();
        if payload.len() > MAX_PAYLOAD {
            let _ = reply.send(Err(JournalError::TooLarge));
        } else {
            self.0.send(Job { payload, reply });
        }
        Pending(answer)
    }
}

/// A queued record on its way to the store.
pub struct Pending(oneshot::Receiver<Result<Appended, JournalError>>);

impl Pending {
    pub async fn wait(self) -> Result<Appended, JournalError> {
        self.await
    }
}

/// A pending record is itself a future, so a pipelined appender can hold many in a queue and
/// await the oldest by reference.
impl std::future::Future for Pending {
    type Output = Result<Appended, JournalError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|answer| answer.map_err(|_| JournalError::Closed)?)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds, anchor it and stop; joining it
        // means the store is released (and a memory store's bytes and anchor final) when the
        // drop returns.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}
