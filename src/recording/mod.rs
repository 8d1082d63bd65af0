//! Recording shows: the media as forwarded and the commerce timeline on the same clock,
//! written append-only by one thread, read back for export ([`export`]) and management.
//!
//! The media plane's only part in it is one queue: a show's home shard pushes each packet it
//! has mapped into the show's numbering (the one `Arc<MediaPacket>` every shard fans out)
//! into `Core::recorded` when the show is recorded: every audio packet and the video of one
//! layer; the shard driver hands that queue to the recorder's bounded channel with `try_send`,
//! so a slow disk drops recorded packets (counted in `hawker_recording_dropped_total`) and
//! never stalls fan-out. Without simulcast the one layer is recorded; with it, the highest
//! layer seen (rids ordered lowest first, `engine::simulcast`), switched to at one of its
//! keyframes, so a recording starts on the lowest layer for a moment if that layer's keyframe
//! comes first. [`file::read_media`] renumbers such a switch into one sequence space, so replay
//! and export see a single layer 0.
//!
//! The control plane adds the show's commerce events (as serialised for viewers, so each
//! carries its `rtp_ts` in the show's numbering) through [`Recorder::event`]. The writer thread
//! appends both to the show's folder ([`file`]: `media.hwr`, `events.jsonl`) and `fsync`s at
//! most once a second ([`SYNC_EVERY`]), so a crash loses at most about a second and a SIGKILL
//! leaves a readable recording. No muxer runs while the show is live: a container is written
//! only on export.
//!
//! Retention ([`Library::sweep`]) removes the oldest recordings of ended shows past
//! `recording.retention_days` or beyond `recording.retention_bytes` in total.

pub mod export;
pub mod file;
pub mod replay;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use prometheus::IntCounter;

use crate::engine::MediaPacket;

/// The writer syncs its files this often while anything is written.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Packets and events waiting for the writer at most; beyond, recorded packets are dropped.
pub const QUEUE: usize = 1 << 16;

/// What the writer thread is handed.
pub enum Input {
    /// A packet in the show's numbering.
    Media(Arc<MediaPacket>),
    /// A commerce event as viewers received it.
    Event {
        /// Show.
        show: Arc<str>,
        /// When it was handed to viewers, µs since the Unix epoch.
        at_us: u64,
        /// The serialised event.
        text: Arc<str>,
    },
    /// Sync every open file now and close the show's files, then answer.
    Close(Option<Arc<str>>, Sender<()>),
}

/// Counters of the recorder.
#[derive(Clone)]
pub struct Metrics {
    /// Bytes appended to recordings.
    pub bytes: IntCounter,
    /// Packets or events not recorded because the writer queue was full or the disk failed.
    pub dropped: IntCounter,
}

/// The shards' end of the recorder: a bounded queue that never blocks.
#[derive(Clone)]
pub struct Sink {
    tx: Sender<Input>,
    dropped: IntCounter,
}

impl Sink {
    /// Hand packets to the writer; what does not fit is counted and dropped.
    pub fn push_media(&self, pkts: impl Iterator<Item = Arc<MediaPacket>>) {
        for p in pkts {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                self.tx.try_send(Input::Media(p))
            {
                self.dropped.inc();
            }
        }
    }
}

/// The recorder: a writer thread and the ways to reach it.
pub struct Recorder {
    sink: Sink,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Recorder {
    /// Start the writer thread for recordings under `dir`.
    pub fn start(dir: PathBuf, metrics: Metrics) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let sink = Sink {
            tx,
            dropped: metrics.dropped.clone(),
        };
        let writer = Writer {
            dir,
            metrics,
            open: HashMap::new(),
            anchor: (Instant::now(), now_us()),
            buf: Vec::with_capacity(64 * 1024),
        };
        let thread = std::thread::Builder::new()
            .name("hawker-recorder".into())
            .spawn(move || writer.run(rx))?;
        Ok(Recorder {
            sink,
            thread: Some(thread),
        })
    }

    /// The shards' end.
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Record a commerce event of a show.
    pub fn event(&self, show: &Arc<str>, text: &Arc<str>) {
        let input = Input::Event {
            show: show.clone(),
            at_us: now_us(),
            text: text.clone(),
        };
        if self.sink.tx.try_send(input).is_err() {
            self.sink.dropped.inc();
        }
    }

    /// Sync and close a show's files (all shows with `None`); returns once written, or after
    /// `timeout`. Blocking: call from a blocking context.
    pub fn close(&self, show: Option<Arc<str>>, timeout: Duration) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self
            .sink
            .tx
            .send_timeout(Input::Close(show, tx), timeout)
            .is_err()
        {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close(None, Duration::from_secs(5));
        // The thread ends when every sender is gone; shards may still hold sinks, so do not
        // wait for it: everything is synced above.
        drop(self.thread.take());
    }
}

struct Writer {
    dir: PathBuf,
    metrics: Metrics,
    open: HashMap<Arc<str>, file::Files>,
    /// Maps packet arrival `Instant`s to wall-clock µs.
    anchor: (Instant, u64),
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Input>) {
        let mut last_sync = Instant::now();
        loop {
            match rx.recv_timeout(SYNC_EVERY) {
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.sync_all();
                    return;
                }
            }
            if last_sync.elapsed() >= SYNC_EVERY {
                self.sync_all();
                last_sync = Instant::now();
            }
        }
    }

    fn files(&mut self, show: &Arc<str>) -> Option<&mut file::Files> {
        if !self.open.contains_key(show) {
            match file::Files::open(&self.dir.join(&**show)) {
                Ok(f) => {
                    self.open.insert(show.clone(), f);
                }
                Err(e) => {
                    tracing::warn!(show = %show, "cannot open recording: {e}");
                    return None;
                }
            }
        }
        self.open.get_mut(show)
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Media(p) => {
                let at_us = match p.arrival.checked_duration_since(self.anchor.0) {
                    Some(d) => self.anchor.1 + d.as_micros() as u64,
                    None => self
                        .anchor
                        .1
                        .saturating_sub(self.anchor.0.duration_since(p.arrival).as_micros() as u64),
                };
                self.buf.clear();
                let n = file::encode(
                    &mut self.buf,
                    p.pkt.track,
                    p.pkt.codec,
                    (p.pkt.marker, p.pkt.keyframe_start),
                    p.pkt.layer,
                    p.pkt.seq,
                    p.pkt.ts,
                    at_us,
                    &p.payload,
                );
                let buf = std::mem::take(&mut self.buf);
                let ok = match self.files(&p.show) {
                    Some(f) => f.write_media(&buf).is_ok(),
                    None => false,
                };
                self.buf = buf;
                self.count(ok, n);
            }
            Input::Event { show, at_us, text } => {
                let Ok(msg) = serde_json::from_str(&text) else {
                    return;
                };
                let ev = file::Event { at_us, msg };
                let n = match self.files(&show) {
                    Some(f) => f.write_event(&ev).ok(),
                    None => None,
                };
                self.count(n.is_some(), n.unwrap_or(0));
            }
            Input::Close(show, done) => {
                self.sync_all();
                match show {
                    Some(s) => {
                        self.open.remove(&s);
                    }
                    None => self.open.clear(),
                }
                let _ = done.send(());
            }
        }
    }

    fn count(&self, ok: bool, n: usize) {
        if ok {
            self.metrics.bytes.inc_by(n as u64);
        } else {
            self.metrics.dropped.inc();
        }
    }

    fn sync_all(&mut self) {
        for (show, f) in &mut self.open {
            if let Err(e) = f.sync() {
                tracing::warn!(show = %show, "recording sync failed: {e}");
            }
        }
    }
}

/// A recording as listed by the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Show id.
    pub show: String,
    /// Bytes on disk (media and events).
    pub bytes: u64,
    /// Last write, seconds since the Unix epoch.
    pub modified: u64,
}

/// The recordings folder: one sub-folder per show.
#[derive(Debug, Clone)]
pub struct Library {
    dir: PathBuf,
}

/// Per-show recording settings, kept beside the recording.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct ShowSettings {
    /// Whether the show is recorded when it goes live.
    pub enabled: bool,
}

const SETTINGS: &str = "settings.json";

impl Library {
    /// The library under `dir`.
    pub fn new(dir: PathBuf) -> Library {
        Library { dir }
    }

    /// The folder of a show's recording.
    pub fn show_dir(&self, show: &str) -> PathBuf {
        self.dir.join(show)
    }

    /// Whether a show has recorded media.
    pub fn has_media(&self, show: &str) -> bool {
        std::fs::metadata(self.show_dir(show).join(file::MEDIA))
            .map(|m| m.len() > file::MAGIC.len() as u64)
            .unwrap_or(false)
    }

    /// A show's settings, if set through the API.
    pub fn settings(&self, show: &str) -> Option<ShowSettings> {
        let text = std::fs::read(self.show_dir(show).join(SETTINGS)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Keep a show's settings.
    pub fn set_settings(&self, show: &str, s: ShowSettings) -> std::io::Result<()> {
        let dir = self.show_dir(show);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("settings.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&s).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, dir.join(SETTINGS))
    }

    /// Every show with recorded media.
    pub fn list(&self) -> Vec<Summary> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Summary> = rd
            .flatten()
            .filter_map(|e| {
                let show = e.file_name().to_str()?.to_string();
                if !self.has_media(&show) {
                    return None;
                }
                let (bytes, modified) = usage(&e.path());
                Some(Summary {
                    show,
                    bytes,
                    modified,
                })
            })
            .collect();
        out.sort_by(|a, b| a.show.cmp(&b.show));
        out
    }

    /// Delete a show's recorded media and events (its settings stay); false if there was none.
    pub fn delete(&self, show: &str) -> std::io::Result<bool> {
        let dir = self.show_dir(show);
        let mut found = false;
        for name in [file::MEDIA, file::EVENTS] {
            match std::fs::remove_file(dir.join(name)) {
                Ok(()) => found = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Apply retention to recordings of shows for which `ended` is true: remove those older
    /// than `max_age`, then the oldest until the total is within `max_bytes` (0 = no limit).
    /// Returns the shows removed.
    pub fn sweep(
        &self,
        now_s: u64,
        max_age: Option<Duration>,
        max_bytes: u64,
        ended: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut all = self.list();
        all.sort_by_key(|s| s.modified);
        let mut total: u64 = all.iter().map(|s| s.bytes).sum();
        let mut removed = Vec::new();
        for s in &all {
            if !ended(&s.show) {
                continue;
            }
            let too_old = max_age.is_some_and(|a| now_s.saturating_sub(s.modified) > a.as_secs());
            let too_big = max_bytes > 0 && total > max_bytes;
            if (too_old || too_big) && self.delete(&s.show).unwrap_or(false) {
                total = total.saturating_sub(s.bytes);
                removed.push(s.show.clone());
            }
        }
        removed
    }
}

fn usage(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut modified = 0;
    for name in [file::MEDIA, file::EVENTS] {
        if let Ok(m) = std::fs::metadata(dir.join(name)) {
            bytes += m.len();
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            modified = modified.max(t);
        }
    }
    (bytes, modified)
}

/// How often retention runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Apply `recording.retention_*` at start and every [`SWEEP_EVERY`]; recordings of live shows
/// are never touched.
pub async fn retention(app: Arc<crate::app::App>) {
    let cfg = app.cfg.recording.clone();
    if cfg.retention_days == 0 && cfg.retention_bytes == 0 {
        return;
    }
    let max_age =
        (cfg.retention_days > 0).then(|| Duration::from_secs(cfg.retention_days as u64 * 86_400));
    loop {
        let a = app.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let now_s = now_us() / 1_000_000;
            a.recordings
                .sweep(now_s, max_age, cfg.retention_bytes, |show| {
                    !a.registry
                        .show(show)
                        .is_some_and(|s| s.live.load(std::sync::atomic::Ordering::Relaxed))
                })
        })
        .await
        .unwrap_or_default();
        for show in removed {
            tracing::info!(show = %show, "recording removed by retention");
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}
