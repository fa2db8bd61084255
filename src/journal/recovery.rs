//! Reading a journal back: every record checked for CRC, sequence and hash chain, through the
//! [`SegmentStore`] trait, so that files and memory recover by the same code. Scanning only
//! reads; cutting off a torn tail is a separate step that only [`recover_store`] takes, and
//! only after the records found were checked against the anchor: a journal that holds less
//! than its anchor says is refused before anything in it is changed.

use std::path::{Path, PathBuf};

use super::format::{self, Anchor, ChainHash, Decoded, HEADER_LEN, RECORD_OVERHEAD};
use super::{Appended, FileStore, JournalError, Record, Recovered, SegmentStore, Tail};

fn io_error(path: &Path, e: impl std::fmt::Display) -> JournalError {
    JournalError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// Reads and checks every record in `dir`, cutting off a torn tail (see the module docs);
/// refuses, changing nothing, if `dir` holds fewer records than its anchor
/// ([`anchor_path`](super::anchor_path)) names.
pub fn recover(dir: &Path) -> Result<Recovered, JournalError> {
    recover_store(&mut FileStore::new(dir))
}

/// Checks every record, the hash chain and the anchor without changing anything: a torn tail
/// is reported in `truncated`, not cut off; fewer records than the anchor names is an error.
/// This is what an auditor runs.
pub fn verify(dir: &Path) -> Result<Recovered, JournalError> {
    verify_store(&FileStore::new(dir))
}

/// As [`recover`], for any store.
pub fn recover_store<S: SegmentStore + ?Sized>(store: &mut S) -> Result<Recovered, JournalError> {
    let (recovered, repair) = scan(store)?;
    if let (None, Some(head)) = (recovered.anchor, recovered.head) {
        tracing::warn!(
            anchor = %store.anchor_path().display(),
            head = head.seq,
            "journal: no anchor, so a lost segment could not be noticed; accepting the journal as found \
             (written by a version without anchors, or the anchor was deleted) and anchoring it"
        );
    }
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

/// Reads the store's anchor, if it has one.
fn read_anchor<S: SegmentStore + ?Sized>(store: &S) -> Result<Option<Anchor>, JournalError> {
    let path = store.anchor_path();
    let Some(bytes) = store.read_anchor().map_err(|e| io_error(&path, e))? else { return Ok(None) };
    Anchor::decode(&bytes)
        .map(Some)
        .map_err(|reason| JournalError::BadAnchor { path: path.display().to_string(), reason: reason.into() })
}

/// Refuses a journal that holds fewer records than its anchor says were synced, or another
/// chain than the anchored one, naming what is missing. `segs` are the segments listed.
fn check_anchor<S: SegmentStore + ?Sized>(
    store: &S,
    anchor: &Anchor,
    records: &[Record],
    truncated: Option<&(PathBuf, u64, u64)>,
    repair: &Repair,
    segs: &[u64],
) -> Result<(), JournalError> {
    let found = records.last().map_or(0, |r| r.at.seq);
    let name = |first: u64| store.segment_path(first).display().to_string();
    let reason = if found < anchor.seq {
        let next = found + 1;
        match (truncated, repair) {
            (Some((path, offset, seq)), _) => format!(
                "record {seq} in {} at offset {offset} is damaged or gone, and nothing valid follows it \
                 (cut short, zero-filled or overwritten from there)",
                path.display()
            ),
            (None, Repair::Empty(empty)) => {
                format!("{} holds nothing, not even its header (emptied or zero-filled)", name(empty[0]))
            }
            _ => match segs.last().copied() {
                None => "there is no segment at all (the journal directory is empty or was deleted)".into(),
                Some(last) if last < next && next == anchor.segment => format!("{} is missing", name(next)),
                Some(last) if last < next && next < anchor.segment => {
                    format!("{} and the segments after it up to {} are missing", name(next), name(anchor.segment))
                }
                Some(last) => {
                    let held = if last == next {
                        format!("{} holds no records (emptied or zero-filled after its header)", name(last))
                    } else {
                        format!("{} holds records only up to {found} (cut short or zero-filled)", name(last))
                    };
                    if anchor.segment > last {
                        format!("{held}, and the segments after it up to {} are missing", name(anchor.segment))
                    } else {
                        held
                    }
                }
            },
        }
    } else if anchor.seq > 0 && records[anchor.seq as usize - 1].at.hash != anchor.hash {
        format!(
            "record {} has hash {} instead: this is not the journal the anchor was written for \
             (replaced or rewritten)",
            anchor.seq,
            hex::encode(records[anchor.seq as usize - 1].at.hash)
        )
    } else {
        return Ok(());
    };
    Err(JournalError::Missing {
        anchor: store.anchor_path().display().to_string(),
        anchored_seq: anchor.seq,
        anchored_hash: hex::encode(anchor.hash),
        found_seq: found,
        reason,
    })
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

/// Reads every record, then checks what it found against the anchor.
fn scan<S: SegmentStore + ?Sized>(store: &S) -> Result<(Recovered, Repair), JournalError> {
    let anchor = read_anchor(store)?;
    let segs = store.list().map_err(|e| io_error(&store.path(), e))?;
    let (recovered, repair) = scan_segments(store, &segs, anchor)?;
    if let Some(anchor) = &anchor {
        check_anchor(store, anchor, &recovered.records, recovered.truncated.as_ref(), &repair, &segs)?;
    }
    Ok((recovered, repair))
}

fn scan_segments<S: SegmentStore + ?Sized>(
    store: &S,
    segs: &[u64],
    anchor: Option<Anchor>,
) -> Result<(Recovered, Repair), JournalError> {
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
        let header = format::parse_header(&bytes);
        if header != Some(first) || first != expected_first {
            if segs[index..].iter().all(|s| store.read(*s).is_ok_and(|b| b.iter().all(|x| *x == 0))) {
                repair = Repair::Empty(segs[index..].to_vec());
                break;
            }
            let reason = if header == Some(first) && first > expected_first {
                format!("the segment holding record {expected_first} is missing before it")
            } else {
                "bad segment header".into()
            };
            return Err(JournalError::Corrupt { segment: name, offset: 0, seq: expected_first, reason });
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
                    let recovered = Recovered { records, segments: buffers, head, truncated, tail, anchor };
                    return Ok((recovered, Repair::Torn(torn)));
                }
            }
        }
        buffers.push(bytes);
    }
    Ok((Recovered { records, segments: buffers, head, truncated: None, tail, anchor }, repair))
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
