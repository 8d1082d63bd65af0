//! A virtual-time harness for the media engine, shared by tests and benches.
//!
//! [`Sim`] wires N shard [`Core`]s and str0m client peers (a synthetic [`Publish`]er, viewers
//! that record every packet) through an in-memory [`net::Net`] with per-host delay, loss and a
//! bandwidth cap. Nothing sleeps and nothing reads the clock: [`Sim::run_for`] jumps from one
//! deadline to the next (the earliest of every core's and peer's timer, the publisher's frame
//! schedule and the next datagram arrival), like str0m's `tests/common.rs` `progress()` or
//! quinn-proto's `Pair::step`. With the same seed and the same calls, a run is the same run.
//!
//! What the harness stands in for:
//! * the drivers: cross-shard messages are handed to the other cores at once (in shard
//!   order), transmits go into the network, replies and events are collected;
//! * the control plane: [`Sim::publish`] and [`Sim::view`] are WHIP and WHEP (an SDP offer
//!   as `Msg::Add` to the shard the server would pick), [`Sim::delete`] is a DELETE, and
//!   [`Sim::events`] is what the control plane would hear.
//!
//! [`client`] and [`media`] (str0m client peers, synthetic VP8/H.264/Opus payloads) are also
//! what `hawker loadtest` is made of.

pub mod client;
pub mod media;
pub mod net;
mod peer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::Input;

use crate::codec::Codec;
use crate::engine::shard::{self, Core, Settings, ToOthers};
use crate::engine::simulcast::Quality;
use crate::engine::{AddPeer, Clock, Error, Event, Msg, PeerId, Reply, Role, ShowSpec};
use crate::metrics::{Metrics, ShardMetrics};
pub use net::Link;
pub use peer::{hash, Peer, Publish, Received};

/// The harness's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of shards.
    pub shards: usize,
    /// Seed for the network's random choices.
    pub seed: u64,
    /// The servers' link (all shards share one host).
    pub server_link: Link,
    /// `media.keyframe_interval`.
    pub keyframe_interval: Duration,
    /// `media.connect_timeout`.
    pub connect_timeout: Duration,
    /// `media.ice_timeout`.
    pub ice_timeout: Duration,
    /// `media.keyframe_cache_max_age` (zero disables the cache).
    pub keyframe_cache_age: Duration,
    /// `media.max_peers_per_shard`.
    pub max_peers: usize,
    /// Whether shows are recorded (their packets collected in [`Sim::recorded`]).
    pub record: bool,
}

impl Default for Config {
    fn default() -> Config {
        let media = crate::config::Config::default().media;
        Config {
            shards: 2,
            seed: 1,
            server_link: Link::with_delay(Duration::ZERO),
            keyframe_interval: media.keyframe_interval,
            connect_timeout: media.connect_timeout,
            ice_timeout: media.ice_timeout,
            keyframe_cache_age: media.keyframe_cache_max_age,
            max_peers: media.max_peers_per_shard,
            record: false,
        }
    }
}

/// Index of a client peer in the harness.
pub type Handle = usize;

/// The harness.
pub struct Sim {
    epoch: Instant,
    now: Instant,
    cores: Vec<Core>,
    addrs: Vec<SocketAddr>,
    metrics: Metrics,
    /// The network.
    pub net: net::Net,
    peers: Vec<Peer>,
    /// The SDP answer each client got, by handle.
    answers: Vec<String>,
    by_addr: HashMap<SocketAddr, Handle>,
    clocks: HashMap<Arc<str>, Arc<Clock>>,
    next_id: PeerId,
    /// Everything the control plane would have heard, with its time.
    pub events: Vec<(Instant, Event)>,
    /// Answer every `events` channel that opens with this greeting, as the control plane
    /// does with its snapshot (`None`: never greet; broadcasts are then held).
    pub greeting: Option<Arc<str>>,
    steps: u64,
    /// Steps in a row at the same instant: a deadline that is never served spins here.
    stalled: u32,
    out: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    record: bool,
    /// What the shards queued for the recorder, in order.
    pub recorded: Vec<Arc<crate::engine::MediaPacket>>,
    /// The quality cap of the viewer being added.
    quality: Quality,
    /// The viewer being added watches a replay (`ShowSpec::replay`).
    replay: bool,
    /// Keyframe wishes one shard passed to the others (`ToOthers::KeyframeWanted`).
    pub keyframe_wishes: u64,
}

impl Sim {
    /// A harness with `cfg.shards` shard cores at time zero.
    pub fn new(cfg: Config) -> Sim {
        let epoch = Instant::now();
        let metrics = Metrics::new();
        let mut net = net::Net::new(cfg.seed);
        let mut cores = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..cfg.shards.max(1) {
            let addr = SocketAddr::from(([127, 0, 0, 1], 5000 + i as u16));
            net.attach(addr, cfg.server_link);
            let settings = Settings {
                index: i,
                announce: addr,
                keyframe_interval: cfg.keyframe_interval,
                connect_timeout: cfg.connect_timeout,
                ice_timeout: cfg.ice_timeout,
                max_peers: cfg.max_peers,
                keyframe_cache_age: cfg.keyframe_cache_age,
            };
            let count = Arc::new(AtomicUsize::new(0));
            cores.push(Core::new(epoch, settings, metrics.shard(i), count));
            addrs.push(addr);
        }
        Sim {
            epoch,
            now: epoch,
            cores,
            addrs,
            metrics,
            net,
            peers: Vec::new(),
            answers: Vec::new(),
            by_addr: HashMap::new(),
            clocks: HashMap::new(),
            next_id: 1,
            events: Vec::new(),
            greeting: Some(Arc::from("{\"type\":\"snapshot\"}")),
            steps: 0,
            stalled: 0,
            out: Vec::new(),
            record: cfg.record,
            recorded: Vec::new(),
            quality: Quality::Auto,
            replay: false,
            keyframe_wishes: 0,
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// Deadlines processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The metrics registry the shard cores count into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// One shard's counters.
    pub fn shard_metrics(&self, shard: usize) -> &ShardMetrics {
        self.cores[shard].metrics()
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.cores.len()
    }

    /// A shard core, to inspect.
    pub fn core(&self, shard: usize) -> &Core {
        &self.cores[shard]
    }

    /// A shard core, to drive directly (benches inject packets this way); whatever it queues
    /// is flushed at the next step.
    pub fn core_mut(&mut self, shard: usize) -> &mut Core {
        &mut self.cores[shard]
    }

    /// A client peer.
    pub fn peer(&self, h: Handle) -> &Peer {
        &self.peers[h]
    }

    /// Every client peer.
    /// The SDP answer the server gave this client.
    pub fn answer(&self, h: Handle) -> &str {
        &self.answers[h]
    }

    /// All clients.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// When the server reported a peer connected (`Event::Connected`), if it did.
    pub fn connected_event(&self, h: Handle) -> Option<Instant> {
        let id = self.peers[h].id;
        self.events.iter().find_map(|(t, e)| match e {
            Event::Connected { peer, .. } if *peer == id => Some(*t),
            _ => None,
        })
    }

    /// When the server let a peer go (`Event::Gone`), if it did.
    pub fn gone_event(&self, h: Handle) -> Option<Instant> {
        let id = self.peers[h].id;
        self.events.iter().find_map(|(t, e)| match e {
            Event::Gone { peer, .. } if *peer == id => Some(*t),
            _ => None,
        })
    }

    /// Peers on every shard, as the server counts them.
    pub fn server_peers(&self) -> usize {
        self.cores.iter().map(Core::peer_count).sum()
    }

    /// The home shard of a show.
    pub fn home_of(&self, show: &str) -> usize {
        shard::home_of(show, self.cores.len())
    }

    /// The video clock of a show.
    pub fn clock(&mut self, show: &str) -> Arc<Clock> {
        self.clocks.entry(Arc::from(show)).or_default().clone()
    }

    fn show_spec(&mut self, show: &str) -> ShowSpec {
        ShowSpec {
            id: Arc::from(show),
            video_codecs: vec![Codec::H264, Codec::Vp8],
            clock: self.clock(show),
            record: self.record,
            replay: self.replay,
        }
    }

    fn client_addr(&self) -> SocketAddr {
        let n = self.peers.len();
        SocketAddr::from((
            [127, 0, 1 + (n / 60_000) as u8, 1],
            1024 + (n % 60_000) as u16,
        ))
    }

    /// WHIP: a publisher for `show` on its home shard, behind `link`.
    pub fn publish(&mut self, show: &str, cfg: Publish, link: Link) -> Result<Handle, Error> {
        let shard = self.home_of(show);
        let addr = self.client_addr();
        let offer_kind = match cfg.codec {
            Codec::H264 => client::Offer::H264,
            _ => client::Offer::Vp8,
        };
        let mut rtc = client::rtc(self.now, addr, offer_kind);
        let n = cfg.simulcast.len().min(client::RIDS.len());
        let (offer, pending, mids) = if n == 0 {
            client::publisher_offer(&mut rtc)
        } else {
            client::simulcast_offer(&mut rtc, &client::RIDS[..n])
        };
        let offer = if cfg.ssrc_group && n > 0 {
            client::rids_to_ssrc_group(&offer)
        } else {
            offer
        };
        let offer = match cfg.offer_edit {
            Some(edit) => SdpOffer::from_sdp_string(&edit(offer.to_sdp_string()))
                .map_err(|e| Error::Offer(format!("the edited offer does not parse: {e}")))?,
            None => offer,
        };
        let layer_seq = vec![0; n];
        let now = self.now;
        let kind = peer::Kind::Publisher(Box::new(peer::PubState {
            cfg,
            next_frame: now,
            next_audio: now,
            frame_no: 0,
            audio_no: 0,
            last_key: None,
            key_wanted: false,
            tx: None,
            layer_tx: Vec::new(),
            layer_seq,
            vseq: 0,
            aseq: 0,
        }));
        let client = (rtc, pending, mids, kind);
        self.add(show, Role::Publisher, shard, addr, link, offer, client)
    }

    /// WHEP: a viewer of `show` on `shard` (`None`: the least loaded), behind `link`.
    pub fn view(&mut self, show: &str, shard: Option<usize>, link: Link) -> Result<Handle, Error> {
        self.view_with(show, shard, link, Quality::Auto)
    }

    /// A viewer of a replay named `show`: no publisher feeds it; the test hands it packets
    /// with [`Sim::send`] (`Msg::Media`), as the control plane's replay feeder does.
    pub fn view_replay(
        &mut self,
        show: &str,
        shard: Option<usize>,
        link: Link,
    ) -> Result<Handle, Error> {
        self.replay = true;
        let r = self.view(show, shard, link);
        self.replay = false;
        r
    }

    /// WHEP with `?quality=`.
    pub fn view_with(
        &mut self,
        show: &str,
        shard: Option<usize>,
        link: Link,
        quality: Quality,
    ) -> Result<Handle, Error> {
        let shard = shard.unwrap_or_else(|| {
            (0..self.cores.len())
                .min_by_key(|&i| (self.cores[i].peer_count(), i))
                .unwrap_or(0)
        });
        let addr = self.client_addr();
        let mut rtc = client::rtc(self.now, addr, client::Offer::Any);
        let (offer, pending, mids) = client::viewer_offer(&mut rtc);
        let client = (rtc, pending, mids, peer::Kind::Viewer);
        self.quality = quality;
        self.add(show, Role::Viewer, shard, addr, link, offer, client)
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        show: &str,
        role: Role,
        shard: usize,
        addr: SocketAddr,
        link: Link,
        offer: SdpOffer,
        client: (
            str0m::Rtc,
            str0m::change::SdpPendingOffer,
            client::Mids,
            peer::Kind,
        ),
    ) -> Result<Handle, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let spec = self.show_spec(show);
        let now = self.now;
        self.cores[shard].handle_msg(
            now,
            Msg::Add(Box::new(AddPeer {
                id,
                show: spec,
                role,
                offer,
                quality: std::mem::take(&mut self.quality),
            })),
        );
        let mut answer = None;
        self.flush_core(shard, &mut |r| {
            if let Reply::Added { peer, result } = r {
                if peer == id {
                    answer = Some(result);
                }
            }
        });
        let answer = answer.unwrap_or(Err(Error::ShuttingDown))?;
        let (mut rtc, pending, mids, kind) = client;
        client::accept(&mut rtc, pending, &answer).map_err(|e| Error::Offer(e.to_string()))?;
        self.net.attach(addr, link);
        let h = self.peers.len();
        let p = Peer::new(
            peer::Identity {
                id,
                role,
                show: Arc::from(show),
                shard,
                addr,
            },
            rtc,
            mids,
            kind,
            now,
        );
        self.peers.push(p);
        self.answers.push(answer);
        self.by_addr.insert(addr, h);
        self.drain_peer(h);
        Ok(h)
    }

    /// WHIP/WHEP DELETE of a client's session; the client stops too. Whether the server had it.
    pub fn delete(&mut self, h: Handle) -> bool {
        let (shard, id) = (self.peers[h].shard, self.peers[h].id);
        self.peers[h].stopped = true;
        let now = self.now;
        self.cores[shard].handle_msg(now, Msg::Remove(id));
        let mut existed = false;
        self.flush_core(shard, &mut |r| {
            if let Reply::Removed { peer, existed: e } = r {
                if peer == id {
                    existed = e;
                }
            }
        });
        existed
    }

    /// The client closes its connection (DTLS close_notify) without a DELETE.
    pub fn close(&mut self, h: Handle) {
        let _ = self.peers[h].rtc.close();
        self.drain_peer(h);
        self.peers[h].stopped = true;
    }

    /// The client vanishes: no DELETE, no close; nothing it sends or should receive arrives.
    pub fn vanish(&mut self, h: Handle) {
        self.peers[h].stopped = true;
        let addr = self.peers[h].addr;
        self.net.set_cut(addr, true);
    }

    /// From now on the client sends no STUN binding requests (no ICE consent) but keeps
    /// sending media and RTCP, as GStreamer 1.22's libnice does after nomination.
    pub fn quiet_ice(&mut self, h: Handle) {
        self.peers[h].quiet_ice = true;
    }

    /// A client sends text on its `events` channel (false if the channel is not open).
    pub fn say(&mut self, h: Handle, text: &str) -> bool {
        let p = &mut self.peers[h];
        let Some(cid) = p.channel else { return false };
        let ok = p
            .rtc
            .channel(cid)
            .is_some_and(|mut c| c.write(false, text.as_bytes()).unwrap_or(false));
        self.drain_peer(h);
        ok
    }

    /// A viewer sends a keyframe request (PLI) every `every` from now on.
    pub fn send_plis(&mut self, h: Handle, every: Duration) {
        self.peers[h].pli_every = Some((every, self.now));
    }

    /// A simulcast publisher changes a layer's bitrate from now on; 0 stops sending it (a
    /// browser pausing its top layer when its uplink shrinks), and a non-zero rate resumes it.
    pub fn set_layer_kbps(&mut self, h: Handle, layer: usize, kbps: u32) {
        if let peer::Kind::Publisher(p) = &mut self.peers[h].kind {
            if let Some(k) = p.cfg.simulcast.get_mut(layer) {
                *k = kbps;
            }
        }
    }

    /// The viewer stops sending keyframe requests.
    pub fn stop_plis(&mut self, h: Handle) {
        self.peers[h].pli_every = None;
    }

    /// The client writes `text` on its `events` channel; false if its stack refused it (channel
    /// not open, over the server's advertised `max-message-size`, or send buffer full).
    pub fn send_text(&mut self, h: Handle, text: &str) -> bool {
        let p = &mut self.peers[h];
        let Some(cid) = p.channel else {
            return false;
        };
        let ok = p
            .rtc
            .channel(cid)
            .is_some_and(|mut c| c.write(false, text.as_bytes()).unwrap_or(false));
        self.drain_peer(h);
        ok
    }

    /// A datagram arrives at the server from a client's address, now, whatever it holds (the
    /// fuzz target of the datagram path uses this).
    pub fn inject_datagram(&mut self, h: Handle, data: &[u8]) {
        let (shard, source) = (self.peers[h].shard, self.peers[h].addr);
        let (now, local) = (self.now, self.addrs[shard]);
        self.cores[shard].handle_datagram(now, source, local, data);
        self.flush_core(shard, &mut |_| {});
    }

    /// Text the control plane heard from a peer, in order.
    pub fn texts_from(&self, peer: PeerId) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Text { peer: p, text, .. } if *p == peer => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// A message to a shard, as the control plane would send it (replies are dropped).
    pub fn send(&mut self, shard: usize, msg: Msg) {
        let now = self.now;
        self.cores[shard].handle_msg(now, msg);
        self.flush_core(shard, &mut |_| {});
    }

    /// Run until `d` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
    }

    /// Run until `cond` holds (checked after every step) or `limit` of virtual time passed;
    /// whether it held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        let until = self.now + limit;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(until) {
                return cond(self);
            }
        }
    }

    /// Advance to the next deadline at or before `until` and process everything due then.
    /// False when nothing is due before `until` (time is then `until`).
    pub fn step(&mut self, until: Instant) -> bool {
        let next = self.next_deadline();
        let Some(t) = next.filter(|&t| t <= until) else {
            self.now = until;
            return false;
        };
        if t <= self.now {
            self.stalled += 1;
            if self.stalled >= 10_000 {
                let cores: Vec<_> = (self.cores.iter().enumerate())
                    .map(|(i, c)| (i, c.due(self.now)))
                    .filter(|(_, d)| !d.is_empty())
                    .collect();
                let peers: Vec<_> = (self.peers.iter())
                    .filter(|p| p.next_deadline().is_some_and(|d| d <= self.now))
                    .map(|p| p.id)
                    .collect();
                panic!(
                    "no progress at {:?}: a deadline is reported but never served \
                     (due on shards: {cores:?}; client peers due: {peers:?})",
                    self.elapsed()
                );
            }
        } else {
            self.stalled = 0;
        }
        self.now = self.now.max(t);
        let now = self.now;
        self.steps += 1;
        // Datagrams due now.
        let mut touched = vec![false; self.cores.len()];
        while let Some(d) = self.net.pop_due(now) {
            if let Some(i) = self.addrs.iter().position(|&a| a == d.destination) {
                self.cores[i].handle_datagram(now, d.source, d.destination, &d.contents);
                touched[i] = true;
            } else if let Some(&h) = self.by_addr.get(&d.destination) {
                let p = &mut self.peers[h];
                if p.stopped {
                    continue;
                }
                let Ok(contents) = d.contents.as_slice().try_into() else {
                    continue;
                };
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: d.source,
                        destination: d.destination,
                        contents,
                    },
                );
                let _ = p.rtc.handle_input(input);
                self.drain_peer(h);
            }
        }
        // Client timers and media.
        for h in 0..self.peers.len() {
            let due = self.peers[h].next_deadline().is_some_and(|d| d <= now);
            if !due {
                continue;
            }
            let epoch = self.epoch;
            let p = &mut self.peers[h];
            p.produce(now, epoch);
            p.maybe_pli(now);
            if p.deadline <= now {
                let _ = p.rtc.handle_input(Input::Timeout(now));
            }
            self.drain_peer(h);
        }
        // Shard timers: like the driver, once per pass.
        for (i, touched) in touched.into_iter().enumerate() {
            let due = touched || self.cores[i].next_deadline().is_some_and(|d| d <= now);
            if due {
                self.cores[i].handle_timeout(now);
            }
            self.flush_core(i, &mut |_| {});
        }
        true
    }

    fn next_deadline(&self) -> Option<Instant> {
        let cores = self.cores.iter().filter_map(Core::next_deadline);
        let peers = self.peers.iter().filter_map(Peer::next_deadline);
        cores.chain(peers).chain(self.net.next_arrival()).min()
    }

    fn drain_peer(&mut self, h: Handle) {
        let now = self.now;
        let mut out = std::mem::take(&mut self.out);
        self.peers[h].drain(now, &mut out);
        for (source, destination, contents) in out.drain(..) {
            self.net.send(
                now,
                net::Datagram {
                    source,
                    destination,
                    contents,
                },
            );
        }
        self.out = out;
    }

    /// Drain a core's queues: transmits into the network, cross-shard messages into the other
    /// cores (which may produce more), events into [`Sim::events`], replies to `on_reply`.
    fn flush_core(&mut self, first: usize, on_reply: &mut dyn FnMut(Reply)) {
        let now = self.now;
        let mut pending = vec![first];
        while let Some(i) = pending.pop() {
            for t in self.cores[i].transmits.drain(..) {
                self.net.send(
                    now,
                    net::Datagram {
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.to_vec(),
                    },
                );
            }
            for r in self.cores[i].replies.drain(..) {
                on_reply(r);
            }
            self.recorded.append(&mut self.cores[i].recorded);
            let events: Vec<Event> = self.cores[i].events.drain(..).collect();
            for ev in events {
                if let (Event::ChannelOpen { peer, .. }, Some(g)) = (&ev, &self.greeting) {
                    let msg = Msg::Text(crate::engine::Target::Greet(*peer), g.clone());
                    self.cores[i].handle_msg(now, msg);
                    pending.push(i);
                }
                self.events.push((now, ev));
            }
            let outbox: Vec<ToOthers> = self.cores[i].outbox.drain(..).collect();
            self.keyframe_wishes += outbox
                .iter()
                .filter(|m| matches!(m, ToOthers::KeyframeWanted(..)))
                .count() as u64;
            for j in (0..self.cores.len()).filter(|&j| j != i) {
                for m in &outbox {
                    self.cores[j].handle_msg(now, m.to_msg());
                }
                // The receiving driver runs its timers in the same loop pass.
                if !outbox.is_empty() {
                    self.cores[j].handle_timeout(now);
                    pending.push(j);
                }
            }
        }
    }
}
