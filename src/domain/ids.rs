//! Identifiers and server time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused. The caller adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("must be {0}")]
    Shape(&'static str),
    #[error("has a wrong check digit (expected {expected})")]
    CheckDigit { expected: char },
}

/// The characters of a unified social credit code, in check-digit order (GB 32100-2015: the
/// digits and 21 capital letters; I, O, S, V and Z are never used).
const CREDIT_CODE_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Each byte's value in the charset, or `NOT_IN_CHARSET`: codes are checked on every bid and
/// every replayed journal entry, so a lookup rather than a search.
const CREDIT_CODE_VALUES: [u8; 256] = {
    let mut values = [NOT_IN_CHARSET; 256];
    let mut i = 0;
    while i < CREDIT_CODE_CHARSET.len() {
        values[CREDIT_CODE_CHARSET[i] as usize] = i as u8;
        i += 1;
    }
    values
};
const NOT_IN_CHARSET: u8 = u8::MAX;

/// GB 32100-2015 weights of the first 17 characters: 3^i mod 31.
const CREDIT_CODE_WEIGHTS: [usize; 17] = {
    let mut weights = [1usize; 17];
    let mut i = 1;
    while i < 17 {
        weights[i] = weights[i - 1] * 3 % 31;
        i += 1;
    }
    weights
};

/// An 18-character unified social credit code (统一社会信用代码), the identity of every
/// participant. It is `Copy` and compares as bytes, so books can key on it cheaply.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CreditCode([u8; 18]);

impl std::hash::Hash for CreditCode {
    /// Three fixed-width words rather than 18 loose bytes: the same equality, and hashers take
    /// their fast integer path (this is on every bid's way into a book).
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let b = &self.0;
        state.write_u64(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
        state.write_u64(u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]));
        state.write_u16(u16::from_le_bytes([b[16], b[17]]));
    }
}

impl CreditCode {
    /// Completes the first 17 characters of a code with its check digit.
    pub fn with_check_digit(first17: &str) -> Result<CreditCode, IdError> {
        let bytes = first17.as_bytes();
        if bytes.len() != 17 || bytes.iter().any(|b| Self::value_of(*b).is_none()) {
            return Err(IdError::Shape("17 characters from 0-9 and A-Y (no I, O, S, V, Z)"));
        }
        let mut code = [0u8; 18];
        code[..17].copy_from_slice(bytes);
        code[17] = Self::check_char(bytes);
        Ok(CreditCode(code))
    }

    fn value_of(b: u8) -> Option<usize> {
        let value = CREDIT_CODE_VALUES[b as usize];
        (value != NOT_IN_CHARSET).then_some(value as usize)
    }

    /// GB 32100-2015: weights are 3^i mod 31; the check value is 31 - (sum mod 31), 31 -> 0.
    fn check_char(first17: &[u8]) -> u8 {
        let sum: usize =
            first17.iter().zip(CREDIT_CODE_WEIGHTS).map(|(b, w)| Self::value_of(*b).unwrap_or(0) * w).sum();
        CREDIT_CODE_CHARSET[(31 - sum % 31) % 31]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII from CREDIT_CODE_CHARSET is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??????????????????")
    }
}

impl FromStr for CreditCode {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        if text.len() != 18 || !text.is_ascii() {
            return Err(IdError::Shape("an 18-character unified social credit code"));
        }
        let code = CreditCode::with_check_digit(&text[..17])?;
        if code.0[17] != text.as_bytes()[17] {
            return Err(IdError::CheckDigit { expected: code.0[17] as char });
        }
        Ok(code)
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CreditCode({})", self.as_str())
    }
}

/// The enterprise a bid belongs to: always the authenticated principal's, never a request field.
pub type BidderId = CreditCode;

/// A six-digit administrative division code (GB/T 2260), e.g. 140100 for Taiyuan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionCode(u32);

impl FromStr for RegionCode {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        let b = text.as_bytes();
        if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) || b[0] == b'0' {
            return Err(IdError::Shape("a six-digit GB/T 2260 region code such as 140100"));
        }
        Ok(RegionCode(text.parse().map_err(|_| IdError::Shape("six digits"))?))
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// The trading centre's own reference for a lot (also certificate ids): 1 to 64 characters of
/// ASCII letters, digits and `-_./`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference(String);

impl Reference {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Reference {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        let ok = text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !ok {
            return Err(IdError::Shape("1 to 64 characters of A-Z, a-z, 0-9 and -_./"));
        }
        Ok(Reference(text.to_owned()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type LotId = Reference;

/// An auction, numbered by the server in creation order; written `AUC-0001`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuctionId(u64);

impl AuctionId {
    pub const fn new(n: u64) -> AuctionId {
        AuctionId(n)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for AuctionId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        text.strip_prefix("AUC-")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .map(AuctionId)
            .ok_or(IdError::Shape("an auction id such as AUC-0001"))
    }
}

impl fmt::Display for AuctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AUC-{:04}", self.0)
    }
}

/// A bid. The shell draws bid ids at random so that an id says nothing about how many bids
/// came before it; the core only checks that they are unique within the auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BidId(u64);

impl BidId {
    pub const fn new(n: u64) -> BidId {
        BidId(n)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for BidId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        if text.len() != 16 {
            return Err(IdError::Shape("a bid id of 16 hexadecimal digits"));
        }
        u64::from_str_radix(text, 16).map(BidId).map_err(|_| IdError::Shape("a bid id of 16 hexadecimal digits"))
    }
}

impl fmt::Display for BidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Server time in microseconds since the Unix epoch. The core never reads a clock: every
/// command carries one of these, stamped by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub const fn plus_micros(self, micros: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(micros))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, micros / 1000)
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_code_check_digit() {
        // A code completed from 17 characters parses back; any other last character does not.
        let code = CreditCode::with_check_digit("91140100MA0GRXY71").unwrap();
        let text = code.to_string();
        assert_eq!(text.parse::<CreditCode>().unwrap(), code);
        let last = text.as_bytes()[17];
        let wrong = CREDIT_CODE_CHARSET.iter().find(|c| **c != last).unwrap();
        let bad = format!("{}{}", &text[..17], *wrong as char);
        assert!(matches!(bad.parse::<CreditCode>(), Err(IdError::CheckDigit { .. })));
        assert!("91140100MA0GRXY7O0".parse::<CreditCode>().is_err());
    }

    #[test]
    fn credit_code_matches_a_published_example() {
        // The example code printed in GB 32100-2015.
        assert_eq!(CreditCode::with_check_digit("91350100M000100Y4").unwrap().to_string(), "91350100M000100Y43");
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!("AUC-0042".parse::<AuctionId>().unwrap(), AuctionId::new(42));
        assert_eq!(AuctionId::new(42).to_string(), "AUC-0042");
        assert!("42".parse::<AuctionId>().is_err());
        let bid = BidId::new(0xdead_beef);
        assert_eq!(bid.to_string().parse::<BidId>().unwrap(), bid);
        assert!("140100".parse::<RegionCode>().is_ok());
        assert!("040100".parse::<RegionCode>().is_err());
        assert!("14010".parse::<RegionCode>().is_err());
    }

    #[test]
    fn timestamps_render_as_utc() {
        assert_eq!(Timestamp::from_micros(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_micros(1_795_000_000_123_456).to_string(), "2026-11-18T11:06:40.123Z");
    }
}
