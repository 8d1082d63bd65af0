//! Simulcast on the virtual-time harness (`hawker::sim`): a 3-layer VP8 publisher (150, 500
//! and 1500 kbit/s; rids `q`, `h`, `f`; each layer with its own SSRC, sequence, timestamp and
//! PictureID bases, as browsers send them) and viewers behind links of different capacity.
//!
//! * `each_viewer_gets_the_layer_its_link_carries`: three viewers, unlimited, capped at 60 %
//!   and at 25 % of the top layer's bitrate. Within 5 s each is on the highest layer that fits;
//!   at every switch the viewer's sequence numbers and VP8 PictureIDs continue at `last + 1`
//!   and the first packet of the new layer starts a keyframe; lifting a cap brings the viewer
//!   up within 15 s; a highlight's `rtp_ts` is the same for all three and is the timestamp of
//!   a frame each of them received. Audio is never dropped.
//! * `quality_cap_from_whep_and_events`: `?quality=low` holds a viewer on the lowest layer
//!   on an unlimited link; a `quality` message on `events` moves it to the top.
//! * `a_new_target_before_the_first_keyframe_is_asked_for`: a viewer whose target changes
//!   while it waits for its first keyframe (publisher sending keyframes only on request, no
//!   cache) asks for a keyframe of the new target and starts on it.
//! * `viewer_is_told_its_layer`: the `layer` message on `events` follows every switch the
//!   viewer's video goes through (after the snapshot, never a layer the viewer is not on).
//! * `a_layer_that_never_starts_is_counted_and_skipped`: a publisher that declares three rids
//!   and sends two: the silent one is counted once in `hawker_media_simulcast_layers_silent_total`
//!   (after 5 s, not before), and an unlimited viewer stays on the highest layer that flows.
//! * `ssrc_group_sim_offers_are_simulcast`: the same three layers signalled as
//!   `a=ssrc-group:SIM` without rids: each viewer gets the layer of its cap, unmixed.
//! * `bad_simulcast_offers_are_refused`: four rids, four SSRCs in a SIM group, an SSRC twice
//!   in it: refused at signalling (400 over HTTP), no peer left behind.

use std::time::Duration;

use hawker::codec::Codec;
use hawker::engine::simulcast::Quality;
use hawker::sim::{Config, Handle, Link, Publish, Sim};

const SHOW: &str = "simulcast";
const DELAY: Duration = Duration::from_millis(20);
const LAYERS_KBPS: [u32; 3] = [150, 500, 1500];

fn publisher(sim: &mut Sim) -> Handle {
    sim.publish(SHOW, layers(&LAYERS_KBPS), Link::with_delay(DELAY))
        .expect("simulcast publisher accepted")
}

/// A VP8 simulcast publisher of these layers (kbit/s, lowest first), keyframes on request.
fn layers(kbps: &[u32]) -> Publish {
    Publish {
        codec: Codec::Vp8,
        simulcast: kbps.to_vec(),
        gop: None,
        ..Publish::default()
    }
}

/// A link shaped to `kbps` with a one-packet bucket, like a tight `tc tbf` shaper.
fn capped(kbps: u64) -> Link {
    Link {
        rate_bps: Some(kbps * 1000),
        burst_bytes: 1500,
        ..Link::with_delay(DELAY)
    }
}

/// The layer of the video a viewer received in the last `window`.
fn layer_now(sim: &Sim, v: Handle, window: Duration) -> Option<u8> {
    let since = sim.now() - window;
    let layers: Vec<u8> = sim
        .peer(v)
        .video()
        .filter(|r| r.at >= since)
        .filter_map(|r| r.layer)
        .collect();
    let last = *layers.last()?;
    layers.iter().all(|&l| l == last).then_some(last)
}

/// The `layer` messages a viewer received on `events`: (arrival, layer, layers).
fn told_layers(sim: &Sim, v: Handle) -> Vec<(std::time::Instant, u8, u64)> {
    sim.peer(v)
        .texts
        .iter()
        .filter_map(|(at, t)| Some((*at, serde_json::from_str::<serde_json::Value>(t).ok()?)))
        .filter(|(_, m)| m["type"] == "layer")
        .map(|(at, m)| {
            let layer = m["layer"].as_u64().expect("layer is a number");
            let layers = m["layers"].as_u64().expect("layers is a number");
            (at, layer as u8, layers)
        })
        .collect()
}

/// Check every layer switch a viewer went through; returns how many there were.
fn check_switches(sim: &Sim, v: Handle) -> usize {
    let mut pkts: Vec<_> = sim.peer(v).video().cloned().collect();
    pkts.sort_by_key(|r| r.seq);
    pkts.dedup_by_key(|r| r.seq);
    let first = pkts.first().expect("viewer got video");
    assert!(first.keyframe, "viewer {v}: starts on a keyframe");
    let mut switches = 0;
    for w in pkts.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.layer == b.layer {
            continue;
        }
        switches += 1;
        assert_eq!(
            b.seq,
            a.seq + 1,
            "viewer {v}: sequence numbers continue across the switch {:?} → {:?}",
            a.layer,
            b.layer
        );
        assert!(
            b.keyframe,
            "viewer {v}: the first packet after a switch to {:?} starts a keyframe",
            b.layer
        );
        let (pa, pb) = (a.vp8_ids.expect("pid"), b.vp8_ids.expect("pid"));
        assert_eq!(
            pb.0,
            (pa.0 + 1) & 0x7FFF,
            "viewer {v}: PictureID continues across the switch"
        );
        assert_eq!(
            pb.1,
            pa.1.map(|t| t.wrapping_add(1)),
            "viewer {v}: TL0PICIDX continues across the switch"
        );
    }
    // Within a layer, PictureIDs never jump back (a decoder would drop the frames).
    for w in pkts.windows(2) {
        let (pa, pb) = (w[0].vp8_ids.unwrap().0, w[1].vp8_ids.unwrap().0);
        let step = pb.wrapping_sub(pa) & 0x7FFF;
        assert!(step <= 2, "viewer {v}: PictureID {pa} → {pb}");
    }
    switches
}

#[test]
fn each_viewer_gets_the_layer_its_link_carries() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 11,
        ..Config::default()
    });
    let publisher = publisher(&mut sim);
    // Sender reports put the layers on one clock.
    sim.run_for(Duration::from_millis(1500));
    let home = sim.home_of(SHOW);
    let top = LAYERS_KBPS[2] as u64;
    let free = sim
        .view(SHOW, Some(1 - home), Link::with_delay(DELAY))
        .unwrap();
    let sixty = sim.view(SHOW, Some(home), capped(top * 60 / 100)).unwrap();
    let quarter = sim
        .view(SHOW, Some(1 - home), capped(top * 25 / 100))
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    let window = Duration::from_millis(500);
    assert_eq!(
        layer_now(&sim, free, window),
        Some(2),
        "unlimited: top layer"
    );
    assert_eq!(
        layer_now(&sim, sixty, window),
        Some(1),
        "60 %: middle layer"
    );
    assert_eq!(
        layer_now(&sim, quarter, window),
        Some(0),
        "25 %: lowest layer"
    );

    // A highlight now: one rtp_ts, on a frame every viewer receives.
    let clock = sim.clock(SHOW);
    let (rtp_ts, _) = hawker::live::clock::stamp(&clock, None);
    let rtp_ts = rtp_ts.expect("video clock running");
    sim.run_for(Duration::from_millis(500));
    for v in [free, sixty, quarter] {
        let got = sim.peer(v).video().any(|r| r.ts == rtp_ts);
        assert!(
            got,
            "viewer {v}: no frame with the highlight's rtp_ts {rtp_ts}"
        );
    }

    // Lift the cap of the 25 % viewer: it climbs to the top within 15 s.
    let addr = sim.peer(quarter).addr;
    sim.net.set_link(addr, Link::with_delay(DELAY));
    let up = sim.run_until(Duration::from_secs(15), |s| {
        layer_now(s, quarter, Duration::from_millis(300)) == Some(2)
    });
    assert!(up, "the uncapped viewer reached the top layer");
    sim.run_for(Duration::from_secs(1));

    let mut switches = 0;
    for v in [free, sixty, quarter] {
        switches += check_switches(&sim, v);
        // Audio is never dropped: one Opus packet per 20 ms from the start.
        let p = sim.peer(v);
        let audio = p.audio().count() as u64;
        let connected = p.connected_at.unwrap();
        let expected = (sim.now() - connected).as_millis() as u64 / 20;
        assert!(
            audio + 10 >= expected,
            "viewer {v}: {audio} audio packets, expected about {expected}"
        );
    }
    assert!(switches >= 2, "the capped viewers switched ({switches})");
    let m = sim.metrics().render();
    assert!(m.contains("hawker_media_layer_switches_total"), "{m}");
    let _ = publisher;
}

#[test]
fn quality_cap_from_whep_and_events() {
    let mut sim = Sim::new(Config {
        shards: 1,
        seed: 5,
        ..Config::default()
    });
    publisher(&mut sim);
    sim.run_for(Duration::from_millis(1500));
    let v = sim
        .view_with(SHOW, None, Link::with_delay(DELAY), Quality::Low)
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    assert_eq!(layer_now(&sim, v, Duration::from_secs(2)), Some(0));
    assert!(sim.say(v, r#"{"type":"quality","quality":"high"}"#));
    let up = sim.run_until(Duration::from_secs(10), |s| {
        layer_now(s, v, Duration::from_millis(300)) == Some(2)
    });
    assert!(up, "lifting the cap over events moves the viewer up");
    assert!(sim.say(v, r#"{"type":"quality","quality":"medium"}"#));
    let down = sim.run_until(Duration::from_secs(3), |s| {
        layer_now(s, v, Duration::from_millis(300)) == Some(1)
    });
    assert!(
        down,
        "a lower cap moves the viewer down at once (next keyframe)"
    );
    check_switches(&sim, v);
}

#[test]
fn a_new_target_before_the_first_keyframe_is_asked_for() {
    // No keyframe cache, a publisher that sends keyframes only when asked: a viewer starts on
    // the keyframe it asked for, or never.
    let mut sim = Sim::new(Config {
        shards: 1,
        seed: 7,
        keyframe_cache_age: Duration::ZERO,
        ..Config::default()
    });
    let cfg = Publish {
        codec: Codec::Vp8,
        // The middle layer fits the viewer's starting estimate (300 kbit/s) with room for the
        // harness's per-frame overheads, the top does not.
        simulcast: vec![20, 40, 1500],
        gop: None,
        ..Publish::default()
    };
    // A far publisher: an asked-for keyframe is back no sooner than 200 ms later.
    let publisher = sim
        .publish(SHOW, cfg, Link::with_delay(Duration::from_millis(100)))
        .unwrap();
    sim.run_for(Duration::from_millis(1500));
    let requests = sim.peer(publisher).keyframe_requests.len();
    let near = Duration::from_millis(5);
    let v = sim.view(SHOW, None, Link::with_delay(near)).unwrap();
    // The settle delay is over (the viewer asked for a keyframe of the middle layer) and its
    // events channel is open; no video yet.
    let ready = sim.run_until(Duration::from_secs(2), |s| {
        s.peer(v).channel_at.is_some()
            && s.connected_event(v)
                .is_some_and(|t| s.now() >= t + Duration::from_millis(45))
    });
    assert!(ready, "viewer connected with its events channel");
    assert!(
        sim.peer(v).first_video().is_none(),
        "no video before the change"
    );
    assert!(sim.say(v, r#"{"type":"quality","quality":"low"}"#));
    let asked = sim.now();
    let started = sim.run_until(Duration::from_secs(3), |s| {
        s.peer(v).first_video().is_some()
    });
    assert!(started, "the viewer never started after its target changed");
    let first = sim.peer(v).first_video().unwrap();
    assert!(first.keyframe && first.layer == Some(0), "{first:?}");
    assert!(
        first.at - asked < Duration::from_millis(400),
        "started {:?} after the change",
        first.at - asked
    );
    // The harness's publisher answers any request with a keyframe on every layer, so the
    // start alone does not show the new target was asked for; the requests do: one for the
    // first target, one for the new one (a browser answers per layer, and would send nothing
    // for the layer nobody asked).
    let asked_for = sim.peer(publisher).keyframe_requests.len() - requests;
    assert!(
        asked_for >= 2,
        "{asked_for} keyframe request(s): the new target's was never sent"
    );
}

#[test]
fn viewer_is_told_its_layer() {
    let mut sim = Sim::new(Config {
        shards: 1,
        seed: 7,
        ..Config::default()
    });
    publisher(&mut sim);
    sim.run_for(Duration::from_millis(1500));
    let v = sim
        .view_with(SHOW, None, Link::with_delay(DELAY), Quality::Low)
        .unwrap();
    sim.run_for(Duration::from_secs(3));
    let first = sim.peer(v).texts.first().map(|(_, t)| t.clone());
    assert_eq!(first.as_deref(), Some("{\"type\":\"snapshot\"}"));
    let told = told_layers(&sim, v);
    assert!(
        told.iter().all(|&(_, l, _)| l == 0),
        "capped low: told only layer 0 ({told:?})"
    );
    assert_eq!(
        told.last().map(|t| t.2),
        Some(3),
        "all three layers counted"
    );
    assert!(sim.say(v, r#"{"type":"quality","quality":"high"}"#));
    assert!(sim.run_until(Duration::from_secs(10), |s| {
        layer_now(s, v, Duration::from_millis(300)) == Some(2)
    }));
    assert!(sim.say(v, r#"{"type":"quality","quality":"medium"}"#));
    assert!(sim.run_until(Duration::from_secs(3), |s| {
        layer_now(s, v, Duration::from_millis(300)) == Some(1)
    }));
    sim.run_for(Duration::from_millis(500));
    // Every switch is told as it happens: the message arrives with the new layer's first
    // packets (a link delay apart), not at the next periodic check.
    let mut pkts: Vec<_> = sim.peer(v).video().cloned().collect();
    pkts.sort_by_key(|r| r.seq);
    let told = told_layers(&sim, v);
    let mut switches = 0;
    for w in pkts.windows(2) {
        if w[0].layer == w[1].layer {
            continue;
        }
        switches += 1;
        let (at, layer) = (w[1].at, w[1].layer.unwrap());
        let msg = told
            .iter()
            .find(|&&(t, l, _)| l == layer && t + Duration::from_millis(10) >= at);
        let late = msg.map(|&(t, _, _)| t.saturating_duration_since(at));
        assert!(
            late.is_some_and(|d| d <= DELAY * 2),
            "switch to layer {layer}: told {late:?} after its first packet ({told:?})"
        );
    }
    assert!(switches >= 2, "the viewer switched ({switches})");
    // And never told a layer it is not on: the last message is the layer it ends on.
    assert_eq!(told.last().map(|t| t.1), Some(1));
}

#[test]
fn a_layer_that_never_starts_is_counted_and_skipped() {
    let mut sim = Sim::new(Config {
        shards: 1,
        seed: 5,
        ..Config::default()
    });
    // Three rids in the offer; the top layer never sends (a paused encoder).
    let cfg = layers(&[LAYERS_KBPS[0], LAYERS_KBPS[1], 0]);
    sim.publish(SHOW, cfg, Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_millis(1500));
    let v = sim.view(SHOW, None, Link::with_delay(DELAY)).unwrap();
    sim.run_for(Duration::from_secs(2));
    let silent = |sim: &Sim| sim.shard_metrics(0).layers_silent.get();
    assert_eq!(
        silent(&sim),
        0,
        "3.5 s after the first packet: not yet counted"
    );
    sim.run_for(Duration::from_secs(2));
    assert_eq!(silent(&sim), 1, "the silent top layer is counted");
    // The unlimited viewer is on the highest layer that flows, and is told there are two.
    assert_eq!(layer_now(&sim, v, Duration::from_millis(500)), Some(1));
    let told = told_layers(&sim, v);
    assert_eq!(told.last().map(|t| (t.1, t.2)), Some((1, 2)), "{told:?}");
    sim.run_for(Duration::from_secs(10));
    assert_eq!(silent(&sim), 1, "counted once per publisher session");
    assert_eq!(layer_now(&sim, v, Duration::from_millis(500)), Some(1));
    check_switches(&sim, v);
}

#[test]
fn ssrc_group_sim_offers_are_simulcast() {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 13,
        ..Config::default()
    });
    let cfg = Publish {
        ssrc_group: true,
        ..layers(&LAYERS_KBPS)
    };
    sim.publish(SHOW, cfg, Link::with_delay(DELAY))
        .expect("ssrc-group:SIM publisher accepted");
    sim.run_for(Duration::from_millis(1500));
    let home = sim.home_of(SHOW);
    let free = sim
        .view(SHOW, Some(1 - home), Link::with_delay(DELAY))
        .unwrap();
    let low = sim
        .view_with(SHOW, Some(home), Link::with_delay(DELAY), Quality::Low)
        .unwrap();
    let medium = sim
        .view_with(
            SHOW,
            Some(1 - home),
            Link::with_delay(DELAY),
            Quality::Medium,
        )
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    // Each viewer gets exactly the layer the publisher sent on the SSRC at that place in the
    // group (the payload says which layer it was sent on), never a mix of layers.
    let window = Duration::from_millis(500);
    assert_eq!(layer_now(&sim, free, window), Some(2), "unlimited: top");
    assert_eq!(layer_now(&sim, medium, window), Some(1), "medium cap");
    assert_eq!(layer_now(&sim, low, window), Some(0), "low cap");
    for v in [free, medium, low] {
        check_switches(&sim, v);
    }
    assert_eq!(sim.shard_metrics(home).layers_silent.get(), 0);
}

/// Offers that cannot be simulcast as written are refused at signalling (a 400 over HTTP).
#[test]
fn bad_simulcast_offers_are_refused() {
    fn four_rids(sdp: String) -> String {
        sdp.replace("a=simulcast:send q;h;f", "a=simulcast:send q;h;f;x")
            .replace("a=rid:f send\r\n", "a=rid:f send\r\na=rid:x send\r\n")
    }
    fn four_sim_ssrcs(sdp: String) -> String {
        let line = sdp
            .lines()
            .find(|l| l.starts_with("a=ssrc-group:SIM"))
            .unwrap();
        sdp.replace(line, &format!("{line} 4242"))
    }
    fn repeated_sim_ssrc(sdp: String) -> String {
        let line = sdp
            .lines()
            .find(|l| l.starts_with("a=ssrc-group:SIM"))
            .unwrap();
        let first = line.split_whitespace().nth(1).unwrap();
        sdp.replace(line, &format!("a=ssrc-group:SIM {first} {first}"))
    }
    type Edit = fn(String) -> String;
    let cases: [(&str, bool, Edit, &str); 3] = [
        ("four rids", false, four_rids, "at most 3 layers"),
        ("four SIM ssrcs", true, four_sim_ssrcs, "at most 3 layers"),
        ("a SIM ssrc twice", true, repeated_sim_ssrc, "appears twice"),
    ];
    for (name, ssrc_group, edit, why) in cases {
        let mut sim = Sim::new(Config::default());
        let cfg = Publish {
            simulcast: LAYERS_KBPS.to_vec(),
            ssrc_group,
            offer_edit: Some(edit),
            ..Publish::default()
        };
        match sim.publish(SHOW, cfg, Link::with_delay(DELAY)) {
            Err(hawker::engine::Error::Offer(m)) => assert!(m.contains(why), "{name}: {m}"),
            Err(e) => panic!("{name}: refused for another reason: {e}"),
            Ok(_) => panic!("{name}: accepted"),
        }
        assert_eq!(sim.server_peers(), 0, "{name}: no peer left behind");
    }
}
