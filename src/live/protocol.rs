//! The `events` data-channel protocol (version 1): JSON text messages with a `type` field.
//!
//! Inbound messages are parsed leniently (unknown fields ignored) and strictly (a bad message
//! gets an [`ErrorCode`] reply, never a disconnect). Outbound messages are built once per event
//! and shared by every viewer. `docs/protocol.md` has an example of each.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Protocol version carried in `snapshot`.
pub const VERSION: u32 = 1;

/// Largest inbound message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Error codes of the `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, or a field has the wrong type.
    BadRequest,
    /// `type` is missing or unknown.
    UnknownType,
    /// Over [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// The sender's role may not send this type.
    Forbidden,
    /// Unknown sku.
    NotFound,
    /// A value is out of range (qty, price, text length).
    Invalid,
    /// Too many messages of this type.
    RateLimited,
    /// The server could not complete the request.
    Unavailable,
}

/// A parsed inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Viewer buys.
    Buy(Buy),
    /// Viewer asks.
    Question {
        /// The question.
        text: String,
    },
    /// Seller (or API) shows a product.
    Highlight {
        /// Product.
        sku: String,
        /// Seller wall-clock time of the action, ms since the epoch.
        capture_ms: Option<i64>,
    },
    /// Seller ends the highlight.
    Unhighlight {
        /// Seller wall-clock time.
        capture_ms: Option<i64>,
    },
    /// Seller changes a price.
    Price {
        /// Product.
        sku: String,
        /// New price in minor units.
        price: i64,
        /// Seller wall-clock time.
        capture_ms: Option<i64>,
    },
    /// Seller (or API) sets stock.
    Stock {
        /// Product.
        sku: String,
        /// New absolute stock.
        stock: i64,
    },
    /// Seller (or API) posts a chat line to every viewer.
    Chat {
        /// The text.
        text: String,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
}

/// A `buy` request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Buy {
    /// Idempotency key.
    pub request_id: String,
    /// Product.
    pub sku: String,
    /// Quantity (validated after parsing: negative or zero is `invalid`).
    pub qty: i64,
    /// Frame the viewer was looking at.
    #[serde(default)]
    pub rtp_ts: Option<u32>,
    /// Highlight the viewer bought from.
    #[serde(default)]
    pub highlight_id: Option<String>,
}

/// A parse failure, with the reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Code.
    pub code: ErrorCode,
    /// One-line reason.
    pub message: String,
    /// The request id, when one could be read.
    pub request_id: Option<String>,
}

impl Reject {
    fn new(code: ErrorCode, message: impl Into<String>) -> Reject {
        Reject {
            code,
            message: message.into(),
            request_id: None,
        }
    }

    /// The `error` message.
    pub fn to_json(&self) -> String {
        error(self.code, &self.message, self.request_id.as_deref())
    }
}

#[derive(Deserialize)]
struct WithSku {
    sku: String,
    #[serde(default)]
    capture_ms: Option<i64>,
}

#[derive(Deserialize)]
struct WithCapture {
    #[serde(default)]
    capture_ms: Option<i64>,
}

#[derive(Deserialize)]
struct PriceMsg {
    sku: String,
    price: i64,
    #[serde(default)]
    capture_ms: Option<i64>,
}

#[derive(Deserialize)]
struct StockMsg {
    sku: String,
    stock: i64,
}

#[derive(Deserialize)]
struct TextMsg {
    text: String,
}

/// Parse one inbound message.
pub fn parse(text: &str) -> Result<Inbound, Reject> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Reject::new(
            ErrorCode::TooLarge,
            format!(
                "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                text.len()
            ),
        ));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Reject::new(ErrorCode::BadRequest, format!("malformed JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(Reject::new(
            ErrorCode::BadRequest,
            "message must be a JSON object",
        ));
    };
    let request_id = obj
        .get("request_id")
        .and_then(|r| r.as_str())
        .map(str::to_string);
    let Some(ty) = obj.get("type").and_then(|t| t.as_str()) else {
        return Err(Reject::new(
            ErrorCode::UnknownType,
            "message has no string field \"type\"",
        ));
    };
    fn de<T: serde::de::DeserializeOwned>(v: Value, ty: &str) -> Result<T, Reject> {
        serde_json::from_value(v)
            .map_err(|e| Reject::new(ErrorCode::BadRequest, format!("bad {ty:?} message: {e}")))
    }
    let ty = ty.to_string();
    let r = match ty.as_str() {
        "buy" => de::<Buy>(v, &ty).map(Inbound::Buy),
        "question" => de::<TextMsg>(v, &ty).map(|m| Inbound::Question { text: m.text }),
        "highlight" => de::<WithSku>(v, &ty).map(|m| Inbound::Highlight {
            sku: m.sku,
            capture_ms: m.capture_ms,
        }),
        "unhighlight" => de::<WithCapture>(v, &ty).map(|m| Inbound::Unhighlight {
            capture_ms: m.capture_ms,
        }),
        "price" => de::<PriceMsg>(v, &ty).map(|m| Inbound::Price {
            sku: m.sku,
            price: m.price,
            capture_ms: m.capture_ms,
        }),
        "stock" => de::<StockMsg>(v, &ty).map(|m| Inbound::Stock {
            sku: m.sku,
            stock: m.stock,
        }),
        "chat" => de::<TextMsg>(v, &ty).map(|m| Inbound::Chat { text: m.text }),
        "ping" => Ok(Inbound::Ping),
        other => Err(Reject::new(
            ErrorCode::UnknownType,
            format!("unknown message type {other:?}"),
        )),
    };
    r.map_err(|mut e| {
        e.request_id = request_id;
        e
    })
}

/// Which inbound types a seller (publisher/admin) may send, as opposed to a viewer.
pub fn is_seller_message(m: &Inbound) -> bool {
    matches!(
        m,
        Inbound::Highlight { .. }
            | Inbound::Unhighlight { .. }
            | Inbound::Price { .. }
            | Inbound::Stock { .. }
            | Inbound::Chat { .. }
    )
}

/// The name of an inbound type.
pub fn type_name(m: &Inbound) -> &'static str {
    match m {
        Inbound::Buy(_) => "buy",
        Inbound::Question { .. } => "question",
        Inbound::Highlight { .. } => "highlight",
        Inbound::Unhighlight { .. } => "unhighlight",
        Inbound::Price { .. } => "price",
        Inbound::Stock { .. } => "stock",
        Inbound::Chat { .. } => "chat",
        Inbound::Ping => "ping",
    }
}

/// An `error` message.
pub fn error(code: ErrorCode, message: &str, request_id: Option<&str>) -> String {
    let mut v = json!({"type": "error", "code": code, "message": message});
    if let Some(r) = request_id {
        v["request_id"] = json!(r);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buy_and_ignores_unknown_fields() {
        let m = parse(r#"{"type":"buy","request_id":"r1","sku":"lamp-1","qty":2,"rtp_ts":4294967295,"extra":[1]}"#)
            .unwrap();
        assert_eq!(
            m,
            Inbound::Buy(Buy {
                request_id: "r1".into(),
                sku: "lamp-1".into(),
                qty: 2,
                rtp_ts: Some(u32::MAX),
                highlight_id: None
            })
        );
    }

    #[test]
    fn rejects_clearly() {
        assert_eq!(parse("{not json").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(parse("[1]").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(
            parse(r#"{"type":"teleport"}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            parse(r#"{"sku":"x"}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
        let e = parse(r#"{"type":"buy","request_id":"r9","sku":"x","qty":"two"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.request_id.as_deref(), Some("r9"));
        let big = format!(r#"{{"type":"question","text":"{}"}}"#, "a".repeat(5000));
        assert_eq!(parse(&big).unwrap_err().code, ErrorCode::TooLarge);
        let j: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(j["type"], "error");
        assert_eq!(j["code"], "bad_request");
    }

    #[test]
    fn roles() {
        assert!(is_seller_message(
            &parse(r#"{"type":"highlight","sku":"a"}"#).unwrap()
        ));
        assert!(!is_seller_message(
            &parse(r#"{"type":"question","text":"hi"}"#).unwrap()
        ));
    }
}
