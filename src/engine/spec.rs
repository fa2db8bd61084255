//! What an auction sells and under which rules: the lot, the format, the tie and
//! undersubscription policies, and the price band resolved from policy at creation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{
    AuctionId, CreditCode, LotId, Pollutant, Price, PricePolicy, Quantity, Ratio, Reference, RegionCode, Timestamp,
};

use super::EngineError;

/// Where the rights on sale come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LotOrigin {
    /// 政府储备排污权, sold by the trading centre.
    GovernmentReserve,
    /// A verified reduction credit with its certificate.
    ErcCertified { certificate_id: Reference },
    /// Rights allocated under cap-and-allocate.
    Allocated,
}

impl LotOrigin {
    pub fn is_reserve(&self) -> bool {
        matches!(self, LotOrigin::GovernmentReserve)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub id: LotId,
    pub pollutant: Pollutant,
    pub quantity: Quantity,
    /// Bids and allocations are whole multiples of it; the lot quantity is one too.
    pub fill_unit: Quantity,
    pub seller: CreditCode,
    pub origin: LotOrigin,
    pub region: RegionCode,
    pub vintage_year: u16,
    pub valid_years: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Format {
    SealedFirstPrice,
    SealedUniformPrice,
    SealedPayAsBid,
    /// A government reserve sale at a posted price (定价出售): requests for quantities at the
    /// floor, which is the posted price; allocated by time priority or pro-rata when
    /// oversubscribed. Requests are private to their bidder until the close, as sealed bids.
    FixedPrice,
}

impl Format {
    /// Whether the lot may be split among several winners.
    pub fn is_divisible(self) -> bool {
        !matches!(self, Format::SealedFirstPrice)
    }

    pub fn code(self) -> &'static str {
        match self {
            Format::SealedFirstPrice => "SEALED_FIRST_PRICE",
            Format::SealedUniformPrice => "SEALED_UNIFORM_PRICE",
            Format::SealedPayAsBid => "SEALED_PAY_AS_BID",
            Format::FixedPrice => "FIXED_PRICE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TieRule {
    /// 价格优先、时间优先: earlier bids are served first.
    #[default]
    TimePriority,
    /// Largest remainder in fill units, then time.
    ProRata,
    /// Order by SHA-256(seed || bid id); the seed is committed by hash at creation.
    SeededRandom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Undersubscription {
    /// Fill every valid bid; the rest stays unsold.
    #[default]
    SellAvailable,
    /// No sale when total demand is below supply.
    Cancel,
    /// Fill every valid bid at the floor price.
    ClearAtFloor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BidRevision {
    #[default]
    Revisable,
    Irrevocable,
}

/// How the upper band is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CapChoice {
    /// Policy's enterprise cap for non-reserve lots, none for reserve lots.
    #[default]
    PolicyDefault,
    None,
    PercentOverFloor(Ratio),
}

/// The prices an auction is held to, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBand {
    /// The benchmark in force when the auction was created.
    pub benchmark: Price,
    pub conversion_factor: Ratio,
    /// 1 for non-reserve lots.
    pub reserve_markup: Ratio,
    /// benchmark x factor x markup, rounded up to the fen. A bid at exactly the floor is valid.
    pub floor: Price,
    /// floor x (1 + percent), rounded down to the fen. A bid at exactly the cap is valid.
    pub cap: Option<Price>,
}

/// An operator's request for a new auction, validated by [`AuctionSpec::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuctionRequest {
    pub lot: Lot,
    pub format: Format,
    pub tie_rule: TieRule,
    pub undersubscription: Undersubscription,
    pub min_bidders: u32,
    pub per_bidder_cap: Option<Ratio>,
    pub revision: BidRevision,
    pub conversion_factor: Ratio,
    /// `None` takes policy's reserve markup (reserve lots only).
    pub reserve_markup: Option<Ratio>,
    pub cap: CapChoice,
    pub opens_at: Timestamp,
    pub closes_at: Timestamp,
}

/// Everything fixed about an auction once it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionSpec {
    pub id: AuctionId,
    pub lot: Lot,
    pub format: Format,
    pub tie_rule: TieRule,
    pub undersubscription: Undersubscription,
    pub min_bidders: u32,
    pub per_bidder_cap: Option<Ratio>,
    pub revision: BidRevision,
    pub prices: PriceBand,
    pub opens_at: Timestamp,
    pub closes_at: Timestamp,
    pub buyer_fee: Ratio,
    pub seller_fee: Ratio,
    pub created_at: Timestamp,
}

/// At most this many bidders may be required (a guard against typos, not a business rule).
const MAX_MIN_BIDDERS: u32 = 10_000;

impl AuctionSpec {
    /// Checks a request against itself and policy and fixes its prices.
    pub fn resolve(
        id: AuctionId,
        req: AuctionRequest,
        policy: &PricePolicy,
        at: Timestamp,
    ) -> Result<AuctionSpec, EngineError> {
        let lot = &req.lot;
        if !lot.quantity.is_multiple_of(lot.fill_unit) {
            return Err(EngineError::invalid(
                "lot.quantity",
                format!("must be a multiple of the fill unit {} t", lot.fill_unit),
            ));
        }
        if !req.format.is_divisible() && lot.fill_unit != lot.quantity {
            return Err(EngineError::invalid(
                "lot.fill_unit",
                format!("must equal the lot quantity {} t in a single-lot format", lot.quantity),
            ));
        }
        if req.closes_at <= req.opens_at {
            return Err(EngineError::invalid("closes_at", "must be after opens_at"));
        }
        if req.closes_at <= at {
            return Err(EngineError::invalid("closes_at", format!("must be in the future (server time {at})")));
        }
        if req.min_bidders > MAX_MIN_BIDDERS {
            return Err(EngineError::invalid("min_bidders", format!("must be at most {MAX_MIN_BIDDERS}")));
        }
        if req.format == Format::SealedFirstPrice {
            if req.tie_rule == TieRule::ProRata {
                return Err(EngineError::invalid("tie_rule", "PRO_RATA cannot split a single indivisible lot"));
            }
            if req.per_bidder_cap.is_some() {
                return Err(EngineError::invalid(
                    "per_bidder_cap_percent",
                    "a single indivisible lot has no per-bidder cap",
                ));
            }
        }
        if req.format == Format::FixedPrice {
            if req.tie_rule == TieRule::SeededRandom {
                return Err(EngineError::invalid(
                    "tie_rule",
                    "a fixed-price sale allocates by TIME_PRIORITY or PRO_RATA",
                ));
            }
            if matches!(req.cap, CapChoice::PercentOverFloor(_)) {
                return Err(EngineError::invalid("cap_percent", "a fixed-price sale has one price and no band"));
            }
        }
        if let Some(cap) = req.per_bidder_cap
            && lot.quantity.share_in_units(cap, lot.fill_unit).is_zero()
        {
            return Err(EngineError::invalid(
                "per_bidder_cap_percent",
                format!("leaves less than one fill unit ({} t) per bidder", lot.fill_unit),
            ));
        }
        if req.reserve_markup.is_some() && !lot.origin.is_reserve() {
            return Err(EngineError::invalid("reserve_markup", "applies to government reserve lots only"));
        }
        let benchmark = policy.benchmarks.in_force(lot.pollutant, at).ok_or_else(|| {
            EngineError::invalid("lot.pollutant", format!("no benchmark price for {} is in force", lot.pollutant))
        })?;
        let reserve_markup =
            if lot.origin.is_reserve() { req.reserve_markup.unwrap_or(policy.reserve_markup) } else { Ratio::ONE };
        let floor = benchmark
            .scaled_up(req.conversion_factor, reserve_markup)
            .ok_or_else(|| EngineError::invalid("conversion_factor", "makes the floor price too large"))?;
        let cap_pct = match req.cap {
            _ if req.format == Format::FixedPrice => None,
            CapChoice::PolicyDefault if lot.origin.is_reserve() => None,
            CapChoice::PolicyDefault => policy.enterprise_cap,
            CapChoice::None => None,
            CapChoice::PercentOverFloor(pct) => Some(pct),
        };
        let cap = match cap_pct {
            Some(pct) => Some(
                floor
                    .raised_down(pct)
                    .ok_or_else(|| EngineError::invalid("cap_percent", "makes the cap price too large"))?,
            ),
            None => None,
        };
        Ok(AuctionSpec {
            id,
            format: req.format,
            tie_rule: req.tie_rule,
            undersubscription: req.undersubscription,
            min_bidders: req.min_bidders,
            per_bidder_cap: req.per_bidder_cap,
            revision: req.revision,
            prices: PriceBand { benchmark, conversion_factor: req.conversion_factor, reserve_markup, floor, cap },
            opens_at: req.opens_at,
            closes_at: req.closes_at,
            buyer_fee: policy.buyer_fee,
            seller_fee: policy.seller_fee,
            created_at: at,
            lot: req.lot,
        })
    }

    /// The most one bidder may hold in active bids, in whole fill units.
    pub fn bidder_cap_quantity(&self) -> Option<Quantity> {
        self.per_bidder_cap.map(|cap| self.lot.quantity.share_in_units(cap, self.lot.fill_unit))
    }
}

/// Where an auction is in its life. Settled, Failed and Cancelled are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Scheduled,
    Open,
    Settled,
    Failed,
    Cancelled,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Settled | Phase::Failed | Phase::Cancelled)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Scheduled => "scheduled",
            Phase::Open => "open",
            Phase::Settled => "settled",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
        })
    }
}
