//! Peer lookup: the shard's table of peers (a `str0m::Rtc` each, plus what hawker tracks about
//! it), found by engine id, by source address, and, for a STUN check from an address not seen
//! before, by the local ICE ufrag. Never a scan.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::Input;

use str0m::channel::ChannelId;
use str0m::format::Codec as StrCodec;
use str0m::media::Mid;
use str0m::media::Rid;
use str0m::rtp::Ssrc;
use str0m::Rtc;

use super::stun;
use crate::engine::forwarder::{self, Codec, PtMap, Track};
use crate::engine::simulcast::{Quality, Select, INITIAL_ESTIMATE_BPS, MAX_LAYERS};
use crate::engine::{PeerId, Role};

/// Most video packets a viewer's RTX cache keeps for retransmission: 1 s of video up to
/// ≈ 4 Mbit/s at 1200 B payloads. str0m's default (2000 packets / 3 s) holds ≈ 600 packets at
/// 2.5 Mbit/s, ≈ 500 KiB per viewer, and a retransmission older than ~1 s arrives after the
/// frame it belongs to is due.
pub(super) const RTX_CACHE_PACKETS: usize = 400;

/// Oldest packet a viewer's RTX cache keeps (see [`RTX_CACHE_PACKETS`]).
pub(super) const RTX_CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a publisher's video packet is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ignored {
    /// Its rid is not one the offer declared.
    UnknownRid,
    /// A second SSRC for a rid that already has one.
    RidReused,
    /// An SSRC outside the offer's `ssrc-group:SIM`.
    UnknownSsrc,
}

impl Ignored {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::UnknownRid => "unknown_rid",
            Ignored::RidReused => "rid_reused",
            Ignored::UnknownSsrc => "unknown_ssrc",
        }
    }
}

/// An outgoing (viewer) track.
pub(super) struct OutTrack {
    pub ssrc: Ssrc,
    pub fwd: forwarder::Viewer,
}

/// One WebRTC peer on a shard.
pub(super) struct Peer {
    pub id: PeerId,
    pub rtc: Rtc,
    pub show: Arc<str>,
    pub role: Role,
    pub addrs: Vec<SocketAddr>,
    pub connected: bool,
    /// ICE succeeded (a check from the client got through); DTLS may still be under way.
    pub ice_done: bool,
    pub created: Instant,
    /// When a datagram from this peer last arrived.
    pub last_rx: Instant,
    /// str0m's ICE-lite agent reported `Disconnected` (no STUN check for 15 s) while the
    /// peer's other traffic still flowed: it stays until that traffic stops too
    /// ([`super::TRAFFIC_TIMEOUT`]).
    pub ice_lapsed: bool,
    /// When str0m wants `Input::Timeout` next.
    pub deadline: Instant,
    /// The `events` data channel, once open.
    pub channel: Option<ChannelId>,
    /// Publisher: payload type → codec, filled lazily from the negotiated parameters.
    pub codecs: HashMap<u8, Option<Codec>>,
    /// Publisher: the video media line, for keyframe requests.
    pub video_mid: Option<Mid>,
    /// Publisher: the negotiated simulcast rids (SDP order) and their layers; empty without
    /// simulcast.
    pub rids: Vec<(Rid, u8)>,
    /// Publisher: the SSRCs of an `a=ssrc-group:SIM` offer without rids (SSRC-signalled
    /// simulcast), lowest layer first; empty otherwise.
    pub sim_ssrcs: Vec<Ssrc>,
    /// Publisher: video SSRC → layer (`None`: ignored), learnt from the first packets.
    pub ssrc_layers: Vec<(Ssrc, Result<u8, Ignored>)>,
    /// Publisher: when its first video packet arrived, and whether its declared layers have
    /// been checked for ones that never started ([`super::SILENT_LAYER_AFTER`]).
    pub first_video: Option<Instant>,
    pub silent_checked: bool,
    /// Publisher: NTP time of the last sender report applied, per layer.
    pub last_sr_ntp: [Option<std::time::SystemTime>; MAX_LAYERS],
    /// Viewer: layer choice.
    pub select: Select,
    /// Viewer: quality cap.
    pub quality: Quality,
    /// Viewer: the latest bandwidth estimate, bits/s.
    pub estimate: u64,
    /// Viewer: when to re-evaluate the layer choice next.
    pub next_select: Option<Instant>,
    /// Viewer: the layer and layer count last told on `events` (the `layer` message).
    pub layer_told: Option<(u8, u8)>,
    /// Viewer: the (minimum, desired) last given to the BWE.
    pub probe: Option<(u64, u64)>,
    /// Viewer: outgoing tracks.
    pub video: Option<OutTrack>,
    pub audio: Option<OutTrack>,
    /// Viewer: negotiated payload types.
    pub pts: PtMap,
    /// Viewer: when to start sending media (set on connect).
    pub start_at: Option<Instant>,
    /// Broadcasts held until the `events` channel's greeting is sent (`None` once greeted).
    pub held_text: Option<Vec<Arc<str>>>,
    /// Local ICE ufrag (routing key for STUN from new addresses).
    pub ufrag: String,
    /// Viewer: NACKs received so far per media line (str0m reports running totals).
    pub nacks: Vec<(Mid, u64)>,
    /// Inbound data-channel size and rate check.
    pub guard: super::inbound::Guard,
}

impl Peer {
    pub fn new(id: PeerId, rtc: Rtc, show: Arc<str>, role: Role, now: Instant) -> Peer {
        Peer {
            id,
            rtc,
            show,
            role,
            addrs: Vec::new(),
            connected: false,
            ice_done: false,
            created: now,
            last_rx: now,
            ice_lapsed: false,
            deadline: now,
            channel: None,
            guard: super::inbound::Guard::new(now),
            codecs: HashMap::new(),
            video_mid: None,
            rids: Vec::new(),
            ssrc_layers: Vec::new(),
            sim_ssrcs: Vec::new(),
            last_sr_ntp: [None; MAX_LAYERS],
            first_video: None,
            silent_checked: false,
            select: Select::default(),
            quality: Quality::Auto,
            estimate: INITIAL_ESTIMATE_BPS,
            next_select: None,
            layer_told: None,
            probe: None,
            video: None,
            audio: None,
            pts: PtMap::default(),
            nacks: Vec::new(),
            ufrag: String::new(),
            start_at: None,
            held_text: None,
        }
    }

    /// Whether the publisher negotiated simulcast.
    pub fn is_simulcast(&self) -> bool {
        !self.rids.is_empty() || !self.sim_ssrcs.is_empty()
    }

    /// The layer of an incoming video SSRC (publisher side): from the rid str0m mapped the
    /// SSRC to (rids travel only on the first packets of a stream), remembered.
    /// With `ssrc-group:SIM` signalling the layer is the SSRC's place in the group.
    pub fn layer_of(&mut self, ssrc: Ssrc) -> Result<u8, Ignored> {
        if !self.is_simulcast() {
            return Ok(0);
        }
        if let Some((_, l)) = self.ssrc_layers.iter().find(|(s, _)| *s == ssrc) {
            return *l;
        }
        let res = if self.sim_ssrcs.is_empty() {
            let rid = self.rtc.direct_api().stream_rx(&ssrc).and_then(|s| s.rid());
            let layer = rid.and_then(|r| self.rids.iter().find(|(x, _)| *x == r).map(|(_, l)| *l));
            match layer {
                None => Err(Ignored::UnknownRid),
                Some(l) if self.ssrc_layers.iter().any(|(_, x)| *x == Ok(l)) => {
                    Err(Ignored::RidReused)
                }
                Some(l) => Ok(l),
            }
        } else {
            match self.sim_ssrcs.iter().position(|s| *s == ssrc) {
                Some(i) => Ok(i as u8),
                None => Err(Ignored::UnknownSsrc),
            }
        };
        // Bounded: a publisher cycling through SSRCs cannot grow this without end.
        if self.ssrc_layers.len() < 16 {
            self.ssrc_layers.push((ssrc, res));
        }
        res
    }

    /// The rids of declared layers that have not sent a packet yet (publisher side).
    /// (Their rids, or `ssrc:N` for `ssrc-group:SIM` layers.)
    pub fn silent_layers(&self) -> Vec<String> {
        let seen = |l: u8| self.ssrc_layers.iter().any(|(_, x)| *x == Ok(l));
        let by_rid = self
            .rids
            .iter()
            .filter(|(_, l)| !seen(*l))
            .map(|(r, _)| r.to_string());
        let by_ssrc = self
            .sim_ssrcs
            .iter()
            .enumerate()
            .filter(|(i, _)| !seen(*i as u8))
            .map(|(_, s)| format!("ssrc:{s}"));
        by_rid.chain(by_ssrc).collect()
    }

    /// The SSRC a layer arrives on, once seen (publisher side).
    pub fn layer_ssrc(&self, layer: u8) -> Option<Ssrc> {
        self.ssrc_layers
            .iter()
            .find(|(_, l)| *l == Ok(layer))
            .map(|(s, _)| *s)
    }

    /// The codec of an incoming payload type (publisher side).
    pub fn codec_of(&mut self, pt: u8) -> Option<Codec> {
        if let Some(c) = self.codecs.get(&pt) {
            return *c;
        }
        let c = self
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| *p.pt() == pt)
            .and_then(|p| map_codec(p.spec().codec, p.spec().format.packetization_mode));
        self.codecs.insert(pt, c);
        c
    }

    /// Set up an outgoing track after negotiation (viewer side).
    pub fn add_out_track(&mut self, mid: Mid, track: Track) {
        let Some(ssrc) = self.rtc.direct_api().stream_tx_by_mid(mid, None).map(|s| {
            if track == Track::Video {
                // The ratio cap stays str0m's default: BWE probes pad with cached packets.
                s.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(0.15));
                // Video stays paced: with BWE on, str0m paces it at 1.1 × the estimate
                // (from `INITIAL_ESTIMATE_BPS`), which holds a 2.5 Mbit/s layer back for
                // seconds until the estimate catches up (docs/performance.md). Unpaced,
                // it leaves at once, but str0m then picks between audio and video queued
                // at one instant in hash order, and the harness's runs stop being
                // reproducible from their seed.
            }
            s.ssrc()
        }) else {
            return;
        };
        let remote: Vec<u8> = self
            .rtc
            .media(mid)
            .map(|m| m.remote_pts().iter().map(|p| **p).collect())
            .unwrap_or_default();
        let params = self.rtc.codec_config().params().to_vec();
        let mut h264_pick: Option<(u8, bool)> = None;
        for pt in remote {
            let Some(p) = params.iter().find(|p| *p.pt() == pt) else {
                continue;
            };
            let spec = p.spec();
            match map_codec(spec.codec, spec.format.packetization_mode) {
                Some(Codec::Opus) if self.pts.opus.is_none() => self.pts.opus = Some(pt),
                Some(Codec::Vp8) if self.pts.vp8.is_none() => self.pts.vp8 = Some(pt),
                Some(Codec::H264) => {
                    // Prefer constrained baseline, the profile browsers and OBS publish.
                    let cb = spec.format.profile_level_id == Some(0x42e01f);
                    match h264_pick {
                        None => h264_pick = Some((pt, cb)),
                        Some((_, false)) if cb => h264_pick = Some((pt, cb)),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if let Some((pt, _)) = h264_pick {
            self.pts.h264 = Some(pt);
        }
        let out = OutTrack {
            ssrc,
            fwd: forwarder::Viewer::new(),
        };
        match track {
            Track::Audio => self.audio = Some(out),
            Track::Video => self.video = Some(out),
        }
    }
}

fn map_codec(c: StrCodec, packetization_mode: Option<u8>) -> Option<Codec> {
    match c {
        StrCodec::Opus => Some(Codec::Opus),
        StrCodec::Vp8 => Some(Codec::Vp8),
        StrCodec::H264 if packetization_mode == Some(1) => Some(Codec::H264),
        _ => None,
    }
}

/// The shard's peers, in slots that are reused; a slot index is stable for a peer's life.
#[derive(Default)]
pub(super) struct Peers {
    slots: Vec<Option<Peer>>,
    free: Vec<usize>,
    by_id: HashMap<PeerId, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Local ICE ufrag → slot: a STUN check from an address we have not seen (first contact,
    /// a second candidate pair, a network change) finds its peer here.
    by_ufrag: HashMap<String, usize>,
}

impl Peers {
    /// Number of peers.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Number of slots (an upper bound for slot indexes).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Put a peer in a free slot and index it by id and local ufrag.
    pub fn insert(&mut self, mut peer: Peer) -> usize {
        peer.ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
        let (id, ufrag) = (peer.id, peer.ufrag.clone());
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(peer);
                i
            }
            None => {
                self.slots.push(Some(peer));
                self.slots.len() - 1
            }
        };
        self.by_id.insert(id, idx);
        self.by_ufrag.insert(ufrag, idx);
        idx
    }

    /// Take a peer out of its slot and out of every index.
    pub fn remove(&mut self, idx: usize) -> Option<Peer> {
        let p = self.slots.get_mut(idx)?.take()?;
        self.free.push(idx);
        self.by_id.remove(&p.id);
        for a in &p.addrs {
            self.by_addr.remove(a);
        }
        self.by_ufrag.remove(&p.ufrag);
        Some(p)
    }

    /// The slot of a peer by engine id.
    pub fn slot_of(&self, id: PeerId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The peer in a slot, mutably.
    pub fn get_mut(&mut self, idx: usize) -> Option<&mut Peer> {
        self.slots.get_mut(idx).and_then(Option::as_mut)
    }

    /// Every peer.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.slots.iter().flatten()
    }

    /// The slot a datagram from `source` belongs to: by address, else (a STUN check from a new
    /// address) by the local ufrag in its USERNAME, confirmed by `Rtc::accepts`; the address is
    /// then remembered. `None`: nobody's.
    pub fn route(&mut self, source: SocketAddr, data: &[u8], input: &Input) -> Option<usize> {
        if let Some(&i) = self.by_addr.get(&source) {
            return Some(i);
        }
        let i = stun::local_ufrag(data)
            .and_then(|u| std::str::from_utf8(u).ok())
            .and_then(|u| self.by_ufrag.get(u).copied())?;
        let p = self.slots[i].as_mut()?;
        if !p.rtc.accepts(input) {
            return None;
        }
        p.addrs.push(source);
        self.by_addr.insert(source, i);
        Some(i)
    }
}
