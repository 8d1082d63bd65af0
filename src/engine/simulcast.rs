//! Simulcast, as pure state machines: which layer a viewer gets ([`Select`]), the viewer's
//! quality cap ([`Quality`]), how a publisher's rids are ordered ([`order_rids`]) and how each
//! layer's RTP timestamps are put on one show clock ([`Align`]).
//!
//! Layer choice, per viewer, from its bandwidth estimate (str0m TWCC) and the layers' measured
//! bitrates on the viewer's shard:
//! * the viewer gets the highest layer (up to its cap) whose bitrate plus audio fits the
//!   estimate with a reserve ([`UP_RESERVE`]);
//! * down is fast: as soon as the current layer no longer fits the estimate (no reserve), the
//!   target drops to the best layer that fits;
//! * up is slow: the next layer must fit with the reserve for [`UP_HOLD`] in a row, and
//!   meanwhile the viewer's BWE is asked to probe for it ([`Choice::probe`]: str0m's
//!   `bwe().set_bitrate` with the next layer's rate as the minimum);
//! * the switch itself happens at a keyframe of the target layer (`forwarder::decide`).

use std::time::{Duration, Instant};

/// Most layers a publisher may send.
pub const MAX_LAYERS: usize = 3;

/// Headroom a higher layer needs in the estimate before the viewer moves up to it.
pub const UP_RESERVE: f64 = 1.15;

/// How long a higher layer must fit before the viewer moves up.
pub const UP_HOLD: Duration = Duration::from_secs(1);

/// Bitrate set aside for audio (Opus at the rates browsers send, with headers).
pub const AUDIO_BPS: u64 = 64_000;

/// How often a viewer below its cap probes for the next layer, and for how long.
pub const PROBE_EVERY: Duration = Duration::from_secs(3);
/// See [`PROBE_EVERY`].
pub const PROBE_FOR: Duration = Duration::from_secs(1);

/// How often a viewer's choice is re-evaluated without a new estimate.
pub const SELECT_EVERY: Duration = Duration::from_millis(250);

/// The estimate a viewer's BWE starts from.
pub const INITIAL_ESTIMATE_BPS: u64 = 300_000;

/// A viewer's quality cap (WHEP `?quality=`, or the `quality` message on `events`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quality {
    /// The best layer the link carries.
    #[default]
    Auto,
    /// At most the lowest layer.
    Low,
    /// At most the middle layer.
    Medium,
    /// The top layer (if the link carries it; like `auto`).
    High,
}

impl Quality {
    /// Parse `auto`, `low`, `medium`, `high`.
    pub fn parse(s: &str) -> Option<Quality> {
        match s {
            "auto" => Some(Quality::Auto),
            "low" => Some(Quality::Low),
            "medium" => Some(Quality::Medium),
            "high" => Some(Quality::High),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Auto => "auto",
            Quality::Low => "low",
            Quality::Medium => "medium",
            Quality::High => "high",
        }
    }

    /// Highest layer allowed (layers are numbered from 0, the lowest).
    pub fn max_layer(self) -> u8 {
        match self {
            Quality::Low => 0,
            Quality::Medium => 1,
            Quality::Auto | Quality::High => (MAX_LAYERS - 1) as u8,
        }
    }
}

/// The order of a publisher's rids, lowest layer first: the usual names (`q`/`h`/`f`,
/// `l`/`m`/`h`, `low`/`mid`/`high`, `0`/`1`/`2`) by meaning, anything else in SDP order
/// (which is then taken as lowest first). Returns, for each rid in SDP order, its layer.
pub fn order_rids(rids: &[&str]) -> Vec<u8> {
    const SETS: [&[&str]; 5] = [
        &["q", "h", "f"],
        &["l", "m", "h"],
        &["low", "mid", "high"],
        &["low", "medium", "high"],
        &["0", "1", "2"],
    ];
    for set in SETS {
        if rids.iter().all(|r| set.contains(r)) {
            let mut ranks: Vec<usize> = rids
                .iter()
                .map(|r| set.iter().position(|s| s == r).unwrap_or(0))
                .collect();
            let mut sorted = ranks.clone();
            sorted.sort_unstable();
            for r in &mut ranks {
                *r = sorted.iter().position(|s| s == r).unwrap_or(0);
            }
            return ranks.into_iter().map(|r| r as u8).collect();
        }
    }
    (0..rids.len() as u8).collect()
}

/// What the viewer should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The layer to move to (or stay on).
    pub target: u8,
    /// What to give the BWE (str0m `set_bitrate`): (minimum, desired) bits/s. In a probe
    /// window ([`PROBE_FOR`] every [`PROBE_EVERY`]) the minimum is the next layer's rate
    /// (padding fills the gap, capped by the estimate) and the desired rate the top allowed
    /// layer's (probe clusters); between windows, (0, the target layer's rate). `None` when
    /// nothing is above.
    pub probe: Option<(u64, u64)>,
}

/// Per-viewer layer selection.
#[derive(Debug, Clone, Default)]
pub struct Select {
    target: Option<u8>,
    /// Since when the next layer up has fitted with the reserve.
    up_since: Option<Instant>,
    /// The current probe window's start, and the next one's.
    probe_from: Option<Instant>,
    next_probe: Option<Instant>,
}

impl Select {
    /// The current target, if chosen.
    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// Re-evaluate. `rates[l]`: layer `l`'s measured bitrate if it is flowing (and usable);
    /// `estimate`: the viewer's bandwidth estimate in bits/s; `cap`: the highest layer allowed.
    /// `None` when no layer is flowing.
    pub fn choose(
        &mut self,
        now: Instant,
        rates: &[Option<u64>; MAX_LAYERS],
        estimate: u64,
        cap: u8,
    ) -> Option<Choice> {
        let allowed = |l: usize| l as u8 <= cap && rates[l].is_some();
        let lowest = (0..MAX_LAYERS).find(|&l| rates[l].is_some())? as u8;
        let fits = |l: usize, reserve: f64| {
            rates[l].is_some_and(|r| ((r + AUDIO_BPS) as f64 * reserve) as u64 <= estimate)
        };
        // Best layer that fits with the reserve (the lowest flowing one if none does).
        let best = (0..MAX_LAYERS)
            .rev()
            .find(|&l| allowed(l) && fits(l, UP_RESERVE))
            .map(|l| l as u8)
            .unwrap_or_else(|| {
                (0..MAX_LAYERS)
                    .find(|&l| allowed(l))
                    .map(|l| l as u8)
                    .unwrap_or(lowest)
            });
        let target = match self.target {
            None => {
                self.up_since = None;
                best
            }
            Some(cur) => {
                let cur_ok = allowed(cur as usize) && fits(cur as usize, 1.0);
                if !cur_ok || cur > cap {
                    // Fast down (or the layer stopped, or the cap went down): to the best
                    // layer below that fits as it is (no reserve: the estimate just fell).
                    self.up_since = None;
                    (0..cur.min(cap.saturating_add(1)) as usize)
                        .rev()
                        .find(|&l| allowed(l) && fits(l, 1.0))
                        .map(|l| l as u8)
                        .unwrap_or_else(|| best.min(cur))
                } else if best > cur {
                    match self.up_since {
                        Some(t) if now.duration_since(t) >= UP_HOLD => {
                            self.up_since = None;
                            // One step at a time: each step is a keyframe and a probe.
                            (cur + 1..=best)
                                .find(|&l| allowed(l as usize))
                                .unwrap_or(best)
                        }
                        Some(_) => cur,
                        None => {
                            self.up_since = Some(now);
                            cur
                        }
                    }
                } else {
                    self.up_since = None;
                    cur
                }
            }
        };
        self.target = Some(target);
        // Probe towards the next allowed layer above the target.
        let next = (target as usize + 1..MAX_LAYERS).find(|&l| allowed(l));
        let top = (0..MAX_LAYERS).rev().find(|&l| allowed(l));
        let need = |l: usize| ((rates[l].unwrap_or(0) + AUDIO_BPS) as f64 * UP_RESERVE) as u64;
        let probe = match (next, top) {
            (Some(n), Some(t)) => {
                // Probe in windows: padding up to the next layer's rate (str0m caps it at the
                // estimate, so the estimate can grow) and a higher desired rate (a rise in
                // `desired` makes str0m send a probe cluster). Between windows the viewer
                // sends only its media.
                let due = self.next_probe.is_none_or(|t| now >= t);
                if due {
                    self.probe_from = Some(now);
                    self.next_probe = Some(now + PROBE_EVERY);
                }
                let probing = self.probe_from.is_some_and(|t| now < t + PROBE_FOR);
                if probing {
                    Some((need(n), need(t).max(need(n))))
                } else {
                    Some((0, need(target as usize)))
                }
            }
            _ => None,
        };
        Some(Choice { target, probe })
    }

    /// Forget the choice (the viewer starts over).
    pub fn reset(&mut self) {
        *self = Select::default();
    }
}

/// A layer's bitrate, measured over windows of [`Meter::WINDOW`].
#[derive(Debug, Clone, Default)]
pub struct Meter {
    start: Option<Instant>,
    bytes: u64,
    rate: Option<u64>,
    last: Option<Instant>,
    first: Option<Instant>,
}

impl Meter {
    /// Measuring window.
    pub const WINDOW: Duration = Duration::from_millis(1000);
    /// A layer silent for this long is not flowing.
    pub const STALE: Duration = Duration::from_millis(1500);

    /// Count a packet.
    pub fn add(&mut self, now: Instant, bytes: usize) {
        self.first.get_or_insert(now);
        let start = *self.start.get_or_insert(now);
        let el = now.saturating_duration_since(start);
        if el >= Self::WINDOW {
            let bps = self.bytes * 8 * 1_000_000 / el.as_micros().max(1) as u64;
            self.rate = Some(bps);
            self.start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
        self.last = Some(now);
    }

    /// Whether any packet of the layer was ever counted.
    pub fn seen(&self) -> bool {
        self.last.is_some()
    }

    /// How long ago the layer's first packet was counted.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.first.map(|t| now.saturating_duration_since(t))
    }

    /// The measured bitrate if the layer is flowing.
    pub fn rate(&self, now: Instant) -> Option<u64> {
        let last = self.last?;
        if now.saturating_duration_since(last) > Self::STALE {
            return None;
        }
        // Before a full window, extrapolate (a layer must be choosable from its first second).
        self.rate.or_else(|| {
            let el = now.saturating_duration_since(self.start?);
            (el >= Duration::from_millis(200))
                .then(|| self.bytes * 8 * 1_000_000 / el.as_micros().max(1) as u64)
        })
    }
}

/// Puts every layer's RTP timestamps on the clock of a reference layer (the first one seen in
/// the publisher session), from the publisher's sender reports (NTP ↔ RTP per SSRC). A layer
/// is usable once its offset is known; the offset is then snapped to a frame of the reference
/// layer so that one captured frame has exactly one timestamp on every layer.
#[derive(Debug, Clone, Default)]
pub struct Align {
    reference: Option<u8>,
    /// Per layer: latest sender report (NTP µs, RTP).
    sr: [Option<(u64, u32)>; MAX_LAYERS],
    /// Per layer: reference_ts = layer_ts + offset.
    offset: [Option<u32>; MAX_LAYERS],
    /// Per layer: an offset from the sender reports, waiting to be snapped on a frame.
    rough: [Option<u32>; MAX_LAYERS],
    /// Recent frame timestamps of the reference layer.
    frames: [u32; 32],
    n_frames: usize,
}

/// How far (90 kHz ticks) a sender-report offset may be from a reference frame to snap to it.
const SNAP_TICKS: u32 = 900;

impl Align {
    /// Start over (a new publisher session).
    pub fn reset(&mut self) {
        *self = Align::default();
    }

    /// The reference layer, if any packet arrived.
    pub fn reference(&self) -> Option<u8> {
        self.reference
    }

    /// A video packet of `layer` with timestamp `ts` arrived (`frame_start`: first of a
    /// frame). Returns the timestamp on the reference clock, or `None` if the layer cannot be
    /// put on it yet (no sender report).
    pub fn map(&mut self, layer: u8, ts: u32, frame_start: bool) -> Option<u32> {
        let l = layer as usize;
        if l >= MAX_LAYERS {
            return None;
        }
        let r = *self.reference.get_or_insert(layer);
        if layer == r {
            self.offset[l] = Some(0);
            if frame_start && self.frames[(self.n_frames + 31) % 32] != ts || self.n_frames == 0 {
                self.frames[self.n_frames % 32] = ts;
                self.n_frames += 1;
            }
            return Some(ts);
        }
        if self.offset[l].is_none() && frame_start {
            if let Some(rough) = self.rough[l] {
                let t = ts.wrapping_add(rough);
                let n = self.n_frames.min(32);
                let near = self.frames[..n]
                    .iter()
                    .map(|&f| (f, f.wrapping_sub(t) as i32))
                    .min_by_key(|(_, d)| d.unsigned_abs());
                self.offset[l] = Some(match near {
                    Some((f, d)) if d.unsigned_abs() <= SNAP_TICKS => f.wrapping_sub(ts),
                    // The reference sends no frames near this one (paused): trust the reports.
                    _ => rough,
                });
            }
        }
        self.offset[l].map(|o| ts.wrapping_add(o))
    }

    /// A sender report for `layer`: NTP time (µs since the Unix epoch) and RTP timestamp.
    pub fn sender_report(&mut self, layer: u8, ntp_us: u64, rtp: u32) {
        let l = layer as usize;
        if l >= MAX_LAYERS {
            return;
        }
        self.sr[l] = Some((ntp_us, rtp));
        let Some(r) = self.reference else { return };
        if self.offset[l].is_some() || self.rough[l].is_some() {
            return;
        }
        let (Some((ntp_r, rtp_r)), Some((ntp_l, rtp_l))) = (self.sr[r as usize], self.sr[l]) else {
            return;
        };
        // The reference's RTP time at the instant of this layer's report.
        let dt_us = ntp_l as i64 - ntp_r as i64;
        let ticks = (dt_us as i128 * 90_000 / 1_000_000) as i64;
        let ref_at = (rtp_r as i64).wrapping_add(ticks) as u32;
        self.rough[l] = Some(ref_at.wrapping_sub(rtp_l));
    }

    /// Whether a layer's timestamps are on the show clock.
    pub fn ready(&self, layer: u8) -> bool {
        self.offset.get(layer as usize).is_some_and(|o| o.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rid_order() {
        assert_eq!(order_rids(&["q", "h", "f"]), vec![0, 1, 2]);
        assert_eq!(order_rids(&["f", "h", "q"]), vec![2, 1, 0]);
        assert_eq!(order_rids(&["h", "m", "l"]), vec![2, 1, 0]);
        assert_eq!(order_rids(&["h", "f"]), vec![0, 1]);
        assert_eq!(order_rids(&["a", "b"]), vec![0, 1]);
    }

    #[test]
    fn quality_parse() {
        assert_eq!(Quality::parse("low"), Some(Quality::Low));
        assert_eq!(Quality::parse("LOW"), None);
        assert_eq!(Quality::Medium.max_layer(), 1);
    }

    const RATES: [Option<u64>; 3] = [Some(150_000), Some(500_000), Some(1_500_000)];

    #[test]
    fn down_fast_up_slow() {
        let t0 = Instant::now();
        let mut s = Select::default();
        let c = s.choose(t0, &RATES, 3_000_000, 2).unwrap();
        assert_eq!(c.target, 2);
        assert_eq!(c.probe, None);
        // Congestion: at once down to what fits.
        let c = s.choose(t0, &RATES, 700_000, 2).unwrap();
        assert_eq!(c.target, 1);
        let (min, _) = c.probe.unwrap();
        assert!(min >= 1_500_000, "probe window for the next layer: {min}");
        // The estimate recovers: up only after UP_HOLD.
        assert_eq!(s.choose(t0, &RATES, 3_000_000, 2).unwrap().target, 1);
        let mid = t0 + UP_HOLD / 2;
        assert_eq!(s.choose(mid, &RATES, 3_000_000, 2).unwrap().target, 1);
        assert_eq!(
            s.choose(t0 + UP_HOLD, &RATES, 3_000_000, 2).unwrap().target,
            2
        );
        // A cap moves down at once.
        assert_eq!(
            s.choose(t0 + UP_HOLD, &RATES, 3_000_000, 0).unwrap().target,
            0
        );
    }

    #[test]
    fn missing_layers_are_skipped() {
        let t0 = Instant::now();
        let mut s = Select::default();
        let rates = [Some(150_000), None, Some(1_500_000)];
        assert_eq!(s.choose(t0, &rates, 1_000_000, 2).unwrap().target, 0);
        assert_eq!(s.choose(t0, &[None; 3], 1_000_000, 2), None);
    }

    #[test]
    fn align_snaps_to_reference_frames() {
        let mut a = Align::default();
        // Layer 1 is the reference (first seen); layer 0 has another random base.
        for f in 0..10u32 {
            assert_eq!(a.map(1, 1000 + f * 3000, true), Some(1000 + f * 3000));
        }
        assert_eq!(a.map(0, 777, true), None, "no sender report yet");
        a.sender_report(1, 1_000_000, 1000 + 9 * 3000);
        // Layer 0's report 10 ms later, 1 tick off by rounding.
        a.sender_report(0, 1_010_000, 777 + 900 + 1);
        assert!(!a.ready(0));
        // Layer 0's frame captured with reference frame 9.
        assert_eq!(a.map(0, 777, true), Some(1000 + 9 * 3000));
        assert!(a.ready(0));
        assert_eq!(a.map(0, 777 + 3000, false), Some(1000 + 10 * 3000));
    }
}
