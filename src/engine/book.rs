//! The sealed book of one auction: every bid version in arrival order, with indexes by bid id
//! and by bidder. Arrival order is time priority; a revision is a new arrival.
//!
//! The book enforces nothing about prices or phases (that is [`super::Auction`]'s job); it keeps
//! its indexes consistent and answers the questions clearing and validation ask.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use serde::{Deserialize, Serialize};

use crate::domain::{BidId, BidderId, Price, Quantity, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BidState {
    Active,
    Withdrawn,
}

/// A bid as its bidder (or, after the close, an operator) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidView {
    pub id: BidId,
    pub bidder: BidderId,
    pub price: Price,
    pub quantity: Quantity,
    pub placed_at: Timestamp,
    pub state: BidState,
}

/// One version of a bid. Revising a bid retires its slot and appends a new one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub id: BidId,
    pub bidder: BidderId,
    pub price: Price,
    pub quantity: Quantity,
    pub placed_at: Timestamp,
    /// False once withdrawn or superseded by a revision.
    pub active: bool,
}

#[derive(Debug, Default, Clone)]
struct BidderEntry {
    /// Sum of the quantities of this bidder's active bids.
    active_quantity: Quantity,
    active_bids: u32,
    /// Bid ids in the order first placed.
    bids: Vec<BidId>,
}

/// The book's indexes hash with foldhash under a fixed seed: keys are server-drawn bid ids and
/// authenticated enterprise codes, never chosen freely by a client, and a fixed seed keeps the
/// core free of randomness. Nothing iterates these maps into an output.
type Map<K, V> = HashMap<K, V, FixedState>;

#[derive(Debug, Default, Clone)]
pub struct SealedBook {
    slots: Vec<Slot>,
    /// Bid id -> index of its current slot.
    by_id: Map<BidId, u32>,
    by_bidder: Map<BidderId, BidderEntry>,
    active_bidders: u32,
}

/// Most bid versions one book holds; slot indexes must fit the clearing keys.
pub(crate) const MAX_SLOTS: usize = 1 << 30;

impl SealedBook {
    pub fn contains(&self, id: BidId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The current version of `id`, if it belongs to `bidder`. Another bidder's bid is
    /// reported exactly like a missing one.
    pub fn bid_of(&self, bidder: BidderId, id: BidId) -> Option<BidView> {
        let slot = self.slots[*self.by_id.get(&id)? as usize];
        (slot.bidder == bidder).then(|| view(&slot))
    }

    pub fn active_quantity_of(&self, bidder: BidderId) -> Quantity {
        self.by_bidder.get(&bidder).map_or(Quantity::ZERO, |e| e.active_quantity)
    }

    pub fn has_active_bid(&self, bidder: BidderId) -> bool {
        self.by_bidder.get(&bidder).is_some_and(|e| e.active_bids > 0)
    }

    /// Whether `bidder` holds an active bid at exactly `price` (newest bids first: in an
    /// ascending auction that is where a bid at the current price is).
    pub fn has_active_bid_at(&self, bidder: BidderId, price: Price) -> bool {
        self.by_bidder.get(&bidder).is_some_and(|e| {
            e.bids.iter().rev().any(|id| {
                let slot = &self.slots[self.by_id[id] as usize];
                slot.active && slot.price == price
            })
        })
    }

    /// How many distinct bidders hold at least one active bid.
    pub fn active_bidders(&self) -> u32 {
        self.active_bidders
    }

    /// Whether another bid version fits.
    pub fn is_full(&self) -> bool {
        self.slots.len() >= MAX_SLOTS
    }

    /// Appends a new active bid. The caller has checked that `id` is unused and the book is
    /// not full.
    pub fn insert(&mut self, id: BidId, bidder: BidderId, price: Price, quantity: Quantity, at: Timestamp) -> BidView {
        let slot = Slot { id, bidder, price, quantity, placed_at: at, active: true };
        let index = self.push(slot);
        let previous = self.by_id.insert(id, index);
        debug_assert!(previous.is_none(), "bid id reused");
        let entry = self.by_bidder.entry(bidder).or_default();
        entry.bids.push(id);
        Self::activate(entry, &mut self.active_bidders, quantity);
        view(&slot)
    }

    /// Replaces an active bid with a new version that arrives now (it loses time priority).
    pub fn revise(&mut self, id: BidId, price: Price, quantity: Quantity, at: Timestamp) -> BidView {
        let old = self.retire(id);
        let slot = Slot { id, bidder: old.bidder, price, quantity, placed_at: at, active: true };
        let index = self.push(slot);
        self.by_id.insert(id, index);
        let entry = self.by_bidder.get_mut(&old.bidder).expect("bidder of an indexed bid");
        Self::activate(entry, &mut self.active_bidders, quantity);
        view(&slot)
    }

    /// Withdraws an active bid.
    pub fn withdraw(&mut self, id: BidId) -> BidView {
        view(&self.retire(id))
    }

    fn push(&mut self, slot: Slot) -> u32 {
        let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 bid versions per book");
        self.slots.push(slot);
        index
    }

    fn activate(entry: &mut BidderEntry, active_bidders: &mut u32, quantity: Quantity) {
        if entry.active_bids == 0 {
            *active_bidders += 1;
        }
        entry.active_bids += 1;
        entry.active_quantity =
            entry.active_quantity.checked_add(quantity).expect("per-bidder total within lot bounds");
    }

    /// Marks the current slot of `id` inactive and takes it off its bidder's totals.
    fn retire(&mut self, id: BidId) -> Slot {
        let index = self.by_id[&id] as usize;
        let slot = &mut self.slots[index];
        debug_assert!(slot.active, "retiring an inactive bid");
        slot.active = false;
        let slot = *slot;
        let entry = self.by_bidder.get_mut(&slot.bidder).expect("bidder of an indexed bid");
        entry.active_bids -= 1;
        entry.active_quantity =
            entry.active_quantity.checked_sub(slot.quantity).expect("active total covers each active bid");
        if entry.active_bids == 0 {
            self.active_bidders -= 1;
        }
        slot
    }

    /// Every bid version in arrival (time-priority) order; inactive ones are superseded or
    /// withdrawn.
    pub(crate) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The current version of each of `bidder`'s bids, in the order first placed.
    pub fn bids_of(&self, bidder: BidderId) -> Vec<BidView> {
        self.by_bidder
            .get(&bidder)
            .map_or_else(Vec::new, |e| e.bids.iter().map(|id| view(&self.slots[self.by_id[id] as usize])).collect())
    }

    /// The current version of every bid, in arrival order of that version.
    pub fn all_bids(&self) -> Vec<BidView> {
        let mut current: Vec<u32> = self.by_id.values().copied().collect();
        current.sort_unstable();
        current.into_iter().map(|i| view(&self.slots[i as usize])).collect()
    }

    /// Checks every index against the slots; tests call it after each mutation.
    pub fn check_invariants(&self) {
        let mut totals: HashMap<BidderId, (Quantity, u32)> = HashMap::new();
        assert!(self.slots.len() <= MAX_SLOTS);
        for (&id, &index) in &self.by_id {
            let slot = &self.slots[index as usize];
            assert_eq!(slot.id, id, "by_id points at another bid's slot");
            if slot.active {
                let t = totals.entry(slot.bidder).or_insert((Quantity::ZERO, 0));
                t.0 = t.0.checked_add(slot.quantity).unwrap();
                t.1 += 1;
            }
        }
        let active_slots = self.slots.iter().filter(|s| s.active).count();
        assert_eq!(active_slots, totals.values().map(|t| t.1 as usize).sum::<usize>(), "an active slot is not current");
        let mut active_bidders = 0;
        for (bidder, entry) in &self.by_bidder {
            let (qty, n) = totals.get(bidder).copied().unwrap_or((Quantity::ZERO, 0));
            assert_eq!(entry.active_quantity, qty, "active quantity of {bidder} out of step");
            assert_eq!(entry.active_bids, n, "active bid count of {bidder} out of step");
            active_bidders += u32::from(n > 0);
        }
        assert_eq!(self.active_bidders, active_bidders);
    }
}

fn view(slot: &Slot) -> BidView {
    BidView {
        id: slot.id,
        bidder: slot.bidder,
        price: slot.price,
        quantity: slot.quantity,
        placed_at: slot.placed_at,
        state: if slot.active { BidState::Active } else { BidState::Withdrawn },
    }
}
