//! Marks the real-browser tests (`tests/browser.rs`, `tests/browser_shop.rs`,
//! `tests/browser_simulcast.rs`) `#[ignore]` when what they need is missing, so a plain
//! `cargo test` lists them as "ignored, needs …" in its summary instead of passing them. With
//! `CI` or `HAWKER_BROWSER_TESTS=required` set (CI and `scripts/test.sh` set them) the mark is
//! never applied: there the tests run and fail on a missing dependency, so a build script
//! result cached before the install cannot hide them.
//!
//! Needs: `node` >= 20 on `PATH`, Chromium (`CHROMIUM_PATH`, default `/usr/bin/chromium`) and
//! `tests/browser/node_modules` (`scripts/test.sh` installs all three).

use std::path::{Path, PathBuf};
use std::process::Command;

const CFG: &str = "hawker_browser_deps_missing";

fn main() {
    println!("cargo::rustc-check-cfg=cfg({CFG})");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=HAWKER_BROWSER_TESTS");
    println!("cargo::rerun-if-env-changed=CHROMIUM_PATH");
    println!("cargo::rerun-if-env-changed=PATH");

    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let chromium = std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let playwright = root.join("tests/browser/node_modules/playwright-core/package.json");

    let mut missing = Vec::new();
    if !node_ok() {
        missing.push("node >= 20 on PATH".to_string());
    }
    // Watch what exists, else the directory it would appear in, so installing it reruns this
    // script (a watched path that does not exist would rerun it, and rebuild hawker, always).
    watch(&chromium, chromium.parent());
    if !chromium.exists() {
        missing.push(format!("Chromium at {}", chromium.display()));
    }
    watch(&playwright, Some(&root.join("tests/browser")));
    if !playwright.exists() {
        missing.push("tests/browser/node_modules (npm ci --prefix tests/browser)".to_string());
    }

    let required = std::env::var("HAWKER_BROWSER_TESTS").is_ok_and(|v| v == "required");
    if !missing.is_empty() && !in_ci() && !required {
        println!("cargo::rustc-cfg={CFG}");
        println!(
            "cargo::warning=the browser tests are marked ignored: missing {}; scripts/test.sh \
             installs them",
            missing.join(", ")
        );
    }
}

fn watch(path: &Path, fallback: Option<&Path>) {
    if path.exists() {
        println!("cargo::rerun-if-changed={}", path.display());
    } else if let Some(dir) = fallback.filter(|d| d.exists() && d.parent().is_some()) {
        // Never `/`: cargo scans a watched directory recursively.
        println!("cargo::rerun-if-changed={}", dir.display());
    }
}

fn node_ok() -> bool {
    let Ok(out) = Command::new("node").arg("--version").output() else {
        return false;
    };
    let v = String::from_utf8_lossy(&out.stdout);
    let major: u32 = v
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    out.status.success() && major >= 20
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
        .unwrap_or(false)
}
