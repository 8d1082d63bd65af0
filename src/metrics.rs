//! Prometheus metrics, served on their own listener.
//!
//! Hot-path counters are `IntCounter` handles resolved once per shard (an atomic add each, no
//! lookup, no lock). Names follow `hawker_<subsystem>_<name>_<unit|total>`, except the
//! standard `process_*` metrics (CPU, memory, file descriptors; read from `/proc` at scrape
//! time on Linux).
//!
//! Label sets stay bounded: per-show series (`hawker_highlights_total`,
//! `hawker_highlight_buys_total`) carry the show only, never a sku, and are removed when the
//! show ends or is deleted ([`Metrics::forget_show`]).

use std::sync::Arc;

use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    peers: IntGaugeVec,
    packets_in: IntCounterVec,
    packets_out: IntCounterVec,
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    forwarded: IntCounterVec,
    dropped: IntCounterVec,
    garbage: IntCounterVec,
    send_errors: IntCounterVec,
    nacks: IntCounterVec,
    plis_from_viewers: IntCounterVec,
    plis_to_publishers: IntCounterVec,
    keyframes_in: IntCounterVec,
    cache_starts: IntCounterVec,
    dc_in: IntCounterVec,
    dc_out: IntCounterVec,
    dc_dropped: IntCounterVec,
    dtls_failures: IntCounterVec,
    layer_in: IntCounterVec,
    layer_viewers: IntGaugeVec,
    switches: IntCounterVec,
    ignored: IntCounterVec,
    layers_silent: IntCounterVec,
    bwe_estimate: HistogramVec,
    dc_refused: IntCounterVec,
    shard_panics: IntCounterVec,
    ice_timeouts: IntCounterVec,
    /// Shards whose thread has stopped (0 when healthy); `/healthz` fails while it is not 0.
    pub shards_dead: IntGauge,
    /// Sessions ended because the shard holding their peer stopped.
    pub sessions_lost: IntCounter,
    /// Inbound data-channel messages dropped because the peer's in-order queue was full.
    pub dc_queue_dropped: IntCounter,
    /// Shows with a publisher connected.
    pub shows_live: IntGauge,
    /// HTTP signalling requests by endpoint and status.
    pub http_requests: IntCounterVec,
    /// Orders by status.
    pub orders: IntCounterVec,
    /// Buys refused by a rate limit, by scope (viewer, show, ip).
    pub buys_limited: IntCounterVec,
    /// Commerce events fanned out to viewers.
    pub events_fanned_out: IntCounterVec,
    /// Time from an event's cause (seller message / API call) to its hand-off to the shards.
    pub event_fanout_seconds: Histogram,
    /// Confirmed orders attributed to a highlight, by show.
    pub highlight_buys: IntCounterVec,
    /// Highlights shown, by show.
    pub highlights: IntCounterVec,
    /// WHIP/WHEP POST → answer latency.
    pub signalling_seconds: HistogramVec,
    /// Open connections on the public HTTP listener.
    pub http_connections: IntGauge,
    /// Connections closed on accept because `http.max_connections` was reached.
    pub http_connections_refused: IntCounter,
    /// Webhook events not yet delivered to every endpoint (and not dead), set at scrape time.
    pub webhook_outbox_pending: IntGauge,
    /// Bytes appended to show recordings (media records and event lines).
    pub recording_bytes: IntCounter,
    /// Packets or events not recorded (writer queue full, disk error).
    pub recording_dropped: IntCounter,
    /// Recording exports served.
    pub recording_exports: IntCounter,
    /// Viewers watching a replay now.
    pub replay_viewers: IntGauge,
    /// Webhook events given up on (dead letters), set at scrape time.
    pub webhook_outbox_dead: IntGauge,
    /// WHIP sessions that replaced the same subject's previous session (lost DELETE).
    pub publishers_replaced: IntCounter,
    /// WHIP/WHEP sessions refused with 429, by cap (`ip`, `show`).
    pub sessions_capped: IntCounterVec,
    /// Anonymous WHEPs refused because `?viewer=` was not an id this server signed.
    pub anon_ids_refused: IntCounter,
    /// Requests on the public listener refused because they carried an admin token while
    /// `http.admin_listen` is set.
    pub admin_tokens_refused: IntCounter,
    process: Process,
}

/// `process_*` metrics, refreshed at scrape time.
#[derive(Clone)]
struct Process {
    cpu: Counter,
    rss: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    /// Serialises refreshes: the CPU counter is advanced by the difference since the last one.
    lock: Arc<parking_lot::Mutex<()>>,
}

impl Process {
    fn new(r: &Registry) -> Process {
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "User and system CPU time of the process, seconds",
        )
        .expect("valid metric");
        r.register(Box::new(cpu.clone())).expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        Process {
            cpu,
            rss: gauge("process_resident_memory_bytes", "Resident set size, bytes"),
            open_fds: gauge("process_open_fds", "Open file descriptors"),
            max_fds: gauge("process_max_fds", "Soft limit on open file descriptors"),
            lock: Arc::default(),
        }
    }

    #[cfg(target_os = "linux")]
    fn refresh(&self) {
        let _one = self.lock.lock();
        if let Some((ticks, rss_pages)) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            // SAFETY: sysconf only reads a constant.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if hz > 0 {
                let secs = ticks as f64 / hz as f64;
                let delta = secs - self.cpu.get();
                if delta > 0.0 {
                    self.cpu.inc_by(delta);
                }
            }
            if page > 0 {
                self.rss.set(rss_pages as f64 * page as f64);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // One of them is the directory handle itself.
            self.open_fds.set(dir.count().saturating_sub(1) as f64);
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            self.max_fds.set(lim.rlim_cur as f64);
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn refresh(&self) {}
}

/// utime + stime (clock ticks) and rss (pages) from `/proc/self/stat`. The command name (field
/// 2) may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is f[0], so field n is f[n - 3].
    let utime: u64 = f.get(14 - 3)?.parse().ok()?;
    let stime: u64 = f.get(15 - 3)?.parse().ok()?;
    let rss: u64 = f.get(24 - 3)?.parse().ok()?;
    Some((utime + stime, rss))
}

/// One shard's resolved counters.
#[derive(Clone)]
pub struct ShardMetrics {
    /// Publishers on the shard (connected or connecting).
    pub publishers: IntGauge,
    /// Viewers on the shard (connected or connecting).
    pub viewers: IntGauge,
    /// Peers dropped because their ICE never succeeded (`media.ice_timeout`).
    pub ice_timeouts: IntCounter,
    /// Media packets received from publishers.
    pub packets_in: IntCounter,
    /// UDP datagrams sent.
    pub packets_out: IntCounter,
    /// UDP bytes received.
    pub bytes_in: IntCounter,
    /// UDP bytes sent.
    pub bytes_out: IntCounter,
    /// RTP packets written to viewers.
    pub forwarded: IntCounter,
    /// Packets not sent to a viewer (waiting for keyframe, codec).
    pub dropped: IntCounter,
    /// Datagrams nobody accepts, or that fail to parse.
    pub garbage: IntCounter,
    /// Failed socket sends.
    pub send_errors: IntCounter,
    /// NACKs received from viewers.
    pub nacks: IntCounter,
    /// PLI/FIR received from viewers.
    pub plis_from_viewers: IntCounter,
    /// PLIs sent to publishers.
    pub plis_to_publishers: IntCounter,
    /// Keyframes received from publishers.
    pub keyframes_in: IntCounter,
    /// Viewers started from the keyframe cache.
    pub keyframe_cache_starts: IntCounter,
    /// Data-channel messages received.
    pub dc_messages_in: IntCounter,
    /// Data-channel messages sent.
    pub dc_messages_out: IntCounter,
    /// Data-channel messages dropped (send buffer full).
    pub dc_dropped: IntCounter,
    /// Peers dropped because their DTLS handshake cannot succeed, by `reason`
    /// ([`crate::engine::dtls::Failure`]); rare, so the label is resolved when counted.
    pub dtls_failures: IntCounterVec,
    /// Video packets received per simulcast layer.
    pub layer_in: [IntCounter; 3],
    /// Viewers receiving each layer.
    pub layer_viewers: [IntGauge; 3],
    /// Layer switches up, down.
    pub switches: [IntCounter; 2],
    /// Publisher video packets not used: unknown rid, rid reused, layer not on the clock yet.
    pub ignored: [IntCounter; 4],
    /// Simulcast layers a publisher declared that never sent a packet.
    pub layers_silent: IntCounter,
    /// Viewers' bandwidth estimates, bits/s.
    pub bwe_estimate: Histogram,
    /// Inbound data-channel messages refused in the shard: over the size limit.
    pub dc_refused_too_large: IntCounter,
    /// Inbound data-channel messages refused in the shard: over the peer's rate.
    pub dc_refused_rate: IntCounter,
    /// Panics caught in a peer operation (the peer was dropped).
    pub panics: IntCounter,
}

impl ShardMetrics {
    /// The shard's thread is gone with its peers: its peer gauges go to zero.
    pub fn clear_peers(&self) {
        self.publishers.set(0);
        self.viewers.set(0);
        for g in &self.layer_viewers {
            g.set(0);
        }
    }

    /// Video packets in, for a layer.
    pub fn layer_packets_in(&self, layer: u8) -> &IntCounter {
        &self.layer_in[(layer as usize).min(2)]
    }

    /// Viewers on a layer.
    pub fn viewers_on_layer(&self, layer: u8) -> &IntGauge {
        &self.layer_viewers[(layer as usize).min(2)]
    }

    /// Layer switches, `up` or `down`.
    pub fn layer_switches(&self, dir: &str) -> &IntCounter {
        &self.switches[usize::from(dir != "up")]
    }

    /// Ignored publisher packets by reason (`unknown_rid`, `rid_reused`, `no_sender_report`,
    /// `unknown_ssrc`).
    pub fn simulcast_ignored(&self, reason: &str) -> &IntCounter {
        let i = IGNORED_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        &self.ignored[i]
    }
}

const IGNORED_REASONS: [&str; 4] = [
    "unknown_rid",
    "rid_reused",
    "no_sender_report",
    "unknown_ssrc",
];

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let peers = IntGaugeVec::new(
            Opts::new(
                "hawker_peers",
                "Connected and connecting peers by role and shard",
            ),
            &["role", "shard"],
        )
        .expect("valid metric");
        r.register(Box::new(peers.clone())).expect("unique metric");
        let shows_live = IntGauge::new("hawker_shows_live", "Shows with a publisher connected")
            .expect("valid metric");
        r.register(Box::new(shows_live.clone()))
            .expect("unique metric");
        let fanout = Histogram::with_opts(
            HistogramOpts::new(
                "hawker_events_fanout_seconds",
                "Time from a commerce event's arrival to its hand-off to every shard",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(fanout.clone())).expect("unique metric");
        let signalling = HistogramVec::new(
            HistogramOpts::new(
                "hawker_signalling_seconds",
                "WHIP/WHEP offer to answer latency",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        r.register(Box::new(signalling.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let replay_viewers = gauge(
            "hawker_replay_viewers",
            "Viewers watching a recorded show (replay) now",
        );
        let http_connections = gauge(
            "hawker_http_connections",
            "Open connections on the public HTTP listener",
        );
        let webhook_outbox_pending = gauge(
            "hawker_webhook_outbox_pending",
            "Webhook events not yet acknowledged by every endpoint",
        );
        let webhook_outbox_dead = gauge(
            "hawker_webhook_outbox_dead",
            "Webhook events given up after commerce.webhook_dead_after (dead letters)",
        );
        let http_connections_refused = IntCounter::new(
            "hawker_http_connections_refused_total",
            "Connections closed on accept because http.max_connections was reached",
        )
        .expect("valid metric");
        r.register(Box::new(http_connections_refused.clone()))
            .expect("unique metric");
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let recording_bytes = plain(
            "hawker_recording_bytes_total",
            "Bytes appended to show recordings (media records and event lines)",
        );
        let recording_dropped = plain(
            "hawker_recording_dropped_total",
            "Packets or events not recorded because the writer queue was full or the disk failed",
        );
        let recording_exports = plain(
            "hawker_recording_exports_total",
            "Recording exports (WebM/MP4 files) served",
        );
        let build_info = IntGaugeVec::new(
            Opts::new(
                "hawker_build_info",
                "Always 1; the labels say which build is running",
            ),
            &["version"],
        )
        .expect("valid metric");
        r.register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let shards_dead = gauge(
            "hawker_shards_dead",
            "Shard threads that have stopped; /healthz fails while this is not 0",
        );
        let sessions_lost = plain(
            "hawker_sessions_lost_total",
            "WHIP/WHEP sessions ended because the shard holding their peer stopped",
        );
        let dc_queue_dropped = plain(
            "hawker_datachannel_queue_dropped_total",
            "Inbound data-channel messages dropped because the peer's in-order queue was full",
        );
        let layer_viewers = IntGaugeVec::new(
            Opts::new(
                "hawker_media_layer_viewers",
                "Viewers receiving each simulcast layer (0 is the lowest), by shard",
            ),
            &["shard", "layer"],
        )
        .expect("valid metric");
        r.register(Box::new(layer_viewers.clone()))
            .expect("unique metric");
        let bwe_estimate = HistogramVec::new(
            HistogramOpts::new(
                "hawker_media_bwe_estimate_bps",
                "Viewers' bandwidth estimates (str0m TWCC), bits/s, one sample per estimate update",
            )
            .buckets(vec![
                100e3, 200e3, 300e3, 500e3, 750e3, 1e6, 1.5e6, 2e6, 3e6, 5e6, 10e6,
            ]),
            &["shard"],
        )
        .expect("valid metric");
        r.register(Box::new(bwe_estimate.clone()))
            .expect("unique metric");
        let publishers_replaced = plain(
            "hawker_publishers_replaced_total",
            "WHIP sessions that replaced a previous session of the same token subject",
        );
        let anon_ids_refused = plain(
            "hawker_anon_viewer_ids_refused_total",
            "Anonymous WHEPs refused because ?viewer= was not an id this server signed",
        );
        let admin_tokens_refused = plain(
            "hawker_admin_tokens_refused_total",
            "Requests on the public listener refused for an admin token (http.admin_listen is set)",
        );
        let process = Process::new(&r);
        let s = &["shard"];
        Metrics {
            process,
            anon_ids_refused,
            admin_tokens_refused,
            sessions_capped: counter(&r, "hawker_sessions_capped_total", "WHIP/WHEP sessions refused with 429, by cap (ip: http.max_sessions_per_ip, show: http.max_viewers_per_show)", &["cap"]),
            publishers_replaced,
            layer_viewers,
            bwe_estimate,
            layer_in: counter(&r, "hawker_media_layer_packets_in_total", "Video packets received from publishers, by simulcast layer (0 is the lowest)", &["shard", "layer"]),
            switches: counter(&r, "hawker_media_layer_switches_total", "Viewer layer switches, by direction (up/down)", &["shard", "direction"]),
            layers_silent: counter(&r, "hawker_media_simulcast_layers_silent_total", "Simulcast layers a publisher declared (a=rid) that sent no packet within 5 s of its first video packet; never chosen for a viewer", s),
            ignored: counter(&r, "hawker_media_simulcast_ignored_total", "Publisher video packets not forwarded: unknown_rid, rid_reused (a second SSRC for one rid), no_sender_report (layer not yet on the show clock), unknown_ssrc (not in the offer's ssrc-group:SIM)", &["shard", "reason"]),
            shards_dead,
            sessions_lost,
            dc_queue_dropped,
            dc_refused: counter(&r, "hawker_datachannel_messages_refused_total", "Inbound data-channel messages refused in the shard before any copy, by reason (too_large, rate_limited)", &["shard", "reason"]),
            shard_panics: counter(&r, "hawker_shard_panics_total", "Panics caught in a shard's peer operations (the peer was dropped)", s),
            ice_timeouts: counter(&r, "hawker_ice_timeouts_total", "Peers dropped because their ICE never succeeded within media.ice_timeout", s),
            http_connections,
            http_connections_refused,
            webhook_outbox_pending,
            webhook_outbox_dead,
            recording_bytes,
            recording_dropped,
            recording_exports,
            replay_viewers,
            peers,
            packets_in: counter(&r, "hawker_media_packets_in_total", "RTP packets received from publishers", s),
            packets_out: counter(&r, "hawker_media_datagrams_out_total", "UDP datagrams sent", s),
            bytes_in: counter(&r, "hawker_media_bytes_in_total", "UDP bytes received", s),
            bytes_out: counter(&r, "hawker_media_bytes_out_total", "UDP bytes sent", s),
            forwarded: counter(&r, "hawker_media_packets_forwarded_total", "RTP packets written to viewers", s),
            dropped: counter(&r, "hawker_media_packets_dropped_total", "Packets not sent to a viewer (waiting for a keyframe, codec not negotiated)", s),
            garbage: counter(&r, "hawker_media_garbage_total", "Datagrams dropped: unknown source, unparsable, or unusable payload type", s),
            send_errors: counter(&r, "hawker_media_send_errors_total", "Failed UDP sends", s),
            nacks: counter(&r, "hawker_media_nacks_total", "NACKs received from viewers (answered by str0m from the send buffer over RTX when the viewer negotiated it)", s),
            plis_from_viewers: counter(&r, "hawker_media_viewer_keyframe_requests_total", "PLI/FIR received from viewers", s),
            plis_to_publishers: counter(&r, "hawker_media_publisher_plis_total", "PLIs sent to publishers (coalesced, throttled)", s),
            keyframes_in: counter(&r, "hawker_media_keyframes_in_total", "Keyframes received from publishers", s),
            cache_starts: counter(&r, "hawker_media_keyframe_cache_starts_total", "Viewers started from the cached keyframe instead of a PLI", s),
            dc_in: counter(&r, "hawker_datachannel_messages_in_total", "Data-channel messages received", s),
            dc_out: counter(&r, "hawker_datachannel_messages_out_total", "Data-channel messages sent", s),
            dc_dropped: counter(&r, "hawker_datachannel_messages_dropped_total", "Data-channel messages dropped because the peer's send buffer was full", s),
            dtls_failures: {
                let c = counter(&r, "hawker_dtls_failures_total", "Peers dropped because their DTLS handshake cannot succeed: reason=cipher (no common cipher suite, group or version), certificate (certificate type or signature not usable), fingerprint (certificate does not match the SDP)", &["reason"]);
                for f in crate::engine::dtls::Failure::ALL {
                    c.with_label_values(&[f.as_str()]);
                }
                c
            },
            shows_live,
            http_requests: counter(&r, "hawker_http_requests_total", "HTTP requests by route and status", &["route", "status"]),
            orders: counter(&r, "hawker_orders_total", "Buy requests answered, by status", &["status"]),
            buys_limited: counter(&r, "hawker_buys_limited_total", "Buys refused with rate_limited, by the limit that refused them (viewer: commerce.buys_per_minute, show: commerce.buys_per_minute_per_show, ip: commerce.buys_per_minute_per_ip)", &["scope"]),
            events_fanned_out: counter(&r, "hawker_events_fanned_out_total", "Commerce events sent to viewers, by type", &["type"]),
            event_fanout_seconds: fanout,
            highlight_buys: counter(&r, "hawker_highlight_buys_total", "Confirmed orders placed from the current highlight, by show (per sku: the orders API)", &["show"]),
            highlights: counter(&r, "hawker_highlights_total", "Highlights shown, by show", &["show"]),
            signalling_seconds: signalling,
            registry: r,
        }
    }

    /// Drop a show's per-show series (it ended or was deleted), so label sets do not grow
    /// with every show ever run.
    pub fn forget_show(&self, show: &str) {
        let _ = self.highlights.remove_label_values(&[show]);
        let _ = self.highlight_buys.remove_label_values(&[show]);
    }

    /// Resolve a shard's counters once.
    pub fn shard(&self, i: usize) -> ShardMetrics {
        let l = i.to_string();
        let l = [l.as_str()];
        ShardMetrics {
            publishers: self.peers.with_label_values(&["publisher", l[0]]),
            viewers: self.peers.with_label_values(&["viewer", l[0]]),
            ice_timeouts: self.ice_timeouts.with_label_values(&l),
            packets_in: self.packets_in.with_label_values(&l),
            packets_out: self.packets_out.with_label_values(&l),
            bytes_in: self.bytes_in.with_label_values(&l),
            bytes_out: self.bytes_out.with_label_values(&l),
            forwarded: self.forwarded.with_label_values(&l),
            dropped: self.dropped.with_label_values(&l),
            garbage: self.garbage.with_label_values(&l),
            send_errors: self.send_errors.with_label_values(&l),
            nacks: self.nacks.with_label_values(&l),
            plis_from_viewers: self.plis_from_viewers.with_label_values(&l),
            plis_to_publishers: self.plis_to_publishers.with_label_values(&l),
            keyframes_in: self.keyframes_in.with_label_values(&l),
            keyframe_cache_starts: self.cache_starts.with_label_values(&l),
            dc_messages_in: self.dc_in.with_label_values(&l),
            dc_messages_out: self.dc_out.with_label_values(&l),
            dc_dropped: self.dc_dropped.with_label_values(&l),
            dtls_failures: self.dtls_failures.clone(),
            layer_in: std::array::from_fn(|i| {
                self.layer_in.with_label_values(&[l[0], &i.to_string()])
            }),
            layer_viewers: std::array::from_fn(|i| {
                self.layer_viewers
                    .with_label_values(&[l[0], &i.to_string()])
            }),
            switches: [
                self.switches.with_label_values(&[l[0], "up"]),
                self.switches.with_label_values(&[l[0], "down"]),
            ],
            ignored: std::array::from_fn(|i| {
                self.ignored.with_label_values(&[l[0], IGNORED_REASONS[i]])
            }),
            layers_silent: self.layers_silent.with_label_values(&l),
            bwe_estimate: self.bwe_estimate.with_label_values(&l),
            dc_refused_too_large: self.dc_refused.with_label_values(&[l[0], "too_large"]),
            dc_refused_rate: self.dc_refused.with_label_values(&[l[0], "rate_limited"]),
            panics: self.shard_panics.with_label_values(&l),
        }
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        self.process.refresh();
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let stat = "4242 (hawker (shard) 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 \
                    123456789 3000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((300, 3000)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn ended_shows_leave_no_series() {
        let m = Metrics::new();
        m.highlights.with_label_values(&["a"]).inc();
        m.highlight_buys.with_label_values(&["a"]).inc();
        m.highlights.with_label_values(&["b"]).inc();
        m.forget_show("a");
        let text = m.render();
        assert!(!text.contains("show=\"a\""), "{text}");
        assert!(text.contains("hawker_highlights_total{show=\"b\"} 1"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
