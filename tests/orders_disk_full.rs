//! A full disk with the real binary: buys are refused as `unavailable`, nothing is acknowledged
//! without a commit, media keeps flowing, and buying works again when space returns.
//!
//! * `hawker serve` runs in its own mount namespace (`unshare -m`) whose data directory is a
//!   4 MiB tmpfs, so the disk can really fill up (ENOSPC from the kernel, not a simulated error).
//!   The catalogue is seeded into a staging database that is copied onto the tmpfs before the
//!   server starts. Recording is on (the default), so the recorder meets the full disk too.
//! * Once a webrtc-rs seller streams and a webrtc-rs viewer has its snapshot, the test fills the
//!   tmpfs through `/proc/{pid}/root` with a filler file until `write` fails with ENOSPC.
//! * Then the viewer buys, one request at a time: every buy is answered (confirmed or
//!   `unavailable`, nothing else), at least one is refused as `unavailable`, and meanwhile the
//!   viewer keeps receiving video and `/healthz` stays 200.
//! * The filler is removed; each refused request id is sent again and confirmed within a few
//!   seconds (SQLite's writer recovered; no restart).
//! * `GET /api/v1/shows/{show}/orders` then lists exactly the confirmed orders, each once, and
//!   the product's stock is the initial stock minus their quantity: a refused buy left nothing
//!   behind.
//!
//! Needs root for the mount namespace (CI runs as root); without it the test fails and says so.

#[path = "support/live.rs"]
mod live;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{MediaKind, Publisher, PublisherOpts, ViewerOpts};

const SHOW: &str = "full";
const SKU: &str = "mug-1";
const INITIAL: i64 = 1_000;
const SECRET: &str = "disk-full-test-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(15);
const MAX_BUYS_WHILE_FULL: usize = 200;
const BIN: &str = env!("CARGO_BIN_EXE_hawker");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, data: &Path, port: u16) -> PathBuf {
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
shards = 1
[auth]
secret = "{SECRET}"
[shows]
seed_demo = false
[commerce]
buys_per_minute = 100000
buys_per_minute_per_ip = 0
"#,
            data.display()
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

/// Fills the file system holding `path` with one file; returns how many bytes it took.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filler write: {e}"),
        }
    }
    // Whatever is left is smaller than a page: take it byte by byte.
    while let Ok(1) = f.write(&chunk[..1]) {
        written += 1;
    }
    let _ = f.sync_all();
    written
}

/// Sends one buy and waits for its answer (`order` or `error` with that request id) among the
/// messages that arrive after it was sent.
async fn buy(viewer: &support::Viewer, rid: &str, qty: u32) -> Value {
    let m = json!({"type": "buy", "request_id": rid, "sku": SKU, "qty": qty});
    let from = viewer.messages().len();
    viewer.send_text(&m.to_string()).await.expect("send buy");
    let (_, answer) = live::wait_json(
        &format!("answer to {rid}"),
        WAIT,
        from,
        || viewer.messages(),
        |m| (m["type"] == "order" || m["type"] == "error") && m["request_id"] == rid,
    )
    .await
    .unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_buys_keeps_media_and_recovers() {
    support::init_logging();
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test mounts a tmpfs in a private mount namespace and needs root"
    );
    let dir = std::env::temp_dir().join(format!(
        "hawker-full-{}-{}",
        std::process::id(),
        live::now_ms()
    ));
    let data = dir.join("data");
    let seed = dir.join("seed");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&seed).unwrap();
    {
        let store = hawker::commerce::Store::open(seed.join("hawker.db")).unwrap();
        live::seed_show(&store, SHOW, &[(SKU, "Mug", 1_200, INITIAL)]).await;
        store.close();
    }

    let port = live::free_tcp_port();
    let config = write_config(&dir, &data, port);
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    // `unshare -m` without --fork execs: the child's pid is the shell's, then hawker's.
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            r#"set -e; mount -t tmpfs -o size=4m hawker-full "$1"; cp "$2"/hawker.db* "$1"/;
               exec "$3" serve --config "$4""#,
        )
        .arg("sh")
        .arg(&data)
        .arg(&seed)
        .arg(BIN)
        .arg(&config)
        .env("RUST_LOG", "hawker=info,warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn unshare");
    let pid = child.id();
    let _proc = Proc(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "hawker serve did not come up; see {}",
            dir.join("server.log").display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server's view of its data directory (the tmpfs), from outside its namespace.
    let inside = PathBuf::from(format!("/proc/{pid}/root")).join(data.strip_prefix("/").unwrap());
    assert!(
        inside.join("hawker.db").exists(),
        "the seeded database is on the tmpfs"
    );

    let seller = Publisher::connect(
        &format!("{base}/whip/{SHOW}"),
        &token(&config, "publisher", "seller"),
        PublisherOpts::default(),
    )
    .await
    .expect("publisher connects");
    seller.start_streaming(30);
    let anon = hawker::auth::Keys::new(SECRET.as_bytes()).sign_anon_viewer("buyer");
    let viewer = support::Viewer::connect(
        &format!("{base}/whep/{SHOW}?viewer={anon}"),
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

    // A buy with space left, then the disk fills up.
    let first = buy(&viewer, "before", 1).await;
    assert_eq!(first["status"], "confirmed", "{first}");
    let filler = inside.join("filler");
    let filled = fill(&filler);
    eprintln!("filled the tmpfs with {filled} bytes");
    let video_at_full = viewer.packets(MediaKind::Video).len();

    let mut answers: BTreeMap<String, Value> = BTreeMap::new();
    let mut refused = Vec::new();
    for k in 0..MAX_BUYS_WHILE_FULL {
        let rid = format!("full-{k}");
        let a = buy(&viewer, &rid, 1).await;
        match (a["type"].as_str(), a["status"].as_str(), a["code"].as_str()) {
            (Some("order"), Some("confirmed"), _) => {}
            (Some("error"), _, Some("unavailable")) => refused.push(rid.clone()),
            _ => panic!("a buy on a full disk must be confirmed or unavailable, got {a}"),
        }
        answers.insert(rid, a);
        // A few refusals in a row show the state is stable, not a one-off.
        if refused.len() >= 5 {
            break;
        }
        // Stay under the shard's data-channel rate (20 messages/s after a burst of 40).
        tokio::time::sleep(Duration::from_millis(55)).await;
    }
    assert!(
        !refused.is_empty(),
        "{} buys on a full disk were all confirmed: the disk never filled",
        answers.len()
    );
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "media and HTTP keep serving on a full disk"
    );
    // Media keeps flowing while the disk is full.
    let more = viewer
        .wait_for(
            |log| log.video.len() >= video_at_full + 60,
            Duration::from_secs(10),
        )
        .await;
    assert!(
        more.is_ok(),
        "the viewer stopped receiving video on a full disk ({} packets at the fill, {} now)",
        video_at_full,
        viewer.packets(MediaKind::Video).len()
    );

    // Space returns: the refused requests go through on retry, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let recover_deadline = Instant::now() + WAIT;
    for rid in &refused {
        loop {
            let a = buy(&viewer, rid, 1).await;
            if a["status"] == "confirmed" {
                answers.insert(rid.clone(), a);
                break;
            }
            assert_eq!(a["code"], "unavailable", "{a}");
            assert!(
                Instant::now() < recover_deadline,
                "buys still refused after space returned: {a}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    answers.insert("before".into(), first);

    // Exactly the confirmed orders are stored, each once; the stock matches them.
    let admin = token(&config, "admin", "ops");
    let r = client
        .get(format!("{base}/api/v1/shows/{SHOW}/orders?limit=1000"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    let listed = listed["orders"].as_array().unwrap().clone();
    let confirmed: HashSet<String> = answers
        .values()
        .filter(|a| a["status"] == "confirmed")
        .map(|a| a["order_id"].as_str().unwrap().to_string())
        .collect();
    let stored: Vec<String> = listed
        .iter()
        .map(|o| o["order_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "an order is listed twice");
    assert_eq!(
        stored_set, confirmed,
        "stored orders must be exactly the confirmed ones"
    );
    let r = client
        .get(format!("{base}/api/v1/shows/{SHOW}/products"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let products: Value = r.json().await.unwrap();
    let stock = products["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sku"] == SKU)
        .expect("product listed")["stock"]
        .as_i64()
        .unwrap();
    assert_eq!(stock, INITIAL - confirmed.len() as i64, "stock");
    eprintln!(
        "{} buys answered while full ({} refused), all refused ones confirmed after space returned",
        answers.len() - 1,
        refused.len()
    );
    seller.close_without_delete().await;
    viewer.close_without_delete().await;
    let _ = std::fs::remove_dir_all(&dir);
}
