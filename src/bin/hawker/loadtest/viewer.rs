//! Viewer workers: each thread drives many str0m client peers, one UDP socket per peer (the
//! server's shard sockets are shared by all viewers, so the remote address cannot tell viewers
//! apart; the local port can), multiplexed with one `mio::Poll`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;
use str0m::change::SdpPendingOffer;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use super::stats::{Histogram, Jitter, SeqTracker};
use super::udp;
use hawker::codec::{is_keyframe_start, Codec};
use hawker::sim::{client, media};
use std::os::fd::AsRawFd;

/// mio token of a worker's waker.
const WAKER: mio::Token = mio::Token(usize::MAX);
/// How often deadlines are scanned.
const TICK: Duration = Duration::from_millis(5);

/// A viewer whose offer was answered, handed to a worker.
pub struct NewViewer {
    /// Global viewer number.
    pub index: usize,
    /// The peer.
    pub rtc: Rtc,
    /// Its socket (non-blocking).
    pub sock: std::net::UdpSocket,
    /// The pending offer.
    pub pending: SdpPendingOffer,
    /// The SDP answer.
    pub answer: String,
    /// When the POST started.
    pub post_at: Instant,
    /// When the answer arrived.
    pub answer_at: Instant,
}

/// Aggregates one worker shares with the coordinator (locked once per batch of datagrams).
#[derive(Default)]
pub struct Stats {
    /// RTP packets received (including duplicates).
    pub rx_packets: u64,
    /// Distinct RTP packets received.
    pub received: u64,
    /// RTP packets expected (sum over streams of highest − first + 1).
    pub expected: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Datagrams that came without a kernel receive timestamp (generator time used instead).
    pub rx_without_kernel_ts: u64,
    /// Forwarding delay of every distinct packet, µs.
    pub delay: Histogram,
    /// Same, since the coordinator last cleared it.
    pub delay_interval: Histogram,
    /// Seller event delivery delay, µs.
    pub event_delay: Histogram,
    /// Packets published before the viewer connected (a keyframe-cache replay): received, but
    /// kept out of the delay figures.
    pub replayed: u64,
    /// Buy → order reply, µs.
    pub buy_latency: Histogram,
    /// Peers that completed ICE+DTLS.
    pub connected: usize,
    /// Peers that saw a keyframe.
    pub with_keyframe: usize,
    /// Peers whose `events` channel opened.
    pub channel_open: usize,
    /// Peers that failed after the answer.
    pub failed: usize,
    /// Buys sent.
    pub buys_sent: u64,
    /// Order replies by status (and `error:<code>`).
    pub orders: HashMap<String, u64>,
    /// Set by the coordinator before it DELETEs the sessions: closes from then on are the
    /// teardown, not failures.
    pub closing: bool,
}

/// What one viewer saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerResult {
    /// Global viewer number.
    pub index: usize,
    /// The WHEP POST succeeded.
    pub answered: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// POST → answer, ms.
    pub answer_ms: Option<f64>,
    /// POST → ICE+DTLS connected, ms.
    pub connected_ms: Option<f64>,
    /// POST → first RTP packet, ms.
    pub first_packet_ms: Option<f64>,
    /// POST → first keyframe start (the join time), ms.
    pub first_keyframe_ms: Option<f64>,
    /// POST → `events` channel open, ms.
    pub channel_ms: Option<f64>,
    /// Distinct video packets.
    pub video_packets: u64,
    /// Distinct audio packets.
    pub audio_packets: u64,
    /// Video packets never received (sequence gaps after NACK repair).
    pub video_lost: u64,
    /// Audio packets never received.
    pub audio_lost: u64,
    /// Duplicate packets (retransmissions of packets already received).
    pub duplicates: u64,
    /// RFC 3550 jitter of video transit, ms.
    pub video_jitter_ms: f64,
    /// RFC 3550 jitter of audio transit, ms.
    pub audio_jitter_ms: f64,
    /// Seller events received.
    pub events: u64,
    /// Packets published before this viewer connected (replayed from the server's cache).
    pub replayed: u64,
    /// Mean forwarding delay of this viewer's packets, ms.
    pub delay_mean_ms: Option<f64>,
    /// Left during the run (`--churn`).
    pub left: bool,
}

struct Viewer {
    r: ViewerResult,
    rtc: Rtc,
    sock: mio::net::UdpSocket,
    local: SocketAddr,
    deadline: Instant,
    post_at: Instant,
    connected_us: Option<u64>,
    /// Kernel receive time of the datagram being handled (wall µs).
    last_rx_us: u64,
    dead: bool,
    channel: Option<ChannelId>,
    sku: Option<String>,
    codecs: HashMap<u8, Option<Codec>>,
    video: SeqTracker,
    audio: SeqTracker,
    vjit: Jitter,
    ajit: Jitter,
    buys: HashMap<String, Instant>,
    buy_no: u64,
    delay_sum_us: u64,
    delay_n: u64,
}

fn ms_since(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

/// A worker's inbox.
pub struct Inbox {
    /// New viewers.
    pub tx: crossbeam_channel::Sender<NewViewer>,
    /// Viewers (by index) that leave now: their peer is closed and its socket deregistered.
    pub leave: crossbeam_channel::Sender<usize>,
    /// Wakes the worker.
    pub waker: Arc<mio::Waker>,
}

/// Start a worker thread; it returns its viewers' results when `stop` is set.
pub fn spawn(
    n: usize,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
    events: Arc<super::publisher::Shared>,
    buys_per_s: f64,
) -> std::io::Result<(Inbox, std::thread::JoinHandle<Vec<ViewerResult>>)> {
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = crossbeam_channel::unbounded();
    let (leave, leaving) = crossbeam_channel::unbounded();
    let t = std::thread::Builder::new()
        .name(format!("loadtest-view-{n}"))
        .spawn(move || {
            let mut w = Worker {
                poll,
                viewers: Vec::new(),
                stats,
                events,
                buys_per_s,
                buy_credit: 0.0,
            };
            w.run(rx, leaving, stop)
        })?;
    Ok((Inbox { tx, leave, waker }, t))
}

struct Worker {
    poll: mio::Poll,
    viewers: Vec<Viewer>,
    stats: Arc<Mutex<Stats>>,
    events: Arc<super::publisher::Shared>,
    buys_per_s: f64,
    buy_credit: f64,
}

impl Worker {
    fn run(
        &mut self,
        rx: crossbeam_channel::Receiver<NewViewer>,
        leaving: crossbeam_channel::Receiver<usize>,
        stop: Arc<AtomicBool>,
    ) -> Vec<ViewerResult> {
        let mut events = mio::Events::with_capacity(1024);
        let mut batch = udp::RecvBatch::new();
        let mut next_tick = Instant::now();
        let mut last_buy_tick = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            while let Ok(nv) = rx.try_recv() {
                self.add(nv);
            }
            while let Ok(index) = leaving.try_recv() {
                self.leave(index);
            }
            let wait = next_tick.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
            let stats = self.stats.clone();
            let mut st = stats.lock();
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                let i = ev.token().0;
                let Some(v) = self.viewers.get_mut(i) else {
                    continue;
                };
                // Until WouldBlock (drained) or a socket error.
                while let Ok(n) = udp::recv_batch(v.sock.as_raw_fd(), &mut batch) {
                    for k in 0..n {
                        let (_, source, ts) = batch.meta[k];
                        let now = Instant::now();
                        v.last_rx_us = match ts {
                            Some(t) => t,
                            None => {
                                st.rx_without_kernel_ts += 1;
                                media::wall_us()
                            }
                        };
                        let Ok(contents) = batch.data(k).try_into() else {
                            continue;
                        };
                        let input = Input::Receive(
                            now,
                            Receive {
                                proto: Protocol::Udp,
                                source,
                                destination: v.local,
                                contents,
                            },
                        );
                        if v.rtc.handle_input(input).is_ok() {
                            drain(v, &mut st, &self.events);
                        }
                    }
                    // Fewer than asked: the socket was empty; a new datagram is a new edge.
                    if n < udp::BATCH {
                        break;
                    }
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                for v in self.viewers.iter_mut() {
                    if !v.dead && v.deadline <= now {
                        let _ = v.rtc.handle_input(Input::Timeout(now));
                        drain(v, &mut st, &self.events);
                    }
                }
                if self.buys_per_s > 0.0 {
                    self.buy_credit +=
                        self.buys_per_s * now.duration_since(last_buy_tick).as_secs_f64();
                    last_buy_tick = now;
                    while self.buy_credit >= 1.0 {
                        self.buy_credit -= 1.0;
                        self.send_buy(now, &mut st);
                    }
                }
            }
        }
        let now = Instant::now();
        self.viewers
            .iter_mut()
            .map(|v| {
                v.r.video_packets = v.video.received;
                v.r.audio_packets = v.audio.received;
                v.r.video_lost = v.video.lost();
                v.r.audio_lost = v.audio.lost();
                v.r.duplicates = v.video.duplicates + v.audio.duplicates;
                v.r.video_jitter_ms = v.vjit.ms();
                v.r.audio_jitter_ms = v.ajit.ms();
                v.r.delay_mean_ms =
                    (v.delay_n > 0).then(|| v.delay_sum_us as f64 / v.delay_n as f64 / 1000.0);
                v.rtc.disconnect();
                let _ = now;
                v.r.clone()
            })
            .collect()
    }

    fn add(&mut self, nv: NewViewer) {
        let NewViewer {
            index,
            mut rtc,
            sock,
            pending,
            answer,
            post_at,
            answer_at,
        } = nv;
        let mut r = ViewerResult {
            index,
            answered: true,
            answer_ms: Some(ms_since(post_at, answer_at)),
            ..Default::default()
        };
        let local = sock.local_addr().ok();
        let accepted = client::accept(&mut rtc, pending, &answer);
        let token = mio::Token(self.viewers.len());
        let _ = udp::enable_rx_timestamps(sock.as_raw_fd());
        let mut sock = mio::net::UdpSocket::from_std(sock);
        let registered = self
            .poll
            .registry()
            .register(&mut sock, token, mio::Interest::READABLE);
        let dead = match (&accepted, &registered, local) {
            (Ok(()), Ok(()), Some(_)) => false,
            _ => {
                r.error = Some(match (accepted, registered) {
                    (Err(e), _) => format!("{e:#}"),
                    (_, Err(e)) => format!("register socket: {e}"),
                    _ => "socket has no address".into(),
                });
                self.stats.lock().failed += 1;
                true
            }
        };
        let mut v = Viewer {
            r,
            rtc,
            sock,
            local: local.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            deadline: Instant::now(),
            post_at,
            connected_us: None,
            last_rx_us: 0,
            dead,
            channel: None,
            sku: None,
            codecs: HashMap::new(),
            video: SeqTracker::default(),
            audio: SeqTracker::default(),
            vjit: Jitter::default(),
            ajit: Jitter::default(),
            buys: HashMap::new(),
            buy_no: 0,
            delay_sum_us: 0,
            delay_n: 0,
        };
        if !v.dead {
            let _ = v.rtc.handle_input(Input::Timeout(Instant::now()));
            let mut st = self.stats.lock();
            drain(&mut v, &mut st, &self.events);
        }
        self.viewers.push(v);
    }

    /// A viewer leaves (its session was DELETEd): close its peer, stop reading its socket,
    /// and count it out of the live figures.
    fn leave(&mut self, index: usize) {
        let Some(v) = self
            .viewers
            .iter_mut()
            .find(|v| v.r.index == index && !v.dead)
        else {
            return;
        };
        v.dead = true;
        v.r.left = true;
        v.rtc.disconnect();
        let _ = self.poll.registry().deregister(&mut v.sock);
        let mut st = self.stats.lock();
        if v.connected_us.is_some() {
            st.connected = st.connected.saturating_sub(1);
        }
        if v.r.first_keyframe_ms.is_some() {
            st.with_keyframe = st.with_keyframe.saturating_sub(1);
        }
    }

    fn send_buy(&mut self, now: Instant, st: &mut Stats) {
        if self.viewers.is_empty() {
            return;
        }
        let mut rng = rand::thread_rng();
        for _ in 0..8 {
            let i = rng.gen_range(0..self.viewers.len());
            let v = &mut self.viewers[i];
            let (Some(cid), Some(sku)) = (v.channel, v.sku.clone()) else {
                continue;
            };
            if v.dead {
                continue;
            }
            v.buy_no += 1;
            let rid = format!("lt-{}-{}-{}", media::wall_us(), v.r.index, v.buy_no);
            let msg = serde_json::json!({"type": "buy", "request_id": rid, "sku": sku, "qty": 1})
                .to_string();
            let ok = v
                .rtc
                .channel(cid)
                .map(|mut c| c.write(false, msg.as_bytes()).unwrap_or(false))
                .unwrap_or(false);
            if ok {
                v.buys.insert(rid, now);
                st.buys_sent += 1;
            }
            drain(v, st, &self.events);
            return;
        }
    }
}

fn drain(v: &mut Viewer, st: &mut Stats, events: &super::publisher::Shared) {
    loop {
        if v.dead {
            return;
        }
        match v.rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let _ = v.sock.send_to(&t.contents, t.destination);
            }
            Ok(Output::Timeout(t)) => {
                v.deadline = t;
                return;
            }
            Ok(Output::Event(e)) => on_event(v, st, events, e),
            Err(e) => {
                v.dead = true;
                if !st.closing {
                    v.r.error.get_or_insert_with(|| format!("poll_output: {e}"));
                    st.failed += 1;
                }
                return;
            }
        }
    }
}

fn on_event(v: &mut Viewer, st: &mut Stats, events: &super::publisher::Shared, e: Event) {
    match e {
        Event::Connected => {
            v.r.connected_ms = Some(ms_since(v.post_at, Instant::now()));
            v.connected_us = Some(media::wall_us());
            st.connected += 1;
        }
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            v.dead = true;
            if !st.closing {
                v.r.error.get_or_insert_with(|| "ICE disconnected".into());
                st.failed += 1;
            }
        }
        Event::ChannelOpen(cid, label) if label == hawker::engine::EVENTS_LABEL => {
            v.channel = Some(cid);
            v.r.channel_ms = Some(ms_since(v.post_at, Instant::now()));
            st.channel_open += 1;
        }
        Event::ChannelData(d) if Some(d.id) == v.channel => {
            let now_us = media::wall_us();
            let Ok(m) = serde_json::from_slice::<serde_json::Value>(&d.data) else {
                return;
            };
            match m["type"].as_str() {
                Some("snapshot") => {
                    v.sku = m["products"]
                        .as_array()
                        .and_then(|a| a.first())
                        .and_then(|p| p["sku"].as_str())
                        .map(str::to_string);
                }
                Some(ty @ ("highlight" | "chat")) => {
                    let key = if ty == "highlight" {
                        m["capture_ms"].as_i64().map(|c| format!("h:{c}"))
                    } else {
                        m["text"].as_str().map(|t| format!("c:{t}"))
                    };
                    let sent = key.and_then(|k| events.events.lock().get(&k).copied());
                    if let Some(sent) = sent {
                        st.event_delay.record(now_us.saturating_sub(sent));
                        v.r.events += 1;
                    }
                }
                Some(ty @ ("order" | "error")) => {
                    let Some(rid) = m["request_id"].as_str() else {
                        return;
                    };
                    if let Some(t0) = v.buys.remove(rid) {
                        st.buy_latency.record(t0.elapsed().as_micros() as u64);
                        let status = if ty == "order" {
                            m["status"].as_str().unwrap_or("?").to_string()
                        } else {
                            format!("error:{}", m["code"].as_str().unwrap_or("?"))
                        };
                        *st.orders.entry(status).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        Event::RtpPacket(pkt) => {
            let pt = *pkt.header.payload_type;
            let codec = *v
                .codecs
                .entry(pt)
                .or_insert_with(|| client::codec_of(&v.rtc, pt));
            let Some(codec) = codec else { return };
            let seq = *pkt.seq_no;
            st.rx_packets += 1;
            st.rx_bytes += pkt.payload.len() as u64;
            if v.r.first_packet_ms.is_none() {
                v.r.first_packet_ms = Some(ms_since(v.post_at, pkt.timestamp));
            }
            let (tracker, jitter) = if codec == Codec::Opus {
                (&mut v.audio, &mut v.ajit)
            } else {
                (&mut v.video, &mut v.vjit)
            };
            let (new, grow) = tracker.on_packet(seq);
            st.expected += grow;
            if !new {
                return;
            }
            st.received += 1;
            if codec != Codec::Opus
                && v.r.first_keyframe_ms.is_none()
                && is_keyframe_start(codec, &pkt.payload)
            {
                v.r.first_keyframe_ms = Some(ms_since(v.post_at, pkt.timestamp));
                st.with_keyframe += 1;
            }
            if let Some(sent) = media::trailer(&pkt.payload) {
                if v.connected_us.is_none_or(|c| sent < c) {
                    // Published before this viewer connected: a keyframe-cache replay.
                    st.replayed += 1;
                    v.r.replayed += 1;
                    return;
                }
                let recv = if v.last_rx_us > 0 {
                    v.last_rx_us
                } else {
                    media::wall_us()
                };
                let d = recv.saturating_sub(sent);
                st.delay.record(d);
                st.delay_interval.record(d);
                v.delay_sum_us += d;
                v.delay_n += 1;
                jitter.on_transit(recv as i64 - sent as i64);
            }
        }
        _ => {}
    }
}
