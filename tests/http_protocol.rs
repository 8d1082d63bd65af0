//! Signalling rules a platform relies on, over real HTTP on loopback: who may create a show,
//! what the answers say, and that the public listener survives idle connections.
//!
//! Offers come from str0m client peers (`hawker::sim::client`), so no media flows: these are
//! HTTP-level checks, each bounded in time.

mod support;

use std::time::Instant;

use hawker::auth::Role;
use str0m::media::{Direction, MediaKind};
use support::server::{get_raw, post_raw, TestServer};

const SDP: &str = "application/sdp";

/// A client offer with video and audio in `dir`, and the events channel.
fn offer(dir: Direction) -> String {
    let local = "127.0.0.1:9".parse().unwrap();
    let mut rtc = hawker::sim::client::rtc(Instant::now(), local, hawker::sim::client::Offer::Any);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, dir, None, None, None);
    api.add_media(MediaKind::Audio, dir, None, None, None);
    api.add_channel("events".into());
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

/// `GET /api/v1/shows/{show}` with an admin token: the status code.
async fn api_show_status(server: &TestServer, show: &str) -> u16 {
    let admin = server.token("*", Role::Admin, "ops");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client
        .get(format!("{}/api/v1/shows/{show}", server.base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_authenticated_whip_creates_a_show() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| cfg.shows.seed_demo = false).await;
    let view = offer(Direction::RecvOnly);

    // Anonymous viewers (allowed by default) cannot bring a show into existence.
    for i in 0..3 {
        let show = format!("ghost-{i}");
        let r = post_raw(&server.whep(&show), Some(SDP), None, view.clone()).await;
        assert_eq!(r.status, 404, "anonymous WHEP to {show}: {}", r.body);
        assert_eq!(api_show_status(&server, &show).await, 404, "{show} created");
    }
    // Nor can a viewer with a valid token for that show id.
    let tok = server.token("ghost-t", Role::Viewer, "alice");
    let r = post_raw(&server.whep("ghost-t"), Some(SDP), Some(&tok), view.clone()).await;
    assert_eq!(r.status, 404, "viewer-token WHEP: {}", r.body);
    assert_eq!(api_show_status(&server, "ghost-t").await, 404);
    assert!(
        server.app().registry.shows().is_empty(),
        "no media-plane entry"
    );

    // A show created through the API (or the store) is watchable before its seller arrives.
    server.create_show("scheduled").await;
    let r = post_raw(&server.whep("scheduled"), Some(SDP), None, view.clone()).await;
    assert_eq!(r.status, 201, "WHEP to an existing show: {}", r.body);

    // An authenticated WHIP creates the show (shows.create_on_first_use = true), durably.
    let tok = server.token("fresh", Role::Publisher, "seller");
    let r = post_raw(
        &server.whip("fresh"),
        Some(SDP),
        Some(&tok),
        offer(Direction::SendOnly),
    )
    .await;
    assert_eq!(r.status, 201, "WHIP: {}", r.body);
    assert_eq!(api_show_status(&server, "fresh").await, 200);
    // Then viewers may join it.
    let r = post_raw(&server.whep("fresh"), Some(SDP), None, view.clone()).await;
    assert_eq!(r.status, 201, "WHEP after WHIP: {}", r.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_does_not_create_shows_when_configured_off() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| {
        cfg.shows.seed_demo = false;
        cfg.shows.create_on_first_use = false;
    })
    .await;
    let tok = server.token("nope", Role::Publisher, "seller");
    let r = post_raw(
        &server.whip("nope"),
        Some(SDP),
        Some(&tok),
        offer(Direction::SendOnly),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(api_show_status(&server, "nope").await, 404);
    let r = get_raw(&format!("{}/healthz", server.base)).await;
    assert_eq!(r.status, 200);
    server.stop().await;
}
