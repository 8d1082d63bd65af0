//! `hawker loadtest`: a load generator made of real WebRTC peers.
//!
//! ```text
//!  publisher thread ──WHIP──► hawker ◄──WHEP── signalling thread (reqwest, N in flight)
//!  (str0m client, synthetic        │                 │ answer
//!   VP8/H.264 + Opus, events)      │ SRTP            ▼
//!                                  └──────────► viewer workers: many str0m client peers per
//!                                               thread, one UDP socket each, one mio::Poll
//!  coordinator: joins at R/s, samples /proc/<server>/{stat,status,task/*/schedstat} and the
//!  workers once a second, prints progress, then the summary, JSON and an HTML report.
//! ```
//!
//! Every peer is a real str0m `Rtc` (ICE, DTLS, SRTP, SCTP data channel `events`), in RTP mode
//! so that the generator does not depacketize. The publisher ends each payload with its send
//! time ([`media::TRAILER`]); viewers turn that into a forwarding delay. The server's CPU time is
//! read from `/proc`, not inferred from throughput: on a small machine the generator competes
//! with the server for cores, and CPU per delivered packet is what stays comparable.

pub mod baseline;
pub mod procfs;
pub mod publisher;
mod report;
pub mod signal;
pub mod soak;
pub mod stats;
pub mod udp;
pub mod viewer;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use parking_lot::Mutex;
use serde::Serialize;

use hawker::codec::Codec;
use hawker::sim::client;
use signal::{Req, Signaller};
use stats::{quantiles_of, Histogram, Quantiles};
use viewer::{NewViewer, ViewerResult};

/// Largest number of viewers one run may join.
pub const MAX_VIEWERS: usize = 20_000;
/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Options of `hawker loadtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Base URL of the server (WHIP at {url}/whip/{show}, WHEP at {url}/whep/{show}).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Show id.
    #[arg(long, default_value = "demo")]
    pub show: String,
    /// Publisher token for the show; without it no stream is published (viewers only).
    #[arg(long)]
    pub token: Option<String>,
    /// Viewer token (default: anonymous viewers).
    #[arg(long)]
    pub viewer_token: Option<String>,
    /// Number of viewers.
    #[arg(long, default_value_t = 100)]
    pub viewers: usize,
    /// Viewer join rate, e.g. `50/s` (or just `50`).
    #[arg(long, default_value = "50/s", value_parser = parse_rate)]
    pub join_rate: f64,
    /// Length of the run from the publisher going live, e.g. `30s`, `2m`.
    #[arg(long, default_value = "30s")]
    pub duration: humantime::Duration,
    /// Server process id (default: found by the URL's listening port).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write an HTML report with inline SVG plots.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Buys per second over all viewers (needs products in the show), e.g. `5/s`.
    #[arg(long, default_value = "0/s", value_parser = parse_rate)]
    pub buy_rate: f64,
    /// Video codec of the synthetic stream.
    #[arg(long, default_value = "vp8", value_parser = parse_video_codec)]
    pub codec: Codec,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 2500)]
    pub video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Largest RTP payload, bytes.
    #[arg(long, default_value_t = 1200)]
    pub payload_size: usize,
    /// Periodic keyframe interval.
    #[arg(long, default_value = "2s")]
    pub keyframe_interval: humantime::Duration,
    /// Opus packet size, bytes (50 packets/s).
    #[arg(long, default_value_t = 160)]
    pub audio_bytes: usize,
    /// Pace each frame's packets at this multiple of the video bitrate, like libwebrtc (2.5);
    /// 0 sends every frame as one burst (worst case for the SFU's forwarding delay).
    #[arg(long, default_value_t = 2.5)]
    pub pacing_factor: f64,
    /// Publish three synthetic simulcast layers (rids q, h, f) at 6 %, 28 % and 100 % of
    /// `--video-kbps`, like Chrome's 720p simulcast; viewers pick theirs by bandwidth estimate.
    #[arg(long)]
    pub simulcast: bool,
    /// Seller event period (highlight, or chat when the show has no products); 0s disables.
    #[arg(long, default_value = "1s")]
    pub event_interval: humantime::Duration,
    /// Viewer worker threads (default: one per 400 viewers, at most the core count).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip the raw-UDP baseline measured after the run.
    #[arg(long)]
    pub no_baseline: bool,
    /// Seconds of raw-UDP baseline per mode.
    #[arg(long, default_value = "2s")]
    pub baseline_duration: humantime::Duration,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Churn, % of `--viewers` per minute: once all have joined, the longest-connected viewer
    /// leaves (DELETE) and a new one joins, at this rate (a soak uses 10).
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// The server's Prometheus endpoint (`http://host:port/metrics`), scraped every 5 s for its
    /// peer count, webhook outbox depth and open files: the figures a soak must see plateau.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Run a webhook receiver on this address that answers 204, then 503, in turns of
    /// `--webhook-flap-period`; point the server's `commerce.webhook_urls` at it.
    #[arg(long)]
    pub webhook_flap: Option<SocketAddr>,
    /// Length of each up or down turn of `--webhook-flap`.
    #[arg(long, default_value = "60s")]
    pub webhook_flap_period: humantime::Duration,
}

/// The layers' bitrates with `--simulcast` (lowest first), else empty.
pub fn simulcast_kbps(opts: &Opts) -> Vec<u32> {
    if !opts.simulcast {
        return Vec::new();
    }
    let top = opts.video_kbps.max(300);
    vec![(top * 6 / 100).max(100), (top * 28 / 100).max(200), top]
}

/// Parse `--codec`: a video codec name (`vp8`, `h264`).
pub fn parse_video_codec(s: &str) -> Result<Codec, String> {
    Codec::video_from_name(s).ok_or_else(|| format!("{s:?} is not a video codec (vp8, h264)"))
}

/// Parse `50/s`, `50`, `0.5/s`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s").trim();
    let v: f64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a rate like 50/s"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?}: a rate must be >= 0"));
    }
    Ok(v)
}

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `nproc`.
    pub nproc: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
}

/// What was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Server URL.
    pub url: String,
    /// Show.
    pub show: String,
    /// Viewers requested.
    pub viewers: usize,
    /// Joins per second.
    pub join_rate: f64,
    /// Run length, s.
    pub duration_s: f64,
    /// Codec.
    pub codec: Codec,
    /// Video kbit/s.
    pub video_kbps: u32,
    /// Frames per second.
    pub fps: u32,
    /// Largest payload.
    pub payload_size: usize,
    /// Publisher pacing factor (0 = bursts).
    pub pacing_factor: f64,
    /// Simulcast layers' kbit/s, lowest first (empty: one layer).
    pub simulcast_kbps: Vec<u32>,
    /// Buys per second.
    pub buy_rate: f64,
    /// Viewer worker threads.
    pub threads: usize,
    /// Whether a stream was published.
    pub published: bool,
}

/// Figures over all viewers.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    /// Viewers asked for.
    pub viewers_requested: usize,
    /// WHEP POSTs answered 201.
    pub answered: usize,
    /// ICE+DTLS connected.
    pub connected: usize,
    /// Received a keyframe.
    pub with_keyframe: usize,
    /// `events` channel open.
    pub channel_open: usize,
    /// Failed (signalling or later).
    pub failed: usize,
    /// POST → first keyframe (join time), ms.
    pub join_ms: Quantiles,
    /// POST → answer, ms.
    pub answer_ms: Quantiles,
    /// POST → connected, ms.
    pub connect_ms: Quantiles,
    /// Distinct RTP packets received (whole run).
    pub packets_received: u64,
    /// RTP packets expected (whole run).
    pub packets_expected: u64,
    /// Loss over the whole run, %.
    pub loss_pct: f64,
    /// Loss in the steady window, %.
    pub loss_pct_window: f64,
    /// Forwarding delay (publisher send → viewer receive), whole run, ms; packets published
    /// before the viewer connected (keyframe-cache replays) are left out.
    pub delay_ms: Quantiles,
    /// Packets published before their viewer connected (replayed from the keyframe cache).
    pub replayed_packets: u64,
    /// Datagrams without a kernel receive timestamp (their delay includes generator time).
    pub rx_without_kernel_ts: u64,
    /// Forwarding delay in the steady window, ms.
    pub delay_ms_window: Quantiles,
    /// Median over viewers of the RFC 3550 audio jitter, ms.
    pub audio_jitter_ms_median: Option<f64>,
    /// Median over viewers of the video jitter, ms.
    pub video_jitter_ms_median: Option<f64>,
    /// Seller events sent by the publisher.
    pub events_sent: u64,
    /// Seller event deliveries measured (over all viewers).
    pub event_deliveries: u64,
    /// Seller event delivery delay, ms.
    pub event_delay_ms: Quantiles,
    /// Buys sent.
    pub buys_sent: u64,
    /// Order replies by status.
    pub orders: std::collections::BTreeMap<String, u64>,
    /// Buy → order reply, ms.
    pub buy_latency_ms: Quantiles,
    /// Publisher: video packets sent.
    pub pub_video_packets: u64,
    /// Publisher: audio packets sent.
    pub pub_audio_packets: u64,
    /// Publisher: keyframes sent.
    pub pub_keyframes: u64,
    /// Publisher: keyframe requests received.
    pub pub_keyframe_requests: u64,
    /// Steady window used for the rates, s (start, end) from the publisher going live.
    pub window_s: (f64, f64),
    /// Delivered packets/s (received by viewers) in the window.
    pub delivered_pps_window: f64,
    /// Generator CPU time over the run, s.
    pub generator_cpu_s: f64,
    /// Wall time of the run, s.
    pub wall_s: f64,
}

/// The server process over the steady window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStats {
    /// pid.
    pub pid: u32,
    /// How the pid was found.
    pub found_by: String,
    /// The server runs inside the generator's process (tests): only shard threads count.
    pub in_process: bool,
    /// Window length, s.
    pub window_s: f64,
    /// Process CPU time in the window (utime+stime), s.
    pub cpu_s: f64,
    /// Average cores busy.
    pub cpu_cores: f64,
    /// Shard threads' CPU time in the window, s.
    pub shard_cpu_s: f64,
    /// Shard threads.
    pub shard_threads: usize,
    /// Time the shard threads were runnable but not running in the window, s (CPU contention).
    pub shard_wait_s: f64,
    /// Largest UDP receive backlog seen, bytes.
    pub udp_backlog_max: u64,
    /// Packets delivered to viewers in the window.
    pub delivered_packets: u64,
    /// Process CPU per delivered packet, ns (absent in-process).
    pub cpu_ns_per_packet: Option<f64>,
    /// Shard-thread CPU per delivered packet, ns.
    pub shard_cpu_ns_per_packet: Option<f64>,
    /// Delivered packets per second of server CPU (process, or shards in-process).
    pub packets_per_cpu_second: Option<f64>,
    /// RSS before the viewers joined, MiB.
    pub rss_before_mib: f64,
    /// Peak RSS seen, MiB.
    pub rss_peak_mib: f64,
    /// (peak − before) / connected viewers, KiB.
    pub kib_per_viewer: Option<f64>,
    /// Server CPU per packet ÷ raw-UDP sendmmsg CPU per packet.
    pub ratio_to_baseline: Option<f64>,
}

/// One target and how the run did.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What.
    pub name: String,
    /// Goal.
    pub goal: String,
    /// Measured.
    pub value: String,
    /// Met (None: not measured).
    pub met: Option<bool>,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Sample {
    /// Seconds since the publisher went live.
    pub t_s: f64,
    /// Answered joins.
    pub answered: usize,
    /// Connected viewers.
    pub connected: usize,
    /// Viewers with a keyframe.
    pub with_keyframe: usize,
    /// Failures.
    pub failed: usize,
    /// Distinct packets/s received.
    pub rx_pps: f64,
    /// Loss in this interval, %.
    pub loss_pct: f64,
    /// Delay p50 in this interval, ms.
    pub delay_p50_ms: Option<f64>,
    /// Delay p99 in this interval, ms.
    pub delay_p99_ms: Option<f64>,
    /// Server process CPU, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server shard threads CPU, % of one core.
    pub shard_cpu_pct: Option<f64>,
    /// Server RSS, MiB.
    pub server_rss_mib: Option<f64>,
    /// Server shard threads runnable but waiting for a CPU, % of wall time (summed).
    pub shard_wait_pct: Option<f64>,
    /// Bytes waiting in the server's UDP receive buffers.
    pub server_udp_backlog: Option<u64>,
    /// Generator CPU, % of one core.
    pub generator_cpu_pct: f64,
    /// Server open file descriptors (from /proc).
    pub server_fds: Option<u64>,
    /// `hawker_peers` at the last scrape (`--metrics-url`).
    pub server_peers: Option<f64>,
    /// `hawker_webhook_outbox_pending` at the last scrape (`--metrics-url`).
    pub outbox_pending: Option<f64>,
}

/// What a long run with churn shows (`--churn`, `--metrics-url`, `--webhook-flap`).
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Viewers that left and were replaced.
    pub churned: u64,
    /// Webhook deliveries answered 204 / 503 by the flapping receiver.
    pub webhooks_accepted: u64,
    /// See `webhooks_accepted`.
    pub webhooks_refused: u64,
    /// Each followed resource from the end of the join phase on (RSS MiB, open files, peers,
    /// outbox rows).
    pub trends: Vec<soak::Trend>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Machine.
    pub machine: Machine,
    /// What was asked for.
    pub config: RunConfig,
    /// Viewer-side figures.
    pub summary: Summary,
    /// Server-side figures.
    pub server: Option<ServerStats>,
    /// Raw-UDP baselines measured after the run.
    pub baseline: Vec<baseline::Result>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Per-second samples.
    pub series: Vec<Sample>,
    /// Caveats.
    pub notes: Vec<String>,
    /// Every viewer.
    pub viewers: Vec<ViewerResult>,
    /// Churn, webhook flapping and the resources' trends, when asked for.
    pub soak: Option<SoakReport>,
}

/// Cumulative counters at one instant (for rates over windows).
#[derive(Debug, Clone, Copy, Default)]
struct Raw {
    t: f64,
    received: u64,
    expected: u64,
    srv: Option<procfs::Sample>,
    own_cpu: f64,
}

fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("{url:?} is not an http(s) URL"))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => bail!("{url:?}: only http and https URLs are supported"),
    };
    let authority = rest.split('/').next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').context("bad IPv6 authority")?;
        let port = p.strip_prefix(':').map(str::parse).transpose()?;
        return Ok((h.to_string(), port.unwrap_or(default_port)));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), p.parse().context("bad port")?)),
        None => Ok((authority.to_string(), default_port)),
    }
}

/// The local IP the kernel would use towards the server (loopback for a local server).
fn local_ip_for(host: &str, port: u16) -> anyhow::Result<IpAddr> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    if addr.ip().is_loopback() {
        return Ok(addr.ip());
    }
    let any: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = UdpSocket::bind(any)?;
    s.connect(addr)?;
    Ok(s.local_addr()?.ip())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Run a load test; prints progress (unless quiet), the summary (or JSON), and writes the
/// HTML report if asked. Blocking: call it from a plain thread (or `spawn_blocking`).
pub fn run(opts: Opts) -> anyhow::Result<Report> {
    if opts.viewers > MAX_VIEWERS {
        bail!("at most {MAX_VIEWERS} viewers per run");
    }
    let duration: Duration = opts.duration.into();
    if duration.is_zero() || duration > MAX_DURATION {
        bail!("--duration must be between 1s and 1h");
    }
    if opts.viewers > 0 && opts.join_rate <= 0.0 {
        bail!("--join-rate must be > 0");
    }
    if opts.payload_size < 200 || opts.payload_size > 1400 {
        bail!("--payload-size must be between 200 and 1400");
    }
    if !hawker::http::media::valid_show_id(&opts.show) {
        bail!("show id must be 1-64 characters of A-Z a-z 0-9 - _");
    }
    if !(0.0..=6000.0).contains(&opts.churn) {
        bail!("--churn must be between 0 and 6000 (% of the viewers per minute)");
    }
    if opts
        .metrics_url
        .as_deref()
        .is_some_and(|u| !u.starts_with("http://"))
    {
        bail!("--metrics-url must be an http:// URL");
    }
    let started = Instant::now();
    let own_cpu0 = procfs::own_cpu();
    let (nproc, cpu_model) = procfs::machine();
    let base = opts.url.trim_end_matches('/').to_string();
    let (host, port) = host_port(&base)?;
    let local_ip = local_ip_for(&host, port)?;
    let mut notes = Vec::new();
    let threads = opts
        .threads
        .unwrap_or_else(|| opts.viewers.div_ceil(400).clamp(1, nproc))
        .max(1);
    let say = |s: String| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };

    let mut http = Signaller::start(64)?;
    let h = http.handle();
    let shared = Arc::new(publisher::Shared::default());
    let flap_stop = Arc::new(AtomicBool::new(false));
    let flap = match opts.webhook_flap {
        Some(addr) => {
            let c =
                soak::flapping_webhook(addr, opts.webhook_flap_period.into(), flap_stop.clone())?;
            say(format!(
                "webhook receiver on http://{addr}/ answering 204 and 503 in turns of {}",
                opts.webhook_flap_period
            ));
            Some(c)
        }
        None => None,
    };

    // The publisher goes live first.
    let publ = match &opts.token {
        Some(token) => {
            let cfg = publisher::Config {
                base: base.clone(),
                show: opts.show.clone(),
                token: token.clone(),
                codec: opts.codec,
                video_kbps: opts.video_kbps,
                fps: opts.fps,
                payload_size: opts.payload_size,
                keyframe_interval: opts.keyframe_interval.into(),
                audio_bytes: opts.audio_bytes,
                event_interval: opts.event_interval.into(),
                local_ip,
                pacing_factor: opts.pacing_factor.max(0.0),
                simulcast_kbps: simulcast_kbps(&opts),
            };
            let p = publisher::start(cfg, h.clone(), shared.clone())
                .context("publisher failed to go live")?;
            say(format!(
                "publisher live on {base}/whip/{} ({:?}, {} kbit/s, {} fps)",
                opts.show, opts.codec, opts.video_kbps, opts.fps
            ));
            Some(p)
        }
        None => {
            notes.push(
                "no --token: nothing was published; delay and keyframe figures need a stream"
                    .into(),
            );
            None
        }
    };

    // The server process.
    let (pid, found_by) = match opts.server_pid {
        Some(p) => (Some(p), "--server-pid".to_string()),
        None if local_ip.is_loopback() => match procfs::pid_by_tcp_port(port) {
            Some(p) => (Some(p), format!("TCP port {port} (/proc/net/tcp)")),
            None => match publ
                .as_ref()
                .and_then(|p| p.server_udp)
                .and_then(|a| procfs::pid_by_udp_port(a.port()).map(|p| (p, a.port())))
            {
                Some((p, up)) => (Some(p), format!("UDP port {up} (/proc/net/udp)")),
                None => (None, String::new()),
            },
        },
        None => (None, String::new()),
    };
    let in_process = pid == Some(std::process::id());
    if pid.is_none() {
        notes.push("server process not found (remote URL?): no server CPU/RSS figures".into());
    } else if in_process {
        notes.push(
            "server runs in the generator's process: only its shard threads' CPU is counted, \
             and RSS includes the generator"
                .into(),
        );
    }
    // Let the stream settle before the "before" sample.
    std::thread::sleep(Duration::from_millis(300));
    let srv_before = pid.and_then(procfs::sample);

    // Viewer workers.
    let stop = Arc::new(AtomicBool::new(false));
    let mut inboxes = Vec::new();
    let mut worker_threads = Vec::new();
    let mut worker_stats = Vec::new();
    for i in 0..threads {
        let st = Arc::new(Mutex::new(viewer::Stats::default()));
        let (inbox, t) = viewer::spawn(
            i,
            stop.clone(),
            st.clone(),
            shared.clone(),
            opts.buy_rate / threads as f64,
        )?;
        inboxes.push(Arc::new(inbox));
        worker_threads.push(t);
        worker_stats.push(st);
    }
    let failures: Arc<Mutex<Vec<ViewerResult>>> = Default::default();
    let locations: Arc<Mutex<Vec<(usize, String)>>> = Default::default();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let t0 = Instant::now();
    let end = t0 + duration;
    let join_iv = if opts.join_rate > 0.0 {
        Duration::from_secs_f64(1.0 / opts.join_rate)
    } else {
        Duration::ZERO
    };
    if opts.viewers > 0 && join_iv * opts.viewers as u32 > duration {
        notes.push(format!(
            "joining {} viewers at {}/s takes longer than --duration: not all joined",
            opts.viewers, opts.join_rate
        ));
    }
    let mut next_join = 0usize;
    let mut last_join_at: Option<f64> = None;
    // Churn: viewers in join order; the front one leaves next.
    let mut active: std::collections::VecDeque<usize> = Default::default();
    let churn_iv = (opts.churn > 0.0 && opts.viewers > 0)
        .then(|| Duration::from_secs_f64(60.0 / (opts.churn / 100.0 * opts.viewers as f64)));
    let mut next_churn: Option<Instant> = None;
    let mut next_index = opts.viewers;
    let mut churned = 0u64;
    let mut scraped: Option<soak::Scrape> = None;
    let mut next_scrape = t0;
    let mut next_sample = t0 + Duration::from_secs(1);
    let mut raws: Vec<Raw> = Vec::new();
    let mut series: Vec<Sample> = Vec::new();
    let whep = format!("{base}/whep/{}", opts.show);

    let mut ivs: Vec<Histogram> = Vec::new();
    let take_raw = |t: f64,
                    scraped: Option<soak::Scrape>,
                    series: &mut Vec<Sample>,
                    raws: &mut Vec<Raw>,
                    ivs: &mut Vec<Histogram>,
                    answered: usize| {
        let mut received = 0;
        let mut expected = 0;
        let mut iv = Histogram::new();
        let (mut connected, mut kf, mut failed) = (0, 0, 0);
        for st in &worker_stats {
            let mut s = st.lock();
            received += s.received;
            expected += s.expected;
            iv.merge(&s.delay_interval);
            s.delay_interval.clear();
            connected += s.connected;
            kf += s.with_keyframe;
            failed += s.failed;
        }
        failed += failures.lock().len();
        let raw = Raw {
            t,
            received,
            expected,
            srv: pid.and_then(procfs::sample),
            own_cpu: procfs::own_cpu(),
        };
        let prev = raws.last().copied().unwrap_or(Raw {
            t: 0.0,
            srv: srv_before,
            own_cpu: own_cpu0,
            ..Default::default()
        });
        let dt = (raw.t - prev.t).max(1e-3);
        let d_exp = raw.expected.saturating_sub(prev.expected);
        let d_rx = raw.received.saturating_sub(prev.received);
        let pct = |a: f64, b: f64| 100.0 * (a - b) / dt;
        let s = Sample {
            t_s: t,
            answered,
            connected,
            with_keyframe: kf,
            failed,
            rx_pps: d_rx as f64 / dt,
            loss_pct: if d_exp > 0 {
                100.0 * d_exp.saturating_sub(d_rx) as f64 / d_exp as f64
            } else {
                0.0
            },
            delay_p50_ms: iv.quantile(0.5).map(|v| v as f64 / 1000.0),
            delay_p99_ms: iv.quantile(0.99).map(|v| v as f64 / 1000.0),
            server_cpu_pct: match (raw.srv, prev.srv) {
                (Some(a), Some(b)) if !in_process => Some(pct(a.cpu_s, b.cpu_s)),
                _ => None,
            },
            shard_cpu_pct: match (raw.srv, prev.srv) {
                (Some(a), Some(b)) if a.shard_threads > 0 => {
                    Some(pct(a.shard_cpu_s, b.shard_cpu_s))
                }
                _ => None,
            },
            server_rss_mib: raw.srv.map(|s| mib(s.rss_kib)),
            shard_wait_pct: match (raw.srv, prev.srv) {
                (Some(a), Some(b)) if a.shard_threads > 0 => {
                    Some(pct(a.shard_wait_s, b.shard_wait_s))
                }
                _ => None,
            },
            server_udp_backlog: raw.srv.map(|s| s.udp_rx_queue),
            generator_cpu_pct: pct(raw.own_cpu, prev.own_cpu),
            server_fds: raw.srv.map(|s| s.open_fds),
            server_peers: scraped.map(|s| s.peers),
            outbox_pending: scraped.map(|s| s.outbox_pending),
        };
        raws.push(raw);
        ivs.push(iv);
        series.push(s.clone());
        s
    };

    let join_one = |i: usize| {
        if let Err(e) = join(
            i,
            local_ip,
            &whep,
            &opts,
            &h,
            inboxes[i % threads].clone(),
            failures.clone(),
            locations.clone(),
            answered.clone(),
            &base,
        ) {
            failures.lock().push(ViewerResult {
                index: i,
                error: Some(format!("{e:#}")),
                ..Default::default()
            });
        }
    };
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        while next_join < opts.viewers && t0 + join_iv * next_join as u32 <= now {
            let i = next_join;
            next_join += 1;
            active.push_back(i);
            last_join_at = Some(now.duration_since(t0).as_secs_f64());
            join_one(i);
        }
        if let Some(iv) = churn_iv.filter(|_| next_join >= opts.viewers) {
            let due = *next_churn.get_or_insert(now + iv);
            if now >= due {
                next_churn = Some(due + iv);
                if let Some(old) = active.pop_front() {
                    let url = {
                        let mut l = locations.lock();
                        let at = l.iter().position(|(i, _)| *i == old);
                        at.map(|k| l.swap_remove(k).1)
                    };
                    if let Some(url) = url {
                        h.submit(Req::Delete { url }, |_| {});
                    }
                    let _ = inboxes[old % threads].leave.send(old);
                    let _ = inboxes[old % threads].waker.wake();
                    churned += 1;
                }
                let i = next_index;
                next_index += 1;
                active.push_back(i);
                join_one(i);
            }
        }
        if now >= next_sample {
            next_sample += Duration::from_secs(1);
            let t = now.duration_since(t0).as_secs_f64();
            if let Some(url) = opts.metrics_url.as_deref().filter(|_| now >= next_scrape) {
                next_scrape = now + Duration::from_secs(5);
                scraped = soak::scrape(url).or(scraped);
            }
            let s = take_raw(
                t,
                scraped,
                &mut series,
                &mut raws,
                &mut ivs,
                answered.load(Ordering::Relaxed),
            );
            if let Some(e) = shared.error.lock().as_ref() {
                notes.push(format!("publisher stopped: {e}"));
                say(format!("publisher stopped: {e}"));
                break;
            }
            say(report::progress_line(&s, opts.viewers));
        }
        let next_join_at = if next_join < opts.viewers {
            t0 + join_iv * next_join as u32
        } else {
            end
        };
        let wake = next_join_at
            .min(next_sample)
            .min(end)
            .min(next_churn.unwrap_or(end));
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(20)),
        );
    }
    let t_end = Instant::now().duration_since(t0).as_secs_f64();
    take_raw(
        t_end,
        scraped,
        &mut series,
        &mut raws,
        &mut ivs,
        answered.load(Ordering::Relaxed),
    );

    // Tear down: DELETE the sessions while the peers still answer, then stop the threads.
    for st in &worker_stats {
        st.lock().closing = true;
    }
    let to_delete: Vec<String> = locations.lock().iter().map(|(_, u)| u.clone()).collect();
    let (dtx, drx) = std::sync::mpsc::channel();
    for url in &to_delete {
        let dtx = dtx.clone();
        h.submit(Req::Delete { url: url.clone() }, move |r| {
            let _ = dtx.send(r.is_ok());
        });
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for _ in 0..to_delete.len() {
        if drx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_err()
        {
            notes.push("some viewer sessions were not DELETEd within 15 s".into());
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for ib in &inboxes {
        let _ = ib.waker.wake();
    }
    let mut viewers: Vec<ViewerResult> = Vec::new();
    for t in worker_threads {
        viewers.extend(t.join().unwrap_or_default());
    }
    viewers.extend(failures.lock().drain(..));
    viewers.sort_by_key(|v| v.index);
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = publ {
        let _ = p.thread.join();
        if let Some(url) = p.session_url {
            let _ = h.call(Req::Delete { url });
        }
    }
    drop(h);
    http.stop();
    flap_stop.store(true, Ordering::Relaxed);
    let generator_cpu_s = procfs::own_cpu() - own_cpu0;

    // Aggregate.
    let mut agg = viewer::Stats::default();
    for st in &worker_stats {
        let s = st.lock();
        agg.delay.merge(&s.delay);
        agg.event_delay.merge(&s.event_delay);
        agg.buy_latency.merge(&s.buy_latency);
        agg.received += s.received;
        agg.expected += s.expected;
        agg.buys_sent += s.buys_sent;
        agg.replayed += s.replayed;
        agg.rx_without_kernel_ts += s.rx_without_kernel_ts;
        agg.channel_open += s.channel_open;
        for (k, v) in &s.orders {
            *agg.orders.entry(k.clone()).or_default() += v;
        }
    }
    // The steady window: after the last join (+2 s to connect), else the second half.
    let join_done = last_join_at.map(|t| t + 2.0).unwrap_or(0.0);
    let mut w0 = raws.iter().position(|r| r.t >= join_done);
    if w0.is_none_or(|i| raws.len() - i < 3) {
        if !raws.is_empty() && opts.viewers > 0 {
            notes.push(
                "the join phase did not finish 2 s before the end: the steady window is the \
                 second half of the run and overlaps joins"
                    .into(),
            );
        }
        w0 = Some(raws.len() / 2);
    }
    let w0 = w0.unwrap_or(0).min(raws.len().saturating_sub(1));
    let (ra, rb) = (raws[w0], *raws.last().expect("one sample"));
    let window_s = (rb.t - ra.t).max(1e-3);
    let delivered = rb.received.saturating_sub(ra.received);
    let d_exp = rb.expected.saturating_sub(ra.expected);
    // Sample i covers (raws[i-1].t, raws[i].t]: the window is samples w0+1..=last.
    let mut window_delay = Histogram::new();
    for h in ivs.iter().skip(w0 + 1) {
        window_delay.merge(h);
    }
    let pct_loss = |exp: u64, rx: u64| {
        if exp > 0 {
            100.0 * exp.saturating_sub(rx) as f64 / exp as f64
        } else {
            0.0
        }
    };
    let ms_list = |f: &dyn Fn(&ViewerResult) -> Option<f64>| -> Vec<f64> {
        viewers.iter().filter_map(f).collect()
    };
    let summary = Summary {
        viewers_requested: opts.viewers,
        answered: viewers.iter().filter(|v| v.answered).count(),
        connected: viewers.iter().filter(|v| v.connected_ms.is_some()).count(),
        with_keyframe: viewers
            .iter()
            .filter(|v| v.first_keyframe_ms.is_some())
            .count(),
        channel_open: viewers.iter().filter(|v| v.channel_ms.is_some()).count(),
        failed: viewers.iter().filter(|v| v.error.is_some()).count(),
        join_ms: quantiles_of(ms_list(&|v| v.first_keyframe_ms)),
        answer_ms: quantiles_of(ms_list(&|v| v.answer_ms)),
        connect_ms: quantiles_of(ms_list(&|v| v.connected_ms)),
        packets_received: agg.received,
        packets_expected: agg.expected,
        loss_pct: pct_loss(agg.expected, agg.received),
        loss_pct_window: pct_loss(d_exp, delivered),
        delay_ms: agg.delay.summary_ms(),
        replayed_packets: agg.replayed,
        rx_without_kernel_ts: agg.rx_without_kernel_ts,
        delay_ms_window: window_delay.summary_ms(),
        audio_jitter_ms_median: quantiles_of(
            viewers
                .iter()
                .filter(|v| v.audio_packets > 1)
                .map(|v| v.audio_jitter_ms)
                .collect(),
        )
        .p50,
        video_jitter_ms_median: quantiles_of(
            viewers
                .iter()
                .filter(|v| v.video_packets > 1)
                .map(|v| v.video_jitter_ms)
                .collect(),
        )
        .p50,
        events_sent: shared.events_sent.load(Ordering::Relaxed),
        event_deliveries: agg.event_delay.count(),
        event_delay_ms: agg.event_delay.summary_ms(),
        buys_sent: agg.buys_sent,
        orders: agg.orders.into_iter().collect(),
        buy_latency_ms: agg.buy_latency.summary_ms(),
        pub_video_packets: shared.video_packets.load(Ordering::Relaxed),
        pub_audio_packets: shared.audio_packets.load(Ordering::Relaxed),
        pub_keyframes: shared.keyframes.load(Ordering::Relaxed),
        pub_keyframe_requests: shared.keyframe_requests.load(Ordering::Relaxed),
        window_s: (ra.t, rb.t),
        delivered_pps_window: delivered as f64 / window_s,
        generator_cpu_s,
        wall_s: started.elapsed().as_secs_f64(),
    };

    // Baseline, in the same session, with as many sockets as viewers connected.
    let mut base_results = Vec::new();
    if !opts.no_baseline {
        let n = summary.connected.max(1);
        let d: Duration = opts.baseline_duration.into();
        say(format!(
            "raw-UDP baseline: {} B datagrams to {n} loopback sockets, {:.1} s per mode",
            opts.payload_size,
            d.as_secs_f64()
        ));
        for mode in [
            baseline::Mode::Sendmmsg { batch: 64 },
            baseline::Mode::SendTo,
        ] {
            match baseline::measure(n, opts.payload_size, mode, d) {
                Ok(r) => base_results.push(r),
                Err(e) => notes.push(format!("baseline {mode:?} failed: {e}")),
            }
        }
    }
    let base_ns = base_results
        .iter()
        .find(|r| matches!(r.mode, baseline::Mode::Sendmmsg { .. }))
        .map(|r| r.cpu_ns_per_packet);

    let server = match (pid, ra.srv, rb.srv, srv_before) {
        (Some(pid), Some(a), Some(b), before) => {
            let cpu_s = b.cpu_s - a.cpu_s;
            let shard_cpu_s = b.shard_cpu_s - a.shard_cpu_s;
            let per = |c: f64| (delivered > 0 && c > 0.0).then(|| c * 1e9 / delivered as f64);
            let cpu_ns = (!in_process).then(|| per(cpu_s)).flatten();
            let shard_ns = (b.shard_threads > 0).then(|| per(shard_cpu_s)).flatten();
            let primary = if in_process { shard_ns } else { cpu_ns };
            let rss_peak = raws
                .iter()
                .filter_map(|r| r.srv)
                .map(|s| s.rss_kib)
                .max()
                .unwrap_or(0);
            let rss_before = before.map(|s| s.rss_kib).unwrap_or(0);
            Some(ServerStats {
                pid,
                found_by: found_by.clone(),
                in_process,
                window_s,
                cpu_s,
                cpu_cores: cpu_s / window_s,
                shard_cpu_s,
                shard_threads: b.shard_threads,
                shard_wait_s: b.shard_wait_s - a.shard_wait_s,
                udp_backlog_max: raws
                    .iter()
                    .filter_map(|r| r.srv)
                    .map(|s| s.udp_rx_queue)
                    .max()
                    .unwrap_or(0),
                delivered_packets: delivered,
                cpu_ns_per_packet: cpu_ns,
                shard_cpu_ns_per_packet: shard_ns,
                packets_per_cpu_second: primary.map(|ns| 1e9 / ns),
                rss_before_mib: mib(rss_before),
                rss_peak_mib: mib(rss_peak),
                kib_per_viewer: (summary.connected > 0 && !in_process)
                    .then(|| rss_peak.saturating_sub(rss_before) as f64 / summary.connected as f64),
                ratio_to_baseline: match (primary, base_ns) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                },
            })
        }
        _ => None,
    };
    if nproc <= 4 && pid.is_some() && !in_process {
        notes.push(format!(
            "{nproc} cores shared by server and generator: throughput is bounded by the \
             generator; compare CPU per delivered packet (from /proc), not packets/s"
        ));
    }
    let targets = report::targets(&summary, server.as_ref());
    let soak = (opts.churn > 0.0 || opts.metrics_url.is_some() || flap.is_some()).then(|| {
        let from = series
            .iter()
            .position(|s| s.t_s >= join_done)
            .unwrap_or(series.len());
        let tail = &series[from..];
        let col =
            |f: fn(&Sample) -> Option<f64>| -> Vec<f64> { tail.iter().filter_map(f).collect() };
        let rss = col(|s| s.server_rss_mib);
        let rss_slack = 2.0 + 0.05 * rss.first().copied().unwrap_or(0.0);
        let outbox = col(|s| s.outbox_pending);
        let outbox_slack = 5.0 + 0.1 * outbox.iter().copied().fold(0.0, f64::max);
        let trends = [
            ("server RSS, MiB", rss, rss_slack),
            (
                "server open files",
                col(|s| s.server_fds.map(|v| v as f64)),
                8.0,
            ),
            (
                "server peers",
                col(|s| s.server_peers),
                2.0 + 0.05 * opts.viewers as f64,
            ),
            ("webhook outbox rows", outbox, outbox_slack),
        ]
        .into_iter()
        .filter_map(|(name, v, slack)| soak::trend(name, &v, slack))
        .collect();
        SoakReport {
            churned,
            webhooks_accepted: flap
                .as_ref()
                .map_or(0, |c| c.accepted.load(Ordering::Relaxed)),
            webhooks_refused: flap
                .as_ref()
                .map_or(0, |c| c.refused.load(Ordering::Relaxed)),
            trends,
        }
    });
    let report = Report {
        machine: Machine { nproc, cpu_model },
        config: RunConfig {
            url: base,
            show: opts.show.clone(),
            viewers: opts.viewers,
            join_rate: opts.join_rate,
            duration_s: duration.as_secs_f64(),
            codec: opts.codec,
            video_kbps: opts.video_kbps,
            fps: opts.fps,
            payload_size: opts.payload_size,
            pacing_factor: opts.pacing_factor,
            simulcast_kbps: simulcast_kbps(&opts),
            buy_rate: opts.buy_rate,
            threads,
            published: opts.token.is_some(),
        },
        summary,
        server,
        baseline: base_results,
        targets,
        series,
        notes,
        viewers,
        soak,
    };
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !opts.quiet {
        println!("{}", report::text(&report));
    }
    if let Some(path) = &opts.report {
        std::fs::write(path, report::html(&report))
            .with_context(|| format!("write {}", path.display()))?;
        say(format!("HTML report: {}", path.display()));
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn join(
    i: usize,
    local_ip: IpAddr,
    whep: &str,
    opts: &Opts,
    h: &signal::Handle,
    inbox: Arc<viewer::Inbox>,
    failures: Arc<Mutex<Vec<ViewerResult>>>,
    locations: Arc<Mutex<Vec<(usize, String)>>>,
    answered: Arc<std::sync::atomic::AtomicUsize>,
    base: &str,
) -> anyhow::Result<()> {
    let sock = UdpSocket::bind(SocketAddr::new(local_ip, 0)).context("viewer socket")?;
    sock.set_nonblocking(true)?;
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(1 << 20);
    let local = sock.local_addr()?;
    let post_at = Instant::now();
    let mut rtc = client::rtc(post_at, local, client::Offer::Any);
    let (offer, pending, _) = client::viewer_offer(&mut rtc);
    // Anonymous viewers get their (signed) id from the server.
    let url = whep.to_string();
    let base = base.to_string();
    h.submit(
        Req::Post {
            url,
            token: opts.viewer_token.clone(),
            sdp: offer.to_sdp_string(),
        },
        move |r| match r {
            Ok(resp) if resp.status == 201 => {
                answered.fetch_add(1, Ordering::Relaxed);
                if let Some(l) = &resp.location {
                    locations.lock().push((i, signal::absolute(&base, l)));
                }
                let nv = NewViewer {
                    index: i,
                    rtc,
                    sock,
                    pending,
                    answer: resp.body,
                    post_at,
                    answer_at: Instant::now(),
                };
                if inbox.tx.send(nv).is_ok() {
                    let _ = inbox.waker.wake();
                }
            }
            Ok(resp) => failures.lock().push(ViewerResult {
                index: i,
                error: Some(format!(
                    "WHEP POST: HTTP {}: {}",
                    resp.status,
                    resp.body.trim().chars().take(200).collect::<String>()
                )),
                ..Default::default()
            }),
            Err(e) => failures.lock().push(ViewerResult {
                index: i,
                error: Some(format!("WHEP POST: {e:#}")),
                ..Default::default()
            }),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_and_urls() {
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(
            host_port("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            host_port("https://sfu.example.com/x").unwrap(),
            ("sfu.example.com".into(), 443)
        );
        assert_eq!(host_port("http://[::1]:9/").unwrap(), ("::1".into(), 9));
        assert!(host_port("ftp://x").is_err());
    }
}
