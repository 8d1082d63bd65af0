//! SDP acceptance: a WHIP or WHEP offer becomes a configured `str0m::Rtc` (RTP mode, ICE-lite,
//! the show's codecs) and an answer, or a clear reason why not.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::{Candidate, Rtc};

use super::peers::Peer;
use crate::codec::Codec;
use crate::engine::forwarder::Track;
use crate::engine::{Error, PeerId, Role, ShowSpec};

/// Build the peer for an offer, with its tracks set up, and the SDP answer.
pub(super) fn accept(
    now: Instant,
    announce: SocketAddr,
    id: PeerId,
    show: &ShowSpec,
    role: Role,
    offer: SdpOffer,
) -> Result<(Peer, String), Error> {
    let mut cfg = Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        // Advertised as `a=max-message-size`: SCTP reassembles nothing larger for this peer.
        .set_sctp_max_message_size(super::inbound::SCTP_MAX_MESSAGE_BYTES)
        // Egress stats carry the NACK counts behind `hawker_media_nacks_total`.
        .set_stats_interval((role == Role::Viewer).then_some(Duration::from_secs(1)))
        .clear_codecs()
        .enable_opus(true, false);
    for c in &show.video_codecs {
        match c {
            Codec::Vp8 => cfg = cfg.enable_vp8(true),
            Codec::H264 => {
                let cc = cfg.codec_config();
                // packetization-mode 1 only; common profiles, with RTX.
                for (pt, rtx, profile) in [
                    (108u8, 109u8, 0x42e01fu32),
                    (127, 121, 0x42001f),
                    (123, 119, 0x4d001f),
                    (114, 115, 0x64001f),
                ] {
                    cc.add_h264(pt.into(), Some(rtx.into()), true, profile);
                }
            }
            Codec::Opus => {}
        }
    }
    let mut rtc = cfg.build(now);
    let cand = Candidate::host(announce, "udp")
        .map_err(|e| Error::Offer(format!("bad announce address: {e}")))?;
    rtc.add_local_candidate(cand);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| Error::Offer(e.to_string()))?;
    // Check the negotiated media before anything flows.
    let mut video = false;
    let mut audio = false;
    let mut wanted_dir_ok = false;
    for m in answer.media_lines.iter() {
        let Some(media) = rtc.media(m.mid()) else {
            continue;
        };
        let usable = !media.remote_pts().is_empty();
        let dir_ok = match role {
            Role::Publisher => {
                matches!(media.direction(), Direction::RecvOnly | Direction::SendRecv)
            }
            Role::Viewer => matches!(media.direction(), Direction::SendOnly | Direction::SendRecv),
        };
        wanted_dir_ok |= dir_ok && usable;
        match media.kind() {
            MediaKind::Video if usable => video = true,
            MediaKind::Audio if usable => audio = true,
            _ => {}
        }
    }
    if !video && !audio {
        let allowed: Vec<&str> = show.video_codecs.iter().map(|c| c.as_str()).collect();
        return Err(Error::NoCodec(format!(
            "this show takes {} video (h264 packetization-mode=1) and opus audio",
            allowed.join("/")
        )));
    }
    if !wanted_dir_ok {
        return Err(Error::Offer(match role {
            Role::Publisher => "a WHIP offer must send media (sendonly or sendrecv)".into(),
            Role::Viewer => "a WHEP offer must receive media (recvonly or sendrecv)".into(),
        }));
    }
    let mids: Vec<(Mid, MediaKind)> = answer
        .media_lines
        .iter()
        .filter_map(|m| rtc.media(m.mid()).map(|media| (m.mid(), media.kind())))
        .collect();
    let mut peer = Peer::new(id, rtc, show.id.clone(), role, now);
    // Set tracks up now rather than on `MediaAdded`: str0m reports `Connected` first, and a
    // viewer must be able to take the keyframe cache the moment it connects.
    for (mid, kind) in mids {
        match (role, kind) {
            (Role::Viewer, MediaKind::Audio) => peer.add_out_track(mid, Track::Audio),
            (Role::Viewer, MediaKind::Video) => peer.add_out_track(mid, Track::Video),
            (Role::Publisher, MediaKind::Video) => peer.video_mid = Some(mid),
            _ => {}
        }
    }
    Ok((peer, answer.to_sdp_string()))
}
