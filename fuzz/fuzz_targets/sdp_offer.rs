//! SDP offer → accept, as WHIP and WHEP do it: any text that parses as an offer is handed to a
//! shard core as a publisher or a viewer; it is answered or refused, the shard never panics.
#![no_main]

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hawker::codec::Codec;
use hawker::engine::shard::{shard_cert, Core, Settings};
use hawker::engine::{AddPeer, Clock, Msg, Reply, Role, ShowSpec};
use hawker::metrics::Metrics;
use libfuzzer_sys::fuzz_target;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// One certificate for every input: generating a key pair per input made the target run at a
/// few hundred executions a second, all of it in key generation.
fn cert() -> Option<DtlsCert> {
    static C: OnceLock<Option<DtlsCert>> = OnceLock::new();
    C.get_or_init(shard_cert).clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(sdp) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(offer) = SdpOffer::from_sdp_string(sdp) else {
        return;
    };
    let now = Instant::now();
    let settings = Settings {
        index: 0,
        announce: "127.0.0.1:5000".parse().unwrap(),
        keyframe_interval: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(5),
        ice_timeout: Duration::from_secs(5),
        max_peers: 10,
        keyframe_cache_age: Duration::from_secs(1),
    };
    let mut core = Core::with_cert(
        now,
        settings,
        metrics().shard(0),
        Arc::new(AtomicUsize::new(0)),
        cert(),
    );
    let codecs = match flags & 3 {
        0 => vec![Codec::Vp8],
        1 => vec![Codec::H264],
        _ => vec![Codec::H264, Codec::Vp8],
    };
    let role = if flags & 4 == 0 {
        Role::Viewer
    } else {
        Role::Publisher
    };
    let show = ShowSpec {
        id: Arc::from("fuzz"),
        video_codecs: codecs,
        clock: Arc::new(Clock::default()),
        record: true,
        replay: false,
    };
    core.handle_msg(
        now,
        Msg::Add(Box::new(AddPeer {
            id: 1,
            show,
            role,
            offer,
            quality: hawker::engine::simulcast::Quality::Auto,
        })),
    );
    assert!(matches!(core.replies.as_slice(), [Reply::Added { .. }]));
    assert_eq!(
        core.metrics().panics.get(),
        0,
        "accepting the offer panicked"
    );
    core.handle_timeout(now + Duration::from_millis(50));
    core.shutdown();
});
