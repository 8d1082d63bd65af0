//! A SIGKILL during recording leaves a readable recording up to about the last second, with
//! the real binary:
//!
//! * `hawker serve` records a webrtc-rs seller (VP8 + Opus, 30 fps) for 3 s; a highlight is
//!   posted 1 s in; then the server gets SIGKILL (`Child::kill`) while packets still arrive.
//! * The recording read back with `hawker::recording::file` (the reader that tolerates a torn
//!   tail) holds media up to at most 1.5 s before the kill (fsync once a second, plus the
//!   writer's queue), starting with a keyframe, with ≥ 45 video frames, and the highlight.
//! * A restarted server on the same data directory exports it (200, WebM, at least 1.5 s),
//!   and the torn tail is cut before new records are appended.

#[path = "support/live.rs"]
mod live;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hawker::auth::{Keys, Role};
use hawker::engine::forwarder::Track;
use hawker::recording::file;
use serde_json::{json, Value};
use support::{Publisher, PublisherOpts};

const SHOW: &str = "crash-rec";
const SECRET: &str = "recording-crash-secret-0123456789abcdef";
const BIN: &str = env!("CARGO_BIN_EXE_hawker");
const WAIT: Duration = Duration::from_secs(15);

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(dir: &Path, run: usize) -> Proc {
    let port = live::free_tcp_port();
    let config = dir.join("hawker.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [media]\nshards = 2\n[auth]\nsecret = \"{SECRET}\"\n[shows]\nseed_demo = false\n",
            dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("server-{run}.log"))).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "hawker=info,warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn hawker serve");
    let proc = Proc {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", proc.base)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "hawker serve did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proc
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leaves_a_readable_recording() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("hawker-rec-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let keys = Keys::new(SECRET.as_bytes());
    let admin = keys.issue("platform", "*", Role::Admin, Duration::from_secs(600));
    let seller = keys.issue("seller", SHOW, Role::Publisher, Duration::from_secs(600));

    let mut proc = serve(&dir, 0).await;
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/api/v1/shows/{SHOW}/products/lamp", proc.base))
        .bearer_auth(&admin)
        .json(&json!({"title": "Lamp", "price": 100, "currency": "USD", "stock": 5}))
        .send()
        .await
        .unwrap();
    // The show does not exist yet: the publisher creates it. Create it first for the product.
    if r.status() == 404 {
        let r = http
            .post(format!("{}/api/v1/shows", proc.base))
            .bearer_auth(&admin)
            .json(&json!({"id": SHOW, "title": "crash"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = http
            .put(format!("{}/api/v1/shows/{SHOW}/products/lamp", proc.base))
            .bearer_auth(&admin)
            .json(&json!({"title": "Lamp", "price": 100, "currency": "USD", "stock": 5}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let publisher = Publisher::connect(
        &format!("{}/whip/{SHOW}", proc.base),
        &seller,
        PublisherOpts {
            keyframe_interval: Some(30),
            ..Default::default()
        },
    )
    .await
    .expect("publisher connects");
    publisher.start_streaming(30);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = http
        .post(format!("{}/api/v1/shows/{SHOW}/events", proc.base))
        .bearer_auth(&admin)
        .json(&json!({"type": "highlight", "sku": "lamp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let highlight: Value = r.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let killed_at = now_us();
    proc.child.kill().expect("SIGKILL");
    let status = proc.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the server died of the SIGKILL");
    publisher.stop_streaming();
    drop(publisher);

    let show_dir = dir.join("recordings").join(SHOW);
    let media = file::read_media(&show_dir.join(file::MEDIA)).expect("media readable");
    let events = file::read_events(&show_dir.join(file::EVENTS)).expect("events readable");
    let video: Vec<&file::Packet> = media.iter().filter(|p| p.track == Track::Video).collect();
    assert!(!video.is_empty(), "no video recorded");
    assert!(
        video[0].keyframe_start,
        "the recording starts at a keyframe"
    );
    let last = media.iter().map(|p| p.at_us).max().unwrap();
    let lost_ms = killed_at.saturating_sub(last) / 1000;
    assert!(
        lost_ms <= 1500,
        "the recording ends {lost_ms} ms before the kill (at most ~1 s may be lost)"
    );
    let frames = video.iter().filter(|p| p.marker).count();
    assert!(frames >= 45, "only {frames} video frames recorded");
    assert!(
        events
            .iter()
            .any(|e| e.msg["type"] == "highlight" && e.msg["rtp_ts"] == highlight["rtp_ts"]),
        "highlight not in the recorded timeline: {events:?}"
    );

    // A restarted server exports what survived.
    let proc = serve(&dir, 1).await;
    let r = http
        .get(format!("{}/api/v1/shows/{SHOW}/recording", proc.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/webm");
    let duration: f64 = r.headers()["x-hawker-duration"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(duration >= 1.5, "export of {duration} s");
    let body = r.bytes().await.unwrap();
    assert_eq!(&body[..4], &[0x1a, 0x45, 0xdf, 0xa3], "EBML header");
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
}
