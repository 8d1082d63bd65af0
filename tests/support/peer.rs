//! Shared plumbing for the test peers: a loopback-only webrtc-rs `PeerConnection`, its event
//! handler, an interceptor that hands keyframe requests to the application, WHIP/WHEP HTTP
//! signalling and SDP offer/answer helpers.
//!
//! Public so that a test can also stand up a webrtc-rs *answerer* (see
//! `tests/webrtc_rs_selftest.rs`) with exactly the same codec set as the peers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCBundlePolicy,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder,
};

use super::{SignalError, VideoCodec};

/// Payload type registered for VP8.
pub const VP8_PT: u8 = 96;
/// Payload type registered for H.264 (packetization-mode=1).
pub const H264_PT: u8 = 102;
/// Payload type registered for Opus.
pub const OPUS_PT: u8 = 111;
/// `a=fmtp` line of the H.264 codec.
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// URI of the MID RTP header extension.
pub const MID_EXT_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// What a peer connection is built with.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Video codecs registered, in preference order.
    pub video_codecs: Vec<VideoCodec>,
    /// Register webrtc-rs's default interceptors (NACK generator/responder, RTCP SR/RR,
    /// TWCC receiver) — what a browser-like peer does.
    pub default_interceptors: bool,
    /// Deliver inbound PLI / FIR to the application (`TrackLocal::poll`) instead of letting
    /// them die at the end of the interceptor chain.
    pub keyframe_requests_to_app: bool,
    /// Present an RSA-2048 DTLS certificate signing with PKCS#1 v1.5, as OpenSSL-based
    /// stacks (GStreamer's webrtcbin) do, instead of webrtc-rs's default ECDSA P-256.
    pub rsa_certificate: bool,
    /// DTLS cipher suites offered, in preference order; empty: webrtc-rs's default set.
    pub dtls_cipher_suites: Vec<rtc::dtls::cipher_suite::CipherSuiteId>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            video_codecs: vec![VideoCodec::Vp8, VideoCodec::H264],
            default_interceptors: true,
            keyframe_requests_to_app: true,
            rsa_certificate: false,
            dtls_cipher_suites: Vec::new(),
        }
    }
}

/// PKCS#8 DER of a fixed RSA-2048 key: webrtc-rs's crypto providers cannot generate RSA
/// keys, only import them. A fresh self-signed certificate is made around it per peer.
const RSA_2048_KEY_DER: &[u8] = include_bytes!("rsa_2048_key.der");

/// A self-signed RSA-2048 / SHA-256 certificate around [`RSA_2048_KEY_DER`].
fn rsa_certificate() -> anyhow::Result<rtc::peer_connection::certificate::RTCCertificate> {
    use rtc::crypto::SignatureScheme;
    use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};

    let provider = rtc::crypto::default_provider()?;
    let key = provider
        .crypto()
        .import_signing_key(SignatureScheme::RsaPkcs1Sha256, RSA_2048_KEY_DER)?;
    Ok(RTCCertificate::generate_from_signing_key(
        CertificateParams::new(vec!["hawker-test-rsa".to_owned()])?,
        SignatureScheme::RsaPkcs1Sha256,
        key,
    )?)
}

/// The RTP codec description for `codec`.
pub fn video_rtp_codec(codec: VideoCodec) -> RTCRtpCodec {
    match codec {
        VideoCodec::Vp8 => RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        VideoCodec::H264 => RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: H264_FMTP.to_owned(),
            rtcp_feedback: vec![],
        },
    }
}

/// The Opus RTP codec description.
pub fn opus_rtp_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Payload type the peers register for `codec`.
pub fn video_pt(codec: VideoCodec) -> u8 {
    match codec {
        VideoCodec::Vp8 => VP8_PT,
        VideoCodec::H264 => H264_PT,
    }
}

fn media_engine_and_registry(cfg: &PeerConfig) -> anyhow::Result<(MediaEngine, Registry)> {
    let mut me = MediaEngine::default();
    for &codec in &cfg.video_codecs {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: video_rtp_codec(codec),
                payload_type: video_pt(codec),
            },
            RtpCodecKind::Video,
        )?;
    }
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_rtp_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    // Feedback is added to the codecs registered so far, so this must follow register_codec.
    for (typ, parameter) in [("nack", ""), ("nack", "pli"), ("ccm", "fir")] {
        me.register_feedback(
            RTCPFeedback {
                typ: typ.to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        me.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: MID_EXT_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    let mut registry = Registry::new();
    if cfg.default_interceptors {
        registry = register_default_interceptors(registry, &mut me)?;
    }
    if cfg.keyframe_requests_to_app {
        // Application-most slot: every other interceptor has seen the RTCP first.
        registry = registry.with(Slot::from(14_000), KeyframeRequestForwarder::default());
    }
    Ok((me, registry))
}

/// Event streams of one peer connection.
pub struct PeerEvents {
    /// ICE gathering state.
    pub gathering: watch::Receiver<RTCIceGatheringState>,
    /// Peer connection state.
    pub state: watch::Receiver<RTCPeerConnectionState>,
    /// Remote tracks, as `on_track` reports them.
    pub tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    /// Data channels opened by the remote side.
    pub data_channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
}

struct Handler {
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
    data_channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let _ = self.data_channels.send(data_channel);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

/// Builds a peer connection bound to one UDP socket on `127.0.0.1:0`, with no ICE servers,
/// mDNS disabled and max-bundle.
pub async fn build_peer(cfg: &PeerConfig) -> anyhow::Result<(Arc<dyn PeerConnection>, PeerEvents)> {
    let (me, registry) = media_engine_and_registry(cfg)?;
    let mut setting_engine = SettingEngineBuilder::new()
        // Default is QueryOnly, which binds a multicast socket on :5353 and would resolve
        // `.local` candidates; Disabled keeps everything on the one loopback socket.
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // Connectivity checks every 25 ms (default 200 ms) for up to 1 s: on loopback this
        // cuts ~170 ms off every connection set-up.
        .with_ice_connection_attempts(Some(Duration::from_millis(25)), Some(40))
        .with_host_acceptance_min_wait(Some(Duration::ZERO));
    if !cfg.dtls_cipher_suites.is_empty() {
        setting_engine = setting_engine.with_dtls_cipher_suites(cfg.dtls_cipher_suites.clone());
    }
    let setting_engine = setting_engine.build();
    let mut config = RTCConfigurationBuilder::new().with_bundle_policy(RTCBundlePolicy::MaxBundle);
    if cfg.rsa_certificate {
        config = config.with_certificates(vec![rsa_certificate()?]);
    }
    let config = config.build();

    let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let (tracks_tx, tracks) = mpsc::unbounded_channel();
    let (dc_tx, data_channels) = mpsc::unbounded_channel();
    let handler = Arc::new(Handler {
        gathering: gathering_tx,
        state: state_tx,
        tracks: tracks_tx,
        data_channels: dc_tx,
    });

    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(me)
        .with_setting_engine(setting_engine)
        .with_interceptor_registry(registry)
        .with_handler(handler as Arc<dyn PeerConnectionEventHandler>)
        // A concrete address is bound as given (a wildcard would be expanded to the
        // non-loopback interfaces), so the only host candidate is 127.0.0.1.
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .context("building webrtc-rs peer connection")?;
    Ok((
        Arc::new(pc),
        PeerEvents {
            gathering,
            state,
            tracks,
            data_channels,
        },
    ))
}

/// Waits for ICE gathering to complete and returns the local description's SDP.
pub async fn gathered_local_sdp(
    pc: &Arc<dyn PeerConnection>,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
    timeout: Duration,
) -> anyhow::Result<String> {
    tokio::time::timeout(
        timeout,
        gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await
    .context("timed out waiting for ICE gathering to complete")?
    .context("peer connection dropped while gathering")?;
    let desc = pc
        .local_description()
        .await
        .context("no local description after gathering")?;
    Ok(desc.sdp)
}

/// Creates an offer, applies it and returns it once ICE gathering is complete (non-trickle).
pub async fn create_gathered_offer(
    pc: &Arc<dyn PeerConnection>,
    events: &mut PeerEvents,
    timeout: Duration,
) -> anyhow::Result<String> {
    let offer = pc.create_offer(None).await.context("create_offer")?;
    pc.set_local_description(offer)
        .await
        .context("set_local_description(offer)")?;
    gathered_local_sdp(pc, &mut events.gathering, timeout).await
}

/// Answerer side: applies `offer_sdp`, creates and applies an answer and returns it once ICE
/// gathering is complete. Add local tracks *before* calling this so they land in the answer.
pub async fn answer_offer(
    pc: &Arc<dyn PeerConnection>,
    events: &mut PeerEvents,
    offer_sdp: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    pc.set_remote_description(RTCSessionDescription::offer(offer_sdp.to_owned())?)
        .await
        .context("set_remote_description(offer)")?;
    let answer = pc.create_answer(None).await.context("create_answer")?;
    pc.set_local_description(answer)
        .await
        .context("set_local_description(answer)")?;
    gathered_local_sdp(pc, &mut events.gathering, timeout).await
}

/// Waits for `Connected`; fails early on `Failed` / `Closed`.
pub async fn wait_connected(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let observer = state.clone();
    let reached = tokio::time::timeout(
        timeout,
        state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        }),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "timed out after {timeout:?} waiting for the peer connection to connect (state {})",
            *observer.borrow()
        )
    })?
    .context("peer connection dropped")?
    .to_owned();
    anyhow::ensure!(
        reached == RTCPeerConnectionState::Connected,
        "peer connection ended in state {reached} instead of connecting"
    );
    Ok(())
}

/// HTTP client for WHIP/WHEP (no proxy, 10 s request timeout).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// Result of a successful WHIP/WHEP `POST`.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// `Location` resolved against the endpoint URL.
    pub location: reqwest::Url,
    /// The SDP answer (response body).
    pub answer: String,
    /// Optional `ETag` header (used by ICE restarts; recorded for tests).
    pub etag: Option<String>,
}

/// `POST`s `offer` to `url`; requires `201 Created` with a `Location`.
pub async fn post_offer(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    offer: &str,
) -> anyhow::Result<Negotiated> {
    let base = reqwest::Url::parse(url).with_context(|| format!("bad endpoint URL {url}"))?;
    let mut req = client
        .post(base.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .header(reqwest::header::ACCEPT, "application/sdp")
        .body(offer.to_owned());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::CREATED {
        return Err(SignalError {
            method: "POST",
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.chars().take(2048).collect(),
        }
        .into());
    }
    let location = headers
        .get(reqwest::header::LOCATION)
        .context("201 response without a Location header")?
        .to_str()
        .context("non-ASCII Location header")?;
    let location = base
        .join(location)
        .with_context(|| format!("unresolvable Location {location:?}"))?;
    let etag = headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    anyhow::ensure!(
        body.starts_with("v=0"),
        "201 response body is not an SDP answer: {body:?}"
    );
    Ok(Negotiated {
        location,
        answer: body,
        etag,
    })
}

/// `DELETE`s a session resource; returns the HTTP status (any status is `Ok`).
pub async fn delete_session(
    client: &reqwest::Client,
    location: &reqwest::Url,
    token: Option<&str>,
) -> anyhow::Result<u16> {
    let mut req = client.delete(location.clone());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("DELETE {location}"))?;
    Ok(resp.status().as_u16())
}

/// Offers `pc`'s description to a WHIP/WHEP endpoint and applies the answer.
pub async fn negotiate_over_http(
    pc: &Arc<dyn PeerConnection>,
    events: &mut PeerEvents,
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(String, Negotiated)> {
    let deadline = Instant::now() + timeout;
    let offer = create_gathered_offer(pc, events, timeout).await?;
    let negotiated = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        post_offer(client, url, token, &offer),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out POSTing the offer to {url}"))??;
    pc.set_remote_description(
        RTCSessionDescription::answer(negotiated.answer.clone())
            .context("parsing the SDP answer")?,
    )
    .await
    .context("set_remote_description(answer)")?;
    Ok((offer, negotiated))
}

/// Whether an RTCP packet asks for a keyframe; returns `(is_pli, is_fir)`.
pub fn keyframe_request_kind(packet: &dyn rtc::rtcp::Packet) -> (bool, bool) {
    let any = packet.as_any();
    (
        any.is::<PictureLossIndication>(),
        any.is::<FullIntraRequest>(),
    )
}

/// Marks inbound PLI / FIR with `Attribute::DeliverToApplication` so webrtc-rs hands them to
/// `TrackLocal::poll`, and drops every other inbound RTCP packet *after* the earlier
/// interceptors saw it. Outbound traffic passes untouched.
#[derive(Default)]
pub struct KeyframeRequestForwarder {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    let (pli, fir) = keyframe_request_kind(p.as_ref());
                    pli || fir
                })
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
