//! Webhook delivery from the persisted outbox: signed, retried with backoff, at least once.
//!
//! Every event row is written by the store in the same transaction as the fact it reports
//! (`order.created` with the order, `show.live` / `show.ended` with the state change), so an event
//! exists if and only if its fact committed. The [`Worker`] then POSTs each due row to every
//! configured endpoint that has not acknowledged it yet:
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Hawker-Event: order.created
//! X-Hawker-Delivery: 42                      (the outbox id: identical on every retry)
//! X-Hawker-Signature: sha256=<hex HMAC-SHA256(endpoint secret, raw body)>
//!
//! {"id":42,"type":"order.created","created_at":1700000000000,"data":{…}}
//! ```
//!
//! Any 2xx is an acknowledgement, recorded per endpoint, so a healthy endpoint is not sent the
//! event again while a failing one is retried. Anything else (error status, timeout, refused
//! connection) schedules the next attempt `min(base · 2^(attempts−1), max)` later, with the
//! upper half of that delay jittered, persisted in `next_attempt_at` so a restart resumes the
//! schedule instead of losing or re-bursting it. A row still not acknowledged by every endpoint
//! `dead_after_ms` after it was created, on a failed attempt, becomes a **dead letter**: it is
//! no longer retried, a warning names it, and `hawker_webhook_outbox_dead` counts it (its
//! `last_error` stays in the database). Delivered and dead rows are pruned after
//! `retention_ms`.
//!
//! What receivers must do: verify the signature over the raw body with [`verify`]'s algorithm,
//! dedupe by `X-Hawker-Delivery` (a crash between a 2xx and its recording resends the event), and
//! not rely on ordering across events (a retried `order.created` may arrive after `show.ended`).
//! With no endpoint configured, rows are marked delivered as they come due.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::task::JoinSet;

use super::store::{Attempt, OutboxRow};
use super::{now_ms, Error, Result, Store};

/// Webhook configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where to POST events. Default: none.
    pub endpoints: Vec<Endpoint>,
    /// First retry delay in milliseconds. Default 1000.
    pub backoff_base_ms: u64,
    /// Longest retry delay in milliseconds. Default 600000 (10 min).
    pub backoff_max_ms: u64,
    /// Per-request timeout in milliseconds. Default 10000.
    pub timeout_ms: u64,
    /// Events in flight at once (each to all its endpoints). Default 16.
    pub concurrency: usize,
    /// Longest idle sleep between rounds in milliseconds (new events wake the worker at once).
    /// Default 30000.
    pub poll_ms: u64,
    /// Keep delivered rows this long, in milliseconds, before pruning. Default 7 days.
    pub retention_ms: u64,
    /// Give a row up (dead letter) when an attempt fails this long, in milliseconds, after it
    /// was created. Default 3 days.
    pub dead_after_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoints: Vec::new(),
            backoff_base_ms: 1_000,
            backoff_max_ms: 600_000,
            timeout_ms: 10_000,
            concurrency: 16,
            poll_ms: 30_000,
            retention_ms: 7 * 24 * 3600 * 1000,
            dead_after_ms: 3 * 24 * 3600 * 1000,
        }
    }
}

/// One receiver of webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `http://` or `https://` URL. Also the endpoint's identity in the acknowledgement table:
    /// changing it makes undelivered events go to the new URL.
    pub url: String,
    /// HMAC key shared with the receiver.
    pub secret: String,
}

/// `X-Hawker-Signature` value for `body` under `secret`: `sha256=<lower-case hex>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Check an `X-Hawker-Signature` header in constant time: what a receiver does.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(tag) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The exact bytes POSTed for an outbox row. `data` is the stored JSON, spliced verbatim so
/// the body (and its signature) is identical on every retry.
pub(crate) fn envelope(row: &OutboxRow) -> String {
    let event = serde_json::to_string(&row.event).unwrap_or_else(|_| "\"\"".into());
    format!(
        r#"{{"id":{},"type":{},"created_at":{},"data":{}}}"#,
        row.id, event, row.created_at, row.body
    )
}

/// Delay before attempt number `attempts + 1`, given `attempts` failures so far (≥ 1), before
/// jitter.
pub fn backoff(config: &Config, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(32);
    let ms = config
        .backoff_base_ms
        .saturating_mul(1u64 << exp)
        .min(config.backoff_max_ms);
    Duration::from_millis(ms)
}

/// Delivers the outbox. Run it with `tokio::spawn(worker.run())`; abort the task to stop it
/// (an interrupted delivery is simply retried later).
pub struct Worker {
    store: Store,
    config: Config,
    client: reqwest::Client,
}

impl Worker {
    /// A worker for `store`'s outbox.
    pub fn new(store: Store, config: Config) -> Result<Worker> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .user_agent(concat!("hawker-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("webhook client: {e}")))?;
        Ok(Worker {
            store,
            config,
            client,
        })
    }

    /// Deliver until the store is closed (or the task is aborted).
    ///
    /// A pipeline rather than rounds: up to `concurrency` rows are in flight at once, each
    /// outcome is recorded as soon as it is known, and a freed slot is refilled at once, so one
    /// slow endpoint holds one slot, not the whole queue. Between completions the worker sleeps
    /// until the next row is due, a new event commits, or `poll_ms` passes. Delivered rows older
    /// than `retention_ms` are pruned hourly.
    pub async fn run(self) {
        let concurrency = self.config.concurrency.max(1);
        let idle = Duration::from_millis(self.config.poll_ms.max(1));
        let mut in_flight: HashMap<tokio::task::Id, i64> = HashMap::new();
        let mut set: JoinSet<Attempt> = JoinSet::new();
        let mut last_prune = 0i64;
        loop {
            let now = now_ms();
            if now - last_prune > 3_600_000 {
                last_prune = now;
                let before = now.saturating_sub(self.config.retention_ms as i64);
                match self.store.outbox_prune(before).await {
                    Ok(_) => {}
                    Err(Error::Closed) => return,
                    Err(e) => tracing::warn!(error = %e, "webhook outbox prune failed"),
                }
            }

            // Refill free slots with due rows that are not already in flight.
            let free = concurrency - set.len();
            let mut sleep = idle;
            if free > 0 {
                let busy: HashSet<i64> = in_flight.values().copied().collect();
                match self.store.outbox_due(now, free + busy.len()).await {
                    Ok(rows) => {
                        let fresh: Vec<OutboxRow> = rows
                            .into_iter()
                            .filter(|r| !busy.contains(&r.id))
                            .take(free)
                            .collect();
                        let starved = fresh.len() < free;
                        for row in fresh {
                            let id = row.id;
                            let (client, config) = (self.client.clone(), self.config.clone());
                            let task =
                                set.spawn(async move { deliver(&client, &config, row).await });
                            in_flight.insert(task.id(), id);
                        }
                        if starved {
                            // Everything due is in flight: sleep until the next future row.
                            if let Ok(Some(at)) = self.store.outbox_next_due_after(now).await {
                                let wait = at.saturating_sub(now_ms()).max(0) as u64;
                                sleep = Duration::from_millis(wait).min(idle);
                            }
                        } else {
                            sleep = Duration::ZERO;
                        }
                    }
                    Err(Error::Closed) => return,
                    Err(e) => tracing::warn!(error = %e, "webhook outbox read failed"),
                }
            }

            tokio::select! {
                Some(done) = set.join_next_with_id(), if !set.is_empty() => {
                    let attempt = match done {
                        Ok((task, attempt)) => {
                            in_flight.remove(&task);
                            attempt
                        }
                        Err(e) => {
                            // Not recorded: the row stays due and is retried.
                            in_flight.remove(&e.id());
                            tracing::error!(error = %e, "webhook delivery task failed");
                            continue;
                        }
                    };
                    match self.store.outbox_record(vec![attempt]).await {
                        Ok(()) => {}
                        Err(Error::Closed) => return,
                        // Not recorded: the row stays due and is delivered again.
                        Err(e) => tracing::warn!(error = %e, "webhook outcome not recorded"),
                    }
                }
                _ = self.store.outbox_notify().notified() => {}
                _ = tokio::time::sleep(sleep), if set.len() < concurrency => {}
            }
        }
    }

    /// Attempt every row due now (at most `concurrency` of them) once, record the outcomes, and
    /// return how many rows were attempted. For tools and tests; [`Worker::run`] is the service.
    pub async fn round(&self) -> Result<usize> {
        let rows = self
            .store
            .outbox_due(now_ms(), self.config.concurrency.max(1))
            .await?;
        let n = rows.len();
        let mut set = JoinSet::new();
        for row in rows {
            let (client, config) = (self.client.clone(), self.config.clone());
            set.spawn(async move { deliver(&client, &config, row).await });
        }
        let mut attempts = Vec::with_capacity(n);
        while let Some(done) = set.join_next().await {
            match done {
                Ok(attempt) => attempts.push(attempt),
                Err(e) => tracing::error!(error = %e, "webhook delivery task failed"),
            }
        }
        if !attempts.is_empty() {
            self.store.outbox_record(attempts).await?;
        }
        Ok(n)
    }
}

/// POST one row, concurrently, to every endpoint that has not acknowledged it yet.
async fn deliver(client: &reqwest::Client, config: &Config, row: OutboxRow) -> Attempt {
    let body = envelope(&row);
    let mut posts = JoinSet::new();
    for endpoint in &config.endpoints {
        if row.acked.contains(&endpoint.url) {
            continue;
        }
        let request = client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("x-hawker-event", row.event.as_str())
            .header("x-hawker-delivery", row.id.to_string())
            .header(
                "x-hawker-signature",
                sign(endpoint.secret.as_bytes(), body.as_bytes()),
            )
            .body(body.clone());
        let url = endpoint.url.clone();
        posts.spawn(async move {
            let outcome = match request.send().await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("{url}: HTTP {}", resp.status())),
                Err(e) => Err(format!("{url}: {e}")),
            };
            (url, outcome)
        });
    }
    let mut acked = Vec::new();
    let mut error = None;
    while let Some(done) = posts.join_next().await {
        match done {
            Ok((url, Ok(()))) => acked.push(url),
            Ok((_, Err(e))) => error = Some(e),
            Err(e) => error = Some(format!("delivery task failed: {e}")),
        }
    }
    let done = config
        .endpoints
        .iter()
        .all(|e| row.acked.contains(&e.url) || acked.contains(&e.url));
    let failures = row.attempts.saturating_add(1);
    if let Some(e) = &error {
        tracing::debug!(id = row.id, event = %row.event, attempt = failures, error = %e,
            "webhook attempt failed");
    }
    // Equal jitter: keep half the delay, randomise the other half, so endpoints recovering
    // from an outage are not hit by every pending event in the same millisecond.
    let delay = backoff(config, failures).as_millis() as i64;
    let half = delay / 2;
    let jittered = delay - half + rand::thread_rng().gen_range(0..=half);
    let now = now_ms();
    let dead = !done && now.saturating_sub(row.created_at) >= config.dead_after_ms as i64;
    if dead {
        tracing::warn!(id = row.id, event = %row.event, attempts = failures,
            error = error.as_deref().unwrap_or(""),
            "webhook given up (dead letter): not acknowledged by every endpoint within \
             commerce.webhook_dead_after");
    }
    Attempt {
        id: row.id,
        acked,
        done,
        next_attempt_at: now + jittered,
        error,
        dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = sign(b"k", b"body");
        assert!(verify(b"k", b"body", &sig));
        assert!(!verify(b"k", b"body!", &sig));
        assert!(!verify(b"other", b"body", &sig));
        assert!(!verify(b"k", b"body", "sha1=00"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = Config {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..Config::default()
        };
        let ms: Vec<u128> = (1..=6).map(|a| backoff(&c, a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&c, 1000).as_millis(), 1000);
    }

    #[test]
    fn envelope_is_valid_json_and_stable() {
        let row = OutboxRow {
            id: 7,
            event: "order.created".into(),
            body: r#"{"order_id":"x","qty":1}"#.into(),
            attempts: 3,
            created_at: 1_700_000_000_000,
            acked: vec![],
        };
        let a = envelope(&row);
        assert_eq!(a, envelope(&row));
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["type"], "order.created");
        assert_eq!(v["data"]["order_id"], "x");
    }
}
