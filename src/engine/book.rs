//! The sealed book of one auction: every bid version in arrival order, with indexes by bid id
//! and by bidder. Arrival order is time priority; a revision is a new arrival.
//!
//! The book enforces nothing about prices or phases (the shared checks in [`super::checks`] do);
//! it keeps its indexes consistent and answers the questions clearing and validation ask. The
//! sealed formats and the English auction keep their bids here.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use foldhash::fast::FixedState;

use serde::{Deserialize, Serialize};

use crate::domain::{BidId, BidderId, Price, Quantity, QuantityTotal, Timestamp};

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

/// A bidder's number in one book: the index of its entry, in the order bidders first bid. Slots
/// and the book's indexes hold it instead of the 18-byte credit code, so a bid hashes its
/// bidder's code once (to find the number) and a slot stays small. Numbers are never reused.
pub(crate) type BidderNo = u32;

/// One version of a bid. Revising a bid retires its slot and appends a new one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub id: BidId,
    pub bidder: BidderNo,
    pub price: Price,
    pub quantity: Quantity,
    pub placed_at: Timestamp,
    /// False once withdrawn or superseded by a revision.
    pub active: bool,
}

#[derive(Debug, Clone)]
struct BidderEntry {
    code: BidderId,
    /// Sum of the quantities of this bidder's active bids. A total, not a quantity: an English
    /// bidder's raises each ask for the whole lot and all stay in the book.
    active_quantity: QuantityTotal,
    active_bids: u32,
    /// Bid ids in the order first placed.
    bids: Vec<BidId>,
}

/// A bid id already in the book ([`SealedBook::insert`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdTaken;

/// A bidder as one command sees it in a book: its code, and its number if it has bid before
/// ([`SealedBook::bidder`]). Looked up once per command and handed to both the checks and the
/// insert.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bidder {
    pub code: BidderId,
    pub number: Option<BidderNo>,
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
    /// Credit code -> bidder number (its index in `bidders`).
    numbers: Map<BidderId, BidderNo>,
    bidders: Vec<BidderEntry>,
    active_bidders: u32,
}

/// Most bid versions one book holds; slot indexes must fit the clearing keys.
pub(crate) const MAX_SLOTS: usize = 1 << 30;

impl SealedBook {
    pub fn contains(&self, id: BidId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// `code` as this book knows it: with its number if it has bid here.
    #[inline]
    pub(crate) fn bidder(&self, code: BidderId) -> Bidder {
        Bidder { code, number: self.numbers.get(&code).copied() }
    }

    /// The credit code of bidder number `number` (a number this book gave out: a slot's).
    pub(crate) fn code(&self, number: BidderNo) -> BidderId {
        self.bidders[number as usize].code
    }

    /// How many bidders have bid in this book (withdrawn or not).
    pub fn bidder_count(&self) -> u32 {
        // Cannot truncate: each bidder has at least one of at most MAX_SLOTS slots.
        self.bidders.len() as u32
    }

    fn entry(&self, bidder: &Bidder) -> Option<&BidderEntry> {
        bidder.number.and_then(|n| self.bidders.get(n as usize))
    }

    /// The current version of `id`, if it belongs to `bidder`. Another bidder's bid is
    /// reported exactly like a missing one.
    pub fn bid_of(&self, bidder: BidderId, id: BidId) -> Option<BidView> {
        self.current(id).filter(|slot| self.code(slot.bidder) == bidder).map(|slot| self.view(slot))
    }

    pub fn active_quantity_of(&self, bidder: BidderId) -> QuantityTotal {
        self.active_quantity(&self.bidder(bidder))
    }

    pub(crate) fn active_quantity(&self, bidder: &Bidder) -> QuantityTotal {
        self.entry(bidder).map_or(QuantityTotal::ZERO, |e| e.active_quantity)
    }

    /// How many bids (not versions: a revision is the same bid) `bidder` has placed.
    pub(crate) fn bids_placed(&self, bidder: &Bidder) -> u32 {
        self.entry(bidder).map_or(0, |e| u32::try_from(e.bids.len()).unwrap_or(u32::MAX))
    }

    pub(crate) fn has_active_bid(&self, bidder: &Bidder) -> bool {
        self.entry(bidder).is_some_and(|e| e.active_bids > 0)
    }

    /// Whether `bidder` holds an active bid at exactly `price` (newest bids first: in an
    /// ascending auction that is where a bid at the current price is).
    pub(crate) fn has_active_bid_at(&self, bidder: &Bidder, price: Price) -> bool {
        self.entry(bidder).is_some_and(|e| {
            e.bids.iter().rev().filter_map(|id| self.current(*id)).any(|slot| slot.active && slot.price == price)
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

    /// The current slot of `id`.
    fn current(&self, id: BidId) -> Option<&Slot> {
        self.by_id.get(&id).and_then(|index| self.slots.get(*index as usize))
    }

    /// Appends a new active bid by `bidder` (as [`SealedBook::bidder`] found it for this
    /// command), or refuses it, changing nothing, when `id` is taken: the last of the shared
    /// checks, made here so that a bid probes the id index once. The other checks have made sure
    /// that the book is not full. Returns the bid and its bidder's number.
    pub(crate) fn insert(
        &mut self,
        id: BidId,
        bidder: Bidder,
        price: Price,
        quantity: Quantity,
        at: Timestamp,
    ) -> Result<(BidView, BidderNo), IdTaken> {
        let Entry::Vacant(vacant) = self.by_id.entry(id) else { return Err(IdTaken) };
        let number = match bidder.number {
            Some(number) => number,
            None => {
                let next = self.bidders.len() as BidderNo;
                let number = *self.numbers.entry(bidder.code).or_insert(next);
                if number == next {
                    let entry = BidderEntry {
                        code: bidder.code,
                        active_quantity: QuantityTotal::ZERO,
                        active_bids: 0,
                        bids: Vec::new(),
                    };
                    self.bidders.push(entry);
                }
                number
            }
        };
        debug_assert_eq!(self.bidders[number as usize].code, bidder.code, "a number from another book");
        let slot = Slot { id, bidder: number, price, quantity, placed_at: at, active: true };
        debug_assert!(self.slots.len() < MAX_SLOTS, "the shared checks refuse a bid to a full book");
        // Cannot truncate: a full book (MAX_SLOTS = 2^30 versions) refuses every bid.
        vacant.insert(self.slots.len() as u32);
        self.slots.push(slot);
        if let Some(entry) = self.bidders.get_mut(number as usize) {
            entry.bids.push(id);
            Self::activate(entry, &mut self.active_bidders, quantity);
        }
        Ok((view(&slot, bidder.code), number))
    }

    /// Replaces an active bid with a new version that arrives now (it loses time priority).
    /// `None`, changing nothing, when `id` is not an active bid.
    pub fn revise(&mut self, id: BidId, price: Price, quantity: Quantity, at: Timestamp) -> Option<BidView> {
        let old = self.retire(id)?;
        let slot = Slot { id, bidder: old.bidder, price, quantity, placed_at: at, active: true };
        let index = self.push(slot);
        self.by_id.insert(id, index);
        let entry = self.bidders.get_mut(old.bidder as usize)?;
        Self::activate(entry, &mut self.active_bidders, quantity);
        Some(view(&slot, entry.code))
    }

    /// Withdraws an active bid; `None`, changing nothing, when `id` is not one.
    pub fn withdraw(&mut self, id: BidId) -> Option<BidView> {
        self.retire(id).map(|slot| self.view(&slot))
    }

    fn push(&mut self, slot: Slot) -> u32 {
        debug_assert!(!self.is_full(), "the shared checks refuse a bid to a full book");
        // Cannot truncate: a full book (MAX_SLOTS = 2^30 versions) refuses every bid.
        let index = self.slots.len() as u32;
        self.slots.push(slot);
        index
    }

    fn activate(entry: &mut BidderEntry, active_bidders: &mut u32, quantity: Quantity) {
        if entry.active_bids == 0 {
            *active_bidders += 1;
        }
        entry.active_bids += 1;
        // A u64 total of at most 2^30 quantities of at most MAX_QUANTITY_KG (< 10^10) stays below
        // 1.1 x 10^19, under u64::MAX; saturating keeps even a broken invariant from panicking
        // without understating what the bidder holds.
        entry.active_quantity = entry.active_quantity.plus(quantity).unwrap_or(QuantityTotal::SATURATED);
    }

    /// Marks the current slot of `id` inactive and takes it off its bidder's totals; `None`,
    /// changing nothing, when `id` has no active slot.
    fn retire(&mut self, id: BidId) -> Option<Slot> {
        let index = *self.by_id.get(&id)? as usize;
        let slot = self.slots.get_mut(index).filter(|slot| slot.active)?;
        slot.active = false;
        let slot = *slot;
        if let Some(entry) = self.bidders.get_mut(slot.bidder as usize) {
            entry.active_bids = entry.active_bids.saturating_sub(1);
            entry.active_quantity = entry.active_quantity.minus(slot.quantity).unwrap_or(QuantityTotal::ZERO);
            if entry.active_bids == 0 {
                self.active_bidders = self.active_bidders.saturating_sub(1);
            }
        }
        Some(slot)
    }

    /// Every bid version in arrival (time-priority) order; inactive ones are superseded or
    /// withdrawn.
    pub(crate) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// A slot as its bidder (or, after the close, an operator) sees it.
    pub(crate) fn view(&self, slot: &Slot) -> BidView {
        view(slot, self.code(slot.bidder))
    }

    /// The current version of each of `bidder`'s bids, in the order first placed.
    pub fn bids_of(&self, bidder: BidderId) -> Vec<BidView> {
        self.entry(&self.bidder(bidder)).map_or_else(Vec::new, |e| {
            e.bids.iter().filter_map(|id| self.current(*id)).map(|slot| view(slot, e.code)).collect()
        })
    }

    /// The current version of every bid, in arrival order of that version.
    pub fn all_bids(&self) -> Vec<BidView> {
        let mut current: Vec<u32> = self.by_id.values().copied().collect();
        current.sort_unstable();
        current.into_iter().filter_map(|i| self.slots.get(i as usize)).map(|slot| self.view(slot)).collect()
    }

    /// The current version of every bid, in bid-id order (the order of the book's tree).
    pub fn bids_by_id(&self) -> Vec<BidView> {
        let mut current: Vec<(BidId, u32)> = self.by_id.iter().map(|(id, index)| (*id, *index)).collect();
        current.sort_unstable_by_key(|(id, _)| *id);
        current.into_iter().filter_map(|(_, i)| self.slots.get(i as usize)).map(|slot| self.view(slot)).collect()
    }

    /// Checks every index against the slots; tests call it after each mutation. It panics on a
    /// broken invariant: it is a test oracle, never called on a request's path.
    pub fn check_invariants(&self) {
        let mut totals: HashMap<BidderNo, (QuantityTotal, u32)> = HashMap::new();
        assert!(self.slots.len() <= MAX_SLOTS);
        for (&id, &index) in &self.by_id {
            let slot = &self.slots[index as usize];
            assert_eq!(slot.id, id, "by_id points at another bid's slot");
            assert!((slot.bidder as usize) < self.bidders.len(), "a slot's bidder has no entry");
            if slot.active {
                let t = totals.entry(slot.bidder).or_insert((QuantityTotal::ZERO, 0));
                t.0 = t.0.plus(slot.quantity).expect("test oracle: totals fit a u64");
                t.1 += 1;
            }
        }
        let active_slots = self.slots.iter().filter(|s| s.active).count();
        assert_eq!(active_slots, totals.values().map(|t| t.1 as usize).sum::<usize>(), "an active slot is not current");
        assert_eq!(self.numbers.len(), self.bidders.len(), "a bidder without a number, or a number twice");
        let mut active_bidders = 0;
        for (number, entry) in self.bidders.iter().enumerate() {
            let number = number as BidderNo;
            assert_eq!(self.numbers.get(&entry.code), Some(&number), "bidder {} under another number", entry.code);
            let (qty, n) = totals.get(&number).copied().unwrap_or((QuantityTotal::ZERO, 0));
            assert_eq!(entry.active_quantity, qty, "active quantity of {} out of step", entry.code);
            assert_eq!(entry.active_bids, n, "active bid count of {} out of step", entry.code);
            for id in &entry.bids {
                assert_eq!(self.current(*id).map(|s| s.bidder), Some(number), "bid {id} listed under another bidder");
            }
            active_bidders += u32::from(n > 0);
        }
        assert_eq!(self.active_bidders, active_bidders);
    }
}

fn view(slot: &Slot, bidder: BidderId) -> BidView {
    BidView {
        id: slot.id,
        bidder,
        price: slot.price,
        quantity: slot.quantity,
        placed_at: slot.placed_at,
        state: if slot.active { BidState::Active } else { BidState::Withdrawn },
    }
}
