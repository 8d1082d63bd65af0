//! A seller's publisher session ends and a new one takes over the show, on the virtual-time
//! harness (`hawker::sim`). The new session starts its sequence numbers and timestamps far from
//! the first one's, near the 16-bit and 32-bit wraps. Viewers on the show's home shard and on
//! the other shard (the hand-off of every packet between shards) keep their connections, and
//! for each of them, per track: one SSRC throughout, sequence numbers with no gap and no
//! repeat across the switch, timestamps moving forward by about the time of the switch, and
//! every payload bit-exact one the publishers sent.
//!
//! The first session ends by DELETE, by closing (DTLS close_notify, no DELETE), or by
//! vanishing from the network (the server's ICE-lite consent timeout must free the show).

use std::collections::HashSet;
use std::time::Duration;

use hawker::sim::{Config, Handle, Link, Publish, Received, Sim};
use str0m::media::MediaKind;

const DELAY: Duration = Duration::from_millis(10);
const SHOW: &str = "again";

#[derive(Clone, Copy, Debug)]
enum End {
    Delete,
    Close,
    Vanish,
}

fn check_track(name: &str, pkts: &[&Received], clock: u32, switch_at: std::time::Instant) {
    assert!(pkts.len() > 50, "{name}: {} packets", pkts.len());
    let ssrcs: HashSet<u32> = pkts.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "{name}: one SSRC throughout, got {ssrcs:?}");
    for w in pkts.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "{name}: sequence continues at {:?}",
            w[1].at
        );
        let dt = w[1].ts.wrapping_sub(w[0].ts) as i32;
        assert!(dt >= 0, "{name}: timestamp went back {dt} at {:?}", w[1].at);
    }
    // The packet pair around the switch: the timestamp advance matches the time between them
    // within 100 ms.
    let i = pkts
        .iter()
        .position(|r| r.at > switch_at)
        .expect("packets after the switch");
    let (a, b) = (pkts[i - 1], pkts[i]);
    let dt_ts = b.ts.wrapping_sub(a.ts) as f64 / clock as f64;
    let dt_wall = (b.at - a.at).as_secs_f64();
    assert!(
        (dt_ts - dt_wall).abs() < 0.1,
        "{name}: timestamps moved {dt_ts:.3} s over {dt_wall:.3} s"
    );
}

fn switch_publishers(end: End) {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 21,
        ..Config::default()
    });
    let first = Publish {
        first_seq: (65_000, 65_400),
        first_ts: (4_294_000_000, 4_294_900_000),
        ..Publish::default()
    };
    let p1 = sim.publish(SHOW, first, Link::with_delay(DELAY)).unwrap();
    let viewers: Vec<Handle> = (0..4)
        .map(|i| {
            sim.view(SHOW, Some(i % 2), Link::with_delay(DELAY))
                .unwrap()
        })
        .collect();
    sim.run_for(Duration::from_secs(3));
    match end {
        End::Delete => assert!(sim.delete(p1)),
        End::Close => sim.close(p1),
        End::Vanish => sim.vanish(p1),
    }
    let switch_at = sim.now();
    // The show is free for a new session once the server let the first one go.
    let freed = sim.run_until(Duration::from_secs(30), |s| s.gone_event(p1).is_some());
    assert!(
        freed,
        "{end:?}: the server never let the first publisher go"
    );
    let second = Publish {
        first_seq: (7, 40_000),
        first_ts: (1_000, 3_000_000_000),
        ..Publish::default()
    };
    let p2 = sim.publish(SHOW, second, Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(3));

    let sent: HashSet<u64> = sim
        .peer(p1)
        .sent_hashes
        .iter()
        .chain(&sim.peer(p2).sent_hashes)
        .map(|&(_, h)| h)
        .collect();
    for &v in &viewers {
        let p = sim.peer(v);
        for (kind, clock) in [(MediaKind::Video, 90_000), (MediaKind::Audio, 48_000)] {
            let pkts: Vec<&Received> = p.received.iter().filter(|r| r.kind == kind).collect();
            let name = format!("{end:?} viewer {v} (shard {}) {kind:?}", p.shard);
            check_track(&name, &pkts, clock, switch_at);
            assert!(
                pkts.iter().all(|r| sent.contains(&r.payload_hash)),
                "{name}: a payload nobody sent"
            );
            let late = pkts.iter().filter(|r| r.at > switch_at).count();
            assert!(
                late > 50,
                "{name}: {late} packets from the second publisher"
            );
        }
    }
}

#[test]
fn viewers_survive_republish_after_delete() {
    switch_publishers(End::Delete);
}

#[test]
fn viewers_survive_republish_after_close_without_delete() {
    switch_publishers(End::Close);
}

#[test]
fn viewers_survive_republish_after_network_vanish() {
    switch_publishers(End::Vanish);
}
