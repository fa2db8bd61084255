//! Pollutants and the trading centre's price policy: benchmark prices with effective dates,
//! fee rates, default bands and markups. Policy is data (config), never code paths.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Price, Ratio, RegionCode, Timestamp};

/// The six traded pollutants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Pollutant {
    So2,
    Nox,
    Cod,
    Nh3N,
    SmokeDust,
    IndustrialDust,
}

impl Pollutant {
    pub const ALL: [Pollutant; 6] = [
        Pollutant::So2,
        Pollutant::Nox,
        Pollutant::Cod,
        Pollutant::Nh3N,
        Pollutant::SmokeDust,
        Pollutant::IndustrialDust,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Pollutant::So2 => "SO2",
            Pollutant::Nox => "NOX",
            Pollutant::Cod => "COD",
            Pollutant::Nh3N => "NH3_N",
            Pollutant::SmokeDust => "SMOKE_DUST",
            Pollutant::IndustrialDust => "INDUSTRIAL_DUST",
        }
    }
}

impl fmt::Display for Pollutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Pollutant {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let norm = text.trim().to_ascii_uppercase().replace(['-', ' '], "_");
        Pollutant::ALL
            .into_iter()
            .find(|p| p.code() == norm || (norm == "NH3N" && *p == Pollutant::Nh3N))
            .ok_or_else(|| format!("unknown pollutant {text:?} (SO2, NOX, COD, NH3_N, SMOKE_DUST, INDUSTRIAL_DUST)"))
    }
}

/// One benchmark price (基准价) and the moment it took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkEntry {
    pub pollutant: Pollutant,
    /// Microseconds since the epoch; the entry applies to auctions created at or after it.
    pub effective_from: Timestamp,
    pub price: Price,
}

/// Benchmark prices as a schedule of revisions. An auction takes the entry in force when it is
/// created, so a later revision never moves the floor of a running auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkSchedule {
    entries: Vec<BenchmarkEntry>,
}

/// 2016-01-01T00:00:00Z, the date the built-in Shanxi revision is taken to apply from.
const SHANXI_2016: Timestamp = Timestamp::from_micros(1_451_606_400_000_000);

impl BenchmarkSchedule {
    pub fn new(mut entries: Vec<BenchmarkEntry>) -> BenchmarkSchedule {
        entries.sort_by_key(|e| (e.pollutant, e.effective_from));
        BenchmarkSchedule { entries }
    }

    /// The Shanxi benchmarks from the 2016 revision, yuan per tonne (DESIGN.md section 1).
    pub fn shanxi_2016() -> BenchmarkSchedule {
        let yuan = |y: i64| Price::from_units(y * 100).expect("built-in benchmark in range");
        let table = [
            (Pollutant::So2, 18_000),
            (Pollutant::Nox, 19_000),
            (Pollutant::Cod, 29_000),
            (Pollutant::Nh3N, 30_000),
            (Pollutant::IndustrialDust, 5_900),
            (Pollutant::SmokeDust, 6_000),
        ];
        BenchmarkSchedule::new(
            table
                .into_iter()
                .map(|(pollutant, y)| BenchmarkEntry { pollutant, effective_from: SHANXI_2016, price: yuan(y) })
                .collect(),
        )
    }

    /// The benchmark in force for `pollutant` at `at`, if any revision had taken effect.
    pub fn in_force(&self, pollutant: Pollutant, at: Timestamp) -> Option<Price> {
        self.entries
            .iter()
            .filter(|e| e.pollutant == pollutant && e.effective_from <= at)
            .max_by_key(|e| e.effective_from)
            .map(|e| e.price)
    }

    pub fn entries(&self) -> &[BenchmarkEntry] {
        &self.entries
    }
}

/// What a price conversion factor (价格折算因子) applies to: the lot's region, or the GB/T 4754
/// section of the seller's industry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorScope {
    Region(RegionCode),
    IndustrySection(char),
}

impl fmt::Display for FactorScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FactorScope::Region(r) => write!(f, "region {r}"),
            FactorScope::IndustrySection(s) => write!(f, "industry section {s}"),
        }
    }
}

/// A conversion factor of price policy and the date it takes effect: an auction created at or
/// after `from` multiplies its floor by it, until a later entry for the same scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceFactor {
    pub scope: FactorScope,
    pub from: Timestamp,
    pub factor: Ratio,
}

/// What the trading centre configures once and every auction inherits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricePolicy {
    pub benchmarks: BenchmarkSchedule,
    /// Transaction management fee paid by the buyer, on the amount (Shanxi: 0.75%).
    pub buyer_fee: Ratio,
    /// Transaction management fee paid by the seller, on the amount (Shanxi: 0.75%).
    pub seller_fee: Ratio,
    /// Band over the floor for enterprise (non-reserve) lots when the auction does not say
    /// otherwise (Shanxi: 20%). `None` means no default cap.
    pub enterprise_cap: Option<Ratio>,
    /// Markup over benchmark x conversion factor for government reserve lots.
    pub reserve_markup: Ratio,
    /// Conversion factors by region and by industry section, with the dates they take effect.
    pub factors: Vec<PriceFactor>,
    /// The most bids one bidder may place in one auction (revisions excepted); `None`: no
    /// limit. Fixed into each auction at its creation.
    pub max_bids_per_bidder: Option<u32>,
}

impl PricePolicy {
    /// The factor for `scope` in force at `at`: the entry with the latest `from` not after it.
    pub fn factor_in_force(&self, scope: FactorScope, at: Timestamp) -> Option<PriceFactor> {
        self.factors.iter().filter(|f| f.scope == scope && f.from <= at).max_by_key(|f| f.from).copied()
    }
}

impl Default for PricePolicy {
    fn default() -> Self {
        PricePolicy {
            benchmarks: BenchmarkSchedule::shanxi_2016(),
            buyer_fee: Ratio::from_ppm(7_500),
            seller_fee: Ratio::from_ppm(7_500),
            enterprise_cap: Some(Ratio::from_ppm(200_000)),
            reserve_markup: Ratio::ONE,
            factors: Vec::new(),
            max_bids_per_bidder: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_takes_the_revision_in_force() {
        let later = Timestamp::from_micros(SHANXI_2016.as_micros() + 1_000_000);
        let mut entries = BenchmarkSchedule::shanxi_2016().entries().to_vec();
        entries.push(BenchmarkEntry {
            pollutant: Pollutant::So2,
            effective_from: later,
            price: Price::from_units(2_000_000).unwrap(),
        });
        let schedule = BenchmarkSchedule::new(entries);
        assert_eq!(schedule.in_force(Pollutant::So2, SHANXI_2016).unwrap().to_string(), "18000.00");
        assert_eq!(schedule.in_force(Pollutant::So2, later).unwrap().to_string(), "20000.00");
        assert_eq!(schedule.in_force(Pollutant::Cod, later).unwrap().to_string(), "29000.00");
        assert_eq!(schedule.in_force(Pollutant::So2, Timestamp::from_micros(0)), None);
    }
}
