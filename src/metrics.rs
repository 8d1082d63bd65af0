//! Prometheus metrics, served on their own listener.
//!
//! Hot-path counters are `IntCounter` handles resolved once per shard (an atomic add each, no
//! lookup, no lock). Names follow `hawker_<subsystem>_<name>_<unit|total>`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    dc_refused: IntCounterVec,
    shard_panics: IntCounterVec,
    /// Shards whose thread has stopped (0 when healthy); `/healthz` fails while it is not 0.
    pub shards_dead: IntGauge,
    /// Inbound data-channel messages dropped because the peer's in-order queue was full.
    pub dc_queue_dropped: IntCounter,
    /// Shows with a publisher connected.
    pub shows_live: IntGauge,
    /// HTTP signalling requests by endpoint and status.
    pub http_requests: IntCounterVec,
    /// Orders by status.
    pub orders: IntCounterVec,
    /// Commerce events fanned out to viewers.
    pub events_fanned_out: IntCounterVec,
    /// Time from an event's cause (seller message / API call) to its hand-off to the shards.
    pub event_fanout_seconds: Histogram,
    /// Confirmed orders attributed to a highlight, by show and sku.
    pub highlight_buys: IntCounterVec,
    /// Highlights shown, by show and sku.
    pub highlights: IntCounterVec,
    /// WHIP/WHEP POST → answer latency.
    pub signalling_seconds: HistogramVec,
    /// Open connections on the public HTTP listener.
    pub http_connections: IntGauge,
    /// Connections closed on accept because `http.max_connections` was reached.
    pub http_connections_refused: IntCounter,
    /// Webhook events not yet delivered to every endpoint (and not dead), set at scrape time.
    pub webhook_outbox_pending: IntGauge,
}

/// One shard's resolved counters.
#[derive(Clone)]
pub struct ShardMetrics {
    /// Publishers on the shard (connected or connecting).
    pub publishers: IntGauge,
    /// Viewers on the shard (connected or connecting).
    pub viewers: IntGauge,
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
    /// Inbound data-channel messages refused in the shard: over the size limit.
    pub dc_refused_too_large: IntCounter,
    /// Inbound data-channel messages refused in the shard: over the peer's rate.
    pub dc_refused_rate: IntCounter,
    /// Panics caught in a peer operation (the peer was dropped).
    pub panics: IntCounter,
}

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
        let http_connections = gauge(
            "hawker_http_connections",
            "Open connections on the public HTTP listener",
        );
        let webhook_outbox_pending = gauge(
            "hawker_webhook_outbox_pending",
            "Webhook events not yet acknowledged by every endpoint",
        );
        let http_connections_refused = IntCounter::new(
            "hawker_http_connections_refused_total",
            "Connections closed on accept because http.max_connections was reached",
        )
        .expect("valid metric");
        r.register(Box::new(http_connections_refused.clone()))
            .expect("unique metric");
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
        let dc_queue_dropped = IntCounter::new(
            "hawker_datachannel_queue_dropped_total",
            "Inbound data-channel messages dropped because the peer's in-order queue was full",
        )
        .expect("valid metric");
        r.register(Box::new(dc_queue_dropped.clone()))
            .expect("unique metric");
        let s = &["shard"];
        Metrics {
            shards_dead,
            dc_queue_dropped,
            dc_refused: counter(&r, "hawker_datachannel_messages_refused_total", "Inbound data-channel messages refused in the shard before any copy, by reason (too_large, rate_limited)", &["shard", "reason"]),
            shard_panics: counter(&r, "hawker_shard_panics_total", "Panics caught in a shard's peer operations (the peer was dropped)", s),
            http_connections,
            http_connections_refused,
            webhook_outbox_pending,
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
            shows_live,
            http_requests: counter(&r, "hawker_http_requests_total", "HTTP requests by route and status", &["route", "status"]),
            orders: counter(&r, "hawker_orders_total", "Buy requests answered, by status", &["status"]),
            events_fanned_out: counter(&r, "hawker_events_fanned_out_total", "Commerce events sent to viewers, by type", &["type"]),
            event_fanout_seconds: fanout,
            highlight_buys: counter(&r, "hawker_highlight_buys_total", "Confirmed orders placed while a product was highlighted (conversion per highlight)", &["show", "sku"]),
            highlights: counter(&r, "hawker_highlights_total", "Highlights shown", &["show", "sku"]),
            signalling_seconds: signalling,
            registry: r,
        }
    }

    /// Resolve a shard's counters once.
    pub fn shard(&self, i: usize) -> ShardMetrics {
        let l = i.to_string();
        let l = [l.as_str()];
        ShardMetrics {
            publishers: self.peers.with_label_values(&["publisher", l[0]]),
            viewers: self.peers.with_label_values(&["viewer", l[0]]),
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
            dc_refused_too_large: self.dc_refused.with_label_values(&[l[0], "too_large"]),
            dc_refused_rate: self.dc_refused.with_label_values(&[l[0], "rate_limited"]),
            panics: self.shard_panics.with_label_values(&l),
        }
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
