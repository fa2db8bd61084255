//! The core's hot paths on a fixed stream of 200,000 bids, for instruction counts under
//! callgrind (stable on a shared, noisy machine, unlike wall time):
//!
//! ```sh
//! cargo build --release --example count_core
//! valgrind --tool=callgrind target/release/examples/count_core setup      # the stream alone
//! valgrind --tool=callgrind target/release/examples/count_core insert     # + sealed inserts
//! valgrind --tool=callgrind target/release/examples/count_core clear      # + the close
//! valgrind --tool=callgrind target/release/examples/count_core ascending  # English raises
//! valgrind --tool=callgrind target/release/examples/count_core commit     # + the book's tree
//! ```
//!
//! Subtract `setup` from each (and `insert` from `clear` and `commit`); BENCHMARKS.md compares
//! the figures across versions. The close computes the book's tree (the commitment a settlement
//! carries) besides clearing; `commit` builds the same tree on the same book through the public
//! API (`Auction::book`, then the root), for what the tree costs. The auctions are the
//! benchmarks' own (`benches/support`).
use emission_auction::domain::*;
use emission_auction::engine::*;

#[path = "../benches/support/mod.rs"]
mod support;

use support::T0;

const N: usize = 200_000;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let who = support::bidders(2000);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let stream: Vec<(BidId, CreditCode, Price, Quantity)> = (0..N)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (
                BidId::new(x ^ i as u64),
                who[i % 2000],
                Price::from_units(1_800_000 + (x % 2_000) as i64 * 50).unwrap(),
                Quantity::from_units(((x >> 20) % 5 + 1) as i64 * 1000).unwrap(),
            )
        })
        .collect();
    let mut a = if mode == "ascending" {
        support::english_auction()
    } else {
        support::reserve_auction(Format::SealedUniformPrice, TieRule::TimePriority, 100_000)
    };
    if mode == "setup" {
        std::hint::black_box(&stream);
        return;
    }
    let mut ok = 0;
    for (i, (id, b, p, q)) in stream.iter().enumerate() {
        let (p, q) = if mode == "ascending" {
            (Price::from_units(1_800_000 + i as i64 * 100).unwrap(), Quantity::from_units(10_000).unwrap())
        } else {
            (*p, *q)
        };
        ok += a.place_bid(Timestamp::from_micros(T0 + 1 + i as i64), *b, *id, Some(p), Some(q)).is_ok() as usize;
    }
    if mode == "commit" {
        let leaves: Vec<[u8; 32]> = a.book().into_iter().map(|(_, leaf)| leaf).collect();
        std::hint::black_box(emission_auction::domain::receipt::merkle_root(&leaves));
    }
    if mode == "clear" {
        let e = a.apply(Timestamp::from_micros(T0 + 10_000_000), Command::Close).unwrap();
        std::hint::black_box(e);
    }
    println!("{mode}: {ok} accepted");
}
