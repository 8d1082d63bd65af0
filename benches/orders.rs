//! Confirmed orders per second through `commerce::Store`: group commit versus one transaction
//! per order.
//!
//! Each iteration submits `IN_FLIGHT` orders at once (a buy storm: many viewers tapping Buy on
//! the same highlight), waits until every answer is durable, and counts them. Stock is large,
//! so every order is confirmed and writes an order row, a stock decrement and an outbox row.
//!
//! Cases:
//! - `group_full`: `max_batch = 512`, `synchronous = FULL` (the default configuration);
//! - `batch1_full`: `max_batch = 1`, `synchronous = FULL` (one fsync per order);
//! - `batch1_normal`: `max_batch = 1`, `synchronous = NORMAL` (one commit per order, no fsync).
//!
//! Hypothesis: with `FULL`, every transaction costs one WAL fsync (0.1–5 ms depending on the
//! disk), so at batch size 1 throughput is capped near 1/fsync — hundreds to a few thousand
//! orders/s. Group commit shares one fsync among everything that queued during the previous
//! one, so it is bounded by SQLite's CPU cost per order (tens of µs) instead: we expect at least
//! 10× the batch-1 throughput, and more than `batch1_normal`, which saves the fsync but still
//! pays the per-transaction overhead (WAL frame writes, locking, the commit itself) per order.
//!
//! The database lives under cargo's target tmp dir (a real disk, unlike a tmpfs `/tmp`), because
//! the point is the cost of fsync.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use hawker::commerce::store::{Config, Synchronous};
use hawker::commerce::{NewShow, OrderRequest, OrderStatus, ProductSpec, ShowState, Store};

/// Orders submitted at once per iteration.
const IN_FLIGHT: u64 = 256;

static REQUEST: AtomicU64 = AtomicU64::new(0);

fn open(name: &str, max_batch: usize, synchronous: Synchronous) -> (Store, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("orders-bench-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open_with(Config {
        path: dir.join("commerce.db"),
        synchronous,
        max_batch,
        ..Config::default()
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        store
            .create_show(NewShow {
                id: Some("bench".into()),
                title: "Bench".into(),
                ..NewShow::default()
            })
            .await
            .unwrap();
        store
            .upsert_product(
                "bench",
                ProductSpec {
                    sku: "a".into(),
                    title: "A".into(),
                    price: 1999,
                    currency: "USD".into(),
                    image_url: None,
                    stock: Some(1_000_000_000_000),
                },
            )
            .await
            .unwrap();
        store
            .set_show_state("bench", ShowState::Live)
            .await
            .unwrap();
    });
    (store, dir)
}

/// Submit `IN_FLIGHT` orders, wait for all of them, return how long it took.
fn storm(store: &Store) -> Duration {
    let start = Instant::now();
    let pending: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let n = REQUEST.fetch_add(1, Ordering::Relaxed);
            store.place_order(OrderRequest {
                show: "bench".into(),
                sku: "a".into(),
                qty: 1,
                viewer: format!("viewer{}", i % 200),
                request_id: n.to_string(),
                rtp_ts: Some(n as u32),
                highlight_id: None,
                replay_at_ms: None,
            })
        })
        .collect();
    for p in pending {
        let answer = p.wait().unwrap();
        assert_eq!(answer.status, OrderStatus::Confirmed);
    }
    start.elapsed()
}

fn orders(c: &mut Criterion) {
    let mut group = c.benchmark_group("orders");
    group
        .throughput(Throughput::Elements(IN_FLIGHT))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let cases = [
        ("group_full", 512, Synchronous::Full),
        ("batch1_full", 1, Synchronous::Full),
        ("batch1_normal", 1, Synchronous::Normal),
    ];
    for (name, max_batch, synchronous) in cases {
        let (store, dir) = open(name, max_batch, synchronous);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| storm(&store)).sum())
        });
        let stats = store.stats();
        eprintln!(
            "{name}: {} orders in {} transactions (mean batch {:.1})",
            stats.items,
            stats.batches,
            stats.items as f64 / stats.batches.max(1) as f64
        );
        store.close();
        let _ = std::fs::remove_dir_all(dir);
    }
    group.finish();
}

criterion_group!(benches, orders);
criterion_main!(benches);
