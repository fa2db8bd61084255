//! The write-ahead journal: every state-changing command is appended here, and synced, before
//! its client is acknowledged (durability issue). This module is the storage engine only:
//! record format, segments, group commit, verification and recovery. Wiring it in front of the
//! auction tasks, replay at start-up and idempotent request ids come next; see the issue notes.
//!
//! Group commit: appenders hand payloads to one writer thread through a bounded queue. The
//! thread takes everything queued, writes it as one batch, calls fdatasync once, then answers
//! every appender of the batch in order. More concurrent appenders make larger batches.
//!
//! Failure contract: if a write or a sync fails, the journal fails that whole batch and every
//! later append with [`JournalError::Failed`], until it is reopened. It never reports success
//! for a record it could not sync (with [`SyncPolicy::Always`]).
//!
//! Recovery contract ([`recover`]): records are checked for CRC, sequence and hash chain. A bad
//! record with nothing valid after it is a torn tail (a batch cut short by a crash): it and
//! everything after it are zeroed, with a warning. A bad record followed by any valid record
//! means data that was synced is damaged: recovery refuses, naming the segment, offset and
//! sequence number, rather than drop it.

pub mod format;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use format::{ChainHash, Decoded, HEADER_LEN, MAX_PAYLOAD, RECORD_OVERHEAD};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {reason}")]
    Io { path: String, reason: String },
    #[error(
        "journal segment {segment} offset {offset} (record {seq}): {reason}; synced data is damaged, refusing to start"
    )]
    Corrupt { segment: String, offset: u64, seq: u64, reason: String },
    #[error("the journal failed earlier ({0}); nothing more is accepted until restart")]
    Failed(String),
    #[error("a journal record may hold at most {MAX_PAYLOAD} bytes")]
    TooLarge,
    #[error("the journal is closed")]
    Closed,
}

/// Whether each batch is fdatasynced before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// The safe default: acknowledged means on disk.
    #[default]
    EveryBatch,
    /// For tests and benchmarks only: acknowledged means handed to the operating system.
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
}

impl Default for Options {
    fn default() -> Self {
        Options { segment_bytes: 64 << 20, sync: SyncPolicy::EveryBatch, queue: 65_536, faults: None }
    }
}

/// Failures to inject into the segment I/O, for tests of the failure contract.
#[derive(Debug, Default)]
pub struct Faults {
    pub fail_writes: AtomicBool,
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
    /// Set when a torn tail was cut off: the segment, offset and the sequence it would have had.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// Where the next record goes.
    tail: Tail,
}

#[derive(Debug, Clone)]
struct Tail {
    segment: Option<(PathBuf, u64)>,
    offset: u64,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> JournalError {
    JournalError::Io { path: path.display().to_string(), reason: e.to_string() }
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// Segment files in `dir`, in order of their first sequence number.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_error(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and checks every record in `dir`, cutting off a torn tail (see the module docs).
pub fn recover(dir: &Path) -> Result<Recovered, JournalError> {
    scan(dir, true)
}

/// Checks every record and the hash chain without changing anything: a torn tail is reported
/// in `truncated`, not cut off. This is what an auditor runs.
pub fn verify(dir: &Path) -> Result<Recovered, JournalError> {
    scan(dir, false)
}

fn scan(dir: &Path, repair: bool) -> Result<Recovered, JournalError> {
    let segs = segments(dir)?;
    let mut records = Vec::new();
    let mut buffers = Vec::new();
    let mut prev: ChainHash = [0; 32];
    let mut head = None;
    let mut tail = Tail { segment: None, offset: HEADER_LEN as u64 };
    let mut truncated = None;
    for (index, (first, path)) in segs.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
        let name = path.display().to_string();
        let expected_first = head.map_or(1, |h: Appended| h.seq + 1);
        if format::parse_header(&bytes) != Some(*first) || *first != expected_first {
            if segs[index..].iter().all(|(_, p)| std::fs::read(p).map(|b| b.iter().all(|x| *x == 0)).unwrap_or(false)) {
                break;
            }
            return Err(JournalError::Corrupt {
                segment: name,
                offset: 0,
                seq: expected_first,
                reason: "bad segment header".into(),
            });
        }
        let mut offset = HEADER_LEN;
        tail = Tail { segment: Some((path.clone(), *first)), offset: offset as u64 };
        loop {
            let seq = head.map_or(1, |h: Appended| h.seq + 1);
            match format::decode(&bytes[offset..]) {
                Decoded::End => break,
                Decoded::Record { seq: got, hash, payload, len }
                    if got == seq && hash == format::chain(&prev, seq, payload) =>
                {
                    let start = payload.as_ptr() as usize - bytes.as_ptr() as usize;
                    let at = Appended { seq, hash };
                    records.push(Record { at, segment: buffers.len(), start, end: start + payload.len() });
                    prev = hash;
                    head = Some(Appended { seq, hash });
                    offset += len;
                    tail.offset = offset as u64;
                }
                Decoded::Record { .. } => {
                    // A record that is whole but out of sequence or off the chain was not torn
                    // by a crash: something changed it.
                    return Err(JournalError::Corrupt {
                        segment: name,
                        offset: offset as u64,
                        seq,
                        reason: "sequence or hash chain broken".into(),
                    });
                }
                Decoded::Bad(reason) => {
                    if valid_record_after(&bytes[offset + 1..], seq) || later_segments_hold_records(&segs[index + 1..])
                    {
                        return Err(JournalError::Corrupt {
                            segment: name,
                            offset: offset as u64,
                            seq,
                            reason: reason.into(),
                        });
                    }
                    if repair {
                        tracing::warn!(segment = %name, offset, seq, reason, "journal: cutting off a torn tail");
                        zero_from(path, offset as u64, bytes.len() as u64)?;
                        for (_, later) in &segs[index + 1..] {
                            std::fs::remove_file(later).map_err(|e| io_error(later, e))?;
                        }
                    }
                    truncated = Some((path.clone(), offset as u64, seq));
                    buffers.push(bytes);
                    return Ok(Recovered { records, segments: buffers, head, truncated, tail });
                }
            }
        }
        buffers.push(bytes);
    }
    Ok(Recovered { records, segments: buffers, head, truncated, tail })
}

/// Whether any record with a sequence number from `seq` on starts anywhere in `bytes`.
fn valid_record_after(bytes: &[u8], seq: u64) -> bool {
    if bytes.iter().all(|b| *b == 0) {
        return false;
    }
    (0..bytes.len().saturating_sub(RECORD_OVERHEAD)).any(|p| {
        let s = u64::from_le_bytes(bytes[p + 8..p + 16].try_into().unwrap());
        (seq..seq + 1_000_000).contains(&s) && matches!(format::decode(&bytes[p..]), Decoded::Record { .. })
    })
}

fn later_segments_hold_records(segs: &[(u64, PathBuf)]) -> bool {
    segs.iter().any(|(_, p)| {
        std::fs::read(p)
            .is_ok_and(|b| b.len() > HEADER_LEN && matches!(format::decode(&b[HEADER_LEN..]), Decoded::Record { .. }))
    })
}

fn zero_from(path: &Path, from: u64, to: u64) -> Result<(), JournalError> {
    let file = OpenOptions::new().write(true).open(path).map_err(|e| io_error(path, e))?;
    let zeros = vec![0u8; (to - from) as usize];
    file.write_all_at(&zeros, from).map_err(|e| io_error(path, e))?;
    file.sync_data().map_err(|e| io_error(path, e))
}

pub struct Job {
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Appended, JournalError>>,
}

/// A journal on local files, with one writer thread doing group commit.
pub struct FileJournal {
    jobs: mpsc::Sender<Job>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Statistics the writer keeps, for benchmarks: records and syncs so far.
#[derive(Debug, Default)]
pub struct Stats {
    pub records: AtomicU64,
    pub syncs: AtomicU64,
}

impl FileJournal {
    /// Recovers `dir` and opens it for appending after its last valid record.
    pub fn open(dir: &Path, options: Options) -> Result<(FileJournal, Recovered, Arc<Stats>), JournalError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let recovered = recover(dir)?;
        let stats = Arc::new(Stats::default());
        let mut writer = Writer {
            dir: dir.to_owned(),
            file: None,
            offset: recovered.tail.offset,
            next_seq: recovered.head.map_or(1, |h| h.seq + 1),
            prev: recovered.head.map_or([0; 32], |h| h.hash),
            options: options.clone(),
            failed: None,
            stats: Arc::clone(&stats),
        };
        if let Some((path, _)) = &recovered.tail.segment {
            writer.file = Some(OpenOptions::new().write(true).open(path).map_err(|e| io_error(path, e))?);
        }
        let (jobs, rx) = mpsc::channel(options.queue.max(1));
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_error(dir, e))?;
        Ok((FileJournal { jobs, writer: Some(thread) }, recovered, stats))
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

    /// As [`FileJournal::reserve`], without waiting: `None` when the queue is full.
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

/// A queued record on its way to disk.
pub struct Pending(oneshot::Receiver<Result<Appended, JournalError>>);

impl Pending {
    pub async fn wait(self) -> Result<Appended, JournalError> {
        self.0.await.map_err(|_| JournalError::Closed)?
    }
}

impl Drop for FileJournal {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds and stop.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    dir: PathBuf,
    file: Option<File>,
    offset: u64,
    next_seq: u64,
    prev: ChainHash,
    options: Options,
    /// Set by the first write or sync error; every later append fails with it.
    failed: Option<String>,
    stats: Arc<Stats>,
}

/// How long the writer waits for more records when the previous batch had several.
const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// At most this many records go into one batch, so that a flood of appenders still sees
/// steady acknowledgements.
const MAX_BATCH: usize = 8192;

impl Writer {
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut buf = Vec::with_capacity(1 << 20);
        let mut concurrent = false;
        while let Some(first) = jobs.blocking_recv() {
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
                for (job, appended) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(Ok(appended));
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
            if self.file.is_none() || start + buf.len() as u64 + need > self.options.segment_bytes {
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

    fn write_and_sync(&mut self, bytes: &[u8], at: u64) -> Result<(), String> {
        let Some(file) = &self.file else { return Ok(()) };
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(f) = &self.options.faults {
            let full_at = f.disk_full_at.load(Ordering::SeqCst);
            if f.fail_writes.load(Ordering::SeqCst) {
                return Err("write: injected I/O error".into());
            }
            if full_at > 0 && at + bytes.len() as u64 > full_at {
                return Err(io::Error::from_raw_os_error(28).to_string());
            }
        }
        file.write_all_at(bytes, at).map_err(|e| format!("write: {e}"))?;
        if self.options.sync == SyncPolicy::EveryBatch {
            if self.options.faults.as_ref().is_some_and(|f| f.fail_syncs.load(Ordering::SeqCst)) {
                return Err("fdatasync: injected I/O error".into());
            }
            file.sync_data().map_err(|e| format!("fdatasync: {e}"))?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Starts a new preallocated segment whose first record is `next_seq`.
    fn roll(&mut self) -> Result<(), String> {
        let path = self.dir.join(segment_name(self.next_seq));
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, self.options.segment_bytes).is_err() {
            // Some filesystems cannot preallocate; a sparse file works, its syncs are slower.
            file.set_len(self.options.segment_bytes).map_err(|e| format!("{}: preallocate: {e}", path.display()))?;
        }
        file.write_all_at(&format::header(self.next_seq), 0).map_err(|e| format!("{}: {e}", path.display()))?;
        file.sync_all().map_err(|e| format!("{}: {e}", path.display()))?;
        // The new file's name must be durable too.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        self.file = Some(file);
        self.offset = HEADER_LEN as u64;
        Ok(())
    }
}
