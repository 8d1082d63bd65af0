#![allow(
    clippy::await_holding_lock,
    clippy::bool_comparison,
    clippy::field_reassign_with_default
)] // test code: serialising guards and table-driven setup
//! Peer life cycle: viewers waiting before the seller goes live, viewers leaving (DELETE, or
//! just closing), and server shutdown closing every peer.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hawker::auth::Role;
use support::server::{delete_raw, LossyLink, TestServer};
use support::{MediaKind, Publisher, PublisherOpts, Viewer, ViewerOpts};
use webrtc::peer_connection::RTCPeerConnectionState as PcState;

static SERIAL: Mutex<()> = Mutex::new(());

fn ended(s: PcState) -> bool {
    matches!(s, PcState::Disconnected | PcState::Failed | PcState::Closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_waiting_before_the_seller_receive_once_live() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::init_logging();
    let server = TestServer::start(2, |_| {}).await;
    let show = "lobby";
    server.create_show(show).await;
    let token = server.token(show, Role::Publisher, "seller");
    let mut viewers = Vec::new();
    for _ in 0..4 {
        viewers.push(
            Viewer::connect(&server.whep(show), None, ViewerOpts::default())
                .await
                .unwrap(),
        );
    }
    let per_shard = server
        .metric_per_shard("hawker_peers", "role=\"viewer\"")
        .await;
    assert!(
        per_shard.iter().all(|&n| n >= 1.0),
        "waiting viewers on every shard: {per_shard:?}"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    for (i, v) in viewers.iter().enumerate() {
        assert!(
            v.log().video.is_empty(),
            "viewer {i} got video before anyone published"
        );
        assert!(
            ended(v.state()) == false,
            "viewer {i} still connected while waiting"
        );
    }
    assert_eq!(server.metric("hawker_shows_live", "").await, 0.0);

    let publisher = Publisher::connect(&server.whip(show), &token, PublisherOpts::default())
        .await
        .unwrap();
    let live_at = Instant::now();
    publisher.start_streaming(30);
    let (live, ok) = server
        .wait_metric("hawker_shows_live", "", Duration::from_secs(2), |v| {
            v == 1.0
        })
        .await;
    assert!(
        ok,
        "hawker_shows_live = {live} after the publisher connected"
    );
    let mut f = Vec::new();
    for (i, v) in viewers.iter().enumerate() {
        if let Err(e) = v
            .wait_for(
                |l| l.video.len() >= 60 && l.audio.len() >= 80,
                Duration::from_secs(8),
            )
            .await
        {
            f.push(format!("viewer {i} waiting since before the show: {e}"));
            continue;
        }
        let first = v.packets(MediaKind::Video)[0].clone();
        let delay = first.arrival.saturating_duration_since(live_at);
        eprintln!("viewer {i}: first video {delay:?} after the publisher connected");
        if !first.keyframe {
            f.push(format!("viewer {i}: first video packet is not a keyframe"));
        }
        if first.tag.map(|t| t.index) != Some(0) {
            f.push(format!(
                "viewer {i}: first video packet is frame {:?}, not the seller's first frame",
                first.tag.map(|t| t.index)
            ));
        }
        if delay > Duration::from_secs(1) {
            f.push(format!(
                "viewer {i}: first video {delay:?} after going live"
            ));
        }
    }
    assert!(f.is_empty(), "{}", f.join("\n"));
    publisher.close().await.unwrap();
    for v in &viewers {
        v.close().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_viewers_are_freed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::init_logging();
    let server = TestServer::start(2, |_| {}).await;
    let show = "leaving";
    let token = server.token(show, Role::Publisher, "seller");
    let publisher = Publisher::connect(&server.whip(show), &token, PublisherOpts::default())
        .await
        .unwrap();
    // Viewers join before media flows: their start does not depend on the keyframe cache
    // (see tests/sfu_keyframes.rs for joining mid-stream).
    let mut viewers = Vec::new();
    for _ in 0..5 {
        viewers.push(
            Viewer::connect(&server.whep(show), None, ViewerOpts::default())
                .await
                .unwrap(),
        );
    }
    publisher.start_streaming(30);
    for v in &viewers {
        v.wait_for(|l| l.video.len() >= 20, Duration::from_secs(5))
            .await
            .unwrap();
    }
    let (n, ok) = server
        .wait_metric(
            "hawker_peers",
            "role=\"viewer\"",
            Duration::from_secs(2),
            |v| v == 5.0,
        )
        .await;
    assert!(ok, "5 viewers counted, got {n}");
    let mut f = Vec::new();

    // 1. DELETE by the client (the normal WHEP leave): gauge drops at once; a second DELETE
    //    is 404.
    let t = Instant::now();
    assert_eq!(viewers[0].close().await.unwrap(), 200);
    let (n, ok) = server
        .wait_metric(
            "hawker_peers",
            "role=\"viewer\"",
            Duration::from_secs(1),
            |v| v == 4.0,
        )
        .await;
    if !ok {
        f.push(format!("after DELETE: viewer gauge {n}, want 4"));
    } else {
        eprintln!("DELETE: gauge dropped after {:?}", t.elapsed());
    }
    let again = delete_raw(viewers[0].location()).await;
    if again.status != 404 {
        f.push(format!(
            "second DELETE of the same viewer: {} (want 404)",
            again.status
        ));
    }

    // 2. DELETE by someone holding the URL while the client stays up: the server closes the
    //    peer; the client sees the connection end and no more media.
    let r = delete_raw(viewers[1].location()).await;
    if r.status != 200 {
        f.push(format!("server-side DELETE of viewer 1: {}", r.status));
    }
    let deleted_at = Instant::now();
    let (n, ok) = server
        .wait_metric(
            "hawker_peers",
            "role=\"viewer\"",
            Duration::from_secs(1),
            |v| v == 3.0,
        )
        .await;
    if !ok {
        f.push(format!(
            "after server-side DELETE: viewer gauge {n}, want 3"
        ));
    }
    let v1 = &viewers[1];
    // The server sends a DTLS close_notify; webrtc-rs does not act on it and notices through
    // failed consent checks after ~4 s, hence the 6 s bound.
    if support::wait_until("viewer 1 connection ends", Duration::from_secs(6), || {
        ended(v1.state())
    })
    .await
    .is_err()
    {
        f.push(format!(
            "viewer 1 still {:?} 6 s after its session was deleted",
            v1.state()
        ));
    } else {
        eprintln!(
            "server-side DELETE: client saw {:?} after {:?}",
            v1.state(),
            deleted_at.elapsed()
        );
    }
    let late = v1
        .packets(MediaKind::Video)
        .iter()
        .filter(|p| p.arrival > deleted_at + Duration::from_millis(100))
        .count();
    if late > 0 {
        f.push(format!(
            "viewer 1 received {late} video packets after its session was deleted"
        ));
    }

    // 3. A viewer that closes without DELETE (tab closed) while media flows.
    let t = Instant::now();
    viewers[2].close_without_delete().await;
    let (n, ok) = server
        .wait_metric(
            "hawker_peers",
            "role=\"viewer\"",
            Duration::from_secs(5),
            |v| v == 2.0,
        )
        .await;
    if !ok {
        f.push(format!(
            "viewer closed without DELETE while media flows: gauge {n} after 5 s, want 2"
        ));
    } else {
        eprintln!(
            "close without DELETE (media flowing): gauge dropped after {:?}",
            t.elapsed()
        );
    }

    // 4. The same while the show is idle (seller connected, not sending).
    publisher.stop_streaming();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    viewers[3].close_without_delete().await;
    let (n, ok) = server
        .wait_metric(
            "hawker_peers",
            "role=\"viewer\"",
            Duration::from_secs(5),
            |v| v == 1.0,
        )
        .await;
    if !ok {
        f.push(format!(
            "viewer closed without DELETE while the show is idle: gauge {n} after 5 s, want 1"
        ));
    } else {
        eprintln!(
            "close without DELETE (idle show): gauge dropped after {:?}",
            t.elapsed()
        );
    }

    // The remaining viewer is unaffected.
    publisher.start_streaming(30);
    let before = viewers[4].packets(MediaKind::Video).len();
    if let Err(e) = viewers[4]
        .wait_for(|l| l.video.len() >= before + 30, Duration::from_secs(5))
        .await
    {
        f.push(format!("remaining viewer stalled: {e}"));
    }
    if !ok {
        // Diagnosis: is the idle viewer freed once media flows again (i.e. only a packet
        // written to it makes the shard look at it)?
        let (n, freed) = server
            .wait_metric(
                "hawker_peers",
                "role=\"viewer\"",
                Duration::from_secs(2),
                |v| v == 1.0,
            )
            .await;
        f.push(format!(
            "  → {}: gauge {n} {:?} after the viewer closed, media flowing again for ~1 s",
            if freed {
                "freed only once media flowed again"
            } else {
                "still not freed"
            },
            t.elapsed()
        ));
    }
    assert!(f.is_empty(), "{} problems:\n{}", f.len(), f.join("\n"));
    viewers[4].close().await.unwrap();
    publisher.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_every_peer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::init_logging();
    let mut server = TestServer::start(2, |_| {}).await;
    let show = "closing";
    let token = server.token(show, Role::Publisher, "seller");
    let publisher = Publisher::connect(&server.whip(show), &token, PublisherOpts::default())
        .await
        .unwrap();
    // Viewers join before media flows (independent of the keyframe cache), one of them
    // behind a relay to see what the server sends when it stops.
    let mut viewers = Vec::new();
    for _ in 0..4 {
        viewers.push(
            Viewer::connect(&server.whep(show), None, ViewerOpts::default())
                .await
                .unwrap(),
        );
    }
    let link = LossyLink::start(&server).await;
    viewers.push(
        Viewer::connect(&link.whep(show), None, ViewerOpts::default())
            .await
            .unwrap(),
    );
    publisher.start_streaming(30);
    for v in &viewers {
        v.wait_for(|l| l.video.len() >= 20, Duration::from_secs(5))
            .await
            .unwrap();
    }
    let alerts_before = link.dtls_alerts_down();
    let base = server.base.clone();
    let running = server.take_running();
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .expect("Running::stop returns within 10 s");
    let stop_took = t.elapsed();
    // webrtc-rs ignores the close_notify (counted below) and notices via consent (~4 s).
    let bound = Duration::from_secs(6);
    let mut f = Vec::new();
    for (i, v) in viewers.iter().enumerate() {
        let res = support::wait_until(
            "viewer connection ends",
            bound.saturating_sub(t.elapsed()),
            || ended(v.state()),
        )
        .await;
        if res.is_err() {
            f.push(format!(
                "viewer {i} still {:?} {:?} after stop()",
                v.state(),
                t.elapsed()
            ));
        }
    }
    let pub_state = publisher
        .wait_disconnected(bound.saturating_sub(t.elapsed()))
        .await;
    if let Err(e) = &pub_state {
        f.push(format!("publisher: {e}"));
    }
    eprintln!(
        "stop() took {stop_took:?}; peers ended after {:?}: viewers {:?}, publisher {:?}",
        t.elapsed(),
        viewers.iter().map(|v| v.state()).collect::<Vec<_>>(),
        pub_state.ok()
    );
    // The server said goodbye (DTLS close_notify) rather than just going silent.
    let alerts = link.dtls_alerts_down() - alerts_before;
    eprintln!("DTLS alerts sent by the server to the relayed viewer on stop(): {alerts}");
    if alerts == 0 {
        f.push("no DTLS close_notify sent to the relayed viewer on stop()".into());
    }
    // The public listener is gone.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
        f.push(format!(
            "/healthz still answers {} after stop()",
            r.status()
        ));
    }
    assert!(f.is_empty(), "{}", f.join("\n"));
    publisher.close_without_delete().await;
    for v in &viewers {
        v.close_without_delete().await;
    }
    server.stop().await;
}

/// `auth.secret` configured and a data directory that does not exist yet (the usual first
/// start of a packaged server): the server must start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_a_fresh_data_dir() {
    let dir = std::env::temp_dir().join(format!("hawker-fresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = hawker::config::Config::default();
    cfg.data_dir = dir.join("not-yet-created");
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics.listen = "127.0.0.1:0".parse().unwrap();
    cfg.media.shards = 1;
    cfg.auth.secret = Some("test-secret-0123456789abcdef-0123456789".into());
    let res = hawker::server::start(cfg).await;
    let _ = std::fs::remove_dir_all(&dir);
    match res {
        Ok(running) => running.stop().await,
        Err(e) => {
            panic!("server does not start with a fresh data_dir and a configured secret: {e:#}")
        }
    }
}
