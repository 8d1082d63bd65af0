//! The group-commit writer: one OS thread that owns the only write connection.
//!
//! Callers enqueue [`Work`] items on a bounded channel. The thread blocks for the first item,
//! then drains whatever else is already queued (up to `max_batch`) and applies the lot in one
//! `BEGIN IMMEDIATE … COMMIT`. Each item runs inside its own `SAVEPOINT`, so an item that fails
//! (a constraint, a conflict) is rolled back alone while the rest of the batch commits. Replies
//! are sent only after `COMMIT` returns; if the commit fails, every item in the batch gets the
//! error and none of its effects reach the in-memory mirror.
//!
//! Why group commit: with `synchronous=FULL` each commit costs an fsync of the WAL, typically
//! 0.1–10 ms. While one batch is being fsynced the next batch accumulates, so under load the
//! fsync cost is shared by every order that arrived meanwhile, and at low load a lone order pays
//! exactly one fsync with no added delay (the writer never waits for a batch to fill).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use parking_lot::RwLock;
use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot, Notify};

use super::{Error, Result, StockChange};

/// Stock per show, then per SKU: the in-memory mirror of `products.stock`.
pub(crate) type Mirror = HashMap<String, HashMap<String, i64>>;

/// State the writer publishes after each commit.
pub(crate) struct Shared {
    pub mirror: RwLock<Mirror>,
    pub outbox: Notify,
    pub stock_tx: broadcast::Sender<StockChange>,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Work items in committed transactions.
    pub items: AtomicU64,
    /// Transactions that failed to commit (every item answered with an error).
    pub failed: AtomicU64,
}

/// Side effects of one work item on in-memory state, applied only once its batch commits.
#[derive(Default)]
pub(crate) struct Effects {
    changes: Vec<Change>,
    outbox: bool,
}

enum Change {
    Stock {
        show: String,
        sku: String,
        stock: i64,
    },
    ProductGone {
        show: String,
        sku: String,
    },
    ShowGone {
        show: String,
    },
}

impl Effects {
    pub fn stock(&mut self, show: &str, sku: &str, stock: i64) {
        self.changes.push(Change::Stock {
            show: show.to_owned(),
            sku: sku.to_owned(),
            stock,
        });
    }

    pub fn product_gone(&mut self, show: &str, sku: &str) {
        self.changes.push(Change::ProductGone {
            show: show.to_owned(),
            sku: sku.to_owned(),
        });
    }

    pub fn show_gone(&mut self, show: &str) {
        self.changes.push(Change::ShowGone {
            show: show.to_owned(),
        });
    }

    /// An outbox row was inserted: wake the webhook worker after commit.
    pub fn outbox(&mut self) {
        self.outbox = true;
    }

    fn merge(&mut self, other: Effects) {
        self.changes.extend(other.changes);
        self.outbox |= other.outbox;
    }
}

impl Shared {
    fn publish(&self, effects: Effects) {
        if !effects.changes.is_empty() {
            let mut updates: Vec<StockChange> = Vec::new();
            {
                let mut mirror = self.mirror.write();
                // Coalesce to the final value per product, in first-touch order.
                let mut seen: HashSet<(String, String)> = HashSet::new();
                let mut touched: Vec<(String, String)> = Vec::new();
                for change in effects.changes {
                    match change {
                        Change::Stock { show, sku, stock } => {
                            mirror
                                .entry(show.clone())
                                .or_default()
                                .insert(sku.clone(), stock);
                            let key = (show, sku);
                            if seen.insert(key.clone()) {
                                touched.push(key);
                            }
                        }
                        Change::ProductGone { show, sku } => {
                            if let Some(m) = mirror.get_mut(&show) {
                                m.remove(&sku);
                                if m.is_empty() {
                                    mirror.remove(&show);
                                }
                            }
                        }
                        Change::ShowGone { show } => {
                            mirror.remove(&show);
                        }
                    }
                }
                for (show, sku) in touched {
                    if let Some(&stock) = mirror.get(&show).and_then(|m| m.get(&sku)) {
                        updates.push(StockChange {
                            show_id: show,
                            sku,
                            stock,
                        });
                    }
                }
            }
            for update in updates {
                // No receivers is fine: nobody is listening to stock changes.
                let _ = self.stock_tx.send(update);
            }
        }
        if effects.outbox {
            self.outbox.notify_one();
        }
    }
}

/// One unit of work for the writer: apply inside a savepoint, reply after the batch commits.
pub(crate) trait Work: Send {
    /// Run against the open transaction. `false` rolls this item's savepoint back.
    fn apply(&mut self, conn: &Connection, effects: &mut Effects) -> bool;
    /// Deliver the answer. `commit` is the outcome of the batch's `COMMIT`.
    fn reply(self: Box<Self>, commit: Result<()>);
}

/// Messages to the writer thread.
pub(crate) enum Cmd {
    Work(Box<dyn Work>),
    /// Finish what is queued before this message, then exit.
    Shutdown,
}

/// A closure-backed [`Work`] with a oneshot reply.
pub(crate) struct Task<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    tx: oneshot::Sender<Result<T>>,
}

impl<T, F> Task<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut Effects) -> Result<T> + Send + 'static,
{
    pub fn boxed(f: F) -> (Box<dyn Work>, oneshot::Receiver<Result<T>>) {
        let (tx, rx) = oneshot::channel();
        let task = Task {
            f: Some(f),
            out: None,
            tx,
        };
        (Box::new(task), rx)
    }
}

impl<T, F> Work for Task<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut Effects) -> Result<T> + Send + 'static,
{
    fn apply(&mut self, conn: &Connection, effects: &mut Effects) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn, effects)))
            .unwrap_or_else(|_| Err(Error::Internal("commerce writer job panicked".into())));
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn reply(self: Box<Self>, commit: Result<()>) {
        let answer = match (self.out, commit) {
            // The item's own failure wins: it was rolled back whatever the batch did.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(e)) => Err(e),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(Error::Internal("commerce job never ran".into())),
        };
        // The caller may have gone away; its answer is durable regardless.
        let _ = self.tx.send(answer);
    }
}

/// The writer thread's body. Returns when the channel closes or on [`Cmd::Shutdown`].
pub(crate) fn run(conn: Connection, rx: Receiver<Cmd>, shared: Arc<Shared>, max_batch: usize) {
    let max_batch = max_batch.max(1);
    let mut batch: Vec<Box<dyn Work>> = Vec::with_capacity(max_batch);
    let mut shutdown = false;
    while !shutdown {
        match rx.recv() {
            Ok(Cmd::Work(w)) => batch.push(w),
            Ok(Cmd::Shutdown) | Err(_) => break,
        }
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Cmd::Work(w)) => batch.push(w),
                Ok(Cmd::Shutdown) => {
                    shutdown = true;
                    break;
                }
                Err(_) => break,
            }
        }
        commit_batch(&conn, &mut batch, &shared);
    }
}

fn commit_batch(conn: &Connection, batch: &mut Vec<Box<dyn Work>>, shared: &Shared) {
    let mut effects = Effects::default();
    let outcome = apply_batch(conn, batch, &mut effects);
    match outcome {
        Ok(()) => {
            shared.batches.fetch_add(1, Ordering::Relaxed);
            shared
                .items
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            shared.publish(effects);
            for w in batch.drain(..) {
                w.reply(Ok(()));
            }
        }
        Err(e) => {
            // Best effort: the failed statement may already have ended the transaction.
            let _ = conn.execute_batch("ROLLBACK");
            shared.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, items = batch.len(), "commerce batch failed, rolled back");
            let err = Error::from(e);
            for w in batch.drain(..) {
                w.reply(Err(err.clone()));
            }
        }
    }
}

fn apply_batch(
    conn: &Connection,
    batch: &mut [Box<dyn Work>],
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    for w in batch.iter_mut() {
        conn.prepare_cached("SAVEPOINT item")?.execute([])?;
        let mut mine = Effects::default();
        if w.apply(conn, &mut mine) {
            conn.prepare_cached("RELEASE item")?.execute([])?;
            effects.merge(mine);
        } else {
            conn.prepare_cached("ROLLBACK TO item")?.execute([])?;
            conn.prepare_cached("RELEASE item")?.execute([])?;
        }
    }
    #[cfg(feature = "fault-injection")]
    if let Some(dir) = conn.path().and_then(|p| std::path::Path::new(p).parent()) {
        crate::fault::pause_point("commit", dir, true);
    }
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(())
}
