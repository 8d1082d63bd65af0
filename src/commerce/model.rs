//! The plain data the commerce core accepts and returns: shows, products, order requests and
//! their answers, and the events it emits. Serde shapes here are the wire shapes of the HTTP API
//! and the data-channel protocol, so field names are chosen for the platform integrator.

use serde::{Deserialize, Serialize};

/// Lifecycle of a show: orders are accepted only while it is `Live`.
///
/// Legal transitions: `scheduled → live → ended` and `scheduled → ended` (a cancelled show).
/// Setting the state a show already has is a no-op; leaving `ended` is a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShowState {
    Scheduled,
    Live,
    Ended,
}

impl ShowState {
    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ShowState::Scheduled => "scheduled",
            ShowState::Live => "live",
            ShowState::Ended => "ended",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(ShowState::Scheduled),
            "live" => Some(ShowState::Live),
            "ended" => Some(ShowState::Ended),
            _ => None,
        }
    }
}

/// A show as stored. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Show {
    pub id: String,
    pub title: String,
    pub scheduled_at: Option<i64>,
    /// Codecs the publisher may use, e.g. `["h264", "vp8"]`, in preference order.
    pub video_codecs: Vec<String>,
    pub state: ShowState,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// Highest concurrent viewer count reported through `Store::record_viewers`.
    pub peak_viewers: u32,
}

/// Input to `Store::create_show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShow {
    /// Chosen by the platform (1..=64 of `[A-Za-z0-9_-]`), or generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub title: String,
    #[serde(default)]
    pub scheduled_at: Option<i64>,
    #[serde(default)]
    pub video_codecs: Vec<String>,
}

/// Input to `Store::update_show`: every present field replaces the stored one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowUpdate {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub scheduled_at: Option<i64>,
    #[serde(default)]
    pub video_codecs: Option<Vec<String>>,
}

/// A product offered in a show, with its remaining stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub show_id: String,
    pub sku: String,
    pub title: String,
    /// Price in minor units of `currency` (cents for USD, yen for JPY).
    pub price: i64,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
    pub image_url: Option<String>,
    pub stock: i64,
}

/// Input to `Store::upsert_product`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    /// 1..=128 bytes, no `/`, no control characters (it appears in URLs).
    pub sku: String,
    pub title: String,
    pub price: i64,
    pub currency: String,
    #[serde(default)]
    pub image_url: Option<String>,
    /// Absolute stock to set. `None` keeps the current stock of an existing product and means 0
    /// for a new one.
    #[serde(default)]
    pub stock: Option<i64>,
}

/// A viewer's request to buy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub show: String,
    pub sku: String,
    pub qty: u32,
    /// The authenticated viewer (the token's `sub`), never taken from the request body.
    pub viewer: String,
    /// Client-chosen idempotency key (1..=128 bytes), unique per viewer and show.
    pub request_id: String,
    /// The video RTP timestamp of the frame the viewer saw when buying.
    #[serde(default)]
    pub rtp_ts: Option<u32>,
    /// The highlight (product card) the viewer bought from, if any.
    #[serde(default)]
    pub highlight_id: Option<String>,
    /// Set by the server when the buy came from a replay of the show: milliseconds from the
    /// start of the recording's video (`rtp_ts` is then that frame). A replay order is taken
    /// whatever the show's state, against the current catalog.
    #[serde(default)]
    pub replay_at_ms: Option<i64>,
}

/// Outcome of an order attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Stock was reserved and the order recorded.
    Confirmed,
    /// Not enough stock left for the requested quantity.
    SoldOut,
    /// The request cannot be honoured (show not live, unknown SKU, bad quantity…); see `reason`.
    Rejected,
}

impl OrderStatus {
    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::SoldOut => "sold_out",
            OrderStatus::Rejected => "rejected",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirmed" => Some(OrderStatus::Confirmed),
            "sold_out" => Some(OrderStatus::SoldOut),
            "rejected" => Some(OrderStatus::Rejected),
            _ => None,
        }
    }
}

/// The answer to an [`OrderRequest`], sent only once it is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderResult {
    pub request_id: String,
    pub status: OrderStatus,
    /// Present exactly when `status` is `Confirmed`.
    pub order_id: Option<String>,
    /// Human-readable cause for `SoldOut` and `Rejected`.
    pub reason: Option<String>,
    pub sku: String,
    pub qty: u32,
}

/// A confirmed order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Position in the store-wide order log; the cursor of `Store::orders_after`.
    pub seq: i64,
    pub order_id: String,
    pub show_id: String,
    pub sku: String,
    pub qty: u32,
    pub viewer: String,
    pub request_id: String,
    pub status: OrderStatus,
    pub unit_price: i64,
    pub currency: String,
    pub rtp_ts: Option<u32>,
    pub highlight_id: Option<String>,
    /// Present when the order came from a replay: milliseconds from the start of the
    /// recording's video.
    pub replay_at_ms: Option<i64>,
    pub created_at: i64,
}

/// The stock of one product changed (order, restock, upsert). Emitted after commit, coalesced
/// to the final value per product per commit batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockChange {
    pub show_id: String,
    pub sku: String,
    pub stock: i64,
}

/// Webhook event types, as sent in `X-Hawker-Event` and the body's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "show.live")]
    ShowLive,
    #[serde(rename = "show.ended")]
    ShowEnded,
}

impl Event {
    /// The event name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::OrderCreated => "order.created",
            Event::ShowLive => "show.live",
            Event::ShowEnded => "show.ended",
        }
    }
}
