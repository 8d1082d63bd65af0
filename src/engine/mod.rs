//! The media plane: share-nothing shards, each an OS thread with one UDP socket and its peers.
//!
//! * A peer (publisher or viewer) is a `str0m::Rtc` in RTP mode with ICE-lite, owned by exactly
//!   one shard and found by a hash map on its source address.
//! * Every show has a *home shard* (`hash(show) % shards`); its publisher always lives there, so
//!   the show's numbering ([`forwarder::SourceMap`]) and keyframe gate never move. The home
//!   shard maps each publisher packet once and hands one `Arc`'d [`MediaPacket`] to every shard;
//!   each shard writes it to its local viewers ([`forwarder::decide`] per viewer).
//! * Signalling reaches a shard as a [`Msg`]; the shard answers with a [`Reply`]. Shards report
//!   peer life-cycle and data-channel traffic to the control plane as [`Event`]s.
//!
//! Where things live:
//!
//! * [`shard`]: the sans-IO core ([`shard::Core`]): time and datagrams in, transmits,
//!   cross-shard messages, events and replies out through queues. Its rooms: `peers` (the
//!   peer table and lookup), `accept` (SDP), `ingest` (publisher packets, keyframe requests),
//!   `egress` (fan-out, keyframe cache, data-channel text), `stun`.
//! * [`forwarder`] and [`keyframe`]: pure decisions (numbering, per-viewer rewrite, the
//!   keyframe gate), unit-tested on their own.
//! * [`driver`]: the thin loop around a core: one thread, one UDP socket, `mio`, the wall
//!   clock, `sendmmsg`, channels to the other shards and the oneshots of the control plane.
//! * [`Engine`]: starts the drivers and is what the control plane calls.
//!
//! The same cores run in virtual time in `crate::sim`, wired through an in-memory network.

pub mod driver;
pub mod dtls;
pub mod forwarder;
pub mod keyframe;
mod sendmmsg;
pub mod shard;
pub mod simulcast;

use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::codec::Codec;
use crate::config::Config;
use crate::metrics::Metrics;

/// The label of the commerce data channel.
pub const EVENTS_LABEL: &str = "events";

/// Identifies a peer across the engine.
pub type PeerId = u64;

/// What a peer does in its show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The seller's WHIP session.
    Publisher,
    /// A viewer's WHEP session.
    Viewer,
}

impl Role {
    /// Label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Viewer => "viewer",
        }
    }
}

/// Why a peer could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The offer was refused by the WebRTC engine.
    #[error("offer rejected: {0}")]
    Offer(String),
    /// The offer has no codec this show can use.
    #[error("offer has no codec this show can use: {0}")]
    NoCodec(String),
    /// The offer asks for more than a session carries (one video and one audio track).
    #[error("offer not supported: {0}")]
    Unsupported(String),
    /// Shard at capacity.
    #[error("server at capacity")]
    Full,
    /// The engine is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// The shard this peer must live on (a show's home shard, for a publisher) has stopped.
    #[error("media shard {0} has stopped")]
    ShardDown(usize),
    /// The shard failed while setting the peer up (a caught panic): the peer was dropped and
    /// no session exists, whatever the offer was.
    #[error("the session could not be started")]
    Failed,
}

/// One show's video clock, written by its home shard and read by the control plane (events
/// stamped with `rtp_ts`). Plain atomics: written once per video packet, never locked.
#[derive(Debug, Default)]
pub struct Clock {
    /// Newest show video timestamp (valid when `has_ts` is non-zero).
    latest_ts: AtomicU64,
    /// RTCP sender report mapping, packed: NTP time in microseconds since the Unix epoch.
    sr_ntp_us: AtomicU64,
    /// Show-numbered RTP timestamp of that sender report (valid when `sr_ntp_us` is non-zero).
    sr_rtp: AtomicU64,
}

impl Clock {
    /// Record the newest video timestamp.
    pub fn set_latest(&self, ts: u32) {
        self.latest_ts
            .store((1 << 32) | ts as u64, Ordering::Relaxed);
    }

    /// Newest show video timestamp, if any packet arrived yet.
    pub fn latest(&self) -> Option<u32> {
        let v = self.latest_ts.load(Ordering::Relaxed);
        (v >> 32 != 0).then_some(v as u32)
    }

    /// Record a sender report, converted to show numbering.
    pub fn set_sender_report(&self, ntp_us: u64, show_rtp: u32) {
        self.sr_rtp.store(show_rtp as u64, Ordering::Relaxed);
        self.sr_ntp_us.store(ntp_us, Ordering::Release);
    }

    /// Forget the sender report (a new publisher session has its own capture clock).
    pub fn clear_sender_report(&self) {
        self.sr_ntp_us.store(0, Ordering::Release);
    }

    /// The latest sender report as (NTP µs since the epoch, show RTP timestamp).
    pub fn sender_report(&self) -> Option<(u64, u32)> {
        let ntp = self.sr_ntp_us.load(Ordering::Acquire);
        (ntp != 0).then(|| (ntp, self.sr_rtp.load(Ordering::Relaxed) as u32))
    }
}

/// A show as the media plane sees it.
#[derive(Debug, Clone)]
pub struct ShowSpec {
    /// Show id.
    pub id: Arc<str>,
    /// Video codecs allowed, in preference order.
    pub video_codecs: Vec<Codec>,
    /// The show's video clock.
    pub clock: Arc<Clock>,
    /// Whether the home shard queues the show's packets for the recorder
    /// ([`shard::Core::recorded`]); read when a publisher session starts.
    pub record: bool,
    /// A replay: the control plane feeds its packets (`Msg::Media`) and no publisher exists,
    /// so its viewers' keyframe wishes go nowhere (the replay starts on a keyframe and carries
    /// the recorded ones).
    pub replay: bool,
}

/// A publisher packet in the show's numbering, shared by every shard.
#[derive(Debug)]
pub struct MediaPacket {
    /// Show id.
    pub show: Arc<str>,
    /// Header fields in show numbering.
    pub pkt: forwarder::Packet,
    /// RTP payload, shared.
    pub payload: Arc<[u8]>,
    /// When the home shard received it.
    pub arrival: Instant,
    /// VP8 payload descriptor, parsed once, when it carries a PictureID (for rewrites).
    pub vp8: Option<str0m::rtp::Vp8Descriptor>,
}

/// Request to add a peer.
pub struct AddPeer {
    /// Engine-wide id.
    pub id: PeerId,
    /// The show.
    pub show: ShowSpec,
    /// Publisher or viewer.
    pub role: Role,
    /// The SDP offer.
    pub offer: str0m::change::SdpOffer,
    /// Viewer: the quality cap asked for (WHEP `?quality=`).
    pub quality: simulcast::Quality,
}

/// Whom a data-channel text message is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// One peer.
    Peer(PeerId),
    /// One peer's first message on its `events` channel (the snapshot); broadcasts that reached
    /// the peer before it are held and sent right after it.
    Greet(PeerId),
    /// Every viewer of a show (on every shard).
    Viewers(Arc<str>),
}

/// Messages to a shard.
pub enum Msg {
    /// Add a peer.
    Add(Box<AddPeer>),
    /// Remove a peer (WHIP/WHEP DELETE); replies whether it existed.
    Remove(PeerId),
    /// A packet to fan out to this shard's viewers.
    Media(Arc<MediaPacket>),
    /// A viewer somewhere wants a keyframe of this show's layer (sent to the home shard).
    KeyframeWanted(Arc<str>, u8),
    /// Send text on the `events` data channel.
    Text(Target, Arc<str>),
    /// Close every peer and stop.
    Shutdown,
    /// Inject a fault (tests of panic handling only).
    #[cfg(feature = "fault-injection")]
    Inject(shard::Fault),
}

/// A shard's answer to a [`Msg::Add`] or [`Msg::Remove`].
#[derive(Debug)]
pub enum Reply {
    /// The peer was added (the SDP answer), or why not.
    Added {
        /// Peer.
        peer: PeerId,
        /// Answer SDP, or why not.
        result: Result<String, Error>,
    },
    /// The peer was removed, if it existed.
    Removed {
        /// Peer.
        peer: PeerId,
        /// Whether it was on the shard.
        existed: bool,
    },
}

/// What shards tell the control plane.
#[derive(Debug, Clone)]
pub enum Event {
    /// ICE+DTLS completed.
    Connected {
        /// Peer.
        peer: PeerId,
        /// Show.
        show: Arc<str>,
        /// Role.
        role: Role,
    },
    /// The peer is gone (closed, timed out, deleted).
    Gone {
        /// Peer.
        peer: PeerId,
        /// Show.
        show: Arc<str>,
        /// Role.
        role: Role,
    },
    /// The `events` data channel opened.
    ChannelOpen {
        /// Peer.
        peer: PeerId,
        /// Show.
        show: Arc<str>,
        /// Role.
        role: Role,
    },
    /// Text arrived on the `events` channel.
    Text {
        /// Peer.
        peer: PeerId,
        /// Show.
        show: Arc<str>,
        /// Role.
        role: Role,
        /// The message.
        text: String,
    },
    /// A shard's thread stopped (a panic outside any peer operation, or its poll failed): every
    /// peer it held is gone without a `Gone` of its own. The control plane ends their sessions.
    ShardLost {
        /// The shard.
        shard: usize,
    },
}

/// A shard as seen from outside.
pub struct Handle {
    link: driver::Link,
    /// The shard's UDP address.
    pub addr: SocketAddr,
    /// Peers currently on the shard.
    pub peers: Arc<AtomicUsize>,
    /// False once the shard's thread has stopped (a panic outside a peer operation, or its
    /// poll failed): nothing is routed to it any more and `/healthz` fails.
    pub alive: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Send a message and wake the shard.
    pub fn send(&self, msg: Msg) -> bool {
        self.link.send(driver::Envelope::plain(msg))
    }
}

/// All shards.
pub struct Engine {
    shards: Vec<Handle>,
    next_id: AtomicU64,
}

impl Engine {
    /// Bind one socket per shard and start the shard threads; packets of recorded shows go
    /// to `recorder`.
    pub fn start(
        cfg: &Config,
        metrics: &Metrics,
        events: mpsc::UnboundedSender<Event>,
        recorder: Option<crate::recording::Sink>,
    ) -> std::io::Result<Engine> {
        let n = cfg.shard_count();
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let port = if cfg.media.port_base == 0 {
                0
            } else {
                cfg.media.port_base + i as u16
            };
            let sock = std::net::UdpSocket::bind(SocketAddr::new(cfg.media.bind_ip, port))?;
            sock.set_nonblocking(true)?;
            let s2 = socket2::SockRef::from(&sock);
            let _ = s2.set_recv_buffer_size(8 << 20);
            let _ = s2.set_send_buffer_size(8 << 20);
            sockets.push(sock);
        }
        let mut pollers = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for sock in &sockets {
            let poll = mio::Poll::new()?;
            let (link, rx) = driver::Link::new(&poll)?;
            let local = sock.local_addr()?;
            let announce = SocketAddr::new(cfg.announce_ip(), local.port());
            handles.push(Handle {
                link,
                addr: announce,
                peers: Arc::new(AtomicUsize::new(0)),
                alive: Arc::new(AtomicBool::new(true)),
                thread: None,
            });
            pollers.push(poll);
            receivers.push(rx);
        }
        let links: Vec<driver::Link> = handles.iter().map(|h| h.link.clone()).collect();
        for (i, ((sock, poll), rx)) in sockets.into_iter().zip(pollers).zip(receivers).enumerate() {
            let settings = shard::Settings {
                index: i,
                announce: handles[i].addr,
                keyframe_interval: cfg.media.keyframe_interval,
                connect_timeout: cfg.media.connect_timeout,
                ice_timeout: cfg.media.ice_timeout,
                max_peers: cfg.media.max_peers_per_shard,
                keyframe_cache_age: cfg.media.keyframe_cache_max_age,
            };
            let core = shard::Core::new(
                Instant::now(),
                settings,
                metrics.shard(i),
                handles[i].peers.clone(),
            );
            let d = driver::Driver::new(core, sock, poll, rx, links.clone(), events.clone())?
                .with_recorder(recorder.clone());
            let alive = handles[i].alive.clone();
            let peers = handles[i].peers.clone();
            let gauges = metrics.shard(i);
            let dead = metrics.shards_dead.clone();
            let lost = events.clone();
            let t = std::thread::Builder::new()
                .name(format!("hawker-shard-{i}"))
                .spawn(move || {
                    // Peer operations catch their own panics; one that escapes ends the thread.
                    let clean = panic::catch_unwind(AssertUnwindSafe(|| d.run())).unwrap_or(false);
                    alive.store(false, Ordering::SeqCst);
                    if !clean {
                        dead.inc();
                        tracing::error!(shard = i, "shard thread stopped; its peers are lost");
                        // The core died with its peer table: nobody else will count them out.
                        peers.store(0, Ordering::SeqCst);
                        gauges.clear_peers();
                        // After every event the shard sent while alive (same channel, FIFO).
                        let _ = lost.send(Event::ShardLost { shard: i });
                    }
                })?;
            handles[i].thread = Some(t);
        }
        Ok(Engine {
            shards: handles,
            next_id: AtomicU64::new(1),
        })
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard handles.
    pub fn shards(&self) -> &[Handle] {
        &self.shards
    }

    /// The shard where a show's publisher lives.
    pub fn home_shard(&self, show: &str) -> usize {
        shard::home_of(show, self.shards.len())
    }

    /// Shards whose thread has stopped.
    pub fn dead_shards(&self) -> Vec<usize> {
        (self.shards.iter().enumerate())
            .filter(|(_, h)| !h.alive.load(Ordering::SeqCst))
            .map(|(i, _)| i)
            .collect()
    }

    /// Inject a fault into a shard (tests of panic handling only).
    #[cfg(feature = "fault-injection")]
    pub fn inject(&self, shard: usize, fault: shard::Fault) {
        self.shards[shard].send(Msg::Inject(fault));
    }

    /// The shard a new viewer goes to: the least loaded of those alive.
    pub fn pick_viewer_shard(&self) -> usize {
        self.shards
            .iter()
            .enumerate()
            .filter(|(_, h)| h.alive.load(Ordering::Relaxed))
            .min_by_key(|(i, h)| (h.peers.load(Ordering::Relaxed), *i))
            .map(|(i, _)| i)
            .unwrap_or(0)
    }

    /// A fresh peer id.
    pub fn next_peer_id(&self) -> PeerId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Add a peer on `shard`; resolves to the SDP answer.
    pub async fn add_peer(
        &self,
        shard: usize,
        id: PeerId,
        show: ShowSpec,
        role: Role,
        offer: str0m::change::SdpOffer,
        quality: simulcast::Quality,
    ) -> Result<String, Error> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Add(Box::new(AddPeer {
            id,
            show,
            role,
            offer,
            quality,
        }));
        let env = driver::Envelope {
            msg,
            reply: Some(driver::ReplyTo::Added(reply)),
        };
        if !self.shards[shard].alive.load(Ordering::SeqCst) {
            return Err(Error::ShardDown(shard));
        }
        if !self.shards[shard].link.send(env) {
            return Err(Error::ShuttingDown);
        }
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Remove a peer; resolves to whether it existed.
    pub async fn remove_peer(&self, shard: usize, id: PeerId) -> bool {
        let (reply, rx) = oneshot::channel();
        let env = driver::Envelope {
            msg: Msg::Remove(id),
            reply: Some(driver::ReplyTo::Removed(reply)),
        };
        if !self.shards[shard].link.send(env) {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Send text on the events channel of one peer on `shard`.
    pub fn send_text(&self, shard: usize, peer: PeerId, text: Arc<str>) {
        self.shards[shard].send(Msg::Text(Target::Peer(peer), text));
    }

    /// Send the greeting (snapshot) on a peer's events channel; releases held broadcasts.
    pub fn greet(&self, shard: usize, peer: PeerId, text: Arc<str>) {
        self.shards[shard].send(Msg::Text(Target::Greet(peer), text));
    }

    /// Send text to every viewer of a show (one shared allocation for all).
    pub fn broadcast_text(&self, show: &Arc<str>, text: Arc<str>) {
        for h in &self.shards {
            h.send(Msg::Text(Target::Viewers(show.clone()), text.clone()));
        }
    }

    /// Close every peer and join the shard threads.
    pub fn shutdown(&mut self) {
        for h in &self.shards {
            h.send(Msg::Shutdown);
        }
        for h in &mut self.shards {
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
