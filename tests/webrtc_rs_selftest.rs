//! Self-test of the webrtc-rs test peers in `tests/support`, independent of hawker.
//!
//! A tiny in-test relay speaks WHIP/WHEP over axum on 127.0.0.1 and answers with webrtc-rs
//! peer connections: it records what the [`Publisher`] sends, forwards it to every
//! [`Viewer`] (rewriting SSRC / payload type like an SFU would), relays viewers' PLIs to the
//! publisher and echoes / fans out `"events"` data-channel messages. The tests then check that
//! payloads arrive byte-for-byte, keyframe requests are counted and answered, and the data
//! channel works both ways.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use parking_lot::Mutex;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use support::payload::{self, PayloadTag};
use support::peer::{self, PeerConfig};
use support::{MediaKind, Publisher, PublisherOpts, SignalError, VideoCodec, Viewer, ViewerOpts};
use tokio::sync::broadcast;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::PeerConnection;

const TOKEN: &str = "s3cret";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The in-test relay
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Relay {
    next_id: AtomicU64,
    sessions: Mutex<HashMap<String, Arc<dyn PeerConnection>>>,
    /// Every RTP packet received from publishers.
    ingest: Mutex<Vec<(MediaKind, rtp::packet::Packet)>>,
    fanout: Mutex<Option<broadcast::Sender<(MediaKind, rtp::packet::Packet)>>>,
    publisher_video: Mutex<Option<Arc<dyn TrackRemote>>>,
    publisher_dcs: Mutex<Vec<Arc<dyn DataChannel>>>,
    viewer_dcs: Mutex<Vec<Arc<dyn DataChannel>>>,
    /// Text received on any events channel, prefixed with "pub:" / "view:".
    dc_text: Mutex<Vec<String>>,
    plis_forwarded: AtomicU64,
    /// Video codec publishers use (the relay does not transcode).
    video_codec: Mutex<Option<VideoCodec>>,
}

type Shared = Arc<Relay>;

impl Relay {
    fn fanout(&self) -> broadcast::Sender<(MediaKind, rtp::packet::Packet)> {
        self.fanout
            .lock()
            .get_or_insert_with(|| broadcast::channel(4096).0)
            .clone()
    }

    fn new_session(&self, pc: Arc<dyn PeerConnection>) -> String {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        self.sessions.lock().insert(id.clone(), pc);
        id
    }

    fn ingest_payloads(&self, kind: MediaKind) -> Vec<bytes::Bytes> {
        self.ingest
            .lock()
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, p)| p.payload.clone())
            .collect()
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
}

fn sdp_created(location: String, answer: String) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response()
}

fn err500(e: anyhow::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response()
}

async fn whip_post(
    State(relay): State<Shared>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    offer: String,
) -> Response {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    match whip_session(relay, offer).await {
        Ok((id, answer)) => sdp_created(format!("/whip/{stream}/{id}"), answer),
        Err(e) => err500(e),
    }
}

async fn whip_session(relay: Shared, offer: String) -> anyhow::Result<(String, String)> {
    let (pc, mut events) = peer::build_peer(&PeerConfig::default()).await?;
    let answer = peer::answer_offer(&pc, &mut events, &offer, WAIT).await?;

    let r = relay.clone();
    let mut tracks = events.tracks;
    tokio::spawn(async move {
        while let Some(track) = tracks.recv().await {
            let kind = match track.kind().await {
                RtpCodecKind::Audio => MediaKind::Audio,
                _ => MediaKind::Video,
            };
            if kind == MediaKind::Video {
                *r.publisher_video.lock() = Some(track.clone());
            }
            let r = r.clone();
            tokio::spawn(async move {
                let fanout = r.fanout();
                while let Some(ev) = track.poll().await {
                    if let TrackRemoteEvent::OnRtpPacket(pkt) = ev {
                        r.ingest.lock().push((kind, pkt.clone()));
                        let _ = fanout.send((kind, pkt));
                    }
                }
            });
        }
    });

    let r = relay.clone();
    let mut dcs = events.data_channels;
    tokio::spawn(async move {
        while let Some(dc) = dcs.recv().await {
            r.publisher_dcs.lock().push(dc.clone());
            let r = r.clone();
            tokio::spawn(async move {
                while let Some(ev) = dc.poll().await {
                    if let DataChannelEvent::OnMessage(msg) = ev {
                        let text = String::from_utf8_lossy(&msg.data).into_owned();
                        r.dc_text.lock().push(format!("pub:{text}"));
                        let _ = dc.send_text(&format!("echo:{text}")).await;
                        let viewers = r.viewer_dcs.lock().clone();
                        for v in viewers {
                            let _ = v.send_text(&text).await;
                        }
                    }
                }
            });
        }
    });

    let id = relay.new_session(pc);
    Ok((id, answer))
}

async fn whep_post(
    State(relay): State<Shared>,
    Path(stream): Path<String>,
    offer: String,
) -> Response {
    match whep_session(relay, offer).await {
        Ok((id, answer)) => sdp_created(format!("/whep/{stream}/{id}"), answer),
        Err(e) => err500(e),
    }
}

fn egress_track(
    id: &str,
    kind: RtpCodecKind,
    ssrc: u32,
    codec: RTCRtpCodec,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("relay-{id}"),
        format!("relay-{id}-{kind}"),
        format!("{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec,
            ..Default::default()
        }],
    )))
}

async fn whep_session(relay: Shared, offer: String) -> anyhow::Result<(String, String)> {
    let codec = relay.video_codec.lock().unwrap_or_default();
    let (pc, mut events) = peer::build_peer(&PeerConfig::default()).await?;
    let n = relay.next_id.load(Ordering::Relaxed) as u32;
    let (video_ssrc, audio_ssrc) = (0xABC0_0000 | (n << 4), 0xABC0_0001 | (n << 4));
    let video = egress_track(
        &n.to_string(),
        RtpCodecKind::Video,
        video_ssrc,
        peer::video_rtp_codec(codec),
    );
    let audio = egress_track(
        &n.to_string(),
        RtpCodecKind::Audio,
        audio_ssrc,
        peer::opus_rtp_codec(),
    );
    let video_sender = pc.add_track(video.clone() as Arc<dyn TrackLocal>).await?;
    let audio_sender = pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await?;
    // Subscribe before answering so nothing sent after the viewer connects is missed.
    let mut rx = relay.fanout().subscribe();
    let answer = peer::answer_offer(&pc, &mut events, &offer, WAIT).await?;
    let pt = |params: rtc::rtp_transceiver::rtp_sender::RTCRtpSendParameters| {
        params.rtp_parameters.codecs.first().map(|c| c.payload_type)
    };
    let video_pt = pt(video_sender.get_parameters().await?).unwrap_or(peer::video_pt(codec));
    let audio_pt = pt(audio_sender.get_parameters().await?).unwrap_or(peer::OPUS_PT);

    // Forward media: rewrite SSRC / PT and strip the ingest leg's header extensions.
    tokio::spawn(async move {
        loop {
            let (kind, mut pkt) = match rx.recv().await {
                Ok(x) => x,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            pkt.header.extension = false;
            pkt.header.extensions.clear();
            pkt.header.extensions_padding = 0;
            let (track, ssrc, pt) = match kind {
                MediaKind::Video => (&video, video_ssrc, video_pt),
                MediaKind::Audio => (&audio, audio_ssrc, audio_pt),
            };
            pkt.header.ssrc = ssrc;
            pkt.header.payload_type = pt;
            if track.write_rtp(pkt).await.is_err() {
                break;
            }
        }
    });

    // Relay viewers' keyframe requests to the publisher.
    let r = relay.clone();
    let video_for_rtcp = video_sender.track().clone();
    tokio::spawn(async move {
        while let Some(ev) = video_for_rtcp.poll().await {
            let TrackLocalEvent::OnRtcpPacket(_) = ev else {
                continue;
            };
            let publisher = r.publisher_video.lock().clone();
            if let Some(publisher) = publisher {
                let Some(&media_ssrc) = publisher.ssrcs().await.first() else {
                    continue;
                };
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                if publisher.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
                    r.plis_forwarded.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });

    let r = relay.clone();
    let mut dcs = events.data_channels;
    tokio::spawn(async move {
        while let Some(dc) = dcs.recv().await {
            r.viewer_dcs.lock().push(dc.clone());
            let r = r.clone();
            tokio::spawn(async move {
                while let Some(ev) = dc.poll().await {
                    if let DataChannelEvent::OnMessage(msg) = ev {
                        let text = String::from_utf8_lossy(&msg.data).into_owned();
                        r.dc_text.lock().push(format!("view:{text}"));
                    }
                }
            });
        }
    });

    let id = relay.new_session(pc);
    Ok((id, answer))
}

async fn session_delete(
    State(relay): State<Shared>,
    Path((_stream, id)): Path<(String, String)>,
) -> StatusCode {
    let pc = relay.sessions.lock().remove(&id);
    match pc {
        Some(pc) => {
            let _ = pc.close().await;
            StatusCode::OK
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn start_relay(codec: VideoCodec) -> (String, Shared) {
    let relay: Shared = Arc::default();
    *relay.video_codec.lock() = Some(codec);
    let app = Router::new()
        .route("/whip/{stream}", post(whip_post))
        .route("/whip/{stream}/{id}", delete(session_delete))
        .route("/whep/{stream}", post(whep_post))
        .route("/whep/{stream}/{id}", delete(session_delete))
        .with_state(relay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), relay)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

fn sha_set(packets: impl IntoIterator<Item = [u8; 32]>) -> HashSet<[u8; 32]> {
    packets.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_publisher_to_viewer_through_relay() -> anyhow::Result<()> {
    support::init_logging();
    let t0 = Instant::now();
    let (base, relay) = start_relay(VideoCodec::Vp8).await;
    let whip = format!("{base}/whip/live");
    let whep = format!("{base}/whep/live");

    // Wrong token: the signalling error surfaces as a SignalError.
    let err = match Publisher::connect(&whip, "nope", PublisherOpts::default()).await {
        Ok(_) => anyhow::bail!("connect with a bad token succeeded"),
        Err(e) => e,
    };
    let sig = err
        .downcast_ref::<SignalError>()
        .expect("a SignalError for a rejected POST");
    assert_eq!(sig.status, 401);

    let publisher =
        Publisher::connect(&whip, TOKEN, PublisherOpts::default().with_data_channel()).await?;
    assert!(publisher
        .location()
        .starts_with(&format!("{base}/whip/live/")));
    let offer = publisher.offer_sdp();
    assert!(offer.contains("a=sendonly"), "offer: {offer}");
    assert!(offer.contains("VP8/90000"));
    assert!(offer.contains("opus/48000"));
    assert!(offer.contains("webrtc-datachannel"));
    let candidates: Vec<&str> = offer
        .lines()
        .filter(|l| l.starts_with("a=candidate"))
        .collect();
    assert!(!candidates.is_empty(), "offer has no candidates: {offer}");
    assert!(
        candidates
            .iter()
            .all(|c| c.contains(" 127.0.0.1 ") && c.contains("typ host")),
        "non-loopback candidates: {candidates:?}"
    );
    let viewer = Viewer::connect(&whep, None, ViewerOpts::default().with_data_channel()).await?;
    assert!(viewer.offer_sdp().contains("a=recvonly"));
    let t_connected = t0.elapsed();

    // Manual frames and audio packets: exact accounting.
    let mut sent = publisher.send_video_frame(true, 1).await?;
    for seed in 2..=6 {
        sent.extend(publisher.send_video_frame(false, seed).await?);
    }
    for seed in 0..5 {
        publisher.send_audio_packet(seed).await?;
    }
    publisher
        .send_audio_raw(bytes::Bytes::from_static(b"\x78raw-opus-payload"))
        .await?;
    assert_eq!(sent.len(), 6);
    assert!(sent[0].keyframe && payload::is_vp8_keyframe(&sent[0].payload));
    assert!(sent[1..]
        .iter()
        .all(|p| !p.keyframe && !payload::is_vp8_keyframe(&p.payload)));
    assert!(sent
        .windows(2)
        .all(|w| w[1].seq == w[0].seq.wrapping_add(1)));
    assert!(sent.iter().all(|p| p.marker));
    assert_eq!(
        sha_set(sent.iter().map(|p| p.payload_sha256)).len(),
        6,
        "payloads must be distinct"
    );

    // The relay (a plain webrtc-rs answerer) received exactly what was sent, in order.
    support::wait_until("relay ingest", WAIT, || {
        relay.ingest_payloads(MediaKind::Video).len() >= 6
            && relay.ingest_payloads(MediaKind::Audio).len() >= 6
    })
    .await?;
    {
        let ingest = relay.ingest.lock();
        let video: Vec<_> = ingest
            .iter()
            .filter(|(k, _)| *k == MediaKind::Video)
            .map(|(_, p)| p)
            .collect();
        for (s, r) in publisher.sent(MediaKind::Video).iter().zip(&video) {
            assert_eq!(s.payload, r.payload);
            assert_eq!(s.seq, r.header.sequence_number);
            assert_eq!(s.timestamp, r.header.timestamp);
            assert_eq!(s.ssrc, r.header.ssrc);
            assert_eq!(s.marker, r.header.marker);
            assert_eq!(s.payload_type, r.header.payload_type);
        }
    }
    assert_eq!(
        relay.ingest_payloads(MediaKind::Audio),
        publisher
            .sent(MediaKind::Audio)
            .iter()
            .map(|p| p.payload.clone())
            .collect::<Vec<_>>()
    );

    // ... and so did the viewer, through the relay's SSRC/PT rewriting.
    viewer
        .wait_for(|log| log.video.len() >= 6 && log.audio.len() >= 6, WAIT)
        .await?;
    let got = viewer.packets(MediaKind::Video);
    assert_eq!(
        got.iter().map(|p| &p.payload).collect::<Vec<_>>(),
        sent.iter().map(|p| &p.payload).collect::<Vec<_>>()
    );
    assert!(got[0].keyframe && got[1..].iter().all(|p| !p.keyframe));
    assert_eq!(got[0].codec, Some(VideoCodec::Vp8));
    assert_eq!(
        got[3].tag,
        Some(PayloadTag {
            publisher_id: publisher.id(),
            kind: MediaKind::Video,
            index: 3,
            seed: 4,
            part: 0,
            parts: 1
        })
    );
    assert!(viewer.first_keyframe_at().is_some());
    assert_eq!(viewer.packets(MediaKind::Audio).len(), 6);

    // Keyframe request: viewer PLI -> relay -> publisher, answered with a keyframe.
    assert_eq!(publisher.keyframe_requests(), 0);
    viewer.request_keyframe().await?;
    support::wait_until("publisher to count the PLI", WAIT, || {
        publisher.keyframe_requests() >= 1
    })
    .await?;
    assert_eq!(publisher.plis_received(), publisher.keyframe_requests());
    viewer
        .wait_for(
            |log| log.video.iter().filter(|p| p.keyframe).count() >= 2,
            WAIT,
        )
        .await?;
    assert_eq!(publisher.keyframes_sent(), 2);

    // Data channel both ways.
    publisher.send_text("hello from publisher").await?;
    viewer.send_text("buy:sku-42").await?;
    support::wait_until("publisher echo", WAIT, || {
        publisher.messages() == vec!["echo:hello from publisher".to_owned()]
    })
    .await?;
    viewer
        .wait_for(|log| log.messages == ["hello from publisher"], WAIT)
        .await?;
    support::wait_until("relay got both texts", WAIT, || {
        relay.dc_text.lock().len() >= 2
    })
    .await?;
    assert!(relay.dc_text.lock().contains(&"view:buy:sku-42".to_owned()));

    // Background streaming: every payload the viewer gets was sent, in order, none lost.
    let before = publisher.sent(MediaKind::Video).len();
    publisher.start_streaming(30);
    tokio::time::sleep(Duration::from_millis(700)).await;
    publisher.stop_streaming();
    let all_sent = publisher.sent(MediaKind::Video);
    assert!(
        all_sent.len() - before >= 15,
        "only {} frames streamed",
        all_sent.len() - before
    );
    assert!(
        all_sent[before].keyframe,
        "streaming starts with a keyframe"
    );
    let n_audio = publisher.sent(MediaKind::Audio).len();
    assert!(n_audio >= 6 + 25, "only {n_audio} audio packets");
    viewer
        .wait_for(
            |log| log.video.len() == all_sent.len() && log.audio.len() == n_audio,
            WAIT,
        )
        .await?;
    let got: Vec<_> = viewer
        .packets(MediaKind::Video)
        .into_iter()
        .map(|p| p.payload_sha256)
        .collect();
    assert_eq!(
        got,
        all_sent
            .iter()
            .map(|p| p.payload_sha256)
            .collect::<Vec<_>>()
    );

    // Teardown: DELETE the resources.
    assert_eq!(viewer.close().await?, 200);
    assert_eq!(publisher.close().await?, 200);
    assert!(relay.sessions.lock().is_empty());
    assert!(publisher.close().await.is_err(), "double close is reported");
    eprintln!(
        "vp8 selftest: connected after {t_connected:?}, total {:?}",
        t0.elapsed()
    );
    Ok(())
}

// Default current-thread runtime on purpose: the peers must not need worker threads.
#[tokio::test]
async fn h264_fragmented_frames_and_param_sets() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let (base, relay) = start_relay(VideoCodec::H264).await;
    let opts = PublisherOpts {
        packets_per_frame: 3,
        packet_len: 1000,
        audio: false,
        ..PublisherOpts::h264()
    };
    let publisher = Publisher::connect(&format!("{base}/whip/s"), TOKEN, opts).await?;
    assert!(publisher.offer_sdp().contains("packetization-mode=1"));
    assert!(!publisher.offer_sdp().contains("VP8"));
    assert!(!publisher.offer_sdp().contains("m=audio"));
    let viewer = Viewer::connect(
        &format!("{base}/whep/s"),
        None,
        ViewerOpts {
            audio: false,
            video_codecs: vec![VideoCodec::H264],
            ..Default::default()
        },
    )
    .await?;

    let key = publisher.send_video_frame(true, 7).await?;
    // STAP-A [SPS, PPS, SEI] + 3 FU-A fragments.
    assert_eq!(key.len(), 4);
    assert_eq!(key[0].payload[0] & 0x1f, 24);
    assert!(key[1..].iter().all(|p| p.payload[0] & 0x1f == 28));
    assert_eq!(key.iter().filter(|p| p.marker).count(), 1);
    assert!(key[3].marker);
    let delta = publisher.send_video_frame(false, 8).await?;
    assert_eq!(delta.len(), 3);
    assert!(delta.iter().all(|p| !payload::is_h264_keyframe(&p.payload)));
    assert!(delta.iter().all(|p| p.timestamp == delta[0].timestamp));
    assert_ne!(delta[0].timestamp, key[0].timestamp);

    viewer.wait_for(|log| log.video.len() >= 7, WAIT).await?;
    let got = viewer.packets(MediaKind::Video);
    assert_eq!(got.len(), 7);
    assert_eq!(got[0].codec, Some(VideoCodec::H264));
    let flags: Vec<bool> = got.iter().map(|p| p.keyframe).collect();
    assert_eq!(flags, [true, true, false, false, false, false, false]);
    for (s, r) in key.iter().chain(&delta).zip(&got) {
        assert_eq!(s.payload, r.payload);
        assert_eq!(s.marker, r.marker);
    }
    assert_eq!(relay.ingest_payloads(MediaKind::Video).len(), 7);
    assert!(relay.ingest_payloads(MediaKind::Audio).is_empty());

    publisher.close().await?;
    viewer.close().await?;
    eprintln!("h264 selftest: total {:?}", t0.elapsed());
    Ok(())
}

#[test]
fn payload_builders_and_parsers() {
    let tag = PayloadTag {
        publisher_id: 7,
        kind: MediaKind::Video,
        index: 3,
        seed: 42,
        part: 0,
        parts: 1,
    };
    let key = payload::vp8_frame(true, tag, 3, 100);
    assert_eq!(key.len(), 3);
    assert!(payload::is_vp8_keyframe(&key[0]));
    assert!(!payload::is_vp8_keyframe(&key[1]));
    assert_eq!(&key[0][4..7], &[0x9d, 0x01, 0x2a]);
    assert!(key.iter().all(|p| p.len() == 100));
    assert!(!payload::is_vp8_keyframe(
        &payload::vp8_frame(false, tag, 1, 100)[0]
    ));
    assert_eq!(payload::find_tag(&key[2]).map(|t| t.part), Some(2));
    assert_ne!(
        key[0],
        payload::vp8_frame(true, PayloadTag { seed: 43, ..tag }, 1, 100)[0]
    );
    // VP8 descriptor with extensions (I + 15-bit picture id, L, T) still parses.
    assert!(payload::is_vp8_keyframe(&[
        0x90, 0xe0, 0x80, 0x01, 0x00, 0x00, 0x10, 0, 0
    ]));
    assert!(!payload::is_vp8_keyframe(&[
        0x90, 0xe0, 0x80, 0x01, 0x00, 0x00, 0x11, 0, 0
    ]));

    assert!(payload::is_h264_keyframe(&payload::h264_idr(1)));
    assert!(!payload::is_h264_keyframe(&payload::h264_non_idr(1)));
    assert!(payload::is_h264_keyframe(&payload::h264_stap_a_keyframe(1)));
    let frags = payload::h264_frame(true, tag, 3, 100, true);
    assert_eq!(frags.len(), 4);
    assert!(payload::is_h264_keyframe(&frags[0]) && payload::is_h264_keyframe(&frags[1]));
    assert!(!payload::is_h264_keyframe(&frags[2]));
    assert_eq!(payload::find_tag(&frags[0]).map(|t| t.part), Some(3));
    assert_eq!(payload::find_tag(&frags[3]).map(|t| t.part), Some(2));
    assert!(payload::vp8_keyframe(1) != payload::vp8_keyframe(2));
    assert!(payload::is_vp8_keyframe(&payload::vp8_keyframe(1)));
    assert!(!payload::is_vp8_keyframe(&payload::vp8_delta(1)));
}
