//! Scenario tests of the commerce core against real SQLite files: the order storm, idempotency,
//! restart recovery, a SIGKILL mid-storm in a child process, and webhook delivery to a local
//! receiver that fails before it recovers.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::task::JoinSet;

use super::store::{Config, Synchronous};
use super::webhooks::{self, Endpoint, Worker};
use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "hawker-commerce-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("commerce.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn req(show: &str, sku: &str, qty: u32, viewer: &str, request_id: &str) -> OrderRequest {
    OrderRequest {
        show: show.into(),
        sku: sku.into(),
        qty,
        viewer: viewer.into(),
        request_id: request_id.into(),
        rtp_ts: Some(90_000),
        highlight_id: Some("h1".into()),
        replay_at_ms: None,
    }
}

fn spec(sku: &str, stock: i64) -> ProductSpec {
    ProductSpec {
        sku: sku.into(),
        title: format!("Product {sku}"),
        price: 1999,
        currency: "USD".into(),
        image_url: None,
        stock: Some(stock),
    }
}

/// Create show `id` with the given products and take it live.
async fn live_show(store: &Store, id: &str, products: &[(&str, i64)]) {
    store
        .create_show(NewShow {
            id: Some(id.into()),
            title: format!("Show {id}"),
            ..NewShow::default()
        })
        .await
        .unwrap();
    for (sku, stock) in products {
        store.upsert_product(id, spec(sku, *stock)).await.unwrap();
    }
    store.set_show_state(id, ShowState::Live).await.unwrap();
}

/// Hold the writer thread until the returned sender is dropped or sent to.
fn block_writer(store: &Store) -> (std::sync::mpsc::Sender<()>, Pending<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let pending = store.submit(move |_, _| {
        let _ = rx.recv();
        Ok(())
    });
    (tx, pending)
}

fn db_stock(store: &Store, show: &str, sku: &str) -> i64 {
    store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT stock FROM products WHERE show_id = ?1 AND sku = ?2",
                [show, sku],
                |r| r.get(0),
            )?)
        })
        .unwrap()
}

fn outbox_events(store: &Store) -> Vec<(i64, String)> {
    store
        .read_blocking(|c| {
            let mut s = c.prepare("SELECT id, event FROM outbox ORDER BY id")?;
            let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .unwrap()
}

async fn all_orders(store: &Store, show: &str) -> Vec<Order> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (page, next) = store.orders_after(show, cursor, 37).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
        cursor = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_1000_orders_sells_exactly_the_stock() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("sku", 100)]).await;
    let mut changes = store.subscribe_stock();

    let mut tasks = JoinSet::new();
    for i in 0..1000 {
        let store = store.clone();
        tasks.spawn(async move {
            let viewer = format!("viewer{}", i % 200);
            store
                .place_order(req("s1", "sku", 1, &viewer, &format!("r{i}")))
                .await
        });
    }
    let mut by_status: HashMap<OrderStatus, usize> = HashMap::new();
    let mut ids = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap().unwrap();
        *by_status.entry(r.status).or_default() += 1;
        if let Some(id) = r.order_id {
            assert!(ids.insert(id), "order id issued twice");
        }
    }
    let stats = store.stats();
    eprintln!("storm: {stats:?}");
    assert!(
        stats.batches < stats.items,
        "concurrent orders should share transactions: {stats:?}"
    );
    assert_eq!(stats.failed_batches, 0);
    assert_eq!(by_status.get(&OrderStatus::Confirmed), Some(&100));
    assert_eq!(by_status.get(&OrderStatus::SoldOut), Some(&900));
    assert_eq!(store.stock("s1", "sku"), Some(0));
    assert_eq!(db_stock(&store, "s1", "sku"), 0);

    let orders = all_orders(&store, "s1").await;
    assert_eq!(orders.len(), 100);
    assert!(orders.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        orders
            .iter()
            .map(|o| o.order_id.clone())
            .collect::<HashSet<_>>(),
        ids
    );
    let events = outbox_events(&store);
    assert_eq!(
        events.iter().filter(|e| e.1 == "order.created").count(),
        100
    );
    assert_eq!(events.iter().filter(|e| e.1 == "show.live").count(), 1);

    // The change feed ends on the committed value.
    let mut last = None;
    while let Ok(c) = changes.try_recv() {
        last = Some(c.stock);
    }
    assert_eq!(last, Some(0));
}

#[tokio::test]
async fn repeats_get_the_first_answer() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 3)]).await;

    // Sequential repeat: same order id, stock taken once.
    let first = store
        .place_order(req("s1", "a", 2, "v1", "r1"))
        .await
        .unwrap();
    assert_eq!(first.status, OrderStatus::Confirmed);
    let again = store
        .place_order(req("s1", "a", 2, "v1", "r1"))
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(store.stock("s1", "a"), Some(1));

    // The same key from another viewer is another order.
    let other = store
        .place_order(req("s1", "a", 1, "v2", "r1"))
        .await
        .unwrap();
    assert_eq!(other.status, OrderStatus::Confirmed);
    assert_ne!(other.order_id, first.order_id);
    assert_eq!(store.stock("s1", "a"), Some(0));

    // A sold-out answer sticks even after a restock; a fresh key buys.
    let sold_out = store
        .place_order(req("s1", "a", 1, "v3", "r9"))
        .await
        .unwrap();
    assert_eq!(sold_out.status, OrderStatus::SoldOut);
    store.set_stock("s1", "a", 5).await.unwrap();
    let repeat = store
        .place_order(req("s1", "a", 1, "v3", "r9"))
        .await
        .unwrap();
    assert_eq!(repeat, sold_out);
    let fresh = store
        .place_order(req("s1", "a", 1, "v3", "r10"))
        .await
        .unwrap();
    assert_eq!(fresh.status, OrderStatus::Confirmed);
    assert_eq!(store.stock("s1", "a"), Some(4));
}

#[tokio::test]
async fn repeats_within_one_batch_get_the_first_answer() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 10)]).await;

    let (release, blocker) = block_writer(&store);
    // All of these queue up behind the blocker and are applied in one transaction.
    let a1 = store.place_order(req("s1", "a", 3, "v1", "same"));
    let a2 = store.place_order(req("s1", "a", 3, "v1", "same"));
    let b = store.place_order(req("s1", "a", 1, "v2", "other"));
    let a3 = store.place_order(req("s1", "a", 3, "v1", "same"));
    release.send(()).unwrap();
    blocker.await.unwrap();
    let (a1, a2, b, a3) = (
        a1.await.unwrap(),
        a2.await.unwrap(),
        b.await.unwrap(),
        a3.await.unwrap(),
    );
    assert_eq!(a1.status, OrderStatus::Confirmed);
    assert_eq!(a2, a1);
    assert_eq!(a3, a1);
    assert_eq!(b.status, OrderStatus::Confirmed);
    assert_eq!(store.stock("s1", "a"), Some(6));
    assert_eq!(all_orders(&store, "s1").await.len(), 2);
}

#[tokio::test]
async fn a_failing_item_does_not_sink_its_batch() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 10)]).await;

    let (release, blocker) = block_writer(&store);
    let o1 = store.place_order(req("s1", "a", 1, "v1", "r1"));
    // Writes stock, then fails: must be rolled back alone.
    let bad = store.submit(|conn, _| -> Result<()> {
        conn.execute("UPDATE products SET stock = 0", [])?;
        Err(Error::Conflict("nope".into()))
    });
    let dup = store.create_show(NewShow {
        id: Some("s1".into()),
        title: "again".into(),
        ..NewShow::default()
    });
    let o2 = store.place_order(req("s1", "a", 1, "v1", "r2"));
    release.send(()).unwrap();
    blocker.await.unwrap();
    assert_eq!(o1.await.unwrap().status, OrderStatus::Confirmed);
    assert!(matches!(bad.await, Err(Error::Conflict(_))));
    assert!(matches!(dup.await, Err(Error::Conflict(_))));
    assert_eq!(o2.await.unwrap().status, OrderStatus::Confirmed);
    assert_eq!(store.stock("s1", "a"), Some(8));
    assert_eq!(db_stock(&store, "s1", "a"), 8);
}

#[tokio::test]
async fn invalid_orders_are_rejected_with_a_reason() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 10)]).await;
    store
        .create_show(NewShow {
            id: Some("later".into()),
            title: "Later".into(),
            ..NewShow::default()
        })
        .await
        .unwrap();
    store.upsert_product("later", spec("a", 5)).await.unwrap();

    let cases = [
        (req("s1", "a", 0, "v", "q0"), "qty"),
        (req("s1", "a", 11, "v", "q11"), "qty"),
        (req("s1", "nope", 1, "v", "sku"), "unknown sku"),
        (req("ghost", "a", 1, "v", "show"), "unknown show"),
        (req("later", "a", 1, "v", "sched"), "scheduled"),
        (req("s1", "a", 1, "v", ""), "request_id"),
    ];
    for (r, why) in cases {
        let out = store.place_order(r.clone()).await.unwrap();
        assert_eq!(out.status, OrderStatus::Rejected, "{r:?}");
        let reason = out.reason.unwrap();
        assert!(reason.contains(why), "{reason} should mention {why}");
        assert!(out.order_id.is_none());
    }
    // Ten is allowed (the default max), partial availability is "sold out" with a count.
    store.set_stock("s1", "a", 4).await.unwrap();
    let out = store
        .place_order(req("s1", "a", 10, "v", "big"))
        .await
        .unwrap();
    assert_eq!(out.status, OrderStatus::SoldOut);
    assert_eq!(out.reason.as_deref(), Some("only 4 left"));

    // A rejection for a scheduled show sticks for that key once the show is live.
    store
        .set_show_state("later", ShowState::Live)
        .await
        .unwrap();
    let again = store
        .place_order(req("later", "a", 1, "v", "sched"))
        .await
        .unwrap();
    assert_eq!(again.status, OrderStatus::Rejected);
    let fresh = store
        .place_order(req("later", "a", 1, "v", "sched2"))
        .await
        .unwrap();
    assert_eq!(fresh.status, OrderStatus::Confirmed);

    // Ended shows sell nothing.
    store.set_show_state("s1", ShowState::Ended).await.unwrap();
    let out = store
        .place_order(req("s1", "a", 1, "v", "late"))
        .await
        .unwrap();
    assert_eq!(out.status, OrderStatus::Rejected);
    assert!(out.reason.unwrap().contains("ended"));
    assert_eq!(store.stock("s1", "a"), Some(4));
}

#[tokio::test]
async fn configured_max_qty_applies() {
    let dir = TempDir::new();
    let store = Store::open_with(Config {
        path: dir.db(),
        max_qty_per_order: 2,
        synchronous: Synchronous::Normal,
        ..Config::default()
    })
    .unwrap();
    live_show(&store, "s1", &[("a", 10)]).await;
    let out = store
        .place_order(req("s1", "a", 3, "v", "r"))
        .await
        .unwrap();
    assert_eq!(out.status, OrderStatus::Rejected);
    let out = store
        .place_order(req("s1", "a", 2, "v", "r2"))
        .await
        .unwrap();
    assert_eq!(out.status, OrderStatus::Confirmed);
}

#[tokio::test]
async fn reopening_rebuilds_stock_and_keeps_orders() {
    let dir = TempDir::new();
    let (first, sold_out, orders_before) = {
        let store = Store::open(dir.db()).unwrap();
        live_show(&store, "s1", &[("a", 5), ("b", 1)]).await;
        let first = store
            .place_order(req("s1", "a", 2, "v1", "r1"))
            .await
            .unwrap();
        store
            .place_order(req("s1", "b", 1, "v2", "r2"))
            .await
            .unwrap();
        let sold_out = store
            .place_order(req("s1", "b", 1, "v3", "r3"))
            .await
            .unwrap();
        assert_eq!(sold_out.status, OrderStatus::SoldOut);
        let orders = all_orders(&store, "s1").await;
        store.close();
        // Closed means closed.
        assert!(matches!(
            store.place_order(req("s1", "a", 1, "v9", "r9")).await,
            Err(Error::Closed)
        ));
        (first, sold_out, orders)
    };

    let store = Store::open(dir.db()).unwrap();
    assert_eq!(store.stock("s1", "a"), Some(3));
    assert_eq!(store.stock("s1", "b"), Some(0));
    assert_eq!(
        store.stock_snapshot("s1"),
        vec![("a".to_string(), 3), ("b".to_string(), 0)]
    );
    assert_eq!(all_orders(&store, "s1").await, orders_before);
    assert_eq!(
        store
            .place_order(req("s1", "a", 2, "v1", "r1"))
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store
            .place_order(req("s1", "b", 1, "v3", "r3"))
            .await
            .unwrap(),
        sold_out
    );
    let order = store
        .order("s1", first.order_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (order.qty, order.unit_price, order.rtp_ts),
        (2, 1999, Some(90_000))
    );
    assert_eq!(
        store.show("s1").await.unwrap().unwrap().state,
        ShowState::Live
    );
    assert_eq!(store.outbox_pending().await.unwrap(), 3);
}

#[tokio::test]
async fn orders_after_pages_confirmed_orders_only() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 25)]).await;
    live_show(&store, "s2", &[("a", 25)]).await;
    let mut pending = Vec::new();
    for i in 0..30 {
        pending.push(store.place_order(req("s1", "a", 1, "v", &format!("r{i}"))));
        pending.push(store.place_order(req("s2", "a", 1, "v", &format!("r{i}"))));
    }
    for p in pending {
        p.await.unwrap();
    }
    let (p1, c1) = store.orders_after("s1", 0, 10).await.unwrap();
    let (p2, c2) = store.orders_after("s1", c1, 10).await.unwrap();
    let (p3, c3) = store.orders_after("s1", c2, 10).await.unwrap();
    let (p4, c4) = store.orders_after("s1", c3, 10).await.unwrap();
    assert_eq!((p1.len(), p2.len(), p3.len(), p4.len()), (10, 10, 5, 0));
    assert_eq!(c4, c3);
    assert!(p1
        .iter()
        .chain(&p2)
        .chain(&p3)
        .all(|o| o.show_id == "s1" && o.status == OrderStatus::Confirmed));
    assert_eq!(p1[0].request_id, "r0");
    assert!(store.order("s2", &p1[0].order_id).await.unwrap().is_none());
}

#[tokio::test]
async fn show_lifecycle_and_catalogue() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    let generated = store
        .create_show(NewShow {
            title: "Spring drop".into(),
            video_codecs: vec!["h264".into(), "vp8".into()],
            scheduled_at: Some(1_700_000_000_000),
            ..NewShow::default()
        })
        .await
        .unwrap();
    assert_eq!(generated.id.len(), 16);
    assert_eq!(generated.state, ShowState::Scheduled);
    assert_eq!(generated.video_codecs, ["h264", "vp8"]);
    let id = generated.id.clone();

    assert!(matches!(
        store
            .create_show(NewShow {
                id: Some(id.clone()),
                title: "dup".into(),
                ..NewShow::default()
            })
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_show(NewShow {
                id: Some("bad/id".into()),
                title: "x".into(),
                ..NewShow::default()
            })
            .await,
        Err(Error::Invalid(_))
    ));

    let updated = store
        .update_show(
            &id,
            ShowUpdate {
                title: Some("Summer drop".into()),
                ..ShowUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.title, "Summer drop");
    assert_eq!(updated.video_codecs, ["h264", "vp8"]);

    // Catalogue.
    store.upsert_product(&id, spec("a", 3)).await.unwrap();
    store.upsert_product(&id, spec("b", 0)).await.unwrap();
    let keep = store
        .upsert_product(
            &id,
            ProductSpec {
                price: 2500,
                stock: None,
                ..spec("a", 0)
            },
        )
        .await
        .unwrap();
    assert_eq!((keep.price, keep.stock), (2500, 3));
    assert!(matches!(
        store
            .upsert_product(
                &id,
                ProductSpec {
                    currency: "usd".into(),
                    ..spec("c", 1)
                }
            )
            .await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        store.upsert_product("ghost", spec("a", 1)).await,
        Err(Error::NotFound("show"))
    ));
    let skus: Vec<String> = store
        .products(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.sku)
        .collect();
    assert_eq!(skus, ["a", "b"]);
    assert_eq!(store.add_stock(&id, "b", 4).await.unwrap().stock, 4);
    assert!(matches!(
        store.add_stock(&id, "b", -5).await,
        Err(Error::Conflict(_))
    ));
    store.delete_product(&id, "b").await.unwrap();
    assert!(store.product(&id, "b").await.unwrap().is_none());
    assert_eq!(store.stock(&id, "b"), None);
    assert!(matches!(
        store.delete_product(&id, "b").await,
        Err(Error::NotFound("product"))
    ));

    // Lifecycle and its events.
    store.record_viewers(&id, 120).await.unwrap();
    store.record_viewers(&id, 80).await.unwrap();
    let live = store.set_show_state(&id, ShowState::Live).await.unwrap();
    assert!(live.started_at.is_some());
    store.set_show_state(&id, ShowState::Live).await.unwrap();
    assert!(matches!(
        store.set_show_state(&id, ShowState::Scheduled).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.delete_show(&id).await,
        Err(Error::Conflict(_))
    ));
    store.place_order(req(&id, "a", 2, "v", "r")).await.unwrap();
    let ended = store.set_show_state(&id, ShowState::Ended).await.unwrap();
    assert_eq!(ended.peak_viewers, 120);
    assert!(ended.ended_at.is_some());
    assert!(matches!(
        store.set_show_state(&id, ShowState::Live).await,
        Err(Error::Conflict(_))
    ));
    let events: Vec<String> = outbox_events(&store).into_iter().map(|e| e.1).collect();
    assert_eq!(events, ["show.live", "order.created", "show.ended"]);
    let ended_body: String = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT body FROM outbox WHERE event = 'show.ended'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let ended_body: serde_json::Value = serde_json::from_str(&ended_body).unwrap();
    assert_eq!(ended_body["orders"], 1);
    assert_eq!(ended_body["units"], 2);
    assert_eq!(ended_body["peak_viewers"], 120);

    assert_eq!(store.shows(None).await.unwrap().len(), 1);
    assert_eq!(store.shows(Some(ShowState::Live)).await.unwrap().len(), 0);
    store.delete_show(&id).await.unwrap();
    assert!(store.show(&id).await.unwrap().is_none());
    assert!(store.stock_snapshot(&id).is_empty());
    assert_eq!(all_orders(&store, &id).await.len(), 0);
    assert!(matches!(
        store.products(&id).await,
        Err(Error::NotFound("show"))
    ));
}

#[test]
fn blocking_callers_and_try_take() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(live_show(&store, "s1", &[("a", 50)]));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        store
                            .place_order_blocking(req(
                                "s1",
                                "a",
                                1,
                                &format!("v{t}"),
                                &format!("{i}"),
                            ))
                            .unwrap()
                            .status
                    })
                    .filter(|s| *s == OrderStatus::Confirmed)
                    .count()
            })
        })
        .collect();
    let confirmed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(confirmed, 50);
    assert_eq!(store.stock("s1", "a"), Some(0));

    // A shard-style caller polls without blocking.
    store.set_stock("s1", "a", 1).wait().unwrap();
    let mut pending = store.place_order(req("s1", "a", 1, "poller", "p1"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        if let Some(a) = pending.try_take() {
            break a.unwrap();
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(answer.status, OrderStatus::Confirmed);
    assert!(pending.try_take().is_none());
}

#[test]
fn full_queue_sheds_load() {
    let dir = TempDir::new();
    let store = Store::open_with(Config {
        path: dir.db(),
        queue: 2,
        ..Config::default()
    })
    .unwrap();
    let (release, blocker) = block_writer(&store);
    // Wait until the writer holds the blocker, so the queue is empty.
    std::thread::sleep(Duration::from_millis(50));
    let a = store.record_viewers("x", 1);
    let b = store.record_viewers("x", 1);
    let c = store.record_viewers("x", 1);
    assert!(matches!(c.wait(), Err(Error::Busy)));
    release.send(()).unwrap();
    blocker.wait().unwrap();
    assert!(matches!(a.wait(), Err(Error::NotFound("show"))));
    assert!(matches!(b.wait(), Err(Error::NotFound("show"))));
}

// ---- crash recovery ------------------------------------------------------------------------

const CRASH_ENV: &str = "HAWKER_COMMERCE_CRASH_DB";
const CRASH_STOCK: i64 = 100_000;

/// Child half of `sigkill_mid_storm_loses_no_acknowledged_order`: a no-op unless the parent
/// set `CRASH_ENV`. Buys from 16 threads and prints one line per acknowledged order.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CRASH_ENV) else {
        return;
    };
    let store = Store::open(&path).unwrap();
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (store, out) = (store.clone(), out.clone());
            std::thread::spawn(move || {
                // Bounded: the parent kills us long before this ends.
                for i in 0..20_000 {
                    let r = req("crash", "a", 1 + (i % 3), &format!("v{t}"), &format!("{i}"));
                    let Ok(answer) = store.place_order_blocking(r) else {
                        return;
                    };
                    let mut out = out.lock().unwrap();
                    writeln!(
                        out,
                        "ACK v{t} {i} {} {}",
                        answer.status.as_str(),
                        answer.order_id.unwrap_or_default()
                    )
                    .unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_mid_storm_loses_no_acknowledged_order() {
    if std::env::var(CRASH_ENV).is_ok() {
        return;
    }
    let dir = TempDir::new();
    {
        let store = Store::open(dir.db()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(live_show(&store, "crash", &[("a", CRASH_STOCK)]));
        store.close();
    }

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "commerce::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, dir.db())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<(String, String, String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let parse = |line: String, acked: &mut Vec<_>| {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() == 5 && f[0] == "ACK" {
            acked.push((
                f[1].to_owned(),
                f[2].to_owned(),
                f[3].to_owned(),
                f[4].to_owned(),
            ));
        }
    };
    for line in lines.by_ref() {
        parse(line.unwrap(), &mut acked);
        if acked.len() >= 2_000 || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines already in the pipe were acknowledged before the kill.
    for line in lines {
        match line {
            Ok(line) => parse(line, &mut acked),
            Err(_) => break,
        }
    }
    assert!(
        acked.len() >= 2_000,
        "child acknowledged only {}",
        acked.len()
    );

    let store = Store::open(dir.db()).unwrap();
    let rows: HashMap<(String, String), (String, Option<String>, i64)> = store
        .read_blocking(|c| {
            let mut s =
                c.prepare("SELECT viewer, request_id, status, order_id, qty FROM orders")?;
            let rows = s.query_map([], |r| {
                Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?)))
            })?;
            Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
        })
        .unwrap();
    for (viewer, request_id, status, order_id) in &acked {
        let (s, id, _) = rows
            .get(&(viewer.clone(), request_id.clone()))
            .unwrap_or_else(|| panic!("acknowledged order {viewer}/{request_id} lost"));
        assert_eq!(s, status);
        assert_eq!(id.clone().unwrap_or_default(), *order_id);
    }
    eprintln!(
        "sigkill: {} acknowledged, {} recorded after restart",
        acked.len(),
        rows.len()
    );
    assert!(rows.len() >= acked.len());
    // Stock is exactly the initial stock minus what the surviving log says was sold.
    let sold: i64 = rows
        .values()
        .filter(|(s, _, _)| s == "confirmed")
        .map(|(_, _, q)| q)
        .sum();
    assert_eq!(store.stock("crash", "a"), Some(CRASH_STOCK - sold));
    assert_eq!(db_stock(&store, "crash", "a"), CRASH_STOCK - sold);
    // And the store is writable again.
    let after = store
        .place_order_blocking(req("crash", "a", 1, "after", "1"))
        .unwrap();
    assert_eq!(after.status, OrderStatus::Confirmed);
}

// ---- webhooks ------------------------------------------------------------------------------

/// A local webhook receiver: answers 500 while `down` or while `fail_budget` lasts.
#[derive(Default)]
struct Receiver {
    down: AtomicBool,
    fail_budget: AtomicUsize,
    hits: AtomicUsize,
    failures: AtomicUsize,
    /// (delivery id header, event header, body, signature header) of each 2xx answer.
    ok: Mutex<Vec<(i64, String, String, String)>>,
}

async fn serve_receiver(recv: Arc<Receiver>) -> String {
    use axum::{extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
    async fn hook(
        State(recv): State<Arc<Receiver>>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        recv.hits.fetch_add(1, Ordering::SeqCst);
        let budget_left = recv
            .fail_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_ok();
        if recv.down.load(Ordering::SeqCst) || budget_left {
            recv.failures.fetch_add(1, Ordering::SeqCst);
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        recv.ok.lock().push((
            h("x-hawker-delivery").parse().unwrap_or(-1),
            h("x-hawker-event"),
            body,
            h("x-hawker-signature"),
        ));
        StatusCode::NO_CONTENT
    }
    let app = Router::new().route("/hook", post(hook)).with_state(recv);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn hook_config(endpoints: Vec<Endpoint>) -> webhooks::Config {
    webhooks::Config {
        endpoints,
        backoff_base_ms: 20,
        backoff_max_ms: 200,
        timeout_ms: 2_000,
        poll_ms: 100,
        ..webhooks::Config::default()
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_delivered(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.outbox_pending().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "webhooks not delivered in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_survive_failures_and_a_restart() {
    let dir = TempDir::new();
    let recv = Arc::new(Receiver::default());
    recv.down.store(true, Ordering::SeqCst);
    let url = serve_receiver(recv.clone()).await;
    let secret = "s3cret";
    let config = hook_config(vec![Endpoint {
        url,
        secret: secret.into(),
    }]);

    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 10)]).await;
    for i in 0..5 {
        store
            .place_order(req("s1", "a", 1, "v", &format!("r{i}")))
            .await
            .unwrap();
    }
    store.set_show_state("s1", ShowState::Ended).await.unwrap();
    let expected: HashMap<i64, String> = outbox_events(&store).into_iter().collect();
    assert_eq!(expected.len(), 7);

    // Phase 1: the receiver is down; the worker tries, fails, and is killed.
    let worker = tokio::spawn(Worker::new(store.clone(), config.clone()).unwrap().run());
    let min_attempts = || -> i64 {
        store
            .read_blocking(|c| {
                Ok(c.query_row("SELECT MIN(attempts) FROM outbox", [], |r| r.get(0))?)
            })
            .unwrap()
    };
    wait_for("a persisted failed attempt of every event", || {
        min_attempts() >= 1
    })
    .await;
    worker.abort();
    let _ = worker.await;
    assert_eq!(store.outbox_pending().await.unwrap(), 7);
    store.close();
    drop(store);

    // Phase 2: restart; the receiver fails K more requests, then recovers.
    recv.fail_budget.store(5, Ordering::SeqCst);
    recv.down.store(false, Ordering::SeqCst);
    let store = Store::open(dir.db()).unwrap();
    let worker = tokio::spawn(Worker::new(store.clone(), config).unwrap().run());
    wait_delivered(&store).await;

    // Events committed while the worker idles are picked up too.
    store
        .create_show(NewShow {
            id: Some("s2".into()),
            title: "Next".into(),
            ..NewShow::default()
        })
        .await
        .unwrap();
    store.set_show_state("s2", ShowState::Live).await.unwrap();
    wait_delivered(&store).await;
    worker.abort();

    let expected: HashMap<i64, String> = outbox_events(&store).into_iter().collect();
    assert_eq!(expected.len(), 8);
    let ok = recv.ok.lock().clone();
    let mut seen: HashMap<i64, String> = HashMap::new();
    for (delivery, event, body, sig) in &ok {
        assert!(
            webhooks::verify(secret.as_bytes(), body.as_bytes(), sig),
            "bad signature"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["id"], *delivery);
        assert_eq!(v["type"], event.as_str());
        if event == "order.created" {
            assert_eq!(v["data"]["show_id"], "s1");
            assert_eq!(v["data"]["rtp_ts"], 90_000);
        }
        seen.insert(*delivery, event.clone());
    }
    assert_eq!(
        seen, expected,
        "every event delivered, deduped by delivery id"
    );
    assert!(recv.failures.load(Ordering::SeqCst) >= 7 + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_endpoint_is_not_resent_while_another_fails() {
    let dir = TempDir::new();
    let healthy = Arc::new(Receiver::default());
    let flaky = Arc::new(Receiver::default());
    flaky.fail_budget.store(6, Ordering::SeqCst);
    let config = hook_config(vec![
        Endpoint {
            url: serve_receiver(healthy.clone()).await,
            secret: "a".into(),
        },
        Endpoint {
            url: serve_receiver(flaky.clone()).await,
            secret: "b".into(),
        },
    ]);
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 10)]).await;
    store
        .place_order(req("s1", "a", 1, "v", "r"))
        .await
        .unwrap();
    let worker = tokio::spawn(Worker::new(store.clone(), config).unwrap().run());
    wait_delivered(&store).await;
    worker.abort();

    assert_eq!(healthy.ok.lock().len(), 2, "each event exactly once");
    assert_eq!(healthy.hits.load(Ordering::SeqCst), 2);
    assert_eq!(flaky.ok.lock().len(), 2);
    assert_eq!(flaky.failures.load(Ordering::SeqCst), 6);
    for (_, _, body, sig) in flaky.ok.lock().iter() {
        assert!(webhooks::verify(b"b", body.as_bytes(), sig));
        assert!(!webhooks::verify(b"a", body.as_bytes(), sig));
    }
}

#[tokio::test]
async fn no_endpoints_means_nothing_to_deliver() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[]).await;
    assert_eq!(store.outbox_pending().await.unwrap(), 1);
    let worker = Worker::new(store.clone(), webhooks::Config::default()).unwrap();
    assert_eq!(worker.round().await.unwrap(), 1);
    assert_eq!(store.outbox_pending().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_failing_past_the_dead_letter_age_is_given_up() {
    let dir = TempDir::new();
    let down = Arc::new(Receiver::default());
    down.down.store(true, Ordering::SeqCst);
    let healthy = Arc::new(Receiver::default());
    let config = webhooks::Config {
        dead_after_ms: 400,
        ..hook_config(vec![
            Endpoint {
                url: serve_receiver(down.clone()).await,
                secret: "a".into(),
            },
            Endpoint {
                url: serve_receiver(healthy.clone()).await,
                secret: "b".into(),
            },
        ])
    };
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 10)]).await;
    let events = outbox_events(&store).len() as u64;
    assert!(events >= 1);
    let worker = tokio::spawn(Worker::new(store.clone(), config).unwrap().run());
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.outbox_dead().await.unwrap() < events {
        assert!(Instant::now() < deadline, "events never given up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.outbox_pending().await.unwrap(),
        0,
        "dead is not pending"
    );
    // No more attempts once dead.
    let hits = down.hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        down.hits.load(Ordering::SeqCst),
        hits,
        "retried after death"
    );
    // The healthy endpoint got each event once; the last error is kept for operators.
    assert_eq!(healthy.ok.lock().len() as u64, events);
    let last_error: Option<String> = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT last_error FROM outbox WHERE dead_at IS NOT NULL LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert!(last_error.is_some_and(|e| e.contains("500")), "last_error");
    worker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_gains_the_dead_letter_column() {
    let dir = TempDir::new();
    {
        let store = Store::open(dir.db()).unwrap();
        live_show(&store, "s1", &[("a", 10)]).await;
        store.close();
    }
    let pending = {
        // What a version-1 database looks like: no dead_at.
        let conn = rusqlite::Connection::open(dir.db()).unwrap();
        conn.execute_batch("ALTER TABLE outbox DROP COLUMN dead_at; PRAGMA user_version = 1;")
            .unwrap();
        conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    };
    assert!(pending > 0);
    let store = Store::open(dir.db()).unwrap();
    assert_eq!(store.outbox_dead().await.unwrap(), 0);
    assert_eq!(store.outbox_pending().await.unwrap(), pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_show_sells_from_its_replay_only() {
    let dir = TempDir::new();
    let store = Store::open(dir.db()).unwrap();
    live_show(&store, "s1", &[("a", 5)]).await;
    store.set_show_state("s1", ShowState::Ended).await.unwrap();
    store
        .upsert_product(
            "s1",
            ProductSpec {
                price: 2500,
                ..spec("a", 4)
            },
        )
        .await
        .unwrap();

    let live = store
        .place_order(req("s1", "a", 1, "v", "r1"))
        .await
        .unwrap();
    assert_eq!(live.status, OrderStatus::Rejected, "{live:?}");
    let replay = store
        .place_order(OrderRequest {
            replay_at_ms: Some(12_345),
            ..req("s1", "a", 1, "v", "r2")
        })
        .await
        .unwrap();
    assert_eq!(replay.status, OrderStatus::Confirmed, "{replay:?}");
    assert_eq!(store.stock("s1", "a"), Some(3), "the current stock");

    let orders = all_orders(&store, "s1").await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].replay_at_ms, Some(12_345));
    assert_eq!(orders[0].unit_price, 2500, "the current price");
    let json = serde_json::to_value(&orders[0]).unwrap();
    assert_eq!(json["replay_at_ms"], 12_345);
    let body: String = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT body FROM outbox WHERE event = 'order.created'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["replay_at_ms"], 12_345);
    assert_eq!(body["rtp_ts"], 90_000);
}

#[test]
fn a_version_2_database_gains_the_replay_column() {
    let dir = TempDir::new();
    {
        let c = rusqlite::Connection::open(dir.db()).unwrap();
        let v2 = super::store::SCHEMA.replace("    replay_at_ms  INTEGER,\n", "");
        c.execute_batch(&format!("{v2} PRAGMA user_version = 2;"))
            .unwrap();
    }
    let store = Store::open(dir.db()).unwrap();
    let has: i64 = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('orders') WHERE name = 'replay_at_ms'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(has, 1);
}
