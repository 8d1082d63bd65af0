//! Keyframes on the virtual-time harness (`hawker::sim`): the gate, the keyframe cache and
//! request coalescing, deterministic and without sleeps.
//!
//! The publisher sends a keyframe only as its first frame and when asked (PLI), at most one
//! per 100 ms. The server's `media.keyframe_interval` is 300 ms. Every viewer link has a 20 ms
//! one-way delay; two shards, so viewers on the show's home shard and on the other one both
//! count.
//!
//! * `late_joiners_*`: viewers joining mid-stream start on a keyframe within one gate interval
//!   plus one frame and a round trip of connecting; with the cache, joiners right after a
//!   keyframe start from it with no request to the publisher; without it
//!   (`keyframe_cache_max_age = 0`) nothing starts from the cache and back-to-back joiners
//!   cost one request per interval at most.
//! * `simultaneous_joiners_*`: 20 viewers at once cost one keyframe request.
//! * `viewer_plis_are_coalesced`: 20 viewers sending PLIs every 50 ms for 1.5 s: every PLI is
//!   counted, the publisher sees at most one request per interval, every viewer gets a new
//!   keyframe.

use std::time::{Duration, Instant};

use hawker::codec::Codec;
use hawker::sim::{Config, Handle, Link, Publish, Sim};

const INTERVAL: Duration = Duration::from_millis(300);
const DELAY: Duration = Duration::from_millis(20);
const FRAME: Duration = Duration::from_millis(34);
const SHOW: &str = "late";

fn sim(cache: bool, seed: u64) -> Sim {
    let mut cfg = Config {
        shards: 2,
        seed,
        keyframe_interval: INTERVAL,
        ..Config::default()
    };
    if !cache {
        cfg.keyframe_cache_age = Duration::ZERO;
    }
    Sim::new(cfg)
}

fn publisher(sim: &mut Sim, codec: Codec) -> Handle {
    let cfg = Publish {
        codec,
        gop: None,
        ..Publish::default()
    };
    sim.publish(SHOW, cfg, Link::with_delay(DELAY))
        .expect("publisher accepted")
}

fn viewer(sim: &mut Sim, shard: usize) -> Handle {
    sim.view(SHOW, Some(shard), Link::with_delay(DELAY))
        .expect("viewer accepted")
}

fn cache_starts(sim: &Sim) -> u64 {
    (0..sim.shards())
        .map(|i| sim.shard_metrics(i).keyframe_cache_starts.get())
        .sum()
}

fn plis_to_publishers(sim: &Sim) -> u64 {
    (0..sim.shards())
        .map(|i| sim.shard_metrics(i).plis_to_publishers.get())
        .sum()
}

/// The viewer's first video packet is a keyframe; returns when it arrived after the viewer
/// connected (client side).
fn first_keyframe_after_connect(sim: &Sim, v: Handle) -> Duration {
    let p = sim.peer(v);
    let connected = p.connected_at.expect("viewer connected");
    let first = p.first_video().expect("viewer got video");
    assert!(
        first.keyframe,
        "viewer {v}: first video packet is not a keyframe"
    );
    first.at - connected
}

fn late_joiners(codec: Codec, cache: bool) {
    let mut sim = sim(cache, 7);
    let publisher = publisher(&mut sim, codec);
    sim.run_for(Duration::from_millis(1500));
    assert_eq!(
        sim.peer(publisher).keyframes_sent.len(),
        1,
        "only the first frame so far"
    );
    let other = 1 - sim.home_of(SHOW);

    // Two joiners back to back on different shards, then one more 0.6 s later.
    let a = viewer(&mut sim, other);
    let b = viewer(&mut sim, 1 - other);
    sim.run_for(Duration::from_millis(600));
    let c = viewer(&mut sim, other);
    sim.run_for(Duration::from_millis(1500));

    // Connect, settle (40 ms), at most one interval for the gate, a frame, the way back.
    let bound = Duration::from_millis(40) + INTERVAL + FRAME + 2 * DELAY;
    for v in [a, b, c] {
        let t = first_keyframe_after_connect(&sim, v);
        assert!(
            t <= bound,
            "{codec:?} cache {cache}: viewer {v} waited {t:?} (bound {bound:?})"
        );
    }
    let requests = sim.peer(publisher).keyframe_requests.len() as u64;
    assert_eq!(
        requests,
        plis_to_publishers(&sim),
        "every PLI sent reached the publisher"
    );
    let starts = cache_starts(&sim);
    if cache {
        // a and b connect ~1.5 s after the only keyframe (older than the 1 s cache age): one
        // request serves both. c joins 0.6 s after that keyframe: it starts from the cache.
        assert_eq!(requests, 1, "{codec:?}: requests");
        assert_eq!(starts, 1, "{codec:?}: c starts from the cache");
    } else {
        assert_eq!(
            starts, 0,
            "{codec:?}: nothing starts from the cache when it is off"
        );
        // a and b: one request (they start together); c: one more.
        assert_eq!(requests, 2, "{codec:?}: requests");
    }
}

#[test]
fn late_joiners_start_on_a_keyframe_vp8() {
    late_joiners(Codec::Vp8, true);
}

#[test]
fn late_joiners_start_on_a_keyframe_vp8_without_cache() {
    late_joiners(Codec::Vp8, false);
}

#[test]
fn late_joiners_start_on_a_keyframe_h264() {
    late_joiners(Codec::H264, true);
}

#[test]
fn late_joiners_start_on_a_keyframe_h264_without_cache() {
    late_joiners(Codec::H264, false);
}

#[test]
fn simultaneous_joiners_cost_one_keyframe_request() {
    let mut sim = sim(false, 3);
    let publisher = publisher(&mut sim, Codec::Vp8);
    sim.run_for(Duration::from_millis(1500));
    let crowd: Vec<Handle> = (0..20).map(|i| viewer(&mut sim, i % 2)).collect();
    sim.run_for(Duration::from_secs(2));
    for &v in &crowd {
        let t = first_keyframe_after_connect(&sim, v);
        let bound = Duration::from_millis(40) + INTERVAL + FRAME + 2 * DELAY;
        assert!(t <= bound, "viewer {v} waited {t:?}");
    }
    assert_eq!(sim.peer(publisher).keyframe_requests.len(), 1);
    assert_eq!(plis_to_publishers(&sim), 1);
    assert_eq!(sim.peer(publisher).keyframes_sent.len(), 2);
}

#[test]
fn viewer_plis_are_coalesced() {
    let mut sim = sim(false, 5);
    let publisher = publisher(&mut sim, Codec::Vp8);
    let crowd: Vec<Handle> = (0..20).map(|i| viewer(&mut sim, i % 2)).collect();
    sim.run_for(Duration::from_secs(1));
    let before = sim.peer(publisher).keyframe_requests.len();
    let started: Instant = sim.now();
    for &v in &crowd {
        sim.send_plis(v, Duration::from_millis(50));
    }
    let window = Duration::from_millis(1500);
    sim.run_for(window);
    for &v in &crowd {
        sim.stop_plis(v);
    }
    sim.run_for(Duration::from_secs(1));
    let from_viewers: u64 = (0..sim.shards())
        .map(|i| sim.shard_metrics(i).plis_from_viewers.get())
        .sum();
    // 20 viewers × 30 PLIs (str0m may merge a PLI with the next RTCP report, never drop it).
    assert!(
        from_viewers >= 20 * 29,
        "server counted {from_viewers} viewer PLIs"
    );
    let requests = sim.peer(publisher).keyframe_requests.len() - before;
    let allowed = (window.as_millis() / INTERVAL.as_millis()) as usize + 1;
    assert!(
        (1..=allowed).contains(&requests),
        "publisher got {requests} requests in {window:?} (at most {allowed})"
    );
    for &v in &crowd {
        let got_new = sim.peer(v).video().any(|r| r.keyframe && r.at > started);
        assert!(got_new, "viewer {v} got no keyframe after asking");
    }
}
