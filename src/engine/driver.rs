//! The shard driver: the only part of a shard that does I/O. It owns the UDP socket, the `mio`
//! poll and waker, reads the wall clock, and moves bytes and messages in and out of the
//! sans-IO [`Core`]: datagrams to `sendmmsg`, cross-shard messages to the other drivers'
//! channels, control events to the control plane, replies to the callers' oneshots.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{mpsc, oneshot};

use super::shard::Core;
use super::{Error, Event, Msg, PeerId, Reply};

/// mio token of the socket.
pub const SOCKET: mio::Token = mio::Token(0);
/// mio token of the waker.
pub const WAKER: mio::Token = mio::Token(1);

/// Where a shard's answer goes.
pub enum ReplyTo {
    /// Answer to [`Msg::Add`].
    Added(oneshot::Sender<Result<String, Error>>),
    /// Answer to [`Msg::Remove`].
    Removed(oneshot::Sender<bool>),
}

/// A message on its way to a shard, with whom to answer.
pub struct Envelope {
    /// The message.
    pub msg: Msg,
    /// Who waits for the [`Reply`], if anyone.
    pub reply: Option<ReplyTo>,
}

impl Envelope {
    /// A message nobody waits on.
    pub fn plain(msg: Msg) -> Envelope {
        Envelope { msg, reply: None }
    }
}

/// A way to reach a shard's driver: its channel and its waker.
#[derive(Clone)]
pub struct Link {
    tx: Sender<Envelope>,
    waker: Arc<mio::Waker>,
}

impl Link {
    /// A link to a driver that will poll `poll`, and the receiving end for that driver.
    pub fn new(poll: &mio::Poll) -> std::io::Result<(Link, Receiver<Envelope>)> {
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((Link { tx, waker }, rx))
    }

    /// Queue a message and wake the driver; false if it is gone.
    pub fn send(&self, env: Envelope) -> bool {
        let ok = self.tx.send(env).is_ok();
        let _ = self.waker.wake();
        ok
    }
}

/// One shard's driver.
pub struct Driver {
    core: Core,
    sock: mio::net::UdpSocket,
    local: SocketAddr,
    poll: mio::Poll,
    rx: Receiver<Envelope>,
    shards: Vec<Link>,
    events: mpsc::UnboundedSender<Event>,
    added: HashMap<PeerId, oneshot::Sender<Result<String, Error>>>,
    removed: HashMap<PeerId, Vec<oneshot::Sender<bool>>>,
    recorder: Option<crate::recording::Sink>,
}

impl Driver {
    /// A driver for `core` around a bound, non-blocking socket.
    pub fn new(
        core: Core,
        sock: std::net::UdpSocket,
        poll: mio::Poll,
        rx: Receiver<Envelope>,
        shards: Vec<Link>,
        events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Driver> {
        let local = sock.local_addr()?;
        let mut sock = mio::net::UdpSocket::from_std(sock);
        poll.registry()
            .register(&mut sock, SOCKET, mio::Interest::READABLE)?;
        Ok(Driver {
            core,
            sock,
            local,
            poll,
            rx,
            shards,
            events,
            added: HashMap::new(),
            removed: HashMap::new(),
            recorder: None,
        })
    }

    /// Hand the packets of recorded shows to `recorder` (without one, they are discarded).
    pub fn with_recorder(mut self, recorder: Option<crate::recording::Sink>) -> Driver {
        self.recorder = recorder;
        self
    }

    /// Run until [`Msg::Shutdown`] (true) or until polling fails (false).
    pub fn run(mut self) -> bool {
        let mut events = mio::Events::with_capacity(64);
        let mut buf = vec![0u8; 2048];
        loop {
            let mut more = false;
            let mut stop = false;
            for _ in 0..1024 {
                match self.rx.try_recv() {
                    Ok(env) => {
                        if matches!(env.msg, Msg::Shutdown) {
                            stop = true;
                            break;
                        }
                        self.accept(env);
                    }
                    Err(_) => break,
                }
            }
            if stop {
                self.core.shutdown();
                self.flush();
                return true;
            }
            for i in 0..256 {
                match self.sock.recv_from(&mut buf) {
                    Ok((n, src)) => {
                        self.core
                            .handle_datagram(Instant::now(), src, self.local, &buf[..n])
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!("recv error: {e}");
                        break;
                    }
                }
                if i == 255 {
                    more = true;
                }
            }
            // Publisher packets go to the other shards before this shard's own fan-out (in
            // `handle_timeout`), so the shards fan out in parallel.
            self.flush_outbox();
            self.core.handle_timeout(Instant::now());
            self.flush();
            if !self.rx.is_empty() {
                more = true;
            }
            let timeout = if more {
                Duration::ZERO
            } else {
                self.core
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(100))
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("poll failed: {e}");
                    return false;
                }
            }
        }
    }

    /// Remember who waits for the answer, then hand the message to the core.
    fn accept(&mut self, env: Envelope) {
        match (env.reply, &env.msg) {
            (Some(ReplyTo::Added(tx)), Msg::Add(a)) => {
                self.added.insert(a.id, tx);
            }
            (Some(ReplyTo::Removed(tx)), Msg::Remove(id)) => {
                self.removed.entry(*id).or_default().push(tx);
            }
            _ => {}
        }
        self.core.handle_msg(Instant::now(), env.msg);
    }

    /// Hand what the other shards must hear to their channels, one wake per shard however many
    /// messages.
    fn flush_outbox(&mut self) {
        let core = &mut self.core;
        if core.outbox.is_empty() {
            return;
        }
        let me = core.settings().index;
        for (_, s) in self.shards.iter().enumerate().filter(|&(i, _)| i != me) {
            for m in &core.outbox {
                let _ = s.tx.send(Envelope::plain(m.to_msg()));
            }
            let _ = s.waker.wake();
        }
        core.outbox.clear();
    }

    /// Drain the core's queues: datagrams, cross-shard messages, events, replies.
    fn flush(&mut self) {
        let core = &mut self.core;
        if !core.transmits.is_empty() {
            // Counted once per flush, not per datagram.
            let bytes: usize = core.transmits.iter().map(|t| t.contents.len()).sum();
            core.metrics()
                .packets_out
                .inc_by(core.transmits.len() as u64);
            core.metrics().bytes_out.inc_by(bytes as u64);
            let items: Vec<(SocketAddr, &[u8])> = core
                .transmits
                .iter()
                .map(|t| (t.destination, &t.contents[..]))
                .collect();
            let failed = super::sendmmsg::send_all(&self.sock, &items);
            drop(items);
            if failed > 0 {
                core.metrics().send_errors.inc_by(failed as u64);
            }
            core.transmits.clear();
        }
        self.flush_outbox();
        let core = &mut self.core;
        match &self.recorder {
            Some(r) => r.push_media(core.recorded.drain(..)),
            None => core.recorded.clear(),
        }
        for ev in core.events.drain(..) {
            let _ = self.events.send(ev);
        }
        for r in core.replies.drain(..) {
            match r {
                Reply::Added { peer, result } => {
                    if let Some(tx) = self.added.remove(&peer) {
                        let _ = tx.send(result);
                    }
                }
                Reply::Removed { peer, existed } => {
                    if let Some(tx) = self
                        .removed
                        .get_mut(&peer)
                        .filter(|v| !v.is_empty())
                        .map(|v| v.remove(0))
                    {
                        let _ = tx.send(existed);
                    }
                    if self.removed.get(&peer).is_some_and(|v| v.is_empty()) {
                        self.removed.remove(&peer);
                    }
                }
            }
        }
    }
}
