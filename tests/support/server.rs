//! An in-process hawker on loopback with ephemeral ports and a temporary data directory.

use std::time::Duration;

use hawker::auth::Role;
use hawker::config::Config;
use hawker::server::Running;

/// The token secret of test servers (at least 32 bytes, as hawker requires).
pub const TEST_SECRET: &str = "test-secret-0123456789abcdef-0123456789";

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
        let mut cfg = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        cfg.http.listen = "127.0.0.1:0".parse().unwrap();
        cfg.metrics.listen = "127.0.0.1:0".parse().unwrap();
        cfg.media.shards = shards;
        cfg.auth.secret = Some(TEST_SECRET.into());
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

    /// Create `show` in the store, as the REST API does: viewers may connect to it before its
    /// seller (WHEP never creates a show).
    pub async fn create_show(&self, show: &str) {
        let app = &self.running.as_ref().unwrap().app;
        app.store
            .create_show(hawker::commerce::NewShow {
                id: Some(show.to_string()),
                title: show.to_string(),
                scheduled_at: None,
                video_codecs: vec!["h264".into(), "vp8".into()],
            })
            .await
            .expect("create_show");
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
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(filter))
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

// ---------------------------------------------------------------------------------------------
// Extensions used by the republish / keyframe / bad-input / lifecycle tests.
// ---------------------------------------------------------------------------------------------

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

impl TestServer {
    /// The shared application state.
    pub fn app(&self) -> &Arc<hawker::http::App> {
        &self.running.as_ref().expect("server running").app
    }

    /// UDP address of every shard (index = shard number).
    pub fn shard_addrs(&self) -> Vec<SocketAddr> {
        self.app().engine.shards().iter().map(|h| h.addr).collect()
    }

    /// The shard a show's publisher lives on.
    pub fn home_shard(&self, show: &str) -> usize {
        self.app().engine.home_shard(show)
    }

    /// The raw `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A metric per shard: `[shard 0, shard 1, ...]` (sum over lines also containing `filter`).
    pub async fn metric_per_shard(&self, name: &str, filter: &str) -> Vec<f64> {
        let n = self.shard_addrs().len();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let f = format!("shard=\"{i}\"");
            let text = self.metrics_text().await;
            out.push(sum_metric(&text, name, &[filter, &f]));
        }
        out
    }

    /// Waits until `metric(name, filter)` satisfies `pred` (polling every 20 ms); returns the
    /// last value seen and whether it was satisfied.
    pub async fn wait_metric(
        &self,
        name: &str,
        filter: &str,
        timeout: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> (f64, bool) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let v = self.metric(name, filter).await;
            if pred(v) {
                return (v, true);
            }
            if std::time::Instant::now() >= deadline {
                return (v, false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes the running server out (e.g. to call [`Running::stop`] directly).
    pub fn take_running(&mut self) -> Running {
        self.running.take().expect("server running")
    }
}

/// Sum of the values of metric lines named `name` whose text contains every filter.
pub fn sum_metric(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' ']).next() == Some(name) && filters.iter().all(|f| l.contains(f))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Result of a hand-made HTTP request.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub body: String,
}

/// `POST`s `body` to `url` with an optional `Content-Type` and bearer token.
pub async fn post_raw(
    url: &str,
    content_type: Option<&str>,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> HttpReply {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = client.post(url).body(body);
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request sent");
    HttpReply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

/// `DELETE`s `url`.
pub async fn delete_raw(url: &str) -> HttpReply {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client.delete(url).send().await.expect("request sent");
    HttpReply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

/// `GET`s `url`.
pub async fn get_raw(url: &str) -> HttpReply {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client.get(url).send().await.expect("request sent");
    HttpReply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// A lossy / severable network path between one test peer and the server.
// ---------------------------------------------------------------------------------------------

/// An HTTP signalling proxy plus UDP relay between test peers and the server.
///
/// Point a [`super::Publisher`] or [`super::Viewer`] at [`LossyLink::whip`] / [`LossyLink::whep`]
/// instead of the server: requests are forwarded to the server unchanged, and the host
/// candidate in each SDP answer is rewritten to a fresh UDP relay, so the peer's media flows
/// `peer ⇄ relay ⇄ shard`. The relay can drop every Nth server→peer video RTP packet (to make a
/// viewer NACK) or black-hole both directions (a peer that vanished from the network without a
/// DTLS close or a DELETE).
pub struct LossyLink {
    /// `http://127.0.0.1:port` of the signalling proxy.
    pub base: String,
    state: Arc<LinkState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct LinkState {
    upstream: String,
    drop_every: AtomicU64,
    blackhole: AtomicBool,
    dropped: AtomicU64,
    down_video_rtp: AtomicU64,
    up_nack_like: AtomicU64,
    up_datagrams: AtomicU64,
    down_datagrams: AtomicU64,
    down_dtls_alerts: AtomicU64,
    relays: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Payload types the test peers use for video.
const VIDEO_PTS: [u8; 2] = [super::peer::VP8_PT, super::peer::H264_PT];

impl LossyLink {
    /// Starts a proxy in front of `server`.
    pub async fn start(server: &TestServer) -> LossyLink {
        let state = Arc::new(LinkState {
            upstream: server.base.clone(),
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(proxy_handler)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        LossyLink { base, state, task }
    }

    /// WHIP URL through the proxy.
    pub fn whip(&self, show: &str) -> String {
        format!("{}/whip/{show}", self.base)
    }

    /// WHEP URL through the proxy.
    pub fn whep(&self, show: &str) -> String {
        format!("{}/whep/{show}", self.base)
    }

    /// Drop every `n`th server→peer video RTP packet (0 = drop nothing).
    pub fn drop_every(&self, n: u64) {
        self.state.drop_every.store(n, Ordering::SeqCst);
    }

    /// Black-hole (true) or restore (false) both directions.
    pub fn blackhole(&self, on: bool) {
        self.state.blackhole.store(on, Ordering::SeqCst);
    }

    /// Server→peer video RTP packets dropped so far.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::SeqCst)
    }

    /// Peer→server SRTCP datagrams whose first (cleartext) header is a generic NACK
    /// (PT 205, FMT 1). A lower bound on NACKs sent: NACKs inside compound packets are
    /// encrypted and not seen.
    pub fn nack_like_up(&self) -> u64 {
        self.state.up_nack_like.load(Ordering::SeqCst)
    }

    /// Server→peer DTLS alert records (content type 21, e.g. close_notify), counted even while
    /// black-holed.
    pub fn dtls_alerts_down(&self) -> u64 {
        self.state.down_dtls_alerts.load(Ordering::SeqCst)
    }

    /// Datagrams relayed (peer→server, server→peer).
    pub fn datagrams(&self) -> (u64, u64) {
        (
            self.state.up_datagrams.load(Ordering::SeqCst),
            self.state.down_datagrams.load(Ordering::SeqCst),
        )
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.task.abort();
        for t in self.state.relays.lock().drain(..) {
            t.abort();
        }
    }
}

async fn proxy_handler(
    axum::extract::State(st): axum::extract::State<Arc<LinkState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let url = format!(
        "{}{}",
        st.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
    let mut req = client.request(m, &url).body(body.to_vec());
    for h in ["content-type", "authorization", "accept"] {
        if let Some(v) = headers.get(h) {
            req = req.header(h, v.as_bytes());
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return (axum::http::StatusCode::BAD_GATEWAY, format!("proxy: {e}\n")).into_response()
        }
    };
    let status = resp.status().as_u16();
    let rh = resp.headers().clone();
    let mut text = resp.text().await.unwrap_or_default();
    if status == 201 {
        text = rewrite_candidates(&st, &text).await;
    }
    let mut out = (axum::http::StatusCode::from_u16(status).unwrap(), text).into_response();
    for h in ["content-type", "location", "etag", "www-authenticate"] {
        if let Some(v) = rh.get(h) {
            if let Ok(v) = axum::http::HeaderValue::from_bytes(v.as_bytes()) {
                out.headers_mut().insert(h, v);
            }
        }
    }
    out
}

/// Replaces each `a=candidate` host address with a new relay towards it.
async fn rewrite_candidates(st: &Arc<LinkState>, sdp: &str) -> String {
    let mut relays: HashMap<SocketAddr, SocketAddr> = HashMap::new();
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if let Some(rest) = trimmed.strip_prefix("a=candidate:") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() >= 6 && f[2].eq_ignore_ascii_case("udp") {
                if let Ok(target) = format!("{}:{}", f[4], f[5]).parse::<SocketAddr>() {
                    let relay = match relays.get(&target) {
                        Some(r) => *r,
                        None => {
                            let r = spawn_relay(st.clone(), target).await;
                            relays.insert(target, r);
                            r
                        }
                    };
                    let mut nf: Vec<String> = f.iter().map(|s| s.to_string()).collect();
                    nf[4] = relay.ip().to_string();
                    nf[5] = relay.port().to_string();
                    out.push_str("a=candidate:");
                    out.push_str(&nf.join(" "));
                    out.push_str(&line[trimmed.len()..]);
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    out
}

async fn spawn_relay(st: Arc<LinkState>, target: SocketAddr) -> SocketAddr {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let front_addr = front.local_addr().unwrap();
    let peer: Arc<parking_lot::Mutex<Option<SocketAddr>>> = Default::default();
    let up = {
        let (st, front, back, peer) = (st.clone(), front.clone(), back.clone(), peer.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, src)) = front.recv_from(&mut buf).await {
                *peer.lock() = Some(src);
                if st.blackhole.load(Ordering::SeqCst) {
                    continue;
                }
                let d = &buf[..n];
                // SRTCP whose first header is RTPFB / generic NACK.
                if n >= 8 && (128..192).contains(&d[0]) && d[1] == 205 && d[0] & 0x1f == 1 {
                    st.up_nack_like.fetch_add(1, Ordering::SeqCst);
                }
                st.up_datagrams.fetch_add(1, Ordering::SeqCst);
                let _ = back.send_to(d, target).await;
            }
        })
    };
    let down = {
        let st = st.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, _)) = back.recv_from(&mut buf).await {
                if n >= 13 && buf[0] == 21 && buf[1] == 0xfe {
                    st.down_dtls_alerts.fetch_add(1, Ordering::SeqCst);
                }
                if st.blackhole.load(Ordering::SeqCst) {
                    continue;
                }
                let d = &buf[..n];
                let is_rtp = n >= 12 && (128..192).contains(&d[0]) && !(192..=223).contains(&d[1]);
                if is_rtp && VIDEO_PTS.contains(&(d[1] & 0x7f)) {
                    let k = st.down_video_rtp.fetch_add(1, Ordering::SeqCst) + 1;
                    let every = st.drop_every.load(Ordering::SeqCst);
                    if every > 0 && k.is_multiple_of(every) {
                        st.dropped.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                }
                let to = *peer.lock();
                if let Some(to) = to {
                    st.down_datagrams.fetch_add(1, Ordering::SeqCst);
                    let _ = front.send_to(d, to).await;
                }
            }
        })
    };
    st.relays.lock().extend([up, down]);
    front_addr
}

/// An expired HS256 token signed with the test secret.
pub fn expired_token(show: &str, role: Role) -> String {
    let claims = hawker::auth::Claims {
        sub: "expired".into(),
        show: show.into(),
        role,
        iat: 1_000_000_000,
        exp: 1_000_000_100,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A token signed with the wrong secret.
pub fn foreign_token(show: &str, role: Role) -> String {
    hawker::auth::Keys::new(b"not-the-test-secret").issue(
        "mallory",
        show,
        role,
        Duration::from_secs(600),
    )
}
