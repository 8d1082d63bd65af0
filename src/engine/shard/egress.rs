//! Egress: one show packet to every local viewer ([`crate::engine::forwarder::decide`] per
//! viewer, then str0m's `write_rtp`), the keyframe cache a joining viewer starts from, and
//! data-channel text with the greeting hold (the snapshot is always a viewer's first message).

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::rtp::RtpWrite;

use super::Core;
use crate::engine::forwarder::{self, Decision, Track};
use crate::engine::simulcast::{Meter, AUDIO_BPS, MAX_LAYERS, SELECT_EVERY, UP_RESERVE};
use crate::engine::{MediaPacket, Target};

/// Most packets kept in a show's keyframe cache (≈ 2 s at 2.5 Mbit/s); beyond it caching
/// stops until the next keyframe.
pub const GOP_MAX_PACKETS: usize = 600;

/// Bytes a packet costs on the wire beyond its payload (RTP, SRTP tag, UDP, IP), for the
/// layer bitrates compared against estimates.
const RTP_OVERHEAD: usize = 12 + 16 + 8 + 20;

/// Most broadcasts held for a peer until its greeting (snapshot) is sent.
pub const HELD_TEXT_MAX: usize = 256;

/// How long a show must flow with one layer, and no other, before its new viewers skip
/// bandwidth estimation ([`Outgoing::single_layer`]).
pub(super) const SINGLE_LAYER_AFTER: Duration = Duration::from_secs(3);

/// A show's outgoing state on one shard.
#[derive(Default)]
pub(super) struct Outgoing {
    /// Per layer: video packets since the last keyframe start (shared `Arc`s, no copies): a
    /// viewer that connects shortly after a keyframe starts from it at once instead of
    /// waiting for a PLI.
    gop: [Vec<Arc<MediaPacket>>; MAX_LAYERS],
    /// Per layer: the measured bitrate, for layer choice.
    meters: [Meter; MAX_LAYERS],
}

impl Outgoing {
    fn cache(&mut self, mp: &Arc<MediaPacket>) {
        let Some(gop) = self.gop.get_mut(mp.pkt.layer as usize) else {
            return;
        };
        if mp.pkt.keyframe_start {
            gop.clear();
        }
        if mp.pkt.keyframe_start || !gop.is_empty() {
            if gop.len() < GOP_MAX_PACKETS {
                gop.push(mp.clone());
            } else {
                gop.clear();
            }
        }
    }

    /// The layers' bitrates, for those flowing.
    pub fn rates(&self, now: Instant) -> [Option<u64>; MAX_LAYERS] {
        std::array::from_fn(|l| self.meters[l].rate(now))
    }

    /// The show has flowed with one layer for [`SINGLE_LAYER_AFTER`] and never sent another:
    /// its viewers have no layer to choose, so they need no bandwidth estimation. (A browser
    /// publishing simulcast adds its upper layers as its own estimate grows, within about a
    /// second on a good link: a show is not called single-layer before that.)
    pub fn single_layer(&self, now: Instant) -> bool {
        self.meters[0].rate(now).is_some()
            && self.meters[0]
                .age(now)
                .is_some_and(|a| a >= SINGLE_LAYER_AFTER)
            && self.meters[1..].iter().all(|m| !m.seen())
    }
}

impl Core {
    /// Write one show packet to every local viewer of the show.
    pub(super) fn fanout(&mut self, now: Instant, mp: &Arc<MediaPacket>) {
        let cache = !self.s.keyframe_cache_age.is_zero();
        let Some(show) = self.shows.get_mut(&mp.show) else {
            return;
        };
        if mp.pkt.track == Track::Video {
            if let Some(m) = show.out.meters.get_mut(mp.pkt.layer as usize) {
                m.add(mp.arrival, mp.payload.len() + RTP_OVERHEAD);
            }
            if cache {
                show.out.cache(mp);
            }
        }
        // forward_one() needs &mut self: the viewers are copied into a reused buffer, one show
        // lookup per packet. Each viewer's forward is guarded on its own: a panic drops that
        // viewer, not the publisher whose datagram brought the packet nor (for a packet from
        // another shard) the whole shard. A viewer dropped meanwhile is no longer in the peer
        // table, and forward_one() skips it.
        let mut viewers = std::mem::take(&mut self.fan_viewers);
        viewers.extend_from_slice(&show.viewers);
        for &idx in &viewers {
            self.guarded(idx, |core| core.forward_one(now, idx, mp));
        }
        viewers.clear();
        self.fan_viewers = viewers;
    }

    /// A viewer's settle delay is over: pick its layer, replay that layer's cached keyframe
    /// and what followed if it is recent, else ask the publisher for a keyframe of it
    /// (through the layer's gate).
    pub(super) fn start_viewer(&mut self, now: Instant, idx: usize, show: &Arc<str>) {
        self.select_layer(now, idx);
        let layer = self
            .peers
            .get_mut(idx)
            .and_then(|p| p.video.as_ref())
            .map(|v| v.fwd.target_layer)
            .unwrap_or(0);
        let cached: Vec<Arc<MediaPacket>> = self
            .shows
            .get(show)
            .and_then(|s| s.out.gop.get(layer as usize).cloned())
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
            self.ask_keyframe(now, show, layer);
        }
    }

    /// Re-evaluate a viewer's layer from its estimate, its cap and the layers' bitrates; ask
    /// for a keyframe of a new target and point the viewer's BWE at the next layer up.
    pub(super) fn select_layer(&mut self, now: Instant, idx: usize) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        p.next_select = Some(now + SELECT_EVERY);
        let Some(show) = self.shows.get(&p.show) else {
            return;
        };
        let rates = show.out.rates(now);
        let Some(choice) = p
            .select
            .choose(now, &rates, p.estimate, p.quality.max_layer())
        else {
            return;
        };
        let Some(video) = p.video.as_mut() else {
            return;
        };
        let changed = video.fwd.target_layer != choice.target;
        video.fwd.target_layer = choice.target;
        // Not yet on the target, whether forwarding another layer or nothing yet: a viewer
        // waiting for its first keyframe needs one of the new target, or it waits for the
        // publisher's next periodic keyframe (none at all from a publisher sending only on
        // request).
        let waiting = video.fwd.layer() != Some(choice.target);
        if choice.probe != p.probe {
            p.probe = choice.probe;
            let (min, desired) = match choice.probe {
                Some(pr) => pr,
                None => {
                    let r = rates[choice.target as usize].unwrap_or(0) + AUDIO_BPS;
                    (0, (r as f64 * UP_RESERVE) as u64)
                }
            };
            p.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(min), Bitrate::bps(desired));
        }
        if changed && waiting {
            let show = p.show.clone();
            self.ask_keyframe(now, &show, choice.target);
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
        self.check_forward_fault(idx);
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        if mp.pkt.track == Track::Video && p.next_select.is_some_and(|t| t <= now) {
            self.select_layer(now, idx);
            self.tell_layer(now, idx);
        }
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        let pts = p.pts;
        let out = match mp.pkt.track {
            Track::Audio => p.audio.as_mut(),
            Track::Video => p.video.as_mut(),
        };
        let Some(out) = out else { return };
        let before = out.fwd.layer();
        let mut switched = false;
        match forwarder::decide(&mp.pkt, &mut out.fwd, &pts) {
            Decision::Send {
                seq,
                ts,
                pt,
                marker,
                vp8,
            } => {
                let after = out.fwd.layer();
                let ssrc = out.ssrc;
                if mp.pkt.track == Track::Video && before != after {
                    if let Some(b) = before {
                        self.metrics.viewers_on_layer(b).dec();
                        let dir = if after > Some(b) { "up" } else { "down" };
                        self.metrics.layer_switches(dir).inc();
                    }
                    if let Some(a) = after {
                        self.metrics.viewers_on_layer(a).inc();
                    }
                    switched = true;
                }
                let mut w =
                    RtpWrite::new(pt.into(), seq.into(), ts, mp.arrival, mp.payload.clone())
                        .marker(marker)
                        .nackable(mp.pkt.track == Track::Video);
                if let (Some((pid, tl0)), Some(desc)) = (vp8, mp.vp8) {
                    let mut b = desc.patch().picture_id(pid);
                    if let Some(t) = tl0 {
                        b = b.tl0_pic_idx(t);
                    }
                    // The descriptor was parsed from this very payload: the patch fits.
                    if let Ok(patch) = b.build() {
                        w = w.vp8_patch(patch);
                    }
                }
                let mut api = p.rtc.direct_api();
                if let Some(tx) = api.stream_tx(&ssrc) {
                    tx.write_rtp(w);
                    self.metrics.forwarded.inc();
                }
                // str0m releases a written packet only on its next `Input::Timeout`, so polling
                // now would send nothing. Mark the peer due instead: `handle_timeout`, later in
                // this same loop pass, releases everything written to it at once.
                p.deadline = p.deadline.min(now);
            }
            Decision::Drop(_) => self.metrics.dropped.inc(),
        }
        if switched {
            self.tell_layer(now, idx);
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
            // Per peer, like a packet: a panic costs that peer, not the shard.
            self.guarded(idx, |core| core.text_one(now, idx, text, greet));
        }
    }

    /// Text on one peer's `events` channel (held until its greeting, unless it is that).
    fn text_one(&mut self, now: Instant, idx: usize, text: &Arc<str>, greet: bool) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        let Some(cid) = p.channel else { return };
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
            return;
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
        if greet {
            self.tell_layer(now, idx);
        }
    }
}
