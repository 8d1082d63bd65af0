//! A shard's sans-IO core: [`Core`] owns the shard's peers and its view of every show, and
//! does no I/O of its own. Time is an argument of every call; what it produces goes out
//! through queues the caller drains, as with `str0m::Rtc` and `quinn_proto::Connection`:
//!
//! * [`Core::transmits`]: datagrams to send from the shard's socket;
//! * [`Core::outbox`]: what every other shard must hear ([`ToOthers`]);
//! * [`Core::events`]: what the control plane hears about (peer life-cycle, data-channel text);
//! * [`Core::replies`]: the answers to [`Msg::Add`] and [`Msg::Remove`];
//! * [`Core::recorded`]: packets of recorded shows, on their home shard, for the recorder.
//!
//! Inputs: [`Core::handle_msg`] (signalling and cross-shard traffic), [`Core::handle_datagram`]
//! (a UDP datagram) and [`Core::handle_timeout`] (at [`Core::next_deadline`]). The driver
//! (`engine::driver`) feeds it from a socket and the wall clock; `crate::sim` feeds it from an
//! in-memory network in virtual time.
//!
//! The rooms: [`peers`] (the peer table and lookup), `accept` (SDP offer → `Rtc`), `ingest`
//! (publisher packets → show numbering, keyframe requests), `egress` (fan-out to viewers,
//! keyframe cache, greeting hold), [`inbound`] (data-channel size and rate, before any copy),
//! `stun` (routing a first STUN check).
//!
//! A peer's datagrams, timers and offer, and each forward of a packet or a text to one viewer,
//! run under `catch_unwind`: a panic there drops that peer (with its [`Event::Gone`]) and
//! counts in `hawker_shard_panics_total`; the shard serves on. A peer dropped while its offer
//! is being answered gets an error, not the answer. A panic anywhere else ends the thread,
//! which the engine notices (`Handle::alive`): `/healthz` fails, no new peer is routed to the
//! shard, and the control plane ends the shard's sessions (`Event::ShardLost`).

mod accept;
mod egress;
pub mod inbound;
mod ingest;
mod layer;
pub(crate) mod peers;
mod stun;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::config::DtlsCert;
use str0m::media::MediaKind;
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Event as RtcEvent, IceConnectionState, Input, Output, Reason};

use super::dtls::Failure;
use super::forwarder::Track;
use super::{AddPeer, Event, MediaPacket, Msg, PeerId, Reply, Role, EVENTS_LABEL};
use crate::metrics::ShardMetrics;
use egress::Outgoing;
use ingest::Home;
use peers::Peers;

pub use stun::local_ufrag as stun_local_ufrag;

/// Static shard settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shard index.
    pub index: usize,
    /// Address announced in ICE candidates.
    pub announce: SocketAddr,
    /// Keyframe request throttle interval.
    pub keyframe_interval: Duration,
    /// ICE+DTLS must complete within this.
    pub connect_timeout: Duration,
    /// ICE must succeed within this (at most `connect_timeout` applies).
    pub ice_timeout: Duration,
    /// Peer cap.
    pub max_peers: usize,
    /// Start joining viewers from a cached keyframe at most this old (zero disables).
    pub keyframe_cache_age: Duration,
}

/// What a shard tells every other shard. Both carry `Arc`s: one allocation, shared.
#[derive(Debug, Clone)]
pub enum ToOthers {
    /// A publisher packet in the show's numbering, for their viewers.
    Media(Arc<MediaPacket>),
    /// A local viewer wants a keyframe of this show's layer (the home shard acts on it).
    KeyframeWanted(Arc<str>, u8),
}

impl ToOthers {
    /// The message one other shard receives.
    pub fn to_msg(&self) -> Msg {
        match self {
            ToOthers::Media(p) => Msg::Media(p.clone()),
            ToOthers::KeyframeWanted(s, l) => Msg::KeyframeWanted(s.clone(), *l),
        }
    }
}

/// Delay between a viewer's `Connected` and its first media: our `Connected` can precede the
/// client's processing of the last DTLS flight, and media written before it has its SRTP keys
/// would be dropped (a lost keyframe costs a whole GOP).
pub const VIEWER_SETTLE: Duration = Duration::from_millis(40);

/// A peer whose ICE consent lapsed is dropped once nothing at all has arrived from it for this
/// long. libnice 0.1.21 (GStreamer 1.22's webrtcbin: `whipsink`, `whepsrc`) sends no STUN
/// binding request after nomination, so str0m's ICE-lite agent reports `Disconnected` 15 s
/// after the last check although the peer's media (publisher) and RTCP (viewer, at least every
/// few seconds) keep coming.
pub const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(8);

/// The soonest a peer's bandwidth-estimation delay controller is checked again after a check.
/// str0m waits one RTT between checks while it has no fresh TWCC report; on a link whose RTT
/// measures as zero that is no wait at all, and the shard would spin. Capped this way an idle
/// peer costs at most 1000 wake-ups a second, and a timer due meanwhile (the pacer's) is late
/// by at most this, which is the driver's own timer granularity (mio rounds to milliseconds).
pub const BWE_RECHECK_MIN: Duration = Duration::from_millis(1);

/// How long after a publisher's first video packet a simulcast layer it declared (`a=rid`)
/// but never sent is counted in `hawker_media_simulcast_layers_silent_total` and logged.
/// Browsers start all their layers within a second or two (upper ones as their estimate
/// allows); a layer still silent after this is paused or was never going to be sent. It is
/// never chosen for a viewer either way, and is used as soon as it starts.
pub const SILENT_LAYER_AFTER: Duration = Duration::from_secs(5);

/// Show state on one shard.
struct LocalShow {
    viewers: Vec<usize>,
    publisher: Option<usize>,
    /// Present on the show's home shard.
    home: Option<Home>,
    /// Present on every shard with viewers of the show: the keyframe cache.
    out: Outgoing,
    /// A replay fed by the control plane (`ShowSpec::replay`).
    replay: bool,
}

impl LocalShow {
    fn new() -> LocalShow {
        LocalShow {
            viewers: Vec::new(),
            publisher: None,
            home: None,
            out: Outgoing::default(),
            replay: false,
        }
    }
}

/// The shard's sans-IO core.
pub struct Core {
    s: Settings,
    metrics: ShardMetrics,
    peer_count: Arc<AtomicUsize>,
    peers: Peers,
    shows: HashMap<Arc<str>, LocalShow>,
    /// The origin of publisher arrival times handed to the forwarder.
    epoch: Instant,
    rtc_events: Vec<RtcEvent>,
    /// Datagrams to send.
    pub transmits: Vec<Transmit>,
    /// For every other shard.
    pub outbox: Vec<ToOthers>,
    /// Peer life-cycle and data-channel traffic, for the control plane.
    pub events: Vec<Event>,
    /// Answers to [`Msg::Add`] and [`Msg::Remove`].
    pub replies: Vec<Reply>,
    /// Packets of recorded shows homed here, in show numbering, of the recorded layer: the
    /// same `Arc`s the viewers get, for `crate::recording`.
    pub recorded: Vec<Arc<MediaPacket>>,
    /// The shard's DTLS certificate, generated once and given to each of its peers (a key
    /// pair per peer would cost a key generation on the shard thread at every join). `None`
    /// if generation failed: str0m then makes one per peer.
    dtls_cert: Option<DtlsCert>,
    /// Publisher packets ingested here and already in [`Core::outbox`], not yet fanned out to
    /// this shard's viewers: that waits for [`Core::handle_timeout`], so a driver can hand the
    /// packets to the other shards first and the shards fan out in parallel.
    local_media: Vec<Arc<MediaPacket>>,
    /// Scratch for [`Core::fanout`]: the show's viewers of the packet being fanned out (kept
    /// to reuse its allocation).
    fan_viewers: Vec<usize>,
    /// The peer whose next operation panics ([`Fault::Peer`]).
    #[cfg(feature = "fault-injection")]
    doomed: Option<PeerId>,
    /// The viewer whose next forwarded packet panics ([`Fault::Forward`]).
    #[cfg(feature = "fault-injection")]
    doomed_forward: Option<PeerId>,
}

/// A fault to inject, to test that a panic costs one peer and a dead shard is noticed. Only
/// with the `fault-injection` feature (tests): no build without it can be made to panic this way.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The next operation on this peer panics (caught: the peer is dropped).
    Peer(PeerId),
    /// The next packet forwarded to this viewer panics, inside the fan-out of a publisher's
    /// packet (caught per viewer: only that viewer is dropped).
    Forward(PeerId),
    /// The shard panics outside any peer operation (its thread dies).
    Shard,
}

/// A DTLS certificate (ECDSA P-256, self-signed) for one shard's peers; `None` (logged) if the
/// crypto provider could not make one.
pub fn shard_cert() -> Option<DtlsCert> {
    match str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
    {
        Some(c) => Some(c),
        None => {
            tracing::warn!("could not generate the shard's DTLS certificate; one per peer");
            None
        }
    }
}

impl Core {
    /// A shard core. `peer_count` mirrors [`Core::peer_count`] for whoever balances load.
    /// Generates the shard's DTLS certificate ([`shard_cert`]).
    pub fn new(
        now: Instant,
        s: Settings,
        metrics: ShardMetrics,
        peer_count: Arc<AtomicUsize>,
    ) -> Core {
        Core::with_cert(now, s, metrics, peer_count, shard_cert())
    }

    /// A shard core whose peers use `cert` (`None`: str0m makes one per peer). For callers
    /// that make many cores, such as the fuzz targets, and share one key generation.
    pub fn with_cert(
        now: Instant,
        s: Settings,
        metrics: ShardMetrics,
        peer_count: Arc<AtomicUsize>,
        cert: Option<DtlsCert>,
    ) -> Core {
        Core {
            s,
            metrics,
            peer_count,
            peers: Peers::default(),
            shows: HashMap::new(),
            epoch: now,
            rtc_events: Vec::new(),
            transmits: Vec::new(),
            outbox: Vec::new(),
            events: Vec::new(),
            replies: Vec::new(),
            recorded: Vec::new(),
            dtls_cert: cert,
            local_media: Vec::new(),
            fan_viewers: Vec::new(),
            #[cfg(feature = "fault-injection")]
            doomed: None,
            #[cfg(feature = "fault-injection")]
            doomed_forward: None,
        }
    }

    /// The shard's settings.
    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// The shard's metrics.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Handle a message from the control plane or another shard.
    pub fn handle_msg(&mut self, now: Instant, msg: Msg) {
        match msg {
            Msg::Add(add) => self.add_peer(now, *add),
            Msg::Remove(id) => {
                let found = self.peers.slot_of(id);
                if let Some(idx) = found {
                    self.remove(idx, true);
                }
                self.replies.push(Reply::Removed {
                    peer: id,
                    existed: found.is_some(),
                });
            }
            Msg::Media(pkt) => self.fanout(now, &pkt),
            Msg::KeyframeWanted(show, layer) => self.keyframe_wanted(now, &show, layer),
            Msg::Text(target, text) => self.send_text(now, target, &text),
            Msg::Shutdown => self.shutdown(),
            #[cfg(feature = "fault-injection")]
            Msg::Inject(Fault::Peer(id)) => self.doomed = Some(id),
            #[cfg(feature = "fault-injection")]
            Msg::Inject(Fault::Forward(id)) => self.doomed_forward = Some(id),
            #[cfg(feature = "fault-injection")]
            Msg::Inject(Fault::Shard) => panic!("injected fault in shard {}", self.s.index),
        }
    }

    fn add_peer(&mut self, now: Instant, add: AddPeer) {
        let AddPeer {
            id,
            show,
            role,
            offer,
            quality,
        } = add;
        if self.peers.len() >= self.s.max_peers {
            self.replies.push(Reply::Added {
                peer: id,
                result: Err(super::Error::Full),
            });
            return;
        }
        let announce = self.s.announce;
        // A viewer runs bandwidth estimation to choose its simulcast layer. A viewer of a show
        // known to send one layer has nothing to choose, and estimation would only pace its
        // video behind an estimate that starts far below the stream (see `accept`).
        let bwe = role == Role::Viewer
            && !self
                .shows
                .get(&show.id)
                .is_some_and(|s| s.out.single_layer(now));
        let accepted = panic::catch_unwind(AssertUnwindSafe(|| {
            accept::accept(
                now,
                announce,
                id,
                &show,
                role,
                offer,
                (quality, bwe),
                self.dtls_cert.as_ref(),
            )
        }))
        .unwrap_or_else(|_| {
            self.metrics.panics.inc();
            Err(super::Error::Offer(
                "the offer could not be processed".into(),
            ))
        });
        let (peer, answer) = match accepted {
            Ok(ok) => ok,
            Err(e) => {
                self.replies.push(Reply::Added {
                    peer: id,
                    result: Err(e),
                });
                return;
            }
        };
        let simulcast = peer.is_simulcast();
        let idx = self.peers.insert(peer);
        let local = self
            .shows
            .entry(show.id.clone())
            .or_insert_with(LocalShow::new);
        match role {
            Role::Publisher => {
                local.publisher = Some(idx);
                let interval = self.s.keyframe_interval;
                local
                    .home
                    .get_or_insert_with(|| Home::new(&show, interval))
                    .new_session(&show, simulcast);
            }
            Role::Viewer => {
                local.replay = show.replay;
                local.viewers.push(idx);
            }
        }
        self.peer_count.store(self.peers.len(), Ordering::Relaxed);
        self.peer_gauge(role).inc();
        self.guarded(idx, |core| {
            core.check_fault(idx);
            core.drain(now, idx)
        });
        // A panic in that first drain dropped the peer (and reported it gone): answering with
        // the SDP would tell the client a session exists that does not.
        let alive = self.peers.get_mut(idx).is_some_and(|p| p.id == id);
        self.replies.push(Reply::Added {
            peer: id,
            result: if alive {
                Ok(answer)
            } else {
                Err(super::Error::Failed)
            },
        });
    }

    fn peer_gauge(&self, role: Role) -> &prometheus::IntGauge {
        match role {
            Role::Publisher => &self.metrics.publishers,
            Role::Viewer => &self.metrics.viewers,
        }
    }

    /// Handle one received datagram.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        local: SocketAddr,
        data: &[u8],
    ) {
        self.metrics.bytes_in.inc_by(data.len() as u64);
        let Ok(contents) = data.try_into() else {
            self.metrics.garbage.inc();
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents,
            },
        );
        let peers = &mut self.peers;
        let routed = panic::catch_unwind(AssertUnwindSafe(|| peers.route(source, data, &input)));
        let Ok(Some(idx)) = routed else {
            if routed.is_err() {
                self.metrics.panics.inc();
            }
            self.metrics.garbage.inc();
            return;
        };
        self.guarded(idx, |core| {
            core.check_fault(idx);
            let Some(peer) = core.peers.get_mut(idx) else {
                return;
            };
            peer.last_rx = now;
            if let Err(e) = peer.rtc.handle_input(input) {
                if let Some(f) = Failure::of(&e) {
                    let id = peer.id;
                    core.dtls_failed(idx, id, f, &e);
                    return;
                }
                tracing::debug!(peer = peer.id, "input error: {e}");
                core.metrics.garbage.inc();
            }
            core.drain(now, idx);
        });
    }

    /// Fan out the publisher packets ingested since the last call, then drive peers and gates
    /// whose time has come. Every packet written to a viewer since the last call (one receive
    /// batch) leaves here, with one `Input::Timeout` and one poll per viewer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.local_media.is_empty() {
            let media = std::mem::take(&mut self.local_media);
            for mp in &media {
                self.fanout(now, mp);
            }
            // Keep the allocation for the next batch.
            self.local_media = media;
            self.local_media.clear();
        }
        for idx in 0..self.peers.slots() {
            if self.peers.get_mut(idx).is_some() {
                self.guarded(idx, |core| core.peer_timeout(now, idx));
            }
        }
        self.poll_gates(now);
    }

    fn peer_timeout(&mut self, now: Instant, idx: usize) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        // `>=`: the deadline `next_deadline` reports must be work when it comes.
        if !p.connected && now.duration_since(p.created) >= self.s.connect_timeout {
            tracing::info!(peer = p.id, "connect timeout");
            self.remove(idx, false);
            return;
        }
        if !p.ice_done && now.duration_since(p.created) >= self.s.ice_timeout {
            tracing::info!(peer = p.id, "ICE timeout");
            self.metrics.ice_timeouts.inc();
            self.remove(idx, false);
            return;
        }
        if p.ice_lapsed && now.duration_since(p.last_rx) >= TRAFFIC_TIMEOUT {
            tracing::info!(peer = p.id, "no ICE consent and no traffic");
            self.remove(idx, false);
            return;
        }
        if !p.silent_checked
            && p.first_video
                .is_some_and(|t| now.duration_since(t) >= SILENT_LAYER_AFTER)
        {
            p.silent_checked = true;
            let silent = p.silent_layers();
            if !silent.is_empty() {
                tracing::warn!(
                    peer = p.id,
                    show = %p.show,
                    rids = ?silent,
                    "simulcast layers declared in the offer sent nothing in {:?}; viewers get the others",
                    SILENT_LAYER_AFTER
                );
                self.metrics.layers_silent.inc_by(silent.len() as u64);
            }
        }
        if p.start_at.is_some_and(|t| t <= now) {
            p.start_at = None;
            let show = p.show.clone();
            self.start_viewer(now, idx, &show);
        }
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        if p.deadline <= now {
            self.check_fault(idx);
            let Some(p) = self.peers.get_mut(idx) else {
                return;
            };
            let _ = p.rtc.handle_input(Input::Timeout(now));
            self.drain(now, idx);
        }
    }

    /// Earliest time [`Core::handle_timeout`] has work (a time already past when packets wait
    /// for their local fan-out).
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.local_media.is_empty() {
            return Some(self.epoch);
        }
        let peers = self.peers.iter().map(|p| {
            let d = match p.start_at {
                Some(t) => p.deadline.min(t),
                None => p.deadline,
            };
            let d = if p.ice_lapsed {
                d.min(p.last_rx + TRAFFIC_TIMEOUT)
            } else {
                d
            };
            match (p.connected, p.ice_done) {
                (true, _) => d,
                (false, true) => d.min(p.created + self.s.connect_timeout),
                (false, false) => d.min(p.created + self.s.connect_timeout.min(self.s.ice_timeout)),
            }
        });
        let gates = self
            .shows
            .values()
            .filter_map(|s| s.home.as_ref())
            .flat_map(|h| h.layers.iter().filter_map(|l| l.gate.deadline()));
        peers.chain(gates).min()
    }

    /// What is due at `now` (peers by id, with which of their timers), to explain a deadline
    /// that stays due: tests and diagnostics.
    pub fn due(&self, now: Instant) -> Vec<(PeerId, String)> {
        let mut out = Vec::new();
        for p in self.peers.iter() {
            if p.deadline <= now {
                out.push((p.id, format!("rtc {:?}", p.rtc.last_timeout_reason())));
            }
            if p.start_at.is_some_and(|t| t <= now) {
                out.push((p.id, "settle".into()));
            }
            if !p.connected && p.created + self.s.connect_timeout <= now {
                out.push((p.id, "connect".into()));
            }
            if !p.ice_done && p.created + self.s.ice_timeout <= now {
                out.push((p.id, "ice".into()));
            }
            if p.ice_lapsed && p.last_rx + TRAFFIC_TIMEOUT <= now {
                out.push((p.id, "traffic".into()));
            }
        }
        out
    }

    /// Poll one peer until it times out, collecting transmits and handling events.
    fn drain(&mut self, now: Instant, idx: usize) {
        let mut events = std::mem::take(&mut self.rtc_events);
        let mut dead = false;
        let mut dtls_failure = None;
        if let Some(p) = self.peers.get_mut(idx) {
            loop {
                if !p.rtc.is_alive() {
                    dead = true;
                    break;
                }
                match p.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => self.transmits.push(t),
                    Ok(Output::Timeout(t)) => {
                        p.deadline = t;
                        if p.rtc.last_timeout_reason() == Reason::BweDelayControl {
                            // Without recent TWCC feedback, str0m rechecks its delay controller
                            // one smoothed RTT after each check; an RTT of zero (loopback, or
                            // rounded down) makes that `now`, every time: a shard spinning on
                            // one peer. Nothing there is urgent; see `BWE_RECHECK_MIN`.
                            p.deadline = t.max(now + BWE_RECHECK_MIN);
                        }
                        // A remote close turns the peer dead inside poll_output and leaves a
                        // timeout a century away: notice it now, nothing else will.
                        dead = !p.rtc.is_alive();
                        break;
                    }
                    Ok(Output::Event(e)) => events.push(e),
                    Err(e) => {
                        match Failure::of(&e) {
                            Some(f) => dtls_failure = Some((p.id, f, e)),
                            None => tracing::debug!(peer = p.id, "poll error: {e}"),
                        }
                        dead = true;
                        break;
                    }
                }
            }
        }
        for e in events.drain(..) {
            self.handle_rtc_event(now, idx, e);
        }
        self.rtc_events = events;
        if let Some((id, f, e)) = dtls_failure {
            self.dtls_failed(idx, id, f, &e);
        } else if dead {
            self.remove(idx, false);
        }
    }

    /// Drop a peer whose DTLS handshake cannot succeed, saying why.
    fn dtls_failed(&mut self, idx: usize, id: PeerId, f: Failure, e: &str0m::RtcError) {
        let mut role = None;
        if let Some(p) = self.peers.get_mut(idx) {
            role = Some(p.role);
            // Let the alert the DTLS layer queued reach the peer, so it fails fast too.
            for _ in 0..8 {
                match p.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => self.transmits.push(t),
                    _ => break,
                }
            }
        }
        tracing::warn!(
            peer = id,
            ?role,
            reason = f.as_str(),
            "DTLS handshake failed, dropping the peer: {}: {e}",
            f.explain()
        );
        self.metrics
            .dtls_failures
            .with_label_values(&[f.as_str()])
            .inc();
        self.remove(idx, false);
    }

    fn handle_rtc_event(&mut self, now: Instant, idx: usize, e: RtcEvent) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        match e {
            RtcEvent::Connected => {
                p.connected = true;
                let (peer, show, role) = (p.id, p.show.clone(), p.role);
                if role == Role::Viewer {
                    p.start_at = Some(now + VIEWER_SETTLE);
                }
                self.events.push(Event::Connected { peer, show, role });
            }
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // str0m keeps sending to the nominated address, so a peer that still talks
                // needs nothing more than its traffic (see `TRAFFIC_TIMEOUT`).
                if p.connected && now.duration_since(p.last_rx) < TRAFFIC_TIMEOUT {
                    tracing::debug!(
                        peer = p.id,
                        "no ICE consent checks, but the peer's traffic continues"
                    );
                    p.ice_lapsed = true;
                } else {
                    p.rtc.disconnect();
                }
            }
            RtcEvent::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) => {
                p.ice_done = true;
                p.ice_lapsed = false;
            }
            RtcEvent::MediaAdded(m) => {
                // Normally already set up in `accept`; covers media added later.
                match (p.role, m.kind) {
                    (Role::Viewer, MediaKind::Audio) if p.audio.is_none() => {
                        p.add_out_track(m.mid, Track::Audio)
                    }
                    (Role::Viewer, MediaKind::Video) if p.video.is_none() => {
                        p.add_out_track(m.mid, Track::Video)
                    }
                    (Role::Publisher, MediaKind::Video) if p.video_mid.is_none() => {
                        p.video_mid = Some(m.mid)
                    }
                    _ => {}
                }
            }
            RtcEvent::Closed => {
                // The remote closed (DTLS close_notify): the peer is done.
                self.remove(idx, false);
            }
            RtcEvent::RtpPacket(pkt) if p.role == Role::Publisher => {
                self.publisher_packet(now, idx, pkt);
            }
            RtcEvent::KeyframeRequest(_) => {
                self.metrics.plis_from_viewers.inc();
                let show = p.show.clone();
                // The layer it receives; before its first keyframe, the one it waits for.
                let layer = p
                    .video
                    .as_ref()
                    .map(|v| v.fwd.layer().unwrap_or(v.fwd.target_layer))
                    .unwrap_or(0);
                self.ask_keyframe(now, &show, layer);
            }
            RtcEvent::EgressBitrateEstimate(BweKind::Twcc { estimate, .. })
                if p.role == Role::Viewer =>
            {
                p.estimate = estimate.as_u64();
                self.metrics.bwe_estimate.observe(estimate.as_u64() as f64);
                self.select_layer(now, idx);
            }
            RtcEvent::ChannelOpen(cid, label) if label == EVENTS_LABEL => {
                p.channel = Some(cid);
                p.held_text = Some(Vec::new());
                self.events.push(Event::ChannelOpen {
                    peer: p.id,
                    show: p.show.clone(),
                    role: p.role,
                });
            }
            RtcEvent::ChannelData(d) if Some(d.id) == p.channel => {
                self.metrics.dc_messages_in.inc();
                // Judged on the borrowed bytes: nothing is copied for a refused message.
                let verdict = p.guard.admit(now, d.data.len());
                if verdict != inbound::Verdict::Pass {
                    let counter = match verdict {
                        inbound::Verdict::TooLarge => &self.metrics.dc_refused_too_large,
                        _ => &self.metrics.dc_refused_rate,
                    };
                    counter.inc();
                    let retry = p.guard.retry_in();
                    if let Some(err) = inbound::refusal(verdict, d.data.len(), retry) {
                        let id = p.id;
                        self.send_text(now, super::Target::Peer(id), &Arc::from(err));
                    }
                    return;
                }
                let text = String::from_utf8_lossy(&d.data).into_owned();
                if p.role == Role::Viewer {
                    if let Some(q) = quality_message(&text) {
                        // A viewer's own cap: the media plane's business, answered here.
                        p.quality = q;
                        self.select_layer(now, idx);
                        return;
                    }
                }
                self.events.push(Event::Text {
                    peer: p.id,
                    show: p.show.clone(),
                    role: p.role,
                    text,
                });
            }
            RtcEvent::MediaEgressStats(st) => {
                let prev = p.nacks.iter_mut().find(|(m, _)| *m == st.mid);
                let delta = match prev {
                    Some((_, n)) => {
                        let d = st.nacks.saturating_sub(*n);
                        *n = st.nacks;
                        d
                    }
                    None => {
                        p.nacks.push((st.mid, st.nacks));
                        st.nacks
                    }
                };
                self.metrics.nacks.inc_by(delta);
            }
            RtcEvent::ChannelClose(cid) if Some(cid) == p.channel => {
                p.channel = None;
            }
            _ => {}
        }
    }

    /// Take a peer out; `graceful` flushes a close (DTLS close_notify, RTCP BYE) first.
    fn remove(&mut self, idx: usize, graceful: bool) {
        let Some(mut p) = self.peers.remove(idx) else {
            return;
        };
        if graceful {
            let _ = p.rtc.close();
            while let Ok(out) = p.rtc.poll_output() {
                match out {
                    Output::Transmit(t) => self.transmits.push(t),
                    Output::Timeout(_) => break,
                    Output::Event(_) => {}
                }
            }
        }
        p.rtc.disconnect();
        self.forget(idx, &p);
    }

    /// Run one operation on one peer; if it panics, drop that peer (and only it) and report it
    /// gone, so the shard keeps serving everyone else.
    fn guarded(&mut self, idx: usize, op: impl FnOnce(&mut Core)) {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| op(self)));
        if outcome.is_err() {
            self.metrics.panics.inc();
            // The Rtc may be half-way through an update: drop it without another call into it.
            if let Some(p) = self.peers.remove(idx) {
                tracing::error!(
                    peer = p.id,
                    shard = self.s.index,
                    "a peer operation panicked; the peer is dropped"
                );
                self.forget(idx, &p);
            }
        }
    }

    /// A test-only fault: panic if `idx` is the peer doomed by [`Fault::Peer`].
    #[cfg(feature = "fault-injection")]
    fn check_fault(&mut self, idx: usize) {
        let id = self.peers.get_mut(idx).map(|p| p.id);
        if id.is_some() && self.doomed == id {
            self.doomed = None;
            panic!("injected fault in peer {id:?}");
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline(always)]
    fn check_fault(&mut self, _idx: usize) {}

    /// A test-only fault: panic if `idx` is the viewer doomed by [`Fault::Forward`].
    #[cfg(feature = "fault-injection")]
    fn check_forward_fault(&mut self, idx: usize) {
        let id = self.peers.get_mut(idx).map(|p| p.id);
        if id.is_some() && self.doomed_forward == id {
            self.doomed_forward = None;
            panic!("injected fault forwarding to peer {id:?}");
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline(always)]
    fn check_forward_fault(&mut self, _idx: usize) {}

    /// The peer is out of the table: update the show, the counts, and tell the control plane.
    fn forget(&mut self, idx: usize, p: &peers::Peer) {
        if let Some(l) = p.video.as_ref().and_then(|v| v.fwd.layer()) {
            self.metrics.viewers_on_layer(l).dec();
        }
        if let Some(s) = self.shows.get_mut(&p.show) {
            s.viewers.retain(|&i| i != idx);
            if s.publisher == Some(idx) {
                s.publisher = None;
            }
            if s.viewers.is_empty() && s.publisher.is_none() && s.home.is_none() {
                self.shows.remove(&p.show);
            }
        }
        self.peer_count.store(self.peers.len(), Ordering::Relaxed);
        self.peer_gauge(p.role).dec();
        self.events.push(Event::Gone {
            peer: p.id,
            show: p.show.clone(),
            role: p.role,
        });
    }

    /// Close every peer.
    pub fn shutdown(&mut self) {
        for idx in 0..self.peers.slots() {
            self.remove(idx, true);
        }
    }

    /// Peers of this shard that have connected (ICE + DTLS), for tests and diagnostics.
    pub fn connected_peers(&self) -> impl Iterator<Item = (PeerId, Role)> + '_ {
        self.peers
            .iter()
            .filter(|p| p.connected)
            .map(|p| (p.id, p.role))
    }
}

/// A viewer's `{"type":"quality","quality":"low"}` on `events`, if that is what `text` is.
fn quality_message(text: &str) -> Option<super::simulcast::Quality> {
    if !text.contains("\"quality\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Msg<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        quality: &'a str,
    }
    let m: Msg = serde_json::from_str(text).ok()?;
    if m.kind != "quality" {
        return None;
    }
    super::simulcast::Quality::parse(m.quality)
}

/// Which shard is a show's home.
pub fn home_of(show: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    show.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::quality_message;
    use crate::engine::simulcast::Quality;

    #[test]
    fn quality_messages() {
        let m = |s| quality_message(s);
        assert_eq!(
            m(r#"{"type":"quality","quality":"low"}"#),
            Some(Quality::Low)
        );
        assert_eq!(
            m(r#"{"quality":"auto","type":"quality"}"#),
            Some(Quality::Auto)
        );
        // Not a quality message, or not a valid one: left to the control plane.
        assert_eq!(m(r#"{"type":"buy","quality":"low"}"#), None);
        assert_eq!(m(r#"{"type":"quality","quality":"ultra"}"#), None);
        assert_eq!(m(r#"{"type":"quality""#), None);
        assert_eq!(m(r#"{"type":"ping"}"#), None);
    }
}
