//! What both benchmark files need: one reserve-lot auction and a crowd of bidders.

use emission_auction::domain::{AuctionId, CreditCode, Pollutant, Price, PricePolicy, Quantity, Ratio, Timestamp};
use emission_auction::engine::{
    AscendingRequest, Auction, AuctionRequest, BidRevision, CapMode, CapRequest, Format, LotRequest, OriginKind, Seed,
    TieRule, Undersubscription,
};

/// 2026-01-01T00:00:00Z; auctions open at T0 and close an hour later.
pub const T0: i64 = 1_767_225_600_000_000;

/// `n` distinct enterprises.
pub fn bidders(n: usize) -> Vec<CreditCode> {
    (0..n).map(|i| CreditCode::with_check_digit(&format!("9114010{i:010}")).unwrap()).collect()
}

/// An SO2 government-reserve auction of `lot_tonnes` in 1 t fill units: floor 18000.00, no cap.
pub fn reserve_auction(format: Format, tie: TieRule, lot_tonnes: i64) -> Auction {
    auction(request(format, tie, lot_tonnes))
}

/// An ascending auction of one 10 t SO2 lot: start at the floor 18000.00, increment 1.00, no
/// cap, a free period of an hour.
#[allow(dead_code, reason = "only the core bench runs ascending auctions")]
pub fn english_auction() -> Auction {
    let mut request = request(Format::AscendingEnglish, TieRule::TimePriority, 10);
    request.lot.fill_unit = Some(request.lot.quantity);
    request.ascending = Some(AscendingRequest {
        start_price: None,
        increment: Price::from_units(100).unwrap(),
        countdown_seconds: 30,
        hard_stop: None,
        max_extensions: None,
        timed_min_bidders: 0,
    });
    auction(request)
}

fn auction(request: AuctionRequest) -> Auction {
    Auction::create(AuctionId::new(1), request, &PricePolicy::default(), Timestamp::from_micros(T0 - 1), Seed([1; 32]))
        .unwrap()
}

fn request(format: Format, tie: TieRule, lot_tonnes: i64) -> AuctionRequest {
    AuctionRequest {
        lot: LotRequest {
            id: "BENCH-1".parse().unwrap(),
            pollutant: Pollutant::So2,
            quantity: Quantity::from_units(lot_tonnes * 1000).unwrap(),
            fill_unit: Some(Quantity::from_units(1000).unwrap()),
            seller: CreditCode::with_check_digit("12140000MB0CENTRE").unwrap(),
            origin: OriginKind::GovernmentReserve,
            certificate_id: None,
            region: "140100".parse().unwrap(),
            vintage_year: 2025,
            valid_years: 5,
            project: Default::default(),
        },
        format,
        tie_rule: tie,
        undersubscription: Undersubscription::SellAvailable,
        min_bidders: 0,
        per_bidder_cap: None,
        revision: BidRevision::Revisable,
        conversion_factor: Ratio::ONE,
        reserve_markup: None,
        cap: CapRequest { mode: CapMode::None, percent: None },
        opens_at: Timestamp::from_micros(T0),
        closes_at: Timestamp::from_micros(T0 + 3_600_000_000),
        ascending: None,
        clock: None,
        deposit: None,
        seller_section: None,
    }
}
