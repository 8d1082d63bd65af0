//! Recording and export, end to end on a real server: a webrtc-rs seller (VP8 + Opus, 30 fps,
//! a keyframe a second) goes live, two products are highlighted through the REST API at known
//! moments, the show ends, and the export is read by an independent tool, `ffprobe` (Debian's
//! ffmpeg): codecs VP8 and Opus, duration within 1 s of the show, one chapter per highlight
//! at the time its `rtp_ts` names (checked against the wall-clock moment of the highlight,
//! within 0.2 s), and the chapters JSON and WebVTT agree with the file.
//!
//! Bad input: export of an unknown show (404), of a live show (409), of a show that never
//! published (404), an unknown chapters format (400); a show whose recording was switched off
//! through `PUT /shows/{show}/recording` has no recording after going live; delete removes it.
//!
//! Skipped (with a message) when `ffprobe` is missing outside CI; `scripts/test.sh` installs it.

mod support;

use std::time::{Duration, Instant};

use hawker::auth::Role;
use serde_json::{json, Value};
use support::server::TestServer;
use support::{Publisher, PublisherOpts};

fn ffprobe() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from("/usr/bin/ffprobe");
    // CI runs scripts/test.sh, which installs it: there a missing ffprobe is a failure.
    assert!(
        p.exists() || std::env::var_os("CI").is_none(),
        "ffprobe missing under CI"
    );
    p.exists().then_some(p)
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Vec<u8>) {
        let mut r = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, b) = self.send(method, path, body).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }
}

async fn product(api: &Api, show: &str, sku: &str) {
    let (s, v) = api
        .json(
            reqwest::Method::PUT,
            &format!("/shows/{show}/products/{sku}"),
            Some(json!({"title": sku, "price": 1000, "currency": "USD", "stock": 10})),
        )
        .await;
    assert!(s == 201 || s == 200, "{s} {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_show_exports_with_chapters() {
    let Some(ffprobe) = ffprobe() else {
        eprintln!(
            "SKIPPED: /usr/bin/ffprobe missing (apt-get install ffmpeg; scripts/test.sh does)"
        );
        return;
    };
    let server = TestServer::start(2, |_| {}).await;
    let api = Api {
        base: server.base.clone(),
        token: server.token("*", Role::Admin, "platform"),
        http: reqwest::Client::new(),
    };
    let show = "rec-export";
    server.create_show(show).await;
    product(&api, show, "lamp").await;
    product(&api, show, "mug").await;

    // Bad input before anything was recorded.
    let (s, _) = api
        .json(reqwest::Method::GET, "/shows/nope/recording", None)
        .await;
    assert_eq!(s, 404, "unknown show");
    let (s, v) = api
        .json(
            reqwest::Method::GET,
            &format!("/shows/{show}/recording"),
            None,
        )
        .await;
    assert_eq!(s, 404, "no recording yet: {v}");
    assert_eq!(v["code"], "not_found");

    let token = server.token(show, Role::Publisher, "seller");
    let publisher = Publisher::connect(
        &server.whip(show),
        &token,
        PublisherOpts {
            keyframe_interval: Some(30),
            ..Default::default()
        },
    )
    .await
    .expect("publisher connects");
    publisher.start_streaming(30);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let (s, v) = api
        .json(
            reqwest::Method::GET,
            &format!("/shows/{show}/recording"),
            None,
        )
        .await;
    assert_eq!(s, 409, "live show: {v}");

    let mut highlights = Vec::new();
    for sku in ["lamp", "mug"] {
        let (s, v) = api
            .json(
                reqwest::Method::POST,
                &format!("/shows/{show}/events"),
                Some(json!({"type": "highlight", "sku": sku})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        highlights.push((started.elapsed().as_secs_f64(), v));
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let (s, v) = api
        .json(reqwest::Method::POST, &format!("/shows/{show}/end"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let show_secs = started.elapsed().as_secs_f64();
    publisher.stop_streaming();

    let (s, v) = api
        .json(
            reqwest::Method::GET,
            &format!("/shows/{show}/recording/chapters?format=xml"),
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");

    let (s, file) = api
        .send(
            reqwest::Method::GET,
            &format!("/shows/{show}/recording"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&file));
    let path = server.dir.join("export.webm");
    std::fs::write(&path, &file).unwrap();
    let out = std::process::Command::new(&ffprobe)
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg("-show_chapters")
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert_eq!(codecs, ["vp8", "opus"], "{probe}");
    assert!(
        probe["format"]["format_name"]
            .as_str()
            .unwrap_or_default()
            .contains("webm"),
        "{probe}"
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!(
        (duration - show_secs).abs() <= 1.0,
        "export lasts {duration:.3} s, the show {show_secs:.3} s"
    );

    let (s, chapters) = api
        .json(
            reqwest::Method::GET,
            &format!("/shows/{show}/recording/chapters"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{chapters}");
    let list = chapters["chapters"].as_array().expect("chapters");
    let probed = probe["chapters"].as_array().expect("ffprobe chapters");
    assert_eq!(list.len(), 2, "{chapters}");
    assert_eq!(probed.len(), 2, "{probe}");
    for (i, (at, hl)) in highlights.iter().enumerate() {
        let c = &list[i];
        assert_eq!(
            c["rtp_ts"], hl["rtp_ts"],
            "chapter {i} names the highlight's frame"
        );
        assert_eq!(c["sku"], hl["sku"]);
        let start = c["start"].as_f64().unwrap();
        // The first frame went out right after `started`; the highlight's rtp_ts is the
        // newest frame when it was posted.
        assert!(
            (start - at).abs() < 0.2,
            "chapter {i} at {start:.3} s, highlight posted at {at:.3} s"
        );
        let p: f64 = probed[i]["start_time"].as_str().unwrap().parse().unwrap();
        assert!(
            (p - start).abs() < 0.002,
            "ffprobe chapter {i} at {p}, JSON {start}"
        );
        assert_eq!(probed[i]["tags"]["title"], hl["sku"]);
    }
    let (s, vtt) = api
        .send(
            reqwest::Method::GET,
            &format!("/shows/{show}/recording/chapters?format=vtt"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let vtt = String::from_utf8(vtt).unwrap();
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert_eq!(vtt.matches(" --> ").count(), 2, "{vtt}");

    // Listed, then deleted.
    let (s, v) = api.json(reqwest::Method::GET, "/recordings", None).await;
    assert_eq!(s, 200);
    assert!(
        v["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["show"] == show && r["bytes"].as_u64().unwrap() > 10_000),
        "{v}"
    );
    let m = server.metric("hawker_recording_bytes_total", "").await;
    assert!(m > 10_000.0, "bytes recorded: {m}");
    let (s, _) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/shows/{show}/recording"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .send(
            reqwest::Method::GET,
            &format!("/shows/{show}/recording"),
            None,
        )
        .await;
    assert_eq!(s, 404, "deleted");
    drop(publisher);

    // A show whose recording is switched off is not recorded.
    let off = "rec-off";
    server.create_show(off).await;
    let (s, v) = api
        .json(
            reqwest::Method::PUT,
            &format!("/shows/{off}/recording"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    let (s, _) = api
        .json(
            reqwest::Method::PUT,
            &format!("/shows/{off}/recording"),
            Some(json!({"enabled": "no"})),
        )
        .await;
    assert_eq!(s, 400);
    let p2 = Publisher::connect(
        &server.whip(off),
        &server.token(off, Role::Publisher, "seller"),
        PublisherOpts::default(),
    )
    .await
    .expect("publisher connects");
    p2.start_streaming(30);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, _) = api
        .json(reqwest::Method::POST, &format!("/shows/{off}/end"), None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = api
        .json(
            reqwest::Method::GET,
            &format!("/shows/{off}/recording"),
            None,
        )
        .await;
    assert_eq!(s, 404, "recording off: {v}");
    drop(p2);
    server.stop().await;
}
