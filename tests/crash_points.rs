//! SIGKILL at exact crash points of the real binary (built with the test-only `fault-injection`
//! feature: `HAWKER_FAULT_PAUSE` makes the process stop at a named point and wait to be killed;
//! see `src/fault.rs`).
//!
//! * **Mid group commit** (`commit`): a seller streams, 10 webrtc-rs viewers buy, a webhook
//!   receiver acknowledges every delivery. The test arms the point; the commerce writer stops
//!   inside its next `BEGIN … COMMIT` and the server gets SIGKILL there. After a restart on the
//!   same data directory: every order a viewer saw confirmed is stored exactly once, the stock
//!   matches the stored orders, every confirmed order reaches the receiver as `order.created`
//!   under one delivery id only, a delivery id always carries the same body, and each delivery
//!   the receiver acknowledged after the writer stopped (its acknowledgement could not be
//!   committed) is sent again after the restart with the same delivery id.
//! * **Mid secret creation** (`secret-written`: the generated secret is written and fsynced
//!   under its temporary name, not linked yet; `secret-linked`: linked, the directory not yet
//!   fsynced): after SIGKILL the next start succeeds with a full-length secret, and a token made
//!   from the secret file after the kill is accepted by the restarted server.

#[path = "support/live.rs"]
mod live;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{Publisher, PublisherOpts, ViewerOpts};

const SHOW: &str = "crashpt";
const SKU: &str = "lamp-1";
const INITIAL: i64 = 100_000;
const VIEWERS: usize = 10;
const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_hawker");
const SECRET: &str = "crash-points-test-secret-0123456789abcdef";

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

fn fresh_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hawker-{what}-{}-{}",
        std::process::id(),
        live::now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_config(dir: &Path, port: u16, secret: bool, webhook: Option<&str>) -> PathBuf {
    let path = dir.join("hawker.toml");
    let secret = if secret {
        format!("secret = \"{SECRET}\"")
    } else {
        String::new()
    };
    let hooks = webhook
        .map(|u| format!("webhook_urls = [\"{u}\"]"))
        .unwrap_or_default();
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
{secret}
[shows]
seed_demo = false
[recording]
enabled = false
[commerce]
buys_per_minute = 100000
buys_per_minute_per_ip = 0
{hooks}
"#,
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

fn token(config: &Path, role: &str, sub: &str) -> String {
    token_for(config, SHOW, role, sub)
}

fn token_for(config: &Path, show: &str, role: &str, sub: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--config"])
        .arg(config)
        .args(["--show", show, "--role", role, "--sub", sub, "--ttl", "10m"])
        .output()
        .expect("run hawker token");
    assert!(
        out.status.success(),
        "hawker token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts `hawker serve` (with `HAWKER_FAULT_PAUSE=pause` when given).
fn spawn(dir: &Path, config: &Path, run: usize, pause: Option<&str>) -> Proc {
    let port = config_port(config);
    let log = std::fs::File::create(dir.join(format!("server-{run}.log"))).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "hawker=info,warn")
        .env_remove("HAWKER_FAULT_PAUSE")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(p) = pause {
        cmd.env("HAWKER_FAULT_PAUSE", p);
    }
    Proc {
        child: cmd.spawn().expect("spawn hawker serve"),
        base: format!("http://127.0.0.1:{port}"),
    }
}

fn config_port(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("listen = \"127.0.0.1:"))
        .unwrap();
    line.trim_end_matches('"')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn wait_healthy(proc: &Proc, what: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", proc.base)).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "hawker serve did not come up ({what})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_file(path: &Path, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "never reached: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn kill9(mut proc: Proc) {
    proc.child.kill().unwrap();
    let status = proc.child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "hawker serve should have died of signal 9, got {status}"
    );
}

/// One delivery the webhook receiver got: (delivery id, body, received at).
type Receipt = (String, String, Instant);

/// A webhook receiver on 127.0.0.1 that acknowledges everything (after 150 ms) and keeps every
/// receipt, stamped when it answers.
async fn receiver() -> (String, Arc<Mutex<Vec<Receipt>>>) {
    use axum::{http::HeaderMap, routing::post, Router};
    let got: Arc<Mutex<Vec<Receipt>>> = Arc::default();
    let sink = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let id = headers
                    .get("x-hawker-delivery")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                // Slow on purpose: some deliveries are always in flight, so the writer stops
                // with acknowledgements still to record.
                tokio::time::sleep(Duration::from_millis(150)).await;
                sink.lock().push((id, body, Instant::now()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// Every stored order, through the REST API.
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
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let page = v["orders"].as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        cursor = v["next_cursor"].as_i64().unwrap();
        out.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_group_commit_keeps_orders_exact_and_resends_webhooks_with_the_same_id() {
    support::init_logging();
    let dir = fresh_dir("crash-commit");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let store = hawker::commerce::Store::open(data.join("hawker.db")).unwrap();
        live::seed_show(&store, SHOW, &[(SKU, "Lamp", 4_900, INITIAL)]).await;
        store.close();
    }
    let (hook_url, receipts) = receiver().await;
    let config = write_config(&dir, live::free_tcp_port(), true, Some(&hook_url));
    let proc1 = spawn(&dir, &config, 1, Some("commit"));
    wait_healthy(&proc1, "first start").await;

    let seller = Publisher::connect(
        &format!("{}/whip/{SHOW}", proc1.base),
        &token(&config, "publisher", "seller"),
        PublisherOpts::default(),
    )
    .await
    .expect("publisher connects");
    seller.start_streaming(30);
    let keys = hawker::auth::Keys::new(SECRET.as_bytes());
    let whep = format!("{}/whep/{SHOW}", proc1.base);
    let viewers = live::connect_viewers(
        VIEWERS,
        5,
        |i| format!("{whep}?viewer={}", keys.sign_anon_viewer(&format!("v{i}"))),
        ViewerOpts {
            audio: false,
            ..ViewerOpts::default().with_data_channel()
        },
    )
    .await
    .expect("viewers connect");
    for v in &viewers {
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
    let viewers = Arc::new(viewers);

    // Buys at 10/s per viewer (under the shard's 20 messages/s), until the kill.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..VIEWERS {
        let (viewers, stop) = (viewers.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) && k < 2_000 {
                tick.tick().await;
                let m = json!({"type": "buy", "request_id": format!("v{i}-r{k}"), "sku": SKU,
                               "qty": 1 + k % 3});
                if viewers[i].send_text(&m.to_string()).await.is_err() {
                    break;
                }
                k += 1;
            }
        }));
    }
    let confirmed_seen = |viewers: &[support::Viewer]| -> usize {
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
    while confirmed_seen(&viewers) < 100 || receipts.lock().len() < 20 {
        assert!(Instant::now() < deadline, "buys or webhooks too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Arm: the writer stops inside its next transaction.
    std::fs::write(data.join("fault-arm-commit"), b"").unwrap();
    wait_file(&data.join("fault-paused-commit"), "a paused group commit").await;
    let paused_at = Instant::now();
    // Give the webhook worker time to deliver what was committed before the pause; its
    // acknowledgements now wait behind the stopped writer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill9(proc1);
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let receipts_before_kill = receipts.lock().len();

    // What the viewers were told.
    let mut confirmed: BTreeMap<String, (String, String, u64)> = BTreeMap::new();
    for (i, v) in viewers.iter().enumerate() {
        for a in live::of_type(&v.messages(), "order") {
            if a["status"] == "confirmed" {
                confirmed.insert(
                    a["order_id"].as_str().unwrap().to_string(),
                    (
                        format!("anon-v{i}"),
                        a["request_id"].as_str().unwrap().to_string(),
                        a["qty"].as_u64().unwrap(),
                    ),
                );
            }
        }
    }
    for v in viewers.iter() {
        let _ = tokio::time::timeout(Duration::from_secs(2), v.close_without_delete()).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), seller.close_without_delete()).await;

    // Restart without the crash point.
    std::fs::remove_file(data.join("fault-arm-commit")).unwrap();
    let proc2 = spawn(&dir, &config, 2, None);
    wait_healthy(&proc2, "restart").await;
    let admin = token(&config, "admin", "ops");
    let stored = api_orders(&proc2.base, &admin).await;
    let mut by_request: HashMap<(String, String), usize> = HashMap::new();
    let mut stored_ids = HashSet::new();
    let mut stored_qty = 0i64;
    for o in &stored {
        *by_request
            .entry((
                o["viewer"].as_str().unwrap().to_string(),
                o["request_id"].as_str().unwrap().to_string(),
            ))
            .or_default() += 1;
        stored_ids.insert(o["order_id"].as_str().unwrap().to_string());
        stored_qty += o["qty"].as_i64().unwrap();
    }
    assert!(
        by_request.values().all(|&n| n == 1),
        "a request was stored twice"
    );
    for (id, (viewer, rid, qty)) in &confirmed {
        let o = stored
            .iter()
            .find(|o| o["order_id"] == id.as_str())
            .unwrap_or_else(|| panic!("confirmed order {id} ({viewer} {rid}) lost"));
        assert_eq!(o["viewer"], viewer.as_str());
        assert_eq!(o["request_id"], rid.as_str());
        assert_eq!(o["qty"].as_u64(), Some(*qty));
    }
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/shows/{SHOW}/products", proc2.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let products: Value = r.json().await.unwrap();
    let stock = products["products"][0]["stock"].as_i64().unwrap();
    assert_eq!(
        stock,
        INITIAL - stored_qty,
        "stock matches the stored orders"
    );

    // Every stored order reaches the receiver as order.created, under one delivery id.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = receipts.lock().clone();
        let delivered: HashSet<String> = got
            .iter()
            .filter_map(|(_, body, _)| {
                let v: Value = serde_json::from_str(body).ok()?;
                (v["type"] == "order.created")
                    .then(|| v["data"]["order_id"].as_str().map(String::from))?
            })
            .collect();
        if stored_ids.is_subset(&delivered) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} stored orders never delivered as webhooks",
            stored_ids.difference(&delivered).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receipts.lock().clone();
    let mut body_of: HashMap<&str, &str> = HashMap::new();
    let mut id_of_order: HashMap<String, &str> = HashMap::new();
    for (id, body, _) in &got {
        if let Some(prev) = body_of.insert(id, body) {
            assert_eq!(prev, body, "delivery {id} resent with a different body");
        }
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            v["id"].to_string(),
            *id,
            "delivery id header matches the body's id"
        );
        if v["type"] == "order.created" {
            let order = v["data"]["order_id"].as_str().unwrap().to_string();
            assert!(
                stored_ids.contains(&order),
                "webhook for order {order}, which is not stored"
            );
            if let Some(other) = id_of_order.insert(order.clone(), id) {
                assert_eq!(other, id, "order {order} delivered under two delivery ids");
            }
        }
    }
    // Deliveries acknowledged after the writer stopped were not recorded: they come again.
    let after_pause: HashSet<&str> = got[..receipts_before_kill]
        .iter()
        .filter(|(_, _, at)| *at > paused_at)
        .map(|(id, _, _)| id.as_str())
        .collect();
    let again: HashSet<&str> = got[receipts_before_kill..]
        .iter()
        .map(|(id, _, _)| id.as_str())
        .collect();
    let resent_before: HashSet<&str> = got[..receipts_before_kill]
        .iter()
        .map(|(id, _, _)| id.as_str())
        .filter(|id| again.contains(id))
        .collect();
    assert!(
        !after_pause.is_empty(),
        "no delivery was acknowledged while the writer was stopped: the resend is not exercised"
    );
    for id in &after_pause {
        assert!(
            again.contains(id),
            "delivery {id}, acknowledged while the writer was stopped, was not resent"
        );
    }
    eprintln!(
        "{} confirmed seen, {} stored; {} webhook receipts before the kill ({} after the pause), \
         {} after the restart; {} delivery ids sent both before and after the kill",
        confirmed.len(),
        stored.len(),
        receipts_before_kill,
        after_pause.len(),
        got.len() - receipts_before_kill,
        resent_before.len()
    );
    drop(proc2);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn secret_crash(point: &str) {
    let dir = fresh_dir(&format!("crash-{point}"));
    let data = dir.join("data");
    let config = write_config(&dir, live::free_tcp_port(), false, None);
    let proc1 = spawn(&dir, &config, 1, Some(point));
    wait_file(&data.join(format!("fault-paused-{point}")), point).await;
    kill9(proc1);
    let secret = data.join("secret");
    match point {
        "secret-written" => assert!(!secret.exists(), "the secret is not linked yet"),
        _ => assert_eq!(
            std::fs::read_to_string(&secret).unwrap().trim().len(),
            64,
            "a linked secret is whole"
        ),
    }
    let before = std::fs::read_to_string(&secret).ok();
    // A token from the file as the kill left it (or from the one the next start creates).
    let proc2 = spawn(&dir, &config, 2, None);
    wait_healthy(&proc2, "restart after a kill mid secret creation").await;
    let after = std::fs::read_to_string(&secret).expect("a secret exists after the restart");
    assert_eq!(after.trim().len(), 64, "full-length secret");
    if let Some(b) = before {
        assert_eq!(b, after, "the linked secret was kept, not replaced");
    }
    let admin = token_for(&config, "*", "admin", "ops");
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/shows", proc2.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a token from the secret file is accepted");
    drop(proc2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_the_secret_is_written_but_not_linked() {
    secret_crash("secret-written").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_the_secret_is_linked_but_not_synced() {
    secret_crash("secret-linked").await;
}
