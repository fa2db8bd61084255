//! The result of an auction, as recorded and published. A settlement is a value: once
//! emitted it is never edited (a correction would be a new settlement that supersedes it).

use serde::{Deserialize, Serialize};

use crate::domain::{Amount, AuctionId, BidId, BidderId, LotId, Pollutant, Price, Quantity, Reason, Timestamp};

use super::{Format, TieRule};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SettlementStatus {
    Settled,
    /// 流拍: no valid bids, or fewer bidders than required.
    Failed,
    /// By the operator, or undersubscribed under the CANCEL policy.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub bid_id: BidId,
    pub bidder: BidderId,
    pub quantity: Quantity,
    pub unit_price: Price,
    /// unit_price x quantity, rounded half-up to the fen.
    pub amount: Amount,
    pub buyer_fee: Amount,
    pub seller_fee: Amount,
}

/// How bids that tied at the margin were served, so that anyone can re-check the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TieBreak {
    pub rule: TieRule,
    /// The price level whose bids competed for the last units, when any did.
    pub marginal_price: Option<Price>,
    /// Bid ids at the margin, in the order the rule served them.
    pub order: Vec<BidId>,
    /// SEEDED_RANDOM: hex SHA-256 of the seed, published at creation.
    pub seed_hash: Option<String>,
    /// SEEDED_RANDOM: the seed, hex, revealed now. Each bid at the margin drew
    /// SHA-256(seed || bid id as 8 big-endian bytes); lower draws were served first.
    pub seed: Option<String>,
}

/// What becomes of one enterprise's deposit (保证金) when the auction concludes: a winner's is
/// applied to what it pays (its amounts plus its buyer fees) up to the deposit, and the rest
/// released; a loser's, and every deposit of an auction that sold nothing, is released whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositOutcome {
    pub enterprise: BidderId,
    pub deposit: Amount,
    pub applied: Amount,
    pub released: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub auction_id: AuctionId,
    pub lot_id: LotId,
    pub pollutant: Pollutant,
    pub format: Format,
    pub status: SettlementStatus,
    /// Why nothing was sold: `NO_BIDS`, `TOO_FEW_BIDDERS`, `UNDERSUBSCRIBED` or
    /// `CANCELLED_BY_OPERATOR`.
    pub reason: Option<Reason>,
    pub note: Option<String>,
    /// The price every winner pays in a uniform-price auction, the winning bid in a
    /// first-price one, the floor when cleared at the floor; `None` when nothing was sold or
    /// winners pay different prices.
    pub clearing_price: Option<Price>,
    pub allocations: Vec<Allocation>,
    pub sold: Quantity,
    pub unsold: Quantity,
    pub total_amount: Amount,
    pub total_buyer_fee: Amount,
    pub total_seller_fee: Amount,
    pub tie_break: Option<TieBreak>,
    pub floor: Price,
    pub cap: Option<Price>,
    pub settled_at: Timestamp,
    /// Every deposit recorded for the auction, by enterprise; empty when it asked for none
    /// (and then left out of the JSON, so such settlements read as they always did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deposits: Vec<DepositOutcome>,
    /// Hex of the Merkle root of the final book (every bid's last version, by bid id; see
    /// `domain::receipt`), so that a bidder can prove its bid was in the book unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book_root: Option<String>,
}
