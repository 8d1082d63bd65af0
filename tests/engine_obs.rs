//! An OBS-like publisher on the virtual-time harness (`hawker::sim`): H.264, a keyframe every
//! `gop`, and no answer to keyframe requests (OBS's WHIP output ignores PLI and FIR).
//!
//! * `obs_viewers_start_from_the_cache`: with the keyframe interval ≤ the cache age (the
//!   settings docs/protocol.md recommends), every joiner starts on a cached keyframe at once,
//!   wherever in the GOP it arrives, although the publisher never answers a request.
//! * `a_gop_longer_than_the_cache_age_makes_joiners_wait`: with a 2 s GOP and the 1 s cache,
//!   a joiner late in the GOP has nothing to start from and waits for the next keyframe: why
//!   the docs ask for keyframe interval ≤ `media.keyframe_cache_max_age`.

use std::time::Duration;

use hawker::codec::Codec;
use hawker::sim::{Config, Handle, Link, Publish, Sim};

const DELAY: Duration = Duration::from_millis(20);
const FRAME: Duration = Duration::from_millis(34);
const SHOW: &str = "obs";
/// `media.keyframe_cache_max_age` (the default).
const CACHE_AGE: Duration = Duration::from_secs(1);

fn obs(gop: Duration) -> (Sim, Handle) {
    let mut sim = Sim::new(Config {
        shards: 1,
        seed: 11,
        keyframe_interval: Duration::from_millis(300),
        keyframe_cache_age: CACHE_AGE,
        ..Config::default()
    });
    let cfg = Publish {
        codec: Codec::H264,
        gop: Some(gop),
        answer_keyframe_requests: false,
        ..Publish::default()
    };
    let p = sim
        .publish(SHOW, cfg, Link::with_delay(DELAY))
        .expect("publisher accepted");
    (sim, p)
}

fn viewer(sim: &mut Sim) -> Handle {
    let home = sim.home_of(SHOW);
    sim.view(SHOW, Some(home), Link::with_delay(DELAY))
        .expect("viewer accepted")
}

/// When the viewer's first video packet arrived after it connected; it must be a keyframe.
fn first_keyframe_after_connect(sim: &Sim, v: Handle) -> Duration {
    let p = sim.peer(v);
    let connected = p.connected_at.expect("viewer connected");
    let first = p.first_video().expect("viewer got video");
    assert!(
        first.keyframe,
        "viewer {v}: first video packet not a keyframe"
    );
    first.at - connected
}

fn cache_starts(sim: &Sim) -> u64 {
    (0..sim.shards())
        .map(|i| sim.shard_metrics(i).keyframe_cache_starts.get())
        .sum()
}

#[test]
fn obs_viewers_start_from_the_cache() {
    let (mut sim, publisher) = obs(CACHE_AGE);
    sim.run_for(Duration::from_millis(1100));
    // Joiners spread over one GOP: just after a keyframe, mid-GOP, just before the next one.
    let mut viewers = Vec::new();
    for step in [50u64, 200, 250, 200, 150] {
        viewers.push(viewer(&mut sim));
        sim.run_for(Duration::from_millis(step));
    }
    sim.run_for(Duration::from_millis(1000));
    // Settle (40 ms), the cached frame, the way back: no wait for the next GOP.
    let bound = Duration::from_millis(40) + FRAME + 2 * DELAY;
    for &v in &viewers {
        let t = first_keyframe_after_connect(&sim, v);
        assert!(t <= bound, "viewer {v} waited {t:?} (bound {bound:?})");
    }
    assert_eq!(cache_starts(&sim), viewers.len() as u64, "cache starts");
    // The publisher was never asked for anything it would have had to answer.
    let p = sim.peer(publisher);
    assert!(
        p.keyframes_sent.len() >= 3,
        "periodic keyframes: {}",
        p.keyframes_sent.len()
    );
}

#[test]
fn a_gop_longer_than_the_cache_age_makes_joiners_wait() {
    let (mut sim, _publisher) = obs(Duration::from_secs(2));
    // The first keyframe is at 0; at 1.5 s it is older than the 1 s cache age.
    sim.run_for(Duration::from_millis(1500));
    let v = viewer(&mut sim);
    sim.run_for(Duration::from_millis(1500));
    let t = first_keyframe_after_connect(&sim, v);
    assert!(
        t >= Duration::from_millis(300),
        "joiner started after {t:?}: from a stale cache?"
    );
    assert_eq!(cache_starts(&sim), 0);
}
