//! Receipts and the book's Merkle tree: the canonical encoding a receipt's signature covers, and
//! the tree over the final book whose root a settlement carries. Pure: hashing only, no keys,
//! no I/O. The encoding and the tree are published in docs/API.md, so that anyone can check a
//! receipt and an inclusion proof with their own code.
//!
//! A receipt's canonical encoding is UTF-8 text, one `name=value` line per field, each ended by
//! a newline, in this order after the first line `emission-auction/v1/receipt`: `auction_id`,
//! `bid_id`, `bidder`, `price` (yuan, two decimals), `quantity` (tonnes, three decimals),
//! `received_at` (microseconds since the Unix epoch, UTC), `state` (`ACTIVE` or `WITHDRAWN`),
//! `pseudonym` (empty outside English auctions).
//!
//! The tree: a leaf is SHA-256(0x00 ‖ canonical encoding of the bid's final version); an inner
//! node is SHA-256(0x01 ‖ left ‖ right); leaves are ordered by bid id (as unsigned integers);
//! a level with an odd number of nodes carries its last node up unchanged. An empty book has
//! the root SHA-256 of nothing.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first line of a receipt's canonical encoding.
pub const RECEIPT_HEADER: &str = "emission-auction/v1/receipt";

/// A receipt's fields as text, exactly as they enter the canonical encoding; what `receipt
/// verify` reads (as JSON) and what the server signs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptFields {
    pub auction_id: String,
    pub bid_id: String,
    pub bidder: String,
    pub price: String,
    pub quantity: String,
    pub received_at: i64,
    pub state: String,
    #[serde(default)]
    pub pseudonym: String,
}

impl ReceiptFields {
    /// The bytes a receipt's signature covers.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.each_part(|part| out.extend_from_slice(part));
        out
    }

    /// The bid's leaf in the book's tree.
    pub fn leaf(&self) -> [u8; 32] {
        let mut hasher = Sha256::new().chain_update([0u8]);
        self.each_part(|part| hasher.update(part));
        hasher.finalize().into()
    }

    /// The canonical encoding in pieces, in order: the one place that defines it.
    fn each_part(&self, mut part: impl FnMut(&[u8])) {
        let mut received_at = [0u8; 24];
        let written = {
            let mut cursor = &mut received_at[..];
            // An i64 takes at most 20 bytes: the write cannot fail.
            let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{}", self.received_at));
            24 - cursor.len()
        };
        let fields: [(&str, &[u8]); 8] = [
            ("\nauction_id=", self.auction_id.as_bytes()),
            ("\nbid_id=", self.bid_id.as_bytes()),
            ("\nbidder=", self.bidder.as_bytes()),
            ("\nprice=", self.price.as_bytes()),
            ("\nquantity=", self.quantity.as_bytes()),
            ("\nreceived_at=", &received_at[..written]),
            ("\nstate=", self.state.as_bytes()),
            ("\npseudonym=", self.pseudonym.as_bytes()),
        ];
        part(RECEIPT_HEADER.as_bytes());
        for (name, value) in fields {
            part(name.as_bytes());
            part(value);
        }
        part(b"\n");
    }
}

/// A receipt as `bid place --save-receipt` writes it and `receipt verify` reads it (JSON): its
/// fields and the server's signature (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    #[serde(flatten)]
    pub fields: ReceiptFields,
    pub signature: String,
}

/// An inclusion proof as `bid proof` writes it and `receipt verify` reads it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofFile {
    /// The bid's last version, as the server signed it.
    pub receipt: SignedReceipt,
    pub path: Vec<ProofStep>,
    /// Hex of the root the server says the path leads to; compare it with the settlement's
    /// `book_root`.
    pub root: String,
    pub leaf_index: u64,
    pub leaf_count: u64,
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    Sha256::new().chain_update([1u8]).chain_update(left).chain_update(right).finalize().into()
}

/// One step from a node towards the root: the sibling's hash and on which side it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofStep {
    /// Hex of the sibling's hash.
    pub sibling: String,
    /// Whether the sibling is the left one (the node is then on the right).
    pub left: bool,
}

/// The root of the tree over `leaves` (already in bid-id order).
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.is_empty() {
        return Sha256::digest([]).into();
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|pair| if let [l, r] = pair { node(l, r) } else { pair[0] }).collect();
    }
    level[0]
}

/// The path from leaf `index` to the root; `None` if there is no such leaf.
pub fn merkle_proof(leaves: &[[u8; 32]], mut index: usize) -> Option<Vec<ProofStep>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        let sibling = index ^ 1;
        if sibling < level.len() {
            path.push(ProofStep { sibling: hex::encode(level[sibling]), left: sibling < index });
        }
        level = level.chunks(2).map(|pair| if let [l, r] = pair { node(l, r) } else { pair[0] }).collect();
        index /= 2;
    }
    Some(path)
}

/// The root a leaf and its path lead to; `None` if a sibling is not 32 hex bytes.
pub fn root_from(leaf: [u8; 32], path: &[ProofStep]) -> Option<[u8; 32]> {
    path.iter().try_fold(leaf, |acc, step| {
        let sibling: [u8; 32] = hex::decode(&step.sibling).ok()?.try_into().ok()?;
        Some(if step.left { node(&sibling, &acc) } else { node(&acc, &sibling) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding, spelled out as docs/API.md gives it; the leaf hashes exactly it.
    #[test]
    fn canonical_encoding_is_the_published_one() {
        let fields = ReceiptFields {
            auction_id: "AUC-0007".into(),
            bid_id: "00000000000000ff".into(),
            bidder: "91140100MA0DEM001U".into(),
            price: "18000.50".into(),
            quantity: "4.048".into(),
            received_at: -1_767_225_600_000_001,
            state: "WITHDRAWN".into(),
            pseudonym: String::new(),
        };
        let text = "emission-auction/v1/receipt\nauction_id=AUC-0007\nbid_id=00000000000000ff\n\
                    bidder=91140100MA0DEM001U\nprice=18000.50\nquantity=4.048\nreceived_at=-1767225600000001\n\
                    state=WITHDRAWN\npseudonym=\n";
        assert_eq!(String::from_utf8(fields.canonical()).unwrap(), text);
        let mut prefixed = vec![0u8];
        prefixed.extend_from_slice(text.as_bytes());
        assert_eq!(fields.leaf(), <[u8; 32]>::from(Sha256::digest(&prefixed)));
    }

    #[test]
    fn every_leaf_proves_into_the_root_and_no_other_leaf_does() {
        for n in 1..12u8 {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| [i; 32]).collect();
            let root = merkle_root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let path = merkle_proof(&leaves, i).unwrap();
                assert_eq!(root_from(*leaf, &path), Some(root), "{n} leaves, leaf {i}");
                assert_ne!(root_from([99; 32], &path), Some(root));
            }
        }
    }
}
