//! The `madoguchi` binary: parses arguments, loads the configuration, starts logging, binds the
//! listener and hands over to [`madoguchi::server::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use madoguchi::config::Config;

#[derive(Parser)]
#[command(
    name = "madoguchi",
    version,
    about = "madoguchi — 受付番号発券・待ち時間表示 / queue ticketing and wait-time display"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (embedded SQLite store in the data directory).
    Serve {
        /// Configuration file.
        #[arg(long, env = "MADOGUCHI_CONFIG", default_value = "config/demo.toml")]
        config: PathBuf,
        /// Address to listen on.
        #[arg(long, env = "MADOGUCHI_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory for the event log and visit records (created if missing).
        #[arg(long, env = "MADOGUCHI_DATA", default_value = "./data")]
        data: PathBuf,
    },
    /// Check a configuration file: print a summary, or every error with file, field and reason.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                use std::io::Write;
                // A closed pipe (`| head`) is not an error worth a panic.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}: OK", file.display());
                let _ = write!(out, "{}", config.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "設定ファイルに {} 件の誤りがあります / {} error(s) in {}",
                    errors.0.len(),
                    errors.0.len(),
                    file.display()
                );
                ExitCode::from(2)
            }
        },
        Cmd::Serve {
            config,
            listen,
            data,
        } => {
            init_tracing();
            match serve(config, listen, data) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("madoguchi: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
}

fn serve(config_path: PathBuf, listen: SocketAddr, data: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config_path).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(run `madoguchi check-config {}` for details)",
            config_path.display()
        )
    })?;
    if config.demo_tokens {
        tracing::warn!("demo tokens are configured: fine for a demo, never for a real office (see README, Tokens)");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!("cannot listen on {listen} (is another server running there?)")
            })?;
        let addr = listener.local_addr()?;
        for site in &config.sites {
            tracing::info!(
                "site {} ({}): board http://{addr}/api/v1/sites/{}/board",
                site.id,
                site.name.ja,
                site.id
            );
        }
        madoguchi::server::run(
            config,
            &data,
            listener,
            madoguchi::server::shutdown_signal(),
        )
        .await
    })
}
