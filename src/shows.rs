//! The control plane's view of shows and signalling sessions (never touched by the packet path).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::codec::Codec;
use crate::engine::{Clock, PeerId, Role, ShowSpec};

/// One show.
#[derive(Debug)]
pub struct Show {
    /// Id (URL path segment).
    pub id: Arc<str>,
    /// Allowed video codecs, in preference order.
    pub video_codecs: Vec<Codec>,
    /// The show's video clock.
    pub clock: Arc<Clock>,
    /// The publisher session currently holding the show, if any.
    pub publisher: Mutex<Option<String>>,
    /// Whether the publisher's media is flowing (ICE+DTLS done).
    pub live: std::sync::atomic::AtomicBool,
    /// Connected viewers.
    pub viewers: AtomicUsize,
    /// Most viewers at once.
    pub peak_viewers: AtomicUsize,
    /// The peak last written to the store.
    pub recorded_peak: AtomicUsize,
    /// The viewer count last broadcast to the show's viewers.
    pub announced_viewers: AtomicUsize,
    /// Whether the current (or last) publisher session is recorded, with its events.
    pub recording: std::sync::atomic::AtomicBool,
}

impl Show {
    /// A show with the given codecs.
    pub fn new(id: &str, video_codecs: Vec<Codec>) -> Show {
        Show {
            id: id.into(),
            video_codecs,
            clock: Arc::new(Clock::default()),
            publisher: Mutex::new(None),
            live: Default::default(),
            viewers: AtomicUsize::new(0),
            peak_viewers: AtomicUsize::new(0),
            recorded_peak: AtomicUsize::new(0),
            announced_viewers: AtomicUsize::new(0),
            recording: Default::default(),
        }
    }

    /// What the media plane needs.
    pub fn spec(&self) -> ShowSpec {
        ShowSpec {
            id: self.id.clone(),
            video_codecs: self.video_codecs.clone(),
            clock: self.clock.clone(),
            record: self.recording.load(Ordering::Relaxed),
        }
    }

    /// A viewer connected.
    pub fn viewer_joined(&self) {
        let n = self.viewers.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_viewers.fetch_max(n, Ordering::Relaxed);
    }

    /// A viewer left.
    pub fn viewer_left(&self) {
        let _ = self
            .viewers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

/// How a session appears in logs: the first 8 hex digits of SHA-256 of its id. The id is the
/// capability to `DELETE` the session, so logs (often shipped to third parties) must not hold
/// it; the short hash still correlates log lines of one session.
pub fn log_id(session_id: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(session_id.as_bytes())[..4])
}

/// A WHIP or WHEP session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Session id (random, in the resource URL).
    pub id: String,
    /// Show.
    pub show: Arc<Show>,
    /// Role.
    pub role: Role,
    /// Shard holding the peer.
    pub shard: usize,
    /// Engine peer id.
    pub peer: PeerId,
    /// The token subject (viewer id for orders), or an anonymous id.
    pub sub: String,
    /// Whether the peer completed ICE+DTLS (counted in the show's viewers).
    pub connected: bool,
}

/// Shows and sessions.
#[derive(Debug, Default)]
pub struct Registry {
    shows: Mutex<HashMap<String, Arc<Show>>>,
    sessions: Mutex<HashMap<String, Session>>,
    by_peer: Mutex<HashMap<PeerId, String>>,
}

impl Registry {
    /// Look up a show.
    pub fn show(&self, id: &str) -> Option<Arc<Show>> {
        self.shows.lock().get(id).cloned()
    }

    /// Look up or create a show.
    pub fn show_or_create(&self, id: &str, codecs: &[Codec]) -> Arc<Show> {
        self.shows
            .lock()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Show::new(id, codecs.to_vec())))
            .clone()
    }

    /// Insert (or replace) a show.
    pub fn insert_show(&self, show: Arc<Show>) {
        self.shows.lock().insert(show.id.to_string(), show);
    }

    /// Remove a show.
    pub fn remove_show(&self, id: &str) -> Option<Arc<Show>> {
        self.shows.lock().remove(id)
    }

    /// All shows.
    pub fn shows(&self) -> Vec<Arc<Show>> {
        let mut v: Vec<_> = self.shows.lock().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Number of shows with a live publisher.
    pub fn live_count(&self) -> usize {
        self.shows
            .lock()
            .values()
            .filter(|s| s.live.load(Ordering::Relaxed))
            .count()
    }

    /// Record a session.
    pub fn add_session(&self, s: Session) {
        self.by_peer.lock().insert(s.peer, s.id.clone());
        self.sessions.lock().insert(s.id.clone(), s);
    }

    /// A session by id.
    pub fn session(&self, id: &str) -> Option<Session> {
        self.sessions.lock().get(id).cloned()
    }

    /// A session by peer.
    pub fn session_of_peer(&self, peer: PeerId) -> Option<Session> {
        let id = self.by_peer.lock().get(&peer).cloned()?;
        self.session(&id)
    }

    /// Mark a session connected; returns it if it was not yet.
    pub fn mark_connected(&self, peer: PeerId) -> Option<Session> {
        let id = self.by_peer.lock().get(&peer).cloned()?;
        let mut sessions = self.sessions.lock();
        let s = sessions.get_mut(&id)?;
        if s.connected {
            return None;
        }
        s.connected = true;
        Some(s.clone())
    }

    /// Forget a session (by peer).
    pub fn remove_by_peer(&self, peer: PeerId) -> Option<Session> {
        let id = self.by_peer.lock().remove(&peer)?;
        self.sessions.lock().remove(&id)
    }

    /// Number of sessions by role.
    pub fn session_count(&self, role: Role) -> usize {
        self.sessions
            .lock()
            .values()
            .filter(|s| s.role == role)
            .count()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_id_is_short_stable_and_not_the_id() {
        let id = "9f2c4e0b7d1a46c38e5f0a2b6c7d8e9f";
        let l = super::log_id(id);
        assert_eq!(l.len(), 8);
        assert_eq!(l, super::log_id(id));
        assert!(!id.contains(&l));
        assert_ne!(l, super::log_id("9f2c4e0b7d1a46c38e5f0a2b6c7d8e9e"));
    }
}
