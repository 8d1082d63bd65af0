//! `hawker loadtest` (the real binary) against an in-process server: 5 str0m viewers for 3 s.
//!
//! The rule: every viewer answers, connects, opens its events channel, starts on a keyframe,
//! receives within 0.5 % of the packets the server forwarded for it, and gets every seller
//! event sent after it joined; the publisher's packet counts are near the configured rate.
//! Correctness only: no timing assertions.

mod support;

use std::process::Command;

use hawker::auth::Role;
use serde_json::Value;
use support::server::TestServer;

const VIEWERS: u64 = 5;
const SECONDS: f64 = 3.0;
const FPS: f64 = 30.0;
const EVENT_MS: f64 = 300.0;

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("report has no number at {path}: {v:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_viewers_join_and_receive() {
    let server = TestServer::start(2, |_| {}).await;
    let show = "loadtest-smoke";
    let token = server.token(show, Role::Publisher, "seller");
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hawker"))
            .args([
                "loadtest", "--url", &base, "--show", show, "--token", &token,
            ])
            .args(["--viewers", &VIEWERS.to_string(), "--join-rate", "20/s"])
            .args(["--duration", "3s", "--video-kbps", "800", "--fps", "30"])
            .args([
                "--event-interval",
                "300ms",
                "--no-baseline",
                "--quiet",
                "--json",
            ])
            .output()
            .expect("run hawker loadtest")
    })
    .await
    .expect("loadtest thread");
    assert!(
        out.status.success(),
        "hawker loadtest failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report on stdout");

    let viewers = report["viewers"].as_array().expect("viewers");
    assert_eq!(viewers.len() as u64, VIEWERS, "{report:#}");
    let events_sent = num(&report, "/summary/events_sent");
    // Seller events every 300 ms for 3 s from going live: about 10.
    assert!(
        events_sent >= SECONDS * 1000.0 / EVENT_MS - 2.0,
        "publisher sent {events_sent} events"
    );
    for v in viewers {
        let i = &v["index"];
        assert!(v["error"].is_null(), "viewer {i} failed: {}", v["error"]);
        assert_eq!(v["answered"], Value::Bool(true), "viewer {i} not answered");
        assert!(v["connected_ms"].is_number(), "viewer {i} never connected");
        assert!(
            v["first_keyframe_ms"].is_number(),
            "viewer {i} got no keyframe"
        );
        assert!(
            v["channel_ms"].is_number(),
            "viewer {i} has no events channel"
        );
        // 30 frames/s (at least one packet each) and 50 Opus packets/s for most of the run.
        let video = num(v, "/video_packets");
        let audio = num(v, "/audio_packets");
        assert!(
            video >= FPS * (SECONDS - 1.0),
            "viewer {i}: {video} video packets"
        );
        assert!(
            audio >= 50.0 * (SECONDS - 1.0),
            "viewer {i}: {audio} audio packets"
        );
        assert_eq!(
            num(v, "/video_lost") + num(v, "/audio_lost"),
            0.0,
            "viewer {i} lost packets"
        );
        // Viewers join within the first 0.25 s of the run: at most one event precedes a join.
        let events = num(v, "/events");
        assert!(
            events >= events_sent - 1.0,
            "viewer {i} got {events} of {events_sent} seller events"
        );
    }
    let s = &report["summary"];
    assert_eq!(num(s, "/connected"), VIEWERS as f64);
    assert_eq!(num(s, "/with_keyframe"), VIEWERS as f64);
    assert_eq!(num(s, "/channel_open"), VIEWERS as f64);
    assert!(num(s, "/loss_pct") < 0.5, "loss {}", s["loss_pct"]);
    let (got, expected) = (num(s, "/packets_received"), num(s, "/packets_expected"));
    assert!(
        got >= expected * 0.995,
        "received {got} of {expected} packets"
    );
    // The publisher kept its rate: 30 frames/s, 50 audio packets/s.
    assert!(num(s, "/pub_video_packets") >= FPS * SECONDS * 0.9);
    assert!(num(s, "/pub_audio_packets") >= 50.0 * SECONDS * 0.9);
    assert!(
        num(s, "/delay_ms/count") > 0.0,
        "forwarding delay was measured"
    );
    // The server is this test process, found by its HTTP port; its shard threads are seen.
    assert!(
        num(&report, "/server/shard_threads") >= 2.0,
        "{:#}",
        report["server"]
    );
    server.stop().await;
}
