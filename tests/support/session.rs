//! Client-side session state shared by [`super::Publisher`] and [`super::Viewer`]: the peer
//! connection, the WHIP/WHEP resource, the optional `"events"` data channel and background
//! tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use super::peer::{self, Negotiated, PeerEvents};

/// Label of the commerce-events data channel.
pub const EVENTS_LABEL: &str = "events";

/// Messages received on the events channel.
#[derive(Debug, Default, Clone)]
pub struct DcLog {
    pub text: Vec<String>,
    pub binary: Vec<Bytes>,
}

pub struct Session {
    pub pc: Arc<dyn PeerConnection>,
    pub client: reqwest::Client,
    pub token: Option<String>,
    pub offer: String,
    pub negotiated: Negotiated,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub connected_at: Mutex<Option<Instant>>,
    pub dc: Option<Arc<dyn DataChannel>>,
    pub dc_open: watch::Receiver<bool>,
    pub dc_log: Arc<Mutex<DcLog>>,
    /// Bumped on every change a `wait_for` may be interested in.
    pub changed: watch::Sender<u64>,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    pub closed: Mutex<bool>,
}

/// Creates the reliable, ordered `"events"` data channel (before the offer).
pub async fn create_events_channel(
    pc: &Arc<dyn PeerConnection>,
) -> anyhow::Result<Arc<dyn DataChannel>> {
    pc.create_data_channel(
        EVENTS_LABEL,
        Some(RTCDataChannelInit {
            ordered: true,
            ..Default::default()
        }),
    )
    .await
    .context("create_data_channel(events)")
}

impl Session {
    /// Offers over HTTP, applies the answer, starts the data-channel reader, and (if asked)
    /// waits for `Connected` and the data channel to open.
    #[allow(clippy::too_many_arguments)]
    pub async fn establish(
        pc: Arc<dyn PeerConnection>,
        mut events: PeerEvents,
        dc: Option<Arc<dyn DataChannel>>,
        url: &str,
        token: Option<&str>,
        timeout: Duration,
        wait_connected: bool,
        changed: watch::Sender<u64>,
    ) -> anyhow::Result<(Session, PeerEvents)> {
        let deadline = Instant::now() + timeout;
        let client = peer::http_client();
        let (offer, negotiated) =
            peer::negotiate_over_http(&pc, &mut events, &client, url, token, timeout).await?;

        let (dc_open_tx, dc_open) = watch::channel(false);
        let dc_log = Arc::new(Mutex::new(DcLog::default()));
        let mut tasks = Vec::new();
        if let Some(dc) = &dc {
            tasks.push(spawn_dc_reader(
                dc.clone(),
                dc_open_tx,
                dc_log.clone(),
                changed.clone(),
            ));
        }

        let session = Session {
            pc,
            client,
            token: token.map(str::to_owned),
            offer,
            negotiated,
            state: events.state.clone(),
            connected_at: Mutex::new(None),
            dc,
            dc_open,
            dc_log,
            changed,
            tasks: Mutex::new(tasks),
            closed: Mutex::new(false),
        };
        if wait_connected {
            session
                .wait_connected(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if session.dc.is_some() {
                session
                    .wait_data_channel_open(deadline.saturating_duration_since(Instant::now()))
                    .await?;
            }
        }
        Ok((session, events))
    }

    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut state = self.state.clone();
        peer::wait_connected(&mut state, timeout).await?;
        self.connected_at.lock().get_or_insert_with(Instant::now);
        Ok(())
    }

    pub async fn wait_data_channel_open(&self, timeout: Duration) -> anyhow::Result<()> {
        anyhow::ensure!(self.dc.is_some(), "no events data channel was requested");
        let mut open = self.dc_open.clone();
        tokio::time::timeout(timeout, open.wait_for(|o| *o))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "timed out after {timeout:?} waiting for the events data channel to open"
                )
            })?
            .context("data channel reader stopped")?;
        Ok(())
    }

    pub async fn send_text(&self, text: &str) -> anyhow::Result<()> {
        let dc = self
            .dc
            .as_ref()
            .context("no events data channel was requested (opts.data_channel = false)")?;
        dc.send_text(text).await.context("DataChannel::send_text")?;
        Ok(())
    }

    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    pub fn spawn(&self, task: JoinHandle<()>) {
        self.tasks.lock().push(task);
    }

    /// `DELETE`s the resource (once) and closes the peer connection.
    pub async fn close(&self) -> anyhow::Result<u16> {
        let already = std::mem::replace(&mut *self.closed.lock(), true);
        anyhow::ensure!(!already, "session already closed");
        let status = peer::delete_session(
            &self.client,
            &self.negotiated.location,
            self.token.as_deref(),
        )
        .await;
        self.close_peer().await;
        status
    }

    /// Closes the peer connection and stops background tasks without telling the server.
    pub async fn close_peer(&self) {
        *self.closed.lock() = true;
        let _ = self.pc.close().await;
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
        if !*self.closed.get_mut() {
            // Best effort: without close() the webrtc-rs driver task would keep the
            // connection (and ICE consent) alive until the runtime shuts down.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let pc = self.pc.clone();
                handle.spawn(async move {
                    let _ = pc.close().await;
                });
            }
        }
    }
}

/// Reads a data channel's events: open flag, text and binary messages. Data-channel events
/// *must* be drained: webrtc-rs stops reading from SCTP while a channel's queue is full.
pub fn spawn_dc_reader(
    dc: Arc<dyn DataChannel>,
    open: watch::Sender<bool>,
    log: Arc<Mutex<DcLog>>,
    changed: watch::Sender<u64>,
) -> JoinHandle<()> {
    // webrtc-rs 0.21 queues the SCTP INIT (on DTLS completion) and the DCEP OPEN (on
    // association establishment) without waking its driver, so they otherwise leave only on
    // the driver's next timer, ~200 ms later each. Any DataChannel setter wakes the driver,
    // so poke it every 5 ms until the channel is open.
    let poke_dc = dc.clone();
    let mut poke_open = open.subscribe();
    let poker = tokio::spawn(async move {
        for _ in 0..6000 {
            if *poke_open.borrow_and_update() {
                break;
            }
            let _ = poke_dc.set_buffered_amount_low_threshold(0).await;
            let _ = tokio::time::timeout(Duration::from_millis(5), poke_open.changed()).await;
        }
    });
    tokio::spawn(async move {
        let _poker = AbortOnDrop(poker);
        while let Some(event) = dc.poll().await {
            match event {
                DataChannelEvent::OnOpen => {
                    open.send_replace(true);
                }
                DataChannelEvent::OnMessage(msg) => {
                    {
                        let mut log = log.lock();
                        if msg.is_string {
                            log.text
                                .push(String::from_utf8_lossy(&msg.data).into_owned());
                        } else {
                            log.binary.push(msg.data.freeze());
                        }
                    }
                    changed.send_modify(|v| *v += 1);
                }
                DataChannelEvent::OnClose => {
                    open.send_replace(false);
                    break;
                }
                _ => {}
            }
        }
    })
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
