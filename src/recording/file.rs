//! The on-disk form of one show's recording: two append-only files in the show's folder.
//!
//! * `media.hwr`: an 8-byte magic (`HWREC01\n`), then one record per media packet as
//!   forwarded (the show's numbering):
//!
//!   ```text
//!   len: u32 LE (of the body)   check: u32 LE (FNV-1a of the body)   body:
//!     track u8 (0 audio, 1 video)  codec u8 (0 opus, 1 vp8, 2 h264)  flags u8 (1 marker,
//!     2 keyframe start)  layer u8  seq u64 LE  ts u32 LE  at_us u64 LE (arrival, µs since
//!     the Unix epoch)  payload (the rest)
//!   ```
//! * `events.jsonl`: one JSON object per line, `{"at_us": …, "msg": {…}}`, where `msg` is the
//!   commerce event exactly as viewers received it (so its `rtp_ts` is the show's numbering).
//!
//! Nothing here muxes: a record is written as it comes, and the files are flushed and
//! `fsync`ed about once a second by the writer thread, so a crash loses at most the last
//! second. A SIGKILL can leave a torn record at the end (short, or its page not yet written,
//! which reads back as zeros); [`read_media`] stops at the first record whose length or check
//! does not hold, and [`read_events`] skips a line that is not JSON, so what was synced
//! always reads back.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::Codec;
use crate::engine::forwarder::Track;

/// First bytes of `media.hwr`.
pub const MAGIC: &[u8; 8] = b"HWREC01\n";
/// Name of the media file in a show's folder.
pub const MEDIA: &str = "media.hwr";
/// Name of the event timeline in a show's folder.
pub const EVENTS: &str = "events.jsonl";
/// A record larger than this is not a packet: the reader treats it as a torn tail.
pub const MAX_RECORD: usize = 64 * 1024;
const FIXED: usize = 4 + 8 + 4 + 8;

/// One recorded media packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Audio or video.
    pub track: Track,
    /// Codec of the payload.
    pub codec: Codec,
    /// Show sequence number (extended).
    pub seq: u64,
    /// Show RTP timestamp.
    pub ts: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// First packet of a keyframe.
    pub keyframe_start: bool,
    /// Simulcast layer (0 without simulcast).
    pub layer: u8,
    /// Arrival at the home shard, µs since the Unix epoch.
    pub at_us: u64,
    /// RTP payload.
    pub payload: Vec<u8>,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// When the event was handed to viewers, µs since the Unix epoch.
    pub at_us: u64,
    /// The event as viewers received it.
    pub msg: serde_json::Value,
}

fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn codec_byte(c: Codec) -> u8 {
    match c {
        Codec::Opus => 0,
        Codec::Vp8 => 1,
        Codec::H264 => 2,
    }
}

fn codec_of(b: u8) -> Option<Codec> {
    match b {
        0 => Some(Codec::Opus),
        1 => Some(Codec::Vp8),
        2 => Some(Codec::H264),
        _ => None,
    }
}

/// Append one media record (header and payload) to `out`; returns the bytes written.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    out: &mut Vec<u8>,
    track: Track,
    codec: Codec,
    flags: (bool, bool),
    layer: u8,
    seq: u64,
    ts: u32,
    at_us: u64,
    payload: &[u8],
) -> usize {
    let start = out.len();
    let len = FIXED + payload.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let body = out.len();
    out.push(match track {
        Track::Audio => 0,
        Track::Video => 1,
    });
    out.push(codec_byte(codec));
    out.push(flags.0 as u8 | (flags.1 as u8) << 1);
    out.push(layer);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&at_us.to_le_bytes());
    out.extend_from_slice(payload);
    let check = fnv1a(&out[body..]);
    out[body - 4..body].copy_from_slice(&check.to_le_bytes());
    out.len() - start
}

fn decode(body: &[u8]) -> Option<Packet> {
    if body.len() < FIXED {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap_or([0; 8]));
    Some(Packet {
        track: match body[0] {
            0 => Track::Audio,
            1 => Track::Video,
            _ => return None,
        },
        codec: codec_of(body[1])?,
        marker: body[2] & 1 != 0,
        keyframe_start: body[2] & 2 != 0,
        layer: body[3],
        seq: u64_at(4),
        ts: u32::from_le_bytes(body[12..16].try_into().unwrap_or([0; 4])),
        at_us: u64_at(16),
        payload: body[FIXED..].to_vec(),
    })
}

/// Every whole media record of a recording, in order; a torn or garbled tail ends the list.
/// The video is returned as one layer 0 in one sequence space ([`one_layer`]).
pub fn read_media(path: &Path) -> std::io::Result<Vec<Packet>> {
    let mut out = read_records(path)?;
    one_layer(&mut out);
    Ok(out)
}

/// A simulcast recording changes layer at one of the new layer's keyframes (up when a higher
/// layer starts, down when the recorded one stops), and each layer has its own sequence
/// numbers: renumber each run of a layer to follow the previous run's last number, and call it
/// all layer 0, as a replay viewer and an exported file see it. Every layer sends a keyframe
/// for the same frame, so the old layer may have sent part or all of that frame (same
/// timestamp) before the switch: it is dropped, and the new layer's keyframe takes its place.
pub fn one_layer(pkts: &mut Vec<Packet>) {
    let mut drop = vec![false; pkts.len()];
    let mut prev: Option<usize> = None;
    for i in 0..pkts.len() {
        if pkts[i].track != Track::Video {
            continue;
        }
        if let Some(pi) = prev.filter(|&pi| pkts[pi].layer != pkts[i].layer) {
            let (old, ts) = (pkts[pi].layer, pkts[i].ts);
            for j in (0..=pi).rev() {
                let q = &pkts[j];
                if q.track != Track::Video {
                    continue;
                }
                if q.layer != old || q.ts != ts {
                    break;
                }
                drop[j] = true;
            }
        }
        prev = Some(i);
    }
    if drop.iter().any(|d| *d) {
        let mut k = 0;
        pkts.retain(|_| {
            k += 1;
            !drop[k - 1]
        });
    }
    let mut run: Option<u8> = None;
    let mut offset: i64 = 0;
    let mut last: Option<u64> = None;
    for p in pkts.iter_mut().filter(|p| p.track == Track::Video) {
        if run != Some(p.layer) {
            if let (Some(_), Some(l)) = (run, last) {
                offset = (l as i64 + 1).wrapping_sub(p.seq as i64);
            }
            run = Some(p.layer);
        }
        p.seq = (p.seq as i64).wrapping_add(offset) as u64;
        last = Some(last.map_or(p.seq, |l| l.max(p.seq)));
        p.layer = 0;
    }
}

fn read_records(path: &Path) -> std::io::Result<Vec<Packet>> {
    let mut r = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut head = [0u8; 8];
    let mut body = Vec::new();
    loop {
        if r.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let check = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if !(FIXED..=MAX_RECORD).contains(&len) {
            break;
        }
        body.resize(len, 0);
        if r.read_exact(&mut body).is_err() || fnv1a(&body) != check {
            break;
        }
        match decode(&body) {
            Some(p) => out.push(p),
            None => break,
        }
    }
    Ok(out)
}

/// Every whole event line of a recording, in order (a torn last line is skipped).
pub fn read_events(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Event>(line).ok())
        .collect())
}

/// One show's open recording files.
pub struct Files {
    media: BufWriter<File>,
    events: BufWriter<File>,
    dirty: bool,
}

impl Files {
    /// Open (or create) a show's files for appending.
    pub fn open(dir: &Path) -> std::io::Result<Files> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(MEDIA);
        let mut media = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        if media.metadata()?.len() == 0 {
            media.write_all(MAGIC)?;
        } else {
            // A previous run may have died mid-record: cut the file back to its whole records
            // so new ones are reachable.
            let whole = whole_length(&path)?;
            media.set_len(whole)?;
        }
        let events = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(EVENTS))?;
        Ok(Files {
            media: BufWriter::with_capacity(256 * 1024, media),
            events: BufWriter::new(events),
            dirty: false,
        })
    }

    /// Append encoded media records.
    pub fn write_media(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.dirty = true;
        self.media.write_all(bytes)
    }

    /// Append one event line.
    pub fn write_event(&mut self, ev: &Event) -> std::io::Result<usize> {
        self.dirty = true;
        let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.events.write_all(&line)?;
        Ok(line.len())
    }

    /// Flush buffers and `fsync` both files, if anything was written since the last sync.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        self.media.flush()?;
        self.events.flush()?;
        self.media.get_ref().sync_data()?;
        self.events.get_ref().sync_data()
    }
}

/// Length of the whole-record prefix of a media file.
fn whole_length(path: &Path) -> std::io::Result<u64> {
    let mut r = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Ok(0);
    }
    let mut pos = MAGIC.len() as u64;
    let mut head = [0u8; 8];
    let mut body = Vec::new();
    loop {
        if r.read_exact(&mut head).is_err() {
            return Ok(pos);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let check = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if !(FIXED..=MAX_RECORD).contains(&len) {
            return Ok(pos);
        }
        body.resize(len, 0);
        if r.read_exact(&mut body).is_err() || fnv1a(&body) != check {
            return Ok(pos);
        }
        pos += 8 + len as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64) -> Vec<u8> {
        let mut v = Vec::new();
        encode(
            &mut v,
            Track::Video,
            Codec::Vp8,
            (seq.is_multiple_of(2), seq == 0),
            0,
            seq,
            seq as u32 * 3000,
            1_000_000 + seq,
            &[seq as u8; 100],
        );
        v
    }

    #[test]
    fn a_layer_switch_reads_as_one_numbering() {
        let pkt = |layer: u8, seq: u64, ts: u32, key: bool| Packet {
            track: Track::Video,
            codec: Codec::Vp8,
            seq,
            ts,
            marker: true,
            keyframe_start: key,
            layer,
            at_us: 0,
            payload: vec![],
        };
        let mut v = vec![
            pkt(0, 500, 0, true),
            pkt(0, 501, 3000, false),
            pkt(2, 90_000, 6000, true),
            pkt(2, 90_001, 9000, false),
            pkt(1, 7, 12_000, true),
        ];
        one_layer(&mut v);
        let seqs: Vec<u64> = v.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![500, 501, 502, 503, 504]);
        assert!(v.iter().all(|p| p.layer == 0));
    }

    #[test]
    fn the_old_layers_copy_of_the_switch_frame_is_dropped() {
        let pkt = |track: Track, layer: u8, seq: u64, ts: u32, key: bool| Packet {
            track,
            codec: Codec::Vp8,
            seq,
            ts,
            marker: false,
            keyframe_start: key,
            layer,
            at_us: seq,
            payload: vec![],
        };
        let mut v = vec![
            pkt(Track::Video, 0, 10, 0, true),
            pkt(Track::Video, 0, 11, 3000, true),
            pkt(Track::Audio, 0, 70, 1000, false),
            pkt(Track::Video, 0, 12, 3000, false),
            pkt(Track::Video, 2, 400, 3000, true),
            pkt(Track::Video, 2, 401, 3000, false),
            pkt(Track::Video, 2, 402, 6000, false),
        ];
        one_layer(&mut v);
        let got: Vec<(Track, u64, u32, u64)> =
            v.iter().map(|p| (p.track, p.seq, p.ts, p.at_us)).collect();
        assert_eq!(
            got,
            vec![
                (Track::Video, 10, 0, 10),
                (Track::Audio, 70, 1000, 70),
                (Track::Video, 11, 3000, 400),
                (Track::Video, 12, 3000, 401),
                (Track::Video, 13, 6000, 402),
            ]
        );
    }

    #[test]
    fn round_trip_and_torn_tails() {
        let dir = std::env::temp_dir().join(format!("hawker-rec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut f = Files::open(&dir).unwrap();
        for s in 0..10 {
            f.write_media(&rec(s)).unwrap();
        }
        f.sync().unwrap();
        drop(f);
        let path = dir.join(MEDIA);
        let all = read_media(&path).unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all[3].seq, 3);
        assert_eq!(all[3].ts, 9000);
        assert!(all[0].keyframe_start && all[0].marker && !all[1].marker);
        assert_eq!(all[9].payload, vec![9u8; 100]);

        // A half-written record, then zeros (a page not yet written back).
        let mut bytes = std::fs::read(&path).unwrap();
        let half = rec(10);
        bytes.extend_from_slice(&half[..half.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_media(&path).unwrap().len(), 10);
        bytes.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_media(&path).unwrap().len(), 10);
        // A record with a flipped byte is not trusted.
        let mut flipped = std::fs::read(&path).unwrap();
        flipped.truncate(8 + 9 * rec(0).len());
        let mut last = rec(9);
        last[40] ^= 1;
        flipped.extend_from_slice(&last);
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(read_media(&path).unwrap().len(), 9);

        // Reopening cuts the torn tail so appended records are reachable.
        std::fs::write(&path, &bytes).unwrap();
        let mut f = Files::open(&dir).unwrap();
        f.write_media(&rec(10)).unwrap();
        f.sync().unwrap();
        assert_eq!(read_media(&path).unwrap().len(), 11);

        // Events: a torn last line is skipped.
        let ev = Event {
            at_us: 5,
            msg: serde_json::json!({"type": "highlight", "rtp_ts": 42}),
        };
        f.write_event(&ev).unwrap();
        f.sync().unwrap();
        let mut text = std::fs::read(dir.join(EVENTS)).unwrap();
        text.extend_from_slice(b"{\"at_us\": 6, \"ms");
        std::fs::write(dir.join(EVENTS), &text).unwrap();
        assert_eq!(read_events(&dir.join(EVENTS)).unwrap(), vec![ev]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
