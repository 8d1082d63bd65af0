//! A shard: the sans-IO [`Core`] that owns peers and shows, and the thin [`run`] driver that
//! owns the UDP socket, the waker and the clock.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use str0m::change::SdpOffer;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, Input, Output, Rtc};
use tokio::sync::mpsc::UnboundedSender;

use super::codec::is_keyframe_start;
use super::forwarder::{self, Codec, Decision, Incoming, SourceMap, Track};
use super::keyframe::Gate;
use super::{AddPeer, Clock, Error, Event, MediaPacket, Msg, PeerId, Role, Target};
use crate::config::VideoCodec;
use crate::metrics::ShardMetrics;

/// mio token of the socket.
pub const SOCKET: mio::Token = mio::Token(0);
/// mio token of the waker.
pub const WAKER: mio::Token = mio::Token(1);

/// The label of the commerce data channel.
pub const EVENTS_LABEL: &str = "events";

/// The home shard of a show.
pub fn home_of(show: &str, shards: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    show.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// A way to reach another shard.
#[derive(Clone)]
pub struct Link {
    /// Message channel.
    pub tx: Sender<Msg>,
    /// Its waker.
    pub waker: Arc<mio::Waker>,
}

/// Static shard settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shard index.
    pub index: usize,
    /// Address announced in ICE candidates.
    pub announce: SocketAddr,
    /// Keyframe request throttle interval.
    pub keyframe_interval: Duration,
    /// ICE+DTLS must complete within this.
    pub connect_timeout: Duration,
    /// Peer cap.
    pub max_peers: usize,
    /// Start joining viewers from a cached keyframe at most this old (zero disables).
    pub keyframe_cache_age: Duration,
}

/// Where a cross-shard message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// One shard.
    Shard(usize),
    /// Every other shard.
    Others,
}

/// Show state on one shard.
struct LocalShow {
    viewers: Vec<usize>,
    publisher: Option<usize>,
    /// Present on the show's home shard.
    home: Option<Home>,
    /// Video packets since the last keyframe start (shared `Arc`s, no copies): a viewer that
    /// connects shortly after a keyframe starts from it at once instead of waiting for a PLI.
    gop: Vec<Arc<MediaPacket>>,
}

/// Most packets kept in a show's keyframe cache (≈ 2 s at 2.5 Mbit/s); beyond it caching
/// stops until the next keyframe.
const GOP_MAX_PACKETS: usize = 600;

/// Most broadcasts held for a peer until its greeting (snapshot) is sent.
const HELD_TEXT_MAX: usize = 256;

/// Delay between a viewer's `Connected` and its first media.
const VIEWER_SETTLE: Duration = Duration::from_millis(40);

/// The show state that lives on its home shard.
struct Home {
    audio: SourceMap,
    video: SourceMap,
    gate: Gate,
    clock: Arc<Clock>,
    video_codecs: Vec<VideoCodec>,
    /// Previous video packet (show seq, ts, marker) to find frame starts.
    prev_video: Option<(u64, u32, bool)>,
}

/// The shard's sans-IO core.
pub struct Core {
    s: Settings,
    metrics: ShardMetrics,
    peer_count: Arc<AtomicUsize>,
    events: UnboundedSender<Event>,
    peers: Vec<Option<Peer2>>,
    free: Vec<usize>,
    by_id: HashMap<PeerId, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Local ICE ufrag → peer: a STUN check from an address we have not seen (first contact,
    /// a second candidate pair, a network change) finds its peer here, never by a scan.
    by_ufrag: HashMap<String, usize>,
    shows: HashMap<Arc<str>, LocalShow>,
    epoch: Instant,
    /// Datagrams to send.
    pub transmits: Vec<str0m::net::Transmit>,
    /// Messages for other shards.
    pub outbox: Vec<(Dest, Msg)>,
    rtc_events: Vec<RtcEvent>,
}

type Peer2 = super::peer::Peer;

impl Core {
    /// A shard core.
    pub fn new(
        s: Settings,
        metrics: ShardMetrics,
        peer_count: Arc<AtomicUsize>,
        events: UnboundedSender<Event>,
    ) -> Core {
        Core {
            s,
            metrics,
            peer_count,
            events,
            peers: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            shows: HashMap::new(),
            epoch: Instant::now(),
            transmits: Vec::new(),
            outbox: Vec::new(),
            rtc_events: Vec::new(),
        }
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.by_id.len()
    }

    /// Handle a message from the control plane or another shard.
    pub fn handle_msg(&mut self, now: Instant, msg: Msg) {
        match msg {
            Msg::Add(add) => self.add_peer(now, *add),
            Msg::Remove(id, reply) => {
                let found = self.by_id.get(&id).copied();
                if let Some(idx) = found {
                    self.remove(now, idx, true);
                }
                let _ = reply.send(found.is_some());
            }
            Msg::Media(pkt) => self.fanout(now, &pkt),
            Msg::KeyframeWanted(show) => self.keyframe_wanted(now, &show),
            Msg::Text(target, text) => self.send_text(now, target, &text),
            Msg::Shutdown => self.shutdown(now),
        }
    }

    fn add_peer(&mut self, now: Instant, add: AddPeer) {
        let AddPeer {
            id,
            show,
            role,
            offer,
            reply,
        } = add;
        if self.by_id.len() >= self.s.max_peers {
            let _ = reply.send(Err(Error::Full));
            return;
        }
        let result = self.accept(now, id, &show, role, offer);
        match result {
            Ok((peer, answer)) => {
                let idx = match self.free.pop() {
                    Some(i) => {
                        self.peers[i] = Some(peer);
                        i
                    }
                    None => {
                        self.peers.push(Some(peer));
                        self.peers.len() - 1
                    }
                };
                self.by_id.insert(id, idx);
                if let Some(p) = self.peers[idx].as_mut() {
                    let ufrag = p.rtc.direct_api().local_ice_credentials().ufrag;
                    p.ufrag = ufrag.clone();
                    self.by_ufrag.insert(ufrag, idx);
                }
                let local = self
                    .shows
                    .entry(show.id.clone())
                    .or_insert_with(|| LocalShow {
                        viewers: Vec::new(),
                        publisher: None,
                        home: None,
                        gop: Vec::new(),
                    });
                match role {
                    Role::Publisher => {
                        local.publisher = Some(idx);
                        let home = local.home.get_or_insert_with(|| Home {
                            audio: SourceMap::new(48_000),
                            video: SourceMap::new(90_000),
                            gate: Gate::new(self.s.keyframe_interval),
                            clock: show.clock.clone(),
                            video_codecs: show.video_codecs.clone(),
                            prev_video: None,
                        });
                        home.gate.reset();
                        // Until this session's first sender report, seller events use the
                        // newest timestamp rather than the old session's capture clock.
                        home.clock.clear_sender_report();
                        home.video_codecs = show.video_codecs.clone();
                    }
                    Role::Viewer => local.viewers.push(idx),
                }
                self.peer_count.store(self.by_id.len(), Ordering::Relaxed);
                self.metrics.peers(role).inc();
                self.drain(now, idx);
                let _ = reply.send(Ok(answer));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn accept(
        &mut self,
        now: Instant,
        id: PeerId,
        show: &super::ShowSpec,
        role: Role,
        offer: SdpOffer,
    ) -> Result<(Peer2, String), Error> {
        let mut cfg = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            // Egress stats carry the NACK counts behind `hawker_media_nacks_total`.
            .set_stats_interval((role == Role::Viewer).then_some(Duration::from_secs(1)))
            .clear_codecs()
            .enable_opus(true, false);
        for c in &show.video_codecs {
            match c {
                VideoCodec::Vp8 => cfg = cfg.enable_vp8(true),
                VideoCodec::H264 => {
                    let cc = cfg.codec_config();
                    // packetization-mode 1 only; common profiles, with RTX.
                    for (pt, rtx, profile) in [
                        (108u8, 109u8, 0x42e01fu32),
                        (127, 121, 0x42001f),
                        (123, 119, 0x4d001f),
                        (114, 115, 0x64001f),
                    ] {
                        cc.add_h264(pt.into(), Some(rtx.into()), true, profile);
                    }
                }
            }
        }
        let mut rtc = cfg.build(now);
        let cand = Candidate::host(self.s.announce, "udp")
            .map_err(|e| Error::Offer(format!("bad announce address: {e}")))?;
        rtc.add_local_candidate(cand);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| Error::Offer(e.to_string()))?;
        // Check the negotiated media before anything flows.
        let mut video = false;
        let mut audio = false;
        let mut wanted_dir_ok = false;
        for m in answer.media_lines.iter() {
            let mid = m.mid();
            let Some(media) = rtc.media(mid) else {
                continue;
            };
            let usable = !media.remote_pts().is_empty();
            let dir = media.direction();
            let dir_ok = match role {
                Role::Publisher => matches!(dir, Direction::RecvOnly | Direction::SendRecv),
                Role::Viewer => matches!(dir, Direction::SendOnly | Direction::SendRecv),
            };
            wanted_dir_ok |= dir_ok && usable;
            match media.kind() {
                MediaKind::Video if usable => video = true,
                MediaKind::Audio if usable => audio = true,
                _ => {}
            }
        }
        if !video && !audio {
            let allowed: Vec<&str> = show.video_codecs.iter().map(|c| c.as_str()).collect();
            return Err(Error::NoCodec(format!(
                "this show takes {} video (h264 packetization-mode=1) and opus audio",
                allowed.join("/")
            )));
        }
        if !wanted_dir_ok {
            return Err(Error::Offer(match role {
                Role::Publisher => "a WHIP offer must send media (sendonly or sendrecv)".into(),
                Role::Viewer => "a WHEP offer must receive media (recvonly or sendrecv)".into(),
            }));
        }
        let mids: Vec<(str0m::media::Mid, MediaKind)> = answer
            .media_lines
            .iter()
            .filter_map(|m| rtc.media(m.mid()).map(|media| (m.mid(), media.kind())))
            .collect();
        let mut peer = Peer2::new(id, rtc, show.id.clone(), role, now);
        // Set tracks up now rather than on `MediaAdded`: str0m reports `Connected` first, and a
        // viewer must be able to take the keyframe cache the moment it connects.
        for (mid, kind) in mids {
            match (role, kind) {
                (Role::Viewer, MediaKind::Audio) => peer.add_out_track(mid, Track::Audio),
                (Role::Viewer, MediaKind::Video) => peer.add_out_track(mid, Track::Video),
                (Role::Publisher, MediaKind::Video) => peer.video_mid = Some(mid),
                _ => {}
            }
        }
        Ok((peer, answer.to_sdp_string()))
    }

    /// Handle one received datagram.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        local: SocketAddr,
        data: &[u8],
    ) {
        self.metrics.bytes_in.inc_by(data.len() as u64);
        let Ok(contents) = data.try_into() else {
            self.metrics.garbage.inc();
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents,
            },
        );
        let idx = match self.by_addr.get(&source) {
            Some(&i) => i,
            None => {
                let found = stun_local_ufrag(data)
                    .and_then(|u| std::str::from_utf8(u).ok())
                    .and_then(|u| self.by_ufrag.get(u).copied())
                    .filter(|&i| {
                        self.peers[i]
                            .as_ref()
                            .is_some_and(|p| p.rtc.accepts(&input))
                    });
                match found {
                    Some(i) => {
                        self.by_addr.insert(source, i);
                        if let Some(p) = self.peers[i].as_mut() {
                            p.addrs.push(source);
                        }
                        i
                    }
                    None => {
                        self.metrics.garbage.inc();
                        return;
                    }
                }
            }
        };
        let Some(peer) = self.peers[idx].as_mut() else {
            return;
        };
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(peer = peer.id, "input error: {e}");
            self.metrics.garbage.inc();
        }
        self.drain(now, idx);
    }

    /// Drive peers and gates whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        for idx in 0..self.peers.len() {
            let Some(p) = self.peers[idx].as_mut() else {
                continue;
            };
            if !p.connected && now.duration_since(p.created) > self.s.connect_timeout {
                tracing::info!(peer = p.id, "connect timeout");
                self.remove(now, idx, false);
                continue;
            }
            if p.start_at.is_some_and(|t| t <= now) {
                p.start_at = None;
                let show = p.show.clone();
                self.start_viewer(now, idx, &show);
            }
            let Some(p) = self.peers[idx].as_mut() else {
                continue;
            };
            if p.deadline <= now {
                let _ = p.rtc.handle_input(Input::Timeout(now));
                self.drain(now, idx);
            }
        }
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

    /// Earliest time [`Core::handle_timeout`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        let peers = self.peers.iter().flatten().map(|p| {
            let d = match p.start_at {
                Some(t) => p.deadline.min(t),
                None => p.deadline,
            };
            if p.connected {
                d
            } else {
                d.min(p.created + self.s.connect_timeout)
            }
        });
        let gates = self
            .shows
            .values()
            .filter_map(|s| s.home.as_ref().and_then(|h| h.gate.deadline()));
        peers.chain(gates).min()
    }

    /// Poll one peer until it times out, collecting transmits and handling events.
    fn drain(&mut self, now: Instant, idx: usize) {
        let mut events = std::mem::take(&mut self.rtc_events);
        let mut dead = false;
        if let Some(p) = self.peers[idx].as_mut() {
            loop {
                if !p.rtc.is_alive() {
                    dead = true;
                    break;
                }
                match p.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => self.transmits.push(t),
                    Ok(Output::Timeout(t)) => {
                        p.deadline = t;
                        // A remote close turns the peer dead inside poll_output and leaves a
                        // timeout a century away: notice it now, nothing else will.
                        dead = !p.rtc.is_alive();
                        break;
                    }
                    Ok(Output::Event(e)) => events.push(e),
                    Err(e) => {
                        tracing::debug!(peer = p.id, "poll error: {e}");
                        dead = true;
                        break;
                    }
                }
            }
        }
        for e in events.drain(..) {
            self.handle_rtc_event(now, idx, e);
        }
        self.rtc_events = events;
        if dead {
            self.remove(now, idx, false);
        }
    }

    fn handle_rtc_event(&mut self, now: Instant, idx: usize, e: RtcEvent) {
        let Some(p) = self.peers[idx].as_mut() else {
            return;
        };
        match e {
            RtcEvent::Connected => {
                p.connected = true;
                let (id, show, role) = (p.id, p.show.clone(), p.role);
                let _ = self.events.send(Event::Connected {
                    peer: id,
                    show: show.clone(),
                    role,
                });
                if role == Role::Viewer {
                    // The peer may not have its SRTP keys yet (our Connected can precede the
                    // client's processing of the last DTLS flight): media written now could be
                    // dropped, and a lost keyframe costs a whole GOP. Start shortly after.
                    p.start_at = Some(now + VIEWER_SETTLE);
                }
            }
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                p.rtc.disconnect();
            }
            RtcEvent::MediaAdded(m) => {
                // Normally already set up in `accept`; covers media added later.
                match (p.role, m.kind) {
                    (Role::Viewer, MediaKind::Audio) if p.audio.is_none() => {
                        p.add_out_track(m.mid, Track::Audio)
                    }
                    (Role::Viewer, MediaKind::Video) if p.video.is_none() => {
                        p.add_out_track(m.mid, Track::Video)
                    }
                    (Role::Publisher, MediaKind::Video) if p.video_mid.is_none() => {
                        p.video_mid = Some(m.mid)
                    }
                    _ => {}
                }
            }
            RtcEvent::Closed => {
                // The remote closed (DTLS close_notify): the peer is done.
                self.remove(now, idx, false);
            }
            RtcEvent::RtpPacket(pkt) if p.role == Role::Publisher => {
                self.publisher_packet(now, idx, pkt);
            }
            RtcEvent::KeyframeRequest(_) => {
                self.metrics.plis_from_viewers.inc();
                let show = p.show.clone();
                self.ask_keyframe(now, &show);
            }
            RtcEvent::ChannelOpen(cid, label) if label == EVENTS_LABEL => {
                p.channel = Some(cid);
                p.held_text = Some(Vec::new());
                let _ = self.events.send(Event::ChannelOpen {
                    peer: p.id,
                    show: p.show.clone(),
                    role: p.role,
                });
            }
            RtcEvent::ChannelData(d) if Some(d.id) == p.channel => {
                self.metrics.dc_messages_in.inc();
                let text = String::from_utf8_lossy(&d.data).into_owned();
                let _ = self.events.send(Event::Text {
                    peer: p.id,
                    show: p.show.clone(),
                    role: p.role,
                    text,
                });
            }
            RtcEvent::MediaEgressStats(st) => {
                let prev = p.nacks.iter_mut().find(|(m, _)| *m == st.mid);
                let delta = match prev {
                    Some((_, n)) => {
                        let d = st.nacks.saturating_sub(*n);
                        *n = st.nacks;
                        d
                    }
                    None => {
                        p.nacks.push((st.mid, st.nacks));
                        st.nacks
                    }
                };
                self.metrics.nacks.inc_by(delta);
            }
            RtcEvent::ChannelClose(cid) if Some(cid) == p.channel => {
                p.channel = None;
            }
            _ => {}
        }
    }

    fn publisher_packet(&mut self, now: Instant, idx: usize, pkt: RtpPacket) {
        let Some(p) = self.peers[idx].as_mut() else {
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
        let sr = pkt.last_sender_info;
        let mut new_sr = None;
        if track == Track::Video {
            if let Some(sr) = sr {
                if p.last_sr_ntp != Some(sr.ntp_time) {
                    p.last_sr_ntp = Some(sr.ntp_time);
                    new_sr = Some(sr);
                }
            }
        }
        let Some(home) = self.shows.get_mut(&show_id).and_then(|s| s.home.as_mut()) else {
            return;
        };
        if track == Track::Video
            && !home.video_codecs.iter().any(|c| {
                matches!(
                    (c, codec),
                    (VideoCodec::H264, Codec::H264) | (VideoCodec::Vp8, Codec::Vp8)
                )
            })
        {
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
        self.outbox.push((Dest::Others, Msg::Media(mp.clone())));
        self.fanout(now, &mp);
    }

    /// Write one show packet to every local viewer of the show.
    pub fn fanout(&mut self, now: Instant, mp: &Arc<MediaPacket>) {
        let Some(show) = self.shows.get_mut(&mp.show) else {
            return;
        };
        if mp.pkt.track == Track::Video && !self.s.keyframe_cache_age.is_zero() {
            if mp.pkt.keyframe_start {
                show.gop.clear();
            }
            if mp.pkt.keyframe_start || !show.gop.is_empty() {
                if show.gop.len() < GOP_MAX_PACKETS {
                    show.gop.push(mp.clone());
                } else {
                    show.gop.clear();
                }
            }
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

    /// A viewer just connected: replay the cached keyframe and what followed if it is recent,
    /// else ask the publisher for a keyframe (through the show's gate).
    fn start_viewer(&mut self, now: Instant, idx: usize, show: &Arc<str>) {
        let cached: Vec<Arc<MediaPacket>> = self
            .shows
            .get(show)
            .map(|s| s.gop.clone())
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
        let Some(p) = self.peers[idx].as_mut() else {
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

    fn ask_keyframe(&mut self, now: Instant, show: &Arc<str>) {
        // The home shard is the one with `home` state; others forward the wish there.
        if self.shows.get(show).is_some_and(|s| s.home.is_some()) {
            self.keyframe_wanted(now, show);
        } else {
            self.outbox
                .push((Dest::Others, Msg::KeyframeWanted(show.clone())));
        }
    }

    fn keyframe_wanted(&mut self, now: Instant, show: &Arc<str>) {
        let send = match self.shows.get_mut(show).and_then(|s| s.home.as_mut()) {
            Some(h) => h.gate.want(now),
            None => false,
        };
        if send {
            self.request_keyframe_from_publisher(show);
        }
    }

    fn request_keyframe_from_publisher(&mut self, show: &Arc<str>) {
        let Some(idx) = self.shows.get(show).and_then(|s| s.publisher) else {
            return;
        };
        let Some(p) = self.peers[idx].as_mut() else {
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

    fn send_text(&mut self, now: Instant, target: Target, text: &Arc<str>) {
        let (targets, greet): (Vec<usize>, bool) = match target {
            Target::Peer(id) => (self.by_id.get(&id).copied().into_iter().collect(), false),
            Target::Greet(id) => (self.by_id.get(&id).copied().into_iter().collect(), true),
            Target::Viewers(show) => (
                self.shows
                    .get(&show)
                    .map(|s| s.viewers.clone())
                    .unwrap_or_default(),
                false,
            ),
        };
        for idx in targets {
            let Some(p) = self.peers[idx].as_mut() else {
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

    fn remove(&mut self, now: Instant, idx: usize, graceful: bool) {
        let Some(mut p) = self.peers[idx].take() else {
            return;
        };
        if graceful {
            let _ = p.rtc.close();
            // Flush the close (DTLS close_notify, RTCP BYE).
            while let Ok(out) = p.rtc.poll_output() {
                match out {
                    Output::Transmit(t) => self.transmits.push(t),
                    Output::Timeout(_) => break,
                    Output::Event(_) => {}
                }
            }
        }
        p.rtc.disconnect();
        self.free.push(idx);
        self.by_id.remove(&p.id);
        for a in &p.addrs {
            self.by_addr.remove(a);
        }
        self.by_ufrag.remove(&p.ufrag);
        if let Some(s) = self.shows.get_mut(&p.show) {
            s.viewers.retain(|&i| i != idx);
            if s.publisher == Some(idx) {
                s.publisher = None;
            }
            if s.viewers.is_empty() && s.publisher.is_none() && s.home.is_none() {
                self.shows.remove(&p.show);
            }
        }
        self.peer_count.store(self.by_id.len(), Ordering::Relaxed);
        self.metrics.peers(p.role).dec();
        let _ = now;
        let _ = self.events.send(Event::Gone {
            peer: p.id,
            show: p.show.clone(),
            role: p.role,
        });
    }

    /// Close every peer.
    pub fn shutdown(&mut self, now: Instant) {
        for idx in 0..self.peers.len() {
            if self.peers[idx].is_some() {
                self.remove(now, idx, true);
            }
        }
    }
}

/// The local ufrag of a STUN binding request (the part of USERNAME before `:`), if `data` is
/// one. Only enough of RFC 8489 to route; str0m validates the message itself.
pub fn stun_local_ufrag(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 20 || data[0] & 0xC0 != 0 || data[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let ty = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let value = body.get(i + 4..i + 4 + alen)?;
        if ty == 0x0006 {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            return Some(&value[..end]);
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// The shard driver: owns the socket, reads the clock, moves bytes and messages.
pub fn run(
    mut core: Core,
    sock: std::net::UdpSocket,
    mut poll: mio::Poll,
    rx: Receiver<Msg>,
    shards: Vec<Link>,
) {
    let local = sock.local_addr().expect("bound socket has an address");
    let mut sock = mio::net::UdpSocket::from_std(sock);
    poll.registry()
        .register(&mut sock, SOCKET, mio::Interest::READABLE)
        .expect("register socket");
    let mut events = mio::Events::with_capacity(64);
    let mut buf = vec![0u8; 2048];
    let me = core.s.index;
    loop {
        let mut more = false;
        let mut stop = false;
        for _ in 0..1024 {
            match rx.try_recv() {
                Ok(Msg::Shutdown) => {
                    stop = true;
                    break;
                }
                Ok(msg) => core.handle_msg(Instant::now(), msg),
                Err(_) => break,
            }
        }
        if stop {
            core.shutdown(Instant::now());
            flush(&mut core, &sock, &shards, me);
            return;
        }
        for i in 0..256 {
            match sock.recv_from(&mut buf) {
                Ok((n, src)) => core.handle_datagram(Instant::now(), src, local, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!("recv error: {e}");
                    break;
                }
            }
            if i == 255 {
                more = true;
            }
        }
        let now = Instant::now();
        core.handle_timeout(now);
        flush(&mut core, &sock, &shards, me);
        if !rx.is_empty() {
            more = true;
        }
        let timeout = if more {
            Duration::ZERO
        } else {
            core.next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(100))
                .min(Duration::from_millis(100))
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!("poll failed: {e}");
                return;
            }
        }
    }
}

fn flush(core: &mut Core, sock: &mio::net::UdpSocket, shards: &[Link], me: usize) {
    if !core.transmits.is_empty() {
        // Counted once per flush, not per datagram.
        let bytes: usize = core.transmits.iter().map(|t| t.contents.len()).sum();
        core.metrics.packets_out.inc_by(core.transmits.len() as u64);
        core.metrics.bytes_out.inc_by(bytes as u64);
        let items: Vec<(SocketAddr, &[u8])> = core
            .transmits
            .iter()
            .map(|t| (t.destination, &t.contents[..]))
            .collect();
        let failed = super::sendmmsg::send_all(sock, &items);
        drop(items);
        if failed > 0 {
            core.metrics.send_errors.inc_by(failed as u64);
        }
        core.transmits.clear();
    }
    let mut woken = vec![false; shards.len()];
    for (dest, msg) in core.outbox.drain(..) {
        match dest {
            Dest::Shard(i) => {
                let _ = shards[i].tx.send(msg);
                woken[i] = true;
            }
            Dest::Others => {
                for (i, s) in shards.iter().enumerate() {
                    if i == me {
                        continue;
                    }
                    if let Some(m) = clone_msg(&msg) {
                        let _ = s.tx.send(m);
                        woken[i] = true;
                    }
                }
            }
        }
    }
    for (i, w) in woken.into_iter().enumerate() {
        if w {
            let _ = shards[i].waker.wake();
        }
    }
}

fn clone_msg(m: &Msg) -> Option<Msg> {
    match m {
        Msg::Media(p) => Some(Msg::Media(p.clone())),
        Msg::KeyframeWanted(s) => Some(Msg::KeyframeWanted(s.clone())),
        Msg::Text(t, s) => Some(Msg::Text(t.clone(), s.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ufrag_of_a_binding_request() {
        let user = b"abcd:wxyz";
        let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        // A SOFTWARE attribute first (padded), then USERNAME.
        let mut attrs = vec![0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c', 0];
        attrs.extend_from_slice(&[0x00, 0x06, 0x00, user.len() as u8]);
        attrs.extend_from_slice(user);
        attrs.extend_from_slice(&[0, 0, 0]);
        m[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&attrs);
        assert_eq!(stun_local_ufrag(&m), Some(&b"abcd"[..]));
        // Truncated, RTP-looking and garbage inputs are not STUN.
        assert_eq!(stun_local_ufrag(&m[..m.len() - 5]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        assert_eq!(stun_local_ufrag(b"hello"), None);
    }
}
