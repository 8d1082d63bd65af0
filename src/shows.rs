//! The control plane's view of shows and signalling sessions (never touched by the packet path).

use std::collections::HashMap;
use std::net::IpAddr;
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
            replay: false,
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
    /// The client's IP address (per-address session cap), if known.
    pub ip: Option<IpAddr>,
}

/// Caps checked when a session is added (0: no cap).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// Sessions from one IP address.
    pub per_ip: usize,
    /// Viewer sessions in one show.
    pub viewers_per_show: usize,
    /// Sessions under one token subject.
    pub per_sub: usize,
}

/// Which cap refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capped {
    /// `http.max_sessions_per_ip`.
    Ip,
    /// `http.max_viewers_per_show`.
    Show,
    /// `http.max_sessions_per_token`.
    Token,
}

impl Capped {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Capped::Ip => "ip",
            Capped::Show => "show",
            Capped::Token => "token",
        }
    }
}

/// Shows and sessions.
#[derive(Debug, Default)]
pub struct Registry {
    shows: Mutex<HashMap<String, Arc<Show>>>,
    sessions: Mutex<HashMap<String, Session>>,
    by_peer: Mutex<HashMap<PeerId, String>>,
    /// Open sessions per client address and viewer sessions per show, kept beside `sessions`
    /// (same lock order: `sessions` first) so a cap check is O(1).
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    viewers_per_show: HashMap<Arc<str>, usize>,
    per_sub: HashMap<String, usize>,
}

impl Counts {
    fn add(&mut self, s: &Session) {
        if let Some(ip) = s.ip {
            *self.per_ip.entry(ip).or_default() += 1;
        }
        if s.role == Role::Viewer {
            *self.viewers_per_show.entry(s.show.id.clone()).or_default() += 1;
        }
        *self.per_sub.entry(s.sub.clone()).or_default() += 1;
    }

    fn remove(&mut self, s: &Session) {
        fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
            if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        }
        if let Some(ip) = s.ip {
            dec(&mut self.per_ip, &ip);
        }
        if s.role == Role::Viewer {
            dec(&mut self.viewers_per_show, &s.show.id);
        }
        dec(&mut self.per_sub, &s.sub);
    }
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
        let _ = self.try_add_session(s, Caps::default());
    }

    /// Record a session unless it would exceed `caps`.
    pub fn try_add_session(&self, s: Session, caps: Caps) -> Result<(), Capped> {
        let mut sessions = self.sessions.lock();
        let mut counts = self.counts.lock();
        if caps.per_ip > 0 {
            if let Some(ip) = s.ip {
                if counts.per_ip.get(&ip).copied().unwrap_or(0) >= caps.per_ip {
                    return Err(Capped::Ip);
                }
            }
        }
        if caps.viewers_per_show > 0 && s.role == Role::Viewer {
            let n = counts
                .viewers_per_show
                .get(&s.show.id)
                .copied()
                .unwrap_or(0);
            if n >= caps.viewers_per_show {
                return Err(Capped::Show);
            }
        }
        if caps.per_sub > 0 && counts.per_sub.get(&s.sub).copied().unwrap_or(0) >= caps.per_sub {
            return Err(Capped::Token);
        }
        counts.add(&s);
        drop(counts);
        self.by_peer.lock().insert(s.peer, s.id.clone());
        sessions.insert(s.id.clone(), s);
        Ok(())
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
        let mut sessions = self.sessions.lock();
        let s = sessions.remove(&id)?;
        self.counts.lock().remove(&s);
        Some(s)
    }

    /// Peers of the sessions on one shard.
    pub fn peers_on_shard(&self, shard: usize) -> Vec<PeerId> {
        self.sessions
            .lock()
            .values()
            .filter(|s| s.shard == shard)
            .map(|s| s.peer)
            .collect()
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
