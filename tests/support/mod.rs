//! In-process WebRTC test peers for hawker's integration tests.
//!
//! Built on the `webrtc` crate 0.21 (webrtc-rs, the async layer over the sans-I/O `rtc`
//! core). Two peers are provided, both talking to the server over plain HTTP on 127.0.0.1:
//!
//! * [`Publisher`] — a WHIP client. It offers a **sendonly** video track (VP8 by default,
//!   H.264 `packetization-mode=1` via [`PublisherOpts::video_codec`]), a **sendonly** Opus
//!   track and optionally a reliable, ordered `"events"` data channel. It writes hand-built
//!   RTP through a `TrackLocalStaticRTP`, so every payload is known byte-for-byte: each one
//!   carries a [`payload::PayloadTag`] identifying the publisher, the frame / packet index
//!   and the seed, and every packet sent is recorded in [`Publisher::sent`]. Keyframe
//!   requests (PLI / FIR) from the server are counted ([`Publisher::keyframe_requests`]) and
//!   answered with a keyframe.
//! * [`Viewer`] — a WHEP client. It offers **recvonly** video + audio transceivers (and
//!   optionally the `"events"` channel) and records every RTP packet it receives
//!   ([`Viewer::packets`], [`Viewer::wait_for`]) together with its arrival [`Instant`] and
//!   whether its payload starts a keyframe.
//!
//! Both follow WHIP/WHEP (RFC 9725 / draft-ietf-wish-whep): a non-trickle offer (ICE
//! gathering is awaited first) is `POST`ed with `Content-Type: application/sdp` and
//! `Authorization: Bearer <token>`; a `201 Created` with a `Location` header and the SDP answer
//! is required; `close()` sends `DELETE` to the (resolved) `Location`. Any other status makes
//! `connect` fail with a [`SignalError`] you can downcast to and inspect.
//!
//! Networking is loopback only: each peer binds one UDP socket on `127.0.0.1:0` (so its only
//! ICE candidate is a `127.0.0.1` host candidate), configures no ICE servers and disables mDNS.
//!
//! [`payload`] builds the deterministic VP8 / H.264 / Opus payloads and also parses them back
//! (keyframe detection, tag extraction), so either side of a test can reason about what it saw.
//!
//! # Example
//!
//! ```ignore
//! mod support;
//! use support::{MediaKind, Publisher, PublisherOpts, Viewer, ViewerOpts};
//!
//! let publisher = Publisher::connect(&whip_url, "token", PublisherOpts::default()).await?;
//! let viewer = Viewer::connect(&whep_url, None, ViewerOpts::default()).await?;
//! publisher.start_streaming(30);
//! viewer
//!     .wait_for(|log| log.video.iter().any(|p| p.keyframe), Duration::from_secs(5))
//!     .await?;
//! let sent = publisher.sent(MediaKind::Video);
//! assert!(viewer.packets(MediaKind::Video).iter().all(|p| sent.iter().any(|s| s.payload == p.payload)));
//! publisher.close().await?;
//! ```
#![allow(dead_code)] // each test binary uses a different subset of the helpers

pub mod aiortc;
pub mod binary;
pub mod chromium;
pub mod payload;
pub mod peer;
mod publisher;
pub mod server;
mod session;
mod viewer;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use publisher::{Publisher, PublisherOpts, SentPacket};
#[allow(unused_imports)]
pub use session::EVENTS_LABEL;
#[allow(unused_imports)]
pub use viewer::{ReceivedPacket, RecvLog, Viewer, ViewerOpts};

/// Default bound for connection set-up (HTTP exchange + ICE + DTLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Audio or video; used to select logs and tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// The video track.
    Video,
    /// The audio (Opus) track.
    Audio,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaKind::Video => f.write_str("video"),
            MediaKind::Audio => f.write_str("audio"),
        }
    }
}

/// Video codec a [`Publisher`] offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoCodec {
    /// VP8, payload type 96.
    #[default]
    Vp8,
    /// H.264 constrained baseline, `packetization-mode=1`, payload type 102.
    H264,
}

impl VideoCodec {
    /// The MIME type used in SDP (`video/VP8`, `video/H264`).
    pub fn mime_type(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "video/VP8",
            VideoCodec::H264 => "video/H264",
        }
    }

    /// Guesses the codec from a MIME type (case-insensitive).
    pub fn from_mime(mime: &str) -> Option<VideoCodec> {
        if mime.eq_ignore_ascii_case("video/VP8") {
            Some(VideoCodec::Vp8)
        } else if mime.eq_ignore_ascii_case("video/H264") {
            Some(VideoCodec::H264)
        } else {
            None
        }
    }
}

/// A WHIP/WHEP signalling exchange that did not end in `201 Created` (or a `DELETE` that
/// failed). Returned inside `anyhow::Error`; use `err.downcast_ref::<SignalError>()`.
#[derive(Debug, Clone)]
pub struct SignalError {
    /// HTTP method of the failed request.
    pub method: &'static str,
    /// Requested URL.
    pub url: String,
    /// HTTP status code returned by the server.
    pub status: u16,
    /// Response body (truncated to 2 KiB).
    pub body: String,
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} returned HTTP {}: {}",
            self.method, self.url, self.status, self.body
        )
    }
}

impl std::error::Error for SignalError {}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Polls `cond` every 5 ms until it returns `true`; fails after `timeout` with `what` in the
/// error message.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Installs a `tracing` subscriber (which also captures webrtc-rs's `log` records) filtered by
/// the `TEST_LOG` environment variable, e.g. `TEST_LOG=rtc_sctp=debug,hawker=trace`. No-op when
/// `TEST_LOG` is unset or a subscriber is already installed.
pub fn init_logging() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Runs `fut` with a timeout, turning expiry into an `anyhow` error mentioning `what`.
pub async fn within<T>(
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(res) => res,
        Err(_) => anyhow::bail!("timed out after {timeout:?}: {what}"),
    }
}
