//! A replay request whose client goes away before it is answered leaves nothing behind.
//!
//! `POST /whep/{show}?replay=true` awaits twice before it answers: reading the recording (a
//! blocking task) and the shard's answer to the offer. A client that disconnects meanwhile
//! makes the server drop the handler at that `await`. The handler is driven here by hand
//! (polled with a no-op waker, as the HTTP server would poll it) and dropped at each point:
//!
//! * `cancelled_while_reading_the_recording`: dropped while the session is registered and the
//!   recording is being read;
//! * `cancelled_while_the_shard_answers`: dropped once the replay is prepared and the offer is
//!   on its way to the shard.
//!
//! After each: no viewer session (its caps are free again: a capped show takes a new viewer),
//! no replay state, `hawker_replay_viewers` 0, and no peer left on the shard.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use hawker::app::App;
use hawker::codec::Codec;
use hawker::engine::forwarder::Track;
use hawker::engine::Role;
use hawker::http::media::{session_delete, whep_post, WhepQuery};
use hawker::recording::file;
use support::server::TestServer;

const SHOW: &str = "rec-cancel";

/// 3 s of VP8 at 30 fps, a keyframe a second, 40 kB frames (so reading takes a moment).
fn write_recording(app: &App) {
    let dir = app.recordings.show_dir(SHOW);
    let mut f = file::Files::open(&dir).unwrap();
    let mut buf = Vec::new();
    for n in 0..90u64 {
        let key = n.is_multiple_of(30);
        for part in 0..40u64 {
            buf.clear();
            let mut payload = vec![if part == 0 { 0x10 } else { 0 }];
            payload.extend_from_slice(if key && part == 0 {
                &[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01][..]
            } else {
                &[0x01][..]
            });
            payload.resize(1000, 0);
            file::encode(
                &mut buf,
                Track::Video,
                Codec::Vp8,
                (part == 39, key && part == 0),
                0,
                1000 + n * 40 + part,
                (n * 3000) as u32,
                1_000_000 + n * 33_333,
                &payload,
            );
            f.write_media(&buf).unwrap();
        }
    }
    f.sync().unwrap();
}

fn offer() -> String {
    let addr = "127.0.0.1:40000".parse().unwrap();
    let mut rtc = hawker::sim::client::rtc(Instant::now(), addr, hawker::sim::client::Offer::Any);
    let (offer, _pending, _mids) = hawker::sim::client::viewer_offer(&mut rtc);
    offer.to_sdp_string()
}

/// Poll a replay request until `stage` holds, then drop it.
///
/// The request is polled by hand, but the shard answers on its own thread: if this thread is
/// descheduled between the offer going out and the first look at the answer, the request can
/// complete within the very poll that reached the stage. That run cancelled nothing, so its
/// session is deleted and the request tried again; the test needs one request actually
/// dropped at the stage, and fails if none ever is.
async fn cancel_at(server: &TestServer, app: &Arc<App>, stage: impl Fn(&App) -> bool) {
    for _ in 0..20 {
        match cancel_once(app, &stage).await {
            None => return,
            Some(session) => {
                let r = session_delete(
                    State(app.clone()),
                    Path((SHOW.to_string(), session.clone())),
                )
                .await;
                assert!(
                    r.is_ok(),
                    "deleting the answered session {session:?}: {r:?}"
                );
                nothing_left(server, app).await;
            }
        }
    }
    panic!("in 20 tries the request always ended before it could be dropped at the stage");
}

/// One try: `None` once the request was dropped at `stage`, or the session id of a request
/// that was answered (201) before the stage was seen.
async fn cancel_once(app: &Arc<App>, stage: &impl Fn(&App) -> bool) -> Option<String> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/sdp"));
    let query = WhepQuery {
        replay: true,
        ..WhepQuery::default()
    };
    let mut fut = Box::pin(whep_post(
        State(app.clone()),
        Path(SHOW.to_string()),
        Query(query),
        None,
        headers,
        Bytes::from(offer()),
    ));
    let mut cx = Context::from_waker(Waker::noop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            let resp = match r {
                Ok(resp) if resp.status().as_u16() == 201 => resp,
                other => panic!(
                    "the request ended before the stage was reached: {:?}",
                    other.map(|r| r.status())
                ),
            };
            let location = resp.headers()["location"].to_str().unwrap().to_string();
            let session = location.rsplit('/').next().unwrap().to_string();
            return Some(session);
        }
        if stage(app) {
            break;
        }
        assert!(Instant::now() < deadline, "the stage was never reached");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    drop(fut);
    None
}

async fn nothing_left(server: &TestServer, app: &App) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let sessions = app.registry.session_count(Role::Viewer);
        let replays = app.replays.len();
        let gauge = server.metric("hawker_replay_viewers", "").await;
        let peers = server.metric("hawker_peers", "viewer").await;
        if sessions == 0 && replays == 0 && gauge == 0.0 && peers == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {sessions} viewer sessions, {replays} replays, gauge {gauge}, \
             {peers} peers on shards"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn server() -> TestServer {
    let server = TestServer::start(2, |c| {
        c.http.max_viewers_per_show = 1;
    })
    .await;
    server.create_show(SHOW).await;
    write_recording(&server.running.as_ref().unwrap().app);
    server
}

/// The show's one viewer slot is free: a viewer that never connects can take it.
async fn slot_is_free(server: &TestServer) {
    let app = server.running.as_ref().unwrap().app.clone();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/sdp"));
    let r = whep_post(
        State(app),
        Path(SHOW.to_string()),
        Query(WhepQuery::default()),
        None,
        headers,
        Bytes::from(offer()),
    )
    .await;
    assert_eq!(
        r.map(|r| r.status().as_u16()).unwrap_or(0),
        201,
        "the cancelled request still holds the show's viewer slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_while_reading_the_recording() {
    let server = server().await;
    let app = server.running.as_ref().unwrap().app.clone();
    cancel_at(&server, &app, |a| {
        a.registry.session_count(Role::Viewer) == 1 && a.replays.is_empty()
    })
    .await;
    nothing_left(&server, &app).await;
    slot_is_free(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_while_the_shard_answers() {
    let server = server().await;
    let app = server.running.as_ref().unwrap().app.clone();
    cancel_at(&server, &app, |a| a.replays.len() == 1).await;
    nothing_left(&server, &app).await;
    slot_is_free(&server).await;
    server.stop().await;
}
