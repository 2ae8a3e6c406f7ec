//! The `madoguchi-printer-agent` binary: parses flags and the optional TOML file, starts logging
//! and hands over to [`madoguchi_printer_agent::agent::run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Deserialize;

use madoguchi_printer_agent::agent;
use madoguchi_printer_agent::printer::{Connection, Link};
use madoguchi_printer_agent::ticket::{self, Width};

#[derive(Parser, Debug)]
#[command(
    name = "madoguchi-printer-agent",
    version,
    about = "madoguchi 発券プリンタ エージェント / printer agent: prints tickets on ESC/POS printers"
)]
struct Cli {
    /// A TOML file with the same keys as the flags (server, agent, token, printer, width,
    /// state_dir, max_job_age, status_interval); flags override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true)]
    server: Option<String>,
    /// This agent's id, as in the server's configuration (`printer_agent`).
    #[arg(long, global = true)]
    agent: Option<String>,
    /// A token of the `printer` role.
    #[arg(
        long,
        env = "MADOGUCHI_PRINTER_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    /// The printer: tcp://HOST:PORT, file:/dev/usb/lp0, usb:VID:PID, serial:/dev/ttyS0[:BAUD].
    #[arg(long, global = true)]
    printer: Option<String>,
    /// Paper width in mm: 80 or 58.
    #[arg(long, global = true)]
    width: Option<Width>,
    /// Where the agent remembers printed jobs.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// Jobs older than this many seconds are reported, not printed.
    #[arg(long, global = true)]
    max_job_age: Option<u64>,
    /// Seconds between printer state checks while idle.
    #[arg(long, global = true)]
    status_interval: Option<f64>,
    /// Write the bytes to FILE instead of a printer (the printer is taken to be online).
    #[arg(long, global = true, value_name = "FILE")]
    dry_run: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print a sample ticket and exit.
    PrintTest,
}

/// The optional TOML file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    agent: Option<String>,
    token: Option<String>,
    printer: Option<String>,
    width: Option<Width>,
    state_dir: Option<PathBuf>,
    max_job_age: Option<u64>,
    status_interval: Option<f64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("madoguchi-printer-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let file: FileConfig = match &cli.config {
        None => FileConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
    };
    let width = cli.width.or(file.width).unwrap_or(Width::Mm80);
    let link = match &cli.dry_run {
        Some(path) => Link::new(Connection::File(path.clone()), true),
        None => {
            let conn = cli.printer.or(file.printer).context(
                "no printer: give --printer tcp://HOST:9100 (or file:PATH), or --dry-run FILE",
            )?;
            Link::new(
                conn.parse::<Connection>().map_err(anyhow::Error::msg)?,
                false,
            )
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(Cmd::PrintTest) = cli.command {
        return runtime.block_on(print_test(link, width));
    }
    let settings = agent::Settings {
        server: cli
            .server
            .or(file.server)
            .context("no server: give --server http://HOST:8080")?,
        agent: cli
            .agent
            .or(file.agent)
            .context("no agent id: give --agent ID")?,
        token: cli
            .token
            .or(file.token)
            .context("no token: give --token or set MADOGUCHI_PRINTER_TOKEN")?,
        width,
        state_dir: cli
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from("printer-state")),
        max_job_age: Duration::from_secs(cli.max_job_age.or(file.max_job_age).unwrap_or(600)),
        status_interval: Duration::from_secs_f64(
            cli.status_interval
                .or(file.status_interval)
                .unwrap_or(5.0)
                .clamp(0.05, 3600.0),
        ),
    };
    agent::jobs_url(&settings.server, &settings.agent)?;
    runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping after the ticket being printed");
            let _ = stop_tx.send(true);
        });
        agent::run(settings, link, stop_rx).await
    })
}

async fn print_test(mut link: Link, width: Width) -> anyhow::Result<()> {
    let state = link.status().await;
    if !state.can_print() {
        anyhow::bail!("the printer {} cannot print now: {state}", link.describe());
    }
    let bytes = ticket::render(&ticket::sample_job(), width);
    link.send(&bytes)
        .await
        .with_context(|| format!("cannot print on {}", link.describe()))?;
    println!(
        "sample ticket sent to {} ({} bytes)",
        link.describe(),
        bytes.len()
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
