//! One peer's `events` messages are handled in the order it sent them: a seller that shows a
//! product and hides it right after (the `unhighlight` handled before the slower `highlight`,
//! which looks the product up in the store, would leave the product shown and answer the
//! `unhighlight` with "nothing is highlighted"). Ten such pairs back to back from a real
//! webrtc-rs seller: no error, the viewer sees them alternate, nothing is highlighted at the end.

#[path = "support/live.rs"]
mod live;
mod support;

use std::time::Duration;

use hawker::auth::Role;
use hawker::commerce::ShowState;
use serde_json::{json, Value};
use support::server::TestServer;
use support::{Publisher, PublisherOpts, Viewer, ViewerOpts};

const WAIT: Duration = Duration::from_secs(10);
const PAIRS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sellers_messages_are_applied_in_order() {
    support::init_logging();
    let server = TestServer::start(2, |_| {}).await;
    let app = server.app().clone();
    let show = "order";
    live::seed_show(
        &app.store,
        show,
        &[
            ("lamp-1", "Brass desk lamp", 4900, 10),
            ("mug-2", "Mug", 900, 10),
        ],
    )
    .await;
    let token = server.token(show, Role::Publisher, "seller");
    let seller = Publisher::connect(
        &server.whip(show),
        &token,
        PublisherOpts::default().with_data_channel(),
    )
    .await
    .expect("publisher connects");
    seller.start_streaming(30);
    live::wait_show_state(&app.store, show, ShowState::Live, WAIT)
        .await
        .unwrap();
    let viewer = Viewer::connect(
        &server.whep(show),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("viewer connects");
    for (what, msgs) in [("seller", 0), ("viewer", 1)] {
        live::wait_json(
            &format!("{what} snapshot"),
            WAIT,
            0,
            || {
                if msgs == 0 {
                    seller.messages()
                } else {
                    viewer.messages()
                }
            },
            |m| m["type"] == "snapshot",
        )
        .await
        .unwrap();
    }
    let seller_from = seller.messages().len();
    let viewer_from = viewer.messages().len();
    for i in 0..PAIRS {
        let sku = if i % 2 == 0 { "lamp-1" } else { "mug-2" };
        let hl = json!({"type": "highlight", "sku": sku, "capture_ms": live::now_ms()});
        let un = json!({"type": "unhighlight", "capture_ms": live::now_ms()});
        seller.send_text(&hl.to_string()).await.unwrap();
        seller.send_text(&un.to_string()).await.unwrap();
    }
    let seen = |msgs: &[String]| -> Vec<Value> {
        live::parse_all(&msgs[viewer_from..])
            .into_iter()
            .filter(|m| m["type"] == "highlight" || m["type"] == "unhighlight")
            .collect()
    };
    support::wait_until("every pair", WAIT, || {
        seen(&viewer.messages()).len() >= 2 * PAIRS
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "viewer saw {} of {} highlight/unhighlight messages; seller got {:?}",
            seen(&viewer.messages()).len(),
            2 * PAIRS,
            &seller.messages()[seller_from..]
        )
    });
    let got = seen(&viewer.messages());
    for (i, m) in got.iter().enumerate() {
        let want = if i % 2 == 0 {
            "highlight"
        } else {
            "unhighlight"
        };
        assert_eq!(m["type"], want, "message {i}: {m}");
        if i % 2 == 1 {
            assert_eq!(m["highlight_id"], got[i - 1]["highlight_id"], "message {i}");
        }
    }
    let errors: Vec<Value> = live::of_type(&seller.messages()[seller_from..], "error");
    assert!(errors.is_empty(), "the seller got errors: {errors:?}");
    assert!(
        app.live.highlight(show).is_none(),
        "a product is left shown"
    );
}
