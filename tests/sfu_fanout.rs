//! One webrtc-rs publisher (VP8 video + Opus audio) → 50 webrtc-rs viewers spread over two
//! shards: every viewer receives every payload bit-exact, with continuous sequence numbers.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use hawker::auth::Role;
use support::server::TestServer;
use support::{MediaKind, Publisher, PublisherOpts, ReceivedPacket, Viewer, ViewerOpts};

const VIEWERS: usize = 50;

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
    let publisher = Publisher::connect(&server.whip(show), &token, PublisherOpts::default())
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
                    && l.video.len() >= 60
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
