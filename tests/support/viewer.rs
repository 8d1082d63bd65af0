//! WHEP test viewer: recvonly video + audio over webrtc-rs, records every RTP packet received.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use parking_lot::Mutex;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use super::payload::{self, PayloadTag};
use super::peer::{self, PeerConfig, H264_PT, VP8_PT};
use super::session::{self, Session};
use super::{MediaKind, VideoCodec, DEFAULT_CONNECT_TIMEOUT};

/// Options for [`Viewer::connect`].
#[derive(Debug, Clone)]
pub struct ViewerOpts {
    /// Add a recvonly video transceiver. Default `true`.
    pub video: bool,
    /// Add a recvonly audio (Opus) transceiver. Default `true`.
    pub audio: bool,
    /// Video codecs offered, in preference order. Default VP8, H.264.
    pub video_codecs: Vec<VideoCodec>,
    /// Create the reliable, ordered `"events"` data channel. Default `false`.
    pub data_channel: bool,
    /// Use webrtc-rs's default interceptors (NACK generator, receiver reports, TWCC).
    /// Default `true`.
    pub default_interceptors: bool,
    /// Bound for HTTP + ICE + DTLS (+ data channel open). Default 10 s.
    pub connect_timeout: Duration,
    /// Have `connect` wait for `Connected` (and the data channel to open). Default `true`.
    pub wait_connected: bool,
    /// Present an RSA-2048 DTLS certificate (as GStreamer does). Default `false` (ECDSA).
    pub rsa_certificate: bool,
}

impl Default for ViewerOpts {
    fn default() -> Self {
        ViewerOpts {
            video: true,
            audio: true,
            video_codecs: vec![VideoCodec::Vp8, VideoCodec::H264],
            data_channel: false,
            default_interceptors: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            wait_connected: true,
            rsa_certificate: false,
        }
    }
}

impl ViewerOpts {
    /// Default options plus the `"events"` data channel.
    pub fn with_data_channel(mut self) -> Self {
        self.data_channel = true;
        self
    }
}

/// One RTP packet received by a [`Viewer`].
#[derive(Debug, Clone)]
pub struct ReceivedPacket {
    /// Track kind.
    pub kind: MediaKind,
    /// SSRC.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Video codec of the track (from the track, else guessed from the payload type).
    pub codec: Option<VideoCodec>,
    /// The payload starts a keyframe (per [`payload::is_keyframe`]).
    pub keyframe: bool,
    /// Tag found in the payload, if it came from a test publisher.
    pub tag: Option<PayloadTag>,
    /// The payload.
    pub payload: Bytes,
    /// SHA-256 of the payload.
    pub payload_sha256: [u8; 32],
    /// When the packet was read from the track.
    pub arrival: Instant,
}

/// Everything a viewer recorded. Passed to [`Viewer::wait_for`] predicates.
#[derive(Debug, Clone, Default)]
pub struct RecvLog {
    /// Video packets in arrival order.
    pub video: Vec<ReceivedPacket>,
    /// Audio packets in arrival order.
    pub audio: Vec<ReceivedPacket>,
    /// Text messages received on the `"events"` channel.
    pub messages: Vec<String>,
    /// Remote tracks announced so far (`on_track`), with their MIME type when known.
    pub tracks: Vec<(MediaKind, Option<String>)>,
    /// Tracks that ended (`OnEnded`).
    pub ended: Vec<MediaKind>,
}

impl RecvLog {
    /// Packets of `kind`.
    pub fn packets(&self, kind: MediaKind) -> &[ReceivedPacket] {
        match kind {
            MediaKind::Video => &self.video,
            MediaKind::Audio => &self.audio,
        }
    }

    /// First video packet that starts a keyframe.
    pub fn first_keyframe(&self) -> Option<&ReceivedPacket> {
        self.video.iter().find(|p| p.keyframe)
    }

    fn summary(&self) -> String {
        format!(
            "{} video packets ({} keyframe starts), {} audio packets, {} messages, tracks {:?}",
            self.video.len(),
            self.video.iter().filter(|p| p.keyframe).count(),
            self.audio.len(),
            self.messages.len(),
            self.tracks
        )
    }
}

struct Inner {
    session: Session,
    log: Mutex<RecvLog>,
    video_track: Mutex<Option<Arc<dyn TrackRemote>>>,
    changed_rx: watch::Receiver<u64>,
}

/// A WHEP viewer. See the [module docs](super).
#[derive(Clone)]
pub struct Viewer {
    inner: Arc<Inner>,
}

impl Viewer {
    /// Connects to `whep_url` (with `Authorization: Bearer <token>` when `token` is given).
    ///
    /// Returns once the peer connection is `Connected` (and the data channel open, if
    /// requested) unless `opts.wait_connected` is `false`. A non-201 answer yields a
    /// [`super::SignalError`].
    pub async fn connect(
        whep_url: &str,
        token: Option<&str>,
        opts: ViewerOpts,
    ) -> anyhow::Result<Viewer> {
        anyhow::ensure!(!opts.video_codecs.is_empty(), "no video codec to offer");
        let (pc, events) = peer::build_peer(&PeerConfig {
            video_codecs: opts.video_codecs.clone(),
            default_interceptors: opts.default_interceptors,
            keyframe_requests_to_app: false,
            rsa_certificate: opts.rsa_certificate,
            dtls_cipher_suites: Vec::new(),
        })
        .await?;
        for (enabled, kind) in [
            (opts.video, RtpCodecKind::Video),
            (opts.audio, RtpCodecKind::Audio),
        ] {
            if enabled {
                pc.add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        ..Default::default()
                    }),
                )
                .await
                .context("add_transceiver_from_kind(recvonly)")?;
            }
        }
        let dc = if opts.data_channel {
            Some(session::create_events_channel(&pc).await?)
        } else {
            None
        };

        let (changed, changed_rx) = watch::channel(0u64);
        // Remote tracks announced meanwhile queue up in `events.tracks` (unbounded) and are
        // picked up by the acceptor spawned right after.
        let log = Mutex::new(RecvLog::default());
        let (session, events) = Session::establish(
            pc,
            events,
            dc,
            whep_url,
            token,
            opts.connect_timeout,
            false,
            changed,
        )
        .await?;
        let inner = Arc::new(Inner {
            session,
            log,
            video_track: Mutex::new(None),
            changed_rx,
        });
        let track_task = tokio::spawn(track_acceptor(Arc::downgrade(&inner), events.tracks));
        inner.session.spawn(track_task);
        if opts.wait_connected {
            let deadline = Instant::now() + opts.connect_timeout;
            inner.session.wait_connected(opts.connect_timeout).await?;
            if inner.session.dc.is_some() {
                inner
                    .session
                    .wait_data_channel_open(deadline.saturating_duration_since(Instant::now()))
                    .await?;
            }
        }
        Ok(Viewer { inner })
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

    /// When the peer connection reached `Connected` (if observed).
    pub fn connected_at(&self) -> Option<Instant> {
        *self.inner.session.connected_at.lock()
    }

    /// The underlying webrtc-rs peer connection.
    pub fn peer_connection(&self) -> Arc<dyn PeerConnection> {
        self.inner.session.pc.clone()
    }

    /// Packets received on `kind`, in arrival order.
    pub fn packets(&self, kind: MediaKind) -> Vec<ReceivedPacket> {
        self.inner.log.lock().packets(kind).to_vec()
    }

    /// A snapshot of everything recorded.
    pub fn log(&self) -> RecvLog {
        let mut log = self.inner.log.lock().clone();
        log.messages = self.messages();
        log
    }

    /// Arrival time of the first video packet that starts a keyframe.
    pub fn first_keyframe_at(&self) -> Option<Instant> {
        self.inner.log.lock().first_keyframe().map(|p| p.arrival)
    }

    /// Waits until `pred` holds for the log (re-checked on every packet / message), or fails
    /// after `timeout` with a summary of what was received.
    pub async fn wait_for(
        &self,
        mut pred: impl FnMut(&RecvLog) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.changed_rx.clone();
        loop {
            rx.borrow_and_update();
            {
                let mut log = self.inner.log.lock();
                log.messages = self.inner.session.dc_log.lock().text.clone();
                if pred(&log) {
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let log = self.log();
                    if pred(&log) {
                        return Ok(());
                    }
                    anyhow::bail!(
                        "viewer condition not met within {timeout:?}; received {}",
                        log.summary()
                    );
                }
            }
        }
    }

    /// Sends a PLI for the received video stream (fails before any video arrived).
    pub async fn request_keyframe(&self) -> anyhow::Result<()> {
        let track = self
            .inner
            .video_track
            .lock()
            .clone()
            .context("no remote video track yet")?;
        let last_ssrc = self.inner.log.lock().video.last().map(|p| p.ssrc);
        let media_ssrc = match last_ssrc {
            Some(ssrc) => ssrc,
            None => *track
                .ssrcs()
                .await
                .first()
                .context("remote video track has no SSRC yet")?,
        };
        track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            })])
            .await
            .context("writing PLI")?;
        Ok(())
    }

    /// Sends a text message on the `"events"` data channel.
    pub async fn send_text(&self, text: &str) -> anyhow::Result<()> {
        self.inner.session.send_text(text).await
    }

    /// Text messages received on the `"events"` data channel.
    pub fn messages(&self) -> Vec<String> {
        self.inner.session.dc_log.lock().text.clone()
    }

    /// Waits for the `"events"` data channel to open.
    pub async fn wait_data_channel_open(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner.session.wait_data_channel_open(timeout).await
    }

    /// `DELETE`s the WHEP resource and closes the peer connection. Returns the `DELETE`
    /// status code (not checked).
    pub async fn close(&self) -> anyhow::Result<u16> {
        self.inner.session.close().await
    }

    /// Closes the peer connection without telling the server.
    pub async fn close_without_delete(&self) {
        self.inner.session.close_peer().await;
    }
}

/// Accepts remote tracks and spawns one reader per track.
async fn track_acceptor(
    inner: std::sync::Weak<Inner>,
    mut tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
) {
    let mut readers = Vec::new();
    while let Some(track) = tracks.recv().await {
        let Some(strong) = inner.upgrade() else { break };
        let kind = match track.kind().await {
            RtpCodecKind::Audio => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        let mime = match track.ssrcs().await.first() {
            Some(&ssrc) => track.codec(ssrc).await.map(|c| c.mime_type),
            None => None,
        };
        if kind == MediaKind::Video {
            *strong.video_track.lock() = Some(track.clone());
        }
        strong.log.lock().tracks.push((kind, mime.clone()));
        strong.session.changed.send_modify(|v| *v += 1);
        drop(strong);
        readers.push(AbortOnDrop(tokio::spawn(track_reader(
            inner.clone(),
            track,
            kind,
            mime.as_deref().and_then(VideoCodec::from_mime),
        ))));
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn track_reader(
    inner: std::sync::Weak<Inner>,
    track: Arc<dyn TrackRemote>,
    kind: MediaKind,
    mut codec: Option<VideoCodec>,
) {
    while let Some(event) = track.poll().await {
        let Some(inner) = inner.upgrade() else { break };
        match event {
            TrackRemoteEvent::OnRtpPacket(pkt) => {
                let arrival = Instant::now();
                if kind == MediaKind::Video && codec.is_none() {
                    codec = track
                        .codec(pkt.header.ssrc)
                        .await
                        .and_then(|c| VideoCodec::from_mime(&c.mime_type))
                        .or(match pkt.header.payload_type {
                            VP8_PT => Some(VideoCodec::Vp8),
                            H264_PT => Some(VideoCodec::H264),
                            _ => None,
                        });
                }
                let keyframe = kind == MediaKind::Video
                    && codec.is_some_and(|c| payload::is_keyframe(c, &pkt.payload));
                let rec = ReceivedPacket {
                    kind,
                    ssrc: pkt.header.ssrc,
                    seq: pkt.header.sequence_number,
                    timestamp: pkt.header.timestamp,
                    payload_type: pkt.header.payload_type,
                    marker: pkt.header.marker,
                    codec: if kind == MediaKind::Video {
                        codec
                    } else {
                        None
                    },
                    keyframe,
                    tag: payload::find_tag(&pkt.payload),
                    payload_sha256: super::sha256(&pkt.payload),
                    payload: pkt.payload,
                    arrival,
                };
                match kind {
                    MediaKind::Video => inner.log.lock().video.push(rec),
                    MediaKind::Audio => inner.log.lock().audio.push(rec),
                }
                inner.session.changed.send_modify(|v| *v += 1);
            }
            TrackRemoteEvent::OnEnded => {
                inner.log.lock().ended.push(kind);
                inner.session.changed.send_modify(|v| *v += 1);
                break;
            }
            _ => {}
        }
    }
}
