//! Real-browser proof that product events are frame-exact, and the shop flow: runs
//! `node tests/browser/frame_sync.mjs` against the hawker binary cargo built for this test run.
//!
//! Headless Chromium plays a generated camera feed whose frames carry their own number; the
//! studio page (`/studio/demo`, the SDK's `publish`) shows products at seeded pseudo-random
//! moments, and both viewer pages (`/watch/demo`, the SDK's `watch`; phone and desktop) must
//! put each product card on screen (computed opacity, reduced motion) within one frame of the
//! frame the seller saw, with at most one excused round per run (the viewer provably never
//! presented that frame). Page errors fail the test. Then two viewers buy, stock counts down on
//! both, and the orders reach the REST API and the studio feed. The full rule is in the header
//! of `tests/browser/frame_sync.mjs`.
//!
//! Needs `node` (>= 20), Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`) and
//! `tests/browser/node_modules` (`npm ci --prefix tests/browser`); `scripts/test.sh` installs
//! them. When any is missing at build time, `build.rs` marks the test ignored (cargo's summary
//! lists it as "ignored, needs …"; a run with `--include-ignored` skips it with a message on
//! stderr), unless `CI` is set, where a missing dependency is a failure.
//!
//! Run it alone, with progress shown live:
//! `cargo test --release --test browser_shop -- --nocapture`.
//! Artifacts (server log, page console, per-round measurements, screenshots):
//! `tests/browser/out/frame_sync/`.

mod browser_runner;

#[test]
#[cfg_attr(
    hawker_browser_deps_missing,
    ignore = "needs node >= 20, Chromium and tests/browser/node_modules: run scripts/test.sh"
)]
fn browser_frame_sync_and_shop() {
    browser_runner::run(
        "browser_frame_sync_and_shop",
        "frame_sync.mjs",
        env!("CARGO_BIN_EXE_hawker"),
        "tests/browser/out/frame_sync/",
    );
}
