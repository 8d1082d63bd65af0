//! The video clock: turning a seller's wall-clock instant into the RTP timestamp of the show's
//! video, which is what every viewer's browser reports for that frame
//! (`requestVideoFrameCallback` → `metadata.rtpTimestamp`).
//!
//! The publisher's RTCP sender reports pair an NTP wall-clock time with an RTP timestamp of
//! its capture clock; the home shard converts that RTP timestamp into show numbering
//! ([`crate::engine::Clock`]). A seller action at wall time `capture_ms` then maps to
//! `sr_rtp + (capture_ms − sr_ntp) × 90 kHz`, modulo 2^32. Without a sender report yet, or for
//! an action without a capture time (REST API), the newest received timestamp is used: the
//! frame the server is forwarding right now.

use crate::engine::Clock;

/// Video RTP clock rate.
pub const VIDEO_HZ: i64 = 90_000;

/// Largest distance between a capture time and the sender report used to convert it. Beyond
/// this the seller's clock is not trusted (clock skew, stale report) and the newest
/// timestamp is used instead.
pub const MAX_EXTRAPOLATION_MS: i64 = 10_000;

/// Where an `rtp_ts` came from (reported in events for diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Seller capture time converted through an RTCP sender report.
    SenderReport,
    /// Newest video timestamp received.
    Latest,
    /// No video received yet.
    None,
}

/// Map a sender report and a capture time to an RTP timestamp (wrap-around is modular).
pub fn rtp_at(sr_ntp_us: u64, sr_rtp: u32, capture_ms: i64) -> Option<u32> {
    // Both come from outside (the seller's `capture_ms`, the publisher's sender report): no
    // step may overflow.
    let delta_us = capture_ms
        .checked_mul(1000)?
        .checked_sub(i64::try_from(sr_ntp_us).ok()?)?;
    if delta_us.checked_abs()? > MAX_EXTRAPOLATION_MS * 1000 {
        return None;
    }
    let ticks = delta_us * VIDEO_HZ / 1_000_000;
    Some(sr_rtp.wrapping_add(ticks as i32 as u32))
}

/// The `rtp_ts` for an event: from the capture time when possible, else the newest timestamp.
pub fn stamp(clock: &Clock, capture_ms: Option<i64>) -> (Option<u32>, Basis) {
    if let (Some(cap), Some((ntp, rtp))) = (capture_ms, clock.sender_report()) {
        if let Some(ts) = rtp_at(ntp, rtp, cap) {
            return (Some(ts), Basis::SenderReport);
        }
    }
    match clock.latest() {
        Some(ts) => (Some(ts), Basis::Latest),
        None => (None, Basis::None),
    }
}

/// Wrap-aware "a is at or after b" for 32-bit RTP timestamps.
pub fn at_or_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_through_sender_report() {
        // SR at t = 1000.000 s maps to RTP 1_000_000; 100 ms later is +9000 ticks.
        assert_eq!(rtp_at(1_000_000_000, 1_000_000, 1_000_100), Some(1_009_000));
        // Before the report: backwards.
        assert_eq!(rtp_at(1_000_000_000, 1_000_000, 999_900), Some(991_000));
    }

    #[test]
    fn wraps_around_2_pow_32() {
        let sr_rtp = u32::MAX - 4499; // 4500 ticks before the wrap
        assert_eq!(rtp_at(5_000_000, sr_rtp, 5_100), Some(4500));
        assert_eq!(
            rtp_at(5_000_000, 100, 4_900),
            Some(100u32.wrapping_sub(9000))
        );
        assert!(at_or_after(4500, sr_rtp));
        assert!(!at_or_after(sr_rtp, 4500));
    }

    #[test]
    fn extreme_inputs_do_not_overflow() {
        // A report near the top of u64 (no i64), a capture time at either end of i64.
        assert_eq!(rtp_at(u64::MAX, 7, 1_000), None);
        assert_eq!(rtp_at(1 << 63, 7, i64::MAX / 1000), None);
        assert_eq!(rtp_at(i64::MAX as u64, 7, i64::MIN / 1000), None);
        assert_eq!(rtp_at(0, 7, i64::MIN / 1000), None);
    }

    #[test]
    fn distrusts_far_capture_times() {
        assert_eq!(rtp_at(5_000_000, 0, 5_000 + MAX_EXTRAPOLATION_MS + 1), None);
    }

    #[test]
    fn falls_back_to_latest() {
        let c = Clock::default();
        assert_eq!(stamp(&c, Some(1)), (None, Basis::None));
        c.set_latest(777);
        assert_eq!(stamp(&c, Some(1)), (Some(777), Basis::Latest));
        c.set_sender_report(1_000_000, 90_000);
        assert_eq!(stamp(&c, Some(1_010)), (Some(90_900), Basis::SenderReport));
        assert_eq!(stamp(&c, None), (Some(777), Basis::Latest));
    }
}
