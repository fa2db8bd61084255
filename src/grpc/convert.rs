//! Protobuf <-> domain. Every request is validated here, field by field, before the core
//! sees it: decimals parsed exactly, enums checked, ids shaped, required fields present.

use std::sync::Arc;

use crate::domain::{
    Amount, AuctionId, BidId, CreditCode, DecimalError, Enterprise, EnterpriseStatus, FactorScope, IdError,
    IndustryCode, Permit, Pollutant, Price, Quantity, Ratio, Reference, RegionCode, Timestamp, date_of,
};
use crate::engine::{
    AscendingRequest, AscendingView, AuctionRequest, AuctionSpec, BidRevision, BidState, BidView, CapMode, CapRequest,
    ClockRequest, ClockView, DepositRule, DepositTerms, Format, Lot, LotOrigin, LotRequest, OriginKind, Phase,
    ProjectFacts, SettlementStatus, TieRule, Undersubscription,
};
use crate::proto as pb;
use crate::service::feed::{AuctionUpdate, UpdateKind};
use crate::service::seal::ReceiptSigner;
use crate::service::{AuctionSnapshot, Receipt, RecordedSettlement};

/// A malformed field: becomes INVALID_ARGUMENT naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl ToString) -> FieldError {
        FieldError { field: field.to_owned(), reason: reason.to_string() }
    }
}

type Result<T> = std::result::Result<T, FieldError>;

pub fn price(field: &str, text: &str) -> Result<Price> {
    Price::parse_positive(text).map_err(|e| decimal_error(field, e, "a price in yuan per tonne such as \"18000.00\""))
}

pub fn quantity(field: &str, text: &str) -> Result<Quantity> {
    Quantity::parse_positive(text).map_err(|e| decimal_error(field, e, "a quantity in tonnes such as \"4.048\""))
}

/// An amount of money in yuan, two decimals at most, greater than zero.
pub fn amount(field: &str, text: &str) -> Result<Amount> {
    Amount::parse_positive(text).map_err(|e| decimal_error(field, e, "an amount in yuan such as \"1200000.00\""))
}

fn decimal_error(field: &str, e: DecimalError, what: &str) -> FieldError {
    match e {
        DecimalError::Empty => FieldError::new(field, format!("is required: {what}")),
        other => FieldError::new(field, other),
    }
}

fn id<T>(field: &str, parsed: std::result::Result<T, IdError>) -> Result<T> {
    parsed.map_err(|e| match e {
        IdError::Empty => FieldError::new(field, "is required"),
        other => FieldError::new(field, other),
    })
}

pub fn auction_id(text: &str) -> Result<AuctionId> {
    id("auction_id", text.parse())
}

/// A bid's optional price: empty lets the auction decide (the posted or the clock price) or
/// refuse; anything else must be a positive price.
pub fn bid_price(field: &str, text: &str) -> Result<Option<Price>> {
    optional_text(text, |t| price(field, t))
}

/// A bid's optional quantity: empty lets the auction decide (the whole lot) or refuse; zero is
/// read here and judged by the auction (a clock bidder's way to drop out).
pub fn bid_quantity(field: &str, text: &str) -> Result<Option<Quantity>> {
    optional_text(text, |t| {
        t.parse::<Quantity>().map_err(|e| {
            decimal_error(field, e, "a quantity in tonnes such as \"4.048\", or \"0\" to drop out of a clock auction")
        })
    })
}

pub fn bid_id(text: &str) -> Result<BidId> {
    id("bid_id", text.parse())
}

/// Client request ids: 1 to 128 printable ASCII characters. They key idempotent retries.
pub fn request_id(text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(FieldError::new("request_id", "is required (a unique id per change, reused only to retry it)"));
    }
    if text.len() > 128 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldError::new("request_id", "must be 1 to 128 printable ASCII characters"));
    }
    Ok(())
}

fn timestamp(field: &str, ts: Option<&prost_types::Timestamp>) -> Result<Timestamp> {
    let ts = ts.ok_or_else(|| FieldError::new(field, "is required"))?;
    // Years 2000 to 2200: anything else is a client bug, not an auction.
    if !(946_684_800..=7_258_118_400).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(FieldError::new(field, "must be a time between 2000 and 2200"));
    }
    Ok(Timestamp::from_micros(ts.seconds * 1_000_000 + i64::from(ts.nanos / 1000)))
}

pub fn to_timestamp(at: Timestamp) -> prost_types::Timestamp {
    let micros = at.as_micros();
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Decodes an enum field; `None` for UNSPECIFIED, an error for values this server does not know.
fn known<E: TryFrom<i32>>(field: &str, raw: i32) -> Result<Option<E>> {
    if raw == 0 {
        return Ok(None);
    }
    E::try_from(raw).map(Some).map_err(|_| FieldError::new(field, format!("has an unknown value {raw}")))
}

fn required<T>(field: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| FieldError::new(field, "is required"))
}

pub fn pollutant(field: &str, raw: i32) -> Result<Option<Pollutant>> {
    Ok(match known::<pb::Pollutant>(field, raw)? {
        None | Some(pb::Pollutant::Unspecified) => None,
        Some(pb::Pollutant::So2) => Some(Pollutant::So2),
        Some(pb::Pollutant::Nox) => Some(Pollutant::Nox),
        Some(pb::Pollutant::Cod) => Some(Pollutant::Cod),
        Some(pb::Pollutant::Nh3N) => Some(Pollutant::Nh3N),
        Some(pb::Pollutant::SmokeDust) => Some(Pollutant::SmokeDust),
        Some(pb::Pollutant::IndustrialDust) => Some(Pollutant::IndustrialDust),
    })
}

pub fn phase(field: &str, raw: i32) -> Result<Option<Phase>> {
    Ok(match known::<pb::AuctionPhase>(field, raw)? {
        None | Some(pb::AuctionPhase::Unspecified) => None,
        Some(pb::AuctionPhase::Scheduled) => Some(Phase::Scheduled),
        Some(pb::AuctionPhase::Open) => Some(Phase::Open),
        Some(pb::AuctionPhase::Settled) => Some(Phase::Settled),
        Some(pb::AuctionPhase::Failed) => Some(Phase::Failed),
        Some(pb::AuctionPhase::Cancelled) => Some(Phase::Cancelled),
        Some(pb::AuctionPhase::Closed) => {
            return Err(FieldError::new(field, "CLOSED is never a resting phase of a sealed auction"));
        }
    })
}

/// An enterprise record as an operator sends it.
pub fn enterprise(e: Option<&pb::Enterprise>) -> Result<Enterprise> {
    let e = required("enterprise", e)?;
    let date = |field: &str, text: &str| {
        crate::config::parse_date(text).ok_or_else(|| FieldError::new(field, "must be YYYY-MM-DD"))
    };
    let permit = if e.permit_number.is_empty() {
        None
    } else {
        if e.permit_number.len() > 64 {
            return Err(FieldError::new("enterprise.permit_number", "must be at most 64 bytes"));
        }
        let valid_from = date("enterprise.permit_valid_from", &e.permit_valid_from)?;
        let valid_until = date("enterprise.permit_valid_until", &e.permit_valid_until)?;
        if valid_until < valid_from {
            return Err(FieldError::new("enterprise.permit_valid_until", "must not be before permit_valid_from"));
        }
        Some(Permit { number: e.permit_number.clone(), valid_from, valid_until })
    };
    if e.name.is_empty() || e.name.len() > 200 {
        return Err(FieldError::new("enterprise.name", "is required, at most 200 bytes"));
    }
    if e.affiliate_group.len() > 64 {
        return Err(FieldError::new("enterprise.affiliate_group", "must be at most 64 bytes"));
    }
    let status =
        enterprise_status("enterprise.status", e.status, &e.status_reason)?.unwrap_or(EnterpriseStatus::Active);
    Ok(Enterprise {
        code: id("enterprise.credit_code", e.credit_code.parse::<CreditCode>())?,
        name: e.name.clone(),
        region: id("enterprise.region_code", e.region_code.parse())?,
        industry: id("enterprise.industry_code", e.industry_code.parse::<IndustryCode>())?,
        permit,
        status,
        group: (!e.affiliate_group.is_empty()).then(|| e.affiliate_group.clone()),
    })
}

/// A status with its reason; `None` when unspecified.
pub fn enterprise_status(field: &str, raw: i32, reason: &str) -> Result<Option<EnterpriseStatus>> {
    if reason.len() > 1000 {
        return Err(FieldError::new("reason", "must be at most 1000 bytes"));
    }
    Ok(match known::<pb::EnterpriseStatus>(field, raw)? {
        None | Some(pb::EnterpriseStatus::Unspecified) => None,
        Some(pb::EnterpriseStatus::Active) => Some(EnterpriseStatus::Active),
        Some(pb::EnterpriseStatus::Suspended) => Some(EnterpriseStatus::Suspended { reason: reason.to_owned() }),
        Some(pb::EnterpriseStatus::Blacklisted) => Some(EnterpriseStatus::Blacklisted { reason: reason.to_owned() }),
    })
}

pub fn pb_enterprise(e: &Enterprise) -> pb::Enterprise {
    let (status, status_reason) = match &e.status {
        EnterpriseStatus::Active => (pb::EnterpriseStatus::Active, String::new()),
        EnterpriseStatus::Suspended { reason } => (pb::EnterpriseStatus::Suspended, reason.clone()),
        EnterpriseStatus::Blacklisted { reason } => (pb::EnterpriseStatus::Blacklisted, reason.clone()),
    };
    pb::Enterprise {
        credit_code: e.code.to_string(),
        name: e.name.clone(),
        region_code: e.region.to_string(),
        industry_code: e.industry.to_string(),
        permit_number: e.permit.as_ref().map(|p| p.number.clone()).unwrap_or_default(),
        permit_valid_from: e.permit.as_ref().map(|p| date_of(p.valid_from)).unwrap_or_default(),
        permit_valid_until: e.permit.as_ref().map(|p| date_of(p.valid_until)).unwrap_or_default(),
        status: status as i32,
        status_reason,
        affiliate_group: e.group.clone().unwrap_or_default(),
    }
}

pub fn region(field: &str, text: &str) -> Result<RegionCode> {
    id(field, text.parse())
}

fn optional_text<T>(text: &str, parse: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    if text.is_empty() { Ok(None) } else { parse(text).map(Some) }
}

pub fn auction_request(req: &pb::CreateAuctionRequest) -> Result<AuctionRequest> {
    let lot = required("lot", req.lot.as_ref())?;
    let format = match known::<pb::AuctionFormat>("format", req.format)? {
        None | Some(pb::AuctionFormat::Unspecified) => return Err(FieldError::new("format", "is required")),
        Some(pb::AuctionFormat::SealedFirstPrice) => Format::SealedFirstPrice,
        Some(pb::AuctionFormat::SealedUniformPrice) => Format::SealedUniformPrice,
        Some(pb::AuctionFormat::SealedPayAsBid) => Format::SealedPayAsBid,
        Some(pb::AuctionFormat::FixedPrice) => Format::FixedPrice,
        Some(pb::AuctionFormat::AscendingEnglish) => Format::AscendingEnglish,
        Some(pb::AuctionFormat::AscendingClock) => Format::AscendingClock,
    };
    let origin = match known::<pb::LotOrigin>("lot.origin", lot.origin)? {
        None | Some(pb::LotOrigin::Unspecified) => return Err(FieldError::new("lot.origin", "is required")),
        Some(pb::LotOrigin::GovernmentReserve) => OriginKind::GovernmentReserve,
        Some(pb::LotOrigin::ErcCertified) => OriginKind::ErcCertified,
        Some(pb::LotOrigin::Allocated) => OriginKind::Allocated,
    };
    let cap_mode = match known::<pb::CapMode>("cap_mode", req.cap_mode)? {
        None | Some(pb::CapMode::Unspecified) => CapMode::PolicyDefault,
        Some(pb::CapMode::None) => CapMode::None,
        Some(pb::CapMode::Percent) => CapMode::Percent,
    };
    let cap_percent = optional_text(&req.cap_percent, |t| {
        Ratio::parse_percent(t, 1000)
            .map_err(|e| FieldError::new("cap_percent", format!("{e} (a percentage over the floor, up to 1000)")))
    })?;
    Ok(AuctionRequest {
        lot: LotRequest {
            id: id("lot.lot_id", lot.lot_id.parse())?,
            pollutant: required("lot.pollutant", pollutant("lot.pollutant", lot.pollutant)?)?,
            quantity: quantity("lot.quantity", &lot.quantity)?,
            fill_unit: optional_text(&lot.fill_unit, |t| quantity("lot.fill_unit", t))?,
            seller: id("lot.seller", lot.seller.parse::<CreditCode>())?,
            origin,
            certificate_id: optional_text(&lot.certificate_id, |t| id("lot.certificate_id", t.parse::<Reference>()))?,
            region: region("lot.region_code", &lot.region_code)?,
            vintage_year: lot.vintage_year,
            valid_years: lot.valid_years,
            project: ProjectFacts {
                investment: optional_text(&lot.project_investment, |t| amount("lot.project_investment", t))?,
                expected_annual_output: optional_text(&lot.expected_annual_output, |t| {
                    amount("lot.expected_annual_output", t)
                })?,
            },
        },
        format,
        tie_rule: match known::<pb::TieRule>("tie_rule", req.tie_rule)? {
            None | Some(pb::TieRule::Unspecified | pb::TieRule::TimePriority) => TieRule::TimePriority,
            Some(pb::TieRule::ProRata) => TieRule::ProRata,
            Some(pb::TieRule::SeededRandom) => TieRule::SeededRandom,
        },
        undersubscription: match known::<pb::Undersubscription>("undersubscription", req.undersubscription)? {
            None | Some(pb::Undersubscription::Unspecified | pb::Undersubscription::SellAvailable) => {
                Undersubscription::SellAvailable
            }
            Some(pb::Undersubscription::Cancel) => Undersubscription::Cancel,
            Some(pb::Undersubscription::ClearAtFloor) => Undersubscription::ClearAtFloor,
        },
        min_bidders: req.min_bidders,
        per_bidder_cap: optional_text(&req.per_bidder_cap_percent, |t| {
            Ratio::parse_percent(t, 100).map_err(|e| {
                FieldError::new("per_bidder_cap_percent", format!("{e} (a percentage of the lot, up to 100)"))
            })
        })?,
        revision: match known::<pb::BidRevision>("bid_revision", req.bid_revision)? {
            None | Some(pb::BidRevision::Unspecified | pb::BidRevision::Revisable) => BidRevision::Revisable,
            Some(pb::BidRevision::Irrevocable) => BidRevision::Irrevocable,
        },
        conversion_factor: optional_text(&req.conversion_factor, |t| {
            Ratio::parse_factor(t).map_err(|e| FieldError::new("conversion_factor", e))
        })?
        .unwrap_or(Ratio::ONE),
        reserve_markup: optional_text(&req.reserve_markup, |t| {
            Ratio::parse_factor(t).map_err(|e| FieldError::new("reserve_markup", e))
        })?,
        cap: CapRequest { mode: cap_mode, percent: cap_percent },
        opens_at: timestamp("opens_at", req.opens_at.as_ref())?,
        closes_at: timestamp("closes_at", req.closes_at.as_ref())?,
        ascending: req.ascending.as_ref().map(ascending_request).transpose()?,
        clock: req.clock.as_ref().map(clock_request).transpose()?,
        deposit: req.deposit.as_ref().map(deposit_rule).transpose()?,
        // Filled in by the exchange from its registry, never by the client.
        seller_section: None,
    })
}

/// A deposit rule: a fixed amount, or a percentage with its years; not both, not neither.
fn deposit_rule(d: &pb::DepositRule) -> Result<DepositRule> {
    match (d.fixed_amount.is_empty(), d.percent.is_empty()) {
        (false, true) if d.years == 0 => Ok(DepositRule::Fixed(amount("deposit.fixed_amount", &d.fixed_amount)?)),
        (false, true) => Err(FieldError::new("deposit.years", "goes with deposit.percent only")),
        (true, false) => Ok(DepositRule::Percentage {
            percent: Ratio::parse_percent(&d.percent, 100)
                .map_err(|e| FieldError::new("deposit.percent", format!("{e} (a percentage, up to 100)")))?,
            years: d.years,
        }),
        (false, false) => Err(FieldError::new("deposit", "give either fixed_amount or percent, not both")),
        (true, true) => Err(FieldError::new("deposit", "give fixed_amount, or percent with years")),
    }
}

/// How the floor and cap were derived, in words with their numbers, e.g. "floor = benchmark
/// 18000.00 x conversion factor 1 x region 140100 factor 1.1 (from 2026-01-01) x reserve
/// markup 1.5 = 29700.00 (rounded up to the fen); cap = floor x (1 + 20%) = 35640.00 (rounded
/// down to the fen)".
pub fn price_derivation(spec: &AuctionSpec) -> String {
    let p = &spec.prices;
    let mut floor =
        format!("floor = benchmark {} x conversion factor {}", p.benchmark, p.conversion_factor.as_factor());
    for f in &spec.factors {
        floor.push_str(&format!(" x {} factor {} (from {})", f.scope, f.factor.as_factor(), date_of(f.from)));
    }
    if p.reserve_markup != Ratio::ONE || spec.lot.origin.is_reserve() {
        floor.push_str(&format!(" x reserve markup {}", p.reserve_markup.as_factor()));
    }
    floor.push_str(&format!(" = {} (rounded up to the fen)", p.floor));
    match (p.cap, p.cap_percent) {
        (Some(cap), Some(pct)) => {
            format!("{floor}; cap = floor x (1 + {}%) = {cap} (rounded down to the fen)", pct.as_percent())
        }
        (Some(cap), None) => format!("{floor}; cap = {cap}"),
        (None, _) => format!("{floor}; no cap"),
    }
}

pub fn pb_deposit_rule(terms: &DepositTerms) -> pb::DepositRule {
    match terms.rule {
        DepositRule::Fixed(amount) => pb::DepositRule { fixed_amount: amount.to_string(), ..Default::default() },
        DepositRule::Percentage { percent, years } => {
            pb::DepositRule { percent: percent.as_percent(), years, ..Default::default() }
        }
    }
}

fn ascending_request(a: &pb::AscendingTerms) -> Result<AscendingRequest> {
    Ok(AscendingRequest {
        start_price: optional_text(&a.start_price, |t| price("ascending.start_price", t))?,
        increment: price("ascending.increment", &a.increment)?,
        countdown_seconds: a.countdown_seconds,
        hard_stop: a.hard_stop.as_ref().map(|t| timestamp("ascending.hard_stop", Some(t))).transpose()?,
        max_extensions: a.max_extensions,
        timed_min_bidders: a.timed_min_bidders,
    })
}

fn clock_request(c: &pb::ClockTerms) -> Result<ClockRequest> {
    Ok(ClockRequest {
        start_price: optional_text(&c.start_price, |t| price("clock.start_price", t))?,
        increment: price("clock.increment", &c.increment)?,
        round_seconds: c.round_seconds,
        silent_keeps_demand: c.silent_keeps_demand,
    })
}

fn pb_clock_state(v: ClockView) -> pb::ClockState {
    pb::ClockState {
        round: v.round,
        clock_price: v.price.to_string(),
        round_ends_at: Some(to_timestamp(v.round_ends_at)),
        last_round_demand: v.last_round_demand.map(|q| q.to_string()).unwrap_or_default(),
    }
}

/// A pseudonym (竞买号) as terminals show it.
pub fn pseudonym(n: u32) -> String {
    format!("B{n:03}")
}

fn pb_pollutant(p: Pollutant) -> pb::Pollutant {
    match p {
        Pollutant::So2 => pb::Pollutant::So2,
        Pollutant::Nox => pb::Pollutant::Nox,
        Pollutant::Cod => pb::Pollutant::Cod,
        Pollutant::Nh3N => pb::Pollutant::Nh3N,
        Pollutant::SmokeDust => pb::Pollutant::SmokeDust,
        Pollutant::IndustrialDust => pb::Pollutant::IndustrialDust,
    }
}

fn pb_format(f: Format) -> pb::AuctionFormat {
    match f {
        Format::SealedFirstPrice => pb::AuctionFormat::SealedFirstPrice,
        Format::SealedUniformPrice => pb::AuctionFormat::SealedUniformPrice,
        Format::SealedPayAsBid => pb::AuctionFormat::SealedPayAsBid,
        Format::FixedPrice => pb::AuctionFormat::FixedPrice,
        Format::AscendingEnglish => pb::AuctionFormat::AscendingEnglish,
        Format::AscendingClock => pb::AuctionFormat::AscendingClock,
    }
}

fn pb_tie_rule(t: TieRule) -> pb::TieRule {
    match t {
        TieRule::TimePriority => pb::TieRule::TimePriority,
        TieRule::ProRata => pb::TieRule::ProRata,
        TieRule::SeededRandom => pb::TieRule::SeededRandom,
    }
}

pub fn pb_phase(p: Phase) -> pb::AuctionPhase {
    match p {
        Phase::Scheduled => pb::AuctionPhase::Scheduled,
        Phase::Open => pb::AuctionPhase::Open,
        Phase::Settled => pb::AuctionPhase::Settled,
        Phase::Failed => pb::AuctionPhase::Failed,
        Phase::Cancelled => pb::AuctionPhase::Cancelled,
    }
}

fn pb_lot(lot: &Lot) -> pb::Lot {
    let (origin, certificate_id) = match &lot.origin {
        LotOrigin::GovernmentReserve => (pb::LotOrigin::GovernmentReserve, String::new()),
        LotOrigin::ErcCertified { certificate_id } => (pb::LotOrigin::ErcCertified, certificate_id.to_string()),
        LotOrigin::Allocated => (pb::LotOrigin::Allocated, String::new()),
    };
    pb::Lot {
        lot_id: lot.id.to_string(),
        pollutant: pb_pollutant(lot.pollutant) as i32,
        quantity: lot.quantity.to_string(),
        fill_unit: lot.fill_unit.to_string(),
        seller: lot.seller.to_string(),
        origin: origin as i32,
        certificate_id,
        region_code: lot.region.to_string(),
        vintage_year: u32::from(lot.vintage_year),
        valid_years: u32::from(lot.valid_years),
        project_investment: lot.project.investment.map(|a| a.to_string()).unwrap_or_default(),
        expected_annual_output: lot.project.expected_annual_output.map(|a| a.to_string()).unwrap_or_default(),
    }
}

pub fn pb_auction(s: &AuctionSnapshot) -> pb::Auction {
    let spec: &Arc<AuctionSpec> = &s.spec;
    pb::Auction {
        auction_id: spec.id.to_string(),
        lot: Some(pb_lot(&spec.lot)),
        format: pb_format(spec.format) as i32,
        tie_rule: pb_tie_rule(spec.tie_rule) as i32,
        undersubscription: match spec.undersubscription {
            Undersubscription::SellAvailable => pb::Undersubscription::SellAvailable,
            Undersubscription::Cancel => pb::Undersubscription::Cancel,
            Undersubscription::ClearAtFloor => pb::Undersubscription::ClearAtFloor,
        } as i32,
        min_bidders: spec.min_bidders,
        per_bidder_cap_percent: spec.per_bidder_cap.map(Ratio::as_percent).unwrap_or_default(),
        bid_revision: match spec.revision {
            BidRevision::Revisable => pb::BidRevision::Revisable,
            BidRevision::Irrevocable => pb::BidRevision::Irrevocable,
        } as i32,
        benchmark_price: spec.prices.benchmark.to_string(),
        conversion_factor: spec.prices.conversion_factor.as_factor(),
        reserve_markup: spec.prices.reserve_markup.as_factor(),
        floor_price: spec.prices.floor.to_string(),
        cap_price: spec.prices.cap.map(|c| c.to_string()).unwrap_or_default(),
        opens_at: Some(to_timestamp(spec.opens_at)),
        closes_at: Some(to_timestamp(spec.closes_at)),
        phase: pb_phase(s.phase) as i32,
        seed_hash: s.seed_hash.clone().unwrap_or_default(),
        created_at: Some(to_timestamp(spec.created_at)),
        buyer_fee_rate: spec.buyer_fee.as_factor(),
        seller_fee_rate: spec.seller_fee.as_factor(),
        ascending: spec.ascending.map(|a| pb::AscendingTerms {
            start_price: a.start_price.to_string(),
            increment: a.increment.to_string(),
            countdown_seconds: a.countdown_seconds,
            hard_stop: a.hard_stop.map(to_timestamp),
            max_extensions: a.max_extensions,
            timed_min_bidders: a.timed_min_bidders,
        }),
        live: s.ascending.map(pb_ascending_state),
        clock: spec.clock.map(|c| pb::ClockTerms {
            start_price: c.start_price.to_string(),
            increment: c.increment.to_string(),
            round_seconds: c.round_seconds,
            silent_keeps_demand: c.silent_keeps_demand,
        }),
        clock_state: s.clock.map(pb_clock_state),
        deposit: spec.deposit.as_ref().map(pb_deposit_rule),
        price_factors: spec
            .factors
            .iter()
            .map(|f| pb::PriceFactor {
                region: match f.scope {
                    FactorScope::Region(r) => r.to_string(),
                    FactorScope::IndustrySection(_) => String::new(),
                },
                industry_section: match f.scope {
                    FactorScope::IndustrySection(c) => c.to_string(),
                    FactorScope::Region(_) => String::new(),
                },
                from: date_of(f.from),
                factor: f.factor.as_factor(),
            })
            .collect(),
        price_derivation: price_derivation(spec),
        deposit_required: spec.deposit.map(|d| d.required.to_string()).unwrap_or_default(),
    }
}

pub fn pb_bid(auction: AuctionId, b: &BidView) -> pb::Bid {
    pb::Bid {
        bid_id: b.id.to_string(),
        auction_id: auction.to_string(),
        bidder: b.bidder.to_string(),
        price: b.price.to_string(),
        quantity: b.quantity.to_string(),
        placed_at: Some(to_timestamp(b.placed_at)),
        state: pb_bid_state(b.state) as i32,
    }
}

fn pb_bid_state(s: BidState) -> pb::BidState {
    match s {
        BidState::Active => pb::BidState::Active,
        BidState::Withdrawn => pb::BidState::Withdrawn,
    }
}

/// A receipt, signed by the server (over `engine::receipt_fields`, see docs/API.md).
pub fn pb_receipt(auction: AuctionId, receipt: &Receipt, signer: &ReceiptSigner) -> pb::BidReceipt {
    let (b, pseudonym_of_bidder) = (&receipt.bid, receipt.pseudonym);
    let fields = crate::engine::receipt_fields(auction, b, pseudonym_of_bidder);
    pb::BidReceipt {
        signature: signer.sign(&fields).to_vec(),
        bidder: b.bidder.to_string(),
        received_at_micros: b.placed_at.as_micros(),
        auction_id: auction.to_string(),
        bid_id: b.id.to_string(),
        price: b.price.to_string(),
        quantity: b.quantity.to_string(),
        received_at: Some(to_timestamp(b.placed_at)),
        state: pb_bid_state(b.state) as i32,
        pseudonym: pseudonym_of_bidder.map(pseudonym).unwrap_or_default(),
    }
}

pub fn pb_auction_event(auction: AuctionId, u: &AuctionUpdate) -> pb::AuctionEvent {
    pb::AuctionEvent {
        auction_id: auction.to_string(),
        sequence: u.sequence,
        kind: match u.kind {
            UpdateKind::State => pb::AuctionEventKind::State,
            UpdateKind::Opened => pb::AuctionEventKind::Opened,
            UpdateKind::Bid => pb::AuctionEventKind::Bid,
            UpdateKind::TimedPeriodStarted => pb::AuctionEventKind::TimedPeriodStarted,
            UpdateKind::Concluded => pb::AuctionEventKind::Concluded,
            UpdateKind::RoundEnded => pb::AuctionEventKind::RoundEnded,
        } as i32,
        at: Some(to_timestamp(u.at)),
        phase: pb_phase(u.phase) as i32,
        live: u.ascending.map(pb_ascending_state),
        settlement_status: u.conclusion.map_or(pb::SettlementStatus::Unspecified, |c| pb_status(c.status)) as i32,
        final_price: u.conclusion.and_then(|c| c.price).map(|p| p.to_string()).unwrap_or_default(),
        winner: u.conclusion.and_then(|c| c.winner).map(pseudonym).unwrap_or_default(),
        clock: u.clock.map(pb_clock_state),
    }
}

fn pb_ascending_state(v: AscendingView) -> pb::AscendingState {
    pb::AscendingState {
        current_price: v.current_price.map(|p| p.to_string()).unwrap_or_default(),
        leader: v.leader.map(pseudonym).unwrap_or_default(),
        min_next_bid: v.min_next.map(|p| p.to_string()).unwrap_or_default(),
        timed_period: v.timed,
        deadline: Some(to_timestamp(v.deadline)),
        extensions: v.extensions,
        bidders: v.bidders,
    }
}

fn pb_status(s: SettlementStatus) -> pb::SettlementStatus {
    match s {
        SettlementStatus::Settled => pb::SettlementStatus::Settled,
        SettlementStatus::Failed => pb::SettlementStatus::Failed,
        SettlementStatus::Cancelled => pb::SettlementStatus::Cancelled,
    }
}

pub fn pb_settlement(r: &RecordedSettlement) -> pb::Settlement {
    let s = &r.settlement;
    pb::Settlement {
        sequence: r.sequence,
        journal_seq: r.journal.seq,
        journal_hash: r.journal.hash.clone(),
        book_root: s.book_root.clone().unwrap_or_default(),
        auction_id: s.auction_id.to_string(),
        lot_id: s.lot_id.to_string(),
        pollutant: pb_pollutant(s.pollutant) as i32,
        format: pb_format(s.format) as i32,
        status: pb_status(s.status) as i32,
        reason: s.reason.map(|r| r.code().to_owned()).unwrap_or_default(),
        clearing_price: s.clearing_price.map(|p| p.to_string()).unwrap_or_default(),
        allocations: s
            .allocations
            .iter()
            .map(|a| pb::Allocation {
                bid_id: a.bid_id.to_string(),
                bidder: a.bidder.to_string(),
                quantity: a.quantity.to_string(),
                unit_price: a.unit_price.to_string(),
                amount: a.amount.to_string(),
                buyer_fee: a.buyer_fee.to_string(),
                seller_fee: a.seller_fee.to_string(),
            })
            .collect(),
        sold_quantity: s.sold.to_string(),
        unsold_quantity: s.unsold.to_string(),
        total_amount: s.total_amount.to_string(),
        total_buyer_fee: s.total_buyer_fee.to_string(),
        total_seller_fee: s.total_seller_fee.to_string(),
        tie_break: s.tie_break.as_ref().map(|t| pb::TieBreak {
            rule: pb_tie_rule(t.rule) as i32,
            marginal_price: t.marginal_price.map(|p| p.to_string()).unwrap_or_default(),
            order: t.order.iter().map(ToString::to_string).collect(),
            seed_hash: t.seed_hash.clone().unwrap_or_default(),
            seed: t.seed.clone().unwrap_or_default(),
        }),
        settled_at: Some(to_timestamp(s.settled_at)),
        floor_price: s.floor.to_string(),
        cap_price: s.cap.map(|c| c.to_string()).unwrap_or_default(),
        note: s.note.clone().unwrap_or_default(),
        deposits: s
            .deposits
            .iter()
            .map(|d| pb::DepositOutcome {
                enterprise: d.enterprise.to_string(),
                deposit: d.deposit.to_string(),
                applied: d.applied.to_string(),
                released: d.released.to_string(),
            })
            .collect(),
    }
}
