//! Exact money, quantity and ratio types.
//!
//! Prices and amounts are whole fen (0.01 yuan), quantities whole kilograms (0.001 t), ratios
//! whole parts per million. Everything is an integer, so clearing never rounds by accident; the
//! only roundings are the ones the rules name (amounts and fees half-up to the fen, the floor up
//! and the cap down to the fen), and they live here.
//!
//! Text crosses into these types only through [`parse_decimal`], which accepts plain ASCII
//! decimals and nothing else: no sign, exponent, separator, or scale finer than the unit. Finer
//! input is rejected, never rounded.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Largest accepted unit price: 99,999,999.99 yuan per tonne.
pub const MAX_PRICE_FEN: i64 = 10_000_000_000 - 1;
/// Largest accepted quantity: 9,999,999.999 tonnes.
pub const MAX_QUANTITY_KG: i64 = 10_000_000_000 - 1;
/// Largest amount one bid may reach: 10,000,000,000,000.00 yuan.
pub const MAX_BID_AMOUNT_FEN: i64 = 1_000_000_000_000_000;
/// Largest amount the type holds: ten times MAX_PRICE x MAX_QUANTITY, so that a lot's total
/// (a sum of allocations, each rounded half-up to the fen) always fits.
pub const MAX_AMOUNT_FEN: i64 = 1_000_000_000_000_000_000;

/// Why a decimal string was refused. The caller adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("is empty")]
    Empty,
    #[error("is not a plain decimal number (digits with an optional '.', no sign, exponent or separators)")]
    Syntax,
    #[error("has more than {max_scale} decimal places")]
    TooFine { max_scale: u32 },
    #[error("must be greater than zero")]
    NotPositive,
    #[error("is too large (at most {max})")]
    TooLarge { max: String },
}

/// Parses a strictly positive plain decimal with at most `max_scale` decimals into an integer
/// count of `10^-max_scale` units. "18000.5" with scale 2 is 1_800_050.
pub fn parse_decimal(text: &str, max_scale: u32, max_units: i64) -> Result<i64, DecimalError> {
    match parse_non_negative(text, max_scale, max_units)? {
        0 => Err(DecimalError::NotPositive),
        units => Ok(units),
    }
}

/// As [`parse_decimal`], but zero is a value.
pub fn parse_non_negative(text: &str, max_scale: u32, max_units: i64) -> Result<i64, DecimalError> {
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    // rust_decimal alone would accept "1_000", "+1", "-0" and "1e5" (from_scientific); the
    // grammar here is the contract with terminals, so it is checked first and by hand.
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(int_part) || frac_part.is_some_and(|f| !digits_only(f)) {
        return Err(DecimalError::Syntax);
    }
    // 28 significant digits is Decimal's own limit; longer text is out of range anyway.
    if text.len() > 28 {
        return Err(DecimalError::TooLarge { max: format_units(max_units, max_scale) });
    }
    let value = Decimal::from_str_exact(text)
        .map_err(|_| DecimalError::TooLarge { max: format_units(max_units, max_scale) })?;
    let value = value.normalize();
    if value.scale() > max_scale {
        return Err(DecimalError::TooFine { max_scale });
    }
    let units = value.mantissa() * 10i128.pow(max_scale - value.scale());
    if units > i128::from(max_units) {
        return Err(DecimalError::TooLarge { max: format_units(max_units, max_scale) });
    }
    Ok(units as i64)
}

/// Renders `units` of `10^-scale` as a decimal with exactly `scale` places.
pub fn format_units(units: i64, scale: u32) -> String {
    let mut out = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write_units(&mut out, units, scale);
    out
}

/// Writes `units` of `10^-scale` as a decimal with exactly `scale` places (scale at most 18),
/// without allocating: the whole part, a point, and the fraction padded with zeros.
pub fn write_units(out: &mut impl fmt::Write, units: i64, scale: u32) -> fmt::Result {
    let sign = if units < 0 { "-" } else { "" };
    let magnitude = units.unsigned_abs();
    if scale == 0 {
        return write!(out, "{sign}{magnitude}");
    }
    let divisor = 10u64.pow(scale.min(18));
    write!(out, "{sign}{}.{:0width$}", magnitude / divisor, magnitude % divisor, width = scale as usize)
}

macro_rules! unit_type {
    ($(#[$doc:meta])* $name:ident, $scale:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
                pub struct $name(i64);

        impl $name {
            pub const ZERO: Self = Self(0);
            /// Decimal places of the textual form.
            pub const SCALE: u32 = $scale;
            pub const MAX: Self = Self($max);

            /// Builds a value from its integer unit count; `None` when negative or above `MAX`.
            pub const fn from_units(units: i64) -> Option<Self> {
                if units < 0 || units > $max { None } else { Some(Self(units)) }
            }

            pub const fn units(self) -> i64 {
                self.0
            }

            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }

            pub fn checked_add(self, other: Self) -> Option<Self> {
                self.0.checked_add(other.0).and_then(Self::from_units)
            }

            pub fn checked_sub(self, other: Self) -> Option<Self> {
                self.0.checked_sub(other.0).and_then(Self::from_units)
            }

            /// Parses a strictly positive value (see [`parse_decimal`]).
            pub fn parse_positive(text: &str) -> Result<Self, DecimalError> {
                parse_decimal(text, $scale, $max).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_units(f, self.0, $scale)
            }
        }

        impl FromStr for $name {
            type Err = DecimalError;
            /// Parses a value that may be zero ("0.00"); used for stored data, not bids.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_non_negative(text, $scale, $max).map(Self)
            }
        }


    };
}

unit_type!(
    /// A unit price in fen per tonne.
    Price, 2, MAX_PRICE_FEN
);
unit_type!(
    /// A quantity in kilograms (0.001 t), the finest tick a lot may have.
    Quantity, 3, MAX_QUANTITY_KG
);
unit_type!(
    /// A sum of money in fen.
    Amount, 2, MAX_AMOUNT_FEN
);

impl Amount {
    /// `price x quantity`, rounded half-up to the fen. `None` above [`MAX_AMOUNT_FEN`], which
    /// no product of in-range price and quantity reaches.
    pub fn of(price: Price, quantity: Quantity) -> Option<Amount> {
        // fen/t x kg = milli-fen; +500 then /1000 is half-up for non-negative values. Real
        // products fit in i64, whose division is far cheaper than i128's.
        let fen = match price.0.checked_mul(quantity.0).and_then(|m| m.checked_add(500)) {
            Some(milli_fen) => milli_fen / 1000,
            None => i64::try_from((i128::from(price.0) * i128::from(quantity.0) + 500) / 1000).ok()?,
        };
        Amount::from_units(fen)
    }

    /// `self x rate`, rounded half-up to the fen.
    pub fn times(self, rate: Ratio) -> Amount {
        let fen = match self.0.checked_mul(rate.0).and_then(|m| m.checked_add(500_000)) {
            Some(scaled) => scaled / 1_000_000,
            None => ((i128::from(self.0) * i128::from(rate.0) + 500_000) / 1_000_000) as i64,
        };
        Amount(fen)
    }
}

impl Quantity {
    /// Whether this is a whole number of `unit`s (a zero unit divides nothing).
    pub fn is_multiple_of(self, unit: Quantity) -> bool {
        unit.0 > 0 && self.0 % unit.0 == 0
    }

    /// How many whole `unit`s fit in this quantity.
    pub fn whole_units(self, unit: Quantity) -> i64 {
        if unit.0 == 0 { 0 } else { self.0 / unit.0 }
    }

    /// `n` fill units.
    pub fn units_of(unit: Quantity, n: i64) -> Quantity {
        Quantity(unit.0 * n)
    }

    /// `self x ratio`, rounded down to a whole number of `unit`s.
    pub fn share_in_units(self, ratio: Ratio, unit: Quantity) -> Quantity {
        let kg = i128::from(self.0) * i128::from(ratio.0) / 1_000_000;
        let kg = kg as i64;
        if unit.0 == 0 { Quantity(kg) } else { Quantity(kg - kg % unit.0) }
    }
}

/// A sum of quantities that may exceed the largest single [`Quantity`]: a clock round's total
/// demand over many bidders, or one bidder's active bids. Kilograms in a `u64`, which holds the
/// sum of every quantity one book can hold (2^30 bids of less than 10^10 kg is below 1.1 x 10^19,
/// and `u64` reaches 1.8 x 10^19), so adding a quantity never overflows in practice; it is
/// checked all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QuantityTotal(u64);

impl QuantityTotal {
    pub const ZERO: QuantityTotal = QuantityTotal(0);
    /// The largest total: where a sum that could not be held stops, above every cap.
    pub const SATURATED: QuantityTotal = QuantityTotal(u64::MAX);

    pub fn of(quantity: Quantity) -> QuantityTotal {
        // Quantities are never negative.
        QuantityTotal(quantity.0.unsigned_abs())
    }

    /// The total with `quantity` added; `None` only past `u64`, which no book reaches.
    #[inline]
    pub fn plus(self, quantity: Quantity) -> Option<QuantityTotal> {
        self.0.checked_add(quantity.0.unsigned_abs()).map(QuantityTotal)
    }

    /// The sum of two totals; `None` only past `u64`.
    pub fn plus_total(self, other: QuantityTotal) -> Option<QuantityTotal> {
        self.0.checked_add(other.0).map(QuantityTotal)
    }

    /// The total with `quantity` taken off; `None` below zero.
    #[inline]
    pub fn minus(self, quantity: Quantity) -> Option<QuantityTotal> {
        self.0.checked_sub(quantity.0.unsigned_abs()).map(QuantityTotal)
    }

    /// This total less `other`; `None` below zero.
    pub fn minus_total(self, other: QuantityTotal) -> Option<QuantityTotal> {
        self.0.checked_sub(other.0).map(QuantityTotal)
    }

    pub fn kilograms(self) -> u64 {
        self.0
    }

    /// The total as a single quantity, when it is one.
    pub fn as_quantity(self) -> Option<Quantity> {
        i64::try_from(self.0).ok().and_then(Quantity::from_units)
    }
}

impl fmt::Display for QuantityTotal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A dimensionless ratio in parts per million: fee rates, conversion factors, markups, and
/// percentages (20% is 200_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ratio(i64);

impl Ratio {
    pub const ONE: Ratio = Ratio(1_000_000);
    /// Upper bound for any factor: 1000x.
    const MAX_PPM: i64 = 1_000_000_000;

    pub const fn from_ppm(ppm: i64) -> Ratio {
        Ratio(ppm)
    }

    pub const fn ppm(self) -> i64 {
        self.0
    }

    /// Parses a factor such as "1.5" or a rate such as "0.0075" (up to six decimals, > 0).
    pub fn parse_factor(text: &str) -> Result<Ratio, DecimalError> {
        parse_decimal(text, 6, Self::MAX_PPM).map(Ratio)
    }

    /// Parses a percentage such as "20" or "12.5" (up to four decimals, > 0, at most `max`).
    pub fn parse_percent(text: &str, max_percent: i64) -> Result<Ratio, DecimalError> {
        parse_decimal(text, 4, max_percent * 10_000).map(Ratio)
    }

    /// Renders as a factor ("1.5", "0.0075").
    pub fn as_factor(self) -> String {
        Decimal::new(self.0, 6).normalize().to_string()
    }

    /// Renders as a percentage ("20", "0.75").
    pub fn as_percent(self) -> String {
        Decimal::new(self.0, 4).normalize().to_string()
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_factor())
    }
}

impl FromStr for Ratio {
    type Err = DecimalError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ratio::parse_factor(text)
    }
}

impl Price {
    /// `self x a x b`, rounded up to the fen: a floor derived this way is never below policy.
    pub fn scaled_up(self, a: Ratio, b: Ratio) -> Option<Price> {
        let num = i128::from(self.0) * i128::from(a.0) * i128::from(b.0);
        let den = 1_000_000_000_000i128;
        let fen = num.checked_add(den - 1)? / den;
        i64::try_from(fen).ok().and_then(Price::from_units)
    }

    /// `self x` every factor, rounded up to the fen once, at the end: exact whatever the
    /// number of factors. `None` when the result is out of range.
    pub fn scaled_up_by(self, factors: &[Ratio]) -> Option<Price> {
        let mut num = i128::from(self.0);
        let mut den = 1i128;
        for f in factors {
            num = num.checked_mul(i128::from(f.0))?;
            den = den.checked_mul(1_000_000)?;
        }
        let fen = num.checked_add(den - 1)? / den;
        i64::try_from(fen).ok().and_then(Price::from_units)
    }

    /// `self x (1 + pct)`, rounded down to the fen: a cap derived this way is never above policy.
    pub fn raised_down(self, pct: Ratio) -> Option<Price> {
        let num = i128::from(self.0) * i128::from(1_000_000 + pct.0);
        let fen = num / 1_000_000;
        i64::try_from(fen).ok().and_then(Price::from_units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_everything_but_plain_decimals() {
        for bad in ["", "NaN", "1e5", "-1", "+1", "-0", "1,000", "1_000", " 1", "1.", ".5", "１２", "0x10", "inf"] {
            assert!(Price::parse_positive(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Price::parse_positive("0"), Err(DecimalError::NotPositive));
        assert_eq!(Price::parse_positive("0.00"), Err(DecimalError::NotPositive));
        assert_eq!(Price::parse_positive("0.001"), Err(DecimalError::TooFine { max_scale: 2 }));
        assert_eq!(Quantity::parse_positive("0.0001"), Err(DecimalError::TooFine { max_scale: 3 }));
        assert!(matches!(Price::parse_positive("12345678901234567890123456789"), Err(DecimalError::TooLarge { .. })));
        assert!(matches!(Price::parse_positive("100000000.00"), Err(DecimalError::TooLarge { .. })));
    }

    /// The text of units is what `rust_decimal` writes for the same value and scale.
    #[test]
    fn units_render_as_decimals_do() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values = vec![0, 1, -1, 9, 10, 99, 100, 101, -100, -101, 999, 1000, i64::MAX, i64::MIN + 1];
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push((x >> (x % 60)) as i64 * if x.is_multiple_of(3) { -1 } else { 1 });
        }
        for units in values {
            for scale in [0, 2, 3, 6] {
                assert_eq!(
                    format_units(units, scale),
                    Decimal::new(units, scale).to_string(),
                    "{units} at scale {scale}"
                );
            }
        }
        assert_eq!(Price::from_units(1_800_005).unwrap().to_string(), "18000.05");
        assert_eq!(Quantity::from_units(40).unwrap().to_string(), "0.040");
    }

    #[test]
    fn parses_to_exact_units() {
        assert_eq!(Price::parse_positive("18000").unwrap().units(), 1_800_000);
        assert_eq!(Price::parse_positive("18000.5").unwrap().units(), 1_800_050);
        assert_eq!(Price::parse_positive("18000.50000").unwrap().units(), 1_800_050);
        assert_eq!(Quantity::parse_positive("4.048").unwrap().units(), 4_048);
        assert_eq!(Quantity::parse_positive("4.048").unwrap().to_string(), "4.048");
        assert_eq!(Price::parse_positive("0.01").unwrap().to_string(), "0.01");
    }

    #[test]
    fn amounts_round_half_up_to_the_fen() {
        // 18000.01 yuan/t x 0.001 t = 18.00001 yuan -> 18.00
        let p = Price::parse_positive("18000.01").unwrap();
        let q = Quantity::parse_positive("0.001").unwrap();
        assert_eq!(Amount::of(p, q).unwrap().to_string(), "18.00");
        // 0.05 yuan/t x 0.1 t = 0.005 yuan -> 0.01 (half-up)
        let p = Price::parse_positive("0.05").unwrap();
        let q = Quantity::parse_positive("0.1").unwrap();
        assert_eq!(Amount::of(p, q).unwrap().to_string(), "0.01");
        // 0.75% of 0.66 yuan = 0.00495 -> 0.00; of 0.67 yuan = 0.005025 -> 0.01
        let rate = Ratio::parse_factor("0.0075").unwrap();
        assert_eq!("0.66".parse::<Amount>().unwrap().times(rate).to_string(), "0.00");
        assert_eq!("0.67".parse::<Amount>().unwrap().times(rate).to_string(), "0.01");
    }

    #[test]
    fn wide_products_take_the_exact_slow_path() {
        // 99,999,999.99 x 9,999,999.999 overflows i64 in milli-fen but not as an amount.
        let p = Price::parse_positive("99999999.99").unwrap();
        let q = Quantity::parse_positive("9999999.999").unwrap();
        assert_eq!(Amount::of(p, q).unwrap().to_string(), "999999999800000.00");
        let big = Amount::from_units(MAX_AMOUNT_FEN).unwrap();
        assert_eq!(big.times(Ratio::parse_factor("0.0075").unwrap()).to_string(), "75000000000000.00");
    }

    #[test]
    fn floor_rounds_up_and_cap_rounds_down() {
        let bench = Price::parse_positive("18000.00").unwrap();
        let third = Ratio::parse_factor("0.333333").unwrap();
        // 18000 x 0.333333 = 5999.994: 5999.99 would be below policy, so the floor is 6000.00
        assert_eq!(bench.scaled_up(third, Ratio::ONE).unwrap().to_string(), "6000.00");
        let odd = Price::parse_positive("100.01").unwrap();
        let half = Ratio::parse_factor("0.5").unwrap();
        assert_eq!(odd.scaled_up(half, Ratio::ONE).unwrap().to_string(), "50.01");
        let pct = Ratio::parse_percent("20", 1000).unwrap();
        assert_eq!(odd.raised_down(pct).unwrap().to_string(), "120.01");
        assert_eq!(bench.raised_down(pct).unwrap().to_string(), "21600.00");
    }

    #[test]
    fn zero_is_readable_from_stored_text() {
        assert_eq!("0.000".parse::<Quantity>().unwrap(), Quantity::ZERO);
        assert_eq!("0.00".parse::<Amount>().unwrap(), Amount::ZERO);
    }
}
