//! Per-key token buckets: a pure rate limiter for viewers' buy attempts.
//!
//! The caller owns the clock: every call takes `now`, so tests are deterministic and a shard can
//! reuse the `Instant` it already read for its event loop. It holds no lock; wrap it in a mutex
//! or keep one per shard (a viewer lives on one shard).
//!
//! Memory is bounded by [`RateLimiter::prune`], which forgets keys whose bucket has refilled
//! completely (forgetting them changes no future decision), and by `max_keys`: when a new key
//! would exceed it, idle keys are pruned first and, failing that, the new key is refused.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Token buckets keyed by `K` (typically the viewer id).
#[derive(Debug, Clone)]
pub struct RateLimiter<K = String> {
    /// Tokens added per second.
    rate: f64,
    /// Bucket capacity: the largest burst.
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` tokens per second, bursts of up to `burst` (at least 1), at most `max_keys` keys
    /// tracked at once.
    pub fn new(rate: f64, burst: u32, max_keys: usize) -> Self {
        RateLimiter {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Take one token for `key`. `Err(wait)` says how long until a token is available.
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        self.check_n(key, 1, now)
    }

    /// Take `n` tokens for `key` at once, or none.
    pub fn check_n(&mut self, key: &K, n: u32, now: Instant) -> Result<(), Duration> {
        let n = f64::from(n);
        if n > self.burst {
            return Err(Duration::MAX);
        }
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.prune(now);
            if self.buckets.len() >= self.max_keys {
                return Err(self.refill_time(1.0));
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= n {
            bucket.tokens -= n;
            Ok(())
        } else {
            let missing = n - bucket.tokens;
            Err(self.refill_time(missing))
        }
    }

    /// Forget every key whose bucket would be full at `now`.
    pub fn prune(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// No key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn refill_time(&self, tokens: f64) -> Duration {
        if self.rate <= 0.0 {
            return Duration::MAX;
        }
        Duration::try_from_secs_f64(tokens / self.rate).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::<String>::new(2.0, 3, 100);
        let v = "viewer".to_string();
        for _ in 0..3 {
            assert!(rl.check(&v, t0).is_ok());
        }
        let wait = rl.check(&v, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        // Half a second later exactly one token is back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(rl.check(&v, t1).is_ok());
        assert!(rl.check(&v, t1).is_err());
        // Other keys are independent.
        assert!(rl.check(&"other".to_string(), t1).is_ok());
    }

    #[test]
    fn clock_going_backwards_grants_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut rl = RateLimiter::<u32>::new(1.0, 1, 10);
        assert!(rl.check(&1, t0).is_ok());
        assert!(rl.check(&1, t0 - Duration::from_secs(5)).is_err());
        assert!(rl.check(&1, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn oversized_request_never_fits() {
        let mut rl = RateLimiter::<u32>::new(1.0, 2, 10);
        assert_eq!(rl.check_n(&1, 3, Instant::now()), Err(Duration::MAX));
    }

    #[test]
    fn prune_forgets_only_full_buckets_and_caps_keys() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::<u32>::new(1.0, 2, 2);
        rl.check(&1, t0).unwrap();
        rl.check(&2, t0).unwrap();
        // Table full, nobody idle yet: a third key is refused.
        assert!(rl.check(&3, t0).is_err());
        // After a second, key 1 and 2 have refilled and are pruned to make room.
        let t1 = t0 + Duration::from_secs(1);
        assert!(rl.check(&3, t1).is_ok());
        assert_eq!(rl.len(), 1);
    }
}
