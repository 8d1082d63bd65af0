//! Ingest, on a show's home shard: each publisher packet is mapped once into the show's
//! numbering ([`SourceMap`]), checked for a keyframe start, stamped on the show's video clock,
//! and handed as one `Arc`'d [`MediaPacket`] to this shard's viewers and to every other shard.
//! Keyframe requests from anywhere end here, coalesced by the show's [`Gate`]. A recorded
//! show's packets are also queued, once, for the recorder (`Core::recorded`): audio, and the
//! highest video layer seen, switched to at one of its keyframes ([`Home::records`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::KeyframeRequestKind;
use str0m::rtp::{RtpPacket, Vp8Descriptor};

use super::{Core, ToOthers};
use crate::codec::{is_frame_prefix, is_keyframe_start, Codec};
use crate::engine::forwarder::{self, ClockMap, Incoming, SourceMap, Track};
use crate::engine::keyframe::Gate;
use crate::engine::simulcast::{Align, MAX_LAYERS};
use crate::engine::{Clock, MediaPacket, ShowSpec};

/// One video layer of the show on its home shard.
pub(super) struct LayerIn {
    /// The layer's own numbering (sequence space); its timestamps go on the show clock.
    map: SourceMap,
    /// Keyframe requests for this layer, coalesced.
    pub gate: Gate,
    /// Previous packet (ts, marker) to find frame starts.
    prev: Option<(u32, bool)>,
    /// The timestamp of a frame whose packets so far only led it (H.264 delimiters, SEI): its
    /// next packet may still be where a keyframe starts.
    prefix_ts: Option<u32>,
}

impl LayerIn {
    fn new(keyframe_interval: Duration) -> LayerIn {
        LayerIn {
            map: SourceMap::new(90_000),
            gate: Gate::new(keyframe_interval),
            prev: None,
            prefix_ts: None,
        }
    }
}

/// The show state that lives on its home shard.
pub(super) struct Home {
    audio: SourceMap,
    /// Video layers, lowest first (one without simulcast).
    pub layers: Vec<LayerIn>,
    /// Simulcast: every layer on the reference layer's clock.
    align: Align,
    /// The show's video clock (reference-layer timestamps → show timestamps).
    video_ts: ClockMap,
    simulcast: bool,
    clock: Arc<Clock>,
    video_codecs: Vec<Codec>,
    /// Queue the show's packets for the recorder.
    record: bool,
    /// The video layer being recorded in this session (`None` before its first keyframe).
    rec_layer: Option<u8>,
    /// When a packet of `rec_layer` last arrived.
    rec_seen: Option<Instant>,
}

/// A recorded layer that has sent nothing for this long has stopped (a browser drops its top
/// layer when its uplink shrinks): the recording steps down to the highest layer still sending,
/// at its next keyframe.
pub const RECORD_LAYER_STALE: Duration = Duration::from_millis(500);

impl Home {
    pub fn new(show: &ShowSpec, keyframe_interval: Duration) -> Home {
        Home {
            audio: SourceMap::new(48_000),
            layers: (0..MAX_LAYERS)
                .map(|_| LayerIn::new(keyframe_interval))
                .collect(),
            align: Align::default(),
            video_ts: ClockMap::new(90_000),
            simulcast: false,
            clock: show.clock.clone(),
            video_codecs: show.video_codecs.clone(),
            record: show.record,
            rec_layer: None,
            rec_seen: None,
        }
    }

    /// A publisher session starts (first or republish): the numbering carries on.
    pub fn new_session(&mut self, show: &ShowSpec, simulcast: bool) {
        for l in &mut self.layers {
            l.gate.reset();
            l.prev = None;
            l.prefix_ts = None;
        }
        self.align.reset();
        self.simulcast = simulcast;
        // Until this session's first sender report, seller events use the newest timestamp
        // rather than the old session's capture clock.
        self.clock.clear_sender_report();
        self.video_codecs = show.video_codecs.clone();
        self.record = show.record;
        self.rec_layer = None;
        self.rec_seen = None;
    }

    /// Whether a video packet of `layer` goes to the recorder: the recording follows the
    /// highest layer that is sending, moving up at a keyframe of a higher layer, and down at a
    /// keyframe of a lower one once the recorded layer has been silent for
    /// [`RECORD_LAYER_STALE`], so the recorded stream always decodes and has no gap longer than
    /// that plus the wait for a keyframe. The second value asks for that keyframe.
    fn records(&mut self, now: Instant, layer: u8, keyframe_start: bool) -> (bool, bool) {
        let stale = self
            .rec_seen
            .is_none_or(|t| now.saturating_duration_since(t) >= RECORD_LAYER_STALE);
        let take = match self.rec_layer {
            Some(l) if l == layer => {
                self.rec_seen = Some(now);
                return (true, false);
            }
            Some(l) if layer < l && !stale => return (false, false),
            _ => keyframe_start,
        };
        if !take {
            return (false, true);
        }
        self.rec_layer = Some(layer);
        self.rec_seen = Some(now);
        (true, false)
    }
}

impl Core {
    pub(super) fn publisher_packet(&mut self, now: Instant, idx: usize, pkt: RtpPacket) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        self.metrics.packets_in.inc();
        let pt = *pkt.header.payload_type;
        let Some(codec) = p.codec_of(pt) else {
            self.metrics.garbage.inc();
            return;
        };
        let track = if codec.is_video() {
            Track::Video
        } else {
            Track::Audio
        };
        let mut layer = 0u8;
        if track == Track::Video {
            p.first_video.get_or_insert(now);
            match p.layer_of(pkt.header.ssrc) {
                Ok(l) => layer = l,
                Err(why) => {
                    self.metrics.simulcast_ignored(why.as_str()).inc();
                    return;
                }
            }
            self.metrics.layer_packets_in(layer).inc();
        }
        let session = p.id;
        let show_id = p.show.clone();
        let mut new_sr = None;
        if track == Track::Video {
            if let Some(sr) = pkt.last_sender_info {
                let last = &mut p.last_sr_ntp[layer as usize];
                if *last != Some(sr.ntp_time) {
                    *last = Some(sr.ntp_time);
                    new_sr = Some(sr);
                }
            }
        }
        let Some(home) = self.shows.get_mut(&show_id).and_then(|s| s.home.as_mut()) else {
            return;
        };
        if track == Track::Video && !home.video_codecs.contains(&codec) {
            self.metrics.garbage.inc();
            return;
        }
        let inc = Incoming {
            session,
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            arrival: pkt.timestamp.saturating_duration_since(self.epoch),
        };
        let record = home.record;
        let sr_us = new_sr.and_then(|sr| {
            let us = sr
                .ntp_time
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_micros() as u64;
            Some((us, sr.rtp_time.numer() as u32))
        });
        let mut keyframe_start = false;
        let mut vp8 = None;
        let (seq, ts) = match track {
            Track::Audio => match home.audio.map(&inc) {
                Ok(v) => v,
                Err(_) => return,
            },
            Track::Video => {
                let simulcast = home.simulcast;
                let l = &mut home.layers[layer as usize];
                let frame_start = match l.prev {
                    None => true,
                    Some((pts, pmarker)) => pmarker || pts != inc.ts,
                };
                l.prev = Some((inc.ts, pkt.header.marker));
                // A keyframe may start after the packets that lead a frame (x264's delimiter).
                let may_start = frame_start || l.prefix_ts == Some(inc.ts);
                l.prefix_ts = (may_start && is_frame_prefix(codec, &pkt.payload)).then_some(inc.ts);
                let ref_ts = if simulcast {
                    if let Some((us, rtp)) = sr_us {
                        home.align.sender_report(layer, us, rtp);
                    }
                    // A layer goes nowhere until it is on the show clock.
                    let Some(ref_ts) = home.align.map(layer, inc.ts, frame_start) else {
                        self.metrics.simulcast_ignored("no_sender_report").inc();
                        return;
                    };
                    ref_ts
                } else {
                    inc.ts
                };
                let Ok((seq, _)) = home.layers[layer as usize].map.map(&inc) else {
                    return;
                };
                let Some(ts) = home.video_ts.map(session, ref_ts, inc.arrival) else {
                    return;
                };
                keyframe_start = may_start && is_keyframe_start(codec, &pkt.payload);
                let l = &mut home.layers[layer as usize];
                if keyframe_start {
                    l.gate.keyframe_seen();
                    self.metrics.keyframes_in.inc();
                }
                if codec == Codec::Vp8 {
                    vp8 = Vp8Descriptor::parse(&pkt.payload).ok();
                }
                let is_reference = !simulcast || home.align.reference() == Some(layer);
                if is_reference {
                    home.clock.set_latest(ts);
                    if let Some((us, sr_rtp)) = sr_us {
                        let back = pkt.header.timestamp.wrapping_sub(sr_rtp);
                        home.clock.set_sender_report(us, ts.wrapping_sub(back));
                    }
                }
                (seq, ts)
            }
        };
        let (recorded, want_key) = match (record, track) {
            (false, _) => (false, false),
            (true, Track::Audio) => (true, false),
            (true, Track::Video) => home.records(now, layer, keyframe_start),
        };
        let ids = vp8.and_then(|d: Vp8Descriptor| {
            Some(forwarder::Vp8Ids {
                picture_id: d.picture_id()?,
                wide: vp8_wide_picture_id(&pkt.payload),
                tl0: d.tl0_pic_idx(),
            })
        });
        let mp = Arc::new(MediaPacket {
            show: show_id,
            pkt: forwarder::Packet {
                track,
                codec,
                seq,
                ts,
                marker: pkt.header.marker,
                keyframe_start,
                layer,
                vp8: ids,
            },
            payload: pkt.payload.clone(),
            arrival: now,
            vp8: vp8.filter(|_| ids.is_some()),
        });
        self.outbox.push(ToOthers::Media(mp.clone()));
        if recorded {
            self.recorded.push(mp.clone());
        }
        if want_key {
            self.keyframe_wanted(now, &mp.show, layer);
        }
        // The local fan-out waits for `handle_timeout`, after the driver handed the packet to
        // the other shards.
        self.local_media.push(mp);
    }

    /// A local viewer needs a keyframe of a layer: ask the layer's gate here if this is the
    /// show's home shard, else forward the wish to it. A replay has no home shard: its
    /// wishes are dropped here.
    pub(super) fn ask_keyframe(&mut self, now: Instant, show: &Arc<str>, layer: u8) {
        let local = self.shows.get(show);
        if local.is_some_and(|s| s.replay) {
            return;
        }
        if local.is_some_and(|s| s.home.is_some()) {
            self.keyframe_wanted(now, show, layer);
        } else {
            self.outbox
                .push(ToOthers::KeyframeWanted(show.clone(), layer));
        }
    }

    /// Someone wants a keyframe of a show homed here: the layer's gate decides when the PLI
    /// goes.
    pub(super) fn keyframe_wanted(&mut self, now: Instant, show: &Arc<str>, layer: u8) {
        let send = match self
            .shows
            .get_mut(show)
            .and_then(|s| s.home.as_mut())
            .and_then(|h| h.layers.get_mut(layer as usize))
        {
            Some(l) => l.gate.want(now),
            None => false,
        };
        if send {
            self.request_keyframe_from_publisher(show, layer);
        }
    }

    /// Send the PLIs whose gate interval has passed.
    pub(super) fn poll_gates(&mut self, now: Instant) {
        let mut due: Vec<(Arc<str>, u8)> = Vec::new();
        for (id, show) in &mut self.shows {
            if let Some(h) = show.home.as_mut() {
                for (i, l) in h.layers.iter_mut().enumerate() {
                    if l.gate.deadline().is_some_and(|d| d <= now) && l.gate.poll(now) {
                        due.push((id.clone(), i as u8));
                    }
                }
            }
        }
        for (id, layer) in due {
            self.request_keyframe_from_publisher(&id, layer);
        }
    }

    fn request_keyframe_from_publisher(&mut self, show: &Arc<str>, layer: u8) {
        let Some(idx) = self.shows.get(show).and_then(|s| s.publisher) else {
            return;
        };
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        let ssrc = p.layer_ssrc(layer);
        let mid = p.video_mid;
        let simulcast = p.is_simulcast();
        let mut api = p.rtc.direct_api();
        let rx = match (ssrc, mid) {
            (Some(ssrc), _) => api.stream_rx(&ssrc),
            (None, Some(mid)) if !simulcast => api.stream_rx_by_mid(mid, None),
            _ => None,
        };
        if let Some(rx) = rx {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.metrics.plis_to_publishers.inc();
        }
    }
}

/// Whether a VP8 payload descriptor's PictureID is 15 bits wide (RFC 7741 §4.2: X, I, M bits).
fn vp8_wide_picture_id(payload: &[u8]) -> bool {
    matches!(payload, [x, i, m, ..] if x & 0x80 != 0 && i & 0x80 != 0 && m & 0x80 != 0)
}
