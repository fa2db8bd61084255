//! A [`SegmentStore`] in memory, for tests of the shell that should run the production journal
//! (the same writer, group commit, failure contract and recovery) without a directory. It keeps
//! two images of each segment, what was written and what was synced, so that a test can drop
//! the journal, simulate a power loss with [`MemoryStore::crash`], and recover what a disk would
//! have kept. Its anchor is kept apart from the segments, and replaced whole, so a simulated
//! power loss never touches it. It must never interpret the bytes it holds.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::file::segment_name;
use super::store::{SegmentStore, no_current_segment};

/// Segments as byte vectors. Clones share the same segments: keep one to recover from after the
/// journal that owned the other is dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// This is a `std::sync::Mutex` and not a Tokio mutex: it is only held for a copy, never
    /// across an `.await`. The writer takes it once per write and per sync, that is per batch.
    disk: Arc<Mutex<Disk>>,
    /// The segment this handle appends to; set by `start_segment` and `resume`, not shared.
    current: Option<u64>,
}

#[derive(Debug, Default)]
struct Disk {
    segments: BTreeMap<u64, Segment>,
    /// Replaced whole by `write_anchor`, which is at once durable: nothing to lose in a crash.
    anchor: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Segment {
    /// What reads see: every byte written, synced or not (the page cache).
    written: Vec<u8>,
    /// What survives a simulated power loss: the bytes as of the last sync.
    synced: Vec<u8>,
    /// The lowest offset written since the last sync, if any.
    dirty_from: Option<usize>,
}

impl Clone for MemoryStore {
    /// Another handle on the same segments, with no current segment of its own.
    fn clone(&self) -> MemoryStore {
        MemoryStore { disk: Arc::clone(&self.disk), current: None }
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic elsewhere while holding the lock leaves the bytes as consistent as a crash
        // would; tests that recover afterwards should still see them.
        self.disk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current(&mut self) -> io::Result<u64> {
        self.current.ok_or_else(no_current_segment)
    }

    /// Simulates a power loss: every segment goes back to what was last synced, plus the first
    /// `keep_unsynced` bytes written after that (0: a clean loss; more: a torn write). Call it
    /// with no journal open on this store.
    pub fn crash(&self, keep_unsynced: usize) {
        for segment in self.disk().segments.values_mut() {
            if let Some(from) = segment.dirty_from.take() {
                let end = (from + keep_unsynced).min(segment.written.len());
                if segment.synced.len() < end {
                    segment.synced.resize(end, 0);
                }
                segment.synced[from..end].copy_from_slice(&segment.written[from..end]);
            }
            segment.written.clone_from(&segment.synced);
        }
    }

    /// Every segment's first sequence number and bytes as a read would see them.
    pub fn segments(&self) -> Vec<(u64, Vec<u8>)> {
        self.disk().segments.iter().map(|(first, s)| (*first, s.written.clone())).collect()
    }

    /// Overwrites bytes of a segment in both images, as damage to the medium or an editor
    /// would: for tests of recovery. Panics if there is no such segment.
    pub fn damage(&self, first_seq: u64, offset: usize, bytes: &[u8]) {
        let mut disk = self.disk();
        let segment = disk.segments.get_mut(&first_seq).expect("no such segment");
        for image in [&mut segment.written, &mut segment.synced] {
            if image.len() < offset + bytes.len() {
                image.resize(offset + bytes.len(), 0);
            }
            image[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// Deletes the anchor, as an operator or an older version that kept none would leave the
    /// store: for tests of recovery.
    pub fn remove_anchor(&self) {
        self.disk().anchor = None;
    }
}

fn not_found(first_seq: u64) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no segment {}", segment_name(first_seq)))
}

impl SegmentStore for MemoryStore {
    fn path(&self) -> PathBuf {
        PathBuf::from("memory")
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.path().join(segment_name(first_seq))
    }

    fn list(&self) -> io::Result<Vec<u64>> {
        Ok(self.disk().segments.keys().copied().collect())
    }

    fn read(&self, first_seq: u64) -> io::Result<Vec<u8>> {
        self.disk().segments.get(&first_seq).map(|s| s.written.clone()).ok_or_else(|| not_found(first_seq))
    }

    fn cut(&mut self, first_seq: u64, from: u64) -> io::Result<()> {
        let mut disk = self.disk();
        let segment = disk.segments.get_mut(&first_seq).ok_or_else(|| not_found(first_seq))?;
        // Reads past the end are zeros, so truncating is zeroing.
        let from = from as usize;
        segment.written.truncate(from);
        segment.synced.truncate(from);
        segment.dirty_from = segment.dirty_from.filter(|d| *d < from);
        Ok(())
    }

    fn remove(&mut self, first_seq: u64) -> io::Result<()> {
        self.disk().segments.remove(&first_seq).map(drop).ok_or_else(|| not_found(first_seq))
    }

    fn resume(&mut self, first_seq: u64) -> io::Result<()> {
        if !self.disk().segments.contains_key(&first_seq) {
            return Err(not_found(first_seq));
        }
        self.current = Some(first_seq);
        Ok(())
    }

    fn start_segment(&mut self, first_seq: u64, header: &[u8], _capacity: u64) -> io::Result<()> {
        // Not preallocated: a segment grows as it is written, and reads past its end are zeros.
        let mut disk = self.disk();
        if disk.segments.contains_key(&first_seq) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", segment_name(first_seq))));
        }
        disk.segments
            .insert(first_seq, Segment { written: header.to_vec(), synced: header.to_vec(), dirty_from: None });
        drop(disk);
        self.current = Some(first_seq);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let first_seq = self.current()?;
        let mut disk = self.disk();
        let segment = disk.segments.get_mut(&first_seq).ok_or_else(|| not_found(first_seq))?;
        let (start, end) = (offset as usize, offset as usize + bytes.len());
        if segment.written.len() < end {
            segment.written.resize(end, 0);
        }
        segment.written[start..end].copy_from_slice(bytes);
        segment.dirty_from = Some(segment.dirty_from.map_or(start, |d| d.min(start)));
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let first_seq = self.current()?;
        let mut disk = self.disk();
        let segment = disk.segments.get_mut(&first_seq).ok_or_else(|| not_found(first_seq))?;
        if let Some(from) = segment.dirty_from.take() {
            let end = segment.written.len();
            if segment.synced.len() < end {
                segment.synced.resize(end, 0);
            }
            segment.synced[from..end].copy_from_slice(&segment.written[from..end]);
        }
        Ok(())
    }

    fn anchor_path(&self) -> PathBuf {
        self.path().join("anchor")
    }

    fn read_anchor(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.disk().anchor.clone())
    }

    fn write_anchor(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.disk().anchor = Some(bytes.to_vec());
        Ok(())
    }
}
