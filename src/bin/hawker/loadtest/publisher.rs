//! The synthetic publisher: one str0m client peer on its own thread that sends video frames at
//! a fixed rate and bitrate (keyframes every GOP and on PLI), Opus every 20 ms, and a seller
//! event (highlight, or chat when the show has no products) every `event_interval` on the
//! `events` channel. Every payload ends with its send time. With simulcast it sends up to three
//! layers (rids `q`, `h`, `f`, lowest first), each with its own SSRC, sequence numbers, RTP
//! timestamps and VP8 PictureIDs, all keyframes at once (as libwebrtc's encoders do), the
//! layer in the trailer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use parking_lot::Mutex;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use super::signal::{self, Req};
use hawker::codec::Codec;
use hawker::sim::client::{self, Mids, Offer};
use hawker::sim::media;

/// What the publisher sends.
#[derive(Debug, Clone)]
pub struct Config {
    /// `http(s)://host:port`.
    pub base: String,
    /// Show id.
    pub show: String,
    /// Publisher token.
    pub token: String,
    /// Video codec.
    pub codec: Codec,
    /// Video bitrate, kbit/s (keyframes included).
    pub video_kbps: u32,
    /// Frames per second.
    pub fps: u32,
    /// Largest RTP payload.
    pub payload_size: usize,
    /// Periodic keyframe interval (GOP).
    pub keyframe_interval: Duration,
    /// Opus packet size, bytes.
    pub audio_bytes: usize,
    /// Seller event period (zero: none).
    pub event_interval: Duration,
    /// Local IP for the media socket.
    pub local_ip: IpAddr,
    /// Spread a frame's packets at this multiple of the video bitrate, as libwebrtc's pacer
    /// does (2.5); 0 sends each frame as one burst (the worst case for an SFU).
    pub pacing_factor: f64,
    /// Simulcast layers' bitrates, kbit/s, lowest first (at most 3); empty: one layer at
    /// `video_kbps`.
    pub simulcast_kbps: Vec<u32>,
}

/// A simulcast layer's (sequence number and PictureID, RTP timestamp) offsets, so the layers
/// are told apart only by SSRC and rid, as a browser's are.
fn layer_base(layer: usize) -> (u64, u32) {
    [(0, 0), (20_011, 7_777_777), (40_009, 3_000_000_001)][layer.min(2)]
}

/// Shared between the publisher thread and the rest of the generator.
#[derive(Default)]
pub struct Shared {
    /// Stop sending.
    pub stop: AtomicBool,
    /// Video packets sent.
    pub video_packets: AtomicU64,
    /// Audio packets sent.
    pub audio_packets: AtomicU64,
    /// Keyframes sent.
    pub keyframes: AtomicU64,
    /// Keyframe requests (PLI/FIR) received.
    pub keyframe_requests: AtomicU64,
    /// Seller events sent.
    pub events_sent: AtomicU64,
    /// Seller events: key (`h:<capture_ms>` or `c:<text>`) → send time ([`media::wall_us`]).
    pub events: Mutex<HashMap<String, u64>>,
    /// Skus in the show's snapshot.
    pub skus: Mutex<Vec<String>>,
    /// Why it stopped early, if it did.
    pub error: Mutex<Option<String>>,
}

/// A connected publisher.
pub struct Running {
    /// The thread.
    pub thread: std::thread::JoinHandle<()>,
    /// WHIP session URL (for DELETE).
    pub session_url: Option<String>,
    /// The server's media address (from the answer's candidate).
    pub server_udp: Option<SocketAddr>,
}

/// First `a=candidate` UDP address in an SDP.
pub fn candidate_addr(sdp: &str) -> Option<SocketAddr> {
    sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=candidate:")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() >= 6 && f[2].eq_ignore_ascii_case("udp") {
            format!("{}:{}", f[4], f[5]).parse().ok()
        } else {
            None
        }
    })
}

/// Connect (WHIP, ICE, DTLS) and start streaming on a thread. Returns once media flows.
pub fn start(cfg: Config, http: signal::Handle, shared: Arc<Shared>) -> anyhow::Result<Running> {
    let sock = UdpSocket::bind(SocketAddr::new(cfg.local_ip, 0)).context("publisher socket")?;
    sock.set_nonblocking(true)?;
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(4 << 20);
    let local = sock.local_addr()?;
    let now = Instant::now();
    let offer_kind = match cfg.codec {
        Codec::H264 => Offer::H264,
        _ => Offer::Vp8,
    };
    let mut rtc = client::rtc(now, local, offer_kind);
    let layers = cfg.simulcast_kbps.len().min(client::RIDS.len());
    let (offer, pending, mids) = if layers > 0 {
        client::simulcast_offer(&mut rtc, &client::RIDS[..layers])
    } else {
        client::publisher_offer(&mut rtc)
    };
    let url = format!("{}/whip/{}", cfg.base.trim_end_matches('/'), cfg.show);
    let resp = http.call(Req::Post {
        url: url.clone(),
        token: Some(cfg.token.clone()),
        sdp: offer.to_sdp_string(),
    })?;
    if resp.status != 201 {
        bail!(
            "WHIP POST {url} returned HTTP {}: {}",
            resp.status,
            resp.body.trim()
        );
    }
    client::accept(&mut rtc, pending, &resp.body)?;
    let session_url = resp
        .location
        .as_deref()
        .map(|l| signal::absolute(&cfg.base, l));
    let server_udp = candidate_addr(&resp.body);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("loadtest-pub".into())
        .spawn(move || {
            let mut p = match Publisher::new(cfg, rtc, sock, local, mids, shared.clone()) {
                Ok(p) => p,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            if let Err(e) = p.run(ready_tx) {
                *shared.error.lock() = Some(format!("{e:#}"));
            }
        })?;
    match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => Ok(Running {
            thread,
            session_url,
            server_udp,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("publisher did not connect within 20 s (ICE/DTLS)"),
    }
}

struct Publisher {
    cfg: Config,
    rtc: Rtc,
    sock: mio::net::UdpSocket,
    local: SocketAddr,
    mids: Mids,
    shared: Arc<Shared>,
    poll: mio::Poll,
    deadline: Instant,
    connected: bool,
    channel: Option<ChannelId>,
    key_wanted: bool,
    tx: Option<(Ssrc, u8, Ssrc, u8)>,
    /// Simulcast: one SSRC per layer, lowest first.
    layer_tx: Vec<Ssrc>,
    dead: bool,
}

impl Publisher {
    fn new(
        cfg: Config,
        rtc: Rtc,
        sock: UdpSocket,
        local: SocketAddr,
        mids: Mids,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Publisher> {
        let poll = mio::Poll::new()?;
        let mut sock = mio::net::UdpSocket::from_std(sock);
        poll.registry()
            .register(&mut sock, mio::Token(0), mio::Interest::READABLE)?;
        Ok(Publisher {
            cfg,
            rtc,
            sock,
            local,
            mids,
            shared,
            poll,
            deadline: Instant::now(),
            connected: false,
            channel: None,
            key_wanted: false,
            tx: None,
            layer_tx: Vec::new(),
            dead: false,
        })
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Ok(Output::Timeout(t)) => {
                    self.deadline = t;
                    return;
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    *self.shared.error.lock() = Some(format!("publisher: {e}"));
                    self.dead = true;
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                *self.shared.error.lock() = Some("publisher: ICE disconnected".into());
                self.dead = true;
            }
            Event::KeyframeRequest(_) => {
                self.shared
                    .keyframe_requests
                    .fetch_add(1, Ordering::Relaxed);
                self.key_wanted = true;
            }
            Event::ChannelOpen(cid, label) if label == hawker::engine::EVENTS_LABEL => {
                self.channel = Some(cid)
            }
            Event::ChannelData(d) if Some(d.id) == self.channel => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&d.data) {
                    if v["type"] == "snapshot" {
                        let skus: Vec<String> = v["products"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|p| p["sku"].as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        *self.shared.skus.lock() = skus;
                    }
                }
            }
            _ => {}
        }
    }

    fn io(&mut self, until: Instant) {
        let mut events = mio::Events::with_capacity(16);
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                let _ = self.rtc.handle_input(Input::Timeout(now));
                self.drain();
            }
            let now = Instant::now();
            if now >= until || self.dead {
                return;
            }
            let wait = until.min(self.deadline).saturating_duration_since(now);
            let _ = self.poll.poll(&mut events, Some(wait));
            while let Ok((n, source)) = self.sock.recv_from(&mut buf) {
                let Ok(contents) = buf[..n].try_into() else {
                    continue;
                };
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.local,
                        contents,
                    },
                );
                let _ = self.rtc.handle_input(input);
                self.drain();
            }
        }
    }

    fn streams(&mut self) -> Option<(Ssrc, u8, Ssrc, u8)> {
        if self.tx.is_none() {
            let vc = self.cfg.codec;
            let vpt = client::pt_for(&self.rtc, self.mids.video, vc)?;
            let apt = client::pt_for(&self.rtc, self.mids.audio, Codec::Opus)?;
            let layers = self.cfg.simulcast_kbps.len().min(client::RIDS.len());
            let mut api = self.rtc.direct_api();
            self.layer_tx = client::RIDS[..layers]
                .iter()
                .filter_map(|r| {
                    api.stream_tx_by_mid(self.mids.video, Some((*r).into()))
                        .map(|s| s.ssrc())
                })
                .collect();
            if self.layer_tx.len() != layers {
                return None;
            }
            let vs = match self.layer_tx.first() {
                Some(s) => *s,
                None => api.stream_tx_by_mid(self.mids.video, None)?.ssrc(),
            };
            let a_s = api.stream_tx_by_mid(self.mids.audio, None)?.ssrc();
            self.tx = Some((vs, vpt, a_s, apt));
        }
        self.tx
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        ssrc: Ssrc,
        pt: u8,
        seq: u64,
        ts: u32,
        mut payload: Vec<u8>,
        marker: bool,
        layer: Option<u8>,
    ) {
        match layer {
            Some(l) => media::put_trailer_layer(&mut payload, media::wall_us(), l),
            None => media::put_trailer(&mut payload, media::wall_us()),
        }
        let now = Instant::now();
        if let Some(tx) = self.rtc.direct_api().stream_tx(&ssrc) {
            tx.write_rtp(
                RtpWrite::new(pt.into(), seq.into(), ts, now, payload)
                    .marker(marker)
                    .nackable(true),
            );
        }
        self.drain();
    }

    fn run(&mut self, ready: std::sync::mpsc::Sender<anyhow::Result<()>>) -> anyhow::Result<()> {
        // Connect.
        let t0 = Instant::now();
        while !self.connected {
            if self.dead || t0.elapsed() > Duration::from_secs(15) {
                let _ = ready.send(Err(anyhow::anyhow!(
                    "publisher did not connect (ICE/DTLS) within 15 s"
                )));
                return Ok(());
            }
            self.io(Instant::now() + Duration::from_millis(5));
        }
        let Some((vssrc, vpt, assrc, apt)) = self.streams() else {
            let _ = ready.send(Err(anyhow::anyhow!(
                "publisher: the answer accepted no usable video+audio payload type"
            )));
            return Ok(());
        };
        let fps = self.cfg.fps.max(1) as u64;
        let frame_iv = Duration::from_nanos(1_000_000_000 / fps);
        let gop_s = self.cfg.keyframe_interval.as_secs_f64().max(0.1);
        let frames_per_gop = (fps as f64 * gop_s).max(1.0);
        // A keyframe is ~4 delta frames: bytes/s = (frames_per_gop + 3) · delta / gop_s.
        // Per layer (one without simulcast): its kbit/s.
        let layer_kbps: Vec<u32> = if self.layer_tx.is_empty() {
            vec![self.cfg.video_kbps]
        } else {
            self.cfg.simulcast_kbps[..self.layer_tx.len()].to_vec()
        };
        let delta_bytes: Vec<usize> = layer_kbps
            .iter()
            .map(|&k| ((k as f64 * 1000.0 / 8.0) * gop_s / (frames_per_gop + 3.0)) as usize)
            .collect();
        let layer_ssrc: Vec<Ssrc> = if self.layer_tx.is_empty() {
            vec![vssrc]
        } else {
            self.layer_tx.clone()
        };
        let simulcast = !self.layer_tx.is_empty();
        let audio_iv = Duration::from_millis(20);
        let start = Instant::now();
        let (mut next_video, mut next_audio) = (start, start);
        let mut next_event = start + Duration::from_millis(500);
        let mut last_key: Option<Instant> = None;
        // Next sequence number per layer.
        let mut vseq: Vec<u64> = (0..layer_ssrc.len())
            .map(|l| 1000 + layer_base(l).0)
            .collect();
        let mut aseq = 5000u64;
        let (mut frame_no, mut audio_no) = (0u64, 0u64);
        let mut event_no = 0u64;
        let mut last_capture_ms = 0i64;
        // Paced video packets waiting for their send time: (due, layer, ts, payload, marker).
        let mut paced: std::collections::VecDeque<(Instant, usize, u32, Vec<u8>, bool)> =
            Default::default();
        let total_kbps: u32 = layer_kbps.iter().sum();
        let pace_bps = total_kbps as f64 * 1000.0 * self.cfg.pacing_factor;
        let _ = ready.send(Ok(()));
        while !self.shared.stop.load(Ordering::Relaxed) && !self.dead {
            let now = Instant::now();
            if now >= next_video {
                let key = match last_key {
                    None => true,
                    Some(t) => {
                        now.duration_since(t) >= self.cfg.keyframe_interval
                            || (self.key_wanted
                                && now.duration_since(t) >= Duration::from_millis(100))
                    }
                };
                if key {
                    last_key = Some(now);
                    self.key_wanted = false;
                    self.shared.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                let frame_ts = (frame_no * 90_000 / fps) as u32;
                // Leftovers of the previous frame go now (a pacer drains before a new frame).
                while let Some((_, l, pts, p, m)) = paced.pop_front() {
                    let layer = simulcast.then_some(l as u8);
                    self.send(layer_ssrc[l], vpt, vseq[l], pts, p, m, layer);
                    vseq[l] += 1;
                    self.shared.video_packets.fetch_add(1, Ordering::Relaxed);
                }
                let mut due = now;
                for (l, &delta) in delta_bytes.iter().enumerate() {
                    let bytes = if key { delta * 4 } else { delta };
                    let (base, ts_base) = layer_base(l);
                    let ts = frame_ts.wrapping_add(ts_base);
                    let chunks = media::video_frame(
                        self.cfg.codec,
                        key,
                        bytes,
                        self.cfg.payload_size,
                        frame_no,
                    );
                    for c in chunks {
                        let bits = (c.payload_len_hint() * 8) as f64;
                        let payload = match self.cfg.codec {
                            // Each layer its own PictureID and TL0PICIDX, as browsers send.
                            Codec::Vp8 if simulcast => {
                                let id = base + frame_no;
                                media::vp8_with_ids(&c.payload, (id & 0x7fff) as u16, id as u8)
                            }
                            _ => c.payload,
                        };
                        paced.push_back((due, l, ts, payload, c.last));
                        if pace_bps > 0.0 {
                            due += Duration::from_secs_f64(bits / pace_bps);
                        }
                    }
                }
                frame_no += 1;
                next_video += frame_iv;
                if next_video + frame_iv * 5 < now {
                    next_video = now + frame_iv; // fell far behind: do not burst to catch up
                }
            }
            while paced.front().is_some_and(|(d, ..)| *d <= Instant::now()) {
                let (_, l, pts, p, m) = paced.pop_front().expect("front exists");
                let layer = simulcast.then_some(l as u8);
                self.send(layer_ssrc[l], vpt, vseq[l], pts, p, m, layer);
                vseq[l] += 1;
                self.shared.video_packets.fetch_add(1, Ordering::Relaxed);
            }
            if now >= next_audio {
                let p = media::opus_packet(self.cfg.audio_bytes, audio_no);
                let ts = (audio_no * 960) as u32;
                self.send(assrc, apt, aseq, ts, p, false, None);
                aseq += 1;
                audio_no += 1;
                self.shared.audio_packets.fetch_add(1, Ordering::Relaxed);
                next_audio += audio_iv;
                if next_audio + audio_iv * 5 < now {
                    next_audio = now + audio_iv;
                }
            }
            if !self.cfg.event_interval.is_zero() && now >= next_event {
                next_event += self.cfg.event_interval;
                if let Some(cid) = self.channel {
                    let sku = {
                        let skus = self.shared.skus.lock();
                        (!skus.is_empty()).then(|| skus[event_no as usize % skus.len()].clone())
                    };
                    let capture_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or(0);
                    let (key, text) = match sku {
                        Some(sku) if capture_ms != last_capture_ms => {
                            last_capture_ms = capture_ms;
                            (
                                format!("h:{capture_ms}"),
                                serde_json::json!({"type": "highlight", "sku": sku,
                                                   "capture_ms": capture_ms})
                                .to_string(),
                            )
                        }
                        _ => {
                            let t = format!("lt:{event_no}");
                            (
                                format!("c:{t}"),
                                serde_json::json!({"type": "chat", "text": t}).to_string(),
                            )
                        }
                    };
                    event_no += 1;
                    self.shared.events.lock().insert(key, media::wall_us());
                    let ok = self
                        .rtc
                        .channel(cid)
                        .map(|mut c| c.write(false, text.as_bytes()).unwrap_or(false))
                        .unwrap_or(false);
                    if ok {
                        self.shared.events_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    self.drain();
                }
            }
            let until = next_video
                .min(next_audio)
                .min(if self.cfg.event_interval.is_zero() {
                    next_video
                } else {
                    next_event
                });
            self.io(until);
        }
        self.rtc.disconnect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_candidate() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40001 typ host\r\n";
        assert_eq!(
            candidate_addr(sdp),
            Some("127.0.0.1:40001".parse().unwrap())
        );
    }
}
