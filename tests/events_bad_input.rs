//! Bad input on the `events` data channel: every malformed, unknown, forbidden or out-of-range
//! message gets exactly one `error` reply with the right `code` (and the
//! `request_id` when one could be read), nothing else happens (no highlight, no order, no
//! stock change), the offending viewer stays connected and keeps working, and another viewer
//! is unaffected (no error messages, still receives events and media). An oversized message
//! never leaves the client: the answer advertises the protocol's limit as `max-message-size`.

#[path = "support/live.rs"]
mod live;
mod support;

use std::time::{Duration, Instant};

use hawker::auth::Role;
use hawker::commerce::ShowState;
use serde_json::{json, Value};
use support::server::TestServer;
use support::{MediaKind, Publisher, PublisherOpts, Viewer, ViewerOpts};
use webrtc::peer_connection::RTCPeerConnectionState;

const WAIT: Duration = Duration::from_secs(10);

/// Sends `text` and returns the next `error` reply (the only reply a bad message gets).
async fn expect_error(v: &Viewer, text: &str) -> Value {
    let from = v.messages().len();
    v.send_text(text).await.expect("send on the events channel");
    let (_, e) = live::wait_json(
        &format!("error reply to {:.80}", text),
        WAIT,
        from,
        || v.messages(),
        |m| m["type"] == "error",
    )
    .await
    .unwrap();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_clear_errors_and_harm_nobody() {
    support::init_logging();
    let started = Instant::now();
    let server = TestServer::start(2, |_| {}).await;
    let app = server.app().clone();
    let show = "badinput";
    live::seed_show(&app.store, show, &[("lamp-1", "Brass desk lamp", 4900, 10)]).await;

    let token = server.token(show, Role::Publisher, "seller");
    let seller = Publisher::connect(
        &server.whip(show),
        &token,
        PublisherOpts::default().with_data_channel(),
    )
    .await
    .expect("publisher connects");
    seller.start_streaming(30);
    live::wait_show_state(&app.store, show, ShowState::Live, WAIT)
        .await
        .unwrap();

    let opts = ViewerOpts::default().with_data_channel();
    let bad = Viewer::connect(&server.whep(show), None, opts.clone())
        .await
        .expect("misbehaving viewer connects");
    let good = Viewer::connect(&server.whep(show), None, opts)
        .await
        .expect("well-behaved viewer connects");
    for v in [&bad, &good] {
        live::wait_json(
            "snapshot",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "snapshot",
        )
        .await
        .unwrap();
        v.wait_for(|l| l.video.iter().any(|p| p.keyframe), WAIT)
            .await
            .expect("viewer gets video");
    }
    let good_before = good.messages().len();
    let video_before = [
        bad.packets(MediaKind::Video).len(),
        good.packets(MediaKind::Video).len(),
    ];

    let big = format!(r#"{{"type":"question","text":"{}"}}"#, "a".repeat(5000));
    assert!(big.len() > 4096);
    // (message, expected code, expected request_id)
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("{not json".into(), "bad_request", None),
        (
            r#"{"type":"buy","request_id":"r-trunc","#.into(),
            "bad_request",
            None,
        ),
        ("[1,2,3]".into(), "bad_request", None),
        ("\"buy\"".into(), "bad_request", None),
        (
            r#"{"type":"teleport","request_id":"r-tp"}"#.into(),
            "unknown_type",
            Some("r-tp"),
        ),
        (r#"{"sku":"lamp-1","qty":1}"#.into(), "unknown_type", None),
        (r#"{"type":42}"#.into(), "unknown_type", None),
        (
            json!({"type": "highlight", "sku": "lamp-1", "capture_ms": live::now_ms()}).to_string(),
            "forbidden",
            None,
        ),
        (
            json!({"type": "unhighlight"}).to_string(),
            "forbidden",
            None,
        ),
        (
            json!({"type": "price", "sku": "lamp-1", "price": 1}).to_string(),
            "forbidden",
            None,
        ),
        (
            json!({"type": "stock", "sku": "lamp-1", "stock": 1000}).to_string(),
            "forbidden",
            None,
        ),
        (
            json!({"type": "chat", "text": "spam"}).to_string(),
            "forbidden",
            None,
        ),
        (
            json!({"type": "buy", "request_id": "r-sku", "sku": "no-such-sku", "qty": 1})
                .to_string(),
            "not_found",
            Some("r-sku"),
        ),
        (
            json!({"type": "buy", "request_id": "r-neg", "sku": "lamp-1", "qty": -1}).to_string(),
            "invalid",
            Some("r-neg"),
        ),
        (
            json!({"type": "buy", "request_id": "r-zero", "sku": "lamp-1", "qty": 0}).to_string(),
            "invalid",
            Some("r-zero"),
        ),
        (
            json!({"type": "buy", "request_id": "r-big", "sku": "lamp-1", "qty": 11}).to_string(),
            "invalid",
            Some("r-big"),
        ),
        (
            json!({"type": "buy", "request_id": "r-str", "sku": "lamp-1", "qty": "two"})
                .to_string(),
            "bad_request",
            Some("r-str"),
        ),
        (
            json!({"type": "buy", "sku": "lamp-1", "qty": 1}).to_string(),
            "bad_request",
            None,
        ),
        (
            json!({"type": "question", "text": "   "}).to_string(),
            "invalid",
            None,
        ),
    ];
    // Over the answer's `a=max-message-size` (the protocol's 4096 bytes): the client's own stack
    // refuses to send it, so the server never reassembles it (a stack that sent it anyway would
    // have its SCTP association closed).
    assert!(
        bad.send_text(&big).await.is_err(),
        "a message over the advertised max-message-size left the client"
    );
    let mut failures = Vec::new();
    for (text, code, rid) in &cases {
        let e = expect_error(&bad, text).await;
        let msg = e["message"].as_str().unwrap_or("");
        if e["code"] != *code || e["request_id"].as_str() != *rid || msg.is_empty() {
            failures.push(format!(
                "{:.60} -> {e} (wanted code {code}, request_id {rid:?})",
                text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong error replies:\n{}",
        failures.join("\n")
    );

    // Exactly one reply per bad message, all errors; nothing was applied.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // `viewers` (the count, broadcast when the other viewer joined) is news, not a reply.
    let replies = live::parse_all(&bad.messages());
    let after_snapshot: Vec<&Value> = replies
        .iter()
        .skip(1)
        .filter(|m| m["type"] != "viewers")
        .collect();
    assert!(
        after_snapshot.iter().all(|m| m["type"] == "error"),
        "only error replies: {after_snapshot:?}"
    );
    assert_eq!(
        after_snapshot.len(),
        cases.len(),
        "one reply per bad message"
    );
    assert_eq!(app.live.highlight(show).map(|h| h.id), None, "no highlight");
    assert_eq!(app.store.stock(show, "lamp-1"), Some(10), "stock untouched");
    let (orders, _) = app.store.orders_after(show, 0, 100).await.unwrap();
    assert!(orders.is_empty(), "no order recorded: {orders:?}");
    let p = app.store.product(show, "lamp-1").await.unwrap().unwrap();
    assert_eq!((p.price, p.stock), (4900, 10));

    // The other viewer saw none of it.
    let good_msgs = good.messages();
    let seen: Vec<Value> = live::parse_all(&good_msgs[good_before..])
        .into_iter()
        .filter(|m| m["type"] != "viewers")
        .collect();
    assert!(
        seen.is_empty(),
        "the well-behaved viewer got nothing from the bad input: {seen:?}"
    );

    // The misbehaving viewer is still connected and served.
    assert_eq!(bad.state(), RTCPeerConnectionState::Connected);
    let from = bad.messages().len();
    bad.send_text(r#"{"type":"ping"}"#).await.unwrap();
    live::wait_json(
        "pong",
        WAIT,
        from,
        || bad.messages(),
        |m| m["type"] == "pong",
    )
    .await
    .unwrap();
    bad.send_text(
        &json!({"type": "buy", "request_id": "r-ok", "sku": "lamp-1", "qty": 1}).to_string(),
    )
    .await
    .unwrap();
    let (_, order) = live::wait_json(
        "order",
        WAIT,
        from,
        || bad.messages(),
        |m| m["type"] == "order",
    )
    .await
    .unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["request_id"], "r-ok");

    // Both viewers get the seller's events (the stock change from that order, a highlight).
    seller
        .send_text(
            &json!({"type": "highlight", "sku": "lamp-1", "capture_ms": live::now_ms()})
                .to_string(),
        )
        .await
        .unwrap();
    for (name, v) in [("bad", &bad), ("good", &good)] {
        let (_, h) = live::wait_json(
            "highlight",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "highlight",
        )
        .await
        .unwrap_or_else(|e| panic!("{name} viewer: {e}"));
        assert_eq!(
            h["highlight_id"], "h-1",
            "the forbidden highlight created none"
        );
        live::wait_json(
            "stock 9",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "stock" && m["sku"] == "lamp-1" && m["stock"] == 9,
        )
        .await
        .unwrap_or_else(|e| panic!("{name} viewer: {e}"));
    }
    // ... and media kept flowing to both (30 fps: > 15 frames in the last second or more).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, v) in [&bad, &good].into_iter().enumerate() {
        let n = v.packets(MediaKind::Video).len();
        assert!(
            n >= video_before[i] + 15,
            "viewer {i} video stalled: {} -> {n} packets",
            video_before[i]
        );
        assert_eq!(v.state(), RTCPeerConnectionState::Connected);
    }
    let errors_good = live::of_type(&good.messages(), "error");
    assert!(errors_good.is_empty(), "{errors_good:?}");

    bad.close().await.unwrap();
    good.close().await.unwrap();
    seller.close().await.unwrap();
    server.stop().await;
    eprintln!("events_bad_input: {:?}", started.elapsed());
}
