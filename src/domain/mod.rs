//! Domain vocabulary shared by every layer: exact units, identifiers, pollutants and price
//! policy. Nothing here does I/O or knows about protobuf.

mod ids;
mod policy;
mod units;

/// Serde for a type with `Display` and `FromStr`: written as its text, read without allocating
/// (a visitor parses the borrowed string). Journal replay decodes millions of these.
macro_rules! serde_as_text {
    ($($t:ty),* $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Text;
                impl serde::de::Visitor<'_> for Text {
                    type Value = $t;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a {} as text", stringify!($t))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse::<$t>().map_err(|e| E::custom(format_args!("{v:?}: {e}")))
                    }
                }
                d.deserialize_str(Text)
            }
        }
    )*};
}

pub use ids::{AuctionId, BidId, BidderId, CreditCode, IdError, LotId, Reference, RegionCode, Timestamp};
pub use policy::{BenchmarkEntry, BenchmarkSchedule, Pollutant, PricePolicy};
serde_as_text!(Price, Quantity, Amount, Ratio, CreditCode, RegionCode, Reference, AuctionId, BidId);

pub use units::{
    Amount, DecimalError, MAX_AMOUNT_FEN, MAX_BID_AMOUNT_FEN, MAX_PRICE_FEN, MAX_QUANTITY_KG, Price, Quantity, Ratio,
    format_units, parse_decimal, parse_non_negative,
};
