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
//! price and stock); the order keeps the moment of the replay it was placed at
//! ([`Session::moment`]).
//!
//! A session ends from several places at once (the shard's `Gone`, a `DELETE`, a cancelled
//! WHEP request): [`Sessions::remove`] marks the feeder stopped under the same lock
//! [`start`] spawns it under, so a feeder never starts for a session already gone, and a
//! running one stops at its next packet even if the abort lands mid-step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
    /// Video timestamp of that keyframe.
    pub start_ts: u32,
    /// Length of the recording in seconds.
    pub duration: f64,
    /// Video timestamp of the recording's first keyframe: second 0 of the replay.
    pub origin_ts: u32,
    /// Every highlight (`Some(id)`) and unhighlight (`None`) of the recording, with its
    /// `rtp_ts`, in order.
    pub cards: Vec<(u32, Option<String>)>,
    /// Every highlight: seconds from the start of the recording (its `rtp_ts` on the video
    /// timeline, millisecond precision), id and sku.
    pub chapters: Vec<(f64, String, String)>,
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
    let mut keys: Vec<(f64, u64, u32)> = Vec::new();
    let mut origin_ts = 0;
    let mut last_video = 0.0;
    for p in pkts.iter().filter(|p| p.track == Track::Video) {
        let v = unwrap(&mut u, p.ts);
        if t0.is_none() && p.keyframe_start {
            t0 = Some(v);
            origin_ts = p.ts;
        }
        let Some(t0) = t0 else { continue };
        let secs = (v - t0) as f64 / 90_000.0;
        last_video = secs;
        if p.keyframe_start {
            keys.push((secs, p.at_us, p.ts));
        }
    }
    if keys.is_empty() {
        return Err(Error::NoVideo);
    }
    let duration = last_video;
    if !(0.0..=duration).contains(&t) {
        return Err(Error::PastEnd { t, duration });
    }
    let (start, start_us, start_ts) = keys
        .iter()
        .rev()
        .find(|(s, _, _)| *s <= t + 1e-6)
        .copied()
        .unwrap_or(keys[0]);
    let cards = events
        .iter()
        .filter_map(|e| {
            let ts = e.msg["rtp_ts"].as_u64()? as u32;
            match e.msg["type"].as_str()? {
                "highlight" => Some((ts, e.msg["highlight_id"].as_str().map(str::to_string))),
                "unhighlight" => Some((ts, None)),
                _ => None,
            }
        })
        .collect();
    let chapters = events
        .iter()
        .filter(|e| e.msg["type"] == "highlight")
        .filter_map(|e| {
            let ts = e.msg["rtp_ts"].as_u64()? as u32;
            let secs = ts.wrapping_sub(origin_ts) as i32 as f64 / 90_000.0;
            Some((
                (secs.max(0.0) * 1000.0).round() / 1000.0,
                e.msg["highlight_id"].as_str()?.to_string(),
                e.msg["sku"].as_str()?.to_string(),
            ))
        })
        .collect();
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
        start_ts,
        duration,
        origin_ts,
        cards,
        chapters,
    })
}

/// The feeder of a session.
enum Feeder {
    /// The viewer has not connected yet.
    Waiting,
    /// Playing.
    Running(tokio::task::JoinHandle<()>),
    /// The session is gone: nothing may start.
    Stopped,
}

/// Where in a replay something happened (an order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moment {
    /// Seconds from the start of the recording's video.
    pub at: f64,
    /// The frame's timestamp in the show's numbering.
    pub rtp_ts: u32,
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
    plan: Mutex<Option<Plan>>,
    feeder: Mutex<Feeder>,
    /// Set with `Feeder::Stopped`, read by the feeder between packets without the lock.
    stopped: AtomicBool,
    origin_ts: u32,
    duration: f64,
    /// Timestamp of the newest video packet handed to the viewer.
    fed_ts: AtomicU32,
    cards: Vec<(u32, Option<String>)>,
}

impl Session {
    /// A session that plays `plan` to the viewer once it connects.
    pub fn new(engine_show: Arc<str>, shard: usize, greeting: String, plan: Plan) -> Session {
        let start_ts = plan
            .origin_ts
            .wrapping_add((plan.start * 90_000.0).round() as u32);
        Session {
            engine_show,
            shard,
            greeting,
            origin_ts: plan.origin_ts,
            duration: plan.duration,
            fed_ts: AtomicU32::new(start_ts),
            cards: plan.cards.clone(),
            plan: Mutex::new(Some(plan)),
            feeder: Mutex::new(Feeder::Waiting),
            stopped: AtomicBool::new(false),
        }
    }

    /// The moment of the replay a viewer acts at: the frame it names (`rtp_ts`, from its
    /// `buy`) when that frame is in the recording, else the newest frame it was sent.
    pub fn moment(&self, rtp_ts: Option<u32>) -> Moment {
        let secs = |ts: u32| self.secs(ts);
        let ts = rtp_ts
            .filter(|&ts| (0.0..=self.duration + 1.0).contains(&secs(ts)))
            .unwrap_or_else(|| self.fed_ts.load(Ordering::Relaxed));
        Moment {
            at: (secs(ts).max(0.0) * 1000.0).round() / 1000.0,
            rtp_ts: ts,
        }
    }

    fn secs(&self, ts: u32) -> f64 {
        ts.wrapping_sub(self.origin_ts) as i32 as f64 / 90_000.0
    }

    /// The id of the card on screen at `m`, if any.
    pub fn highlight_at(&self, m: Moment) -> Option<String> {
        let at = self.secs(m.rtp_ts);
        self.cards
            .iter()
            .take_while(|(ts, _)| self.secs(*ts) <= at)
            .last()
            .and_then(|(_, id)| id.clone())
    }

    /// Start the feeder made by `spawn`, unless the session is already stopped or started;
    /// whether it started.
    pub fn run(&self, spawn: impl FnOnce(Plan) -> tokio::task::JoinHandle<()>) -> bool {
        let mut f = self.feeder.lock();
        if !matches!(*f, Feeder::Waiting) {
            return false;
        }
        let Some(plan) = self.plan.lock().take() else {
            return false;
        };
        *f = Feeder::Running(spawn(plan));
        true
    }

    /// Stop the feeder, now and for good.
    pub fn stop(&self) {
        let mut f = self.feeder.lock();
        self.stopped.store(true, Ordering::Relaxed);
        if let Feeder::Running(t) = std::mem::replace(&mut *f, Feeder::Stopped) {
            t.abort();
        }
    }

    /// Whether the session is over.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// Replay sessions by engine peer id.
#[derive(Default)]
pub struct Sessions {
    by_peer: Mutex<HashMap<PeerId, Arc<Session>>>,
}

impl Sessions {
    /// Remember a replay for `peer`.
    pub fn insert(&self, peer: PeerId, s: Session) -> Arc<Session> {
        let s = Arc::new(s);
        self.by_peer.lock().insert(peer, s.clone());
        s
    }

    /// The replay of `peer`, if it is one.
    pub fn get(&self, peer: PeerId) -> Option<Arc<Session>> {
        self.by_peer.lock().get(&peer).cloned()
    }

    /// The peer is gone: stop its feeder.
    pub fn remove(&self, peer: PeerId) -> bool {
        let s = self.by_peer.lock().remove(&peer);
        if let Some(s) = &s {
            s.stop();
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
/// point, where the replay starts and its chapters (each highlight, in seconds from the start
/// of the recording, for a product list that seeks). Its `rtp_ts` is the starting keyframe's:
/// the state it describes is that frame's.
pub fn snapshot(live: &str, plan: &Plan) -> String {
    let mut v: Value = serde_json::from_str(live).unwrap_or_else(|_| json!({}));
    v["highlight"] = plan.highlight.as_ref().map_or(
        Value::Null,
        |h| json!({"highlight_id": h["highlight_id"], "sku": h["sku"], "rtp_ts": h["rtp_ts"]}),
    );
    v["rtp_ts"] = json!(plan.start_ts);
    let chapters: Vec<Value> = plan
        .chapters
        .iter()
        .map(|(t, id, sku)| json!({"t": t, "highlight_id": id, "sku": sku}))
        .collect();
    v["replay"] = json!({"start": plan.start, "duration": plan.duration, "chapters": chapters});
    v.to_string()
}

/// Start the feeder of a replay whose viewer just connected.
pub fn start(app: Arc<crate::app::App>, peer: PeerId) {
    let Some(s) = app.replays.get(peer) else {
        return;
    };
    let sess = s.clone();
    s.run(move |plan| tokio::spawn(feed(app, sess, peer, plan)));
}

async fn feed(app: Arc<crate::app::App>, sess: Arc<Session>, peer: PeerId, plan: Plan) {
    // Past the shard's settle delay, so the first keyframe is not held back.
    tokio::time::sleep(crate::engine::shard::VIEWER_SETTLE + Duration::from_millis(10)).await;
    let origin_us = plan.packets.first().map_or(0, |p| p.at_us);
    let origin = tokio::time::Instant::now();
    let mut events = plan.events.into_iter().peekable();
    for p in plan.packets {
        while let Some(e) = events.next_if(|e| e.at_us <= p.at_us) {
            if !send_event(&app, &sess, peer, e, origin, origin_us).await {
                return;
            }
        }
        let due = origin + Duration::from_micros(p.at_us.saturating_sub(origin_us));
        tokio::time::sleep_until(due).await;
        if sess.stopped() {
            return;
        }
        if p.track == Track::Video {
            sess.fed_ts.store(p.ts, Ordering::Relaxed);
        }
        let mp = Arc::new(MediaPacket {
            show: sess.engine_show.clone(),
            pkt: forwarder::Packet {
                track: p.track,
                codec: p.codec,
                seq: p.seq,
                ts: p.ts,
                marker: p.marker,
                keyframe_start: p.keyframe_start,
                // The recording reads as one layer (`file::read_media`).
                layer: 0,
                // A replay viewer never switches layers, so VP8 picture ids need no rewrite.
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
        if !send_event(&app, &sess, peer, e, origin, origin_us).await {
            return;
        }
    }
    let end = json!({"type": "replay_ended"}).to_string();
    app.engine.send_text(sess.shard, peer, Arc::from(end));
}

/// Send one recorded event at its time; false once the session is over.
async fn send_event(
    app: &crate::app::App,
    s: &Session,
    peer: PeerId,
    e: Event,
    origin: tokio::time::Instant,
    origin_us: u64,
) -> bool {
    let due = origin + Duration::from_micros(e.at_us.saturating_sub(origin_us));
    tokio::time::sleep_until(due).await;
    if s.stopped() {
        return false;
    }
    app.engine
        .send_text(s.shard, peer, Arc::from(e.msg.to_string()));
    true
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

    fn session() -> Session {
        let pkts: Vec<Packet> = (0..90).map(|i| pkt(i, i % 30 == 0)).collect();
        let p = plan(pkts, vec![], 0.0).unwrap();
        Session::new(Arc::from("s~replay-1"), 0, String::new(), p)
    }

    #[tokio::test]
    async fn a_session_gone_first_never_starts_its_feeder() {
        // `Gone` (or DELETE) wins the race against `Connected`.
        let s = session();
        s.stop();
        let mut spawned = false;
        assert!(!s.run(|_| {
            spawned = true;
            tokio::spawn(async {})
        }));
        assert!(!spawned, "a feeder started for a session already gone");

        // Started, then gone: the feeder is aborted, and a second start is refused.
        let s = session();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(s.run(move |_| tokio::spawn(async move {
            let _alive = tx;
            std::future::pending::<()>().await
        })));
        assert!(!s.run(|_| tokio::spawn(async {})), "started twice");
        s.stop();
        assert!(s.stopped());
        let dropped = tokio::time::timeout(Duration::from_secs(2), rx).await;
        assert!(matches!(dropped, Ok(Err(_))), "the feeder still runs");
    }

    #[test]
    fn the_moment_of_a_buy() {
        let s = session();
        // 3 s recording from ts 0; a frame at 1.5 s.
        let m = s.moment(Some(135_000));
        assert_eq!((m.at, m.rtp_ts), (1.5, 135_000));
        // A frame outside the recording: the newest frame sent (the start here).
        let m = s.moment(Some(4_000_000_000));
        assert_eq!((m.at, m.rtp_ts), (0.0, 0));
        assert_eq!(s.moment(None).rtp_ts, 0);
    }

    #[test]
    fn the_card_on_screen_at_a_moment() {
        let pkts: Vec<Packet> = (0..90).map(|i| pkt(i, i % 30 == 0)).collect();
        let ev = |ty: &str, id: &str, ts: u32| Event {
            at_us: 0,
            msg: json!({"type": ty, "highlight_id": id, "rtp_ts": ts}),
        };
        let events = vec![
            ev("highlight", "h-1", 30_000),
            ev("unhighlight", "h-1", 90_000),
            ev("highlight", "h-2", 180_000),
        ];
        let p = plan(pkts, events, 0.0).unwrap();
        let s = Session::new(Arc::from("s~replay-1"), 0, String::new(), p);
        let at = |ts| s.highlight_at(s.moment(Some(ts)));
        assert_eq!(at(0), None);
        assert_eq!(at(30_000).as_deref(), Some("h-1"));
        assert_eq!(at(89_999).as_deref(), Some("h-1"));
        assert_eq!(at(90_000), None);
        assert_eq!(at(200_000).as_deref(), Some("h-2"));
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
