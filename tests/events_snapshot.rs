//! A viewer joining a live show late gets a `snapshot` as its first `events` message, carrying
//! the current highlight (id, sku, `rtp_ts`), every product's current price and stock, and the
//! show's state and viewer count. Price, stock and highlight changes made by the seller on its
//! data channel before the viewer joined, and a confirmed order, are all reflected.

#[path = "support/live.rs"]
mod live;
mod support;

use std::time::{Duration, Instant};

use hawker::auth::Role;
use hawker::commerce::ShowState;
use serde_json::{json, Value};
use support::server::TestServer;
use support::{Publisher, PublisherOpts, Viewer, ViewerOpts};

const WAIT: Duration = Duration::from_secs(10);

fn product<'a>(snapshot: &'a Value, sku: &str) -> &'a Value {
    snapshot["products"]
        .as_array()
        .expect("products array")
        .iter()
        .find(|p| p["sku"] == sku)
        .unwrap_or_else(|| panic!("snapshot has no product {sku}: {snapshot}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_viewer_gets_snapshot_first_with_current_highlight_stock_and_prices() {
    support::init_logging();
    let started = Instant::now();
    let server = TestServer::start(2, |_| {}).await;
    let app = server.app().clone();
    let show = "snap";
    live::seed_show(
        &app.store,
        show,
        &[
            ("lamp-1", "Brass desk lamp", 4900, 25),
            ("mug-2", "Hand-thrown mug", 1800, 60),
            ("scarf-3", "Merino scarf", 3500, 12),
        ],
    )
    .await;

    // The seller goes live: the server marks the show live when the publisher connects.
    let token = server.token(show, Role::Publisher, "seller-1");
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
        .expect("show goes live when the publisher connects");

    // An early viewer: its snapshot has no highlight yet.
    let early = Viewer::connect(
        &server.whep(show),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("early viewer connects");
    let (_, snap0) = live::wait_json(
        "early snapshot",
        WAIT,
        0,
        || early.messages(),
        |v| v["type"] == "snapshot",
    )
    .await
    .unwrap();
    assert_eq!(snap0["highlight"], Value::Null, "{snap0}");
    assert_eq!(snap0["show"]["state"], "live", "{snap0}");
    assert_eq!(product(&snap0, "mug-2")["price"], 1800);

    // Wait for video so the highlights get a video timestamp.
    early
        .wait_for(|l| l.video.iter().any(|p| p.keyframe), WAIT)
        .await
        .expect("early viewer gets video");

    // The seller changes a price, sets a stock, highlights one product and then another.
    let send = |m: Value| {
        let seller = &seller;
        async move { seller.send_text(&m.to_string()).await.unwrap() }
    };
    send(json!({"type": "price", "sku": "mug-2", "price": 1500, "capture_ms": live::now_ms()}))
        .await;
    send(json!({"type": "stock", "sku": "scarf-3", "stock": 7})).await;
    send(json!({"type": "highlight", "sku": "lamp-1", "capture_ms": live::now_ms()})).await;
    let (i, hl1) = live::wait_json(
        "highlight lamp-1",
        WAIT,
        0,
        || early.messages(),
        |v| v["type"] == "highlight" && v["sku"] == "lamp-1",
    )
    .await
    .unwrap();
    live::wait_json(
        "price broadcast",
        WAIT,
        0,
        || early.messages(),
        |v| v["type"] == "price" && v["sku"] == "mug-2" && v["price"] == 1500,
    )
    .await
    .unwrap();
    live::wait_json(
        "stock broadcast",
        WAIT,
        0,
        || early.messages(),
        |v| v["type"] == "stock" && v["sku"] == "scarf-3" && v["stock"] == 7,
    )
    .await
    .unwrap();
    send(json!({"type": "highlight", "sku": "mug-2", "capture_ms": live::now_ms()})).await;
    let (_, hl2) = live::wait_json(
        "highlight mug-2",
        WAIT,
        i + 1,
        || early.messages(),
        |v| v["type"] == "highlight" && v["sku"] == "mug-2",
    )
    .await
    .unwrap();
    assert_ne!(hl1["highlight_id"], hl2["highlight_id"]);
    assert!(
        hl2["rtp_ts"].is_u64(),
        "highlight has a video timestamp: {hl2}"
    );
    assert_eq!(hl2["product"]["price"], 1500, "{hl2}");

    // The early viewer buys 2 lamps from the current highlight.
    early
        .send_text(
            &json!({"type": "buy", "request_id": "early-1", "sku": "lamp-1", "qty": 2,
                    "highlight_id": hl2["highlight_id"]})
            .to_string(),
        )
        .await
        .unwrap();
    let (_, order) = live::wait_json(
        "order answer",
        WAIT,
        0,
        || early.messages(),
        |v| v["type"] == "order" && v["request_id"] == "early-1",
    )
    .await
    .unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    live::wait_json(
        "lamp stock broadcast",
        WAIT,
        0,
        || early.messages(),
        |v| v["type"] == "stock" && v["sku"] == "lamp-1" && v["stock"] == 23,
    )
    .await
    .unwrap();

    // A late viewer: its first message is the snapshot with the current state.
    let late = Viewer::connect(
        &server.whep(show),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("late viewer connects");
    live::wait_json(
        "late snapshot",
        WAIT,
        0,
        || late.messages(),
        |v| v["type"] == "snapshot",
    )
    .await
    .unwrap();
    let msgs = late.messages();
    let snap: Value = serde_json::from_str(&msgs[0]).expect("first message is JSON");
    assert_eq!(snap["type"], "snapshot", "first message: {}", msgs[0]);
    assert_eq!(snap["v"], 1);
    assert_eq!(snap["show"]["id"], show);
    assert_eq!(snap["show"]["title"], "Show snap");
    assert_eq!(snap["show"]["state"], "live");
    assert_eq!(snap["show"]["viewers"], 2, "early + late viewer: {snap}");
    assert_eq!(
        snap["highlight"],
        json!({"highlight_id": hl2["highlight_id"], "sku": "mug-2", "rtp_ts": hl2["rtp_ts"]}),
        "current highlight"
    );
    let products = snap["products"].as_array().unwrap();
    assert_eq!(products.len(), 3, "{snap}");
    for (sku, price, stock) in [
        ("lamp-1", 4900, 23),
        ("mug-2", 1500, 60),
        ("scarf-3", 3500, 7),
    ] {
        let p = product(&snap, sku);
        assert_eq!(p["price"], price, "{sku} price: {p}");
        assert_eq!(p["stock"], stock, "{sku} stock: {p}");
        assert_eq!(p["currency"], "USD");
    }
    // The snapshot's own rtp_ts is the newest video timestamp: at or after the highlight's.
    let now_ts = snap["rtp_ts"].as_u64().expect("snapshot rtp_ts") as u32;
    let hl_ts = hl2["rtp_ts"].as_u64().unwrap() as u32;
    assert!(
        live::ts_le(hl_ts, now_ts),
        "snapshot rtp_ts {now_ts} before the highlight's {hl_ts}"
    );
    // The late viewer gets video too, and its first video timestamp is not older than the
    // snapshot's (video starts at a keyframe forwarded after it joined).
    late.wait_for(|l| l.video.iter().any(|p| p.keyframe), WAIT)
        .await
        .expect("late viewer gets video");

    // After an unhighlight, a third viewer's snapshot says so.
    send(json!({"type": "unhighlight", "capture_ms": live::now_ms()})).await;
    live::wait_json(
        "unhighlight",
        WAIT,
        0,
        || late.messages(),
        |v| v["type"] == "unhighlight" && v["highlight_id"] == hl2["highlight_id"],
    )
    .await
    .unwrap();
    let third = Viewer::connect(
        &server.whep(show),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("third viewer connects");
    let (idx, snap3) = live::wait_json(
        "third snapshot",
        WAIT,
        0,
        || third.messages(),
        |v| v["type"] == "snapshot",
    )
    .await
    .unwrap();
    assert_eq!(idx, 0, "snapshot is the first message");
    assert_eq!(snap3["highlight"], Value::Null, "{snap3}");
    assert_eq!(snap3["show"]["viewers"], 3);

    for v in [&early, &late, &third] {
        v.close().await.unwrap();
    }
    seller.close().await.unwrap();
    server.stop().await;
    eprintln!("events_snapshot: {:?}", started.elapsed());
}

/// The snapshot is "the state to render from": a viewer joining while the seller is busy
/// (prices changing every few ms through the API path, chat lines in between) must get the
/// snapshot before any broadcast, and no later `price` may be older than the snapshot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_comes_first_while_the_seller_is_busy() {
    use hawker::live::protocol::Inbound;
    use hawker::live::Origin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    support::init_logging();
    let started = Instant::now();
    let server = TestServer::start(2, |_| {}).await;
    let app = server.app().clone();
    let show = "busy";
    live::seed_show(&app.store, show, &[("lamp-1", "Brass desk lamp", 1000, 25)]).await;
    app.store
        .set_show_state(show, ShowState::Live)
        .await
        .unwrap();
    // The media-plane entry exists once a first peer joined.
    let first = Viewer::connect(
        &server.whep(show),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .unwrap();

    // The busy seller: a price change (monotonic) and a chat line every ~2 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut price = 1000;
            while !stop.load(Ordering::SeqCst) {
                price += 1;
                let msg = Inbound::Price {
                    sku: "lamp-1".into(),
                    price,
                    capture_ms: None,
                };
                hawker::live::seller_action(&app, show, msg, Origin::Api)
                    .await
                    .unwrap();
                let chat = Inbound::Chat {
                    text: format!("now {price}"),
                };
                hawker::live::seller_action(&app, show, chat, Origin::Api)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            price
        })
    };

    const JOINERS: usize = 30;
    let mut problems = Vec::new();
    let mut viewers = Vec::new();
    for i in 0..JOINERS {
        let v = Viewer::connect(
            &server.whep(show),
            None,
            ViewerOpts {
                audio: false,
                ..ViewerOpts::default().with_data_channel()
            },
        )
        .await
        .unwrap();
        live::wait_json(
            "snapshot",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "snapshot",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let msgs = live::parse_all(&v.messages());
        let snap_at = msgs.iter().position(|m| m["type"] == "snapshot").unwrap();
        let snap_price = msgs[snap_at]["products"][0]["price"].as_i64().unwrap();
        if snap_at != 0 {
            problems.push(format!(
                "joiner {i}: snapshot is message #{snap_at}; before it: {:?}",
                &msgs[..snap_at]
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
            ));
        }
        let older: Vec<i64> = msgs[snap_at + 1..]
            .iter()
            .filter(|m| m["type"] == "price")
            .filter_map(|m| m["price"].as_i64())
            .filter(|&p| p < snap_price)
            .collect();
        let newer_before: Vec<i64> = msgs[..snap_at]
            .iter()
            .filter(|m| m["type"] == "price")
            .filter_map(|m| m["price"].as_i64())
            .filter(|&p| p > snap_price)
            .collect();
        if !older.is_empty() || !newer_before.is_empty() {
            problems.push(format!(
                "joiner {i}: snapshot price {snap_price} is stale: newer prices before it \
                 {newer_before:?}, older after it {older:?}"
            ));
        }
        viewers.push(v);
    }
    stop.store(true, Ordering::SeqCst);
    let last_price = busy.await.unwrap();
    eprintln!(
        "{JOINERS} viewers joined during {} price changes; problems: {}",
        last_price - 1000,
        problems.len()
    );
    for v in viewers.iter().chain([&first]) {
        v.close_without_delete().await;
    }
    server.stop().await;
    assert!(
        problems.is_empty(),
        "the snapshot was not the first message / was stale for {} of {JOINERS} joiners:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!(
        "snapshot_comes_first_while_the_seller_is_busy: {:?}",
        started.elapsed()
    );
}
