//! The recording hook on the virtual-time harness (`hawker::sim`): a recorded show's home
//! shard queues each packet it maps into the show's numbering exactly once (`Core::recorded`),
//! as the same `Arc` it fans out, whatever the number of shards and viewers; an unrecorded
//! show queues nothing.
//!
//! * `recorded_show_queues_each_packet_once`: two shards, a viewer on each, 2 s of VP8 + Opus:
//!   the queue holds every packet the viewers got (same show sequence numbers and timestamps),
//!   each sequence number once per track, in order, the first video one a keyframe start, and
//!   only layer 0 (the recorded layer).
//! * `unrecorded_show_queues_nothing`.

use std::collections::HashSet;
use std::time::Duration;

use hawker::engine::forwarder::Track;
use hawker::sim::{Config, Link, Publish, Sim};

const SHOW: &str = "rec";
const DELAY: Duration = Duration::from_millis(10);

fn run(record: bool) -> Sim {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 7,
        record,
        ..Config::default()
    });
    sim.publish(
        SHOW,
        Publish {
            gop: Some(Duration::from_secs(1)),
            ..Publish::default()
        },
        Link::with_delay(DELAY),
    )
    .expect("publisher");
    for shard in 0..2 {
        sim.view(SHOW, Some(shard), Link::with_delay(DELAY))
            .expect("viewer");
    }
    sim.run_for(Duration::from_secs(2));
    sim
}

#[test]
fn recorded_show_queues_each_packet_once() {
    let sim = run(true);
    let rec = &sim.recorded;
    assert!(rec.len() > 100, "only {} packets recorded", rec.len());
    assert!(rec.iter().all(|p| &*p.show == SHOW && p.pkt.layer == 0));
    for track in [Track::Video, Track::Audio] {
        let seqs: Vec<u64> = rec
            .iter()
            .filter(|p| p.pkt.track == track)
            .map(|p| p.pkt.seq)
            .collect();
        assert!(!seqs.is_empty(), "{track:?} recorded");
        let unique: HashSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seqs.len(),
            "{track:?}: a packet recorded twice"
        );
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{track:?} in order");
    }
    let first_video = rec.iter().find(|p| p.pkt.track == Track::Video).unwrap();
    assert!(
        first_video.pkt.keyframe_start,
        "the recording starts on a keyframe"
    );
    // What viewers got is what was recorded: same numbering, same timestamps.
    let recorded: HashSet<(u64, u32)> = rec
        .iter()
        .filter(|p| p.pkt.track == Track::Video)
        .map(|p| (p.pkt.seq, p.pkt.ts))
        .collect();
    let recorded_ts: HashSet<u32> = recorded.iter().map(|(_, ts)| *ts).collect();
    for v in sim
        .peers()
        .iter()
        .filter(|p| p.connected_at.is_some())
        .skip(1)
    {
        let got: Vec<u32> = v.video().map(|r| r.ts).collect();
        assert!(got.len() > 30, "viewer got {} video packets", got.len());
        assert!(
            got.iter().all(|ts| recorded_ts.contains(ts)),
            "a viewer got a frame that was not recorded"
        );
    }
}

#[test]
fn unrecorded_show_queues_nothing() {
    let sim = run(false);
    assert!(sim.recorded.is_empty());
    assert!(sim.peers()[1].video().count() > 30, "the show still plays");
}
