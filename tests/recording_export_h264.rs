//! An H.264 recording exports as MP4 that an independent tool reads and decodes.
//!
//! Real H.264 (libx264 through Debian's ffmpeg: 3 s at 30 fps, a keyframe a second) and real
//! Opus (libopus, 20 ms packets, starting 100 ms after the video) are packetized as a
//! publisher would send them (RFC 6184 single NAL units and FU-A, RFC 7587), stored as a
//! recording's packets with two highlights, and exported. ffprobe must find h264 + Opus in an
//! MP4 with `moov` before `mdat`, a duration of 3 s, the audio starting at 0.1 s and the two
//! chapters at the highlights' frames; ffmpeg must decode every frame without an error.
//! `a_lost_packet_costs_frames_up_to_the_next_keyframe`: one packet lost mid-GOP leaves that
//! frame and the rest of its GOP out, and what is left still decodes cleanly.
//!
//! Skipped (with a message) when ffmpeg/ffprobe are missing; scripts/test.sh installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use hawker::codec::Codec;
use hawker::engine::forwarder::Track;
use hawker::recording::export;
use hawker::recording::file::{Event, Packet};
use serde_json::{json, Value};

const FRAMES: u64 = 90;
const T0_US: u64 = 1_700_000_000_000_000;

/// Debian's ffmpeg and ffprobe; without them the test is skipped, except under `CI`, where
/// scripts/test.sh has installed them and their absence is a failure.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let ffmpeg = PathBuf::from("/usr/bin/ffmpeg");
    let ffprobe = PathBuf::from("/usr/bin/ffprobe");
    if ffmpeg.exists() && ffprobe.exists() {
        return Some((ffmpeg, ffprobe));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "ffmpeg/ffprobe missing under CI: scripts/test.sh installs them"
    );
    eprintln!("SKIPPED: ffmpeg/ffprobe missing (apt-get install ffmpeg; scripts/test.sh does)");
    None
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("the tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Access units of a libx264 Annex-B stream (one AUD each), as lists of NAL units.
fn h264_access_units(ffmpeg: &Path, dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let path = dir.join("in.h264");
    run(Command::new(ffmpeg)
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .args([
            format!("testsrc=size=320x240:rate=30:duration={}", FRAMES / 30),
            "-c:v".into(),
            "libx264".into(),
            "-profile:v".into(),
            "baseline".into(),
            "-pix_fmt".into(),
            "yuv420p".into(),
            "-g".into(),
            "30".into(),
            "-x264-params".into(),
            "aud=1".into(),
            "-f".into(),
            "h264".into(),
        ])
        .arg(&path));
    let data = std::fs::read(&path).unwrap();
    // Split on start codes.
    let mut nals: Vec<&[u8]> = Vec::new();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    for (k, &s) in starts.iter().enumerate() {
        let mut e = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        nals.push(&data[s..e]);
    }
    let mut aus: Vec<Vec<Vec<u8>>> = Vec::new();
    for nal in nals {
        if nal[0] & 0x1f == 9 {
            aus.push(Vec::new());
        } else if let Some(au) = aus.last_mut() {
            au.push(nal.to_vec());
        }
    }
    assert_eq!(aus.len() as u64, FRAMES, "libx264 wrote one AUD per frame");
    aus
}

/// RTP payloads of one access unit: small NAL units whole, large ones as FU-A.
fn h264_payloads(au: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for nal in au {
        if nal.len() <= 1100 {
            out.push(nal.clone());
            continue;
        }
        let (hdr, body) = (nal[0], &nal[1..]);
        let chunks: Vec<&[u8]> = body.chunks(1000).collect();
        for (k, c) in chunks.iter().enumerate() {
            let mut fu = vec![(hdr & 0xe0) | 28, hdr & 0x1f];
            if k == 0 {
                fu[1] |= 0x80;
            }
            if k + 1 == chunks.len() {
                fu[1] |= 0x40;
            }
            fu.extend_from_slice(c);
            out.push(fu);
        }
    }
    out
}

/// Opus packets of a libopus Ogg file (20 ms each), without the two header packets.
fn opus_packets(ffmpeg: &Path, dir: &Path) -> Vec<Vec<u8>> {
    let path = dir.join("in.ogg");
    run(Command::new(ffmpeg)
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={}",
            FRAMES / 30
        ))
        .args([
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-frame_duration",
            "20",
            "-f",
            "ogg",
        ])
        .arg(&path));
    let data = std::fs::read(&path).unwrap();
    let mut packets = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    while i + 27 <= data.len() && &data[i..i + 4] == b"OggS" {
        let n = data[i + 26] as usize;
        let lacing = &data[i + 27..i + 27 + n];
        let mut at = i + 27 + n;
        for &l in lacing {
            cur.extend_from_slice(&data[at..at + l as usize]);
            at += l as usize;
            if l < 255 {
                packets.push(std::mem::take(&mut cur));
            }
        }
        i = at;
    }
    assert!(
        packets.len() > 100,
        "libopus wrote {} packets",
        packets.len()
    );
    packets.drain(..2); // OpusHead, OpusTags
    packets
}

struct Recording {
    pkts: Vec<Packet>,
    events: Vec<Event>,
}

fn recording(ffmpeg: &Path, dir: &Path, lose: Option<(u64, usize)>) -> Recording {
    let mut pkts = Vec::new();
    let mut seq = 10_000u64;
    for (n, au) in h264_access_units(ffmpeg, dir).iter().enumerate() {
        let n = n as u64;
        let key = au.iter().any(|nal| nal[0] & 0x1f == 5);
        let payloads = h264_payloads(au);
        let last = payloads.len() - 1;
        for (k, payload) in payloads.into_iter().enumerate() {
            seq += 1;
            if lose == Some((n, k)) {
                continue;
            }
            pkts.push(Packet {
                track: Track::Video,
                codec: Codec::H264,
                seq,
                ts: (50_000 + n * 3000) as u32,
                marker: k == last,
                keyframe_start: key && k == 0,
                layer: 0,
                at_us: T0_US + n * 33_333,
                payload,
            });
        }
    }
    for (k, payload) in opus_packets(ffmpeg, dir).into_iter().enumerate() {
        let k = k as u64;
        pkts.push(Packet {
            track: Track::Audio,
            codec: Codec::Opus,
            seq: 500 + k,
            ts: (7_000 + k * 960) as u32,
            marker: false,
            keyframe_start: false,
            layer: 0,
            at_us: T0_US + 100_000 + k * 20_000,
            payload,
        });
    }
    let events = [(30u64, "lamp", "h1"), (60, "mug", "h2")]
        .iter()
        .map(|&(frame, sku, id)| Event {
            at_us: T0_US + frame * 33_333,
            msg: json!({"type": "highlight", "sku": sku, "highlight_id": id,
                        "rtp_ts": 50_000 + frame * 3000}),
        })
        .collect();
    Recording { pkts, events }
}

fn probe(ffprobe: &Path, file: &Path) -> Value {
    let out = run(Command::new(ffprobe)
        .args(["-v", "error", "-print_format", "json", "-count_frames"])
        .args(["-show_format", "-show_streams", "-show_chapters"])
        .arg(file));
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

/// Decode the whole file; ffmpeg must say nothing at `-v error`.
fn decodes_cleanly(ffmpeg: &Path, file: &Path) {
    let out = run(Command::new(ffmpeg)
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"]));
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
}

fn num(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

fn export_to(dir: &Path, rec: &Recording) -> (PathBuf, export::Summary, Vec<u8>) {
    let mut bytes = Vec::new();
    let summary = export::write(&rec.pkts, &rec.events, &mut bytes).expect("export");
    let path = dir.join("out.mp4");
    std::fs::write(&path, &bytes).unwrap();
    (path, summary, bytes)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hawker-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn h264_exports_as_mp4_with_opus_and_chapters() {
    let Some((ffmpeg, ffprobe)) = tools() else {
        return;
    };
    let dir = tmp("mp4-export");
    let rec = recording(&ffmpeg, &dir, None);
    let (path, summary, bytes) = export_to(&dir, &rec);
    assert_eq!(summary.content_type, "video/mp4");
    assert_eq!(summary.frames as u64, FRAMES);
    let at = |b: &[u8]| bytes.windows(4).position(|w| w == b).expect("box present");
    assert!(at(b"moov") < at(b"mdat"), "faststart: moov before mdat");

    let p = probe(&ffprobe, &path);
    assert!(
        p["format"]["format_name"]
            .as_str()
            .unwrap_or("")
            .contains("mp4"),
        "{p}"
    );
    let streams = p["streams"].as_array().unwrap();
    let codecs: Vec<&str> = streams
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert_eq!(codecs, ["h264", "opus"], "{p}");
    assert_eq!(streams[0]["width"], 320);
    assert_eq!(streams[0]["height"], 240);
    assert_eq!(num(&streams[0]["nb_read_frames"]) as u64, FRAMES, "{p}");
    let duration = num(&p["format"]["duration"]);
    assert!((duration - 3.0).abs() < 0.1, "duration {duration}");
    let audio_start = num(&streams[1]["start_time"]);
    assert!(
        (audio_start - 0.1).abs() < 0.005,
        "audio starts {audio_start} s in, as it arrived"
    );
    let chapters = p["chapters"].as_array().expect("chapters");
    assert_eq!(chapters.len(), 2, "{p}");
    for (c, (start, sku)) in chapters.iter().zip([(1.0, "lamp"), (2.0, "mug")]) {
        assert!((num(&c["start_time"]) - start).abs() < 0.002, "{c}");
        assert_eq!(c["tags"]["title"], sku);
    }
    assert_eq!(summary.chapters.len(), 2);
    assert!((summary.chapters[1].start - 2.0).abs() < 1e-9);
    decodes_cleanly(&ffmpeg, &path);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lost_packet_costs_frames_up_to_the_next_keyframe() {
    let Some((ffmpeg, ffprobe)) = tools() else {
        return;
    };
    let dir = tmp("mp4-loss");
    // The first packet of frame 45: frames 45..=59 go, 60 is a keyframe.
    let rec = recording(&ffmpeg, &dir, Some((45, 0)));
    let (path, summary, _) = export_to(&dir, &rec);
    assert_eq!(summary.frames as u64, FRAMES - 15);
    let p = probe(&ffprobe, &path);
    assert_eq!(
        num(&p["streams"][0]["nb_read_frames"]) as u64,
        FRAMES - 15,
        "{p}"
    );
    decodes_cleanly(&ffmpeg, &path);
    let _ = std::fs::remove_dir_all(&dir);
}
