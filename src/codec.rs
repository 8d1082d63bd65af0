//! Codecs: the one [`Codec`] type used by the config, the API, the engine and the load
//! generator, and just enough payload parsing to find keyframes (VP8, H.264) without
//! depacketizing.

/// A media codec, independent of any peer's payload-type numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Opus audio, 48 kHz.
    Opus,
    /// VP8 video, 90 kHz.
    Vp8,
    /// H.264 video (packetization-mode 1), 90 kHz.
    H264,
}

impl Codec {
    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Vp8 | Codec::H264 => 90_000,
        }
    }

    /// Whether this is a video codec.
    pub fn is_video(self) -> bool {
        !matches!(self, Codec::Opus)
    }

    /// Lower-case name used in the API, the config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
        }
    }

    /// The video codec with this name (`h264`, `vp8`, any case), if it is one.
    pub fn video_from_name(name: &str) -> Option<Codec> {
        match name.to_ascii_lowercase().as_str() {
            "h264" => Some(Codec::H264),
            "vp8" => Some(Codec::Vp8),
            _ => None,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether this RTP payload is the first packet of a keyframe.
///
/// VP8 (RFC 7741): the payload descriptor's S bit with partition index 0 starts a frame; the
/// frame tag's P bit (bit 0 of the first byte) is 0 for a keyframe.
/// H.264 (RFC 6184): an IDR slice (NAL type 5) or SPS (7) in a single NAL unit, inside a STAP-A
/// aggregate, or in the start fragment of an FU-A.
pub fn is_keyframe_start(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Opus => false,
        Codec::Vp8 => vp8_keyframe_start(payload),
        Codec::H264 => h264_keyframe_start(payload),
    }
}

/// True when an H.264 packet carries only NAL units that may lead an access unit without being
/// part of a picture: access-unit delimiters (type 9) and SEI (6), alone or in a STAP-A. x264
/// (GStreamer's `x264enc`, and encoders built on it) starts every frame with a delimiter, so the
/// SPS or IDR that makes a keyframe arrives in the frame's second or third packet.
pub fn is_frame_prefix(codec: Codec, payload: &[u8]) -> bool {
    if codec != Codec::H264 {
        return false;
    }
    let prefix = |nal: u8| matches!(nal & 0x1F, 6 | 9);
    let Some(&b0) = payload.first() else {
        return false;
    };
    if b0 & 0x1F != 24 {
        return prefix(b0);
    }
    let mut i = 1;
    let mut any = false;
    while i + 2 < payload.len() {
        let len = u16::from_be_bytes([payload[i], payload[i + 1]]) as usize;
        if !prefix(payload[i + 2]) {
            return false;
        }
        any = true;
        i += 2 + len;
    }
    any
}

fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&xb) = p.get(i) else { return false };
        i += 1;
        if xb & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            let Some(&pb) = p.get(i) else { return false };
            i += if pb & 0x80 != 0 { 2 } else { 1 };
        }
        if xb & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if xb & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    matches!(p.get(i), Some(tag) if tag & 0x01 == 0)
}

fn h264_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1F {
        5 | 7 => true,
        // STAP-A: 16-bit sizes followed by NAL units.
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let len = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if let Some(&nal) = p.get(i + 2) {
                    if matches!(nal & 0x1F, 5 | 7) {
                        return true;
                    }
                }
                i += 2 + len;
            }
            false
        }
        // FU-A start fragment of an IDR.
        28 => matches!(p.get(1), Some(h) if h & 0x80 != 0 && h & 0x1F == 5),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8() {
        assert!(is_keyframe_start(Codec::Vp8, &[0x10, 0x50, 0x02, 0x00]));
        // Delta frame.
        assert!(!is_keyframe_start(Codec::Vp8, &[0x10, 0x51, 0x02, 0x00]));
        // Not the start of the partition.
        assert!(!is_keyframe_start(Codec::Vp8, &[0x00, 0x50]));
        // Extended with 15-bit picture id.
        assert!(is_keyframe_start(
            Codec::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x50]
        ));
        assert!(!is_keyframe_start(Codec::Vp8, &[0x90, 0x80, 0x81]));
        assert!(!is_keyframe_start(Codec::Vp8, &[]));
    }

    #[test]
    fn h264() {
        assert!(is_keyframe_start(Codec::H264, &[0x65, 0x88]));
        assert!(is_keyframe_start(Codec::H264, &[0x67, 0x42]));
        assert!(!is_keyframe_start(Codec::H264, &[0x41, 0x9a]));
        // STAP-A with SPS inside.
        assert!(is_keyframe_start(
            Codec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]
        ));
        // FU-A start of IDR, and a middle fragment.
        assert!(is_keyframe_start(Codec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!is_keyframe_start(Codec::H264, &[0x7c, 0x05, 0x00]));
        // Truncated STAP-A does not panic.
        assert!(!is_keyframe_start(Codec::H264, &[0x78, 0xff, 0xff]));
    }

    #[test]
    fn h264_frame_prefix() {
        // Access-unit delimiter, SEI, and a STAP-A of both.
        assert!(is_frame_prefix(Codec::H264, &[0x09, 0x10]));
        assert!(is_frame_prefix(Codec::H264, &[0x06, 0x05, 0x01]));
        assert!(is_frame_prefix(
            Codec::H264,
            &[0x78, 0x00, 0x02, 0x09, 0x10, 0x00, 0x02, 0x06, 0x05]
        ));
        // Anything with a picture or parameter set in it is not a prefix.
        assert!(!is_frame_prefix(Codec::H264, &[0x67, 0x42]));
        assert!(!is_frame_prefix(Codec::H264, &[0x41, 0x9a]));
        assert!(!is_frame_prefix(
            Codec::H264,
            &[0x78, 0x00, 0x02, 0x09, 0x10, 0x00, 0x02, 0x67, 0x42]
        ));
        assert!(!is_frame_prefix(Codec::H264, &[0x78]));
        assert!(!is_frame_prefix(Codec::H264, &[]));
        assert!(!is_frame_prefix(Codec::Vp8, &[0x09, 0x10]));
    }
}
