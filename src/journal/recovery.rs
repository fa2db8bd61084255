//! Reading a journal back: every record checked for CRC, sequence and hash chain, through the
//! [`SegmentStore`] trait, so that files and memory recover by the same code. Scanning only
//! reads; cutting off a torn tail is a separate step that only [`recover_store`] takes.

use std::path::Path;

use super::format::{self, ChainHash, Decoded, HEADER_LEN, RECORD_OVERHEAD};
use super::{Appended, FileStore, JournalError, Record, Recovered, SegmentStore, Tail};

fn io_error(path: &Path, e: impl std::fmt::Display) -> JournalError {
    JournalError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// Reads and checks every record in `dir`, cutting off a torn tail (see the module docs).
pub fn recover(dir: &Path) -> Result<Recovered, JournalError> {
    recover_store(&mut FileStore::new(dir))
}

/// Checks every record and the hash chain without changing anything: a torn tail is reported
/// in `truncated`, not cut off. This is what an auditor runs.
pub fn verify(dir: &Path) -> Result<Recovered, JournalError> {
    verify_store(&FileStore::new(dir))
}

/// As [`recover`], for any store.
pub fn recover_store<S: SegmentStore + ?Sized>(store: &mut S) -> Result<Recovered, JournalError> {
    let (recovered, repair) = scan(store)?;
    match repair {
        Repair::None => {}
        Repair::Empty(empty) => {
            for first in empty {
                let path = store.segment_path(first);
                tracing::warn!(segment = %path.display(), "journal: removing an empty segment (a crash during a roll)");
                store.remove(first).map_err(|e| io_error(&path, e))?;
            }
        }
        Repair::Torn(torn) => {
            let (path, offset, seq, reason) = (store.segment_path(torn.segment), torn.offset, torn.seq, torn.reason);
            tracing::warn!(segment = %path.display(), offset, seq, reason, "journal: cutting off a torn tail");
            store.cut(torn.segment, offset).map_err(|e| io_error(&path, e))?;
            for later in torn.later {
                store.remove(later).map_err(|e| io_error(&store.segment_path(later), e))?;
            }
        }
    }
    Ok(recovered)
}

/// As [`verify`], for any store.
pub fn verify_store<S: SegmentStore + ?Sized>(store: &S) -> Result<Recovered, JournalError> {
    scan(store).map(|(recovered, _)| recovered)
}

/// What [`recover_store`] must change after a [`scan`].
enum Repair {
    None,
    /// Segments at the end that hold nothing, not even a header (a crash while a segment was
    /// being started): they would stand in the way of the next roll, or, once a later segment
    /// exists, look like damage.
    Empty(Vec<u64>),
    Torn(Torn),
}

/// A torn tail: where to cut, and the segments after it to delete.
struct Torn {
    segment: u64,
    offset: u64,
    seq: u64,
    reason: &'static str,
    later: Vec<u64>,
}

fn scan<S: SegmentStore + ?Sized>(store: &S) -> Result<(Recovered, Repair), JournalError> {
    let segs = store.list().map_err(|e| io_error(&store.path(), e))?;
    let read = |first: u64| store.read(first).map_err(|e| io_error(&store.segment_path(first), e));
    let mut records = Vec::new();
    let mut buffers = Vec::new();
    let mut prev: ChainHash = [0; 32];
    let mut head = None;
    let mut tail = Tail { segment: None, offset: HEADER_LEN as u64 };
    let mut repair = Repair::None;
    for (index, &first) in segs.iter().enumerate() {
        let bytes = read(first)?;
        let path = store.segment_path(first);
        let name = path.display().to_string();
        let expected_first = head.map_or(1, |h: Appended| h.seq + 1);
        if format::parse_header(&bytes) != Some(first) || first != expected_first {
            if segs[index..].iter().all(|s| store.read(*s).is_ok_and(|b| b.iter().all(|x| *x == 0))) {
                repair = Repair::Empty(segs[index..].to_vec());
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
        tail = Tail { segment: Some(first), offset: offset as u64 };
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
                    if valid_record_after(&bytes[offset + 1..], seq)
                        || later_segments_hold_records(store, &segs[index + 1..])
                    {
                        return Err(JournalError::Corrupt {
                            segment: name,
                            offset: offset as u64,
                            seq,
                            reason: reason.into(),
                        });
                    }
                    let truncated = Some((path, offset as u64, seq));
                    let torn =
                        Torn { segment: first, offset: offset as u64, seq, reason, later: segs[index + 1..].to_vec() };
                    buffers.push(bytes);
                    return Ok((Recovered { records, segments: buffers, head, truncated, tail }, Repair::Torn(torn)));
                }
            }
        }
        buffers.push(bytes);
    }
    Ok((Recovered { records, segments: buffers, head, truncated: None, tail }, repair))
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

fn later_segments_hold_records<S: SegmentStore + ?Sized>(store: &S, segs: &[u64]) -> bool {
    segs.iter().any(|s| {
        store
            .read(*s)
            .is_ok_and(|b| b.len() > HEADER_LEN && matches!(format::decode(&b[HEADER_LEN..]), Decoded::Record { .. }))
    })
}
