//! Entry points for fuzzing: each takes arbitrary bytes and must never panic, whatever they
//! are. The cargo-fuzz targets in `fuzz/` call them, and `tests/it/fuzz.rs` replays the corpus
//! kept in `fuzz/corpus/` through them (plus a bounded run of random inputs) in every
//! `cargo test`, so the targets stay built and the corpus stays green without a fuzzer.
//!
//! Where a parse succeeds, the targets also check what must hold of it: a decimal or a code
//! prints back to what parses to the same value; an entry encodes back to what decodes to the
//! same entry; after every accepted command the book's invariants hold.

use std::str::FromStr;

use prost::Message;

use crate::domain::{AuctionId, BidId, CreditCode, Price, PricePolicy, Quantity, RegionCode, Timestamp};
use crate::engine::{Auction, Command, Seed};
use crate::grpc::convert;
use crate::proto as pb;
use crate::service::entry::Entry;

/// Decimal parsing: prices, quantities and amounts as terminals send them.
pub fn decimal(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::domain::parse_decimal(text, 2, i64::MAX);
    let _ = crate::domain::parse_non_negative(text, 3, i64::MAX);
    if let Ok(price) = convert::price("price", text) {
        assert_eq!(convert::price("price", &price.to_string()).ok(), Some(price), "{text:?}");
    }
    if let Ok(quantity) = convert::quantity("quantity", text) {
        assert_eq!(convert::quantity("quantity", &quantity.to_string()).ok(), Some(quantity), "{text:?}");
    }
    let _ = convert::amount("amount", text);
    let _ = convert::bid_price("price", text);
    let _ = convert::bid_quantity("quantity", text);
}

/// Unified social credit codes (with their check digit), region codes and ids.
pub fn credit_code(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(code) = CreditCode::from_str(text) {
        assert_eq!(CreditCode::from_str(&code.to_string()).ok(), Some(code), "{text:?}");
    }
    let _ = CreditCode::with_check_digit(text);
    let _ = RegionCode::from_str(text);
    let _ = AuctionId::from_str(text);
    let _ = BidId::from_str(text);
}

/// A journal record, an anchor, a segment header.
pub fn journal_record(data: &[u8]) {
    use crate::journal::format;
    let mut at = 0;
    // Walks records as recovery does, from one to the next, until the end or bad bytes.
    while at < data.len() {
        match format::decode(&data[at..]) {
            format::Decoded::Record { len, .. } if len > 0 => at += len,
            _ => break,
        }
    }
    let _ = format::Anchor::decode(data);
    let _ = format::parse_header(data);
}

/// A journal entry (postcard), owned and borrowed.
pub fn entry(data: &[u8]) {
    if let Ok(entry) = Entry::decode(data) {
        let again = entry.encode().expect("a decoded entry encodes");
        assert_eq!(Entry::decode(&again).ok(), Some(entry));
    }
    let _ = Entry::decode_borrowed(data);
}

/// The gRPC layer's conversion of requests into domain commands.
pub fn grpc_request(data: &[u8]) {
    if let Ok(req) = pb::CreateAuctionRequest::decode(data) {
        let _ = convert::auction_request(&req);
    }
    if let Ok(req) = pb::PlaceBidRequest::decode(data) {
        let _ = convert::auction_id(&req.auction_id);
        let _ = convert::request_id(&req.request_id);
        let _ = convert::bid_price("price", &req.price);
        let _ = convert::bid_quantity("quantity", &req.quantity);
    }
    if let Ok(req) = pb::ReviseBidRequest::decode(data) {
        let _ = convert::bid_id(&req.bid_id);
    }
    if let Ok(req) = pb::EnterpriseRequest::decode(data) {
        let _ = convert::enterprise(req.enterprise.as_ref());
    }
}

const T0: i64 = 1_772_323_200_000_000;

/// The auction a command sequence runs against: its format from the first byte.
fn auction(selector: u8) -> Option<Auction> {
    let format = match selector % 6 {
        0 => pb::AuctionFormat::SealedFirstPrice,
        1 => pb::AuctionFormat::SealedUniformPrice,
        2 => pb::AuctionFormat::SealedPayAsBid,
        3 => pb::AuctionFormat::FixedPrice,
        4 => pb::AuctionFormat::AscendingEnglish,
        _ => pb::AuctionFormat::AscendingClock,
    };
    let single = matches!(format, pb::AuctionFormat::SealedFirstPrice | pb::AuctionFormat::AscendingEnglish);
    let request = pb::CreateAuctionRequest {
        request_id: "fuzz".into(),
        lot: Some(pb::Lot {
            lot_id: "FUZZ-1".into(),
            pollutant: pb::Pollutant::So2 as i32,
            quantity: if single { "10.000".into() } else { "60.000".into() },
            fill_unit: if single { "10.000".into() } else { "1.000".into() },
            seller: CreditCode::with_check_digit("12140000MB0CENTRE").ok()?.to_string(),
            origin: pb::LotOrigin::GovernmentReserve as i32,
            region_code: "140100".into(),
            vintage_year: 2025,
            valid_years: 5,
            ..Default::default()
        }),
        format: format as i32,
        opens_at: Some(convert::to_timestamp(Timestamp::from_micros(T0))),
        closes_at: Some(convert::to_timestamp(Timestamp::from_micros(T0 + 3_600_000_000))),
        tie_rule: pb::TieRule::TimePriority as i32,
        ascending: (format == pb::AuctionFormat::AscendingEnglish).then(|| pb::AscendingTerms {
            increment: "100.00".into(),
            countdown_seconds: 60,
            ..Default::default()
        }),
        clock: (format == pb::AuctionFormat::AscendingClock).then(|| pb::ClockTerms {
            increment: "200.00".into(),
            round_seconds: 600,
            ..Default::default()
        }),
        ..Default::default()
    };
    let request = convert::auction_request(&request).ok()?;
    Auction::create(AuctionId::new(1), request, &PricePolicy::default(), Timestamp::from_micros(T0), Seed([7; 32])).ok()
}

/// Random command sequences against the engine: every format, extreme numbers, time moving
/// forward by what the bytes say; the book's invariants after every step.
pub fn engine_commands(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let Some(mut auction) = auction(selector) else { return };
    let mut at = T0;
    let mut bids: Vec<BidId> = Vec::new();
    let mut next_bid = 1u64;
    while let [op, a, b, c, tail @ ..] = rest {
        rest = tail;
        at = at.saturating_add(i64::from(*a) * 20_000_000);
        let now = Timestamp::from_micros(at);
        let bidder = CreditCode::with_check_digit(&format!("91140100MA0DEM0{:02}", b % 8)).expect("a valid code");
        // Prices and quantities near the floor and the cap, and at the extremes.
        let price = match c % 4 {
            0 => None,
            1 => Price::from_units(1_800_000 + i64::from(*b) * 1_000),
            2 => Price::from_units(i64::MAX / (i64::from(*c) + 1)),
            _ => Price::from_units(i64::from(*b) + 1),
        };
        let quantity = match b % 4 {
            0 => None,
            1 => Quantity::from_units(i64::from(*c % 12) * 1_000),
            2 => Quantity::from_units(i64::MAX / (i64::from(*b) + 1)),
            _ => Quantity::from_units(10_000),
        };
        let pick = |n: u8| bids.get(usize::from(n) % bids.len().max(1)).copied().unwrap_or(BidId::new(u64::from(n)));
        let command = match op % 10 {
            0..=3 => {
                next_bid += 1;
                Command::PlaceBid { bidder, bid: BidId::new(next_bid), price, quantity, eligibility: None }
            }
            4 | 5 => Command::ReviseBid { bidder, bid: pick(*c), price, quantity, eligibility: None },
            6 => Command::WithdrawBid { bidder, bid: pick(*c) },
            7 => Command::AdvanceRound,
            8 => Command::Open,
            _ if c % 16 == 0 => Command::Close,
            _ => {
                let _ = auction.tick(now);
                auction.check_invariants();
                continue;
            }
        };
        if let Ok(crate::engine::Applied::Bid(change)) = auction.apply_command(now, command) {
            bids.push(change.bid.id);
        }
        auction.check_invariants();
    }
}

/// A fuzz target: arbitrary bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// Every target, by name: what the corpus driver and the fuzz targets dispatch on.
pub const TARGETS: &[(&str, Target)] = &[
    ("decimal", decimal),
    ("credit_code", credit_code),
    ("journal_record", journal_record),
    ("entry", entry),
    ("grpc_request", grpc_request),
    ("engine_commands", engine_commands),
];
