//! An in-process hawker on loopback with ephemeral ports and a temporary data directory.

use std::time::Duration;

use hawker::auth::Role;
use hawker::config::Config;
use hawker::server::Running;

/// A running in-process server.
pub struct TestServer {
    /// The running server.
    pub running: Option<Running>,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Metrics base URL.
    pub metrics: String,
    /// Temporary data directory.
    pub dir: std::path::PathBuf,
}

impl TestServer {
    /// Start with `shards` shards and a tweak to the config.
    pub async fn start(shards: usize, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = std::env::temp_dir().join(format!("hawker-test-{}", rand_suffix()));
        let mut cfg = Config::default();
        cfg.data_dir = dir.clone();
        cfg.http.listen = "127.0.0.1:0".parse().unwrap();
        cfg.metrics.listen = "127.0.0.1:0".parse().unwrap();
        cfg.media.shards = shards;
        cfg.auth.secret = Some("test-secret".into());
        tweak(&mut cfg);
        let running = hawker::server::start(cfg).await.expect("server starts");
        let base = format!("http://{}", running.http_addr);
        let metrics = format!("http://{}", running.metrics_addr);
        TestServer {
            running: Some(running),
            base,
            metrics,
            dir,
        }
    }

    /// A token for `show` with `role`.
    pub fn token(&self, show: &str, role: Role, sub: &str) -> String {
        let app = &self.running.as_ref().unwrap().app;
        app.keys.issue(sub, show, role, Duration::from_secs(600))
    }

    /// WHIP URL of a show.
    pub fn whip(&self, show: &str) -> String {
        format!("{}/whip/{show}", self.base)
    }

    /// WHEP URL of a show.
    pub fn whep(&self, show: &str) -> String {
        format!("{}/whep/{show}", self.base)
    }

    /// The value of a metric line (sum over label sets that contain `filter`).
    pub async fn metric(&self, name: &str, filter: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.split(|c| c == '{' || c == ' ').next() == Some(name) && l.contains(filter)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stop the server.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    t ^ (std::process::id() as u64) << 32
}
