//! Real-browser end-to-end test: runs `node tests/browser/whip_whep.mjs` against the hawker
//! binary cargo built for this test run (headless Chromium publishes over WHIP, plays over WHEP).
//!
//! Needs `node` (>= 20), Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`) and
//! `tests/browser/node_modules` (`npm ci --prefix tests/browser`); `scripts/test.sh` installs
//! all of them. When any is missing at build time, `build.rs` marks the test ignored (cargo's
//! summary lists it as "ignored, needs …"; a run with `--include-ignored` skips it with a
//! message on stderr), unless `CI` is set, where a missing dependency is a failure.
//!
//! Run just this test, with the script's progress shown live:
//! `cargo test --release --test browser -- --nocapture`.

mod browser_runner;

#[test]
#[cfg_attr(
    hawker_browser_deps_missing,
    ignore = "needs node >= 20, Chromium and tests/browser/node_modules: run scripts/test.sh"
)]
fn browser_whip_whep_e2e() {
    browser_runner::run(
        "browser_whip_whep_e2e",
        "whip_whep.mjs",
        env!("CARGO_BIN_EXE_hawker"),
        "tests/browser/out/",
    );
}
