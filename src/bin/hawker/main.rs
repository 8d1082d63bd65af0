//! The `hawker` command: `serve` (default), `token`, `loadtest`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod loadtest;
use hawker::auth::{Keys, Role};
use hawker::config::Config;

#[derive(Parser)]
#[command(
    name = "hawker",
    version,
    about = "Low-latency media relay for live shopping"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (the default).
    Serve {
        /// TOML config; without it the embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a signed token.
    Token {
        /// Show id (`*` for every show; admin only).
        #[arg(long)]
        show: String,
        /// publisher, viewer or admin.
        #[arg(long)]
        role: Role,
        /// Subject (user id).
        #[arg(long)]
        sub: Option<String>,
        /// Lifetime, e.g. 1h, 30m; defaults to auth.default_ttl.
        #[arg(long)]
        ttl: Option<humantime::Duration>,
        /// TOML config; without it the embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the key webhook receivers verify `X-Hawker-Signature` with
    /// (`commerce.webhook_secret`, or the key derived from the token secret).
    WebhookSecret {
        /// TOML config; without it the embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load-test a server with a synthetic publisher and N real WebRTC viewers.
    Loadtest(Box<loadtest::Opts>),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "hawker=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Serve { config: None }) {
        Cmd::Serve { config } => serve(Config::load(config.as_deref())?),
        Cmd::Token {
            show,
            role,
            sub,
            ttl,
            config,
        } => {
            let cfg = Config::load(config.as_deref())?;
            if show == "*" && role != Role::Admin {
                anyhow::bail!("only admin tokens may cover every show (--show '*')");
            }
            let keys = Keys::load_or_create(cfg.auth.secret.as_deref(), &cfg.data_dir)?;
            let ttl: Duration = ttl.map(Into::into).unwrap_or(cfg.auth.default_ttl);
            let sub = sub.unwrap_or_else(|| format!("{role:?}").to_lowercase());
            println!("{}", keys.issue(&sub, &show, role, ttl));
            Ok(())
        }
        Cmd::WebhookSecret { config } => {
            let cfg = Config::load(config.as_deref())?;
            let key = match cfg.commerce.webhook_secret.clone() {
                Some(k) => k,
                None => Keys::load_or_create(cfg.auth.secret.as_deref(), &cfg.data_dir)?
                    .webhook_secret(),
            };
            println!("{key}");
            Ok(())
        }
        Cmd::Loadtest(opts) => loadtest::run(*opts).map(|_| ()),
    }
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let running = hawker::server::start(cfg).await?;
        print!("{}", running.banner());
        hawker::server::signal().await;
        tracing::info!("shutting down");
        running.stop().await;
        anyhow::Ok(())
    })
}
