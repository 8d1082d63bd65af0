//! Peer life cycle on the virtual-time harness (`hawker::sim`): the settle delay between a
//! viewer's `Connected` and its first media, the connect timeout for peers that never finish
//! ICE + DTLS, the shorter ICE timeout for peers that never even finish ICE, viewers waiting before the seller, and viewers leaving by DELETE, by closing,
//! or by vanishing from the network; links with no delay at all.

use std::time::Duration;

use hawker::sim::{Config, Link, Publish, Sim};

const DELAY: Duration = Duration::from_millis(15);
const SHOW: &str = "life";
/// The settle delay the engine documents (`engine::shard::VIEWER_SETTLE`).
const SETTLE: Duration = Duration::from_millis(40);

fn sim(seed: u64) -> Sim {
    Sim::new(Config {
        shards: 2,
        seed,
        connect_timeout: Duration::from_secs(5),
        ..Config::default()
    })
}

#[test]
fn first_media_waits_for_the_settle_delay() {
    let mut sim = sim(11);
    let _p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    sim.run_for(Duration::from_millis(500));
    // Joins 0.5 s after the first keyframe: starts from the cache, at the end of its settle
    // delay, on both shards.
    for shard in 0..2 {
        let v = sim
            .view(SHOW, Some(shard), Link::with_delay(DELAY))
            .unwrap();
        sim.run_for(Duration::from_millis(300));
        let connected = sim
            .connected_event(v)
            .expect("server saw the viewer connect");
        let first = sim.peer(v).received.first().expect("media").at;
        // Sent exactly when the 40 ms settle delay ends, then one link delay to the viewer
        // (the server's own link has none).
        assert_eq!(first - connected, SETTLE + DELAY, "shard {shard}");
        assert!(sim.peer(v).first_video().unwrap().keyframe);
    }
}

#[test]
fn peers_that_never_connect_are_dropped_at_the_connect_timeout() {
    let mut sim = sim(12);
    let _p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    sim.run_for(Duration::from_millis(200));
    let ghost = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    let added = sim.now();
    // The answer went out, then the client disappears before ICE can complete.
    sim.vanish(ghost);
    let fine = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(4));
    assert!(sim.gone_event(ghost).is_none(), "not before the timeout");
    sim.run_for(Duration::from_secs(2));
    let gone = sim
        .gone_event(ghost)
        .expect("dropped after the connect timeout");
    let after = gone - added;
    assert!(
        after >= Duration::from_secs(5) && after <= Duration::from_millis(5100),
        "dropped {after:?} after it was added"
    );
    assert!(sim.gone_event(fine).is_none(), "a connected viewer stays");
    assert!(sim.peer(fine).received.len() > 100);
}

#[test]
fn viewers_waiting_before_the_seller_receive_once_live() {
    let mut sim = sim(13);
    let early: Vec<_> = (0..4)
        .map(|i| {
            sim.view(SHOW, Some(i % 2), Link::with_delay(DELAY))
                .unwrap()
        })
        .collect();
    sim.run_for(Duration::from_secs(2));
    assert!(early.iter().all(|&v| sim.peer(v).connected_at.is_some()));
    assert!(early.iter().all(|&v| sim.peer(v).received.is_empty()));
    let _p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    for &v in &early {
        let first = sim.peer(v).first_video().expect("video once live");
        assert!(first.keyframe, "viewer {v} starts on a keyframe");
        assert!(sim.peer(v).audio().count() > 50, "viewer {v} gets audio");
    }
}

#[test]
fn leaving_viewers_are_freed() {
    let mut sim = sim(14);
    let _p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    let deleted = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    let closed = sim.view(SHOW, Some(1), Link::with_delay(DELAY)).unwrap();
    let vanished = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    let stays = sim.view(SHOW, Some(1), Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.server_peers(), 5);

    let t0 = sim.now();
    assert!(sim.delete(deleted), "the server had the session");
    assert!(!sim.delete(deleted), "a second DELETE finds nothing");
    assert_eq!(sim.gone_event(deleted), Some(t0), "DELETE frees at once");

    sim.close(closed);
    sim.run_for(Duration::from_millis(100));
    let gone = sim
        .gone_event(closed)
        .expect("a close_notify frees the viewer");
    assert_eq!(gone - t0, DELAY, "freed when the close arrives");

    sim.vanish(vanished);
    sim.run_for(Duration::from_secs(20));
    let gone = sim
        .gone_event(vanished)
        .expect("ICE consent frees a vanished viewer");
    assert!(
        gone - t0 > Duration::from_secs(2),
        "not freed while consent may still come"
    );

    assert!(sim.gone_event(stays).is_none());
    assert_eq!(sim.server_peers(), 2);
    let last = sim.peer(stays).received.last().unwrap().at;
    assert!(
        sim.now() - last < Duration::from_millis(100),
        "the remaining viewer still receives"
    );
}

/// The `a=fingerprint` line of an SDP.
fn fingerprint(sdp: &str) -> String {
    sdp.lines()
        .find(|l| l.starts_with("a=fingerprint:"))
        .expect("answer has a fingerprint")
        .to_string()
}

#[test]
fn a_shard_uses_one_dtls_certificate_for_all_its_peers() {
    let mut sim = sim(15);
    let p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    let home = sim.peer(p).shard;
    let other = 1 - home;
    let a = sim.view(SHOW, Some(home), Link::with_delay(DELAY)).unwrap();
    let b = sim.view(SHOW, Some(home), Link::with_delay(DELAY)).unwrap();
    let c = sim
        .view(SHOW, Some(other), Link::with_delay(DELAY))
        .unwrap();
    sim.run_for(Duration::from_millis(800));
    // One key pair per shard, not per peer: no key generation on the shard thread per join.
    assert_eq!(fingerprint(sim.answer(p)), fingerprint(sim.answer(a)));
    assert_eq!(fingerprint(sim.answer(a)), fingerprint(sim.answer(b)));
    assert_ne!(
        fingerprint(sim.answer(a)),
        fingerprint(sim.answer(c)),
        "each shard has its own"
    );
    // The shared certificate handshakes with every peer: media reaches all three viewers.
    for v in [a, b, c] {
        assert!(
            sim.peer(v).first_video().is_some_and(|f| f.keyframe),
            "viewer {v} got no video"
        );
    }
}

/// Links with no delay measure an RTT of zero. str0m then rechecks a viewer's bandwidth
/// estimator "one RTT later", that is at once, every time: a shard spinning on one peer (the
/// harness sees a deadline that never moves). The engine spaces those rechecks
/// (`BWE_RECHECK_MIN`); the viewer gets its media and time moves on in bounded steps.
#[test]
fn zero_delay_links_make_progress() {
    let mut sim = sim(13);
    let _p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(Duration::ZERO))
        .unwrap();
    sim.run_for(Duration::from_millis(300));
    let v = sim
        .view(SHOW, Some(0), Link::with_delay(Duration::ZERO))
        .unwrap();
    let steps = sim.steps();
    sim.run_for(Duration::from_secs(2));
    assert!(sim.peer(v).first_video().is_some_and(|r| r.keyframe));
    let video = sim.peer(v).video().count();
    assert!(video > 100, "{video} video packets in 2 s");
    // Frames, audio, feedback and one recheck per millisecond at most: well under 10 per ms.
    let taken = sim.steps() - steps;
    assert!(taken < 20_000, "{taken} steps for 2 s");
}

#[test]
fn peers_whose_ice_never_succeeds_are_dropped_at_the_ice_timeout() {
    let mut sim = Sim::new(Config {
        shards: 1,
        seed: 14,
        connect_timeout: Duration::from_secs(30),
        ice_timeout: Duration::from_secs(2),
        ..Config::default()
    });
    let _p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    sim.run_for(Duration::from_millis(200));
    let ghost = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    let added = sim.now();
    sim.vanish(ghost);
    let fine = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(3));
    let gone = sim
        .gone_event(ghost)
        .expect("dropped at the ICE timeout, long before the connect timeout");
    let after = gone - added;
    assert!(
        after >= Duration::from_secs(2) && after <= Duration::from_millis(2100),
        "dropped {after:?} after it was added"
    );
    assert_eq!(sim.shard_metrics(0).ice_timeouts.get(), 1);
    // A peer whose ICE succeeded is not touched by it.
    sim.run_for(Duration::from_secs(2));
    assert!(sim.gone_event(fine).is_none(), "a connected viewer stays");
    assert!(sim.peer(fine).received.len() > 100);
}

/// GStreamer 1.22 (libnice 0.1.21) sends no STUN binding request once its pair is nominated,
/// so str0m's ICE-lite agent reports `Disconnected` 15 s after the last check while the peer
/// still sends media (publisher) and RTCP (viewer). Such peers stay while their traffic
/// flows, and go once it stops.
#[test]
fn peers_without_ice_consent_stay_while_their_traffic_flows() {
    let mut sim = sim(21);
    let p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    let v = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.server_peers(), 2);
    sim.quiet_ice(p);
    sim.quiet_ice(v);
    sim.run_for(Duration::from_secs(40));
    assert!(sim.gone_event(p).is_none(), "the publisher stays");
    assert!(sim.gone_event(v).is_none(), "the viewer stays");
    let last = sim.peer(v).received.last().unwrap().at;
    assert!(
        sim.now() - last < Duration::from_millis(100),
        "the viewer still receives"
    );

    let t0 = sim.now();
    sim.vanish(v);
    sim.run_for(Duration::from_secs(15));
    let gone = sim.gone_event(v).expect("a silent viewer is freed");
    assert!(
        gone - t0 >= Duration::from_secs(5) && gone - t0 <= Duration::from_secs(12),
        "freed {:?} after its traffic stopped",
        gone - t0
    );
    assert!(sim.gone_event(p).is_none(), "the publisher still stays");
}
