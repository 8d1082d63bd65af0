//! Interop with GStreamer's WebRTC stack against the real `hawker` binary: `whipsink`
//! (gst-plugins-rs `webrtchttp`, on webrtcbin + libnice + OpenSSL) publishes H.264 + Opus (one
//! cell) or VP8 + Opus (another), and a webrtc-rs viewer and an aiortc viewer (which decodes
//! the video) and headless Chromium (which plays it) watch over WHEP; and `whepsrc` watches a `whipsink` VP8 + Opus publisher (one
//! cell) or H.264 + Opus (another) and decodes the video (libvpx, libav) for 20 s, past the
//! 15 s without ICE checks after which GStreamer 1.22 peers used to be dropped; two more cells
//! have headless Chromium publish (VP8, H.264) to a `whepsrc` viewer.
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
    for (element, why) in [
        (
            "whipsink",
            "GStreamer has no whipsink (GST_PLUGIN_PATH without gst-plugin-webrtchttp)",
        ),
        (
            "avdec_h264",
            "GStreamer has no avdec_h264 (Debian's gstreamer1.0-libav)",
        ),
    ] {
        let out = Command::new("gst-inspect-1.0")
            .arg(element)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("gst-inspect-1.0 not runnable: {e}"))?;
        if !out.success() {
            return Err(why.into());
        }
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

/// `gst-launch-1.0 -e -v` watching over WHEP with `whepsrc`, decoding VP8 (libvpx) or H.264
/// (libav's `avdec_h264`: Debian 12's `openh264dec` fails on x264's frames even without hawker
/// in between) and Opus; `fpsdisplaysink` reports the decoded video frames on stdout (`-v`).
///
/// whepsrc 0.10.8 offers exactly its `video-caps`/`audio-caps` (its defaults, bare
/// `video/x-vp8` etc., make webrtcbin 1.22 fail to build the offer). Opus needs
/// `encoding-params=2`: without it the offer says `OPUS/48000`, hawker answers the audio line
/// with port 0, webrtcbin wants to negotiate again, and whepsrc then POSTs a second offer
/// (with two more transceivers) whose answer restarts ICE: the viewer's ICE fails.
///
/// With `decode` false (a publisher whose frames are synthetic, not decodable) the RTP goes to
/// a `fakesink name=vsink silent=false` instead, whose `last-message` lines count the packets.
fn whepsrc(endpoint: &str, codec: support::VideoCodec, decode: bool) -> Proc {
    let (caps, decoder) = match codec {
        support::VideoCodec::Vp8 => (
            "encoding-name=(string)VP8,payload=(int)96,clock-rate=(int)90000",
            "rtpvp8depay ! vp8dec name=dec",
        ),
        support::VideoCodec::H264 => (
            "encoding-name=(string)H264,payload=(int)102,clock-rate=(int)90000,packetization-mode=(string)1,profile-level-id=(string)42e01f",
            "rtph264depay ! h264parse ! avdec_h264 name=dec",
        ),
    };
    let branches = if decode {
        format!(
            "whep. ! application/x-rtp,media=video ! {decoder} \
             ! fpsdisplaysink name=fps video-sink=fakesink text-overlay=false \
             whep. ! application/x-rtp,media=audio ! rtpopusdepay ! opusdec ! fakesink"
        )
    } else {
        "whep. ! application/x-rtp,media=video ! fakesink name=vsink silent=false sync=false \
         whep. ! application/x-rtp,media=audio ! fakesink sync=false"
            .to_string()
    };
    let pipeline = format!(
        "whepsrc name=whep whep-endpoint={endpoint} \
         video-caps=application/x-rtp,media=(string)video,{caps} \
         audio-caps=application/x-rtp,media=(string)audio,encoding-name=(string)OPUS,payload=(int)111,clock-rate=(int)48000,encoding-params=(string)2 \
         {branches}"
    );
    Command::new("gst-launch-1.0")
        .args(["-e", "-v"])
        .args(pipeline.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Proc)
        .expect("gst-launch-1.0 starts")
}

/// Decoded video frames so far and the decoded size, as whepsrc's pipeline reports them.
type Frames = std::sync::Arc<std::sync::Mutex<(u64, Option<(u32, u32)>)>>;

/// Reads `fpsdisplaysink`'s `rendered: N` reports from `child`'s stdout in a thread; the
/// latest count and the decoded video size (from the decoder's caps) land in the result.
fn watch_frames(child: &mut Proc) -> Frames {
    use std::io::BufRead as _;
    let seen: Frames = Default::default();
    let out = child.0.stdout.take().expect("piped stdout");
    let s = seen.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let mut g = s.lock().unwrap();
            if let Some(n) = line
                .split("rendered: ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.parse().ok())
            {
                g.0 = n;
            }
            // Receive-only pipelines: one `last-message` per RTP packet reaching the sink.
            if line.contains(":vsink: last-message = chain") {
                g.0 += 1;
            }
            if line.contains(":dec.GstPad:src: caps = video/x-raw") {
                let num = |key: &str| {
                    line.split(key)
                        .nth(1)
                        .and_then(|r| r.split([',', ' ']).next())
                        .and_then(|n| n.parse().ok())
                };
                if let (Some(w), Some(h)) = (num("width=(int)"), num("height=(int)")) {
                    g.1 = Some((w, h));
                }
            }
        }
    });
    seen
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
    netns_run(test, || whipsink_cell(codec))
}

fn netns_run<F: std::future::Future<Output = ()>>(test: &str, cell: impl FnOnce() -> F) {
    if std::env::var_os(IN_NETNS).is_some() {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(cell());
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

#[test]
fn gstreamer_whipsink_vp8_to_whepsrc_viewer() {
    netns_run("gstreamer_whipsink_vp8_to_whepsrc_viewer", || {
        whepsrc_cell(Source::Whipsink, support::VideoCodec::Vp8)
    });
}

#[test]
fn gstreamer_whipsink_h264_to_whepsrc_viewer() {
    netns_run("gstreamer_whipsink_h264_to_whepsrc_viewer", || {
        whepsrc_cell(Source::Whipsink, support::VideoCodec::H264)
    });
}

#[test]
fn chromium_vp8_to_whepsrc_viewer() {
    netns_run("chromium_vp8_to_whepsrc_viewer", || {
        whepsrc_cell(Source::Chromium, support::VideoCodec::Vp8)
    });
}

#[test]
fn chromium_h264_to_whepsrc_viewer() {
    netns_run("chromium_h264_to_whepsrc_viewer", || {
        whepsrc_cell(Source::Chromium, support::VideoCodec::H264)
    });
}

#[test]
fn aiortc_vp8_to_whepsrc_viewer() {
    netns_run("aiortc_vp8_to_whepsrc_viewer", || {
        whepsrc_cell(Source::Aiortc, support::VideoCodec::Vp8)
    });
}

#[test]
fn aiortc_h264_to_whepsrc_viewer() {
    netns_run("aiortc_h264_to_whepsrc_viewer", || {
        whepsrc_cell(Source::Aiortc, support::VideoCodec::H264)
    });
}

#[test]
fn webrtc_rs_vp8_to_whepsrc_viewer() {
    netns_run("webrtc_rs_vp8_to_whepsrc_viewer", || {
        whepsrc_cell(Source::WebrtcRs, support::VideoCodec::Vp8)
    });
}

/// Who publishes to a `whepsrc` cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `whipsink` (320×240 test pattern).
    Whipsink,
    /// Headless Chromium's fake camera (`tests/browser/peer.mjs publish`, 640×480, starting
    /// lower while its bandwidth estimate ramps).
    Chromium,
    /// aiortc (`tests/interop/aiortc_peer.py publish`, 320×240 through PyAV).
    Aiortc,
    /// webrtc-rs (`support::Publisher`, 30 synthetic frames a second, one packet each): not
    /// decodable, so whepsrc counts the RTP packets it receives instead of decoded frames.
    WebrtcRs,
}

/// whipsink (VP8 or H.264, + Opus) → hawker → whepsrc, which decodes the video. Both are
/// GStreamer 1.22 peers, whose libnice sends no ICE check after nomination: the cell runs past
/// the 15 s after which str0m's ICE-lite agent gives such a pair up, and checks both stay.
/// Each cell has its own ports (the cells may run at once, each in its namespace).
async fn whepsrc_cell(source: Source, codec: support::VideoCodec) {
    support::init_logging();
    if source == Source::Chromium && !support::chromium::ready_or_skip() {
        return;
    }
    if source == Source::Aiortc && !support::aiortc::ready_or_skip() {
        return;
    }
    let (http, metrics) = match (source, codec) {
        (Source::Whipsink, support::VideoCodec::Vp8) => (18481, 19481),
        (Source::Whipsink, support::VideoCodec::H264) => (18482, 19482),
        (Source::Chromium, support::VideoCodec::Vp8) => (18483, 19483),
        (Source::Chromium, support::VideoCodec::H264) => (18484, 19484),
        (Source::Aiortc, support::VideoCodec::Vp8) => (18485, 19485),
        (Source::Aiortc, support::VideoCodec::H264) => (18486, 19486),
        (Source::WebrtcRs, _) => (18487, 19487),
    };
    let hawker = Hawker::start("gstwhep", MEDIA_IP, http, metrics);
    let up = Instant::now();
    while get_raw_ok(&hawker.metrics).await.is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "hawker did not start:\n{}",
            hawker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let show = "gstwhep";
    let token = hawker.token(show, "publisher");
    let whip = format!("{}/whip/{show}", hawker.http);
    let mut rs_publisher = None;
    let (mut publisher, peer) = match source {
        Source::Whipsink => (Some(whipsink(&whip, &token, codec)), None),
        Source::WebrtcRs => {
            let p = support::Publisher::connect(
                &whip,
                &token,
                support::PublisherOpts {
                    video_codec: codec,
                    keyframe_interval: Some(30),
                    ..support::PublisherOpts::default()
                },
            )
            .await
            .expect("webrtc-rs publisher connects");
            p.start_streaming(30);
            rs_publisher = Some(p);
            (None, None)
        }
        // Long enough for the 20 s of viewing below; they DELETE their session at the end.
        Source::Chromium | Source::Aiortc => {
            let args = vec![
                "publish".into(),
                whip,
                token.clone(),
                "40".into(),
                match codec {
                    support::VideoCodec::Vp8 => "vp8".into(),
                    support::VideoCodec::H264 => "h264".into(),
                },
            ];
            let task = if source == Source::Chromium {
                tokio::spawn(support::chromium::run_peer(args, Duration::from_secs(90)))
            } else {
                tokio::spawn(support::aiortc::run_peer(args, Duration::from_secs(90)))
            };
            (None, Some(task))
        }
    };
    let live = hawker
        .wait_metric("hawker_media_keyframes_in_total", &[], |n| n >= 1.0)
        .await;
    assert!(live >= 1.0, "{source:?} publishes:\n{}", hawker.log());

    let decodable = source != Source::WebrtcRs;
    let mut viewer = whepsrc(&format!("{}/whep/{show}", hawker.http), codec, decodable);
    let frames = watch_frames(&mut viewer);
    let started = Instant::now();
    // 20 s of viewing: past the 15 s without ICE checks after which both peers used to be
    // dropped (publisher first: it connected earlier).
    let mut at_15 = 0;
    while started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if started.elapsed() < Duration::from_secs(15) {
            at_15 = frames.lock().unwrap().0;
        }
        assert!(
            viewer.0.try_wait().unwrap().is_none(),
            "whepsrc stopped early:\n{}",
            hawker.log()
        );
    }
    let (decoded, size) = *frames.lock().unwrap();
    eprintln!(
        "whepsrc counted {decoded} {codec:?} frames (packets for WebrtcRs) of {source:?} in 20 s ({at_15} by 15 s), size {size:?}"
    );
    // whipsink sends 30 fps; Chromium's encoder drops frames when the machine is busy (about
    // 20 fps here with other tests running), so its floor is 10 fps.
    let floor = match source {
        Source::Whipsink | Source::WebrtcRs => 300,
        Source::Chromium | Source::Aiortc => 200,
    };
    assert!(
        decoded >= floor,
        "whepsrc decodes the stream: {decoded} frames (at least {floor})"
    );
    assert!(
        decoded >= at_15 + 90,
        "frames keep coming after 15 s: {at_15} then {decoded}"
    );
    match source {
        Source::Whipsink | Source::Aiortc => {
            assert_eq!(size, Some((320, 240)), "decoded frame size")
        }
        Source::WebrtcRs => assert_eq!(size, None, "nothing decoded"),
        // Chromium's encoder picks the size as its estimate ramps, up to the camera's 640×480.
        Source::Chromium => assert!(
            size.is_some_and(|(w, h)| (160..=640).contains(&w) && w * 3 == h * 4),
            "decoded frame size {size:?}"
        ),
    }
    assert_eq!(
        hawker.metric("hawker_peers", &["role=\"viewer\""]).await,
        1.0,
        "the whepsrc session is there"
    );
    assert_eq!(
        hawker.metric("hawker_peers", &["role=\"publisher\""]).await,
        1.0,
        "the {source:?} session outlives 15 s of whepsrc without ICE checks"
    );
    assert_eq!(
        hawker.metric("hawker_dtls_failures_total", &[]).await,
        0.0,
        "no DTLS failure"
    );

    interrupt(&mut viewer).await;
    // whepsrc sends DELETE when it stops, though not always before gst-launch exits; the
    // session then ends when its traffic stops.
    let left = hawker
        .wait_metric("hawker_peers", &["role=\"viewer\""], |n| n == 0.0)
        .await;
    assert_eq!(left, 0.0, "the viewer session ended:\n{}", hawker.log());
    let deletes = hawker
        .metric(
            "hawker_http_requests_total",
            &["route=\"/whep/{show}/{session}\"", "status=\"200\""],
        )
        .await;
    eprintln!("whepsrc DELETE answered 200: {deletes} time(s)");
    if let Some(p) = publisher.as_mut() {
        interrupt(p).await;
    }
    if let Some(p) = rs_publisher {
        assert_eq!(p.close().await.unwrap(), 200, "webrtc-rs publisher DELETE");
    }
    if let Some(b) = peer {
        let report = b.await.expect("the publisher's task");
        eprintln!("{source:?} publisher: {report}");
        assert_eq!(report["status"], 201, "{report}");
        assert_eq!(
            report["delete"], 200,
            "{source:?} publisher DELETE: {report}"
        );
    }
    hawker.assert_all_gone().await;
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
    // And headless Chromium (libwebrtc) plays it in a <video>: frames decoded at whipsink's size.
    if support::chromium::ready_or_skip() {
        let report = support::chromium::run_peer(
            vec![
                "view".into(),
                format!("{}/whep/{show}", hawker.http),
                "15".into(),
            ],
            Duration::from_secs(60),
        )
        .await;
        eprintln!("Chromium viewer: {report}");
        assert_eq!(report["status"], 201, "{report}");
        assert_eq!(report["connected"], true, "{report}");
        assert!(
            report["frames"].as_u64() >= Some(30),
            "Chromium decodes whipsink's {codec:?}: {report}"
        );
        assert_eq!(
            (report["width"].as_u64(), report["height"].as_u64()),
            (Some(320), Some(240)),
            "{report}"
        );
        let mime = report["codec"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let want = match codec {
            support::VideoCodec::H264 => "video/h264",
            support::VideoCodec::Vp8 => "video/vp8",
        };
        assert_eq!(mime, want, "{report}");
        assert_eq!(report["delete"], 200, "Chromium viewer DELETE: {report}");
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
    // publisher's session ends when its process stops (8 s without traffic), checked above.
    let deletes = hawker
        .metric(
            "hawker_http_requests_total",
            &["route=\"/whep/{show}/{session}\"", "status=\"200\""],
        )
        .await;
    let viewers = 1.0
        + f64::from(u8::from(support::aiortc::aiortc_ready().is_ok()))
        + f64::from(u8::from(support::chromium::missing().is_empty()));
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
