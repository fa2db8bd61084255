//! Principals and bearer tokens. A principal is a role and, for bidders, the enterprise it
//! acts for. Tokens are random, shown once when created, and stored only as SHA-256 hashes in
//! the principals file, so the file alone lets nobody bid.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

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

/// Who is calling, as established by its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Bidders only: the enterprise every bid of this principal is placed for.
    pub enterprise: Option<CreditCode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPrincipal {
    #[serde(flatten)]
    principal: Principal,
    /// Hex SHA-256 of the bearer token.
    token_sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PrincipalsFile {
    principals: Vec<StoredPrincipal>,
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

/// The principals known to a server, looked up by token hash.
#[derive(Debug, Default, Clone)]
pub struct Principals {
    by_token_hash: HashMap<[u8; 32], Principal>,
    stored: Vec<StoredPrincipal>,
}

impl Principals {
    /// Loads the principals file; a missing file is an empty set.
    pub fn load(path: &Path) -> Result<Principals, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Principals::default()),
            Err(source) => return Err(AuthError::Io { path: path.display().to_string(), source }),
        };
        let file: PrincipalsFile = serde_json::from_str(&text)
            .map_err(|e| AuthError::Format { path: path.display().to_string(), reason: e.to_string() })?;
        let mut principals = Principals::default();
        for stored in file.principals {
            let hash: [u8; 32] =
                hex::decode(&stored.token_sha256).ok().and_then(|h| h.try_into().ok()).ok_or_else(|| {
                    AuthError::Format {
                        path: path.display().to_string(),
                        reason: format!("bad token hash for {}", stored.principal.name),
                    }
                })?;
            principals.by_token_hash.insert(hash, stored.principal.clone());
            principals.stored.push(stored);
        }
        Ok(principals)
    }

    /// Writes the file atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let io = |source| AuthError::Io { path: path.display().to_string(), source };
        let file = PrincipalsFile { principals: self.stored.clone() };
        let text = serde_json::to_string_pretty(&file).expect("principals serialize");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Adds a principal and returns its new token, which is not stored anywhere.
    pub fn add(&mut self, principal: Principal) -> Result<String, AuthError> {
        match (principal.role, principal.enterprise) {
            (Role::Bidder, None) => {
                return Err(AuthError::Invalid("a bidder needs --enterprise (its unified social credit code)".into()));
            }
            (Role::Bidder, Some(_)) => {}
            (_, Some(_)) => return Err(AuthError::Invalid("only bidders act for an enterprise".into())),
            (_, None) => {}
        }
        if principal.name.trim().is_empty() {
            return Err(AuthError::Invalid("a principal needs a name".into()));
        }
        if self.stored.iter().any(|s| s.principal.name == principal.name) {
            return Err(AuthError::Invalid(format!("a principal named {:?} exists already", principal.name)));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the operating system's random source");
        let token = format!("ea_{}", hex::encode(secret));
        let hash = token_hash(&token);
        self.by_token_hash.insert(hash, principal.clone());
        self.stored.push(StoredPrincipal { principal, token_sha256: hex::encode(hash) });
        Ok(token)
    }

    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        self.by_token_hash.get(&token_hash(token))
    }

    pub fn len(&self) -> usize {
        self.stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("principals.json");
        let mut p = Principals::default();
        let enterprise = CreditCode::with_check_digit("91140100MA0GRXY71").unwrap();
        let token = p.add(Principal { name: "t1".into(), role: Role::Bidder, enterprise: Some(enterprise) }).unwrap();
        p.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token), "the token itself must not be stored");
        let loaded = Principals::load(&path).unwrap();
        assert_eq!(loaded.authenticate(&token).unwrap().enterprise, Some(enterprise));
        assert!(loaded.authenticate("ea_wrong").is_none());
        assert!(p.add(Principal { name: "b".into(), role: Role::Bidder, enterprise: None }).is_err());
        assert!(p.add(Principal { name: "o".into(), role: Role::Operator, enterprise: Some(enterprise) }).is_err());
    }
}
