//! Headless Chromium as one interop peer (`tests/browser/peer.mjs`), driven from Rust.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::binary::Proc;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What is missing to drive Chromium, if anything.
pub fn missing() -> Vec<String> {
    let mut out = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !node {
        out.push("node".to_string());
    }
    let chromium = std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        out.push(format!("Chromium at {}", chromium.display()));
    }
    if !browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        out.push("tests/browser/node_modules (npm ci --prefix tests/browser)".to_string());
    }
    out
}

/// Skips (prints why) when Chromium cannot be driven, unless `CI` is set.
pub fn ready_or_skip() -> bool {
    let missing = missing();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "Chromium interop cannot run, missing: {}",
            missing.join(", ")
        );
    }
    eprintln!(
        "skipped: missing {} (scripts/test.sh installs them)",
        missing.join(", ")
    );
    false
}

/// Runs `node tests/browser/peer.mjs args…` to completion (bounded) and parses its report.
pub async fn run_peer(args: Vec<String>, timeout: Duration) -> Value {
    let mut child = Proc(
        Command::new("node")
            .arg(browser_dir().join("peer.mjs"))
            .args(&args)
            .current_dir(browser_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts"),
    );
    let deadline = Instant::now() + timeout;
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "Chromium peer {args:?} timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = String::new();
    use std::io::Read as _;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("Chromium peer {args:?} printed no report ({e}): {out:?}"))
}
