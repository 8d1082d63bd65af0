//! Abuse against the real server, each scenario bounded in time:
//!
//! * 10 000 anonymous WHEPs to random shows: every one 404, no show created.
//! * 2 000 offers from one address that never do ICE, under `http.max_sessions_per_ip = 50`:
//!   the first ones up to the cap are answered 201, every other one 429 with `Retry-After`;
//!   the answered ones are dropped at the connect timeout; a viewer already watching keeps an
//!   unbroken stream meanwhile.
//! * 10 anonymous viewers on one address, each with its own server-issued viewer id, place 50
//!   buys under `commerce.buys_per_minute_per_ip = 20`: at most the address's budget is
//!   ordered, the rest is `rate_limited`; ids chosen by the client are refused (403).
//! * A data-channel flood (1000 pings/s per peer, 50 times its rate, messages over the size
//!   limit, 100 extra channels) from 5 viewers: the process's memory stays bounded and another
//!   viewer's buys are answered about as fast as before.
//! * 1 000 slowloris sockets: a WHEP is still answered within a second.

#[path = "support/live.rs"]
mod live;
mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hawker::auth::Role;
use hawker::commerce::ShowState;
use serde_json::json;
use str0m::media::{Direction, MediaKind as StrKind};
use support::server::{post_raw, TestServer};
use support::{MediaKind, Publisher, PublisherOpts, Viewer, ViewerOpts};

const SDP: &str = "application/sdp";
const WAIT: Duration = Duration::from_secs(10);

/// The scenarios run one at a time: they share this process, so one's peers would count in
/// another's memory figure (the flood test reads the process's RSS) and compete for its CPU.
/// (An async lock: each test has its own runtime, and a failed scenario releases it.)
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A viewer's offer (video and audio recvonly, the events channel) from a str0m client that
/// will never answer ICE.
fn offer() -> String {
    let local = "127.0.0.1:9".parse().unwrap();
    let mut rtc = hawker::sim::client::rtc(Instant::now(), local, hawker::sim::client::Offer::Any);
    let mut api = rtc.sdp_api();
    api.add_media(StrKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(StrKind::Audio, Direction::RecvOnly, None, None, None);
    api.add_channel("events".into());
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

/// POST `n` WHEP offers to `url(i)`, `parallel` at a time; the status codes, with the
/// `Retry-After` header when there is one.
async fn wheps(
    n: usize,
    parallel: usize,
    url: impl Fn(usize) -> String,
) -> Vec<(u16, Option<String>)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let body = offer();
    let urls: Vec<String> = (0..n).map(url).collect();
    live::for_each_parallel(urls, parallel, move |_, u| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            client
                .post(u)
                .header(reqwest::header::CONTENT_TYPE, SDP)
                .body(body)
                .send()
                .await
                .map(|r| {
                    let retry = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    (r.status().as_u16(), retry)
                })
                .unwrap_or((0, None))
        }
    })
    .await
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

async fn live_show(server: &TestServer, show: &str) -> Publisher {
    let app = server.app();
    live::seed_show(
        &app.store,
        show,
        &[("lamp-1", "Brass desk lamp", 4900, 100_000)],
    )
    .await;
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
    seller
}

/// Longest gap between consecutive video packets received in `[from, to]`.
fn longest_gap(v: &Viewer, from: Instant, to: Instant) -> (Duration, usize) {
    let at: Vec<Instant> = v
        .packets(MediaKind::Video)
        .iter()
        .map(|p| p.arrival)
        .filter(|&t| t >= from && t <= to)
        .collect();
    let gap = at
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(to - from);
    (gap, at.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_wheps_to_random_shows_create_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    support::init_logging();
    let server = TestServer::start(2, |_| {}).await;
    let app = server.app().clone();
    let before = app.store.shows(None).await.unwrap().len();
    let started = Instant::now();
    let statuses = wheps(10_000, 64, |i| {
        server.whep(&format!("nope-{i}-{:08x}", rand::random::<u32>()))
    })
    .await;
    let took = started.elapsed();
    let not_404: Vec<_> = statuses.iter().filter(|s| s.0 != 404).collect();
    assert!(
        not_404.is_empty(),
        "{} answers were not 404: {:?}",
        not_404.len(),
        &not_404[..not_404.len().min(10)]
    );
    assert_eq!(
        app.store.shows(None).await.unwrap().len(),
        before,
        "a show was created"
    );
    assert!(app.registry.show("nope-0").is_none());
    assert_eq!(
        app.engine
            .shards()
            .iter()
            .map(|h| h.peers.load(Ordering::Relaxed))
            .sum::<usize>(),
        0
    );
    eprintln!("10 000 anonymous WHEPs to unknown shows: all 404 in {took:?}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_less_offers_do_not_disturb_viewers() {
    const CAP: usize = 50;
    let _one = ONE_AT_A_TIME.lock().await;
    support::init_logging();
    let server = TestServer::start(2, |cfg| {
        cfg.media.connect_timeout = Duration::from_secs(3);
        cfg.http.max_sessions_per_ip = CAP;
        cfg.http.retry_after_secs = 7;
    })
    .await;
    let app = server.app().clone();
    let show = "storm";
    let _seller = live_show(&server, show).await;
    let viewer = Viewer::connect(&server.whep(show), None, ViewerOpts::default())
        .await
        .expect("viewer connects");
    viewer
        .wait_for(|l| l.video.iter().any(|p| p.keyframe), WAIT)
        .await
        .unwrap();
    let peers = || -> usize {
        app.engine
            .shards()
            .iter()
            .map(|h| h.peers.load(Ordering::Relaxed))
            .sum()
    };
    assert_eq!(peers(), 2);

    let from = Instant::now();
    let statuses = wheps(2_000, 16, |_| server.whep(show)).await;
    let storm = from.elapsed();
    let created = statuses.iter().filter(|s| s.0 == 201).count();
    let capped = statuses.iter().filter(|s| s.0 == 429).count();
    let odd: Vec<_> = statuses
        .iter()
        .filter(|s| !(s.0 == 201 || s.0 == 429 && s.1.as_deref() == Some("7")))
        .collect();
    assert!(
        odd.is_empty(),
        "unexpected answers (or a 429 without Retry-After: 7): {:?}",
        &odd[..odd.len().min(10)]
    );
    // The seller and the viewer come from the same address and hold two of the sessions.
    assert_eq!(created, CAP - 2, "answered up to the address cap");
    assert_eq!(capped, 2_000 - created);
    // None of them ever connects: all gone one connect timeout after the last.
    support::wait_until("ICE-less peers dropped", Duration::from_secs(8), || {
        peers() == 2
    })
    .await
    .unwrap_or_else(|_| panic!("{} peers left after the connect timeout", peers()));
    let to = Instant::now();
    let (gap, n) = longest_gap(&viewer, from, to);
    let secs = (to - from).as_secs_f64();
    eprintln!(
        "2 000 ICE-less offers in {storm:?} ({created} answered 201, {capped} 429); viewer: {n} video packets in {secs:.1} s, longest gap {gap:?}"
    );
    assert!(
        gap < Duration::from_millis(500),
        "the viewer's video stalled for {gap:?}"
    );
    // 30 fps, at least one packet a frame.
    assert!(
        n as f64 >= 0.8 * 30.0 * secs,
        "{n} video packets in {secs:.1} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_channel_flood_leaves_memory_and_buys_alone() {
    let _one = ONE_AT_A_TIME.lock().await;
    support::init_logging();
    let server = TestServer::start(2, |cfg| {
        cfg.commerce.buys_per_minute = 10_000;
    })
    .await;
    let show = "flood";
    let _seller = live_show(&server, show).await;
    let opts = ViewerOpts::default().with_data_channel();
    let buyer = Viewer::connect(&server.whep(show), None, opts.clone())
        .await
        .expect("buyer connects");
    let mut flooders = Vec::new();
    for _ in 0..5 {
        flooders.push(
            Viewer::connect(&server.whep(show), None, opts.clone())
                .await
                .expect("flooder connects"),
        );
    }
    for v in flooders.iter().chain([&buyer]) {
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
    let mut n = 0;
    let mut buy = |label: &str| {
        n += 1;
        (
            format!("{label}-{n}"),
            json!({"type": "buy", "request_id": format!("{label}-{n}"), "sku": "lamp-1", "qty": 1})
                .to_string(),
        )
    };
    async fn timed(v: &Viewer, rid: &str, msg: &str) -> Duration {
        let from = v.messages().len();
        let t = Instant::now();
        v.send_text(msg).await.unwrap();
        live::wait_json(
            "order",
            WAIT,
            from,
            || v.messages(),
            |m| m["request_id"] == rid,
        )
        .await
        .unwrap();
        let took = t.elapsed();
        // A buyer within its message rate (20/s).
        tokio::time::sleep(Duration::from_millis(100)).await;
        took
    }
    let mut quiet = Vec::new();
    for _ in 0..10 {
        let (rid, m) = buy("quiet");
        quiet.push(timed(&buyer, &rid, &m).await);
    }
    let rss_before = rss_kib();

    // The flood: every flooder opens 20 extra channels and sends pings and oversized
    // messages, for 3 s.
    let stop = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for (i, f) in flooders.iter().enumerate() {
        let pc = f.peer_connection();
        for c in 0..20 {
            let _ = pc.create_data_channel(&format!("x{i}-{c}"), None).await;
        }
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let big = "a".repeat(5000);
            let (mut sent, mut refused) = (0u64, 0u64);
            while Instant::now() < stop {
                for _ in 0..50 {
                    if f.send_text("{\"type\":\"ping\"}").await.is_ok() {
                        sent += 1;
                    }
                }
                if f.send_text(&big).await.is_err() {
                    refused += 1;
                }
                // 1000 messages/s per flooder, 50 times the per-peer rate: the clients share
                // this process and its 2 cores with the server, and an unthrottled sender
                // measures the clients' own CPU, not the server.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (sent, refused)
        }));
    }
    let mut loud = Vec::new();
    while Instant::now() < stop {
        let (rid, m) = buy("loud");
        loud.push(timed(&buyer, &rid, &m).await);
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap().0;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib();
    let refused = server
        .metric("hawker_datachannel_messages_refused_total", "rate_limited")
        .await;
    quiet.sort();
    loud.sort();
    let p50 = |v: &[Duration]| v[v.len() / 2];
    let worst = |v: &[Duration]| v[v.len() - 1];
    eprintln!(
        "flood: {sent} pings sent, {refused} refused in the shard; buys quiet p50 {:?} max {:?}, during the flood p50 {:?} max {:?} ({} buys); RSS {} → {} KiB",
        p50(&quiet), worst(&quiet), p50(&loud), worst(&loud), loud.len(), rss_before, rss_after
    );
    assert!(
        refused > 0.5 * sent as f64,
        "the shard refused only {refused} of {sent}"
    );
    assert!(
        p50(&loud) < p50(&quiet) * 3 + Duration::from_millis(20),
        "buys slowed down under the flood"
    );
    assert!(worst(&loud) < Duration::from_millis(500));
    // Whole test process (server and 7 webrtc-rs peers): bounded, not growing with the flood.
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew by {} KiB",
        rss_after.saturating_sub(rss_before)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_sockets_do_not_delay_whep() {
    let _one = ONE_AT_A_TIME.lock().await;
    support::init_logging();
    let server = TestServer::start(1, |_| {}).await;
    let show = "loris";
    server.create_show(show).await;
    let addr = server.running.as_ref().unwrap().http_addr;
    let mut socks = Vec::new();
    for _ in 0..1000 {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /whep/loris HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        socks.push(s);
    }
    let body = offer();
    for _ in 0..3 {
        let t = Instant::now();
        let r = post_raw(&server.whep(show), Some(SDP), None, body.clone()).await;
        let took = t.elapsed();
        assert_eq!(r.status, 201, "{}", r.body);
        eprintln!("WHEP with 1000 slowloris sockets open: {took:?}");
        assert!(took < Duration::from_secs(1), "WHEP took {took:?}");
    }
    drop(socks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_buyers_on_one_address_share_its_buy_budget() {
    const PER_IP: u32 = 20;
    let _one = ONE_AT_A_TIME.lock().await;
    support::init_logging();
    let server = TestServer::start(2, |cfg| {
        cfg.commerce.buys_per_minute_per_ip = PER_IP;
    })
    .await;
    let app = server.app().clone();
    let show = "many-ids";
    let _seller = live_show(&server, show).await;

    // Ids the client picks are refused: anonymous ids are issued by the server.
    for chosen in ["alice", "viewer-1", "anon-0000", "x.y"] {
        let url = format!("{}?viewer={chosen}", server.whep(show));
        let r = post_raw(&url, Some(SDP), None, offer()).await;
        assert_eq!(r.status, 403, "?viewer={chosen}: {}", r.body);
    }

    // Ten anonymous viewers, each a fresh server-issued id, five buys each.
    let opts = ViewerOpts::default().with_data_channel();
    let mut viewers = Vec::new();
    for _ in 0..10 {
        let v = Viewer::connect(&server.whep(show), None, opts.clone())
            .await
            .expect("anonymous viewer connects");
        live::wait_json(
            "snapshot",
            WAIT,
            0,
            || v.messages(),
            |m| m["type"] == "snapshot",
        )
        .await
        .unwrap();
        viewers.push(v);
    }
    let started = Instant::now();
    let (mut confirmed, mut limited) = (0u32, 0u32);
    for round in 0..5 {
        for (i, v) in viewers.iter().enumerate() {
            let rid = format!("b-{i}-{round}");
            let from = v.messages().len();
            let m = json!({"type": "buy", "request_id": rid, "sku": "lamp-1", "qty": 1});
            v.send_text(&m.to_string()).await.unwrap();
            let (_, answer) = live::wait_json(
                "buy answer",
                WAIT,
                from,
                || v.messages(),
                |m| m["request_id"] == rid.as_str(),
            )
            .await
            .unwrap();
            match (answer["type"].as_str(), answer["code"].as_str()) {
                (Some("order"), _) => confirmed += 1,
                (Some("error"), Some("rate_limited")) => {
                    let text = answer["message"].as_str().unwrap_or("");
                    assert!(text.contains("from this address"), "{answer}");
                    limited += 1;
                }
                _ => panic!("unexpected answer {answer}"),
            }
        }
    }
    let took = started.elapsed();
    // The bucket starts full (PER_IP) and refills at PER_IP a minute.
    let budget = PER_IP + (took.as_secs_f64() * f64::from(PER_IP) / 60.0).ceil() as u32;
    eprintln!("50 buys from 10 anonymous ids on one address in {took:?}: {confirmed} ordered, {limited} rate_limited (budget {budget})");
    assert_eq!(confirmed + limited, 50);
    assert!(
        confirmed >= PER_IP && confirmed <= budget,
        "{confirmed} ordered, budget {budget}"
    );
    let counted = server
        .metric("hawker_buys_limited_total", "scope=\"ip\"")
        .await;
    assert_eq!(counted, f64::from(limited));
    let orders = app.store.orders_after(show, 0, 100).await.unwrap().0;
    assert_eq!(orders.len() as u32, confirmed);
}
