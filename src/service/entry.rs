//! What the service writes to the journal: every state change the core accepted, with the
//! server time it was applied at, the bid id the shell drew, and the auction's resolved spec and
//! tie-break seed. Replaying these entries in order rebuilds the same state, byte for byte.
//!
//! Entries are encoded with postcard (a compact, documented serde format): about a hundred
//! bytes each, and replay decodes them several times faster than JSON. Amounts, ids and codes
//! are stored as their decimal text, exactly as the API shows them.

use serde::{Deserialize, Serialize};

use crate::domain::{AuctionId, Timestamp};
use crate::engine::{AuctionSpec, Command, Seed};

use super::requests::Origin;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// An auction was created. `seed` (hex) is present for SEEDED_RANDOM auctions only.
    Create { spec: Box<AuctionSpec>, seed: Option<String>, origin: Option<Origin> },
    /// A command the auction accepted at `at`, and who asked for it (`None` only for changes
    /// made without a client request, such as benchmarks' synthetic journals).
    Apply { at: Timestamp, auction: AuctionId, command: Command, origin: Option<Origin> },
    /// Time alone changed the auction at `at` (its open or close).
    Tick { at: Timestamp, auction: AuctionId },
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("journal entries always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    pub fn seed_hex(seed: Option<Seed>) -> Option<String> {
        seed.map(|s| hex::encode(s.0))
    }

    /// The seed of a `Create` entry (zeros when the auction has none).
    pub fn seed_of(seed: &Option<String>) -> Result<Seed, String> {
        let Some(text) = seed else { return Ok(Seed([0; 32])) };
        let bytes: [u8; 32] =
            hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or("seed is not 32 hex bytes")?;
        Ok(Seed(bytes))
    }
}
