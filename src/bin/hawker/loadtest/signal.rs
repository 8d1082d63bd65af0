//! WHIP/WHEP signalling for the load generator: one thread with a small tokio runtime and a
//! reqwest client (http and https), many requests in flight, results delivered by callback.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, Semaphore};

/// An HTTP request.
#[derive(Debug, Clone)]
pub enum Req {
    /// POST an SDP offer.
    Post {
        /// Full URL.
        url: String,
        /// Bearer token.
        token: Option<String>,
        /// The offer.
        sdp: String,
    },
    /// DELETE a session.
    Delete {
        /// Full URL.
        url: String,
    },
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
    /// `Location` header.
    pub location: Option<String>,
}

type Done = Box<dyn FnOnce(anyhow::Result<Resp>) + Send>;

struct Job {
    req: Req,
    done: Done,
}

/// Submits requests to the signalling thread; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: Option<mpsc::UnboundedSender<Option<Job>>>,
}

impl Handle {
    /// Run `req` and call `done` with the outcome (on the signalling thread).
    pub fn submit(&self, req: Req, done: impl FnOnce(anyhow::Result<Resp>) + Send + 'static) {
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.send(Some(Job {
                req,
                done: Box::new(done),
            })) {
                if let Some(job) = e.0 {
                    (job.done)(Err(anyhow::anyhow!("signalling stopped")));
                }
            }
        }
    }

    /// Run `req` and wait for the outcome.
    pub fn call(&self, req: Req) -> anyhow::Result<Resp> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.submit(req, move |r| {
            let _ = tx.send(r);
        });
        rx.recv_timeout(Duration::from_secs(20))
            .map_err(|_| anyhow::anyhow!("signalling timed out"))?
    }
}

/// The signalling thread.
pub struct Signaller {
    tx: Option<mpsc::UnboundedSender<Option<Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Signaller {
    /// Start with at most `concurrency` requests in flight.
    pub fn start(concurrency: usize) -> anyhow::Result<Signaller> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(concurrency)
            .build()
            .context("HTTP client")?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<Job>>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("signalling runtime")?;
        let thread = std::thread::Builder::new()
            .name("loadtest-http".into())
            .spawn(move || {
                rt.block_on(async move {
                    let sem = Arc::new(Semaphore::new(concurrency));
                    while let Some(Some(job)) = rx.recv().await {
                        let permit = sem.clone().acquire_owned().await.expect("open semaphore");
                        let client = client.clone();
                        tokio::spawn(async move {
                            let r = execute(&client, job.req).await;
                            (job.done)(r);
                            drop(permit);
                        });
                    }
                    // Wait for everything in flight.
                    let _ = sem.acquire_many(concurrency as u32).await;
                })
            })?;
        Ok(Signaller {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// A handle that submits requests from any thread.
    pub fn handle(&self) -> Handle {
        Handle {
            tx: self.tx.clone(),
        }
    }

    /// Finish the requests in flight and stop.
    pub fn stop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(None);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Signaller {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn execute(client: &reqwest::Client, req: Req) -> anyhow::Result<Resp> {
    let resp = match req {
        Req::Post { url, token, sdp } => {
            let mut r = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/sdp")
                .body(sdp);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send().await.with_context(|| format!("POST {url}"))?
        }
        Req::Delete { url } => client
            .delete(&url)
            .send()
            .await
            .with_context(|| format!("DELETE {url}"))?,
    };
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.text().await.unwrap_or_default();
    Ok(Resp {
        status,
        body,
        location,
    })
}

/// Resolve a `Location` header against the base URL (`http://host:port`).
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            location.trim_start_matches('/')
        )
    }
}
