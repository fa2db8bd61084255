//! Where the journal's bytes go. The [`SegmentStore`] trait is the whole of what the journal asks
//! of storage; it knows nothing of records, sequence numbers, hashes or injected faults, which
//! belong to the writer and to recovery.

use std::io;
use std::path::PathBuf;

/// A place that holds the journal's segments, each named by the sequence number of its first
/// record, the one current segment the writer appends to, and the anchor: a few bytes kept
/// apart from the segments that name the last synced record, so that losing segments shows.
///
/// [`Journal`](super::Journal) reads a store through [`recover_store`](super::recover_store)
/// when it opens, then moves it into its writer thread, which is from then on its only user. The
/// writer calls at most one method at a time, at most one `write_at` and one `sync` per batch
/// (plus one more of each and a `start_segment` when the batch fills a segment), never one per
/// record.
///
/// # Contract
///
/// **Ordering.** Calls take effect in the order they are made. `write_at` writes into the
/// current segment: the one most recently started with `start_segment` or reopened with
/// `resume`. `read` returns every byte written so far, synced or not, as an operating system's
/// page cache would.
///
/// **Durability.** Bytes written are not durable until `sync` returns `Ok`: only then must they
/// survive a crash or a power loss. This is the journal's durability point; with
/// [`SyncPolicy::EveryBatch`](super::SyncPolicy::EveryBatch) no record is acknowledged before it.
/// `start_segment`, `cut` and `remove` are durable when they return `Ok` (the segment exists
/// with its header; the cut bytes read as zeros; the segment is gone). Bytes written after the
/// last `sync` may, after a crash, survive wholly, in part (a prefix of them: a torn write) or
/// not at all; recovery tells such a torn tail from damaged synced data.
///
/// **The anchor** is kept where losing the segments does not lose it too (for files, beside
/// the journal directory, not in it). `write_anchor` replaces it atomically and durably: when
/// it returns `Ok`, `read_anchor` returns the new bytes, also after a crash; if it fails or a
/// crash interrupts it, `read_anchor` returns either the old bytes or the new ones, never a
/// mix. The store never interprets them.
///
/// **Unwritten bytes.** A segment reads as zeros wherever nothing was written, and may end
/// early (reading shorter than its capacity): the journal's format treats both as the end of
/// the written data.
///
/// **Errors.** Any error means the operation may have happened in part (some bytes written, a
/// segment created without its header). After an error from `start_segment`, `write_at` or
/// `sync`, the writer calls nothing more on the store: it fails that batch and every later
/// append with [`JournalError::Failed`](super::JournalError::Failed), and only reopening the
/// journal (recovering what the store then holds) accepts appends again. So a store need not be
/// usable after an error. An error from `list`, `read`, `read_anchor`, `resume`, `cut` or
/// `remove` fails the open with [`JournalError::Io`](super::JournalError::Io). An error from
/// `write_anchor` after the open loses nothing (the old anchor still holds, naming fewer
/// records): the writer logs it, keeps appending and tries again at the next anchor point.
pub trait SegmentStore: Send + 'static {
    /// Where the store is, for messages (a directory).
    fn path(&self) -> PathBuf;

    /// Where one segment is, for messages and [`Recovered::truncated`](super::Recovered).
    fn segment_path(&self, first_seq: u64) -> PathBuf;

    /// The first sequence numbers of all segments, ascending.
    fn list(&self) -> io::Result<Vec<u64>>;

    /// All of one segment's bytes (see "Unwritten bytes").
    fn read(&self, first_seq: u64) -> io::Result<Vec<u8>>;

    /// Zeroes a segment from `from` to its end, durably: a torn tail cut off by recovery.
    fn cut(&mut self, first_seq: u64, from: u64) -> io::Result<()>;

    /// Deletes a segment, durably: one that followed a torn tail.
    fn remove(&mut self, first_seq: u64) -> io::Result<()>;

    /// Makes an existing segment current again, to append after its last record.
    fn resume(&mut self, first_seq: u64) -> io::Result<()>;

    /// Creates a segment that does not exist yet, with `header` at offset 0, sized for
    /// `capacity` bytes, and makes it current. Durable when it returns.
    fn start_segment(&mut self, first_seq: u64, header: &[u8], capacity: u64) -> io::Result<()>;

    /// Writes `bytes` at `offset` of the current segment; not durable until `sync`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;

    /// Makes everything written to the current segment durable: the durability point.
    fn sync(&mut self) -> io::Result<()>;

    /// Where the anchor is, for messages.
    fn anchor_path(&self) -> PathBuf;

    /// The anchor's bytes as last written; `None` if there is none.
    fn read_anchor(&self) -> io::Result<Option<Vec<u8>>>;

    /// Replaces the anchor, atomically; durable when it returns (see "The anchor").
    fn write_anchor(&mut self, bytes: &[u8]) -> io::Result<()>;
}

pub(super) fn no_current_segment() -> io::Error {
    io::Error::other("no segment started")
}
