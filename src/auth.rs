//! Principals and bearer tokens. A principal is a stable id, a name, a role and, for bidders,
//! the enterprise it acts for. Tokens are random, shown once when created or rotated, and stored
//! only as SHA-256 hashes in the principals file, so the file alone lets nobody bid. A principal
//! may also be reached by a TLS client certificate, stored as the SHA-256 of its DER bytes.
//!
//! Identity is the id, never the name: ids come from a counter kept in the file and are never
//! handed out twice (removed principals leave their id behind in `removed`), so a principal
//! that reuses a removed principal's name inherits nothing, in particular not its request ids.
//!
//! A running server reads the file through a [`PrincipalStore`], which reloads it on demand
//! (SIGHUP, a change of the file) and keeps the last good set when a reload fails.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::CreditCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Trading-centre staff: create, open, close and cancel auctions.
    Operator,
    /// An enterprise's trading terminal: bids as that enterprise.
    Bidder,
    /// The regulator: reads auctions, bids after the close, and results.
    Auditor,
    /// Reads public auction views and results.
    Observer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Operator => "operator",
            Role::Bidder => "bidder",
            Role::Auditor => "auditor",
            Role::Observer => "observer",
        })
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "operator" => Ok(Role::Operator),
            "bidder" => Ok(Role::Bidder),
            "auditor" => Ok(Role::Auditor),
            "observer" => Ok(Role::Observer),
            _ => Err(format!("unknown role {s:?} (operator, bidder, auditor, observer)")),
        }
    }
}

/// A principal's stable identity, `P-000017` in text. Assigned once from the file's counter
/// and never reused, whatever happens to names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalId(u64);

impl PrincipalId {
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P-{:06}", self.0)
    }
}

impl FromStr for PrincipalId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("P-")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .map(PrincipalId)
            .ok_or_else(|| format!("{s:?} is not a principal id (P-000001)"))
    }
}

impl Serialize for PrincipalId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PrincipalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a principal is: a name people use, a role and, for bidders, the enterprise it acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Bidders only: the enterprise every bid of this principal is placed for.
    pub enterprise: Option<CreditCode>,
}

/// Who is calling, as established by its token or client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity that keys everything the caller did (request ids, rate limits).
    pub id: PrincipalId,
    pub principal: Principal,
}

impl Caller {
    pub fn role(&self) -> Role {
        self.principal.role
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPrincipal {
    /// Missing only in files written before ids existed; assigned at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<PrincipalId>,
    #[serde(flatten)]
    principal: Principal,
    /// Hex SHA-256 of the bearer token.
    token_sha256: String,
    /// Seconds since the Unix epoch after which the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_unix: Option<i64>,
    /// Hex SHA-256 of the DER bytes of the client certificate that also identifies it (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_cert_sha256: Option<String>,
}

/// A removed principal: its id is kept so that it is never handed out again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Removed {
    id: PrincipalId,
    name: String,
    removed_at_unix: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PrincipalsFile {
    /// The next id to hand out; never goes down.
    #[serde(default)]
    next_id: u64,
    principals: Vec<StoredPrincipal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<Removed>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("principals file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("principals file {path}: {reason}")]
    Format { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Why a token or certificate was refused; the text goes to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Unknown => "unknown or revoked token",
            Refusal::Expired => "the token has expired; ask the trading centre to rotate it",
        })
    }
}

/// One principal as `principal list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub id: PrincipalId,
    #[serde(flatten)]
    pub principal: Principal,
    pub expires_at_unix: Option<i64>,
    pub client_cert: bool,
}

/// The principals known to a server, looked up by token hash or certificate hash.
#[derive(Debug, Default, Clone)]
pub struct Principals {
    by_token_hash: HashMap<[u8; 32], usize>,
    by_cert_hash: HashMap<[u8; 32], usize>,
    stored: Vec<StoredPrincipal>,
    removed: Vec<Removed>,
    /// The next id to hand out.
    next_id: u64,
    /// Principals that had no id in the file and were given one at load.
    legacy: usize,
}

impl Principals {
    /// Loads the principals file; a missing file is an empty set. Two principals with the same
    /// name, id, token or certificate, or an id that was removed, are refused with the line of
    /// the second one.
    pub fn load(path: &Path) -> Result<Principals, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Principals::default()),
            Err(source) => return Err(AuthError::Io { path: path.display().to_string(), source }),
        };
        Principals::parse(&text).map_err(|reason| AuthError::Format { path: path.display().to_string(), reason })
    }

    fn parse(text: &str) -> Result<Principals, String> {
        let file: PrincipalsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut principals =
            Principals { next_id: file.next_id.max(1), removed: file.removed, ..Principals::default() };
        // Ids in use and removed ids push the counter past them: an id is never handed out twice,
        // even if the counter was edited down by hand.
        let highest = file
            .principals
            .iter()
            .filter_map(|s| s.id)
            .chain(principals.removed.iter().map(|r| r.id))
            .map(PrincipalId::get)
            .max()
            .unwrap_or(0);
        principals.next_id = principals.next_id.max(highest + 1);

        let mut names: HashMap<String, usize> = HashMap::new();
        let mut ids: HashMap<PrincipalId, usize> = HashMap::new();
        let mut occurrence: HashMap<String, usize> = HashMap::new();
        for mut stored in file.principals {
            let name = stored.principal.name.clone();
            let name_json = serde_json::to_string(&name).expect("a string serializes");
            let nth = {
                let n = occurrence.entry(name_json.clone()).or_default();
                *n += 1;
                *n
            };
            let at = |key: &str, value: &str, nth: usize| match line_of(text, key, value, nth) {
                Some(line) => format!("line {line}: "),
                None => String::new(),
            };
            if names.insert(name.clone(), principals.stored.len()).is_some() {
                return Err(format!(
                    "{}a second principal named {name:?}; names must be unique",
                    at("name", &name_json, nth)
                ));
            }
            check_new(&stored.principal).map_err(|e| format!("{}{name:?}: {e}", at("name", &name_json, nth)))?;
            let index = principals.stored.len();
            let id = match stored.id {
                Some(id) => id,
                None => {
                    principals.legacy += 1;
                    let id = PrincipalId(principals.next_id);
                    principals.next_id += 1;
                    stored.id = Some(id);
                    id
                }
            };
            let id_json = format!("\"{id}\"");
            if ids.insert(id, index).is_some() {
                return Err(format!("{}a second principal with id {id}", at("id", &id_json, 2)));
            }
            if principals.removed.iter().any(|r| r.id == id) {
                return Err(format!(
                    "{}{name:?} has id {id}, which belonged to a removed principal",
                    at("id", &id_json, 1)
                ));
            }
            let hash = decode_hash(&stored.token_sha256)
                .ok_or_else(|| format!("{}bad token hash for {name:?}", at("name", &name_json, nth)))?;
            if principals.by_token_hash.insert(hash, index).is_some() {
                let value = format!("\"{}\"", stored.token_sha256);
                return Err(format!(
                    "{}{name:?} has the same token as another principal",
                    at("token_sha256", &value, 2)
                ));
            }
            if let Some(cert) = &stored.client_cert_sha256 {
                let hash = decode_hash(cert).ok_or_else(|| {
                    format!("{}bad client certificate hash for {name:?}", at("name", &name_json, nth))
                })?;
                if principals.by_cert_hash.insert(hash, index).is_some() {
                    let value = format!("\"{cert}\"");
                    return Err(format!(
                        "{}{name:?} has the same client certificate as another principal",
                        at("client_cert_sha256", &value, 2)
                    ));
                }
            }
            principals.stored.push(stored);
        }
        Ok(principals)
    }

    /// Writes the file atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let io = |source| AuthError::Io { path: path.display().to_string(), source };
        let file = PrincipalsFile {
            next_id: self.next_id.max(1),
            principals: self.stored.clone(),
            removed: self.removed.clone(),
        };
        let text = serde_json::to_string_pretty(&file).expect("principals serialize");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            crate::private::restrict(&f).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Adds a principal under a new id and returns its new token, which is not stored anywhere.
    pub fn add(&mut self, principal: Principal) -> Result<String, AuthError> {
        check_new(&principal).map_err(AuthError::Invalid)?;
        if self.stored.iter().any(|s| s.principal.name == principal.name) {
            return Err(AuthError::Invalid(format!("a principal named {:?} exists already", principal.name)));
        }
        let (token, hash) = new_token();
        let id = PrincipalId(self.next_id.max(1));
        self.next_id = id.0 + 1;
        self.by_token_hash.insert(hash, self.stored.len());
        self.stored.push(StoredPrincipal {
            id: Some(id),
            principal,
            token_sha256: hex::encode(hash),
            expires_at_unix: None,
            client_cert_sha256: None,
        });
        Ok(token)
    }

    /// Removes a principal; its tokens and certificate stop working and its id is retired.
    pub fn remove(&mut self, name: &str) -> Result<PrincipalId, AuthError> {
        let index = self.index_of(name)?;
        let stored = self.stored.remove(index);
        let id = stored.id.expect("ids are assigned at load and add");
        self.removed.push(Removed { id, name: stored.principal.name, removed_at_unix: unix_now() });
        self.reindex();
        Ok(id)
    }

    /// Gives a principal a new token and revokes the old one; returns the new token.
    pub fn rotate(&mut self, name: &str) -> Result<String, AuthError> {
        let index = self.index_of(name)?;
        let (token, hash) = new_token();
        self.stored[index].token_sha256 = hex::encode(hash);
        self.reindex();
        Ok(token)
    }

    /// Sets or clears the moment after which a principal's token is refused.
    pub fn set_expiry(&mut self, name: &str, expires_at_unix: Option<i64>) -> Result<(), AuthError> {
        let index = self.index_of(name)?;
        self.stored[index].expires_at_unix = expires_at_unix;
        Ok(())
    }

    /// Maps a client certificate (PEM, the first certificate in it) to a principal for mTLS.
    pub fn set_client_cert(&mut self, name: &str, pem: &[u8]) -> Result<(), AuthError> {
        let index = self.index_of(name)?;
        let der = first_pem_certificate(pem)
            .ok_or_else(|| AuthError::Invalid("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into()))?;
        let hash = cert_hash(&der);
        if self.by_cert_hash.get(&hash).is_some_and(|&i| i != index) {
            return Err(AuthError::Invalid("this certificate already maps to another principal".into()));
        }
        self.stored[index].client_cert_sha256 = Some(hex::encode(hash));
        self.reindex();
        Ok(())
    }

    fn index_of(&self, name: &str) -> Result<usize, AuthError> {
        self.stored
            .iter()
            .position(|s| s.principal.name == name)
            .ok_or_else(|| AuthError::Invalid(format!("no principal named {name:?}")))
    }

    fn reindex(&mut self) {
        self.by_token_hash.clear();
        self.by_cert_hash.clear();
        for (i, s) in self.stored.iter().enumerate() {
            if let Some(hash) = decode_hash(&s.token_sha256) {
                self.by_token_hash.insert(hash, i);
            }
            if let Some(hash) = s.client_cert_sha256.as_deref().and_then(decode_hash) {
                self.by_cert_hash.insert(hash, i);
            }
        }
    }

    /// The principal a bearer token belongs to, at `now`.
    pub fn authenticate(&self, token: &str, now: SystemTime) -> Result<Caller, Refusal> {
        let index = *self.by_token_hash.get(&token_hash(token)).ok_or(Refusal::Unknown)?;
        let stored = &self.stored[index];
        if let Some(expires) = stored.expires_at_unix
            && unix_of(now) >= expires
        {
            return Err(Refusal::Expired);
        }
        Ok(caller(stored))
    }

    /// The principal a verified client certificate (DER) maps to, if any.
    pub fn by_certificate(&self, der: &[u8]) -> Option<Caller> {
        self.by_cert_hash.get(&cert_hash(der)).map(|&i| caller(&self.stored[i]))
    }

    /// Every principal, in file order.
    pub fn list(&self) -> Vec<Listed> {
        self.stored
            .iter()
            .map(|s| Listed {
                id: s.id.expect("ids are assigned at load and add"),
                principal: s.principal.clone(),
                expires_at_unix: s.expires_at_unix,
                client_cert: s.client_cert_sha256.is_some(),
            })
            .collect()
    }

    /// How many principals had no id in the file and were numbered at load; `principal`
    /// commands that write the file store those ids.
    pub fn legacy_count(&self) -> usize {
        self.legacy
    }

    pub fn len(&self) -> usize {
        self.stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }
}

fn caller(stored: &StoredPrincipal) -> Caller {
    Caller { id: stored.id.expect("ids are assigned at load and add"), principal: stored.principal.clone() }
}

/// The rules every principal meets, when added and when loaded.
fn check_new(principal: &Principal) -> Result<(), String> {
    match (principal.role, principal.enterprise) {
        (Role::Bidder, None) => return Err("a bidder needs --enterprise (its unified social credit code)".into()),
        (Role::Bidder, Some(_)) => {}
        (_, Some(_)) => return Err("only bidders act for an enterprise".into()),
        (_, None) => {}
    }
    if principal.name.trim().is_empty() {
        return Err("a principal needs a name".into());
    }
    Ok(())
}

/// The 1-based line of the `nth` place where `"key": value` appears in `text` (the file as
/// people edit it, one key a line); `None` when it cannot be found.
fn line_of(text: &str, key: &str, value: &str, nth: usize) -> Option<usize> {
    let quoted_key = format!("\"{key}\"");
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.split_once(&quoted_key).is_some_and(|(_, rest)| {
                rest.trim_start().strip_prefix(':').is_some_and(|v| v.trim_start().starts_with(value))
            })
        })
        .nth(nth.checked_sub(1)?)
        .map(|(i, _)| i + 1)
}

fn new_token() -> (String, [u8; 32]) {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source");
    let token = format!("ea_{}", hex::encode(secret));
    let hash = token_hash(&token);
    (token, hash)
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok().and_then(|h| h.try_into().ok())
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn cert_hash(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The DER bytes of the first `CERTIFICATE` block of a PEM file.
pub fn first_pem_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = text.find(begin)? + begin.len();
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    let b64: String = text[start..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64_decode(&b64)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 6) | value(b)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn unix_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn unix_now() -> i64 {
    unix_of(SystemTime::now())
}

/// The principals file as a running server sees it: the current set, swapped whole on reload,
/// so a call sees either the old set or the new one. A reload that fails (a hand edit with a
/// duplicate, a half-written file) keeps the current set and says why.
#[derive(Debug)]
pub struct PrincipalStore {
    path: PathBuf,
    current: RwLock<Arc<Principals>>,
    /// The file's (modification time, length, inode) when last loaded, to notice changes.
    seen: Mutex<Option<FileStamp>>,
}

type FileStamp = (SystemTime, u64, u64);

impl PrincipalStore {
    pub fn open(path: &Path) -> Result<PrincipalStore, AuthError> {
        let stamp = stamp(path);
        let principals = Principals::load(path)?;
        if principals.legacy_count() > 0 {
            tracing::warn!(file = %path.display(), count = principals.legacy_count(), "principals without an id were numbered at load; run `emission-auction principal list` to store their ids");
        }
        Ok(PrincipalStore {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(principals)),
            seen: Mutex::new(stamp),
        })
    }

    /// A store over a set that is not backed by a file the server watches (tests, the demo).
    pub fn fixed(principals: Principals) -> PrincipalStore {
        PrincipalStore { path: PathBuf::new(), current: RwLock::new(Arc::new(principals)), seen: Mutex::new(None) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current(&self) -> Arc<Principals> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the file again and swaps the set in; on error the current set stays.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let stamp = stamp(&self.path);
        let principals = Principals::load(&self.path)?;
        let count = principals.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(principals);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
        Ok(count)
    }

    /// Reloads if the file changed since it was last read; logs the outcome.
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.path);
        let changed = *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            self.reload_logged("the file changed");
        }
    }

    /// Reloads and logs the outcome, as SIGHUP and the file watch do.
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(count) => tracing::info!(file = %self.path.display(), principals = count, why, "principals reloaded"),
            Err(e) => {
                // Remember this version so the error is logged once, not every poll.
                *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamp(&self.path);
                tracing::error!(error = %e, why, "principals not reloaded; the previous set stays in force");
            }
        }
    }

    /// Polls the file every `every` and reloads it when it changed, until `stop` resolves.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: impl std::future::Future<Output = ()>) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    let store = Arc::clone(&self);
                    // A stat and, rarely, a small read: off the async threads all the same.
                    let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
                }
            }
        }
    }
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enterprise() -> CreditCode {
        CreditCode::with_check_digit("91140100MA0GRXY71").unwrap()
    }

    fn bidder(name: &str) -> Principal {
        Principal { name: name.into(), role: Role::Bidder, enterprise: Some(enterprise()) }
    }

    #[test]
    fn tokens_are_stored_hashed_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("principals.json");
        let mut p = Principals::default();
        let token = p.add(bidder("t1")).unwrap();
        p.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token), "the token itself must not be stored");
        let loaded = Principals::load(&path).unwrap();
        let now = SystemTime::now();
        let caller = loaded.authenticate(&token, now).unwrap();
        assert_eq!(caller.principal.enterprise, Some(enterprise()));
        assert_eq!(caller.id.to_string(), "P-000001");
        assert_eq!(loaded.authenticate("ea_wrong", now), Err(Refusal::Unknown));
        assert!(p.add(Principal { name: "b".into(), role: Role::Bidder, enterprise: None }).is_err());
        assert!(p.add(Principal { name: "o".into(), role: Role::Operator, enterprise: Some(enterprise()) }).is_err());
    }

    /// A removed principal's id is never handed out again, even to a principal of its name.
    #[test]
    fn ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("principals.json");
        let mut p = Principals::default();
        p.add(bidder("a")).unwrap();
        let old = p.add(bidder("b")).unwrap();
        let removed = p.remove("b").unwrap();
        p.save(&path).unwrap();
        let mut p = Principals::load(&path).unwrap();
        let new = p.add(bidder("b")).unwrap();
        let now = SystemTime::now();
        assert_eq!(p.authenticate(&old, now), Err(Refusal::Unknown));
        let id = p.authenticate(&new, now).unwrap().id;
        assert_ne!(id, removed);
        assert_eq!(id.to_string(), "P-000003");
    }

    #[test]
    fn rotation_revokes_the_old_token_and_expiry_is_enforced() {
        let mut p = Principals::default();
        let old = p.add(bidder("a")).unwrap();
        let new = p.rotate("a").unwrap();
        let now = SystemTime::now();
        assert_eq!(p.authenticate(&old, now), Err(Refusal::Unknown));
        let id = p.authenticate(&new, now).unwrap().id;
        p.set_expiry("a", Some(unix_of(now))).unwrap();
        assert_eq!(p.authenticate(&new, now), Err(Refusal::Expired));
        assert_eq!(p.authenticate(&new, now - Duration::from_secs(1)).unwrap().id, id);
    }

    /// A hand-edited file with two principals of one name is refused, naming the second's line.
    #[test]
    fn duplicates_are_refused_with_their_line() {
        let mut p = Principals::default();
        p.add(bidder("a")).unwrap();
        p.add(bidder("b")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("principals.json");
        p.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap().replace("\"name\": \"b\"", "\"name\": \"a\"");
        let err = Principals::parse(&text).unwrap_err();
        let line = text.lines().enumerate().filter(|(_, l)| l.contains("\"name\": \"a\"")).nth(1).unwrap().0 + 1;
        assert!(err.starts_with(&format!("line {line}: ")), "{err}");
        assert!(err.contains("\"a\""), "{err}");

        let text = std::fs::read_to_string(&path).unwrap().replace("P-000002", "P-000001");
        let err = Principals::parse(&text).unwrap_err();
        assert!(err.contains("line ") && err.contains("P-000001"), "{err}");
    }

    /// Files written before ids existed load, numbered in file order.
    #[test]
    fn legacy_files_get_ids() {
        let text = r#"{"principals":[{"name":"op","role":"operator","enterprise":null,"token_sha256":"00000000000000000000000000000000000000000000000000000000000000aa"}]}"#;
        let p = Principals::parse(text).unwrap();
        assert_eq!(p.legacy_count(), 1);
        assert_eq!(p.list()[0].id.to_string(), "P-000001");
    }

    #[test]
    fn pem_certificates_decode() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(first_pem_certificate(pem).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
    }
}
