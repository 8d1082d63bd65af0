//! The REST API under `/api/v1`, end to end over HTTP against an in-process server: auth,
//! validation, shows, products, seller events, orders paging, ending and deleting a show; and
//! with real WebRTC peers: codecs reach the media plane, events reach viewers, ending a show
//! tells viewers and drops the publisher.

mod support;

use std::time::Duration;

use hawker::auth::Role;
use hawker::commerce::{OrderRequest, OrderStatus, ShowState};
use reqwest::Method;
use serde_json::{json, Value};
use support::server::TestServer;
use support::{Publisher, PublisherOpts, SignalError, Viewer, ViewerOpts};

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    json: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Error bodies: JSON `{"error", "code"}`, one line.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.json["code"], code, "{}", self.text);
        let msg = self.json["error"].as_str().expect("error message");
        assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            self.headers
        );
    }
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(server: &TestServer) -> Api {
        Api {
            base: format!("{}/api/v1", server.base),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let ct = body.as_ref().map(|_| "application/json");
        self.raw(method, path, Some(token), ct, body.map(|b| b.to_string()))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }
}

fn order(show: &str, sku: &str, viewer: &str, request_id: &str) -> OrderRequest {
    OrderRequest {
        show: show.into(),
        sku: sku.into(),
        qty: 1,
        viewer: viewer.into(),
        request_id: request_id.into(),
        rtp_ts: Some(u32::MAX - 10),
        highlight_id: Some("h-1".into()),
        replay_at_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_end_to_end() {
    let server = TestServer::start(1, |_| {}).await;
    let api = Api::new(&server);
    let admin = server.token("*", Role::Admin, "ops");
    let show = "spring-sale";
    let new_show = json!({"id": show, "title": "Spring sale", "video_codecs": ["vp8"],
                          "scheduled_at": 1_900_000_000_000i64});

    // --- auth -------------------------------------------------------------------------------
    let r = api
        .raw(
            Method::POST,
            "/shows",
            None,
            Some("application/json"),
            Some(new_show.to_string()),
        )
        .await;
    r.assert_error(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    api.get("/shows", "not-a-jwt")
        .await
        .assert_error(401, "unauthorized");
    let expired = support::server::expired_token("*", Role::Admin);
    api.get("/shows", &expired)
        .await
        .assert_error(401, "unauthorized");
    for (scope, role) in [
        ("*", Role::Viewer),
        ("*", Role::Publisher),
        (show, Role::Publisher),
        (show, Role::Admin), // an admin of one show may not create or list shows
    ] {
        let t = server.token(scope, role, "someone");
        api.post("/shows", &t, new_show.clone())
            .await
            .assert_error(403, "forbidden");
        api.get("/shows", &t).await.assert_error(403, "forbidden");
    }

    // --- create: validation, success, duplicate ------------------------------------------------
    let r = api
        .raw(
            Method::POST,
            "/shows",
            Some(&admin),
            Some("text/plain"),
            Some(new_show.to_string()),
        )
        .await;
    r.assert_error(415, "unsupported_media_type");
    let r = api
        .raw(
            Method::POST,
            "/shows",
            Some(&admin),
            None,
            Some(new_show.to_string()),
        )
        .await;
    r.assert_error(415, "unsupported_media_type");
    let r = api
        .raw(
            Method::POST,
            "/shows",
            Some(&admin),
            Some("application/json"),
            Some("{\"title\": ".into()),
        )
        .await;
    r.assert_error(400, "bad_request");
    for bad in [
        json!({"id": "bad id!", "title": "x"}),
        json!({"id": "", "title": "x"}),
        json!({"id": "x".repeat(65), "title": "x"}),
        json!({"id": "ok", "title": "   "}),
        json!({"id": "ok"}),
        json!({"id": "ok", "title": "x", "colour": "red"}),
        json!({"id": "ok", "title": "x", "video_codecs": []}),
        json!({"id": "ok", "title": "x", "video_codecs": ["av1"]}),
        json!({"id": "ok", "title": "x", "scheduled_at": "tomorrow"}),
        json!([1, 2]),
    ] {
        api.post("/shows", &admin, bad.clone())
            .await
            .assert_error(400, "bad_request");
    }
    let r = api.post("/shows", &admin, new_show.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location"), Some("/api/v1/shows/spring-sale"));
    let s = &r.json;
    assert_eq!(s["id"], show);
    assert_eq!(s["title"], "Spring sale");
    assert_eq!(s["scheduled_at"], 1_900_000_000_000i64);
    assert_eq!(s["video_codecs"], json!(["vp8"]));
    assert_eq!(s["state"], "scheduled");
    assert_eq!(s["live"], false);
    assert_eq!(s["viewers"], 0);
    assert_eq!(s["peak_viewers"], 0);
    assert!(s["created_at"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(s["started_at"], Value::Null);
    assert_eq!(s["ended_at"], Value::Null);
    // The media plane got the show with its codecs.
    let live = server.app().registry.show(show).expect("in the registry");
    assert_eq!(live.video_codecs, vec![hawker::codec::Codec::Vp8]);

    api.post("/shows", &admin, new_show.clone())
        .await
        .assert_error(409, "conflict");

    let r = api
        .post("/shows", &admin, json!({"title": "Generated id"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let generated = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 16);
    assert_eq!(r.json["video_codecs"], json!(["h264", "vp8"]));

    // --- read shows -----------------------------------------------------------------------------
    let r = api.get("/shows", &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<&str> = r.json["shows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&show) && ids.contains(&generated.as_str()),
        "{ids:?}"
    );
    let ids_in = |r: &Reply| -> Vec<String> {
        r.json["shows"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let r = api.get("/shows?state=live", &admin).await;
    assert!(!ids_in(&r).contains(&show.to_string()), "{}", r.text);
    let r = api.get("/shows?state=scheduled", &admin).await;
    assert!(ids_in(&r).contains(&show.to_string()), "{}", r.text);
    assert!(ids_in(&r).contains(&generated), "{}", r.text);
    api.get("/shows?state=paused", &admin)
        .await
        .assert_error(400, "bad_request");
    let r = api.get(&format!("/shows/{show}"), &admin).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["title"], "Spring sale");
    api.get("/shows/nope", &admin)
        .await
        .assert_error(404, "not_found");
    api.get("/shows/bad%20id", &admin)
        .await
        .assert_error(400, "bad_request");

    // A show-scoped admin token works for its show only.
    let scoped = server.token(show, Role::Admin, "show-ops");
    assert_eq!(
        api.get(&format!("/shows/{show}"), &scoped).await.status,
        200
    );
    api.get(&format!("/shows/{generated}"), &scoped)
        .await
        .assert_error(403, "forbidden");
    let viewer = server.token(show, Role::Viewer, "v");
    api.get(&format!("/shows/{show}/products"), &viewer)
        .await
        .assert_error(403, "forbidden");

    // --- products -------------------------------------------------------------------------------
    let lamp = format!("/shows/{show}/products/lamp-1");
    let r = api
        .put(
            &lamp,
            &admin,
            json!({"title": "Desk lamp", "price": 2999, "currency": "USD",
                   "image_url": "https://cdn.example.com/lamp.jpg", "stock": 5}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.header("location"),
        Some("/api/v1/shows/spring-sale/products/lamp-1")
    );
    assert_eq!(
        r.json,
        json!({"show_id": show, "sku": "lamp-1", "title": "Desk lamp", "price": 2999,
               "currency": "USD", "image_url": "https://cdn.example.com/lamp.jpg", "stock": 5})
    );
    // Replacing without `stock` keeps the stock.
    let r = api
        .put(
            &lamp,
            &scoped,
            json!({"sku": "lamp-1", "title": "Desk lamp", "price": 2499, "currency": "USD"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["price"], 2499);
    assert_eq!(r.json["stock"], 5);
    assert_eq!(r.json["image_url"], Value::Null);
    for bad in [
        json!({"title": "x", "price": -1, "currency": "USD"}),
        json!({"title": "x", "price": 12.5, "currency": "USD"}),
        json!({"title": "x", "price": 1, "currency": "usd"}),
        json!({"title": "x", "price": 1, "currency": "USD", "stock": -2}),
        json!({"title": "x", "price": 1}),
        json!({"sku": "other", "title": "x", "price": 1, "currency": "USD"}),
    ] {
        api.put(&lamp, &admin, bad.clone())
            .await
            .assert_error(400, "bad_request");
    }
    api.put(
        "/shows/nope/products/lamp-1",
        &admin,
        json!({"title": "x", "price": 1, "currency": "USD"}),
    )
    .await
    .assert_error(404, "not_found");
    let r = api
        .put(
            &format!("/shows/{show}/products/mug-2"),
            &admin,
            json!({"title": "Mug", "price": 1200, "currency": "USD", "stock": 3}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.get(&format!("/shows/{show}/products"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let skus: Vec<&str> = r.json["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["lamp-1", "mug-2"]);
    assert_eq!(api.get(&lamp, &admin).await.json["price"], 2499);
    api.get(&format!("/shows/{show}/products/nope"), &admin)
        .await
        .assert_error(404, "not_found");
    api.get("/shows/nope/products", &admin)
        .await
        .assert_error(404, "not_found");

    // --- seller events --------------------------------------------------------------------------
    let events = format!("/shows/{show}/events");
    let r = api
        .post(
            &events,
            &admin,
            json!({"type": "highlight", "sku": "lamp-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"type": "highlight", "highlight_id": "h-1", "sku": "lamp-1",
               "product": {"sku": "lamp-1", "title": "Desk lamp", "price": 2499,
                           "currency": "USD", "image_url": null, "stock": 5},
               "rtp_ts": null, "basis": "none", "capture_ms": null})
    );
    assert_eq!(
        server.app().live.highlight(show).map(|h| h.sku),
        Some("lamp-1".to_string())
    );
    api.post(
        &events,
        &admin,
        json!({"type": "highlight", "sku": "ghost"}),
    )
    .await
    .assert_error(404, "not_found");
    for viewer_only in [
        json!({"type": "buy", "request_id": "r1", "sku": "lamp-1", "qty": 1}),
        json!({"type": "question", "text": "does it dim?"}),
        json!({"type": "ping"}),
    ] {
        api.post(&events, &admin, viewer_only)
            .await
            .assert_error(422, "invalid");
    }
    api.post(&events, &admin, json!({"type": "teleport"}))
        .await
        .assert_error(400, "unknown_type");
    api.post(&events, &admin, json!({"type": "price", "sku": "lamp-1"}))
        .await
        .assert_error(400, "bad_request");
    let r = api
        .raw(
            Method::POST,
            &events,
            Some(&admin),
            Some("text/plain"),
            Some(json!({"type": "chat", "text": "hi"}).to_string()),
        )
        .await;
    r.assert_error(415, "unsupported_media_type");
    let r = api
        .raw(
            Method::POST,
            &events,
            Some(&admin),
            Some("application/json"),
            Some(format!(
                r#"{{"type":"chat","text":"{}"}}"#,
                "a".repeat(5000)
            )),
        )
        .await;
    r.assert_error(413, "too_large");
    api.post(
        "/shows/nope/events",
        &admin,
        json!({"type": "chat", "text": "hi"}),
    )
    .await
    .assert_error(404, "not_found");
    let r = api
        .post(
            &events,
            &admin,
            json!({"type": "price", "sku": "lamp-1", "price": 1999, "capture_ms": 5}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["type"], "price");
    assert_eq!(r.json["price"], 1999);
    assert_eq!(r.json["currency"], "USD");
    assert_eq!(api.get(&lamp, &admin).await.json["price"], 1999);
    api.post(
        &events,
        &admin,
        json!({"type": "price", "sku": "lamp-1", "price": -5}),
    )
    .await
    .assert_error(422, "invalid");
    let r = api
        .post(
            &events,
            &admin,
            json!({"type": "stock", "sku": "mug-2", "stock": 7}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({"type": "stock", "sku": "mug-2", "stock": 7}));
    assert_eq!(
        api.get(&format!("/shows/{show}/products/mug-2"), &admin)
            .await
            .json["stock"],
        7
    );
    let r = api
        .post(
            &events,
            &admin,
            json!({"type": "chat", "text": "  20% off  "}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"type": "chat", "from": "seller", "text": "20% off"})
    );
    api.post(&events, &admin, json!({"type": "chat", "text": " "}))
        .await
        .assert_error(422, "invalid");
    let r = api
        .post(&events, &admin, json!({"type": "unhighlight"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["highlight_id"], "h-1");
    assert_eq!(r.json["sku"], "lamp-1");
    api.post(&events, &admin, json!({"type": "unhighlight"}))
        .await
        .assert_error(422, "invalid");

    // --- orders ---------------------------------------------------------------------------------
    let store = server.app().store.clone();
    // Not live yet: the store rejects.
    let res = store
        .place_order(order(show, "lamp-1", "early", "r0"))
        .await
        .unwrap();
    assert_eq!(res.status, OrderStatus::Rejected);
    store.set_show_state(show, ShowState::Live).await.unwrap();
    let r = api.get(&format!("/shows/{show}"), &admin).await;
    assert_eq!(r.json["state"], "live");
    assert!(r.json["started_at"].is_i64(), "{}", r.text);
    let mut placed = Vec::new();
    for i in 0..5 {
        let res = store
            .place_order(order(show, "lamp-1", &format!("viewer-{i}"), "r1"))
            .await
            .unwrap();
        assert_eq!(res.status, OrderStatus::Confirmed, "{res:?}");
        placed.push(res.order_id.unwrap());
    }
    let res = store
        .place_order(order(show, "lamp-1", "late", "r1"))
        .await
        .unwrap();
    assert_eq!(res.status, OrderStatus::SoldOut);

    let orders = format!("/shows/{show}/orders");
    let mut seen = Vec::new();
    let mut cursor = 0i64;
    let mut pages = 0;
    loop {
        let r = api
            .get(&format!("{orders}?after={cursor}&limit=2"), &admin)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json["orders"].as_array().unwrap().clone();
        let next = r.json["next_cursor"].as_i64().unwrap();
        if page.is_empty() {
            assert_eq!(next, cursor, "an empty page keeps the cursor");
            break;
        }
        assert!(page.len() <= 2);
        assert!(next > cursor);
        assert_eq!(page.last().unwrap()["seq"].as_i64(), Some(next));
        for o in &page {
            assert_eq!(o["status"], "confirmed");
            assert_eq!(o["show_id"], show);
            assert_eq!(o["unit_price"], 1999);
            assert_eq!(o["currency"], "USD");
            assert_eq!(o["rtp_ts"], u32::MAX - 10);
            seen.push(o["order_id"].as_str().unwrap().to_string());
        }
        cursor = next;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, placed, "every confirmed order, in order, once");
    let r = api.get(&orders, &admin).await;
    assert_eq!(r.json["orders"].as_array().unwrap().len(), 5);
    for bad in ["?limit=0", "?limit=1001", "?limit=ten", "?after=-1"] {
        api.get(&format!("{orders}{bad}"), &admin)
            .await
            .assert_error(400, "bad_request");
    }
    api.get("/shows/nope/orders", &admin)
        .await
        .assert_error(404, "not_found");
    let r = api.get(&format!("{orders}/{}", placed[2]), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["viewer"], "viewer-2");
    assert_eq!(r.json["highlight_id"], "h-1");
    assert_eq!(r.json["qty"], 1);
    api.get(&format!("{orders}/nope"), &admin)
        .await
        .assert_error(404, "not_found");

    // --- end and delete -------------------------------------------------------------------------
    // Per-show series carry the show, never a sku, and go when the show ends.
    let show_label = format!("show=\"{show}\"");
    let text = server.metrics_text().await;
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hawker_highlights_total{"))
        .collect();
    assert!(
        !series.is_empty() && series.iter().all(|l| !l.contains("sku=")),
        "{series:?}"
    );
    assert!(series.iter().any(|l| l.contains(&show_label)), "{series:?}");
    api.delete(&format!("/shows/{show}"), &admin)
        .await
        .assert_error(409, "conflict");
    let r = api
        .call(Method::POST, &format!("/shows/{show}/end"), &admin, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let text = server.metrics_text().await;
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("hawker_highlight") && l.contains(&show_label)),
        "series of the ended show remain"
    );
    assert_eq!(r.json["state"], "ended");
    assert!(r.json["ended_at"].is_i64(), "{}", r.text);
    assert_eq!(r.json["live"], false);
    // Ending again is harmless.
    let again = api
        .call(Method::POST, &format!("/shows/{show}/end"), &admin, None)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["ended_at"], r.json["ended_at"]);
    api.post(&events, &admin, json!({"type": "chat", "text": "hello?"}))
        .await
        .assert_error(409, "conflict");
    let r = api.get("/shows?state=ended", &admin).await;
    assert_eq!(ids_in(&r), [show.to_string()], "{}", r.text);

    let mug = format!("/shows/{show}/products/mug-2");
    assert_eq!(api.delete(&mug, &admin).await.status, 204);
    api.delete(&mug, &admin)
        .await
        .assert_error(404, "not_found");
    let r = api.delete(&format!("/shows/{show}"), &admin).await;
    assert_eq!(r.status, 204, "{}", r.text);
    api.get(&format!("/shows/{show}"), &admin)
        .await
        .assert_error(404, "not_found");
    assert!(server.app().registry.show(show).is_none());
    api.delete(&format!("/shows/{show}"), &admin)
        .await
        .assert_error(404, "not_found");

    // --- routing --------------------------------------------------------------------------------
    api.get("/nope", &admin)
        .await
        .assert_error(404, "not_found");
    let r = api.call(Method::PATCH, "/shows", &admin, None).await;
    r.assert_error(405, "method_not_allowed");
    let allow = r.header("allow").unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow:?}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_show_events_reach_viewers_and_the_seller_ends_it() {
    support::init_logging();
    let server = TestServer::start(2, |cfg| cfg.shows.create_on_first_use = false).await;
    let api = Api::new(&server);
    let admin = server.token("*", Role::Admin, "ops");
    let publisher_token = server.token("studio", Role::Publisher, "seller");

    // Codecs set through the API are what WHIP negotiates with.
    let r = api
        .post(
            "/shows",
            &admin,
            json!({"id": "h264-only", "title": "H.264 only", "video_codecs": ["h264"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let t = server.token("h264-only", Role::Publisher, "seller");
    let vp8_only = PublisherOpts {
        audio: false,
        ..PublisherOpts::default()
    };
    let err = Publisher::connect(&server.whip("h264-only"), &t, vp8_only)
        .await
        .err()
        .expect("a VP8-only offer is refused");
    let sig = err.downcast_ref::<SignalError>().expect("signalling error");
    assert_eq!(sig.status, 422, "{sig}");

    let r = api
        .post(
            "/shows",
            &admin,
            json!({"id": "studio", "title": "Studio", "video_codecs": ["vp8"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api
        .put(
            "/shows/studio/products/lamp-1",
            &admin,
            json!({"title": "Desk lamp", "price": 2999, "currency": "EUR", "stock": 4}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let publisher = Publisher::connect(
        &server.whip("studio"),
        &publisher_token,
        PublisherOpts::default(),
    )
    .await
    .expect("publisher connects");
    publisher.start_streaming(30);
    let viewer = Viewer::connect(
        &server.whep("studio"),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("viewer connects");
    let has = |t: &'static str| {
        move |log: &support::RecvLog| {
            log.messages
                .iter()
                .any(|m| serde_json::from_str::<Value>(m).is_ok_and(|v| v["type"] == t))
        }
    };
    viewer
        .wait_for(has("snapshot"), Duration::from_secs(10))
        .await
        .expect("snapshot");
    viewer
        .wait_for(|log| !log.video.is_empty(), Duration::from_secs(10))
        .await
        .expect("video flows");

    // The show is live for both the store and the media plane.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        let r = api.get("/shows/studio", &admin).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.json["state"] == "live" && r.json["live"] == true && r.json["viewers"] == 1 {
            break r.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "show never live: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(s["peak_viewers"].as_u64().unwrap() >= 1);
    api.delete("/shows/studio", &admin)
        .await
        .assert_error(409, "conflict");

    // A highlight through the API is stamped with the video clock and fanned out as returned.
    let r = api
        .post(
            "/shows/studio/events",
            &admin,
            json!({"type": "highlight", "sku": "lamp-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["basis"], "latest");
    assert!(r.json["rtp_ts"].is_u64(), "{}", r.text);
    let sent = r.json.clone();
    viewer
        .wait_for(
            |log| {
                log.messages
                    .iter()
                    .any(|m| serde_json::from_str::<Value>(m).ok().as_ref() == Some(&sent))
            },
            Duration::from_secs(5),
        )
        .await
        .expect("the viewer gets the highlight exactly as the API answered");

    // Ending: `show_ended` to viewers, the publisher is dropped, the show is off air. The
    // seller's own publisher token may end the show (the studio's End show does); a viewer
    // token, or a publisher token of another show, may not.
    for (token, who) in [
        (
            server.token("studio", Role::Viewer, "fan"),
            "a viewer token",
        ),
        (
            server.token("h264-only", Role::Publisher, "seller"),
            "another show's publisher token",
        ),
    ] {
        let r = api
            .call(Method::POST, "/shows/studio/end", &token, None)
            .await;
        assert_eq!(r.status, 403, "{who} ended the show: {}", r.text);
    }
    let r = api
        .call(Method::POST, "/shows/studio/end", &publisher_token, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "ended");
    assert_eq!(r.json["live"], false);
    viewer
        .wait_for(has("show_ended"), Duration::from_secs(5))
        .await
        .expect("show_ended");
    let msgs = viewer.messages();
    let ended: Value = msgs
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .find(|v| v["type"] == "show_ended")
        .unwrap();
    assert_eq!(ended["ended_at"], r.json["ended_at"]);
    // The highlight was cleared first.
    let types: Vec<String> = msgs
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .map(|v| v["type"].as_str().unwrap_or("").to_string())
        .collect();
    let pos = |t: &str| types.iter().position(|x| x == t);
    assert!(
        pos("unhighlight").is_some() && pos("unhighlight") < pos("show_ended"),
        "{types:?}"
    );
    publisher
        .wait_disconnected(Duration::from_secs(10))
        .await
        .expect("the publisher is dropped");
    let live = server.app().registry.show("studio").unwrap();
    assert!(live.publisher.lock().is_none());
    assert!(server.app().live.highlight("studio").is_none());
    // The media plane's peak reached the store (and so the `show.ended` webhook).
    let stored = server.app().store.show("studio").await.unwrap().unwrap();
    assert!(stored.peak_viewers >= 1, "{stored:?}");

    let r = api.delete("/shows/studio", &admin).await;
    assert_eq!(r.status, 204, "{}", r.text);

    let _ = viewer.close().await;
    publisher.stop_streaming();
    server.stop().await;
}

/// `http.admin_listen`: admin tokens work on the admin listener only; the public listener
/// refuses them (403, counted) on every route, while a seller's publisher token still ends the
/// show there. The admin listener serves the API and `/healthz`, not the pages or WHIP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tokens_work_only_on_the_admin_listener() {
    let server = TestServer::start(1, |c| {
        c.http.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin_addr = server
        .running
        .as_ref()
        .unwrap()
        .admin_addr
        .expect("the admin listener is bound");
    let public = Api::new(&server);
    let private = Api {
        base: format!("http://{admin_addr}/api/v1"),
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    let admin = server.token("*", Role::Admin, "ops");
    let show = "admin-split";

    // Public: refused with the reason, before any route sees the token.
    let r = public.get("/shows", &admin).await;
    r.assert_error(403, "forbidden");
    assert!(
        r.json["error"].as_str().unwrap().contains("admin_listen"),
        "{}",
        r.text
    );
    public
        .post(
            "/shows",
            &admin,
            json!({"id": show, "title": "Admin split"}),
        )
        .await
        .assert_error(403, "forbidden");
    // Not only the API: WHIP with an admin token is refused too (plain text there).
    let whip = public
        .client
        .post(server.whip(show))
        .bearer_auth(&admin)
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(whip.status().as_u16(), 403);
    assert_eq!(
        server.metric("hawker_admin_tokens_refused_total", "").await,
        3.0
    );

    // Private: the same requests work.
    let r = private
        .post(
            "/shows",
            &admin,
            json!({"id": show, "title": "Admin split"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = private.get("/shows", &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(show), "{}", r.text);
    let health = private
        .client
        .get(format!("http://{admin_addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    for path in [format!("/watch/{show}"), format!("/whip/{show}")] {
        let r = private
            .client
            .get(format!("http://{admin_addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path} on the admin listener");
    }

    // A bad token is not an admin token: the route answers as usual (401), not counted.
    public
        .get("/shows", "not-a-jwt")
        .await
        .assert_error(401, "unauthorized");
    // The seller's publisher token still ends their show on the public listener.
    let seller = server.token(show, Role::Publisher, "seller");
    let r = public
        .post(&format!("/shows/{show}/end"), &seller, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = private.get(&format!("/shows/{show}"), &admin).await;
    assert_eq!(r.json["state"], "ended", "{}", r.text);
    assert_eq!(
        server.metric("hawker_admin_tokens_refused_total", "").await,
        3.0
    );
    server.stop().await;
}

/// The admin listener cannot share an address with the public or metrics listener.
#[test]
fn admin_listen_must_be_its_own_address() {
    let mut cfg = hawker::config::Config::default();
    cfg.http.admin_listen = Some(cfg.http.listen);
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("http.admin_listen"), "{e}");
    cfg.http.admin_listen = Some(cfg.metrics.listen);
    assert!(cfg.validate().is_err());
    cfg.http.admin_listen = Some("127.0.0.1:8081".parse().unwrap());
    cfg.validate().unwrap();
}
