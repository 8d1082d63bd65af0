//! A panic costs one peer, not a shard; a shard that dies anyway is noticed. Faults are
//! injected through `engine::shard::Fault`, which exists only with the `fault-injection`
//! feature (`cargo test --release --features fault-injection --test engine_faults`).
//!
//! * In virtual time (`hawker::sim`): a viewer whose next operation panics is dropped with its
//!   `Gone` event; the other viewer on the same shard keeps its media, and the shard still
//!   takes and serves a new viewer.
//! * In virtual time, a panic while forwarding a packet to one viewer drops that viewer only:
//!   on the publisher's shard (inside the publisher's datagram) the publisher stays, on another
//!   shard (a packet handed over from the home shard) the shard stays.
//! * In virtual time, a peer that panics in its very first poll, while its offer is answered,
//!   gets an error instead of an answer (HTTP 500): no session is announced that does not exist.
//! * Against the real server: a shard whose thread dies makes `/healthz` answer 503 and counts
//!   in `hawker_shards_dead`; new viewers all land on the live shard, and a publisher whose
//!   show lives on the dead shard gets a 503 that says so.
//! * Against the real server: the sessions of a dead shard end (`hawker_sessions_lost_total`):
//!   their per-address caps are released, the viewer counts and peer gauges drop, and the
//!   publisher slot of a show homed there is free (503 for the dead shard, not 409).

mod support;

use std::time::Duration;

use hawker::auth::Role;
use hawker::engine::shard::Fault;
use hawker::engine::{Error, Event, Msg};
use hawker::sim::{Config, Link, Publish, Sim};
use support::server::{get_raw, TestServer};
use support::{Publisher, PublisherOpts, Viewer, ViewerOpts};

const DELAY: Duration = Duration::from_millis(10);

#[test]
fn a_panic_in_a_peer_operation_drops_only_that_peer() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 31,
        ..Config::default()
    });
    let _p = sim
        .publish("f", Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    let doomed = sim.view("f", Some(0), Link::with_delay(DELAY)).unwrap();
    let fine = sim.view("f", Some(0), Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(sim.peer(doomed).received.len() > 20 && sim.peer(fine).received.len() > 20);

    let id = sim.peer(doomed).id;
    sim.send(0, Msg::Inject(Fault::Peer(id)));
    sim.run_for(Duration::from_millis(200));
    assert!(
        sim.gone_event(doomed).is_some(),
        "the panicking peer was not reported gone"
    );
    let gone = sim
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Gone { peer, .. } if *peer == id))
        .count();
    assert_eq!(gone, 1, "exactly one Gone event for the dropped peer");
    assert_eq!(sim.shard_metrics(0).panics.get(), 1);
    assert!(sim.core(0).connected_peers().all(|(p, _)| p != id));

    // The shard goes on: the other viewer keeps receiving, a new one is served.
    let before = sim.peer(fine).received.len();
    let late = sim.view("f", Some(0), Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.peer(fine).received.len() > before + 50,
        "the other viewer on the shard stalled"
    );
    assert!(sim.peer(late).first_video().is_some_and(|r| r.keyframe));
    assert!(sim.gone_event(fine).is_none() && sim.gone_event(late).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shard_fails_healthz_and_gets_no_viewers() {
    support::init_logging();
    let server = TestServer::start(2, |_| {}).await;
    let app = server.app().clone();
    // A show at home on shard 0, and one at home on shard 1 (the one that dies).
    let name = |home: usize| {
        (0..)
            .map(|i| format!("show-{i}"))
            .find(|s| server.home_shard(s) == home)
            .unwrap()
    };
    let (alive_show, dead_show) = (name(0), name(1));
    server.create_show(&alive_show).await;
    server.create_show(&dead_show).await;
    assert_eq!(
        get_raw(&format!("{}/healthz", server.base)).await.status,
        200
    );

    app.engine.inject(1, Fault::Shard);
    support::wait_until("shard 1 to be seen dead", Duration::from_secs(5), || {
        app.engine.dead_shards() == vec![1]
    })
    .await
    .unwrap();
    for base in [&server.base, &server.metrics] {
        let r = get_raw(&format!("{base}/healthz")).await;
        assert_eq!(r.status, 503, "{base}/healthz: {}", r.body);
        assert!(r.body.contains("[1]"), "{}", r.body);
    }
    assert_eq!(server.metric("hawker_shards_dead", "").await, 1.0);

    // The least loaded shard is the dead one (0 peers), yet every viewer lands on shard 0.
    let before = app.engine.shards()[0]
        .peers
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut viewers = Vec::new();
    for i in 0..4 {
        viewers.push(
            Viewer::connect(&server.whep(&alive_show), None, ViewerOpts::default())
                .await
                .unwrap_or_else(|e| panic!("viewer {i} was not served: {e}")),
        );
    }
    let after = app.engine.shards()[0]
        .peers
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after, before + 4);

    let token = server.token(&dead_show, Role::Publisher, "seller");
    let err = Publisher::connect(&server.whip(&dead_show), &token, PublisherOpts::default())
        .await
        .err()
        .expect("a publisher on the dead shard must be refused");
    let err = format!("{err:#}");
    assert!(err.contains("503") && err.contains("shard 1"), "{err}");
}

#[test]
fn a_panic_forwarding_to_one_viewer_drops_only_that_viewer() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 32,
        ..Config::default()
    });
    let publisher = sim
        .publish("g", Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    let home = sim.home_of("g");
    let other = 1 - home;
    let mut view = |shard| sim.view("g", Some(shard), Link::with_delay(DELAY)).unwrap();
    let (near, near_ok, far, far_ok) = (view(home), view(home), view(other), view(other));
    sim.run_for(Duration::from_secs(1));
    for v in [near, near_ok, far, far_ok] {
        assert!(sim.peer(v).received.len() > 20, "viewer {v} is receiving");
    }

    // Home shard: the panic is inside the fan-out of the publisher's own datagram.
    let id = sim.peer(near).id;
    sim.send(home, Msg::Inject(Fault::Forward(id)));
    // Other shard: inside the fan-out of a packet handed over from the home shard.
    let id = sim.peer(far).id;
    sim.send(other, Msg::Inject(Fault::Forward(id)));
    sim.run_for(Duration::from_millis(200));

    assert!(sim.gone_event(near).is_some() && sim.gone_event(far).is_some());
    assert!(
        sim.gone_event(publisher).is_none(),
        "a viewer's panic dropped the publisher"
    );
    assert!(sim.gone_event(near_ok).is_none() && sim.gone_event(far_ok).is_none());
    assert_eq!(sim.shard_metrics(home).panics.get(), 1);
    assert_eq!(sim.shard_metrics(other).panics.get(), 1);
    assert_eq!(sim.server_peers(), 3);

    let before = [near_ok, far_ok].map(|v| sim.peer(v).received.len());
    sim.run_for(Duration::from_secs(1));
    for (v, n) in [near_ok, far_ok].into_iter().zip(before) {
        assert!(
            sim.peer(v).received.len() > n + 50,
            "viewer {v} stalled after another viewer's panic"
        );
    }
}

#[test]
fn a_peer_dropped_while_its_offer_is_answered_gets_an_error() {
    let mut sim = Sim::new(Config {
        shards: 1,
        seed: 33,
        ..Config::default()
    });
    let _p = sim
        .publish("h", Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    sim.run_for(Duration::from_millis(500));
    // The harness numbers peers 1, 2, ...: the publisher is 1, the next viewer is 2. Its first
    // poll (right after the offer is accepted) panics.
    sim.send(0, Msg::Inject(Fault::Peer(2)));
    let refused = sim.view("h", Some(0), Link::with_delay(DELAY));
    assert!(
        matches!(refused, Err(Error::Failed)),
        "a peer dropped before its answer went out was answered: {:?}",
        refused.map(|_| ())
    );
    assert_eq!(sim.shard_metrics(0).panics.get(), 1);
    assert_eq!(sim.server_peers(), 1, "only the publisher is left");
    assert!(
        (sim.events.iter()).any(|(_, e)| matches!(e, Event::Gone { peer: 2, .. })),
        "the dropped peer was reported gone"
    );
    // The shard serves the next viewer.
    let v = sim.view("h", Some(0), Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(sim.peer(v).first_video().is_some_and(|r| r.keyframe));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shard_ends_its_sessions_and_frees_what_they_held() {
    support::init_logging();
    let server = TestServer::start(2, |cfg| cfg.http.max_sessions_per_ip = 4).await;
    let app = server.app().clone();
    let name = |home: usize| {
        (0..)
            .map(|i| format!("lost-{i}"))
            .find(|s| server.home_shard(s) == home)
            .unwrap()
    };
    let (alive_show, dead_show) = (name(0), name(1));
    server.create_show(&alive_show).await;
    server.create_show(&dead_show).await;
    let token = server.token(&dead_show, Role::Publisher, "seller");
    let publisher = Publisher::connect(&server.whip(&dead_show), &token, PublisherOpts::default())
        .await
        .unwrap();
    publisher
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    // Least loaded first: shard 0, shard 0 (tie), then shard 1 beside the publisher.
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let v = Viewer::connect(&server.whep(&dead_show), None, ViewerOpts::default())
            .await
            .unwrap();
        v.wait_connected(Duration::from_secs(10)).await.unwrap();
        viewers.push(v);
    }
    let show = app.registry.show(&dead_show).unwrap();
    support::wait_until("3 viewers counted", Duration::from_secs(5), || {
        show.viewers.load(std::sync::atomic::Ordering::Relaxed) == 3
    })
    .await
    .unwrap();
    let on_dead = app.registry.peers_on_shard(1).len();
    assert_eq!(on_dead, 2, "the publisher and one viewer on shard 1");
    // The address cap (4) is reached.
    let capped = Viewer::connect(&server.whep(&alive_show), None, ViewerOpts::default()).await;
    let err = format!("{:#}", capped.err().expect("a fifth session is capped"));
    assert!(err.contains("429"), "{err}");

    app.engine.inject(1, Fault::Shard);
    support::wait_until("shard 1's sessions to end", Duration::from_secs(5), || {
        app.engine.dead_shards() == vec![1] && app.registry.peers_on_shard(1).is_empty()
    })
    .await
    .unwrap();
    assert!(
        show.publisher.lock().is_none(),
        "the publisher slot is free"
    );
    assert!(!show.live.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(show.viewers.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(server.metric("hawker_sessions_lost_total", "").await, 2.0);
    assert_eq!(server.metric("hawker_shows_live", "").await, 0.0);
    assert_eq!(server.metric("hawker_peers", "shard=\"1\"").await, 0.0);
    assert_eq!(server.metric("hawker_peers", "shard=\"0\"").await, 2.0);

    // The dead shard's sessions no longer count against the address: a viewer is served, on
    // the live shard.
    let v = Viewer::connect(&server.whep(&alive_show), None, ViewerOpts::default())
        .await
        .expect("the address cap was released");
    viewers.push(v);
    assert_eq!(app.registry.peers_on_shard(0).len(), 3);
    // The show's slot is free; its home is what is missing, and the answer says so.
    let err = Publisher::connect(&server.whip(&dead_show), &token, PublisherOpts::default())
        .await
        .err()
        .expect("the show's home shard is dead");
    let err = format!("{err:#}");
    assert!(err.contains("503") && err.contains("shard 1"), "{err}");
    drop(publisher);
}
