//! H.264 + Opus as MP4 (ISO BMFF): `avc1` video with its `avcC` from the recording's first
//! SPS/PPS, `Opus` audio with `dOps` (no pre-skip: a WebRTC sender has none), and the
//! highlights as Nero chapters (`moov/udta/chpl`, which ffmpeg, GStreamer and most players
//! read). Sample tables come from `shiguredo_mp4`'s muxer; hawker adds only the boxes it does
//! not write (the chapters, and the audio track's edit list when audio starts after video).
//!
//! The file is faststart (`moov` before `mdat`) so a player or CDN can start it without
//! fetching the end first: space for `moov` is reserved from the sample counts, and should
//! the finished `moov` not fit, it goes at the end instead and the reserved space stays a
//! `free` box. The file is built in memory, as the WebM one is.
//!
//! Each sample lasts until the next one's RTP timestamp, so a gap in the recording (a lost
//! frame, audio DTX) keeps the following samples on time. SPS/PPS stay in the samples too, so
//! a resolution change mid-show (the recording moving up a simulcast layer) decodes.

use std::num::NonZeroU32;

use shiguredo_mp4::bitstream::h264::{build_avc1_box, H264SampleEntryConfig, LengthSize};
use shiguredo_mp4::bitstream::opus::{build_opus_box, ChannelCount, OpusSampleEntryConfig};
use shiguredo_mp4::boxes::{EdtsBox, ElstBox, ElstEntry, SampleEntry, UnknownBox};
use shiguredo_mp4::mux::{
    estimate_maximum_moov_box_size, Mp4FileMuxer, Mp4FileMuxerOptions, Sample,
};
use shiguredo_mp4::{BoxSize, BoxType, Encode, FixedPointNumber, TrackKind};

use super::{Chapter, Error, Frame, Video};

const VIDEO_HZ: u32 = 90_000;
const AUDIO_HZ: u32 = 48_000;
/// The last sample's duration when there is no next one: a 30 fps frame, a 20 ms Opus packet.
const LAST_VIDEO_TICKS: u32 = 3_000;
const LAST_AUDIO_TICKS: u32 = 960;
/// Size of the 64-bit `mdat` header the muxer writes.
const MDAT_HEADER: usize = 16;

fn err(e: impl std::fmt::Display) -> Error {
    Error::Write(format!("mp4: {e}"))
}

/// Durations from each sample's ticks to the next one's (at least 1).
fn durations(frames: &[Frame], last: u32) -> Vec<u32> {
    let mut d: Vec<u32> = frames
        .windows(2)
        .map(|w| (w[1].ticks - w[0].ticks).clamp(1, u32::MAX as i64) as u32)
        .collect();
    if !frames.is_empty() {
        d.push(last);
    }
    d
}

fn raw_box(kind: [u8; 4], payload: Vec<u8>) -> UnknownBox {
    UnknownBox {
        box_type: BoxType::Normal(kind),
        box_size: BoxSize::U32(8 + payload.len() as u32),
        payload,
    }
}

/// `chpl` version 1: reserved, a count, then per chapter its start in 100 ns units and a
/// title of at most 255 bytes (cut at a character boundary).
fn chpl(chapters: &[Chapter]) -> Vec<u8> {
    let n = chapters.len().min(255);
    let mut v = vec![1, 0, 0, 0, 0, 0, 0, 0, n as u8];
    for c in &chapters[..n] {
        v.extend_from_slice(&((c.start * 1e7).round() as u64).to_be_bytes());
        let mut end = c.sku.len().min(255);
        while !c.sku.is_char_boundary(end) {
            end -= 1;
        }
        v.push(end as u8);
        v.extend_from_slice(&c.sku.as_bytes()[..end]);
    }
    v
}

/// A `free` box of exactly `len` bytes (`len` ≥ 8).
fn free_box(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.extend_from_slice(b"free");
    v.resize(len, 0);
    v
}

/// The whole MP4 file.
pub(super) fn write(
    video: &Video,
    audio: &[Frame],
    chapters: &[Chapter],
) -> Result<Vec<u8>, Error> {
    let (Some(sps), Some(pps)) = (&video.sps, &video.pps) else {
        return Err(Error::NoVideo);
    };
    let avc1 = build_avc1_box(
        std::slice::from_ref(sps),
        std::slice::from_ref(pps),
        &H264SampleEntryConfig {
            length_size: LengthSize::FourBytes,
        },
    )
    .map_err(|e| err(format!("the recording's SPS cannot be read: {e}")))?;
    let opus = build_opus_box(&OpusSampleEntryConfig {
        channel_count: ChannelCount::Stereo,
        pre_skip: 0,
        input_sample_rate: AUDIO_HZ,
        output_gain: 0,
    });

    // Interleave by time, each sample with its duration.
    let vdur = durations(&video.frames, LAST_VIDEO_TICKS);
    let adur = durations(audio, LAST_AUDIO_TICKS);
    let mut order: Vec<(i64, u8, usize)> = (0..video.frames.len())
        .map(|i| (video.frames[i].ms, 1, i))
        .chain((0..audio.len()).map(|i| (audio[i].ms, 2, i)))
        .collect();
    order.sort_unstable();

    let reserve = estimate_maximum_moov_box_size(&[video.frames.len(), audio.len()])
        + chapters.len() * 270
        + 512;
    let mut muxer = Mp4FileMuxer::with_options(Mp4FileMuxerOptions {
        reserved_moov_box_size: reserve,
        creation_timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
        ..Mp4FileMuxerOptions::default()
    })
    .map_err(err)?;
    let payload: usize = video.frames.iter().map(|f| f.data.len()).sum::<usize>()
        + audio.iter().map(|f| f.data.len()).sum::<usize>();
    let mut out = Vec::with_capacity(muxer.initial_boxes_bytes().len() + payload + reserve);
    out.extend_from_slice(muxer.initial_boxes_bytes());
    let mdat_at = out.len() - MDAT_HEADER;
    let (mut video_entry, mut audio_entry) =
        (Some(SampleEntry::Avc1(avc1)), Some(SampleEntry::Opus(opus)));
    for (_, track, i) in order {
        let (f, kind, entry, hz, duration) = if track == 1 {
            (
                &video.frames[i],
                TrackKind::Video,
                video_entry.take(),
                VIDEO_HZ,
                vdur[i],
            )
        } else {
            (
                &audio[i],
                TrackKind::Audio,
                audio_entry.take(),
                AUDIO_HZ,
                adur[i],
            )
        };
        muxer
            .append_sample(&Sample {
                track_kind: kind,
                sample_entry: entry,
                keyframe: f.key,
                timescale: NonZeroU32::new(hz).expect("non-zero clock rate"),
                duration,
                composition_time_offset: None,
                data_offset: out.len() as u64,
                data_size: f.data.len(),
            })
            .map_err(err)?;
        out.extend_from_slice(&f.data);
    }
    let fin = muxer.finalize().map_err(err)?;

    // The muxer's moov, plus the audio's late start and the chapters.
    let mut moov = fin.moov_box().clone();
    let movie_hz = moov.mvhd_box.timescale.get() as u64;
    let audio_start_ms = audio.first().map_or(0, |f| f.ms.max(0) as u64);
    if audio_start_ms > 0 {
        for trak in &mut moov.trak_boxes {
            if &trak.mdia_box.hdlr_box.handler_type != b"soun" {
                continue;
            }
            let media = trak.mdia_box.mdhd_box.duration;
            let media_hz = trak.mdia_box.mdhd_box.timescale.get() as u64;
            let one = FixedPointNumber::new(1, 0);
            trak.edts_box = Some(EdtsBox {
                elst_box: Some(ElstBox {
                    entries: vec![
                        // Nothing for the first `audio_start_ms`, then the whole track.
                        ElstEntry {
                            edit_duration: audio_start_ms * movie_hz / 1000,
                            media_time: -1,
                            media_rate: one,
                        },
                        ElstEntry {
                            edit_duration: media * movie_hz / media_hz,
                            media_time: 0,
                            media_rate: one,
                        },
                    ],
                }),
                unknown_boxes: Vec::new(),
            });
        }
    }
    if !chapters.is_empty() {
        let chpl = raw_box(*b"chpl", chpl(chapters));
        let udta = raw_box(*b"udta", chpl.encode_to_vec().map_err(err)?);
        moov.unknown_boxes.push(udta);
    }
    let moov_bytes = moov.encode_to_vec().map_err(err)?;

    // Head (ftyp, the reserved region), the muxer's moov wherever it put it, the mdat header.
    let faststart = fin.is_faststart_enabled();
    let mut tail_moov_at = None;
    for (offset, bytes) in fin.offset_and_bytes_pairs() {
        let at = offset as usize;
        if at >= out.len() {
            tail_moov_at = Some(at);
            continue;
        }
        out[at..at + bytes.len()].copy_from_slice(bytes);
    }
    // Replace the muxer's moov by ours: in the reserved region if it fits, else at the end.
    let ftyp_len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
    let region = mdat_at - ftyp_len;
    if faststart && moov_bytes.len() + 8 <= region {
        out[ftyp_len..ftyp_len + moov_bytes.len()].copy_from_slice(&moov_bytes);
        let rest = region - moov_bytes.len();
        out[ftyp_len + moov_bytes.len()..mdat_at].copy_from_slice(&free_box(rest));
    } else {
        out[ftyp_len..mdat_at].copy_from_slice(&free_box(region));
        out.truncate(tail_moov_at.unwrap_or(out.len()));
        out.extend_from_slice(&moov_bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chapter_titles_are_cut_at_a_character_boundary() {
        let c = Chapter {
            start: 1.5,
            rtp_ts: 0,
            id: "h".into(),
            sku: "é".repeat(200),
        };
        let v = chpl(&[c]);
        assert_eq!(v[8], 1, "one chapter");
        assert_eq!(u64::from_be_bytes(v[9..17].try_into().unwrap()), 15_000_000);
        let len = v[17] as usize;
        assert_eq!(len, 254, "255 would split a two-byte character");
        assert!(std::str::from_utf8(&v[18..18 + len]).is_ok());
    }

    #[test]
    fn each_sample_lasts_until_the_next() {
        let f = |ticks| Frame {
            ms: 0,
            ticks,
            key: false,
            track: 1,
            data: Vec::new(),
        };
        assert_eq!(
            durations(&[f(0), f(3000), f(9000), f(9000)], 3000),
            [3000, 6000, 1, 3000]
        );
        assert!(durations(&[], 3000).is_empty());
    }
}
