//! The public listener's accept loop: HTTP/1.1 with a header read timeout and a connection cap.
//!
//! `axum::serve` waits forever for a request head and accepts without limit, so a few hundred
//! sockets that connect and send nothing (or a byte a minute: slowloris) hold memory and file
//! descriptors indefinitely. Here every connection must deliver a complete request head within
//! `http.header_read_timeout` of the server starting to wait for one (also between keep-alive
//! requests) or it is closed, and at most `http.max_connections` are open at once: beyond that
//! a new connection is closed at once (counted in `hawker_http_connections_refused_total`), so
//! the process never runs out of descriptors and signalling for everyone else keeps working.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a complete request head.
    pub header_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Counters the loop keeps.
#[derive(Clone)]
pub struct Gauges {
    /// Open connections.
    pub open: prometheus::IntGauge,
    /// Connections closed on accept because the cap was reached.
    pub refused: prometheus::IntCounter,
}

/// Serve `router` on `listener` until `shutdown` turns true; then stop accepting and let open
/// connections finish their current request (at most 5 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    gauges: Gauges,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            gauges.refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            // The client address for per-address caps (`ConnectInfo` in handlers).
            TowerToHyperService::new(
                router
                    .clone()
                    .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
            ),
        );
        let mut stop = shutdown.clone();
        let gauges = gauges.clone();
        gauges.open.inc();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("http connection: {e}");
                    }
                }
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
            gauges.open.dec();
        });
    }
}

/// Resolves once `rx` holds `true` (or its sender is gone); holds no borrow of the value.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
