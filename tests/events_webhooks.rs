//! Webhooks through a flaky receiver: the endpoint answers the first K requests with 500 and
//! then recovers. The seller goes live (`show.live`), a viewer buys (`order.created` ×3; a
//! sold-out attempt and a buy after the end, rejected, produce no event), the show ends
//! through `POST /api/v1/shows/{show}/end`, which must answer 200 (`show.ended`). Every event is
//! delivered (acknowledged with 2xx exactly once), every request carries a valid
//! `X-Hawker-Signature` under the webhook key (here the default: derived from the token
//! secret, never the token secret itself), retries reuse the same
//! `X-Hawker-Delivery` id and byte-identical body after a backoff, and the payloads match the
//! orders the viewers were told about.

#[path = "support/live.rs"]
mod live;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hawker::auth::Role;
use hawker::commerce::webhooks::verify;
use hawker::commerce::ShowState;
use parking_lot::Mutex;
use serde_json::{json, Value};
use support::server::TestServer;
use support::{Publisher, PublisherOpts, Viewer, ViewerOpts};

/// Requests the receiver fails before recovering.
const FAIL_FIRST: usize = 4;
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    status: u16,
    event: String,
    delivery: String,
    signature: String,
    body: Bytes,
}

#[derive(Default)]
struct Receiver {
    hits: Mutex<Vec<Hit>>,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut hits = r.hits.lock();
    let status = if hits.len() < FAIL_FIRST { 500 } else { 200 };
    hits.push(Hit {
        at: Instant::now(),
        status,
        event: h("x-hawker-event"),
        delivery: h("x-hawker-delivery"),
        signature: h("x-hawker-signature"),
        body,
    });
    StatusCode::from_u16(status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_signed_despite_failures() {
    support::init_logging();
    let t0 = Instant::now();
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(receiver.clone());
    let receiver_task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });

    let server = TestServer::start(2, |cfg| {
        cfg.commerce.webhook_urls = vec![url.clone()];
    })
    .await;
    let app = server.app().clone();
    // What `hawker webhook-secret` prints for this configuration.
    let webhook_key = hawker::auth::derive_webhook_secret(support::server::TEST_SECRET.as_bytes());
    let show = "hooks";
    live::seed_show(&app.store, show, &[("lamp-1", "Brass desk lamp", 4900, 4)]).await;

    // show.live: the seller connects.
    let seller = Publisher::connect(
        &server.whip(show),
        &server.token(show, Role::Publisher, "seller"),
        PublisherOpts::default().with_data_channel(),
    )
    .await
    .expect("publisher connects");
    seller.start_streaming(30);
    live::wait_show_state(&app.store, show, ShowState::Live, WAIT)
        .await
        .unwrap();

    // order.created ×3 (1 + 2 + 1 units = the whole stock), then a sold-out attempt (no event).
    let viewer = Viewer::connect(
        &server.whep(show),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("viewer connects");
    live::wait_json(
        "snapshot",
        WAIT,
        0,
        || viewer.messages(),
        |m| m["type"] == "snapshot",
    )
    .await
    .unwrap();
    let mut confirmed = BTreeMap::new();
    for (rid, qty, want) in [
        ("w1", 1, "confirmed"),
        ("w2", 2, "confirmed"),
        ("w3", 1, "confirmed"),
        ("w4", 1, "sold_out"),
    ] {
        viewer
            .send_text(
                &json!({"type": "buy", "request_id": rid, "sku": "lamp-1", "qty": qty}).to_string(),
            )
            .await
            .unwrap();
        let (_, a) = live::wait_json(
            rid,
            WAIT,
            0,
            || viewer.messages(),
            |m| m["type"] == "order" && m["request_id"] == rid,
        )
        .await
        .unwrap();
        assert_eq!(a["status"], want, "{a}");
        if want == "confirmed" {
            confirmed.insert(a["order_id"].as_str().unwrap().to_string(), (rid, qty));
        }
    }

    // show.ended: through the REST API, which must answer 200.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/shows/{show}/end", server.base))
        .bearer_auth(server.token(show, Role::Admin, "admin"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "POST /api/v1/shows/{show}/end: {body}");
    live::wait_show_state(&app.store, show, ShowState::Ended, WAIT)
        .await
        .unwrap();

    // A buy after the end is rejected by the store (recorded, no event).
    viewer
        .send_text(
            &json!({"type": "buy", "request_id": "w5", "sku": "lamp-1", "qty": 1}).to_string(),
        )
        .await
        .unwrap();
    let (_, a) = live::wait_json(
        "w5",
        WAIT,
        0,
        || viewer.messages(),
        |m| m["request_id"] == "w5",
    )
    .await
    .unwrap();
    assert_eq!(
        (a["type"].as_str(), a["status"].as_str()),
        (Some("order"), Some("rejected")),
        "{a}"
    );

    // Every event acknowledged: 1 show.live + 3 order.created + 1 show.ended.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let acked: HashSet<String> = receiver
            .hits
            .lock()
            .iter()
            .filter(|h| h.status == 200)
            .map(|h| h.delivery.clone())
            .collect();
        if acked.len() >= 5 && app.store.outbox_pending().await.unwrap() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all events delivered: {} acked; hits {:#?}",
            acked.len(),
            receiver
                .hits
                .lock()
                .iter()
                .map(|h| (&h.event, &h.delivery, h.status))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more arrives (a 2xx'd event is not sent again).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hits = receiver.hits.lock().clone();

    // Every request is signed with the configured secret, and says what it carries.
    for h in &hits {
        assert!(
            verify(webhook_key.as_bytes(), &h.body, &h.signature),
            "bad signature {:?} on delivery {}",
            h.signature,
            h.delivery
        );
        assert!(!verify(b"another secret", &h.body, &h.signature));
        // The token secret is not the webhook key: a receiver cannot mint tokens with it.
        assert!(!verify(
            support::server::TEST_SECRET.as_bytes(),
            &h.body,
            &h.signature
        ));
        let v: Value = serde_json::from_slice(&h.body).unwrap();
        assert_eq!(
            v["type"],
            h.event.as_str(),
            "X-Hawker-Event matches the body"
        );
        assert_eq!(
            v["id"].to_string(),
            h.delivery,
            "X-Hawker-Delivery is the event id"
        );
    }
    // The first K failed; each failed delivery was retried with the same body after a backoff
    // (base 1 s, upper half jittered: at least 0.5 s), and each delivery was acked exactly once.
    assert_eq!(hits.iter().filter(|h| h.status == 500).count(), FAIL_FIRST);
    let mut by_delivery: BTreeMap<String, Vec<&Hit>> = BTreeMap::new();
    for h in &hits {
        by_delivery.entry(h.delivery.clone()).or_default().push(h);
    }
    assert_eq!(
        by_delivery.len(),
        5,
        "five events: {:?}",
        by_delivery.keys()
    );
    for (id, hs) in &by_delivery {
        let oks = hs.iter().filter(|h| h.status == 200).count();
        assert_eq!(oks, 1, "delivery {id} acknowledged exactly once: {hs:?}");
        assert_eq!(hs.last().unwrap().status, 200);
        for w in hs.windows(2) {
            assert_eq!(w[0].body, w[1].body, "retry of {id} has the same body");
            assert_eq!(w[0].signature, w[1].signature);
            let gap = w[1].at - w[0].at;
            assert!(
                gap >= Duration::from_millis(450),
                "retry of {id} after {gap:?}"
            );
        }
    }

    // The payloads.
    let events: Vec<Value> = by_delivery
        .values()
        .map(|hs| serde_json::from_slice(&hs[0].body).unwrap())
        .collect();
    let of = |t: &str| events.iter().filter(|e| e["type"] == t).collect::<Vec<_>>();
    let live_ev = of("show.live");
    assert_eq!(live_ev.len(), 1);
    assert_eq!(live_ev[0]["data"]["show_id"], show);
    let orders = of("order.created");
    assert_eq!(
        orders.len(),
        3,
        "one per confirmed order, none for sold out"
    );
    for o in &orders {
        let d = &o["data"];
        let id = d["order_id"].as_str().unwrap();
        let (rid, qty) = confirmed
            .get(id)
            .unwrap_or_else(|| panic!("webhook for an order no viewer was told about: {d}"));
        assert_eq!(d["request_id"], *rid);
        assert_eq!(d["qty"], *qty);
        assert_eq!(d["show_id"], show);
        assert_eq!(d["sku"], "lamp-1");
        assert_eq!(
            (d["unit_price"].as_i64(), d["currency"].as_str()),
            (Some(4900), Some("USD"))
        );
    }
    let ended = of("show.ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["data"]["orders"], 3);
    assert_eq!(ended[0]["data"]["units"], 4);
    let retried: Vec<_> = by_delivery
        .values()
        .filter(|hs| hs.len() > 1)
        .map(|hs| format!("{}×{}", hs[0].event, hs.len()))
        .collect();
    eprintln!(
        "webhooks: {} requests for 5 events, {FAIL_FIRST} failed; retried: {retried:?}",
        hits.len()
    );

    viewer.close().await.ok();
    seller.close().await.ok();
    server.stop().await;
    receiver_task.abort();
    eprintln!("events_webhooks: {:?}", t0.elapsed());
}
