//! Wiring: build the engine, the HTTP listeners and the event loop; run until a signal.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::app::App;
use crate::auth::Keys;
use crate::codec::Codec;
use crate::config::Config;
use crate::engine::Engine;
use crate::http;
use crate::metrics::Metrics;

/// A started server.
pub struct Running {
    /// Shared state.
    pub app: Arc<App>,
    /// The public HTTP address.
    pub http_addr: SocketAddr,
    /// The metrics address.
    pub metrics_addr: SocketAddr,
    /// The admin listener's address (`http.admin_listen`), if configured.
    pub admin_addr: Option<SocketAddr>,
    /// Whether this start generated the token secret (a first start).
    pub secret_created: bool,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Start everything; listeners bound, shards running.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    cfg.validate()?;
    crate::auth::create_private_dir(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data_dir {}: {e}", cfg.data_dir.display()))?;
    let secret = crate::auth::load_secret(cfg.auth.secret.as_deref(), &cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("token secret: {e}"))?;
    let keys = Keys::new(&secret.bytes);
    let metrics = Metrics::new();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let rec_dir = cfg.recording.dir(&cfg.data_dir);
    let recorder = crate::recording::Recorder::start(
        rec_dir.clone(),
        crate::recording::Metrics {
            bytes: metrics.recording_bytes.clone(),
            dropped: metrics.recording_dropped.clone(),
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot start the recorder in {}: {e}", rec_dir.display()))?;
    let engine = Engine::start(&cfg, &metrics, ev_tx, Some(recorder.sink()))?;
    let http_listener = TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.http.listen))?;
    let metrics_listener = TcpListener::bind(cfg.metrics.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.metrics.listen))?;
    let admin_listener = match cfg.http.admin_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {a} (http.admin_listen): {e}"))?,
        ),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let http_addr = http_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;
    let store = crate::commerce::Store::open_with(crate::commerce::store::Config {
        path: cfg.data_dir.join("hawker.db"),
        max_qty_per_order: cfg.commerce.max_qty_per_order,
        ..Default::default()
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the order store in {}: {e}",
            cfg.data_dir.display()
        )
    })?;
    if cfg.shows.seed_demo
        && store
            .shows(None)
            .await
            .map(|v| v.is_empty())
            .unwrap_or(false)
    {
        seed_demo(&store, &cfg).await;
    }
    let registry = crate::shows::Registry::default();
    // Shows survive restarts: rebuild the registry from the store.
    for s in store.shows(None).await.unwrap_or_default() {
        let codecs: Vec<Codec> = s
            .video_codecs
            .iter()
            .filter_map(|c| Codec::video_from_name(c))
            .collect();
        let codecs = if codecs.is_empty() {
            cfg.shows.default_video_codecs.clone()
        } else {
            codecs
        };
        registry.insert_show(Arc::new(crate::shows::Show::new(&s.id, codecs)));
    }
    let webhook_secret = cfg
        .commerce
        .webhook_secret
        .clone()
        .unwrap_or_else(|| keys.webhook_secret());
    let endpoints: Vec<crate::commerce::webhooks::Endpoint> = cfg
        .commerce
        .webhook_urls
        .iter()
        .map(|u| crate::commerce::webhooks::Endpoint {
            url: u.clone(),
            secret: webhook_secret.clone(),
        })
        .collect();
    let live = crate::live::State::new(&cfg.commerce);
    let app = Arc::new(App {
        cfg,
        keys,
        engine,
        registry,
        metrics,
        store: store.clone(),
        live,
        recorder,
        recordings: crate::recording::Library::new(rec_dir),
        replays: Default::default(),
    });
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    // Always run the worker: with no endpoints it marks events delivered and prunes them,
    // so the outbox does not grow without bound.
    let worker = crate::commerce::webhooks::Worker::new(
        store.clone(),
        crate::commerce::webhooks::Config {
            endpoints,
            dead_after_ms: u64::try_from(app.cfg.commerce.webhook_dead_after.as_millis())
                .unwrap_or(u64::MAX),
            ..Default::default()
        },
    )?;
    tokio::spawn(worker.run());
    tokio::spawn(crate::live::stock_feed(app.clone()));
    tokio::spawn(crate::live::ticker(app.clone()));
    tokio::spawn(crate::recording::retention(app.clone()));
    {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                app.on_engine_event(ev);
            }
        }));
    }
    // The public listener faces the internet: header timeout and connection cap.
    let limits = http::listener::Limits {
        header_read_timeout: app.cfg.http.header_read_timeout,
        max_connections: app.cfg.http.max_connections,
    };
    tasks.push(tokio::spawn(http::listener::serve(
        http_listener,
        http::router(app.clone()),
        limits,
        http::listener::Gauges {
            open: app.metrics.http_connections.clone(),
            refused: app.metrics.http_connections_refused.clone(),
        },
        rx.clone(),
    )));
    if let Some(listener) = admin_listener {
        // Private, but the same limits; its connections have their own cap (unexported
        // gauges), so the public listener's full cap cannot lock the operator out.
        tasks.push(tokio::spawn(http::listener::serve(
            listener,
            http::admin_router(app.clone()),
            limits,
            http::listener::Gauges {
                open: prometheus::IntGauge::new("admin_connections", "unregistered")
                    .expect("valid gauge"),
                refused: prometheus::IntCounter::new("admin_refused", "unregistered")
                    .expect("valid counter"),
            },
            rx.clone(),
        )));
    }
    {
        let mut rx = rx.clone();
        let router = http::metrics_router(app.clone());
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(metrics_listener, router).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|v| *v).await;
            });
            if let Err(e) = serve.await {
                tracing::error!("metrics server failed: {e}");
            }
        }));
    }
    Ok(Running {
        app,
        http_addr,
        metrics_addr,
        admin_addr,
        secret_created: secret.created,
        shutdown,
        tasks,
    })
}

impl Running {
    /// Stop accepting, close peers, wait for the listeners.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let app = self.app.clone();
        // Closing peers joins the shard threads: do it off the async runtime.
        let _ = tokio::task::spawn_blocking(move || {
            // Engine::shutdown needs &mut; the shards also stop on Msg::Shutdown via Drop.
            for h in app.engine.shards() {
                h.send(crate::engine::Msg::Shutdown);
            }
        })
        .await;
        for t in self.tasks.into_iter().skip(1) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        // Commit the last batch cleanly (an unanswered order is never lost either way).
        let store = self.app.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

impl Running {
    /// What `hawker serve` prints once started. Tokens are printed only on a first start (the
    /// secret was generated just now), so the operator can try the demo; on every later start the
    /// banner says how to mint them instead, because start-up output ends up in log files and a
    /// 12-hour admin token there is a credential leak.
    pub fn banner(&self) -> String {
        use std::fmt::Write;
        let app = &self.app;
        let base = app.cfg.public_url();
        let shards: Vec<String> = app
            .engine
            .shards()
            .iter()
            .map(|h| h.addr.to_string())
            .collect();
        let mut b = String::new();
        let _ = writeln!(b, "hawker is running\n");
        let token = self.secret_created.then(|| {
            let ttl = std::time::Duration::from_secs(12 * 3600);
            (
                app.keys
                    .issue("seller", "demo", crate::auth::Role::Publisher, ttl),
                app.keys.issue("admin", "*", crate::auth::Role::Admin, ttl),
            )
        });
        match &token {
            Some((publisher, _)) => {
                let _ = writeln!(b, "  seller studio: {base}/studio/demo#token={publisher}");
            }
            None => {
                let _ = writeln!(
                    b,
                    "  seller studio: {base}/studio/demo#token=<publisher token>"
                );
            }
        }
        let _ = writeln!(b, "  viewer page:   {base}/watch/demo");
        let _ = writeln!(b, "  all shows:     {base}/\n");
        let _ = writeln!(
            b,
            "  WHIP:       {base}/whip/demo   (Authorization: Bearer <publisher token>)"
        );
        let _ = writeln!(b, "  WHEP:       {base}/whep/demo");
        match self.admin_addr {
            Some(a) => {
                let _ = writeln!(
                    b,
                    "  REST API:   http://{a}/api/v1      (admin listener; Authorization: Bearer <admin token>)"
                );
            }
            None => {
                let _ = writeln!(
                    b,
                    "  REST API:   {base}/api/v1      (Authorization: Bearer <admin token>)"
                );
            }
        }
        let _ = writeln!(b, "  metrics:    http://{}/metrics", self.metrics_addr);
        let _ = writeln!(
            b,
            "  media UDP (one socket per shard): {}",
            shards.join(", ")
        );
        match token {
            Some((publisher, admin)) => {
                let _ = writeln!(
                    b,
                    "  first start: a token secret was generated in {}",
                    app.cfg.data_dir.join("secret").display()
                );
                let _ = writeln!(
                    b,
                    "  publisher token for show \"demo\" (12h):\n    {publisher}"
                );
                let _ = writeln!(b, "  admin token (12h):\n    {admin}");
                let _ = writeln!(
                    b,
                    "  (printed on this first start only; later: hawker token --show demo --role publisher)"
                );
            }
            None => {
                let _ = writeln!(
                    b,
                    "  tokens: hawker token --show demo --role publisher   (or --show '*' --role admin)"
                );
            }
        }
        b
    }
}

/// Wait for SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The show `demo` with three products, so a first run has something to sell.
async fn seed_demo(store: &crate::commerce::Store, cfg: &Config) {
    let created = store
        .create_show(crate::commerce::NewShow {
            id: Some("demo".into()),
            title: "Demo show".into(),
            scheduled_at: None,
            video_codecs: cfg
                .shows
                .default_video_codecs
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
        })
        .await;
    if let Err(e) = created {
        tracing::warn!("demo show not created: {e}");
        return;
    }
    for (sku, title, price, stock) in [
        ("lamp-1", "Brass desk lamp", 4900, 25),
        ("mug-2", "Hand-thrown mug", 1800, 60),
        ("scarf-3", "Merino scarf", 3500, 12),
    ] {
        let r = store
            .upsert_product(
                "demo",
                crate::commerce::ProductSpec {
                    sku: sku.into(),
                    title: title.into(),
                    price,
                    currency: "USD".into(),
                    image_url: None,
                    stock: Some(stock),
                },
            )
            .await;
        if let Err(e) = r {
            tracing::warn!("demo product {sku} not created: {e}");
        }
    }
}
