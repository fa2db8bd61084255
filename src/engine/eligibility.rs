//! Whether an enterprise may bid in an auction: step 2 of the shared checks (right after the
//! window, before any amount). The shell gathers the facts from its registry and policy as they
//! stand when the bid is taken ([`Eligibility::gather`]) and the bid command carries them, so
//! the journal holds what the decision was made from and replay decides the same, however the
//! registry changes later. A later registry change never touches a bid already taken.
//!
//! The order: registered, status (suspended, blacklisted), permit present, permit valid from
//! the bid to the close, industry section admitted, region allowed.

use serde::{Deserialize, Serialize};

use crate::domain::{
    BidderId, EligibilityPolicy, Enterprise, EnterpriseStatus, RegionCode, RegionScope, Timestamp, date_of,
};

use super::{AuctionSpec, EngineError};

/// What the engine decides eligibility from, journaled in the bid command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    /// The bidder's registry record; `None`: not registered.
    pub enterprise: Option<Enterprise>,
    /// The other members of the bidder's affiliate group: they share its per-bidder cap.
    pub affiliates: Vec<BidderId>,
    /// The admitted GB/T 4754 sections, e.g. `BCD`.
    pub admitted_sections: String,
    /// The restrictions on the bidder's region, with the areas they compare.
    pub region_rules: Vec<RegionRule>,
}

/// A restriction on the buyer's region, with the buyer's and the lot's area under its scope
/// (city or basin code; the region itself for `own_region`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionRule {
    pub from: Timestamp,
    pub scope: RegionScope,
    pub buyer_area: Option<String>,
    pub lot_area: Option<String>,
}

impl Eligibility {
    /// The facts for `bidder` bidding on `spec`'s lot: its record, its affiliates among
    /// `registry`, and the policy that applies to its region.
    pub fn gather<'a>(
        bidder: BidderId,
        registry: impl IntoIterator<Item = &'a Enterprise>,
        spec: &AuctionSpec,
        policy: &EligibilityPolicy,
    ) -> Eligibility {
        let mut enterprise = None;
        let mut members = Vec::new();
        for e in registry {
            if e.code == bidder {
                enterprise = Some(e.clone());
            } else if e.group.is_some() {
                members.push((e.group.clone(), e.code));
            }
        }
        let group = enterprise.as_ref().and_then(|e| e.group.clone());
        let affiliates = match &group {
            Some(_) => members.into_iter().filter(|(g, _)| *g == group).map(|(_, code)| code).collect(),
            None => Vec::new(),
        };
        let region_rules = match &enterprise {
            Some(e) => policy
                .restricted_regions
                .iter()
                .filter(|r| r.region == e.region)
                .map(|r| RegionRule {
                    from: r.from,
                    scope: r.scope,
                    buyer_area: area(policy, e.region, r.scope),
                    lot_area: area(policy, spec.lot.region, r.scope),
                })
                .collect(),
            None => Vec::new(),
        };
        Eligibility { enterprise, affiliates, admitted_sections: policy.admitted_sections.clone(), region_rules }
    }
}

fn area(policy: &EligibilityPolicy, region: RegionCode, scope: RegionScope) -> Option<String> {
    match scope {
        RegionScope::OwnRegion => Some(region.to_string()),
        RegionScope::SameCity => policy.regions.get(&region).and_then(|a| a.city.clone()),
        RegionScope::SameBasin => policy.regions.get(&region).and_then(|a| a.basin.clone()),
    }
}

/// The first reason `facts` keep the bidder out of `spec`'s auction at `at`, if any.
pub fn check(spec: &AuctionSpec, facts: &Eligibility, at: Timestamp) -> Result<(), EngineError> {
    match check_all(spec, facts, at).into_iter().next() {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// Every reason `facts` keep the bidder out, in the check order (`Trading.CheckEligibility`).
pub fn check_all(spec: &AuctionSpec, facts: &Eligibility, at: Timestamp) -> Vec<EngineError> {
    let Some(e) = &facts.enterprise else { return vec![EngineError::NotRegistered] };
    let mut refusals = Vec::new();
    match &e.status {
        EnterpriseStatus::Active => {}
        EnterpriseStatus::Suspended { reason } => {
            refusals.push(EngineError::EnterpriseSuspended { reason: reason.clone() })
        }
        EnterpriseStatus::Blacklisted { reason } => {
            refusals.push(EngineError::EnterpriseBlacklisted { reason: reason.clone() })
        }
    }
    match &e.permit {
        None => refusals.push(EngineError::PermitMissing),
        Some(permit) if !permit.covers(at, spec.closes_at) => refusals.push(EngineError::PermitNotValid {
            valid_from: date_of(permit.valid_from),
            valid_until: date_of(permit.valid_until),
            close_date: date_of(spec.closes_at),
        }),
        Some(_) => {}
    }
    if !facts.admitted_sections.contains(e.industry.section()) {
        refusals.push(EngineError::IndustryNotAdmitted {
            industry: e.industry.to_string(),
            admitted: facts.admitted_sections.clone(),
        });
    }
    for rule in facts.region_rules.iter().filter(|r| r.from <= at) {
        let within = rule.buyer_area.is_some() && rule.buyer_area == rule.lot_area;
        if !within {
            refusals.push(EngineError::RegionRestricted {
                buyer_region: e.region.to_string(),
                lot_region: spec.lot.region.to_string(),
                rule: rule.scope.code(),
            });
            break;
        }
    }
    refusals
}
