//! Interop with aiortc (Python: aioice, pylibsrtp, DTLS over pyOpenSSL, libvpx/libopus
//! through PyAV) against the real `hawker` binary, on 127.0.0.1. The peer is
//! `tests/interop/aiortc_peer.py`; `scripts/test.sh` installs aiortc (pinned in
//! `tests/interop/aiortc-requirements.txt`) into `target/interop/aiortc-venv`. Without it the
//! cells are skipped with a message, or fail when `CI` is set.
//!
//! Cells (publisher → viewer), each checking: HTTP 201, the viewer decodes (aiortc) or receives
//! (webrtc-rs) the stream from a keyframe on, the viewer's and the publisher's DELETE answer 200
//! and end their sessions (`hawker_peers` back to 0):
//! * aiortc (VP8 + Opus) → aiortc: at least 60 decoded frames of 320×240, and audio;
//! * aiortc (H.264 + Opus) → webrtc-rs: the first video packet starts a keyframe, 30 frames;
//! * webrtc-rs (VP8, synthetic frames that no decoder accepts) → aiortc: packets received.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::aiortc::{ready_or_skip, run_peer};
use support::binary::Hawker;
use support::{MediaKind, Publisher, PublisherOpts, Viewer, ViewerOpts};

/// Starts the aiortc publisher in the background; its report comes when it ends.
fn spawn_publisher(
    hawker: &Hawker,
    show: &str,
    seconds: u32,
    codec: &str,
) -> tokio::task::JoinHandle<Value> {
    let args = vec![
        "publish".to_string(),
        format!("{}/whip/{show}", hawker.http),
        hawker.token(show, "publisher"),
        seconds.to_string(),
        codec.to_string(),
    ];
    tokio::spawn(run_peer(args, Duration::from_secs(seconds as u64 + 30)))
}

async fn wait_live(hawker: &Hawker) {
    let n = hawker
        .wait_metric("hawker_media_keyframes_in_total", &[], |n| n >= 1.0)
        .await;
    assert!(
        n >= 1.0,
        "the aiortc publisher sends a keyframe; hawker log:\n{}",
        hawker.log()
    );
}

async fn all_gone(hawker: &Hawker) {
    hawker.assert_all_gone().await;
    assert_eq!(
        hawker.metric("hawker_dtls_failures_total", &[]).await,
        0.0,
        "no DTLS failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publisher_to_aiortc_viewer() {
    if !ready_or_skip() {
        return;
    }
    support::init_logging();
    let hawker = Hawker::start_ready("aiortc-aa", 18610, 19610).await;
    let publisher = spawn_publisher(&hawker, "aa", 12, "vp8");
    wait_live(&hawker).await;
    let viewer = run_peer(
        vec![
            "view".into(),
            format!("{}/whep/aa", hawker.http),
            "10".into(),
        ],
        Duration::from_secs(40),
    )
    .await;
    eprintln!("aiortc viewer: {viewer}");
    assert_eq!(viewer["status"], 201, "{viewer}");
    assert!(
        viewer["frames"].as_u64() >= Some(60),
        "decoded frames: {viewer}"
    );
    assert_eq!(
        (viewer["width"].as_u64(), viewer["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert!(
        viewer["audio_frames"].as_u64() >= Some(20),
        "audio: {viewer}"
    );
    assert_eq!(viewer["delete"], 200, "viewer DELETE: {viewer}");
    let publisher = publisher.await.unwrap();
    eprintln!("aiortc publisher: {publisher}");
    assert_eq!(publisher["status"], 201);
    assert_eq!(publisher["connected"], true);
    assert_eq!(publisher["codec"], "VP8", "{publisher}");
    assert_eq!(publisher["delete"], 200, "publisher DELETE: {publisher}");
    all_gone(&hawker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publisher_to_webrtc_rs_viewer() {
    if !ready_or_skip() {
        return;
    }
    support::init_logging();
    let hawker = Hawker::start_ready("aiortc-aw", 18620, 19620).await;
    let publisher = spawn_publisher(&hawker, "aw", 8, "h264");
    wait_live(&hawker).await;
    let viewer = Viewer::connect(
        &format!("{}/whep/aw", hawker.http),
        None,
        ViewerOpts {
            video_codecs: vec![support::VideoCodec::H264],
            ..ViewerOpts::default()
        },
    )
    .await
    .expect("webrtc-rs viewer connects");
    viewer
        .wait_for(
            |log| {
                let frames = log
                    .video
                    .windows(2)
                    .filter(|w| w[0].timestamp != w[1].timestamp)
                    .count();
                frames >= 30 && log.audio.len() >= 20
            },
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|e| panic!("viewer receives the stream: {e:#}\n{}", hawker.log()));
    assert!(
        viewer.log().video.first().is_some_and(|p| p.keyframe),
        "the viewer's first video packet starts a keyframe"
    );
    assert_eq!(viewer.close().await.unwrap(), 200, "viewer DELETE");
    let publisher = publisher.await.unwrap();
    assert_eq!(publisher["codec"], "H264", "{publisher}");
    assert_eq!(publisher["delete"], 200, "publisher DELETE: {publisher}");
    all_gone(&hawker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_publisher_to_aiortc_viewer() {
    if !ready_or_skip() {
        return;
    }
    support::init_logging();
    let hawker = Hawker::start_ready("aiortc-wa", 18630, 19630).await;
    let publisher = Publisher::connect(
        &format!("{}/whip/wa", hawker.http),
        &hawker.token("wa", "publisher"),
        PublisherOpts::default(),
    )
    .await
    .expect("webrtc-rs publisher connects");
    publisher.start_streaming(30);
    wait_live(&hawker).await;
    let viewer = run_peer(
        vec![
            "view".into(),
            format!("{}/whep/wa", hawker.http),
            "4".into(),
        ],
        Duration::from_secs(30),
    )
    .await;
    eprintln!("aiortc viewer: {viewer}");
    assert_eq!(viewer["status"], 201, "{viewer}");
    // The synthetic frames are not decodable: count what arrived.
    assert!(
        viewer["video_packets"].as_u64() >= Some(60),
        "video packets: {viewer}"
    );
    assert!(
        viewer["audio_packets"].as_u64() >= Some(20),
        "audio packets: {viewer}"
    );
    assert_eq!(viewer["delete"], 200, "viewer DELETE: {viewer}");
    let sent = publisher.sent(MediaKind::Video).len();
    assert!(sent > 0);
    assert_eq!(publisher.close().await.unwrap(), 200, "publisher DELETE");
    all_gone(&hawker).await;
}
