//! The commerce store: SQLite (WAL) tables for shows, products, orders and the webhook outbox,
//! one group-commit writer thread, a pool of read connections, and the in-memory stock mirror.
//!
//! # Durability
//!
//! An order is acknowledged (its [`PendingOrder`] resolves) only after the transaction that
//! holds it has returned from `COMMIT`. What that guarantees depends on `PRAGMA synchronous`:
//!
//! - **`FULL` (the default).** In WAL mode SQLite fsyncs the WAL file at every commit, before
//!   `COMMIT` returns. An acknowledged order therefore survives a process crash, a kernel panic
//!   and a power loss (as far as the disk honours fsync).
//! - **`NORMAL`.** The WAL is fsynced only at checkpoints. A commit is in the OS page cache when
//!   `COMMIT` returns, so it survives the process being killed (SIGKILL, OOM, panic) but the
//!   last commits before a power loss or kernel crash may roll back. The database stays
//!   consistent either way; only recent acknowledged orders are at risk.
//!
//! Selling the same unit twice after a power cut is worse than a slower fsync, so `FULL` is the
//! default; `NORMAL` is there for deployments that replicate elsewhere or accept the risk.
//! Group commit (see the writer) is what makes `FULL` affordable: one fsync covers every order
//! that arrived while the previous fsync was running.
//!
//! After a SIGKILL, [`Store::open`] is all the recovery there is: SQLite replays or discards the
//! WAL (an uncommitted batch simply never happened, and none of its callers were answered), and
//! the stock mirror is rebuilt from `products`.
//!
//! # Threads
//!
//! Writes (every method returning [`Pending`]) are queued to the writer thread and never block
//! the caller: the returned [`Pending`] can be `.await`ed, `.wait()`ed from a plain thread, or
//! polled with [`Pending::try_take`] from a shard's event loop. Reads (`async fn`s) run on
//! tokio's blocking pool against pooled read-only connections; WAL lets them proceed while the
//! writer commits. Stock lookups ([`Store::stock`], [`Store::stock_snapshot`]) read the mirror
//! and never touch SQLite.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, Notify};

use super::writer::{self, Cmd, Effects, Mirror, Shared, Task};
use super::{
    now_ms, Error, Event, NewShow, Order, OrderRequest, OrderResult, OrderStatus, Product,
    ProductSpec, Result, Show, ShowState, ShowUpdate, StockChange,
};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 3;

/// Random bytes in a generated show id (hex-encoded: 16 characters).
const SHOW_ID_BYTES: usize = 8;
/// Random bytes in an order id (hex-encoded: 20 characters).
const ORDER_ID_BYTES: usize = 10;
/// Upper bound on one `orders_after` page.
pub const MAX_PAGE: usize = 1000;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS shows (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    scheduled_at  INTEGER,
    video_codecs  TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(video_codecs)),
    state         TEXT NOT NULL DEFAULT 'scheduled'
                  CHECK (state IN ('scheduled', 'live', 'ended')),
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    ended_at      INTEGER,
    peak_viewers  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE IF NOT EXISTS products (
    show_id    TEXT NOT NULL REFERENCES shows(id) ON DELETE CASCADE,
    sku        TEXT NOT NULL,
    title      TEXT NOT NULL,
    price      INTEGER NOT NULL CHECK (price >= 0),
    currency   TEXT NOT NULL,
    image_url  TEXT,
    stock      INTEGER NOT NULL CHECK (stock >= 0),
    PRIMARY KEY (show_id, sku)
) STRICT;

CREATE TABLE IF NOT EXISTS orders (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id      TEXT UNIQUE,
    show_id       TEXT NOT NULL,
    sku           TEXT NOT NULL,
    qty           INTEGER NOT NULL,
    viewer        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('confirmed', 'sold_out', 'rejected')),
    reason        TEXT,
    unit_price    INTEGER,
    currency      TEXT,
    rtp_ts        INTEGER,
    highlight_id  TEXT,
    created_at    INTEGER NOT NULL,
    replay_at_ms  INTEGER,
    UNIQUE (show_id, viewer, request_id)
) STRICT;

CREATE INDEX IF NOT EXISTS orders_confirmed ON orders (show_id, seq) WHERE status = 'confirmed';

CREATE TABLE IF NOT EXISTS outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event            TEXT NOT NULL,
    body             TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    delivered_at     INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    dead_at          INTEGER
) STRICT;

CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE IF NOT EXISTS outbox_acks (
    outbox_id  INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
    endpoint   TEXT NOT NULL,
    acked_at   INTEGER NOT NULL,
    PRIMARY KEY (outbox_id, endpoint)
) STRICT, WITHOUT ROWID;
"#;

/// `PRAGMA synchronous` for the write connection; see the module doc for the trade-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync the WAL at every commit: acknowledged orders survive power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: acknowledged orders survive a process crash only.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Store configuration; embeds in the server's config tree as `[commerce]` or similar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SQLite database file, created if missing. Default `hawker.db`.
    pub path: PathBuf,
    /// Durability of a commit. Default `full`.
    pub synchronous: Synchronous,
    /// Most work items applied in one transaction (one fsync). `1` disables group commit.
    /// Default 512.
    pub max_batch: usize,
    /// Most work items waiting for the writer; beyond it writes fail fast with
    /// [`Error::Busy`]. Default 65536.
    pub queue: usize,
    /// Largest quantity one order may ask for. Default 10.
    pub max_qty_per_order: u32,
    /// Idle read connections kept open for reuse. Default 4.
    pub read_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::from("hawker.db"),
            synchronous: Synchronous::Full,
            max_batch: 512,
            queue: 65536,
            max_qty_per_order: 10,
            read_connections: 4,
        }
    }
}

/// Handle to the commerce store. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    tx: Sender<Cmd>,
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    readers: Mutex<Vec<Connection>>,
}

/// The answer to a queued write, available once its batch has committed.
///
/// The write is submitted when the method returning this is called, not when this is polled:
/// dropping it does not cancel anything. Three ways to collect the answer:
/// `.await` (async callers), [`Pending::wait`] (plain threads; panics inside a tokio runtime),
/// and [`Pending::try_take`] (event loops that must never block).
#[must_use = "the write is already queued; the answer is lost if this is dropped"]
pub struct Pending<T>(PendingState<T>);

enum PendingState<T> {
    Ready(Option<Result<T>>),
    Waiting(oneshot::Receiver<Result<T>>),
}

/// The answer to [`Store::place_order`].
pub type PendingOrder = Pending<OrderResult>;

impl<T> Pending<T> {
    fn ready(v: Result<T>) -> Self {
        Pending(PendingState::Ready(Some(v)))
    }

    /// Block the current thread until the answer is durable. Must not be called from async code.
    pub fn wait(self) -> Result<T> {
        match self.0 {
            PendingState::Ready(v) => v.unwrap_or(Err(Error::Closed)),
            PendingState::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(Error::Closed)),
        }
    }

    /// The answer if it is already there, without blocking. `None` means "not yet"; after it
    /// has returned `Some`, it returns `None` forever.
    pub fn try_take(&mut self) -> Option<Result<T>> {
        match &mut self.0 {
            PendingState::Ready(v) => v.take(),
            PendingState::Waiting(rx) => match rx.try_recv() {
                Ok(v) => {
                    self.0 = PendingState::Ready(None);
                    Some(v)
                }
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.0 = PendingState::Ready(None);
                    Some(Err(Error::Closed))
                }
            },
        }
    }
}

// Nothing is ever pinned structurally: the value is only moved out once ready.
impl<T> Unpin for Pending<T> {}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            PendingState::Ready(v) => Poll::Ready(v.take().unwrap_or(Err(Error::Closed))),
            PendingState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(Error::Closed))),
        }
    }
}

/// Counters of the group-commit writer since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Transactions committed.
    pub batches: u64,
    /// Work items (orders and other writes) in committed transactions; `items / batches` is
    /// the mean group-commit batch size.
    pub items: u64,
    /// Transactions whose commit failed; every item in them was answered with an error.
    pub failed_batches: u64,
    /// Work items waiting for the writer right now.
    pub queued: usize,
}

/// An outbox row due for delivery, with the endpoints that already acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRow {
    pub id: i64,
    pub event: String,
    pub body: String,
    pub attempts: u32,
    pub created_at: i64,
    pub acked: Vec<String>,
}

/// The outcome of one delivery attempt of one outbox row.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub id: i64,
    /// Endpoints that answered 2xx in this attempt.
    pub acked: Vec<String>,
    /// Every configured endpoint has now acknowledged the row.
    pub done: bool,
    /// When to try again if not `done`.
    pub next_attempt_at: i64,
    pub error: Option<String>,
    /// Not `done` and failing for longer than the dead-letter age: stop retrying.
    pub dead: bool,
}

impl Store {
    /// Open (or create) the database at `path` with the default [`Config`].
    ///
    /// Safe after any crash, including SIGKILL mid-batch: SQLite recovers the WAL, and the stock
    /// mirror is rebuilt from the committed `products` rows. Blocking; call it at startup.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(Config {
            path: path.as_ref().to_path_buf(),
            ..Config::default()
        })
    }

    /// Open (or create) the database described by `config`. Blocking.
    pub fn open_with(config: Config) -> Result<Store> {
        let conn = open_writer(&config)?;
        migrate(&conn)?;
        let mirror = load_mirror(&conn)?;
        let (stock_tx, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            mirror: RwLock::new(mirror),
            outbox: Notify::new(),
            stock_tx,
            batches: AtomicU64::new(0),
            items: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let (tx, rx) = crossbeam_channel::bounded(config.queue.max(1));
        let max_batch = config.max_batch;
        let thread_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("commerce-writer".into())
            .spawn(move || writer::run(conn, rx, thread_shared, max_batch))
            .map_err(|e| Error::Internal(format!("cannot start commerce writer: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                config,
                tx,
                writer: Mutex::new(Some(writer)),
                shared,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Writer counters, for metrics (`hawker_commerce_batches_total`, …).
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        Stats {
            batches: shared.batches.load(Ordering::Relaxed),
            items: shared.items.load(Ordering::Relaxed),
            failed_batches: shared.failed.load(Ordering::Relaxed),
            queued: self.inner.tx.len(),
        }
    }

    /// Finish every write queued so far, then stop the writer and wait for it. Later writes
    /// fail with [`Error::Closed`]. Blocking (at most one batch); idempotent.
    pub fn close(&self) {
        let handle = self.inner.writer.lock().take();
        if let Some(handle) = handle {
            // Fails only if the writer is already gone.
            let _ = self.inner.tx.send(Cmd::Shutdown);
            let _ = handle.join();
        }
    }

    // ---- shows -------------------------------------------------------------------------------

    /// Create a show in state `scheduled`. Conflict if the id is taken.
    pub fn create_show(&self, new: NewShow) -> Pending<Show> {
        if let Err(e) = validate_new_show(&new) {
            return Pending::ready(Err(e));
        }
        self.submit(move |conn, _| {
            let id = new.id.unwrap_or_else(|| new_id(SHOW_ID_BYTES));
            if load_show(conn, &id)?.is_some() {
                return Err(Error::Conflict(format!("show {id} already exists")));
            }
            let codecs = serde_json::to_string(&new.video_codecs)
                .map_err(|e| Error::Internal(e.to_string()))?;
            conn.prepare_cached(
                "INSERT INTO shows (id, title, scheduled_at, video_codecs, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'scheduled', ?5)",
            )?
            .execute(params![id, new.title, new.scheduled_at, codecs, now_ms()])?;
            load_show(conn, &id)?.ok_or(Error::NotFound("show"))
        })
    }

    /// Change a show's title, schedule or codecs.
    pub fn update_show(&self, id: &str, update: ShowUpdate) -> Pending<Show> {
        if let Err(e) = validate_show_update(&update) {
            return Pending::ready(Err(e));
        }
        let id = id.to_owned();
        self.submit(move |conn, _| {
            let show = load_show(conn, &id)?.ok_or(Error::NotFound("show"))?;
            let title = update.title.unwrap_or(show.title);
            let scheduled_at = update.scheduled_at.or(show.scheduled_at);
            let codecs = update.video_codecs.unwrap_or(show.video_codecs);
            let codecs =
                serde_json::to_string(&codecs).map_err(|e| Error::Internal(e.to_string()))?;
            conn.prepare_cached(
                "UPDATE shows SET title = ?2, scheduled_at = ?3, video_codecs = ?4 WHERE id = ?1",
            )?
            .execute(params![id, title, scheduled_at, codecs])?;
            load_show(conn, &id)?.ok_or(Error::NotFound("show"))
        })
    }

    /// Move a show to `live` or `ended`, enqueueing `show.live` / `show.ended` in the same
    /// transaction. Setting the current state again is a no-op (no event); any other
    /// transition than `scheduled → live → ended` or `scheduled → ended` is a conflict.
    pub fn set_show_state(&self, id: &str, state: ShowState) -> Pending<Show> {
        let id = id.to_owned();
        self.submit(move |conn, effects| {
            let show = load_show(conn, &id)?.ok_or(Error::NotFound("show"))?;
            let now = now_ms();
            match (show.state, state) {
                (from, to) if from == to => return Ok(show),
                (ShowState::Scheduled, ShowState::Live) => {
                    conn.prepare_cached(
                        "UPDATE shows SET state = 'live', started_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![id, now])?;
                    let body = serde_json::json!({
                        "show_id": id,
                        "title": show.title,
                        "started_at": now,
                    });
                    enqueue(conn, effects, Event::ShowLive, &body.to_string(), now)?;
                }
                (ShowState::Scheduled | ShowState::Live, ShowState::Ended) => {
                    conn.prepare_cached(
                        "UPDATE shows SET state = 'ended', ended_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![id, now])?;
                    let (orders, units): (i64, i64) = conn
                        .prepare_cached(
                            "SELECT COUNT(*), COALESCE(SUM(qty), 0) FROM orders
                             WHERE show_id = ?1 AND status = 'confirmed'",
                        )?
                        .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    let body = serde_json::json!({
                        "show_id": id,
                        "title": show.title,
                        "started_at": show.started_at,
                        "ended_at": now,
                        "peak_viewers": show.peak_viewers,
                        "orders": orders,
                        "units": units,
                    });
                    enqueue(conn, effects, Event::ShowEnded, &body.to_string(), now)?;
                }
                (from, to) => {
                    return Err(Error::Conflict(format!(
                        "show {id} cannot go from {} to {}",
                        from.as_str(),
                        to.as_str()
                    )))
                }
            }
            load_show(conn, &id)?.ok_or(Error::NotFound("show"))
        })
    }

    /// Raise the show's `peak_viewers` to `viewers` if that is higher.
    pub fn record_viewers(&self, id: &str, viewers: u32) -> Pending<()> {
        let id = id.to_owned();
        self.submit(move |conn, _| {
            let n = conn
                .prepare_cached(
                    "UPDATE shows SET peak_viewers = MAX(peak_viewers, ?2) WHERE id = ?1",
                )?
                .execute(params![id, viewers])?;
            if n == 0 {
                return Err(Error::NotFound("show"));
            }
            Ok(())
        })
    }

    /// Delete a show with its products and orders. A live show cannot be deleted (end it
    /// first); already-enqueued webhooks are still delivered.
    pub fn delete_show(&self, id: &str) -> Pending<()> {
        let id = id.to_owned();
        self.submit(move |conn, effects| {
            let show = load_show(conn, &id)?.ok_or(Error::NotFound("show"))?;
            if show.state == ShowState::Live {
                return Err(Error::Conflict(format!("show {id} is live; end it first")));
            }
            conn.prepare_cached("DELETE FROM orders WHERE show_id = ?1")?
                .execute([&id])?;
            conn.prepare_cached("DELETE FROM products WHERE show_id = ?1")?
                .execute([&id])?;
            conn.prepare_cached("DELETE FROM shows WHERE id = ?1")?
                .execute([&id])?;
            effects.show_gone(&id);
            Ok(())
        })
    }

    /// One show.
    pub async fn show(&self, id: &str) -> Result<Option<Show>> {
        let id = id.to_owned();
        self.read(move |conn| load_show(conn, &id)).await
    }

    /// All shows, optionally only those in `state`, newest first.
    pub async fn shows(&self, state: Option<ShowState>) -> Result<Vec<Show>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SHOW_COLUMNS} FROM shows
                 WHERE ?1 IS NULL OR state = ?1 ORDER BY created_at DESC, id"
            ))?;
            let rows = stmt.query_map([state.map(ShowState::as_str)], show_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    // ---- products ----------------------------------------------------------------------------

    /// Create or replace a product of `show`. With `spec.stock == None` an existing product
    /// keeps its stock and a new one starts at 0.
    pub fn upsert_product(&self, show: &str, spec: ProductSpec) -> Pending<Product> {
        if let Err(e) = validate_product(&spec) {
            return Pending::ready(Err(e));
        }
        let show = show.to_owned();
        self.submit(move |conn, effects| {
            if load_show(conn, &show)?.is_none() {
                return Err(Error::NotFound("show"));
            }
            let product = conn
                .prepare_cached(&format!(
                    "INSERT INTO products (show_id, sku, title, price, currency, image_url, stock)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE(?7, 0))
                     ON CONFLICT (show_id, sku) DO UPDATE SET
                        title = excluded.title, price = excluded.price,
                        currency = excluded.currency, image_url = excluded.image_url,
                        stock = COALESCE(?7, products.stock)
                     RETURNING {PRODUCT_COLUMNS}"
                ))?
                .query_row(
                    params![
                        show,
                        spec.sku,
                        spec.title,
                        spec.price,
                        spec.currency,
                        spec.image_url,
                        spec.stock
                    ],
                    product_from_row,
                )?;
            effects.stock(&product.show_id, &product.sku, product.stock);
            Ok(product)
        })
    }

    /// Set a product's stock to an absolute value (≥ 0).
    pub fn set_stock(&self, show: &str, sku: &str, stock: i64) -> Pending<Product> {
        if stock < 0 {
            return Pending::ready(Err(Error::Invalid("stock must be >= 0".into())));
        }
        let (show, sku) = (show.to_owned(), sku.to_owned());
        self.submit(move |conn, effects| {
            let product = conn
                .prepare_cached(&format!(
                    "UPDATE products SET stock = ?3 WHERE show_id = ?1 AND sku = ?2
                     RETURNING {PRODUCT_COLUMNS}"
                ))?
                .query_row(params![show, sku, stock], product_from_row)
                .optional()?
                .ok_or(Error::NotFound("product"))?;
            effects.stock(&show, &sku, product.stock);
            Ok(product)
        })
    }

    /// Add `delta` (may be negative) to a product's stock; a conflict if it would go below 0.
    pub fn add_stock(&self, show: &str, sku: &str, delta: i64) -> Pending<Product> {
        let (show, sku) = (show.to_owned(), sku.to_owned());
        self.submit(move |conn, effects| {
            let current: i64 = conn
                .prepare_cached("SELECT stock FROM products WHERE show_id = ?1 AND sku = ?2")?
                .query_row(params![show, sku], |r| r.get(0))
                .optional()?
                .ok_or(Error::NotFound("product"))?;
            let stock = current
                .checked_add(delta)
                .filter(|s| *s >= 0)
                .ok_or_else(|| {
                    Error::Conflict(format!("stock {current} cannot change by {delta}"))
                })?;
            let product = conn
                .prepare_cached(&format!(
                    "UPDATE products SET stock = ?3 WHERE show_id = ?1 AND sku = ?2
                     RETURNING {PRODUCT_COLUMNS}"
                ))?
                .query_row(params![show, sku, stock], product_from_row)?;
            effects.stock(&show, &sku, product.stock);
            Ok(product)
        })
    }

    /// Remove a product. Its past orders stay.
    pub fn delete_product(&self, show: &str, sku: &str) -> Pending<()> {
        let (show, sku) = (show.to_owned(), sku.to_owned());
        self.submit(move |conn, effects| {
            let n = conn
                .prepare_cached("DELETE FROM products WHERE show_id = ?1 AND sku = ?2")?
                .execute(params![show, sku])?;
            if n == 0 {
                return Err(Error::NotFound("product"));
            }
            effects.product_gone(&show, &sku);
            Ok(())
        })
    }

    /// One product.
    pub async fn product(&self, show: &str, sku: &str) -> Result<Option<Product>> {
        let (show, sku) = (show.to_owned(), sku.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products WHERE show_id = ?1 AND sku = ?2"
                ))?
                .query_row(params![show, sku], product_from_row)
                .optional()?)
        })
        .await
    }

    /// The products of a show in the order they were first added; `NotFound` if no such show.
    pub async fn products(&self, show: &str) -> Result<Vec<Product>> {
        let show = show.to_owned();
        self.read(move |conn| {
            if load_show(conn, &show)?.is_none() {
                return Err(Error::NotFound("show"));
            }
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM products WHERE show_id = ?1 ORDER BY rowid"
            ))?;
            let rows = stmt.query_map([&show], product_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Committed stock of one product, from memory.
    pub fn stock(&self, show: &str, sku: &str) -> Option<i64> {
        self.inner
            .shared
            .mirror
            .read()
            .get(show)
            .and_then(|m| m.get(sku))
            .copied()
    }

    /// Committed stock of every product of a show, sorted by SKU, from memory.
    pub fn stock_snapshot(&self, show: &str) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self
            .inner
            .shared
            .mirror
            .read()
            .get(show)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Stock changes as they commit (coalesced per batch). A slow receiver sees
    /// `RecvError::Lagged` and should resynchronise from [`Store::stock_snapshot`].
    pub fn subscribe_stock(&self) -> broadcast::Receiver<StockChange> {
        self.inner.shared.stock_tx.subscribe()
    }

    // ---- orders ------------------------------------------------------------------------------

    /// Try to buy. Resolves once the answer is durable; see [`OrderResult`].
    ///
    /// Requests that fail validation (quantity outside `1..=max_qty_per_order`, malformed ids)
    /// and requests for an unknown show are rejected at once and not recorded, since the same
    /// request would get the same answer again. Every other answer (confirmed, sold out, show
    /// not live, unknown SKU) is recorded under `(show, viewer, request_id)` and returned as is
    /// to any repeat of that key.
    pub fn place_order(&self, req: OrderRequest) -> PendingOrder {
        if let Err(reason) = validate_order(&req, self.inner.config.max_qty_per_order) {
            return Pending::ready(Ok(answer(&req, OrderStatus::Rejected, None, Some(reason))));
        }
        self.submit(move |conn, effects| apply_order(conn, effects, &req, now_ms()))
    }

    /// [`Store::place_order`] for plain threads: blocks until the answer is durable.
    pub fn place_order_blocking(&self, req: OrderRequest) -> Result<OrderResult> {
        self.place_order(req).wait()
    }

    /// Confirmed orders of a show with `seq > cursor`, oldest first, at most `limit` (clamped to
    /// 1..=[`MAX_PAGE`]), and the cursor to pass next time (unchanged when the page is empty).
    /// Start with cursor 0.
    pub async fn orders_after(
        &self,
        show: &str,
        cursor: i64,
        limit: usize,
    ) -> Result<(Vec<Order>, i64)> {
        let show = show.to_owned();
        let limit = limit.clamp(1, MAX_PAGE) as i64;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE show_id = ?1 AND status = 'confirmed' AND seq > ?2
                 ORDER BY seq LIMIT ?3"
            ))?;
            let orders = stmt
                .query_map(params![show, cursor, limit], order_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = orders.last().map_or(cursor, |o| o.seq);
            Ok((orders, next))
        })
        .await
    }

    /// The recorded answer to `(show, viewer, request_id)`, if that request was answered before.
    pub async fn prior_answer(
        &self,
        show: &str,
        viewer: &str,
        request_id: &str,
    ) -> Result<Option<OrderResult>> {
        let (show, viewer, rid) = (show.to_owned(), viewer.to_owned(), request_id.to_owned());
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT status, order_id, reason, sku, qty FROM orders
                     WHERE show_id = ?1 AND viewer = ?2 AND request_id = ?3",
                )?
                .query_row(params![show, viewer, rid], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, u32>(4)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(status, order_id, reason, sku, qty)| {
                Some(OrderResult {
                    request_id: rid,
                    status: OrderStatus::parse(&status)?,
                    order_id,
                    reason,
                    sku,
                    qty,
                })
            }))
        })
        .await
    }

    /// One confirmed order by id.
    pub async fn order(&self, show: &str, order_id: &str) -> Result<Option<Order>> {
        let (show, order_id) = (show.to_owned(), order_id.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE show_id = ?1 AND order_id = ?2"
                ))?
                .query_row(params![show, order_id], order_from_row)
                .optional()?)
        })
        .await
    }

    // ---- outbox ------------------------------------------------------------------------------

    /// Number of webhook events not yet acknowledged by every endpoint and still retried (for
    /// metrics).
    pub async fn outbox_pending(&self) -> Result<u64> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
                )?
                .query_row([], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    /// Webhook events given up on (dead letters), kept until `retention_ms` after they died.
    pub async fn outbox_dead(&self) -> Result<u64> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM outbox WHERE dead_at IS NOT NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) fn outbox_notify(&self) -> &Notify {
        &self.inner.shared.outbox
    }

    /// Undelivered rows whose next attempt is due at `now`, oldest due first.
    pub(crate) async fn outbox_due(&self, now: i64, limit: usize) -> Result<Vec<OutboxRow>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, event, body, attempts, created_at FROM outbox
                 WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2",
            )?;
            let mut rows = stmt
                .query_map(params![now, limit as i64], |r| {
                    Ok(OutboxRow {
                        id: r.get(0)?,
                        event: r.get(1)?,
                        body: r.get(2)?,
                        attempts: r.get(3)?,
                        created_at: r.get(4)?,
                        acked: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut acks =
                conn.prepare_cached("SELECT endpoint FROM outbox_acks WHERE outbox_id = ?1")?;
            for row in &mut rows {
                row.acked = acks
                    .query_map([row.id], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
            }
            Ok(rows)
        })
        .await
    }

    /// When the earliest undelivered row that is not yet due at `now` becomes due, if any.
    pub(crate) async fn outbox_next_due_after(&self, now: i64) -> Result<Option<i64>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM outbox
                     WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at > ?1",
                )?
                .query_row([now], |r| r.get(0))?)
        })
        .await
    }

    /// Persist the outcome of delivery attempts.
    pub(crate) fn outbox_record(&self, attempts: Vec<Attempt>) -> Pending<()> {
        self.submit(move |conn, _| {
            let now = now_ms();
            for a in &attempts {
                for endpoint in &a.acked {
                    conn.prepare_cached(
                        "INSERT OR IGNORE INTO outbox_acks (outbox_id, endpoint, acked_at)
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![a.id, endpoint, now])?;
                }
                if a.done {
                    conn.prepare_cached(
                        "UPDATE outbox SET attempts = attempts + 1, delivered_at = ?2,
                         last_error = NULL WHERE id = ?1",
                    )?
                    .execute(params![a.id, now])?;
                } else if a.dead {
                    conn.prepare_cached(
                        "UPDATE outbox SET attempts = attempts + 1, dead_at = ?2,
                         last_error = ?3 WHERE id = ?1",
                    )?
                    .execute(params![a.id, now, a.error])?;
                } else {
                    conn.prepare_cached(
                        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2,
                         last_error = ?3 WHERE id = ?1",
                    )?
                    .execute(params![a.id, a.next_attempt_at, a.error])?;
                }
            }
            Ok(())
        })
    }

    /// Delete rows delivered, or given up on, before `before`; returns how many.
    pub(crate) fn outbox_prune(&self, before: i64) -> Pending<usize> {
        self.submit(move |conn, _| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM outbox WHERE (delivered_at IS NOT NULL AND delivered_at < ?1)
                     OR (dead_at IS NOT NULL AND dead_at < ?1)",
                )?
                .execute([before])?)
        })
    }

    // ---- plumbing ----------------------------------------------------------------------------

    /// Queue a job for the writer thread.
    pub(crate) fn submit<T, F>(&self, f: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T> + Send + 'static,
    {
        let (work, rx) = Task::boxed(f);
        match self.inner.tx.try_send(Cmd::Work(work)) {
            Ok(()) => Pending(PendingState::Waiting(rx)),
            Err(TrySendError::Full(_)) => Pending::ready(Err(Error::Busy)),
            Err(TrySendError::Disconnected(_)) => Pending::ready(Err(Error::Closed)),
        }
    }

    /// Run `f` on a pooled read connection on tokio's blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }

    /// Run `f` on a pooled read connection on this thread.
    pub(crate) fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.inner.readers.lock().pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.inner.config)?,
        };
        let out = f(&conn);
        let mut pool = self.inner.readers.lock();
        if pool.len() < self.inner.config.read_connections {
            pool.push(conn);
        }
        out
    }
}

// ---- the order state machine -----------------------------------------------------------------

/// Decide and record one order inside the writer's transaction.
fn apply_order(
    conn: &Connection,
    effects: &mut Effects,
    req: &OrderRequest,
    now: i64,
) -> Result<OrderResult> {
    // A repeat of a recorded request gets the recorded answer, even within the same batch:
    // earlier items of the batch are visible to later ones inside the transaction.
    let prior = conn
        .prepare_cached(
            "SELECT status, order_id, reason, sku, qty FROM orders
             WHERE show_id = ?1 AND viewer = ?2 AND request_id = ?3",
        )?
        .query_row(params![req.show, req.viewer, req.request_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })
        .optional()?;
    if let Some((status, order_id, reason, sku, qty)) = prior {
        let status = OrderStatus::parse(&status)
            .ok_or_else(|| Error::Internal(format!("bad stored order status {status}")))?;
        return Ok(OrderResult {
            request_id: req.request_id.clone(),
            status,
            order_id,
            reason,
            sku,
            qty,
        });
    }

    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM shows WHERE id = ?1")?
        .query_row([&req.show], |r| r.get(0))
        .optional()?;
    let Some(state) = state else {
        return Ok(answer(
            req,
            OrderStatus::Rejected,
            None,
            Some("unknown show".into()),
        ));
    };
    // A replay sells whatever the show's state: its viewers buy from the current catalog.
    if state != ShowState::Live.as_str() && req.replay_at_ms.is_none() {
        let reason = format!("show is {state}, not live");
        record(
            conn,
            req,
            OrderStatus::Rejected,
            None,
            Some(&reason),
            None,
            now,
        )?;
        return Ok(answer(req, OrderStatus::Rejected, None, Some(reason)));
    }

    let reserved: Option<(i64, i64, String)> = conn
        .prepare_cached(
            "UPDATE products SET stock = stock - ?1
             WHERE show_id = ?2 AND sku = ?3 AND stock >= ?1
             RETURNING stock, price, currency",
        )?
        .query_row(params![req.qty, req.show, req.sku], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;

    if let Some((stock, price, currency)) = reserved {
        let order_id = new_id(ORDER_ID_BYTES);
        let seq = record(
            conn,
            req,
            OrderStatus::Confirmed,
            Some(&order_id),
            None,
            Some((price, &currency)),
            now,
        )?;
        let body = serde_json::json!({
            "order_id": order_id,
            "seq": seq,
            "show_id": req.show,
            "sku": req.sku,
            "qty": req.qty,
            "unit_price": price,
            "currency": currency,
            "viewer": req.viewer,
            "request_id": req.request_id,
            "rtp_ts": req.rtp_ts,
            "highlight_id": req.highlight_id,
            "replay_at_ms": req.replay_at_ms,
            "created_at": now,
        });
        enqueue(conn, effects, Event::OrderCreated, &body.to_string(), now)?;
        effects.stock(&req.show, &req.sku, stock);
        return Ok(answer(req, OrderStatus::Confirmed, Some(order_id), None));
    }

    let left: Option<(i64, i64, String)> = conn
        .prepare_cached(
            "SELECT stock, price, currency FROM products WHERE show_id = ?1 AND sku = ?2",
        )?
        .query_row(params![req.show, req.sku], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let (status, reason, price) = match &left {
        Some((0, price, currency)) => (
            OrderStatus::SoldOut,
            "sold out".to_owned(),
            Some((*price, currency.as_str())),
        ),
        Some((n, price, currency)) => (
            OrderStatus::SoldOut,
            format!("only {n} left"),
            Some((*price, currency.as_str())),
        ),
        None => (OrderStatus::Rejected, "unknown sku".to_owned(), None),
    };
    record(conn, req, status, None, Some(&reason), price, now)?;
    Ok(answer(req, status, None, Some(reason)))
}

/// Insert an order row; returns its `seq`.
fn record(
    conn: &Connection,
    req: &OrderRequest,
    status: OrderStatus,
    order_id: Option<&str>,
    reason: Option<&str>,
    price: Option<(i64, &str)>,
    now: i64,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO orders (order_id, show_id, sku, qty, viewer, request_id, status, reason,
                             unit_price, currency, rtp_ts, highlight_id, created_at,
                             replay_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        order_id,
        req.show,
        req.sku,
        req.qty,
        req.viewer,
        req.request_id,
        status.as_str(),
        reason,
        price.map(|p| p.0),
        price.map(|p| p.1),
        req.rtp_ts,
        req.highlight_id,
        now,
        req.replay_at_ms,
    ])?;
    Ok(conn.last_insert_rowid())
}

fn answer(
    req: &OrderRequest,
    status: OrderStatus,
    order_id: Option<String>,
    reason: Option<String>,
) -> OrderResult {
    OrderResult {
        request_id: req.request_id.clone(),
        status,
        order_id,
        reason,
        sku: req.sku.clone(),
        qty: req.qty,
    }
}

/// Append a webhook event to the outbox inside the current transaction.
fn enqueue(
    conn: &Connection,
    effects: &mut Effects,
    event: Event,
    body: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (event, body, attempts, next_attempt_at, created_at)
         VALUES (?1, ?2, 0, ?3, ?3)",
    )?
    .execute(params![event.as_str(), body, now])?;
    effects.outbox();
    Ok(())
}

// ---- validation ------------------------------------------------------------------------------

fn validate_order(req: &OrderRequest, max_qty: u32) -> std::result::Result<(), String> {
    if req.qty == 0 || req.qty > max_qty {
        return Err(format!("qty must be between 1 and {max_qty}"));
    }
    if !valid_id(&req.show) {
        return Err("malformed show id".into());
    }
    if !valid_sku(&req.sku) {
        return Err("malformed sku".into());
    }
    if !valid_text(&req.request_id, 128) {
        return Err("request_id must be 1..=128 printable bytes".into());
    }
    if !valid_text(&req.viewer, 256) {
        return Err("malformed viewer".into());
    }
    if let Some(h) = &req.highlight_id {
        if !valid_text(h, 128) {
            return Err("malformed highlight_id".into());
        }
    }
    Ok(())
}

fn validate_new_show(new: &NewShow) -> Result<()> {
    if let Some(id) = &new.id {
        if !valid_id(id) {
            return Err(Error::Invalid(
                "show id must be 1..=64 characters of [A-Za-z0-9_-]".into(),
            ));
        }
    }
    validate_title(&new.title)?;
    validate_codecs(&new.video_codecs)
}

fn validate_show_update(update: &ShowUpdate) -> Result<()> {
    if let Some(t) = &update.title {
        validate_title(t)?;
    }
    if let Some(c) = &update.video_codecs {
        validate_codecs(c)?;
    }
    Ok(())
}

fn validate_title(title: &str) -> Result<()> {
    if title.trim().is_empty() || title.len() > 500 {
        return Err(Error::Invalid("title must be 1..=500 bytes".into()));
    }
    Ok(())
}

fn validate_codecs(codecs: &[String]) -> Result<()> {
    if codecs.len() > 16 || codecs.iter().any(|c| !valid_text(c, 32)) {
        return Err(Error::Invalid("malformed video_codecs".into()));
    }
    Ok(())
}

fn validate_product(spec: &ProductSpec) -> Result<()> {
    if !valid_sku(&spec.sku) {
        return Err(Error::Invalid(
            "sku must be 1..=128 bytes without '/' or control characters".into(),
        ));
    }
    validate_title(&spec.title)?;
    if spec.price < 0 {
        return Err(Error::Invalid("price must be >= 0".into()));
    }
    if spec.currency.len() != 3 || !spec.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::Invalid(
            "currency must be an ISO 4217 code like USD".into(),
        ));
    }
    if spec.stock.is_some_and(|s| s < 0) {
        return Err(Error::Invalid("stock must be >= 0".into()));
    }
    if spec
        .image_url
        .as_ref()
        .is_some_and(|u| !valid_text(u, 2048))
    {
        return Err(Error::Invalid("malformed image_url".into()));
    }
    Ok(())
}

fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_sku(s: &str) -> bool {
    valid_text(s, 128) && !s.contains('/')
}

fn valid_text(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && !s.chars().any(char::is_control)
}

fn new_id(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

// ---- rows ------------------------------------------------------------------------------------

const SHOW_COLUMNS: &str =
    "id, title, scheduled_at, video_codecs, state, created_at, started_at, ended_at, peak_viewers";
const PRODUCT_COLUMNS: &str = "show_id, sku, title, price, currency, image_url, stock";
const ORDER_COLUMNS: &str = "seq, order_id, show_id, sku, qty, viewer, request_id, status, \
     unit_price, currency, rtp_ts, highlight_id, created_at, replay_at_ms";

fn conversion(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown enum value {0:?}")]
struct BadEnum(String);

fn show_from_row(r: &Row<'_>) -> rusqlite::Result<Show> {
    let codecs: String = r.get(3)?;
    let state: String = r.get(4)?;
    Ok(Show {
        id: r.get(0)?,
        title: r.get(1)?,
        scheduled_at: r.get(2)?,
        video_codecs: serde_json::from_str(&codecs).map_err(|e| conversion(3, e))?,
        state: ShowState::parse(&state).ok_or_else(|| conversion(4, BadEnum(state)))?,
        created_at: r.get(5)?,
        started_at: r.get(6)?,
        ended_at: r.get(7)?,
        peak_viewers: r.get(8)?,
    })
}

fn product_from_row(r: &Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        show_id: r.get(0)?,
        sku: r.get(1)?,
        title: r.get(2)?,
        price: r.get(3)?,
        currency: r.get(4)?,
        image_url: r.get(5)?,
        stock: r.get(6)?,
    })
}

fn order_from_row(r: &Row<'_>) -> rusqlite::Result<Order> {
    let status: String = r.get(7)?;
    Ok(Order {
        seq: r.get(0)?,
        order_id: r.get(1)?,
        show_id: r.get(2)?,
        sku: r.get(3)?,
        qty: r.get(4)?,
        viewer: r.get(5)?,
        request_id: r.get(6)?,
        status: OrderStatus::parse(&status).ok_or_else(|| conversion(7, BadEnum(status)))?,
        unit_price: r.get(8)?,
        currency: r.get(9)?,
        rtp_ts: r.get(10)?,
        highlight_id: r.get(11)?,
        created_at: r.get(12)?,
        replay_at_ms: r.get(13)?,
    })
}

fn load_show(conn: &Connection, id: &str) -> Result<Option<Show>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {SHOW_COLUMNS} FROM shows WHERE id = ?1"))?
        .query_row([id], show_from_row)
        .optional()?)
}

// ---- connections -----------------------------------------------------------------------------

fn open_writer(config: &Config) -> Result<Connection> {
    let conn = Connection::open(&config.path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Internal(format!(
            "SQLite refused WAL mode (got {mode}) for {}",
            config.path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", config.synchronous.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn open_reader(config: &Config) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(&config.path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Writes go through the writer thread only; make a stray write on a reader an error.
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match version {
        0 => {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
            Ok(())
        }
        // 1 → 2: webhook rows can be given up (dead letters).
        // 2 → 3: orders placed during a replay keep the moment.
        // Each column is added when missing, so a partly migrated file is fine too.
        1 | 2 => {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let done = (|| -> Result<()> {
                add_column(conn, "outbox", "dead_at", "INTEGER")?;
                add_column(conn, "orders", "replay_at_ms", "INTEGER")?;
                conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
                Ok(())
            })();
            match done {
                Ok(()) => conn.execute_batch("COMMIT")?,
                Err(_) => conn.execute_batch("ROLLBACK")?,
            }
            done
        }
        SCHEMA_VERSION => Ok(()),
        v => Err(Error::Internal(format!(
            "database schema version {v} is newer than this hawker ({SCHEMA_VERSION})"
        ))),
    }
}

/// `ALTER TABLE table ADD COLUMN column decl`, unless the column exists.
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> Result<()> {
    let has: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

fn load_mirror(conn: &Connection) -> Result<Mirror> {
    let mut mirror = Mirror::new();
    let mut stmt = conn.prepare("SELECT show_id, sku, stock FROM products")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (show, sku, stock) = row?;
        mirror.entry(show).or_default().insert(sku, stock);
    }
    Ok(mirror)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rules() {
        assert!(valid_id("show_1-A"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"x".repeat(65)));
        assert!(valid_sku("TSHIRT.red:XL"));
        assert!(!valid_sku("a/b"));
        assert!(!valid_sku("a\nb"));
        let req = OrderRequest {
            show: "s".into(),
            sku: "k".into(),
            qty: 1,
            viewer: "v".into(),
            request_id: "r".into(),
            rtp_ts: None,
            highlight_id: None,
            replay_at_ms: None,
        };
        assert!(validate_order(&req, 10).is_ok());
        assert!(validate_order(
            &OrderRequest {
                qty: 0,
                ..req.clone()
            },
            10
        )
        .is_err());
        assert!(validate_order(
            &OrderRequest {
                qty: 11,
                ..req.clone()
            },
            10
        )
        .is_err());
        assert!(validate_order(
            &OrderRequest {
                request_id: String::new(),
                ..req
            },
            10
        )
        .is_err());
    }

    #[test]
    fn ids_are_hex_of_the_right_length() {
        let id = new_id(ORDER_ID_BYTES);
        assert_eq!(id.len(), ORDER_ID_BYTES * 2);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_id(ORDER_ID_BYTES));
    }
}
