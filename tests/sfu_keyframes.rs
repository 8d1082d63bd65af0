#![allow(clippy::await_holding_lock)] // the guard serialises these timing-sensitive tests
//! Keyframe gating, the keyframe cache, and keyframe-request coalescing.
//!
//! The publisher here sends a keyframe only as its first frame and when asked (PLI / FIR):
//! `PublisherOpts::keyframe_interval = None`, `answer_keyframe_requests = true`. The server's
//! `media.keyframe_interval` is 300 ms; `media.keyframe_cache_max_age` is the shipped default
//! (a viewer connecting shortly after a keyframe starts from the cached keyframe) except in
//! `*_without_cache`, where it is zero so every start goes through the PLI gate.
//!
//! * `late_joiners_*`: a viewer joining mid-stream gets its first video packet, a keyframe,
//!   within the interval plus an RTT margin of its connection; so does a second joiner right
//!   after the first one (served from the cache, or throttled by the gate without it), and a
//!   third one a second later.
//! * `simultaneous_joiners_cost_few_keyframe_requests`: 20 viewers join at once; every one
//!   starts on a keyframe, and the publisher sees at most `ceil(elapsed / interval) + 1`
//!   keyframe requests over the window (counted at the publisher and cross-checked against
//!   `hawker_media_publisher_plis_total`).
//! * `viewer_plis_are_coalesced`: 20 viewers send PLIs every 50 ms for 1.5 s; the server counts
//!   them all, the publisher still sees at most `ceil(elapsed / interval) + 1` requests, and
//!   every viewer gets a new keyframe.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hawker::auth::Role;
use support::server::TestServer;
use support::{MediaKind, Publisher, PublisherOpts, VideoCodec, Viewer, ViewerOpts};

const INTERVAL: Duration = Duration::from_millis(300);
/// RTT + one frame + scheduling margin on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(700);
const CROWD: usize = 20;

static SERIAL: Mutex<()> = Mutex::new(());

/// `cache`: keep the shipped `media.keyframe_cache_max_age` (viewers may start from the cached
/// last keyframe); `false` sets it to zero so every start goes through the PLI gate.
async fn start_server(cache: bool) -> TestServer {
    TestServer::start(2, |cfg| {
        cfg.media.keyframe_interval = INTERVAL;
        if !cache {
            cfg.media.keyframe_cache_max_age = Duration::ZERO;
        }
    })
    .await
}

async fn cache_starts(server: &TestServer) -> u64 {
    server
        .metric("hawker_media_keyframe_cache_starts_total", "")
        .await as u64
}

fn publisher_opts(codec: VideoCodec) -> PublisherOpts {
    PublisherOpts {
        video_codec: codec,
        keyframe_interval: None,
        answer_keyframe_requests: true,
        packets_per_frame: 3,
        ..Default::default()
    }
}

/// The most keyframe requests a window of `elapsed` may cost the publisher.
fn allowed_requests(elapsed: Duration) -> u64 {
    (elapsed.as_secs_f64() / INTERVAL.as_secs_f64()).ceil() as u64 + 1
}

async fn plis_metric(server: &TestServer) -> u64 {
    server.metric("hawker_media_publisher_plis_total", "").await as u64
}

/// Waits for the viewer's first keyframe; returns (latency from connection, first packet is a
/// keyframe), or what it got instead.
async fn first_keyframe(v: &Viewer, bound: Duration) -> Result<(Duration, bool), String> {
    v.wait_for(
        |l| l.first_keyframe().is_some(),
        bound + Duration::from_secs(3),
    )
    .await
    .map_err(|e| format!("no keyframe: {e}"))?;
    let connected = v.connected_at().expect("connected");
    let first = v.packets(MediaKind::Video)[0].clone();
    let key_at = v.first_keyframe_at().unwrap();
    Ok((key_at.saturating_duration_since(connected), first.keyframe))
}

async fn late_joiners(codec: VideoCodec, cache: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::init_logging();
    let server = start_server(cache).await;
    let show = "late";
    let token = server.token(show, Role::Publisher, "seller");
    let publisher = Publisher::connect(&server.whip(show), &token, publisher_opts(codec))
        .await
        .expect("publisher connects");
    publisher.start_streaming(30);
    // Let the first (and only unrequested) keyframe go by.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        publisher.keyframes_sent(),
        1,
        "only the first frame is a keyframe so far"
    );

    let bound = INTERVAL + MARGIN;
    let mut report = Vec::new();
    let mut viewers = Vec::new();
    // Two joiners back to back (the second one's request falls inside the first one's
    // interval and must be sent when the interval ends), then one more a second later.
    for (i, pause) in [(0, 0u64), (1, 0), (2, 1200)] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let v = Viewer::connect(&server.whep(show), None, ViewerOpts::default())
            .await
            .expect("viewer connects");
        viewers.push((i, v));
    }
    let mut failures = Vec::new();
    for (i, v) in &viewers {
        let who = format!("{codec:?} late joiner {i}");
        let (latency, starts_on_key) = match first_keyframe(v, bound).await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{who}: {e}"));
                continue;
            }
        };
        report.push(format!(
            "{who}: first keyframe {latency:?} after connecting"
        ));
        if !starts_on_key {
            failures.push(format!("{who}: first video packet is not a keyframe"));
        }
        if latency > bound {
            failures.push(format!(
                "{who}: first keyframe {latency:?} after connecting (bound {bound:?})"
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
    let requests = publisher.keyframe_requests();
    let metric = plis_metric(&server).await;
    let from_cache = cache_starts(&server).await;
    eprintln!(
        "{codec:?} (cache {cache}): publisher got {requests} keyframe requests, metric says \
         {metric}, {} keyframes sent, {from_cache} viewers started from the keyframe cache",
        publisher.keyframes_sent()
    );
    if !failures.is_empty() {
        failures.push(format!(
            "(publisher got {requests} keyframe requests; hawker_media_keyframe_cache_starts_total = {from_cache})"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        requests + from_cache >= 2,
        "both join waves got a keyframe by request or from the cache ({requests} + {from_cache})"
    );
    publisher.close().await.unwrap();
    for (_, v) in &viewers {
        v.close().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_start_on_a_keyframe_vp8() {
    late_joiners(VideoCodec::Vp8, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_start_on_a_keyframe_vp8_without_cache() {
    late_joiners(VideoCodec::Vp8, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_start_on_a_keyframe_h264() {
    late_joiners(VideoCodec::H264, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_joiners_cost_few_keyframe_requests() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::init_logging();
    let server = start_server(true).await;
    let show = "crowd";
    let token = server.token(show, Role::Publisher, "seller");
    let publisher = Publisher::connect(&server.whip(show), &token, publisher_opts(VideoCodec::Vp8))
        .await
        .expect("publisher connects");
    publisher.start_streaming(30);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let pub_before = publisher.keyframe_requests();
    let metric_before = plis_metric(&server).await;
    let t0 = Instant::now();
    let whep = server.whep(show);
    let joins = (0..CROWD).map(|_| Viewer::connect(&whep, None, ViewerOpts::default()));
    let viewers: Vec<Viewer> = futures_join_all(joins)
        .await
        .into_iter()
        .map(|r| r.expect("viewer connects"))
        .collect();
    let all_in = t0.elapsed();
    let mut failures = Vec::new();
    let mut worst = Duration::ZERO;
    // Wait for all of them at once (bounded: 5 s + 3 s).
    let results = futures_join_all(
        viewers
            .iter()
            .map(|v| first_keyframe(v, Duration::from_secs(5))),
    )
    .await;
    for (i, r) in results.into_iter().enumerate() {
        let (latency, starts_on_key) = match r {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("joiner {i}: {e}"));
                continue;
            }
        };
        worst = worst.max(latency);
        if !starts_on_key {
            failures.push(format!("joiner {i}: first video packet is not a keyframe"));
        }
    }
    let elapsed = t0.elapsed();
    // Let in-flight requests land, then count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pub_requests = publisher.keyframe_requests() - pub_before;
    let metric_requests = plis_metric(&server).await - metric_before;
    let allowed = allowed_requests(elapsed);
    eprintln!(
        "{CROWD} joiners connected within {all_in:?}, all had a keyframe after {elapsed:?} \
         (worst {worst:?} after its connection); publisher got {pub_requests} requests \
         (metric {metric_requests}), allowed {allowed}"
    );
    let from_cache = cache_starts(&server).await;
    eprintln!("{from_cache} joiners started from the keyframe cache");
    assert!(
        failures.is_empty(),
        "{} of {CROWD} joiners failed (publisher got {pub_requests} keyframe requests, \
         hawker_media_keyframe_cache_starts_total = {from_cache}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        pub_requests + from_cache >= 1,
        "the joiners asked for a keyframe at all"
    );
    assert!(
        pub_requests <= allowed,
        "{pub_requests} keyframe requests reached the publisher in {elapsed:?} (at most {allowed})"
    );
    assert_eq!(
        metric_requests, pub_requests,
        "hawker_media_publisher_plis_total moved by {metric_requests}, the publisher saw {pub_requests}"
    );
    assert!(
        worst <= Duration::from_secs(2),
        "slowest joiner waited {worst:?}"
    );
    publisher.close().await.unwrap();
    for v in &viewers {
        v.close().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_plis_are_coalesced() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::init_logging();
    let server = start_server(true).await;
    let show = "plistorm";
    let token = server.token(show, Role::Publisher, "seller");
    let mut viewers = Vec::new();
    for _ in 0..CROWD {
        viewers.push(
            Viewer::connect(&server.whep(show), None, ViewerOpts::default())
                .await
                .expect("viewer connects"),
        );
    }
    let publisher = Publisher::connect(&server.whip(show), &token, publisher_opts(VideoCodec::Vp8))
        .await
        .expect("publisher connects");
    publisher.start_streaming(30);
    for (i, v) in viewers.iter().enumerate() {
        v.wait_for(|l| l.video.len() >= 30, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("viewer {i} receives: {e}"));
    }
    // Quiet period: no requests pending.
    tokio::time::sleep(INTERVAL * 2).await;
    let pub_before = publisher.keyframe_requests();
    let metric_before = plis_metric(&server).await;
    let from_viewers_before = server
        .metric("hawker_media_viewer_keyframe_requests_total", "")
        .await as u64;
    let keys_before: Vec<usize> = viewers
        .iter()
        .map(|v| {
            v.packets(MediaKind::Video)
                .iter()
                .filter(|p| p.keyframe)
                .count()
        })
        .collect();

    // Every viewer sends a PLI every 50 ms for 1.5 s.
    let storm = Duration::from_millis(1500);
    let t0 = Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < storm {
        for v in &viewers {
            v.request_keyframe().await.expect("PLI written");
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pub_requests = publisher.keyframe_requests() - pub_before;
    let metric_requests = plis_metric(&server).await - metric_before;
    let from_viewers = server
        .metric("hawker_media_viewer_keyframe_requests_total", "")
        .await as u64
        - from_viewers_before;
    let allowed = allowed_requests(elapsed);
    eprintln!(
        "{sent} viewer PLIs in {elapsed:?}; server counted {from_viewers}; publisher got \
         {pub_requests} (metric {metric_requests}), allowed {allowed}"
    );
    assert!(
        from_viewers as f64 >= sent as f64 * 0.9,
        "server saw {from_viewers} of {sent} viewer PLIs"
    );
    assert!(
        pub_requests >= 1,
        "viewer PLIs reached the publisher at all"
    );
    assert!(
        pub_requests <= allowed,
        "{pub_requests} keyframe requests reached the publisher in {elapsed:?} (at most {allowed})"
    );
    assert_eq!(metric_requests, pub_requests, "metric vs publisher count");
    // Every viewer got at least one new keyframe out of it.
    for (i, v) in viewers.iter().enumerate() {
        v.wait_for(
            |l| l.video.iter().filter(|p| p.keyframe).count() > keys_before[i],
            Duration::from_secs(2),
        )
        .await
        .unwrap_or_else(|e| panic!("viewer {i} got no new keyframe after its PLIs: {e}"));
    }
    publisher.close().await.unwrap();
    for v in &viewers {
        v.close().await.unwrap();
    }
    server.stop().await;
}

/// `futures::future::join_all` without the dependency: spawn-free, polls all in one task.
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(out.iter_mut().map(|o| o.take().unwrap()).collect())
        }
    })
    .await
}
