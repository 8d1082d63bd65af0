//! Egress: one show packet to every local viewer ([`crate::engine::forwarder::decide`] per
//! viewer, then str0m's `write_rtp`), the keyframe cache a joining viewer starts from, and
//! data-channel text with the greeting hold (the snapshot is always a viewer's first message).

use std::sync::Arc;
use std::time::Instant;

use str0m::rtp::RtpWrite;

use super::Core;
use crate::engine::forwarder::{self, Decision, Track};
use crate::engine::{MediaPacket, Target};

/// Most packets kept in a show's keyframe cache (≈ 2 s at 2.5 Mbit/s); beyond it caching
/// stops until the next keyframe.
pub const GOP_MAX_PACKETS: usize = 600;

/// Most broadcasts held for a peer until its greeting (snapshot) is sent.
pub const HELD_TEXT_MAX: usize = 256;

/// A show's outgoing state on one shard.
#[derive(Default)]
pub(super) struct Outgoing {
    /// Video packets since the last keyframe start (shared `Arc`s, no copies): a viewer that
    /// connects shortly after a keyframe starts from it at once instead of waiting for a PLI.
    gop: Vec<Arc<MediaPacket>>,
}

impl Outgoing {
    fn cache(&mut self, mp: &Arc<MediaPacket>) {
        if mp.pkt.keyframe_start {
            self.gop.clear();
        }
        if mp.pkt.keyframe_start || !self.gop.is_empty() {
            if self.gop.len() < GOP_MAX_PACKETS {
                self.gop.push(mp.clone());
            } else {
                self.gop.clear();
            }
        }
    }
}

impl Core {
    /// Write one show packet to every local viewer of the show.
    pub(super) fn fanout(&mut self, now: Instant, mp: &Arc<MediaPacket>) {
        let cache = !self.s.keyframe_cache_age.is_zero();
        let Some(show) = self.shows.get_mut(&mp.show) else {
            return;
        };
        if mp.pkt.track == Track::Video && cache {
            show.out.cache(mp);
        }
        // Index loop: forward_one() needs &mut self. Viewers removed meanwhile are skipped.
        let n = show.viewers.len();
        for i in 0..n {
            let Some(&idx) = self.shows.get(&mp.show).and_then(|s| s.viewers.get(i)) else {
                break;
            };
            self.forward_one(now, idx, mp);
        }
    }

    /// A viewer's settle delay is over: replay the cached keyframe and what followed if it is
    /// recent, else ask the publisher for a keyframe (through the show's gate).
    pub(super) fn start_viewer(&mut self, now: Instant, idx: usize, show: &Arc<str>) {
        let cached: Vec<Arc<MediaPacket>> = self
            .shows
            .get(show)
            .map(|s| s.out.gop.clone())
            .unwrap_or_default();
        let fresh = cached
            .first()
            .is_some_and(|k| now.saturating_duration_since(k.arrival) <= self.s.keyframe_cache_age);
        if fresh {
            self.metrics.keyframe_cache_starts.inc();
            for mp in &cached {
                self.forward_one(now, idx, mp);
            }
        } else {
            self.ask_keyframe(now, show);
        }
    }

    /// Run the forwarding decision for one viewer and write the packet if it says so.
    fn forward_one(&mut self, now: Instant, idx: usize, mp: &MediaPacket) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        if !p.connected || p.start_at.is_some() {
            return;
        }
        let pts = p.pts;
        let out = match mp.pkt.track {
            Track::Audio => p.audio.as_mut(),
            Track::Video => p.video.as_mut(),
        };
        let Some(out) = out else { return };
        match forwarder::decide(&mp.pkt, &mut out.fwd, &pts) {
            Decision::Send {
                seq,
                ts,
                pt,
                marker,
            } => {
                let ssrc = out.ssrc;
                let mut api = p.rtc.direct_api();
                if let Some(tx) = api.stream_tx(&ssrc) {
                    tx.write_rtp(
                        RtpWrite::new(pt.into(), seq.into(), ts, mp.arrival, mp.payload.clone())
                            .marker(marker)
                            .nackable(mp.pkt.track == Track::Video),
                    );
                    self.metrics.forwarded.inc();
                }
                // str0m releases a written packet only on its next `Input::Timeout`, so polling
                // now would send nothing. Mark the peer due instead: `handle_timeout`, later in
                // this same loop pass, releases everything written to it at once.
                p.deadline = p.deadline.min(now);
            }
            Decision::Drop(_) => self.metrics.dropped.inc(),
        }
    }

    /// Text on the `events` data channel of one peer, or of every local viewer of a show.
    pub(super) fn send_text(&mut self, now: Instant, target: Target, text: &Arc<str>) {
        let (targets, greet): (Vec<usize>, bool) = match target {
            Target::Peer(id) => (self.peers.slot_of(id).into_iter().collect(), false),
            Target::Greet(id) => (self.peers.slot_of(id).into_iter().collect(), true),
            Target::Viewers(show) => (
                self.shows
                    .get(&show)
                    .map(|s| s.viewers.clone())
                    .unwrap_or_default(),
                false,
            ),
        };
        for idx in targets {
            let Some(p) = self.peers.get_mut(idx) else {
                continue;
            };
            let Some(cid) = p.channel else { continue };
            let mut batch: Vec<Arc<str>> = Vec::new();
            if greet {
                // The greeting (snapshot) goes first, then what was held back meanwhile.
                batch.push(text.clone());
                batch.extend(p.held_text.take().unwrap_or_default());
            } else if let Some(held) = p.held_text.as_mut() {
                // Not greeted yet: hold broadcasts so the snapshot stays the first message.
                if held.len() < HELD_TEXT_MAX {
                    held.push(text.clone());
                } else {
                    self.metrics.dc_dropped.inc();
                }
                continue;
            } else {
                batch.push(text.clone());
            }
            for t in batch {
                let ok = p
                    .rtc
                    .channel(cid)
                    .map(|mut c| c.write(false, t.as_bytes()).unwrap_or(false))
                    .unwrap_or(false);
                if ok {
                    self.metrics.dc_messages_out.inc();
                } else {
                    self.metrics.dc_dropped.inc();
                }
            }
            self.drain(now, idx);
        }
    }
}
