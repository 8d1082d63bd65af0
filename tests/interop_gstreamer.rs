//! Interop with GStreamer's WebRTC stack against the real `hawker` binary: `whipsink`
//! (gst-plugins-rs `webrtchttp`, on webrtcbin + libnice + OpenSSL) publishes H.264 + Opus (one
//! cell) or VP8 + Opus (another), and a webrtc-rs viewer and an aiortc viewer (which decodes
//! the video) watch over WHEP.
//!
//! webrtcbin presents a self-signed **RSA-2048** DTLS certificate, so this is the test that
//! hawker's DTLS server accepts RSA client certificates (see `patches/README.md`). The cell
//! passes when the publisher connects, the viewer starts from the keyframe cache and receives
//! the stream, the viewer's DELETE ends its session, and stopping whipsink ends the
//! publisher's.
//!
//! libnice gathers no candidates on loopback interfaces, so the test re-runs itself in a
//! private network namespace (`unshare -n`, or `unshare -rn` without root) with a veth holding
//! 127.0.0.2, where hawker's media sockets bind (`media.bind_ip`). Nothing leaves the
//! namespace.
//!
//! Needs `gst-launch-1.0` and the `webrtchttp` plugin on `GST_PLUGIN_PATH`, which
//! `scripts/test.sh` installs (Debian's GStreamer 1.22, gst-plugin-webrtchttp built from
//! crates.io). Without them the test is skipped with a message, or fails when `CI` is set.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::binary::{Hawker, Proc};
use support::server::get_raw;
use support::{MediaKind, Viewer, ViewerOpts};

const IN_NETNS: &str = "HAWKER_TEST_IN_NETNS";
const MEDIA_IP: &str = "127.0.0.2";

/// Whether GStreamer with `whipsink` is usable; `Err` says what is missing.
fn gstreamer_ready() -> Result<(), String> {
    let out = Command::new("gst-inspect-1.0")
        .arg("whipsink")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("gst-inspect-1.0 not runnable: {e}"))?;
    if !out.success() {
        return Err(
            "GStreamer has no whipsink (GST_PLUGIN_PATH without gst-plugin-webrtchttp)".into(),
        );
    }
    Ok(())
}

/// Re-runs `test` of this binary inside a fresh network namespace with lo up and a veth
/// holding [`MEDIA_IP`]; returns whether it passed.
fn run_in_netns(test: &str) -> bool {
    let exe = std::env::current_exe().expect("test binary path");
    let setup = format!(
        "set -e; ip link set lo up; ip link add hk0 type veth peer name hk1; \
         ip addr add {MEDIA_IP}/8 dev hk0; ip link set hk0 up; ip link set hk1 up; \
         exec \"$0\" \"$@\""
    );
    // As root `-n` is enough; otherwise a user namespace grants the rights in the new one.
    let root = unsafe { libc_geteuid() } == 0;
    let flags: &[&str] = if root { &["-n"] } else { &["-rn"] };
    let status = Command::new("unshare")
        .args(flags)
        .args(["sh", "-c", &setup])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .status()
        .expect("unshare runs");
    status.success()
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// `gst-launch-1.0 -e` publishing H.264 (x264, a keyframe every second) or VP8 (libvpx, the
/// same keyframe interval) + Opus via whipsink.
///
/// x264's defaults are kept on purpose: every frame starts with an access-unit delimiter, so
/// the keyframe's SPS/IDR arrives in the frame's second packet (the cell checks that hawker still
/// sees the keyframes and serves viewers from its cache).
fn whipsink(endpoint: &str, token: &str, codec: support::VideoCodec) -> Proc {
    let video = match codec {
        support::VideoCodec::H264 => {
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=500 \
             ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=102 \
             ! application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000"
        }
        support::VideoCodec::Vp8 => {
            "vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=500000 ! rtpvp8pay pt=96 \
             ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"
        }
    };
    let pipeline = format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! videoconvert ! {video} ! whip.sink_0 \
         audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc \
         ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! whip.sink_1 \
         whipsink name=whip whip-endpoint={endpoint} auth-token={token}"
    );
    Command::new("gst-launch-1.0")
        .arg("-e")
        .args(pipeline.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Proc)
        .expect("gst-launch-1.0 starts")
}

/// SIGINT (`gst-launch -e` turns it into end of stream), then waits up to 10 s for the
/// process to exit before killing it.
async fn interrupt(Proc(child): &mut Proc) {
    unsafe { libc_kill(child.id() as i32, 2) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cell` in a fresh network namespace (re-running this test binary there), or skips when
/// GStreamer is missing outside CI.
fn netns_cell(test: &str, codec: support::VideoCodec) {
    if std::env::var_os(IN_NETNS).is_some() {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(whipsink_cell(codec));
    }
    if let Err(why) = gstreamer_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("GStreamer interop cannot run: {why}");
        }
        eprintln!("skipped: {why} (scripts/test.sh installs it)");
        return;
    }
    assert!(
        run_in_netns(test),
        "the GStreamer cell failed inside its network namespace (output above)"
    );
}

#[test]
fn gstreamer_whipsink_to_webrtc_rs_viewer() {
    netns_cell(
        "gstreamer_whipsink_to_webrtc_rs_viewer",
        support::VideoCodec::H264,
    );
}

#[test]
fn gstreamer_whipsink_vp8_to_webrtc_rs_viewer() {
    netns_cell(
        "gstreamer_whipsink_vp8_to_webrtc_rs_viewer",
        support::VideoCodec::Vp8,
    );
}

async fn whipsink_cell(codec: support::VideoCodec) {
    support::init_logging();
    let hawker = Hawker::start("gst", MEDIA_IP, 18480, 19480);
    let up = Instant::now();
    while get_raw_ok(&hawker.metrics).await.is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "hawker did not start:\n{}",
            hawker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let show = "gst";
    let token = hawker.token(show, "publisher");
    let mut gst = whipsink(&format!("{}/whip/{show}", hawker.http), &token, codec);

    let live = hawker
        .wait_metric("hawker_media_keyframes_in_total", &[], |n| n >= 2.0)
        .await;
    if live < 2.0 {
        let metrics = get_raw(&hawker.metrics).await.body;
        let media: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("hawker_media") || l.starts_with("hawker_dtls"))
            .collect();
        panic!(
            "whipsink (RSA certificate) publishes keyframes, got {live}; metrics:\n{}\nhawker log:\n{}",
            media.join("\n"),
            hawker.log()
        );
    }

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
            // Frames, not packets: x264 leads each frame with a delimiter packet.
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
    let log = viewer.log();
    assert!(
        log.video.first().is_some_and(|p| p.keyframe),
        "the viewer's first video packet starts a keyframe"
    );
    assert!(
        hawker
            .metric("hawker_media_keyframe_cache_starts_total", &[])
            .await
            >= 1.0,
        "the viewer started from the keyframe cache"
    );
    assert_eq!(
        hawker.metric("hawker_dtls_failures_total", &[]).await,
        0.0,
        "no DTLS failure"
    );
    let frames: std::collections::HashSet<u32> = viewer
        .packets(MediaKind::Video)
        .iter()
        .map(|p| p.timestamp)
        .collect();
    assert!(frames.len() >= 20, "{} distinct video frames", frames.len());

    // aiortc (PyAV's H.264 decoder) watches the same stream and decodes it.
    if support::aiortc::ready_or_skip() {
        let report = support::aiortc::run_peer(
            vec![
                "view".into(),
                format!("{}/whep/{show}", hawker.http),
                "10".into(),
            ],
            Duration::from_secs(30),
        )
        .await;
        eprintln!("aiortc viewer: {report}");
        assert_eq!(report["status"], 201, "{report}");
        assert!(
            report["frames"].as_u64() >= Some(30),
            "aiortc decodes whipsink's {codec:?}: {report}"
        );
        assert_eq!(
            (report["width"].as_u64(), report["height"].as_u64()),
            (Some(320), Some(240))
        );
        assert_eq!(report["delete"], 200, "aiortc viewer DELETE: {report}");
    }
    assert_eq!(viewer.close().await.unwrap(), 200, "viewer DELETE");
    interrupt(&mut gst).await;
    let left = hawker.wait_metric("hawker_peers", &[], |n| n == 0.0).await;
    assert_eq!(
        left,
        0.0,
        "both sessions ended; hawker log:\n{}",
        hawker.log()
    );
    // whipsink 0.10.8 sends no DELETE on end of stream (nor within 10 s of SIGINT), so the
    // publisher's session ends when its process stops (ICE consent), checked above.
    let deletes = hawker
        .metric(
            "hawker_http_requests_total",
            &["route=\"/whep/{show}/{session}\"", "status=\"200\""],
        )
        .await;
    let viewers = if support::aiortc::aiortc_ready().is_ok() {
        2.0
    } else {
        1.0
    };
    assert_eq!(
        deletes, viewers,
        "the viewers ended their sessions with DELETE"
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

async fn get_raw_ok(url: &str) -> Option<String> {
    let client = reqwest::Client::builder().no_proxy().build().ok()?;
    let resp = client.get(url).send().await.ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}
