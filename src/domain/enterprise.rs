//! Who may take part: the enterprise registry's record ([`Enterprise`]) and the eligibility
//! policy ([`EligibilityPolicy`]: admitted industry sections, restricted regions and the areas
//! regions belong to). Both are data: the registry changes through journaled entries, the
//! policy comes from the config. Nothing here decides a bid; `engine::eligibility` does.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{CreditCode, IdError, RegionCode, Timestamp};

/// An industry code of GB/T 4754-2011: a section letter and two to four digits, e.g. `C2511`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IndustryCode(String);

impl IndustryCode {
    /// The section letter (B mining, C manufacturing, D power, heat, gas and water, ...).
    pub fn section(&self) -> char {
        self.0.chars().next().unwrap_or('?')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IndustryCode {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        let b = text.as_bytes();
        let ok = (3..=5).contains(&b.len()) && (b'A'..=b'T').contains(&b[0]) && b[1..].iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(IdError::Shape("a GB/T 4754-2011 industry code: a section letter A-T and 2 to 4 digits"));
        }
        Ok(IndustryCode(text.to_owned()))
    }
}

impl TryFrom<String> for IndustryCode {
    type Error = IdError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<IndustryCode> for String {
    fn from(code: IndustryCode) -> String {
        code.0
    }
}

impl fmt::Display for IndustryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A discharge permit (排污许可证): its number and the days it is valid, both included
/// (dates are midnight UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permit {
    pub number: String,
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
}

/// Microseconds in a day: a permit valid until a date covers that whole day.
const DAY_MICROS: i64 = 86_400 * 1_000_000;

impl Permit {
    /// Whether the permit covers every moment from `from` to `until`.
    pub fn covers(&self, from: Timestamp, until: Timestamp) -> bool {
        self.valid_from <= from && until < self.valid_until.plus_micros(DAY_MICROS)
    }
}

/// `YYYY-MM-DD` of a timestamp (UTC).
pub fn date_of(t: Timestamp) -> String {
    t.to_string().chars().take(10).collect()
}

/// Whether an enterprise may trade at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnterpriseStatus {
    Active,
    Suspended { reason: String },
    Blacklisted { reason: String },
}

impl EnterpriseStatus {
    pub fn code(&self) -> &'static str {
        match self {
            EnterpriseStatus::Active => "active",
            EnterpriseStatus::Suspended { .. } => "suspended",
            EnterpriseStatus::Blacklisted { .. } => "blacklisted",
        }
    }
}

/// An enterprise as the registry holds it. Owned by the service's registry; it changes only
/// through journaled registry entries, and a bid journals the record it was judged by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enterprise {
    /// The unified social credit code: the enterprise's identity and its bidder id.
    pub code: CreditCode,
    pub name: String,
    pub region: RegionCode,
    pub industry: IndustryCode,
    pub permit: Option<Permit>,
    pub status: EnterpriseStatus,
    /// Enterprises of one affiliate group share one per-bidder cap.
    pub group: Option<String>,
}

/// How far a restricted region's buyers may buy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionScope {
    /// Only lots from the buyer's own region (非达标区).
    OwnRegion,
    /// Only lots from the buyer's city.
    SameCity,
    /// Only lots from the buyer's river basin.
    SameBasin,
}

impl RegionScope {
    pub fn code(self) -> &'static str {
        match self {
            RegionScope::OwnRegion => "own_region",
            RegionScope::SameCity => "same_city",
            RegionScope::SameBasin => "same_basin",
        }
    }
}

impl FromStr for RegionScope {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "own_region" => Ok(RegionScope::OwnRegion),
            "same_city" => Ok(RegionScope::SameCity),
            "same_basin" => Ok(RegionScope::SameBasin),
            _ => Err(format!("{text:?} is not own_region, same_city or same_basin")),
        }
    }
}

/// Buyers in `region` may buy only within `scope` from `from` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestrictedRegion {
    pub region: RegionCode,
    pub from: Timestamp,
    pub scope: RegionScope,
}

/// The city and river basin a region belongs to, for the same-city and same-basin scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionAreas {
    pub city: Option<String>,
    pub basin: Option<String>,
}

/// Who may bid, as data from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibilityPolicy {
    /// Whether bids are checked against the registry at all. Off, every authenticated bidder
    /// may bid (the behaviour before the registry existed).
    pub enforce: bool,
    /// The GB/T 4754 sections whose enterprises may bid (default B, C, D).
    pub admitted_sections: String,
    pub restricted_regions: Vec<RestrictedRegion>,
    pub regions: BTreeMap<RegionCode, RegionAreas>,
}

impl Default for EligibilityPolicy {
    fn default() -> Self {
        EligibilityPolicy {
            enforce: false,
            admitted_sections: "BCD".to_owned(),
            restricted_regions: Vec::new(),
            regions: BTreeMap::new(),
        }
    }
}
