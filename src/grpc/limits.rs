//! Per-principal rate limits on calls that change something: a token bucket per principal id
//! that refills at `rate_per_second` up to `burst`. Reads and streams are not counted here
//! (streams are bounded per connection by HTTP/2's concurrent-stream limit).
//!
//! This is product policy written by hand rather than a crate: a few lines, one lock held for a
//! handful of arithmetic operations, and no timer: a bucket is brought up to date when it is used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::PrincipalId;

/// The limit every principal gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Changing calls per second a principal may sustain.
    pub rate_per_second: f64,
    /// Calls a principal may make at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { rate_per_second: 20.0, burst: 40 }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    /// One bucket per principal that made a changing call; bounded by the principals file.
    /// A `std::sync::Mutex`: it is held for arithmetic only, never across an `.await`.
    buckets: Mutex<HashMap<PrincipalId, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from `who`'s bucket, or says how long until one is there.
    pub fn admit(&self, who: PrincipalId) -> Result<(), Duration> {
        self.admit_at(who, Instant::now())
    }

    fn admit_at(&self, who: PrincipalId, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let rate = self.limit.rate_per_second;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(who).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if rate > 0.0 {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        } else {
            Err(Duration::from_secs(3600))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(RateLimit { rate_per_second: 10.0, burst: 3 });
        let (a, b) = ("P-000001".parse().unwrap(), "P-000002".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.admit_at(a, t0).unwrap();
        }
        let wait = limiter.admit_at(a, t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        // Another principal has its own bucket.
        limiter.admit_at(b, t0).unwrap();
        // A tenth of a second later one more call is allowed, and only one.
        limiter.admit_at(a, t0 + Duration::from_millis(100)).unwrap();
        assert!(limiter.admit_at(a, t0 + Duration::from_millis(100)).is_err());
    }
}
