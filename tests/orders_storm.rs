//! Orders over the `events` data channel under contention, idempotency, rate limit, max qty.
//!
//! * `storm_sells_exactly_the_stock`: 200 viewers send 1000 concurrent `buy`s (5 each,
//!   distinct request ids, qty 1) for a product with stock 100 → exactly 100 `confirmed`
//!   (distinct order ids, all in the store), 900 `sold_out`, stock 0 in the store and in the
//!   stock mirror, viewers told `stock: 0`; then every request id is retried (one of them with a
//!   different qty) and gets its first answer back (same status, same order id), with no new
//!   order and no stock change.
//! * `rate_limit_and_max_qty`: with `commerce.buys_per_minute = 3` a viewer's 4th and 5th buy
//!   within the minute are `rate_limited` (not recorded), another viewer is not limited; qty 11
//!   with the default max 10 is `invalid` and costs no token: three valid buys after it (qty 10
//!   among them) are confirmed and only the fourth is `rate_limited`.
//!
//! In every test no (viewer, request id) has more than one stored order.

#[path = "support/live.rs"]
mod live;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hawker::commerce::ShowState;
use serde_json::{json, Value};
use support::server::TestServer;
use support::{Viewer, ViewerOpts};

const WAIT: Duration = Duration::from_secs(10);
const VIEWERS: usize = 200;
const BUYS_EACH: usize = 5;
const STOCK: i64 = 100;

/// Viewers that only need the data channel (a recvonly video m-line keeps the offer a normal
/// WHEP offer; no media flows: there is no publisher).
fn dc_viewer_opts() -> ViewerOpts {
    ViewerOpts {
        audio: false,
        connect_timeout: Duration::from_secs(20),
        ..ViewerOpts::default().with_data_channel()
    }
}

/// The `order` answers a viewer got, by request id (panics on a duplicate answer).
fn answers(v: &Viewer) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for m in live::of_type(&v.messages(), "order") {
        let rid = m["request_id"].as_str().unwrap().to_string();
        assert!(
            out.insert(rid.clone(), m).is_none(),
            "two answers for {rid}"
        );
    }
    out
}

/// Idempotency across the whole store, for every viewer: no (viewer, request id) has two
/// stored orders.
fn assert_each_request_stored_once(stored: &[hawker::commerce::Order]) {
    let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
    let mut twice = Vec::new();
    for o in stored {
        if let Some(first) = seen.insert((&o.viewer, &o.request_id), &o.order_id) {
            twice.push(format!(
                "{} {}: {first} and {}",
                o.viewer, o.request_id, o.order_id
            ));
        }
    }
    assert!(
        twice.is_empty(),
        "(viewer, request id) stored more than once: {twice:?}"
    );
}

async fn live_show(server: &TestServer, show: &str, stock: i64) {
    let app = server.app();
    live::seed_show(
        &app.store,
        show,
        &[("hot-1", "Limited sneaker", 12_900, stock)],
    )
    .await;
    app.store
        .set_show_state(show, ShowState::Live)
        .await
        .expect("show goes live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_sells_exactly_the_stock() {
    support::init_logging();
    let t0 = Instant::now();
    let server = TestServer::start(2, |cfg| {
        // 10 buys per viewer in this test (5 + 5 retries): stay clear of the limiter.
        cfg.commerce.buys_per_minute = 1000;
        // Every test viewer buys from 127.0.0.1: no per-address budget here.
        cfg.commerce.buys_per_minute_per_ip = 0;
    })
    .await;
    let app = server.app().clone();
    let show = "storm";
    live_show(&server, show, STOCK).await;

    let whep = server.whep(show);
    // Stable anonymous ids, signed as the server would have issued them, so a viewer's orders
    // can be found by its id.
    let keys = &server.app().keys;
    let viewers = live::connect_viewers(
        VIEWERS,
        8,
        |i| format!("{whep}?viewer={}", keys.sign_anon_viewer(&format!("v{i}"))),
        dc_viewer_opts(),
    )
    .await
    .expect("viewers connect");
    let viewers: Arc<Vec<Viewer>> = Arc::new(viewers);
    for v in viewers.iter() {
        live::wait_json(
            "snapshot",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "snapshot",
        )
        .await
        .unwrap();
    }
    let connected = t0.elapsed();
    eprintln!("{VIEWERS} viewers connected with open data channels in {connected:?}");

    // The storm: every viewer fires its 5 buys at once, all viewers together.
    let storm_start = Instant::now();
    let barrier = Arc::new(tokio::sync::Barrier::new(VIEWERS));
    let mut tasks = Vec::new();
    for i in 0..VIEWERS {
        let (viewers, barrier) = (viewers.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            for k in 0..BUYS_EACH {
                let m = json!({"type": "buy", "request_id": format!("v{i}-r{k}"),
                               "sku": "hot-1", "qty": 1});
                viewers[i].send_text(&m.to_string()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (i, v) in viewers.iter().enumerate() {
        live::wait_json(
            "5 answers",
            Duration::from_secs(30),
            0,
            || v.messages(),
            |_| answers(v).len() == BUYS_EACH,
        )
        .await
        .unwrap_or_else(|e| panic!("viewer {i}: {e}"));
    }
    let storm_time = storm_start.elapsed();

    // Tally.
    let mut first: HashMap<(usize, String), Value> = HashMap::new();
    let mut by_status: HashMap<String, usize> = HashMap::new();
    let mut order_ids = HashSet::new();
    for (i, v) in viewers.iter().enumerate() {
        let errors = live::of_type(&v.messages(), "error");
        assert!(errors.is_empty(), "viewer {i} got errors: {errors:?}");
        for (rid, a) in answers(v) {
            assert_eq!(a["sku"], "hot-1");
            assert_eq!(a["qty"], 1);
            let status = a["status"].as_str().unwrap().to_string();
            match status.as_str() {
                "confirmed" => {
                    let id = a["order_id"].as_str().expect("confirmed has an order_id");
                    assert!(order_ids.insert(id.to_string()), "duplicate order id {id}");
                }
                "sold_out" => assert_eq!(a["order_id"], Value::Null, "{a}"),
                other => panic!("unexpected status {other}: {a}"),
            }
            *by_status.entry(status).or_default() += 1;
            first.insert((i, rid), a);
        }
    }
    eprintln!(
        "storm: {} buys answered in {storm_time:?}: {by_status:?}",
        VIEWERS * BUYS_EACH
    );
    assert_eq!(by_status.get("confirmed").copied(), Some(STOCK as usize));
    assert_eq!(
        by_status.get("sold_out").copied(),
        Some(VIEWERS * BUYS_EACH - STOCK as usize)
    );

    // The store agrees: stock 0 (mirror and SQLite), exactly those 100 orders.
    assert_eq!(app.store.stock(show, "hot-1"), Some(0));
    let p = app.store.product(show, "hot-1").await.unwrap().unwrap();
    assert_eq!(p.stock, 0);
    let (stored, _) = app.store.orders_after(show, 0, 1000).await.unwrap();
    assert_eq!(stored.len(), STOCK as usize);
    let stored_ids: HashSet<String> = stored.iter().map(|o| o.order_id.clone()).collect();
    assert_eq!(stored_ids, order_ids, "confirmed answers = stored orders");
    assert_each_request_stored_once(&stored);
    for o in &stored {
        let i: usize = o.viewer.strip_prefix("anon-v").unwrap().parse().unwrap();
        let a = &first[&(i, o.request_id.clone())];
        assert_eq!(a["order_id"], o.order_id.as_str());
        assert_eq!((o.qty, o.unit_price), (1, 12_900));
    }
    // Viewers were told the product sold out.
    for (i, v) in viewers.iter().enumerate().step_by(20) {
        live::wait_json(
            "stock 0",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "stock" && m["sku"] == "hot-1" && m["stock"] == 0,
        )
        .await
        .unwrap_or_else(|e| panic!("viewer {i}: {e}"));
    }

    // Retries: every request id again (v0-r0 with a different qty): the first answer back.
    let before: Vec<usize> = viewers.iter().map(|v| v.messages().len()).collect();
    let mut tasks = Vec::new();
    for i in 0..VIEWERS {
        let viewers = viewers.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..BUYS_EACH {
                let qty = if (i, k) == (0, 0) { 3 } else { 1 };
                let m = json!({"type": "buy", "request_id": format!("v{i}-r{k}"),
                               "sku": "hot-1", "qty": qty});
                viewers[i].send_text(&m.to_string()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut mismatches = Vec::new();
    for (i, v) in viewers.iter().enumerate() {
        let from = before[i];
        live::wait_json(
            "5 retry answers",
            Duration::from_secs(30),
            from,
            || v.messages(),
            |_| live::of_type(&v.messages()[from..], "order").len() == BUYS_EACH,
        )
        .await
        .unwrap_or_else(|e| panic!("viewer {i}: {e}"));
        for a in live::of_type(&v.messages()[from..], "order") {
            let rid = a["request_id"].as_str().unwrap().to_string();
            let orig = &first[&(i, rid.clone())];
            for f in ["status", "order_id", "qty", "sku", "reason"] {
                if a[f] != orig[f] {
                    mismatches.push(format!("viewer {i} {rid}: {f} {} then {}", orig[f], a[f]));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "retries changed answers:\n{}",
        mismatches.join("\n")
    );
    let (stored2, _) = app.store.orders_after(show, 0, 1000).await.unwrap();
    assert_eq!(stored2.len(), STOCK as usize, "retries created no order");
    assert_each_request_stored_once(&stored2);
    assert_eq!(app.store.stock(show, "hot-1"), Some(0));

    for v in viewers.iter() {
        v.close_without_delete().await;
    }
    server.stop().await;
    eprintln!(
        "orders_storm: total {:?} (connect {connected:?}, storm {storm_time:?})",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_max_qty() {
    support::init_logging();
    let t0 = Instant::now();
    let server = TestServer::start(1, |cfg| {
        cfg.commerce.buys_per_minute = 3;
    })
    .await;
    assert_eq!(server.app().cfg.commerce.max_qty_per_order, 10);
    let app = server.app().clone();
    let show = "limits";
    live_show(&server, show, STOCK).await;
    let whep = server.whep(show);
    let keys = &app.keys;
    let vs = live::connect_viewers(
        3,
        3,
        |i| format!("{whep}?viewer={}", keys.sign_anon_viewer(&format!("l{i}"))),
        dc_viewer_opts(),
    )
    .await
    .unwrap();
    for v in &vs {
        live::wait_json(
            "snapshot",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "snapshot",
        )
        .await
        .unwrap();
    }
    let buy = |rid: &str, qty: i64| {
        json!({"type": "buy", "request_id": rid, "sku": "hot-1", "qty": qty}).to_string()
    };
    /// The reply (order or error) carrying `rid`.
    async fn reply_to(v: &Viewer, rid: &str) -> Value {
        live::wait_json(
            &format!("reply to {rid}"),
            WAIT,
            0,
            || v.messages(),
            |m| m["request_id"] == rid,
        )
        .await
        .unwrap()
        .1
    }

    // Viewer 0: five buys in a burst; the bucket holds 3.
    for k in 0..5 {
        vs[0].send_text(&buy(&format!("a{k}"), 1)).await.unwrap();
        // Sequential, so which ones are limited is deterministic.
        reply_to(&vs[0], &format!("a{k}")).await;
    }
    let mut statuses = Vec::new();
    for k in 0..5 {
        let r = reply_to(&vs[0], &format!("a{k}")).await;
        statuses.push(format!(
            "{}:{}",
            r["type"].as_str().unwrap(),
            r["status"].as_str().or(r["code"].as_str()).unwrap()
        ));
        if k >= 3 {
            let msg = r["message"].as_str().unwrap();
            let ms: u64 = msg
                .split("retry in ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no retry hint in {msg:?}"));
            // 3 per minute: the next token is at most 20 s away.
            assert!((1..=20_000).contains(&ms), "retry hint {ms} ms");
        }
    }
    assert_eq!(
        statuses,
        [
            "order:confirmed",
            "order:confirmed",
            "order:confirmed",
            "error:rate_limited",
            "error:rate_limited"
        ]
    );

    // Viewer 1 has its own bucket.
    vs[1].send_text(&buy("b0", 1)).await.unwrap();
    let r = reply_to(&vs[1], "b0").await;
    assert_eq!(
        (r["type"].as_str(), r["status"].as_str()),
        (Some("order"), Some("confirmed"))
    );

    // Viewer 2: qty 11 is invalid (max 10) and costs no token: after it, the viewer still has
    // its whole bucket of 3 (qty 10 among them is fine), and only the 4th valid buy is limited.
    vs[2].send_text(&buy("c0", 11)).await.unwrap();
    let r = reply_to(&vs[2], "c0").await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("invalid")),
        "{r}"
    );
    assert!(r["message"].as_str().unwrap().contains("10"), "{r}");
    for (rid, qty) in [("c1", 10), ("c2", 1), ("c3", 1)] {
        vs[2].send_text(&buy(rid, qty)).await.unwrap();
        let r = reply_to(&vs[2], rid).await;
        assert_eq!(
            r["status"], "confirmed",
            "{rid}: a valid buy after the invalid one: {r}"
        );
        assert_eq!(r["qty"], qty);
    }
    vs[2].send_text(&buy("c4", 1)).await.unwrap();
    let r = reply_to(&vs[2], "c4").await;
    assert_eq!(r["code"], "rate_limited", "the bucket holds 3: {r}");

    // Only the confirmed buys are recorded: 3 + 1 + 12 units.
    let (stored, _) = app.store.orders_after(show, 0, 100).await.unwrap();
    assert_each_request_stored_once(&stored);
    let mut rids: Vec<&str> = stored.iter().map(|o| o.request_id.as_str()).collect();
    rids.sort();
    assert_eq!(rids, ["a0", "a1", "a2", "b0", "c1", "c2", "c3"]);
    assert_eq!(app.store.stock(show, "hot-1"), Some(STOCK - 16));

    for v in &vs {
        v.close().await.unwrap();
    }
    server.stop().await;
    eprintln!("rate_limit_and_max_qty: {:?}", t0.elapsed());
}

/// docs/protocol.md §5.4: "resending the same `request_id` (after a timeout or reconnect) gets
/// the first answer again and never buys twice". A viewer that used up its buys for the minute
/// and resends a request whose answer it lost must get that answer, not `rate_limited` (and a
/// resend must not cost a token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_request_gets_its_first_answer_even_when_rate_limited() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| {
        cfg.commerce.buys_per_minute = 2;
    })
    .await;
    let show = "resend";
    live_show(&server, show, STOCK).await;
    let v = live::connect_viewers(
        1,
        1,
        |_| {
            let id = server.app().keys.sign_anon_viewer("r0");
            format!("{}?viewer={id}", server.whep(show))
        },
        dc_viewer_opts(),
    )
    .await
    .unwrap()
    .remove(0);
    live::wait_json(
        "snapshot",
        WAIT,
        0,
        || v.messages(),
        |m| m["type"] == "snapshot",
    )
    .await
    .unwrap();
    let ask = |rid: &'static str| {
        let v = &v;
        async move {
            let from = v.messages().len();
            let m = json!({"type": "buy", "request_id": rid, "sku": "hot-1", "qty": 1});
            v.send_text(&m.to_string()).await.unwrap();
            live::wait_json(rid, WAIT, from, || v.messages(), |m| m["request_id"] == rid)
                .await
                .unwrap()
                .1
        }
    };
    let first = ask("x1").await;
    assert_eq!(first["status"], "confirmed", "{first}");
    assert_eq!(ask("x2").await["status"], "confirmed");
    // The bucket (2 per minute) is empty now.
    assert_eq!(ask("x3").await["code"], "rate_limited");
    // The answer to x1 was "lost"; the viewer resends it.
    let again = ask("x1").await;
    let (stored, _) = server.app().store.orders_after(show, 0, 100).await.unwrap();
    assert_each_request_stored_once(&stored);
    assert_eq!(stored.len(), 2, "x1 and x2 only: {stored:?}");
    v.close().await.unwrap();
    server.stop().await;
    assert_eq!(
        (
            again["type"].as_str(),
            again["status"].as_str(),
            again["order_id"].as_str()
        ),
        (Some("order"), Some("confirmed"), first["order_id"].as_str()),
        "resent x1 while rate limited: got {again}, first answer was {first}"
    );
}
