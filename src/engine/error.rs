//! What the core says when a command breaks a rule. Every variant has a stable [`Reason`] and
//! carries the numbers a client needs to correct itself. Texts never mention other bidders'
//! bids: a sealed book must not leak through an error.

use crate::domain::{
    Amount, AuctionId, MAX_BID_AMOUNT_FEN, Price, Quantity, QuantityTotal, Ratio, Reason, Timestamp, format_units,
};

use super::Phase;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{field} {reason}")]
    InvalidSpec { field: &'static str, reason: String },
    #[error("quantity must be a multiple of the fill unit {fill_unit} t")]
    NotFillMultiple { fill_unit: Quantity },
    #[error("quantity must be the whole lot, {lot_quantity} t, in a single-lot auction")]
    WholeLotOnly { lot_quantity: Quantity },
    #[error("quantity is required in a divisible-lot auction")]
    QuantityRequired,
    #[error("price is required in this auction")]
    PriceRequired,
    #[error("quantity must be positive; only a clock auction's demand may drop to zero")]
    ZeroQuantity,
    #[error("price x quantity exceeds the largest amount the engine accepts")]
    AmountOverflow,
    #[error("the auction is not open yet; it opens at {opens_at}")]
    NotOpen { opens_at: Timestamp },
    #[error("the auction is closed to bids since {closes_at}")]
    AuctionClosed { closes_at: Timestamp },
    #[error("the auction is {phase}; {action} is not possible")]
    InvalidTransition { phase: Phase, action: &'static str },
    #[error("price is below the floor of {floor} yuan/t")]
    BelowFloor { floor: Price },
    #[error("price is above the cap of {cap} yuan/t")]
    AboveCap { cap: Price },
    #[error("a fixed-price sale takes requests at its posted price of {posted} yuan/t only")]
    NotPostedPrice { posted: Price },
    #[error("round {round} ended at {ends_at}; state your demand in the next round")]
    RoundOver { round: u32, ends_at: Timestamp },
    #[error("round {round}'s clock price is {clock_price} yuan/t; demand is stated at it")]
    NotClockPrice { clock_price: Price, round: u32 },
    #[error("demand may not rise above {allowed} t (your demand at the end of the last round)")]
    ActivityRule { allowed: Quantity },
    #[error("the bid must be at least {min_next} yuan/t")]
    BidTooLow { current: Option<Price>, min_next: Price },
    #[error("you already hold the highest bid, {current} yuan/t")]
    AlreadyLeading { current: Price },
    #[error("the price has reached the cap of {cap} yuan/t; the first bidder there wins")]
    CapReached { cap: Price },
    #[error("quantity exceeds the lot of {lot_quantity} t")]
    QuantityExceedsLot { lot_quantity: Quantity },
    #[error("the per-bidder cap of {cap_percent}% ({cap} t) leaves room for {room_left} t")]
    BidderCapExceeded { cap_percent: String, cap: Quantity, room_left: Quantity },
    #[error("your active bids together may hold at most {limit} t; room left {room_left} t")]
    BidderTotalTooLarge { limit: Quantity, room_left: Quantity },
    #[error("you already have a bid in this single-lot auction; revise it instead")]
    BidExists,
    #[error("bids in this auction are irrevocable")]
    BidIrrevocable,
    #[error("the bid was withdrawn")]
    BidWithdrawn,
    #[error("no such bid of yours in this auction")]
    BidNotFound,
    #[error("bids are sealed until the auction closes at {closes_at}")]
    BidsSealed { closes_at: Timestamp },
    #[error("bid id already in use")]
    DuplicateBidId,
    #[error("the auction holds as many bids as one book can")]
    BookFull,
    #[error("you have placed {limit} bids in this auction, as many as one bidder may")]
    TooManyBids { limit: u32 },
    #[error("the lot is on sale in auction {auction}, which has not concluded")]
    LotOnSale { auction: AuctionId },
    #[error("the lot was sold in auction {auction} and cannot be offered again")]
    LotSold { auction: AuctionId },
    #[error("the enterprise is not in the trading centre's registry")]
    NotRegistered,
    #[error("the enterprise is suspended from trading: {reason}")]
    EnterpriseSuspended { reason: String },
    #[error("the enterprise is blacklisted: {reason}")]
    EnterpriseBlacklisted { reason: String },
    #[error("the enterprise has no discharge permit on record")]
    PermitMissing,
    #[error(
        "the discharge permit, valid {valid_from} to {valid_until}, does not cover bidding until the close on {close_date}"
    )]
    PermitNotValid { valid_from: String, valid_until: String, close_date: String },
    #[error("industry {industry} is not admitted; admitted sections: {admitted}")]
    IndustryNotAdmitted { industry: String, admitted: String },
    #[error("buyers in region {buyer_region} may buy only under rule {rule}; the lot is in {lot_region}")]
    RegionRestricted { buyer_region: String, lot_region: String, rule: &'static str },
    #[error(
        "the deposit of {deposit} yuan does not cover {required} yuan required and an exposure of {exposure} yuan; {missing} yuan is missing"
    )]
    DepositInsufficient { deposit: Amount, required: Amount, exposure: Amount, missing: Amount },
}

impl EngineError {
    /// The stable, machine-readable reason; its [`Reason::status`] is the gRPC status code.
    pub fn reason(&self) -> Reason {
        use EngineError::*;
        match self {
            InvalidSpec { .. } => Reason::InvalidSpec,
            NotFillMultiple { .. } => Reason::NotFillMultiple,
            WholeLotOnly { .. } => Reason::WholeLotOnly,
            QuantityRequired => Reason::QuantityRequired,
            PriceRequired => Reason::PriceRequired,
            ZeroQuantity => Reason::ZeroQuantity,
            AmountOverflow => Reason::AmountOverflow,
            NotOpen { .. } => Reason::AuctionNotOpen,
            AuctionClosed { .. } => Reason::AuctionClosed,
            InvalidTransition { .. } => Reason::InvalidTransition,
            BelowFloor { .. } => Reason::BelowFloor,
            AboveCap { .. } => Reason::AboveCap,
            NotPostedPrice { .. } => Reason::NotPostedPrice,
            BidTooLow { .. } => Reason::BidTooLow,
            RoundOver { .. } => Reason::RoundOver,
            NotClockPrice { .. } => Reason::NotClockPrice,
            ActivityRule { .. } => Reason::ActivityRule,
            AlreadyLeading { .. } => Reason::AlreadyLeading,
            CapReached { .. } => Reason::CapReached,
            QuantityExceedsLot { .. } => Reason::QuantityExceedsLot,
            BidderCapExceeded { .. } => Reason::BidderCapExceeded,
            BidderTotalTooLarge { .. } => Reason::BidderTotalTooLarge,
            BidExists => Reason::BidExists,
            BidIrrevocable => Reason::BidIrrevocable,
            BidWithdrawn => Reason::BidWithdrawn,
            BidNotFound => Reason::BidNotFound,
            BidsSealed { .. } => Reason::BidsSealed,
            DuplicateBidId => Reason::DuplicateBidId,
            BookFull => Reason::BookFull,
            TooManyBids { .. } => Reason::TooManyBids,
            LotOnSale { .. } => Reason::LotOnSale,
            LotSold { .. } => Reason::LotSold,
            NotRegistered => Reason::NotRegistered,
            EnterpriseSuspended { .. } => Reason::EnterpriseSuspended,
            EnterpriseBlacklisted { .. } => Reason::EnterpriseBlacklisted,
            PermitMissing => Reason::PermitMissing,
            PermitNotValid { .. } => Reason::PermitNotValid,
            IndustryNotAdmitted { .. } => Reason::IndustryNotAdmitted,
            RegionRestricted { .. } => Reason::RegionRestricted,
            DepositInsufficient { .. } => Reason::DepositInsufficient,
        }
    }

    /// The request field at fault, for malformed input.
    pub fn field(&self) -> Option<&'static str> {
        use EngineError::*;
        match self {
            InvalidSpec { field, .. } => Some(field),
            NotFillMultiple { .. } | WholeLotOnly { .. } | QuantityRequired | ZeroQuantity => Some("quantity"),
            PriceRequired | AmountOverflow => Some("price"),
            LotOnSale { .. } | LotSold { .. } => Some("lot.lot_id"),
            _ => None,
        }
    }

    /// Numbers the client needs, as (key, value) pairs for the error's metadata.
    pub fn details(&self) -> Vec<(&'static str, String)> {
        use EngineError::*;
        match self {
            NotFillMultiple { fill_unit } => vec![("fill_unit", fill_unit.to_string())],
            WholeLotOnly { lot_quantity } | QuantityExceedsLot { lot_quantity } => {
                vec![("lot_quantity", lot_quantity.to_string())]
            }
            AmountOverflow => vec![("max_amount", format_units(MAX_BID_AMOUNT_FEN, 2))],
            NotOpen { opens_at } => vec![("opens_at", opens_at.to_string())],
            AuctionClosed { closes_at } | BidsSealed { closes_at } => vec![("closes_at", closes_at.to_string())],
            InvalidTransition { phase, action } => vec![("phase", phase.to_string()), ("action", action.to_string())],
            BelowFloor { floor } => vec![("floor", floor.to_string())],
            AboveCap { cap } => vec![("cap", cap.to_string())],
            NotPostedPrice { posted } => vec![("posted_price", posted.to_string())],
            BidTooLow { current, min_next } => {
                let mut details = vec![("min_acceptable", min_next.to_string())];
                if let Some(current) = current {
                    details.insert(0, ("current_price", current.to_string()));
                }
                details
            }
            AlreadyLeading { current } => vec![("current_price", current.to_string())],
            RoundOver { round, ends_at } => vec![("round", round.to_string()), ("ends_at", ends_at.to_string())],
            NotClockPrice { clock_price, round } => {
                vec![("clock_price", clock_price.to_string()), ("round", round.to_string())]
            }
            ActivityRule { allowed } => vec![("allowed_max", allowed.to_string())],
            CapReached { cap } => vec![("cap", cap.to_string())],
            BidderCapExceeded { cap_percent, cap, room_left } => vec![
                ("cap_percent", cap_percent.clone()),
                ("cap", cap.to_string()),
                ("room_left", room_left.to_string()),
            ],
            LotOnSale { auction } | LotSold { auction } => vec![("auction_id", auction.to_string())],
            TooManyBids { limit } => vec![("limit", limit.to_string())],
            BidderTotalTooLarge { limit, room_left } => {
                vec![("limit", limit.to_string()), ("room_left", room_left.to_string())]
            }
            EnterpriseSuspended { reason } | EnterpriseBlacklisted { reason } => {
                vec![("status_reason", reason.clone())]
            }
            PermitNotValid { valid_from, valid_until, close_date } => vec![
                ("valid_from", valid_from.clone()),
                ("valid_until", valid_until.clone()),
                ("close_date", close_date.clone()),
            ],
            IndustryNotAdmitted { industry, admitted } => {
                vec![("industry", industry.clone()), ("admitted_sections", admitted.clone())]
            }
            RegionRestricted { buyer_region, lot_region, rule } => vec![
                ("buyer_region", buyer_region.clone()),
                ("lot_region", lot_region.clone()),
                ("rule", rule.to_string()),
            ],
            DepositInsufficient { deposit, required, exposure, missing } => vec![
                ("deposit", deposit.to_string()),
                ("required", required.to_string()),
                ("exposure", exposure.to_string()),
                ("missing", missing.to_string()),
            ],
            _ => Vec::new(),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> EngineError {
        EngineError::InvalidSpec { field, reason: reason.into() }
    }

    /// The room `held` leaves under `limit`, as a quantity (zero when none is left).
    pub(crate) fn room_left(limit: Quantity, held: QuantityTotal) -> Quantity {
        QuantityTotal::of(limit).minus_total(held).and_then(QuantityTotal::as_quantity).unwrap_or(Quantity::ZERO)
    }

    pub(crate) fn bidder_cap(cap_ratio: Ratio, cap: Quantity, held: QuantityTotal) -> EngineError {
        EngineError::BidderCapExceeded {
            cap_percent: cap_ratio.as_percent(),
            cap,
            room_left: EngineError::room_left(cap, held),
        }
    }
}
