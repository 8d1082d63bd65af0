//! `hawker loadtest` (the real binary) against an in-process server: 5 str0m viewers for 3 s.
//!
//! The rule: every viewer answers, connects, opens its events channel, starts on a keyframe,
//! receives within 0.5 % of the packets the server forwarded for it, and gets every seller
//! event sent after it joined; the publisher's packet counts are near the configured rate.
//! Correctness only: no timing assertions.
//!
//! `churned_viewers_leave_and_are_replaced`: the soak options on a short run: `--churn`
//! replaces viewers (each leaver's session DELETEd, so none is left on the server), the
//! flapping webhook receiver answers both ways, and the server's gauges are scraped.

#[path = "support/live.rs"]
mod live;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churned_viewers_leave_and_are_replaced() {
    const N: u64 = 6;
    let flap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let flap_addr = flap.local_addr().unwrap();
    drop(flap);
    let server = TestServer::start(2, |cfg| {
        cfg.commerce.webhook_urls = vec![format!("http://{flap_addr}/hook")];
    })
    .await;
    let show = "loadtest-churn";
    live::seed_show(&server.app().store, show, &[("mug", "Mug", 900, 100_000)]).await;
    let token = server.token(show, Role::Publisher, "seller");
    let base = server.base.clone();
    let metrics = format!("{}/metrics", server.metrics);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hawker"))
            .args([
                "loadtest", "--url", &base, "--show", show, "--token", &token,
            ])
            .args(["--viewers", &N.to_string(), "--join-rate", "20/s"])
            .args(["--duration", "9s", "--video-kbps", "300", "--fps", "15"])
            // 500 % of 6 viewers a minute: one leaves and one joins every 2 s.
            .args([
                "--churn",
                "500",
                "--buy-rate",
                "4/s",
                "--event-interval",
                "300ms",
            ])
            .args(["--webhook-flap", &flap_addr.to_string()])
            .args(["--webhook-flap-period", "1s", "--metrics-url", &metrics])
            .args(["--no-baseline", "--quiet", "--json"])
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
    let soak = &report["soak"];
    let churned = num(soak, "/churned");
    assert!(churned >= 3.0, "{soak:#}");
    let viewers = report["viewers"].as_array().expect("viewers");
    assert_eq!(viewers.len() as f64, N as f64 + churned, "{report:#}");
    let left = viewers
        .iter()
        .filter(|v| v["left"] == Value::Bool(true))
        .count();
    assert_eq!(left as f64, churned, "every churned viewer left");
    for v in viewers {
        assert!(
            v["error"].is_null(),
            "viewer {} failed: {}",
            v["index"],
            v["error"]
        );
    }
    // Replacements (all but the last, which may join just before the end) played.
    let last = N as f64 + churned - 1.0;
    for v in viewers
        .iter()
        .filter(|v| num(v, "/index") >= N as f64 && num(v, "/index") < last)
    {
        assert!(
            v["first_keyframe_ms"].is_number(),
            "replacement {} got no keyframe",
            v["index"]
        );
    }
    assert!(
        num(soak, "/webhooks_accepted") >= 1.0 && num(soak, "/webhooks_refused") >= 1.0,
        "the receiver flapped: {soak:#}"
    );
    let names: Vec<&str> = soak["trends"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"server peers") && names.contains(&"webhook outbox rows"),
        "scraped gauges followed: {names:?}"
    );
    let peers = report["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["server_peers"].as_f64())
        .fold(0.0, f64::max);
    assert!(peers >= N as f64, "peers scraped: {peers}");
    // Every session was DELETEd, the churned ones during the run: nothing waits for a timeout.
    let text = server.metrics_text().await;
    let viewers_left: f64 = text
        .lines()
        .filter(|l| l.starts_with("hawker_peers{") && l.contains("role=\"viewer\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(viewers_left, 0.0, "viewer sessions left on the server");
    server.stop().await;
}
