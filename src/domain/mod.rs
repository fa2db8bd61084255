//! Domain vocabulary shared by every layer: exact units, identifiers, pollutants and price
//! policy. Nothing here does I/O or knows about protobuf.

mod enterprise;
mod ids;
mod policy;
mod reason;
pub mod receipt;
mod units;

/// Reads a value from its text without allocating: a visitor parses the borrowed string.
fn from_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    struct Text<T>(std::marker::PhantomData<T>);
    impl<T> serde::de::Visitor<'_> for Text<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a {} as text", std::any::type_name::<T>())
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            v.parse::<T>().map_err(|e| E::custom(format_args!("{v:?}: {e}")))
        }
    }
    d.deserialize_str(Text(std::marker::PhantomData))
}

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
                from_text(d)
            }
        }
    )*};
}

/// Serde for a type that is an integer underneath: its text in human-readable formats (JSON, as
/// the API shows it), the integer itself in binary ones (the journal's postcard, where it is a
/// varint: smaller, and decoded without parsing). Decoding checks the range, as parsing would.
macro_rules! serde_as_text_or_integer {
    ($($t:ty: $int:ty => $get:ident, $make:expr;)*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() { s.collect_str(self) } else { <$int as serde::Serialize>::serialize(&self.$get(), s) }
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    from_text(d)
                } else {
                    let n = <$int as serde::Deserialize>::deserialize(d)?;
                    let make: fn($int) -> Option<$t> = $make;
                    make(n).ok_or_else(|| {
                        <D::Error as serde::de::Error>::custom(format_args!("{n} is out of range for {}", stringify!($t)))
                    })
                }
            }
        }
    )*};
}

pub use enterprise::{
    EligibilityPolicy, Enterprise, EnterpriseStatus, IndustryCode, Permit, RegionAreas, RegionScope, RestrictedRegion,
    date_of,
};
pub use ids::{AuctionId, BidId, BidderId, CreditCode, IdError, LotId, Reference, RegionCode, Timestamp};
pub use policy::{BenchmarkEntry, BenchmarkSchedule, FactorScope, Pollutant, PriceFactor, PricePolicy};
pub use reason::Reason;
serde_as_text!(CreditCode, RegionCode, Reference);
serde_as_text_or_integer! {
    Price: i64 => units, Price::from_units;
    Quantity: i64 => units, Quantity::from_units;
    Amount: i64 => units, Amount::from_units;
    Ratio: i64 => ppm, |ppm| Some(Ratio::from_ppm(ppm)).filter(|r| r.ppm() >= 0);
    AuctionId: u64 => get, |n| Some(AuctionId::new(n));
    BidId: u64 => get, |n| Some(BidId::new(n));
}

pub use units::{
    Amount, DecimalError, MAX_AMOUNT_FEN, MAX_BID_AMOUNT_FEN, MAX_PRICE_FEN, MAX_QUANTITY_KG, Price, Quantity,
    QuantityTotal, Ratio, format_units, parse_decimal, parse_non_negative,
};
