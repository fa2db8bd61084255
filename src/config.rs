//! Server configuration: embedded defaults, optionally overridden by a TOML file and then by
//! command-line flags. Policy values (benchmarks, fees, bands) are data here, not code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::{BenchmarkEntry, BenchmarkSchedule, Pollutant, Price, PricePolicy, Ratio, Timestamp};
use crate::journal::SyncPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("config file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("config: {field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// The file's shape. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    /// The public results board's HTTP address (board, report, /metrics); off when absent.
    board_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    principals_file: Option<PathBuf>,
    max_message_bytes: Option<usize>,
    /// "every_batch" (the default) or "never" (tests and benchmarks only).
    journal_sync: Option<String>,
    #[serde(default)]
    policy: FilePolicy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    buyer_fee_rate: Option<String>,
    seller_fee_rate: Option<String>,
    /// Percent over the floor, or "none".
    enterprise_cap_percent: Option<String>,
    reserve_markup: Option<String>,
    #[serde(default)]
    benchmarks: Vec<FileBenchmark>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBenchmark {
    pollutant: String,
    /// YYYY-MM-DD, midnight UTC.
    effective_from: String,
    price: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where the public results board listens (HTTP), if it runs at all.
    pub board_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub principals_file: PathBuf,
    /// Requests larger than this get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Whether journal batches are fdatasynced before they are acknowledged.
    pub journal_sync: SyncPolicy,
    pub policy: PricePolicy,
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = PathBuf::from("data");
        Config {
            listen: "127.0.0.1:50051".parse().expect("literal address"),
            board_listen: None,
            principals_file: data_dir.join("principals.json"),
            data_dir,
            max_message_bytes: 64 * 1024,
            journal_sync: SyncPolicy::EveryBatch,
            policy: PricePolicy::default(),
        }
    }
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid { field: field.to_owned(), reason: reason.to_string() }
}

impl Config {
    /// Embedded defaults, then the file if given.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let Some(path) = path else { return Ok(config) };
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        let file: FileConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), reason: e.to_string() })?;
        if let Some(listen) = file.listen {
            config.listen = listen;
        }
        if let Some(board) = file.board_listen {
            config.board_listen = Some(board);
        }
        if let Some(dir) = file.data_dir {
            config.set_data_dir(dir);
        }
        if let Some(p) = file.principals_file {
            config.principals_file = p;
        }
        if let Some(n) = file.max_message_bytes {
            if n < 1024 {
                return Err(invalid("max_message_bytes", "must be at least 1024"));
            }
            config.max_message_bytes = n;
        }
        if let Some(sync) = file.journal_sync {
            config.journal_sync = match sync.as_str() {
                "every_batch" => SyncPolicy::EveryBatch,
                "never" => SyncPolicy::Never,
                other => return Err(invalid("journal_sync", format!("{other:?} is not every_batch or never"))),
            };
        }
        config.policy = file.policy.apply(config.policy)?;
        Ok(config)
    }

    /// Moves the data directory; the principals file follows unless it was set on its own.
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        if self.principals_file == self.data_dir.join("principals.json") {
            self.principals_file = dir.join("principals.json");
        }
        self.data_dir = dir;
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    pub fn settlements_file(&self) -> PathBuf {
        self.data_dir.join("settlements.jsonl")
    }
}

impl FilePolicy {
    fn apply(self, mut policy: PricePolicy) -> Result<PricePolicy, ConfigError> {
        let rate = |field: &str, text: &str| {
            let r = Ratio::parse_factor(text).map_err(|e| invalid(field, e))?;
            if r > Ratio::ONE {
                return Err(invalid(field, "must be at most 1"));
            }
            Ok(r)
        };
        if let Some(t) = &self.buyer_fee_rate {
            policy.buyer_fee = rate("policy.buyer_fee_rate", t)?;
        }
        if let Some(t) = &self.seller_fee_rate {
            policy.seller_fee = rate("policy.seller_fee_rate", t)?;
        }
        if let Some(t) = &self.enterprise_cap_percent {
            policy.enterprise_cap = match t.as_str() {
                "none" => None,
                pct => Some(Ratio::parse_percent(pct, 1000).map_err(|e| invalid("policy.enterprise_cap_percent", e))?),
            };
        }
        if let Some(t) = &self.reserve_markup {
            policy.reserve_markup = Ratio::parse_factor(t).map_err(|e| invalid("policy.reserve_markup", e))?;
        }
        if !self.benchmarks.is_empty() {
            let mut entries = policy.benchmarks.entries().to_vec();
            for b in &self.benchmarks {
                let pollutant: Pollutant =
                    b.pollutant.parse().map_err(|e| invalid("policy.benchmarks.pollutant", e))?;
                let effective_from = parse_date(&b.effective_from)
                    .ok_or_else(|| invalid("policy.benchmarks.effective_from", "must be YYYY-MM-DD"))?;
                let price = Price::parse_positive(&b.price).map_err(|e| invalid("policy.benchmarks.price", e))?;
                // A configured entry replaces a built-in one for the same pollutant and date.
                entries.retain(|e| !(e.pollutant == pollutant && e.effective_from == effective_from));
                entries.push(BenchmarkEntry { pollutant, effective_from, price });
            }
            policy.benchmarks = BenchmarkSchedule::new(entries);
        }
        Ok(policy)
    }
}

/// `YYYY-MM-DD` as midnight UTC.
pub fn parse_date(text: &str) -> Option<Timestamp> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Timestamp::from_micros(days * 86_400 * 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:6000"
data_dir = "/var/lib/ea"
[policy]
buyer_fee_rate = "0.005"
enterprise_cap_percent = "none"
[[policy.benchmarks]]
pollutant = "SO2"
effective_from = "2024-07-01"
price = "20000.00"
"#,
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.principals_file, PathBuf::from("/var/lib/ea/principals.json"));
        assert_eq!(c.policy.buyer_fee, Ratio::from_ppm(5_000));
        assert_eq!(c.policy.seller_fee, Ratio::from_ppm(7_500));
        assert_eq!(c.policy.enterprise_cap, None);
        let july = parse_date("2024-07-01").unwrap();
        assert_eq!(c.policy.benchmarks.in_force(Pollutant::So2, july).unwrap().to_string(), "20000.00");
        assert_eq!(
            c.policy.benchmarks.in_force(Pollutant::So2, parse_date("2024-06-30").unwrap()).unwrap().to_string(),
            "18000.00"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[policy]\nbuyer_fee_rate = \"1.5\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("policy.buyer_fee_rate"), "{err}");
        std::fs::write(&path, "nonsense = 1\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
    }

    #[test]
    fn dates_are_midnight_utc() {
        assert_eq!(parse_date("1970-01-01").unwrap().as_micros(), 0);
        assert_eq!(parse_date("2016-01-01").unwrap().as_micros(), 1_451_606_400_000_000);
        assert!(parse_date("2016-13-01").is_none());
    }
}
