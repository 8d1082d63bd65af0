//! Ingest, on a show's home shard: each publisher packet is mapped once into the show's
//! numbering ([`SourceMap`]), checked for a keyframe start, stamped on the show's video clock,
//! and handed as one `Arc`'d [`MediaPacket`] to this shard's viewers and to every other shard.
//! Keyframe requests from anywhere end here, coalesced by the show's [`Gate`]. A recorded
//! show's packets are also queued, once, for the recorder (`Core::recorded`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::KeyframeRequestKind;
use str0m::rtp::RtpPacket;

use super::{Core, ToOthers};
use crate::codec::{is_keyframe_start, Codec};
use crate::engine::forwarder::{self, Incoming, SourceMap, Track};
use crate::engine::keyframe::Gate;
use crate::engine::{Clock, MediaPacket, ShowSpec};

/// The show state that lives on its home shard.
pub(super) struct Home {
    audio: SourceMap,
    video: SourceMap,
    pub gate: Gate,
    clock: Arc<Clock>,
    video_codecs: Vec<Codec>,
    /// Previous video packet (show seq, ts, marker) to find frame starts.
    prev_video: Option<(u64, u32, bool)>,
    /// Queue the show's packets for the recorder.
    record: bool,
}

impl Home {
    pub fn new(show: &ShowSpec, keyframe_interval: Duration) -> Home {
        Home {
            audio: SourceMap::new(48_000),
            video: SourceMap::new(90_000),
            gate: Gate::new(keyframe_interval),
            clock: show.clock.clone(),
            video_codecs: show.video_codecs.clone(),
            prev_video: None,
            record: show.record,
        }
    }

    /// A publisher session starts (first or republish): the numbering carries on.
    pub fn new_session(&mut self, show: &ShowSpec) {
        self.gate.reset();
        // Until this session's first sender report, seller events use the newest timestamp
        // rather than the old session's capture clock.
        self.clock.clear_sender_report();
        self.video_codecs = show.video_codecs.clone();
        self.record = show.record;
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
        if track == Track::Video {
            p.video_ssrc = Some(pkt.header.ssrc);
        }
        let session = p.id;
        let show_id = p.show.clone();
        let mut new_sr = None;
        if track == Track::Video {
            if let Some(sr) = pkt.last_sender_info {
                if p.last_sr_ntp != Some(sr.ntp_time) {
                    p.last_sr_ntp = Some(sr.ntp_time);
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
        let map = match track {
            Track::Audio => &mut home.audio,
            Track::Video => &mut home.video,
        };
        let Ok((seq, ts)) = map.map(&inc) else {
            return;
        };
        let record = home.record;
        let mut keyframe_start = false;
        if track == Track::Video {
            let frame_start = match home.prev_video {
                None => true,
                Some((_, pts, pmarker)) => pmarker || pts != ts,
            };
            keyframe_start = frame_start && is_keyframe_start(codec, &pkt.payload);
            if keyframe_start {
                home.gate.keyframe_seen();
                self.metrics.keyframes_in.inc();
            }
            home.prev_video = Some((seq, ts, pkt.header.marker));
            home.clock.set_latest(ts);
            if let Some(sr) = new_sr {
                let sr_rtp = sr.rtp_time.numer() as u32;
                let back = pkt.header.timestamp.wrapping_sub(sr_rtp);
                let show_sr = ts.wrapping_sub(back);
                if let Ok(d) = sr.ntp_time.duration_since(std::time::UNIX_EPOCH) {
                    home.clock.set_sender_report(d.as_micros() as u64, show_sr);
                }
            }
        }
        let mp = Arc::new(MediaPacket {
            show: show_id,
            pkt: forwarder::Packet {
                track,
                codec,
                seq,
                ts,
                marker: pkt.header.marker,
                keyframe_start,
                layer: 0,
            },
            payload: pkt.payload.clone(),
            arrival: now,
        });
        self.outbox.push(ToOthers::Media(mp.clone()));
        if record && mp.pkt.layer == self.s.record_layer {
            self.recorded.push(mp.clone());
        }
        self.fanout(now, &mp);
    }

    /// A local viewer needs a keyframe: ask the gate here if this is the show's home shard,
    /// else forward the wish to it.
    pub(super) fn ask_keyframe(&mut self, now: Instant, show: &Arc<str>) {
        if self.shows.get(show).is_some_and(|s| s.home.is_some()) {
            self.keyframe_wanted(now, show);
        } else {
            self.outbox.push(ToOthers::KeyframeWanted(show.clone()));
        }
    }

    /// Someone wants a keyframe of a show homed here: the gate decides when the PLI goes.
    pub(super) fn keyframe_wanted(&mut self, now: Instant, show: &Arc<str>) {
        let send = match self.shows.get_mut(show).and_then(|s| s.home.as_mut()) {
            Some(h) => h.gate.want(now),
            None => false,
        };
        if send {
            self.request_keyframe_from_publisher(show);
        }
    }

    /// Send the PLIs whose gate interval has passed.
    pub(super) fn poll_gates(&mut self, now: Instant) {
        let mut due: Vec<Arc<str>> = Vec::new();
        for (id, show) in &mut self.shows {
            if let Some(h) = show.home.as_mut() {
                if h.gate.deadline().is_some_and(|d| d <= now) && h.gate.poll(now) {
                    due.push(id.clone());
                }
            }
        }
        for id in due {
            self.request_keyframe_from_publisher(&id);
        }
    }

    fn request_keyframe_from_publisher(&mut self, show: &Arc<str>) {
        let Some(idx) = self.shows.get(show).and_then(|s| s.publisher) else {
            return;
        };
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        let mut api = p.rtc.direct_api();
        let rx = match (p.video_ssrc, p.video_mid) {
            (Some(ssrc), _) => api.stream_rx(&ssrc),
            (None, Some(mid)) => api.stream_rx_by_mid(mid, None),
            _ => None,
        };
        if let Some(rx) = rx {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.metrics.plis_to_publishers.inc();
        }
    }
}
