//! Deterministic, self-describing RTP payloads (VP8, H.264, Opus) and parsers for them.
//!
//! Every packet payload built here embeds a 25-byte [`PayloadTag`] (magic `b"HWK1"`,
//! publisher id, media kind, frame / packet index, seed, part number, part count) right after
//! the codec's own headers, followed by filler bytes derived from the tag. Two payloads are
//! therefore equal only if they are the same packet of the same frame of the same publisher,
//! which lets a test match what a viewer received against what a publisher sent without relying
//! on SSRCs, sequence numbers or timestamps (an SFU may rewrite all three).
//!
//! Codec framing, enough for a server that inspects payloads to find keyframes:
//!
//! * **VP8** (RFC 7741): a 1-byte payload descriptor (`S` bit on the first packet of a frame,
//!   partition index 0), then on the first packet the 3-byte frame tag (bit 0 of the first byte
//!   is `P`, the *inverse* key-frame flag: 0 = keyframe) and, for keyframes, the 7-byte
//!   start code `9d 01 2a` + 14-bit width / height (640x480).
//! * **H.264** (RFC 6184, packetization-mode 1): one frame in one packet is a single NAL unit
//!   (IDR = type 5, non-IDR = type 1); larger frames use FU-A (type 28). With
//!   `h264_param_sets`, a keyframe is preceded by SPS/PPS in a STAP-A (type 24): packed
//!   together with the IDR slice when the frame is one packet, otherwise STAP-A [SPS, PPS, SEI]
//!   followed by the FU-A fragments (the SEI carries the tag so the STAP-A stays unique).
//! * **Opus**: one TOC byte (`0x78`, 20 ms frames) then tag + filler.
//!
//! The parsers ([`is_vp8_keyframe`], [`is_h264_keyframe`], [`find_tag`]) work on any payload,
//! not just the ones built here.

use bytes::{BufMut, Bytes, BytesMut};

use super::{MediaKind, VideoCodec};

/// Magic that starts every [`PayloadTag`].
pub const TAG_MAGIC: [u8; 4] = *b"HWK1";
/// Encoded size of a [`PayloadTag`].
pub const TAG_LEN: usize = 25;

/// Constant SPS (constrained baseline, level 3.1, 640x480) used in STAP-A keyframes.
pub const H264_SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x8d, 0x40, 0x50, 0x1e, 0xd0, 0x0f, 0x08, 0x84, 0x6a,
];
/// Constant PPS used in STAP-A keyframes.
pub const H264_PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

/// Identity of one packet payload, embedded in the payload itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadTag {
    /// Process-unique id of the publisher that built it.
    pub publisher_id: u32,
    /// Which track it belongs to.
    pub kind: MediaKind,
    /// Video: frame index (0-based, per publisher). Audio: packet index.
    pub index: u64,
    /// Caller-chosen seed (e.g. the `payload_seed` of `send_video_frame`).
    pub seed: u32,
    /// Packet number within the frame (0-based; always 0 for audio).
    pub part: u16,
    /// Number of packets of the frame carrying a tag (1 for audio).
    pub parts: u16,
}

impl PayloadTag {
    /// Serialises the tag (big endian, [`TAG_LEN`] bytes).
    pub fn encode(&self) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        out[0..4].copy_from_slice(&TAG_MAGIC);
        out[4..8].copy_from_slice(&self.publisher_id.to_be_bytes());
        out[8] = match self.kind {
            MediaKind::Video => b'V',
            MediaKind::Audio => b'A',
        };
        out[9..17].copy_from_slice(&self.index.to_be_bytes());
        out[17..21].copy_from_slice(&self.seed.to_be_bytes());
        out[21..23].copy_from_slice(&self.part.to_be_bytes());
        out[23..25].copy_from_slice(&self.parts.to_be_bytes());
        out
    }

    /// Parses a tag at the start of `buf`.
    pub fn decode(buf: &[u8]) -> Option<PayloadTag> {
        if buf.len() < TAG_LEN || buf[0..4] != TAG_MAGIC {
            return None;
        }
        let kind = match buf[8] {
            b'V' => MediaKind::Video,
            b'A' => MediaKind::Audio,
            _ => return None,
        };
        Some(PayloadTag {
            publisher_id: u32::from_be_bytes(buf[4..8].try_into().ok()?),
            kind,
            index: u64::from_be_bytes(buf[9..17].try_into().ok()?),
            seed: u32::from_be_bytes(buf[17..21].try_into().ok()?),
            part: u16::from_be_bytes(buf[21..23].try_into().ok()?),
            parts: u16::from_be_bytes(buf[23..25].try_into().ok()?),
        })
    }

    /// Deterministic, never-zero filler bytes derived from the tag.
    fn filler(&self, len: usize) -> impl Iterator<Item = u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15
            ^ (u64::from(self.publisher_id) << 32)
            ^ self.index.rotate_left(17)
            ^ u64::from(self.seed).rotate_left(41)
            ^ u64::from(self.part).rotate_left(7)
            ^ if self.kind == MediaKind::Audio {
                0xA5
            } else {
                0x5A
            };
        (0..len).map(move |_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8 | 0x01
        })
    }
}

/// Finds a [`PayloadTag`] in the first 96 bytes of `payload`.
pub fn find_tag(payload: &[u8]) -> Option<PayloadTag> {
    let window = &payload[..payload.len().min(96 + TAG_LEN)];
    window
        .windows(TAG_MAGIC.len())
        .position(|w| w == TAG_MAGIC)
        .and_then(|pos| PayloadTag::decode(&window[pos..]))
}

/// Appends the tag and filler so that `buf` reaches `total_len` bytes (never shorter than
/// header + tag).
fn put_tag_and_filler(buf: &mut BytesMut, tag: &PayloadTag, total_len: usize) {
    buf.put_slice(&tag.encode());
    let fill = total_len.saturating_sub(buf.len());
    buf.extend(tag.filler(fill));
}

/// Minimum `packet_len` accepted by the builders (largest codec header + tag + some filler).
pub const MIN_PACKET_LEN: usize = 64;

/// Builds the packet payloads of one video frame.
///
/// * `tag.part` / `tag.parts` are overwritten: `parts` (≥ 1) is the number of slice / partition
///   packets.
/// * `packet_len` is the target size of each payload (clamped to at least [`MIN_PACKET_LEN`]).
/// * `h264_param_sets` only matters for H.264 keyframes (see the module docs); it may add one
///   STAP-A packet in front.
pub fn video_frame(
    codec: VideoCodec,
    keyframe: bool,
    tag: PayloadTag,
    parts: u16,
    packet_len: usize,
    h264_param_sets: bool,
) -> Vec<Bytes> {
    let parts = parts.max(1);
    let packet_len = packet_len.max(MIN_PACKET_LEN);
    match codec {
        VideoCodec::Vp8 => vp8_frame(keyframe, tag, parts, packet_len),
        VideoCodec::H264 => h264_frame(keyframe, tag, parts, packet_len, h264_param_sets),
    }
}

/// VP8 frame; see [`video_frame`].
pub fn vp8_frame(keyframe: bool, tag: PayloadTag, parts: u16, packet_len: usize) -> Vec<Bytes> {
    let parts = parts.max(1);
    (0..parts)
        .map(|part| {
            let tag = PayloadTag { part, parts, ..tag };
            let mut buf = BytesMut::with_capacity(packet_len);
            if part == 0 {
                // Payload descriptor: X=0 R=0 N=0 S=1 R=0 PID=0.
                buf.put_u8(0x10);
                // Frame tag: size0(3) | show_frame(1) | version(3) | P(1). The first partition
                // size is not meaningful here; keep it small and non-zero.
                let first_partition_size: u32 = 10;
                let p_bit = if keyframe { 0 } else { 1 };
                buf.put_u8(((first_partition_size & 0x7) << 5) as u8 | 0x10 | p_bit);
                buf.put_u8((first_partition_size >> 3) as u8);
                buf.put_u8((first_partition_size >> 11) as u8);
                if keyframe {
                    buf.put_slice(&[0x9d, 0x01, 0x2a]);
                    buf.put_u16_le(640);
                    buf.put_u16_le(480);
                }
            } else {
                // Continuation of partition 0: S=0.
                buf.put_u8(0x00);
            }
            put_tag_and_filler(&mut buf, &tag, packet_len);
            buf.freeze()
        })
        .collect()
}

/// H.264 frame; see [`video_frame`].
pub fn h264_frame(
    keyframe: bool,
    tag: PayloadTag,
    parts: u16,
    packet_len: usize,
    param_sets: bool,
) -> Vec<Bytes> {
    let parts = parts.max(1);
    let (nal_header, nal_type) = if keyframe {
        (0x65u8, 5u8) // NRI=3, IDR slice
    } else {
        (0x41u8, 1u8) // NRI=2, non-IDR slice
    };
    let mut out = Vec::new();
    let with_param_sets = keyframe && param_sets;

    if parts == 1 {
        let tag = PayloadTag {
            part: 0,
            parts: 1,
            ..tag
        };
        let mut slice = BytesMut::with_capacity(packet_len);
        slice.put_u8(nal_header);
        put_tag_and_filler(&mut slice, &tag, packet_len);
        if with_param_sets {
            let mut stap = BytesMut::with_capacity(packet_len + 32);
            stap.put_u8(0x78); // F=0 NRI=3 type=24 (STAP-A)
            for nal in [H264_SPS, H264_PPS, &slice[..]] {
                stap.put_u16(nal.len() as u16);
                stap.put_slice(nal);
            }
            out.push(stap.freeze());
        } else {
            out.push(slice.freeze());
        }
        return out;
    }

    if with_param_sets {
        // STAP-A [SPS, PPS, SEI(user data unregistered, carrying a tag)] — tagged with
        // `part = parts` so it differs from every slice fragment.
        let sei_tag = PayloadTag {
            part: parts,
            parts,
            ..tag
        };
        let mut sei = BytesMut::new();
        sei.put_u8(0x06); // SEI
        sei.put_u8(5); // user_data_unregistered
        sei.put_u8((16 + TAG_LEN) as u8);
        sei.put_slice(b"hawker-test-peer"); // 16-byte "UUID"
        sei.put_slice(&sei_tag.encode());
        sei.put_u8(0x80); // rbsp trailing bits
        let mut stap = BytesMut::new();
        stap.put_u8(0x78);
        for nal in [H264_SPS, H264_PPS, &sei[..]] {
            stap.put_u16(nal.len() as u16);
            stap.put_slice(nal);
        }
        out.push(stap.freeze());
    }

    for part in 0..parts {
        let tag = PayloadTag { part, parts, ..tag };
        let mut buf = BytesMut::with_capacity(packet_len);
        buf.put_u8((nal_header & 0x60) | 28); // FU indicator: NRI of the NAL, type 28
        let mut fu_header = nal_type;
        if part == 0 {
            fu_header |= 0x80; // S
        }
        if part == parts - 1 {
            fu_header |= 0x40; // E
        }
        buf.put_u8(fu_header);
        put_tag_and_filler(&mut buf, &tag, packet_len);
        out.push(buf.freeze());
    }
    out
}

/// One Opus packet payload (TOC `0x78` + tag + filler).
pub fn opus_packet(tag: PayloadTag, packet_len: usize) -> Bytes {
    let tag = PayloadTag {
        kind: MediaKind::Audio,
        part: 0,
        parts: 1,
        ..tag
    };
    let mut buf = BytesMut::with_capacity(packet_len);
    buf.put_u8(0x78);
    put_tag_and_filler(&mut buf, &tag, packet_len.max(MIN_PACKET_LEN));
    buf.freeze()
}

/// Single-packet VP8 keyframe payload for `seed` (publisher id 0, index = seed).
pub fn vp8_keyframe(seed: u32) -> Bytes {
    vp8_frame(true, simple_tag(seed), 1, 200).remove(0)
}

/// Single-packet VP8 delta-frame payload for `seed` (publisher id 0, index = seed).
pub fn vp8_delta(seed: u32) -> Bytes {
    vp8_frame(false, simple_tag(seed), 1, 200).remove(0)
}

/// Single-NAL H.264 IDR payload for `seed`.
pub fn h264_idr(seed: u32) -> Bytes {
    h264_frame(true, simple_tag(seed), 1, 200, false).remove(0)
}

/// Single-NAL H.264 non-IDR payload for `seed`.
pub fn h264_non_idr(seed: u32) -> Bytes {
    h264_frame(false, simple_tag(seed), 1, 200, false).remove(0)
}

/// STAP-A [SPS, PPS, IDR] payload for `seed`.
pub fn h264_stap_a_keyframe(seed: u32) -> Bytes {
    h264_frame(true, simple_tag(seed), 1, 200, true).remove(0)
}

fn simple_tag(seed: u32) -> PayloadTag {
    PayloadTag {
        publisher_id: 0,
        kind: MediaKind::Video,
        index: u64::from(seed),
        seed,
        part: 0,
        parts: 1,
    }
}

/// Whether a VP8 RTP payload is the first packet of a keyframe (S=1, partition 0, P=0).
pub fn is_vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let start = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        // Extension byte: I L T K
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            let Some(&p) = payload.get(i) else {
                return false;
            };
            i += if p & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID / KEYIDX
        }
    }
    match payload.get(i) {
        Some(&hdr) => start && pid == 0 && hdr & 0x01 == 0,
        None => false,
    }
}

/// Whether an H.264 RTP payload starts (or carries the parameter sets of) a keyframe: an IDR or
/// SPS NAL, a STAP-A containing one, or the first FU-A fragment of an IDR.
pub fn is_h264_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    match b0 & 0x1f {
        5 | 7 => true,
        24 => {
            let mut i = 1;
            while i + 2 <= payload.len() {
                let len = u16::from_be_bytes([payload[i], payload[i + 1]]) as usize;
                i += 2;
                if let Some(&nal) = payload.get(i) {
                    if matches!(nal & 0x1f, 5 | 7) {
                        return true;
                    }
                }
                i += len;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && fu & 0x1f == 5),
        _ => false,
    }
}

/// Keyframe detection by codec.
pub fn is_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => is_vp8_keyframe(payload),
        VideoCodec::H264 => is_h264_keyframe(payload),
    }
}
