//! The real `hawker` binary as a child process, for the interop cells
//! (tests/interop_*.rs): its own data directory and config, killed when dropped.

use std::io::Write as _;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::server::{get_raw, sum_metric};

/// A `hawker serve` child process with its own data dir and config.
pub struct Hawker {
    child: Child,
    pub dir: std::path::PathBuf,
    pub http: String,
    pub metrics: String,
    pub config: std::path::PathBuf,
}

impl Hawker {
    /// Starts `hawker serve` with one shard, its media bound to `media_ip`, on fixed ports.
    pub fn start(name: &str, media_ip: &str, http_port: u16, metrics_port: u16) -> Hawker {
        let dir = std::env::temp_dir().join(format!("hawker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("hawker.toml");
        let mut f = std::fs::File::create(&config).unwrap();
        writeln!(
            f,
            "data_dir = {data:?}\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [media]\nshards = 1\nbind_ip = \"{media_ip}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
            data = dir.join("data").display().to_string(),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("hawker.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hawker"))
            .args(["serve", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("HAWKER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("hawker starts");
        Hawker {
            child,
            dir,
            http: format!("http://127.0.0.1:{http_port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            config,
        }
    }

    pub fn token(&self, show: &str, role: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_hawker"))
            .args(["token", "--config"])
            .arg(&self.config)
            .args(["--show", show, "--role", role])
            .output()
            .expect("hawker token runs");
        assert!(out.status.success(), "hawker token: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub async fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        sum_metric(&get_raw(&self.metrics).await.body, name, filters)
    }

    pub async fn wait_metric(
        &self,
        name: &str,
        filters: &[&str],
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.metric(name, filters).await;
            if pred(v) || Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `hawker serve` on 127.0.0.1 (see [`Hawker::start`]) and waits up to 20 s for its
    /// metrics endpoint to answer.
    pub async fn start_ready(name: &str, http_port: u16, metrics_port: u16) -> Hawker {
        let hawker = Hawker::start(name, "127.0.0.1", http_port, metrics_port);
        let up = Instant::now();
        loop {
            let ok = match reqwest::Client::builder().no_proxy().build() {
                Ok(c) => {
                    matches!(c.get(&hawker.metrics).send().await, Ok(r) if r.status().is_success())
                }
                Err(_) => false,
            };
            if ok {
                return hawker;
            }
            assert!(
                up.elapsed() < Duration::from_secs(20),
                "hawker did not start:\n{}",
                hawker.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no peer is left (`hawker_peers` 0): every session ended.
    pub async fn assert_all_gone(&self) {
        let left = self.wait_metric("hawker_peers", &[], |n| n == 0.0).await;
        assert_eq!(
            left,
            0.0,
            "every session ended; hawker log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hawker.log")).unwrap_or_default()
    }
}

impl Drop for Hawker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process killed when dropped, so a failing assertion leaves nothing running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
