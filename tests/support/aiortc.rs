//! The aiortc peer (`tests/interop/aiortc_peer.py`) driven from Rust, for the interop cells.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::binary::Proc;

pub fn python() -> PathBuf {
    std::env::var_os("HAWKER_AIORTC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop/aiortc-venv/bin/python")
        })
}

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/aiortc_peer.py")
}

/// Whether aiortc is importable; `Err` says what is missing.
pub fn aiortc_ready() -> Result<(), String> {
    let ok = Command::new(python())
        .args(["-c", "import aiortc, av"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "no aiortc at {} (set HAWKER_AIORTC_PYTHON)",
            python().display()
        ))
    }
}

/// Skips (prints why) when aiortc is missing, unless `CI` is set.
pub fn ready_or_skip() -> bool {
    match aiortc_ready() {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("aiortc interop cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why} (scripts/test.sh installs it)");
            false
        }
    }
}

/// Runs the aiortc peer with `args` to completion (bounded) and parses its JSON report.
pub async fn run_peer(args: Vec<String>, timeout: Duration) -> Value {
    let mut child = Proc(
        Command::new(python())
            .arg(script())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python starts"),
    );
    let deadline = Instant::now() + timeout;
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "aiortc peer {args:?} timed out");
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
        .unwrap_or_else(|e| panic!("aiortc peer {args:?} printed no report ({e}): {out:?}"))
}
