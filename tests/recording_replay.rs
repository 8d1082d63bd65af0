//! Replay over WHEP (`POST /whep/{show}?replay=true[&t=seconds]`) on a real server, with
//! webrtc-rs peers whose payloads carry their frame number:
//!
//! * live: a seller streams 30 fps with a keyframe a second; a live viewer with the `events`
//!   channel records which frame each highlight's `rtp_ts` names (the first frame with
//!   `timestamp >= rtp_ts`); two highlights, at ~0.5 s and ~2.2 s; then the show ends.
//! * replay from the start: the viewer gets the recorded frames with the show's timestamps,
//!   paced like the original (the span of arrival within 15 % of the live span), and each
//!   highlight with the same `rtp_ts`, naming the same frame number as live (so the SDK shows
//!   the card on the same frame), delivered while the replay is within 10 frames of it.
//! * buying during the replay (after the show ended, the lamp repriced and restocked): the
//!   order is confirmed at the current price, takes the current stock, and records that it
//!   came from the replay and where (`replay_at_ms` from the recording's first keyframe to the
//!   frame the buy names, and that frame's `rtp_ts`), and its card is the one on screen.
//! * seek `t=1.5`: the first frame is the keyframe at 1.0 s (frame 30), the greeting snapshot
//!   shows the product on screen at that moment (the first highlight), and the second
//!   highlight follows.
//! * bad input: unknown show 404, still-live show 409, seek past the end 400, a show with no
//!   recording 404, `t` without `replay` 400.

mod support;

use std::time::Duration;

use hawker::auth::Role;
use serde_json::{json, Value};
use support::payload::PayloadTag;
use support::server::TestServer;
use support::{Publisher, PublisherOpts, ReceivedPacket, Viewer, ViewerOpts};

const SHOW: &str = "rec-replay";

fn frame_of(video: &[ReceivedPacket], rtp_ts: u32) -> Option<u64> {
    video
        .iter()
        .filter(|p| p.timestamp.wrapping_sub(rtp_ts) < (1 << 31))
        .min_by_key(|p| p.timestamp.wrapping_sub(rtp_ts))
        .and_then(|p| p.tag.as_ref().map(|t: &PayloadTag| t.index))
}

fn highlights(messages: &[String]) -> Vec<Value> {
    messages
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .filter(|v| v["type"] == "highlight")
        .collect()
}

async fn api(server: &TestServer, method: reqwest::Method, path: &str, body: Value) -> u16 {
    let admin = server.token("*", Role::Admin, "platform");
    reqwest::Client::new()
        .request(method, format!("{}/api/v1{path}", server.base))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The status a real viewer's WHEP POST gets (201 when it connects).
async fn whep_status(url: &str) -> u16 {
    let opts = ViewerOpts {
        wait_connected: false,
        ..ViewerOpts::default()
    };
    match Viewer::connect(url, None, opts).await {
        Ok(_) => 201,
        Err(e) => e
            .downcast_ref::<support::SignalError>()
            .map_or(0, |s| s.status),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_shows_each_card_on_its_live_frame() {
    let server = TestServer::start(2, |_| {}).await;
    server.create_show(SHOW).await;
    for sku in ["lamp", "mug"] {
        let s = api(
            &server,
            reqwest::Method::PUT,
            &format!("/shows/{SHOW}/products/{sku}"),
            json!({"title": sku, "price": 1000, "currency": "USD", "stock": 10}),
        )
        .await;
        assert!(s == 200 || s == 201);
    }
    let whep = server.whep(SHOW);
    assert_eq!(
        whep_status(&format!("{}?replay=true", server.whep("nope"))).await,
        404
    );
    assert_eq!(
        whep_status(&format!("{whep}?replay=true")).await,
        404,
        "no recording yet"
    );
    assert_eq!(
        whep_status(&format!("{whep}?t=1")).await,
        400,
        "t without replay"
    );

    let publisher = Publisher::connect(
        &server.whip(SHOW),
        &server.token(SHOW, Role::Publisher, "seller"),
        PublisherOpts {
            keyframe_interval: Some(30),
            ..Default::default()
        },
    )
    .await
    .expect("publisher");
    let live = Viewer::connect(&whep, None, ViewerOpts::default().with_data_channel())
        .await
        .expect("live viewer");
    publisher.start_streaming(30);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        whep_status(&format!("{whep}?replay=true")).await,
        409,
        "live"
    );
    let path = format!("/shows/{SHOW}/events");
    assert_eq!(
        api(
            &server,
            reqwest::Method::POST,
            &path,
            json!({"type": "highlight", "sku": "lamp"})
        )
        .await,
        200
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        api(
            &server,
            reqwest::Method::POST,
            &path,
            json!({"type": "highlight", "sku": "mug"})
        )
        .await,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        api(
            &server,
            reqwest::Method::POST,
            &format!("/shows/{SHOW}/end"),
            json!({})
        )
        .await,
        200
    );
    publisher.stop_streaming();
    let live_log = live.log();
    let live_hl = highlights(&live_log.messages);
    assert_eq!(live_hl.len(), 2, "{:?}", live_log.messages);
    let live_frames: Vec<u64> = live_hl
        .iter()
        .map(|h| {
            frame_of(&live_log.video, h["rtp_ts"].as_u64().unwrap() as u32).expect("live frame")
        })
        .collect();
    let live_span = live_log.video.last().unwrap().arrival - live_log.video[0].arrival;
    drop(live);

    assert_eq!(
        whep_status(&format!("{whep}?replay=true&t=100")).await,
        400,
        "seek past the end"
    );
    // The catalog after the show: a new price and stock apply to replay buys.
    let s = api(
        &server,
        reqwest::Method::PUT,
        &format!("/shows/{SHOW}/products/lamp"),
        json!({"title": "lamp", "price": 1500, "currency": "USD", "stock": 7}),
    )
    .await;
    assert_eq!(s, 200);

    // Replay from the start.
    let replay = Viewer::connect(
        &format!("{whep}?replay=true"),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("replay viewer");
    let m = server.metric("hawker_replay_viewers", "").await;
    assert_eq!(m, 1.0, "replay viewers gauge");
    // When each highlight arrives, note the newest frame received.
    let mut seen_at: Vec<u64> = Vec::new();
    replay
        .wait_for(
            |log| {
                let n = highlights(&log.messages).len();
                while seen_at.len() < n {
                    let newest = log
                        .video
                        .iter()
                        .filter_map(|p| p.tag.as_ref().map(|t| t.index))
                        .max()
                        .unwrap_or(0);
                    seen_at.push(newest);
                }
                log.messages.iter().any(|m| m.contains("replay_ended"))
            },
            Duration::from_secs(15),
        )
        .await
        .expect("replay plays to the end");
    let log = replay.log();
    let hl = highlights(&log.messages);
    assert_eq!(hl.len(), 2, "{:?}", log.messages);

    // A buy from the replay, naming the frame 10 frames after the lamp's card.
    let lamp_ts = (hl[0]["rtp_ts"].as_u64().unwrap() as u32).wrapping_add(30_000);
    replay
        .send_text(
            &json!({"type": "buy", "request_id": "replay-buy-1", "sku": "lamp", "qty": 2,
                    "rtp_ts": lamp_ts})
            .to_string(),
        )
        .await
        .expect("buy sent");
    replay
        .wait_for(
            |log| log.messages.iter().any(|m| m.contains("replay-buy-1")),
            Duration::from_secs(5),
        )
        .await
        .expect("order answer");
    let answer: Value = replay
        .log()
        .messages
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .find(|v| v["request_id"] == "replay-buy-1")
        .unwrap();
    assert_eq!(answer["status"], "confirmed", "{answer}");
    let admin = server.token("*", Role::Admin, "platform");
    let orders: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/shows/{SHOW}/orders", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["request_id"] == "replay-buy-1")
        .unwrap_or_else(|| panic!("order listed: {orders}"));
    assert_eq!(order["unit_price"], 1500, "the current price: {order}");
    assert_eq!(order["rtp_ts"], lamp_ts, "{order}");
    assert_eq!(order["highlight_id"], hl[0]["highlight_id"], "{order}");
    let origin = log.video[0].timestamp;
    let want_ms = (lamp_ts.wrapping_sub(origin) as f64 / 90.0).round() as i64;
    let got_ms = order["replay_at_ms"].as_i64().expect("replay_at_ms");
    assert!(
        (got_ms - want_ms).abs() <= 1,
        "replay_at_ms {got_ms}, the frame is {want_ms} ms into the recording"
    );
    let product: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/shows/{SHOW}/products/lamp", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(product["stock"], 5, "the current stock, less 2: {product}");
    assert!(log.video[0].keyframe, "the replay starts on a keyframe");
    for (i, h) in hl.iter().enumerate() {
        assert_eq!(
            h["rtp_ts"], live_hl[i]["rtp_ts"],
            "highlight {i}: same rtp_ts"
        );
        assert_eq!(h["sku"], live_hl[i]["sku"]);
        let f = frame_of(&log.video, h["rtp_ts"].as_u64().unwrap() as u32).expect("replay frame");
        assert_eq!(
            f, live_frames[i],
            "highlight {i} names frame {f} in the replay, {} live",
            live_frames[i]
        );
        assert!(
            seen_at[i].abs_diff(f) <= 10,
            "highlight {i} arrived at frame {}, its frame is {f}",
            seen_at[i]
        );
    }
    let span = log.video.last().unwrap().arrival - log.video[0].arrival;
    let ratio = span.as_secs_f64() / live_span.as_secs_f64();
    assert!(
        (0.85..1.15).contains(&ratio),
        "replay lasted {span:?}, live {live_span:?}"
    );
    drop(replay);

    // Seek.
    let seek = Viewer::connect(
        &format!("{whep}?replay=true&t=1.5"),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("seek viewer");
    seek.wait_for(
        |log| highlights(&log.messages).iter().any(|h| h["sku"] == "mug") && !log.video.is_empty(),
        Duration::from_secs(10),
    )
    .await
    .expect("second highlight after the seek");
    let log = seek.log();
    let first = &log.video[0];
    assert!(first.keyframe, "a seek starts on a keyframe");
    assert_eq!(
        first.tag.as_ref().map(|t| t.index),
        Some(30),
        "the keyframe before 1.5 s"
    );
    let greeting: Value = serde_json::from_str(&log.messages[0]).unwrap();
    assert_eq!(greeting["type"], "snapshot");
    assert_eq!(
        greeting["highlight"]["sku"], "lamp",
        "the card on screen at 1.0 s"
    );
    assert!((greeting["replay"]["start"].as_f64().unwrap() - 1.0).abs() < 0.05);
    drop(seek);
    drop(publisher);
    server.stop().await;
}
