//! Keyframe requests to a publisher: coalesced and throttled, as a pure state machine.
//!
//! Many viewers joining at once, or many viewers sending PLIs after the same loss, must cost
//! the publisher at most one keyframe request per interval: publishers honour PLIs about once
//! a second and every keyframe is a bitrate spike for every viewer.

use std::time::{Duration, Instant};

/// Per-show gate for keyframe requests.
#[derive(Debug, Clone)]
pub struct Gate {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl Gate {
    /// A gate allowing one request per `interval`.
    pub fn new(interval: Duration) -> Gate {
        Gate {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    /// Someone wants a keyframe. Returns true if a request should be sent now.
    pub fn want(&mut self, now: Instant) -> bool {
        self.pending = true;
        self.poll(now)
    }

    /// A keyframe arrived: whoever was waiting is served.
    pub fn keyframe_seen(&mut self) {
        self.pending = false;
    }

    /// Returns true if a pending request may go out now (call at [`Gate::deadline`]).
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        match self.last_sent {
            Some(t) if now < t + self.interval => false,
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// When a pending request may go out, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        self.last_sent.map(|t| t + self.interval)
    }

    /// Forget history (new publisher session: ask at once).
    pub fn reset(&mut self) {
        self.last_sent = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_and_throttles() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(500);
        let mut g = Gate::new(iv);
        assert!(g.want(t0));
        // 20 joiners within the interval: no further request now.
        for i in 0..20 {
            assert!(!g.want(t0 + Duration::from_millis(i * 10)));
        }
        assert_eq!(g.deadline(), Some(t0 + iv));
        assert!(!g.poll(t0 + Duration::from_millis(499)));
        assert!(g.poll(t0 + iv));
        assert!(!g.poll(t0 + iv));
        assert_eq!(g.deadline(), None);
    }

    #[test]
    fn keyframe_satisfies_pending() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_millis(500));
        assert!(g.want(t0));
        assert!(!g.want(t0 + Duration::from_millis(10)));
        g.keyframe_seen();
        assert!(!g.poll(t0 + Duration::from_secs(1)));
    }
}
