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
/// `artifacts` says where the script leaves its evidence. Fails naming the script's FAIL
/// lines; in CI only after a second attempt has failed too (the first one's artifacts are
/// moved to `<artifacts>.attempt1`, and a pass on the second attempt prints a `RETRY` line).
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
    let first = match attempt(script, hawker, &dir) {
        Ok(()) => return,
        Err(e) => e,
    };
    // A real browser on a shared two-core machine sometimes misses a timing check (an encoder
    // starved for a second, a freeze). In CI the script runs once more; a failure that repeats
    // fails the test, and the first attempt's FAIL lines and artifacts are kept either way.
    if !in_ci() {
        panic!("tests/browser/{script} failed: {first}; artifacts in {artifacts}");
    }
    let kept = format!("{}.attempt1", artifacts.trim_end_matches('/'));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::remove_dir_all(root.join(&kept));
    let _ = std::fs::rename(root.join(artifacts), root.join(&kept));
    eprintln!(
        "RETRY {test}: the first attempt failed ({first}); its artifacts are in {kept}; running once more"
    );
    if let Err(second) = attempt(script, hawker, &dir) {
        panic!(
            "tests/browser/{script} failed twice: first {first}; then {second}; artifacts in {kept} and {artifacts}"
        );
    }
    eprintln!("RETRY {test}: the second attempt passed (the first failed: {first})");
}

/// One run of the script; `Err` holds its exit status and the first line of each FAIL it
/// printed, so the failing check is named at the end of the test's output.
fn attempt(script: &str, hawker: &str, dir: &Path) -> Result<(), String> {
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
    let mut fails = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
    {
        println!("{line}");
        if is_fail_line(&line) && fails.len() < 8 {
            fails.push(line.chars().take(400).collect::<String>());
        }
    }
    let status = child.wait().expect("wait for node");
    let _ = err_thread.join();
    if status.success() {
        return Ok(());
    }
    if fails.is_empty() {
        return Err(format!("{status}, no FAIL line printed"));
    }
    Err(format!("{status}: {}", fails.join(" | ")))
}

/// `FAIL name: …` or `[  12.3s] FAIL name: …`, as the scripts print a failed check.
fn is_fail_line(line: &str) -> bool {
    let rest = match line.strip_prefix('[') {
        Some(r) => r.split_once("] ").map(|(_, r)| r).unwrap_or(""),
        None => line,
    };
    rest.starts_with("FAIL ")
}
