//! Crash safety of orders with the real binary: `hawker serve` is SIGKILLed in the middle of a
//! buy storm and restarted on the same data directory.
//!
//! * The show and its product (stock 100 000) are written into a fresh data directory with
//!   `hawker::commerce::Store` before the first start; tokens come from `hawker token`.
//! * A webrtc-rs seller publishes (the show goes live) and 50 webrtc-rs viewers (stable ids via
//!   `?viewer=`) buy qty 1–3 every 5 ms each over the `events` channel (~10k buys/s).
//! * Once 1000 orders were confirmed to viewers, the server gets SIGKILL (`Child::kill`), with
//!   buys still in flight.
//!   The child must have died of signal 9 (not of a crash of its own before the kill).
//! * Every order a viewer saw `confirmed` must be durable: after the restart it is listed by
//!   `GET /api/v1/shows/{show}/orders` (which must answer 200) and, after the restarted server
//!   is killed too, it is in the SQLite store (opened with `Store::open`), with the same
//!   viewer, request id and qty; no (viewer, request id) has more than one stored order, for
//!   any viewer; the stock equals the initial stock minus the confirmed quantity in the store;
//!   a viewer connecting after the restart gets that stock in its snapshot; and retrying a
//!   confirmed request id after the restart returns the same order id.

#[path = "support/live.rs"]
mod live;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Publisher, PublisherOpts, Viewer, ViewerOpts};

const SHOW: &str = "crash";
const SKU: &str = "drop-1";
const INITIAL: i64 = 100_000;
const VIEWERS: usize = 50;
const BUYS_EACH: usize = 400;
const KILL_AFTER_CONFIRMED: usize = 1000;
const WAIT: Duration = Duration::from_secs(15);
const BIN: &str = env!("CARGO_BIN_EXE_hawker");

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The signed anonymous id the server would issue for `id` (the config's secret below), so a
/// viewer keeps its buyer id across the restart.
fn anon_id(id: &str) -> String {
    hawker::auth::Keys::new(b"crash-test-secret-0123456789abcdef-0123").sign_anon_viewer(id)
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("hawker.toml");
    std::fs::write(
        &path,
        format!(
            r#"data_dir = "{}"
[http]
listen = "127.0.0.1:{port}"
[metrics]
listen = "127.0.0.1:0"
[media]
shards = 2
[auth]
secret = "crash-test-secret-0123456789abcdef-0123"
[shows]
seed_demo = false
[commerce]
buys_per_minute = 100000
buys_per_minute_per_ip = 0
"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn token(config: &Path, role: &str, sub: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--config"])
        .arg(config)
        .args(["--show", SHOW, "--role", role, "--sub", sub, "--ttl", "10m"])
        .output()
        .expect("run hawker token");
    assert!(
        out.status.success(),
        "hawker token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts `hawker serve` on a fresh port and waits for `/healthz`.
async fn serve(dir: &Path, run: usize) -> (Proc, PathBuf) {
    let port = live::free_tcp_port();
    let config = write_config(dir, port);
    let log = std::fs::File::create(dir.join(format!("server-{run}.log"))).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "hawker=info,warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn hawker serve");
    let proc = Proc {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", proc.base)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "hawker serve did not come up (run {run})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (proc, config)
}

/// Every confirmed order via the REST API (`GET /api/v1/shows/{show}/orders`, paged).
async fn api_orders(base: &str, admin: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut cursor = 0i64;
    loop {
        let r = client
            .get(format!(
                "{base}/api/v1/shows/{SHOW}/orders?after={cursor}&limit=1000"
            ))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "GET /api/v1/shows/{SHOW}/orders: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let page = v["orders"].as_array().expect("orders array").clone();
        if page.is_empty() {
            return out;
        }
        cursor = v["next_cursor"].as_i64().expect("next_cursor");
        out.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_orders_survive_sigkill() {
    support::init_logging();
    let t0 = Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "hawker-crash-{}-{}",
        std::process::id(),
        live::now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();

    // The catalogue, written before the first start.
    {
        let store = hawker::commerce::Store::open(dir.join("hawker.db")).unwrap();
        live::seed_show(&store, SHOW, &[(SKU, "Limited drop", 2_500, INITIAL)]).await;
        store.close();
    }

    let (proc1, config) = serve(&dir, 1).await;
    let seller = Publisher::connect(
        &format!("{}/whip/{SHOW}", proc1.base),
        &token(&config, "publisher", "seller"),
        PublisherOpts::default(),
    )
    .await
    .expect("publisher connects");
    seller.start_streaming(30);
    let whep = format!("{}/whep/{SHOW}", proc1.base);
    let viewers = live::connect_viewers(
        VIEWERS,
        8,
        |i| format!("{whep}?viewer={}", anon_id(&format!("c{i}"))),
        ViewerOpts {
            audio: false,
            ..ViewerOpts::default().with_data_channel()
        },
    )
    .await
    .expect("viewers connect");
    for v in &viewers {
        let (_, snap) = live::wait_json(
            "snapshot",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "snapshot",
        )
        .await
        .unwrap();
        assert_eq!(
            snap["show"]["state"], "live",
            "the publisher made the show live: {snap}"
        );
    }
    let viewers = Arc::new(viewers);

    // The storm: each viewer buys qty 1..=3 every 5 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let storm_start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..VIEWERS {
        let (viewers, stop) = (viewers.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            for k in 0..BUYS_EACH {
                tick.tick().await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let m = json!({"type": "buy", "request_id": format!("c{i}-r{k}"), "sku": SKU,
                               "qty": 1 + k % 3});
                if viewers[i].send_text(&m.to_string()).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        }));
    }
    let seen_confirmed = |viewers: &[Viewer]| -> usize {
        viewers
            .iter()
            .map(|v| {
                live::of_type(&v.messages(), "order")
                    .iter()
                    .filter(|a| a["status"] == "confirmed")
                    .count()
            })
            .sum()
    };
    let deadline = Instant::now() + WAIT;
    while seen_confirmed(&viewers) < KILL_AFTER_CONFIRMED {
        assert!(Instant::now() < deadline, "storm too slow");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // SIGKILL, mid-storm.
    let mut proc1 = proc1;
    proc1.child.kill().unwrap();
    let killed_at = storm_start.elapsed();
    let status = proc1.child.wait().unwrap();
    // The server died of the SIGKILL itself, not of something the storm did to it first.
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "hawker serve should have died of signal 9, got {status}"
    );
    stop.store(true, Ordering::SeqCst);
    let mut sent_each = Vec::new();
    for t in tasks {
        sent_each.push(t.await.unwrap());
    }
    let sent_total: usize = sent_each.iter().sum();
    drop(proc1);
    // Answers that were on the wire have arrived by now.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // What the viewers were told.
    let mut told: HashMap<(String, String), Value> = HashMap::new();
    for (i, v) in viewers.iter().enumerate() {
        for a in live::of_type(&v.messages(), "order") {
            told.insert(
                (
                    format!("anon-c{i}"),
                    a["request_id"].as_str().unwrap().into(),
                ),
                a,
            );
        }
    }
    let confirmed: BTreeMap<String, (String, String, u64)> = told
        .iter()
        .filter(|(_, a)| a["status"] == "confirmed")
        .map(|((viewer, rid), a)| {
            (
                a["order_id"].as_str().unwrap().to_string(),
                (viewer.clone(), rid.clone(), a["qty"].as_u64().unwrap()),
            )
        })
        .collect();
    let confirmed_qty: u64 = confirmed.values().map(|c| c.2).sum();
    let statuses: BTreeMap<String, usize> = told.values().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a["status"].as_str().unwrap().to_string())
            .or_default() += 1;
        m
    });
    eprintln!(
        "killed ({status}) {killed_at:?} into the storm: {sent_total} buys sent, {} answered \
         {statuses:?}, {} unanswered; {} confirmed ({confirmed_qty} units) seen by viewers",
        told.len(),
        sent_total - told.len(),
        confirmed.len()
    );
    assert!(confirmed.len() >= KILL_AFTER_CONFIRMED);
    assert!(
        sent_total > told.len(),
        "the kill happened with buys in flight"
    );
    assert!(
        (confirmed_qty as i64) < INITIAL,
        "killed before selling out"
    );
    for v in viewers.iter() {
        v.close_peer_quietly().await;
    }
    seller.close_without_delete().await;

    // Restart on the same data directory.
    let restart_ms = live::now_ms();
    let (proc2, config) = serve(&dir, 2).await;
    let admin = token(&config, "admin", "admin");
    let via_api = api_orders(&proc2.base, &admin).await;
    let listed: HashMap<&str, &Value> = via_api
        .iter()
        .map(|o| (o["order_id"].as_str().unwrap(), o))
        .collect();
    assert_eq!(listed.len(), via_api.len(), "the API lists an order twice");
    for (id, (viewer, rid, qty)) in &confirmed {
        let o = listed
            .get(id.as_str())
            .unwrap_or_else(|| panic!("confirmed order {id} ({viewer} {rid}) lost"));
        assert_eq!(o["viewer"], viewer.as_str());
        assert_eq!(o["request_id"], rid.as_str());
        assert_eq!(o["qty"].as_u64(), Some(*qty));
    }
    eprintln!(
        "REST after restart: {} orders listed, all {} confirmed ones among them",
        via_api.len(),
        confirmed.len()
    );
    // A new viewer's snapshot shows the durable stock; confirmed retries get the same order id.
    let v0 = Viewer::connect(
        &format!("{}/whep/{SHOW}?viewer={}", proc2.base, anon_id("c0")),
        None,
        ViewerOpts {
            audio: false,
            ..ViewerOpts::default().with_data_channel()
        },
    )
    .await
    .expect("viewer reconnects after the restart");
    let (_, snap) = live::wait_json(
        "snapshot",
        WAIT,
        0,
        || v0.messages(),
        |m| m["type"] == "snapshot",
    )
    .await
    .unwrap();
    let snap_stock = snap["products"][0]["stock"].as_i64().unwrap();
    // Viewer c0 retries every buy it sent: those it saw confirmed get the same order id; those
    // unanswered at the kill get the durable answer if they had committed (checked against the
    // store below), else are placed now.
    let mut c0_retried: BTreeMap<String, String> = BTreeMap::new();
    let mut c0_seen = 0;
    for k in 0..sent_each[0] {
        let rid = format!("c0-r{k}");
        let m = json!({"type": "buy", "request_id": rid, "sku": SKU, "qty": 1 + k % 3});
        // Under the shard's per-peer message rate (20/s after a burst of 40), which would
        // answer `rate_limited` instead of the order.
        tokio::time::sleep(Duration::from_millis(55)).await;
        v0.send_text(&m.to_string()).await.unwrap();
        let (_, a) = live::wait_json(
            &rid,
            WAIT,
            0,
            || v0.messages(),
            |m| m["type"] == "order" && m["request_id"] == rid.as_str(),
        )
        .await
        .unwrap();
        assert_eq!(a["status"], "confirmed", "{a}");
        let id = a["order_id"].as_str().unwrap().to_string();
        if let Some(first) = told.get(&("anon-c0".to_string(), rid.clone())) {
            assert_eq!(
                first["order_id"],
                id.as_str(),
                "retry of {rid} after restart: same order"
            );
            c0_seen += 1;
        }
        c0_retried.insert(rid, id);
    }
    assert!(c0_seen > 0, "viewer c0 had answered buys");
    eprintln!(
        "viewer c0 retried its {} buys after the restart ({c0_seen} had been answered)",
        c0_retried.len()
    );
    v0.close_peer_quietly().await;
    let mut proc2 = proc2;
    proc2.child.kill().unwrap();
    proc2.child.wait().unwrap();
    drop(proc2);

    // The store file itself.
    let store = hawker::commerce::Store::open(dir.join("hawker.db")).unwrap();
    let mut stored = Vec::new();
    let mut cursor = 0;
    loop {
        let (page, next) = store.orders_after(SHOW, cursor, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        stored.extend(page);
        cursor = next;
    }
    let by_id: HashMap<&str, &hawker::commerce::Order> =
        stored.iter().map(|o| (o.order_id.as_str(), o)).collect();
    let mut lost = Vec::new();
    for (id, (viewer, rid, qty)) in &confirmed {
        match by_id.get(id.as_str()) {
            Some(o) => {
                assert_eq!(
                    (&o.viewer, &o.request_id, o.qty as u64),
                    (viewer, rid, *qty)
                );
            }
            None => lost.push(format!("{id} ({viewer} {rid} qty {qty})")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} confirmed orders lost: {lost:?}",
        lost.len()
    );
    // Idempotency, for every viewer: no (viewer, request id) has two stored orders.
    let mut per_request: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for o in &stored {
        per_request
            .entry((o.viewer.as_str(), o.request_id.as_str()))
            .or_default()
            .push(o.order_id.as_str());
    }
    let twice: Vec<String> = per_request
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((viewer, rid), ids)| format!("{viewer} {rid}: {ids:?}"))
        .collect();
    assert!(
        twice.is_empty(),
        "{} (viewer, request id) pairs stored more than once: {twice:?}",
        twice.len()
    );
    // Each of c0's request ids has exactly one order: the one its retry was answered with.
    for (rid, id) in &c0_retried {
        let mine: Vec<&hawker::commerce::Order> = stored
            .iter()
            .filter(|o| o.viewer == "anon-c0" && &o.request_id == rid)
            .collect();
        assert_eq!(mine.len(), 1, "{rid}: {mine:?}");
        assert_eq!(&mine[0].order_id, id, "{rid}");
    }
    // Orders c0's retries placed after the restart (buys that had not committed before it).
    let placed_after_restart: Vec<&hawker::commerce::Order> = stored
        .iter()
        .filter(|o| o.created_at >= restart_ms)
        .collect();
    assert!(placed_after_restart.iter().all(|o| o.viewer == "anon-c0"));
    let qty_after_restart: i64 = placed_after_restart.iter().map(|o| o.qty as i64).sum();
    let stored_qty: i64 = stored.iter().map(|o| o.qty as i64).sum();
    let stock = store.product(SHOW, SKU).await.unwrap().unwrap().stock;
    eprintln!(
        "store: {} confirmed orders ({stored_qty} units; {} committed but never acknowledged, \
         {} placed by c0's retries after the restart), stock {stock}",
        stored.len(),
        stored.len() - confirmed.len() - placed_after_restart.len(),
        placed_after_restart.len()
    );
    assert_eq!(
        stock,
        INITIAL - stored_qty,
        "stock = initial - confirmed quantity"
    );
    assert_eq!(
        store.stock(SHOW, SKU),
        Some(stock),
        "mirror rebuilt from the table"
    );
    assert_eq!(
        snap_stock - qty_after_restart,
        stock,
        "the snapshot after the restart showed the durable stock"
    );
    assert_eq!(
        via_api.len(),
        stored.len() - placed_after_restart.len(),
        "the API listed every order stored before the restart"
    );
    assert!(stored_qty >= confirmed_qty as i64);
    store.close();

    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("orders_crash: {:?}", t0.elapsed());
}

/// Closing a peer whose server is gone: no DELETE, bounded.
trait CloseQuietly {
    async fn close_peer_quietly(&self);
}

impl CloseQuietly for Viewer {
    async fn close_peer_quietly(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.close_without_delete()).await;
    }
}
