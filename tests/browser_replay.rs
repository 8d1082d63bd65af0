//! Real-browser proof that a replay is frame-exact: runs `node tests/browser/replay.mjs`
//! against the hawker binary cargo built for this test run.
//!
//! A Chromium seller with a frame-numbered fake camera goes live on `/studio/demo`, shows three
//! products at known frames and ends the show; a Chromium viewer on `/watch/demo` (now offering
//! the replay) must put each card on screen within one frame of the frame it appeared on live;
//! a seek must start on the keyframe the server names, with the card that was on screen at that
//! frame live. The full rule is in the header of `tests/browser/replay.mjs`. About a minute.
//!
//! Needs `node` (>= 20), Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`) and
//! `tests/browser/node_modules` (`npm ci --prefix tests/browser`); `scripts/test.sh` installs
//! them. When any is missing at build time, `build.rs` marks the test ignored, unless `CI` is
//! set, where a missing dependency is a failure.
//!
//! Run it alone: `cargo test --release --test browser_replay -- --nocapture`.
//! Artifacts (server log, page console, frames per card, screenshot):
//! `tests/browser/out/replay/`.

mod browser_runner;

#[test]
#[cfg_attr(
    hawker_browser_deps_missing,
    ignore = "needs node >= 20, Chromium and tests/browser/node_modules: run scripts/test.sh"
)]
fn browser_replay() {
    browser_runner::run(
        "browser_replay",
        "replay.mjs",
        env!("CARGO_BIN_EXE_hawker"),
        "tests/browser/out/replay/",
    );
}
