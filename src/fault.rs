//! Test-only crash points (the `fault-injection` feature): a named point in a critical section
//! where the process can be made to stop and wait to be killed, so a test can SIGKILL it at
//! exactly that moment (in the middle of a group commit, between writing and linking the
//! generated secret). Never compiled into a build without the feature.
//!
//! `HAWKER_FAULT_PAUSE=<name>` selects the point. Points that are passed many times (`commit`)
//! only pause once the file `{dir}/fault-arm-<name>` exists, so the test decides when. A paused
//! thread writes `{dir}/fault-paused-<name>` and then sleeps until the process dies.

use std::path::Path;
use std::time::Duration;

/// Pauses here forever when `HAWKER_FAULT_PAUSE` names this point (and, if `needs_arm`, the
/// arm file exists in `dir`).
pub fn pause_point(name: &str, dir: &Path, needs_arm: bool) {
    if std::env::var("HAWKER_FAULT_PAUSE").ok().as_deref() != Some(name) {
        return;
    }
    if needs_arm && !dir.join(format!("fault-arm-{name}")).exists() {
        return;
    }
    tracing::warn!(point = name, "fault injection: paused until killed");
    let _ = std::fs::write(dir.join(format!("fault-paused-{name}")), b"paused\n");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
