//! One webrtc-rs publisher (VP8 video + Opus audio) → 50 webrtc-rs viewers spread over two
//! shards: every viewer receives every payload bit-exact, with continuous sequence numbers.
//!
//! Video frames are split into several packets whose payloads are near the MTU (1180 bytes,
//! ~1.2 kB on the wire), as a browser sends them. For every viewer and kind:
//! * every payload is one the publisher sent, and every packet sent after the viewer's first
//!   one arrived (NACK repairs losses of a loaded machine);
//! * sequence numbers step by exactly one, and a sequence number never carries two different
//!   payloads (a resend must be the same packet);
//! * one SSRC per kind, the same on every packet;
//! * frames stay whole: all packets of a frame share its RTP timestamp and only its last packet
//!   has the marker bit.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use hawker::auth::Role;
use support::server::TestServer;
use support::{MediaKind, Publisher, PublisherOpts, ReceivedPacket, Viewer, ViewerOpts};

const VIEWERS: usize = 50;
/// Packets per video frame.
const PARTS: u16 = 3;
/// RTP payload size of each video packet: near the MTU, as a browser packs a frame.
const PACKET_LEN: usize = 1180;

/// Sequence numbers after dedup (NACK resends may duplicate) must step by exactly one.
fn assert_continuous(pkts: &[ReceivedPacket], what: &str) {
    let mut seqs: Vec<u16> = Vec::new();
    let mut seen = HashSet::new();
    for p in pkts {
        if seen.insert(p.seq) {
            seqs.push(p.seq);
        }
    }
    for w in seqs.windows(2) {
        assert_eq!(
            w[1],
            w[0].wrapping_add(1),
            "{what}: gap or reorder {} → {}",
            w[0],
            w[1]
        );
    }
}

/// A sequence number never carries two different payloads; one SSRC per kind.
fn assert_one_payload_per_seq_and_one_ssrc(pkts: &[ReceivedPacket], what: &str) {
    let mut by_seq: HashMap<u16, [u8; 32]> = HashMap::new();
    for p in pkts {
        let first = *by_seq.entry(p.seq).or_insert(p.payload_sha256);
        assert_eq!(
            first, p.payload_sha256,
            "{what}: sequence number {} carried two different payloads",
            p.seq
        );
    }
    let ssrcs: HashSet<u32> = pkts.iter().map(|p| p.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "{what}: SSRCs {ssrcs:x?}, expected one");
}

/// Every packet of a video frame has the frame's timestamp; the marker is on its last part only.
fn assert_whole_frames(pkts: &[ReceivedPacket], what: &str) {
    let mut ts_of_frame: HashMap<u64, u32> = HashMap::new();
    for p in pkts {
        let tag = p.tag.expect("tagged payload");
        assert_eq!(tag.parts, PARTS, "{what}: frame {} parts", tag.index);
        assert_eq!(
            p.marker,
            tag.part + 1 == tag.parts,
            "{what}: marker bit on part {} of {} of frame {}",
            tag.part,
            tag.parts,
            tag.index
        );
        let ts = *ts_of_frame.entry(tag.index).or_insert(p.timestamp);
        assert_eq!(
            ts, p.timestamp,
            "{what}: frame {} split over timestamps {ts} and {}",
            tag.index, p.timestamp
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_viewers_receive_every_payload_bit_exact() {
    let server = TestServer::start(2, |_| {}).await;
    let show = "fanout";
    server.create_show(show).await;
    let token = server.token(show, Role::Publisher, "seller");

    let mut viewers = Vec::new();
    for _ in 0..VIEWERS {
        viewers.push(
            Viewer::connect(&server.whep(show), None, ViewerOpts::default())
                .await
                .expect("viewer connects"),
        );
    }
    let publisher = Publisher::connect(
        &server.whip(show),
        &token,
        PublisherOpts {
            packets_per_frame: PARTS,
            packet_len: PACKET_LEN,
            ..PublisherOpts::default()
        },
    )
    .await
    .expect("publisher connects");
    // Per-shard viewer gauges: both shards got viewers.
    for shard in ["0", "1"] {
        let n = server
            .metric(
                "hawker_peers",
                &format!("role=\"viewer\",shard=\"{shard}\""),
            )
            .await;
        assert!(n > 0.0, "shard {shard} has no viewers");
    }

    publisher.start_streaming(30);
    // Wait until every viewer has a keyframe and at least 2 s of media.
    for v in &viewers {
        v.wait_for(
            |l| {
                l.video.iter().filter(|p| p.keyframe).count() >= 1
                    && l.video.len() >= 60 * PARTS as usize
                    && l.audio.len() >= 50
            },
            Duration::from_secs(20),
        )
        .await
        .expect("viewer receives video and audio");
    }
    publisher.stop_streaming();
    // Give losses (a loaded machine drops loopback datagrams too) time to be repaired by NACK.
    for v in &viewers {
        let _ = v
            .wait_for(
                |l| {
                    [(&l.video, MediaKind::Video), (&l.audio, MediaKind::Audio)]
                        .iter()
                        .all(|(got, kind)| {
                            let Some(first) = got.first().and_then(|p| p.tag) else {
                                return false;
                            };
                            let have: HashSet<[u8; 32]> =
                                got.iter().map(|p| p.payload_sha256).collect();
                            publisher
                                .sent(*kind)
                                .iter()
                                .filter(|s| s.index >= first.index)
                                .all(|s| have.contains(&s.payload_sha256))
                        })
                },
                Duration::from_secs(5),
            )
            .await;
    }

    let sent: BTreeMap<[u8; 32], ()> = publisher
        .sent_all()
        .iter()
        .map(|p| (p.payload_sha256, ()))
        .collect();
    for (i, v) in viewers.iter().enumerate() {
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let got = v.packets(kind);
            assert!(!got.is_empty(), "viewer {i} got no {kind}");
            for p in &got {
                assert!(
                    sent.contains_key(&p.payload_sha256),
                    "viewer {i}: {kind} payload not sent by the publisher"
                );
            }
            assert_continuous(&got, &format!("viewer {i} {kind}"));
            assert_one_payload_per_seq_and_one_ssrc(&got, &format!("viewer {i} {kind}"));
            if kind == MediaKind::Video {
                assert_whole_frames(&got, &format!("viewer {i} video"));
            }
            // Every packet the publisher sent after the viewer's first one arrived.
            let first_tag = got[0].tag.expect("tagged payload");
            let want: Vec<[u8; 32]> = publisher
                .sent(kind)
                .iter()
                .filter(|s| s.index >= first_tag.index)
                .map(|s| s.payload_sha256)
                .collect();
            let have: HashSet<[u8; 32]> = got.iter().map(|p| p.payload_sha256).collect();
            let missing = want.iter().filter(|h| !have.contains(*h)).count();
            assert_eq!(missing, 0, "viewer {i} missed {missing} {kind} packets");
        }
        if let Some(first) = v.packets(MediaKind::Video).first() {
            assert!(first.keyframe, "viewer {i} video starts at a keyframe");
        }
    }
    let forwarded = server
        .metric("hawker_media_packets_forwarded_total", "")
        .await;
    assert!(forwarded >= (VIEWERS * 100) as f64, "forwarded {forwarded}");

    for v in &viewers {
        assert_eq!(v.close().await.unwrap(), 200);
    }
    assert_eq!(publisher.close().await.unwrap(), 200);
    server.stop().await;
}
