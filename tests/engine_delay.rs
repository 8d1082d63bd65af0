//! Forwarding delay on the virtual-time harness (`hawker::sim`): the server adds none of its
//! own.
//!
//! * `a_viewer_gets_the_stream_as_it_comes`: a single-layer publisher at 2.5 Mbit/s (well above
//!   a viewer's initial bandwidth estimate) and 4 viewers over 2 shards, every link 1 ms, the
//!   viewers joining once the show has flowed for 4 s (3 s with one layer make it known to send
//!   one layer).
//!   From its first packet on, each viewer receives every video packet within a few
//!   milliseconds of the publisher sending it. Shard processing takes no virtual time, so all
//!   of the delay is the links' (2 ms) plus whatever the server holds packets back: a pacer
//!   that queues video behind the bandwidth estimate shows up here as hundreds of milliseconds.
//!   Viewers of a single-layer show run no estimation, so no pacer
//!   (`engine::shard::Core::add_peer`); a viewer that joins in the show's first 3 s, or
//!   any viewer of a simulcast show, still does (docs/performance.md, round 2).

use std::time::Duration;

use hawker::sim::{Config, Link, Publish, Sim};
use str0m::media::MediaKind;

const SHOW: &str = "delay";

#[test]
fn a_viewer_gets_the_stream_as_it_comes() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 12,
        ..Config::default()
    });
    let epoch = sim.now() - sim.elapsed();
    let link = || Link::with_delay(Duration::from_millis(1));
    let cfg = Publish {
        video_kbps: 2500,
        ..Publish::default()
    };
    sim.publish(SHOW, cfg, link()).expect("publisher accepted");
    // One viewer per shard first, so each shard measures the show; the rest join after.
    let mut viewers: Vec<_> = (0..2)
        .map(|i| sim.view(SHOW, Some(i), link()).expect("viewer accepted"))
        .collect();
    sim.run_for(Duration::from_secs(4));
    viewers.extend(
        (0..4)
            .map(|i| {
                sim.view(SHOW, Some(i % 2), link())
                    .expect("viewer accepted")
            })
            .collect::<Vec<_>>(),
    );
    sim.run_for(Duration::from_secs(10));
    // The first two joined before anything was measured: they run estimation (and its pacer).
    for &v in &viewers[2..] {
        let us = |t: std::time::Instant| t.duration_since(epoch).as_micros() as u64;
        let video = || {
            sim.peer(v)
                .received
                .iter()
                .filter(|r| r.kind == MediaKind::Video)
        };
        // Packets the publisher sent before the viewer's first one came from the keyframe
        // cache: their delay is their age, not forwarding.
        let start = video().next().map(|r| us(r.at)).unwrap_or(0);
        let mut delays: Vec<u64> = video()
            .filter_map(|r| {
                let sent = r.sent_us.filter(|&s| s >= start)?;
                Some(us(r.at).saturating_sub(sent))
            })
            .collect();
        assert!(
            delays.len() > 1000,
            "viewer {v}: {} video packets in 10 s at 2.5 Mbit/s",
            delays.len()
        );
        delays.sort_unstable();
        let p99 = delays[delays.len() * 99 / 100];
        let max = delays[delays.len() - 1];
        eprintln!(
            "viewer {v}: {} video packets, delay p50 {} µs, p99 {p99} µs, max {max} µs",
            delays.len(),
            delays[delays.len() / 2]
        );
        assert!(
            p99 <= 5_000,
            "viewer {v}: p99 forwarding delay {p99} µs (links 2 ms): the server holds video back"
        );
    }
}
