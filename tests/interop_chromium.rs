//! Interop between headless Chromium and webrtc-rs through the real `hawker` binary, on
//! 127.0.0.1. Chromium is driven by `tests/browser/peer.mjs` (playwright-core), which prints
//! one JSON report per run. Needs what the browser tests need (node, Chromium,
//! `tests/browser/node_modules`; `scripts/test.sh` installs them); without them the cells are
//! skipped with a message, or fail when `CI` is set.
//!
//! Cells (publisher → viewer), each checking HTTP 201, the stream arriving from a keyframe on,
//! and both `DELETE`s answering 200 with every session gone (`hawker_peers` back to 0):
//! * Chromium (fake camera, VP8) → webrtc-rs: the first video packet starts a keyframe, then
//!   30 frames and audio;
//! * Chromium (H.264) → webrtc-rs: the same;
//! * webrtc-rs (VP8; synthetic frames no decoder accepts) → Chromium: packets received.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::binary::Hawker;
use support::{MediaKind, Publisher, PublisherOpts, Viewer, ViewerOpts};

async fn chromium_to_webrtc_rs(name: &str, port: u16, codec: support::VideoCodec) {
    if !support::chromium::ready_or_skip() {
        return;
    }
    support::init_logging();
    let hawker = Hawker::start_ready(name, port, port + 1000).await;
    let show = name;
    let wanted = match codec {
        support::VideoCodec::Vp8 => "vp8",
        support::VideoCodec::H264 => "h264",
    };
    let publisher = tokio::spawn(support::chromium::run_peer(
        vec![
            "publish".into(),
            format!("{}/whip/{show}", hawker.http),
            hawker.token(show, "publisher"),
            "10".into(),
            wanted.into(),
        ],
        Duration::from_secs(60),
    ));
    let live = hawker
        .wait_metric("hawker_media_keyframes_in_total", &[], |n| n >= 1.0)
        .await;
    assert!(
        live >= 1.0,
        "Chromium publishes; hawker log:\n{}",
        hawker.log()
    );
    let viewer = Viewer::connect(
        &format!("{}/whep/{show}", hawker.http),
        None,
        ViewerOpts {
            video_codecs: vec![codec],
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
        .unwrap_or_else(|e| panic!("viewer receives Chromium's stream: {e:#}"));
    assert!(
        viewer.log().video.first().is_some_and(|p| p.keyframe),
        "the viewer's first video packet starts a keyframe"
    );
    assert_eq!(viewer.close().await.unwrap(), 200, "viewer DELETE");
    let report: Value = publisher.await.unwrap();
    eprintln!("Chromium publisher: {report}");
    assert_eq!(report["status"], 201, "{report}");
    assert_eq!(report["connected"], true, "{report}");
    let mime = format!("video/{}", wanted.to_uppercase());
    assert_eq!(report["codec"], mime.as_str(), "{report}");
    assert_eq!(report["delete"], 200, "publisher DELETE: {report}");
    hawker.assert_all_gone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_vp8_publisher_to_webrtc_rs_viewer() {
    chromium_to_webrtc_rs("cr-vp8", 18640, support::VideoCodec::Vp8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_h264_publisher_to_webrtc_rs_viewer() {
    chromium_to_webrtc_rs("cr-h264", 18650, support::VideoCodec::H264).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_publisher_to_chromium_viewer() {
    if !support::chromium::ready_or_skip() {
        return;
    }
    support::init_logging();
    let hawker = Hawker::start_ready("rs-cr", 18660, 19660).await;
    let publisher = Publisher::connect(
        &format!("{}/whip/rscr", hawker.http),
        &hawker.token("rscr", "publisher"),
        PublisherOpts::default(),
    )
    .await
    .expect("webrtc-rs publisher connects");
    publisher.start_streaming(30);
    let report = support::chromium::run_peer(
        vec![
            "view".into(),
            format!("{}/whep/rscr", hawker.http),
            "4".into(),
        ],
        Duration::from_secs(60),
    )
    .await;
    eprintln!("Chromium viewer: {report}");
    assert_eq!(report["status"], 201, "{report}");
    assert_eq!(report["connected"], true, "{report}");
    // The synthetic frames are not decodable: count what arrived.
    assert!(
        report["video_packets"].as_u64() >= Some(60),
        "video packets: {report}"
    );
    assert!(
        report["audio_packets"].as_u64() >= Some(20),
        "audio packets: {report}"
    );
    assert_eq!(report["delete"], 200, "viewer DELETE: {report}");
    assert!(!publisher.sent(MediaKind::Video).is_empty());
    assert_eq!(publisher.close().await.unwrap(), 200, "publisher DELETE");
    hawker.assert_all_gone().await;
}
