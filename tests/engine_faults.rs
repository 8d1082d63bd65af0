//! A panic costs one peer, not a shard; a shard that dies anyway is noticed. Faults are
//! injected through `engine::shard::Fault`, which exists only with the `fault-injection`
//! feature (`cargo test --release --features fault-injection --test engine_faults`).
//!
//! * In virtual time (`hawker::sim`): a viewer whose next operation panics is dropped with its
//!   `Gone` event; the other viewer on the same shard keeps its media, and the shard still
//!   takes and serves a new viewer.
//! * Against the real server: a shard whose thread dies makes `/healthz` answer 503 and counts
//!   in `hawker_shards_dead`; new viewers all land on the live shard, and a publisher whose
//!   show lives on the dead shard gets a 503 that says so.

mod support;

use std::time::Duration;

use hawker::auth::Role;
use hawker::engine::shard::Fault;
use hawker::engine::{Event, Msg};
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
