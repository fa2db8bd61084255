//! What the service writes to the journal: every state change the core accepted, with the
//! server time it was applied at, the bid id the shell drew, and the auction's resolved spec and
//! tie-break seed. Replaying these entries in order rebuilds the same state, byte for byte.
//!
//! Entries are JSON: a few hundred bytes each, readable by an auditor with ordinary tools.

use serde::{Deserialize, Serialize};

use crate::domain::{AuctionId, Timestamp};
use crate::engine::{AuctionSpec, Command, Seed};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    /// An auction was created. `seed` (hex) is present for SEEDED_RANDOM auctions only.
    Create { spec: Box<AuctionSpec>, seed: Option<String> },
    /// A command the auction accepted at `at`.
    Apply { at: Timestamp, auction: AuctionId, command: Command },
    /// Time alone changed the auction at `at` (its open or close).
    Tick { at: Timestamp, auction: AuctionId },
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("journal entries always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, serde_json::Error> {
        serde_json::from_slice(bytes)
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
