//! Real-browser simulcast: runs `node tests/browser/simulcast.mjs` against the hawker binary
//! cargo built for this test run, inside a network namespace the script creates for itself
//! (`unshare --map-root-user --net`), so traffic control on its loopback shapes one viewer's
//! downlink and nothing else on the machine.
//!
//! Headless Chromium publishes three layers from the studio page (fake camera, 1280×720); a
//! viewer page with `?quality=low` must decode 320×180, one on `auto` 1280×720; moving the
//! second one's quality menu to Low, Medium and back to Auto must change the decoded width
//! with at most 500 ms of freezes per switch; a third viewer whose downlink is shaped to
//! 700 kbit/s (tc htb on `lo`, u32 match on its UDP port) must settle on a lower layer and
//! keep playing. The checks are listed in the header of `tests/browser/simulcast.mjs`.
//!
//! Needs what the other browser tests need (`node` >= 20, Chromium, `tests/browser/node_modules`)
//! plus `unshare` (util-linux), `ip` and `tc` (iproute2) and user namespaces (or root);
//! `scripts/test.sh` installs them. Bounded to about 3 minutes.
//!
//! Run it alone, with progress shown live:
//! `cargo test --release --test browser_simulcast -- --nocapture`.
//! Artifacts (server log, page console, getStats dumps, tc statistics):
//! `tests/browser/out/simulcast/`.

mod browser_runner;

#[test]
#[cfg_attr(
    hawker_browser_deps_missing,
    ignore = "needs node >= 20, Chromium and tests/browser/node_modules: run scripts/test.sh"
)]
fn browser_simulcast_layers() {
    browser_runner::run(
        "browser_simulcast_layers",
        "simulcast.mjs",
        env!("CARGO_BIN_EXE_hawker"),
        "tests/browser/out/simulcast/",
    );
}
