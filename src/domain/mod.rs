//! Domain vocabulary shared by every layer: exact units, identifiers, pollutants and price
//! policy. Nothing here does I/O or knows about protobuf.

mod ids;
mod policy;
mod units;

pub use ids::{AuctionId, BidId, BidderId, CreditCode, IdError, LotId, Reference, RegionCode, Timestamp};
pub use policy::{BenchmarkEntry, BenchmarkSchedule, Pollutant, PricePolicy};
pub use units::{
    Amount, DecimalError, MAX_AMOUNT_FEN, MAX_BID_AMOUNT_FEN, MAX_PRICE_FEN, MAX_QUANTITY_KG, Price, Quantity, Ratio,
    format_units, parse_decimal, parse_non_negative,
};
