//! The load generator against an in-process server: 5 str0m viewers for ~3 s all join, get a
//! keyframe and media, and the events channel opens. Correctness only; no timing assertions.

mod support;

use std::time::Duration;

use hawker::auth::Role;
use hawker::loadtest::{self, Opts};
use support::server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_viewers_join_and_receive() {
    let server = TestServer::start(2, |_| {}).await;
    let show = "loadtest-smoke";
    let token = server.token(show, Role::Publisher, "seller");
    let mut opts = Opts::new(&server.base, show, Some(token));
    opts.viewers = 5;
    opts.join_rate = 20.0;
    opts.duration = Duration::from_secs(3).into();
    opts.video_kbps = 800;
    opts.event_interval = Duration::from_millis(300).into();
    opts.no_baseline = true;
    opts.quiet = true;
    let report = tokio::task::spawn_blocking(move || loadtest::run(opts))
        .await
        .expect("loadtest thread")
        .expect("loadtest runs");

    assert_eq!(report.viewers.len(), 5, "{:#?}", report.viewers);
    for v in &report.viewers {
        assert!(
            v.error.is_none(),
            "viewer {} failed: {:?}",
            v.index,
            v.error
        );
        assert!(v.answered, "viewer {} not answered", v.index);
        assert!(
            v.connected_ms.is_some(),
            "viewer {} never connected",
            v.index
        );
        assert!(
            v.first_keyframe_ms.is_some(),
            "viewer {} got no keyframe",
            v.index
        );
        assert!(v.video_packets > 0, "viewer {} got no video", v.index);
        assert!(v.audio_packets > 0, "viewer {} got no audio", v.index);
        assert!(
            v.channel_ms.is_some(),
            "viewer {} has no events channel",
            v.index
        );
    }
    let s = &report.summary;
    assert_eq!(s.connected, 5);
    assert_eq!(s.with_keyframe, 5);
    assert!(s.pub_video_packets > 0 && s.pub_audio_packets > 0);
    assert!(s.delay_ms.count > 0, "forwarding delay was measured");
    // The server is this process: found by its HTTP port, shard threads seen.
    let srv = report.server.as_ref().expect("server stats");
    assert!(srv.in_process);
    assert!(srv.shard_threads >= 2);
    // Reports render.
    assert!(serde_json::to_string(&report)
        .unwrap()
        .contains("\"summary\""));
    server.stop().await;
}
