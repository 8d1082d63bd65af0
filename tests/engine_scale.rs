//! Scale and determinism on the virtual-time harness (`hawker::sim`).
//!
//! * `two_hundred_viewers_for_thirty_seconds`: 1 publisher (VP8 at 250 kbit/s, 30 fps, Opus)
//!   and 200 viewers over 2 shards for 30 s of virtual time: every viewer connects, opens its
//!   events channel, starts on a keyframe and, from its start on, receives every packet the
//!   publisher sent, bit-exact, in order, with consecutive sequence numbers.
//!   It prints the CPU time it took (not asserted).
//! * `same_seed_same_run`: a lossy, bandwidth-capped scenario run twice with one seed gives
//!   the same timeline (times, sequence numbers, payloads), and another seed a different one.
//! * `lossy_link_is_repaired`: a viewer behind 5 % loss gets nearly everything through NACK
//!   and retransmission, and the other viewers are unaffected.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hawker::sim::{hash, Config, Handle, Link, Publish, Received, Sim};
use str0m::media::MediaKind;

const SHOW: &str = "big";

/// The viewer's packets of one kind are one unbroken run of what the publisher sent: same
/// payloads, in order, consecutive sequence numbers, nothing missing.
fn check_stream(sim: &Sim, publisher: Handle, v: Handle, kind: MediaKind) {
    let sent: Vec<u64> = sim
        .peer(publisher)
        .sent_hashes
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|&(_, h)| h)
        .collect();
    let got: Vec<&Received> = sim
        .peer(v)
        .received
        .iter()
        .filter(|r| r.kind == kind)
        .collect();
    assert!(
        got.len() > 500,
        "viewer {v}: {} {kind:?} packets",
        got.len()
    );
    let at = sent
        .iter()
        .position(|&h| h == got[0].payload_hash)
        .unwrap_or_else(|| panic!("viewer {v}: first {kind:?} payload was never sent"));
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            Some(&r.payload_hash),
            sent.get(at + i),
            "viewer {v}: {kind:?} packet {i} is not the publisher's next one"
        );
        if i > 0 {
            assert_eq!(
                r.seq,
                got[i - 1].seq + 1,
                "viewer {v}: {kind:?} sequence gap"
            );
        }
    }
    // Up to the end: at most a few packets still in flight.
    assert!(
        sent.len() - (at + got.len()) <= 8,
        "viewer {v}: {kind:?} stopped early"
    );
}

#[test]
fn two_hundred_viewers_for_thirty_seconds() {
    let cpu = Instant::now();
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 200,
        ..Config::default()
    });
    let cfg = Publish {
        video_kbps: 250,
        ..Publish::default()
    };
    let publisher = sim
        .publish(SHOW, cfg, Link::with_delay(Duration::from_millis(10)))
        .unwrap();
    sim.run_for(Duration::from_millis(500));
    // Joining over the first 4 s, 50 per second.
    let mut viewers = Vec::new();
    for i in 0..200u64 {
        let link = Link::with_delay(Duration::from_millis(5 + i % 40));
        viewers.push(sim.view(SHOW, None, link).unwrap());
        sim.run_for(Duration::from_millis(20));
    }
    let joined = sim.elapsed();
    sim.run_for(Duration::from_secs(30) - joined);
    let elapsed = cpu.elapsed();
    eprintln!(
        "200 viewers, 30 s of virtual time: {elapsed:?} of wall time, {} steps, {:?}",
        sim.steps(),
        sim.net.counters
    );

    assert_eq!(sim.net.counters.lost + sim.net.counters.queue_drops, 0);
    let per_shard: Vec<usize> = (0..2).map(|i| sim.core(i).peer_count()).collect();
    assert_eq!(per_shard.iter().sum::<usize>(), 201);
    assert!(
        per_shard.iter().all(|&n| n >= 100),
        "viewers spread over both shards: {per_shard:?}"
    );

    let (pub_video, pub_audio) = sim.peer(publisher).sent;
    assert!(
        pub_video >= 30 * 29 && pub_audio >= 50 * 29,
        "publisher sent {pub_video}/{pub_audio}"
    );
    for &v in &viewers {
        let p = sim.peer(v);
        assert!(p.connected_at.is_some(), "viewer {v} connected");
        assert!(p.channel_at.is_some(), "viewer {v} has its events channel");
        assert_eq!(
            p.texts.first().map(|(_, t)| t.as_str()),
            Some("{\"type\":\"snapshot\"}")
        );
        assert!(
            p.first_video().unwrap().keyframe,
            "viewer {v} starts on a keyframe"
        );
        check_stream(&sim, publisher, v, MediaKind::Video);
        check_stream(&sim, publisher, v, MediaKind::Audio);
    }
}

fn digest(sim: &Sim) -> BTreeMap<Handle, u64> {
    let t0 = sim.now() - sim.elapsed();
    sim.peers()
        .iter()
        .enumerate()
        .map(|(h, p)| {
            let mut bytes = Vec::new();
            for r in &p.received {
                bytes.extend_from_slice(&(r.at - t0).as_nanos().to_be_bytes());
                bytes.extend_from_slice(&r.seq.to_be_bytes());
                bytes.extend_from_slice(&r.ts.to_be_bytes());
                bytes.extend_from_slice(&r.payload_hash.to_be_bytes());
            }
            for t in &p.keyframe_requests {
                bytes.extend_from_slice(&(*t - t0).as_nanos().to_be_bytes());
            }
            (h, hash(&bytes))
        })
        .collect()
}

fn lossy_run(seed: u64) -> (BTreeMap<Handle, u64>, hawker::sim::net::Counters) {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed,
        ..Config::default()
    });
    let lossy = Link {
        delay: Duration::from_millis(30),
        loss: 0.03,
        rate_bps: Some(2_000_000),
        ..Link::default()
    };
    sim.publish(
        SHOW,
        Publish::default(),
        Link::with_delay(Duration::from_millis(5)),
    )
    .unwrap();
    for i in 0..6 {
        sim.view(SHOW, Some(i % 2), lossy).unwrap();
    }
    sim.run_for(Duration::from_secs(6));
    (digest(&sim), sim.net.counters)
}

#[test]
fn same_seed_same_run() {
    let (a, ca) = lossy_run(42);
    let (b, cb) = lossy_run(42);
    assert!(ca.lost > 0, "the scenario loses packets: {ca:?}");
    assert_eq!(ca, cb, "same network counters");
    assert_eq!(a, b, "same timeline for every peer");
    let (c, _) = lossy_run(43);
    assert_ne!(a, c, "another seed, another run");
}

#[test]
fn lossy_link_is_repaired() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 9,
        ..Config::default()
    });
    let p = sim
        .publish(
            SHOW,
            Publish::default(),
            Link::with_delay(Duration::from_millis(5)),
        )
        .unwrap();
    let clean = sim
        .view(SHOW, Some(0), Link::with_delay(Duration::from_millis(20)))
        .unwrap();
    let lossy_link = Link {
        delay: Duration::from_millis(20),
        loss: 0.05,
        ..Link::default()
    };
    let lossy = sim.view(SHOW, Some(1), lossy_link).unwrap();
    sim.run_for(Duration::from_secs(10));
    let sent_video = sim.peer(p).sent.0 as f64;
    let count = |v: Handle| -> f64 {
        let mut seqs: Vec<u64> = sim.peer(v).video().map(|r| r.seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs.len() as f64
    };
    let (c, l) = (count(clean), count(lossy));
    assert!(c >= sent_video * 0.97, "clean viewer: {c} of {sent_video}");
    // Without repair a 5 % link in both directions would leave ~95 %.
    assert!(
        l >= c * 0.985,
        "lossy viewer: {l} of the clean viewer's {c}"
    );
    let nacks: u64 = (0..2).map(|i| sim.shard_metrics(i).nacks.get()).sum();
    assert!(nacks > 0, "the lossy viewer asked for retransmissions");
}
