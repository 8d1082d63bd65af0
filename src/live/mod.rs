//! Live commerce on the `events` data channel: snapshots, highlights, prices, stock, buys and
//! questions, stamped with the show's video clock.
//!
//! Everything here runs on the control plane (tokio). The media shards only carry text: an
//! event is serialised once and handed to every shard as one shared `Arc<str>`
//! ([`crate::engine::Engine::broadcast_text`]), so the `rtp_ts` is identical for every viewer
//! by construction.

pub mod clock;
pub mod protocol;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::app::App;
use crate::commerce::{self, OrderRequest, OrderStatus, RateLimiter};
use crate::engine::{PeerId, Role};
use crate::shows::Session;
use protocol::{ErrorCode, Inbound};

/// The product currently shown.
#[derive(Debug, Clone)]
pub struct Highlight {
    /// `h-<n>`, unique per show and server run.
    pub id: String,
    /// Product.
    pub sku: String,
    /// Video timestamp at which it took effect.
    pub rtp_ts: Option<u32>,
}

/// Per-show live state.
#[derive(Debug, Default)]
struct ShowState {
    highlight: Option<Highlight>,
    highlights: u64,
    /// Confirmed sales in the last minute: (when, sku, qty).
    recent: VecDeque<(Instant, String, u32)>,
    /// Skus with sales since the last `sold` message.
    sold_dirty: Vec<String>,
}

/// Inbound messages a peer may have waiting for the control plane; more are dropped (and
/// counted in `hawker_datachannel_queue_dropped_total`). The shard's rate limit keeps a
/// well-behaved peer far below this.
pub const INBOX_CAPACITY: usize = 32;

/// One bounded queue per peer, each drained by one task: a peer's messages are handled one at
/// a time, in the order the shard received them (a `highlight` and the `unhighlight` right
/// after it cannot swap), while different peers proceed in parallel.
#[derive(Default)]
pub struct Inboxes {
    queues: Mutex<HashMap<PeerId, tokio::sync::mpsc::Sender<String>>>,
}

impl Inboxes {
    /// Queue a message of `peer`, starting its task on the first one. False if it was dropped.
    pub fn push(&self, app: &Arc<App>, peer: PeerId, text: String) -> bool {
        let mut queues = self.queues.lock();
        let tx = queues.entry(peer).or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(INBOX_CAPACITY);
            let app = app.clone();
            tokio::spawn(async move {
                while let Some(text) = rx.recv().await {
                    on_text(app.clone(), peer, text).await;
                }
            });
            tx
        });
        match tx.try_send(text) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                app.metrics.dc_queue_dropped.inc();
                false
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                queues.remove(&peer);
                false
            }
        }
    }

    /// The peer is gone: its task ends once it has handled what is queued.
    pub fn close(&self, peer: PeerId) {
        self.queues.lock().remove(&peer);
    }

    /// Peers with a queue (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.queues.lock().len()
    }

    /// No peer has a queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which buy limit refused a buy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyLimit {
    /// `commerce.buys_per_minute`, per viewer and show.
    Viewer,
    /// `commerce.buys_per_minute_per_show`.
    Show,
    /// `commerce.buys_per_minute_per_ip`.
    Ip,
}

impl BuyLimit {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BuyLimit::Viewer => "viewer",
            BuyLimit::Show => "show",
            BuyLimit::Ip => "ip",
        }
    }

    fn message(self, wait: Duration) -> String {
        let ms = wait.as_millis().min(60_000);
        match self {
            BuyLimit::Viewer => format!("too many buys; retry in {ms} ms"),
            BuyLimit::Show => format!("too many buys in this show; retry in {ms} ms"),
            BuyLimit::Ip => format!("too many buys from this address; retry in {ms} ms"),
        }
    }
}

/// Live commerce state of the whole server.
pub struct State {
    /// The per-peer inbound queues.
    pub inboxes: Inboxes,
    shows: Mutex<HashMap<String, ShowState>>,
    buys: Mutex<RateLimiter<String>>,
    buys_per_show: Option<Mutex<RateLimiter<Arc<str>>>>,
    buys_per_ip: Option<Mutex<RateLimiter<std::net::IpAddr>>>,
    questions: Mutex<RateLimiter<String>>,
}

/// Where a seller action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The seller's data channel.
    Seller,
    /// `POST /api/v1/shows/{show}/events`.
    Api,
}

impl State {
    /// Fresh state with the configured rate limits.
    pub fn new(cfg: &crate::config::Commerce) -> State {
        fn per_min<K: std::hash::Hash + Eq + Clone>(n: u32) -> RateLimiter<K> {
            RateLimiter::new(n as f64 / 60.0, n.max(1), 1_000_000)
        }
        State {
            inboxes: Inboxes::default(),
            shows: Mutex::new(HashMap::new()),
            buys: Mutex::new(per_min(cfg.buys_per_minute)),
            buys_per_show: (cfg.buys_per_minute_per_show > 0)
                .then(|| Mutex::new(per_min(cfg.buys_per_minute_per_show))),
            buys_per_ip: (cfg.buys_per_minute_per_ip > 0)
                .then(|| Mutex::new(per_min(cfg.buys_per_minute_per_ip))),
            questions: Mutex::new(per_min(cfg.questions_per_minute)),
        }
    }

    /// Take a buy token from every limit that applies to this session: the viewer's own, the
    /// show's and the client address's. Which one refused, and when to retry, if one did.
    pub fn admit_buy(&self, s: &Session, now: Instant) -> Result<(), (BuyLimit, Duration)> {
        let key = format!("{}/{}", s.show.id, s.sub);
        self.buys
            .lock()
            .check(&key, now)
            .map_err(|w| (BuyLimit::Viewer, w))?;
        if let Some(l) = &self.buys_per_show {
            l.lock()
                .check(&s.show.id, now)
                .map_err(|w| (BuyLimit::Show, w))?;
        }
        if let (Some(l), Some(ip)) = (&self.buys_per_ip, s.ip) {
            l.lock().check(&ip, now).map_err(|w| (BuyLimit::Ip, w))?;
        }
        Ok(())
    }

    /// The current highlight of a show.
    pub fn highlight(&self, show: &str) -> Option<Highlight> {
        self.shows
            .lock()
            .get(show)
            .and_then(|s| s.highlight.clone())
    }
}

fn product_json(p: &commerce::Product) -> Value {
    json!({
        "sku": p.sku, "title": p.title, "price": p.price, "currency": p.currency,
        "image_url": p.image_url, "stock": p.stock,
    })
}

/// Send one message to one peer.
fn reply(app: &App, s: &Session, text: String) {
    app.engine.send_text(s.shard, s.peer, Arc::from(text));
}

/// Send one message to every viewer of a show, once serialised.
pub fn broadcast(app: &App, show: &str, ty: &'static str, text: String, started: Instant) {
    let Some(sh) = app.registry.show(show) else {
        return;
    };
    let text: Arc<str> = Arc::from(text);
    if ty != "viewers" {
        app.record_event(&sh, &text);
    }
    app.engine.broadcast_text(&sh.id, text);
    app.metrics.events_fanned_out.with_label_values(&[ty]).inc();
    app.metrics
        .event_fanout_seconds
        .observe(started.elapsed().as_secs_f64());
}

/// Send to the seller (publisher session) of a show, if connected.
fn to_seller(app: &App, show: &str, text: String) {
    let Some(sh) = app.registry.show(show) else {
        return;
    };
    let Some(sid) = sh.publisher.lock().clone() else {
        return;
    };
    if let Some(s) = app.registry.session(&sid) {
        reply(app, &s, text);
    }
}

/// The `snapshot` message for a show.
pub async fn snapshot(app: &App, show: &str) -> String {
    let products = app.store.products(show).await.unwrap_or_default();
    let stored = app.store.show(show).await.ok().flatten();
    let sh = app.registry.show(show);
    let hl = app.live.highlight(show);
    let now_ts = sh.as_ref().and_then(|s| s.clock.latest());
    json!({
        "type": "snapshot",
        "v": protocol::VERSION,
        "show": {
            "id": show,
            "title": stored.as_ref().map(|s| s.title.clone()).unwrap_or_else(|| show.to_string()),
            "state": stored.as_ref().map(|s| s.state.as_str()).unwrap_or("scheduled"),
            "viewers": sh.as_ref().map(|s| s.viewers.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0),
        },
        "products": products.iter().map(product_json).collect::<Vec<_>>(),
        "highlight": hl.map(|h| json!({"highlight_id": h.id, "sku": h.sku, "rtp_ts": h.rtp_ts})),
        "rtp_ts": now_ts,
    })
    .to_string()
}

/// The `events` channel of a peer opened: greet it.
pub async fn on_channel_open(app: Arc<App>, peer: PeerId) {
    let Some(s) = app.registry.session_of_peer(peer) else {
        return;
    };
    let mut text = snapshot(&app, &s.show.id).await;
    if let Some(r) = app.replays.get(peer) {
        text = r.greeting.clone();
    }
    app.engine.greet(s.shard, s.peer, Arc::from(text));
}

/// A text message arrived on a peer's `events` channel.
pub async fn on_text(app: Arc<App>, peer: PeerId, text: String) {
    let Some(s) = app.registry.session_of_peer(peer) else {
        return;
    };
    let msg = match protocol::parse(&text) {
        Ok(m) => m,
        Err(rej) => return reply(&app, &s, rej.to_json()),
    };
    let seller = s.role == Role::Publisher;
    if protocol::is_seller_message(&msg) && !seller {
        return reply(
            &app,
            &s,
            protocol::error(
                ErrorCode::Forbidden,
                &format!("only the seller may send {:?}", protocol::type_name(&msg)),
                None,
            ),
        );
    }
    match msg {
        Inbound::Buy(b) => buy(&app, &s, b).await,
        Inbound::Question { text } => question(&app, &s, text),
        Inbound::Ping => reply(&app, &s, json!({"type": "pong"}).to_string()),
        other => {
            if let Err((code, m)) = seller_action(&app, &s.show.id, other, Origin::Seller).await {
                reply(&app, &s, protocol::error(code, &m, None));
            }
        }
    }
}

async fn buy(app: &App, s: &Session, b: protocol::Buy) {
    let rid = Some(b.request_id.as_str());
    if b.qty <= 0 || b.qty > app.cfg.commerce.max_qty_per_order as i64 {
        return reply(
            app,
            s,
            protocol::error(
                ErrorCode::Invalid,
                &format!(
                    "qty must be between 1 and {}",
                    app.cfg.commerce.max_qty_per_order
                ),
                rid,
            ),
        );
    }
    if app.store.stock(&s.show.id, &b.sku).is_none() {
        return reply(
            app,
            s,
            protocol::error(
                ErrorCode::NotFound,
                &format!("unknown sku {:?}", b.sku),
                rid,
            ),
        );
    }
    // A resent request gets its first answer, whatever the rate limit says.
    let prior = app
        .store
        .prior_answer(&s.show.id, &s.sub, &b.request_id)
        .await
        .ok()
        .flatten();
    let limited = match prior {
        Some(_) => Ok(()),
        None => app.live.admit_buy(s, Instant::now()),
    };
    if let Err((limit, wait)) = limited {
        app.metrics
            .buys_limited
            .with_label_values(&[limit.as_str()])
            .inc();
        return reply(
            app,
            s,
            protocol::error(ErrorCode::RateLimited, &limit.message(wait), rid),
        );
    }
    // A replay viewer buys from the current catalog at a moment of the recording: the order
    // keeps that moment, and its default card is the one on the replay's screen.
    let replay = app.replays.get(s.peer);
    let moment = replay.as_ref().map(|r| r.moment(b.rtp_ts));
    let highlight_id = b.highlight_id.clone().or_else(|| match (&replay, moment) {
        (Some(r), Some(m)) => r.highlight_at(m),
        _ => app.live.highlight(&s.show.id).map(|h| h.id),
    });
    let req = OrderRequest {
        show: s.show.id.to_string(),
        sku: b.sku.clone(),
        qty: b.qty as u32,
        viewer: s.sub.clone(),
        request_id: b.request_id.clone(),
        rtp_ts: moment.map_or(b.rtp_ts, |m| Some(m.rtp_ts)),
        highlight_id: highlight_id.clone(),
        replay_at_ms: moment.map(|m| (m.at * 1000.0).round() as i64),
    };
    let result = app.store.place_order(req).await;
    let res = match result {
        Ok(r) => r,
        Err(e) => {
            return reply(
                app,
                s,
                protocol::error(
                    ErrorCode::Unavailable,
                    &format!("order not placed: {e}"),
                    rid,
                ),
            )
        }
    };
    app.metrics
        .orders
        .with_label_values(&[res.status.as_str()])
        .inc();
    reply(
        app,
        s,
        json!({
            "type": "order", "request_id": res.request_id, "status": res.status,
            "order_id": res.order_id, "sku": res.sku, "qty": res.qty, "reason": res.reason,
        })
        .to_string(),
    );
    if res.status == OrderStatus::Confirmed {
        if let Some(h) = &highlight_id {
            if app
                .live
                .highlight(&s.show.id)
                .is_some_and(|cur| &cur.id == h)
            {
                app.metrics
                    .highlight_buys
                    .with_label_values(&[&*s.show.id])
                    .inc();
            }
        }
        {
            let mut shows = app.live.shows.lock();
            let st = shows.entry(s.show.id.to_string()).or_default();
            st.recent
                .push_back((Instant::now(), res.sku.clone(), res.qty));
            if !st.sold_dirty.contains(&res.sku) {
                st.sold_dirty.push(res.sku.clone());
            }
        }
        to_seller(
            app,
            &s.show.id,
            json!({
                "type": "order_placed", "order_id": res.order_id, "sku": res.sku,
                "qty": res.qty, "viewer": s.sub,
            })
            .to_string(),
        );
    }
}

fn question(app: &App, s: &Session, text: String) {
    let text = text.trim().to_string();
    let max = app.cfg.commerce.max_question_chars;
    if text.is_empty() || text.chars().count() > max {
        return reply(
            app,
            s,
            protocol::error(
                ErrorCode::Invalid,
                &format!("a question is 1 to {max} characters"),
                None,
            ),
        );
    }
    let limited = app
        .live
        .questions
        .lock()
        .check(&format!("{}/{}", s.show.id, s.sub), Instant::now());
    if limited.is_err() {
        return reply(
            app,
            s,
            protocol::error(
                ErrorCode::RateLimited,
                "too many questions; slow down",
                None,
            ),
        );
    }
    let q = json!({"type": "question", "from": s.sub, "text": text, "at_ms": commerce::now_ms()});
    if app.cfg.recording.keep_chat {
        let mut kept = q.clone();
        kept["rtp_ts"] = s.show.clock.latest().map_or(Value::Null, Value::from);
        app.record_event(&s.show, &Arc::from(kept.to_string()));
    }
    to_seller(app, &s.show.id, q.to_string());
    reply(app, s, json!({"type": "question_received"}).to_string());
}

/// Apply a seller action (from the seller's channel or the REST API) and fan it out.
pub async fn seller_action(
    app: &App,
    show: &str,
    msg: Inbound,
    origin: Origin,
) -> Result<Value, (ErrorCode, String)> {
    let started = Instant::now();
    let Some(sh) = app.registry.show(show) else {
        return Err((ErrorCode::NotFound, format!("no show {show:?}")));
    };
    let capture = |c: Option<i64>| if origin == Origin::Api { None } else { c };
    let product = |sku: &str| {
        let sku = sku.to_string();
        async move {
            app.store
                .product(show, &sku)
                .await
                .ok()
                .flatten()
                .ok_or((ErrorCode::NotFound, format!("unknown sku {sku:?}")))
        }
    };
    let (ty, v) = match msg {
        Inbound::Highlight { sku, capture_ms } => {
            let p = product(&sku).await?;
            let (rtp_ts, basis) = clock::stamp(&sh.clock, capture(capture_ms));
            let id = {
                let mut shows = app.live.shows.lock();
                let st = shows.entry(show.to_string()).or_default();
                st.highlights += 1;
                let id = format!("h-{}", st.highlights);
                st.highlight = Some(Highlight {
                    id: id.clone(),
                    sku: sku.clone(),
                    rtp_ts,
                });
                id
            };
            app.metrics.highlights.with_label_values(&[show]).inc();
            (
                "highlight",
                json!({"type": "highlight", "highlight_id": id, "sku": sku, "product": product_json(&p),
                       "rtp_ts": rtp_ts, "basis": basis, "capture_ms": capture_ms}),
            )
        }
        Inbound::Unhighlight { capture_ms } => {
            let (rtp_ts, basis) = clock::stamp(&sh.clock, capture(capture_ms));
            let prev = app
                .live
                .shows
                .lock()
                .get_mut(show)
                .and_then(|s| s.highlight.take());
            let Some(prev) = prev else {
                return Err((ErrorCode::Invalid, "nothing is highlighted".into()));
            };
            (
                "unhighlight",
                json!({"type": "unhighlight", "highlight_id": prev.id, "sku": prev.sku,
                       "rtp_ts": rtp_ts, "basis": basis, "capture_ms": capture_ms}),
            )
        }
        Inbound::Price {
            sku,
            price,
            capture_ms,
        } => {
            if price < 0 {
                return Err((
                    ErrorCode::Invalid,
                    "price must be >= 0 (minor units)".into(),
                ));
            }
            let p = product(&sku).await?;
            let spec = commerce::ProductSpec {
                sku: sku.clone(),
                title: p.title.clone(),
                price,
                currency: p.currency.clone(),
                image_url: p.image_url.clone(),
                stock: None,
            };
            app.store
                .upsert_product(show, spec)
                .await
                .map_err(|e| (ErrorCode::Unavailable, e.to_string()))?;
            let (rtp_ts, basis) = clock::stamp(&sh.clock, capture(capture_ms));
            (
                "price",
                json!({"type": "price", "sku": sku, "price": price, "currency": p.currency,
                       "rtp_ts": rtp_ts, "basis": basis, "capture_ms": capture_ms}),
            )
        }
        Inbound::Stock { sku, stock } => {
            if stock < 0 {
                return Err((ErrorCode::Invalid, "stock must be >= 0".into()));
            }
            product(&sku).await?;
            // The store's stock feed broadcasts the change (see `stock_feed`).
            app.store
                .set_stock(show, &sku, stock)
                .await
                .map_err(|e| (ErrorCode::Unavailable, e.to_string()))?;
            return Ok(json!({"type": "stock", "sku": sku, "stock": stock}));
        }
        Inbound::Chat { text } => {
            let text = text.trim().to_string();
            if text.is_empty() || text.chars().count() > app.cfg.commerce.max_question_chars {
                return Err((ErrorCode::Invalid, "chat text is empty or too long".into()));
            }
            (
                "chat",
                json!({"type": "chat", "from": "seller", "text": text}),
            )
        }
        other => {
            return Err((
                ErrorCode::Invalid,
                format!("{:?} is not a seller action", protocol::type_name(&other)),
            ))
        }
    };
    broadcast(app, show, ty, v.to_string(), started);
    Ok(v)
}

/// Forward every committed stock change to the show's viewers, stamped with the video clock.
pub async fn stock_feed(app: Arc<App>) {
    let mut rx = app.store.subscribe_stock();
    loop {
        match rx.recv().await {
            Ok(ch) => {
                let started = Instant::now();
                let ts = app
                    .registry
                    .show(&ch.show_id)
                    .and_then(|s| s.clock.latest());
                let v = json!({"type": "stock", "sku": ch.sku, "stock": ch.stock, "rtp_ts": ts});
                broadcast(&app, &ch.show_id, "stock", v.to_string(), started);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("stock feed lagged by {n} changes");
            }
            Err(_) => return,
        }
    }
}

/// Once a second: `sold` social proof per show (only for skus that sold), the viewer count to
/// each seller, and to the show's viewers when it changed.
pub async fn ticker(app: Arc<App>) {
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    loop {
        iv.tick().await;
        let now = Instant::now();
        let mut out: Vec<(String, String)> = Vec::new();
        {
            let mut shows = app.live.shows.lock();
            for (show, st) in shows.iter_mut() {
                while st
                    .recent
                    .front()
                    .is_some_and(|(t, _, _)| now.duration_since(*t) > Duration::from_secs(60))
                {
                    st.recent.pop_front();
                }
                for sku in st.sold_dirty.drain(..) {
                    let n: u32 = st
                        .recent
                        .iter()
                        .filter(|(_, s, _)| *s == sku)
                        .map(|(_, _, q)| *q)
                        .sum();
                    out.push((
                        show.clone(),
                        json!({"type": "sold", "sku": sku, "last_minute": n}).to_string(),
                    ));
                }
            }
        }
        for (show, text) in out {
            broadcast(&app, &show, "sold", text, now);
        }
        for sh in app.registry.shows() {
            let peak = sh.peak_viewers.load(std::sync::atomic::Ordering::Relaxed) as u32;
            let recorded = sh
                .recorded_peak
                .swap(peak as usize, std::sync::atomic::Ordering::Relaxed);
            if peak as usize > recorded {
                // Keep the durable peak current (it is reported by the API and show.ended).
                // The write is queued by the call; its answer is not needed.
                drop(app.store.record_viewers(&sh.id, peak));
            }
            let n = sh.viewers.load(std::sync::atomic::Ordering::Relaxed);
            let text = json!({"type": "viewers", "count": n}).to_string();
            // Viewers get the count when it changed, so every page shows the number the
            // studio shows without a message per viewer per second when nothing moves.
            if sh
                .announced_viewers
                .swap(n, std::sync::atomic::Ordering::Relaxed)
                != n
            {
                broadcast(&app, &sh.id, "viewers", text.clone(), now);
            }
            if sh.publisher.lock().is_some() {
                to_seller(&app, &sh.id, text);
            }
        }
    }
}
