//! hawker: a low-latency media relay (SFU) for live shopping.
//!
//! ```text
//!  seller ──WHIP──►  http (axum/tokio) ──Msg──► engine::shard 0 ┐ one thread, one UDP socket,
//!  viewers ─WHEP──►  signalling, API   ──Msg──► engine::shard 1 ┤ owns its peers (str0m Rtc,
//!                                                               ┘ RTP mode, ICE-lite)
//!                    publisher packet → home shard maps it once → Arc'd to every shard
//!                    → forwarder::decide per viewer → SRTP → socket
//! ```
//!
//! * [`config`]: the configuration tree (embedded default or TOML file).
//! * [`auth`]: HS256 tokens with a role scoped to a show.
//! * [`engine`]: the media plane: shards, peers, the forwarder, keyframe gating.
//! * [`shows`]: the control plane's registry of shows and sessions.
//! * [`commerce`]: the durable store (catalog, stock, orders, webhook outbox).
//! * [`live`]: the `events` data-channel protocol and the video clock.
//! * [`http`]: WHIP, WHEP, health; [`metrics`]: Prometheus on its own listener.
//! * [`server`]: wiring and graceful shutdown.

pub mod app;
pub mod auth;
pub mod codec;
pub mod commerce;
pub mod config;
pub mod engine;
pub mod http;
pub mod live;
pub mod metrics;
pub mod server;
pub mod shows;
pub mod sim;
