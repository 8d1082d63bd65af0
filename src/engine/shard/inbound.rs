//! The inbound side of a peer's `events` data channel, guarded in the shard: a message over
//! the protocol's size limit or over the peer's rate is refused here, on the borrowed bytes,
//! before it is copied into a `String` or handed to the control plane. What passes goes out as
//! [`crate::engine::Event::Text`] in arrival order; the control plane handles one peer's
//! messages in that order (`crate::live::Inboxes`).

use std::time::{Duration, Instant};

use crate::live::protocol::{self, ErrorCode, MAX_MESSAGE_BYTES};

/// Largest message the SCTP association reassembles (advertised as `a=max-message-size`):
/// the protocol's own limit, so a peer cannot make the shard buffer more than that per message.
/// A compliant stack refuses to send anything larger; a peer that sends it anyway has its
/// association closed by SCTP.
pub const SCTP_MAX_MESSAGE_BYTES: u32 = MAX_MESSAGE_BYTES as u32;

/// Messages a peer may send in a burst.
pub const BURST: u32 = 40;
/// Sustained messages per second a peer may send.
pub const PER_SECOND: u32 = 20;

/// What to do with one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Hand it to the control plane.
    Pass,
    /// Over [`MAX_MESSAGE_BYTES`]: answer `too_large`.
    TooLarge,
    /// Over the rate, first of a run: answer `rate_limited` once.
    Limited,
    /// Over the rate, already answered in this run: drop silently.
    LimitedQuiet,
}

/// One peer's token bucket (in messages), refilled continuously.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    tokens: f64,
    at: Instant,
    burst: f64,
    per_second: f64,
    /// A `rate_limited` error went out and no message has passed since.
    warned: bool,
}

impl Guard {
    pub fn new(now: Instant) -> Guard {
        Guard::with_rate(now, BURST, PER_SECOND)
    }

    pub fn with_rate(now: Instant, burst: u32, per_second: u32) -> Guard {
        Guard {
            tokens: burst as f64,
            at: now,
            burst: burst as f64,
            per_second: per_second as f64,
            warned: false,
        }
    }

    /// Judge a message of `len` bytes arriving at `now`. An oversized message also takes a
    /// token: a flood of them is a flood.
    pub fn admit(&mut self, now: Instant, len: usize) -> Verdict {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + dt * self.per_second).min(self.burst);
        if self.tokens < 1.0 {
            if self.warned {
                return Verdict::LimitedQuiet;
            }
            self.warned = true;
            return Verdict::Limited;
        }
        self.tokens -= 1.0;
        self.warned = false;
        if len > MAX_MESSAGE_BYTES {
            return Verdict::TooLarge;
        }
        Verdict::Pass
    }

    /// How long until the next message would pass.
    pub fn retry_in(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.per_second.max(f64::MIN_POSITIVE))
    }
}

/// The `error` reply for a refused message.
pub(super) fn refusal(v: Verdict, len: usize, retry: Duration) -> Option<String> {
    match v {
        Verdict::TooLarge => Some(protocol::error(
            ErrorCode::TooLarge,
            &format!("message is {len} bytes; the limit is {MAX_MESSAGE_BYTES}"),
            None,
        )),
        Verdict::Limited => Some(protocol::error(
            ErrorCode::RateLimited,
            &format!(
                "too many messages (limit {PER_SECOND}/s, burst {BURST}); retry in {} ms",
                retry.as_millis().max(1)
            ),
            None,
        )),
        Verdict::Pass | Verdict::LimitedQuiet => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut g = Guard::with_rate(t0, 5, 10);
        for _ in 0..5 {
            assert_eq!(g.admit(t0, 10), Verdict::Pass);
        }
        assert_eq!(g.admit(t0, 10), Verdict::Limited);
        assert_eq!(g.admit(t0, 10), Verdict::LimitedQuiet);
        // 10/s: one token every 100 ms.
        assert_eq!(
            g.admit(t0 + Duration::from_millis(99), 10),
            Verdict::LimitedQuiet
        );
        assert_eq!(g.admit(t0 + Duration::from_millis(100), 10), Verdict::Pass);
        assert_eq!(
            g.admit(t0 + Duration::from_millis(100), 10),
            Verdict::Limited
        );
        // Refills up to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(g.admit(later, 10), Verdict::Pass);
        }
        assert_eq!(g.admit(later, 10), Verdict::Limited);
    }

    #[test]
    fn oversized_is_refused_and_costs_a_token() {
        let t0 = Instant::now();
        let mut g = Guard::with_rate(t0, 2, 1);
        assert_eq!(g.admit(t0, MAX_MESSAGE_BYTES), Verdict::Pass);
        assert_eq!(g.admit(t0, MAX_MESSAGE_BYTES + 1), Verdict::TooLarge);
        assert_eq!(g.admit(t0, 1), Verdict::Limited);
    }
}
