//! Benchmarks of the pure core (no I/O, no async): the sealed book and clearing.
//!
//! Run: `cargo bench --bench core`. Throughput is reported per bid. Each group also measures a
//! "ceiling" in the same run — the cheapest thing the benchmarked work must at least do
//! (writing the same number of bids into a plain Vec, or sorting the same keys) — so figures
//! can be read as ratios on shared, noisy machines.
//!
//! The insert group also has a peer: the same bids placed into `lobster`, a well-known
//! single-threaded limit order book from crates.io (every bid rests: there are no asks), and
//! after the group it prints the ratio of the two, timed alternately in the same process.

use std::hint::black_box;
use std::time::{Duration, Instant};

mod support;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use emission_auction::domain::{BidId, CreditCode, Price, Quantity, Timestamp};
use emission_auction::engine::{Auction, Format, TieRule};
use support::{T0, bidders, reserve_auction};

const BIDS: usize = 1_000_000;
const BIDDERS: usize = 2_000;

/// A deterministic spread of bids: prices over 2,000 fen levels above the floor (so many
/// ties), quantities 1 to 5 t.
fn bid_stream() -> Vec<(BidId, CreditCode, Price, Quantity)> {
    let who = bidders(BIDDERS);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..BIDS)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let price = Price::from_units(1_800_000 + (x % 2_000) as i64 * 50).unwrap();
            let qty = Quantity::from_units(((x >> 20) % 5 + 1) as i64 * 1000).unwrap();
            (BidId::new(x ^ i as u64), who[i % BIDDERS], price, qty)
        })
        .collect()
}

fn filled(format: Format, tie: TieRule, stream: &[(BidId, CreditCode, Price, Quantity)]) -> Auction {
    let mut a = reserve_auction(format, tie, 500_000);
    for (i, (id, who, price, qty)) in stream.iter().enumerate() {
        a.place_bid(Timestamp::from_micros(T0 + 1 + i as i64), *who, *id, Some(*price), Some(*qty)).unwrap();
    }
    a
}

fn insert(c: &mut Criterion) {
    let stream = bid_stream();
    let mut g = c.benchmark_group("sealed_book");
    g.throughput(Throughput::Elements(BIDS as u64)).sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("insert_1m_bids", |b| {
        b.iter_batched(
            || reserve_auction(Format::SealedUniformPrice, TieRule::TimePriority, 500_000),
            |mut a| {
                for (i, (id, who, price, qty)) in stream.iter().enumerate() {
                    black_box(
                        a.place_bid(Timestamp::from_micros(T0 + 1 + i as i64), *who, *id, Some(*price), Some(*qty))
                            .is_ok(),
                    );
                }
                a
            },
            BatchSize::PerIteration,
        )
    });
    // Ceiling: copying the same bids into a preallocated Vec, which any book must at least do.
    g.bench_function("ceiling_vec_push_1m", |b| {
        b.iter_batched(
            || Vec::with_capacity(BIDS),
            |mut v: Vec<(BidId, CreditCode, Price, Quantity, Timestamp)>| {
                for (i, (id, who, price, qty)) in stream.iter().enumerate() {
                    v.push((*id, *who, *price, *qty, Timestamp::from_micros(T0 + i as i64)));
                }
                v
            },
            BatchSize::PerIteration,
        )
    });
    // Peer: the same bids into lobster's book. It checks nothing (no phase, floor, fill unit,
    // amount or per-bidder totals) and keeps no bidder: it is what a bare price-time book costs.
    g.bench_function("peer_lobster_1m_bids", |b| {
        b.iter_batched(
            lobster::OrderBook::default,
            |mut book| {
                lobster_insert(&mut book, &stream);
                book
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    if selected("sealed_book/peer_ratio") {
        peer_ratio(&stream);
    }
}

fn lobster_insert(book: &mut lobster::OrderBook, stream: &[(BidId, CreditCode, Price, Quantity)]) {
    for (id, _, price, qty) in stream {
        let event = book.execute(lobster::OrderType::Limit {
            id: u128::from(id.get()),
            side: lobster::Side::Bid,
            qty: qty.units() as u64,
            price: price.units() as u64,
        });
        black_box(matches!(event, lobster::OrderEvent::Placed { .. }));
    }
}

/// Times the engine's insert and lobster's alternately, 7 rounds each, and prints the medians
/// and their ratio (above 1: the engine is faster).
fn peer_ratio(stream: &[(BidId, CreditCode, Price, Quantity)]) {
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let mut a = reserve_auction(Format::SealedUniformPrice, TieRule::TimePriority, 500_000);
        let t = Instant::now();
        for (i, (id, who, price, qty)) in stream.iter().enumerate() {
            black_box(
                a.place_bid(Timestamp::from_micros(T0 + 1 + i as i64), *who, *id, Some(*price), Some(*qty)).is_ok(),
            );
        }
        ours.push(t.elapsed());
        drop(a);
        let mut book = lobster::OrderBook::default();
        let t = Instant::now();
        lobster_insert(&mut book, stream);
        peer.push(t.elapsed());
        drop(book);
    }
    ours.sort();
    peer.sort();
    let (ours, peer) = (ours[ours.len() / 2], peer[peer.len() / 2]);
    println!(
        "sealed_book/peer_ratio: engine insert {ours:.1?}, lobster {peer:.1?} (medians of 7, alternating): \
         ratio lobster/engine {:.2}",
        peer.as_secs_f64() / ours.as_secs_f64()
    );
}

/// Whether the command line's benchmark filter (if any) selects `name`: criterion's filters are
/// regular expressions, approximated here by `|`-separated substrings.
fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    filters.is_empty() || filters.iter().any(|f| f.split('|').any(|part| name.contains(part)))
}

/// An ascending auction's hot book: 1,000,000 bids from 2,000 bidders racing in pairs, each
/// pair at the next acceptable price: the first is accepted, the second (a moment late) is
/// refused BID_TOO_LOW. Half accepted, half rejected, as on a busy trading floor.
fn ascending(c: &mut Criterion) {
    let who = bidders(BIDDERS);
    let stream: Vec<(BidId, CreditCode, Price)> = (0..BIDS)
        .map(|i| {
            (BidId::new(i as u64 + 1), who[i % BIDDERS], Price::from_units(1_800_000 + (i / 2) as i64 * 100).unwrap())
        })
        .collect();
    let lot = Quantity::from_units(10_000).unwrap();
    let mut g = c.benchmark_group("ascending_book");
    g.throughput(Throughput::Elements(BIDS as u64)).sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("raise_1m_bids_half_rejected", |b| {
        b.iter_batched(
            support::english_auction,
            |mut a| {
                let mut accepted = 0u32;
                for (i, (id, who, price)) in stream.iter().enumerate() {
                    accepted += u32::from(
                        a.place_bid(Timestamp::from_micros(T0 + 1 + i as i64), *who, *id, Some(*price), Some(lot))
                            .is_ok(),
                    );
                }
                assert_eq!(accepted as usize, BIDS / 2);
                a
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn clear(c: &mut Criterion) {
    let stream = bid_stream();
    let mut g = c.benchmark_group("clearing");
    g.throughput(Throughput::Elements(BIDS as u64)).sample_size(10).measurement_time(Duration::from_secs(20));
    for (name, format, tie) in [
        ("uniform_1m_bids", Format::SealedUniformPrice, TieRule::TimePriority),
        ("pay_as_bid_1m_bids", Format::SealedPayAsBid, TieRule::TimePriority),
        ("uniform_pro_rata_1m_bids", Format::SealedUniformPrice, TieRule::ProRata),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || filled(format, tie, &stream),
                // The book is handed back so that freeing it is not counted as clearing.
                |mut a| {
                    let events = a.tick(Timestamp::from_micros(T0 + 3_600_000_000));
                    (black_box(events), a)
                },
                BatchSize::PerIteration,
            )
        });
    }
    // Ceiling: a stable sort of the same (price, arrival) keys, which price-time clearing
    // cannot avoid.
    g.bench_function("ceiling_sort_1m_keys", |b| {
        b.iter_batched(
            || stream.iter().enumerate().map(|(i, s)| (std::cmp::Reverse(s.2), i as u32)).collect::<Vec<_>>(),
            |mut keys| {
                keys.sort_by_key(|k| k.0);
                keys
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, insert, ascending, clear);
criterion_main!(benches);
