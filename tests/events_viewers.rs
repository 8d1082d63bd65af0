//! Every viewer sees the viewer count the seller sees: the snapshot carries it (this viewer
//! included), and a `viewers` message reaches every viewer within about a second of a change,
//! so a viewer page never shows a stale number while the studio shows another.

#[path = "support/live.rs"]
mod live;
mod support;

use std::time::{Duration, Instant};

use hawker::auth::Role;
use serde_json::Value;
use support::server::TestServer;
use support::{Publisher, PublisherOpts, Viewer, ViewerOpts};

const WAIT: Duration = Duration::from_secs(10);

/// The newest viewer count in a peer's messages: the snapshot's, then each `viewers` message.
fn latest_count(msgs: &[String]) -> Option<u64> {
    live::parse_all(msgs)
        .iter()
        .filter_map(|v| match v["type"].as_str() {
            Some("snapshot") => v["show"]["viewers"].as_u64(),
            Some("viewers") => v["count"].as_u64(),
            _ => None,
        })
        .next_back()
}

async fn wait_count(what: &str, want: u64, get: impl Fn() -> Vec<String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let msgs = get();
        let got = latest_count(&msgs);
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: viewer count {got:?}, wanted {want}; messages: {:?}",
            live::parse_all(&msgs)
                .into_iter()
                .filter(|v| v["type"] == "viewers" || v["type"] == "snapshot")
                .collect::<Vec<Value>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_and_seller_agree_on_the_viewer_count() {
    support::init_logging();
    let server = TestServer::start(2, |_| {}).await;
    let show = "count";
    live::seed_show(
        &server.app().store,
        show,
        &[("lamp-1", "Brass desk lamp", 4900, 25)],
    )
    .await;

    let token = server.token(show, Role::Publisher, "seller-1");
    let seller = Publisher::connect(
        &server.whip(show),
        &token,
        PublisherOpts::default().with_data_channel(),
    )
    .await
    .expect("publisher connects");
    seller.start_streaming(30);

    let first = Viewer::connect(
        &server.whep(show),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("first viewer connects");
    wait_count("first viewer", 1, || first.messages()).await;
    wait_count("seller, one viewer", 1, || seller.messages()).await;

    // A second viewer: the first one learns it from a `viewers` message (its snapshot is old).
    let second = Viewer::connect(
        &server.whep(show),
        None,
        ViewerOpts::default().with_data_channel(),
    )
    .await
    .expect("second viewer connects");
    wait_count("second viewer", 2, || second.messages()).await;
    wait_count("first viewer after the second joined", 2, || {
        first.messages()
    })
    .await;
    wait_count("seller, two viewers", 2, || seller.messages()).await;
    assert!(
        !live::of_type(&first.messages(), "viewers").is_empty(),
        "the first viewer got the new count from a `viewers` message"
    );

    // The second leaves: everyone is back to one.
    assert_eq!(second.close().await.expect("DELETE"), 200);
    wait_count("first viewer after the second left", 1, || first.messages()).await;
    wait_count("seller after the second left", 1, || seller.messages()).await;

    // Nothing changes: no `viewers` message per second to viewers.
    let before = live::of_type(&first.messages(), "viewers").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = live::of_type(&first.messages(), "viewers").len();
    assert_eq!(
        before, after,
        "viewers get the count only when it changes ({before} → {after} messages)"
    );

    server.stop().await;
}
