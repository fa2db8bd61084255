//! The writer thread: group commit, batching and linger, sequence numbers, the hash chain,
//! segment rolls, the anchor, injected faults and the failure contract. It owns its
//! [`SegmentStore`] and is its only user; it never decides where bytes go, never calls the store
//! per record, and never anchors a record before the sync that made it durable returned.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use tokio::sync::mpsc;

use super::format::{self, Anchor, ChainHash, HEADER_LEN, RECORD_OVERHEAD};
use super::{Appended, Job, JournalError, Options, Recovered, SegmentStore, Stats, SyncPolicy};

pub(super) struct Writer<S> {
    store: S,
    /// Whether the store has a current segment (one was resumed or started).
    open: bool,
    /// Where the next batch goes in the current segment.
    offset: u64,
    next_seq: u64,
    prev: ChainHash,
    options: Options,
    /// Set by the first write or sync error; every later append fails with it.
    failed: Option<String>,
    stats: Arc<Stats>,
    /// The first sequence number of the current segment; `None` until the first roll of a
    /// fresh journal.
    segment: Option<u64>,
    /// The last record a store `sync` made durable (or the anchor's, until the first sync).
    synced: Option<Appended>,
    /// The anchor last written (or found at open); what the store holds.
    anchored: Option<Anchor>,
    /// When an anchor that lags behind `synced` must be written at the latest.
    anchor_due: Instant,
}

/// How long the writer waits for more records when the previous batch had several.
const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// At most this many records go into one batch, so that a flood of appenders still sees
/// steady acknowledgements.
const MAX_BATCH: usize = 8192;

impl<S: SegmentStore> Writer<S> {
    /// A writer that appends after what `recovered` found; `store` has already resumed its last
    /// segment, if any.
    /// `anchored` is what the store's anchor holds now.
    pub(super) fn new(
        store: S,
        recovered: &Recovered,
        anchored: Option<Anchor>,
        options: Options,
        stats: Arc<Stats>,
    ) -> Writer<S> {
        Writer {
            segment: recovered.tail.segment,
            synced: anchored.filter(|a| a.seq > 0).map(|a| Appended { seq: a.seq, hash: a.hash }),
            anchored,
            anchor_due: Instant::now() + options.anchor_every,
            store,
            open: recovered.tail.segment.is_some(),
            offset: recovered.tail.offset,
            next_seq: recovered.head.map_or(1, |h| h.seq + 1),
            prev: recovered.head.map_or([0; 32], |h| h.hash),
            options,
            failed: None,
            stats,
        }
    }

    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut buf = Vec::with_capacity(1 << 20);
        let mut concurrent = false;
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        loop {
            // With synced records not yet anchored, wait for the next append only until the
            // anchor is due, so that an idle journal is anchored too.
            let next = if self.lagging() {
                let Some(next) = recv_until(&mut jobs, &waker, self.anchor_due) else {
                    self.write_anchor();
                    continue;
                };
                next
            } else {
                jobs.blocking_recv()
            };
            let Some(first) = next else { break };
            batch.push(first);
            // Under concurrency, the appenders just answered are about to send their next
            // record; waiting a few microseconds for them lets them share this sync instead
            // of forming a batch of their own. A lone appender never waits.
            let linger_until = concurrent.then(|| std::time::Instant::now() + LINGER);
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) if linger_until.is_some_and(|t| std::time::Instant::now() < t) => std::thread::yield_now(),
                    Err(_) => break,
                }
            }
            concurrent = batch.len() > 1;
            self.commit(&mut batch, &mut buf);
        }
        // A clean close: every queued record was answered; anchor the last synced one.
        if self.lagging() {
            self.write_anchor();
        }
    }

    /// The anchor the store should hold now, if the journal has a segment.
    fn anchor_now(&self) -> Option<Anchor> {
        let (seq, hash) = self.synced.map_or((0, [0; 32]), |s| (s.seq, s.hash));
        self.segment.map(|segment| Anchor { seq, hash, segment })
    }

    /// Whether the store's anchor is behind (and the journal can still write one: after a
    /// failure it calls nothing more on the store).
    fn lagging(&self) -> bool {
        self.failed.is_none() && self.anchor_now().is_some_and(|a| Some(a) != self.anchored)
    }

    /// Writes the anchor; a failure is logged and the anchor written again when next due, since
    /// the old one still holds (it names fewer records, nothing is lost).
    fn write_anchor(&mut self) {
        self.anchor_due = Instant::now() + self.options.anchor_every;
        let Some(anchor) = self.anchor_now().filter(|a| Some(*a) != self.anchored) else { return };
        match self.store.write_anchor(&anchor.encode()) {
            Ok(()) => self.anchored = Some(anchor),
            Err(e) => tracing::error!(
                anchor = %self.store.anchor_path().display(),
                error = %e,
                "journal: could not write the anchor; the old one stands, retrying when next due"
            ),
        }
    }

    /// Writes and syncs one batch, then answers each of its appenders in order.
    fn commit(&mut self, batch: &mut Vec<Job>, buf: &mut Vec<u8>) {
        if let Some(why) = &self.failed {
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(JournalError::Failed(why.clone())));
            }
            return;
        }
        let (seq0, prev0) = (self.next_seq, self.prev);
        let mut results = Vec::with_capacity(batch.len());
        let outcome = self.write_batch(batch, buf, &mut results);
        match outcome {
            Ok(()) => {
                self.stats.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
                crate::metrics::journal_batch(batch.len());
                for (job, appended) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(Ok(appended));
                }
                // After a roll the anchor names the new segment at once; otherwise at most
                // once per `anchor_every`, not per batch.
                let rolled = self.anchored.map(|a| a.segment) != self.segment;
                if self.lagging() && (rolled || Instant::now() >= self.anchor_due) {
                    self.write_anchor();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal write failed; refusing further appends until restart");
                self.failed = Some(e.clone());
                (self.next_seq, self.prev) = (seq0, prev0);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(JournalError::Failed(e.clone())));
                }
            }
        }
    }

    fn write_batch(&mut self, batch: &[Job], buf: &mut Vec<u8>, results: &mut Vec<Appended>) -> Result<(), String> {
        buf.clear();
        let mut start = self.offset;
        for job in batch {
            let need = (RECORD_OVERHEAD + job.payload.len()) as u64;
            if !self.open || start + buf.len() as u64 + need > self.options.segment_bytes {
                // Flush what fits in this segment, then roll to a fresh one.
                self.write_and_sync(buf, start)?;
                buf.clear();
                self.roll()?;
                start = self.offset;
            }
            let hash = format::chain(&self.prev, self.next_seq, &job.payload);
            format::encode(buf, self.next_seq, &hash, &job.payload);
            results.push(Appended { seq: self.next_seq, hash });
            self.prev = hash;
            self.next_seq += 1;
        }
        self.write_and_sync(buf, start)?;
        self.offset = start + buf.len() as u64;
        Ok(())
    }

    /// One store write and, with [`SyncPolicy::EveryBatch`], one store sync; the injected
    /// faults act here, in front of the store.
    fn write_and_sync(&mut self, bytes: &[u8], at: u64) -> Result<(), String> {
        if !self.open || bytes.is_empty() {
            return Ok(());
        }
        if let Some(f) = &self.options.faults {
            let full_at = f.disk_full_at.load(Ordering::SeqCst);
            if f.fail_writes.load(Ordering::SeqCst) {
                return Err("write: injected I/O error".into());
            }
            if full_at > 0 && at + bytes.len() as u64 > full_at {
                return Err(format!("write: {}", std::io::Error::from_raw_os_error(28)));
            }
        }
        self.store.write_at(at, bytes).map_err(|e| format!("write: {e}"))?;
        if self.options.sync == SyncPolicy::EveryBatch {
            if self.options.faults.as_ref().is_some_and(|f| f.fail_syncs.load(Ordering::SeqCst)) {
                return Err("sync: injected I/O error".into());
            }
            let started = std::time::Instant::now();
            self.store.sync().map_err(|e| format!("sync: {e}"))?;
            crate::metrics::journal_fsync(started.elapsed());
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            // Every record encoded so far is written, and earlier segments were synced before
            // their roll (this is the only policy that syncs): all of them are durable now.
            self.synced = Some(Appended { seq: self.next_seq - 1, hash: self.prev });
        }
        Ok(())
    }

    /// Starts a new segment whose first record is `next_seq`.
    fn roll(&mut self) -> Result<(), String> {
        let header = format::header(self.next_seq);
        self.store
            .start_segment(self.next_seq, &header, self.options.segment_bytes)
            .map_err(|e| format!("{}: {e}", self.store.segment_path(self.next_seq).display()))?;
        self.open = true;
        self.offset = HEADER_LEN as u64;
        self.segment = Some(self.next_seq);
        Ok(())
    }
}

/// Wakes the writer thread parked in [`recv_until`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Waits for the next job until `deadline`: `None` when the deadline came first, `Some(None)`
/// when the queue is closed. The thread parks in between; `waker` (an [`Unpark`] of this
/// thread) is how the queue wakes it when a job comes.
fn recv_until(jobs: &mut mpsc::Receiver<Job>, waker: &Waker, deadline: Instant) -> Option<Option<Job>> {
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(job) = jobs.poll_recv(&mut cx) {
            return Some(job);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // Wakes early when a job arrives (or spuriously: the loop polls again).
        std::thread::park_timeout(deadline - now);
    }
}
