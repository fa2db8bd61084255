//! What the service writes to the journal: every state change the core accepted, with the
//! server time it was applied at, the bid id the shell drew, and the auction's resolved spec and
//! tie-break seed. Replaying these entries in order rebuilds the same state, byte for byte.
//!
//! Entries are encoded with postcard (a compact, documented serde format): about a hundred
//! bytes each, and replay decodes them several times faster than JSON. Prices, quantities,
//! amounts and ids are stored as their integers (fen, kilograms, ppm); codes as their text.

use serde::{Deserialize, Serialize};

use crate::domain::{AuctionId, Timestamp};
use crate::engine::{AuctionSpec, Command, Seed};

use super::registry::RegistryChange;
use super::requests::{Fingerprint, Origin};

/// One journal entry. `O` is how the request's origin is held: owned ([`Origin`]) when
/// written, borrowed from the record ([`OriginRef`]) when replayed, so that replaying a million
/// requests copies none of their strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry<O = Origin> {
    /// An auction was created. `seed` (hex) is present for SEEDED_RANDOM auctions only.
    Create { spec: Box<AuctionSpec>, seed: Option<String>, origin: Option<O> },
    /// A command the auction accepted at `at`, and who asked for it (`None` only for changes
    /// made without a client request, such as benchmarks' synthetic journals). `settled` is
    /// the settlement's sequence number when the command concluded the auction.
    Apply { at: Timestamp, auction: AuctionId, command: Command, origin: Option<O>, settled: Option<u64> },
    /// Time alone changed the auction at `at` (its open or close, a round's end); `settled` as
    /// for `Apply`.
    Tick { at: Timestamp, auction: AuctionId, settled: Option<u64> },
    /// An operator changed the enterprise registry at `at`.
    Registry { at: Timestamp, change: Box<RegistryChange>, origin: Option<O> },
    /// A bidder's change to a sealed auction (place, revise, withdraw), journaled encrypted:
    /// `ciphertext` is the postcard encoding of the `Apply` entry (command and origin), sealed
    /// with XChaCha20-Poly1305 under the auction's key (`seal`), with the auction id and the
    /// stamp as associated data. Only the auction, the stamp and the length show.
    Sealed { at: Timestamp, auction: AuctionId, nonce: [u8; 24], ciphertext: Vec<u8> },
    /// The auction concluded and its key is published: every `Sealed` entry of the auction
    /// can be opened with it from here on, by anyone who reads the journal.
    Unseal { auction: AuctionId, key: [u8; 32] },
}

/// An [`Origin`] read in place from a journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct OriginRef<'a> {
    pub principal: &'a str,
    pub request_id: &'a str,
    pub fingerprint: Fingerprint,
}

impl<'a> Entry<OriginRef<'a>> {
    /// Decodes an entry, borrowing its origin's strings from `bytes`.
    pub fn decode_borrowed(bytes: &'a [u8]) -> Result<Entry<OriginRef<'a>>, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

impl<O> Entry<O> {
    /// The same entry with its origin mapped by `f`.
    pub fn map_origin<P>(self, f: impl FnOnce(O) -> P) -> Entry<P> {
        match self {
            Entry::Create { spec, seed, origin } => Entry::Create { spec, seed, origin: origin.map(f) },
            Entry::Apply { at, auction, command, origin, settled } => {
                Entry::Apply { at, auction, command, origin: origin.map(f), settled }
            }
            Entry::Tick { at, auction, settled } => Entry::Tick { at, auction, settled },
            Entry::Registry { at, change, origin } => Entry::Registry { at, change, origin: origin.map(f) },
            Entry::Sealed { at, auction, nonce, ciphertext } => Entry::Sealed { at, auction, nonce, ciphertext },
            Entry::Unseal { auction, key } => Entry::Unseal { auction, key },
        }
    }
}

impl Entry {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
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
