//! What a long run needs beyond the load itself: a webhook receiver that flaps (so the server's
//! outbox has to retry and drain), a scrape of the server's Prometheus endpoint (peers and
//! outbox depth), and the plateau check over the resources a leak would grow.
//!
//! Both helpers speak the smallest HTTP/1.1 that works against hawker, over plain TCP on the
//! address given: they are measuring instruments, not clients to reuse.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

/// Deliveries the flapping receiver saw.
#[derive(Debug, Default)]
pub struct FlapCounts {
    /// Answered 204.
    pub accepted: AtomicU64,
    /// Answered 503 (the server must retry these).
    pub refused: AtomicU64,
}

/// A webhook receiver on `addr` that answers 204 for `period`, then 503 for `period`, and so
/// on, until `stop`. Returns the counts it keeps.
pub fn flapping_webhook(
    addr: SocketAddr,
    period: Duration,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Arc<FlapCounts>> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("webhook receiver on {addr}"))?;
    listener.set_nonblocking(true)?;
    let counts = Arc::new(FlapCounts::default());
    let c = counts.clone();
    let started = Instant::now();
    std::thread::Builder::new()
        .name("loadtest-webhook".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let turn = (started.elapsed().as_secs_f64()
                            / period.as_secs_f64().max(0.001))
                            as u64;
                        let up = turn.is_multiple_of(2);
                        let _ = answer_webhook(s, up, &c);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
    Ok(counts)
}

/// Read one request (head and `Content-Length` body) and answer it; keep-alive is not offered.
fn answer_webhook(s: TcpStream, up: bool, counts: &FlapCounts) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    r.read_exact(&mut body)?;
    let status = if up {
        counts.accepted.fetch_add(1, Ordering::Relaxed);
        "204 No Content"
    } else {
        counts.refused.fetch_add(1, Ordering::Relaxed);
        "503 Service Unavailable"
    };
    let mut w = s;
    write!(
        w,
        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    w.flush()
}

/// The figures a soak follows, from one scrape of the server's `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Scrape {
    /// `hawker_peers`, summed over roles and shards.
    pub peers: f64,
    /// `hawker_webhook_outbox_pending`.
    pub outbox_pending: f64,
    /// `process_open_fds`.
    pub open_fds: f64,
}

/// GET `url` (`http://host:port/path`) and read the soak's gauges; `None` when unreachable.
pub fn scrape(url: &str) -> Option<Scrape> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let addr = hostport.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {hostport}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let sums = sum_series(body);
    Some(Scrape {
        peers: sums.get("hawker_peers").copied().unwrap_or(0.0),
        outbox_pending: sums
            .get("hawker_webhook_outbox_pending")
            .copied()
            .unwrap_or(0.0),
        open_fds: sums.get("process_open_fds").copied().unwrap_or(0.0),
    })
}

/// Each metric's value summed over its label sets (Prometheus text format).
fn sum_series(body: &str) -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for l in body.lines() {
        if l.starts_with('#') || l.trim().is_empty() {
            continue;
        }
        let name_end = l.find(['{', ' ']).unwrap_or(l.len());
        let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        *out.entry(l[..name_end].to_string()).or_default() += v;
    }
    out
}

/// One resource over a run: where it stood once the load was up, half-way, at the end, and its
/// peak; `plateau` when the last third of the run did not climb above the middle third's peak
/// by more than `slack` (a leak climbs on).
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// Resource.
    pub name: String,
    /// Value at the first sample after the join phase.
    pub start: f64,
    /// Value at the half-way sample.
    pub mid: f64,
    /// Value at the last sample.
    pub end: f64,
    /// Largest value.
    pub max: f64,
    /// Peak of the middle third of the run.
    pub mid_third_max: f64,
    /// Peak of the last third.
    pub last_third_max: f64,
    /// Allowed growth from the middle third to the last.
    pub slack: f64,
    /// The last third stayed within `slack` of the middle third's peak.
    pub plateau: bool,
}

/// The trend of `values` (one per sample, in order, from the end of the join phase on).
pub fn trend(name: &str, values: &[f64], slack: f64) -> Option<Trend> {
    if values.len() < 6 {
        return None;
    }
    let n = values.len();
    let peak = |s: &[f64]| s.iter().copied().fold(f64::MIN, f64::max);
    let mid_third_max = peak(&values[n / 3..2 * n / 3]);
    let last_third_max = peak(&values[2 * n / 3..]);
    Some(Trend {
        name: name.into(),
        start: values[0],
        mid: values[n / 2],
        end: values[n - 1],
        max: peak(values),
        mid_third_max,
        last_third_max,
        slack,
        plateau: last_third_max <= mid_third_max + slack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_over_labels() {
        let body = "# HELP hawker_peers x\n# TYPE hawker_peers gauge\n\
                    hawker_peers{role=\"viewer\",shard=\"0\"} 3\n\
                    hawker_peers{role=\"viewer\",shard=\"1\"} 4\n\
                    hawker_peers{role=\"publisher\",shard=\"0\"} 1\n\
                    hawker_webhook_outbox_pending 12\nprocess_open_fds 40\n";
        let s = sum_series(body);
        assert_eq!(s["hawker_peers"], 8.0);
        assert_eq!(s["hawker_webhook_outbox_pending"], 12.0);
        assert_eq!(s["process_open_fds"], 40.0);
    }

    #[test]
    fn a_climb_is_not_a_plateau() {
        let flat: Vec<f64> = (0..30).map(|i| 100.0 + (i % 3) as f64).collect();
        assert!(trend("rss", &flat, 1.0).unwrap().plateau);
        let leak: Vec<f64> = (0..30).map(|i| 100.0 + i as f64).collect();
        let t = trend("rss", &leak, 1.0).unwrap();
        assert!(!t.plateau, "{t:?}");
        assert_eq!((t.start, t.end, t.max), (100.0, 129.0, 129.0));
        assert!(trend("rss", &leak[..5], 1.0).is_none());
    }
}
