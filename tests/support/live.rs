//! Helpers for the `events` data-channel and order tests (`tests/events_*.rs`,
//! `tests/orders_*.rs`): show seeding, JSON message waiting, many-viewer set-up and wrap-aware
//! RTP timestamp arithmetic.
//!
//! Not declared in `support/mod.rs`: the tests that need it include it with
//! `#[path = "support/live.rs"] mod live;` next to `mod support;`, so other test binaries are
//! not affected by it.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::support::{Viewer, ViewerOpts};

/// Milliseconds since the Unix epoch (the seller's `capture_ms`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Wrap-aware `a <= b` for 32-bit RTP timestamps.
pub fn ts_le(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) >= 0
}

/// Wrap-aware signed distance `b - a` in ticks.
pub fn ts_diff(a: u32, b: u32) -> i64 {
    b.wrapping_sub(a) as i32 as i64
}

/// Parses every message that is JSON (others are kept as `Value::String`).
pub fn parse_all(msgs: &[String]) -> Vec<Value> {
    msgs.iter()
        .map(|m| serde_json::from_str(m).unwrap_or_else(|_| Value::String(m.clone())))
        .collect()
}

/// Messages of one `type`.
pub fn of_type(msgs: &[String], ty: &str) -> Vec<Value> {
    parse_all(msgs)
        .into_iter()
        .filter(|v| v["type"] == ty)
        .collect()
}

/// Polls `get` (every 5 ms) until a message, parsed as JSON, with index `>= from` satisfies
/// `pred`; returns it and its index.
pub async fn wait_json(
    what: &str,
    timeout: Duration,
    from: usize,
    get: impl Fn() -> Vec<String>,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<(usize, Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        let msgs = get();
        for (i, m) in msgs.iter().enumerate().skip(from) {
            if let Ok(v) = serde_json::from_str::<Value>(m) {
                if pred(&v) {
                    return Ok((i, v));
                }
            }
        }
        if Instant::now() >= deadline {
            let tail: Vec<&String> = msgs.iter().rev().take(8).collect();
            anyhow::bail!(
                "timed out after {timeout:?} waiting for {what}; {} messages, last ones (newest \
                 first): {tail:?}",
                msgs.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One product of a seeded show: (sku, title, price in minor units, stock).
pub type ProductRow<'a> = (&'a str, &'a str, i64, i64);

/// Creates `show` in the store (state `scheduled`) with `products` (USD).
pub async fn seed_show(store: &hawker::commerce::Store, show: &str, products: &[ProductRow<'_>]) {
    store
        .create_show(hawker::commerce::NewShow {
            id: Some(show.to_string()),
            title: format!("Show {show}"),
            scheduled_at: None,
            video_codecs: vec!["vp8".into(), "h264".into()],
        })
        .await
        .expect("create_show");
    for &(sku, title, price, stock) in products {
        store
            .upsert_product(
                show,
                hawker::commerce::ProductSpec {
                    sku: sku.into(),
                    title: title.into(),
                    price,
                    currency: "USD".into(),
                    image_url: None,
                    stock: Some(stock),
                },
            )
            .await
            .expect("upsert_product");
    }
}

/// Waits until the stored show is in `state`.
pub async fn wait_show_state(
    store: &hawker::commerce::Store,
    show: &str,
    state: hawker::commerce::ShowState,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = store.show(show).await?.context("show exists")?;
        if s.state == state {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("show {show} is {:?}, wanted {state:?}", s.state);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Most connect retries one [`connect_viewers`] call tolerates, over all its viewers. A retry
/// hides a failed set-up; a few are the price of a loaded machine, more are a regression.
pub const MAX_CONNECT_RETRIES: usize = 2;

/// Connects `n` viewers to `url`, at most `parallel` set-ups at a time; `url_of(i)` may add a
/// query (e.g. `?viewer=v7`). Returns them in index order.
///
/// A viewer whose set-up fails is retried once; every retry is printed with its error, and
/// more than [`MAX_CONNECT_RETRIES`] retries in one call fail it.
pub async fn connect_viewers(
    n: usize,
    parallel: usize,
    url_of: impl Fn(usize) -> String,
    opts: ViewerOpts,
) -> anyhow::Result<Vec<Viewer>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let url = url_of(i);
        let opts = opts.clone();
        let sem = sem.clone();
        let retries = retries.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let mut last = None;
            for attempt in 0..2 {
                if attempt > 0 {
                    retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!(
                        "connect_viewers: viewer {i} retries after: {:#}",
                        last.as_ref().unwrap()
                    );
                }
                match Viewer::connect(&url, None, opts.clone()).await {
                    Ok(v) => return (i, Ok(v)),
                    Err(e) => last = Some(e),
                }
            }
            (i, Err(last.unwrap()))
        });
    }
    let mut out: Vec<Option<Viewer>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, v) = r.expect("connect task");
        out[i] = Some(v.with_context(|| format!("viewer {i} connects"))?);
    }
    let retries = retries.load(std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(
        retries <= MAX_CONNECT_RETRIES,
        "{retries} of {n} viewer set-ups needed a retry (at most {MAX_CONNECT_RETRIES} allowed)"
    );
    Ok(out.into_iter().map(Option::unwrap).collect())
}

/// Runs `f` over `items` with at most `parallel` at once, keeping the order of results.
pub async fn for_each_parallel<T, R, F, Fut>(items: Vec<T>, parallel: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(usize, T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let f = Arc::new(f);
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let (f, sem) = (f.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            (i, f(i, item).await)
        });
    }
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, v) = r.expect("task");
        out[i] = Some(v);
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// A TCP port that was free a moment ago (bound on 127.0.0.1, then released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
