//! The enterprise registry: every registered [`Enterprise`] by credit code. The exchange owns
//! one, behind a lock, and changes it only through journaled [`RegistryChange`]s (one writer:
//! the change is checked, journaled and applied under the write lock), so replay rebuilds it
//! in journal order. Bids read it to gather their eligibility facts; an accepted bid journals
//! the facts it was judged by, so a later change never rewrites it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{CreditCode, Enterprise, EnterpriseStatus};

/// A change an operator makes to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryChange {
    /// Registers a new enterprise.
    Add(Enterprise),
    /// Replaces a registered enterprise's record.
    Update(Enterprise),
    /// Suspends, blacklists or reinstates a registered enterprise.
    SetStatus { code: CreditCode, status: EnterpriseStatus },
}

impl RegistryChange {
    pub fn code(&self) -> CreditCode {
        match self {
            RegistryChange::Add(e) | RegistryChange::Update(e) => e.code,
            RegistryChange::SetStatus { code, .. } => *code,
        }
    }
}

/// Why a registry change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("enterprise {0} is already registered; update it instead")]
    Exists(CreditCode),
    #[error("no enterprise {0} is registered")]
    NotFound(CreditCode),
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    enterprises: BTreeMap<CreditCode, Enterprise>,
}

impl Registry {
    /// Whether `change` applies to the registry as it stands.
    pub fn check(&self, change: &RegistryChange) -> Result<(), RegistryError> {
        let known = self.enterprises.contains_key(&change.code());
        match change {
            RegistryChange::Add(e) if known => Err(RegistryError::Exists(e.code)),
            RegistryChange::Add(_) => Ok(()),
            _ if !known => Err(RegistryError::NotFound(change.code())),
            _ => Ok(()),
        }
    }

    /// Applies a change; returns the enterprise as it now stands.
    pub fn apply(&mut self, change: RegistryChange) -> Result<Enterprise, RegistryError> {
        self.check(&change)?;
        let record = match change {
            RegistryChange::Add(e) | RegistryChange::Update(e) => e,
            RegistryChange::SetStatus { code, status } => {
                let mut e = self.enterprises.get(&code).cloned().ok_or(RegistryError::NotFound(code))?;
                e.status = status;
                e
            }
        };
        self.enterprises.insert(record.code, record.clone());
        Ok(record)
    }

    pub fn get(&self, code: CreditCode) -> Option<&Enterprise> {
        self.enterprises.get(&code)
    }

    /// Every enterprise, by credit code.
    pub fn all(&self) -> impl Iterator<Item = &Enterprise> {
        self.enterprises.values()
    }
}
