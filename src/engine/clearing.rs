//! Clearing: from a closed sealed book to a settlement. Pure functions of the book, the spec
//! and the seed; no state of their own.
//!
//! Divisible lots are filled in price order (highest first). Whole price levels are filled
//! while supply lasts; the level that does not fit (the margin) is shared by the auction's tie
//! rule. Within a level, bids keep arrival order because the sort is stable.

use std::cmp::Reverse;

use sha2::{Digest, Sha256};

use crate::domain::{Amount, BidId, Price, Quantity, Timestamp};

use super::book::{SealedBook, Slot};
use super::settlement::{Allocation, Settlement, SettlementStatus, TieBreak, reason};
use super::{AuctionSpec, Format, TieRule, Undersubscription};

/// The secret behind SEEDED_RANDOM tie-breaks, drawn by the shell when the auction is created.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl Seed {
    pub fn hash_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0))
    }

    /// The draw of one bid: SHA-256(seed || bid id as 8 big-endian bytes).
    pub fn draw(&self, bid: BidId) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(bid.get().to_be_bytes());
        h.finalize().into()
    }
}

impl std::fmt::Debug for Seed {
    /// Never prints the seed itself: it is secret until the settlement reveals it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seed(sha256={})", self.hash_hex())
    }
}

/// A settlement that sold nothing.
pub(crate) fn empty(spec: &AuctionSpec, status: SettlementStatus, why: &str, seed: Option<&Seed>, at: Timestamp) -> Settlement {
    Settlement {
        auction_id: spec.id,
        lot_id: spec.lot.id.clone(),
        pollutant: spec.lot.pollutant,
        format: spec.format,
        status,
        reason: Some(why.to_owned()),
        note: None,
        clearing_price: None,
        allocations: Vec::new(),
        sold: Quantity::ZERO,
        unsold: spec.lot.quantity,
        total_amount: Amount::ZERO,
        total_buyer_fee: Amount::ZERO,
        total_seller_fee: Amount::ZERO,
        tie_break: seed.map(|s| seed_evidence(spec.tie_rule, s)),
        floor: spec.prices.floor,
        cap: spec.prices.cap,
        settled_at: at,
    }
}

fn seed_evidence(rule: TieRule, seed: &Seed) -> TieBreak {
    TieBreak { rule, marginal_price: None, order: Vec::new(), seed_hash: Some(seed.hash_hex()), seed: Some(hex::encode(seed.0)) }
}

/// Clears a closed book.
pub(crate) fn clear(spec: &AuctionSpec, book: &SealedBook, seed: Option<&Seed>, at: Timestamp) -> Settlement {
    let bids: Vec<&Slot> = book.active_slots().collect();
    if bids.is_empty() {
        return empty(spec, SettlementStatus::Failed, reason::NO_BIDS, seed, at);
    }
    if book.active_bidders() < spec.min_bidders {
        return empty(spec, SettlementStatus::Failed, reason::TOO_FEW_BIDDERS, seed, at);
    }
    let fills = match spec.format {
        Format::SealedFirstPrice => first_price(spec, &bids, seed),
        Format::SealedUniformPrice | Format::SealedPayAsBid => {
            let demand: i128 = bids.iter().map(|b| i128::from(b.quantity.units())).sum();
            let undersubscribed = demand < i128::from(spec.lot.quantity.units());
            match spec.undersubscription {
                Undersubscription::Cancel if undersubscribed => {
                    return empty(spec, SettlementStatus::Cancelled, reason::UNDERSUBSCRIBED, seed, at);
                }
                Undersubscription::ClearAtFloor if undersubscribed => {
                    let mut fills = fill_by_price(spec, &bids, seed);
                    fills.pricing = Pricing::Uniform(spec.prices.floor);
                    fills
                }
                _ => fill_by_price(spec, &bids, seed),
            }
        }
    };
    settle(spec, fills, at)
}

/// How winners pay.
enum Pricing {
    /// Everyone pays this price.
    Uniform(Price),
    /// Everyone pays its own bid.
    OwnBid,
}

/// Bids that won something, in the order they were served, with their quantities.
struct Fills<'a> {
    served: Vec<(&'a Slot, Quantity)>,
    pricing: Pricing,
    tie_break: Option<TieBreak>,
}

fn first_price<'a>(spec: &AuctionSpec, bids: &[&'a Slot], seed: Option<&Seed>) -> Fills<'a> {
    let top = bids.iter().map(|b| b.price).max().expect("at least one bid");
    let tied: Vec<&Slot> = bids.iter().copied().filter(|b| b.price == top).collect();
    let order = order_at_margin(spec.tie_rule, &tied, seed);
    let winner = order[0];
    let tie_break = if tied.len() > 1 || seed.is_some() {
        Some(TieBreak {
            rule: spec.tie_rule,
            marginal_price: (tied.len() > 1).then_some(top),
            order: if tied.len() > 1 { order.iter().map(|b| b.id).collect() } else { Vec::new() },
            seed_hash: seed.map(Seed::hash_hex),
            seed: seed.map(|s| hex::encode(s.0)),
        })
    } else {
        None
    };
    Fills { served: vec![(winner, spec.lot.quantity)], pricing: Pricing::Uniform(top), tie_break }
}

/// Time priority or seeded order; pro-rata shares are computed separately.
fn order_at_margin<'a>(rule: TieRule, level: &[&'a Slot], seed: Option<&Seed>) -> Vec<&'a Slot> {
    let mut order = level.to_vec();
    if let (TieRule::SeededRandom, Some(seed)) = (rule, seed) {
        order.sort_by_cached_key(|b| seed.draw(b.id));
    }
    order
}

fn fill_by_price<'a>(spec: &AuctionSpec, bids: &[&'a Slot], seed: Option<&Seed>) -> Fills<'a> {
    // (negated price, arrival index): a stable sort on the price alone keeps time priority.
    let mut keyed: Vec<(Reverse<Price>, u32)> = bids.iter().enumerate().map(|(i, b)| (Reverse(b.price), i as u32)).collect();
    keyed.sort_by_key(|k| k.0);

    let unit = spec.lot.fill_unit;
    let mut remaining = spec.lot.quantity;
    let mut served = Vec::new();
    let mut tie_break = seed.map(|s| seed_evidence(spec.tie_rule, s));
    let mut start = 0;
    while start < keyed.len() && !remaining.is_zero() {
        let price = keyed[start].0.0;
        let end = start + keyed[start..].iter().take_while(|k| k.0.0 == price).count();
        let level: Vec<&Slot> = keyed[start..end].iter().map(|k| bids[k.1 as usize]).collect();
        let level_demand: i128 = level.iter().map(|b| i128::from(b.quantity.units())).sum();
        if level_demand <= i128::from(remaining.units()) {
            for b in level {
                served.push((b, b.quantity));
                remaining = remaining.checked_sub(b.quantity).expect("level fits in remaining");
            }
        } else {
            let (shares, order) = share_margin(spec.tie_rule, &level, remaining, unit, seed);
            served.extend(shares.into_iter().filter(|(_, q)| !q.is_zero()));
            if level.len() > 1 {
                let evidence = tie_break.get_or_insert_with(|| TieBreak {
                    rule: spec.tie_rule,
                    marginal_price: None,
                    order: Vec::new(),
                    seed_hash: None,
                    seed: None,
                });
                evidence.marginal_price = Some(price);
                evidence.order = order;
            }
            remaining = Quantity::ZERO;
        }
        start = end;
    }
    let pricing = match spec.format {
        Format::SealedUniformPrice => Pricing::Uniform(served.iter().map(|(b, _)| b.price).min().expect("something served")),
        _ => Pricing::OwnBid,
    };
    Fills { served, pricing, tie_break }
}

/// Shares `remaining` (a whole number of fill units, less than the level's demand) among the
/// bids of one price level, which are in arrival order. Returns each bid's share in the order
/// served and the bid ids in the order the rule ranked them.
fn share_margin<'a>(
    rule: TieRule,
    level: &[&'a Slot],
    remaining: Quantity,
    unit: Quantity,
    seed: Option<&Seed>,
) -> (Vec<(&'a Slot, Quantity)>, Vec<BidId>) {
    match rule {
        TieRule::TimePriority | TieRule::SeededRandom => {
            let order = order_at_margin(rule, level, seed);
            let mut left = remaining;
            let shares = order
                .iter()
                .map(|b| {
                    let q = b.quantity.min(left);
                    left = left.checked_sub(q).expect("share within remaining");
                    (*b, q)
                })
                .collect();
            (shares, order.iter().map(|b| b.id).collect())
        }
        TieRule::ProRata => {
            // Every bid gets floor(R x w / W) units; the units left over go one each to the
            // largest remainders, earlier bids first among equal remainders.
            let r = i128::from(remaining.whole_units(unit));
            let wants: Vec<i128> = level.iter().map(|b| i128::from(b.quantity.whole_units(unit))).collect();
            let total: i128 = wants.iter().sum();
            let mut units: Vec<i128> = wants.iter().map(|w| r * w / total).collect();
            let mut ranked: Vec<usize> = (0..level.len()).collect();
            ranked.sort_by_key(|&i| (Reverse(r * wants[i] % total), i));
            let leftover = r - units.iter().sum::<i128>();
            for &i in ranked.iter().take(leftover as usize) {
                units[i] += 1;
            }
            let shares = level.iter().zip(&units).map(|(b, n)| (*b, Quantity::units_of(unit, *n as i64))).collect();
            (shares, ranked.iter().map(|&i| level[i].id).collect())
        }
    }
}

fn settle(spec: &AuctionSpec, fills: Fills<'_>, at: Timestamp) -> Settlement {
    let mut total_amount = Amount::ZERO;
    let mut total_buyer_fee = Amount::ZERO;
    let mut total_seller_fee = Amount::ZERO;
    let mut sold = Quantity::ZERO;
    let allocations: Vec<Allocation> = fills
        .served
        .iter()
        .map(|(bid, quantity)| {
            let unit_price = match fills.pricing {
                Pricing::Uniform(p) => p,
                Pricing::OwnBid => bid.price,
            };
            // Bids were checked at entry against the same bound, and the unit price never
            // exceeds the bid's own price, so the amount is always representable.
            let amount = Amount::of(unit_price, *quantity).expect("amount checked at entry");
            let alloc = Allocation {
                bid_id: bid.id,
                bidder: bid.bidder,
                quantity: *quantity,
                unit_price,
                amount,
                buyer_fee: amount.times(spec.buyer_fee),
                seller_fee: amount.times(spec.seller_fee),
            };
            sold = sold.checked_add(alloc.quantity).expect("sold within lot");
            total_amount = total_amount.checked_add(alloc.amount).expect("total within bounds");
            total_buyer_fee = total_buyer_fee.checked_add(alloc.buyer_fee).expect("fees within bounds");
            total_seller_fee = total_seller_fee.checked_add(alloc.seller_fee).expect("fees within bounds");
            alloc
        })
        .collect();
    debug_assert!(sold <= spec.lot.quantity, "allocated more than the lot");
    Settlement {
        auction_id: spec.id,
        lot_id: spec.lot.id.clone(),
        pollutant: spec.lot.pollutant,
        format: spec.format,
        status: SettlementStatus::Settled,
        reason: None,
        note: None,
        clearing_price: match fills.pricing {
            Pricing::Uniform(p) => Some(p),
            Pricing::OwnBid => None,
        },
        allocations,
        sold,
        unsold: spec.lot.quantity.checked_sub(sold).expect("sold within lot"),
        total_amount,
        total_buyer_fee,
        total_seller_fee,
        tie_break: fills.tie_break,
        floor: spec.prices.floor,
        cap: spec.prices.cap,
        settled_at: at,
    }
}
