//! The forwarding decision: pure functions from packets to rewritten headers.
//!
//! Two stages, both plain data and deterministic:
//!
//! 1. [`SourceMap`] (one per show and track, on the publisher's shard) turns the *publisher
//!    session's* numbering into the *show's* numbering. A show's outgoing streams belong to the
//!    show, not to the publisher session: when the seller reconnects (new SSRC, new random
//!    sequence number and timestamp bases), the show's sequence numbers continue at `last + 1`
//!    and its timestamps continue at `last + elapsed wall time × clock rate`. The result is
//!    computed once per packet and shared by every viewer on every shard, so every viewer of a
//!    show sees the same RTP timestamp for the same frame (the video clock that commerce events
//!    are stamped with).
//! 2. [`decide`] (one call per packet and viewer) says whether this viewer gets the packet and
//!    with which sequence number, payload type and VP8 picture ids. Video starts at a
//!    keyframe; sequence numbers are rebased per viewer so that each viewer's SRTP rollover
//!    counter starts at 0. Timestamps are never changed per viewer.
//!
//! Simulcast: each layer has its own [`SourceMap`] (its own sequence space) but one show clock.
//! A viewer receives one layer at a time ([`Packet::layer`]); when its [`Viewer::target_layer`]
//! changes it keeps its current layer until a keyframe of the target arrives, then continues
//! its own sequence numbers at `last + 1` and, for VP8, its PictureID / TL0PICIDX at
//! `last + 1`, so the decoder sees one continuous stream. See `docs/forwarding.md` for worked
//! examples with wrap-around and a switch.

use std::time::Duration;

pub use crate::codec::Codec;

/// Which of the show's two tracks a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// The audio track.
    Audio,
    /// The video track.
    Video,
}

/// A packet as the publisher sent it, after SRTP, in the publisher session's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// Publisher session generation; changes when the seller reconnects.
    pub session: u64,
    /// Extended (64-bit, never wrapping) sequence number from the receiver.
    pub seq: u64,
    /// RTP timestamp as sent.
    pub ts: u32,
    /// Wall-clock arrival time, as an offset from any fixed origin.
    pub arrival: Duration,
}

/// Show-level numbering of one track (audio or video), continuous across publisher sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMap {
    clock_rate: u32,
    /// Current session and its offsets.
    current: Option<SessionMap>,
    /// Highest show sequence number handed out so far.
    last_seq: u64,
    /// Show timestamp and arrival of the newest packet (by sequence).
    last_ts: u32,
    last_arrival: Duration,
    started: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionMap {
    session: u64,
    /// show_seq = publisher_seq + seq_offset (mod 2^64)
    seq_offset: u64,
    /// show_ts = publisher_ts + ts_offset (mod 2^32)
    ts_offset: u32,
    first_seq: u64,
}

/// Why a packet was not mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// From a publisher session older than the current one.
    OldSession,
    /// Older than the first packet of the current session.
    BeforeSessionStart,
}

impl SourceMap {
    /// A new track with the given RTP clock rate. The show's numbering starts at sequence 1 and
    /// at the first publisher packet's timestamp, so a single-session show is passed through
    /// with the timestamps the publisher chose (handy when reading captures).
    pub fn new(clock_rate: u32) -> SourceMap {
        SourceMap {
            clock_rate,
            current: None,
            last_seq: 0,
            last_ts: 0,
            last_arrival: Duration::ZERO,
            started: false,
        }
    }

    /// Map one publisher packet to the show's `(extended seq, timestamp)`.
    pub fn map(&mut self, p: &Incoming) -> Result<(u64, u32), Stale> {
        let cur = match self.current {
            Some(c) if c.session == p.session => c,
            Some(c) if p.session < c.session => return Err(Stale::OldSession),
            _ => {
                // First packet of a new publisher session: continue the show's numbering.
                let (next_seq, next_ts) = if self.started {
                    let elapsed = p.arrival.saturating_sub(self.last_arrival);
                    let ticks =
                        (elapsed.as_micros() as u64 * self.clock_rate as u64 / 1_000_000).max(1);
                    (self.last_seq + 1, self.last_ts.wrapping_add(ticks as u32))
                } else {
                    (1, p.ts)
                };
                let c = SessionMap {
                    session: p.session,
                    seq_offset: next_seq.wrapping_sub(p.seq),
                    ts_offset: next_ts.wrapping_sub(p.ts),
                    first_seq: p.seq,
                };
                self.current = Some(c);
                c
            }
        };
        if p.seq < cur.first_seq {
            return Err(Stale::BeforeSessionStart);
        }
        let seq = p.seq.wrapping_add(cur.seq_offset);
        let ts = p.ts.wrapping_add(cur.ts_offset);
        if !self.started || seq > self.last_seq {
            self.last_seq = seq;
            self.last_ts = ts;
            self.last_arrival = p.arrival;
            self.started = true;
        }
        Ok((seq, ts))
    }

    /// Newest show timestamp handed out, if any.
    pub fn last_ts(&self) -> Option<u32> {
        self.started.then_some(self.last_ts)
    }
}

/// Show-level timestamps of a track whose sequence numbers live elsewhere: simulcast video has
/// one clock and a sequence space per layer ([`SourceMap`] per layer). Continues across
/// publisher sessions exactly like [`SourceMap`] does: at `last + elapsed wall time × rate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockMap {
    clock_rate: u32,
    /// (session, show_ts = ts + offset)
    current: Option<(u64, u32)>,
    /// Newest show timestamp handed out and its arrival.
    last: Option<(u32, Duration)>,
}

impl ClockMap {
    /// A new clock with the given RTP clock rate; the first session passes through.
    pub fn new(clock_rate: u32) -> ClockMap {
        ClockMap {
            clock_rate,
            current: None,
            last: None,
        }
    }

    /// The show timestamp of publisher timestamp `ts` in `session`; `None` for an old session.
    pub fn map(&mut self, session: u64, ts: u32, arrival: Duration) -> Option<u32> {
        let offset = match self.current {
            Some((s, o)) if s == session => o,
            Some((s, _)) if session < s => return None,
            _ => {
                let next = match self.last {
                    Some((lts, la)) => {
                        let elapsed = arrival.saturating_sub(la);
                        let ticks = (elapsed.as_micros() as u64 * self.clock_rate as u64
                            / 1_000_000)
                            .max(1);
                        lts.wrapping_add(ticks as u32)
                    }
                    None => ts,
                };
                let o = next.wrapping_sub(ts);
                self.current = Some((session, o));
                o
            }
        };
        let out = ts.wrapping_add(offset);
        let newer = match self.last {
            None => true,
            Some((lts, _)) => (out.wrapping_sub(lts) as i32) >= 0,
        };
        if newer {
            self.last = Some((out, arrival));
        }
        Some(out)
    }
}

/// VP8 payload descriptor ids of a packet (RFC 7741), parsed once on the home shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Ids {
    /// PictureID.
    pub picture_id: u16,
    /// The PictureID is 15 bits wide (else 7).
    pub wide: bool,
    /// TL0PICIDX, if present.
    pub tl0: Option<u8>,
}

impl Vp8Ids {
    fn pid_mask(&self) -> u16 {
        if self.wide {
            0x7FFF
        } else {
            0x7F
        }
    }
}

/// A packet in the show's numbering, shared by every viewer (only its header fields here;
/// the payload travels beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Audio or video.
    pub track: Track,
    /// Codec of the payload.
    pub codec: Codec,
    /// Show sequence number (extended), in this packet's layer's numbering.
    pub seq: u64,
    /// Show RTP timestamp (one clock for every layer).
    pub ts: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// First packet of a keyframe: a viewer may start (or switch layers) here.
    pub keyframe_start: bool,
    /// Simulcast layer of this packet (0 without simulcast; 0 is the lowest).
    pub layer: u8,
    /// VP8 PictureID / TL0PICIDX, when the payload carries them.
    pub vp8: Option<Vp8Ids>,
}

/// Per-viewer, per-track forwarding state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// Layer the viewer wants (0 without simulcast). The viewer keeps getting its current
    /// layer until a keyframe of this one arrives.
    pub target_layer: u8,
    state: ViewerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ViewerState {
    /// Nothing sent yet; video waits for a keyframe.
    Waiting,
    /// Forwarding `layer`: out_seq = show_seq - delta (mod 2^64).
    Forwarding {
        delta: u64,
        /// Show seq (of `layer`) where this layer started for the viewer.
        first_show_seq: u64,
        last_show_seq: u64,
        layer: u8,
        /// VP8 rewrite: out = in + offset (mod the id's width).
        pid_offset: u16,
        tl0_offset: u8,
        /// Last VP8 ids sent (after rewrite).
        last_vp8: Option<(u16, Option<u8>)>,
    },
}

/// Payload-type numbers a viewer negotiated, per codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PtMap {
    /// PT for Opus.
    pub opus: Option<u8>,
    /// PT for VP8.
    pub vp8: Option<u8>,
    /// PT for H.264.
    pub h264: Option<u8>,
}

impl PtMap {
    /// The viewer's PT for `codec`.
    pub fn get(&self, codec: Codec) -> Option<u8> {
        match codec {
            Codec::Opus => self.opus,
            Codec::Vp8 => self.vp8,
            Codec::H264 => self.h264,
        }
    }
}

/// What to do with a packet for one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send with these header fields (SSRC is the viewer's own outgoing SSRC for the track).
    Send {
        /// Extended sequence number for this viewer (ROC starts at 0).
        seq: u64,
        /// RTP timestamp (the show's, identical for every viewer).
        ts: u32,
        /// The viewer's payload type for the codec.
        pt: u8,
        /// Marker bit.
        marker: bool,
        /// VP8 (PictureID, TL0PICIDX) to write into the payload descriptor, when they differ
        /// from the packet's own (after a layer switch).
        vp8: Option<(u16, Option<u8>)>,
    },
    /// Do not send.
    Drop(DropReason),
}

/// Why a packet was not sent to a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The viewer has not seen a keyframe yet.
    WaitingForKeyframe,
    /// The viewer did not negotiate this codec.
    CodecNotNegotiated,
    /// Not the viewer's layer.
    OtherLayer,
    /// Older than what the viewer already got (reordered across a start point).
    TooOld,
}

impl Default for Viewer {
    fn default() -> Self {
        Viewer::new()
    }
}

impl Viewer {
    /// A viewer that has received nothing yet.
    pub fn new() -> Viewer {
        Viewer {
            target_layer: 0,
            state: ViewerState::Waiting,
        }
    }

    /// Whether the viewer is receiving.
    pub fn is_forwarding(&self) -> bool {
        matches!(self.state, ViewerState::Forwarding { .. })
    }

    /// The layer the viewer is receiving now, if any.
    pub fn layer(&self) -> Option<u8> {
        match self.state {
            ViewerState::Forwarding { layer, .. } if layer != u8::MAX => Some(layer),
            _ => None,
        }
    }

    /// Forget the start point: the next packet must again be a keyframe (video).
    pub fn restart(&mut self) {
        if let ViewerState::Forwarding { ref mut layer, .. } = self.state {
            // Keep the sequence space continuous: the next start continues after the last one.
            *layer = u8::MAX;
        }
    }
}

/// The per-viewer decision for one packet.
pub fn decide(p: &Packet, v: &mut Viewer, pts: &PtMap) -> Decision {
    let Some(pt) = pts.get(p.codec) else {
        return Decision::Drop(DropReason::CodecNotNegotiated);
    };
    let can_start = p.track == Track::Audio || p.keyframe_start;
    match v.state {
        ViewerState::Waiting => {
            if p.layer != v.target_layer {
                return Decision::Drop(DropReason::OtherLayer);
            }
            if !can_start {
                return Decision::Drop(DropReason::WaitingForKeyframe);
            }
            // Keep the low 16 bits as the show's, start the viewer's rollover counter at 0.
            let delta = p.seq & !0xFFFF;
            v.state = ViewerState::Forwarding {
                delta,
                first_show_seq: p.seq,
                last_show_seq: p.seq,
                layer: p.layer,
                pid_offset: 0,
                tl0_offset: 0,
                last_vp8: p.vp8.map(|i| (i.picture_id, i.tl0)),
            };
            Decision::Send {
                seq: p.seq - delta,
                ts: p.ts,
                pt,
                marker: p.marker,
                vp8: None,
            }
        }
        ViewerState::Forwarding {
            delta,
            first_show_seq,
            last_show_seq,
            layer,
            pid_offset,
            tl0_offset,
            last_vp8,
        } => {
            if p.layer != layer {
                if p.layer != v.target_layer {
                    return Decision::Drop(DropReason::OtherLayer);
                }
                // The target layer: switch (or restart) only at its keyframe; until then the
                // viewer keeps its current layer.
                if !can_start {
                    return Decision::Drop(DropReason::WaitingForKeyframe);
                }
                // Continue right after the last sequence number this viewer got.
                let last_out = last_show_seq.wrapping_sub(delta);
                let new_delta = p.seq.wrapping_sub(last_out.wrapping_add(1));
                // VP8: the first picture of the new layer follows the last one sent.
                let (pid_offset, tl0_offset) = match (p.vp8, last_vp8) {
                    (Some(ids), Some((last_pid, last_tl0))) => {
                        let m = ids.pid_mask();
                        let pid = last_pid.wrapping_add(1) & m;
                        let po = pid.wrapping_sub(ids.picture_id) & m;
                        let to = match (ids.tl0, last_tl0) {
                            (Some(t), Some(lt)) => lt.wrapping_add(1).wrapping_sub(t),
                            _ => 0,
                        };
                        (po, to)
                    }
                    _ => (0, 0),
                };
                v.state = ViewerState::Forwarding {
                    delta: new_delta,
                    first_show_seq: p.seq,
                    last_show_seq: p.seq,
                    layer: p.layer,
                    pid_offset,
                    tl0_offset,
                    last_vp8,
                };
                return send_same_layer(p, v, pt);
            }
            if p.seq < first_show_seq || p.seq + 0x8000 < last_show_seq {
                return Decision::Drop(DropReason::TooOld);
            }
            let _ = (delta, pid_offset, tl0_offset);
            send_same_layer(p, v, pt)
        }
    }
}

/// Send a packet of the viewer's current layer, with its rewrite.
fn send_same_layer(p: &Packet, v: &mut Viewer, pt: u8) -> Decision {
    let ViewerState::Forwarding {
        delta,
        ref mut last_show_seq,
        pid_offset,
        tl0_offset,
        ref mut last_vp8,
        ..
    } = v.state
    else {
        return Decision::Drop(DropReason::WaitingForKeyframe);
    };
    if p.seq > *last_show_seq {
        *last_show_seq = p.seq;
    }
    let mut vp8 = None;
    if let Some(ids) = p.vp8 {
        let pid = ids.picture_id.wrapping_add(pid_offset) & ids.pid_mask();
        let tl0 = ids.tl0.map(|t| t.wrapping_add(tl0_offset));
        *last_vp8 = Some((pid, tl0));
        if pid_offset != 0 || tl0_offset != 0 {
            vp8 = Some((pid, tl0));
        }
    }
    Decision::Send {
        seq: p.seq.wrapping_sub(delta),
        ts: p.ts,
        pt,
        marker: p.marker,
        vp8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(session: u64, seq: u64, ts: u32, ms: u64) -> Incoming {
        Incoming {
            session,
            seq,
            ts,
            arrival: Duration::from_millis(ms),
        }
    }

    fn vpkt(seq: u64, ts: u32, key: bool) -> Packet {
        Packet {
            track: Track::Video,
            codec: Codec::Vp8,
            seq,
            ts,
            marker: false,
            keyframe_start: key,
            layer: 0,
            vp8: None,
        }
    }

    const PTS: PtMap = PtMap {
        opus: Some(111),
        vp8: Some(96),
        h264: Some(102),
    };

    #[test]
    fn single_session_passes_timestamps_through() {
        let mut m = SourceMap::new(90_000);
        assert_eq!(m.map(&inc(1, 5000, 1234, 0)), Ok((1, 1234)));
        assert_eq!(m.map(&inc(1, 5001, 4234, 33)), Ok((2, 4234)));
        // Reordered older packet keeps its place.
        assert_eq!(m.map(&inc(1, 5000, 1234, 34)), Ok((1, 1234)));
        assert_eq!(m.last_ts(), Some(4234));
    }

    #[test]
    fn republish_continues_numbering_with_elapsed_time() {
        let mut m = SourceMap::new(90_000);
        m.map(&inc(1, 65_535, u32::MAX - 100, 0)).unwrap();
        m.map(&inc(1, 65_536, u32::MAX - 10, 10)).unwrap();
        // The seller reconnects 2 s later with fresh random bases.
        let (seq, ts) = m.map(&inc(2, 17, 999, 2010)).unwrap();
        assert_eq!(seq, 3);
        // u32::MAX - 10 + 2 s × 90 kHz wraps around.
        assert_eq!(ts, (u32::MAX - 10).wrapping_add(180_000));
        let (seq2, ts2) = m.map(&inc(2, 18, 999 + 3000, 2043)).unwrap();
        assert_eq!((seq2, ts2), (4, ts.wrapping_add(3000)));
        // A late packet from the old session is dropped.
        assert_eq!(m.map(&inc(1, 65_537, 0, 2044)), Err(Stale::OldSession));
        assert_eq!(m.map(&inc(2, 16, 0, 2045)), Err(Stale::BeforeSessionStart));
    }

    #[test]
    fn video_viewer_starts_at_keyframe_with_roc_zero() {
        let mut v = Viewer::new();
        // Show is at extended seq 70_000 (ROC 1) when the viewer joins.
        assert_eq!(
            decide(&vpkt(70_000, 10, false), &mut v, &PTS),
            Decision::Drop(DropReason::WaitingForKeyframe)
        );
        match decide(&vpkt(70_001, 3010, true), &mut v, &PTS) {
            Decision::Send { seq, ts, pt, .. } => {
                assert_eq!(seq, 70_001 - 65_536);
                assert_eq!(ts, 3010);
                assert_eq!(pt, 96);
            }
            d => panic!("{d:?}"),
        }
        // Then every packet, continuous, crossing the 16-bit wrap.
        let mut last = 70_001 - 65_536;
        for s in 70_002..(70_002 + 70_000) {
            let Decision::Send { seq, .. } = decide(&vpkt(s, 0, false), &mut v, &PTS) else {
                panic!()
            };
            assert_eq!(seq, last + 1);
            last = seq;
        }
        assert!(last > 65_535, "crossed the wrap");
    }

    #[test]
    fn audio_starts_anywhere_and_unknown_codec_is_dropped() {
        let mut v = Viewer::new();
        let a = Packet {
            track: Track::Audio,
            codec: Codec::Opus,
            ..vpkt(9, 48_000, false)
        };
        assert!(matches!(
            decide(&a, &mut v, &PTS),
            Decision::Send {
                seq: 9,
                pt: 111,
                ..
            }
        ));
        let mut v2 = Viewer::new();
        let only_vp8 = PtMap { h264: None, ..PTS };
        let h = Packet {
            codec: Codec::H264,
            ..vpkt(1, 0, true)
        };
        assert_eq!(
            decide(&h, &mut v2, &only_vp8),
            Decision::Drop(DropReason::CodecNotNegotiated)
        );
    }

    fn seq_of(d: Decision) -> u64 {
        match d {
            Decision::Send { seq, .. } => seq,
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn layer_switch_keeps_sequence_continuous() {
        // Each layer has its own show numbering: layer 0 near 1000, layer 1 near 50_000.
        let mut v = Viewer::new();
        let l = |seq, layer, key| Packet {
            layer,
            ..vpkt(seq, 0, key)
        };
        assert_eq!(seq_of(decide(&l(1000, 0, true), &mut v, &PTS)), 1000);
        assert_eq!(
            decide(&l(50_000, 1, true), &mut v, &PTS),
            Decision::Drop(DropReason::OtherLayer)
        );
        assert_eq!(seq_of(decide(&l(1001, 0, false), &mut v, &PTS)), 1001);
        v.target_layer = 1;
        // Until the target's keyframe, the current layer keeps flowing.
        assert_eq!(seq_of(decide(&l(1002, 0, false), &mut v, &PTS)), 1002);
        assert_eq!(
            decide(&l(50_001, 1, false), &mut v, &PTS),
            Decision::Drop(DropReason::WaitingForKeyframe)
        );
        // Keyframe of the new layer: continues right after 1002.
        assert_eq!(seq_of(decide(&l(50_002, 1, true), &mut v, &PTS)), 1003);
        assert_eq!(v.layer(), Some(1));
        assert_eq!(
            decide(&l(1003, 0, false), &mut v, &PTS),
            Decision::Drop(DropReason::OtherLayer)
        );
        assert_eq!(seq_of(decide(&l(50_003, 1, false), &mut v, &PTS)), 1004);
        // Reordered packet from before the switch point of the new layer.
        assert_eq!(
            decide(&l(50_001, 1, false), &mut v, &PTS),
            Decision::Drop(DropReason::TooOld)
        );
        // Down to a layer whose numbering is lower than the viewer's: still continuous.
        v.target_layer = 0;
        assert_eq!(seq_of(decide(&l(1010, 0, true), &mut v, &PTS)), 1005);
        assert_eq!(seq_of(decide(&l(1011, 0, false), &mut v, &PTS)), 1006);
    }

    #[test]
    fn vp8_ids_continue_across_a_switch() {
        let mut v = Viewer::new();
        let l = |seq, layer, key, pid: u16, tl0: u8| Packet {
            layer,
            vp8: Some(Vp8Ids {
                picture_id: pid,
                wide: true,
                tl0: Some(tl0),
            }),
            ..vpkt(seq, 0, key)
        };
        // Layer 0 as sent: no rewrite.
        let d = decide(&l(10, 0, true, 32_766, 255), &mut v, &PTS);
        assert!(matches!(d, Decision::Send { vp8: None, .. }));
        decide(&l(11, 0, false, 32_767, 255), &mut v, &PTS);
        v.target_layer = 2;
        // Layer 2's keyframe has PictureID 100, TL0PICIDX 7: rewritten to follow 32_767 / 255.
        match decide(&l(900, 2, true, 100, 7), &mut v, &PTS) {
            Decision::Send { seq, vp8, .. } => {
                assert_eq!(seq, 12);
                assert_eq!(
                    vp8,
                    Some((0, Some(0))),
                    "15-bit PictureID and TL0PICIDX wrap"
                );
            }
            d => panic!("{d:?}"),
        }
        match decide(&l(901, 2, false, 101, 8), &mut v, &PTS) {
            Decision::Send { vp8, .. } => assert_eq!(vp8, Some((1, Some(1)))),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn too_old_after_start_is_dropped() {
        let mut v = Viewer::new();
        decide(&vpkt(100_000, 0, true), &mut v, &PTS);
        assert_eq!(
            decide(&vpkt(65_000, 0, false), &mut v, &PTS),
            Decision::Drop(DropReason::TooOld)
        );
    }
}
