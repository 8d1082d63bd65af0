//! Cost of fanning one publisher packet out to N viewers, and of fanning one commerce event out.
//!
//! Hypotheses (budget: ≥ 300 k delivered packets/s per core ⇒ ≤ 3.3 µs per viewer per packet,
//! socket included):
//! * `shard/fanout`: hawker's real hot path without the socket — `Core::handle_msg(Media)`
//!   (forwarder decision + str0m `write_rtp` + `poll_output` per viewer) and the shard loop's
//!   `Core::handle_timeout` that releases the packets (str0m pacer snapshot + SRTP protect).
//!   Expect ~1.5–2.5 µs per viewer: SRTP (AES-GCM) is ~0.3–0.5 µs of it, the rest is str0m's
//!   per-packet bookkeeping (send queue, RTX cache, TWCC, header serialisation).
//! * `str0m/*`: the same work on bare str0m peers, to attribute it: write+poll only, with a
//!   `handle_input(Timeout)` per viewer per packet (what hawker did before), and batched (one
//!   timeout per viewer after the packet was written to all, what hawker does now).
//! * `shard/fanout_per_packet_simulcast3`: the same with a 3-layer publisher (per offered
//!   packet and viewer); a viewer takes one packet in three, so about a third of the above.
//! * `bwe/*`: what a viewer's bandwidth estimation (on since simulcast) adds per viewer per
//!   packet and per idle timer, on str0m pairs with the client's TWCC feedback flowing back.
//! * `events/*`: serialising a highlight once and sharing the `Arc<str>` with 1000 viewers is
//!   nanoseconds per viewer; the real per-viewer cost is the SCTP+DTLS write on each viewer's
//!   data channel (`Core::handle_msg(Text)`), expected a few µs per viewer.
//!
//! Peers are connected in memory (ICE, DTLS, SCTP for real): the `shard/*` and `events/*`
//! benches run a real shard core with str0m client viewers on the virtual-time harness
//! (`hawker::sim`), the `str0m/*` pairs hand datagrams over by hand; no sockets. The negotiated SRTP profile is printed (str0m↔str0m picks
//! AEAD_AES_256_GCM; see benches/srtp.rs for all three profiles side by side).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hawker::codec::Codec;
use hawker::engine::forwarder::{Packet, Track};
use hawker::engine::shard::Core;
use hawker::engine::{MediaPacket, Msg, Target};
use hawker::sim::client::{self, Offer};
use hawker::sim::{Config as SimConfig, Link, Sim};
use str0m::change::SdpOffer;
use str0m::media::{MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SHOW: &str = "bench";
const PAYLOAD: usize = 1200;

fn client_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250 + 1) as u8], 4000))
}

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    connected: bool,
    channel: bool,
}

impl Client {
    fn new(i: usize, now: Instant) -> (Client, SdpOffer) {
        let addr = client_addr(i);
        let mut rtc = client::rtc(now, addr, Offer::Any);
        let (offer, pending, _) = client::viewer_offer(&mut rtc);
        // The pending offer is applied once the answer comes back.
        PENDING.with(|p| p.borrow_mut().insert(i, pending));
        (
            Client {
                rtc,
                addr,
                connected: false,
                channel: false,
            },
            offer,
        )
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if let Ok(contents) = data.try_into() {
            let _ = self.rtc.handle_input(Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: self.addr,
                    contents,
                },
            ));
        }
    }

    /// Poll until timeout; returns datagrams to send.
    fn poll(&mut self, now: Instant, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        let _ = self.rtc.handle_input(Input::Timeout(now));
        while let Ok(o) = self.rtc.poll_output() {
            match o {
                Output::Transmit(t) => out.push((t.source, t.destination, t.contents.to_vec())),
                Output::Timeout(_) => break,
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::ChannelOpen(..)) => self.channel = true,
                Output::Event(_) => {}
            }
        }
    }
}

thread_local! {
    static PENDING: std::cell::RefCell<HashMap<usize, str0m::change::SdpPendingOffer>> =
        Default::default();
}

/// A hawker shard core with `n` connected viewers of one show, on the virtual-time harness
/// (`hawker::sim`): ICE, DTLS and SCTP for real, datagrams through its in-memory network.
struct ShardNet {
    sim: Sim,
    seq: u64,
}

impl ShardNet {
    fn new(n: usize) -> ShardNet {
        let mut sim = Sim::new(SimConfig {
            shards: 1,
            keyframe_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(60),
            max_peers: 100_000,
            keyframe_cache_age: Duration::ZERO,
            ..SimConfig::default()
        });
        for _ in 0..n {
            sim.view(SHOW, Some(0), Link::with_delay(Duration::ZERO))
                .expect("offer accepted");
        }
        let ready = sim.run_until(Duration::from_secs(60), |s| {
            s.peers()
                .iter()
                .all(|p| p.connected_at.is_some() && p.channel_at.is_some())
        });
        assert!(ready, "peers did not connect");
        // Past the shard's viewer settle delay (viewers start forwarding shortly after they
        // connect).
        sim.run_for(Duration::from_millis(100));
        ShardNet { sim, seq: 10_000 }
    }

    /// Hand the shard's transmits to the clients and their answers back: 1 ms of virtual time.
    fn pump(&mut self) {
        self.sim.run_for(Duration::from_millis(1));
    }

    fn core(&mut self) -> &mut Core {
        self.sim.core_mut(0)
    }

    fn now(&self) -> Instant {
        self.sim.now()
    }

    fn media(&mut self, now: Instant) -> Arc<MediaPacket> {
        self.media_on(now, 0, false)
    }

    /// A packet of simulcast layer `layer`; `simulcast`: the caller sends the three layers in
    /// turn from a sequence number ≡ 1 (mod 3).
    fn media_on(&mut self, now: Instant, layer: u8, simulcast: bool) -> Arc<MediaPacket> {
        self.seq += 1;
        let payload: Arc<[u8]> = vec![0x42u8; PAYLOAD].into();
        // Every 60th packet starts a keyframe, so that new viewers can start; with three
        // layers in turn, three packets in a row (one keyframe per layer) every 60.
        let key = if simulcast {
            ((self.seq - 1) / 3).is_multiple_of(20)
        } else {
            self.seq % 60 == 1 || self.seq == 10_001
        };
        let mut payload = payload.to_vec();
        payload[0] = 0x10;
        payload[1] = if key { 0x00 } else { 0x01 };
        Arc::new(MediaPacket {
            show: Arc::from(SHOW),
            pkt: Packet {
                track: Track::Video,
                codec: Codec::Vp8,
                seq: self.seq,
                ts: (self.seq / 9 * 3000) as u32,
                marker: self.seq.is_multiple_of(9),
                keyframe_start: key,
                layer,
                vp8: None,
            },
            payload: payload.into(),
            arrival: now,
            vp8: None,
        })
    }
}

fn bench_shard(c: &mut Criterion) {
    let mut g = c.benchmark_group("shard");
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    for n in [100usize, 400] {
        let mut net = ShardNet::new(n);
        // Start every viewer at a keyframe.
        let now = net.now();
        net.seq = 60 * 1000;
        let mp = net.media(now);
        net.core().handle_msg(now, Msg::Media(mp));
        net.core().handle_timeout(now);
        let sent = net.core().transmits.len();
        let size = net
            .core()
            .transmits
            .first()
            .map(|t| t.contents.len())
            .unwrap_or(0);
        eprintln!(
            "shard/fanout: {n} viewers, {sent} datagrams of {size} B for a {PAYLOAD} B payload \
             (SRTP overhead {} B ⇒ {})",
            size.saturating_sub(PAYLOAD + 12),
            if size >= PAYLOAD + 12 + 16 {
                "AEAD-GCM tag"
            } else {
                "CM-SHA1 tag"
            }
        );
        eprintln!(
            "str0m keeps every sent nackable packet in a per-stream RTX cache (3 s, ≤ 2000): \
             size_of::<RtpPacket>() = {} B (payload Arc shared), ≈ {} KiB per viewer at 270 pkt/s",
            std::mem::size_of::<str0m::rtp::RtpPacket>(),
            std::mem::size_of::<str0m::rtp::RtpPacket>() * 810 / 1024
        );
        net.pump();
        // Steady state: fill every viewer's RTX cache (≤ 2000 packets) before measuring, so
        // that the first-touch page faults of a growing cache are not billed to the bench.
        for i in 0..2100 {
            let now = net.now();
            let mp = net.media(now);
            net.core().handle_msg(now, Msg::Media(mp));
            net.core().handle_timeout(now);
            if i % 64 == 0 {
                net.pump();
            } else {
                net.core().transmits.clear();
            }
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("fanout_per_packet", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for i in 0..iters {
                    let now = net.now();
                    let mp = net.media(now);
                    let core = net.core();
                    let t = Instant::now();
                    core.handle_msg(now, Msg::Media(mp));
                    core.handle_timeout(now);
                    spent += t.elapsed();
                    // Feed a share of the packets to the viewers (untimed) so that their
                    // receiver reports and TWCC flow back as in a real session; virtual time
                    // moves 1 ms per 16 packets (≈ the packet rate of two 720p streams).
                    if i % 16 == 0 {
                        net.pump();
                    } else {
                        net.core().transmits.clear();
                    }
                }
                spent
            })
        });
    }
    // Simulcast: packets of three layers in turn (a 3-layer publisher), each viewer on the one
    // its estimate allows. Per offered packet and viewer, to set beside `fanout_per_packet`:
    // hypothesis, a viewer takes one packet in three, so this costs about a third of it plus
    // the decision and drop for the other layers' packets. The share of packets that left
    // (`delivered`) is printed: with BWE on, str0m's pacer releases a viewer's video at its
    // estimate, so in this bench's virtual time most written packets wait in the pacer.
    for n in [100usize] {
        let mut net = ShardNet::new(n);
        net.seq = 60 * 1000;
        for i in 0..2100u64 {
            let now = net.now();
            let mp = net.media_on(now, (net.seq % 3) as u8, true);
            net.core().handle_msg(now, Msg::Media(mp));
            net.core().handle_timeout(now);
            if i % 48 == 0 {
                net.pump();
            } else {
                net.core().transmits.clear();
            }
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("fanout_per_packet_simulcast3", n),
            &n,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut delivered = 0u64;
                    for i in 0..iters {
                        let now = net.now();
                        let mp = net.media_on(now, (net.seq % 3) as u8, true);
                        let core = net.core();
                        let before = core.transmits.len();
                        let t = Instant::now();
                        core.handle_msg(now, Msg::Media(mp));
                        core.handle_timeout(now);
                        spent += t.elapsed();
                        delivered += (core.transmits.len() - before) as u64;
                        if i % 48 == 0 {
                            net.pump();
                        } else {
                            net.core().transmits.clear();
                        }
                    }
                    eprintln!(
                        "simulcast3: {iters} packets offered to {n} viewers, {delivered} \
                         datagrams left"
                    );
                    spent
                })
            },
        );
    }
    g.finish();
}

/// A bare str0m server-side peer (ICE-lite, RTP mode, like a hawker shard's) and a client.
struct Pair {
    server: Rtc,
    /// Kept alive with the server side (its state answers the server's RTCP).
    _client: Client,
    ssrc: Ssrc,
    pt: u8,
}

fn pair(i: usize) -> Pair {
    pair_with(i, false)
}

/// A pair whose server side runs bandwidth estimation as hawker's viewers do (`enable_bwe`
/// from 300 kbit/s, video unpaced, 1 s RTX cache), or none of it.
fn pair_with(i: usize, bwe: bool) -> Pair {
    let now = Instant::now();
    let saddr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let mut b = Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true);
    if bwe {
        b = b.enable_bwe(Some(str0m::bwe::Bitrate::bps(300_000)));
    }
    let mut server = b.build(now);
    server.add_local_candidate(Candidate::host(saddr, "udp").unwrap());
    let (mut c, offer) = Client::new(i, now);
    let answer = server.sdp_api().accept_offer(offer).unwrap();
    let pending = PENDING.with(|p| p.borrow_mut().remove(&i)).unwrap();
    client::accept(&mut c.rtc, pending, &answer.to_sdp_string()).unwrap();
    let mut video_mid: Option<Mid> = None;
    let t0 = Instant::now();
    let mut server_connected = false;
    while !(c.connected && server_connected && video_mid.is_some()) {
        assert!(t0.elapsed() < Duration::from_secs(20));
        let now = Instant::now();
        let mut out = Vec::new();
        c.poll(now, &mut out);
        for (src, _, data) in out {
            if let Ok(contents) = data.as_slice().try_into() {
                let _ = server.handle_input(Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: src,
                        destination: saddr,
                        contents,
                    },
                ));
            }
        }
        let _ = server.handle_input(Input::Timeout(now));
        while let Ok(o) = server.poll_output() {
            match o {
                Output::Transmit(t) => c.receive(now, saddr, &t.contents),
                Output::Timeout(_) => break,
                Output::Event(Event::Connected) => server_connected = true,
                Output::Event(Event::MediaAdded(m)) if m.kind == MediaKind::Video => {
                    video_mid = Some(m.mid)
                }
                Output::Event(_) => {}
            }
        }
    }
    let mid = video_mid.unwrap();
    let ssrc = server
        .direct_api()
        .stream_tx_by_mid(mid, None)
        .unwrap()
        .ssrc();
    let pt = client::pt_for(&server, mid, Codec::Vp8).unwrap();
    if bwe {
        if let Some(tx) = server.direct_api().stream_tx(&ssrc) {
            tx.set_rtx_cache(400, Duration::from_secs(1), Some(0.15));
            tx.set_unpaced(true);
        }
    }
    Pair {
        server,
        _client: c,
        ssrc,
        pt,
    }
}

fn write(p: &mut Pair, seq: u64, now: Instant, payload: &Arc<[u8]>) {
    if let Some(tx) = p.server.direct_api().stream_tx(&p.ssrc) {
        tx.write_rtp(
            RtpWrite::new(
                p.pt.into(),
                seq.into(),
                (seq * 300) as u32,
                now,
                payload.clone(),
            )
            .nackable(true),
        );
    }
}

fn poll_all(p: &mut Pair, sent: &mut usize) {
    while let Ok(o) = p.server.poll_output() {
        match o {
            Output::Transmit(t) => {
                *sent += 1;
                criterion::black_box(&t);
            }
            Output::Timeout(_) => break,
            Output::Event(_) => {}
        }
    }
}

fn bench_str0m(c: &mut Criterion) {
    let payload: Arc<[u8]> = vec![0x42u8; PAYLOAD].into();
    let mut seq = 100u64;
    let mut g = c.benchmark_group("str0m");
    g.sample_size(15).measurement_time(Duration::from_secs(4));
    for n in [100usize, 400] {
        let mut pairs: Vec<Pair> = (0..n).map(|i| pair(i + 10_000)).collect();
        // Steady state: full RTX caches (see bench_shard).
        for _ in 0..2100 {
            seq += 1;
            let now = Instant::now();
            let mut sent = 0;
            for p in pairs.iter_mut() {
                write(p, seq, now, &payload);
                let _ = p.server.handle_input(Input::Timeout(now));
                poll_all(p, &mut sent);
            }
        }
        g.throughput(Throughput::Elements(n as u64));
        // What hawker's fan-out did first: write, Timeout, poll — per viewer per packet.
        g.bench_function(BenchmarkId::new("write_timeout_poll", n), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                let mut sent = 0;
                for _ in 0..iters {
                    seq += 1;
                    let now = Instant::now();
                    for p in pairs.iter_mut() {
                        write(p, seq, now, &payload);
                        let _ = p.server.handle_input(Input::Timeout(now));
                        poll_all(p, &mut sent);
                    }
                }
                assert!(sent as u64 >= iters * n as u64);
                t.elapsed()
            })
        });
        // What it does now: write + poll per viewer (the poll only yields a Timeout: the packet
        // waits for the pacer snapshot), then Timeout + poll per viewer from handle_timeout.
        g.bench_function(BenchmarkId::new("write_poll_then_timeout_poll", n), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                let mut sent = 0;
                for _ in 0..iters {
                    seq += 1;
                    let now = Instant::now();
                    for p in pairs.iter_mut() {
                        write(p, seq, now, &payload);
                        poll_all(p, &mut sent);
                    }
                    for p in pairs.iter_mut() {
                        let _ = p.server.handle_input(Input::Timeout(now));
                        poll_all(p, &mut sent);
                    }
                }
                assert!(sent as u64 >= iters * n as u64);
                t.elapsed()
            })
        });
        // Suggested: write only, then one Timeout + poll per viewer per receive batch.
        g.bench_function(BenchmarkId::new("write_then_timeout_poll", n), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                let mut sent = 0;
                for _ in 0..iters {
                    seq += 1;
                    let now = Instant::now();
                    for p in pairs.iter_mut() {
                        write(p, seq, now, &payload);
                    }
                    for p in pairs.iter_mut() {
                        let _ = p.server.handle_input(Input::Timeout(now));
                        poll_all(p, &mut sent);
                    }
                }
                assert!(sent as u64 >= iters * n as u64);
                t.elapsed()
            })
        });
        // Same, when a whole 9-packet frame arrives in one receive batch (per packet).
        g.throughput(Throughput::Elements(9 * n as u64));
        g.bench_function(BenchmarkId::new("frame9_write_then_timeout_poll", n), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                let mut sent = 0;
                for _ in 0..iters {
                    let now = Instant::now();
                    let first = seq + 1;
                    seq += 9;
                    for p in pairs.iter_mut() {
                        for s in first..=seq {
                            write(p, s, now, &payload);
                        }
                    }
                    for p in pairs.iter_mut() {
                        let _ = p.server.handle_input(Input::Timeout(now));
                        poll_all(p, &mut sent);
                    }
                }
                assert!(sent as u64 >= iters * 9 * n as u64);
                t.elapsed()
            })
        });
        // Suggested: a smaller RTX cache (256 packets / 1 s instead of ≤ 2000 / 3 s).
        for p in pairs.iter_mut() {
            if let Some(tx) = p.server.direct_api().stream_tx(&p.ssrc) {
                tx.set_rtx_cache(256, Duration::from_secs(1), Some(0.15));
            }
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("write_timeout_poll_rtx256", n), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                let mut sent = 0;
                for _ in 0..iters {
                    seq += 1;
                    let now = Instant::now();
                    for p in pairs.iter_mut() {
                        write(p, seq, now, &payload);
                        let _ = p.server.handle_input(Input::Timeout(now));
                        poll_all(p, &mut sent);
                    }
                }
                assert!(sent as u64 >= iters * n as u64);
                t.elapsed()
            })
        });
        // Lower bound of the per-viewer str0m work with nothing to send: Timeout + poll.
        g.bench_function(BenchmarkId::new("idle_timeout_poll", n), |b| {
            b.iter(|| {
                let now = Instant::now();
                let mut sent = 0;
                for p in pairs.iter_mut() {
                    let _ = p.server.handle_input(Input::Timeout(now));
                    poll_all(p, &mut sent);
                }
                sent
            })
        });
        drop(pairs);
    }
    g.finish();
}

/// Hand a pair's server datagrams to its client and the client's RTCP (receiver reports,
/// TWCC feedback) back to the server. Only the server's side is timed (returned).
fn feedback(p: &mut Pair, now: Instant, out: &mut Vec<Vec<u8>>) -> Duration {
    let saddr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let c = &mut p._client;
    for d in out.drain(..) {
        c.receive(now, saddr, &d);
    }
    let mut back = Vec::new();
    c.poll(now, &mut back);
    let t = Instant::now();
    for (src, _, data) in back {
        if let Ok(contents) = data.as_slice().try_into() {
            let _ = p.server.handle_input(Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: src,
                    destination: saddr,
                    contents,
                },
            ));
        }
    }
    let mut sent = 0;
    poll_all(p, &mut sent);
    t.elapsed()
}

/// BWE's own cost per viewer: the same write + Timeout + poll per viewer per packet, the
/// client's RTCP fed back every 10 packets (TWCC feedback is what the estimator works on), on
/// str0m pairs without and with `enable_bwe`. Virtual time advances 4 ms per packet (one
/// viewer's 2.5 Mbit/s at 1200 B). Hypothesis: BWE adds a TWCC sequence per packet, feedback
/// parsing and the delay-based estimator, well under a microsecond per viewer per packet;
/// `idle` (Timeout + poll with nothing to send, every 4 ms) shows the timers' share.
fn bench_bwe(c: &mut Criterion) {
    let payload: Arc<[u8]> = vec![0x42u8; PAYLOAD].into();
    let mut g = c.benchmark_group("bwe");
    g.sample_size(15).measurement_time(Duration::from_secs(4));
    let n = 100usize;
    for bwe in [false, true] {
        let name = if bwe { "on" } else { "off" };
        let mut pairs: Vec<Pair> = (0..n).map(|i| pair_with(i + 20_000, bwe)).collect();
        let mut seq = 100u64;
        let mut now = Instant::now();
        let mut outs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); n];
        let mut step = |pairs: &mut Vec<Pair>, seq: &mut u64, now: &mut Instant| -> Duration {
            *seq += 1;
            *now += Duration::from_millis(4);
            let mut spent = Duration::ZERO;
            let t = Instant::now();
            for (k, p) in pairs.iter_mut().enumerate() {
                write(p, *seq, *now, &payload);
                let _ = p.server.handle_input(Input::Timeout(*now));
                while let Ok(o) = p.server.poll_output() {
                    match o {
                        Output::Transmit(t) => outs[k].push(t.contents.to_vec()),
                        Output::Timeout(_) => break,
                        Output::Event(_) => {}
                    }
                }
            }
            spent += t.elapsed();
            if (*seq).is_multiple_of(10) {
                for (k, p) in pairs.iter_mut().enumerate() {
                    spent += feedback(p, *now, &mut outs[k]);
                }
            } else {
                // The copies for the client are the bench's, not the server's: untimed.
                for o in outs.iter_mut() {
                    if o.len() > 64 {
                        o.clear();
                    }
                }
            }
            spent
        };
        // Warm up: RTX caches full, the estimate settled.
        for _ in 0..1500 {
            step(&mut pairs, &mut seq, &mut now);
        }
        eprintln!("bwe/{name}: {n} pairs warmed up (1500 packets each)");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(
            BenchmarkId::new(format!("{name}_write_timeout_poll"), n),
            |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        spent += step(&mut pairs, &mut seq, &mut now);
                    }
                    spent
                })
            },
        );
        g.bench_function(
            BenchmarkId::new(format!("{name}_idle_timeout_poll"), n),
            |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    let mut sent = 0;
                    for _ in 0..iters {
                        now += Duration::from_millis(4);
                        for p in pairs.iter_mut() {
                            let _ = p.server.handle_input(Input::Timeout(now));
                            poll_all(p, &mut sent);
                        }
                    }
                    criterion::black_box(sent);
                    t.elapsed()
                })
            },
        );
    }
    g.finish();
}

fn highlight_json(i: u64) -> String {
    serde_json::json!({
        "type": "highlight", "highlight_id": format!("h-{i}"), "sku": "lamp-1",
        "product": {"sku": "lamp-1", "title": "Desk lamp", "price": 4900, "currency": "EUR",
                    "image_url": "https://example.com/lamp.jpg", "stock": 12},
        "rtp_ts": 123_456_789u32, "basis": "sender_report", "capture_ms": 1_790_000_000_000i64,
    })
    .to_string()
}

fn bench_events(c: &mut Criterion) {
    let mut g = c.benchmark_group("events");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("serialize_highlight", |b| {
        b.iter(|| {
            i += 1;
            let s: Arc<str> = Arc::from(highlight_json(i));
            s
        })
    });
    // Serialise once, hand one Arc to each of 1000 viewers' queues (what broadcast_text does
    // per shard, and what a shard does per viewer before the channel write).
    const VIEWERS: usize = 1000;
    g.throughput(Throughput::Elements(VIEWERS as u64));
    let mut queues: Vec<Vec<Arc<str>>> = (0..VIEWERS).map(|_| Vec::with_capacity(4)).collect();
    g.bench_function("serialize_once_share_arc_1000", |b| {
        b.iter(|| {
            i += 1;
            let s: Arc<str> = Arc::from(highlight_json(i));
            for q in queues.iter_mut() {
                q.push(s.clone());
            }
            for q in queues.iter_mut() {
                q.clear();
            }
        })
    });
    // The per-viewer cost that matters: SCTP + DTLS on every viewer's `events` channel.
    const N: usize = 200;
    let mut net = ShardNet::new(N);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("shard_send_text_200", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                i += 1;
                let text: Arc<str> = Arc::from(highlight_json(i));
                let now = net.now();
                let core = net.core();
                let t = Instant::now();
                core.handle_msg(now, Msg::Text(Target::Viewers(Arc::from(SHOW)), text));
                core.handle_timeout(now);
                spent += t.elapsed();
                // Untimed: deliver, and let the viewers' SACKs come back.
                net.pump();
            }
            spent
        })
    });
    g.finish();
}

/// What recording adds on a home shard per packet: queue the `Arc` (`Core::recorded`), then
/// the driver's non-blocking hand-off to the recorder's bounded channel, with the writer thread
/// appending to a real file and fsyncing once a second. Compare with `shard/fanout_per_packet`
/// (per viewer): the hand-off is paid once per packet, not per viewer.
fn bench_recording(c: &mut Criterion) {
    let mut g = c.benchmark_group("recording");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    let dir = std::env::temp_dir().join(format!("hawker-bench-rec-{}", std::process::id()));
    let metrics = hawker::metrics::Metrics::new();
    let recorder = hawker::recording::Recorder::start(
        dir.clone(),
        hawker::recording::Metrics {
            bytes: metrics.recording_bytes.clone(),
            dropped: metrics.recording_dropped.clone(),
        },
    )
    .expect("recorder");
    let sink = recorder.sink();
    let mut net = ShardNet::new(0);
    let mut queue: Vec<Arc<MediaPacket>> = Vec::with_capacity(64);
    g.bench_function("hand_off_per_packet", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let now = net.now();
                let mp = net.media(now);
                let t = Instant::now();
                queue.push(mp.clone());
                sink.push_media(queue.drain(..));
                spent += t.elapsed();
                drop(mp);
            }
            spent
        })
    });
    g.finish();
    recorder.close(None, Duration::from_secs(10));
    eprintln!(
        "recording: {} bytes written, {} packets dropped (queue full)",
        metrics.recording_bytes.get(),
        metrics.recording_dropped.get()
    );
    drop(recorder);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(
    benches,
    bench_shard,
    bench_str0m,
    bench_bwe,
    bench_events,
    bench_recording
);
criterion_main!(benches);
