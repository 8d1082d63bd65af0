//! Client-side WebRTC peers built on str0m: a full (not ICE-lite), controlling `Rtc` in RTP
//! mode, as cheap as a real peer can be. Used by the load generator and by the benches.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use str0m::{Candidate, Rtc};

use crate::codec::Codec;
use crate::engine::EVENTS_LABEL;

/// One DTLS certificate for every client peer of the process: key generation is the most
/// expensive part of creating an `Rtc`, and a load generator needs no distinct identities.
pub fn shared_cert() -> DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("DTLS certificate")
    })
    .clone()
}

/// Which codecs a client peer offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// A viewer: Opus, VP8 and H.264.
    Any,
    /// A publisher: Opus and VP8.
    Vp8,
    /// A publisher: Opus and H.264.
    H264,
}

/// A client `Rtc` (RTP mode, no stats) with one host candidate at `local`.
pub fn rtc(now: Instant, local: SocketAddr, codecs: Offer) -> Rtc {
    let mut b = Rtc::builder()
        .set_rtp_mode(true)
        .set_dtls_cert(shared_cert())
        .set_stats_interval(None)
        .clear_codecs()
        .enable_opus(true, false);
    b = match codecs {
        Offer::Any => b.enable_vp8(true).enable_h264(true),
        Offer::Vp8 => b.enable_vp8(true),
        Offer::H264 => b.enable_h264(true),
    };
    let mut rtc = b.build(now);
    let cand = Candidate::host(local, "udp").expect("host candidate");
    rtc.add_local_candidate(cand);
    rtc
}

/// The media lines of a client offer.
#[derive(Debug, Clone, Copy)]
pub struct Mids {
    /// Video.
    pub video: Mid,
    /// Audio.
    pub audio: Mid,
}

/// A viewer's offer: video and audio recvonly, and the `events` data channel.
pub fn viewer_offer(rtc: &mut Rtc) -> (SdpOffer, SdpPendingOffer, Mids) {
    offer(rtc, Direction::RecvOnly, &[])
}

/// A publisher's offer: video and audio sendonly, and the `events` data channel.
pub fn publisher_offer(rtc: &mut Rtc) -> (SdpOffer, SdpPendingOffer, Mids) {
    offer(rtc, Direction::SendOnly, &[])
}

/// A simulcast publisher's offer: video with these rids (`a=simulcast:send`, in this order).
pub fn simulcast_offer(rtc: &mut Rtc, rids: &[&str]) -> (SdpOffer, SdpPendingOffer, Mids) {
    offer(rtc, Direction::SendOnly, rids)
}

/// A rid-signalled simulcast offer rewritten to `a=ssrc-group:SIM` signalling: no `a=rid`,
/// `a=simulcast` or rid header extensions, and a SIM group of the layers' SSRCs (the first of
/// each `FID` group, in offer order, which is the rids' order).
pub fn rids_to_ssrc_group(offer: &SdpOffer) -> SdpOffer {
    let text = offer.to_sdp_string();
    let mut out = String::with_capacity(text.len());
    let mut video = false;
    let mut primaries: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with("m=") {
            video = line.starts_with("m=video");
        }
        if video {
            if let Some(rest) = line.strip_prefix("a=ssrc-group:FID ") {
                primaries.extend(rest.split_whitespace().next());
            }
        }
    }
    let mut video = false;
    for line in text.lines() {
        if line.starts_with("m=") {
            video = line.starts_with("m=video");
        }
        let drop = video
            && (line.starts_with("a=rid:")
                || line.starts_with("a=simulcast:")
                || (line.starts_with("a=extmap:") && line.contains("rtp-stream-id")));
        if drop {
            continue;
        }
        if video && line.starts_with("a=ssrc-group:FID ") && !primaries.is_empty() {
            out.push_str(&format!("a=ssrc-group:SIM {}\r\n", primaries.join(" ")));
            primaries.clear();
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    SdpOffer::from_sdp_string(&out).expect("the rewritten offer parses")
}

/// The rids of a synthetic simulcast publisher, lowest layer first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];

fn offer(rtc: &mut Rtc, dir: Direction, rids: &[&str]) -> (SdpOffer, SdpPendingOffer, Mids) {
    let mut api = rtc.sdp_api();
    let stream = Some("hawker-loadtest".to_string());
    let simulcast = (!rids.is_empty()).then(|| {
        let mut s = Simulcast::new();
        for r in rids {
            s.add_send_layer(SimulcastLayer::new(r));
        }
        s
    });
    let video = api.add_media(
        MediaKind::Video,
        dir,
        stream.clone(),
        Some("v".into()),
        simulcast,
    );
    let audio = api.add_media(MediaKind::Audio, dir, stream, Some("a".into()), None);
    api.add_channel(EVENTS_LABEL.to_string());
    let (offer, pending) = api.apply().expect("offer has changes");
    (offer, pending, Mids { video, audio })
}

/// Apply the server's answer.
pub fn accept(rtc: &mut Rtc, pending: SdpPendingOffer, answer: &str) -> anyhow::Result<()> {
    let answer = SdpAnswer::from_sdp_string(answer)
        .map_err(|e| anyhow::anyhow!("malformed SDP answer: {e}"))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| anyhow::anyhow!("answer rejected: {e}"))
}

/// The hawker codec of a negotiated payload type, if it is one hawker forwards.
pub fn codec_of(rtc: &Rtc, pt: u8) -> Option<Codec> {
    use str0m::format::Codec as C;
    let p = rtc.codec_config().params().iter().find(|p| *p.pt() == pt)?;
    match p.spec().codec {
        C::Opus => Some(Codec::Opus),
        C::Vp8 => Some(Codec::Vp8),
        C::H264 => Some(Codec::H264),
        _ => None,
    }
}

/// The first payload type the remote accepted on `mid` for a codec.
pub fn pt_for(rtc: &Rtc, mid: Mid, want: Codec) -> Option<u8> {
    let media = rtc.media(mid)?;
    let remote: Vec<u8> = media.remote_pts().iter().map(|p| **p).collect();
    let params = rtc.codec_config().params();
    remote.into_iter().find(|pt| {
        params.iter().any(|p| {
            *p.pt() == *pt
                && match (want, p.spec().codec) {
                    (Codec::Opus, str0m::format::Codec::Opus) => true,
                    (Codec::Vp8, str0m::format::Codec::Vp8) => true,
                    (Codec::H264, str0m::format::Codec::H264) => {
                        p.spec().format.packetization_mode == Some(1)
                    }
                    _ => false,
                }
        })
    })
}
