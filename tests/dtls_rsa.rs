//! DTLS with RSA-certificate peers, in process: a webrtc-rs publisher presenting an RSA-2048
//! certificate (as GStreamer's webrtcbin does) publishes H.264 + Opus; an RSA viewer and an
//! ECDSA viewer both receive its frames; DELETE ends every session. And a peer offering only
//! cipher suites hawker does not have is dropped at once, counted in
//! `hawker_dtls_failures_total{reason="cipher"}`, instead of waiting for the connect timeout.

mod support;

use std::time::{Duration, Instant};

use hawker::auth::Role;
use rtc::dtls::cipher_suite::CipherSuiteId;
use support::server::TestServer;
use support::{MediaKind, Publisher, PublisherOpts, Viewer, ViewerOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_publisher_reaches_rsa_and_ecdsa_viewers() {
    support::init_logging();
    let server = TestServer::start(2, |_| {}).await;
    let show = "rsa";
    server.create_show(show).await;
    let token = server.token(show, Role::Publisher, "seller");

    let publisher = Publisher::connect(
        &server.whip(show),
        &token,
        PublisherOpts {
            rsa_certificate: true,
            ..PublisherOpts::h264()
        },
    )
    .await
    .expect("an RSA-certificate publisher completes DTLS");
    publisher.start_streaming(30);

    let mut viewers = Vec::new();
    for rsa in [true, false] {
        let v = Viewer::connect(
            &server.whep(show),
            None,
            ViewerOpts {
                rsa_certificate: rsa,
                ..ViewerOpts::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("viewer (rsa={rsa}) connects: {e:#}"));
        viewers.push((rsa, v));
    }
    for (rsa, v) in &viewers {
        v.wait_for(
            |log| log.first_keyframe().is_some() && log.video.len() >= 20 && !log.audio.is_empty(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("viewer (rsa={rsa}) receives a keyframe and frames: {e:#}"));
        let sent = publisher.sent(MediaKind::Video);
        let got = v.packets(MediaKind::Video);
        assert!(
            got.iter()
                .all(|p| sent.iter().any(|s| s.payload == p.payload)),
            "viewer (rsa={rsa}) got only payloads the publisher sent"
        );
    }
    assert_eq!(server.metric("hawker_dtls_failures_total", "").await, 0.0);

    for (rsa, v) in &viewers {
        assert_eq!(v.close().await.unwrap(), 200, "viewer (rsa={rsa}) DELETE");
    }
    assert_eq!(publisher.close().await.unwrap(), 200, "publisher DELETE");
    let (left, ok) = server
        .wait_metric("hawker_peers", "", Duration::from_secs(5), |n| n == 0.0)
        .await;
    assert!(ok, "every peer gone after DELETE, {left} left");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_without_a_usable_cipher_suite_is_dropped_and_counted() {
    support::init_logging();
    // A connect timeout far beyond the test's bound: only the DTLS failure can end the peer.
    let server = TestServer::start(1, |c| c.media.connect_timeout = Duration::from_secs(60)).await;
    let show = "rsa-suites";
    server.create_show(show).await;
    let token = server.token(show, Role::Publisher, "seller");

    let started = Instant::now();
    let publisher = Publisher::connect(
        &server.whip(show),
        &token,
        PublisherOpts {
            rsa_certificate: true,
            // ECDHE_RSA only: no suite in common with hawker's ECDHE_ECDSA set.
            dtls_cipher_suites: vec![CipherSuiteId::Tls_Ecdhe_Rsa_With_Aes_128_Gcm_Sha256],
            wait_connected: false,
            ..PublisherOpts::h264()
        },
    )
    .await
    .expect("the HTTP exchange succeeds");

    let (n, ok) = server
        .wait_metric(
            "hawker_dtls_failures_total",
            "reason=\"cipher\"",
            Duration::from_secs(10),
            |n| n >= 1.0,
        )
        .await;
    assert!(ok, "a cipher failure is counted, got {n}");
    let (left, ok) = server
        .wait_metric(
            "hawker_peers",
            "role=\"publisher\"",
            Duration::from_secs(5),
            |n| n == 0.0,
        )
        .await;
    assert!(ok, "the peer is dropped, {left} left");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "dropped on the failure, not on the connect timeout ({:?})",
        started.elapsed()
    );
    assert_eq!(
        server
            .metric("hawker_dtls_failures_total", "reason=\"certificate\"")
            .await,
        0.0
    );
    drop(publisher);
    server.stop().await;
}
