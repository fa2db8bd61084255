//! Clearing: from a closed sealed book to a settlement. Pure functions of the book, the spec
//! and the seed; no state of their own.
//!
//! Divisible lots are filled in price order (highest first). Whole price levels are filled
//! while supply lasts; the level that does not fit (the margin) is shared by the auction's tie
//! rule. Within a level, bids are taken in arrival order (time priority) unless the rule says
//! otherwise.

use std::cmp::Reverse;

use sha2::{Digest, Sha256};

use crate::domain::{Amount, BidId, BidderId, MAX_PRICE_FEN, Price, Quantity, QuantityTotal, Reason, Timestamp};

use super::book::{BidderNo, SealedBook, Slot};
use super::clock::ClockFinal;
use super::settlement::{Allocation, Settlement, SettlementStatus, TieBreak};
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
pub(crate) fn empty(
    spec: &AuctionSpec,
    status: SettlementStatus,
    why: Reason,
    seed: Option<&Seed>,
    at: Timestamp,
) -> Settlement {
    Settlement {
        auction_id: spec.id,
        lot_id: spec.lot.id.clone(),
        pollutant: spec.lot.pollutant,
        format: spec.format,
        status,
        reason: Some(why),
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
        deposits: Vec::new(),
        book_root: None,
    }
}

fn seed_evidence(rule: TieRule, seed: &Seed) -> TieBreak {
    TieBreak {
        rule,
        marginal_price: None,
        order: Vec::new(),
        seed_hash: Some(seed.hash_hex()),
        seed: Some(hex::encode(seed.0)),
    }
}

/// Clears a closed book: a divisible lot (uniform price, pay-as-bid, fixed price) by price
/// and the tie rule, a single lot (first price, and English auctions, which end like one: the
/// highest bid wins and pays its price, ties only at the cap) to its highest bid.
pub(crate) fn clear(spec: &AuctionSpec, book: &SealedBook, seed: Option<&Seed>, at: Timestamp) -> Settlement {
    if book.active_bidders() == 0 {
        return empty(spec, SettlementStatus::Failed, Reason::NoBids, seed, at);
    }
    if book.active_bidders() < spec.min_bidders {
        return empty(spec, SettlementStatus::Failed, Reason::TooFewBidders, seed, at);
    }
    let slots = book.slots();
    if !spec.format.is_divisible() {
        return match first_price(spec, slots, seed) {
            Some(fills) => settle(spec, fills, |n| book.code(n), at),
            None => empty(spec, SettlementStatus::Failed, Reason::NoBids, seed, at),
        };
    }
    let selection = select(slots, i128::from(spec.lot.quantity.units()));
    let undersubscribed = selection.demand < i128::from(spec.lot.quantity.units());
    let fills = match spec.undersubscription {
        Undersubscription::Cancel if undersubscribed => {
            return empty(spec, SettlementStatus::Cancelled, Reason::Undersubscribed, seed, at);
        }
        Undersubscription::ClearAtFloor if undersubscribed => {
            let mut fills = fill_by_price(spec, slots, selection, seed);
            fills.pricing = Pricing::Uniform(spec.prices.floor);
            fills
        }
        _ => fill_by_price(spec, slots, selection, seed),
    };
    settle(spec, fills, |n| book.code(n), at)
}

/// Clears a clock auction that ended at `price` with these final demands (see
/// [`super::rounds`]).
pub(crate) fn clear_clock(spec: &AuctionSpec, end: &ClockFinal, at: Timestamp) -> Settlement {
    let ClockFinal { price, excess, ref demands } = *end;
    let holders = demands.iter().filter(|d| !d.quantity.is_zero()).count();
    if holders == 0 {
        return empty(spec, SettlementStatus::Failed, Reason::NoBids, None, at);
    }
    if holders < spec.min_bidders as usize {
        return empty(spec, SettlementStatus::Failed, Reason::TooFewBidders, None, at);
    }
    let unit = spec.lot.fill_unit;
    // Demands are named by their position in `demands`, which is also their slots' bidder
    // number (one demand per bidder).
    let slot = |n: usize, quantity: Quantity| {
        let d = &demands[n];
        Slot { id: d.bid, bidder: n as BidderNo, price, quantity, placed_at: d.stated_at, active: true }
    };
    // Each bidder's share, in the order of their final statements.
    let mut ordered: Vec<usize> = (0..demands.len()).collect();
    ordered.sort_by_key(|&n| (demands[n].stated_at, demands[n].arrival, demands[n].bidder));
    let mut totals: Vec<(usize, Quantity)> = Vec::new();
    let tie_break;
    if excess {
        // Demand above supply at the cap or the hard stop: pro-rata to demand. Shares come back
        // in the level's order, which is the order of `holding`.
        let holding: Vec<usize> = ordered.iter().copied().filter(|&n| !demands[n].quantity.is_zero()).collect();
        let level: Vec<Slot> = holding.iter().map(|&n| slot(n, demands[n].quantity)).collect();
        let refs: Vec<&Slot> = level.iter().collect();
        let (shares, order) = share_margin(TieRule::ProRata, &refs, spec.lot.quantity, unit, None);
        totals.extend(holding.iter().zip(shares).map(|(&n, (_, q))| (n, q)));
        tie_break =
            Some(TieBreak { rule: TieRule::ProRata, marginal_price: Some(price), order, seed_hash: None, seed: None });
    } else {
        let demand = demands.iter().fold(QuantityTotal::ZERO, |sum, d| sum.plus(d.quantity).unwrap_or(sum));
        // Demand fits the supply here, so the leftover is a quantity.
        let leftover = QuantityTotal::of(spec.lot.quantity)
            .minus_total(demand)
            .and_then(QuantityTotal::as_quantity)
            .unwrap_or(Quantity::ZERO);
        let cutters: Vec<Slot> =
            ordered.iter().filter(|&&n| !demands[n].cut.is_zero()).map(|&n| slot(n, demands[n].cut)).collect();
        let cut = cutters.iter().fold(QuantityTotal::ZERO, |sum, s| sum.plus(s.quantity).unwrap_or(sum));
        // What each cutter gets back of the leftover, by bidder number.
        let mut extra: Vec<Quantity> = vec![Quantity::ZERO; demands.len()];
        tie_break = if leftover.is_zero() || cutters.is_empty() {
            None
        } else if QuantityTotal::of(leftover) >= cut {
            for s in &cutters {
                extra[s.bidder as usize] = s.quantity;
            }
            None
        } else {
            let refs: Vec<&Slot> = cutters.iter().collect();
            let (shares, order) = share_margin(spec.tie_rule, &refs, leftover, unit, None);
            for (s, q) in shares {
                extra[s.bidder as usize] = q;
            }
            Some(TieBreak { rule: spec.tie_rule, marginal_price: Some(price), order, seed_hash: None, seed: None })
        };
        for &n in &ordered {
            let d = &demands[n];
            // Demand plus a share of what it cut is at most its last round's demand, which the
            // activity rule kept within the lot.
            totals.push((n, d.quantity.checked_add(extra[n]).unwrap_or(d.quantity)));
        }
    }
    let slots: Vec<Slot> = totals.iter().filter(|(_, q)| !q.is_zero()).map(|&(n, q)| slot(n, q)).collect();
    let served = slots.iter().map(|s| (s, s.quantity)).collect();
    let code = |n: BidderNo| demands[n as usize].bidder;
    settle(spec, Fills { served, pricing: Pricing::Uniform(price), tie_break }, code, at)
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

/// An active bid as clearing sees it, in 16 bytes so that partitioning a million of them stays
/// in cache-friendly strides: the price, and the quantity (kg, < 2^34) packed above the slot
/// index (its arrival position, < 2^30).
#[derive(Debug, Clone, Copy)]
struct Key {
    price: Price,
    packed: u64,
}

const SLOT_BITS: u32 = 30;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;

impl Key {
    fn new(price: Price, quantity: Quantity, slot: usize) -> Key {
        debug_assert!(slot < super::book::MAX_SLOTS && quantity.units() < 1 << 34);
        Key { price, packed: (quantity.units() as u64) << SLOT_BITS | slot as u64 }
    }

    fn demand(&self) -> i128 {
        i128::from((self.packed >> SLOT_BITS) as i64)
    }

    fn slot(&self) -> usize {
        (self.packed & SLOT_MASK) as usize
    }

    /// Sorts as price priority, then time priority: higher prices first, earlier slots first.
    fn priority(&self) -> u64 {
        ((MAX_PRICE_FEN - self.price.units()) as u64) << SLOT_BITS | (self.packed & SLOT_MASK)
    }
}

/// The highest bid wins the whole lot; `None` for a book without an active bid.
fn first_price<'a>(spec: &AuctionSpec, slots: &'a [Slot], seed: Option<&Seed>) -> Option<Fills<'a>> {
    let active = || slots.iter().filter(|s| s.active);
    let top = active().map(|b| b.price).max()?;
    let tied: Vec<&Slot> = active().filter(|b| b.price == top).collect();
    let order = order_at_margin(spec.tie_rule, &tied, seed);
    let winner = *order.first()?;
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
    Some(Fills { served: vec![(winner, spec.lot.quantity)], pricing: Pricing::Uniform(top), tie_break })
}

/// The bids that clearing serves: those priced above the margin (served in full) and those at
/// it (shared by the tie rule), plus the book's total active demand.
struct Selection {
    above: Vec<Key>,
    margin: Vec<Key>,
    demand: i128,
}

/// Finds the margin of a book: the price level at which cumulative demand, from the top, first
/// reaches `supply`.
///
/// Only the bids at or above the margin matter, and in a busy auction they are a small part of
/// the book. So a sample of the book first estimates a price band around the margin; one pass
/// over the book then keeps only the bids at or above that band; a quickselect finds the
/// margin inside the band. When the estimate misses, or the book is undersubscribed, a
/// second pass collects what the first one skipped.
fn select(slots: &[Slot], supply: i128) -> Selection {
    let active = || slots.iter().enumerate().filter(|(_, s)| s.active).map(|(i, s)| Key::new(s.price, s.quantity, i));
    let Some((upper, lower)) = bracket(slots, supply) else {
        let mut keys: Vec<Key> = active().collect();
        let demand = keys.iter().map(Key::demand).sum();
        let (above, end) = cut(&mut keys, supply);
        let margin = keys[above..end].to_vec();
        keys.truncate(above);
        return Selection { above: keys, margin, demand };
    };
    let (mut above, mut band) = (Vec::new(), Vec::new());
    let (mut demand, mut demand_above, mut demand_band) = (0i128, 0i128, 0i128);
    for key in active() {
        demand += key.demand();
        if key.price > upper {
            demand_above += key.demand();
            above.push(key);
        } else if key.price >= lower {
            demand_band += key.demand();
            band.push(key);
        }
    }
    let (mut rest, need) = if demand_above >= supply {
        // The margin is above the band.
        (std::mem::take(&mut above), supply)
    } else if demand_above + demand_band >= supply {
        (band, supply - demand_above)
    } else {
        // The margin is below the band, or there is none: the band is served in full.
        above.append(&mut band);
        (active().filter(|k| k.price < lower).collect(), supply - demand_above - demand_band)
    };
    let (served, end) = cut(&mut rest, need);
    let margin = rest[served..end].to_vec();
    rest.truncate(served);
    above.append(&mut rest);
    Selection { above, margin, demand }
}

/// A price band likely to hold the margin, from every n/4096-th slot: the sample's own margin,
/// widened on each side by four standard deviations of where a sample of this size puts it
/// (binomial, sqrt(k) for k sampled bids above the margin) plus 16 places. `None` for small
/// books, where one pass over everything is as quick.
fn bracket(slots: &[Slot], supply: i128) -> Option<(Price, Price)> {
    const SAMPLE: usize = 4096;
    if slots.len() < 4 * SAMPLE {
        return None;
    }
    let stride = slots.len() / SAMPLE;
    let mut sample: Vec<&Slot> = slots.iter().step_by(stride).filter(|s| s.active).collect();
    if sample.is_empty() {
        return None;
    }
    sample.sort_unstable_by_key(|s| Reverse(s.price));
    let mut estimated = 0i128;
    let at = sample
        .iter()
        .position(|s| {
            estimated += i128::from(s.quantity.units()) * stride as i128;
            estimated >= supply
        })
        .unwrap_or(sample.len() - 1);
    let slack = 4 * at.isqrt() + 16;
    let upper = sample[at.saturating_sub(slack)].price;
    let lower = sample[(at + slack).min(sample.len() - 1)].price;
    Some((upper, lower))
}

/// Reorders `keys` around the margin for `supply`. Returns `(above, end)`: `keys[..above]` are
/// priced above the margin (all served in full), `keys[above..end]` at it, the rest below
/// (served nothing). When their total demand is below `supply` there is no margin: `above ==
/// end == keys.len()`.
///
/// A weighted three-way quickselect with median-of-three pivots, expected O(n). A window that
/// resists its pivots is finished by sorting it.
fn cut(keys: &mut [Key], supply: i128) -> (usize, usize) {
    cut_within(keys, supply, 64)
}

fn cut_within(keys: &mut [Key], supply: i128, rounds: usize) -> (usize, usize) {
    // Invariant: every key before `lo` is served in full, none after `hi` is served at all,
    // and `need` is what the keys in `lo..hi` must still supply.
    let (mut lo, mut hi) = (0usize, keys.len());
    let mut need = supply;
    for _ in 0..rounds {
        if lo >= hi {
            return (lo, lo);
        }
        let mid = lo + (hi - lo) / 2;
        let mut three = [keys[lo].price, keys[mid].price, keys[hi - 1].price];
        three.sort_unstable();
        let pivot = three[1];
        let (a, c, above, at) = partition(keys, lo, hi, pivot);
        if above >= need {
            hi = a;
        } else if above + at >= need {
            return (a, c);
        } else {
            need -= above + at;
            lo = c;
        }
    }
    // Fallback: sort what is left and walk its levels.
    keys[lo..hi].sort_unstable_by_key(|k| Reverse(k.price));
    let mut i = lo;
    while i < hi {
        let price = keys[i].price;
        let j = i + keys[i..hi].iter().take_while(|k| k.price == price).count();
        let level: i128 = keys[i..j].iter().map(Key::demand).sum();
        if level >= need {
            return (i, j);
        }
        need -= level;
        i = j;
    }
    (hi, hi)
}

/// Splits `keys[lo..hi]` into prices above `pivot`, at it, and below it, in that order.
/// Returns where the middle part starts and ends and the demand of the first two parts.
fn partition(keys: &mut [Key], lo: usize, hi: usize, pivot: Price) -> (usize, usize, i128, i128) {
    // [lo, a) above, [a, i) at, [i, c) unseen, [c, hi) below.
    let (mut a, mut i, mut c) = (lo, lo, hi);
    let (mut above, mut at) = (0i128, 0i128);
    while i < c {
        let price = keys[i].price;
        if price > pivot {
            keys.swap(a, i);
            above += keys[a].demand();
            a += 1;
            i += 1;
        } else if price == pivot {
            at += keys[i].demand();
            i += 1;
        } else {
            c -= 1;
            keys.swap(i, c);
        }
    }
    (a, c, above, at)
}

fn fill_by_price<'a>(spec: &AuctionSpec, slots: &'a [Slot], selection: Selection, seed: Option<&Seed>) -> Fills<'a> {
    // Price priority, then time priority (arrival order), on one packed integer per winner.
    let mut winners: Vec<u64> = selection.above.iter().map(Key::priority).collect();
    winners.sort_unstable();
    let mut margin = selection.margin;
    margin.sort_unstable_by_key(Key::slot);

    let mut remaining = spec.lot.quantity;
    let mut served = Vec::with_capacity(winners.len() + margin.len());
    for priority in winners {
        let slot = &slots[(priority & SLOT_MASK) as usize];
        served.push((slot, slot.quantity));
        // Cannot fire: `select` keeps above the margin only levels whose demand fits the supply.
        remaining = remaining.checked_sub(slot.quantity).expect("levels above the margin fit in supply");
    }
    let mut tie_break = seed.map(|s| seed_evidence(spec.tie_rule, s));
    if !margin.is_empty() {
        let level: Vec<&Slot> = margin.iter().map(|k| &slots[k.slot()]).collect();
        let level_demand: i128 = margin.iter().map(Key::demand).sum();
        if level_demand <= i128::from(remaining.units()) {
            served.extend(level.iter().map(|b| (*b, b.quantity)));
        } else {
            let (shares, order) = share_margin(spec.tie_rule, &level, remaining, spec.lot.fill_unit, seed);
            served.extend(shares.into_iter().filter(|(_, q)| !q.is_zero()));
            if level.len() > 1 {
                let evidence = tie_break.get_or_insert_with(|| TieBreak {
                    rule: spec.tie_rule,
                    marginal_price: None,
                    order: Vec::new(),
                    seed_hash: None,
                    seed: None,
                });
                evidence.marginal_price = Some(margin[0].price);
                evidence.order = order;
            }
        }
    }
    let pricing = match spec.format {
        // The last bid filled sets the price; with nothing served (no sale) the floor stands in.
        Format::SealedUniformPrice | Format::FixedPrice => {
            Pricing::Uniform(served.iter().map(|(b, _)| b.price).min().unwrap_or(spec.prices.floor))
        }
        _ => Pricing::OwnBid,
    };
    Fills { served, pricing, tie_break }
}

/// Time priority or seeded order; pro-rata shares are computed separately.
fn order_at_margin<'a>(rule: TieRule, level: &[&'a Slot], seed: Option<&Seed>) -> Vec<&'a Slot> {
    let mut order = level.to_vec();
    if let (TieRule::SeededRandom, Some(seed)) = (rule, seed) {
        order.sort_by_cached_key(|b| seed.draw(b.id));
    }
    order
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
                    left = left.checked_sub(q).unwrap_or(Quantity::ZERO);
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

/// The settlement of `fills`; `code` names the bidder of a slot's number.
fn settle(spec: &AuctionSpec, fills: Fills<'_>, code: impl Fn(BidderNo) -> BidderId, at: Timestamp) -> Settlement {
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
            // Cannot fire: every in-range price x quantity is at most MAX_PRICE x MAX_QUANTITY,
            // a tenth of the largest amount.
            let amount = Amount::of(unit_price, *quantity).expect("in-range price x quantity fits an amount");
            let alloc = Allocation {
                bid_id: bid.id,
                bidder: code(bid.bidder),
                quantity: *quantity,
                unit_price,
                amount,
                buyer_fee: amount.times(spec.buyer_fee),
                seller_fee: amount.times(spec.seller_fee),
            };
            // Cannot fire: clearing allocates at most the lot, so the quantities sum to at most
            // MAX_QUANTITY and the amounts (fees are at most 100% of them, config checks it) to
            // at most MAX_PRICE x MAX_QUANTITY plus half a fen per allocation, far below
            // MAX_AMOUNT_FEN.
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
        unsold: spec.lot.quantity.checked_sub(sold).unwrap_or(Quantity::ZERO),
        total_amount,
        total_buyer_fee,
        total_seller_fee,
        tie_break: fills.tie_break,
        floor: spec.prices.floor,
        cap: spec.prices.cap,
        settled_at: at,
        deposits: Vec::new(),
        book_root: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain way: sort everything by price and walk levels until supply is met.
    fn reference(keys: &[Key], supply: i128) -> (Vec<u32>, Vec<u32>) {
        let mut sorted = keys.to_vec();
        sorted.sort_by_key(|k| (Reverse(k.price), k.slot()));
        let (mut above, mut margin, mut need) = (Vec::new(), Vec::new(), supply);
        let mut i = 0;
        while i < sorted.len() {
            let p = sorted[i].price;
            let level: Vec<Key> = sorted[i..].iter().copied().take_while(|k| k.price == p).collect();
            let demand: i128 = level.iter().map(Key::demand).sum();
            if demand >= need {
                margin = level.iter().map(|k| k.slot() as u32).collect();
                break;
            }
            need -= demand;
            above.extend(level.iter().map(|k| k.slot() as u32));
            i += level.len();
        }
        above.sort_unstable();
        margin.sort_unstable();
        (above, margin)
    }

    fn split(keys: &[Key], (above, end): (usize, usize)) -> (Vec<u32>, Vec<u32>) {
        let mut a: Vec<u32> = keys[..above].iter().map(|k| k.slot() as u32).collect();
        let mut m: Vec<u32> = keys[above..end].iter().map(|k| k.slot() as u32).collect();
        a.sort_unstable();
        m.sort_unstable();
        (a, m)
    }

    /// Books large enough for the sampled band, with supplies from one bid to more than all,
    /// and some withdrawn bids: `select` finds the same winners as a full sort.
    #[test]
    fn select_agrees_with_a_full_sort_on_large_books() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for (n, levels) in [(5_000usize, 7i64), (20_000, 300), (50_000, 20_000)] {
            let slots: Vec<Slot> = (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    Slot {
                        id: BidId::new(i as u64),
                        bidder: 0,
                        price: Price::from_units(1_000 + (x % levels as u64) as i64).unwrap(),
                        quantity: Quantity::from_units((x >> 32) as i64 % 9 + 1).unwrap(),
                        placed_at: Timestamp::from_micros(i as i64),
                        active: !x.is_multiple_of(11),
                    }
                })
                .collect();
            let keys: Vec<Key> = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active)
                .map(|(i, s)| Key::new(s.price, s.quantity, i))
                .collect();
            let total: i128 = keys.iter().map(Key::demand).sum();
            for supply in [1, 7, total / 100, total / 6, total / 2, total - 1, total, total + 5] {
                let supply = supply.max(1);
                let expected = reference(&keys, supply);
                let selection = select(&slots, supply);
                assert_eq!(selection.demand, total);
                let mut above: Vec<u32> = selection.above.iter().map(|k| k.slot() as u32).collect();
                let mut margin: Vec<u32> = selection.margin.iter().map(|k| k.slot() as u32).collect();
                above.sort_unstable();
                margin.sort_unstable();
                assert_eq!((above, margin), expected, "n={n} levels={levels} supply={supply}");
            }
        }
    }

    proptest! {
        #[test]
        fn cut_finds_the_same_margin_as_a_full_sort(
            bids in prop::collection::vec((1i64..30, 1i64..8), 0..300),
            supply in 1i128..400,
        ) {
            let keys: Vec<Key> = bids
                .iter()
                .enumerate()
                .map(|(i, (p, q))| Key::new(Price::from_units(*p).unwrap(), Quantity::from_units(*q).unwrap(), i))
                .collect();
            let expected = reference(&keys, supply);
            let mut quick = keys.clone();
            let found = cut(&mut quick, supply);
            prop_assert_eq!(split(&quick, found), expected.clone());
            // The sorting fallback alone gives the same answer.
            let mut fallback = keys.clone();
            let found = cut_within(&mut fallback, supply, 0);
            prop_assert_eq!(split(&fallback, found), expected);
        }
    }
}
