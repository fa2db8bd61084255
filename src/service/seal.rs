//! Sealed bids at rest. A bid entry of a sealed auction (its bidder, price, quantity, eligibility
//! facts and the origin of the request) is journaled encrypted with XChaCha20-Poly1305 under the
//! auction's own key, so the journal reveals nothing of it before the close. The auction's key is
//! HKDF-SHA256 of the master key with the info `emission-auction/v1/auction/<id>`; the master
//! key lives in a file outside the data directory. At the close the auction's key (never the
//! master key) is journaled (`Entry::Unseal`), so from then on the journal alone re-derives
//! everything, for an auditor without the master key too.
//!
//! This module never logs a key or a plaintext.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::domain::{AuctionId, Timestamp};

/// What the info string of an auction's key starts with; the auction's id follows.
pub const AUCTION_KEY_INFO: &str = "emission-auction/v1/auction/";

/// Why the master key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The server's master key: 32 random bytes, kept in a file outside the data directory.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    /// A key that lives as long as this process (one per process): for exchanges built
    /// without a key file (tests, benchmarks), which may recover their own journals in the
    /// same process but never read a sealed entry written by another process.
    pub fn ephemeral() -> MasterKey {
        static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        MasterKey(*KEY.get_or_init(super::actor::random_bytes))
    }

    /// Reads the key file `path` (64 hex digits). A missing file is created with a fresh key
    /// and mode 0600 when `create` is set (the embedded default, beside the data directory),
    /// and refused otherwise (a configured file must exist). Returns whether it was created.
    pub fn load(path: &Path, create: bool) -> Result<(MasterKey, bool), KeyError> {
        let fail = |reason: String| KeyError::File { path: path.display().to_string(), reason };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| fail("is not 64 hex digits".into()))?;
                let mode = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
                if std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077 != 0 {
                    tracing::warn!(file = %path.display(), "the master key file is readable by others than its owner; chmod 600 it");
                }
                Ok((MasterKey(bytes), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = MasterKey(super::actor::random_bytes());
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(crate::private::FILE_MODE)
                    .open(path)
                    .map_err(|e| fail(e.to_string()))?;
                crate::private::restrict(&file).map_err(|e| fail(e.to_string()))?;
                file.write_all(format!("{}\n", hex::encode(key.0)).as_bytes()).map_err(|e| fail(e.to_string()))?;
                file.sync_all().map_err(|e| fail(e.to_string()))?;
                Ok((key, true))
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// The key of one auction: HKDF-SHA256 (no salt) of the master key, info
    /// `emission-auction/v1/auction/<id>`.
    pub fn auction_key(&self, auction: AuctionId) -> AuctionKey {
        AuctionKey(self.derive(&format!("{AUCTION_KEY_INFO}{auction}")))
    }

    /// 32 bytes derived for `info` (HKDF-SHA256, no salt).
    pub(crate) fn derive(&self, info: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        Hkdf::<Sha256>::new(None, &self.0).expand(info.as_bytes(), &mut out).expect("32 bytes is a valid HKDF length");
        out
    }
}

/// The info from which the receipt-signing key is derived.
pub const RECEIPT_KEY_INFO: &str = "emission-auction/v1/receipt-signing";

/// The server's Ed25519 receipt-signing key, derived from the master key (HKDF-SHA256, info
/// `emission-auction/v1/receipt-signing`), so it lives and moves with it.
#[derive(Clone)]
pub struct ReceiptSigner(ed25519_dalek::SigningKey);

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptSigner({})", hex::encode(self.public_key()))
    }
}

impl ReceiptSigner {
    pub fn of(master: &MasterKey) -> ReceiptSigner {
        ReceiptSigner(ed25519_dalek::SigningKey::from_bytes(&master.derive(RECEIPT_KEY_INFO)))
    }

    /// The Ed25519 signature of a receipt's canonical encoding.
    pub fn sign(&self, fields: &crate::domain::receipt::ReceiptFields) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(&fields.canonical()).to_bytes()
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }
}

/// Checks a receipt's signature against a server's public key.
pub fn verify_receipt(
    public_key: &[u8; 32],
    fields: &crate::domain::receipt::ReceiptFields,
    signature: &[u8; 64],
) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else { return false };
    key.verify_strict(&fields.canonical(), &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
}

/// The default key file of a data directory: beside it, named after it with `.key` appended
/// (`/var/lib/ea` → `/var/lib/ea.key`), so that a copy of the data directory holds no key.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "data".into());
    name.push(".key");
    match data_dir.parent() {
        Some(parent) => parent.join(name),
        None => PathBuf::from(name),
    }
}

/// One auction's key: what seals its bid entries, and what its close journals.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuctionKey(pub [u8; 32]);

impl std::fmt::Debug for AuctionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuctionKey(..)")
    }
}

/// What a sealed entry is bound to: its auction and stamp (the associated data), so that a
/// ciphertext cannot be moved to another auction or time.
fn associated(auction: AuctionId, at: Timestamp) -> [u8; 16] {
    let mut aad = [0u8; 16];
    aad[..8].copy_from_slice(&auction.get().to_be_bytes());
    aad[8..].copy_from_slice(&at.as_micros().to_be_bytes());
    aad
}

impl AuctionKey {
    /// Encrypts `plaintext` under a fresh random nonce.
    pub fn seal(&self, auction: AuctionId, at: Timestamp, plaintext: &[u8]) -> ([u8; 24], Vec<u8>) {
        let nonce: [u8; 24] = super::actor::random_bytes();
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let aad = associated(auction, at);
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        (nonce, ciphertext)
    }

    /// Decrypts and authenticates a sealed entry; `None` if the key is wrong or the entry was
    /// changed.
    pub fn open(&self, auction: AuctionId, at: Timestamp, nonce: &[u8; 24], ciphertext: &[u8]) -> Option<Vec<u8>> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let aad = associated(auction, at);
        cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_entry_opens_only_with_its_auctions_key_auction_and_stamp() {
        let master = MasterKey::from_bytes([7; 32]);
        let (a1, a2) = (AuctionId::new(1), AuctionId::new(2));
        let at = Timestamp::from_micros(42);
        let (nonce, ct) = master.auction_key(a1).seal(a1, at, b"bid");
        assert_eq!(master.auction_key(a1).open(a1, at, &nonce, &ct).as_deref(), Some(&b"bid"[..]));
        assert!(master.auction_key(a2).open(a1, at, &nonce, &ct).is_none());
        assert!(master.auction_key(a1).open(a2, at, &nonce, &ct).is_none());
        assert!(master.auction_key(a1).open(a1, Timestamp::from_micros(43), &nonce, &ct).is_none());
        assert_ne!(master.auction_key(a1), master.auction_key(a2));
    }

    #[test]
    fn the_default_key_file_is_beside_the_data_directory() {
        assert_eq!(default_key_file(Path::new("/var/lib/ea")), PathBuf::from("/var/lib/ea.key"));
        assert_eq!(default_key_file(Path::new("data")), PathBuf::from("data.key"));
    }
}
