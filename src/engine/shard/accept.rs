//! SDP acceptance: a WHIP or WHEP offer becomes a configured `str0m::Rtc` (RTP mode, ICE-lite,
//! the show's codecs) and an answer, or a clear reason why not.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind, Mid, Rid, Rids};
use str0m::{Candidate, Rtc};

use super::peers::Peer;
use crate::codec::Codec;
use crate::engine::forwarder::Track;
use crate::engine::simulcast::{order_rids, Quality, INITIAL_ESTIMATE_BPS, MAX_LAYERS};
use crate::engine::{Error, PeerId, Role, ShowSpec};

/// Build the peer for an offer, with its tracks set up, and the SDP answer.
#[allow(clippy::too_many_arguments)] // the inputs of one accept, each used once
pub(super) fn accept(
    now: Instant,
    announce: SocketAddr,
    id: PeerId,
    show: &ShowSpec,
    role: Role,
    offer: SdpOffer,
    (quality, bwe): (Quality, bool),
    cert: Option<&DtlsCert>,
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
    if let Some(cert) = cert {
        cfg = cfg.set_dtls_cert(cert.clone());
    }
    if bwe {
        // A viewer's layer follows its bandwidth estimate (TWCC feedback). str0m then paces
        // the viewer's video at 1.1 × the estimate, which starts at `INITIAL_ESTIMATE_BPS`;
        // viewers of a single-layer show get no estimation and so no pacing (`bwe` false).
        cfg = cfg.enable_bwe(Some(Bitrate::bps(INITIAL_ESTIMATE_BPS)));
    }
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
    let (offer, offered, sim_group) = normalize(offer, role)?;
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
    // A publisher whose video cannot be forwarded is refused rather than taken as audio-only:
    // its viewers would see nothing and nobody would be told why.
    if role == Role::Publisher && offered.video > 0 && !video {
        let allowed: Vec<&str> = show.video_codecs.iter().map(|c| c.as_str()).collect();
        return Err(Error::NoCodec(format!(
            "the offer's video has no codec this show forwards ({}; h264 needs packetization-mode=1)",
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
    // Simulcast: at most three layers, each rid once; the layers ordered lowest first.
    let mut rids: Vec<Rid> = Vec::new();
    if role == Role::Publisher {
        for (mid, kind) in &mids {
            if *kind != MediaKind::Video {
                continue;
            }
            if let Some(Rids::Specific(r)) = rtc.media(*mid).map(|m| m.rids_rx()) {
                rids = r.clone();
            }
        }
    }
    if rids.len() > MAX_LAYERS {
        return Err(Error::Offer(format!(
            "a simulcast offer may have at most {MAX_LAYERS} layers, this one has {}",
            rids.len()
        )));
    }
    for (i, r) in rids.iter().enumerate() {
        if rids[..i].contains(r) {
            return Err(Error::Offer(format!("simulcast rid {r} appears twice")));
        }
    }
    // SSRC-signalled simulcast (`a=ssrc-group:SIM`, no rids): the group's SSRCs, lowest
    // first as libwebrtc lists them. With rids the rids decide and the group is ignored.
    let sim_ssrcs: Vec<str0m::rtp::Ssrc> = if role == Role::Publisher && rids.is_empty() {
        if sim_group.len() > MAX_LAYERS {
            return Err(Error::Offer(format!(
                "a simulcast offer may have at most {MAX_LAYERS} layers, its ssrc-group:SIM \
                 has {}",
                sim_group.len()
            )));
        }
        for (i, s) in sim_group.iter().enumerate() {
            if sim_group[..i].contains(s) {
                return Err(Error::Offer(format!(
                    "ssrc {s} appears twice in ssrc-group:SIM"
                )));
            }
        }
        if sim_group.len() > 1 {
            sim_group.iter().map(|&s| s.into()).collect()
        } else {
            Vec::new()
        }
    } else {
        Vec::new()
    };
    let names: Vec<&str> = rids.iter().map(|r| &**r).collect();
    let layers = order_rids(&names);
    let mut peer = Peer::new(id, rtc, show.id.clone(), role, now);
    if !bwe {
        // No estimate: nothing limits the layer but the viewer's cap (should the show turn
        // simulcast later, as before estimation existed).
        peer.estimate = u64::MAX;
    }
    peer.rids = rids.iter().copied().zip(layers).collect();
    peer.sim_ssrcs = sim_ssrcs;
    peer.quality = quality;
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

/// Active (port ≠ 0, not `inactive`) audio and video m-lines of an offer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Offered {
    video: usize,
    audio: usize,
}

/// Check the offer's shape and fix its directions before str0m answers it.
///
/// - At most one active video and one active audio m-line: a publisher's packets go to one
///   show track per kind, and a viewer gets one of each, so a second track would be merged
///   into the first or silently starved.
/// - `sendrecv` becomes `sendonly` in a WHIP offer and `recvonly` in a WHEP offer, so the
///   answer is `recvonly` for WHIP and `sendonly` for WHEP (RFC 9725 §4.2, and WHEP's
///   one-way model): the server never sends to a publisher nor takes media from a viewer.
///
/// str0m keeps the SDP model crate-private, so this works on the offer's text: one line per
/// attribute, media sections starting at `m=`.
fn normalize(offer: SdpOffer, role: Role) -> Result<(SdpOffer, Offered, Vec<u32>), Error> {
    let text = offer.to_sdp_string();
    let (offered, rewritten) = shape(&text, role);
    let sim = sim_group(&text)?;
    if offered.video > 1 || offered.audio > 1 {
        return Err(Error::Unsupported(format!(
            "a session carries at most one video and one audio track; the offer has {} video \
             and {} audio",
            offered.video, offered.audio
        )));
    }
    let offer = match rewritten {
        Some(t) => SdpOffer::from_sdp_string(&t).map_err(|e| Error::Offer(e.to_string()))?,
        None => offer,
    };
    Ok((offer, offered, sim))
}

/// The SSRCs of the first `a=ssrc-group:SIM` line in a video section, in their order; empty
/// when there is none. A SIM line whose SSRCs are not numbers is a 400.
fn sim_group(text: &str) -> Result<Vec<u32>, Error> {
    let mut video = false;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            video = m.starts_with("video ");
        } else if let (true, Some(rest)) = (video, line.strip_prefix("a=ssrc-group:SIM")) {
            return rest
                .split_whitespace()
                .map(|s| {
                    s.parse::<u32>()
                        .map_err(|_| Error::Offer(format!("ssrc-group:SIM has a bad SSRC {s:?}")))
                })
                .collect();
        }
    }
    Ok(Vec::new())
}

/// Count active media and rewrite `a=sendrecv` for `role`; `None` when nothing changed.
fn shape(text: &str, role: Role) -> (Offered, Option<String>) {
    let one_way = match role {
        Role::Publisher => "a=sendonly",
        Role::Viewer => "a=recvonly",
    };
    let mut offered = Offered::default();
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    // The kind of the current section (None: session level or not audio/video), whether its
    // port is non-zero, and whether it said `inactive`.
    let mut section: Option<(&str, bool, bool)> = None;
    let close = |s: Option<(&str, bool, bool)>, o: &mut Offered| {
        if let Some((kind, live, inactive)) = s {
            if live && !inactive {
                match kind {
                    "video" => o.video += 1,
                    "audio" => o.audio += 1,
                    _ => {}
                }
            }
        }
    };
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if let Some(rest) = bare.strip_prefix("m=") {
            close(section.take(), &mut offered);
            let mut f = rest.split(' ');
            let kind = f.next().unwrap_or("");
            let live = f.next().is_some_and(|p| p != "0");
            section = matches!(kind, "video" | "audio").then_some((kind, live, false));
        } else if bare == "a=inactive" {
            if let Some(s) = section.as_mut() {
                s.2 = true;
            }
        } else if bare == "a=sendrecv" {
            out.push_str(one_way);
            out.push_str(&line[bare.len()..]);
            changed = true;
            continue;
        }
        out.push_str(line);
    }
    close(section.take(), &mut offered);
    (offered, changed.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_VIDEO: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=sendrecv\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendrecv\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=inactive\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:4\r\n";

    #[test]
    fn rejected_and_inactive_lines_do_not_count() {
        let (o, _) = shape(TWO_VIDEO, Role::Publisher);
        assert_eq!(o, Offered { video: 1, audio: 1 });
        let extra = TWO_VIDEO.replace("m=video 0", "m=video 9");
        assert_eq!(shape(&extra, Role::Viewer).0.video, 2);
    }

    #[test]
    fn sendrecv_becomes_one_way() {
        let (_, t) = shape(TWO_VIDEO, Role::Publisher);
        let t = t.expect("rewritten");
        assert!(!t.contains("a=sendrecv"));
        assert_eq!(t.matches("a=sendonly\r\n").count(), 4);
        let (_, t) = shape(TWO_VIDEO, Role::Viewer);
        assert_eq!(t.expect("rewritten").matches("a=recvonly\r\n").count(), 2);
        let plain = TWO_VIDEO.replace("a=sendrecv", "a=sendonly");
        assert!(shape(&plain, Role::Publisher).1.is_none());
    }

    #[test]
    fn ssrc_group_sim_is_read_from_the_video_section_only() {
        let sim = TWO_VIDEO.replace(
            "a=mid:0\r\n",
            "a=mid:0\r\na=ssrc-group:FID 1 4\r\na=ssrc-group:SIM 1 2 3\r\n",
        );
        assert_eq!(sim_group(&sim).unwrap(), vec![1, 2, 3]);
        let audio = TWO_VIDEO.replace("a=mid:1\r\n", "a=mid:1\r\na=ssrc-group:SIM 7 8\r\n");
        assert!(sim_group(&audio).unwrap().is_empty());
        assert!(sim_group(TWO_VIDEO).unwrap().is_empty());
        let bad = TWO_VIDEO.replace("a=mid:0\r\n", "a=mid:0\r\na=ssrc-group:SIM 1 x\r\n");
        assert!(matches!(sim_group(&bad), Err(Error::Offer(_))));
    }
}
