//! The configuration tree: one serde structure, every field defaulted and documented.
//!
//! `hawker serve` and `hawker token` read the same tree, either from a TOML file
//! (`--config FILE`) or from the embedded default ([`Config::default`]). Unknown keys are an
//! error naming the key (`deny_unknown_fields`). `configs/hawker.toml` mirrors this file with
//! every key commented.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::codec::Codec;

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this tree (unknown keys are named here).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the offending key.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where persistent state lives (token secret, order store). Relative paths are resolved
    /// against the current directory.
    pub data_dir: PathBuf,
    /// HTTP signalling, API and pages.
    pub http: Http,
    /// Media plane.
    pub media: Media,
    /// Tokens.
    pub auth: Auth,
    /// Prometheus metrics listener.
    pub metrics: Metrics,
    /// Shows.
    pub shows: Shows,
    /// Orders and webhooks.
    pub commerce: Commerce,
    /// Recording shows, replay and export.
    pub recording: Recording,
}

/// Recording settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recording {
    /// Whether shows are recorded when they go live (a show's own setting, set through
    /// `PUT /api/v1/shows/{show}/recording`, wins).
    pub enabled: bool,
    /// Folder of the recordings, one sub-folder per show. Default: `{data_dir}/recordings`.
    pub dir: Option<PathBuf>,
    /// Recordings of ended shows older than this many days are deleted (0 = kept forever).
    pub retention_days: u32,
    /// When all recordings together exceed this many bytes, the oldest recordings of ended
    /// shows are deleted until they fit (0 = no limit).
    pub retention_bytes: u64,
    /// Whether viewers' questions are kept in the recorded timeline (they never reach other
    /// viewers live, so replays show them only when this is set).
    pub keep_chat: bool,
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            enabled: true,
            dir: None,
            retention_days: 30,
            retention_bytes: 0,
            keep_chat: false,
        }
    }
}

impl Recording {
    /// The recordings folder.
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("recordings"))
    }
}

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address of the HTTP listener (WHIP, WHEP, REST API, pages).
    pub listen: SocketAddr,
    /// A second, private listener for the REST API with admin tokens (and `/healthz`). When
    /// set, the public listener refuses every request that carries an admin token (403), so a
    /// leaked admin token is of no use from the internet. Publisher and viewer tokens keep
    /// working on the public listener (e.g. a seller's own `POST /api/v1/shows/{show}/end`).
    pub admin_listen: Option<SocketAddr>,
    /// Largest accepted request body (SDP offers, JSON), in bytes.
    pub max_body_bytes: usize,
    /// Base URL printed and used in links; defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// A connection must deliver a complete request head within this time of the server
    /// starting to wait for one (also between keep-alive requests), or it is closed.
    #[serde(with = "humantime_serde_compat")]
    pub header_read_timeout: Duration,
    /// Open connections on the public listener at most; further ones are closed at once. Keep
    /// it below the process's file-descriptor limit minus the media sockets.
    pub max_connections: usize,
    /// WHIP/WHEP sessions open at once from one client IP address at most (0: no cap); more
    /// get 429 with `Retry-After`. Count a NAT or a corporate proxy as many viewers.
    pub max_sessions_per_ip: usize,
    /// WHEP sessions open at once in one show at most (0: no cap); more get 429.
    pub max_viewers_per_show: usize,
    /// WHIP/WHEP sessions open at once under one token subject (`sub`, or one anonymous
    /// viewer id) at most (0: no cap); more get 429. Bounds what one leaked token can open.
    pub max_sessions_per_token: usize,
    /// The `Retry-After` (seconds) of a 429 for a session cap.
    pub retry_after_secs: u32,
}

/// Media plane settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Media {
    /// Number of shards (threads, each with one UDP socket). 0 = one per core.
    pub shards: usize,
    /// IP the media sockets bind to.
    pub bind_ip: IpAddr,
    /// First UDP port; shard `i` listens on `port_base + i`. 0 = ephemeral ports.
    pub port_base: u16,
    /// IP announced in ICE candidates (defaults to `bind_ip`, which must then not be 0.0.0.0).
    pub announce_ip: Option<IpAddr>,
    /// Minimum interval between keyframe requests sent to a publisher, per show.
    #[serde(with = "humantime_serde_compat")]
    pub keyframe_interval: Duration,
    /// A joining viewer starts from the show's last keyframe (replayed from a cache of shared
    /// packets) when it is at most this old; otherwise the publisher is asked for one. Zero
    /// disables the cache.
    #[serde(with = "humantime_serde_compat")]
    pub keyframe_cache_max_age: Duration,
    /// A peer that has not completed ICE and DTLS within this time is dropped.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// A peer whose ICE has not even succeeded within this time (no STUN check from it got
    /// through: an offer posted and abandoned, or a client that cannot reach the media port) is
    /// dropped sooner than `connect_timeout`, so such sessions cannot pile up.
    #[serde(with = "humantime_serde_compat")]
    pub ice_timeout: Duration,
    /// Maximum peers per shard; further offers get 503.
    pub max_peers_per_shard: usize,
}

/// Token settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// HS256 secret, at least 32 bytes (shorter ones are refused at start-up). When absent, a
    /// random secret is generated once and kept in `{data_dir}/secret` (mode 0600).
    pub secret: Option<String>,
    /// Whether viewers may watch without a token.
    pub anonymous_viewers: bool,
    /// Default lifetime of tokens printed by `hawker token`.
    #[serde(with = "humantime_serde_compat")]
    pub default_ttl: Duration,
}

/// Metrics listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address of the `/metrics` listener; separate from the public HTTP listener.
    pub listen: SocketAddr,
}

/// Show defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shows {
    /// Video codecs of a show created implicitly on first use, in preference order.
    pub default_video_codecs: Vec<Codec>,
    /// Whether an authenticated WHIP (publisher or admin token) to an unknown show creates it
    /// (otherwise shows must be created through the REST API). WHEP never creates a show: a
    /// viewer asking for an unknown show gets 404.
    pub create_on_first_use: bool,
    /// On a first start (empty store), create the show `demo` with three sample products so
    /// the studio and viewer pages work out of the box.
    pub seed_demo: bool,
}

/// Orders and webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Commerce {
    /// Largest quantity in one order.
    pub max_qty_per_order: u32,
    /// Buys a viewer may place per minute.
    pub buys_per_minute: u32,
    /// Buys from one client address per minute, over all its sessions and shows (0: no cap).
    /// Anonymous viewers are free to open many sessions, each with its own viewer id: this is
    /// what bounds one address's buying.
    pub buys_per_minute_per_ip: u32,
    /// Buys in one show per minute, over all its viewers (0: no cap).
    pub buys_per_minute_per_show: u32,
    /// Questions a viewer may ask per minute.
    pub questions_per_minute: u32,
    /// Longest question, in characters.
    pub max_question_chars: usize,
    /// Webhook receivers: every event is POSTed to each. `http://` or `https://` with a host;
    /// checked at load.
    pub webhook_urls: Vec<String>,
    /// An event not acknowledged by every receiver this long after it happened is given up
    /// (a dead letter: logged, counted in `hawker_webhook_outbox_dead`, no more retries).
    #[serde(with = "humantime_serde_compat")]
    pub webhook_dead_after: Duration,
    /// HMAC-SHA256 key for the `X-Hawker-Signature` header, at least 32 bytes and different
    /// from the token secret. Default: derived from the token secret
    /// ([`crate::auth::derive_webhook_secret`]); `hawker webhook-secret` prints it.
    pub webhook_secret: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("hawker-data"),
            http: Http::default(),
            media: Media::default(),
            auth: Auth::default(),
            metrics: Metrics::default(),
            shows: Shows::default(),
            commerce: Commerce::default(),
            recording: Recording::default(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8080".parse().expect("static addr"),
            admin_listen: None,
            max_body_bytes: 64 * 1024,
            public_url: None,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_sessions_per_ip: 0,
            max_viewers_per_show: 0,
            max_sessions_per_token: 0,
            retry_after_secs: 5,
        }
    }
}

impl Default for Media {
    fn default() -> Self {
        Media {
            shards: 0,
            bind_ip: "127.0.0.1".parse().expect("static ip"),
            port_base: 0,
            announce_ip: None,
            keyframe_interval: Duration::from_millis(500),
            keyframe_cache_max_age: Duration::from_millis(1000),
            connect_timeout: Duration::from_secs(15),
            ice_timeout: Duration::from_secs(10),
            max_peers_per_shard: 10_000,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            secret: None,
            anonymous_viewers: true,
            default_ttl: Duration::from_secs(3600),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: "127.0.0.1:9090".parse().expect("static addr"),
        }
    }
}

impl Default for Shows {
    fn default() -> Self {
        Shows {
            default_video_codecs: vec![Codec::H264, Codec::Vp8],
            create_on_first_use: true,
            seed_demo: true,
        }
    }
}

impl Default for Commerce {
    fn default() -> Self {
        Commerce {
            max_qty_per_order: 10,
            buys_per_minute: 30,
            buys_per_minute_per_ip: 120,
            buys_per_minute_per_show: 0,
            questions_per_minute: 6,
            max_question_chars: 500,
            webhook_urls: Vec::new(),
            webhook_dead_after: Duration::from_secs(3 * 24 * 3600),
            webhook_secret: None,
        }
    }
}

impl Config {
    /// Load from a TOML file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, Error> {
        let cfg = match path {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| Error::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|e| match e {
                    Error::Parse { message, .. } => Error::Parse {
                        path: p.to_path_buf(),
                        message,
                    },
                    other => other,
                })?
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parse a TOML document.
    pub fn from_toml(text: &str) -> Result<Config, Error> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Parse {
            path: PathBuf::from("<inline>"),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check values serde cannot (ranges, combinations); [`Config::load`] calls it, and so does
    /// [`crate::server::start`] for configs built in code.
    pub fn validate(&self) -> Result<(), Error> {
        if self.shows.default_video_codecs.is_empty() {
            return Err(Error::Invalid(
                "shows.default_video_codecs must name at least one codec".into(),
            ));
        }
        if let Some(c) = self
            .shows
            .default_video_codecs
            .iter()
            .find(|c| !c.is_video())
        {
            return Err(Error::Invalid(format!(
                "shows.default_video_codecs: {c} is not a video codec (h264, vp8)"
            )));
        }
        if let Some(a) = self.http.admin_listen {
            let clash = |other: SocketAddr| a.port() != 0 && a == other;
            if clash(self.http.listen) || clash(self.metrics.listen) {
                return Err(Error::Invalid(format!(
                    "http.admin_listen ({a}) must differ from http.listen and metrics.listen"
                )));
            }
        }
        if self.media.announce_ip.is_none() && self.media.bind_ip.is_unspecified() {
            return Err(Error::Invalid(
                "media.announce_ip is required when media.bind_ip is unspecified".into(),
            ));
        }
        let min = crate::auth::MIN_SECRET_BYTES;
        if let Some(s) = &self.auth.secret {
            if s.len() < min {
                return Err(Error::Invalid(format!(
                    "auth.secret is {} bytes; it must be at least {min} (e.g. `openssl rand -hex 32`)",
                    s.len()
                )));
            }
        }
        if let Some(w) = &self.commerce.webhook_secret {
            if w.len() < min {
                return Err(Error::Invalid(format!(
                    "commerce.webhook_secret is {} bytes; it must be at least {min}",
                    w.len()
                )));
            }
            if self.auth.secret.as_deref() == Some(w.as_str()) {
                return Err(Error::Invalid(
                    "commerce.webhook_secret must differ from auth.secret: webhook receivers must not be able to mint tokens".into(),
                ));
            }
        }
        for u in &self.commerce.webhook_urls {
            check_webhook_url(u)?;
        }
        if self.commerce.webhook_dead_after.is_zero() {
            return Err(Error::Invalid(
                "commerce.webhook_dead_after must be greater than zero".into(),
            ));
        }
        if self.http.header_read_timeout.is_zero() {
            return Err(Error::Invalid(
                "http.header_read_timeout must be greater than zero".into(),
            ));
        }
        if self.http.max_connections == 0 {
            return Err(Error::Invalid(
                "http.max_connections must be at least 1".into(),
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(Error::Invalid(
                "http.max_body_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    /// Number of shards after resolving 0 to the core count.
    pub fn shard_count(&self) -> usize {
        if self.media.shards == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.media.shards
        }
    }

    /// The IP put into ICE candidates.
    pub fn announce_ip(&self) -> IpAddr {
        self.media.announce_ip.unwrap_or(self.media.bind_ip)
    }

    /// Base URL for printed links.
    pub fn public_url(&self) -> String {
        self.http
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.http.listen))
    }
}

/// A webhook URL must be absolute `http`/`https` with a host: anything else would fail on every
/// delivery, silently, for days.
fn check_webhook_url(u: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::Invalid(format!("commerce.webhook_urls: {u:?} {why}"));
    let url = reqwest::Url::parse(u).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(())
}

/// Durations in the config are human strings ("500ms", "1h").
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[media]\nshardz = 2\n").unwrap_err();
        assert!(err.to_string().contains("shardz"), "{err}");
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let cfg = Config::from_toml(
            "[media]\nshards = 3\nkeyframe_interval = \"250ms\"\n[auth]\nanonymous_viewers = false\n",
        )
        .unwrap();
        assert_eq!(cfg.shard_count(), 3);
        assert_eq!(cfg.media.keyframe_interval, Duration::from_millis(250));
        assert!(!cfg.auth.anonymous_viewers);
        assert_eq!(cfg.http.listen.port(), 8080);
    }

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../configs/hawker.toml");
        Config::from_toml(text).unwrap();
    }

    #[test]
    fn short_secrets_are_rejected_naming_the_key() {
        let err = Config::from_toml("[auth]\nsecret = \"change-me\"\n").unwrap_err();
        assert!(err.to_string().contains("auth.secret"), "{err}");
        let err = Config::from_toml("[auth]\nsecret = \"\"\n").unwrap_err();
        assert!(err.to_string().contains("auth.secret"), "{err}");
        let long = "k".repeat(32);
        Config::from_toml(&format!("[auth]\nsecret = \"{long}\"\n")).unwrap();
        let err = Config::from_toml("[commerce]\nwebhook_secret = \"short\"\n").unwrap_err();
        assert!(err.to_string().contains("commerce.webhook_secret"), "{err}");
        let err = Config::from_toml(&format!(
            "[auth]\nsecret = \"{long}\"\n[commerce]\nwebhook_secret = \"{long}\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("must differ"), "{err}");
    }

    #[test]
    fn webhook_urls_are_checked_at_load() {
        for (url, why) in [
            ("ftp://hooks.example.com/x", "http or https"),
            ("hooks.example.com/x", "not a URL"),
            ("http://:8080/x", "not a URL"),
            ("https://", "not a URL"),
            ("file:///etc/passwd", "http or https"),
        ] {
            let err = Config::from_toml(&format!("[commerce]\nwebhook_urls = [{url:?}]\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("commerce.webhook_urls") && err.contains(why),
                "{url}: {err}"
            );
        }
        let ok = "[commerce]\nwebhook_urls = [\"https://hooks.example.com/hawker\", \"http://10.0.0.5:8080/h\"]\n";
        Config::from_toml(ok).unwrap();
        assert!(Config::from_toml("[commerce]\nwebhook_dead_after = \"0s\"\n").is_err());
    }

    #[test]
    fn empty_codec_list_is_rejected() {
        assert!(Config::from_toml("[shows]\ndefault_video_codecs = []\n").is_err());
        assert!(Config::from_toml("[shows]\ndefault_video_codecs = [\"opus\"]\n").is_err());
    }
}
