//! Every kind of bad input against a live server that is, at the same time, relaying a
//! publisher to two viewers. Each refusal has the right status and a one-line reason; the
//! viewers keep receiving without a gap; nothing leaks (peer gauges, publisher slots).
//! Then `/healthz` and `/metrics` (peers by role and shard, shows live, packets / bytes,
//! NACKs, PLIs to publishers), and `anonymous_viewers = false`.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hawker::auth::Role;
use std::sync::Arc;

use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection as Dir, RTCRtpTransceiverInit};
use support::peer::{self, PeerConfig};
use support::server::{
    delete_raw, expired_token, foreign_token, get_raw, post_raw, sum_metric, HttpReply, LossyLink,
    TestServer,
};
use support::{
    MediaKind, Publisher, PublisherOpts, ReceivedPacket, VideoCodec, Viewer, ViewerOpts,
};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::MediaStreamTrack;

const SDP: &str = "application/sdp";

/// A gathered offer from a fresh webrtc-rs peer with the given transceivers.
async fn offer(codec: VideoCodec, video: Option<Dir>, audio: Option<Dir>) -> String {
    let (pc, mut events) = peer::build_peer(&PeerConfig {
        video_codecs: vec![codec],
        default_interceptors: true,
        keyframe_requests_to_app: false,
        rsa_certificate: false,
        dtls_cipher_suites: Vec::new(),
    })
    .await
    .unwrap();
    for (dir, kind) in [(video, RtpCodecKind::Video), (audio, RtpCodecKind::Audio)] {
        let Some(direction) = dir else { continue };
        let init = Some(RTCRtpTransceiverInit {
            direction,
            ..Default::default()
        });
        if direction == Dir::Sendonly || direction == Dir::Sendrecv {
            // webrtc-rs wants a track for a sending transceiver.
            let (codec_desc, name) = match kind {
                RtpCodecKind::Audio => (peer::opus_rtp_codec(), "audio"),
                _ => (peer::video_rtp_codec(codec), "video"),
            };
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "offer".to_owned(),
                format!("offer-{name}"),
                name.to_owned(),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(0x4242_0000 | kind as u32),
                        ..Default::default()
                    },
                    active: true,
                    codec: codec_desc,
                    ..Default::default()
                }],
            )));
            pc.add_transceiver_from_track(track as Arc<dyn TrackLocal>, init)
                .await
                .unwrap();
        } else {
            pc.add_transceiver_from_kind(kind, init).await.unwrap();
        }
    }
    let sdp = peer::create_gathered_offer(&pc, &mut events, Duration::from_secs(5))
        .await
        .unwrap();
    let _ = pc.close().await;
    sdp
}

/// `offer` with the only video codec renamed (VP8 → VP9), i.e. a codec no show takes.
fn vp9_only(sdp: &str) -> String {
    assert!(sdp.contains("VP8/90000"), "offer has VP8: {sdp}");
    sdp.replace("VP8/90000", "VP9/90000")
}

/// `offer` with H.264 downgraded to packetization-mode=0.
fn h264_mode0(sdp: &str) -> String {
    assert!(
        sdp.contains("packetization-mode=1"),
        "offer has pm=1: {sdp}"
    );
    sdp.replace("packetization-mode=1", "packetization-mode=0")
}

/// Sequence continuity after dedupe (NACK resends may duplicate).
fn gaps(pkts: &[ReceivedPacket]) -> Vec<(u16, u16)> {
    let mut seen = HashSet::new();
    let mut seqs = Vec::new();
    for p in pkts {
        if seen.insert(p.seq) {
            seqs.push(p.seq);
        }
    }
    seqs.windows(2)
        .filter(|w| w[1] != w[0].wrapping_add(1))
        .map(|w| (w[0], w[1]))
        .collect()
}

/// Checks a refusal: status, one non-empty line of reason, optional substring.
fn expect(failures: &mut Vec<String>, what: &str, r: &HttpReply, status: u16, needle: &str) {
    let body = r.body.trim_end_matches('\n');
    let one_line = !body.trim().is_empty() && !body.contains('\n');
    let has = needle.is_empty() || body.to_lowercase().contains(&needle.to_lowercase());
    if r.status != status || !one_line || !has {
        failures.push(format!(
            "{what}: expected {status} with a one-line reason{}, got {} {:?}",
            if needle.is_empty() {
                String::new()
            } else {
                format!(" mentioning {needle:?}")
            },
            r.status,
            r.body.chars().take(300).collect::<String>()
        ));
    }
    if status == 401 && r.headers.get("www-authenticate").is_none() {
        failures.push(format!("{what}: 401 without WWW-Authenticate"));
    }
}

/// Hand-made datagrams that no peer should accept: noise and near-valid STUN / DTLS / RTP.
fn garbage_datagrams() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut x: u32 = 0x1234_5678;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    // Pure noise of many sizes, including 0 and larger than the shard's 2048-byte buffer.
    for len in [0usize, 1, 2, 3, 4, 12, 20, 64, 200, 1200, 1500, 3000] {
        out.push((0..len).map(|_| rnd() as u8).collect());
    }
    // Noise with each demultiplexing first byte (RFC 7983): STUN 0-3, DTLS 20-63, RTP 128-191.
    for first in [
        0u8, 1, 2, 3, 20, 22, 23, 63, 64, 127, 128, 144, 191, 192, 255,
    ] {
        for len in [1usize, 8, 13, 100] {
            let mut d: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            d[0] = first;
            out.push(d);
        }
    }
    // STUN binding request, valid framing, unknown ufrag, bogus integrity, valid fingerprint.
    out.push(stun_request(b"nobody:nothing", None));
    out.push(stun_request(b":", None));
    out.push(stun_request(&[0xff; 300], None));
    out.push(stun_request(b"nobody:nothing", Some(4000))); // length beyond the datagram
    out.push(stun_request(b"nobody:nothing", Some(3))); // length not a multiple of 4
                                                        // STUN header only, and with an attribute claiming more than is there.
    let mut h = vec![0, 1, 0, 8, 0x21, 0x12, 0xA4, 0x42];
    h.extend_from_slice(b"garbage-txid");
    out.push(h.clone());
    h.extend_from_slice(&[0x00, 0x06, 0x10, 0x00, b'a', b'b', b'c', b'd']);
    out.push(h);
    // DTLS ClientHello-like record, and one whose length overruns.
    let mut dtls = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1, 0, 0, 28];
    dtls.extend((0..40).map(|_| rnd() as u8));
    out.push(dtls.clone());
    dtls[11] = 0xff;
    dtls[12] = 0xff;
    out.push(dtls);
    // Well-formed RTP and RTCP headers from a stranger.
    let mut rtp = vec![0x80, 96, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend((0..100).map(|_| rnd() as u8));
    out.push(rtp);
    out.push(vec![
        0x81, 200, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0,
    ]);
    out
}

/// A STUN binding request with `USERNAME = user`, a bogus MESSAGE-INTEGRITY and a valid
/// FINGERPRINT; `claimed_len` overrides the header's length field.
fn stun_request(user: &[u8], claimed_len: Option<u16>) -> Vec<u8> {
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attrs.extend_from_slice(user);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&[0xAB; 20]);
    let mut m = Vec::new();
    m.extend_from_slice(&0x0001u16.to_be_bytes());
    let len = attrs.len() as u16 + 8;
    m.extend_from_slice(&claimed_len.unwrap_or(len).to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend_from_slice(b"garbage-txid");
    m.extend_from_slice(&attrs);
    let crc = crc32(&m) ^ 0x5354_554e;
    m.extend_from_slice(&0x8028u16.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

/// The value of the first `a={attr}:` line of an SDP.
fn sdp_attr(sdp: &str, attr: &str) -> Option<String> {
    let key = format!("a={attr}:");
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(key.as_str()).map(str::to_string))
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_live_viewers_are_unaffected() {
    support::init_logging();
    let t_test = Instant::now();
    let server = TestServer::start(2, |_| {}).await;
    let show = "live";
    let other = "other";
    let pub_token = server.token(show, Role::Publisher, "seller");
    let other_pub_token = server.token(other, Role::Publisher, "seller2");
    let viewer_token = server.token(show, Role::Viewer, "alice");
    server.create_show(show).await;

    // The live show: a publisher and two viewers (one per shard).
    let v1 = Viewer::connect(&server.whep(show), None, ViewerOpts::default())
        .await
        .unwrap();
    let v2 = Viewer::connect(&server.whep(show), None, ViewerOpts::default())
        .await
        .unwrap();
    let publisher = Publisher::connect(&server.whip(show), &pub_token, PublisherOpts::default())
        .await
        .unwrap();
    publisher.start_streaming(30);
    for v in [&v1, &v2] {
        v.wait_for(
            |l| l.video.len() >= 30 && l.audio.len() >= 40,
            Duration::from_secs(10),
        )
        .await
        .expect("viewers receive");
    }
    let peers_before = server.metric("hawker_peers", "").await;
    assert_eq!(peers_before, 3.0, "1 publisher + 2 viewers");

    let mut f: Vec<String> = Vec::new();
    let whip = server.whip(show);
    let whep = server.whep(show);
    let whip_other = server.whip(other);
    let good_pub_offer = offer(VideoCodec::Vp8, Some(Dir::Sendonly), Some(Dir::Sendonly)).await;
    let good_view_offer = offer(VideoCodec::Vp8, Some(Dir::Recvonly), Some(Dir::Recvonly)).await;
    let pt = Some(pub_token.as_str());
    let ot = Some(other_pub_token.as_str());

    // --- Not SDP / malformed SDP: 400.
    for (what, body) in [
        ("plain text", "hello, I am not SDP".as_bytes().to_vec()),
        ("empty body", Vec::new()),
        ("JSON", br#"{"type":"offer","sdp":"v=0"}"#.to_vec()),
        ("not UTF-8", vec![0xff, 0xfe, 0x00, 0x76, 0x3d, 0x30]),
    ] {
        let r = post_raw(&whip, Some(SDP), pt, body.clone()).await;
        expect(&mut f, &format!("WHIP {what}"), &r, 400, "");
        let r = post_raw(&whep, Some(SDP), None, body).await;
        expect(&mut f, &format!("WHEP {what}"), &r, 400, "");
    }
    let truncated = good_pub_offer[..good_pub_offer.len() / 3].to_string();
    for (what, body) in [
        ("SDP cut in the middle", truncated),
        ("SDP header only", "v=0\r\n".to_string()),
        (
            "SDP with a broken m-line",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video nine UDP/TLS/RTP/SAVPF x\r\n"
                .to_string(),
        ),
        ("SDP without ICE/DTLS", {
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"
                .to_string()
        }),
    ] {
        let r = post_raw(&whip_other, Some(SDP), ot, body.clone()).await;
        expect(&mut f, &format!("WHIP {what}"), &r, 400, "");
        let r = post_raw(&whep, Some(SDP), None, body).await;
        expect(&mut f, &format!("WHEP {what}"), &r, 400, "");
    }

    // --- Wrong Content-Type: 415.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/json"),
        Some("application/sdpx"),
    ] {
        let r = post_raw(&whip, ct, pt, good_pub_offer.clone()).await;
        expect(
            &mut f,
            &format!("WHIP Content-Type {ct:?}"),
            &r,
            415,
            "content-type",
        );
        let r = post_raw(&whep, ct, None, good_view_offer.clone()).await;
        expect(
            &mut f,
            &format!("WHEP Content-Type {ct:?}"),
            &r,
            415,
            "content-type",
        );
    }
    // Parameters and case are fine.
    let r = post_raw(
        &whip_other,
        Some("Application/SDP; charset=utf-8"),
        ot,
        good_pub_offer.clone(),
    )
    .await;
    if r.status != 201 {
        f.push(format!(
            "WHIP with Content-Type `Application/SDP; charset=utf-8`: {} {}",
            r.status, r.body
        ));
    } else if let Some(loc) = r.headers.get("location").and_then(|l| l.to_str().ok()) {
        let d = delete_raw(&format!("{}{loc}", server.base)).await;
        if d.status != 200 {
            f.push(format!("DELETE of the session just created: {}", d.status));
        }
    }

    // --- Too large: 413.
    let limit = server.app().cfg.http.max_body_bytes;
    let mut big = good_pub_offer.clone();
    while big.len() <= limit + 1024 {
        big.push_str(
            "a=x-padding:0123456789012345678901234567890123456789012345678901234567890123\r\n",
        );
    }
    let r = post_raw(&whip, Some(SDP), pt, big.clone()).await;
    expect(&mut f, "WHIP body over http.max_body_bytes", &r, 413, "");
    let r = post_raw(&whep, Some(SDP), None, big).await;
    expect(&mut f, "WHEP body over http.max_body_bytes", &r, 413, "");

    // --- Tokens: 401 / 403.
    let expired = expired_token(show, Role::Publisher);
    let foreign = foreign_token(show, Role::Publisher);
    let viewer_pub_token = viewer_token.clone();
    let other_show_pub = server.token("elsewhere", Role::Publisher, "seller3");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (what, auth, status) in [
        ("no Authorization", None, 401),
        ("empty bearer", Some("Bearer ".to_string()), 401),
        ("not a JWT", Some("Bearer not-a-token".to_string()), 401),
        ("wrong scheme", Some(format!("Basic {pub_token}")), 401),
        ("wrong secret", Some(format!("Bearer {foreign}")), 401),
        ("expired", Some(format!("Bearer {expired}")), 401),
        (
            "viewer token on WHIP",
            Some(format!("Bearer {viewer_pub_token}")),
            403,
        ),
        (
            "publisher token for another show",
            Some(format!("Bearer {other_show_pub}")),
            403,
        ),
    ] {
        let mut req = client
            .post(&whip)
            .header("content-type", SDP)
            .body(good_pub_offer.clone());
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        let r = HttpReply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        };
        expect(
            &mut f,
            &format!("WHIP {what}"),
            &r,
            status,
            if what == "expired" { "expired" } else { "" },
        );
    }
    // WHEP with a token present but bad is refused even though anonymous viewing is on.
    for (what, tok) in [
        ("expired", expired_token(show, Role::Viewer)),
        ("wrong secret", foreign_token(show, Role::Viewer)),
    ] {
        let r = post_raw(&whep, Some(SDP), Some(&tok), good_view_offer.clone()).await;
        expect(&mut f, &format!("WHEP {what} token"), &r, 401, "");
    }
    let r = post_raw(
        &whep,
        Some(SDP),
        Some(&other_show_pub),
        good_view_offer.clone(),
    )
    .await;
    expect(&mut f, "WHEP token for another show", &r, 403, "");

    // --- Unknown sessions: 404; the live publisher's session under another show: 404 and no harm.
    for url in [
        format!(
            "{}/whip/{show}/00000000000000000000000000000000",
            server.base
        ),
        format!("{}/whep/{show}/deadbeef", server.base),
        format!("{}/whep/nosuchshow/deadbeef", server.base),
    ] {
        let r = delete_raw(&url).await;
        expect(&mut f, &format!("DELETE {url}"), &r, 404, "");
    }
    let pub_session = publisher.location().rsplit('/').next().unwrap().to_string();
    let r = delete_raw(&format!("{}/whip/{other}/{pub_session}", server.base)).await;
    expect(
        &mut f,
        "DELETE the live publisher's session under another show",
        &r,
        404,
        "",
    );

    // --- Offers the show cannot use: 422 with a reason.
    let vp9_pub = vp9_only(&offer(VideoCodec::Vp8, Some(Dir::Sendonly), None).await);
    let r = post_raw(&whip_other, Some(SDP), ot, vp9_pub).await;
    expect(&mut f, "WHIP VP9-only offer", &r, 422, "codec");
    let h264_0 = h264_mode0(&offer(VideoCodec::H264, Some(Dir::Sendonly), None).await);
    let r = post_raw(&whip_other, Some(SDP), ot, h264_0).await;
    expect(
        &mut f,
        "WHIP H.264 packetization-mode=0-only offer",
        &r,
        422,
        "codec",
    );
    let vp9_view = vp9_only(&offer(VideoCodec::Vp8, Some(Dir::Recvonly), None).await);
    let r = post_raw(&whep, Some(SDP), None, vp9_view).await;
    expect(&mut f, "WHEP VP9-only offer", &r, 422, "codec");

    // --- Wrong direction: 400.
    let recvonly = offer(VideoCodec::Vp8, Some(Dir::Recvonly), Some(Dir::Recvonly)).await;
    let r = post_raw(&whip_other, Some(SDP), ot, recvonly).await;
    expect(&mut f, "WHIP recvonly offer", &r, 400, "send");
    let sendonly = offer(VideoCodec::Vp8, Some(Dir::Sendonly), Some(Dir::Sendonly)).await;
    let r = post_raw(&whep, Some(SDP), None, sendonly).await;
    expect(&mut f, "WHEP sendonly offer", &r, 400, "receive");

    // --- Bad show ids: 400.
    let long = "x".repeat(65);
    for id in ["bad%20show", "a.b", long.as_str()] {
        let r = post_raw(
            &format!("{}/whep/{id}", server.base),
            Some(SDP),
            None,
            good_view_offer.clone(),
        )
        .await;
        expect(&mut f, &format!("WHEP show id {id:?}"), &r, 400, "show id");
    }

    // --- No publisher slot or peer leaked by the refusals: "other" can still be published.
    let second = Publisher::connect(&whip_other, &other_pub_token, PublisherOpts::default()).await;
    match second {
        Ok(p) => {
            assert_eq!(p.close().await.unwrap(), 200);
        }
        Err(e) => f.push(format!(
            "publishing to {other:?} after the refused offers: {e:#}"
        )),
    }
    let (peers_after, settled) = server
        .wait_metric("hawker_peers", "", Duration::from_secs(3), |v| {
            v == peers_before
        })
        .await;
    if !settled {
        f.push(format!(
            "peer gauge {peers_after} after the refusals, was {peers_before}"
        ));
    }

    // --- Garbage datagrams to every shard: counted, nobody hurt.
    let shards = server.shard_addrs();
    let garbage = garbage_datagrams();
    // Peers refused or deleted above may still have had packets in flight (counted as garbage
    // by design): wait until the counters are quiet for 500 ms before counting ours.
    let mut before = server
        .metric_per_shard("hawker_media_garbage_total", "")
        .await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = server
            .metric_per_shard("hawker_media_garbage_total", "")
            .await;
        if now == before {
            break;
        }
        before = now;
    }
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for addr in &shards {
        for d in &garbage {
            sock.send_to(d, addr).await.unwrap();
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = server
        .metric_per_shard("hawker_media_garbage_total", "")
        .await;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if (a - b) as usize != garbage.len() {
            f.push(format!(
                "shard {i}: hawker_media_garbage_total moved by {} for {} garbage datagrams",
                a - b,
                garbage.len()
            ));
        }
    }

    // --- Spoofed connectivity checks: a stranger who knows a live viewer's ICE username (it
    //     is cleartext on the wire) but not its password must neither be accepted nor get
    //     anything back; counted as garbage on the viewer's shard.
    let answer = v1.answer_sdp().to_string();
    let server_ufrag = sdp_attr(&answer, "ice-ufrag").expect("answer has ice-ufrag");
    let client_ufrag = sdp_attr(v1.offer_sdp(), "ice-ufrag").expect("offer has ice-ufrag");
    let cand = sdp_attr(&answer, "candidate").expect("answer has a candidate");
    let c: Vec<&str> = cand.split_whitespace().collect();
    let v1_shard_addr: std::net::SocketAddr = format!("{}:{}", c[4], c[5]).parse().unwrap();
    let v1_shard = shards
        .iter()
        .position(|a| *a == v1_shard_addr)
        .expect("candidate is a shard");
    let spoofer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = server
        .metric_per_shard("hawker_media_garbage_total", "")
        .await;
    let spoofed = 20;
    for k in 0..spoofed {
        let user = if k % 2 == 0 {
            format!("{server_ufrag}:{client_ufrag}")
        } else {
            format!("{server_ufrag}:x")
        };
        spoofer
            .send_to(&stun_request(user.as_bytes(), None), v1_shard_addr)
            .await
            .unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut answered = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, spoofer.recv_from(&mut buf)).await {
        answered += 1;
    }
    if answered > 0 {
        f.push(format!(
            "{answered} datagrams sent back to a stranger spoofing viewer 1's ICE username"
        ));
    }
    let after = server
        .metric_per_shard("hawker_media_garbage_total", "")
        .await;
    let moved = after[v1_shard] - before[v1_shard];
    if moved as usize != spoofed {
        f.push(format!(
            "shard {v1_shard}: hawker_media_garbage_total moved by {moved} for {spoofed} spoofed \
             binding requests with viewer 1's ufrag"
        ));
    }

    // --- The live show never noticed.
    let counts: Vec<usize> = [&v1, &v2]
        .iter()
        .map(|v| v.packets(MediaKind::Video).len())
        .collect();
    for (i, v) in [&v1, &v2].iter().enumerate() {
        let res = v
            .wait_for(
                |l| l.video.len() >= counts[i] + 45 && l.audio.len() >= 100,
                Duration::from_secs(5),
            )
            .await;
        if let Err(e) = res {
            f.push(format!("viewer {i} stalled after the bad input: {e}"));
        }
    }
    publisher.stop_streaming();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: HashSet<[u8; 32]> = publisher
        .sent_all()
        .iter()
        .map(|p| p.payload_sha256)
        .collect();
    for (i, v) in [&v1, &v2].iter().enumerate() {
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let pk = v.packets(kind);
            let g = gaps(&pk);
            if !g.is_empty() {
                f.push(format!(
                    "viewer {i} {kind}: sequence gaps {:?}",
                    &g[..g.len().min(5)]
                ));
            }
            if pk.iter().any(|p| !sent.contains(&p.payload_sha256)) {
                f.push(format!(
                    "viewer {i} {kind}: payload not sent by the publisher"
                ));
            }
            let first = pk[0].tag.unwrap().index;
            let have: HashSet<[u8; 32]> = pk.iter().map(|p| p.payload_sha256).collect();
            let missed = publisher
                .sent(kind)
                .iter()
                .filter(|s| s.index >= first && !have.contains(&s.payload_sha256))
                .count();
            if missed > 0 {
                f.push(format!("viewer {i} {kind}: {missed} packets missed"));
            }
        }
    }
    let live = server.metric("hawker_peers", "role=\"publisher\"").await;
    if live != 1.0 {
        f.push(format!(
            "publisher gauge {live} at the end (publisher should still be there)"
        ));
    }
    eprintln!("bad-input phase done after {:?}", t_test.elapsed());
    assert!(f.is_empty(), "{} problems:\n{}", f.len(), f.join("\n"));
    publisher.close().await.unwrap();
    v1.close().await.unwrap();
    v2.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    support::init_logging();
    // Joiners here must go through the PLI path (this test checks the PLI counter), and must
    // not trip over the keyframe-cache start bug that tests/sfu_keyframes.rs pins down.
    let server = TestServer::start(2, |cfg| {
        cfg.media.keyframe_cache_max_age = Duration::ZERO;
    })
    .await;
    let show = "metrics";
    let token = server.token(show, Role::Publisher, "seller");
    let home = server.home_shard(show);
    let mut f: Vec<String> = Vec::new();

    for base in [&server.base, &server.metrics] {
        let r = get_raw(&format!("{base}/healthz")).await;
        if r.status != 200 {
            f.push(format!("{base}/healthz: {} {}", r.status, r.body));
        }
    }

    let publisher = Publisher::connect(&server.whip(show), &token, PublisherOpts::default())
        .await
        .unwrap();
    publisher.start_streaming(30);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Two direct viewers (one per shard) and one behind a lossy path that drops every 20th
    // server→viewer video packet, so that it NACKs.
    let v1 = Viewer::connect(&server.whep(show), None, ViewerOpts::default())
        .await
        .unwrap();
    let v2 = Viewer::connect(&server.whep(show), None, ViewerOpts::default())
        .await
        .unwrap();
    let link = LossyLink::start(&server).await;
    let lossy = Viewer::connect(&link.whep(show), None, ViewerOpts::default())
        .await
        .unwrap();
    let mut started = Vec::new();
    for (name, v) in [("direct 1", &v1), ("direct 2", &v2), ("relayed", &lossy)] {
        let r = v
            .wait_for(|l| l.first_keyframe().is_some(), Duration::from_secs(5))
            .await;
        started.push(format!(
            "{name}: {}",
            r.map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string())
        ));
    }
    assert!(
        started.iter().all(|s| s.ends_with(": ok")),
        "viewers joining 0.5 s into the show get video: {started:#?}"
    );
    link.drop_every(20);
    for v in [&v1, &v2, &lossy] {
        v.wait_for(|l| l.video.len() >= 90, Duration::from_secs(10))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let text = server.metrics_text().await;
    let m = |name: &str, filters: &[&str]| sum_metric(&text, name, filters);
    let n = server.shard_addrs().len();
    // Peers by role and shard.
    let home_label = format!("shard=\"{home}\"");
    if m("hawker_peers", &["role=\"publisher\"", &home_label]) != 1.0 {
        f.push(format!("publisher not counted on its home shard {home}"));
    }
    if m("hawker_peers", &["role=\"publisher\""]) != 1.0 {
        f.push("publisher count != 1".into());
    }
    if m("hawker_peers", &["role=\"viewer\""]) != 3.0 {
        f.push(format!(
            "viewer count {} != 3",
            m("hawker_peers", &["role=\"viewer\""])
        ));
    }
    for i in 0..n {
        let shard = format!("shard=\"{i}\"");
        for role in ["role=\"viewer\"", "role=\"publisher\""] {
            let present = text
                .lines()
                .any(|l| l.starts_with("hawker_peers{") && l.contains(role) && l.contains(&shard));
            if !present {
                f.push(format!("no hawker_peers line for {role} {shard}"));
            }
        }
        if m("hawker_peers", &["role=\"viewer\"", &shard]) < 1.0 {
            f.push(format!(
                "no viewer counted on shard {i} (least-loaded placement)"
            ));
        }
    }
    if m("hawker_shows_live", &[]) != 1.0 {
        f.push(format!(
            "hawker_shows_live = {}",
            m("hawker_shows_live", &[])
        ));
    }
    // Packets and bytes, in and out.
    let sent_pkts = publisher.sent_all().len() as f64;
    let pin = m("hawker_media_packets_in_total", &[]);
    if pin < sent_pkts * 0.9 || pin > sent_pkts * 1.1 {
        f.push(format!(
            "packets in {pin} vs {sent_pkts} sent by the publisher"
        ));
    }
    for name in [
        "hawker_media_datagrams_out_total",
        "hawker_media_bytes_in_total",
        "hawker_media_bytes_out_total",
        "hawker_media_packets_forwarded_total",
    ] {
        if m(name, &[]) <= 0.0 {
            f.push(format!("{name} is {}", m(name, &[])));
        }
    }
    let fwd = m("hawker_media_packets_forwarded_total", &[]);
    let received: usize = [&v1, &v2, &lossy]
        .iter()
        .map(|v| v.log().video.len() + v.log().audio.len())
        .sum();
    if fwd < received as f64 * 0.9 {
        f.push(format!("forwarded {fwd} < received by viewers {received}"));
    }
    // PLIs sent to the publisher: what the publisher counted.
    let plis = m("hawker_media_publisher_plis_total", &[]);
    let got = publisher.keyframe_requests() as f64;
    if plis < 1.0 || plis != got {
        f.push(format!(
            "hawker_media_publisher_plis_total = {plis}, publisher received {got}"
        ));
    }
    // NACKs from the lossy viewer.
    let nacks = m("hawker_media_nacks_total", &[]);
    let dropped = link.dropped();
    let nack_like = link.nack_like_up();
    let have: HashSet<[u8; 32]> = lossy
        .packets(MediaKind::Video)
        .iter()
        .map(|p| p.payload_sha256)
        .collect();
    let first = lossy.packets(MediaKind::Video)[0].tag.unwrap().index;
    let unrecovered = publisher
        .sent(MediaKind::Video)
        .iter()
        .filter(|s| s.index >= first && !have.contains(&s.payload_sha256))
        .count();
    eprintln!(
        "lossy path: dropped {dropped} video packets, saw {nack_like} cleartext NACK datagrams from \
         the viewer, {unrecovered} packets never recovered; hawker_media_nacks_total = {nacks}"
    );
    if !text
        .lines()
        .any(|l| l.starts_with("hawker_media_nacks_total"))
    {
        f.push("hawker_media_nacks_total not exposed".into());
    }
    if dropped == 0 {
        f.push("the lossy link dropped nothing (test broken)".into());
    } else if nacks < 1.0 {
        f.push(format!(
            "hawker_media_nacks_total = {nacks} although {dropped} packets to a viewer were lost \
             ({nack_like} NACK datagrams seen on the wire, {unrecovered} never recovered)"
        ));
    }
    assert!(f.is_empty(), "{} problems:\n{}", f.len(), f.join("\n"));
    publisher.close().await.unwrap();
    for v in [&v1, &v2, &lossy] {
        v.close().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_viewers_off_requires_a_token() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| cfg.auth.anonymous_viewers = false).await;
    let show = "members";
    server.create_show(show).await;
    let view = offer(VideoCodec::Vp8, Some(Dir::Recvonly), Some(Dir::Recvonly)).await;
    let mut f = Vec::new();
    let r = post_raw(&server.whep(show), Some(SDP), None, view.clone()).await;
    expect(&mut f, "WHEP without a token", &r, 401, "token");
    let r = post_raw(
        &server.whep(show),
        Some(SDP),
        Some(&expired_token(show, Role::Viewer)),
        view.clone(),
    )
    .await;
    expect(&mut f, "WHEP with an expired token", &r, 401, "expired");
    // With a viewer token it works (the refusal above is about the token, not the offer).
    let tok = server.token(show, Role::Viewer, "member");
    match Viewer::connect(&server.whep(show), Some(&tok), ViewerOpts::default()).await {
        Ok(v) => {
            v.close().await.unwrap();
        }
        Err(e) => f.push(format!("WHEP with a viewer token: {e:#}")),
    }
    assert!(f.is_empty(), "{}", f.join("\n"));
    server.stop().await;
}
