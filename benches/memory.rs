//! Memory per resting bid: 10,000,000 sealed bids in one auction's book, in one process.
//!
//! Run: `cargo bench --bench memory` (not criterion: one measurement, printed). A counting
//! global allocator gives the bytes live after the inserts minus before, which includes the
//! slack of grown vectors and hash tables (what the process really holds); the resident set
//! from `/proc/self/statm` is printed beside it as a check. The same bids in `lobster`'s book,
//! the core bench's peer, are measured the same way for comparison.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

mod support;

use emission_auction::domain::{BidId, Price, Quantity, Timestamp};
use emission_auction::engine::{Format, TieRule};
use support::{T0, bidders, reserve_auction};

/// Counts live heap bytes. Relaxed ordering: the measurement is taken on one thread between
/// quiet points.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept
// beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BIDS: usize = 10_000_000;
const BIDDERS: usize = 2_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident set in bytes.
fn rss() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: isize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn report(what: &str, live_before: isize, rss_before: isize, started: Instant) {
    let (bytes, resident) = (live() - live_before, rss() - rss_before);
    println!(
        "{what}: {BIDS} bids in {:.2?}; live heap {:.1} MiB = {:.1} bytes per bid; resident set +{:.1} MiB = {:.1} bytes per bid",
        started.elapsed(),
        bytes as f64 / 1048576.0,
        bytes as f64 / BIDS as f64,
        resident as f64 / 1048576.0,
        resident as f64 / BIDS as f64,
    );
}

fn main() {
    // Criterion's flags (`--bench`) are passed to every bench binary; there is nothing to set.
    let who = bidders(BIDDERS);
    // The bid stream is generated on the fly, so only the book is counted. Prices over 2,000
    // fen levels, quantities 1 to 5 t, as in the core bench.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |i: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let price = Price::from_units(1_800_000 + (x % 2_000) as i64 * 50).unwrap();
        let qty = Quantity::from_units(((x >> 20) % 5 + 1) as i64 * 1000).unwrap();
        // xorshift never repeats a value within its period: the ids are unique.
        (BidId::new(x), who[i % BIDDERS], price, qty)
    };

    let (live_before, rss_before, started) = (live(), rss(), Instant::now());
    let mut auction = reserve_auction(Format::SealedUniformPrice, TieRule::TimePriority, 5_000_000);
    for i in 0..BIDS {
        let (id, bidder, price, qty) = next(i);
        auction.place_bid(Timestamp::from_micros(T0 + 1 + i as i64), bidder, id, Some(price), Some(qty)).unwrap();
    }
    report("engine sealed book (one auction)", live_before, rss_before, started);
    drop(black_box(auction));

    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let (live_before, rss_before, started) = (live(), rss(), Instant::now());
    let mut book = lobster::OrderBook::default();
    for _ in 0..BIDS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        book.execute(lobster::OrderType::Limit {
            id: u128::from(x),
            side: lobster::Side::Bid,
            qty: ((x >> 20) % 5 + 1) * 1000,
            price: 1_800_000 + (x % 2_000) * 50,
        });
    }
    report("peer: lobster book", live_before, rss_before, started);
    drop(black_box(book));
}
