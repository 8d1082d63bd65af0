//! The datagram path of a shard with a connected peer: a publisher and a viewer connect through
//! the virtual-time harness (ICE, DTLS, SCTP done), then each input is a datagram from the
//! viewer's address (STUN, DTLS, SRTP/SRTCP or garbage alike). The shard must never panic
//! (a caught panic in a peer operation counts as a failure too); when the input has ended the
//! peer, a fresh harness is set up.
#![no_main]

use std::sync::Mutex;
use std::time::Duration;

use hawker::sim::{Config, Handle, Link, Publish, Sim};
use libfuzzer_sys::fuzz_target;

struct World {
    sim: Sim,
    viewer: Handle,
}

fn world() -> World {
    let mut sim = Sim::new(Config {
        shards: 1,
        seed: 7,
        ..Config::default()
    });
    let _p = sim
        .publish("fz", Publish::default(), Link::with_delay(Duration::from_millis(1)))
        .expect("publisher");
    let viewer = sim
        .view("fz", Some(0), Link::with_delay(Duration::from_millis(1)))
        .expect("viewer");
    assert!(sim.run_until(Duration::from_secs(2), |s| s
        .peer(viewer)
        .channel_at
        .is_some()));
    World { sim, viewer }
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    let w = guard.get_or_insert_with(world);
    w.sim.inject_datagram(w.viewer, data);
    w.sim.run_for(Duration::from_millis(5));
    assert_eq!(
        w.sim.shard_metrics(0).panics.get(),
        0,
        "a peer operation panicked"
    );
    if w.sim.gone_event(w.viewer).is_some() || w.sim.server_peers() < 2 {
        *guard = None;
    }
});
