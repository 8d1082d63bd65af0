//! Export: a recording as a standard file any player or CDN takes, plus its chapters.
//!
//! * VP8 + Opus → WebM (`webm-iterable`), highlights as Matroska chapters.
//! * H.264 + Opus → MP4 (`shiguredo_mp4`'s muxer, [`mp4`]), highlights as Nero chapters.
//! * [`chapters`]: every highlight with its time in seconds from the start of the file, and
//!   its `rtp_ts`, so a player can show the product cards.
//!
//! Depacketizing (RFC 7741 for VP8, RFC 6184 for H.264; an Opus RTP payload is one frame)
//! happens here, on export, never on the live path. A frame with a missing packet is left
//! out, and so is every frame after it up to the next keyframe, so a decoder never sees a
//! reference it lacks.
//!
//! Timing: each track keeps its own RTP clock; the two are aligned by the arrival time of
//! their first packets (the home shard's receive time). Time 0 is the first frame written.
//! A highlight's chapter time is its `rtp_ts` on the video track's timeline, so it names the
//! same frame as live.

use std::io::Write;

use serde::Serialize;
use webm_iterable::matroska_spec::{Master, MatroskaSpec, SimpleBlock};
use webm_iterable::WebmWriter;

mod mp4;

use super::file::{Event, Packet};
use crate::codec::Codec;
use crate::engine::forwarder::Track;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The recording has no decodable video (no keyframe).
    #[error("the recording has no complete video keyframe")]
    NoVideo,
    /// Writing failed.
    #[error("writing the export failed: {0}")]
    Write(String),
}

/// One chapter of an export.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chapter {
    /// Seconds from the start of the exported file.
    pub start: f64,
    /// The highlight's `rtp_ts` in the show's numbering.
    pub rtp_ts: u32,
    /// The highlight id.
    pub id: String,
    /// The product shown.
    pub sku: String,
}

/// What an export holds, for the API's headers and the chapters document.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `video/webm` or `video/mp4`.
    pub content_type: &'static str,
    /// `vp8` or `h264`.
    pub video_codec: &'static str,
    /// Whether an Opus track is present.
    pub audio: bool,
    /// Seconds.
    pub duration: f64,
    /// Video frames written.
    pub frames: usize,
    /// Highlights.
    pub chapters: Vec<Chapter>,
}

/// A whole frame (or Opus packet) with its time.
struct Frame {
    ms: i64,
    /// RTP ticks since the track's first frame (90 kHz video, 48 kHz audio).
    ticks: i64,
    key: bool,
    track: u64,
    data: Vec<u8>,
}

fn unwrap_ts(prev: &mut Option<(u32, i64)>, ts: u32) -> i64 {
    let v = match *prev {
        None => ts as i64,
        Some((p, pv)) => pv + ts.wrapping_sub(p) as i32 as i64,
    };
    *prev = Some((ts, v));
    v
}

/// Strip the VP8 payload descriptor (RFC 7741 §4.2).
fn vp8_payload(p: &[u8]) -> Option<&[u8]> {
    let b0 = *p.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            let m = *p.get(i)?;
            i += if m & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    p.get(i..)
}

/// Append H.264 NAL units of one RTP payload (RFC 6184: single NAL, STAP-A, FU-A) to `out`
/// with 4-byte length prefixes; SPS and PPS are also kept in `params`.
fn h264_payload(p: &[u8], out: &mut Vec<u8>, params: &mut H264Params) -> Option<()> {
    let nal_type = p.first()? & 0x1f;
    let mut push = |nal: &[u8], out: &mut Vec<u8>| {
        params.see(nal);
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    };
    match nal_type {
        1..=23 => push(p, out),
        24 => {
            let mut i = 1;
            while i + 2 <= p.len() {
                let n = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                let nal = p.get(i + 2..i + 2 + n)?;
                push(nal, out);
                i += 2 + n;
            }
        }
        28 => {
            let fu = *p.get(1)?;
            let data = p.get(2..)?;
            if fu & 0x80 != 0 {
                let header = (p[0] & 0xe0) | (fu & 0x1f);
                params.fu_start = out.len();
                out.extend_from_slice(&[0; 4]);
                out.push(header);
            }
            out.extend_from_slice(data);
            if fu & 0x40 != 0 {
                let start = params.fu_start;
                let len = out.len().checked_sub(start + 4)?;
                out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
                let nal = out[start + 4..].to_vec();
                params.see(&nal);
            }
        }
        _ => return None,
    }
    Some(())
}

#[derive(Default)]
struct H264Params {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    fu_start: usize,
}

impl H264Params {
    fn see(&mut self, nal: &[u8]) {
        match nal.first().map(|b| b & 0x1f) {
            Some(7) if self.sps.is_none() => self.sps = Some(nal.to_vec()),
            Some(8) if self.pps.is_none() => self.pps = Some(nal.to_vec()),
            _ => {}
        }
    }
}

/// Width and height from a VP8 keyframe (RFC 6386 §9.1).
fn vp8_size(frame: &[u8]) -> Option<(u64, u64)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w as u64, h as u64))
}

struct Video {
    codec: Codec,
    frames: Vec<Frame>,
    /// Unwrapped RTP timestamp of the first frame written, and its arrival (µs).
    origin: Option<(i64, u64)>,
    size: Option<(u64, u64)>,
    /// H.264: the first SPS and PPS seen (for the MP4 `avcC`).
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    unwrap: Option<(u32, i64)>,
}

/// Reassemble the video frames: packets in sequence order, grouped by timestamp, complete
/// from a frame start to the marker.
fn video_frames(pkts: &[&Packet]) -> Option<Video> {
    let codec = pkts.first()?.codec;
    let mut v = Video {
        codec,
        frames: Vec::new(),
        origin: None,
        size: None,
        sps: None,
        pps: None,
        unwrap: None,
    };
    let mut params = H264Params::default();
    let mut need_key = true;
    let mut i = 0;
    while i < pkts.len() {
        // One frame: consecutive packets with the same timestamp.
        let ts = pkts[i].ts;
        let mut j = i;
        while j < pkts.len() && pkts[j].ts == ts {
            j += 1;
        }
        let group = &pkts[i..j];
        // A gap before this frame is a whole frame (or more) lost: what follows may refer to
        // it, so nothing goes out until the next keyframe, which may be this frame.
        if i > 0 && pkts[i - 1].seq + 1 != group[0].seq {
            need_key = true;
        }
        let complete = group.windows(2).all(|w| w[1].seq == w[0].seq + 1)
            && group.last().is_some_and(|p| p.marker);
        let key = group[0].keyframe_start;
        i = j;
        if !complete {
            need_key = true;
            continue;
        }
        if need_key && !key {
            continue;
        }
        let mut data = Vec::new();
        let ok = group.iter().all(|p| match codec {
            Codec::H264 => h264_payload(&p.payload, &mut data, &mut params).is_some(),
            _ => match vp8_payload(&p.payload) {
                Some(b) => {
                    data.extend_from_slice(b);
                    true
                }
                None => false,
            },
        });
        if !ok || data.is_empty() {
            need_key = true;
            continue;
        }
        need_key = false;
        if key && v.size.is_none() && codec == Codec::Vp8 {
            v.size = vp8_size(&data);
        }
        let t = unwrap_ts(&mut v.unwrap, ts);
        let (t0, _) = *v.origin.get_or_insert((t, group[0].at_us));
        v.frames.push(Frame {
            ms: (t - t0) * 1000 / 90_000,
            ticks: t - t0,
            key,
            track: 1,
            data,
        });
    }
    if codec == Codec::H264 {
        v.sps = params.sps.clone();
        v.pps = params.pps.clone();
        v.size = Some((0, 0));
    }
    (!v.frames.is_empty()).then_some(v)
}

fn audio_frames(pkts: &[&Packet], video_start_us: u64) -> Vec<Frame> {
    let Some(first) = pkts.first() else {
        return Vec::new();
    };
    let offset_ms = (first.at_us as i64 - video_start_us as i64) / 1000;
    let mut unwrap = None;
    let mut t0 = None;
    pkts.iter()
        .filter_map(|p| {
            let t = unwrap_ts(&mut unwrap, p.ts);
            let t0 = *t0.get_or_insert(t);
            let ms = offset_ms + (t - t0) * 1000 / 48_000;
            (ms >= 0 && !p.payload.is_empty()).then(|| Frame {
                ms,
                ticks: t - t0,
                key: true,
                track: 2,
                data: p.payload.clone(),
            })
        })
        .collect()
}

/// The chapters of a recording: its highlights on the video timeline of `video`.
fn highlight_chapters(events: &[Event], video: &Video) -> Vec<Chapter> {
    let Some((t0, _)) = video.origin else {
        return Vec::new();
    };
    // Unwrap each rtp_ts near the video's own unwrapped range.
    let (base_ts, base_unwrapped) = video.unwrap.unwrap_or((0, 0));
    events
        .iter()
        .filter(|e| e.msg["type"] == "highlight")
        .filter_map(|e| {
            let rtp_ts = e.msg["rtp_ts"].as_u64()? as u32;
            let t = base_unwrapped + rtp_ts.wrapping_sub(base_ts) as i32 as i64;
            let start = ((t - t0) as f64 / 90_000.0).max(0.0);
            Some(Chapter {
                start,
                rtp_ts,
                id: e.msg["highlight_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                sku: e.msg["sku"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

fn sorted(pkts: &[Packet], track: Track) -> Vec<&Packet> {
    let mut v: Vec<&Packet> = pkts.iter().filter(|p| p.track == track).collect();
    v.sort_by_key(|p| p.seq);
    v.dedup_by_key(|p| p.seq);
    v
}

/// Write `pkts` and the highlights of `events` as WebM (VP8) or MP4 (H.264) to `out`.
pub fn write<W: Write>(pkts: &[Packet], events: &[Event], out: W) -> Result<Summary, Error> {
    let video = video_frames(&sorted(pkts, Track::Video)).ok_or(Error::NoVideo)?;
    let start_us = video.origin.map_or(0, |(_, at)| at);
    let audio = audio_frames(&sorted(pkts, Track::Audio), start_us);
    let chapters = highlight_chapters(events, &video);
    let has_audio = !audio.is_empty();
    let frames = video.frames.len();
    let end_ms = video
        .frames
        .last()
        .map_or(0, |f| f.ms + 33)
        .max(audio.last().map_or(0, |f| f.ms + 20));
    if video.codec == Codec::H264 {
        let bytes = mp4::write(&video, &audio, &chapters)?;
        let mut out = out;
        out.write_all(&bytes)
            .and_then(|_| out.flush())
            .map_err(|e| Error::Write(e.to_string()))?;
        return Ok(Summary {
            content_type: "video/mp4",
            video_codec: "h264",
            audio: has_audio,
            duration: end_ms as f64 / 1000.0,
            frames,
            chapters,
        });
    }
    let (doc, content_type, codec_id, video_codec) = ("webm", "video/webm", "V_VP8", "vp8");
    let w = |e: webm_iterable::errors::TagWriterError| Error::Write(e.to_string());
    let mut wr = WebmWriter::new(out);
    wr.write(&MatroskaSpec::Ebml(Master::Full(vec![
        MatroskaSpec::EbmlVersion(1),
        MatroskaSpec::EbmlReadVersion(1),
        MatroskaSpec::EbmlMaxIdLength(4),
        MatroskaSpec::EbmlMaxSizeLength(8),
        MatroskaSpec::DocType(doc.into()),
        MatroskaSpec::DocTypeVersion(4),
        MatroskaSpec::DocTypeReadVersion(2),
    ])))
    .map_err(w)?;
    wr.write_advanced(
        &MatroskaSpec::Segment(Master::Start),
        webm_iterable::WriteOptions::is_unknown_sized_element(),
    )
    .map_err(w)?;
    wr.write(&MatroskaSpec::Info(Master::Full(vec![
        MatroskaSpec::TimestampScale(1_000_000),
        MatroskaSpec::Duration(end_ms as f64),
        MatroskaSpec::MuxingApp("hawker".into()),
        MatroskaSpec::WritingApp(format!("hawker {}", env!("CARGO_PKG_VERSION"))),
    ])))
    .map_err(w)?;
    let (width, height) = video.size.unwrap_or((640, 480));
    let mut vtrack = vec![
        MatroskaSpec::TrackNumber(1),
        MatroskaSpec::TrackUID(1),
        MatroskaSpec::TrackType(1),
        MatroskaSpec::FlagLacing(0),
        MatroskaSpec::CodecID(codec_id.into()),
    ];
    if width > 0 && height > 0 {
        vtrack.push(MatroskaSpec::Video(Master::Full(vec![
            MatroskaSpec::PixelWidth(width),
            MatroskaSpec::PixelHeight(height),
        ])));
    }
    let mut tracks = vec![MatroskaSpec::TrackEntry(Master::Full(vtrack))];
    if has_audio {
        // OpusHead (RFC 7845 §5.1): version 1, 2 channels, no pre-skip, 48 kHz, no gain,
        // mapping family 0.
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2, 0, 0]);
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&[0, 0, 0]);
        tracks.push(MatroskaSpec::TrackEntry(Master::Full(vec![
            MatroskaSpec::TrackNumber(2),
            MatroskaSpec::TrackUID(2),
            MatroskaSpec::TrackType(2),
            MatroskaSpec::FlagLacing(0),
            MatroskaSpec::CodecID("A_OPUS".into()),
            MatroskaSpec::CodecPrivate(head),
            MatroskaSpec::Audio(Master::Full(vec![
                MatroskaSpec::SamplingFrequency(48_000.0),
                MatroskaSpec::Channels(2),
            ])),
        ])));
    }
    wr.write(&MatroskaSpec::Tracks(Master::Full(tracks)))
        .map_err(w)?;
    if !chapters.is_empty() {
        let atoms = chapters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                MatroskaSpec::ChapterAtom(Master::Full(vec![
                    MatroskaSpec::ChapterUID(i as u64 + 1),
                    MatroskaSpec::ChapterTimeStart((c.start * 1e9) as u64),
                    MatroskaSpec::ChapterDisplay(Master::Full(vec![
                        MatroskaSpec::ChapString(c.sku.clone()),
                        MatroskaSpec::ChapLanguage("und".into()),
                    ])),
                ]))
            })
            .collect::<Vec<_>>();
        let mut edition = vec![MatroskaSpec::EditionUID(1)];
        edition.extend(atoms);
        let edition = MatroskaSpec::EditionEntry(Master::Full(edition));
        wr.write(&MatroskaSpec::Chapters(Master::Full(vec![edition])))
            .map_err(w)?;
    }
    // Interleave by time; a cluster starts at each video keyframe, or when a block's offset
    // would not fit the 16-bit relative timestamp.
    let mut all: Vec<Frame> = video.frames;
    all.extend(audio);
    all.sort_by_key(|f| (f.ms, f.track));
    let mut cluster: Vec<MatroskaSpec> = Vec::new();
    let mut cluster_ms = 0i64;
    for f in &all {
        let new_cluster =
            cluster.is_empty() || (f.track == 1 && f.key) || f.ms - cluster_ms > 30_000;
        if new_cluster {
            if !cluster.is_empty() {
                wr.write(&MatroskaSpec::Cluster(Master::Full(std::mem::take(
                    &mut cluster,
                ))))
                .map_err(w)?;
            }
            cluster_ms = f.ms;
            cluster.push(MatroskaSpec::Timestamp(f.ms as u64));
        }
        let rel = (f.ms - cluster_ms) as i16;
        let block = SimpleBlock::new_uncheked(&f.data, f.track, rel, false, None, false, f.key);
        cluster.push(block.into());
    }
    if !cluster.is_empty() {
        wr.write(&MatroskaSpec::Cluster(Master::Full(cluster)))
            .map_err(w)?;
    }
    wr.into_inner()
        .map_err(w)?
        .flush()
        .map_err(|e| Error::Write(e.to_string()))?;
    Ok(Summary {
        content_type,
        video_codec,
        audio: has_audio,
        duration: end_ms as f64 / 1000.0,
        frames,
        chapters,
    })
}

/// The chapters of a recording without writing the file.
pub fn chapters(pkts: &[Packet], events: &[Event]) -> Result<Vec<Chapter>, Error> {
    let video = video_frames(&sorted(pkts, Track::Video)).ok_or(Error::NoVideo)?;
    Ok(highlight_chapters(events, &video))
}

/// Chapters as WebVTT cues (each cue's text is the highlight as JSON).
pub fn webvtt(chapters: &[Chapter], duration: f64) -> String {
    fn ts(s: f64) -> String {
        let ms = (s * 1000.0).round().max(0.0) as u64;
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    }
    let mut out = String::from("WEBVTT\n\n");
    for (i, c) in chapters.iter().enumerate() {
        let end = chapters
            .get(i + 1)
            .map_or(duration, |n| n.start)
            .max(c.start);
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            c.id,
            ts(c.start),
            ts(end),
            serde_json::json!({"sku": c.sku, "rtp_ts": c.rtp_ts})
        ));
    }
    out
}
