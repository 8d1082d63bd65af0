//! Runs one of the `tests/browser/*.mjs` scripts against the hawker binary cargo built for the
//! test run, forwarding its output through the test harness.
//!
//! Needs `node` (>= 20), Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`) and
//! `tests/browser/node_modules` (`npm ci --prefix tests/browser`); `scripts/test.sh` installs
//! them. When any is missing at build time (and `CI` is not set), `build.rs` marks the browser
//! tests ignored, which cargo reports as "ignored, needs …". A test that runs anyway (CI, or
//! `--include-ignored`) fails on a missing dependency: it never passes without a browser.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
        .unwrap_or(false)
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing to run a browser test, if anything.
fn missing_deps(dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let major: u32 = v
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 20 {
                missing.push(format!("node >= 20 (found {v})"));
            }
        }
        _ => missing.push("node (not on PATH)".into()),
    }
    let browser = chromium();
    if !browser.exists() {
        missing.push(format!("Chromium at {}", browser.display()));
    }
    let pw = dir.join("node_modules/playwright-core/package.json");
    if !pw.exists() {
        missing.push(format!("{} (npm ci --prefix tests/browser)", pw.display()));
    }
    missing
}

/// Run `tests/browser/{script}` with `--hawker <binary>`; `test` names the test in messages,
/// `artifacts` says where the script leaves its evidence.
pub fn run(test: &str, script: &str, hawker: &str, artifacts: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let missing = missing_deps(&dir);
    if !missing.is_empty() {
        let msg = format!(
            "{test} needs: {}. scripts/test.sh installs them.",
            missing.join("; ")
        );
        if in_ci() {
            panic!("CI is set and {msg}");
        }
        // Not marked ignored by build.rs (deps vanished since the build), or run with
        // --include-ignored: a browser test never passes without its browser.
        panic!("{msg} (the test is marked ignored when they are missing at build time)");
    }
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .arg("--hawker")
        .arg(hawker)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    // Forward the script's output line by line through the harness (shown live with
    // --nocapture, otherwise on failure).
    let stderr = child.stderr.take().expect("stderr");
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
        }
    });
    for line in BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
    {
        println!("{line}");
    }
    let status = child.wait().expect("wait for node");
    let _ = err_thread.join();
    assert!(
        status.success(),
        "tests/browser/{script} failed ({status}); artifacts in {artifacts}"
    );
}
