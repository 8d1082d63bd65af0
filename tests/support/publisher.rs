//! WHIP test publisher: sendonly video + Opus over webrtc-rs, hand-built RTP, full send log.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use parking_lot::Mutex;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};
use webrtc::rtp_transceiver::RtpTransceiver;

use super::payload::{self, PayloadTag};
use super::peer::{self, PeerConfig, MID_EXT_URI};
use super::session::{self, Session};
use super::{MediaKind, VideoCodec, DEFAULT_CONNECT_TIMEOUT};

static NEXT_PUBLISHER_ID: AtomicU32 = AtomicU32::new(1);

/// Options for [`Publisher::connect`].
#[derive(Debug, Clone)]
pub struct PublisherOpts {
    /// Video codec to offer (only this one is offered). Default VP8.
    pub video_codec: VideoCodec,
    /// Offer a sendonly Opus track. Default `true`.
    pub audio: bool,
    /// Create the reliable, ordered `"events"` data channel. Default `false`.
    pub data_channel: bool,
    /// Slice / partition packets per video frame (≥ 1). Default 1.
    pub packets_per_frame: u16,
    /// Target payload size of each RTP packet in bytes. Default 200.
    pub packet_len: usize,
    /// H.264 keyframes start with a STAP-A carrying SPS + PPS. Default `true`.
    pub h264_param_sets: bool,
    /// [`Publisher::start_streaming`] sends a keyframe every N frames (besides the first frame
    /// and requested ones). Default `None`: only the first frame and on request.
    pub keyframe_interval: Option<u32>,
    /// Answer PLI / FIR with a keyframe: the next streamed frame is a keyframe, or, when not
    /// streaming, one is sent right away. Default `true`.
    pub answer_keyframe_requests: bool,
    /// Put the negotiated MID header extension on every packet (as browsers do). Default `true`.
    pub mid_extension: bool,
    /// Use webrtc-rs's default interceptors (NACK responder, sender reports, ...). Default `true`.
    pub default_interceptors: bool,
    /// First RTP sequence number of both tracks. Default 1000.
    pub initial_seq: u16,
    /// First RTP timestamp of both tracks. Default 10 000.
    pub initial_timestamp: u32,
    /// Bound for HTTP + ICE + DTLS (+ data channel open). Default 10 s.
    pub connect_timeout: Duration,
    /// Have `connect` wait for `Connected` (and the data channel to open). Default `true`.
    pub wait_connected: bool,
    /// Present an RSA-2048 DTLS certificate (as GStreamer does). Default `false` (ECDSA).
    pub rsa_certificate: bool,
    /// DTLS cipher suites offered; empty (the default): webrtc-rs's default set.
    pub dtls_cipher_suites: Vec<rtc::dtls::cipher_suite::CipherSuiteId>,
}

impl Default for PublisherOpts {
    fn default() -> Self {
        PublisherOpts {
            video_codec: VideoCodec::Vp8,
            audio: true,
            data_channel: false,
            packets_per_frame: 1,
            packet_len: 200,
            h264_param_sets: true,
            keyframe_interval: None,
            answer_keyframe_requests: true,
            mid_extension: true,
            default_interceptors: true,
            initial_seq: 1000,
            initial_timestamp: 10_000,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            wait_connected: true,
            rsa_certificate: false,
            dtls_cipher_suites: Vec::new(),
        }
    }
}

impl PublisherOpts {
    /// Default options with H.264 video.
    pub fn h264() -> Self {
        PublisherOpts {
            video_codec: VideoCodec::H264,
            ..Default::default()
        }
    }

    /// Default options plus the `"events"` data channel.
    pub fn with_data_channel(mut self) -> Self {
        self.data_channel = true;
        self
    }
}

/// One RTP packet handed to webrtc-rs by a [`Publisher`].
#[derive(Debug, Clone)]
pub struct SentPacket {
    /// Track.
    pub kind: MediaKind,
    /// SSRC as sent.
    pub ssrc: u32,
    /// Sequence number as sent.
    pub seq: u16,
    /// RTP timestamp as sent.
    pub timestamp: u32,
    /// Payload type as sent (the negotiated one).
    pub payload_type: u8,
    /// Marker bit (last packet of a video frame).
    pub marker: bool,
    /// The packet belongs to a keyframe (video only).
    pub keyframe: bool,
    /// Video frame index / audio packet index (same as `tag.index` for generated payloads).
    pub index: u64,
    /// Tag embedded in the payload (`None` for raw payloads without one).
    pub tag: Option<PayloadTag>,
    /// The payload.
    pub payload: Bytes,
    /// SHA-256 of the payload.
    pub payload_sha256: [u8; 32],
    /// When it was handed to webrtc-rs.
    pub sent_at: Instant,
}

struct OutTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    mid_ext: Option<(u8, Bytes)>,
    state: tokio::sync::Mutex<SeqState>,
}

struct SeqState {
    seq: u16,
    timestamp: u32,
    index: u64,
    ticks_per_frame: u32,
}

struct Inner {
    id: u32,
    opts: PublisherOpts,
    session: Session,
    video: OutTrack,
    audio: Option<OutTrack>,
    log: Mutex<Vec<SentPacket>>,
    plis: AtomicU64,
    firs: AtomicU64,
    keyframe_pending: AtomicBool,
    streaming: AtomicBool,
    stream_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A WHIP publisher. See the [module docs](super).
pub struct Publisher {
    inner: Arc<Inner>,
}

impl Publisher {
    /// Connects to `whip_url` with `Authorization: Bearer <token>` (no header if `token` is
    /// empty).
    ///
    /// Returns once the peer connection is `Connected` (and the data channel open, if
    /// requested) unless `opts.wait_connected` is `false`. A non-201 answer yields a
    /// [`super::SignalError`].
    pub async fn connect(
        whip_url: &str,
        token: &str,
        opts: PublisherOpts,
    ) -> anyhow::Result<Publisher> {
        let token = (!token.is_empty()).then_some(token);
        let id = NEXT_PUBLISHER_ID.fetch_add(1, Ordering::Relaxed);
        let (pc, events) = peer::build_peer(&PeerConfig {
            video_codecs: vec![opts.video_codec],
            default_interceptors: opts.default_interceptors,
            keyframe_requests_to_app: true,
            rsa_certificate: opts.rsa_certificate,
            dtls_cipher_suites: opts.dtls_cipher_suites.clone(),
        })
        .await?;

        let stream_id = format!("hawker-test-publisher-{id}");
        let video_ssrc = 0x1000_0000 | (id << 8) | 1;
        let audio_ssrc = 0x1000_0000 | (id << 8) | 2;
        let video_track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream_id.clone(),
            format!("{stream_id}-video"),
            "video".to_owned(),
            RtpCodecKind::Video,
            vec![encoding(
                video_ssrc,
                peer::video_rtp_codec(opts.video_codec),
            )],
        )));
        let video_tr = add_sendonly(&pc, &video_track, &stream_id).await?;
        let audio = if opts.audio {
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                stream_id.clone(),
                format!("{stream_id}-audio"),
                "audio".to_owned(),
                RtpCodecKind::Audio,
                vec![encoding(audio_ssrc, peer::opus_rtp_codec())],
            )));
            let tr = add_sendonly(&pc, &track, &stream_id).await?;
            Some((track, tr))
        } else {
            None
        };
        let dc = if opts.data_channel {
            Some(session::create_events_channel(&pc).await?)
        } else {
            None
        };

        let (changed, _) = watch::channel(0u64);
        let (session, _events) = Session::establish(
            pc,
            events,
            dc,
            whip_url,
            token,
            opts.connect_timeout,
            opts.wait_connected,
            changed,
        )
        .await?;

        let video = out_track(video_track, video_ssrc, &video_tr, &opts, 90_000 / 30).await?;
        let audio = match audio {
            Some((track, tr)) => Some(out_track(track, audio_ssrc, &tr, &opts, 960).await?),
            None => None,
        };

        let inner = Arc::new(Inner {
            id,
            opts,
            session,
            video,
            audio,
            log: Mutex::new(Vec::new()),
            plis: AtomicU64::new(0),
            firs: AtomicU64::new(0),
            keyframe_pending: AtomicBool::new(false),
            streaming: AtomicBool::new(false),
            stream_tasks: Mutex::new(Vec::new()),
        });
        let rtcp_task = tokio::spawn(rtcp_reader(
            Arc::downgrade(&inner),
            inner.video.track.clone(),
        ));
        inner.session.spawn(rtcp_task);
        Ok(Publisher { inner })
    }

    /// Process-unique id embedded in every payload tag.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The session resource URL (`Location`, resolved).
    pub fn location(&self) -> &str {
        self.inner.session.negotiated.location.as_str()
    }

    /// `ETag` of the session resource, if the server sent one.
    pub fn etag(&self) -> Option<&str> {
        self.inner.session.negotiated.etag.as_deref()
    }

    /// The SDP offer that was POSTed.
    pub fn offer_sdp(&self) -> &str {
        &self.inner.session.offer
    }

    /// The SDP answer received.
    pub fn answer_sdp(&self) -> &str {
        &self.inner.session.negotiated.answer
    }

    /// Current peer connection state.
    pub fn state(&self) -> RTCPeerConnectionState {
        self.inner.session.state()
    }

    /// Waits for `Connected` (useful with `opts.wait_connected = false`).
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner.session.wait_connected(timeout).await
    }

    /// Waits until the peer connection leaves `Connected`/`Connecting`/`New` (e.g. the server
    /// dropped the session); returns the state reached.
    pub async fn wait_disconnected(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<RTCPeerConnectionState> {
        let mut rx = self.inner.session.state.clone();
        let state = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Disconnected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await
        .map_err(|_| anyhow::anyhow!("publisher still connected after {timeout:?}"))??
        .to_owned();
        Ok(state)
    }

    /// When the peer connection reached `Connected` (if `connect` waited for it).
    pub fn connected_at(&self) -> Option<Instant> {
        *self.inner.session.connected_at.lock()
    }

    /// The underlying webrtc-rs peer connection.
    pub fn peer_connection(&self) -> Arc<dyn PeerConnection> {
        self.inner.session.pc.clone()
    }

    /// SSRC of the video track.
    pub fn video_ssrc(&self) -> u32 {
        self.inner.video.ssrc
    }

    /// SSRC of the audio track, if any.
    pub fn audio_ssrc(&self) -> Option<u32> {
        self.inner.audio.as_ref().map(|a| a.ssrc)
    }

    /// Negotiated payload type of `kind`, if that track exists.
    pub fn payload_type(&self, kind: MediaKind) -> Option<u8> {
        match kind {
            MediaKind::Video => Some(self.inner.video.payload_type),
            MediaKind::Audio => self.inner.audio.as_ref().map(|a| a.payload_type),
        }
    }

    /// Sends one video frame (`opts.packets_per_frame` packets, plus a STAP-A for H.264
    /// keyframes with `opts.h264_param_sets`). Payloads are a deterministic function of
    /// (publisher id, frame index, `payload_seed`, part). Returns the packets sent.
    pub async fn send_video_frame(
        &self,
        keyframe: bool,
        payload_seed: u32,
    ) -> anyhow::Result<Vec<SentPacket>> {
        self.inner.send_video_frame(keyframe, payload_seed).await
    }

    /// Sends a video frame made of caller-supplied payloads (marker on the last one).
    pub async fn send_video_raw(
        &self,
        payloads: Vec<Bytes>,
        keyframe: bool,
    ) -> anyhow::Result<Vec<SentPacket>> {
        let inner = &self.inner;
        let mut st = inner.video.state.lock().await;
        let index = st.index;
        st.index += 1;
        inner
            .send_frame_locked(
                &inner.video,
                &mut st,
                MediaKind::Video,
                payloads,
                keyframe,
                index,
                None,
            )
            .await
    }

    /// Sends one Opus packet with a distinct, deterministic payload; timestamp advances 960.
    pub async fn send_audio_packet(&self, payload_seed: u32) -> anyhow::Result<SentPacket> {
        self.inner.send_audio_packet(payload_seed, None).await
    }

    /// Sends one Opus-PT packet with an arbitrary payload.
    pub async fn send_audio_raw(&self, payload: Bytes) -> anyhow::Result<SentPacket> {
        self.inner.send_audio_packet(0, Some(payload)).await
    }

    /// Starts background streaming: video at `fps` (first frame and requested frames are
    /// keyframes, plus every `opts.keyframe_interval` frames) and, with audio, one Opus packet
    /// per 20 ms. Restarts if already streaming.
    pub fn start_streaming(&self, fps: u32) {
        self.stop_streaming();
        let fps = fps.max(1);
        let inner = self.inner.clone();
        inner.streaming.store(true, Ordering::SeqCst);
        let weak = Arc::downgrade(&inner);
        let video = tokio::spawn(async move {
            if let Some(inner) = weak.upgrade() {
                inner.video.state.lock().await.ticks_per_frame = 90_000 / fps;
            }
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(fps)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let periodic = inner
                    .opts
                    .keyframe_interval
                    .is_some_and(|k| k > 0 && n.is_multiple_of(u64::from(k)));
                let key = n == 0 || periodic || inner.keyframe_pending.load(Ordering::SeqCst);
                if inner.send_video_frame(key, n as u32).await.is_err() {
                    break;
                }
                n += 1;
            }
        });
        let mut tasks = vec![video];
        if inner.audio.is_some() {
            let weak = Arc::downgrade(&inner);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n: u32 = 0;
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    if inner.send_audio_packet(n, None).await.is_err() {
                        break;
                    }
                    n = n.wrapping_add(1);
                }
            }));
        }
        *inner.stream_tasks.lock() = tasks;
    }

    /// Stops background streaming (no-op if not streaming).
    pub fn stop_streaming(&self) {
        self.inner.streaming.store(false, Ordering::SeqCst);
        for t in self.inner.stream_tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// PLI + FIR packets received from the server.
    pub fn keyframe_requests(&self) -> u64 {
        self.plis_received() + self.firs_received()
    }

    /// PLI packets received.
    pub fn plis_received(&self) -> u64 {
        self.inner.plis.load(Ordering::SeqCst)
    }

    /// FIR packets received.
    pub fn firs_received(&self) -> u64 {
        self.inner.firs.load(Ordering::SeqCst)
    }

    /// Every packet sent so far, in order.
    pub fn sent_all(&self) -> Vec<SentPacket> {
        self.inner.log.lock().clone()
    }

    /// Packets sent on `kind`, in order.
    pub fn sent(&self, kind: MediaKind) -> Vec<SentPacket> {
        self.inner
            .log
            .lock()
            .iter()
            .filter(|p| p.kind == kind)
            .cloned()
            .collect()
    }

    /// Number of keyframes sent.
    pub fn keyframes_sent(&self) -> usize {
        let log = self.inner.log.lock();
        let mut frames: Vec<u64> = log
            .iter()
            .filter(|p| p.kind == MediaKind::Video && p.keyframe)
            .map(|p| p.index)
            .collect();
        frames.dedup();
        frames.len()
    }

    /// Sends a text message on the `"events"` data channel.
    pub async fn send_text(&self, text: &str) -> anyhow::Result<()> {
        self.inner.session.send_text(text).await
    }

    /// Text messages received on the `"events"` data channel.
    pub fn messages(&self) -> Vec<String> {
        self.inner.session.dc_log.lock().text.clone()
    }

    /// Binary messages received on the `"events"` data channel.
    pub fn binary_messages(&self) -> Vec<Bytes> {
        self.inner.session.dc_log.lock().binary.clone()
    }

    /// Waits for the `"events"` data channel to open.
    pub async fn wait_data_channel_open(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner.session.wait_data_channel_open(timeout).await
    }

    /// Stops streaming, `DELETE`s the WHIP resource and closes the peer connection.
    /// Returns the `DELETE` status code (not checked).
    pub async fn close(&self) -> anyhow::Result<u16> {
        self.stop_streaming();
        self.inner.session.close().await
    }

    /// Closes the peer connection without telling the server (simulates a vanished client;
    /// webrtc-rs may still send a DTLS close alert).
    pub async fn close_without_delete(&self) {
        self.stop_streaming();
        self.inner.session.close_peer().await;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop_streaming();
    }
}

fn encoding(
    ssrc: u32,
    codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec,
) -> RTCRtpEncodingParameters {
    RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        },
        active: true,
        codec,
        ..Default::default()
    }
}

async fn add_sendonly(
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<TrackLocalStaticRTP>,
    stream_id: &str,
) -> anyhow::Result<Arc<dyn RtpTransceiver>> {
    pc.add_transceiver_from_track(
        track.clone() as Arc<dyn TrackLocal>,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![stream_id.to_owned()],
            send_encodings: vec![],
        }),
    )
    .await
    .context("add_transceiver_from_track(sendonly)")
}

/// Resolves what the answer negotiated for a sendonly transceiver: payload type and MID ext.
async fn out_track(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    tr: &Arc<dyn RtpTransceiver>,
    opts: &PublisherOpts,
    ticks_per_frame: u32,
) -> anyhow::Result<OutTrack> {
    let sender = tr
        .sender()
        .await?
        .context("sendonly transceiver without a sender")?;
    let params = sender.get_parameters().await?;
    let payload_type = params
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
        .context("the answer negotiated no codec for a sendonly track")?;
    let mid_ext = if opts.mid_extension {
        let id = params
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|e| e.uri == MID_EXT_URI)
            .map(|e| e.id as u8);
        match (id, tr.mid().await?) {
            (Some(id), Some(mid)) => Some((id, Bytes::from(mid.into_bytes()))),
            _ => None,
        }
    } else {
        None
    };
    Ok(OutTrack {
        track,
        ssrc,
        payload_type,
        mid_ext,
        state: tokio::sync::Mutex::new(SeqState {
            seq: opts.initial_seq,
            timestamp: opts.initial_timestamp,
            index: 0,
            ticks_per_frame,
        }),
    })
}

impl Inner {
    async fn send_video_frame(
        &self,
        keyframe: bool,
        payload_seed: u32,
    ) -> anyhow::Result<Vec<SentPacket>> {
        let mut st = self.video.state.lock().await;
        let index = st.index;
        st.index += 1;
        let tag = PayloadTag {
            publisher_id: self.id,
            kind: MediaKind::Video,
            index,
            seed: payload_seed,
            part: 0,
            parts: 0,
        };
        let payloads = payload::video_frame(
            self.opts.video_codec,
            keyframe,
            tag,
            self.opts.packets_per_frame,
            self.opts.packet_len,
            self.opts.h264_param_sets,
        );
        self.send_frame_locked(
            &self.video,
            &mut st,
            MediaKind::Video,
            payloads,
            keyframe,
            index,
            None,
        )
        .await
    }

    async fn send_audio_packet(
        &self,
        payload_seed: u32,
        raw: Option<Bytes>,
    ) -> anyhow::Result<SentPacket> {
        let audio = self
            .audio
            .as_ref()
            .context("publisher has no audio track (opts.audio = false)")?;
        let mut st = audio.state.lock().await;
        let index = st.index;
        st.index += 1;
        let payload = raw.unwrap_or_else(|| {
            payload::opus_packet(
                PayloadTag {
                    publisher_id: self.id,
                    kind: MediaKind::Audio,
                    index,
                    seed: payload_seed,
                    part: 0,
                    parts: 1,
                },
                self.opts.packet_len.min(160),
            )
        });
        let mut sent = self
            .send_frame_locked(
                audio,
                &mut st,
                MediaKind::Audio,
                vec![payload],
                false,
                index,
                Some(false),
            )
            .await?;
        Ok(sent.remove(0))
    }

    /// Writes the packets of one frame. `marker`: `None` = set on the last packet.
    #[allow(clippy::too_many_arguments)]
    async fn send_frame_locked(
        &self,
        out: &OutTrack,
        st: &mut SeqState,
        kind: MediaKind,
        payloads: Vec<Bytes>,
        keyframe: bool,
        index: u64,
        marker: Option<bool>,
    ) -> anyhow::Result<Vec<SentPacket>> {
        anyhow::ensure!(!payloads.is_empty(), "a frame needs at least one packet");
        let timestamp = st.timestamp;
        st.timestamp = st.timestamp.wrapping_add(st.ticks_per_frame);
        let n = payloads.len();
        let mut sent = Vec::with_capacity(n);
        for (i, payload) in payloads.into_iter().enumerate() {
            let seq = st.seq;
            st.seq = st.seq.wrapping_add(1);
            let marker = marker.unwrap_or(i + 1 == n);
            let mut header = rtp::header::Header {
                version: 2,
                marker,
                payload_type: out.payload_type,
                sequence_number: seq,
                timestamp,
                ssrc: out.ssrc,
                ..Default::default()
            };
            if let Some((id, mid)) = &out.mid_ext {
                header
                    .set_extension(*id, mid.clone())
                    .context("setting the MID header extension")?;
            }
            let packet = rtp::packet::Packet {
                header,
                payload: payload.clone(),
            };
            let record = SentPacket {
                kind,
                ssrc: out.ssrc,
                seq,
                timestamp,
                payload_type: out.payload_type,
                marker,
                keyframe,
                index,
                tag: payload::find_tag(&payload),
                payload_sha256: super::sha256(&payload),
                payload,
                sent_at: Instant::now(),
            };
            out.track
                .write_rtp(packet)
                .await
                .with_context(|| format!("write_rtp({kind} seq {seq})"))?;
            self.log.lock().push(record.clone());
            sent.push(record);
        }
        if kind == MediaKind::Video && keyframe {
            self.keyframe_pending.store(false, Ordering::SeqCst);
        }
        Ok(sent)
    }
}

/// Counts PLI / FIR delivered by `KeyframeRequestForwarder` and answers them.
async fn rtcp_reader(inner: std::sync::Weak<Inner>, track: Arc<TrackLocalStaticRTP>) {
    let mut answered: u32 = 0;
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        let Some(inner) = inner.upgrade() else { break };
        let mut requested = false;
        for p in &packets {
            let (pli, fir) = peer::keyframe_request_kind(p.as_ref());
            if pli {
                inner.plis.fetch_add(1, Ordering::SeqCst);
            }
            if fir {
                inner.firs.fetch_add(1, Ordering::SeqCst);
            }
            requested |= pli || fir;
        }
        if requested && inner.opts.answer_keyframe_requests {
            inner.keyframe_pending.store(true, Ordering::SeqCst);
            if !inner.streaming.load(Ordering::SeqCst) {
                answered = answered.wrapping_add(1);
                let _ = inner
                    .send_video_frame(true, 0xFFFF_0000 | (answered & 0xFFFF))
                    .await;
            }
        }
    }
}
