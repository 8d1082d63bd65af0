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
//! * `simulcast_records_audio_and_the_top_layer`: a 3-layer VP8 publisher (rids `q`, `h`, `f`):
//!   every audio packet is recorded, and the video is the top layer (2) from its first
//!   keyframe on; the recording may open on a lower layer until then, moves up only at a
//!   keyframe and, its top layer never stopping, never down; read back ([`file::one_layer`]) it is one layer 0 with
//!   sequence numbers that follow on across the switch.
//! * `the_recording_steps_down_when_the_top_layer_stops`: the same publisher with keyframes
//!   only on request stops its top layer for 3 s, then resumes it: the recording moves to
//!   layer 1 at a keyframe it asked for, with no video gap over 1 s, and back up to layer 2 when
//!   it returns; read back, no frame is there twice and the numbering follows on.
//! * `replay_keyframe_wishes_stay_on_the_viewers_shard`: a replay viewer (a show fed with
//!   `Msg::Media`, as the replay feeder does) asking for keyframes at join and with PLIs every
//!   100 ms sends no keyframe wish to any other shard, and still plays what it is fed.

use std::collections::HashSet;
use std::time::Duration;

use std::sync::Arc;

use hawker::codec::Codec;
use hawker::engine::forwarder::{self, Track};
use hawker::engine::{MediaPacket, Msg};
use hawker::recording::file;
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

#[test]
fn simulcast_records_audio_and_the_top_layer() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 11,
        record: true,
        ..Config::default()
    });
    let publisher = sim
        .publish(
            SHOW,
            Publish {
                codec: Codec::Vp8,
                simulcast: vec![150, 500, 1500],
                gop: Some(Duration::from_secs(1)),
                ..Publish::default()
            },
            Link::with_delay(DELAY),
        )
        .expect("simulcast publisher");
    sim.view(SHOW, Some(1), Link::with_delay(DELAY))
        .expect("viewer");
    sim.run_for(Duration::from_secs(4));
    let rec = &sim.recorded;
    let sent_audio = sim.peer(publisher).sent.1;
    let audio = rec.iter().filter(|p| p.pkt.track == Track::Audio).count() as u64;
    assert!(
        audio + 10 >= sent_audio && audio > 150,
        "{audio} of {sent_audio} audio packets recorded"
    );
    let video: Vec<&Arc<MediaPacket>> =
        rec.iter().filter(|p| p.pkt.track == Track::Video).collect();
    assert!(video.len() > 200, "only {} video packets", video.len());
    assert!(video[0].pkt.keyframe_start, "starts on a keyframe");
    for w in video.windows(2) {
        if w[1].pkt.layer != w[0].pkt.layer {
            assert!(
                w[1].pkt.layer > w[0].pkt.layer,
                "the recording went down from layer {} to {}",
                w[0].pkt.layer,
                w[1].pkt.layer
            );
            assert!(w[1].pkt.keyframe_start, "a layer switch not at a keyframe");
        }
    }
    let top = video.iter().filter(|p| p.pkt.layer == 2).count();
    assert!(
        video.last().unwrap().pkt.layer == 2 && top * 10 >= video.len() * 8,
        "{top} of {} video packets on the top layer",
        video.len()
    );

    // Read back as one layer: the numbering follows on across the switch.
    let mut pkts: Vec<file::Packet> = video
        .iter()
        .map(|p| file::Packet {
            track: p.pkt.track,
            codec: p.pkt.codec,
            seq: p.pkt.seq,
            ts: p.pkt.ts,
            marker: p.pkt.marker,
            keyframe_start: p.pkt.keyframe_start,
            layer: p.pkt.layer,
            at_us: 0,
            payload: Vec::new(),
        })
        .collect();
    file::one_layer(&mut pkts);
    assert!(pkts.iter().all(|p| p.layer == 0));
    assert!(
        pkts.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "one contiguous numbering"
    );
}

#[test]
fn the_recording_steps_down_when_the_top_layer_stops() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 5,
        record: true,
        ..Config::default()
    });
    let publisher = sim
        .publish(
            SHOW,
            Publish {
                codec: Codec::Vp8,
                simulcast: vec![150, 500, 1500],
                // Keyframes only when asked: a step down must ask for one.
                gop: None,
                ..Publish::default()
            },
            Link::with_delay(DELAY),
        )
        .expect("simulcast publisher");
    sim.view(SHOW, Some(1), Link::with_delay(DELAY))
        .expect("viewer");
    sim.run_for(Duration::from_secs(3));
    let stopped = sim.now();
    sim.set_layer_kbps(publisher, 2, 0);
    sim.run_for(Duration::from_secs(3));
    let resumed = sim.now();
    sim.set_layer_kbps(publisher, 2, 1500);
    sim.run_for(Duration::from_secs(3));

    let video: Vec<&Arc<MediaPacket>> = sim
        .recorded
        .iter()
        .filter(|p| p.pkt.track == Track::Video)
        .collect();
    let layers_at = |from, to| -> HashSet<u8> {
        video
            .iter()
            .filter(|p| p.arrival >= from && p.arrival < to)
            .map(|p| p.pkt.layer)
            .collect()
    };
    assert_eq!(
        layers_at(stopped - Duration::from_secs(1), stopped),
        HashSet::from([2]),
        "on the top layer before it stops"
    );
    assert_eq!(
        layers_at(stopped + Duration::from_secs(1), resumed),
        HashSet::from([1]),
        "on layer 1 while the top layer is stopped"
    );
    assert_eq!(
        layers_at(resumed + Duration::from_secs(1), sim.now()),
        HashSet::from([2]),
        "back on the top layer"
    );
    for w in video.windows(2) {
        let gap = w[1].arrival.duration_since(w[0].arrival);
        assert!(
            gap <= Duration::from_secs(1),
            "a {gap:?} gap in the recorded video from layer {} to {}",
            w[0].pkt.layer,
            w[1].pkt.layer
        );
        if w[1].pkt.layer != w[0].pkt.layer {
            assert!(w[1].pkt.keyframe_start, "a layer switch not at a keyframe");
        }
    }

    let mut pkts: Vec<file::Packet> = video
        .iter()
        .map(|p| file::Packet {
            track: p.pkt.track,
            codec: p.pkt.codec,
            seq: p.pkt.seq,
            ts: p.pkt.ts,
            marker: p.pkt.marker,
            keyframe_start: p.pkt.keyframe_start,
            layer: p.pkt.layer,
            at_us: 0,
            payload: Vec::new(),
        })
        .collect();
    file::one_layer(&mut pkts);
    assert!(
        pkts.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "one contiguous numbering"
    );
    // One frame per timestamp: the old layer's copy of the frame a switch happens on is gone
    // (every layer sends that keyframe), so no timestamp has two keyframe starts.
    let mut starts = HashSet::new();
    for p in pkts.iter().filter(|p| p.keyframe_start) {
        assert!(starts.insert(p.ts), "frame {} recorded twice", p.ts);
    }
    assert!(starts.len() >= 3, "{} keyframes recorded", starts.len());
}

/// A VP8 packet of a replay: frame `n`, a keyframe every 30 frames, two packets a frame.
fn replay_packet(show: &Arc<str>, n: u64, part: u64, at: std::time::Instant) -> Arc<MediaPacket> {
    let key = n.is_multiple_of(30);
    let mut payload = vec![if part == 0 { 0x10 } else { 0x00 }];
    payload.extend_from_slice(if key {
        &[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]
    } else {
        &[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
    });
    payload.resize(600, 0);
    Arc::new(MediaPacket {
        show: show.clone(),
        pkt: forwarder::Packet {
            track: Track::Video,
            codec: Codec::Vp8,
            seq: 100 + n * 2 + part,
            ts: 90_000 + (n * 3000) as u32,
            marker: part == 1,
            keyframe_start: key && part == 0,
            layer: 0,
            vp8: None,
        },
        payload: payload.into(),
        arrival: at,
        vp8: None,
    })
}

#[test]
fn replay_keyframe_wishes_stay_on_the_viewers_shard() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 3,
        ..Config::default()
    });
    let show: Arc<str> = Arc::from("rec~replay-1");
    let v = sim
        .view_replay(&show, Some(1), Link::with_delay(DELAY))
        .expect("replay viewer");
    assert!(
        sim.run_until(Duration::from_secs(5), |s| s.connected_event(v).is_some()),
        "connects"
    );
    sim.send_plis(v, Duration::from_millis(100));
    // Past the settle delay: the viewer's first wish for a keyframe has been made.
    sim.run_for(Duration::from_millis(200));
    for n in 0..90 {
        let now = sim.now();
        for part in 0..2 {
            sim.send(1, Msg::Media(replay_packet(&show, n, part, now)));
        }
        sim.run_for(Duration::from_millis(33));
    }
    assert_eq!(
        sim.keyframe_wishes, 0,
        "a replay viewer's keyframe wishes went to other shards"
    );
    let got = sim.peer(v).video().count();
    assert!(got > 100, "the replay viewer got {got} video packets");
}
