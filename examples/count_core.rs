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
//! carries) besides clearing: `commit` does that work alone, on the same book, so that
//! `clear - commit` is clearing itself.
use emission_auction::domain::*;
use emission_auction::engine::*;

const T0: i64 = 1_767_225_600_000_000;
const N: usize = 200_000;

fn request(format: Format, lot_tonnes: i64) -> AuctionRequest {
    AuctionRequest {
        lot: LotRequest {
            id: "BENCH-1".parse().unwrap(),
            pollutant: Pollutant::So2,
            quantity: Quantity::from_units(lot_tonnes * 1000).unwrap(),
            fill_unit: Some(
                Quantity::from_units(if format == Format::AscendingEnglish { lot_tonnes * 1000 } else { 1000 })
                    .unwrap(),
            ),
            seller: CreditCode::with_check_digit("12140000MB0CENTRE").unwrap(),
            origin: OriginKind::GovernmentReserve,
            certificate_id: None,
            region: "140100".parse().unwrap(),
            vintage_year: 2025,
            valid_years: 5,
            project: Default::default(),
        },
        format,
        tie_rule: TieRule::TimePriority,
        undersubscription: Undersubscription::SellAvailable,
        min_bidders: 0,
        per_bidder_cap: None,
        revision: BidRevision::Revisable,
        conversion_factor: Ratio::ONE,
        reserve_markup: None,
        cap: CapRequest { mode: CapMode::None, percent: None },
        opens_at: Timestamp::from_micros(T0),
        closes_at: Timestamp::from_micros(T0 + 3_600_000_000),
        ascending: (format == Format::AscendingEnglish).then_some(AscendingRequest {
            start_price: None,
            increment: Price::from_units(100).unwrap(),
            countdown_seconds: 30,
            hard_stop: None,
            max_extensions: None,
            timed_min_bidders: 0,
        }),
        clock: None,
        deposit: None,
        seller_section: None,
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let who: Vec<CreditCode> =
        (0..2000).map(|i| CreditCode::with_check_digit(&format!("9114010{i:010}")).unwrap()).collect();
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
    let format = if mode == "ascending" { Format::AscendingEnglish } else { Format::SealedUniformPrice };
    let mut a = Auction::create(
        AuctionId::new(1),
        request(format, if mode == "ascending" { 10 } else { 100_000 }),
        &PricePolicy::default(),
        Timestamp::from_micros(T0 - 1),
        Seed([1; 32]),
    )
    .unwrap();
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
