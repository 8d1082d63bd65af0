//! The control plane's shared state: [`App`] holds the config, token keys, the media engine,
//! the show registry, the store and the live-commerce state; [`App::on_engine_event`] turns the
//! media plane's [`Event`]s into registry updates and live-commerce work. Both `http` (request
//! handlers) and `live` (the data-channel protocol) depend on this module, not on each other.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::auth::Keys;
use crate::config::Config;
use crate::engine::{Engine, Event, Role};
use crate::metrics::Metrics;
use crate::shows::{Registry, Show};

/// Everything the control plane shares.
pub struct App {
    /// Configuration.
    pub cfg: Config,
    /// Token keys.
    pub keys: Keys,
    /// The media plane.
    pub engine: Engine,
    /// Shows and sessions.
    pub registry: Registry,
    /// Metrics.
    pub metrics: Metrics,
    /// Durable shows, catalog, stock, orders, webhook outbox.
    pub store: crate::commerce::Store,
    /// Live commerce state (highlights, rate limits).
    pub live: crate::live::State,
    /// The recorder's writer thread.
    pub recorder: crate::recording::Recorder,
    /// The recordings on disk.
    pub recordings: crate::recording::Library,
    /// Replay sessions (WHEP viewers of a recording).
    pub replays: crate::recording::replay::Sessions,
}

impl App {
    /// The show for a WHIP/WHEP request: in the registry, or durable (created through the API
    /// or a previous run), or, when `create` is true (an authenticated publisher) and
    /// `shows.create_on_first_use` is set, created now. `None` means 404: a viewer (anonymous or
    /// not) never brings a show into existence, so unauthenticated requests cannot grow the
    /// show table, the store or the per-show metrics.
    pub async fn show_for_media(&self, id: &str, create: bool) -> Option<Arc<Show>> {
        if let Some(s) = self.registry.show(id) {
            return Some(s);
        }
        if let Ok(Some(stored)) = self.store.show(id).await {
            let codecs: Vec<crate::codec::Codec> = stored
                .video_codecs
                .iter()
                .filter_map(|c| crate::codec::Codec::video_from_name(c))
                .collect();
            let codecs = if codecs.is_empty() {
                self.cfg.shows.default_video_codecs.clone()
            } else {
                codecs
            };
            return Some(self.registry.show_or_create(id, &codecs));
        }
        if !(create && self.cfg.shows.create_on_first_use) {
            return None;
        }
        let codecs = &self.cfg.shows.default_video_codecs;
        // The durable record first, so orders and webhooks work for the show as soon as it is
        // answered. A concurrent creation of the same id is fine (conflict = it exists).
        let created = self
            .store
            .create_show(crate::commerce::NewShow {
                id: Some(id.to_string()),
                title: id.to_string(),
                scheduled_at: None,
                video_codecs: codecs.iter().map(|c| c.as_str().to_string()).collect(),
            })
            .await;
        if let Err(e) = created {
            tracing::debug!(show = %id, "implicit show record: {e}");
        }
        Some(self.registry.show_or_create(id, codecs))
    }

    /// Whether a show's next publisher session is recorded: its own setting, else the config.
    pub fn records(&self, show: &str) -> bool {
        self.recordings
            .settings(show)
            .map_or(self.cfg.recording.enabled, |s| s.enabled)
    }

    /// Record a commerce event of a show, if the show is being recorded.
    pub fn record_event(&self, show: &Show, text: &Arc<str>) {
        if show.recording.load(Ordering::Relaxed) {
            self.recorder.event(&show.id, text);
        }
    }

    /// A show's recording, after the writer synced what it holds. Blocking.
    pub fn load_recording(
        &self,
        show: &Arc<str>,
    ) -> std::io::Result<(
        Vec<crate::recording::file::Packet>,
        Vec<crate::recording::file::Event>,
    )> {
        use crate::recording::file;
        self.recorder
            .close(Some(show.clone()), std::time::Duration::from_secs(5));
        let dir = self.recordings.show_dir(show);
        Ok((
            file::read_media(&dir.join(file::MEDIA))?,
            file::read_events(&dir.join(file::EVENTS))?,
        ))
    }

    /// A peer is gone: free its publisher slot, update counts.
    pub fn session_gone(&self, peer: u64) {
        let replay = self.replays.remove(peer);
        if replay {
            self.metrics.replay_viewers.dec();
        }
        let Some(s) = self.registry.remove_by_peer(peer) else {
            return;
        };
        if replay {
            // A replay viewer is not a viewer of the live show.
            return;
        }
        match s.role {
            Role::Publisher => {
                let mut slot = s.show.publisher.lock();
                if slot.as_deref() == Some(s.id.as_str()) {
                    *slot = None;
                }
                if s.show.live.swap(false, Ordering::Relaxed) {
                    self.metrics.shows_live.dec();
                    tracing::info!(show = %s.show.id, "show went off air");
                }
            }
            Role::Viewer => {
                if s.connected {
                    s.show.viewer_left();
                }
            }
        }
    }

    /// A shard's thread died with its peers: end every session it held as if each peer had
    /// reported `Gone`, so caps, counts, the publisher slot and the live flag are released.
    pub fn shard_lost(&self, shard: usize) {
        let peers = self.registry.peers_on_shard(shard);
        tracing::error!(
            shard,
            sessions = peers.len(),
            "media shard lost; ending its sessions"
        );
        self.metrics.sessions_lost.inc_by(peers.len() as u64);
        for peer in peers {
            self.live.inboxes.close(peer);
            self.session_gone(peer);
        }
    }

    /// Handle a media-plane event.
    pub fn on_engine_event(self: &Arc<Self>, ev: Event) {
        match ev {
            Event::Connected { peer, .. } if self.replays.get(peer).is_some() => {
                self.registry.mark_connected(peer);
                crate::recording::replay::start(self.clone(), peer);
            }
            Event::Connected { peer, role, .. } => {
                if let Some(s) = self.registry.mark_connected(peer) {
                    match role {
                        Role::Publisher => {
                            if !s.show.live.swap(true, Ordering::Relaxed) {
                                self.metrics.shows_live.inc();
                                tracing::info!(show = %s.show.id, "show is live");
                            }
                            let pending = self
                                .store
                                .set_show_state(&s.show.id, crate::commerce::ShowState::Live);
                            tokio::spawn(async move {
                                if let Err(e) = pending.await {
                                    tracing::debug!("show state: {e}");
                                }
                            });
                        }
                        Role::Viewer => s.show.viewer_joined(),
                    }
                }
            }
            Event::Gone { peer, .. } => {
                self.live.inboxes.close(peer);
                self.session_gone(peer)
            }
            Event::ShardLost { shard } => self.shard_lost(shard),
            Event::ChannelOpen { peer, .. } => {
                tokio::spawn(crate::live::on_channel_open(self.clone(), peer));
            }
            Event::Text { peer, text, .. } => {
                self.live.inboxes.push(self, peer, text);
            }
        }
    }
}
