//! Signalling rules a platform relies on, over real HTTP on loopback: who may create a show,
//! what the answers say, and that the public listener survives idle connections.
//!
//! Offers come from str0m client peers (`hawker::sim::client`), so no media flows: these are
//! HTTP-level checks, each bounded in time.

mod support;

use std::time::{Duration, Instant};

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

/// Reads until the server closes `s` (EOF or reset), at most `within`; whether it did.
async fn closed_by_server(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. a 408 before the close
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_connections_are_closed_and_service_continues() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| {
        cfg.http.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = server.running.as_ref().unwrap().http_addr;
    // 200 sockets that connect and send nothing, and one that trickles a request head.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let trickler = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = trickle.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"X").await.is_err() {
                break;
            }
        }
        closed_by_server(&mut trickle, Duration::from_secs(5)).await
    });
    // Others are served while they are open.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("healthz answers while 200 idle sockets are open");
    assert_eq!(r.status().as_u16(), 200);
    let r = post_raw(
        &server.whep("demo"),
        Some(SDP),
        None,
        offer(Direction::RecvOnly),
    )
    .await;
    assert_eq!(
        r.status, 201,
        "WHEP while idle sockets are open: {}",
        r.body
    );
    // The server closes every idle socket (header_read_timeout), and the trickler.
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(10)).await,
            "idle socket {i} still open"
        );
    }
    assert!(trickler.await.unwrap(), "trickling socket still open");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| {
        cfg.http.max_connections = 20;
        cfg.http.header_read_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = server.running.as_ref().unwrap().http_addr;
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Closed well before the 2 s header timeout: refused at the cap.
    let mut early = 0;
    for s in held.iter_mut() {
        if closed_by_server(s, Duration::from_millis(300)).await {
            early += 1;
        }
    }
    assert!(early >= 40, "only {early} of 60 closed at the cap of 20");
    let refused = server
        .metric("hawker_http_connections_refused_total", "")
        .await;
    assert!(refused >= 40.0, "refused counter {refused}");
    drop(held);
    // Once they are gone, service resumes.
    let (v, ok) = server
        .wait_metric(
            "hawker_http_connections",
            "",
            Duration::from_secs(10),
            |v| v == 0.0,
        )
        .await;
    assert!(ok, "{v} connections still open");
    let r = get_raw(&format!("{}/healthz", server.base)).await;
    assert_eq!(r.status, 200);
    // Operators can tell which build runs and how deep the webhook outbox is.
    let text = server.metrics_text().await;
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        support::server::sum_metric(&text, "hawker_build_info", &[&version]),
        1.0,
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("hawker_webhook_outbox_pending ")),
        "no outbox gauge"
    );
    // Process metrics from /proc: this process has some CPU time, memory and open sockets.
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        let v = support::server::sum_metric(&text, name, &[]);
        assert!(v > 0.0, "{name} = {v}");
    }
    let open = support::server::sum_metric(&text, "process_open_fds", &[]);
    let max = support::server::sum_metric(&text, "process_max_fds", &[]);
    assert!(open < max, "open fds {open} < limit {max}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_and_405_say_what_is_allowed() {
    support::init_logging();
    let server = TestServer::start(1, |_| {}).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for kind in ["whip", "whep"] {
        let url = format!("{}/{kind}/demo", server.base);
        let r = client
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "OPTIONS {kind}: {}", r.status());
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(h("accept-post"), "application/sdp", "OPTIONS {kind}");
        assert!(
            h("allow").contains("POST"),
            "OPTIONS {kind} Allow: {:?}",
            h("allow")
        );
        // A method the endpoint does not take: 405 with Allow.
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405, "GET {kind}");
        let allow = r
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(allow.contains("POST"), "GET {kind}: Allow {allow:?}");
        let r = client.put(format!("{url}/deadbeef")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405, "PUT {kind} session");
        assert!(
            r.headers().get("allow").is_some(),
            "PUT {kind} session: no Allow"
        );
    }
    server.stop().await;
}

/// An offer built by a str0m client with `codecs` for video and `media` lines in `dir`.
fn offer_with(
    video_codecs: impl FnOnce(str0m::RtcConfig) -> str0m::RtcConfig,
    media: &[(MediaKind, Direction)],
) -> String {
    let now = Instant::now();
    let b = str0m::Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false);
    let mut rtc = video_codecs(b).build(now);
    let cand = str0m::Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap();
    rtc.add_local_candidate(cand);
    let mut api = rtc.sdp_api();
    for (kind, dir) in media {
        api.add_media(*kind, *dir, None, None, None);
    }
    api.add_channel("events".into());
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

/// Directions of the answer's audio and video m-lines.
fn media_directions(answer: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut in_media = false;
    for l in answer.lines() {
        if l.starts_with("m=") {
            in_media = l.starts_with("m=video") || l.starts_with("m=audio");
        } else if in_media && matches!(l, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive")
        {
            dirs.push(l[2..].to_string());
        }
    }
    dirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_one_way_even_to_sendrecv_offers() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| cfg.shows.seed_demo = false).await;
    let tok = server.token("oneway", Role::Publisher, "seller");
    let r = post_raw(
        &server.whip("oneway"),
        Some(SDP),
        Some(&tok),
        offer(Direction::SendRecv),
    )
    .await;
    assert_eq!(r.status, 201, "WHIP sendrecv: {}", r.body);
    assert_eq!(
        media_directions(&r.body),
        ["recvonly", "recvonly"],
        "WHIP answer"
    );
    let r = post_raw(
        &server.whep("oneway"),
        Some(SDP),
        None,
        offer(Direction::SendRecv),
    )
    .await;
    assert_eq!(r.status, 201, "WHEP sendrecv: {}", r.body);
    assert_eq!(
        media_directions(&r.body),
        ["sendonly", "sendonly"],
        "WHEP answer"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_video_and_extra_tracks_are_refused() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| cfg.shows.seed_demo = false).await;
    server.create_show("picky").await;
    let tok = server.token("picky", Role::Publisher, "seller");
    let av = [
        (MediaKind::Video, Direction::SendOnly),
        (MediaKind::Audio, Direction::SendOnly),
    ];

    // VP9 (or AV1/HEVC from OBS) with good Opus: refused with a reason, not taken audio-only.
    let vp9 = offer_with(|b| b.enable_vp9(true), &av);
    let r = post_raw(&server.whip("picky"), Some(SDP), Some(&tok), vp9).await;
    assert_eq!(r.status, 422, "VP9-only WHIP: {}", r.body);
    assert!(r.body.contains("video"), "reason: {}", r.body);
    assert!(
        server.app().registry.shows()[0].publisher.lock().is_none(),
        "a refused publisher keeps no slot"
    );

    // Two video tracks: refused, not merged into one.
    let two = offer_with(
        |b| b.enable_h264(true),
        &[
            (MediaKind::Video, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
            (MediaKind::Audio, Direction::SendOnly),
        ],
    );
    let r = post_raw(&server.whip("picky"), Some(SDP), Some(&tok), two).await;
    assert_eq!(r.status, 422, "two-video WHIP: {}", r.body);
    assert!(r.body.contains("at most one video"), "reason: {}", r.body);
    let two_audio = offer_with(
        |b| b.enable_h264(true),
        &[
            (MediaKind::Video, Direction::RecvOnly),
            (MediaKind::Audio, Direction::RecvOnly),
            (MediaKind::Audio, Direction::RecvOnly),
        ],
    );
    let r = post_raw(&server.whep("picky"), Some(SDP), None, two_audio).await;
    assert_eq!(r.status, 422, "two-audio WHEP: {}", r.body);

    // The same publisher with H.264 is taken.
    let h264 = offer_with(|b| b.enable_h264(true), &av);
    let r = post_raw(&server.whip("picky"), Some(SDP), Some(&tok), h264).await;
    assert_eq!(r.status, 201, "H.264 WHIP: {}", r.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_methods_answer_405_and_cors_lists_only_working_ones() {
    support::init_logging();
    let server = TestServer::start(1, |_| {}).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let allow = |r: &reqwest::Response| {
        r.headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    for kind in ["whip", "whep"] {
        let url = format!("{}/{kind}/demo", server.base);
        // RFC 9725 §4.2: GET, HEAD and PUT on the endpoint are 405.
        for m in [
            reqwest::Method::GET,
            reqwest::Method::HEAD,
            reqwest::Method::PUT,
        ] {
            let r = client.request(m.clone(), &url).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 405, "{m} {kind} endpoint");
            assert_eq!(allow(&r), "OPTIONS, POST", "{m} {kind} endpoint");
        }
        // And GET, HEAD, POST, PUT, PATCH on a session URL.
        let session = format!("{url}/deadbeef");
        for m in [
            reqwest::Method::GET,
            reqwest::Method::HEAD,
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::PATCH,
        ] {
            let r = client.request(m.clone(), &session).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 405, "{m} {kind} session");
            assert_eq!(allow(&r), "DELETE, OPTIONS", "{m} {kind} session");
        }
        // A browser preflight is not offered PATCH, which always fails.
        let r = client
            .request(reqwest::Method::OPTIONS, &session)
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "DELETE")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "preflight: {}", r.status());
        let methods = r
            .headers()
            .get("access-control-allow-methods")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(methods.contains("DELETE"), "preflight: {methods:?}");
        assert!(!methods.contains("PATCH"), "preflight: {methods:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_honours_public_url() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| {
        cfg.shows.seed_demo = false;
        cfg.http.public_url = Some("https://live.example.com/sfu/".into());
    })
    .await;
    let tok = server.token("proxied", Role::Publisher, "seller");
    let r = post_raw(
        &server.whip("proxied"),
        Some(SDP),
        Some(&tok),
        offer(Direction::SendOnly),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let loc = r.headers["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with("https://live.example.com/sfu/whip/proxied/"),
        "Location {loc:?}"
    );
    // The session it names is the one DELETE ends (the proxy strips the prefix).
    let path = loc.trim_start_matches("https://live.example.com/sfu");
    let r = support::server::delete_raw(&format!("{}{path}", server.base)).await;
    assert_eq!(r.status, 200, "DELETE {path}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_publisher_replaces_its_lost_session() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| cfg.shows.seed_demo = false).await;
    server.create_show("obs").await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin = server.token("obs", Role::Admin, "platform");
    let mint = |body: serde_json::Value, tok: String| {
        let client = client.clone();
        let url = format!("{}/api/v1/shows/obs/tokens", server.base);
        async move {
            let r = client
                .post(url)
                .bearer_auth(tok)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    // A day-long publisher token from the REST API (what OBS keeps in its settings).
    let (status, body) = mint(
        serde_json::json!({"role": "publisher", "sub": "seller-1", "ttl_secs": 86400}),
        admin.clone(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = body["expires_at"].as_u64().unwrap();
    assert!(exp.abs_diff(now + 86400) < 60, "expires_at {exp}");
    let tok = body["token"].as_str().unwrap().to_string();
    for (bad, why) in [
        (serde_json::json!({"role": "admin", "sub": "x"}), "admin"),
        (
            serde_json::json!({"role": "publisher", "sub": "x", "ttl_secs": 0}),
            "ttl 0",
        ),
        (
            serde_json::json!({"role": "publisher", "sub": "x", "ttl_secs": 100_000_000}),
            "ttl too long",
        ),
        (
            serde_json::json!({"role": "publisher", "sub": ""}),
            "no sub",
        ),
    ] {
        assert_eq!(mint(bad, admin.clone()).await.0, 400, "{why}");
    }
    let other_show = server.token("elsewhere", Role::Admin, "platform");
    let (status, _) = mint(
        serde_json::json!({"role": "publisher", "sub": "x"}),
        other_show,
    )
    .await;
    assert_eq!(status, 403, "admin of another show");

    // First session; its DELETE is "lost".
    let first = post_raw(
        &server.whip("obs"),
        Some(SDP),
        Some(&tok),
        offer(Direction::SendOnly),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let first_loc = first.headers["location"].to_str().unwrap().to_string();
    // Another subject still gets 409.
    let intruder = server.token("obs", Role::Publisher, "seller-2");
    let r = post_raw(
        &server.whip("obs"),
        Some(SDP),
        Some(&intruder),
        offer(Direction::SendOnly),
    )
    .await;
    assert_eq!(r.status, 409, "other subject: {}", r.body);
    // The same subject reconnects: the new session replaces the old one.
    let second = post_raw(
        &server.whip("obs"),
        Some(SDP),
        Some(&tok),
        offer(Direction::SendOnly),
    )
    .await;
    assert_eq!(second.status, 201, "reconnect: {}", second.body);
    let second_loc = second.headers["location"].to_str().unwrap().to_string();
    assert_ne!(first_loc, second_loc);
    let r = support::server::delete_raw(&format!("{}{first_loc}", server.base)).await;
    assert_eq!(r.status, 404, "the replaced session is gone");
    assert_eq!(
        server.metric("hawker_publishers_replaced_total", "").await,
        1.0
    );
    let r = support::server::delete_raw(&format!("{}{second_loc}", server.base)).await;
    assert_eq!(r.status, 200, "the new session is the show's publisher");
    assert!(server.app().registry.shows()[0].publisher.lock().is_none());
    server.stop().await;
}

/// The session id at the end of a `Location`.
fn session_of(r: &support::server::HttpReply) -> String {
    let loc = r.headers["location"].to_str().unwrap();
    loc.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_viewer_ids_are_issued_not_chosen() {
    support::init_logging();
    let server = TestServer::start(1, |cfg| cfg.shows.seed_demo = false).await;
    server.create_show("anon").await;
    let view = offer(Direction::RecvOnly);
    let r = post_raw(&server.whep("anon"), Some(SDP), None, view.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let signed = r.headers["x-hawker-viewer"].to_str().unwrap().to_string();
    let (id, tag) = signed.split_once('.').expect("<id>.<tag>");
    let s = server.app().registry.session(&session_of(&r)).unwrap();
    assert_eq!(s.sub, format!("anon-{id}"));

    // Presented back, it is the same buyer.
    let url = format!("{}?viewer={signed}", server.whep("anon"));
    let r = post_raw(&url, Some(SDP), None, view.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers["x-hawker-viewer"].to_str().unwrap(), signed);
    let s = server.app().registry.session(&session_of(&r)).unwrap();
    assert_eq!(s.sub, format!("anon-{id}"));

    // A chosen id, or someone else's id with a made-up tag, is refused.
    let other_tag = format!("{id}x.{tag}");
    for chosen in [
        "alice",
        "v7",
        other_tag.as_str(),
        &format!("{id}.{}", "0".repeat(32)),
    ] {
        let url = format!("{}?viewer={chosen}", server.whep("anon"));
        let r = post_raw(&url, Some(SDP), None, view.clone()).await;
        assert_eq!(r.status, 403, "?viewer={chosen}: {}", r.body);
    }
    assert_eq!(
        server
            .metric("hawker_anon_viewer_ids_refused_total", "")
            .await,
        4.0
    );
    // A viewer with a token needs no signed id and gets none.
    let tok = server.token("anon", Role::Viewer, "user-9");
    let r = post_raw(&server.whep("anon"), Some(SDP), Some(&tok), view).await;
    assert_eq!(r.status, 201);
    assert!(r.headers.get("x-hawker-viewer").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_caps_answer_429_with_retry_after() {
    support::init_logging();
    // Per address.
    let server = TestServer::start(1, |cfg| {
        cfg.shows.seed_demo = false;
        cfg.http.max_sessions_per_ip = 3;
        cfg.http.retry_after_secs = 7;
    })
    .await;
    server.create_show("capped").await;
    let view = offer(Direction::RecvOnly);
    let mut locs = Vec::new();
    for i in 0..3 {
        let r = post_raw(&server.whep("capped"), Some(SDP), None, view.clone()).await;
        assert_eq!(r.status, 201, "viewer {i}: {}", r.body);
        locs.push(r.headers["location"].to_str().unwrap().to_string());
    }
    let tok = server.token("capped", Role::Publisher, "seller");
    let r = post_raw(
        &server.whip("capped"),
        Some(SDP),
        Some(&tok),
        offer(Direction::SendOnly),
    )
    .await;
    assert_eq!(r.status, 429, "publisher over the address cap: {}", r.body);
    assert!(
        server.app().registry.shows()[0].publisher.lock().is_none(),
        "a capped publisher keeps no slot"
    );
    let r = post_raw(&server.whep("capped"), Some(SDP), None, view.clone()).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.headers["retry-after"].to_str().unwrap(), "7");
    // Ending a session frees its place.
    let r = support::server::delete_raw(&format!("{}{}", server.base, locs[0])).await;
    assert_eq!(r.status, 200);
    let r = post_raw(&server.whep("capped"), Some(SDP), None, view.clone()).await;
    assert_eq!(r.status, 201, "after a DELETE: {}", r.body);
    assert_eq!(
        server
            .metric("hawker_sessions_capped_total", "cap=\"ip\"")
            .await,
        2.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_per_show_cap_answers_429() {
    support::init_logging();
    let view = offer(Direction::RecvOnly);
    let server = TestServer::start(1, |cfg| {
        cfg.shows.seed_demo = false;
        cfg.http.max_viewers_per_show = 2;
    })
    .await;
    server.create_show("full").await;
    server.create_show("other").await;
    for i in 0..2 {
        let r = post_raw(&server.whep("full"), Some(SDP), None, view.clone()).await;
        assert_eq!(r.status, 201, "viewer {i}: {}", r.body);
    }
    let r = post_raw(&server.whep("full"), Some(SDP), None, view.clone()).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.headers.get("retry-after").is_some());
    let r = post_raw(&server.whep("other"), Some(SDP), None, view.clone()).await;
    assert_eq!(r.status, 201, "another show is not affected: {}", r.body);
    // The publisher is not a viewer.
    let tok = server.token("full", Role::Publisher, "seller");
    let r = post_raw(
        &server.whip("full"),
        Some(SDP),
        Some(&tok),
        offer(Direction::SendOnly),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_token_cap_answers_429() {
    support::init_logging();
    let view = offer(Direction::RecvOnly);
    let server = TestServer::start(1, |cfg| {
        cfg.shows.seed_demo = false;
        cfg.http.max_sessions_per_token = 2;
    })
    .await;
    server.create_show("leaky").await;
    let alice = server.token("leaky", Role::Viewer, "alice");
    for i in 0..2 {
        let r = post_raw(&server.whep("leaky"), Some(SDP), Some(&alice), view.clone()).await;
        assert_eq!(r.status, 201, "alice {i}: {}", r.body);
    }
    let r = post_raw(&server.whep("leaky"), Some(SDP), Some(&alice), view.clone()).await;
    assert_eq!(r.status, 429, "a third session under one token: {}", r.body);
    assert!(r.headers.get("retry-after").is_some());
    let bob = server.token("leaky", Role::Viewer, "bob");
    let r = post_raw(&server.whep("leaky"), Some(SDP), Some(&bob), view.clone()).await;
    assert_eq!(r.status, 201, "another subject: {}", r.body);
    // One anonymous id shared by many clients is capped the same way.
    let r = post_raw(&server.whep("leaky"), Some(SDP), None, view.clone()).await;
    let id = r.headers["x-hawker-viewer"].to_str().unwrap().to_string();
    let url = format!("{}?viewer={id}", server.whep("leaky"));
    assert_eq!(
        post_raw(&url, Some(SDP), None, view.clone()).await.status,
        201
    );
    assert_eq!(
        post_raw(&url, Some(SDP), None, view.clone()).await.status,
        429
    );
    assert_eq!(
        server
            .metric("hawker_sessions_capped_total", "cap=\"token\"")
            .await,
        2.0
    );
    server.stop().await;
}
