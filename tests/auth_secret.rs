//! The token secret at start-up: a short or empty secret, configured or stored in
//! `{data_dir}/secret`, stops the server with an error naming where it came from; a generated
//! secret is private (0600 in a 0700 directory); the webhook key `hawker webhook-secret` prints
//! is not the token secret and is what the server signs with. Tokens are printed at start-up only
//! on the first start.

use std::path::PathBuf;
use std::process::Command;

use hawker::config::Config;

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hawker-secret-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics.listen = "127.0.0.1:0".parse().unwrap();
    cfg.media.shards = 1;
    cfg.shows.seed_demo = false;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_or_empty_secrets_stop_the_server() {
    for bad in ["", "change-me", "0123456789abcdef0123456789abcde"] {
        let dir = fresh_dir("cfg");
        let mut cfg = config(&dir);
        cfg.auth.secret = Some(bad.into());
        let err = match hawker::server::start(cfg).await {
            Ok(r) => {
                r.stop().await;
                panic!("server started with auth.secret = {bad:?}");
            }
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("auth.secret"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    for stored in ["", "\n", "deadbeef"] {
        let dir = fresh_dir("file");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), stored).unwrap();
        let err = match hawker::server::start(config(&dir)).await {
            Ok(r) => {
                r.stop().await;
                panic!("server started with a stored secret of {stored:?}");
            }
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("secret"), "{err}");
        // The short secret is reported, not silently replaced.
        assert_eq!(std::fs::read_to_string(dir.join("secret")).unwrap(), stored);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_secret_is_private_and_the_webhook_key_is_separate() {
    let root = fresh_dir("gen");
    let dir = root.join("data");
    let running = hawker::server::start(config(&dir)).await.expect("starts");
    assert!(running.secret_created, "a first start generates the secret");
    // The first start prints working demo tokens.
    let banner = running.banner();
    let tokens: Vec<&str> = banner
        .split_whitespace()
        .filter_map(|w| w.find("eyJ").map(|i| &w[i..]))
        .collect();
    assert!(
        !tokens.is_empty(),
        "first-start banner has tokens:\n{banner}"
    );
    for t in &tokens {
        running.app.keys.verify(t).expect("printed token verifies");
    }
    running.stop().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "data_dir mode");
        assert_eq!(mode(&dir.join("secret")), 0o600, "secret mode");
    }
    let secret = std::fs::read_to_string(dir.join("secret")).unwrap();
    assert_eq!(secret.len(), 64);

    // A second start reuses it.
    let running = hawker::server::start(config(&dir)).await.expect("starts");
    assert!(!running.secret_created);
    // Later starts print no token (start-up output ends up in logs), only how to mint one.
    let banner = running.banner();
    assert!(
        !banner.contains("eyJ"),
        "token printed on a later start:\n{banner}"
    );
    assert!(banner.contains("hawker token"), "{banner}");
    running.stop().await;
    assert_eq!(std::fs::read_to_string(dir.join("secret")).unwrap(), secret);

    // `hawker webhook-secret` prints the derived key, which is not the token secret.
    let toml = root.join("hawker.toml");
    std::fs::write(&toml, format!("data_dir = {:?}\n", dir.to_str().unwrap())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hawker"))
        .args(["webhook-secret", "--config"])
        .arg(&toml)
        .output()
        .expect("run hawker webhook-secret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_ne!(printed, secret.trim());
    assert_eq!(
        printed,
        hawker::auth::derive_webhook_secret(secret.trim().as_bytes())
    );
    let _ = std::fs::remove_dir_all(&root);
}
