//! Client peers of the harness: full (controlling, not ICE-lite) str0m peers in RTP mode, a
//! publisher that sends synthetic video frames and Opus on a schedule in virtual time, and
//! viewers that record every RTP packet they receive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::channel::ChannelId;
use str0m::media::MediaKind;
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Event, IceConnectionState, Output, Rtc};

use super::client::{self, Mids};
use super::media;
use crate::codec::{is_keyframe_start, Codec};
use crate::engine::{PeerId, Role, EVENTS_LABEL};

/// What a synthetic publisher sends.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Video codec.
    pub codec: Codec,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate, kbit/s (a keyframe is three delta frames' worth).
    pub video_kbps: u32,
    /// Largest RTP payload.
    pub payload_size: usize,
    /// Periodic keyframe interval; `None`: only the first frame and on request.
    pub gop: Option<Duration>,
    /// Answer keyframe requests (PLI/FIR) with a keyframe on the next frame.
    pub answer_keyframe_requests: bool,
    /// Send Opus every 20 ms.
    pub audio: bool,
    /// First sequence numbers (video, audio), e.g. near a 16-bit wrap.
    pub first_seq: (u64, u64),
    /// First RTP timestamps (video, audio), e.g. near the 32-bit wrap.
    pub first_ts: (u32, u32),
    /// Simulcast: each layer's bitrate in kbit/s, lowest first (at most 3; rids `q`, `h`,
    /// `f`; 0: declared in the offer but never sent). Empty: one layer at `video_kbps`. Each layer has its own SSRC, random-looking
    /// sequence and timestamp bases and (VP8) PictureID / TL0PICIDX.
    pub simulcast: Vec<u32>,
    /// Simulcast signalled as `a=ssrc-group:SIM` (the layers' SSRCs, lowest first) instead of
    /// rids, as older Firefox and SDP-munging libwebrtc clients do.
    pub ssrc_group: bool,
    /// Rewrites the offer's SDP before it is sent (bad-input tests).
    pub offer_edit: Option<fn(String) -> String>,
}

impl Default for Publish {
    fn default() -> Publish {
        Publish {
            codec: Codec::Vp8,
            fps: 30,
            video_kbps: 300,
            payload_size: 1200,
            gop: Some(Duration::from_secs(2)),
            answer_keyframe_requests: true,
            audio: true,
            first_seq: (1000, 5000),
            first_ts: (90_000, 48_000),
            simulcast: Vec::new(),
            ssrc_group: false,
            offer_edit: None,
        }
    }
}

/// One RTP packet as a viewer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Virtual arrival time.
    pub at: Instant,
    /// Audio or video.
    pub kind: MediaKind,
    /// SSRC.
    pub ssrc: u32,
    /// Sequence number, extended by str0m.
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// RTP marker.
    pub marker: bool,
    /// The first packet of a keyframe.
    pub keyframe: bool,
    /// A hash of the payload.
    pub payload_hash: u64,
    /// The publisher's send time from the payload trailer, µs of virtual time since the
    /// harness started.
    pub sent_us: Option<u64>,
    /// The simulcast layer the publisher sent it on (synthetic simulcast publishers only).
    pub layer: Option<u8>,
    /// VP8 PictureID and TL0PICIDX, when the payload descriptor has them.
    pub vp8_ids: Option<(u16, Option<u8>)>,
}

/// One packet to write: (kind, SSRC, payload type, sequence number, timestamp, payload,
/// marker).
type Write = (MediaKind, Ssrc, u8, u64, u32, Vec<u8>, bool);

pub(super) struct PubState {
    pub cfg: Publish,
    pub next_frame: Instant,
    pub next_audio: Instant,
    pub frame_no: u64,
    pub audio_no: u64,
    pub last_key: Option<Instant>,
    pub key_wanted: bool,
    pub tx: Option<(Ssrc, u8, Ssrc, u8)>,
    /// Simulcast: one SSRC per layer, lowest first.
    pub layer_tx: Vec<Ssrc>,
    /// Simulcast: packets sent per layer.
    pub layer_seq: Vec<u64>,
    pub vseq: u64,
    pub aseq: u64,
}

/// Who a new client peer is.
pub(super) struct Identity {
    pub id: PeerId,
    pub role: Role,
    pub show: Arc<str>,
    pub shard: usize,
    pub addr: SocketAddr,
}

pub(super) enum Kind {
    Publisher(Box<PubState>),
    Viewer,
}

/// A client peer.
pub struct Peer {
    /// Engine id of its server-side peer.
    pub id: PeerId,
    /// Publisher or viewer.
    pub role: Role,
    /// Show.
    pub show: Arc<str>,
    /// The shard it talks to.
    pub shard: usize,
    /// Its address.
    pub addr: SocketAddr,
    /// When it was added.
    pub created: Instant,
    /// When str0m reported `Connected`.
    pub connected_at: Option<Instant>,
    /// When the `events` channel opened.
    pub channel_at: Option<Instant>,
    /// Text received on the `events` channel, in order.
    pub texts: Vec<(Instant, String)>,
    /// Viewer: every RTP packet received.
    pub received: Vec<Received>,
    /// Publisher: keyframe requests (PLI/FIR) received.
    pub keyframe_requests: Vec<Instant>,
    /// Publisher: keyframes sent.
    pub keyframes_sent: Vec<Instant>,
    /// Publisher: video packets and audio packets sent.
    pub sent: (u64, u64),
    /// Publisher: the kind and payload hash of every packet sent, in order.
    pub sent_hashes: Vec<(MediaKind, u64)>,
    /// The peer stopped (closed, vanished, or str0m gave up).
    pub stopped: bool,
    pub(super) rtc: Rtc,
    pub(super) mids: Mids,
    pub(super) kind: Kind,
    pub(super) channel: Option<ChannelId>,
    pub(super) deadline: Instant,
    /// Send keyframe requests (PLI) to the server every this often (viewer).
    pub(super) pli_every: Option<(Duration, Instant)>,
    /// Sends no STUN binding requests and ignores its own ICE state, as libnice 0.1.21 does
    /// once a pair is nominated (GStreamer 1.22's webrtcbin enables no consent checks).
    pub(super) quiet_ice: bool,
}

impl Peer {
    pub(super) fn new(who: Identity, rtc: Rtc, mids: Mids, kind: Kind, now: Instant) -> Peer {
        let Identity {
            id,
            role,
            show,
            shard,
            addr,
        } = who;
        Peer {
            id,
            role,
            show,
            shard,
            addr,
            created: now,
            connected_at: None,
            channel_at: None,
            texts: Vec::new(),
            received: Vec::new(),
            keyframe_requests: Vec::new(),
            keyframes_sent: Vec::new(),
            sent: (0, 0),
            sent_hashes: Vec::new(),
            stopped: false,
            rtc,
            mids,
            kind,
            channel: None,
            deadline: now,
            pli_every: None,
            quiet_ice: false,
        }
    }

    /// Video packets received (viewer).
    pub fn video(&self) -> impl Iterator<Item = &Received> {
        self.received.iter().filter(|r| r.kind == MediaKind::Video)
    }

    /// Audio packets received (viewer).
    pub fn audio(&self) -> impl Iterator<Item = &Received> {
        self.received.iter().filter(|r| r.kind == MediaKind::Audio)
    }

    /// The first video packet received, if any.
    pub fn first_video(&self) -> Option<&Received> {
        self.video().next()
    }

    /// When this peer's next timer fires.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let mut d = self.deadline;
        if let Kind::Publisher(p) = &self.kind {
            if self.connected_at.is_some() {
                d = d.min(p.next_frame);
                if p.cfg.audio {
                    d = d.min(p.next_audio);
                }
            }
        }
        if let Some((_, at)) = self.pli_every {
            if self.connected_at.is_some() {
                d = d.min(at);
            }
        }
        Some(d)
    }

    /// Poll str0m until it times out; datagrams go to `out`.
    pub(super) fn drain(&mut self, now: Instant, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        loop {
            if !self.rtc.is_alive() {
                self.stopped = true;
                return;
            }
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    // A STUN binding request: message type 0x0001 and the magic cookie.
                    let c = &t.contents[..];
                    let check =
                        c.len() >= 20 && c[..2] == [0, 1] && c[4..8] == [0x21, 0x12, 0xa4, 0x42];
                    if !(self.quiet_ice && check) {
                        out.push((t.source, t.destination, t.contents.to_vec()))
                    }
                }
                Ok(Output::Timeout(t)) => {
                    self.deadline = t;
                    return;
                }
                Ok(Output::Event(e)) => self.on_event(now, e),
                Err(_) => {
                    self.stopped = true;
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => self.connected_at = Some(now),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.stopped |= !self.quiet_ice;
            }
            Event::KeyframeRequest(_) => {
                self.keyframe_requests.push(now);
                if let Kind::Publisher(p) = &mut self.kind {
                    if p.cfg.answer_keyframe_requests {
                        p.key_wanted = true;
                    }
                }
            }
            Event::ChannelOpen(cid, label) if label == EVENTS_LABEL => {
                self.channel = Some(cid);
                self.channel_at = Some(now);
            }
            Event::ChannelData(d) if Some(d.id) == self.channel => {
                self.texts
                    .push((now, String::from_utf8_lossy(&d.data).into_owned()));
            }
            Event::RtpPacket(pkt) => {
                let codec = client::codec_of(&self.rtc, *pkt.header.payload_type);
                let kind = if codec.is_some_and(Codec::is_video) {
                    MediaKind::Video
                } else {
                    MediaKind::Audio
                };
                let keyframe = codec.is_some_and(|c| is_keyframe_start(c, &pkt.payload));
                self.received.push(Received {
                    at: now,
                    kind,
                    ssrc: *pkt.header.ssrc,
                    seq: *pkt.seq_no,
                    ts: pkt.header.timestamp,
                    marker: pkt.header.marker,
                    keyframe,
                    payload_hash: hash(&pkt.payload),
                    sent_us: media::trailer(&pkt.payload),
                    layer: media::trailer_layer(&pkt.payload),
                    vp8_ids: (codec == Some(Codec::Vp8))
                        .then(|| str0m::rtp::Vp8Descriptor::parse(&pkt.payload).ok())
                        .flatten()
                        .and_then(|d| Some((d.picture_id()?, d.tl0_pic_idx()))),
                });
            }
            _ => {}
        }
    }

    /// Publisher: send what is due at `now`.
    pub(super) fn produce(&mut self, now: Instant, epoch: Instant) {
        if self.connected_at.is_none() || self.stopped {
            return;
        }
        let mids = self.mids;
        let Kind::Publisher(p) = &mut self.kind else {
            return;
        };
        if p.tx.is_none() {
            let vpt = client::pt_for(&self.rtc, mids.video, p.cfg.codec);
            let apt = client::pt_for(&self.rtc, mids.audio, Codec::Opus);
            let mut api = self.rtc.direct_api();
            let n = p.cfg.simulcast.len().min(client::RIDS.len());
            p.layer_tx = client::RIDS[..n]
                .iter()
                .filter_map(|r| {
                    api.stream_tx_by_mid(mids.video, Some((*r).into()))
                        .map(|s| s.ssrc())
                })
                .collect();
            let vs = match p.layer_tx.first() {
                Some(s) => Some(*s),
                None => api.stream_tx_by_mid(mids.video, None).map(|s| s.ssrc()),
            };
            let a_s = api.stream_tx_by_mid(mids.audio, None).map(|s| s.ssrc());
            match (vs, vpt, a_s, apt) {
                (Some(vs), Some(vpt), Some(a_s), Some(apt)) => p.tx = Some((vs, vpt, a_s, apt)),
                _ => return,
            }
        }
        let Some((vssrc, vpt, assrc, apt)) = p.tx else {
            return;
        };
        let sent_us = now.saturating_duration_since(epoch).as_micros() as u64;
        let mut writes: Vec<Write> = Vec::new();
        let fps = p.cfg.fps.max(1) as u64;
        let frame_iv = Duration::from_micros(1_000_000 / fps);
        while p.next_frame <= now {
            let key = match p.last_key {
                None => true,
                Some(t) => {
                    p.cfg.gop.is_some_and(|g| now.duration_since(t) >= g)
                        || (p.key_wanted && now.duration_since(t) >= Duration::from_millis(100))
                }
            };
            if key {
                p.last_key = Some(now);
                p.key_wanted = false;
                self.keyframes_sent.push(now);
            }
            let frame_ts = (p.frame_no * 90_000 / fps) as u32;
            if p.layer_tx.is_empty() {
                let delta = (p.cfg.video_kbps as usize * 1000 / 8 / fps as usize).max(200);
                let bytes = if key { delta * 3 } else { delta };
                let ts = p.cfg.first_ts.0.wrapping_add(frame_ts);
                for c in media::video_frame(p.cfg.codec, key, bytes, p.cfg.payload_size, p.frame_no)
                {
                    let mut payload = c.payload;
                    media::put_trailer(&mut payload, sent_us);
                    let seq = p.cfg.first_seq.0 + p.vseq;
                    writes.push((MediaKind::Video, vssrc, vpt, seq, ts, payload, c.last));
                    p.vseq += 1;
                    self.sent.0 += 1;
                }
            }
            for (l, &ssrc) in p.layer_tx.iter().enumerate() {
                // Every layer is a keyframe when one is: a PLI on any layer costs all three,
                // as with libwebrtc's simulcast encoders.
                let kbps = p.cfg.simulcast[l];
                if kbps == 0 {
                    // Declared in the offer, never sent (a paused or failed encoder).
                    continue;
                }
                let delta = (kbps as usize * 1000 / 8 / fps as usize).max(200);
                let bytes = if key { delta * 3 } else { delta };
                let (base, ts_base) = layer_base(l);
                let ts = p
                    .cfg
                    .first_ts
                    .0
                    .wrapping_add(ts_base)
                    .wrapping_add(frame_ts);
                let pid = (base as u64 + p.frame_no) as u16;
                let tl0 = (base as u64 + p.frame_no) as u8;
                let frame =
                    media::video_frame(p.cfg.codec, key, bytes, p.cfg.payload_size, p.frame_no);
                for (i, c) in frame.into_iter().enumerate() {
                    let mut payload = match p.cfg.codec {
                        Codec::Vp8 => media::vp8_with_ids(&c.payload, pid, tl0),
                        _ => c.payload,
                    };
                    media::put_trailer_layer(&mut payload, sent_us, l as u8);
                    let _ = i;
                    let n = p.layer_seq.get(l).copied().unwrap_or(0);
                    let seq = p.cfg.first_seq.0 + base as u64 + n;
                    if let Some(s) = p.layer_seq.get_mut(l) {
                        *s += 1;
                    }
                    writes.push((MediaKind::Video, ssrc, vpt, seq, ts, payload, c.last));
                    self.sent.0 += 1;
                }
            }
            p.frame_no += 1;
            p.next_frame += frame_iv;
        }
        while p.cfg.audio && p.next_audio <= now {
            let mut payload = media::opus_packet(160, p.audio_no);
            media::put_trailer(&mut payload, sent_us);
            let ts = p.cfg.first_ts.1.wrapping_add((p.audio_no * 960) as u32);
            let seq = p.cfg.first_seq.1 + p.aseq;
            writes.push((MediaKind::Audio, assrc, apt, seq, ts, payload, false));
            p.aseq += 1;
            p.audio_no += 1;
            self.sent.1 += 1;
            p.next_audio += Duration::from_millis(20);
        }
        for (kind, ssrc, pt, seq, ts, payload, marker) in writes {
            self.sent_hashes.push((kind, hash(&payload)));
            if let Some(tx) = self.rtc.direct_api().stream_tx(&ssrc) {
                tx.write_rtp(
                    RtpWrite::new(pt.into(), seq.into(), ts, now, payload)
                        .marker(marker)
                        .nackable(true),
                );
            }
        }
        // str0m releases written packets on its next timeout.
        self.deadline = now;
    }

    /// Viewer: send a PLI for the video track if one is due.
    pub(super) fn maybe_pli(&mut self, now: Instant) {
        let Some((every, at)) = self.pli_every else {
            return;
        };
        if self.connected_at.is_none() || at > now {
            return;
        }
        self.pli_every = Some((every, now + every));
        let mid = self.mids.video;
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
        self.deadline = now;
    }
}

/// A simulcast layer's offsets for its (sequence number and PictureID, timestamp) bases:
/// layer 0 starts where a single-layer publisher would, the others far from it (sequence
/// numbers within the first rollover: a receiver assumes ROC 0 for a new SSRC).
fn layer_base(layer: usize) -> (u32, u32) {
    [(0, 0), (20_011, 7_777_777), (40_009, 3_000_000_001)][layer.min(2)]
}

/// A stable payload hash for bit-exact comparisons (8 bytes at a time, FxHash-style, then
/// the length): cheap enough to run on every packet of a large scenario.
pub fn hash(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = 0u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    (h.rotate_left(5) ^ b.len() as u64).wrapping_mul(K)
}
