//! Synthetic media: RTP payloads that every parser on the path accepts (VP8 payload descriptor
//! and frame tag with a keyframe start code, H.264 STAP-A with SPS/PPS then FU-A fragments of
//! an IDR slice, Opus TOC byte), each ending in a 12-byte trailer that carries the publisher's
//! send time so that viewers can measure the forwarding delay.
//!
//! The picture data itself is filler: a browser would show garbage, but the SFU only reads
//! headers, and the load generator only reads the trailer.

use crate::codec::Codec;

/// Microseconds since the Unix epoch (`CLOCK_REALTIME`, the clock of the kernel's receive
/// timestamps): what the trailer carries.
pub fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `"HKLT"`: marks a payload built here.
pub const MAGIC: u32 = 0x484B_4C54;
/// Trailer: send time ([`wall_us`], u64 BE) then [`MAGIC`] (u32 BE).
pub const TRAILER: usize = 12;

/// Write the trailer into the last [`TRAILER`] bytes of `p`.
pub fn put_trailer(p: &mut [u8], send_us: u64) {
    let n = p.len();
    p[n - TRAILER..n - 4].copy_from_slice(&send_us.to_be_bytes());
    p[n - 4..].copy_from_slice(&MAGIC.to_be_bytes());
}

/// Write the trailer of a simulcast layer's packet: the layer rides in the send time's top
/// byte (send times never reach 2^56 µs).
pub fn put_trailer_layer(p: &mut [u8], send_us: u64, layer: u8) {
    put_trailer(p, (send_us & LAYER_MASK) | ((layer as u64 + 1) << 56));
}

const LAYER_MASK: u64 = (1 << 56) - 1;

/// The send time in a payload's trailer, if it has one.
pub fn trailer(p: &[u8]) -> Option<u64> {
    trailer_raw(p).map(|v| v & LAYER_MASK)
}

/// The simulcast layer in a payload's trailer, if it has one.
pub fn trailer_layer(p: &[u8]) -> Option<u8> {
    trailer_raw(p).and_then(|v| ((v >> 56) as u8).checked_sub(1))
}

fn trailer_raw(p: &[u8]) -> Option<u64> {
    let n = p.len();
    if n < TRAILER || p[n - 4..] != MAGIC.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(p[n - TRAILER..n - 4].try_into().ok()?))
}

/// One RTP payload of a frame.
pub struct Chunk {
    /// The payload (trailer not yet stamped: call [`put_trailer`] right before sending).
    pub payload: Vec<u8>,
    /// Last packet of the frame (RTP marker).
    pub last: bool,
}

impl Chunk {
    /// Bytes on the wire, roughly (payload plus RTP/SRTP/UDP/IP headers), for pacing.
    pub fn payload_len_hint(&self) -> usize {
        self.payload.len() + 12 + 16 + 8 + 20
    }
}

/// A constrained-baseline level-3.1 SPS for 1280×720 and a matching PPS.
const SPS: &[u8] = &[
    0x67, 0x42, 0xe0, 0x1f, 0x8d, 0x68, 0x05, 0x00, 0x5b, 0xa1, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00,
    0x00, 0x03, 0x00, 0x3c, 0x8f, 0x14, 0x2a, 0x80,
];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

fn filler(len: usize, seed: u64) -> impl Iterator<Item = u8> {
    // Cheap non-constant bytes (an LCG), so nothing on the path can special-case zeros.
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len).map(move |_| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 56) as u8
    })
}

/// Split one encoded frame of `frame_bytes` into RTP payloads of at most `mtu` bytes.
pub fn video_frame(
    codec: Codec,
    key: bool,
    frame_bytes: usize,
    mtu: usize,
    frame_no: u64,
) -> Vec<Chunk> {
    let mtu = mtu.max(TRAILER + 16);
    match codec {
        Codec::Vp8 => vp8_frame(key, frame_bytes, mtu, frame_no),
        Codec::H264 => h264_frame(key, frame_bytes, mtu, frame_no),
        // Not a video codec: one audio packet of that size.
        Codec::Opus => vec![Chunk {
            payload: opus_packet(frame_bytes.min(mtu), frame_no),
            last: true,
        }],
    }
}

fn vp8_frame(key: bool, frame_bytes: usize, mtu: usize, frame_no: u64) -> Vec<Chunk> {
    // The VP8 bitstream: frame tag (3 bytes), keyframe start code and dimensions (7 bytes).
    let mut frame = Vec::with_capacity(frame_bytes.max(16));
    let first_part = 1000u32;
    let tag = (first_part << 5) | (1 << 4) | u32::from(!key);
    frame.extend_from_slice(&tag.to_le_bytes()[..3]);
    if key {
        frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        frame.extend_from_slice(&1280u16.to_le_bytes());
        frame.extend_from_slice(&720u16.to_le_bytes());
    }
    let rest = frame_bytes.saturating_sub(frame.len()).max(TRAILER);
    frame.extend(filler(rest, frame_no));
    // Each packet: 1-byte payload descriptor (S bit on the first), then frame bytes, then the
    // trailer (which overwrites nothing: it is extra room we reserve).
    let room = mtu - 1 - TRAILER;
    let n = frame.len().div_ceil(room);
    let mut out = Vec::with_capacity(n);
    for (i, part) in frame.chunks(room).enumerate() {
        let mut p = Vec::with_capacity(1 + part.len() + TRAILER);
        p.push(if i == 0 { 0x10 } else { 0x00 });
        p.extend_from_slice(part);
        p.extend_from_slice(&[0; TRAILER]);
        out.push(Chunk {
            payload: p,
            last: i + 1 == n,
        });
    }
    out
}

fn h264_frame(key: bool, frame_bytes: usize, mtu: usize, frame_no: u64) -> Vec<Chunk> {
    let mut out = Vec::new();
    if key {
        // STAP-A: SPS, PPS, and an SEI NAL that holds the trailer.
        let mut p = vec![0x78];
        for nal in [SPS, PPS] {
            p.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            p.extend_from_slice(nal);
        }
        p.extend_from_slice(&((1 + TRAILER) as u16).to_be_bytes());
        p.push(0x06);
        p.extend_from_slice(&[0; TRAILER]);
        out.push(Chunk {
            payload: p,
            last: false,
        });
    }
    // One slice NAL: IDR (type 5, NRI 3) or non-IDR (type 1, NRI 2).
    let (nri, ty) = if key { (0x60u8, 5u8) } else { (0x40u8, 1u8) };
    let body: Vec<u8> = filler(frame_bytes.max(TRAILER + 2), frame_no).collect();
    if 1 + body.len() + TRAILER <= mtu {
        let mut p = Vec::with_capacity(1 + body.len() + TRAILER);
        p.push(nri | ty);
        p.extend_from_slice(&body);
        p.extend_from_slice(&[0; TRAILER]);
        out.push(Chunk {
            payload: p,
            last: true,
        });
        return out;
    }
    let room = mtu - 2 - TRAILER;
    let n = body.len().div_ceil(room);
    for (i, part) in body.chunks(room).enumerate() {
        let mut p = Vec::with_capacity(2 + part.len() + TRAILER);
        p.push(nri | 28); // FU-A indicator
        let mut h = ty;
        if i == 0 {
            h |= 0x80;
        }
        if i + 1 == n {
            h |= 0x40;
        }
        p.push(h);
        p.extend_from_slice(part);
        p.extend_from_slice(&[0; TRAILER]);
        out.push(Chunk {
            payload: p,
            last: i + 1 == n,
        });
    }
    out
}

/// One 20 ms Opus packet of `bytes` bytes (TOC: CELT fullband 20 ms, mono, one frame).
pub fn opus_packet(bytes: usize, n: u64) -> Vec<u8> {
    let bytes = bytes.max(1 + TRAILER);
    let mut p = Vec::with_capacity(bytes);
    p.push(0xf8);
    p.extend(filler(bytes - 1 - TRAILER, n));
    p.extend_from_slice(&[0; TRAILER]);
    p
}

/// Give a VP8 packet from [`video_frame`] an extended payload descriptor with a 15-bit
/// PictureID and a TL0PICIDX (as browsers send for simulcast), keeping its S bit.
pub fn vp8_with_ids(payload: &[u8], picture_id: u16, tl0: u8) -> Vec<u8> {
    let Some((&b0, rest)) = payload.split_first() else {
        return payload.to_vec();
    };
    let pid = picture_id & 0x7FFF;
    let mut p = Vec::with_capacity(payload.len() + 5);
    // X, S and partition index kept; I|L|T extension; 15-bit PictureID; TL0PICIDX; TID 0.
    p.push(b0 | 0x80);
    p.push(0xE0);
    p.push(0x80 | (pid >> 8) as u8);
    p.push(pid as u8);
    p.push(tl0);
    p.push(0x00);
    p.extend_from_slice(rest);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::is_keyframe_start;

    #[test]
    fn frames_parse_as_keyframes_and_carry_trailers() {
        for codec in [Codec::Vp8, Codec::H264] {
            let c = codec;
            let mut key = video_frame(codec, true, 20_000, 1200, 1);
            assert!(key.len() > 10);
            assert!(is_keyframe_start(c, &key[0].payload));
            assert!(key.iter().all(|k| k.payload.len() <= 1200));
            assert!(key.last().unwrap().last);
            for k in key.iter_mut() {
                put_trailer(&mut k.payload, 42);
                assert_eq!(trailer(&k.payload), Some(42));
            }
            let delta = video_frame(codec, false, 5_000, 1200, 2);
            assert!(!is_keyframe_start(c, &delta[0].payload));
        }
        let mut o = opus_packet(160, 3);
        assert_eq!(o.len(), 160);
        put_trailer(&mut o, 7);
        assert_eq!(trailer(&o), Some(7));
        assert_eq!(trailer(&[1, 2, 3]), None);
    }
}
