//! The journal's bytes on disk. This format is the product's own and is what an auditor
//! verifies, so it is written out here in full.
//!
//! A journal is a sequence of segments, each named by the sequence number of its first record;
//! on disk ([`FileStore`](super::FileStore)) a directory of segment files
//! (`00000000000000000001.seg`), each preallocated to the segment size. A segment starts with a
//! 16-byte header, then records back to back; the unwritten rest of a segment is zeros.
//!
//! ```text
//! header:  magic "EAJRNL01" (8 bytes) | first_seq u64
//! record:  len u32 | crc u32 | seq u64 | hash [32] | payload [len]
//! ```
//!
//! Integers are little-endian. `crc` is CRC32C over everything in the record after the crc
//! field itself (seq, hash, payload) and the length. `hash` is SHA-256(previous hash || seq ||
//! payload), the previous hash of the first record being 32 zero bytes: a hash chain, so a change
//! anywhere shows at every later record and at the head hash. Sequence numbers start at 1 and
//! have no gaps. A length of zero never starts a record: it marks the end of written data.
//!
//! Beside the segments, outside them, the journal keeps an anchor: the last record it knows to
//! be synced, so that recovery can tell a journal that lost synced records (a deleted, emptied
//! or zero-filled segment, a deleted directory) from one that merely ends there. On disk it is
//! one small file beside the journal directory (`journal.anchor` beside `journal/`), replaced
//! atomically:
//!
//! ```text
//! anchor:  magic "EAANCHR1" (8 bytes) | seq u64 | hash [32] | segment u64 | crc u32
//! ```
//!
//! `seq` and `hash` are the last synced record's (0 and 32 zero bytes: none yet), `segment` the
//! first sequence number of the segment being appended to when it was written, and `crc` is
//! CRC32C over the 56 bytes before it.

use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"EAJRNL01";
pub const HEADER_LEN: usize = 16;
/// len + crc + seq + hash.
pub const RECORD_OVERHEAD: usize = 4 + 4 + 8 + 32;
/// No single record may be larger than this (a command is a few hundred bytes).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The hash that chains a record to everything before it.
pub type ChainHash = [u8; 32];

pub const ANCHOR_MAGIC: &[u8; 8] = b"EAANCHR1";
pub const ANCHOR_LEN: usize = 8 + 8 + 32 + 8 + 4;

/// What the anchor says: records up to `seq` were synced, the last with chain hash `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The last synced record's sequence number; 0 when none was synced yet.
    pub seq: u64,
    /// That record's chain hash; 32 zero bytes when `seq` is 0.
    pub hash: ChainHash,
    /// The first sequence number of the segment being appended to when the anchor was written.
    pub segment: u64,
}

impl Anchor {
    pub fn encode(&self) -> [u8; ANCHOR_LEN] {
        let mut out = [0u8; ANCHOR_LEN];
        out[..8].copy_from_slice(ANCHOR_MAGIC);
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..48].copy_from_slice(&self.hash);
        out[48..56].copy_from_slice(&self.segment.to_le_bytes());
        let crc = crc32c::crc32c(&out[..56]);
        out[56..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads an anchor back; the error says why the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Result<Anchor, &'static str> {
        if bytes.len() != ANCHOR_LEN {
            return Err("not the length of an anchor");
        }
        if &bytes[..8] != ANCHOR_MAGIC {
            return Err("bad magic");
        }
        if crc32c::crc32c(&bytes[..56]).to_le_bytes() != bytes[56..] {
            return Err("CRC32C mismatch");
        }
        Ok(Anchor {
            seq: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
            hash: bytes[16..48].try_into().unwrap(),
            segment: u64::from_le_bytes(bytes[48..56].try_into().unwrap()),
        })
    }
}

pub fn chain(prev: &ChainHash, seq: u64, payload: &[u8]) -> ChainHash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

fn crc(len: u32, seq: u64, hash: &ChainHash, payload: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&len.to_le_bytes());
    c = crc32c::crc32c_append(c, &seq.to_le_bytes());
    c = crc32c::crc32c_append(c, hash);
    crc32c::crc32c_append(c, payload)
}

pub fn header(first_seq: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// The first sequence number a segment header names, if the header is one.
pub fn parse_header(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= HEADER_LEN && &bytes[..8] == MAGIC).then(|| u64::from_le_bytes(bytes[8..16].try_into().unwrap()))
}

/// Appends one encoded record to `out`.
pub fn encode(out: &mut Vec<u8>, seq: u64, hash: &ChainHash, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload checked against MAX_PAYLOAD");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(len, seq, hash, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(payload);
}

/// What is found at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record whose CRC checks out: its sequence number, hash, payload, and length.
    Record { seq: u64, hash: ChainHash, payload: &'a [u8], len: usize },
    /// The end of written data (a zero length, or the end of the file).
    End,
    /// Bytes that are not a valid record.
    Bad(&'static str),
}

pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < 4 {
        return if bytes.iter().all(|b| *b == 0) { Decoded::End } else { Decoded::Bad("truncated record header") };
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    if len == 0 {
        return if bytes[..RECORD_OVERHEAD.min(bytes.len())].iter().all(|b| *b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("zero length with data after it")
        };
    }
    let len = len as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Bad("length beyond the largest record");
    }
    if bytes.len() < RECORD_OVERHEAD + len {
        return Decoded::Bad("record runs past the end of the segment");
    }
    let stored_crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    let seq = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    let hash: ChainHash = bytes[16..48].try_into().unwrap();
    let payload = &bytes[48..48 + len];
    if crc(len as u32, seq, &hash, payload) != stored_crc {
        return Decoded::Bad("CRC32C mismatch");
    }
    Decoded::Record { seq, hash, payload, len: RECORD_OVERHEAD + len }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        let hash = chain(&[0; 32], 1, b"place bid");
        encode(&mut buf, 1, &hash, b"place bid");
        assert_eq!(decode(&buf), Decoded::Record { seq: 1, hash, payload: b"place bid", len: buf.len() });
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&bad), Decoded::Record { seq: 1, payload: b"place bid", .. }),
                "bit {bit} went unnoticed"
            );
        }
        assert_eq!(decode(&[0u8; 64]), Decoded::End);
        assert_eq!(decode(&[]), Decoded::End);
    }

    #[test]
    fn anchors_round_trip_and_any_flipped_bit_is_caught() {
        let anchor = Anchor { seq: 16_042, hash: chain(&[0; 32], 1, b"x"), segment: 11_311 };
        let bytes = anchor.encode();
        assert_eq!(Anchor::decode(&bytes), Ok(anchor));
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Anchor::decode(&bad).is_err(), "bit {bit} went unnoticed");
        }
        assert!(Anchor::decode(&bytes[..ANCHOR_LEN - 1]).is_err());
    }
}
