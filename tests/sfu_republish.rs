#![allow(
    clippy::await_holding_lock,
    clippy::bool_comparison,
    clippy::field_reassign_with_default
)] // test code: serialising guards and table-driven setup
//! The seller's publisher session goes away and a *new* publisher session (fresh webrtc-rs
//! peer: new SSRC, sequence numbers and timestamps far from the first one's and close to the
//! 16-bit / 32-bit wrap) takes over the same show. The same viewer connections keep
//! receiving: per viewer the SSRC does not change, sequence numbers continue without a gap,
//! timestamps move forward by about the wall-clock time of the switch, and the second
//! publisher's payloads arrive bit-exact.
//!
//! Three ways for the first session to end:
//! * `after_delete`: WHIP `DELETE` (the normal end of a session);
//! * `after_close_without_delete`: the peer closes (webrtc-rs sends a DTLS close_notify) but
//!   never DELETEs; the server must notice on its own;
//! * `after_network_vanish`: the peer's packets stop arriving (no DELETE, no close_notify: a
//!   relay black-holes the path); the server's ICE-lite timeout must free the show.
//!
//! A second publisher while the first is live is refused with 409 (checked in each variant).

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hawker::auth::Role;
use support::server::{LossyLink, TestServer};
use support::{
    MediaKind, Publisher, PublisherOpts, ReceivedPacket, SignalError, Viewer, ViewerOpts,
};

const VIEWERS: usize = 10;
/// Bound for the server to notice a vanished publisher (str0m's ICE-lite pair timeout is 15 s).
const VANISH_BOUND: Duration = Duration::from_secs(25);

/// The variants share two cores: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Delete,
    CloseWithoutDelete,
    NetworkVanish,
}

fn clock_rate(kind: MediaKind) -> f64 {
    match kind {
        MediaKind::Video => 90_000.0,
        MediaKind::Audio => 48_000.0,
    }
}

/// Unwraps 16-bit sequence numbers (wrap-aware against the highest seen so far).
fn extend_seqs(pkts: &[ReceivedPacket]) -> Vec<i64> {
    let mut out = Vec::with_capacity(pkts.len());
    let mut top: Option<i64> = None;
    for p in pkts {
        let e = match top {
            None => i64::from(p.seq),
            Some(t) => t + i64::from(p.seq.wrapping_sub(t as u16) as i16),
        };
        out.push(e);
        top = Some(top.map_or(e, |t| t.max(e)));
    }
    out
}

/// Checks one viewer track across the switch from `pub1` to `pub2`; returns a description of
/// every violation (empty = fine).
fn check_track(
    who: &str,
    kind: MediaKind,
    got: &[ReceivedPacket],
    pub1: &Publisher,
    pub2: &Publisher,
) -> Vec<String> {
    let mut errs = Vec::new();
    if got.is_empty() {
        return vec![format!("{who} {kind}: nothing received")];
    }
    // 1. One SSRC, one payload type for the whole life of the viewer.
    let ssrcs: BTreeSet<u32> = got.iter().map(|p| p.ssrc).collect();
    if ssrcs.len() != 1 {
        errs.push(format!("{who} {kind}: SSRC changed: {ssrcs:08x?}"));
    }
    let pts: BTreeSet<u8> = got.iter().map(|p| p.payload_type).collect();
    if pts.len() != 1 {
        errs.push(format!("{who} {kind}: payload type changed: {pts:?}"));
    }
    // 2. Dedupe (NACK resends) and order by extended sequence number: no gap at all.
    let ext = extend_seqs(got);
    let mut by_seq: Vec<(i64, &ReceivedPacket)> = Vec::new();
    let mut seen = HashSet::new();
    let mut dups = 0;
    for (e, p) in ext.iter().zip(got) {
        if seen.insert(*e) {
            by_seq.push((*e, p));
        } else {
            dups += 1;
            if by_seq
                .iter()
                .rev()
                .take(2000)
                .find(|(s, _)| s == e)
                .map(|(_, q)| q.payload_sha256)
                != Some(p.payload_sha256)
            {
                errs.push(format!(
                    "{who} {kind}: seq {e} reused for a different payload"
                ));
            }
        }
    }
    by_seq.sort_by_key(|(e, _)| *e);
    let (lo, hi) = (by_seq[0].0, by_seq[by_seq.len() - 1].0);
    let missing: Vec<i64> = (lo..=hi).filter(|s| !seen.contains(s)).collect();
    if !missing.is_empty() {
        errs.push(format!(
            "{who} {kind}: {} sequence numbers missing in {lo}..={hi} (first few {:?}); {dups} dups",
            missing.len(),
            &missing[..missing.len().min(8)]
        ));
    }
    // 3. Publisher order: every pub1 packet before every pub2 packet, exactly one boundary.
    let owner = |p: &ReceivedPacket| p.tag.map(|t| t.publisher_id);
    let boundary: Vec<usize> = by_seq
        .windows(2)
        .enumerate()
        .filter(|(_, w)| owner(w[0].1) != owner(w[1].1))
        .map(|(i, _)| i)
        .collect();
    let ids: Vec<Option<u32>> = by_seq.iter().map(|(_, p)| owner(p)).collect();
    if boundary.len() != 1
        || ids.first() != Some(&Some(pub1.id()))
        || ids.last() != Some(&Some(pub2.id()))
    {
        errs.push(format!(
            "{who} {kind}: expected pub1 then pub2 packets with one boundary, got {} boundaries \
             (first owner {:?}, last owner {:?})",
            boundary.len(),
            ids.first(),
            ids.last()
        ));
        return errs;
    }
    let b = boundary[0];
    let (s_last1, last1) = by_seq[b];
    let (s_first2, first2) = by_seq[b + 1];
    // 4. Timestamps move forward everywhere (wrap-aware) and jump by ~ the wall-clock gap.
    for w in by_seq.windows(2) {
        let d = w[1].1.timestamp.wrapping_sub(w[0].1.timestamp) as i32;
        let strictly = kind == MediaKind::Audio;
        if d < 0 || (strictly && d == 0) || d as f64 > 30.0 * clock_rate(kind) {
            errs.push(format!(
                "{who} {kind}: timestamp {} → {} (seq {} → {}) is not a forward step ({d} ticks)",
                w[0].1.timestamp, w[1].1.timestamp, w[0].0, w[1].0
            ));
            break;
        }
    }
    let ts_gap = first2.timestamp.wrapping_sub(last1.timestamp) as i32 as f64 / clock_rate(kind);
    let wall_gap = first2
        .arrival
        .saturating_duration_since(last1.arrival)
        .as_secs_f64();
    if ts_gap <= 0.0 || (ts_gap - wall_gap).abs() > 0.25 + 0.1 * wall_gap {
        errs.push(format!(
            "{who} {kind}: at the switch (seq {s_last1} → {s_first2}) the timestamp moved {ts_gap:.3} s \
             but {wall_gap:.3} s passed"
        ));
    }
    // 5. Bit-exact: every pub2 payload arrived, and everything received was sent as is.
    let have: HashSet<[u8; 32]> = got.iter().map(|p| p.payload_sha256).collect();
    let sent2 = pub2.sent(kind);
    let missing2 = sent2
        .iter()
        .filter(|s| !have.contains(&s.payload_sha256))
        .count();
    if missing2 > 0 {
        errs.push(format!(
            "{who} {kind}: {missing2} of {} payloads of the second publisher never arrived",
            sent2.len()
        ));
    }
    let sent: HashSet<[u8; 32]> = pub1
        .sent(kind)
        .iter()
        .chain(sent2.iter())
        .map(|s| s.payload_sha256)
        .collect();
    let foreign = got
        .iter()
        .filter(|p| !sent.contains(&p.payload_sha256))
        .count();
    if foreign > 0 {
        errs.push(format!(
            "{who} {kind}: {foreign} payloads differ from anything sent"
        ));
    }
    // pub1: everything from the viewer's first packet on.
    let first_idx = got[0].tag.map(|t| t.index).unwrap_or(0);
    let missing1 = pub1
        .sent(kind)
        .iter()
        .filter(|s| s.index >= first_idx && !have.contains(&s.payload_sha256))
        .count();
    if missing1 > 0 {
        errs.push(format!(
            "{who} {kind}: {missing1} payloads of the first publisher missed"
        ));
    }
    if kind == MediaKind::Video && !got[0].keyframe {
        errs.push(format!("{who} video does not start with a keyframe"));
    }
    errs
}

async fn switch_publishers(end: End) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::init_logging();
    let t_test = Instant::now();
    let server = TestServer::start(2, |_| {}).await;
    let show = "republish";
    server.create_show(show).await;
    let token1 = server.token(show, Role::Publisher, "seller");
    let token2 = server.token(show, Role::Publisher, "seller-phone");

    let mut viewers = Vec::new();
    for _ in 0..VIEWERS {
        viewers.push(
            Viewer::connect(&server.whep(show), None, ViewerOpts::default())
                .await
                .expect("viewer connects"),
        );
    }
    let per_shard = server
        .metric_per_shard("hawker_peers", "role=\"viewer\"")
        .await;
    assert!(
        per_shard.iter().all(|&n| n >= 1.0),
        "viewers on both shards: {per_shard:?}"
    );

    // Publisher 1: 16-bit sequence wrap after ~35 packets, 32-bit timestamp wrap after ~0.7 s.
    let link = LossyLink::start(&server).await;
    let whip1 = if end == End::NetworkVanish {
        link.whip(show)
    } else {
        server.whip(show)
    };
    let pub1 = Publisher::connect(
        &whip1,
        &token1,
        PublisherOpts {
            initial_seq: 65_500,
            initial_timestamp: 0xFFFF_0000,
            ..Default::default()
        },
    )
    .await
    .expect("publisher 1 connects");
    pub1.start_streaming(30);
    for (i, v) in viewers.iter().enumerate() {
        v.wait_for(
            |l| l.video.len() >= 60 && l.audio.len() >= 80,
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|e| panic!("viewer {i} receives publisher 1: {e}"));
    }

    // A second publisher while the first is live: 409.
    let err = Publisher::connect(&server.whip(show), &token2, PublisherOpts::default())
        .await
        .err()
        .expect("second publisher refused");
    let sig = err
        .downcast_ref::<SignalError>()
        .unwrap_or_else(|| panic!("expected an HTTP refusal, got {err:#}"));
    assert_eq!(sig.status, 409, "second publisher: {sig}");
    assert_eq!(
        sig.body.trim_end().lines().count(),
        1,
        "one-line reason: {:?}",
        sig.body
    );

    // End publisher 1.
    pub1.stop_streaming();
    let t_end = Instant::now();
    match end {
        End::Delete => assert_eq!(pub1.close().await.unwrap(), 200, "DELETE publisher 1"),
        End::CloseWithoutDelete => pub1.close_without_delete().await,
        End::NetworkVanish => link.blackhole(true),
    }
    let bound = match end {
        End::Delete => Duration::from_secs(2),
        _ => VANISH_BOUND,
    };
    let (left, gone) = server
        .wait_metric("hawker_peers", "role=\"publisher\"", bound, |v| v == 0.0)
        .await;
    let removal = t_end.elapsed();
    if !gone {
        // What a seller experiences: can the show be published again?
        let retry = Publisher::connect(&server.whip(show), &token2, PublisherOpts::default()).await;
        let retry = match retry {
            Ok(p) => {
                let _ = p.close().await;
                "accepted".to_string()
            }
            Err(e) => format!("{e:#}"),
        };
        panic!(
            "[{end:?}] publisher 1 still counted (hawker_peers{{role=\"publisher\"}} = {left}) \
             {removal:?} after it went away; a new WHIP for the show now gets: {retry}"
        );
    }
    eprintln!("[{end:?}] server dropped publisher 1 after {removal:?}");
    let (live, ok) = server
        .wait_metric("hawker_shows_live", "", Duration::from_secs(2), |v| {
            v == 0.0
        })
        .await;
    assert!(
        ok,
        "[{end:?}] show still live ({live}) after the publisher left"
    );

    // Publisher 2: a fresh peer, numbering about half the 16-bit / 32-bit space away.
    let pub2 = Publisher::connect(
        &server.whip(show),
        &token2,
        PublisherOpts {
            initial_seq: 32_700,
            initial_timestamp: 0x7FFF_8000,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("[{end:?}] publisher 2 connects after publisher 1 left: {e:#}"));
    assert_ne!(pub1.video_ssrc(), pub2.video_ssrc());
    pub2.start_streaming(30);
    let id2 = pub2.id();
    for (i, v) in viewers.iter().enumerate() {
        v.wait_for(
            |l| {
                l.video
                    .iter()
                    .filter(|p| p.tag.map(|t| t.publisher_id) == Some(id2))
                    .count()
                    >= 60
                    && l.audio
                        .iter()
                        .filter(|p| p.tag.map(|t| t.publisher_id) == Some(id2))
                        .count()
                        >= 80
            },
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|e| panic!("[{end:?}] viewer {i} receives publisher 2: {e}"));
    }
    pub2.stop_streaming();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let mut errs = Vec::new();
    for (i, v) in viewers.iter().enumerate() {
        for kind in [MediaKind::Video, MediaKind::Audio] {
            errs.extend(check_track(
                &format!("[{end:?}] viewer {i}"),
                kind,
                &v.packets(kind),
                &pub1,
                &pub2,
            ));
        }
    }
    // Same show timestamp for the same frame on every viewer (the show clock is shared).
    let mut ts_of: HashMap<(u32, u64), BTreeSet<u32>> = HashMap::new();
    for v in &viewers {
        for p in v.packets(MediaKind::Video) {
            if let Some(t) = p.tag {
                ts_of
                    .entry((t.publisher_id, t.index))
                    .or_default()
                    .insert(p.timestamp);
            }
        }
    }
    let split = ts_of.values().filter(|s| s.len() > 1).count();
    if split > 0 {
        errs.push(format!(
            "[{end:?}] {split} frames carry different timestamps on different viewers"
        ));
    }
    assert!(
        errs.is_empty(),
        "{} problems:\n{}",
        errs.len(),
        errs.join("\n")
    );

    for v in &viewers {
        assert_eq!(v.close().await.unwrap(), 200);
    }
    assert_eq!(pub2.close().await.unwrap(), 200);
    if end != End::Delete {
        // The server forgot the first session on its own.
        let r = support::server::delete_raw(pub1.location()).await;
        assert_eq!(r.status, 404, "stale publisher session still known: {r:?}");
        pub1.close_without_delete().await;
    }
    server.stop().await;
    eprintln!("[{end:?}] test took {:?}", t_test.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_survive_republish_after_delete() {
    switch_publishers(End::Delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_survive_republish_after_close_without_delete() {
    switch_publishers(End::CloseWithoutDelete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_survive_republish_after_network_vanish() {
    switch_publishers(End::NetworkVanish).await;
}
