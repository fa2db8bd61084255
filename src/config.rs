//! Server configuration: embedded defaults, optionally overridden by a TOML file and then by
//! command-line flags. Policy values (benchmarks, fees, bands) are data here, not code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{
    BenchmarkEntry, BenchmarkSchedule, EligibilityPolicy, FactorScope, Pollutant, Price, PriceFactor, PricePolicy,
    Ratio, RegionAreas, RegionScope, RestrictedRegion, Timestamp,
};
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
    /// The master key that seals bids at rest; default `<data_dir>.key`, created if missing.
    master_key_file: Option<PathBuf>,
    max_message_bytes: Option<usize>,
    /// "every_batch" (the default) or "never" (tests and benchmarks only).
    journal_sync: Option<String>,
    #[serde(default)]
    policy: FilePolicy,
    /// Serve without TLS on an address that is not loopback (behind a TLS-terminating proxy).
    allow_plaintext: Option<bool>,
    /// How often the principals file is checked for changes, in milliseconds.
    principals_poll_ms: Option<u64>,
    tls: Option<FileTls>,
    #[serde(default)]
    limits: FileLimits,
    /// Where settlements go; replaces the default (one required JSON-lines file) when given.
    recorders: Option<Vec<FileRecorder>>,
}

/// One `[[recorders]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecorder {
    /// "jsonl", "postgres" or "nats".
    kind: String,
    enabled: Option<bool>,
    required: Option<bool>,
    /// jsonl: the file (default `<data_dir>/settlements.jsonl`).
    path: Option<PathBuf>,
    /// postgres: `postgres://...` or a key=value connection string; nats: `nats://host:port`.
    url: Option<String>,
    /// postgres: the schema it creates and migrates (default `emission_auction`).
    schema: Option<String>,
    /// nats: the JetStream stream (default `EMISSION`).
    stream: Option<String>,
    /// nats: the subjects' first token (default `emission`).
    subject_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    require_client_cert: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    rate_per_second: Option<f64>,
    rate_burst: Option<u32>,
    max_streams_per_connection: Option<u32>,
    max_connections: Option<usize>,
    idle_timeout_seconds: Option<u64>,
    keepalive_interval_seconds: Option<u64>,
    keepalive_timeout_seconds: Option<u64>,
    /// Reserved for the engine's per-bidder, per-auction bid limit; refused until it exists.
    max_bids_per_bidder_per_auction: Option<u32>,
}

/// TLS for the server: its certificate chain and key, and for mutual TLS the CA that signs
/// client certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates signed by this CA are verified and may map to a principal.
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate signed by `client_ca`.
    pub require_client_cert: bool,
}

/// Limits that keep one caller from crowding out the others. None slows a normal terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Changing calls (create, open, close, cancel, advance, bid, revise, withdraw) per
    /// principal: sustained rate and burst.
    pub rate: crate::grpc::limits::RateLimit,
    /// HTTP/2 streams (calls, watches included) one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Connections open at once; more are closed when accepted.
    pub max_connections: usize,
    /// A connection with no call in flight for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 pings on each connection find dead peers: every `keepalive_interval`, dropped
    /// after `keepalive_timeout` without an answer.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// The most bids one bidder may place in one auction (revisions excepted); `None`: no
    /// limit. An auction rule, so it is copied into the price policy and fixed into each
    /// auction at its creation.
    pub max_bids_per_bidder_per_auction: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate: crate::grpc::limits::RateLimit::default(),
            max_streams_per_connection: 128,
            max_connections: 2048,
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_bids_per_bidder_per_auction: None,
        }
    }
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
    /// Whether bids are checked against the enterprise registry.
    check_eligibility: Option<bool>,
    /// GB/T 4754 section letters whose enterprises may bid, e.g. "BCD".
    admitted_sections: Option<String>,
    #[serde(default)]
    restricted_regions: Vec<FileRestrictedRegion>,
    /// Region code -> its city and river basin.
    #[serde(default)]
    regions: std::collections::BTreeMap<String, FileRegionAreas>,
    /// Conversion factors (价格折算因子) by region or industry section, dated.
    #[serde(default)]
    factors: Vec<FileFactor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFactor {
    /// A GB/T 2260 region code: the factor applies to lots in it.
    region: Option<String>,
    /// A GB/T 4754 section letter: the factor applies to lots whose seller is in it.
    industry_section: Option<String>,
    /// YYYY-MM-DD, midnight UTC: auctions created from then on take it.
    from: String,
    /// A positive decimal, e.g. "1.10".
    factor: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRestrictedRegion {
    region: String,
    /// YYYY-MM-DD, midnight UTC.
    from: String,
    /// own_region, same_city or same_basin.
    scope: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegionAreas {
    city: Option<String>,
    basin: Option<String>,
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
    /// The master key file (outside the data directory); `None`: `<data_dir>.key`, which the
    /// server creates (0600) when it is missing. A configured file must exist.
    pub master_key_file: Option<PathBuf>,
    /// Requests larger than this get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Whether journal batches are fdatasynced before they are acknowledged.
    pub journal_sync: SyncPolicy,
    pub policy: PricePolicy,
    /// Who may bid: the registry check, admitted industries, restricted regions.
    pub eligibility: EligibilityPolicy,
    /// TLS, or plain text when `None` (loopback, or with `allow_plaintext`).
    pub tls: Option<TlsFiles>,
    pub allow_plaintext: bool,
    /// How often the principals file is checked for changes.
    pub principals_poll: Duration,
    pub limits: Limits,
    /// Where settlements go, in order; the first required one gates visibility.
    pub recorders: Vec<RecorderConfig>,
}

/// One recorder of settlements, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    pub kind: RecorderKind,
    /// A required recorder that is down turns health NOT_SERVING; a best-effort one only lags.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecorderKind {
    /// One JSON object per line, fdatasynced; `None` means `<data_dir>/settlements.jsonl`.
    JsonLines {
        path: Option<PathBuf>,
    },
    Postgres {
        url: String,
        schema: String,
    },
    Nats {
        url: String,
        stream: String,
        subject_prefix: String,
    },
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = PathBuf::from("data");
        Config {
            listen: "127.0.0.1:50051".parse().expect("literal address"),
            board_listen: None,
            principals_file: data_dir.join("principals.json"),
            master_key_file: None,
            data_dir,
            max_message_bytes: 64 * 1024,
            journal_sync: SyncPolicy::EveryBatch,
            policy: PricePolicy::default(),
            eligibility: EligibilityPolicy::default(),
            tls: None,
            allow_plaintext: false,
            principals_poll: Duration::from_secs(1),
            limits: Limits::default(),
            recorders: vec![RecorderConfig { kind: RecorderKind::JsonLines { path: None }, required: true }],
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
        if let Some(p) = file.master_key_file {
            config.master_key_file = Some(p);
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
        if let Some(recorders) = file.recorders {
            config.recorders = recorders
                .into_iter()
                .enumerate()
                .filter(|(_, r)| r.enabled.unwrap_or(true))
                .map(|(i, r)| r.resolve(i))
                .collect::<Result<_, _>>()?;
        }
        config.eligibility = file.policy.eligibility(config.eligibility)?;
        config.policy = file.policy.apply(config.policy)?;
        if let Some(allow) = file.allow_plaintext {
            config.allow_plaintext = allow;
        }
        if let Some(ms) = file.principals_poll_ms {
            if ms < 50 {
                return Err(invalid("principals_poll_ms", "must be at least 50"));
            }
            config.principals_poll = Duration::from_millis(ms);
        }
        if let Some(tls) = file.tls {
            let (Some(cert), Some(key)) = (tls.cert, tls.key) else {
                return Err(invalid("tls", "needs both cert and key"));
            };
            if tls.require_client_cert == Some(true) && tls.client_ca.is_none() {
                return Err(invalid("tls.require_client_cert", "needs tls.client_ca"));
            }
            config.tls = Some(TlsFiles {
                cert,
                key,
                client_ca: tls.client_ca,
                require_client_cert: tls.require_client_cert.unwrap_or(false),
            });
        }
        config.limits = file.limits.apply(config.limits)?;
        config.policy.max_bids_per_bidder = config.limits.max_bids_per_bidder_per_auction;
        Ok(config)
    }

    /// Moves the data directory; the principals file follows unless it was set on its own.
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        if self.principals_file == self.data_dir.join("principals.json") {
            self.principals_file = dir.join("principals.json");
        }
        self.data_dir = dir;
    }

    /// The master key file, and whether it is the default (created when missing).
    pub fn key_file(&self) -> (PathBuf, bool) {
        match &self.master_key_file {
            Some(path) => (path.clone(), false),
            None => (crate::service::seal::default_key_file(&self.data_dir), true),
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    pub fn settlements_file(&self) -> PathBuf {
        self.data_dir.join("settlements.jsonl")
    }
}

impl FileLimits {
    fn apply(self, mut limits: Limits) -> Result<Limits, ConfigError> {
        if self.max_bids_per_bidder_per_auction == Some(0) {
            return Err(invalid("limits.max_bids_per_bidder_per_auction", "must be at least 1"));
        }
        limits.max_bids_per_bidder_per_auction = self.max_bids_per_bidder_per_auction;
        if let Some(r) = self.rate_per_second {
            if !(r.is_finite() && r > 0.0) {
                return Err(invalid("limits.rate_per_second", "must be a positive number"));
            }
            limits.rate.rate_per_second = r;
        }
        if let Some(b) = self.rate_burst {
            if b == 0 {
                return Err(invalid("limits.rate_burst", "must be at least 1"));
            }
            limits.rate.burst = b;
        }
        if let Some(n) = self.max_streams_per_connection {
            if n == 0 {
                return Err(invalid("limits.max_streams_per_connection", "must be at least 1"));
            }
            limits.max_streams_per_connection = n;
        }
        if let Some(n) = self.max_connections {
            if n == 0 {
                return Err(invalid("limits.max_connections", "must be at least 1"));
            }
            limits.max_connections = n;
        }
        let seconds = |field: &str, v: Option<u64>, target: &mut Duration| {
            if let Some(s) = v {
                if s == 0 {
                    return Err(invalid(field, "must be at least 1"));
                }
                *target = Duration::from_secs(s);
            }
            Ok(())
        };
        seconds("limits.idle_timeout_seconds", self.idle_timeout_seconds, &mut limits.idle_timeout)?;
        seconds("limits.keepalive_interval_seconds", self.keepalive_interval_seconds, &mut limits.keepalive_interval)?;
        seconds("limits.keepalive_timeout_seconds", self.keepalive_timeout_seconds, &mut limits.keepalive_timeout)?;
        Ok(limits)
    }
}

impl FileRecorder {
    fn resolve(self, index: usize) -> Result<RecorderConfig, ConfigError> {
        let field = |key: &str| format!("recorders[{index}].{key}");
        let url = |url: Option<String>| url.ok_or_else(|| invalid(&field("url"), "is required for this kind"));
        let kind = match self.kind.as_str() {
            "jsonl" => RecorderKind::JsonLines { path: self.path },
            "postgres" => RecorderKind::Postgres {
                url: url(self.url)?,
                schema: self.schema.unwrap_or_else(|| "emission_auction".into()),
            },
            "nats" => RecorderKind::Nats {
                url: url(self.url)?,
                stream: self.stream.unwrap_or_else(|| "EMISSION".into()),
                subject_prefix: self.subject_prefix.unwrap_or_else(|| "emission".into()),
            },
            other => return Err(invalid(&field("kind"), format!("{other:?} is not jsonl, postgres or nats"))),
        };
        if let RecorderKind::Postgres { schema, .. } = &kind
            && (schema.is_empty() || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            return Err(invalid(&field("schema"), "must be lowercase letters, digits and underscores"));
        }
        Ok(RecorderConfig { kind, required: self.required.unwrap_or(matches!(self.kind.as_str(), "jsonl")) })
    }
}

impl FilePolicy {
    /// The eligibility keys of `[policy]`, each checked with its key named on error.
    fn eligibility(&self, mut policy: EligibilityPolicy) -> Result<EligibilityPolicy, ConfigError> {
        if let Some(on) = self.check_eligibility {
            policy.enforce = on;
        }
        if let Some(sections) = &self.admitted_sections {
            if sections.is_empty() || !sections.chars().all(|c| c.is_ascii_uppercase() && c <= 'T') {
                return Err(invalid("policy.admitted_sections", "must be GB/T 4754 section letters A-T, e.g. \"BCD\""));
            }
            policy.admitted_sections = sections.clone();
        }
        for (i, r) in self.restricted_regions.iter().enumerate() {
            let key = |k: &str| format!("policy.restricted_regions[{i}].{k}");
            policy.restricted_regions.push(RestrictedRegion {
                region: r.region.parse().map_err(|e| invalid(&key("region"), e))?,
                from: parse_date(&r.from).ok_or_else(|| invalid(&key("from"), "must be YYYY-MM-DD"))?,
                scope: r.scope.parse().map_err(|e| invalid(&key("scope"), e))?,
            });
        }
        for (code, areas) in &self.regions {
            let region = code.parse().map_err(|e| invalid(&format!("policy.regions.{code}"), e))?;
            policy.regions.insert(region, RegionAreas { city: areas.city.clone(), basin: areas.basin.clone() });
        }
        // A same-city or same-basin rule needs the buyer's area, or no lot would ever do.
        for (i, r) in policy.restricted_regions.iter().enumerate() {
            let areas = policy.regions.get(&r.region);
            let missing = match r.scope {
                RegionScope::OwnRegion => false,
                RegionScope::SameCity => areas.and_then(|a| a.city.as_ref()).is_none(),
                RegionScope::SameBasin => areas.and_then(|a| a.basin.as_ref()).is_none(),
            };
            if missing {
                return Err(invalid(
                    &format!("policy.restricted_regions[{i}].scope"),
                    format!("{} needs [policy.regions.\"{}\"] with its area", r.scope.code(), r.region),
                ));
            }
        }
        Ok(policy)
    }

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
        for (i, f) in self.factors.iter().enumerate() {
            let key = |k: &str| format!("policy.factors[{i}].{k}");
            let scope = match (&f.region, &f.industry_section) {
                (Some(region), None) => FactorScope::Region(region.parse().map_err(|e| invalid(&key("region"), e))?),
                (None, Some(section)) => {
                    let mut letters = section.chars();
                    match (letters.next(), letters.next()) {
                        (Some(c), None) if c.is_ascii_uppercase() && c <= 'T' => FactorScope::IndustrySection(c),
                        _ => return Err(invalid(&key("industry_section"), "must be one GB/T 4754 section letter A-T")),
                    }
                }
                _ => return Err(invalid(&key("region"), "give either region or industry_section")),
            };
            let from = parse_date(&f.from).ok_or_else(|| invalid(&key("from"), "must be YYYY-MM-DD"))?;
            let factor = Ratio::parse_factor(&f.factor).map_err(|e| invalid(&key("factor"), e))?;
            if policy.factors.iter().any(|p| p.scope == scope && p.from == from) {
                return Err(invalid(&key("from"), format!("{scope} already has a factor from {}", f.from)));
            }
            policy.factors.push(PriceFactor { scope, from, factor });
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

    /// The README's conversion-factor example loads, and a bad factor names its key.
    #[test]
    fn price_factors_are_data_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let readme = include_str!("../README.md");
        let start = readme.find("\n[[policy.factors]]").unwrap() + 1;
        let end = start + readme[start..].find("```").unwrap();
        std::fs::write(&path, &readme[start..end]).unwrap();
        let c = Config::load(Some(&path)).unwrap();
        let jan = parse_date("2026-01-01").unwrap();
        let taiyuan = FactorScope::Region("140100".parse().unwrap());
        assert_eq!(c.policy.factor_in_force(taiyuan, jan).unwrap().factor, Ratio::from_ppm(1_100_000));
        assert_eq!(
            c.policy.factor_in_force(FactorScope::IndustrySection('C'), jan).unwrap().factor.as_factor(),
            "1.05"
        );
        assert!(c.policy.factor_in_force(taiyuan, parse_date("2025-12-31").unwrap()).is_none());
        for (bad, key) in [
            ("industry_section = \"CD\"\nfrom = \"2026-01-01\"\nfactor = \"1\"", "policy.factors[0].industry_section"),
            ("region = \"140100\"\nfrom = \"2026-13-01\"\nfactor = \"1\"", "policy.factors[0].from"),
            ("region = \"140100\"\nfrom = \"2026-01-01\"\nfactor = \"x\"", "policy.factors[0].factor"),
            ("from = \"2026-01-01\"\nfactor = \"1\"", "policy.factors[0].region"),
        ] {
            std::fs::write(&path, format!("[[policy.factors]]\n{bad}\n")).unwrap();
            let err = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    /// The README's worked example loads, and a bad eligibility value names its key.
    #[test]
    fn eligibility_policy_is_data_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let readme = include_str!("../README.md");
        let start = readme.find("\ncheck_eligibility = true").unwrap() + 1;
        let end = start + readme[start..].find("```").unwrap();
        std::fs::write(&path, format!("[policy]\n{}", &readme[start..end])).unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert!(c.eligibility.enforce);
        assert_eq!(c.eligibility.restricted_regions.len(), 3);
        assert_eq!(c.eligibility.regions.len(), 3);
        let bad = "[policy]\n[[policy.restricted_regions]]\nregion = \"140200\"\nfrom = \"2026-01-01\"\nscope = \"same_city\"\n";
        std::fs::write(&path, bad).unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("policy.restricted_regions[0].scope"), "{err}");
        std::fs::write(&path, bad.replace("same_city", "nearby")).unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("policy.restricted_regions[0].scope"), "{err}");
    }

    #[test]
    fn tls_and_limits_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
allow_plaintext = true
[tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"
require_client_cert = true
[limits]
rate_per_second = 5
rate_burst = 10
max_streams_per_connection = 16
idle_timeout_seconds = 60
"#,
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!((tls.client_ca.unwrap(), tls.require_client_cert), (PathBuf::from("ca.pem"), true));
        assert!(c.allow_plaintext);
        assert_eq!((c.limits.rate.rate_per_second, c.limits.rate.burst), (5.0, 10));
        assert_eq!(c.limits.max_streams_per_connection, 16);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.max_connections, Limits::default().max_connections);

        std::fs::write(&path, "[tls]\ncert = \"a.pem\"\n").unwrap();
        assert!(Config::load(Some(&path)).unwrap_err().to_string().contains("tls"));
        std::fs::write(&path, "[limits]\nmax_bids_per_bidder_per_auction = 10\n").unwrap();
        assert_eq!(Config::load(Some(&path)).unwrap().policy.max_bids_per_bidder, Some(10));
        std::fs::write(&path, "[limits]\nmax_bids_per_bidder_per_auction = 0\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("max_bids_per_bidder_per_auction"), "{err}");
    }

    #[test]
    fn dates_are_midnight_utc() {
        assert_eq!(parse_date("1970-01-01").unwrap().as_micros(), 0);
        assert_eq!(parse_date("2016-01-01").unwrap().as_micros(), 1_451_606_400_000_000);
        assert!(parse_date("2016-13-01").is_none());
    }
}
