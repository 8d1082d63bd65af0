//! hawker: a low-latency media relay (SFU) for live shopping.
//!
//! ```text
//!  seller ──WHIP──►  http (axum/tokio) ──Msg──► engine driver 0 ─ shard::Core 0 ┐ one thread,
//!  viewers ─WHEP──►  app, live, API    ──Msg──► engine driver 1 ─ shard::Core 1 ┘ one socket
//!                    publisher packet → home shard maps it once → Arc'd to every shard
//!                    → forwarder::decide per viewer → SRTP → socket
//! ```
//!
//! * [`config`]: the configuration tree (embedded default or TOML file).
//! * [`auth`]: HS256 tokens with a role scoped to a show.
//! * [`app`]: the control plane's shared state and what it does with the engine's events.
//! * [`engine`]: the media plane: sans-IO shard cores ([`engine::shard`]: peers, accept,
//!   ingest, egress, stun), their I/O drivers ([`engine::driver`]), the pure forwarder and
//!   keyframe gate.
//! * [`sim`]: the virtual-time harness that runs the same shard cores over an in-memory
//!   network, for tests and benches; its client peers and synthetic media also make up
//!   `hawker loadtest`.
//! * [`codec`]: the one codec type and keyframe detection.
//! * [`shows`]: the control plane's registry of shows and sessions.
//! * [`commerce`]: the durable store (catalog, stock, orders, webhook outbox).
//! * [`live`]: the `events` data-channel protocol and the video clock.
//! * [`recording`]: shows recorded as forwarded, with their event timeline; export.
//! * [`http`]: WHIP, WHEP, REST API, pages, health; [`metrics`]: Prometheus on its own listener.
//! * [`server`]: wiring and graceful shutdown.

pub mod app;
pub mod auth;
pub mod codec;
pub mod commerce;
pub mod config;
pub mod engine;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod http;
pub mod live;
pub mod metrics;
pub mod recording;
pub mod server;
pub mod shows;
pub mod sim;
