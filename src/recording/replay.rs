//! Replay: a recorded show played to one WHEP viewer as if it were live.
//!
//! A replay session is a private show for that one viewer (engine show id `{show}~replay-{peer}`),
//! so no live broadcast reaches it and its packets reach no one else. Once the viewer is
//! connected, a feeder task hands the recorded packets — still in the show's numbering — to
//! the viewer's shard as `Msg::Media`, paced by their recorded arrival times, and sends each
//! recorded event on the viewer's `events` channel at its recorded time. Because the packets
//! keep the show's RTP timestamps, each event's `rtp_ts` names the same frame as in the live
//! show, and the SDK reveals the product card on that frame exactly as live.
//!
//! Seeking (`t` seconds from the start of the recording's video) starts at the keyframe at or
//! before `t`; the greeting snapshot carries the highlight in effect at that point. The
//! session's control-plane show is the real show, so a buy goes to the live catalog (current
//! price and stock).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::file::{Event, Packet};
use crate::engine::forwarder::{self, Track};
use crate::engine::{MediaPacket, Msg, PeerId};

/// Why a replay cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The seek point is past the end of the recording.
    #[error("t={t} is past the end of the recording ({duration:.3} s)")]
    PastEnd {
        /// Asked for.
        t: f64,
        /// Recording length.
        duration: f64,
    },
    /// The recording holds no keyframe.
    #[error("the recording has no video keyframe")]
    NoVideo,
}

/// A prepared replay: what to send, from where.
pub struct Plan {
    /// Packets from the starting keyframe on, audio from the same moment.
    pub packets: Vec<Packet>,
    /// Events after the starting point.
    pub events: Vec<Event>,
    /// The last highlight before the starting point (for the greeting), if still shown.
    pub highlight: Option<Value>,
    /// Seconds from the start of the recording where the replay starts (a keyframe).
    pub start: f64,
    /// Length of the recording in seconds.
    pub duration: f64,
}

fn unwrap(prev: &mut Option<(u32, i64)>, ts: u32) -> i64 {
    let v = match *prev {
        None => ts as i64,
        Some((p, pv)) => pv + ts.wrapping_sub(p) as i32 as i64,
    };
    *prev = Some((ts, v));
    v
}

/// Prepare a replay of `pkts`/`events` from `t` seconds (0 = the start).
pub fn plan(mut pkts: Vec<Packet>, events: Vec<Event>, t: f64) -> Result<Plan, Error> {
    pkts.sort_by_key(|p| p.at_us);
    // Video time of each keyframe start, from the first keyframe.
    let mut u = None;
    let mut t0 = None;
    let mut keys: Vec<(f64, u64)> = Vec::new();
    let mut last_video = 0.0;
    for p in pkts.iter().filter(|p| p.track == Track::Video) {
        let v = unwrap(&mut u, p.ts);
        if t0.is_none() && p.keyframe_start {
            t0 = Some(v);
        }
        let Some(t0) = t0 else { continue };
        let secs = (v - t0) as f64 / 90_000.0;
        last_video = secs;
        if p.keyframe_start {
            keys.push((secs, p.at_us));
        }
    }
    if keys.is_empty() {
        return Err(Error::NoVideo);
    }
    let duration = last_video;
    if !(0.0..=duration).contains(&t) {
        return Err(Error::PastEnd { t, duration });
    }
    let (start, start_us) = keys
        .iter()
        .rev()
        .find(|(s, _)| *s <= t + 1e-6)
        .copied()
        .unwrap_or(keys[0]);
    let mut highlight = None;
    for e in events.iter().filter(|e| e.at_us < start_us) {
        match e.msg["type"].as_str() {
            Some("highlight") => highlight = Some(e.msg.clone()),
            Some("unhighlight") | Some("show_ended") => highlight = None,
            _ => {}
        }
    }
    let packets = pkts.into_iter().filter(|p| p.at_us >= start_us).collect();
    let events = events
        .into_iter()
        .filter(|e| e.at_us >= start_us && e.msg["type"] != "show_ended")
        .collect();
    Ok(Plan {
        packets,
        events,
        highlight,
        start,
        duration,
    })
}

/// A replay waiting for its viewer, or running.
pub struct Session {
    /// The engine's show id of this replay.
    pub engine_show: Arc<str>,
    /// The shard of the viewer.
    pub shard: usize,
    /// The snapshot the viewer's `events` channel opens with.
    pub greeting: String,
    /// The plan; taken by the feeder when it starts.
    pub plan: Mutex<Option<Plan>>,
    /// The feeder, once started.
    pub task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Replay sessions by engine peer id.
#[derive(Default)]
pub struct Sessions {
    by_peer: Mutex<HashMap<PeerId, Arc<Session>>>,
}

impl Sessions {
    /// Remember a replay for `peer`.
    pub fn insert(&self, peer: PeerId, s: Session) {
        self.by_peer.lock().insert(peer, Arc::new(s));
    }

    /// The replay of `peer`, if it is one.
    pub fn get(&self, peer: PeerId) -> Option<Arc<Session>> {
        self.by_peer.lock().get(&peer).cloned()
    }

    /// The peer is gone: stop its feeder.
    pub fn remove(&self, peer: PeerId) -> bool {
        let s = self.by_peer.lock().remove(&peer);
        if let Some(s) = &s {
            if let Some(t) = s.task.lock().take() {
                t.abort();
            }
        }
        s.is_some()
    }

    /// Replays running now.
    pub fn len(&self) -> usize {
        self.by_peer.lock().len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The greeting of a replay viewer: the live catalog, the highlight in effect at the starting
/// point, and where the replay starts.
pub fn snapshot(live: &str, plan_start: f64, duration: f64, highlight: Option<&Value>) -> String {
    let mut v: Value = serde_json::from_str(live).unwrap_or_else(|_| json!({}));
    v["highlight"] = highlight.map_or(
        Value::Null,
        |h| json!({"highlight_id": h["highlight_id"], "sku": h["sku"], "rtp_ts": h["rtp_ts"]}),
    );
    v["replay"] = json!({"start": plan_start, "duration": duration});
    v.to_string()
}

/// Start the feeder of a replay whose viewer just connected.
pub fn start(app: Arc<crate::app::App>, peer: PeerId) {
    let Some(s) = app.replays.get(peer) else {
        return;
    };
    let Some(plan) = s.plan.lock().take() else {
        return;
    };
    let sess = s.clone();
    let task = tokio::spawn(async move {
        // Past the shard's settle delay, so the first keyframe is not held back.
        tokio::time::sleep(crate::engine::shard::VIEWER_SETTLE + Duration::from_millis(10)).await;
        let origin_us = plan.packets.first().map_or(0, |p| p.at_us);
        let origin = tokio::time::Instant::now();
        let mut events = plan.events.into_iter().peekable();
        for p in plan.packets {
            while let Some(e) = events.next_if(|e| e.at_us <= p.at_us) {
                send_event(&app, &sess, peer, e, origin, origin_us).await;
            }
            let due = origin + Duration::from_micros(p.at_us.saturating_sub(origin_us));
            tokio::time::sleep_until(due).await;
            let mp = Arc::new(MediaPacket {
                show: sess.engine_show.clone(),
                pkt: forwarder::Packet {
                    track: p.track,
                    codec: p.codec,
                    seq: p.seq,
                    ts: p.ts,
                    marker: p.marker,
                    keyframe_start: p.keyframe_start,
                    layer: p.layer,
                    // One recorded layer: a replay viewer never switches, so VP8 picture ids
                    // need no rewrite.
                    vp8: None,
                },
                payload: p.payload.into(),
                arrival: std::time::Instant::now(),
                vp8: None,
            });
            if !app.engine.shards()[sess.shard].send(Msg::Media(mp)) {
                return;
            }
        }
        for e in events {
            send_event(&app, &sess, peer, e, origin, origin_us).await;
        }
        let end = json!({"type": "replay_ended"}).to_string();
        app.engine.send_text(sess.shard, peer, Arc::from(end));
    });
    *s.task.lock() = Some(task);
}

async fn send_event(
    app: &crate::app::App,
    s: &Session,
    peer: PeerId,
    e: Event,
    origin: tokio::time::Instant,
    origin_us: u64,
) {
    let due = origin + Duration::from_micros(e.at_us.saturating_sub(origin_us));
    tokio::time::sleep_until(due).await;
    app.engine
        .send_text(s.shard, peer, Arc::from(e.msg.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;

    fn pkt(i: u64, key: bool) -> Packet {
        Packet {
            track: Track::Video,
            codec: Codec::Vp8,
            seq: i,
            ts: (i * 3000) as u32,
            marker: true,
            keyframe_start: key,
            layer: 0,
            at_us: 1_000_000 + i * 33_333,
            payload: vec![0x10, 0],
        }
    }

    #[test]
    fn seek_starts_at_the_keyframe_before() {
        // 3 s at 30 fps, a keyframe every second.
        let pkts: Vec<Packet> = (0..90).map(|i| pkt(i, i % 30 == 0)).collect();
        let hl = Event {
            at_us: 1_000_000 + 40 * 33_333,
            msg: json!({"type": "highlight", "highlight_id": "h-1", "sku": "a", "rtp_ts": 120_000}),
        };
        let p = plan(pkts.clone(), vec![hl.clone()], 0.0).unwrap();
        assert_eq!(p.start, 0.0);
        assert_eq!(p.packets.len(), 90);
        assert_eq!(p.events.len(), 1);
        assert!(p.highlight.is_none());
        let p = plan(pkts.clone(), vec![hl.clone()], 1.9).unwrap();
        assert!((p.start - 1.0).abs() < 1e-9, "{}", p.start);
        assert!(p.packets[0].keyframe_start && p.packets[0].seq == 30);
        assert_eq!(p.events.len(), 1, "the highlight at 1.33 s is still ahead");
        let p = plan(pkts.clone(), vec![hl.clone()], 2.5).unwrap();
        assert_eq!(p.packets[0].seq, 60);
        assert!(p.events.is_empty());
        assert_eq!(
            p.highlight.unwrap()["sku"],
            "a",
            "the greeting shows the card on screen"
        );
        assert!(matches!(
            plan(pkts.clone(), vec![], 3.5),
            Err(Error::PastEnd { .. })
        ));
        assert!(matches!(
            plan(pkts, vec![], -1.0),
            Err(Error::PastEnd { .. })
        ));
    }
}
