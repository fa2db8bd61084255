//! What an auction sells and under which rules: the lot, the format, the tie and
//! undersubscription policies, and the price band resolved from policy at creation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{
    Amount, AuctionId, CreditCode, FactorScope, LotId, Pollutant, Price, PriceFactor, PricePolicy, Quantity, Ratio,
    Reference, RegionCode, Timestamp,
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

/// Which kind of origin a lot request names; an ERC lot also names its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKind {
    GovernmentReserve,
    ErcCertified,
    Allocated,
}

/// A lot as an operator asks for it; [`AuctionSpec::resolve`] checks it into a [`Lot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotRequest {
    pub id: LotId,
    pub pollutant: Pollutant,
    pub quantity: Quantity,
    /// `None`: the whole lot for a single-lot format, one kilogram for a divisible one.
    pub fill_unit: Option<Quantity>,
    pub seller: CreditCode,
    pub origin: OriginKind,
    /// Required for ERC_CERTIFIED lots, refused for others.
    pub certificate_id: Option<Reference>,
    pub region: RegionCode,
    /// The year the right was certified, 2000 to 2200.
    pub vintage_year: u32,
    /// How many years the right is valid, 1 to 100.
    pub valid_years: u32,
    /// What the seller says of the project behind the right, for statistics; optional.
    pub project: ProjectFacts,
}

/// Figures about the project that produced a right (the pilot's review asked for them), kept
/// for statistics only: no rule reads them. Amounts in fen, as every amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProjectFacts {
    /// The investment in the project (e.g. the reduction works behind an ERC).
    pub investment: Option<Amount>,
    /// The project's expected annual output value.
    pub expected_annual_output: Option<Amount>,
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
    /// Optional figures for statistics; absent in lots created before they existed.
    #[serde(default)]
    pub project: ProjectFacts,
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
    /// Open online bidding on one indivisible lot (网络竞价): a public rising price, a
    /// free-bidding period until `closes_at`, then a timed period in which each accepted bid
    /// restarts a countdown. The last highest bidder wins and pays its bid. See
    /// [`AscendingTerms`].
    AscendingEnglish,
    /// A clock auction of a divisible lot: the clock price rises round by round and each
    /// bidder states the quantity it wants at it, never more than in the round before; it
    /// ends when demand fits the supply. See [`ClockTerms`].
    AscendingClock,
}

impl Format {
    /// Whether the lot may be split among several winners.
    pub fn is_clock(self) -> bool {
        self == Format::AscendingClock
    }

    pub fn is_divisible(self) -> bool {
        !matches!(self, Format::SealedFirstPrice | Format::AscendingEnglish)
    }

    /// Whether bids are public as they come (under pseudonyms), rather than sealed.
    pub fn is_open_outcry(self) -> bool {
        self == Format::AscendingEnglish
    }

    pub fn code(self) -> &'static str {
        match self {
            Format::SealedFirstPrice => "SEALED_FIRST_PRICE",
            Format::SealedUniformPrice => "SEALED_UNIFORM_PRICE",
            Format::SealedPayAsBid => "SEALED_PAY_AS_BID",
            Format::FixedPrice => "FIXED_PRICE",
            Format::AscendingEnglish => "ASCENDING_ENGLISH",
            Format::AscendingClock => "ASCENDING_CLOCK",
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

/// How an operator asks for the band's cap: a mode, and a percentage that goes with the
/// percent mode only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapRequest {
    pub mode: CapMode,
    pub percent: Option<Ratio>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapMode {
    /// Policy's default (also what an unspecified mode means).
    #[default]
    PolicyDefault,
    /// No cap.
    None,
    /// `percent` over the floor.
    Percent,
}

/// The prices an auction is held to, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBand {
    /// The benchmark in force when the auction was created.
    pub benchmark: Price,
    pub conversion_factor: Ratio,
    /// 1 for non-reserve lots.
    pub reserve_markup: Ratio,
    /// benchmark x factor x policy factors x markup, rounded up to the fen. A bid at exactly
    /// the floor is valid.
    pub floor: Price,
    /// floor x (1 + percent), rounded down to the fen. A bid at exactly the cap is valid.
    pub cap: Option<Price>,
    /// The percent over the floor the cap was derived from.
    pub cap_percent: Option<Ratio>,
}

/// What each bidder must post before it bids (保证金), as the auction states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepositRule {
    /// The same amount from every bidder.
    Fixed(Amount),
    /// `percent` x benchmark x the lot's quantity x `years` (Quzhou: 10% x benchmark x
    /// quantity x 5 years). The quantity is the whole lot's, so the amount is one figure known
    /// before anyone bids, the same for every bidder.
    Percentage { percent: Ratio, years: u32 },
}

/// An auction's deposit terms, fixed at creation: the rule and the amount it comes to.
///
/// A bid is taken only while the bidder's deposit covers both `required` and its exposure
/// (the WCI maximum bid value: the largest, over its bid prices p, of p x its total quantity
/// bid at prices >= p), see [`super::checks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositTerms {
    pub rule: DepositRule,
    /// What the rule comes to for this auction, in fen.
    pub required: Amount,
}

/// The most years a percentage deposit rule may count (a guard against typos).
const MAX_DEPOSIT_YEARS: u32 = 100;

/// The rules of an ascending (English) auction beyond the common ones.
///
/// Timeline: bidding is free from `opens_at` to `closes_at` (自由报价期); then the timed period
/// (限时报价期) starts with a countdown of `countdown` seconds, and every accepted bid in it
/// restarts the countdown. The auction closes when a countdown runs out, at `hard_stop` if set,
/// or, once `max_extensions` restarts have been granted, when the last countdown runs out.
/// At the cap, the auction's tie rule decides: TIME_PRIORITY, the first to reach the cap wins;
/// SEEDED_RANDOM, a lottery among every bidder at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AscendingTerms {
    /// The first bid's minimum; at least the floor (the request's `None` means the floor).
    pub start_price: Price,
    /// Every later bid is at least the current price plus this.
    pub increment: Price,
    /// The countdown of the timed period, in whole seconds.
    pub countdown_seconds: u32,
    /// No bid counts at or after this, whatever the countdown.
    pub hard_stop: Option<Timestamp>,
    /// At most this many restarts of the countdown (`None`: no limit).
    pub max_extensions: Option<u32>,
    /// The timed period runs only if at least this many bidders bid in the free period;
    /// otherwise the auction concludes when the free period ends.
    pub timed_min_bidders: u32,
}

/// What an operator asks for in an ascending auction; resolved into [`AscendingTerms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AscendingRequest {
    pub start_price: Option<Price>,
    pub increment: Price,
    pub countdown_seconds: u32,
    pub hard_stop: Option<Timestamp>,
    pub max_extensions: Option<u32>,
    pub timed_min_bidders: u32,
}

/// The rules of a clock auction. Round r (from 1) has clock price start + (r - 1) x increment,
/// never above the cap; it lasts `round_seconds` unless the operator advances it. `closes_at`
/// is a hard stop: the auction ends there as it would at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockTerms {
    pub start_price: Price,
    pub increment: Price,
    pub round_seconds: u32,
    /// A bidder silent in a round keeps its last demand (`true`) or drops to zero (`false`).
    pub silent_keeps_demand: bool,
}

/// What an operator asks for in a clock auction; resolved into [`ClockTerms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRequest {
    pub start_price: Option<Price>,
    pub increment: Price,
    pub round_seconds: u32,
    pub silent_keeps_demand: bool,
}

/// The longest countdown an auction may set (a guard against typos).
const MAX_COUNTDOWN_SECONDS: u32 = 24 * 3600;

/// An operator's request for a new auction, validated by [`AuctionSpec::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuctionRequest {
    pub lot: LotRequest,
    pub format: Format,
    pub tie_rule: TieRule,
    pub undersubscription: Undersubscription,
    pub min_bidders: u32,
    pub per_bidder_cap: Option<Ratio>,
    pub revision: BidRevision,
    pub conversion_factor: Ratio,
    /// `None` takes policy's reserve markup (reserve lots only).
    pub reserve_markup: Option<Ratio>,
    pub cap: CapRequest,
    pub opens_at: Timestamp,
    /// Sealed and fixed-price: the close. Ascending: the end of the free-bidding period.
    pub closes_at: Timestamp,
    /// Required for ASCENDING_ENGLISH, refused for the other formats.
    pub ascending: Option<AscendingRequest>,
    /// Required for ASCENDING_CLOCK, refused for the other formats.
    pub clock: Option<ClockRequest>,
    /// `None`: the auction asks no deposit, and bids are not checked against one.
    pub deposit: Option<DepositRule>,
    /// The GB/T 4754 section of the seller's industry, which the shell fills in from the
    /// registry (never the client): policy's industry factor for it applies. `None` for the
    /// trading centre's reserve lots and unregistered sellers.
    pub seller_section: Option<char>,
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
    /// The most bids one bidder may place (revisions excepted), from the server's limits at
    /// creation; `None`: no limit.
    pub max_bids_per_bidder: Option<u32>,
    pub prices: PriceBand,
    pub opens_at: Timestamp,
    pub closes_at: Timestamp,
    pub buyer_fee: Ratio,
    pub seller_fee: Ratio,
    pub created_at: Timestamp,
    /// ASCENDING_ENGLISH only.
    pub ascending: Option<AscendingTerms>,
    /// ASCENDING_CLOCK only.
    pub clock: Option<ClockTerms>,
    /// `None`: no deposit is asked for (the default).
    pub deposit: Option<DepositTerms>,
    /// Policy's conversion factors (价格折算因子) in force at creation for the lot's region and
    /// the seller's industry, which the floor multiplies (see [`PriceBand`]).
    pub factors: Vec<PriceFactor>,
}

/// At most this many bidders may be required (a guard against typos, not a business rule).
const MAX_MIN_BIDDERS: u32 = 10_000;

impl AuctionSpec {
    /// Checks a lot request into a lot for an auction of `format`.
    fn resolve_lot(req: LotRequest, format: Format) -> Result<Lot, EngineError> {
        let fill_unit = match req.fill_unit {
            Some(unit) => unit,
            // A single lot is its own fill unit; divisible lots trade to the kilogram by default.
            None if !format.is_divisible() => req.quantity,
            None => Quantity::from_units(1).unwrap_or(req.quantity),
        };
        if fill_unit.is_zero() {
            return Err(EngineError::invalid("lot.fill_unit", "must be positive"));
        }
        if req.quantity.is_zero() {
            return Err(EngineError::invalid("lot.quantity", "must be positive"));
        }
        let origin = match (req.origin, req.certificate_id) {
            (OriginKind::ErcCertified, Some(certificate_id)) => LotOrigin::ErcCertified { certificate_id },
            (OriginKind::ErcCertified, None) => {
                return Err(EngineError::invalid("lot.certificate_id", "is required for an ERC_CERTIFIED lot"));
            }
            (_, Some(_)) => {
                return Err(EngineError::invalid("lot.certificate_id", "applies to ERC_CERTIFIED lots only"));
            }
            (OriginKind::GovernmentReserve, None) => LotOrigin::GovernmentReserve,
            (OriginKind::Allocated, None) => LotOrigin::Allocated,
        };
        let vintage_year =
            u16::try_from(req.vintage_year).ok().filter(|y| (2000..=2200).contains(y)).ok_or_else(|| {
                EngineError::invalid("lot.vintage_year", "is required: the year the right was certified, 2000 to 2200")
            })?;
        let valid_years = u16::try_from(req.valid_years)
            .ok()
            .filter(|y| (1..=100).contains(y))
            .ok_or_else(|| EngineError::invalid("lot.valid_years", "is required: 1 to 100 years"))?;
        Ok(Lot {
            id: req.id,
            pollutant: req.pollutant,
            quantity: req.quantity,
            fill_unit,
            seller: req.seller,
            origin,
            region: req.region,
            vintage_year,
            valid_years,
            project: req.project,
        })
    }

    /// How the cap is chosen, from the mode and percentage asked for.
    fn resolve_cap(req: CapRequest) -> Result<CapChoice, EngineError> {
        match (req.mode, req.percent) {
            (CapMode::PolicyDefault, None) => Ok(CapChoice::PolicyDefault),
            (CapMode::None, None) => Ok(CapChoice::None),
            (CapMode::Percent, Some(pct)) => Ok(CapChoice::PercentOverFloor(pct)),
            (CapMode::Percent, None) => Err(EngineError::invalid("cap_percent", "is required with CAP_MODE_PERCENT")),
            (_, Some(_)) => Err(EngineError::invalid("cap_percent", "goes with cap_mode CAP_MODE_PERCENT only")),
        }
    }

    /// Checks a request against itself and policy and fixes its prices.
    pub fn resolve(
        id: AuctionId,
        req: AuctionRequest,
        policy: &PricePolicy,
        at: Timestamp,
    ) -> Result<AuctionSpec, EngineError> {
        let lot = Self::resolve_lot(req.lot.clone(), req.format)?;
        let cap_choice = Self::resolve_cap(req.cap)?;
        let lot = &lot;
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
        if !req.format.is_divisible() {
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
            if matches!(cap_choice, CapChoice::PercentOverFloor(_)) {
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
        let scopes = [
            Some(FactorScope::Region(lot.region)),
            req.seller_section.filter(|_| !lot.origin.is_reserve()).map(FactorScope::IndustrySection),
        ];
        let factors: Vec<PriceFactor> =
            scopes.into_iter().flatten().filter_map(|scope| policy.factor_in_force(scope, at)).collect();
        let mut multipliers = vec![req.conversion_factor];
        multipliers.extend(factors.iter().map(|f| f.factor));
        multipliers.push(reserve_markup);
        let floor = benchmark
            .scaled_up_by(&multipliers)
            .filter(|f| !f.is_zero())
            .ok_or_else(|| EngineError::invalid("conversion_factor", "makes the floor price too large or zero"))?;
        let cap_pct = match cap_choice {
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
        let ascending = Self::resolve_ascending(&req, floor, cap)?;
        let clock = Self::resolve_clock(&req, floor, cap)?;
        let deposit = match req.deposit {
            Some(rule) => Some(Self::resolve_deposit(rule, benchmark, lot.quantity)?),
            None => None,
        };
        Ok(AuctionSpec {
            ascending,
            clock,
            deposit,
            id,
            format: req.format,
            tie_rule: req.tie_rule,
            undersubscription: req.undersubscription,
            min_bidders: req.min_bidders,
            per_bidder_cap: req.per_bidder_cap,
            max_bids_per_bidder: policy.max_bids_per_bidder,
            // Open bids stand: others have already bid against them.
            revision: if req.format.is_open_outcry() { BidRevision::Irrevocable } else { req.revision },
            prices: PriceBand {
                benchmark,
                conversion_factor: req.conversion_factor,
                reserve_markup,
                floor,
                cap,
                cap_percent: cap_pct,
            },
            factors,
            opens_at: req.opens_at,
            closes_at: req.closes_at,
            buyer_fee: policy.buyer_fee,
            seller_fee: policy.seller_fee,
            created_at: at,
            lot: lot.clone(),
        })
    }

    /// Checks a deposit rule and works out what it comes to: exact in fen, percentages
    /// rounded half-up once, after benchmark x quantity.
    fn resolve_deposit(rule: DepositRule, benchmark: Price, quantity: Quantity) -> Result<DepositTerms, EngineError> {
        let required = match rule {
            DepositRule::Fixed(amount) if amount.is_zero() => {
                return Err(EngineError::invalid("deposit.amount", "must be positive"));
            }
            DepositRule::Fixed(amount) => amount,
            DepositRule::Percentage { percent, .. } if percent.ppm() <= 0 || percent > Ratio::ONE => {
                return Err(EngineError::invalid("deposit.percent", "must be above 0 and at most 100"));
            }
            DepositRule::Percentage { years, .. } if years == 0 || years > MAX_DEPOSIT_YEARS => {
                return Err(EngineError::invalid("deposit.years", format!("must be 1 to {MAX_DEPOSIT_YEARS} years")));
            }
            DepositRule::Percentage { percent, years } => Amount::of(benchmark, quantity)
                .map(|value| value.times(percent))
                .and_then(|year| i64::from(years).checked_mul(year.units()))
                .and_then(Amount::from_units)
                .filter(|a| !a.is_zero())
                .ok_or_else(|| EngineError::invalid("deposit.percent", "gives no amount the engine can hold"))?,
        };
        Ok(DepositTerms { rule, required })
    }

    fn resolve_clock(
        req: &AuctionRequest,
        floor: Price,
        cap: Option<Price>,
    ) -> Result<Option<ClockTerms>, EngineError> {
        let Some(clock) = req.clock.filter(|_| req.format.is_clock()) else {
            return match (req.format.is_clock(), req.clock) {
                (true, None) => Err(EngineError::invalid("clock.increment", "is required")),
                (false, Some(_)) => Err(EngineError::invalid("clock", "applies to ASCENDING_CLOCK auctions only")),
                _ => Ok(None),
            };
        };
        if clock.increment.is_zero() {
            return Err(EngineError::invalid("clock.increment", "must be positive"));
        }
        let start_price = clock.start_price.unwrap_or(floor);
        if start_price < floor {
            return Err(EngineError::invalid("clock.start_price", format!("must be at least the floor {floor}")));
        }
        if cap.is_some_and(|cap| start_price > cap) {
            return Err(EngineError::invalid("clock.start_price", "must be at most the cap"));
        }
        if clock.round_seconds == 0 || clock.round_seconds > MAX_COUNTDOWN_SECONDS {
            return Err(EngineError::invalid(
                "clock.round_seconds",
                format!("must be 1 to {MAX_COUNTDOWN_SECONDS} seconds"),
            ));
        }
        if req.tie_rule == TieRule::SeededRandom {
            return Err(EngineError::invalid(
                "tie_rule",
                "leftover supply in a clock auction goes by TIME_PRIORITY or PRO_RATA",
            ));
        }
        Ok(Some(ClockTerms {
            start_price,
            increment: clock.increment,
            round_seconds: clock.round_seconds,
            silent_keeps_demand: clock.silent_keeps_demand,
        }))
    }

    fn resolve_ascending(
        req: &AuctionRequest,
        floor: Price,
        cap: Option<Price>,
    ) -> Result<Option<AscendingTerms>, EngineError> {
        let Some(asc) = req.ascending.filter(|_| req.format == Format::AscendingEnglish) else {
            return match (req.format, req.ascending) {
                (Format::AscendingEnglish, None) => Err(EngineError::invalid("ascending.increment", "is required")),
                (_, Some(_)) => Err(EngineError::invalid("ascending", "applies to ASCENDING_ENGLISH auctions only")),
                _ => Ok(None),
            };
        };
        if asc.increment.is_zero() {
            return Err(EngineError::invalid("ascending.increment", "must be positive"));
        }
        let start_price = asc.start_price.unwrap_or(floor);
        if start_price < floor {
            return Err(EngineError::invalid("ascending.start_price", format!("must be at least the floor {floor}")));
        }
        if cap.is_some_and(|cap| start_price > cap) {
            return Err(EngineError::invalid("ascending.start_price", "must be at most the cap"));
        }
        if asc.countdown_seconds == 0 || asc.countdown_seconds > MAX_COUNTDOWN_SECONDS {
            return Err(EngineError::invalid(
                "ascending.countdown_seconds",
                format!("must be 1 to {MAX_COUNTDOWN_SECONDS} seconds"),
            ));
        }
        if asc.hard_stop.is_some_and(|stop| stop <= req.closes_at) {
            return Err(EngineError::invalid("ascending.hard_stop", "must be after the free period ends (closes_at)"));
        }
        if asc.timed_min_bidders > MAX_MIN_BIDDERS {
            return Err(EngineError::invalid(
                "ascending.timed_min_bidders",
                format!("must be at most {MAX_MIN_BIDDERS}"),
            ));
        }
        Ok(Some(AscendingTerms {
            start_price,
            increment: asc.increment,
            countdown_seconds: asc.countdown_seconds,
            hard_stop: asc.hard_stop,
            max_extensions: asc.max_extensions,
            timed_min_bidders: asc.timed_min_bidders,
        }))
    }

    /// The most one bidder may hold in active bids, in whole fill units.
    pub fn bidder_cap_quantity(&self) -> Option<Quantity> {
        self.per_bidder_cap.map(|cap| self.lot.quantity.share_in_units(cap, self.lot.fill_unit))
    }
}

/// Whether a lot may be offered in a new auction, given the latest auction that offered it
/// (`None`: never offered): a lot whose auction failed (流拍) or was cancelled may be offered
/// again; one on sale, or sold, may not.
pub fn lot_offerable(latest: Option<(AuctionId, Phase)>) -> Result<(), EngineError> {
    match latest {
        None | Some((_, Phase::Failed | Phase::Cancelled)) => Ok(()),
        Some((auction, Phase::Settled)) => Err(EngineError::LotSold { auction }),
        Some((auction, Phase::Scheduled | Phase::Open)) => Err(EngineError::LotOnSale { auction }),
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
